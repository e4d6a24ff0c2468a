//! The log is the outbox: every event reaches JetStream exactly once and in seq order,
//! through NATS outages and kill -9 of the publishing process, and commands never wait for
//! NATS. All against a real `nats-server` that the fixture starts and stops.

use commands::registrar::{Registrar, Submission};
use commands::{Clock, ManualClock, Sequencer, SequencerConfig};
use event_store::{EventStore, Metadata};
use kyso_tests::nats::NatsServer;
use kyso_tests::publish::{Replica, assert_replica_equals_primary, assert_stream_is_the_log};
use kyso_tests::workload::{self, Workload};
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_under_load_blocks_no_command_and_loses_or_repeats_no_event() {
    let mut nats = NatsServer::start();
    let (dir, replica_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (store, writer) = EventStore::open(dir.path(), true).unwrap();
    let clock = Arc::new(ManualClock::new(workload::start_time()));
    // As `kyso serve` runs it: with the inline directory, answering lookups with the view.
    let inline: Vec<Box<dyn commands::registrar::InlineProjection>> = vec![Box::new(projections::directory::Directory)];
    let registrar = Registrar::with_inline(
        Arc::clone(&store),
        commands::domain::Campaign::from_toml(workload::HUE).unwrap(),
        inline,
    )
    .unwrap()
    .answering(projections::citizen::answer);
    let (sequencer, thread) = Sequencer::start(writer, registrar, clock.clone(), SequencerConfig::default());
    let status = Arc::new(publisher::Status::default());
    let (stop_publisher, stopped) = tokio::sync::watch::channel(false);
    let publishing = tokio::spawn(publisher::run(
        Arc::clone(&store),
        kyso_tests::publish::config(&nats.url()),
        Arc::clone(&status),
        stopped,
    ));
    for command in workload::setup() {
        let meta = Metadata { actor: "admin".into(), ..Metadata::default() };
        sequencer.submit(Submission { meta, command }).await.unwrap().unwrap();
    }
    // Continuous load from another task, counting answered commands.
    let (stop_load, answered) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let load = tokio::spawn({
        let (sequencer, clock, stop, answered) =
            (sequencer.clone(), clock.clone(), stop_load.clone(), answered.clone());
        async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let mut work = Workload::new(300);
            while !stop.load(Ordering::Acquire) {
                let meta = Metadata { actor: "ca:VNPT-CA".into(), ..Metadata::default() };
                let command = work.next(&mut rng, clock.now());
                let answer = sequencer.submit(Submission { meta, command }).await.unwrap();
                assert!(!matches!(answer, Err(commands::registrar::CommandError::Storage(_))));
                answered.fetch_add(1, Ordering::AcqRel);
                clock.advance_ms(60_000);
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        }
    });
    wait_until("the publisher catching up", Duration::from_secs(30), || status.acked().0 > 100).await;
    let replica = Replica::start(&nats.url(), replica_dir.path());

    nats.stop();
    let during = answered.load(Ordering::Acquire);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = answered.load(Ordering::Acquire);
    assert!(after > during + 100, "commands go on while NATS is down ({during} → {after})");
    assert!(!status.connected() || status.acked() < store.last_seq(), "the backlog is visible");
    nats.restart();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_load.store(true, Ordering::Release);
    load.await.unwrap();

    let last = store.last_seq();
    wait_until("the backlog draining", Duration::from_secs(60), || status.acked() == last).await;
    stop_publisher.send(true).unwrap();
    publishing.await.unwrap();
    assert_eq!(publisher::stored_cursor(&store).unwrap(), last, "a clean stop stores the cursor");
    assert_stream_is_the_log(&nats.url(), &store).await;
    assert_reporting_consumer_matches_counts(&nats.url(), &store).await;
    // The replica, which lived through the same outage, ends with the same log and projections.
    wait_until("the replica catching up", Duration::from_secs(60), || replica.store.last_seq() == last).await;
    assert_eq!(replica.following.status.broken(), None);
    // The Sở's lookups on the replica render what they render on the primary.
    let citizens: Vec<_> = sequencer.read(|r| r.registry().citizens.keys().copied().collect()).await.unwrap();
    assert!(citizens.len() > 50, "citizens: {}", citizens.len());
    for c in citizens {
        let primary = sequencer.read(move |r| projections::citizen::render(r.registry(), &c)).await.unwrap();
        let replicated = replica.writer.read(move |r| projections::citizen::render(r.0.registry(), &c)).await.unwrap();
        assert_eq!(replicated, primary, "the view of {c}");
    }
    let replica = replica.stop().await;
    drop(sequencer);
    thread.join().unwrap();
    assert_replica_equals_primary(&store, &replica);
}

#[test]
fn kill_9_while_publishing_resumes_from_the_cursor_without_loss_or_duplicates() {
    let nats = NatsServer::start();
    let mut rng = kyso_tests::seed::rng("kill_9_while_publishing");
    let dir = tempfile::tempdir().unwrap();
    let child = |mode: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_publish-crash"))
            .arg(dir.path())
            .arg(mode)
            .arg(nats.url())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap()
    };
    for round in 0..3 {
        let mut running = child(rng.random::<u64>().to_string());
        let mut lines = BufReader::new(running.stdout.take().unwrap()).lines().map_while(Result::ok);
        assert_eq!(lines.next().as_deref(), Some("UP"), "round {round}: the child did not get going");
        std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
        running.kill().unwrap();
        running.wait().unwrap();
    }
    let mut drain = child("drain".into());
    let mut lines = BufReader::new(drain.stdout.take().unwrap()).lines().map_while(Result::ok);
    let drained = lines.next().expect("the drain child answers");
    assert!(drained.starts_with("DRAINED "), "{drained}");
    assert!(drain.wait().unwrap().success());

    let store = EventStore::open_read_only(dir.path()).unwrap();
    assert!(store.last_seq().0 > 300, "the rounds produced a real log");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(assert_stream_is_the_log(&nats.url(), &store));
}

/// The reporting example counts what the counts projection counts, and a second run over
/// the same stream changes nothing (idempotent by seq).
async fn assert_reporting_consumer_matches_counts(url: &str, store: &Arc<EventStore>) {
    use projections::counts::{Dim, Filter};
    let dir = tempfile::tempdir().unwrap();
    let (state, csv) = (dir.path().join("state.json"), dir.path().join("issued.csv"));
    let stream = kyso_tests::publish::config(url).stream_name();
    let first = replay_tools::report::run(url, &stream, &state, &csv, false).await.unwrap();
    assert_eq!(first.last_seq, store.last_seq().0);
    let again = replay_tools::report::run(url, &stream, &state, &csv, false).await.unwrap();
    assert_eq!(again, first, "a second run counts nothing twice");
    let p = projections::Projections::open(store).unwrap();
    projections::Follower::new(Arc::clone(store), &p).catch_up().unwrap();
    let rows = p.counts.read(|c| c.group_by(&Filter::default(), &[Dim::Day, Dim::District, Dim::Ca]));
    let expected: std::collections::BTreeMap<_, _> = rows
        .into_iter()
        .filter(|r| r.tally.issued > 0)
        .map(|r| ((r.group[0].clone(), r.group[1].clone(), r.group[2].clone()), r.tally.issued))
        .collect();
    assert_eq!(first.issued, expected);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), expected.len() + 1, "a header and one row per day, district and CA");
}
