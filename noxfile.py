"""The project's tasks, as nox sessions.

    nox -l                            # every session
    nox                               # tests and tests_pure on each CPython found, and lint
    nox -s tests-3.12 -- -k emit      # one interpreter; arguments after -- go to pytest
    nox -s freethreaded               # CPython 3.13t with the GIL off
    nox -t wheels -j 2                # the wheel check, two sessions at a time
    nox -t livekit                    # the livekit releases install() supports
    nox -s lint
    nox -s bench bench_ft             # the benchmark (scripts/bench.sh runs these)

``bash scripts/test.sh`` and ``bash scripts/bench.sh`` bootstrap nox into
``.venv-nox`` and run these sessions; ``.ci/run`` runs them all.

Interpreters: a CPython 3.X is looked for as ``python3.X`` on PATH, then in
pyenv's versions, and 3.13t also where scripts/build-freethreaded-python.sh
puts it (or ``$FT_PYTHON``'s directory).  One that isn't found is skipped, or
is an error when the ``CI`` environment variable is set (nox's default).
Nothing is downloaded but packages.

Every session installs the package from this checkout (not editable) and runs
the tests with the ``pytest`` console script from a directory that doesn't put
the source on ``sys.path`` (the ``src/`` layout), so the installed build is
what gets tested.  The compiled core is required unless a session says
otherwise: a failed compile fails the install.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import nox

nox.needs_version = ">=2025.2.9"
nox.options.download_python = "never"
nox.options.sessions = ["tests", "tests_pure", "lint"]

ROOT = Path(__file__).resolve().parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")

#: The suite runs on each of these that is found.
TEST_PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.13t", "3.14t"]
#: The wheel check builds, repairs and tests a wheel on each of these: the
#: CPythons on the machines .ci/run uses (cibuildwheel builds the rest in CI).
WHEEL_PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]

#: Where scripts/build-freethreaded-python.sh builds CPython 3.13t.
FT_PREFIX = Path(
    os.environ.get("LIVEKIT_EVENTS_FT_PREFIX")
    or Path.home() / ".cache" / "freethreaded-python" / "3.13t"
)

BUILD = ROOT / "build"
DIST = BUILD / "wheels"  # the wheel check's sdist, wheels and repaired wheels
BENCH_RESULTS = BUILD / "bench-results"
COMMITTED_RESULTS = ROOT / "benchmarks" / "results"


def _add_interpreter_dirs() -> None:
    """Append pyenv's versions and the free-threaded build to PATH (after
    what is there, so that PATH wins): nox looks interpreters up there."""
    dirs = []
    if os.environ.get("FT_PYTHON"):
        dirs.append(Path(os.environ["FT_PYTHON"]).parent)
    dirs.append(FT_PREFIX / "bin")
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
        versions = Path(root, "versions")
        if versions.is_dir():
            # Newest patch release first, for each minor version.
            def key(p: Path) -> List[int]:
                return [int(n) for n in re.findall(r"\d+", p.name)]

            dirs += [p / "bin" for p in sorted(versions.iterdir(), key=key, reverse=True)]
    os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), *map(str, dirs)])


_add_interpreter_dirs()


def _tools_python() -> str:
    """The newest CPython found that runs the release tools (cibuildwheel
    needs 3.11+)."""
    for version in ("3.13", "3.12", "3.11"):
        if shutil.which(f"python{version}"):
            return version
    return "3.13"


TOOLS_PYTHON = _tools_python()


# --------------------------------------------------------------------------
# Helpers


def _groups(*names: str) -> List[str]:
    return list(nox.project.dependency_groups(PYPROJECT, *names))


def _core_env(compiled: bool) -> Dict[str, Optional[str]]:
    """The build and test environment: the compiled core required, or not
    built at all.  (None removes a variable inherited from outside.)"""
    if compiled:
        return {"LIVEKIT_EVENTS_REQUIRE_EXTENSIONS": "1", "LIVEKIT_EVENTS_NO_EXTENSIONS": None}
    return {"LIVEKIT_EVENTS_REQUIRE_EXTENSIONS": None, "LIVEKIT_EVENTS_NO_EXTENSIONS": "1"}


def _clean_env(**extra: str) -> Dict[str, Optional[str]]:
    """For the wheel check: nothing from outside that could change what gets
    built or point an interpreter at the source tree."""
    prefixes = ("LIVEKIT_EVENTS_", "CIBW_", "PYTHON", "PIP_REQUIRE")
    env: Dict[str, Optional[str]] = {k: None for k in os.environ if k.startswith(prefixes)}
    env.update(PYTHONNOUSERSITE="1", **extra)
    return env


def _free_threaded(session: nox.Session) -> bool:
    out = session.run(
        "python", "-c", "import sysconfig; print(bool(sysconfig.get_config_var('Py_GIL_DISABLED')))",
        silent=True,
    )
    return str(out).strip().endswith("True")


def _install(
    session: nox.Session,
    *requirements: str,
    groups: tuple = ("test", "typing"),
    compiled: bool = True,
    package: str = ".",
) -> None:
    """Install the dependency groups and requirements, then the package
    (rebuilt, so a reused venv gets the current sources)."""
    binary_only: List[str] = []
    if _free_threaded(session):
        # Binary wheels only for the dependencies on free-threaded CPython
        # (some build a native part from source there), and no type checkers.
        binary_only = ["--only-binary", ":all:"]
        groups = tuple(g for g in groups if g != "typing")
    deps = [*_groups(*groups), *requirements]
    if deps:
        session.install(*binary_only, *deps)
    session.install("--no-deps", "--force-reinstall", package, env=_core_env(compiled))


def _check_gil_off(session: nox.Session) -> None:
    """Importing the compiled core leaves the GIL off (a RuntimeWarning from
    CPython re-enabling it is an error)."""
    session.log("importing the compiled core leaves the GIL off")
    with session.chdir(ROOT / "tests"):
        session.run(
            "python", "-W", "error::RuntimeWarning", "-c",
            "import sys, livekit_events, livekit_events._core_c\n"
            "assert livekit_events.IMPLEMENTATION == 'compiled', livekit_events.IMPLEMENTATION\n"
            "assert not sys._is_gil_enabled(), 'importing livekit_events turned the GIL on'\n"
            "print(sys.version.split()[0], 'free-threaded, GIL off after import')",
        )


def _print_versions(session: nox.Session, *names: str) -> None:
    session.run(
        "python", "-c",
        "import sys, importlib.metadata as m\n"
        "for name in sys.argv[1:]:\n"
        "    try: print(name, m.version(name))\n"
        "    except m.PackageNotFoundError: print(name, 'not installed')",
        *names,
    )


def _sdist() -> Path:
    found = sorted(DIST.glob("livekit_events-*.tar.gz"))
    if len(found) != 1:
        raise SystemExit(f"expected one sdist in {DIST} (run the sdist session): {found}")
    return found[0]


def _tests_from_sdist(session: nox.Session) -> Path:
    """The tests (and what they load), out of the sdist, in a directory that
    holds no package source."""
    dest = Path(session.create_tmp()) / "tests-run"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    with tarfile.open(_sdist()) as archive:
        top = archive.getnames()[0].split("/")[0]
        wanted = tuple(
            f"{top}/{name}"
            for name in ("tests/", "pyproject.toml", "conftest.py", "README.md", "docs/")
        )  # the docs' code blocks are tests too (conftest.py at the root)
        members = [m for m in archive.getmembers() if m.name.startswith(wanted)]
        for member in members:
            member.name = member.name[len(top) + 1 :]
        if hasattr(tarfile, "data_filter"):
            archive.extractall(dest, members=members, filter="data")
        else:
            archive.extractall(dest, members=members)
    return dest


def _run_installed_tests(session: nox.Session, tests_dir: Path) -> None:
    """The compiled core in the venv is what gets imported; then the suite."""
    with session.chdir(tests_dir):
        where = str(
            session.run(
                "python", "-c",
                "import livekit_events as m; print(m.__file__); print(m.IMPLEMENTATION)",
                silent=True,
            )
        ).split()
        venv = Path(session.virtualenv.location).resolve()
        if venv not in Path(where[-2]).resolve().parents or where[-1] != "compiled":
            session.error(f"imported {where[-2]} ({where[-1]}), not the compiled core in {venv}")
        session.run("pytest", "-p", "no:cacheprovider", *session.posargs)


# --------------------------------------------------------------------------
# The test suite


@nox.session(python=TEST_PYTHONS, tags=["tests"])
def tests(session: nox.Session) -> None:
    """The suite on both cores, the compiled one required; args go to pytest.

    The pure twin ships in the same install, so one run tests both."""
    _install(session)
    if _free_threaded(session):
        _check_gil_off(session)
    session.run("pytest", *session.posargs, env=_core_env(True))


@nox.session(python=TEST_PYTHONS, tags=["tests"])
def tests_pure(session: nox.Session) -> None:
    """The suite against a pure-Python install (no extension built)."""
    _install(session, compiled=False)
    session.run("pytest", "--no-c-extensions", *session.posargs, env=_core_env(False))


@nox.session(python=False, default=False)
def freethreaded_python(session: nox.Session) -> None:
    """Build CPython 3.13t once (cached outside the checkout), unless $FT_PYTHON.

    scripts/build-freethreaded-python.sh: about 10 minutes on 2 cores."""
    if os.environ.get("FT_PYTHON"):
        session.log(f"using FT_PYTHON={os.environ['FT_PYTHON']}")
        return
    session.run("bash", str(ROOT / "scripts" / "build-freethreaded-python.sh"), str(FT_PREFIX))


@nox.session(
    python="3.13t", venv_backend="venv", requires=["freethreaded_python"], default=False,
    tags=["freethreaded"],
)
def freethreaded(session: nox.Session) -> None:
    """CPython 3.13t, GIL off: the suite, the suite in 4 threads, the hammer.

    Importing the compiled core must leave the GIL off; then the whole suite;
    then every thread-safe test in 4 threads at once (pytest-run-parallel);
    then the concurrency hammer on both cores, each run under a timeout so
    that a hang fails instead of stalling.  HAMMER_RUNS and HAMMER_SECONDS set
    the hammer's length (3 runs of 5 s per core)."""
    _install(session)
    _check_gil_off(session)
    env = _core_env(True)
    session.run("pytest", "-q", "-p", "no:cacheprovider", *session.posargs, env=env)
    session.run(
        "pytest", "-q", "-p", "no:cacheprovider", "--parallel-threads=4", *session.posargs, env=env
    )
    runs = int(os.environ.get("HAMMER_RUNS", "3"))
    seconds = float(os.environ.get("HAMMER_SECONDS", "5"))
    session.log(f"the concurrency hammer: {runs} runs of {seconds:g} s per core")
    with session.chdir(ROOT / "tests"):
        for _ in range(runs):
            for core in ("compiled", "pure"):
                session.run(
                    "timeout", str(int(seconds) + 120), "python", "concurrency_hammer.py",
                    "--core", core, "--seconds", str(seconds), env=env, external=True,
                )


@nox.session(default=False)
def valgrind(session: nox.Session) -> None:
    """Memory safety under valgrind memcheck: scripts/valgrind.sh (QUICK=1: short).

    Needs valgrind on the machine (apt-get install valgrind)."""
    _install(session, groups=("test",))
    python = Path(session.virtualenv.location) / "bin" / "python"
    session.run("bash", "scripts/valgrind.sh", env={"PYTHON": str(python)}, external=True)


# --------------------------------------------------------------------------
# The livekit releases install() supports, resolved from PyPI at run time
# (no pinned versions)


@nox.session(default=False, tags=["livekit"])
@nox.parametrize("line", [nox.param("1.1", id="1.1"), nox.param("1.2", id="1.2")])
def livekit(session: nox.Session, line: str) -> None:
    """The tests against one livekit line install() supports.

    1.1: the newest livekit-agents and the newest livekit of the 1.1 line it
    accepts (agents 1.8 pins livekit 1.1.21), the whole suite (the
    livekit-agents tests included).  1.2: the newest livekit 1.2.x, the tests
    that use livekit; then the last set-based livekit (before 1.1.20) must be
    refused with a message naming the minimum version."""
    if line == "1.1":
        _install(session, "livekit-agents", "livekit>=1.1.20,<1.2")
        _print_versions(session, "livekit", "livekit-agents")
        session.run(
            "python", "-c", "import livekit.agents, livekit_events; livekit_events.install()"
        )
        session.run("pytest", "-q", "-p", "no:cacheprovider", *session.posargs)
        return
    _install(session, "livekit>=1.2,<1.3")
    _print_versions(session, "livekit", "livekit-agents")
    session.run(
        "pytest", "-q", "-p", "no:cacheprovider",
        *(session.posargs or [
            "tests/test_livekit_install.py", "tests/test_launcher.py",
            "tests/test_async.py", "tests/test_livekit_agents.py",
        ]),
    )
    session.log("livekit before 1.1.20 (handlers in sets): refused")
    session.install("livekit<1.1.20")
    session.run(
        "python", "-c",
        "import importlib.metadata, livekit_events\n"
        "version = importlib.metadata.version('livekit')\n"
        "try:\n"
        "    livekit_events.install()\n"
        "except livekit_events.LivekitIncompatibleError as exc:\n"
        "    assert 'needs livekit 1.1.20 or later' in str(exc), exc\n"
        "    print(f'livekit {version}: refused, naming 1.1.20')\n"
        "else:\n"
        "    raise SystemExit(f'livekit {version}: install() was expected to refuse')",
    )


# --------------------------------------------------------------------------
# The wheel check: an sdist; from it, a wheel per CPython, repaired to a
# manylinux tag and inspected; each wheel, and the sdist on its own, tested
# installed in a fresh venv; the release configuration.


@nox.session(python=TOOLS_PYTHON, tags=["wheels"], default=False)
def sdist(session: nox.Session) -> None:
    """The sdist, into build/wheels/ (emptied first); twine check --strict.

    It must hold no build products (.c, .so, .pyc)."""
    session.install(*_groups("wheels"))
    shutil.rmtree(DIST, ignore_errors=True)
    session.run("python", "-m", "build", "--sdist", "--outdir", str(DIST), env=_clean_env())
    built = _sdist()
    with tarfile.open(built) as archive:
        junk = [n for n in archive.getnames() if re.search(r"\.(c|so|pyd|pyc)$|__pycache__", n)]
    if junk:
        session.error(f"build products in the sdist: {junk[:5]}")
    session.run("twine", "check", "--strict", str(built))


@nox.session(python=WHEEL_PYTHONS, tags=["wheels"], default=False, requires=["sdist"],
             allow_parallel=True)
def wheel(session: nox.Session) -> None:
    """This interpreter's wheel, built from the sdist (compiled core required).

    Into build/wheels/raw/."""
    out = DIST / "raw"
    for old in out.glob(f"*-cp{session.python.replace('.', '')}-*.whl"):  # type: ignore[union-attr]
        old.unlink()
    session.run(
        "python", "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(_sdist()),
        env=_clean_env(LIVEKIT_EVENTS_REQUIRE_EXTENSIONS="1"),
    )


@nox.session(python=TOOLS_PYTHON, tags=["wheels"], default=False, requires=["wheel"])
def wheel_check(session: nox.Session) -> None:
    """auditwheel repair, check-wheel-contents and twine check on the wheels.

    Each wheel is repaired to a manylinux tag (into build/wheels/repaired/);
    twine check --strict covers the sdist too."""
    session.install(*_groups("wheels"))
    raw = sorted((DIST / "raw").glob("*.whl"))
    if not raw:
        session.error("no wheels were built")
    repaired_dir = DIST / "repaired"
    shutil.rmtree(repaired_dir, ignore_errors=True)
    for built in raw:
        session.run("auditwheel", "repair", "-w", str(repaired_dir), str(built), env=_clean_env())
    repaired = sorted(repaired_dir.glob("*.whl"))
    not_manylinux = [w.name for w in repaired if not re.search(r"[-.]manylinux_\d+_\d+_", w.name)]
    if len(repaired) != len(raw) or not_manylinux:
        session.error(f"auditwheel gave {[w.name for w in repaired]}: not one manylinux wheel each")
    session.run("check-wheel-contents", *map(str, repaired), env=_clean_env())
    session.run("twine", "check", "--strict", str(_sdist()), *map(str, repaired))


@nox.session(python=WHEEL_PYTHONS, tags=["wheels"], default=False, requires=["wheel_check"],
             allow_parallel=True)
def wheel_test(session: nox.Session) -> None:
    """The suite against this interpreter's repaired wheel, in a fresh venv.

    The venv holds the wheel and the test groups; the tests are copied out of
    the sdist (so that it is complete too) into a directory without the
    package source."""
    tag = "cp" + str(session.python).replace(".", "")
    found = sorted((DIST / "repaired").glob(f"*-{tag}-{tag}-*.whl"))
    if len(found) != 1:
        session.error(f"expected one {tag} wheel in {DIST / 'repaired'}: {found}")
    session.install(*_groups("test", "typing"))
    session.install("--no-deps", str(found[0]), env=_clean_env())
    _run_installed_tests(session, _tests_from_sdist(session))


@nox.session(python=WHEEL_PYTHONS[-1], tags=["wheels"], default=False, requires=["sdist"],
             allow_parallel=True)
def sdist_test(session: nox.Session) -> None:
    """The suite against the sdist, installed on its own in a fresh venv.

    Built with the compiled core required, with the test groups beside it."""
    session.install(*_groups("test", "typing"))
    session.install("--no-deps", str(_sdist()), env=_clean_env(LIVEKIT_EVENTS_REQUIRE_EXTENSIONS="1"))
    _run_installed_tests(session, _tests_from_sdist(session))


EXPECTED_IDENTIFIERS = ROOT / "scripts" / "expected_build_identifiers.txt"
#: What the wheels workflow promises: every CPython on every platform/arch.
PROMISED_PYTHONS = {"cp39", "cp310", "cp311", "cp312", "cp313", "cp314", "cp313t", "cp314t"}
PROMISED_PLATFORMS = {
    "linux": {"manylinux_x86_64", "manylinux_aarch64", "musllinux_x86_64", "musllinux_aarch64"},
    "macos": {"macosx_x86_64", "macosx_arm64"},
    "windows": {"win_amd64", "win_arm64"},
}


def _expected_identifiers() -> Dict[str, List[str]]:
    sections: Dict[str, List[str]] = {}
    current: Optional[List[str]] = None
    for raw in EXPECTED_IDENTIFIERS.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"\[(\w+)\]", line)
        if match:
            current = sections.setdefault(match.group(1), [])
        elif current is None:
            raise SystemExit(f"{EXPECTED_IDENTIFIERS}: identifier outside a [platform] section")
        else:
            current.append(line)
    return sections


@nox.session(python=TOOLS_PYTHON, tags=["wheels"], default=False, allow_parallel=True)
def release_config(session: nox.Session) -> None:
    """cibuildwheel's build identifiers as expected; actionlint and zizmor clean.

    scripts/expected_build_identifiers.txt must still promise CPython
    3.9-3.14, 3.13t and 3.14t on every platform and architecture, and
    `cibuildwheel --print-build-identifiers` print exactly that for linux,
    macos and windows; actionlint and zizmor must report nothing on
    .github/."""
    session.install(*_groups("release"))
    expected = _expected_identifiers()
    for platform, targets in PROMISED_PLATFORMS.items():
        seen: Dict[str, set] = {}
        for identifier in expected.get(platform, []):
            python, _, target = identifier.partition("-")
            seen.setdefault(target, set()).add(python)
        for target in sorted(targets):
            missing = PROMISED_PYTHONS - seen.get(target, set())
            if missing:
                session.error(f"{EXPECTED_IDENTIFIERS.name}: {platform}/{target} lacks {sorted(missing)}")
    for platform in ("linux", "macos", "windows"):
        output = str(
            session.run(
                "cibuildwheel", "--print-build-identifiers", "--platform", platform, str(ROOT),
                silent=True, env=_clean_env(),
            )
        )
        actual = [line.strip() for line in output.splitlines() if re.match(r"(cp|pp|gp)\d", line)]
        wanted = expected.get(platform, [])
        if actual != wanted:
            session.error(
                f"{platform}: cibuildwheel --print-build-identifiers differs from "
                f"{EXPECTED_IDENTIFIERS.name}: missing {sorted(set(wanted) - set(actual)) or 'nothing'}, "
                f"unexpected {sorted(set(actual) - set(wanted)) or 'nothing'}"
            )
        session.log(f"{platform}: {len(actual)} build identifiers, as expected")
    workflows = sorted(map(str, (ROOT / ".github" / "workflows").glob("*.y*ml")))
    if not workflows:
        session.error("no workflows in .github/workflows")
    session.run("actionlint", *workflows)  # (runs shellcheck on the run: scripts)
    session.run("zizmor", "--offline", str(ROOT / ".github"))


# --------------------------------------------------------------------------
# Lint


@nox.session(tags=["lint"])
def lint(session: nox.Session) -> None:
    """ruff, cython-lint, mypy and basedpyright (strict) on the package; the C
    headers compiled alone with warnings as errors against every CPython found,
    and clang-format (scripts/check_c.py).

    The type checkers see a pure install, with livekit for its types."""
    _install(session, groups=("test", "lint"), compiled=False)
    session.run("ruff", "check", ".")
    session.run("cython-lint", *map(str, sorted((ROOT / "src").rglob("*.pyx"))))
    session.run("mypy")
    session.run("basedpyright")
    session.run("python", "scripts/check_c.py")


# --------------------------------------------------------------------------
# Benchmarks


def _bench_run_dir() -> Path:
    """Where this run's results go: build/bench-results/<UTC time>/, or
    $LIVEKIT_EVENTS_BENCH_DIR (scripts/bench.sh sets it, so that every
    session of one run writes to the same place)."""
    chosen = os.environ.get("LIVEKIT_EVENTS_BENCH_DIR")
    if not chosen:
        chosen = str(BENCH_RESULTS / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        os.environ["LIVEKIT_EVENTS_BENCH_DIR"] = chosen
    path = Path(chosen)
    return path if path.is_absolute() else ROOT / path


@nox.session(default=False, tags=["bench"])
def bench(session: nox.Session) -> None:
    """The benchmark, into build/bench-results/<time>/; args go to compare.py.

    benchmarks/compare.py (table, targets, plots), then the thread benchmark
    on this interpreter.  `-- pytest ARGS` runs the pytest-benchmark suites
    instead.  The committed benchmarks/results/ is updated only by the
    bench_publish session."""
    _install(session, groups=("bench",))
    # Run as scripts (never `python -m` from the checkout root), so nothing
    # but the installed package can be imported.
    session.run("python", "benchmarks/build_floor.py", silent=True)
    if session.posargs[:1] == ["pytest"]:
        session.run("pytest", "benchmarks/", *session.posargs[1:])
        return
    out = _bench_run_dir()
    session.run("python", "benchmarks/compare.py", "--output", str(out), *session.posargs)
    quick = ["--quick"] if "--quick" in session.posargs else []
    with session.chdir(ROOT / "benchmarks"):
        session.run("python", "bench_threads.py", *quick, "--json", str(out / "threads-gil.json"))
    session.log(f"results in {out.relative_to(ROOT) if ROOT in out.parents else out}")


@nox.session(python="3.13t", venv_backend="venv", default=False, tags=["bench"])
def bench_ft(session: nox.Session) -> None:
    """The thread benchmark on free-threaded CPython 3.13t, GIL off.

    Skipped when no 3.13t is found (bash scripts/build-freethreaded-python.sh
    builds one)."""
    if session.posargs[:1] == ["pytest"]:
        session.skip("the pytest-benchmark suites run in the bench session")
    session.install("--only-binary", ":all:", "Cython>=3.1,<4", "setuptools>=64")
    session.install("--no-deps", "--force-reinstall", ".", env=_core_env(True))
    out = _bench_run_dir()
    quick = ["--quick"] if "--quick" in session.posargs else []
    with session.chdir(ROOT / "benchmarks"):
        session.run("python", "bench_threads.py", *quick, "--json", str(out / "threads-ft.json"))


@nox.session(python=False, default=False, tags=["bench"])
def bench_publish(session: nox.Session) -> None:
    """Copy a full benchmark run's results into the committed benchmarks/results/.

    The run in $LIVEKIT_EVENTS_BENCH_DIR, else the newest under
    build/bench-results/.  A partial run (--quick, --only, --max-handlers)
    is refused."""
    if os.environ.get("LIVEKIT_EVENTS_BENCH_DIR"):
        run = _bench_run_dir()
    else:
        runs = sorted(p for p in BENCH_RESULTS.glob("*/") if (p / "results.json").is_file())
        if not runs:
            session.error(f"no benchmark run in {BENCH_RESULTS}")
        run = runs[-1]
    info = json.loads((run / "results.json").read_text())
    if info.get("partial", True):
        session.error(f"{run} is a partial run ({info.get('command')}): not published")
    names = ["results.md", "results.json", "fanout.png", "scaling.png", "threads-gil.json",
             "threads-ft.json"]
    missing = [n for n in names if not (run / n).is_file()]
    if missing:
        session.warn(f"{run} has no {', '.join(missing)}: those committed files are left as they are")
    for name in names:
        if (run / name).is_file():
            shutil.copy2(run / name, COMMITTED_RESULTS / name)
    session.log(f"benchmarks/results/ updated from {run}")


if __name__ == "__main__":
    sys.exit("run this file with nox (bash scripts/test.sh bootstraps it)")
