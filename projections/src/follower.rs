//! Running the asynchronous projections: each is a [`Live`] value that readers share, a
//! checkpoint (the last seq folded) stored atomically with a snapshot of its state, and one
//! [`Follower`] thread that folds new events into all of them. Reading takes a read lock
//! on one projection; it never touches the sequencer, so it never blocks a write.

use crate::audit::AuditIndex;
use crate::compliance::Compliance;
use crate::counts::Counts;
use crate::demands::DemandBoard;
use crate::fold::{Decoded, Fold, KeyOut};
use commands::codec::DecodeError;
use event_store::pipeline::{Handoff, two_stage};
use event_store::{AsideOp, Cf, EventStore, Seq, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Events folded per step: large enough to amortise locks and writes, small enough that a
/// reader never waits long for the write lock.
const CHUNK: usize = 4096;
/// How often a snapshot is written while events keep coming. A crash re-folds at most this
/// much of the log.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(2);
/// A large state (compliance keeps every citizen–CA lookup pair) takes long to write: the
/// next snapshot then waits this many times as long, so snapshots stay a small share of
/// the follower's time.
const SNAPSHOT_COST_FACTOR: u32 = 10;
/// How long the follower sleeps when it has caught up.
const IDLE: Duration = Duration::from_millis(10);
/// Wait before writing again after a storage error.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("projection {0} is already being rebuilt")]
    RebuildRunning(&'static str),
    #[error(
        "no projection is called {0:?}; known: counts, compliance, demands, audit (the inline directory rebuilds itself at start-up when its version changes, and the citizen view is rendered from the registry)"
    )]
    Unknown(String),
}

/// The stored form: the state and the checkpoint it is exact at, in one value.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    /// Which copy of the projection's keys is live; a rebuild writes the next one aside.
    generation: u32,
    checkpoint: u64,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

fn snapshot_key(name: &str) -> Vec<u8> {
    [b"s/", name.as_bytes()].concat()
}

fn key_prefix(name: &str, generation: u32) -> Vec<u8> {
    [b"k/", name.as_bytes(), b"/", &generation.to_be_bytes()[..]].concat()
}

fn encode<P: Fold>(p: &P) -> Vec<u8> {
    postcard::to_stdvec(p).expect("serialising to a Vec cannot fail")
}

/// How far a rebuild has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RebuildProgress {
    pub done: u64,
    pub total: u64,
}

struct Pending<P> {
    state: P,
    applied: u64,
    generation: u32,
}

/// One projection as readers see it.
pub struct Live<P> {
    state: RwLock<P>,
    applied: AtomicU64,
    generation: AtomicU32,
    rebuild: Mutex<Option<RebuildProgress>>,
    pending: Mutex<Option<Pending<P>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<P: Fold> Live<P> {
    /// Loads the stored snapshot. One of another version (or that no longer decodes) is
    /// dropped: the projection starts from seq 1 under a new generation of keys.
    fn load(store: &EventStore) -> Result<Self, FollowError> {
        let stored = match store.get(Cf::Projections, &snapshot_key(P::NAME))? {
            None => None,
            Some(bytes) => postcard::from_bytes::<Snapshot>(&bytes).ok(),
        };
        let (state, applied, generation) = match stored {
            None => (P::default(), 0, 0),
            Some(s) => match (s.version == P::VERSION).then(|| postcard::from_bytes::<P>(&s.data)) {
                Some(Ok(state)) => (state, s.checkpoint, s.generation),
                _ => {
                    tracing::warn!(
                        projection = P::NAME,
                        stored = s.version,
                        code = P::VERSION,
                        "stored projection is of another version; rebuilding from seq 1"
                    );
                    // The old keys, and any left by a rebuild that a crash interrupted.
                    let stale = [s.generation, s.generation + 1].map(|g| AsideOp::DeletePrefix(key_prefix(P::NAME, g)));
                    store.write_aside(Cf::Projections, stale)?;
                    (P::default(), 0, s.generation + 1)
                }
            },
        };
        Ok(Self {
            state: RwLock::new(state),
            applied: AtomicU64::new(applied),
            generation: AtomicU32::new(generation),
            rebuild: Mutex::new(None),
            pending: Mutex::new(None),
        })
    }

    /// Runs `f` on the current state under a read lock.
    pub fn read<R>(&self, f: impl FnOnce(&P) -> R) -> R {
        f(&self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The last seq folded in.
    pub fn applied(&self) -> Seq {
        Seq(self.applied.load(Ordering::Acquire))
    }

    /// Which copy of its keys is live; each rebuild makes the next one.
    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Acquire)
    }

    /// Where this projection's keys live (the audit index).
    pub fn key_prefix(&self) -> Vec<u8> {
        key_prefix(P::NAME, self.generation.load(Ordering::Acquire))
    }

    /// The state in its stored form: what a rebuild must reproduce byte for byte.
    pub fn encoded(&self) -> Vec<u8> {
        self.read(encode)
    }

    pub fn rebuild_progress(&self) -> Option<RebuildProgress> {
        *lock(&self.rebuild)
    }

    /// Rebuilds the projection aside from seq 1 up to where the live one is now, while the
    /// live one keeps serving; the follower then brings the new one level and swaps it in
    /// atomically. Blocking: run it on its own thread. `progress(done, total)` is called as
    /// it goes.
    pub fn rebuild(&self, store: &EventStore, progress: &dyn Fn(u64, u64)) -> Result<(), FollowError> {
        {
            let mut r = lock(&self.rebuild);
            if r.is_some() {
                return Err(FollowError::RebuildRunning(P::NAME));
            }
            *r = Some(RebuildProgress { done: 0, total: self.applied().0 });
        }
        let result = self.rebuild_aside(store, progress);
        if result.is_err() {
            *lock(&self.rebuild) = None;
        }
        result
    }

    fn rebuild_aside(&self, store: &EventStore, progress: &dyn Fn(u64, u64)) -> Result<(), FollowError> {
        let total = self.applied().0;
        let generation = self.generation.load(Ordering::Acquire) + 1;
        let prefix = key_prefix(P::NAME, generation);
        store.write_aside(Cf::Projections, [AsideOp::DeletePrefix(prefix.clone())])?;
        let mut keys = KeyOut::new(prefix);
        let state = fold_log::<P>(store, Seq(total), &mut keys, &mut |done| {
            *lock(&self.rebuild) = Some(RebuildProgress { done, total });
            progress(done, total);
        })?;
        *lock(&self.pending) = Some(Pending { state, applied: total, generation });
        Ok(())
    }
}

/// Events `from` through `upto`, each decoded once, in seq order.
pub fn decoded_range(
    store: &EventStore,
    from: Seq,
    upto: Seq,
) -> impl Iterator<Item = Result<Decoded, FollowError>> + '_ {
    store
        .read_from(from)
        .take_while(move |env| env.as_ref().map_or(true, |e| e.seq <= upto))
        .map(|env| Ok(Decoded::from_envelope(env?)?))
}

/// Events `from` through `upto`, in seq order, a chunk at a time. A second thread reads and
/// decodes the next chunks while `each` folds this one: decoding is most of a rebuild's cost
/// (R13 replays everything), and the two stages fill both cores.
pub fn for_each_chunk(
    store: &EventStore,
    from: Seq,
    upto: Seq,
    mut each: impl FnMut(&[Decoded]) -> Result<(), FollowError>,
) -> Result<(), FollowError> {
    let fresh = |handoff: &Handoff<Vec<Decoded>, FollowError>| match handoff.spare() {
        Some(mut chunk) => {
            chunk.clear();
            chunk
        }
        None => Vec::with_capacity(CHUNK),
    };
    let read = |handoff: &Handoff<Vec<Decoded>, FollowError>| {
        let mut chunk = fresh(handoff);
        let read = store.visit(from, upto, |env| {
            chunk.push(Decoded::from_ref(&env)?);
            if chunk.len() == CHUNK && !handoff.send(std::mem::replace(&mut chunk, fresh(handoff))) {
                return Err(Stopped::Folder);
            }
            Ok(())
        });
        match read {
            Ok(()) if !chunk.is_empty() => {
                handoff.send(chunk);
                Ok(())
            }
            Ok(()) | Err(Stopped::Folder) => Ok(()),
            Err(Stopped::Failed(e)) => Err(e),
        }
    };
    two_stage(read, |chunk| each(chunk))
}

/// Why the reading side of [`for_each_chunk`] stopped early: the folding side stopped, or
/// reading failed.
enum Stopped {
    Folder,
    Failed(FollowError),
}

impl From<StoreError> for Stopped {
    fn from(e: StoreError) -> Self {
        Stopped::Failed(e.into())
    }
}

impl From<DecodeError> for Stopped {
    fn from(e: DecodeError) -> Self {
        Stopped::Failed(e.into())
    }
}

/// Folds `P` from seq 1 through `upto`, sending keyed output to `keys` (written to the
/// store a chunk at a time when `keys` has a prefix, dropped otherwise) and reporting progress.
pub fn fold_log<P: Fold>(
    store: &EventStore,
    upto: Seq,
    keys: &mut KeyOut,
    progress: &mut dyn FnMut(u64),
) -> Result<P, FollowError> {
    let mut p = P::default();
    let write_keys = !keys.prefix().is_empty();
    for_each_chunk(store, Seq(1), upto, |chunk| {
        for d in chunk {
            p.apply(&d.ctx(), &d.event, keys);
        }
        let puts = keys.take_puts();
        if write_keys {
            store.write_aside(Cf::Projections, puts)?;
        }
        progress(chunk.last().map_or(0, |d| d.seq.0));
        Ok(())
    })?;
    Ok(p)
}

/// What the follower needs of a projection, whatever its type.
trait Slot: Send + Sync {
    fn name(&self) -> &'static str;
    fn applied(&self) -> u64;
    fn apply_chunk(&self, chunk: &[Decoded], ops: &mut Vec<AsideOp>);
    fn snapshot(&self) -> AsideOp;
    /// Swaps in a finished rebuild, if there is one, after folding what it missed.
    fn finish_rebuild(&self, store: &EventStore, ops: &mut Vec<AsideOp>) -> Result<(), FollowError>;
}

impl<P: Fold> Slot for Live<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    fn apply_chunk(&self, chunk: &[Decoded], ops: &mut Vec<AsideOp>) {
        let mut keys = KeyOut::new(self.key_prefix());
        let mut state = self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = self.applied.load(Ordering::Acquire);
        let mut applied = before;
        for d in chunk.iter().filter(|d| d.seq.0 > before) {
            state.apply(&d.ctx(), &d.event, &mut keys);
            applied = d.seq.0;
        }
        self.applied.store(applied, Ordering::Release);
        ops.extend(keys.take_puts());
    }

    fn snapshot(&self) -> AsideOp {
        let state = self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let snap = Snapshot {
            version: P::VERSION,
            generation: self.generation.load(Ordering::Acquire),
            checkpoint: self.applied.load(Ordering::Acquire),
            data: encode(&*state),
        };
        AsideOp::Put(snapshot_key(P::NAME), postcard::to_stdvec(&snap).expect("serialising to a Vec cannot fail"))
    }

    fn finish_rebuild(&self, store: &EventStore, ops: &mut Vec<AsideOp>) -> Result<(), FollowError> {
        let Some(mut new) = lock(&self.pending).take() else {
            return Ok(());
        };
        let live = self.applied();
        let mut keys = KeyOut::new(key_prefix(P::NAME, new.generation));
        for d in decoded_range(store, Seq(new.applied + 1), live) {
            let d = d?;
            new.state.apply(&d.ctx(), &d.event, &mut keys);
        }
        ops.extend(keys.take_puts());
        let old = self.key_prefix();
        *self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner) = new.state;
        self.generation.store(new.generation, Ordering::Release);
        // The new snapshot and the old keys' removal go in the same batch as the new keys:
        // a crash leaves either the old generation or the new one, never a mix.
        ops.push(self.snapshot());
        ops.push(AsideOp::DeletePrefix(old));
        *lock(&self.rebuild) = None;
        tracing::info!(projection = P::NAME, at = live.0, "rebuilt projection swapped in");
        Ok(())
    }
}

/// The asynchronous projections of a store.
#[derive(Clone)]
pub struct Projections {
    pub counts: Arc<Live<Counts>>,
    pub compliance: Arc<Live<Compliance>>,
    pub demands: Arc<Live<DemandBoard>>,
    pub audit: Arc<Live<AuditIndex>>,
}

impl Projections {
    /// Loads every projection from its snapshot (or from nothing).
    pub fn open(store: &EventStore) -> Result<Self, FollowError> {
        Ok(Self {
            counts: Arc::new(Live::load(store)?),
            compliance: Arc::new(Live::load(store)?),
            demands: Arc::new(Live::load(store)?),
            audit: Arc::new(Live::load(store)?),
        })
    }

    fn slots(&self) -> Vec<Arc<dyn Slot>> {
        vec![self.counts.clone(), self.compliance.clone(), self.demands.clone(), self.audit.clone()]
    }

    /// Per projection: the last seq folded.
    pub fn checkpoints(&self) -> Vec<(&'static str, Seq)> {
        self.slots().iter().map(|s| (s.name(), Seq(s.applied()))).collect()
    }

    /// How many events the slowest projection is behind `head`.
    pub fn lag(&self, head: Seq) -> u64 {
        self.slots().iter().map(|s| head.0.saturating_sub(s.applied())).max().unwrap_or(0)
    }

    /// Rebuilds one projection by name (see [`Live::rebuild`]).
    pub fn rebuild(&self, name: &str, store: &EventStore, progress: &dyn Fn(u64, u64)) -> Result<(), FollowError> {
        match name {
            "counts" => self.counts.rebuild(store, progress),
            "compliance" => self.compliance.rebuild(store, progress),
            "demands" => self.demands.rebuild(store, progress),
            "audit" => self.audit.rebuild(store, progress),
            other => Err(FollowError::Unknown(other.to_string())),
        }
    }
}

/// Folds new events into every projection and writes their snapshots.
pub struct Follower {
    store: Arc<EventStore>,
    slots: Vec<Arc<dyn Slot>>,
    last_snapshot: Instant,
    /// How long the last snapshot took to write; `None` until this follower wrote one.
    snapshot_cost: Option<Duration>,
    dirty: bool,
    /// Keyed output of events already folded whose write failed (a full disk, say): written
    /// before anything new is folded, so no event's keys are skipped.
    unwritten: Vec<AsideOp>,
}

impl Follower {
    pub fn new(store: Arc<EventStore>, projections: &Projections) -> Self {
        Self {
            store,
            slots: projections.slots(),
            last_snapshot: Instant::now(),
            snapshot_cost: None,
            dirty: false,
            unwritten: Vec::new(),
        }
    }

    /// Folds up to one chunk of events past the slowest projection. Returns how many
    /// events it read (0: caught up).
    pub fn step(&mut self) -> Result<usize, FollowError> {
        if !self.unwritten.is_empty() {
            self.store.write_aside(Cf::Projections, &self.unwritten)?;
            self.unwritten.clear();
        }
        let mut ops = Vec::new();
        for s in &self.slots {
            s.finish_rebuild(&self.store, &mut ops)?;
        }
        let from = self.slots.iter().map(|s| s.applied()).min().unwrap_or(0) + 1;
        let mut chunk = Vec::with_capacity(CHUNK);
        if from <= self.store.last_seq().0 {
            self.store.visit(Seq(from), Seq(from + CHUNK as u64 - 1), |env| {
                chunk.push(Decoded::from_ref(&env)?);
                Ok::<_, FollowError>(())
            })?;
            for s in &self.slots {
                s.apply_chunk(&chunk, &mut ops);
            }
            self.dirty = true;
        }
        if !ops.is_empty()
            && let Err(e) = self.store.write_aside(Cf::Projections, &ops)
        {
            self.unwritten = ops;
            return Err(e.into());
        }
        // Not on every catch-up: under steady load the follower catches up many times a
        // second, and each snapshot re-encodes whole states (profiled under 27k recorded
        // lookups/s: a third of the server's CPU went to the compliance snapshot). Written
        // as often, each one's flush made write stalls (p99 over 100 ms).
        // The first catch-up after start is checkpointed at once, so a process that dies soon
        // after does not re-fold what it had folded.
        let due = match self.snapshot_cost {
            None if chunk.is_empty() => Duration::ZERO,
            None => SNAPSHOT_EVERY,
            Some(cost) => SNAPSHOT_EVERY.max(cost * SNAPSHOT_COST_FACTOR),
        };
        if self.dirty && self.last_snapshot.elapsed() >= due {
            self.persist()?;
        }
        Ok(chunk.len())
    }

    /// Writes every projection's snapshot with its checkpoint, in one batch.
    pub fn persist(&mut self) -> Result<(), FollowError> {
        let started = Instant::now();
        self.store.write_aside_flushed(Cf::Projections, self.slots.iter().map(|s| s.snapshot()))?;
        self.last_snapshot = Instant::now();
        self.snapshot_cost = Some(started.elapsed());
        self.dirty = false;
        Ok(())
    }

    /// Steps until every projection has folded the whole log as it is now, then writes
    /// their snapshots.
    pub fn catch_up(&mut self) -> Result<(), FollowError> {
        while self.step()? > 0 {}
        if self.dirty {
            self.persist()?;
        }
        Ok(())
    }

    /// Follows the log on a thread of its own until `stop` is set, then writes a last
    /// snapshot. A failed write (a full disk) is retried every second, the folded state
    /// kept in memory meanwhile; any other error (a log that no longer decodes) ends it, and
    /// `/readyz` shows the lag.
    pub fn spawn(mut self, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Result<(), FollowError>> {
        std::thread::Builder::new()
            .name("kyso-projections".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    match self.step() {
                        Ok(0) => std::thread::sleep(IDLE),
                        Ok(_) => {}
                        Err(FollowError::Store(e)) if e.retryable() => {
                            tracing::warn!(error = %e, "projections could not write; retrying in a second");
                            std::thread::sleep(RETRY);
                        }
                        Err(e) => return Err(e),
                    }
                }
                self.persist()
            })
            .expect("spawning a thread")
    }
}

/// A stored snapshot's checkpoint and state bytes, as written (for tests and auditors).
pub fn stored<P: Fold>(store: &EventStore) -> Result<Option<(Seq, Vec<u8>)>, StoreError> {
    Ok(store
        .get(Cf::Projections, &snapshot_key(P::NAME))?
        .and_then(|b| postcard::from_bytes::<Snapshot>(&b).ok())
        .map(|s| (Seq(s.checkpoint), s.data)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use commands::domain::{CaId, Event};
    use event_store::{ExpectedVersion, Metadata, RegistryTime, StreamAppend};

    /// Counts events and indexes each one under its seq.
    #[derive(Debug, Default, Serialize, Deserialize)]
    struct Tally(u64);

    impl Fold for Tally {
        const NAME: &'static str = "tally";
        const VERSION: u32 = 2;
        fn apply(&mut self, ctx: &crate::Ctx<'_>, _: &Event, keys: &mut KeyOut) {
            self.0 += 1;
            keys.put(&[&ctx.seq.0.to_be_bytes()]);
        }
    }

    fn store_with(events: u64) -> (tempfile::TempDir, Arc<EventStore>) {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut writer) = EventStore::open(dir.path(), true).unwrap();
        let mut batch = writer.begin(RegistryTime(0));
        let appends = (0..events)
            .map(|i| {
                let e = Event::CaReinstated { ca: CaId::parse(&format!("CA-{i}")).unwrap() };
                let (stream, data) = commands::codec::encode(&e);
                StreamAppend { stream, expected: ExpectedVersion::Any, events: vec![data] }
            })
            .collect();
        writer.stage(&mut batch, &Metadata::default(), appends).unwrap();
        writer.commit(batch).unwrap();
        (dir, store)
    }

    fn keys(store: &EventStore, generation: u32) -> usize {
        store.scan_prefix(Cf::Projections, &key_prefix("tally", generation)).count()
    }

    #[test]
    fn chunks_come_in_seq_order_and_a_corrupt_event_stops_the_fold_at_its_seq() {
        let events = 3 * CHUNK as u64 + 5;
        let (_dir, store) = store_with(events);
        let mut seen = Vec::new();
        for_each_chunk(&store, Seq(2), Seq(events - 1), |chunk| {
            seen.extend(chunk.iter().map(|d| d.seq.0));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (2..events).collect::<Vec<_>>());

        let bad = CHUNK as u64 + 7;
        store.tamper_event(Seq(bad), Some(&[0xff, 0xff])).unwrap();
        let mut folded = 0;
        let err = for_each_chunk(&store, Seq(1), Seq(events), |chunk| {
            folded += chunk.len() as u64;
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(err, FollowError::Store(StoreError::Corrupt { seq, .. }) if seq == Seq(bad)), "{err}");
        assert_eq!(folded, CHUNK as u64, "the chunk before the corrupt event, and nothing after it");
    }

    #[test]
    fn a_snapshot_of_another_version_is_dropped_with_its_keys_and_rebuilt_under_a_new_generation() {
        let (_dir, store) = store_with(10);
        // What version 1 left: a snapshot at seq 10 and its keys under generation 3.
        let old = Snapshot { version: 1, generation: 3, checkpoint: 10, data: vec![0xAA] };
        let mut ops = vec![AsideOp::Put(snapshot_key("tally"), postcard::to_stdvec(&old).unwrap())];
        ops.extend(
            (1..=10u64).map(|s| AsideOp::Put([key_prefix("tally", 3), s.to_be_bytes().to_vec()].concat(), vec![])),
        );
        // And a stray key of an interrupted rebuild under generation 4.
        ops.push(AsideOp::Put([key_prefix("tally", 4), vec![9]].concat(), vec![]));
        store.write_aside(Cf::Projections, ops).unwrap();

        let live = Arc::new(Live::<Tally>::load(&store).unwrap());
        assert_eq!((live.applied(), live.generation()), (Seq(0), 4));
        assert_eq!((keys(&store, 3), keys(&store, 4)), (0, 0));
        let mut follower = Follower {
            store: Arc::clone(&store),
            slots: vec![live.clone()],
            last_snapshot: Instant::now(),
            snapshot_cost: None,
            dirty: false,
            unwritten: Vec::new(),
        };
        follower.catch_up().unwrap();
        assert_eq!((live.read(|t| t.0), keys(&store, 4)), (10, 10));
        let (checkpoint, data) = stored::<Tally>(&store).unwrap().unwrap();
        assert_eq!((checkpoint, postcard::from_bytes::<Tally>(&data).unwrap().0), (Seq(10), 10));
    }

    #[test]
    fn a_second_rebuild_while_one_runs_is_refused_and_a_finished_one_swaps_generations() {
        let (_dir, store) = store_with(5);
        let live = Arc::new(Live::<Tally>::load(&store).unwrap());
        let mut follower = Follower {
            store: Arc::clone(&store),
            slots: vec![live.clone()],
            last_snapshot: Instant::now(),
            snapshot_cost: None,
            dirty: false,
            unwritten: Vec::new(),
        };
        follower.catch_up().unwrap();
        *lock(&live.rebuild) = Some(RebuildProgress { done: 0, total: 5 });
        assert!(matches!(live.rebuild(&store, &|_, _| {}), Err(FollowError::RebuildRunning("tally"))));
        *lock(&live.rebuild) = None;
        live.rebuild(&store, &|_, _| {}).unwrap();
        assert_eq!(live.generation(), 0, "not swapped until the follower folds what it missed");
        follower.catch_up().unwrap();
        assert_eq!((live.generation(), keys(&store, 0), keys(&store, 1)), (1, 0, 5));
        assert!(live.rebuild_progress().is_none());
    }
}
