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
    let report = verify_log(&store, |_| {}).unwrap();
    assert_eq!((report.events, report.erased, report.tree.size), (50, 0, 50));
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
            store.tamper_raw_put(Cf::Events, &seq.0.to_be_bytes(), &event.encode()).unwrap();
        }
    }
    let store = EventStore::open_read_only(dir.path()).unwrap();
    match verify_log(&store, |_| {}) {
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
        store.tamper_raw_put(Cf::Salts, b"046196000000", b"").unwrap();
    }
    let store = EventStore::open_read_only(dir.path()).unwrap();
    // An empty salt is corrupt, not erased: verify says so rather than skipping.
    assert!(verify_log(&store, |_| {}).is_err());
}
