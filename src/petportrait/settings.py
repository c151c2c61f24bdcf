"""Settings: one model per section, read from env as PETPORTRAIT__SECTION__KEY.

Unsafe values are refused at start-up: a placeholder secret outside development, and any retention
period longer than the data policy allows (settings may only shorten them).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRET = "change-me-development-only"

# The data policy, in days. Settings may shorten these, never lengthen them.
POLICY_PHOTO_DAYS = 30
POLICY_MODEL_DAYS = 7
POLICY_RENDER_DAYS = 30


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


class MLSettings(BaseModel):
    """The diffusion model: a hub id or a local folder, or the offline preview model when none is set."""

    base_model: str | None = None
    device: str | None = None
    train_steps: int | None = None
    resolution: int | None = None


class RetentionSettings(BaseModel):
    """Retention periods in days; each may only be shorter than the policy's."""

    photo_days: float = POLICY_PHOTO_DAYS
    model_days: float = POLICY_MODEL_DAYS
    render_days: float = POLICY_RENDER_DAYS
    sweep_interval_seconds: float = 60.0
    orphan_grace_seconds: float = 3600.0

    @model_validator(mode="after")
    def _never_longer_than_policy(self) -> RetentionSettings:
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
    cookie_secure: bool = True
    max_upload_bytes: int = 20 * 1024 * 1024
    max_request_bytes: int = 128 * 1024 * 1024
    max_photos_per_pet: int = 30
    min_photo_side: int = 256
    max_photo_pixels: int = 50_000_000
    signin_max_failures: int = 5
    signin_window_seconds: float = 900.0
    # When set, GET /metrics answers only "Authorization: Bearer <metrics_token>" (a scraper's secret).
    metrics_token: str | None = None


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
        if self.cure_days <= 0:
            raise ValueError(f"rights.cure_days must be positive, got {self.cure_days}")
        if not 0 < self.support_case_max_days <= 7:
            raise ValueError("rights.support_case_max_days must be more than 0 and at most 7")
        if (self.signing_cert is None) != (self.signing_key is None):
            raise ValueError("rights.signing_cert and rights.signing_key are set together or not at all")
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

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    ml: MLSettings = Field(default_factory=MLSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    rights: RightsSettings = Field(default_factory=RightsSettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        secret = self.security.secret_key
        if self.environment != "development" and (secret == PLACEHOLDER_SECRET or len(secret) < 32):
            raise ValueError(
                f"security.secret_key is the development placeholder or shorter than 32 characters, "
                f"which is refused in the {self.environment!r} environment; set "
                "PETPORTRAIT__SECURITY__SECRET_KEY to a long random value"
            )
        return self

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
    def models_dir(self) -> Path:
        """The folder where model files (the preview model among them) are kept."""
        return (self.data_dir / "models").resolve()


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
