//! The durable log on RocksDB: many readers ([`EventStore`]), exactly one writer ([`LogWriter`]).

use crate::bundle::{self, BundleBuf, LogCursor, push_entry};
use crate::cf::{self, Cf, META_CHECKPOINT_PREFIX, META_FORMAT, META_HEADS, META_SALTS, META_TREE};
use crate::envelope::{Envelope, EnvelopeRef, Metadata, RegistryTime, Salt, Seq, StreamId};
use crate::error::{StoreError, VersionConflict};
use crate::known::Known;
use crate::lagging::{self, Heads, Lagging, Salts};
use crate::merkle::{self, CompactRange, Hash, NodeId, NodeSource};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use rocksdb::{
    ColumnFamilyDescriptor, DB, DBRawIterator, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap as StdHashMap;

/// Seeded and fast: stream ids come from clients, so no unseeded hash.
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

/// The on-disk format this build writes and reads. Bump it with a migration, never silently.
/// 2: salts carry their first seq and are indexed by it (see [`Cf::Salts`]).
/// 3: that index has its own column family ([`Cf::SaltIndex`]).
/// 4: stream heads are written behind the log, in bulk (see `lagging`): [`Cf::Streams`]
///    may lag, up to the seq in its `meta` record, and the tail is read back at open.
/// 5: so are subjects' salts ([`Cf::Salts`]; the salt index is still written with each batch).
/// 6: the citizen views are no longer stored (they are rendered from the registry): their
///    column family, `citizens`, is dropped (see [`RETIRED_CFS`]).
/// 7: events are written in bundles ([`Cf::Bundles`]); those of earlier formats stay one
///    per key in [`Cf::Events`], read from there.
pub const FORMAT_VERSION: u32 = 7;
/// Column families earlier formats had and this one drops when it opens a store for writing.
const RETIRED_CFS: [&str; 1] = ["citizens"];
/// Format 1 differs only in its salts (no first seq, no index), which readers take as they
/// are; format 2 also in where the salt index is; formats 1–3 in writing every head, and
/// 1–4 every salt, with its batch (those column families are complete). Opening one for
/// writing moves what needs moving and marks it the current format, so older builds
/// refuse it from then on.
const OLDEST_FORMAT: u32 = 1;
/// Salt index entries moved per synced batch when a format-2 store is upgraded.
const UPGRADE_CHUNK: usize = 50_000;
/// Stream ids are keys; a bound keeps a client from making huge ones.
pub const MAX_STREAM_ID_BYTES: usize = 256;
/// The writer caches salts; past this many it starts over (reads fall back to RocksDB).
const SALTS_CACHE_MAX: usize = 1 << 20;

/// A raw key and value read from a column family.
pub type KeyValue = (Box<[u8]>, Box<[u8]>);

/// The expected version of a stream before an append (optimistic concurrency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this version (1-based).
    Exact(u64),
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

impl ExpectedVersion {
    fn admits(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => v == actual,
        }
    }
}

/// One new event, before it has a seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventData {
    pub event_type: String,
    pub schema_version: u16,
    pub payload: Vec<u8>,
    /// The person the event is about (a CCCD), if any: its leaf then commits to the stream
    /// id and payload with that person's salt instead of showing them.
    pub subject: Option<String>,
}

/// Events for one stream, appended only if the stream is at `expected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAppend {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<EventData>,
}

/// Why staging refused a command's events. Nothing was staged.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Conflict(#[from] VersionConflict),
    #[error("stream id must be 1 to {MAX_STREAM_ID_BYTES} bytes, got {0}")]
    InvalidStreamId(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The size and root of the Merkle tree; size equals the last seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHead {
    pub size: u64,
    pub root: Hash,
}

/// Where a stream stands: its last version and the seq of its last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamHead {
    /// 0 for a stream with no events.
    pub version: u64,
    pub last_seq: Seq,
}

impl StreamHead {
    pub(crate) fn encode(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.version.to_be_bytes());
        out[8..].copy_from_slice(&self.last_seq.0.to_be_bytes());
        out
    }
}

/// Seqs given to one `stage` call: contiguous, `first..=last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub first_seq: Seq,
    pub last_seq: Seq,
    /// The version each stream reached, in the order of the appends.
    pub stream_versions: Vec<u64>,
}

/// Events and writes gathered for one group commit. Built by [`LogWriter::stage`] and
/// [`Batch::put`]; nothing is visible to anyone until [`LogWriter::commit`].
pub struct Batch {
    first_seq: u64,
    recorded_at: RegistryTime,
    /// Every staged event's bundle once full, encoded as it was staged (from borrowed parts:
    /// nothing is cloned per event); [`LogWriter::prepare`] adds the rest of the batch.
    wb: WriteBatch,
    /// The bundle being filled.
    bundle: BundleBuf,
    /// Each staged event's Merkle leaf, in seq order.
    leaves: Vec<Hash>,
    heads: HashMap<StreamId, StreamHead>,
    /// Each new salt with the seq of the event that created it.
    new_salts: HashMap<String, (Salt, Seq)>,
    writes: Vec<(Cf, Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub fn recorded_at(&self) -> RegistryTime {
        self.recorded_at
    }
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty() && self.writes.is_empty()
    }
    /// The Merkle leaf hash of an event staged in this batch.
    pub fn leaf(&self, seq: Seq) -> Option<Hash> {
        self.leaves.get(usize::try_from(seq.0.checked_sub(self.first_seq)?).ok()?).copied()
    }
    /// The seq the next staged event will get.
    pub fn next_seq(&self) -> Seq {
        Seq(self.first_seq + self.leaves.len() as u64)
    }
    /// An extra write (state, projection, idempotency key…) made durable with the events.
    pub fn put(&mut self, cf: Cf, key: Vec<u8>, value: Vec<u8>) {
        self.writes.push((cf, key, Some(value)));
    }
    pub fn delete(&mut self, cf: Cf, key: Vec<u8>) {
        self.writes.push((cf, key, None));
    }
}

/// Why a replica refused an event from the primary's stream. The replica stops on it.
#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("expected seq {expected}, received seq {received}: the stream has a gap or is out of order")]
    Gap { expected: u64, received: u64 },
    #[error(
        "seq {seq}: stream {stream} is at version {head} (last seq {last}) but the event says version {version} after seq {prev:?}"
    )]
    StreamMismatch { seq: u64, stream: StreamId, head: u64, last: u64, version: u64, prev: Option<u64> },
    #[error("seq {seq}: the leaf hash sent with the event does not match the event")]
    LeafMismatch { seq: u64 },
}

/// One write of [`EventStore::write_aside`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsideOp {
    Put(Vec<u8>, Vec<u8>),
    /// Every key that starts with these bytes (a projection's old generation).
    DeletePrefix(Vec<u8>),
}

/// A subject's stored salt: `salt ‖ first seq` since format 2, `salt` alone before.
fn stored_salt(bytes: &[u8]) -> Result<(Salt, Option<u64>), StoreError> {
    let salt = |b: &[u8]| b.try_into().expect("32 bytes");
    match bytes.len() {
        32 => Ok((salt(bytes), None)),
        40 => Ok((salt(&bytes[..32]), Some(u64::from_be_bytes(bytes[32..].try_into().expect("8 bytes"))))),
        n => Err(StoreError::CorruptMeta(format!("the salt of a subject is {n} bytes, not 32 (or 40 with its seq)"))),
    }
}

fn salt_of(bytes: &[u8]) -> Result<Salt, StoreError> {
    stored_salt(bytes).map(|(salt, _)| salt)
}

pub(crate) fn encode_salt(salt: &Salt, first_seq: Seq) -> [u8; 40] {
    let mut stored = [0u8; 40];
    stored[..32].copy_from_slice(salt);
    stored[32..].copy_from_slice(&first_seq.0.to_be_bytes());
    stored
}

fn synced() -> WriteOptions {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    opts
}

/// Until format 6 the `projections` crate kept every citizen's view in the store (under
/// `cv/`, in `projections` until its view version 2 and in `citizens` after), with its
/// version under `ver/cv`. Its column family is dropped; these are the keys it left here.
fn forget_citizen_views(db: &DB, wb: &mut WriteBatch) {
    let projections = db.cf_handle(Cf::Projections.name()).expect("opened with every Cf");
    wb.delete_range_cf(projections, b"cv/", b"cv0");
    wb.delete_cf(projections, b"ver/cv");
}

/// Format 2 → 3: moves the salt index from `salts` (under `0xFF ‖ seq`) to `salt_index`,
/// in one pass and synced batches of bounded size. The caller changes the format record
/// after, so a crash half-way leaves a format-2 store whose next open moves the rest.
fn move_salt_index(db: &DB) -> Result<(), StoreError> {
    let cf = |cf: Cf| db.cf_handle(cf.name()).expect("opened with every Cf");
    let (salts, index) = (cf(Cf::Salts), cf(Cf::SaltIndex));
    let mut opts = ReadOptions::default();
    opts.set_total_order_seek(true);
    let prefix = [cf::LEGACY_SALT_INDEX_PREFIX];
    let mut wb = WriteBatch::default();
    for item in db.iterator_cf_opt(salts, opts, IteratorMode::From(&prefix, Direction::Forward)) {
        let (key, value) = item?;
        let Some(seq) = key.strip_prefix(&prefix) else { break };
        if seq.len() != 8 {
            return Err(StoreError::CorruptMeta("a format-2 salt index key is not 0xFF ‖ seq".into()));
        }
        wb.put_cf(index, seq, value);
        wb.delete_cf(salts, key);
        if wb.len() >= 2 * UPGRADE_CHUNK {
            db.write_opt(std::mem::take(&mut wb), &synced())?;
        }
    }
    Ok(db.write_opt(wb, &synced())?)
}

fn checkpoint_size(key: &[u8]) -> Result<u64, StoreError> {
    key.get(META_CHECKPOINT_PREFIX.len()..)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::CorruptMeta("a checkpoint key is not prefix ‖ u64".into()))
}

fn checkpoint_text(bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes).map_err(|_| StoreError::CorruptMeta("a stored checkpoint is not UTF-8".into()))
}

/// The first key after every key starting with `prefix`; `None` if the prefix is all 0xFF.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// What a successful commit made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub last_seq: Seq,
    pub tree: TreeHead,
}

/// Read access to the log. Shared (`Arc`) by every reader; reads never wait for the writer.
pub struct EventStore {
    db: DB,
    /// As opened: a writer has upgraded it to [`FORMAT_VERSION`]; a read-only open reads
    /// older formats as they are.
    format: u32,
    head: RwLock<TreeHead>,
    /// The first seq stored in [`Cf::Bundles`]: the seqs before it are one per key in
    /// [`Cf::Events`] (formats up to 6). `u64::MAX` for a store without bundles (an older
    /// format opened read-only).
    bundled_from: u64,
    /// Stream heads and salts their column families do not hold yet (see `lagging`).
    pub(crate) heads: Lagging<Heads>,
    pub(crate) salts: Lagging<Salts>,
    /// Writes still to fail on purpose ([`EventStore::fail_next_writes`]).
    faults: AtomicU32,
}

/// The only thing that appends. There is one per open store, so the seq order and the
/// Merkle tree are extended by one thread without locks.
///
/// A batch goes [`LogWriter::prepare`] → [`EventStore::write`] → [`LogWriter::durable`], so
/// the next batch can be staged and prepared while one is being written (see
/// `commands::sequencer`). Until a batch is durable, the stream heads and salts it added,
/// and the tree as it was before it, are kept apart in `pending`: later batches see the
/// heads and salts, and a failed write is undone by going back to the oldest pending tree
/// ([`LogWriter::rewind`]).
pub struct LogWriter {
    store: Arc<EventStore>,
    /// As of the last prepared batch.
    next_seq: u64,
    tree: CompactRange,
    /// Leaf hashes of the partial tile at the right edge, rewritten whole with each batch.
    right_tile: Vec<Hash>,
    /// Prepared batches not yet known durable, oldest first.
    pending: VecDeque<Pending>,
    /// Salts read from RocksDB, so that a subject's later events read it once. (Durable
    /// stream heads and new salts are in the store's overlays until they are written out:
    /// see `lagging`.)
    salts: HashMap<String, Salt>,
    heads_index: lagging::Indexer<Heads>,
    salts_index: lagging::Indexer<Salts>,
    /// Which streams and subjects may exist: most staged streams and subjects are new,
    /// and this answers them without a RocksDB read.
    known: Known,
    /// Events, new salts and `WriteBatch` bytes of the last batch prepared, to size the next
    /// one.
    last_batch_events: usize,
    last_batch_salts: usize,
    last_batch_bytes: usize,
    /// Reused for each staged event's leaf bytes.
    scratch: Vec<u8>,
    /// New subjects' salts: secrets, so a CSPRNG (ChaCha12) seeded from the OS. Owned and
    /// filled 32 bytes at a time: `rand::random::<[u8; 32]>()` drew one `u32` per byte from
    /// the thread-local generator, 5.8 % of all samples under 1024 RecordIssuance submitters
    /// (session 24).
    rng: StdRng,
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        // The write-out threads hold the store open: done, the same process can reopen it.
        self.heads_index.finish(&self.store);
        self.salts_index.finish(&self.store);
    }
}

/// What one prepared batch added to the writer, until it is durable, and the tree as it
/// was before the batch: the oldest one's is where a rewind goes back to.
struct Pending {
    last_seq: u64,
    heads: HashMap<StreamId, StreamHead>,
    salts: HashMap<String, (Salt, Seq)>,
    tree_before: CompactRange,
    tile_before: Vec<Hash>,
}

/// A staged batch as one RocksDB `WriteBatch`, ready for [`EventStore::write`] on any thread.
pub struct Prepared {
    wb: WriteBatch,
    head: TreeHead,
}

impl Prepared {
    pub fn last_seq(&self) -> Seq {
        Seq(self.head.size)
    }
}

pub(crate) fn db_options(cf: Option<Cf>) -> Options {
    let mut opts = Options::default();
    // Most point lookups (stream heads, salts, state) are for keys that may not exist yet:
    // bloom filters answer those without touching data blocks.
    if cf == Some(Cf::Idempotency) {
        // A new idempotency key (and before formats 4, 5 and 6 a new citizen's stream
        // head, salt and view) is looked up before it is written, and each miss
        // searched the whole memtable skiplist: profiled under 1024 submitters, those
        // searches were ~11 % of the command path's CPU (the inserts another ~10 %).
        // A whole-key bloom in the memtable answers a miss; it costs a hash per insert,
        // only in these column families. Measured: RecordIssuance at 1024 submitters
        // 25.6k → 32.5k cmds/s in one A/B run (2026-11-29, session 7's machine).
        opts.set_memtable_prefix_bloom_ratio(0.05);
        opts.set_memtable_whole_key_filtering(true);
    }
    if cf == Some(Cf::Projections) {
        // Every projection snapshot ends in a flush (every few seconds), so this family
        // gathers small level-0 files fast, and each compaction of four of them rewrote
        // the whole bottom level with them (the audit index's keys): 5 compactions, 2.9 s
        // of the compaction thread in 40 s of HTTP load. Merging more files at a time
        // rewrites that level less often (three alternating pairs of 20 s HTTP runs: the
        // compaction thread 2.2–2.4 → 1.2–1.3 µs per recorded lookup). The audit trail's
        // prefix scans then merge up to 16 level-0 files instead of 4 (no bloom filter
        // helps a scan); they are an auditor's or the Sở's reads, not a CA's.
        opts.set_level_zero_file_num_compaction_trigger(16);
        opts.set_level_zero_slowdown_writes_trigger(32);
        opts.set_level_zero_stop_writes_trigger(48);
    }
    if cf.is_none() {
        // One thread writes the log. The others (the projections follower, snapshots,
        // checkpoints) write far less and wait their turn in RocksDB's write queue.
        opts.set_allow_concurrent_memtable_write(false);
    }
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    opts.set_block_based_table_factory(&table);
    opts.increase_parallelism(2);
    opts.set_max_background_jobs(2);
    opts.set_write_buffer_size(64 << 20);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts
}

impl EventStore {
    /// Opens (and with `create`, creates) the store for reading and writing. Returns the
    /// shared read side and the one writer.
    pub fn open(path: impl AsRef<Path>, create: bool) -> Result<(Arc<EventStore>, LogWriter), StoreError> {
        let path = path.as_ref();
        if !create && !path.join("CURRENT").exists() {
            return Err(StoreError::NotFound(path.display().to_string()));
        }
        let mut opts = db_options(None);
        opts.create_if_missing(create);
        opts.create_missing_column_families(true);
        // RocksDB opens a store for writing only with every column family it has.
        let existing = if path.join("CURRENT").exists() { DB::list_cf(&opts, path)? } else { Vec::new() };
        let retired: Vec<&str> = RETIRED_CFS.into_iter().filter(|r| existing.iter().any(|e| e == r)).collect();
        let cfs = Cf::ALL
            .iter()
            .map(|cf| ColumnFamilyDescriptor::new(cf.name(), db_options(Some(*cf))))
            .chain(retired.iter().map(|name| ColumnFamilyDescriptor::new(*name, Options::default())));
        let mut db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let meta = db.cf_handle(Cf::Meta.name()).expect("opened with every Cf");
        let format = db.get_cf(meta, META_FORMAT)?.and_then(|f| Some(u32::from_be_bytes(f.try_into().ok()?)));
        // A new store, or an older format to upgrade (a newer or unreadable record is left
        // for `checked` to refuse).
        if format.is_none_or(|f| (OLDEST_FORMAT..FORMAT_VERSION).contains(&f)) {
            if format == Some(2) {
                move_salt_index(&db)?;
            }
            let mut wb = WriteBatch::default();
            wb.put_cf(meta, META_FORMAT, FORMAT_VERSION.to_be_bytes());
            forget_citizen_views(&db, &mut wb);
            // A new store, or one whose every batch wrote its heads (and salts): the column
            // family holds them all, up to the tree's size.
            let size = db.get_cf(meta, META_TREE)?.and_then(|t| Some(u64::from_be_bytes(t.get(..8)?.try_into().ok()?)));
            for record in [META_HEADS, META_SALTS] {
                if db.get_cf(meta, record)?.is_none() {
                    wb.put_cf(meta, record, size.unwrap_or(0).to_be_bytes());
                }
            }
            db.write_opt(wb, &synced())?;
        }
        // After the format record: a crash in between leaves the column family for the
        // next open to drop, and an older build refusing the store.
        for name in retired {
            db.drop_cf(name)?;
        }
        let store = Arc::new(Self::checked(db)?);
        let tree = store.load_compact_range()?;
        let right_tile = store.right_tile(tree.size())?;
        lagging::remove_leftovers(&store);
        let mut known = Known::start(&store);
        // A stream or subject of the tail is not in the column family for the known set's
        // loader to find: it goes in with those staged from now on.
        store.heads.load_now(&store, |stream| known.add_stream(stream))?;
        store.salts.load_now(&store, |subject| known.add_subject(subject))?;
        let writer = LogWriter {
            next_seq: tree.size() + 1,
            right_tile,
            tree,
            store: Arc::clone(&store),
            pending: VecDeque::new(),
            salts: HashMap::default(),
            heads_index: lagging::Indexer::new(),
            salts_index: lagging::Indexer::staggered(),
            known,
            last_batch_events: 0,
            last_batch_salts: 0,
            last_batch_bytes: 0,
            scratch: Vec::new(),
            rng: StdRng::try_from_os_rng()
                .map_err(|e| StoreError::Io(format!("the OS gave no randomness to seed new salts with: {e}")))?,
        };
        Ok((store, writer))
    }

    /// Opens an existing store read-only (auditors, a copy of a data dir). Sees the log as it
    /// was at open time.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Arc<EventStore>, StoreError> {
        let path = path.as_ref();
        if !path.join("CURRENT").exists() {
            return Err(StoreError::NotFound(path.display().to_string()));
        }
        // A format-2 store has no salt index column family; `format` keeps readers off it.
        let existing = DB::list_cf(&db_options(None), path)?;
        let names = Cf::ALL.map(Cf::name).into_iter().filter(|name| existing.iter().any(|e| e == name));
        let db = DB::open_cf_for_read_only(&db_options(None), path, names, false)?;
        let store = Arc::new(Self::checked(db)?);
        store.load_compact_range()?;
        Ok(store)
    }

    /// Checks the format version and that the tree head agrees with the last event.
    fn checked(db: DB) -> Result<Self, StoreError> {
        let meta = db.cf_handle(Cf::Meta.name()).expect("opened with every Cf");
        let format =
            db.get_cf(meta, META_FORMAT)?.ok_or_else(|| StoreError::CorruptMeta("no format version record".into()))?;
        let format = u32::from_be_bytes(
            format.as_slice().try_into().map_err(|_| StoreError::CorruptMeta("format record is not 4 bytes".into()))?,
        );
        if format > FORMAT_VERSION {
            return Err(StoreError::NewerFormat { found: format, supported: FORMAT_VERSION });
        }
        if format < OLDEST_FORMAT {
            return Err(StoreError::CorruptMeta(format!("unknown older format version {format}")));
        }
        let head = match db.get_cf(meta, META_TREE)? {
            None => TreeHead { size: 0, root: merkle::empty_root() },
            Some(bytes) if bytes.len() == 40 => TreeHead {
                size: u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
                root: bytes[8..].try_into().expect("32 bytes"),
            },
            Some(_) => return Err(StoreError::CorruptMeta("tree head record is not 40 bytes".into())),
        };
        if format >= 3 && db.cf_handle(Cf::SaltIndex.name()).is_none() {
            return Err(StoreError::CorruptMeta(format!(
                "a format-{format} store without its salt index column family"
            )));
        }
        if format >= 7 && db.cf_handle(Cf::Bundles.name()).is_none() {
            return Err(StoreError::CorruptMeta(format!("a format-{format} store without its event bundles")));
        }
        // The unbundled events end where the bundles begin: nothing writes them any more.
        let legacy_last =
            match db.iterator_cf(db.cf_handle(Cf::Events.name()).expect("opened"), IteratorMode::End).next() {
                None => 0,
                Some(item) => decode_seq_key(&item?.0)
                    .ok_or_else(|| StoreError::CorruptMeta("an events key is not 8 bytes".into()))?,
            };
        let bundled_from = if db.cf_handle(Cf::Bundles.name()).is_some() { legacy_last + 1 } else { u64::MAX };
        let store = EventStore {
            db,
            format,
            bundled_from,
            head: RwLock::new(head),
            heads: Lagging::default(),
            salts: Lagging::default(),
            faults: AtomicU32::new(0),
        };
        let last = store.last_event_key()?;
        if last != head.size {
            return Err(StoreError::CorruptMeta(format!(
                "the last event is seq {last} but the Merkle tree has {} leaves",
                head.size
            )));
        }
        Ok(store)
    }

    fn load_compact_range(&self) -> Result<CompactRange, StoreError> {
        let head = self.tree_head();
        let range = CompactRange::from_peaks(head.size, |id| self.node(id))?;
        if range.root() != head.root {
            return Err(StoreError::CorruptMeta(format!(
                "stored root for tree size {} does not match its stored subtrees",
                head.size
            )));
        }
        Ok(range)
    }

    /// The seq of the last stored event (0 for none).
    fn last_event_key(&self) -> Result<u64, StoreError> {
        if self.bundled_from == u64::MAX {
            return Ok(0);
        }
        let last = match self.db.iterator_cf(self.cf(Cf::Bundles), IteratorMode::End).next() {
            None => return Ok(self.bundled_from - 1),
            Some(item) => item?,
        };
        let first =
            decode_seq_key(&last.0).ok_or_else(|| StoreError::CorruptMeta("a bundle key is not 8 bytes".into()))?;
        let mut end = first;
        for entry in bundle::entries(first, &last.1) {
            end = entry?.0;
        }
        Ok(end)
    }

    /// Where [`Cf::Bundles`] begins (see the field).
    pub(crate) fn bundled_from(&self) -> u64 {
        self.bundled_from
    }

    /// A raw iterator over the bundles, or over the older one-per-key events.
    pub(crate) fn events_iterator(&self, bundles: bool) -> DBRawIterator<'_> {
        self.db.raw_iterator_cf(self.cf(if bundles { Cf::Bundles } else { Cf::Events }))
    }

    /// The stored bytes of every event from `from` on, in seq order (see [`LogCursor`]).
    pub fn cursor(&self, from: Seq) -> LogCursor<'_> {
        LogCursor::new(self, from.0)
    }

    pub(crate) fn raw_iterator(&self, cf: Cf, opts: ReadOptions) -> DBRawIterator<'_> {
        self.db.raw_iterator_cf_opt(self.cf(cf), opts)
    }

    pub(crate) fn cf(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(cf.name()).expect("opened with every Cf")
    }

    /// The format the store was opened as.
    pub(crate) fn format(&self) -> u32 {
        self.format
    }

    pub(crate) fn path(&self) -> &Path {
        self.db.path()
    }

    /// Adds a sorted table file to a column family (RocksDB takes it over).
    pub(crate) fn ingest(
        &self,
        cf: Cf,
        opts: &rocksdb::IngestExternalFileOptions,
        file: &Path,
    ) -> Result<(), StoreError> {
        Ok(self.db.ingest_external_file_cf_opts(self.cf(cf), opts, vec![file])?)
    }

    /// One record in [`Cf::Meta`], made durable with the next synced write.
    pub(crate) fn put_meta(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        Ok(self.db.put_cf(self.cf(Cf::Meta), key, value)?)
    }

    /// The last committed seq (0 for an empty log).
    pub fn last_seq(&self) -> Seq {
        Seq(self.tree_head().size)
    }

    /// The current tree head: every event up to `size` is durable and in the tree.
    pub fn tree_head(&self) -> TreeHead {
        *self.head.read().expect("head lock is never poisoned: no code panics while holding it")
    }

    /// One event by seq.
    pub fn event(&self, seq: Seq) -> Result<Envelope, StoreError> {
        let last = self.last_seq().0;
        if seq.0 == 0 || seq.0 > last {
            return Err(StoreError::SeqOutOfRange { seq: seq.0, last });
        }
        let mut cursor = self.cursor(seq);
        match cursor.next() {
            Some(entry) => decode_envelope(seq.0, entry?.1),
            None => Err(StoreError::Corrupt { seq, reason: "missing from the log".into() }),
        }
    }

    /// Every event from `from` on, in seq order, read lazily (never the whole log in memory).
    pub fn read_from(&self, from: Seq) -> EventIter<'_> {
        EventIter { cursor: self.cursor(from), done: false }
    }

    /// Seqs `from` through `upto` in order, each handed to `visit` as a view of its stored
    /// bytes: nothing is copied or allocated per event, for passes over the whole log (a
    /// rebuild) where that would be most of the cost. Checks there is no gap, as
    /// [`EventStore::read_from`] does.
    pub fn visit<E: From<StoreError>>(
        &self,
        from: Seq,
        upto: Seq,
        mut visit: impl FnMut(EnvelopeRef<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut cursor = self.cursor(from);
        let mut seq = from.0.max(1);
        while seq <= upto.0
            && let Some(entry) = cursor.next()
        {
            let (at, bytes) = entry?;
            visit(EnvelopeRef::decode_at(at, bytes)?)?;
            seq = at.0 + 1;
        }
        Ok(())
    }

    /// One stream's events from `from_version` (1-based) on, in order. Walks the stream's
    /// `prev_seq` links back from its head: cheap for the short streams of citizens, and it
    /// spares the write path an index key per event.
    pub fn read_stream(&self, stream: &StreamId, from_version: u64) -> Result<Vec<Envelope>, StoreError> {
        let head = self.stream_head(stream)?;
        let mut events = Vec::new();
        let mut next = (head.version >= from_version.max(1)).then_some(head.last_seq);
        while let Some(seq) = next {
            let event = self.event(seq)?;
            if event.stream != *stream {
                return Err(StoreError::Corrupt {
                    seq,
                    reason: format!("linked from stream {stream} but belongs to {}", event.stream),
                });
            }
            next = event.prev_seq.filter(|_| event.stream_version > from_version.max(1));
            events.push(event);
        }
        events.reverse();
        Ok(events)
    }

    /// The stream's head; version 0 if it has no events.
    pub fn stream_head(&self, stream: &StreamId) -> Result<StreamHead, StoreError> {
        match self.heads.get(self, stream.as_str())? {
            Some(head) => Ok(head),
            None => self.column_head(stream),
        }
    }

    /// The seq up to which [`Cf::Streams`] holds every stream's head (the rest are in memory
    /// and in the log: see `lagging`).
    pub fn heads_indexed_through(&self) -> Result<Seq, StoreError> {
        lagging::indexed_through::<Heads>(self).map(Seq)
    }

    /// The seq up to which [`Cf::Salts`] holds every subject's salt (see `lagging`).
    pub fn salts_indexed_through(&self) -> Result<Seq, StoreError> {
        lagging::indexed_through::<Salts>(self).map(Seq)
    }

    /// The stream's head in the column family, which may lag (see `lagging`).
    fn column_head(&self, stream: &StreamId) -> Result<StreamHead, StoreError> {
        match self.db.get_pinned_cf(self.cf(Cf::Streams), cf::stream_prefix(stream.as_str()))? {
            None => Ok(StreamHead::default()),
            Some(bytes) if bytes.len() == 16 => Ok(StreamHead {
                version: u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
                last_seq: Seq(u64::from_be_bytes(bytes[8..].try_into().expect("8 bytes"))),
            }),
            Some(_) => Err(StoreError::CorruptMeta(format!("head of stream {stream} is not 16 bytes"))),
        }
    }

    /// Flushes the memtables and waits until RocksDB's background compactions are done: a
    /// benchmark of a pass over a log it has just written then measures the pass, not the
    /// compactions that writing it left running on the same cores.
    pub fn settle(&self) -> Result<(), StoreError> {
        let mut opts = rocksdb::WaitForCompactOptions::default();
        opts.set_flush(true);
        Ok(self.db.wait_for_compact(&opts)?)
    }

    /// A value from any column family (state, projections, idempotency…).
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    /// Key-ordered entries of a column family whose keys start with `prefix`.
    pub fn scan_prefix<'a>(
        &'a self,
        cf: Cf,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = Result<KeyValue, StoreError>> + 'a {
        self.scan_prefix_from(cf, prefix, prefix)
    }

    /// The same from the key `start` on (a key at or after `prefix`).
    fn scan_prefix_from<'a>(
        &'a self,
        cf: Cf,
        prefix: &'a [u8],
        start: &[u8],
    ) -> impl Iterator<Item = Result<KeyValue, StoreError>> + use<'a> {
        // Total order: the column families with a whole-key prefix extractor would otherwise
        // seek only the exact key `start`.
        let mut opts = ReadOptions::default();
        opts.set_total_order_seek(true);
        self.db
            .iterator_cf_opt(self.cf(cf), opts, IteratorMode::From(start, Direction::Forward))
            .take_while(move |item| item.as_ref().map(|(k, _)| k.starts_with(prefix)).unwrap_or(true))
            .map(|item| item.map_err(StoreError::from))
    }

    /// A subject's salt; `None` if it never had events or was erased.
    pub fn salt(&self, subject: &str) -> Result<Option<Salt>, StoreError> {
        match self.salts.get(self, subject)? {
            Some((salt, _)) => Ok(Some(salt)),
            None => self.column_salt(subject),
        }
    }

    /// A subject's salt in the column family, which may lag (see `lagging`).
    fn column_salt(&self, subject: &str) -> Result<Option<Salt>, StoreError> {
        self.db.get_pinned_cf(self.cf(Cf::Salts), subject.as_bytes())?.map(|b| salt_of(&b)).transpose()
    }

    /// The keys that hold `subject`'s salt: what erasing it must delete. Empty when the
    /// subject has no salt (never had events, or was erased).
    pub fn salt_keys(&self, subject: &str) -> Result<Vec<(Cf, Vec<u8>)>, StoreError> {
        let first_seq = match self.salts.get(self, subject)? {
            Some((_, seq)) => Some(seq.0),
            None => match self.db.get_pinned_cf(self.cf(Cf::Salts), subject.as_bytes())? {
                None => return Ok(Vec::new()),
                Some(stored) => stored_salt(&stored)?.1,
            },
        };
        // Its column family key also when the salt is still only in memory: deleting a key
        // that is not there costs nothing.
        let mut keys = vec![(Cf::Salts, subject.as_bytes().to_vec())];
        if let Some(seq) = first_seq {
            let (cf, prefix) = self.salt_index();
            keys.push((cf, [prefix, &cf::seq_key(seq)].concat()));
        }
        Ok(keys)
    }

    /// Where the salt index is: its own column family, or (format 2, read-only) `salts`
    /// under a prefix.
    fn salt_index(&self) -> (Cf, &'static [u8]) {
        match self.format {
            3.. => (Cf::SaltIndex, &[]),
            _ => (Cf::Salts, &[cf::LEGACY_SALT_INDEX_PREFIX]),
        }
    }

    /// Salts by the seq that created them, in seq order: the events of a subject's first
    /// appearance, read in step with the log.
    pub fn salts_by_first_seq(&self) -> impl Iterator<Item = Result<(Seq, Salt), StoreError>> + '_ {
        self.salts_from(Seq(1))
    }

    /// The same from the salts created at `from` on.
    pub(crate) fn salts_from(&self, from: Seq) -> impl Iterator<Item = Result<(Seq, Salt), StoreError>> + '_ {
        let bad = |why: &str| StoreError::CorruptMeta(format!("a salt index entry {why}"));
        let (cf, prefix) = self.salt_index();
        let start = [prefix, &cf::seq_key(from.0)].concat();
        self.scan_prefix_from(cf, prefix, &start).map(move |item| {
            let (key, value) = item?;
            let seq = key.get(prefix.len()..).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
            let salt = <Salt>::try_from(value.as_ref()).ok();
            match (seq, salt) {
                (Some(seq), Some(salt)) => Ok((Seq(seq), salt)),
                (None, _) => Err(bad("has a key that is not a seq")),
                (_, None) => Err(bad(&format!("holds {} bytes, not a 32-byte salt", value.len()))),
            }
        })
    }

    /// The salts of many subjects in one batched read (`None`: never had events, or erased).
    pub fn salts(&self, subjects: &[&str]) -> Result<Vec<Option<Salt>>, StoreError> {
        let mut found = Vec::with_capacity(subjects.len());
        for subject in subjects {
            found.push(self.salts.get(self, subject)?.map(|(salt, _)| salt));
        }
        let missing: Vec<&str> = subjects.iter().zip(&found).filter(|(_, f)| f.is_none()).map(|(s, _)| *s).collect();
        let mut stored = self
            .db
            .batched_multi_get_cf(self.cf(Cf::Salts), missing.iter().map(|s| s.as_bytes()), false)
            .into_iter()
            .map(|value| value?.map(|b| salt_of(&b)).transpose());
        for slot in found.iter_mut().filter(|f| f.is_none()) {
            *slot = stored.next().expect("one answer per subject asked")?;
        }
        Ok(found)
    }

    /// The Merkle leaf hash stored for `seq`.
    pub fn leaf_hash(&self, seq: Seq) -> Result<Hash, StoreError> {
        self.node(NodeId::new(0, seq.leaf_index()))
    }

    /// The stored leaf hashes of seqs `from..=to`, reading each tile once (a publisher or
    /// an export needs them in runs).
    pub fn leaf_hashes(&self, from: Seq, to: Seq) -> Result<Vec<Hash>, StoreError> {
        self.check_size(to.0)?;
        if from.0 == 0 || from > to {
            return Ok(Vec::new());
        }
        let (first, last) = (from.leaf_index(), to.leaf_index());
        let mut out = Vec::with_capacity((last - first + 1) as usize);
        for tile in first / cf::TILE_WIDTH..=last / cf::TILE_WIDTH {
            let bytes = self
                .db
                .get_pinned_cf(self.cf(Cf::Merkle), cf::tile_key(tile))?
                .ok_or(StoreError::MissingNode(NodeId::new(0, tile * cf::TILE_WIDTH)))?;
            let start = first.max(tile * cf::TILE_WIDTH) - tile * cf::TILE_WIDTH;
            let end = last.min(tile * cf::TILE_WIDTH + cf::TILE_WIDTH - 1) - tile * cf::TILE_WIDTH;
            let slice = bytes
                .get(start as usize * 32..(end as usize + 1) * 32)
                .ok_or(StoreError::MissingNode(NodeId::new(0, tile * cf::TILE_WIDTH + end)))?;
            out.extend(slice.chunks_exact(32).map(|c| <Hash>::try_from(c).expect("32-byte chunks")));
        }
        Ok(out)
    }

    /// The root of the tree when it had `size` leaves (any size up to the current one).
    pub fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        self.check_size(size)?;
        merkle::root_at(self, size)
    }

    /// RFC 6962 inclusion proof of `seq` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, seq: Seq, size: u64) -> Result<Vec<Hash>, StoreError> {
        self.check_size(size)?;
        if seq.0 == 0 || seq.0 > size {
            return Err(StoreError::SeqOutOfRange { seq: seq.0, last: size });
        }
        merkle::inclusion_proof(self, seq.leaf_index(), size)
    }

    /// RFC 6962 consistency proof between tree sizes `from ≤ to`.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
        self.check_size(to)?;
        if from > to {
            return Err(StoreError::SizeOutOfRange { size: from, current: to });
        }
        merkle::consistency_proof(self, from, to)
    }

    fn check_size(&self, size: u64) -> Result<(), StoreError> {
        let current = self.tree_head().size;
        if size > current {
            return Err(StoreError::SizeOutOfRange { size, current });
        }
        Ok(())
    }

    /// Writes derived data (projections that follow the log, their checkpoints) outside the
    /// log, as one atomic batch. Not synced: what it writes can always be rebuilt from the
    /// log, and a crash only sends a projection back to its last checkpoint, which is in the
    /// same batch as its data. The log's own column families are refused.
    pub fn write_aside(
        &self,
        cf: Cf,
        ops: impl IntoIterator<Item = impl std::borrow::Borrow<AsideOp>>,
    ) -> Result<(), StoreError> {
        self.write_derived(cf, ops, &WriteOptions::default())
    }

    /// [`Self::write_aside`] made durable by flushing the column family instead of through
    /// RocksDB's write-ahead log, for projection snapshots: a large one in the WAL held up
    /// the log writer's synced commits behind its bytes (measured: p99 of recorded lookups
    /// 13–17 ms this way, 99–141 ms through the WAL). Durable when it returns, like a synced
    /// write: the caller waits while RocksDB's background threads flush.
    pub fn write_aside_flushed(
        &self,
        cf: Cf,
        ops: impl IntoIterator<Item = impl std::borrow::Borrow<AsideOp>>,
    ) -> Result<(), StoreError> {
        let mut unlogged = WriteOptions::default();
        unlogged.disable_wal(true);
        self.write_derived(cf, ops, &unlogged)?;
        Ok(self.db.flush_cf(self.cf(cf))?)
    }

    fn write_derived(
        &self,
        cf: Cf,
        ops: impl IntoIterator<Item = impl std::borrow::Borrow<AsideOp>>,
        options: &WriteOptions,
    ) -> Result<(), StoreError> {
        assert!(
            matches!(cf, Cf::Projections | Cf::State),
            "write_aside is for derived data; {} belongs to the log's writer",
            cf.name()
        );
        let handle = self.cf(cf);
        let mut wb = WriteBatch::default();
        for op in ops {
            match op.borrow() {
                AsideOp::Put(k, v) => wb.put_cf(handle, k, v),
                AsideOp::DeletePrefix(p) => {
                    let end = prefix_end(p).expect("derived-data prefixes start with an ASCII letter");
                    wb.delete_range_cf(handle, p, &end)
                }
            }
        }
        Ok(self.db.write_opt(wb, options)?)
    }

    /// Stores a signed checkpoint of the tree at `size` leaves, synced: once a checkpoint
    /// has been handed out, the registry must be able to show it again.
    pub fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        Ok(self.db.put_cf_opt(self.cf(Cf::Meta), cf::checkpoint_key(size), note.as_bytes(), &synced())?)
    }

    /// The stored checkpoint of the tree at exactly `size` leaves.
    pub fn checkpoint(&self, size: u64) -> Result<Option<String>, StoreError> {
        self.get(Cf::Meta, &cf::checkpoint_key(size))?.map(checkpoint_text).transpose()
    }

    /// The newest stored checkpoint with its tree size.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        let end = prefix_end(META_CHECKPOINT_PREFIX).expect("an ASCII prefix");
        let mut iter = self.db.raw_iterator_cf(self.cf(Cf::Meta));
        iter.seek_for_prev(&end);
        iter.status()?;
        match (iter.key(), iter.value()) {
            (Some(k), Some(v)) if k.starts_with(META_CHECKPOINT_PREFIX) => {
                Ok(Some((checkpoint_size(k)?, checkpoint_text(v.to_vec())?)))
            }
            _ => Ok(None),
        }
    }

    /// Every stored checkpoint, smallest tree first.
    pub fn checkpoints(&self) -> impl Iterator<Item = Result<(u64, String), StoreError>> + '_ {
        self.scan_prefix(Cf::Meta, META_CHECKPOINT_PREFIX)
            .map(|item| item.and_then(|(k, v)| Ok((checkpoint_size(&k)?, checkpoint_text(v.into_vec())?))))
    }

    /// Erasure (R9): deletes `keys` and everything under `prefixes`, synced, in one batch.
    /// Only a subject's salt and data derived from the log may be forgotten; the log's own
    /// column families are refused. Run it with the writer stopped: the writer keeps the
    /// salts it has used in memory.
    pub fn forget(&self, keys: &[(Cf, Vec<u8>)], prefixes: &[(Cf, Vec<u8>)]) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        for (cf, key) in keys {
            assert!(
                matches!(cf, Cf::Salts | Cf::SaltIndex | Cf::Idempotency | Cf::Projections),
                "{} cannot be erased from",
                cf.name()
            );
            if *cf == Cf::Salts {
                // Salts are keyed by subject ids, UTF-8; a salt still in memory goes too.
                self.salts.forget(&String::from_utf8_lossy(key))?;
            }
            wb.delete_cf(self.cf(*cf), key);
        }
        for (cf, prefix) in prefixes {
            assert!(matches!(cf, Cf::Projections), "{} cannot be erased from by prefix", cf.name());
            let end = prefix_end(prefix).expect("derived-data prefixes start with an ASCII letter");
            wb.delete_range_cf(self.cf(*cf), prefix, &end);
        }
        Ok(self.db.write_opt(wb, &synced())?)
    }

    /// Makes a prepared batch durable: one RocksDB write with `sync=true`. Batches must
    /// arrive in the order [`LogWriter::prepare`] made them, and none after a failed one
    /// until the writer has rewound. `Err` means nothing of the batch was written.
    pub fn write(&self, prepared: Prepared) -> Result<Committed, StoreError> {
        if self.faults.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
            return Err(StoreError::Io("injected write failure (fail_next_writes)".into()));
        }
        self.db.write_opt(prepared.wb, &synced())?;
        *self.head.write().expect("head lock is never poisoned: no code panics while holding it") = prepared.head;
        Ok(Committed { last_seq: Seq(prepared.head.size), tree: prepared.head })
    }

    /// Fault injection: the next `n` calls of [`Self::write`] fail as a full disk would,
    /// writing nothing. Exists only so tests can drive the failed-batch path for real;
    /// nothing in kyso calls it.
    #[doc(hidden)]
    pub fn fail_next_writes(&self, n: u32) {
        self.faults.store(n, Ordering::Relaxed);
    }

    /// Overwrites one raw value, bypassing the writer. Exists only so tamper tests can play
    /// the attacker who edits the data dir; nothing in kyso calls it.
    #[doc(hidden)]
    pub fn tamper_raw_put(&self, cf: Cf, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        Ok(self.db.put_cf(self.cf(cf), key, value)?)
    }

    /// Deletes one raw value, bypassing the writer; for tamper tests, like [`Self::tamper_raw_put`].
    #[doc(hidden)]
    pub fn tamper_raw_delete(&self, cf: Cf, key: &[u8]) -> Result<(), StoreError> {
        Ok(self.db.delete_cf(self.cf(cf), key)?)
    }

    /// Replaces one event's stored bytes (`Some`) or cuts it out of the log (`None`),
    /// wherever it is stored, bypassing the writer; for tamper tests, like
    /// [`Self::tamper_raw_put`]. Cutting an event out of a bundle shifts the ones after it
    /// in that bundle down a seq, as an edit of the raw bytes would.
    #[doc(hidden)]
    pub fn tamper_event(&self, seq: Seq, bytes: Option<&[u8]>) -> Result<(), StoreError> {
        if seq.0 < self.bundled_from {
            return match bytes {
                Some(bytes) => self.tamper_raw_put(Cf::Events, &cf::seq_key(seq.0), bytes),
                None => self.tamper_raw_delete(Cf::Events, &cf::seq_key(seq.0)),
            };
        }
        let mut raw = self.events_iterator(true);
        raw.seek_for_prev(cf::seq_key(seq.0));
        let (Some(key), Some(value)) = (raw.key(), raw.value()) else {
            return Err(StoreError::Corrupt { seq, reason: "no bundle holds it".into() });
        };
        let first = decode_seq_key(key).ok_or_else(|| StoreError::CorruptMeta("a bundle key is not 8 bytes".into()))?;
        let mut out = Vec::new();
        for entry in bundle::entries(first, value) {
            let (at, mut entry) = entry?;
            if at == seq.0 {
                match bytes {
                    Some(bytes) => entry = bytes,
                    None => continue,
                }
            }
            push_entry(&mut out, entry);
        }
        match out.is_empty() {
            true => self.tamper_raw_delete(Cf::Bundles, &cf::seq_key(first)),
            false => self.tamper_raw_put(Cf::Bundles, &cf::seq_key(first), &out),
        }
    }
}

impl NodeSource for EventStore {
    type Error = StoreError;
    fn node(&self, id: NodeId) -> Result<Hash, StoreError> {
        let merkle = self.cf(Cf::Merkle);
        if id.level >= cf::TILE_HEIGHT {
            let bytes =
                self.db.get_pinned_cf(merkle, cf::node_key(id.level, id.index))?.ok_or(StoreError::MissingNode(id))?;
            return bytes.as_ref().try_into().map_err(|_| StoreError::MissingNode(id));
        }
        // A node below the tile height covers 2^level leaves inside one tile.
        let first_leaf = id.index << id.level;
        let offset = (first_leaf % cf::TILE_WIDTH) as usize;
        let tile = self
            .db
            .get_pinned_cf(merkle, cf::tile_key(first_leaf / cf::TILE_WIDTH))?
            .ok_or(StoreError::MissingNode(id))?;
        let leaves = tile.get(offset * 32..(offset + (1 << id.level)) * 32).ok_or(StoreError::MissingNode(id))?;
        let mut level: Vec<Hash> = leaves.chunks_exact(32).map(|c| c.try_into().expect("32-byte chunks")).collect();
        while level.len() > 1 {
            level = level.chunks_exact(2).map(|pair| merkle::hash_children(&pair[0], &pair[1])).collect();
        }
        Ok(level[0])
    }
}

impl EventStore {
    /// Every stored leaf hash in leaf order (seq 1 first), read tile by tile.
    pub fn stored_leaves(&self) -> impl Iterator<Item = Result<Hash, StoreError>> + '_ {
        self.scan_prefix(Cf::Merkle, &[cf::TILE_PREFIX]).flat_map(|item| {
            let hashes: Vec<Result<Hash, StoreError>> = match item {
                Err(e) => vec![Err(e)],
                Ok((_, tile)) if tile.len() % 32 != 0 => {
                    vec![Err(StoreError::CorruptMeta("a Merkle tile is not a whole number of hashes".into()))]
                }
                Ok((_, tile)) => tile.chunks_exact(32).map(|c| Ok(c.try_into().expect("32-byte chunks"))).collect(),
            };
            hashes
        })
    }

    /// The leaves of the rightmost, not yet full tile.
    fn right_tile(&self, size: u64) -> Result<Vec<Hash>, StoreError> {
        let filled = (size % cf::TILE_WIDTH) as usize;
        if filled == 0 {
            return Ok(Vec::new());
        }
        let tile = self.db.get_cf(self.cf(Cf::Merkle), cf::tile_key(size / cf::TILE_WIDTH))?.unwrap_or_default();
        if tile.len() != filled * 32 {
            return Err(StoreError::CorruptMeta(format!(
                "the last Merkle tile holds {} bytes, expected {}",
                tile.len(),
                filled * 32
            )));
        }
        Ok(tile.chunks_exact(32).map(|c| c.try_into().expect("32-byte chunks")).collect())
    }
}

pub(crate) fn decode_seq_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

fn decode_envelope(seq: u64, bytes: &[u8]) -> Result<Envelope, StoreError> {
    decode_at(seq, bytes, |e: &Envelope| e.seq)
}

/// `bytes`, stored under `seq`, decoded as an owned or a borrowed envelope and checked to
/// be that seq's.
pub(crate) fn decode_at<'a, T: Deserialize<'a>>(
    seq: u64,
    bytes: &'a [u8],
    seq_of: fn(&T) -> Seq,
) -> Result<T, StoreError> {
    let env: T = postcard::from_bytes(bytes)
        .map_err(|e| StoreError::Corrupt { seq: Seq(seq), reason: format!("envelope does not decode: {e}") })?;
    if seq_of(&env).0 != seq {
        return Err(StoreError::Corrupt { seq: Seq(seq), reason: format!("envelope says seq {}", seq_of(&env)) });
    }
    Ok(env)
}

/// Streams the log in seq order and checks there is no gap.
pub struct EventIter<'a> {
    cursor: LogCursor<'a>,
    done: bool,
}

impl Iterator for EventIter<'_> {
    type Item = Result<Envelope, StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.cursor.next()?.and_then(|(seq, bytes)| decode_envelope(seq.0, bytes));
        self.done = item.is_err();
        Some(item)
    }
}

impl LogWriter {
    pub fn store(&self) -> &Arc<EventStore> {
        &self.store
    }

    /// The last seq prepared: durable, or on its way to disk.
    pub fn last_prepared(&self) -> Seq {
        Seq(self.next_seq - 1)
    }

    /// Whether the hashes of the streams and subjects the store held at open are loaded (see
    /// `Known`); until then a new stream or subject is looked up in RocksDB. For tests and
    /// benchmarks.
    #[doc(hidden)]
    pub fn known_loaded(&mut self) -> bool {
        self.known.ready()
    }

    /// Starts a batch whose events are recorded at `recorded_at`.
    pub fn begin(&self, recorded_at: RegistryTime) -> Batch {
        // Sized like the last batch: growing a batch copies all of it each time.
        Batch {
            first_seq: self.next_seq,
            recorded_at,
            wb: WriteBatch::with_capacity_bytes(self.last_batch_bytes),
            leaves: Vec::with_capacity(self.last_batch_events),
            bundle: BundleBuf::default(),
            heads: HashMap::with_capacity_and_hasher(self.last_batch_events, Default::default()),
            new_salts: HashMap::with_capacity_and_hasher(self.last_batch_salts, Default::default()),
            writes: Vec::new(),
        }
    }

    /// What a stream's head was staged, prepared or made durable as, newest first: the
    /// store lags behind the batches being written.
    fn head_of(&mut self, batch: &Batch, stream: &StreamId) -> Result<StreamHead, StoreError> {
        // Asked first: most staged streams are new, and a stream the known set lacks is in
        // no batch, overlay or column family (each of those adds to the set), so the
        // lookups below, misses in tables of up to ~262k entries, are skipped.
        if !self.known.may_have_stream(stream) {
            return Ok(StreamHead::default());
        }
        let pending = || self.pending.iter().rev().find_map(|p| p.heads.get(stream));
        if let Some(h) = batch.heads.get(stream).or_else(pending) {
            return Ok(*h);
        }
        if let Some(h) = self.store.heads.get(&self.store, stream.as_str())? {
            return Ok(h);
        }
        self.store.column_head(stream)
    }

    /// The subject's salt: cached, stored, or new (then written with the batch, indexed by
    /// `seq`, the event that asks for it).
    fn salt_for(&mut self, batch: &mut Batch, subject: &str, seq: Seq) -> Result<Salt, StoreError> {
        // As in `head_of`: a subject the known set lacks has no salt anywhere yet.
        if self.known.may_have_subject(subject)
            && let Some(salt) = self.existing_salt(batch, subject)?
        {
            return Ok(salt);
        }
        let mut salt: Salt = [0; 32];
        self.rng.fill_bytes(&mut salt);
        self.known.add_subject(subject);
        batch.new_salts.insert(subject.to_string(), (salt, seq));
        Ok(salt)
    }

    /// The subject's salt if one was staged, prepared or stored before.
    fn existing_salt(&mut self, batch: &Batch, subject: &str) -> Result<Option<Salt>, StoreError> {
        let pending = || self.pending.iter().rev().find_map(|p| p.salts.get(subject));
        if let Some((salt, _)) = batch.new_salts.get(subject).or_else(pending) {
            return Ok(Some(*salt));
        }
        if let Some(salt) = self.salts.get(subject) {
            return Ok(Some(*salt));
        }
        if let Some((salt, _)) = self.store.salts.get(&self.store, subject)? {
            return Ok(Some(salt));
        }
        let Some(salt) = self.store.column_salt(subject)? else { return Ok(None) };
        if self.salts.len() >= SALTS_CACHE_MAX {
            self.salts.clear();
        }
        self.salts.insert(subject.to_string(), salt);
        Ok(Some(salt))
    }

    /// Stages one command's appends into `batch`: all of them or, on error, none.
    pub fn stage(
        &mut self,
        batch: &mut Batch,
        meta: &Metadata,
        appends: Vec<StreamAppend>,
    ) -> Result<Staged, AppendError> {
        let mut heads = Vec::with_capacity(appends.len());
        // A command may append twice to one stream; its second part sees its first. (A few
        // appends per command: a scan beats a map.)
        let mut local: Vec<(&StreamId, u64)> = Vec::with_capacity(appends.len());
        for append in &appends {
            let len = append.stream.as_str().len();
            if len == 0 || len > MAX_STREAM_ID_BYTES {
                return Err(AppendError::InvalidStreamId(len));
            }
            let head = self.head_of(batch, &append.stream)?;
            let seen = local.iter_mut().find(|(s, _)| *s == &append.stream);
            let actual = seen.as_ref().map_or(head.version, |(_, v)| *v);
            if !append.expected.admits(actual) {
                return Err(VersionConflict { stream: append.stream.clone(), expected: append.expected, actual }.into());
            }
            heads.push(head);
            let after = actual + append.events.len() as u64;
            match seen {
                Some((_, v)) => *v = after,
                None => local.push((&append.stream, after)),
            }
        }
        // Salts before anything is staged: a failed lookup must leave the batch untouched.
        let mut salts = Vec::new();
        for (i, data) in appends.iter().flat_map(|a| &a.events).enumerate() {
            let seq = Seq(batch.next_seq().0 + i as u64);
            salts.push(match &data.subject {
                Some(subject) => Some(self.salt_for(batch, subject, seq)?),
                None => None,
            });
        }
        let mut salts = salts.into_iter();
        let first_seq = batch.next_seq();
        let mut stream_versions = Vec::with_capacity(appends.len());
        for (append, head) in appends.into_iter().zip(heads) {
            // Within one command the same stream continues from its own staged head.
            let mut head = batch.heads.get(&append.stream).copied().unwrap_or(head);
            // A stream with a head is in `known` from its loader or since it began.
            if head.version == 0 {
                self.known.add_stream(append.stream.as_str());
            }
            for data in &append.events {
                let seq = batch.next_seq();
                let env = EnvelopeRef {
                    seq,
                    stream: append.stream.as_str(),
                    stream_version: head.version + 1,
                    prev_seq: (head.version > 0).then_some(head.last_seq),
                    event_type: &data.event_type,
                    schema_version: data.schema_version,
                    recorded_at: batch.recorded_at,
                    meta: meta.view(),
                    subject: data.subject.as_deref(),
                    payload: &data.payload,
                };
                let leaf = self.leaf_of(&env, salts.next().expect("one salt slot per event").as_ref());
                self.push_event(batch, &env, leaf);
                head = StreamHead { version: head.version + 1, last_seq: seq };
            }
            stream_versions.push(head.version);
            batch.heads.insert(append.stream, head);
        }
        let last_seq = Seq(batch.next_seq().0 - 1);
        Ok(Staged { first_seq, last_seq, stream_versions })
    }

    /// Stages an event exactly as the primary recorded it (a read replica following the
    /// primary's stream): its seq must be the next one, it must continue its stream, and a
    /// public event's leaf is recomputed and must equal `leaf`. Personal events are taken
    /// with the primary's leaf: their salts never leave the primary (R9).
    pub fn replicate(&mut self, batch: &mut Batch, env: Envelope, leaf: Hash) -> Result<(), ReplicateError> {
        let expected = batch.next_seq().0;
        if env.seq.0 != expected {
            return Err(ReplicateError::Gap { expected, received: env.seq.0 });
        }
        let head = self.head_of(batch, &env.stream)?;
        let prev = (head.version > 0).then_some(head.last_seq);
        if env.stream_version != head.version + 1 || env.prev_seq != prev {
            return Err(ReplicateError::StreamMismatch {
                seq: env.seq.0,
                stream: env.stream.clone(),
                head: head.version,
                last: head.last_seq.0,
                version: env.stream_version,
                prev: env.prev_seq.map(|s| s.0),
            });
        }
        if env.subject.is_none() && self.leaf_of(&env.view(), None) != leaf {
            return Err(ReplicateError::LeafMismatch { seq: env.seq.0 });
        }
        self.push_event(batch, &env.view(), leaf);
        if env.stream_version == 1 {
            self.known.add_stream(env.stream.as_str());
        }
        batch.heads.insert(env.stream, StreamHead { version: env.stream_version, last_seq: env.seq });
        Ok(())
    }

    /// The event's Merkle leaf hash, its bytes built in the reused buffer.
    fn leaf_of(&mut self, env: &EnvelopeRef<'_>, salt: Option<&Salt>) -> Hash {
        self.scratch.clear();
        env.write_leaf_bytes(salt, &mut self.scratch);
        merkle::hash_leaf(&self.scratch)
    }

    /// Adds one event, encoded, and its leaf to the batch.
    fn push_event(&mut self, batch: &mut Batch, env: &EnvelopeRef<'_>, leaf: Hash) {
        if batch.bundle.is_full() {
            batch.bundle.write_into(&mut batch.wb, self.store.cf(Cf::Bundles));
        }
        batch.bundle.push(env);
        batch.leaves.push(leaf);
    }

    /// Writes the whole batch — events, stream heads, Merkle nodes, tree head and extra
    /// writes — as one RocksDB `WriteBatch` with `sync=true`.
    ///
    /// `Ok` means every event in it is on disk, has its seq and is in the tree. `Err` means
    /// nothing of the batch was written and the writer is as it was before the batch.
    pub fn commit(&mut self, batch: Batch) -> Result<Committed, StoreError> {
        let prepared = self.prepare(batch);
        match self.store.write(prepared) {
            Ok(committed) => {
                self.durable(committed.last_seq);
                Ok(committed)
            }
            Err(e) => {
                self.rewind();
                Err(e)
            }
        }
    }

    /// Turns the batch into one `WriteBatch` — events, stream heads, Merkle nodes, tree head
    /// and extra writes — and moves the writer past it: the next batch can be staged on top
    /// of it before it is written. Batches must then be written in the order prepared.
    pub fn prepare(&mut self, batch: Batch) -> Prepared {
        assert_eq!(batch.first_seq, self.next_seq, "a batch is prepared by the writer that began it, in order");
        assert_eq!(self.tree.size() + 1, self.next_seq, "tree and log agree before the batch");
        self.last_batch_events = batch.leaves.len();
        self.last_batch_salts = batch.new_salts.len();
        let store = &self.store;
        let merkle_cf = store.cf(Cf::Merkle);
        let mut tree = self.tree.clone();
        let mut tile: Vec<u8> = self.right_tile.concat();
        let mut wb = batch.wb;
        let mut bundle = batch.bundle;
        bundle.write_into(&mut wb, store.cf(Cf::Bundles));
        for &leaf in &batch.leaves {
            tree.append(leaf, |id, hash| {
                if id.level >= cf::TILE_HEIGHT {
                    wb.put_cf(merkle_cf, cf::node_key(id.level, id.index), hash);
                }
            });
            tile.extend_from_slice(&leaf);
            if tile.len() as u64 == cf::TILE_WIDTH * 32 {
                wb.put_cf(merkle_cf, cf::tile_key((tree.size() - 1) / cf::TILE_WIDTH), &tile);
                tile.clear();
            }
        }
        if !tile.is_empty() {
            wb.put_cf(merkle_cf, cf::tile_key(tree.size() / cf::TILE_WIDTH), &tile);
        }
        // The subject → salt entries are written behind the log (see `lagging`).
        let index_cf = store.cf(Cf::SaltIndex);
        for (salt, seq) in batch.new_salts.values() {
            wb.put_cf(index_cf, cf::seq_key(seq.0), salt);
        }
        for (cf, key, value) in &batch.writes {
            match value {
                Some(v) => wb.put_cf(store.cf(*cf), key, v),
                None => wb.delete_cf(store.cf(*cf), key),
            }
        }
        let head = TreeHead { size: tree.size(), root: tree.root() };
        let mut head_bytes = [0u8; 40];
        head_bytes[..8].copy_from_slice(&head.size.to_be_bytes());
        head_bytes[8..].copy_from_slice(&head.root);
        wb.put_cf(store.cf(Cf::Meta), META_TREE, head_bytes);
        self.last_batch_bytes = wb.size_in_bytes();

        let right_tile: Vec<Hash> = tile.chunks_exact(32).map(|c| c.try_into().expect("32-byte chunks")).collect();
        self.pending.push_back(Pending {
            last_seq: head.size,
            heads: batch.heads,
            salts: batch.new_salts,
            tree_before: std::mem::replace(&mut self.tree, tree),
            tile_before: std::mem::replace(&mut self.right_tile, right_tile),
        });
        self.next_seq = head.size + 1;
        Prepared { wb, head }
    }

    /// Every prepared batch up to `last` is durable: its stream heads and new salts join the
    /// store's overlays (see `lagging`), and it becomes the point a rewind goes back to.
    pub fn durable(&mut self, last: Seq) {
        let mut durable = None;
        while let Some(p) = self.pending.front()
            && p.last_seq <= last.0
        {
            let p = self.pending.pop_front().expect("front exists");
            durable = Some(p.last_seq);
            self.store.heads.extend(p.heads.into_iter().map(|(stream, head)| (stream.0, head)));
            self.store.salts.extend(p.salts);
        }
        if let Some(durable) = durable {
            self.heads_index.durable(&self.store, durable);
            self.salts_index.durable(&self.store, durable);
        }
    }

    /// Writes stream heads and salts out to their column families every `events` events
    /// instead of every 262,144 (tests make it small to cross write-outs).
    pub fn set_index_every(&mut self, events: u64) {
        self.heads_index.set_every(events);
        self.salts_index.set_every(events);
    }

    /// A write failed: forgets every batch prepared after the last durable one (a failed
    /// write's successors were prepared on top of it and must not be written either).
    pub fn rewind(&mut self) {
        if let Some(oldest) = self.pending.pop_front() {
            self.tree = oldest.tree_before;
            self.right_tile = oldest.tile_before;
        }
        self.pending.clear();
        self.next_seq = self.tree.size() + 1;
    }
}
