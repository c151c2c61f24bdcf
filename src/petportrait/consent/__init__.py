"""Marketing consent and support-case access: what a person lets staff see, and the receipts for it.

- Marketing staff file a request naming exact items, channels, a purpose and the notice version shown;
  the person grants or declines each item in their inbox. A grant makes a consent (with a Kantara-style
  receipt) and a copy in the marketing library (blob prefix `marketing/`), kept while the consent stands.
  Withdrawing deletes the copy through `retention.tombstones.delete_now`.
- Support cases: a person opens one naming items; support staff may view those items while it is open,
  at most 7 days.
"""

from __future__ import annotations

from petportrait.consent import service, support
from petportrait.consent.models import MarketingCopy
from petportrait.registry import Registry


def register(registry: Registry) -> None:
    """What the consent domain contributes: the marketing library's table, receipts, withdrawal on erasure."""
    registry.add_domain("consent")
    registry.add_item_kind("marketing", MarketingCopy)
    rules = {
        "consents": "kept as proof of consent; withdrawn on erasure; the receipt keeps a "
        "fingerprint under the "
        "account's key (unlinkable after erasure), never the content hash",
        "marketing_requests": "kept as the record of what marketing asked (ids, purpose, channels)",
        "marketing_request_items": "kept with their request; pending ones are declined on erasure",
        "support_cases": "kept while the account exists (the subject is the person's text); "
        "deleted on erasure",
    }
    for table, rule in rules.items():
        registry.add_table_rule(
            table, rule, owner="consent", residues=service.receipt_residues if table == "consents" else None
        )
    registry.add_export_section("consent_receipts", service.export_receipts)
    registry.add_erasure_hook("consent.withdraw_all", service.withdraw_all_on_erasure)
    # Staff access through a support case ends at once (audited), then the cases themselves go.
    registry.add_erasure_hook("consent.close_support_cases", support.close_all_on_erasure)
    registry.add_erasure_hook("consent.support_cases", support.erase_cases)
