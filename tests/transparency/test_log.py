"""The transparency log of the audit chain: receipts that verify offline, proofs over HTTP, and rewritten
history that a checkpoint saved before exposes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from petportrait import cli
from petportrait.client import Client
from petportrait.db import session_scope
from petportrait.retention import audit, signed_notes, transparency
from petportrait.retention.models import AuditEntry
from petportrait.retention.receipt_check import (
    ReceiptInvalid,
    check_extension,
    check_receipt,
    open_checkpoint,
)
from petportrait.web.app import Services
from tests.conftest import PASSWORD
from tests.live import live_server
from tests.transparency.forge import rewrite_history


def _record(services: Services, owner_id: str, count: int, **details: object) -> list[int]:
    seqs = []
    with session_scope(services.session_factory) as session:
        for i in range(count):
            entry = audit.record(
                session,
                action="photo.deleted",
                actor_id=owner_id,
                subject_kind="photo",
                subject_id=f"p{i}",
                owner_id=owner_id,
                purpose="owner_request",
                details={"i": i, **details},
            )
            seqs.append(entry.seq)
    return seqs


def _sign(services: Services) -> None:
    with session_scope(services.session_factory) as session:
        transparency.sign_checkpoint(session, services.settings)


def _user_id(client: TestClient, headers: dict[str, str]) -> str:
    return str(client.get("/api/v1/me", headers=headers).json()["id"])


def test_a_receipt_verifies_offline_and_against_a_newer_checkpoint(
    client: TestClient, services: Services, alice: dict[str, str], bob: dict[str, str]
) -> None:
    seqs = _record(services, _user_id(client, alice), 5)
    response = client.get(f"/api/v1/me/audit/{seqs[2]}/receipt", headers=alice)
    assert response.status_code == 200, response.text
    receipt = response.json()
    published = client.get("/.well-known/petportrait-log").json()
    assert receipt["log_key"] == published["verifier_key"]
    checkpoint = check_receipt(receipt, log_key=published["verifier_key"])  # offline
    assert checkpoint.size >= seqs[-1] and checkpoint.origin == published["origin"]
    assert (
        client.get(f"/api/v1/me/audit/{seqs[2]}/receipt", headers=bob).json()["code"]
        == "audit_entry_not_found"
    )

    _record(services, "someone-else", 9)
    _sign(services)
    with live_server(services) as url, Client(url) as remote:
        result = remote.verify_receipt(receipt, log_key=published["verifier_key"])
    assert result["tree_size"] == checkpoint.size and result["newest_size"] == checkpoint.size + 9

    altered = {**receipt, "entry": {**receipt["entry"], "details": '{"i":3}'}}
    with pytest.raises(ReceiptInvalid, match="altered"):
        check_receipt(altered)
    other_key = signed_notes.verifier_key("other", signed_notes.Ed25519PrivateKey.generate().public_key())
    with pytest.raises(ReceiptInvalid, match="not signed by the log's key"):
        check_receipt(receipt, log_key=other_key)
    moved = {**receipt, "inclusion_path": list(reversed(receipt["inclusion_path"]))}
    with pytest.raises(ReceiptInvalid, match="not in the checkpoint's tree"):
        check_receipt(moved)


def test_an_entry_edited_in_the_database_no_longer_matches_its_receipt(
    client: TestClient, services: Services, alice: dict[str, str]
) -> None:
    seqs = _record(services, _user_id(client, alice), 4)
    check_receipt(client.get(f"/api/v1/me/audit/{seqs[1]}/receipt", headers=alice).json())
    with session_scope(services.session_factory) as session:
        session.execute(update(AuditEntry).where(AuditEntry.seq == seqs[1]).values(details='{"i":99}'))
    with pytest.raises(ReceiptInvalid, match="altered"):
        check_receipt(client.get(f"/api/v1/me/audit/{seqs[1]}/receipt", headers=alice).json())


@pytest.mark.parametrize("whole_chain", [False, True], ids=["one-entry-rehashed", "chain-recomputed"])
def test_rewritten_history_fails_the_consistency_proof_against_a_saved_checkpoint(
    client: TestClient, services: Services, alice: dict[str, str], whole_chain: bool
) -> None:
    owner = _user_id(client, alice)
    _record(services, owner, 6)
    key = client.get("/api/v1/transparency/key").text.strip()
    saved = client.get("/api/v1/transparency/checkpoint").text  # what a person or a witness kept
    older = open_checkpoint(saved, key)

    rewrite_history(services, 3, whole_chain=whole_chain)
    _record(services, owner, 2)
    _sign(services)
    with services.session_factory() as session:
        assert (
            audit.verify(session).ok is whole_chain
        )  # a recomputed chain verifies: only the checkpoint shows
    newer = client.get("/api/v1/transparency/checkpoint").text
    assert open_checkpoint(newer, key).size == older.size + 2
    response = client.get(
        "/api/v1/transparency/proofs/consistency", params={"first": older.size, "second": older.size + 2}
    )
    proof = response.json()["consistency_path"]
    with pytest.raises(ReceiptInvalid, match="does not extend"):
        check_extension(older, newer, proof, log_key=key)


def test_erasing_an_accounts_free_text_leaves_every_proof_valid(
    client: TestClient, services: Services, alice: dict[str, str]
) -> None:
    owner = _user_id(client, alice)
    with session_scope(services.session_factory) as session:
        reply = audit.text_ref(
            session, "my cat is called Biscuit", owner_id=owner, subject_kind="case", subject_id="c1"
        )
        entry = audit.record(
            session, action="case.replied", actor_id=owner, owner_id=owner, details={"reply": reply}
        )
        seq = entry.seq
    receipt = client.get(f"/api/v1/me/audit/{seq}/receipt", headers=alice).json()
    key = receipt["log_key"]
    older = check_receipt(receipt)

    erased = client.delete("/api/v1/me", headers={**alice, "X-Current-Password": PASSWORD})
    assert erased.status_code == 202
    erasure_receipt = erased.json()["log_receipt"]  # the erasure's own receipt, checkable offline
    assert (
        erasure_receipt["entry"]["action"] == "account.deleted"
        and erasure_receipt["entry"]["owner_id"] == owner
    )
    check_receipt(erasure_receipt, log_key=key)
    with session_scope(services.session_factory) as session:
        audit.erase_texts(session, owner, None)
        transparency.sign_checkpoint(session, services.settings)
    with services.session_factory() as session:
        erased = session.scalars(select(AuditEntry).where(AuditEntry.seq == seq)).all()
        assert audit.readable_details(session, erased) == [{"reply": audit.ERASED}]
        assert audit.verify(session).ok
    assert check_receipt(receipt, log_key=key) == older
    newer = client.get("/api/v1/transparency/checkpoint").text
    size = open_checkpoint(newer, key).size
    assert size > older.size
    proof = client.get(
        "/api/v1/transparency/proofs/consistency", params={"first": older.size, "second": size}
    )
    check_extension(older, newer, proof.json()["consistency_path"], log_key=key)
    inclusion = client.get(
        "/api/v1/transparency/proofs/inclusion", params={"index": seq - 1, "tree_size": size}
    )
    assert inclusion.status_code == 200 and inclusion.json()["inclusion_path"]


def test_cosignatures_are_checked_and_published_and_bad_requests_get_problems(
    client: TestClient, services: Services
) -> None:
    _record(services, "u1", 3)
    with session_scope(services.session_factory) as session:
        assert transparency.integrate(session, limit=2) == 2  # a backlog is integrated in steps
    task = next(t for t in services.registry.periodic_tasks if t.name == "retention.transparency_checkpoint")
    assert task.run(services) == {"size": 3}
    note = client.get("/api/v1/transparency/checkpoint").text
    checkpoint = signed_notes.parse_checkpoint(signed_notes.split_note(note)[0])
    witness = signed_notes.Ed25519PrivateKey.generate()
    vkey = signed_notes.verifier_key("witness.test", witness.public_key(), signed_notes.COSIGNATURE_V1)
    line = signed_notes.cosign(checkpoint.body, "witness.test", witness, 1_800_000_000)
    body = {"tree_size": checkpoint.size, "cosignature": line, "witness_key": vkey}
    assert client.post("/api/v1/transparency/cosignatures", json=body).status_code == 201
    assert client.get("/api/v1/transparency/checkpoint").text == note + line + "\n"
    forged = {
        **body,
        "cosignature": signed_notes.cosign(
            "other\n1\n" + checkpoint.body.split("\n")[2] + "\n", "witness.test", witness, 1
        ),
    }
    assert (
        client.post("/api/v1/transparency/cosignatures", json=forged).json()["code"] == "invalid_cosignature"
    )
    far_future = {**body, "cosignature": signed_notes.cosign(checkpoint.body, "witness.test", witness, 2**63)}
    refused = client.post("/api/v1/transparency/cosignatures", json=far_future)
    assert refused.json()["code"] == "invalid_cosignature"
    assert (
        client.post("/api/v1/transparency/cosignatures", json={**body, "tree_size": 99}).json()["code"]
        == "unknown_checkpoint"
    )
    far = client.get("/api/v1/transparency/proofs/inclusion", params={"index": 50, "tree_size": 60})
    assert far.status_code == 422 and far.json()["code"] == "proof_out_of_range"
    listed = client.get("/api/v1/transparency/checkpoints").json()
    assert [item["tree_size"] for item in listed["items"]] == [checkpoint.size]

    # the log publishes at most max_cosignatures per checkpoint, and only listed witnesses' when it lists any
    services.settings.transparency.max_cosignatures = 1
    other = signed_notes.Ed25519PrivateKey.generate()
    other_key = signed_notes.verifier_key("other.test", other.public_key(), signed_notes.COSIGNATURE_V1)
    second = {
        **body,
        "witness_key": other_key,
        "cosignature": signed_notes.cosign(checkpoint.body, "other.test", other, 1),
    }
    assert (
        client.post("/api/v1/transparency/cosignatures", json=second).json()["code"] == "cosignature_refused"
    )
    services.settings.transparency.max_cosignatures = 16
    services.settings.transparency.witnesses = [vkey]
    assert client.post("/api/v1/transparency/cosignatures", json=second).status_code == 403
    assert client.post("/api/v1/transparency/cosignatures", json=body).status_code == 201


def test_the_verify_receipt_command_checks_a_file_offline_and_online(
    client: TestClient, services: Services, alice: dict[str, str], tmp_path: Path
) -> None:
    seq = _record(services, _user_id(client, alice), 2)[0]
    receipt = client.get(f"/api/v1/me/audit/{seq}/receipt", headers=alice).json()
    good, bad = tmp_path / "receipt.json", tmp_path / "altered.json"
    good.write_text(json.dumps(receipt))
    bad.write_text(json.dumps({**receipt, "entry": {**receipt["entry"], "action": "photo.kept"}}))
    runner = CliRunner()
    offline = runner.invoke(cli.app, ["verify-receipt", str(good), "--offline", "--key", receipt["log_key"]])
    assert offline.exit_code == 0 and offline.output.startswith(f"OK: entry {seq} (photo.deleted)")
    refused = runner.invoke(cli.app, ["verify-receipt", str(bad), "--offline"])
    assert refused.exit_code == 1 and "INVALID" in refused.output
    _record(services, "u2", 3)
    _sign(services)
    with live_server(services) as url:
        online = runner.invoke(cli.app, ["verify-receipt", str(good), "--log", url])
    assert online.exit_code == 0, online.output
    assert f"checkpoint of size {receipt['tree_size'] + 3} extends it" in online.output
