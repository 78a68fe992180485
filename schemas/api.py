"""HTTP API bodies (docs/spec.md §3). camelCase on the wire.

Every value a client sends is checked here to be storable before any service code sees it: strings
without NUL or lone surrogates (`Text`), ids within the state store's 32-bit keys (`Id`), free-form
JSON (`params`, `options`, a mapping constant) without non-finite or out-of-range numbers and at most
`MAX_JSON_DEPTH` deep, URLs that `urllib` can split with a port in range. A bad value is a 400
`参数错误：…`, never a database error.
"""

import difflib
import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, ClassVar
from urllib.parse import unquote, unquote_to_bytes, urlsplit
from uuid import UUID
from zoneinfo import available_timezones

import idna
from croniter import CroniterError, croniter
from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, field_validator, model_validator

from schemas.base import UtcTime, WireModel
from schemas.events import RunPhase
from schemas.messages import (
    DROP_NEEDS_FROM,
    ERROR_LIMIT_EMPTY,
    EXPECTED_JSON,
    INTEGER_OUT_OF_RANGE,
    LONE_SURROGATE,
    MAPPING_NEEDS_FROM_OR_VALUE,
    MAPPING_NEEDS_TO,
    NOTIFY_URL_SCHEME,
    NUL_CHARACTER,
    NUMBER_NOT_FINITE,
    SCHEDULE_CRON_OR_INTERVAL,
    SOURCE_TABLE_OR_QUERY,
    SPLIT_NEEDS_TABLE,
    SPLIT_NOT_INCREMENTAL,
    UPSERT_NEEDS_KEYS,
    URL_PORT_RANGE,
    URL_UNPARSABLE,
    cron_invalid,
    illegal_identifier,
    illegal_table,
    nested_too_deep,
    timezone_unknown,
    unknown_field,
)
from schemas.status import BatchStatus, RunStatus

MAX_ID = 2**31 - 1
"""Connection and batch ids are PostgreSQL `integer` keys."""
MAX_JSON_DEPTH = 32
INT64 = 2**63 - 1

COLUMN = re.compile(r"^[^\W\d][\w$]{0,62}$")
"""A column: letters of any script (Chinese included), digits, `_`, `$`; always quoted when used."""
TABLE = re.compile(r"^(?!.*\.\.)[\w$*?\[\]-][\w$*?\[\].-]{0,199}$")
"""A table (optionally `schema.table`), or for file connections a file name or glob inside the folder;
never a path: no `/`, no `..`."""


def check_text(value: str) -> str:
    """PostgreSQL cannot store NUL, and a lone surrogate (valid in JSON `\\ud800`) has no UTF-8 form."""
    if "\x00" in value:
        raise ValueError(NUL_CHARACTER)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(LONE_SURROGATE) from None
    return value


def check_json(value: Any) -> Any:
    """A free-form JSON value the state store (jsonb) and every connector can hold: text as `check_text`,
    finite numbers, integers within 64 bits, nesting at most MAX_JSON_DEPTH."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            check_text(item)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not -INT64 - 1 <= item <= INT64:
                raise ValueError(INTEGER_OUT_OF_RANGE)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(NUMBER_NOT_FINITE)
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise ValueError(nested_too_deep(MAX_JSON_DEPTH))
            if isinstance(item, dict):
                pending.extend((key, depth) for key in item)
                pending.extend((child, depth + 1) for child in item.values())
            else:
                pending.extend((child, depth + 1) for child in item)
        else:
            raise ValueError(EXPECTED_JSON)
    return value


def _check_host(host: str) -> None:
    """Label lengths (stdlib IDNA), and IDNA 2008 for any label that is not plain ASCII or is already an
    A-label (`xn--…`): HTTP clients decode those, and a label that does not decode must fail here."""
    host.encode("idna")
    for label in host.split("."):
        if not label.isascii() or label.lower().startswith("xn--"):
            idna.decode(idna.encode(label))


def check_url(value: str) -> str:
    """A URL urllib can split, with a port in 1–65535, a host IDNA can encode, user and password that
    percent-decode to UTF-8 text and a path without an encoded NUL. The URL itself is never echoed,
    since it may carry a password."""
    try:
        parts = urlsplit(value)
        port = parts.port
        if parts.hostname:
            _check_host(parts.hostname)
        for part in (parts.username, parts.password):
            check_text(unquote(part or "", errors="strict"))
        if b"\x00" in unquote_to_bytes(parts.path):
            raise ValueError("NUL in path")
    except (ValueError, UnicodeError):
        raise ValueError(URL_UNPARSABLE) from None
    if port == 0:
        raise ValueError(URL_PORT_RANGE)
    return value


def check_identifier(value: str) -> str:
    """Column names; quoted wherever SQL is built."""
    if not COLUMN.fullmatch(value):
        raise ValueError(illegal_identifier(value))
    return value


def check_table(value: str) -> str:
    if not TABLE.fullmatch(value):
        raise ValueError(illegal_table(value))
    return value


class InputModel(WireModel):
    """A request body (or an object inside one): a key it does not declare is a 400 naming that key and
    its likely spelling (`chunksize` → `chunkSize`), never silently ignored. Either spelling of a field
    (camelCase or snake_case) is declared; response models stay lenient (`WireModel`). The read-only
    fields of the matching response (`echoed`) are accepted and dropped, so GET → edit → PUT works."""

    model_config = ConfigDict(extra="forbid")
    echoed: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict) or cls.model_config.get("extra") != "forbid":
            return data
        aliases = wire_names(cls)
        for key in data:
            if key not in aliases and key not in cls.model_fields and key not in cls.echoed:
                shown = str(key)[:64].encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
                close = difflib.get_close_matches(str(key), aliases, n=1, cutoff=0.6)
                raise ValueError(unknown_field(shown, close[0] if close else None))
        return {key: value for key, value in data.items() if key not in cls.echoed}


def wire_names(model: type[WireModel]) -> list[str]:
    """The camelCase keys a model declares."""
    return [field.alias or name for name, field in model.model_fields.items()]


Text = Annotated[str, AfterValidator(check_text)]
"""Every client string: storable in PostgreSQL and encodable as UTF-8."""
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
JsonObject = Annotated[dict[str, Any], AfterValidator(check_json)]
JsonValue = Annotated[Any, AfterValidator(check_json)]
Url = Annotated[str, AfterValidator(check_text), AfterValidator(check_url)]


ConnectionType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
"""A connector kind's name. Which kinds exist is the connector registry's answer (one line per kind in
service/connectors/registry.py): the catalog refuses others, and the API publishes them as the enum of
`type` in its OpenAPI document, so adding a system never edits this wire module."""


class WriteMode(StrEnum):
    APPEND = "append"
    OVERWRITE = "overwrite"
    UPSERT = "upsert"


class ConnectionIn(InputModel):
    name: Text = Field(min_length=1, max_length=200)
    type: ConnectionType
    url: Url | None = Field(default=None, max_length=4000)
    params: JsonObject = Field(default_factory=dict)
    options: JsonObject = Field(default_factory=dict)


class ConnectionOut(WireModel):
    id: int
    name: str
    type: ConnectionType
    url: str | None
    params: dict[str, Any]
    options: dict[str, Any]
    created_at: UtcTime
    updated_at: UtcTime


ConnectionIn.echoed = frozenset(wire_names(ConnectionOut)) - set(wire_names(ConnectionIn))


class SourceSpec(InputModel):
    table: Text | None = None
    query: Text | None = Field(default=None, max_length=100_000)
    cursor_column: Text | None = None

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
            raise ValueError(SOURCE_TABLE_OR_QUERY)
        return self


class TargetSpec(InputModel):
    table: Text
    mode: WriteMode = WriteMode.APPEND
    key_columns: list[Text] | None = Field(default=None, max_length=100)
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
            raise ValueError(UPSERT_NEEDS_KEYS)
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


class MappingEntry(InputModel):
    """One field of the mapping: rename `from`→`to`, cast to `type`, drop (`drop: true`) or set `value`."""

    from_: Text | None = Field(default=None, alias="from")
    to: Text | None = None
    type: CastType | None = None
    drop: bool = False
    value: JsonValue = None

    @field_validator("from_", "to")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        return None if value is None else check_identifier(value)

    @model_validator(mode="after")
    def _shape(self) -> "MappingEntry":
        if self.from_ is None and self.value is None:
            raise ValueError(MAPPING_NEEDS_FROM_OR_VALUE)
        if self.drop and self.from_ is None:
            raise ValueError(DROP_NEEDS_FROM)
        if not self.drop and self.to is None and self.from_ is None:
            raise ValueError(MAPPING_NEEDS_TO)
        return self

    @property
    def target_name(self) -> str:
        return self.to or self.from_ or ""


CRON_HORIZON_YEARS = 30
CRON_PROBE = datetime(2026, 1, 1, tzinfo=UTC)


@cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


class ScheduleSpec(InputModel):
    """When a batch runs by itself (docs/spec.md §9): a cron expression or a fixed interval, in a timezone.

    Cron fires are computed in `timezone` (daylight-saving changes included); interval fires are multiples
    of `intervalSeconds` since the Unix epoch, so every scheduler names the same fire times."""

    cron: Text | None = Field(default=None, max_length=200)
    interval_seconds: int | None = Field(default=None, gt=0, le=366 * 86_400)
    timezone: Text = Field(default="UTC", max_length=64)
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        """Five fields croniter reads, and a time they name within CRON_HORIZON_YEARS (`0 0 31 2 *` never fires)."""
        if value is None:
            return None
        try:
            valid = len(value.split()) == 5 and croniter.is_valid(value)
            if valid:
                croniter(value, CRON_PROBE, max_years_between_matches=CRON_HORIZON_YEARS).get_next(datetime)
        except (CroniterError, ValueError, OverflowError):
            valid = False
        if not valid:
            raise ValueError(cron_invalid(value))
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        """A name of the IANA database, looked up in its list, never as a path."""
        if value not in _timezones():
            raise ValueError(timezone_unknown(value))
        return value

    @model_validator(mode="after")
    def _one_of(self) -> "ScheduleSpec":
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError(SCHEDULE_CRON_OR_INTERVAL)
        return self


class RetryPolicySpec(InputModel):
    """Resume a run that failed on a transient error from its checkpoint, up to `maxAttempts` times, the n-th
    attempt `backoffSeconds * 2**(n-1)` after the failure it resumes."""

    max_attempts: int = Field(default=0, ge=0, le=100)
    backoff_seconds: float = Field(default=60, ge=0, le=86_400)


class NotifyOn(StrEnum):
    FAILED = "FAILED"
    SUCCESS = "SUCCESS"
    CANCELLED = "CANCELLED"


class NotifySpec(InputModel):
    """POST the run's `BatchSyncCompleted` to `url` when it ends in one of `on`, signed (docs/operations.md)."""

    url: Url = Field(max_length=2000)
    on: list[NotifyOn] = Field(default_factory=lambda: [NotifyOn.FAILED], min_length=1, max_length=3)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError(NOTIFY_URL_SCHEME)
        return value


class ErrorLimitSpec(InputModel):
    """How many bad rows a run may reject (to `P.rejected`) instead of failing: at most `records` rows, and at
    most `ratio` of the rows read (checked when the run ends); either or both (docs/spec.md §9)."""

    records: int | None = Field(default=None, ge=0, le=2**62)
    ratio: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _some_limit(self) -> "ErrorLimitSpec":
        if self.records is None and self.ratio is None:
            raise ValueError(ERROR_LIMIT_EMPTY)
        return self


class SplitSpec(InputModel):
    """Spread one run over the consumer group (docs/spec.md §10): slices by ranges of `column` (an integer, date or
    timestamp column of a table source), each at most `maxRowsPerSlice` rows, or exactly `slices` ranges."""

    column: Text
    max_rows_per_slice: int = Field(default=500_000, ge=1, le=2**62)
    slices: int | None = Field(default=None, ge=1, le=10_000)

    @field_validator("column")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return check_identifier(value)


class BatchIn(InputModel):
    name: Text = Field(min_length=1, max_length=200)
    source_connection_id: Id
    source: SourceSpec
    target_connection_id: Id
    target: TargetSpec
    mapping: list[MappingEntry] | None = Field(default=None, max_length=10_000)
    chunk_size: int | None = Field(default=None, ge=1, le=1_000_000)
    schedule: ScheduleSpec | None = None
    retry_policy: RetryPolicySpec | None = None
    notify: NotifySpec | None = None
    error_limit: ErrorLimitSpec | None = None
    split: SplitSpec | None = None

    @model_validator(mode="after")
    def _split_a_table(self) -> "BatchIn":
        if self.split is not None and self.source.table is None:
            raise ValueError(SPLIT_NEEDS_TABLE)
        if self.split is not None and self.source.cursor_column is not None:
            raise ValueError(SPLIT_NOT_INCREMENTAL)
        return self


class BatchOut(BatchIn):
    model_config = ConfigDict(extra="ignore")
    id: int
    status: BatchStatus
    last_sync_time: UtcTime | None = None
    last_records_synced: int | None = None
    last_run_id: UUID | None = None
    last_error: str | None = None
    config_version: int = 1
    next_fire_time: UtcTime | None = None
    """When the schedule fires next (null without an enabled schedule)."""
    created_at: UtcTime
    updated_at: UtcTime


BatchIn.echoed = frozenset(wire_names(BatchOut)) - set(wire_names(BatchIn))


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


class NotificationOut(WireModel):
    """One notification of a run (docs/spec.md §9): where it goes (path and query masked, since a chat webhook's
    path is its secret), whether it arrived, and how its attempts went."""

    url: str
    status: str
    attempts: int
    response_status: int | None = None
    last_error: str | None = None
    next_attempt_at: UtcTime | None = None
    delivered_at: UtcTime | None = None
    created_at: UtcTime


class SliceOut(WireModel):
    """One slice of a split run (docs/spec.md §10): its range, where it ran and how it went."""

    slice: int
    range: dict[str, Any]
    status: RunStatus
    worker_id: str | None = None
    attempts: int = 0
    records_read: int = 0
    records_written: int = 0
    records_rejected: int = 0
    chunks: int = 0
    message: str | None = None
    error_code: str | None = None
    carried_from_run_id: UUID | None = None
    """A retry's slice that had succeeded in the run it resumes: carried over, not run again."""
    started_at: UtcTime | None = None
    finished_at: UtcTime | None = None


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
    notifications: list[NotificationOut] = Field(default_factory=list)
    phase: RunPhase | None = None
    """While RUNNING: `writing` chunks, or `publishing` them (an overwrite's swap); null otherwise."""
    records_rejected: int = 0
    """Rows set aside under the batch's `errorLimit` (sent to `P.rejected`)."""
    source_count: int | None = None
    """A full run's reconciliation: the source's rows after the run (null: incremental, or not counted)."""
    target_count: int | None = None
    reconciled: bool | None = None
    """False when the counts differ from what the write mode expects; `message` then says by how much."""
    slices: list[SliceOut] | None = None
    """A split run's slices (null for a run that is not split); its counts are their sums."""


class HistoryRow(WireModel):
    run_id: UUID
    trigger: str
    requested_by: str
    status: RunStatus
    started_at: UtcTime | None
    finished_at: UtcTime | None
    records_synced: int
    message: str | None
    resumed_from_run_id: UUID | None = None
    retried_by_run_id: UUID | None = None
    """The run the retry policy resumed this failed run with (attempt `retryAttempt`)."""
    retry_attempt: int | None = None
    skipped_fires: int = 0
    """Schedule fires skipped because this run was still active."""
    last_skipped_fire_at: UtcTime | None = None
    records_rejected: int = 0
    source_count: int | None = None
    target_count: int | None = None
    reconciled: bool | None = None


class RunListRow(HistoryRow):
    """A run in the list across batches (`GET /integration/run/list`): its batch named beside it."""

    batch_id: int
    batch_name: str | None
    error_code: str | None


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
    total_records_rejected: int = 0


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
    total_records_rejected: int = 0
    batches_by_status: dict[str, int]
    batches_by_mode: dict[str, int]



class UrlFormOut(WireModel):
    schemes: list[str]
    example: str
    required: bool


class ConnectionTypeOut(WireModel):
    """One connection type as `GET /integration/connection/types` publishes it, for forms and clients."""

    type: str
    source: bool
    target: bool
    modes: list[WriteMode]
    """The write modes its target supports (empty when it cannot be a target)."""
    incremental: bool
    """Whether its source reads beyond a high-water mark (`source.cursorColumn`)."""
    url: UrlFormOut | None
    table: str
    """What a batch's `table` names on a connection of this type."""
    params: dict[str, Any]
    """The JSON Schema of `params`; secret-bearing fields carry `"secret": true`."""


class CheckProblem(WireModel):
    """Why a batch would fail: the body field to fix (`source.table`, `mapping.from`…) and what is wrong."""

    field: str
    message: str


class CheckColumn(WireModel):
    """A target column the run would write: its source column (None for a constant), its canonical kind,
    and its type in the target (None while the run would still create the table)."""

    name: str
    source: str | None
    kind: str | None
    target_type: str | None


class BatchCheck(WireModel):
    """`POST /integration/batch/{id}/check`: a dry run that writes nothing. `ok` when no problem was found;
    `notes` say what the run will do that is not a problem (create the target table); `preview` holds the
    first rows after the mapping, as objects keyed by target column."""

    ok: bool
    problems: list[CheckProblem]
    notes: list[CheckProblem] = Field(default_factory=list)
    columns: list[CheckColumn]
    preview: list[dict[str, Any]]
    slices: list[dict[str, Any]] | None = None
    """A split batch: the slices a run started now would be planned into (`column`, `kind`, `lo`, `hi`,
    `nulls`, as a run's `slices[].range`); null for a batch without `split`."""
