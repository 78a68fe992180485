"""The `batchsync` commands that need no running server (token, db upgrade, demo data), and `sync` against
the real API, worker and projector served on a loopback port."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import jwt
import pytest
from typer.testing import CliRunner

from service.auth import verify_token
from service.bootstrap import run_api
from service.cli.main import app, dev_secret
from service.config import Settings
from service.demo import seed_demo
from tests.support.brokers import free_port
from tests.support.builders import create_empty_like_orders, create_orders, table_fingerprint, unique
from tests.support.databases import _admin, fresh_database, migrated_database
from tests.support.stack import Stack, create_batch, create_connection, running_stack, stack_settings

SECRET = "cli-test-secret-0123456789abcdef"
runner = CliRunner()


def _invoke(args: list[str], **env: str | None) -> tuple[int, str, str]:
    base: dict[str, str | None] = {"BATCHSYNC_JWT_SECRET": None, "BATCHSYNC_DATABASE_URL": None,
                                   "BATCHSYNC_KAFKA_BOOTSTRAP": None, "BATCHSYNC_TOKEN": None}
    result = runner.invoke(app, args, env={**base, **env})
    return result.exit_code, result.stdout, result.stderr


def test_token_round_trips_through_verify_token() -> None:
    code, out, _ = _invoke(["token", "--sub", "alice", "--perms", "integration:batch:sync, integration:batch:query",
                            "--ttl", "120"], BATCHSYNC_JWT_SECRET=SECRET)
    assert code == 0
    token = out.strip()
    principal = verify_token(Settings(jwt_secret=SECRET), token)
    assert principal.sub == "alice"
    assert principal.perms == {"integration:batch:sync", "integration:batch:query"}
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 120


def test_token_uses_the_secret_up_keeps_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / ".batchsync"
    settings = dev_secret(Settings(data_dir=data_dir), create=True)
    secret_file = data_dir / "jwt_secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert dev_secret(Settings(data_dir=data_dir), create=True).jwt_secret == settings.jwt_secret
    code, out, _ = _invoke(["token", "--sub", "bob", "--perms", "*:*:*"], BATCHSYNC_DATA_DIR=str(data_dir))
    assert code == 0
    assert verify_token(settings, out.strip()).sub == "bob"


def test_token_without_any_secret_fails(tmp_path: Path) -> None:
    code, out, err = _invoke(["token", "--sub", "bob", "--perms", "*:*:*"], BATCHSYNC_DATA_DIR=str(tmp_path))
    assert code == 1 and out == ""
    assert "BATCHSYNC_JWT_SECRET" in err
    assert not (tmp_path / "jwt_secret").exists()


def test_db_upgrade_migrates_a_fresh_database() -> None:
    with fresh_database("bs_cli") as dsn:
        code, out, _ = _invoke(["db", "upgrade"], BATCHSYNC_DATABASE_URL=dsn)
        assert code == 0, out

        async def tables() -> set[str]:
            conn = await asyncpg.connect(dsn)
            try:
                rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                return {r["tablename"] for r in rows}
            finally:
                await conn.close()

        assert {"alembic_version", "connections", "batches", "runs", "outbox", "run_history"} <= asyncio.run(tables())
        assert _invoke(["db", "upgrade"], BATCHSYNC_DATABASE_URL=dsn)[0] == 0


def test_demo_data_is_created_once(tmp_path: Path) -> None:
    source_db, target_db = unique("bs_demo_src"), unique("bs_demo_tgt")
    with migrated_database("bs_cli_state") as dsn:
        settings = Settings(database_url=dsn, data_dir=tmp_path)  # the demo role's password file goes there
        try:
            first = asyncio.run(seed_demo(settings, rows=5000, source_db=source_db, target_db=target_db))
            again = asyncio.run(seed_demo(settings, rows=5000, source_db=source_db, target_db=target_db))
            assert first == again

            async def counts() -> tuple[int, int, int, int, list[str]]:
                state = await asyncpg.connect(dsn)
                source = await asyncpg.connect(first.source_url)
                target = await asyncpg.connect(first.target_url)
                try:
                    types = await source.fetch("SELECT data_type FROM information_schema.columns "
                                               "WHERE table_name = 'orders' ORDER BY ordinal_position")
                    return (await state.fetchval("SELECT count(*) FROM connections"),
                            await state.fetchval("SELECT count(*) FROM batches"),
                            await source.fetchval("SELECT count(DISTINCT id) FROM orders"),
                            await target.fetchval("SELECT count(*) FROM orders"),
                            [r["data_type"] for r in types])
                finally:
                    for conn in (state, source, target):
                        await conn.close()

            connections, batches, source_rows, target_rows, types = asyncio.run(counts())
            assert (connections, batches, source_rows, target_rows) == (2, 1, 5000, 0)
            wanted = {"integer", "numeric", "boolean", "date", "timestamp with time zone", "double precision"}
            assert wanted <= set(types)
        finally:
            for name in (source_db, target_db):
                asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[Stack]:
    """Worker and projector as in the other tests, plus the API on a real port for the CLI to reach."""
    async with running_stack(settings) as stack:
        api = asyncio.create_task(run_api(settings))
        try:
            async with httpx.AsyncClient() as client:
                for _ in range(200):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"http://127.0.0.1:{settings.http_port}/healthz")).status_code == 200:
                            break
                    await asyncio.sleep(0.05)
            yield stack
        finally:
            api.cancel()
            await asyncio.gather(api, return_exceptions=True)


@pytest.mark.slow
async def test_sync_command_reports_runs_by_exit_code(state_dsn, source_dsn, target_dsn, broker, tmp_path) -> None:
    settings = stack_settings(state_dsn, broker.bootstrap, http_port=free_port())
    source, target = unique("cli_src"), unique("cli_tgt")
    await create_orders(source_dsn, source, 3000)
    await create_empty_like_orders(target_dsn, target)
    async with served(settings) as stack:
        src = await create_connection(stack, unique("src"), source_dsn)
        tgt = await create_connection(stack, unique("tgt"), target_dsn)
        batch = await create_batch(stack, unique("b"), src, tgt, {"table": source},
                                   {"table": target, "mode": "overwrite"}, chunkSize=500)
        broken = await create_batch(stack, unique("b"), src, tgt, {"table": "no_such_table"},
                                    {"table": target, "mode": "append"})
        env = {"BATCHSYNC_HTTP_PORT": str(settings.http_port), "BATCHSYNC_TOPIC_PREFIX": settings.topic_prefix,
               "BATCHSYNC_DATA_DIR": str(tmp_path), "BATCHSYNC_TOKEN": stack.token}

        async def cli(*args: str, **extra: str) -> tuple[int, str, str]:
            return await asyncio.to_thread(_invoke, list(args), **{**env, **extra})

        code, out, err = await cli("sync", str(batch), "--wait", "30")
        assert code == 0 and "SUCCESS: 3000 records" in out, out + err
        token_file = tmp_path / "token"
        token_file.write_text(stack.token + "\n")
        token_file.chmod(0o600)
        code, out, err = await cli("sync", str(batch), "--wait", "30", "--token-file", str(token_file),
                                   BATCHSYNC_TOKEN="")
        assert code == 0 and "SUCCESS: 3000 records" in out, out + err
        code, _, err = await cli("sync", str(batch), "--token", stack.token)
        assert code == 2 and "BATCHSYNC_TOKEN" in err
        started = time.monotonic()
        code, out, err = await cli("sync", str(batch), "--follow", BATCHSYNC_KAFKA_BOOTSTRAP=broker.bootstrap)
        assert code == 0 and "SUCCESS: 3000 records" in out, out + err
        assert time.monotonic() - started < 20
        code, out, err = await cli("sync", str(batch), "--follow")
        assert code == 0 and "SUCCESS" in out, out + err
        assert await table_fingerprint(target_dsn, target) == await table_fingerprint(source_dsn, source)

        code, out, err = await cli("sync", str(broken), "--wait", "30")
        assert code == 1 and "no_such_table" in err, out + err
        code, out, err = await cli("sync", str(broken), "--follow")
        assert code == 1 and "FAILED" in err, out + err
        code, _, err = await cli("sync", "987654")
        assert code == 4 and "批次不存在" in err
        code, _, err = await cli("sync", str(batch), BATCHSYNC_TOKEN="not-a-token")
        assert code == 4 and "401" in err


def test_http_client_logs_never_carry_source_urls(caplog) -> None:
    import logging

    from service.cli.main import _settings

    _settings()
    with caplog.at_level(logging.INFO):
        logging.getLogger("httpx").info("HTTP Request: GET http://user:S3CRET@host/api?token=S3CRET")
    assert "S3CRET" not in caplog.text
