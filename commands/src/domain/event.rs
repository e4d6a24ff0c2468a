//! Facts the registry recorded, in past tense. Never changed once written: a new field
//! means a new `schema_version` and an upcaster in [`Event::decode`].

use super::ca::CaId;
use super::cccd::Cccd;
use super::channel::{Channel, DemandMode, IssuanceStatus, Segment};
use event_store::{RegistryTime, Seq};
use serde::{Deserialize, Serialize};

pub type DemandId = u64;
pub type StaffId = u64;
pub type ComplaintId = u64;

/// Why an attempt that matters to audits was refused (R13): these are logged as events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum RefusalReason {
    /// R1/R3: another CA (or this one) recorded first.
    AlreadyIssued { by_ca: CaId, first_recorded_seq: Seq },
    /// R13: a suspended or expelled CA tried to act.
    CaNotActive { ca: CaId },
    /// R11: the staff member is unknown, revoked or of another CA.
    StaffNotAuthorized { staff: Option<StaffId> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComplaintKind {
    IssuedWithoutConsent,
    PreCollectedData,
    DuplicateIssuance,
    UnauthorizedStaff,
    Other,
}

/// How a demand got its CA when the citizen left the choice open (R12, R19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum AssignmentRule {
    /// The commune is zoned to this CA (R14).
    Zone,
    /// Fair rotation among active CAs (R19).
    Rotation,
}

/// Where an issuance happened, for counts per zone / counter / booth (R14).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Place {
    Commune,
    Counter(String),
    Booth(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssuanceRecorded {
    pub citizen: Cccd,
    pub ca: CaId,
    pub channel: Channel,
    pub segment: Segment,
    pub commune: String,
    pub district: String,
    pub place: Place,
    pub status: IssuanceStatus,
    pub staff: Option<StaffId>,
    pub serial: Option<String>,
    pub activated_at: RegistryTime,
    /// R4: recorded later than the campaign's threshold after activation.
    pub late: bool,
    /// R7: end of the free year; a switch keeps the first CA's end.
    pub free_until: RegistryTime,
    /// R7: the CA the citizen left, when this issuance is a switch.
    pub switched_from: Option<CaId>,
    /// R12: the demand this issuance closed, if any.
    pub closed_demand: Option<DemandId>,
}

/// Every fact the registry records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Event {
    CaRegistered {
        ca: CaId,
        name: String,
        app_name: String,
    },
    CaSuspended {
        ca: CaId,
        reason: String,
    },
    CaReinstated {
        ca: CaId,
    },
    /// R13: final. Earlier issuances stay valid.
    CaExpelled {
        ca: CaId,
        reason: String,
        violations: Vec<Seq>,
    },
    /// R14: the commune is this CA's zone.
    ZoneAssigned {
        ca: CaId,
        district: String,
        commune: String,
    },
    CounterRegistered {
        counter: String,
        commune: String,
    },
    /// R14: a booth in a commune run by a CA for the week starting `week_start` (a Monday).
    BoothScheduled {
        booth: String,
        commune: String,
        ca: CaId,
        week_start: chrono::NaiveDate,
    },
    StaffRegistered {
        staff: StaffId,
        ca: CaId,
        full_name: String,
        birth_year: u16,
        position: String,
        photo_ref: String,
        /// SHA-256 of the QR token; the token itself is never stored.
        #[schema(value_type = Vec<u8>)]
        token_hash: [u8; 32],
    },
    StaffRevoked {
        staff: StaffId,
        ca: CaId,
    },
    /// R2: the CA looked the citizen up.
    CitizenLookedUp {
        citizen: Cccd,
        ca: CaId,
        staff: Option<StaffId>,
    },
    IssuanceRecorded(Box<IssuanceRecorded>),
    /// R13: an attempt refused and logged so complaints can be checked against it
    /// (issuances, switches, imports, lookups, and acts of suspended or expelled CAs).
    AttemptRefused {
        citizen: Option<Cccd>,
        ca: CaId,
        reason: RefusalReason,
        activated_at: RegistryTime,
    },
    /// R6: issued before the campaign, imported; blocks later duplicates.
    LegacyIssuanceImported {
        citizen: Cccd,
        ca: CaId,
        issued_at: RegistryTime,
        serial: Option<String>,
        free_until: RegistryTime,
    },
    DemandRegistered {
        demand: DemandId,
        citizen: Cccd,
        mode: DemandMode,
        phone: String,
        district: String,
        commune: String,
        chosen_ca: Option<CaId>,
        expires_at: RegistryTime,
    },
    CaAssigned {
        demand: DemandId,
        ca: CaId,
        rule: AssignmentRule,
    },
    DemandAcknowledged {
        demand: DemandId,
        ca: CaId,
    },
    /// R12: 48 hours passed without the CA acting.
    DemandExpired {
        demand: DemandId,
        ca: CaId,
    },
    ComplaintFiled {
        complaint: ComplaintId,
        against: CaId,
        kind: ComplaintKind,
        citizen: Option<Cccd>,
        text: String,
    },
    ComplaintResolved {
        complaint: ComplaintId,
        upheld: bool,
        checked: Vec<Seq>,
        note: String,
    },
    /// R13: public.
    ViolationLogged {
        ca: CaId,
        kind: ComplaintKind,
        complaint: Option<ComplaintId>,
        description: String,
        evidence: Vec<Seq>,
    },
}
