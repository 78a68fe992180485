"""`/integration/connection`: CRUD and the live test. Secrets never leave (the catalog redacts)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from schemas.api import ConnectionIn, ConnectionOut, ConnectionType
from schemas.envelope import Envelope, Page
from schemas.messages import CONNECTED
from service.api.deps import IdDep, PageDep, SessionDep, StateDep, require
from service.catalog import connections

router = APIRouter(prefix="/integration/connection", tags=["connections"])


@router.post("", response_model=Envelope[ConnectionOut],
             dependencies=[Depends(require("integration:connection:add"))])
async def create_connection(body: ConnectionIn, session: SessionDep, state: StateDep) -> Envelope[ConnectionOut]:
    return Envelope(data=await connections.create(session, body, state.policy))


@router.get("/list", response_model=Envelope[Page[ConnectionOut]],
            dependencies=[Depends(require("integration:connection:list"))])
async def list_connections(session: SessionDep, page: PageDep,
                           name: Annotated[str | None, Query(max_length=200)] = None,
                           type: ConnectionType | None = None) -> Envelope[Page[ConnectionOut]]:
    return Envelope(data=await connections.list_page(session, page, name=name, type_=type))


@router.get("/{id}", response_model=Envelope[ConnectionOut],
            dependencies=[Depends(require("integration:connection:query"))])
async def get_connection(id: IdDep, session: SessionDep) -> Envelope[ConnectionOut]:
    return Envelope(data=await connections.get(session, id))


@router.put("/{id}", response_model=Envelope[ConnectionOut],
            dependencies=[Depends(require("integration:connection:edit"))])
async def update_connection(id: IdDep, body: ConnectionIn, session: SessionDep,
                            state: StateDep) -> Envelope[ConnectionOut]:
    return Envelope(data=await connections.update(session, id, body, state.policy))


@router.delete("/{id}", response_model=Envelope[None],
               dependencies=[Depends(require("integration:connection:remove"))])
async def delete_connection(id: IdDep, session: SessionDep) -> Envelope[None]:
    await connections.delete(session, id)
    return Envelope()


@router.post("/{id}/test", response_model=Envelope[None],
             dependencies=[Depends(require("integration:connection:edit"))])
async def test_connection(id: IdDep, session: SessionDep, state: StateDep) -> Envelope[None]:
    await connections.check(session, id, state.settings.connect_timeout_seconds, state.policy)
    return Envelope(message=CONNECTED)
