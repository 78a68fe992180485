"""The `batchsync` command line: main.py builds the Typer app (serving commands, token, version); one
module per client command group (connection, batch, run, sync, audit, secrets) and client.py, what they
share (token, HTTP client, exit codes, tables or JSON)."""

from service.cli.main import app

__all__ = ["app"]
