//! Who may act: the CAs with their status and the field staff with their QR tokens (R11,
//! R13). Inline: a revoked badge or an expelled CA must fail the very next QR check, so
//! this is written in the same batch as the event.

use crate::Entries;
use commands::domain::registry::Registry;
use commands::domain::{CaId, Event};
use commands::registrar::InlineProjection;
use event_store::{Batch, Cf, EventStore, StoreError};
use serde::{Deserialize, Serialize};

pub const VERSION: u32 = 1;
const VERSION_KEY: &[u8] = b"ver/dir";
const CA: &[u8] = b"ca/";
const STAFF: &[u8] = b"sf/";
const TOKEN: &[u8] = b"st/";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaCard {
    pub ca: CaId,
    pub name: String,
    pub app_name: String,
    /// `active`, `suspended` or `expelled`.
    pub status: String,
}

/// What a citizen sees when scanning a staff member's QR code (R11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StaffCard {
    pub staff: u64,
    pub ca: CaId,
    pub full_name: String,
    pub birth_year: u16,
    pub position: String,
    pub photo_ref: String,
    pub revoked: bool,
}

fn ca_key(ca: &CaId) -> Vec<u8> {
    [CA, ca.as_str().as_bytes()].concat()
}

fn staff_key(staff: u64) -> Vec<u8> {
    [STAFF, &staff.to_be_bytes()[..]].concat()
}

fn token_key(hash: &[u8; 32]) -> Vec<u8> {
    [TOKEN, &hash[..]].concat()
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("serialising to a Vec cannot fail")
}

fn ca_card(registry: &Registry, ca: &CaId) -> Option<CaCard> {
    registry.cas.get(ca).map(|c| CaCard {
        ca: c.id.clone(),
        name: c.name.clone(),
        app_name: c.app_name.clone(),
        status: c.status.name().to_string(),
    })
}

fn staff_card(registry: &Registry, staff: u64) -> Option<StaffCard> {
    registry.staff.get(&staff).map(|s| StaffCard {
        staff,
        ca: s.ca.clone(),
        full_name: s.full_name.clone(),
        birth_year: s.birth_year,
        position: s.position.clone(),
        photo_ref: s.photo_ref.clone(),
        revoked: s.revoked,
    })
}

/// Everything this projection stores, rendered from a registry, in key order.
pub fn render_all(registry: &Registry) -> Entries {
    let mut all = Entries::new();
    for ca in registry.cas.keys() {
        all.extend(ca_card(registry, ca).map(|c| (ca_key(ca), encode(&c))));
    }
    for staff in registry.staff.keys() {
        all.extend(staff_card(registry, *staff).map(|c| (staff_key(*staff), encode(&c))));
    }
    for (hash, staff) in &registry.staff_by_token {
        all.push((token_key(hash), staff.to_be_bytes().to_vec()));
    }
    all.sort_unstable();
    all
}

/// The stored entries, in key order.
pub fn stored_all(store: &EventStore) -> Result<Entries, StoreError> {
    crate::stored_entries(store, &[CA, STAFF, TOKEN])
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a stored directory entry does not decode; restart kyso to rebuild it")]
    Corrupt,
}

fn get<T: for<'de> Deserialize<'de>>(store: &EventStore, key: &[u8]) -> Result<Option<T>, DirectoryError> {
    match store.get(Cf::Projections, key)? {
        None => Ok(None),
        Some(b) => postcard::from_bytes(&b).map(Some).map_err(|_| DirectoryError::Corrupt),
    }
}

pub fn ca(store: &EventStore, ca: &CaId) -> Result<Option<CaCard>, DirectoryError> {
    get(store, &ca_key(ca))
}

pub fn cas(store: &EventStore) -> Result<Vec<CaCard>, DirectoryError> {
    store
        .scan_prefix(Cf::Projections, CA)
        .map(|kv| postcard::from_bytes(&kv?.1).map_err(|_| DirectoryError::Corrupt))
        .collect()
}

pub fn staff(store: &EventStore, staff: u64) -> Result<Option<StaffCard>, DirectoryError> {
    get(store, &staff_key(staff))
}

/// The staff of one CA (a CA sees only its own).
pub fn staff_of(store: &EventStore, ca: &CaId) -> Result<Vec<StaffCard>, DirectoryError> {
    let mut out = Vec::new();
    for kv in store.scan_prefix(Cf::Projections, STAFF) {
        let card: StaffCard = postcard::from_bytes(&kv?.1).map_err(|_| DirectoryError::Corrupt)?;
        if card.ca == *ca {
            out.push(card);
        }
    }
    Ok(out)
}

/// The answer to a QR check (R11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Verification {
    /// True only for a current staff member of a CA that may act now.
    pub authorized: bool,
    pub staff: Option<StaffCard>,
    pub ca: Option<CaCard>,
}

/// Checks a scanned token's hash. An unknown token is simply not authorized.
pub fn verify(store: &EventStore, token_hash: &[u8; 32]) -> Result<Verification, DirectoryError> {
    let id = match store.get(Cf::Projections, &token_key(token_hash))? {
        None => return Ok(Verification { authorized: false, staff: None, ca: None }),
        Some(b) => u64::from_be_bytes(b.as_slice().try_into().map_err(|_| DirectoryError::Corrupt)?),
    };
    let staff = staff(store, id)?;
    let ca = match &staff {
        Some(s) => ca(store, &s.ca)?,
        None => None,
    };
    let authorized = staff.as_ref().is_some_and(|s| !s.revoked) && ca.as_ref().is_some_and(|c| c.status == "active");
    Ok(Verification { authorized, staff, ca })
}

#[derive(Debug, Default)]
pub struct Directory;

impl InlineProjection for Directory {
    fn project(&mut self, registry: &Registry, event: &Event, batch: &mut Batch) {
        match event {
            Event::CaRegistered { ca, .. }
            | Event::CaSuspended { ca, .. }
            | Event::CaReinstated { ca }
            | Event::CaExpelled { ca, .. } => {
                if let Some(card) = ca_card(registry, ca) {
                    batch.put(Cf::Projections, ca_key(ca), encode(&card));
                }
            }
            Event::StaffRegistered { staff, token_hash, .. } => {
                if let Some(card) = staff_card(registry, *staff) {
                    batch.put(Cf::Projections, staff_key(*staff), encode(&card));
                }
                batch.put(Cf::Projections, token_key(token_hash), staff.to_be_bytes().to_vec());
            }
            Event::StaffRevoked { staff, .. } => {
                if let Some(card) = staff_card(registry, *staff) {
                    batch.put(Cf::Projections, staff_key(*staff), encode(&card));
                }
            }
            _ => {}
        }
    }

    fn open(&mut self, store: &EventStore, registry: &Registry) -> Result<(), StoreError> {
        crate::reopen_inline(store, VERSION_KEY, VERSION, &[CA, STAFF, TOKEN], || render_all(registry)).map(drop)
    }
}
