"""``install()`` in a livekit-agents app: real livekit-agents classes from PyPI.

An agent app imports ``livekit.agents`` first and calls ``install()`` after
(so do livekit-agents' job processes, which import it before the app's
module): this module imports it at the top, before any test calls
``install()``.  Skipped, with the reason, where livekit-agents isn't installed
(it isn't in the ``test`` dependency group: it pins one livekit release; nox's
``livekit(1.1)`` session installs the newest from PyPI, with the livekit it
pins).

The proof that dispatch goes through the core, not just that a flag is set:
no Python frame of livekit's original ``EventEmitter.emit`` runs (a profile
hook counts them: stock livekit runs one per emit), the core's per-emitter
state holds the session afterwards, and each handler's signature is read
once per registration; the handlers' results are the same as with stock
livekit.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from support import import_core

agents = pytest.importorskip(
    "livekit.agents",
    reason="livekit-agents is not installed (pip install livekit-agents; it pins its own "
    "livekit release, so it is not in the `test` dependency group); nox -s 'livekit(1.1)' "
    "installs the newest from PyPI",
)

from livekit import rtc  # noqa: E402
from livekit.agents import AgentSession, llm  # noqa: E402
from livekit.agents.voice import events as agent_events  # noqa: E402

import livekit_events  # noqa: E402
from livekit_events import _livekit  # noqa: E402

# install() patches livekit's class for the whole process.
pytestmark = pytest.mark.thread_unsafe

LkEmitter = rtc.EventEmitter
ORIGINAL_EMIT = LkEmitter.__dict__["emit"]
CORES = [pytest.param("compiled", marks=pytest.mark.c_extension), "pure"]


@pytest.fixture(autouse=True)
def _restore_livekit() -> Iterator[None]:
    livekit_events.uninstall()
    yield
    livekit_events.uninstall()
    assert LkEmitter.__dict__["emit"] is ORIGINAL_EMIT


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """AgentSession takes the current event loop when it is given none (and
    other tests leave none set): its own, closed afterwards."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


class Frames:
    """Counts Python frames of given code objects while active."""

    def __init__(self, **functions: Any) -> None:
        self._codes = {name: function.__code__ for name, function in functions.items()}
        self.counts = {name: 0 for name in functions}

    def _profile(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call":
            for name, code in self._codes.items():
                if frame.f_code is code:
                    self.counts[name] += 1

    def __enter__(self) -> "Frames":
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc: Any) -> None:
        sys.setprofile(self._previous)


def agents_scenario(session: Any) -> List[Any]:
    """Handlers registered with every form (on, once, both as decorators, with
    0, 1 and any number of parameters), then events emitted the way
    livekit-agents does (its own AgentSession methods) and directly."""
    got: List[Any] = []
    session.on("user_input_transcribed", lambda ev: got.append(("on", ev.transcript, ev.is_final)))

    @session.on("conversation_item_added")
    def added(ev):  # type: ignore[no-untyped-def]
        got.append(("on-decorator", ev.item.role, ev.item.text_content))

    session.once("agent_state_changed", lambda *a: got.append(("once", len(a), a[0].new_state)))

    @session.once("agent_state_changed")
    def changed(*args):  # type: ignore[no-untyped-def]
        got.append(("once-decorator", len(args), args[0].old_state, args[0].new_state))

    session.on("agent_state_changed", lambda: got.append(("no-arguments",)))
    session._user_input_transcribed(
        agent_events.UserInputTranscribedEvent(transcript="hello", is_final=False)
    )
    session._conversation_item_added(llm.ChatMessage(role="user", content=["hi there"]))
    session._update_agent_state("thinking")
    session._update_agent_state("speaking")
    session.emit(
        "user_input_transcribed", agent_events.UserInputTranscribedEvent(transcript="x", is_final=True)
    )
    session.off("user_input_transcribed", next(iter(session._events["user_input_transcribed"])))
    session.emit(
        "user_input_transcribed", agent_events.UserInputTranscribedEvent(transcript="y", is_final=True)
    )
    got.append(("recorded", [ev.type for ev in session._recorded_events]))
    return got


#: What the scenario's handlers see (stock livekit, checked below too).
EXPECTED = [
    ("on", "hello", False),
    ("on-decorator", "user", "hi there"),
    ("once", 1, "thinking"),
    ("once-decorator", 1, "initializing", "thinking"),
    ("no-arguments",),
    ("no-arguments",),
    ("on", "x", True),
    (
        "recorded",
        [
            "user_input_transcribed",
            "conversation_item_added",
            "agent_state_changed",
            "agent_state_changed",
            "user_input_transcribed",
            "user_input_transcribed",
        ],
    ),
]


def run_scenario(session: Any) -> Tuple[List[Any], Dict[str, int]]:
    with Frames(livekit_emit=ORIGINAL_EMIT, session_emit=AgentSession.emit) as frames:
        got = agents_scenario(session)
    return got, frames.counts


def test_livekit_agents_utils_emitter_is_livekits_class() -> None:
    assert agents.utils.EventEmitter is LkEmitter
    assert issubclass(AgentSession, LkEmitter)
    assert "emit" in AgentSession.__dict__  # the override that made install() refuse before


def test_stock_livekit_runs_the_scenario_in_its_own_emit(loop: asyncio.AbstractEventLoop) -> None:
    """The reference: without install(), every emit is a frame of livekit's emit."""
    got, frames = run_scenario(AgentSession(loop=loop))
    assert got == EXPECTED
    assert frames == {"livekit_emit": 6, "session_emit": 6}


@pytest.mark.parametrize("core", CORES)
def test_agent_session_on_once_decorators_and_emit_run_through_the_core(
    core: str, monkeypatch: pytest.MonkeyPatch, loop: asyncio.AbstractEventLoop
) -> None:
    """AgentSession's emit override records the event and calls super().emit():
    after install() that is the core's (zero frames of livekit's emit), with
    the same handler results as stock livekit."""
    module = import_core(core)
    _livekit._install(module)
    session = AgentSession(loop=loop)
    before = _livekit._dispatcher(module).livekit_snapshot_count()
    reads: List[Any] = []
    real_signature = inspect.signature

    def counting(obj: Any, *args: Any, **kwargs: Any) -> Any:
        reads.append(obj)
        return real_signature(obj, *args, **kwargs)

    monkeypatch.setattr(inspect, "signature", counting)
    got, frames = run_scenario(session)
    monkeypatch.undo()
    assert got == EXPECTED
    assert frames == {"livekit_emit": 0, "session_emit": 6}
    # The dispatcher's per-emitter state (only its emit makes it) holds the session.
    assert _livekit._dispatcher(module).livekit_snapshot_count() == before + 1
    # 5 registrations, each signature read once (stock livekit: once per call, 9).
    assert len(reads) == 5


@pytest.mark.parametrize("core", CORES)
def test_agent_session_created_before_install_is_covered(
    core: str, loop: asyncio.AbstractEventLoop
) -> None:
    session = AgentSession(loop=loop)
    session.on("close", lambda: None)
    _livekit._install(import_core(core))
    got, frames = run_scenario(session)
    assert got == EXPECTED
    assert frames["livekit_emit"] == 0


def test_install_after_importing_livekit_agents_reports_agent_classes() -> None:
    report = livekit_events.install()
    session = report.get(AgentSession)
    assert session is not None
    assert session.emit == "super" and session.through_core
    assert session.overrides[0] == "emit"
    room = report.get(rtc.Room)
    assert room is not None and room.emit == "core"
    for name in ("ipc.proc_pool.ProcPool", "worker.AgentServer", "vad.VAD", "tts.tts.TTS"):
        module_name, _, class_name = f"livekit.agents.{name}".rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name, None)
        if cls is not None:  # names of livekit-agents 1.8; a later release may move them
            entry = report.get(cls)
            assert entry is not None and entry.through_core, name
    assert "livekit.agents.voice.agent_session.AgentSession" in report.through_core


def test_agents_class_defined_after_install_is_covered() -> None:
    livekit_events.install()
    got: List[Any] = []

    class Late(agents.utils.EventEmitter[str]):  # type: ignore[misc]
        def emit(self, event: str, *args: Any) -> None:
            got.append(("recorded", event))
            super().emit(event, *args)

    entry = livekit_events.install_report().get(Late)  # type: ignore[union-attr]
    assert entry is not None and entry.emit == "super"
    late = Late()
    late.on("e", lambda a: got.append(("handler", a)))
    with Frames(livekit_emit=ORIGINAL_EMIT) as frames:
        late.emit("e", 1, 2)
    assert got == [("recorded", "e"), ("handler", 1)]
    assert frames.counts == {"livekit_emit": 0}


# --------------------------------------------------------------------------
# In other processes, as agents apps and their job processes run


def _python(code: str, cwd: Path, env: Optional[Dict[str, str]] = None) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_one_liner_succeeds(tmp_path: Path) -> None:
    """The issue's command: import livekit.agents first, then install()."""
    done = _python(
        "import livekit.agents, livekit_events; report = livekit_events.install(); print(report)",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "super   livekit.agents.voice.agent_session.AgentSession" in done.stdout


CHILD_CHECK = """
def check():
    # Run in a child process: is install() active, and does AgentSession's
    # emit run livekit's own emit (its Python frames, found by file and name)?
    import asyncio, os, sys
    import livekit_events
    from livekit.agents import AgentSession
    from livekit.agents.voice.events import CloseEvent

    def is_livekit_emit(code):
        path = code.co_filename.replace(os.sep, "/")
        return code.co_name == "emit" and path.endswith("livekit/rtc/event_emitter.py")

    frames = []
    got = []
    session = AgentSession(loop=asyncio.new_event_loop())
    session.on("close", lambda ev: got.append(ev.reason))
    sys.setprofile(
        lambda frame, event, arg: frames.append(1)
        if event == "call" and is_livekit_emit(frame.f_code) else None
    )
    session.emit("close", CloseEvent(error=None, reason="user_initiated"))
    sys.setprofile(None)
    report = livekit_events.install_report()
    return {
        "installed": livekit_events.is_installed(),
        "core": report.core if report else None,
        "session": report.get(AgentSession).emit if report else None,
        "emit_frames": len(frames),
        "got": [str(getattr(reason, "value", reason)) for reason in got],
    }
"""


def _write_app(tmp_path: Path) -> None:
    (tmp_path / "agent_app.py").write_text(
        textwrap.dedent(
            """\
            # An agent app's module: install() at its top, after livekit.agents
            # was imported (by the job process, before this module).
            import livekit_events
            livekit_events.install()
            """
        )
    )
    (tmp_path / "job.py").write_text(
        "import json\n"
        + textwrap.dedent(CHILD_CHECK)
        + textwrap.dedent(
            """
            def job_entry(queue, with_app):
                try:
                    import livekit.agents  # first, as livekit-agents' job processes do
                    if with_app:
                        import agent_app  # noqa: F401 - calls install()
                    queue.put(json.dumps(check()))
                except BaseException as exc:  # reported, not waited for
                    queue.put(json.dumps({"error": repr(exc)}))
                    raise
            """
        )
    )


SPAWN_RUNNER = """
import multiprocessing, sys, json
import job

if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    results = []
    for with_app in (True, False):
        queue = context.Queue()
        process = context.Process(target=job.job_entry, args=(queue, with_app))
        process.start()
        results.append(json.loads(queue.get(timeout=240)))
        process.join(60)
    print(json.dumps(results))
"""


def test_spawned_job_process_that_imports_agents_then_an_installing_module_is_installed(
    tmp_path: Path,
) -> None:
    """A multiprocessing ``spawn`` child (as agent job processes are) imports
    livekit.agents, then the app's module, which calls install(): it ends up
    installed, AgentSession's emit runs in the core.  Without the app's
    module (the control), it stays stock."""
    _write_app(tmp_path)
    (tmp_path / "runner.py").write_text(SPAWN_RUNNER)
    done = subprocess.run(
        [sys.executable, "runner.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    with_app, without = json.loads(done.stdout.strip().splitlines()[-1])
    assert with_app == {
        "installed": True,
        "core": livekit_events.IMPLEMENTATION,
        "session": "super",
        "emit_frames": 0,
        "got": ["user_initiated"],
    }
    assert without == {
        "installed": False,
        "core": None,
        "session": None,
        "emit_frames": 1,
        "got": ["user_initiated"],
    }


# --------------------------------------------------------------------------
# livekit-agents' own job processes (its process pool, the way its worker
# starts them): the app's module installs at its top, or the launcher does.

POOL_APP = """
import json, os, sys
if os.environ.get("AGENT_APP_INSTALL") == "1":
    import livekit_events
    livekit_events.install()


def prewarm(proc):
    # Runs in the job process, as an AgentServer's setup/prewarm function does.
    from job import check
    with open(os.path.join(os.environ["AGENT_APP_OUT"], f"{os.getpid()}.json"), "w") as out:
        json.dump(check(), out)


async def entrypoint(ctx):
    pass
"""

POOL_RUNNER = """
import asyncio, inspect, multiprocessing, os, sys
import livekit.agents
try:  # livekit-agents' internals, as of 1.8
    from livekit.agents.ipc.proc_pool import ProcPool
    from livekit.agents.job import JobExecutorType
except ImportError as exc:
    print(f"SKIP {exc}")
    sys.exit(0)
import pool_app


async def main(method):
    ready = asyncio.Event()
    known = dict(
        initialize_process_fnc=pool_app.prewarm, job_entrypoint_fnc=pool_app.entrypoint,
        session_end_fnc=None, simulation_end_fnc=None, num_idle_processes=1,
        initialize_timeout=120, close_timeout=10, session_end_timeout=10,
        inference_executor=None, job_executor_type=JobExecutorType.PROCESS,
        mp_ctx=multiprocessing.get_context(method), memory_warn_mb=0, memory_limit_mb=0,
        http_proxy=None, loop=asyncio.get_running_loop(),
    )
    parameters = inspect.signature(ProcPool).parameters
    missing = [name for name, p in parameters.items()
               if p.default is p.empty and p.kind is p.KEYWORD_ONLY and name not in known]
    if missing:
        print("SKIP ProcPool now needs " + ", ".join(missing))
        return
    pool = ProcPool(**{name: value for name, value in known.items() if name in parameters})
    pool.on("process_ready", lambda proc: ready.set())
    await pool.start()
    await asyncio.wait_for(ready.wait(), 240)
    await pool.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.skipif(
    "forkserver" not in multiprocessing.get_all_start_methods(),
    reason="livekit-agents starts job processes from a forkserver on Linux; none here",
)
def test_livekit_agents_job_processes_end_up_installed(tmp_path: Path) -> None:
    """Three agent apps run livekit-agents' process pool (forkserver, its
    default on Linux) at once: one whose module calls install() at its top,
    one started with ``python -m livekit_events`` and no install() in its
    code, one with neither (the control).  Each job process reports from
    inside livekit-agents' own process set-up."""
    _write_app(tmp_path)
    (tmp_path / "pool_app.py").write_text(POOL_APP)
    (tmp_path / "pool_run.py").write_text(POOL_RUNNER)
    runs: Dict[str, Tuple[List[str], Dict[str, str]]] = {
        "install() at the top": ([sys.executable, "pool_run.py"], {"AGENT_APP_INSTALL": "1"}),
        "launcher": ([sys.executable, "-m", "livekit_events", "pool_run.py"], {}),
        "neither": ([sys.executable, "pool_run.py"], {}),
    }
    processes = {}
    for name, (command, extra) in runs.items():
        out = tmp_path / name.replace(" ", "_").replace("(", "").replace(")", "")
        out.mkdir()
        env = {**os.environ, **extra, "AGENT_APP_OUT": str(out)}
        processes[name] = (
            subprocess.Popen(
                [*command, "forkserver"], cwd=tmp_path, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ),
            out,
        )
    results: Dict[str, Any] = {}
    for name, (process, out) in processes.items():
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, (name, stderr)
        if stdout.startswith("SKIP"):
            pytest.skip(f"livekit-agents' ProcPool changed: {stdout.strip()}")
        (report,) = out.iterdir()  # one job process
        results[name] = json.loads(report.read_text())
    installed = {
        "installed": True,
        "core": livekit_events.IMPLEMENTATION,
        "session": "super",
        "emit_frames": 0,
        "got": ["user_initiated"],
    }
    assert results == {
        "install() at the top": installed,
        "launcher": installed,
        "neither": {**installed, "installed": False, "core": None, "session": None, "emit_frames": 1},
    }
