"""SPEC §5, re-entrancy and robustness of the registry.

Python code can run in the middle of any registry operation: a GC finalizer
or weakref callback started by an allocation, a callback's ``__eq__`` or
``__hash__``, a logging handler.  Whatever it does to the same emitter or to
another one, nothing crashes, hangs, gets lost or lingers.  The scenarios
live in ``reentrancy_scenarios.py`` and run in a subprocess, so that a crash
or a deadlock fails one test (with its exit code or a timeout) instead of
taking the whole run down.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Dict

import pytest
from support import last_json, run_script

HERE = os.path.dirname(os.path.abspath(__file__))

# Longer runs for a release check: LIVEKIT_EVENTS_REENTRANCY_SCALE=10 runs
# every scenario with ten times its rounds (eq_and_hash's work grows with the
# square of its rounds: each round's comparisons act on everything before).
SCALE = float(os.environ.get("LIVEKIT_EVENTS_REENTRANCY_SCALE", "1") or 1)

pytestmark = pytest.mark.thread_unsafe  # subprocesses and GC thresholds


def run_scenario(impl: Any, scenario: str, rounds: int, timeout: float = 120) -> Dict[str, Any]:
    timeout *= max(1.0, SCALE)
    try:
        result, lines = run_script(
            "reentrancy_scenarios.py", impl.name, scenario, str(max(1, int(rounds * SCALE))),
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{scenario} on {impl.name}: no result after {timeout} s (hang)")
    assert result.returncode in (0, 1) and lines, (
        f"{scenario} on {impl.name} died with exit code {result.returncode}"
        f"{' (signal %d)' % -result.returncode if result.returncode < 0 else ''}:\n"
        f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    )
    outcome: Dict[str, Any] = last_json(lines)
    assert outcome["problems"] == [], f"{scenario} on {impl.name}: {outcome}"
    assert result.returncode == 0
    return outcome


def test_gc_finalizers_and_weakref_callbacks_reentering_every_operation_lose_nothing(
    impl: Any,
) -> None:
    # GC thresholds at 1, finalizers and weakref callbacks calling on, once,
    # off, emit and remove_all_listeners on the same emitter and another one,
    # while the main loop does the same on events with 25+ handlers.
    outcome = run_scenario(impl, "finalizers", 1500)
    assert outcome["ops"] > 5000  # the finalizers really acted


def test_listing_the_registry_while_finalizers_add_and_remove_events(impl: Any) -> None:
    # event_names, _events, copy, deepcopy, pickle and remove_all_listeners()
    # read the whole registry; GC at every allocation, finalizers changing it.
    outcome = run_scenario(impl, "listings", 600)
    # Finalizers really ran in the middle of listings.  From CPython 3.12 a
    # collection starts between bytecodes only, so a listing done in C can't
    # be interrupted there.
    assert outcome["during"] > 0 or sys.version_info >= (3, 12), outcome


def test_unsubscribe_in_del_while_rotating_handlers(impl: Any) -> None:
    # The everyday pattern that crashed the compiled core on CPython <= 3.11.
    run_scenario(impl, "unsubscribe_in_del", 20000)


def test_callback_eq_and_hash_that_change_the_registry(impl: Any) -> None:
    outcome = run_scenario(impl, "eq_and_hash", 120)
    assert outcome["ops"] > 1000


def test_a_lookup_whose_comparisons_churn_the_event_always_finishes(impl: Any) -> None:
    # Each __eq__ registers a fresh handler and removes the last one, so the
    # registry changes shape (index remade, slots compacted) during every
    # lookup: each registration is still compared about once.
    run_scenario(impl, "eq_churn", 1, timeout=60)


def test_application_lock_taken_in_a_finalizer_cannot_deadlock_with_on(impl: Any) -> None:
    # A finalizer takes an application lock; another thread holds it and
    # calls on()/off() on the same emitter and on another.  The scenario
    # reports threads still blocked after 10 s; the timeout is a backstop.
    outcome = run_scenario(impl, "lock_in_finalizer", 1500, timeout=60)
    assert outcome["finalizers"] > 0 and outcome["locked_ops"] > 0


# -- wrong self, out-of-range values: an exception, never a crash ----------------------

_WRONG_SELF = r"""
import inspect, sys
from support import import_core
core = import_core(sys.argv[1])
cls = core.EmitterCore
bad_selves = [object(), 1, "s", None, core.OnceWrapper.__new__(core.OnceWrapper)]
arguments = [(), ("x",), ("x", print), ("x", print, 1)]
names = sorted(n for n in dir(cls) if callable(getattr(cls, n, None))
               and (not n.startswith("__")
                    or n in ("__copy__", "__deepcopy__", "__reduce_ex__", "__getstate__")))
report = {}
for name in names:
    method = cls.__dict__.get(name) or getattr(cls, name)
    if isinstance(method, (staticmethod, classmethod)):
        continue
    if not any(name in vars(k) for k in cls.__mro__[:-1]):
        continue  # inherited from object
    outcomes = set()
    for bad in bad_selves:
        for args in arguments:
            try:
                getattr(cls, name)(bad, *args)
            except TypeError:
                outcomes.add("TypeError")
            except Exception as exc:
                outcomes.add(type(exc).__name__)
            else:
                outcomes.add("returned")
    report[name] = sorted(outcomes)
print(report)
"""


def test_methods_called_with_a_self_of_the_wrong_type_raise_type_error(impl: Any) -> None:
    if impl.name != "compiled":
        pytest.skip("the pure twin's methods are plain functions: Python can't crash there")
    result = subprocess.run(
        [sys.executable, "-c", _WRONG_SELF, impl.name],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=HERE,  # not the checkout root: `-c` puts the cwd first on sys.path
    )
    assert result.returncode == 0, f"exit code {result.returncode}:\n{result.stderr[-3000:]}"
    report = eval(result.stdout)  # a dict literal printed above
    assert {"emit", "on", "once", "off", "listeners", "remove_all_listeners"} <= set(report)
    for name, outcomes in report.items():
        # Method descriptors check their self, as CPython's own do.
        assert outcomes == ["TypeError"], (name, outcomes)


_TAMPERED = r"""
import gc, sys
from support import import_core
core = import_core("compiled")
import livekit_events._livekit_emit_c as dispatcher
from livekit_events._emitter import emitter_class_for

outcomes = {}

def attempt(name, action):
    try:
        action()
    except Exception as exc:
        outcomes[name] = type(exc).__name__
    else:
        outcomes[name] = "returned"

# A registry entry that is not the core's: the dict is reachable from Python.
em = emitter_class_for(core.EmitterCore)()
em.on("a", print)
(registry,) = [r for r in gc.get_referents(em) if type(r) is dict and "a" in r]
registry["b"] = (1, 2, 3)
for name in ("emit", "listeners", "listener_count", "off", "remove_all_listeners_b"):
    event_args = {"emit": ("b",), "listeners": ("b",), "listener_count": ("b",),
                  "off": ("b", print), "remove_all_listeners_b": ("b",)}[name]
    method = name.replace("_b", "") if name.endswith("_b") else name
    attempt(name, lambda: getattr(em, method)(*event_args))
attempt("remove_all_listeners", em.remove_all_listeners)
attempt("event_names", em.event_names)
attempt("_events", lambda: em._events)
attempt("copy", lambda: __import__("copy").copy(em))
# Module-level helpers given what they were never meant to get.
attempt("_since_empty", lambda: core._since(()))
attempt("_since_int", lambda: core._since((None, 1)))
attempt("snapshot_short_keys", lambda: dispatcher._LivekitSnapshot((), [(None, 0, 0)] * 5))
attempt("snapshot_bad_arity", lambda: dispatcher._LivekitSnapshot((print,), [(None, -7, 0)]))
attempt("snapshot_bad_kind", lambda: dispatcher._LivekitSnapshot((print,), [(None, 1, 99)]))
class Fake:
    def __init__(self):
        self._events = {"e": {(lambda *a: None): None for _ in range(5)}}
real = dispatcher.lk_describe_all
dispatcher.lk_describe_all = lambda keys, previous: []
attempt("livekit_emit_short_arities", lambda: dispatcher.livekit_emit(Fake(), "e", 1))
dispatcher.lk_describe_all = real
print(outcomes)
"""


def test_tampered_registry_and_private_helpers_raise_not_crash(impl: Any) -> None:
    # Rule 7 of the compiled core: whatever arrives from Python is checked.
    if impl.name != "compiled":
        pytest.skip("the pure twin is Python: nothing there can crash the interpreter")
    result = subprocess.run(
        [sys.executable, "-c", _TAMPERED], capture_output=True, text=True, timeout=60,
        cwd=HERE,  # not the checkout root: `-c` puts the cwd first on sys.path
    )
    assert result.returncode == 0, f"exit code {result.returncode}:\n{result.stderr[-3000:]}"
    outcomes = eval(result.stdout)  # a dict literal printed above
    raised = {name for name, outcome in outcomes.items() if outcome != "returned"}
    # Reads of event "b" (the tampered one) and every walk over the registry
    # must refuse it; "listener_count"/"off" of "b" may too.
    for name in ("emit", "listeners", "remove_all_listeners", "event_names", "_events", "copy",
                 "_since_empty", "_since_int", "snapshot_short_keys", "snapshot_bad_arity",
                 "snapshot_bad_kind", "livekit_emit_short_arities"):
        assert name in raised, (name, outcomes)


def test_once_wrapper_made_without_its_constructor_never_crashes(emitter: Any, impl: Any) -> None:
    # Compiled code must check what arrives from Python: a wrapper object
    # built by __new__ alone (no emitter, no callback) may raise, not crash.
    wrapper = impl.core.OnceWrapper.__new__(impl.core.OnceWrapper)
    for attempt in (
        lambda: wrapper(1, 2),
        lambda: emitter.on("e", wrapper),
        lambda: emitter.emit("e", 1),
        lambda: emitter.off("e", wrapper),
        lambda: repr(wrapper),
        lambda: hash(wrapper),
    ):
        try:
            attempt()
        except Exception:
            pass
    emitter.emit("e", 1)
