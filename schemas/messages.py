"""Every user-facing text, once: the Chinese messages of the envelope, of run outcomes and of refusals.

The API's `message`, a run's `message` in its events and history, and the reason a connection test
gives all come from here, so a text is changed (or translated) in one place. The texts docs/spec.md §3
fixes — `操作成功`, `同步成功`, `同步失败：<reason>`, `批次不存在`, `参数错误：…`, `连接超时`,
`源表不存在：<name>`, `文件路径不在允许的目录中` … — are matched by clients: never respell them.
Texts with a parameter are small functions. Log lines and exception details for operators stay in
English where they are written; they are not messages. tests/unit/test_messages.py keeps this the only
home: it fails on a Chinese string literal anywhere else in schemas/, service/, consumers/, producers/.

A module of data, not of behaviour: every layer may import it (schemas/ depends on nothing of ours).
"""

from collections.abc import Iterable, Mapping
from typing import Any, Final


def _listed(names: Iterable[object]) -> str:
    return ", ".join(str(name) for name in names)


def at_line(name: str, line: int) -> str:
    """Where in a file: `<file> 第 <n> 行`."""
    return f"{name} 第 {line} 行"


def located(reason: str, where: str) -> str:
    """A reason with its place in brackets: `<reason>（<where>）`."""
    return f"{reason}（{where}）"


# The envelope and the answers of the HTTP API (docs/spec.md §3). Fixed texts: clients match them.
OK: Final = "操作成功"
SYNC_SUCCEEDED: Final = "同步成功"
RUNNING_IN_BACKGROUND: Final = "同步已在后台执行"
BATCH_NOT_FOUND: Final = "批次不存在"
BATCH_RUNNING: Final = "批次正在同步中"
BATCH_NOT_FAILED: Final = "批次未处于失败状态"
NOTHING_TO_CANCEL: Final = "批次没有正在执行的同步"
CANCEL_TOO_LATE: Final = "同步已进入提交阶段，无法取消"
"""409: the run already began to publish what it wrote (an overwrite's swap); it ends as it would have."""
INTERNAL: Final = "服务器内部错误"
AUTH_FAILED: Final = "认证失败，无法访问系统资源"
FORBIDDEN: Final = "无权限执行此操作"
BODY_TOO_LARGE: Final = "请求体过大"
NOT_FOUND: Final = "资源不存在"
METHOD_NOT_ALLOWED: Final = "请求方法不允许"
CONNECTED: Final = "连接成功"
DATABASE: Final = "数据库"
"""The part named by `服务暂不可用：<part>` when the state store cannot be reached."""
BROKER: Final = "消息队列"
"""The part named by `服务暂不可用：<part>` when Kafka cannot be reached."""


def sync_failed(reason: str) -> str:
    return f"同步失败：{reason}"


def unavailable(part: str) -> str:
    return f"服务暂不可用：{part}"


DATABASE_DOWN: Final = unavailable(DATABASE)


def unavailable_parts(*parts: str) -> str:
    """`服务暂不可用：数据库、消息队列`: every part that is down, as `/readyz` names them."""
    return unavailable("、".join(parts))


# A request the API refuses before any service code runs: `参数错误：<field>：<problem>`.
def bad_request(problem: object) -> str:
    return f"参数错误：{problem}"


def bad_field(field: str, problem: str) -> str:
    return bad_request(f"{field}：{problem}")


BODY_UNPARSABLE: Final = "请求体无法解析"
REQUEST_INVALID: Final = "请求无效"
ILLEGAL_PATH_CHARACTERS: Final = "请求地址含有非法字符"
CONTENT_LENGTH_INVALID: Final = "Content-Length 无效"

# What is wrong with one field (pydantic's error types, the wire checks of schemas/api.py, connection
# params). The templates in braces are filled from pydantic's error context.
INVALID: Final = "无效"
MISSING: Final = "缺少必填字段"
NOT_JSON: Final = "请求体不是合法的 JSON"
EXPECTED_INTEGER: Final = "应为整数"
EXPECTED_NUMBER: Final = "应为数字"
EXPECTED_UUID: Final = "应为 UUID"
EXPECTED_BOOLEAN: Final = "应为布尔值"
EXPECTED_STRING: Final = "应为字符串"
EXPECTED_OBJECT: Final = "应为对象"
EXPECTED_ARRAY: Final = "应为数组"
EXPECTED_JSON: Final = "应为 JSON 值"
LONE_SURROGATE: Final = "不能包含不成对的代理字符"
NUL_CHARACTER: Final = "不能包含 NUL 字符"
INTEGER_OUT_OF_RANGE: Final = "整数超出范围"
NUMBER_NOT_FINITE: Final = "数字须为有限值"
AT_LEAST: Final = "不能小于 {ge}"
AT_MOST: Final = "不能大于 {le}"
GREATER_THAN: Final = "须大于 {gt}"
LESS_THAN: Final = "须小于 {lt}"
LENGTH_AT_LEAST: Final = "长度不能小于 {min_length}"
LENGTH_AT_MOST: Final = "长度不能大于 {max_length}"
ONE_OF: Final = "取值须为 {expected}"
URL_UNPARSABLE: Final = "URL 无法解析（主机、端口、用户名、密码或路径无效）"
URL_PORT_RANGE: Final = "URL 端口须在 1–65535 之间"
SOURCE_TABLE_OR_QUERY: Final = "source 须且仅须指定 table 或 query 之一"
UPSERT_NEEDS_KEYS: Final = "upsert 模式必须指定 keyColumns"
MAPPING_NEEDS_FROM_OR_VALUE: Final = "mapping 项须指定 from 或常量 value"
DROP_NEEDS_FROM: Final = "drop 须指定 from"
MAPPING_NEEDS_TO: Final = "mapping 项须指定 to"


def nested_too_deep(depth: int) -> str:
    return f"嵌套不能超过 {depth} 层"


def illegal_identifier(value: str) -> str:
    return f"非法标识符：{value}"


def illegal_table(value: str) -> str:
    return f"非法表名：{value}"


def field_problem(where: str, problem: str) -> str:
    return f"{where}：{problem}"


def not_a_param_of(where: str, kind: str) -> str:
    return f"{where} 不是 {kind} 连接可用的参数"


UNKNOWN_FIELD: Final = "未知字段"

# A batch's dry run (`POST /integration/batch/{id}/check`).
CHECK_PASSED: Final = "检查通过"
CHECK_TIMED_OUT: Final = "检查超时"
CHECK_TARGET_UNREADABLE: Final = "此类连接的目标表无法在不写入的情况下检查"


def check_found(count: int) -> str:
    return f"检查发现 {count} 个问题"


def target_created_by_run(name: str) -> str:
    return f"目标表不存在：{name}，同步时将自动创建"


def url_required(kind: str, example: str) -> str:
    return f"url：{kind} 连接须指定地址，例如 {example}"


def url_scheme_unexpected(kind: str, schemes: Iterable[str], scheme: str | None) -> str:
    """A misspelt or foreign URL scheme (`postgresq://`), naming the ones the kind takes."""
    expected = " 或 ".join(f"{s}://" for s in schemes)
    found = f"，而不是 {scheme}://" if scheme else ""
    return f"url：{kind} 连接的地址应以 {expected} 开头{found}"


def unknown_field(key: str, suggestion: str | None = None) -> str:
    """A request body key no model declares (a typo such as `chunksize`), with the close spelling if any."""
    text = f"{UNKNOWN_FIELD} {key}"
    return f"{text}，是否应为 {suggestion}？" if suggestion else text


# The catalog of connections, batches and runs (service/catalog).
CONNECTION_NOT_FOUND: Final = "连接不存在"
RUN_NOT_FOUND: Final = "运行记录不存在"
CONNECTION_IN_USE: Final = "连接正在被批次使用"
MOVED_NEEDS_SECRETS: Final = "修改连接地址时必须重新输入密码"
SECRETS_UNREADABLE: Final = "连接密钥无法解密"


def connection_missing(connection_id: int) -> str:
    return f"{CONNECTION_NOT_FOUND}：{connection_id}"


def connection_name_taken(name: str) -> str:
    return f"连接名称已存在：{name}"


def connection_failed(reason: str) -> str:
    """The answer of a connection test that could not connect."""
    return f"连接失败：{reason}"


# Runs: admission of a request and the outcome of a run (service/runs).
REQUEST_MISMATCH: Final = "请求与批次不一致"

# The reasons of sync errors (service/sync/errors.py); the first three are fixed by docs/spec.md §3.
CONNECT_TIMEOUT: Final = "连接超时"
AUTH_REJECTED: Final = "认证失败"
CONNECT_REFUSED: Final = "连接被拒绝"
TARGET_DATABASE: Final = "目标库"
"""Prefix of a connect error on the target side: `目标库连接超时`."""
INTERNAL_ERROR: Final = "内部错误"
SOURCE_FAILED: Final = "源系统错误"
TARGET_FAILED: Final = "目标系统错误"
CHECKPOINT_TAKEN: Final = "检查点已被另一执行推进"
CONFIG_INVALID: Final = "批次配置无效"
ACCESS_DENIED: Final = "访问被安全策略拒绝"
RUN_CANCELLED: Final = "同步已取消"
SOURCE_DROPPED: Final = "源连接中断"
TARGET_DROPPED: Final = "目标连接中断"


def source_table_missing(name: str) -> str:
    return f"源表不存在：{name}"


def target_table_missing(name: str) -> str:
    return f"目标表不存在：{name}"


# Planning a run: mapping, column checks, automatic table creation (service/sync).
NO_COLUMNS_AFTER_MAPPING: Final = "映射后没有任何列"
CONSTANT_NUL: Final = "常量值不能包含 NUL 字符"


def source_column_missing(name: str) -> str:
    return f"源表缺少列：{name}"


def duplicate_target_column(name: str) -> str:
    return f"映射目标列重复：{name}"


def target_columns_missing(table: str, names: Iterable[str]) -> str:
    return f"目标表 {table} 缺少列：{_listed(names)}"


def column_incompatible(table: str, column: str, kind: object, sql_type: object) -> str:
    return f"目标表 {table} 的列 {column} 类型不兼容：{kind} → {sql_type}"


def no_auto_create(kind: str) -> str:
    return f"目标类型 {kind} 不支持自动建表"


def unmappable_columns(names: Iterable[str]) -> str:
    return f"无法映射列类型，不能自动建表：{_listed(names)}"


def conversion_failed(column: str) -> str:
    return f"字段转换失败：{column}"


# Trust-boundary policies (service/security); `文件路径不在允许的目录中` is fixed by docs/spec.md §3.
PATH_REFUSED: Final = "文件路径不在允许的目录中"
EGRESS_REFUSED: Final = "目标地址被安全策略禁止"
STATE_DATABASE_REFUSED: Final = "不允许连接服务自身的状态数据库"
OWN_TOPICS_REFUSED: Final = "不允许读写服务自身的主题"


# Connector kinds and their capabilities (service/connectors/registry.py).
def kind_not_registered(kinds: Iterable[str], kind: str) -> str:
    """A connection whose `type` names no registered connector."""
    return f"type：必须是 {_listed(kinds)} 之一，而不是 {kind}"


def unsupported_kind(kind: str) -> str:
    return f"暂不支持的连接类型：{kind}"


def not_a_source(kind: str) -> str:
    return f"连接类型不能作为源：{kind}"


def not_a_target(kind: str) -> str:
    return f"连接类型不能作为目标：{kind}"


def mode_unsupported(kind: str, mode: str) -> str:
    return f"目标类型 {kind} 不支持 {mode} 模式"


def incremental_unsupported(kind: str) -> str:
    return f"源类型 {kind} 不支持增量同步（cursorColumn）"


def split_unsupported(kind: str, side: str) -> str:
    """A batch with `split` whose source (`side` "source") cannot be read by ranges, or whose target cannot take
    slices."""
    return f"{'源' if side == 'source' else '目标'}类型 {kind} 不支持分片同步（split）"


SPLIT_NEEDS_TABLE: Final = "分片同步（split）需要以表（table）为源，不支持查询（query）"
SPLIT_NOT_INCREMENTAL: Final = "分片同步（split）不能与增量同步（cursorColumn）同时使用"


def slice_failed(number: int, message: str) -> str:
    """A split run failed because slice `number` did: `分片 3 同步失败：<the slice's message>`."""
    return f"分片 {number} 同步失败：{message}"


def split_column_kind(column: str, kind: object) -> str:
    """The `split` column is not an integer, date or timestamp column (service/slicing/planner.py)."""
    return f"分片同步（split）的列 {column} 类型为 {kind}，只支持整数、日期和时间列"


def split_value_unreadable(column: str, value: object) -> str:
    """A date or timestamp `split` column holding a value that is not ISO 8601 (SQLite keeps any value)."""
    return f"分片同步（split）的列 {column} 的值不是 ISO 8601 日期或时间：{value}"


# SQL databases: shared by the postgresql, mysql and sqlite connectors (service/connectors/sql).
WRITE_REFUSED: Final = "源查询试图写入（源端只读）"
DATABASE_MISSING: Final = "数据库不存在"
KEY_COLUMNS: Final = "键列"
UPSERT_KEY_COLUMNS: Final = "upsert 键列"


def cursor_column_missing(name: str) -> str:
    return f"源表缺少游标列：{name}"


def columns_not_mapped(label: str, names: Iterable[str]) -> str:
    """`<label>未出现在映射结果中：<names>`, the label one of KEY_COLUMNS, UPSERT_KEY_COLUMNS, KAFKA_KEY_COLUMNS."""
    return f"{label}未出现在映射结果中：{_listed(names)}"


def copy_refused(system: str) -> str:
    return f"{system} 目标不接受原始 COPY 流"


# The read-only query guard of SQL sources (service/connectors/sql/query_guard.py).
QUERY_REFUSED: Final = "查询语句不被允许"
QUERY_EMPTY: Final = "查询为空"
QUERY_NOT_SELECT: Final = "只允许单条 SELECT 或 WITH 查询"
QUERY_UNBALANCED: Final = "括号不匹配"
QUERY_MANY_STATEMENTS: Final = "不允许多条语句"
QUERY_SETS_VARIABLE: Final = "不允许修改会话（:=）"
QUERY_SETS_SESSION: Final = "不允许修改会话（SET）"
QUERY_EXECUTABLE_COMMENT: Final = "不允许可执行注释 /*! … */"
QUERY_UNCLOSED_QUOTE: Final = "字符串或标识符未闭合"
QUERY_UNICODE_ESCAPE: Final = "不允许 U& 转义的字符串或标识符"
QUERY_UNCLOSED_COMMENT: Final = "注释未闭合"


def query_refused(why: str) -> str:
    return f"{QUERY_REFUSED}：{why}"


def query_writes(keyword: str) -> str:
    return f"不允许写入（{keyword}）"


def query_calls(name: str) -> str:
    return f"不允许调用 {name}"


# PostgreSQL connections.
POSTGRESQL_URL_MISSING: Final = "PostgreSQL 连接缺少 url"
POSTGRESQL_URL_SCHEME: Final = "PostgreSQL 连接 url 须以 postgresql:// 开头"
POSTGRESQL_HOST_INVALID: Final = "PostgreSQL 连接 url 的主机无效"
POSTGRESQL_PORT_INVALID: Final = "PostgreSQL 连接 url 的端口无效"
POSTGRESQL_HOSTS_REFUSED: Final = "PostgreSQL 连接只允许一个 TCP 主机（不允许 unix 套接字或多个主机）"
POSTGRESQL_PARAMETERS_REFUSED: Final = "PostgreSQL 连接 url 不允许这些参数"
SESSION_CHANGED: Final = "源查询修改了会话设置"


def postgresql_parameters_refused(names: Iterable[str]) -> str:
    return f"{POSTGRESQL_PARAMETERS_REFUSED}：{_listed(names)}"


def postgresql_sslmode(modes: Iterable[str]) -> str:
    return f"PostgreSQL 连接 sslmode 只支持 {_listed(modes)}"


# MySQL connections.
MYSQL_URL_SCHEME: Final = "MySQL 连接 url 须以 mysql:// 开头"
MYSQL_HOST_INVALID: Final = "MySQL 连接 url 的主机无效"
MYSQL_PORT_INVALID: Final = "MySQL 连接 url 的端口无效"
MYSQL_DATABASE_MISSING: Final = "MySQL 连接 url 须指定数据库"
MYSQL_PARAMETERS_REFUSED: Final = "MySQL 连接 url 不允许参数（如 unix_socket）"

# SQLite connections.
SQLITE_READ_ONLY: Final = "SQLite 源只能读取数据：不允许 ATTACH、写入或修改状态"
SQLITE_URL: Final = "SQLite 连接 url 须为 sqlite:///path/to/file.db"
SQLITE_CANNOT_OPEN: Final = "无法打开数据库文件"

# File connections, CSV and JSON Lines (service/connectors/files, csv, jsonl, json_records.py).
FILE_SOURCE_NO_QUERY: Final = "文件源不支持 query，请指定 table（文件名）"
FILE_SOURCE_NO_CURSOR: Final = "文件源不支持增量同步（cursorColumn），每次同步读取全部文件"
FOLDER_NEEDS_TABLE: Final = "文件夹连接须指定 table（文件名）"
FILE_COLUMNS_SHAPE: Final = "params.columns 须为列名列表或 {列名: 类型}"
RECORD_COLUMNS_SHAPE: Final = "params.columns 的每一项须为列名或 {name, kind}"
SINGLE_CHARACTERS: Final = "params.delimiter 与 params.quote 须为单个字符"
CSV_TARGET_NEEDS_COLUMNS: Final = "无表头的 CSV 目标须在 params.columns 中声明列"


def path_missing(kind: str) -> str:
    return f"{kind} 连接缺少 params.path"


def encoding_unsupported(encoding: str) -> str:
    return f"不支持的文件编码：{encoding}"


def encoding_not_utf8_compatible(encoding: str) -> str:
    return f"不支持的文件编码：{encoding}（请使用 utf-8、utf-8-sig 或 gbk）"


def compression_unsupported(compression: object) -> str:
    return f"不支持的压缩格式：{compression}"


def column_kind_invalid(name: str, kind: object) -> str:
    return f"params.columns 中列 {name} 的类型无效：{kind}"


def columns_kind_invalid(kind: object) -> str:
    return f"params.columns 中的类型无效：{kind}"


def file_io_failed(name: str) -> str:
    return f"文件读写失败：{name}"


def file_unreadable(name: str) -> str:
    return f"文件不可读写：{name}"


def file_read_failed(where: str) -> str:
    return f"文件读取失败：{where}"


def file_undecodable(where: str, encoding: str) -> str:
    return f"文件编码错误：{where}不是有效的 {encoding} 文本"


def file_unencodable(encoding: str, name: str, line: int) -> str:
    return f"无法以 {encoding} 编码写入：{name} 本块第 {line} 行"


def file_changed(expected: object) -> str:
    return f"源文件在续传前发生了变化：{expected}"


def header_mismatch(name: str) -> str:
    return f"文件表头与第一个文件不一致：{name}"


def csv_duplicate_header(names: Iterable[str]) -> str:
    return f"CSV 表头列名重复：{_listed(names)}"


def csv_malformed(where: str) -> str:
    return f"CSV 格式错误：{where}"


def csv_too_many_fields(where: str) -> str:
    return f"列数多于表头：{where}"


def csv_target_without_header(name: str) -> str:
    return f"目标 CSV 文件没有表头：{name}"


def json_malformed(where: str) -> str:
    return f"JSON 格式错误：{where}"


def json_not_object(where: str) -> str:
    return f"不是 JSON 对象：{where}"


# HTTP sources (service/connectors/http).
HTTP_SCHEME_REFUSED: Final = "HTTP 连接只允许 http 和 https"
HTTP_URL_SCHEME: Final = "HTTP 连接的 url 须以 http:// 或 https:// 开头"
HTTP_URL_INVALID: Final = "HTTP 连接的 url 无效"
HTTP_NUMBERS: Final = "HTTP 连接的 timeout/maxRetries/maxRetryAfter 须为数字"
HTTP_AUTH_TYPE: Final = "params.auth.type 须为 bearer 或 basic"
HTTP_RATE_LIMITED: Final = "接口限流，重试次数已用尽"
HTTP_PAGINATION_TYPE: Final = "params.pagination.type 须为 page、offset、cursor、link 或 none"
HTTP_PAGINATION_NUMBERS: Final = "params.pagination 的 start/pageSize 须为整数"
HTTP_FOREIGN_NEXT_PAGE: Final = "下一页链接指向其他主机，已拒绝（凭据不会发往其他主机）"
HTTP_SOURCE_NEEDS_TABLE: Final = "HTTP 源须指定 table（接口路径），不支持 query"
HTTP_SOURCE_NO_CURSOR: Final = "HTTP 源不支持 cursorColumn 增量同步"
HTTP_NO_RECORDS: Final = "HTTP 源首页没有记录，无法推断列；请在连接的 params.columns 中声明列"
HTTP_WHOLE_RESPONSE: Final = "(响应本身)"
"""How an empty records path is named: the response itself is the array."""


def http_status(status: int) -> str:
    return f"接口错误：HTTP {status}"


def http_too_many_redirects(limit: int) -> str:
    return f"接口重定向超过 {limit} 次"


def http_not_json(path: str) -> str:
    return f"接口响应不是 JSON：{path}"


def http_records_path_missing(path: str) -> str:
    return f"接口响应中缺少记录路径：{path}"


def http_records_not_objects(path: str) -> str:
    return f"接口记录须为 JSON 对象的数组：{path}"


# Kafka topics as sources and targets (service/connectors/kafka); not our event bus.
KAFKA_BOOTSTRAP_MISSING: Final = "Kafka 连接缺少 params.bootstrap"
KAFKA_BOOTSTRAP_SHAPE: Final = "params.bootstrap 须为 host:port 列表"
KAFKA_KEY_SHAPE: Final = "params.key 须为列名或列名数组"
KAFKA_SASL_CREDENTIALS: Final = "SASL 连接须提供 params.saslUsername 和 params.saslPassword"
KAFKA_SASL_WITHOUT_PROTOCOL: Final = (
    "params.saslMechanism/saslUsername/saslPassword 须配合 securityProtocol SASL_PLAINTEXT 或 SASL_SSL 使用"
)
KAFKA_CAFILE_WITHOUT_PROTOCOL: Final = "params.sslCafile 须配合 securityProtocol SSL 或 SASL_SSL 使用"
KAFKA_CAFILE_UNREADABLE: Final = "params.sslCafile 不是可读的 CA 证书文件"
KAFKA_SOURCE_NEEDS_TABLE: Final = "Kafka 源须指定 table（主题名），不支持 query"
KAFKA_SOURCE_NO_CURSOR: Final = "Kafka 源不支持 cursorColumn：主题按偏移量增量读取"
KAFKA_NO_RECORDS: Final = "Kafka 源主题没有记录，无法推断列；请在连接的 params.columns 中声明列"
KAFKA_CHECKPOINT_TIMEOUT: Final = "读取检查点超时"
KAFKA_KEY_COLUMNS: Final = "Kafka 记录键列"


def kafka_protocol(protocols: Iterable[str]) -> str:
    return f"params.securityProtocol 须为 {'、'.join(protocols)} 之一"


def kafka_mechanism(mechanisms: Iterable[str]) -> str:
    return f"params.saslMechanism 须为 {'、'.join(mechanisms)} 之一"


def kafka_not_object(topic: str, partition: int, offset: int) -> str:
    return f"主题记录不是 JSON 对象：{topic} 分区 {partition} 偏移 {offset}"


def kafka_no_high_water(topic: str) -> str:
    return f"主题 {topic} 的分区未能在超时内返回高水位"


def kafka_record_too_large(limit: int) -> str:
    return f"记录超过 {limit} 字节，Kafka 不接受"


_VALIDATION_PROBLEMS: Final[dict[str, str]] = {
    "missing": MISSING,
    "json_invalid": NOT_JSON,
    "int_parsing": EXPECTED_INTEGER,
    "int_type": EXPECTED_INTEGER,
    "int_from_float": EXPECTED_INTEGER,
    "float_parsing": EXPECTED_NUMBER,
    "float_type": EXPECTED_NUMBER,
    "uuid_parsing": EXPECTED_UUID,
    "uuid_type": EXPECTED_UUID,
    "bool_parsing": EXPECTED_BOOLEAN,
    "string_type": EXPECTED_STRING,
    "string_unicode": LONE_SURROGATE,
    "dict_type": EXPECTED_OBJECT,
    "model_attributes_type": EXPECTED_OBJECT,
    "list_type": EXPECTED_ARRAY,
    "greater_than_equal": AT_LEAST,
    "less_than_equal": AT_MOST,
    "greater_than": GREATER_THAN,
    "less_than": LESS_THAN,
    "string_too_short": LENGTH_AT_LEAST,
    "string_too_long": LENGTH_AT_MOST,
    "enum": ONE_OF,
    "literal_error": ONE_OF,
    "bool_type": EXPECTED_BOOLEAN,
    "model_type": EXPECTED_OBJECT,
    "extra_forbidden": UNKNOWN_FIELD,
}
"""pydantic's error types, as the texts above; a template's placeholders are the error's context keys."""


def validation_problem(error: Mapping[str, Any]) -> str:
    """One pydantic error in words, for an API body and a connection's params alike; pydantic's own message
    (without its `Value error, ` prefix: our validators write Chinese) for a type without a text."""
    template = _VALIDATION_PROBLEMS.get(str(error.get("type", "")))
    if template is not None:
        try:
            return template.format(**error.get("ctx") or {})
        except (KeyError, IndexError):
            pass
    return str(error.get("msg", INVALID)).removeprefix("Value error, ").removeprefix("Assertion failed, ")


# The web console's labels (service/console): Chinese first, English beside it; served as /console/labels.json.
CONSOLE_LABELS: Final[Mapping[str, tuple[str, str]]] = {
    "app.title": ("batchsync 数据同步控制台", "batchsync console"),
    "nav.batches": ("数据批次", "Batches"),
    "nav.connections": ("连接", "Connections"),
    "nav.failed": ("失败记录", "Failed runs"),
    "nav.docs": ("接口文档", "API docs"),
    "nav.logout": ("退出登录", "Log out"),
    "nav.language": ("English", "中文"),
    "login.title": ("令牌登录", "Log in with a token"),
    "login.token": ("访问令牌（JWT）", "Access token (JWT)"),
    "login.submit": ("登录", "Log in"),
    "login.hint": ("令牌只保存在本标签页中，关闭即失效。", "The token stays in this tab only, gone when it closes."),
    "login.invalid": ("令牌格式不正确", "This is not a well-formed token"),
    "login.expired": ("令牌已过期，请重新登录", "The token has expired; log in again"),
    "live.connected": ("实时更新已连接", "Live updates on"),
    "live.disconnected": ("实时更新已断开，正在重连…", "Live updates lost, reconnecting…"),
    "live.forbidden": ("无权接收实时更新", "No permission for live updates"),
    "common.loading": ("加载中…", "Loading…"),
    "common.empty": ("暂无数据", "Nothing here yet"),
    "common.refresh": ("刷新", "Refresh"),
    "common.save": ("保存", "Save"),
    "common.cancel": ("取消", "Cancel"),
    "common.back": ("返回", "Back"),
    "common.prev": ("上一页", "Previous"),
    "common.next": ("下一页", "Next"),
    "common.page": ("第 {num} / {pages} 页，共 {total} 条", "Page {num} of {pages}, {total} in all"),
    "common.search": ("按名称搜索", "Search by name"),
    "common.allStatuses": ("全部状态", "All statuses"),
    "common.done": ("已完成", "Done"),
    "batch.name": ("名称", "Name"),
    "batch.route": ("源 → 目标", "Source → target"),
    "batch.mode": ("写入模式", "Mode"),
    "batch.status": ("状态", "Status"),
    "batch.lastSync": ("最近同步", "Last sync"),
    "batch.records": ("记录数", "Records"),
    "batch.nextFire": ("下次调度", "Next fire"),
    "batch.actions": ("操作", "Actions"),
    "batch.config": ("配置", "Configuration"),
    "batch.statistics": ("统计", "Statistics"),
    "batch.history": ("历史记录", "History"),
    "batch.liveRun": ("当前运行", "Live run"),
    "batch.lastRun": ("最近一次运行", "Latest run"),
    "batch.noRun": ("尚未运行", "Not run yet"),
    "batch.lastError": ("最近错误", "Last error"),
    "batch.chunkSize": ("分块大小", "Chunk size"),
    "batch.mapping": ("字段映射", "Field mapping"),
    "batch.source": ("源", "Source"),
    "batch.target": ("目标", "Target"),
    "batch.keyColumns": ("主键列", "Key columns"),
    "batch.cursorColumn": ("增量游标列", "Cursor column"),
    "batch.schedule": ("调度", "Schedule"),
    "action.sync": ("同步", "Sync"),
    "action.retry": ("重试", "Retry"),
    "action.cancel": ("取消运行", "Cancel run"),
    "action.test": ("测试连接", "Test"),
    "action.edit": ("编辑", "Edit"),
    "action.create": ("新建连接", "New connection"),
    "action.open": ("详情", "Details"),
    "stats.totalRuns": ("运行次数", "Runs"),
    "stats.successRate": ("成功率", "Success rate"),
    "stats.totalRecords": ("累计记录", "Records in all"),
    "stats.avgDuration": ("平均耗时", "Average duration"),
    "stats.chartTitle": ("每次运行的记录数与耗时", "Records and duration per run"),
    "stats.records": ("记录数", "Records"),
    "stats.duration": ("耗时（秒）", "Duration (s)"),
    "run.id": ("运行 ID", "Run id"),
    "run.trigger": ("触发方式", "Trigger"),
    "run.requestedBy": ("发起人", "Requested by"),
    "run.startedAt": ("开始时间", "Started"),
    "run.finishedAt": ("结束时间", "Finished"),
    "run.message": ("消息", "Message"),
    "run.progress": ("进度", "Progress"),
    "run.rate": ("速率", "Rate"),
    "run.rateUnit": ("条/秒", "rows/s"),
    "run.eta": ("预计剩余", "ETA"),
    "run.phase": ("阶段", "Phase"),
    "run.chunks": ("分块", "Chunks"),
    "run.slices": ("分片", "Slices"),
    "slice.number": ("分片", "Slice"),
    "slice.range": ("范围", "Range"),
    "slice.worker": ("执行节点", "Worker"),
    "run.read": ("已读取", "Read"),
    "run.written": ("已写入", "Written"),
    "run.batch": ("批次", "Batch"),
    "run.errorCode": ("错误码", "Error code"),
    "status.PENDING": ("等待中", "Pending"),
    "status.RUNNING": ("运行中", "Running"),
    "status.SUCCESS": ("成功", "Success"),
    "status.FAILED": ("失败", "Failed"),
    "status.CANCELLED": ("已取消", "Cancelled"),
    "status.NEVER_RUN": ("从未运行", "Never run"),
    "conn.name": ("名称", "Name"),
    "conn.type": ("类型", "Type"),
    "conn.url": ("地址（URL）", "Address (URL)"),
    "conn.params": ("参数", "Parameters"),
    "conn.paramsJson": ("参数（JSON）", "Parameters (JSON)"),
    "conn.options": ("选项（JSON）", "Options (JSON)"),
    "conn.updatedAt": ("更新时间", "Updated"),
    "conn.newTitle": ("新建连接", "New connection"),
    "conn.editTitle": ("编辑连接", "Edit connection"),
    "conn.secretKept": ("留空或保持掩码即保留原密钥", "Leave blank or masked to keep the stored secret"),
    "conn.invalidJson": ("JSON 格式不正确", "Not valid JSON"),
    "conn.saved": ("连接已保存", "Connection saved"),
    "conn.unset": ("（默认）", "(default)"),
    "conn.yes": ("是", "yes"),
    "conn.no": ("否", "no"),
    "failed.title": ("失败的运行", "Failed runs"),
}
"""Each label's (Chinese, English) text, by a key the console's scripts name; `{name}` fields are filled there."""


# Schedules, retry policies and notifications of a batch (docs/spec.md §9).
SCHEDULE_CRON_OR_INTERVAL: Final = "调度必须且只能指定 cron 或 intervalSeconds 之一"
NOTIFY_URL_SCHEME: Final = "通知地址必须是 http 或 https 地址"


def cron_invalid(expression: str) -> str:
    return f"cron 表达式无效：{expression}"


def timezone_unknown(name: str) -> str:
    return f"未知的时区：{name}"


# Rejected rows (`errorLimit`) and reconciliation of a run (docs/spec.md §9).
ERROR_LIMIT_EMPTY: Final = "errorLimit 至少需要指定 records 或 ratio 之一"
RECONCILE_MISMATCH_PREFIX: Final = "源与目标记录数不一致"


def too_many_rejected(rejected: int, limit: str, reasons: list[str]) -> str:
    """`拒绝的记录数超出限制：已拒绝 7 行（上限 5 行），原因：字段转换失败：id（3 行）；…`."""
    return f"拒绝的记录数超出限制：已拒绝 {rejected} 行（上限 {limit}），原因：{'；'.join(reasons)}"


def rejected_rows_limit(records: int | None, ratio: float | None) -> str:
    parts = ([f"{records} 行"] if records is not None else []) + ([f"{ratio:.2%}"] if ratio is not None else [])
    return "、".join(parts)


def reason_count(reason: str, count: int) -> str:
    return f"{reason}（{count} 行）"


def row_refused(reason: str) -> str:
    """A row the target refused: `目标拒绝写入：<the database's reason>`."""
    return f"目标拒绝写入：{reason}"


def counts_differ(source_count: int, target_count: int) -> str:
    return f"{RECONCILE_MISMATCH_PREFIX}：源 {source_count} 行，目标 {target_count} 行"
