"""The client commands (`connection`, `batch`, `run`, `sync --follow`) through the real CLI against the real
API, worker and projector on a loopback port, with real PostgreSQL and broker: exit codes, `--output json`,
the 401/403 reasons and the hint when no token is found."""

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import jwt
import pytest
from aiokafka import AIOKafkaConsumer
from typer.testing import CliRunner

from producers.clients import stop_consumer
from service.cli import app
from tests.integration.test_cli import served
from tests.support.brokers import free_port
from tests.support.builders import create_empty_like_orders, create_orders, table_fingerprint, unique
from tests.support.stack import TEST_SECRET, Stack, create_batch, create_connection, stack_settings

runner = CliRunner()
ROWS = 20_000


class Cli:
    """Runs `batchsync …` in a thread (the API serves from this test's event loop) with a clean environment."""

    def __init__(self, stack: Stack, data_dir: Path) -> None:
        self.env = {"BATCHSYNC_HTTP_PORT": str(stack.settings.http_port),
                    "BATCHSYNC_TOPIC_PREFIX": stack.settings.topic_prefix,
                    "BATCHSYNC_DATA_DIR": str(data_dir), "BATCHSYNC_TOKEN": stack.token,
                    "BATCHSYNC_JWT_SECRET": None, "BATCHSYNC_DATABASE_URL": None, "BATCHSYNC_KAFKA_BOOTSTRAP": None}

    async def __call__(self, *args: str, **env: str | None) -> tuple[int, str, str]:
        result = await asyncio.to_thread(runner.invoke, app, list(args), env={**self.env, **env})
        return result.exit_code, result.stdout, result.stderr

    async def json(self, *args: str, **env: str | None) -> Any:
        code, out, err = await self(*args, "--output", "json", **env)
        assert code == 0, out + err
        return json.loads(out)


@pytest.fixture(scope="module")
async def world(state_dsn, source_dsn, target_dsn, broker, tmp_path_factory):
    settings = stack_settings(state_dsn, broker.bootstrap, http_port=free_port())
    source, target = unique("cli_src"), unique("cli_tgt")
    await create_orders(source_dsn, source, ROWS)
    await create_empty_like_orders(target_dsn, target)
    async with served(settings) as stack:
        src = await create_connection(stack, unique("src"), source_dsn)
        tgt = await create_connection(stack, unique("tgt"), target_dsn)
        dead = await create_connection(stack, unique("dead"), f"postgresql://postgres@127.0.0.1:{free_port()}/x")
        batch = await create_batch(stack, unique("b"), src, tgt, {"table": source},
                                   {"table": target, "mode": "overwrite"}, chunkSize=500)
        broken = await create_batch(stack, unique("b"), src, tgt, {"table": "no_such_table"},
                                    {"table": target, "mode": "append"})
        yield {"stack": stack, "cli": Cli(stack, tmp_path_factory.mktemp("cli")), "src": src, "tgt": tgt,
               "dead": dead, "batch": batch, "broken": broken, "source": source, "target": target,
               "source_dsn": source_dsn, "target_dsn": target_dsn, "broker": broker}


def test_version_and_completion() -> None:
    """The installed console script: `--version`, the completion script for the calling shell, and the
    completions that script asks for."""
    script = str(Path(sys.executable).parent / "batchsync")
    version = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("batchsync 0."), version.stderr
    shown = subprocess.run(["bash", "-c", f"{script} --show-completion"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "_BATCHSYNC_COMPLETE=complete_bash" in shown.stdout, shown.stderr
    env = {**os.environ, "_BATCHSYNC_COMPLETE": "complete_bash", "COMP_WORDS": "batchsync batch ch", "COMP_CWORD": "2"}
    completed = subprocess.run([script], capture_output=True, text=True, timeout=60, env=env)
    assert completed.stdout.split() == ["check"]


async def test_connection_commands(world) -> None:
    cli, src, dead = world["cli"], world["src"], world["dead"]
    rows = (await cli.json("connection", "list", "--size", "500"))["rows"]
    assert {src, dead} <= {row["id"] for row in rows}
    shown = await cli.json("connection", "show", str(src))
    assert shown["id"] == src and shown["type"] == "postgresql"
    code, out, err = await cli("connection", "show", str(src))
    assert code == 0 and f"connection {src}" in out and shown["name"] in out, out + err
    code, out, err = await cli("connection", "test", str(src))
    assert code == 0 and "连接成功" in out, out + err
    code, out, err = await cli("connection", "test", str(dead), "--output", "json")
    assert code == 1 and out == "" and "HTTP 400" in err and "连接被拒绝" in err
    code, out, err = await cli("connection", "show", "987654")
    assert code == 4 and "HTTP 404" in err


async def test_tables_show_names_as_text_never_as_markup_or_terminal_codes(world) -> None:
    odd = unique("[bold]odd[/]") + "\x1b[2J\r"
    made = await create_connection(world["stack"], odd, world["source_dsn"])
    code, out, err = await world["cli"]("connection", "show", str(made))
    assert code == 0, out + err
    assert odd.removesuffix("\x1b[2J\r") in out and "\x1b" not in out and "\r" not in out
    assert (await world["cli"].json("connection", "show", str(made)))["name"] == odd, "JSON keeps the data as is"


async def test_batch_commands_and_run_show(world) -> None:
    cli, batch, broken = world["cli"], world["batch"], world["broken"]
    listed = await cli.json("batch", "list", "--name", "b_", "--size", "500")
    assert batch in {row["id"] for row in listed["rows"]}
    code, out, err = await cli("batch", "list")
    assert code == 0 and "batches (" in out, out + err
    assert (await cli.json("batch", "show", str(batch)))["target"]["mode"] == "overwrite"

    result = await cli.json("sync", str(batch), "--wait", "60")
    assert result["success"] is True and result["recordsSynced"] == ROWS
    run = await cli.json("run", "show", result["runId"], "--batch", str(batch))
    assert (run["runId"], run["status"], run["recordsWritten"]) == (result["runId"], "SUCCESS", ROWS)
    code, out, err = await cli("run", "show", result["runId"], "--batch", str(broken))
    assert code == 4 and "HTTP 404" in err
    code, out, err = await cli("run", "show", result["runId"])
    assert code == 2 and "--batch" in err

    history = await cli.json("batch", "history", str(batch))
    assert result["runId"] in [row["runId"] for row in history["rows"]]
    code, out, err = await cli("batch", "history", str(batch))
    assert code == 0 and result["runId"][:8] in out, out + err

    code, out, err = await cli("batch", "retry", str(batch), "--wait", "30")
    assert code == 1 and "批次未处于失败状态" in err, out + err
    code, out, err = await cli("batch", "cancel", str(batch))
    assert code == 1 and "HTTP 400" in err, out + err
    code, out, err = await cli("sync", str(broken), "--wait", "30")
    assert code == 1 and "no_such_table" in err, out + err
    code, out, err = await cli("batch", "retry", str(broken), "--wait", "30")
    assert code == 1 and "no_such_table" in err, out + err


async def test_batch_create_from_a_file(world, tmp_path: Path) -> None:
    cli = world["cli"]
    body = {"name": unique("created"), "sourceConnectionId": world["src"], "source": {"table": world["source"]},
            "targetConnectionId": world["tgt"], "target": {"table": world["target"], "mode": "append"}}
    file = tmp_path / "batch.json"
    file.write_text(json.dumps(body))
    created = await cli.json("batch", "create", "-f", str(file))
    assert created["name"] == body["name"] and created["id"] > 0 and created["status"] == "NEVER_RUN"

    file.write_text("{not json")
    code, out, err = await cli("batch", "create", "-f", str(file))
    assert code == 2 and out == "" and "not JSON" in err
    code, out, err = await cli("batch", "create", "-f", str(tmp_path / "missing.json"))
    assert code == 2 and "not a file" in err
    file.write_text(json.dumps({**body, "name": ""}))
    code, out, err = await cli("batch", "create", "-f", str(file))
    assert code == 1 and "HTTP 400" in err and "参数错误" in err


async def test_batch_check(world) -> None:
    cli = world["cli"]
    checked = await cli.json("batch", "check", str(world["batch"]))
    assert checked["ok"] is True and checked["problems"] == [] and checked["preview"]
    code, out, err = await cli("batch", "check", str(world["batch"]))
    assert code == 0 and "ok" in out and "preview" in out, out + err
    code, out, err = await cli("batch", "check", str(world["broken"]), "--output", "json")
    assert code == 1, out + err
    found = json.loads(out)
    assert found["ok"] is False and any("no_such_table" in p["message"] for p in found["problems"])
    code, out, err = await cli("batch", "check", str(world["broken"]))
    assert code == 1 and "problem" in out and "no_such_table" in out, out + err


async def test_no_token_found_gives_a_hint(world, tmp_path: Path) -> None:
    code, out, err = await world["cli"]("batch", "list", BATCHSYNC_TOKEN=None, BATCHSYNC_DATA_DIR=str(tmp_path))
    assert code == 4 and out == ""
    assert "HTTP 401 认证失败，无法访问系统资源 (missing: no bearer token was sent)" in err
    assert "hint: no token was found; looked at --token-file (not given), BATCHSYNC_TOKEN (not set)" in err
    assert str((tmp_path / "jwt_secret").resolve()) in err and "batchsync token" in err


async def test_a_minted_token_from_the_local_secret(world, tmp_path: Path) -> None:
    (tmp_path / "jwt_secret").write_text(TEST_SECRET + "\n")
    rows = await world["cli"].json("batch", "list", BATCHSYNC_TOKEN=None, BATCHSYNC_DATA_DIR=str(tmp_path))
    assert rows["total"] >= 2
    (tmp_path / "jwt_secret").write_text("another-secret-0123456789abcdefghij\n")
    code, _, err = await world["cli"]("batch", "list", BATCHSYNC_TOKEN=None, BATCHSYNC_DATA_DIR=str(tmp_path))
    assert code == 4 and "bad_signature" in err and "not the secret this server uses" in err


async def test_401_and_403_reasons_reach_the_terminal(world, tmp_path: Path) -> None:
    cli, stack = world["cli"], world["stack"]
    now = int(time.time())
    expired = jwt.encode({"sub": "a", "perms": ["*:*:*"], "iat": now - 100, "exp": now - 10}, TEST_SECRET, "HS256")
    code, out, err = await cli("batch", "list", BATCHSYNC_TOKEN=expired)
    assert code == 4 and out == "" and "(expired: the token has expired)" in err
    assert expired not in err and expired.split(".")[2] not in err
    token_file = tmp_path / "token"
    token_file.write_text(expired.split(".")[0] + ".garbage.x\n")
    token_file.chmod(0o600)
    code, _, err = await cli("batch", "show", "1", "--token-file", str(token_file), BATCHSYNC_TOKEN=None)
    assert code == 4 and "malformed" in err
    narrow = stack.headers(["integration:batch:query"])["Authorization"].split()[1]
    code, out, err = await cli("batch", "list", BATCHSYNC_TOKEN=narrow)
    assert code == 4 and "HTTP 403 无权限执行此操作" in err
    assert "missing_permission: the token lacks the permission integration:batch:list" in err
    code, _, err = await cli("batch", "list", "--token", narrow)
    assert code == 2 and "--token is refused" in err


@pytest.mark.slow
async def test_follow_shows_the_publishing_phase_of_an_overwrite(world) -> None:
    """A real overwrite: the run says `publishing` before its swap, the follower shows it, the events carry it."""
    cli, batch = world["cli"], world["batch"]
    code, out, err = await cli("sync", str(batch), "--follow", "--output", "json",
                               BATCHSYNC_KAFKA_BOOTSTRAP=world["broker"].bootstrap)
    assert code == 0, out + err
    run = json.loads(out)
    assert (run["status"], run["recordsWritten"]) == ("SUCCESS", ROWS)
    assert "publishing" in err and "rows/s" in err
    assert await table_fingerprint(world["target_dsn"], world["target"]) == \
        await table_fingerprint(world["source_dsn"], world["source"])

    events = await run_events(world["broker"].bootstrap, world["stack"].settings.topics.events, run["runId"])
    phases = [e.get("phase") for e in events if e["eventType"] == "BatchSyncProgress"]
    assert phases and phases[-1] == "publishing" and set(phases[:-1]) <= {"writing"}, phases
    publishing = next(e for e in events if e.get("phase") == "publishing")
    assert publishing["recordsWritten"] == ROWS and publishing["totalEstimate"] == ROWS
    assert events[-1]["eventType"] == "BatchSyncCompleted"


async def run_events(bootstrap: str, topic: str, run_id: str, within: float = 15) -> list[dict[str, Any]]:
    """The run's lifecycle events from the start of `topic`, up to its Completed event."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                fetch_max_wait_ms=20, metadata_max_age_ms=500)
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(within):
            while not found or found[-1]["eventType"] != "BatchSyncCompleted":
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    found.extend(e for e in (json.loads(r.value) for r in records) if e.get("runId") == run_id)
    finally:
        await stop_consumer(consumer)
    return found


@pytest.mark.slow
async def test_run_show_tells_the_publishing_phase_while_the_swap_waits(world) -> None:
    """A reader holding a lock on the target keeps an overwrite in its swap: the run detail says `publishing`
    with every row written (not a silent 100 %); once the lock goes the run succeeds and the phase is gone."""
    cli, batch = world["cli"], world["batch"]
    holder = await asyncpg.connect(world["target_dsn"])
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute(f'LOCK TABLE "{world["target"]}" IN ROW EXCLUSIVE MODE')
        code, out, err = await cli("sync", str(batch), "--wait", "0", "--output", "json")
        assert code == 3, out + err
        run_id = json.loads(out)["runId"]
        async with asyncio.timeout(60):
            while (run := await cli.json("run", "show", run_id, "--batch", str(batch)))["phase"] != "publishing":
                assert run["status"] in ("PENDING", "RUNNING"), run
                await asyncio.sleep(0.2)
        assert (run["status"], run["recordsWritten"]) == ("RUNNING", ROWS)
        code, out, err = await cli("run", "show", run_id, "--batch", str(batch))
        assert code == 0 and "publishing" in out, out + err
        await transaction.rollback()
    finally:
        await holder.close()
    async with asyncio.timeout(60):
        while (run := await cli.json("run", "show", run_id, "--batch", str(batch)))["status"] == "RUNNING":
            await asyncio.sleep(0.2)
    assert (run["status"], run["phase"]) == ("SUCCESS", None)
