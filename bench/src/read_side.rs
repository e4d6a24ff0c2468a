//! Rebuild throughput of the projections over a synthetic log (issue 5: ≥ 1M events/s for
//! the counts), beside raw RocksDB iteration of the same column in the same run, and the
//! latency of the Sở's citizen lookup with every citizen of that log in the registry.

use crate::fmt;
use commands::codec;
use commands::domain::event::IssuanceRecorded;
use commands::domain::{CaId, Campaign, Cccd, Channel, Event, IssuanceStatus, Place, Segment};
use commands::{ManualClock, Sequencer, SequencerConfig, registrar, snapshot};
use event_store::{Cf, EventStore, Metadata, RegistryTime, Seq, StreamAppend};
use projections::citizen;
use projections::compliance::Compliance;
use projections::counts::Counts;
use projections::follower::fold_log;
use projections::{Decoded, KeyOut};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const CAS: [&str; 6] = ["VNPT-CA", "VIETTEL-CA", "MISA-CA", "BKAV-CA", "FPT-CA", "CA2"];

fn cccd(i: u64) -> Cccd {
    Cccd::parse(&format!("0461{:02}{:06}", 60 + (i / 1_000_000) % 40, i % 1_000_000), 2023).expect("valid")
}

/// Two issuances for every lookup, across 6 CAs, 40 communes, 90 days and every channel.
fn synthetic(i: u64) -> Event {
    let ca = CaId::parse(CAS[(i % 6) as usize]).expect("a seed CA");
    if i % 3 == 2 {
        return Event::CitizenLookedUp { citizen: cccd(i), ca, staff: None };
    }
    let at = RegistryTime(1_693_555_200_000 + (i % 90) as i64 * 86_400_000);
    Event::IssuanceRecorded(Box::new(IssuanceRecorded {
        citizen: cccd(i),
        ca,
        channel: [Channel::App, Channel::CaOffice, Channel::DoorToDoor, Channel::Demand][(i % 4) as usize],
        segment: Segment::ALL[(i % 6) as usize],
        commune: format!("{}", 19700 + i % 40),
        district: format!("{}", 470 + i % 8),
        place: Place::Commune,
        status: IssuanceStatus::Active,
        staff: None,
        serial: None,
        activated_at: at,
        late: i.is_multiple_of(50),
        free_until: RegistryTime(at.0 + 365 * 86_400_000),
        switched_from: None,
        closed_demand: None,
    }))
}

/// A store at `dir` holding `events` synthetic events, written in batches of 10,000.
pub fn synthetic_log(dir: &Path, events: u64) -> Arc<EventStore> {
    let (store, mut writer) = EventStore::open(dir, true).expect("kyso store");
    let meta = Metadata { actor: "bench".into(), ..Metadata::default() };
    let started = Instant::now();
    let mut i = 0;
    while i < events {
        let mut batch = writer.begin(RegistryTime(1_693_555_200_000 + i as i64));
        let n = (events - i).min(10_000);
        let appends: Vec<StreamAppend> = (i..i + n)
            .map(|k| {
                let (stream, data) = codec::encode(&synthetic(k));
                StreamAppend { stream, expected: event_store::ExpectedVersion::Any, events: vec![data] }
            })
            .collect();
        writer.stage(&mut batch, &meta, appends).expect("stage");
        writer.commit(batch).expect("commit");
        i += n;
        if i % 1_000_000 == 0 {
            eprintln!("  synthetic log: {i} events, {:.0}s", started.elapsed().as_secs_f64());
        }
    }
    store
}

pub fn table(base: &Path, events: u64) {
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let store = synthetic_log(dir.path(), events);
    let t = Instant::now();
    store.settle().expect("flush and compactions");
    eprintln!("  compactions after writing the log: {:.1}s", t.elapsed().as_secs_f64());
    let last = store.last_seq();
    println!();
    println!("Rebuild from a synthetic log of {} events (2/3 issuances, 1/3 lookups):", fmt(events as f64));
    println!();
    println!("| pass | seconds | events/s | vs raw iteration |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, secs: f64, raw: f64| {
        let rate = events as f64 / secs;
        println!("| {name} | {secs:.2} | {} | {:.2} |", fmt(rate), rate / raw);
        rate
    };
    let raw = {
        let t = Instant::now();
        let bytes: usize = store.scan_prefix(Cf::Bundles, &[]).map(|kv| kv.expect("read").1.len()).sum();
        let secs = t.elapsed().as_secs_f64();
        eprintln!("  raw iteration: {bytes} bytes");
        events as f64 / secs
    };
    row("raw RocksDB iteration of the events column", events as f64 / raw, raw);
    let t = Instant::now();
    let mut decoded = 0u64;
    for env in store.read_from(Seq(1)) {
        std::hint::black_box(Decoded::from_envelope(env.expect("read")).expect("decode"));
        decoded += 1;
    }
    assert_eq!(decoded, events);
    row("read + decode envelope and event", t.elapsed().as_secs_f64(), raw);
    let t = Instant::now();
    let counts: Counts = fold_log(&store, last, &mut KeyOut::default(), &mut |_| {}).expect("fold");
    row("rebuild counts", t.elapsed().as_secs_f64(), raw);
    assert_eq!(counts.total(&Default::default()).issued, events - events / 3);
    let t = Instant::now();
    let _: Compliance = fold_log(&store, last, &mut KeyOut::default(), &mut |_| {}).expect("fold");
    row("rebuild compliance", t.elapsed().as_secs_f64(), raw);
    let t = Instant::now();
    let report = replay_tools::verify_log(&store, None, |_| {}).expect("an untouched log verifies");
    row("kyso-replay verify (every leaf and the root)", t.elapsed().as_secs_f64(), raw);
    assert_eq!(report.events, events);

    start_up(&store);
    proofs(&store);
    drop(store);
    reopen(dir.path());
    lookups(dir.path(), events);
}

/// What opening the store costs `kyso serve`: for writing, a thread also loads the hashes
/// of every stream and subject (the writer's `Known`) while the writer already works;
/// read-only opens are the baseline.
fn reopen(dir: &Path) {
    let t = Instant::now();
    drop(EventStore::open_read_only(dir).expect("read-only open"));
    let read_only = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (store, mut writer) = EventStore::open(dir, false).expect("open for writing");
    let writing = t.elapsed().as_secs_f64();
    while !writer.known_loaded() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let loaded = t.elapsed().as_secs_f64();
    drop((writer, store));
    println!();
    println!("Opening the same store:");
    println!();
    println!("| open | seconds |");
    println!("|---|---:|");
    println!("| read-only | {read_only:.2} |");
    println!("| for writing | {writing:.2} |");
    println!("| for writing, until every stream's and subject's hash is loaded (on a thread) | {loaded:.2} |");
}

/// What start-up costs with and without a registry state snapshot, and what making one
/// costs the sequencer (it copies the registry between batches; a thread encodes the copy).
fn start_up(store: &EventStore) {
    let campaign = Campaign::from_toml(include_str!("../../campaigns/thua-thien-hue.toml")).expect("the Huế campaign");
    let last = store.last_seq();
    let t = Instant::now();
    let registry = registrar::replay(store, &campaign).expect("replay");
    let fold = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let copy = registry.clone();
    let clone = t.elapsed().as_secs_f64();
    drop(copy);
    let t = Instant::now();
    let encoded = snapshot::encode(&registry, last);
    let encode = t.elapsed().as_secs_f64();
    let bytes = encoded.len();
    let t = Instant::now();
    snapshot::put(store, encoded).expect("snapshot");
    let put = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let loaded = snapshot::load(store, &campaign).expect("load");
    let load = t.elapsed().as_secs_f64();
    assert_eq!((loaded.snapshot_seq, loaded.folded, loaded.unusable), (last, 0, None));
    assert!(loaded.registry == registry, "the snapshot loads the registry it stored");
    println!();
    println!("Registry start-up over the same log ({} citizens):", fmt(registry.citizens.len() as f64));
    println!();
    println!("| step | seconds |");
    println!("|---|---:|");
    println!("| fold the whole log (no snapshot) | {fold:.2} |");
    println!("| copy the registry (the sequencer waits for this) | {clone:.2} |");
    println!("| encode the copy as a state snapshot ({:.0} MB, on another thread) | {encode:.2} |", bytes as f64 / 1e6);
    println!("| store it (write + flush, on another thread) | {put:.2} |");
    println!("| load the snapshot (nothing to fold after it) | {load:.2} |");
}

/// p50/p99 of building an inclusion proof (random seq, whole tree) and a consistency proof
/// (random older size to the whole tree): what `/v1/log/receipt` and auditors wait for.
fn proofs(store: &EventStore) {
    let size = store.tree_head().size;
    let mut rng = rand::rng();
    let mut time = |f: &mut dyn FnMut(u64)| {
        let mut samples: Vec<f64> = (0..20_000)
            .map(|_| {
                let at = rand::Rng::random_range(&mut rng, 1..=size);
                let t = Instant::now();
                f(at);
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        (samples[samples.len() / 2], samples[samples.len() * 99 / 100])
    };
    let (i50, i99) = time(&mut |seq| {
        std::hint::black_box(store.inclusion_proof(Seq(seq), size).expect("proof"));
    });
    let (c50, c99) = time(&mut |from| {
        std::hint::black_box(store.consistency_proof(from, size).expect("proof"));
    });
    println!();
    println!("Proofs over a tree of {} leaves (20,000 random samples each):", fmt(size as f64));
    println!();
    println!("| proof | p50 µs | p99 µs |");
    println!("|---|---:|---:|");
    println!("| inclusion | {i50:.1} | {i99:.1} |");
    println!("| consistency | {c50:.1} | {c99:.1} |");
}

/// p50/p99 of the Sở's citizen lookup (`GET /v1/citizens/{cccd}` for admin and auditors
/// without HTTP): a read through an otherwise idle sequencer, which renders the view from
/// the registry it holds, here loaded from the snapshot `start_up` stored.
fn lookups(dir: &Path, events: u64) {
    let campaign = Campaign::from_toml(include_str!("../../campaigns/thua-thien-hue.toml")).expect("the Huế campaign");
    let (store, writer) = EventStore::open(dir, false).expect("open for writing");
    let registrar = registrar::Registrar::open(store, campaign).expect("registrar");
    let citizens = registrar.registry().citizens.len();
    let clock = Arc::new(ManualClock::new(RegistryTime(1_693_555_200_000)));
    let (sequencer, thread) = Sequencer::start(writer, registrar, clock, SequencerConfig::default());
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let samples = 200_000.min(events * 2);
    let mut lat = Vec::with_capacity(samples as usize);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    runtime.block_on(async {
        for _ in 0..samples {
            // xorshift: a spread of keys without a random-number crate; every third event
            // is a lookup, whose citizen has no view.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = x % events;
            let c = cccd(i - i % 3);
            let t = Instant::now();
            let view = sequencer.read(move |r| citizen::render(r.registry(), &c)).await.expect("read");
            lat.push(t.elapsed().as_nanos() as u64);
            assert!(std::hint::black_box(view).is_some(), "an issued citizen has a view");
        }
    });
    drop(sequencer);
    thread.join().expect("the sequencer stops");
    lat.sort_unstable();
    let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    println!();
    println!(
        "The Sở's citizen lookup through the sequencer, {} citizens in the registry, {} random reads, one at a time:",
        fmt(citizens as f64),
        fmt(samples as f64)
    );
    println!();
    println!("| p50 µs | p99 µs | max µs |");
    println!("|---:|---:|---:|");
    println!("| {:.1} | {:.1} | {:.1} |", pct(0.5), pct(0.99), *lat.last().expect("samples") as f64 / 1000.0);
}
