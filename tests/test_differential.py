"""Differential fuzzing: compiled core == pure twin == a reference model.

A hypothesis state machine drives three "worlds" with the same random
operations (``on``, ``once``, ``off``, ``remove_all_listeners``, ``emit`` with
0-4 arguments) over a few events and a pool of handlers of different shapes:
plain functions of every arity, defaults, ``*args``, keyword-only defaults,
bound methods (a fresh, equal bound-method object at every use), partials
(one stable, one fresh and never equal at every use), callable objects (one
stable, one compared by value), a class, and a ``functools.wraps`` wrapper.

The worlds are the compiled core, the pure twin and ``ReferenceEmitter``
below: a plain list of registrations that implements SPEC.md directly and is
written to be read, not to be fast.  Every handler records its call (name,
arguments received, nesting depth) and then does what the state machine told
it to: nothing, raise ``Exception``, raise ``TypeError`` in its body, raise a
``BaseException``, emit again (nested, bounded depth), register or remove a
handler (itself or another), or remove all handlers.  After every step the
three worlds must agree on the call log, the failure log records, the outcome
of the step (returned, or which exception escaped), ``listeners``,
``listener_count``, ``event_names`` and ``_events``.

Profiles (selected with the environment variable ``HYPOTHESIS_PROFILE``):

* ``fast`` (default): 300 state-machine runs of up to 50 steps, for everyday
  runs (about 10 s).
* ``long``: 20 rounds of 1,000 runs of up to 60 steps, for CI's dedicated
  fuzz job (tens of minutes on a busy 2-core machine)::

      HYPOTHESIS_PROFILE=long .venv/bin/pytest tests/test_differential.py -rA

  ``LIVEKIT_EVENTS_FUZZ_ROUNDS`` changes the number of rounds.

If the compiled core can't be imported this test fails, unless
``--no-c-extensions`` was given (then it compares the pure twin and the model).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from support import import_core, log_records_of_this_thread

from livekit_events._emitter import emitter_class_for

# --------------------------------------------------------------------------
# Profiles

_COMMON = dict(
    deadline=None,
    # A divergence usually fails several assertions; shrinking each of them,
    # and the `explain` phase, take minutes and gigabytes on this machine.
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
#: name -> (settings, rounds).  A round is one hypothesis run; the long
#: profile runs many rounds of a thousand examples rather than one huge run,
#: because hypothesis keeps every example's choices in memory for the length
#: of a run (a single 20,000-example run peaks above a gigabyte).
PROFILES = {
    "fast": (settings(max_examples=300, stateful_step_count=50, **_COMMON), 1),
    "long": (settings(max_examples=1_000, stateful_step_count=60, **_COMMON), 20),
    # For scripts/valgrind.sh, where everything runs ~50 times slower.
    "tiny": (settings(max_examples=25, stateful_step_count=30, **_COMMON), 1),
}
for _name, (_settings, _rounds) in PROFILES.items():
    settings.register_profile(_name, _settings)


def _profile() -> Tuple[str, settings, int]:
    name = os.environ.get("HYPOTHESIS_PROFILE", "fast")
    if name not in PROFILES:
        raise pytest.UsageError(f"HYPOTHESIS_PROFILE={name!r}: use one of {sorted(PROFILES)}")
    profile_settings, rounds = PROFILES[name]
    # LIVEKIT_EVENTS_FUZZ_ROUNDS scales a profile's run length (CI budgets).
    rounds = int(os.environ.get("LIVEKIT_EVENTS_FUZZ_ROUNDS", rounds))
    return name, profile_settings, rounds


# --------------------------------------------------------------------------
# The reference model: SPEC.md, read literally.

#: ``accepted`` for a handler that takes every argument (``*args``).
ALL = "all"


class ModelRegistration:
    def __init__(self, event: Any, callback: Any, once: bool) -> None:
        self.event = event
        self.callback = callback
        self.once = once
        self.removed = False


def same_key(a: Any, b: Any) -> bool:
    """Equal as dict keys are: the same object, or equal with equal hashes."""
    return a is b or (hash(a) == hash(b) and a == b)


class ReferenceEmitter:
    """What SPEC.md says, written for readability.

    All registrations of all events live in one list, in registration order.
    ``arity_of(callback)`` gives ``(accepted, required)`` from the handler
    table (not from ``inspect``: the implementations read signatures, the
    model is told).  Failures are appended to ``records``.
    """

    def __init__(self, arity_of: Callable[[Any], Tuple[Any, int]], records: list) -> None:
        self.registrations: List[ModelRegistration] = []
        # Events with at least one registration, in the order each got its
        # first one (an event that loses its last handler leaves the list).
        self.event_order: List[Any] = []
        # The key object an event was first registered with: like livekit's
        # _events, the registry keeps it (so `1` stays `1` after True is used).
        self.event_keys: List[Any] = []
        self.arity_of = arity_of
        self.records = records

    def _of(self, event: Any) -> List[ModelRegistration]:
        return [r for r in self.registrations if same_key(r.event, event)]

    def _key(self, event: Any) -> Any:
        for known in self.event_keys:
            if same_key(known, event):
                return known
        self.event_keys.append(event)
        return event

    def _append(self, registration: ModelRegistration) -> None:
        if not self._of(registration.event):
            self.event_order.append(self._key(registration.event))
        self.registrations.append(registration)

    def _drop(self, registration: ModelRegistration) -> None:
        registration.removed = True
        self.registrations = [r for r in self.registrations if r is not registration]
        if not self._of(registration.event):
            self.event_order = [e for e in self.event_order if not same_key(e, registration.event)]

    def on(self, event: Any, callback: Any) -> Any:
        # Already registered with `on` for this event: nothing changes.
        for r in self._of(event):
            if not r.once and same_key(r.callback, callback):
                return callback
        self._append(ModelRegistration(event, callback, once=False))
        return callback

    def once(self, event: Any, callback: Any) -> Any:
        # Every once call adds one one-shot registration.
        self._append(ModelRegistration(event, callback, once=True))
        return callback

    def off(self, event: Any, callback: Any) -> None:
        for r in self._of(event):
            if same_key(r.callback, callback):
                self._drop(r)

    def remove_all_listeners(self, event: Any = None) -> None:
        for r in list(self.registrations):
            if event is None or same_key(r.event, event):
                self._drop(r)

    def emit(self, event: Any, *args: Any) -> None:
        snapshot = self._of(event)  # added during this emit: not called
        for r in snapshot:
            if r.removed:  # removed during this emit before its turn: not called
                continue
            if r.once:  # removed before it is called
                self._drop(r)
            accepted, required = self.arity_of(r.callback)
            if len(args) < required:
                raise TypeError(f"emit({event!r}): handler {r.callback!r} needs {required} arguments")
            passed = args if accepted == ALL else args[:accepted]
            try:
                r.callback(*passed)
            except Exception as exc:  # isolated, one record per failure
                self.records.append(record_key(f"failed to emit event {event}", exc))

    def listeners(self, event: Any) -> List[Any]:
        return [r.callback for r in self._of(event)]

    def listener_count(self, event: Any) -> int:
        return len(self._of(event))

    def event_names(self) -> List[Any]:
        return list(self.event_order)

    @property
    def _events(self) -> Dict[Any, List[Any]]:
        return {e: self.listeners(e) for e in self.event_order}


# --------------------------------------------------------------------------
# Handlers: the same pool, built once per world.


class HandlerError(Exception):
    pass


class Abort(BaseException):
    """A BaseException that is not an Exception: propagates out of emit."""


EVENTS = ["a", "b", 1, True, None]  # 1 and True are the same dict key
MAX_DEPTH = 2
CALL_BUDGET = 400  # per top-level step: past it, handlers only record
LISTENER_CAP = 6  # handlers don't register on an event past this many

#: name -> (accepted, required), as SPEC.md's trimming rule says.
ARITY: Dict[str, Tuple[Any, int]] = {
    "f0": (0, 0),
    "f1": (1, 1),
    "f2": (2, 2),
    "f4": (4, 3),  # def f4(a, b, c, d="d")
    "defaults": (2, 1),  # def defaults(a, b="b")
    "varargs": (ALL, 0),
    "mixed": (ALL, 1),  # def mixed(a, *rest)
    "kwonly": (1, 1),  # def kwonly(a, *, k="k")
    "method": (1, 1),  # bound method, self not counted
    "partial": (2, 1),  # partial(p, "x") with p(x, a, b=None)
    "fresh_partial": (1, 1),  # a new, never-equal partial at every use
    "callable": (3, 3),  # __call__(self, a, b, c)
    "by_value": (ALL, 0),  # fresh callable objects, equal by name
    "klass": (1, 1),  # a class: __init__(self, a)
    "wrapped": (2, 2),  # functools.wraps(inner(a, b)) over def w(*args)
    "meddler": (ALL, 0),  # its __hash__ runs another operation (the meddle rule)
    "eq_meddler": (ALL, 0),  # same hash; its __eq__ runs another operation
}
HANDLER_NAMES = sorted(ARITY)


def label_of(callback: Any) -> str:
    return callback.label


def make_handlers(world: "World") -> Dict[str, Callable[[], Any]]:
    """name -> a getter returning the callable to pass to on/once/off."""

    def act(label: str, args: tuple) -> None:
        world.act(label, args)

    def f0():
        act("f0", ())

    def f1(a):
        act("f1", (a,))

    def f2(a, b):
        act("f2", (a, b))

    def f4(a, b, c, d="d"):
        act("f4", (a, b, c, d))

    def defaults(a, b="b"):
        act("defaults", (a, b))

    def varargs(*args):
        act("varargs", args)

    def mixed(a, *rest):
        act("mixed", (a,) + rest)

    def kwonly(a, *, k="k"):
        act("kwonly", (a, k))

    class Owner:
        def method(self, a):
            act("method", (a,))

    def p(x, a, b=None):
        act("partial", (x, a, b))

    def p1(x, a):
        act("fresh_partial", (x, a))

    class Callable3:
        def __call__(self, a, b, c):
            act("callable", (a, b, c))

    class ByValue:
        label = "by_value"

        def __call__(self, *args):
            act("by_value", args)

        def __eq__(self, other):
            return type(other) is ByValue

        def __hash__(self):
            return hash("by_value")

    class Meddler:
        """A callable whose __hash__, when armed, runs one operation on the
        emitter: re-entrancy in the middle of a registry operation."""

        label = "meddler"
        armed: Optional[tuple] = None
        fired = False

        def __call__(self, *args):
            act("meddler", args)

        def __hash__(self):
            inner, self.armed = self.armed, None
            if inner is not None:
                self.fired = True
                world.perform(inner)
            return 12345

    class EqMeddler:
        """Hashes like the Meddler; when armed, its __eq__ runs one operation:
        re-entrancy in the middle of a lookup that compares keys."""

        label = "eq_meddler"
        armed: Optional[tuple] = None
        fired = False

        def __call__(self, *args):
            act("eq_meddler", args)

        def __hash__(self):
            return 12345

        def __eq__(self, other):
            inner, self.armed = self.armed, None
            if inner is not None:
                self.fired = True
                world.perform(inner)
            return other is self

    class Klass:
        label = "klass"

        def __init__(self, a):
            act("klass", (a,))

    def inner(a, b):
        raise AssertionError("never called")

    @functools.wraps(inner)
    def wrapped(*args):
        act("wrapped", args)

    for function in (f0, f1, f2, f4, defaults, varargs, mixed, kwonly):
        function.label = function.__name__
    wrapped.label = "wrapped"  # wraps() copied inner's __name__
    Owner.method.label = "method"
    owner = Owner()
    partial = functools.partial(p, "x")
    partial.label = "partial"
    callable3 = Callable3()
    callable3.label = "callable"

    def fresh_partial():
        made = functools.partial(p1, "y")
        made.label = "fresh_partial"
        return made

    stable = {
        "f0": f0, "f1": f1, "f2": f2, "f4": f4, "defaults": defaults,
        "varargs": varargs, "mixed": mixed, "kwonly": kwonly, "wrapped": wrapped,
        "partial": partial, "callable": callable3, "klass": Klass,
    }  # fmt: skip
    getters: Dict[str, Callable[[], Any]] = {
        name: (lambda f=f: f) for name, f in stable.items()
    }
    getters["method"] = lambda: owner.method  # a new bound-method object each time
    getters["fresh_partial"] = fresh_partial
    getters["by_value"] = ByValue
    meddler, eq_meddler = Meddler(), EqMeddler()
    world.meddlers = {"hash": meddler, "eq": eq_meddler}
    getters["meddler"] = lambda: meddler
    getters["eq_meddler"] = lambda: eq_meddler
    assert sorted(getters) == HANDLER_NAMES
    return getters


# --------------------------------------------------------------------------
# Capturing failure records from the `livekit.events` logger, per thread.


def _record_key_of(record: logging.LogRecord) -> Tuple[str, str]:
    return record_key(record.getMessage(), record.exc_info[1] if record.exc_info else None)


def normalise(exc: Optional[BaseException]) -> Tuple[str, str]:
    """An exception as the worlds can compare it (no object addresses)."""
    if exc is None:
        return ("no exception", "")
    text = str(exc)
    if isinstance(exc, TypeError) and text.startswith("emit("):
        text = text.split(":", 1)[0] + ": arity"  # names the event; the handler repr varies
    return (type(exc).__name__, text)


def record_key(message: str, exc: Optional[BaseException]) -> tuple:
    return (message,) + normalise(exc)


# --------------------------------------------------------------------------
# Worlds and the state machine.


class World:
    def __init__(self, name: str, make_emitter: Optional[Callable[[], Any]], behaviours: dict) -> None:
        self.name = name
        self.behaviours = behaviours  # shared by all worlds: name -> behaviour
        self.log: List[tuple] = []
        self.records: List[tuple] = []
        self.depth = 0
        self.calls = 0
        self.handlers = make_handlers(self)
        if make_emitter is None:
            self.is_model = True
            self.emitter = ReferenceEmitter(lambda cb: ARITY[label_of(cb)], self.records)
        else:
            self.is_model = False
            self.emitter = make_emitter()

    def act(self, label: str, args: tuple) -> None:
        self.log.append((label, args, self.depth))
        self.calls += 1
        if self.calls > CALL_BUDGET:
            return
        self.perform(self.behaviours.get(label, ("record",)), label)

    def perform(self, behaviour: tuple, label: str = "meddler") -> None:
        """Do what a handler configured with ``behaviour`` does."""
        kind = behaviour[0]
        if kind == "raise":
            raise HandlerError(f"{label} failed")
        if kind == "raise_type":
            raise TypeError(f"{label}: a TypeError in the handler's body")
        if kind == "raise_base":
            raise Abort(label)
        if kind == "emit":
            _, event, count = behaviour
            if self.depth < MAX_DEPTH:
                self.depth += 1
                try:
                    self.emitter.emit(event, *range(100, 100 + count))
                finally:
                    self.depth -= 1
        elif kind in ("on", "once"):
            _, event, name = behaviour
            if self.emitter.listener_count(event) < LISTENER_CAP:
                getattr(self.emitter, kind)(event, self.handlers[name]())
        elif kind == "off":
            _, event, name = behaviour
            self.emitter.off(event, self.handlers[name]())
        elif kind == "remove_all":
            self.emitter.remove_all_listeners(behaviour[1])

    def run(self, operation: Callable[["World"], None]) -> Tuple[str, str]:
        """Run one step in this world; return how it ended."""
        self.calls = 0
        assert self.depth == 0
        capture = (
            contextlib.nullcontext()
            if self.is_model
            else log_records_of_this_thread(self.records, _record_key_of)
        )
        with capture:
            try:
                operation(self)
            except (TypeError, Abort) as exc:
                return normalise(exc)
        return normalise(None)

    def state(self) -> dict:
        e = self.emitter
        return {
            "listeners": {repr(ev): [label_of(cb) for cb in e.listeners(ev)] for ev in EVENTS},
            "counts": {repr(ev): e.listener_count(ev) for ev in EVENTS},
            "event_names": [repr(ev) for ev in e.event_names()],
            "_events": {repr(ev): [label_of(cb) for cb in cbs] for ev, cbs in e._events.items()},
        }


events = st.sampled_from(EVENTS)
# Most operations hit one of two events, so handlers meet each other often.
busy_events = st.one_of(st.sampled_from(["a", "b"]), events)
handler_names = st.sampled_from(HANDLER_NAMES)
behaviours = st.one_of(
    st.just(("record",)),
    st.just(("raise",)),
    st.just(("raise_type",)),
    st.just(("raise_base",)),
    st.tuples(st.just("emit"), busy_events, st.integers(0, 4)),
    st.tuples(st.sampled_from(["on", "once", "off"]), busy_events, handler_names),
    st.tuples(st.just("remove_all"), events),  # None: every event
)
# 0-4 arguments, more often many: most handlers need some.
emit_args = st.sampled_from([0, 1, 2, 3, 4, 4, 4]).flatmap(
    lambda n: st.lists(st.integers(0, 9), min_size=n, max_size=n).map(tuple)
)


class DifferentialMachine(RuleBasedStateMachine):
    cores: List[Tuple[str, Any]] = []  # set by the test: (name, core module)

    stats: Counter = Counter()  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.stats["examples"] += 1
        self.behaviours: Dict[str, tuple] = {}
        self.worlds = [
            World(name, lambda core=core: emitter_class_for(core.EmitterCore)(), self.behaviours)
            for name, core in self.cores
        ] + [World("model", None, self.behaviours)]

    def _step(self, operation: Callable[[World], None]) -> None:
        outcomes = {w.name: w.run(operation) for w in self.worlds}
        assert len(set(outcomes.values())) == 1, f"outcomes diverge: {outcomes}"
        model = self.worlds[-1]
        self.stats["steps"] += 1
        self.stats["handler calls"] += len(model.log)
        self.stats["failures logged"] += len(model.records)
        self.stats[f"steps ending with {outcomes['model'][0]}"] += 1

    @initialize(
        registrations=st.lists(
            st.tuples(busy_events, handler_names, st.booleans()), min_size=5, max_size=15
        ),
        configuration=st.dictionaries(handler_names, behaviours, max_size=6),
    )
    def setup(self, registrations: list, configuration: dict) -> None:
        for event, name, once in registrations:
            method = "once" if once else "on"
            self._step(lambda w: getattr(w.emitter, method)(event, w.handlers[name]()))
        self.behaviours.update(configuration)

    @rule(name=handler_names, behaviour=behaviours)
    def configure(self, name: str, behaviour: tuple) -> None:
        self.behaviours[name] = behaviour

    # One rule for registering and removing, weighted towards registering,
    # so emits usually meet several handlers.
    @rule(
        operation=st.sampled_from(["on", "on", "once", "off"]),
        event=busy_events,
        name=handler_names,
    )
    def change(self, operation: str, event: Any, name: str) -> None:
        self._step(lambda w: getattr(w.emitter, operation)(event, w.handlers[name]()))

    # Re-entrancy: while `operation` runs with the meddler, `inner` runs from
    # the meddler's __hash__ ("hash") or from the __eq__ of a registered
    # eq_meddler that the lookup compares it with ("eq").  Implementations
    # hash and compare before they change anything, so `inner` lands before
    # the operation's own change; the model is told whether it ran (a lookup
    # in an event without handlers compares nothing, for instance).
    @rule(
        operation=st.sampled_from(["on", "once", "off"]),
        event=busy_events,
        trigger=st.sampled_from(["hash", "eq"]),
        inner=st.one_of(
            st.tuples(st.sampled_from(["on", "once", "off"]), busy_events, handler_names),
            st.tuples(st.just("emit"), busy_events, st.integers(0, 4)),
            st.tuples(st.just("remove_all"), events),
        ),
    )
    def meddle(self, operation: str, event: Any, trigger: str, inner: tuple) -> None:
        model = self.worlds[-1]
        registered = {label_of(cb) for cb in model.emitter.listeners(event)}
        if trigger == "eq" and "meddler" in registered:
            # How many keys a lookup compares before it stops is each
            # implementation's own (a dict stops at the first match): only
            # a lookup that must compare every key of the same hash (the
            # meddler isn't registered, an eq_meddler is) calls __eq__ in all.
            trigger = "hash"
        if trigger == "eq" and "eq_meddler" not in registered:
            self._step(lambda w: w.emitter.on(event, w.meddlers["eq"]))
        fired: Dict[str, bool] = {}

        def step(w: World) -> None:
            armed = w.meddlers[trigger]
            if w.is_model:
                assert len(set(fired.values())) == 1, f"the cores disagree: {fired}"
                if fired and next(iter(fired.values())):
                    w.perform(inner)
                getattr(w.emitter, operation)(event, w.meddlers["hash"])
                return
            armed.armed, armed.fired = inner, False
            try:
                getattr(w.emitter, operation)(event, w.meddlers["hash"])
            finally:
                fired[w.name] = armed.fired
                armed.armed = None

        self._step(step)
        ran = "ran" if any(fired.values()) else "did not run"
        self.stats[f"re-entrant steps ({trigger}, {ran})"] += 1

    @precondition(lambda self: len(self.worlds[-1].emitter.registrations) >= 8)
    @rule(event=st.one_of(st.none(), events))  # None: every event
    def remove_all_listeners(self, event: Any) -> None:
        self._step(lambda w: w.emitter.remove_all_listeners(event))

    @rule(event=busy_events, args=emit_args)
    def emit(self, event: Any, args: tuple) -> None:
        self.stats["top-level emits"] += 1
        self._step(lambda w: w.emitter.emit(event, *args))

    @rule(args=emit_args)
    def emit_a(self, args: tuple) -> None:  # emit is the point: give it more weight
        self.stats["top-level emits"] += 1
        self._step(lambda w: w.emitter.emit("a", *args))

    @invariant()
    def worlds_agree(self) -> None:
        model = self.worlds[-1]
        for world in self.worlds[:-1]:
            assert world.log == model.log, f"{world.name} call log diverges from the model"
            assert world.records == model.records, f"{world.name} log records diverge"
            assert world.state() == model.state(), f"{world.name} registrations diverge"
            for ev in EVENTS:  # listeners() and listener_count() agree within a world
                assert len(world.emitter.listeners(ev)) == world.emitter.listener_count(ev)
        for world in self.worlds:
            world.log.clear()
            world.records.clear()


@pytest.mark.thread_unsafe(reason="a long fuzz run: run it once, not once per thread")
def test_differential(pytestconfig: pytest.Config) -> None:
    cores = [("pure", import_core("pure"))]
    if not pytestconfig.getoption("--no-c-extensions"):
        # By name: a missing build fails here instead of being skipped.
        cores.insert(0, ("compiled", import_core("compiled")))

    class Machine(DifferentialMachine):
        pass

    Machine.cores = cores
    Machine.stats = Counter()
    profile, profile_settings, rounds = _profile()
    for _ in range(rounds):
        run_state_machine_as_test(Machine, settings=profile_settings)
    # Shown with -rA (or -s): how much was compared.
    print(
        f"differential ({', '.join(name for name, _ in cores)} vs model, "
        f"profile {profile}, {rounds} round(s)): "
        + ", ".join(f"{count} {what}" for what, count in Machine.stats.items())
    )
    assert Machine.stats["handler calls"] > 0


def test_model_matches_spec_examples() -> None:
    """The model itself, on the SPEC's headline rules (so the fuzz compares
    against something that is right)."""
    records: list = []
    calls: list = []

    def h(name):
        def f(*args):
            calls.append((name, args))

        f.label = name
        return f

    a, b = h("a"), h("b")
    m = ReferenceEmitter(lambda cb: (ALL, 0), records)
    m.on("e", a)
    m.on("e", b)
    m.on("e", a)  # dedupe keeps first position
    assert m.listeners("e") == [a, b]
    m.once("e", a)
    m.once("e", a)
    assert m.listener_count("e") == 4
    m.emit("e", 1)
    assert calls == [("a", (1,)), ("b", (1,)), ("a", (1,)), ("a", (1,))]
    assert m.listeners("e") == [a, b]
    m.off("e", a)
    assert m.listeners("e") == [b] and m.event_names() == ["e"]
    m.off("e", b)
    assert m.event_names() == []
