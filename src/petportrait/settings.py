"""Settings: one model per section, read from env as PETPORTRAIT__SECTION__KEY.

Unsafe values are refused at start-up: a placeholder secret outside development, and any retention
period longer than the data policy allows (settings may only shorten them).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from collections import Counter
from collections.abc import MutableMapping
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRET = "change-me-development-only"

# The data policy, in days. Settings may shorten these, never lengthen them.
POLICY_PHOTO_DAYS = 30
POLICY_MODEL_DAYS = 7
POLICY_RENDER_DAYS = 30

# Bounds that keep the guarantees: the sweeper runs at least every 5 minutes (a local folder has no other
# backstop), a cure period is at least a day, a legal hold ends within a year (it may be renewed).
MAX_SWEEP_INTERVAL_SECONDS = 300.0
MIN_CURE_DAYS = 1.0
MAX_HOLD = timedelta(days=365)


def estimated_bits(value: str) -> float:
    """The randomness of a secret, estimated from its characters' frequencies (Shannon entropy times its
    length): 32 identical characters have none, 64 random hex digits about 256 bits."""
    if not value:
        return 0.0
    counts = Counter(value)
    per_char = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return per_char * len(value)


class DatabaseSettings(BaseModel):
    """Where rows live: a SQLite file in the data folder unless a URL is given."""

    url: str | None = None
    echo: bool = False


class StorageSettings(BaseModel):
    """Where blobs live: a local folder in the data folder, or an S3 bucket."""

    backend: Literal["local", "s3"] = "local"
    root: Path | None = None
    s3_bucket: str = "petportrait"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_prefix: str = ""
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None


class QueueSettings(BaseModel):
    """The job queue: huey on SQLite in the data folder, or on Redis when a redis:// URL is given."""

    url: str | None = None
    name: str = "petportrait"
    embedded_consumer: bool = True
    heartbeat_seconds: float = 5.0
    stale_after_seconds: float = 60.0
    max_attempts: int = 3
    # The name a consumer's worker id starts with (the host name if unset): a container's name, say.
    worker_name: str | None = None


class MLSettings(BaseModel):
    """The diffusion model: a hub id or a local folder, or the offline preview model when none is set."""

    base_model: str | None = None
    device: str | None = None
    train_steps: int | None = None
    resolution: int | None = None
    # Subject masks in training: the loss weight of background pixels (0 to 1); None trains unmasked.
    mask_background_weight: float | None = Field(default=0.1, ge=0.0, le=1.0)
    # A semantic-segmentation model (hub id or folder) for the masks; None: GrabCut, which needs no weights.
    segmenter: str | None = None
    # Embedding models for the likeness score (hub ids or folders); none: the score is absent, saying why.
    likeness_dino: str | None = None
    likeness_clip: str | None = None


class RetentionSettings(BaseModel):
    """Retention periods in days; each may only be shorter than the policy's."""

    photo_days: float = POLICY_PHOTO_DAYS
    model_days: float = POLICY_MODEL_DAYS
    render_days: float = POLICY_RENDER_DAYS
    sweep_interval_seconds: float = 60.0
    orphan_grace_seconds: float = 3600.0
    # whether the person is told (by email) that a legal hold keeps their data, and until when: set it
    # where the law allows telling them (some orders forbid it)
    tell_owner_of_holds: bool = False

    @model_validator(mode="after")
    def _never_longer_than_policy(self) -> RetentionSettings:
        if not 0 < self.sweep_interval_seconds <= MAX_SWEEP_INTERVAL_SECONDS:
            raise ValueError(
                f"retention.sweep_interval_seconds={self.sweep_interval_seconds} is out of bounds: it must "
                f"be more than 0 and at most {MAX_SWEEP_INTERVAL_SECONDS:.0f} (the sweeper is what deletes "
                "expired data on time)"
            )
        for name, limit in (
            ("photo_days", POLICY_PHOTO_DAYS),
            ("model_days", POLICY_MODEL_DAYS),
            ("render_days", POLICY_RENDER_DAYS),
        ):
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"retention.{name} must be positive, got {value}")
            if value > limit:
                raise ValueError(
                    f"retention.{name}={value} is longer than the data policy's {limit} days; "
                    "settings may shorten a retention period, never lengthen it"
                )
        return self


class SecuritySettings(BaseModel):
    """Secrets, cookies, tokens and limits on what a request may carry."""

    secret_key: str = PLACEHOLDER_SECRET
    session_days: float = 14.0
    token_days: float = 90.0
    verify_link_hours: float = 48.0  # a sign-up's verification link
    reset_link_minutes: float = 30.0  # a password-reset link
    cookie_secure: bool = True
    max_upload_bytes: int = 20 * 1024 * 1024
    max_request_bytes: int = 128 * 1024 * 1024  # an upload (multipart, a raw file)
    # a body parsed whole in memory (JSON, a URL-encoded form): refused with 413 while it streams
    max_json_bytes: int = Field(default=256 * 1024, ge=1024)
    max_photos_per_pet: int = 30
    min_photo_side: int = 256
    max_photo_pixels: int = 50_000_000
    # When set, GET /metrics answers only "Authorization: Bearer <metrics_token>" (a scraper's secret);
    # required in production.
    metrics_token: str | None = None
    # The key-encryption key that wraps every blob's data key: 32 bytes, base64. Required in production
    # (from a secret manager); elsewhere one is made once in data_dir/keys/kek.b64 when none is set.
    key_encryption_key: str | None = None
    # During a rotation of the key-encryption key (README, "Rotating the key-encryption key"): the old key,
    # still accepted for unwrapping until `petportrait keys rotate` has re-wrapped every data key.
    previous_key_encryption_key: str | None = None

    # Host names the server answers to (the Host header); others get 400. Default: base_url's host, and
    # outside production also localhost, 127.0.0.1, the configured host and "testserver".
    allowed_hosts: list[str] | None = None
    # The OpenAPI description and its browsable docs; default on outside production, off in production.
    api_docs: bool | None = None
    # The largest file POST /api/v1/provenance/verify accepts.
    max_verify_bytes: int = 25 * 1024 * 1024

    @model_validator(mode="after")
    def _valid_kek(self) -> SecuritySettings:
        if self.key_encryption_key is not None:
            decode_kek(self.key_encryption_key)
        if self.previous_key_encryption_key is not None:
            decode_kek(self.previous_key_encryption_key, name="security.previous_key_encryption_key")
            if self.key_encryption_key is None:
                raise ValueError(
                    "security.previous_key_encryption_key is set without security.key_encryption_key "
                    "(a rotation needs the new key set too)"
                )
        return self


class TransparencySettings(BaseModel):
    """The transparency log over the audit chain: its Ed25519 signing key, its origin, how often it signs.

    `signing_key` is a 32-byte Ed25519 seed, base64 (`openssl rand -base64 32`); outside production one is
    made once in data_dir/keys/transparency-ed25519.b64 (mode 0600) when none is set. `origin` names the
    log in its checkpoints (default: the base URL's host and path, then "/audit-log").
    """

    signing_key: str | None = None
    origin: str | None = None
    key_name: str | None = None
    checkpoint_interval_seconds: float = 60.0
    # Verifier keys of the witnesses whose cosignatures are published; empty: any witness's (at most
    # max_cosignatures per checkpoint, first come).
    witnesses: list[str] = Field(default_factory=list)
    max_cosignatures: int = Field(default=16, ge=1, le=256)

    @model_validator(mode="after")
    def _valid(self) -> TransparencySettings:
        if not 0 < self.checkpoint_interval_seconds <= 3600:
            raise ValueError("transparency.checkpoint_interval_seconds must be more than 0 and at most 3600")
        if self.signing_key is not None:
            decode_signing_seed(self.signing_key)
        return self


class LimitsSettings(BaseModel):
    """Rate limits, as `limits` strings ("5/minute;20/hour": every tier applies, a moving window each).

    Stacked tiers give growing delays rather than a hard lock: a few failed sign-ins wait a minute, many
    wait longer, and each delay ends by itself. Stored in Redis when queue.url is redis:// (one count for
    a fleet), else in memory (one machine); `storage_url` overrides either.
    """

    storage_url: str | None = None
    namespace: str = "petportrait"
    # Sign-in: from one client address to one account (an owner's own typos, or one guesser) ...
    signin_per_account_and_address: str = "5/minute;10/15 minutes;20/hour"
    # ... to one account from all addresses together (a distributed guesser; an owner's worst wait) ...
    signin_per_account: str = "20/minute;100/hour"
    # ... and from one client address to all accounts (one password sprayed over many emails).
    signin_per_address: str = "20/minute;100/hour"
    signups_per_address: str = "10/minute;50/hour"
    reports_per_address: str = "10/minute;100/day"
    uploads_per_account: str = "30/minute;300/hour"
    verify_per_address: str = "30/minute;300/hour"
    webhook_tests_per_account: str = "5/minute;30/hour"
    # password resets asked from one client address, and for one address typed (neutral: keyed on the input)
    password_resets_per_address: str = "5/minute;20/hour"
    password_resets_per_account: str = "3/15 minutes;6/day"
    # new verification links asked by a signed-in person
    verification_links_per_account: str = "3/15 minutes;10/day"

    @model_validator(mode="after")
    def _parse(self) -> LimitsSettings:
        from limits import parse_many

        for name, value in self:
            if name.endswith(("_address", "_account")) and isinstance(value, str):
                try:
                    parse_many(value)
                except ValueError as exc:
                    raise ValueError(f"limits.{name}={value!r} is not a rate limit like '5/minute'") from exc
        return self


class QuotaSettings(BaseModel):
    """Bounded work per account: what one person may have waiting, running or open at once.

    Beyond a quota the API answers 429 problem+json with Retry-After and a sentence.
    """

    images_pending_per_account: int = Field(default=32, ge=1)  # renders waiting or rendering
    trainings_running_per_account: int = Field(default=2, ge=1)  # trainings waiting or running
    pets_per_account: int = Field(default=20, ge=1)
    event_streams_per_account: int = Field(default=4, ge=1)  # open GET /jobs/{id}/events per process
    event_stream_max_seconds: float = Field(default=300.0, gt=0)  # then the client is told to reconnect
    event_poll_seconds: float = Field(default=0.5, gt=0)  # one shared poll per job
    # Total pixels one upload request may decode (all its files together); later files are rejected.
    upload_pixels_per_request: int = Field(default=200_000_000, ge=1)
    retry_after_seconds: int = Field(default=30, ge=1)  # what a 429 tells the client to wait


class RightsSettings(BaseModel):
    """Consent and rights: the cure period of content-policy cases, prompt screening, the C2PA signing key.

    Without signing_cert/signing_key a development certificate is made in data_dir/keys on first run;
    the production environment refuses to start without a configured one.
    """

    cure_days: float = 14.0
    refused_terms: list[str] = Field(
        default_factory=lambda: ["gore", "nude", "naked", "nsfw", "porn", "swastika", "beheaded"]
    )
    signing_cert: Path | None = None  # PEM chain: the signing certificate first, then its issuers
    signing_key: Path | None = None  # PEM private key (ES256)
    trust_anchors: Path | None = None  # PEM roots that verification trusts (default: the chain's last)
    support_case_max_days: float = 7.0

    @model_validator(mode="after")
    def _sane(self) -> RightsSettings:
        if not self.cure_days >= MIN_CURE_DAYS:
            raise ValueError(
                f"rights.cure_days={self.cure_days} is too short: a person gets at least {MIN_CURE_DAYS:.0f} "
                "day to fix a content-policy problem"
            )
        if not 0 < self.support_case_max_days <= 7:
            raise ValueError("rights.support_case_max_days must be more than 0 and at most 7")
        if (self.signing_cert is None) != (self.signing_key is None):
            raise ValueError("rights.signing_cert and rights.signing_key are set together or not at all")
        return self


class EmailSettings(BaseModel):
    """Email: an SMTP server (smtp://, smtp+starttls://user:pass@host:587, smtps://user:pass@host:465),
    or, without one, .eml files in data_dir/outbox."""

    model_config = ConfigDict(populate_by_name=True)

    smtp_url: str | None = None
    # env PETPORTRAIT__EMAIL__FROM (or ..._FROM_ADDRESS)
    from_address: str = Field(
        default="petportrait <no-reply@petportrait.invalid>",
        validation_alias=AliasChoices("from_address", "from", "FROM", "FROM_ADDRESS"),
    )
    deliver_interval_seconds: float = 5.0
    reminder_interval_seconds: float = 3600.0
    claim_seconds: float = 120.0
    timeout_seconds: float = 20.0
    max_attempts: int = 8
    batch: int = 50

    @model_validator(mode="after")
    def _sane(self) -> EmailSettings:
        if self.smtp_url is not None:
            scheme = self.smtp_url.partition("://")[0]
            if scheme not in ("smtp", "smtp+starttls", "smtps"):
                raise ValueError("email.smtp_url must start with smtp://, smtp+starttls:// or smtps://")
        if self.claim_seconds <= self.timeout_seconds:
            raise ValueError("email.claim_seconds must be longer than email.timeout_seconds")
        return self


class ServerSettings(BaseModel):
    """How `petportrait serve` bounds what clients can hold (a reverse proxy adds more in production)."""

    max_connections: int = Field(default=256, ge=8)  # beyond it new requests get 503
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=120)  # a request's head, from its first byte
    keep_alive_seconds: float = Field(default=5.0, gt=0, le=120)
    max_head_bytes: int = Field(default=16 * 1024, ge=4096)
    backlog: int = Field(default=512, ge=16)


class WebhookSettings(BaseModel):
    """Webhooks: where they may go, how long a delivery may take, when a failing endpoint is disabled."""

    allow_private_targets: bool = False
    deliver_interval_seconds: float = 2.0
    timeout_seconds: float = 5.0  # for each read or write
    attempt_deadline_seconds: float = 10.0  # for a whole attempt: connect, headers and body together
    concurrency: int = Field(default=4, ge=1, le=64)  # the deliverers' own threads
    max_response_bytes: int = 4096
    disable_after_days: float = 5.0
    claim_seconds: float = 60.0
    batch: int = 50

    @model_validator(mode="after")
    def _claim_outlasts_attempt(self) -> WebhookSettings:
        if self.claim_seconds <= self.attempt_deadline_seconds:
            raise ValueError("webhooks.claim_seconds must be longer than webhooks.attempt_deadline_seconds")
        return self


class Settings(BaseSettings):
    """All settings; env PETPORTRAIT__SECTION__KEY, e.g. PETPORTRAIT__DATABASE__URL."""

    model_config = SettingsConfigDict(
        env_prefix="PETPORTRAIT__",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("./var")
    host: str = "127.0.0.1"
    port: int = 8000
    base_url: str | None = None
    log_format: Literal["text", "json"] = "text"  # json: one object a line, with request and job ids
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    ml: MLSettings = Field(default_factory=MLSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    rights: RightsSettings = Field(default_factory=RightsSettings)
    email: EmailSettings = Field(default_factory=EmailSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    transparency: TransparencySettings = Field(default_factory=TransparencySettings)

    def derived_key(self, purpose: str) -> bytes:
        """A key of its own for one purpose (fingerprints, rate-limit keys...), derived from the secret key:
        HMAC-SHA256(secret_key, "petportrait:<purpose>"). Changing the secret key changes every one."""
        return hmac.new(
            self.security.secret_key.encode(), f"petportrait:{purpose}".encode(), hashlib.sha256
        ).digest()

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        secret = self.security.secret_key
        if self.environment != "development" and (secret == PLACEHOLDER_SECRET or len(secret) < 32):
            raise ValueError(
                f"security.secret_key is the development placeholder or shorter than 32 characters, "
                f"which is refused in the {self.environment!r} environment; set "
                "PETPORTRAIT__SECURITY__SECRET_KEY to a long random value"
            )
        if self.environment == "production" and not self.security.key_encryption_key:
            raise ValueError(
                "security.key_encryption_key is required in the 'production' environment (it wraps the data "
                "key of every blob); set PETPORTRAIT__SECURITY__KEY_ENCRYPTION_KEY to 32 random bytes in "
                "base64 (e.g. `openssl rand -base64 32`), kept in a secret manager"
            )
        if self.base_url is not None:
            parsed = urlsplit(self.base_url)
            if (
                parsed.scheme not in ("http", "https")
                or not parsed.hostname
                or parsed.query
                or parsed.fragment
            ):
                raise ValueError(
                    f"base_url={self.base_url!r} is not an absolute http(s) URL like https://portraits.example"
                )
        if self.environment == "production":
            if not self.base_url:
                raise ValueError(
                    "base_url is required in production: every link, licence and signed manifest is built "
                    "from it (never from a request's Host header); set PETPORTRAIT__BASE_URL to the public "
                    "address, e.g. https://portraits.example"
                )
            if not self.security.metrics_token:
                raise ValueError(
                    "security.metrics_token is required in production, so that /metrics is not open to "
                    "anyone; set PETPORTRAIT__SECURITY__METRICS_TOKEN to a long random value and give it "
                    "to the scraper"
                )
            self._refuse_unsafe_in_production()
        return self

    def _refuse_unsafe_in_production(self) -> None:
        """One clear start-up error for each setting production may not run with."""
        if urlsplit(self.base_url or "").scheme != "https":
            raise ValueError(
                f"base_url={self.base_url!r} is not https: production serves people's data and sign-in "
                "cookies only over HTTPS; set PETPORTRAIT__BASE_URL to https://..."
            )
        if not self.security.cookie_secure:
            raise ValueError(
                "security.cookie_secure is false: production sends session cookies over HTTPS only; remove "
                "PETPORTRAIT__SECURITY__COOKIE_SECURE=false"
            )
        for name, value in (
            ("secret_key", self.security.secret_key),
            ("metrics_token", self.security.metrics_token or ""),
        ):
            if len(value) < 32 or estimated_bits(value) < 96:
                raise ValueError(
                    f"security.{name} is too short or too predictable (under 32 characters, or about "
                    f"{estimated_bits(value):.0f} bits of randomness by its letters); set it to a long "
                    "random value, e.g. `openssl rand -hex 32`"
                )
        if self.webhooks.allow_private_targets:
            raise ValueError(
                "webhooks.allow_private_targets is true: in production webhooks may not reach loopback, "
                "private or metadata addresses (server-side request forgery); remove "
                "PETPORTRAIT__WEBHOOKS__ALLOW_PRIVATE_TARGETS"
            )

    @property
    def public_base_url(self) -> str:
        """The trusted origin for links: base_url, or (outside production) http://host:port."""
        if self.base_url:
            return self.base_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def trusted_hosts(self) -> list[str]:
        """Host names accepted in the Host header."""
        if self.security.allowed_hosts is not None:
            return list(self.security.allowed_hosts)
        hosts: list[str] = []
        if self.base_url:
            hosts.append(urlsplit(self.base_url).hostname or "")
        if self.environment != "production":
            hosts += [self.host, "localhost", "127.0.0.1", "::1", "testserver"]
        return list(dict.fromkeys(h for h in hosts if h))

    @property
    def api_docs_enabled(self) -> bool:
        """Whether the OpenAPI description and docs are served."""
        if self.security.api_docs is not None:
            return self.security.api_docs
        return self.environment != "production"

    @property
    def rate_limit_storage_url(self) -> str:
        """Where rate-limit counts live: the configured URL, Redis of the queue, or this process's memory."""
        if self.limits.storage_url:
            return self.limits.storage_url
        if self.queue.url and self.queue.url.startswith(("redis://", "rediss://")):
            return self.queue.url
        return "memory://"

    @property
    def database_url(self) -> str:
        """The database URL: the configured one, or a SQLite file in the data folder."""
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_dir / 'petportrait.sqlite3').resolve()}"

    @property
    def blob_root(self) -> Path:
        """The folder of the local blob store."""
        return (self.storage.root or self.data_dir / "blobs").resolve()

    @property
    def queue_path(self) -> Path:
        """The SQLite file of the huey queue when no Redis URL is set."""
        return (self.data_dir / "queue.sqlite3").resolve()

    @property
    def outbox_dir(self) -> Path:
        """The folder of .eml files when no SMTP server is configured."""
        return (self.data_dir / "outbox").resolve()

    @property
    def models_dir(self) -> Path:
        """The folder where model files (the preview model among them) are kept."""
        return (self.data_dir / "models").resolve()


def decode_kek(value: str, *, name: str = "security.key_encryption_key") -> bytes:
    """The 32 bytes of a base64 key-encryption key; ValueError with a clear message otherwise."""
    return _base64_32(value, name, "AES-256")


def _base64_32(value: str, setting: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{setting} is not valid base64") from exc
    if len(raw) != 32:
        raise ValueError(f"{setting} must decode to 32 bytes ({what}), got {len(raw)}")
    return raw


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()


def decode_signing_seed(value: str) -> bytes:
    """The 32-byte Ed25519 seed of a base64 transparency signing key; ValueError with a sentence if not."""
    return _base64_32(value, "transparency.signing_key", "an Ed25519 seed")


SECRET_FILE_SUFFIX = "_FILE"


def read_secret_files(environ: MutableMapping[str, str]) -> list[str]:
    """For each PETPORTRAIT__..._FILE variable, set the variable it names from that file's content.

    Secrets (secret key, key-encryption key, metrics token, database URL with its password) come from files
    mounted by the container runtime (compose `secrets:`, Kubernetes), never from the compose file itself:
    `PETPORTRAIT__SECURITY__SECRET_KEY_FILE=/run/secrets/secret_key`. A variable set directly wins. Returns
    the names set; a file that cannot be read stops start-up with its variable's name.
    """
    names = []
    for name in sorted(environ):
        if not (name.startswith("PETPORTRAIT__") and name.endswith(SECRET_FILE_SUFFIX)):
            continue
        target = name.removesuffix(SECRET_FILE_SUFFIX)
        if environ.get(target):
            continue
        try:
            environ[target] = Path(environ[name]).read_text().strip()
        except OSError as exc:
            raise ValueError(f"{name}: cannot read {environ[name]!r} ({exc.strerror})") from exc
        names.append(target)
    return names
