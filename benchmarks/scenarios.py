"""The benchmark scenarios: a registry that compare.py and the pytest suites share.

A ``Scenario`` builds, for one adapter (``implementations.py``), a ``Case``:
a statement (``body``) that performs one iteration, the names it uses, how
many emits (or operations) one iteration counts for, and how many handler
calls it must make.  The harness (``harness.py``) turns a case into a timing
loop with those names as fast locals, checks the handler calls once with a
profiler hook before timing, and reports time per emit.  Most scenarios also
build a case for the floor: the same handler functions called from the bare
compiled loop in ``_floor.pyx``.

Adding scenarios from another file: write ``benchmarks/scenarios_<name>.py``
that imports this module and calls ``register(Scenario(...))``.  compare.py
and the pytest suites import every ``scenarios_*.py`` next to this file
(``load_extra_scenarios``).  A builder raises ``Skip("why")`` when an
implementation can't run it.  For example::

    from scenarios import Case, Scenario, Skip, register, emit_body

    def build(adapter):
        ...  # make an emitter, subscribe handlers
        return Case(body=..., namespace=..., expected_calls=...)

    register(Scenario("room-install", group="room", title="...", build=build))

The handlers are functions generated from a few templates (``handlers()``):
one distinct function object per subscriber (emitters deduplicate equal
callables), each doing nothing, so that what is timed is the dispatch.  The
precheck counts calls to the templates' code objects.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import importlib
import logging
import os
import random
import sys
import tracemalloc
import types
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from implementations import Adapter

HERE = os.path.dirname(os.path.abspath(__file__))

__all__ = (
    "ARGS",
    "Case",
    "EVENT",
    "HANDLER_CODES",
    "SCENARIOS",
    "Scenario",
    "Skip",
    "emit_body",
    "handlers",
    "load_extra_scenarios",
    "register",
    "room_events",
)


class Skip(Exception):
    """Raised by a builder: this implementation can't run the scenario."""


@dataclasses.dataclass
class Case:
    """One implementation's side of a scenario, ready to be timed."""

    #: One iteration: Python statements using the names in ``namespace``.
    body: str
    namespace: Dict[str, Any]
    #: Emits (or operations) one iteration counts for; times are reported per one.
    per_iteration: int = 1
    #: Handler calls one iteration must make (checked once before timing); None: unchecked.
    expected_calls: Optional[int] = None
    #: Set for bodies that are one call ``fn(*args)``: the pytest suites then
    #: hand ``fn`` and ``args`` straight to pytest-benchmark.
    call: Optional[Tuple[Callable[..., Any], Tuple[Any, ...]]] = None
    note: str = ""
    #: Run after timing (unsubscribe, restore logging, ...).
    cleanup: Optional[Callable[[], None]] = None
    #: For a body that changes state: run untimed before each iteration (the
    #: harness then times each iteration on its own).  Every prepare() is
    #: followed by exactly one run of the body.
    prepare: Optional[Callable[[], None]] = None
    #: Run by the precheck after its iteration: a description of what is
    #: wrong with the state the body left, or None.
    check: Optional[Callable[[], Optional[str]]] = None
    #: Extra figures for results.json (set-up time, sizes...).
    info: Dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Scenario:
    name: str
    group: str
    title: str
    #: adapter -> Case (may raise Skip).  None for memory scenarios.
    build: Optional[Callable[[Adapter], Case]] = None
    #: floor module -> Case for the floor, or None when there is no floor.
    build_floor: Optional[Callable[[Any], Case]] = None
    #: What one timed unit is ("emit", "on+off pair", ...).
    unit: str = "emit"
    #: Scenario parameters (fan-out, arguments, ...), for tables and plots.
    params: Dict[str, Any] = dataclasses.field(default_factory=dict)
    #: For memory scenarios: adapter -> bytes per emitter (may raise Skip).
    measure: Optional[Callable[[Adapter], float]] = None
    #: Only in the full run (compare.py --quick leaves it out).
    full_only: bool = False
    #: Interleaved rounds of a full run, if not the run's default (compare.py
    #: --rounds overrides it).
    rounds: Optional[int] = None
    #: Stop giving an implementation rounds once they have taken this many
    #: seconds (after the first 5): bounds a slow implementation's share of the run.
    max_seconds: Optional[float] = None

    @property
    def kind(self) -> str:
        return "memory" if self.measure is not None else "time"


SCENARIOS: Dict[str, Scenario] = {}


def register(scenario: Scenario) -> Scenario:
    """Add ``scenario`` to the registry (its name must be new)."""
    if scenario.name in SCENARIOS:
        raise ValueError(f"scenario {scenario.name!r} is already registered")
    SCENARIOS[scenario.name] = scenario
    return scenario


def load_extra_scenarios() -> List[str]:
    """Import every ``scenarios_*.py`` next to this file; return their names."""
    names = []
    for path in sorted(glob.glob(os.path.join(HERE, "scenarios_*.py"))):
        name = os.path.splitext(os.path.basename(path))[0]
        if name not in sys.modules:
            importlib.import_module(name)
        names.append(name)
    return names


# -- handlers ------------------------------------------------------------------


def _h0():  # type: ignore[no-untyped-def]
    pass


def _h1(a):  # type: ignore[no-untyped-def]
    pass


def _h2(a, b):  # type: ignore[no-untyped-def]
    pass


def _h3(a, b, c):  # type: ignore[no-untyped-def]
    pass


def _fail(a):  # type: ignore[no-untyped-def]
    raise ValueError("handler failed (benchmark)")


class Subscriber:
    """An object whose bound method is a handler (a participant, a track ...)."""

    def on_event(self, a):  # type: ignore[no-untyped-def]
        pass


_TEMPLATES = {0: _h0, 1: _h1, 2: _h2, 3: _h3}

#: Code objects of every handler the scenarios register: the precheck counts
#: calls to these.
HANDLER_CODES = frozenset(
    [f.__code__ for f in _TEMPLATES.values()] + [_fail.__code__, Subscriber.on_event.__code__]
)


def handlers(count: int, takes: int) -> List[Callable[..., None]]:
    """``count`` distinct do-nothing functions taking ``takes`` positional arguments."""
    template = _TEMPLATES[takes]
    return [
        types.FunctionType(template.__code__, template.__globals__, f"handler_{takes}_{i}")
        for i in range(count)
    ]


def failing_handler() -> Callable[..., None]:
    return types.FunctionType(_fail.__code__, _fail.__globals__, "failing_handler")


#: The event name and the arguments emitted (at most 3, as in livekit's Room).
EVENT = "track_subscribed"
ARGS: Tuple[Any, ...] = (object(), object(), object())


def emit_body(
    adapter: Adapter, emitter: Any, event: Any, nargs: int, tag: str = ""
) -> Tuple[str, Dict[str, Any], Tuple[Callable[..., Any], Tuple[Any, ...]]]:
    """A call statement emitting ``event`` with ``nargs`` of ``ARGS``; its names; (fn, args)."""
    fn, prefix, keywords = adapter.op(emitter, event, "emit")
    if keywords:
        raise Skip(f"{adapter.label}: emit needs keywords")
    names = {f"emit{tag}": fn}
    params = []
    for i, value in enumerate(prefix):
        names[f"p{tag}{i}"] = value
        params.append(f"p{tag}{i}")
    for i in range(nargs):
        names[f"a{i}"] = ARGS[i]
        params.append(f"a{i}")
    return f"emit{tag}({', '.join(params)})", names, (fn, tuple(prefix) + ARGS[:nargs])


def op_call(
    adapter: Adapter, emitter: Any, event: Any, op: str, handler_expr: str, tag: str
) -> Tuple[str, Dict[str, Any]]:
    """A statement doing ``op`` (on/off/once) with the handler ``handler_expr``."""
    fn, prefix, keywords = adapter.op(emitter, event, op)
    names: Dict[str, Any] = {f"{op}{tag}": fn}
    params = []
    for i, value in enumerate(prefix):
        names[f"{op}{tag}_p{i}"] = value
        params.append(f"{op}{tag}_p{i}")
    params.append(handler_expr)
    for key, value in keywords.items():
        names[f"{op}{tag}_k_{key}"] = value
        params.append(f"{key}={op}{tag}_k_{key}")
    return f"{op}{tag}({', '.join(params)})", names


def floor_case(
    floor: Any, subscribers: Sequence[Callable[..., Any]], takes: Sequence[int], nargs: int
) -> Case:
    run = floor.make_floor(subscribers, takes)
    names = {"floor": run}
    params = []
    for i in range(nargs):
        names[f"a{i}"] = ARGS[i]
        params.append(f"a{i}")
    return Case(
        body=f"floor({', '.join(params)})",
        namespace=names,
        expected_calls=len(subscribers),
        call=(run, ARGS[:nargs]),
    )


# -- emit scenarios --------------------------------------------------------------


def _emit_scenario(
    name: str, group: str, title: str, fanout: int, nargs: int, takes: int, **params: Any
) -> None:
    trimming = takes < nargs

    def build(adapter: Adapter) -> Case:
        reason = adapter.skip_reason(nargs=nargs, trimming=trimming)
        if reason:
            raise Skip(reason)
        subscribers = handlers(fanout, takes)
        emitter = adapter.new({EVENT: nargs})
        for handler in subscribers:
            adapter.on(emitter, EVENT, handler)
        body, names, call = emit_body(adapter, emitter, EVENT, nargs)
        return Case(body=body, namespace=names, expected_calls=fanout, call=call)

    def build_floor(floor: Any) -> Case:
        return floor_case(floor, handlers(fanout, takes), [takes] * fanout, nargs)

    register(
        Scenario(
            name,
            group=group,
            title=title,
            build=build,
            build_floor=build_floor,
            params=dict(fanout=fanout, nargs=nargs, takes=takes, **params),
        )
    )


FANOUTS = (0, 1, 10, 100, 1000)

for _n in FANOUTS:
    _emit_scenario(
        f"fanout-{_n}", "fan-out", f"fan-out {_n}: 1 argument, handlers take it", _n, 1, 1
    )

for _k in (0, 1, 2, 3):
    _emit_scenario(
        f"args-{_k}", "arguments", f"{_k} argument(s), 10 handlers taking all", 10, _k, _k
    )

for _n in (1, 10, 100):
    _emit_scenario(
        f"trim-{_n}",
        "trimming",
        f"trimming, fan-out {_n}: 3 arguments emitted, handlers take none",
        _n,
        3,
        0,
    )
_emit_scenario(
    "trim-1of3-10",
    "trimming",
    "trimming, fan-out 10: 3 arguments emitted, handlers take the first",
    10,
    3,
    1,
)


# -- churn, failure, registration ----------------------------------------------------


def _build_once_churn(adapter: Adapter) -> Case:
    reason = adapter.skip_reason(once=True)
    if reason:
        raise Skip(reason)
    emitter = adapter.new({EVENT: 1})
    (persistent,) = handlers(1, 1)
    adapter.on(emitter, EVENT, persistent)
    (one_shot,) = handlers(1, 1)
    once_stmt, names = op_call(adapter, emitter, EVENT, "once", "h", "")
    emit_stmt, emit_names, _ = emit_body(adapter, emitter, EVENT, 1)
    names.update(emit_names, h=one_shot)
    return Case(body=f"{once_stmt}; {emit_stmt}", namespace=names, expected_calls=2)


register(
    Scenario(
        "once-churn",
        group="churn",
        title="once churn: register a once handler, emit (1 other handler)",
        build=_build_once_churn,
        build_floor=lambda floor: floor_case(floor, handlers(2, 1), [1, 1], 1),
        unit="once+emit",
    )
)


def _build_onoff_churn(adapter: Adapter) -> Case:
    reason = adapter.skip_reason()
    if reason:
        raise Skip(reason)
    emitter = adapter.new({EVENT: 1})
    for handler in handlers(10, 1):
        adapter.on(emitter, EVENT, handler)
    (joiner,) = handlers(1, 1)
    on_stmt, names = op_call(adapter, emitter, EVENT, "on", "h", "")
    off_stmt, off_names = op_call(adapter, emitter, EVENT, "off", "h", "")
    emit_stmt, emit_names, _ = emit_body(adapter, emitter, EVENT, 1)
    names.update(off_names, **emit_names, h=joiner)
    return Case(body=f"{on_stmt}; {emit_stmt}; {off_stmt}", namespace=names, expected_calls=11)


register(
    Scenario(
        "onoff-churn",
        group="churn",
        title="on/off churn: on, emit, off (10 other handlers)",
        build=_build_onoff_churn,
        build_floor=lambda floor: floor_case(floor, handlers(11, 1), [1] * 11, 1),
        unit="on+emit+off",
    )
)


_QUIET_LOGGERS = ("livekit", "livekit.events")


def _quiet_logging() -> Callable[[], None]:
    """Send the failure records to a NullHandler only; return the undo."""
    saved = []
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        handler = logging.NullHandler()
        saved.append((logger, handler, logger.propagate))
        logger.addHandler(handler)
        logger.propagate = False

    def restore() -> None:
        for logger, handler, propagate in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate

    return restore


def _build_failing(adapter: Adapter) -> Case:
    reason = adapter.skip_reason(failing=True)
    if reason:
        raise Skip(reason)
    emitter = adapter.new({EVENT: 1})
    subscribers = handlers(10, 1)
    subscribers[4] = failing_handler()
    for handler in subscribers:
        adapter.on(emitter, EVENT, handler)
    body, names, call = emit_body(adapter, emitter, EVENT, 1)
    return Case(
        body=body,
        namespace=names,
        expected_calls=10,
        call=call,
        cleanup=_quiet_logging(),
    )


register(
    Scenario(
        "failing",
        group="failure",
        title="a failing handler: 10 handlers, the 5th raises (logged to a NullHandler)",
        build=_build_failing,
        # The floor can't survive an exception: it calls the 9 that succeed.
        build_floor=lambda floor: floor_case(floor, handlers(9, 1), [1] * 9, 1),
    )
)


def _registration(kind: str) -> Callable[[Adapter], Case]:
    def build(adapter: Adapter) -> Case:
        reason = adapter.skip_reason()
        if reason:
            raise Skip(reason)
        emitter = adapter.new({EVENT: 1})
        for handler in handlers(2, 1):
            adapter.on(emitter, EVENT, handler)
        if kind == "function":
            (handler,) = handlers(1, 1)
            names: Dict[str, Any] = {"h": handler}
            expr = "h"
        else:
            names = {"subscriber": Subscriber()}
            expr = "subscriber.on_event"  # a new bound method each time, as in user code
        on_stmt, on_names = op_call(adapter, emitter, EVENT, "on", expr, "")
        off_stmt, off_names = op_call(adapter, emitter, EVENT, "off", expr, "")
        names.update(on_names, **off_names)
        return Case(body=f"{on_stmt}; {off_stmt}", namespace=names)

    return build


register(
    Scenario(
        "register-function",
        group="registration",
        title="on+off pair, a function (2 other handlers)",
        build=_registration("function"),
        unit="on+off pair",
    )
)
register(
    Scenario(
        "register-method",
        group="registration",
        title="on+off pair, a bound method (2 other handlers)",
        build=_registration("method"),
        unit="on+off pair",
    )
)


# -- memory --------------------------------------------------------------------------

MEMORY_EMITTERS = 2000


def _memory(events: int, per_event: int) -> Callable[[Adapter], float]:
    def measure(adapter: Adapter) -> float:
        if not adapter.available:
            raise Skip(adapter.note)
        names = [f"memory_event_{i}" for i in range(events)]
        spec = {name: 1 for name in names}
        subscribers = [handlers(per_event, 1) for _ in names]
        keep: List[Any] = [None] * MEMORY_EMITTERS
        adapter.new(spec)  # warm up caches (type attribute caches, interned names...)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(MEMORY_EMITTERS):
                emitter = adapter.new(spec)
                for name, group in zip(names, subscribers):
                    for handler in group:
                        adapter.on(emitter, name, handler)
                keep[i] = emitter
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        del keep
        return (after - before) / MEMORY_EMITTERS

    return measure


register(
    Scenario(
        "memory-empty",
        group="memory",
        title="memory per emitter, no handlers",
        unit="bytes",
        measure=_memory(0, 0),
    )
)
register(
    Scenario(
        "memory-5x2",
        group="memory",
        title="memory per emitter, 5 events x 2 handlers",
        unit="bytes",
        measure=_memory(5, 2),
    )
)


# -- the room mix ----------------------------------------------------------------------


def room_events() -> List[Tuple[str, int, int]]:
    """``(event, arguments, weight)`` for livekit.rtc.Room's 36 events (room_events.tsv)."""
    rows = []
    with open(os.path.join(HERE, "room_events.tsv"), newline="") as f:
        lines = [line for line in f if not line.startswith("#")]
    for row in csv.DictReader(lines, delimiter="\t"):
        rows.append((row["event"], int(row["args"]), int(row["weight"])))
    return rows


MIX_LENGTH = 1000
MIX_SUBSCRIBERS = 3


def _mix_plan() -> Tuple[List[Tuple[str, int, int]], List[Tuple[str, int]]]:
    events = room_events()
    rng = random.Random(20261125)
    drawn = rng.choices(events, weights=[w for _, _, w in events], k=MIX_LENGTH)
    return events, [(name, nargs) for name, nargs, _ in drawn]


def _mix_takes(nargs: int) -> List[int]:
    # Three subscribers per event: two take every argument, one only the
    # first (or none): the everyday `def on_track(track)` case.
    return [nargs, min(nargs, 1), nargs]


def _build_mix(adapter: Adapter) -> Case:
    reason = adapter.skip_reason(nargs=3, trimming=True)
    if reason:
        raise Skip(reason)
    events, sequence = _mix_plan()
    emitter = adapter.new({name: nargs for name, nargs, _ in events})
    for name, nargs, _ in events:
        for takes in _mix_takes(nargs):
            (handler,) = handlers(1, takes)
            adapter.on(emitter, name, handler)
    calls = []
    for name, nargs in sequence:
        fn, prefix, _ = adapter.op(emitter, name, "emit")
        calls.append((fn, tuple(prefix) + ARGS[:nargs]))
    return Case(
        body="for f, a in calls:\n    f(*a)",
        namespace={"calls": calls},
        per_iteration=len(calls),
        expected_calls=MIX_SUBSCRIBERS * len(calls),
    )


def _build_mix_floor(floor: Any) -> Case:
    events, sequence = _mix_plan()
    floors = {}
    for name, nargs, _ in events:
        takes = _mix_takes(nargs)
        floors[name] = floor.make_floor([handlers(1, t)[0] for t in takes], takes)
    calls = [(floors[name], ARGS[:nargs]) for name, nargs in sequence]
    return Case(
        body="for f, a in calls:\n    f(*a)",
        namespace={"calls": calls},
        per_iteration=len(calls),
        expected_calls=MIX_SUBSCRIBERS * len(calls),
    )


register(
    Scenario(
        "room-mix",
        group="room",
        title=(
            f"room mix: {MIX_LENGTH} emits over livekit Room's 36 events at assumed "
            f"frequencies, {MIX_SUBSCRIBERS} subscribers each (one trims)"
        ),
        build=_build_mix,
        build_floor=_build_mix_floor,
    )
)
