//! kyso's durable log.
//!
//! - [`EventStore`] / [`LogWriter`]: envelopes in RocksDB, one synced `WriteBatch` per group
//!   commit, optimistic concurrency per stream, streaming reads.
//! - [`merkle`]: the RFC 6962 tree over the log, extended in the same batch as the events.
//! - [`verify`]: proof checks with no storage code, for auditors and third parties.

pub mod cf;
mod envelope;
mod error;
pub mod merkle;
mod store;
pub mod verify;

pub use cf::Cf;
pub use envelope::{Envelope, Metadata, RegistryTime, Salt, Seq, StreamId};
pub use error::{StoreError, VersionConflict};
pub use store::{
    AppendError, AsideOp, Batch, Committed, EventData, EventIter, EventStore, ExpectedVersion, FORMAT_VERSION,
    LogWriter, MAX_STREAM_ID_BYTES, Staged, StreamAppend, StreamHead, TreeHead,
};
