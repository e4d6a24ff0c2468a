//! `kyso-replay check-receipt`: a CA's receipt checked with the registry's key alone, and,
//! given a copy of the data dir, checked against the log as it is now.

use event_store::checkpoint::{CheckpointError, read_unsigned};
use event_store::receipt::{Receipt, ReceiptError, parse_hash};
use event_store::{EventStore, Seq, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReceiptCheckError {
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
    #[error("the receipt's checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the log holds {current} events; the receipt's checkpoint covered {size}: events were dropped")]
    LogShorter { size: u64, current: u64 },
    #[error("the log's leaf at seq {seq} is not the receipt's: the event was rewritten after the receipt")]
    LeafChanged { seq: u64 },
    #[error("the log's tree at size {size} no longer has the receipt's root: history up to seq {size} was rewritten")]
    TreeRewritten { size: u64 },
}

/// Whether the log still holds what the receipt proves: the same leaf at the same seq, and
/// the same tree at the receipt checkpoint's size. Checks no signature: run
/// [`Receipt::verify`] with the registry's key for that.
pub fn check_receipt_against(store: &EventStore, receipt: &Receipt) -> Result<(), ReceiptCheckError> {
    let signed = read_unsigned(&receipt.checkpoint)?;
    let current = store.tree_head().size;
    if signed.size > current || receipt.seq > current {
        return Err(ReceiptCheckError::LogShorter { size: signed.size.max(receipt.seq), current });
    }
    if store.leaf_hash(Seq(receipt.seq))? != parse_hash(&receipt.leaf_hash, "leaf hash")? {
        return Err(ReceiptCheckError::LeafChanged { seq: receipt.seq });
    }
    if store.root_at(signed.size)? != signed.root {
        return Err(ReceiptCheckError::TreeRewritten { size: signed.size });
    }
    Ok(())
}
