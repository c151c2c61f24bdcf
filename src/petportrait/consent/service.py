"""Marketing consent: requests, grants and declines, receipts, the marketing library and withdrawal."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.orm import Session

from petportrait.clock import utcnow
from petportrait.consent.models import (
    Consent,
    Decision,
    MarketingCopy,
    MarketingRequest,
    MarketingRequestItem,
)
from petportrait.consent.notices import CHANNELS, MARKETING_NOTICES
from petportrait.db import new_id
from petportrait.errors import Conflict, InvalidInput, NotFound
from petportrait.portraits.models import Render, RenderState
from petportrait.registry import emit, registry_of, settings_of
from petportrait.retention import audit, blobkeys, fingerprints, policy, tombstones
from petportrait.settings import Settings
from petportrait.storage.base import BlobStore

# The kinds of item marketing may ask for: photos and portraits; model weights never leave their use.
MARKETABLE = ("photo", "render")
RECEIPT_VERSION = "KI-CR-v1.1.0"
GRANT_METHOD = "explicit grant of this item in the petportrait consent inbox"
WITHDRAWN = "consent_withdrawn"

WITHDRAWAL_REACHES = (
    "Withdrawing deletes the copy in our marketing library at once, with its data key, so every stored "
    "version of it (bucket versions and replicas included) becomes unreadable, and nothing new is made "
    "from it."
)
WITHDRAWAL_CANNOT_REACH = (
    "It cannot reach backups made while the consent stood (they are kept no longer than their own retention "
    "period, then deleted) or copies that staff had already exported for a campaign before you withdrew."
)


def live_item(session: Session, *, kind: str, item_id: str, now: datetime | None = None) -> Any:
    """A photo or a ready render that has not expired, or None."""
    model = registry_of(session).item_model(kind) if kind in MARKETABLE else None
    if model is None:
        return None
    row = session.get(model, item_id)
    if row is None or policy.is_expired(row, now, settings=settings_of(session)):
        return None
    if isinstance(row, Render) and (row.state != RenderState.READY.value or not row.storage_key):
        return None
    return row


def file_request(
    session: Session,
    *,
    staff_id: str,
    items: list[tuple[str, str]],
    channels: list[str],
    purpose: str,
    notice_version: str,
) -> MarketingRequest:
    """A marketing request naming exact items of one person (photos or renders), channels and purpose."""
    if notice_version not in MARKETING_NOTICES:
        raise InvalidInput(
            f"Unknown notice version; one of: {', '.join(MARKETING_NOTICES)}.", code="unknown_notice_version"
        )
    bad = sorted(set(channels) - set(CHANNELS))
    if bad or not channels:
        raise InvalidInput(f"channels must be some of: {', '.join(CHANNELS)}.", code="invalid_channels")
    if not items or not purpose.strip():
        raise InvalidInput("Name at least one item and the purpose.", code="invalid_request")
    rows = []
    for kind, item_id in dict.fromkeys(items):
        if kind not in MARKETABLE:
            raise InvalidInput(
                "Only photos and portraits can be asked for; model weights never leave their use.",
                code="not_marketable",
            )
        row = live_item(session, kind=kind, item_id=item_id)
        if row is None:
            raise NotFound(f"No such {kind}.", code="item_not_found")
        rows.append((kind, row))
    owners = {row.owner_id for _, row in rows}
    if len(owners) != 1:
        raise InvalidInput("A request names the items of one person.", code="items_of_several_people")
    owner_id = owners.pop()
    request = MarketingRequest(
        owner_id=owner_id,
        requested_by=staff_id,
        purpose=purpose.strip(),
        channels=list(dict.fromkeys(channels)),
        notice_version=notice_version,
        created_at=utcnow(),
    )
    session.add(request)
    session.flush()
    for kind, row in rows:
        session.add(
            MarketingRequestItem(request_id=request.id, owner_id=owner_id, item_kind=kind, item_id=row.id)
        )
    session.flush()
    audit.record(
        session,
        action="consent.requested",
        actor_id=staff_id,
        subject_kind="marketing_request",
        subject_id=request.id,
        owner_id=owner_id,
        purpose="marketing",
        details={"items": [[k, r.id] for k, r in rows], "channels": request.channels},
    )
    emit(session, "consent.requested", owner_id=owner_id, request_id=request.id)
    return request


def request_items(session: Session, request_id: str) -> list[MarketingRequestItem]:
    return list(
        session.scalars(
            select(MarketingRequestItem)
            .where(MarketingRequestItem.request_id == request_id)
            .order_by(MarketingRequestItem.id)
        )
    )


def shown(request: MarketingRequest) -> dict[str, Any]:
    """What the person is shown about a request (and what a receipt repeats)."""
    return {
        "purpose": request.purpose,
        "channels": list(request.channels),
        "notice": {"version": request.notice_version, "text": MARKETING_NOTICES[request.notice_version]},
        "requested_at": request.created_at.isoformat(),
    }


def inbox(session: Session, *, owner_id: str) -> list[MarketingRequest]:
    """The person's marketing requests, newest first."""
    return list(
        session.scalars(
            select(MarketingRequest)
            .where(MarketingRequest.owner_id == owner_id)
            .order_by(MarketingRequest.created_at.desc(), MarketingRequest.id)
        )
    )


def requests_by(session: Session, *, staff_id: str | None = None) -> list[MarketingRequest]:
    query = select(MarketingRequest).order_by(MarketingRequest.created_at.desc())
    if staff_id is not None:
        query = query.where(MarketingRequest.requested_by == staff_id)
    return list(session.scalars(query))


def _pending_item(session: Session, *, owner_id: str, request_id: str, item_id: str) -> MarketingRequestItem:
    item = session.get(MarketingRequestItem, item_id)
    if item is None or item.owner_id != owner_id or item.request_id != request_id:
        raise NotFound("No such request item.", code="request_item_not_found")
    if item.decision != Decision.PENDING.value:
        raise Conflict(f"You already answered this item ({item.decision}).", code="already_answered")
    return item


def build_receipt(
    *, consent: Consent, request: MarketingRequest, principal: str, item: dict[str, Any], settings: Settings
) -> dict[str, Any]:
    """A consent receipt after the Kantara Consent Receipt specification (v1.1), with our fields."""
    seen = shown(request)
    return {
        "version": RECEIPT_VERSION,
        "jurisdiction": "as set by the operator of this service",
        "consentReceiptID": consent.id,
        "consentTimestamp": int(consent.granted_at.timestamp()),
        "timestamp": consent.granted_at.isoformat(),
        "collectionMethod": consent.method,
        "method": consent.method,
        "piiPrincipalId": principal,
        "principal": principal,
        "piiControllers": [
            {"piiController": "petportrait", "url": settings.public_base_url, "onBehalf": False}
        ],
        "policyUrl": f"{settings.public_base_url}/api/v1/me/consents/{consent.id}/receipt",
        "notice": seen["notice"],
        "notice_version": seen["notice"]["version"],
        "purposes": [seen["purpose"]],
        "channels": seen["channels"],
        "items": [item],
        "services": [
            {
                "service": "petportrait marketing",
                "purposes": [
                    {
                        "purpose": seen["purpose"],
                        "purposeCategory": ["marketing"],
                        "consentType": "EXPLICIT",
                        "piiCategory": [f"pet {item['kind']}"],
                        "primaryPurpose": False,
                        "termination": "until withdrawn: POST /api/v1/me/consents/{id}/withdraw. "
                        + WITHDRAWAL_REACHES
                        + " "
                        + WITHDRAWAL_CANNOT_REACH,
                        "thirdPartyDisclosure": False,
                        "channels": seen["channels"],
                    }
                ],
            }
        ],
        "sensitive": False,
        "spiCat": [],
        "language": "en",
    }


def grant(
    session: Session,
    *,
    blobs: BlobStore,
    owner_id: str,
    request_id: str,
    item_id: str,
    notice_version: str,
    principal: str,
    settings: Settings,
) -> Consent:
    """Grant one item: a consent with its receipt, and a copy in the marketing library."""
    item = _pending_item(session, owner_id=owner_id, request_id=request_id, item_id=item_id)
    request = session.get(MarketingRequest, request_id)
    assert request is not None
    if notice_version != request.notice_version:
        raise Conflict(
            "The notice changed since you read it; read the request again before you answer.",
            code="notice_changed",
        )
    source = live_item(session, kind=item.item_kind, item_id=item.item_id)
    if source is None or source.owner_id != owner_id:
        raise Conflict("This item no longer exists; nothing can be granted.", code="item_gone")
    now = utcnow()
    consent = Consent(
        id=new_id(),
        owner_id=owner_id,
        request_id=request.id,
        request_item_id=item.id,
        item_kind=item.item_kind,
        item_id=item.item_id,
        purpose=request.purpose,
        channels=list(request.channels),
        notice_version=request.notice_version,
        method=GRANT_METHOD,
        granted_at=now,
    )
    data = blobs.get_bytes(source.storage_key)
    digest = hashlib.sha256(data).hexdigest()
    extension = source.storage_key.rsplit(".", 1)[-1] if "." in source.storage_key else "bin"
    copy_id = new_id()
    key = blobkeys.marketing_key(owner_id=owner_id, copy_id=copy_id, extension=extension)
    blobs.put_bytes(key, data)
    consent.receipt = build_receipt(
        consent=consent,
        request=request,
        principal=principal,
        # the receipt outlives the copy: it keeps a fingerprint under the account's key, not the hash
        item={
            "kind": item.item_kind,
            "id": item.item_id,
            "fingerprint": fingerprints.fingerprint(session, owner_id, digest),
        },
        settings=settings,
    )
    session.add(consent)
    session.add(
        MarketingCopy(
            id=copy_id,
            consent_id=consent.id,
            owner_id=owner_id,
            source_kind=item.item_kind,
            source_id=item.item_id,
            storage_key=key,
            content_type=source.content_type or "application/octet-stream",
            size=len(data),
            sha256=digest,
            copied_at=now,
        )
    )
    item.decision = Decision.GRANTED.value
    item.decided_at = now
    item.consent_id = consent.id
    session.flush()
    events = [
        audit.AuditEvent(
            action="consent.granted",
            actor_id=owner_id,
            subject_kind=item.item_kind,
            subject_id=item.item_id,
            owner_id=owner_id,
            purpose="marketing",
            details={"consent_id": consent.id, "copy_id": copy_id, "channels": consent.channels},
        )
    ]
    if item.item_kind == "photo":
        events.append(
            audit.AuditEvent(
                action="photo.read",
                actor_id=owner_id,
                subject_kind="photo",
                subject_id=item.item_id,
                owner_id=owner_id,
                purpose="marketing_copy",
            )
        )
    audit.record_many(session, events, at=now)
    emit(session, "consent.granted", owner_id=owner_id, consent_id=consent.id)
    return consent


def decline(session: Session, *, owner_id: str, request_id: str, item_id: str) -> MarketingRequestItem:
    """Decline one item: nothing is copied, and the request cannot be answered again."""
    item = _pending_item(session, owner_id=owner_id, request_id=request_id, item_id=item_id)
    item.decision = Decision.DECLINED.value
    item.decided_at = utcnow()
    audit.record(
        session,
        action="consent.declined",
        actor_id=owner_id,
        subject_kind=item.item_kind,
        subject_id=item.item_id,
        owner_id=owner_id,
        purpose="marketing",
        details={"request_id": request_id},
    )
    return item


def consents_of(session: Session, *, owner_id: str) -> list[Consent]:
    return list(
        session.scalars(
            select(Consent)
            .where(Consent.owner_id == owner_id)
            .order_by(Consent.granted_at.desc(), Consent.id)
        )
    )


def get_consent(session: Session, *, owner_id: str, consent_id: str) -> Consent:
    consent = session.get(Consent, consent_id)
    if consent is None or consent.owner_id != owner_id:
        raise NotFound("No such consent.", code="consent_not_found")
    return consent


def copy_of(session: Session, consent_id: str) -> MarketingCopy | None:
    return session.scalar(select(MarketingCopy).where(MarketingCopy.consent_id == consent_id))


def withdraw(
    session: Session, *, blobs: BlobStore, owner_id: str, consent_id: str, actor_id: str | None = None
) -> Consent:
    """Withdraw a consent: the library copy is deleted now (or, under a legal hold, by the sweeper
    once the hold ends); it leaves the library and its exports at once."""
    consent = get_consent(session, owner_id=owner_id, consent_id=consent_id)
    if consent.withdrawn_at is not None:
        return consent
    now = utcnow()
    consent.withdrawn_at = now
    emit(session, "consent.withdrawn", owner_id=owner_id, consent_id=consent.id)
    copy = copy_of(session, consent.id)
    audit.record(
        session,
        action="consent.withdrawn",
        actor_id=actor_id or owner_id,
        subject_kind=consent.item_kind,
        subject_id=consent.item_id,
        owner_id=owner_id,
        purpose="marketing",
        details={"consent_id": consent.id, "copy_id": copy.id if copy else None},
    )
    if copy is not None:
        copy.expires_at = now
        session.flush()
        # delete_now checks for a legal hold before it changes anything; a held copy is hidden at once
        # and the sweeper deletes it when the hold ends
        with contextlib.suppress(Conflict):
            tombstones.delete_now(
                session,
                blobs=blobs,
                kind="marketing",
                item_id=copy.id,
                owner_id=owner_id,
                actor_id=actor_id or owner_id,
                reason=WITHDRAWN,
            )
    return consent


def withdraw_all_on_erasure(session: Session, user_id: str, actor_id: str | None) -> None:
    """Erasure hook: every consent is withdrawn and every pending request declined; the next sweep
    deletes the library copies (rows of erased accounts are due whatever their expiry)."""
    now = utcnow()
    for consent in session.scalars(
        select(Consent).where(Consent.owner_id == user_id, Consent.withdrawn_at.is_(None))
    ):
        consent.withdrawn_at = now
    for copy in session.scalars(select(MarketingCopy).where(MarketingCopy.owner_id == user_id)):
        if copy.expires_at is None or copy.expires_at > now:
            copy.expires_at = now
    for item in session.scalars(
        select(MarketingRequestItem).where(
            MarketingRequestItem.owner_id == user_id, MarketingRequestItem.decision == Decision.PENDING.value
        )
    ):
        item.decision = Decision.DECLINED.value
        item.decided_at = now
    session.flush()
    audit.record(
        session,
        action="consent.withdrawn_all",
        actor_id=actor_id,
        subject_kind="account",
        subject_id=user_id,
        owner_id=user_id,
        purpose="erasure",
    )


# ---- the marketing library ---------------------------------------------------------------------------


def _licence_not_revoked() -> ColumnElement[bool]:
    """A copy of a portrait whose licence was revoked under the content policy is out of the library."""
    from petportrait.rights.models import Licence, LicenceStatus

    return ~exists().where(
        MarketingCopy.source_kind == "render",
        Licence.render_id == MarketingCopy.source_id,
        Licence.status == LicenceStatus.REVOKED.value,
    )


def library(session: Session) -> list[tuple[MarketingCopy, Consent]]:
    """Copies whose consent stands and whose portrait licence is not revoked: all marketing may use."""
    from petportrait.rights import service as rights_service

    rights_service.settle_due(session)  # a cure deadline that passed revokes before anything is listed
    rows = session.execute(
        select(MarketingCopy, Consent)
        .join(Consent, Consent.id == MarketingCopy.consent_id)
        .where(Consent.withdrawn_at.is_(None), MarketingCopy.expires_at.is_(None), _licence_not_revoked())
        .order_by(MarketingCopy.copied_at, MarketingCopy.id)
    ).all()
    return [(row[0], row[1]) for row in rows]


def standing_copy(session: Session, *, copy_id: str) -> tuple[MarketingCopy, Consent] | None:
    """A library copy marketing may use now: consent standing, portrait licence not revoked."""
    from petportrait.rights import service as rights_service

    copy = session.get(MarketingCopy, copy_id)
    if copy is not None and copy.source_kind == "render":
        rights_service.settle_due(session, subject_id=copy.source_id)
    row = session.execute(
        select(MarketingCopy, Consent)
        .join(Consent, Consent.id == MarketingCopy.consent_id)
        .where(
            MarketingCopy.id == copy_id,
            Consent.withdrawn_at.is_(None),
            MarketingCopy.expires_at.is_(None),
            _licence_not_revoked(),
        )
    ).one_or_none()
    return (row[0], row[1]) if row is not None else None


def standing_consent_for(session: Session, *, kind: str, item_id: str) -> Consent | None:
    return session.scalar(
        select(Consent).where(
            Consent.item_kind == kind, Consent.item_id == item_id, Consent.withdrawn_at.is_(None)
        )
    )


def export_receipts(session: Session, owner_id: str) -> list[dict[str, Any]]:
    """The consent_receipts section of a person's export: each receipt as issued and its status."""
    out = []
    for consent in sorted(consents_of(session, owner_id=owner_id), key=lambda c: (c.granted_at, c.id)):
        copy = copy_of(session, consent.id)
        out.append(
            {
                "receipt": consent.receipt,
                "status": "withdrawn" if consent.withdrawn_at else "standing",
                "withdrawn_at": consent.withdrawn_at.isoformat() if consent.withdrawn_at else None,
                "library_copy": (
                    {"id": copy.id, "sha256": copy.sha256}
                    if copy is not None and copy.expires_at is None
                    else None
                ),
            }
        )
    return out


def receipt_residues(session: Session, settings: Any) -> list[tuple[str, str]]:
    """What the inventory forbids in receipts: a bare content hash (they outlive their item)."""
    from petportrait.retention import fingerprints

    _ = settings
    rows = session.execute(select(Consent.id, Consent.owner_id, Consent.receipt))
    return fingerprints.raw_hash_residues(rows, what="the consent receipt")
