"""The S3 backstop: bucket lifecycle rules that expire objects a day after the policy would.

The sweeper deletes every expired blob itself, within a minute; these rules make the storage delete them
anyway if every sweeper is down. One rule per prefix with a period (photos/, models/, renders/, and
derived/ at two days), each `Expiration: Days = ceil(period) + 1` (S3 counts from the object's creation and
rounds up to the next midnight UTC, so an object never goes before the policy's time), plus one rule that
aborts incomplete multipart uploads after a day, and one that expires noncurrent versions a day after
they stop being current (and removes the delete markers left alone), for buckets with versioning on: the
store deletes every version itself, this is the backstop. marketing/ gets no rule: its copies live while
consent stands. Rules of the bucket that are not ours (IDs not starting with `petportrait-`) are kept.

`warn_versioning` (called at start-up) logs a warning when the bucket has versioning on without a rule
that expires noncurrent versions.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from petportrait.outages import Backoff, unavailable
from petportrait.retention import policy
from petportrait.settings import Settings

if TYPE_CHECKING:
    from petportrait.storage.s3 import S3BlobStore

log = logging.getLogger(__name__)

RULE_PREFIX = "petportrait-"
NONCURRENT_DAYS = 1


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
    rules.append(
        {
            "ID": f"{RULE_PREFIX}noncurrent-versions",
            "Filter": {"Prefix": key_prefix},
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_DAYS},
            "Expiration": {"ExpiredObjectDeleteMarker": True},
        }
    )
    return rules


def expires_noncurrent(rules: list[dict[str, Any]], *, key_prefix: str = "") -> bool:
    """Whether an enabled rule expires noncurrent versions of every key under key_prefix."""
    for rule in rules:
        if rule.get("Status") != "Enabled" or "NoncurrentVersionExpiration" not in rule:
            continue
        rule_filter = rule.get("Filter", {})
        prefix = rule_filter.get("Prefix", rule.get("Prefix", "")) if isinstance(rule_filter, dict) else ""
        if set(rule_filter) - {"Prefix"}:
            continue  # a tag or size filter leaves some objects out
        if key_prefix.startswith(prefix or ""):
            return True
    return False


def versioning_problem(store: S3BlobStore) -> str | None:
    """Why the bucket keeps deleted data as old versions with no backstop, or None."""
    status = store.versioning()
    if not status:
        return None
    if expires_noncurrent(current_rules(store), key_prefix=store.prefix):
        return None
    return (
        f"S3 bucket {store.bucket!r} has versioning {status.lower()} but no lifecycle rule expires "
        "noncurrent versions: the store deletes every version itself, but nothing backs that up; run "
        "`petportrait storage lifecycle --apply`"
    )


def warn_versioning(store: Any, settings: Settings | None = None) -> str | None:
    """At start-up: log a warning (and return it) if `store` is an S3 store whose bucket needs the rule.

    S3 unreachable at start stops nothing: the check is said to wait, and runs again in a background
    thread (backing off) until the storage answers.
    """
    _ = settings
    from petportrait.storage.s3 import S3BlobStore

    if not isinstance(store, S3BlobStore):
        return None
    try:
        problem = versioning_problem(store)
    except ClientError as exc:  # no permission to read the configuration: say so, do not stop
        if unavailable(exc) is not None:
            return _check_later(store, exc)
        problem = f"could not read the versioning of S3 bucket {store.bucket!r}: {exc}"
    except Exception as exc:
        if unavailable(exc) is None:
            raise
        return _check_later(store, exc)
    if problem:
        log.warning("%s", problem)
    return problem


def _check_later(store: S3BlobStore, exc: BaseException) -> str:
    backoff = Backoff(f"the versioning check of S3 bucket {store.bucket!r}", logger=log, cap=60.0)

    def retry(error: BaseException) -> None:
        while True:
            threading.Event().wait(backoff.failed(error))
            try:
                problem = versioning_problem(store)
            except Exception as again:
                if unavailable(again) is None:
                    log.warning("could not read the versioning of S3 bucket %r: %s", store.bucket, again)
                    return
                error = again
                continue
            backoff.succeeded()
            if problem:
                log.warning("%s", problem)
            return

    threading.Thread(target=retry, args=(exc,), name="s3-versioning-check", daemon=True).start()
    return f"S3 bucket {store.bucket!r} did not answer at start; its versioning is checked once it does"


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
