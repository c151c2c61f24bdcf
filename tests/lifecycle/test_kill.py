"""A sweeper process killed with SIGKILL between deleting blobs and recording tombstones: another finishes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta

from sqlalchemy import func, select

from petportrait.lifecycle import audit, sweeper
from petportrait.lifecycle.check import run_check
from petportrait.lifecycle.models import Tombstone
from petportrait.portraits.models import Render
from petportrait.storage.local import LocalBlobStore
from petportrait.web.app import Services
from tests.lifecycle.helpers import DAY, add_household

CHILD = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime, timedelta
    from pathlib import Path
    from petportrait.db import make_engine, make_session_factory
    from petportrait.lifecycle import sweeper
    from petportrait.settings import Settings
    from petportrait.storage.local import LocalBlobStore

    url, root, now = sys.argv[1:4]
    from petportrait.web.app import build_registry
    factory = make_session_factory(make_engine(url), info={"registry": build_registry()})

    def fault(stage):
        if stage == "after_blobs":
            print("blobs deleted", flush=True)
            time.sleep(120)

    sweeper.sweep_once(
        factory, LocalBlobStore(Path(root)), now=datetime.fromisoformat(now), batch_size=2,
        settings=Settings(environment="development"), holder="child", fault=fault,
    )
    """
)


def test_a_killed_sweeper_process_is_recovered_by_another(services: Services, now: datetime) -> None:
    houses = [add_household(services, at=now) for _ in range(3)]
    at = now + 30 * DAY
    assert isinstance(services.blobs, LocalBlobStore)
    url = services.engine.url.render_as_string(hide_password=False)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(services.blobs.root), at.isoformat()],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PETPORTRAIT__DATABASE__URL": url},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "blobs deleted"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    # Killed after deleting the first batch's blobs (two renders): their rows are still there, unrecorded.
    missing = [h for h in houses if not services.blobs.exists(h.keys["render"])]
    assert len(missing) == 2
    with services.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Tombstone)) == 0
        assert session.scalar(select(func.count()).select_from(Render)) == 3

    # Another process waits out the dead one's lease, then finishes the job.
    ttl = sweeper.lease_ttl(services.settings)
    blocked = sweeper.sweep_once(services.session_factory, services.blobs, now=at, settings=services.settings)
    assert not blocked.ran
    later = at + ttl + timedelta(seconds=1)
    report = sweeper.sweep_once(
        services.session_factory, services.blobs, now=later, settings=services.settings
    )
    assert report.ran and report.purged == {"render": 3, "model": 3, "photo": 3}
    assert list(services.blobs.list("")) == []
    with services.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Tombstone)) == 9
        assert audit.verify(session).ok
        assert run_check(session, services.blobs, settings=services.settings, now=later).ok
