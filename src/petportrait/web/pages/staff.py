"""The staff console, by role: marketing requests and the consented library (marketing), support cases
(support), trust & safety cases (trust_safety), audit log search (admin). Anyone else sees 'not found'."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Response
from sqlalchemy import select

from petportrait.accounts.models import Role
from petportrait.consent import service as consent_service
from petportrait.consent import support
from petportrait.consent.notices import CHANNELS, MARKETING_NOTICES
from petportrait.errors import InvalidInput, NotFound, ProblemError
from petportrait.retention import audit
from petportrait.retention.models import AuditEntry
from petportrait.rights import policy
from petportrait.rights import service as rights_service
from petportrait.rights.models import SafetyCase
from petportrait.web.pages.common import FormPage, Page, PageDep, PageRoute
from petportrait.web.pages.rights import CHANNEL_LABELS

router = APIRouter(route_class=PageRoute, include_in_schema=False)

SECTIONS = [
    (Role.MARKETING.value, "/staff/marketing", "Marketing requests and library"),
    (Role.SUPPORT.value, "/staff/support", "Support cases"),
    (Role.TRUST_SAFETY.value, "/staff/safety", "Trust & safety cases"),
    (Role.ADMIN.value, "/staff/audit", "Audit log"),
]
ITEM_LINE = re.compile(r"^\s*(?:(photo|portrait|render)\s*[: ]\s*)?([0-9a-f]{32})\s*$", re.IGNORECASE)
AUDIT_LIMIT = 200
STAFF_CASE_STATES = {
    "open": "open, no notice sent yet",
    "notice_sent": "notice sent, cure period running",
    "fix_claimed": "fix claimed in time: read the reply and decide",
    "cured": "fixed in time, closed",
    "dismissed": "dismissed, closed",
    "revoked": "licence revoked",
    "appealed": "appealed, to be decided again",
}
DONE = {
    "opened": "The case is open. Send the written notice next.",
    "notice": "The notice was sent; the cure period has started.",
    "cured": "Marked as fixed; the person keeps their rights.",
    "decide": "The decision was recorded and sent to the person.",
    "clearly-illegal": "The licence was revoked, with a notice to the person.",
}


def _render(page: Page, template: str, *, status: int = 200, **extra: Any) -> Response:
    user = page.user
    sections = [(href, label) for role, href, label in SECTIONS if role == user.role]
    return page.render(template, status=status, sections=sections, **extra)


@router.get("/staff")
def staff_home(page: PageDep) -> Response:
    """The console of the signed-in staff member's role."""
    user = page.user
    for role, href, _label in SECTIONS:
        if user.role == role:
            return page.redirect(href)
    raise NotFound("There is no page here.")


# -- marketing --------------------------------------------------------------------------------------------


def parse_items(text: str) -> list[tuple[str, str]]:
    """Lines like 'portrait 0123…' or 'photo:0123…' (a bare id is a portrait) into (kind, id) pairs."""
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        found = ITEM_LINE.match(line)
        if found is None:
            raise InvalidInput(
                f"Line {number} is not an item: write 'portrait' or 'photo' and its 32-character id."
            )
        kind = (found.group(1) or "render").lower()
        items.append(("photo" if kind == "photo" else "render", found.group(2).lower()))
    return items


def _marketing_context(page: Page) -> dict[str, Any]:
    user = page.require_role(Role.MARKETING)
    requests = []
    for request in consent_service.requests_by(page.session, staff_id=user.id):
        requests.append(
            {"request": request, "items": consent_service.request_items(page.session, request.id)}
        )
    library = consent_service.library(page.session)
    audit.record(
        page.session,
        action="marketing.library_listed",
        actor_id=user.id,
        subject_kind="marketing_library",
        purpose="marketing",
        details={"count": len(library), "via": "staff console"},
    )
    return {
        "requests": requests,
        "library": library,
        "channels": CHANNELS,
        "channel_labels": CHANNEL_LABELS,
        "notices": MARKETING_NOTICES,
    }


@router.get("/staff/marketing")
def marketing(page: PageDep) -> Response:
    """File consent requests; see the answers; the library of items whose consent stands."""
    form = {"items": "", "purpose": "", "channels": [], "notice_version": next(iter(MARKETING_NOTICES))}
    return _render(
        page, "staff_marketing.html", title="Marketing", error=None, form=form, **_marketing_context(page)
    )


@router.post("/staff/marketing/requests")
def file_request(
    page: FormPage,
    items: Annotated[str, Form(max_length=5000)] = "",
    purpose: Annotated[str, Form(max_length=2000)] = "",
    channel: Annotated[list[str] | None, Form()] = None,
    notice_version: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """Ask a person for consent to use exact items, on exact channels, for a stated purpose."""
    user = page.require_role(Role.MARKETING)
    channels = [c for c in channel or [] if c]
    try:
        named = parse_items(items)
        if not named:
            raise InvalidInput("Name at least one item: 'portrait' or 'photo' and its id, one per line.")
        if not purpose.strip():
            raise InvalidInput("Say what the items would be used for.")
        if not channels:
            raise InvalidInput("Choose at least one channel where the items would appear.")
        consent_service.file_request(
            page.session,
            staff_id=user.id,
            items=named,
            channels=channels,
            purpose=purpose.strip(),
            notice_version=notice_version,
        )
    except ProblemError as exc:
        page.session.rollback()
        form = {"items": items, "purpose": purpose, "channels": channels, "notice_version": notice_version}
        error = exc.detail
        if isinstance(exc, NotFound):
            error = f"{exc.detail} Check the ids: the items must exist, be ready, and belong to one person."
        return _render(
            page,
            "staff_marketing.html",
            status=422,
            title="Marketing",
            error=error,
            form=form,
            **_marketing_context(page),
        )
    return page.redirect("/staff/marketing?filed=1")


# -- support ----------------------------------------------------------------------------------------------


@router.get("/staff/support")
def support_cases(page: PageDep) -> Response:
    """Open support cases and the items each one lets support view, while it lasts."""
    page.require_role(Role.SUPPORT)
    return _render(page, "staff_support.html", title="Support cases", cases=support.open_cases(page.session))


# -- trust & safety ---------------------------------------------------------------------------------------


def _safety_context(page: Page) -> dict[str, Any]:
    page.require_role(Role.TRUST_SAFETY)
    rights_service.enforce_due(page.session)
    cases = list(page.session.scalars(select(SafetyCase).order_by(SafetyCase.opened_at.desc()).limit(200)))
    return {
        "reports": rights_service.list_reports(page.session),
        "cases": [
            {
                "case": c,
                "state": STAFF_CASE_STATES.get(c.state, c.state),
                "clause": policy.clause(c.policy_clause),
            }
            for c in cases
        ],
        "clauses": policy.CLAUSES,
        "cure_days": page.settings.rights.cure_days,
        "done": DONE.get(page.request.query_params.get("done", ""), ""),
    }


@router.get("/staff/safety")
def safety(page: PageDep) -> Response:
    """Reports, cases, and the steps of each: notice, cure, decision, appeal."""
    return _render(page, "staff_safety.html", title="Trust & safety", error=None, **_safety_context(page))


def _safety_error(page: Page, message: str) -> Response:
    page.session.rollback()
    return _render(
        page, "staff_safety.html", status=422, title="Trust & safety", error=message, **_safety_context(page)
    )


@router.post("/staff/safety/cases")
def open_case(
    page: FormPage,
    licence_id: Annotated[str, Form(max_length=64)] = "",
    report_id: Annotated[str, Form(max_length=64)] = "",
    policy_clause: Annotated[str, Form(max_length=16)] = "",
    facts: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    user = page.require_role(Role.TRUST_SAFETY)
    if not facts.strip():
        return _safety_error(page, "Write the facts: what the portrait shows and why it breaks the rule.")
    if not licence_id.strip() and not report_id.strip():
        return _safety_error(page, "Name the licence of the portrait, or the report the case comes from.")
    try:
        rights_service.open_case(
            page.session,
            staff_id=user.id,
            policy_clause=policy_clause,
            facts=facts.strip(),
            licence_id=licence_id.strip() or None,
            report_id=report_id.strip() or None,
        )
    except ProblemError as exc:
        return _safety_error(page, exc.detail)
    return page.redirect("/staff/safety?done=opened")


@router.post("/staff/safety/cases/{case_id}/{action}")
def case_action(
    case_id: str,
    action: str,
    page: FormPage,
    text: Annotated[str, Form(max_length=4000)] = "",
    outcome: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """One step of a case: notice (how to fix), cured (note), decide (outcome, reasons), clearly-illegal."""
    user = page.require_role(Role.TRUST_SAFETY)
    case = rights_service.get_case(page.session, case_id=case_id)
    if not text.strip():
        return _safety_error(page, "Write the text of this step; the person reads it in their notices.")
    try:
        if action == "notice":
            rights_service.send_notice(
                page.session, case=case, staff_id=user.id, how_to_fix=text.strip(), settings=page.settings
            )
        elif action == "cured":
            rights_service.mark_cured(page.session, case=case, staff_id=user.id, note=text.strip())
        elif action == "decide":
            rights_service.decide(
                page.session, case=case, staff_id=user.id, outcome=outcome, reasons=text.strip()
            )
        elif action == "clearly-illegal":
            rights_service.mark_clearly_illegal(page.session, case=case, staff_id=user.id, facts=text.strip())
        else:
            raise NotFound("There is no such step.")
    except ProblemError as exc:
        if isinstance(exc, NotFound):
            raise
        return _safety_error(page, exc.detail)
    return page.redirect(f"/staff/safety?done={action}#case-{case.id}")


# -- admin: the audit log ---------------------------------------------------------------------------------


@router.get("/staff/audit")
def audit_search(
    page: PageDep,
    action: str = "",
    actor: str = "",
    owner: str = "",
    subject: str = "",
    since: str = "",
    verify: str = "",
) -> Response:
    """Search the audit log (newest first); verify its hash chain on request."""
    page.require_role(Role.ADMIN)
    query = select(AuditEntry)
    error = None
    if action.strip():
        query = query.where(AuditEntry.action.startswith(action.strip()))
    if actor.strip():
        query = query.where(AuditEntry.actor_id == actor.strip())
    if owner.strip():
        query = query.where(AuditEntry.owner_id == owner.strip())
    if subject.strip():
        query = query.where(AuditEntry.subject_id == subject.strip())
    if since.strip():
        try:
            moment = datetime.fromisoformat(since.strip())
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            query = query.where(AuditEntry.at >= moment)
        except ValueError:
            error = "The date must look like 2026-11-30 or 2026-11-30T14:00."
    entries = list(page.session.scalars(query.order_by(AuditEntry.seq.desc()).limit(AUDIT_LIMIT)))
    checked = audit.verify(page.session) if verify else None
    return _render(
        page,
        "staff_audit.html",
        title="Audit log",
        entries=entries,
        details=[
            json.dumps(d, ensure_ascii=False, sort_keys=True) if d else ""
            for d in audit.readable_details(page.session, entries)
        ],
        limit=AUDIT_LIMIT,
        filters={"action": action, "actor": actor, "owner": owner, "subject": subject, "since": since},
        error=error,
        checked=checked,
    )
