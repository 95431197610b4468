"""SPEC §2, Registration: ``on`` and ``once``.

Every test takes the ``impl``/``EventEmitter``/``emitter`` fixture, so it runs
against the compiled core and the pure-Python twin.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import warnings
from typing import Any, Callable, Dict, List, Tuple

import pytest

#: livekit 1.2.1's message for an async callback, word for word.
LIVEKIT_ASYNC_MESSAGE = (
    "Cannot register an async callback with `.on()`. Use `asyncio.create_task` "
    "within your synchronous callback instead."
)


def _state(emitter: Any, event: Any) -> Tuple[Any, ...]:
    return (emitter.listener_count(event), emitter.listeners(event), emitter.event_names())


def _assert_nothing_registered(emitter: Any, event: Any) -> None:
    assert emitter.listener_count(event) == 0
    assert emitter.listeners(event) == []
    assert event not in emitter.event_names()
    assert not emitter._events.get(event)


# -- on / once return the callback; decorator forms ------------------------------


def test_registration_returns_callback_itself(emitter: Any, register: str) -> None:
    got: List[Any] = []
    callback = got.append
    assert getattr(emitter, register)("a", callback) is callback
    emitter.emit("a", 1)
    assert got == [1]


def test_decorator_form_registers_and_returns_function_unchanged(emitter: Any, register: str) -> None:
    got: List[Any] = []

    def handler(value: Any) -> None:
        got.append(value)

    decorator = getattr(emitter, register)("a")
    assert callable(decorator)
    assert emitter.listener_count("a") == 0  # nothing registered until applied
    assert decorator(handler) is handler
    assert emitter.listeners("a") == [handler]
    emitter.emit("a", 1)
    emitter.emit("a", 2)
    assert got == ([1, 2] if register == "on" else [1])


def test_decorator_syntax(emitter: Any, register: str) -> None:
    got: List[Any] = []

    @getattr(emitter, register)("a")
    def handler(value: Any) -> None:
        got.append(value)

    assert inspect.isfunction(handler) and handler.__name__ == "handler"
    emitter.emit("a", 1)
    assert got == [1]


# -- call order --------------------------------------------------------------------


def test_handlers_called_in_registration_order(emitter: Any) -> None:
    order: List[str] = []

    def make(name: str) -> Callable[[], None]:
        def handler() -> None:
            order.append(name)

        return handler

    handlers = {name: make(name) for name in "abcdef"}
    emitter.on("e", handlers["a"])
    emitter.once("e", handlers["b"])
    emitter.on("e", handlers["c"])
    emitter.on("other", handlers["f"])
    emitter.once("e", handlers["d"])
    emitter.on("e", handlers["e"])
    emitter.emit("e")
    assert order == ["a", "b", "c", "d", "e"]
    order.clear()
    emitter.emit("e")
    assert order == ["a", "c", "e"]


# -- dedupe of on --------------------------------------------------------------------


def test_on_same_callable_twice_changes_nothing_keeps_first_position(emitter: Any) -> None:
    order: List[str] = []

    def first() -> None:
        order.append("first")

    def second() -> None:
        order.append("second")

    emitter.on("e", first)
    emitter.on("e", second)
    assert emitter.on("e", first) is first
    assert emitter.listeners("e") == [first, second]
    emitter.emit("e")
    assert order == ["first", "second"]


def test_on_two_bound_methods_of_same_object_and_function_are_one_registration(emitter: Any) -> None:
    class Owner:
        def __init__(self) -> None:
            self.calls = 0

        def handler(self) -> None:
            self.calls += 1

    owner, other = Owner(), Owner()
    bound1, bound2 = owner.handler, owner.handler
    assert bound1 is not bound2 and bound1 == bound2
    emitter.on("e", bound1)
    emitter.on("e", bound2)
    emitter.on("e", other.handler)  # a different object: a different callable
    assert emitter.listener_count("e") == 2
    emitter.emit("e")
    assert (owner.calls, other.calls) == (1, 1)


def test_on_dedupe_uses_dict_key_equality(emitter: Any) -> None:
    class Key:
        def __init__(self, name: str, hash_: int) -> None:
            self.name, self.hash_ = name, hash_
            self.calls = 0

        def __call__(self) -> None:
            self.calls += 1

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Key) and other.name == self.name

        def __hash__(self) -> int:
            return self.hash_

    a, a_equal, a_other_hash = Key("a", 1), Key("a", 1), Key("a", 2)
    emitter.on("e", a)
    emitter.on("e", a_equal)  # equal and same hash: already registered
    emitter.on("e", a_other_hash)  # equal but another hash: not the same key
    assert emitter.listeners("e") == [a, a_other_hash]
    assert emitter.listeners("e")[0] is a  # the first one is kept
    emitter.emit("e")
    assert (a.calls, a_equal.calls, a_other_hash.calls) == (1, 0, 1)


def test_on_dedupe_is_per_event(emitter: Any) -> None:
    got: List[Any] = []
    emitter.on("a", got.append)
    emitter.on("b", got.append)
    emitter.emit("a", 1)
    emitter.emit("b", 2)
    assert got == [1, 2]


def test_on_after_off_registers_again_at_the_end(emitter: Any) -> None:
    order: List[str] = []

    def first() -> None:
        order.append("first")

    def second() -> None:
        order.append("second")

    emitter.on("e", first)
    emitter.on("e", second)
    emitter.off("e", first)
    emitter.on("e", first)
    emitter.emit("e")
    assert order == ["second", "first"]


# -- each once call adds one registration ------------------------------------------


def test_each_once_call_adds_one_registration(emitter: Any) -> None:
    got: List[Any] = []
    emitter.once("e", got.append)
    emitter.once("e", got.append)
    assert emitter.listener_count("e") == 2
    emitter.emit("e", 1)
    assert got == [1, 1]
    emitter.emit("e", 2)
    assert got == [1, 1]
    assert emitter.listener_count("e") == 0


def test_once_adds_a_registration_even_when_already_registered_with_on(emitter: Any) -> None:
    got: List[Any] = []
    emitter.on("e", got.append)
    emitter.once("e", got.append)
    assert emitter.listener_count("e") == 2
    emitter.emit("e", 1)
    emitter.emit("e", 2)
    assert got == [1, 1, 2]


def test_on_after_once_of_same_callable_adds_the_on_registration(emitter: Any) -> None:
    # Interpretation: dedupe compares with the ``on`` registrations only; a
    # pending once registration is not "registered with on".
    got: List[Any] = []
    emitter.once("e", got.append)
    emitter.on("e", got.append)
    emitter.on("e", got.append)  # this one is a duplicate
    assert emitter.listener_count("e") == 2
    emitter.emit("e", 1)
    emitter.emit("e", 2)
    assert got == [1, 1, 2]


# -- once goes through self.on -------------------------------------------------------


def test_once_goes_through_self_on_so_subclass_override_sees_it(EventEmitter: Any) -> None:
    seen: List[Tuple[Any, Any]] = []

    class Session(EventEmitter[str]):
        def on(self, event: Any, callback: Any = None) -> Any:
            seen.append((event, callback))
            return super().on(event, callback)

    session = Session()
    got: List[Any] = []

    def handler(value: Any) -> None:
        got.append(value)

    assert session.once("a", handler) is handler
    assert session.once("a")(handler) is handler  # decorator form too

    @session.once("b")
    def other() -> None:
        got.append("b")

    assert [event for event, _ in seen] == ["a", "a", "b"]
    # What the override sees stands for the callback (it unwraps to it).
    assert [inspect.unwrap(callback) for _, callback in seen] == [handler, handler, other]
    session.emit("a", 1)
    session.emit("a", 2)
    session.emit("b")
    session.emit("b")
    assert got == [1, 1, "b"]
    assert session.listener_count("a") == 0


def test_subclass_on_override_can_veto_once_registrations(EventEmitter: Any) -> None:
    class Vetoing(EventEmitter[str]):
        def on(self, event: Any, callback: Any = None) -> Any:
            if event == "forbidden":
                raise RuntimeError("no")
            return super().on(event, callback)

    e = Vetoing()
    with pytest.raises(RuntimeError):
        e.once("forbidden", print)
    _assert_nothing_registered(e, "forbidden")


# -- rejected with ValueError: async callbacks ---------------------------------------


async def _coroutine_function(*args: Any) -> None:
    pass


async def _async_generator_function(*args: Any) -> Any:
    yield None


class _AsyncMethods:
    async def method(self, value: Any) -> None:
        pass

    async def agen_method(self) -> Any:
        yield None


class _AsyncCallable:
    async def __call__(self, value: Any) -> None:
        pass


class _AsyncGenCallable:
    async def __call__(self) -> Any:
        yield None


def _async_callbacks() -> Dict[str, Callable[[], Any]]:
    cases: Dict[str, Callable[[], Any]] = {
        "coroutine_function": lambda: _coroutine_function,
        "async_generator_function": lambda: _async_generator_function,
        "partial_of_coroutine_function": lambda: functools.partial(_coroutine_function, 1),
        "partial_of_async_generator": lambda: functools.partial(_async_generator_function, 1),
        "partial_of_partial_of_async": lambda: functools.partial(
            functools.partial(_coroutine_function, 1), 2
        ),
        "bound_async_method": lambda: _AsyncMethods().method,
        "bound_async_generator_method": lambda: _AsyncMethods().agen_method,
        "partial_of_bound_async_method": lambda: functools.partial(_AsyncMethods().method, 1),
        "callable_object_async_call": lambda: _AsyncCallable(),
        "callable_object_async_gen_call": lambda: _AsyncGenCallable(),
        "partial_of_async_callable_object": lambda: functools.partial(_AsyncCallable(), 1),
    }
    return cases


@pytest.mark.parametrize("case", sorted(_async_callbacks()))
def test_async_callback_rejected_with_livekit_value_error(emitter: Any, register: str, case: str) -> None:
    callback = _async_callbacks()[case]()
    emitter.on("e", print)  # existing registrations are left alone
    with pytest.raises(ValueError) as info:
        getattr(emitter, register)("e", callback)
    assert str(info.value).startswith(LIVEKIT_ASYNC_MESSAGE)
    with pytest.raises(ValueError):
        getattr(emitter, register)("other")(callback)  # decorator form
    _assert_nothing_registered(emitter, "other")
    assert emitter.listeners("e") == [print]


@pytest.mark.skipif(
    not hasattr(inspect, "markcoroutinefunction"), reason="inspect.markcoroutinefunction is 3.12+"
)
def test_markcoroutinefunction_rejected(emitter: Any, register: str) -> None:
    def looks_sync(value: Any) -> Any:
        return _coroutine_function(value)

    marked = inspect.markcoroutinefunction(looks_sync)  # type: ignore[attr-defined]
    for callback in (marked, functools.partial(marked, 1)):
        with pytest.raises(ValueError) as info:
            getattr(emitter, register)("e", callback)
        assert str(info.value).startswith(LIVEKIT_ASYNC_MESSAGE)
        with pytest.raises(ValueError):
            getattr(emitter, register)("e")(callback)
    _assert_nothing_registered(emitter, "e")


def test_legacy_asyncio_coroutine_marker_rejected(emitter: Any, register: str) -> None:
    marker = getattr(asyncio.coroutines, "_is_coroutine", None)
    if marker is None:
        pytest.skip("asyncio.coroutines._is_coroutine is gone on this Python")

    def legacy() -> None:
        pass

    legacy._is_coroutine = marker  # type: ignore[attr-defined]
    with pytest.raises(ValueError) as info:
        getattr(emitter, register)("e", legacy)
    assert str(info.value).startswith(LIVEKIT_ASYNC_MESSAGE)
    _assert_nothing_registered(emitter, "e")


def test_message_matches_livekit(EventEmitter: Any, emitter: Any) -> None:
    rtc = pytest.importorskip("livekit.rtc")
    with pytest.raises(ValueError) as livekit_error:
        rtc.EventEmitter().on("e", _coroutine_function)
    with pytest.raises(ValueError) as ours:
        emitter.on("e", _coroutine_function)
    # livekit's text, word for word, then a pointer to livekit_events.aio.TaskHandlers.
    assert str(livekit_error.value) == LIVEKIT_ASYNC_MESSAGE
    assert str(ours.value).startswith(LIVEKIT_ASYNC_MESSAGE)
    assert "livekit_events.aio.TaskHandlers" in str(ours.value)


def test_async_check_does_not_warn(emitter: Any) -> None:
    # SPEC: inspect.iscoroutinefunction, not asyncio's (deprecated in 3.14).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emitter.on("e", print)
        emitter.once("e", print)
        with pytest.raises(ValueError):
            emitter.on("e", _coroutine_function)
        with pytest.raises(ValueError):
            emitter.once("e", _AsyncCallable())


def test_sync_callable_whose_result_is_awaitable_is_accepted(emitter: Any, register: str) -> None:
    # Only the callable's own kind decides; a sync function is sync.
    def sync_returning_none(value: Any) -> None:
        pass

    getattr(emitter, register)("e", sync_returning_none)
    assert emitter.listeners("e") == [sync_returning_none]


# -- rejected with TypeError ----------------------------------------------------------


@pytest.mark.parametrize("callback", [42, "handler", object(), [print]], ids=repr)
def test_non_callable_callback_rejected_with_type_error(emitter: Any, register: str, callback: Any) -> None:
    with pytest.raises(TypeError):
        getattr(emitter, register)("e", callback)
    with pytest.raises(TypeError):
        getattr(emitter, register)("e")(callback)
    _assert_nothing_registered(emitter, "e")


@pytest.mark.parametrize("event", [[], {}, {1}, ["a"]], ids=repr)
def test_unhashable_event_rejected_with_type_error(emitter: Any, register: str, event: Any) -> None:
    with pytest.raises(TypeError):
        getattr(emitter, register)(event, print)
    with pytest.raises(TypeError):
        getattr(emitter, register)(event)(print)
    assert emitter.event_names() == []
    assert emitter._events == {} or not any(emitter._events.values())


def test_required_keyword_only_parameter_rejected_with_type_error(emitter: Any, register: str) -> None:
    def needs_keyword(value: Any, *, flag: bool) -> None:
        pass

    class NeedsKeyword:
        def __init__(self, *, flag: bool) -> None:
            pass

    class CallNeedsKeyword:
        def __call__(self, *args: Any, flag: bool) -> None:
            pass

    for callback in (needs_keyword, NeedsKeyword, CallNeedsKeyword(), functools.partial(needs_keyword, 1)):
        with pytest.raises(TypeError):
            getattr(emitter, register)("e", callback)
        with pytest.raises(TypeError):
            getattr(emitter, register)("e")(callback)
    _assert_nothing_registered(emitter, "e")


def test_keyword_only_parameter_with_default_or_bound_is_accepted(emitter: Any, register: str) -> None:
    got: List[Any] = []

    def optional_keyword(value: Any, *, flag: bool = True) -> None:
        got.append((value, flag))

    def needs_keyword(value: Any, *, flag: bool) -> None:
        got.append((value, flag))

    getattr(emitter, register)("e", optional_keyword)
    getattr(emitter, register)("e", functools.partial(needs_keyword, flag=False))
    emitter.emit("e", 1)
    assert got == [(1, True), (1, False)]


def test_unhashable_callback_rejected_with_type_error(emitter: Any, register: str) -> None:
    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self) -> None:
            pass

    with pytest.raises(TypeError):
        getattr(emitter, register)("e", Unhashable())
    _assert_nothing_registered(emitter, "e")


def test_rejections_leave_existing_registrations_intact(emitter: Any) -> None:
    got: List[Any] = []
    emitter.on("e", got.append)
    emitter.once("e", got.append)
    before = _state(emitter, "e")
    for bad in (_coroutine_function, 3, _AsyncCallable()):
        for method in (emitter.on, emitter.once):
            with pytest.raises((TypeError, ValueError)):
                method("e", bad)
    assert _state(emitter, "e") == before
    emitter.emit("e", 1)
    assert got == [1, 1]


def test_registration_accepts_every_sync_callable_kind(emitter: Any) -> None:
    class Handler:
        def __call__(self) -> None:
            pass

        def method(self) -> None:
            pass

        @staticmethod
        def static() -> None:
            pass

        @classmethod
        def klass(cls) -> None:
            pass

    lst: List[Any] = []
    callbacks = [
        lambda: None,
        Handler(),
        Handler().method,
        Handler.static,
        Handler.klass,
        Handler,
        functools.partial(print, "x"),
        lst.append,
        print,
        next,
        len,
    ]
    for callback in callbacks:
        assert emitter.on("e", callback) is callback
        assert emitter.once("f", callback) is callback
    assert emitter.listeners("e") == callbacks
    assert emitter.listeners("f") == callbacks
