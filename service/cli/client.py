"""What every `batchsync` client command shares: the API address, the bearer token, one call as its
envelope, the exit codes, and the output (Rich tables by default, the raw `data` as JSON for scripts).

Exit codes, the same for every client command:

- 0 done;
- 1 what was asked failed or was refused: a failed run, a failed connection test, a check with
  problems, any 400 answer;
- 2 usage: bad arguments, an unreadable file, a token on the command line;
- 3 a run is still going (`sync`/`batch retry` without `--follow`);
- 4 anything else: not found, conflict, 401/403, an unreachable or failing server.

The token comes from `--token-file PATH`, else `BATCHSYNC_TOKEN`, else it is minted for the command's
own permissions from the local dev secret (BATCHSYNC_JWT_SECRET or the `jwt_secret` file `up` keeps),
never from the command line, where every local user could read it in `ps` or `/proc/<pid>/cmdline`.
"""

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from service.config import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_RUNNING, EXIT_ERROR = 0, 1, 2, 3, 4
EXIT_CODES = ("Exit codes: 0 done; 1 failed or refused (a failed run, test or check, any 400); 2 usage; "
              "3 a run still going; 4 other (not found, 401/403, the API unreachable).")
"""The epilog of every client command group's help."""
MINTED_TTL_SECONDS = 600

TOKEN_ON_COMMAND_LINE = ("error: --token is refused: a token on the command line is visible to every local user "
                         "(ps, /proc/<pid>/cmdline). Set BATCHSYNC_TOKEN or use --token-file PATH.")

stderr = Console(stderr=True)


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


ApiUrlOption = Annotated[str | None, typer.Option("--api-url", help="Default http://127.0.0.1:<BATCHSYNC_HTTP_PORT>.")]
TokenFileOption = Annotated[Path | None, typer.Option(
    "--token-file", exists=True, dir_okay=False, readable=True,
    help="File holding the bearer token (or set BATCHSYNC_TOKEN; default: minted from the local dev secret).",
)]
RefusedTokenOption = Annotated[str | None, typer.Option("--token", hidden=True, help="Refused; see --token-file.")]
OutputOption = Annotated[Output, typer.Option(
    "--output", "-o", case_sensitive=False, help="table (default) or json: the answer's `data` alone on stdout.",
)]


_CONTROLS = dict.fromkeys([*range(0x00, 0x09), *range(0x0b, 0x20), *range(0x7f, 0xa0)])


def printable(text: str) -> str:
    """`text` without control characters: what the API (or a source's data) says must not drive the
    terminal (escape sequences, carriage returns)."""
    return text.translate(_CONTROLS)


@dataclass(frozen=True)
class Credentials:
    """The bearer token to send and where it came from; `looked` lists the places tried when none was found."""

    token: str
    source: str
    looked: tuple[str, ...] = ()


def token_from_file(path: Path) -> str:
    """The first line of `path`; warns when the file is readable by others than its owner."""
    if path.stat().st_mode & 0o077:
        typer.echo(f"warning: {path} is readable by other users; chmod 600 it", err=True)
    lines = path.read_text().strip().splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise typer.BadParameter(f"{path} is empty", param_hint="--token-file")
    return token


def credentials(settings: Settings, token_file: Path | None, perms: Sequence[str]) -> Credentials:
    """The token of `--token-file`, BATCHSYNC_TOKEN, or one minted for `perms` from the local dev secret."""
    if token_file is not None:
        return Credentials(token_from_file(token_file), f"--token-file {token_file}")
    if settings.token is not None and settings.token.get_secret_value():
        return Credentials(settings.token.get_secret_value(), "BATCHSYNC_TOKEN")
    from service.auth import TokenConfigError, TokenTtlTooLong, mint_token
    from service.cli.main import JWT_SECRET_FILE, dev_secret

    secret_file = (Path(settings.data_dir) / JWT_SECRET_FILE).resolve()
    keyed = dev_secret(settings, create=False)
    source = "BATCHSYNC_JWT_SECRET" if settings.jwt_secret is not None else str(secret_file)
    with contextlib.suppress(TokenConfigError, TokenTtlTooLong):
        ttl = min(MINTED_TTL_SECONDS, keyed.jwt_max_ttl_seconds)
        return Credentials(mint_token(keyed, "cli", list(perms), ttl_seconds=ttl), f"minted from {source}")
    return Credentials("", "", looked=("--token-file (not given)", "BATCHSYNC_TOKEN (not set)",
                                       "BATCHSYNC_JWT_SECRET (not set)", f"{secret_file} (not found)"))


@dataclass(frozen=True)
class Reply:
    """One API answer as its envelope."""

    status: int
    message: str
    data: Any
    reason: str | None = None

    @classmethod
    def of(cls, response: httpx.Response) -> "Reply":
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return cls(response.status_code, printable(response.text[:200].strip() or response.reason_phrase), None)
        data = body.get("data")
        reason = None
        if response.status_code in (401, 403) and isinstance(data, dict):
            described = data.get("description") or data.get("reason")
            reason = f"{data.get('reason')}: {described}" if described != data.get("reason") else str(described)
            reason = printable(reason)
        return cls(response.status_code, printable(str(body.get("message", ""))), data, reason)


def exit_code(status: int) -> int:
    if 200 <= status < 300:
        return EXIT_OK
    return EXIT_FAILED if status == 400 else EXIT_ERROR


def hint_for(reply: Reply, creds: Credentials) -> str | None:
    """What to do about a 401, as one line, when the cause is on this side."""
    if reply.status != 401:
        return None
    if not creds.token:
        return ("no token was found; looked at " + ", ".join(creds.looked) + ". Get one with `batchsync token "
                "--sub NAME --perms PERM` where the server's secret is, then set BATCHSYNC_TOKEN or pass "
                "--token-file PATH (a `batchsync up` in this directory needs neither).")
    if creds.source.startswith("minted") and reply.reason and reply.reason.startswith("bad_signature"):
        return (f"the token was {creds.source}, which is not the secret this server uses; "
                "set BATCHSYNC_TOKEN or pass --token-file PATH")
    return None


def report_failure(reply: Reply, creds: Credentials) -> int:
    """Tell an error answer on stderr (with the 401/403 reason and a hint), and return its exit code."""
    line = f"error: HTTP {reply.status} {reply.message}"
    if reply.reason:
        line += f" ({reply.reason})"
    typer.echo(line, err=True)
    hint = hint_for(reply, creds)
    if hint:
        typer.echo(f"hint: {hint}", err=True)
    return exit_code(reply.status)


def refuse_token_option(token: str | None) -> None:
    if token is not None:
        typer.echo(TOKEN_ON_COMMAND_LINE, err=True)
        raise typer.Exit(EXIT_USAGE)


def client_settings() -> Settings:
    """The settings a client command runs with: the environment, completed by a running `up` here."""
    from service.embedded import with_running_endpoints

    return with_running_endpoints(Settings())


def api_base(settings: Settings, api_url: str | None) -> str:
    return api_url or f"http://127.0.0.1:{settings.http_port}"


class ApiClient:
    """A synchronous client for one command: a few calls, each answered as a Reply; stops the command with
    exit 4 when the API cannot be reached."""

    def __init__(self, base_url: str, creds: Credentials, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {creds.token}"} if creds.token else {}
        self.base_url = base_url
        self.creds = creds
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
             body: Any = None) -> Reply:
        try:
            response = self._http.request(method, path, params=params, json=body)
        except httpx.HTTPError as error:
            typer.echo(f"error: the API at {self.base_url} could not be reached: {type(error).__name__}: {error}",
                       err=True)
            raise typer.Exit(EXIT_ERROR) from error
        return Reply.of(response)

    def close(self) -> None:
        self._http.close()


@contextlib.contextmanager
def api_client(api_url: str | None, token_file: Path | None, token: str | None,
               perms: Sequence[str]) -> Iterator[ApiClient]:
    """The client of a command that needs `perms`; refuses `--token` first (exit 2)."""
    refuse_token_option(token)
    settings = client_settings()
    client = ApiClient(api_base(settings, api_url), credentials(settings, token_file, perms))
    try:
        yield client
    finally:
        client.close()


Renderer = Callable[[Reply], None]
"""Draws a successful Reply on stdout for people."""


def finish(client: ApiClient, reply: Reply, output: Output, render: Renderer | None = None,
           ok: bool = True) -> NoReturn:
    """Show a successful answer (its `data` as JSON, or as `render` draws it) and exit; an error answer is
    told on stderr. `ok=False` shows the data and still exits 1 (a check with problems)."""
    if not 200 <= reply.status < 300:
        raise typer.Exit(report_failure(reply, client.creds))
    if output is Output.JSON:
        typer.echo(json.dumps(reply.data, ensure_ascii=False, indent=2))
    elif render is not None:
        render(reply)
    else:
        typer.echo(reply.message)
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)


PIPE_WIDTH = 200
"""Rich wraps at 80 columns when stdout is not a terminal; a pipe or a log gets whole ids and times."""


def stdout() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=PIPE_WIDTH)


def cell(value: Any, name: str = "") -> Text:
    """A value for a table cell, as plain text (a `[` in a name is not Rich markup) without control
    characters: times without their fraction and zone letter, JSON for objects."""
    if value is None:
        shown = ""
    elif isinstance(value, dict | list):
        shown = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, str) and (name.endswith("At") or name.endswith("Time")) and "T" in value:
        shown = value.replace("T", " ").split(".")[0].removesuffix("Z")
    else:
        shown = str(value)
    return Text(printable(shown))


WRAPPED = frozenset({"message", "lastError", "url", "value"})
"""Columns that may wrap; ids, statuses, counts and times stay on one line."""


@dataclass(frozen=True)
class PageTable:
    """A list answer (`{total, rows}`) as a table of the named fields."""

    title: str
    fields: tuple[str, ...]

    def __call__(self, reply: Reply) -> None:
        data = reply.data or {}
        rows = data.get("rows") or []
        table = Table(title=f"{self.title} ({len(rows)} of {data.get('total', len(rows))})", title_justify="left")
        for name in self.fields:
            table.add_column(name, overflow="fold", no_wrap=name not in WRAPPED)
        for row in rows:
            table.add_row(*(cell(row.get(name), name) for name in self.fields))
        stdout().print(table)


@dataclass(frozen=True)
class RecordTable:
    """One object as a two-column table, fields in the API's order."""

    title: str

    def __call__(self, reply: Reply) -> None:
        stdout().print(record_table(self.title, reply.data or {}))


def record_table(title: str, data: dict[str, Any]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name, value in data.items():
        table.add_row(cell(name), cell(value, name))
    return table


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
