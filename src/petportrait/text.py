"""Text that people type (names, purposes, subjects): refused at the edge when it carries control or
separator characters, which break email headers, logs and layouts.

Refused everywhere: C0 controls (U+0000-U+001F) but where a field allows lines (tab, LF, CR), DEL, C1
controls (U+0080-U+009F, U+0085 among them), the line and paragraph separators U+2028 and U+2029, and the
bidirectional overrides and isolates that can disguise text.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from petportrait.errors import InvalidInput

_SEPARATORS = frozenset("\u2028\u2029")
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_LINES = frozenset("\t\n\r")


def forbidden_character(value: str, *, lines: bool = False) -> str | None:
    """The first character the text may not carry, or None."""
    for char in value:
        code = ord(char)
        if (code < 0x20 and not (lines and char in _LINES)) or 0x7F <= code <= 0x9F:
            return char
        if char in _SEPARATORS or char in _BIDI:
            return char
    return None


def clean_line(value: str, *, field: str = "text") -> str:
    """One line of text, stripped; InvalidInput (code invalid_text) when it carries a refused character."""
    bad = forbidden_character(value)
    if bad is not None:
        raise InvalidInput(
            f"{field} contains a control or separator character (U+{ord(bad):04X}); use plain text on one "
            "line.",
            code="invalid_text",
            field=field,
        )
    return value.strip()


def _line(value: str) -> str:
    bad = forbidden_character(value)
    if bad is not None:
        raise ValueError(f"contains a control or separator character (U+{ord(bad):04X})")
    return value.strip()


def _lines(value: str) -> str:
    bad = forbidden_character(value, lines=True)
    if bad is not None:
        raise ValueError(f"contains a control or separator character (U+{ord(bad):04X})")
    return value


SingleLine = Annotated[str, AfterValidator(_line)]
"""A pydantic field of one line of plain text (a name)."""

Paragraphs = Annotated[str, AfterValidator(_lines)]
"""A pydantic field of plain text that may hold lines (a purpose, a description)."""
