"""The S3 backstop: bucket lifecycle rules that expire objects a day after the policy would.

The sweeper deletes every expired blob itself, within a minute; these rules make the storage delete them
anyway if every sweeper is down. One rule per prefix with a period (photos/, models/, renders/, and
derived/ at two days), each `Expiration: Days = ceil(period) + 1` (S3 counts from the object's creation and
rounds up to the next midnight UTC, so an object never goes before the policy's time), plus one rule that
aborts incomplete multipart uploads after a day. marketing/ gets no rule: its copies live while consent
stands. Rules of the bucket that are not ours (IDs not starting with `petportrait-`) are kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from petportrait.retention import policy
from petportrait.settings import Settings

if TYPE_CHECKING:
    from petportrait.storage.s3 import S3BlobStore

RULE_PREFIX = "petportrait-"


def backstop_rules(settings: Settings, *, key_prefix: str = "") -> list[dict[str, Any]]:
    """The lifecycle rules for a store whose keys live under `key_prefix` in the bucket."""
    rules: list[dict[str, Any]] = []
    for kind in policy.KINDS.values():
        days = policy.backstop_days(kind.name, settings)
        if days is None:
            continue
        rules.append(
            {
                "ID": f"{RULE_PREFIX}{kind.name}",
                "Filter": {"Prefix": key_prefix + kind.prefix},
                "Status": "Enabled",
                "Expiration": {"Days": days},
            }
        )
    rules.append(
        {
            "ID": f"{RULE_PREFIX}abort-incomplete-uploads",
            "Filter": {"Prefix": key_prefix},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
    )
    return rules


def current_rules(store: S3BlobStore) -> list[dict[str, Any]]:
    """The bucket's lifecycle rules now (none when it has no configuration)."""
    try:
        response = store.client.get_bucket_lifecycle_configuration(Bucket=store.bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
            return []
        raise
    return [dict(rule) for rule in response.get("Rules", [])]


def apply_rules(store: S3BlobStore, settings: Settings) -> list[dict[str, Any]]:
    """Write our rules to the store's bucket, keeping the bucket's other rules; returns what was written."""
    ours = backstop_rules(settings, key_prefix=store.prefix)
    kept = [rule for rule in current_rules(store) if not str(rule.get("ID", "")).startswith(RULE_PREFIX)]
    rules = kept + ours
    store.client.put_bucket_lifecycle_configuration(
        Bucket=store.bucket,
        LifecycleConfiguration={"Rules": rules},  # type: ignore[typeddict-item]
    )
    return rules
