"""Connections: create, read (secrets masked), update (keeping secrets sent back masked), delete, test.

Params are checked against their type's schema (`service/connectors/<kind>/params.py`). At rest a connection is
its public form (every secret masked, `redaction.split`) plus its secrets sealed with the secret key
(`service/security/secrets.py`). `endpoint_of` is the one place they are opened again.
"""

import asyncio
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.api import ConnectionIn, ConnectionOut
from schemas.envelope import Page
from schemas.messages import (
    CONNECTION_IN_USE,
    CONNECTION_NOT_FOUND,
    MOVED_NEEDS_SECRETS,
    SECRETS_UNREADABLE,
    bad_request,
    connection_failed,
    connection_name_taken,
)
from service.catalog.errors import Conflict, Invalid, NotFound
from service.catalog.paging import PageRequest, fetch_page
from service.catalog.redaction import merge, restore, secret_values, split
from service.connectors import registry
from service.connectors.params import ParamsInvalid
from service.db.models import Batch, Connection
from service.logging_filters import remember
from service.security.policy import AccessPolicy
from service.security.secrets import Keyring, Sealed, SecretUnreadable, connection_context
from service.sync.errors import ConfigInvalid, ConnectTimeout, SyncError
from service.sync.model import Endpoint

TEST_MARGIN_SECONDS = 2.0


def to_out(row: Connection) -> ConnectionOut:
    """The only way a connection leaves the service: its stored public form, every secret masked."""
    return ConnectionOut(
        id=row.id,
        name=row.name,
        type=row.type,
        url=row.url,
        params=row.params or {},
        options=row.options or {},
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def endpoint_of(row: Connection, policy: AccessPolicy) -> Endpoint:
    """The one way a stored connection becomes something a connector may open: its secrets decrypted,
    with the policy it obeys."""
    secrets: dict[str, Any] | None = None
    if row.secrets is not None:
        try:
            secrets = policy.secrets.open(Sealed(row.secrets_key_id or "", row.secrets), connection_context(row.id))
        except SecretUnreadable as error:
            raise ConfigInvalid(SECRETS_UNREADABLE, detail=str(error)) from error
    remember(secret_values(secrets))
    url, params, options = merge(row.url, dict(row.params or {}), dict(row.options or {}), secrets)
    return Endpoint(type=row.type, url=url, params=params, options=options, policy=policy)


def _store(row: Connection, url: str | None, params: dict[str, Any], keys: Keyring,
           options: dict[str, Any] | None = None) -> None:
    """Write the public form in clear and the secrets sealed to this row (its id must be known)."""
    public = split(row.type, url, params, options)
    row.url, row.params, row.options = public.url, public.params, public.options
    sealed = keys.seal(public.secrets, connection_context(row.id)) if public.secrets else None
    row.secrets = sealed.token if sealed else None
    row.secrets_key_id = sealed.key_id if sealed else None


def _checked(body: ConnectionIn) -> dict[str, Any]:
    """The params as the type's schema has them, or 400 naming the unknown or invalid key."""
    try:
        return registry.validate_params(body.type, body.params, body.options, url=body.url,
                                        check_url=True).model_dump(exclude_unset=True)
    except ParamsInvalid as error:
        raise Invalid(bad_request(error)) from error


async def load(session: AsyncSession, connection_id: int) -> Connection:
    row = await session.get(Connection, connection_id)
    if row is None:
        raise NotFound(CONNECTION_NOT_FOUND)
    return row


def _name_taken(name: str) -> Conflict:
    return Conflict(connection_name_taken(name))


async def create(session: AsyncSession, body: ConnectionIn, policy: AccessPolicy) -> ConnectionOut:
    params = _checked(body)
    if (refused := registry.check_paths(body.type, body.url, params, policy)) is not None:
        raise Invalid(refused)
    row = Connection(name=body.name, type=body.type, url=None, params={}, options={})
    session.add(row)
    await _written(session, row, flush=True)  # the id the secrets are sealed to
    _store(row, body.url, params, policy.secrets)
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


async def update(session: AsyncSession, connection_id: int, body: ConnectionIn, policy: AccessPolicy) -> ConnectionOut:
    """Edit a connection; a masked secret sent back is kept only while its destination is unchanged."""
    params = _checked(body)
    row = await load(session, connection_id)
    if (refused := registry.check_paths(body.type, body.url, params, policy)) is not None:
        raise Invalid(refused)
    try:
        stored = endpoint_of(row, policy)
    except ConfigInvalid as error:
        raise Invalid(error.reason) from error
    url, params, kept = restore(body.type, body.url, params, stored.url, stored.params)
    if kept and _destination(stored.type, stored.url, stored.params) != _destination(body.type, url, params):
        raise Invalid(MOVED_NEEDS_SECRETS)
    row.name = body.name
    row.type = body.type
    _store(row, url, params, policy.secrets)
    return await _saved(session, row)


def _destination(kind: str, url: str | None, params: dict[str, Any]) -> tuple[Any, ...]:
    """Where a connection's secrets are sent (type, host, port, user…), per its type's schema."""
    return registry.params_model(kind).model_construct(**params).destination(url)


async def _written(session: AsyncSession, row: Connection, *, flush: bool = False) -> None:
    """Flush or commit a created or edited connection; the unique name is the one constraint it can trip."""
    name = row.name  # read before the commit: a failed one expires the row
    try:
        await (session.flush() if flush else session.commit())
    except IntegrityError as error:
        await session.rollback()
        raise _name_taken(name) from error


async def _saved(session: AsyncSession, row: Connection) -> ConnectionOut:
    await _written(session, row)
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

    row = await load(session, connection_id)
    await session.close()
    try:
        endpoint = endpoint_of(row, policy)
        async with asyncio.timeout(connect_timeout + TEST_MARGIN_SECONDS):
            await test_connection(endpoint, connect_timeout)
    except TimeoutError as error:
        raise Invalid(connection_failed(ConnectTimeout.reason)) from error
    except SyncError as error:
        raise Invalid(connection_failed(error.reason)) from error


async def reseal_all(session: AsyncSession, policy: AccessPolicy) -> int:
    """Re-encrypt every connection's secrets with the current key (`batchsync secrets rotate`); how many.

    Rows are locked and rewritten in one transaction, so a rotation either covers every row or none.
    """
    rows = (await session.scalars(select(Connection).where(Connection.secrets.is_not(None))
                                  .order_by(Connection.id).with_for_update())).all()
    for row in rows:
        clear = endpoint_of(row, policy)
        _store(row, clear.url, clear.params, policy.secrets, clear.options)
    await session.commit()
    return len(rows)


async def put_named(session: AsyncSession, name: str, kind: str, url: str, policy: AccessPolicy) -> int:
    """Create or re-point a connection by name outside the API (the demo); sealed like any other. Its id."""
    row = await session.scalar(select(Connection).where(Connection.name == name))
    if row is None:
        row = Connection(name=name, type=kind, url=None, params={}, options={})
        session.add(row)
        await session.flush()
    row.type = kind
    _store(row, url, {}, policy.secrets)
    await session.flush()
    return row.id
