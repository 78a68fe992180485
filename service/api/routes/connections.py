"""`/integration/connection`: CRUD, the live test and the connection types. Secrets never leave (the catalog
redacts). Fixed paths (`/list`, `/types`) come before `/{id}`."""

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query

from schemas.api import ConnectionIn, ConnectionOut, ConnectionType, ConnectionTypeOut
from schemas.envelope import Envelope, Page
from schemas.messages import CONNECTED, CONNECTION_NOT_FOUND, connection_name_taken
from service.api.deps import IdDep, PageDep, SessionDep, StateDep, require
from service.api.openapi import CONNECTION_EXAMPLES, PROTECTED, answers
from service.catalog import connections
from service.connectors import registry

router = APIRouter(prefix="/integration/connection", tags=["connections"])

ConnectionBody = Annotated[ConnectionIn, Body(openapi_examples=CONNECTION_EXAMPLES)]


@router.post("", response_model=Envelope[ConnectionOut], summary="Create a connection",
             description="Stores a connection to a database, file folder, HTTP API or Kafka topic; `params` are "
                         "checked against the type's own schema and an unknown key is a 400 naming it. "
                         "Needs `integration:connection:add`.",
             responses=answers(*PROTECTED, 409, 413, e409=connection_name_taken("orders-pg")),
             dependencies=[Depends(require("integration:connection:add"))])
async def create_connection(body: ConnectionBody, session: SessionDep, state: StateDep) -> Envelope[ConnectionOut]:
    return Envelope(data=await connections.create(session, body, state.policy))


@router.get("/list", response_model=Envelope[Page[ConnectionOut]], summary="List connections",
            description="One page of connections, filtered by a part of the name and by type; secrets are "
                        "always masked. Needs `integration:connection:list`.",
            responses=answers(*PROTECTED),
            dependencies=[Depends(require("integration:connection:list"))])
async def list_connections(session: SessionDep, page: PageDep,
                           name: Annotated[str | None, Query(max_length=200)] = None,
                           type: ConnectionType | None = None) -> Envelope[Page[ConnectionOut]]:
    return Envelope(data=await connections.list_page(session, page, name=name, type_=type))


@router.get("/types", response_model=Envelope[list[ConnectionTypeOut]], summary="Connection types and their params",
            description="Every connection type the service knows, sorted by name: whether it can be a source or a "
                        "target, its write modes, incremental reads, the form of its `url` (schemes, example, "
                        "required), what a batch's `table` names on it, and the JSON Schema of its `params` "
                        "(`additionalProperties: false`; secret fields marked `\"secret\": true`). Forms and "
                        "clients build from it; docs/connectors.md is generated from the same data. "
                        "Needs `integration:connection:list`.",
            responses=answers(*PROTECTED),
            dependencies=[Depends(require("integration:connection:list"))])
async def connection_types() -> Envelope[list[ConnectionTypeOut]]:
    return Envelope(data=[ConnectionTypeOut.model_validate(kind) for kind in registry.describe()])


@router.get("/{id}", response_model=Envelope[ConnectionOut], summary="Get a connection",
            description="One connection with its secrets masked. Needs `integration:connection:query`.",
            responses=answers(*PROTECTED, 404, e404=CONNECTION_NOT_FOUND),
            dependencies=[Depends(require("integration:connection:query"))])
async def get_connection(id: IdDep, session: SessionDep) -> Envelope[ConnectionOut]:
    return Envelope(data=await connections.get(session, id))


@router.put("/{id}", response_model=Envelope[ConnectionOut], summary="Edit a connection",
            description="Replaces a connection's configuration; a masked secret sent back keeps the stored one "
                        "unless the address changes, which needs the secret again. "
                        "Needs `integration:connection:edit`.",
            responses=answers(*PROTECTED, 404, 409, 413, e404=CONNECTION_NOT_FOUND,
                              e409=connection_name_taken("orders-pg")),
            dependencies=[Depends(require("integration:connection:edit"))])
async def update_connection(id: IdDep, body: ConnectionBody, session: SessionDep,
                            state: StateDep) -> Envelope[ConnectionOut]:
    return Envelope(data=await connections.update(session, id, body, state.policy))


@router.delete("/{id}", response_model=Envelope[None], summary="Delete a connection",
               description="Deletes a connection; refused with a 400 while a batch uses it. "
                           "Needs `integration:connection:remove`.",
               responses=answers(*PROTECTED, 404, e404=CONNECTION_NOT_FOUND),
               dependencies=[Depends(require("integration:connection:remove"))])
async def delete_connection(id: IdDep, session: SessionDep) -> Envelope[None]:
    await connections.delete(session, id)
    return Envelope()


@router.post("/{id}/test", response_model=Envelope[None], summary="Test a connection",
             description="Connects to the system now, within `BATCHSYNC_CONNECT_TIMEOUT_SECONDS`; a failure is a "
                         "400 with the same reason a sync would give. Needs `integration:connection:edit`.",
             responses=answers(*PROTECTED, 404, e404=CONNECTION_NOT_FOUND),
             dependencies=[Depends(require("integration:connection:edit"))])
async def test_connection(id: IdDep, session: SessionDep, state: StateDep) -> Envelope[None]:
    await connections.check(session, id, state.settings.connect_timeout_seconds, state.policy)
    return Envelope(message=CONNECTED)
