"""The person's side of consent and rights: the consent inbox, my consents, notices, a portrait's licence."""

from __future__ import annotations

import contextlib
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Form, Response

from petportrait.consent import service as consent_service
from petportrait.consent.models import Consent, Decision, MarketingRequest
from petportrait.consent.notices import MARKETING_NOTICES
from petportrait.errors import InvalidInput
from petportrait.pets.models import Photo
from petportrait.portraits import service as portraits_service
from petportrait.portraits.models import Render
from petportrait.ratelimit import client_address, limiter_of
from petportrait.rights import downloads, policy
from petportrait.rights import service as rights_service
from petportrait.rights.models import SafetyCase
from petportrait.web.pages.common import FormPage, Page, PageDep, PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

CHANNEL_LABELS = {"website": "our website", "social": "social media", "app": "our app", "print": "print"}
NOTICE_KINDS = {
    "cure_notice": "Notice: please fix a portrait",
    "revocation": "Licence revoked",
    "reinstatement": "Licence reinstated",
    "cured": "Fixed: your rights stay",
    "decision_dismiss": "Case dismissed: your rights stay",
    "decision_revoke": "Decision: licence revoked",
    "decision_uphold": "Appeal decided: revocation upheld",
    "decision_reinstate": "Appeal decided: licence reinstated",
}
CASE_STATES = {
    "open": "open",
    "notice_sent": "waiting for your fix",
    "fix_claimed": "you replied: trust & safety reads it before anything changes",
    "cured": "fixed, closed",
    "dismissed": "dismissed, closed",
    "revoked": "licence revoked",
    "appealed": "under appeal",
}


def item_view(page: Page, kind: str, item_id: str) -> dict[str, Any]:
    """What the person is shown of one of their items: a picture and a name, or that it is gone."""
    row = page.session.get(Photo, item_id) if kind == "photo" else page.session.get(Render, item_id)
    if row is None or row.owner_id != page.user.id:
        return {"kind": kind, "id": item_id, "image": None, "label": f"{kind} (deleted)"}
    if isinstance(row, Photo):
        return {
            "kind": kind,
            "id": item_id,
            "image": f"/api/v1/photos/{row.id}/content",
            "label": f"Photo {row.original_filename}",
        }
    label = "Portrait" + (f" ({row.style.replace('_', ' ')})" if row.style else "")
    ready = row.state == "ready" and not portraits_service.render_expired(row, settings=page.settings)
    return {
        "kind": kind,
        "id": item_id,
        "image": f"/portraits/{row.id}/image" if ready else None,
        "label": label,
    }


def _consent_context(page: Page) -> dict[str, Any]:
    user = page.user
    requests = []
    for request in consent_service.inbox(page.session, owner_id=user.id):
        items = [
            {"row": item, **item_view(page, item.item_kind, item.item_id)}
            for item in consent_service.request_items(page.session, request.id)
        ]
        requests.append(
            {
                "request": request,
                "items": items,
                "notice": MARKETING_NOTICES.get(request.notice_version, ""),
                "pending": any(i["row"].decision == Decision.PENDING.value for i in items),
            }
        )
    consents = []
    for consent in consent_service.consents_of(page.session, owner_id=user.id):
        copy = consent_service.copy_of(page.session, consent.id)
        consents.append(
            {
                "consent": consent,
                "item": item_view(page, consent.item_kind, consent.item_id),
                "in_library": copy is not None and copy.expires_at is None,
            }
        )
    return {"requests": requests, "consents": consents, "channel_labels": CHANNEL_LABELS}


@router.get("/consent")
def consent_inbox(page: PageDep) -> Response:
    """Marketing requests with the exact items, grant or decline each; my consents with withdraw."""
    return page.render(
        "consent.html",
        title="Consent",
        withdrawal=(consent_service.WITHDRAWAL_REACHES, consent_service.WITHDRAWAL_CANNOT_REACH),
        **_consent_context(page),
    )


def _request_of(page: Page, request_id: str) -> MarketingRequest:
    request = page.session.get(MarketingRequest, request_id)
    if request is None or request.owner_id != page.user.id:
        raise InvalidInput("There is no such request.", status=404)
    return request


@router.post("/consent/{request_id}/items/{item_id}/grant")
def grant(
    request_id: str, item_id: str, page: FormPage, notice_version: Annotated[str, Form(max_length=32)] = ""
) -> Response:
    """Say yes for one item: a consent receipt, and a copy in the marketing library."""
    user = page.user
    _request_of(page, request_id)
    consent_service.grant(
        page.session,
        blobs=page.services.blobs,
        owner_id=user.id,
        request_id=request_id,
        item_id=item_id,
        notice_version=notice_version,
        principal=rights_service.pseudonym(user.id, page.settings),
        settings=page.settings,
    )
    return page.redirect("/consent?answered=granted")


@router.post("/consent/{request_id}/items/{item_id}/decline")
def decline(request_id: str, item_id: str, page: FormPage) -> Response:
    """Say no for one item: nothing is copied."""
    consent_service.decline(page.session, owner_id=page.user.id, request_id=request_id, item_id=item_id)
    return page.redirect("/consent?answered=declined")


@router.post("/consent/consents/{consent_id}/withdraw")
def withdraw(consent_id: str, page: FormPage) -> Response:
    """Withdraw a consent: the library copy is deleted."""
    consent_service.withdraw(
        page.session, blobs=page.services.blobs, owner_id=page.user.id, consent_id=consent_id
    )
    return page.redirect("/consent?answered=withdrawn")


@router.get("/consent/consents/{consent_id}/receipt")
def receipt(consent_id: str, page: PageDep) -> Response:
    """A consent receipt, as issued, for people to read."""
    consent: Consent = consent_service.get_consent(page.session, owner_id=page.user.id, consent_id=consent_id)
    return page.render(
        "receipt.html",
        title="Consent receipt",
        consent=consent,
        item=item_view(page, consent.item_kind, consent.item_id),
        channel_labels=CHANNEL_LABELS,
        withdrawal=(consent_service.WITHDRAWAL_REACHES, consent_service.WITHDRAWAL_CANNOT_REACH),
    )


# -- notices ----------------------------------------------------------------------------------------------


def _notices_context(page: Page) -> dict[str, Any]:
    user = page.user
    notices = []
    for notice in rights_service.notices_of(page.session, owner_id=user.id):
        case = page.session.get(SafetyCase, notice.case_id)
        statement = notice.statement or {}
        item = statement.get("item") or {}
        notices.append(
            {
                "notice": notice,
                "case": case,
                "kind": NOTICE_KINDS.get(notice.kind, notice.kind.replace("_", " ").capitalize()),
                "state": CASE_STATES.get(case.state, case.state) if case else "",
                "statement": statement,
                "deadline": case.cure_deadline if case is not None else None,
                "item": item_view(page, "render", str(item.get("id", ""))) if item.get("id") else None,
                "timeline": rights_service.timeline(page.session, case_id=notice.case_id),
                "can_appeal": case is not None and case.state != "appealed",
            }
        )
    return {"notices": notices}


@router.get("/notices")
def notices_page(page: PageDep) -> Response:
    """Trust & safety notices: the reasons, the deadline, how to fix it and how to appeal."""
    return page.render("notices.html", title="Notices", **_notices_context(page))


@router.post("/notices/{notice_id}/reply")
def reply(notice_id: str, page: FormPage, message: Annotated[str, Form(max_length=4000)] = "") -> Response:
    """Tell trust & safety what was fixed, or why the notice is wrong."""
    if not message.strip():
        raise InvalidInput("Write what you changed, or why you think the notice is wrong, then send it.")
    rights_service.reply(page.session, owner_id=page.user.id, notice_id=notice_id, message=message.strip())
    return page.redirect("/notices?sent=reply")


@router.post("/notices/{notice_id}/appeal")
def appeal(notice_id: str, page: FormPage, statement: Annotated[str, Form(max_length=4000)] = "") -> Response:
    """Appeal: the case is reopened and decided again."""
    if not statement.strip():
        raise InvalidInput("Say why you appeal, so the person who decides again can weigh it.")
    rights_service.appeal(
        page.session, owner_id=page.user.id, notice_id=notice_id, statement=statement.strip()
    )
    return page.redirect("/notices?sent=appeal")


# -- a portrait's licence ---------------------------------------------------------------------------------


@router.get("/portraits/{render_id}/licence")
def licence_page(render_id: str, page: PageDep) -> Response:
    """The licence of a portrait: who owns it, what the person may do, and whether it stands."""
    render = portraits_service.get_render(
        page.session, owner_id=page.user.id, render_id=render_id, settings=page.settings
    )
    view = licence = None
    if render.state == "ready" and render.storage_key:
        with contextlib.suppress(downloads.LicenceRevoked):  # a revoked licence is shown as revoked
            downloads.ensure_licence(page.session, render=render, settings=page.settings)
        licence = rights_service.licence_for_render(page.session, render_id=render.id)
        if licence is not None:
            view = rights_service.public_view(page.session, licence, base_url="")
    return page.render(
        "licence.html",
        title="Licence",
        render=render,
        view=view,
        licence=licence,
        terms=policy.LICENCE_TERMS,
        cure_days=page.settings.rights.cure_days,
    )


# -- public: the terms, a licence as anyone checking it sees it, and a report about it ---------------------

REPORT_REASON_LABELS = {
    "sexual": "Sexual content",
    "gore": "Gore or cruelty",
    "hate": "Hate",
    "deception": "Presented as a real photograph, or its record was tampered with",
    "rights": "It infringes someone's rights or harasses someone",
    "illegal": "It is clearly illegal or abusive",
    "other": "Something else",
}


@router.get("/terms")
def terms_page(page: PageDep) -> Response:
    """The content policy and the licence terms, with the cure period this server keeps."""
    return page.render(
        "terms.html",
        title="Content policy and licence terms",
        clauses=policy.CLAUSES,
        cure=policy.cure_text(page.settings.rights.cure_days),
        terms=policy.LICENCE_TERMS,
        policy_date=date.fromisoformat(policy.POLICY_VERSION),
        terms_date=date.fromisoformat(policy.LICENCE_TERMS_VERSION),
    )


def _public_licence(page: Page, licence_id: str, **extra: Any) -> Response:
    licence = rights_service.get_licence(page.session, licence_id=licence_id)
    view = rights_service.public_view(page.session, licence, base_url=page.settings.public_base_url)
    case = view["revoked_by_case"]
    return page.render(
        "licence_public.html",
        status=extra.pop("status", 200),
        title="Portrait licence",
        licence=licence,
        view=view,
        clause=policy.clause(case["policy_clause"]) if case else None,
        terms=policy.LICENCE_TERMS,
        reasons=REPORT_REASON_LABELS,
        cure_days=page.settings.rights.cure_days,
        form=extra.pop("form", {"reason": "", "details": "", "contact": ""}),
        errors=extra.pop("errors", {}),
        **extra,
    )


@router.get("/licences/{licence_id}")
def public_licence_page(licence_id: str, page: PageDep, reported: str | None = None) -> Response:
    """A licence as anyone checking it sees it, in plain words, with a form to report the portrait."""
    return _public_licence(page, licence_id, reported=bool(reported))


@router.post("/licences/{licence_id}/report")
def report_licence(
    licence_id: str,
    page: FormPage,
    reason: Annotated[str, Form(max_length=64)] = "",
    details: Annotated[str, Form(max_length=5000)] = "",
    contact: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    """Anyone may report a portrait from its licence page; trust & safety reviews it."""
    form = {"reason": reason, "details": details, "contact": contact}
    if reason not in REPORT_REASON_LABELS:
        return _public_licence(
            page, licence_id, status=422, form=form, errors={"reason": "Choose what is wrong with it."}
        )
    limiter_of(page.request).take(
        ("reports_per_address", client_address(page.request)), detail="Too many reports from this address."
    )
    rights_service.file_report(
        page.session,
        licence_id=licence_id,
        url=None,
        reason=reason,
        details=details.strip(),
        contact=contact.strip() or None,
        reporter_id=page.principal.user.id if page.principal is not None else None,
    )
    return page.redirect(f"/licences/{licence_id}?reported=1")
