"""Export everything held about a person as one ZIP.

Layout of the archive:
    manifest.json              format, when, the account, counts, and every file with its SHA-256
    index.html  index.csv      a readable index: each photo, model and portrait with its pet, file and dates
    account.json  pets.json  photos.json  models.json  renders.json  jobs.json
    deletion_receipts.json     the person's tombstones
    access_log.json            audit entries about the person's data (reads with their purpose, deletions)
    consent_receipts.json      from the consent domain's section
    licences.json              from the rights domain's section
    <name>.json                from every other section a domain registered
    photos/{pet_id}/{photo_id}.{ext}   the person's live photos, as stored
    renders/{render_id}.{ext}          the person's live portraits

Only what the person holds now is exported: items past their period are gone (even where a legal hold
keeps them from deletion). Each photo read for the export is audited with purpose "export". Other
domains add sections through the registry (`add_export_section(name, fn)`); fn(session, user_id) returns
JSON-ready records.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from petportrait.accounts import service as accounts_service
from petportrait.clock import utcnow
from petportrait.errors import NotFound
from petportrait.jobs.models import Job
from petportrait.lifecycle.export_index import index_csv, index_html, index_rows
from petportrait.pets import service as pets_service
from petportrait.registry import registry_of
from petportrait.retention import audit, policy
from petportrait.retention.models import AuditEntry, Tombstone
from petportrait.settings import Settings
from petportrait.storage.base import BlobNotFound, BlobStore

FORMAT = "petportrait-export/1"
# Names the built-in files take; a domain's section may not use one of them.
BUILT_IN = frozenset(
    {"manifest", "account", "pets", "photos", "models", "renders", "jobs", "deletion_receipts", "access_log"}
)


@dataclass
class ExportSummary:
    """What went into an export."""

    user_id: str
    exported_at: datetime
    counts: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _columns(row: Any, names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(row, name)
        out[name] = _iso(value) if isinstance(value, datetime) else value
    return out


def _dump(data: Any) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str).encode()


def build_export(
    session: Session,
    blobs: BlobStore,
    *,
    user_id: str,
    out: IO[bytes],
    settings: Settings,
    actor_id: str | None = None,
) -> ExportSummary:
    """Write the person's export ZIP to `out` and audit the photo reads."""
    user = accounts_service.live_user(session, user_id)
    if user is None:
        raise NotFound("No such account.", code="account_not_found")
    now = utcnow()
    summary = ExportSummary(user_id=user.id, exported_at=now)
    pets = pets_service.list_pets(session, owner_id=user.id)
    items = registry_of(session).item_models
    photos, models, renders = (
        _live_items(session, items[kind], owner_id=user.id, now=now, settings=settings)
        for kind in ("photo", "model", "render")
    )
    revoked = _revoked_licences(session, renders)
    jobs = list(session.scalars(select(Job).where(Job.owner_id == user.id).order_by(Job.created_at, Job.id)))
    receipts = list(
        session.scalars(
            select(Tombstone).where(Tombstone.owner_id == user.id).order_by(Tombstone.purged_at, Tombstone.id)
        )
    )
    access = list(
        session.scalars(select(AuditEntry).where(AuditEntry.owner_id == user.id).order_by(AuditEntry.seq))
    )

    sections: dict[str, Any] = {
        "account": _columns(user, ["id", "email", "display_name", "role", "created_at"]),
        "pets": [_columns(p, ["id", "name", "species", "created_at"]) for p in pets],
        "photos": [
            {
                **_columns(
                    p,
                    [
                        "id",
                        "pet_id",
                        "original_filename",
                        "content_type",
                        "size",
                        "width",
                        "height",
                        "sha256",
                        "uploaded_at",
                        "expires_at",
                    ],
                ),
                "file": f"photos/{p.pet_id}/{p.id}.{p.storage_key.rsplit('.', 1)[-1]}",
            }
            for p in photos
        ],
        "models": [
            _columns(
                m,
                [
                    "id",
                    "pet_id",
                    "state",
                    "base_model",
                    "is_preview",
                    "species",
                    "photo_ids",
                    "size",
                    "sha256",
                    "created_at",
                    "trained_at",
                    "expires_at",
                ],
            )
            for m in models
        ],
        "renders": [
            {
                **_columns(
                    r,
                    [
                        "id",
                        "pet_id",
                        "model_id",
                        "job_id",
                        "state",
                        "style",
                        "prompt",
                        "seed",
                        "width",
                        "height",
                        "is_preview",
                        "params",
                        "content_type",
                        "size",
                        "sha256",
                        "created_at",
                        "rendered_at",
                        "expires_at",
                    ],
                ),
                "file": (
                    f"renders/{r.id}.{r.storage_key.rsplit('.', 1)[-1]}"
                    if r.storage_key and r.id not in revoked
                    else None
                ),
                **(
                    {
                        "withheld": "licence_revoked",
                        "licence_id": revoked[r.id],
                        "why": REVOKED_SENTENCE,
                    }
                    if r.id in revoked
                    else {}
                ),
            }
            for r in renders
        ],
        "jobs": [
            _columns(
                j,
                [
                    "id",
                    "kind",
                    "target_id",
                    "state",
                    "attempt",
                    "message",
                    "error_code",
                    "created_at",
                    "started_at",
                    "finished_at",
                ],
            )
            for j in jobs
        ],
        "deletion_receipts": [
            _columns(
                t, ["id", "kind", "created_at", "expires_at", "fingerprint", "size", "reason", "purged_at"]
            )
            for t in receipts
        ],
        "access_log": [
            {
                **_columns(e, ["seq", "at", "action", "subject_kind", "subject_id", "purpose", "hash"]),
                "by": "you" if e.actor_id == user.id else ("service" if e.actor_id is None else "staff"),
                "details": details,
            }
            for e, details in zip(access, audit.readable_details(session, access), strict=True)
        ],
    }
    for name, fn in registry_of(session).export_sections.items():
        if name in BUILT_IN:
            raise ValueError(f"export section {name!r} is built in")
        sections[name] = fn(session, user.id)

    files: list[dict[str, Any]] = []
    reads: list[audit.AuditEvent] = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for photo, meta in zip(photos, sections["photos"], strict=True):
            _add_blob(archive, blobs, photo.storage_key, meta["file"], files)
            reads.append(
                audit.AuditEvent(
                    action="photo.read",
                    actor_id=actor_id or user.id,
                    subject_kind="photo",
                    subject_id=photo.id,
                    owner_id=user.id,
                    purpose="export",
                )
            )
        for render, meta in zip(renders, sections["renders"], strict=True):
            if render.storage_key and meta["file"]:
                _add_blob(archive, blobs, render.storage_key, meta["file"], files)
        for name, data in sections.items():
            body = _dump(data)
            archive.writestr(f"{name}.json", body)
            files.append(
                {"path": f"{name}.json", "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
            )
        rows = index_rows(sections)  # the readable index: index.html and index.csv
        readable = {
            "index.html": index_html(rows, account_email=user.email, exported_at=now.isoformat()),
            "index.csv": index_csv(rows),
        }
        for path, body in readable.items():
            archive.writestr(path, body)
            files.append({"path": path, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()})
        summary.counts = {name: len(data) for name, data in sections.items() if isinstance(data, list)}
        manifest = {
            "format": FORMAT,
            "exported_at": now.isoformat(),
            "account_id": user.id,
            "counts": summary.counts,
            "files": files,
            "note": (
                "Everything petportrait holds about this account at the time of export. Photos are kept "
                f"{policy.days('photo', settings)} after upload, models {policy.days('model', settings)} "
                f"after training, portraits {policy.days('render', settings)} after rendering."
            ),
        }
        archive.writestr("manifest.json", _dump(manifest))
    summary.files = [f["path"] for f in files] + ["manifest.json"]
    audit.record_many(session, reads, at=now)
    return summary


REVOKED_SENTENCE = (
    "The image of this portrait is not included: its licence was revoked under the content policy, so it "
    "can no longer be downloaded. Your notices (/api/v1/me/notices) say why and how to appeal."
)


def _live_items(
    session: Session, model: Any, *, owner_id: str, now: datetime, settings: Settings
) -> list[Any]:
    """The account's live items of one kind (the table the inventory names), oldest first."""
    clock = getattr(model, policy.KINDS[policy.kind_of(model)].clock)
    return list(
        session.scalars(
            select(model)
            .where(model.owner_id == owner_id, policy.live_clause(model, now=now, settings=settings))
            .order_by(clock, model.id)
        )
    )


def _revoked_licences(session: Session, renders: list[Any]) -> dict[str, str]:
    """The renders whose licence is revoked (deadlines settled first), each with its licence id."""
    from petportrait.rights import service as rights_service

    out = {}
    for render in renders:
        licence = rights_service.licence_for_render(session, render_id=render.id)
        if licence is not None and rights_service.is_revoked(licence):
            out[render.id] = licence.id
    return out


def _add_blob(
    archive: zipfile.ZipFile, blobs: BlobStore, key: str, path: str, files: list[dict[str, Any]]
) -> None:
    try:
        stream = blobs.open(key)
    except BlobNotFound:
        return  # deleted meanwhile: not held any more
    digest = hashlib.sha256()
    size = 0
    info = zipfile.ZipInfo(path)
    info.compress_type = zipfile.ZIP_STORED  # images are compressed already
    with stream, archive.open(info, "w") as target:
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
            target.write(chunk)
    files.append({"path": path, "size": size, "sha256": digest.hexdigest()})
