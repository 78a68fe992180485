"""The small-sync round trip over real HTTP (API and worker as separate processes), with its breakdown.

    .venv/bin/python -m bench.round_trip                     # Tansu and noida-db, 40 syncs each
    .venv/bin/python -m bench.round_trip --quick             # Tansu only, 15 syncs
    .venv/bin/python -m bench.round_trip --broker noida --syncs 100

Each sync is `POST /integration/batch/{id}/sync` of a 100-row overwrite batch (PostgreSQL → PostgreSQL). The
breakdown comes from the timestamps the state store keeps anyway (every `now()` is its transaction's start),
so nothing is instrumented: the client's send and receive times, `runs.created_at` (the API's admission),
`request_ledger.first_seen_at` (the worker's admission), `runs.started_at` (the claim), the reply's outbox row:
its `created_at` (the completion's transaction) and `published_at` (set once the worker's direct send of the
reply was acknowledged, or at the relay's claim). The same run measures two references on this machine at
this moment: the engine alone, in this process, on the same batch, and one durable state-store transaction.
"""

import argparse
import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass

import asyncpg
import httpx

from bench.http_stack import HttpStack, http_stack
from bench.pg_to_pg import _Quiet
from schemas.api import SourceSpec, TargetSpec, WriteMode
from service.connectors.registry import REGISTRY
from service.db.migrate import upgrade
from service.sync.engine import execute
from service.sync.model import Endpoint, RunSpec
from tests.support.databases import fresh_database

DDL = """CREATE TABLE small (id bigint PRIMARY KEY, qty integer, price numeric(12,2), label text,
                             created_at timestamptz, attrs jsonb)"""
FILL = """INSERT INTO small SELECT g, g % 1000, g / 100.0, 'item-' || md5(g::text),
              '2024-01-01'::timestamptz + g * interval '1 second', jsonb_build_object('g', g)
              FROM generate_series(1, 100) g"""

SEGMENTS = (
    ("HTTP in, auth, until the API's transaction", "sent", "created"),
    ("API tx, publish, hop 1, worker fetch", "created", "admitted"),
    ("admission to claim (0: one transaction)", "admitted", "claimed"),
    ("admission/claim tx, spec, engine", "claimed", "completing"),
    ("completion tx, reply sent (or relay claim)", "completing", "publishing"),
    ("hop 2, HTTP out", "publishing", "received"),
)

BREAKDOWN_SQL = """
SELECT extract(epoch FROM r.created_at) AS created, extract(epoch FROM l.first_seen_at) AS admitted,
       extract(epoch FROM r.started_at) AS claimed,
       (SELECT extract(epoch FROM min(o.created_at)) FROM outbox o
         WHERE o.key = convert_to(r.correlation_id, 'UTF8')) AS completing,
       (SELECT extract(epoch FROM min(o.published_at)) FROM outbox o
         WHERE o.key = convert_to(r.correlation_id, 'UTF8')) AS publishing
  FROM runs r JOIN request_ledger l ON l.request_id = r.request_id
 WHERE r.id = $1"""


@dataclass
class Sample:
    total_ms: float
    points: dict[str, float]


async def _setup(source_dsn: str, target_dsn: str) -> None:
    for dsn, fill in ((source_dsn, True), (target_dsn, False)):
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(DDL)
            if fill:
                await conn.execute(FILL)
                await conn.execute("VACUUM ANALYZE small")
        finally:
            await conn.close()


def _batch(client: httpx.Client, source_dsn: str, target_dsn: str) -> int:
    def post(path: str, body: dict) -> dict:
        response = client.post(path, json=body)
        response.raise_for_status()
        return response.json()["data"]

    tag = uuid.uuid4().hex[:8]
    source = post("/integration/connection", {"name": f"src-{tag}", "type": "postgresql", "url": source_dsn})
    target = post("/integration/connection", {"name": f"tgt-{tag}", "type": "postgresql", "url": target_dsn})
    return post("/integration/batch", {
        "name": f"small-{tag}", "sourceConnectionId": source["id"], "source": {"table": "small"},
        "targetConnectionId": target["id"], "target": {"table": "small", "mode": "overwrite"},
    })["id"]


async def _breakdown(state_dsn: str, run_id: str) -> dict[str, float]:
    conn = await asyncpg.connect(state_dsn)
    try:
        row = await conn.fetchrow(BREAKDOWN_SQL, uuid.UUID(run_id))
    finally:
        await conn.close()
    assert row is not None
    return {k: float(v) for k, v in row.items() if v is not None}


def _syncs(stack: HttpStack, state_dsn: str, source_dsn: str, target_dsn: str, count: int) -> list[Sample]:
    samples = []
    with httpx.Client(base_url=stack.base_url, headers=stack.headers, timeout=60) as client:
        batch_id = _batch(client, source_dsn, target_dsn)
        for number in range(count + 2):  # two warm-ups: connections parked, caches filled
            sent = time.time()
            started = time.perf_counter()
            response = client.post(f"/integration/batch/{batch_id}/sync?wait=30")
            total_ms = (time.perf_counter() - started) * 1000
            received = time.time()
            if response.status_code != 200:
                raise RuntimeError(f"sync failed: {response.text}")
            if number < 2:
                continue
            points = asyncio.run(_breakdown(state_dsn, response.json()["data"]["runId"]))
            samples.append(Sample(total_ms, {"sent": sent, "received": received, **points}))
    return samples


async def _engine_alone(source_dsn: str, target_dsn: str, count: int) -> list[float]:
    """The same 100-row overwrite through the engine in this process: the floor of any round trip."""
    timings = []
    for _ in range(count + 2):
        run_id = uuid.uuid4()
        spec = RunSpec(
            run_id=run_id, checkpoint_key=run_id, batch_id=0,
            source_endpoint=Endpoint("postgresql", url=source_dsn), source=SourceSpec(table="small"),
            target_endpoint=Endpoint("postgresql", url=target_dsn),
            target=TargetSpec(table="small", mode=WriteMode.OVERWRITE), mapping=None, chunk_size=50_000,
        )
        started = time.perf_counter()
        await execute(spec, _Quiet(), connectors=REGISTRY, connect_timeout=5)
        timings.append((time.perf_counter() - started) * 1000)
    return timings[2:]


async def _durable_tx(state_dsn: str, count: int) -> list[float]:
    """One durable one-row transaction on the state store (BEGIN, INSERT, COMMIT with the WAL flush)."""
    conn = await asyncpg.connect(state_dsn)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_probe (id serial, at timestamptz DEFAULT now())")
        timings = []
        for _ in range(count):
            started = time.perf_counter()
            async with conn.transaction():
                await conn.execute("INSERT INTO bench_probe DEFAULT VALUES")
            timings.append((time.perf_counter() - started) * 1000)
        await conn.execute("DROP TABLE bench_probe")
        return timings
    finally:
        await conn.close()


async def _references(source_dsn: str, state_dsn: str, target_dsn: str, count: int) -> tuple[list[float], list[float]]:
    """Both references in one event loop (the engine parks its connections on the loop that opened them)."""
    return await _engine_alone(source_dsn, target_dsn, count), await _durable_tx(state_dsn, count)


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[q - 1] if len(values) >= 2 else values[0]


def report(broker: str, samples: list[Sample], engine: list[float], tx: list[float]) -> None:
    totals = [s.total_ms for s in samples]
    engine_p50 = statistics.median(engine)
    print(f"\n{broker}: {len(samples)} syncs of a 100-row overwrite over HTTP (API and worker processes)")
    print(f"  round trip          p50 {statistics.median(totals):6.1f} ms   p95 {_p(totals, 19):6.1f} ms   "
          f"max {max(totals):6.1f} ms")
    print(f"  reference: engine alone, same batch, in-process  p50 {engine_p50:6.1f} ms; "
          f"one durable state-store tx p50 {statistics.median(tx):5.2f} ms")
    print(f"  round trip p50 / engine p50: {statistics.median(totals) / engine_p50:.2f}×")
    print(f"  {'segment (median of each)':<44}{'ms':>7}")
    for name, start, end in SEGMENTS:
        values = [(s.points[end] - s.points[start]) * 1000 for s in samples if start in s.points and end in s.points]
        if values:
            print(f"  {name:<44}{statistics.median(values):7.1f}")


def run(brokers: list[str], syncs: int, fetch_wait_ms: int = 10) -> None:
    with fresh_database("bs_rt_src") as source_dsn, fresh_database("bs_rt_dst") as target_dsn, \
            fresh_database("bs_rt_state") as state_dsn:
        asyncio.run(_setup(source_dsn, target_dsn))
        upgrade(state_dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
        engine, tx = asyncio.run(_references(source_dsn, state_dsn, target_dsn, syncs))
        for broker in brokers:
            waits = {"reply_fetch_max_wait_ms": fetch_wait_ms, "request_fetch_max_wait_ms": fetch_wait_ms}
            with http_stack(state_dsn, broker, **waits) as stack:
                samples = _syncs(stack, state_dsn, source_dsn, target_dsn, syncs)
            report(broker, samples, engine, tx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["tansu", "noida", "both"], default="both")
    parser.add_argument("--syncs", type=int, default=40)
    parser.add_argument("--fetch-wait-ms", type=int, default=10,
                        help="fetch_max_wait_ms of the request and reply consumers (docs/brokers.md)")
    parser.add_argument("--quick", action="store_true", help="Tansu only, 15 syncs")
    args = parser.parse_args()
    if args.quick:
        args.broker, args.syncs = "tansu", 15
    run(["tansu", "noida"] if args.broker == "both" else [args.broker], args.syncs, args.fetch_wait_ms)


if __name__ == "__main__":
    main()
