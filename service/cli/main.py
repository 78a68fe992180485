"""The `batchsync` command line: run the service (all in one, or part by part), migrate, mint tokens, sync.

Only `up` starts embedded PostgreSQL and broker; the single-part commands expect configured ones, as in
production. Every command reads its configuration from the one Settings class.
"""

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from service.cli.audit import audit_app
from service.cli.batch import batch_app
from service.cli.connection import connection_app
from service.cli.run import run_app
from service.cli.secrets import dev_secret_key, secrets_app
from service.cli.sync import sync
from service.config import Settings
from service.observability.logs import configure as configure_logging
from service.observability.process import observe_part
from service.security.key_files import key_file
from service.startup_errors import ExitCode, StartupError, reported

app = typer.Typer(help="batchsync: sync data batches from source to target systems.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="State-store maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(secrets_app, name="secrets")
app.add_typer(connection_app, name="connection")
app.add_typer(batch_app, name="batch")
app.add_typer(run_app, name="run")
app.command("sync")(sync)
console = Console()

JWT_SECRET_FILE = "jwt_secret"


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"batchsync {version('batchsync')}")
        except PackageNotFoundError:
            typer.echo("batchsync (not installed as a package)")
        raise typer.Exit(0)


class _Flags:
    """What the global options of this invocation asked for (the process runs one command)."""

    debug = False


def _remember_debug(wanted: bool) -> None:
    _Flags.debug = wanted


def _debug(settings: Settings | None = None) -> bool:
    """`--debug` was given, or the log level is DEBUG: start-up errors show their traceback."""
    return _Flags.debug or (settings is not None and settings.log_level.upper() == "DEBUG")


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="Print the version and exit.")] = False,
          debug: Annotated[bool, typer.Option("--debug", callback=_remember_debug, is_eager=True,
                                              help="Show the traceback of a start-up error.")] = False) -> None:
    """batchsync: sync data batches from source to target systems."""


def _settings() -> Settings:
    """The Settings, or one line naming the first invalid setting (exit 2); logging set up from them."""
    with reported(_debug()):
        settings = Settings()
    configure_logging(settings)
    return settings


def dev_secret(settings: Settings, *, create: bool) -> Settings:
    """Settings with the dev JWT secret of `<data_dir>/jwt_secret` when no key is configured.

    `up` creates the file (mode 0600) so tokens survive restarts; other commands only read it.
    """
    if settings.jwt_secret is not None or settings.jwt_public_key is not None:
        return settings
    value = key_file(Path(settings.data_dir) / JWT_SECRET_FILE, create=create)
    return settings if value is None else settings.model_copy(update={"jwt_secret": value})


def startable(settings: Settings, *, http: bool = False) -> Settings:
    """The settings, or one line naming what a part cannot start without or cannot reach (see ExitCode)."""
    from service.bootstrap import _require
    from service.preflight import check_http_port, check_services

    with reported(_debug(settings)):
        try:
            _require(settings)
        except RuntimeError as error:
            raise StartupError(str(error), ExitCode.CONFIG) from error
        if http:
            check_http_port(settings)
        check_services(settings)
    return settings


def run_until_stopped(main: Callable[[], Awaitable[None]]) -> None:
    """Run `main` until it returns or SIGINT/SIGTERM arrives; then cancel it and let it close what it opened."""

    async def runner() -> None:
        task = asyncio.ensure_future(main())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(runner())


def _terminate_on_sigterm() -> None:
    """Before the event loop runs, turn SIGTERM into SystemExit so context managers stop the children."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


@app.command()
def up(demo: Annotated[bool, typer.Option("--demo", help="Create a demo source, target and batch.")] = False) -> None:
    """API + sync worker + history projector in one process, on embedded PostgreSQL and broker by default."""
    from service.bootstrap import run_all
    from service.db.migrate import upgrade
    from service.embedded import embedded_services, with_default_file_root
    from service.preflight import check_http_port, check_services
    from service.security.secrets import Keyring

    _terminate_on_sigterm()
    settings = _settings()
    with reported(_debug(settings)):
        check_http_port(settings)  # before anything is started, seeded or printed
        check_services(settings)  # the configured ones; the embedded ones are checked as they start
        settings = with_default_file_root(dev_secret_key(dev_secret(settings, create=True), create=True))
        with embedded_services(settings) as settings:
            upgrade(settings.database_url or "", keys=Keyring.from_settings(settings))
            if demo:
                _announce_demo(settings)
            console.print(f"batchsync up: http://{settings.http_host}:{settings.http_port} "
                          f"(docs at /docs; data in {Path(settings.data_dir).resolve()}); Ctrl-C stops.")
            observe_part(settings, "up")
            run_until_stopped(lambda: run_all(settings))


def _announce_demo(settings: Settings) -> None:
    from service.auth import ALL_PERMISSIONS, mint_token
    from service.demo import ORDER_COUNT, seed_demo

    info = asyncio.run(seed_demo(settings))
    ttl = settings.jwt_max_ttl_seconds
    token = mint_token(settings, "demo", [ALL_PERMISSIONS], ttl_seconds=ttl)
    console.print(f"demo: batch {info.batch_id} copies {ORDER_COUNT:,} orders from demo_source to demo_target.")
    console.print(f"token (all permissions, valid {ttl // 3600}h {ttl % 3600 // 60}m; "
                  f"`batchsync token` mints more):\n{token}", soft_wrap=True)
    console.print("run it:", soft_wrap=True)
    console.print(
        f'curl -X POST http://{settings.http_host}:{settings.http_port}/integration/batch/{info.batch_id}/sync '
        f'-H "Authorization: Bearer {token}"',
        soft_wrap=True, highlight=False, markup=False,
    )


@app.command()
def api() -> None:
    """The HTTP API alone (needs BATCHSYNC_DATABASE_URL and BATCHSYNC_KAFKA_BOOTSTRAP)."""
    from service.bootstrap import run_api

    settings = startable(dev_secret(_settings(), create=False), http=True)
    observe_part(settings, "api")
    run_until_stopped(lambda: run_api(settings))


@app.command()
def worker() -> None:
    """A sync worker; run any number, they share one consumer group."""
    from service.bootstrap import run_worker

    settings = startable(_settings())
    observe_part(settings, "worker")
    run_until_stopped(lambda: run_worker(settings))


@app.command()
def projector() -> None:
    """The history projector: builds run history from the events topic."""
    from service.bootstrap import run_projector

    settings = startable(_settings())
    observe_part(settings, "projector")
    run_until_stopped(lambda: run_projector(settings))


@app.command()
def scheduler() -> None:
    """Fires scheduled batches, resumes failed runs their retry policy covers, sends run notifications; run any
    number, each fire starts once."""
    from service.bootstrap import run_scheduler

    settings = startable(_settings())
    observe_part(settings, "scheduler")
    run_until_stopped(lambda: run_scheduler(settings))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Alembic migrations to head (on the embedded database when no URL is configured)."""
    from service.db.migrate import upgrade
    from service.embedded import embedded_services
    from service.preflight import check_services
    from service.security.secrets import Keyring

    settings = dev_secret_key(_settings(), create=False)
    with reported(_debug(settings)):
        check_services(settings, broker=False)
        with embedded_services(settings, broker=False) as settings:
            upgrade(settings.database_url or "", keys=Keyring.from_settings(settings))
    console.print("database is at the latest schema")


@app.command()
def token(
    sub: Annotated[str, typer.Option("--sub", help="The user the token names.")],
    perms: Annotated[str, typer.Option("--perms", help="Comma-separated permissions, e.g. integration:batch:*")],
    ttl: Annotated[int, typer.Option("--ttl", min=1, help="Lifetime in seconds, at most "
                                     "BATCHSYNC_JWT_MAX_TTL_SECONDS (default 86400).")] = 3600,
) -> None:
    """Mint a dev token (HS256) with the configured secret or the one `up` keeps in the data directory."""
    from service.auth import TokenConfigError, mint_token

    settings = dev_secret(_settings(), create=False)
    wanted = [p.strip() for p in perms.split(",") if p.strip()]
    if not wanted:
        raise typer.BadParameter("at least one permission", param_hint="--perms")
    if ttl > settings.jwt_max_ttl_seconds:
        limit = settings.jwt_max_ttl_seconds
        raise typer.BadParameter(f"{ttl} is longer than BATCHSYNC_JWT_MAX_TTL_SECONDS ({limit}); "
                                 "the API refuses such tokens", param_hint="--ttl")
    try:
        typer.echo(mint_token(settings, sub, wanted, ttl_seconds=ttl))
    except TokenConfigError as error:
        typer.echo(f"error: {error} (or run `batchsync up` once in this directory)", err=True)
        raise typer.Exit(1) from error
