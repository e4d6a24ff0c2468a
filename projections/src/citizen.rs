//! The per-citizen issuance view that a CA's lookup answers (R2). Inline: the registrar
//! stages it in the same batch as the events, so it is exact the moment a write is
//! acknowledged. It is a pure rendering of the registry's state for one citizen, so a
//! rebuild is "fold the log into a registry, render everyone".

use crate::Entries;
use commands::domain::registry::{DemandState, Registry};
use commands::domain::{CaId, Cccd, Channel, Command, DemandMode, Event, IssuanceStatus, Place};
use commands::registrar::{Answer, InlineProjection};
use event_store::{Batch, Cf, EventStore, RegistryTime, Seq, StoreError};
use serde::{Deserialize, Serialize};

/// Bump when [`CitizenView`]'s stored form or place changes: start-up then re-renders every
/// citizen. 2: the views moved from `projections` to their own column family
/// ([`Cf::Citizens`]).
pub const VERSION: u32 = 2;
const PREFIX: &[u8] = b"cv/";
const VERSION_KEY: &[u8] = b"ver/cv";

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

pub fn key(citizen: &Cccd) -> Vec<u8> {
    [PREFIX, citizen.as_str().as_bytes()].concat()
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

/// The stored form of a view.
pub fn encode(view: &CitizenView) -> Vec<u8> {
    // Sized for a view with both parts, so it is not reallocated as it grows (the inline
    // projection encodes one per issuance, on the sequencer thread).
    postcard::to_io(view, Vec::with_capacity(128)).expect("serialising to a Vec cannot fail")
}

/// The citizen whose view `event` changes, if any (a lookup or a refusal changes nothing).
fn touched(registry: &Registry, event: &Event) -> Option<Cccd> {
    match event {
        Event::IssuanceRecorded(i) => Some(i.citizen),
        Event::LegacyIssuanceImported { citizen, .. } | Event::DemandRegistered { citizen, .. } => Some(*citizen),
        Event::CaAssigned { demand, .. }
        | Event::DemandAcknowledged { demand, .. }
        | Event::DemandExpired { demand, .. } => registry.demands.get(demand).map(|d| d.citizen),
        _ => None,
    }
}

/// Reads a citizen's view. Never goes through the sequencer.
pub fn lookup(store: &EventStore, citizen: &Cccd) -> Result<Option<CitizenView>, LookupError> {
    decode(citizen, store.get(Cf::Citizens, &key(citizen))?.as_deref())
}

/// A view in its stored form (as read, or as the registrar answered a recorded lookup).
pub fn decode(citizen: &Cccd, stored: Option<&[u8]>) -> Result<Option<CitizenView>, LookupError> {
    stored.map(|bytes| postcard::from_bytes(bytes).map_err(|_| LookupError::Corrupt(*citizen))).transpose()
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored view of a citizen does not decode; rebuild it (kyso-replay rebuild citizen)")]
    Corrupt(Cccd),
}

/// Every citizen's view as `(key, stored bytes)`, in key order: what a rebuild writes, and
/// what tests compare the live column with.
pub fn render_all(registry: &Registry) -> Entries {
    let mut all: Vec<_> =
        registry.citizens.keys().filter_map(|c| render(registry, c).map(|v| (key(c), encode(&v)))).collect();
    all.sort_unstable();
    all
}

/// The stored views, in key order.
pub fn stored_all(store: &EventStore) -> Result<Entries, StoreError> {
    crate::stored_entries(store, Cf::Citizens, &[PREFIX])
}

/// The inline projection the registrar runs.
#[derive(Debug, Default)]
pub struct CitizenViews;

impl InlineProjection for CitizenViews {
    fn project(&mut self, registry: &Registry, event: &Event, batch: &mut Batch) {
        if let Some(citizen) = touched(registry, event) {
            match render(registry, &citizen) {
                Some(view) => batch.put(Cf::Citizens, key(&citizen), encode(&view)),
                None => batch.delete(Cf::Citizens, key(&citizen)),
            }
        }
    }

    fn open(&mut self, store: &EventStore, registry: &Registry) -> Result<(), StoreError> {
        if crate::reopen_inline(store, Cf::Citizens, VERSION_KEY, VERSION, &[PREFIX], || render_all(registry))? {
            tracing::info!(citizens = registry.citizens.len(), "re-rendered the citizen view (new or changed version)");
        }
        Ok(())
    }

    /// A recorded lookup is answered with the view it saw, so the API need not read it
    /// back: under HTTP lookups that read was ~2.4 % of the server's CPU (2026-12-01).
    fn answer(&self, registry: &Registry, command: &Command) -> Option<Answer> {
        match command {
            Command::LookUpCitizen { citizen, .. } => Some(render(registry, citizen).map(|v| encode(&v))),
            _ => None,
        }
    }
}
