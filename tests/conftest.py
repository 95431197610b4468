"""Every test that takes the ``impl`` fixture runs once per implementation.

The fixture chain: ``impl`` (the core module, by name) -> ``EventEmitter``
(the public class over it) -> ``emitter`` (a fresh ``EventEmitter[str]``).
A module or test marked ``with_livekit`` also runs once against livekit's own
``livekit.rtc.EventEmitter`` (``impl.name == "livekit"``, ``impl.core`` None;
skipped when livekit isn't installed), for the tests that compare with it.

Each implementation's core module is imported *by name* (``support.CORE_MODULES``),
never through the package's automatic choice, so a missing compiled build makes
the compiled runs fail loudly instead of silently testing the pure twin a
second time.  ``--no-c-extensions`` deselects the compiled runs (for
pure-Python installs).

Under pytest-run-parallel a test's fixtures are made once and shared by its
threads; ``emitter`` is the exception: each thread gets its own (see
``_one_emitter_per_thread``), so a test that takes it can count calls.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import types
from types import ModuleType
from typing import Any, Callable, Dict, Optional

import pytest
from support import CORE_MODULES, import_core

import livekit_events
from livekit_events._emitter import emitter_class_for

_tested: Dict[str, Dict[str, int]] = {name: {"passed": 0, "failed": 0} for name in CORE_MODULES}


@dataclasses.dataclass(frozen=True)
class Implementation:
    """One implementation under test: its name, core module and public class."""

    name: str
    core: Optional[ModuleType]  # None for livekit's own class
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
    config.addinivalue_line(
        "markers", "with_livekit: impl also runs as livekit's own livekit.rtc.EventEmitter"
    )


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
        import_core("compiled")
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "impl" not in metafunc.fixturenames:
        return
    params = [pytest.param("compiled", marks=pytest.mark.c_extension), "pure"]
    if metafunc.definition.get_closest_marker("with_livekit") is not None:
        params.append("livekit")
    metafunc.parametrize("impl", params, indirect=True, scope="session")


@pytest.fixture(scope="session")
def impl(request: pytest.FixtureRequest) -> Implementation:
    """The implementation under test (compiled core, pure twin; livekit's class
    for tests marked ``with_livekit``)."""
    if request.param == "livekit":
        rtc = pytest.importorskip("livekit.rtc")
        return Implementation("livekit", None, rtc.EventEmitter)
    core = import_core(request.param)  # by name: fails loudly
    return Implementation(request.param, core, emitter_class_for(core.EmitterCore))


@pytest.fixture
def EventEmitter(impl: Implementation) -> Any:  # noqa: N802 - reads like the class
    """The public ``EventEmitter`` class over the implementation under test."""
    return impl.EventEmitter


@pytest.fixture(params=["on", "once"])
def register(request: pytest.FixtureRequest) -> str:
    """The registering method, ``on`` or ``once``, for tests that hold for both."""
    return str(request.param)


def _new_emitter(impl: Implementation) -> Any:
    return impl.EventEmitter[str]()


@pytest.fixture
def emitter(impl: Implementation) -> Any:
    """A fresh ``EventEmitter[str]`` over the implementation under test (one
    per thread under pytest-run-parallel)."""
    return _new_emitter(impl)


def _one_emitter_per_thread(item: pytest.Function) -> None:
    """Give each of pytest-run-parallel's threads its own ``emitter``.

    pytest-run-parallel calls the test function in several threads with the
    fixture values made once.  This wraps the function (before the plugin
    wraps it, at the end of collection) so that a call from any thread but
    the main one gets a fresh emitter of the same implementation.  A run
    without parallel threads calls the test in the main thread: unchanged.
    The wrapper keeps the test's globals (the plugin reads them) and its
    ``__wrapped__`` (for the plugin's source-based checks).
    """
    test = item.obj
    if getattr(test, "is_hypothesis_test", False):
        return  # hypothesis runs its examples in the calling thread's own way
    main = threading.main_thread()
    current = threading.current_thread
    new = _new_emitter

    def call(*args: Any, **kwargs: Any) -> Any:  # only closure names: runs in test's globals
        if current() is not main:
            kwargs["emitter"] = new(item.funcargs["impl"])
        return test(*args, **kwargs)

    wrapper: Callable[..., Any] = types.FunctionType(
        call.__code__, test.__globals__, test.__name__, None, call.__closure__
    )
    functools.update_wrapper(wrapper, test)
    item.obj = wrapper


# pytest's log capture is one handler per test, shared by the threads that
# pytest-run-parallel starts: records from four threads land in one list.
# Every test that reads it runs single-threaded, marked here rather than by hand.
_SHARED_BETWEEN_THREADS = frozenset({"caplog"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _SHARED_BETWEEN_THREADS.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.thread_unsafe(reason="uses caplog"))
        if isinstance(item, pytest.Function) and "emitter" in item._fixtureinfo.argnames:
            _one_emitter_per_thread(item)
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
            f"{name:9s} ({CORE_MODULES[name]}): {counts['passed']} passed, {counts['failed']} failed"
        )
    terminalreporter.write_line(f"active implementation: {livekit_events.IMPLEMENTATION}")
