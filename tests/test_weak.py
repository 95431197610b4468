"""Weak registrations, ``on(event, callback, weak=True)``.

A weak registration keeps nothing alive: a bound method is held as a weak
reference to its object plus its function, anything else by a weak reference.
When the referent dies the registration goes away; everything else behaves as
for strong registrations.  Every test runs on both cores.
"""

from __future__ import annotations

import copy
import gc
import logging
import threading
import weakref
from typing import Any, List

import pytest


class Subscriber:
    def __init__(self, log: List[Any], name: str = "s") -> None:
        self.log = log
        self.name = name

    def on_event(self, value: Any) -> None:
        self.log.append((self.name, value))

    def on_two(self, a: Any, b: Any) -> None:
        self.log.append((self.name, a, b))

    def fail(self, value: Any) -> None:
        raise RuntimeError(f"{self.name} failed")


def collect() -> None:
    gc.collect()
    gc.collect()


@pytest.mark.parametrize("method", ["on", "once"])
def test_weak_bound_method_keeps_its_object_alive_no_longer(emitter: Any, method: str) -> None:
    log: List[Any] = []
    subscriber = Subscriber(log)
    getattr(emitter, method)("e", subscriber.on_event, weak=True)
    assert emitter.listeners("e") == [subscriber.on_event]
    ref = weakref.ref(subscriber)
    del subscriber
    assert ref() is None  # nothing but the caller kept it
    assert emitter.listener_count("e") == 0 and emitter.listeners("e") == []
    assert emitter.event_names() == []
    emitter.emit("e", 1)
    assert log == []


def test_weak_function_registration_goes_away_with_the_function(emitter: Any) -> None:
    log: List[Any] = []

    def make() -> Any:
        def handler(value: Any) -> None:
            log.append(value)

        return handler

    handler = make()
    emitter.on("e", handler, weak=True)
    emitter.emit("e", 1)
    del handler
    emitter.emit("e", 2)
    assert log == [1] and emitter.listener_count("e") == 0


def test_weak_decorator_form(emitter: Any) -> None:
    log: List[Any] = []

    class Widget:
        def __init__(self) -> None:
            emitter.on("e", weak=True)(self.handle)
            emitter.once("e", weak=True)(self.handle)

        def handle(self, value: Any) -> None:
            log.append(value)

    widget = Widget()
    assert emitter.listener_count("e") == 2
    emitter.emit("e", 1)
    assert log == [1, 1] and emitter.listener_count("e") == 1
    del widget
    assert emitter.listener_count("e") == 0


def test_registration_in_a_reference_cycle_goes_away_when_the_cycle_is_collected(
    emitter: Any,
) -> None:
    log: List[Any] = []
    subscriber = Subscriber(log)
    subscriber.cycle = subscriber  # type: ignore[attr-defined]
    emitter.on("e", subscriber.on_event, weak=True)
    del subscriber
    assert emitter.listener_count("e") == 1  # alive until the cycle is collected
    collect()
    assert emitter.listener_count("e") == 0
    emitter.emit("e", 1)
    assert log == []


def test_referent_dying_during_an_emit_is_removed_at_once(emitter: Any) -> None:
    log: List[Any] = []
    holder = {"victim": Subscriber(log, "victim")}

    def killer(value: Any) -> None:
        log.append(("killer", value))
        del holder["victim"]  # its object dies here, before its turn

    emitter.on("e", killer)
    emitter.on("e", holder["victim"].on_event, weak=True)
    emitter.emit("e", 1)
    assert log == [("killer", 1)]
    assert emitter.listeners("e") == [killer]


def test_neither_the_emitter_nor_the_referent_keeps_the_other_alive(EventEmitter: Any) -> None:
    log: List[Any] = []
    subscriber = Subscriber(log)
    emitter = EventEmitter[str]()
    emitter.on("e", subscriber.on_event, weak=True)
    emitter_ref = weakref.ref(emitter)
    del emitter
    assert emitter_ref() is None  # the registration doesn't keep the emitter
    del subscriber  # and its referent dying later is harmless
    collect()


def test_callable_that_cannot_be_weakly_referenced_is_a_type_error(emitter: Any) -> None:

    class Slotted:
        __slots__ = ()

        def __call__(self) -> None:
            pass

        def method(self) -> None:
            pass

    for callback in (Slotted(), Slotted().method):
        for method in ("on", "once"):
            with pytest.raises(TypeError, match="weakly"):
                getattr(emitter, method)("e", callback, weak=True)
    assert emitter.listener_count("e") == 0


def test_off_removes_weak_registrations(emitter: Any) -> None:
    log: List[Any] = []
    subscriber = Subscriber(log)
    emitter.on("e", subscriber.on_event, weak=True)
    emitter.once("e", subscriber.on_event, weak=True)
    emitter.off("e", subscriber.on_event)  # a new bound method: equal, not identical
    assert emitter.listener_count("e") == 0
    emitter.emit("e", 1)
    assert log == []


def test_weak_registrations_trim_keep_order_dedupe_and_fire_once(emitter: Any) -> None:
    log: List[Any] = []
    a, b = Subscriber(log, "a"), Subscriber(log, "b")
    strong = Subscriber(log, "strong")
    emitter.on("e", a.on_event, weak=True)  # takes 1 of 2
    emitter.on("e", strong.on_two)
    emitter.on("e", b.on_two, weak=True)
    emitter.once("e", a.on_two, weak=True)
    emitter.on("e", a.on_event)  # already registered (weakly): nothing changes
    emitter.on("e", strong.on_two, weak=True)  # already registered (strongly)
    assert emitter.listeners("e") == [a.on_event, strong.on_two, b.on_two, a.on_two]
    emitter.emit("e", 1, 2)
    emitter.emit("e", 3, 4)
    assert log == [
        ("a", 1), ("strong", 1, 2), ("b", 1, 2), ("a", 1, 2),
        ("a", 3), ("strong", 3, 4), ("b", 3, 4),
    ]  # fmt: skip


def test_failing_weak_handler_is_isolated(emitter: Any, caplog: pytest.LogCaptureFixture) -> None:
    log: List[Any] = []
    failing, ok = Subscriber(log, "failing"), Subscriber(log, "ok")
    emitter.on("e", failing.fail, weak=True)
    emitter.on("e", ok.on_event, weak=True)
    with caplog.at_level(logging.ERROR, logger="livekit.events"):
        emitter.emit("e", 1)
    assert log == [("ok", 1)]
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [RuntimeError]


def test_weak_once_through_a_subclass_that_overrides_on_and_off(EventEmitter: Any) -> None:
    seen: List[Any] = []

    class Session(EventEmitter[str]):  # type: ignore[misc]
        def on(self, event: Any, callback: Any = None, **kwargs: Any) -> Any:
            seen.append(("on", callback))
            return super().on(event, callback, **kwargs)

        def off(self, event: Any, callback: Any) -> None:
            seen.append(("off", callback))
            super().off(event, callback)

    session = Session()
    log: List[Any] = []
    subscriber = Subscriber(log)
    session.once("e", subscriber.on_event, weak=True)
    ((_, wrapper),) = seen
    assert session.listeners("e") == [subscriber.on_event]
    ref = weakref.ref(subscriber)
    del subscriber
    assert ref() is None  # the wrapper holds it weakly
    assert seen == [("on", wrapper), ("off", wrapper)]  # it removed itself through off
    assert session.listener_count("e") == 0


def test_weak_registrations_copy_as_weak(emitter: Any) -> None:
    log: List[Any] = []
    subscriber = Subscriber(log)
    emitter.on("e", subscriber.on_event, weak=True)
    clone = copy.copy(emitter)
    clone.emit("e", 1)
    assert log == [("s", 1)]
    del subscriber
    assert clone.listener_count("e") == 0 and emitter.listener_count("e") == 0


def test_weak_referents_dying_while_threads_register_and_emit(emitter: Any) -> None:
    log: List[Any] = []
    keep: List[Subscriber] = []
    errors: List[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(300):
                subscriber = Subscriber(log, f"{n}-{i}")
                emitter.on("e", subscriber.on_event, weak=True)
                if i % 3 == 0:
                    keep.append(subscriber)  # survives
                emitter.emit("e", i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    collect()
    assert errors == []
    listeners = emitter.listeners("e")
    assert len(listeners) == len(keep) == emitter.listener_count("e")
    assert {id(m.__self__) for m in listeners} == {id(s) for s in keep}
