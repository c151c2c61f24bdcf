"""Accounts: sign-up, sign-in behind rate limits, password change, tokens and sessions."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from petportrait.accounts import addresses, email_links
from petportrait.accounts.models import ApiToken, EmailPurpose, EmailToken, Role, User
from petportrait.clock import utcnow
from petportrait.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from petportrait.paging import PageParams, page_query
from petportrait.registry import emit
from petportrait.settings import Settings

if TYPE_CHECKING:  # the rate limiter's module loads the web layer, which a worker never does
    from petportrait.ratelimit import RateLimiter

# argon2id with the library's defaults (RFC 9106 low-memory profile).
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("petportrait-timing-equaliser")
TOKEN_PREFIX = "pp_"
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_password(password: str) -> str:
    """An argon2id hash of the password."""
    return _hasher.hash(password)


def hash_token(secret: str) -> str:
    """The SHA-256 hex digest under which a token secret is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_user(
    session: Session,
    *,
    email: str,
    password: str,
    role: Role = Role.USER,
    display_name: str | None = None,
    verified: bool | None = None,
) -> User:
    """Create an account; an email already in use (in its normalised form) is a conflict. Staff accounts
    (made by an administrator) are verified; a person's sign-up is not until they follow the link."""
    email = addresses.normalise(email)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("An account with this email already exists.", code="email_taken")
    now = utcnow()
    user = User(
        email=email,
        password_hash=hash_password(password),
        role=role.value,
        display_name=display_name,
        created_at=now,
        email_verified_at=now if (verified if verified is not None else role != Role.USER) else None,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict("An account with this email already exists.", code="email_taken") from exc
    return user


def sign_up_quietly(
    session: Session, *, email: str, password: str, display_name: str | None = None, settings: Settings
) -> bool:
    """Create an account unless the email has one; the caller answers the same either way.

    A new account gets the verification link; an address that has an account gets the notice that someone
    tried to sign up with it. The password is hashed in both cases, so the time taken does not tell either.
    """
    try:
        user = create_user(session, email=email, password=password, display_name=display_name)
    except Conflict:
        hash_password(password)
        existing = session.scalar(select(User).where(User.email == addresses.normalise(email)))
        if existing is not None and existing.deleted_at is None:
            emit(session, "account.signup_attempted", owner_id=existing.id)
        return False
    send_verification(session, user=user, settings=settings)
    return True


def send_verification(session: Session, *, user: User, settings: Settings) -> None:
    """Email the person a new verification link (earlier ones stop working)."""
    lifetime = timedelta(hours=settings.security.verify_link_hours)
    secret, link = email_links.issue(session, user=user, purpose=EmailPurpose.VERIFY, lifetime=lifetime)
    emit(session, "account.verify_requested", owner_id=user.id, token=secret, expires_at=link.expires_at)


def resend_verification(session: Session, *, user: User, settings: Settings, limiter: RateLimiter) -> bool:
    """A signed-in person asks for a new link (rate-limited); False when the address is verified already."""
    if user.email_verified_at is not None:
        return False
    limiter.take(
        ("verification_links_per_account", user.id),
        detail="Too many verification links asked for this account.",
        code="too_many_links",
    )
    send_verification(session, user=user, settings=settings)
    return True


def verify_email(session: Session, *, token: str) -> User:
    """Follow a verification link: the address is verified; InvalidInput (invalid_link) when the link is
    wrong, used or expired."""
    user = email_links.consume(session, secret=token, purpose=EmailPurpose.VERIFY)
    if user is None:
        raise InvalidInput(
            "This link is wrong, used already or expired; sign in and ask for a new one.", code="invalid_link"
        )
    user.email_verified_at = user.email_verified_at or utcnow()
    session.flush()
    return user


def request_password_reset(
    session: Session, *, email: str, settings: Settings, limiter: RateLimiter, address: str
) -> None:
    """Email a password-reset link (single use, security.reset_link_minutes) when the address has an
    account; the caller answers the same either way. Rate-limited per client address and per address typed."""
    from petportrait.ratelimit import account_key

    limiter.take(
        ("password_resets_per_address", address),
        ("password_resets_per_account", account_key(email)),
        detail="Too many password resets asked from this address or for this email.",
    )
    normalised = addresses.normalise_or_none(email)
    user = (
        session.scalar(select(User).where(User.email == normalised, User.deleted_at.is_(None)))
        if normalised
        else None
    )
    if user is None:
        return
    lifetime = timedelta(minutes=settings.security.reset_link_minutes)
    secret, link = email_links.issue(session, user=user, purpose=EmailPurpose.RESET, lifetime=lifetime)
    emit(session, "account.reset_requested", owner_id=user.id, token=secret, expires_at=link.expires_at)


def reset_password(session: Session, *, token: str, new_password: str) -> User:
    """Set a new password from a reset link: every session and token of the account is signed out, and the
    address counts as verified (the link reached it)."""
    user = email_links.consume(session, secret=token, purpose=EmailPurpose.RESET)
    if user is None:
        raise InvalidInput(
            "This link is wrong, used already or expired; ask for a new one.", code="invalid_link"
        )
    user.password_hash = hash_password(new_password)
    user.email_verified_at = user.email_verified_at or utcnow()
    count = revoke_all_tokens(session, user_id=user.id)
    emit(session, "password.changed", owner_id=user.id, tokens_revoked=count)
    session.flush()
    return user


def signin_checks(email: str, address: str) -> tuple[tuple[str, str], ...]:
    """The rate-limit keys a sign-in attempt is taken from, the attacker-controlled one first."""
    from petportrait.ratelimit import account_key

    account = account_key(email)
    return (
        ("signin_per_address", address),
        ("signin_per_account_and_address", f"{account}|{address}"),
        ("signin_per_account", account),
    )


def authenticate(session: Session, *, email: str, password: str, limiter: RateLimiter, address: str) -> User:
    """Check email and password, after taking the attempt from the sign-in rate limits.

    The attempt is taken before the (slow) password check, atomically in the limiter's store, so
    concurrent guesses cannot exceed the limit; a refused attempt is never checked.
    """
    email = addresses.normalise_or_none(email) or email.strip().lower()
    limiter.take(
        *signin_checks(email, address),
        detail="Too many sign-in attempts for this account or from this address.",
    )
    user = session.scalar(select(User).where(User.email == email, User.deleted_at.is_(None)))
    ok = False
    try:
        ok = _hasher.verify(user.password_hash if user else _DUMMY_HASH, password) and user is not None
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None:
        raise Unauthorized("The email or password is wrong.", code="invalid_credentials")
    # The owner got in from this address: their own earlier typos there no longer delay them.
    from petportrait.ratelimit import account_key

    limiter.reset("signin_per_account_and_address", f"{account_key(email)}|{address}")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def check_password(user: User, password: str) -> bool:
    """Whether the password is the account's (for re-authentication of a signed-in person)."""
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def change_password(session: Session, *, user: User, new_password: str, keep_token_id: str) -> int:
    """Set a new password and revoke every other token of the account; returns how many were revoked."""
    user.password_hash = hash_password(new_password)
    now = utcnow()
    tokens = session.scalars(
        select(ApiToken).where(
            ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None), ApiToken.id != keep_token_id
        )
    )
    count = 0
    for token in tokens:
        token.revoked_at = now
        count += 1
    emit(session, "password.changed", owner_id=user.id, tokens_revoked=count)
    return count


def issue_token(
    session: Session, *, user: User, kind: str, name: str, lifetime: timedelta
) -> tuple[str, ApiToken]:
    """Issue a new token; returns the secret (shown once) and its row."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    token = ApiToken(
        user_id=user.id,
        kind=kind,
        name=name,
        token_hash=hash_token(secret),
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(token)
    session.flush()
    emit(session, "token.created", owner_id=user.id, token_id=token.id)
    return secret, token


def erased_owners(*, before: datetime | None = None) -> Any:
    """SELECT the ids of erased accounts (erased at or before `before`, if given): the one "owner erased"
    rule."""
    query = select(User.id).where(User.deleted_at.is_not(None))
    return query if before is None else query.where(User.deleted_at <= before)


def erasures() -> Any:
    """A subquery of erased accounts: `id` and `erased_at` (for ages and reports)."""
    return (
        select(User.id.label("id"), User.deleted_at.label("erased_at"))
        .where(User.deleted_at.is_not(None))
        .subquery()
    )


def account_exists(session: Session, user_id: str) -> bool:
    """Whether an account row exists (erased or not)."""
    return session.get(User, user_id) is not None


def scrub_for_erasure(session: Session, *, user_id: str, now: datetime) -> str:
    """Erase an account's own row: mark it deleted and scrub its email, name and password at once; returns
    the address it had (for the erasure receipt). Raises 404/409 for a missing or erased account."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("No such account.", code="account_not_found")
    if user.deleted_at is not None:
        raise Conflict("This account has already been deleted.", code="account_deleted")
    address = user.email
    # its emailed links (hashes, but of links that would still work) end with the account, now
    session.execute(
        delete(EmailToken).where(EmailToken.user_id == user.id).execution_options(synchronize_session=False)
    )
    user.deleted_at = now
    user.email = f"deleted-{user.id}@erased.invalid"
    user.display_name = None
    user.password_hash = "!erased"
    return address


def delete_tokens_of(session: Session, owners: Any) -> int:
    """Delete the tokens of these accounts (a SELECT of ids): the sweeper's clearing of erased accounts."""
    result = session.execute(
        delete(ApiToken).where(ApiToken.user_id.in_(owners)).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def is_erased(session: Session, user_id: str) -> bool:
    """Whether the account was erased (or never existed): the one "owner erased" test for a single id."""
    user = session.get(User, user_id)
    return user is None or user.deleted_at is not None


def live_user(session: Session, user_id: str) -> User | None:
    """The account, unless it was erased."""
    user = session.get(User, user_id)
    return None if user is None or user.deleted_at is not None else user


def resolve_token(session: Session, *, secret: str) -> tuple[User, ApiToken] | None:
    """The live account and token for a secret, or None if wrong, expired or revoked."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 128:
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))
    now = utcnow()
    if token is None or token.revoked_at is not None or token.expires_at <= now:
        return None
    user = live_user(session, token.user_id)
    if user is None:
        return None
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        # A short write of its own, so that a request never holds a write lock while it streams.
        session.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now))
        session.commit()
        token.last_used_at = now
    return user, token


def list_tokens(session: Session, *, user: User) -> list[ApiToken]:
    """The person's tokens and sessions, newest first."""
    return list(
        session.scalars(
            select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at.desc())
        )
    )


def page_tokens(session: Session, *, user: User, page: PageParams) -> tuple[list[ApiToken], str | None]:
    """One page of the person's tokens and sessions, newest first."""
    query = select(ApiToken).where(ApiToken.user_id == user.id)
    return page_query(session, query, stamp=ApiToken.created_at, ident=ApiToken.id, page=page)


def revoke_token(session: Session, *, user: User, token_id: str) -> bool:
    """Revoke one of the person's tokens; False if it is not theirs."""
    token = session.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        return False
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    return True


def revoke_all_tokens(session: Session, *, user_id: str) -> int:
    """Revoke every live token of an account; returns how many."""
    now = utcnow()
    tokens = session.scalars(
        select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
    )
    count = 0
    for token in tokens:
        token.revoked_at = now
        count += 1
    return count


REAUTH_HEADER = "X-Current-Password"


def reauthenticate(user: User, password: str | None, *, limiter: RateLimiter, address: str) -> None:
    """Ask the signed-in person for their password again before an irreversible step.

    403 `reauth_required` without it, 403 `reauth_failed` when wrong; tries count against the same
    limits as sign-in, so a stolen token cannot be used to guess the password.
    """
    if not password:
        raise Forbidden(
            f"Confirm with your current password: send it as current_password in the body or in the "
            f"{REAUTH_HEADER} header.",
            code="reauth_required",
        )
    limiter.take(
        *signin_checks(user.email, address),
        detail="Too many password attempts for this account or from this address.",
    )
    if not check_password(user, password):
        raise Forbidden("The current password is wrong.", code="reauth_failed")


def live_token_ids(session: Session, *, token_ids: set[str]) -> set[str]:
    """Those of the token ids that are still live: not revoked, not expired, their account not erased."""
    if not token_ids:
        return set()
    rows = session.scalars(
        select(ApiToken.id)
        .join(User, User.id == ApiToken.user_id)
        .where(
            ApiToken.id.in_(token_ids),
            ApiToken.revoked_at.is_(None),
            ApiToken.expires_at > utcnow(),
            User.deleted_at.is_(None),
        )
    )
    return set(rows)
