//! A CA's receipt: proof that the registry's log holds a given leaf at a given seq, under
//! a checkpoint the registry signed (R3). Checked with nothing but the registry's public key.

use crate::checkpoint::{CheckpointError, OpenedCheckpoint, VerifierKey};
use crate::merkle::Hash;
use crate::verify::{ProofError, verify_inclusion};
use serde::{Deserialize, Serialize};

/// Self-contained: the leaf, its inclusion proof, and the signed checkpoint it leads to.
/// Hashes are lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = FullReceipt)]
pub struct Receipt {
    pub seq: u64,
    pub leaf_hash: String,
    /// The signed note (C2SP tlog-checkpoint) of a tree that contains `seq`.
    pub checkpoint: String,
    pub proof: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("the receipt's checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("the receipt's {0} is not a 32-byte hex hash")]
    BadHash(&'static str),
    #[error("seq 0 does not exist: seqs start at 1")]
    SeqZero,
    #[error("the inclusion proof does not hold: {0}")]
    Proof(#[from] ProofError),
}

pub fn parse_hash(s: &str, what: &'static str) -> Result<Hash, ReceiptError> {
    hex::decode(s).ok().and_then(|b| b.try_into().ok()).ok_or(ReceiptError::BadHash(what))
}

impl Receipt {
    /// Checks the signature, then that the leaf is at `seq` in the signed tree.
    pub fn verify(&self, key: &VerifierKey) -> Result<OpenedCheckpoint, ReceiptError> {
        let checkpoint = key.open(&self.checkpoint)?;
        let leaf = parse_hash(&self.leaf_hash, "leaf hash")?;
        let proof = self.proof.iter().map(|h| parse_hash(h, "proof hash")).collect::<Result<Vec<_>, _>>()?;
        let index = self.seq.checked_sub(1).ok_or(ReceiptError::SeqZero)?;
        verify_inclusion(index, checkpoint.size, &leaf, &proof, &checkpoint.root)?;
        Ok(checkpoint)
    }
}
