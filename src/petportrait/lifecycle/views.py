"""Lifecycle API: deletion receipts, delete any item, delete the account, export; legal holds; /metrics."""

from __future__ import annotations

import hmac
import tempfile
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from petportrait.accounts import service as accounts_service
from petportrait.accounts.deps import AdminUser, CurrentUser
from petportrait.accounts.schemas import Reauthentication
from petportrait.errors import Unauthorized
from petportrait.http import BlobsDep, PageQuery, SessionDep, SettingsDep, bearer_value, iter_chunks
from petportrait.lifecycle import export, holds, metrics, service
from petportrait.lifecycle.schemas import (
    DeletionOut,
    ErasureOut,
    HoldCreate,
    HoldOut,
    HoldRelease,
    HoldRenew,
)
from petportrait.lifecycle.sweeper import interval
from petportrait.paging import Page, page_list
from petportrait.ratelimit import LimiterDep, client_address
from petportrait.retention import tombstones, transparency
from petportrait.retention.models import HoldScope, LegalHold, Tombstone
from petportrait.settings import Settings
from petportrait.storage.base import BlobStore


def export_zip_response(
    session: Session, blobs: BlobStore, *, user_id: str, settings: Settings
) -> StreamingResponse:
    """Everything held about a person as one ZIP; the photo reads are on record before a byte leaves."""
    spool = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)  # noqa: SIM115 - closed by the stream
    summary = export.build_export(session, blobs, user_id=user_id, out=spool, settings=settings)
    session.commit()
    size = spool.tell()
    spool.seek(0)
    stamp = summary.exported_at.strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        iter_chunks(spool, 1024 * 1024),  # type: ignore[arg-type]
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="petportrait-export-{stamp}.zip"',
            "Content-Length": str(size),
            "Cache-Control": "private, no-store",
        },
    )


router = APIRouter(tags=["your data"])
admin_router = APIRouter(prefix="/admin", tags=["admin"])
metrics_router = APIRouter(tags=["ops"])



@router.get("/me/deletions", response_model=Page[DeletionOut])
def my_deletions(user: CurrentUser, session: SessionDep, page: PageQuery) -> Page[DeletionOut]:
    """Deletion receipts: what of yours was deleted, why and when (newest first, paged)."""
    stones, cursor = tombstones.list_deletions(session, owner_id=user.id, page=page)
    return Page(items=_with_log_receipts(session, user.id, stones), next_cursor=cursor)


def _with_log_receipts(session: Session, owner_id: str, stones: list[Tombstone]) -> list[DeletionOut]:
    """Deletion receipts, each with where to fetch its transparency-log receipt."""
    subjects = [(stone.kind, stone.id) for stone in stones]
    seqs = transparency.subject_seqs(session, owner_id=owner_id, subjects=subjects, action="item.deleted")
    out = []
    for stone in stones:
        seq = seqs.get((stone.kind, stone.id))
        receipt = DeletionOut.model_validate(stone)
        receipt.audit_receipt = None if seq is None else transparency.receipt_path(seq)
        out.append(receipt)
    return out


@router.delete("/me/items/{kind}/{item_id}", response_model=DeletionOut)
def delete_item(
    kind: str, item_id: str, user: CurrentUser, session: SessionDep, blobs: BlobsDep
) -> DeletionOut:
    """Delete one of your items (photo, model or render) now; returns its deletion receipt."""
    stone = tombstones.delete_now(
        session, blobs=blobs, kind=kind, item_id=item_id, owner_id=user.id, actor_id=user.id
    )
    return _with_log_receipts(session, user.id, [stone])[0]


@router.delete(
    "/me",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ErasureOut,
    responses={403: {"description": "The current password is missing or wrong (reauth_required)"}},
)
def delete_account(
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    limiter: LimiterDep,
    body: Reauthentication | None = None,
    x_current_password: Annotated[str | None, Header(max_length=256)] = None,
) -> ErasureOut:
    """Delete your account: signed out now, jobs cancelled, everything deleted by the next sweep.

    Confirm with your current password: `{"current_password": "..."}` as the body, or the
    `X-Current-Password` header.
    """
    password = body.current_password if body is not None else x_current_password
    accounts_service.reauthenticate(user, password, limiter=limiter, address=client_address(request))
    summary = service.erase_account(session, user_id=user.id, actor_id=user.id)
    session.commit()
    logged = transparency.subject_seqs(
        session, owner_id=user.id, subjects=[("account", user.id)], action="account.deleted"
    ).get(("account", user.id))
    within = interval(settings)
    held = (
        f" {summary.items_held} item(s) are under a legal hold and will be deleted when it ends."
        if summary.items_held
        else ""
    )
    return ErasureOut(
        user_id=summary.user_id,
        requested_at=summary.requested_at,
        tokens_revoked=summary.tokens_revoked,
        jobs_cancelled=summary.jobs_cancelled,
        items_pending=summary.items_pending,
        items_held=summary.items_held,
        completes_within_seconds=within,
        detail=(
            f"Your account is deleted; its photos, models and portraits go within {within:g} seconds.{held}"
        ),
        log_receipt=None if logged is None else transparency.receipt(session, settings, logged),
    )


@router.post(
    "/me/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "The ZIP of your data"}},
)
def export_my_data(
    user: CurrentUser, session: SessionDep, blobs: BlobsDep, settings: SettingsDep
) -> StreamingResponse:
    """Everything held about you as one ZIP: photos, portraits, metadata, receipts, access log."""
    return export_zip_response(session, blobs, user_id=user.id, settings=settings)


def hold_out(hold: LegalHold) -> HoldOut:
    return HoldOut.model_validate(
        {**_hold_fields(hold), "active": holds.is_active(hold), "held_days": holds.held_days(hold)}
    )


def _hold_fields(hold: LegalHold) -> dict[str, object]:
    return {name: getattr(hold, name) for name in HoldOut.model_fields if name not in ("active", "held_days")}


@admin_router.post("/holds", status_code=status.HTTP_201_CREATED, response_model=HoldOut)
def place_hold(body: HoldCreate, admin: AdminUser, session: SessionDep) -> HoldOut:
    """Place a legal hold on one item or on a whole account, with a reason and an end date (audited)."""
    hold = holds.place_hold(
        session,
        scope=HoldScope(body.scope),
        reason=body.reason,
        ends_at=body.ends_at,
        actor_id=admin.id,
        owner_id=body.user_id,
        kind=body.kind,
        item_id=body.item_id,
    )
    return hold_out(hold)


@admin_router.get("/holds", response_model=Page[HoldOut])
def list_holds(admin: AdminUser, session: SessionDep, page: PageQuery, active: bool = False) -> Page[HoldOut]:
    """Legal holds, newest first (only those in force with ?active=true), paged."""
    rows, cursor = page_list(
        holds.list_holds(session, active_only=active), key=lambda h: (h.placed_at, h.id), page=page
    )
    return Page(items=[hold_out(h) for h in rows], next_cursor=cursor)


@admin_router.post("/holds/{hold_id}/renew", response_model=HoldOut)
def renew_hold(hold_id: str, body: HoldRenew, admin: AdminUser, session: SessionDep) -> HoldOut:
    """Move the end of a hold in force, at most a year from now (audited, with the previous end)."""
    hold = holds.renew_hold(
        session, hold_id=hold_id, ends_at=body.ends_at, actor_id=admin.id, note=body.note, reason=body.reason
    )
    return hold_out(hold)


@admin_router.post("/holds/{hold_id}/release", response_model=HoldOut)
def release_hold(
    hold_id: str, admin: AdminUser, session: SessionDep, body: HoldRelease | None = None
) -> HoldOut:
    """End a legal hold now (audited); what it kept is deleted by the next sweep if its period has passed."""
    hold = holds.release_hold(session, hold_id=hold_id, actor_id=admin.id, note=body.note if body else "")
    return hold_out(hold)


@metrics_router.get("/metrics", include_in_schema=False)
def prometheus_metrics(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Prometheus metrics: items by kind and state, oldest overdue item, sweep durations.

    Open when ``security.metrics_token`` is unset; otherwise only for ``Authorization: Bearer <token>``.
    """
    expected = settings.security.metrics_token
    if expected:
        given = bearer_value(request) or ""
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized(
                "/metrics needs the scraper's token: send 'Authorization: Bearer <security.metrics_token>'",
                code="metrics_token_required",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
    return Response(metrics.render(session, settings=settings), media_type=metrics.CONTENT_TYPE)
