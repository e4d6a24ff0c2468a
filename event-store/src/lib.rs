//! kyso's durable log.
//!
//! - [`EventStore`] / [`LogWriter`]: envelopes in RocksDB, one synced `WriteBatch` per group
//!   commit, optimistic concurrency per stream, streaming reads.
//! - [`merkle`]: the RFC 6962 tree over the log, extended in the same batch as the events.
//! - [`checkpoint`]: signed tree heads (C2SP signed notes) and the registry's Ed25519 key.
//! - [`receipt`]: a CA's self-contained proof that its event is in the signed log.
//! - [`verify`]: proof checks with no storage code, for auditors and third parties.
//! - [`pipeline`]: two stages on two cores for passes over the whole log.

mod bundle;
pub mod cf;
pub mod checkpoint;
mod envelope;
mod error;
mod known;
mod lagging;
pub mod merkle;
pub mod pipeline;
pub mod receipt;
mod store;
pub mod verify;

pub use bundle::LogCursor;
pub use cf::Cf;
pub use envelope::{Envelope, EnvelopeRef, Metadata, MetadataRef, RegistryTime, Salt, Seq, StreamId};
pub use error::{StoreError, VersionConflict};
pub use store::{
    AppendError, AsideOp, Batch, Committed, EventData, EventIter, EventStore, ExpectedVersion, FORMAT_VERSION,
    LogWriter, MAX_STREAM_ID_BYTES, Prepared, ReplicateError, Staged, StreamAppend, StreamHead, TreeHead,
};
