//! The Merkle tree and verifier against RFC 6962 known answers, a naive reference and mutants.

use event_store::merkle::{self, CompactRange, Hash, NodeId, NodeSource, hash_leaf};
use event_store::verify::{ProofError, root_from_inclusion, verify_consistency, verify_inclusion};
use proptest::prelude::*;
use std::collections::HashMap;

/// The leaves of transparency-dev/merkle `testdata` (and of Certificate Transparency's
/// tests before it), as hex.
const LEAVES: [&str; 8] =
    ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];

/// MTH of the first n leaves, n = 1..=8, from the same source (checked against it and against
/// a 10-line hashlib-only script of RFC 6962 §2.1; n = 1 is `sha256(b"\x00")`).
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// An in-memory tree: the same stored-node layout as the RocksDB store.
#[derive(Default)]
struct MemTree {
    range: CompactRange,
    nodes: HashMap<NodeId, Hash>,
}

impl MemTree {
    fn with_leaves(n: u64) -> Self {
        let mut t = MemTree::default();
        for i in 0..n {
            t.push(hash_leaf(&i.to_be_bytes()));
        }
        t
    }
    fn push(&mut self, leaf: Hash) {
        let nodes = &mut self.nodes;
        self.range.append(leaf, |id, h| {
            nodes.insert(id, *h);
        });
    }
    fn leaf(&self, i: u64) -> Hash {
        self.nodes[&NodeId::new(0, i)]
    }
}

impl NodeSource for MemTree {
    type Error = NodeId;
    fn node(&self, id: NodeId) -> Result<Hash, NodeId> {
        self.nodes.get(&id).copied().ok_or(id)
    }
}

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

#[test]
fn rfc6962_roots_of_the_published_leaves() {
    let mut tree = MemTree::default();
    for (i, leaf) in LEAVES.iter().enumerate() {
        tree.push(hash_leaf(&hex::decode(leaf).unwrap()));
        assert_eq!(hex::encode(tree.range.root()), ROOTS[i], "root of {} leaves", i + 1);
        assert_eq!(merkle::root_at(&tree, i as u64 + 1).unwrap(), h(ROOTS[i]));
    }
    assert_eq!(hex::encode(merkle::empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

#[test]
fn rfc6962_every_proof_over_the_published_leaves_verifies() {
    let mut tree = MemTree::default();
    for leaf in LEAVES {
        tree.push(hash_leaf(&hex::decode(leaf).unwrap()));
    }
    for size in 1..=8u64 {
        let root = h(ROOTS[size as usize - 1]);
        for index in 0..size {
            let proof = merkle::inclusion_proof(&tree, index, size).unwrap();
            verify_inclusion(index, size, &tree.leaf(index), &proof, &root).unwrap();
        }
        for from in 1..=size {
            let proof = merkle::consistency_proof(&tree, from, size).unwrap();
            verify_consistency(from, size, &h(ROOTS[from as usize - 1]), &root, &proof).unwrap();
        }
    }
    // Known shape from RFC 6962 §2.1.3: the proof of d0 in the 7-leaf tree is [b, h, l].
    assert_eq!(merkle::inclusion_proof(&tree, 0, 7).unwrap().len(), 3);
    // §2.1.4: PROOF(3, D[7]) = [c, d, g, l].
    assert_eq!(merkle::consistency_proof(&tree, 3, 7).unwrap().len(), 4);
}

fn flip(mut hashes: Vec<Hash>, which: usize, bit: u8) -> Vec<Hash> {
    let at = which % hashes.len();
    hashes[at][(bit / 8) as usize % 32] ^= 1 << (bit % 8);
    hashes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn inclusion_proofs_match_naive_verify_and_mutants_fail(size in 1u64..300, index_seed: u64, which: usize, bit: u8) {
        let tree = MemTree::with_leaves(size);
        let index = index_seed % size;
        let root = tree.range.root();
        let leaf = tree.leaf(index);
        let proof = merkle::inclusion_proof(&tree, index, size).unwrap();
        verify_inclusion(index, size, &leaf, &proof, &root).unwrap();

        if !proof.is_empty() {
            prop_assert!(verify_inclusion(index, size, &leaf, &flip(proof.clone(), which, bit), &root).is_err());
            let mut dropped = proof.clone();
            dropped.pop();
            prop_assert!(verify_inclusion(index, size, &leaf, &dropped, &root).is_err());
        }
        let mut added = proof.clone();
        added.push(root);
        prop_assert!(verify_inclusion(index, size, &leaf, &added, &root).is_err());
        prop_assert!(verify_inclusion(index, size, &flip(vec![leaf], 0, bit)[0], &proof, &root).is_err());
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &flip(vec![root], 0, bit)[0]).is_err());
        if index + 1 < size {
            prop_assert!(verify_inclusion(index + 1, size, &leaf, &proof, &root).is_err());
        }
        if index > 0 {
            prop_assert!(verify_inclusion(index - 1, size, &leaf, &proof, &root).is_err());
        }
        prop_assert!(verify_inclusion(index, size * 2, &leaf, &proof, &root).is_err());
        prop_assert_eq!(
            verify_inclusion(size, size, &leaf, &proof, &root),
            Err(ProofError::IndexOutOfRange { index: size, size })
        );
        prop_assert_eq!(root_from_inclusion(index, size, &leaf, &proof).unwrap(), root);
    }

    #[test]
    fn consistency_proofs_verify_and_mutants_fail(to in 1u64..300, from_seed: u64, which: usize, bit: u8) {
        let tree = MemTree::with_leaves(to);
        let from = 1 + from_seed % to;
        let (from_root, to_root) = (merkle::root_at(&tree, from).unwrap(), tree.range.root());
        let proof = merkle::consistency_proof(&tree, from, to).unwrap();
        verify_consistency(from, to, &from_root, &to_root, &proof).unwrap();
        if !proof.is_empty() {
            prop_assert!(verify_consistency(from, to, &from_root, &to_root, &flip(proof.clone(), which, bit)).is_err());
            let mut dropped = proof.clone();
            dropped.pop();
            prop_assert!(verify_consistency(from, to, &from_root, &to_root, &dropped).is_err());
            prop_assert!(verify_consistency(from, to * 2, &from_root, &to_root, &proof).is_err());
        }
        let mut added = proof.clone();
        added.push(to_root);
        prop_assert!(verify_consistency(from, to, &from_root, &to_root, &added).is_err());
        prop_assert!(verify_consistency(from, to, &flip(vec![from_root], 0, bit)[0], &to_root, &proof).is_err());
        if from < to {
            prop_assert!(verify_consistency(from, to, &from_root, &flip(vec![to_root], 0, bit)[0], &proof).is_err());
            prop_assert!(verify_consistency(from + 1, to, &from_root, &to_root, &proof).is_err());
        }
        prop_assert!(verify_consistency(to, from.saturating_sub(1), &to_root, &from_root, &proof).is_err());
    }
}
