"""SPEC §2 and §5 as a subclass and an app see them: ``once`` through an
overridden ``on``/``off``, private names a subclass may use, copy and pickle.

Every test takes the ``impl``/``EventEmitter`` fixtures, so it runs against
the compiled core and the pure-Python twin.
"""

from __future__ import annotations

import copy
import copyreg
import inspect
import pickle
import threading
from typing import Any, Callable, Dict, List, Tuple

import pytest

# -- once looks like livekit's to a subclass that overrides on or off --------------


def _recording_class(EventEmitter: Any, log: List[Tuple[str, Any, Any]]) -> Any:
    class Session(EventEmitter[str]):  # type: ignore[misc]
        def on(self, event: Any, callback: Any = None) -> Any:
            log.append(("on", event, callback))
            return super().on(event, callback)

        def off(self, event: Any, callback: Any) -> None:
            log.append(("off", event, callback))
            super().off(event, callback)

    return Session


def test_once_hands_an_overriding_on_a_callable_wrapper_with_the_callbacks_signature(
    EventEmitter: Any,
) -> None:
    log: List[Tuple[str, Any, Any]] = []
    session = _recording_class(EventEmitter, log)()

    def handler(track: Any, publication: Any = None) -> None:
        pass

    assert session.once("t", handler) is handler
    ((_, event, wrapper),) = log
    assert event == "t" and callable(wrapper) and wrapper is not handler
    assert wrapper.__wrapped__ is handler
    assert inspect.signature(wrapper) == inspect.signature(handler)
    assert session.listeners("t") == [handler]  # as the user registered it


def test_once_wrapper_removes_itself_through_self_off_exactly_once(EventEmitter: Any) -> None:
    log: List[Tuple[str, Any, Any]] = []
    session = _recording_class(EventEmitter, log)()
    got: List[Any] = []
    session.once("t", got.append)
    wrapper = log[0][2]
    session.emit("t", 1)
    session.emit("t", 2)
    assert got == [1]
    assert log == [("on", "t", wrapper), ("off", "t", wrapper)]
    assert session.listener_count("t") == 0


def test_subscriber_counting_subclass_stays_balanced(EventEmitter: Any) -> None:
    class Counting(EventEmitter[str]):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.subscribers = 0

        def on(self, event: Any, callback: Any = None) -> Any:
            if callback is not None:
                self.subscribers += 1
            return super().on(event, callback)

        def off(self, event: Any, callback: Any) -> None:
            self.subscribers -= 1
            super().off(event, callback)

    source = Counting()
    source.once("frame", print)
    source.once("frame")(print)  # decorator form
    assert source.subscribers == 2
    source.emit("frame")
    assert source.subscribers == 0


def test_off_of_the_original_removes_a_pending_once_made_through_an_override(
    EventEmitter: Any,
) -> None:
    log: List[Tuple[str, Any, Any]] = []
    session = _recording_class(EventEmitter, log)()
    got: List[Any] = []
    session.once("t", got.append)
    session.off("t", got.append)
    session.emit("t", 1)
    assert got == [] and session.listener_count("t") == 0


def test_once_through_an_override_fires_at_most_once_under_nested_emits(EventEmitter: Any) -> None:
    session = _recording_class(EventEmitter, [])()
    got: List[Any] = []

    def nest(depth: int) -> None:
        if depth < 3:
            session.emit("t", depth + 1)

    session.on("t", nest)
    session.once("t", got.append)
    session.emit("t", 0)  # nest() runs first and emits again, three deep
    assert got == [3]  # the innermost emit claims it; no outer one fires it again


def test_once_through_an_override_fires_at_most_once_across_threads(EventEmitter: Any) -> None:
    session = _recording_class(EventEmitter, [])()
    fired: List[Any] = []
    start = threading.Barrier(4)

    def emit_many() -> None:
        start.wait()
        for _ in range(200):
            session.emit("t", 1)

    for _ in range(30):
        session.once("t", fired.append)
    threads = [threading.Thread(target=emit_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fired) == 30
    assert session.listener_count("t") == 0


class _Forwarding:
    """A subclass whose on/off/emit go to another emitter (livekit's)."""

    @staticmethod
    def build(EventEmitter: Any, inner: Any) -> Any:
        class Forwarding(EventEmitter[str]):  # type: ignore[misc]
            def on(self, event: Any, callback: Any = None) -> Any:
                if callback is None:
                    return super().on(event)
                return inner.on(event, callback)

            def off(self, event: Any, callback: Any) -> None:
                inner.off(event, callback)

            def emit(self, event: Any, *args: Any) -> None:
                inner.emit(event, *args)

        return Forwarding()


def test_once_through_a_subclass_forwarding_to_livekits_emitter_fires_once(
    EventEmitter: Any,
) -> None:
    rtc = pytest.importorskip("livekit.rtc")
    inner = rtc.EventEmitter()
    forwarding = _Forwarding.build(EventEmitter, inner)
    got: List[Any] = []

    def handler(value: Any) -> None:
        got.append(value)

    forwarding.once("t", handler)
    forwarding.once("t")(handler)
    forwarding.emit("t", 1)
    forwarding.emit("t", 2)
    assert got == [1, 1]
    assert not inner._events.get("t")  # both wrappers removed themselves


def test_once_through_a_subclass_forwarding_to_another_emitter_fires_once(
    EventEmitter: Any,
) -> None:
    inner = EventEmitter[str]()
    forwarding = _Forwarding.build(EventEmitter, inner)
    got: List[Any] = []
    forwarding.once("t", got.append)
    forwarding.emit("t", 1)
    forwarding.emit("t", 2)
    assert got == [1] and inner.listener_count("t") == 0


def test_once_goes_through_an_on_patched_on_the_instance(emitter: Any) -> None:
    seen: List[Any] = []
    real_on = emitter.on

    def spy(event: Any, callback: Any = None) -> Any:
        seen.append(callback)
        return real_on(event, callback)

    emitter.on = spy
    got: List[Any] = []
    emitter.once("t", got.append)
    assert len(seen) == 1 and seen[0].__wrapped__ == got.append
    emitter.emit("t", 1)
    emitter.emit("t", 2)
    assert got == [1]


# -- no private names a subclass could collide with ---------------------------------

#: Every helper name the emitter classes ever had, and more a subclass might use.
FORMER_AND_LIKELY_NAMES = (
    "_add", "_on", "_once", "_off", "_emit", "_describe", "_handlers", "_claim_once",
    "_insert", "_remove", "_remove_callback", "_replace_entries", "_lock", "_unlock",
    "_registry", "_handler_failed", "_listeners", "_state", "_key", "_walk", "_find",
    "_registrations", "_callbacks", "_snapshot", "_version", "_core", "_wrapper",
)


def test_emitter_classes_have_no_private_names_but_events(EventEmitter: Any) -> None:
    for cls in EventEmitter.__mro__:
        private = {
            name for name in vars(cls)
            if name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
        }
        assert private <= {"_events", "_is_protocol", "_abc_impl"}, (cls, private)


def test_subclass_may_define_any_single_underscore_name_but_events(EventEmitter: Any) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the emitter called a subclass's private name")

    namespace: Dict[str, Any] = {name: broken for name in FORMER_AND_LIKELY_NAMES}

    def __init__(self: Any) -> None:
        EventEmitter.__init__(self)
        for name in FORMER_AND_LIKELY_NAMES:  # instance attributes too
            setattr(self, name, None)

    namespace["__init__"] = __init__
    Subclass = type("Subclass", (EventEmitter,), namespace)
    emitter = Subclass()
    got: List[Any] = []
    emitter.on("e", got.append)
    emitter.once("e", got.append)
    emitter.on("e", got.append)  # dedupe
    assert emitter.listener_count("e") == 2
    emitter.emit("e", 1)
    emitter.emit("e", 2)
    assert got == [1, 1, 2]
    emitter.off("e", got.append)
    assert emitter.listeners("e") == [] and emitter.event_names() == []
    copy.copy(emitter)


# -- copy, deepcopy and pickle -------------------------------------------------------


class Recorder:
    """A picklable subscriber (module level)."""

    def __init__(self) -> None:
        self.seen: List[Any] = []

    def on_event(self, value: Any) -> None:
        self.seen.append(value)


def module_handler(value: Any) -> None:
    MODULE_CALLS.append(value)


MODULE_CALLS: List[Any] = []


def test_copy_has_the_same_registrations_in_a_registry_of_its_own(EventEmitter: Any) -> None:
    original = EventEmitter[str]()
    got: List[Any] = []
    original.on("a", got.append)
    original.once("a", print)
    original.on("b", print)
    clone = copy.copy(original)
    assert clone.listeners("a") == [got.append, print]
    assert clone.event_names() == original.event_names() == ["a", "b"]
    clone.off("a", got.append)
    clone.on("c", print)
    assert original.listeners("a") == [got.append, print]
    assert original.event_names() == ["a", "b"]
    original.emit("a", 1)
    assert got == [1] and clone.listeners("a") == [print]  # clone's once still pending


def test_copy_of_a_subclass_keeps_its_attributes_and_once_wrappers_bind_to_the_copy(
    EventEmitter: Any,
) -> None:
    log: List[Tuple[str, Any, Any]] = []
    Session = _recording_class(EventEmitter, log)
    original = Session()
    original.name = "room"
    got: List[Any] = []
    original.once("t", got.append)
    clone = copy.copy(original)
    assert clone.name == "room" and type(clone) is Session
    del log[:]
    clone.emit("t", 1)
    assert got == [1]
    assert [(op, event) for op, event, _ in log] == [("off", "t")]
    assert original.listener_count("t") == 1  # the original's once is its own


def test_deepcopy_copies_callbacks_and_state(EventEmitter: Any) -> None:
    recorder = Recorder()

    class Room(EventEmitter[str]):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.recorder = recorder
            self.on("x", self.recorder.on_event)

    original = Room()
    clone = copy.deepcopy(original)
    assert clone.recorder is not recorder
    (handler,) = clone.listeners("x")
    assert handler.__self__ is clone.recorder  # the copied subscriber's method
    clone.emit("x", 1)
    assert clone.recorder.seen == [1] and recorder.seen == []


class PicklableRoom:
    """Defined per implementation below (pickle needs a module-level name)."""


def _picklable_room_class(EventEmitter: Any) -> Any:
    name = f"PicklableRoom_{id(EventEmitter)}"
    cls = globals().get(name)
    if cls is None:

        class Room(EventEmitter[str]):  # type: ignore[misc]
            def __init__(self, title: str) -> None:
                super().__init__()
                self.title = title

        Room.__name__ = Room.__qualname__ = name
        Room.__module__ = __name__
        # setdefault: with pytest-run-parallel, threads race here, and a class
        # that isn't the module's attribute can't be pickled.
        cls = globals().setdefault(name, Room)
    return cls


@pytest.mark.thread_unsafe  # module-level handlers and MODULE_CALLS (pickle needs them)
def test_pickle_round_trips_a_subclass_with_its_state_and_callbacks(EventEmitter: Any) -> None:
    Room = _picklable_room_class(EventEmitter)
    recorder = Recorder()
    room = Room("lobby")
    room.on("joined", recorder.on_event)
    room.on("joined", module_handler)
    room.once("left", module_handler)
    clone = pickle.loads(pickle.dumps(room))
    assert type(clone) is Room and clone.title == "lobby"
    assert clone.event_names() == ["joined", "left"]
    assert [getattr(h, "__name__", None) for h in clone.listeners("joined")] == [
        "on_event",
        "module_handler",
    ]
    del MODULE_CALLS[:]
    clone.emit("left", "bye")
    clone.emit("left", "again")
    assert MODULE_CALLS == ["bye"]  # the once registration came back as a once
    assert room.listener_count("left") == 1


def test_pickle_fails_with_the_callbacks_own_error(EventEmitter: Any) -> None:
    Room = _picklable_room_class(EventEmitter)
    room = Room("lobby")
    room.on("joined", lambda participant: None)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)) as info:
        pickle.dumps(room)
    assert "lambda" in str(info.value)


def test_subclass_getstate_and_setstate_are_honoured(EventEmitter: Any) -> None:
    class Stateful(EventEmitter[str]):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.secret = "s"
            self.kept = "k"

        def __getstate__(self) -> Dict[str, Any]:
            return {"kept": self.kept}

        def __setstate__(self, state: Dict[str, Any]) -> None:
            self.__dict__.update(state, restored=True)

    original = Stateful()
    original.on("x", print)
    clone = copy.copy(original)
    assert vars(clone) == {"kept": "k", "restored": True}
    assert clone.listeners("x") == [print]


# -- callables whose signature can't be read ---------------------------------------


class BrokenSignature:
    """A callable whose ``__signature__`` raises something inspect doesn't expect."""

    @property
    def __signature__(self) -> Any:
        raise RuntimeError("signature unavailable")

    def __init__(self) -> None:
        self.calls: List[Tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> None:
        self.calls.append(args)


class BrokenWrapped:
    """A callable whose ``__wrapped__`` chain raises."""

    @property
    def __wrapped__(self) -> Any:
        raise RuntimeError("no wrapped")

    def __init__(self) -> None:
        self.calls: List[Tuple[Any, ...]] = []

    def __call__(self, a: Any) -> None:
        self.calls.append((a,))


@pytest.mark.parametrize("kind", [BrokenSignature, BrokenWrapped])
@pytest.mark.parametrize("method", ["on", "once"])
def test_callback_whose_signature_cannot_be_read_is_accepted_and_gets_every_argument(
    emitter: Any, kind: Callable[[], Any], method: str
) -> None:
    callback = kind()
    getattr(emitter, method)("e", callback)
    emitter.emit("e", 1)
    assert callback.calls == [(1,)]
    if isinstance(callback, BrokenSignature):
        emitter.on("e", callback)
        emitter.emit("e", 1, 2, 3)
        assert callback.calls[-1] == (1, 2, 3)


# -- copy and pickle follow Python's protocol for a subclass --------------------------------
#
# Each scenario is a subclass with one of the protocol's hooks, built on the
# core under test and on a plain Python class (livekit's EventEmitter, or a
# stand-in when livekit isn't installed).  copy.copy, copy.deepcopy and
# pickle must call the same hooks with the same values, and give the same
# attributes, on all three.  Only the emitter's registrations are extra: they
# follow the copy when the core's own reduce made it.

CALLS: List[Any] = []  # what the hooks saw (module level: pickle needs the classes there)


def _reference_base() -> Any:
    try:
        from livekit.rtc import EventEmitter as base
    except ImportError:  # livekit's shape: a plain class with an `_events` dict

        class base:  # type: ignore[no-redef]
            def __init__(self) -> None:
                self._events: Dict[Any, Any] = {}

    return base


def rebuild(cls: Any, tag: Any) -> Any:
    """A reduce value's callable (module level)."""
    CALLS.append(("rebuild", tag))
    obj = cls.__new__(cls)
    obj.tag = tag
    return obj


def _setstate_without_attributes(base: Any) -> Any:
    class C(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:  # no attributes at all (livekit's _events neither)
            pass

        def __setstate__(self, state: Dict[str, Any]) -> None:
            CALLS.append(("setstate", state))
            self.__dict__.update(state)

    return C


def _setstate_with_attributes(base: Any) -> Any:
    class C(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            self.x = 1

        def __setstate__(self, state: Dict[str, Any]) -> None:
            CALLS.append(("setstate", dict(state)))
            self.__dict__.update(state)

    return C


def _slots_and_setstate(base: Any) -> Any:
    class C(base):  # type: ignore[misc,valid-type]
        __slots__ = ("a",)

        def __init__(self) -> None:
            self.a = 1

        def __setstate__(self, state: Any) -> None:
            CALLS.append(("setstate", state))
            for name, value in state[1].items():
                setattr(self, name, value)

    return C


def _getstate_returns_none(base: Any) -> Any:
    class C(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            self.x = 1

        def __getstate__(self) -> Any:
            CALLS.append(("getstate",))
            return None

        def __setstate__(self, state: Any) -> None:
            CALLS.append(("setstate", state))

    return C


def _getstate_returns_empty(base: Any) -> Any:
    class C(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            self.x = 1

        def __getstate__(self) -> Any:
            CALLS.append(("getstate",))
            return {}

        def __setstate__(self, state: Any) -> None:
            CALLS.append(("setstate", state))

    return C


def _getstate_calls_super(base: Any) -> Any:
    class C(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            self.x = 1

        def __getstate__(self) -> Any:
            state = super().__getstate__()  # object's (3.11+), or the core's
            CALLS.append(("getstate", state))
            return state

    return C


def _own_reduce(base: Any) -> Any:
    class C(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            self.x = 1

        def __reduce__(self) -> Any:
            CALLS.append(("reduce",))
            return (rebuild, (type(self), "reduce"))

    return C


def _own_reduce_ex(base: Any) -> Any:
    class C(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            self.x = 1

        def __reduce_ex__(self, protocol: Any) -> Any:
            CALLS.append(("reduce_ex", protocol))
            return (rebuild, (type(self), "reduce_ex"))

    return C


def _own_copy_hooks(base: Any) -> Any:
    class C(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            self.x = 1

        def __copy__(self) -> Any:
            return rebuild(type(self), "copy")

        def __deepcopy__(self, memo: Any) -> Any:
            return rebuild(type(self), "deepcopy")

    return C


def _new_with_arguments(base: Any) -> Any:
    class C(base):  # type: ignore[misc,valid-type]
        def __new__(cls, name: str) -> Any:
            CALLS.append(("new", name))
            return super().__new__(cls)

        def __init__(self, name: str) -> None:
            self.name = name

        def __getnewargs__(self) -> Tuple[str]:
            return (self.name,)

    return C


def _new_with_keywords(base: Any) -> Any:
    class C(base):  # type: ignore[misc,valid-type]
        def __new__(cls, *, name: str) -> Any:
            CALLS.append(("new", name))
            return super().__new__(cls)

        def __init__(self, *, name: str) -> None:
            self.name = name

        def __getnewargs_ex__(self) -> Any:
            return (), {"name": self.name}

    return C


def _make(cls: Any) -> Any:
    if cls.__name__.startswith("_new_with"):
        return cls(name="lobby")
    return cls()


PROTOCOL_OPERATIONS: Dict[str, Callable[[Any], Any]] = {
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "pickle": lambda obj: pickle.loads(pickle.dumps(obj)),
}

_X = {"x": 1}
_DEFAULT = pickle.DEFAULT_PROTOCOL
# scenario -> (what the hooks saw, attributes of the result) per operation; None:
# as for copy.  "registrations": whether the result has the original's.
PROTOCOL_SCENARIOS: Dict[Any, Dict[str, Any]] = {
    _setstate_without_attributes: {"copy": ([], {}), "registrations": True},
    _setstate_with_attributes: {"copy": ([("setstate", _X)], _X), "registrations": True},
    _slots_and_setstate: {
        "copy": ([("setstate", (None, {"a": 1}))], {"a": 1}),
        "registrations": True,
    },
    _getstate_returns_none: {"copy": ([("getstate",)], {}), "registrations": True},
    _getstate_returns_empty: {
        "copy": ([("getstate",), ("setstate", {})], {}),
        "registrations": True,
    },
    _getstate_calls_super: {"copy": ([("getstate", _X)], _X), "registrations": True},
    _own_reduce: {"copy": ([("reduce",), ("rebuild", "reduce")], {"tag": "reduce"})},
    _own_reduce_ex: {
        "copy": ([("reduce_ex", 4), ("rebuild", "reduce_ex")], {"tag": "reduce_ex"}),
        "pickle": ([("reduce_ex", _DEFAULT), ("rebuild", "reduce_ex")], {"tag": "reduce_ex"}),
    },
    _own_copy_hooks: {
        "copy": ([("rebuild", "copy")], {"tag": "copy"}),
        "deepcopy": ([("rebuild", "deepcopy")], {"tag": "deepcopy"}),
        "pickle": ([], _X),
        "registrations": "pickle",
    },
    _new_with_arguments: {"copy": ([("new", "lobby")], {"name": "lobby"}), "registrations": True},
    _new_with_keywords: {"copy": ([("new", "lobby")], {"name": "lobby"}), "registrations": True},
}


def _module_level(factory: Any, base: Any) -> Any:
    name = f"{factory.__name__}_{id(base)}"
    cls = globals().get(name)
    if cls is None:
        cls = factory(base)
        cls.__name__ = cls.__qualname__ = name
        cls.__module__ = __name__
        cls = globals().setdefault(name, cls)
    return cls


def _attributes(obj: Any) -> Dict[str, Any]:
    found = {k: v for k, v in vars(obj).items() if k != "_events"}
    if hasattr(obj, "a"):  # the slots scenario's
        found["a"] = obj.a
    return found


def _observe(cls: Any, operation: str, emitter: bool) -> Tuple[List[Any], Dict[str, Any], Any]:
    original = _make(cls)
    if emitter:
        original.on("e", module_handler)
        original.once("e", print)
    del CALLS[:]
    result = PROTOCOL_OPERATIONS[operation](original)
    assert type(result) is cls
    listeners = result.listeners("e") if emitter else None
    return list(CALLS), _attributes(result), listeners


@pytest.mark.thread_unsafe  # CALLS, and pickle needs the classes at module level
@pytest.mark.parametrize("operation", list(PROTOCOL_OPERATIONS))
@pytest.mark.parametrize("scenario", list(PROTOCOL_SCENARIOS), ids=lambda f: f.__name__.strip("_"))
def test_copy_and_pickle_follow_pythons_protocol_for_a_subclass(
    EventEmitter: Any, scenario: Any, operation: str
) -> None:
    expected = PROTOCOL_SCENARIOS[scenario]
    calls, attributes, listeners = _observe(_module_level(scenario, EventEmitter), operation, True)
    assert (calls, attributes) == expected.get(operation, expected["copy"])
    kept = expected.get("registrations", False)
    assert listeners == ([module_handler, print] if kept in (True, operation) else [])
    if scenario is _getstate_calls_super and not hasattr(object, "__getstate__"):
        return  # object.__getstate__ is 3.11+: a plain class can't call it before
    reference = _observe(_module_level(scenario, _reference_base()), operation, False)
    assert (calls, attributes) == reference[:2]


@pytest.mark.thread_unsafe  # copyreg's dispatch table is process-wide
@pytest.mark.parametrize("operation", list(PROTOCOL_OPERATIONS))
def test_copy_and_pickle_use_copyregs_dispatch_table(EventEmitter: Any, operation: str) -> None:
    cls = _module_level(_setstate_with_attributes, EventEmitter)

    def reducer(obj: Any) -> Any:
        CALLS.append(("reducer",))
        return (rebuild, (type(obj), "copyreg"))

    copyreg.pickle(cls, reducer)
    try:
        calls, attributes, listeners = _observe(cls, operation, True)
    finally:
        del copyreg.dispatch_table[cls]
    assert calls == [("reducer",), ("rebuild", "copyreg")]
    assert attributes == {"tag": "copyreg"} and listeners == []


def test_getstate_of_the_core_is_the_instance_state_only(EventEmitter: Any) -> None:
    class Slotted(EventEmitter[str]):  # type: ignore[misc]
        __slots__ = ("a",)

    emitter = Slotted()
    emitter.on("e", print)
    assert emitter.__getstate__() is None
    emitter.a = 1
    assert emitter.__getstate__() == (None, {"a": 1})
    emitter.x = 2
    assert emitter.__getstate__() == ({"x": 2}, {"a": 1})
