"""A worker started while S3 and Redis cannot be reached does not exit (issue 26): it says so once per
dependency, backs off quietly, and says once that each works again when the proxies are restored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3

from petportrait.web.app import build_services
from tests.conftest import make_settings
from tests.outages.proxy import TcpProxy


def wait_for(log: Path, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return False


def test_a_worker_started_with_s3_and_redis_away_waits_for_them(tmp_path: Path, moto_endpoint: str) -> None:
    bucket = f"start-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)  # fmt: skip
    s3, s3_endpoint = TcpProxy.in_front_of(moto_endpoint)
    redis, redis_url = TcpProxy.in_front_of("redis://127.0.0.1:6379/0")
    s3.cut()
    redis.cut()
    settings = make_settings(tmp_path)
    build_services(settings, migrate=True).engine.dispose()  # the database is there; the others are not
    env = {
        **os.environ,
        "PETPORTRAIT__ENVIRONMENT": "test",
        "PETPORTRAIT__DATA_DIR": str(tmp_path),
        "PETPORTRAIT__DATABASE__URL": settings.database_url,
        "PETPORTRAIT__SECURITY__SECRET_KEY": settings.security.secret_key,
        "PETPORTRAIT__STORAGE__BACKEND": "s3",
        "PETPORTRAIT__STORAGE__S3_BUCKET": bucket,
        "PETPORTRAIT__STORAGE__S3_ENDPOINT_URL": s3_endpoint,
        "PETPORTRAIT__STORAGE__S3_ACCESS_KEY_ID": "testing",
        "PETPORTRAIT__STORAGE__S3_SECRET_ACCESS_KEY": "testing",
        "PETPORTRAIT__QUEUE__URL": redis_url,
        "PETPORTRAIT__QUEUE__NAME": f"start-{uuid.uuid4().hex[:8]}",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "worker.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "petportrait.cli", "worker"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert wait_for(log, "taking jobs from the queue failed", 120), log.read_text()
        assert wait_for(log, "did not answer at start", 5) or "versioning check" in log.read_text()
        time.sleep(3)  # many tries in this time; one line said it
        assert proc.poll() is None, log.read_text()
        s3.restore()
        redis.restore()
        assert wait_for(log, "taking jobs from the queue works again", 60), log.read_text()
        assert wait_for(log, "versioning check of S3 bucket", 60), log.read_text()
        text = log.read_text()
        assert proc.poll() is None and "Traceback" not in text, text
        assert text.count("taking jobs from the queue failed") == 1, text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        s3.close()
        redis.close()
