//! Issued certificates counted by every dimension the Sở reports on (R14, R15, R16, R18),
//! the roll-up CA → commune → district → province, progress against targets and the
//! end-of-day booth report. One cell per (CA, district, commune, day, channel, segment,
//! place); every other figure is a sum of cells, so every figure traces back to events
//! (see [`crate::audit::explain`]).

use crate::fold::{Ctx, Fold, KeyOut};
use chrono::NaiveDate;
use commands::domain::registry::date_of;
use commands::domain::{CaId, Campaign, Channel, Event, IssuanceRecorded, IssuanceStatus, Place, Segment};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The finest grain of the counts. Days are the activation day (UTC, as the campaign's
/// phases are).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cell {
    pub ca: CaId,
    pub district: String,
    pub commune: String,
    pub day: NaiveDate,
    pub channel: Channel,
    pub segment: Segment,
    pub place: Place,
}

impl Cell {
    /// The cell an issuance is counted in.
    pub fn of(i: &IssuanceRecorded) -> Self {
        Cell {
            ca: i.ca.clone(),
            district: i.district.clone(),
            commune: i.commune.clone(),
            day: date_of(i.activated_at),
            channel: i.channel,
            segment: i.segment,
            place: i.place.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tally {
    /// Campaign certificates (R1): one per citizen, the first CA's.
    pub issued: u64,
    /// R5: of `issued`, activations that failed for a technical reason (still issued).
    pub technical_error: u64,
    /// R4: of `issued`, recorded late.
    pub late: u64,
    /// R7: certificates from a CA the citizen switched to; not a new citizen reached.
    pub switched_in: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.issued += o.issued;
        self.technical_error += o.technical_error;
        self.late += o.late;
        self.switched_in += o.switched_in;
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub cells: BTreeMap<Cell, Tally>,
    /// R6: certificates from before the campaign, imported per CA; not campaign progress.
    pub legacy: BTreeMap<CaId, u64>,
}

impl Fold for Counts {
    const NAME: &'static str = "counts";
    const VERSION: u32 = 1;

    fn apply(&mut self, _ctx: &Ctx<'_>, event: &Event, _keys: &mut KeyOut) {
        match event {
            Event::IssuanceRecorded(i) => {
                let t = self.cells.entry(Cell::of(i)).or_default();
                if i.switched_from.is_some() {
                    t.switched_in += 1;
                } else {
                    t.issued += 1;
                    t.technical_error += u64::from(i.status == IssuanceStatus::TechnicalError);
                    t.late += u64::from(i.late);
                }
            }
            Event::LegacyIssuanceImported { ca, .. } => *self.legacy.entry(ca.clone()).or_default() += 1,
            _ => {}
        }
    }
}

/// Which cells a report covers. Every field left out matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub ca: Option<CaId>,
    pub district: Option<String>,
    pub commune: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub channel: Option<Channel>,
    pub segment: Option<Segment>,
}

impl Filter {
    pub fn matches(&self, c: &Cell) -> bool {
        self.ca.as_ref().is_none_or(|x| *x == c.ca)
            && self.district.as_ref().is_none_or(|x| *x == c.district)
            && self.commune.as_ref().is_none_or(|x| *x == c.commune)
            && self.from.is_none_or(|x| c.day >= x)
            && self.to.is_none_or(|x| c.day <= x)
            && self.channel.is_none_or(|x| x == c.channel)
            && self.segment.is_none_or(|x| x == c.segment)
    }
}

/// A dimension to group a report by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    Ca,
    District,
    Commune,
    Day,
    Channel,
    Segment,
    Place,
}

impl Dim {
    fn value(self, c: &Cell) -> String {
        match self {
            Dim::Ca => c.ca.to_string(),
            Dim::District => c.district.clone(),
            Dim::Commune => c.commune.clone(),
            Dim::Day => c.day.to_string(),
            Dim::Channel => c.channel.name().to_string(),
            Dim::Segment => c.segment.name().to_string(),
            Dim::Place => match &c.place {
                Place::Commune => "commune".into(),
                Place::Counter(id) => format!("counter:{id}"),
                Place::Booth(id) => format!("booth:{id}"),
            },
        }
    }
}

/// One line of a grouped report: the group's values, in the order asked, and its tally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = CountRow)]
pub struct Row {
    pub group: Vec<String>,
    #[serde(flatten)]
    pub tally: Tally,
}

/// The province's roll-up (R15): CA → commune → district → province.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Rollup {
    pub tally: Tally,
    pub districts: Vec<DistrictRollup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DistrictRollup {
    pub district: String,
    pub tally: Tally,
    pub communes: Vec<CommuneRollup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CommuneRollup {
    pub commune: String,
    pub tally: Tally,
    pub cas: BTreeMap<CaId, Tally>,
}

/// Progress against one target (R16).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Progress {
    /// A segment name, or `total`.
    pub name: String,
    pub target: u64,
    pub issued: u64,
    pub percent: f64,
    /// Where a straight line from the start to the campaign's end would be today.
    pub planned_by_now: u64,
    /// `planned_by_now − issued` when positive: how far behind plan.
    pub behind_by: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Targets {
    pub campaign: String,
    pub as_of: NaiveDate,
    pub ends: NaiveDate,
    pub total: Option<Progress>,
    pub segments: Vec<Progress>,
}

/// End-of-day booth report (R14): issued per booth that day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BoothLine {
    pub booth: String,
    pub commune: String,
    pub ca: CaId,
    pub issued: u64,
}

impl Counts {
    fn cells<'a>(&'a self, f: &'a Filter) -> impl Iterator<Item = (&'a Cell, &'a Tally)> + 'a {
        self.cells.iter().filter(move |(c, _)| f.matches(c))
    }

    pub fn total(&self, f: &Filter) -> Tally {
        let mut t = Tally::default();
        self.cells(f).for_each(|(_, x)| t.add(x));
        t
    }

    /// Sums matching cells grouped by `dims` (none: one row, the total), in group order.
    pub fn group_by(&self, f: &Filter, dims: &[Dim]) -> Vec<Row> {
        let mut groups: BTreeMap<Vec<String>, Tally> = BTreeMap::new();
        for (cell, t) in self.cells(f) {
            groups.entry(dims.iter().map(|d| d.value(cell)).collect()).or_default().add(t);
        }
        groups.into_iter().map(|(group, tally)| Row { group, tally }).collect()
    }

    pub fn rollup(&self, f: &Filter) -> Rollup {
        let mut tree: BTreeMap<&str, BTreeMap<&str, BTreeMap<CaId, Tally>>> = BTreeMap::new();
        for (c, t) in self.cells(f) {
            tree.entry(&c.district).or_default().entry(&c.commune).or_default().entry(c.ca.clone()).or_default().add(t);
        }
        let mut total = Tally::default();
        let districts = tree
            .into_iter()
            .map(|(district, communes)| {
                let mut dt = Tally::default();
                let communes = communes
                    .into_iter()
                    .map(|(commune, cas)| {
                        let mut ct = Tally::default();
                        cas.values().for_each(|t| ct.add(t));
                        dt.add(&ct);
                        CommuneRollup { commune: commune.to_string(), tally: ct, cas }
                    })
                    .collect();
                total.add(&dt);
                DistrictRollup { district: district.to_string(), tally: dt, communes }
            })
            .collect();
        Rollup { tally: total, districts }
    }

    /// Progress against the campaign's targets on `today` (R16). The plan is a straight line
    /// from the start date to the end of the last phase.
    pub fn targets(&self, campaign: &Campaign, today: NaiveDate) -> Targets {
        let months: u32 = campaign.phases.iter().map(|p| p.months).sum();
        let ends = campaign.start_date.checked_add_months(chrono::Months::new(months)).unwrap_or(NaiveDate::MAX);
        let span = (ends - campaign.start_date).num_days().max(1) as f64;
        let elapsed = (today - campaign.start_date).num_days().clamp(0, span as i64) as f64;
        let progress = |name: &str, target: u64, issued: u64| {
            let planned_by_now = (target as f64 * elapsed / span).round() as u64;
            Progress {
                name: name.to_string(),
                target,
                issued,
                percent: if target == 0 { 0.0 } else { (issued as f64 * 1000.0 / target as f64).round() / 10.0 },
                planned_by_now,
                behind_by: planned_by_now.saturating_sub(issued),
            }
        };
        let mut by_segment: BTreeMap<Segment, u64> = BTreeMap::new();
        for (c, t) in &self.cells {
            *by_segment.entry(c.segment).or_default() += t.issued;
        }
        let issued: u64 = by_segment.values().sum();
        Targets {
            campaign: campaign.name.clone(),
            as_of: today,
            ends,
            total: campaign.total_target.map(|t| progress("total", t, issued)),
            segments: campaign
                .targets
                .iter()
                .map(|(s, t)| progress(s.name(), *t, by_segment.get(s).copied().unwrap_or(0)))
                .collect(),
        }
    }

    /// What each booth issued on `day` (R14: booths report at the end of each day).
    pub fn booths(&self, day: NaiveDate) -> Vec<BoothLine> {
        let mut lines: BTreeMap<(&str, &str, &CaId), u64> = BTreeMap::new();
        for (c, t) in &self.cells {
            if let (Place::Booth(b), true) = (&c.place, c.day == day) {
                *lines.entry((b, &c.commune, &c.ca)).or_default() += t.issued + t.switched_in;
            }
        }
        lines
            .into_iter()
            .map(|((booth, commune, ca), issued)| BoothLine {
                booth: booth.to_string(),
                commune: commune.to_string(),
                ca: ca.clone(),
                issued,
            })
            .collect()
    }
}
