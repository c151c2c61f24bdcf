"""Exclusivity and no resale as behaviour (data policy, clause 5): no API, page or export gives another
account a person's generation, a generation has one licence and one holder, and no door sells one."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from petportrait.db import session_scope
from petportrait.portraits.models import PetModel, Render
from petportrait.rights import service as rights_service
from petportrait.rights.models import Generation, Licence
from petportrait.web.app import Services, create_app
from tests.conftest import sign_up
from tests.rights.helpers import add_items, user_id
from tests.web.test_pages import _no_style_examples, page_sign_up  # noqa: F401 - autouse: no style examples made


def _alices_licensed_render(client: TestClient, services: Services) -> tuple[str, str, bytes]:
    """Alice's ready render, downloaded once (which grants its licence): render id, licence id, PNG."""
    alice = sign_up(client, "alice@example.com")
    items = add_items(services, user_id(services, "alice@example.com"))
    download = client.get(f"/api/v1/renders/{items.render_id}/content", headers=alice)
    assert download.status_code == 200, download.text
    (licence,) = client.get("/api/v1/me/licences", headers=alice).json()["items"]
    stored = services.blobs.get_bytes(_storage_key(services, items.render_id))
    return items.render_id, licence["id"], stored


def _storage_key(services: Services, render_id: str) -> str:
    with services.session_factory() as session:
        render = session.get(Render, render_id)
        assert render is not None and render.storage_key
        return render.storage_key


def test_no_api_or_export_of_another_account_gives_out_a_persons_generation(
    client: TestClient, services: Services
) -> None:
    render_id, licence_id, image = _alices_licensed_render(client, services)
    bob = sign_up(client, "bob@example.com")

    for path in (f"/api/v1/renders/{render_id}", f"/api/v1/renders/{render_id}/content"):
        response = client.get(path, headers=bob)
        assert response.status_code == 404 and response.json()["code"] == "render_not_found", path
    assert client.get("/api/v1/renders", headers=bob).json()["items"] == []
    assert client.get("/api/v1/me/licences", headers=bob).json()["items"] == []

    export = client.post("/api/v1/me/export", headers=bob)
    assert export.status_code == 200, export.text
    with zipfile.ZipFile(io.BytesIO(export.content)) as archive:
        assert json.loads(archive.read("licences.json")) == []
        for name in archive.namelist():
            data = archive.read(name)
            assert render_id.encode() not in data and licence_id.encode() not in data, name
            assert image not in data, name


def test_no_page_of_another_account_shows_or_hands_over_a_persons_generation(
    client: TestClient, services: Services
) -> None:
    render_id, _licence_id, _image = _alices_licensed_render(client, services)
    with TestClient(create_app(services=services), raise_server_exceptions=False) as browser:
        page_sign_up(browser, "carol@example.com")
        for path in (f"/portraits/{render_id}/image", f"/portraits/{render_id}/download"):
            response = browser.get(path, follow_redirects=False)
            assert response.status_code == 404, (path, response.status_code)
            assert not response.headers["content-type"].startswith("image/"), path
        for path in ("/portraits", "/portraits/gallery", "/me"):
            response = browser.get(path)
            assert response.status_code == 200, path
            assert render_id not in response.text, path


def test_a_generation_gets_one_licence_with_one_holder(client: TestClient, services: Services) -> None:
    render_id, licence_id, _image = _alices_licensed_render(client, services)
    with session_scope(services.session_factory) as session:
        render = session.get(Render, render_id)
        assert render is not None
        model = session.get(PetModel, render.model_id)
        again = rights_service.record_generation(
            session, render=render, model=model, settings=services.settings
        )
        assert again.id == licence_id
    with services.session_factory() as session:
        assert (
            session.scalar(select(func.count()).select_from(Licence).where(Licence.render_id == render_id))
            == 1
        )
        assert (
            session.scalar(
                select(func.count()).select_from(Generation).where(Generation.render_id == render_id)
            )
            == 1
        )
        first = session.get(Licence, licence_id)
        assert first is not None
        sign_up(client, "bob@example.com")
        bob_id = user_id(services, "bob@example.com")
        second = Licence(
            render_id=render_id,
            generation_id=first.generation_id,
            holder_id=bob_id,
            holder_pseudonym="pp-someone-else",
            content_sha256=first.content_sha256,
            terms_version=first.terms_version,
            granted_at=first.granted_at,
            status=first.status,
        )
        session.add(second)
        with pytest.raises(IntegrityError):  # the database itself refuses a second licence of a generation
            session.flush()


def test_no_door_transfers_changes_or_sells_a_licence_or_generation(services: Services) -> None:
    """Licences and generation records are only ever read through the app: no route writes one (a report about
    one is filed at /api/v1/reports, which changes no licence)."""
    app = create_app(services=services)
    writers = [
        (sorted(route.methods), route.path)
        for route in app.routes
        if isinstance(route, APIRoute)
        and any(word in route.path for word in ("licence", "generation", "resale", "transfer", "sell"))
        and set(route.methods) - {"GET", "HEAD"}
    ]
    assert writers == []
