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
pub use follower::{Follower, Live, Projections, RebuildProgress};
