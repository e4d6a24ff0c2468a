//! How and to whom a certificate was issued: channels (R18), population segments (R16),
//! the status of an issuance (R5) and demand modes (R12).

use serde::{Deserialize, Serialize};

/// R18: where the issuance happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The CA's own app, online (R10).
    App,
    CaOffice,
    /// Field staff at the citizen's home (R11: needs an authorized staff member).
    DoorToDoor,
    /// Answering a demand registered in the registry (R12).
    Demand,
    OneStopCounter,
    /// A booth on the weekly rotation (R14: needs an authorized staff member).
    Booth,
}

impl Channel {
    /// R11: channels where the citizen meets the CA's field staff in person.
    pub fn needs_staff(self) -> bool {
        matches!(self, Channel::DoorToDoor | Channel::Booth)
    }
}

/// R16: the population segments that targets are set for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    StateAgency,
    SocioPolitical,
    PublicService,
    Student,
    SmeWorker,
    AdultCitizen,
}

/// R5: an activation that failed for a technical reason still counts as issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssuanceStatus {
    Active,
    TechnicalError,
}

/// R12: how the citizen wants to be helped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DemandMode {
    Home,
    Remote,
}
