//! `kyso-replay verify`: recompute every leaf and the tree from the events alone and compare
//! with what the store claims and with every checkpoint the registry signed. Works on a
//! copy of a data dir, opened read-only.
//!
//! The signed checkpoints are what make a rewrite visible: someone who edits an event and
//! recomputes every leaf and node after it gets a self-consistent store, but cannot produce
//! the registry's signature on the new roots, and the old signed roots no longer match.

use event_store::checkpoint::{CheckpointError, VerifierKey};
use event_store::merkle::{CompactRange, Hash, hash_leaf};
use event_store::pipeline::{Handoff, two_stage};
use event_store::verify::{ProofError, verify_consistency};
use event_store::{EnvelopeRef, EventStore, Salt, Seq, StoreError, TreeHead};
use std::hash::BuildHasher;

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

/// Stored envelopes (raw bytes) with their stored leaves and their subjects' salts, in seq
/// order.
struct Chunk {
    first_seq: u64,
    events: Vec<Box<[u8]>>,
    stored: Vec<Hash>,
    /// One per event with a subject, in order; `None`: erased.
    salts: Vec<Option<Salt>>,
}

const CHUNK: usize = 4096;

/// The reading stage: raw iteration, and the salts of each chunk's subjects in one batched
/// read, so the other core only decodes and hashes.
fn read_chunks(store: &EventStore, handoff: &Handoff<Chunk, VerifyError>) -> Result<(), VerifyError> {
    let mut leaves = store.stored_leaves();
    let new_chunk = |first_seq| match handoff.spare() {
        Some(mut chunk) => {
            chunk.events.clear();
            chunk.stored.clear();
            chunk.salts.clear();
            Chunk { first_seq, ..chunk }
        }
        None => {
            Chunk { first_seq, events: Vec::with_capacity(CHUNK), stored: Vec::with_capacity(CHUNK), salts: Vec::new() }
        }
    };
    let mut salts = SaltFinder::new(store);
    let mut chunk = new_chunk(1);
    let mut seq = 1u64;
    // The cursor checks the seqs are contiguous from 1.
    let mut events = store.cursor(Seq(1));
    let mut more = true;
    while more {
        while chunk.events.len() < CHUNK {
            let Some(item) = events.next() else {
                more = false;
                break;
            };
            let (_, value) = item?;
            chunk.stored.push(leaves.next().ok_or(VerifyError::LeafMismatch { seq: Seq(seq) })??);
            chunk.events.push(value.into());
            seq += 1;
        }
        if chunk.events.is_empty() {
            break;
        }
        // Undecodable envelopes are reported by the hashing stage, with their seq.
        salts.fill(&mut chunk)?;
        if !handoff.send(std::mem::replace(&mut chunk, new_chunk(seq))) {
            return Ok(());
        }
    }
    Ok(())
}

/// Salts of subjects seen lately in this pass, in a direct-mapped table of this many slots
/// (a newer subject takes an older one's slot): a citizen's later events usually follow
/// their first within hours. No allocation per subject, unlike a map of millions of
/// strings, which cost more than the point lookups it saved (profiled).
const RECENT_SLOTS: usize = 1 << 18;
/// Subjects longer than this (none today: subjects are CCCDs) are looked up every time.
const RECENT_KEY_BYTES: usize = 16;

/// A subject's bytes zero-padded, their length, and their salt.
type RecentSlot = Option<([u8; RECENT_KEY_BYTES], u8, Salt)>;
type SaltIndex<'a> = Box<dyn Iterator<Item = Result<(Seq, Salt), StoreError>> + 'a>;

/// Finds the salt of every personal event, cheapest first: the salt index read in step
/// with the log (the event that created the salt), then the salts of subjects seen lately
/// in this pass, then one batched point lookup for the rest.
struct SaltFinder<'a> {
    store: &'a EventStore,
    by_first_seq: std::iter::Peekable<SaltIndex<'a>>,
    recent: Vec<RecentSlot>,
    hasher: foldhash::fast::RandomState,
}

impl<'a> SaltFinder<'a> {
    fn new(store: &'a EventStore) -> Self {
        let index: SaltIndex<'a> = Box::new(store.salts_by_first_seq());
        SaltFinder {
            store,
            by_first_seq: index.peekable(),
            recent: vec![None; RECENT_SLOTS],
            hasher: Default::default(),
        }
    }

    /// The subject's slot, and its key there.
    fn slot(&self, subject: &str) -> Option<(usize, [u8; RECENT_KEY_BYTES], u8)> {
        let bytes = subject.as_bytes();
        let mut key = [0u8; RECENT_KEY_BYTES];
        key.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some((self.hasher.hash_one(bytes) as usize % RECENT_SLOTS, key, bytes.len() as u8))
    }

    fn recall(&self, subject: &str) -> Option<Salt> {
        let (slot, key, len) = self.slot(subject)?;
        self.recent[slot].filter(|(k, l, _)| (*k, *l) == (key, len)).map(|(_, _, salt)| salt)
    }

    fn remember(&mut self, subject: &str, salt: Salt) {
        if let Some((slot, key, len)) = self.slot(subject) {
            self.recent[slot] = Some((key, len, salt));
        }
    }

    /// One salt (or `None`: erased) per personal event of the chunk, in order.
    fn fill(&mut self, chunk: &mut Chunk) -> Result<(), VerifyError> {
        let mut missing: Vec<(usize, &str)> = Vec::new();
        for (offset, bytes) in chunk.events.iter().enumerate() {
            let seq = Seq(chunk.first_seq + offset as u64);
            let Some(subject) = EnvelopeRef::decode(bytes).ok().and_then(|e| e.subject) else { continue };
            while self.by_first_seq.next_if(|entry| entry.as_ref().is_ok_and(|(at, _)| *at < seq)).is_some() {}
            let salt = match self.by_first_seq.next_if(|entry| entry.as_ref().map_or(true, |(at, _)| *at == seq)) {
                Some(entry) => {
                    let salt = entry?.1;
                    self.remember(subject, salt);
                    Some(salt)
                }
                None => self.recall(subject),
            };
            if salt.is_none() {
                missing.push((chunk.salts.len(), subject));
            }
            chunk.salts.push(salt);
        }
        let subjects: Vec<&str> = missing.iter().map(|(_, subject)| *subject).collect();
        for ((slot, subject), salt) in missing.iter().zip(self.store.salts(&subjects)?) {
            if let Some(salt) = salt {
                self.remember(subject, salt);
            }
            chunk.salts[*slot] = salt;
        }
        Ok(())
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
    // Two stages on two cores: one thread reads raw envelopes, stored leaves and salts; this
    // one decodes the envelopes without copying, recomputes each leaf and extends the tree.
    let mut leaf_bytes = Vec::with_capacity(512);
    two_stage(
        |handoff| read_chunks(store, handoff),
        |chunk| {
            let mut salts = chunk.salts.iter();
            for (offset, (bytes, stored)) in chunk.events.iter().zip(&chunk.stored).enumerate() {
                let seq = Seq(chunk.first_seq + offset as u64);
                let envelope = EnvelopeRef::decode_at(seq, bytes)?;
                let salt = match envelope.subject {
                    None => None,
                    Some(_) => match salts.next().expect("the reader fetched one salt per subject") {
                        Some(salt) => Some(salt),
                        None => {
                            // Erased (R9): the stored leaf is all that is left of it.
                            erased += 1;
                            tree.append(*stored, |_, _| {});
                            check_at(&tree)?;
                            continue;
                        }
                    },
                };
                leaf_bytes.clear();
                envelope.write_leaf_bytes(salt, &mut leaf_bytes);
                if *stored != hash_leaf(&leaf_bytes) {
                    return Err(VerifyError::LeafMismatch { seq });
                }
                tree.append(*stored, |_, _| {});
                check_at(&tree)?;
            }
            progress(tree.size());
            Ok(())
        },
    )?;
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
