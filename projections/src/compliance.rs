//! How each CA keeps the rules (R2, R4, R12, R13): lookups before issuing, recording
//! latency and late records, refused attempts, demand response and expiry, violations and
//! status.

use crate::fold::{Ctx, Fold, KeyOut};
use commands::domain::event::{ComplaintId, ComplaintKind, DemandId};
use commands::domain::{CaId, Cccd, Event, RefusalReason};
use event_store::{RegistryTime, Seq};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A latency distribution in whole seconds: exact counts per second, so percentiles are
/// exact to the second and a rebuild reproduces them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seconds {
    counts: BTreeMap<u64, u64>,
    max_ms: u64,
}

impl Seconds {
    fn record(&mut self, ms: i64) {
        let ms = ms.max(0) as u64;
        *self.counts.entry(ms / 1000).or_default() += 1;
        self.max_ms = self.max_ms.max(ms);
    }

    /// The smallest whole second `s` such that at least `q` of the values are below `s + 1`.
    pub fn quantile_s(&self, q: f64) -> Option<u64> {
        let n: u64 = self.counts.values().sum();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        self.counts
            .iter()
            .find(|(_, c)| {
                seen += **c;
                seen >= rank
            })
            .map(|(s, _)| *s)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRecord {
    pub status: String,
    pub issuances: u64,
    /// R2: issuances the same CA looked the citizen up before.
    pub looked_up_first: u64,
    /// R4: activation → recording.
    pub recording: Seconds,
    pub late: u64,
    /// R1/R3: attempts refused because the citizen already held a certificate.
    pub refused_duplicates: u64,
    /// R13: acts refused because the CA was suspended or expelled.
    pub refused_inactive: u64,
    /// R11: acts refused because the staff member was not authorized.
    pub refused_staff: u64,
    /// R12: demands given to the CA, answered (acknowledged or issued), and expired.
    pub demands_assigned: u64,
    pub demands_answered: u64,
    pub demand_response: Seconds,
    pub demands_expired: u64,
    pub violations: u64,
}

/// A violation as published (R13: violations are public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Published {
    pub seq: Seq,
    pub recorded_at: RegistryTime,
    pub ca: CaId,
    pub kind: ComplaintKind,
    pub complaint: Option<ComplaintId>,
    pub description: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compliance {
    pub cas: BTreeMap<CaId, CaRecord>,
    pub violations: Vec<Published>,
    /// R2: every (citizen, CA) lookup, as (the CCCD's number, the CA's position in
    /// `lookup_cas`). It grows with every citizen looked up, and the whole state is
    /// snapshotted, so each pair is 16 bytes without a heap allocation of its own (it was
    /// a `(Cccd, CaId)`: a CA-name string per pair).
    looked_up: BTreeSet<(u64, u32)>,
    /// The CAs that looked anyone up, numbered in the order the log first shows them
    /// doing it (so a rebuild numbers them alike).
    lookup_cas: BTreeMap<CaId, u32>,
    /// Demands waiting for their CA: who, and since when.
    waiting: BTreeMap<DemandId, (CaId, RegistryTime)>,
}

/// A CCCD's 12 digits as one number: a cheaper key than the digits.
fn number(citizen: &Cccd) -> u64 {
    citizen.as_str().bytes().fold(0, |n, d| n * 10 + u64::from(d - b'0'))
}

impl Compliance {
    fn ca(&mut self, ca: &CaId) -> &mut CaRecord {
        self.cas.entry(ca.clone()).or_default()
    }

    fn answered(&mut self, demand: DemandId, by: &CaId, at: RegistryTime) {
        if let Some((ca, since)) = self.waiting.remove(&demand)
            && ca == *by
        {
            let r = self.ca(&ca);
            r.demands_answered += 1;
            r.demand_response.record(at.0 - since.0);
        }
    }
}

impl Fold for Compliance {
    const NAME: &'static str = "compliance";
    /// 2: lookup pairs as numbers (see `looked_up`).
    const VERSION: u32 = 2;

    fn apply(&mut self, ctx: &Ctx<'_>, event: &Event, _keys: &mut KeyOut) {
        let at = ctx.recorded_at;
        match event {
            Event::CaRegistered { ca, .. } | Event::CaReinstated { ca } => self.ca(ca).status = "active".into(),
            Event::CaSuspended { ca, .. } => self.ca(ca).status = "suspended".into(),
            Event::CaExpelled { ca, .. } => self.ca(ca).status = "expelled".into(),
            Event::CitizenLookedUp { citizen, ca, .. } => {
                let next = self.lookup_cas.len() as u32;
                let ca = match self.lookup_cas.get(ca) {
                    Some(n) => *n,
                    None => *self.lookup_cas.entry(ca.clone()).or_insert(next),
                };
                self.looked_up.insert((number(citizen), ca));
            }
            Event::IssuanceRecorded(i) => {
                let looked =
                    self.lookup_cas.get(&i.ca).is_some_and(|ca| self.looked_up.contains(&(number(&i.citizen), *ca)));
                let r = self.ca(&i.ca);
                r.issuances += 1;
                r.looked_up_first += u64::from(looked);
                r.recording.record(at.0 - i.activated_at.0);
                r.late += u64::from(i.late);
                // Closed by any CA, the demand stops waiting; only its own CA's counts as answered.
                if let Some(d) = i.closed_demand {
                    self.answered(d, &i.ca, at);
                }
            }
            Event::AttemptRefused { ca, reason, .. } => {
                let r = self.ca(ca);
                match reason {
                    RefusalReason::AlreadyIssued { .. } => r.refused_duplicates += 1,
                    RefusalReason::CaNotActive { .. } => r.refused_inactive += 1,
                    RefusalReason::StaffNotAuthorized { .. } => r.refused_staff += 1,
                }
            }
            Event::DemandRegistered { demand, chosen_ca: Some(ca), .. } | Event::CaAssigned { demand, ca, .. } => {
                self.ca(ca).demands_assigned += 1;
                self.waiting.insert(*demand, (ca.clone(), at));
            }
            Event::DemandAcknowledged { demand, ca } => self.answered(*demand, ca, at),
            Event::DemandExpired { demand, ca } => {
                self.waiting.remove(demand);
                self.ca(ca).demands_expired += 1;
            }
            Event::ViolationLogged { ca, kind, complaint, description, .. } => {
                self.ca(ca).violations += 1;
                self.violations.push(Published {
                    seq: ctx.seq,
                    recorded_at: at,
                    ca: ca.clone(),
                    kind: *kind,
                    complaint: *complaint,
                    description: description.clone(),
                });
            }
            _ => {}
        }
    }
}

/// One CA's line in the compliance report.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CaLine {
    pub ca: CaId,
    pub status: String,
    pub issuances: u64,
    /// Share (0–1) of issuances with a lookup by the same CA before them.
    pub lookup_share: Option<f64>,
    pub recording_p50_s: Option<u64>,
    pub recording_p95_s: Option<u64>,
    pub recording_max_ms: u64,
    pub late: u64,
    pub refused_duplicates: u64,
    pub refused_inactive: u64,
    pub refused_staff: u64,
    pub demands_assigned: u64,
    pub demands_answered: u64,
    pub demand_response_p50_s: Option<u64>,
    pub demands_expired: u64,
    pub violations: u64,
}

impl Compliance {
    pub fn report(&self) -> Vec<CaLine> {
        self.cas
            .iter()
            .map(|(ca, r)| CaLine {
                ca: ca.clone(),
                status: r.status.clone(),
                issuances: r.issuances,
                lookup_share: (r.issuances > 0).then(|| r.looked_up_first as f64 / r.issuances as f64),
                recording_p50_s: r.recording.quantile_s(0.5),
                recording_p95_s: r.recording.quantile_s(0.95),
                recording_max_ms: r.recording.max_ms,
                late: r.late,
                refused_duplicates: r.refused_duplicates,
                refused_inactive: r.refused_inactive,
                refused_staff: r.refused_staff,
                demands_assigned: r.demands_assigned,
                demands_answered: r.demands_answered,
                demand_response_p50_s: r.demand_response.quantile_s(0.5),
                demands_expired: r.demands_expired,
                violations: r.violations,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{Compliance, Seconds};
    use crate::fold::{Ctx, Fold, KeyOut};
    use commands::domain::event::IssuanceRecorded;
    use commands::domain::{CaId, Cccd, Channel, Event, IssuanceStatus, Place, Segment};
    use event_store::{RegistryTime, Seq};

    #[test]
    fn an_issuance_counts_as_looked_up_first_only_after_the_same_cas_lookup() {
        let (a, b) = (CaId::parse("CA-A").unwrap(), CaId::parse("CA-B").unwrap());
        let citizen = |s: &str| Cccd::parse(s, 2024).unwrap();
        let (x, y, z) = (citizen("046090000001"), citizen("046090000002"), citizen("001090000001"));
        let looked = |citizen: Cccd, ca: &CaId| Event::CitizenLookedUp { citizen, ca: ca.clone(), staff: None };
        let issued = |citizen: Cccd, ca: &CaId| {
            Event::IssuanceRecorded(Box::new(IssuanceRecorded {
                citizen,
                ca: ca.clone(),
                channel: Channel::App,
                segment: Segment::Student,
                commune: "19750".into(),
                district: "474".into(),
                place: Place::Commune,
                status: IssuanceStatus::Active,
                staff: None,
                serial: None,
                activated_at: RegistryTime(0),
                late: false,
                free_until: RegistryTime(0),
                switched_from: None,
                closed_demand: None,
            }))
        };
        let events = [
            issued(z, &b), // b has looked no one up yet
            looked(y, &b),
            looked(x, &a),
            issued(x, &a), // a looked x up first
            issued(y, &a), // only b looked y up
            looked(z, &a),
            issued(z, &a), // a switch after a lookup
        ];
        let mut c = Compliance::default();
        for (n, e) in events.iter().enumerate() {
            let ctx = Ctx { seq: Seq(n as u64 + 1), recorded_at: RegistryTime(0), actor: "test" };
            c.apply(&ctx, e, &mut KeyOut::default());
        }
        assert_eq!((c.cas[&a].issuances, c.cas[&a].looked_up_first), (3, 2));
        assert_eq!((c.cas[&b].issuances, c.cas[&b].looked_up_first), (1, 0));
    }

    #[test]
    fn quantiles_are_exact_to_the_second() {
        let mut s = Seconds::default();
        assert_eq!(s.quantile_s(0.5), None);
        for ms in [500, 1_500, 2_500, 3_500, 60_000] {
            s.record(ms);
        }
        assert_eq!(s.quantile_s(0.5), Some(2));
        assert_eq!(s.quantile_s(0.95), Some(60));
        assert_eq!(s.quantile_s(0.2), Some(0));
        assert_eq!(s.max_ms, 60_000);
    }
}
