"""The floor of a small sync's round trip on this machine: the same shape with no sync in it.

    .venv/bin/python -m bench.floor                        # Tansu and noida-db, 100 round trips each
    .venv/bin/python -m bench.floor --broker tansu --fetch-wait-ms 2

An API process (FastAPI under uvicorn, as `service.bootstrap.run_api`) takes `POST /sync`, commits one durable
row, publishes a request and awaits the reply; a worker process (aiokafka, as `consumers/loop.py`) reads the
request, commits one durable admission row and one durable completion row, and publishes the reply. That is
every hop and every durable transaction batchsync's round trip must make (SPEC §4: admission and outcome
durable before they are acknowledged), with no ORM, no engine, no events, no auth. Whatever this prints is
what the real round trip cannot go under on this machine, whatever the code does between the hops; the engine
alone (printed by `bench.round_trip`) adds to it.
"""

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx

from bench.http_stack import api_up
from tests.support.brokers import free_port, noida, tansu
from tests.support.databases import fresh_database
from tests.support.sql import execute

TABLE = "CREATE TABLE IF NOT EXISTS floor_rows (id uuid PRIMARY KEY, kind text, at timestamptz DEFAULT now())"


async def _durable(pool: asyncpg.Pool, kind: str, row_id: uuid.UUID) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO floor_rows (id, kind) VALUES ($1, $2)", row_id, kind)


async def worker(bootstrap: str, dsn: str, requests: str, replies: str, wait_ms: int) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=2)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(requests, bootstrap_servers=bootstrap, group_id=f"floor-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=wait_ms, session_timeout_ms=6000, heartbeat_interval_ms=500)
    await producer.start()
    await consumer.start()
    async for record in consumer:
        request = json.loads(record.value)
        await _durable(pool, "admitted", uuid.uuid4())
        await _durable(pool, "completed", uuid.uuid4())
        await producer.send_and_wait(replies, json.dumps(request).encode(), key=record.key)
        await consumer.commit()


def api(bootstrap: str, dsn: str, requests: str, replies: str, wait_ms: int, port: int) -> None:
    import uvicorn
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from fastapi import FastAPI

    waiting: dict[str, asyncio.Future[bytes]] = {}
    clients: dict[str, object] = {}

    async def listen(consumer: AIOKafkaConsumer) -> None:
        async for record in consumer:
            future = waiting.pop(record.key.decode(), None)
            if future is not None and not future.done():
                future.set_result(record.value)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        clients["pool"] = await asyncpg.create_pool(dsn, min_size=2, max_size=2)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        consumer = AIOKafkaConsumer(replies, bootstrap_servers=bootstrap, group_id=f"floor-{uuid.uuid4().hex[:6]}",
                                    auto_offset_reset="earliest", fetch_max_wait_ms=wait_ms,
                                    session_timeout_ms=6000, heartbeat_interval_ms=500)
        await producer.start()
        await consumer.start()
        clients.update(producer=producer, listener=asyncio.create_task(listen(consumer)))
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {}

    @app.post("/noop")
    async def noop() -> dict[str, str]:
        return {}

    @app.post("/sync")
    async def sync() -> dict[str, str]:
        correlation = str(uuid.uuid4())
        await _durable(clients["pool"], "requested", uuid.uuid4())  # type: ignore[arg-type]
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        waiting[correlation] = future
        await clients["producer"].send_and_wait(  # type: ignore[attr-defined]
            requests, json.dumps({"correlationId": correlation}).encode(), key=correlation.encode())
        reply = await asyncio.wait_for(future, 30)
        return {"reply": reply.decode()}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.floor", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _timed(client: httpx.Client, path: str, count: int) -> list[float]:
    timings = []
    for number in range(count + 5):  # warm-ups: the groups' first joins, connections, caches
        started = time.perf_counter()
        client.post(path).raise_for_status()
        if number >= 5:
            timings.append((time.perf_counter() - started) * 1000)
    return timings


async def _durable_alone(dsn: str, count: int) -> list[float]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        timings = []
        for _ in range(count):
            started = time.perf_counter()
            await _durable(pool, "probe", uuid.uuid4())
            timings.append((time.perf_counter() - started) * 1000)
        return timings
    finally:
        await pool.close()


def measure(kind: str, dsn: str, count: int, wait_ms: int) -> dict[str, list[float]]:
    with (tansu() if kind == "tansu" else noida()) as broker:
        tag = uuid.uuid4().hex[:8]
        requests, replies, port = f"floor.{tag}.requests", f"floor.{tag}.replies", free_port()
        processes = [_spawn("worker", broker.bootstrap, dsn, requests, replies, str(wait_ms)),
                     _spawn("api", broker.bootstrap, dsn, requests, replies, str(wait_ms), str(port))]
        try:
            base_url = f"http://127.0.0.1:{port}"
            if not api_up(base_url, processes[1], within=30):
                raise TimeoutError("the floor API did not come up")
            with httpx.Client(base_url=base_url, timeout=60) as client:
                return {"round trip": _timed(client, "/sync", count),
                        "HTTP alone (no-op route)": _timed(client, "/noop", count),
                        "one durable transaction": asyncio.run(_durable_alone(dsn, count))}
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(10)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        bootstrap, dsn, requests, replies, wait_ms = sys.argv[2:7]
        asyncio.run(worker(bootstrap, dsn, requests, replies, int(wait_ms)))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "api":
        bootstrap, dsn, requests, replies, wait_ms, port = sys.argv[2:8]
        api(bootstrap, dsn, requests, replies, int(wait_ms), int(port))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["tansu", "noida", "both"], default="both")
    parser.add_argument("--syncs", type=int, default=100)
    parser.add_argument("--fetch-wait-ms", type=int, default=10,
                        help="fetch_max_wait_ms of both consumers (bench.round_trip uses 10)")
    args = parser.parse_args()
    with fresh_database("bs_floor") as dsn:
        asyncio.run(execute(dsn, TABLE))
        for kind in (["tansu", "noida"] if args.broker == "both" else [args.broker]):
            print(f"{kind}: {args.syncs} round trips of HTTP + 3 durable transactions + 2 broker hops, nothing else "
                  f"(fetch wait {args.fetch_wait_ms} ms)")
            for name, timings in measure(kind, dsn, args.syncs, args.fetch_wait_ms).items():
                p95 = statistics.quantiles(timings, n=20, method="inclusive")[18]
                print(f"  {name:<28} p50 {statistics.median(timings):6.2f} ms   p95 {p95:6.2f} ms")


if __name__ == "__main__":
    main()
