//! A read replica refuses to go on, and says where, when the stream it follows has a gap
//! or carries a leaf hash that does not match its event.

use async_nats::jetstream::{self, message::PublishMessage};
use event_store::{EventStore, ExpectedVersion, Metadata, RegistryTime, Seq, StreamAppend};
use kyso_tests::nats::NatsServer;
use kyso_tests::publish::{Replica, config};
use std::time::{Duration, Instant};

/// A small primary log of public (subject-less) events.
fn primary(dir: &std::path::Path) -> std::sync::Arc<EventStore> {
    let (store, mut writer) = EventStore::open(dir, true).unwrap();
    for i in 0..5u8 {
        let mut batch = writer.begin(RegistryTime(1_700_000_000_000 + i64::from(i)));
        let event = commands::domain::Event::CounterRegistered { counter: format!("C{i}"), commune: "19819".into() };
        let (stream, data) = commands::codec::encode(&event);
        let append = StreamAppend { stream, expected: ExpectedVersion::NoStream, events: vec![data] };
        writer.stage(&mut batch, &Metadata { actor: "admin".into(), ..Metadata::default() }, vec![append]).unwrap();
        writer.commit(batch).unwrap();
    }
    store
}

/// Publishes seqs in the given order, with their real leaf unless `bad_leaf` names the seq.
async fn publish(url: &str, store: &EventStore, seqs: &[u64], bad_leaf: Option<u64>) {
    let js = jetstream::new(async_nats::connect(url).await.unwrap());
    let c = config(url);
    js.create_or_update_stream(jetstream::stream::Config {
        name: c.stream_name(),
        subjects: vec![format!("kyso.{}.>", c.id)],
        ..Default::default()
    })
    .await
    .unwrap();
    for &seq in seqs {
        let env = store.event(Seq(seq)).unwrap();
        let mut leaf = store.leaf_hash(Seq(seq)).unwrap();
        if bad_leaf == Some(seq) {
            leaf[0] ^= 1;
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(publisher::HEADER_SEQ, seq.to_string().as_str());
        headers.insert(publisher::HEADER_LEAF, hex::encode(leaf).as_str());
        let message = PublishMessage::build().headers(headers).payload(env.encode().into());
        js.send_publish(publisher::subject(&c.id, &env), message).await.unwrap().await.unwrap();
    }
}

async fn broken_within(replica: &Replica, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        if let Some(why) = replica.following.status.broken() {
            return why;
        }
        assert!(started.elapsed() < limit, "the replica did not stop (holds {})", replica.store.last_seq());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_the_stream_stops_the_replica_naming_the_seq() {
    let nats = NatsServer::start();
    let (p, r) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = primary(p.path());
    publish(&nats.url(), &store, &[1, 2, 4, 5], None).await;
    let replica = Replica::start(&nats.url(), r.path());
    let why = broken_within(&replica, Duration::from_secs(30)).await;
    assert!(why.contains("expected seq 3, received seq 4"), "{why}");
    // What came before the gap is kept; nothing after it.
    assert_eq!(replica.store.last_seq(), Seq(2));
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_hash_that_does_not_match_its_event_stops_the_replica() {
    let nats = NatsServer::start();
    let (p, r) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = primary(p.path());
    publish(&nats.url(), &store, &[1, 2, 3, 4, 5], Some(3)).await;
    let replica = Replica::start(&nats.url(), r.path());
    let why = broken_within(&replica, Duration::from_secs(30)).await;
    assert!(why.contains("seq 3: the leaf hash sent with the event does not match"), "{why}");
    assert_eq!(replica.store.last_seq(), Seq(2));
    replica.stop().await;
}
