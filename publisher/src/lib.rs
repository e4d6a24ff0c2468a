//! Publishes kyso's log to NATS JetStream. The log is the outbox: nothing is published that
//! is not durably in the log, and the command path never waits for NATS.
//!
//! One task follows the log from a cursor (the last seq JetStream acknowledged, kept beside
//! the projections) and publishes each event to the stream `KYSO_<id>` on the subject
//! `kyso.<id>.<event type>.<CA or sys>`, with `Nats-Msg-Id: <id>-<seq>`. Many publishes are
//! in flight; their acks are awaited in seq order and only acknowledged seqs advance the
//! cursor. The stream holds the log and nothing else, so stream sequence `n` is seq `n`;
//! each publish says `Nats-Expected-Last-Sequence: <seq - 1>`, so JetStream refuses an
//! event whose predecessor it does not hold: after an outage the stream never holds `n + 1`
//! before `n` (and unlike an expected message id, a stream sequence survives a server
//! restart). On any error the task starts again from the stream's own last event, so
//! nothing is republished; a straggler that still arrives twice is dropped by JetStream's
//! duplicate window (by `Nats-Msg-Id`) or refused by the expected sequence.

use async_nats::jetstream::{self, message::PublishMessage, stream};
use async_nats::{HeaderMap, HeaderValue};
use event_store::{AsideOp, Cf, Envelope, EventStore, Seq, StoreError};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where the cursor lives (in the projections column family: derived, rebuildable).
const CURSOR_KEY: &[u8] = b"pub/nats";
/// How often the cursor is written while acks flow; a crash republishes at most this much.
const PERSIST_EVERY: Duration = Duration::from_millis(200);
/// How long to wait before trying again after an error (NATS down, a refused publish).
const BACKOFF: Duration = Duration::from_millis(500);

pub const HEADER_SEQ: &str = "Kyso-Seq";
pub const HEADER_TYPE: &str = "Kyso-Event-Type";
pub const HEADER_SCHEMA: &str = "Kyso-Schema-Version";
pub const HEADER_LEAF: &str = "Kyso-Leaf-Hash";

#[derive(Debug, Clone)]
pub struct Config {
    pub url: String,
    /// Names the stream and subjects; kyso uses the campaign's CCCD province code.
    pub id: String,
    pub replicas: usize,
    /// How long the stream keeps events (zero: for ever).
    pub max_age: Duration,
    /// Publishes awaiting their ack at once.
    pub in_flight: usize,
    /// Payloads as JSON (envelope fields and the decoded event) instead of postcard.
    pub json: bool,
}

impl Config {
    pub fn stream_name(&self) -> String {
        format!("KYSO_{}", self.id)
    }
}

/// What the task has done, for `/readyz` and `/metrics`.
#[derive(Debug, Default)]
pub struct Status {
    acked: AtomicU64,
    connected: AtomicBool,
}

impl Status {
    /// The last seq JetStream acknowledged.
    pub fn acked(&self) -> Seq {
        Seq(self.acked.load(Ordering::Acquire))
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("the stream holds kyso seq {stream} but the log ends at {log}: this stream belongs to another data dir")]
    StreamAhead { stream: u64, log: u64 },
}

fn nats(e: impl std::fmt::Display) -> PublishError {
    PublishError::Nats(e.to_string())
}

/// The last seq JetStream acknowledged, as stored (0 before the first).
pub fn stored_cursor(store: &EventStore) -> Result<Seq, StoreError> {
    match store.get(Cf::Projections, CURSOR_KEY)? {
        None => Ok(Seq(0)),
        Some(bytes) => bytes
            .as_slice()
            .try_into()
            .map(|b| Seq(u64::from_be_bytes(b)))
            .map_err(|_| StoreError::CorruptMeta("the publish cursor is not 8 bytes".into())),
    }
}

fn persist(store: &EventStore, seq: Seq) -> Result<(), StoreError> {
    store.write_aside(Cf::Projections, [AsideOp::Put(CURSOR_KEY.to_vec(), seq.0.to_be_bytes().to_vec())])
}

/// `kyso.<id>.<event type>.<CA or sys>`: consumers filter by type or by CA.
pub fn subject(id: &str, env: &Envelope) -> String {
    let who = env.meta.actor.strip_prefix("ca:").filter(|ca| is_token(ca)).unwrap_or("sys");
    format!("kyso.{id}.{}.{who}", env.event_type)
}

/// A subject token: no dots, wildcards or whitespace.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn message_id(id: &str, seq: u64) -> String {
    format!("{id}-{seq}")
}

fn message(config: &Config, env: &Envelope, leaf: &event_store::merkle::Hash) -> Result<PublishMessage, PublishError> {
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_SEQ, HeaderValue::from(env.seq.0));
    headers.insert(HEADER_TYPE, env.event_type.as_str());
    headers.insert(HEADER_SCHEMA, HeaderValue::from(u64::from(env.schema_version)));
    headers.insert(HEADER_LEAF, hex::encode(leaf).as_str());
    let payload = if config.json {
        let event = commands::codec::decode(env).ok().and_then(|e| serde_json::to_value(e).ok());
        let doc = serde_json::json!({
            "seq": env.seq.0,
            "stream": env.stream.as_str(),
            "stream_version": env.stream_version,
            "event_type": env.event_type,
            "schema_version": env.schema_version,
            "recorded_at": env.recorded_at,
            "actor": env.meta.actor,
            "event": event,
        });
        headers.insert("Content-Type", "application/json");
        serde_json::to_vec(&doc).map_err(nats)?
    } else {
        env.encode()
    };
    Ok(PublishMessage::build()
        .headers(headers)
        .payload(payload.into())
        .message_id(message_id(&config.id, env.seq.0))
        .expected_last_sequence(env.seq.0 - 1))
}

/// Creates the stream, or updates its settings, and returns the seq of its last event.
async fn ensure_stream(js: &jetstream::Context, config: &Config) -> Result<u64, PublishError> {
    let info = js
        .create_or_update_stream(stream::Config {
            name: config.stream_name(),
            subjects: vec![format!("kyso.{}.>", config.id)],
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            max_age: config.max_age,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    let last_sequence = info.state.last_sequence;
    if info.state.messages > 0 {
        // The invariant the expected-sequence check rests on: stream sequence = seq.
        let stream = js.get_stream(config.stream_name()).await.map_err(nats)?;
        let last = stream.get_raw_message(last_sequence).await.map_err(nats)?;
        let seq: Option<u64> = last.headers.get(HEADER_SEQ).and_then(|v| v.as_str().parse().ok());
        if seq != Some(last_sequence) {
            return Err(PublishError::Nats(format!(
                "stream {} holds message {last_sequence} with {HEADER_SEQ} {seq:?}: it holds something other than this log",
                config.stream_name()
            )));
        }
    }
    Ok(last_sequence)
}

/// A client that connects in the background and keeps reconnecting: started while NATS is
/// down, it waits for it instead of failing (the publisher and a replica both ride outages).
pub async fn connect(url: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .connect(url)
        .await
}

/// Publishes until `stop` turns true, surviving NATS outages. Never returns an error: it
/// logs, waits and tries again, so commands are never affected.
pub async fn run(
    store: Arc<EventStore>,
    config: Config,
    status: Arc<Status>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let client = match connect(&config.url).await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!("NATS {}: {e}; events are not published", config.url);
            return;
        }
    };
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .max_ack_inflight(config.in_flight.max(1))
        .build(client);
    match stored_cursor(&store) {
        Ok(seq) => status.acked.store(seq.0, Ordering::Release),
        Err(e) => {
            tracing::error!("reading the publish cursor: {e}; events are not published");
            return;
        }
    }
    while !*stop.borrow() {
        let result = async {
            let in_stream = ensure_stream(&js, &config).await?;
            let log = store.last_seq().0;
            if in_stream > log {
                return Err(PublishError::StreamAhead { stream: in_stream, log });
            }
            status.acked.fetch_max(in_stream, Ordering::AcqRel);
            status.connected.store(true, Ordering::Release);
            publish_from(&js, &store, &config, &status, &mut stop).await
        }
        .await;
        status.connected.store(false, Ordering::Release);
        if let Err(e) = persist(&store, status.acked()) {
            tracing::warn!("writing the publish cursor: {e}");
        }
        match result {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(acked = status.acked().0, "publishing to NATS: {e}; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(BACKOFF) => {}
                    // A dropped sender is a stop too.
                    changed = stop.changed() => if changed.is_err() { break },
                }
            }
        }
    }
}

/// The pipeline: up to `in_flight` publishes out, acks taken oldest first.
async fn publish_from(
    js: &jetstream::Context,
    store: &EventStore,
    config: &Config,
    status: &Status,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), PublishError> {
    let mut next = status.acked().0 + 1;
    let mut pending = VecDeque::with_capacity(config.in_flight);
    let mut persisted = Instant::now();
    loop {
        // Refill in runs once half the window is acknowledged: one log read and one pass
        // over the Merkle tiles per run, not per event.
        if pending.len() <= config.in_flight / 2 && next <= store.last_seq().0 {
            let room = config.in_flight - pending.len();
            // Read first, then publish: the log iterator is not held across an await.
            let envelopes: Vec<Envelope> = store.read_from(Seq(next)).take(room).collect::<Result<_, _>>()?;
            if let (Some(first), Some(last)) = (envelopes.first(), envelopes.last()) {
                let leaves = store.leaf_hashes(first.seq, last.seq)?;
                for (env, leaf) in envelopes.iter().zip(&leaves) {
                    let ack =
                        js.send_publish(subject(&config.id, env), message(config, env, leaf)?).await.map_err(nats)?;
                    pending.push_back((env.seq, ack));
                    next = env.seq.0 + 1;
                }
            }
        }
        let Some((seq, ack)) = pending.pop_front() else {
            // Caught up: write the cursor, then wait for the log to grow.
            if persisted.elapsed() >= PERSIST_EVERY {
                persist(store, status.acked())?;
                persisted = Instant::now();
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(5)) => continue,
                _ = stop.changed() => return Ok(()),
            }
        };
        ack.await.map_err(nats)?;
        status.acked.store(seq.0, Ordering::Release);
        if persisted.elapsed() >= PERSIST_EVERY {
            persist(store, seq)?;
            persisted = Instant::now();
        }
        if *stop.borrow() {
            // Stop after what is in flight is acknowledged, so a clean stop republishes nothing.
            for (seq, ack) in pending.drain(..) {
                ack.await.map_err(nats)?;
                status.acked.store(seq.0, Ordering::Release);
            }
            return Ok(());
        }
    }
}
