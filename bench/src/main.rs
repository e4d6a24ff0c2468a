//! `kyso-bench`: kyso's write path beside raw RocksDB, measured in the same run on the same
//! disk, printed as tables with ratios (absolute numbers drift on shared machines; ratios
//! far less). `--quick` runs a few milliseconds per cell so `./scripts/test` keeps it alive.

mod bare;
mod publish;
mod read_side;

use clap::Parser;
use commands::domain::ca::SEED_CAS;
use commands::domain::{CaId, Campaign, Cccd, Channel, Command, IssuanceStatus, Place, RecordIssuance, Segment};
use commands::registrar::{Registrar, Submission};
use commands::{AppendToStreams, Handler, ManualClock, Sequencer, SequencerConfig, StreamAppender, SystemClock};
use event_store::pipeline::WriteThread;
use event_store::{EventData, EventStore, ExpectedVersion, LogWriter, Metadata, RegistryTime, StreamAppend, StreamId};
use rocksdb::{DB, Options, WriteBatch, WriteOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The server's allocator (jemalloc), so the cells measure what `kyso serve` runs.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "kyso-bench", about = "kyso write path vs raw RocksDB, same run, same disk")]
struct Args {
    /// Seconds per table cell.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Run each append, submitters and domain cell for this many events or commands
    /// instead of `--seconds`: the same work in every run, so `valgrind --tool=callgrind`
    /// counts the same instructions whatever else the machine is doing.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// A smoke run: tiny cells, numbers meaningless, just proves the benchmark works.
    #[arg(long)]
    quick: bool,
    /// Where the temporary stores go (the disk being measured).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Events in the synthetic log the projections are rebuilt from.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// NATS with JetStream for the publish table.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Events published and followed in the publish table.
    #[arg(long, default_value_t = 1_000_000)]
    publish_events: u64,
    /// Only the cells of this batch size (append) or number of submitters (submitters,
    /// domain): for profiling one cell.
    #[arg(long, value_name = "N")]
    size: Option<usize>,
    /// Run one table only (for profiling one path).
    #[arg(long, value_enum)]
    only: Option<Table>,
    /// Instead of the tables, serve the HTTP floor at this address until killed: one
    /// axum route that parses a JSON body and round-trips a channel, nothing recorded.
    /// `bench/load/run` loads it with the same wrk script as kyso's issuances.
    #[arg(long, value_name = "ADDR")]
    serve_bare: Option<std::net::SocketAddr>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Table {
    Append,
    Submitters,
    Domain,
    Projections,
    /// Not in the default run: it needs a NATS server.
    Publish,
}

/// How long a cell runs.
#[derive(Clone, Copy)]
enum Cell {
    Time(Duration),
    /// Events (append) or acknowledged commands (submitters, domain).
    Count(u64),
}

impl Cell {
    /// Whether a cell started at `started` that has done `done` goes on.
    fn goes_on(self, started: Instant, done: u64) -> bool {
        match self {
            Cell::Time(limit) => started.elapsed() < limit,
            Cell::Count(limit) => done < limit,
        }
    }

    /// One more command for a submitter, under a count; a timed cell is stopped from outside.
    fn claim(self, claimed: &AtomicU64) -> bool {
        match self {
            Cell::Time(_) => true,
            Cell::Count(limit) => claimed.fetch_add(1, Ordering::Relaxed) < limit,
        }
    }
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Time(limit) => write!(f, "{:.2}s per cell", limit.as_secs_f64()),
            Cell::Count(n) => write!(f, "{n} events or commands per cell"),
        }
    }
}

const VALUE_BYTES: usize = 250;
const BATCH_SIZES: [usize; 4] = [1, 10, 100, 1000];
const SUBMITTERS: [usize; 3] = [1, 64, 1024];
const DOMAIN_SUBMITTERS: [usize; 2] = [64, 1024];

fn main() {
    let args = Args::parse();
    if let Some(listen) = args.serve_bare {
        return bare::serve(listen);
    }
    let cell = match args.count {
        Some(n) => Cell::Count(n),
        None => Cell::Time(Duration::from_secs_f64(if args.quick { 0.05 } else { args.seconds })),
    };
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    println!("# kyso-bench: {VALUE_BYTES}-byte payloads, synced writes, {cell}, dir {}", base.display());
    let run = |t: Table| args.only.is_none_or(|only| only == t);
    let sizes = |all: &[usize]| all.iter().copied().filter(|n| args.size.is_none_or(|size| size == *n)).collect();
    if run(Table::Append) {
        append_table(&base, cell, sizes(&BATCH_SIZES));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    if run(Table::Submitters) {
        submitters_table(&runtime, &base, cell, sizes(&SUBMITTERS));
    }
    if run(Table::Domain) {
        domain_table(&runtime, &base, cell, sizes(&DOMAIN_SUBMITTERS));
    }
    if run(Table::Projections) {
        read_side::table(&base, if args.quick { 20_000 } else { args.events });
    }
    if args.only == Some(Table::Publish) {
        publish::table(&runtime, &base, &args.nats_url, args.publish_events);
    }
}

fn append_table(base: &Path, cell: Cell, batches: Vec<usize>) {
    println!();
    println!("| batch | raw rocksdb ev/s | kyso append, one thread | ratio | kyso append, pipelined | ratio |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for batch in batches {
        let raw = raw_rocksdb(base, batch, cell);
        let (serial, checksum) = kyso_append(base, batch, cell, false);
        eprintln!("  batch {batch}, one thread: checksum {checksum}");
        let (piped, checksum) = kyso_append(base, batch, cell, true);
        eprintln!("  batch {batch}, pipelined: checksum {checksum}");
        println!(
            "| {batch} | {} | {} | {:.2} | {} | {:.2} |",
            fmt(raw),
            fmt(serial),
            serial / raw,
            fmt(piped),
            piped / raw
        );
    }
}

fn submitters_table(runtime: &tokio::runtime::Runtime, base: &Path, cell: Cell, sizes: Vec<usize>) {
    println!();
    println!("| submitters | acked ev/s | avg batch | p50 ms | p99 ms | CPU µs/ev |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for tasks in sizes {
        let r = runtime.block_on(submitters(base, tasks, cell, generic_append));
        println!("{}", r.row(tasks));
        eprintln!("  {tasks} submitters: checksum {}", r.checksum);
        eprintln!("{}", r.breakdown());
    }
}

fn domain_table(runtime: &tokio::runtime::Runtime, base: &Path, cell: Cell, sizes: Vec<usize>) {
    println!();
    println!(
        "Domain command path: RecordIssuance for unique citizens (decide + apply + salted leaf + durable append)."
    );
    println!();
    println!("| submitters | accepted cmds/s | avg batch | p50 ms | p99 ms | CPU µs/cmd |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for tasks in sizes {
        let r = runtime.block_on(domain_issuances(base, tasks, cell));
        println!("{}", r.row(tasks));
        eprintln!("  {tasks} domain submitters: checksum {}", r.checksum);
        eprintln!("{}", r.breakdown());
    }
}

fn generic_append(t: usize, n: u64) -> AppendToStreams {
    AppendToStreams { meta: meta(), appends: vec![one_event(format!("t{t}-{n}"), n)] }
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
fn raw_rocksdb(base: &Path, batch: usize, cell: Cell) -> f64 {
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
    while cell.goes_on(started, next) {
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

/// kyso's append path: envelope, stream head, Merkle leaf tile and tree head in one synced
/// batch. `pipelined`: as the sequencer runs it, the next batch staged and prepared on this
/// thread while the log-write thread makes the last one durable; else one thread does both.
fn kyso_append(base: &Path, batch: usize, cell: Cell, pipelined: bool) -> (f64, String) {
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let (store, mut writer): (_, LogWriter) = EventStore::open(dir.path(), true).expect("kyso store");
    let (written, landed) = std::sync::mpsc::channel();
    let disk = pipelined.then(|| WriteThread::spawn(Arc::clone(&store), move |outcome, _| drop(written.send(outcome))));
    let wait = || landed.recv().expect("the log-write thread answers every batch").expect("commit").last_seq;
    let mut writing = false;
    let meta = meta();
    let mut next = 0u64;
    // From here, as the submitters cells: the store's open is not the cell's work.
    let (cpu_before, threads_before) = (process_cpu(), threads_cpu());
    let started = Instant::now();
    while cell.goes_on(started, next) {
        let mut b = writer.begin(RegistryTime(0));
        for _ in 0..batch {
            next += 1;
            writer.stage(&mut b, &meta, vec![one_event(format!("citizen-{next:012}"), next)]).expect("stage");
        }
        match &disk {
            None => drop(writer.commit(b).expect("commit")),
            Some(disk) => {
                let prepared = writer.prepare(b);
                if writing {
                    writer.durable(wait());
                }
                disk.send(prepared);
                writing = true;
            }
        }
    }
    if writing {
        writer.durable(wait());
    }
    let rate = next as f64 / started.elapsed().as_secs_f64();
    let threads = per_thread(&threads_before, threads_cpu(), next);
    let process = cpu_per(cpu_before, process_cpu(), next).map_or_else(|| "n/a".into(), |us| format!("{us:.1}"));
    let head = store.tree_head();
    let checksum = format!("last seq {} root {}", head.size, &hex::encode(head.root)[..16]);
    (rate, format!("{checksum}; CPU µs per event: process {process}, by thread: {}", cpu_line(&threads)))
}

struct SubmitResult {
    rate: f64,
    avg_batch: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The whole process's CPU time per acknowledged command, if `/proc` tells it.
    cpu_us: Option<f64>,
    /// The same per thread (tokio's workers together), most first: which stage is busy.
    threads_us: Vec<(String, f64)>,
    /// Mean time of one synced batch write on the log-write thread (fsync included).
    write_ms: f64,
    checksum: String,
}

impl SubmitResult {
    /// Where the CPU went and how long a batch write took: which stage bounds the rate.
    fn breakdown(&self) -> String {
        format!("    write {:.2} ms/batch; CPU µs per command by thread: {}", self.write_ms, cpu_line(&self.threads_us))
    }

    fn row(&self, tasks: usize) -> String {
        let cpu = self.cpu_us.map_or_else(|| "n/a".to_string(), |us| format!("{us:.1}"));
        format!(
            "| {tasks} | {} | {:.0} | {:.2} | {:.2} | {cpu} |",
            fmt(self.rate),
            self.avg_batch,
            self.p50_ms,
            self.p99_ms
        )
    }
}

/// CPU time (user + system) of the whole process so far: every thread, RocksDB's flushes
/// and compactions included. Per command it varies less from run to run than a cell's
/// throughput (RecordIssuance at 1024 submitters, 2026-12-01: 13.1–14.7 µs/cmd while the
/// rate went 114–129k/s), so compare builds by it.
fn process_cpu() -> Option<Duration> {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?).map(|(_, cpu)| cpu)
}

/// Microseconds of the whole process's CPU per unit of work between two readings. Unlike
/// the per-thread figures it includes threads that ended inside the cell (the write-outs
/// of stream heads and salts).
fn cpu_per(before: Option<Duration>, after: Option<Duration>, done: u64) -> Option<f64> {
    match (before, after) {
        (Some(before), Some(after)) if done > 0 => Some((after - before).as_secs_f64() * 1e6 / done as f64),
        _ => None,
    }
}

/// CPU time so far of each live thread of this process, by thread name.
fn threads_cpu() -> HashMap<String, Duration> {
    let mut by_name = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return by_name };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let Some((name, cpu)) = stat_cpu(&stat) else { continue };
        let name = if name.starts_with("tokio") { "tokio" } else { name };
        *by_name.entry(name.to_string()).or_default() += cpu;
    }
    by_name
}

/// Each thread's CPU time between two readings of [`threads_cpu`], in µs per unit of work
/// (`done` events or commands), most first; threads that did next to nothing left out.
fn per_thread(before: &HashMap<String, Duration>, after: HashMap<String, Duration>, done: u64) -> Vec<(String, f64)> {
    let mut threads: Vec<(String, f64)> = after
        .into_iter()
        .map(|(name, after)| {
            let spent = after.saturating_sub(before.get(&name).copied().unwrap_or_default());
            (name, spent.as_secs_f64() * 1e6 / done.max(1) as f64)
        })
        .filter(|(_, us)| *us >= 0.05)
        .collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    threads
}

fn cpu_line(threads: &[(String, f64)]) -> String {
    threads.iter().map(|(name, us)| format!("{name} {us:.1}")).collect::<Vec<_>>().join(", ")
}

/// The name and CPU time (user + system) in a `/proc/…/stat` line, whose times are in
/// clock ticks of 1/100 s (Linux's `USER_HZ`).
fn stat_cpu(stat: &str) -> Option<(&str, Duration)> {
    // The name in parentheses may hold spaces; the fields after it do not.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let mut fields = stat.get(close + 1..)?.split_whitespace();
    // utime and stime are the 14th and 15th fields, the 12th and 13th after the name.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((stat.get(open + 1..close)?, Duration::from_millis((utime + stime) * 10)))
}

/// Many tasks, each submitting one command built by `make(task, n)` and awaiting its
/// durable answer, in a loop.
async fn run_submitters<H: Handler>(
    store: Arc<EventStore>,
    sequencer: Sequencer<H>,
    thread: std::thread::JoinHandle<()>,
    tasks: usize,
    cell: Cell,
    make: fn(usize, u64) -> H::Command,
    accepted: fn(&H::Reply) -> bool,
) -> SubmitResult {
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    // Commands handed out, under a count: a task stops when none are left.
    let claimed = Arc::new(AtomicU64::new(0));
    let cpu_before = process_cpu();
    let threads_before = threads_cpu();
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (sequencer, stop, counter) = (sequencer.clone(), Arc::clone(&stop), Arc::clone(&counter));
            let claimed = Arc::clone(&claimed);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && cell.claim(&claimed) {
                    n += 1;
                    let sent = Instant::now();
                    let reply = sequencer.submit(make(t, n)).await.expect("submit");
                    assert!(accepted(&reply), "benchmark commands are all accepted");
                    latencies.push(sent.elapsed());
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                latencies
            })
        })
        .collect();
    if let Cell::Time(limit) = cell {
        tokio::time::sleep(limit).await;
        stop.store(true, Ordering::Relaxed);
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.expect("submitter task"));
    }
    let elapsed = started.elapsed();
    // Before the stop: a clean stop writes a state snapshot, which is not the cell's work.
    let cpu_after = process_cpu();
    let threads_after = threads_cpu();
    let stats = sequencer.stats();
    let (commands, batches) = (stats.commands.load(Ordering::Relaxed), stats.batches.load(Ordering::Relaxed).max(1));
    let write_ms = stats.commit_micros.load(Ordering::Relaxed) as f64 / 1e3 / batches as f64;
    drop(sequencer);
    thread.join().expect("sequencer thread");
    let acked = counter.load(Ordering::Relaxed);
    let cpu_us = cpu_per(cpu_before, cpu_after, acked);
    let threads_us = per_thread(&threads_before, threads_after, acked);
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    let head = store.tree_head();
    SubmitResult {
        rate: acked as f64 / elapsed.as_secs_f64(),
        avg_batch: commands as f64 / batches as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        cpu_us,
        threads_us,
        write_ms,
        checksum: format!("last seq {} root {}", head.size, &hex::encode(head.root)[..16]),
    }
}

async fn submitters(base: &Path, tasks: usize, cell: Cell, make: fn(usize, u64) -> AppendToStreams) -> SubmitResult {
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let (store, writer) = EventStore::open(dir.path(), true).expect("kyso store");
    let (sequencer, thread) =
        Sequencer::start(writer, StreamAppender, Arc::new(SystemClock), SequencerConfig::default());
    run_submitters(store, sequencer, thread, tasks, cell, make, |r| r.is_ok()).await
}

const HUE: &str = include_str!("../../campaigns/thua-thien-hue.toml");

/// A unique, valid Huế CCCD per (task, n): birth years 1960–1999, six random-range digits.
fn citizen(t: usize, n: u64) -> Cccd {
    let id = (t as u64) << 32 | n;
    let (yy, range) = (60 + (id / 1_000_000) % 40, id % 1_000_000);
    Cccd::parse(&format!("0461{yy:02}{range:06}"), 2023).expect("a valid CCCD")
}

fn domain_issuance(t: usize, n: u64) -> Submission {
    let ca = CaId::parse(SEED_CAS[t % SEED_CAS.len()].0).expect("a seed CA");
    let issuance = RecordIssuance {
        citizen: citizen(t, n),
        ca: ca.clone(),
        channel: Channel::App,
        segment: Segment::AdultCitizen,
        commune: "19819".into(),
        place: Place::Commune,
        status: IssuanceStatus::Active,
        staff: None,
        serial: None,
        activated_at: RegistryTime(DOMAIN_NOW.0 - 60_000),
    };
    Submission {
        meta: Metadata { actor: format!("ca:{ca}"), ..Metadata::default() },
        command: Command::RecordIssuance(Box::new(issuance)),
    }
}

/// 2023-09-01 08:00 UTC, inside Huế's phase 1.
const DOMAIN_NOW: RegistryTime = RegistryTime(1_693_555_200_000);

async fn domain_issuances(base: &Path, tasks: usize, cell: Cell) -> SubmitResult {
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let (store, writer) = EventStore::open(dir.path(), true).expect("kyso store");
    let campaign = Campaign::from_toml(HUE).expect("the Huế campaign");
    // As `kyso serve` runs it: the inline directory, lookups answered with the view.
    let inline: Vec<Box<dyn commands::registrar::InlineProjection>> = vec![Box::new(projections::directory::Directory)];
    let registrar = Registrar::with_inline(Arc::clone(&store), campaign, inline)
        .expect("registrar")
        .answering(projections::citizen::answer);
    let clock = Arc::new(ManualClock::new(DOMAIN_NOW));
    let (sequencer, thread) = Sequencer::start(writer, registrar, clock, SequencerConfig::default());
    for (id, name, app) in SEED_CAS {
        let command =
            Command::RegisterCa { ca: CaId::parse(id).expect("a seed CA"), name: name.into(), app_name: app.into() };
        let meta = Metadata { actor: "admin".into(), ..Metadata::default() };
        sequencer.submit(Submission { meta, command }).await.expect("submit").expect("registered");
    }
    run_submitters(store, sequencer, thread, tasks, cell, domain_issuance, |r| r.is_ok()).await
}
