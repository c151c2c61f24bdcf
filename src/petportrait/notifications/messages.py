"""What each message says: a subject, paragraphs, a list, links; rendered to plain text and HTML.

Links are written relative to BASE_URL_MARK, replaced with the deployment's trusted base URL when the message
is sent (subscribers run inside a domain's transaction and do not hold the settings). Messages carry links
only: never a photo, a model or a portrait.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, FileSystemLoader, select_autoescape

BASE_URL_MARK = "%%BASE_URL%%"
TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass
class Link:
    label: str
    path: str

    @property
    def url(self) -> str:
        return BASE_URL_MARK + self.path


@dataclass
class Content:
    """A message before it is rendered."""

    subject: str
    paragraphs: list[str]
    items: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    greeting: str = "Hello,"
    footer: str = ""


@lru_cache
def _env() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        keep_trailing_newline=True,
    )


def zone(name: str | None) -> ZoneInfo:
    """The person's time zone (UTC when unset or unknown)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_date(value: datetime | None, tz: str | None) -> str:
    """'30 December 2026, 14:05 (Europe/Paris)' in the person's time zone."""
    if value is None:
        return "-"
    local = value.astimezone(zone(tz))
    return f"{local.day} {local.strftime('%B %Y, %H:%M')} ({zone(tz).key})"


def render(content: Content) -> tuple[str, str]:
    """(plain text, HTML) of a message."""
    values = {
        "subject": content.subject,
        "greeting": content.greeting,
        "paragraphs": content.paragraphs,
        "items": content.items,
        "links": content.links,
        "footer": content.footer,
    }
    text = _env().get_template("message.txt").render(**values)
    html = _env().get_template("message.html").render(**values)
    return text, html


def footer(category: str) -> str:
    """Why the person gets this message, and whether they can turn it off."""
    if category in ("job", "reminder"):
        return (
            "You get this because of your petportrait account. Turn these messages off on your settings "
            f"page: {BASE_URL_MARK}/settings"
        )
    if category == "security":
        return "A security message about your petportrait account; these cannot be turned off."
    return "A legal notice about your petportrait account; these cannot be turned off."
