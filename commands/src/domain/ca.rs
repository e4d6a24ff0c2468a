//! Certificate authorities taking part in the campaign, as the Sở registers and referees them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A CA's registry id, e.g. `VNPT-CA`: 2–32 of `A-Z`, `0-9`, `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(value_type = String, example = "VNPT-CA")]
#[serde(transparent)]
pub struct CaId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a CA id is 2 to 32 characters of A-Z, 0-9 and '-', got {0:?}")]
pub struct CaIdError(pub String);

impl CaId {
    pub fn parse(s: &str) -> Result<Self, CaIdError> {
        let ok =
            (2..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
        if ok { Ok(Self(s.to_string())) } else { Err(CaIdError(s.to_string())) }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The six CAs of the seeds with their citizen apps (seed 003).
pub const SEED_CAS: [(&str, &str, &str); 6] = [
    ("VNPT-CA", "VNPT Thừa Thiên Huế", "VNPT SmartCA"),
    ("VIETTEL-CA", "Viettel Thừa Thiên Huế", "MySign"),
    ("MISA-CA", "Công ty Cổ phần MiSa", "MISA eSign"),
    ("BKAV-CA", "Công ty Cổ phần BKAV", "Bkav Remote Signing"),
    ("FPT-CA", "Công ty TNHH Hệ thống thông tin FPT", "FPT-CA MPKI"),
    ("CA2", "Công ty Cổ phần Công nghệ Thẻ Nacencomm", "CA2 Remote Signing"),
];

/// Where a CA stands in the programme (R13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum CaStatus {
    Active,
    Suspended,
    /// Final: later commands are refused and logged; earlier issuances stay valid.
    Expelled,
}

impl CaStatus {
    pub fn name(self) -> &'static str {
        match self {
            CaStatus::Active => "active",
            CaStatus::Suspended => "suspended",
            CaStatus::Expelled => "expelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ca {
    pub id: CaId,
    pub name: String,
    pub app_name: String,
    pub status: CaStatus,
}
