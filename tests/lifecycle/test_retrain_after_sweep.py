"""An expired model stays retrainable while its photos live, also after the sweeper deleted it: the weights
go, the tombstone remembers the pet; once the photos are gone too, the answer says so."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from petportrait.clock import Clock
from petportrait.db import session_scope
from petportrait.lifecycle import sweeper
from petportrait.pets.models import Pet
from petportrait.portraits.models import PetModel
from petportrait.registry import Services
from petportrait.retention.models import Tombstone
from tests.conftest import sign_up
from tests.lifecycle.helpers import add_photo
from tests.rights.helpers import add_items, user_id

DAY = timedelta(days=1)


def _sweep(services: Services, clock: Clock) -> sweeper.SweepReport:
    return sweeper.sweep_once(
        services.session_factory, services.blobs, now=clock.now(), settings=services.settings
    )


def test_a_render_of_a_swept_model_retrains_it_then_says_when_the_photos_are_gone(
    client: TestClient, services: Services, frozen_clock: Clock
) -> None:
    headers = sign_up(client, "retrain@example.com")
    items = add_items(services, user_id(services, "retrain@example.com"), at=frozen_clock.now())
    with session_scope(services.session_factory) as session:
        pet = session.get(Pet, items.pet_id)
        assert pet is not None
        add_photo(session, services.blobs, pet, at=frozen_clock.now())  # training needs two photos

    frozen_clock.advance(8 * DAY)
    report = _sweep(services, frozen_clock)
    assert report.purged.get("model") == 1
    with session_scope(services.session_factory) as session:
        assert session.get(PetModel, items.model_id) is None  # the weights and the row are gone
        stone = session.get(Tombstone, items.model_id)
        assert stone is not None and stone.pet_id == items.pet_id

    asked = client.post(
        f"/api/v1/models/{items.model_id}/renders", json={"style": "oil_painting"}, headers=headers
    )
    assert asked.status_code == 202, asked.text
    body = asked.json()
    assert body["retraining"] is True and "trained again" in body["notice"]
    assert body["model_id"] != items.model_id and body["training_job"] is not None

    # Another person's swept model is not found, as if it never existed.
    other = sign_up(client, "other@example.com")
    stranger = client.post(
        f"/api/v1/models/{items.model_id}/renders", json={"style": "oil_painting"}, headers=other
    )
    assert stranger.status_code == 404 and stranger.json()["code"] == "model_not_found"

    frozen_clock.advance(31 * DAY)
    _sweep(services, frozen_clock)
    gone = client.post(
        f"/api/v1/models/{items.model_id}/renders", json={"style": "oil_painting"}, headers=headers
    )
    assert gone.status_code == 410 and gone.json()["code"] == "model_and_photos_expired"


def test_a_model_the_owner_deleted_is_not_retrained(
    client: TestClient, services: Services, frozen_clock: Clock
) -> None:
    headers = sign_up(client, "deleter@example.com")
    items = add_items(services, user_id(services, "deleter@example.com"), at=frozen_clock.now())
    assert client.delete(f"/api/v1/models/{items.model_id}", headers=headers).status_code == 204
    asked = client.post(
        f"/api/v1/models/{items.model_id}/renders", json={"style": "oil_painting"}, headers=headers
    )
    assert asked.status_code == 404 and asked.json()["code"] == "model_not_found"
