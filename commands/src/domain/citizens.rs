//! The registry's citizens, millions of them, in many small hash maps instead of one.
//!
//! One map holding every citizen grows by rehashing all of it into a table twice the size,
//! on the writer's thread, in fresh memory the kernel must zero: 17 % of the sequencer
//! thread's samples under 1024 RecordIssuance submitters from an empty registry (session
//! 25), in pauses of every command that grow with the registry. Each shard here grows on
//! its own, a few megabytes at most, in memory other shards freed.
//!
//! The shards are shared copy-on-write (`Arc`), so a state snapshot copies pointers, not
//! citizens: the first change to a shard while a snapshot still reads it copies that shard
//! only. The copy of the whole map had been the sequencer's one long pause per snapshot.

use super::cccd::Cccd;
use super::registry::Citizen;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::BuildHasher;
use std::sync::Arc;

/// Citizens are looked up and updated several times per command on the sequencer thread;
/// foldhash, seeded per map like std's SipHash, costs a fraction of it (SipHash was ~1.7 %
/// of that thread's instructions under 1024 RecordIssuance submitters).
type Hasher = foldhash::fast::RandomState;
type Shard = HashMap<Cccd, Citizen, Hasher>;

/// A shard of a province's citizens (a few million) is then a few megabytes at most.
const SHARDS: usize = 256;

/// `Cccd → Citizen`, stored as a map is (postcard: the count, then each pair), so a
/// snapshot reads the same whichever way it was written.
#[derive(Clone)]
pub struct CitizenMap {
    /// Picks a citizen's shard. Seeded apart from the shards' own hashers: a shard whose
    /// keys shared their hash's bits would crowd its table.
    pick: Hasher,
    shards: Box<[Arc<Shard>]>,
}

impl Default for CitizenMap {
    fn default() -> Self {
        Self { pick: Hasher::default(), shards: (0..SHARDS).map(|_| Arc::new(Shard::default())).collect() }
    }
}

impl CitizenMap {
    fn shard(&self, citizen: &Cccd) -> usize {
        (self.pick.hash_one(citizen) >> 56) as usize % SHARDS
    }

    /// The shard to change, copied first if a snapshot still reads it.
    fn shard_mut(&mut self, citizen: &Cccd) -> &mut Shard {
        let i = self.shard(citizen);
        Arc::make_mut(&mut self.shards[i])
    }

    pub fn get(&self, citizen: &Cccd) -> Option<&Citizen> {
        self.shards[self.shard(citizen)].get(citizen)
    }

    pub fn get_mut(&mut self, citizen: &Cccd) -> Option<&mut Citizen> {
        // No copy of a shard for a citizen it does not hold.
        self.get(citizen)?;
        self.shard_mut(citizen).get_mut(citizen)
    }

    pub fn entry(&mut self, citizen: Cccd) -> Entry<'_, Cccd, Citizen> {
        self.shard_mut(&citizen).entry(citizen)
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.is_empty())
    }

    /// Every citizen, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Cccd, &Citizen)> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    pub fn keys(&self) -> impl Iterator<Item = &Cccd> {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &Citizen> {
        self.iter().map(|(_, v)| v)
    }
}

impl PartialEq for CitizenMap {
    /// The same citizens with the same state, however each map placed them.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Eq for CitizenMap {}

impl std::fmt::Debug for CitizenMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for CitizenMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for CitizenMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Citizens;
        impl<'de> Visitor<'de> for Citizens {
            type Value = CitizenMap;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of CCCDs to citizens")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<CitizenMap, A::Error> {
                let mut map = CitizenMap::default();
                // Sized up front: a snapshot's count is known and shards fill evenly. No
                // headroom: a table's buckets are a power of two, so a little more than the
                // even share can double every shard's memory (and did: 8.6 s instead of
                // 4.9 s to load 6.7M citizens, `kyso-bench --only projections`).
                if let Some(n) = entries.size_hint() {
                    map.shards.iter_mut().for_each(|s| Arc::make_mut(s).reserve(n / SHARDS));
                }
                while let Some((k, v)) = entries.next_entry()? {
                    map.shard_mut(&k).insert(k, v);
                }
                Ok(map)
            }
        }
        deserializer.deserialize_map(Citizens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cccd(n: u64) -> Cccd {
        Cccd::parse(&format!("046196{n:06}"), 2023).expect("a valid CCCD")
    }

    #[test]
    fn a_snapshot_reads_as_the_one_map_it_replaced_wrote_and_keeps_its_shards_apart() {
        let mut map = CitizenMap::default();
        let mut plain: HashMap<Cccd, Citizen> = HashMap::new();
        for n in 0..20_000 {
            let c = Citizen { holding: None, open_demand: (n % 3 == 0).then_some(n) };
            *map.entry(cccd(n)).or_default() = c;
            plain.insert(cccd(n), c);
        }
        assert_eq!(map.len(), 20_000);
        // ~78 per shard: an empty one has odds of about e^-78.
        assert!(map.shards.iter().all(|s| !s.is_empty()), "20,000 citizens reach every one of 256 shards");
        let from_plain: CitizenMap = postcard::from_bytes(&postcard::to_stdvec(&plain).unwrap()).unwrap();
        assert_eq!(from_plain, map);
        let back: HashMap<Cccd, Citizen> = postcard::from_bytes(&postcard::to_stdvec(&map).unwrap()).unwrap();
        assert_eq!(back, plain);

        let snapshot = map.clone();
        map.get_mut(&cccd(7)).unwrap().open_demand = Some(99);
        assert!(map.get_mut(&cccd(999_999)).is_none());
        assert_eq!(snapshot.get(&cccd(7)).unwrap().open_demand, None, "a snapshot keeps what it copied");
        assert_ne!(snapshot, map);
        let changed = map.shards.iter().zip(&snapshot.shards).filter(|(a, b)| !Arc::ptr_eq(a, b)).count();
        assert_eq!(changed, 1, "one change copies one shard");
    }
}
