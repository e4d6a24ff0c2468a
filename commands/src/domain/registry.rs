//! The registry's state and its two pure functions: `decide` (may this command happen, and
//! what facts does it produce?) and `apply` (fold a recorded fact into state). No I/O, no
//! clock, no randomness: `now` and anything random arrive as arguments.

use super::admin_units::{Unit, communes_of};
use super::ca::{Ca, CaId, CaStatus};
use super::campaign::Campaign;
use super::cccd::Cccd;
use super::channel::{Channel, DemandMode, IssuanceStatus};
use super::command::{Command, RecordIssuance};
use super::event::{
    AssignmentRule, ComplaintId, ComplaintKind, DemandId, Event, IssuanceRecorded, Place, RefusalReason, StaffId,
};
use super::interned::{Interned, Interner};
use super::rejection::Rejection;
use chrono::{Datelike, NaiveDate};
use event_store::{RegistryTime, Seq};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The campaign certificate a citizen holds in the registry (R1, R3). Plain data: the CA
/// and the place are interned in the registry ([`Registry::holder`], [`Registry::place`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    pub ca: Interned,
    /// The seq of the event that made this CA the holder.
    pub seq: Seq,
    pub recorded_at: RegistryTime,
    pub activated_at: RegistryTime,
    pub free_until: RegistryTime,
    /// `None` for an imported pre-campaign certificate (R6).
    pub channel: Option<Channel>,
    pub status: IssuanceStatus,
    pub place: Option<Interned>,
    pub legacy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Citizen {
    pub holding: Option<Holding>,
    pub open_demand: Option<DemandId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DemandState {
    Open,
    Acknowledged,
    Expired,
    Fulfilled,
}

impl DemandState {
    pub fn name(self) -> &'static str {
        match self {
            DemandState::Open => "open",
            DemandState::Acknowledged => "acknowledged",
            DemandState::Expired => "expired",
            DemandState::Fulfilled => "fulfilled",
        }
    }
}

/// Plain data, like [`Holding`]: the CA is interned ([`Registry::demand_ca`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demand {
    pub citizen: Cccd,
    pub mode: DemandMode,
    pub ca: Option<Interned>,
    pub expires_at: RegistryTime,
    pub state: DemandState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staff {
    pub ca: CaId,
    pub full_name: String,
    pub birth_year: u16,
    pub position: String,
    pub photo_ref: String,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Complaint {
    pub against: CaId,
    pub kind: ComplaintKind,
    pub resolved: Option<bool>,
}

pub use super::citizens::CitizenMap;

/// Everything `decide` needs. Built by folding the log with [`apply`], so a replay gives
/// exactly the live state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    pub campaign: Campaign,
    pub units: BTreeMap<String, Unit>,
    pub cas: BTreeMap<CaId, Ca>,
    pub citizens: CitizenMap,
    pub demands: BTreeMap<DemandId, Demand>,
    pub staff: BTreeMap<StaffId, Staff>,
    pub staff_by_token: HashMap<[u8; 32], StaffId>,
    pub zones: BTreeMap<String, CaId>,
    pub counters: BTreeMap<String, String>,
    pub booths: BTreeMap<(String, NaiveDate), CaId>,
    pub complaints: BTreeMap<ComplaintId, Complaint>,
    pub next_demand: DemandId,
    pub next_staff: StaffId,
    pub next_complaint: ComplaintId,
    /// R19: how many demands were assigned by rotation; the next goes to the next CA.
    pub rotation: u64,
    /// The CAs that holdings and demands name, and the places of holdings.
    pub ca_ids: Interner<CaId>,
    pub places: Interner<Place>,
}

const MS_PER_MINUTE: i64 = 60_000;
const MS_PER_HOUR: i64 = 3_600_000;

pub fn date_of(t: RegistryTime) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(t.0).map(|d| d.date_naive()).unwrap_or_default()
}

fn add_months(t: RegistryTime, months: u32) -> RegistryTime {
    chrono::DateTime::from_timestamp_millis(t.0)
        .and_then(|d| d.checked_add_months(chrono::Months::new(months)))
        .map(|d| RegistryTime(d.timestamp_millis()))
        .unwrap_or(RegistryTime(i64::MAX))
}

impl Registry {
    pub fn new(campaign: Campaign) -> Self {
        Self {
            units: communes_of(&campaign.province_code),
            campaign,
            cas: BTreeMap::new(),
            citizens: CitizenMap::default(),
            demands: BTreeMap::new(),
            staff: BTreeMap::new(),
            staff_by_token: HashMap::new(),
            zones: BTreeMap::new(),
            counters: BTreeMap::new(),
            booths: BTreeMap::new(),
            complaints: BTreeMap::new(),
            next_demand: 1,
            next_staff: 1,
            next_complaint: 1,
            rotation: 0,
            ca_ids: Interner::default(),
            places: Interner::default(),
        }
    }

    /// The CA that holds `h`.
    pub fn holder(&self, h: &Holding) -> &CaId {
        self.ca_ids.get(h.ca)
    }

    /// The CA a demand is for, chosen or assigned.
    pub fn demand_ca(&self, d: &Demand) -> Option<&CaId> {
        d.ca.map(|i| self.ca_ids.get(i))
    }

    /// Where `h` was issued (`None` for an imported pre-campaign certificate).
    pub fn place(&self, h: &Holding) -> Option<&Place> {
        h.place.map(|p| self.places.get(p))
    }

    pub fn citizen(&self, c: &Cccd) -> Option<&Citizen> {
        self.citizens.get(c)
    }

    fn ca(&self, ca: &CaId) -> Result<&Ca, Rejection> {
        self.cas.get(ca).ok_or_else(|| Rejection::UnknownCa(ca.clone()))
    }

    /// R13: only an active CA acts.
    fn active_ca(&self, ca: &CaId) -> Result<&Ca, Rejection> {
        let c = self.ca(ca)?;
        match c.status {
            CaStatus::Active => Ok(c),
            CaStatus::Suspended => Err(Rejection::CaNotActive { ca: ca.clone(), status: "suspended" }),
            CaStatus::Expelled => Err(Rejection::CaNotActive { ca: ca.clone(), status: "expelled" }),
        }
    }

    fn unit(&self, commune: &str) -> Result<&Unit, Rejection> {
        self.units.get(commune).ok_or_else(|| Rejection::UnknownCommune(commune.to_string()))
    }

    /// R11: the staff member exists, belongs to `ca` and is not revoked.
    fn authorized_staff(&self, ca: &CaId, staff: Option<StaffId>) -> Result<(), Rejection> {
        let refused = || Rejection::StaffNotAuthorized { ca: ca.clone(), staff };
        let s = staff.and_then(|id| self.staff.get(&id)).ok_or_else(refused)?;
        if s.revoked || &s.ca != ca { Err(refused()) } else { Ok(()) }
    }

    /// R16: old enough in the year of `now`.
    fn old_enough(&self, citizen: &Cccd, now: RegistryTime) -> Result<(), Rejection> {
        let year = date_of(now).year();
        if year - i32::from(citizen.birth_year()) < i32::from(self.campaign.min_age) {
            return Err(Rejection::TooYoung { birth_year: citizen.birth_year(), min_age: self.campaign.min_age });
        }
        Ok(())
    }

    fn already_issued(&self, citizen: &Cccd) -> Result<(), Rejection> {
        match self.citizens.get(citizen).and_then(|c| c.holding.as_ref()) {
            Some(h) => Err(Rejection::AlreadyIssued {
                by_ca: self.holder(h).clone(),
                first_recorded_seq: h.seq,
                recorded_at: h.recorded_at,
            }),
            None => Ok(()),
        }
    }

    /// What the citizen's QR scan answers (R11): `Some` only for an authorized staff member
    /// of an active CA.
    pub fn verify_staff(&self, token_hash: &[u8; 32]) -> Option<(&Staff, &Ca)> {
        let staff = self.staff.get(self.staff_by_token.get(token_hash)?)?;
        let ca = self.cas.get(&staff.ca)?;
        (!staff.revoked && ca.status == CaStatus::Active).then_some((staff, ca))
    }
}

/// R1–R19: may this command happen now, and which facts does it produce?
pub fn decide(r: &Registry, cmd: &Command, now: RegistryTime) -> Result<Vec<Event>, Rejection> {
    match cmd {
        Command::RegisterCa { ca, name, app_name } => {
            if r.cas.contains_key(ca) {
                return Err(Rejection::CaAlreadyRegistered(ca.clone()));
            }
            non_empty("name", name)?;
            Ok(vec![Event::CaRegistered { ca: ca.clone(), name: name.clone(), app_name: app_name.clone() }])
        }
        Command::SuspendCa { ca, reason } => {
            r.active_ca(ca)?;
            Ok(vec![Event::CaSuspended { ca: ca.clone(), reason: reason.clone() }])
        }
        Command::ReinstateCa { ca } => match r.ca(ca)?.status {
            CaStatus::Suspended => Ok(vec![Event::CaReinstated { ca: ca.clone() }]),
            CaStatus::Active => Ok(vec![]),
            CaStatus::Expelled => Err(Rejection::CaNotActive { ca: ca.clone(), status: "expelled" }),
        },
        Command::ExpelCa { ca, reason, violations } => match r.ca(ca)?.status {
            CaStatus::Expelled => Ok(vec![]),
            _ => Ok(vec![Event::CaExpelled { ca: ca.clone(), reason: reason.clone(), violations: violations.clone() }]),
        },
        Command::AssignZone { ca, commune } => {
            r.active_ca(ca)?;
            let unit = r.unit(commune)?;
            if r.zones.get(commune) == Some(ca) {
                return Ok(vec![]);
            }
            Ok(vec![Event::ZoneAssigned {
                ca: ca.clone(),
                district: unit.district_code.clone(),
                commune: commune.clone(),
            }])
        }
        Command::RegisterCounter { counter, commune } => {
            r.unit(commune)?;
            non_empty("counter", counter)?;
            Ok(vec![Event::CounterRegistered { counter: counter.clone(), commune: commune.clone() }])
        }
        Command::ScheduleBooth { booth, commune, ca, week_start } => {
            r.active_ca(ca)?;
            r.unit(commune)?;
            non_empty("booth", booth)?;
            if week_start.weekday() != chrono::Weekday::Mon {
                return Err(Rejection::Invalid {
                    field: "week_start",
                    problem: format!("{week_start} is not a Monday"),
                });
            }
            Ok(vec![Event::BoothScheduled {
                booth: booth.clone(),
                commune: commune.clone(),
                ca: ca.clone(),
                week_start: *week_start,
            }])
        }
        Command::RegisterStaff { ca, full_name, birth_year, position, photo_ref, token_hash } => {
            r.active_ca(ca)?;
            non_empty("full_name", full_name)?;
            non_empty("position", position)?;
            let age = date_of(now).year() - i32::from(*birth_year);
            if !(16..=100).contains(&age) {
                return Err(Rejection::Invalid {
                    field: "birth_year",
                    problem: format!("{birth_year} gives an age of {age}"),
                });
            }
            Ok(vec![Event::StaffRegistered {
                staff: r.next_staff,
                ca: ca.clone(),
                full_name: full_name.clone(),
                birth_year: *birth_year,
                position: position.clone(),
                photo_ref: photo_ref.clone(),
                token_hash: *token_hash,
            }])
        }
        Command::RevokeStaff { ca, staff } => match r.staff.get(staff) {
            // Another CA's staff is reported as unknown: a CA sees only its own.
            Some(s) if &s.ca == ca => {
                Ok(if s.revoked { vec![] } else { vec![Event::StaffRevoked { staff: *staff, ca: ca.clone() }] })
            }
            _ => Err(Rejection::UnknownStaff(*staff)),
        },
        Command::LookUpCitizen { citizen, ca, staff } => {
            r.active_ca(ca)?;
            if staff.is_some() {
                r.authorized_staff(ca, *staff)?;
            }
            Ok(vec![Event::CitizenLookedUp { citizen: *citizen, ca: ca.clone(), staff: *staff }])
        }
        Command::RecordIssuance(cmd) => decide_issuance(r, cmd, now, false),
        Command::SwitchCa(cmd) => decide_issuance(r, cmd, now, true),
        Command::ImportLegacyIssuance { citizen, ca, issued_at, serial } => {
            r.active_ca(ca)?;
            if *issued_at > now {
                return Err(Rejection::ActivatedInFuture { activated_at: *issued_at, now });
            }
            // R6: re-importing the same row appends nothing.
            if let Some(h) = r.citizen(citizen).and_then(|c| c.holding.as_ref())
                && h.legacy
                && r.holder(h) == ca
                && h.activated_at == *issued_at
            {
                return Ok(vec![]);
            }
            r.already_issued(citizen)?;
            let free_until = add_months(*issued_at, r.campaign.free_months);
            Ok(vec![Event::LegacyIssuanceImported {
                citizen: *citizen,
                ca: ca.clone(),
                issued_at: *issued_at,
                serial: serial.clone(),
                free_until,
            }])
        }
        Command::RegisterDemand { citizen, mode, phone, commune, chosen_ca } => {
            r.old_enough(citizen, now)?;
            let unit = r.unit(commune)?;
            if phone.len() < 9 || phone.len() > 15 || !phone.bytes().all(|b| b.is_ascii_digit() || b == b'+') {
                return Err(Rejection::Invalid {
                    field: "phone",
                    problem: "9 to 15 digits, optionally starting with +".into(),
                });
            }
            r.already_issued(citizen)?;
            if let Some(open) = r.citizen(citizen).and_then(|c| c.open_demand) {
                return Err(Rejection::DemandAlreadyOpen { demand: open });
            }
            let demand = r.next_demand;
            let expires_at = RegistryTime(now.0 + i64::from(r.campaign.demand_ttl_hours) * MS_PER_HOUR);
            let mut events = vec![Event::DemandRegistered {
                demand,
                citizen: *citizen,
                mode: *mode,
                phone: phone.clone(),
                district: unit.district_code.clone(),
                commune: commune.clone(),
                chosen_ca: chosen_ca.clone(),
                expires_at,
            }];
            match chosen_ca {
                Some(ca) => {
                    r.active_ca(ca)?;
                }
                None => {
                    let (ca, rule) = assign(r, commune)?;
                    events.push(Event::CaAssigned { demand, ca, rule });
                }
            }
            Ok(events)
        }
        Command::AcknowledgeDemand { demand, ca } => {
            let d = r.demands.get(demand).ok_or(Rejection::UnknownDemand(*demand))?;
            let demand_ca = r.demand_ca(d);
            if demand_ca != Some(ca) {
                return Err(Rejection::NotYourDemand { demand: *demand, ca: demand_ca.unwrap_or(ca).clone() });
            }
            r.active_ca(ca)?;
            match d.state {
                DemandState::Open => Ok(vec![Event::DemandAcknowledged { demand: *demand, ca: ca.clone() }]),
                DemandState::Acknowledged => Ok(vec![]),
                s => Err(Rejection::DemandNotOpen { demand: *demand, state: s.name() }),
            }
        }
        Command::ExpireDemand { demand } => {
            let d = r.demands.get(demand).ok_or(Rejection::UnknownDemand(*demand))?;
            if d.state != DemandState::Open {
                return Err(Rejection::DemandNotOpen { demand: *demand, state: d.state.name() });
            }
            if now < d.expires_at {
                return Err(Rejection::DemandNotDue { demand: *demand, expires_at: d.expires_at });
            }
            let ca = r
                .demand_ca(d)
                .cloned()
                .expect("an open demand always has a CA: chosen or assigned in the same command");
            Ok(vec![Event::DemandExpired { demand: *demand, ca }])
        }
        Command::FileComplaint { against, kind, citizen, text } => {
            r.ca(against)?;
            non_empty("text", text)?;
            Ok(vec![Event::ComplaintFiled {
                complaint: r.next_complaint,
                against: against.clone(),
                kind: *kind,
                citizen: *citizen,
                text: text.clone(),
            }])
        }
        Command::ResolveComplaint { complaint, upheld, checked, note } => {
            let c = r.complaints.get(complaint).ok_or(Rejection::UnknownComplaint(*complaint))?;
            if c.resolved.is_some() {
                return Err(Rejection::ComplaintAlreadyResolved(*complaint));
            }
            let mut events = vec![Event::ComplaintResolved {
                complaint: *complaint,
                upheld: *upheld,
                checked: checked.clone(),
                note: note.clone(),
            }];
            // R13: an upheld complaint is an established violation, published.
            if *upheld {
                events.push(Event::ViolationLogged {
                    ca: c.against.clone(),
                    kind: c.kind,
                    complaint: Some(*complaint),
                    description: note.clone(),
                    evidence: checked.clone(),
                });
            }
            Ok(events)
        }
        Command::LogViolation { ca, kind, complaint, description, evidence } => {
            r.ca(ca)?;
            non_empty("description", description)?;
            Ok(vec![Event::ViolationLogged {
                ca: ca.clone(),
                kind: *kind,
                complaint: *complaint,
                description: description.clone(),
                evidence: evidence.clone(),
            }])
        }
    }
}

fn non_empty(field: &'static str, value: &str) -> Result<(), Rejection> {
    if value.trim().is_empty() || value.len() > 512 {
        return Err(Rejection::Invalid { field, problem: "must be 1 to 512 characters".into() });
    }
    Ok(())
}

/// R12, R14, R19: the zone's CA where the commune is zoned, otherwise the next active CA in
/// rotation.
fn assign(r: &Registry, commune: &str) -> Result<(CaId, AssignmentRule), Rejection> {
    if let Some(ca) = r.zones.get(commune)
        && r.active_ca(ca).is_ok()
    {
        return Ok((ca.clone(), AssignmentRule::Zone));
    }
    let active: Vec<&CaId> = r.cas.values().filter(|c| c.status == CaStatus::Active).map(|c| &c.id).collect();
    if active.is_empty() {
        return Err(Rejection::NoActiveCa);
    }
    Ok((active[(r.rotation % active.len() as u64) as usize].clone(), AssignmentRule::Rotation))
}

/// R1–R5, R7, R8, R11, R14, R17, R18.
fn decide_issuance(
    r: &Registry,
    cmd: &RecordIssuance,
    now: RegistryTime,
    switch: bool,
) -> Result<Vec<Event>, Rejection> {
    r.active_ca(&cmd.ca)?;
    if cmd.activated_at > now {
        return Err(Rejection::ActivatedInFuture { activated_at: cmd.activated_at, now });
    }
    r.old_enough(&cmd.citizen, now)?;
    let unit = r.unit(&cmd.commune)?;
    let phase = r.campaign.phase_at(date_of(now));
    if !phase.is_some_and(|p| p.channels.contains(&cmd.channel)) {
        return Err(Rejection::ChannelClosed {
            channel: cmd.channel.name(),
            phase: phase.map_or_else(|| "campaign not running".to_string(), |p| p.name.clone()),
        });
    }
    if cmd.channel.needs_staff() || cmd.staff.is_some() {
        r.authorized_staff(&cmd.ca, cmd.staff)?;
    }
    match (&cmd.place, cmd.channel) {
        (Place::Counter(id), Channel::OneStopCounter) if r.counters.contains_key(id) => {}
        (Place::Booth(id), Channel::Booth) => {
            let monday = date_of(now) - chrono::Days::new(u64::from(date_of(now).weekday().num_days_from_monday()));
            if r.booths.get(&(id.clone(), monday)) != Some(&cmd.ca) {
                return Err(Rejection::Invalid {
                    field: "place",
                    problem: format!("booth {id} is not run by {} this week", cmd.ca),
                });
            }
        }
        (Place::Commune, c) if c != Channel::OneStopCounter && c != Channel::Booth => {}
        _ => {
            return Err(Rejection::Invalid {
                field: "place",
                problem: "counter issuances name a registered counter, booth issuances a booth; others the commune"
                    .into(),
            });
        }
    }
    if cmd.channel == Channel::DoorToDoor
        && let Some(zone_ca) = r.zones.get(&cmd.commune).filter(|z| **z != cmd.ca)
    {
        return Err(Rejection::OutsideZone { commune: cmd.commune.clone(), zone_ca: zone_ca.clone() });
    }
    let citizen = r.citizen(&cmd.citizen);
    let holding = citizen.and_then(|c| c.holding.as_ref());
    let (free_until, switched_from) = if switch {
        let h = holding.ok_or(Rejection::NothingToSwitch)?;
        if r.holder(h) == &cmd.ca {
            return Err(Rejection::SwitchToSameCa);
        }
        // R7: the free year runs from the first certificate; switching does not restart it.
        (h.free_until, Some(r.holder(h).clone()))
    } else {
        r.already_issued(&cmd.citizen)?;
        (add_months(cmd.activated_at, r.campaign.free_months), None)
    };
    let late = now.0 - cmd.activated_at.0 > i64::from(r.campaign.late_after_minutes) * MS_PER_MINUTE;
    Ok(vec![Event::IssuanceRecorded(Box::new(IssuanceRecorded {
        citizen: cmd.citizen,
        ca: cmd.ca.clone(),
        channel: cmd.channel,
        segment: cmd.segment,
        commune: cmd.commune.clone(),
        district: unit.district_code.clone(),
        place: cmd.place.clone(),
        status: cmd.status,
        staff: cmd.staff,
        serial: cmd.serial.clone(),
        activated_at: cmd.activated_at,
        late,
        free_until,
        switched_from,
        closed_demand: citizen.and_then(|c| c.open_demand),
    }))])
}

/// R13: refusals that audits need are recorded as facts of their own. Plain validation
/// failures are not.
pub fn refusal_event(cmd: &Command, rejection: &Rejection) -> Option<Event> {
    let reason = match rejection {
        Rejection::AlreadyIssued { by_ca, first_recorded_seq, .. } => {
            RefusalReason::AlreadyIssued { by_ca: by_ca.clone(), first_recorded_seq: *first_recorded_seq }
        }
        Rejection::CaNotActive { ca, .. } => RefusalReason::CaNotActive { ca: ca.clone() },
        Rejection::StaffNotAuthorized { staff, .. } => RefusalReason::StaffNotAuthorized { staff: *staff },
        _ => return None,
    };
    let (citizen, ca, activated_at) = match cmd {
        Command::RecordIssuance(c) | Command::SwitchCa(c) => (Some(c.citizen), c.ca.clone(), c.activated_at),
        Command::ImportLegacyIssuance { citizen, ca, issued_at, .. } => (Some(*citizen), ca.clone(), *issued_at),
        Command::LookUpCitizen { citizen, ca, .. } => (Some(*citizen), ca.clone(), RegistryTime(0)),
        Command::AcknowledgeDemand { ca, .. }
        | Command::RegisterStaff { ca, .. }
        | Command::ScheduleBooth { ca, .. } => (None, ca.clone(), RegistryTime(0)),
        _ => return None,
    };
    Some(Event::AttemptRefused { citizen, ca, reason, activated_at })
}

/// Folds one recorded fact into state. It cannot fail: the log is the truth, not a request.
pub fn apply(r: &mut Registry, seq: Seq, recorded_at: RegistryTime, event: &Event) {
    match event {
        Event::CaRegistered { ca, name, app_name } => {
            r.ca_ids.intern(ca);
            r.cas.insert(
                ca.clone(),
                Ca { id: ca.clone(), name: name.clone(), app_name: app_name.clone(), status: CaStatus::Active },
            );
        }
        Event::CaSuspended { ca, .. } => set_status(r, ca, CaStatus::Suspended),
        Event::CaReinstated { ca } => set_status(r, ca, CaStatus::Active),
        Event::CaExpelled { ca, .. } => set_status(r, ca, CaStatus::Expelled),
        Event::ZoneAssigned { ca, commune, .. } => {
            r.zones.insert(commune.clone(), ca.clone());
        }
        Event::CounterRegistered { counter, commune } => {
            r.counters.insert(counter.clone(), commune.clone());
        }
        Event::BoothScheduled { booth, ca, week_start, .. } => {
            r.booths.insert((booth.clone(), *week_start), ca.clone());
        }
        Event::StaffRegistered { staff, ca, full_name, birth_year, position, photo_ref, token_hash } => {
            r.staff.insert(
                *staff,
                Staff {
                    ca: ca.clone(),
                    full_name: full_name.clone(),
                    birth_year: *birth_year,
                    position: position.clone(),
                    photo_ref: photo_ref.clone(),
                    revoked: false,
                },
            );
            r.staff_by_token.insert(*token_hash, *staff);
            r.next_staff = r.next_staff.max(staff + 1);
        }
        Event::StaffRevoked { staff, .. } => {
            if let Some(s) = r.staff.get_mut(staff) {
                s.revoked = true;
            }
        }
        Event::CitizenLookedUp { .. } | Event::AttemptRefused { .. } | Event::ViolationLogged { .. } => {}
        Event::IssuanceRecorded(i) => {
            let ca = r.ca_ids.intern(&i.ca);
            let place = r.places.intern(&i.place);
            let citizen = r.citizens.entry(i.citizen).or_default();
            citizen.holding = Some(Holding {
                ca,
                seq,
                recorded_at,
                activated_at: i.activated_at,
                free_until: i.free_until,
                channel: Some(i.channel),
                status: i.status,
                place: Some(place),
                legacy: false,
            });
            // R12: any CA's issuance closes the citizen's open demand.
            if let Some(demand) = citizen.open_demand.take().and_then(|d| r.demands.get_mut(&d)) {
                demand.state = DemandState::Fulfilled;
            }
        }
        Event::LegacyIssuanceImported { citizen, ca, issued_at, free_until, .. } => {
            let ca = r.ca_ids.intern(ca);
            r.citizens.entry(*citizen).or_default().holding = Some(Holding {
                ca,
                seq,
                recorded_at,
                activated_at: *issued_at,
                free_until: *free_until,
                channel: None,
                status: IssuanceStatus::Active,
                place: None,
                legacy: true,
            });
        }
        Event::DemandRegistered { demand, citizen, mode, chosen_ca, expires_at, .. } => {
            let ca = chosen_ca.as_ref().map(|ca| r.ca_ids.intern(ca));
            r.demands.insert(
                *demand,
                Demand { citizen: *citizen, mode: *mode, ca, expires_at: *expires_at, state: DemandState::Open },
            );
            r.citizens.entry(*citizen).or_default().open_demand = Some(*demand);
            r.next_demand = r.next_demand.max(demand + 1);
        }
        Event::CaAssigned { demand, ca, rule } => {
            let ca = r.ca_ids.intern(ca);
            if let Some(d) = r.demands.get_mut(demand) {
                d.ca = Some(ca);
            }
            if *rule == AssignmentRule::Rotation {
                r.rotation += 1;
            }
        }
        Event::DemandAcknowledged { demand, .. } => {
            if let Some(d) = r.demands.get_mut(demand) {
                d.state = DemandState::Acknowledged;
            }
        }
        Event::DemandExpired { demand, .. } => {
            if let Some(d) = r.demands.get_mut(demand) {
                d.state = DemandState::Expired;
                if let Some(c) = r.citizens.get_mut(&d.citizen) {
                    c.open_demand = None;
                }
            }
        }
        Event::ComplaintFiled { complaint, against, kind, .. } => {
            r.complaints.insert(*complaint, Complaint { against: against.clone(), kind: *kind, resolved: None });
            r.next_complaint = r.next_complaint.max(complaint + 1);
        }
        Event::ComplaintResolved { complaint, upheld, .. } => {
            if let Some(c) = r.complaints.get_mut(complaint) {
                c.resolved = Some(*upheld);
            }
        }
    }
}

fn set_status(r: &mut Registry, ca: &CaId, status: CaStatus) {
    if let Some(c) = r.cas.get_mut(ca) {
        c.status = status;
    }
}
