use super::{Hash, NodeId, NodeSource, empty_root, hash_children, split};

/// RFC 6962 MTH(D[lo..hi]) where the range is one that the RFC's recursion reaches from a
/// whole tree: its left part is always an aligned perfect subtree, so at most one stored
/// node is read per level.
fn subtree_root<S: NodeSource>(src: &S, lo: u64, hi: u64) -> Result<Hash, S::Error> {
    let n = hi - lo;
    if n.is_power_of_two() && lo.is_multiple_of(n) {
        let level = n.trailing_zeros() as u8;
        return src.node(NodeId::new(level, lo >> level));
    }
    let k = split(n);
    let left = subtree_root(src, lo, lo + k)?;
    let right = subtree_root(src, lo + k, hi)?;
    Ok(hash_children(&left, &right))
}

/// The root of the tree as it was when it held `size` leaves.
pub fn root_at<S: NodeSource>(src: &S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    subtree_root(src, 0, size)
}

/// RFC 6962 §2.1.1 PATH(index, D[size]); requires `index < size`.
pub fn inclusion_proof<S: NodeSource>(src: &S, index: u64, size: u64) -> Result<Vec<Hash>, S::Error> {
    assert!(index < size, "inclusion proof needs index < size");
    let mut out = Vec::new();
    path(src, index, 0, size, &mut out)?;
    Ok(out)
}

fn path<S: NodeSource>(src: &S, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) -> Result<(), S::Error> {
    let n = hi - lo;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < lo + k {
        path(src, m, lo, lo + k, out)?;
        out.push(subtree_root(src, lo + k, hi)?);
    } else {
        path(src, m, lo + k, hi, out)?;
        out.push(subtree_root(src, lo, lo + k)?);
    }
    Ok(())
}

/// RFC 6962 §2.1.2 PROOF(from, D[to]); requires `from ≤ to`. Empty when `from` is 0 or `to`.
pub fn consistency_proof<S: NodeSource>(src: &S, from: u64, to: u64) -> Result<Vec<Hash>, S::Error> {
    assert!(from <= to, "consistency proof needs from <= to");
    let mut out = Vec::new();
    if from > 0 && from < to {
        subproof(src, from, 0, to, true, &mut out)?;
    }
    Ok(out)
}

fn subproof<S: NodeSource>(
    src: &S,
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push(subtree_root(src, lo, hi)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(src, m, lo, lo + k, whole, out)?;
        out.push(subtree_root(src, lo + k, hi)?);
    } else {
        subproof(src, m - k, lo + k, hi, false, out)?;
        out.push(subtree_root(src, lo, lo + k)?);
    }
    Ok(())
}
