"""`batchsync connection list|show|test`: the connections the API holds, secrets redacted as it sends them.

A Typer sub-app, registered by `service/cli/main.py`; exit codes as in service/cli/client.py (a failed test is 1).
"""

from typing import Annotated

import typer

from service.cli.client import (
    EXIT_CODES,
    ApiUrlOption,
    Output,
    OutputOption,
    PageTable,
    RecordTable,
    RefusedTokenOption,
    TokenFileOption,
    api_client,
    finish,
    stdout,
)

connection_app = typer.Typer(help="Connections: list, show, test.", no_args_is_help=True, epilog=EXIT_CODES)

IdArgument = Annotated[int, typer.Argument(metavar="ID", min=1, max=2**31 - 1, help="The connection id.")]
LIST_FIELDS = ("id", "name", "type", "url", "updatedAt")


@connection_app.command("list")
def list_connections(
    name: Annotated[str | None, typer.Option("--name", help="Only names containing this.")] = None,
    page: Annotated[int, typer.Option("--page", min=1, help="Page number.")] = 1,
    size: Annotated[int, typer.Option("--size", min=1, max=500, help="Rows per page.")] = 50,
    output: OutputOption = Output.TABLE,
    api_url: ApiUrlOption = None, token_file: TokenFileOption = None, token: RefusedTokenOption = None,
) -> None:
    """List connections (GET /integration/connection/list)."""
    params: dict[str, str | int] = {"pageNum": page, "pageSize": size}
    if name:
        params["name"] = name
    with api_client(api_url, token_file, token, ["integration:connection:list"]) as client:
        reply = client.call("GET", "/integration/connection/list", params=params)
        finish(client, reply, output, PageTable("connections", LIST_FIELDS))


@connection_app.command("show")
def show_connection(connection_id: IdArgument, output: OutputOption = Output.TABLE,
                    api_url: ApiUrlOption = None, token_file: TokenFileOption = None,
                    token: RefusedTokenOption = None) -> None:
    """One connection, secrets redacted (GET /integration/connection/ID)."""
    with api_client(api_url, token_file, token, ["integration:connection:query"]) as client:
        reply = client.call("GET", f"/integration/connection/{connection_id}")
        finish(client, reply, output, RecordTable(f"connection {connection_id}"))


@connection_app.command("test")
def test_connection(connection_id: IdArgument, output: OutputOption = Output.TABLE,
                    api_url: ApiUrlOption = None, token_file: TokenFileOption = None,
                    token: RefusedTokenOption = None) -> None:
    """Check the connection is reachable now (POST /integration/connection/ID/test); exit 1 when it is not."""
    with api_client(api_url, token_file, token, ["integration:connection:edit"]) as client:
        reply = client.call("POST", f"/integration/connection/{connection_id}/test")
        finish(client, reply, output, lambda answer: stdout().print(answer.message, markup=False,
                                                                                   highlight=False))
