use crate::envelope::{Seq, StreamId};
use crate::merkle::NodeId;

/// What a caller of the store can run into. `retryable()` says whether trying again may help.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The disk or RocksDB failed; nothing of the failed write is visible. (RocksDB's
    /// message: its error type cannot be built outside it, and fault injection needs one.)
    #[error("storage error: {0}")]
    Io(String),
    /// Bytes on disk are not what this code wrote. Not retryable: restore or investigate.
    #[error("corrupt event at seq {seq}: {reason}")]
    Corrupt { seq: Seq, reason: String },
    #[error("corrupt store metadata: {0}")]
    CorruptMeta(String),
    #[error("missing Merkle node level {} index {}: the tree and the log disagree", .0.level, .0.index)]
    MissingNode(NodeId),
    #[error(
        "the data dir was written by a newer kyso (format {found}, this build reads up to {supported}); upgrade kyso"
    )]
    NewerFormat { found: u32, supported: u32 },
    #[error("no kyso store at {0}; run `kyso init --data-dir {0}` or start `kyso serve`, which creates one")]
    NotFound(String),
    #[error("seq {seq} is beyond the end of the log (last seq {last})")]
    SeqOutOfRange { seq: u64, last: u64 },
    #[error("tree size {size} is beyond the current tree ({current})")]
    SizeOutOfRange { size: u64, current: u64 },
}

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        StoreError::Io(e.into_string())
    }
}

impl StoreError {
    /// Whether the same request may succeed later (e.g. once disk space returns).
    pub fn retryable(&self) -> bool {
        matches!(self, StoreError::Io(_))
    }
}

/// Optimistic concurrency: the stream was not at the version the command expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream {stream} is at version {actual}, but the command expected {expected}")]
pub struct VersionConflict {
    pub stream: StreamId,
    pub expected: crate::ExpectedVersion,
    pub actual: u64,
}
