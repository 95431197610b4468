"""SPEC §4, Removal: ``off(event, callback)``.

Every test takes the ``impl``/``EventEmitter``/``emitter`` fixture, so it runs
against the compiled core and the pure-Python twin.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from support import named


# -- off removes every registration of the callback ---------------------------------


def test_off_removes_the_on_registration(emitter: Any) -> None:
    got: List[Any] = []
    emitter.on("e", got.append)
    emitter.emit("e", 1)
    assert emitter.off("e", got.append) is None
    emitter.emit("e", 2)
    assert got == [1]
    assert emitter.listener_count("e") == 0
    assert emitter.event_names() == []


def test_off_removes_pending_once_registration_by_original_callable(emitter: Any) -> None:
    # Differs from livekit, whose direct `once` form registers a wrapper that `off` with
    # the original callable cannot find.
    calls: List[str] = []
    handler = named(calls, "handler")
    assert emitter.once("e", handler) is handler
    emitter.off("e", handler)
    emitter.emit("e")
    assert calls == []
    assert emitter.listener_count("e") == 0


def test_off_removes_pending_once_registration_made_by_decorator(emitter: Any) -> None:
    calls: List[str] = []

    @emitter.once("e")
    def handler() -> None:
        calls.append("handler")

    emitter.off("e", handler)
    emitter.emit("e")
    assert calls == []


def test_off_removes_on_and_every_pending_once_registration(emitter: Any) -> None:
    calls: List[str] = []
    handler = named(calls, "handler")
    other = named(calls, "other")
    emitter.once("e", handler)
    emitter.on("e", other)
    emitter.on("e", handler)
    emitter.once("e", handler)
    emitter.once("e", other)
    assert emitter.listener_count("e") == 5
    emitter.off("e", handler)
    assert emitter.listeners("e") == [other, other]
    emitter.emit("e")
    emitter.emit("e")
    assert calls == ["other", "other", "other"]


def test_off_by_equal_bound_method(emitter: Any) -> None:
    class Owner:
        calls = 0

        def handler(self) -> None:
            self.calls += 1

    owner = Owner()
    emitter.on("e", owner.handler)
    emitter.once("e", owner.handler)
    emitter.off("e", owner.handler)  # a new but equal bound method object
    emitter.emit("e")
    assert owner.calls == 0
    assert emitter.listener_count("e") == 0


def test_off_by_equal_callable_uses_dict_key_equality(emitter: Any) -> None:
    class Key:
        def __init__(self, name: str) -> None:
            self.name = name

        def __call__(self) -> None:
            pass

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Key) and other.name == self.name

        def __hash__(self) -> int:
            return hash(self.name)

    registered = Key("a")
    emitter.on("e", registered)
    emitter.off("e", Key("b"))
    assert emitter.listeners("e") == [registered]
    emitter.off("e", Key("a"))
    assert emitter.listeners("e") == []


def test_off_only_affects_the_given_event(emitter: Any) -> None:
    got: List[Any] = []
    emitter.on("a", got.append)
    emitter.once("b", got.append)
    emitter.on("c", got.append)
    emitter.off("a", got.append)
    emitter.emit("a", "a")
    emitter.emit("b", "b")
    emitter.emit("c", "c")
    assert got == ["b", "c"]


def test_off_keeps_the_order_of_the_others(emitter: Any) -> None:
    calls: List[str] = []
    handlers = [named(calls, name) for name in "abcde"]
    for i, handler in enumerate(handlers):
        (emitter.once if i % 2 else emitter.on)("e", handler)
    emitter.off("e", handlers[2])
    assert emitter.listeners("e") == [handlers[i] for i in (0, 1, 3, 4)]
    emitter.emit("e")
    assert calls == ["a", "b", "d", "e"]


def test_off_then_emit_after_once_already_fired(emitter: Any) -> None:
    calls: List[str] = []
    handler = named(calls, "handler")
    emitter.once("e", handler)
    emitter.emit("e")
    emitter.off("e", handler)  # already gone: silent
    emitter.emit("e")
    assert calls == ["handler"]


# -- unknown event or callback: silently nothing --------------------------------------------


def test_off_unknown_event_is_silent(emitter: Any) -> None:
    assert emitter.off("never-registered", print) is None
    assert emitter.event_names() == []


def test_off_unknown_callback_is_silent(emitter: Any) -> None:
    got: List[Any] = []
    emitter.on("e", got.append)
    assert emitter.off("e", print) is None
    assert emitter.off("e", lambda: None) is None
    emitter.emit("e", 1)
    assert got == [1]


def test_off_twice_is_silent(emitter: Any) -> None:
    emitter.on("e", print)
    emitter.off("e", print)
    emitter.off("e", print)
    assert emitter.listener_count("e") == 0


def test_off_non_callable_or_unhashable_callback_for_unknown_event_is_silent(emitter: Any) -> None:
    emitter.off("unknown", 42)
    emitter.off("unknown", [])  # livekit: `event in self._events` is False, nothing else runs


def test_off_unhashable_event_or_callback_raises_type_error_as_livekit(emitter: Any) -> None:
    # Interpretation: livekit's dict lookups raise TypeError for these, and so do we.
    emitter.on("e", print)
    with pytest.raises(TypeError):
        emitter.off([], print)
    with pytest.raises(TypeError):
        emitter.off("e", [])
    assert emitter.listeners("e") == [print]


def test_off_then_on_again(emitter: Any) -> None:
    got: List[Any] = []
    for i in range(3):
        emitter.on("e", got.append)
        emitter.emit("e", i)
        emitter.off("e", got.append)
        emitter.emit("e", -1)
    assert got == [0, 1, 2]
    assert emitter.event_names() == []


@pytest.mark.parametrize("count", [3, 64, 65, 200])
def test_off_removes_every_match_among_many_registrations(emitter: Any, count: int) -> None:
    # Either side of the compiled core's 64-entry on-stack match buffer.
    calls: List[Any] = []
    others = [named(calls, f"h{i}") for i in range(count)]
    victim = named(calls, "victim")
    for i, handler in enumerate(others):
        emitter.on("e", handler)
        if i % 7 == 0:
            emitter.once("e", victim)
    emitter.on("e", victim)
    emitter.off("e", victim)
    assert emitter.listeners("e") == others
    emitter.emit("e")
    assert calls == [f"h{i}" for i in range(count)]
    emitter.off("e", others[-1])
    assert emitter.listeners("e") == others[:-1]


def test_off_stops_at_an_eq_that_raises_with_nothing_removed(EventEmitter: Any) -> None:
    class Touchy:
        def __call__(self) -> None:
            pass

        def __hash__(self) -> int:
            return 1

        def __eq__(self, other: object) -> bool:
            if isinstance(other, Touchy) and other is not self:
                raise RuntimeError("no comparing")
            return self is other

    emitter = EventEmitter[str]()
    first, second = Touchy(), Touchy()
    emitter.once("e", first)
    emitter.once("e", second)
    before = emitter.listeners("e")
    with pytest.raises(RuntimeError):
        emitter.off("e", second)  # first's == raises before second is reached
    assert emitter.listeners("e") == before
