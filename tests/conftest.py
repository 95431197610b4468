"""Every test that takes the ``impl`` fixture runs once per implementation.

Each implementation's core module is imported *by name*
(``livekit_events._core_c`` or ``livekit_events._core_py``), never through the
package's automatic choice, so a missing compiled build makes the compiled
runs fail loudly instead of silently testing the pure twin a second time.
``--no-c-extensions`` deselects the compiled runs (for pure-Python installs).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from types import ModuleType
from typing import Any, Dict

import pytest

import livekit_events
from livekit_events._emitter import emitter_class_for

IMPLEMENTATIONS = {"compiled": "livekit_events._core_c", "pure": "livekit_events._core_py"}

_tested: Dict[str, Dict[str, int]] = {name: {"passed": 0, "failed": 0} for name in IMPLEMENTATIONS}


@dataclasses.dataclass(frozen=True)
class Implementation:
    """One implementation under test: its name, core module and public class."""

    name: str
    core: ModuleType
    EventEmitter: Any  # the public class over this core

    def __repr__(self) -> str:
        return self.name


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-c-extensions",
        action="store_true",
        default=False,
        help="don't run the tests against the compiled core (pure-Python install)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "c_extension: runs against the compiled core")


def _compiled_required(config: pytest.Config) -> bool:
    return not config.getoption("--no-c-extensions")


def pytest_report_header(config: pytest.Config) -> list[str]:
    wanted = ["pure"] if not _compiled_required(config) else ["compiled", "pure"]
    return [
        f"livekit_events {livekit_events.__version__} from {os.path.dirname(livekit_events.__file__)}",
        f"livekit_events: active implementation: {livekit_events.IMPLEMENTATION}; "
        f"testing: {', '.join(wanted)}",
    ]


def pytest_sessionstart(session: pytest.Session) -> None:
    # The trap: pytest run from the source tree imports the uncompiled package
    # directory.  A run meant to test the compiled core must not fall back.
    if not _compiled_required(session.config):
        return
    if os.environ.get("LIVEKIT_EVENTS_NO_EXTENSIONS"):
        raise pytest.UsageError(
            "LIVEKIT_EVENTS_NO_EXTENSIONS is set but the compiled core is to be tested: "
            "pass --no-c-extensions to test the pure twin only"
        )
    try:
        importlib.import_module(IMPLEMENTATIONS["compiled"])
    except ImportError as exc:
        raise pytest.UsageError(
            f"the compiled core was expected but could not be imported ({exc}); "
            f"livekit_events was imported from {os.path.dirname(livekit_events.__file__)}. "
            "Build it (pip install .) and run the tests against the installed package, "
            "or pass --no-c-extensions to test the pure twin only."
        ) from exc
    if livekit_events.IMPLEMENTATION != "compiled":
        raise pytest.UsageError(
            f"livekit_events.IMPLEMENTATION is {livekit_events.IMPLEMENTATION!r}, expected 'compiled'"
        )


@pytest.fixture(
    scope="session",
    params=[pytest.param("compiled", marks=pytest.mark.c_extension), "pure"],
)
def impl(request: pytest.FixtureRequest) -> Implementation:
    """The implementation under test (compiled core or pure twin)."""
    core = importlib.import_module(IMPLEMENTATIONS[request.param])  # by name: fails loudly
    return Implementation(request.param, core, emitter_class_for(core.EmitterCore))


@pytest.fixture
def EventEmitter(impl: Implementation) -> Any:  # noqa: N802 - reads like the class
    """The public ``EventEmitter`` class over the implementation under test."""
    return impl.EventEmitter


@pytest.fixture
def emitter(impl: Implementation) -> Any:
    """A fresh ``EventEmitter[str]`` over the implementation under test."""
    return impl.EventEmitter[str]()


# pytest's log capture is one handler per test, shared by the threads that
# pytest-run-parallel starts: records from four threads land in one list.
# Every test that reads it runs single-threaded, marked here rather than by hand.
_SHARED_BETWEEN_THREADS = frozenset({"caplog"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _SHARED_BETWEEN_THREADS.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.thread_unsafe(reason="uses caplog"))
    if _compiled_required(config):
        return
    skip = pytest.mark.skip(reason="--no-c-extensions: compiled core not tested")
    for item in items:
        if "c_extension" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    callspec = getattr(item, "callspec", None)
    name = callspec.params.get("impl") if callspec is not None else None
    if name in _tested and not report.skipped:
        if report.failed:
            _tested[name]["failed"] += 1
        elif report.when == "call":
            _tested[name]["passed"] += 1
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    terminalreporter.section("livekit_events implementations tested")
    for name, counts in _tested.items():
        terminalreporter.write_line(
            f"{name:9s} ({IMPLEMENTATIONS[name]}): {counts['passed']} passed, {counts['failed']} failed"
        )
    terminalreporter.write_line(f"active implementation: {livekit_events.IMPLEMENTATION}")
