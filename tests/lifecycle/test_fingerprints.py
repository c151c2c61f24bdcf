"""Fingerprints and free text end with their item; every table has a retention rule; ended rows go."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Column, MetaData, String, Table, select

from petportrait.db import Base, session_scope
from petportrait.jobs.models import Job
from petportrait.lifecycle import sweeper
from petportrait.lifecycle.check import run_check
from petportrait.lifecycle.service import erase_account
from petportrait.pets.models import Photo
from petportrait.portraits.ended import sweep_ended_rows
from petportrait.portraits.models import ModelState, PetModel, Render, RenderState
from petportrait.retention import audit, fingerprints, tombstones
from petportrait.retention.models import AuditEntry, AuditText, FingerprintKey, Tombstone
from petportrait.web.app import Services
from tests.lifecycle.helpers import DAY, add_household


def _check(services: Services, at: datetime, **kw: object):  # type: ignore[no-untyped-def]
    with services.session_factory() as session:
        return run_check(session, services.blobs, settings=services.settings, now=at, **kw)  # type: ignore[arg-type]


def test_deletions_keep_a_fingerprint_not_the_hash_and_erasure_makes_it_unlinkable(
    services: Services, now: datetime
) -> None:
    house = add_household(services, at=now)
    with session_scope(services.session_factory) as session:
        photo = session.get(Photo, house.photo_id)
        assert photo is not None
        raw = photo.sha256
        tombstones.delete_now(
            session,
            blobs=services.blobs,
            kind="photo",
            item_id=photo.id,
            owner_id=house.user_id,
            actor_id=None,
        )
    with services.session_factory() as session:
        stone = session.get(Tombstone, house.photo_id)
        assert stone is not None and stone.fingerprint is not None and raw not in stone.fingerprint
        key = session.get(FingerprintKey, house.user_id)
        assert key is not None and key.key is not None
        assert stone.fingerprint == fingerprints.of(key.key, raw)  # the person can still match it
        details = " ".join(session.scalars(select(AuditEntry.details)))
        assert raw not in details and stone.fingerprint in details
    assert "raw_hash" not in _check(services, now).counts()

    with session_scope(services.session_factory) as session:
        erase_account(session, user_id=house.user_id, actor_id=None)
    sweeper.sweep_once(services.session_factory, services.blobs, now=now, settings=services.settings)
    with services.session_factory() as session:
        key = session.get(FingerprintKey, house.user_id)
        assert key is not None and key.key is None and key.destroyed_at is not None
        swept = session.get(Tombstone, house.render_id)
        assert swept is not None and swept.fingerprint is None  # no new key for an erased account
        assert fingerprints.fingerprint(session, house.user_id, raw) is None
        assert audit.verify(session).ok


def test_free_text_lives_outside_the_chain_and_ends_with_its_item_or_account(
    services: Services, now: datetime
) -> None:
    house = add_household(services, at=now)
    with session_scope(services.session_factory) as session:
        for words in ("my dog is not a bear", "please reconsider"):
            ref = audit.text_ref(
                session, words, owner_id=house.user_id, subject_kind="render", subject_id=house.render_id
            )
            audit.record(
                session,
                action="case.owner_replied",
                actor_id=house.user_id,
                subject_kind="render",
                subject_id=house.render_id,
                owner_id=house.user_id,
                details={"message": ref},
            )
    with services.session_factory() as session:
        entries = list(audit.iter_entries(session, owner_id=house.user_id))
        assert all("bear" not in e.details for e in entries)
        shown = [d.get("message") for d in audit.readable_details(session, entries)]
        assert "my dog is not a bear" in shown and "please reconsider" in shown
    # the render's deletion takes the text about it; the chain still verifies
    with session_scope(services.session_factory) as session:
        tombstones.delete_now(
            session,
            blobs=services.blobs,
            kind="render",
            item_id=house.render_id,
            owner_id=house.user_id,
            actor_id=house.user_id,
        )
    with services.session_factory() as session:
        assert session.scalar(select(AuditText.id)) is None
        entries = list(audit.iter_entries(session, owner_id=house.user_id))
        shown = [d.get("message") for d in audit.readable_details(session, entries)]
        assert shown.count(audit.ERASED) == 2
        assert audit.verify(session).ok
    # erasure takes the account's remaining text
    with session_scope(services.session_factory) as session:
        audit.text_ref(session, "a note", owner_id=house.user_id)
        erase_account(session, user_id=house.user_id, actor_id=None)
    with services.session_factory() as session:
        assert session.scalar(select(AuditText.id)) is None
        assert audit.verify(session).ok


def test_check_fails_for_a_table_without_a_retention_rule(services: Services, now: datetime) -> None:
    assert "no_retention_rule" not in _check(services, now).counts()
    schema = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(schema)
    Table("pet_diaries", schema, Column("id", String(32), primary_key=True), Column("entry", String(200)))
    report = _check(services, now, metadata=schema)
    assert [(f.problem, f.kind) for f in report.findings] == [("no_retention_rule", "pet_diaries")]


def test_check_reports_a_raw_hash_in_the_audit_log(services: Services, now: datetime) -> None:
    with session_scope(services.session_factory) as session:
        audit.record(
            session, action="item.deleted", actor_id=None, subject_kind="photo", details={"sha256": "a" * 64}
        )
    assert _check(services, now).counts().get("raw_hash") == 1


def test_failed_models_renders_and_finished_jobs_go_after_the_render_period(
    services: Services, now: datetime
) -> None:
    house = add_household(services, at=now)
    with session_scope(services.session_factory) as session:
        model = session.get(PetModel, house.model_id)
        render = session.get(Render, house.render_id)
        assert model is not None and render is not None
        model.state, model.expires_at, model.storage_key = ModelState.FAILED.value, None, None
        render.state, render.expires_at, render.storage_key = RenderState.CANCELLED.value, None, None
        render.prompt = "a secret prompt"
        session.add(
            Job(
                kind="render",
                owner_id=house.user_id,
                target_id=render.id,
                state="failed",
                created_at=now,
                finished_at=now,
            )
        )
    later = now + 29 * DAY
    with session_scope(services.session_factory) as session:
        assert sweep_ended_rows(session, settings=services.settings, now=later) == {
            "models": 0,
            "renders": 0,
            "jobs": 0,
        }
    later = now + 30 * DAY + timedelta(seconds=1)
    with session_scope(services.session_factory) as session:
        counts = sweep_ended_rows(session, settings=services.settings, now=later)
        assert counts == {"models": 1, "renders": 1, "jobs": 1}
    sweeper.sweep_once(services.session_factory, services.blobs, now=later, settings=services.settings)
    with services.session_factory() as session:
        assert session.get(PetModel, house.model_id) is None and session.get(Render, house.render_id) is None
        assert session.scalar(select(Job.id)) is None
        assert session.get(Tombstone, house.model_id) is not None
