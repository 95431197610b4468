"""What ``import livekit_events`` loads.

Importing the package must not import ``asyncio`` (most of what the import
would cost): the async helpers (``livekit_events.aio``, whose names the
package also exports) are imported, and asyncio with them, when first used.
Nor ``inspect`` or ``dataclasses``: ``install()`` and its names
(``_livekit``, with dataclasses) are imported when first used too, and
inspect when a registration takes the slow path (the fast paths don't need
it).  ``logging`` is imported with the package: importing it at the first
record would run an import inside emit.
Each check runs in a fresh interpreter, so that what other tests imported
doesn't count, with the core under test selected by the environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any, Dict

import pytest

import livekit_events

pytestmark = pytest.mark.thread_unsafe(reason="subprocesses")

AIO_NAMES = (
    "EventStream",
    "EventStreamOverflowError",
    "HandlerOverflowError",
    "TaskHandlers",
    "iterate",
    "wait_for",
)
INSTALL_NAMES = (
    "EmitterClass",
    "InstallReport",
    "LivekitIncompatibleError",
    "install",
    "install_report",
    "is_installed",
    "uninstall",
)
#: Imported when first needed, not by ``import livekit_events``.
LAZY_MODULES = ("inspect", "dataclasses", "livekit_events._livekit")


def _run(impl: Any, body: str) -> Dict[str, Any]:
    """Run ``body`` in a fresh interpreter with ``impl``'s core; it fills the
    dict ``out``, returned here.  Skips if asyncio is already imported when
    the interpreter starts (a ``.pth`` file or ``sitecustomize`` did it)."""
    script = "import json, sys\nout = {'preloaded': 'asyncio' in sys.modules}\n"
    script += "if not out['preloaded']:\n" + textwrap.indent(textwrap.dedent(body), "    ")
    script += "\nprint(json.dumps(out))\n"
    env = dict(os.environ)
    env.pop("LIVEKIT_EVENTS_NO_EXTENSIONS", None)
    if impl.name == "pure":
        env["LIVEKIT_EVENTS_NO_EXTENSIONS"] = "1"
    # Run from the directory livekit_events was imported from, so the child
    # imports the same package (installed or source tree) as this run.
    here = os.path.dirname(os.path.dirname(os.path.abspath(livekit_events.__file__)))
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=here,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out: Dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    if out["preloaded"]:
        pytest.skip("asyncio is imported at interpreter startup here")
    return out


def test_import_does_not_import_asyncio(impl: Any) -> None:
    out = _run(
        impl,
        """
        import livekit_events
        out["implementation"] = livekit_events.IMPLEMENTATION
        out["asyncio"] = "asyncio" in sys.modules
        out["aio"] = "livekit_events.aio" in sys.modules
        """,
    )
    assert out["implementation"] == impl.name
    assert out["asyncio"] is False
    assert out["aio"] is False


def test_async_helpers_are_imported_on_first_use(impl: Any) -> None:
    out = _run(
        impl,
        f"""
        import livekit_events
        names = {AIO_NAMES!r}
        out["listed"] = [name in dir(livekit_events) for name in names + ("aio",)]
        task_handlers = livekit_events.TaskHandlers
        out["asyncio"] = "asyncio" in sys.modules
        import livekit_events.aio as aio
        out["same"] = [getattr(livekit_events, name) is getattr(aio, name) for name in names]
        out["module"] = livekit_events.aio is aio and task_handlers is aio.TaskHandlers
        try:
            livekit_events.no_such_name
        except AttributeError as exc:
            out["missing"] = str(exc)
        """,
    )
    assert out["listed"] == [True] * (len(AIO_NAMES) + 1)
    assert out["asyncio"] is True
    assert out["same"] == [True] * len(AIO_NAMES)
    assert out["module"] is True
    assert out["missing"] == "module 'livekit_events' has no attribute 'no_such_name'"


@pytest.mark.parametrize("statement", ["from livekit_events import *", "import livekit_events.aio"])
def test_each_way_to_the_async_helpers_gives_the_same_objects(impl: Any, statement: str) -> None:
    out = _run(
        impl,
        f"""
        {statement}
        import livekit_events, livekit_events.aio
        names = {AIO_NAMES!r}
        out["same"] = [
            getattr(livekit_events, name) is getattr(livekit_events.aio, name) for name in names
        ]
        """,
    )
    assert out["same"] == [True] * len(AIO_NAMES)


def test_async_callbacks_are_rejected_without_asyncio_imported(impl: Any) -> None:
    # Registration tells an async callback by inspect alone; asyncio's legacy
    # coroutine marker is only looked for once asyncio is imported.
    out = _run(
        impl,
        """
        import functools, inspect
        import livekit_events

        async def coroutine_function(*args):
            pass

        async def async_generator_function(*args):
            yield

        class Handler:
            async def __call__(self, *args):
                pass

        def marked(*args):
            pass

        class NotTheMarker:
            _is_coroutine = object()

            def __call__(self, *args):
                pass

        callbacks = [
            coroutine_function,
            async_generator_function,
            functools.partial(coroutine_function, 1),
            Handler(),
        ]
        if hasattr(inspect, "markcoroutinefunction"):
            callbacks.append(inspect.markcoroutinefunction(marked))
        emitter = livekit_events.EventEmitter()
        rejected = []
        for callback in callbacks:
            try:
                emitter.on("x", callback)
            except ValueError:
                rejected.append(True)
            else:
                rejected.append(False)
        out["rejected"] = rejected
        emitter.on("x", NotTheMarker())
        out["accepted"] = emitter.listener_count("x")
        out["asyncio"] = "asyncio" in sys.modules
        """,
    )
    assert out["rejected"] == [True] * len(out["rejected"])
    assert len(out["rejected"]) >= 4
    assert out["accepted"] == 1
    assert out["asyncio"] is False


def _run_lazy(impl: Any, body: str) -> Dict[str, Any]:
    """``_run``, skipped if a module of ``LAZY_MODULES`` is imported at startup."""
    out = _run(
        impl,
        f"out['lazy_preloaded'] = [name for name in {LAZY_MODULES!r} if name in sys.modules]\n"
        f"if not out['lazy_preloaded']:\n{textwrap.indent(textwrap.dedent(body), '    ')}",
    )
    if out["lazy_preloaded"]:
        pytest.skip(f"imported at interpreter startup here: {out['lazy_preloaded']}")
    return out


def test_import_does_not_import_inspect_dataclasses_or_install(impl: Any) -> None:
    out = _run_lazy(
        impl,
        f"""
        import livekit_events
        out["implementation"] = livekit_events.IMPLEMENTATION
        out["imported"] = [name for name in {LAZY_MODULES!r} if name in sys.modules]
        """,
    )
    assert out["implementation"] == impl.name
    assert out["imported"] == []


def test_install_names_are_imported_on_first_use(impl: Any) -> None:
    out = _run_lazy(
        impl,
        f"""
        import livekit_events
        names = {INSTALL_NAMES!r}
        out["listed"] = [name in dir(livekit_events) for name in names]
        out["all"] = sorted(set(names) - set(livekit_events.__all__))
        from livekit_events import InstallReport
        out["imported"] = "livekit_events._livekit" in sys.modules
        from livekit_events import _livekit
        out["same"] = [getattr(livekit_events, name) is getattr(_livekit, name) for name in names]
        out["report"] = InstallReport is _livekit.InstallReport
        out["every_public_name"] = [
            name for name in livekit_events.__all__ if getattr(livekit_events, name, None) is None
        ]
        """,
    )
    assert out["listed"] == [True] * len(INSTALL_NAMES)
    assert out["all"] == []
    assert out["imported"] is True
    assert out["same"] == [True] * len(INSTALL_NAMES)
    assert out["report"] is True
    assert out["every_public_name"] == []


# The first registration: the fast paths (plain functions and their bound
# methods) answer without importing inspect; the slow path imports it.  Each
# case is the first callback registered in its interpreter, and must be
# described as inspect describes it.
FIRST_REGISTRATIONS = {
    "plain": ("def handler(a, b=2):\n    got.append((a, b))", "accepted", [[1, 2]], False),
    "varargs": ("def handler(*args):\n    got.append(args)", "accepted", [[1, 2, 3]], False),
    "bound method": (
        "class Handler:\n    def method(self, a):\n        got.append((a,))\n"
        "handler = Handler().method",
        "accepted",
        [[1]],
        False,
    ),
    "keyword-only with default": (
        "def handler(a, *, key=0):\n    got.append((a, key))",
        "accepted",
        [[1, 0]],
        False,
    ),
    "partial": (
        "import functools\nhandler = functools.partial(lambda p, a: got.append((p, a)), 0)",
        "accepted",
        [[0, 1]],
        True,
    ),
    "async": ("async def handler(a):\n    pass", "ValueError", [], True),
    "async generator": ("async def handler(a):\n    yield", "ValueError", [], True),
    "required keyword-only": ("def handler(a, *, key):\n    pass", "TypeError", [], True),
}


@pytest.mark.parametrize("case", sorted(FIRST_REGISTRATIONS))
def test_first_registration_imports_inspect_only_on_the_slow_path(impl: Any, case: str) -> None:
    source, outcome, calls, imports_inspect = FIRST_REGISTRATIONS[case]
    out = _run_lazy(
        impl,
        f"""
        import livekit_events
        got = []
        exec({source!r})
        emitter = livekit_events.EventEmitter()
        try:
            emitter.on("x", handler)
        except Exception as exc:
            out["outcome"] = type(exc).__name__
        else:
            out["outcome"] = "accepted"
        out["inspect"] = "inspect" in sys.modules
        emitter.emit("x", 1, 2, 3)
        out["calls"] = [list(args) for args in got]
        """,
    )
    assert out["outcome"] == outcome
    assert out["inspect"] is imports_inspect
    assert out["calls"] == calls


def test_fast_path_sees_parameter_empty_once_inspect_is_imported(impl: Any) -> None:
    # A default that is inspect.Parameter.empty means "no default" to
    # inspect: the fast path must leave such a function to the slow path,
    # also when its first registrations ran before inspect was imported.
    out = _run_lazy(
        impl,
        """
        import livekit_events
        emitter = livekit_events.EventEmitter()
        got = []

        def before(a, b=None):
            got.append(("before", a, b))

        emitter.on("x", before)
        out["inspect_before"] = "inspect" in sys.modules
        import inspect

        def after(a, b=inspect.Parameter.empty):
            got.append(("after", a, b))

        emitter.on("y", after)
        emitter.emit("y", 1, 2, 3)
        try:
            emitter.emit("y", 1)
        except TypeError as exc:
            out["error"] = str(exc)
        out["calls"] = got
        """,
    )
    assert out["inspect_before"] is False
    assert out["calls"] == [["after", 1, 2]]
    assert "requires 2 positional arguments, but 1 was emitted" in out["error"]
