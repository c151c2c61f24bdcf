"""Accounts: people, their sign-in tokens and roles."""

from __future__ import annotations

from typing import Any

from petportrait.registry import Registry, Services


def sweep_links(services: Services) -> object:
    """Periodic: delete email links used or expired more than a day ago."""
    from petportrait.accounts import email_links

    with services.session_factory() as session:
        count = email_links.sweep(session)
        session.commit()
    return count


def erased_owners(before: Any = None) -> Any:
    """SELECT the ids of erased accounts: the one "owner erased" rule every other domain reads."""
    from petportrait.accounts import service

    return service.erased_owners(before=before)


def register(registry: Registry) -> None:
    """What the accounts domain contributes to a deployment."""
    registry.add_domain("accounts")
    registry.set_erased_owners(erased_owners)
    registry.add_periodic("accounts.email_links", lambda _settings: 3600.0, sweep_links)
    registry.add_table_rule(
        "users",
        "kept while the account exists; on erasure the email, name and password are scrubbed at once and the "
        "row keeps only its id, role and dates",
        owner="accounts",
    )
    registry.add_table_rule(
        "email_tokens",
        "single-use links (verification, password reset), stored as SHA-256 only; deleted a day after they "
        "were used or expired, and with the account at erasure",
        owner="accounts",
        owner_column="user_id",
    )
    registry.add_table_rule(
        "api_tokens",
        "revoked on erasure and deleted by the next sweep; otherwise kept until the person revokes them",
        owner="accounts",
    )
