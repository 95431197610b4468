"""Every knob and public method fed the bad values a user can pass.

Table-driven: each row is a value and what it must give, the same on both
cores: the value stored (after the documented clamping) or the exception.
After a rejected value nothing has changed: the registrations,
``get_max_listeners()`` and ``get_slow_handler_threshold()`` are as before.

Unhashable events for ``on``/``once``/``emit``/``listeners`` are in
test_edges.py; the leak warning and slow reports themselves in
test_observability.py.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

import livekit_events

MAX = 1e9  # the largest threshold (docs/semantics.md): a larger one is stored as this
NAN, INF = float("nan"), float("inf")
HUGE_STRING = "9" * 100_000  # float() reads it as inf
HUGE_INT = 10**5000  # too long for repr() under 3.11+'s digit limit


class IntSubclass(int):
    def __lt__(self, other: object) -> bool:  # the checks must not trust it
        raise AssertionError("compared through the subclass")


class FloatSubclass(float):
    pass


class BoolRaises:
    def __bool__(self) -> bool:
        raise RuntimeError("no truth value")


def _ids(row: Any) -> str:
    text = repr(row) if not (type(row) is int and row.bit_length() > 64) else f"int{row.bit_length()}"
    return text if len(text) <= 30 else f"{text[:20]}...({len(text)})"


def _handler(value: Any = None) -> None:
    pass


def _state(emitter: Any) -> Tuple[Any, ...]:
    events = emitter.event_names()
    return (
        events,
        [emitter.listeners(event) for event in events],
        emitter.get_max_listeners(),
        livekit_events.get_slow_handler_threshold(),
    )


@pytest.fixture
def busy(emitter: Any) -> Iterator[Any]:
    """An emitter with registrations, its own limit and a threshold set."""
    emitter.on("e", _handler)
    emitter.once("e", print)
    emitter.on("other", repr)
    emitter.set_max_listeners(7)
    yield emitter


# -- set_slow_handler_threshold ----------------------------------------------------------

# (value, what get_slow_handler_threshold() then says, or the exception)
THRESHOLDS: List[Tuple[Any, Any]] = [
    (None, None),
    (0, None),
    (0.0, None),
    (-0.0, None),
    (0.05, 0.05),
    (1, 1.0),
    (5e-324, 5e-324),
    (MAX, MAX),
    (1e10, MAX),
    (1e300, MAX),
    (sys.float_info.max, MAX),
    (2**63, MAX),
    (HUGE_INT, MAX),
    (IntSubclass(2), 2.0),
    (FloatSubclass(0.5), 0.5),
    (-1, ValueError),
    (-1e-300, ValueError),
    (-(2**63), ValueError),
    (-HUGE_INT, ValueError),
    (NAN, ValueError),
    (INF, ValueError),
    (-INF, ValueError),
    (True, ValueError),
    (False, ValueError),
    ("0.1", ValueError),
    ("", ValueError),
    (HUGE_STRING, ValueError),
    (b"1", ValueError),
    ([0.1], ValueError),
    (object(), ValueError),
    (Decimal("0.1"), ValueError),
    (Fraction(1, 10), ValueError),
    (1j, ValueError),
]


@pytest.mark.thread_unsafe  # the threshold is process-wide
@pytest.mark.parametrize("value, expected", THRESHOLDS, ids=_ids)
def test_slow_handler_threshold(busy: Any, value: Any, expected: Any) -> None:
    livekit_events.set_slow_handler_threshold(0.5)
    try:
        before = _state(busy)
        if expected is ValueError:
            with pytest.raises(ValueError) as info:
                livekit_events.set_slow_handler_threshold(value)
            assert len(str(info.value)) < 300  # a huge value is not copied into the message
            assert _state(busy) == before
        else:
            livekit_events.set_slow_handler_threshold(value)
            stored = livekit_events.get_slow_handler_threshold()
            assert stored == expected and type(stored) is type(expected)
        got: List[Any] = []
        busy.on("timed", got.append)
        busy.emit("timed", 1)  # the core took the threshold its getter reports
        assert got == [1]
    finally:
        livekit_events.set_slow_handler_threshold(None)


@pytest.mark.thread_unsafe
@pytest.mark.parametrize("threshold, reported", [(5e-324, True), (1e300, False)], ids=_ids)
def test_emit_uses_the_threshold_the_getter_reports(
    emitter: Any, caplog: pytest.LogCaptureFixture, threshold: float, reported: bool
) -> None:
    emitter.on("e", lambda: time.sleep(0.002))
    livekit_events.set_slow_handler_threshold(threshold)
    try:
        with caplog.at_level(logging.WARNING, logger="livekit.events"):
            emitter.emit("e")
    finally:
        livekit_events.set_slow_handler_threshold(None)
    slow = [r for r in caplog.records if r.getMessage().startswith("slow handler")]
    assert len(slow) == (1 if reported else 0)


# -- the environment variable ------------------------------------------------------------

_IMPORT = r"""
import json, sys, warnings
strict = sys.argv[1] == "strict"
if strict:
    warnings.simplefilter("error", RuntimeWarning)  # python -W error::RuntimeWarning
    import livekit_events
    caught = []
else:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import livekit_events
emitter = livekit_events.EventEmitter()
got = []
emitter.on("e", got.append)
emitter.emit("e", 1)
print(json.dumps({
    "implementation": livekit_events.IMPLEMENTATION,
    "threshold": livekit_events.get_slow_handler_threshold(),
    "warnings": [str(w.message) for w in caught if w.category is RuntimeWarning],
    "emitted": got,
}))
"""

# (value, threshold after the import, whether it is ignored with a warning)
ENVIRONMENT: List[Tuple[str, Any, bool]] = [
    ("0.05", 0.05, False),
    (" 0.05\n", 0.05, False),
    ("", None, False),
    ("   ", None, False),
    ("0", None, False),
    ("1e-400", None, False),  # 0.0: off
    ("1e10", MAX, False),
    ("1e300", MAX, False),
    ("nan", None, True),
    ("inf", None, True),
    ("-inf", None, True),
    ("-1", None, True),
    ("abc", None, True),
    ("0x10", None, True),
    ("0.05s", None, True),
    (HUGE_STRING, None, True),
]


def _import_with(impl: Any, value: str, tmp_path: Any, mode: str) -> Tuple[Dict[str, Any], str]:
    env = dict(os.environ, LIVEKIT_EVENTS_SLOW_HANDLER_THRESHOLD=value)
    env.pop("LIVEKIT_EVENTS_NO_EXTENSIONS", None)
    if impl.name == "pure":
        env["LIVEKIT_EVENTS_NO_EXTENSIONS"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT, mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),  # not the checkout: `-c` puts the cwd first on sys.path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["implementation"] == impl.name and outcome["emitted"] == [1]
    return outcome, result.stderr


@pytest.mark.thread_unsafe  # a subprocess each: not worth four threads
@pytest.mark.parametrize("value, threshold, warned", ENVIRONMENT, ids=_ids)
def test_environment_variable_never_stops_the_import(
    impl: Any, tmp_path: Any, value: str, threshold: Any, warned: bool
) -> None:
    outcome, _ = _import_with(impl, value, tmp_path, "record")
    assert outcome["threshold"] == threshold
    assert len(outcome["warnings"]) == (1 if warned else 0)
    if warned:
        message = outcome["warnings"][0]
        assert "LIVEKIT_EVENTS_SLOW_HANDLER_THRESHOLD" in message and len(message) < 300


@pytest.mark.thread_unsafe
def test_environment_variable_ignored_when_warnings_are_errors(impl: Any, tmp_path: Any) -> None:
    outcome, stderr = _import_with(impl, "abc", tmp_path, "strict")
    assert outcome["threshold"] is None
    assert "ignoring LIVEKIT_EVENTS_SLOW_HANDLER_THRESHOLD='abc'" in stderr  # logged instead


# -- set_max_listeners and the class attribute max_listeners -------------------------------

# (value, what get_max_listeners() then says, or the exception)
LIMITS: List[Tuple[Any, Any]] = [
    (None, 0),
    (0, 0),
    (1, 1),
    (7, 7),
    (sys.maxsize, sys.maxsize),
    (sys.maxsize + 1, sys.maxsize),
    (2**64, sys.maxsize),
    (HUGE_INT, sys.maxsize),
    (IntSubclass(5), 5),
    (-1, ValueError),
    (-(2**63), ValueError),
    (-HUGE_INT, ValueError),
    (True, ValueError),
    (False, ValueError),
    (1.0, ValueError),
    (1.5, ValueError),
    (NAN, ValueError),
    (INF, ValueError),
    ("10", ValueError),
    (HUGE_STRING, ValueError),
    (b"", ValueError),
    ([], ValueError),
    (Decimal(5), ValueError),
    (object(), ValueError),
]


@pytest.mark.parametrize("value, expected", LIMITS, ids=_ids)
def test_set_max_listeners(busy: Any, value: Any, expected: Any) -> None:
    before = _state(busy)
    if expected is ValueError:
        with pytest.raises(ValueError) as info:
            busy.set_max_listeners(value)
        assert len(str(info.value)) < 300
        assert _state(busy) == before
    else:
        busy.set_max_listeners(value)
        assert busy.get_max_listeners() == expected and type(busy.get_max_listeners()) is int
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a limit of 1 warns, as it should
            busy.on("e", repr)
        assert busy.listeners("e") == [_handler, print, repr]


@pytest.mark.parametrize("value, expected", LIMITS, ids=_ids)
def test_class_attribute_max_listeners(EventEmitter: Any, value: Any, expected: Any) -> None:
    class Limited(EventEmitter[str]):  # type: ignore[misc]
        max_listeners = value

    emitter = Limited()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a limit of 1 warns, as it should
        if expected is ValueError:
            for call in (
                lambda: emitter.on("e", _handler),
                lambda: emitter.once("e", _handler),
                lambda: emitter.on("e")(_handler),
                emitter.get_max_listeners,
            ):
                with pytest.raises(ValueError):
                    call()
            assert emitter.event_names() == [] and emitter.listener_count("e") == 0
            emitter.set_max_listeners(3)  # an emitter's own limit wins
            emitter.on("e", _handler)
            assert emitter.listeners("e") == [_handler]
        else:
            assert emitter.get_max_listeners() == expected
            assert type(emitter.get_max_listeners()) is int
            emitter.on("e", _handler)
            emitter.once("e", print)
            assert emitter.listeners("e") == [_handler, print]


# -- on, once, off, emit, listeners, listener_count, remove_all_listeners -------------------

UNHASHABLE = [[], {}, {1}, bytearray(b"x")]

EVENT_CALLS: Dict[str, Callable[[Any, Any], Any]] = {
    "off": lambda emitter, event: emitter.off(event, _handler),
    "listener_count": lambda emitter, event: emitter.listener_count(event),
    "remove_all_listeners": lambda emitter, event: emitter.remove_all_listeners(event),
    "once decorator": lambda emitter, event: emitter.once(event),
    "on weak": lambda emitter, event: emitter.on(event, _handler, weak=True),
    "once weak": lambda emitter, event: emitter.once(event, _handler, weak=True),
}


@pytest.mark.parametrize("event", UNHASHABLE, ids=_ids)
@pytest.mark.parametrize("call", EVENT_CALLS, ids=str)
def test_unhashable_event(busy: Any, call: str, event: Any) -> None:
    before = _state(busy)
    with pytest.raises(TypeError):
        EVENT_CALLS[call](busy, event)
    assert _state(busy) == before


class Unhashable:
    __hash__ = None  # type: ignore[assignment]

    def __call__(self, value: Any = None) -> None:
        pass


NOT_CALLABLE = [1, 1.5, "handler", b"x", (), object(), NAN]


def _registrations(emitter: Any) -> Dict[str, Callable[[Any], Any]]:
    return {
        "on": lambda callback: emitter.on("e", callback),
        "once": lambda callback: emitter.once("e", callback),
        "on weak": lambda callback: emitter.on("e", callback, weak=True),
        "once weak": lambda callback: emitter.once("e", callback, weak=True),
        "on decorator": lambda callback: emitter.on("e")(callback),
        "once decorator": lambda callback: emitter.once("e")(callback),
    }


@pytest.mark.parametrize("callback", [*NOT_CALLABLE, Unhashable()], ids=_ids)
@pytest.mark.parametrize("how", list(_registrations(None)), ids=str)
@pytest.mark.parametrize("subclass", [False, True], ids=["plain", "overriding-on"])
def test_bad_callback_is_a_type_error_and_registers_nothing(
    EventEmitter: Any, how: str, callback: Any, subclass: bool
) -> None:
    if subclass:  # once then goes through a wrapper and self.on

        class Overriding(EventEmitter[str]):  # type: ignore[misc]
            def on(self, event: Any, callback: Any = None, *, weak: bool = False) -> Any:
                return super().on(event, callback, weak=weak)

        emitter = Overriding()
    else:
        emitter = EventEmitter[str]()
    emitter.on("e", _handler)
    emitter.set_max_listeners(7)
    before = _state(emitter)
    with pytest.raises(TypeError):
        _registrations(emitter)[how](callback)
    assert _state(emitter) == before


@pytest.mark.parametrize("callback", [*NOT_CALLABLE, Unhashable()], ids=_ids)
def test_off_with_a_bad_callback(busy: Any, callback: Any) -> None:
    before = _state(busy)
    busy.off("no such event", callback)  # unknown event: nothing to compare with
    if isinstance(callback, Unhashable):
        with pytest.raises(TypeError):
            busy.off("e", callback)
    else:
        busy.off("e", callback)  # never registered: ignored
    assert _state(busy) == before


@pytest.mark.parametrize("event", [None, NAN, HUGE_STRING, HUGE_INT, (), frozenset()], ids=_ids)
def test_unusual_hashable_events_leave_other_events_alone(busy: Any, event: Any) -> None:
    before = _state(busy)
    busy.emit(event, 1)
    assert busy.listeners(event) == [] and busy.listener_count(event) == 0
    busy.off(event, _handler)
    if event is not None:  # None: every event
        busy.remove_all_listeners(event)
    assert _state(busy) == before


class Subscriber:
    def __call__(self, value: Any = None) -> None:
        pass


# weak= is read for its truth value, as an `if weak:` would.
WEAK_FLAGS = [(None, False), (0, False), ("", False), ([], False), (False, False),
              (1, True), ("no", True), ([0], True), (True, True)]  # fmt: skip


@pytest.mark.parametrize("flag, weak", WEAK_FLAGS, ids=_ids)
@pytest.mark.parametrize("how", list(_registrations(None)), ids=str)
def test_weak_is_taken_for_its_truth_value(
    emitter: Any, how: str, flag: Any, weak: bool
) -> None:
    subscriber = Subscriber()
    method, _, form = how.partition(" ")
    if form == "decorator":
        getattr(emitter, method)("e", weak=flag)(subscriber)
    else:
        getattr(emitter, method)("e", subscriber, weak=flag)
    assert emitter.listeners("e") == [subscriber]
    del subscriber
    gc.collect()
    assert emitter.listener_count("e") == (0 if weak else 1)


@pytest.mark.parametrize("how", ["on", "once", "on decorator", "once decorator"], ids=str)
def test_weak_whose_truth_value_raises_registers_nothing(busy: Any, how: str) -> None:
    before = _state(busy)
    method, _, form = how.partition(" ")
    with pytest.raises(RuntimeError, match="no truth value"):
        if form == "decorator":
            getattr(busy, method)("e", weak=BoolRaises())(Subscriber())
        else:
            getattr(busy, method)("e", Subscriber(), weak=BoolRaises())
    assert _state(busy) == before

