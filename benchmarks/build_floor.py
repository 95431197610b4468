"""Build the floor extension (``_floor.pyx``) in place, next to this file.

    python benchmarks/build_floor.py

``compare.py`` and the pytest suites call ``ensure_floor()``, which builds it
when it is missing or older than its source, so a fresh clone needs no manual
step.  Needs Cython, setuptools and a C compiler (in the ``bench`` dependency
group).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "_floor.pyx")


def _built_path() -> "str | None":
    import importlib.machinery

    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(HERE, "_floor" + suffix)
        if os.path.exists(path):
            return path
    return None


def build() -> None:
    """Compile ``_floor.pyx`` into ``benchmarks/`` (a subprocess, so the
    running interpreter's imports are untouched)."""
    with tempfile.TemporaryDirectory(prefix="lke-floor-") as temp:
        script = (
            "import sys\n"
            "from setuptools import Extension, setup\n"
            "from Cython.Build import cythonize\n"
            "setup(name='lke-bench-floor', script_args=sys.argv[1:], ext_modules=cythonize(\n"
            "    [Extension('_floor', ['_floor.pyx'])],\n"
            "    compiler_directives={'language_level': '3', 'freethreading_compatible': True},\n"
            "    quiet=True))\n"
        )
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                script,
                "build_ext",
                "--inplace",
                "--build-temp",
                temp,
                "--build-lib",
                temp,
            ],
            cwd=HERE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout)
            raise RuntimeError("building benchmarks/_floor.pyx failed (see the output above)")


def ensure_floor():
    """Import the floor module, building it first if missing or stale."""
    path = _built_path()
    if path is None or os.path.getmtime(path) < os.path.getmtime(SOURCE):
        build()
        importlib.invalidate_caches()
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    return importlib.import_module("_floor")


if __name__ == "__main__":
    build()
    print("built", _built_path())
