//! Reading back what the publisher put in JetStream, to compare with the log.

use async_nats::jetstream;
use event_store::{EventStore, Seq};

/// The publisher settings every test uses: province 046 (Huế), small in-flight window.
pub fn config(url: &str) -> publisher::Config {
    publisher::Config {
        url: url.to_string(),
        id: "046".into(),
        replicas: 1,
        max_age: std::time::Duration::ZERO,
        in_flight: 256,
        json: false,
    }
}

/// What a consumer reading the whole stream from its start saw, against the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StreamCheck {
    /// Messages delivered in seq order carrying exactly the log's event and leaf.
    pub matching: u64,
    /// Messages for a seq already delivered, or beyond the end of the log.
    pub duplicated: u64,
    /// Seqs of the log never delivered.
    pub missing: u64,
    /// Messages at the right place whose bytes or leaf differ from the log's.
    pub altered: u64,
}

/// Reads the stream as a reporting job would (an ephemeral pull consumer from the first
/// message) and compares message `i` with log seq `i`.
pub async fn read_stream(url: &str, store: &EventStore) -> StreamCheck {
    use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
    use futures::StreamExt;
    let js = jetstream::new(async_nats::connect(url).await.expect("connecting to NATS"));
    let mut stream = js.get_stream(config(url).stream_name()).await.expect("the stream exists");
    let last = store.last_seq().0;
    let in_stream = stream.info().await.expect("stream info").state.messages;
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("an ephemeral consumer");
    let mut messages = consumer.messages().await.expect("a message feed");
    let mut check = StreamCheck::default();
    let mut expected = 1;
    let (mut delivered, deadline) = (0, tokio::time::Instant::now() + std::time::Duration::from_secs(300));
    while delivered < in_stream {
        // An error item (a missed heartbeat, say) is not the end of the stream.
        let m = match tokio::time::timeout_at(deadline, messages.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(_))) => continue,
            Ok(None) | Err(_) => break,
        };
        delivered += 1;
        let header = |name: &str| m.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
        let Some(seq) = header(publisher::HEADER_SEQ).and_then(|s| s.parse::<u64>().ok()) else {
            check.altered += 1;
            continue;
        };
        if seq < expected || seq > last {
            check.duplicated += 1;
            continue;
        }
        check.missing += seq - expected;
        expected = seq + 1;
        let same_event = m.payload.as_ref() == store.event(Seq(seq)).unwrap().encode().as_slice();
        let same_leaf = header(publisher::HEADER_LEAF) == Some(hex::encode(store.leaf_hash(Seq(seq)).unwrap()));
        if same_event && same_leaf {
            check.matching += 1;
        } else {
            check.altered += 1;
        }
    }
    check.missing += (last + 1).saturating_sub(expected);
    check
}

/// Asserts that the stream holds every event of the log exactly once, in seq order, with
/// the log's own bytes: message `i` of the stream is seq `i`.
pub async fn assert_stream_is_the_log(url: &str, store: &EventStore) {
    let check = read_stream(url, store).await;
    assert_eq!(check, StreamCheck { matching: store.last_seq().0, ..StreamCheck::default() });
}

/// A read replica following `url`'s stream into `dir`, as `kyso follow` runs it.
pub struct Replica {
    pub store: std::sync::Arc<EventStore>,
    /// Its writer, which the replica's reads of citizen views go through.
    pub writer: commands::Sequencer<commands::registrar::Replicator>,
    pub following: api::replica::Following,
    thread: std::thread::JoinHandle<()>,
}

impl Replica {
    pub fn start(url: &str, dir: &std::path::Path) -> Self {
        use std::sync::Arc;
        let campaign = commands::domain::Campaign::from_toml(crate::workload::HUE).unwrap();
        let api::replica::Opened { store, writer, thread } =
            api::replica::open(dir, campaign).expect("the replica's store");
        let config = api::replica::FollowConfig {
            nats_url: url.to_string(),
            stream: config(url).stream_name(),
            consumer: "replica".into(),
            primary: None,
            key: None,
        };
        let following = api::replica::Following::spawn(Arc::clone(&store), writer.clone(), config);
        Self { store, writer, following, thread }
    }

    pub async fn stop(self) -> std::sync::Arc<EventStore> {
        self.following.stop().await.expect("the follow task");
        // The writer stops once its last handle is gone.
        drop(self.writer);
        tokio::task::spawn_blocking(move || self.thread.join()).await.unwrap().expect("the replica's writer");
        self.store
    }
}

/// Asserts that the replica's log, tree and every projection equal the primary's.
pub fn assert_replica_equals_primary(primary: &std::sync::Arc<EventStore>, replica: &std::sync::Arc<EventStore>) {
    use projections::Projections;
    assert_eq!(replica.last_seq(), primary.last_seq());
    assert_eq!(replica.tree_head(), primary.tree_head(), "same Merkle tree");
    for seq in 1..=primary.last_seq().0 {
        assert_eq!(replica.event(Seq(seq)).unwrap(), primary.event(Seq(seq)).unwrap(), "seq {seq}");
    }
    // The inline directory, key for key.
    let directory = projections::directory::stored_all;
    assert_eq!(directory(replica).unwrap(), directory(primary).unwrap(), "the inline directory");
    // Folds, caught up on each side with the same code.
    let folded = |s: &std::sync::Arc<EventStore>| {
        let p = Projections::open(s).unwrap();
        projections::Follower::new(std::sync::Arc::clone(s), &p).catch_up().unwrap();
        (p.counts.encoded(), p.compliance.encoded(), p.demands.encoded(), p.audit.encoded())
    };
    assert!(folded(replica) == folded(primary), "the replica's folds equal the primary's");
}
