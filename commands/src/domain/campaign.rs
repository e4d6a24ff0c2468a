//! A campaign is data: one TOML file per province under `campaigns/`, checked on load with
//! errors that name the bad field.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::channel::{Channel, Segment};

/// One phase of the campaign (R17) and the channels open in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub name: String,
    pub months: u32,
    pub channels: Vec<Channel>,
}

/// The rules of one province's campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    pub name: String,
    /// CCCD province code (3 digits) of the campaign's province.
    pub province_code: String,
    /// The launch day (UTC midnight starts phase 1).
    pub start_date: chrono::NaiveDate,
    /// R16: citizens must have reached this age in the year of issuance.
    pub min_age: u16,
    /// R7: months of free public-service signing per citizen, across CAs.
    pub free_months: u32,
    /// R4: an issuance recorded later than this after activation is flagged late.
    pub late_after_minutes: u32,
    /// R12: a demand not acted on within this expires.
    pub demand_ttl_hours: u32,
    #[serde(default)]
    pub total_target: Option<u64>,
    pub phases: Vec<Phase>,
    /// R16: target issuances per segment.
    #[serde(default)]
    pub targets: BTreeMap<Segment, u64>,
}

/// A campaign file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error("campaign file does not parse: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("campaign field `{field}`: {problem}")]
    Invalid { field: &'static str, problem: String },
}

impl Campaign {
    /// Parses and checks a campaign file's text.
    pub fn from_toml(text: &str) -> Result<Self, CampaignError> {
        let campaign: Campaign = toml::from_str(text)?;
        campaign.validate()?;
        Ok(campaign)
    }

    fn validate(&self) -> Result<(), CampaignError> {
        let invalid = |field, problem: String| Err(CampaignError::Invalid { field, problem });
        if !super::cccd::PROVINCE_CODES.iter().any(|(code, _)| *code == self.province_code) {
            return invalid("province_code", format!("{:?} is not a CCCD province code", self.province_code));
        }
        if self.phases.is_empty() {
            return invalid("phases", "at least one phase is needed".into());
        }
        if let Some(p) = self.phases.iter().find(|p| p.months == 0 || p.channels.is_empty()) {
            return invalid("phases", format!("phase {:?} needs months > 0 and at least one channel", p.name));
        }
        if self.free_months == 0 || self.demand_ttl_hours == 0 {
            return invalid("free_months / demand_ttl_hours", "must be positive".into());
        }
        if let Some(total) = self.total_target {
            let sum: u64 = self.targets.values().sum();
            if sum > total {
                return invalid("targets", format!("segment targets add up to {sum}, above total_target {total}"));
            }
        }
        Ok(())
    }

    /// The phase in force at `day`, or `None` before the start or after the last phase.
    pub fn phase_at(&self, day: chrono::NaiveDate) -> Option<&Phase> {
        let mut start = self.start_date;
        for phase in &self.phases {
            let end = start.checked_add_months(chrono::Months::new(phase.months))?;
            if day >= start && day < end {
                return Some(phase);
            }
            start = end;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUE: &str = include_str!("../../../campaigns/thua-thien-hue.toml");
    const HUNG_YEN: &str = include_str!("../../../campaigns/hung-yen.toml");

    #[test]
    fn r17_the_checked_in_campaigns_load_with_their_phases_and_r16_targets() {
        let hue = Campaign::from_toml(HUE).unwrap();
        let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(hue.phase_at(day("2023-08-01")).unwrap().name, "phase-1-door-to-door");
        assert_eq!(hue.phase_at(day("2023-11-01")).unwrap().name, "phase-2-citizens-come");
        assert!(!hue.phase_at(day("2023-11-01")).unwrap().channels.contains(&Channel::DoorToDoor));
        assert!(hue.phase_at(day("2024-08-01")).is_none());
        let hy = Campaign::from_toml(HUNG_YEN).unwrap();
        assert_eq!(hy.targets.values().sum::<u64>(), 400_000);
        assert_eq!(hy.targets[&Segment::AdultCitizen], 300_000);
    }

    #[test]
    fn errors_name_the_bad_field() {
        let bad = HUE.replace("province_code = \"046\"", "province_code = \"003\"");
        let err = Campaign::from_toml(&bad).unwrap_err().to_string();
        assert!(err.contains("province_code"), "{err}");
        let bad = HUNG_YEN.replace("adult_citizen = 300000", "adult_citizen = 900000");
        assert!(Campaign::from_toml(&bad).unwrap_err().to_string().contains("targets"));
        let bad = HUE.replace("min_age = 16", "min_age = 16\ncolour = \"red\"");
        assert!(Campaign::from_toml(&bad).unwrap_err().to_string().contains("colour"));
    }
}
