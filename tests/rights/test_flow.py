"""One real flow: a worker process trains and renders with the preview model; the render job writes the
generation record and licence with the ready render, and the download's manifest verifies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from petportrait.db import session_scope
from petportrait.portraits.models import Render
from petportrait.rights import provenance
from petportrait.rights.models import Generation, Licence
from tests.jobs.stack import Stack, close_stack, make_stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    (tmp_path / "models").mkdir()
    built = make_stack(tmp_path / "stack", queue_url=None, shared_models=tmp_path / "models")
    yield built
    close_stack(built)


def test_the_render_job_licenses_each_render_and_downloads_verify(stack: Stack) -> None:
    stack.start_worker()
    person = stack.user("flow-owner@example.com")
    pet_id = stack.pet_with_photos(person, "dog")
    trained = stack.client.post(f"/api/v1/pets/{pet_id}/models", headers=person).json()
    assert stack.wait_end(person, trained["job"]["id"])["state"] == "succeeded", stack.worker_logs()
    asked = stack.client.post(
        f"/api/v1/models/{trained['model']['id']}/renders",
        json={"prompt": "a portrait of {pet} in a garden", "count": 1, "seed": 3, "steps": 2},
        headers=person,
    ).json()
    assert stack.wait_end(person, asked["job"]["id"])["state"] == "succeeded", stack.worker_logs()
    render_id = asked["renders"][0]["id"]
    with session_scope(stack.services.session_factory) as session:  # before any download
        render = session.get(Render, render_id)
        licence = session.scalar(select(Licence).where(Licence.render_id == render_id))
        assert render is not None and licence is not None
        generation = session.get(Generation, licence.generation_id)
        assert generation is not None
        assert licence.content_sha256 == render.sha256 == generation.content_sha256
        assert (generation.prompt, generation.seed, generation.model_id) == (
            "a portrait of {pet} in a garden",
            3,
            trained["model"]["id"],
        )
        assert generation.is_preview and licence.granted_at == render.rendered_at
        licence_id = licence.id
    signed = stack.client.get(f"/api/v1/renders/{render_id}/content", headers=person).content
    anchors = (provenance.keys_dir(stack.services.settings) / "ca.pem").read_bytes()
    checked = provenance.verify(signed, anchors_pem=anchors)
    assert checked.ok and checked.licence() is not None
    assert checked.licence()["licence_id"] == licence_id  # type: ignore[index]
