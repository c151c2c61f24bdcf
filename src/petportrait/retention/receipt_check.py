"""Checking a receipt of the transparency log without trusting the service that issued it.

Offline (`check_receipt`): the checkpoint carries the log's Ed25519 signature, the entry's fields hash to
the entry's chain hash, and the inclusion proof leads from that hash (as a leaf) to the checkpoint's root.
Online (`check_extension`): a newer signed checkpoint of the same log, with a consistency proof from the
receipt's, shows that the log still holds the entry: a log that rewrote its history cannot produce one.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from petportrait.retention import merkle, signed_notes
from petportrait.retention.audit import entry_hash

RECEIPT_FORMAT = "petportrait-receipt/v1"


class ReceiptInvalid(ValueError):
    """The receipt does not verify; the message says which check failed, as a sentence."""


def _hashes(values: Any) -> list[bytes]:
    if not isinstance(values, list):
        raise ReceiptInvalid("a proof is a list of base64 hashes")
    try:
        out = [base64.b64decode(value, validate=True) for value in values]
    except (binascii.Error, TypeError, ValueError) as exc:
        raise ReceiptInvalid("a proof hash is not base64") from exc
    if any(len(digest) != 32 for digest in out):
        raise ReceiptInvalid("a proof hash is not 32 bytes")
    return out


def open_checkpoint(note: str, log_key: str) -> signed_notes.Checkpoint:
    """The checkpoint of a note signed by the log's key (ReceiptInvalid if it is not)."""
    try:
        verifier = signed_notes.parse_verifier_key(log_key)
        return signed_notes.parse_checkpoint(signed_notes.open_note(note, verifier))
    except signed_notes.NoteError as exc:
        raise ReceiptInvalid(f"the checkpoint is not signed by the log's key: {exc}") from exc


def check_receipt(receipt: Mapping[str, Any], *, log_key: str | None = None) -> signed_notes.Checkpoint:
    """Verify a receipt offline against the log's key (`log_key`, else the one the receipt names);
    returns the checkpoint it was proved against."""
    if receipt.get("format") != RECEIPT_FORMAT:
        raise ReceiptInvalid(f"not a {RECEIPT_FORMAT} receipt")
    try:
        entry = receipt["entry"]
        key = log_key or str(receipt["log_key"])
        checkpoint = open_checkpoint(str(receipt["checkpoint"]), key)
        index, size = int(receipt["log_index"]), int(receipt["tree_size"])
        seq = int(entry["seq"])
        recomputed = entry_hash(
            prev_hash=str(entry["prev_hash"]),
            seq=seq,
            at=datetime.fromisoformat(str(entry["at"])),
            action=entry["action"],
            actor_id=entry["actor_id"],
            subject_kind=entry["subject_kind"],
            subject_id=entry["subject_id"],
            owner_id=entry["owner_id"],
            purpose=entry["purpose"],
            details=str(entry["details"]),
        )
        leaf = merkle.leaf_hash(bytes.fromhex(str(entry["hash"])))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ReceiptInvalid):
            raise
        raise ReceiptInvalid(f"the receipt is malformed: {exc}") from exc
    if recomputed != entry["hash"]:
        raise ReceiptInvalid("the entry's fields do not hash to the entry's hash: the entry was altered")
    if index != seq - 1:
        raise ReceiptInvalid("the receipt's log index is not its entry's")
    if size != checkpoint.size:
        raise ReceiptInvalid("the receipt's tree size is not its checkpoint's")
    try:
        merkle.verify_inclusion(leaf, index, size, _hashes(receipt["inclusion_path"]), checkpoint.root)
    except merkle.ProofError as exc:
        raise ReceiptInvalid(f"the entry is not in the checkpoint's tree: {exc}") from exc
    return checkpoint


def check_extension(
    older: signed_notes.Checkpoint, newer_note: str, proof: Sequence[str], *, log_key: str
) -> signed_notes.Checkpoint:
    """Verify that a newer checkpoint of the same log extends `older` (ReceiptInvalid if not)."""
    newer = open_checkpoint(newer_note, log_key)
    if newer.origin != older.origin:
        raise ReceiptInvalid("the newer checkpoint is of another log")
    if newer.size < older.size:
        raise ReceiptInvalid(
            f"the log's newest checkpoint ({newer.size}) is smaller than the receipt's ({older.size}): "
            "the log was rolled back"
        )
    try:
        merkle.verify_consistency(older.size, newer.size, _hashes(list(proof)), older.root, newer.root)
    except merkle.ProofError as exc:
        raise ReceiptInvalid(f"the log does not extend the receipt's checkpoint: {exc}") from exc
    return newer
