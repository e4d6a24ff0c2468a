//! The auditors' tools on a log made by the real registrar: the dispute story of the seed
//! scenario, exports checked with the public key alone, and our proofs checked by code we
//! did not write (a Python RFC 9162 verifier using only hashlib).

use chrono::{TimeZone, Utc};
use commands::domain::*;
use commands::registrar::{CommandError, Registrar, Submission};
use commands::{ManualClock, Sequencer, SequencerConfig};
use event_store::checkpoint::{Checkpoint, RegistryKey};
use event_store::{EventStore, Metadata, RegistryTime, Seq};
use replay_tools::dispute::dispute;
use replay_tools::export::{VerifyExportError, export, verify_export};
use serde_json::json;
use std::sync::Arc;

const HUE: &str = include_str!("../../campaigns/thua-thien-hue.toml");
const CITIZEN: &str = "046196000123";

fn sub(actor: &str, command: Command) -> Submission {
    Submission { meta: Metadata { actor: actor.into(), ..Metadata::default() }, command }
}

fn at(h: u32, m: u32) -> RegistryTime {
    RegistryTime(Utc.with_ymd_and_hms(2023, 9, 1, h, m, 0).unwrap().timestamp_millis())
}

fn issuance(ca: &str, citizen: &str, activated_at: RegistryTime) -> Command {
    Command::RecordIssuance(Box::new(RecordIssuance {
        citizen: Cccd::parse(citizen, 2023).unwrap(),
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

fn key() -> RegistryKey {
    RegistryKey::from_seed("kyso.example/test", [9; 32]).unwrap()
}

fn sign_now(store: &EventStore, key: &RegistryKey) -> u64 {
    let head = store.tree_head();
    store
        .put_checkpoint(head.size, &key.sign(&Checkpoint { origin: key.name(), size: head.size, root: head.root }))
        .unwrap();
    head.size
}

/// The seed scenario: VNPT activates first (08:00) but records two hours later; Viettel
/// activates at 08:30 and records at 08:35. Plus filler citizens, so the log has some size.
async fn seed_scenario(dir: &std::path::Path) -> Arc<EventStore> {
    let clock = Arc::new(ManualClock::new(at(7, 0)));
    let (store, writer) = EventStore::open(dir, true).unwrap();
    let registrar = Registrar::open(Arc::clone(&store), Campaign::from_toml(HUE).unwrap()).unwrap();
    let (seq, thread) = Sequencer::start(writer, registrar, clock.clone(), SequencerConfig::default());
    for (id, name, app) in commands::domain::ca::SEED_CAS {
        let cmd = Command::RegisterCa { ca: CaId::parse(id).unwrap(), name: name.into(), app_name: app.into() };
        seq.submit(sub("admin", cmd)).await.unwrap().unwrap();
    }
    let lookup = |ca: &str| Command::LookUpCitizen {
        citizen: Cccd::parse(CITIZEN, 2023).unwrap(),
        ca: CaId::parse(ca).unwrap(),
        staff: None,
    };
    clock.set(at(7, 55));
    seq.submit(sub("ca:VNPT-CA", lookup("VNPT-CA"))).await.unwrap().unwrap();
    clock.set(at(8, 33));
    seq.submit(sub("ca:VIETTEL-CA", lookup("VIETTEL-CA"))).await.unwrap().unwrap();
    clock.set(at(8, 35));
    seq.submit(sub("ca:VIETTEL-CA", issuance("VIETTEL-CA", CITIZEN, at(8, 30)))).await.unwrap().unwrap();
    clock.set(at(8, 45));
    for i in 0..40 {
        let other = format!("0461960010{i:02}");
        seq.submit(sub("ca:FPT-CA", issuance("FPT-CA", &other, at(8, 40)))).await.unwrap().unwrap();
    }
    clock.set(at(10, 0));
    match seq.submit(sub("ca:VNPT-CA", issuance("VNPT-CA", CITIZEN, at(8, 0)))).await.unwrap() {
        Err(CommandError::Rejected { rejection: Rejection::AlreadyIssued { .. }, logged_seq: Some(_) }) => {}
        other => panic!("VNPT must be refused, got {other:?}"),
    }
    drop(seq);
    thread.join().unwrap();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispute_tells_who_recorded_first_with_verified_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let store = seed_scenario(dir.path()).await;
    let key = key();
    sign_now(&store, &key);
    let story = dispute(&store, CITIZEN, Some(&key.verifier())).unwrap();
    let holder = story.holder.as_ref().unwrap();
    assert_eq!(holder.ca, "VIETTEL-CA");
    assert_eq!((holder.activated_at, holder.recorded_at), (at(8, 30), at(8, 35)));
    let types: Vec<_> = story.lines.iter().map(|l| l.event_type).collect();
    assert_eq!(types, ["CitizenLookedUp", "CitizenLookedUp", "IssuanceRecorded", "AttemptRefused"]);
    // Only this citizen's events, none of the filler.
    let text = story.text();
    assert!(text.contains("FIRST RECORDED: VIETTEL-CA holds the citizen"), "{text}");
    assert!(text.contains("VNPT-CA's attempt (activated 2023-09-01T08:00:00.000Z, recorded 2023-09-01T10:00:00.000Z, 2.0 h later) was REFUSED: VIETTEL-CA had recorded first"), "{text}");
    assert!(text.contains("activated 30 min before the holder, but the first record decides"), "{text}");
    assert!(text.contains("Holder: VIETTEL-CA"), "{text}");
    assert!(text.contains("signature checked"), "{text}");
    // The decisive events: the winning issuance and the refusal, each proved.
    assert_eq!(story.proofs.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![story.lines[2].seq, story.lines[3].seq]);
    assert!(dispute(&store, "04619600012", None).is_err(), "an 11-digit CCCD is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_verify_with_the_public_key_alone_and_name_what_was_changed() {
    let dir = tempfile::tempdir().unwrap();
    let store = seed_scenario(dir.path()).await;
    let key = key();
    let last = sign_now(&store, &key);
    for (from, to, redact) in [(1, last, false), (5, 30, false), (7, last, true), (last, last, false)] {
        let mut out = Vec::new();
        export(&store, from, to, redact, &mut out, |_| {}).unwrap();
        let report = verify_export(out.as_slice(), &key.verifier()).unwrap();
        assert_eq!((report.from, report.to, report.checkpoint_size), (from, to, last));
        assert_eq!(report.redacted > 0, redact, "personal events are redacted only when asked");
    }
    let mut out = Vec::new();
    export(&store, 3, last, false, &mut out, |_| {}).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // One changed character in an event's payload.
    let mut event: serde_json::Value = serde_json::from_str(lines[10]).unwrap();
    let payload = event["event"]["payload"].as_str().unwrap().to_string();
    let flipped = if payload.starts_with('A') { payload.replacen('A', "B", 1) } else { format!("A{}", &payload[1..]) };
    event["event"]["payload"] = json!(flipped);
    let changed = [&lines[..10], &[event.to_string().as_str()], &lines[11..]].concat().join("\n");
    assert!(matches!(verify_export(changed.as_bytes(), &key.verifier()), Err(VerifyExportError::RootMismatch(_))));
    // A dropped event.
    let dropped = [&lines[..10], &lines[11..]].concat().join("\n");
    assert!(matches!(verify_export(dropped.as_bytes(), &key.verifier()), Err(VerifyExportError::Gap { line: 11, .. })));
    // Another key.
    let other = RegistryKey::from_seed("kyso.example/test", [1; 32]).unwrap();
    assert!(matches!(verify_export(text.as_bytes(), &other.verifier()), Err(VerifyExportError::Checkpoint(_))));
    // Counts of the range as CSV: the header and one row for FPT's 40 and one for Viettel.
    let mut csv = Vec::new();
    replay_tools::export::counts_csv(&store, 1, last, &mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.starts_with("day,district,commune,ca,channel,issued,"), "{csv}");
    assert!(csv.contains(",FPT-CA,app,40,"), "{csv}");
    assert!(csv.contains(",VIETTEL-CA,app,1,"), "{csv}");
}

/// Our inclusion and consistency proofs, checked by an RFC 9162 verifier we did not write in
/// Rust: `tests/scripts/rfc6962_check.py`, hashlib only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_verifier_accepts_our_proofs_and_refuses_altered_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = seed_scenario(dir.path()).await;
    let size = store.tree_head().size;
    let leaves: Vec<String> = (1..=size).map(|s| hex::encode(store.leaf_hash(Seq(s)).unwrap())).collect();
    let root = |n: u64| hex::encode(store.root_at(n).unwrap());
    let mut roots = Vec::new();
    let mut inclusion = Vec::new();
    let mut consistency = Vec::new();
    for n in [1, 2, 3, 7, 8, 9, 31, 32, size - 1, size] {
        roots.push(json!({ "leaf_hashes": leaves[..n as usize], "root": root(n) }));
        for seq in [1, n.div_ceil(2), n] {
            let proof: Vec<String> = store.inclusion_proof(Seq(seq), n).unwrap().iter().map(hex::encode).collect();
            let case = json!({ "index": seq - 1, "size": n, "leaf_hash": leaves[seq as usize - 1], "proof": proof, "root": root(n), "valid": true });
            inclusion.push(case.clone());
            // The same proof for a neighbour's leaf must fail.
            let mut wrong = case;
            wrong["leaf_hash"] = json!(leaves[(seq as usize) % n as usize]);
            wrong["valid"] = json!(n == 1);
            inclusion.push(wrong);
        }
        for from in [1, 2, 5, 8, n / 2, n] {
            if from == 0 || from > n {
                continue;
            }
            let proof: Vec<String> = store.consistency_proof(from, n).unwrap().iter().map(hex::encode).collect();
            consistency.push(json!({ "from": from, "to": n, "from_root": root(from), "to_root": root(n), "proof": proof, "valid": true }));
            if from < n {
                consistency.push(json!({ "from": from, "to": n, "from_root": leaves[0], "to_root": root(n), "proof": proof, "valid": from == 1 }));
            }
        }
    }
    let doc = json!({ "roots": roots, "inclusion": inclusion, "consistency": consistency });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rfc6962_check.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the independent verifier");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), doc.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));
}

/// R9: after erasure the citizen's leaves are unlinkable commitments, the tree and every
/// signed checkpoint still verify, and the audit index no longer lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_unlinks_a_citizen_and_the_log_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let store = seed_scenario(dir.path()).await;
    let key = key();
    sign_now(&store, &key);
    let projections = projections::Projections::open(&store).unwrap();
    projections::Follower::new(Arc::clone(&store), &projections).catch_up().unwrap();
    let citizen = Cccd::parse(CITIZEN, 2023).unwrap();
    let trail = |p: &projections::Projections| {
        let subject = projections::audit::Subject::Citizen(citizen);
        projections::audit::seqs(&store, &p.audit.key_prefix(), &subject, Seq(1), usize::MAX).unwrap()
    };
    assert_eq!(trail(&projections).len(), 4);
    let before = replay_tools::verify_log(&store, Some(&key.verifier()), |_| {}).unwrap();
    assert_eq!(before.erased, 0);

    let salt = store.salt(CITIZEN).unwrap().unwrap();
    let erased = projections::erasure::erase_citizen(&store, &projections, &citizen).unwrap();
    assert!(erased.salt);
    assert_eq!(store.salt(CITIZEN).unwrap(), None);
    assert!(store.salts_by_first_seq().all(|entry| entry.unwrap().1 != salt), "the salt index forgot it too");
    assert!(trail(&projections).is_empty());
    let after = replay_tools::verify_log(&store, Some(&key.verifier()), |_| {}).unwrap();
    assert_eq!((after.erased, after.tree, after.checkpoints), (4, before.tree, 1));
    // Other citizens are untouched.
    assert!(store.salt("046196001000").unwrap().is_some());
}
