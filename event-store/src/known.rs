//! Which stream ids and subjects the store may hold, answered from memory for the writer.

use crate::cf::{self, Cf};
use crate::envelope::StreamId;
use crate::error::StoreError;
use crate::store::EventStore;
use rocksdb::ReadOptions;
use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Every stream id and subject the store may hold, as 64-bit hashes: loaded from the
/// stream heads and salts by a thread started at open, extended as batches are staged. A
/// new citizen's first event looks up a stream head and a salt that do not exist; RocksDB
/// answers such a miss only after probing the memtables' and every level's bloom filters
/// (profiled under 1024 RecordIssuance submitters: 4.3 % of all samples, 13 % of the
/// sequencer thread's). An absent hash answers "new" from memory. A present one still
/// reads RocksDB: it may be another id's hash, a batch that failed, or a salt erased since.
/// ~16 bytes per stream or subject.
///
/// The load takes ~1–2 s per million citizens, so it does not hold up start-up: until it is
/// done every id may exist (RocksDB is read, as without this set), and what is staged
/// meanwhile is kept in `early` and merged in. The loader's iterator sees the store as of
/// its creation, after `early` started recording, so the two together miss nothing.
pub(crate) struct Known {
    hasher: foldhash::fast::RandomState,
    state: KnownState,
}

enum KnownState {
    Loading {
        thread: std::thread::JoinHandle<Result<KnownSets, StoreError>>,
        /// Set when the writer is dropped: the thread holds the store open until it stops.
        cancel: Arc<AtomicBool>,
        /// Ids staged while loading, merged in when it is done.
        early: KnownSets,
    },
    Ready(KnownSets),
    /// Loading failed: every id may exist, for good.
    Unavailable,
}

#[derive(Default)]
struct KnownSets {
    streams: Hashes,
    subjects: Hashes,
}

/// Ids' hashes in 256 sets that each grow on their own, as the registry's citizens do
/// (`commands::domain::citizens`): one set of millions grew on the sequencer's thread by
/// moving all of itself into fresh pages the kernel zeroes, a pause that grew with the
/// store; a shard grows in memory the others freed.
struct Hashes(Box<[HashSet<u64, foldhash::fast::RandomState>]>);

impl Hashes {
    const SHARDS: usize = 256;

    /// Any 8 bits of an id's hash pick its shard (one per `u8`): each set hashes the hash
    /// again with its own seed, so the ids of a shard spread over its table all the same.
    fn shard(&self, hash: u64) -> usize {
        const _: () = assert!(Hashes::SHARDS == 1 << u8::BITS);
        (hash >> 32) as u8 as usize
    }

    fn contains(&self, hash: u64) -> bool {
        self.0[self.shard(hash)].contains(&hash)
    }

    fn insert(&mut self, hash: u64) {
        let shard = self.shard(hash);
        self.0[shard].insert(hash);
    }

    /// Both pick shards by the same bits, so each shard takes its twin's hashes.
    fn extend(&mut self, other: Hashes) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            mine.extend(theirs);
        }
    }
}

impl Default for Hashes {
    fn default() -> Self {
        Hashes((0..Self::SHARDS).map(|_| HashSet::default()).collect())
    }
}

impl Known {
    pub(crate) fn start(store: &Arc<EventStore>) -> Self {
        let hasher = foldhash::fast::RandomState::default();
        let cancel = Arc::new(AtomicBool::new(false));
        let (store, stop, hashing) = (Arc::clone(store), Arc::clone(&cancel), hasher.clone());
        let thread =
            std::thread::Builder::new().name("kyso-known-ids".into()).spawn(move || Self::load(&store, hashing, &stop));
        let state = match thread {
            Ok(thread) => KnownState::Loading { thread, cancel, early: KnownSets::default() },
            Err(e) => {
                tracing::warn!(error = %e, "no thread to load the known stream ids; every new stream reads RocksDB");
                KnownState::Unavailable
            }
        };
        Known { hasher, state }
    }

    fn load(
        store: &EventStore,
        hasher: foldhash::fast::RandomState,
        cancel: &AtomicBool,
    ) -> Result<KnownSets, StoreError> {
        let keys = |cf: Cf, skip: usize| -> Result<Hashes, StoreError> {
            let mut opts = ReadOptions::default();
            opts.set_total_order_seek(true);
            opts.fill_cache(false);
            let mut raw = store.raw_iterator(cf, opts);
            let mut set = Hashes::default();
            raw.seek_to_first();
            let mut loaded = 0u64;
            while let Some(key) = raw.key() {
                set.insert(hasher.hash_one(key.get(skip..).unwrap_or_default()));
                loaded += 1;
                if loaded.is_multiple_of(65_536) && cancel.load(Ordering::Relaxed) {
                    // Nobody reads this outcome: the writer is gone.
                    return Err(StoreError::Io("loading the known stream ids was cancelled".into()));
                }
                raw.next();
            }
            raw.status()?;
            Ok(set)
        };
        // A stream head's key is the id's length then the id; a salt's is the subject.
        let streams = keys(Cf::Streams, cf::STREAM_LEN_BYTES)?;
        let subjects = keys(Cf::Salts, 0)?;
        Ok(KnownSets { streams, subjects })
    }

    /// Takes the loader's outcome once it is done.
    fn poll(&mut self) {
        if !matches!(&self.state, KnownState::Loading { thread, .. } if thread.is_finished()) {
            return;
        }
        let KnownState::Loading { thread, early, .. } = std::mem::replace(&mut self.state, KnownState::Unavailable)
        else {
            unreachable!("matched just above")
        };
        match thread.join() {
            Ok(Ok(mut sets)) => {
                sets.streams.extend(early.streams);
                sets.subjects.extend(early.subjects);
                self.state = KnownState::Ready(sets);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "loading the known stream ids failed; every new stream reads RocksDB")
            }
            Err(_) => {
                tracing::warn!("the thread loading the known stream ids panicked; every new stream reads RocksDB")
            }
        }
    }

    /// Whether the sets are loaded.
    pub(crate) fn ready(&mut self) -> bool {
        self.sets().is_some()
    }

    /// The sets, once loaded.
    fn sets(&mut self) -> Option<&KnownSets> {
        self.poll();
        match &self.state {
            KnownState::Ready(sets) => Some(sets),
            _ => None,
        }
    }

    /// Where a new id goes: the sets, or `early` while they load (nowhere if loading failed).
    fn growing(&mut self) -> Option<&mut KnownSets> {
        self.poll();
        match &mut self.state {
            KnownState::Ready(sets) | KnownState::Loading { early: sets, .. } => Some(sets),
            KnownState::Unavailable => None,
        }
    }

    pub(crate) fn may_have_stream(&mut self, stream: &StreamId) -> bool {
        let hash = self.hasher.hash_one(stream.as_str().as_bytes());
        self.sets().is_none_or(|s| s.streams.contains(hash))
    }

    pub(crate) fn add_stream(&mut self, stream: &str) {
        let hash = self.hasher.hash_one(stream.as_bytes());
        if let Some(sets) = self.growing() {
            sets.streams.insert(hash);
        }
    }

    pub(crate) fn may_have_subject(&mut self, subject: &str) -> bool {
        let hash = self.hasher.hash_one(subject.as_bytes());
        self.sets().is_none_or(|s| s.subjects.contains(hash))
    }

    pub(crate) fn add_subject(&mut self, subject: &str) {
        let hash = self.hasher.hash_one(subject.as_bytes());
        if let Some(sets) = self.growing() {
            sets.subjects.insert(hash);
        }
    }
}

impl Drop for Known {
    fn drop(&mut self) {
        if let KnownState::Loading { thread, cancel, .. } = std::mem::replace(&mut self.state, KnownState::Unavailable)
        {
            cancel.store(true, Ordering::Relaxed);
            // Its outcome no longer matters; waiting means the store is closed when the
            // writer is gone, so the same process can open it again.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_find_what_went_into_any_shard_and_what_was_merged_in() {
        let hasher = foldhash::fast::RandomState::default();
        let hash = |i: u32| hasher.hash_one(i);
        let (mut loaded, mut early) = (Hashes::default(), Hashes::default());
        (0..20_000).for_each(|i| loaded.insert(hash(i)));
        (20_000..30_000).for_each(|i| early.insert(hash(i)));
        loaded.extend(early);
        assert!((0..30_000).all(|i| loaded.contains(hash(i))));
        assert!((30_000..40_000).all(|i| !loaded.contains(hash(i))), "no false hits for these");
        let used = loaded.0.iter().filter(|set| !set.is_empty()).count();
        assert_eq!(used, Hashes::SHARDS, "30,000 hashes reach every shard");
    }
}
