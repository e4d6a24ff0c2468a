//! Runs the campaign domain inside the sequencer: decide against the in-memory registry,
//! log the refusals audits need, stage events with their subjects, and apply them.

use crate::codec::{self, DecodeError};
use crate::domain::event::DemandId;
use crate::domain::{Campaign, Command, Event, Registry, Rejection, apply, decide, refusal_event};
use crate::sequencer::Handler;
use crate::snapshot;
use event_store::merkle::Hash;
use event_store::{
    AppendError, Batch, Cf, EventStore, ExpectedVersion, LogWriter, Metadata, RegistryTime, Seq, StoreError,
    StreamAppend,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

/// A command and who sent it.
#[derive(Debug, Clone)]
pub struct Submission {
    pub meta: Metadata,
    pub command: Command,
}

/// The command happened. `events` is empty when it changed nothing (e.g. a re-import).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accepted {
    pub seqs: Option<(Seq, Seq)>,
    pub events: Vec<Event>,
    /// The command was a retry with the same idempotency key: this is the first answer,
    /// and nothing was recorded again.
    #[serde(skip)]
    pub replayed: bool,
    /// The first event's leaf hash and registry time, for its receipt: the answer carries
    /// them from the batch instead of the caller reading the event back. Not remembered
    /// with an idempotency key (a replayed answer has none).
    #[serde(skip)]
    pub first_leaf: Option<(Hash, RegistryTime)>,
    /// What the registrar's [`Answering`] function rendered for the command, from the
    /// registry right after it was decided (a recorded lookup's view). Not remembered with
    /// an idempotency key either: `None` then.
    #[serde(skip)]
    pub answer: Option<Answer>,
}

/// What a command reads, rendered from the registry and encoded by the read model that
/// knows its shape; `None` when there is nothing (a citizen nobody issued to and with no
/// open demand, say).
pub type Answer = Option<Vec<u8>>;

/// Renders what `command` reads from the registry right after it was decided, or `None`
/// for a command that reads nothing. Runs on the writer's thread for every command.
pub type Answering = fn(&Registry, &Command) -> Option<Answer>;

/// The keys of the idempotency records whose remembered answer holds an event about
/// `subject` (a CCCD): an erasure must forget them too. Reads the whole column family.
pub fn idempotency_records_about(store: &EventStore, subject: &str) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut out = Vec::new();
    for item in store.scan_prefix(Cf::Idempotency, &[]) {
        let (key, value) = item?;
        let seen: Remembered = postcard::from_bytes(&value)
            .map_err(|_| StoreError::CorruptMeta("an idempotency record does not decode".into()))?;
        if seen.accepted.events.iter().any(|e| codec::stream_and_subject(e).1.as_deref() == Some(subject)) {
            out.push(key.into_vec());
        }
    }
    Ok(out)
}

/// What an idempotency key remembers: the command it was used for and what it produced.
#[derive(Debug, Serialize, Deserialize)]
struct Remembered {
    fingerprint: [u8; 32],
    accepted: Accepted,
}

/// `actor ‖ 0 ‖ key`: keys are per caller, so two CAs may pick the same one.
fn idempotency_key(actor: &str, key: &str) -> Vec<u8> {
    [actor.as_bytes(), &[0], key.as_bytes()].concat()
}

/// Identifies a command's content. `Debug` prints every field of a command, deterministically.
fn fingerprint(command: &Command) -> [u8; 32] {
    Sha256::digest(format!("{command:?}").as_bytes()).into()
}

/// Why a submitted command did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A rule said no. `logged_seq` is the `AttemptRefused` fact recorded for audits (R13).
    #[error("{rejection}")]
    Rejected { rejection: Rejection, logged_seq: Option<Seq> },
    #[error(transparent)]
    Storage(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A read model kept exact inside the write batch (the lookup must see the write that was
/// just acknowledged): it sees each event right after the registry applied it and stages
/// its own writes in the same batch.
pub trait InlineProjection: Send {
    /// Stages what `event` changed, given the registry that already includes it.
    fn project(&mut self, registry: &Registry, event: &Event, batch: &mut Batch);
    /// Called once at start-up with the replayed registry: a projection whose stored form is
    /// missing or of another version rebuilds itself here, before any command runs.
    fn open(&mut self, store: &EventStore, registry: &Registry) -> Result<(), StoreError>;
}

pub struct Registrar {
    registry: Registry,
    store: Arc<EventStore>,
    campaign: Campaign,
    inline: Vec<Box<dyn InlineProjection>>,
    answering: Option<Answering>,
    /// Keys used lately, including those of the batch being built and of the one being
    /// written (which the store does not have yet). Bounded: when full they become `older`
    /// and `older` is dropped, which by then holds only keys the store has (see
    /// `Handler::handle`). Both are cleared when a batch fails.
    recent_keys: HashMap<Vec<u8>, Arc<Remembered>>,
    older_keys: HashMap<Vec<u8>, Arc<Remembered>>,
    /// A state snapshot is written once the log is this many events past the last one.
    snapshot_every: u64,
    /// The seq the stored snapshot covers (0: none).
    snapshot_seq: Seq,
    /// The state snapshot under way, if any.
    snapshotting: Option<Snapshotting>,
}

/// A state snapshot made off the sequencer: a thread encodes a copy of the registry taken
/// between batches at `seq`, and stores it once the log is durable up to `seq`.
struct Snapshotting {
    seq: Seq,
    /// Sent once `seq` is durable. Dropped unsent when the batches up to `seq` failed (or
    /// at a stop): the thread then stores nothing.
    durable: Option<mpsc::Sender<()>>,
    /// `Ok(true)` once stored, `Ok(false)` when abandoned.
    thread: JoinHandle<Result<bool, StoreError>>,
}

const RECENT_KEYS_MAX: usize = 1 << 18;

/// Folds the whole log into a registry, ignoring any snapshot: what auditors compare with.
pub fn replay(store: &EventStore, campaign: &Campaign) -> Result<Registry, OpenError> {
    let mut registry = Registry::new(campaign.clone());
    fold(store, &mut registry, Seq(1))?;
    Ok(registry)
}

/// Folds the log from `from` on into `registry`; answers how many events that was.
pub fn fold(store: &EventStore, registry: &mut Registry, from: Seq) -> Result<u64, OpenError> {
    let mut folded = 0;
    for env in store.read_from(from) {
        let env = env?;
        apply(registry, env.seq, env.recorded_at, &codec::decode(&env)?);
        folded += 1;
    }
    Ok(folded)
}

/// Events between state snapshots by default: folding this many at start-up takes ~1.3 s
/// here (`kyso-bench --only projections`, the start-up table).
pub const SNAPSHOT_EVERY: u64 = 1_000_000;

impl Registrar {
    pub fn open(store: Arc<EventStore>, campaign: Campaign) -> Result<Self, OpenError> {
        Self::with_inline(store, campaign, Vec::new())
    }

    /// Opens with inline projections, which are brought up to date before this returns.
    pub fn with_inline(
        store: Arc<EventStore>,
        campaign: Campaign,
        mut inline: Vec<Box<dyn InlineProjection>>,
    ) -> Result<Self, OpenError> {
        let loaded = snapshot::load(&store, &campaign)?;
        if let Some(why) = &loaded.unusable {
            tracing::warn!(reason = %why, "the stored registry snapshot is not used; folding the whole log");
        }
        tracing::info!(snapshot_seq = loaded.snapshot_seq.0, folded = loaded.folded, "registry loaded");
        for p in &mut inline {
            p.open(&store, &loaded.registry)?;
        }
        Ok(Self {
            registry: loaded.registry,
            campaign,
            inline,
            answering: None,
            recent_keys: HashMap::new(),
            older_keys: HashMap::new(),
            snapshot_every: SNAPSHOT_EVERY,
            snapshot_seq: loaded.snapshot_seq,
            snapshotting: None,
            store,
        })
    }

    /// Answers each accepted command with what `answering` renders for it.
    pub fn answering(mut self, answering: Answering) -> Self {
        self.answering = Some(answering);
        self
    }

    /// The registry as of the last command decided: read it through
    /// [`crate::Sequencer::read`], which answers once that is durable.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Writes a state snapshot once the log is `events` past the last one (at least 1).
    pub fn snapshot_every(mut self, events: u64) -> Self {
        self.snapshot_every = events.max(1);
        self
    }

    /// The seq the stored state snapshot covers (0: none).
    pub fn snapshot_seq(&self) -> Seq {
        self.snapshot_seq
    }

    /// Takes the outcome of the snapshot under way, if it is done (or `wait`). A failure is
    /// only logged: a snapshot is a start-up shortcut, and the log it sums up is durable.
    fn finish_snapshot(&mut self, wait: bool) {
        let Some(job) = self.snapshotting.take() else { return };
        if !wait && !job.thread.is_finished() {
            self.snapshotting = Some(job);
            return;
        }
        let seq = job.seq;
        match job.thread.join() {
            Ok(Ok(true)) => self.snapshot_seq = seq,
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, seq = seq.0, "storing the registry snapshot failed"),
            Err(_) => tracing::warn!(seq = seq.0, "the thread making the registry snapshot panicked"),
        }
    }

    /// Makes the snapshot under way store nothing: its thread is never told its seq is
    /// durable (if it was told already, it stores as usual).
    fn abandon_snapshot(&mut self) {
        if let Some(job) = &mut self.snapshotting {
            job.durable = None;
        }
    }

    /// Copies the registry as of `staged` (between batches, where it holds still) for a
    /// thread to encode and store. The copy is the sequencer's whole pause: the citizens'
    /// shards are shared copy-on-write (see `CitizenMap`), so it copies pointers and the
    /// small maps, 0.00 s for 6.7M citizens where the whole copy took 0.57 s
    /// (`kyso-bench --only projections`, session 25).
    fn start_snapshot(&mut self, staged: Seq) {
        let copy = self.registry.clone();
        let store = Arc::clone(&self.store);
        let (durable, wait) = mpsc::channel();
        let thread = std::thread::Builder::new().name("kyso-state-snapshot".into()).spawn(move || {
            let encoded = snapshot::encode(&copy, staged);
            drop(copy);
            if wait.recv().is_err() {
                return Ok(false);
            }
            snapshot::put(&store, encoded).map(|()| true)
        });
        match thread {
            Ok(thread) => self.snapshotting = Some(Snapshotting { seq: staged, durable: Some(durable), thread }),
            Err(e) => tracing::warn!(error = %e, "no thread to make the registry snapshot"),
        }
    }

    /// Stages the events of one command (all or none) and applies them.
    fn record(
        &mut self,
        writer: &mut LogWriter,
        batch: &mut Batch,
        meta: &Metadata,
        events: &[Event],
    ) -> Result<Option<(Seq, Seq)>, StoreError> {
        if events.is_empty() {
            return Ok(None);
        }
        let recorded_at = batch.recorded_at();
        let appends = events
            .iter()
            .map(|e| {
                let (stream, data) = codec::encode(e);
                StreamAppend { stream, expected: ExpectedVersion::Any, events: vec![data] }
            })
            .collect();
        let staged = writer.stage(batch, meta, appends).map_err(|e| match e {
            AppendError::Store(e) => e,
            // Any version is expected and stream ids are ours: neither can fail.
            other => unreachable!("domain appends cannot conflict: {other}"),
        })?;
        for (offset, e) in events.iter().enumerate() {
            self.fold_in(batch, Seq(staged.first_seq.0 + offset as u64), recorded_at, e);
        }
        Ok(Some((staged.first_seq, staged.last_seq)))
    }

    /// An event staged in `batch`: into the deadline index, the registry, and the inline
    /// projections (staged in the same batch).
    fn fold_in(&mut self, batch: &mut Batch, seq: Seq, recorded_at: RegistryTime, e: &Event) {
        self.index_deadline(batch, e);
        apply(&mut self.registry, seq, recorded_at, e);
        for p in &mut self.inline {
            p.project(&self.registry, e, batch);
        }
    }
}

/// Why a read replica could not take an event from the primary's stream.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Replicate(#[from] event_store::ReplicateError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Events of the primary's log in seq order, each with the leaf hash the primary computed.
pub struct Replicate(pub Vec<(event_store::Envelope, event_store::merkle::Hash)>);

/// A read replica's writer: runs in a [`crate::Sequencer`] (group commit), appending the
/// primary's events as they were recorded and keeping the same registry state and inline
/// projections as the primary, with the same code.
pub struct Replicator(pub Registrar);

impl Handler for Replicator {
    type Command = Replicate;
    /// The last seq staged.
    type Reply = Result<Seq, ReplicaError>;

    /// Unlike a command, a refused event does not undo the events before it: each was
    /// checked on its own (next seq, continues its stream, leaf), so they are committed
    /// with the batch; the replica stops at the refused one.
    fn handle(&mut self, writer: &mut LogWriter, batch: &mut Batch, r: Replicate) -> Self::Reply {
        let mut last = Seq(batch.next_seq().0 - 1);
        for (envelope, leaf) in r.0 {
            let event = codec::decode(&envelope)?;
            let (seq, recorded_at) = (envelope.seq, envelope.recorded_at);
            writer.replicate(batch, envelope, leaf)?;
            self.0.fold_in(batch, seq, recorded_at, &event);
            last = seq;
        }
        Ok(last)
    }

    fn rolled_back(&mut self) {
        self.0.rolled_back();
    }

    fn committed(&mut self, durable: Seq, staged: Seq) {
        self.0.committed(durable, staged);
    }

    fn stopped(&mut self) {
        self.0.stopped();
    }
}

/// `due_at (i64 BE, offset so that byte order is time order) ‖ demand id (u64 BE)`.
pub fn deadline_key(due_at: RegistryTime, demand: DemandId) -> Vec<u8> {
    let mut key = Vec::with_capacity(16);
    key.extend_from_slice(&((due_at.0 as u64) ^ (1 << 63)).to_be_bytes());
    key.extend_from_slice(&demand.to_be_bytes());
    key
}

/// Parses a `deadlines` key back; `None` if it is not one.
pub fn parse_deadline_key(key: &[u8]) -> Option<(RegistryTime, DemandId)> {
    let due = u64::from_be_bytes(key.get(..8)?.try_into().ok()?) ^ (1 << 63);
    let demand = u64::from_be_bytes(key.get(8..16)?.try_into().ok()?);
    Some((RegistryTime(due as i64), demand))
}

impl Registrar {
    /// R12: an open demand has an entry in the deadline index until the CA acts, it expires
    /// or an issuance closes it; the entry changes in the same batch as the event.
    fn index_deadline(&self, batch: &mut Batch, e: &Event) {
        let closed = match e {
            Event::DemandRegistered { demand, expires_at, .. } => {
                batch.put(Cf::Deadlines, deadline_key(*expires_at, *demand), Vec::new());
                return;
            }
            Event::DemandAcknowledged { demand, .. } | Event::DemandExpired { demand, .. } => Some(*demand),
            Event::IssuanceRecorded(i) => i.closed_demand,
            _ => None,
        };
        if let Some(d) = closed.and_then(|id| self.registry.demands.get(&id).map(|d| (id, d))) {
            batch.delete(Cf::Deadlines, deadline_key(d.1.expires_at, d.0));
        }
    }
}

impl Registrar {
    /// What an idempotency key was used for, from this batch, recent memory or the store.
    fn remembered(&mut self, key: &[u8]) -> Result<Option<Arc<Remembered>>, StoreError> {
        if let Some(seen) = self.recent_keys.get(key).or_else(|| self.older_keys.get(key)) {
            return Ok(Some(Arc::clone(seen)));
        }
        match self.store.get(Cf::Idempotency, key)? {
            None => Ok(None),
            Some(bytes) => {
                let seen: Remembered = postcard::from_bytes(&bytes)
                    .map_err(|_| StoreError::CorruptMeta("an idempotency record does not decode".into()))?;
                Ok(Some(Arc::new(seen)))
            }
        }
    }
}

impl Handler for Registrar {
    type Command = Submission;
    type Reply = Result<Accepted, CommandError>;

    fn handle(&mut self, writer: &mut LogWriter, batch: &mut Batch, sub: Submission) -> Self::Reply {
        // Only between batches: then the batch before this one may still be on its way to
        // disk, but every batch before the last turnover is durable, and only those keys go.
        if batch.is_empty() && self.recent_keys.len() >= RECENT_KEYS_MAX {
            self.older_keys = std::mem::take(&mut self.recent_keys);
        }
        let key = sub.meta.idempotency_key.as_deref().map(|k| idempotency_key(&sub.meta.actor, k));
        let print = key.as_ref().map(|_| fingerprint(&sub.command));
        if let (Some(key), Some(print)) = (&key, print)
            && let Some(seen) = self.remembered(key)?
        {
            if seen.fingerprint != print {
                let key = sub.meta.idempotency_key.clone().unwrap_or_default();
                return Err(CommandError::Rejected {
                    rejection: Rejection::IdempotencyKeyReused { key },
                    logged_seq: None,
                });
            }
            return Ok(Accepted { replayed: true, first_leaf: None, answer: None, ..seen.accepted.clone() });
        }
        match decide(&self.registry, &sub.command, batch.recorded_at()) {
            Ok(events) => {
                let seqs = self.record(writer, batch, &sub.meta, &events)?;
                let first_leaf = seqs.and_then(|(first, _)| Some((batch.leaf(first)?, batch.recorded_at())));
                let answer = self.answering.and_then(|render| render(&self.registry, &sub.command));
                let accepted = Accepted { seqs, events, replayed: false, first_leaf, answer };
                if let (Some(key), Some(fingerprint)) = (key, print) {
                    let seen = Remembered { fingerprint, accepted: accepted.clone() };
                    batch.put(
                        Cf::Idempotency,
                        key.clone(),
                        postcard::to_stdvec(&seen).expect("serialising to a Vec cannot fail"),
                    );
                    self.recent_keys.insert(key, Arc::new(seen));
                }
                Ok(accepted)
            }
            Err(rejection) => {
                let logged: Vec<Event> = refusal_event(&sub.command, &rejection).into_iter().collect();
                let logged_seq = self.record(writer, batch, &sub.meta, &logged)?.map(|(first, _)| first);
                Err(CommandError::Rejected { rejection, logged_seq })
            }
        }
    }

    /// A batch never reached disk: the registry forgets it, and any batch decided after
    /// it, by loading the last snapshot and folding the durable log after it. Only after a
    /// failed write (e.g. a full disk).
    fn rolled_back(&mut self) {
        self.recent_keys.clear();
        self.older_keys.clear();
        // A snapshot not yet told its seq is durable may cover what just failed.
        self.abandon_snapshot();
        match snapshot::load(&self.store, &self.campaign) {
            Ok(loaded) => self.registry = loaded.registry,
            Err(e) => panic!("the committed log no longer replays after a failed batch: {e}"),
        }
    }

    /// Starts a snapshot when one is due, and tells the one under way when its seq is
    /// durable.
    fn committed(&mut self, durable: Seq, staged: Seq) {
        self.finish_snapshot(false);
        match &mut self.snapshotting {
            Some(job) => {
                if job.seq <= durable
                    && let Some(tell) = job.durable.take()
                {
                    // The thread is gone only if it panicked; `finish_snapshot` reports that.
                    let _ = tell.send(());
                }
            }
            None if durable.0 - self.snapshot_seq.0 >= self.snapshot_every => self.start_snapshot(staged),
            None => {}
        }
    }

    /// A clean stop leaves a snapshot of the whole log, so the next start folds nothing.
    fn stopped(&mut self) {
        // The one under way covers less than the one written below; it is abandoned, and
        // waited for so it cannot land after it.
        self.abandon_snapshot();
        self.finish_snapshot(true);
        // Every batch is committed or rolled back by now: the store's last seq is the
        // registry's.
        let last = self.store.last_seq();
        if last > self.snapshot_seq {
            match snapshot::write(&self.store, &self.registry, last) {
                Ok(()) => self.snapshot_seq = last,
                Err(e) => tracing::warn!(error = %e, "storing the registry snapshot at the stop failed"),
            }
        }
    }
}
