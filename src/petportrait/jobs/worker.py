"""The job consumer: runs jobs from the queue, heartbeats, reaps dead workers' jobs, runs periodic tasks.

`petportrait worker` runs one in the foreground (one job at a time: one per GPU; start one process per
GPU with PETPORTRAIT__ML__DEVICE=cuda:N). `petportrait serve` runs one in a background thread unless
PETPORTRAIT__QUEUE__EMBEDDED_CONSUMER=false.

Periodic tasks (the reaper, the retention sweeper) run only in the consumer that holds the `periodic`
lease in the database, so exactly one consumer of a deployment runs them at a time.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from types import FrameType

from petportrait.clock import utcnow
from petportrait.db import new_id
from petportrait.jobs import service as jobs_service
from petportrait.jobs.base import JobQueue
from petportrait.jobs.models import Job
from petportrait.lifecycle import sweeper
from petportrait.portraits import runner
from petportrait.portraits import service as portraits_service

log = logging.getLogger(__name__)
PERIODIC_LEASE = "periodic"


@dataclass
class PeriodicTask:
    """A function run every `interval` seconds by the lease holder."""

    name: str
    interval: float
    run: Callable[[], object]
    last_run: float = field(default=0.0)


class Consumer:
    """Pulls job ids from the queue and runs them, one at a time, in a thread of its own."""

    def __init__(
        self,
        services: object,
        *,
        worker_id: str | None = None,
        periodic: bool = True,
        engine: runner.PortraitEngine | None = None,
    ) -> None:
        from petportrait.web.deps import Services

        assert isinstance(services, Services)
        self.services = services
        self.settings = services.settings
        self.queue: JobQueue = services.queue
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{new_id()[:8]}"
        scratch_root = (self.settings.data_dir / "scratch" / self.worker_id.replace(":", "_")).resolve()
        self.ctx = runner.WorkerContext(
            settings=self.settings,
            session_factory=services.session_factory,
            blobs=services.blobs,
            worker_id=self.worker_id,
            engine=engine or runner.PortraitEngine(self.settings),
            scratch_root=scratch_root,
        )
        self.periodic_enabled = periodic
        self.periodic_tasks: list[PeriodicTask] = [
            PeriodicTask("reaper", self.reaper_interval, self.reap),
            PeriodicTask("sweeper", sweeper.interval(self.settings), self.sweep),
            PeriodicTask("case-deadlines", 60.0, self.settle_cases),
        ]
        registry = getattr(services, "registry", None)
        for task in registry.periodic_tasks if registry is not None else ():
            self.add_periodic(task.name, task.interval(self.settings), partial(task.run, services))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.busy = threading.Event()
        self.jobs_done = 0

    @property
    def reaper_interval(self) -> float:
        return max(0.5, min(30.0, self.settings.queue.stale_after_seconds / 3))

    def add_periodic(self, name: str, interval: float, run: Callable[[], object]) -> None:
        """Run `run` every `interval` seconds on the lease-holding consumer."""
        self.periodic_tasks.append(PeriodicTask(name, interval, run))

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the job thread and the periodic thread."""
        self._clean_own_scratch()
        self._threads = [threading.Thread(target=self._job_loop, name="consumer-jobs", daemon=True)]
        if self.periodic_enabled:
            self._threads.append(
                threading.Thread(target=self._periodic_loop, name="consumer-periodic", daemon=True)
            )
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
            except Exception:
                log.exception("dequeue failed; retrying")
                time.sleep(1.0)
                continue
            if job_id is None:
                continue
            self.busy.set()
            try:
                state = runner.run_job(self.ctx, job_id)
                if state is not None:
                    self.jobs_done += 1
                    log.info("job %s ended %s", job_id, state)
            except Exception:
                log.exception("job %s crashed the runner", job_id)
            finally:
                self.busy.clear()
                self._send_released()

    def _send_released(self) -> None:
        while self.ctx.released:
            job_id = self.ctx.released.pop(0)
            try:
                self.queue.enqueue(job_id)
                with self.services.session_factory() as session:
                    jobs_service.mark_enqueued(session, job_ids=[job_id])
                    session.commit()
            except Exception:
                log.exception("could not enqueue job %s; the reaper will send it again", job_id)

    def _periodic_loop(self) -> None:
        ttl = timedelta(seconds=min(10.0, max(2.0, self.settings.queue.stale_after_seconds)))
        while not self._stop.wait(0.25):
            try:
                with self.services.session_factory() as session:
                    holder = jobs_service.try_lease(
                        session, name=PERIODIC_LEASE, holder=self.worker_id, ttl=ttl
                    )
                if not holder:
                    continue
                now = time.monotonic()
                for task in self.periodic_tasks:
                    if now - task.last_run >= task.interval:
                        task.last_run = now
                        try:
                            task.run()
                        except Exception:
                            log.exception("periodic task %s failed", task.name)
            except Exception:
                log.exception("periodic loop error")

    def _release_lease(self) -> None:
        try:
            with self.services.session_factory() as session:
                jobs_service.release_lease(session, name=PERIODIC_LEASE, holder=self.worker_id)
        except Exception:
            log.exception("could not release the periodic lease")

    def _clean_own_scratch(self) -> None:
        """Remove scratch folders that dead workers here left (derived data never outlives its job)."""
        root = self.ctx.scratch_root.parent
        if root.is_dir():
            for folder in root.iterdir():
                if folder.is_dir() and folder != self.ctx.scratch_root and not _worker_alive(folder.name):
                    shutil.rmtree(folder, ignore_errors=True)
        self.ctx.scratch_root.mkdir(parents=True, exist_ok=True)

    # --- periodic tasks ----------------------------------------------------------------------------

    def sweep(self) -> object:
        """Delete what passed its retention period (the sweeper takes a lease of its own)."""
        return sweeper.sweep_once(
            self.services.session_factory, self.services.blobs, settings=self.settings, holder=self.worker_id
        )

    def settle_cases(self) -> int:
        """Revoke the licences of trust & safety cases whose cure period ended uncured."""
        from petportrait.rights import service as rights_service

        with self.services.session_factory() as session:
            settled = rights_service.enforce_due(session)
            session.commit()
        return settled

    def reap(self) -> jobs_service.ReapReport:
        """Re-send lost messages; requeue (or fail) running jobs whose heartbeat stopped."""
        return reap(self.services, stale_after=timedelta(seconds=self.settings.queue.stale_after_seconds))


def _worker_alive(folder_name: str) -> bool:
    """Whether the worker a scratch folder belongs to still runs on this host."""
    parts = folder_name.split("_")
    if len(parts) < 3 or parts[0] != socket.gethostname().replace(":", "_"):
        return True  # not ours to judge
    try:
        pid = int(parts[1])
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def reap(services: object, *, stale_after: timedelta) -> jobs_service.ReapReport:
    """One reaper pass over the database; safe to run from any process at any time."""
    from petportrait.web.deps import Services

    assert isinstance(services, Services)
    report = jobs_service.ReapReport()
    now = utcnow()
    with services.session_factory() as session:
        for job in jobs_service.find_stale(session, now=now, stale_after=stale_after):
            dead_attempt = job.attempt
            requeued = jobs_service.requeue_stale(session, job=job, now=now)
            session.commit()
            fresh = session.get(Job, job.id, populate_existing=True)
            if fresh is None:
                continue
            runner.remove_attempt_outputs(session, blobs=services.blobs, job=fresh, attempt=dead_attempt)
            if requeued:
                report.requeued.append(job.id)
                services.queue.enqueue(job.id)
            else:
                portraits_service.reflect_job_end(session, job=fresh)
                report.failed.append(job.id)
            session.commit()
        for job_id in jobs_service.find_lost_messages(session, now=now, resend_after=stale_after):
            services.queue.enqueue(job_id)
            jobs_service.mark_enqueued(session, job_ids=[job_id])
            report.resent.append(job_id)
        session.commit()
    if report.requeued or report.failed or report.resent:
        log.info("reaper: requeued %s, failed %s, re-sent %s", report.requeued, report.failed, report.resent)
    return report
