"""A server that repeats a page's cursor (a real loopback HTTP server): the client stops with a clear error
instead of looping for ever."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from petportrait.client import Client, PetportraitError


@pytest.fixture
def looping_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            item = {"id": "p1", "name": "Rex", "species": "dog", "created_at": "2026-12-06T00:00:00+00:00"}
            body = json.dumps({"items": [item], "next_cursor": "always-the-same"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_client_stops_on_a_repeated_cursor(looping_server: str) -> None:
    client = Client(looping_server, token="pp_x")
    seen = []
    with pytest.raises(PetportraitError) as failed:
        for pet in client.pets():
            seen.append(pet)
            assert len(seen) < 10, "the client kept following the same cursor"
    assert failed.value.code == "repeated_cursor" and len(seen) == 2
