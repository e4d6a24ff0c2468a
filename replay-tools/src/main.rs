//! `kyso-replay`: the auditors' command line.

use clap::{Parser, Subcommand};
use event_store::checkpoint::VerifierKey;
use event_store::receipt::Receipt;
use event_store::{EventStore, RegistryTime, Seq};
use indicatif::{ProgressBar, ProgressStyle};
use projections::{Follower, Projections};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "kyso-replay", version, about = "Check and replay a kyso registry's history offline")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Recompute every Merkle leaf and the root from the events; name the first bad seq.
    Verify {
        /// The data dir (or a copy of it); opened read-only.
        #[arg(long, env = "KYSO_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// The registry's public key (text or a file holding it), as published at
        /// /v1/log/key. Defaults to the data dir's registry.pub, which checks the
        /// signatures but not that the key is the one the registry published.
        #[arg(long)]
        key: Option<String>,
    },
    /// One citizen's story: lookups, every issuance attempt in seq order, who was first,
    /// late flags, demands, switches, complaints; with inclusion proofs of the decisive events.
    Dispute {
        cccd: String,
        #[arg(long, env = "KYSO_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        #[arg(long)]
        key: Option<String>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A report projection (counts, compliance, demands) as it was at a seq or a moment.
    History {
        /// A seq, or an RFC 3339 time (the last event recorded at or before it).
        #[arg(long)]
        as_of: String,
        #[arg(long, default_value = "counts")]
        projection: String,
        #[arg(long, env = "KYSO_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Seqs from..=to as JSON Lines with a proof bundle that `verify-export` checks.
    Export {
        #[arg(long, default_value_t = 1)]
        from_seq: u64,
        /// The last seq (default: the end of the newest signed checkpoint).
        #[arg(long)]
        to_seq: Option<u64>,
        /// Where to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Personal events as their leaf hash only (no CCCD, no salt).
        #[arg(long)]
        redact_personal: bool,
        /// Also write the issued counts of the range as CSV here (R15).
        #[arg(long)]
        counts_csv: Option<PathBuf>,
        #[arg(long, env = "KYSO_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Count issued certificates per day, district and CA from the registry's JetStream
    /// stream into a CSV (R15); idempotent by seq (the state file is the cursor).
    Report {
        #[arg(long, env = "KYSO_NATS_URL", default_value = "nats://127.0.0.1:4222")]
        nats_url: String,
        /// The stream: KYSO_<CCCD province code> (KYSO_046 for Huế).
        #[arg(long, default_value = "KYSO_046")]
        stream: String,
        #[arg(long, default_value = "report-state.json")]
        state: PathBuf,
        #[arg(long, default_value = "issued-per-day-district-ca.csv")]
        out: PathBuf,
        /// Keep consuming (and rewriting the CSV) as events arrive.
        #[arg(long)]
        follow: bool,
    },
    /// Check an export with only the registry's public key.
    VerifyExport {
        file: PathBuf,
        #[arg(long)]
        key: String,
    },
    /// Check a CA's receipt (from /v1/log/receipt) with the registry's public key; with
    /// --data-dir, also check that the log still holds it.
    CheckReceipt {
        receipt: PathBuf,
        #[arg(long)]
        key: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Rebuild one projection (counts, compliance, demands, audit) from seq 1 and swap it
    /// in. Run it on a stopped server's data dir (a running server rebuilds on upgrade).
    Rebuild {
        projection: String,
        #[arg(long, env = "KYSO_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Verify { data_dir, key } => verify(&data_dir, key.as_deref()),
        Command::Rebuild { projection, data_dir } => rebuild(&data_dir, &projection),
        Command::Dispute { cccd, data_dir, key, json } => dispute(&data_dir, &cccd, key.as_deref(), json),
        Command::History { as_of, projection, data_dir } => history(&data_dir, &as_of, &projection),
        Command::Export { from_seq, to_seq, out, redact_personal, counts_csv, data_dir } => {
            export(&data_dir, from_seq, to_seq, out, redact_personal, counts_csv)
        }
        Command::VerifyExport { file, key } => verify_export(&file, &key),
        Command::Report { nats_url, stream, state, out, follow } => report(&nats_url, &stream, &state, &out, follow),
        Command::CheckReceipt { receipt, key, data_dir } => check_receipt(&receipt, &key, data_dir.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A key given as text, or as a file holding it.
fn parse_key(arg: &str) -> Result<VerifierKey, Error> {
    let text = if std::path::Path::new(arg).is_file() { std::fs::read_to_string(arg)? } else { arg.to_string() };
    Ok(VerifierKey::parse(&text).map_err(|e| format!("--key: {e}"))?)
}

/// `--key`, else the data dir's own registry.pub (said so on stderr), else none.
fn key_or_data_dir(key: Option<&str>, data_dir: &std::path::Path) -> Result<Option<VerifierKey>, Error> {
    if let Some(key) = key {
        return parse_key(key).map(Some);
    }
    let path = data_dir.join("registry.pub");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            eprintln!(
                "note: using the key in {}; pass --key with the published key for an independent check",
                path.display()
            );
            Ok(Some(VerifierKey::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?))
        }
        Err(_) => Ok(None),
    }
}

fn bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}").expect("a valid template"),
    );
    bar
}

fn rebuild(data_dir: &std::path::Path, name: &str) -> Result<(), Error> {
    let (store, _writer) = EventStore::open(data_dir, false)?;
    let projections = Projections::open(&store)?;
    let mut follower = Follower::new(std::sync::Arc::clone(&store), &projections);
    // Level with the log first, so the rebuild covers all of it.
    follower.catch_up()?;
    let progress = bar(store.last_seq().0);
    let started = std::time::Instant::now();
    projections.rebuild(name, &store, &|done, _| progress.set_position(done))?;
    progress.finish_and_clear();
    // The follower swaps the rebuilt projection in and writes its snapshot.
    follower.catch_up()?;
    follower.persist()?;
    let secs = started.elapsed().as_secs_f64();
    println!("rebuilt {name} over {} events in {secs:.2}s", store.last_seq());
    Ok(())
}

fn verify(data_dir: &std::path::Path, key: Option<&str>) -> Result<(), Error> {
    let store = EventStore::open_read_only(data_dir)?;
    let key = key_or_data_dir(key, data_dir)?;
    let bar = bar(store.last_seq().0);
    let started = std::time::Instant::now();
    let result = replay_tools::verify_log(&store, key.as_ref(), |n| bar.set_position(n));
    bar.finish_and_clear();
    let report = result?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ok: {} events verified ({} erased) in {secs:.2}s; {} signed checkpoints match; tree size {} root {}",
        report.events,
        report.erased,
        report.checkpoints,
        report.tree.size,
        hex::encode(report.tree.root)
    );
    Ok(())
}

fn dispute(data_dir: &std::path::Path, cccd: &str, key: Option<&str>, json: bool) -> Result<(), Error> {
    let store = EventStore::open_read_only(data_dir)?;
    let key = key_or_data_dir(key, data_dir)?;
    let story = replay_tools::dispute::dispute(&store, cccd, key.as_ref())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&story)?);
    } else {
        print!("{}", story.text());
    }
    Ok(())
}

fn history(data_dir: &std::path::Path, as_of: &str, projection: &str) -> Result<(), Error> {
    let store = EventStore::open_read_only(data_dir)?;
    let seq = match as_of.parse::<u64>() {
        Ok(seq) => Seq(seq),
        Err(_) => {
            let t = chrono::DateTime::parse_from_rfc3339(as_of)
                .map_err(|e| format!("--as-of {as_of:?} is neither a seq nor an RFC 3339 time: {e}"))?;
            projections::history::seq_at(&store, RegistryTime(t.timestamp_millis()))?
        }
    };
    let at = projections::history::as_of(&store, seq)?;
    let value = match projection {
        "counts" => serde_json::to_value(at.counts.rollup(&projections::counts::Filter::default()))?,
        "compliance" => serde_json::to_value(at.compliance.report())?,
        "demands" => serde_json::to_value(at.demands.summary())?,
        other => return Err(format!("no projection {other:?}: counts, compliance or demands").into()),
    };
    let mut out = serde_json::Map::new();
    out.insert("as_of_seq".into(), serde_json::json!(at.seq.0));
    out.insert(projection.into(), value);
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn export(
    data_dir: &std::path::Path,
    from: u64,
    to: Option<u64>,
    out: Option<PathBuf>,
    redact: bool,
    counts_csv: Option<PathBuf>,
) -> Result<(), Error> {
    let store = EventStore::open_read_only(data_dir)?;
    let to = match to {
        Some(to) => to,
        None => store.latest_checkpoint()?.map(|(size, _)| size).ok_or("no signed checkpoint yet; pass --to-seq")?,
    };
    let bar = bar(to.saturating_sub(from) + 1);
    let mut sink: Box<dyn std::io::Write> = match &out {
        Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let redacted = replay_tools::export::export(&store, from, to, redact, &mut sink, |n| bar.set_position(n))?;
    sink.flush()?;
    bar.finish_and_clear();
    if let Some(path) = counts_csv {
        replay_tools::export::counts_csv(&store, from, to, std::fs::File::create(&path)?)?;
    }
    eprintln!("exported seqs {from}..={to} ({redacted} personal events as leaf hashes only)");
    Ok(())
}

fn report(url: &str, stream: &str, state: &std::path::Path, out: &std::path::Path, follow: bool) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let state = runtime.block_on(replay_tools::report::run(url, stream, state, out, follow))?;
    println!("counted up to seq {}; {} rows in {}", state.last_seq, state.issued.len(), out.display());
    Ok(())
}

fn verify_export(file: &std::path::Path, key: &str) -> Result<(), Error> {
    let key = parse_key(key)?;
    let input = std::io::BufReader::new(std::fs::File::open(file)?);
    let r = replay_tools::export::verify_export(input, &key)?;
    println!(
        "ok: seqs {}..={} lead to the checkpoint signed by {} at tree size {} ({} redacted)",
        r.from,
        r.to,
        key.name(),
        r.checkpoint_size,
        r.redacted
    );
    Ok(())
}

fn check_receipt(path: &std::path::Path, key: &str, data_dir: Option<&std::path::Path>) -> Result<(), Error> {
    let key = parse_key(key)?;
    let receipt: Receipt = serde_json::from_str(&std::fs::read_to_string(path)?)
        .map_err(|e| format!("{}: not a receipt from /v1/log/receipt: {e}", path.display()))?;
    let signed = receipt.verify(&key)?;
    println!("ok: seq {} is in the log signed by {} at tree size {}", receipt.seq, key.name(), signed.size);
    if let Some(dir) = data_dir {
        let store = EventStore::open_read_only(dir)?;
        replay_tools::check_receipt_against(&store, &receipt)?;
        println!("ok: the log in {} still holds it", dir.display());
    }
    Ok(())
}
