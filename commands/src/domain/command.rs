//! What callers ask the registry to do. Callers are already authenticated: `ca` is the CA
//! the API verified the token of (R19: a CA acts only as itself).

use super::ca::CaId;
use super::cccd::Cccd;
use super::channel::{Channel, DemandMode, IssuanceStatus, Segment};
use super::event::{ComplaintId, ComplaintKind, DemandId, Place, StaffId};
use event_store::{RegistryTime, Seq};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordIssuance {
    pub citizen: Cccd,
    pub ca: CaId,
    pub channel: Channel,
    pub segment: Segment,
    pub commune: String,
    pub place: Place,
    pub status: IssuanceStatus,
    pub staff: Option<StaffId>,
    pub serial: Option<String>,
    pub activated_at: RegistryTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    RegisterCa {
        ca: CaId,
        name: String,
        app_name: String,
    },
    SuspendCa {
        ca: CaId,
        reason: String,
    },
    ReinstateCa {
        ca: CaId,
    },
    ExpelCa {
        ca: CaId,
        reason: String,
        violations: Vec<Seq>,
    },
    AssignZone {
        ca: CaId,
        commune: String,
    },
    RegisterCounter {
        counter: String,
        commune: String,
    },
    ScheduleBooth {
        booth: String,
        commune: String,
        ca: CaId,
        week_start: chrono::NaiveDate,
    },
    RegisterStaff {
        ca: CaId,
        full_name: String,
        birth_year: u16,
        position: String,
        photo_ref: String,
        token_hash: [u8; 32],
    },
    RevokeStaff {
        ca: CaId,
        staff: StaffId,
    },
    LookUpCitizen {
        citizen: Cccd,
        ca: CaId,
        staff: Option<StaffId>,
    },
    RecordIssuance(Box<RecordIssuance>),
    /// R7: the citizen moves to `issuance.ca`; the free year is not restarted.
    SwitchCa(Box<RecordIssuance>),
    ImportLegacyIssuance {
        citizen: Cccd,
        ca: CaId,
        issued_at: RegistryTime,
        serial: Option<String>,
    },
    RegisterDemand {
        citizen: Cccd,
        mode: DemandMode,
        phone: String,
        commune: String,
        chosen_ca: Option<CaId>,
    },
    AcknowledgeDemand {
        demand: DemandId,
        ca: CaId,
    },
    /// Sent by the scheduler when a demand's deadline passed.
    ExpireDemand {
        demand: DemandId,
    },
    FileComplaint {
        against: CaId,
        kind: ComplaintKind,
        citizen: Option<Cccd>,
        text: String,
    },
    ResolveComplaint {
        complaint: ComplaintId,
        upheld: bool,
        checked: Vec<Seq>,
        note: String,
    },
    LogViolation {
        ca: CaId,
        kind: ComplaintKind,
        complaint: Option<ComplaintId>,
        description: String,
        evidence: Vec<Seq>,
    },
}
