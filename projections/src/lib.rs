//! Read models folded from the kyso log. Each is rebuildable from seq 1 with the same code
//! that keeps it live, so a number on a report can always be re-derived from events.
//!
//! - [`citizen`]: the per-citizen issuance view, **inline**: written in the sequencer's own
//!   batch, so a lookup sees the write that was just acknowledged (R2).
//! - [`counts`], [`compliance`], [`demands`], [`audit`]: folds that follow the log
//!   asynchronously ([`follower`]), each with a checkpoint stored atomically with its data.
//! - [`history`]: any fold as it was at a seq or a time.

pub mod audit;
pub mod citizen;
pub mod compliance;
pub mod counts;
pub mod demands;
pub mod directory;
pub mod fold;
pub mod follower;
pub mod history;

pub use fold::{Ctx, Decoded, Fold, KeyOut};

/// Stored `(key, value)` pairs in key order: what an inline projection writes, and what its
/// rebuild is compared with.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Every stored entry under `prefixes`, in key order.
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
