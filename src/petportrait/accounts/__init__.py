"""Accounts: people, their sign-in tokens and roles."""

from __future__ import annotations

from typing import Any

from petportrait.registry import Registry


def erased_owners(before: Any = None) -> Any:
    """SELECT the ids of erased accounts: the one "owner erased" rule every other domain reads."""
    from petportrait.accounts import service

    return service.erased_owners(before=before)


def register(registry: Registry) -> None:
    """What the accounts domain contributes to a deployment."""
    registry.add_domain("accounts")
    registry.set_erased_owners(erased_owners)
    registry.add_table_rule(
        "users",
        "kept while the account exists; on erasure the email, name and password are scrubbed at once and the "
        "row keeps only its id, role and dates",
        owner="accounts",
    )
    registry.add_table_rule(
        "api_tokens",
        "revoked on erasure and deleted by the next sweep; otherwise kept until the person revokes them",
        owner="accounts",
    )
