"""The marketing notices a consent request may show, by version. A request names the version it shows;
the person sees that text, and the receipt records the same version and text."""

from __future__ import annotations

MARKETING_NOTICES: dict[str, str] = {
    "mk-2026-11": (
        "petportrait asks to use the items listed below in its own marketing, only on the channels listed "
        "and only for the purpose stated. Saying no changes nothing else about your account. If you say yes "
        "we keep a copy in our marketing library for as long as your consent stands; you can withdraw at "
        "any time as easily as you granted it, and the copy is then deleted. We never sell your items or "
        "give them to anyone else."
    ),
}

CHANNELS = ("website", "social", "app", "print")
