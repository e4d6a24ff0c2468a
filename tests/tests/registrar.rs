//! The campaign domain through the real path: sequencer, RocksDB, Merkle leaves with salted
//! commitments, the deadline scheduler, restart, failed writes, and the auditors' verifier.

use chrono::{TimeZone, Utc};
use commands::domain::*;
use commands::registrar::{CommandError, Registrar, Submission, replay};
use commands::{Clock, ManualClock, Sequencer, SequencerConfig, scheduler};
use event_store::{EventStore, Metadata, RegistryTime, Seq};
use std::sync::Arc;

const HUE: &str = include_str!("../../campaigns/thua-thien-hue.toml");

fn sub(actor: &str, command: Command) -> Submission {
    Submission { meta: Metadata { actor: actor.into(), ..Metadata::default() }, command }
}

fn start(
    dir: &std::path::Path,
    clock: Arc<ManualClock>,
) -> (Arc<EventStore>, Sequencer<Registrar>, std::thread::JoinHandle<()>) {
    let (store, writer) = EventStore::open(dir, true).unwrap();
    let registrar = Registrar::open(Arc::clone(&store), Campaign::from_toml(HUE).unwrap()).unwrap();
    let (sequencer, thread) = Sequencer::start(writer, registrar, clock, SequencerConfig::default());
    (store, sequencer, thread)
}

fn issuance(ca: &str, activated_at: RegistryTime) -> Command {
    Command::RecordIssuance(Box::new(RecordIssuance {
        citizen: Cccd::parse("046196000123", 2023).unwrap(),
        ca: CaId::parse(ca).unwrap(),
        channel: Channel::App,
        segment: Segment::AdultCitizen,
        commune: "19819".into(),
        place: Place::Commune,
        status: IssuanceStatus::Active,
        staff: None,
        serial: None,
        activated_at,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_cas_one_wins_refusal_is_logged_demand_expires_once_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = RegistryTime(Utc.with_ymd_and_hms(2023, 9, 1, 8, 0, 0).unwrap().timestamp_millis());
    let clock = Arc::new(ManualClock::new(t0));
    let (store, seq, thread) = start(dir.path(), Arc::clone(&clock));
    for (id, name, app) in commands::domain::ca::SEED_CAS {
        let cmd = Command::RegisterCa { ca: CaId::parse(id).unwrap(), name: name.into(), app_name: app.into() };
        seq.submit(sub("admin", cmd)).await.unwrap().unwrap();
    }

    // R1/R3: all six CAs race for one citizen; the sequencer lets exactly one in.
    let racers: Vec<_> = commands::domain::ca::SEED_CAS
        .iter()
        .map(|(id, _, _)| {
            let seq = seq.clone();
            tokio::spawn(async move { seq.submit(sub(id, issuance(id, t0))).await.unwrap() })
        })
        .collect();
    let mut winners = Vec::new();
    let mut logged = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(accepted) => winners.push(accepted.seqs.unwrap().0),
            Err(CommandError::Rejected { rejection: Rejection::AlreadyIssued { .. }, logged_seq: Some(_) }) => {
                logged += 1
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((winners.len(), logged), (1, 5));

    // R12: a demand nobody acts on expires after 48 h, once, even across a restart.
    let demand = Command::RegisterDemand {
        citizen: Cccd::parse("046196000456", 2023).unwrap(),
        mode: DemandMode::Home,
        phone: "0905123456".into(),
        commune: "19819".into(),
        chosen_ca: Some(CaId::parse("MISA-CA").unwrap()),
    };
    seq.submit(sub("portal", demand.clone())).await.unwrap().unwrap();
    clock.advance_ms(47 * 3_600_000);
    assert_eq!(scheduler::expire_due(&store, &seq, clock.as_ref()).await.unwrap(), 0);
    clock.advance_ms(2 * 3_600_000);
    drop(seq);
    thread.join().unwrap();
    drop(store);

    let (store, seq, thread) = start(dir.path(), Arc::clone(&clock));
    assert_eq!(scheduler::expire_due(&store, &seq, clock.as_ref()).await.unwrap(), 1);
    assert_eq!(scheduler::expire_due(&store, &seq, clock.as_ref()).await.unwrap(), 0, "exactly once");
    // After expiry the citizen may choose another CA.
    let Command::RegisterDemand { citizen, mode, phone, commune, .. } = demand else { unreachable!() };
    let again =
        Command::RegisterDemand { citizen, mode, phone, commune, chosen_ca: Some(CaId::parse("FPT-CA").unwrap()) };
    seq.submit(sub("portal", again)).await.unwrap().unwrap();
    drop(seq);
    thread.join().unwrap();

    // The log replays to the same registry, and verifies with the auditors' own tool.
    let live = replay(&store, &Campaign::from_toml(HUE).unwrap()).unwrap();
    let holding = live.citizen(&Cccd::parse("046196000123", 2023).unwrap()).unwrap().holding.unwrap();
    assert_eq!(holding.seq, winners[0], "the holder is the one the sequencer accepted");
    let report = replay_tools::verify_log(&store, None, |_| {}).unwrap();
    assert_eq!(report.events, store.last_seq().0);
    // R9: no leaf shows a CCCD.
    for n in 1..=store.last_seq().0 {
        let event = store.event(Seq(n)).unwrap();
        let salt = event.subject.as_ref().map(|s| store.salt(s).unwrap().unwrap());
        let leaf = event.leaf_bytes(salt.as_ref());
        assert!(!leaf.windows(12).any(|w| w == b"046196000123" || w == b"046196000456"), "seq {n} leaks a CCCD");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r6_a_legacy_file_imports_reports_bad_and_conflicting_rows_and_reimports_as_unchanged() {
    use commands::domain::legacy;
    use commands::import::{ImportReport, import_legacy};
    let dir = tempfile::tempdir().unwrap();
    let t0 = RegistryTime(Utc.with_ymd_and_hms(2023, 9, 1, 8, 0, 0).unwrap().timestamp_millis());
    let (_store, seq, thread) = start(dir.path(), Arc::new(ManualClock::new(t0)));
    for (id, name, app) in commands::domain::ca::SEED_CAS {
        let cmd = Command::RegisterCa { ca: CaId::parse(id).unwrap(), name: name.into(), app_name: app.into() };
        seq.submit(sub("admin", cmd)).await.unwrap().unwrap();
    }
    seq.submit(sub("ca:VNPT-CA", issuance("VNPT-CA", t0))).await.unwrap().unwrap();
    let csv = "cccd,issued_at,serial\n046196000001,2023-05-01,A1\n046196000123,2023-05-01,A2\nnot-a-cccd,2023-05-01,\n046196000002,2023-06-01,A3\n";
    let viettel = CaId::parse("VIETTEL-CA").unwrap();
    let meta = Metadata { actor: "ca:VIETTEL-CA".into(), ..Metadata::default() };
    let run = || async {
        let (rows, errors) = legacy::parse(csv, 2023);
        import_legacy(&seq, &meta, &viettel, rows, ImportReport { failed: errors, ..ImportReport::default() })
            .await
            .unwrap()
    };
    let first = run().await;
    assert_eq!((first.imported, first.unchanged), (2, 0));
    assert_eq!(first.failed.iter().map(|e| e.line).collect::<Vec<_>>(), vec![3, 4], "{:?}", first.failed);
    assert!(first.failed[0].problem.contains("already issued by VNPT-CA"), "{}", first.failed[0].problem);
    let again = run().await;
    assert_eq!((again.imported, again.unchanged, again.failed.len()), (0, 2, 2));
    drop(seq);
    thread.join().unwrap();
}

/// Runs `commands` random workload commands through a registrar writing a state snapshot
/// every `every` events, then stops it cleanly; answers the log's last seq.
async fn run_workload(dir: &std::path::Path, seed: u64, commands: usize, every: u64) -> Seq {
    use kyso_tests::workload::{self, Workload};
    use rand::SeedableRng;
    let (store, writer) = EventStore::open(dir, true).unwrap();
    let last = store.last_seq();
    let registrar =
        Registrar::open(Arc::clone(&store), Campaign::from_toml(HUE).unwrap()).unwrap().snapshot_every(every);
    let clock = Arc::new(ManualClock::new(workload::start_time()));
    clock.advance_ms(last.0 as i64 * 60_000);
    let (seq, thread) = Sequencer::start(writer, registrar, Arc::clone(&clock) as _, SequencerConfig::default());
    if last.0 == 0 {
        for cmd in workload::setup() {
            seq.submit(sub("admin", cmd)).await.unwrap().unwrap();
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut work = Workload::new(300);
    for _ in 0..commands {
        let cmd = work.next(&mut rng, clock.now());
        // Refusals are part of the workload; only the store failing is not.
        if let Err(CommandError::Storage(e)) = seq.submit(sub("load", cmd)).await.unwrap() {
            panic!("{e}");
        }
        clock.advance_ms(60_000);
    }
    drop(seq);
    thread.join().unwrap();
    store.last_seq()
}

/// Start-up loads the stored state snapshot and folds only the log after it, and gets
/// exactly the registry a fold of the whole log gets; a snapshot it cannot use (corrupt or
/// naming CAs it does not hold, of another format version or campaign, ahead of the log) is
/// passed over, never trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_snapshot_plus_the_log_after_it_equals_a_fold_of_the_whole_log() {
    use commands::snapshot::{self, Unusable};
    use event_store::{AsideOp, Cf};
    let dir = tempfile::tempdir().unwrap();
    let hue = Campaign::from_toml(HUE).unwrap();

    // Snapshots every 100 events while running, and one at the clean stop.
    let first = run_workload(dir.path(), 1, 400, 100).await;
    let (store, _writer) = EventStore::open(dir.path(), false).unwrap();
    let loaded = snapshot::load(&store, &hue).unwrap();
    assert_eq!((loaded.snapshot_seq, loaded.folded, loaded.unusable), (first, 0, None));
    assert_eq!(loaded.registry, replay(&store, &hue).unwrap());
    let old = store.get(Cf::State, snapshot::KEY).unwrap().unwrap();
    drop((store, _writer));

    // More commands, then the first snapshot put back: what a crash long after it leaves.
    let second = run_workload(dir.path(), 2, 400, 1_000_000).await;
    assert!(second > first);
    let (store, _writer) = EventStore::open(dir.path(), false).unwrap();
    let put = |bytes: Vec<u8>| store.write_aside(Cf::State, [AsideOp::Put(snapshot::KEY.to_vec(), bytes)]).unwrap();
    put(old.clone());
    let whole = replay(&store, &hue).unwrap();
    let loaded = snapshot::load(&store, &hue).unwrap();
    assert_eq!((loaded.snapshot_seq, loaded.folded, loaded.unusable), (first, second.0 - first.0, None));
    assert_eq!(loaded.registry, whole);

    let mut other_version = old.clone();
    other_version[0] = 99;
    let mut truncated = old.clone();
    truncated.truncate(old.len() / 2);
    let hung_yen = Campaign::from_toml(include_str!("../../campaigns/hung-yen.toml")).unwrap();
    let other_campaign = snapshot::encode(&replay(&store, &hung_yen).unwrap(), second);
    let ahead = snapshot::encode(&whole, Seq(second.0 + 1));
    // Decodes, but its holdings name CAs it does not hold.
    let mut nameless = whole.clone();
    nameless.ca_ids = Default::default();
    let nameless = snapshot::encode(&nameless, second);
    for (bytes, why) in [
        (other_version, Unusable::Version { found: 99 }),
        (truncated, Unusable::Corrupt),
        (nameless, Unusable::Corrupt),
        (other_campaign, Unusable::Campaign),
        (ahead, Unusable::AheadOfLog { snapshot: second.0 + 1, log: second.0 }),
    ] {
        put(bytes);
        let loaded = snapshot::load(&store, &hue).unwrap();
        assert_eq!((loaded.snapshot_seq, loaded.folded, loaded.unusable), (Seq(0), second.0, Some(why)));
        assert_eq!(loaded.registry, whole);
    }
}

/// Group commit is pipelined: a batch is decided while the one before it is written. A
/// failed write (injected, failing as a full disk would) refuses its batch and the batch
/// decided on top of it, and nothing else: every acknowledged event is in the log at the seq
/// it was acknowledged with, every event in the log was acknowledged, the log verifies, and
/// the registry the writer ends with (saved at its stop) equals a fold of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_writes_refuse_their_batches_and_leave_the_registry_equal_to_the_log() {
    use commands::SubmitError;
    use kyso_tests::workload::{self, Workload};
    use rand::SeedableRng;
    let dir = tempfile::tempdir().unwrap();
    let hue = Campaign::from_toml(HUE).unwrap();
    let (store, writer) = EventStore::open(dir.path(), true).unwrap();
    let registrar = Registrar::open(Arc::clone(&store), hue.clone()).unwrap().snapshot_every(200);
    let clock = Arc::new(ManualClock::new(workload::start_time()));
    // From batches of 4 commands on, the next batch is decided during the write and
    // prepared before the disk is free: both ways of waiting for it are in play.
    let config = SequencerConfig { overlap_at: 4, ..SequencerConfig::default() };
    let (seq, thread) = Sequencer::start(writer, registrar, Arc::clone(&clock) as _, config);
    for cmd in workload::setup() {
        seq.submit(sub("admin", cmd)).await.unwrap().unwrap();
    }
    let setup_last = store.last_seq();

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut work = Workload::new(300);
    let submitters: Vec<_> = (0..32)
        .map(|_| {
            let cmds: Vec<Command> = (0..60).map(|_| work.next(&mut rng, clock.now())).collect();
            let seq = seq.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for cmd in cmds {
                    outcomes.push((cmd.clone(), seq.submit(sub("load", cmd)).await));
                }
                outcomes
            })
        })
        .collect();
    // One write in three fails, counted in writes rather than time: a slower machine (or
    // build) must not see every write fail, nor a faster one none.
    let faults = {
        let (store, seq) = (Arc::clone(&store), seq.clone());
        tokio::spawn(async move {
            let mut armed_at = 0;
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                let landed = seq.stats().batches.load(std::sync::atomic::Ordering::Relaxed);
                if landed >= armed_at + 3 {
                    store.fail_next_writes(1);
                    armed_at = landed;
                }
            }
        })
    };
    let (mut acknowledged, mut refused) = (Vec::new(), 0);
    for task in submitters {
        for (cmd, outcome) in task.await.unwrap() {
            match outcome {
                Ok(Ok(accepted)) => acknowledged.extend(accepted.seqs.into_iter().flat_map(|(first, _)| {
                    accepted.events.iter().enumerate().map(move |(i, e)| (Seq(first.0 + i as u64), e.clone()))
                })),
                Ok(Err(CommandError::Rejected { rejection, logged_seq })) => {
                    if let Some(s) = logged_seq {
                        acknowledged.push((s, refusal_event(&cmd, &rejection).expect("a logged refusal has an event")));
                    }
                }
                Err(SubmitError::Storage(e)) => {
                    assert!(e.retryable(), "{e}");
                    refused += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    faults.abort();
    // Its handle to the sequencer must be gone before the sequencer can stop.
    assert!(faults.await.unwrap_err().is_cancelled());
    store.fail_next_writes(0);
    let failed = seq.stats().failed_batches.load(std::sync::atomic::Ordering::Relaxed);
    assert!(refused > 0 && failed > 0, "writes failed: {failed} batches, {refused} commands refused");
    assert!(acknowledged.len() > 200, "the load was real: {} events acknowledged", acknowledged.len());
    drop(seq);
    thread.join().unwrap();

    acknowledged.sort_by_key(|(s, _)| *s);
    let last = store.last_seq();
    let logged: Vec<Seq> = acknowledged.iter().map(|(s, _)| *s).collect();
    assert_eq!(logged, (setup_last.0 + 1..=last.0).map(Seq).collect::<Vec<_>>(), "the log holds exactly the acks");
    for (s, event) in &acknowledged {
        assert_eq!(&decoded(&store, *s), event, "seq {s}");
    }
    let report = replay_tools::verify_log(&store, None, |_| {}).unwrap();
    assert_eq!(report.events, last.0);
    let loaded = commands::snapshot::load(&store, &hue).unwrap();
    assert_eq!((loaded.snapshot_seq, loaded.folded), (last, 0), "the stop saved the live registry");
    assert_eq!(loaded.registry, replay(&store, &hue).unwrap(), "after {failed} failed batches");
}

fn decoded(store: &EventStore, seq: Seq) -> Event {
    commands::codec::decode(&store.event(seq).unwrap()).unwrap()
}
