//! `kyso follow`: a read replica that consumes the primary's JetStream stream.
//!
//! It appends each event exactly as the primary recorded it (same seq, same bytes, the
//! primary's leaf hash) through its own writer, so its log, Merkle tree, registry state and
//! projections are built by the same code as the primary's. Continuity is checked, never
//! papered over: a gap, a reorder, an event that does not continue its stream, a public
//! event whose leaf differs, or a tree that disagrees with a checkpoint the primary signed
//! stops the replica, and `/readyz` answers 503 naming the seq.

use async_nats::jetstream::{self, consumer::pull};
use commands::Sequencer;
use commands::registrar::{Replicate, Replicator};
use event_store::checkpoint::VerifierKey;
use event_store::{Envelope, EventStore};
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Messages fetched (and appended in one command) at a time.
const FETCH: usize = 1024;

pub struct FollowConfig {
    pub nats_url: String,
    /// The primary's stream (`KYSO_<province code>`).
    pub stream: String,
    /// The durable consumer's name.
    pub consumer: String,
    /// The primary's base URL, to compare our tree with its signed checkpoints.
    pub primary: Option<String>,
    /// The primary's public key; fetched from the primary when not pinned.
    pub key: Option<VerifierKey>,
}

/// What the replica has done and whether it may serve.
#[derive(Debug, Default)]
pub struct Status {
    connected: AtomicBool,
    /// The largest checkpoint size whose root our tree was found to have.
    verified_checkpoint: AtomicU64,
    broken: Mutex<Option<String>>,
}

impl Status {
    /// Why the replica stopped following, if it did: it then refuses to serve.
    pub fn broken(&self) -> Option<String> {
        self.broken.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub fn verified_checkpoint(&self) -> u64 {
        self.verified_checkpoint.load(Ordering::Acquire)
    }

    fn stop(&self, why: String) {
        tracing::error!("replica stopped: {why}");
        *self.broken.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }
}

/// A replica's store and writer as `kyso follow` runs them: the registry and the inline
/// directory kept by the primary's code, fed by a [`Replicator`] in its own sequencer
/// (group commit), which also renders citizen views from its registry.
pub struct Opened {
    pub store: Arc<EventStore>,
    pub writer: Sequencer<Replicator>,
    /// Ends once every handle to `writer` is dropped.
    pub thread: std::thread::JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] event_store::StoreError),
    #[error(transparent)]
    Registry(#[from] commands::registrar::OpenError),
}

/// Opens (or creates) a replica's data dir at `dir` for `campaign`.
pub fn open(dir: &std::path::Path, campaign: commands::domain::Campaign) -> Result<Opened, OpenError> {
    let (store, writer) = EventStore::open(dir, true)?;
    let inline: Vec<Box<dyn commands::registrar::InlineProjection>> = vec![Box::new(projections::directory::Directory)];
    let registrar = commands::registrar::Registrar::with_inline(Arc::clone(&store), campaign, inline)?;
    let (writer, thread) = Sequencer::start(
        writer,
        Replicator(registrar),
        Arc::new(commands::SystemClock),
        commands::SequencerConfig::default(),
    );
    Ok(Opened { store, writer, thread })
}

/// An integrity failure (stop for good) or a transport failure (retry).
enum Failure {
    Integrity(String),
    Transport(String),
}

fn transport(e: impl std::fmt::Display) -> Failure {
    Failure::Transport(e.to_string())
}

/// A replica following its primary on the current runtime, as `kyso follow` runs it.
pub struct Following {
    pub status: Arc<Status>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Following {
    /// Starts following into `store` through `sequencer`.
    pub fn spawn(store: Arc<EventStore>, sequencer: Sequencer<Replicator>, config: FollowConfig) -> Self {
        let status = Arc::new(Status::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(follow(store, sequencer, config, Arc::clone(&status), stopped));
        Following { status, stop, task }
    }

    /// Stops following and waits for the task to end.
    pub async fn stop(self) -> Result<(), tokio::task::JoinError> {
        // The task may have ended on an integrity failure already: nobody to tell then.
        let _ = self.stop.send(true);
        self.task.await
    }
}

/// Follows until `stop` or an integrity failure. NATS outages are waited out.
async fn follow(
    store: Arc<EventStore>,
    sequencer: Sequencer<Replicator>,
    config: FollowConfig,
    status: Arc<Status>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let client = match publisher::connect(&config.nats_url).await {
        Ok(client) => client,
        Err(e) => return status.stop(format!("NATS {}: {e}", config.nats_url)),
    };
    let js = jetstream::new(client);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("an HTTP client");
    let mut key = config.key.clone();
    while !*stop.borrow() {
        let result = tokio::select! {
            r = follow_once(&store, &sequencer, &js, &config, &status) => r,
            r = check_checkpoints(&store, &http, &config, &mut key, &status) => r,
            _ = stop.changed() => return,
        };
        status.connected.store(false, Ordering::Release);
        match result {
            Failure::Integrity(why) => return status.stop(why),
            Failure::Transport(e) => {
                tracing::warn!(applied = store.last_seq().0, "following the primary: {e}; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

/// Consumes from our log's end; returns only on failure.
async fn follow_once(
    store: &EventStore,
    sequencer: &Sequencer<Replicator>,
    js: &jetstream::Context,
    config: &FollowConfig,
    status: &Status,
) -> Failure {
    let stream = match js.get_stream(&config.stream).await {
        Ok(stream) => stream,
        Err(e) => return transport(format!("stream {}: {e}", config.stream)),
    };
    // Our log is the checkpoint: the durable consumer is recreated to start right after it,
    // whatever it had acknowledged before (a restored or copied data dir).
    let _ = stream.delete_consumer(&config.consumer).await;
    let consumer = match stream
        .create_consumer(pull::Config {
            durable_name: Some(config.consumer.clone()),
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: store.last_seq().0 + 1,
            },
            ack_policy: jetstream::consumer::AckPolicy::All,
            // Above one fetch: with the server's default (1000) a fetch of 1024 would stall
            // until it expires, waiting for acks we only send after it.
            max_ack_pending: (FETCH * 4) as i64,
            ..Default::default()
        })
        .await
    {
        Ok(c) => c,
        Err(e) => return transport(format!("creating consumer {}: {e}", config.consumer)),
    };
    status.connected.store(true, Ordering::Release);
    loop {
        let mut batch = match consumer.fetch().max_messages(FETCH).expires(Duration::from_millis(500)).messages().await
        {
            Ok(b) => b,
            Err(e) => return transport(e),
        };
        let mut events = Vec::new();
        let mut last_message = None;
        while let Some(message) = batch.next().await {
            let message = match message {
                Ok(m) => m,
                Err(e) => return transport(e),
            };
            match decode(&message) {
                Ok(event) => events.push(event),
                Err(why) => return Failure::Integrity(why),
            }
            last_message = Some(message);
        }
        let Some(last_message) = last_message else { continue };
        // Redelivered events we already hold are skipped; anything else out of order is refused.
        let held = store.last_seq().0;
        events.retain(|(env, _)| env.seq.0 > held);
        if !events.is_empty() {
            match sequencer.submit(Replicate(events)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Failure::Integrity(e.to_string()),
                Err(e) => return transport(format!("appending: {e}")),
            }
        }
        if let Err(e) = last_message.ack().await {
            return transport(e);
        }
    }
}

fn decode(message: &jetstream::Message) -> Result<(Envelope, event_store::merkle::Hash), String> {
    let header = |name: &str| message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
    let seq = header(publisher::HEADER_SEQ).ok_or("a message without a Kyso-Seq header")?;
    let env: Envelope = postcard::from_bytes(&message.payload).map_err(|e| {
        format!("seq {seq}: not a postcard envelope ({e}); is the primary publishing JSON (--nats-json)?")
    })?;
    if env.seq.0.to_string() != seq {
        return Err(format!("message says seq {seq} but holds seq {}", env.seq));
    }
    let leaf = header(publisher::HEADER_LEAF)
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("seq {seq}: no valid Kyso-Leaf-Hash header"))?;
    Ok((env, leaf))
}

/// Every few seconds, compares our tree with the primary's newest signed checkpoint once
/// we hold that many events. Returns only on an integrity failure: the primary being
/// unreachable over HTTP does not stop the following.
async fn check_checkpoints(
    store: &EventStore,
    http: &reqwest::Client,
    config: &FollowConfig,
    key: &mut Option<VerifierKey>,
    status: &Status,
) -> Failure {
    let Some(primary) = &config.primary else { return std::future::pending().await };
    let mut pending: Option<(u64, event_store::merkle::Hash)> = None;
    loop {
        match check_once(store, http, primary, key, status, &mut pending).await {
            Ok(()) => {}
            Err(Failure::Transport(e)) => tracing::warn!("checking the primary's checkpoint: {e}"),
            Err(integrity) => return integrity,
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn get_text(http: &reqwest::Client, url: String) -> Result<String, Failure> {
    let r = http.get(&url).send().await.map_err(|e| transport(format!("{url}: {e}")))?;
    if !r.status().is_success() {
        return Err(transport(format!("{url}: HTTP {}", r.status())));
    }
    r.text().await.map_err(|e| transport(format!("{url}: {e}")))
}

async fn check_once(
    store: &EventStore,
    http: &reqwest::Client,
    primary: &str,
    key: &mut Option<VerifierKey>,
    status: &Status,
    pending: &mut Option<(u64, event_store::merkle::Hash)>,
) -> Result<(), Failure> {
    let verifier = match key {
        Some(k) => k,
        None => {
            let text = get_text(http, format!("{primary}/v1/log/key")).await?;
            let k = VerifierKey::parse(&text).map_err(|e| Failure::Integrity(format!("the primary's key: {e}")))?;
            key.insert(k)
        }
    };
    if pending.is_none() {
        let note = get_text(http, format!("{primary}/v1/log/checkpoint")).await?;
        let cp = verifier.open(&note).map_err(|e| Failure::Integrity(format!("the primary's checkpoint: {e}")))?;
        if cp.size > status.verified_checkpoint() {
            *pending = Some((cp.size, cp.root));
        }
    }
    if let Some((size, root)) = *pending
        && store.tree_head().size >= size
    {
        let ours = store.root_at(size).map_err(|e| Failure::Integrity(e.to_string()))?;
        if ours != root {
            return Err(Failure::Integrity(format!(
                "our tree at size {size} differs from the primary's signed checkpoint: an event up to seq {size} differs"
            )));
        }
        status.verified_checkpoint.store(size, Ordering::Release);
        *pending = None;
    }
    Ok(())
}
