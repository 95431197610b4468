"""Nested emits, against both implementations (SPEC 5: nesting never crashes).

A handler that emits, whose handler emits, and so on, nests emits.  Both
cores allow ``MAX_EMIT_NESTING`` nested emits per thread: the emit that would
be one more raises ``RecursionError`` before calling anything, and the emit
around it logs that like any handler failure.  So nesting ends at the same
depth, with the same handler calls and the same log record, on both cores and
every CPython, whatever ``sys.setrecursionlimit`` says, long before the C
stack runs out.

Where a crash is possible (a raised recursion limit, a thread with a smaller
stack), the chain runs in a child interpreter: a crash fails the test, not the
run.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from typing import Any, Callable, List

import pytest
from support import interrupt_next_log_record, log_records_of_this_thread

import livekit_events
from livekit_events._common import MAX_EMIT_NESTING



def chain(emitter: Any, event: str = "nest", inner: Callable[[int], None] = lambda depth: None) -> List[int]:
    """Registers a handler of ``event`` that emits ``event`` again (after
    calling ``inner(depth)``); returns the list of the depths it was called at."""
    calls: List[int] = []
    level = [0]

    def nest() -> None:
        level[0] += 1
        try:
            calls.append(level[0])
            inner(level[0])
            emitter.emit(event)
        finally:
            level[0] -= 1

    emitter.on(event, nest)
    return calls


def assert_stopped_at_the_limit(depths: List[int], records: List[logging.LogRecord]) -> None:
    """The chain ran MAX_EMIT_NESTING levels, and the one RecursionError
    (from the emit past the limit) was logged by the innermost emit."""
    assert depths == list(range(1, MAX_EMIT_NESTING + 1))
    failures = [r for r in records if r.exc_info]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    error = failures[0].exc_info[1]
    assert type(error) is RecursionError
    assert str(MAX_EMIT_NESTING) in str(error) and "'nest'" in str(error)


# --------------------------------------------------------------------------
# The limit, in a child interpreter (a crash fails the test, not the run)

CHILD = r"""
import importlib, json, logging, sys, threading

from livekit_events._emitter import emitter_class_for

core, recursion_limit, where = sys.argv[1], int(sys.argv[2]), sys.argv[3]
EventEmitter = emitter_class_for(importlib.import_module(core).EmitterCore)
if recursion_limit:
    sys.setrecursionlimit(recursion_limit)
failures = []


class Keep(logging.Handler):
    def emit(self, record):
        error = record.exc_info[1] if record.exc_info else None
        failures.append([type(error).__name__, str(error)])


logger = logging.getLogger("livekit.events")
logger.addHandler(Keep())
logger.propagate = False
result = {}


def run():
    emitter = EventEmitter()
    depths, after = [], []

    def nest():
        depths.append(len(depths) + 1)
        emitter.emit("nest")

    emitter.on("nest", nest)
    emitter.on("nest", lambda: after.append(1))  # runs at every level, after the nested emit
    emitter.emit("nest")
    result.update(depth=len(depths), after=len(after), failures=failures)


if where == "main":
    run()
else:
    if where != "thread":
        threading.stack_size(int(where) * 1024)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
print(json.dumps(result))
"""


def run_child(impl: Any, recursion_limit: int, where: str) -> Any:
    child = subprocess.run(
        [sys.executable, "-c", CHILD, impl.core.__name__, str(recursion_limit), where],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, f"the child died (exit code {child.returncode}): {child.stderr[-2000:]}"
    return json.loads(child.stdout)


@pytest.mark.parametrize("where", ["main", "thread", "512"], ids=["main-thread", "thread", "thread-512KiB-stack"])
@pytest.mark.parametrize("recursion_limit", [0, 100_000], ids=["default-recursion-limit", "recursion-limit-100000"])
def test_nested_emits_stop_at_the_documented_limit_without_crashing(
    impl: Any, recursion_limit: int, where: str
) -> None:
    """SPEC 5: nested emits never crash, whatever sys.setrecursionlimit says,
    and both cores reach the one documented depth: MAX_EMIT_NESTING handler
    levels, then one RecursionError, logged once, and every level's later
    handler still runs."""
    result = run_child(impl, recursion_limit, where)
    assert result["depth"] == MAX_EMIT_NESTING
    assert result["after"] == MAX_EMIT_NESTING
    assert len(result["failures"]) == 1, result["failures"][:3]
    kind, message = result["failures"][0]
    assert kind == "RecursionError" and str(MAX_EMIT_NESTING) in message


# --------------------------------------------------------------------------
# The count is per thread, and every way out of an emit gives its level back


def test_nested_emits_reach_the_limit_in_process(EventEmitter: Any) -> None:
    """The limit as an application meets it: the chain stops at
    MAX_EMIT_NESTING, the innermost emit logs the RecursionError, and the
    emitter goes on working."""
    emitter = EventEmitter()
    depths = chain(emitter)
    with log_records_of_this_thread() as records:
        emitter.emit("nest")
    assert_stopped_at_the_limit(depths, records)
    emitter.remove_all_listeners()
    calls: List[int] = []
    emitter.on("nest", lambda: calls.append(1))
    emitter.emit("nest")
    assert calls == [1]


def test_the_nesting_limit_counts_the_emits_of_every_emitter_in_the_thread(EventEmitter: Any) -> None:
    """Emits of different emitters, nested, count together: the limit bounds
    the thread's stack, not one emitter's."""
    emitters = [EventEmitter(), EventEmitter()]
    depths: List[int] = []

    def make(mine: int) -> Callable[[], None]:
        def nest() -> None:
            depths.append(len(depths) + 1)
            emitters[1 - mine].emit("nest")

        return nest

    for index, emitter in enumerate(emitters):
        emitter.on("nest", make(index))
    with log_records_of_this_thread() as records:
        emitters[0].emit("nest")
    assert_stopped_at_the_limit(depths, records)


def test_the_nesting_count_is_per_thread(EventEmitter: Any) -> None:
    """A thread deep in nested emits takes nothing from another thread's
    allowance, and gets its own back."""
    emitter = EventEmitter()
    holding, release = threading.Event(), threading.Event()
    held = MAX_EMIT_NESTING // 2

    def hold(depth: int) -> None:
        if depth == held:
            holding.set()
            assert release.wait(60)
            raise KeyboardInterrupt  # unwinds the whole chain

    other_thread: List[Any] = []

    def deep_other_thread() -> None:
        other = EventEmitter()
        try:
            chain(other, inner=hold)
            other.emit("nest")
        except KeyboardInterrupt:
            other_thread.append("unwound")

    thread = threading.Thread(target=deep_other_thread)
    thread.start()
    try:
        assert holding.wait(60)
        depths = chain(emitter)
        with log_records_of_this_thread() as records:
            emitter.emit("nest")  # while the other thread is `held` levels deep
        assert_stopped_at_the_limit(depths, records)
    finally:
        release.set()
        thread.join()
    assert other_thread == ["unwound"]


HALF_WAY = MAX_EMIT_NESTING // 2


def _interrupt(emitter: Any, depth: int) -> None:
    if depth == HALF_WAY:
        raise KeyboardInterrupt  # unwinds every nested emit at once


def _fail(emitter: Any, depth: int) -> None:
    if depth == HALF_WAY:
        raise ValueError("a failing handler, nested")  # logged by its emit


def _arity_error(emitter: Any, depth: int) -> None:
    if depth == HALF_WAY:
        # A walk that stops at a handler needing more arguments: the
        # TypeError leaves that emit, then this handler (and is logged).
        emitter.on("needy", lambda: None)
        emitter.on("needy", lambda required: None)
        emitter.emit("needy")


def _logging_raises(emitter: Any, depth: int) -> None:
    if depth == HALF_WAY:
        interrupt_next_log_record()  # the failure's log record raises
        raise ValueError("a failing handler, whose log record raises")


# How a chain of nested emits ends, and what comes out of the outermost emit.
EXITS = {
    "base-exception": (_interrupt, KeyboardInterrupt),
    "exception": (_fail, None),
    "arity-error": (_arity_error, None),
    "logging-raises": (_logging_raises, KeyboardInterrupt),
    "the-limit": (lambda emitter, depth: None, None),
}


@pytest.mark.parametrize("exit_path", sorted(EXITS))
def test_every_exit_from_nested_emits_gives_the_levels_back(EventEmitter: Any, exit_path: str) -> None:
    """Whatever ends a chain of nested emits (a BaseException through all of
    them, a failure logged half way, an arity error, a logging handler that
    raises, the limit), a fresh chain in the same thread then reaches the
    full limit again: each emit counted itself out."""
    inner, raised = EXITS[exit_path]
    emitter = EventEmitter()
    chain(emitter, "first", lambda depth: inner(emitter, depth))
    with log_records_of_this_thread():
        for _ in range(3):
            if raised is None:
                emitter.emit("first")
            else:
                with pytest.raises(raised):
                    emitter.emit("first")
    depths = chain(emitter)
    with log_records_of_this_thread() as records:
        emitter.emit("nest")
    assert_stopped_at_the_limit(depths, records)


@pytest.mark.thread_unsafe(reason="the slow-handler threshold is process-wide")
def test_nested_emits_with_slow_handler_detection_give_the_levels_back(EventEmitter: Any) -> None:
    """With slow-handler detection on, every handler is timed (and, at a
    threshold of a nanosecond, reported): the nesting stops at the same
    limit, and the count is given back."""
    emitter = EventEmitter()
    livekit_events.set_slow_handler_threshold(1e-9)
    try:
        with log_records_of_this_thread():
            first = chain(emitter, "first")
            emitter.emit("first")
            depths = chain(emitter)
            with log_records_of_this_thread() as records:
                emitter.emit("nest")
    finally:
        livekit_events.set_slow_handler_threshold(None)
    assert len(first) == MAX_EMIT_NESTING
    assert_stopped_at_the_limit(depths, [r for r in records if r.exc_info])
