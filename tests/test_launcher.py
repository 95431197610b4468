"""``python -m livekit_events``: install() in a whole deployment, no code change.

Each test runs the launcher in a subprocess, with this interpreter and the
installed package, on a small program written to a temporary directory.
The program reports, as JSON on its last line, what it saw: that it ran as
``python program.py`` would run it, that ``install()`` became active when
``livekit.rtc`` was imported (not before: the hook is lazy), and the same in
its ``spawn``, ``forkserver`` and ``fork`` children.  The livekit-agents job
processes are in test_livekit_agents.py.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

pytest.importorskip(
    "livekit.rtc",
    reason="the livekit package is not installed (it is in the `test` extra: "
    "pip install 'livekit-events[test]'); .ci/run installs it",
)

import livekit_events  # noqa: E402
from livekit_events import __main__ as launcher  # noqa: E402

pytestmark = pytest.mark.thread_unsafe(reason="starts processes, some of which fork")

START_METHODS = [m for m in ("spawn", "forkserver", "fork") if m in multiprocessing.get_all_start_methods()]

PROGRAM = """
import json, multiprocessing, os, sys

# Nothing of livekit_events is imported before livekit.rtc is: the hook only
# watches for it.
before = "livekit_events" in sys.modules
from livekit import rtc
import livekit_events


def is_livekit_emit(code):
    path = code.co_filename.replace(os.sep, "/")
    return code.co_name == "emit" and path.endswith("livekit/rtc/event_emitter.py")


def state():
    frames = []
    got = []
    emitter = rtc.EventEmitter()
    emitter.on("e", lambda a: got.append(a))
    sys.setprofile(
        lambda frame, event, arg: frames.append(1)
        if event == "call" and is_livekit_emit(frame.f_code) else None
    )
    emitter.emit("e", 1, 2)
    sys.setprofile(None)
    report = livekit_events.install_report()
    return {
        "installed": livekit_events.is_installed(),
        "core": report.core if report else None,
        "emit_frames": len(frames),
        "got": got,
    }


def child(queue):
    try:
        queue.put(state())
    except BaseException as exc:  # reported, not waited for
        queue.put({"error": repr(exc)})
        raise


def main():
    result = {
        "name": __name__,
        "argv": sys.argv[1:],
        "path0": os.path.realpath(sys.path[0]),
        "imported_before_livekit": before,
        "loader": [type(rtc.__loader__).__name__, type(rtc.__spec__.loader).__name__],
        "main": state(),
        "children": {},
    }
    for method in sys.argv[1].split(",") if len(sys.argv) > 1 and sys.argv[1] else []:
        context = multiprocessing.get_context(method)
        queue = context.Queue()
        process = context.Process(target=child, args=(queue,))
        process.start()
        result["children"][method] = queue.get(timeout=120)
        process.join(60)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
"""

INSTALLED = {
    "installed": True,
    "core": livekit_events.IMPLEMENTATION,
    "emit_frames": 0,
    "got": [1],
}
STOCK = {"installed": False, "core": None, "emit_frames": 1, "got": [1]}


def run(
    args: List[str], cwd: Path, env: Optional[Dict[str, str]] = None
) -> "subprocess.CompletedProcess[str]":
    environ = dict(os.environ if env is None else env)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=600
    )


def last_json(done: "subprocess.CompletedProcess[str]") -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def program(tmp_path: Path) -> Path:
    (tmp_path / "program.py").write_text(PROGRAM)
    return tmp_path


def test_script_runs_as_python_would_with_install_in_it_and_its_children(program: Path) -> None:
    methods = ",".join(START_METHODS)
    result = last_json(run(["-m", "livekit_events", "program.py", methods, "x"], program))
    assert result == {
        "name": "__main__",
        "argv": [methods, "x"],
        "path0": os.path.realpath(program),
        "imported_before_livekit": False,
        "loader": ["SourceFileLoader"] * 2,  # livekit.rtc keeps its own loader
        "main": INSTALLED,
        "children": {method: INSTALLED for method in START_METHODS},
    }


def test_without_the_launcher_nothing_is_installed(program: Path) -> None:
    """The control: the same program, run by python itself."""
    methods = ",".join(START_METHODS)
    result = last_json(run(["program.py", methods], program))
    assert result["main"] == STOCK
    assert result["children"] == {method: STOCK for method in START_METHODS}


def test_module_form(program: Path) -> None:
    package = program / "app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text(PROGRAM)
    result = last_json(run(["-m", "livekit_events", "-m", "app.main", "spawn"], program))
    assert result["name"] == "__main__"
    assert result["argv"] == ["spawn"]
    assert result["main"] == INSTALLED
    assert result["children"] == {"spawn": INSTALLED}


def test_exit_status_and_interpreter_options_are_kept(tmp_path: Path) -> None:
    (tmp_path / "exits.py").write_text(
        "import sys\nprint(sys.flags.optimize, sys.flags.dont_write_bytecode, sys._xoptions)\n"
        "sys.exit(7)\n"
    )
    done = run(["-O", "-B", "-X", "custom=1", "-m", "livekit_events", "exits.py"], tmp_path)
    assert done.returncode == 7, done.stderr
    assert done.stdout.split()[:2] == ["1", "1"]
    if sys.version_info >= (3, 10):  # sys.orig_argv: every option, -X ones it doesn't know too
        assert "'custom': '1'" in done.stdout


def test_an_existing_sitecustomize_still_runs(program: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The hook is a sitecustomize; the one it shadows (the user's, a
    distribution's) runs after it, in the program and in its children."""
    own = tmp_path_factory.mktemp("own")
    (own / "sitecustomize.py").write_text(
        "import os\nos.environ['OWN_SITECUSTOMIZE'] = str(int(os.environ.get('OWN_SITECUSTOMIZE', '0')) + 1)\n"
    )
    (program / "marker.py").write_text(
        "import json, multiprocessing, os, sys\n"
        "def child(q):\n    q.put(os.environ.get('OWN_SITECUSTOMIZE'))\n"
        "if __name__ == '__main__':\n"
        "    ctx = multiprocessing.get_context('spawn'); q = ctx.Queue()\n"
        "    p = ctx.Process(target=child, args=(q,)); p.start(); value = q.get(timeout=120); p.join()\n"
        "    import sitecustomize\n"
        "    print(json.dumps([os.environ.get('OWN_SITECUSTOMIZE'), value, sitecustomize.__file__]))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(own), os.environ.get("PYTHONPATH", "")])}
    mine, child, module = last_json(run(["-m", "livekit_events", "marker.py"], program, env))
    # Once in the launcher (python itself ran it), once in the program, once
    # more in the child (which inherits the variable, then runs it again).
    assert (mine, child) == ("2", "3")
    assert Path(module).parent == own


def test_a_failed_install_warns_and_leaves_livekit_working(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text(
        textwrap.dedent(
            """
            import json, sys, warnings
            sys.modules["livekit_events"] = None  # install() can't even be imported
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                from livekit import rtc
            emitter = rtc.EventEmitter()
            got = []
            emitter.on("e", got.append)
            emitter.emit("e", 1)
            print(json.dumps([got, [(w.category.__name__, str(w.message)) for w in caught]]))
            """
        )
    )
    got, caught = last_json(run(["-m", "livekit_events", "broken.py"], tmp_path))
    assert got == [1]
    assert len(caught) == 1
    category, message = caught[0]
    assert category == "RuntimeWarning"
    assert "livekit_events.install() failed in process" in message
    assert "livekit.rtc runs unaccelerated" in message


def test_each_install_by_the_hook_is_logged(tmp_path: Path) -> None:
    (tmp_path / "logs.py").write_text(
        "import logging\nlogging.basicConfig(level=logging.INFO, format='%(name)s %(message)s')\n"
        "import os\nfrom livekit import rtc\nprint(os.getpid())\n"
    )
    done = run(["-m", "livekit_events", "logs.py"], tmp_path)
    assert done.returncode == 0, done.stderr
    pid = done.stdout.split()[-1]
    assert (
        f"livekit_events livekit_events: installed in process {pid} (livekit "
        in done.stderr
    )
    assert f"{livekit_events.IMPLEMENTATION} core)" in done.stderr


def test_check_prints_the_report(tmp_path: Path) -> None:
    done = run(["-m", "livekit_events", "--check"], tmp_path)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("livekit_events.install(): livekit ")
    assert f"{livekit_events.IMPLEMENTATION} core" in first
    assert any(line.startswith("  core    livekit.rtc.room.Room") for line in done.stdout.splitlines())


@pytest.mark.parametrize(
    "args, status, text",
    [
        ([], 2, "usage: python -m livekit_events SCRIPT"),
        (["--help"], 0, "usage: python -m livekit_events SCRIPT"),
        (["--nope"], 2, "unknown option --nope"),
        (["-m"], 2, "usage:"),
        (["--check", "extra"], 2, "usage:"),
    ],
)
def test_usage_errors(tmp_path: Path, args: List[str], status: int, text: str) -> None:
    done = run(["-m", "livekit_events", *args], tmp_path)
    assert done.returncode == status
    assert text in done.stdout + done.stderr


def test_refuses_to_launch_where_the_hook_cannot_run(tmp_path: Path) -> None:
    (tmp_path / "program.py").write_text("print('ran')\n")
    done = run(["-E", "-m", "livekit_events", "program.py"], tmp_path)
    assert done.returncode == 2 and "ran" not in done.stdout
    assert "-E, -I or -S" in done.stderr


def test_launch_environment_puts_the_hook_first_once() -> None:
    hook = launcher.hook_directory()
    assert os.path.isfile(os.path.join(hook, "sitecustomize.py"))
    env = launcher.launch_environment({"PYTHONPATH": os.pathsep.join(["a", hook, "b"])})
    assert env["PYTHONPATH"] == os.pathsep.join([hook, "a", "b"])
    assert launcher.launch_environment(env)["PYTHONPATH"] == env["PYTHONPATH"]
    assert launcher.launch_environment({})["PYTHONPATH"] == hook
