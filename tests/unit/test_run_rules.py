"""Pure rules of runs: the state machine, run identity, config hashing, request parsing."""

import json

import pytest

from consumers.parsing import InvalidRequest, parse_request
from schemas.status import ACTIVE, TERMINAL, BatchStatus, RunStatus, sql_list
from service.runs.snapshot import config_hash, run_id_for
from service.runs.status import IllegalTransition, check_transition, may_become, status_for_error


def test_terminal_runs_never_move_again() -> None:
    for terminal in ("SUCCESS", "FAILED", "CANCELLED"):
        for target in RunStatus:
            with pytest.raises(IllegalTransition):
                check_transition(terminal, target)


def test_pending_cannot_succeed_without_running() -> None:
    with pytest.raises(IllegalTransition):
        check_transition("PENDING", RunStatus.SUCCESS)
    check_transition("PENDING", RunStatus.RUNNING)
    check_transition("RUNNING", RunStatus.SUCCESS)


def test_status_for_error_code() -> None:
    assert status_for_error(None) is RunStatus.SUCCESS
    assert status_for_error("CANCELLED") is RunStatus.CANCELLED
    assert status_for_error("SOURCE_TIMEOUT") is RunStatus.FAILED


def test_run_id_is_a_stable_function_of_the_request_id() -> None:
    assert run_id_for("r-1") == run_id_for("r-1")
    assert run_id_for("r-1") != run_id_for("r-2")


def test_config_hash_ignores_key_order_and_sees_every_change() -> None:
    a = {"source": {"table": "t"}, "target": {"table": "u", "mode": "append"}}
    b = {"target": {"mode": "append", "table": "u"}, "source": {"table": "t"}}
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash({**a, "target": {"table": "u", "mode": "overwrite"}})


def _request(**fields: object) -> bytes:
    body = {"eventType": "BatchSyncRequested", "correlationId": "c", "batchId": 1, "producer": "p",
            "requestedBy": "u", **fields}
    return json.dumps(body).encode()


def test_parse_request_defaults_request_id_to_event_id() -> None:
    event = parse_request(_request(), 10_000)
    assert event.request_id == str(event.event_id)


@pytest.mark.parametrize("value, problem", [
    (None, "empty"),
    (b"\xff\xfe", "not JSON"),
    (b"[1,2]", "eventType"),
    (json.dumps({"eventType": "BatchSyncCompleted"}).encode(), "eventType"),
    (_request(batchId="abc"), "batchId"),
    (_request(trigger="cron"), "trigger"),
    (b"x" * 2000, "exceeds"),
])
def test_parse_request_names_the_problem(value: bytes | None, problem: str) -> None:
    with pytest.raises(InvalidRequest, match=problem):
        parse_request(value, 1000)


@pytest.mark.parametrize("value, problem", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (_request(batchId=3_000_000_000), "batchId"),
    (_request(batchId=0), "batchId"),
    (_request(requestedBy="a\x00b"), "NUL"),
    (_request(replyTo="bad topic!"), "replyTo"),
])
def test_requests_the_state_store_or_the_broker_would_refuse_are_invalid(value: bytes, problem: str) -> None:
    with pytest.raises(InvalidRequest, match=problem):
        parse_request(value, 10_000_000)


def test_the_status_sets_and_their_sql_come_from_the_one_catalog() -> None:
    assert ACTIVE | TERMINAL == set(RunStatus) and not ACTIVE & TERMINAL
    assert may_become(RunStatus.RUNNING) == ACTIVE, "a claim takes only an active run"
    assert sql_list(ACTIVE) == "'PENDING','RUNNING'", "the partial index's predicate, as migration 0001 spells it"


def test_a_batch_shows_its_latest_claimed_run_and_never_run_before() -> None:
    assert {BatchStatus.of_run(s) for s in RunStatus if s is not RunStatus.PENDING} == set(BatchStatus) - {
        BatchStatus.NEVER_RUN}
    with pytest.raises(ValueError):
        BatchStatus.of_run(RunStatus.PENDING)
