"""`batchsync run show RUN_ID --batch ID`: one run with its live progress.

The API serves a run under its batch (`GET /integration/batch/{id}/runs/{runId}`), so the batch is named
too; `batchsync batch history ID` lists a batch's run ids. Exit codes as in service/cli/client.py.
"""

from typing import Annotated
from uuid import UUID

import typer

from service.cli.client import (
    EXIT_CODES,
    ApiUrlOption,
    Output,
    OutputOption,
    RecordTable,
    RefusedTokenOption,
    TokenFileOption,
    api_client,
    finish,
)

run_app = typer.Typer(help="Runs: show one run's progress and outcome.", no_args_is_help=True, epilog=EXIT_CODES)


@run_app.command("show")
def show_run(
    run_id: Annotated[UUID, typer.Argument(metavar="RUN_ID", help="The run id (from sync, history or show).")],
    batch_id: Annotated[int, typer.Option("--batch", "-b", min=1, max=2**31 - 1, help="The run's batch id.")],
    output: OutputOption = Output.TABLE, api_url: ApiUrlOption = None, token_file: TokenFileOption = None,
    token: RefusedTokenOption = None,
) -> None:
    """Status, records read and written, chunks, estimate, phase, times and message of one run."""
    with api_client(api_url, token_file, token, ["integration:batch:query"]) as client:
        reply = client.call("GET", f"/integration/batch/{batch_id}/runs/{run_id}")
        finish(client, reply, output, RecordTable(f"run {run_id}"))
