use super::{Hash, NodeId, empty_root, hash_children};

/// The right edge of the tree: the roots of the perfect subtrees that cover leaves
/// `[0, size)`, largest first. Appending a leaf touches only this (≤ 64 hashes), which is
/// what lets the writer extend the tree in the same batch as the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// `(level, hash)`, levels strictly decreasing: the set bits of `size`.
    peaks: Vec<(u8, Hash)>,
}

impl Default for CompactRange {
    fn default() -> Self {
        Self::new()
    }
}

impl CompactRange {
    pub fn new() -> Self {
        Self { size: 0, peaks: Vec::new() }
    }

    /// Rebuilds the range for `size` from stored perfect-subtree hashes.
    pub fn from_peaks<E>(size: u64, mut node: impl FnMut(NodeId) -> Result<Hash, E>) -> Result<Self, E> {
        let peaks = peak_ids(size).map(|id| node(id).map(|h| (id.level, h))).collect::<Result<_, _>>()?;
        Ok(Self { size, peaks })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash; calls `completed` for every perfect subtree this completes,
    /// the leaf itself first, so the caller can store them.
    pub fn append(&mut self, leaf: Hash, mut completed: impl FnMut(NodeId, &Hash)) {
        let mut index = self.size;
        let mut level = 0u8;
        let mut hash = leaf;
        completed(NodeId::new(level, index), &hash);
        while let Some(&(top_level, top)) = self.peaks.last() {
            if top_level != level {
                break;
            }
            self.peaks.pop();
            hash = hash_children(&top, &hash);
            level += 1;
            index >>= 1;
            completed(NodeId::new(level, index), &hash);
        }
        self.peaks.push((level, hash));
        self.size += 1;
    }

    /// RFC 6962 MTH over all leaves appended so far.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(&(_, last)) = peaks.next() else {
            return empty_root();
        };
        peaks.fold(last, |acc, (_, left)| hash_children(left, &acc))
    }
}

/// The perfect subtrees covering `[0, size)`, largest first.
pub fn peak_ids(size: u64) -> impl Iterator<Item = NodeId> {
    (0..64u8).rev().filter(move |l| size & (1 << l) != 0).map(move |level| {
        // Leaves before this peak are the higher set bits of `size`.
        let start = size & !((1u64 << level) | ((1u64 << level) - 1));
        NodeId::new(level, start >> level)
    })
}

#[cfg(test)]
mod tests {
    use super::super::{hash_leaf, naive};
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn root_matches_naive_and_rebuild_from_peaks_agrees() {
        let mut range = CompactRange::new();
        let mut nodes = HashMap::new();
        let mut leaves = vec![];
        for i in 0..300u32 {
            let leaf = hash_leaf(&i.to_be_bytes());
            leaves.push(leaf);
            range.append(leaf, |id, h| {
                nodes.insert(id, *h);
            });
            assert_eq!(range.root(), naive::mth(&leaves), "size {}", i + 1);
            let rebuilt = CompactRange::from_peaks(range.size(), |id| nodes.get(&id).copied().ok_or(id)).unwrap();
            assert_eq!(rebuilt, range);
        }
    }
}
