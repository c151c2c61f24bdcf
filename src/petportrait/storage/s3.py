"""S3BlobStore: blobs as objects in an S3-compatible bucket (AWS, MinIO, Ceph, moto...).

A key maps to the object `prefix + key`. Writes go through boto3's managed transfer, which switches to a
multipart upload for streams over MULTIPART_THRESHOLD and aborts the upload if the stream fails, so a
reader sees the old object or the new one, never a part. Lifecycle rules on the bucket are only a
backstop: the sweeper deletes expired blobs itself.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from petportrait.storage.base import (
    BlobError,
    BlobInfo,
    BlobNotFound,
    InvalidKey,
    validate_key,
    validate_prefix,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MULTIPART_THRESHOLD = 8 * 1024 * 1024
MULTIPART_CHUNK_SIZE = 8 * 1024 * 1024
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_BUCKET_CODES = frozenset({"404", "NoSuchBucket", "NotFound"})
_DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes
_LIST_THREADS = 8
_VERSIONING_TTL = 60.0


@dataclass(frozen=True)
class ObjectVersion:
    """One version (or delete marker) of an object in a versioned bucket."""

    key: str
    version_id: str
    is_latest: bool
    is_delete_marker: bool
    size: int
    modified_at: datetime


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _CountingReader(io.RawIOBase):
    """Wraps a stream to count the bytes that boto3 reads from it (it is read once, front to back)."""

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__()
        self._stream = stream
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self._stream.read(-1 if size is None else size)
        self.count += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


class S3BlobStore:
    """A BlobStore in an S3 bucket, optionally under a key prefix."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        prefix: str = "",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        client: S3Client | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 bucket name is required")
        if prefix:
            validate_key(prefix.strip("/"))
            prefix = prefix.strip("/") + "/"
        self.bucket = bucket
        self.prefix = prefix
        self.region = region
        if client is None:
            config = Config(
                region_name=region,
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
                # S3-compatible servers on a custom endpoint rarely support virtual-hosted buckets.
                s3={"addressing_style": "path" if endpoint_url else "auto"},
            )
            client = boto3.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                config=config,
            )
        self.client: S3Client = client
        self._versioning: tuple[str, float] | None = None
        self._transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_CHUNK_SIZE,
            max_concurrency=4,
        )

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _object_key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    # -- writing -----------------------------------------------------------------------------------

    def put(self, key: str, stream: BinaryIO) -> int:
        """Upload the whole stream to key (multipart above 8 MiB); returns the number of bytes written."""
        object_key = self._object_key(key)
        reader = _CountingReader(stream)
        self.client.upload_fileobj(cast(BinaryIO, reader), self.bucket, object_key, Config=self._transfer)
        return reader.count

    def put_bytes(self, key: str, data: bytes) -> int:
        """Upload bytes to key."""
        object_key = self._object_key(key)
        self.client.put_object(Bucket=self.bucket, Key=object_key, Body=data)
        return len(data)

    # -- reading -----------------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        """The streaming body of the object; the caller closes it."""
        object_key = self._object_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=object_key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                raise BlobNotFound(key) from exc
            raise
        return cast(BinaryIO, response["Body"])

    def get_bytes(self, key: str) -> bytes:
        """The whole object."""
        body = self.open(key)
        try:
            return body.read()
        finally:
            body.close()

    def _head(self, key: str) -> dict[str, Any] | None:
        object_key = self._object_key(key)
        try:
            return cast(dict[str, Any], self.client.head_object(Bucket=self.bucket, Key=object_key))
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                return None
            raise

    def exists(self, key: str) -> bool:
        """Whether an object exists at key."""
        return self._head(key) is not None

    def size(self, key: str) -> int:
        """The size of the object in bytes."""
        head = self._head(key)
        if head is None:
            raise BlobNotFound(key)
        return int(head["ContentLength"])

    # -- deleting ----------------------------------------------------------------------------------
    #
    # On a bucket with versioning on (or once on, now suspended), deleting a key only adds a delete marker
    # and the bytes stay readable as an older version. So when the bucket is or was versioned, a delete
    # lists the key's versions (delete markers included) and deletes each one by its VersionId.

    def versioning(self) -> str:
        """The bucket's versioning status: 'Enabled', 'Suspended', or '' (never turned on); cached 60 s."""
        now = time.monotonic()
        if self._versioning is None or now - self._versioning[1] > _VERSIONING_TTL:
            status = str(self.client.get_bucket_versioning(Bucket=self.bucket).get("Status", ""))
            self._versioning = (status, now)
        return self._versioning[0]

    def versions(self, prefix: str = "") -> Iterator[ObjectVersion]:
        """Every version and delete marker under prefix (in key order, newest first per key)."""
        validate_prefix(prefix)
        paginator = self.client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            entries: list[ObjectVersion] = []
            for item in page.get("Versions", []):
                entries.append(
                    ObjectVersion(
                        key=item["Key"][len(self.prefix) :],
                        version_id=str(item.get("VersionId", "null")),
                        is_latest=bool(item.get("IsLatest")),
                        is_delete_marker=False,
                        size=int(item.get("Size", 0)),
                        modified_at=item["LastModified"],
                    )
                )
            for marker in page.get("DeleteMarkers", []):
                entries.append(
                    ObjectVersion(
                        key=marker["Key"][len(self.prefix) :],
                        version_id=str(marker.get("VersionId", "null")),
                        is_latest=bool(marker.get("IsLatest")),
                        is_delete_marker=True,
                        size=0,
                        modified_at=marker["LastModified"],
                    )
                )
            entries.sort(key=lambda v: (v.key.encode(), not v.is_latest))
            yield from entries

    def _key_versions(self, object_key: str) -> list[dict[str, str]]:
        """{Key, VersionId} of every version and delete marker of exactly this object key."""
        found: list[dict[str, str]] = []
        paginator = self.client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=object_key):
            for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                if item["Key"] == object_key:  # the prefix also matches longer keys
                    found.append({"Key": object_key, "VersionId": str(item.get("VersionId", "null"))})
        return found

    def delete(self, key: str) -> bool:
        """Delete the object (every version of it on a versioned bucket); returns whether there was one.

        Deleting a missing key is not an error."""
        existed = self._head(key) is not None
        failures = self.delete_many([key])
        if failures:
            raise BlobError(f"could not delete {key!r}: {failures[key]}")
        return existed

    def delete_versions(self, key: str, *, keep_current: bool) -> int:
        """Delete the key's versions (all, or all but the current one); returns how many were deleted."""
        object_key = self._object_key(key)
        doomed = self._key_versions(object_key)
        if keep_current:
            current = self.client.head_object(Bucket=self.bucket, Key=object_key).get("VersionId")
            doomed = [v for v in doomed if v["VersionId"] != str(current or "null")]
        failures = self._delete_objects(doomed)
        if failures:
            raise BlobError(f"could not delete versions of {key!r}: {failures}")
        return len(doomed)

    def delete_many(self, keys: Sequence[str]) -> dict[str, str]:
        """Delete every key (every version of each on a versioned bucket) with DeleteObjects, a thousand a
        request; returns {key: error} (BulkDelete)."""
        failures: dict[str, str] = {}
        object_keys: list[str] = []
        for key in keys:
            try:
                object_keys.append(self._object_key(key))
            except InvalidKey as exc:
                failures[key] = f"{type(exc).__name__}: {exc}"
        if not object_keys:
            return failures
        objects: list[dict[str, str]]
        if self.versioning():
            with ThreadPoolExecutor(_LIST_THREADS) as pool:
                listed = list(pool.map(self._key_versions, object_keys))
            objects = [version for versions in listed for version in versions]
        else:
            objects = [{"Key": object_key} for object_key in object_keys]
        failures.update(self._delete_objects(objects))
        return failures

    def _delete_objects(self, objects: Sequence[dict[str, str]]) -> dict[str, str]:
        failures: dict[str, str] = {}
        for start in range(0, len(objects), _DELETE_BATCH):
            batch = list(objects[start : start + _DELETE_BATCH])
            response = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": batch, "Quiet": True},  # type: ignore[typeddict-item]
            )
            for error in response.get("Errors", []):
                key = str(error.get("Key", ""))[len(self.prefix) :]
                failures[key] = f"{error.get('Code', 'Error')}: {error.get('Message', '')}"
        return failures

    # -- listing -----------------------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every object whose key starts with prefix, in key order (S3 lists in UTF-8 byte order)."""
        validate_prefix(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix) :]
                try:
                    validate_key(key)
                except InvalidKey:
                    continue  # an object some other tool wrote, with a name no blob key can have
                yield BlobInfo(key=key, size=int(item["Size"]), modified_at=item["LastModified"])

    # -- bucket and health -------------------------------------------------------------------------

    def check(self) -> None:
        """Raise if the bucket cannot be reached (HEAD bucket)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            raise BlobError(f"S3 bucket {self.bucket!r} is not reachable: {_error_code(exc)}") from exc

    def ensure_bucket(self) -> bool:
        """Create the bucket if it does not exist; returns whether it was created."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return False
        except ClientError as exc:
            if _error_code(exc) not in _NO_BUCKET_CODES:
                raise
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(**kwargs)
        except ClientError as exc:
            if _error_code(exc) == "BucketAlreadyOwnedByYou":
                return False  # another process created it between our HEAD and CREATE
            raise
        return True
