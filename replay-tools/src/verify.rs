//! `kyso-replay verify`: recompute every leaf and the tree from the events alone and compare
//! with what the store claims. Works on a copy of a data dir, opened read-only.

use event_store::merkle::{CompactRange, Hash, hash_leaf};
use event_store::{EventStore, Seq, StoreError, TreeHead};

/// What was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    pub events: u64,
    /// Events whose subject's salt was erased: their stored leaf is taken as is (it can no
    /// longer be recomputed, by design), and the tree above it is still checked.
    pub erased: u64,
    pub tree: TreeHead,
}

/// The first thing found wrong. Each names where to look.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("seq {seq}: the stored Merkle leaf does not match the event (the event or its leaf was changed)")]
    LeafMismatch { seq: Seq },
    #[error("the log holds {events} events but the stored tree head says {size}")]
    SizeMismatch { events: u64, size: u64 },
    #[error(
        "the root recomputed from the events ({}) differs from the stored root ({})",
        hex::encode(computed),
        hex::encode(stored)
    )]
    RootMismatch { computed: Hash, stored: Hash },
}

/// Reads the whole log in seq order (streaming), recomputes each leaf from the event, checks
/// it against the stored leaf, and checks the recomputed root against the stored tree head.
/// `progress` is called with the number of events checked so far, every few thousand.
pub fn verify_log(store: &EventStore, mut progress: impl FnMut(u64)) -> Result<VerifyReport, VerifyError> {
    let head = store.tree_head();
    let mut tree = CompactRange::new();
    let mut erased = 0;
    let mut stored_leaves = store.stored_leaves();
    for envelope in store.read_from(Seq(1)) {
        let envelope = envelope?;
        let seq = envelope.seq;
        let stored: Hash = stored_leaves.next().ok_or(VerifyError::LeafMismatch { seq })??;
        let salt = match &envelope.subject {
            None => None,
            Some(subject) => match store.salt(subject)? {
                Some(salt) => Some(salt),
                None => {
                    erased += 1;
                    tree.append(stored, |_, _| {});
                    continue;
                }
            },
        };
        let leaf = hash_leaf(&envelope.leaf_bytes(salt.as_ref()));
        if stored != leaf {
            return Err(VerifyError::LeafMismatch { seq });
        }
        tree.append(leaf, |_, _| {});
        if tree.size().is_multiple_of(4096) {
            progress(tree.size());
        }
    }
    progress(tree.size());
    if tree.size() != head.size {
        return Err(VerifyError::SizeMismatch { events: tree.size(), size: head.size });
    }
    if tree.root() != head.root {
        return Err(VerifyError::RootMismatch { computed: tree.root(), stored: head.root });
    }
    Ok(VerifyReport { events: tree.size(), erased, tree: head })
}
