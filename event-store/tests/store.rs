//! The RocksDB log: appends, optimistic concurrency, reads, reopen, and refusing bad bytes.

use event_store::{
    AppendError, Cf, EventData, EventStore, ExpectedVersion, FORMAT_VERSION, LogWriter, Metadata, RegistryTime, Seq,
    StoreError, StreamAppend, StreamHead, StreamId, merkle, verify,
};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

fn event(payload: &[u8]) -> EventData {
    EventData { event_type: "Tested".into(), schema_version: 1, payload: payload.to_vec(), subject: None }
}

fn append(stream: &str, expected: ExpectedVersion, n: usize) -> StreamAppend {
    StreamAppend { stream: StreamId::new(stream), expected, events: (0..n).map(|i| event(&[i as u8])).collect() }
}

/// One personal event (a lookup) in the citizen's stream, its CCCD the subject.
fn personal(cccd: &str) -> StreamAppend {
    StreamAppend {
        stream: StreamId::new(format!("citizen-{cccd}")),
        expected: ExpectedVersion::Any,
        events: vec![EventData {
            event_type: "Looked".into(),
            schema_version: 1,
            payload: cccd.as_bytes().to_vec(),
            subject: Some(cccd.into()),
        }],
    }
}

fn meta() -> Metadata {
    Metadata { actor: "test".into(), ..Metadata::default() }
}

/// One batch of one append, committed.
fn commit_one(writer: &mut LogWriter, append: StreamAppend) {
    let mut batch = writer.begin(RegistryTime(0));
    writer.stage(&mut batch, &meta(), vec![append]).unwrap();
    writer.commit(batch).unwrap();
}

#[test]
fn group_commit_assigns_gap_free_seqs_and_extends_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut writer) = EventStore::open(dir.path(), true).unwrap();
    let mut batch = writer.begin(RegistryTime(1_000));
    let a = writer.stage(&mut batch, &meta(), vec![append("a", ExpectedVersion::NoStream, 2)]).unwrap();
    let b = writer.stage(&mut batch, &meta(), vec![append("b", ExpectedVersion::Any, 1)]).unwrap();
    // The same stream twice in one batch: the second command sees the first.
    let a2 = writer.stage(&mut batch, &meta(), vec![append("a", ExpectedVersion::Exact(2), 1)]).unwrap();
    assert_eq!((a.first_seq, a.last_seq, b.first_seq, a2.stream_versions.clone()), (Seq(1), Seq(2), Seq(3), vec![3]));
    batch.put(Cf::State, b"k".to_vec(), b"v".to_vec());
    let committed = writer.commit(batch).unwrap();
    assert_eq!(committed.last_seq, Seq(4));
    assert_eq!(store.get(Cf::State, b"k").unwrap().as_deref(), Some(&b"v"[..]));

    let all: Vec<_> = store.read_from(Seq(1)).collect::<Result<_, _>>().unwrap();
    assert_eq!(all.iter().map(|e| e.seq.0).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert!(all.iter().all(|e| e.recorded_at == RegistryTime(1_000)));
    let a_events = store.read_stream(&StreamId::new("a"), 2).unwrap();
    assert_eq!(a_events.iter().map(|e| (e.seq.0, e.stream_version)).collect::<Vec<_>>(), vec![(2, 2), (4, 3)]);
    assert_eq!(store.read_stream(&StreamId::new("a"), 1).unwrap().len(), 3);
    assert!(store.read_stream(&StreamId::new("a"), 4).unwrap().is_empty());
    assert!(store.read_stream(&StreamId::new("nope"), 1).unwrap().is_empty());

    let leaves: Vec<_> = all.iter().map(|e| merkle::hash_leaf(&e.leaf_bytes(None))).collect();
    let head = store.tree_head();
    assert_eq!(head.size, 4);
    for (i, leaf) in leaves.iter().enumerate() {
        let proof = store.inclusion_proof(Seq(i as u64 + 1), 4).unwrap();
        verify::verify_inclusion(i as u64, 4, leaf, &proof, &head.root).unwrap();
    }
}

#[test]
fn a_conflicting_command_stages_nothing_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut writer) = EventStore::open(dir.path(), true).unwrap();
    let mut batch = writer.begin(RegistryTime(0));
    writer.stage(&mut batch, &meta(), vec![append("a", ExpectedVersion::NoStream, 1)]).unwrap();
    let err = writer
        .stage(
            &mut batch,
            &meta(),
            vec![append("b", ExpectedVersion::NoStream, 1), append("a", ExpectedVersion::NoStream, 1)],
        )
        .unwrap_err();
    match err {
        AppendError::Conflict(c) => assert_eq!((c.stream.as_str(), c.actual), ("a", 1)),
        other => panic!("expected a conflict, got {other}"),
    }
    writer.stage(&mut batch, &meta(), vec![append("b", ExpectedVersion::NoStream, 1)]).unwrap();
    writer.commit(batch).unwrap();
    assert_eq!(store.last_seq(), Seq(2));
    assert!(matches!(
        writer.stage(&mut writer.begin(RegistryTime(0)), &meta(), vec![append("", ExpectedVersion::Any, 1)]),
        Err(AppendError::InvalidStreamId(0))
    ));
}

/// A batch prepared on top of one still being written sees its stream heads and salts; when
/// the earlier write fails, the rewind forgets both, and the next batch takes their seqs
/// from the durable state (the second is never written).
#[test]
fn a_failed_write_rewinds_the_writer_past_every_batch_prepared_after_the_durable_one() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut writer) = EventStore::open(dir.path(), true).unwrap();
    let personal = |stream: &str| StreamAppend {
        stream: StreamId::new(stream),
        expected: ExpectedVersion::Any,
        events: vec![EventData { subject: Some("046196000123".into()), ..event(b"p") }],
    };
    commit_one(&mut writer, append("s", ExpectedVersion::Any, 2));
    let durable = store.tree_head();

    let mut first = writer.begin(RegistryTime(0));
    writer.stage(&mut first, &meta(), vec![append("s", ExpectedVersion::Exact(2), 1), personal("p")]).unwrap();
    let first = writer.prepare(first);
    let mut second = writer.begin(RegistryTime(0));
    let on_top = writer.stage(&mut second, &meta(), vec![append("s", ExpectedVersion::Exact(3), 1)]).unwrap();
    assert_eq!((on_top.first_seq, on_top.stream_versions), (Seq(5), vec![4]), "sees the batch being written");
    let second = writer.prepare(second);
    assert_eq!((first.last_seq(), second.last_seq(), writer.last_prepared()), (Seq(4), Seq(5), Seq(5)));

    store.fail_next_writes(1);
    assert!(matches!(store.write(first), Err(e @ StoreError::Io(_)) if e.retryable()));
    writer.rewind();
    drop(second);
    assert_eq!((store.tree_head(), writer.last_prepared()), (durable, Seq(2)));
    // Nothing of the failed batch reached the store's overlays either.
    assert_eq!(store.stream_head(&StreamId::new("s")).unwrap().version, 2);
    assert_eq!(store.stream_head(&StreamId::new("p")).unwrap().version, 0);
    assert_eq!(store.salt("046196000123").unwrap(), None);

    let mut again = writer.begin(RegistryTime(0));
    let staged =
        writer.stage(&mut again, &meta(), vec![append("s", ExpectedVersion::Exact(2), 1), personal("p")]).unwrap();
    assert_eq!((staged.first_seq, staged.stream_versions), (Seq(3), vec![3, 1]));
    writer.commit(again).unwrap();
    let events: Vec<_> = store.read_from(Seq(1)).collect::<Result<_, _>>().unwrap();
    assert_eq!(events.len(), 4);
    // The salt the failed batch made was never stored; the one used instead was.
    let salt = store.salts(&["046196000123"]).unwrap()[0].expect("stored with the batch that used it");
    let mut range = merkle::CompactRange::new();
    for e in &events {
        range.append(merkle::hash_leaf(&e.leaf_bytes(e.subject.as_ref().map(|_| &salt))), |_, _| {});
    }
    assert_eq!(range.root(), store.tree_head().root, "the tree is the log's, rewound and all");
}

#[test]
fn reopen_restores_seq_tree_and_stream_heads() {
    let dir = tempfile::tempdir().unwrap();
    let root = {
        let (store, mut writer) = EventStore::open(dir.path(), true).unwrap();
        for _ in 0..5 {
            commit_one(&mut writer, append("s", ExpectedVersion::Any, 3));
        }
        store.tree_head()
    };
    let (store, mut writer) = EventStore::open(dir.path(), false).unwrap();
    assert_eq!(store.tree_head(), root);
    let mut batch = writer.begin(RegistryTime(0));
    let staged = writer.stage(&mut batch, &meta(), vec![append("s", ExpectedVersion::Exact(15), 1)]).unwrap();
    assert_eq!((staged.first_seq, staged.stream_versions), (Seq(16), vec![16]));
    writer.commit(batch).unwrap();
    let proof = store.consistency_proof(15, 16).unwrap();
    verify::verify_consistency(15, 16, &root.root, &store.tree_head().root, &proof).unwrap();
    let read_only = EventStore::open_read_only(dir.path()).unwrap();
    assert_eq!(read_only.last_seq(), Seq(16));
}

/// Formats before 4 (heads) and 5 (salts) wrote them with every batch and had no record of
/// how far their column families go.
fn forget_the_lagging_records(store: &EventStore) {
    for record in [&b"heads"[..], b"salts"] {
        store.tamper_raw_delete(Cf::Meta, record).unwrap();
    }
}

/// The key a stream's head has in [`Cf::Streams`]: the id's length (u16), then the id.
fn head_key(stream: &str) -> Vec<u8> {
    [&(stream.len() as u16).to_be_bytes()[..], stream.as_bytes()].concat()
}

fn head_value(head: StreamHead) -> Vec<u8> {
    [head.version.to_be_bytes(), head.last_seq.0.to_be_bytes()].concat()
}

/// Formats 1–3 wrote every head with its batch, so their column family is complete and
/// has no record of how far it goes. Such a store must read its heads as they are, and
/// opening it for writing must take them all as written out up to the log's end: they
/// guard their streams and sit beside heads written since.
#[test]
fn a_format_3_store_keeps_its_stream_heads_when_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let streams: Vec<String> = (0..200).map(|i| format!("citizen-{i:012}")).collect();
    let heads_of = |store: &EventStore| -> Vec<_> {
        streams.iter().map(|s| store.stream_head(&StreamId::new(s.as_str())).unwrap()).collect()
    };
    let written = {
        let (store, mut writer) = EventStore::open(dir.path(), true).unwrap();
        for (i, stream) in streams.iter().enumerate() {
            commit_one(&mut writer, append(stream, ExpectedVersion::Any, 1 + i % 3));
        }
        let written = heads_of(&store);
        // Now make it what format 3 wrote: every head in the column family, no record.
        for (stream, head) in streams.iter().zip(&written) {
            store.tamper_raw_put(Cf::Streams, &head_key(stream), &head_value(*head)).unwrap();
        }
        forget_the_lagging_records(&store);
        store.tamper_raw_put(Cf::Meta, b"format", &3u32.to_be_bytes()).unwrap();
        written
    };
    assert_eq!(heads_of(&EventStore::open_read_only(dir.path()).unwrap()), written);
    {
        let (store, mut writer) = EventStore::open(dir.path(), false).unwrap();
        assert_eq!(store.heads_indexed_through().unwrap(), store.last_seq());
        assert_eq!(heads_of(&store), written);
        assert_eq!(store.stream_head(&StreamId::new("citizen-999999999999")).unwrap().version, 0);
        let mut batch = writer.begin(RegistryTime(0));
        let conflict = writer.stage(&mut batch, &meta(), vec![append(&streams[0], ExpectedVersion::Exact(0), 1)]);
        assert!(matches!(conflict, Err(AppendError::Conflict(_))), "an old head still guards its stream");
        for (stream, head) in streams[100..].iter().zip(&written[100..]) {
            let next = vec![append(stream, ExpectedVersion::Exact(head.version), 1)];
            writer.stage(&mut batch, &meta(), next).unwrap();
        }
        writer.commit(batch).unwrap();
    }
    let now = heads_of(&EventStore::open(dir.path(), false).unwrap().0);
    assert_eq!(now[..100], written[..100]);
    for ((stream, now), then) in streams.iter().zip(&now).zip(&written).skip(100) {
        assert_eq!(now.version, then.version + 1, "stream {stream}");
    }
    assert_eq!(heads_of(&EventStore::open_read_only(dir.path()).unwrap()), now);
}

/// Every stream's head as the log says: its last event's version and seq.
fn heads_in_log(store: &EventStore) -> BTreeMap<String, StreamHead> {
    let mut heads = BTreeMap::new();
    for env in store.read_from(Seq(1)) {
        let env = env.unwrap();
        heads.insert(env.stream.0, StreamHead { version: env.stream_version, last_seq: env.seq });
    }
    heads
}

fn assert_heads(store: &EventStore, expected: &BTreeMap<String, StreamHead>, when: &str) {
    for (stream, head) in expected {
        assert_eq!(store.stream_head(&StreamId::new(stream.as_str())).unwrap(), *head, "{when}: stream {stream}");
    }
}

/// Heads are kept in memory behind the log and written out in bulk every so many events:
/// across write-outs, reopening (the tail read back from the log), a read-only open, and a
/// record left behind its write-out (a crash between the two), every head is the log's and
/// still guards its stream.
#[test]
fn stream_heads_written_out_behind_the_log_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let streams: Vec<String> = (0..300).map(|i| format!("s-{i}")).collect();
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    let mut stage_some = |writer: &mut LogWriter, batches: usize| {
        for _ in 0..batches {
            let mut batch = writer.begin(RegistryTime(0));
            for _ in 0..rng.random_range(1..20) {
                let stream = &streams[rng.random_range(0..streams.len())];
                let version = versions.entry(stream.clone()).or_default();
                let expected = if *version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(*version) };
                let n = rng.random_range(1..3);
                writer.stage(&mut batch, &meta(), vec![append(stream, expected, n)]).unwrap();
                *version += n as u64;
            }
            writer.commit(batch).unwrap();
        }
    };
    {
        let (store, mut writer) = EventStore::open(dir.path(), true).unwrap();
        writer.set_index_every(50);
        stage_some(&mut writer, 100);
        assert_heads(&store, &heads_in_log(&store), "while writing");
    }
    let (store, mut writer) = EventStore::open(dir.path(), false).unwrap();
    let through = store.heads_indexed_through().unwrap();
    assert!(through > Seq(0) && through <= store.last_seq(), "written out up to {through}");
    assert_heads(&store, &heads_in_log(&store), "reopened");
    writer.set_index_every(50);
    stage_some(&mut writer, 100);
    drop(writer);
    let expected = heads_in_log(&store);
    assert_eq!(expected.iter().map(|(s, h)| (s.clone(), h.version)).collect::<BTreeMap<_, _>>(), versions);
    drop(store);
    assert_heads(&EventStore::open_read_only(dir.path()).unwrap(), &expected, "read-only");
    {
        // As if a crash came after a write-out was ingested and before its record.
        let (store, _writer) = EventStore::open(dir.path(), false).unwrap();
        store.tamper_raw_put(Cf::Meta, b"heads", &0u64.to_be_bytes()).unwrap();
    }
    let (store, mut writer) = EventStore::open(dir.path(), false).unwrap();
    assert_heads(&store, &expected, "record behind its write-out");
    let mut batch = writer.begin(RegistryTime(0));
    let stale = writer.stage(&mut batch, &meta(), vec![append("s-0", ExpectedVersion::Exact(versions["s-0"] - 1), 1)]);
    assert!(matches!(stale, Err(AppendError::Conflict(_))), "a written-out head guards its stream");
    drop((store, writer, batch));
    {
        let (store, _writer) = EventStore::open(dir.path(), false).unwrap();
        store.tamper_raw_put(Cf::Meta, b"heads", &[1, 2, 3]).unwrap();
    }
    match EventStore::open(dir.path(), false) {
        Err(StoreError::CorruptMeta(why)) => assert!(why.contains("stream heads"), "{why}"),
        Err(other) => panic!("expected CorruptMeta, got {other}"),
        Ok(_) => panic!("a store with a broken heads record must not open"),
    }
}

/// Salts are kept behind the log like heads, read back from the salt index at open: across
/// write-outs, reopening and a read-only open every subject keeps its salt (the one its
/// leaves were made with), and erasing a salt works whether it was written out or is still
/// only in memory.
#[test]
fn salts_written_out_behind_the_log_stay_exact_and_erasable() {
    let dir = tempfile::tempdir().unwrap();
    let subjects: Vec<String> = (0..300).map(|i| format!("046196{i:06}")).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let (store, mut writer) = EventStore::open(dir.path(), true).unwrap();
    writer.set_index_every(50);
    for _ in 0..100 {
        let mut batch = writer.begin(RegistryTime(0));
        for _ in 0..rng.random_range(1..20) {
            writer.stage(&mut batch, &meta(), vec![personal(&subjects[rng.random_range(0..subjects.len())])]).unwrap();
        }
        writer.commit(batch).unwrap();
    }
    drop(writer);
    // Each subject's salt makes the leaves of its events, and the index has it at its first.
    let check = |store: &EventStore, when: &str| -> BTreeMap<String, [u8; 32]> {
        let index: BTreeMap<Seq, [u8; 32]> = store.salts_by_first_seq().map(Result::unwrap).collect();
        let mut salts = BTreeMap::new();
        for env in store.read_from(Seq(1)) {
            let env = env.unwrap();
            let subject = env.subject.clone().unwrap();
            let salt = store.salt(&subject).unwrap().unwrap_or_else(|| panic!("{when}: {subject} has no salt"));
            if salts.insert(subject.clone(), salt).is_none() {
                assert_eq!(index.get(&env.seq), Some(&salt), "{when}: {subject} indexed at its first event");
            }
            let leaf = merkle::hash_leaf(&env.leaf_bytes(Some(&salt)));
            assert_eq!(leaf, store.leaf_hash(env.seq).unwrap(), "{when}: seq {}", env.seq);
        }
        let asked: Vec<&str> = salts.keys().map(String::as_str).collect();
        let many: Vec<_> = store.salts(&asked).unwrap().into_iter().map(Option::unwrap).collect();
        assert_eq!(many, salts.values().copied().collect::<Vec<_>>(), "{when}: batched read");
        salts
    };
    let salts = check(&store, "while writing");
    drop(store);
    let (store, writer) = EventStore::open(dir.path(), false).unwrap();
    let through = store.salts_indexed_through().unwrap();
    assert!(through > Seq(0), "written out up to {through}");
    assert_eq!(check(&store, "reopened"), salts);
    drop((store, writer));
    assert_eq!(check(&EventStore::open_read_only(dir.path()).unwrap(), "read-only"), salts);

    // One subject written out, one whose salt is still only in memory.
    let (store, mut writer) = EventStore::open(dir.path(), false).unwrap();
    let written_out = store
        .salts_by_first_seq()
        .map(Result::unwrap)
        .find(|(seq, _)| *seq <= through)
        .map(|(seq, _)| store.event(seq).unwrap().subject.unwrap())
        .unwrap();
    commit_one(&mut writer, personal("046196999999"));
    drop(writer);
    for subject in [written_out.as_str(), "046196999999"] {
        let keys = store.salt_keys(subject).unwrap();
        assert_eq!(keys.len(), 2, "{subject}: the salt and its index entry");
        store.forget(&keys, &[]).unwrap();
        assert_eq!(store.salt(subject).unwrap(), None, "{subject} erased");
    }
    drop(store);
    for reopened in [EventStore::open_read_only(dir.path()).unwrap(), EventStore::open(dir.path(), false).unwrap().0] {
        for subject in [written_out.as_str(), "046196999999"] {
            assert_eq!(reopened.salt(subject).unwrap(), None, "{subject} stays erased");
            assert!(reopened.salt_keys(subject).unwrap().is_empty());
        }
        assert_eq!(reopened.salt(&subjects[0]).unwrap(), Some(salts[&subjects[0]]), "the others keep theirs");
    }
}

/// A big write-out, with ids of several lengths (a head's key orders by length first), must
/// come out whole and in key order, or RocksDB refuses the file and nothing is written
/// out; what it wrote reads back beside the tail still in memory.
#[test]
fn a_write_out_of_many_runs_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..40_000).map(|i| format!("{:012}", i * 7919 % 1_000_000_007)).collect();
    // Stream ids of 1 to 13 bytes.
    let stream_of = |id: &str| StreamId::new(format!("s{}", id.trim_start_matches('0')));
    {
        let (_store, mut writer) = EventStore::open(dir.path(), true).unwrap();
        // Heads written out at 26,000, salts half a period later at 39,000; the rest stays
        // in the tail.
        writer.set_index_every(26_000);
        for chunk in ids.chunks(1000) {
            let mut batch = writer.begin(RegistryTime(0));
            for id in chunk {
                let mut event = personal(id);
                event.stream = stream_of(id);
                writer.stage(&mut batch, &meta(), vec![event]).unwrap();
            }
            writer.commit(batch).unwrap();
        }
    }
    let store = EventStore::open_read_only(dir.path()).unwrap();
    assert_eq!(store.heads_indexed_through().unwrap(), Seq(26_000));
    assert_eq!(store.salts_indexed_through().unwrap(), Seq(39_000));
    let index: BTreeMap<Seq, [u8; 32]> = store.salts_by_first_seq().map(Result::unwrap).collect();
    for (i, id) in ids.iter().enumerate() {
        let seq = Seq(i as u64 + 1);
        let head = store.stream_head(&stream_of(id)).unwrap();
        assert_eq!(head, StreamHead { version: 1, last_seq: seq }, "head of {id}");
        assert_eq!(store.salt(id).unwrap().as_ref(), index.get(&seq), "salt of {id}");
    }
}

#[test]
fn a_corrupted_envelope_is_a_typed_error_naming_its_seq() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut writer) = EventStore::open(dir.path(), true).unwrap();
    commit_one(&mut writer, append("s", ExpectedVersion::Any, 3));
    store.tamper_event(Seq(2), Some(&[0xff, 0xff, 0xff])).unwrap();
    match store.event(Seq(2)) {
        Err(StoreError::Corrupt { seq, .. }) => assert_eq!(seq, Seq(2)),
        other => panic!("expected Corrupt at seq 2, got {other:?}"),
    }
    let results: Vec<_> = store.read_from(Seq(1)).collect();
    assert_eq!(results.len(), 2, "iteration stops at the first bad event");
    assert!(matches!(results[1], Err(StoreError::Corrupt { seq: Seq(2), .. })));
    // An envelope that decodes but sits under the wrong key is caught too.
    let third = store.event(Seq(3)).unwrap();
    store.tamper_event(Seq(1), Some(&third.encode())).unwrap();
    assert!(matches!(store.event(Seq(1)), Err(StoreError::Corrupt { seq: Seq(1), .. })));
}

/// Bundles hold up to 64 events and never span a group commit: reads from any seq, point
/// reads and stream walks land on the right event whatever bundle it is in, and the
/// bundles are where the events are.
#[test]
fn events_are_bundled_and_read_from_any_seq() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut writer) = EventStore::open(dir.path(), true).unwrap();
    // 150 events in one batch (bundles of 64, 64, 22), then 3 batches of one.
    commit_one(&mut writer, append("big", ExpectedVersion::Any, 150));
    for _ in 0..3 {
        commit_one(&mut writer, append("small", ExpectedVersion::Any, 1));
    }
    let keys: Vec<u64> = store
        .scan_prefix(Cf::Bundles, &[])
        .map(|kv| u64::from_be_bytes(kv.unwrap().0.as_ref().try_into().unwrap()))
        .collect();
    assert_eq!(keys, vec![1, 65, 129, 151, 152, 153]);
    assert_eq!(store.scan_prefix(Cf::Events, &[]).count(), 0, "nothing is written one per key any more");
    for from in [1, 2, 64, 65, 66, 128, 129, 150, 151, 153] {
        let seqs: Vec<u64> = store.read_from(Seq(from)).map(|e| e.unwrap().seq.0).collect();
        assert_eq!(seqs, (from..=153).collect::<Vec<_>>(), "read from {from}");
        assert_eq!(store.event(Seq(from)).unwrap().seq, Seq(from));
    }
    assert_eq!(store.read_from(Seq(154)).count(), 0);
    assert!(matches!(store.event(Seq(154)), Err(StoreError::SeqOutOfRange { seq: 154, last: 153 })));
    let mut visited = Vec::new();
    store
        .visit(Seq(60), Seq(70), |env| {
            visited.push(env.seq.0);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    assert_eq!(visited, (60..=70).collect::<Vec<_>>());
    assert_eq!(store.read_stream(&StreamId::new("big"), 100).unwrap().len(), 51);
    // Reopened, the last bundle's last event is the tree's size.
    drop((store, writer));
    let store = EventStore::open_read_only(dir.path()).unwrap();
    assert_eq!(store.last_seq(), Seq(153));
}

/// A store from format 6 or before has its events one per key in `events`: they are read
/// from there, the writer bundles what it appends after them, and reads cross over.
#[test]
fn unbundled_events_of_an_older_format_read_on_and_the_log_continues_in_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let older: Vec<_> = {
        let (store, mut writer) = EventStore::open(dir.path(), true).unwrap();
        commit_one(&mut writer, append("s", ExpectedVersion::Any, 5));
        // Laid out as format 6 wrote it.
        let events: Vec<_> = store.read_from(Seq(1)).map(Result::unwrap).collect();
        for e in &events {
            store.tamper_raw_put(Cf::Events, &e.seq.0.to_be_bytes(), &e.encode()).unwrap();
        }
        store.tamper_raw_delete(Cf::Bundles, &1u64.to_be_bytes()).unwrap();
        store.tamper_raw_put(Cf::Meta, b"format", &6u32.to_be_bytes()).unwrap();
        events
    };
    {
        let store = EventStore::open_read_only(dir.path()).unwrap();
        assert_eq!(store.read_from(Seq(1)).map(Result::unwrap).collect::<Vec<_>>(), older);
        assert_eq!(store.event(Seq(4)).unwrap(), older[3]);
    }
    let (store, mut writer) = EventStore::open(dir.path(), false).unwrap();
    assert_eq!(store.get(Cf::Meta, b"format").unwrap().unwrap(), FORMAT_VERSION.to_be_bytes());
    commit_one(&mut writer, append("s", ExpectedVersion::Exact(5), 3));
    let seqs: Vec<u64> = store.read_from(Seq(3)).map(|e| e.unwrap().seq.0).collect();
    assert_eq!(seqs, vec![3, 4, 5, 6, 7, 8]);
    assert_eq!(store.read_stream(&StreamId::new("s"), 1).unwrap().len(), 8);
    assert_eq!(&store.read_from(Seq(1)).map(Result::unwrap).collect::<Vec<_>>()[..5], older.as_slice());
    let stored: Vec<_> = store.stored_leaves().map(Result::unwrap).collect();
    let read: Vec<_> = store.read_from(Seq(1)).map(|e| merkle::hash_leaf(&e.unwrap().leaf_bytes(None))).collect();
    assert_eq!(stored, read);
    drop((store, writer));
    assert_eq!(EventStore::open_read_only(dir.path()).unwrap().last_seq(), Seq(8));
}

#[test]
fn a_store_from_a_newer_format_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _writer) = EventStore::open(dir.path(), true).unwrap();
        store.tamper_raw_put(Cf::Meta, b"format", &(FORMAT_VERSION + 1).to_be_bytes()).unwrap();
    }
    match EventStore::open(dir.path(), false) {
        Err(e @ StoreError::NewerFormat { .. }) => assert!(e.to_string().contains("upgrade kyso")),
        Err(other) => panic!("expected NewerFormat, got {other}"),
        Ok(_) => panic!("a newer format must not open"),
    }
}

/// Format 1 had salts without their first seq and no salt index: such a store still reads,
/// and opening it for writing marks it the current format so older builds refuse it from
/// then on.
#[test]
fn a_format_1_store_reads_and_is_marked_current_when_written() {
    let dir = tempfile::tempdir().unwrap();
    let format = |store: &EventStore| store.get(Cf::Meta, b"format").unwrap().unwrap();
    {
        let (store, mut writer) = EventStore::open(dir.path(), true).unwrap();
        let mut batch = writer.begin(RegistryTime(0));
        let data = EventData {
            event_type: "T".into(),
            schema_version: 1,
            payload: vec![1],
            subject: Some("046196000001".into()),
        };
        let append = StreamAppend { stream: StreamId::new("s"), expected: ExpectedVersion::Any, events: vec![data] };
        writer.stage(&mut batch, &meta(), vec![append]).unwrap();
        writer.commit(batch).unwrap();
        assert_eq!(format(&store), FORMAT_VERSION.to_be_bytes());
        let salt = store.salt("046196000001").unwrap().unwrap();
        assert_eq!(store.salts_by_first_seq().map(Result::unwrap).collect::<Vec<_>>(), [(Seq(1), salt)]);
        // Now make it what format 1 wrote.
        for (cf, key) in store.salt_keys("046196000001").unwrap() {
            store.tamper_raw_delete(cf, &key).unwrap();
        }
        store.tamper_raw_put(Cf::Salts, b"046196000001", &salt).unwrap();
        store.tamper_raw_put(Cf::Meta, b"format", &1u32.to_be_bytes()).unwrap();
        forget_the_lagging_records(&store);
    }
    let store = EventStore::open_read_only(dir.path()).unwrap();
    assert!(store.salt("046196000001").unwrap().is_some());
    assert_eq!(store.salts_by_first_seq().count(), 0);
    assert_eq!(format(&store), 1u32.to_be_bytes(), "reading changes nothing");
    drop(store);
    let (store, _writer) = EventStore::open(dir.path(), false).unwrap();
    assert_eq!(format(&store), FORMAT_VERSION.to_be_bytes());
    assert_eq!(store.salt_keys("046196000001").unwrap().len(), 1, "a format-1 salt has no index entry to erase");
    assert!(store.salt_keys("046196000002").unwrap().is_empty(), "a subject without events has no salt to erase");
}

/// Format 2 kept the salt index inside `salts`, under `0xFF ‖ seq`, and had no `salt_index`
/// column family. Such a store reads as it is; opening it for writing moves the index, also
/// after an upgrade that stopped half-way, and marks it the current format.
#[test]
fn a_format_2_store_reads_and_its_salt_index_moves_when_written() {
    let dir = tempfile::tempdir().unwrap();
    let subjects: Vec<String> = (0..300).map(|i| format!("046196{i:06}")).collect();
    let index = {
        let (store, mut writer) = EventStore::open(dir.path(), true).unwrap();
        let mut batch = writer.begin(RegistryTime(0));
        for (i, subject) in subjects.iter().enumerate() {
            let data = EventData {
                event_type: "T".into(),
                schema_version: 1,
                payload: vec![i as u8],
                subject: Some(subject.clone()),
            };
            let append = StreamAppend {
                stream: StreamId::new(subject.as_str()),
                expected: ExpectedVersion::Any,
                events: vec![data],
            };
            writer.stage(&mut batch, &meta(), vec![append]).unwrap();
        }
        writer.commit(batch).unwrap();
        store.salts_by_first_seq().collect::<Result<Vec<_>, _>>().unwrap()
    };
    assert_eq!(index.len(), 300);
    let legacy_key = |seq: Seq| [&[0xFF][..], &seq.0.to_be_bytes()].concat();
    let names = Cf::ALL.map(Cf::name);
    {
        // What format 2 wrote.
        let mut db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir.path(), names).unwrap();
        let salts = db.cf_handle(Cf::Salts.name()).unwrap();
        for (seq, salt) in &index {
            db.put_cf(salts, legacy_key(*seq), salt).unwrap();
            let stored = [&salt[..], &seq.0.to_be_bytes()].concat();
            db.put_cf(salts, subjects[seq.0 as usize - 1].as_bytes(), stored).unwrap();
        }
        let meta = db.cf_handle(Cf::Meta.name()).unwrap();
        db.put_cf(meta, b"format", 2u32.to_be_bytes()).unwrap();
        for record in [&b"heads"[..], b"salts"] {
            db.delete_cf(meta, record).unwrap();
        }
        db.drop_cf(Cf::SaltIndex.name()).unwrap();
    }
    let store = EventStore::open_read_only(dir.path()).unwrap();
    assert_eq!(store.salts_by_first_seq().collect::<Result<Vec<_>, _>>().unwrap(), index);
    assert_eq!(store.salt_keys(&subjects[7]).unwrap()[1], (Cf::Salts, legacy_key(index[7].0)));
    drop(store);
    {
        // An upgrade that moved the first 100 entries and stopped.
        let mut opts = rocksdb::Options::default();
        opts.create_missing_column_families(true);
        let db = rocksdb::DB::open_cf(&opts, dir.path(), names).unwrap();
        let (salts, moved) = (db.cf_handle(Cf::Salts.name()).unwrap(), db.cf_handle(Cf::SaltIndex.name()).unwrap());
        for (seq, salt) in &index[..100] {
            db.put_cf(moved, seq.0.to_be_bytes(), salt).unwrap();
            db.delete_cf(salts, legacy_key(*seq)).unwrap();
        }
    }
    let (store, _writer) = EventStore::open(dir.path(), false).unwrap();
    assert_eq!(store.get(Cf::Meta, b"format").unwrap().unwrap(), FORMAT_VERSION.to_be_bytes());
    assert_eq!(store.salts_by_first_seq().collect::<Result<Vec<_>, _>>().unwrap(), index);
    let salts: Vec<_> = store.scan_prefix(Cf::Salts, b"").map(|kv| kv.unwrap().0).collect();
    assert_eq!(salts.len(), 300, "only subjects are left in salts");
    assert!(salts.iter().all(|k| k[0] != 0xFF));
    let keys = store.salt_keys(&subjects[7]).unwrap();
    assert_eq!(
        keys,
        [(Cf::Salts, subjects[7].as_bytes().to_vec()), (Cf::SaltIndex, index[7].0.0.to_be_bytes().to_vec())]
    );
}

/// Until format 6 every citizen's view was stored: in a column family of its own,
/// `citizens` (and before that under `cv/` in `projections`), with its version under
/// `ver/cv`. A read-only open ignores them; opening for writing drops them all and nothing
/// else.
#[test]
fn a_format_5_store_drops_its_stored_citizen_views_when_written() {
    use event_store::AsideOp;
    let dir = tempfile::tempdir().unwrap();
    let put = |k: &[u8]| AsideOp::Put(k.to_vec(), b"v".to_vec());
    {
        let (store, _writer) = EventStore::open(dir.path(), true).unwrap();
        let views =
            [put(b"cu/kept"), put(b"cv/046196000001"), put(b"cv/046196000002"), put(b"ver/cv"), put(b"ver/dir")];
        store.write_aside(Cf::Projections, views).unwrap();
    }
    {
        // What format 5 had.
        let mut opts = rocksdb::Options::default();
        opts.create_missing_column_families(true);
        let names = Cf::ALL.map(Cf::name).into_iter().chain(["citizens"]);
        let db = rocksdb::DB::open_cf(&opts, dir.path(), names).unwrap();
        db.put_cf(db.cf_handle("citizens").unwrap(), b"cv/046196000001", b"view").unwrap();
        db.put_cf(db.cf_handle(Cf::Meta.name()).unwrap(), b"format", 5u32.to_be_bytes()).unwrap();
    }
    let has_views_cf = || {
        let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).unwrap();
        cfs.iter().any(|name| name == "citizens")
    };
    let projections = |store: &EventStore| -> Vec<Vec<u8>> {
        store.scan_prefix(Cf::Projections, b"").map(|kv| kv.unwrap().0.into_vec()).collect()
    };
    let store = EventStore::open_read_only(dir.path()).unwrap();
    assert_eq!(projections(&store).len(), 5, "reading changes nothing");
    drop(store);
    assert!(has_views_cf());
    let (store, writer) = EventStore::open(dir.path(), false).unwrap();
    assert_eq!(store.get(Cf::Meta, b"format").unwrap().unwrap(), FORMAT_VERSION.to_be_bytes());
    assert_eq!(projections(&store), [&b"cu/kept"[..], b"ver/dir"]);
    drop((store, writer));
    assert!(!has_views_cf());
}

#[test]
fn opening_a_missing_store_without_create_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let err = EventStore::open(dir.path().join("nope"), false).err().expect("must fail");
    assert!(err.to_string().contains("kyso init"), "{err}");
}

#[test]
fn proofs_outside_the_tree_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _writer) = EventStore::open(dir.path(), true).unwrap();
    assert!(matches!(store.inclusion_proof(Seq(1), 0), Err(StoreError::SeqOutOfRange { .. })));
    assert!(matches!(store.consistency_proof(0, 5), Err(StoreError::SizeOutOfRange { .. })));
    assert!(matches!(store.event(Seq(0)), Err(StoreError::SeqOutOfRange { .. })));
}

#[test]
fn r9_a_personal_event_enters_the_tree_only_through_salted_commitments() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut writer) = EventStore::open(dir.path(), true).unwrap();
    let cccd = "046196000123";
    let personal = |n: u8| StreamAppend {
        stream: StreamId::new(format!("citizen-{cccd}")),
        expected: ExpectedVersion::Any,
        events: vec![EventData {
            event_type: "Looked".into(),
            schema_version: 1,
            payload: format!("{cccd}:{n}").into_bytes(),
            subject: Some(cccd.into()),
        }],
    };
    for n in 0..2 {
        commit_one(&mut writer, personal(n));
    }
    let salt = store.salt(cccd).unwrap().expect("a salt was stored with the first event");
    for seq in [Seq(1), Seq(2)] {
        let event = store.event(seq).unwrap();
        let leaf = event.leaf_bytes(Some(&salt));
        assert!(!leaf.windows(cccd.len()).any(|w| w == cccd.as_bytes()), "the leaf shows no CCCD");
        assert_eq!(merkle::hash_leaf(&leaf), store.leaf_hash(seq).unwrap(), "one salt for both events");
        assert_ne!(merkle::hash_leaf(&event.leaf_bytes(None)), store.leaf_hash(seq).unwrap());
    }
}

/// Waits until the writer's known stream and subject ids are loaded (a thread started at open).
fn known_loaded(writer: &mut LogWriter) {
    let t = std::time::Instant::now();
    while !writer.known_loaded() {
        assert!(t.elapsed().as_secs() < 30, "the known ids did not load");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A reopened writer knows which streams and subjects exist only from what it loads after
/// open (on a thread) and what it stages: a subject seen before must keep its salt and a
/// stream its version, whether the load is done or not.
#[test]
fn a_reopened_writer_continues_old_streams_and_salts() {
    let dir = tempfile::tempdir().unwrap();
    let citizens: Vec<String> = (0..50).map(|i| format!("046196{i:06}")).collect();
    let mut version = 0;
    for round in 0..3 {
        let (_store, mut writer) = EventStore::open(dir.path(), round == 0).unwrap();
        // Round 1 stages once the ids the store holds are loaded. Rounds 0 and 2 stage while
        // they may still be loading, which round 0 then repeats loaded: ids staged during
        // the load must be known after it.
        let passes = if round == 0 { 2 } else { 1 };
        for pass in 0..passes {
            if round == 1 || pass == 1 {
                known_loaded(&mut writer);
            }
            version += 1;
            let mut batch = writer.begin(RegistryTime(0));
            for cccd in &citizens {
                let staged = writer.stage(&mut batch, &meta(), vec![personal(cccd)]).unwrap();
                assert_eq!(staged.stream_versions, vec![version], "{cccd} in round {round}, pass {pass}");
            }
            writer.commit(batch).unwrap();
        }
    }
    let store = EventStore::open_read_only(dir.path()).unwrap();
    for (i, cccd) in citizens.iter().enumerate() {
        let salt = store.salt(cccd).unwrap().expect("a salt");
        for pass in 0..version {
            let seq = Seq(pass * citizens.len() as u64 + i as u64 + 1);
            let leaf = store.event(seq).unwrap().leaf_bytes(Some(&salt));
            assert_eq!(merkle::hash_leaf(&leaf), store.leaf_hash(seq).unwrap(), "{cccd}: one salt in every round");
        }
    }
}

/// Once the known set is loaded, the writer asks it first and takes a stream or subject it
/// lacks as new: so every place an old one can be (the batch being staged, one being
/// written, the overlays, the column families after a write-out, a reopened store) must
/// be in it, or the stream would restart at version 1 and the subject get a second salt.
#[test]
fn with_the_known_set_loaded_a_stream_and_a_subject_continue_from_wherever_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let cccd = "046196000001";
    let stage = |writer: &mut LogWriter, batch: &mut event_store::Batch, expected: u64| {
        let staged = writer.stage(batch, &meta(), vec![personal(cccd)]).unwrap();
        assert_eq!(staged.stream_versions, vec![expected], "version {expected}");
    };
    {
        let (store, mut writer) = EventStore::open(dir.path(), true).unwrap();
        writer.set_index_every(2);
        known_loaded(&mut writer);
        let mut first = writer.begin(RegistryTime(0));
        stage(&mut writer, &mut first, 1);
        stage(&mut writer, &mut first, 2);
        let first = writer.prepare(first);
        let mut second = writer.begin(RegistryTime(0));
        stage(&mut writer, &mut second, 3);
        let written = store.write(first).unwrap();
        writer.durable(written.last_seq);
        writer.commit(second).unwrap();
        let mut third = writer.begin(RegistryTime(0));
        stage(&mut writer, &mut third, 4);
        writer.commit(third).unwrap();
        // Other streams push the log on until both indexes hold the citizen's entries.
        let t = std::time::Instant::now();
        while store.heads_indexed_through().unwrap() < Seq(4) || store.salts_indexed_through().unwrap() < Seq(1) {
            assert!(t.elapsed().as_secs() < 30, "no write-out");
            commit_one(&mut writer, append("other", ExpectedVersion::Any, 1));
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut fifth = writer.begin(RegistryTime(0));
        stage(&mut writer, &mut fifth, 5);
        writer.commit(fifth).unwrap();
    }
    let (store, mut writer) = EventStore::open(dir.path(), false).unwrap();
    known_loaded(&mut writer);
    let mut sixth = writer.begin(RegistryTime(0));
    stage(&mut writer, &mut sixth, 6);
    writer.commit(sixth).unwrap();
    let salt = store.salt(cccd).unwrap().expect("a salt");
    let mut versions = 0;
    for env in store.read_from(Seq(1)) {
        let env = env.unwrap();
        if env.subject.is_some() {
            versions += 1;
            let leaf = merkle::hash_leaf(&env.leaf_bytes(Some(&salt)));
            assert_eq!(leaf, store.leaf_hash(env.seq).unwrap(), "one salt for every event, seq {}", env.seq);
        }
    }
    assert_eq!(versions, 6);
}

#[test]
fn tiles_across_batches_and_reopens_give_the_same_tree_as_the_events() {
    let dir = tempfile::tempdir().unwrap();
    // Batch sizes that end mid-tile, exactly on a tile edge (256) and span several tiles.
    for (round, sizes) in [vec![1usize, 7, 300], vec![204, 256], vec![1, 600]].into_iter().enumerate() {
        let (_store, mut writer) = EventStore::open(dir.path(), round == 0).unwrap();
        for n in sizes {
            let mut batch = writer.begin(RegistryTime(0));
            for i in 0..n {
                writer
                    .stage(&mut batch, &meta(), vec![append(&format!("s{}", i % 3), ExpectedVersion::Any, 1)])
                    .unwrap();
            }
            writer.commit(batch).unwrap();
        }
    }
    let store = EventStore::open_read_only(dir.path()).unwrap();
    let size = store.last_seq().0;
    assert_eq!(size, 1 + 7 + 300 + 204 + 256 + 1 + 600);
    let leaves: Vec<_> =
        store.read_from(Seq(1)).map(|e| merkle::hash_leaf(&e.unwrap().leaf_bytes(None))).collect::<Vec<_>>();
    let stored: Vec<_> = store.stored_leaves().collect::<Result<_, _>>().unwrap();
    assert_eq!(stored, leaves);
    let mut range = merkle::CompactRange::new();
    for (i, leaf) in leaves.iter().enumerate() {
        range.append(*leaf, |_, _| {});
        let n = i as u64 + 1;
        assert_eq!(store.root_at(n).unwrap(), range.root(), "root at size {n}");
    }
    let root = store.tree_head().root;
    for seq in (1..=size).step_by(37).chain([255, 256, 257, 512, size]) {
        let proof = store.inclusion_proof(Seq(seq), size).unwrap();
        verify::verify_inclusion(seq - 1, size, &leaves[seq as usize - 1], &proof, &root).unwrap();
    }
    for from in [1, 255, 256, 257, 700, size - 1] {
        let proof = store.consistency_proof(from, size).unwrap();
        verify::verify_consistency(from, size, &store.root_at(from).unwrap(), &root, &proof).unwrap();
    }
}

#[test]
fn the_stored_envelope_format_does_not_drift() {
    // Format 1, frozen: seq, stream, version, prev, type, schema, recorded_at, meta, subject, payload.
    let env = event_store::Envelope {
        seq: Seq(300),
        stream: StreamId::new("ca-X"),
        stream_version: 2,
        prev_seq: Some(Seq(7)),
        event_type: "T".into(),
        schema_version: 1,
        recorded_at: RegistryTime(1_000),
        meta: Metadata {
            actor: "a".into(),
            correlation_id: None,
            causation_id: Some("c".into()),
            idempotency_key: None,
        },
        subject: None,
        payload: vec![0xAB, 0xCD],
    };
    assert_eq!(hex::encode(env.encode()), "ac020463612d58020107015401d00f016100010163000002abcd");
    assert_eq!(postcard::from_bytes::<event_store::Envelope>(&env.encode()).unwrap(), env);
}
