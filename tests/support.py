"""What the tests share: the cores by name, handler recorders, a script runner.

Importable from the test modules (pytest puts ``tests/`` on ``sys.path``) and
from the scripts they run in subprocesses (``concurrency_hammer.py``,
``reentrancy_scenarios.py``, ``soak_workload.py``), which run with ``tests/``
as their own directory.  It imports nothing from the package at import time,
so a subprocess chooses its core before anything else is loaded.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple

if TYPE_CHECKING:
    import subprocess

# Each implementation's core module, imported *by name* (never through the
# package's automatic choice), so a missing compiled build fails loudly.
CORE_MODULES: Dict[str, str] = {
    "compiled": "livekit_events._core_c",
    "pure": "livekit_events._core_py",
}

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def import_core(name: str) -> ModuleType:
    """The core module of implementation ``name`` ("compiled" or "pure")."""
    return importlib.import_module(CORE_MODULES[name])


def emitter_class(name: str) -> Any:
    """The public ``EventEmitter`` class over implementation ``name``'s core."""
    from livekit_events._emitter import emitter_class_for

    return emitter_class_for(import_core(name).EmitterCore)


def named(calls: List[Any], name: str) -> Callable[..., None]:
    """A handler called ``name`` that appends its name to ``calls``."""

    def handler(*args: Any) -> None:
        calls.append(name)

    handler.__name__ = handler.__qualname__ = name
    return handler


def handlers_of(emitter: Any, event: Any) -> int:
    """How many callables ``emitter`` holds for ``event`` (ours or livekit's class)."""
    return len(emitter._events.get(event, ()))


def run_script(
    script: str, *args: str, timeout: float
) -> Tuple["subprocess.CompletedProcess[str]", List[str]]:
    """Run ``tests/<script>`` with this interpreter, from ``tests/`` (never the
    checkout root, so the child imports the installed package).

    Returns the finished process and its stdout lines; raises
    ``subprocess.TimeoutExpired`` on a hang.
    """
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, os.path.join(TESTS_DIR, script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=TESTS_DIR,
    )
    return result, result.stdout.strip().splitlines()


def last_json(lines: List[str]) -> Any:
    """The JSON object a script prints last."""
    import json

    return json.loads(lines[-1])


class _ThreadLogCapture:
    """A filter on the ``livekit.events`` logger with thread-local state, so
    tests can capture in parallel threads (pytest-run-parallel): a record of
    a thread inside ``log_records_of_this_thread()`` goes to its sink and is
    dropped (thousands don't pile up in pytest's capture); other records
    pass.  Installed once, at first use, and never removed, so threads can't
    race on the logger's filter list."""

    def __init__(self) -> None:
        self.local = threading.local()

    def filter(self, record: Any) -> bool:
        if getattr(self.local, "interrupt", False):
            self.local.interrupt = False
            raise KeyboardInterrupt  # a logging filter raising out of emit
        sink = getattr(self.local, "sink", None)
        if sink is None:
            return True
        sink(record)
        return False


_log_capture: List[_ThreadLogCapture] = []
_log_capture_lock = threading.Lock()


def _thread_log_capture() -> _ThreadLogCapture:
    with _log_capture_lock:
        if not _log_capture:
            import logging

            _log_capture.append(_ThreadLogCapture())
            logging.getLogger("livekit.events").addFilter(_log_capture[0])
        return _log_capture[0]


@contextlib.contextmanager
def log_records_of_this_thread(
    into: Optional[List[Any]] = None, convert: Optional[Callable[[Any], Any]] = None
) -> Iterator[List[Any]]:
    """This thread's ``livekit.events`` records while the block runs, appended
    to ``into`` (a new list by default), each passed through ``convert``
    first if given."""
    records: List[Any] = [] if into is None else into
    local = _thread_log_capture().local
    outer = getattr(local, "sink", None)
    local.sink = records.append if convert is None else (lambda r: records.append(convert(r)))
    try:
        yield records
    finally:
        local.sink = outer
        local.interrupt = False


def interrupt_next_log_record() -> None:
    """Make this thread's next ``livekit.events`` record raise
    ``KeyboardInterrupt`` out of the logging call (inside a
    ``log_records_of_this_thread()`` block, which resets it)."""
    _thread_log_capture().local.interrupt = True
