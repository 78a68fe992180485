"""`batchsync audit replay`: the audit of the run history against the events log (docs/spec.md §6).

A Typer sub-app, registered by `service/cli/main.py` as `app.add_typer(audit_app, name="audit")`. Exit codes:
0 everything matches, 1 mismatches (a `forged` event is one), 2 the log or the database could not be read.
"""

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import asyncpg
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from service.audit.replay import LogUnavailable, ReplayOptions, replay, summary_lines
from service.cli.secrets import dev_secret_key
from service.config import Settings
from service.embedded import with_running_endpoints
from service.history.projection import projector_group
from service.security.event_signing import EventKeys
from service.security.secrets import SecretKeyMissing

EXIT_MATCH, EXIT_MISMATCH, EXIT_UNREADABLE = 0, 1, 2

audit_app = typer.Typer(help="Audit the run history against the events log.", no_args_is_help=True)


@audit_app.callback()
def _audit() -> None:
    """Audit the run history (PostgreSQL) against the lifecycle events (Kafka)."""


def parse_since(value: str | None) -> datetime | None:
    """ISO-8601; a trailing Z and a missing offset both mean UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO-8601 time: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@audit_app.command("replay")
def replay_command(
    since: Annotated[str | None, typer.Option("--since", help="only runs started at or after this ISO time")] = None,
    batch: Annotated[int | None, typer.Option("--batch", help="only this batch id")] = None,
    output: Annotated[Path | None, typer.Option("--output", help="write the rebuilt audit trail (JSON Lines)")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="rewrite the projection, then verify")] = False,
    settle_seconds: Annotated[float, typer.Option(
        "--settle-seconds", help="differences on runs with events this recent are lag, not mismatches")] = 5.0,
) -> None:
    """Rebuild every run's history from P.events and compare it with the database."""
    since_time = parse_since(since)
    if rebuild and since_time is not None:
        _fail("--rebuild rewrites the projection from the whole log; it cannot be combined with --since")
    settings = dev_secret_key(with_running_endpoints(Settings()), create=False)
    if not settings.database_url or not settings.kafka_bootstrap:
        _fail("BATCHSYNC_DATABASE_URL and BATCHSYNC_KAFKA_BOOTSTRAP must both be set (or run `batchsync up` here)")
    options = ReplayOptions(since=since_time, batch_id=batch, rebuild=rebuild, settle_seconds=settle_seconds,
                            projector_group=projector_group(settings.topic_prefix), topic=settings.topics.events)
    raise typer.Exit(asyncio.run(run_replay(settings, options, output)))


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_UNREADABLE)


async def run_replay(settings: Settings, options: ReplayOptions, output: Path | None) -> int:
    """Compose the Kafka reader and the database connection, run the audit, print; returns the exit code."""
    from consumers.audit_reader import EventLogReader, events_retention

    console = Console(stderr=False)
    try:
        keys = EventKeys.from_settings(settings)
    except SecretKeyMissing as exc:
        return _unreadable(f"{exc} (the key the service runs with is needed to tell its events from forgeries)")
    try:
        for name, value in (await events_retention(settings)).items():
            typer.echo(f"warning: {settings.topics.events} has {name}={value}: old lifecycle events are deleted "
                       "and this audit cannot see them; set it to -1", err=True)
        conn = await asyncpg.connect(settings.asyncpg_dsn, timeout=settings.connect_timeout_seconds)
    except LogUnavailable as exc:
        return _unreadable(f"the events log could not be read: {exc}")
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return _unreadable(f"the database could not be reached: {exc!r}")
    try:
        with contextlib.ExitStack() as files:
            sink = files.enter_context(output.open("w", encoding="utf-8")) if output is not None else None
            progress = Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                console=console, disable=not console.is_terminal, transient=True)
            task = progress.add_task("events", total=None)

            def advance(count: int, total: int | None) -> None:
                progress.update(task, advance=count, total=total)

            with progress:
                async with EventLogReader(settings, options.since) as source:
                    if not source.topic_exists:
                        typer.echo(f"warning: {settings.topics.events} does not exist: the log is empty", err=True)
                    report = await replay(conn, source, options, keys, sink, advance)
    except LogUnavailable as exc:
        return _unreadable(f"the events log could not be read: {exc}")
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return _unreadable(f"the database failed during the audit: {exc!r}")
    finally:
        with contextlib.suppress(Exception):
            await conn.close()
    for line in summary_lines(report):
        typer.echo(line)
    return EXIT_MATCH if report.ok else EXIT_MISMATCH


def _unreadable(message: str) -> int:
    typer.echo(f"error: {message}", err=True)
    return EXIT_UNREADABLE

