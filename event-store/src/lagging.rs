//! Indexes kept behind the log: stream heads ([`Cf::Streams`]) and subjects' salts
//! ([`Cf::Salts`]), written in bulk instead of one key per new stream or subject in every
//! batch.
//!
//! Both are keyed by an id at a random place (a new citizen's stream id, their CCCD).
//! Written with each batch, such a key went into a hash memtable (a skiplist there cost the
//! log-write thread too much, session 12) and RocksDB's flush thread then sorted it into a
//! skiplist key by key: 34 % of all CPU samples of the append benchmark at batch 1000, most
//! of the flush thread's 5.6–6.4 µs per RecordIssuance (session 20–21). Both can be read
//! back from the log: a head is in every envelope (stream, version, seq), a salt is in the
//! salt index (`first seq → salt`, written with its batch, in seq order) with its subject
//! in the event at that seq. So the entries of the log's tail stay in memory (shared with
//! readers), and every so many events a thread writes them out as one sorted table file
//! that RocksDB ingests: no write-ahead log, no memtable, no flush sort.
//!
//! The invariant: the column family holds every entry as of `indexed_through` (a record in
//! [`Cf::Meta`]); the overlay holds every entry made by a durable event after it
//! (`recent`), and what a write-out is storing (`writing`). At open the tail after
//! `indexed_through` is read back from the log, so a crash loses nothing: at worst a
//! write-out was ingested and its record not updated, and the tail gives the same entries
//! again.

use crate::cf::{self, Cf, META_HEADS, META_SALTS};
use crate::envelope::{EnvelopeRef, Salt, Seq};
use crate::error::StoreError;
use crate::store::{EventStore, StreamHead, db_options, encode_salt};
use rocksdb::{IngestExternalFileOptions, SstFileWriter};
use std::collections::HashMap as StdHashMap;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

/// Entries by id (stream id, subject).
pub(crate) type Map<V> = StdHashMap<String, V, foldhash::fast::RandomState>;

/// Events between write-outs by default. The tail read back at open is at most about twice
/// this (one write-out in flight, the next one due), ~0.1–0.2 s of reading here.
pub(crate) const INDEX_EVERY: u64 = 1 << 18;

/// Table files being written out are named so in the store's directory.
const WRITE_OUT_PREFIX: &str = "kyso-index-";

/// One index kept behind the log.
pub(crate) trait Index: Sized + 'static {
    type Value: Copy + Send + Sync + 'static;
    const CF: Cf;
    /// The `meta` record of the seq up to which the column family is complete.
    const RECORD: &'static [u8];
    /// Before this format every batch wrote its entries: the column family is complete.
    const FIRST_LAGGING_FORMAT: u32;
    const NAME: &'static str;
    fn of(store: &EventStore) -> &Lagging<Self>;
    /// Adds the entries made by the events after `after` (at least one such event exists).
    fn tail(store: &EventStore, after: u64, into: &mut Map<Self::Value>) -> Result<(), StoreError>;
    /// The stored key and value.
    fn row(id: &str, value: &Self::Value) -> (Vec<u8>, Vec<u8>);
    /// Whether a stored key starts with the id's length, so that keys sort by length first.
    const LENGTH_FIRST: bool;
}

/// `stream id → its head`.
pub(crate) struct Heads;

impl Index for Heads {
    type Value = StreamHead;
    const CF: Cf = Cf::Streams;
    const RECORD: &'static [u8] = META_HEADS;
    const FIRST_LAGGING_FORMAT: u32 = 4;
    const NAME: &'static str = "stream heads";

    fn of(store: &EventStore) -> &Lagging<Self> {
        &store.heads
    }

    fn tail(store: &EventStore, after: u64, into: &mut Map<StreamHead>) -> Result<(), StoreError> {
        store.visit(Seq(after + 1), store.last_seq(), |env: EnvelopeRef<'_>| {
            let head = StreamHead { version: env.stream_version, last_seq: env.seq };
            // Most tail events continue a stream already seen: no id allocated for those.
            if let Some(h) = into.get_mut(env.stream) {
                *h = head;
            } else {
                into.insert(env.stream.to_owned(), head);
            }
            Ok::<(), StoreError>(())
        })
    }

    fn row(id: &str, head: &StreamHead) -> (Vec<u8>, Vec<u8>) {
        (cf::stream_prefix(id), head.encode().to_vec())
    }

    /// A head's key is the id's length (big-endian) before the id.
    const LENGTH_FIRST: bool = true;
}

/// `subject → its salt and the seq of the event that created it`.
pub(crate) struct Salts;

impl Index for Salts {
    type Value = (Salt, Seq);
    const CF: Cf = Cf::Salts;
    const RECORD: &'static [u8] = META_SALTS;
    const FIRST_LAGGING_FORMAT: u32 = 5;
    const NAME: &'static str = "salts";

    fn of(store: &EventStore) -> &Lagging<Self> {
        &store.salts
    }

    fn tail(store: &EventStore, after: u64, into: &mut Map<(Salt, Seq)>) -> Result<(), StoreError> {
        for entry in store.salts_from(Seq(after + 1)) {
            let (seq, salt) = entry?;
            let subject = store.event(seq)?.subject.ok_or_else(|| StoreError::Corrupt {
                seq,
                reason: "the salt index has a salt for it but it has no subject".into(),
            })?;
            into.insert(subject, (salt, seq));
        }
        Ok(())
    }

    fn row(subject: &str, (salt, seq): &(Salt, Seq)) -> (Vec<u8>, Vec<u8>) {
        (subject.as_bytes().to_vec(), encode_salt(salt, *seq).to_vec())
    }

    const LENGTH_FIRST: bool = false;
}

/// The entries the column family does not hold yet. `None` until loaded: a writer loads it
/// at open, a read-only store when an entry is first asked for.
pub(crate) struct Lagging<I: Index>(RwLock<Option<Overlay<I::Value>>>, PhantomData<I>);

impl<I: Index> Default for Lagging<I> {
    fn default() -> Self {
        Lagging(RwLock::new(None), PhantomData)
    }
}

struct Overlay<V> {
    indexed_through: u64,
    recent: Map<V>,
    writing: Option<Arc<Map<V>>>,
    /// The last write-out's map, emptied, for the next period's entries: a fresh table of
    /// that size is pages the kernel zeroes one by one as the sequencer's thread first
    /// writes them (page faults were 2.4 % of that thread's samples under 1024
    /// RecordIssuance submitters, session 26).
    spare: Option<Map<V>>,
}

impl<I: Index> Lagging<I> {
    fn read(&self) -> RwLockReadGuard<'_, Option<Overlay<I::Value>>> {
        self.0.read().expect("index lock is never poisoned: no code panics while holding it")
    }

    fn write(&self) -> RwLockWriteGuard<'_, Option<Overlay<I::Value>>> {
        self.0.write().expect("index lock is never poisoned: no code panics while holding it")
    }

    /// The entry for `id` if the column family is behind on it.
    pub(crate) fn get(&self, store: &EventStore, id: &str) -> Result<Option<I::Value>, StoreError> {
        let found = |o: &Overlay<I::Value>| o.recent.get(id).or_else(|| o.writing.as_ref()?.get(id)).copied();
        if let Some(overlay) = &*self.read() {
            return Ok(found(overlay));
        }
        let mut slot = self.write();
        if slot.is_none() {
            *slot = Some(load::<I>(store, 0)?);
        }
        Ok(slot.as_ref().and_then(found))
    }

    /// Loads the overlay (a writer's open), showing `each` the ids of the tail it read.
    pub(crate) fn load_now(&self, store: &EventStore, each: impl FnMut(&str)) -> Result<(), StoreError> {
        let overlay = load::<I>(store, PERIOD_ENTRIES)?;
        overlay.recent.keys().map(String::as_str).for_each(each);
        *self.write() = Some(overlay);
        Ok(())
    }

    /// Entries made durable by a batch.
    pub(crate) fn extend(&self, entries: impl IntoIterator<Item = (String, I::Value)>) {
        if let Some(overlay) = &mut *self.write() {
            overlay.recent.extend(entries);
        }
    }

    /// Drops `id` from memory (an erasure, which deletes it from the column family and the
    /// log's side index itself). Refused while a write-out is under way: it may hold `id`
    /// and store it after the erasure.
    pub(crate) fn forget(&self, id: &str) -> Result<(), StoreError> {
        if let Some(overlay) = &mut *self.write() {
            if overlay.writing.is_some() {
                return Err(StoreError::Io(format!(
                    "{} are being written out by a running writer: erase on a stopped server",
                    I::NAME
                )));
            }
            overlay.recent.remove(id);
        }
        Ok(())
    }

    /// Events after the column family's point: how far behind it is at `durable`.
    fn behind(&self, durable: u64) -> u64 {
        self.read().as_ref().map_or(0, |o| durable.saturating_sub(o.indexed_through))
    }

    /// Moves `recent` (every entry up to the last durable seq) aside to be written out.
    fn freeze(&self) -> Option<Arc<Map<I::Value>>> {
        let mut slot = self.write();
        let overlay = slot.as_mut()?;
        // Sized for the next period's entries: growing a map rehashes all of it, and this
        // one grows on the sequencer's thread (a 200k-entry rehash is milliseconds there).
        let wanted = overlay.recent.len();
        let next = match overlay.spare.take() {
            Some(spare) if spare.capacity() >= wanted => spare,
            _ => Map::with_capacity_and_hasher(wanted, Default::default()),
        };
        let frozen = Arc::new(std::mem::replace(&mut overlay.recent, next));
        overlay.writing = Some(Arc::clone(&frozen));
        Some(frozen)
    }

    /// The write-out is in the column family, which now holds every entry up to `through`.
    fn written(&self, through: u64) {
        if let Some(overlay) = &mut *self.write() {
            overlay.writing = None;
            overlay.indexed_through = through;
        }
    }

    /// An emptied map, kept for the next period (see `spare`).
    fn recycle(&self, map: Map<I::Value>) {
        if let Some(overlay) = &mut *self.write() {
            overlay.spare = Some(map);
        }
    }

    /// The write-out failed: its entries go back to `recent` (whose own are newer).
    fn not_written(&self) {
        if let Some(overlay) = &mut *self.write()
            && let Some(frozen) = overlay.writing.take()
        {
            for (id, value) in frozen.iter() {
                overlay.recent.entry(id.clone()).or_insert(*value);
            }
        }
    }
}

/// Entries a writer's overlay makes room for at open: a period's, the first one (staggered)
/// half a period longer. Without it the first period's map grew on the sequencer's thread,
/// rehashing up to ~390k entries at a time into fresh pages (4.4 % of that thread's samples
/// under 1024 RecordIssuance submitters for 1M commands, session 27). Memory the kernel
/// gives only as entries arrive, but for the control bytes (one per slot).
const PERIOD_ENTRIES: usize = (INDEX_EVERY + INDEX_EVERY / 2) as usize;

/// The column family's point and the entries of the log after it, in a map with room for
/// `reserve` entries.
fn load<I: Index>(store: &EventStore, reserve: usize) -> Result<Overlay<I::Value>, StoreError> {
    let indexed_through = indexed_through::<I>(store)?;
    let mut recent = Map::with_capacity_and_hasher(reserve, Default::default());
    if indexed_through < store.last_seq().0 {
        I::tail(store, indexed_through, &mut recent)?;
    }
    Ok(Overlay { indexed_through, recent, writing: None, spare: None })
}

/// The seq up to which the column family holds every entry.
pub(crate) fn indexed_through<I: Index>(store: &EventStore) -> Result<u64, StoreError> {
    let last = store.last_seq().0;
    let through = match store.get(Cf::Meta, I::RECORD)? {
        Some(bytes) => u64::from_be_bytes(
            bytes.try_into().map_err(|_| StoreError::CorruptMeta(format!("the {} record is not 8 bytes", I::NAME)))?,
        ),
        None if store.format() < I::FIRST_LAGGING_FORMAT => last,
        None => return Err(StoreError::CorruptMeta(format!("no {} record", I::NAME))),
    };
    if through > last {
        return Err(StoreError::CorruptMeta(format!(
            "{} are recorded up to seq {through}, past the log's end {last}",
            I::NAME
        )));
    }
    Ok(through)
}

/// Writes `entries` (every entry up to `through`) into the column family as one sorted
/// table file, then records `through`. Runs on its own thread.
fn write_out<I: Index>(store: &EventStore, entries: &Map<I::Value>, through: u64) -> Result<(), StoreError> {
    let mut phases = Phases::default();
    if !entries.is_empty() {
        let path = store.path().join(format!("{WRITE_OUT_PREFIX}{}-{through}.sst", I::CF.name()));
        let ingested = write_and_ingest::<I>(store, entries, &path, &mut phases);
        // Gone already if RocksDB moved it in; otherwise a half-written file that must not
        // take the space of a disk that is full (the retry writes another).
        let _ = std::fs::remove_file(&path);
        ingested?;
    }
    store.put_meta(I::RECORD, &through.to_be_bytes())?;
    let Phases { sort_ms, file_ms, ingest_ms } = phases;
    tracing::info!(
        index = I::NAME,
        entries = entries.len(),
        through,
        sort_ms,
        file_ms,
        ingest_ms,
        "index written out behind the log"
    );
    Ok(())
}

/// Where a write-out's time went, for the log line an operator reads.
#[derive(Default)]
struct Phases {
    sort_ms: u64,
    file_ms: u64,
    ingest_ms: u64,
}

fn write_and_ingest<I: Index>(
    store: &EventStore,
    entries: &Map<I::Value>,
    path: &Path,
    phases: &mut Phases,
) -> Result<(), StoreError> {
    let mut clock = std::time::Instant::now();
    let mut lap = || {
        let ms = clock.elapsed().as_millis() as u64;
        clock = std::time::Instant::now();
        ms
    };
    let sorted = in_key_order::<I, _>(entries);
    phases.sort_ms = lap();
    let mut opts = db_options(Some(I::CF));
    // Salts are random bytes, and compaction compresses what it keeps anyway: here
    // compression would only spend the cores the command path needs.
    opts.set_compression_type(rocksdb::DBCompressionType::None);
    let mut file = SstFileWriter::create(&opts);
    file.open(path)?;
    for (_, id, value) in sorted {
        let (key, value) = I::row(id, value);
        file.put(key, value)?;
    }
    file.finish()?;
    phases.file_ms = lap();
    let mut ingest = IngestExternalFileOptions::default();
    // A hard link into the store instead of a copy.
    ingest.set_move_files(true);
    store.ingest(I::CF, &ingest, path)?;
    phases.ingest_ms = lap();
    Ok(())
}

/// The entries in the order of their stored keys. Sorted as references, each row encoded as
/// it is written: no copy of the map's hundreds of thousands of entries. Each carries a
/// packed prefix of its key to compare as an integer: compared as strings, each comparison
/// followed two pointers to two heap strings, and the sort was half of a write-out's time
/// (65–134 ms for 262k heads under HTTP load, session 21).
fn in_key_order<I: Index, V>(entries: &Map<V>) -> Vec<(u128, &String, &V)> {
    // Bytes every id starts with decide no comparison (`citizen-…`): the packed prefix
    // starts after them.
    let mut ids = entries.keys().map(String::as_bytes);
    let common = match ids.next() {
        Some(first) => ids.fold(first.len(), |n, id| first[..n].iter().zip(id).take_while(|(a, b)| a == b).count()),
        None => 0,
    };
    let mut rows: Vec<_> = entries.iter().map(|(id, value)| (packed::<I>(id, common), id, value)).collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| key_order::<I>(a.1, b.1)));
    rows
}

/// The order of the stored keys, from the ids.
fn key_order<I: Index>(a: &str, b: &str) -> std::cmp::Ordering {
    let length = if I::LENGTH_FIRST { a.len().cmp(&b.len()) } else { std::cmp::Ordering::Equal };
    length.then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// A prefix of `id`'s place in the key order, given that every id starts with the same
/// `common` bytes: the length (when keys start with it) and the next bytes, zero-padded.
/// Packed keys that differ order their ids as [`key_order`] does; equal ones say nothing.
fn packed<I: Index>(id: &str, common: usize) -> u128 {
    let (length, width) = if I::LENGTH_FIRST {
        (u16::try_from(id.len()).expect("stream ids are bounded by MAX_STREAM_ID_BYTES"), 14)
    } else {
        (0, 16)
    };
    let mut bytes = [0u8; 16];
    let rest = &id.as_bytes()[common..];
    let n = rest.len().min(width);
    bytes[..n].copy_from_slice(&rest[..n]);
    (u128::from(length) << 112) | (u128::from_be_bytes(bytes) >> (8 * (16 - width)))
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
pub(crate) struct Indexer<I: Index> {
    every: u64,
    job: Option<(u64, JoinHandle<Result<(), StoreError>>)>,
    /// After a failed write-out (a full disk), the next waits for the log to reach this.
    not_before: u64,
    /// The first write-out waits half a period more: one writer's two indexes then take
    /// turns instead of sorting and ingesting at once on the two cores.
    staggered: bool,
    index: PhantomData<I>,
}

impl<I: Index> Indexer<I> {
    pub(crate) fn new() -> Self {
        Indexer { every: INDEX_EVERY, job: None, not_before: 0, staggered: false, index: PhantomData }
    }

    /// One whose first write-out comes half a period late (see `staggered`).
    pub(crate) fn staggered() -> Self {
        Indexer { staggered: true, ..Self::new() }
    }

    pub(crate) fn set_every(&mut self, events: u64) {
        self.every = events.max(1);
    }

    /// Called once every batch up to `durable` is in the overlay.
    pub(crate) fn durable(&mut self, store: &Arc<EventStore>, durable: u64) {
        if self.job.as_ref().is_some_and(|(_, thread)| thread.is_finished()) {
            self.finish(store);
        }
        let lagging = I::of(store);
        let due = self.every + if self.staggered { self.every / 2 } else { 0 };
        if self.job.is_some() || durable < self.not_before || lagging.behind(durable) < due {
            return;
        }
        self.staggered = false;
        let Some(frozen) = lagging.freeze() else { return };
        let writer = Arc::clone(store);
        let thread = std::thread::Builder::new().name(format!("kyso-index-{}", I::CF.name())).spawn(move || {
            let outcome = write_out::<I>(&writer, &frozen, durable);
            // Settled here, so that this thread holds the frozen map's last reference and
            // frees its hundreds of thousands of ids, not the sequencer's thread.
            match &outcome {
                Ok(()) => {
                    I::of(&writer).written(durable);
                    // Readers use the map only under the overlay's lock, which no longer has it.
                    if let Ok(mut map) = Arc::try_unwrap(frozen) {
                        map.clear();
                        I::of(&writer).recycle(map);
                    }
                }
                Err(_) => I::of(&writer).not_written(),
            }
            outcome
        });
        match thread {
            Ok(thread) => self.job = Some((durable, thread)),
            Err(e) => {
                tracing::warn!(error = %e, index = I::NAME, "no thread to write an index out; it stays in memory");
                lagging.not_written();
                self.not_before = durable + self.every;
            }
        }
    }

    /// Waits for the write-out under way, if any, and takes its outcome (the thread has
    /// settled the overlay itself).
    pub(crate) fn finish(&mut self, store: &EventStore) {
        let Some((through, thread)) = self.job.take() else { return };
        let outcome = thread.join().unwrap_or_else(|_| {
            // Its entries are still in `writing`, where reads find them.
            I::of(store).not_written();
            Err(StoreError::Io(format!("the {} thread panicked", I::NAME)))
        });
        if let Err(e) = outcome {
            tracing::warn!(error = %e, through, index = I::NAME, "writing an index out failed; it stays in memory and is retried");
            self.not_before = through + self.every / 4;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The ids as a write-out stores them, checked against the plain order and the keys'.
    fn sorted<I: Index<Value: Default>>(ids: &[String]) -> Vec<String> {
        let map: Map<()> = ids.iter().map(|id| (id.clone(), ())).collect();
        let by_packed: Vec<String> = in_key_order::<I, ()>(&map).into_iter().map(|(_, id, _)| id.clone()).collect();
        let mut expected: Vec<String> = map.into_keys().collect();
        expected.sort_unstable_by(|a, b| key_order::<I>(a, b));
        assert_eq!(by_packed, expected);
        let keys: Vec<Vec<u8>> = by_packed.iter().map(|id| I::row(id, &Default::default()).0).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        by_packed
    }

    #[test]
    fn ids_longer_than_the_packed_prefix_and_zero_bytes_sort_as_their_keys() {
        let ids = [
            "citizen-0001",
            "citizen-0001\0",
            "citizen-000",
            "citizen-00010000000000000000000002",
            "citizen-00010000000000000000000001",
            "citizen-1",
            "citizen-0002",
            "x",
        ]
        .map(String::from);
        assert_eq!(
            sorted::<Heads>(&ids),
            [
                "x",
                "citizen-1",
                "citizen-000",
                "citizen-0001",
                "citizen-0002",
                "citizen-0001\0",
                "citizen-00010000000000000000000001",
                "citizen-00010000000000000000000002"
            ]
        );
        assert_eq!(sorted::<Salts>(&ids)[..3], ["citizen-000", "citizen-0001", "citizen-0001\0"]);
    }

    proptest! {
        #[test]
        fn the_packed_sort_is_the_key_order(ids in prop::collection::vec("(citizen-)?[\\x00ab\\xff]{0,20}", 0..200)) {
            sorted::<Heads>(&ids);
            sorted::<Salts>(&ids);
        }
    }
}
