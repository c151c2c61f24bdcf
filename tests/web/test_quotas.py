"""Quotas per account, driven through HTTP as an attacker would: images waiting, trainings, pets, steps."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from petportrait.clock import utcnow
from petportrait.portraits.models import Render
from petportrait.web.app import Services
from tests.conftest import sign_up
from tests.lifecycle.helpers import add_model, add_pet, add_photo
from tests.web.test_pages import csrf_of, page_sign_up


@pytest.fixture(autouse=True)
def _no_style_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    from petportrait.web.pages import examples

    monkeypatch.setattr(examples, "ensure_started", lambda settings: False)


def _ready_model(
    client: TestClient, services: Services, headers: dict[str, str] | None = None
) -> tuple[str, str]:
    """A pet with a ready (preview) model for the signed-in person, written as a finished training would."""
    user_id = client.get("/api/v1/me", headers=headers or {}).json()["id"]
    with services.session_factory() as session:
        pet = add_pet(session, user_id, at=utcnow())
        model = add_model(session, services.blobs, pet, at=utcnow())
        session.commit()
        return pet.id, model.id


def _pending(services: Services, user_id: str) -> int:
    with services.session_factory() as session:
        return session.scalar(select(func.count()).select_from(Render).where(Render.owner_id == user_id)) or 0


def test_an_account_cannot_queue_more_than_its_images_quota(client: TestClient, services: Services) -> None:
    alice = sign_up(client, "alice@example.com")
    _, model_id = _ready_model(client, services, alice)
    for _ in range(4):  # 4 x 8 = 32, the default quota
        asked = client.post(
            f"/api/v1/models/{model_id}/renders", json={"style": "oil_painting", "count": 8}, headers=alice
        )
        assert asked.status_code == 202, asked.text
    refused = client.post(
        f"/api/v1/models/{model_id}/renders", json={"style": "oil_painting", "count": 1}, headers=alice
    )
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "render_quota_exceeded" and int(refused.headers["Retry-After"]) > 0
    assert "32 images waiting or rendering" in refused.json()["detail"]
    # another person is not held back by alice's queue
    bob = sign_up(client, "bob@example.com")
    _, bobs_model = _ready_model(client, services, bob)
    assert (
        client.post(
            f"/api/v1/models/{bobs_model}/renders", json={"style": "oil_painting"}, headers=bob
        ).status_code
        == 202
    )
    # cancelling frees room
    job_id = client.get("/api/v1/renders", headers=alice).json()["items"][0]["job_id"]
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", headers=alice).status_code == 200
    again = client.post(
        f"/api/v1/models/{model_id}/renders", json={"style": "oil_painting", "count": 8}, headers=alice
    )
    assert again.status_code == 202, again.text


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"steps": 100}, "render_steps_too_many"),
        ({"width": 1536, "height": 1536}, "render_size_out_of_range"),
        ({"width": 64, "height": 1024}, "render_size_out_of_range"),
    ],
)
def test_steps_and_size_are_bounded_by_the_model_family(
    client: TestClient, services: Services, alice: dict[str, str], body: dict[str, int], code: str
) -> None:
    _, model_id = _ready_model(client, services, alice)
    response = client.post(
        f"/api/v1/models/{model_id}/renders", json={"style": "oil_painting", **body}, headers=alice
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code
    ok = client.post(
        f"/api/v1/models/{model_id}/renders",
        json={"style": "oil_painting", "steps": 20, "width": 256, "height": 256},
        headers=alice,
    )
    assert ok.status_code == 202, ok.text


def test_an_account_trains_at_most_two_models_at_once(
    client: TestClient, services: Services, alice: dict[str, str]
) -> None:
    user_id = client.get("/api/v1/me", headers=alice).json()["id"]
    pet_ids = []
    with services.session_factory() as session:
        for n in range(3):
            pet = add_pet(session, user_id, at=utcnow(), name=f"pet{n}")
            for _ in range(2):
                add_photo(session, services.blobs, pet, at=utcnow())
            pet_ids.append(pet.id)
        session.commit()
    for pet_id in pet_ids[:2]:
        assert client.post(f"/api/v1/pets/{pet_id}/models", headers=alice).status_code == 202
    refused = client.post(f"/api/v1/pets/{pet_ids[2]}/models", headers=alice)
    assert refused.status_code == 429
    assert refused.json()["code"] == "training_quota_exceeded" and "Retry-After" in refused.headers


def test_an_account_has_at_most_twenty_pets(client: TestClient, alice: dict[str, str]) -> None:
    for n in range(20):
        assert (
            client.post("/api/v1/pets", json={"name": f"p{n}", "species": "dog"}, headers=alice).status_code
            == 201
        )
    refused = client.post("/api/v1/pets", json={"name": "one more", "species": "dog"}, headers=alice)
    assert refused.status_code == 429
    assert refused.json()["code"] == "pet_quota_exceeded" and "Retry-After" in refused.headers
    # the pages say the same sentence by the form
    token = page_sign_up(client, "carol@example.com")
    for n in range(20):
        assert (
            client.post("/pets", data={"csrf_token": token, "name": f"p{n}", "species": "dog"}).status_code
            == 200
        )
    page = client.post("/pets", data={"csrf_token": token, "name": "one more", "species": "dog"})
    assert page.status_code == 429 and "may have 20 pets" in page.text


def test_the_render_form_counts_each_style_once(client: TestClient, services: Services) -> None:
    token = page_sign_up(client, "owner@example.com")
    pet_id, _ = _ready_model(client, services)
    user_id = client.get("/api/v1/me").json()["id"]
    data = {"csrf_token": token, "pet_id": pet_id, "count": "4", "style": ["oil_painting"] * 100}
    response = client.post("/render", data=data, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert _pending(services, user_id) == 4  # not 400
    # the form's styles together must fit the quota: 8 styles x 4 = 32 more than the 28 left
    styles = [
        "oil_painting",
        "watercolour",
        "pop_art",
        "pixel_art",
        "pencil_sketch",
        "anime",
        "renaissance_noble",
        "stained_glass",
    ]
    data = {"csrf_token": token, "pet_id": pet_id, "count": "4", "style": styles}
    response = client.post("/render", data=data, follow_redirects=False)
    assert response.status_code in (422, 429), response.text
    assert _pending(services, user_id) == 4
    assert csrf_of(response.text)
