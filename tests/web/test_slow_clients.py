"""`petportrait serve` as a real process: clients that drip their headers are cut off at the header
deadline, and meanwhile everyone else is answered."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.live import serve_process


def test_connections_dripping_headers_are_closed_at_the_deadline(tmp_path: Path) -> None:
    with serve_process(
        tmp_path / "var",
        PETPORTRAIT__SERVER__HEADER_TIMEOUT_SECONDS="2",
        PETPORTRAIT__SERVER__MAX_CONNECTIONS="64",
    ) as server:
        parts = urlsplit(server.base_url)
        drippers = []
        for _ in range(40):
            sock = socket.create_connection((parts.hostname, parts.port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            sock.settimeout(0.05)
            drippers.append(sock)
        started = time.monotonic()
        closed: dict[int, float] = {}
        answered = []
        while len(closed) < len(drippers) and time.monotonic() - started < 8:
            for n, sock in enumerate(drippers):
                if n in closed:
                    continue
                try:
                    sock.sendall(b"X")  # one more header byte
                    if sock.recv(1) == b"":
                        closed[n] = time.monotonic() - started
                except TimeoutError:
                    pass
                except OSError:
                    closed[n] = time.monotonic() - started
            began = time.monotonic()
            assert httpx.get(server.base_url + "/healthz", timeout=5).status_code == 200
            answered.append(time.monotonic() - began)
            time.sleep(0.2)
        for sock in drippers:
            sock.close()
        assert len(closed) == len(drippers), f"{len(drippers) - len(closed)} dripping connections stayed open"
        assert max(closed.values()) < 2 + 1.5, sorted(closed.values())
        assert max(answered) < 1.0
