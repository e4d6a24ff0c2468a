//! `verify` names what no longer matches after someone edits the data dir.

use event_store::{Cf, EventData, EventStore, ExpectedVersion, Metadata, RegistryTime, Seq, StreamAppend, StreamId};
use replay_tools::{VerifyError, verify_log};

fn filled(dir: &std::path::Path, events: u64) {
    let (_store, mut writer) = EventStore::open(dir, true).unwrap();
    for i in 0..events {
        let mut batch = writer.begin(RegistryTime(i as i64));
        let subject = (i % 2 == 0).then(|| format!("04619600{:04}", i % 7));
        let append = StreamAppend {
            stream: StreamId::new(format!("s{}", i % 5)),
            expected: ExpectedVersion::Any,
            events: vec![EventData { event_type: "T".into(), schema_version: 1, payload: vec![i as u8; 20], subject }],
        };
        writer.stage(&mut batch, &Metadata::default(), vec![append]).unwrap();
        writer.commit(batch).unwrap();
    }
}

#[test]
fn an_untouched_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 50);
    let store = EventStore::open_read_only(dir.path()).unwrap();
    let report = verify_log(&store, None, |_| {}).unwrap();
    assert_eq!((report.events, report.erased, report.tree.size, report.checkpoints), (50, 0, 50, 0));
}

/// A store from before the salt index keeps `subject → salt` only: verify finds those
/// salts by point lookups and the log still verifies.
#[test]
fn a_store_without_the_salt_index_verifies() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 50);
    {
        let (store, _writer) = EventStore::open(dir.path(), false).unwrap();
        let index: Vec<_> = store.salts_by_first_seq().map(Result::unwrap).collect();
        assert_eq!(index.len(), 7, "7 subjects, each indexed under its first seq");
        for (seq, salt) in index {
            let subject = store.event(seq).unwrap().subject.unwrap();
            store.tamper_raw_put(Cf::Salts, subject.as_bytes(), &salt).unwrap();
            store.tamper_raw_delete(Cf::SaltIndex, &seq.0.to_be_bytes()).unwrap();
        }
    }
    let store = EventStore::open_read_only(dir.path()).unwrap();
    let report = verify_log(&store, None, |_| {}).unwrap();
    assert_eq!((report.events, report.erased), (50, 0));
}

#[test]
fn one_changed_payload_byte_is_named_by_its_seq() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 50);
    {
        let (store, _writer) = EventStore::open(dir.path(), false).unwrap();
        for seq in [Seq(17), Seq(18)] {
            let mut event = store.event(seq).unwrap();
            event.payload[3] ^= 1;
            store.tamper_event(seq, Some(&event.encode())).unwrap();
        }
    }
    let store = EventStore::open_read_only(dir.path()).unwrap();
    match verify_log(&store, None, |_| {}) {
        Err(VerifyError::LeafMismatch { seq }) => assert_eq!(seq, Seq(17)),
        other => panic!("expected a leaf mismatch at 17, got {other:?}"),
    }
}

#[test]
fn a_corrupt_salt_is_an_error_not_a_skip() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 30);
    {
        let (store, _writer) = EventStore::open(dir.path(), false).unwrap();
        // Both places the salt is kept: under the subject, and by the seq that created it
        // (what verify reads in step with the log).
        let keys = store.salt_keys("046196000000").unwrap();
        assert_eq!(keys.len(), 2, "the salt is indexed by its first seq");
        for (cf, key) in keys {
            store.tamper_raw_put(cf, &key, b"").unwrap();
        }
    }
    let store = EventStore::open_read_only(dir.path()).unwrap();
    // An empty salt is corrupt, not erased: verify says so rather than skipping.
    assert!(matches!(verify_log(&store, None, |_| {}), Err(VerifyError::Store(_))));
}

use event_store::checkpoint::{Checkpoint, RegistryKey};
use event_store::receipt::Receipt;

fn key() -> RegistryKey {
    RegistryKey::from_seed("kyso.example/test", [5; 32]).unwrap()
}

/// Signs and stores checkpoints at each of `sizes`, as the server's notary does.
fn sign_at(store: &EventStore, key: &RegistryKey, sizes: &[u64]) {
    for &size in sizes {
        let root = store.root_at(size).unwrap();
        store.put_checkpoint(size, &key.sign(&Checkpoint { origin: key.name(), size, root })).unwrap();
    }
}

fn receipt_for(store: &EventStore, seq: u64, size: u64) -> Receipt {
    Receipt {
        seq,
        leaf_hash: hex::encode(store.leaf_hash(Seq(seq)).unwrap()),
        checkpoint: store.checkpoint(size).unwrap().unwrap(),
        proof: store.inclusion_proof(Seq(seq), size).unwrap().iter().map(hex::encode).collect(),
    }
}

#[test]
fn signed_checkpoints_are_checked_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 50);
    let key = key();
    {
        let (store, _writer) = EventStore::open(dir.path(), false).unwrap();
        sign_at(&store, &key, &[0, 1, 20, 37, 50]);
    }
    let store = EventStore::open_read_only(dir.path()).unwrap();
    let report = verify_log(&store, Some(&key.verifier()), |_| {}).unwrap();
    assert_eq!(report.checkpoints, 5);
    // Without the key the signatures cannot be checked, and verify says so.
    assert!(matches!(verify_log(&store, None, |_| {}), Err(VerifyError::NoKey)));
    // Another key's view: the signatures are not by it.
    let other = RegistryKey::from_seed("kyso.example/test", [6; 32]).unwrap();
    assert!(matches!(verify_log(&store, Some(&other.verifier()), |_| {}), Err(VerifyError::BadCheckpoint { .. })));
}

#[test]
fn dropping_the_last_events_is_caught_by_the_checkpoint_that_covered_them() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 50);
    let key = key();
    {
        let (store, _writer) = EventStore::open(dir.path(), false).unwrap();
        sign_at(&store, &key, &[20, 50]);
        // The attacker removes seqs 46..=50 and makes the tree head agree with what is left.
        let root = store.root_at(45).unwrap();
        // From the end: cutting an event out of a bundle shifts the ones after it.
        for seq in (46..=50u64).rev() {
            store.tamper_event(Seq(seq), None).unwrap();
        }
        let mut head = 45u64.to_be_bytes().to_vec();
        head.extend_from_slice(&root);
        store.tamper_raw_put(Cf::Meta, b"tree", &head).unwrap();
    }
    let store = EventStore::open_read_only(dir.path()).unwrap();
    match verify_log(&store, Some(&key.verifier()), |_| {}) {
        Err(VerifyError::CheckpointBeyondLog { size: 50, events: 45 }) => {}
        other => panic!("expected the checkpoint at 50 to name the drop, got {other:?}"),
    }
}

/// The strongest attack on a data dir: rewrite one event and recompute every leaf, node and
/// head after it, so the store agrees with itself. Only what was signed before shows it.
#[test]
fn a_rewritten_and_recomputed_history_fails_the_old_checkpoints_and_receipts() {
    let (original, forged) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    filled(original.path(), 50);
    let key = key();
    let (receipt, receipt_of_rewritten) = {
        let (store, _writer) = EventStore::open(original.path(), false).unwrap();
        sign_at(&store, &key, &[20, 40]);
        (receipt_for(&store, 35, 40), receipt_for(&store, 30, 40))
    };
    receipt.verify(&key.verifier()).unwrap();
    {
        let source = EventStore::open_read_only(original.path()).unwrap();
        // Same salts, so every leaf but the rewritten one comes out identical. Put before
        // the forger's writer opens: a writer learns which subjects have salts at open.
        {
            let (store, _writer) = EventStore::open(forged.path(), true).unwrap();
            for item in source.salts_by_first_seq() {
                let (seq, salt) = item.unwrap();
                let subject = source.event(seq).unwrap().subject.unwrap();
                let stored = [&salt[..], &seq.0.to_be_bytes()].concat();
                store.tamper_raw_put(Cf::Salts, subject.as_bytes(), &stored).unwrap();
                store.tamper_raw_put(Cf::SaltIndex, &seq.0.to_be_bytes(), &salt).unwrap();
            }
        }
        let (store, mut writer) = EventStore::open(forged.path(), false).unwrap();
        for event in source.read_from(Seq(1)) {
            let mut event = event.unwrap();
            if event.seq == Seq(30) {
                event.payload[0] ^= 0xFF;
            }
            let mut batch = writer.begin(event.recorded_at);
            let data = EventData {
                event_type: event.event_type,
                schema_version: event.schema_version,
                payload: event.payload,
                subject: event.subject,
            };
            let append = StreamAppend { stream: event.stream, expected: ExpectedVersion::Any, events: vec![data] };
            writer.stage(&mut batch, &event.meta, vec![append]).unwrap();
            writer.commit(batch).unwrap();
        }
        for item in source.checkpoints() {
            let (size, note) = item.unwrap();
            store.put_checkpoint(size, &note).unwrap();
        }
        // The forged log verifies on its own terms…
        assert!(verify_log(&store, None, |_| {}).is_err(), "it holds checkpoints, so a key is needed");
        store.tamper_raw_delete(Cf::Meta, &[b"ckpt/".as_slice(), &40u64.to_be_bytes()].concat()).unwrap();
        store.tamper_raw_delete(Cf::Meta, &[b"ckpt/".as_slice(), &20u64.to_be_bytes()].concat()).unwrap();
        verify_log(&store, None, |_| {}).unwrap();
        // …and even gets a fresh signature from the registry's key over its new root.
        sign_at(&store, &key, &[50]);
        let source_notes: Vec<_> = source.checkpoints().map(|c| c.unwrap()).collect();
        for (size, note) in source_notes {
            store.put_checkpoint(size, &note).unwrap();
        }
    }
    let store = EventStore::open_read_only(forged.path()).unwrap();
    // The checkpoint signed before the rewrite names it; the one before seq 30 still holds.
    match verify_log(&store, Some(&key.verifier()), |_| {}) {
        Err(VerifyError::CheckpointMismatch { size: 40 }) => {}
        other => panic!("expected the checkpoint at 40 to fail, got {other:?}"),
    }
    // The CA's receipts from before the rewrite fail against the rewritten log.
    assert!(matches!(
        replay_tools::check_receipt_against(&store, &receipt),
        Err(replay_tools::ReceiptCheckError::TreeRewritten { size: 40 })
    ));
    assert!(matches!(
        replay_tools::check_receipt_against(&store, &receipt_of_rewritten),
        Err(replay_tools::ReceiptCheckError::LeafChanged { seq: 30 })
    ));
}

#[test]
fn leaf_hashes_in_runs_equal_leaf_hashes_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 600);
    let store = EventStore::open_read_only(dir.path()).unwrap();
    for (from, to) in [(1, 1), (1, 600), (200, 530), (256, 257), (513, 600)] {
        let one_by_one: Vec<_> = (from..=to).map(|s| store.leaf_hash(Seq(s)).unwrap()).collect();
        assert_eq!(store.leaf_hashes(Seq(from), Seq(to)).unwrap(), one_by_one, "{from}..={to}");
    }
    assert!(store.leaf_hashes(Seq(1), Seq(601)).is_err());
}
