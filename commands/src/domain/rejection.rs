//! Why a command was refused: one variant per rule, each carrying the facts behind it, each
//! with a stable slug (`code()`) that integrators can match on.

use super::ca::CaId;
use super::event::{DemandId, StaffId};
use event_store::{RegistryTime, Seq};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// R1/R3: the citizen already holds the campaign certificate; says who and when.
    #[error("citizen already issued by {by_ca} at seq {first_recorded_seq}")]
    AlreadyIssued { by_ca: CaId, first_recorded_seq: Seq, recorded_at: RegistryTime },
    /// R8: no recording ahead of the actual issuance.
    #[error("activated_at {activated_at} is after the registry's time {now}: record only after activation")]
    ActivatedInFuture { activated_at: RegistryTime, now: RegistryTime },
    /// R16: too young in the year of issuance.
    #[error("citizen born in {birth_year} is under {min_age} this year")]
    TooYoung { birth_year: u16, min_age: u16 },
    #[error("CA {0} is not registered in the campaign")]
    UnknownCa(CaId),
    #[error("CA {0} is already registered")]
    CaAlreadyRegistered(CaId),
    /// R13: suspended or expelled CAs cannot act.
    #[error("CA {ca} is {status} and may not act")]
    CaNotActive { ca: CaId, status: &'static str },
    /// R11: door-to-door and booth issuances need an authorized staff member of the CA.
    #[error("staff member {staff:?} is not authorized to issue for {ca}")]
    StaffNotAuthorized { ca: CaId, staff: Option<StaffId> },
    /// R17: the channel is closed in the current phase (or the campaign is not running).
    #[error("channel {channel} is not open in the current phase ({phase})")]
    ChannelClosed { channel: &'static str, phase: String },
    /// R14: a zoned commune belongs to another CA for door-to-door work.
    #[error("commune {commune} is the zone of {zone_ca}")]
    OutsideZone { commune: String, zone_ca: CaId },
    #[error("commune {0} is not an administrative unit of the campaign's province")]
    UnknownCommune(String),
    /// R7: a switch needs a current holder other than the new CA.
    #[error("citizen has no campaign certificate to switch from")]
    NothingToSwitch,
    #[error("citizen already holds this CA's certificate")]
    SwitchToSameCa,
    /// R12: one open demand per citizen.
    #[error("citizen already has open demand {demand}")]
    DemandAlreadyOpen { demand: DemandId },
    #[error("demand {0} does not exist")]
    UnknownDemand(DemandId),
    #[error("demand {demand} is addressed to {ca}, not to you")]
    NotYourDemand { demand: DemandId, ca: CaId },
    #[error("demand {demand} is no longer open ({state})")]
    DemandNotOpen { demand: DemandId, state: &'static str },
    #[error("demand {demand} is not due before {expires_at}")]
    DemandNotDue { demand: DemandId, expires_at: RegistryTime },
    #[error("no active CA to assign the demand to")]
    NoActiveCa,
    #[error("staff member {0} does not exist")]
    UnknownStaff(StaffId),
    #[error("complaint {0} does not exist")]
    UnknownComplaint(u64),
    #[error("complaint {0} is already resolved")]
    ComplaintAlreadyResolved(u64),
    /// The `Idempotency-Key` was already used by this caller for a different command.
    #[error("idempotency key {key:?} was already used for a different command; use a new key")]
    IdempotencyKeyReused { key: String },
    #[error("field `{field}`: {problem}")]
    Invalid { field: &'static str, problem: String },
}

impl Rejection {
    /// The stable slug used as the problem+json `type`. Renaming one breaks integrators.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::AlreadyIssued { .. } => "already-issued",
            Rejection::ActivatedInFuture { .. } => "activated-in-future",
            Rejection::TooYoung { .. } => "too-young",
            Rejection::UnknownCa(_) => "unknown-ca",
            Rejection::CaAlreadyRegistered(_) => "ca-already-registered",
            Rejection::CaNotActive { .. } => "ca-not-active",
            Rejection::StaffNotAuthorized { .. } => "staff-not-authorized",
            Rejection::ChannelClosed { .. } => "channel-closed",
            Rejection::OutsideZone { .. } => "outside-zone",
            Rejection::UnknownCommune(_) => "unknown-commune",
            Rejection::NothingToSwitch => "nothing-to-switch",
            Rejection::SwitchToSameCa => "switch-to-same-ca",
            Rejection::DemandAlreadyOpen { .. } => "demand-already-open",
            Rejection::UnknownDemand(_) => "unknown-demand",
            Rejection::NotYourDemand { .. } => "not-your-demand",
            Rejection::DemandNotOpen { .. } => "demand-not-open",
            Rejection::DemandNotDue { .. } => "demand-not-due",
            Rejection::NoActiveCa => "no-active-ca",
            Rejection::UnknownStaff(_) => "unknown-staff",
            Rejection::UnknownComplaint(_) => "unknown-complaint",
            Rejection::ComplaintAlreadyResolved(_) => "complaint-already-resolved",
            Rejection::IdempotencyKeyReused { .. } => "idempotency-key-reused",
            Rejection::Invalid { .. } => "invalid",
        }
    }
}
