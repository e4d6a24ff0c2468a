//! A child for the publisher's kill -9 test: drives the random workload through the real
//! sequencer while the NATS publisher follows the log, until it is killed. Prints `UP` once
//! commands are flowing. With `drain` instead of a seed it sends no commands, waits until
//! JetStream has acknowledged the whole log, prints `DRAINED` and exits.

use commands::registrar::{Registrar, Submission};
use commands::{Clock, ManualClock, Sequencer, SequencerConfig};
use event_store::{EventStore, Metadata};
use kyso_tests::workload::{self, Workload};
use rand::SeedableRng;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: publish-crash DATA_DIR SEED|drain NATS_URL";
    let (dir, mode, url) = (args.next().expect(usage), args.next().expect(usage), args.next().expect(usage));
    let (store, writer) = EventStore::open(&dir, true).expect("opening the store");
    let status = Arc::new(publisher::Status::default());
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(publisher::run(Arc::clone(&store), kyso_tests::publish::config(&url), Arc::clone(&status), stopped));
    if mode == "drain" {
        while status.acked() < store.last_seq() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!("DRAINED {}", status.acked());
        return;
    }
    let seed: u64 = mode.parse().expect(usage);
    let last = store.last_seq();
    let start = if last.0 == 0 { workload::start_time() } else { store.event(last).unwrap().recorded_at };
    let clock = Arc::new(ManualClock::new(start));
    let campaign = commands::domain::Campaign::from_toml(workload::HUE).unwrap();
    let registrar = Registrar::open(Arc::clone(&store), campaign).expect("registrar");
    let (sequencer, _thread) = Sequencer::start(writer, registrar, clock.clone(), SequencerConfig::default());
    if last.0 == 0 {
        for command in workload::setup() {
            let meta = Metadata { actor: "admin".into(), ..Metadata::default() };
            sequencer.submit(Submission { meta, command }).await.unwrap().unwrap();
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut work = Workload::new(400);
    let mut out = std::io::stdout().lock();
    for n in 0u64.. {
        let command = work.next(&mut rng, clock.now());
        let meta = Metadata { actor: "ca:VNPT-CA".into(), ..Metadata::default() };
        if let Err(commands::registrar::CommandError::Storage(e)) =
            sequencer.submit(Submission { meta, command }).await.expect("submit")
        {
            panic!("storage failed: {e}");
        }
        clock.advance_ms(60_000);
        if n == 100 {
            writeln!(out, "UP").and_then(|()| out.flush()).expect("stdout");
        }
        // A steady load, not a flood: the stream is read back message by message.
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}
