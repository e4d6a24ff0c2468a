//! Auditors' tools over a kyso data dir, usable offline. The `kyso-replay` binary is a thin
//! shell over these functions, and the tests call the very same ones.

pub mod dispute;
pub mod export;
pub mod receipt;
pub mod report;
pub mod verify;

pub use receipt::{ReceiptCheckError, check_receipt_against};
pub use verify::{VerifyError, VerifyReport, verify_log};
