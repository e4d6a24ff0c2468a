//! R12: expires demands whose 48 hours passed. It only *proposes*: each due demand becomes an
//! `ExpireDemand` command through the sequencer, so expiry is an ordinary event at one point
//! in the log, and `decide` makes sure it happens once (a second attempt is refused).

use crate::clock::Clock;
use crate::domain::Command;
use crate::registrar::{Registrar, Submission, parse_deadline_key};
use crate::sequencer::Sequencer;
use event_store::{Cf, EventStore, Metadata, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// Due demands proposed per scan; the rest wait for the next one.
const SCAN_MAX: usize = 1024;

/// Submits `ExpireDemand` for every deadline at or before `clock.now()`; returns how many
/// were expired by this call.
pub async fn expire_due(
    store: &EventStore,
    sequencer: &Sequencer<Registrar>,
    clock: &dyn Clock,
) -> Result<usize, StoreError> {
    let now = clock.now();
    let mut due = Vec::new();
    for entry in store.scan_prefix(Cf::Deadlines, &[]) {
        let (key, _) = entry?;
        match parse_deadline_key(&key) {
            Some((at, demand)) if at <= now => due.push(demand),
            Some(_) => break,
            None => return Err(StoreError::CorruptMeta("a deadlines key is not 16 bytes".into())),
        }
        if due.len() == SCAN_MAX {
            break;
        }
    }
    let mut expired = 0;
    for demand in due {
        let sub = Submission {
            meta: Metadata { actor: "system:scheduler".into(), ..Metadata::default() },
            command: Command::ExpireDemand { demand },
        };
        match sequencer.submit(sub).await {
            Ok(Ok(_)) => expired += 1,
            // Acknowledged or closed since the scan, or already expired: nothing to do.
            Ok(Err(e)) => tracing::debug!(demand, error = %e, "expiry not needed"),
            Err(e) => tracing::warn!(demand, error = %e, "expiry postponed to the next scan"),
        }
    }
    Ok(expired)
}

/// Scans every `every`. It holds a sequencer handle, which keeps the writer alive, so at
/// shutdown abort this task first; it returns by itself only if the writer thread died.
pub async fn run(store: Arc<EventStore>, sequencer: Sequencer<Registrar>, clock: Arc<dyn Clock>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if sequencer.is_stopped() {
            return;
        }
        match expire_due(&store, &sequencer, clock.as_ref()).await {
            Ok(n) if n > 0 => tracing::info!(expired = n, "demands expired"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "deadline scan failed"),
        }
    }
}
