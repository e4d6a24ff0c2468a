//! The RocksDB map: every column family kyso writes, in one place. Integer parts of keys
//! are big-endian so that byte order is numeric order.

/// A column family of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cf {
    /// `seq (u64) → Envelope` (postcard): the log as formats 1–6 wrote it, one event per
    /// key. Nothing is written here any more; the events before the first of
    /// [`Cf::Bundles`] are read from here.
    Events,
    /// `first seq (u64) → bundle`: the log since format 7, up to [`BUNDLE_EVENTS`]
    /// consecutive events to a key, each as its length (u32, little-endian) ‖ `Envelope`
    /// (postcard), bundles never spanning a group commit. One memtable insert and one
    /// key in the table files per bundle instead of per event (Tessera keeps its entries
    /// the same way); a point read seeks to the bundle at or before the seq and skips to it.
    Bundles,
    /// `len (u16) ‖ stream id → version (u64) ‖ last seq (u64)`: each aggregate's head. A
    /// stream's history is its events' `prev_seq` chain back from here. Since format 4 it
    /// lags the log: the heads after [`META_HEADS`]'s seq are in memory and are written out
    /// in bulk as sorted table files (see `lagging`), never through the memtable.
    Streams,
    /// The Merkle tree, stored as Tessera does: leaf hashes 256 to a key (`0xFF ‖ tile (u64)
    /// → up to 256 × 32 bytes`, the rightmost tile rewritten as it fills), and every complete
    /// perfect subtree from level 8 up as `level (u8) ‖ index (u64) → hash`. Levels 1–7 are
    /// recomputed from a tile when a proof needs them. One key per 256 events instead of two
    /// per event keeps the Merkle tree off the write path's critical cost.
    Merkle,
    /// Format version, tree head, cursors and other single records.
    Meta,
    /// Current aggregate state that `decide` needs, so start-up does not replay the world.
    State,
    /// `key → stored response`: retried commands answer from here (written in the same batch).
    Idempotency,
    /// Inline projections, exact and updated in the same batch as their events.
    Projections,
    /// `due_at (i64) ‖ id → ()`: what the scheduler must act on, in due order.
    Deadlines,
    /// Per-citizen salts for the commitments in Merkle leaves; erasing one forgets a citizen.
    /// `subject → salt (32) ‖ first seq (u64)`: the seq of the event that created it. Since
    /// format 5 it lags the log like [`Cf::Streams`]: the salts after [`META_SALTS`]'s seq
    /// are in memory, and read back from [`Cf::SaltIndex`] at open. (Format-1 stores have
    /// `subject → salt` alone; readers take both.)
    Salts,
    /// `first seq (u64) → salt (32)`: each salt again, under the seq of the event that
    /// created it. Verifying the log reads it in step with the events instead of a random
    /// point lookup per subject. Format-2 stores kept it inside [`Cf::Salts`] under
    /// `0xFF ‖ seq`, where it forced that column family's memtable to stay ordered; opening
    /// one for writing moves it here.
    SaltIndex,
}

impl Cf {
    pub const ALL: [Cf; 11] = [
        Cf::Events,
        Cf::Bundles,
        Cf::Streams,
        Cf::Merkle,
        Cf::Meta,
        Cf::State,
        Cf::Idempotency,
        Cf::Projections,
        Cf::Deadlines,
        Cf::Salts,
        Cf::SaltIndex,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Events => "events",
            Cf::Bundles => "event_bundles",
            Cf::Streams => "streams",
            Cf::Merkle => "merkle",
            Cf::Meta => "meta",
            Cf::State => "state",
            Cf::Idempotency => "idempotency",
            Cf::Projections => "projections",
            Cf::Deadlines => "deadlines",
            Cf::Salts => "salts",
            Cf::SaltIndex => "salt_index",
        }
    }
}

pub(crate) const SEQ_KEY_BYTES: usize = 8;
const _: () = assert!(SEQ_KEY_BYTES == std::mem::size_of::<u64>()); // big-endian u64: byte order = seq order

pub(crate) fn seq_key(seq: u64) -> [u8; SEQ_KEY_BYTES] {
    seq.to_be_bytes()
}

/// Events per [`Cf::Bundles`] value at most: a point read copies one value and skips up to
/// this many entries.
pub(crate) const BUNDLE_EVENTS: usize = 64;
/// Each event in a bundle is preceded by its length, a little-endian u32.
pub(crate) const BUNDLE_LEN_BYTES: usize = 4;

/// A stream head's key starts with the id's length, a big-endian u16.
pub(crate) const STREAM_LEN_BYTES: usize = 2;
const _: () = assert!(STREAM_LEN_BYTES == std::mem::size_of::<u16>());

pub(crate) fn stream_prefix(stream: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(STREAM_LEN_BYTES + stream.len() + 8);
    let len = u16::try_from(stream.len()).expect("stream ids are bounded by MAX_STREAM_ID_BYTES");
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(stream.as_bytes());
    key
}

pub(crate) fn node_key(level: u8, index: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = level;
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

/// Leaves per tile is `2^TILE_HEIGHT`; nodes from this level up are stored one per key.
pub(crate) const TILE_HEIGHT: u8 = 8;
pub(crate) const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// Tile keys start with a byte no level (≤ 64) can have.
pub(crate) const TILE_PREFIX: u8 = 0xFF;

pub(crate) fn tile_key(tile: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = TILE_PREFIX;
    key[1..].copy_from_slice(&tile.to_be_bytes());
    key
}

/// Format 2 kept the salt index in [`Cf::Salts`] under this byte (no UTF-8 subject has it).
pub(crate) const LEGACY_SALT_INDEX_PREFIX: u8 = 0xFF;

pub(crate) const META_FORMAT: &[u8] = b"format";
/// `size (u64) ‖ root (32 bytes)`, written in every batch.
pub(crate) const META_TREE: &[u8] = b"tree";
/// `seq (u64)`: [`Cf::Streams`] holds every stream's head as of this seq (format 4 on).
pub(crate) const META_HEADS: &[u8] = b"heads";
/// `seq (u64)`: [`Cf::Salts`] holds every subject's salt as of this seq (format 5 on).
pub(crate) const META_SALTS: &[u8] = b"salts";
/// `ckpt/ ‖ size (u64) → signed note`: every signed checkpoint, kept so older ones stay
/// retrievable and auditors can check consistency between successive ones.
pub(crate) const META_CHECKPOINT_PREFIX: &[u8] = b"ckpt/";

pub(crate) fn checkpoint_key(size: u64) -> Vec<u8> {
    let mut key = META_CHECKPOINT_PREFIX.to_vec();
    key.extend_from_slice(&size.to_be_bytes());
    key
}
