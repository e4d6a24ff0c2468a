//! The RFC 6962 Merkle tree over the log (leaf index = seq − 1).
//!
//! This module does no I/O: the store hands it node hashes through [`NodeSource`], and the
//! auditors' tools reuse it unchanged. Only *perfect* subtrees (2^level leaves, aligned) are
//! ever stored; every other hash a proof needs is derived from them, as RFC 6962 §2.1 defines.

mod compact;
mod proof;

pub use compact::{CompactRange, peak_ids};
pub use proof::{consistency_proof, inclusion_proof, root_at};

use sha2::{Digest, Sha256};

/// A SHA-256 node or leaf hash.
pub type Hash = [u8; 32];

/// RFC 6962 §2.1: the hash of an empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// RFC 6962 §2.1: `SHA-256(0x00 || leaf)`; the prefix keeps leaves and nodes apart.
pub fn hash_leaf(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

/// RFC 6962 §2.1: `SHA-256(0x01 || left || right)`.
pub fn hash_children(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The address of a perfect subtree: `2^level` leaves starting at leaf `index << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    pub const fn new(level: u8, index: u64) -> Self {
        Self { level, index }
    }
}

/// Where proof generation reads the stored hashes of perfect subtrees from.
pub trait NodeSource {
    type Error;
    /// The hash of a perfect subtree that is complete in the tree being proved.
    fn node(&self, id: NodeId) -> Result<Hash, Self::Error>;
}

/// RFC 6962's split point: the largest power of two strictly smaller than `n` (requires n ≥ 2).
pub(crate) fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
pub(crate) mod naive {
    //! RFC 6962 §2.1 written as literally as possible, to check the fast code against.
    use super::*;

    pub fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                hash_children(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    pub fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        let n = leaves.len();
        if n <= 1 {
            return vec![];
        }
        let k = split(n as u64) as usize;
        if m < k {
            let mut p = path(m, &leaves[..k]);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = path(m - k, &leaves[k..]);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    pub fn proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        fn sub(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
            let n = d.len();
            if m == n {
                return if b { vec![] } else { vec![mth(d)] };
            }
            let k = split(n as u64) as usize;
            if m <= k {
                let mut p = sub(m, &d[..k], b);
                p.push(mth(&d[k..]));
                p
            } else {
                let mut p = sub(m - k, &d[k..], false);
                p.push(mth(&d[..k]));
                p
            }
        }
        if m == 0 || m == leaves.len() {
            return vec![];
        }
        sub(m, leaves, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Nodes(HashMap<NodeId, Hash>);
    impl NodeSource for Nodes {
        type Error = NodeId;
        fn node(&self, id: NodeId) -> Result<Hash, NodeId> {
            self.0.get(&id).copied().ok_or(id)
        }
    }

    /// The stored-node proofs equal RFC 6962's recursive definitions for every small tree.
    #[test]
    fn proofs_from_stored_nodes_equal_the_rfc_definitions() {
        let mut range = CompactRange::new();
        let mut nodes = Nodes(HashMap::new());
        let mut leaves = Vec::new();
        for n in 1..=70u64 {
            let leaf = hash_leaf(&n.to_le_bytes());
            leaves.push(leaf);
            range.append(leaf, |id, h| {
                nodes.0.insert(id, *h);
            });
            assert_eq!(root_at(&nodes, n).unwrap(), naive::mth(&leaves));
            for m in 0..n {
                assert_eq!(inclusion_proof(&nodes, m, n).unwrap(), naive::path(m as usize, &leaves));
            }
            for m in 0..=n {
                assert_eq!(consistency_proof(&nodes, m, n).unwrap(), naive::proof(m as usize, &leaves[..n as usize]));
            }
        }
    }
}
