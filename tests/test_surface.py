"""SPEC §1, Surface: the class, its generics, subclassing and the public methods.

Every test takes the ``impl``/``EventEmitter``/``emitter`` fixture, so it runs
against the compiled core and the pure-Python twin.
"""

from __future__ import annotations

import abc
import inspect
import typing
import weakref
from typing import Any, Generic, List, Literal, TypeVar

import pytest

T = TypeVar("T")
K = TypeVar("K")


def _noop(*args: Any) -> None:
    pass


def _other(*args: Any) -> None:
    pass


def _recorder(calls: List[Any], name: str) -> Any:
    def handler(*args: Any) -> None:
        calls.append((name, args))

    handler.__name__ = handler.__qualname__ = name
    return handler


# -- EventEmitter is generic over the event-name type ----------------------------


def test_generic_alias_is_instantiable(EventEmitter: Any) -> None:
    e = EventEmitter[Literal["connected", "participant_connected"]]()
    assert isinstance(e, EventEmitter)
    got: List[Any] = []
    e.on("connected", got.append)
    e.emit("connected", 1)
    assert got == [1]


def test_generic_alias_is_subclassable_like_livekit_room(EventEmitter: Any) -> None:
    class Room(EventEmitter[Literal["connected", "participant_connected"]]):
        def __init__(self) -> None:
            super().__init__()
            self.name = "room"

    room = Room()
    got: List[Any] = []
    room.on("participant_connected", got.append)
    room.emit("participant_connected", "alice")
    assert got == ["alice"]
    assert isinstance(room, EventEmitter)
    assert room.name == "room"


def test_generic_subclass_can_stay_generic_and_be_parametrized_later(EventEmitter: Any) -> None:
    class Base(EventEmitter[T]):
        pass

    class Concrete(Base[str]):
        pass

    for cls in (Base, Base[int], Concrete):
        e = cls()
        got: List[Any] = []
        e.on("x", got.append)
        e.emit("x", cls)
        assert got == [cls]


def test_mixes_with_abc_and_other_generic_bases(EventEmitter: Any) -> None:
    class Abstract(abc.ABC, EventEmitter[T], Generic[T, K]):
        @abc.abstractmethod
        def kind(self) -> K: ...

    with pytest.raises(TypeError):
        Abstract()  # abstract methods still enforced through the mix

    class Impl(Abstract[str, int]):
        def kind(self) -> int:
            return 1

    e = Impl()
    assert isinstance(e, EventEmitter) and isinstance(e, abc.ABC)
    got: List[Any] = []
    e.on("a", got.append)
    e.emit("a", e.kind())
    assert got == [1]

    class AbstractFirst(EventEmitter[str], abc.ABC):
        @abc.abstractmethod
        def f(self) -> None: ...

    with pytest.raises(TypeError):
        AbstractFirst()


def test_type_checkers_see_generic_t_contra(EventEmitter: Any) -> None:
    assert issubclass(EventEmitter, Generic)  # type: ignore[arg-type]
    (param,) = EventEmitter.__parameters__
    assert isinstance(param, TypeVar)
    assert param.__name__ == "T_contra"
    assert param.__contravariant__
    assert typing.get_origin(EventEmitter[str]) is EventEmitter
    assert typing.get_args(EventEmitter[str]) == (str,)


# -- subclasses written in Python work as with livekit's class --------------------


def test_subclass_overrides_on_and_emit_calling_super(EventEmitter: Any) -> None:
    seen: List[Any] = []

    class Logged(EventEmitter[str]):
        def on(self, event: Any, callback: Any = None) -> Any:
            seen.append(("on", event))
            return super().on(event, callback)

        def off(self, event: Any, callback: Any) -> None:
            seen.append(("off", event))
            super().off(event, callback)

        def emit(self, event: Any, *args: Any) -> None:
            seen.append(("emit", event, args))
            super().emit(event, *args)

        def once(self, event: Any, callback: Any = None) -> Any:
            seen.append(("once", event))
            return super().once(event, callback)

    e = Logged()
    got: List[Any] = []
    assert e.on("a", got.append) == got.append
    e.emit("a", 1, 2)
    e.off("a", got.append)
    e.emit("a", 3)
    assert got == [1]
    assert seen == [("on", "a"), ("emit", "a", (1, 2)), ("off", "a"), ("emit", "a", (3,))]

    @e.on("b")
    def handler() -> None:
        got.append("b")

    e.emit("b")
    assert got == [1, "b"]
    assert ("on", "b") in seen
    seen.clear()
    e.once("c", got.append)
    e.emit("c", "c")
    e.emit("c", "again")
    assert got == [1, "b", "c"]
    # once went through the overridden once and, from there, the overridden on
    assert seen[:2] == [("once", "c"), ("on", "c")]


def test_subclass_instances_have_dict_and_weakref(EventEmitter: Any) -> None:
    class Sub(EventEmitter[str]):
        pass

    for e in (Sub(), EventEmitter()):
        e.attribute = 42
        assert e.__dict__["attribute"] == 42
        ref = weakref.ref(e)
        assert ref() is e
        weakref.WeakSet([e])  # usable as a weak key too
        weakref.WeakKeyDictionary({e: 1})


def test_init_called_on_object_made_with_dunder_new(EventEmitter: Any) -> None:
    class Sub(EventEmitter[str]):
        def __init__(self, value: int) -> None:
            super().__init__()
            self.value = value

    obj = Sub.__new__(Sub)
    EventEmitter.__init__(obj)
    got: List[Any] = []
    obj.on("a", got.append)
    obj.emit("a", 1)
    assert got == [1]

    plain = EventEmitter.__new__(EventEmitter)
    EventEmitter.__init__(plain)
    plain.on("a", got.append)
    plain.emit("a", 2)
    assert got == [1, 2]


def test_subclass_constructor_with_own_arguments(EventEmitter: Any) -> None:
    class Sub(EventEmitter[str]):
        def __init__(self, a: int, *, b: int = 0) -> None:
            super().__init__()
            self.total = a + b

    e = Sub(1, b=2)
    assert e.total == 3
    got: List[Any] = []
    e.on("x", got.append)
    e.emit("x", e.total)
    assert got == [3]


# -- no __len__ or __bool__: always truthy ----------------------------------------


def test_no_len_or_bool_always_truthy(EventEmitter: Any) -> None:
    e = EventEmitter()
    assert not hasattr(e, "__len__")
    assert not hasattr(EventEmitter, "__bool__")
    with pytest.raises(TypeError):
        len(e)
    assert bool(e) is True  # empty
    e.on("a", _noop)
    assert bool(e) is True
    e.off("a", _noop)
    assert bool(e) is True


# -- method signatures -------------------------------------------------------------


def test_emit_on_once_off_signatures(emitter: Any) -> None:
    got: List[Any] = []
    assert emitter.emit("nothing") is None
    assert emitter.on("a", got.append) == got.append
    assert emitter.on("b", callback=got.append) == got.append
    assert emitter.once("c", callback=got.append) == got.append
    assert emitter.emit("a", 1) is None
    assert emitter.off("a", got.append) is None
    assert emitter.off(event="b", callback=got.append) is None
    emitter.emit("b", 2)
    emitter.emit("c", 3)
    assert got == [1, 3]
    for method in ("on", "once"):
        params = list(inspect.signature(getattr(type(emitter), method)).parameters.values())
        assert [p.name for p in params] == ["self", "event", "callback", "weak"]
        assert params[2].default is None
        assert params[3].kind is params[3].KEYWORD_ONLY and params[3].default is False


# -- listeners, listener_count, event_names, remove_all_listeners ------------------


def test_listeners_returns_callables_as_registered_in_call_order(emitter: Any) -> None:
    calls: List[Any] = []
    first, second, third = (_recorder(calls, n) for n in ("first", "second", "third"))
    emitter.on("a", first)
    emitter.once("a", second)  # once registrations are unwrapped
    emitter.on("a", third)
    emitter.once("a", first)
    listeners = emitter.listeners("a")
    assert type(listeners) is list
    assert listeners == [first, second, third, first]
    assert all(a is b for a, b in zip(listeners, [first, second, third, first]))
    emitter.emit("a")
    assert [name for name, _ in calls] == ["first", "second", "third", "first"]
    assert emitter.listeners("a") == [first, third]
    assert emitter.listeners("unknown") == []


def test_listeners_returns_a_copy(emitter: Any) -> None:
    emitter.on("a", _noop)
    listeners = emitter.listeners("a")
    listeners.append(_other)
    listeners.clear()
    assert emitter.listeners("a") == [_noop]


def test_listener_count_counts_each_registration(emitter: Any) -> None:
    assert emitter.listener_count("a") == 0
    emitter.on("a", _noop)
    emitter.on("a", _noop)  # deduplicated
    assert emitter.listener_count("a") == 1
    emitter.once("a", _noop)
    emitter.once("a", _other)
    assert emitter.listener_count("a") == 3
    assert type(emitter.listener_count("a")) is int
    emitter.emit("a")  # both once registrations fire
    assert emitter.listener_count("a") == 1
    emitter.off("a", _noop)
    assert emitter.listener_count("a") == 0


def test_event_names_lists_events_with_at_least_one_handler(emitter: Any) -> None:
    assert emitter.event_names() == []
    emitter.on("a", _noop)
    emitter.once("b", _other)
    emitter.on(("tuple", 1), _noop)
    names = emitter.event_names()
    assert type(names) is list
    assert sorted(map(repr, names)) == sorted(map(repr, ["a", "b", ("tuple", 1)]))
    emitter.emit("b")  # the only (once) handler of "b" fired
    assert set(emitter.event_names()) == {"a", ("tuple", 1)}
    emitter.off("a", _noop)
    assert emitter.event_names() == [("tuple", 1)]
    emitter.remove_all_listeners(("tuple", 1))
    assert emitter.event_names() == []


def test_remove_all_listeners_of_one_event(emitter: Any) -> None:
    got: List[Any] = []
    emitter.on("a", got.append)
    emitter.once("a", got.append)
    emitter.on("b", got.append)
    assert emitter.remove_all_listeners("a") is None
    emitter.emit("a", 1)
    emitter.emit("b", 2)
    assert got == [2]
    assert emitter.listeners("a") == [] and emitter.listener_count("a") == 0
    assert emitter.event_names() == ["b"]
    emitter.remove_all_listeners("unknown")  # silent
    emitter.on("a", got.append)  # registering again works
    emitter.emit("a", 3)
    assert got == [2, 3]


def test_remove_all_listeners_without_event_removes_everything(emitter: Any) -> None:
    got: List[Any] = []
    emitter.on("a", got.append)
    emitter.once("b", got.append)
    assert emitter.remove_all_listeners() is None
    emitter.emit("a", 1)
    emitter.emit("b", 2)
    assert got == []
    assert emitter.event_names() == []
    assert emitter.listener_count("a") == emitter.listener_count("b") == 0
    emitter.remove_all_listeners()  # already empty: silent


# -- compatibility: _events -------------------------------------------------------


def test_events_attribute_readable_as_mapping_event_to_callbacks(emitter: Any) -> None:
    def a1() -> None: ...

    def a2() -> None: ...

    def b1() -> None: ...

    emitter.on("a", a1)
    emitter.once("a", a2)
    emitter.on("b", b1)
    events = emitter._events
    assert isinstance(events, typing.Mapping)
    assert set(events) == {"a", "b"}
    assert "a" in events and "unknown" not in events
    assert list(events["a"]) == [a1, a2]
    assert a1 in events["a"] and a2 in events["a"]
    assert len(events["a"]) == 2
    assert list(events["b"]) == [b1]
    assert dict(events.items()).keys() == {"a", "b"}
    emitter.emit("a")
    assert list(emitter._events["a"]) == [a1]
    emitter.off("a", a1)
    assert not emitter._events.get("a")  # absent or empty once nothing is left
