"""The transparency log's HTTP edge: the log's key and checkpoints (C2SP), inclusion and consistency
proofs (RFC 9162), witnesses' cosignatures in, and a person's receipts for their audit entries.

Public (anyone may check the log): `/.well-known/petportrait-log`, `/api/v1/transparency/...`. A receipt
carries an entry's ids, so it is only given to the person the entry is about.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from petportrait.accounts.deps import CurrentUser
from petportrait.errors import Forbidden, InvalidInput, NotFound
from petportrait.http import SessionDep, SettingsDep
from petportrait.retention import signed_notes, transparency
from petportrait.retention.models import AuditEntry
from petportrait.retention.transparency_models import TlogCheckpoint

router = APIRouter(prefix="/transparency", tags=["transparency log"])
me_router = APIRouter(tags=["your data"])
well_known_router = APIRouter(tags=["transparency log"])

_NOTE = "text/plain; charset=utf-8"
_MAX = 2**63 - 1  # the largest seq or tree size a database column holds


class CosignatureIn(BaseModel):
    """A witness's cosignature of one checkpoint."""

    tree_size: int = Field(ge=0, le=_MAX)
    cosignature: str = Field(max_length=400, description="the cosignature/v1 signature line")
    witness_key: str = Field(max_length=500, description="the witness's verifier key (type 0x04)")


def _checkpoint_json(checkpoint: TlogCheckpoint) -> dict[str, Any]:
    return {
        "tree_size": checkpoint.size,
        "root_hash": checkpoint.root,
        "note": checkpoint.note,
        "created_at": checkpoint.created_at.isoformat(),
    }


@well_known_router.get("/.well-known/petportrait-log")
def describe_log(settings: SettingsDep) -> dict[str, Any]:
    """What a verifier or a witness needs: the log's origin, its public key, and where its proofs are."""
    base = settings.public_base_url.rstrip("/")
    return {
        "origin": transparency.origin(settings),
        "verifier_key": transparency.verifier_key(settings),
        "checkpoint": f"{base}/api/v1/transparency/checkpoint",
        "checkpoints": f"{base}/api/v1/transparency/checkpoints",
        "inclusion_proof": f"{base}/api/v1/transparency/proofs/inclusion?index=I&tree_size=N",
        "consistency_proof": f"{base}/api/v1/transparency/proofs/consistency?first=M&second=N",
        "cosignatures": f"{base}/api/v1/transparency/cosignatures",
        "hashing": "RFC 9162 (SHA-256, leaf 0x00, node 0x01); leaf i is audit entry i+1's chain hash",
    }


@router.get("/key", response_class=Response)
def log_key(settings: SettingsDep) -> Response:
    """The log's public key, as a C2SP verifier key."""
    return Response(transparency.verifier_key(settings) + "\n", media_type=_NOTE)


@router.get("/checkpoint", response_class=Response)
def newest_checkpoint(session: SessionDep, settings: SettingsDep) -> Response:
    """The newest signed checkpoint (C2SP tlog-checkpoint), with the witnesses' cosignatures appended."""
    checkpoint = transparency.latest_checkpoint(session)
    if checkpoint is None:
        checkpoint = transparency.sign_checkpoint(session, settings)
        session.commit()
    return Response(
        transparency.cosigned_note(session, checkpoint),
        media_type=_NOTE,
        headers={"Cache-Control": "no-store"},
    )


@router.get("/checkpoints")
def old_checkpoints(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[int | None, Query(ge=0, le=_MAX, description="tree sizes below this one")] = None,
) -> dict[str, Any]:
    """Every checkpoint signed, newest first (paged by tree size)."""
    page = transparency.list_checkpoints(session, before=before, limit=limit)
    return {
        "items": [_checkpoint_json(checkpoint) for checkpoint in page.items],
        "next_cursor": None if page.next_before is None else str(page.next_before),
        "next_before": page.next_before,
    }


@router.get("/proofs/inclusion")
def inclusion(
    session: SessionDep,
    index: Annotated[int, Query(ge=0, le=_MAX, description="leaf index: audit entry seq - 1")],
    tree_size: Annotated[int, Query(ge=1, le=_MAX)],
) -> dict[str, Any]:
    """RFC 9162 inclusion proof of one leaf in the tree of `tree_size` leaves (base64 hashes)."""
    try:
        path = transparency.inclusion_proof(session, index=index, size=tree_size)
    except transparency.UnknownEntry as exc:
        raise InvalidInput(str(exc), code="proof_out_of_range") from exc
    return {"leaf_index": index, "tree_size": tree_size, "inclusion_path": transparency.proof_json(path)}


@router.get("/proofs/consistency")
def consistency(
    session: SessionDep,
    first: Annotated[int, Query(ge=0, le=_MAX)],
    second: Annotated[int, Query(ge=0, le=_MAX)],
) -> dict[str, Any]:
    """RFC 9162 consistency proof that the tree of `second` leaves extends the tree of `first`."""
    try:
        path = transparency.consistency_proof(session, first=first, second=second)
    except transparency.UnknownEntry as exc:
        raise InvalidInput(str(exc), code="proof_out_of_range") from exc
    return {"first": first, "second": second, "consistency_path": transparency.proof_json(path)}


@router.post("/cosignatures", status_code=201)
def receive_cosignature(body: CosignatureIn, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    """Publish a witness's cosignature of one of the log's checkpoints (it must verify; only the witnesses
    listed in the settings, if any are; at most a few per checkpoint)."""
    try:
        row = transparency.add_cosignature(
            session, settings, tree_size=body.tree_size, line=body.cosignature, witness_key=body.witness_key
        )
    except transparency.CosignatureRefused as exc:
        raise Forbidden(str(exc), code="cosignature_refused") from exc
    except transparency.UnknownEntry as exc:
        raise NotFound(str(exc), code="unknown_checkpoint") from exc
    except signed_notes.NoteError as exc:
        raise InvalidInput(str(exc), code="invalid_cosignature") from exc
    session.commit()
    return {
        "tree_size": row.tree_size,
        "witness_key": row.witness_key,
        "signed_at": row.signed_at.isoformat(),
    }


@router.get("/cosignatures")
def list_cosignatures(session: SessionDep, tree_size: Annotated[int, Query(ge=0, le=_MAX)]) -> dict[str, Any]:
    """The cosignatures received for the checkpoint of this size."""
    rows = transparency.cosignatures(session, tree_size)
    return {
        "items": [
            {"witness_key": row.witness_key, "cosignature": row.line, "signed_at": row.signed_at.isoformat()}
            for row in rows
        ],
        "next_cursor": None,
    }


@me_router.get("/me/audit/{seq}/receipt", response_class=Response)
def audit_receipt(
    seq: Annotated[int, Path(ge=1, le=_MAX)], user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> Response:
    """A receipt anyone can check for one audit entry about you (a deletion, an erasure, a consent or
    licence decision): the entry, its inclusion proof and the signed checkpoint (`petportrait
    verify-receipt FILE`)."""
    entry = session.get(AuditEntry, seq)
    if entry is None or entry.owner_id != user.id:
        raise NotFound("No audit entry of yours has that number.", code="audit_entry_not_found")
    body = transparency.receipt(session, settings, seq)
    return Response(
        json.dumps(body, indent=2, sort_keys=True).encode(),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="receipt-{seq}.json"',
            "Cache-Control": "no-store",
        },
    )
