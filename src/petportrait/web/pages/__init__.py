"""The web pages: server-rendered with Jinja2, htmx for the live parts; each module is a router."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"


def page_routers() -> list[APIRouter]:
    """Every page router, in the order they are mounted."""
    from petportrait.web.pages import (
        account_links,
        auth,
        data,
        pets,
        portraits,
        rights,
        settings,
        staff,
        support,
    )

    routers = [
        auth.router,
        account_links.router,
        pets.router,
        portraits.router,
        data.router,
        rights.router,
        support.router,
        settings.router,
        staff.router,
    ]
    return routers
