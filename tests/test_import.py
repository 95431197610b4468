"""What ``import livekit_events`` loads.

Importing the package must not import ``asyncio`` (most of what the import
would cost): the async helpers (``livekit_events.aio``, whose names the
package also exports) are imported, and asyncio with them, when first used.
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
