"""`batchsync sync ID`: trigger a run over HTTP and report it, optionally following its progress live.

With `--follow`, progress comes from the run's `BatchSyncProgress` events on `P.events` (a group-less
consumer positioned at the end before the request, so no event of the run is missed); without a
reachable broker it polls `GET /integration/batch/{id}/runs/{runId}` instead.

The bearer token comes from `--token-file PATH` or `BATCHSYNC_TOKEN`, never from the command line,
where every local user could read it in `ps` or `/proc/<pid>/cmdline`.
"""

import asyncio
import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from schemas.status import TERMINAL, RunStatus
from service.config import Settings

if TYPE_CHECKING:
    from consumers.event_feed import EventFeed

EXIT_SUCCESS, EXIT_FAILED, EXIT_RUNNING, EXIT_ERROR = 0, 1, 3, 4
POLL_SECONDS = 0.5
FEED_WAIT_SECONDS = 10.0
CLIENT_PERMS = ["integration:batch:sync", "integration:batch:query"]
console = Console(stderr=True)

TOKEN_ON_COMMAND_LINE = ("error: --token is refused: a token on the command line is visible to every local user "
                         "(ps, /proc/<pid>/cmdline). Set BATCHSYNC_TOKEN or use --token-file PATH.")


def _token_from_file(path: Path) -> str:
    """The first line of `path`; warns when the file is readable by others than its owner."""
    if path.stat().st_mode & 0o077:
        typer.echo(f"warning: {path} is readable by other users; chmod 600 it", err=True)
    token = path.read_text().strip()
    if not token:
        raise typer.BadParameter(f"{path} is empty", param_hint="--token-file")
    return token


def _bearer(settings: Settings, token: str | None) -> str:
    """The given token, else a short-lived one minted from the local dev secret, else none."""
    if token:
        return token
    from service.auth import TokenConfigError, mint_token
    from service.cli import dev_secret

    with contextlib.suppress(TokenConfigError):
        return mint_token(dev_secret(settings, create=False), "cli", CLIENT_PERMS, ttl_seconds=600)
    return ""


def _envelope(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = {}
    return body if isinstance(body, dict) else {}


def _finish(run: dict[str, Any], started: float) -> int:
    status = run.get("status")
    seconds = time.monotonic() - started
    if status == RunStatus.SUCCESS:
        records = run.get("recordsWritten", run.get("recordsSynced"))
        typer.echo(f"SUCCESS: {records} records in {seconds:.1f}s (run {run.get('runId')})")
        return EXIT_SUCCESS
    typer.echo(f"{status}: {run.get('message') or ''} (run {run.get('runId')})", err=True)
    return EXIT_FAILED


class Follower:
    """Feeds one Rich progress bar from events or polls until the run reaches a terminal status."""

    def __init__(self, client: httpx.AsyncClient, batch_id: int) -> None:
        self.client = client
        self.batch_id = batch_id
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console)
        self.task = self.progress.add_task(f"batch {batch_id}", total=None, rate="")

    def show(self, written: int, total: int | None, rate: float | None = None) -> None:
        self.progress.update(self.task, completed=written, total=total or None,
                             rate=f"{rate:,.0f} rows/s" if rate else "")

    async def poll(self, run_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/integration/batch/{self.batch_id}/runs/{run_id}")
        run = _envelope(response).get("data") or {}
        if response.status_code != 200 or not run:
            raise RuntimeError(f"GET run {run_id}: HTTP {response.status_code} {_envelope(response).get('message')}")
        self.show(int(run.get("recordsWritten") or 0), run.get("totalEstimate"))
        return run

    async def by_polling(self, run_id: str) -> dict[str, Any]:
        while True:
            run = await self.poll(run_id)
            if run.get("status") in TERMINAL:
                return run
            await asyncio.sleep(POLL_SECONDS)

    async def by_events(self, feed: "EventFeed", run_id: str) -> dict[str, Any]:
        from schemas.events import BatchSyncCompleted, BatchSyncProgress

        last_poll = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                event = await asyncio.wait_for(feed.events.get(), 1.0)
                if str(event.run_id) == run_id:
                    if isinstance(event, BatchSyncProgress):
                        self.show(event.records_written, event.total_estimate, event.records_per_second)
                    elif isinstance(event, BatchSyncCompleted):
                        return await self.poll(run_id)
            if time.monotonic() - last_poll > 5:
                last_poll = time.monotonic()
                run = await self.poll(run_id)
                if run.get("status") in TERMINAL:
                    return run


async def _event_feed(settings: Settings, bootstrap: str) -> "EventFeed | None":
    """Lifecycle events from the current end of P.events on; None when the broker is not reached in time."""
    from consumers.event_feed import EventFeed

    feed = EventFeed(settings.model_copy(update={"kafka_bootstrap": bootstrap}))
    return feed if await feed.open(FEED_WAIT_SECONDS) else None


async def _run(settings: Settings, api_url: str, token: str, batch_id: int, wait: float | None,
               follow: bool, bootstrap: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started = time.monotonic()
    timeout = httpx.Timeout(30.0 + (wait or settings.sync_wait_seconds))
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=timeout) as client:
        feed = await _event_feed(settings, bootstrap) if follow and bootstrap else None
        try:
            params = {"wait": 0} if follow else ({"wait": wait} if wait is not None else {})
            response = await client.post(f"/integration/batch/{batch_id}/sync", params=params)
            body = _envelope(response)
            data = body.get("data") or {}
            if response.status_code == 200:
                done = {**data, "status": RunStatus.SUCCESS, "recordsWritten": data.get("recordsSynced")}
                return _finish(done, started)
            if response.status_code not in (202, 409) or "runId" not in data:
                typer.echo(f"HTTP {response.status_code}: {body.get('message', response.text[:200])}", err=True)
                return EXIT_FAILED if response.status_code == 400 else EXIT_ERROR
            run_id = str(data["runId"])
            if not follow:
                typer.echo(f"{body.get('message')}: run {run_id} (follow with GET "
                           f"/integration/batch/{batch_id}/runs/{run_id})")
                return EXIT_RUNNING
            follower = Follower(client, batch_id)
            with follower.progress:
                if feed is not None:
                    run = await follower.by_events(feed, run_id)
                else:
                    run = await follower.by_polling(run_id)
            return _finish(run, started)
        finally:
            if feed is not None:
                await feed.close()


def sync(
    batch_id: Annotated[int, typer.Argument(metavar="ID", help="The batch to sync.")],
    wait: Annotated[float | None, typer.Option("--wait", min=0, help="Seconds the server may wait for the "
                                               "outcome (default: BATCHSYNC_SYNC_WAIT_SECONDS).")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Show live progress until the run ends.")] = False,
    api_url: Annotated[str | None, typer.Option("--api-url", help="Default http://127.0.0.1:<http_port>.")] = None,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", exists=True, dir_okay=False, readable=True,
        help="File holding the bearer token (or set BATCHSYNC_TOKEN; default: minted from the dev secret).",
    )] = None,
    token: Annotated[str | None, typer.Option("--token", hidden=True, help="Refused; see --token-file.")] = None,
) -> None:
    """Trigger a sync of batch ID; exit 0 on SUCCESS, 1 on failure, 3 if still running, 4 on other errors."""
    from service.embedded import with_running_endpoints

    if token is not None:
        typer.echo(TOKEN_ON_COMMAND_LINE, err=True)
        raise typer.Exit(2)
    settings = with_running_endpoints(Settings())
    if token_file is not None:
        token = _token_from_file(token_file)
    elif settings.token is not None:
        token = settings.token.get_secret_value()
    bootstrap = settings.kafka_bootstrap
    url = api_url or f"http://127.0.0.1:{settings.http_port}"
    try:
        code = asyncio.run(_run(settings, url, _bearer(settings, token), batch_id, wait, follow, bootstrap))
    except (httpx.HTTPError, RuntimeError) as error:
        typer.echo(f"error: {error}", err=True)
        code = EXIT_ERROR
    raise typer.Exit(code)
