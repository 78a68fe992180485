"""Connections: create, read (always redacted), update (keeping secrets sent back masked), delete, test."""

import asyncio

from sqlalchemy import exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.api import ConnectionIn, ConnectionOut, ConnectionType
from schemas.envelope import Page
from service.catalog.errors import CONNECTION_IN_USE, CONNECTION_NOT_FOUND, Conflict, Invalid, NotFound
from service.catalog.paging import PageRequest, fetch_page
from service.catalog.redaction import redact_url, redact_values, restore_url, restore_values
from service.db.models import Batch, Connection
from service.security.policy import AccessPolicy
from service.sync.errors import ConnectTimeout, SyncError
from service.sync.model import Endpoint

TEST_MARGIN_SECONDS = 2.0


def to_out(row: Connection) -> ConnectionOut:
    """The only way a connection leaves the service: every secret masked."""
    return ConnectionOut(
        id=row.id,
        name=row.name,
        type=ConnectionType(row.type),
        url=redact_url(row.url),
        params=redact_values(row.params or {}),
        options=redact_values(row.options or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def endpoint_of(row: Connection, policy: AccessPolicy) -> Endpoint:
    """The one way a stored connection becomes something a connector may open: with the policy it obeys."""
    return Endpoint(type=row.type, url=row.url, params=dict(row.params or {}), options=dict(row.options or {}),
                    policy=policy)


async def load(session: AsyncSession, connection_id: int) -> Connection:
    row = await session.get(Connection, connection_id)
    if row is None:
        raise NotFound(CONNECTION_NOT_FOUND)
    return row


def _name_taken(name: str) -> Conflict:
    return Conflict(f"连接名称已存在：{name}")


async def create(session: AsyncSession, body: ConnectionIn) -> ConnectionOut:
    row = Connection(name=body.name, type=body.type.value, url=body.url, params=body.params,
                     options=body.options)
    session.add(row)
    return await _saved(session, row)


async def get(session: AsyncSession, connection_id: int) -> ConnectionOut:
    return to_out(await load(session, connection_id))


async def list_page(session: AsyncSession, page: PageRequest, name: str | None = None,
                    type_: str | None = None) -> Page[ConnectionOut]:
    query = select(Connection).order_by(Connection.id)
    if name:
        query = query.where(Connection.name.contains(name, autoescape=True))
    if type_:
        query = query.where(Connection.type == type_)
    total, rows = await fetch_page(session, query, page)
    return Page[ConnectionOut](total=total, rows=[to_out(row) for row in rows])


async def update(session: AsyncSession, connection_id: int, body: ConnectionIn) -> ConnectionOut:
    row = await load(session, connection_id)
    row.name = body.name
    row.type = body.type.value
    row.url = restore_url(body.url, row.url)
    row.params = restore_values(body.params, row.params or {})
    row.options = restore_values(body.options, row.options or {})
    return await _saved(session, row)


async def _saved(session: AsyncSession, row: Connection) -> ConnectionOut:
    """Commit a created or edited connection; the unique name is the one constraint it can trip."""
    name = row.name  # read before the commit: a failed one expires the row
    try:
        await session.commit()
    except IntegrityError as error:
        raise _name_taken(name) from error
    await session.refresh(row)
    return to_out(row)


async def delete(session: AsyncSession, connection_id: int) -> None:
    row = await load(session, connection_id)
    in_use = await session.scalar(select(exists().where(or_(
        Batch.source_connection_id == connection_id, Batch.target_connection_id == connection_id))))
    if in_use:
        raise Invalid(CONNECTION_IN_USE)
    await session.delete(row)
    try:
        await session.commit()
    except IntegrityError as error:
        raise Invalid(CONNECTION_IN_USE) from error


async def check(session: AsyncSession, connection_id: int, connect_timeout: float, policy: AccessPolicy) -> None:
    """Live connectivity check; a failure is `连接失败：<reason>` with the reason a sync would give."""
    from service.connectors.registry import test_connection

    endpoint = endpoint_of(await load(session, connection_id), policy)
    await session.close()
    try:
        async with asyncio.timeout(connect_timeout + TEST_MARGIN_SECONDS):
            await test_connection(endpoint, connect_timeout)
    except TimeoutError as error:
        raise Invalid(f"连接失败：{ConnectTimeout.reason}") from error
    except SyncError as error:
        raise Invalid(f"连接失败：{error.reason}") from error
