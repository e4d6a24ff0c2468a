//! Read models folded from the kyso log. Each is rebuildable from seq 1 with the same code
//! that keeps it live, so a number on a report can always be re-derived from events.
//!
//! - [`citizen`]: the per-citizen issuance view, rendered from the writer's registry and
//!   never stored, so a lookup sees the write that was just acknowledged (R2).
//! - [`directory`]: CAs and field staff, **inline**: written in the sequencer's own batch,
//!   so a revoked badge fails its QR check the moment the revocation is acknowledged (R11).
//! - [`counts`], [`compliance`], [`demands`], [`audit`]: folds that follow the log
//!   asynchronously ([`follower`]), each with a checkpoint stored atomically with its data.
//! - [`history`]: any fold as it was at a seq or a time.

pub mod audit;
pub mod citizen;
pub mod compliance;
pub mod counts;
pub mod demands;
pub mod directory;
pub mod erasure;
pub mod fold;
pub mod follower;
pub mod history;

pub use fold::{Ctx, Decoded, Fold, KeyOut};

/// Stored `(key, value)` pairs in key order: what an inline projection writes, and what its
/// rebuild is compared with.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Entries written per batch when an inline projection is re-rendered: bounded memory per
/// write for a large directory.
const RERENDER_CHUNK: usize = 50_000;

/// Start-up of an inline projection kept in `projections`: if the version stored under
/// `version_key` is not `version`, clear `prefixes` and write `render()`'s entries, the
/// version last, so a crash half-way leaves it unset and the next start redoes the work.
/// Returns whether it re-rendered.
pub(crate) fn reopen_inline(
    store: &event_store::EventStore,
    version_key: &[u8],
    version: u32,
    prefixes: &[&[u8]],
    render: impl FnOnce() -> Entries,
) -> Result<bool, event_store::StoreError> {
    use event_store::{AsideOp, Cf};
    if store.get(Cf::Projections, version_key)?.as_deref() == Some(&version.to_be_bytes()[..]) {
        return Ok(false);
    }
    store.write_aside(Cf::Projections, prefixes.iter().map(|p| AsideOp::DeletePrefix(p.to_vec())))?;
    for chunk in render().chunks(RERENDER_CHUNK) {
        store.write_aside(Cf::Projections, chunk.iter().map(|(k, v)| AsideOp::Put(k.clone(), v.clone())))?;
    }
    store.write_aside(Cf::Projections, [AsideOp::Put(version_key.to_vec(), version.to_be_bytes().to_vec())])?;
    Ok(true)
}

/// Every entry stored in `projections` under `prefixes`, in key order.
pub fn stored_entries(store: &event_store::EventStore, prefixes: &[&[u8]]) -> Result<Entries, event_store::StoreError> {
    let mut all = Entries::new();
    for prefix in prefixes {
        for kv in store.scan_prefix(event_store::Cf::Projections, prefix) {
            let (k, v) = kv?;
            all.push((k.to_vec(), v.to_vec()));
        }
    }
    all.sort_unstable();
    Ok(all)
}
pub use follower::{Follower, Live, Projections, RebuildProgress};
