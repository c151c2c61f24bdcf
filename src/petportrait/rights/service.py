"""Rights: generation records and licences, content reports, trust & safety cases with notice and cure.

A case about a person's render runs: open -> notice (statement of reasons, cure deadline) -> cured (rights
stay) or, past the deadline uncured, revoked (downloads refused). A case marked clearly illegal or abusive
revokes at once, with notice. An appeal reopens a case; a decision on it reinstates or upholds. Every step
is audited and written to the case's timeline, which the person sees. Deadlines are settled whenever a
licence is read (`settle_due`), and in bulk by `enforce_due`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from petportrait.accounts import service as accounts_service
from petportrait.clock import utcnow
from petportrait.errors import Conflict, InvalidInput, NotFound
from petportrait.portraits.models import PetModel, Render, without_fingerprints
from petportrait.registry import Event, emit, settings_of
from petportrait.retention import audit, fingerprints
from petportrait.rights import policy
from petportrait.rights.models import (
    CaseEvent,
    CaseState,
    ContentReport,
    Generation,
    Licence,
    LicenceStatus,
    Notice,
    SafetyCase,
)
from petportrait.settings import Settings

_FREE_TEXT = frozenset({"message", "statement", "reasons", "note", "facts"})
REPORT_REASONS = ("sexual", "gore", "hate", "deception", "rights", "illegal", "other")
_LICENCE_IN_URL = re.compile(r"/licences/([0-9a-f]{32})(?:[/?#]|$)")


def pseudonym(user_id: str, settings: Settings) -> str:
    """A stable pseudonymous id of a person, shown publicly instead of who they are."""
    digest = hmac.new(settings.security.secret_key.encode(), f"holder:{user_id}".encode(), hashlib.sha256)
    return "pp-" + digest.hexdigest()[:20]


# ---- generations and licences ------------------------------------------------------------------------


def record_generation(
    session: Session, *, render: Render, model: PetModel | None, settings: Settings
) -> Licence:
    """Write a ready render's generation record and licence, in the caller's transaction (idempotent).

    Refused for an erased account (Conflict `account_deleted`, which undoes the caller's transaction): no
    generation record, with its prompt, is written after an erasure scrubbed the others.
    """
    existing = session.scalar(select(Licence).where(Licence.render_id == render.id))
    if existing is not None:
        return existing
    if accounts_service.is_erased(session, render.owner_id):
        raise Conflict(
            "The account this render belongs to has been deleted; nothing is recorded for it.",
            code="account_deleted",
        )
    if not render.sha256:
        raise ValueError("a render gets its licence once its image is stored")
    now = render.rendered_at or utcnow()
    generation = Generation(
        render_id=render.id,
        owner_id=render.owner_id,
        model_id=render.model_id,
        base_model=model.base_model if model is not None else None,
        is_preview=render.is_preview,
        style=render.style,
        prompt=render.prompt,
        seed=render.seed,
        params=without_fingerprints(render.params or {}),  # no photo or LoRA hashes: they outlive them
        content_sha256=render.sha256,
        created_at=now,
    )
    session.add(generation)
    session.flush()
    licence = Licence(
        render_id=render.id,
        generation_id=generation.id,
        holder_id=render.owner_id,
        holder_pseudonym=pseudonym(render.owner_id, settings),
        content_sha256=render.sha256,
        terms_version=policy.LICENCE_TERMS_VERSION,
        granted_at=now,
        status=LicenceStatus.ACTIVE.value,
    )
    session.add(licence)
    session.flush()
    audit.record(
        session,
        action="licence.granted",
        actor_id=None,
        subject_kind="render",
        subject_id=render.id,
        owner_id=render.owner_id,
        purpose="licence",
        details={
            "licence_id": licence.id,
            "fingerprint": fingerprints.fingerprint(session, render.owner_id, render.sha256),
        },
    )
    return licence


def is_revoked(licence: Licence) -> bool:
    """Whether a licence was revoked (the portrait can no longer be downloaded)."""
    return licence.status == LicenceStatus.REVOKED.value


def licence_for_render(session: Session, *, render_id: str) -> Licence | None:
    """The licence of a render, its deadlines settled; None if the render has none."""
    licence = session.scalar(select(Licence).where(Licence.render_id == render_id))
    if licence is not None:
        settle_due(session, subject_id=render_id)
    return licence


def get_licence(session: Session, *, licence_id: str) -> Licence:
    """A licence by id, its deadlines settled (404 `licence_not_found`)."""
    licence = session.get(Licence, licence_id)
    if licence is None:
        raise NotFound("No such licence.", code="licence_not_found")
    settle_due(session, subject_id=licence.render_id)
    return licence


def generation_of(session: Session, licence: Licence) -> Generation:
    generation = session.get(Generation, licence.generation_id)
    assert generation is not None
    return generation


def public_view(session: Session, licence: Licence, *, base_url: str = "") -> dict[str, Any]:
    """What anyone may see of a licence: the holder's pseudonym, the content hash and the status."""
    generation = generation_of(session, licence)
    case = session.get(SafetyCase, licence.revoked_by_case_id) if licence.revoked_by_case_id else None
    return {
        "id": licence.id,
        "status": licence.status,
        "holder": licence.holder_pseudonym,
        "content_sha256": licence.content_sha256,
        "granted_at": licence.granted_at.isoformat(),
        "revoked_at": licence.revoked_at.isoformat() if licence.revoked_at else None,
        "revoked_by_case": (
            {"id": case.id, "policy_clause": case.policy_clause, "clearly_illegal": case.clearly_illegal}
            if case is not None
            else None
        ),
        "generator": {
            "base_model": generation.base_model,
            "preview_model": generation.is_preview,
            "made_at": generation.created_at.isoformat(),
        },
        "terms": {"version": licence.terms_version, **policy.LICENCE_TERMS},
        "verify_url": f"{base_url}/licences/{licence.id}",
        "report_url": f"{base_url}/api/v1/reports",
    }


def licences_of(session: Session, *, owner_id: str) -> list[Licence]:
    """The person's licences, oldest first."""
    return list(
        session.scalars(select(Licence).where(Licence.holder_id == owner_id).order_by(Licence.granted_at))
    )


def export_licences(session: Session, owner_id: str) -> list[dict[str, Any]]:
    """The licences section of a person's export (with their generation records)."""
    out: list[dict[str, Any]] = []
    for licence in licences_of(session, owner_id=owner_id):
        generation = generation_of(session, licence)
        out.append(
            {
                "id": licence.id,
                "render_id": licence.render_id,
                "status": licence.status,
                "content_sha256": licence.content_sha256,
                "terms_version": licence.terms_version,
                "granted_at": licence.granted_at.isoformat(),
                "revoked_at": licence.revoked_at.isoformat() if licence.revoked_at else None,
                "revoked_by_case_id": licence.revoked_by_case_id,
                "generation": {
                    "model_id": generation.model_id,
                    "base_model": generation.base_model,
                    "is_preview": generation.is_preview,
                    "style": generation.style,
                    "prompt": generation.prompt,
                    "seed": generation.seed,
                    "params": generation.params,
                },
            }
        )
    return out


def scrub_generations(session: Session, user_id: str, actor_id: str | None) -> None:
    """On account erasure: drop prompts and parameters (the licence stays verifiable by its hash), and
    blank the free text of the account's trust & safety cases, notices and the reports about them."""
    _ = actor_id
    for generation in session.scalars(select(Generation).where(Generation.owner_id == user_id)):
        generation.prompt = None
        generation.params = {}
    # the free text of the account's cases: replies, appeals and reasons in the timeline and notices
    cases = select(SafetyCase.id).where(SafetyCase.owner_id == user_id)
    for event in session.scalars(select(CaseEvent).where(CaseEvent.case_id.in_(cases))):
        if any(key in _FREE_TEXT for key in event.body or {}):
            event.body = {k: ("(erased)" if k in _FREE_TEXT else v) for k, v in (event.body or {}).items()}
    for notice in session.scalars(select(Notice).where(Notice.owner_id == user_id)):
        notice.statement = {k: v for k, v in (notice.statement or {}).items() if k in ("case_id", "policy")}
    for case in session.scalars(select(SafetyCase).where(SafetyCase.owner_id == user_id)):
        case.facts = "(erased)"
    held = select(Licence.id).where(Licence.holder_id == user_id)
    for report in session.scalars(select(ContentReport).where(ContentReport.licence_id.in_(held))):
        report.details, report.contact, report.url = "(erased)", None, None


# ---- reports -----------------------------------------------------------------------------------------


def licence_id_from(*, licence_id: str | None, url: str | None) -> str:
    """The licence a report names, by id or by a public URL of its verification page."""
    if licence_id:
        return licence_id.strip().lower()
    match = _LICENCE_IN_URL.search(url or "")
    if match is None:
        raise InvalidInput(
            "Name the portrait by its licence id or the link to its licence page (…/licences/<id>).",
            code="report_target_unknown",
        )
    return match.group(1)


def file_report(
    session: Session,
    *,
    licence_id: str | None,
    url: str | None,
    reason: str,
    details: str,
    contact: str | None,
    reporter_id: str | None,
) -> ContentReport:
    """Record a report about a licensed portrait by anyone with a link."""
    if reason not in REPORT_REASONS:
        raise InvalidInput(f"reason must be one of: {', '.join(REPORT_REASONS)}.", code="invalid_reason")
    target = licence_id_from(licence_id=licence_id, url=url)
    licence = session.get(Licence, target)
    if licence is None:
        raise NotFound("No such licence.", code="licence_not_found")
    report = ContentReport(
        licence_id=licence.id,
        url=url,
        reason=reason,
        details=details,
        contact=contact,
        reporter_id=reporter_id,
        created_at=utcnow(),
    )
    session.add(report)
    session.flush()
    audit.record(
        session,
        action="report.filed",
        actor_id=reporter_id,
        subject_kind="render",
        subject_id=licence.render_id,
        owner_id=licence.holder_id,
        purpose="trust_safety",
        details={"report_id": report.id, "reason": reason, "licence_id": licence.id},
    )
    return report


def list_reports(session: Session, *, unassigned_only: bool = False) -> list[ContentReport]:
    query = select(ContentReport).order_by(ContentReport.created_at)
    if unassigned_only:
        query = query.where(ContentReport.case_id.is_(None))
    return list(session.scalars(query))


# ---- cases -------------------------------------------------------------------------------------------


def _event(
    session: Session, case: SafetyCase, *, kind: str, actor: str, actor_id: str | None, body: dict[str, Any]
) -> CaseEvent:
    now = utcnow()
    last = session.scalar(select(func.max(CaseEvent.seq)).where(CaseEvent.case_id == case.id))
    event = CaseEvent(case_id=case.id, seq=(last or 0) + 1, at=now, kind=kind, actor=actor, body=body)
    session.add(event)
    session.flush()
    # free text (a reply, an appeal, a decision's reasons) stays out of the chain: the entry refers to it
    details = {
        key: (
            audit.text_ref(
                session,
                value,
                owner_id=case.owner_id,
                subject_kind=case.subject_kind,
                subject_id=case.subject_id,
            )
            if key in _FREE_TEXT and isinstance(value, str)
            else value
        )
        for key, value in body.items()
    }
    audit.record(
        session,
        action=f"case.{kind}",
        actor_id=actor_id,
        subject_kind=case.subject_kind,
        subject_id=case.subject_id,
        owner_id=case.owner_id,
        purpose="trust_safety",
        details={"case_id": case.id, **details},
    )
    return event


def _notice(session: Session, case: SafetyCase, *, kind: str, statement: dict[str, Any]) -> Notice:
    notice = Notice(case_id=case.id, owner_id=case.owner_id, kind=kind, sent_at=utcnow(), statement=statement)
    session.add(notice)
    session.flush()
    return notice


def _clause(clause_id: str) -> policy.Clause:
    found = policy.clause(clause_id)
    if found is None:
        ids = ", ".join(c.id for c in policy.CLAUSES)
        raise InvalidInput(
            f"No clause {clause_id!r} in the content policy; one of: {ids}.", code="unknown_clause"
        )
    return found


def open_case(
    session: Session,
    *,
    staff_id: str,
    policy_clause: str,
    facts: str,
    licence_id: str | None = None,
    report_id: str | None = None,
) -> SafetyCase:
    """Open a case about a licensed render, from a report or directly by its licence."""
    _clause(policy_clause)
    report = session.get(ContentReport, report_id) if report_id else None
    if report_id and report is None:
        raise NotFound("No such report.", code="report_not_found")
    target = licence_id or (report.licence_id if report is not None else None)
    licence = session.get(Licence, target) if target else None
    if licence is None:
        raise NotFound("No such licence.", code="licence_not_found")
    case = SafetyCase(
        owner_id=licence.holder_id,
        subject_kind="render",
        subject_id=licence.render_id,
        licence_id=licence.id,
        report_id=report.id if report else None,
        opened_by=staff_id,
        opened_at=utcnow(),
        state=CaseState.OPEN.value,
        policy_version=policy.POLICY_VERSION,
        policy_clause=policy_clause,
        facts=facts,
    )
    session.add(case)
    session.flush()
    if report is not None:
        report.case_id = case.id
    _event(
        session, case, kind="opened", actor="trust_safety", actor_id=staff_id, body={"clause": policy_clause}
    )
    return case


def get_case(session: Session, *, case_id: str) -> SafetyCase:
    case = session.get(SafetyCase, case_id)
    if case is None:
        raise NotFound("No such case.", code="case_not_found")
    settle_due(session, subject_id=case.subject_id)
    return case


def _statement(
    case: SafetyCase,
    *,
    consequence: str,
    deadline: datetime | None,
    how_to_fix: str,
    facts: str | None = None,
) -> dict[str, Any]:
    c = _clause(case.policy_clause)
    return {
        "case_id": case.id,
        "item": {"kind": case.subject_kind, "id": case.subject_id, "licence_id": case.licence_id},
        "facts": facts or case.facts,
        "policy": {"version": case.policy_version, "clause": c.id, "title": c.title, "text": c.text},
        "consequence": consequence,
        "deadline": deadline.isoformat() if deadline else None,
        "how_to_fix": how_to_fix,
        "how_to_appeal": (
            "Appeal with POST /api/v1/me/notices/{notice_id}/appeal and say why; the case is reopened and "
            "decided again by someone in trust & safety."
        ),
    }


def send_notice(
    session: Session, *, case: SafetyCase, staff_id: str, how_to_fix: str, settings: Settings
) -> Notice:
    """Send the statement of reasons and start the cure period (rights stay in force during it)."""
    if case.state != CaseState.OPEN.value:
        raise Conflict(f"A notice is sent to an open case; this one is {case.state}.", code="case_not_open")
    deadline = utcnow() + timedelta(days=settings.rights.cure_days)
    case.cure_deadline = deadline
    case.state = CaseState.NOTICE_SENT.value
    statement = _statement(
        case,
        consequence=(
            "If this is not fixed by the deadline, your licence for this portrait is revoked and it can no "
            "longer be downloaded. Until then your rights stay in force."
        ),
        deadline=deadline,
        how_to_fix=how_to_fix,
    )
    notice = _notice(session, case, kind="cure_notice", statement=statement)
    _event(
        session,
        case,
        kind="notice_sent",
        actor="trust_safety",
        actor_id=staff_id,
        body={"notice_id": notice.id, "deadline": deadline.isoformat()},
    )
    emit(session, "notice.sent", owner_id=case.owner_id, notice_id=notice.id, case_id=case.id, cure_deadline=deadline)  # noqa: E501
    return notice


def _revoke(session: Session, case: SafetyCase, *, now: datetime) -> None:
    licence = session.get(Licence, case.licence_id) if case.licence_id else None
    if licence is not None and licence.status != LicenceStatus.REVOKED.value:
        licence.status = LicenceStatus.REVOKED.value
        licence.revoked_at = now
        licence.revoked_by_case_id = case.id
        session.flush()
    case.state = CaseState.REVOKED.value
    case.decided_at = now


def settle_due(session: Session, *, subject_id: str | None = None, now: datetime | None = None) -> int:
    """Revoke the licences of cases whose cure deadline passed uncured; returns how many were settled."""
    now = now or utcnow()
    query = select(SafetyCase).where(
        SafetyCase.state == CaseState.NOTICE_SENT.value, SafetyCase.cure_deadline <= now
    )
    if subject_id is not None:
        query = query.where(SafetyCase.subject_id == subject_id)
    count = 0
    for case in session.scalars(query).all():
        _revoke(session, case, now=now)
        statement = _statement(
            case,
            consequence="Your licence for this portrait is revoked; it can no longer be downloaded.",
            deadline=None,
            how_to_fix="The cure period has ended; you may still appeal.",
        )
        notice = _notice(session, case, kind="revocation", statement=statement)
        _event(
            session,
            case,
            kind="revoked",
            actor="service",
            actor_id=None,
            body={"notice_id": notice.id, "why": "not cured by the deadline"},
        )
        emit(session, "notice.decided", owner_id=case.owner_id, case_id=case.id, decision="revoked", notice_id=notice.id)  # noqa: E501
        count += 1
    return count


def enforce_due(session: Session, *, now: datetime | None = None) -> int:
    """Settle every case whose deadline passed (run periodically; reads settle their own item too)."""
    return settle_due(session, now=now)


def mark_cured(session: Session, *, case: SafetyCase, staff_id: str, note: str) -> SafetyCase:
    """The person fixed it in time: the case ends and the rights stay."""
    settle_due(session, subject_id=case.subject_id)
    if case.state not in (CaseState.NOTICE_SENT.value, CaseState.FIX_CLAIMED.value):
        raise Conflict(
            f"Only a case in its cure period can be cured; this one is {case.state}.", code="case_not_curable"
        )
    case.state = CaseState.CURED.value
    case.decided_at = utcnow()
    statement = _statement(
        case,
        consequence="Your rights stay in force; this case is closed.",
        deadline=None,
        how_to_fix="Nothing.",
    )
    statement["note"] = note
    notice = _notice(session, case, kind="cured", statement=statement)
    _event(
        session, case, kind="cured", actor="trust_safety", actor_id=staff_id, body={"notice_id": notice.id}
    )
    emit(session, "notice.decided", owner_id=case.owner_id, case_id=case.id, decision="cured", notice_id=notice.id)  # noqa: E501
    return case


def mark_clearly_illegal(session: Session, *, case: SafetyCase, staff_id: str, facts: str) -> Notice:
    """Clearly illegal or abusive: revoke at once, with notice."""
    if case.state in (CaseState.REVOKED.value,):
        raise Conflict("This case has already revoked the licence.", code="case_decided")
    now = utcnow()
    case.clearly_illegal = True
    _revoke(session, case, now=now)
    statement = _statement(
        case,
        consequence=(
            "Marked clearly illegal or abusive: your licence for this portrait is revoked at once and it can "
            "no longer be downloaded."
        ),
        deadline=None,
        how_to_fix="This cannot be cured; you may appeal.",
        facts=facts,
    )
    notice = _notice(session, case, kind="revocation", statement=statement)
    _event(
        session,
        case,
        kind="revoked",
        actor="trust_safety",
        actor_id=staff_id,
        body={"notice_id": notice.id, "why": "clearly illegal or abusive"},
    )
    emit(session, "notice.decided", owner_id=case.owner_id, case_id=case.id, decision="revoked", notice_id=notice.id)  # noqa: E501
    return notice


DECISIONS = ("dismiss", "revoke", "uphold", "reinstate")


def decide(session: Session, *, case: SafetyCase, staff_id: str, outcome: str, reasons: str) -> SafetyCase:
    """Decide a case: dismiss (rights stay), revoke (only once the cure period ended uncured),
    or after an appeal uphold (stays revoked) or reinstate (the licence is active again)."""
    settle_due(session, subject_id=case.subject_id)
    if outcome not in DECISIONS:
        raise InvalidInput(f"outcome must be one of: {', '.join(DECISIONS)}.", code="invalid_outcome")
    now = utcnow()
    licence = session.get(Licence, case.licence_id) if case.licence_id else None
    if outcome == "revoke":
        if case.state == CaseState.NOTICE_SENT.value:
            raise Conflict(
                "The cure period is still running; the licence stays in force until its deadline.",
                code="cure_period_running",
                deadline=case.cure_deadline.isoformat() if case.cure_deadline else None,
            )
        if case.state == CaseState.OPEN.value:
            raise Conflict(
                "Send a notice with a statement of reasons and a cure period first.", code="notice_required"
            )
        if case.state != CaseState.FIX_CLAIMED.value:
            raise Conflict(f"This case is {case.state}.", code="case_decided")
        # the person claimed a fix in time and staff read it and found it is not fixed
        _revoke(session, case, now=now)
        consequence = "Your reply was read and the portrait still breaks the policy: your licence is revoked."
    elif outcome in ("uphold",):
        if case.state != CaseState.APPEALED.value:
            raise Conflict("Only an appealed case can be upheld.", code="not_appealed")
        if licence is not None and licence.status == LicenceStatus.REVOKED.value:
            case.state = CaseState.REVOKED.value
        else:  # appealed during the cure period: it runs on to its deadline
            case.state = CaseState.NOTICE_SENT.value if case.cure_deadline else CaseState.OPEN.value
        consequence = "The appeal was considered and the earlier decision stands."
    else:  # dismiss or reinstate
        if case.state in (CaseState.CURED.value, CaseState.DISMISSED.value):
            raise Conflict(f"This case is {case.state}.", code="case_decided")
        if case.state == CaseState.REVOKED.value:
            raise Conflict("A revoked case is reconsidered after an appeal.", code="not_appealed")
        if licence is not None and licence.status == LicenceStatus.REVOKED.value:
            licence.status = LicenceStatus.ACTIVE.value
            licence.revoked_at = None
            licence.revoked_by_case_id = None
        case.state = CaseState.DISMISSED.value
        consequence = "No violation was found, or the appeal succeeded: your rights stay in force."
    case.decided_at = now
    statement = _statement(case, consequence=consequence, deadline=None, how_to_fix="Nothing.")
    statement["reasons"] = reasons
    notice = _notice(session, case, kind=f"decision_{outcome}", statement=statement)
    _event(
        session,
        case,
        kind=f"decided_{outcome}",
        actor="trust_safety",
        actor_id=staff_id,
        body={"notice_id": notice.id, "reasons": reasons},
    )
    emit(session, "notice.decided", owner_id=case.owner_id, case_id=case.id, decision=outcome, notice_id=notice.id)  # noqa: E501
    return case


# ---- the person's side -------------------------------------------------------------------------------


def notices_of(session: Session, *, owner_id: str) -> list[Notice]:
    """The person's notices, newest first (deadlines settled first)."""
    for case_id in session.scalars(
        select(SafetyCase.subject_id).where(SafetyCase.owner_id == owner_id)
    ).all():
        settle_due(session, subject_id=case_id)
    return list(
        session.scalars(
            select(Notice).where(Notice.owner_id == owner_id).order_by(Notice.sent_at.desc(), Notice.id)
        )
    )


def get_notice(session: Session, *, owner_id: str, notice_id: str) -> Notice:
    notice = session.get(Notice, notice_id)
    if notice is None or notice.owner_id != owner_id:
        raise NotFound("No such notice.", code="notice_not_found")
    settle_due(session, subject_id=session.get(SafetyCase, notice.case_id).subject_id)  # type: ignore[union-attr]
    return notice


def timeline(session: Session, *, case_id: str) -> list[CaseEvent]:
    return list(
        session.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.seq))
    )


def reply(session: Session, *, owner_id: str, notice_id: str, message: str) -> CaseEvent:
    """The person tells trust & safety what they did or why the notice is wrong. A reply inside the cure
    period claims a fix: the deadline no longer revokes anything, and only a staff decision taken after
    reading the reply can; the person is told so."""
    notice = get_notice(session, owner_id=owner_id, notice_id=notice_id)
    case = session.get(SafetyCase, notice.case_id)
    assert case is not None
    claimed = case.state == CaseState.NOTICE_SENT.value
    event = _event(
        session,
        case,
        kind="owner_replied",
        actor="you",
        actor_id=owner_id,
        body={"message": message, "fix_claimed": claimed},
    )
    if claimed:
        case.state = CaseState.FIX_CLAIMED.value
        statement = _statement(
            case,
            consequence="You told us you fixed it in time: your licence stays in force until someone in "
            "trust & safety has read your reply and decided.",
            deadline=None,
            how_to_fix="Nothing more unless we write to you again.",
        )
        received = _notice(session, case, kind="fix_claimed", statement=statement)
        emit(
            session,
            "notice.decided",
            owner_id=case.owner_id,
            case_id=case.id,
            decision="fix_claimed",
            notice_id=received.id,
        )
    return event


def appeal(session: Session, *, owner_id: str, notice_id: str, statement: str) -> SafetyCase:
    """Appeal a decision: the case is reopened for trust & safety to decide again."""
    notice = get_notice(session, owner_id=owner_id, notice_id=notice_id)
    case = session.get(SafetyCase, notice.case_id)
    assert case is not None
    if case.state == CaseState.APPEALED.value:
        raise Conflict("This case is already under appeal.", code="already_appealed")
    case.state = CaseState.APPEALED.value
    case.decided_at = None
    _event(session, case, kind="appealed", actor="you", actor_id=owner_id, body={"statement": statement})
    return case


def on_render_ready(session: Session, event: Event) -> None:
    """A render is ready: write its generation record and licence in the same transaction."""
    render = session.get(Render, event.data["render_id"])
    if render is None:
        return
    model = session.get(PetModel, render.model_id) if render.model_id else None
    record_generation(session, render=render, model=model, settings=settings_of(session))


def generation_residues(session: Session, settings: Any) -> list[tuple[str, str]]:
    """What the inventory forbids in generation records: a bare content hash (they outlive their item)."""
    from petportrait.retention import fingerprints

    _ = settings
    rows = session.execute(select(Generation.id, Generation.owner_id, Generation.params))
    return fingerprints.raw_hash_residues(rows, what="the generation record")
