"""What only the S3 store must prove: multipart for big streams, aborted uploads, prefixes, buckets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from petportrait.settings import Settings, StorageSettings
from petportrait.storage import create_blob_store
from petportrait.storage.base import BlobError
from petportrait.storage.s3 import S3BlobStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from conftest import PatternStream

MiB = 1024 * 1024
NewStore = Callable[..., S3BlobStore]


def test_a_big_stream_goes_up_as_a_multipart_upload(
    new_s3_store: NewStore, s3_client: S3Client, pattern_stream: type[PatternStream]
) -> None:
    store = new_s3_store()
    stream = pattern_stream(17 * MiB)
    assert store.put("models/m/w.bin", stream) == 17 * MiB  # type: ignore[arg-type]
    etag = s3_client.head_object(Bucket=store.bucket, Key="models/m/w.bin")["ETag"]
    assert etag.strip('"').endswith("-3")  # three parts of at most 8 MiB
    assert max(stream.read_sizes) <= 8 * MiB


def test_a_small_stream_goes_up_in_one_request(new_s3_store: NewStore, s3_client: S3Client) -> None:
    store = new_s3_store()
    store.put_bytes("small", b"x" * 1000)
    etag = s3_client.head_object(Bucket=store.bucket, Key="small")["ETag"]
    assert "-" not in etag


def test_a_multipart_upload_whose_stream_fails_is_aborted(
    new_s3_store: NewStore, s3_client: S3Client, pattern_stream: type[PatternStream]
) -> None:
    store = new_s3_store()
    store.put_bytes("models/m/w.bin", b"old weights")
    with pytest.raises(OSError, match="went away"):
        store.put("models/m/w.bin", pattern_stream(30 * MiB, fail_after=20 * MiB))  # type: ignore[arg-type]
    assert s3_client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
    assert store.get_bytes("models/m/w.bin") == b"old weights"


def test_a_prefix_keeps_the_store_inside_its_part_of_the_bucket(
    new_s3_store: NewStore, s3_client: S3Client
) -> None:
    store = new_s3_store(prefix="/tenant/one/")
    assert store.prefix == "tenant/one/"
    store.put_bytes("photos/a.jpg", b"a")
    s3_client.put_object(Bucket=store.bucket, Key="tenant/other.jpg", Body=b"neighbour")
    s3_client.put_object(Bucket=store.bucket, Key="tenant/one-more/x", Body=b"neighbour")
    s3_client.put_object(Bucket=store.bucket, Key="tenant/one/odd//name", Body=b"foreign")
    s3_client.put_object(Bucket=store.bucket, Key="photos/a.jpg", Body=b"outside")

    objects = [o["Key"] for o in s3_client.list_objects_v2(Bucket=store.bucket)["Contents"]]
    assert "tenant/one/photos/a.jpg" in objects
    assert [info.key for info in store.list()] == ["photos/a.jpg"]  # no neighbours, no foreign names
    assert store.get_bytes("photos/a.jpg") == b"a"
    assert store.delete("photos/a.jpg") is True
    assert s3_client.get_object(Bucket=store.bucket, Key="photos/a.jpg")["Body"].read() == b"outside"


def test_an_unsafe_prefix_is_refused() -> None:
    with pytest.raises(ValueError):
        S3BlobStore("bucket", prefix="../up", endpoint_url="http://127.0.0.1:9")


def test_list_pages_past_a_thousand_keys(new_s3_store: NewStore, s3_client: S3Client) -> None:
    store = new_s3_store()
    keys = [f"k/{n:05d}" for n in range(1003)]  # a page holds 1000
    for key in keys:
        s3_client.put_object(Bucket=store.bucket, Key=key, Body=b"")
    assert [info.key for info in store.list("k/")] == keys


def test_ensure_bucket_creates_it_once(moto_endpoint: str) -> None:
    for region in ("us-east-1", "eu-west-1"):
        store = S3BlobStore(
            f"ensure-{region}",
            endpoint_url=moto_endpoint,
            region=region,
            access_key_id="testing",
            secret_access_key="testing",
        )
        with pytest.raises(BlobError):
            store.check()
        assert store.ensure_bucket() is True
        assert store.ensure_bucket() is False
        store.check()
        store.put_bytes("k", b"v")
        assert store.get_bytes("k") == b"v"


def test_create_blob_store_builds_an_s3_store_from_settings(moto_endpoint: str, tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path,
        storage=StorageSettings(
            backend="s3",
            s3_bucket="from-settings",
            s3_endpoint_url=moto_endpoint,
            s3_prefix="pp",
            s3_access_key_id="testing",
            s3_secret_access_key="testing",
        ),
    )
    store = create_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == ("from-settings", "pp/")
    store.ensure_bucket()
    store.put_bytes("photos/x.jpg", b"x")
    assert [info.key for info in store.list()] == ["photos/x.jpg"]
