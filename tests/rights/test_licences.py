"""Generation records, licences and signed provenance: public verification, C2PA manifests, tampering."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import c2pa
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from petportrait.db import session_scope
from petportrait.portraits.models import PetModel, Render
from petportrait.rights import provenance
from petportrait.rights import service as rights_service
from petportrait.rights.models import ContentReport, Generation, Licence
from petportrait.web.app import Services, create_app
from tests.conftest import PASSWORD, make_settings, sign_up
from tests.rights.helpers import add_items, audit_entries, png_bytes, user_id


def _download(client: TestClient, headers: dict[str, str], render_id: str) -> bytes:
    response = client.get(f"/api/v1/renders/{render_id}/content", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return response.content


def _anchors(services: Services) -> bytes:
    return (provenance.keys_dir(services.settings) / "ca.pem").read_bytes()


def _read(data: bytes, anchors: bytes) -> tuple[str | None, dict[str, object] | None, dict[str, object]]:
    settings = c2pa.Settings.from_dict(
        {"verify": {"verify_trust": True}, "trust": {"trust_anchors": anchors.decode()}}
    )
    with (
        c2pa.Context(settings) as context,
        c2pa.Reader("image/png", io.BytesIO(data), context=context) as reader,
    ):
        return (
            reader.get_validation_state(),
            reader.get_active_manifest(),
            reader.get_validation_results() or {},
        )


def test_a_download_carries_a_signed_c2pa_manifest_that_verifies_and_names_the_licence(
    client: TestClient, services: Services
) -> None:
    person = sign_up(client, "owner@example.com")
    items = add_items(services, user_id(services, "owner@example.com"))
    signed = _download(client, person, items.render_id)
    with session_scope(services.session_factory) as session:
        licence = session.scalar(select(Licence).where(Licence.render_id == items.render_id))
        assert licence is not None and licence.status == "active"
        render = session.get(Render, items.render_id)
        assert render is not None and licence.content_sha256 == render.sha256
        generation = session.get(Generation, licence.generation_id)
        assert generation is not None
        assert (generation.model_id, generation.seed, generation.prompt) == (
            items.model_id,
            render.seed,
            "a portrait of {pet} in watercolour",
        )
        licence_id = licence.id

    state, manifest, results = _read(signed, _anchors(services))
    assert state == "Trusted", results
    assert manifest is not None
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}  # type: ignore[index, union-attr]
    created = assertions["c2pa.actions.v2"]["actions"][0]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"].endswith("/trainedAlgorithmicMedia")
    assert "petportrait" in created["softwareAgent"]["name"]
    assert assertions["com.petportrait.licence"]["licence_id"] == licence_id
    assert assertions["com.petportrait.licence"]["verify_url"].endswith(f"/licences/{licence_id}")
    assert manifest["signature_info"]["common_name"] == "petportrait development signer"  # type: ignore[index]

    # the service's own check agrees, and names the licence
    checked = client.post("/api/v1/provenance/verify", content=signed).json()
    assert checked["ok"] and checked["licence"]["licence_id"] == licence_id
    # a second download reuses the licence
    _download(client, person, items.render_id)
    with session_scope(services.session_factory) as session:
        assert len(list(session.scalars(select(Licence)))) == 1


def test_a_tampered_download_fails_verification(client: TestClient, services: Services) -> None:
    person = sign_up(client, "owner@example.com")
    items = add_items(services, user_id(services, "owner@example.com"))
    signed = bytearray(_download(client, person, items.render_id))
    at = signed.find(b"IDAT") + 12
    signed[at] ^= 0xFF
    state, _manifest, results = _read(bytes(signed), _anchors(services))
    assert state == "Invalid"
    failures = [f["code"] for f in results["activeManifest"]["failure"]]  # type: ignore[index]
    assert "assertion.dataHash.mismatch" in failures
    checked = client.post("/api/v1/provenance/verify", content=bytes(signed)).json()
    assert not checked["ok"] and checked["state"] == "Invalid"
    # an unsigned file has no manifest at all
    unsigned = client.post("/api/v1/provenance/verify", content=png_bytes()).json()
    assert unsigned["state"] == "None" and not unsigned["ok"]
    # a manifest signed by someone the service does not trust is not trusted
    chain, key, _ca = provenance.make_development_chain()
    foreign = provenance.sign_png(
        bytes(_download(client, person, items.render_id)),
        material=provenance.SigningMaterial(chain, key, _ca, development=True),
        manifest=provenance.manifest_definition(
            title="x.png", licence_id="f" * 32, verify_url="x", generator="other", content_sha256="0"
        ),
    )
    assert not client.post("/api/v1/provenance/verify", content=foreign).json()["ok"]


def test_the_public_licence_page_and_api_show_pseudonym_hash_and_status(
    client: TestClient, services: Services
) -> None:
    person = sign_up(client, "owner@example.com")
    items = add_items(services, user_id(services, "owner@example.com"))
    _download(client, person, items.render_id)
    mine = client.get("/api/v1/me/licences", headers=person).json()["items"]
    assert len(mine) == 1
    licence_id = mine[0]["id"]
    public = client.get(f"/api/v1/licences/{licence_id}")  # no sign-in
    assert public.status_code == 200
    body = public.json()
    assert body["status"] == "active" and body["revoked_by_case"] is None
    assert body["holder"].startswith("pp-") and items.owner_id not in body["holder"]
    with session_scope(services.session_factory) as session:
        render = session.get(Render, items.render_id)
        assert render is not None
        assert body["content_sha256"] == render.sha256
    assert "exclusive" in body["terms"]["grant"] and "not sell" in body["terms"]["no_resale"]
    assert "Similar images may be made by others" in body["terms"]["similar_images"]
    text = json.dumps(body)
    assert "example.com" not in text and items.owner_id not in text
    page = client.get(f"/licences/{licence_id}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert (
        body["holder"] in page.text
        and body["content_sha256"] in page.text
        and "This licence is active" in page.text
    )
    assert "example.com" not in page.text
    assert client.get("/api/v1/licences/" + "0" * 32).json()["code"] == "licence_not_found"
    assert client.get("/licences/" + "0" * 32).status_code == 404


def test_the_render_job_writes_the_generation_record_and_licence_with_the_ready_render(
    services: Services,
) -> None:
    """The runner calls record_generation in the transaction that marks the render ready; it is idempotent."""
    from petportrait.clock import utcnow
    from tests.lifecycle.helpers import add_user

    with session_scope(services.session_factory) as session:
        owner = add_user(session, at=utcnow())
    items = add_items(services, owner.id)
    with session_scope(services.session_factory) as session:
        render = session.get(Render, items.render_id)
        model = session.get(PetModel, items.model_id)
        assert render is not None
        first = rights_service.record_generation(
            session, render=render, model=model, settings=services.settings
        )
        again = rights_service.record_generation(
            session, render=render, model=model, settings=services.settings
        )
        assert first.id == again.id
        generation = session.get(Generation, first.generation_id)
        assert generation is not None and generation.base_model == "preview"
    assert audit_entries(services, action="licence.granted", subject_id=items.render_id)


def test_the_export_holds_licences_and_erasure_scrubs_prompts(client: TestClient, services: Services) -> None:
    person = sign_up(client, "owner@example.com")
    items = add_items(services, user_id(services, "owner@example.com"))
    _download(client, person, items.render_id)
    export = client.post("/api/v1/me/export", headers=person)
    with zipfile.ZipFile(io.BytesIO(export.content)) as archive:
        licences = json.loads(archive.read("licences.json"))
    assert [(entry["render_id"], entry["status"]) for entry in licences] == [(items.render_id, "active")]
    assert licences[0]["generation"]["prompt"] == "a portrait of {pet} in watercolour"
    licence_id = licences[0]["id"]
    reauth = {**person, "X-Current-Password": PASSWORD}
    assert client.request("DELETE", "/api/v1/me", headers=reauth).status_code == 202
    with session_scope(services.session_factory) as session:
        generation = session.scalar(select(Generation).where(Generation.render_id == items.render_id))
        assert generation is not None and generation.prompt is None
    assert client.get(f"/api/v1/licences/{licence_id}").json()["status"] == "active"


def test_a_development_certificate_is_made_once_and_production_refuses_to_start_without_one(
    tmp_path: Path, services: Services
) -> None:
    dev = make_settings(tmp_path / "dev", database={"url": services.settings.database_url})
    first = provenance.signing_material(dev)
    provenance._CACHE.clear()
    second = provenance.signing_material(dev)
    assert first.chain_pem == second.chain_pem and first.development
    assert (provenance.keys_dir(dev) / "signer-key.pem").stat().st_mode & 0o077 == 0
    production = make_settings(
        tmp_path / "prod", environment="production", database={"url": services.settings.database_url}
    )
    app = create_app(services=Services(**{**services.__dict__, "settings": production}))
    with pytest.raises(provenance.SigningNotConfigured), TestClient(app):
        pass
    assert not (tmp_path / "prod" / "keys").exists()
    # a configured certificate is used in production
    chain, key, ca = provenance.make_development_chain()
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    configured = make_settings(
        tmp_path / "prod2",
        environment="production",
        rights={"signing_cert": tmp_path / "chain.pem", "signing_key": tmp_path / "key.pem"},
    )
    material = provenance.signing_material(configured)
    assert not material.development and material.anchors_pem == ca


def test_anyone_can_report_a_portrait_from_its_licence_page(client: TestClient, services: Services) -> None:
    person = sign_up(client, "owner@example.com")
    items = add_items(services, user_id(services, "owner@example.com"))
    _download(client, person, items.render_id)
    licence_id = client.get("/api/v1/me/licences", headers=person).json()["items"][0]["id"]
    visitor = TestClient(client.app)  # no account, a cookie jar of its own
    page = visitor.get(f"/licences/{licence_id}")
    assert "will not assert its copyright" in page.text and "14 days to fix" in page.text
    assert "POST /api/v1/reports" not in page.text
    token = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text)
    assert token is not None
    unchosen = visitor.post(f"/licences/{licence_id}/report", data={"csrf_token": token.group(1)})
    assert unchosen.status_code == 422 and "Choose what is wrong with it." in unchosen.text
    sent = visitor.post(
        f"/licences/{licence_id}/report",
        data={"csrf_token": token.group(1), "reason": "hate", "details": "a symbol in the corner"},
    )
    assert sent.status_code == 200 and "your report is received" in sent.text
    with session_scope(services.session_factory) as session:
        reports = list(session.scalars(select(ContentReport)))
        assert [(r.licence_id, r.reason) for r in reports] == [(licence_id, "hate")]
    terms = visitor.get("/terms")
    assert (
        terms.status_code == 200 and "(14 days unless" in terms.text and "Your photos are yours" in terms.text
    )
