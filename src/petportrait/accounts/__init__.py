"""Accounts: people, their sign-in tokens and roles."""

from __future__ import annotations

from petportrait.registry import Registry


def register(registry: Registry) -> None:
    """What the accounts domain contributes to a deployment."""
    registry.add_domain("accounts")
