"""One trace from the HTTP request to the worker's chunk spans, carried across the broker by the W3C
`traceparent` header of the request, the events and the reply (docs/spec.md §8), on the real stack
(API, worker and projector on real PostgreSQL and the real broker; in one process so an in-memory
exporter sees every span, while the context still crosses only through Kafka headers: the worker's
consume loop runs in a task started before the request)."""

import asyncio
import secrets

import pytest
from aiokafka import AIOKafkaConsumer

from producers.clients import stop_consumer
from service.security.event_signing import EventKeys
from tests.support.builders import create_empty_like_orders, create_orders, unique
from tests.support.stack import create_batch, create_connection, running_stack, stack_settings
from tests.support.traces import installed, recording

pytestmark = pytest.mark.slow


async def events_of(settings, run_id: str) -> list:
    """Every record of the run on the events topic, read from the beginning."""
    consumer = AIOKafkaConsumer(settings.topics.events, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", fetch_max_wait_ms=20)
    await consumer.start()
    found = []
    try:
        async with asyncio.timeout(20):
            while not any(b'"BatchSyncCompleted"' in r.value for r in found):
                batch = await consumer.getmany(timeout_ms=500)
                found += [r for records in batch.values() for r in records if run_id.encode() in r.value]
    finally:
        await stop_consumer(consumer)
    return found


def header(record, name: str) -> str | None:
    return next((value.decode() for key, value in record.headers if key == name), None)


async def test_without_a_traceparent_nothing_is_recorded_and_no_header_is_invented(state_dsn, broker, source_dsn,
                                                                                  target_dsn) -> None:
    """Tracing off (no provider, the default without OTEL_EXPORTER_OTLP_ENDPOINT) and no caller context:
    the records carry no traceparent at all. First in the module: `recording()` installs a provider for good."""
    if installed():
        pytest.skip("a tracer provider is installed in this process already")
    settings = stack_settings(state_dsn, broker.bootstrap)
    table = unique("orders")
    await create_orders(source_dsn, table, 10)
    await create_empty_like_orders(target_dsn, table)
    async with running_stack(settings) as stack:
        source = await create_connection(stack, unique("src"), source_dsn)
        target = await create_connection(stack, unique("tgt"), target_dsn)
        batch_id = await create_batch(stack, unique("batch"), source, target, {"table": table},
                                      {"table": table, "mode": "append"})
        response = await stack.client.post(f"/integration/batch/{batch_id}/sync", headers=stack.headers())
        records = await events_of(settings, response.json()["data"]["runId"])
    assert records and all(header(r, "traceparent") is None for r in records)


async def test_one_trace_from_the_http_request_to_the_chunks_in_the_worker(state_dsn, broker, source_dsn,
                                                                          target_dsn) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    settings = stack_settings(state_dsn, broker.bootstrap)
    table = unique("orders")
    await create_orders(source_dsn, table, 2500)
    await create_empty_like_orders(target_dsn, table)
    with recording() as exporter:
        async with running_stack(settings) as stack:
            source = await create_connection(stack, unique("src"), source_dsn)
            target = await create_connection(stack, unique("tgt"), target_dsn)
            batch_id = await create_batch(stack, unique("batch"), source, target, {"table": table},
                                          {"table": table, "mode": "append"}, chunkSize=1000)
            response = await stack.client.post(
                f"/integration/batch/{batch_id}/sync",
                headers={**stack.headers(), "traceparent": f"00-{trace_id}-{caller_span}-01"})
            assert response.status_code == 200, response.text
            run_id = response.json()["data"]["runId"]
            records = await events_of(settings, run_id)
            async with asyncio.timeout(5):
                while not any(s.name == "run" for s in exporter.get_finished_spans()):
                    await asyncio.sleep(0.05)
        spans = [s for s in exporter.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id]

    by_name: dict[str, list] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    topics = settings.topics
    (http,) = by_name["POST /integration/batch/{id}/sync"]
    (send,) = by_name[f"send {topics.requested}"]
    (consume,) = by_name[f"process {topics.requested}"]
    (run,) = by_name["run"]
    chunks = by_name["chunk"]
    (reply,) = by_name[f"process {topics.replies}"]

    by_id = {span.context.span_id: span for span in spans}

    def parent(span) -> int | None:
        return span.parent.span_id if span.parent else None

    def under(span, ancestor) -> bool:
        """`ancestor` is on the path to the root (FastAPI may add its own endpoint spans in between)."""
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            if span is ancestor:
                return True
        return False

    assert parent(http) == int(caller_span, 16)  # the caller's traceparent is continued
    assert under(send, http)
    assert parent(consume) == send.context.span_id  # across the broker, in the request's headers
    assert parent(run) == consume.context.span_id
    assert len(chunks) == 3 and {parent(c) for c in chunks} == {run.context.span_id}
    assert parent(reply) == run.context.span_id  # the reply's headers carry the run's context back
    relayed = by_name[f"send {topics.events}"]  # the outbox relay's publishes, under the run
    assert relayed and all(parent(span) == run.context.span_id for span in relayed)
    assert run.attributes["batchsync.run_id"] == run_id

    keys = EventKeys.from_settings(settings)
    assert {r.value.split(b'"eventType":"')[1].split(b'"')[0] for r in records} >= {b"BatchSyncStarted",
                                                                                    b"BatchSyncCompleted"}
    for record in records:  # each event continues the trace, and the header does not disturb its signature
        assert header(record, "traceparent").split("-")[1] == trace_id
        assert keys.refusal(record) is None
