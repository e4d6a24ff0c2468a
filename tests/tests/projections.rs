//! The projections against the real write path: a random workload, then every projection
//! rebuilt from the log must equal the live one byte for byte; a rebuild swaps in while
//! the live one serves; counts explain themselves; and kill -9 resumes from checkpoints
//! without double counting.

use commands::domain::{Campaign, Command, Registry};
use commands::registrar::{Registrar, Submission, fold, replay};
use commands::{Clock, ManualClock, Sequencer, SequencerConfig};
use event_store::{EventStore, Metadata, Seq};
use kyso_tests::workload::{self, Workload};
use projections::audit::{self, Subject};
use projections::citizen;
use projections::compliance::Compliance;
use projections::counts::{Counts, Filter};
use projections::demands::DemandBoard;
use projections::follower::{self, fold_log};
use projections::{Fold, Follower, KeyOut, Projections, history};
use rand::Rng;
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn campaign() -> Campaign {
    Campaign::from_toml(workload::HUE).unwrap()
}

/// The stored snapshot equals a fold of the log from scratch, byte for byte.
fn assert_rebuild_equals_stored<P: Fold>(store: &EventStore) {
    let (checkpoint, stored) = follower::stored::<P>(store).unwrap().expect("a snapshot was written");
    assert_eq!(checkpoint, store.last_seq(), "{} is caught up", P::NAME);
    let rebuilt: P = fold_log(store, checkpoint, &mut KeyOut::default(), &mut |_| {}).unwrap();
    assert!(postcard::to_stdvec(&rebuilt).unwrap() == stored, "{}: rebuild differs from the stored form", P::NAME);
}

/// The audit index keys equal those a fresh fold writes.
fn assert_audit_index_exact(store: &EventStore, projections: &Projections) {
    let prefix = projections.audit.key_prefix();
    let stored: Vec<Vec<u8>> =
        store.scan_prefix(event_store::Cf::Projections, &prefix).map(|kv| kv.unwrap().0.to_vec()).collect();
    let mut keys = KeyOut::new(prefix.clone());
    let mut rebuilt = Vec::new();
    let mut index = projections::audit::AuditIndex::default();
    for env in store.read_from(Seq(1)) {
        let d = projections::Decoded::from_envelope(env.unwrap()).unwrap();
        index.apply(&d.ctx(), &d.event, &mut keys);
        rebuilt.extend(keys.take());
    }
    rebuilt.sort();
    assert_eq!(stored.len(), rebuilt.len());
    assert!(stored == rebuilt, "audit index differs from a rebuild");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_workload_rebuilds_byte_for_byte_and_a_rebuild_swaps_in_while_serving() {
    let mut rng = kyso_tests::seed::rng("random_workload_rebuilds_byte_for_byte");
    let dir = tempfile::tempdir().unwrap();
    let (store, writer) = EventStore::open(dir.path(), true).unwrap();
    let clock = Arc::new(ManualClock::new(workload::start_time()));
    let registrar = Registrar::open(Arc::clone(&store), campaign()).unwrap().answering(citizen::answer);
    let (sequencer, thread) = Sequencer::start(writer, registrar, clock.clone(), SequencerConfig::default());
    let projections = Projections::open(&store).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let following = Follower::new(Arc::clone(&store), &projections).spawn(Arc::clone(&stop));

    let submit = |command| {
        let meta = Metadata { actor: "test".into(), ..Metadata::default() };
        sequencer.submit(Submission { meta, command })
    };
    for cmd in workload::setup() {
        submit(cmd).await.unwrap().unwrap();
    }
    let mut work = Workload::new(300);
    let mut rebuild = None;
    let mut answered = 0;
    // The log folded so far, in a registry of the test's own.
    let (mut mirror, mut folded) = (Registry::new(campaign()), 0);
    for n in 0..3000 {
        let command = work.next(&mut rng, clock.now());
        let looked_up = match &command {
            Command::LookUpCitizen { citizen, .. } => Some(*citizen),
            _ => None,
        };
        // A recorded lookup's answer, and a read of the writer's registry after it, are
        // the view that the log folded up to the lookup renders (nothing else is
        // submitted meanwhile).
        if let (Some(c), Ok(accepted)) = (looked_up, submit(command).await.unwrap()) {
            folded += fold(&store, &mut mirror, Seq(folded + 1)).unwrap();
            let expected = citizen::render(&mirror, &c);
            let answer = accepted.answer.expect("the citizen view answers a recorded lookup");
            assert_eq!(citizen::decode(answer.as_deref()).unwrap(), expected, "lookup of {c}");
            let read = sequencer.read(move |r| citizen::render(r.registry(), &c)).await.unwrap();
            assert_eq!(read, expected, "read of {c}");
            answered += usize::from(expected.is_some());
        }
        clock.advance_ms(rng.random_range(1_000..600_000));
        if n == 1500 {
            // Rebuild aside while commands and the follower keep going; it swaps in later.
            let (p, s) = (projections.clone(), Arc::clone(&store));
            rebuild = Some(std::thread::spawn(move || {
                p.rebuild("counts", &s, &|_, _| {}).unwrap();
                p.rebuild("audit", &s, &|_, _| {}).unwrap();
            }));
        }
    }
    rebuild.unwrap().join().unwrap();
    assert!(answered > 50, "lookups of citizens with a view: {answered}");
    // Let the follower swap the rebuilds in and catch up, then stop it (it persists).
    while projections.lag(store.last_seq()) > 0 || projections.counts.rebuild_progress().is_some() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Release);
    following.join().unwrap().unwrap();
    assert_eq!(projections.audit.generation(), 1, "the audit rebuild swapped in");

    assert_rebuild_equals_stored::<Counts>(&store);
    assert_rebuild_equals_stored::<Compliance>(&store);
    assert_rebuild_equals_stored::<DemandBoard>(&store);
    assert_rebuild_equals_stored::<audit::AuditIndex>(&store);
    assert_audit_index_exact(&store, &projections);

    // The workload exercised what the projections count.
    let counts = projections.counts.read(Clone::clone);
    let total = counts.total(&Filter::default());
    assert!(total.issued > 100 && total.late > 0 && total.technical_error > 0, "{total:?}");
    assert!(!counts.legacy.is_empty());
    let compliance = projections.compliance.read(|c| c.report());
    assert!(compliance.iter().any(|l| l.refused_duplicates > 0 && l.lookup_share.is_some()));
    assert!(projections.demands.read(|d| d.summary()).values().any(|s| s.len() > 1));

    // Every count cell explains itself: the events behind it are exactly as many.
    let cell = counts.cells.keys().max_by_key(|c| counts.cells[*c].issued).unwrap().clone();
    let filter = Filter {
        ca: Some(cell.ca.clone()),
        district: Some(cell.district.clone()),
        from: Some(cell.day),
        to: Some(cell.day),
        ..Filter::default()
    };
    let behind = audit::explain(&store, &projections.audit.key_prefix(), &filter).unwrap();
    let t = counts.total(&filter);
    assert_eq!(behind.len() as u64, t.issued + t.switched_in);
    let without_ca = Filter { ca: None, ..filter.clone() };
    let all = audit::explain(&store, &projections.audit.key_prefix(), &without_ca).unwrap();
    let t = counts.total(&without_ca);
    assert_eq!(all.len() as u64, t.issued + t.switched_in);

    // A citizen's trail is in seq order and holds the event that made their holder.
    let replayed = replay(&store, &campaign()).unwrap();
    let (cccd, issued) = replayed
        .citizens
        .keys()
        .find_map(|c| Some((*c, citizen::render(&replayed, c)?.issued.filter(|i| !i.legacy)?)))
        .unwrap();
    let seqs = audit::seqs(&store, &projections.audit.key_prefix(), &Subject::Citizen(cccd), Seq(1), 1000).unwrap();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert!(seqs.contains(&issued.seq));
    let read = sequencer.read(move |r| citizen::render(r.registry(), &cccd)).await.unwrap();
    assert_eq!(read.unwrap().issued, Some(issued));

    // Time travel: the whole log gives the live counts; half-way gives fewer.
    let last = store.last_seq();
    assert_eq!(history::as_of(&store, last).unwrap().counts, counts);
    let mid_time = store.event(Seq(last.0 / 2)).unwrap().recorded_at;
    let mid = history::seq_at(&store, mid_time).unwrap();
    assert!(mid >= Seq(last.0 / 2) && store.event(mid).unwrap().recorded_at == mid_time);
    assert!(history::as_of(&store, mid).unwrap().counts.total(&Filter::default()).issued <= total.issued);

    drop(sequencer);
    thread.join().unwrap();
}

#[test]
fn kill_9_resumes_every_projection_from_its_checkpoint_without_double_counting() {
    let mut rng = kyso_tests::seed::rng("kill_9_resumes_projections");
    let rounds: usize = std::env::var("KYSO_CRASH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(4);
    let dir = tempfile::tempdir().unwrap();
    let (mut resumed_from_checkpoint, mut resumed_from_state) = (false, false);
    for round in 0..rounds {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_projection-crash"))
            .arg(dir.path())
            .arg(rng.random::<u64>().to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok);
        let resumed = lines.next().expect("the child starts");
        // `RESUMED state=0 counts=0 …` on the first round; a later round must start past 0.
        let mut parts = resumed.split(' ').skip(1);
        resumed_from_state |= parts.next().is_some_and(|state| state != "state=0");
        resumed_from_checkpoint |= round > 0 && !parts.any(|p| p.ends_with("=0"));
        assert_eq!(lines.next().as_deref(), Some("UP"), "round {round}: the child did not get going");
        // Past the 2 s snapshot period often enough to kill mid-write as well as between.
        std::thread::sleep(Duration::from_millis(rng.random_range(200..3500)));
        child.kill().unwrap();
        child.wait().unwrap();
        eprintln!("round {round}: {resumed}");
    }
    assert!(resumed_from_checkpoint, "no round resumed from a stored checkpoint");
    assert!(resumed_from_state, "no round started from a registry snapshot");

    let (store, _writer) = EventStore::open(dir.path(), false).unwrap();
    // Whatever the kills interrupted, the registry a start-up loads is the whole log's fold.
    let loaded = commands::snapshot::load(&store, &campaign()).unwrap();
    assert_eq!(loaded.unusable, None);
    assert_eq!(loaded.registry, commands::registrar::replay(&store, &campaign()).unwrap());
    let projections = Projections::open(&store).unwrap();
    let mut follower = Follower::new(Arc::clone(&store), &projections);
    follower.catch_up().unwrap();
    follower.persist().unwrap();
    assert_rebuild_equals_stored::<Counts>(&store);
    assert_rebuild_equals_stored::<Compliance>(&store);
    assert_rebuild_equals_stored::<DemandBoard>(&store);
    assert_rebuild_equals_stored::<audit::AuditIndex>(&store);
    assert_audit_index_exact(&store, &projections);
    // The inline view was written with the events: exact after every kill.
}
