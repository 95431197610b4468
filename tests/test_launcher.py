"""``python -m livekit_events``: install() in a whole deployment, no code change.

Each test runs the launcher in a subprocess, with this interpreter and the
installed package, on a small program written to a temporary directory.
The program reports, as JSON on its last line, what it saw: that it ran as
``python program.py`` would run it, that ``install()`` became active when
``livekit.rtc`` was imported (not before: the hook is lazy), and the same in
its ``spawn``, ``forkserver`` and ``fork`` children.  The livekit-agents job
processes are in test_livekit_agents.py.

Other tests compare ``sys.path`` under the launcher with plain python's, and
run other interpreters from a launched program (those found on ``PATH`` or
with pyenv, and a virtual environment without livekit_events): the hook they
inherit must be silent there and run their own ``sitecustomize``.
"""

from __future__ import annotations

import glob
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

pytest.importorskip(
    "livekit.rtc",
    reason="the livekit package is not installed (pip install livekit, or the `test` "
    "dependency group: pip install --group test)",
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


def test_check_without_livekit_says_what_to_install(tmp_path: Path) -> None:
    """livekit is a separate install: --check says so, exits 1, no traceback."""
    shadow = tmp_path / "shadow" / "livekit"  # first on sys.path: livekit "missing"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'livekit'\", name='livekit')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(shadow.parent))
    done = run(["-m", "livekit_events", "--check"], tmp_path, env)
    assert done.returncode == 1
    assert "pip install livekit" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


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


def test_launch_environment_adds_the_hook_and_keeps_the_rest_as_it_is() -> None:
    hook = launcher.hook_directory()
    assert os.path.isfile(os.path.join(hook, "sitecustomize.py"))
    sep = os.pathsep
    for given, expected in [
        (None, hook),
        ("", hook),  # an empty PYTHONPATH adds nothing to sys.path
        ("a", f"{hook}{sep}a"),
        # Empty entries mean the working directory: kept, and in their place.
        (f"{sep}a", f"{hook}{sep}{sep}a"),
        (f"a{sep}", f"{hook}{sep}a{sep}"),
        (f"a{sep}{sep}b", f"{hook}{sep}a{sep}{sep}b"),
        (sep, f"{hook}{sep}{sep}"),
        # The hook somewhere else is the user's: left where it is.
        (f"a{sep}{hook}{sep}b", f"{hook}{sep}a{sep}{hook}{sep}b"),
    ]:
        environ = {"OTHER": "x"} if given is None else {"OTHER": "x", "PYTHONPATH": given}
        env = launcher.launch_environment(environ)
        assert env == {"OTHER": "x", "PYTHONPATH": expected}, given
        # Launching from a launched program adds nothing more.
        assert launcher.launch_environment(env) == env


PATH_PROGRAM = """
import json, subprocess, sys
try:
    import cwdmod
    found = True
except ImportError:
    found = False
child = subprocess.run(
    [sys.executable, "-c", "import json, sys; print(json.dumps(sys.path))"],
    capture_output=True, text=True, check=True,
)
print(json.dumps({"path": sys.path, "cwdmod": found, "child": json.loads(child.stdout)}))
"""


@pytest.mark.parametrize(
    "pythonpath", [None, "", "{sep}{lib}", "{lib}{sep}", "{lib}{sep}{sep}{lib}"]
)
def test_sys_path_is_what_python_gives(tmp_path: Path, pythonpath: Optional[str]) -> None:
    """Under the launcher the program, and the Python processes it starts, get
    the sys.path python itself gives them: the user's PYTHONPATH as it is
    (an empty entry means the working directory), without the hook's directory."""
    (tmp_path / "cwdmod.py").write_text("")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "program.py").write_text(PATH_PROGRAM)
    (tmp_path / "lib").mkdir()
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath.format(sep=os.pathsep, lib=tmp_path / "lib")
    plain = last_json(run(["app/program.py"], tmp_path, env))
    launched = run(["-m", "livekit_events", "app/program.py"], tmp_path, env)
    assert launched.stderr == ""
    assert last_json(launched) == plain
    # The modules of the working directory import when PYTHONPATH has an empty entry.
    value = env.get("PYTHONPATH", "")
    assert plain["cwdmod"] == (value != "" and "" in value.split(os.pathsep))
    assert launcher.hook_directory() not in plain["path"] + plain["child"]


def find_python(version: str) -> Optional[str]:
    """An interpreter of that version (``python2.7`` on PATH, or one pyenv
    has), or None."""
    candidates: List[str] = []
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(on_path)
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
        if root:
            for pattern in (version, f"{version}.*"):
                candidates += sorted(
                    glob.glob(os.path.join(root, "versions", pattern, "bin", f"python{version}"))
                )
    for candidate in candidates:
        try:
            done = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True, text=True, timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip() == version:
            return candidate
    return None


# Run by other interpreters (Python 2.7 included) started by a launched program.
CHILD = """
import json, sys, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import livekit.rtc
import sitecustomize
print(json.dumps({
    "own": getattr(sitecustomize, "OWN", None),
    "path": sys.path,
    "warnings": [str(w.message) for w in caught],
    "stub": livekit.rtc.STUB,
}))
"""

# The launched program: runs CHILD with another interpreter, which inherits
# its environment (PYTHONPATH with the hook's directory in it).
SPAWNER = """
import json, subprocess, sys
child = subprocess.run([sys.argv[1], "-c", sys.argv[2]], capture_output=True, text=True)
print(json.dumps({"returncode": child.returncode, "stdout": child.stdout, "stderr": child.stderr}))
"""


def write_own_site(directory: Path, marker: str) -> None:
    """A sitecustomize of the user's (or a distribution's), and a stand-in for
    livekit.rtc (the other interpreter has no livekit)."""
    (directory / "sitecustomize.py").write_text(f"OWN = {marker!r}\n")
    (directory / "livekit" / "rtc").mkdir(parents=True)
    (directory / "livekit" / "__init__.py").write_text("")
    (directory / "livekit" / "rtc" / "__init__.py").write_text("STUB = True\n")


def assert_hook_is_silent_in(interpreter: str, cwd: Path, env: Dict[str, str], own: str) -> None:
    spawner = run(["-m", "livekit_events", "spawner.py", interpreter, CHILD], cwd, env)
    assert spawner.stderr == ""
    child = last_json(spawner)
    assert child["stderr"] == ""
    assert child["returncode"] == 0
    launched = json.loads(child["stdout"])
    plain = subprocess.run(
        [interpreter, "-c", CHILD], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert plain.returncode == 0 and plain.stderr == "", plain.stderr
    assert launched == json.loads(plain.stdout)
    assert launched["own"] == own  # the sitecustomize the hook shadows ran
    assert launched["warnings"] == []
    assert launcher.hook_directory() not in launched["path"]


@pytest.mark.parametrize(
    "version", ["2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]
)
def test_the_hook_is_silent_in_other_interpreters(tmp_path: Path, version: str) -> None:
    """Python processes of other interpreters started by the program inherit
    the hook: it runs their own sitecustomize and does nothing else, silently
    (livekit_events is not supported there, or not installed)."""
    interpreter = find_python(version)
    if interpreter is None:
        pytest.skip(f"no Python {version} found (on PATH or with pyenv)")
    own = tmp_path / "own"
    own.mkdir()
    write_own_site(own, "own")
    (tmp_path / "spawner.py").write_text(SPAWNER)
    env = {**os.environ, "PYTHONPATH": str(own)}
    importable = subprocess.run(
        [interpreter, "-c", "import livekit_events"], cwd=tmp_path, env=env, capture_output=True
    )
    if importable.returncode == 0:
        pytest.skip(f"livekit_events is installed for {interpreter}")
    assert_hook_is_silent_in(interpreter, tmp_path, env, "own")


def test_the_hook_is_silent_in_a_venv_without_livekit_events(tmp_path: Path) -> None:
    """A program's subprocess in another virtual environment (this Python,
    no livekit_events there) imports livekit.rtc: no warning, and the venv's
    own sitecustomize runs."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    venv = tmp_path / "venv"
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=600)
    bindir = "Scripts" if os.name == "nt" else "bin"
    interpreter = str(venv / bindir / ("python.exe" if os.name == "nt" else "python"))
    purelib = subprocess.run(
        [interpreter, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    write_own_site(Path(purelib), "venv")
    (tmp_path / "spawner.py").write_text(SPAWNER)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    assert_hook_is_silent_in(interpreter, tmp_path, env, "venv")
