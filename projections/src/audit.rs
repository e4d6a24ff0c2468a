//! The audit trail (R13): for a citizen or a CA, every event that touched them, in seq
//! order, as the Sở needs it to check a complaint. An index of keys beside the log (one
//! per citizen or CA an event names); the events themselves are read from the log.

use crate::counts::{Cell, Filter};
use crate::fold::{Ctx, Decoded, Fold, KeyOut};
use commands::codec::DecodeError;
use commands::domain::event::{ComplaintId, DemandId};
use commands::domain::{CaId, Cccd, Event};
use event_store::{Cf, EventStore, RegistryTime, Seq, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const CITIZEN: u8 = b'c';
const CA: u8 = b'a';

/// What the index needs to remember to know whom a later event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditIndex {
    demand_citizen: BTreeMap<DemandId, Cccd>,
    complaints: BTreeMap<ComplaintId, (CaId, Option<Cccd>)>,
}

/// Whose trail to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Citizen(Cccd),
    Ca(CaId),
}

impl Subject {
    pub(crate) fn key_part(&self) -> Vec<u8> {
        match self {
            Subject::Citizen(c) => [&[CITIZEN][..], c.as_str().as_bytes()].concat(),
            // The NUL ends the id, so `VNPT-CA` does not list `VNPT-CA2`'s events.
            Subject::Ca(ca) => [&[CA][..], ca.as_str().as_bytes(), &[0]].concat(),
        }
    }
}

impl AuditIndex {
    /// Everyone `event` is about.
    fn subjects(&self, event: &Event) -> Vec<Subject> {
        let citizen = |c: &Cccd| Subject::Citizen(*c);
        let ca = |c: &CaId| Subject::Ca(c.clone());
        let demand = |d: &DemandId| self.demand_citizen.get(d).map(citizen);
        match event {
            Event::CaRegistered { ca: c, .. }
            | Event::CaSuspended { ca: c, .. }
            | Event::CaReinstated { ca: c }
            | Event::CaExpelled { ca: c, .. }
            | Event::ZoneAssigned { ca: c, .. }
            | Event::BoothScheduled { ca: c, .. }
            | Event::StaffRegistered { ca: c, .. }
            | Event::StaffRevoked { ca: c, .. }
            | Event::ViolationLogged { ca: c, .. } => vec![ca(c)],
            Event::CounterRegistered { .. } => vec![],
            Event::CitizenLookedUp { citizen: p, ca: c, .. }
            | Event::LegacyIssuanceImported { citizen: p, ca: c, .. } => vec![citizen(p), ca(c)],
            Event::IssuanceRecorded(i) => {
                let mut v = vec![citizen(&i.citizen), ca(&i.ca)];
                v.extend(i.switched_from.as_ref().map(ca));
                v
            }
            Event::AttemptRefused { citizen: p, ca: c, .. } => p.iter().map(citizen).chain([ca(c)]).collect(),
            Event::DemandRegistered { citizen: p, chosen_ca, .. } => {
                [citizen(p)].into_iter().chain(chosen_ca.as_ref().map(ca)).collect()
            }
            Event::CaAssigned { demand: d, ca: c, .. }
            | Event::DemandAcknowledged { demand: d, ca: c }
            | Event::DemandExpired { demand: d, ca: c } => demand(d).into_iter().chain([ca(c)]).collect(),
            Event::ComplaintFiled { citizen: p, against, .. } => p.iter().map(citizen).chain([ca(against)]).collect(),
            Event::ComplaintResolved { complaint, .. } => match self.complaints.get(complaint) {
                Some((against, p)) => p.iter().map(citizen).chain([ca(against)]).collect(),
                None => vec![],
            },
        }
    }
}

impl Fold for AuditIndex {
    const NAME: &'static str = "audit";
    const VERSION: u32 = 1;

    fn apply(&mut self, ctx: &Ctx<'_>, event: &Event, keys: &mut KeyOut) {
        for s in self.observe(event) {
            keys.put(&[&s.key_part(), &ctx.seq.0.to_be_bytes()]);
        }
    }
}

impl AuditIndex {
    /// Everyone `event` is about, remembering what later events need (a demand's citizen,
    /// a complaint's parties). Feed it every event in seq order.
    pub fn observe(&mut self, event: &Event) -> Vec<Subject> {
        let subjects = self.subjects(event);
        match event {
            Event::DemandRegistered { demand, citizen, .. } => {
                self.demand_citizen.insert(*demand, *citizen);
            }
            Event::ComplaintFiled { complaint, against, citizen, .. } => {
                self.complaints.insert(*complaint, (against.clone(), *citizen));
            }
            _ => {}
        }
        subjects
    }
}

/// One line of a trail.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TrailEntry {
    pub seq: Seq,
    pub recorded_at: RegistryTime,
    pub event_type: &'static str,
    pub actor: String,
    pub event: Event,
}

#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("the audit index names seq {0}, which is not in the log; rebuild the audit projection")]
    Dangling(u64),
}

/// The seqs of the events about `subject`, in order, from the index under `prefix`
/// ([`crate::Live::key_prefix`]), starting at `from` and at most `limit`.
pub fn seqs(
    store: &EventStore,
    prefix: &[u8],
    subject: &Subject,
    from: Seq,
    limit: usize,
) -> Result<Vec<Seq>, StoreError> {
    let scan = [prefix, &subject.key_part()].concat();
    let mut out = Vec::new();
    for kv in store.scan_prefix(Cf::Projections, &scan) {
        let (k, _) = kv?;
        let seq = k.get(scan.len()..).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes);
        match seq {
            Some(s) if s >= from.0 => out.push(Seq(s)),
            Some(_) => {}
            None => return Err(StoreError::CorruptMeta(format!("audit index key of {} bytes", k.len()))),
        }
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// The events behind `seqs`, read from the log.
pub fn entries(store: &EventStore, seqs: &[Seq]) -> Result<Vec<TrailEntry>, TrailError> {
    seqs.iter()
        .map(|s| {
            let env = store.event(*s).map_err(|e| match e {
                StoreError::SeqOutOfRange { .. } => TrailError::Dangling(s.0),
                e => TrailError::Store(e),
            })?;
            let d = Decoded::from_envelope(env)?;
            Ok(TrailEntry {
                seq: d.seq,
                recorded_at: d.recorded_at,
                event_type: commands::codec::type_name(&d.event),
                actor: d.actor,
                event: d.event,
            })
        })
        .collect()
}

/// The issuances behind a count: every `IssuanceRecorded` counted in a cell that `filter`
/// matches, in seq order. With a CA in the filter only that CA's trail is read; without,
/// the whole log.
pub fn explain(store: &EventStore, prefix: &[u8], filter: &Filter) -> Result<Vec<Seq>, TrailError> {
    let matches = |e: &Event| matches!(e, Event::IssuanceRecorded(i) if filter.matches(&Cell::of(i)));
    let mut out = Vec::new();
    match &filter.ca {
        Some(ca) => {
            let all = seqs(store, prefix, &Subject::Ca(ca.clone()), Seq(1), usize::MAX)?;
            for e in entries(store, &all)? {
                if matches(&e.event) {
                    out.push(e.seq);
                }
            }
        }
        None => {
            for env in store.read_from(Seq(1)) {
                let d = Decoded::from_envelope(env?)?;
                if matches(&d.event) {
                    out.push(d.seq);
                }
            }
        }
    }
    Ok(out)
}
