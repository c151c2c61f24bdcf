"""The purpose limit: a pet's photo bytes reach only the training job of that pet's owner, only the photos of
that pet, and every read is audited with its purpose (data policy, clause 1)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from petportrait.clock import Clock
from petportrait.db import session_scope
from petportrait.jobs import runner
from petportrait.jobs.models import Job, JobState
from petportrait.pets import service as pets_service
from petportrait.pets.models import Pet
from petportrait.portraits.models import JobKind, ModelState, PetModel
from petportrait.retention.models import AuditEntry
from petportrait.web.app import Services
from tests.lifecycle.helpers import add_model, add_pet, add_photo, add_user


@pytest.fixture
def now(frozen_clock: Clock) -> datetime:
    return frozen_clock.freeze(frozen_clock.now().replace(microsecond=0))


def _photo_reads(services: Services) -> list[AuditEntry]:
    with services.session_factory() as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == "photo.read").order_by(AuditEntry.seq)
            )
        )


def _two_owners(services: Services, now: datetime) -> dict[str, str]:
    """Alice with two pets (two photos of Rex, one of Fido); Bob with one pet (one photo)."""
    with session_scope(services.session_factory) as session:
        alice = add_user(session, at=now)
        bob = add_user(session, at=now)
        rex = add_pet(session, alice.id, at=now, name="Rex")
        fido = add_pet(session, alice.id, at=now, name="Fido")
        bobs = add_pet(session, bob.id, at=now, name="Max")
        ids = {
            "alice": alice.id,
            "bob": bob.id,
            "rex": rex.id,
            "fido": fido.id,
            "bobs_pet": bobs.id,
            "rex1": add_photo(session, services.blobs, rex, at=now, data=b"rex one").id,
            "rex2": add_photo(session, services.blobs, rex, at=now, data=b"rex two").id,
            "fido1": add_photo(session, services.blobs, fido, at=now, data=b"fido one").id,
            "bob1": add_photo(session, services.blobs, bobs, at=now, data=b"bob one").id,
        }
    return ids


def _read(
    services: Services, *, job_owner_id: str, pet_id: str, photo_ids: list[str]
) -> list[tuple[str, bytes]]:
    with services.session_factory() as session:
        return pets_service.read_photos_for_training(
            session,
            blobs=services.blobs,
            job_id="job-1",
            job_owner_id=job_owner_id,
            pet_id=pet_id,
            photo_ids=photo_ids,
        )


def test_training_reads_of_the_owners_pet_are_returned_and_each_is_audited_with_purpose_training(
    services: Services, now: datetime
) -> None:
    ids = _two_owners(services, now)
    photo_ids = sorted([ids["rex1"], ids["rex2"]], reverse=True)
    read = _read(services, job_owner_id=ids["alice"], pet_id=ids["rex"], photo_ids=photo_ids)
    # in id order, whatever order photo_ids lists them in: a training run sees its photos in a stable order
    assert read == sorted([(ids["rex1"], b"rex one"), (ids["rex2"], b"rex two")])
    entries = _photo_reads(services)
    assert sorted(e.subject_id for e in entries if e.subject_id) == sorted([ids["rex1"], ids["rex2"]])
    for entry in entries:
        assert entry.subject_kind == "photo"
        assert entry.purpose == "training"
        assert entry.owner_id == ids["alice"]
        assert json.loads(entry.details) == {"job_id": "job-1"}


def test_a_job_of_another_account_reads_nothing_and_writes_no_audit_entry(
    services: Services, now: datetime
) -> None:
    ids = _two_owners(services, now)
    with pytest.raises(PermissionError, match="not its owner"):
        _read(services, job_owner_id=ids["bob"], pet_id=ids["rex"], photo_ids=[ids["rex1"], ids["rex2"]])
    assert _photo_reads(services) == []


def test_photo_ids_of_another_pet_are_not_read_even_for_the_same_owner(
    services: Services, now: datetime
) -> None:
    """A model's photo_ids can name only its own pet's photos: a photo of another pet (the owner's own or
    another account's) listed there is neither read nor audited."""
    ids = _two_owners(services, now)
    read = _read(
        services,
        job_owner_id=ids["alice"],
        pet_id=ids["rex"],
        photo_ids=[ids["rex1"], ids["fido1"], ids["bob1"]],
    )
    assert read == [(ids["rex1"], b"rex one")]
    assert [e.subject_id for e in _photo_reads(services)] == [ids["rex1"]]


def _train_job(services: Services, *, owner_id: str, model_id: str, now: datetime) -> str:
    with session_scope(services.session_factory) as session:
        job = Job(
            kind=JobKind.TRAIN.value,
            owner_id=owner_id,
            target_id=model_id,
            state=JobState.QUEUED.value,
            created_at=now,
        )
        session.add(job)
        session.flush()
        return job.id


def _run(services: Services, job_id: str) -> tuple[str | None, Job]:
    ctx = runner.WorkerContext(
        settings=services.settings,
        session_factory=services.session_factory,
        blobs=services.blobs,
        handlers=services.registry.job_handlers,
        worker_id="test-worker",
    )
    state = runner.run_job(ctx, job_id)
    with services.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
    return state, job


def test_a_training_job_pointed_at_another_accounts_pet_fails_clearly_and_reads_nothing(
    services: Services, now: datetime
) -> None:
    """Bob's model row naming Alice's pet (however it came about): his training job reads none of hers."""
    ids = _two_owners(services, now)
    with session_scope(services.session_factory) as session:
        bob = add_user(session, at=now)
        pet = add_pet(session, bob.id, at=now)
        model = add_model(session, services.blobs, pet, at=now)
        model.state = ModelState.QUEUED.value
        model.pet_id = ids["rex"]
        model.photo_ids = [ids["rex1"], ids["rex2"]]
        model_id, bob_id = model.id, bob.id
    job_id = _train_job(services, owner_id=bob_id, model_id=model_id, now=now)
    state, job = _run(services, job_id)
    assert state == JobState.FAILED.value
    assert job.error_code == "purpose_limit", (job.error_code, job.error_message)
    assert _photo_reads(services) == []


def test_a_training_job_pointed_at_another_accounts_model_fails_and_leaves_that_model_alone(
    services: Services, now: datetime
) -> None:
    ids = _two_owners(services, now)
    with session_scope(services.session_factory) as session:
        rex = session.get(Pet, ids["rex"])
        assert rex is not None
        model = add_model(session, services.blobs, rex, at=now)
        model.state = ModelState.QUEUED.value
        model.photo_ids = [ids["rex1"], ids["rex2"]]
        model_id = model.id
    job_id = _train_job(services, owner_id=ids["bob"], model_id=model_id, now=now)
    state, job = _run(services, job_id)
    assert state == JobState.FAILED.value
    assert job.error_code == "purpose_limit", (job.error_code, job.error_message)
    assert _photo_reads(services) == []
    with services.session_factory() as session:
        model_row = session.get(PetModel, model_id)
        assert model_row is not None and model_row.state == ModelState.QUEUED.value


def test_an_expired_photo_is_not_read_for_training(
    services: Services, now: datetime, frozen_clock: Clock
) -> None:
    ids = _two_owners(services, now)
    with session_scope(services.session_factory) as session:
        rex = session.get(Pet, ids["rex"])
        assert rex is not None
        old = add_photo(session, services.blobs, rex, at=now - timedelta(days=29), data=b"rex old").id
    frozen_clock.advance(timedelta(days=1))  # the old photo's 30 days end now; the others have 29 left
    read = _read(services, job_owner_id=ids["alice"], pet_id=ids["rex"], photo_ids=[old, ids["rex1"]])
    assert read == [(ids["rex1"], b"rex one")]
    assert [e.subject_id for e in _photo_reads(services)] == [ids["rex1"]]
