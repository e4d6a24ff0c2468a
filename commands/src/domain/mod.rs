//! The campaign's rules, pure: no tokio, no RocksDB, no clock, no randomness. Everything
//! here is a function of its arguments, so tests and auditors can replay it.

pub mod admin_units;
pub mod ca;
pub mod campaign;
pub mod cccd;
pub mod channel;
pub mod citizens;
pub mod command;
pub mod event;
pub mod interned;
pub mod legacy;
pub mod registry;
pub mod rejection;

pub use ca::{Ca, CaId, CaStatus};
pub use campaign::Campaign;
pub use cccd::Cccd;
pub use channel::{Channel, DemandMode, IssuanceStatus, Segment};
pub use command::{Command, RecordIssuance};
pub use event::{Event, IssuanceRecorded, Place, RefusalReason};
pub use registry::{Registry, apply, decide, refusal_event};
pub use rejection::Rejection;
