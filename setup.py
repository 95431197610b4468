"""Build the compiled core; fall back to the pure-Python twin if it can't be built.

Environment variables (read at build time):

* ``LIVEKIT_EVENTS_NO_EXTENSIONS`` (non-empty): don't build the extension.
* ``LIVEKIT_EVENTS_REQUIRE_EXTENSIONS`` (non-empty): fail the build if the
  extension can't be built instead of installing the pure twin.  CI sets it.
* ``LIVEKIT_EVENTS_CYTHON_TRACE`` (non-empty): build with line tracing (coverage).
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

BUILD_FAILURE_MARKER = "_build_failed.txt"  # also named in src/livekit_events/_core.py
NO_EXTENSIONS = bool(os.environ.get("LIVEKIT_EVENTS_NO_EXTENSIONS"))
REQUIRE_EXTENSIONS = bool(os.environ.get("LIVEKIT_EVENTS_REQUIRE_EXTENSIONS"))
if sys.implementation.name != "cpython":
    NO_EXTENSIONS = True

COMPILER_DIRECTIVES = {
    "language_level": "3",
    "boundscheck": False,
    "wraparound": False,
    "initializedcheck": False,
    "embedsignature": True,
    # __text_signature__ for the methods (binding=False makes them method
    # descriptors): inspect.signature works on them.
    "embedsignature.format": "clinic",
    # Under free-threaded CPython the core is safe without the GIL: see the
    # thread-safety notes in _core_c.pyx.
    "freethreading_compatible": True,
}


class OptionalBuildExt(build_ext):
    """build_ext that warns and carries on when the extension can't be built."""

    def run(self):
        marker = os.path.join(self._package_dir(), BUILD_FAILURE_MARKER)
        if os.path.exists(marker):  # left by an earlier failed build in build/
            os.remove(marker)
        try:
            super().run()
        except Exception as exc:  # no compiler, missing headers, ...
            self._fail(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc):
        if REQUIRE_EXTENSIONS:
            raise
        self._write_failure_marker(exc)
        print(
            "*" * 72 + "\n"
            f"WARNING: livekit_events could not build its compiled core ({exc}).\n"
            "Installing the pure-Python implementation: same behaviour, slower emit.\n"
            "Set LIVEKIT_EVENTS_REQUIRE_EXTENSIONS=1 to make this an error.\n" + "*" * 72,
            file=sys.stderr,
        )


    def _write_failure_marker(self, exc):
        # pip hides build output, so the package also warns at import time
        # when it finds this file and no compiled core (see _core.py).
        package_dir = self._package_dir()
        os.makedirs(package_dir, exist_ok=True)
        with open(os.path.join(package_dir, BUILD_FAILURE_MARKER), "w") as marker:
            marker.write(f"{type(exc).__name__}: {exc}\n")

    def _package_dir(self):
        return os.path.join("src", "livekit_events") if self.inplace else os.path.join(self.build_lib, "livekit_events")


def extensions():
    if NO_EXTENSIONS:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE_EXTENSIONS:
            raise
        print("WARNING: Cython is not installed; installing the pure-Python core.", file=sys.stderr)
        return []
    macros = []
    directives = dict(COMPILER_DIRECTIVES)
    if os.environ.get("LIVEKIT_EVENTS_CYTHON_TRACE"):
        directives["linetrace"] = True
        macros.append(("CYTHON_TRACE_NOGIL", "1"))
    headers = [f"src/livekit_events/{h}" for h in ("_compat.h", "_arity.h", "_registry.h", "_walk.h")]
    return cythonize(
        [
            # The core: the registry and emit.
            Extension(
                "livekit_events._core_c",
                ["src/livekit_events/_core_c.pyx"],
                depends=headers,
                define_macros=macros,
            ),
            # install()'s dispatcher for livekit.rtc.EventEmitter.
            Extension(
                "livekit_events._livekit_emit_c",
                ["src/livekit_events/_livekit_emit_c.pyx"],
                depends=headers,
                define_macros=macros,
            ),
        ],
        compiler_directives=directives,
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
