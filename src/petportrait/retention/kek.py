"""The key-encryption key (KEK) of the database: its check value at start-up, and rotating it.

The database keeps the check value of its KEK (table `kek_checks`: HMAC-SHA256 of a fixed label under the
KEK, never the KEK). The first start records it; every later start (`build_services`, so `serve`,
`worker` and the commands; and `migrate`) refuses a KEK whose check value is not the recorded one, before
anything is taken: a wrong key would wrap new uploads under a key the data keys of every other blob do
not open, and lose them when the right key comes back.

Rotation (README, "Rotating the key-encryption key"): every process is restarted with the new key in
`security.key_encryption_key` and the old one in `security.previous_key_encryption_key` (accepted at
start-up while the database's current KEK is the previous one: new keys are wrapped under the new KEK,
keys under the old one still open); then `petportrait keys rotate` makes the new KEK current and the old
one "previous", re-wraps every data key still under the old KEK in batches of their own transactions
(each row names its KEK in `data_keys.kek_id`, so a killed run resumes where it stopped), and retires the
old KEK when none is left. Both ends are in the audit log. From then on a start with only the old key is
refused, and `previous_key_encryption_key` can be removed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from petportrait.clock import utcnow
from petportrait.retention import audit
from petportrait.retention.models import DataKey, KekCheck, KekRole
from petportrait.storage.crypto import BlobDecryptError, kek_check_value, kek_id, unwrap_with_any, wrap_key

log = logging.getLogger(__name__)

RUNBOOK = 'the README, "Rotating the key-encryption key"'
_DATA_KEYS = DataKey.metadata.tables["data_keys"]
_PASSES = 5  # passes over the rows left under the old KEK (a process without the new key may add some)


class KekMismatch(RuntimeError):
    """The settings' key-encryption key is not the one the database's data keys are wrapped under."""


@dataclass
class RotationReport:
    """What a run of `keys rotate` did."""

    from_id: str | None
    to_id: str
    rewrapped: int = 0
    remaining: int = 0
    finished: bool = False
    failed: dict[str, str] = field(default_factory=dict)  # storage key -> why it did not unwrap


def _id(kek: bytes) -> str:
    return kek_id(kek).hex()


def _roles(session: Session) -> dict[str, KekCheck]:
    rows = session.scalars(select(KekCheck).where(KekCheck.role.is_not(None))).all()
    return {row.role: row for row in rows if row.role}


def _is(row: KekCheck, kek: bytes) -> bool:
    """Whether the row is this KEK's (by check value; by id for one recorded by migration 0410)."""
    return row.check_value == kek_check_value(kek) if row.check_value else row.kek_id == _id(kek)


def _mismatch(settings_kek: bytes, recorded: KekCheck) -> KekMismatch:
    return KekMismatch(
        f"the key-encryption key in the settings (security.key_encryption_key, id {_id(settings_kek)}) is "
        f"not the key of this database (id {recorded.kek_id}, recorded {recorded.created_at:%Y-%m-%d}): its "
        "check value does not match, so the service refuses to start rather than take uploads that the "
        "right key could not open. Set the database's key; to change keys, follow the runbook in "
        f"{RUNBOOK}."
    )


def verify_kek(
    session_factory: sessionmaker[Session], kek: bytes, previous: bytes | None = None
) -> str | None:
    """Refuse (KekMismatch) a KEK that is not the database's; record it on the first start. Returns a
    warning to log, if any (a previous key left set after its rotation finished)."""
    for _ in range(3):
        with session_factory() as session:
            roles = _roles(session)
            current = roles.get(KekRole.CURRENT)
            if current is None:
                session.add(
                    KekCheck(
                        kek_id=_id(kek),
                        check_value=kek_check_value(kek),
                        role=KekRole.CURRENT,
                        created_at=utcnow(),
                    )
                )
                try:
                    session.commit()
                except IntegrityError:  # another process recorded one at the same moment: compare again
                    session.rollback()
                    continue
                log.info("recorded the check value of the key-encryption key %s", _id(kek))
                return None
            if not current.check_value and current.kek_id == _id(kek):
                # recorded by migration 0410 from the data keys of the time, by id: now its check value
                current.check_value = kek_check_value(kek)
                session.commit()
            if _is(current, kek):
                return _check_previous(roles.get(KekRole.PREVIOUS), previous)
            if previous is not None and _is(current, previous):
                log.info(
                    "key-encryption key rotation pending: new keys are wrapped under %s, keys under %s "
                    "still open; run `petportrait keys rotate`",
                    _id(kek),
                    current.kek_id,
                )
                return None
            raise _mismatch(kek, current)
    raise KekMismatch("could not record the key-encryption key's check value (the table kept changing)")


def _check_previous(recorded: KekCheck | None, previous: bytes | None) -> str | None:
    if recorded is not None and (previous is None or not _is(recorded, previous)):
        raise KekMismatch(
            f"a rotation of the key-encryption key from {recorded.kek_id} has not finished: set "
            "security.previous_key_encryption_key to that old key until `petportrait keys rotate` has "
            f"finished, or data keys still under it do not open; see {RUNBOOK}"
        )
    if recorded is None and previous is not None:
        return (
            "security.previous_key_encryption_key is set but no rotation of the key-encryption key is under "
            "way: remove it from the settings (and destroy it once backups made under it have expired)"
        )
    return None


def _begin(session: Session, kek: bytes, previous: bytes | None) -> tuple[str | None, bool]:
    """Make `kek` current and the old KEK previous (unless so already); returns (old id, begun now)."""
    roles = _roles(session)
    current = roles.get(KekRole.CURRENT)
    if current is not None and _is(current, kek):
        old = roles.get(KekRole.PREVIOUS)
        return (old.kek_id if old else None), False
    if current is None or previous is None or not _is(current, previous):
        if current is None:
            raise KekMismatch("no key-encryption key is recorded yet: start the service once first")
        raise _mismatch(previous or kek, current)
    current.role = KekRole.PREVIOUS
    session.flush()
    row = session.get(KekCheck, _id(kek))  # rotating back to a key retired long ago reuses its row
    if row is None:
        session.add(
            KekCheck(
                kek_id=_id(kek), check_value=kek_check_value(kek), role=KekRole.CURRENT, created_at=utcnow()
            )
        )
    else:
        row.role, row.retired_at = KekRole.CURRENT, None
    return current.kek_id, True


def _left(session: Session, to_id: str) -> int:
    query = select(func.count()).select_from(_DATA_KEYS)
    return int(
        session.scalar(query.where(or_(_DATA_KEYS.c.kek_id.is_(None), _DATA_KEYS.c.kek_id != to_id))) or 0
    )


def rotate(
    session_factory: sessionmaker[Session],
    kek: bytes,
    previous: bytes | None,
    *,
    batch_size: int = 2000,
    progress: Callable[[RotationReport], None] | None = None,
) -> RotationReport:
    """Re-wrap every data key under `kek` (the settings' new KEK), opening them with `previous`; resumable.
    Retires the previous KEK when no data key is left under it. KekMismatch if the keys are not the
    database's."""
    to_id = _id(kek)
    with session_factory() as session:
        from_id, begun = _begin(session, kek, previous)
        report = RotationReport(from_id=from_id, to_id=to_id, remaining=_left(session, to_id))
        audit.record(
            session,
            action="kek.rotation_started" if begun else "kek.rotation_resumed",
            actor_id=None,
            subject_kind="kek",
            subject_id=to_id,
            details={"from": from_id, "to": to_id, "data_keys_left": report.remaining},
        )
        session.commit()
    keks = (kek,) if previous is None else (kek, previous)
    for _ in range(_PASSES):
        _rewrap_pass(session_factory, keks, report, batch_size, progress)
        with session_factory() as session:
            report.remaining = _left(session, to_id)
        if report.remaining == len(report.failed):
            break
    if report.remaining:
        return report
    with session_factory() as session:
        old = _roles(session).get(KekRole.PREVIOUS)
        if old is not None:
            old.role, old.retired_at = None, utcnow()
        audit.record(
            session,
            action="kek.rotation_finished",
            actor_id=None,
            subject_kind="kek",
            subject_id=to_id,
            details={"from": from_id, "to": to_id, "rewrapped": report.rewrapped},
        )
        session.commit()
    report.finished = True
    return report


def _rewrap_pass(
    session_factory: sessionmaker[Session],
    keks: tuple[bytes, ...],
    report: RotationReport,
    batch_size: int,
    progress: Callable[[RotationReport], None] | None,
) -> None:
    """One pass in storage-key order over the rows not under keks[0], a batch per transaction."""
    c = _DATA_KEYS.c
    pending = select(c.storage_key, c.wrapped_key).where(or_(c.kek_id.is_(None), c.kek_id != report.to_id))
    rewrap = (
        update(_DATA_KEYS)
        .where(c.storage_key == bindparam("sk"), c.wrapped_key == bindparam("old"))
        .values(wrapped_key=bindparam("new"), kek_id=report.to_id)
    )
    last = ""
    while True:
        with session_factory() as session:
            rows = session.execute(
                pending.where(c.storage_key > last).order_by(c.storage_key).limit(batch_size)
            ).all()
            if not rows:
                return
            params = []
            for storage_key, wrapped in rows:
                try:
                    data_key = unwrap_with_any(keks, bytes(wrapped), storage_key)
                except BlobDecryptError as exc:
                    report.failed[storage_key] = str(exc)
                    continue
                params.append(
                    {"sk": storage_key, "old": wrapped, "new": wrap_key(keks[0], data_key, storage_key)}
                )
            if params:  # a row destroyed or re-made meanwhile matches no more: nothing to re-wrap
                session.connection().execute(rewrap, params)
            session.commit()
            report.rewrapped += len(params)
            last = rows[-1][0]
        if progress is not None:
            progress(report)
