//! Auditors' tools over a kyso data dir, usable offline. The `kyso-replay` binary is a thin
//! shell over these functions, and the crash tests call the very same ones.

pub mod verify;

pub use verify::{VerifyError, VerifyReport, verify_log};
