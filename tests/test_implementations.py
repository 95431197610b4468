"""SPEC §6, Two implementations, one behaviour.

The choice of core is made at import time, so it is checked in fresh
interpreters (subprocesses) with the environment under test.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import tempfile
from typing import Any, Dict, Optional

import pytest
from support import CORE_MODULES

import livekit_events

pytestmark = pytest.mark.thread_unsafe  # subprocesses

_REPORT = (
    "import livekit_events, livekit_events._core as c; "
    "print(livekit_events.IMPLEMENTATION, c.EmitterCore.__module__)"
)


def _env(no_extensions: Optional[str]) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("LIVEKIT_EVENTS_NO_EXTENSIONS", None)
    if no_extensions is not None:
        env["LIVEKIT_EVENTS_NO_EXTENSIONS"] = no_extensions
    return env


def _implementation_in_subprocess(no_extensions: Optional[str]) -> str:
    # Run from the directory livekit_events was imported from, so the child
    # imports the same package (installed or source tree) as this run.
    here = os.path.dirname(os.path.dirname(os.path.abspath(livekit_events.__file__)))
    result = subprocess.run(
        [sys.executable, "-c", _REPORT],
        env=_env(no_extensions),
        cwd=here,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _skip_unless_compiled(impl: Any) -> None:
    if impl.name != "compiled":
        pytest.skip("checks the compiled core's selection")


# -- which core is used -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "yes", "0"])
def test_no_extensions_env_var_non_empty_selects_pure(impl: Any, value: str) -> None:
    # Any non-empty value, even "0", forces the pure twin (as documented).
    _skip_unless_compiled(impl)  # run once; the check doesn't depend on the fixture
    assert _implementation_in_subprocess(value) == f"pure {CORE_MODULES['pure']}"


def test_no_extensions_env_var_empty_does_not_force_pure(impl: Any) -> None:
    _skip_unless_compiled(impl)
    assert _implementation_in_subprocess("") == f"compiled {CORE_MODULES['compiled']}"


def test_default_uses_compiled_core_when_built(impl: Any) -> None:
    _skip_unless_compiled(impl)  # the compiled runs fail loudly if it isn't built
    assert _implementation_in_subprocess(None) == f"compiled {CORE_MODULES['compiled']}"


def test_package_tells_which_implementation_is_active(impl: Any) -> None:
    assert livekit_events.IMPLEMENTATION in ("compiled", "pure")
    cores = [c for c in livekit_events.EventEmitter.__mro__ if c.__name__ == "EmitterCore"]
    assert [c.__module__ for c in cores] == [CORE_MODULES[livekit_events.IMPLEMENTATION]]
    if impl.name == "compiled":
        # conftest refuses to run the compiled tests unless it is active.
        assert livekit_events.IMPLEMENTATION == "compiled"


def test_fixture_tests_the_named_core(impl: Any, EventEmitter: Any) -> None:
    assert impl.core.__name__ == CORE_MODULES[impl.name]
    assert impl.core.EmitterCore in EventEmitter.__mro__
    assert issubclass(EventEmitter, livekit_events.EventEmitter.__mro__[1])  # same public API
    if impl.name == "compiled":
        assert not impl.core.__file__.endswith(".py")  # really the extension module


def test_both_cores_have_the_same_public_names(impl: Any) -> None:
    import livekit_events._core_py as pure

    def public(cls: type) -> set:
        # Everything but dunders (C-level members of the compiled core don't
        # show up in dir()): the public API and livekit's `_events`.
        return {name for name in dir(cls) if not (name.startswith("__") and name.endswith("__"))}

    assert set(impl.core.__all__) == set(pure.__all__)
    assert public(impl.core.EmitterCore) == public(pure.EmitterCore)
    names = ("emit", "on", "once", "off", "listeners", "listener_count", "event_names",
             "remove_all_listeners")
    for name in names:
        theirs = inspect.signature(getattr(impl.core.EmitterCore, name))
        ours = inspect.signature(getattr(pure.EmitterCore, name))
        assert list(theirs.parameters) == list(ours.parameters), name


# -- a test run says which implementation it tested -----------------------------------------


def _run_pytest(args: list, no_extensions: Optional[str]) -> subprocess.CompletedProcess:
    # Not from the checkout: `python -m pytest` puts the working directory on
    # sys.path, and the uncompiled source tree would shadow the installed
    # package (conftest.py rightly fails such a run).
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        env=_env(no_extensions),
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_run_reports_which_implementation_it_tested(impl: Any) -> None:
    _skip_unless_compiled(impl)
    this = os.path.abspath(__file__)
    result = _run_pytest([this, "-k", "fixture_tests_the_named_core"], None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "livekit_events implementations tested" in result.stdout
    assert "compiled  (livekit_events._core_c): 1 passed, 0 failed" in result.stdout
    assert "pure      (livekit_events._core_py): 1 passed, 0 failed" in result.stdout


def test_run_meant_for_compiled_core_fails_when_pure_is_forced(impl: Any) -> None:
    _skip_unless_compiled(impl)
    this = os.path.abspath(__file__)
    result = _run_pytest([this, "-k", "fixture_tests_the_named_core"], "1")
    assert result.returncode != 0
    assert "LIVEKIT_EVENTS_NO_EXTENSIONS" in result.stdout + result.stderr
    # ...and with --no-c-extensions the pure-only run is fine and says so.
    result = _run_pytest([this, "-k", "fixture_tests_the_named_core", "--no-c-extensions"], "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pure      (livekit_events._core_py): 1 passed, 0 failed" in result.stdout
    assert "compiled  (livekit_events._core_c): 0 passed, 0 failed" in result.stdout
