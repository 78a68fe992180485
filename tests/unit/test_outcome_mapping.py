"""Every run-request outcome maps to docs/spec.md's status, message and data."""

import uuid
from datetime import UTC, datetime

import pytest

from schemas.events import BatchSyncCompleted, ErrorCode
from service.api.replies import Reply, cancel_reply, sync_reply
from service.runs.outcomes import (
    Accepted,
    AlreadyRunning,
    BatchNotFound,
    CancelRequested,
    Finished,
    NothingToCancel,
    NotRetryable,
    Unavailable,
)

RUN = uuid.UUID("00000000-0000-0000-0000-00000000abcd")


def completed(success: bool, message: str) -> BatchSyncCompleted:
    return BatchSyncCompleted(
        correlation_id="c", batch_id=7, run_id=RUN, producer="test", success=success, message=message,
        sync_time=datetime(2026, 1, 9, 10, 0, tzinfo=UTC), records_synced=1000 if success else 0,
        error_code=None if success else ErrorCode.SOURCE_TIMEOUT,
    )


def test_finished_success_is_the_seed_shape() -> None:
    reply = sync_reply(Finished(completed(True, "同步成功")))
    assert reply == Reply(200, "操作成功", {
        "success": True, "batchId": 7, "message": "同步成功", "syncTime": "2026-01-09T10:00:00.000Z",
        "recordsSynced": 1000, "runId": str(RUN),
    })


def test_finished_failure_is_400_with_the_reason() -> None:
    assert sync_reply(Finished(completed(False, "连接超时"))) == Reply(400, "同步失败：连接超时", None)


@pytest.mark.parametrize(("outcome", "expected"), [
    (Accepted(7, RUN), Reply(202, "同步已在后台执行", {"batchId": 7, "runId": str(RUN), "status": "RUNNING"})),
    (BatchNotFound(7), Reply(404, "批次不存在")),
    (AlreadyRunning(7, RUN), Reply(409, "批次正在同步中", {"batchId": 7, "runId": str(RUN)})),
    (NotRetryable(7), Reply(400, "批次未处于失败状态")),
    (Unavailable("消息代理"), Reply(503, "服务暂不可用：消息代理")),
    (Unavailable("数据库"), Reply(503, "服务暂不可用：数据库")),
])
def test_sync_outcomes(outcome, expected: Reply) -> None:
    assert sync_reply(outcome) == expected


@pytest.mark.parametrize(("outcome", "expected"), [
    (CancelRequested(7, RUN), Reply(200, "操作成功", {"batchId": 7, "runId": str(RUN)})),
    (NothingToCancel(7), Reply(400, "批次没有正在执行的同步")),
    (BatchNotFound(7), Reply(404, "批次不存在")),
    (Unavailable("数据库"), Reply(503, "服务暂不可用：数据库")),
])
def test_cancel_outcomes(outcome, expected: Reply) -> None:
    assert cancel_reply(outcome) == expected


def test_reply_renders_the_envelope() -> None:
    response = Reply(409, "批次正在同步中", {"batchId": 7}).response()
    assert response.status_code == 409
    assert response.body.decode() == '{"code":409,"message":"批次正在同步中","data":{"batchId":7}}'
