"""Crypto-shredding: every blob sealed under a data key of its own, destroyed with its item.

Real components throughout: the app over HTTP (TestClient), a real SQLite database, a real folder and
moto's S3 server (with versioning on) spoken to by boto3 over HTTP. The attacker keeps raw copies of the
stored bytes (read from the folder or the bucket behind the service's back) and tries to read them back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from petportrait.cli import app
from petportrait.lifecycle import sweeper
from petportrait.lifecycle.check import run_check
from petportrait.lifecycle.encrypt import encrypt_existing
from petportrait.registry import Services
from petportrait.retention.keys import DatabaseKeyStore, encrypted_store, kek_path, load_kek
from petportrait.retention.models import DataKey, Tombstone
from petportrait.services import build_services
from petportrait.settings import get_settings
from petportrait.storage.base import BlobNotFound
from petportrait.storage.crypto import (
    BlobDecryptError,
    DataKeyMissing,
    EncryptedBlobStore,
    decrypt,
    is_encrypted,
    unwrap_key,
)
from petportrait.storage.local import LocalBlobStore
from petportrait.storage.s3 import S3BlobStore
from petportrait.web.app import create_app
from tests.conftest import make_settings, pet_photos, sign_up
from tests.lifecycle.helpers import DAY
from tests.lifecycle.test_rights_api import new_pet, upload

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

NewStore = Callable[..., S3BlobStore]


def sealed(services: Services, inner: object) -> Services:
    """The test's services with their blobs sealed under the data folder's KEK, keys in the database."""
    blobs = encrypted_store(services.settings, services.session_factory, inner)  # type: ignore[arg-type]
    return dataclasses.replace(services, blobs=blobs)


@pytest.fixture
def local_sealed(services: Services) -> Services:
    return sealed(services, LocalBlobStore(services.settings.data_dir / "sealed-blobs"))


@pytest.fixture
def sealed_client(local_sealed: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services=local_sealed), raise_server_exceptions=False) as client:
        yield client


def key_rows(services: Services) -> set[str]:
    with services.session_factory() as session:
        return set(session.scalars(select(DataKey.storage_key)))


def raw_path(store: EncryptedBlobStore, key: str) -> Path:
    inner = store.inner
    assert isinstance(inner, LocalBlobStore)
    return inner.root.joinpath(*key.split("/"))


def test_a_photo_is_stored_sealed_and_served_in_the_clear(
    sealed_client: TestClient, local_sealed: Services, now: datetime
) -> None:
    alice = sign_up(sealed_client, "alice@example.com")
    pet_id = new_pet(sealed_client, alice)
    photo = upload(sealed_client, alice, pet_id, "dog", 0)
    blobs = local_sealed.blobs
    assert isinstance(blobs, EncryptedBlobStore)
    (key,) = [info.key for info in blobs.list("photos/")]
    raw = raw_path(blobs, key).read_bytes()
    served = sealed_client.get(photo["content_url"], headers=alice)
    assert served.status_code == 200
    assert served.content[:2] == b"\xff\xd8" and is_encrypted(raw) and b"JFIF" not in raw
    assert hashlib.sha256(served.content).hexdigest() == photo["sha256"]
    assert served.content not in raw
    assert key_rows(local_sealed) == {key}
    with local_sealed.session_factory() as session:
        assert (
            session.get(DataKey, key).owner_id == sealed_client.get("/api/v1/me", headers=alice).json()["id"]
        )
    assert oct(kek_path(local_sealed.settings).stat().st_mode & 0o777) == "0o600"


def test_a_copy_kept_aside_cannot_be_read_after_the_photo_is_deleted(
    sealed_client: TestClient, local_sealed: Services, tmp_path: Path, now: datetime
) -> None:
    alice = sign_up(sealed_client, "alice@example.com")
    pet_id = new_pet(sealed_client, alice)
    photo = upload(sealed_client, alice, pet_id, "cat", 0)
    blobs = local_sealed.blobs
    assert isinstance(blobs, EncryptedBlobStore)
    (key,) = [info.key for info in blobs.list("photos/")]
    aside = tmp_path / "stolen.bin"
    shutil.copyfile(raw_path(blobs, key), aside)  # a backup, a replica, a crashed worker's leftover...
    with local_sealed.session_factory() as session:
        wrapped = session.get(DataKey, key).wrapped_key  # what an earlier database read could have seen
    before = decrypt(
        aside.read_bytes(),
        data_key=unwrap_key(load_kek(local_sealed.settings), wrapped, key),
        storage_key=key,
    )
    assert hashlib.sha256(before).hexdigest() == photo["sha256"]

    assert sealed_client.delete(f"/api/v1/photos/{photo['id']}", headers=alice).status_code == 204
    assert key_rows(local_sealed) == set()
    assert not blobs.exists(key)
    # The copy comes back (restored from a blob backup): the service cannot open it; nobody can.
    raw_path(blobs, key).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(aside, raw_path(blobs, key))
    with pytest.raises(DataKeyMissing):
        blobs.get_bytes(key)
    with pytest.raises(BlobNotFound):
        blobs.open(key)
    assert blobs.inspect(key) == "no_key"
    report = run_check(local_sealed.session_factory(), blobs, settings=local_sealed.settings)
    assert {f.problem for f in report.findings} >= {"tombstone_blob", "no_key"}


def test_the_sweeper_destroys_the_keys_of_what_it_deletes_in_the_tombstones_transaction(
    sealed_client: TestClient, local_sealed: Services, frozen_clock: object, now: datetime
) -> None:
    alice = sign_up(sealed_client, "alice@example.com")
    pet_id = new_pet(sealed_client, alice)
    upload(sealed_client, alice, pet_id, "dog2", 0)
    upload(sealed_client, alice, pet_id, "dog2", 1)
    assert len(key_rows(local_sealed)) == 2

    def crash(stage: str) -> None:
        if stage == "before_commit":
            raise RuntimeError("killed before the commit")

    later = now + 31 * DAY
    with pytest.raises(RuntimeError, match="killed"):
        sweeper.sweep_once(
            local_sealed.session_factory,
            local_sealed.blobs,
            now=later,
            settings=local_sealed.settings,
            fault=crash,
        )
    assert len(key_rows(local_sealed)) == 2  # rolled back with the tombstones: rows still due, keys kept
    report = sweeper.sweep_once(
        local_sealed.session_factory, local_sealed.blobs, now=later, settings=local_sealed.settings
    )
    assert report.purged == {"photo": 2} and not report.errors
    assert key_rows(local_sealed) == set()
    with local_sealed.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Tombstone)) == 2


def test_tampering_is_detected(local_sealed: Services) -> None:
    blobs = local_sealed.blobs
    assert isinstance(blobs, EncryptedBlobStore)
    big = bytes(range(256)) * 4096  # 1 MiB: four segments
    blobs.put_bytes("renders/u/j/a1/one.png", big)
    blobs.put_bytes("renders/u/j/a1/two.png", b"another render")
    one, two = raw_path(blobs, "renders/u/j/a1/one.png"), raw_path(blobs, "renders/u/j/a1/two.png")
    original = one.read_bytes()

    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 1
    one.write_bytes(bytes(flipped))
    with pytest.raises(BlobDecryptError):
        blobs.get_bytes("renders/u/j/a1/one.png")
    with pytest.raises(BlobDecryptError), blobs.open("renders/u/j/a1/one.png") as stream:
        stream.read()
    assert blobs.inspect("renders/u/j/a1/one.png", deep=True) == "undecryptable"

    for cut in (original[: len(original) - 262160], original[:-1], original[:20]):  # drop a segment, a byte
        one.write_bytes(cut)
        with pytest.raises(BlobDecryptError):
            blobs.get_bytes("renders/u/j/a1/one.png")
    one.write_bytes(two.read_bytes())  # another blob's ciphertext moved under this key
    with pytest.raises(BlobDecryptError):
        blobs.get_bytes("renders/u/j/a1/one.png")
    one.write_bytes(b"\xff\xd8 plaintext slipped in where a sealed blob was")  # downgrade to plaintext
    with pytest.raises(BlobDecryptError, match="plaintext"):
        blobs.get_bytes("renders/u/j/a1/one.png")
    one.write_bytes(original)
    assert blobs.get_bytes("renders/u/j/a1/one.png") == big

    other_kek = EncryptedBlobStore(blobs.inner, blobs.keys, b"k" * 32)  # keys wrapped under another KEK
    with pytest.raises(BlobDecryptError, match="another key-encryption key"):
        other_kek.get_bytes("renders/u/j/a1/one.png")
    with local_sealed.session_factory() as session:  # a wrapped key moved to another blob's row
        rows = {row.storage_key: row for row in session.scalars(select(DataKey))}
        rows["renders/u/j/a1/two.png"].wrapped_key = rows["renders/u/j/a1/one.png"].wrapped_key
        session.commit()
    with pytest.raises(BlobDecryptError, match="does not unwrap"):
        blobs.get_bytes("renders/u/j/a1/two.png")


def test_a_deleted_photo_has_no_readable_version_left_on_a_versioned_bucket(
    services: Services, new_s3_store: NewStore, s3_client: S3Client, tmp_path: Path, now: datetime
) -> None:
    store = new_s3_store()
    s3_client.put_bucket_versioning(Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"})
    on_s3 = sealed(services, store)
    with TestClient(create_app(services=on_s3), raise_server_exceptions=False) as client:
        alice = sign_up(client, "alice@example.com")
        pet_id = new_pet(client, alice)
        photo = upload(client, alice, pet_id, "dog3", 0)
        kept = upload(client, alice, pet_id, "dog3", 1)
        key = next(info.key for info in store.list("photos/") if photo["id"] in info.key)
        on_s3.blobs.put_bytes(key, client.get(photo["content_url"], headers=alice).content)  # a 2nd version
        stolen = s3_client.get_object(Bucket=store.bucket, Key=key)["Body"].read()
        assert len(s3_client.list_object_versions(Bucket=store.bucket, Prefix=key)["Versions"]) == 2

        assert client.delete(f"/api/v1/photos/{photo['id']}", headers=alice).status_code == 204
        listing = s3_client.list_object_versions(Bucket=store.bucket, Prefix=key)
        assert not listing.get("Versions") and not listing.get("DeleteMarkers")
        assert client.get(kept["content_url"], headers=alice).status_code == 200
    s3_client.put_object(Bucket=store.bucket, Key=key, Body=stolen)  # restored from a replica
    with pytest.raises(DataKeyMissing):
        on_s3.blobs.get_bytes(key)

    # A version left behind (another tool deleted the key without a VersionId) is a finding.
    s3_client.delete_object(Bucket=store.bucket, Key=key)
    with on_s3.session_factory() as session:
        report = run_check(session, on_s3.blobs, settings=on_s3.settings)
    old = [f for f in report.findings if f.problem == "old_version"]
    assert [(f.storage_key, f.item_id) for f in old] == [(key, photo["id"])]
    assert on_s3.blobs.delete(key) is False  # no current object, but every version goes
    assert not s3_client.list_object_versions(Bucket=store.bucket, Prefix=key).get("Versions")


def test_versioning_without_a_noncurrent_rule_is_warned_about_at_start_up(
    new_s3_store: NewStore,
    s3_client: S3Client,
    moto_endpoint: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from petportrait.lifecycle import s3rules
    from tests.storage.conftest import ACCESS_KEY_ID, SECRET_ACCESS_KEY

    store = new_s3_store()
    settings = make_settings(
        tmp_path,
        storage={
            "backend": "s3",
            "s3_bucket": store.bucket,
            "s3_endpoint_url": moto_endpoint,
            "s3_access_key_id": ACCESS_KEY_ID,
            "s3_secret_access_key": SECRET_ACCESS_KEY,
        },
    )
    assert s3rules.warn_versioning(store) is None  # never versioned: nothing to say
    s3_client.put_bucket_versioning(Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"})
    with caplog.at_level("WARNING"):
        built = build_services(settings, migrate=True)
    built.engine.dispose()
    assert any("no lifecycle rule expires noncurrent versions" in r.getMessage() for r in caplog.records)
    assert isinstance(built.blobs, EncryptedBlobStore)
    s3rules.apply_rules(store, settings)
    fresh = S3BlobStore(
        store.bucket,
        endpoint_url=moto_endpoint,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )
    assert s3rules.warn_versioning(fresh) is None


def test_encrypt_existing_seals_old_blobs_once_and_check_reports_what_does_not_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "var"
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "PETPORTRAIT__ENVIRONMENT": "development",
        "PETPORTRAIT__DATA_DIR": str(data_dir),
        "PETPORTRAIT__QUEUE__EMBEDDED_CONSUMER": "false",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        services = build_services(get_settings(), migrate=True)
        plain = LocalBlobStore(services.settings.blob_root)
        photos = {
            f"photos/{'a' * 32}/{'b' * 32}/{i}.jpg": p.read_bytes()
            for i, p in enumerate(pet_photos("cat")[:3])
        }
        for key, data in photos.items():
            plain.put_bytes(key, data)
        runner = CliRunner()
        findings = runner.invoke(app, ["retention", "check", "--json"])
        assert findings.exit_code == 1 and findings.output.count('"plaintext_blob"') >= 3, findings.output

        first = runner.invoke(app, ["retention", "encrypt-existing"])
        assert first.exit_code == 0, first.output
        assert "scanned 3 blobs: encrypted 3, already encrypted 0" in first.output
        again = runner.invoke(app, ["retention", "encrypt-existing"])
        assert "scanned 3 blobs: encrypted 0, already encrypted 3" in again.output
        assert all(is_encrypted(plain.get_bytes(key)) for key in photos)
        assert all(services.blobs.get_bytes(key) == data for key, data in photos.items())
        ok = runner.invoke(app, ["retention", "check", "--deep"])
        assert ok.exit_code == 0, ok.output

        keys = list(photos)
        DatabaseKeyStore(services.session_factory).destroy([keys[0]])
        broken = bytearray(plain.get_bytes(keys[1]))
        broken[100] ^= 0x80  # in the first segment, which a plain check decrypts
        plain.put_bytes(keys[1], bytes(broken))
        plain.put_bytes(keys[2].replace(".jpg", "-new.jpg"), b"\xff\xd8 never sealed")
        bad = runner.invoke(app, ["retention", "check"])
        assert bad.exit_code == 1
        assert "no_key" in bad.output and "undecryptable" in bad.output and "plaintext_blob" in bad.output
        services.engine.dispose()
    finally:
        get_settings.cache_clear()


def test_encrypt_existing_resumes_and_leaves_no_plaintext_version(
    services: Services, new_s3_store: NewStore, s3_client: S3Client
) -> None:
    store = new_s3_store()
    s3_client.put_bucket_versioning(Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"})
    for i in range(4):
        store.put_bytes(f"renders/{'c' * 32}/j/a1/{i}.png", b"\x89PNG plaintext render %d" % i)
    on_s3 = sealed(services, store)
    assert isinstance(on_s3.blobs, EncryptedBlobStore)
    half = encrypt_existing(on_s3.blobs, services.session_factory, prefix=f"renders/{'c' * 32}/j/a1/0")
    assert (half.encrypted, half.already) == (1, 0)
    rest = encrypt_existing(on_s3.blobs, services.session_factory)
    assert (rest.scanned, rest.encrypted, rest.already, rest.errors) == (4, 3, 1, {})
    versions = s3_client.list_object_versions(Bucket=store.bucket)["Versions"]
    assert len(versions) == 4  # one version a key: the plaintext ones are gone
    for version in versions:
        body = s3_client.get_object(Bucket=store.bucket, Key=version["Key"])["Body"].read()
        assert is_encrypted(body) and b"plaintext render" not in body
