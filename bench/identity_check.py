"""What the consume loop's topic-identity check costs (docs/brokers.md, "A recreated topic"): how long a loop stops
to read its marks back, on each test broker.

    .venv/bin/python -m bench.identity_check                 # Tansu and noida-db
    .venv/bin/python -m bench.identity_check --kind noida

A solo `PerBatch` loop (fetch wait 50 ms, as the projector) catches up on `--records` records over 3 partitions,
then takes a trickle of one record every 50 ms, checking every 0.2 s instead of every 5 s. It prints the time of
each read-back and that every record was handled exactly once.
"""

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumers import loop as loop_module
from consumers.loop import Batch, ConsumeLoop, PerBatch, Subscription
from producers.topics import ensure_topics
from service.config import Settings
from service.positions import Mark, Position
from tests.support.fault_brokers import restartable

PARTITIONS = 3
TRICKLE = 120


async def measure(kind: str, records: int) -> str:
    loop_module.IDENTITY_CHECK_SECONDS = 0.2
    with restartable(kind) as broker:
        settings = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:6]}",
                            events_partitions=PARTITIONS, partition_assignment="all")
        await ensure_topics(settings)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
        await producer.start()
        stored: dict[int, Position] = {}
        handled: list[tuple[int, int]] = []

        async def apply(batch: Batch) -> None:
            handled.extend((r.partition, r.offset) for rs in batch.records.values() for r in rs)
            stored.update(batch.positions())

        async def load() -> Mapping[int, Position]:
            return dict(stored)

        try:
            for n in range(records):
                await producer.send(settings.topics.events, b"x" * 300, partition=n % PARTITIONS)
            await producer.flush()
            subscription = Subscription(name="bench", topic=settings.topics.events, group_id="bench",
                                        fetch_max_wait_ms=50, max_records=500)
            loop = ConsumeLoop(settings, subscription, PerBatch(apply, load))
            took: list[float] = []
            read_back = loop._read_back

            async def timed(consumer: AIOKafkaConsumer, marks: Mapping[TopicPartition, Mark],
                            found: dict[TopicPartition, Mark | None]) -> None:
                started = time.perf_counter()
                await read_back(consumer, marks, found)
                took.append(time.perf_counter() - started)

            loop._read_back = timed  # type: ignore[method-assign]
            task = asyncio.create_task(loop.run())
            try:
                while len(handled) < records:
                    await asyncio.sleep(0.01)
                for n in range(TRICKLE):
                    await producer.send(settings.topics.events, b"y" * 300, partition=n % PARTITIONS)
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        finally:
            await producer.stop()
    ms = sorted(t * 1000 for t in took)
    once = len(handled) == len(set(handled)) == records + TRICKLE
    return (f"{kind}: {len(ms)} checks, p50 {statistics.median(ms):.1f} ms, p90 {ms[int(len(ms) * 0.9)]:.1f} ms, "
            f"max {ms[-1]:.1f} ms; {len(handled)} records handled, each once: {once}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["tansu", "noida"], action="append")
    parser.add_argument("--records", type=int, default=3000)
    args = parser.parse_args()
    for kind in args.kind or ["tansu", "noida"]:
        print(asyncio.run(measure(kind, args.records)))


if __name__ == "__main__":
    main()
