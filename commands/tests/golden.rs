//! Stored events are never rewritten, so their bytes must never change meaning. One sample
//! of every event type, schema v1, is checked against `golden/events-v1.txt`; a changed
//! encoding fails here and needs a new schema version plus an upcaster in `codec::decode`.
//! `KYSO_BLESS=1` rewrites the file (only when adding a new event type).

use commands::codec;
use commands::domain::event::*;
use commands::domain::*;
use event_store::{Envelope, Metadata, RegistryTime, Seq, StreamId};

fn samples() -> Vec<Event> {
    let ca = CaId::parse("VNPT-CA").unwrap();
    let citizen = Cccd::parse("046196000123", 2023).unwrap();
    let t = RegistryTime(1_693_555_200_000);
    vec![
        Event::CaRegistered { ca: ca.clone(), name: "VNPT".into(), app_name: "VNPT SmartCA".into() },
        Event::CaSuspended { ca: ca.clone(), reason: "r".into() },
        Event::CaReinstated { ca: ca.clone() },
        Event::CaExpelled { ca: ca.clone(), reason: "r".into(), violations: vec![Seq(9)] },
        Event::ZoneAssigned { ca: ca.clone(), district: "476".into(), commune: "19819".into() },
        Event::CounterRegistered { counter: "c1".into(), commune: "19819".into() },
        Event::BoothScheduled {
            booth: "b1".into(),
            commune: "19819".into(),
            ca: ca.clone(),
            week_start: chrono::NaiveDate::from_ymd_opt(2023, 9, 4).unwrap(),
        },
        Event::StaffRegistered {
            staff: 1,
            ca: ca.clone(),
            full_name: "A".into(),
            birth_year: 1990,
            position: "p".into(),
            photo_ref: "x".into(),
            token_hash: [3; 32],
        },
        Event::StaffRevoked { staff: 1, ca: ca.clone() },
        Event::CitizenLookedUp { citizen, ca: ca.clone(), staff: Some(1) },
        Event::IssuanceRecorded(Box::new(IssuanceRecorded {
            citizen,
            ca: ca.clone(),
            channel: Channel::DoorToDoor,
            segment: Segment::Student,
            commune: "19819".into(),
            district: "476".into(),
            place: Place::Booth("b1".into()),
            status: IssuanceStatus::TechnicalError,
            staff: Some(1),
            serial: Some("S".into()),
            activated_at: t,
            late: true,
            free_until: t,
            switched_from: Some(ca.clone()),
            closed_demand: Some(2),
        })),
        Event::AttemptRefused {
            citizen: Some(citizen),
            ca: ca.clone(),
            reason: RefusalReason::AlreadyIssued { by_ca: ca.clone(), first_recorded_seq: Seq(4) },
            activated_at: t,
        },
        Event::LegacyIssuanceImported { citizen, ca: ca.clone(), issued_at: t, serial: None, free_until: t },
        Event::DemandRegistered {
            demand: 2,
            citizen,
            mode: DemandMode::Remote,
            phone: "0905".into(),
            district: "476".into(),
            commune: "19819".into(),
            chosen_ca: None,
            expires_at: t,
        },
        Event::CaAssigned { demand: 2, ca: ca.clone(), rule: AssignmentRule::Rotation },
        Event::DemandAcknowledged { demand: 2, ca: ca.clone() },
        Event::DemandExpired { demand: 2, ca: ca.clone() },
        Event::ComplaintFiled {
            complaint: 1,
            against: ca.clone(),
            kind: ComplaintKind::PreCollectedData,
            citizen: Some(citizen),
            text: "t".into(),
        },
        Event::ComplaintResolved { complaint: 1, upheld: true, checked: vec![Seq(1)], note: "n".into() },
        Event::ViolationLogged {
            ca,
            kind: ComplaintKind::Other,
            complaint: Some(1),
            description: "d".into(),
            evidence: vec![],
        },
    ]
}

#[test]
fn every_event_type_keeps_its_v1_bytes_and_decodes_back() {
    let mut text = String::new();
    for event in samples() {
        let (stream, data) = codec::encode(&event);
        text.push_str(&format!("{} v{} {}\n", data.event_type, data.schema_version, hex::encode(&data.payload)));
        let env = Envelope {
            seq: Seq(1),
            stream: StreamId::new(stream.as_str()),
            stream_version: 1,
            prev_seq: None,
            event_type: data.event_type,
            schema_version: data.schema_version,
            recorded_at: RegistryTime(0),
            meta: Metadata::default(),
            subject: data.subject,
            payload: data.payload,
        };
        assert_eq!(codec::decode(&env).unwrap(), event);
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/events-v1.txt");
    if std::env::var("KYSO_BLESS").is_ok() {
        std::fs::write(path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(path).expect("golden file (KYSO_BLESS=1 creates it)");
    assert_eq!(text, golden, "stored event bytes changed: add a schema version and an upcaster instead");
}

#[test]
fn an_unknown_schema_version_is_a_typed_error_naming_the_seq() {
    let (stream, data) = codec::encode(&samples()[0]);
    let env = Envelope {
        seq: Seq(42),
        stream,
        stream_version: 1,
        prev_seq: None,
        event_type: data.event_type,
        schema_version: 99,
        recorded_at: RegistryTime(0),
        meta: Metadata::default(),
        subject: None,
        payload: data.payload,
    };
    let err = codec::decode(&env).unwrap_err();
    assert!(matches!(err, codec::DecodeError::UnknownSchema { seq: 42, .. }), "{err}");
}

/// The registry's stored state (`commands::snapshot`) is pinned too: a change to `Registry`
/// or a type inside it fails here until `STATE_VERSION` is bumped (older snapshots are then
/// passed over at start-up instead of misread) and the file re-blessed.
#[test]
fn the_registry_snapshot_format_is_pinned_to_its_state_version() {
    let campaign = Campaign::from_toml(include_str!("../../campaigns/thua-thien-hue.toml")).unwrap();
    let mut registry = Registry::new(campaign.clone());
    for (i, event) in samples().iter().enumerate() {
        apply(&mut registry, Seq(i as u64 + 1), RegistryTime(1_693_555_200_000), event);
    }
    // The samples name one citizen and one staff token, so the hash maps' order is fixed.
    let mut bytes = commands::snapshot::encode(&registry, Seq(42));
    assert_eq!(commands::snapshot::decode(&bytes, &campaign).unwrap(), (registry, Seq(42)));
    // The version (one varint byte) is pinned; the campaign file's digest after it is not
    // the format's business.
    bytes[1..33].fill(0);
    let text = format!("v{} {}\n", commands::snapshot::STATE_VERSION, hex::encode(&bytes));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/registry-state.txt");
    if std::env::var("KYSO_BLESS").is_ok() {
        std::fs::write(path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(path).expect("golden file (KYSO_BLESS=1 creates it)");
    assert_eq!(text, golden, "the registry's stored state changed shape: bump snapshot::STATE_VERSION, then bless");
}
