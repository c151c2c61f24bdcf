"""Real receivers on loopback: an SMTP server (aiosmtpd) and an HTTP webhook receiver that can fail."""

from __future__ import annotations

import email
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Collect:
    def __init__(self) -> None:
        self.messages: list[tuple[float, Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((time.monotonic(), email.message_from_bytes(envelope.content)))
        return "250 OK"


class SmtpSink:
    """aiosmtpd on 127.0.0.1; `messages` are the parsed messages it accepted."""

    def __init__(self) -> None:
        self.handler = _Collect()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[Message]:
        return [m for _, m in self.handler.messages]

    def arrivals(self) -> list[tuple[float, Message]]:
        return list(self.handler.messages)

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@dataclass
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HookReceiver:
    """A loopback HTTP server recording every POST; answers `fail_first` times with 500, then 204."""

    fail_first: int = 0
    status_after: int = 204
    redirect_to: str | None = None
    received: list[Received] = field(default_factory=list)
    port: int = 0

    def __enter__(self) -> HookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                receiver.received.append(
                    Received(
                        time.monotonic(), self.path, {k.lower(): v for k, v in self.headers.items()}, body
                    )
                )
                if receiver.redirect_to:
                    self.send_response(307)
                    self.send_header("Location", receiver.redirect_to)
                    self.end_headers()
                    return
                failing = len(receiver.received) <= receiver.fail_first
                self.send_response(500 if failing else receiver.status_after)
                payload = b"x" * 100_000
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class DripReceiver:
    """A loopback receiver that reads a request, then answers one byte every `every` seconds, for ever: a
    per-read timeout never fires on it. `closed` holds, per connection, how long the caller stayed."""

    every: float = 4.0
    accepted: list[float] = field(default_factory=list)
    closed: list[float] = field(default_factory=list)
    port: int = 0

    def __enter__(self) -> DripReceiver:
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        start = time.monotonic()
        self.accepted.append(start)
        answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        with conn:
            try:
                request = b""
                while b"\r\n\r\n" not in request:  # the whole request: headers, then the body
                    request += conn.recv(65536) or b"\r\n\r\n"
                head, _, body = request.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(v)
                        for k, _, v in (x.partition(b":") for x in head.split(b"\r\n"))
                        if k.strip().lower() == b"content-length"
                    ),
                    0,
                )
                while len(body) < length:
                    body += conn.recv(65536) or b"x" * length
                for byte in answer:
                    # wait `every` seconds, noticing at once when the caller hangs up
                    readable, _, _ = select.select([conn], [], [], self.every)
                    if self._stop.is_set() or (readable and conn.recv(1) == b""):
                        break
                    conn.sendall(bytes([byte]))
            except OSError:
                pass
        self.closed.append(time.monotonic() - start)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()
