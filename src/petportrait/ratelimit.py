"""Rate limits on the maintained `limits` library: sign-in, sign-up, reports, uploads, provenance checks.

Each rule is a stack of moving windows ("5/minute;10/15 minutes;20/hour"). An attempt is taken from every
window of every rule it falls under *before* the work it guards is done (the password check, the upload),
each take atomic in the storage (a lock in memory, a Lua script in Redis), so concurrent requests cannot
slip past a limit. A refused attempt is not counted, and every window ends by itself: the answer is a
delay that grows with the number of recent attempts (the longest full window decides Retry-After), never
a lock that someone else can keep closed.

Counts live in Redis when the queue is on Redis (one count for the fleet), else in this process's memory.
The store never sees what is counted (an email, a client address, an account id): each key is an
HMAC-SHA256 under a key derived from `security.secret_key`, so the keys cannot be matched against a list
of addresses without the secret. This module sits below the domains: it imports settings and errors only.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import threading
from typing import Annotated

from fastapi import Depends, Request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from petportrait.clock import utcnow
from petportrait.errors import ProblemError, TooManyRequests
from petportrait.settings import Settings

log = logging.getLogger(__name__)
_made = threading.Lock()

RULES = (
    "signin_per_account_and_address",
    "signin_per_account",
    "signin_per_address",
    "signups_per_address",
    "reports_per_address",
    "uploads_per_account",
    "verify_per_address",
    "webhook_tests_per_account",
    "password_resets_per_address",
    "password_resets_per_account",
    "verification_links_per_account",
)


class RateLimiter:
    """The app's rate limits over one `limits` storage."""

    def __init__(self, settings: Settings) -> None:
        url = settings.rate_limit_storage_url
        options: dict[str, str | bool] = {}
        if url.startswith(("redis://", "rediss://")):
            options = {"key_prefix": f"{settings.limits.namespace}:limits", "wrap_exceptions": True}
        storage = storage_from_string(url, **options)
        assert isinstance(storage, Storage)
        self.storage = storage
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.namespace = settings.limits.namespace
        self._hmac_key = hashlib.sha256(
            b"petportrait rate-limit keys\x00" + settings.security.secret_key.encode()
        ).digest()
        self.rules: dict[str, list[RateLimitItem]] = {
            name: parse_many(str(getattr(settings.limits, name))) for name in RULES
        }

    def stored_key(self, key: str) -> str:
        """What the store keeps for a key: its HMAC under the secret key (hex, 32 characters)."""
        return hmac.new(self._hmac_key, key.encode(), hashlib.sha256).hexdigest()[:32]

    def take(self, *checks: tuple[str, str], detail: str, code: str = "too_many_attempts") -> None:
        """Take one attempt from each (rule, key) in order; 429 with Retry-After at the first full window.

        Later rules are not charged when an earlier one refuses, so put the rule an attacker controls
        (their own address) first.
        """
        try:
            for rule, key in checks:
                stored = self.stored_key(key)
                for item in self.rules[rule]:
                    if not self.strategy.hit(item, self.namespace, rule, stored):
                        wait = self._retry_after(rule, stored)
                        log.warning("rate limit %s refused %s (retry after %ss)", rule, stored[:16], wait)
                        raise TooManyRequests(
                            f"{detail} Try again in {_in_words(wait)}.",
                            code=code,
                            headers={"Retry-After": str(wait)},
                            retry_after=wait,
                        )
        except StorageError as exc:
            raise ProblemError(
                "The rate-limit store does not answer; try again in a moment.",
                code="rate_limit_unavailable",
                status=503,
                title="Service unavailable",
                headers={"Retry-After": "5"},
            ) from exc

    def retry_after(self, rule: str, key: str) -> int:
        """Seconds until every full window of the rule has room again (at least 1)."""
        return self._retry_after(rule, self.stored_key(key))

    def _retry_after(self, rule: str, key: str) -> int:
        now = utcnow().timestamp()  # the clock (real in production; controlled in tests)
        wait = 1.0
        for item in self.rules[rule]:
            stats = self.strategy.get_window_stats(item, self.namespace, rule, key)
            if stats.remaining <= 0:
                wait = max(wait, stats.reset_time - now)
        return max(1, math.ceil(wait))

    def remaining(self, rule: str, key: str) -> int:
        """Attempts left before the rule refuses this key (the tightest of its windows)."""
        try:
            return min(
                self.strategy.get_window_stats(item, self.namespace, rule, self.stored_key(key)).remaining
                for item in self.rules[rule]
            )
        except StorageError:
            return 0

    def reset(self, rule: str, key: str) -> None:
        """Forget the attempts of one key (an owner who signed in from this address)."""
        for item in self.rules[rule]:
            self.strategy.clear(item, self.namespace, rule, self.stored_key(key))


def _in_words(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes"


def account_key(email: str) -> str:
    """The rate-limit key of an account's email (normalised; the store keeps only its HMAC)."""
    return email.strip().lower()


def client_address(request: Request) -> str:
    """The client's address (IPv6 grouped by /64, as one subscriber usually holds a /64).

    Behind a proxy, run uvicorn with --proxy-headers and --forwarded-allow-ips so this is the real client.
    """
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def limiter_of(request: Request) -> RateLimiter:
    """The app's limiter (made on first use from the app's settings when the app did not make one)."""
    limiter: RateLimiter | None = getattr(request.app.state, "limiter", None)
    if limiter is None:
        with _made:
            limiter = getattr(request.app.state, "limiter", None)
            if limiter is None:
                limiter = RateLimiter(request.app.state.services.settings)
                request.app.state.limiter = limiter
    return limiter


LimiterDep = Annotated[RateLimiter, Depends(limiter_of)]

__all__ = [
    "RULES",
    "LimiterDep",
    "RateLimiter",
    "account_key",
    "client_address",
    "limiter_of",
]
