"""Retention, the base every domain calls: the policy (kinds, periods, read-time hiding), legal holds, the
hash-chained audit log, tombstones (deletion receipts and deleting an item now), the blob-key layout, and
data keys (crypto-shredding: deleting an item destroys the key of its blob in the same transaction).

It imports no domain: the tables of each kind are registered by their domains (`petportrait.registry`).
"""

from __future__ import annotations

from petportrait.db import session_scope
from petportrait.registry import Registry, Services
from petportrait.retention import audit, fingerprints, holds, transparency


def _end_hold_reasons(services: Services) -> int:
    with session_scope(services.session_factory) as session:
        return holds.end_reasons(session)


def register(registry: Registry) -> None:
    """What the retention base contributes: the retention rules of its own tables."""
    registry.add_domain("retention")
    registry.add_table_rule(
        "data_keys",
        "as long as the blob it opens: destroyed in the transaction that tombstones the item "
        "(crypto-shredding); keys of orphaned blobs when the sweeper deletes them",
        owner="retention",
    )
    rules = {
        "audit_log": "kept for good (hash-chained, append-only); entries hold ids, purposes and fingerprints "
        "under the account's key, never content hashes or free text (that lives in audit_texts)",
        "audit_head": "no personal data (the newest entry's seq and hash)",
        "audit_texts": "free text an audit entry refers to: deleted with the item it is about (when it is "
        "deleted or swept) and with the account on erasure",
        "fingerprint_keys": "made on an account's first fingerprint; the key is wiped on "
        "erasure (the keyless "
        "row stays, so no fingerprint of the account is ever made again)",
        "tombstones": "kept for good as deletion receipts: ids, dates, size, reason and a fingerprint that "
        "erasure makes unlinkable; no content hash",
        "legal_holds": "kept for good as the record of holds (ids, dates); the reason an admin wrote is "
        f"blanked {holds.REASON_DAYS} days after the hold ends, or when it ends for an erased account",
        "sweep_runs": "no personal data; deleted after 7 days by the sweeper",
        "lineage_links": "ids only (which stored copy names which item or pet); deleted with the copy",
        "kek_checks": "no personal data (the id and check value of each key-encryption key, never a key)",
    }
    for table, rule in rules.items():
        registry.add_table_rule(table, rule, owner="retention")
    registry.add_erasure_hook("retention.fingerprint_key", fingerprints.destroy_on_erasure)
    registry.add_erasure_hook("retention.audit_texts", audit.erase_texts)
    registry.add_erasure_hook("retention.hold_reasons", holds.erase_reasons)
    registry.add_periodic("hold-reasons", lambda _settings: 3600.0, _end_hold_reasons)
    for table in ("tlog_nodes", "tlog_state", "tlog_checkpoints", "tlog_cosignatures"):
        registry.add_table_rule(
            table,
            "no personal data (the transparency log: hashes of audit entries, signed roots, witnesses' "
            "cosignatures); kept for good, like the chain",
            owner="retention",
        )
    registry.add_periodic(
        "retention.transparency_checkpoint",
        lambda settings: settings.transparency.checkpoint_interval_seconds,
        lambda services: transparency.run_periodic(services.session_factory, services.settings),
    )
