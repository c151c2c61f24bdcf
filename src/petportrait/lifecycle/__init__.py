"""Data lifecycle: retention policy, read-time hiding, the sweeper, legal holds, erasure, export, audit.

What other domains call:
- `policy.live_clause(Model, now=..., settings=...)` in every list and lookup query, and
  `policy.ensure_live(item, now, settings)` on direct links (410 with code `<kind>_expired`);
  `policy.is_expired(item, now, settings)`, `policy.due_at(item, settings)`.
- `service.delete_now(session, blobs=, kind=, item_id=, owner_id=, actor_id=, reason=)` to delete one
  photo, model or render now (blob first, then tombstone, receipt and audit entry; 409 `legal_hold`);
  `service.delete_pet_items(...)` for a whole pet; `service.erase_account(...)` for an account.
- `sweeper.sweep_once(session_factory, blobs, now=, batch_size=, settings=)` every
  `sweeper.interval(settings)` seconds (it takes its own lease; safe to call from every consumer).
- `audit.record(session, action=, actor_id=, subject_kind=, subject_id=, owner_id=, purpose=, details=)`
  and `audit.verify(session)`.
- Extension points for later issues: `policy.register_item("marketing", Model)`,
  `service.register_erasure_hook(name, fn)` (withdraw marketing copies when an account is deleted),
  `export.register_section(name, fn)` (consent receipts, licences).

API: GET /api/v1/me/deletions, DELETE /api/v1/me/items/{kind}/{id}, DELETE /api/v1/me,
POST /api/v1/me/export, /api/v1/admin/holds (admin), /metrics.
CLI: petportrait retention check | holds | sweep, petportrait sweep, petportrait audit verify,
petportrait storage lifecycle [--apply].
"""
