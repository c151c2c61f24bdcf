"""The audit log: a hash chain that stays one line under concurrent appends and shows any tampering."""

from __future__ import annotations

import itertools
import threading

from sqlalchemy import delete, func, select, update

from petportrait.db import session_scope
from petportrait.retention import audit
from petportrait.retention.models import AuditEntry, AuditHead
from petportrait.web.app import Services


def _append(services: Services, count: int, **extra: object) -> None:
    for i in range(count):
        with session_scope(services.session_factory) as session:
            audit.record(
                session,
                action="photo.read",
                actor_id="u1",
                subject_kind="photo",
                subject_id=f"p{i}",
                owner_id="u1",
                purpose="owner_view",
                details={"i": i, **extra},
            )


def test_entries_link_and_verify(services: Services) -> None:
    _append(services, 5)
    with services.session_factory() as session:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
        assert entries[0].prev_hash == "0" * 64
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
        result = audit.verify(session)
    assert result.ok and result.entries == 5 and result.head_seq == 5 and result.head_hash == entries[-1].hash


def test_record_returns_the_entry_in_the_callers_transaction(services: Services) -> None:
    with services.session_factory() as session:
        entry = audit.record(session, action="staff.viewed_case", actor_id="s1", details={"case": "c1"})
        assert entry.seq == 1 and entry.details == '{"case":"c1"}'
        session.rollback()
    with services.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 0
        assert audit.verify(session).ok


def test_concurrent_appends_from_threads_form_one_chain(services: Services) -> None:
    threads = [threading.Thread(target=_append, args=(services, 15), kwargs={"t": t}) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with services.session_factory() as session:
        result = audit.verify(session)
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 90
    assert result.ok, result.problems
    assert result.entries == 90 and result.head_seq == 90


def test_an_edited_entry_is_detected(services: Services) -> None:
    _append(services, 6)
    with session_scope(services.session_factory) as session:
        session.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(purpose="marketing"))
    with services.session_factory() as session:
        result = audit.verify(session)
    assert not result.ok and result.first_bad_seq == 3
    assert "altered" in result.problems[0]


def test_an_edited_entry_with_a_recomputed_hash_breaks_the_next_link(services: Services) -> None:
    _append(services, 4)
    with session_scope(services.session_factory) as session:
        entry = session.get(AuditEntry, 2)
        assert entry is not None
        entry.details = '{"i":99}'
        entry.hash = audit.entry_hash(
            prev_hash=entry.prev_hash,
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
    with services.session_factory() as session:
        result = audit.verify(session)
    assert not result.ok and result.first_bad_seq == 3
    assert "does not link" in result.problems[0]


def test_a_removed_entry_is_detected(services: Services) -> None:
    _append(services, 5)
    with session_scope(services.session_factory) as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq == 2))
    with services.session_factory() as session:
        result = audit.verify(session)
    assert not result.ok and result.first_bad_seq == 3
    assert any("missing" in p for p in result.problems)


def test_removing_the_newest_entries_is_detected_by_the_head(services: Services) -> None:
    _append(services, 5)
    with session_scope(services.session_factory) as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq >= 4))
    with services.session_factory() as session:
        result = audit.verify(session)
    assert not result.ok and result.first_bad_seq == 4
    assert "head names entry 5" in result.problems[0]


def test_a_removed_head_with_entries_is_detected(services: Services) -> None:
    _append(services, 2)
    with session_scope(services.session_factory) as session:
        session.execute(delete(AuditHead))
    with services.session_factory() as session:
        assert not audit.verify(session).ok


def test_record_many_appends_in_order_under_one_lock(services: Services) -> None:
    events = [audit.AuditEvent(action="item.deleted", actor_id=None, subject_id=str(i)) for i in range(7)]
    with session_scope(services.session_factory) as session:
        assert audit.record_many(session, events) == 7
        assert audit.record_many(session, []) == 0
    _append(services, 1)
    with services.session_factory() as session:
        assert audit.verify(session).entries == 8 and audit.verify(session).ok
        subjects = session.scalars(select(AuditEntry.subject_id).order_by(AuditEntry.seq)).all()
    assert subjects[:7] == [str(i) for i in range(7)]
