"""A watchdog for hung tests: when one test (setup, call and teardown) has run for `after` seconds, every
running asyncio loop's tasks are written to the terminal with what each awaits, then every thread's stack.

The suite shares one session-scoped event loop, so a task or client an earlier test leaked still runs in it;
a hang there shows as the main thread idle in epoll, which a thread dump (pytest-timeout's) cannot explain.
The dump names each task, its coroutine chain down to the future it waits on, the loop's timers and
its default executor, so CI output shows what is awaited for ever.

Cheap when nothing hangs: one daemon thread sleeping on a condition, two attribute writes per test.
"""

import asyncio
import gc
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any

MAX_CHAIN = 40
"""Links followed down one task's await chain (a cycle guard too)."""


def _frame_line(frame: FrameType) -> str:
    code = frame.f_code
    return f'    File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}'


def _await_chain(coro: Any) -> list[str]:
    """The frames of a suspended coroutine and of everything it awaits in turn (Task.get_stack shows only the
    outermost frame of a suspended coroutine)."""
    lines: list[str] = []
    for _ in range(MAX_CHAIN):
        if coro is None:
            break
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        lines.append(_frame_line(frame) if frame is not None else f"    {type(coro).__name__}: {coro!r:.300}")
        coro = (getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
                or getattr(coro, "ag_await", None))
    return lines


def _describe_future(future: Any) -> str:
    callbacks = []
    for entry in getattr(future, "_callbacks", None) or ():
        callback = entry[0] if isinstance(entry, tuple) else entry
        callbacks.append(getattr(callback, "__qualname__", None) or repr(callback)[:120])
    children = getattr(future, "_children", None)  # a gather
    extra = f" children={[repr(c)[:160] for c in children]}" if children else ""
    return f"{future!r:.400} callbacks={callbacks}{extra}"


def _tasks_text(loop: asyncio.AbstractEventLoop) -> str:
    """Every task of `loop` with its await chain and the future it waits on; its timers and executor."""
    tasks: list[asyncio.Task[Any]] = []
    for _ in range(10):  # the set may change under a reader in another thread
        try:
            tasks = list(asyncio.all_tasks(loop))
            break
        except RuntimeError:
            continue
    lines = [f"--- loop {loop!r:.200}: {len(tasks)} pending task(s)"]
    for task in sorted(tasks, key=lambda t: t.get_name()):
        lines.append(f"  task {task.get_name()}: {task.get_coro()!r:.200}")
        lines.extend(_await_chain(task.get_coro()))
        waiter = getattr(task, "_fut_waiter", None)
        lines.append(f"    waits on: {_describe_future(waiter) if waiter is not None else 'nothing (ready to run)'}")
    scheduled = sorted(getattr(loop, "_scheduled", ()), key=lambda h: h.when())
    now = loop.time()
    lines.append(f"  timers: {len(scheduled)}" + "".join(
        f"\n    in {handle.when() - now:.1f}s: {handle!r:.200}" for handle in scheduled[:15]))
    executor = getattr(loop, "_default_executor", None)
    if executor is not None:
        queue = getattr(executor, "_work_queue", None)
        lines.append(f"  default executor: {len(getattr(executor, '_threads', ()))} thread(s), "
                     f"{queue.qsize() if queue is not None else '?'} queued item(s)")
    selector = getattr(loop, "_selector", None)
    if selector is not None:
        try:
            lines.append(f"  watched file descriptors: {sorted(selector.get_map())}")
        except Exception as exc:  # closed while we looked
            lines.append(f"  watched file descriptors: ? ({exc!r})")
    return "\n".join(lines)


def _threads_text() -> str:
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    lines = ["--- threads"]
    for ident, frame in sys._current_frames().items():
        lines.append(f"  thread {names.get(ident, '?')} ({ident}):")
        lines.extend("    " + line.rstrip().replace("\n", "\n    ") for line in traceback.format_stack(frame)[-12:])
    return "\n".join(lines)


def running_loops() -> list[asyncio.AbstractEventLoop]:
    """Every event loop running in any thread (the session's, live servers' own): found by the collector, since
    the running loop is thread-local. Only called when a test is already overdue."""
    return [obj for obj in gc.get_objects()
            if isinstance(obj, asyncio.AbstractEventLoop) and obj.is_running()]


def dump(write: Callable[[str], None], title: str) -> None:
    """Write every running loop's tasks, each read in its own loop's thread when that loop is idle (as a hung
    loop is) and from here when it is busy, then every thread's stack."""
    write(f"\n===== watchdog: {title} =====\n")
    for loop in running_loops():
        done = threading.Event()
        texts: list[str] = []

        def in_loop(loop: asyncio.AbstractEventLoop = loop, texts: list[str] = texts,
                    done: threading.Event = done) -> None:
            texts.append(_tasks_text(loop))
            done.set()

        try:
            loop.call_soon_threadsafe(in_loop)
        except RuntimeError:  # closed in the meantime
            continue
        if done.wait(5):
            write(texts[0] + "\n")
        else:
            write("(this loop did not run a callback within 5 s: it is busy; its tasks read from another thread)\n")
            write(_tasks_text(loop) + "\n")
    write(_threads_text() + "\n===== watchdog end =====\n")


class Watchdog:
    """One daemon thread; `started(name)` arms it for a test, `finished()` disarms it. A test still running
    `after` seconds after it started is dumped, and again every `after` seconds after that."""

    def __init__(self, after: float, write: Callable[[str], None]) -> None:
        self.after = after
        self.write = write
        self.fired: list[str] = []
        self._cond = threading.Condition()
        self._test: str | None = None
        self._serial = 0
        self._since = 0.0
        threading.Thread(target=self._watch, name="test-watchdog", daemon=True).start()

    def started(self, test: str) -> None:
        with self._cond:
            self._test, self._since = test, time.monotonic()
            self._serial += 1
            self._cond.notify()

    def finished(self) -> None:
        with self._cond:
            self._test = None
            self._serial += 1
            self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while True:
                if self._test is None:
                    self._cond.wait()
                    continue
                test, serial, since, dumps = self._test, self._serial, self._since, 0
                while self._serial == serial:
                    remaining = since + self.after * (dumps + 1) - time.monotonic()
                    if remaining > 0:
                        self._cond.wait(remaining)
                        continue
                    dumps += 1
                    self.fired.append(test)
                    self._cond.release()  # the test may finish while we dump
                    try:
                        dump(self.write, f"{test} has run for {time.monotonic() - since:.0f} s")
                    except Exception:  # never let the watchdog take the run down
                        self.write(f"watchdog failed: {traceback.format_exc()}\n")
                    finally:
                        self._cond.acquire()


def terminal_writer(config: Any) -> Callable[[str], None]:
    """Writes straight to the terminal pytest writes to, past its fd capture (a dump must be seen even when the
    test then passes): a dup of the stderr pytest's global capture saved, or of fd 2 when nothing is captured."""
    capman = config.pluginmanager.getplugin("capturemanager")
    err = getattr(getattr(capman, "_global_capturing", None), "err", None)
    saved = getattr(err, "targetfd_save", None)
    fd = os.dup(saved if isinstance(saved, int) else 2)

    def write(text: str) -> None:
        os.write(fd, text.encode("utf-8", "replace"))

    return write
