//! `kyso-replay verify`: recompute every leaf and the tree from the events alone and compare
//! with what the store claims and with every checkpoint the registry signed. Works on a
//! copy of a data dir, opened read-only.
//!
//! The signed checkpoints are what make a rewrite visible: someone who edits an event and
//! recomputes every leaf and node after it gets a self-consistent store, but cannot produce
//! the registry's signature on the new roots, and the old signed roots no longer match.

use event_store::checkpoint::{CheckpointError, VerifierKey};
use event_store::merkle::{CompactRange, Hash, hash_leaf};
use event_store::verify::{ProofError, verify_consistency};
use event_store::{Envelope, EventStore, Seq, StoreError, TreeHead};

/// What was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    pub events: u64,
    /// Events whose subject's salt was erased: their stored leaf is taken as is (it can no
    /// longer be recomputed, by design), and the tree above it is still checked.
    pub erased: u64,
    pub tree: TreeHead,
    /// Signed checkpoints checked (signature, root at their size, consistency in turn).
    pub checkpoints: u64,
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
    #[error("the checkpoint stored for tree size {size}: {source}")]
    BadCheckpoint { size: u64, source: CheckpointError },
    #[error("the checkpoint stored under tree size {key} states size {stated}: the checkpoint store was edited")]
    CheckpointMisfiled { key: u64, stated: u64 },
    #[error("the checkpoint stored for tree size {size} names log {found:?}, not {expected:?}")]
    WrongOrigin { size: u64, found: String, expected: String },
    #[error(
        "the signed checkpoint at tree size {size} does not match the log: events up to seq {size} were changed after it was signed"
    )]
    CheckpointMismatch { size: u64 },
    #[error(
        "a signed checkpoint covers {size} events but the log holds only {events}: events after seq {events} were dropped"
    )]
    CheckpointBeyondLog { size: u64, events: u64 },
    #[error("the stored tree is not consistent between checkpoints {from} and {to}: {source}")]
    Inconsistent { from: u64, to: u64, source: ProofError },
    #[error("the data dir holds signed checkpoints but no key was given to check them (pass --key)")]
    NoKey,
}

/// A checked checkpoint: its signature holds; its root is still to be compared.
struct Signed {
    size: u64,
    root: Hash,
}

fn signed_checkpoints(store: &EventStore, key: Option<&VerifierKey>) -> Result<Vec<Signed>, VerifyError> {
    let mut out = Vec::new();
    for item in store.checkpoints() {
        let (size, note) = item?;
        let key = key.ok_or(VerifyError::NoKey)?;
        let opened = key.open(&note).map_err(|source| VerifyError::BadCheckpoint { size, source })?;
        if opened.size != size {
            return Err(VerifyError::CheckpointMisfiled { key: size, stated: opened.size });
        }
        if opened.origin != key.name() {
            return Err(VerifyError::WrongOrigin { size, found: opened.origin, expected: key.name().to_string() });
        }
        out.push(Signed { size, root: opened.root });
    }
    Ok(out)
}

/// Envelopes with their stored leaves, in seq order.
struct Chunk {
    events: Vec<Envelope>,
    stored: Vec<Hash>,
}

const CHUNK: usize = 4096;

/// The reading stage: stops at the first error (sent on) or when the receiver is gone.
fn read_chunks(store: &EventStore, out: &std::sync::mpsc::SyncSender<Result<Chunk, VerifyError>>) {
    let mut leaves = store.stored_leaves();
    let mut chunk = Chunk { events: Vec::with_capacity(CHUNK), stored: Vec::with_capacity(CHUNK) };
    for envelope in store.read_from(Seq(1)) {
        let item = envelope.map_err(VerifyError::from).and_then(|envelope| {
            let stored = leaves.next().ok_or(VerifyError::LeafMismatch { seq: envelope.seq })??;
            Ok((envelope, stored))
        });
        match item {
            Ok((envelope, stored)) => {
                chunk.events.push(envelope);
                chunk.stored.push(stored);
            }
            Err(e) => {
                let _ = out.send(Err(e));
                return;
            }
        }
        if chunk.events.len() == CHUNK {
            let full = std::mem::replace(
                &mut chunk,
                Chunk { events: Vec::with_capacity(CHUNK), stored: Vec::with_capacity(CHUNK) },
            );
            if out.send(Ok(full)).is_err() {
                return;
            }
        }
    }
    if !chunk.events.is_empty() {
        let _ = out.send(Ok(chunk));
    }
}

/// Reads the whole log in seq order (streaming), recomputes each leaf from the event, checks
/// it against the stored leaf, checks the recomputed root against the stored tree head and
/// against every checkpoint signed by `key`, and the stored tree's consistency proofs
/// between successive checkpoints. `progress` is called with the number of events checked
/// so far, every few thousand.
pub fn verify_log(
    store: &EventStore,
    key: Option<&VerifierKey>,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, VerifyError> {
    let head = store.tree_head();
    let checkpoints = signed_checkpoints(store, key)?;
    let mut pending = checkpoints.iter().peekable();
    let mut check_at = |tree: &CompactRange| -> Result<(), VerifyError> {
        while let Some(cp) = pending.next_if(|cp| cp.size == tree.size()) {
            if cp.root != tree.root() {
                return Err(VerifyError::CheckpointMismatch { size: cp.size });
            }
        }
        Ok(())
    };
    let mut tree = CompactRange::new();
    check_at(&tree)?;
    let mut erased = 0;
    // Two stages on two cores: one thread reads and decodes envelopes and stored leaves,
    // this one fetches salts, recomputes leaves and extends the tree.
    std::thread::scope(|scope| -> Result<(), VerifyError> {
        let (chunks, received) = std::sync::mpsc::sync_channel::<Result<Chunk, VerifyError>>(4);
        scope.spawn(move || read_chunks(store, &chunks));
        for chunk in received {
            let chunk = chunk?;
            let subjects: Vec<&str> = chunk.events.iter().filter_map(|e| e.subject.as_deref()).collect();
            let mut salts = store.salts(&subjects)?.into_iter();
            for (envelope, stored) in chunk.events.iter().zip(&chunk.stored) {
                let leaf = match &envelope.subject {
                    None => hash_leaf(&envelope.leaf_bytes(None)),
                    Some(_) => match salts.next().expect("one salt per subject") {
                        Some(salt) => hash_leaf(&envelope.leaf_bytes(Some(&salt))),
                        None => {
                            erased += 1;
                            *stored
                        }
                    },
                };
                if *stored != leaf {
                    return Err(VerifyError::LeafMismatch { seq: envelope.seq });
                }
                tree.append(leaf, |_, _| {});
                check_at(&tree)?;
            }
            progress(tree.size());
        }
        Ok(())
    })?;
    progress(tree.size());
    if let Some(cp) = checkpoints.iter().find(|cp| cp.size > tree.size()) {
        return Err(VerifyError::CheckpointBeyondLog { size: cp.size, events: tree.size() });
    }
    if tree.size() != head.size {
        return Err(VerifyError::SizeMismatch { events: tree.size(), size: head.size });
    }
    if tree.root() != head.root {
        return Err(VerifyError::RootMismatch { computed: tree.root(), stored: head.root });
    }
    // The roots matched, so the leaves are right; this checks the stored interior nodes
    // that proofs are built from.
    for pair in checkpoints.windows(2) {
        let (from, to) = (&pair[0], &pair[1]);
        let proof = store.consistency_proof(from.size, to.size)?;
        verify_consistency(from.size, to.size, &from.root, &to.root, &proof)
            .map_err(|source| VerifyError::Inconsistent { from: from.size, to: to.size, source })?;
    }
    Ok(VerifyReport { events: tree.size(), erased, tree: head, checkpoints: checkpoints.len() as u64 })
}
