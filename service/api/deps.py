"""Dependency aliases, so route signatures read as prose: state, session, paging, permission checks."""

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.middleware import PRINCIPAL
from service.api.state import AppState
from service.auth import AuthFailed, Forbidden, Principal
from service.catalog.paging import MAX_PAGE_NUM, MAX_PAGE_SIZE, PageRequest


def get_state(request: Request) -> AppState:
    state = request.app.state.batchsync
    if not isinstance(state, AppState):  # Starlette's State is untyped: only create_app() sets this attribute
        raise TypeError("app.state.batchsync is not an AppState; build the app with service.api.app.create_app")
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    async with state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def page_request(
    page_num: Annotated[int, Query(alias="pageNum", ge=1, le=MAX_PAGE_NUM)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)] = 10,
) -> PageRequest:
    return PageRequest(num=page_num, size=page_size)


PageDep = Annotated[PageRequest, Depends(page_request)]

_bearer = HTTPBearer(auto_error=False, description="JWT with claims `sub`, `perms`, `iat` and `exp`")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
"""Declared so the OpenAPI document shows the scheme; the token itself was verified by the RequestGuard."""


def require(permission: str) -> Callable[[Request, BearerDep], Principal]:
    """A dependency that answers 403 without `permission`.

    The RequestGuard middleware verified the token before the body was read and left the Principal in
    the request state; without one (the guard is not installed) the route fails closed with 401.
    """

    def check(request: Request, _: BearerDep) -> Principal:
        principal = getattr(request.state, PRINCIPAL, None)
        if not isinstance(principal, Principal):
            raise AuthFailed("no verified principal")
        if not principal.has(permission):
            raise Forbidden(permission)
        return principal

    return check


def wait_seconds(
    state: StateDep,
    wait: Annotated[float | None, Query(ge=0, le=3600, allow_inf_nan=False)] = None,
) -> float:
    """How long `/sync` and `/retry` hold the request open; `BATCHSYNC_SYNC_WAIT_SECONDS` by default."""
    return state.settings.sync_wait_seconds if wait is None else wait


WaitDep = Annotated[float, Depends(wait_seconds)]


IdDep = Annotated[int, Path(ge=1, le=2**31 - 1, description="a batch or connection id")]
"""Path ids are 32-bit positive integers in the state store; anything else is a 400, never a database error."""
