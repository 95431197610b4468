"""Check the compiled core's C headers: warnings as errors, and clang-format.

    python scripts/check_c.py [--python PYTHON ...] [--cc CC] [--skip-format] [--skip-compile]

1. Each header in src/livekit_events (``*.h``) is compiled as its own
   translation unit, with ``-std=c11 -Wall -Wextra -Wpedantic -Werror``
   (C11 plus the GNU builtins the code asks for by name: ``__atomic_*``,
   ``__thread``, ``__attribute__``), against the Python headers of every
   interpreter given with ``--python``, else of every CPython 3.9-3.14 found
   (pyenv's, else ``python3.X`` on PATH) and every free-threaded 3.13t/3.14t
   found (``python3.13t`` on PATH, else the one
   scripts/build-freethreaded-python.sh caches), so that each version branch
   of _compat.h and the free-threaded (``Py_GIL_DISABLED``) branches are
   compiled.  Python's headers are included as system headers: their own
   warnings aren't ours.  ``-Wno-unused-function`` only: a header of static
   functions compiled alone uses none of them (the extension's strict build,
   ``LIVEKIT_EVENTS_STRICT_C=1``, keeps that warning for the real use).
2. ``clang-format --dry-run -Werror`` on the headers (.clang-format at the
   root).  clang-format is on PyPI (``pip install clang-format``); its version
   is pinned below because formatting changes between releases.

Exits non-zero if a check fails, or if no interpreter or no clang-format is
found.  The .pyx is linted by cython-lint, separately.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "livekit_events"
CLANG_FORMAT_VERSION = "23.1"  # the major.minor .clang-format is checked with
MINORS = range(9, 15)
FREE_THREADED = ("3.13t", "3.14t")
WARNINGS = ["-Wall", "-Wextra", "-Wpedantic", "-Werror", "-Wno-unused-function"]
PROBE = (
    "import sys, sysconfig; print(sys.implementation.name, '%d.%d.%d' % sys.version_info[:3], "
    "int(bool(sysconfig.get_config_var('Py_GIL_DISABLED'))), sysconfig.get_paths()['include'])"
)


def headers() -> list[Path]:
    return sorted(PACKAGE.glob("*.h"))


def candidate_interpreters() -> list[str]:
    found: list[str] = []
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=True)
            names = subprocess.run(
                [pyenv, "versions", "--bare"], capture_output=True, text=True, check=True
            )
        except (OSError, subprocess.CalledProcessError):
            names = None
        if names is not None:
            best: dict[int, tuple[int, str]] = {}
            for name in names.stdout.split():
                match = re.fullmatch(r"3\.(\d+)\.(\d+)", name)
                if match and int(match.group(1)) in MINORS:
                    minor, patch = int(match.group(1)), int(match.group(2))
                    if minor not in best or patch > best[minor][0]:
                        best[minor] = (patch, name)
            for minor, (_, name) in sorted(best.items()):
                path = Path(root.stdout.strip()) / "versions" / name / "bin" / f"python3.{minor}"
                found.append(str(path))
    for minor in MINORS:
        on_path = shutil.which(f"python3.{minor}")
        if on_path:
            found.append(on_path)
    # scripts/build-freethreaded-python.sh's cache (the same default place).
    prefix = os.environ.get("LIVEKIT_EVENTS_FT_PREFIX") or os.path.expanduser(
        "~/.cache/freethreaded-python/3.13t"
    )
    for version in FREE_THREADED:
        on_path = shutil.which(f"python{version}")
        if on_path:
            found.append(on_path)
    found.append(os.path.join(prefix, "bin", "python3.13t"))
    return found


def probe(python: str) -> tuple[str, bool, str] | None:
    """(version, free-threaded, include directory), or None if not a CPython."""
    try:
        out = subprocess.run(
            [python, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
        ).stdout.split(maxsplit=3)
    except (OSError, subprocess.SubprocessError):
        return None
    if len(out) != 4 or out[0] != "cpython":
        return None
    return out[1], out[2] == "1", out[3].strip()


def interpreters(given: list[str]) -> list[tuple[str, str, str]]:
    """(label, executable, include directory) for each distinct interpreter."""
    seen: dict[str, tuple[str, str, str]] = {}
    for python in given or candidate_interpreters():
        info = probe(python)
        if info is None:
            if given:
                sys.exit(f"check_c: {python} is not a CPython interpreter")
            continue
        version, free_threaded, include = info
        label = version + ("t" if free_threaded else "")
        if not os.path.isfile(os.path.join(include, "Python.h")):
            print(f"check_c: {label} ({python}) has no Python.h: skipped", file=sys.stderr)
            continue
        # One interpreter per minor version and build: the first found.
        key = ".".join(version.split(".")[:2]) + ("t" if free_threaded else "")
        seen.setdefault(key, (label, python, include))
    return sorted(seen.values(), key=lambda entry: tuple(map(int, entry[0].rstrip("t").split("."))))


def compile_headers(cc: list[str], pythons: list[tuple[str, str, str]]) -> bool:
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for label, _python, include in pythons:
            failed = []
            for header in headers():
                unit = Path(tmp) / f"{header.stem}.c"
                unit.write_text(f'#include "{header.name}"\n')
                command = cc + ["-std=c11", "-O2", *WARNINGS, "-isystem", include, f"-I{PACKAGE}"]
                command += ["-c", str(unit), "-o", str(Path(tmp) / f"{header.stem}.o")]
                result = subprocess.run(command, capture_output=True, text=True)
                if result.returncode != 0:
                    failed.append(header.name)
                    sys.stderr.write(f"$ {shlex.join(command)}\n{result.stdout}{result.stderr}")
            print(
                f"compile {label:8} {' '.join(h.name for h in headers())}: "
                + ("FAILED: " + " ".join(failed) if failed else "ok")
            )
            ok = ok and not failed
    return ok


def check_format() -> bool:
    # The one installed beside this interpreter (a venv not activated), else PATH's.
    clang_format = shutil.which("clang-format", path=os.path.dirname(sys.executable))
    clang_format = clang_format or shutil.which("clang-format")
    if clang_format is None:
        print("check_c: clang-format not found (pip install clang-format)", file=sys.stderr)
        return False
    version = subprocess.run(
        [clang_format, "--version"], capture_output=True, text=True
    ).stdout.strip()
    if not re.search(r"version " + re.escape(CLANG_FORMAT_VERSION) + r"\b", version):
        print(
            f"check_c: warning: {version}; .clang-format is checked with {CLANG_FORMAT_VERSION}",
            file=sys.stderr,
        )
    command = [clang_format, "--dry-run", "-Werror", *map(str, headers())]
    result = subprocess.run(command, capture_output=True, text=True)
    sys.stderr.write(result.stdout + result.stderr)
    print(
        f"clang-format {' '.join(h.name for h in headers())}: "
        + ("ok" if result.returncode == 0 else "FAILED (run clang-format -i on them)")
    )
    return result.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        help="an interpreter whose headers to compile against (repeatable)",
    )
    parser.add_argument(
        "--cc", default=os.environ.get("CC", "cc"), help="the C compiler (default: $CC, else cc)"
    )
    parser.add_argument("--skip-format", action="store_true")
    parser.add_argument("--skip-compile", action="store_true")
    args = parser.parse_args()
    ok = True
    if not args.skip_compile:
        pythons = interpreters(args.python)
        if not pythons:
            print("check_c: no CPython interpreter with headers found", file=sys.stderr)
            return 1
        ok = compile_headers(shlex.split(args.cc), pythons)
    if not args.skip_format:
        ok = check_format() and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
