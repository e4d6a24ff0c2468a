//! Erasure of a citizen (R9), on a stopped server's data dir (`kyso erase`).
//!
//! What goes: the citizen's salt, so every Merkle leaf about them becomes an unlinkable
//! commitment (the tree still verifies: `kyso-replay verify` counts such leaves as erased);
//! their entries in the audit index; and the idempotency records whose answers name them.
//! What stays, and why: the events in the log, which are the legal record the registry
//! keeps under R1/R3 (who issued first), and the registry's state snapshot, from which
//! the citizen view is rendered: it must keep answering "already issued" so no second
//! campaign certificate is issued. Folds rebuilt from the log later (`kyso-replay rebuild audit`) index the
//! citizen again from those events.

use crate::audit::Subject;
use crate::follower::Projections;
use commands::domain::Cccd;
use event_store::{Cf, EventStore, StoreError};

/// What an erasure removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erasure {
    /// The citizen had a salt (had personal events) and it is gone.
    pub salt: bool,
    pub idempotency_records: usize,
}

pub fn erase_citizen(store: &EventStore, projections: &Projections, cccd: &Cccd) -> Result<Erasure, StoreError> {
    let subject = cccd.as_str();
    let salt_keys = store.salt_keys(subject)?;
    let salt = !salt_keys.is_empty();
    let records = commands::registrar::idempotency_records_about(store, subject)?;
    let mut keys: Vec<(Cf, Vec<u8>)> = records.iter().map(|k| (Cf::Idempotency, k.clone())).collect();
    keys.extend(salt_keys);
    let trail = [projections.audit.key_prefix(), Subject::Citizen(*cccd).key_part()].concat();
    store.forget(&keys, &[(Cf::Projections, trail)])?;
    Ok(Erasure { salt, idempotency_records: records.len() })
}
