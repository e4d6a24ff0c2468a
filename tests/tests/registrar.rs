//! The campaign domain through the real path: sequencer, RocksDB, Merkle leaves with salted
//! commitments, the deadline scheduler, restart, and the auditors' verifier.

use chrono::{TimeZone, Utc};
use commands::domain::*;
use commands::registrar::{CommandError, Registrar, Submission, replay};
use commands::{ManualClock, Sequencer, SequencerConfig, scheduler};
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
    let holding = live.citizen(&Cccd::parse("046196000123", 2023).unwrap()).unwrap().holding.clone().unwrap();
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
