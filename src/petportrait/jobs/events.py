"""Live job events: one shared poller per job fans its state out to every open stream of that job.

A stream is an asyncio consumer of a queue; it holds no thread and no database session. The poller of a
job reads the job's row (and whether each subscriber's token is still live) in a worker thread every
`poll_seconds`, puts the snapshot on each subscriber's queue and stops when its last subscriber leaves.
The number of open streams per account is capped; the per-account count is per process.

This module knows no domain: what a snapshot holds and how tokens are checked come from the caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

ReadJob = Callable[[Session, str], dict[str, Any] | None]
"""read(session, job_id) -> the job as JSON-ready data, or None when it is gone."""

LiveTokens = Callable[[Session, set[str]], set[str]]
"""live(session, token_ids) -> those of the ids that are still live (not revoked, expired or erased)."""


@dataclass(frozen=True)
class Snapshot:
    """What one poll saw: the job (None when deleted), and the token ids still live."""

    job: dict[str, Any] | None
    live_tokens: frozenset[str]


@dataclass(eq=False)
class Subscription:
    """One open stream: its account, its token, and the queue its job's poller feeds."""

    job_id: str
    account_id: str
    token_id: str
    queue: asyncio.Queue[Snapshot | BaseException] = field(default_factory=lambda: asyncio.Queue(maxsize=4))

    def offer(self, item: Snapshot | BaseException) -> None:
        """Give the stream the newest snapshot; a slow reader only ever misses older ones."""
        while self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(item)


class StreamLimitReached(Exception):
    """The account already has its quota of open streams."""


class JobEventHub:
    """The shared pollers of one process, and how many streams each account has open."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        read_job: ReadJob,
        live_tokens: LiveTokens,
        poll_seconds: float,
        max_per_account: int,
    ) -> None:
        self.session_factory = session_factory
        self.read_job = read_job
        self.live_tokens = live_tokens
        self.poll_seconds = poll_seconds
        self.max_per_account = max_per_account
        self.open_by_account: dict[str, int] = {}
        self.subscribers: dict[str, set[Subscription]] = {}
        self.pollers: dict[str, asyncio.Task[None]] = {}
        self.polls = 0  # how many database reads the pollers made (for tests and metrics)

    @property
    def open_streams(self) -> int:
        return sum(self.open_by_account.values())

    def subscribe(self, *, job_id: str, account_id: str, token_id: str) -> Subscription:
        """Open a stream (on the event loop); StreamLimitReached beyond the account's quota."""
        if self.open_by_account.get(account_id, 0) >= self.max_per_account:
            raise StreamLimitReached
        self.open_by_account[account_id] = self.open_by_account.get(account_id, 0) + 1
        sub = Subscription(job_id=job_id, account_id=account_id, token_id=token_id)
        self.subscribers.setdefault(job_id, set()).add(sub)
        task = self.pollers.get(job_id)
        if task is None or task.done():
            self.pollers[job_id] = asyncio.get_running_loop().create_task(
                self._poll(job_id), name=f"job-events-{job_id}"
            )
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Close a stream; the job's poller stops after its last subscriber left."""
        subs = self.subscribers.get(sub.job_id)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        left = self.open_by_account.get(sub.account_id, 1) - 1
        if left > 0:
            self.open_by_account[sub.account_id] = left
        else:
            self.open_by_account.pop(sub.account_id, None)
        if not subs:
            del self.subscribers[sub.job_id]
            task = self.pollers.pop(sub.job_id, None)
            if task is not None:
                task.cancel()

    def _read(self, job_id: str, token_ids: set[str]) -> Snapshot:
        with self.session_factory() as session:
            job = self.read_job(session, job_id)
            live = self.live_tokens(session, token_ids) if token_ids else set()
            session.rollback()
        return Snapshot(job=job, live_tokens=frozenset(live))

    async def _poll(self, job_id: str) -> None:
        while self.subscribers.get(job_id):
            subs = list(self.subscribers[job_id])
            try:
                snapshot: Snapshot | BaseException = await anyio.to_thread.run_sync(
                    self._read, job_id, {s.token_id for s in subs}
                )
                self.polls += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database hiccup ends the streams of this job, not the process
                log.warning("job events poll of %s failed: %s", job_id, exc)
                snapshot = exc
            for sub in self.subscribers.get(job_id, ()):
                sub.offer(snapshot)
            if isinstance(snapshot, BaseException):
                return
            await asyncio.sleep(self.poll_seconds)
