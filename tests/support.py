"""What the tests share: the cores by name, handler recorders, a script runner.

Importable from the test modules (pytest puts ``tests/`` on ``sys.path``) and
from the scripts they run in subprocesses (``concurrency_hammer.py``,
``reentrancy_scenarios.py``, ``soak_workload.py``), which run with ``tests/``
as their own directory.  It imports nothing from the package at import time,
so a subprocess chooses its core before anything else is loaded.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Tuple

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
