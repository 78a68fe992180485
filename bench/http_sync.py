"""The through-HTTP half of bench/pg_to_pg.py: real API and worker processes, real sockets."""

import asyncio
import statistics
import time

import httpx

from bench.http_stack import HttpStack, http_stack
from bench.pg_to_pg import SOURCE, TARGET, Line, change_every_source_row, make_dataset, time_copy_pipe, truncate_target
from service.db.migrate import upgrade
from tests.support.databases import fresh_database


def _post(client: httpx.Client, path: str, body: dict) -> dict:
    response = client.post(path, json=body)
    response.raise_for_status()
    return response.json()["data"]


def _batch(stack: HttpStack, client: httpx.Client, source_dsn: str, target_dsn: str, table: str, target_table: str,
           mode: str, chunk_size: int) -> int:
    tag = f"{mode}-{table}-{time.monotonic_ns()}"
    source = _post(client, "/integration/connection", {"name": f"src-{tag}", "type": "postgresql", "url": source_dsn})
    target = _post(client, "/integration/connection", {"name": f"tgt-{tag}", "type": "postgresql", "url": target_dsn})
    target_spec: dict = {"table": target_table, "mode": mode}
    if mode == "upsert":
        target_spec["keyColumns"] = ["id"]
    return _post(client, "/integration/batch", {
        "name": tag, "sourceConnectionId": source["id"], "source": {"table": table},
        "targetConnectionId": target["id"], "target": target_spec, "chunkSize": chunk_size,
    })["id"]


def _sync(client: httpx.Client, batch_id: int) -> tuple[float, dict]:
    started = time.perf_counter()
    response = client.post(f"/integration/batch/{batch_id}/sync?wait=3600")
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"sync failed: {response.text}")
    return elapsed, response.json()["data"]


def _small_batch(source_dsn: str, target_dsn: str) -> None:
    import asyncpg

    async def setup() -> None:
        for dsn, like in ((source_dsn, SOURCE), (target_dsn, TARGET)):
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(f"CREATE TABLE small (LIKE {like} INCLUDING ALL)")
                if dsn == source_dsn:
                    await conn.execute(f"INSERT INTO small SELECT * FROM {SOURCE} ORDER BY id LIMIT 100")
            finally:
                await conn.close()

    asyncio.run(setup())


def run_http(source_dsn: str, target_dsn: str, rows: int, chunk_size: int, repeat: int, small_syncs: int) -> list[Line]:
    asyncio.run(make_dataset(source_dsn, target_dsn, rows))
    _small_batch(source_dsn, target_dsn)
    lines: list[Line] = []

    def report(name: str, seconds: float, extra: str = "") -> None:
        lines.append(Line(name, seconds, rows))
        print(f"  {name:<40} {seconds:7.2f} s {extra}", flush=True)

    pipe = []
    for _ in range(repeat):
        asyncio.run(truncate_target(target_dsn))
        pipe.append(time_copy_pipe(source_dsn, target_dsn))
    report("psql binary COPY pipe", min(pipe))

    with fresh_database("bs_bench_state") as state_dsn:
        upgrade(state_dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
        with http_stack(state_dsn) as stack, httpx.Client(base_url=stack.base_url, headers=stack.headers,
                                                          timeout=3600) as client:
            append_id = _batch(stack, client, source_dsn, target_dsn, SOURCE, TARGET, "append", chunk_size)
            upsert_id = _batch(stack, client, source_dsn, target_dsn, SOURCE, TARGET, "upsert", chunk_size)
            small_id = _batch(stack, client, source_dsn, target_dsn, "small", "small", "overwrite", chunk_size)

            timings = []
            for _ in range(repeat):
                asyncio.run(truncate_target(target_dsn))
                seconds, data = _sync(client, append_id)
                assert data["recordsSynced"] == rows, data
                timings.append(seconds)
            report("HTTP sync append", min(timings), f"worker peak RSS {stack.worker_peak_rss_mb():.0f} MB")

            asyncio.run(truncate_target(target_dsn))
            report("HTTP sync upsert, empty target", _sync(client, upsert_id)[0])
            report("HTTP sync upsert, rows exist, same", _sync(client, upsert_id)[0])
            asyncio.run(change_every_source_row(source_dsn))
            report("HTTP sync upsert, rows exist, changed", _sync(client, upsert_id)[0],
                   f"worker peak RSS {stack.worker_peak_rss_mb():.0f} MB")

            _sync(client, small_id)
            round_trips = [_sync(client, small_id)[0] * 1000 for _ in range(small_syncs)]
            quantiles = statistics.quantiles(round_trips, n=20, method="inclusive")
            print(f"  {small_syncs} syncs of a 100-row batch: p50 {statistics.median(round_trips):.1f} ms, "
                  f"p95 {quantiles[18]:.1f} ms, max {max(round_trips):.1f} ms", flush=True)
            print(f"  worker peak RSS over the whole run: {stack.worker_peak_rss_mb():.0f} MB")
    return lines
