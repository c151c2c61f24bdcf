"""Email addresses in one form: Unicode NFC, the domain in IDNA (punycode) and lower case, the local part
lower-cased as before. Two spellings of one mailbox (a Unicode domain and its punycode, composed and
decomposed accents, capitals) are one address, unique in the users table."""

from __future__ import annotations

import unicodedata

import idna

from petportrait.errors import InvalidInput


def normalise(email: str) -> str:
    """The stored form of an address; InvalidInput (invalid_email) when the domain is not a valid name."""
    value = unicodedata.normalize("NFC", email.strip())
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise InvalidInput("Enter an email address, like name@example.com.", code="invalid_email")
    try:
        ascii_domain = idna.encode(domain.rstrip("."), uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise InvalidInput(
            "The domain of this email address is not a valid name.", code="invalid_email"
        ) from None
    return f"{local.lower()}@{ascii_domain.lower()}"


def normalise_or_none(email: str) -> str | None:
    """The stored form, or None for an address that cannot be one (a sign-in with it simply fails)."""
    try:
        return normalise(email)
    except InvalidInput:
        return None
