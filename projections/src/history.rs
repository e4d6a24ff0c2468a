//! Time travel (R13): any fold as it was at a seq or at a moment, by folding the log up to
//! that point with the same code that keeps it live.

use crate::compliance::Compliance;
use crate::counts::Counts;
use crate::demands::DemandBoard;
use crate::fold::{Fold, KeyOut};
use crate::follower::{FollowError, for_each_chunk};
use event_store::{EventStore, RegistryTime, Seq, StoreError};

/// The report projections at one point of the log.
#[derive(Debug, Default)]
pub struct AsOf {
    pub seq: Seq,
    pub counts: Counts,
    pub compliance: Compliance,
    pub demands: DemandBoard,
}

/// Folds seq 1 through `upto` (clamped to the log) in one pass.
pub fn as_of(store: &EventStore, upto: Seq) -> Result<AsOf, FollowError> {
    let mut out = AsOf::default();
    let mut keys = KeyOut::default();
    for_each_chunk(store, Seq(1), upto, |chunk| {
        for d in chunk {
            let ctx = d.ctx();
            out.counts.apply(&ctx, &d.event, &mut keys);
            out.compliance.apply(&ctx, &d.event, &mut keys);
            out.demands.apply(&ctx, &d.event, &mut keys);
            out.seq = d.seq;
        }
        Ok(())
    })?;
    Ok(out)
}

/// The last seq recorded at or before `t` (0 if none). Recording times never go back
/// (the sequencer's clock is monotonic), so this is a binary search over the log.
pub fn seq_at(store: &EventStore, t: RegistryTime) -> Result<Seq, StoreError> {
    let (mut lo, mut hi) = (0u64, store.last_seq().0);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if store.event(Seq(mid))?.recorded_at <= t {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(Seq(lo))
}
