"""Rights API: licences (public verification page and API), provenance check, content policy, reports,
the person's notices, trust & safety cases, and staff item views (scoped and audited)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.orm import Session

from petportrait.accounts.deps import CurrentUser, require_role
from petportrait.accounts.models import Role, User
from petportrait.errors import ProblemError
from petportrait.http import BlobsDep, PageQuery, SessionDep, SettingsDep
from petportrait.paging import Page, page_list
from petportrait.portraits import service as portraits_service
from petportrait.portraits.models import RenderState
from petportrait.ratelimit import LimiterDep, client_address
from petportrait.retention import transparency
from petportrait.rights import downloads, policy, provenance, service
from petportrait.rights.models import CaseEvent, Notice, SafetyCase
from petportrait.rights.schemas import (
    AppealBody,
    CaseCreate,
    ClearlyIllegalBody,
    CuredBody,
    DecideBody,
    NoticeCreate,
    ReplyBody,
    ReportCreate,
)
from petportrait.settings import Settings

TrustSafety = Annotated[User, require_role(Role.TRUST_SAFETY)]


@asynccontextmanager
async def _signing_ready(app: FastAPI) -> AsyncIterator[None]:
    """At start-up: production refuses to start without a signing certificate; development makes one."""
    services = getattr(app.state, "services", None)
    if services is not None:
        provenance.signing_material(services.settings)
    yield


router = APIRouter(tags=["rights"], lifespan=_signing_ready)


def base_url(request: Request, settings: Settings) -> str:
    """The trusted origin for links (never the request's Host header)."""
    _ = request
    return settings.public_base_url


# ---- public ------------------------------------------------------------------------------------------


@router.get("/licences/{licence_id}")
def licence_api(
    licence_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """Anyone may verify a licence: holder's pseudonymous id, content hash, status (and the revoking case)."""
    licence = service.get_licence(session, licence_id=licence_id)
    return service.public_view(session, licence, base_url=base_url(request, settings))


@router.post(
    "/provenance/verify",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses={
        413: {"description": "The file is larger than security.max_verify_bytes"},
        429: {"description": "Too many checks from this address: wait for Retry-After seconds"},
    },
)
async def verify_file(request: Request, settings: SettingsDep, limiter: LimiterDep) -> dict[str, Any]:
    """Check a downloaded portrait (the raw PNG as the body): its manifest, signature and licence.

    Anyone may ask, within a rate limit per address and a size limit; c2pa runs in a worker thread.
    """
    await run_in_threadpool(
        limiter.take,
        ("verify_per_address", client_address(request)),
        detail="Too many provenance checks from this address.",
    )
    limit = settings.security.max_verify_bytes
    too_large = ProblemError(
        f"The file is larger than the {limit // (1024 * 1024)} MB this check accepts.",
        code="file_too_large",
        status=413,
        title="Request too large",
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    data = b"".join(chunks)

    def check() -> dict[str, Any]:
        anchors = provenance.signing_material(settings).anchors_pem
        return provenance.describe(provenance.verify(data, anchors_pem=anchors))

    return await run_in_threadpool(check)


@router.get("/content-policy")
def content_policy(settings: SettingsDep) -> dict[str, Any]:
    """The content policy, its version, how cure and appeal work, and the licence terms."""
    return policy.as_document(settings)


@router.post(
    "/reports",
    status_code=201,
    responses={429: {"description": "Too many reports from this address: wait for Retry-After seconds"}},
)
def report(body: ReportCreate, request: Request, session: SessionDep, limiter: LimiterDep) -> JSONResponse:
    """Anyone with a link may report a portrait, by licence id or by the link to its licence page."""
    limiter.take(
        ("reports_per_address", client_address(request)), detail="Too many reports from this address."
    )
    filed = service.file_report(
        session,
        licence_id=body.licence_id,
        url=body.url,
        reason=body.reason,
        details=body.details,
        contact=body.contact,
        reporter_id=None,
    )
    return JSONResponse({"id": filed.id, "received_at": filed.created_at.isoformat()}, status_code=201)


# ---- the person --------------------------------------------------------------------------------------


def _event_out(event: CaseEvent) -> dict[str, Any]:
    return {"at": event.at.isoformat(), "kind": event.kind, "by": event.actor, "details": event.body}


def _notice_out(session: Session, notice: Notice) -> dict[str, Any]:
    case = session.get(SafetyCase, notice.case_id)
    assert case is not None
    return {
        "id": notice.id,
        "kind": notice.kind,
        "sent_at": notice.sent_at.isoformat(),
        "case": {
            "id": case.id,
            "state": case.state,
            "deadline": case.cure_deadline.isoformat() if case.cure_deadline else None,
        },
        "statement": notice.statement,
        "deadline": notice.statement.get("deadline"),
        "how_to_fix": notice.statement.get("how_to_fix"),
        "how_to_appeal": str(notice.statement.get("how_to_appeal", "")).replace("{notice_id}", notice.id),
        "timeline": [_event_out(e) for e in service.timeline(session, case_id=case.id)],
        # each step of the case (notice, reply, decision) as a receipt of the transparency log
        "audit_receipts": [
            transparency.receipt_path(seq)
            for seq in transparency.seqs_naming(
                session,
                owner_id=case.owner_id,
                subject_id=case.subject_id or "",
                key="case_id",
                value=case.id,
            )
        ],
    }


@router.get("/me/notices")
def my_notices(user: CurrentUser, session: SessionDep, page: PageQuery) -> Page[dict[str, Any]]:
    """Trust & safety notices about your portraits: reasons, deadline, how to fix, how to appeal (paged)."""
    rows, cursor = page_list(
        service.notices_of(session, owner_id=user.id), key=lambda n: (n.sent_at, n.id), page=page
    )
    return Page(items=[_notice_out(session, n) for n in rows], next_cursor=cursor)


@router.get("/me/notices/{notice_id}")
def my_notice(notice_id: str, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    return _notice_out(session, service.get_notice(session, owner_id=user.id, notice_id=notice_id))


@router.post("/me/notices/{notice_id}/reply")
def reply_notice(notice_id: str, body: ReplyBody, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """Tell trust & safety what you did to fix it, or why the notice is wrong."""
    return _event_out(service.reply(session, owner_id=user.id, notice_id=notice_id, message=body.message))


@router.post("/me/notices/{notice_id}/appeal")
def appeal_notice(notice_id: str, body: AppealBody, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """Appeal: the case is reopened and decided again."""
    case = service.appeal(session, owner_id=user.id, notice_id=notice_id, statement=body.statement)
    return {"case_id": case.id, "state": case.state}


@router.get("/me/licences")
def my_licences(
    request: Request, user: CurrentUser, session: SessionDep, settings: SettingsDep, page: PageQuery
) -> Page[dict[str, Any]]:
    """Your portrait licences, oldest first (paged)."""
    url = base_url(request, settings)
    out = []
    licences, cursor = page_list(
        service.licences_of(session, owner_id=user.id),
        key=lambda lic: (lic.granted_at, lic.id),
        page=page,
        descending=False,
    )
    for licence in licences:
        service.settle_due(session, subject_id=licence.render_id)
        out.append({**service.public_view(session, licence, base_url=url), "render_id": licence.render_id})
    return Page(items=out, next_cursor=cursor)


# ---- trust & safety ----------------------------------------------------------------------------------


def _case_out(session: Session, case: SafetyCase) -> dict[str, Any]:
    return {
        "id": case.id,
        "state": case.state,
        "item": {"kind": case.subject_kind, "id": case.subject_id},
        "licence_id": case.licence_id,
        "report_id": case.report_id,
        "policy_version": case.policy_version,
        "policy_clause": case.policy_clause,
        "facts": case.facts,
        "cure_deadline": case.cure_deadline.isoformat() if case.cure_deadline else None,
        "clearly_illegal": case.clearly_illegal,
        "opened_at": case.opened_at.isoformat(),
        "decided_at": case.decided_at.isoformat() if case.decided_at else None,
        "timeline": [_event_out(e) for e in service.timeline(session, case_id=case.id)],
    }


@router.get("/staff/reports")
def list_reports(session: SessionDep, staff: TrustSafety, page: PageQuery) -> Page[dict[str, Any]]:
    """Reports, oldest first (paged)."""
    _ = staff
    reports, cursor = page_list(
        service.list_reports(session), key=lambda r: (r.created_at, r.id), page=page, descending=False
    )
    items = [
        {
            "id": r.id,
            "licence_id": r.licence_id,
            "url": r.url,
            "reason": r.reason,
            "details": r.details,
            "created_at": r.created_at.isoformat(),
            "case_id": r.case_id,
        }
        for r in reports
    ]
    return Page(items=items, next_cursor=cursor)


@router.post("/staff/cases", status_code=201)
def open_case(body: CaseCreate, session: SessionDep, staff: TrustSafety) -> JSONResponse:
    """Open a case about a licensed portrait (from a report, or by licence id)."""
    case = service.open_case(
        session,
        staff_id=staff.id,
        policy_clause=body.policy_clause,
        facts=body.facts,
        licence_id=body.licence_id,
        report_id=body.report_id,
    )
    return JSONResponse(_case_out(session, case), status_code=201)


@router.post("/staff/cases/enforce")
def enforce(session: SessionDep, staff: TrustSafety) -> dict[str, int]:
    """Settle every case whose cure deadline passed uncured (reads settle their own item too)."""
    _ = staff
    return {"revoked": service.enforce_due(session)}


@router.get("/staff/cases/{case_id}")
def get_case(case_id: str, session: SessionDep, staff: TrustSafety) -> dict[str, Any]:
    _ = staff
    return _case_out(session, service.get_case(session, case_id=case_id))


@router.post("/staff/cases/{case_id}/notice", status_code=201)
def send_notice(
    case_id: str, body: NoticeCreate, session: SessionDep, settings: SettingsDep, staff: TrustSafety
) -> JSONResponse:
    """Send the written notice with a statement of reasons; the cure period starts."""
    case = service.get_case(session, case_id=case_id)
    notice = service.send_notice(
        session, case=case, staff_id=staff.id, how_to_fix=body.how_to_fix, settings=settings
    )
    return JSONResponse({"notice_id": notice.id, **_case_out(session, case)}, status_code=201)


@router.post("/staff/cases/{case_id}/cured")
def mark_cured(case_id: str, body: CuredBody, session: SessionDep, staff: TrustSafety) -> dict[str, Any]:
    """Fixed within the cure period: the rights stay."""
    case = service.mark_cured(
        session, case=service.get_case(session, case_id=case_id), staff_id=staff.id, note=body.note
    )
    return _case_out(session, case)


@router.post("/staff/cases/{case_id}/decide")
def decide(case_id: str, body: DecideBody, session: SessionDep, staff: TrustSafety) -> dict[str, Any]:
    """dismiss, revoke (after an uncured deadline), or after an appeal: uphold or reinstate."""
    case = service.decide(
        session,
        case=service.get_case(session, case_id=case_id),
        staff_id=staff.id,
        outcome=body.outcome,
        reasons=body.reasons,
    )
    return _case_out(session, case)


@router.post("/staff/cases/{case_id}/clearly-illegal")
def clearly_illegal(
    case_id: str, body: ClearlyIllegalBody, session: SessionDep, staff: TrustSafety
) -> dict[str, Any]:
    """Clearly illegal or abusive: the licence is revoked at once, with notice."""
    case = service.get_case(session, case_id=case_id)
    service.mark_clearly_illegal(session, case=case, staff_id=staff.id, facts=body.facts)
    return _case_out(session, case)


@router.get("/renders/{render_id}/content", response_class=StreamingResponse)
def render_content(
    render_id: str,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    blobs: BlobsDep,
    settings: SettingsDep,
) -> Response:
    """The rendered image (PNG) with a signed C2PA manifest naming its licence; 451 once it is revoked."""
    render = portraits_service.get_render(session, owner_id=user.id, render_id=render_id, settings=settings)
    if render.state != RenderState.READY.value or not render.storage_key:
        raise ProblemError(
            f"This portrait is not ready yet (it is {render.state}).", code="render_not_ready", status=409
        )
    base_url = settings.public_base_url
    data, licence = downloads.signed_render(
        session, render=render, blobs=blobs, settings=settings, base_url=base_url
    )
    filename = f"portrait-{render.id}.png"
    return Response(
        data,
        media_type="image/png",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "private, no-store",
            "Link": f'<{base_url}/licences/{licence.id}>; rel="license"',
        },
    )
