"""`batchsync secrets …`: the secret key `up` keeps in its data directory, and key rotation (docs/spec.md §7).

A Typer sub-app, registered by `service/cli/main.py` as `app.add_typer(secrets_app, name="secrets")`.
Rotation: set the new key as BATCHSYNC_SECRET_KEY and the old one in BATCHSYNC_SECRET_KEY_PREVIOUS, run
`batchsync secrets rotate`, then drop the previous key. Exit codes: 0 done, 2 not configured or unreadable.
"""

import asyncio
from pathlib import Path

import typer

from service.config import Settings
from service.security.key_files import key_file

SECRET_KEY_FILE = "secret_key"
EXIT_UNUSABLE = 2

secrets_app = typer.Typer(help="Connection secrets at rest: key rotation.", no_args_is_help=True)


@secrets_app.callback()
def _secrets() -> None:
    """Connection secrets are encrypted with BATCHSYNC_SECRET_KEY."""


def dev_secret_key(settings: Settings, *, create: bool) -> Settings:
    """Settings with `<data_dir>/secret_key` as the secret key when none is configured; `up` creates it."""
    if settings.secret_key is not None:
        return settings
    value = key_file(Path(settings.data_dir) / SECRET_KEY_FILE, create=create)
    return settings if value is None else settings.model_copy(update={"secret_key": value})


@secrets_app.command("rotate")
def rotate() -> None:
    """Re-encrypt every connection's secrets with the current BATCHSYNC_SECRET_KEY."""
    from service.embedded import with_running_endpoints
    from service.security.secrets import SecretKeyMissing

    settings = dev_secret_key(with_running_endpoints(Settings()), create=False)
    if not settings.database_url:
        _fail("BATCHSYNC_DATABASE_URL is not set (or run `batchsync up` in this directory)")
    if settings.secret_key is None:
        _fail("BATCHSYNC_SECRET_KEY is not set: it is the key secrets are re-encrypted with")
    try:
        count = asyncio.run(rotate_all(settings))
    except (SecretKeyMissing, ValueError) as error:
        _fail(str(error))
    except Exception as error:  # the catalog reports a secret no configured key opens as ConfigInvalid
        _fail(f"{error} (is the old key in BATCHSYNC_SECRET_KEY_PREVIOUS?)")
    typer.echo(f"re-encrypted {count} connection(s) with key {_current_id(settings)}")


async def rotate_all(settings: Settings) -> int:
    """Re-seal every connection under the current key; the number of connections re-encrypted."""
    from service.catalog.connections import reseal_all
    from service.db.engine import make_engine, make_sessionmaker
    from service.security.policy import AccessPolicy

    engine = make_engine(settings.database_url or "", settings.connect_timeout_seconds, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            return await reseal_all(session, AccessPolicy.from_settings(settings))
    finally:
        await engine.dispose()


def _current_id(settings: Settings) -> str | None:
    from service.security.secrets import Keyring

    return Keyring.from_settings(settings).current_id


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_UNUSABLE)
