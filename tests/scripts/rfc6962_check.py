#!/usr/bin/env python3
"""An independent check of kyso's Merkle proofs, written from RFC 9162 alone and using only
hashlib: reads JSON on stdin, verifies every inclusion and consistency proof in it, and
recomputes a root from raw leaves. Exits non-zero on the first failure."""
import hashlib
import json
import sys


def h(data):
    return hashlib.sha256(data).digest()


def leaf_hash(data):
    return h(b"\x00" + data)


def node_hash(left, right):
    return h(b"\x01" + left + right)


def mth(leaves):
    """RFC 9162 2.1.1, over leaf hashes."""
    n = len(leaves)
    if n == 0:
        return h(b"")
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(index, size, leaf, proof, root):
    """RFC 9162 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_root, second_root, proof):
    """RFC 9162 2.1.4.2."""
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof
    if first & (first - 1) == 0:
        proof = [first_root] + proof
    if not proof:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def main():
    doc = json.load(sys.stdin)
    b = bytes.fromhex
    checked = 0
    for leaves_case in doc.get("roots", []):
        leaves = [b(x) for x in leaves_case["leaf_hashes"]]
        assert mth(leaves).hex() == leaves_case["root"], f"root of {len(leaves)} leaves"
        checked += 1
    for c in doc.get("inclusion", []):
        ok = verify_inclusion(c["index"], c["size"], b(c["leaf_hash"]), [b(p) for p in c["proof"]], b(c["root"]))
        assert ok == c["valid"], f"inclusion {c['index']} in {c['size']}: got {ok}"
        checked += 1
    for c in doc.get("consistency", []):
        ok = verify_consistency(c["from"], c["to"], b(c["from_root"]), b(c["to_root"]), [b(p) for p in c["proof"]])
        assert ok == c["valid"], f"consistency {c['from']} -> {c['to']}: got {ok}"
        checked += 1
    print(f"ok: {checked} checks")


if __name__ == "__main__":
    main()
