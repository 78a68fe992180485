"""Log lines as an operator's pipeline reads them: JSON or text, the run's ids bound per task, extras such as
errorCode kept, and the secret mask applied to the message and to the traceback that is printed."""

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from service.config import Settings
from service.observability.context import bound_to_run
from service.observability.logs import configure

SECRET = "Pa55-in-a-url"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def test_json_off_a_terminal_and_text_on_one_unless_set(restore_root) -> None:
    assert configure(Settings(_env_file=None), stream=io.StringIO()) == "json"
    assert configure(Settings(_env_file=None), stream=Terminal()) == "text"
    assert configure(Settings(_env_file=None, log_format="json"), stream=Terminal()) == "json"
    assert configure(Settings(_env_file=None, log_format="text"), stream=io.StringIO()) == "text"


def test_a_json_line_names_the_run_and_keeps_the_error_code(restore_root) -> None:
    out = io.StringIO()
    configure(Settings(_env_file=None, log_format="json"), stream=out)
    with bound_to_run("r-1", 7, "c-1"):
        logging.getLogger("service.runs").warning("run r-1 FAILED (SOURCE_FAILED): postgresql://u:%s@db/x", SECRET,
                                                  extra={"errorCode": "SOURCE_FAILED"})
    logging.getLogger("service.runs").info("after the run")
    failed, after = lines(out)
    assert {k: failed[k] for k in ("level", "logger", "runId", "batchId", "correlationId", "errorCode")} == {
        "level": "WARNING", "logger": "service.runs", "runId": "r-1", "batchId": 7, "correlationId": "c-1",
        "errorCode": "SOURCE_FAILED"}
    assert SECRET not in out.getvalue() and failed["message"].endswith("@db/x")
    assert "runId" not in after  # unbound when the run's block ends


def test_the_printed_traceback_is_the_masked_one(restore_root) -> None:
    for chosen in ("json", "text"):
        out = io.StringIO()
        configure(Settings(_env_file=None, log_format=chosen), stream=out)
        try:
            raise RuntimeError(f"connect to postgresql://app:{SECRET}@db/x failed")
        except RuntimeError:
            logging.getLogger("x").exception("boom")
        assert "RuntimeError: connect to postgresql://app:" in out.getvalue()
        assert SECRET not in out.getvalue()


def test_text_lines_read_time_level_logger_message_then_the_ids(restore_root) -> None:
    out = io.StringIO()
    configure(Settings(_env_file=None, log_format="text"), stream=out)
    with bound_to_run("r-2", 3, None):
        logging.getLogger("consumers.loop").info("consuming %s", "topic")
    (line,) = out.getvalue().splitlines()
    assert line.split(" ", 2)[2] == "INFO consumers.loop: consuming topic runId=r-2 batchId=3"


async def test_ids_bound_in_one_task_never_reach_another(restore_root) -> None:
    out = io.StringIO()
    configure(Settings(_env_file=None, log_format="json"), stream=out)
    both = asyncio.Event()

    async def run(run_id: str) -> None:
        with bound_to_run(run_id, 1, f"c-{run_id}"):
            await asyncio.sleep(0)
            if run_id == "b":
                both.set()
            await both.wait()
            logging.getLogger("service.runs").info("chunk of %s", run_id)

    await asyncio.gather(run("a"), run("b"))
    # Only this test's logger: the loop is shared by the session, so another test's leftover client may log here.
    ours = [line for line in lines(out) if line["logger"] == "service.runs"]
    assert {(line["runId"], line["message"]) for line in ours} == {("a", "chunk of a"), ("b", "chunk of b")}


def test_configuring_again_replaces_our_handler_only(restore_root) -> None:
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    configure(Settings(_env_file=None, log_format="json"), stream=io.StringIO())
    configure(Settings(_env_file=None, log_format="json"), stream=io.StringIO())
    ours = [h for h in logging.getLogger().handlers if type(h).__name__ == "_OurHandler"]
    assert len(ours) == 1 and other in logging.getLogger().handlers
