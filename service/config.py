"""The one Settings class. Nothing else reads the environment.

Fixed names (docs/spec.md §2) are the `BATCHSYNC_*` variables of the first group; the rest are tuning
knobs with safe defaults.
"""

from functools import cached_property
from pathlib import Path
from typing import Literal

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

    # --- runs that look after themselves (docs/spec.md §9) ---
    transient_retry_seconds: float = Field(default=60, ge=0, le=86_400)
    """How long a run retries a dropped or refused connection in place (per outage) before it fails."""
    io_timeout_seconds: float = Field(default=120, gt=0, le=86_400)
    """The longest one source or target operation may go unanswered; then it is a transient fault."""

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

    # --- crash recovery on the bus (docs/brokers.md) ---
    partition_assignment: Literal["group", "all"] = "group"
    """`group`: workers and projectors share partitions through Kafka consumer groups (any number of
    processes). `all`: this process reads every partition itself, its positions kept in PostgreSQL, no group
    membership at all; for exactly one process per deployment (`up` sets it)."""
    outbox_retention_seconds: float = Field(default=7 * 24 * 3600, ge=60)
    """Published outbox rows are kept this long, so the relay can re-publish what the broker lost."""
    outbox_reconcile_seconds: float = Field(default=60, gt=0)
    """How often the relay compares the tail of `P.events` with the outbox (and always at start)."""
    ledger_retention_seconds: float = Field(default=8 * 24 * 3600, ge=60)
    """`request_ledger` rows and the projector's `projected_events` rows of runs finished this long ago are
    pruned; at least the requests topic's retention, so a request still on the log is always recognised."""
    prune_every_seconds: float = Field(default=3600, gt=0)

    # --- observability (docs/operations.md) ---
    log_format: Literal["json", "text"] | None = None
    """`json` or `text`; unset: text on a terminal, JSON otherwise."""
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Where `worker`, `projector` and `scheduler` serve /metrics; taken: the next free port; 0: any free port."""
    otel_exporter_otlp_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    otel_exporter_otlp_traces_endpoint: str | None = Field(default=None,
                                                           validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    """OpenTelemetry's own variables: traces are exported over OTLP only when one is set."""

    # --- schedules, retry policies and notifications (docs/spec.md §9, service/scheduling, service/notify) ---
    scheduler_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    """How often a scheduler looks for due schedules and failed runs to retry (fire times stay exact)."""
    notify_url: str | None = None
    """Where every batch without its own `notify` reports its runs (`BATCHSYNC_NOTIFY_URL`)."""
    notify_on: str = "FAILED"
    """Comma-separated run outcomes (FAILED, SUCCESS, CANCELLED) reported to `notify_url`."""
    notify_max_attempts: int = Field(default=6, ge=1, le=100)
    notify_backoff_seconds: float = Field(default=5, ge=0, le=3600)
    """First wait before a failed delivery is tried again; doubled each time, with jitter."""
    notify_timeout_seconds: float = Field(default=10, gt=0, le=300)
    notify_max_age_seconds: float = Field(default=86_400, gt=0)
    """Runs that ended longer ago than this are not notified (a new notifier does not replay the whole log)."""

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

    @model_validator(mode="after")
    def _ledger_outlives_requests(self) -> "Settings":
        if self.ledger_retention_seconds * 1000 < self.requests_retention_ms:
            raise ValueError("BATCHSYNC_LEDGER_RETENTION_SECONDS must cover BATCHSYNC_REQUESTS_RETENTION_MS: a "
                             "request still on the log whose ledger row was pruned would run a second time")
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
