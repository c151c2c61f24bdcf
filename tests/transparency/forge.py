"""What an operator who controls the database could do to the audit log, for tests that prove it shows."""

from __future__ import annotations

from sqlalchemy import delete, select, update

from petportrait.db import session_scope
from petportrait.retention import audit, transparency
from petportrait.retention.models import GENESIS_HASH, AuditEntry, AuditHead
from petportrait.retention.transparency_models import TlogCheckpoint
from petportrait.web.app import Services


def rewrite_history(services: Services, seq: int, *, whole_chain: bool) -> None:
    """Edit entry `seq`'s details and rehash it (and, with `whole_chain`, every entry after it and the
    head, so that `audit verify` passes); then rebuild the tree and drop the checkpoints signed since."""
    with session_scope(services.session_factory) as session:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        prev = GENESIS_HASH
        for entry in entries:
            if entry.seq == seq:
                entry.details = '{"forged":true}'
            if entry.seq == seq or (whole_chain and entry.seq > seq):
                entry.prev_hash = prev
                entry.hash = audit.entry_hash(
                    prev_hash=prev,
                    seq=entry.seq,
                    at=entry.at,
                    action=entry.action,
                    actor_id=entry.actor_id,
                    subject_kind=entry.subject_kind,
                    subject_id=entry.subject_id,
                    owner_id=entry.owner_id,
                    purpose=entry.purpose,
                    details=entry.details,
                )
            prev = entry.hash
        session.flush()
        if whole_chain:
            session.execute(update(AuditHead).values(seq=entries[-1].seq, hash=prev))
        session.execute(delete(TlogCheckpoint))
        transparency.rebuild(session)
