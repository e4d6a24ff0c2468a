//! `kyso-replay dispute <cccd>`: one citizen's story, for settling "who issued first?".
//!
//! Read straight from the log (every event, in seq order), not from the audit projection:
//! a referee should not have to trust derived data. The decisive events come with
//! inclusion proofs against a checkpoint the registry signed.

use commands::domain::Event;
use commands::domain::channel::IssuanceStatus;
use commands::domain::event::RefusalReason;
use event_store::checkpoint::{VerifierKey, read_unsigned};
use event_store::verify::verify_inclusion;
use event_store::{EventStore, RegistryTime, Seq, StoreError};
use projections::audit::{AuditIndex, Subject};
use projections::follower::{FollowError, decoded_range};
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, thiserror::Error)]
pub enum DisputeError {
    #[error("{0:?} is not a CCCD (12 digits)")]
    BadCccd(String),
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the newest checkpoint: {0}")]
    Checkpoint(#[from] event_store::checkpoint::CheckpointError),
    #[error(
        "the inclusion proof of seq {seq} does not verify against the checkpoint at size {size}: run `kyso-replay verify`"
    )]
    ProofFailed { seq: u64, size: u64 },
}

/// One event of the story.
#[derive(Debug, Serialize)]
pub struct Line {
    pub seq: u64,
    pub recorded_at: RegistryTime,
    pub actor: String,
    pub event_type: &'static str,
    /// What happened, in a sentence, with the rule it bears on.
    pub says: String,
    /// One of the events that decide the dispute: it gets an inclusion proof.
    pub decisive: bool,
    pub event: Event,
}

/// Who holds the citizen under R1/R3: the first issuance the registry recorded.
#[derive(Debug, Serialize)]
pub struct Holder {
    pub ca: String,
    pub seq: u64,
    pub activated_at: RegistryTime,
    pub recorded_at: RegistryTime,
    pub late: bool,
    pub legacy: bool,
}

/// An inclusion proof of one decisive event.
#[derive(Debug, Serialize)]
pub struct Proof {
    pub seq: u64,
    pub leaf_hash: String,
    pub size: u64,
    pub proof: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Story {
    pub citizen: String,
    pub lines: Vec<Line>,
    pub holder: Option<Holder>,
    /// The signed note the proofs lead to; `None` if no checkpoint covers the decisive
    /// events yet (the proofs then lead to the unsigned current tree head).
    pub checkpoint: Option<String>,
    /// Whether the checkpoint's signature was checked with a key.
    pub signature_checked: bool,
    pub proofs: Vec<Proof>,
}

fn at(t: RegistryTime) -> String {
    t.rfc3339()
}

fn gap(from: RegistryTime, to: RegistryTime) -> String {
    let mins = (to.0 - from.0) / 60_000;
    if mins.abs() < 120 { format!("{mins} min") } else { format!("{:.1} h", mins as f64 / 60.0) }
}

/// Reads the log and tells `cccd`'s story. `key` checks the checkpoint the proofs use.
pub fn dispute(store: &EventStore, cccd: &str, key: Option<&VerifierKey>) -> Result<Story, DisputeError> {
    if cccd.len() != 12 || !cccd.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DisputeError::BadCccd(cccd.to_string()));
    }
    let mut index = AuditIndex::default();
    let mut lines = Vec::new();
    let mut holder: Option<Holder> = None;
    for d in decoded_range(store, Seq(1), store.last_seq()) {
        let d = d?;
        let about = index.observe(&d.event);
        if !about.iter().any(|s| matches!(s, Subject::Citizen(c) if c.as_str() == cccd)) {
            continue;
        }
        let (says, decisive) = match &d.event {
            Event::CitizenLookedUp { ca, staff, .. } => (
                format!(
                    "{ca} looked the citizen up{} (R2)",
                    staff.map(|s| format!(" (staff {s})")).unwrap_or_default()
                ),
                false,
            ),
            Event::IssuanceRecorded(i) => {
                let mut s = format!(
                    "{} recorded an issuance: activated {}, recorded {} ({} after activation){}, {} via {}",
                    i.ca,
                    at(i.activated_at),
                    at(d.recorded_at),
                    gap(i.activated_at, d.recorded_at),
                    if i.late { ", LATE (R4)" } else { "" },
                    match i.status {
                        IssuanceStatus::Active => "active",
                        IssuanceStatus::TechnicalError => "technical error (R5)",
                    },
                    i.channel.name(),
                );
                if let Some(from) = &i.switched_from {
                    let _ = write!(s, "; the citizen switched from {from}, keeping the free year (R7)");
                }
                if holder.is_none() {
                    s.push_str(&format!(" — FIRST RECORDED: {} holds the citizen (R1, R3)", i.ca));
                    holder = Some(Holder {
                        ca: i.ca.to_string(),
                        seq: d.seq.0,
                        activated_at: i.activated_at,
                        recorded_at: d.recorded_at,
                        late: i.late,
                        legacy: false,
                    });
                }
                (s, true)
            }
            Event::LegacyIssuanceImported { ca, issued_at, .. } => {
                let mut s = format!("{ca}'s issuance of {} was imported from before the campaign (R6)", at(*issued_at));
                if holder.is_none() {
                    s.push_str(&format!(" — FIRST RECORDED: {ca} holds the citizen (R1, R3)"));
                    holder = Some(Holder {
                        ca: ca.to_string(),
                        seq: d.seq.0,
                        activated_at: *issued_at,
                        recorded_at: d.recorded_at,
                        late: false,
                        legacy: true,
                    });
                }
                (s, true)
            }
            Event::AttemptRefused { ca, reason, activated_at, .. } => {
                let why = match reason {
                    RefusalReason::AlreadyIssued { by_ca, first_recorded_seq } => {
                        format!("{by_ca} had recorded first, at seq {first_recorded_seq} (R1, R3)")
                    }
                    RefusalReason::CaNotActive { ca } => format!("{ca} was suspended or expelled (R13)"),
                    RefusalReason::StaffNotAuthorized { staff } => match staff {
                        Some(s) => format!("staff {s} was not authorized (R11)"),
                        None => "no authorized staff member was named (R11)".to_string(),
                    },
                };
                let earlier = match &holder {
                    Some(h) if *activated_at < h.activated_at => {
                        format!(
                            "; it had activated {} before the holder, but the first record decides, not activation (R3, R4)",
                            gap(*activated_at, h.activated_at)
                        )
                    }
                    _ => String::new(),
                };
                (
                    format!(
                        "{ca}'s attempt (activated {}, recorded {}, {} later) was REFUSED: {why}{earlier}",
                        at(*activated_at),
                        at(d.recorded_at),
                        gap(*activated_at, d.recorded_at)
                    ),
                    true,
                )
            }
            Event::DemandRegistered { demand, mode, chosen_ca, expires_at, .. } => (
                format!(
                    "demand #{demand} registered ({mode:?}){}, to be acted on by {} (R12)",
                    chosen_ca.as_ref().map(|c| format!(", the citizen chose {c}")).unwrap_or_default(),
                    at(*expires_at)
                ),
                false,
            ),
            Event::CaAssigned { demand, ca, rule } => {
                (format!("demand #{demand} assigned to {ca} by {rule:?} (R12, R14, R19)"), false)
            }
            Event::DemandAcknowledged { demand, ca } => (format!("{ca} acknowledged demand #{demand}"), false),
            Event::DemandExpired { demand, ca } => {
                (format!("demand #{demand} EXPIRED: {ca} did not act in time (R12)"), true)
            }
            Event::ComplaintFiled { complaint, against, kind, .. } => {
                (format!("complaint #{complaint} filed against {against}: {kind:?}"), false)
            }
            Event::ComplaintResolved { complaint, upheld, note, .. } => {
                (format!("complaint #{complaint} {}: {note}", if *upheld { "UPHELD" } else { "rejected" }), true)
            }
            other => (format!("{other:?}"), false),
        };
        lines.push(Line {
            seq: d.seq.0,
            recorded_at: d.recorded_at,
            actor: d.actor,
            event_type: commands::codec::type_name(&d.event),
            says,
            decisive,
            event: d.event,
        });
    }
    let (checkpoint, signature_checked, proofs) = prove(store, &lines, key)?;
    Ok(Story { citizen: cccd.to_string(), lines, holder, checkpoint, signature_checked, proofs })
}

/// Inclusion proofs of the decisive lines against the newest checkpoint (checked with
/// `key` when given), or against the current tree if no checkpoint covers them yet.
fn prove(
    store: &EventStore,
    lines: &[Line],
    key: Option<&VerifierKey>,
) -> Result<(Option<String>, bool, Vec<Proof>), DisputeError> {
    let decisive: Vec<u64> = lines.iter().filter(|l| l.decisive).map(|l| l.seq).collect();
    let Some(&last) = decisive.last() else { return Ok((None, false, Vec::new())) };
    let (size, root, note) = match store.latest_checkpoint()? {
        Some((size, note)) if size >= last => {
            let opened = match key {
                Some(key) => key.open(&note)?,
                None => read_unsigned(&note)?,
            };
            (size, opened.root, Some(note))
        }
        _ => {
            let head = store.tree_head();
            (head.size, head.root, None)
        }
    };
    let mut proofs = Vec::new();
    for seq in decisive {
        let leaf = store.leaf_hash(Seq(seq))?;
        let proof = store.inclusion_proof(Seq(seq), size)?;
        verify_inclusion(seq - 1, size, &leaf, &proof, &root).map_err(|_| DisputeError::ProofFailed { seq, size })?;
        proofs.push(Proof { seq, leaf_hash: hex::encode(leaf), size, proof: proof.iter().map(hex::encode).collect() });
    }
    let checked = note.is_some() && key.is_some();
    Ok((note, checked, proofs))
}

impl Story {
    /// The story as a referee reads it.
    pub fn text(&self) -> String {
        let mut out = format!("Citizen {}: {} events in the registry's log\n\n", self.citizen, self.lines.len());
        for l in &self.lines {
            let _ = writeln!(
                out,
                "{} seq {:>8}  {}{}",
                at(l.recorded_at),
                l.seq,
                if l.decisive { "* " } else { "  " },
                l.says
            );
        }
        out.push('\n');
        match &self.holder {
            Some(h) => {
                let _ = writeln!(
                    out,
                    "Holder: {} — the first issuance the registry recorded (seq {}, recorded {}, activated {}{}).",
                    h.ca,
                    h.seq,
                    at(h.recorded_at),
                    at(h.activated_at),
                    if h.late { "; recorded late (R4)" } else { "" }
                );
            }
            None => out.push_str(
                "Holder: none — no issuance for this citizen was recorded (R3: unrecorded counts as not issued).\n",
            ),
        }
        if !self.proofs.is_empty() {
            let against = match (&self.checkpoint, self.signature_checked) {
                (Some(_), true) => "a signed checkpoint, signature checked",
                (Some(_), false) => "a signed checkpoint (signature NOT checked: pass --key)",
                (None, _) => "the current tree head (no signed checkpoint covers them yet)",
            };
            let _ = writeln!(
                out,
                "Inclusion proofs of the {} decisive events (*) verified against tree size {}: {against}.",
                self.proofs.len(),
                self.proofs[0].size
            );
        }
        out
    }
}
