"""Rights: generation records, licences with C2PA provenance, trust & safety cases with notice and cure."""

from __future__ import annotations

from petportrait.registry import Registry, Services
from petportrait.rights import policy, service


def _settle_cases(services: Services) -> int:
    """Revoke the licences of trust & safety cases whose cure period ended uncured."""
    with services.session_factory() as session:
        settled = service.enforce_due(session)
        session.commit()
    return settled


def register(registry: Registry) -> None:
    """What the rights domain contributes: licences in exports, erasure scrubbing, deadlines, licences."""
    registry.add_domain("rights")
    registry.add_export_section("licences", service.export_licences)
    registry.add_erasure_hook("rights.scrub_generations", service.scrub_generations)
    rules = {
        "generations": "kept with the licence; on erasure the prompt and parameters are "
        "dropped; never photo "
        "or LoRA hashes",
        "licences": "kept for good so a licence stays verifiable by the render's hash; the holder "
        "is shown by pseudonym",
        "content_reports": "kept as trust & safety records; the details, contact and "
        "link of reports about an "
        "erased account's portraits are blanked on erasure",
        "safety_cases": "kept as trust & safety records; the facts are blanked on erasure",
        "safety_case_events": "kept with their case; replies, appeals and "
        "reasons are blanked on erasure (the "
        "audit log refers to them in audit_texts, deleted with the render or the account)",
        "safety_notices": "kept with their case; reduced to the case and policy clause on erasure",
    }
    for table, rule in rules.items():
        registry.add_table_rule(
            table,
            rule,
            owner="rights",
            residues=service.generation_residues if table == "generations" else None,
        )
    registry.add_periodic("case-deadlines", lambda _settings: 60.0, _settle_cases)
    registry.add_prompt_screen("content_policy", policy.screen_prompt)
    registry.subscribe("render.ready", service.on_render_ready)
