"""`batchsync sync ID` and `batchsync batch retry ID`: start a run over HTTP and report it, optionally
following its progress live (service/cli/follow.py).

Exit codes (service/cli/client.py): 0 SUCCESS, 1 the run failed or was refused, 2 usage, 3 still running
(without `--follow`), 4 anything else. With `--output json` stdout holds only the final answer's `data`:
the sync result, the accepted run, or (with `--follow`) the finished run.
"""

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer

from schemas.status import RunStatus
from service.cli.client import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_RUNNING,
    ApiUrlOption,
    Credentials,
    Output,
    OutputOption,
    RefusedTokenOption,
    Reply,
    TokenFileOption,
    api_base,
    client_settings,
    credentials,
    printable,
    refuse_token_option,
    report_failure,
)
from service.config import Settings

if TYPE_CHECKING:
    from consumers.event_feed import EventFeed

FEED_WAIT_SECONDS = 10.0
CLIENT_PERMS = ("integration:batch:sync", "integration:batch:retry", "integration:batch:query")

WaitOption = Annotated[float | None, typer.Option("--wait", min=0, help="Seconds the server may wait for the "
                                                  "outcome (default: BATCHSYNC_SYNC_WAIT_SECONDS).")]
FollowOption = Annotated[bool, typer.Option("--follow", help="Show live progress (rate, ETA, phase) until the "
                                            "run ends.")]


def _finish(run: dict[str, Any], started: float, output: Output) -> int:
    status = run.get("status")
    if output is Output.JSON:
        typer.echo(json.dumps(run, ensure_ascii=False, indent=2))
    if status == RunStatus.SUCCESS:
        records = run.get("recordsWritten", run.get("recordsSynced"))
        if output is Output.TABLE:
            typer.echo(f"SUCCESS: {records} records in {time.monotonic() - started:.1f}s (run {run.get('runId')})")
        return EXIT_OK
    typer.echo(printable(f"{status}: {run.get('message') or ''} (run {run.get('runId')})"), err=True)
    return EXIT_FAILED


async def _event_feed(settings: Settings, bootstrap: str) -> "EventFeed | None":
    """Lifecycle events from the current end of P.events on; None when the broker is not reached in time."""
    from consumers.event_feed import EventFeed

    feed = EventFeed(settings.model_copy(update={"kafka_bootstrap": bootstrap}))
    return feed if await feed.open(FEED_WAIT_SECONDS) else None


async def _run(settings: Settings, api_url: str, creds: Credentials, action: str, batch_id: int,
               wait: float | None, follow: bool, output: Output) -> int:
    from service.cli.follow import Follower

    headers = {"Authorization": f"Bearer {creds.token}"} if creds.token else {}
    started = time.monotonic()
    timeout = httpx.Timeout(30.0 + (wait or settings.sync_wait_seconds))
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=timeout) as client:
        bootstrap = settings.kafka_bootstrap
        feed = await _event_feed(settings, bootstrap) if follow and bootstrap else None
        try:
            params = {"wait": 0} if follow else ({"wait": wait} if wait is not None else {})
            reply = Reply.of(await client.post(f"/integration/batch/{batch_id}/{action}", params=params))
            data = reply.data if isinstance(reply.data, dict) else {}
            if reply.status == 200:
                done = {**data, "status": RunStatus.SUCCESS, "recordsWritten": data.get("recordsSynced")}
                return _finish(done, started, output) if output is Output.TABLE else _json(data)
            if reply.status not in (202, 409) or "runId" not in data:
                return report_failure(reply, creds)
            run_id = str(data["runId"])
            if not follow:
                if output is Output.JSON:
                    return _json(data, EXIT_RUNNING)
                typer.echo(f"{reply.message}: run {run_id} (follow with `batchsync run show {run_id} "
                           f"--batch {batch_id}`)")
                return EXIT_RUNNING
            follower = Follower(client, batch_id)
            with follower.progress:
                run = await (follower.by_events(feed, run_id) if feed is not None else follower.by_polling(run_id))
            return _finish(run, started, output)
        finally:
            if feed is not None:
                await feed.close()


def _json(data: Any, code: int = EXIT_OK) -> int:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
    return code


def trigger(action: str, batch_id: int, wait: float | None, follow: bool, output: Output,
            api_url: str | None, token_file: Path | None, token: str | None) -> None:
    """POST /integration/batch/ID/<action> (`sync` or `retry`) and report the run; exits with its code."""
    refuse_token_option(token)
    settings = client_settings()
    creds = credentials(settings, token_file, CLIENT_PERMS)
    try:
        code = asyncio.run(_run(settings, api_base(settings, api_url), creds, action, batch_id, wait, follow, output))
    except (httpx.HTTPError, RuntimeError) as error:
        typer.echo(f"error: {type(error).__name__}: {error}", err=True)
        code = EXIT_ERROR
    raise typer.Exit(code)


def sync(
    batch_id: Annotated[int, typer.Argument(metavar="ID", min=1, max=2**31 - 1, help="The batch to sync.")],
    wait: WaitOption = None,
    follow: FollowOption = False,
    output: OutputOption = Output.TABLE,
    api_url: ApiUrlOption = None,
    token_file: TokenFileOption = None,
    token: RefusedTokenOption = None,
) -> None:
    """Trigger a sync of batch ID; exit 0 on SUCCESS, 1 on failure, 3 if still running, 4 on other errors."""
    trigger("sync", batch_id, wait, follow, output, api_url, token_file, token)
