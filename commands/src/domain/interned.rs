//! Values that millions of citizens' holdings share (a handful of CAs, a few hundred
//! counters and booths), kept once and named by a small index. A holding is then plain
//! data: applying an issuance allocates nothing for it, and a copy of the registry (what a
//! state snapshot encodes, off the sequencer) is a memory copy.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::Hash;

/// Interning runs in `apply` for every issuance; the values are a province's CA ids and
/// place names, not attacker-chosen keys, so a fast fixed hash is enough.
type Index<T> = HashMap<T, Interned, foldhash::fast::FixedState>;

/// An index into an [`Interner`]: the order in which the log first named the value, so a
/// fold and a snapshot of the same log give the same indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Interned(u32);

/// Stored as its list alone; the index is rebuilt when it is read.
#[derive(Debug, Clone)]
pub struct Interner<T: Eq + Hash + Clone> {
    values: Vec<T>,
    index: Index<T>,
}

impl<T: Eq + Hash + Clone + Serialize> Serialize for Interner<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.values.serialize(s)
    }
}

impl<'de, T: Eq + Hash + Clone + Deserialize<'de>> Deserialize<'de> for Interner<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<T>::deserialize(d).map(Self::from)
    }
}

impl<T: Eq + Hash + Clone> Default for Interner<T> {
    fn default() -> Self {
        Self { values: Vec::new(), index: Index::default() }
    }
}

impl<T: Eq + Hash + Clone> From<Vec<T>> for Interner<T> {
    fn from(values: Vec<T>) -> Self {
        let index = values.iter().enumerate().map(|(i, v)| (v.clone(), Interned(i as u32))).collect();
        Self { values, index }
    }
}

/// Two interners are equal when they name the same values in the same order; the index
/// follows from that.
impl<T: Eq + Hash + Clone> PartialEq for Interner<T> {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
    }
}

impl<T: Eq + Hash + Clone> Eq for Interner<T> {}

impl<T: Eq + Hash + Clone> Interner<T> {
    /// The index of `value`, added at the end if it is new.
    pub fn intern(&mut self, value: &T) -> Interned {
        if let Some(&i) = self.index.get(value) {
            return i;
        }
        // u32::MAX distinct CAs, counters or booths cannot come from one province's log.
        let i = Interned(u32::try_from(self.values.len()).expect("fewer than 2^32 interned values"));
        self.values.push(value.clone());
        self.index.insert(value.clone(), i);
        i
    }

    /// The value an index names. Indices come only from `intern` on this interner (or its
    /// snapshot), so one out of range is a bug, not bad input.
    pub fn get(&self, i: Interned) -> &T {
        &self.values[i.0 as usize]
    }

    /// Whether `i` names a value here: what a decoded snapshot's indices are checked with.
    pub fn holds(&self, i: Interned) -> bool {
        (i.0 as usize) < self.values.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_twice_gives_one_index_and_a_stored_interner_reads_back_equal() {
        let mut names = Interner::default();
        let a = names.intern(&"VNPT-CA".to_string());
        let b = names.intern(&"CA2".to_string());
        assert_eq!(names.intern(&"VNPT-CA".to_string()), a);
        assert_ne!(a, b);
        assert_eq!(names.get(b), "CA2");
        assert_eq!(names.get(a), "VNPT-CA");
        let mut back: Interner<String> = postcard::from_bytes(&postcard::to_stdvec(&names).unwrap()).unwrap();
        assert_eq!(back, names);
        // Interning a known value again finds it through the index instead of adding it.
        assert_eq!(back.intern(&"CA2".to_string()), b, "the index is rebuilt on read");
        assert_eq!(back, names);
    }
}
