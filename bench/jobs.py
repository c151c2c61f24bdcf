"""Job figures on one machine: jobs per minute through the whole flow, recovery after a worker's death,
and queue overhead (enqueue to start) on the SQLite and Redis queues.

Each leg runs the API in-process and job workers as separate processes, as `petportrait worker` does on a
fleet, with the preview model.

    .venv/bin/python bench/jobs.py [--pets 3] [--train-steps 6] [--resolution 64] [--overhead-jobs 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select

from petportrait.clock import utcnow
from petportrait.jobs import service as jobs_service
from petportrait.jobs.models import Job
from petportrait.portraits.models import JobKind
from tests.jobs.stack import Stack, close_stack, make_stack

REDIS_URL = "redis://127.0.0.1:6379/0"


def whole_flow(stack: Stack, pets: int) -> float:
    """Jobs per minute: each pet is trained, then rendered twice (one job each)."""
    headers = stack.user("bench-flow@example.com")
    pet_ids = [stack.pet_with_photos(headers, folder) for folder in ["dog", "cat", "dog2", "dog3"][:pets]]
    start = time.monotonic()
    done = 0
    train_jobs = []
    for pet_id in pet_ids:
        body = stack.client.post(f"/api/v1/pets/{pet_id}/models", headers=headers).json()
        train_jobs.append((body["model"]["id"], body["job"]["id"]))
    render_jobs = []
    for model_id, job_id in train_jobs:
        assert stack.wait_end(headers, job_id, timeout=900)["state"] == "succeeded", stack.worker_logs()
        done += 1
        for style in ("oil_painting", "watercolour"):
            body = stack.client.post(
                f"/api/v1/models/{model_id}/renders",
                json={"style": style, "count": 1, "seed": 1, "steps": 10},
                headers=headers,
            ).json()
            render_jobs.append(body["job"]["id"])
    for job_id in render_jobs:
        assert stack.wait_end(headers, job_id, timeout=900)["state"] == "succeeded"
        done += 1
    return done / ((time.monotonic() - start) / 60)


def recovery(stack: Stack) -> float:
    """Seconds from a worker's SIGKILL mid-training to the job running again on another worker."""
    headers = stack.user("bench-recovery@example.com")
    pet_id = stack.pet_with_photos(headers, "cat")
    stack.stop_all()
    first = stack.start_worker(PETPORTRAIT__ML__TRAIN_STEPS="60")
    body = stack.client.post(f"/api/v1/pets/{pet_id}/models", headers=headers).json()
    job_id = body["job"]["id"]
    stack.wait_job(
        headers, job_id, lambda j: j["state"] == "running" and j["progress"]["step"] >= 2, timeout=600
    )
    stack.kill(first)
    killed = time.monotonic()
    stack.start_worker()
    stack.wait_job(headers, job_id, lambda j: j["attempt"] == 2 and j["state"] == "running", timeout=600)
    took = time.monotonic() - killed
    stack.wait_end(headers, job_id, timeout=900)
    return took


def queue_overhead(stack: Stack, jobs: int) -> list[float]:
    """Seconds from enqueue to start for jobs sent one at a time to an idle worker."""
    headers = stack.user("bench-overhead@example.com")
    owner = stack.client.get("/api/v1/me", headers=headers).json()["id"]
    waits = []
    for _ in range(jobs):
        with stack.services.session_factory() as session:
            job = jobs_service.create_job(
                session, kind=JobKind.RENDER, owner_id=owner, target_id="no-such-model", max_attempts=1
            )
            session.commit()
            job_id = job.id
        sent_at = utcnow()
        stack.services.queue.enqueue(job_id)
        stack.wait_end(headers, job_id, timeout=60)
        with stack.services.session_factory() as session:
            row = session.scalars(select(Job).where(Job.id == job_id)).one()
            assert row.started_at is not None
            waits.append((row.started_at - sent_at).total_seconds())
    return waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pets", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=6)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--overhead-jobs", type=int, default=30)
    parser.add_argument("--queues", default="sqlite,redis", help="which queues to measure, comma-separated")
    parser.add_argument("--overhead-only", action="store_true", help="measure only enqueue-to-start")
    args = parser.parse_args()
    chosen = set(args.queues.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = root / "shared-models"
        models.mkdir()
        for name, url in (("sqlite", None), ("redis", REDIS_URL)):
            if name not in chosen:
                continue
            stack = make_stack(
                root / name,
                queue_url=url,
                shared_models=models,
                train_steps=args.train_steps,
                resolution=args.resolution,
            )
            try:
                stack.start_worker()
                waits = queue_overhead(stack, args.overhead_jobs)
                print(
                    f"[{name} queue] enqueue-to-start: median {statistics.median(waits) * 1000:.0f} ms, "
                    f"p90 {sorted(waits)[int(len(waits) * 0.9) - 1] * 1000:.0f} ms over {len(waits)} jobs"
                )
                if name == "sqlite" and not args.overhead_only:
                    rate = whole_flow(stack, args.pets)
                    print(
                        f"[{name} queue] whole flow: {rate:.1f} jobs/min (train {args.train_steps} steps at "
                        f"{args.resolution}px, then 2 renders per pet; {args.pets} pets, one worker)"
                    )
                    took = recovery(stack)
                    print(
                        f"[{name} queue] recovery after SIGKILL mid-training: {took:.1f} s "
                        f"(heartbeat 0.3 s, stale after 2 s)"
                    )
            finally:
                close_stack(stack)


if __name__ == "__main__":
    main()
