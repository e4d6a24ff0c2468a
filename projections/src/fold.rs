//! The shape every asynchronous projection has: a name, a version, and a pure `apply`.

use commands::codec::{self, DecodeError};
use commands::domain::Event;
use event_store::{AsideOp, Envelope, EnvelopeRef, RegistryTime, Seq};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a fold may know about an event besides the event itself.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub seq: Seq,
    pub recorded_at: RegistryTime,
    pub actor: &'a str,
}

/// An event decoded once and handed to every fold.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub seq: Seq,
    pub recorded_at: RegistryTime,
    pub actor: String,
    pub event: Event,
}

impl Decoded {
    pub fn from_envelope(env: Envelope) -> Result<Self, DecodeError> {
        let event = codec::decode(&env)?;
        Ok(Self { seq: env.seq, recorded_at: env.recorded_at, actor: env.meta.actor, event })
    }

    pub fn from_ref(env: &EnvelopeRef<'_>) -> Result<Self, DecodeError> {
        let event = codec::decode_ref(env)?;
        Ok(Self { seq: env.seq, recorded_at: env.recorded_at, actor: env.meta.actor.to_string(), event })
    }

    pub fn ctx(&self) -> Ctx<'_> {
        Ctx { seq: self.seq, recorded_at: self.recorded_at, actor: &self.actor }
    }
}

/// Keys a fold writes beside its snapshot (an index too large to keep in memory). Writes
/// are puts of keys derived from the event alone, so replaying an event after a crash
/// writes the same keys again and changes nothing.
#[derive(Debug, Default)]
pub struct KeyOut {
    prefix: Vec<u8>,
    keys: Vec<Vec<u8>>,
}

impl KeyOut {
    pub fn new(prefix: Vec<u8>) -> Self {
        Self { prefix, keys: Vec::new() }
    }

    pub fn put(&mut self, parts: &[&[u8]]) {
        let mut key = self.prefix.clone();
        for p in parts {
            key.extend_from_slice(p);
        }
        self.keys.push(key);
    }

    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    pub fn take(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.keys)
    }

    /// The keys written so far, as store writes (index keys carry no value), in key order:
    /// the memtable's skiplist then finds each key's place from the last one's instead of
    /// from its top (the audit index's keys start with a citizen's CCCD, at a random place;
    /// inserting them was most of the projections thread under HTTP lookups).
    pub fn take_puts(&mut self) -> impl Iterator<Item = AsideOp> + use<> {
        let mut keys = self.take();
        keys.sort_unstable();
        keys.into_iter().map(|k| AsideOp::Put(k, Vec::new()))
    }
}

/// A projection that follows the log. Its whole state serialises deterministically (ordered
/// maps only), so a rebuild can be compared with the live one byte for byte.
pub trait Fold: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stable name: the key of its snapshot and the `rebuild` argument.
    const NAME: &'static str;
    /// Bump when the stored form or the meaning changes: the projection is then rebuilt.
    const VERSION: u32;
    /// Folds one event. Pure: everything it needs is in `ctx` and `event`.
    fn apply(&mut self, ctx: &Ctx<'_>, event: &Event, keys: &mut KeyOut);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_are_written_in_key_order_under_their_prefix() {
        let mut keys = KeyOut::new(b"p/".to_vec());
        for part in [&b"c046"[..], b"a\0", b"c001", b"c046"] {
            keys.put(&[part, &7u64.to_be_bytes()]);
        }
        let written: Vec<AsideOp> = keys.take_puts().collect();
        let key = |part: &[u8]| AsideOp::Put([b"p/", part, &7u64.to_be_bytes()].concat(), Vec::new());
        assert_eq!(written, [key(b"a\0"), key(b"c001"), key(b"c046"), key(b"c046")]);
        assert_eq!(keys.take_puts().count(), 0);
    }
}
