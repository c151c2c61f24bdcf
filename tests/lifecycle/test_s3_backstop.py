"""The S3 backstop rules as the bucket stores them (moto's server over HTTP), and the sweeper on S3."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from petportrait.cli import app
from petportrait.lifecycle import s3rules, sweeper
from petportrait.retention.models import Tombstone
from petportrait.settings import Settings, get_settings
from petportrait.storage.s3 import S3BlobStore
from petportrait.web.app import Services
from tests.lifecycle.helpers import DAY, add_household, settings_with
from tests.storage.conftest import ACCESS_KEY_ID, SECRET_ACCESS_KEY

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

NewStore = Callable[..., S3BlobStore]


def stored_rules(client: S3Client, bucket: str) -> dict[str, dict[str, Any]]:
    rules = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    return {str(rule["ID"]): dict(rule) for rule in rules}


def prefix_of(rule: dict[str, Any]) -> str:
    return str(rule.get("Filter", {}).get("Prefix", rule.get("Prefix", "")))


def test_rules_expire_each_prefix_a_day_after_the_policy(new_s3_store: NewStore, s3_client: S3Client) -> None:
    store = new_s3_store()
    s3rules.apply_rules(store, Settings())
    rules = stored_rules(s3_client, store.bucket)
    expiring = {
        prefix_of(r): r["Expiration"]["Days"] for r in rules.values() if "Days" in r.get("Expiration", {})
    }
    assert expiring == {"photos/": 31, "models/": 8, "renders/": 31}
    noncurrent = rules["petportrait-noncurrent-versions"]
    assert prefix_of(noncurrent) == "" and noncurrent["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1
    assert noncurrent["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    assert all(r["Status"] == "Enabled" for r in rules.values())
    abort = rules["petportrait-abort-incomplete-uploads"]
    assert abort["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1
    assert not any(prefix_of(r).startswith("marketing/") for r in rules.values())


def test_rules_follow_the_store_prefix_and_shortened_settings_and_keep_foreign_rules(
    new_s3_store: NewStore, s3_client: S3Client, services: Services
) -> None:
    store = new_s3_store(prefix="tenant/one")
    foreign = {
        "ID": "backups-expire",
        "Filter": {"Prefix": "backups/"},
        "Status": "Enabled",
        "Expiration": {"Days": 90},
    }
    s3_client.put_bucket_lifecycle_configuration(
        Bucket=store.bucket,
        LifecycleConfiguration={"Rules": [foreign]},  # type: ignore[list-item]
    )
    short = settings_with(services, photo_days=10.5, model_days=3.0)
    s3rules.apply_rules(store, short)
    s3rules.apply_rules(store, short)  # applying twice changes nothing
    rules = stored_rules(s3_client, store.bucket)
    assert sorted(rules) == [
        "backups-expire",
        "petportrait-abort-incomplete-uploads",
        "petportrait-model",
        "petportrait-noncurrent-versions",
        "petportrait-photo",
        "petportrait-render",
    ]
    assert prefix_of(rules["petportrait-photo"]) == "tenant/one/photos/"
    assert rules["petportrait-photo"]["Expiration"]["Days"] == 12
    assert rules["petportrait-model"]["Expiration"]["Days"] == 4
    assert rules["petportrait-render"]["Expiration"]["Days"] == 31
    assert rules["backups-expire"]["Expiration"]["Days"] == 90


@pytest.fixture
def s3_cli(
    monkeypatch: pytest.MonkeyPatch,
    moto_endpoint: str,
    new_s3_store: NewStore,
    tmp_path: Path,
) -> tuple[CliRunner, S3BlobStore]:
    store = new_s3_store()
    for name, value in {
        "PETPORTRAIT__STORAGE__BACKEND": "s3",
        "PETPORTRAIT__STORAGE__S3_BUCKET": store.bucket,
        "PETPORTRAIT__STORAGE__S3_ENDPOINT_URL": moto_endpoint,
        "PETPORTRAIT__STORAGE__S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "PETPORTRAIT__STORAGE__S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "PETPORTRAIT__DATA_DIR": str(tmp_path / "cli"),
        "PETPORTRAIT__ENVIRONMENT": "development",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield CliRunner(), store  # type: ignore[misc]
    get_settings.cache_clear()


def test_the_storage_lifecycle_command_prints_then_applies(
    s3_cli: tuple[CliRunner, S3BlobStore],
    s3_client: S3Client,
) -> None:
    runner, store = s3_cli
    dry = runner.invoke(app, ["storage", "lifecycle"])
    assert dry.exit_code == 0 and "use --apply" in dry.output and "petportrait-photo" in dry.output
    assert s3rules.current_rules(store) == []
    applied = runner.invoke(app, ["storage", "lifecycle", "--apply"])
    assert applied.exit_code == 0, applied.output
    assert "wrote 5 lifecycle rule(s)" in applied.output
    assert stored_rules(s3_client, store.bucket)["petportrait-model"]["Expiration"]["Days"] == 8


def test_the_sweeper_deletes_expired_objects_from_s3(
    new_s3_store: NewStore, services: Services, now: datetime
) -> None:
    store = new_s3_store()
    on_s3 = dataclasses.replace(services, blobs=store)
    house = add_household(on_s3, at=now)
    report = sweeper.sweep_once(
        services.session_factory, store, now=now + 30 * DAY, settings=services.settings, reconcile=True
    )
    assert report.purged == {"render": 1, "model": 1, "photo": 1} and not report.errors
    assert not any(store.exists(key) for key in house.keys.values())
    assert list(store.list("")) == []
    with services.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Tombstone)) == 3
