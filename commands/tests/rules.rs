//! One scenario per rule: given facts, when a command, then facts or a rejection. Pure:
//! `decide` and `apply` only, time handed in.

use chrono::{TimeZone, Utc};
use commands::domain::event::{AssignmentRule, ComplaintKind};
use commands::domain::registry::DemandState;
use commands::domain::*;
use event_store::{RegistryTime, Seq};

const HUE: &str = include_str!("../../campaigns/thua-thien-hue.toml");
/// Thị trấn Phong Điền (Phong Điền district) and Phường Kim Long (Huế city).
const COMMUNE: &str = "19819";
const OTHER_COMMUNE: &str = "19774";

fn at(y: i32, m: u32, d: u32, h: u32) -> RegistryTime {
    RegistryTime(Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap().timestamp_millis())
}
fn hours(n: i64) -> i64 {
    n * 3_600_000
}
fn ca(id: &str) -> CaId {
    CaId::parse(id).unwrap()
}
fn citizen(s: &str) -> Cccd {
    Cccd::parse(s, 2023).unwrap()
}
const CITIZEN: &str = "046196000123";

/// A registry with a log of its own: `given` facts are decided and applied like live ones.
struct World {
    r: Registry,
    seq: u64,
    log: Vec<(Seq, RegistryTime, Event)>,
}

impl World {
    fn new() -> Self {
        let mut w = World { r: Registry::new(Campaign::from_toml(HUE).unwrap()), seq: 0, log: vec![] };
        for (id, name, app) in commands::domain::ca::SEED_CAS {
            w.ok(Command::RegisterCa { ca: ca(id), name: name.into(), app_name: app.into() }, at(2023, 8, 1, 0));
        }
        w
    }
    fn run(&mut self, cmd: Command, now: RegistryTime) -> Result<Vec<Event>, Rejection> {
        let outcome = decide(&self.r, &cmd, now);
        let events = match &outcome {
            Ok(events) => events.clone(),
            Err(rejection) => refusal_event(&cmd, rejection).into_iter().collect(),
        };
        for e in events {
            self.seq += 1;
            apply(&mut self.r, Seq(self.seq), now, &e);
            self.log.push((Seq(self.seq), now, e));
        }
        outcome
    }
    fn ok(&mut self, cmd: Command, now: RegistryTime) -> Vec<Event> {
        self.run(cmd, now).unwrap_or_else(|r| panic!("expected acceptance, got {r}"))
    }
    fn last_event(&self) -> &Event {
        &self.log.last().unwrap().2
    }
    fn replayed(&self) -> Registry {
        let mut r = Registry::new(self.r.campaign.clone());
        for (seq, t, e) in &self.log {
            apply(&mut r, *seq, *t, e);
        }
        r
    }
}

fn issuance(c: &str, by: &str, channel: Channel, activated_at: RegistryTime) -> RecordIssuance {
    RecordIssuance {
        citizen: citizen(c),
        ca: ca(by),
        channel,
        segment: Segment::AdultCitizen,
        commune: COMMUNE.into(),
        place: Place::Commune,
        status: IssuanceStatus::Active,
        staff: None,
        serial: None,
        activated_at,
    }
}
fn record(c: &str, by: &str, activated_at: RegistryTime) -> Command {
    Command::RecordIssuance(Box::new(issuance(c, by, Channel::App, activated_at)))
}

#[test]
fn r1_r3_first_recorded_wins_and_the_second_ca_is_told_who_and_when() {
    let mut w = World::new();
    let t = at(2023, 9, 1, 10);
    w.ok(record(CITIZEN, "VNPT-CA", t), t);
    let first = Seq(w.seq);
    let refused = w.run(record(CITIZEN, "VIETTEL-CA", t), t).unwrap_err();
    assert_eq!(refused, Rejection::AlreadyIssued { by_ca: ca("VNPT-CA"), first_recorded_seq: first, recorded_at: t });
    assert_eq!(refused.code(), "already-issued");
    // R13: the refused attempt is itself a fact the Sở can check complaints against.
    assert!(matches!(w.last_event(), Event::AttemptRefused { reason: RefusalReason::AlreadyIssued { .. }, .. }));
    assert_eq!(w.r.holder(w.r.citizen(&citizen(CITIZEN)).unwrap().holding.as_ref().unwrap()), &ca("VNPT-CA"));
}

#[test]
fn r2_lookups_are_recorded_with_ca_and_staff() {
    let mut w = World::new();
    let events =
        w.ok(Command::LookUpCitizen { citizen: citizen(CITIZEN), ca: ca("MISA-CA"), staff: None }, at(2023, 9, 1, 9));
    assert!(matches!(&events[0], Event::CitizenLookedUp { ca: c, .. } if c == &ca("MISA-CA")));
}

#[test]
fn r4_a_late_record_is_flagged_and_still_counts_when_first() {
    let mut w = World::new();
    let activated = at(2023, 9, 1, 8);
    let events = w.ok(record(CITIZEN, "FPT-CA", activated), activated.plus_ms(hours(5)));
    let Event::IssuanceRecorded(i) = &events[0] else { panic!("expected an issuance") };
    assert!(i.late);
    let events = w.ok(record("046196000124", "FPT-CA", activated), activated.plus_ms(59 * 60_000));
    let Event::IssuanceRecorded(i) = &events[0] else { panic!("expected an issuance") };
    assert!(!i.late);
}

#[test]
fn r4_a_late_record_loses_to_one_recorded_earlier() {
    let mut w = World::new();
    let a_activated = at(2023, 9, 1, 8);
    let b_activated = at(2023, 9, 1, 9);
    // A activated first but records late; B activated later and recorded at once.
    w.ok(record(CITIZEN, "VIETTEL-CA", b_activated), b_activated);
    let refused = w.run(record(CITIZEN, "VNPT-CA", a_activated), a_activated.plus_ms(hours(6))).unwrap_err();
    assert!(matches!(refused, Rejection::AlreadyIssued { by_ca, .. } if by_ca == ca("VIETTEL-CA")));
}

#[test]
fn r5_a_technical_error_activation_counts_as_issued() {
    let mut w = World::new();
    let t = at(2023, 9, 1, 8);
    let mut i = issuance(CITIZEN, "BKAV-CA", Channel::CaOffice, t);
    i.status = IssuanceStatus::TechnicalError;
    w.ok(Command::RecordIssuance(Box::new(i)), t);
    assert!(matches!(w.run(record(CITIZEN, "CA2", t), t), Err(Rejection::AlreadyIssued { .. })));
}

#[test]
fn r6_legacy_imports_block_duplicates_and_reimporting_appends_nothing() {
    let mut w = World::new();
    let before = at(2023, 5, 1, 0);
    let import = Command::ImportLegacyIssuance {
        citizen: citizen(CITIZEN),
        ca: ca("VNPT-CA"),
        issued_at: before,
        serial: Some("S1".into()),
    };
    assert_eq!(w.ok(import.clone(), at(2023, 8, 2, 0)).len(), 1);
    assert!(w.ok(import, at(2023, 8, 3, 0)).is_empty(), "idempotent re-import");
    let t = at(2023, 9, 1, 8);
    assert!(matches!(w.run(record(CITIZEN, "MISA-CA", t), t), Err(Rejection::AlreadyIssued { .. })));
}

#[test]
fn r7_switching_after_three_months_leaves_nine_months_free() {
    let mut w = World::new();
    let activated = at(2023, 8, 10, 9);
    w.ok(record(CITIZEN, "VNPT-CA", activated), activated);
    let three_months_later = at(2023, 11, 10, 9);
    let switch = Command::SwitchCa(Box::new(issuance(CITIZEN, "VIETTEL-CA", Channel::App, three_months_later)));
    let events = w.ok(switch, three_months_later);
    let Event::IssuanceRecorded(i) = &events[0] else { panic!("expected an issuance") };
    assert_eq!(i.free_until, at(2024, 8, 10, 9), "free until A's year ends: 9 months with B");
    assert_eq!(i.switched_from, Some(ca("VNPT-CA")));
    let holding = w.r.citizen(&citizen(CITIZEN)).unwrap().holding.unwrap();
    assert_eq!(w.r.holder(&holding), &ca("VIETTEL-CA"), "still exactly one campaign certificate, now B's");
    let again = Command::SwitchCa(Box::new(issuance(CITIZEN, "VIETTEL-CA", Channel::App, three_months_later)));
    assert_eq!(w.run(again, three_months_later), Err(Rejection::SwitchToSameCa));
}

#[test]
fn r8_recording_ahead_of_activation_is_refused() {
    let mut w = World::new();
    let now = at(2023, 9, 1, 8);
    assert!(matches!(w.run(record(CITIZEN, "VNPT-CA", now.plus_ms(1)), now), Err(Rejection::ActivatedInFuture { .. })));
}

#[test]
fn r11_door_to_door_needs_an_authorized_staff_member_and_the_qr_answers() {
    let mut w = World::new();
    let t = at(2023, 9, 1, 8);
    let token = [7u8; 32];
    w.ok(
        Command::RegisterStaff {
            ca: ca("VNPT-CA"),
            full_name: "Nguyễn Văn A".into(),
            birth_year: 1990,
            position: "field staff".into(),
            photo_ref: "photos/1.jpg".into(),
            token_hash: token,
        },
        t,
    );
    let (staff, issuer) = w.r.verify_staff(&token).expect("authorized");
    assert_eq!((staff.full_name.as_str(), issuer.id.as_str()), ("Nguyễn Văn A", "VNPT-CA"));
    assert!(w.r.verify_staff(&[8u8; 32]).is_none(), "unknown token: not authorized");

    let mut d2d = issuance(CITIZEN, "VNPT-CA", Channel::DoorToDoor, t);
    assert!(matches!(
        w.run(Command::RecordIssuance(Box::new(d2d.clone())), t),
        Err(Rejection::StaffNotAuthorized { .. })
    ));
    assert!(matches!(w.last_event(), Event::AttemptRefused { reason: RefusalReason::StaffNotAuthorized { .. }, .. }));
    d2d.staff = Some(1);
    let mut other_ca = d2d.clone();
    other_ca.ca = ca("VIETTEL-CA");
    assert!(matches!(w.run(Command::RecordIssuance(Box::new(other_ca)), t), Err(Rejection::StaffNotAuthorized { .. })));
    w.ok(Command::RecordIssuance(Box::new(d2d)), t);

    w.ok(Command::RevokeStaff { ca: ca("VNPT-CA"), staff: 1 }, t);
    assert!(w.r.verify_staff(&token).is_none(), "revoked: not authorized");
}

#[test]
fn r12_an_unanswered_demand_expires_at_48h_and_the_citizen_may_choose_again() {
    let mut w = World::new();
    let t = at(2023, 9, 1, 8);
    let register = |ca_choice: Option<&str>| Command::RegisterDemand {
        citizen: citizen(CITIZEN),
        mode: DemandMode::Home,
        phone: "0905123456".into(),
        commune: COMMUNE.into(),
        chosen_ca: ca_choice.map(ca),
    };
    w.ok(register(Some("MISA-CA")), t);
    assert!(matches!(w.run(register(Some("FPT-CA")), t), Err(Rejection::DemandAlreadyOpen { demand: 1 })));
    assert!(matches!(
        w.run(Command::ExpireDemand { demand: 1 }, t.plus_ms(hours(47))),
        Err(Rejection::DemandNotDue { .. })
    ));
    w.ok(Command::ExpireDemand { demand: 1 }, t.plus_ms(hours(48)));
    assert_eq!(w.r.demands[&1].state, DemandState::Expired);
    assert!(w.run(Command::ExpireDemand { demand: 1 }, t.plus_ms(hours(49))).is_err(), "expires exactly once");
    w.ok(register(Some("FPT-CA")), t.plus_ms(hours(49)));
    // The CA acts: acknowledging stops the clock, issuing closes the demand.
    w.ok(Command::AcknowledgeDemand { demand: 2, ca: ca("FPT-CA") }, t.plus_ms(hours(50)));
    assert!(w.run(Command::ExpireDemand { demand: 2 }, t.plus_ms(hours(200))).is_err());
    let issued = t.plus_ms(hours(51));
    let events = w.ok(Command::RecordIssuance(Box::new(issuance(CITIZEN, "FPT-CA", Channel::Demand, issued))), issued);
    let Event::IssuanceRecorded(i) = &events[0] else { panic!("expected an issuance") };
    assert_eq!(i.closed_demand, Some(2));
    assert_eq!(w.r.demands[&2].state, DemandState::Fulfilled);
}

#[test]
fn r12_r14_r19_an_open_choice_goes_to_the_zone_ca_else_by_rotation() {
    let mut w = World::new();
    let t = at(2023, 9, 1, 8);
    w.ok(Command::AssignZone { ca: ca("BKAV-CA"), commune: COMMUNE.into() }, t);
    let demand = |c: &str, commune: &str| Command::RegisterDemand {
        citizen: citizen(c),
        mode: DemandMode::Remote,
        phone: "0905123456".into(),
        commune: commune.into(),
        chosen_ca: None,
    };
    let events = w.ok(demand("046196000001", COMMUNE), t);
    assert!(matches!(&events[1], Event::CaAssigned { ca: c, rule: AssignmentRule::Zone, .. } if c == &ca("BKAV-CA")));
    let mut assigned = vec![];
    for i in 0..12 {
        let events = w.ok(demand(&format!("04619600{:04}", 100 + i), OTHER_COMMUNE), t);
        let Event::CaAssigned { ca, rule: AssignmentRule::Rotation, .. } = &events[1] else { panic!("rotation") };
        assigned.push(ca.clone());
    }
    for (id, _, _) in commands::domain::ca::SEED_CAS {
        assert_eq!(assigned.iter().filter(|c| c.as_str() == id).count(), 2, "equal shares for {id}");
    }
}

#[test]
fn r13_an_upheld_complaint_logs_a_violation_and_an_expelled_ca_is_refused_and_logged() {
    let mut w = World::new();
    let t = at(2023, 9, 1, 8);
    w.ok(record(CITIZEN, "CA2", t), t);
    w.ok(
        Command::FileComplaint {
            against: ca("CA2"),
            kind: ComplaintKind::IssuedWithoutConsent,
            citizen: Some(citizen(CITIZEN)),
            text: "I never agreed".into(),
        },
        t,
    );
    let events = w.ok(
        Command::ResolveComplaint {
            complaint: 1,
            upheld: true,
            checked: vec![Seq(7)],
            note: "no consent on file".into(),
        },
        t,
    );
    assert!(matches!(&events[1], Event::ViolationLogged { complaint: Some(1), .. }));
    w.ok(Command::ExpelCa { ca: ca("CA2"), reason: "violation".into(), violations: vec![Seq(w.seq)] }, t);
    let refused = w.run(record("046196000999", "CA2", t), t).unwrap_err();
    assert_eq!(refused, Rejection::CaNotActive { ca: ca("CA2"), status: "expelled" });
    assert!(matches!(w.last_event(), Event::AttemptRefused { reason: RefusalReason::CaNotActive { .. }, .. }));
    // Earlier issuances stay valid.
    assert_eq!(w.r.holder(w.r.citizen(&citizen(CITIZEN)).unwrap().holding.as_ref().unwrap()), &ca("CA2"));
}

#[test]
fn r14_door_to_door_in_another_cas_zone_is_refused() {
    let mut w = World::new();
    let t = at(2023, 9, 1, 8);
    w.ok(Command::AssignZone { ca: ca("VIETTEL-CA"), commune: COMMUNE.into() }, t);
    w.ok(
        Command::RegisterStaff {
            ca: ca("VNPT-CA"),
            full_name: "B".into(),
            birth_year: 1990,
            position: "p".into(),
            photo_ref: "x".into(),
            token_hash: [1; 32],
        },
        t,
    );
    let mut d2d = issuance(CITIZEN, "VNPT-CA", Channel::DoorToDoor, t);
    d2d.staff = Some(1);
    assert!(matches!(w.run(Command::RecordIssuance(Box::new(d2d)), t), Err(Rejection::OutsideZone { .. })));
}

#[test]
fn r16_under_sixteen_is_refused() {
    let mut w = World::new();
    let t = at(2023, 9, 1, 8);
    let young = "046208000001"; // born 2008: 15 in 2023
    assert!(matches!(
        w.run(record(young, "VNPT-CA", t), t),
        Err(Rejection::TooYoung { birth_year: 2008, min_age: 16 })
    ));
}

#[test]
fn r17_door_to_door_closes_after_phase_one() {
    let mut w = World::new();
    let phase2 = at(2023, 11, 15, 8);
    w.ok(
        Command::RegisterStaff {
            ca: ca("VNPT-CA"),
            full_name: "C".into(),
            birth_year: 1990,
            position: "p".into(),
            photo_ref: "x".into(),
            token_hash: [2; 32],
        },
        phase2,
    );
    let mut d2d = issuance(CITIZEN, "VNPT-CA", Channel::DoorToDoor, phase2);
    d2d.staff = Some(1);
    assert!(matches!(w.run(Command::RecordIssuance(Box::new(d2d)), phase2), Err(Rejection::ChannelClosed { .. })));
    assert!(
        matches!(
            w.run(record(CITIZEN, "VNPT-CA", at(2023, 7, 1, 0)), at(2023, 7, 1, 0)),
            Err(Rejection::ChannelClosed { .. })
        ),
        "before launch"
    );
}

#[test]
fn r20_the_campaign_issues_one_certificate_even_when_the_same_ca_retries() {
    let mut w = World::new();
    let t = at(2023, 9, 1, 8);
    w.ok(record(CITIZEN, "VNPT-CA", t), t);
    assert!(matches!(w.run(record(CITIZEN, "VNPT-CA", t), t), Err(Rejection::AlreadyIssued { .. })));
}

#[test]
fn replaying_the_log_rebuilds_the_live_state() {
    let mut w = World::new();
    let t = at(2023, 9, 1, 8);
    w.ok(record(CITIZEN, "VNPT-CA", t), t);
    let _ = w.run(record(CITIZEN, "MISA-CA", t), t);
    w.ok(
        Command::RegisterDemand {
            citizen: citizen("046196000777"),
            mode: DemandMode::Home,
            phone: "0905123456".into(),
            commune: COMMUNE.into(),
            chosen_ca: None,
        },
        t,
    );
    assert_eq!(w.replayed(), w.r);
}
