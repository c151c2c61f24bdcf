"""A loopback TCP proxy a test can cut, hang and restore, standing between the service and a dependency
(PostgreSQL, Redis, moto's S3 server) as a network fault would."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit


class TcpProxy:
    """Forwards 127.0.0.1:<port> to `target`. `cut()` closes every connection and refuses new ones
    (connection reset); `hang()` keeps connections open but forwards nothing; `restore()` forwards again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode = "pass"
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = int(self._listener.getsockname()[1])
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True).start()

    @classmethod
    def in_front_of(cls, url: str) -> tuple[TcpProxy, str]:
        """A proxy to the host and port of `url`, and the same URL pointing at the proxy."""
        parts = urlsplit(url)
        assert parts.hostname and parts.port, url
        proxy = cls(parts.hostname, parts.port)
        netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
        return proxy, urlunsplit(parts._replace(netloc=netloc))

    def cut(self) -> None:
        self.mode = "cut"
        with self._lock:
            pairs, self._pairs = set(self._pairs), set()
        for pair in pairs:
            for sock in pair:
                _close(sock)

    def hang(self) -> None:
        self.mode = "hang"

    def restore(self) -> None:
        self.mode = "pass"

    def close(self) -> None:
        self._closed.set()
        self.cut()
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "cut":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                _close(client)  # a reset, as from a host that is down
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _close(client)
            return
        pair = (client, upstream)
        with self._lock:
            self._pairs.add(pair)
        try:
            for chunk_from, chunk_to in self._chunks(client, upstream):
                chunk_to.sendall(chunk_from)
        except OSError:
            pass
        finally:
            with self._lock:
                self._pairs.discard(pair)
            _close(client)
            _close(upstream)

    def _chunks(self, a: socket.socket, b: socket.socket) -> Iterator[tuple[bytes, socket.socket]]:
        while not self._closed.is_set():
            readable, _, _ = select.select([a, b], [], [], 0.1)
            if self.mode == "hang":
                continue  # the bytes stay unread: the peer waits, as behind a black hole
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                yield data, (b if sock is a else a)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
