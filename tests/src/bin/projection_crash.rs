//! A child for the projections' kill -9 test: drives the random workload through the real
//! sequencer while the follower folds the asynchronous
//! projections, until it is killed. Prints `RESUMED state=<registry snapshot seq>
//! <checkpoints>` at start, then `UP` once commands are flowing.

use commands::registrar::{Registrar, Submission};
use commands::{Clock, ManualClock};
use commands::{Sequencer, SequencerConfig};
use event_store::{EventStore, Metadata};
use kyso_tests::workload::{self, Workload};
use projections::{Follower, Projections};
use rand::SeedableRng;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: projection-crash DATA_DIR SEED");
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).expect("usage: projection-crash DATA_DIR SEED");
    let (store, writer) = EventStore::open(&dir, true).expect("opening the store");
    let campaign = commands::domain::Campaign::from_toml(workload::HUE).unwrap();
    // Time goes on from the last recorded event, as a real clock would across a restart.
    let last = store.last_seq();
    let start = if last.0 == 0 { workload::start_time() } else { store.event(last).unwrap().recorded_at };
    let clock = Arc::new(ManualClock::new(start));
    // Registry snapshots often enough that kills land before, during and after writing them.
    let registrar = Registrar::open(Arc::clone(&store), campaign).expect("registrar").snapshot_every(200);
    let state_seq = registrar.snapshot_seq();
    let (sequencer, _thread) = Sequencer::start(writer, registrar, clock.clone(), SequencerConfig::default());
    let projections = Projections::open(&store).expect("projections");
    let checkpoints: Vec<String> = projections.checkpoints().iter().map(|(n, s)| format!("{n}={s}")).collect();
    println!("RESUMED state={} {}", state_seq.0, checkpoints.join(" "));
    let _follower = Follower::new(Arc::clone(&store), &projections).spawn(Arc::new(AtomicBool::new(false)));

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut work = Workload::new(400);
    if last.0 == 0 {
        for cmd in workload::setup() {
            let meta = Metadata { actor: "admin".into(), ..Metadata::default() };
            sequencer.submit(Submission { meta, command: cmd }).await.unwrap().unwrap();
        }
    }
    let mut out = std::io::stdout().lock();
    for n in 0u64.. {
        let now = clock.now();
        let command = work.next(&mut rng, now);
        let meta = Metadata { actor: "load".into(), ..Metadata::default() };
        // Refusals are expected; only the store failing is not.
        if let Err(commands::registrar::CommandError::Storage(e)) =
            sequencer.submit(Submission { meta, command }).await.expect("submit")
        {
            panic!("storage failed: {e}");
        }
        clock.advance_ms(60_000);
        if n == 200 {
            writeln!(out, "UP").and_then(|()| out.flush()).expect("stdout");
        }
    }
}
