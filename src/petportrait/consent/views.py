"""Consent API: the person's inbox, consents and receipts, support cases; marketing staff's requests and
the marketing library."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from petportrait.accounts.deps import CurrentUser, require_role
from petportrait.accounts.models import STAFF_ROLES, Role, User
from petportrait.consent import access, service, support
from petportrait.consent.models import Consent, MarketingCopy, MarketingRequest, SupportCase
from petportrait.consent.schemas import GrantBody, MarketingRequestCreate, SupportCaseCreate
from petportrait.http import BlobsDep, PageQuery, SessionDep, SettingsDep
from petportrait.paging import Page, page_list
from petportrait.retention import audit, transparency
from petportrait.rights import service as rights_service

router = APIRouter(tags=["consent"])
MarketingStaff = Annotated[User, require_role(Role.MARKETING)]
SupportStaff = Annotated[User, require_role(Role.SUPPORT)]
Staff = Annotated[User, require_role(*STAFF_ROLES)]


def _request_out(session: Session, request: MarketingRequest, *, staff: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": request.id,
        **service.shown(request),
        "items": [
            {
                "id": item.id,
                "kind": item.item_kind,
                "item_id": item.item_id,
                "decision": item.decision,
                "decided_at": item.decided_at.isoformat() if item.decided_at else None,
                "consent_id": item.consent_id,
            }
            for item in service.request_items(session, request.id)
        ],
    }
    if staff:
        out["owner"] = "pseudonymous"  # staff see no identity beyond what the items say
    return out


def _consent_out(session: Session, consent: Consent) -> dict[str, Any]:
    copy = service.copy_of(session, consent.id)
    return {
        "id": consent.id,
        "item": {"kind": consent.item_kind, "id": consent.item_id},
        "purpose": consent.purpose,
        "channels": consent.channels,
        "notice_version": consent.notice_version,
        "granted_at": consent.granted_at.isoformat(),
        "withdrawn_at": consent.withdrawn_at.isoformat() if consent.withdrawn_at else None,
        "status": "withdrawn" if consent.withdrawn_at else "standing",
        "in_library": copy is not None and copy.expires_at is None,
        "receipt_url": f"/api/v1/me/consents/{consent.id}/receipt",
        "withdraw_url": f"/api/v1/me/consents/{consent.id}/withdraw",
    }


def _case_out(case: SupportCase) -> dict[str, Any]:
    return {
        "id": case.id,
        "subject": case.subject,
        "items": case.items,
        "opened_at": case.opened_at.isoformat(),
        "ends_at": case.ends_at.isoformat(),
        "closed_at": case.closed_at.isoformat() if case.closed_at else None,
        "open": support.is_open(case),
    }


# ---- the person --------------------------------------------------------------------------------------


@router.get("/me/consent-requests")
def consent_inbox(user: CurrentUser, session: SessionDep, page: PageQuery) -> Page[dict[str, Any]]:
    """Marketing requests for your items: what, where, why, and the notice; answer each item (paged)."""
    rows, cursor = page_list(
        service.inbox(session, owner_id=user.id), key=lambda r: (r.created_at, r.id), page=page
    )
    return Page(items=[_request_out(session, r) for r in rows], next_cursor=cursor)


@router.post("/me/consent-requests/{request_id}/items/{item_id}/grant", status_code=201)
def grant_item(
    request_id: str,
    item_id: str,
    body: GrantBody,
    user: CurrentUser,
    session: SessionDep,
    blobs: BlobsDep,
    settings: SettingsDep,
) -> JSONResponse:
    """Say yes for one item: you get a consent receipt, and a copy goes into the marketing library."""
    consent = service.grant(
        session,
        blobs=blobs,
        owner_id=user.id,
        request_id=request_id,
        item_id=item_id,
        notice_version=body.notice_version,
        principal=rights_service.pseudonym(user.id, settings),
        settings=settings,
    )
    return JSONResponse(_consent_out(session, consent), status_code=201)


@router.post("/me/consent-requests/{request_id}/items/{item_id}/decline")
def decline_item(request_id: str, item_id: str, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """Say no for one item: nothing is copied."""
    item = service.decline(session, owner_id=user.id, request_id=request_id, item_id=item_id)
    return {"id": item.id, "decision": item.decision}


@router.get("/me/consents")
def my_consents(user: CurrentUser, session: SessionDep, page: PageQuery) -> Page[dict[str, Any]]:
    """Your consents, standing and withdrawn, newest first (paged)."""
    rows, cursor = page_list(
        service.consents_of(session, owner_id=user.id), key=lambda c: (c.granted_at, c.id), page=page
    )
    return Page(items=[_consent_out(session, c) for c in rows], next_cursor=cursor)


@router.post("/me/consents/{consent_id}/withdraw")
def withdraw_consent(
    consent_id: str, user: CurrentUser, session: SessionDep, blobs: BlobsDep
) -> dict[str, Any]:
    """Withdraw a consent: the library copy is deleted and leaves the library and its exports."""
    consent = service.withdraw(session, blobs=blobs, owner_id=user.id, consent_id=consent_id)
    return _consent_out(session, consent)


@router.get("/me/consents/{consent_id}/receipt")
def consent_receipt(
    consent_id: str, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> Response:
    """The consent receipt as issued (JSON, after the Kantara Consent Receipt), with `log_receipts`: for the
    grant (and the withdrawal), a receipt of the transparency log anyone can check (`petportrait
    verify-receipt`)."""
    consent = service.get_consent(session, owner_id=user.id, consent_id=consent_id)
    seqs = transparency.seqs_naming(
        session, owner_id=user.id, subject_id=consent.item_id, key="consent_id", value=consent.id
    )
    issued = {
        **consent.receipt,
        "log_receipts": [transparency.receipt(session, settings, seq) for seq in seqs],
    }
    body = json.dumps(issued, indent=2, sort_keys=True).encode()
    return Response(
        body,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="consent-receipt-{consent.id}.json"'},
    )


@router.post("/me/support-cases", status_code=201)
def open_support_case(
    body: SupportCaseCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> JSONResponse:
    """Open a support case naming items support may look at (for at most 7 days, or until you close it)."""
    case = support.open_case(
        session,
        owner_id=user.id,
        subject=body.subject,
        items=[(i.kind, i.id) for i in body.items],
        days=body.days,
        settings=settings,
    )
    return JSONResponse(_case_out(case), status_code=201)


@router.get("/me/support-cases")
def my_support_cases(user: CurrentUser, session: SessionDep, page: PageQuery) -> Page[dict[str, Any]]:
    """Your support cases, newest first (paged)."""
    rows, cursor = page_list(
        support.cases_of(session, owner_id=user.id), key=lambda c: (c.opened_at, c.id), page=page
    )
    return Page(items=[_case_out(c) for c in rows], next_cursor=cursor)


@router.post("/me/support-cases/{case_id}/close")
def close_support_case(case_id: str, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """Close a support case: support's access to its items ends now."""
    return _case_out(support.close_case(session, owner_id=user.id, case_id=case_id))


# ---- marketing staff ---------------------------------------------------------------------------------


@router.post("/staff/marketing/requests", status_code=201)
def file_marketing_request(
    body: MarketingRequestCreate, session: SessionDep, staff: MarketingStaff
) -> JSONResponse:
    """Ask a person for consent to use exact items on exact channels for a stated purpose."""
    request = service.file_request(
        session,
        staff_id=staff.id,
        items=[(i.kind, i.id) for i in body.items],
        channels=body.channels,
        purpose=body.purpose,
        notice_version=body.notice_version,
    )
    return JSONResponse(_request_out(session, request, staff=True), status_code=201)


@router.get("/staff/marketing/requests")
def list_marketing_requests(
    session: SessionDep, staff: MarketingStaff, page: PageQuery
) -> Page[dict[str, Any]]:
    """The requests this staff member filed, with each item's answer, newest first (paged)."""
    rows, cursor = page_list(
        service.requests_by(session, staff_id=staff.id), key=lambda r: (r.created_at, r.id), page=page
    )
    return Page(items=[_request_out(session, r, staff=True) for r in rows], next_cursor=cursor)


def _asset_out(copy: MarketingCopy, consent: Consent) -> dict[str, Any]:
    return {
        "id": copy.id,
        "kind": copy.source_kind,
        "content_type": copy.content_type,
        "size": copy.size,
        "sha256": copy.sha256,
        "channels": consent.channels,
        "purpose": consent.purpose,
        "consent_id": consent.id,
        "consented_at": consent.granted_at.isoformat(),
        "content_url": f"/api/v1/marketing/assets/{copy.id}/content",
    }


@router.get("/marketing/assets")
def marketing_assets(session: SessionDep, staff: MarketingStaff, page: PageQuery) -> Page[dict[str, Any]]:
    """The marketing library: only items whose consent stands, newest consent first (paged)."""
    rows, cursor = page_list(service.library(session), key=lambda r: (r[1].granted_at, r[0].id), page=page)
    audit.record(
        session,
        action="marketing.library_listed",
        actor_id=staff.id,
        subject_kind="marketing_library",
        purpose="marketing",
        details={"count": len(rows)},
    )
    return Page(items=[_asset_out(copy, consent) for copy, consent in rows], next_cursor=cursor)


@router.get("/marketing/assets/{copy_id}/content")
def marketing_asset_content(
    copy_id: str, session: SessionDep, blobs: BlobsDep, staff: MarketingStaff
) -> Response:
    """The bytes of a library copy whose consent stands; anything else is refused (and audited)."""
    found = service.standing_copy(session, copy_id=copy_id)
    if found is None:
        raise access.refuse(
            session, staff=staff, kind="marketing", item_id=copy_id, why="no standing consent"
        )
    copy, consent = found
    audit.record(
        session,
        action="marketing.asset_read",
        actor_id=staff.id,
        subject_kind="marketing",
        subject_id=copy.id,
        owner_id=copy.owner_id,
        purpose="consent",
        details={"consent_id": consent.id},
    )
    return Response(blobs.get_bytes(copy.storage_key), media_type=copy.content_type)


@router.get("/marketing/export")
def marketing_export(session: SessionDep, blobs: BlobsDep, staff: MarketingStaff) -> Response:
    """The marketing library as a ZIP: a manifest and the files whose consent stands, nothing else."""
    rows = service.library(session)
    buffer = io.BytesIO()
    entries = []
    with zipfile.ZipFile(buffer, "w") as archive:
        for copy, consent in rows:
            data = blobs.get_bytes(copy.storage_key)
            name = f"assets/{copy.id}.{copy.storage_key.rsplit('.', 1)[-1]}"
            archive.writestr(name, data)
            entries.append(
                {**_asset_out(copy, consent), "file": name, "sha256": hashlib.sha256(data).hexdigest()}
            )
        archive.writestr("manifest.json", json.dumps({"assets": entries}, indent=2, sort_keys=True))
    audit.record(
        session,
        action="marketing.library_exported",
        actor_id=staff.id,
        subject_kind="marketing_library",
        purpose="marketing",
        details={"copies": [e["id"] for e in entries]},
    )
    # and one entry per person whose copies left in it, so each sees it in their own access log
    audit.record_many(
        session,
        [
            audit.AuditEvent(
                action="marketing.asset_exported",
                actor_id=staff.id,
                subject_kind="marketing",
                subject_id=copy.id,
                owner_id=copy.owner_id,
                purpose="marketing",
                details={"consent_id": consent.id},
            )
            for copy, consent in rows
        ],
    )
    return Response(
        buffer.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="marketing-library.zip"'},
    )


# ---- support staff -----------------------------------------------------------------------------------


@router.get("/staff/support-cases")
def list_support_cases(session: SessionDep, staff: SupportStaff, page: PageQuery) -> Page[dict[str, Any]]:
    """Open support cases and the items each lets support view (view them under /staff/items), paged."""
    _ = staff
    rows, cursor = page_list(support.open_cases(session), key=lambda c: (c.opened_at, c.id), page=page)
    return Page(items=[_case_out(c) for c in rows], next_cursor=cursor)


# ---- staff item views --------------------------------------------------------------------------------


def _item_out(kind: str, row: Any, basis: access.Basis) -> dict[str, Any]:
    fields = ("id", "pet_id", "state", "content_type", "size", "sha256", "expires_at")
    out: dict[str, Any] = {"kind": kind, "basis": {"kind": basis.kind, "id": basis.id}}
    for name in fields:
        value: Any = getattr(row, name, None)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    out["content_url"] = f"/api/v1/staff/items/{kind}/{row.id}/content"
    return out


@router.get("/staff/items/{kind}/{item_id}")
def staff_item(kind: str, item_id: str, session: SessionDep, staff: Staff) -> dict[str, Any]:
    """One item, for staff with a consent, an open support case or a T&S case about it (else 404)."""
    row, basis = access.authorize(session, staff=staff, kind=kind, item_id=item_id, content=False)
    return _item_out(kind, row, basis)


@router.get("/staff/items/{kind}/{item_id}/content")
def staff_item_content(
    kind: str, item_id: str, session: SessionDep, blobs: BlobsDep, staff: Staff
) -> Response:
    """The item's bytes, on the same terms; the read is audited with its basis."""
    row, _basis = access.authorize(session, staff=staff, kind=kind, item_id=item_id, content=True)
    if not row.storage_key:
        return Response(status_code=204)
    media = getattr(row, "content_type", None) or "application/octet-stream"
    return Response(blobs.get_bytes(row.storage_key), media_type=media, headers={"Cache-Control": "no-store"})
