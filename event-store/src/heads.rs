//! Stream heads ([`Cf::Streams`]) as an index kept behind the log, written in bulk, instead
//! of one key per new stream in every batch.
//!
//! A head is derived data: every envelope carries its stream, version and seq. Written with
//! each batch, a new stream's head landed at a random place in the memtable; a skiplist
//! there cost the log-write thread too much (session 12) and a hash memtable moved the cost
//! to RocksDB's flush thread, which sorted it key by key into a skiplist: 34 % of all CPU
//! samples of the append benchmark at batch 1000 (session 20). Here the heads of the log's
//! tail stay in memory and are written out, sorted, as a table file that RocksDB ingests:
//! no write-ahead log, no memtable, no flush.
//!
//! The invariant: the column family holds every stream's head as of `indexed_through` (the
//! `heads` record in [`Cf::Meta`]); the overlay holds the head of every stream with a
//! durable event after it (`recent`), and what a write-out is storing (`writing`). At open
//! the tail after `indexed_through` is read back from the log, so a crash loses nothing: at
//! worst a write-out was ingested and its record not updated, and the tail gives the same
//! heads again.

use crate::cf::{self, Cf, META_HEADS};
use crate::envelope::{EnvelopeRef, Seq, StreamId};
use crate::error::StoreError;
use crate::store::{EventStore, StreamHead, db_options};
use rocksdb::{IngestExternalFileOptions, SstFileWriter};
use std::collections::HashMap as StdHashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;
type HeadMap = HashMap<StreamId, StreamHead>;

/// Events between write-outs by default. The tail read back at open is at most about twice
/// this (one write-out in flight, the next one due), ~0.1–0.2 s of reading here.
pub const INDEX_EVERY: u64 = 1 << 18;

/// The first format whose stream heads column family lags the log; before it every batch
/// wrote its heads, so an older store's column family is complete.
pub(crate) const FIRST_LAGGING_FORMAT: u32 = 4;

/// Table files being written out are named so in the store's directory.
const WRITE_OUT_PREFIX: &str = "kyso-heads-";

/// The heads the column family does not hold yet. `None` until loaded: a writer loads it at
/// open, a read-only store when a head is first asked for.
#[derive(Default)]
pub(crate) struct Heads(RwLock<Option<Overlay>>);

struct Overlay {
    indexed_through: u64,
    recent: HeadMap,
    writing: Option<Arc<HeadMap>>,
}

impl Overlay {
    fn get(&self, stream: &str) -> Option<StreamHead> {
        self.recent.get(stream).or_else(|| self.writing.as_ref()?.get(stream)).copied()
    }
}

impl Heads {
    fn read(&self) -> RwLockReadGuard<'_, Option<Overlay>> {
        self.0.read().expect("heads lock is never poisoned: no code panics while holding it")
    }

    fn write(&self) -> RwLockWriteGuard<'_, Option<Overlay>> {
        self.0.write().expect("heads lock is never poisoned: no code panics while holding it")
    }

    /// The head of `stream` if the column family is behind on it.
    pub(crate) fn get(&self, store: &EventStore, stream: &str) -> Result<Option<StreamHead>, StoreError> {
        if let Some(overlay) = &*self.read() {
            return Ok(overlay.get(stream));
        }
        let mut slot = self.write();
        if slot.is_none() {
            *slot = Some(load(store)?);
        }
        Ok(slot.as_ref().and_then(|o| o.get(stream)))
    }

    /// Loads the overlay (a writer's open); answers the streams of the tail it read.
    pub(crate) fn load_now(&self, store: &EventStore) -> Result<Vec<StreamId>, StoreError> {
        let overlay = load(store)?;
        let streams = overlay.recent.keys().cloned().collect();
        *self.write() = Some(overlay);
        Ok(streams)
    }

    /// Heads made durable by a batch.
    pub(crate) fn extend(&self, heads: HeadMap) {
        if let Some(overlay) = &mut *self.write() {
            overlay.recent.extend(heads);
        }
    }

    /// Events after the column family's point: how far behind it is at `durable`.
    fn behind(&self, durable: u64) -> u64 {
        self.read().as_ref().map_or(0, |o| durable.saturating_sub(o.indexed_through))
    }

    /// Moves `recent` (every head up to `durable`) aside to be written out.
    fn freeze(&self) -> Option<Arc<HeadMap>> {
        let mut slot = self.write();
        let overlay = slot.as_mut()?;
        let frozen = Arc::new(std::mem::take(&mut overlay.recent));
        overlay.writing = Some(Arc::clone(&frozen));
        Some(frozen)
    }

    /// The write-out is in the column family, which now holds every head up to `through`.
    fn written(&self, through: u64) {
        if let Some(overlay) = &mut *self.write() {
            overlay.writing = None;
            overlay.indexed_through = through;
        }
    }

    /// The write-out failed: its heads go back to `recent` (whose own are newer).
    fn not_written(&self) {
        if let Some(overlay) = &mut *self.write()
            && let Some(frozen) = overlay.writing.take()
        {
            for (stream, head) in frozen.iter() {
                overlay.recent.entry(stream.clone()).or_insert(*head);
            }
        }
    }
}

/// The column family's point and the heads of the log after it.
fn load(store: &EventStore) -> Result<Overlay, StoreError> {
    let indexed_through = indexed_through(store)?;
    let mut recent = HeadMap::default();
    store.visit(Seq(indexed_through + 1), store.last_seq(), |env: EnvelopeRef<'_>| {
        let head = StreamHead { version: env.stream_version, last_seq: env.seq };
        // Most tail events continue a stream already seen: no id allocated for those.
        if let Some(h) = recent.get_mut(env.stream) {
            *h = head;
        } else {
            recent.insert(StreamId::new(env.stream), head);
        }
        Ok::<(), StoreError>(())
    })?;
    Ok(Overlay { indexed_through, recent, writing: None })
}

/// The seq up to which the column family holds every head.
pub(crate) fn indexed_through(store: &EventStore) -> Result<u64, StoreError> {
    let last = store.last_seq().0;
    let through = match store.get(Cf::Meta, META_HEADS)? {
        Some(bytes) => u64::from_be_bytes(
            bytes.try_into().map_err(|_| StoreError::CorruptMeta("the stream heads record is not 8 bytes".into()))?,
        ),
        None if store.format() < FIRST_LAGGING_FORMAT => last,
        None => return Err(StoreError::CorruptMeta("no stream heads record".into())),
    };
    if through > last {
        return Err(StoreError::CorruptMeta(format!(
            "stream heads are recorded up to seq {through}, past the log's end {last}"
        )));
    }
    Ok(through)
}

/// Writes `heads` (every head up to `through`) into the column family as one sorted table
/// file, then records `through`. Runs on its own thread.
fn write_out(store: &EventStore, heads: &HeadMap, through: u64) -> Result<(), StoreError> {
    if !heads.is_empty() {
        let mut rows: Vec<(Vec<u8>, [u8; 16])> =
            heads.iter().map(|(stream, head)| (cf::stream_prefix(stream.as_str()), head.encode())).collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let path = store.path().join(format!("{WRITE_OUT_PREFIX}{through}.sst"));
        let opts = db_options(Some(Cf::Streams));
        let mut file = SstFileWriter::create(&opts);
        file.open(&path)?;
        for (key, value) in &rows {
            file.put(key, value)?;
        }
        file.finish()?;
        let mut ingest = IngestExternalFileOptions::default();
        // A hard link into the store instead of a copy.
        ingest.set_move_files(true);
        store.ingest(Cf::Streams, &ingest, &path)?;
        // Gone already if RocksDB moved it; only a leftover name otherwise.
        let _ = std::fs::remove_file(&path);
    }
    store.put_meta(META_HEADS, &through.to_be_bytes())
}

/// Removes table files a crash left half-written or not yet ingested.
pub(crate) fn remove_leftovers(store: &EventStore) {
    let Ok(entries) = std::fs::read_dir(store.path()) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(WRITE_OUT_PREFIX) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The writer's side: starts a write-out once the column family is `every` events behind,
/// one at a time, and takes its outcome.
pub(crate) struct Indexer {
    every: u64,
    job: Option<(u64, JoinHandle<Result<(), StoreError>>)>,
    /// After a failed write-out (a full disk), the next waits for the log to reach this.
    not_before: u64,
}

impl Indexer {
    pub(crate) fn new() -> Self {
        Indexer { every: INDEX_EVERY, job: None, not_before: 0 }
    }

    pub(crate) fn set_every(&mut self, events: u64) {
        self.every = events.max(1);
    }

    /// Called once every batch up to `durable` is in the overlay.
    pub(crate) fn durable(&mut self, store: &Arc<EventStore>, durable: u64) {
        if self.job.as_ref().is_some_and(|(_, thread)| thread.is_finished()) {
            self.finish(store);
        }
        if self.job.is_some() || durable < self.not_before || store.heads.behind(durable) < self.every {
            return;
        }
        let Some(frozen) = store.heads.freeze() else { return };
        let writer = Arc::clone(store);
        let thread = std::thread::Builder::new()
            .name("kyso-stream-heads".into())
            .spawn(move || write_out(&writer, &frozen, durable));
        match thread {
            Ok(thread) => self.job = Some((durable, thread)),
            Err(e) => {
                tracing::warn!(error = %e, "no thread to write stream heads out; they stay in memory");
                store.heads.not_written();
                self.not_before = durable + self.every;
            }
        }
    }

    /// Waits for the write-out under way, if any, and takes its outcome.
    pub(crate) fn finish(&mut self, store: &EventStore) {
        let Some((through, thread)) = self.job.take() else { return };
        let outcome = thread.join().unwrap_or_else(|_| Err(StoreError::Io("the stream heads thread panicked".into())));
        match outcome {
            Ok(()) => store.heads.written(through),
            Err(e) => {
                tracing::warn!(error = %e, through, "writing stream heads out failed; they stay in memory and are retried");
                store.heads.not_written();
                self.not_before = through + self.every / 4;
            }
        }
    }
}
