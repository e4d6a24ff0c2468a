//! How and to whom a certificate was issued: channels (R18), population segments (R16),
//! the status of an issuance (R5) and demand modes (R12).

use serde::{Deserialize, Serialize};

/// R18: where the issuance happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The name the API and reports use (as serialised).
    pub fn name(self) -> &'static str {
        match self {
            Channel::App => "app",
            Channel::CaOffice => "ca_office",
            Channel::DoorToDoor => "door_to_door",
            Channel::Demand => "demand",
            Channel::OneStopCounter => "one_stop_counter",
            Channel::Booth => "booth",
        }
    }

    /// R11: channels where the citizen meets the CA's field staff in person.
    pub fn needs_staff(self) -> bool {
        matches!(self, Channel::DoorToDoor | Channel::Booth)
    }
}

/// R16: the population segments that targets are set for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    StateAgency,
    SocioPolitical,
    PublicService,
    Student,
    SmeWorker,
    AdultCitizen,
}

impl Segment {
    pub const ALL: [Segment; 6] = [
        Segment::StateAgency,
        Segment::SocioPolitical,
        Segment::PublicService,
        Segment::Student,
        Segment::SmeWorker,
        Segment::AdultCitizen,
    ];

    /// The name the API, reports and campaign files use (as serialised).
    pub fn name(self) -> &'static str {
        match self {
            Segment::StateAgency => "state_agency",
            Segment::SocioPolitical => "socio_political",
            Segment::PublicService => "public_service",
            Segment::Student => "student",
            Segment::SmeWorker => "sme_worker",
            Segment::AdultCitizen => "adult_citizen",
        }
    }
}

/// R5: an activation that failed for a technical reason still counts as issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IssuanceStatus {
    Active,
    TechnicalError,
}

/// R12: how the citizen wants to be helped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DemandMode {
    Home,
    Remote,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serialised_names() {
        for s in Segment::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        for c in [
            Channel::App,
            Channel::CaOffice,
            Channel::DoorToDoor,
            Channel::Demand,
            Channel::OneStopCounter,
            Channel::Booth,
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.name());
        }
    }
}
