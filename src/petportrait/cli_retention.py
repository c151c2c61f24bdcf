"""Lifecycle commands: `retention check|holds|sweep`, `audit verify`, `storage lifecycle [--apply]`,
`keys rotate`.

petportrait/cli.py registers these apps (`app.add_typer(retention_app, name="retention")`, ...).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from petportrait.settings import Settings, get_settings

if TYPE_CHECKING:
    from petportrait.registry import Services

retention_app = typer.Typer(
    help="Retention: check the policy holds, list legal holds, sweep now.", no_args_is_help=True
)
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)
storage_app = typer.Typer(help="Blob storage.", no_args_is_help=True)
keys_app = typer.Typer(help="The key-encryption key.", no_args_is_help=True)


def cli_settings() -> Settings:
    """The settings, or exit 2 with one clear line when they are invalid (every command starts here)."""
    try:
        return get_settings()
    except Exception as exc:  # pydantic's ValidationError, shown as one clear line
        typer.echo(f"error: invalid settings: {exc}", err=True)
        raise typer.Exit(2) from exc


@contextmanager
def refused_start() -> Iterator[None]:
    """Exit 2 with one clear line when start-up refuses the key-encryption key (retention.kek)."""
    from petportrait.retention.kek import KekMismatch

    try:
        yield
    except KekMismatch as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def start_services(settings: Settings, *, migrate: bool | None = None) -> Services:
    """build_services, or exit 2 with one clear line when it refuses to start."""
    from petportrait.services import build_services

    with refused_start():
        return build_services(settings, migrate=migrate)


@contextmanager
def _services() -> Iterator[Services]:
    services = start_services(cli_settings())
    try:
        yield services
    finally:
        services.engine.dispose()


def _redis_keys(services: Any, *, limit: int = 100_000) -> list[str]:
    """The keys of the deployment's Redis (queue and rate limits), when it uses one."""
    urls = {u for u in (services.settings.queue.url, services.settings.limits.storage_url) if u}
    keys: list[str] = []
    for url in sorted(u for u in urls if u.startswith(("redis://", "rediss://"))):
        import redis  # only when a Redis is configured

        client = redis.Redis.from_url(url, socket_connect_timeout=5)
        for key in client.scan_iter(count=1000):
            keys.append(key.decode("utf-8", "replace"))
            if len(keys) >= limit:
                break
    return keys


@retention_app.command("check")
def check(
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON")] = False,
    limit: Annotated[int, typer.Option(help="Print at most this many findings")] = 200,
    deep: Annotated[
        bool, typer.Option("--deep", help="Decrypt every blob whole (else its first segment)")
    ] = False,
) -> None:
    """List every item past its expiry plus one sweep interval, every blob without an owner, every
    tombstone whose blob still exists (and more, see the docs); exit 1 if there is any."""
    from petportrait.lifecycle.check import run_check

    with _services() as services, services.session_factory() as session:
        report = run_check(
            session, services.blobs, settings=services.settings, deep=deep, redis_keys=_redis_keys(services)
        )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "checked_at": report.checked_at.isoformat(),
                    "rows": report.rows_checked,
                    "blobs": report.blobs_checked,
                    "tombstones": report.tombstones_checked,
                    "counts": report.counts(),
                    "findings": [f.__dict__ for f in report.findings[:limit]],
                },
                indent=2,
            )
        )
    else:
        typer.echo(
            f"checked {report.rows_checked} items, {report.blobs_checked} blobs, "
            f"{report.tombstones_checked} tombstones at {report.checked_at.isoformat()}"
        )
        for finding in report.findings[:limit]:
            subject = finding.item_id or finding.storage_key or ""
            typer.echo(f"{finding.problem:<16} {finding.kind:<9} {subject}  {finding.detail}")
        if len(report.findings) > limit:
            typer.echo(f"... and {len(report.findings) - limit} more")
        typer.echo(
            "ok: nothing overdue, orphaned or left behind" if report.ok else f"FAILED: {report.counts()}"
        )
    if not report.ok:
        raise typer.Exit(1)


@retention_app.command("encrypt-existing")
def encrypt_existing(
    prefix: Annotated[str, typer.Option(help="Only blobs whose key starts with this")] = "",
) -> None:
    """Seal every blob stored before encryption was on (idempotent, resumable; prints counts)."""
    from petportrait.lifecycle.encrypt import EncryptReport
    from petportrait.lifecycle.encrypt import encrypt_existing as run
    from petportrait.storage.crypto import EncryptedBlobStore

    def progress(report: EncryptReport) -> None:
        typer.echo(f"... {report.scanned} scanned, {report.encrypted} encrypted", err=True)

    with _services() as services:
        assert isinstance(services.blobs, EncryptedBlobStore)
        report = run(services.blobs, services.session_factory, prefix=prefix, progress=progress)
    typer.echo(
        f"scanned {report.scanned} blobs: encrypted {report.encrypted}, already encrypted {report.already}, "
        f"gone meanwhile {report.vanished}, failed {len(report.errors)}"
    )
    for key, error in report.errors.items():
        typer.echo(f"error: {key}: {error}", err=True)
    if report.errors:
        raise typer.Exit(1)


@retention_app.command("renew-hold")
def renew_hold(
    hold_id: str,
    until: Annotated[str, typer.Option(help="The new end, ISO 8601 with a time zone (at most a year away)")],
    note: Annotated[str, typer.Option(help="Why it is renewed (audited)")] = "",
) -> None:
    """Move the end of a legal hold in force (at most a year from now); audited."""
    from datetime import datetime

    from petportrait.db import session_scope
    from petportrait.errors import ProblemError
    from petportrait.lifecycle import holds

    try:
        ends_at = datetime.fromisoformat(until)
    except ValueError as exc:
        typer.echo(f"error: --until {until!r} is not an ISO 8601 date", err=True)
        raise typer.Exit(2) from exc
    with _services() as services:
        try:
            with session_scope(services.session_factory) as session:
                hold = holds.renew_hold(session, hold_id=hold_id, ends_at=ends_at, actor_id=None, note=note)
                ends = hold.ends_at.isoformat()
        except ProblemError as exc:
            typer.echo(f"error: {exc.code}: {exc.detail}", err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"hold {hold_id} now ends at {ends}")


@retention_app.command("holds")
def list_holds(
    show_all: Annotated[bool, typer.Option("--all", help="Include holds that have ended")] = False,
) -> None:
    """List legal holds (those in force, or all)."""
    from petportrait.lifecycle import holds

    with _services() as services, services.session_factory() as session:
        found = holds.list_holds(session, active_only=not show_all)
        if not found:
            typer.echo("no legal holds" + ("" if show_all else " in force"))
        for hold in found:
            subject = (
                f"{hold.subject_kind} {hold.subject_id}"
                if hold.scope == "item"
                else f"account {hold.owner_id}"
            )
            state = "active" if holds.is_active(hold) else "ended"
            typer.echo(
                f"{hold.id}  {state:<6}  {subject}  until {hold.ends_at.isoformat()}  "
                f"placed {hold.placed_at.isoformat()} by {hold.placed_by}: {hold.reason}"
            )


def sweep(
    batch_size: Annotated[int, typer.Option(help="Items per batch")] = 5000,
    reconcile: Annotated[
        bool | None, typer.Option("--reconcile/--no-reconcile", help="Force or skip the orphan pass")
    ] = None,
) -> None:
    """Delete everything that has expired now (the periodic sweeper does this every minute)."""
    from petportrait.lifecycle.sweeper import sweep_once

    with _services() as services:
        report = sweep_once(
            services.session_factory,
            services.blobs,
            batch_size=batch_size,
            settings=services.settings,
            reconcile=reconcile,
        )
    if not report.ran:
        typer.echo("another process is sweeping now; nothing done")
        return
    typer.echo(
        f"purged {report.total_purged} items {report.purged} in {report.duration_seconds:.2f}s; "
        f"orphans {report.orphans_removed}, "
        f"tombstoned blobs {report.tombstone_blobs_removed}"
    )
    for error in report.errors:
        typer.echo(f"error: {error}", err=True)
    if report.errors:
        raise typer.Exit(1)


retention_app.command("sweep")(sweep)


@audit_app.command("verify")
def verify() -> None:
    """Walk the audit chain; exit 1 if any entry was edited or removed."""
    from petportrait.retention import audit

    with _services() as services, services.session_factory() as session:
        result = audit.verify(session)
    if result.ok:
        typer.echo(f"ok: {result.entries} entries, head {result.head_seq} {result.head_hash}")
        return
    typer.echo(f"FAILED: the audit log was tampered with from entry {result.first_bad_seq}", err=True)
    for problem in result.problems:
        typer.echo(f"  {problem}", err=True)
    raise typer.Exit(1)


@storage_app.command("lifecycle")
def storage_lifecycle(
    apply: Annotated[
        bool, typer.Option("--apply", help="Write the rules to the bucket (else only print)")
    ] = False,
) -> None:
    """Print (or with --apply write) the S3 lifecycle rules that back the retention policy up."""
    from petportrait.lifecycle import s3rules
    from petportrait.storage import create_blob_store
    from petportrait.storage.s3 import S3BlobStore

    settings = cli_settings()
    if settings.storage.backend != "s3":
        typer.echo("error: lifecycle rules are for S3 storage (storage.backend is not 's3')", err=True)
        raise typer.Exit(2)
    store = create_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    if apply:
        rules = s3rules.apply_rules(store, settings)
        typer.echo(f"wrote {len(rules)} lifecycle rule(s) to bucket {store.bucket}")
    else:
        rules = s3rules.backstop_rules(settings, key_prefix=store.prefix)
        typer.echo(f"would write to bucket {store.bucket} (use --apply):")
    typer.echo(json.dumps(rules, indent=2))


@keys_app.command("rotate")
def rotate_keys(
    batch_size: Annotated[int, typer.Option(min=1, help="Data keys re-wrapped per transaction")] = 2000,
) -> None:
    """Re-wrap every data key under security.key_encryption_key, opening the old ones with
    security.previous_key_encryption_key; resumable (run it again after a stop); audited. See the README,
    "Rotating the key-encryption key"."""
    from petportrait.retention.kek import RotationReport, rotate
    from petportrait.retention.keys import load_kek, load_previous_kek

    def progress(report: RotationReport) -> None:
        typer.echo(f"... {report.rewrapped} re-wrapped", err=True)

    with _services() as services, refused_start():
        settings = services.settings
        report = rotate(
            services.session_factory,
            load_kek(settings),
            load_previous_kek(settings),
            batch_size=batch_size,
            progress=progress,
        )
    typer.echo(
        f"key-encryption key {report.from_id or '(none)'} -> {report.to_id}: re-wrapped {report.rewrapped} "
        f"data keys, {report.remaining} left"
    )
    for key, error in list(report.failed.items())[:20]:
        typer.echo(f"error: {key}: {error}", err=True)
    if not report.finished:
        typer.echo("FAILED: some data keys are under neither key; the previous key stays accepted", err=True)
        raise typer.Exit(1)
    typer.echo("finished: the previous key is retired; remove security.previous_key_encryption_key")
