"""Named, time-limited leases in the database: one process at a time runs what a lease guards.

One implementation for every lease (the job consumer's periodic tasks, the sweeper). A lease is free
from the moment `now >= expires_at`; its holder renews it by taking it again before then. `now` is the
database's clock (`dbclock.coordination_now`) unless the caller gives one: holders on different machines
compare against one clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from petportrait.db import session_scope
from petportrait.jobs.dbclock import coordination_now
from petportrait.jobs.models import Lease

FREE = ""
"""The holder of a released lease: free to take at once."""


def take(
    session_factory: sessionmaker[Session],
    *,
    name: str,
    holder: str,
    ttl: timedelta,
    now: datetime | None = None,
) -> bool:
    """Take or renew the lease `name` for `holder` until now + ttl; True if `holder` holds it now."""
    with session_scope(session_factory) as session:
        now = now or coordination_now(session)
        result = session.execute(
            update(Lease)
            .where(
                Lease.name == name, or_(Lease.holder == holder, Lease.holder == FREE, Lease.expires_at <= now)
            )
            .values(holder=holder, expires_at=now + ttl)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return True
        if session.get(Lease, name) is not None:
            return False
    try:
        with session_scope(session_factory) as session:
            session.execute(insert(Lease).values(name=name, holder=holder, expires_at=now + ttl))
    except IntegrityError:
        return False
    return True


def release(
    session_factory: sessionmaker[Session],
    *,
    name: str,
    holder: str,
    now: datetime | None = None,
    ran: bool = False,
) -> None:
    """Give the lease back so another process can take it at once (noting the run when `ran`), whatever
    either clock says: a released lease has no holder (a process whose clock ran ahead must not leave a
    lease that looks held until its own future)."""
    with session_scope(session_factory) as session:
        now = now or coordination_now(session)
        values: dict[str, datetime | str] = {"expires_at": now, "holder": FREE}
        if ran:
            values["last_run_at"] = now
        session.execute(
            update(Lease)
            .where(Lease.name == name, Lease.holder == holder)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
