"""Event streams under attack, against a live uvicorn: many open streams, one account's quota, logout."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import httpx
import pytest
from bench.streams import Account, Stream, live_server, make_accounts, open_streams, probe
from fastapi import FastAPI

from petportrait.web.app import Services, create_app


@pytest.fixture
def short_streams(services: Services) -> Services:
    services.settings.quotas.event_stream_max_seconds = 6.0
    services.settings.quotas.event_poll_seconds = 0.2
    return services


@pytest.fixture
def app(short_streams: Services) -> FastAPI:
    return create_app(services=short_streams)


@pytest.fixture
def base(app: FastAPI) -> Iterator[str]:
    with live_server(app) as url:
        yield url


def _wait_open(streams: list[Stream]) -> None:
    for stream in streams:
        assert stream.opened.wait(20), "a stream did not open"


def test_forty_open_streams_leave_healthz_and_me_fast(
    short_streams: Services, app: FastAPI, base: str
) -> None:
    accounts = make_accounts(short_streams, accounts=11, jobs_each=2)
    prober, attackers = accounts[-1], accounts[:-1]
    streams = open_streams(base, attackers, streams=40, per_account=4)
    _wait_open(streams)
    assert [s.status for s in streams] == [200] * 40
    times = probe(base, prober.headers, count=8)
    # Not a speed target (bench/streams.py measures that): a stall. Before, these took 9 to 45 s; the median
    # stays far below a second, and no answer waits seconds behind the streams, even on a busy CI machine.
    for path in ("/healthz", "/api/v1/me"):
        assert statistics.median(times[path]) < 0.5 and max(times[path]) < 5.0, times
    hub = app.state.job_event_hub  # one poller per job, not one per stream
    assert hub.open_streams == 40 and len(hub.pollers) == 20
    for stream in streams:
        assert stream.ended.wait(20), "a stream outlived its maximum duration"
    assert all(s.names()[-1] == "reconnect" for s in streams), streams[0].events
    assert all(s.names()[:-1] and set(s.names()[:-1]) == {"progress"} for s in streams)
    deadline = time.monotonic() + 5  # the last stream's close runs just after its last byte
    while (hub.open_streams or hub.pollers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hub.open_streams == 0 and not hub.pollers


def test_the_fifth_stream_of_one_account_is_refused_with_429(short_streams: Services, base: str) -> None:
    (account,) = make_accounts(short_streams, accounts=1, jobs_each=5)
    streams = open_streams(base, [account], streams=4, per_account=4)
    _wait_open(streams)
    assert [s.status for s in streams] == [200] * 4
    fifth = httpx.get(f"{base}/api/v1/jobs/{account.job_ids[4]}/events", headers=account.headers, timeout=10)
    assert fifth.status_code == 429
    assert fifth.headers["content-type"] == "application/problem+json"
    assert fifth.json()["code"] == "too_many_streams" and int(fifth.headers["Retry-After"]) > 0
    # once the streams end (maximum duration), the account may open new ones
    for stream in streams:
        assert stream.ended.wait(20)
    again = Stream(f"{base}/api/v1/jobs/{account.job_ids[4]}/events", account.headers).start()
    assert again.opened.wait(10) and again.status == 200


def test_a_revoked_token_ends_its_open_stream(short_streams: Services, base: str) -> None:
    account: Account
    account, other = make_accounts(short_streams, accounts=2, jobs_each=1)
    mine = Stream(f"{base}/api/v1/jobs/{account.job_ids[0]}/events", account.headers).start()
    theirs = Stream(f"{base}/api/v1/jobs/{other.job_ids[0]}/events", other.headers).start()
    _wait_open([mine, theirs])
    assert mine.status == 200 and theirs.status == 200
    started = time.monotonic()
    assert httpx.delete(f"{base}/api/v1/auth/token", headers=account.headers).status_code == 204
    assert mine.ended.wait(3), "the stream outlived the token"
    assert time.monotonic() - started < 3
    assert mine.names()[-1] == "unauthorized"
    assert not theirs.ended.is_set()  # another person's stream goes on
    again = httpx.get(f"{base}/api/v1/jobs/{account.job_ids[0]}/events", headers=account.headers, timeout=10)
    assert again.status_code == 401


def test_another_persons_job_stream_is_not_found(short_streams: Services, base: str) -> None:
    owner, other = make_accounts(short_streams, accounts=2, jobs_each=1)
    response = httpx.get(f"{base}/api/v1/jobs/{owner.job_ids[0]}/events", headers=other.headers, timeout=10)
    assert response.status_code == 404
    assert httpx.get(f"{base}/api/v1/jobs/{owner.job_ids[0]}/events", timeout=10).status_code == 401


def test_a_quiet_stream_carries_keep_alive_comments(
    short_streams: Services, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from petportrait.web import jobs as job_views

    monkeypatch.setattr(job_views, "KEEPALIVE_SECONDS", 0.5)
    (account,) = make_accounts(short_streams, accounts=1, jobs_each=1)
    seen = b""
    url = f"{base}/api/v1/jobs/{account.job_ids[0]}/events"
    with httpx.stream("GET", url, headers=account.headers, timeout=10) as response:
        for chunk in response.iter_raw():
            seen += chunk
            if b": keep-alive" in seen:
                break
    assert seen.startswith(b"retry: 2000\n\nevent: progress\n") and b": keep-alive\n\n" in seen
