"""`batchsync batch list|show|create|check|retry|cancel|history`: batches over the API.

A Typer sub-app, registered by `service/cli/main.py`; exit codes as in service/cli/client.py: `check` exits 1
when it found problems, `retry` answers like `sync` (3 while the run goes on, unless `--follow`).
"""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from service.cli.client import (
    EXIT_CODES,
    ApiUrlOption,
    Output,
    OutputOption,
    PageTable,
    RecordTable,
    RefusedTokenOption,
    Reply,
    TokenFileOption,
    api_client,
    cell,
    fail,
    finish,
    stdout,
)
from service.cli.sync import FollowOption, WaitOption, trigger

batch_app = typer.Typer(help="Batches: list, show, create, check, retry, cancel, history.", no_args_is_help=True,
                        epilog=EXIT_CODES)

IdArgument = Annotated[int, typer.Argument(metavar="ID", min=1, max=2**31 - 1, help="The batch id.")]
PageOption = Annotated[int, typer.Option("--page", min=1, help="Page number.")]
SizeOption = Annotated[int, typer.Option("--size", min=1, max=500, help="Rows per page.")]
MAX_FILE_BYTES = 16 * 1024 * 1024
LIST_FIELDS = ("id", "name", "status", "lastSyncTime", "lastRecordsSynced", "lastError")
HISTORY_FIELDS = ("runId", "trigger", "requestedBy", "status", "startedAt", "finishedAt", "recordsSynced", "message")


@batch_app.command("list")
def list_batches(
    name: Annotated[str | None, typer.Option("--name", help="Only names containing this.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="A run status, or NEVER_RUN.")] = None,
    page: PageOption = 1, size: SizeOption = 50, output: OutputOption = Output.TABLE,
    api_url: ApiUrlOption = None, token_file: TokenFileOption = None, token: RefusedTokenOption = None,
) -> None:
    """List batches with their status and last sync (GET /integration/batch/list)."""
    params: dict[str, Any] = {"pageNum": page, "pageSize": size, "name": name, "status": status}
    with api_client(api_url, token_file, token, ["integration:batch:list"]) as client:
        reply = client.call("GET", "/integration/batch/list", params={k: v for k, v in params.items() if v})
        finish(client, reply, output, PageTable("batches", LIST_FIELDS))


@batch_app.command("show")
def show_batch(batch_id: IdArgument, output: OutputOption = Output.TABLE, api_url: ApiUrlOption = None,
               token_file: TokenFileOption = None, token: RefusedTokenOption = None) -> None:
    """A batch's configuration, status and last run (GET /integration/batch/ID)."""
    with api_client(api_url, token_file, token, ["integration:batch:query"]) as client:
        reply = client.call("GET", f"/integration/batch/{batch_id}")
        finish(client, reply, output, RecordTable(f"batch {batch_id}"))


def read_body(path: str) -> Any:
    """The JSON document of `path` (`-` for stdin); exit 2 when it cannot be read or parsed."""
    try:
        if path == "-":
            text = sys.stdin.read(MAX_FILE_BYTES + 1)
        else:
            file = Path(path)
            if not file.is_file():
                fail(f"{path} is not a file")
            with file.open(encoding="utf-8") as handle:
                text = handle.read(MAX_FILE_BYTES + 1)
    except (OSError, UnicodeDecodeError) as error:
        fail(f"{path} could not be read: {error}")
    if len(text) > MAX_FILE_BYTES:
        fail(f"{path} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        fail(f"{path} is not JSON: {error}")


@batch_app.command("create")
def create_batch(
    file: Annotated[str, typer.Option("--file", "-f", metavar="FILE",
                                      help="The batch as JSON (docs/spec.md §3), or - for stdin.")],
    output: OutputOption = Output.TABLE, api_url: ApiUrlOption = None, token_file: TokenFileOption = None,
    token: RefusedTokenOption = None,
) -> None:
    """Create a batch from a JSON file (POST /integration/batch); prints the stored batch with its id."""
    body = read_body(file)
    with api_client(api_url, token_file, token, ["integration:batch:add"]) as client:
        reply = client.call("POST", "/integration/batch", body=body)
        finish(client, reply, output, RecordTable("batch created"))


def render_check(reply: Reply) -> None:
    """Problems first (what to fix), then notes, the column mapping and the preview rows."""
    data, out = reply.data or {}, stdout()
    problems = data.get("problems") or []
    out.print("ok: the batch can run" if data.get("ok") else f"{len(problems)} problem(s):", highlight=False)
    for title, items in (("problems", problems), ("notes", data.get("notes") or [])):
        if items:
            table = Table("field", "message", title=title, title_justify="left")
            for item in items:
                table.add_row(cell(item.get("field")), cell(item.get("message")))
            out.print(table)
    columns = [c for c in data.get("columns") or [] if isinstance(c, dict)]
    if columns:
        table = Table("target column", "from", "kind", "target type", title="columns", title_justify="left")
        for column in columns:
            table.add_row(*(cell(column.get(name)) for name in ("name", "source", "kind", "targetType")))
        out.print(table)
    preview = [row for row in data.get("preview") or [] if isinstance(row, dict)]
    if preview:
        table = Table(title=f"preview ({len(preview)} rows)", title_justify="left")
        for column_name in preview[0]:
            table.add_column(cell(column_name))
        for row in preview:
            table.add_row(*(cell(value) for value in row.values()))
        out.print(table)


@batch_app.command("check")
def check_batch(batch_id: IdArgument, output: OutputOption = Output.TABLE, api_url: ApiUrlOption = None,
                token_file: TokenFileOption = None, token: RefusedTokenOption = None) -> None:
    """Dry run without writing (POST /integration/batch/ID/check): connections, tables, column mapping and a
    preview of the first rows; exit 1 when it found problems."""
    with api_client(api_url, token_file, token, ["integration:batch:query"]) as client:
        reply = client.call("POST", f"/integration/batch/{batch_id}/check")
        ok = isinstance(reply.data, dict) and bool(reply.data.get("ok"))
        finish(client, reply, output, render_check, ok=ok)


@batch_app.command("retry")
def retry_batch(batch_id: IdArgument, wait: WaitOption = None, follow: FollowOption = False,
                output: OutputOption = Output.TABLE, api_url: ApiUrlOption = None,
                token_file: TokenFileOption = None, token: RefusedTokenOption = None) -> None:
    """Resume the last failed run from its checkpoint (POST /integration/batch/ID/retry); answers like sync."""
    trigger("retry", batch_id, wait, follow, output, api_url, token_file, token)


@batch_app.command("cancel")
def cancel_batch(batch_id: IdArgument, output: OutputOption = Output.TABLE, api_url: ApiUrlOption = None,
                 token_file: TokenFileOption = None, token: RefusedTokenOption = None) -> None:
    """Stop the active run at the next chunk boundary (POST /integration/batch/ID/cancel); 1 when none is."""
    with api_client(api_url, token_file, token, ["integration:batch:sync"]) as client:
        reply = client.call("POST", f"/integration/batch/{batch_id}/cancel")
        run = reply.data.get("runId") if isinstance(reply.data, dict) else None
        finish(client, reply, output, lambda answer: stdout().print(f"{answer.message}: run {run}", markup=False,
                                                                   highlight=False))


@batch_app.command("history")
def batch_history(batch_id: IdArgument, page: PageOption = 1, size: SizeOption = 20,
                  output: OutputOption = Output.TABLE, api_url: ApiUrlOption = None,
                  token_file: TokenFileOption = None, token: RefusedTokenOption = None) -> None:
    """The batch's runs, newest first (GET /integration/batch/ID/history)."""
    with api_client(api_url, token_file, token, ["integration:batch:query"]) as client:
        reply = client.call("GET", f"/integration/batch/{batch_id}/history",
                            params={"pageNum": page, "pageSize": size})
        finish(client, reply, output, PageTable(f"runs of batch {batch_id}", HISTORY_FIELDS))
