"""Build the compiled core; fall back to the pure-Python twin if it can't be built.

Environment variables (read at build time):

* ``LIVEKIT_EVENTS_NO_EXTENSIONS`` (non-empty): don't build the extension.
* ``LIVEKIT_EVENTS_REQUIRE_EXTENSIONS`` (non-empty): fail the build if the
  extension can't be built instead of installing the pure twin.  CI sets it.
* ``LIVEKIT_EVENTS_CYTHON_TRACE`` (non-empty): build with line tracing (coverage).

Build switches for developing the C (GCC and Clang; each of them also makes a
failed compile an error, as ``LIVEKIT_EVENTS_REQUIRE_EXTENSIONS`` does):

* ``LIVEKIT_EVENTS_STRICT_C`` (non-empty): warnings are errors
  (``-Wall -Wextra -Werror``) in the whole extension, the Cython-generated C
  included (no warning flag is turned off for it).  For CI and for work on
  the C; scripts/check_c.py also compiles each header on its own, pedantic
  C11, against every CPython found, and checks their clang-format.
* ``LIVEKIT_EVENTS_DEBUG`` (non-empty): ``-O0 -g3``, and C assertions on
  (``-UNDEBUG``: the ``assert()`` calls in CPython's headers and in the
  Cython-generated C).  The interpreter need not be a debug build:
  ``Py_DEBUG`` isn't defined (it changes the ABI).
* ``LIVEKIT_EVENTS_SANITIZE`` (e.g. ``address,undefined``): compiled and
  linked with ``-fsanitize=<value>`` (and ``-g -O1 -fno-omit-frame-pointer``
  for readable reports).  The interpreter isn't built with ASan, so the ASan
  runtime must be loaded first, and leak detection off (the interpreter's own
  allocations at exit are not leaks of ours)::

      LIVEKIT_EVENTS_SANITIZE=address,undefined pip install --no-build-isolation .
      LD_PRELOAD="$(gcc -print-file-name=libasan.so)" \\
      ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \\
      python -m pytest -p no:cacheprovider tests/test_registry.py

  (With Clang: ``clang -print-file-name=libclang_rt.asan-x86_64.so``; on macOS
  ``DYLD_INSERT_LIBRARIES`` instead of ``LD_PRELOAD``.)

By default the extension carries no debug information (``-g0``: the C code
is the same, the wheel smaller; CPython's sysconfig flags ask for ``-g``).
``LIVEKIT_EVENTS_DEBUG``, ``LIVEKIT_EVENTS_SANITIZE`` and
``LIVEKIT_EVENTS_CYTHON_TRACE`` keep it.  The optimisation level is the one
CPython's sysconfig gives (``-O3`` or ``-O2``), unless ``LIVEKIT_EVENTS_DEBUG``
is set.  MSVC puts no debug information into the ``.pyd`` by default; the
switches above are for GCC and Clang (on MSVC ``LIVEKIT_EVENTS_DEBUG`` gives
``/Od /Zi``, the other two are refused).
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

BUILD_FAILURE_MARKER = "_build_failed.txt"  # also named in src/livekit_events/_core.py
NO_EXTENSIONS = bool(os.environ.get("LIVEKIT_EVENTS_NO_EXTENSIONS"))
REQUIRE_EXTENSIONS = bool(os.environ.get("LIVEKIT_EVENTS_REQUIRE_EXTENSIONS"))
CYTHON_TRACE = bool(os.environ.get("LIVEKIT_EVENTS_CYTHON_TRACE"))
STRICT_C = bool(os.environ.get("LIVEKIT_EVENTS_STRICT_C"))
DEBUG = bool(os.environ.get("LIVEKIT_EVENTS_DEBUG"))
SANITIZE = os.environ.get("LIVEKIT_EVENTS_SANITIZE", "").strip()
if STRICT_C or DEBUG or SANITIZE:  # a build for checking the C must not fall back
    REQUIRE_EXTENSIONS = True
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


def compiler_flags(compiler_type):
    """(extra compile args, extra link args) for the build switches above.

    They come after CPython's sysconfig flags on the command line, so they
    win over them (``-g0`` over ``-g``, ``-O0`` over ``-O3``)."""
    if compiler_type == "msvc":
        if STRICT_C or SANITIZE:
            raise RuntimeError(
                "LIVEKIT_EVENTS_STRICT_C and LIVEKIT_EVENTS_SANITIZE are for GCC and Clang"
            )
        if DEBUG:
            return ["/Od", "/Zi", "/UNDEBUG"], ["/DEBUG"]
        return [], []  # no debug information in the .pyd unless asked
    compile_args, link_args = [], []
    if STRICT_C:
        # The Cython-generated C is warning-free under these with Cython
        # 3.1-3.3 (GCC 12): no -Wno-... needed.  Should a Cython release
        # warn, silence that one warning here, never ours (the headers).
        compile_args += ["-Wall", "-Wextra", "-Werror"]
    if DEBUG:
        compile_args += ["-O0", "-g3", "-UNDEBUG"]
    if SANITIZE:
        sanitize = [f"-fsanitize={SANITIZE}"]
        compile_args += sanitize + ["-fno-omit-frame-pointer", "-g"]
        if not DEBUG:
            compile_args.append("-O1")
        link_args += sanitize
    if not (DEBUG or SANITIZE or CYTHON_TRACE):
        compile_args.append("-g0")
    return compile_args, link_args


class OptionalBuildExt(build_ext):
    """build_ext that warns and carries on when the extension can't be built."""

    def build_extensions(self):
        try:
            compile_args, link_args = compiler_flags(self.compiler.compiler_type)
        except Exception as exc:
            self._fail(exc)
            return
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args or []) + compile_args
            ext.extra_link_args = list(ext.extra_link_args or []) + link_args
        super().build_extensions()

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
    if CYTHON_TRACE:
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
