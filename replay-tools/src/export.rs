//! `kyso-replay export` / `verify-export`: a range of the log as JSON Lines that a third
//! party checks with nothing but the registry's public key.
//!
//! The first line is the proof bundle: a signed checkpoint of size `N ≥ to`, the peaks of
//! the tree before `from` (the "frontier"), and a consistency proof from size `to` to `N`.
//! The verifier recomputes each exported event's leaf, appends the leaves to the frontier,
//! and so gets the root at `to`; the consistency proof must then lead from that root to the
//! signed one. A wrong frontier, event or order gives another root, and the proof fails.
//!
//! Personal events (R9) carry their subject's salt so their leaves can be recomputed; with
//! `redact`, they carry only their leaf hash (the range still verifies, the event is not
//! shown). Events whose salt was erased are always exported redacted.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use event_store::checkpoint::{CheckpointError, VerifierKey};
use event_store::merkle::{CompactRange, Hash, NodeSource as _, hash_leaf, peak_ids};
use event_store::receipt::parse_hash;
use event_store::verify::{ProofError, verify_consistency};
use event_store::{Envelope, EventStore, Metadata, RegistryTime, Seq, StoreError, StreamId};
use projections::follower::FollowError;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};

/// The first line of an export.
#[derive(Debug, Serialize, Deserialize)]
pub struct Bundle {
    pub from_seq: u64,
    pub to_seq: u64,
    /// Signed note of a tree that contains `to_seq`.
    pub checkpoint: String,
    /// Hex peaks of the tree of `from_seq - 1` leaves, largest first.
    pub frontier: Vec<String>,
    /// Hex consistency proof from size `to_seq` to the checkpoint's size.
    pub consistency: Vec<String>,
}

/// One exported event: every field its Merkle leaf covers, plus the decoded event for
/// readers. `payload` is the stored postcard bytes (base64), which is what the leaf hashes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Line {
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<ExportedEvent>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportedEvent {
    pub stream: String,
    pub stream_version: u64,
    pub prev_seq: Option<u64>,
    pub event_type: String,
    pub schema_version: u16,
    pub recorded_at: RegistryTime,
    pub actor: String,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub subject: Option<String>,
    /// Hex; present exactly when `subject` is.
    pub salt: Option<String>,
    pub payload: String,
    /// The payload decoded (JSON), for reading; not what the leaf covers.
    pub decoded: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("seqs {from}..={to} are not a range of this log (last seq {last})")]
    BadRange { from: u64, to: u64, last: u64 },
    #[error(
        "no signed checkpoint covers seq {0} yet: start the server (it signs every few seconds) or export a shorter range"
    )]
    NoCheckpoint(u64),
}

/// Why an export did not verify. Each says where.
#[derive(Debug, thiserror::Error)]
pub enum VerifyExportError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("the bundle's checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("line {line}: expected seq {expected}, found {found}: an event is missing, extra or out of order")]
    Gap { line: usize, expected: u64, found: u64 },
    #[error("the export ends at seq {last}, the bundle says {to}")]
    Truncated { last: u64, to: u64 },
    #[error("the checkpoint covers {size} events, fewer than the export's last seq {to}")]
    CheckpointTooSmall { size: u64, to: u64 },
    #[error(
        "the events do not lead to the signed root (consistency proof: {0}): an event, the frontier or the order was changed"
    )]
    RootMismatch(ProofError),
}

/// What a valid export holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportReport {
    pub from: u64,
    pub to: u64,
    pub redacted: u64,
    pub checkpoint_size: u64,
}

fn hexes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

/// Writes seqs `from..=to` with their proof bundle as JSON Lines to `out`.
pub fn export(
    store: &EventStore,
    from: u64,
    to: u64,
    redact: bool,
    out: &mut impl Write,
    mut progress: impl FnMut(u64),
) -> Result<u64, ExportError> {
    let last = store.last_seq().0;
    if from == 0 || from > to || to > last {
        return Err(ExportError::BadRange { from, to, last });
    }
    let mut covering = None;
    for item in store.checkpoints() {
        let (size, note) = item?;
        if size >= to {
            covering = Some((size, note));
            break;
        }
    }
    let (size, checkpoint) = covering.ok_or(ExportError::NoCheckpoint(to))?;
    let frontier = peak_ids(from - 1).map(|id| store.node(id)).collect::<Result<Vec<_>, _>>()?;
    let bundle = Bundle {
        from_seq: from,
        to_seq: to,
        checkpoint,
        frontier: hexes(&frontier),
        consistency: hexes(&store.consistency_proof(to, size)?),
    };
    serde_json::to_writer(&mut *out, &bundle).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    let mut redacted = 0;
    for env in store.read_from(Seq(from)) {
        let env = env?;
        if env.seq.0 > to {
            break;
        }
        let salt = match &env.subject {
            Some(subject) => store.salt(subject)?,
            None => None,
        };
        let line = if redact && env.subject.is_some() || env.subject.is_some() && salt.is_none() {
            redacted += 1;
            Line { seq: env.seq.0, leaf_hash: Some(hex::encode(store.leaf_hash(env.seq)?)), event: None }
        } else {
            let decoded = commands::codec::decode(&env).ok().and_then(|e| serde_json::to_value(e).ok());
            Line {
                seq: env.seq.0,
                leaf_hash: None,
                event: Some(ExportedEvent {
                    stream: env.stream.0,
                    stream_version: env.stream_version,
                    prev_seq: env.prev_seq.map(|s| s.0),
                    event_type: env.event_type,
                    schema_version: env.schema_version,
                    recorded_at: env.recorded_at,
                    actor: env.meta.actor,
                    correlation_id: env.meta.correlation_id,
                    causation_id: env.meta.causation_id,
                    subject: env.subject,
                    salt: salt.map(hex::encode),
                    payload: B64.encode(&env.payload),
                    decoded,
                }),
            }
        };
        serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
        if env.seq.0 % 4096 == 0 {
            progress(env.seq.0 - from + 1);
        }
    }
    progress(to - from + 1);
    Ok(redacted)
}

fn leaf_of(line: &Line, n: usize) -> Result<Hash, VerifyExportError> {
    let bad = |reason: String| VerifyExportError::Malformed { line: n, reason };
    match (&line.leaf_hash, &line.event) {
        (Some(h), None) => parse_hash(h, "leaf hash").map_err(|e| bad(e.to_string())),
        (None, Some(e)) => {
            let salt: Option<[u8; 32]> = match (&e.subject, &e.salt) {
                (None, None) => None,
                (Some(_), Some(s)) => Some(parse_hash(s, "salt").map_err(|e| bad(e.to_string()))?),
                _ => return Err(bad("a salt is given exactly for events with a subject".into())),
            };
            let envelope = Envelope {
                seq: Seq(line.seq),
                stream: StreamId::new(e.stream.clone()),
                stream_version: e.stream_version,
                prev_seq: e.prev_seq.map(Seq),
                event_type: e.event_type.clone(),
                schema_version: e.schema_version,
                recorded_at: e.recorded_at,
                meta: Metadata {
                    actor: e.actor.clone(),
                    correlation_id: e.correlation_id.clone(),
                    causation_id: e.causation_id.clone(),
                    idempotency_key: None,
                },
                subject: e.subject.clone(),
                payload: B64.decode(&e.payload).map_err(|err| bad(format!("payload is not base64: {err}")))?,
            };
            Ok(hash_leaf(&envelope.leaf_bytes(salt.as_ref())))
        }
        _ => Err(bad("a line has either an event or a leaf hash".into())),
    }
}

/// Checks an export with only the registry's key: signature, every leaf, order, and that
/// the range leads to the signed root.
pub fn verify_export(input: impl BufRead, key: &VerifierKey) -> Result<ExportReport, VerifyExportError> {
    let mut lines = input.lines();
    let malformed = |line: usize, reason: String| VerifyExportError::Malformed { line, reason };
    let first = lines.next().ok_or_else(|| malformed(1, "empty file".into()))??;
    let bundle: Bundle = serde_json::from_str(&first).map_err(|e| malformed(1, format!("not a bundle: {e}")))?;
    let signed = key.open(&bundle.checkpoint)?;
    if signed.size < bundle.to_seq {
        return Err(VerifyExportError::CheckpointTooSmall { size: signed.size, to: bundle.to_seq });
    }
    let mut frontier = bundle.frontier.iter();
    let mut tree = CompactRange::from_peaks(bundle.from_seq.saturating_sub(1), |_| match frontier.next() {
        Some(h) => parse_hash(h, "frontier hash").map_err(|e| malformed(1, e.to_string())),
        None => Err(malformed(1, "the frontier has too few hashes".into())),
    })?;
    if frontier.next().is_some() {
        return Err(malformed(1, "the frontier has too many hashes".into()));
    }
    let mut expected = bundle.from_seq;
    let mut redacted = 0;
    for (i, text) in lines.enumerate() {
        let n = i + 2;
        let line: Line = serde_json::from_str(&text?).map_err(|e| malformed(n, format!("not an event line: {e}")))?;
        if line.seq != expected {
            return Err(VerifyExportError::Gap { line: n, expected, found: line.seq });
        }
        redacted += u64::from(line.event.is_none());
        tree.append(leaf_of(&line, n)?, |_, _| {});
        expected += 1;
    }
    if expected != bundle.to_seq + 1 {
        return Err(VerifyExportError::Truncated { last: expected - 1, to: bundle.to_seq });
    }
    let proof = bundle
        .consistency
        .iter()
        .map(|h| parse_hash(h, "proof hash"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| malformed(1, e.to_string()))?;
    verify_consistency(bundle.to_seq, signed.size, &tree.root(), &signed.root, &proof)
        .map_err(VerifyExportError::RootMismatch)?;
    Ok(ExportReport { from: bundle.from_seq, to: bundle.to_seq, redacted, checkpoint_size: signed.size })
}

/// Issued certificates of seqs `from..=to` per day, district, commune, CA and channel, as
/// CSV (R15: what the province sends upward), counted by the same fold as the live report.
pub fn counts_csv(store: &EventStore, from: u64, to: u64, out: impl Write) -> Result<(), ExportError> {
    use projections::Fold as _;
    use projections::counts::{Counts, Dim, Filter};
    let mut counts = Counts::default();
    let mut keys = projections::KeyOut::default();
    for d in projections::follower::decoded_range(store, Seq(from), Seq(to)) {
        let d = d?;
        counts.apply(&d.ctx(), &d.event, &mut keys);
    }
    let dims = [Dim::Day, Dim::District, Dim::Commune, Dim::Ca, Dim::Channel];
    let mut w = csv::Writer::from_writer(out);
    let csv_error = |e: csv::Error| std::io::Error::other(e.to_string());
    w.write_record(["day", "district", "commune", "ca", "channel", "issued", "technical_error", "late", "switched_in"])
        .map_err(csv_error)?;
    for row in counts.group_by(&Filter::default(), &dims) {
        let t = row.tally;
        let tally = [t.issued, t.technical_error, t.late, t.switched_in].map(|n| n.to_string());
        w.write_record(row.group.iter().map(String::as_str).chain(tally.iter().map(String::as_str)))
            .map_err(csv_error)?;
    }
    w.flush()?;
    Ok(())
}
