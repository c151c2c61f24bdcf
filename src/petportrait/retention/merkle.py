"""RFC 9162 Merkle tree hashing, proofs and their verification (section 2.1), independent of storage.

A leaf hash is SHA-256(0x00 || data) and an interior node SHA-256(0x01 || left || right); the tree of n
leaves splits at the largest power of two below n. Proofs are lists of 32-byte hashes, as in RFC 9162
(PATH and PROOF), so any RFC 9162 / RFC 6962 verifier (Go's transparency-dev/merkle, sigstore...) checks
them. Storage is someone else's concern: proofs are built from the hashes of perfect subtrees, named by
(level, index) = the subtree over leaves [index << level, (index + 1) << level), that a reader returns.

Hand-written because pymerkle, the maintained Python library, hashes the same way but does not produce
RFC 9162 consistency proofs (its paths always carry the base node and split differently when the older
size is a power of two), and it recomputes subtrees from the leaves with a per-process cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

Node = tuple[int, int]
"""(level, index): the perfect subtree over leaves [index << level, (index + 1) << level)."""

NodeReader = Callable[[Sequence[Node]], Mapping[Node, bytes]]
"""Returns the hashes of the perfect subtrees asked for (all of them: a missing one is an error)."""


class ProofError(ValueError):
    """A proof does not verify, or was asked for sizes the tree does not have."""


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(width: int) -> int:
    """The largest power of two smaller than width (width > 1)."""
    k = 1 << (width.bit_length() - 1)
    return k >> 1 if k == width else k


def _pieces(start: int, end: int) -> list[Node]:
    """The perfect subtrees whose hashes make up MTH(D[start:end]), left to right (start aligned, as every
    range of an RFC 9162 proof is)."""
    pieces: list[Node] = []
    while start < end:
        level = (end - start).bit_length() - 1
        while start & ((1 << level) - 1):
            level -= 1
        pieces.append((level, start >> level))
        start += 1 << level
    return pieces


def _fold(hashes: Sequence[bytes]) -> bytes:
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = node_hash(left, root)
    return root


def range_hashes(read: NodeReader, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """MTH(D[start:end]) of each range, reading every perfect subtree needed in one call."""
    layouts = [_pieces(start, end) for start, end in ranges]
    wanted = sorted({node for layout in layouts for node in layout})
    found = read(wanted) if wanted else {}
    missing = [node for node in wanted if node not in found]
    if missing:
        raise ProofError(f"the tree lacks the subtrees {missing[:5]}")
    return [_fold([found[node] for node in layout]) if layout else EMPTY_ROOT for layout in layouts]


def root(read: NodeReader, size: int) -> bytes:
    """MTH of the first `size` leaves."""
    return range_hashes(read, [(0, size)])[0]


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges of PATH(index, D[0:size]), in proof order (bottom up)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size}")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    return ranges[::-1]


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The leaf ranges of PROOF(first, D[0:second]), in proof order (bottom up)."""
    if not 0 < first <= second:
        raise ProofError(f"no consistency proof from {first} to {second}")
    ranges: list[tuple[int, int]] = []
    start, end, whole = 0, second, True
    while first != end:
        k = _split(end - start)
        if first - start <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            whole = False
    if not whole:
        ranges.append((start, end))
    return ranges[::-1]


def _shift_while_even(fn: int, sn: int) -> tuple[int, int]:
    while not fn & 1 and fn:
        fn, sn = fn >> 1, sn >> 1
    return fn, sn


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], expected_root: bytes) -> None:
    """RFC 9162 section 2.1.3.2: raise ProofError unless `path` proves leaf hash `leaf` at `index` in the
    tree of `size` leaves whose root is `expected_root`."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size}")
    fn, sn, result = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            raise ProofError("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            if not fn & 1:
                fn, sn = _shift_while_even(fn, sn)
        else:
            result = node_hash(result, sibling)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the inclusion proof is too short")
    if result != expected_root:
        raise ProofError("the inclusion proof does not lead to the checkpoint's root")


def verify_consistency(
    first: int, second: int, path: Sequence[bytes], first_root: bytes, second_root: bytes
) -> None:
    """RFC 9162 section 2.1.4.2: raise ProofError unless `path` proves that the tree of `second` leaves
    with root `second_root` extends the tree of `first` leaves with root `first_root`."""
    if not 0 <= first <= second:
        raise ProofError(f"a tree of {second} cannot extend one of {first}")
    if first == second or first == 0:
        if path:
            raise ProofError("the consistency proof should be empty")
        if first == second and first_root != second_root:
            raise ProofError("two different roots for the same tree size: the log forked")
        return
    proof = list(path)
    if first & (first - 1) == 0:
        proof.insert(0, first_root)
    if not proof:
        raise ProofError("the consistency proof is empty")
    fn, sn = first - 1, second - 1
    if fn & 1:
        while fn & 1:
            fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for sibling in proof[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(sibling, fr), node_hash(sibling, sr)
            if not fn & 1:
                fn, sn = _shift_while_even(fn, sn)
        else:
            sr = node_hash(sr, sibling)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the consistency proof is too short")
    if fr != first_root:
        raise ProofError(
            "the consistency proof does not lead to the older checkpoint's root: history was rewritten"
        )
    if sr != second_root:
        raise ProofError("the consistency proof does not lead to the newer checkpoint's root")


class Frontier:
    """The right edge of a growing tree: appending leaves yields every perfect subtree they complete."""

    def __init__(self, size: int, edge: Mapping[int, bytes]) -> None:
        """`edge[level]` is the hash of the complete subtree at `level` on the right edge of a tree of
        `size` leaves (one per set bit of size)."""
        self.size = size
        self._edge = dict(edge)

    @staticmethod
    def edge_nodes(size: int) -> list[Node]:
        """The perfect subtrees on the right edge of a tree of `size` leaves, one per set bit."""
        return [(level, (size >> level) - 1) for level in range(size.bit_length()) if size >> level & 1]

    def append(self, leaves: Iterable[bytes]) -> list[tuple[int, int, bytes]]:
        """Add leaf hashes; returns the (level, index, hash) of every node completed, leaves included."""
        made: list[tuple[int, int, bytes]] = []
        edge = self._edge
        size = self.size
        for digest in leaves:
            made.append((0, size, digest))
            level, index, current = 0, size, digest
            while index & 1:
                current = node_hash(edge.pop(level), current)
                level, index = level + 1, index >> 1
                made.append((level, index, current))
            edge[level] = current
            size += 1
        self.size = size
        return made
