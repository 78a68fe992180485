"""Every error as the envelope `{code, message, data}`: framework errors, auth, catalog refusals, outages.

Messages are the seed's; details of unexpected errors go to the log only. A body FastAPI cannot parse
(too deep, a number too long) is a 400 `参数错误：…`, never its English detail. A database that cannot
be reached answers 503 `服务暂不可用：数据库` instead of a 500 or a hang.
"""

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from schemas.messages import (
    AUTH_FAILED,
    BODY_TOO_LARGE,
    BODY_UNPARSABLE,
    DATABASE_DOWN,
    FORBIDDEN,
    INTERNAL,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    REQUEST_INVALID,
    bad_field,
    bad_request,
    validation_problem,
)
from service.auth import AuthFailed, Forbidden, forbidden, unauthorized
from service.catalog.errors import CatalogError, Conflict, Invalid, NotFound
from service.db.failures import database_down

log = logging.getLogger(__name__)

_HTTP_MESSAGES = {
    400: bad_request(BODY_UNPARSABLE),
    401: AUTH_FAILED,
    403: FORBIDDEN,
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    413: BODY_TOO_LARGE,
}
_CATALOG_STATUS: dict[type[CatalogError], int] = {NotFound: 404, Invalid: 400, Conflict: 409}


def envelope(status: int, message: str, data: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": status, "message": message, "data": data}, status_code=status, headers=headers)


def describe_validation_error(error: dict[str, Any]) -> str:
    """`参数错误：<field>：<problem>` for the first problem pydantic found."""
    loc = [part for part in error.get("loc", ()) if part not in ("body", "query", "path", "header")]
    field = ".".join(str(part) for part in loc if not isinstance(part, int))
    problem = validation_problem(error)
    return bad_field(field, problem) if field else bad_request(problem)


async def _validation(_: Request, error: Exception) -> JSONResponse:
    errors = error.errors() if isinstance(error, RequestValidationError) else []
    message = describe_validation_error(errors[0]) if errors else bad_request(REQUEST_INVALID)
    return envelope(400, message)


async def _http(_: Request, error: Exception) -> JSONResponse:
    status = error.status_code if isinstance(error, HTTPException) else 500
    message = _HTTP_MESSAGES.get(status) or str(getattr(error, "detail", INTERNAL))
    return envelope(status, message, headers=getattr(error, "headers", None))


async def _auth_failed(_: Request, error: Exception) -> JSONResponse:
    data, headers = unauthorized(error if isinstance(error, AuthFailed) else AuthFailed(str(error)))
    return envelope(401, AUTH_FAILED, data, headers)


async def _forbidden(_: Request, error: Exception) -> JSONResponse:
    data, headers = forbidden(error if isinstance(error, Forbidden) else Forbidden(str(error)))
    return envelope(403, FORBIDDEN, data, headers)


async def _catalog(_: Request, error: Exception) -> JSONResponse:
    status = next((code for kind, code in _CATALOG_STATUS.items() if isinstance(error, kind)), 400)
    return envelope(status, getattr(error, "message", str(error)))


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    if database_down(error):
        log.warning("database unreachable on %s %s: %s", request.method, request.url.path, type(error).__name__)
        return envelope(503, DATABASE_DOWN)
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
    return envelope(500, INTERNAL)


def install(app: FastAPI) -> None:
    """Register every handler; the outage ones are keyed by class so Starlette answers without re-raising."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(AuthFailed, _auth_failed)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(CatalogError, _catalog)
    for kind in (SQLAlchemyError, OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, Exception):
        app.add_exception_handler(kind, _unexpected)
