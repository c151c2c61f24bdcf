"""RFC 9162 hashing and proofs: checked against the RFC's recursive definitions, and refusing bad proofs."""

from __future__ import annotations

import hashlib

import pytest

from petportrait.retention import merkle


def _mth(leaves: list[bytes]) -> bytes:
    """MTH as RFC 9162 section 2.1.1 defines it."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return merkle.leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) <= 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


def _subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [_mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*_subproof(m, leaves[:k], whole), _mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), _mth(leaves[:k])]


def _tree(count: int) -> tuple[list[bytes], merkle.NodeReader]:
    """A tree of `count` leaves built in two batches, the second resuming from the stored right edge (as
    integration does); returns the leaves and a reader of its stored nodes."""
    leaves = [i.to_bytes(4, "big") for i in range(count)]
    half = count // 2
    first = merkle.Frontier(0, {})
    stored = {
        (level, index): digest for level, index, digest in first.append(map(merkle.leaf_hash, leaves[:half]))
    }
    edge = {level: stored[(level, index)] for level, index in merkle.Frontier.edge_nodes(half)}
    second = merkle.Frontier(half, edge)
    stored.update(
        ((level, index), digest)
        for level, index, digest in second.append(map(merkle.leaf_hash, leaves[half:]))
    )
    return leaves, lambda nodes: {node: stored[node] for node in nodes if node in stored}


def test_roots_and_proofs_are_those_of_rfc_9162() -> None:
    leaves, read = _tree(37)
    for size in range(1, 38):
        root = merkle.root(read, size)
        assert root == _mth(leaves[:size])
        for index in range(size):
            path = merkle.range_hashes(read, merkle.inclusion_ranges(index, size))
            assert path == _path(index, leaves[:size])
            merkle.verify_inclusion(merkle.leaf_hash(leaves[index]), index, size, path, root)
        for first in range(1, size + 1):
            proof = merkle.range_hashes(read, merkle.consistency_ranges(first, size))
            assert proof == _subproof(first, leaves[:size], True)
            merkle.verify_consistency(first, size, proof, _mth(leaves[:first]), root)


def test_the_empty_tree_and_a_known_leaf() -> None:
    assert merkle.EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    # RFC 6962's reference tree: the leaf hash of the empty string.
    assert merkle.leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"


def test_bad_proofs_are_refused() -> None:
    leaves, read = _tree(11)
    root = merkle.root(read, 11)
    path = merkle.range_hashes(read, merkle.inclusion_ranges(4, 11))
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(merkle.leaf_hash(b"other"), 4, 11, path, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(merkle.leaf_hash(leaves[4]), 5, 11, path, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(merkle.leaf_hash(leaves[4]), 4, 11, path[:-1], root)
    proof = merkle.range_hashes(read, merkle.consistency_ranges(6, 11))
    old_root = merkle.root(read, 6)
    merkle.verify_consistency(6, 11, proof, old_root, root)
    forked = _mth([*leaves[:5], b"rewritten"])
    with pytest.raises(merkle.ProofError, match="history was rewritten"):
        merkle.verify_consistency(6, 11, proof, forked, root)
    with pytest.raises(merkle.ProofError, match="forked"):
        merkle.verify_consistency(6, 6, [], old_root, forked)
