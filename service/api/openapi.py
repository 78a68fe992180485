"""The OpenAPI document as the API really answers (docs/spec.md §3).

Routes declare their answers with `answers(...)`: every error is the envelope `ErrorEnvelope`
`{code, message, data}`, each with the message the API sends. `publish()` post-processes what FastAPI
generates: it drops the 422 FastAPI adds to every operation with parameters (bad input is a 400 in the
envelope, see service/api/errors.py) and lists the registered connector kinds as the enum of a
connection's `type`. Request examples live here too, one connection per connector kind and one batch
per write mode and source form; tests post each of them to the real app.
"""

from typing import Any

from fastapi import FastAPI

from schemas.envelope import ErrorEnvelope
from schemas.messages import (
    AUTH_FAILED,
    BATCH_RUNNING,
    BODY_TOO_LARGE,
    DATABASE_DOWN,
    FORBIDDEN,
    NOT_FOUND,
    REQUEST_INVALID,
    bad_request,
    check_found,
    source_column_missing,
    source_table_missing,
    target_created_by_run,
)
from service.auth import AuthFailed, AuthReason, Forbidden, forbidden, unauthorized

_ERRORS: dict[int, tuple[str, str]] = {
    400: (f"A bad path, query or body (`{bad_request('…')}`), or a request the current state refuses",
          bad_request(REQUEST_INVALID)),
    401: ("No bearer token, or one that is malformed, expired or wrongly signed; `data.reason` says which "
          f"({', '.join(reason.value for reason in AuthReason)}), as does RFC 6750's `WWW-Authenticate` "
          "error_description", AUTH_FAILED),
    403: ("The token lacks the permission this operation needs; `data.permission` names it, as does "
          "`WWW-Authenticate` (`insufficient_scope`)", FORBIDDEN),
    404: ("No such connection, batch or run", NOT_FOUND),
    409: ("The request clashes with the current state: a name taken, or a run of the batch active", BATCH_RUNNING),
    413: ("The body is larger than `BATCHSYNC_MAX_BODY_BYTES`", BODY_TOO_LARGE),
    503: ("The state database (or, for runs, the broker) cannot be reached; answered within seconds",
          DATABASE_DOWN),
}

_ERROR_DATA: dict[int, dict[str, str]] = {
    401: unauthorized(AuthFailed("expired", AuthReason.EXPIRED))[0],
    403: forbidden(Forbidden("integration:batch:sync"))[0],
}
"""What the 401 and 403 carry in `data`: the reason, never the token."""

PROTECTED = (400, 401, 403, 503)
"""What every operation behind a permission can answer besides its success."""


def answers(*codes: int, **messages: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with its meaning and an example envelope; `messages`
    (`e404="批次不存在"`) replaces a status's example message with the operation's own."""
    documented: dict[int | str, dict[str, Any]] = {}
    for code in sorted(set(codes)):
        description, message = _ERRORS[code]
        example = {"code": code, "message": messages.get(f"e{code}", message), "data": _ERROR_DATA.get(code)}
        documented[code] = {"model": ErrorEnvelope, "description": description,
                            "content": {"application/json": {"example": example}}}
    return documented


def _example(summary: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"summary": summary, "value": value}


CONNECTION_EXAMPLES: dict[str, dict[str, Any]] = {
    "postgresql": _example("PostgreSQL: everything in the URL", {
        "name": "orders-pg", "type": "postgresql",
        "url": "postgresql://app:secret@db.example.com:5432/shop?sslmode=require"}),
    "mysql": _example("MySQL or MariaDB: everything in the URL", {
        "name": "orders-mysql", "type": "mysql", "url": "mysql://app:secret@mysql.example.com:3306/shop"}),
    "sqlite": _example("SQLite: the file is the URL (inside `BATCHSYNC_FILE_ROOTS`)", {
        "name": "orders-sqlite", "type": "sqlite", "url": "sqlite:///data/shop.db"}),
    "csv": _example("CSV: a file or a folder of files; a batch's `table` names the file inside it", {
        "name": "orders-csv", "type": "csv",
        "params": {"path": "/data/exports", "encoding": "utf-8", "delimiter": ",", "header": True}}),
    "jsonl": _example("JSON Lines: a file or a folder of `.jsonl` files, optionally gzip-compressed", {
        "name": "events-jsonl", "type": "jsonl",
        "params": {"path": "/data/events.jsonl.gz", "encoding": "utf-8", "compression": "gzip"}}),
    "http": _example("HTTP API: a JSON endpoint with bearer auth and page-number paging", {
        "name": "orders-api", "type": "http", "url": "https://api.example.com/v1/orders",
        "params": {"auth": {"type": "bearer", "token": "secret-token"},
                   "pagination": {"type": "page", "pageParam": "page", "sizeParam": "size", "pageSize": 500},
                   "recordsPath": "data.items", "timeout": 30}}),
    "kafka": _example("Kafka: brokers and topic; records are JSON objects keyed by `id`", {
        "name": "orders-topic", "type": "kafka",
        "params": {"bootstrap": "kafka-1.example.com:9092,kafka-2.example.com:9092", "topic": "orders",
                   "groupId": "batchsync", "key": "id", "onInvalid": "fail"}}),
}
"""One `POST /integration/connection` body per connector kind, with the keys its params model declares."""

BATCH_EXAMPLES: dict[str, dict[str, Any]] = {
    "append": _example("Append every row of a table", {
        "name": "orders-append", "sourceConnectionId": 1, "source": {"table": "orders"},
        "targetConnectionId": 2, "target": {"table": "orders_copy", "mode": "append"}, "chunkSize": 5000}),
    "overwrite": _example("Replace the target table, creating it when missing", {
        "name": "customers-overwrite", "sourceConnectionId": 1, "source": {"table": "public.customers"},
        "targetConnectionId": 2, "target": {"table": "customers", "mode": "overwrite", "create": True}}),
    "upsert": _example("Upsert on a key, reading only rows changed since the last run", {
        "name": "orders-upsert", "sourceConnectionId": 1,
        "source": {"table": "orders", "cursorColumn": "updated_at"},
        "targetConnectionId": 2, "target": {"table": "orders_copy", "mode": "upsert", "keyColumns": ["id"]}}),
    "query": _example("A read-only query as the source, with a mapping that renames, casts, drops and sets", {
        "name": "paid-orders", "sourceConnectionId": 1,
        "source": {"query": "SELECT id, amount, status, note FROM orders WHERE status = 'paid'"},
        "targetConnectionId": 2, "target": {"table": "paid_orders", "mode": "append"},
        "mapping": [{"from": "id", "to": "order_id", "type": "int"},
                    {"from": "amount", "type": "decimal"},
                    {"from": "note", "drop": True},
                    {"to": "origin", "value": "shop"}]}),
}
"""`POST /integration/batch` bodies: each write mode, a query source and a mapping."""

CHECK_EXAMPLE: dict[str, Any] = {"code": 200, "message": check_found(2), "data": {
    "ok": False,
    "problems": [{"field": "source.table", "message": source_table_missing("ordres")},
                 {"field": "mapping[1].from", "message": source_column_missing("amout")}],
    "notes": [{"field": "target.table", "message": target_created_by_run("orders_copy")}],
    "columns": [], "preview": []}}
"""A dry run's answer: problems name the body field to fix; `columns` and `preview` fill in once none is left
(`columns`: `{name, source, kind, targetType}` per target column; `preview`: rows as objects by column)."""


def _restore_null_data(answer: dict[str, Any]) -> None:
    """FastAPI drops None from the document, so an example envelope lost its `"data": null`."""
    example = answer.get("content", {}).get("application/json", {}).get("example")
    if isinstance(example, dict) and "code" in example:
        example.setdefault("data", None)


def publish(app: FastAPI, kinds: list[str]) -> None:
    """Post-process the generated document once, on first request of `/openapi.json`."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for model in ("ConnectionIn", "ConnectionOut"):
                schema["components"]["schemas"][model]["properties"]["type"]["enum"] = kinds
            for methods in schema["paths"].values():
                for operation in methods.values():
                    responses = operation.get("responses", {})
                    responses.pop("422", None)
                    for answer in responses.values():
                        _restore_null_data(answer)
            for unused in ("HTTPValidationError", "ValidationError"):
                schema["components"]["schemas"].pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
