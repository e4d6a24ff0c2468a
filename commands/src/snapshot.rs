//! Snapshots of the registry's state in the `state` column family, so start-up folds only
//! the events written since the last snapshot instead of the whole log.
//!
//! A snapshot is a cache of `apply` over the log up to its seq, never a record: it is
//! written after the events it covers are durable, and one that is missing, of another
//! format version, made under another campaign file, unreadable or ahead of the log only
//! means folding more of the log (from the start, at worst). The registry it loads is the
//! one a fold of the log gives (`tests/tests/registrar.rs` checks this).

use crate::domain::admin_units::communes_of;
use crate::domain::ca::{Ca, CaId};
use crate::domain::event::{ComplaintId, DemandId, Place, StaffId};
use crate::domain::interned::Interner;
use crate::domain::registry::{CitizenMap, Complaint, Demand, Holding, Staff};
use crate::domain::{Campaign, Registry};
use crate::registrar::{OpenError, fold};
use chrono::NaiveDate;
use event_store::{AsideOp, Cf, EventStore, Seq, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// The one key in the `state` column family: a new snapshot replaces the last.
pub const KEY: &[u8] = b"registry";

/// The stored form's version. Bump it when `Registry` or any type inside it changes shape:
/// `tests/golden.rs` fails until then, and a bumped version makes start-up ignore older
/// snapshots (one full fold) instead of misreading them.
pub const STATE_VERSION: u32 = 2;

/// Read first, on its own, so a snapshot of another version is never decoded further.
#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    campaign: [u8; 32],
    seq: Seq,
}

/// `Registry` without what the campaign file gives (the campaign and its communes).
/// Borrowed when written, owned when read.
#[derive(Serialize, Deserialize)]
struct State<'a> {
    cas: Cow<'a, BTreeMap<CaId, Ca>>,
    citizens: Cow<'a, CitizenMap>,
    demands: Cow<'a, BTreeMap<DemandId, Demand>>,
    staff: Cow<'a, BTreeMap<StaffId, Staff>>,
    staff_by_token: Cow<'a, HashMap<[u8; 32], StaffId>>,
    zones: Cow<'a, BTreeMap<String, CaId>>,
    counters: Cow<'a, BTreeMap<String, String>>,
    booths: Cow<'a, BTreeMap<(String, NaiveDate), CaId>>,
    complaints: Cow<'a, BTreeMap<ComplaintId, Complaint>>,
    next_demand: DemandId,
    next_staff: StaffId,
    next_complaint: ComplaintId,
    rotation: u64,
    ca_ids: Cow<'a, Interner<CaId>>,
    places: Cow<'a, Interner<Place>>,
}

/// Identifies the campaign file's content: decisions already folded into the state (free
/// years, phases, late flags) were made under it.
fn campaign_print(campaign: &Campaign) -> [u8; 32] {
    Sha256::digest(format!("{campaign:?}").as_bytes()).into()
}

/// The registry after `seq`, in its stored form.
pub fn encode(registry: &Registry, seq: Seq) -> Vec<u8> {
    let header = Header { version: STATE_VERSION, campaign: campaign_print(&registry.campaign), seq };
    let state = State {
        cas: Cow::Borrowed(&registry.cas),
        citizens: Cow::Borrowed(&registry.citizens),
        demands: Cow::Borrowed(&registry.demands),
        staff: Cow::Borrowed(&registry.staff),
        staff_by_token: Cow::Borrowed(&registry.staff_by_token),
        zones: Cow::Borrowed(&registry.zones),
        counters: Cow::Borrowed(&registry.counters),
        booths: Cow::Borrowed(&registry.booths),
        complaints: Cow::Borrowed(&registry.complaints),
        next_demand: registry.next_demand,
        next_staff: registry.next_staff,
        next_complaint: registry.next_complaint,
        rotation: registry.rotation,
        ca_ids: Cow::Borrowed(&registry.ca_ids),
        places: Cow::Borrowed(&registry.places),
    };
    let mut out = postcard::to_stdvec(&header).expect("serialising to a Vec cannot fail");
    postcard::to_io(&state, &mut out).expect("serialising to a Vec cannot fail");
    out
}

/// Why a stored snapshot was not used (start-up then folds the log from the start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("it is of state format {found}, this build reads {STATE_VERSION}")]
    Version { found: u32 },
    #[error("it was made under another campaign file")]
    Campaign,
    #[error("it covers the log up to seq {snapshot}, but the log ends at {log}")]
    AheadOfLog { snapshot: u64, log: u64 },
    #[error("it does not decode")]
    Corrupt,
}

/// The registry a snapshot holds and the seq it covers, if it was made by this format
/// version under `campaign`.
pub fn decode(bytes: &[u8], campaign: &Campaign) -> Result<(Registry, Seq), Unusable> {
    let (header, rest): (Header, _) = postcard::take_from_bytes(bytes).map_err(|_| Unusable::Corrupt)?;
    if header.version != STATE_VERSION {
        return Err(Unusable::Version { found: header.version });
    }
    if header.campaign != campaign_print(campaign) {
        return Err(Unusable::Campaign);
    }
    let state: State = postcard::from_bytes(rest).map_err(|_| Unusable::Corrupt)?;
    let registry = Registry {
        cas: state.cas.into_owned(),
        citizens: state.citizens.into_owned(),
        demands: state.demands.into_owned(),
        staff: state.staff.into_owned(),
        staff_by_token: state.staff_by_token.into_owned(),
        zones: state.zones.into_owned(),
        counters: state.counters.into_owned(),
        booths: state.booths.into_owned(),
        complaints: state.complaints.into_owned(),
        next_demand: state.next_demand,
        next_staff: state.next_staff,
        next_complaint: state.next_complaint,
        rotation: state.rotation,
        ca_ids: state.ca_ids.into_owned(),
        places: state.places.into_owned(),
        units: communes_of(&campaign.province_code),
        campaign: campaign.clone(),
    };
    // Bytes that decode can still name a CA or place the snapshot does not hold; the
    // registry would panic on the first lookup of it.
    let names_held = |h: &Holding| registry.ca_ids.holds(h.ca) && h.place.is_none_or(|p| registry.places.holds(p));
    let in_range = registry.citizens.values().all(|c| c.holding.as_ref().is_none_or(names_held))
        && registry.demands.values().all(|d| d.ca.is_none_or(|ca| registry.ca_ids.holds(ca)));
    if !in_range {
        return Err(Unusable::Corrupt);
    }
    Ok((registry, header.seq))
}

/// Stores the registry as of `seq`, which must be durable in the log already.
pub fn write(store: &EventStore, registry: &Registry, seq: Seq) -> Result<(), StoreError> {
    put(store, encode(registry, seq))
}

/// Stores an [`encode`]d snapshot. Durable when it returns; flushed rather than written
/// through the WAL, whose next synced commit would otherwise carry the snapshot's bytes too.
pub fn put(store: &EventStore, encoded: Vec<u8>) -> Result<(), StoreError> {
    store.write_aside_flushed(Cf::State, [AsideOp::Put(KEY.to_vec(), encoded)])
}

/// A registry brought up to the end of the log.
#[derive(Debug)]
pub struct Loaded {
    pub registry: Registry,
    /// The seq the snapshot it started from covers (0: none was used).
    pub snapshot_seq: Seq,
    /// Why a stored snapshot was passed over, if one was.
    pub unusable: Option<Unusable>,
    /// Events folded after the snapshot.
    pub folded: u64,
}

/// The registry at the end of the log: the stored snapshot if it can be used, plus the
/// events after it.
pub fn load(store: &EventStore, campaign: &Campaign) -> Result<Loaded, OpenError> {
    let last = store.last_seq();
    let stored = match store.get(Cf::State, KEY)? {
        None => Err(None),
        Some(bytes) => match decode(&bytes, campaign) {
            Ok((_, seq)) if seq > last => Err(Some(Unusable::AheadOfLog { snapshot: seq.0, log: last.0 })),
            Ok(found) => Ok(found),
            Err(why) => Err(Some(why)),
        },
    };
    let (mut registry, snapshot_seq, unusable) = match stored {
        Ok((registry, seq)) => (registry, seq, None),
        Err(why) => (Registry::new(campaign.clone()), Seq(0), why),
    };
    let folded = fold(store, &mut registry, Seq(snapshot_seq.0 + 1))?;
    Ok(Loaded { registry, snapshot_seq, unusable, folded })
}
