"""The one Settings class. Nothing else reads the environment.

Fixed names (docs/spec.md §2) are the `BATCHSYNC_*` variables of the first group; the rest are tuning
knobs with safe defaults.
"""

from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import DEFAULT_PREFIX, Topics


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BATCHSYNC_", env_file=".env", extra="ignore")

    # --- fixed by docs/spec.md ---
    database_url: str | None = None
    kafka_bootstrap: str | None = None
    jwt_secret: SecretStr | None = None
    jwt_public_key: str | None = None
    topic_prefix: str = DEFAULT_PREFIX
    sync_wait_seconds: float = Field(default=60, ge=0, le=3600)
    chunk_size: int = Field(default=50_000, ge=1, le=1_000_000)
    connect_timeout_seconds: float = Field(default=5, gt=0, le=300)
    worker_concurrency: int = Field(default=4, ge=1, le=256)
    http_port: int = Field(default=8080, ge=0, le=65535)

    # --- trust boundaries (docs/spec.md §7; docs/security.md) ---
    file_roots: str | None = None
    """`:`-separated directories where csv/jsonl/sqlite connections may read and write; unset: none."""
    egress_deny: str = "169.254.0.0/16"
    """Hosts or CIDRs (comma-separated) no connection may reach, checked on resolved addresses."""
    secret_key: SecretStr | None = None
    """Encrypts connection secrets at rest and signs events; `up` creates `<data_dir>/secret_key`."""
    secret_key_previous: SecretStr | None = None
    """Comma-separated earlier keys, still accepted for decryption while `secrets rotate` runs."""
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    jwt_max_ttl_seconds: int = Field(default=86_400, ge=1)
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    token: SecretStr | None = None
    """The bearer token the `batchsync sync` client sends when no `--token-file` is given; the service ignores it."""

    # --- tuning ---
    http_host: str = "127.0.0.1"
    data_dir: Path = Path(".batchsync")
    worker_id: str | None = None
    lease_seconds: float = Field(default=15, ge=2)
    requested_partitions: int = Field(default=6, ge=1)
    events_partitions: int = Field(default=6, ge=1)
    replies_partitions: int = Field(default=3, ge=1)
    requests_retention_ms: int = 7 * 24 * 3600 * 1000
    replies_retention_ms: int = 24 * 3600 * 1000
    dlq_retention_ms: int = 30 * 24 * 3600 * 1000
    reply_fetch_max_wait_ms: int = Field(default=20, ge=1, le=500)
    request_fetch_max_wait_ms: int = Field(default=20, ge=1, le=500)
    session_timeout_ms: int = Field(default=10_000, ge=3_000)
    heartbeat_interval_ms: int = Field(default=1_000, ge=100)
    max_poll_interval_ms: int = Field(default=300_000, ge=10_000)
    kafka_request_timeout_ms: int = Field(default=5_000, ge=500)
    progress_interval_seconds: float = Field(default=0.25, ge=0)
    max_message_bytes: int = 1_000_000
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _asyncpg_url(cls, value: str | None) -> str | None:
        if value and value.startswith("postgresql://"):
            return "postgresql+asyncpg://" + value.removeprefix("postgresql://")
        if value and value.startswith("postgres://"):
            return "postgresql+asyncpg://" + value.removeprefix("postgres://")
        return value

    @model_validator(mode="after")
    def _one_jwt_key(self) -> "Settings":
        if self.jwt_secret is not None and self.jwt_public_key is not None:
            raise ValueError("set BATCHSYNC_JWT_SECRET (HS256) or BATCHSYNC_JWT_PUBLIC_KEY (RS256), not both")
        if self.jwt_secret is not None and len(self.jwt_secret.get_secret_value()) < 16:
            raise ValueError("BATCHSYNC_JWT_SECRET must be at least 16 characters")
        return self

    @field_validator("kafka_security_protocol")
    @classmethod
    def _known_protocol(cls, value: str) -> str:
        protocols = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
        if value.upper() not in protocols:
            raise ValueError(f"BATCHSYNC_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(protocols)}")
        return value.upper()

    @property
    def file_root_paths(self) -> tuple[Path, ...]:
        """The configured file roots, in order; empty when none are set."""
        return tuple(Path(part) for part in (self.file_roots or "").split(":") if part.strip())

    @property
    def previous_secret_keys(self) -> tuple[str, ...]:
        """The earlier keys of `secret_key_previous`, in order; empty when none are set."""
        earlier = self.secret_key_previous.get_secret_value() if self.secret_key_previous else ""
        return tuple(part.strip() for part in earlier.split(",") if part.strip())

    @property
    def egress_deny_list(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.egress_deny.split(",") if part.strip())

    @cached_property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    @property
    def asyncpg_dsn(self) -> str:
        """The database URL as asyncpg itself wants it (no `+asyncpg`)."""
        if not self.database_url:
            raise RuntimeError("BATCHSYNC_DATABASE_URL is not set")
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
