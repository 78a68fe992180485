"""The `params` each connection type accepts, declared once as pydantic models (SPEC §3, §7).

Every key a connector reads is declared here, and nothing else is accepted: a misspelt key
(`delimeter`) is refused when the connection is created or edited, instead of silently falling back
to a default. Fields that carry secrets are marked in the schema (`json_schema_extra={"secret": True}`,
like Airbyte's `airbyte_secret`); masking on the way out and the encrypted split at rest are derived
from those marks (`service/catalog/redaction.py`), never from a list of key names. A secret field
holding an object (http `headers`, `query`) makes each of its values a secret.

The URL is part of the schema too: its password is a secret for every type, and so is every value
of its query string (`?key=`, `sig`, `sslpassword`…), since a query is how APIs and drivers take
credentials. `destination()` names where a connection's secrets are sent, so an edit that moves the
connection elsewhere must supply them again.
"""

from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

SECRET: dict[str, Any] = {"secret": True}
"""The schema mark of a secret-bearing field."""

_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mariadb": 3306, "http": 80, "https": 443}


def secret(description: str) -> Any:
    """A secret-bearing optional field."""
    return Field(default=None, description=description, json_schema_extra=SECRET)


class ParamsModel(BaseModel):
    """Base of every params model: unknown keys are errors; field names are the wire's camelCase."""

    model_config = ConfigDict(extra="forbid")
    kind: ClassVar[str]

    def destination(self, url: str | None) -> tuple[Any, ...]:
        """Where this connection's secrets go: type, host, port and user of its URL."""
        return (self.kind, *url_destination(url))


Columns = list[str | dict[str, Any]] | dict[str, Any] | None


class _FileParams(ParamsModel):
    path: str | None = Field(default=None, description="A file, a folder of files or a glob")
    encoding: str | None = Field(default=None, description="utf-8 (default), utf-8-sig, gbk…")
    compression: Literal["gzip", "none"] | None = None
    columns: Columns = Field(default=None, description="Declared columns: names, {name, kind} or {name: kind}")

    def destination(self, url: str | None) -> tuple[Any, ...]:
        return (self.kind, self.path or url)


class CsvParams(_FileParams):
    kind: ClassVar[str] = "csv"
    delimiter: str | None = Field(default=None, description="One character; default `,`")
    quote: str | None = Field(default=None, description='One character; default `"`')
    header: bool | None = Field(default=None, description="Whether the first line names the columns (default true)")
    nullValue: str | None = Field(default=None, description="The text that stands for NULL (default empty)")


class JsonlParams(_FileParams):
    kind: ClassVar[str] = "jsonl"


class PostgresqlParams(ParamsModel):
    """Everything is in the URL (`postgresql://user:pw@host:port/db?sslmode=…`)."""

    kind: ClassVar[str] = "postgresql"


class MysqlParams(ParamsModel):
    """Everything is in the URL (`mysql://user:pw@host:port/db`)."""

    kind: ClassVar[str] = "mysql"


class SqliteParams(ParamsModel):
    """Everything is in the URL (`sqlite:///path/to/file.db`)."""

    kind: ClassVar[str] = "sqlite"

    def destination(self, url: str | None) -> tuple[Any, ...]:
        return (self.kind, url)


class HttpAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["bearer", "basic"]
    token: str | None = secret("Bearer token")
    username: str | None = None
    password: str | None = secret("Basic auth password")


class HttpPagination(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["page", "offset", "cursor", "link", "none"] = "none"
    pageParam: str | None = None
    offsetParam: str | None = None
    limitParam: str | None = None
    cursorParam: str | None = None
    sizeParam: str | None = None
    start: int | None = None
    pageSize: int | None = None
    nextCursorPath: str | None = None
    nextLinkPath: str | None = None


HeaderName = Annotated[str, StringConstraints(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")]
"""An RFC 9110 token: a header name that cannot smuggle a second header or a line break."""
HeaderValue = Annotated[str, StringConstraints(pattern=r"^[\x20-\x7e\t]{0,8192}$")]
"""Visible ASCII, spaces and tabs: what every HTTP/1.1 stack sends as-is (no CR/LF, no raw UTF-8)."""


class HttpParams(ParamsModel):
    kind: ClassVar[str] = "http"
    headers: dict[HeaderName, HeaderValue] | None = secret(
        "Request headers; every value is a secret (custom auth headers)")
    auth: HttpAuth | None = None
    query: dict[str, Any] | None = secret("Query parameters added to every request; every value is a secret")
    timeout: float | None = Field(default=None, gt=0)
    maxRetries: int | None = Field(default=None, ge=0)
    maxRetryAfter: float | None = Field(default=None, ge=0)
    pagination: HttpPagination | None = None
    recordsPath: str | None = None
    totalPath: str | None = None
    columns: Columns = None
    tableAsPath: bool | None = None

    def destination(self, url: str | None) -> tuple[Any, ...]:
        """Scheme too: a secret for `https://host` must not go to `http://host` in clear."""
        return (self.kind, urlsplit(url or "").scheme.lower(), *url_destination(url))


class KafkaParams(ParamsModel):
    kind: ClassVar[str] = "kafka"
    bootstrap: str | None = Field(default=None, description="host:port[,host:port…]")
    topic: str | None = None
    groupId: str | None = None
    key: str | list[str] | None = None
    clientId: str | None = None
    columns: Columns = None
    onInvalid: Literal["fail", "skip"] | None = None
    securityProtocol: str | None = Field(default=None, description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    saslMechanism: str | None = Field(default=None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    saslUsername: str | None = None
    saslPassword: str | None = secret("SASL password")
    sslCafile: str | None = Field(default=None, description="CA bundle that signs the brokers' certificates")

    def destination(self, url: str | None) -> tuple[Any, ...]:
        servers = sorted(s.strip().lower() for s in (self.bootstrap or url or "").split(",") if s.strip())
        return (self.kind, tuple(servers), self.saslUsername, (self.securityProtocol or "PLAINTEXT").upper())


PARAMS: dict[str, type[ParamsModel]] = {
    model.kind: model
    for model in (PostgresqlParams, MysqlParams, SqliteParams, CsvParams, JsonlParams, HttpParams, KafkaParams)
}


class ParamsInvalid(ValueError):
    """A connection's params do not fit its type's schema; the message names the key (no `参数错误：`)."""


def model_of(kind: str) -> type[ParamsModel]:
    return PARAMS[kind]


def validate(kind: str, params: dict[str, Any], options: dict[str, Any] | None = None) -> ParamsModel:
    """The params as their type's model, or ParamsInvalid naming the first offending key.

    No connector reads `options`, so any key there is unknown too.
    """
    model = model_of(kind)
    for key in options or {}:
        raise ParamsInvalid(f"options.{key} 不是 {kind} 连接可用的参数")
    try:
        return model.model_validate(params)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(["params", *(str(part) for part in first["loc"])])
        if first["type"] == "extra_forbidden":
            raise ParamsInvalid(f"{where} 不是 {kind} 连接可用的参数") from error
        raise ParamsInvalid(f"{where}：{_problem(first)}") from error


def _problem(error: Any) -> str:
    expected = error.get("ctx", {}).get("expected")
    if error["type"] == "literal_error" and expected:
        return f"取值须为 {expected}"
    return {"string_type": "应为字符串", "bool_type": "应为布尔值", "bool_parsing": "应为布尔值",
            "int_type": "应为整数", "int_parsing": "应为整数", "float_type": "应为数字", "float_parsing": "应为数字",
            "dict_type": "应为对象", "model_type": "应为对象", "list_type": "应为数组",
            "missing": "缺少必填字段"}.get(error["type"], str(error.get("msg", "无效")))


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each type's params, secrets marked `"secret": true`, for the API to publish."""
    return {kind: model.model_json_schema() for kind, model in PARAMS.items()}


def url_destination(url: str | None) -> tuple[Any, ...]:
    """Host, port and user of a URL; a URL that cannot be parsed stands for itself."""
    try:
        parts = urlsplit(url or "")
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.split("+")[0].lower())
        return ((parts.hostname or "").lower(), port, parts.username)
    except ValueError:
        return (url,)
