"""The typed API, as mypy and pyright see it.

Both checkers run, in strict mode, on the package and on the files in
tests/typing_cases/, whose ``# E:`` markers say which lines must be flagged
and with which error codes (``# E: mypy[arg-type] pyright[reportArgumentType]``).
The test asserts the exact set: a good usage that gets flagged, a bad one that
no longer is (say, a stub regression that types events as ``Any``), or any
diagnostic in the package itself fails it.

Implementation-independent (type checkers never import the compiled core), so
it runs once, not per implementation.  Needs ``mypy`` and ``basedpyright``
(pyright's engine, shipped in a PyPI wheel together with node); each check
skips with a reason when its checker isn't installed.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

import pytest

pytestmark = pytest.mark.thread_unsafe(reason="runs the type checkers in subprocesses")

CASES_DIR = Path(__file__).resolve().parent / "typing_cases"
# The checkout: the package's source is checked too (it must be clean), and
# the cases import it from there.  Where the tests run without the source
# (copied next to an installed wheel), only the cases are checked, against
# the installed package (its stubs and py.typed).
ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "src" / "livekit_events"
HAVE_SOURCE = (PACKAGE_DIR / "__init__.py").is_file()

Diagnostics = Dict[str, Dict[int, Set[str]]]  # file name -> line -> codes

_MARKER = re.compile(r"#\s*E:(?P<spec>.*)$")
_CHECKER_CODES = re.compile(r"(?P<checker>mypy|pyright)\[(?P<codes>[^\]]*)\]")


def _case_files() -> List[Path]:
    files = [CASES_DIR / "cases.py"]
    if importlib.util.find_spec("livekit") is not None:
        files.append(CASES_DIR / "livekit_cases.py")
    return files


def _expected(checker: str) -> Diagnostics:
    expected: Diagnostics = {}
    for path in _case_files():
        lines = expected.setdefault(path.name, {})
        for number, text in enumerate(path.read_text().splitlines(), start=1):
            marker = _MARKER.search(text)
            if marker is None:
                continue
            for match in _CHECKER_CODES.finditer(marker.group("spec")):
                if match.group("checker") == checker:
                    lines[number] = {c.strip() for c in match.group("codes").split(",")}
    return expected


def _record(found: Diagnostics, file: str, line: int, code: str) -> None:
    path = Path(file)
    if not path.is_absolute():
        path = ROOT / path
    path = path.resolve()
    if path.parent == CASES_DIR:
        name = path.name
    elif PACKAGE_DIR in path.parents:
        name = f"src/livekit_events/{path.relative_to(PACKAGE_DIR)}"
    else:
        name = str(path)
    found.setdefault(name, {}).setdefault(line, set()).add(code)


def _targets() -> List[str]:
    package = [str(PACKAGE_DIR)] if HAVE_SOURCE else []
    return package + [str(p) for p in _case_files()]


def _cwd(tmp_path: Path) -> Path:
    # From the checkout, `import livekit_events` resolves to the source tree;
    # elsewhere, to the installed package.
    return ROOT if HAVE_SOURCE else tmp_path


def _check(checker: str, found: Diagnostics, output: str) -> None:
    expected = {name: lines for name, lines in _expected(checker).items() if lines}
    found = {name: lines for name, lines in found.items() if lines}
    unexpected = {
        f"{name}:{line}": sorted(codes - expected.get(name, {}).get(line, set()))
        for name, lines in found.items()
        for line, codes in lines.items()
        if codes - expected.get(name, {}).get(line, set())
    }
    missing = {
        f"{name}:{line}": sorted(codes - found.get(name, {}).get(line, set()))
        for name, lines in expected.items()
        for line, codes in lines.items()
        if codes - found.get(name, {}).get(line, set())
    }
    assert not unexpected and not missing, (
        f"{checker}: unexpected diagnostics {unexpected}, missing diagnostics {missing}\n"
        f"--- {checker} output ---\n{output}"
    )


class _Run:
    """A checker started in the background; ``result()`` waits for it."""

    def __init__(self, command: List[str], cwd: Path, workdir: Path) -> None:
        self.stdout_path = workdir / "stdout"
        self.stderr_path = workdir / "stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err)

    def result(self) -> Tuple[int, str, str]:
        returncode = self.process.wait(timeout=600)
        return returncode, self.stdout_path.read_text(), self.stderr_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _start_mypy(workdir: Path, cache_dir: Path) -> _Run:
    command = [
        sys.executable, "-m", "mypy",
        "--strict",
        "--python-executable", sys.executable,
        "--cache-dir", str(cache_dir),
        "--no-error-summary", "--show-error-codes", "--no-pretty", "--hide-error-context",
        "--show-absolute-path",
    ]
    pyproject = ROOT / "pyproject.toml"
    if pyproject.is_file():  # the project's own [tool.mypy] settings
        command += ["--config-file", str(pyproject)]
    return _Run(command + _targets(), _cwd(workdir), workdir)


def _start_pyright(workdir: Path) -> _Run:
    # A config of its own, so the result doesn't depend on where the tests run:
    # pyright's strict mode, imports resolved from the checkout (or, without
    # one, from the installed package).
    config = workdir / "pyrightconfig.json"
    config.write_text(
        json.dumps(
            {
                "typeCheckingMode": "strict",
                "pythonVersion": "3.9",
                "extraPaths": [str(ROOT)] if HAVE_SOURCE else [],
                "include": _targets(),
            }
        )
    )
    command = [
        sys.executable, "-m", "basedpyright",
        "--outputjson",
        "--pythonpath", sys.executable,
        "--project", str(config),
    ]
    return _Run(command, _cwd(workdir), workdir)


@pytest.fixture(scope="module")
def checkers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Both checkers, started at once so that they run side by side."""
    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    # mypy's incremental cache makes reruns fast; it is keyed on file contents.
    cache_dir = cache.mkdir("mypy") if cache is not None else tmp_path_factory.mktemp("mypy-cache")
    runs: Dict[str, Optional[_Run]] = {
        "mypy": _start_mypy(tmp_path_factory.mktemp("mypy"), cache_dir)
        if _installed("mypy") else None,
        "basedpyright": _start_pyright(tmp_path_factory.mktemp("pyright"))
        if _installed("basedpyright") else None,
    }
    yield runs
    for run in runs.values():
        if run is not None:
            run.stop()


def _started(checkers: Dict[str, Optional[_Run]], module: str) -> _Run:
    run = checkers[module]
    if run is None:
        pytest.skip(f"{module} is not installed (pip install {module}); the typing check needs it")
    return run


def test_mypy_strict(checkers: Dict[str, Optional[_Run]]) -> None:
    returncode, stdout, stderr = _started(checkers, "mypy").result()
    output = stdout + stderr
    if returncode not in (0, 1):
        pytest.fail(f"mypy did not run (exit {returncode}):\n{output}")
    found: Diagnostics = {}
    line_pattern = re.compile(r"^(?P<file>.+?):(?P<line>\d+): error: .*\[(?P<code>[a-z0-9-]+)\]$")
    for text in stdout.splitlines():
        match = line_pattern.match(text)
        if match is not None:
            _record(found, match.group("file"), int(match.group("line")), match.group("code"))
        elif ": error:" in text:
            pytest.fail(f"unparsed mypy error: {text}\n{output}")
    _check("mypy", found, output)


def test_pyright_strict(checkers: Dict[str, Optional[_Run]]) -> None:
    returncode, stdout, stderr = _started(checkers, "basedpyright").result()
    try:
        report = json.loads(stdout)
    except ValueError:
        pytest.fail(f"pyright did not run (exit {returncode}):\n{stdout}{stderr}")
    found: Diagnostics = {}
    for diagnostic in report["generalDiagnostics"]:
        if diagnostic["severity"] == "information":  # reveal_type and the like
            continue
        _record(
            found,
            diagnostic["file"],
            diagnostic["range"]["start"]["line"] + 1,
            diagnostic.get("rule", diagnostic["severity"]),
        )
    _check("pyright", found, json.dumps(report["generalDiagnostics"], indent=1))
