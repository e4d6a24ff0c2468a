//! The per-citizen issuance view that a CA's lookup answers (R2). It is a pure rendering
//! of the registry, which the writer holds in memory, so it is never stored: a CA's
//! recorded lookup is answered with the view rendered right after the lookup was decided
//! (the registrar's [`answer`]), and anyone else's read asks the writer for it in turn
//! with the commands ([`commands::Sequencer::read`]). Either way it includes every write
//! acknowledged before it. (Until store format 6 every view was also written in each
//! batch: RocksDB's flush of those random keys was ~20 % of the CPU of recording an
//! issuance, for a copy nothing but the Sở's reads used.)

use commands::domain::registry::{DemandState, Registry};
use commands::domain::{CaId, Cccd, Channel, Command, DemandMode, IssuanceStatus, Place};
use commands::registrar::Answer;
use event_store::{RegistryTime, Seq};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CitizenView {
    pub issued: Option<Issued>,
    pub open_demand: Option<OpenDemand>,
}

/// The campaign certificate the registry holds for the citizen (R1, R3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Issued {
    pub ca: CaId,
    /// `None` for a certificate imported from before the campaign (R6).
    pub channel: Option<Channel>,
    pub status: IssuanceStatus,
    pub activated_at: RegistryTime,
    pub recorded_at: RegistryTime,
    /// R7: end of the free year.
    pub free_until: RegistryTime,
    pub place: Option<Place>,
    pub legacy: bool,
    /// The event that made this CA the holder: who recorded first, and where to prove it.
    pub seq: Seq,
}

/// R12: a demand the citizen registered that is not closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OpenDemand {
    pub demand: u64,
    pub ca: Option<CaId>,
    pub mode: DemandMode,
    pub expires_at: RegistryTime,
    /// `open` or `acknowledged`.
    pub state: String,
}

/// The view as the registry has it; `None` for a citizen the registry never heard of.
pub fn render(registry: &Registry, citizen: &Cccd) -> Option<CitizenView> {
    let c = registry.citizen(citizen)?;
    let issued = c.holding.as_ref().map(|h| Issued {
        ca: registry.holder(h).clone(),
        channel: h.channel,
        status: h.status,
        activated_at: h.activated_at,
        recorded_at: h.recorded_at,
        free_until: h.free_until,
        place: registry.place(h).cloned(),
        legacy: h.legacy,
        seq: h.seq,
    });
    let open_demand = c.open_demand.and_then(|id| {
        let d = registry.demands.get(&id)?;
        matches!(d.state, DemandState::Open | DemandState::Acknowledged).then(|| OpenDemand {
            demand: id,
            ca: registry.demand_ca(d).cloned(),
            mode: d.mode,
            expires_at: d.expires_at,
            state: d.state.name().to_string(),
        })
    });
    if issued.is_none() && open_demand.is_none() {
        return None;
    }
    Some(CitizenView { issued, open_demand })
}

/// The registrar's [`commands::registrar::Answering`]: a recorded lookup is answered with
/// the view it saw, so the API need not ask again.
pub fn answer(registry: &Registry, command: &Command) -> Option<Answer> {
    match command {
        Command::LookUpCitizen { citizen, .. } => Some(render(registry, citizen).map(|v| encode(&v))),
        _ => None,
    }
}

fn encode(view: &CitizenView) -> Vec<u8> {
    // Sized for a view with both parts, so it is not reallocated as it grows (one per
    // recorded lookup, on the writer's thread).
    postcard::to_io(view, Vec::with_capacity(128)).expect("serialising to a Vec cannot fail")
}

/// A view as [`answer`] encoded it.
pub fn decode(answer: Option<&[u8]>) -> Result<Option<CitizenView>, Undecodable> {
    answer.map(|bytes| postcard::from_bytes(bytes).map_err(|_| Undecodable)).transpose()
}

/// Only a build whose [`answer`] and [`decode`] disagree gets this.
#[derive(Debug, thiserror::Error)]
#[error("the writer's answer to a lookup does not decode as a citizen view")]
pub struct Undecodable;
