"""`stop_consumer` finishes what aiokafka's `stop()` leaves undone when a pending fetch's cancel escapes it
(service/connectors/kafka/client.py): the fetch routine is cancelled and the client closed, and only a cancel
of the caller itself is raised. A fake stands in for the consumer: the escape is a race inside aiokafka."""

import asyncio

import pytest

from service.connectors.kafka.client import stop_consumer


class FakeClient:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class FakeFetcher:
    def __init__(self) -> None:
        self._fetch_task = asyncio.create_task(asyncio.sleep(3600))


class FakeConsumer:
    """`stop()` as aiokafka 0.14's ends when a pending fetch's cancel escapes the fetcher's close."""

    def __init__(self, stop: "asyncio.Future[None] | None" = None) -> None:
        self._fetcher = FakeFetcher()
        self._client = FakeClient()
        self._stop = stop

    async def stop(self) -> None:
        if self._stop is not None:
            await self._stop  # held here until the caller is cancelled
        pending = asyncio.create_task(asyncio.sleep(3600))
        await asyncio.sleep(0)
        pending.cancel()
        await pending  # raises CancelledError: not ours, the pending fetch's


async def test_a_cancel_escaping_stop_is_not_raised_and_the_client_is_closed() -> None:
    consumer = FakeConsumer()
    await stop_consumer(consumer)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert consumer._fetcher._fetch_task.cancelled()
    assert consumer._client.closed


async def test_a_cancelled_caller_is_cancelled_and_the_client_is_still_closed() -> None:
    held: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    consumer = FakeConsumer(stop=held)
    task = asyncio.create_task(stop_consumer(consumer))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert consumer._fetcher._fetch_task.cancelled()
    assert consumer._client.closed
