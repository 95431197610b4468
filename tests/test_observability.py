"""The listener-leak warning and slow-handler detection.

Both are paid only where they can be: the leak check at registration, the
timing only while detection is on.  Every test runs on both cores.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import time
import warnings
from typing import Any, Iterator, List

import pytest

import livekit_events
from livekit_events import ListenerLeakWarning

# -- listener-leak warning -------------------------------------------------------------


def _register(emitter: Any, event: Any, count: int) -> None:
    for i in range(count):
        emitter.on(event, (lambda i: lambda: i)(i))


def test_warns_once_when_an_event_first_exceeds_max_listeners(EventEmitter: Any) -> None:
    class Room(EventEmitter[str]):  # type: ignore[misc]
        pass

    room = Room()
    assert room.get_max_listeners() == Room.max_listeners == 1000  # the default
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _register(room, "data_received", 1000)
        assert caught == []
        _register(room, "data_received", 50)
    assert [w.category for w in caught] == [ListenerLeakWarning]
    message = str(caught[0].message)
    for part in ("Room", "'data_received'", "1001", "max_listeners (1000)", "set_max_listeners"):
        assert part in message, part
    assert caught[0].filename == __file__  # points at the registering code


def test_class_attribute_and_per_instance_limit(EventEmitter: Any) -> None:
    class Track(EventEmitter[str]):  # type: ignore[misc]
        max_listeners = 3

    track, other, unlimited = Track(), Track(), Track()
    track.set_max_listeners(5)
    unlimited.set_max_listeners(None)
    assert (track.get_max_listeners(), other.get_max_listeners()) == (5, 3)
    assert unlimited.get_max_listeners() == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _register(track, "e", 5)
        _register(other, "e", 3)
        _register(unlimited, "e", 50)
        assert caught == []
        _register(track, "e", 1)
        _register(other, "e", 1)
    assert [str(w.message).split(" has ")[1].split(" handlers")[0] for w in caught] == ["6", "4"]


def test_warns_again_after_the_event_had_no_handlers(emitter: Any) -> None:
    emitter.set_max_listeners(2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _register(emitter, "e", 4)
        emitter.remove_all_listeners("e")
        _register(emitter, "e", 4)
        _register(emitter, "other", 3)
    assert len(caught) == 3


def test_once_registrations_count_too(emitter: Any) -> None:
    emitter.set_max_listeners(2)
    with pytest.warns(ListenerLeakWarning):
        for _ in range(3):
            emitter.once("e", print)


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_invalid_limits_are_rejected(EventEmitter: Any, bad: Any) -> None:
    with pytest.raises(ValueError):
        EventEmitter[str]().set_max_listeners(bad)


def test_the_warning_can_be_an_error_without_losing_the_registration(emitter: Any) -> None:
    emitter.set_max_listeners(1)
    emitter.on("e", print)
    with pytest.raises(ListenerLeakWarning):  # pytest turns warnings into errors here
        emitter.on("e", repr)
    assert emitter.listeners("e") == [print, repr]



@pytest.mark.thread_unsafe  # warnings.showwarning is process-wide
def test_code_run_by_the_warning_may_change_the_same_event(emitter: Any) -> None:
    # The warning is Python code run by on(): it comes after on()'s change, so
    # what it does to the same event is neither lost nor undone.
    emitter.set_max_listeners(2)
    first, second, third, added = (lambda: 1), (lambda: 2), (lambda: 3), (lambda: 4)
    emitter.on("e", first)
    emitter.on("e", second)

    def reenter(*args: Any, **kwargs: Any) -> None:
        emitter.off("e", first)
        emitter.on("e", added)
        emitter.on("e", third)  # already there: changes nothing

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = reenter
        emitter.on("e", third)
    assert emitter.listeners("e") == [second, third, added]
    emitter.emit("e")


# -- slow-handler detection ------------------------------------------------------------



@pytest.fixture
def slow_detection() -> Iterator[None]:
    assert livekit_events.get_slow_handler_threshold() is None
    livekit_events.set_slow_handler_threshold(0.02)
    try:
        yield
    finally:
        livekit_events.set_slow_handler_threshold(None)


def _slow_records(caplog: pytest.LogCaptureFixture) -> List[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("slow handler")]


def sleepy(value: Any) -> None:
    time.sleep(0.05)  # well over the 20 ms threshold


@pytest.mark.thread_unsafe
def test_slow_handler_is_logged_with_its_name_place_event_and_duration(
    emitter: Any, slow_detection: None, caplog: pytest.LogCaptureFixture
) -> None:
    got: List[Any] = []
    emitter.on("track_subscribed", got.append)
    emitter.on("track_subscribed", sleepy)
    with caplog.at_level(logging.WARNING, logger="livekit.events"):
        emitter.emit("track_subscribed", 1)
    (record,) = _slow_records(caplog)
    assert record.levelno == logging.WARNING and record.name == "livekit.events"
    message = record.getMessage()
    assert "sleepy" in message and f"{__file__}:" in message
    assert "'track_subscribed'" in message and " ms " in message
    assert got == [1]  # the other handler ran as usual


@pytest.mark.thread_unsafe
def test_slow_reports_are_rate_limited_per_handler(
    emitter: Any, slow_detection: None, caplog: pytest.LogCaptureFixture
) -> None:

    def also_sleepy(value: Any) -> None:
        time.sleep(0.05)

    emitter.on("e", sleepy)
    emitter.on("e", also_sleepy)
    with caplog.at_level(logging.WARNING, logger="livekit.events"):
        for _ in range(3):
            emitter.emit("e", 1)
    names = [r.getMessage().split(": ")[1].split(" (")[0] for r in _slow_records(caplog)]
    assert sorted(names) == ["sleepy", "test_slow_reports_are_rate_limited_per_handler.<locals>.also_sleepy"]


@pytest.mark.thread_unsafe
def test_fast_handlers_and_detection_off_log_nothing(
    emitter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    emitter.on("e", sleepy)
    with caplog.at_level(logging.WARNING, logger="livekit.events"):
        emitter.emit("e", 1)  # off: not timed
        livekit_events.set_slow_handler_threshold(10.0)
        try:
            emitter.emit("e", 1)  # on, but under 10 s
        finally:
            livekit_events.set_slow_handler_threshold(None)
    assert _slow_records(caplog) == []


@pytest.mark.thread_unsafe
def test_slow_failing_and_once_handlers_are_still_isolated_and_removed(
    emitter: Any, slow_detection: None, caplog: pytest.LogCaptureFixture
) -> None:

    def slow_and_failing(value: Any) -> None:
        time.sleep(0.05)
        raise RuntimeError("boom")

    got: List[Any] = []
    emitter.once("e", slow_and_failing)
    emitter.on("e", got.append)
    with caplog.at_level(logging.WARNING, logger="livekit.events"):
        emitter.emit("e", 1)
        emitter.emit("e", 2)
    assert got == [1, 2] and emitter.listener_count("e") == 1
    assert len(_slow_records(caplog)) == 1
    assert [r.getMessage() for r in caplog.records if r.exc_info] == ["failed to emit event e"]


class _SlowLogHandler(logging.Handler):
    """A log handler that takes longer than the threshold for every record."""

    def emit(self, record: logging.LogRecord) -> None:
        time.sleep(0.05)


@pytest.fixture
def slow_logging() -> Iterator[None]:
    # "livekit": livekit's own emitters log failures there (and livekit.events
    # propagates to it), so every record of the emit is slow.
    logger = logging.getLogger("livekit")
    handler = _SlowLogHandler()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _emit_through_slow_reports(emitter: Any, caplog: pytest.LogCaptureFixture) -> List[str]:
    def fails_fast(value: Any) -> None:
        raise RuntimeError("boom")

    def fast(value: Any) -> None:
        pass

    # Each handler's time is its own: a slow report's or a failure's logging
    # (50 ms each here) is charged neither to the handler nor to the next one.
    for callback in (fails_fast, fast, sleepy, fast, fails_fast, fast):
        emitter.on("e", functools.partial(callback))  # six distinct handlers
    with caplog.at_level(logging.WARNING, logger="livekit.events"):
        emitter.emit("e", 1)
    return [r.getMessage() for r in _slow_records(caplog)]


@pytest.mark.thread_unsafe
def test_slow_handler_time_excludes_the_reports_before_it(
    EventEmitter: Any, slow_detection: None, slow_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    (report,) = _emit_through_slow_reports(EventEmitter[str](), caplog)
    assert "sleepy" in report


@pytest.mark.thread_unsafe
def test_slow_handler_time_excludes_the_reports_before_it_with_install(
    impl: Any, slow_detection: None, slow_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    rtc = pytest.importorskip("livekit.rtc")
    from livekit_events import _livekit

    _livekit._install(impl.core)
    try:
        (report,) = _emit_through_slow_reports(rtc.EventEmitter(), caplog)
        assert "sleepy" in report
    finally:
        livekit_events.uninstall()


class _ReenteringLogHandler(logging.Handler):
    """Changes the emitter from inside a log record of its own emit."""

    def __init__(self, change: Any) -> None:
        super().__init__()
        self.change = change

    def emit(self, record: logging.LogRecord) -> None:
        self.change()


@pytest.mark.thread_unsafe  # the threshold and the logger are process-wide
@pytest.mark.parametrize("record", ["failure", "slow report"])
def test_a_log_handler_may_change_the_emitter_during_its_emit(
    emitter: Any, slow_detection: None, record: str
) -> None:
    # A failure's log record and a slow report are Python code run in the
    # middle of emit; what they do follows the usual rules (a handler removed
    # before its turn isn't called, one added during the emit waits).
    calls: List[str] = []

    def first(value: Any) -> None:
        calls.append("first")
        if record == "failure":
            raise RuntimeError("boom")
        time.sleep(0.05)

    def second(value: Any) -> None:
        calls.append("second")

    def third(value: Any) -> None:
        calls.append("third")

    def added(value: Any) -> None:
        calls.append("added")

    def change() -> None:
        if emitter.listener_count("e") == 3:
            emitter.off("e", third)
            emitter.on("e", added)
            emitter.emit("other", 1)

    for callback in (first, second, third):
        emitter.on("e", callback)
    logger = logging.getLogger("livekit.events")
    handler = _ReenteringLogHandler(change)
    logger.addHandler(handler)
    try:
        emitter.emit("e", 1)
    finally:
        logger.removeHandler(handler)
    assert calls == ["first", "second"]
    assert emitter.listeners("e") == [first, second, added]
    emitter.emit("e", 2)
    assert calls[2:] == ["first", "second", "added"]


@pytest.mark.parametrize("bad", [-1, "0.1", float("nan"), float("inf"), True])
def test_invalid_thresholds_are_rejected(bad: Any) -> None:
    with pytest.raises(ValueError):
        livekit_events.set_slow_handler_threshold(bad)
    assert livekit_events.get_slow_handler_threshold() is None


@pytest.mark.thread_unsafe
def test_environment_variable_turns_detection_on_at_import(impl: Any) -> None:
    code = (
        "import logging, sys, time, livekit_events\n"
        "logging.basicConfig(stream=sys.stdout, format='%(levelname)s %(message)s')\n"
        "from livekit_events._emitter import emitter_class_for\n"
        f"import livekit_events.{impl.core.__name__.rsplit('.', 1)[1]} as core\n"
        "em = emitter_class_for(core.EmitterCore)()\n"
        "em.on('e', lambda: time.sleep(0.05))\n"
        "em.emit('e')\n"
        "print('threshold', livekit_events.get_slow_handler_threshold())\n"
    )
    env = dict(os.environ, LIVEKIT_EVENTS_SLOW_HANDLER_THRESHOLD="0.01")
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
        cwd=os.path.dirname(os.path.abspath(__file__)),  # `-c` puts the cwd first on sys.path
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING slow handler for event 'e'" in result.stdout
    assert "threshold 0.01" in result.stdout


@pytest.mark.thread_unsafe
def test_slow_handlers_of_livekits_own_emitters_with_install(
    impl: Any, slow_detection: None, caplog: pytest.LogCaptureFixture
) -> None:
    rtc = pytest.importorskip("livekit.rtc")
    from livekit_events import _livekit

    core = impl.core
    _livekit._install(core)  # the implementation under test
    try:
        emitter = rtc.EventEmitter()
        emitter.on("e", sleepy)
        with caplog.at_level(logging.WARNING, logger="livekit.events"):
            emitter.emit("e", 1)
    finally:
        livekit_events.uninstall()
    (record,) = _slow_records(caplog)
    assert "sleepy" in record.getMessage()
