//! The demand board (R12): open demands per CA with the time left, expired ones, and what
//! the citizen may do next.

use crate::fold::{Ctx, Fold, KeyOut};
use commands::domain::event::DemandId;
use commands::domain::{CaId, Cccd, DemandMode, Event};
use event_store::RegistryTime;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Open,
    Acknowledged,
    Expired,
    /// A certificate was issued (by any CA), which closes the demand.
    Fulfilled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DemandRow {
    pub demand: DemandId,
    pub citizen: Cccd,
    pub mode: DemandMode,
    pub district: String,
    pub commune: String,
    pub ca: Option<CaId>,
    pub registered_at: RegistryTime,
    pub expires_at: RegistryTime,
    pub stage: Stage,
    pub closed_at: Option<RegistryTime>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemandBoard {
    pub demands: BTreeMap<DemandId, DemandRow>,
}

impl Fold for DemandBoard {
    const NAME: &'static str = "demands";
    const VERSION: u32 = 1;

    fn apply(&mut self, ctx: &Ctx<'_>, event: &Event, _keys: &mut KeyOut) {
        match event {
            Event::DemandRegistered { demand, citizen, mode, district, commune, chosen_ca, expires_at, .. } => {
                self.demands.insert(
                    *demand,
                    DemandRow {
                        demand: *demand,
                        citizen: *citizen,
                        mode: *mode,
                        district: district.clone(),
                        commune: commune.clone(),
                        ca: chosen_ca.clone(),
                        registered_at: ctx.recorded_at,
                        expires_at: *expires_at,
                        stage: Stage::Open,
                        closed_at: None,
                    },
                );
            }
            Event::CaAssigned { demand, ca, .. } => {
                if let Some(r) = self.demands.get_mut(demand) {
                    r.ca = Some(ca.clone());
                }
            }
            Event::DemandAcknowledged { demand, .. } => {
                if let Some(r) = self.demands.get_mut(demand) {
                    r.stage = Stage::Acknowledged;
                }
            }
            Event::DemandExpired { demand, .. } => self.close(*demand, Stage::Expired, ctx.recorded_at),
            Event::IssuanceRecorded(i) => {
                if let Some(d) = i.closed_demand {
                    self.close(d, Stage::Fulfilled, ctx.recorded_at);
                }
            }
            _ => {}
        }
    }
}

/// A row as a reader sees it at `now`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BoardLine {
    #[serde(flatten)]
    pub row: DemandRow,
    /// Milliseconds until expiry for an open demand (0 when due).
    pub time_left_ms: Option<i64>,
    /// What the citizen may do now (R12).
    pub next_step: &'static str,
}

fn next_step(stage: Stage) -> &'static str {
    match stage {
        Stage::Open => "wait for the CA to act before the deadline",
        Stage::Acknowledged => "the CA is handling the demand; it will contact the citizen",
        Stage::Expired => "register a new demand, choosing another CA or leaving the choice open",
        Stage::Fulfilled => "nothing: a certificate was issued",
    }
}

impl DemandBoard {
    fn close(&mut self, demand: DemandId, stage: Stage, at: RegistryTime) {
        if let Some(r) = self.demands.get_mut(&demand) {
            r.stage = stage;
            r.closed_at = Some(at);
        }
    }

    /// Demands of one CA (or all), optionally only in one stage, oldest first.
    pub fn lines(&self, ca: Option<&CaId>, stage: Option<Stage>, now: RegistryTime) -> Vec<BoardLine> {
        self.demands
            .values()
            .filter(|r| ca.is_none_or(|c| r.ca.as_ref() == Some(c)) && stage.is_none_or(|s| r.stage == s))
            .map(|r| BoardLine {
                row: r.clone(),
                time_left_ms: (r.stage == Stage::Open).then(|| (r.expires_at.0 - now.0).max(0)),
                next_step: next_step(r.stage),
            })
            .collect()
    }

    /// Per CA: how many demands are in each stage.
    pub fn summary(&self) -> BTreeMap<String, BTreeMap<Stage, u64>> {
        let mut out: BTreeMap<String, BTreeMap<Stage, u64>> = BTreeMap::new();
        for r in self.demands.values() {
            let ca = r.ca.as_ref().map_or_else(|| "unassigned".to_string(), |c| c.to_string());
            *out.entry(ca).or_default().entry(r.stage).or_default() += 1;
        }
        out
    }
}
