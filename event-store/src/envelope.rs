//! What one stored event looks like, and the public form its Merkle leaf is made from.

use crate::merkle::Hash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// The global position of an event: 1, 2, 3, … with no gaps. "Who recorded first" (R3) is
/// decided by this number, never by a wall clock.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default, utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// Seq `n` is leaf `n − 1` of the Merkle tree.
    pub fn leaf_index(self) -> u64 {
        self.0 - 1
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The registry's clock, in milliseconds since the Unix epoch (UTC). Chosen by the sequencer
/// once per batch and never read from the wall clock by the domain.
///
/// Stored (postcard) as milliseconds since the Unix epoch; in human-readable formats (JSON)
/// as RFC 3339 UTC, which is what API users and auditors read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, utoipa::ToSchema)]
#[schema(value_type = String, format = DateTime)]
pub struct RegistryTime(pub i64);

impl RegistryTime {
    /// RFC 3339 UTC with milliseconds; the raw number if out of chrono's range.
    pub fn rfc3339(self) -> String {
        chrono::DateTime::<chrono::Utc>::from_timestamp_millis(self.0)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| self.0.to_string())
    }
}

impl Serialize for RegistryTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.serialize_str(&self.rfc3339()) } else { s.serialize_i64(self.0) }
    }
}

impl<'de> Deserialize<'de> for RegistryTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            chrono::DateTime::parse_from_rfc3339(&s)
                .map(|t| RegistryTime(t.timestamp_millis()))
                .map_err(|e| serde::de::Error::custom(format!("{s:?} is not an RFC 3339 time: {e}")))
        } else {
            i64::deserialize(d).map(RegistryTime)
        }
    }
}

impl RegistryTime {
    /// This time plus `ms` milliseconds (saturating).
    pub fn plus_ms(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }
}

impl fmt::Display for RegistryTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Identifies one aggregate's history, e.g. `citizen-079123456789` or `ca-VNPT-CA`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamId(pub String);

impl StreamId {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who and why, shared by all events one command produced.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Metadata {
    /// The CA, role or staff member that sent the command (e.g. `ca:VNPT-CA`).
    pub actor: String,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub idempotency_key: Option<String>,
}

/// One event as stored in the `events` column family (postcard). Never rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub seq: Seq,
    pub stream: StreamId,
    /// 1 for the stream's first event.
    pub stream_version: u64,
    /// The stream's previous event: streams are read by following these links back from
    /// the stream's head, so the write path needs no index key per event.
    pub prev_seq: Option<Seq>,
    pub event_type: String,
    pub schema_version: u16,
    pub recorded_at: RegistryTime,
    pub meta: Metadata,
    /// The person this event is about (a CCCD), if any. Such events enter the Merkle tree
    /// only through salted commitments of their stream id and payload (R9).
    pub subject: Option<String>,
    /// Encoded as one byte string, not a sequence of bytes (same wire format in postcard,
    /// one `memcpy` instead of a call per byte).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// A per-subject secret: commitments made with it reveal nothing without it, and deleting
/// it (crypto-shredding) makes them unlinkable to the person for good.
pub type Salt = [u8; 32];

/// The stream id and payload as a leaf shows them: in clear, or committed with the
/// subject's salt.
#[derive(Serialize)]
enum LeafBody<'a> {
    Public {
        stream: &'a str,
        #[serde(with = "serde_bytes")]
        payload: &'a [u8],
    },
    Committed {
        stream: Hash,
        payload: Hash,
    },
}

/// The bytes a Merkle leaf hashes: everything about the event except the idempotency key (a
/// caller's retry token, not a fact) and the subject, with personal events committed
/// (`SHA-256(salt ‖ tag ‖ value)`), so proofs and checkpoints reveal no CCCD, yet anyone
/// holding the event and its salt can recompute the leaf.
#[derive(Serialize)]
struct LeafForm<'a> {
    seq: Seq,
    stream_version: u64,
    prev_seq: Option<Seq>,
    event_type: &'a str,
    schema_version: u16,
    recorded_at: RegistryTime,
    actor: &'a str,
    correlation_id: Option<&'a str>,
    causation_id: Option<&'a str>,
    body: LeafBody<'a>,
}

fn commit(salt: &Salt, tag: u8, value: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(salt);
    h.update([tag]);
    h.update(value);
    h.finalize().into()
}

impl Envelope {
    /// The canonical leaf bytes. `salt` is the subject's salt; it must be given exactly when
    /// the event has a subject (checked by the caller: the store and the verifier).
    pub fn leaf_bytes(&self, salt: Option<&Salt>) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_leaf_bytes(salt, &mut out);
        out
    }

    /// [`Envelope::leaf_bytes`] appended to `out`, so the writer can reuse one buffer.
    pub fn write_leaf_bytes(&self, salt: Option<&Salt>, out: &mut Vec<u8>) {
        self.view().write_leaf_bytes(salt, out);
    }

    /// A borrowed view of this envelope.
    pub fn view(&self) -> EnvelopeRef<'_> {
        EnvelopeRef {
            seq: self.seq,
            stream: self.stream.as_str(),
            stream_version: self.stream_version,
            prev_seq: self.prev_seq,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            recorded_at: self.recorded_at,
            meta: self.meta.view(),
            subject: self.subject.as_deref(),
            payload: &self.payload,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// [`Envelope::encode`] appended to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        postcard::to_io(self, out).expect("writing to a Vec cannot fail");
    }
}

impl Metadata {
    /// A borrowed view, to encode events without cloning the metadata into each.
    pub fn view(&self) -> MetadataRef<'_> {
        MetadataRef {
            actor: &self.actor,
            correlation_id: self.correlation_id.as_deref(),
            causation_id: self.causation_id.as_deref(),
            idempotency_key: self.idempotency_key.as_deref(),
        }
    }
}

/// An envelope read without copying: its strings and payload borrow the stored bytes. The
/// same postcard layout as [`Envelope`] (field for field), for passes over the whole log
/// where allocating every field would be most of the cost (`kyso-replay verify`), and for
/// the writer, which encodes new events from borrowed parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeRef<'a> {
    pub seq: Seq,
    pub stream: &'a str,
    pub stream_version: u64,
    pub prev_seq: Option<Seq>,
    pub event_type: &'a str,
    pub schema_version: u16,
    pub recorded_at: RegistryTime,
    #[serde(borrow)]
    pub meta: MetadataRef<'a>,
    #[serde(borrow)]
    pub subject: Option<&'a str>,
    #[serde(serialize_with = "serde_bytes::serialize")]
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataRef<'a> {
    pub actor: &'a str,
    #[serde(borrow)]
    pub correlation_id: Option<&'a str>,
    #[serde(borrow)]
    pub causation_id: Option<&'a str>,
    #[serde(borrow)]
    pub idempotency_key: Option<&'a str>,
}

impl<'a> EnvelopeRef<'a> {
    pub fn decode(bytes: &'a [u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }

    /// The stored form, byte for byte what [`Envelope::encode`] gives, appended to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        postcard::to_io(self, out).expect("writing to a Vec cannot fail");
    }

    /// `bytes`, stored under `seq`, decoded and checked to be that seq's envelope; the
    /// errors name the seq, as the store's own reads do.
    pub fn decode_at(seq: Seq, bytes: &'a [u8]) -> Result<Self, crate::StoreError> {
        crate::store::decode_at(seq.0, bytes, |e: &Self| e.seq)
    }

    /// The leaf bytes, as [`Envelope::leaf_bytes`], appended to `out`.
    pub fn write_leaf_bytes(&self, salt: Option<&Salt>, out: &mut Vec<u8>) {
        let body = match salt {
            None => LeafBody::Public { stream: self.stream, payload: self.payload },
            Some(salt) => LeafBody::Committed {
                stream: commit(salt, 0, self.stream.as_bytes()),
                payload: commit(salt, 1, self.payload),
            },
        };
        let form = LeafForm {
            seq: self.seq,
            stream_version: self.stream_version,
            prev_seq: self.prev_seq,
            event_type: self.event_type,
            schema_version: self.schema_version,
            recorded_at: self.recorded_at,
            actor: self.meta.actor,
            correlation_id: self.meta.correlation_id,
            causation_id: self.meta.causation_id,
            body,
        };
        postcard::to_io(&form, out).expect("writing to a Vec cannot fail");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The borrowed reader must read what the owned writer wrote, field for field, and
    /// hash to the same leaf.
    #[test]
    fn the_borrowed_view_decodes_and_encodes_what_the_envelope_encodes() {
        let env = Envelope {
            seq: Seq(42),
            stream: StreamId::new("citizen-046196000123"),
            stream_version: 3,
            prev_seq: Some(Seq(17)),
            event_type: "IssuanceRecorded".into(),
            schema_version: 2,
            recorded_at: RegistryTime(1_693_555_200_000),
            meta: Metadata {
                actor: "ca:VNPT-CA".into(),
                correlation_id: Some("c".into()),
                causation_id: None,
                idempotency_key: Some("k".into()),
            },
            subject: Some("046196000123".into()),
            payload: vec![1, 2, 3, 255],
        };
        let bytes = env.encode();
        let view = EnvelopeRef::decode(&bytes).unwrap();
        assert_eq!(view, env.view());
        let mut encoded = Vec::new();
        view.encode_into(&mut encoded);
        assert_eq!(encoded, bytes, "the writer encodes new events from the borrowed view");
        let mut a = Vec::new();
        view.write_leaf_bytes(Some(&[7; 32]), &mut a);
        assert_eq!(a, env.leaf_bytes(Some(&[7; 32])));
    }
}
