"""Fixtures of the blob store contract suite: one `store` per backend, S3 spoken to over HTTP.

The S3 leg talks to moto's server, started once per session on a free loopback port, through boto3
with an endpoint_url, so requests, signing, multipart uploads and error codes go over the wire.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from petportrait.storage.base import BlobStore
from petportrait.storage.crypto import EncryptedBlobStore, MemoryKeyStore
from petportrait.storage.local import LocalBlobStore
from petportrait.storage.s3 import S3BlobStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
MiB = 1024 * 1024


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The URL of a moto S3 server on 127.0.0.1, on a port the kernel picked."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_ambient_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the machine's AWS profile, config and proxy settings out of the tests."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


@pytest.fixture
def s3_client(moto_endpoint: str) -> S3Client:
    """A raw boto3 client on the moto server, to look behind a store's back."""
    return boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(s3={"addressing_style": "path"}),
    )


def make_s3_store(endpoint: str, *, prefix: str = "", region: str = "us-east-1") -> S3BlobStore:
    """An S3BlobStore on a new, empty bucket of the moto server."""
    store = S3BlobStore(
        f"test-{uuid.uuid4().hex[:20]}",
        endpoint_url=endpoint,
        region=region,
        prefix=prefix,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )
    assert store.ensure_bucket() is True
    return store


@pytest.fixture(params=["local", "s3", "s3-prefixed", "encrypted-local", "encrypted-s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """Each backend in turn, plain and sealed (EncryptedBlobStore); every test gets an empty store."""
    backend = request.param.removeprefix("encrypted-")
    inner: BlobStore
    if backend == "local":
        inner = LocalBlobStore(tmp_path / "blobs")
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        inner = make_s3_store(endpoint, prefix="tenant/one" if backend == "s3-prefixed" else "")
    if request.param.startswith("encrypted-"):
        return EncryptedBlobStore(inner, MemoryKeyStore(), os.urandom(32), allow_plaintext=False)
    return inner


class PatternStream:
    """A non-seekable stream of `total` seeded random bytes that records how it is read.

    If fail_after is set, a read that would pass that many bytes raises StreamBroke instead.
    """

    def __init__(self, total: int, *, seed: int = 7, fail_after: int | None = None) -> None:
        self.data = random.Random(seed).randbytes(total)
        self.position = 0
        self.fail_after = fail_after
        self.read_sizes: list[int] = []

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.read_sizes.append(size)
        end = len(self.data) if size is None or size < 0 else min(len(self.data), self.position + size)
        if self.fail_after is not None and end > self.fail_after:
            raise StreamBroke(f"the client went away after {self.position} bytes")
        chunk = self.data[self.position : end]
        self.position = end
        return chunk


class StreamBroke(OSError):
    """What a PatternStream raises when told to fail midway."""


@pytest.fixture
def pattern_stream() -> type[PatternStream]:
    """The PatternStream class, for tests that stream big or failing uploads."""
    return PatternStream


@pytest.fixture
def new_s3_store(moto_endpoint: str) -> Callable[..., S3BlobStore]:
    """Make an S3BlobStore on a new bucket of the moto server: new_s3_store(prefix=..., region=...)."""

    def make(*, prefix: str = "", region: str = "us-east-1") -> S3BlobStore:
        return make_s3_store(moto_endpoint, prefix=prefix, region=region)

    return make
