//! Domain events to and from stored envelopes: the event type name, the schema version, the
//! stream each event belongs to, and its personal subject (R9). Decoding goes through one
//! upcaster path, keyed by (type, schema_version).

use crate::domain::event::Event;
use event_store::{Envelope, EnvelopeRef, EventData, StreamId};

/// The schema version every event is written with today.
pub const SCHEMA_VERSION: u16 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("seq {seq}: unknown event schema {event_type} v{schema_version}; upgrade kyso")]
    UnknownSchema { seq: u64, event_type: String, schema_version: u16 },
    #[error("seq {seq}: {event_type} v{schema_version} does not decode: {source}")]
    Malformed { seq: u64, event_type: String, schema_version: u16, source: postcard::Error },
    #[error("seq {seq}: the envelope says {envelope} but the payload is {payload}")]
    TypeMismatch { seq: u64, envelope: String, payload: &'static str },
}

pub fn type_name(e: &Event) -> &'static str {
    match e {
        Event::CaRegistered { .. } => "CaRegistered",
        Event::CaSuspended { .. } => "CaSuspended",
        Event::CaReinstated { .. } => "CaReinstated",
        Event::CaExpelled { .. } => "CaExpelled",
        Event::ZoneAssigned { .. } => "ZoneAssigned",
        Event::CounterRegistered { .. } => "CounterRegistered",
        Event::BoothScheduled { .. } => "BoothScheduled",
        Event::StaffRegistered { .. } => "StaffRegistered",
        Event::StaffRevoked { .. } => "StaffRevoked",
        Event::CitizenLookedUp { .. } => "CitizenLookedUp",
        Event::IssuanceRecorded(_) => "IssuanceRecorded",
        Event::AttemptRefused { .. } => "AttemptRefused",
        Event::LegacyIssuanceImported { .. } => "LegacyIssuanceImported",
        Event::DemandRegistered { .. } => "DemandRegistered",
        Event::CaAssigned { .. } => "CaAssigned",
        Event::DemandAcknowledged { .. } => "DemandAcknowledged",
        Event::DemandExpired { .. } => "DemandExpired",
        Event::ComplaintFiled { .. } => "ComplaintFiled",
        Event::ComplaintResolved { .. } => "ComplaintResolved",
        Event::ViolationLogged { .. } => "ViolationLogged",
    }
}

const CITIZEN_STREAM_PREFIX: &str = "citizen-";

/// The stream (aggregate) an event belongs to and the person it is about, if any.
pub fn stream_and_subject(e: &Event) -> (StreamId, Option<String>) {
    // Built directly, not with `format!`: one per citizen event, on the sequencer thread.
    let citizen = |c: &crate::domain::Cccd| {
        let digits = c.as_str();
        let mut stream = String::with_capacity(CITIZEN_STREAM_PREFIX.len() + digits.len());
        stream.push_str(CITIZEN_STREAM_PREFIX);
        stream.push_str(digits);
        (StreamId(stream), Some(digits.to_owned()))
    };
    match e {
        Event::CaRegistered { ca, .. }
        | Event::CaSuspended { ca, .. }
        | Event::CaReinstated { ca }
        | Event::CaExpelled { ca, .. }
        | Event::ZoneAssigned { ca, .. }
        | Event::BoothScheduled { ca, .. }
        | Event::ViolationLogged { ca, .. } => (StreamId::new(format!("ca-{ca}")), None),
        Event::AttemptRefused { citizen: Some(c), .. } => citizen(c),
        Event::AttemptRefused { citizen: None, ca, .. } => (StreamId::new(format!("ca-{ca}")), None),
        Event::CounterRegistered { counter, .. } => (StreamId::new(format!("counter-{counter}")), None),
        Event::StaffRegistered { staff, .. } | Event::StaffRevoked { staff, .. } => {
            (StreamId::new(format!("staff-{staff}")), None)
        }
        Event::CitizenLookedUp { citizen: c, .. }
        | Event::LegacyIssuanceImported { citizen: c, .. }
        | Event::DemandRegistered { citizen: c, .. } => citizen(c),
        Event::IssuanceRecorded(i) => citizen(&i.citizen),
        Event::CaAssigned { demand, .. }
        | Event::DemandAcknowledged { demand, .. }
        | Event::DemandExpired { demand, .. } => (StreamId::new(format!("demand-{demand}")), None),
        Event::ComplaintFiled { complaint, citizen: c, .. } => {
            (StreamId::new(format!("complaint-{complaint}")), c.map(|c| c.to_string()))
        }
        Event::ComplaintResolved { complaint, .. } => (StreamId::new(format!("complaint-{complaint}")), None),
    }
}

/// Room for any event's payload (the largest, `IssuanceRecorded`, is ~70 bytes): a `Vec`
/// grown from empty reallocates five times on the way there, on the sequencer thread.
const PAYLOAD_CAPACITY: usize = 128;

pub fn encode(e: &Event) -> (StreamId, EventData) {
    let (stream, subject) = stream_and_subject(e);
    let data = EventData {
        event_type: type_name(e).to_string(),
        schema_version: SCHEMA_VERSION,
        payload: postcard::to_io(e, Vec::with_capacity(PAYLOAD_CAPACITY)).expect("serialising to a Vec cannot fail"),
        subject,
    };
    (stream, data)
}

/// The one upcaster path: every stored (type, version) decodes to today's `Event`.
pub fn decode(env: &Envelope) -> Result<Event, DecodeError> {
    decode_ref(&env.view())
}

/// [`decode`] from a borrowed envelope (a pass over the whole log copies nothing else).
pub fn decode_ref(env: &EnvelopeRef<'_>) -> Result<Event, DecodeError> {
    let (seq, event_type, schema_version) = (env.seq.0, env.event_type, env.schema_version);
    if schema_version != SCHEMA_VERSION {
        return Err(DecodeError::UnknownSchema { seq, event_type: event_type.to_string(), schema_version });
    }
    let event: Event = postcard::from_bytes(env.payload).map_err(|source| DecodeError::Malformed {
        seq,
        event_type: event_type.to_string(),
        schema_version,
        source,
    })?;
    if type_name(&event) != event_type {
        return Err(DecodeError::TypeMismatch { seq, envelope: event_type.to_string(), payload: type_name(&event) });
    }
    Ok(event)
}
