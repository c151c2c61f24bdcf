"""The job consumer: runs jobs from the queue, heartbeats, reaps dead workers' jobs, runs periodic tasks.

`petportrait worker` runs one in the foreground (one job at a time: one per GPU; start one process per
GPU with PETPORTRAIT__ML__DEVICE=cuda:N). `petportrait serve` runs one in a background thread unless
PETPORTRAIT__QUEUE__EMBEDDED_CONSUMER=false.

Periodic tasks (the reaper, and what domains registered: the retention sweeper, trust & safety deadlines)
run only in the consumer that holds the `periodic` lease in the database, so exactly one consumer of a
deployment runs them at a time. Each task has a thread and a schedule of its own and runs once as soon as
the lease is held: a slow task (a delivery batch, a long sweep) delays no other, and one thread renews the
lease whatever the tasks do. Jobs run through the handler their kind registered; this module knows no
domain.

Why not huey's own consumer: its SIGTERM stops at once (ours lets the current job finish, a second one hands
it back), it sets signal handlers and so cannot run in `serve`'s thread, and its periodic tasks and
`lock_task` locks run on every consumer with locks that a SIGKILLed holder never releases (ours is a lease
that expires). huey carries the job ids (a task per id) and stores them (SQLite or Redis).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import FrameType

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.orm import Session, sessionmaker

from petportrait.db import new_id
from petportrait.jobs import leases, runner
from petportrait.jobs import service as jobs_service
from petportrait.jobs.base import JobQueue, Periodic
from petportrait.jobs.dbclock import SKEW_CHECK_SECONDS, ClockSkew, coordination_now
from petportrait.jobs.models import Job, JobState
from petportrait.jobs.runner import JobHandler
from petportrait.outages import Backoff, unavailable
from petportrait.settings import Settings
from petportrait.storage.base import BlobStore
from petportrait.telemetry import periodic_span

log = logging.getLogger(__name__)
PERIODIC_LEASE = "periodic"

# Kept by the process that holds the periodic lease (served at /metrics by lifecycle.metrics).
PERIODIC_REGISTRY = CollectorRegistry()
PERIODIC_LAST_SUCCESS = Gauge(
    "petportrait_periodic_last_success_timestamp_seconds",
    "When each periodic task last ended without an error, in this process.",
    ["task"],
    registry=PERIODIC_REGISTRY,
)
PERIODIC_INTERVAL = Gauge(
    "petportrait_periodic_interval_seconds",
    "Each periodic task's interval.",
    ["task"],
    registry=PERIODIC_REGISTRY,
)
PERIODIC_FAILURES = Counter(
    "petportrait_periodic_failures",
    "Runs of each periodic task that raised.",
    ["task"],
    registry=PERIODIC_REGISTRY,
)


@dataclass
class PeriodicTask:
    """A function run every `interval` seconds by the lease holder, in a thread of its own; first at once."""

    name: str
    interval: float
    run: Callable[[], object]
    last_run: float | None = field(default=None)

    def due(self, now: float) -> bool:
        """Never run yet (so it runs at start-up, whatever the machine's uptime), or its interval passed."""
        return self.last_run is None or now - self.last_run >= self.interval


class Consumer:
    """Pulls job ids from the queue and runs them, one at a time, in a thread of its own."""

    def __init__(
        self,
        *,
        settings: Settings,
        session_factory: sessionmaker[Session],
        blobs: BlobStore,
        queue: JobQueue,
        handlers: Mapping[str, JobHandler],
        periodic_tasks: Sequence[Periodic] = (),
        worker_id: str | None = None,
        periodic: bool = True,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.blobs = blobs
        self.queue = queue
        self.handlers = dict(handlers)
        host = settings.queue.worker_name or socket.gethostname()
        self.worker_id = worker_id or f"{host}:{os.getpid()}:{new_id()[:8]}"
        self.ctx = runner.WorkerContext(
            settings=self.settings,
            session_factory=session_factory,
            blobs=blobs,
            handlers=self.handlers,
            worker_id=self.worker_id,
        )
        self.periodic_enabled = periodic
        self.periodic_tasks: list[PeriodicTask] = [PeriodicTask("reaper", self.reaper_interval, self.reap)]
        for name, interval, run in periodic_tasks:
            self.add_periodic(name, interval, run)
        self._stop = threading.Event()
        self._holding = threading.Event()
        self._threads: list[threading.Thread] = []
        self.busy = threading.Event()
        self.jobs_done = 0
        self.skew = ClockSkew(who=f"worker {self.worker_id}")
        self._queue_backoff = Backoff(f"consumer {self.worker_id}: taking jobs from the queue", logger=log)
        self._db_backoff = Backoff(f"consumer {self.worker_id}: the periodic lease (database)", logger=log)
        # Since when (monotonic) this consumer reaches the database without a break: the reaper counts
        # a heartbeat as stopped only once workers have had a whole stale period to write one.
        self.database_up_since = time.monotonic()
        self._task_backoff: dict[str, Backoff] = {}

    @property
    def reaper_interval(self) -> float:
        return max(0.5, min(30.0, self.settings.queue.stale_after_seconds / 3))

    def add_periodic(self, name: str, interval: float, run: Callable[[], object]) -> None:
        """Run `run` every `interval` seconds on the lease-holding consumer."""
        self.periodic_tasks.append(PeriodicTask(name, interval, run))

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the job thread and the periodic thread."""
        self._threads = [threading.Thread(target=self._job_loop, name="consumer-jobs", daemon=True)]
        if self.periodic_enabled:
            self._threads.append(
                threading.Thread(target=self._periodic_loop, name="consumer-periodic", daemon=True)
            )
            self._threads.extend(
                threading.Thread(
                    target=self._task_loop, args=(task,), name=f"periodic-{task.name}", daemon=True
                )
                for task in self.periodic_tasks
            )
        self.skew.check(self.session_factory)
        for thread in self._threads:
            thread.start()
        log.info("consumer %s started on queue %s", self.worker_id, self.queue.name)

    def stop(self, *, hand_back: bool = False, timeout: float | None = None) -> None:
        """Stop taking jobs; finish the current one, or hand it back to the queue at once."""
        self._stop.set()
        self.ctx.shutdown.set()
        if hand_back:
            self.ctx.hand_back.set()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._release_lease()
        self._send_released()
        log.info("consumer %s stopped", self.worker_id)

    def run_forever(self) -> None:
        """Run in the foreground: SIGTERM/SIGINT finish the current job, a second signal hands it back."""
        signals = {"count": 0}

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            signals["count"] += 1
            if signals["count"] == 1:
                log.info(
                    "signal %s: finishing the current job, then stopping (again to hand it back)", signum
                )
                self._stop.set()
                self.ctx.shutdown.set()
            else:
                log.info("signal %s: handing the current job back", signum)
                self.ctx.hand_back.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        while not self._stop.is_set():
            time.sleep(0.2)
        self.stop(hand_back=self.ctx.hand_back.is_set())

    # --- loops -------------------------------------------------------------------------------------

    def _job_loop(self) -> None:
        while not self._stop.is_set():
            try:
                job_id = self.queue.dequeue(timeout=0.5)
            except Exception as exc:
                self._queue_backoff.wait(exc, self._stop)
                continue
            self._queue_backoff.succeeded()
            if job_id is None:
                continue
            self.busy.set()
            try:
                state = runner.run_job(self.ctx, job_id)
                if state is not None:
                    self.jobs_done += 1
                    log.info("job %s ended %s", job_id, state)
            except Exception as exc:
                if unavailable(exc) is None:
                    log.exception("job %s crashed the runner", job_id)
                else:  # the job's row says what happened; the reaper re-sends it if it was not claimed
                    log.warning("job %s not run: %s unavailable (%s)", job_id, unavailable(exc), exc)
                    self._stop.wait(1.0)
            finally:
                self.busy.clear()
                self._send_released()

    def _send_released(self) -> None:
        released, self.ctx.released[:] = list(self.ctx.released), []
        jobs_service.send(self.session_factory, self.queue, released)

    def _periodic_loop(self) -> None:
        """Take and renew the periodic lease; the task threads run only while it is held."""
        ttl = timedelta(seconds=min(10.0, max(2.0, self.settings.queue.stale_after_seconds)))
        skew_checked = time.monotonic()
        delay = 0.25
        while not self._stop.wait(delay):
            delay = 0.25
            if time.monotonic() - skew_checked >= SKEW_CHECK_SECONDS:
                skew_checked = time.monotonic()
                self.skew.check(self.session_factory)
            try:
                holder = leases.take(
                    self.session_factory, name=PERIODIC_LEASE, holder=self.worker_id, ttl=ttl
                )
            except Exception as exc:
                if not self._db_backoff.down:
                    self.database_up_since = float("inf")
                self._holding.clear()
                delay = max(delay, self._db_backoff.failed(exc))
                continue
            if self._db_backoff.down:
                self.database_up_since = time.monotonic()
            self._db_backoff.succeeded()
            if holder:
                self._holding.set()
            else:
                self._holding.clear()
        self._holding.clear()

    def _task_loop(self, task: PeriodicTask) -> None:
        """Run one periodic task on its own schedule while this consumer holds the lease."""
        while not self._stop.is_set():
            if not self._holding.wait(0.25):
                continue
            now = time.monotonic()
            if not task.due(now):
                self._stop.wait(min(0.25, task.interval - (now - (task.last_run or now))))
                continue
            first, task.last_run = task.last_run is None, now
            self._run_periodic(task)
            if first:
                log.info("periodic task %s: first run done (%.2f s)", task.name, time.monotonic() - now)

    def _run_periodic(self, task: PeriodicTask) -> None:
        """Run one periodic task; a dependency that is away is said once (and once when it is back)."""
        backoff = self._task_backoff.setdefault(task.name, Backoff(f"periodic task {task.name}", logger=log))
        PERIODIC_INTERVAL.labels(task=task.name).set(task.interval)
        try:
            with periodic_span(task.name):
                task.run()
        except Exception as exc:
            PERIODIC_FAILURES.labels(task=task.name).inc()
            if unavailable(exc) is None:
                log.exception("periodic task %s failed", task.name)
            else:
                backoff.failed(exc)
            return
        PERIODIC_LAST_SUCCESS.labels(task=task.name).set(time.time())
        backoff.succeeded()

    def _release_lease(self) -> None:
        try:
            leases.release(self.session_factory, name=PERIODIC_LEASE, holder=self.worker_id)
        except Exception:
            log.exception("could not release the periodic lease")

    # --- periodic tasks ----------------------------------------------------------------------------

    def reap(self) -> jobs_service.ReapReport:
        """Re-send lost messages; requeue (or fail) running jobs whose heartbeat stopped.

        Right after this consumer started, or after the database was away, heartbeats are not judged until
        a whole stale period has passed: an outage that hid every heartbeat is not taken for death.
        """
        stale_after = self.settings.queue.stale_after_seconds
        judge = time.monotonic() - self.database_up_since >= stale_after
        return reap(
            self.session_factory,
            blobs=self.blobs,
            queue=self.queue,
            handlers=self.handlers,
            stale_after=timedelta(seconds=stale_after),
            judge_heartbeats=judge,
        )


def reap(
    session_factory: sessionmaker[Session],
    *,
    blobs: BlobStore,
    queue: JobQueue,
    handlers: Mapping[str, JobHandler],
    stale_after: timedelta,
    judge_heartbeats: bool = True,
) -> jobs_service.ReapReport:
    """One reaper pass over the database; safe to run from any process at any time.

    Times are the database's (`coordination_now`), the clock every worker's heartbeat was written with.
    Without `judge_heartbeats` only lost messages are re-sent.
    """
    report = jobs_service.ReapReport()
    with session_factory() as session:
        now = coordination_now(session)
        stale = jobs_service.find_stale(session, now=now, stale_after=stale_after) if judge_heartbeats else []
        for job in stale:
            dead_attempt = job.attempt
            requeued = jobs_service.requeue_stale(session, job=job, now=now)
            session.commit()
            fresh = session.get(Job, job.id, populate_existing=True)
            if fresh is None:
                continue
            handler = handlers.get(fresh.kind)
            if handler is not None:
                handler.remove_outputs(session, blobs=blobs, job=fresh, attempt=dead_attempt)
            if requeued:
                report.requeued.append(job.id)
            elif fresh.state == JobState.CANCELLED.value:
                if handler is not None:
                    handler.on_end(session, job=fresh)
                report.cancelled.append(job.id)
            else:
                if handler is not None:
                    handler.on_end(session, job=fresh)
                report.failed.append(job.id)
            session.commit()
        lost = jobs_service.find_lost_messages(session, now=now, resend_after=stale_after)
    if lost:  # a job waiting behind busy workers is still in the queue: only ids the queue lost go again
        waiting = queue.waiting()
        lost = [job_id for job_id in lost if job_id not in waiting]
    jobs_service.send(session_factory, queue, report.requeued)
    report.resent.extend(jobs_service.send(session_factory, queue, lost))
    if report.requeued or report.failed or report.cancelled or report.resent:
        log.info(
            "reaper: requeued %s, failed %s, cancelled %s, re-sent %s",
            report.requeued,
            report.failed,
            report.cancelled,
            report.resent,
        )
    return report
