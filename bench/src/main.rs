//! `kyso-bench`: kyso's write path beside raw RocksDB, measured in the same run on the same
//! disk, printed as tables with ratios (absolute numbers drift on shared machines; ratios
//! far less). `--quick` runs a few milliseconds per cell so `./scripts/test` keeps it alive.

use clap::Parser;
use commands::{AppendToStreams, Sequencer, SequencerConfig, StreamAppender, SystemClock};
use event_store::{EventData, EventStore, ExpectedVersion, LogWriter, Metadata, RegistryTime, StreamAppend, StreamId};
use rocksdb::{DB, Options, WriteBatch, WriteOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "kyso-bench", about = "kyso write path vs raw RocksDB, same run, same disk")]
struct Args {
    /// Seconds per table cell.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// A smoke run: tiny cells, numbers meaningless, just proves the benchmark works.
    #[arg(long)]
    quick: bool,
    /// Where the temporary stores go (the disk being measured).
    #[arg(long)]
    dir: Option<PathBuf>,
}

const VALUE_BYTES: usize = 250;
const BATCH_SIZES: [usize; 4] = [1, 10, 100, 1000];
const SUBMITTERS: [usize; 3] = [1, 64, 1024];

fn main() {
    let args = Args::parse();
    let cell = Duration::from_secs_f64(if args.quick { 0.05 } else { args.seconds });
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    println!(
        "# kyso-bench: {VALUE_BYTES}-byte payloads, synced writes, {:.2}s per cell, dir {}",
        cell.as_secs_f64(),
        base.display()
    );
    println!();
    println!("| batch | raw rocksdb ev/s | kyso append ev/s | ratio |");
    println!("|---:|---:|---:|---:|");
    for batch in BATCH_SIZES {
        let raw = raw_rocksdb(&base, batch, cell);
        let (kyso, checksum) = kyso_append(&base, batch, cell);
        println!("| {batch} | {} | {} | {:.2} |", fmt(raw), fmt(kyso), kyso / raw);
        eprintln!("  batch {batch}: checksum {checksum}");
    }
    println!();
    println!("| submitters | acked ev/s | avg batch | p50 ms | p99 ms |");
    println!("|---:|---:|---:|---:|---:|");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    for tasks in SUBMITTERS {
        let r = runtime.block_on(submitters(&base, tasks, cell));
        println!("| {tasks} | {} | {:.0} | {:.2} | {:.2} |", fmt(r.rate), r.avg_batch, r.p50_ms, r.p99_ms);
        eprintln!("  {tasks} submitters: checksum {}", r.checksum);
    }
}

fn fmt(rate: f64) -> String {
    let n = rate.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn value(i: u64) -> Vec<u8> {
    let mut v = vec![0u8; VALUE_BYTES];
    v[..8].copy_from_slice(&i.to_be_bytes());
    v
}

/// The physical limit: RocksDB's own synced `WriteBatch` of plain values, options as kyso's.
fn raw_rocksdb(base: &Path, batch: usize, cell: Duration) -> f64 {
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.increase_parallelism(2);
    opts.set_max_background_jobs(2);
    opts.set_write_buffer_size(64 << 20);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    let db = DB::open(&opts, dir.path()).expect("raw rocksdb");
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    let mut next = 0u64;
    let started = Instant::now();
    while started.elapsed() < cell {
        let mut wb = WriteBatch::default();
        for _ in 0..batch {
            next += 1;
            wb.put(next.to_be_bytes(), value(next));
        }
        db.write_opt(wb, &wo).expect("raw write");
    }
    next as f64 / started.elapsed().as_secs_f64()
}

fn one_event(stream: String, i: u64) -> StreamAppend {
    StreamAppend {
        stream: StreamId(stream),
        expected: ExpectedVersion::Any,
        events: vec![EventData { event_type: "Benched".into(), schema_version: 1, payload: value(i), subject: None }],
    }
}

fn meta() -> Metadata {
    Metadata { actor: "ca:BENCH".into(), ..Metadata::default() }
}

/// kyso's append path: envelope, stream index, Merkle nodes and tree head in one synced batch.
fn kyso_append(base: &Path, batch: usize, cell: Duration) -> (f64, String) {
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let (store, mut writer): (_, LogWriter) = EventStore::open(dir.path(), true).expect("kyso store");
    let meta = meta();
    let mut next = 0u64;
    let started = Instant::now();
    while started.elapsed() < cell {
        let mut b = writer.begin(RegistryTime(0));
        for _ in 0..batch {
            next += 1;
            writer.stage(&mut b, &meta, vec![one_event(format!("citizen-{next:012}"), next)]).expect("stage");
        }
        writer.commit(b).expect("commit");
    }
    let rate = next as f64 / started.elapsed().as_secs_f64();
    let head = store.tree_head();
    (rate, format!("last seq {} root {}", head.size, &hex::encode(head.root)[..16]))
}

struct SubmitResult {
    rate: f64,
    avg_batch: f64,
    p50_ms: f64,
    p99_ms: f64,
    checksum: String,
}

/// Many tasks, each submitting one event and awaiting its durable ack, in a loop.
async fn submitters(base: &Path, tasks: usize, cell: Duration) -> SubmitResult {
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let (store, writer) = EventStore::open(dir.path(), true).expect("kyso store");
    let (sequencer, thread) =
        Sequencer::start(writer, StreamAppender, Arc::new(SystemClock), SequencerConfig::default());
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (sequencer, stop, counter) = (sequencer.clone(), Arc::clone(&stop), Arc::clone(&counter));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let cmd = AppendToStreams { meta: meta(), appends: vec![one_event(format!("t{t}-{n}"), n)] };
                    let sent = Instant::now();
                    sequencer.submit(cmd).await.expect("submit").expect("append");
                    latencies.push(sent.elapsed());
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(cell).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.expect("submitter task"));
    }
    let elapsed = started.elapsed();
    let stats = sequencer.stats();
    let (commands, batches) = (stats.commands.load(Ordering::Relaxed), stats.batches.load(Ordering::Relaxed).max(1));
    drop(sequencer);
    thread.join().expect("sequencer thread");
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    let head = store.tree_head();
    SubmitResult {
        rate: counter.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
        avg_batch: commands as f64 / batches as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        checksum: format!("last seq {} root {}", head.size, &hex::encode(head.root)[..16]),
    }
}
