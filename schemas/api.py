"""HTTP API bodies (SPEC §3). camelCase on the wire."""

import re
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import Field, field_validator, model_validator

from schemas.base import UtcTime, WireModel

COLUMN = re.compile(r"^[^\W\d][\w$]{0,62}$")
"""A column: letters of any script (Chinese included), digits, `_`, `$`; always quoted when used."""
TABLE = re.compile(r"^(?!.*\.\.)[\w$*?\[\]-][\w$*?\[\].-]{0,199}$")
"""A table (optionally `schema.table`), or for file connections a file name or glob inside the folder;
never a path: no `/`, no `..`."""


def check_identifier(value: str) -> str:
    """Column names; quoted wherever SQL is built."""
    if not COLUMN.match(value):
        raise ValueError(f"非法标识符：{value}")
    return value


def check_table(value: str) -> str:
    if not TABLE.match(value):
        raise ValueError(f"非法表名：{value}")
    return value


class ConnectionType(StrEnum):
    POSTGRESQL = "postgresql"
    MYSQL = "mysql"
    SQLITE = "sqlite"
    CSV = "csv"
    JSONL = "jsonl"
    HTTP = "http"
    KAFKA = "kafka"


class WriteMode(StrEnum):
    APPEND = "append"
    OVERWRITE = "overwrite"
    UPSERT = "upsert"


class RunStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class ConnectionIn(WireModel):
    name: str = Field(min_length=1, max_length=200)
    type: ConnectionType
    url: str | None = Field(default=None, max_length=4000)
    params: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)


class ConnectionOut(WireModel):
    id: int
    name: str
    type: ConnectionType
    url: str | None
    params: dict[str, Any]
    options: dict[str, Any]
    created_at: UtcTime
    updated_at: UtcTime


class SourceSpec(WireModel):
    table: str | None = None
    query: str | None = Field(default=None, max_length=100_000)
    cursor_column: str | None = None

    @field_validator("table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        return None if value is None else check_table(value)

    @field_validator("cursor_column")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        return None if value is None else check_identifier(value)

    @model_validator(mode="after")
    def _one_of(self) -> "SourceSpec":
        if (self.table is None) == (self.query is None):
            raise ValueError("source 须且仅须指定 table 或 query 之一")
        return self


class TargetSpec(WireModel):
    table: str
    mode: WriteMode = WriteMode.APPEND
    key_columns: list[str] | None = None
    create: bool = False

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        return check_table(value)

    @field_validator("key_columns")
    @classmethod
    def _keys(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [check_identifier(v) for v in value]

    @model_validator(mode="after")
    def _keys_for_upsert(self) -> "TargetSpec":
        if self.mode is WriteMode.UPSERT and not self.key_columns:
            raise ValueError("upsert 模式必须指定 keyColumns")
        return self


class CastType(StrEnum):
    INT = "int"
    FLOAT = "float"
    DECIMAL = "decimal"
    STRING = "string"
    BOOL = "bool"
    DATE = "date"
    DATETIME = "datetime"
    JSON = "json"


class MappingEntry(WireModel):
    """One field of the mapping: rename `from`→`to`, cast to `type`, drop (`drop: true`) or set `value`."""

    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    type: CastType | None = None
    drop: bool = False
    value: Any = None

    @field_validator("from_", "to")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        return None if value is None else check_identifier(value)

    @model_validator(mode="after")
    def _shape(self) -> "MappingEntry":
        if self.from_ is None and self.value is None:
            raise ValueError("mapping 项须指定 from 或常量 value")
        if self.drop and self.from_ is None:
            raise ValueError("drop 须指定 from")
        if not self.drop and self.to is None and self.from_ is None:
            raise ValueError("mapping 项须指定 to")
        return self

    @property
    def target_name(self) -> str:
        return self.to or self.from_ or ""


class BatchIn(WireModel):
    name: str = Field(min_length=1, max_length=200)
    source_connection_id: int
    source: SourceSpec
    target_connection_id: int
    target: TargetSpec
    mapping: list[MappingEntry] | None = None
    chunk_size: int | None = Field(default=None, ge=1, le=1_000_000)


class BatchOut(BatchIn):
    id: int
    status: str
    last_sync_time: UtcTime | None = None
    last_records_synced: int | None = None
    last_run_id: UUID | None = None
    last_error: str | None = None
    config_version: int = 1
    created_at: UtcTime
    updated_at: UtcTime


class SyncResult(WireModel):
    success: bool
    batch_id: int
    message: str
    sync_time: UtcTime
    records_synced: int
    run_id: UUID


class SyncAccepted(WireModel):
    batch_id: int
    run_id: UUID
    status: RunStatus = RunStatus.RUNNING


class RunOut(WireModel):
    run_id: UUID
    batch_id: int
    status: RunStatus
    trigger: str
    requested_by: str
    records_read: int
    records_written: int
    chunks: int
    total_estimate: int | None
    started_at: UtcTime | None
    finished_at: UtcTime | None
    message: str | None
    error_code: str | None = None
    resumed_from_run_id: UUID | None = None
    config_hash: str | None = None


class HistoryRow(WireModel):
    run_id: UUID
    trigger: str
    requested_by: str
    status: RunStatus
    started_at: UtcTime | None
    finished_at: UtcTime | None
    records_synced: int
    message: str | None


class BatchStatistics(WireModel):
    batch_id: int
    total_runs: int
    success_runs: int
    failed_runs: int
    success_rate: float
    total_records_synced: int
    last_records_synced: int | None
    last_sync_time: UtcTime | None
    last_success_time: UtcTime | None
    avg_duration_ms: float | None


class OverallStatistics(WireModel):
    total_batches: int
    total_runs: int
    success_runs: int
    failed_runs: int
    success_rate: float
    total_records_synced: int
    last_sync_time: UtcTime | None
    last_success_time: UtcTime | None
    avg_duration_ms: float | None
    batches_by_status: dict[str, int]
    batches_by_mode: dict[str, int]

