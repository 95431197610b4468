"""Bad input at the edges, against both implementations.

Event names of every hashable kind (and unhashable ones), handlers that take
huge ``*args`` (crossing the compiled core's stack-buffer size), unbounded
recursion through emit, exceptions whose ``__str__`` raises, a logging handler
that raises, callbacks and events whose ``__repr__``/``__eq__``/``__hash__``
raise, and handlers that drop the emitter's last reference while it emits.
After each, the emitter must still be consistent and usable.
"""

from __future__ import annotations

import enum
import functools
import gc
import inspect
import logging
import sys
import weakref
from typing import Any

import pytest
from support import log_records_of_this_thread

LOGGER = "livekit.events"


def check_consistent(emitter: Any) -> None:
    """The registry agrees with itself."""
    names = emitter.event_names()
    for event in names:
        assert emitter.listener_count(event) == len(emitter.listeners(event)) > 0
    events = emitter._events
    assert len(events) == len(names)
    for event, callbacks in events.items():
        assert callbacks == emitter.listeners(event)


# --------------------------------------------------------------------------
# Event names


class Colour(enum.Enum):
    RED = 1
    GREEN = "green"


class Number(enum.IntEnum):
    ONE = 1


class Key:
    """A hashable user object compared by value."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Key", self.name))


NAN = float("nan")

HASHABLE_EVENTS = [
    "connected",
    "",
    "ünïcode ✓",
    0,
    -1,
    2**100,
    1.5,
    NAN,  # the same object: found by identity although nan != nan
    Colour.RED,
    Colour.GREEN,
    ("track", 1),
    (("nested",), (1, (2,))),
    (),
    frozenset({"a", "b"}),
    b"bytes",
    object(),
    int,
    Key("k"),
    None,
]


@pytest.mark.parametrize("event", HASHABLE_EVENTS, ids=repr)
def test_every_hashable_kind_of_event(emitter: Any, event: Any) -> None:
    calls: list = []

    def handler(*args: Any) -> None:
        calls.append(args)

    assert emitter.on(event, handler) is handler
    emitter.once(event, handler)
    assert emitter.listeners(event) == [handler, handler]
    assert emitter.listener_count(event) == 2
    assert len(emitter.event_names()) == 1 and emitter.event_names()[0] is event
    emitter.emit(event, 1, 2)
    assert calls == [(1, 2), (1, 2)]
    assert emitter.listeners(event) == [handler]
    emitter.emit("other-event", 3)
    assert len(calls) == 2
    check_consistent(emitter)
    emitter.off(event, handler)
    assert emitter.listeners(event) == [] and emitter.event_names() == []
    emitter.on(event, handler)
    emitter.remove_all_listeners(event)  # for None: every event, which is the same here
    assert emitter.event_names() == []
    emitter.emit(event, 4)
    assert len(calls) == 2


def test_equal_events_are_one_event(emitter: Any) -> None:
    """Events are dict keys: 1, 1.0, True and IntEnum.ONE are one event, and
    an equal-by-value key finds the handlers of another instance."""
    calls: list = []
    emitter.on(1, lambda: calls.append("int"))
    emitter.emit(True)
    emitter.emit(1.0)
    emitter.emit(Number.ONE)
    assert calls == ["int"] * 3
    emitter.on(Key("k"), lambda: calls.append("key"))
    emitter.emit(Key("k"))
    assert calls[-1] == "key"
    assert emitter.listener_count(Key("k")) == 1
    # A different nan object is a different event.
    emitter.on(NAN, lambda: calls.append("nan"))
    emitter.emit(float("nan"))
    assert calls[-1] == "key"
    check_consistent(emitter)


def test_none_event_and_remove_all(emitter: Any) -> None:
    """None works as an event name, but remove_all_listeners(None) means
    every event (as its default argument says)."""
    emitter.on(None, print)
    emitter.on("a", print)
    emitter.remove_all_listeners(None)
    assert emitter.event_names() == []


@pytest.mark.parametrize("event", [[], {}, {1}, ["a"], bytearray(b"x")], ids=repr)
def test_unhashable_events_are_a_type_error(emitter: Any, event: Any) -> None:
    emitter.on("a", print)
    for call in (
        lambda: emitter.on(event, print),
        lambda: emitter.once(event, print),
        lambda: emitter.on(event),
        lambda: emitter.emit(event),
        lambda: emitter.listeners(event),
    ):
        with pytest.raises(TypeError):
            call()
    assert emitter.event_names() == ["a"] and emitter.listeners("a") == [print]
    check_consistent(emitter)


class HashRaises:
    def __hash__(self) -> int:
        raise RuntimeError("no hash")


class EqRaises:
    def __hash__(self) -> int:
        return 42

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")


def test_event_whose_hash_raises(emitter: Any) -> None:
    with pytest.raises(RuntimeError, match="no hash"):
        emitter.on(HashRaises(), print)
    with pytest.raises(RuntimeError, match="no hash"):
        emitter.emit(HashRaises())
    assert emitter.event_names() == []


def test_event_whose_eq_raises(emitter: Any) -> None:
    first, second = EqRaises(), EqRaises()
    calls: list = []
    emitter.on(first, lambda: calls.append(1))
    emitter.emit(first)  # found by identity: __eq__ not called
    assert calls == [1]
    with pytest.raises(RuntimeError, match="no eq"):
        emitter.emit(second)  # same hash, so the dict compares: propagates
    with pytest.raises(RuntimeError, match="no eq"):
        emitter.on(second, print)
    assert emitter.listeners(first) == emitter.listeners(first)
    assert len(emitter.event_names()) == 1
    emitter.emit(first)
    assert calls == [1, 1]


# --------------------------------------------------------------------------
# Many arguments


def test_huge_varargs_consumer(emitter: Any) -> None:
    got: list = []
    emitter.on("big", lambda *args: got.append(args))
    emitter.on("big", lambda a, b=None: got.append((a, b)))
    args = tuple(range(100_000))
    emitter.emit("big", *args)
    assert got[0] == args and got[1] == (0, 1)


class Sink:
    def __init__(self) -> None:
        self.got: list = []

    def method(self, a, b, c, d, e, f, g, h, i):  # nine: more than the stack buffer
        self.got.append((a, b, c, d, e, f, g, h, i))

    def varargs(self, *args):
        self.got.append(args)


@pytest.mark.parametrize("count", range(0, 20))
def test_argument_counts_across_the_stack_buffer(emitter: Any, count: int) -> None:
    """0-19 arguments (the compiled core copies up to 8 onto the stack and
    uses the tuple beyond) to functions, bound methods and partials."""
    args = tuple(object() for _ in range(count))
    sink = Sink()
    got: list = []

    def eight(a, b, c, d, e, f, g, h):
        got.append(("eight", (a, b, c, d, e, f, g, h)))

    def nine_defaults(a=0, b=1, c=2, d=3, e=4, f=5, g=6, h=7, i=8):
        got.append(("nine", (a, b, c, d, e, f, g, h, i)))

    def star(*a):
        got.append(("star", a))

    def partial_target(x, *rest):
        got.append(("partial", (x,) + rest))

    emitter.on("e", nine_defaults)
    emitter.on("e", star)
    emitter.on("e", functools.partial(partial_target, "x"))
    emitter.on("e", sink.varargs)
    emitter.emit("e", *args)
    defaults = (0, 1, 2, 3, 4, 5, 6, 7, 8)
    assert got == [
        ("nine", args[:9] + defaults[len(args[:9]) :]),
        ("star", args),
        ("partial", ("x",) + args),
    ]
    assert sink.got == [args]
    # Required parameters: at their turn, too few arguments is a TypeError.
    emitter.on("r", eight)
    emitter.on("r", sink.method)
    if count < 8:
        with pytest.raises(TypeError, match="requires 8"):
            emitter.emit("r", *args)
    elif count == 8:
        with pytest.raises(TypeError, match="requires 9"):
            emitter.emit("r", *args)
        assert got[-1] == ("eight", args)  # the handler before it ran
    else:
        emitter.emit("r", *args)
        assert got[-1] == ("eight", args[:8]) and sink.got[-1] == args[:9]
    check_consistent(emitter)


# --------------------------------------------------------------------------
# Recursion


def test_unbounded_recursion_is_isolated_and_harmless(emitter: Any) -> None:
    """A handler that emits its own event forever hits the recursion limit.

    RecursionError is an Exception, so (SPEC 3, exception isolation) the
    emit where it is raised logs it and returns, and the outer emits unwind
    normally: the top-level emit returns, with the RecursionError logged.
    Nothing is corrupted: the emitter, the recursion depth and a once
    registration all behave afterwards."""
    depth = [0]
    fired: list = []

    def recurse() -> None:
        depth[0] += 1
        emitter.emit("loop")

    emitter.on("loop", recurse)
    emitter.once("loop", lambda: fired.append("once"))
    with log_records_of_this_thread() as records:
        emitter.emit("loop")
    assert depth[0] > 50
    assert records and all(isinstance(r.exc_info[1], RecursionError) for r in records)
    assert fired == ["once"]  # fired exactly once across all the nesting
    assert emitter.listeners("loop") == [recurse]
    check_consistent(emitter)
    # The interpreter's recursion depth is back: deep-ish recursion still works.
    assert functools.reduce(lambda n, _: n + 1, range(100), 0) == 100

    def countdown(n: int) -> int:
        return 0 if n == 0 else 1 + countdown(n - 1)

    assert countdown(sys.getrecursionlimit() // 2) == sys.getrecursionlimit() // 2
    # And the emitter is usable.
    emitter.off("loop", recurse)
    emitter.on("loop", lambda: fired.append("again"))
    emitter.emit("loop")
    assert fired == ["once", "again"]


def test_recursion_error_raised_at_top_level_propagates_when_not_an_exception(emitter: Any) -> None:
    """Only Exceptions are isolated: a handler turning the recursion into a
    BaseException makes the whole emit chain unwind, leaving it consistent."""

    class Stop(BaseException):
        pass

    def recurse() -> None:
        try:
            emitter.emit("loop")
        except RecursionError:  # never seen: isolated one level down
            raise AssertionError("RecursionError escaped an emit")

    def stop_when_deep() -> None:
        if len(sys._getframe().f_back and _stack_depth()) > 100:
            raise Stop

    def _stack_depth() -> list:
        frames = []
        frame = sys._getframe()
        while frame is not None:
            frames.append(frame)
            frame = frame.f_back
        return frames

    emitter.on("loop", stop_when_deep)
    emitter.on("loop", recurse)
    with pytest.raises(Stop):
        emitter.emit("loop")
    assert emitter.listeners("loop") == [stop_when_deep, recurse]
    check_consistent(emitter)


# --------------------------------------------------------------------------
# Exceptions and logging that misbehave


class StrRaises(Exception):
    def __str__(self) -> str:
        raise ValueError("__str__ failed")


class ReprRaises(Exception):
    def __repr__(self) -> str:
        raise ValueError("__repr__ failed")

    __str__ = __repr__


def test_exception_whose_str_raises(emitter: Any) -> None:
    calls: list = []

    def bad() -> None:
        raise StrRaises("x")

    def bad_repr() -> None:
        raise ReprRaises("y")

    emitter.on("e", bad)
    emitter.on("e", bad_repr)
    emitter.on("e", lambda: calls.append("after"))
    with log_records_of_this_thread() as records:
        emitter.emit("e")
    assert calls == ["after"]
    assert [type(r.exc_info[1]) for r in records] == [StrRaises, ReprRaises]
    for record in records:  # formatting the record (with its traceback) works
        text = logging.Formatter().format(record)
        assert "failed to emit event e" in text


def test_event_whose_str_and_repr_raise(emitter: Any) -> None:
    """The failure log message formats the event lazily; a broken __str__
    is logging's problem (handleError), not emit's."""

    class Ugly:
        def __repr__(self) -> str:
            raise ValueError("repr")

        __str__ = __repr__

    event = Ugly()
    calls: list = []
    emitter.on(event, lambda: 1 / 0)
    emitter.on(event, lambda: calls.append("after"))
    with log_records_of_this_thread() as records:
        emitter.emit(event)
    assert calls == ["after"] and len(records) == 1
    assert records[0].args == (event,)


class BrokenLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        raise RuntimeError("the logging handler broke")


@pytest.mark.thread_unsafe(reason="adds a handler to the shared livekit.events logger")
def test_logging_handler_that_raises(emitter: Any) -> None:
    """A logging handler that raises (instead of calling handleError, as the
    standard ones do) propagates out of emit, as in livekit, chained to the
    handler's exception; the remaining handlers of that emit don't run; the
    emitter stays consistent and works once logging is fixed."""
    calls: list = []
    failure = ValueError("handler failed")

    def bad() -> None:
        raise failure

    emitter.on("e", bad)
    emitter.once("e", lambda: calls.append("once"))
    logger = logging.getLogger(LOGGER)
    broken = BrokenLogHandler()
    logger.addHandler(broken)
    try:
        with pytest.raises(RuntimeError, match="the logging handler broke") as info:
            emitter.emit("e")
    finally:
        logger.removeHandler(broken)
    assert info.value.__context__ is failure
    assert calls == []
    assert emitter.listener_count("e") == 2
    check_consistent(emitter)
    with log_records_of_this_thread() as records:
        emitter.emit("e")
    assert calls == ["once"] and len(records) == 1


class UglyCallable:
    """A callable whose __repr__ raises, hashed by identity."""

    def __call__(self, a: Any) -> None:
        pass

    def __repr__(self) -> str:
        raise ValueError("repr of the callback failed")


def test_arity_error_with_a_callback_whose_repr_raises(emitter: Any) -> None:
    """The arity error is still a TypeError when the handler's (or the
    event's) repr raises."""
    emitter.on("e", UglyCallable())
    with pytest.raises(TypeError, match="requires 1 positional argument"):
        emitter.emit("e")

    class UglyEvent:
        def __repr__(self) -> str:
            raise ValueError("repr of the event failed")

    event = UglyEvent()
    emitter.on(event, lambda a: None)
    with pytest.raises(TypeError, match="requires 1 positional argument"):
        emitter.emit(event)
    check_consistent(emitter)


def test_kw_only_rejection_with_a_callback_whose_repr_raises(emitter: Any) -> None:
    class UglyKwOnly:
        def __call__(self, *, required: Any) -> None:
            pass

        def __repr__(self) -> str:
            raise ValueError("repr failed")

    with pytest.raises(TypeError, match="keyword-only"):
        emitter.on("e", UglyKwOnly())
    assert emitter.event_names() == []


class CallbackEqRaises:
    def __call__(self) -> None:
        pass

    def __hash__(self) -> int:
        return 7

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CallbackEqRaises):  # (inspect compares with `type`)
            raise RuntimeError("callback __eq__ failed")
        return NotImplemented


def test_callback_whose_eq_raises(emitter: Any) -> None:
    """Dedupe and off compare callbacks: an __eq__ that raises propagates and
    changes nothing; the lock is released."""
    first = CallbackEqRaises()
    emitter.on("e", first)
    emitter.on("e", first)  # identity: __eq__ not needed
    with pytest.raises(RuntimeError):
        emitter.on("e", CallbackEqRaises())
    with pytest.raises(RuntimeError):
        emitter.off("e", CallbackEqRaises())
    assert emitter.listeners("e") == [first]
    emitter.once("e", CallbackEqRaises())  # once never compares
    assert emitter.listener_count("e") == 2
    with pytest.raises(RuntimeError):  # `first` matches itself, then == with the once one raises
        emitter.off("e", first)
    assert emitter.listener_count("e") == 2  # nothing removed
    check_consistent(emitter)


def test_callback_whose_hash_raises(emitter: Any) -> None:
    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self) -> None:
            pass

    with pytest.raises(TypeError):
        emitter.on("e", Unhashable())
    with pytest.raises(TypeError):
        emitter.once("e", Unhashable())
    assert emitter.event_names() == []


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_base_exceptions_leave_it_consistent(emitter: Any, exc_type: type) -> None:
    calls: list = []

    def stop() -> None:
        raise exc_type()

    emitter.once("e", lambda: calls.append("first"))
    emitter.once("e", stop)
    emitter.on("e", lambda: calls.append("never"))
    with pytest.raises(exc_type):
        emitter.emit("e")
    assert calls == ["first"]
    assert emitter.listener_count("e") == 1  # both onces consumed
    emitter.emit("e")
    assert calls == ["first", "never"]
    check_consistent(emitter)


# --------------------------------------------------------------------------
# The emitter's lifetime during an emit


def test_handler_drops_the_last_reference_while_emitting(EventEmitter: Any) -> None:
    holder = [EventEmitter()]
    calls: list = []

    def drop() -> None:
        holder.clear()
        gc.collect()
        calls.append("drop")

    def after() -> None:
        calls.append("after")

    holder[0].on("e", drop)
    holder[0].on("e", after)
    holder[0].once("e", after)
    ref = weakref.ref(holder[0])
    holder[0].emit("e", 1)
    assert calls == ["drop", "after", "after"]
    gc.collect()
    assert ref() is None


def test_handler_removes_everything_and_drops_the_emitter(EventEmitter: Any) -> None:
    class Box:
        pass

    box = Box()
    box.emitter = EventEmitter()
    calls: list = []

    def nuke() -> None:
        emitter = box.emitter
        del box.emitter
        emitter.remove_all_listeners()
        emitter.__init__()  # re-initialising clears too
        calls.append("nuke")

    box.emitter.on("e", nuke)
    box.emitter.on("e", lambda: calls.append("removed: never"))
    ref = weakref.ref(box.emitter)
    box.emitter.emit("e")
    assert calls == ["nuke"]
    gc.collect()
    assert ref() is None


def test_emitting_from_del_in_a_collected_cycle(EventEmitter: Any) -> None:
    """A subclass whose __del__ emits, kept alive only by a cycle through its
    own handler: the cyclic GC finalises it (emitting works) and frees it."""
    calls: list = []

    class Room(EventEmitter):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.on("closed", self.on_closed)  # a cycle: room -> handler -> room

        def on_closed(self) -> None:
            calls.append("closed")

        def __del__(self) -> None:
            self.emit("closed")

    room = Room()
    ref = weakref.ref(room)
    del room
    gc.collect()
    assert ref() is None
    assert calls == ["closed"]


def test_handler_cycles_are_collected(EventEmitter: Any) -> None:
    class Owner:
        def __init__(self) -> None:
            self.emitter = EventEmitter()
            self.emitter.on("e", self.handle)
            self.emitter.once("e", self.handle)

        def handle(self) -> None:
            pass

    owner = Owner()
    refs = (weakref.ref(owner), weakref.ref(owner.emitter))
    del owner
    gc.collect()
    assert [r() for r in refs] == [None, None]


# --------------------------------------------------------------------------
# Signatures that a reading of __code__ alone would get wrong


def _sig(*names: str) -> inspect.Signature:
    return inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    )


def test_trimming_follows_inspect_signature(emitter: Any) -> None:
    """Trimming is what inspect.signature says (SPEC 3), also where a
    function's __code__ says otherwise: __signature__, __wrapped__ (wraps),
    partials binding keywords, positional-only parameters, classmethods."""
    got: list = []

    def overridden(*args: Any) -> None:
        got.append(("overridden", args))

    overridden.__signature__ = _sig("a")  # type: ignore[attr-defined]

    def inner(a: Any, b: Any) -> None:
        raise AssertionError("never called")

    @functools.wraps(inner)
    def wrapper(*args: Any) -> None:
        got.append(("wrapper", args))

    def keywords(a: Any, b: Any = 0, c: Any = 0) -> None:
        got.append(("keywords", (a, b, c)))

    def positional_only(a: Any, /, b: Any = None) -> None:
        got.append(("positional_only", (a, b)))

    class Owner:
        @classmethod
        def cls_method(cls, a: Any) -> None:
            got.append(("cls_method", (a,)))

        @staticmethod
        def static(a: Any, b: Any) -> None:
            got.append(("static", (a, b)))

    for handler in (
        overridden,
        wrapper,
        functools.partial(keywords, b=5),  # b bound by keyword: (a, *, b=5, c=0)
        positional_only,
        Owner.cls_method,
        Owner.static,
    ):
        emitter.on("e", handler)
    emitter.emit("e", 1, 2, 3)
    assert got == [
        ("overridden", (1,)),
        ("wrapper", (1, 2)),
        ("keywords", (1, 5, 0)),
        ("positional_only", (1, 2)),
        ("cls_method", (1,)),
        ("static", (1, 2)),
    ]
    with pytest.raises(TypeError, match="requires 1 positional argument"):
        emitter.emit("e")  # `overridden` needs one, by its __signature__


def test_signature_read_once_at_registration(emitter: Any) -> None:
    """Changing a function after registering it doesn't change its trimming
    (the signature is read once, SPEC 3)."""
    got: list = []

    def handler(a: Any, b: Any = None) -> None:
        got.append((a, b))

    emitter.on("e", handler)
    handler.__defaults__ = None  # b now required, for a direct call
    handler.__signature__ = _sig("a")  # type: ignore[attr-defined]
    emitter.emit("e", 1, 2)
    assert got == [(1, 2)]
