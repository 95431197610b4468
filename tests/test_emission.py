"""SPEC §3, Emission: ``emit(event, *args)``.

Every test takes the ``impl``/``EventEmitter``/``emitter`` fixture, so it runs
against the compiled core and the pure-Python twin.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sys
import traceback
from typing import Any, Callable, Dict, List, Tuple

import pytest
from support import named

LOGGER_NAME = "livekit.events"


def _failure_records(caplog: pytest.LogCaptureFixture) -> List[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER_NAME]


def _emit_expecting_no_interrupt(emitter: Any, event: Any, *args: Any) -> None:
    """Emit where no BaseException may escape: one that does (a broken core)
    fails the test instead of stopping the whole pytest session."""
    try:
        emitter.emit(event, *args)
    except (KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError) as exc:
        pytest.fail(f"unexpected {exc!r} escaped emit")


# -- unknown event -------------------------------------------------------------------


def test_unknown_event_returns_at_once(emitter: Any) -> None:
    assert emitter.emit("unknown") is None
    assert emitter.emit("unknown", 1, 2, 3) is None
    assert emitter.event_names() == []


def test_event_with_no_handlers_left_returns_at_once(emitter: Any) -> None:
    got: List[Any] = []
    emitter.on("e", got.append)
    emitter.off("e", got.append)
    assert emitter.emit("e", 1) is None
    emitter.once("f", got.append)
    emitter.emit("f", 1)
    assert emitter.emit("f", 2) is None
    assert got == [1]


def test_emit_with_unhashable_event_is_type_error(emitter: Any) -> None:
    with pytest.raises(TypeError):
        emitter.emit([], 1)


# -- snapshot --------------------------------------------------------------------------


def test_handler_registered_during_emit_not_called_by_that_emit(emitter: Any) -> None:
    calls: List[str] = []
    late = named(calls, "late")
    late_once = named(calls, "late_once")

    def adder() -> None:
        calls.append("adder")
        emitter.on("e", late)
        emitter.once("e", late_once)

    emitter.on("e", adder)
    emitter.emit("e")
    assert calls == ["adder"]
    calls.clear()
    emitter.emit("e")
    assert calls == ["adder", "late", "late_once"]


def test_handler_registered_during_nested_emit_not_called_by_outer_emit(emitter: Any) -> None:
    calls: List[str] = []
    late = named(calls, "late")
    depth = [0]

    def nester() -> None:
        calls.append(f"nester{depth[0]}")
        if depth[0] == 0:
            depth[0] += 1
            emitter.on("e", late)
            emitter.emit("e")

    emitter.on("e", nester)
    emitter.on("e", named(calls, "tail"))
    emitter.emit("e")
    # The nested emit sees `late` (registered before it started), the outer one doesn't.
    assert calls == ["nester0", "nester1", "tail", "late", "tail"]


def test_self_reregistration_during_emit_does_not_call_twice(emitter: Any) -> None:
    calls: List[str] = []

    def handler() -> None:
        calls.append("handler")
        emitter.off("e", handler)
        emitter.on("e", handler)

    emitter.on("e", handler)
    emitter.on("e", named(calls, "other"))
    emitter.emit("e")
    assert calls == ["handler", "other"]
    calls.clear()
    emitter.emit("e")
    assert calls == ["other", "handler"]


# -- removal is immediate (DOM-style) -------------------------------------------------


def test_handler_removed_by_off_during_emit_before_its_turn_not_called(emitter: Any) -> None:
    calls: List[str] = []
    victim = named(calls, "victim")

    def remover() -> None:
        calls.append("remover")
        emitter.off("e", victim)

    emitter.on("e", remover)
    emitter.on("e", named(calls, "middle"))
    emitter.on("e", victim)
    emitter.emit("e")
    assert calls == ["remover", "middle"]


def test_once_handler_removed_by_off_during_emit_not_called(emitter: Any) -> None:
    calls: List[str] = []
    victim = named(calls, "victim")

    def remover() -> None:
        calls.append("remover")
        emitter.off("e", victim)

    emitter.on("e", remover)
    emitter.once("e", victim)
    emitter.emit("e")
    assert calls == ["remover"]
    assert emitter.listeners("e") == [remover]


def test_handler_removed_after_its_turn_has_run(emitter: Any) -> None:
    calls: List[str] = []
    early = named(calls, "early")

    def remover() -> None:
        calls.append("remover")
        emitter.off("e", early)

    emitter.on("e", early)
    emitter.on("e", remover)
    emitter.on("e", named(calls, "tail"))
    emitter.emit("e")
    assert calls == ["early", "remover", "tail"]


def test_handler_removing_itself_during_emit(emitter: Any) -> None:
    calls: List[str] = []

    def self_remover() -> None:
        calls.append("self_remover")
        emitter.off("e", self_remover)

    emitter.on("e", self_remover)
    emitter.on("e", named(calls, "tail"))
    emitter.emit("e")
    emitter.emit("e")
    assert calls == ["self_remover", "tail", "tail"]


@pytest.mark.parametrize("scope", ["event", "all"])
def test_handlers_removed_by_remove_all_listeners_during_emit_not_called(emitter: Any, scope: str) -> None:
    calls: List[str] = []

    def clearer() -> None:
        calls.append("clearer")
        emitter.remove_all_listeners("e" if scope == "event" else None)

    emitter.on("e", clearer)
    emitter.on("e", named(calls, "on_after"))
    emitter.once("e", named(calls, "once_after"))
    emitter.emit("e")
    assert calls == ["clearer"]
    assert emitter.listener_count("e") == 0
    emitter.emit("e")
    assert calls == ["clearer"]


def test_remove_all_listeners_of_other_event_during_emit_keeps_this_one(emitter: Any) -> None:
    calls: List[str] = []

    def clearer() -> None:
        calls.append("clearer")
        emitter.remove_all_listeners("other")

    emitter.on("e", clearer)
    emitter.on("e", named(calls, "tail"))
    emitter.on("other", named(calls, "other"))
    emitter.emit("e")
    assert calls == ["clearer", "tail"]


def test_off_during_emit_of_a_different_event(emitter: Any) -> None:
    calls: List[str] = []
    victim = named(calls, "victim")

    def on_a() -> None:
        calls.append("a")
        emitter.off("b", victim)

    def on_b() -> None:
        calls.append("b")
        emitter.emit("a")

    emitter.on("a", on_a)
    emitter.on("b", on_b)
    emitter.on("b", victim)
    emitter.emit("b")
    assert calls == ["b", "a"]


# -- once: at most once, ever ------------------------------------------------------------


def test_once_fires_at_most_once_under_nested_emit_before_its_own_turn(emitter: Any) -> None:
    calls: List[str] = []
    depth = [0]

    def nester() -> None:
        calls.append(f"nester{depth[0]}")
        if depth[0] < 2:
            depth[0] += 1
            emitter.emit("e")

    emitter.on("e", nester)
    emitter.once("e", named(calls, "once"))
    emitter.emit("e")
    # The innermost emit reaches the once registration first; the two outer
    # emits, walking their snapshots, skip it.
    assert calls == ["nester0", "nester1", "nester2", "once"]
    assert emitter.listeners("e") == [nester]


def test_once_fires_at_most_once_when_it_emits_the_same_event(emitter: Any) -> None:
    calls: List[str] = []

    def once_handler() -> None:
        calls.append("once")
        emitter.emit("e")

    emitter.once("e", once_handler)
    emitter.on("e", named(calls, "on"))
    emitter.emit("e")
    assert calls == ["once", "on", "on"]


def test_once_fires_at_most_once_when_another_once_handler_emits(emitter: Any) -> None:
    calls: List[str] = []

    def first() -> None:
        calls.append("first")
        emitter.emit("e")

    emitter.once("e", first)
    emitter.once("e", named(calls, "second"))
    emitter.emit("e")
    assert calls == ["first", "second"]
    assert emitter.listener_count("e") == 0


def test_once_removed_before_its_callable_is_called(emitter: Any) -> None:
    seen: List[Any] = []

    def once_handler() -> None:
        seen.append((emitter.listener_count("e"), emitter.listeners("e"), emitter.event_names()))

    emitter.once("e", once_handler)
    emitter.emit("e")
    assert seen == [(0, [], [])]


@pytest.mark.thread_unsafe  # caplog is shared between threads
def test_once_handler_that_raises_is_still_removed(emitter: Any, caplog: pytest.LogCaptureFixture) -> None:
    calls: List[str] = []

    def failing_once() -> None:
        calls.append("failing_once")
        raise RuntimeError("boom")

    emitter.once("e", failing_once)
    with caplog.at_level(logging.ERROR, logger=LOGGER_NAME):
        emitter.emit("e")
        emitter.emit("e")
    assert calls == ["failing_once"]
    assert emitter.listener_count("e") == 0
    assert len(_failure_records(caplog)) == 1


def test_once_handler_that_raises_base_exception_is_still_removed(emitter: Any) -> None:
    calls: List[str] = []

    def interrupting_once() -> None:
        calls.append("interrupting_once")
        raise KeyboardInterrupt

    emitter.once("e", interrupting_once)
    with pytest.raises(KeyboardInterrupt):
        emitter.emit("e")
    _emit_expecting_no_interrupt(emitter, "e")
    assert calls == ["interrupting_once"]
    assert emitter.listener_count("e") == 0


def test_once_handler_fired_by_nested_emit_is_skipped_by_outer_emit(emitter: Any) -> None:
    # "A once handler firing elsewhere": fired by a nested emit started by an
    # earlier handler, before the outer emit reached it.
    calls: List[str] = []
    depth = [0]

    def trigger() -> None:
        calls.append("trigger")
        if not depth[0]:
            depth[0] += 1
            emitter.emit("e", "nested")

    def once_handler(where: str) -> None:
        calls.append(f"once:{where}")

    emitter.on("e", trigger)
    emitter.once("e", once_handler)
    emitter.once("e", once_handler)  # a second, independent registration
    emitter.emit("e", "outer")
    assert calls == ["trigger", "trigger", "once:nested", "once:nested"]
    assert emitter.listeners("e") == [trigger]


# -- argument trimming -----------------------------------------------------------------


class _Sink:
    """Records what each handler received."""

    def __init__(self) -> None:
        self.calls: List[Tuple[Any, ...]] = []

    def add(self, *args: Any) -> None:
        self.calls.append(args)


def _case_function(sink: _Sink) -> Any:
    def handler(a: Any, b: Any) -> None:
        sink.add(a, b)

    return handler, 2


def _case_no_parameters(sink: _Sink) -> Any:
    def handler() -> None:
        sink.add()

    return handler, 0


def _case_lambda(sink: _Sink) -> Any:
    return (lambda a: sink.add(a)), 1


def _case_positional_only(sink: _Sink) -> Any:
    def handler(a: Any, /, b: Any) -> None:
        sink.add(a, b)

    return handler, 2


def _case_bound_method(sink: _Sink) -> Any:
    class Owner:
        def handler(self, a: Any) -> None:
            sink.add(a)

    return Owner().handler, 1


def _case_static_method(sink: _Sink) -> Any:
    class Owner:
        @staticmethod
        def handler(a: Any, b: Any, c: Any) -> None:
            sink.add(a, b, c)

    return Owner().handler, 3


def _case_class_method(sink: _Sink) -> Any:
    class Owner:
        @classmethod
        def handler(cls, a: Any) -> None:
            sink.add(a)

    return Owner.handler, 1


def _case_partial(sink: _Sink) -> Any:
    def handler(bound: Any, a: Any, b: Any) -> None:
        sink.add(a, b)

    return functools.partial(handler, "bound"), 2


def _case_partial_keyword(sink: _Sink) -> Any:
    def handler(a: Any, b: Any) -> None:
        sink.add(a)

    return functools.partial(handler, b="bound"), 1


def _case_partial_of_bound_method(sink: _Sink) -> Any:
    class Owner:
        def handler(self, bound: Any, a: Any) -> None:
            sink.add(a)

    return functools.partial(Owner().handler, "bound"), 1


def _case_callable_object(sink: _Sink) -> Any:
    class Handler:
        def __call__(self, a: Any, b: Any) -> None:
            sink.add(a, b)

    return Handler(), 2


def _case_class(sink: _Sink) -> Any:
    class Handler:
        def __init__(self, a: Any) -> None:
            sink.add(a)

    return Handler, 1


def _case_wraps_wrapper(sink: _Sink) -> Any:
    def wrapped(a: Any) -> None:
        sink.add(a)

    @functools.wraps(wrapped)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        wrapped(*args, **kwargs)

    return wrapper, 1


def _case_builtin_bound_method(sink: _Sink) -> Any:
    return sink.calls.append, 1  # list.append bound as lst.append: (object, /)


def _case_varargs(sink: _Sink) -> Any:
    def handler(*args: Any) -> None:
        sink.add(*args)

    return handler, None


def _case_positional_then_varargs(sink: _Sink) -> Any:
    def handler(a: Any, *rest: Any) -> None:
        sink.add(a, *rest)

    return handler, None


def _case_varkw_only(sink: _Sink) -> Any:
    def handler(a: Any, **kwargs: Any) -> None:
        sink.add(a)

    return handler, 1


_TRIMMING_CASES = {name[len("_case_"):]: f for name, f in dict(globals()).items() if name.startswith("_case_")}


@pytest.mark.parametrize("given", [4, 8, 9, 12], ids=lambda n: f"{n}args")  # around STACK_ARGS
@pytest.mark.parametrize("kind", sorted(_TRIMMING_CASES))
def test_argument_trimming_gives_first_k_positional_arguments(
    emitter: Any, register: str, kind: str, given: int
) -> None:
    sink = _Sink()
    handler, accepted = _TRIMMING_CASES[kind](sink)
    getattr(emitter, register)("e", handler)
    args = tuple(object() for _ in range(given))
    emitter.emit("e", *args)
    emitter.emit("e", *args)
    expected = args if accepted is None else args[:accepted]
    if kind == "builtin_bound_method":
        expected = expected[:1]  # list.append: the first argument only
        assert [(a,) for a in sink.calls] == [expected] * (2 if register == "on" else 1)
    else:
        assert sink.calls == [expected] * (2 if register == "on" else 1)
        assert all(a is b for call in sink.calls for a, b in zip(call, expected))


def test_parameters_with_defaults_count(emitter: Any) -> None:
    got: List[Any] = []

    def handler(a: Any, b: Any = "default-b", c: Any = "default-c") -> None:
        got.append((a, b, c))

    emitter.on("e", handler)
    emitter.emit("e", 1)
    emitter.emit("e", 1, 2)
    emitter.emit("e", 1, 2, 3, 4)
    assert got == [(1, "default-b", "default-c"), (1, 2, "default-c"), (1, 2, 3)]


def test_only_defaults_handler_called_with_no_arguments(emitter: Any) -> None:
    got: List[Any] = []

    def handler(a: Any = "default") -> None:
        got.append(a)

    emitter.on("e", handler)
    emitter.emit("e")
    emitter.emit("e", 1, 2)
    assert got == ["default", 1]


def test_varargs_handler_gets_all_arguments(emitter: Any) -> None:
    got: List[Any] = []

    def handler(a: Any, b: Any = None, *rest: Any) -> None:
        got.append((a, b, rest))

    emitter.on("e", handler)
    emitter.emit("e", 1)
    emitter.emit("e", *range(20))
    assert got == [(1, None, ()), (0, 1, tuple(range(2, 20)))]


def test_livekit_args_example(emitter: Any) -> None:
    calls: List[Any] = []

    @emitter.on("whatever")
    def on_whatever(first: Any, second: Any, third: Any) -> None:
        calls.append((first, second, third))

    emitter.emit("whatever", 1, 2, 3)
    emitter.emit("whatever", 1, 2, 3, 4, 5)
    assert calls == [(1, 2, 3), (1, 2, 3)]
    with pytest.raises(TypeError):
        emitter.emit("whatever", 1, 2)


class _UnreadableSignature:
    """A callable whose signature cannot be read (``__signature__`` is junk)."""

    __signature__ = "not a Signature"

    def __init__(self) -> None:
        self.calls: List[Tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> None:
        self.calls.append(args)

    def __hash__(self) -> int:
        return id(self)


@pytest.mark.thread_unsafe  # caplog is shared between threads
def test_callable_with_unreadable_signature_gets_all_arguments(emitter: Any, caplog: pytest.LogCaptureFixture) -> None:
    handler = _UnreadableSignature()
    with pytest.raises((TypeError, ValueError)):
        inspect.signature(handler)
    with caplog.at_level(logging.ERROR, logger=LOGGER_NAME):
        emitter.on("e", handler)
        emitter.emit("e")
        emitter.emit("e", 1, 2, 3)
    assert handler.calls == [(), (1, 2, 3)]
    assert _failure_records(caplog) == []


class _EmptyIterator:
    def __init__(self) -> None:
        self.next_calls = 0

    def __iter__(self) -> "_EmptyIterator":
        return self

    def __next__(self) -> Any:
        self.next_calls += 1
        raise StopIteration


def _builtin_without_signature() -> Any:
    """A builtin without a readable signature on this Python, with a way to
    check that it got both of two emitted arguments."""
    for builtin in (next, iter):
        try:
            inspect.signature(builtin)
        except (TypeError, ValueError):
            return builtin
    return None


@pytest.mark.thread_unsafe  # caplog is shared between threads
def test_builtin_without_readable_signature_gets_all_arguments(emitter: Any, caplog: pytest.LogCaptureFixture) -> None:
    builtin = _builtin_without_signature()
    if builtin is None:
        pytest.skip("next and iter both have readable signatures on this Python")
    with caplog.at_level(logging.ERROR, logger=LOGGER_NAME):
        emitter.on("e", builtin)
        if builtin is next:
            iterator = _EmptyIterator()
            # next(iterator, default) returns the default; next(iterator)
            # alone would raise StopIteration (logged).
            emitter.emit("e", iterator, "default")
            assert iterator.next_calls == 1
        else:
            # iter(callable, sentinel) is fine; iter(callable) alone raises
            # TypeError (logged).
            emitter.emit("e", lambda: None, "sentinel")
        assert _failure_records(caplog) == []
        # It really was called with one argument when one was emitted.
        emitter.emit("e", 42)
        records = _failure_records(caplog)
        assert len(records) == 1 and isinstance(records[0].exc_info[1], TypeError)


class _CountingSignature:
    """A callable that counts how often its signature is read."""

    @property
    def __signature__(self) -> inspect.Signature:
        self.reads += 1
        return inspect.Signature([inspect.Parameter("a", inspect.Parameter.POSITIONAL_ONLY)])

    def __init__(self) -> None:
        self.reads = 0
        self.calls: List[Tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> None:
        self.calls.append(args)

    def __hash__(self) -> int:
        return id(self)


def test_signature_read_once_at_registration_never_per_emit(emitter: Any) -> None:
    handler = _CountingSignature()
    emitter.on("e", handler)
    emitter.once("f", handler)
    reads_after_registration = handler.reads
    assert reads_after_registration >= 1
    for _ in range(5):
        emitter.emit("e", 1, 2)
        emitter.emit("f", 1, 2)
    assert handler.reads == reads_after_registration
    assert handler.calls == [(1,)] * 6  # trimmed to the one parameter it declared


# -- too few arguments: TypeError naming event and handler -----------------------------


def test_too_few_arguments_raises_type_error_naming_event_and_handler(emitter: Any) -> None:
    calls: List[str] = []
    emitter.on("the-event", named(calls, "before"))

    def needs_two(a: Any, b: Any) -> None:
        calls.append("needs_two")

    emitter.on("the-event", needs_two)
    emitter.on("the-event", named(calls, "after"))
    with pytest.raises(TypeError) as info:
        emitter.emit("the-event", 1)
    message = str(info.value)
    assert repr("the-event") in message
    assert "needs_two" in message
    assert calls == ["before"]  # earlier handlers ran, the rest did not
    emitter.emit("the-event", 1, 2)  # the emitter still works
    assert calls == ["before", "before", "needs_two", "after"]


def test_too_few_arguments_for_bound_method_and_partial(emitter: Any) -> None:
    class Owner:
        def handler(self, a: Any, b: Any) -> None:
            pass

    def three(x: Any, a: Any, b: Any) -> None:
        pass

    for event, handler in (("m", Owner().handler), ("p", functools.partial(three, 0))):
        emitter.on(event, handler)
        with pytest.raises(TypeError, match=repr(event)):
            emitter.emit(event, 1)
        emitter.emit(event, 1, 2)


def test_too_few_arguments_for_once_handler_consumes_it(emitter: Any) -> None:
    # Interpretation: the once registration is claimed (removed) before its
    # call, and the arity check is part of calling it, so a once handler
    # that was emitted too few arguments is gone afterwards.
    got: List[Any] = []

    def needs_two(a: Any, b: Any) -> None:
        got.append((a, b))

    emitter.once("e", needs_two)
    with pytest.raises(TypeError, match="needs_two"):
        emitter.emit("e", 1)
    assert emitter.listener_count("e") == 0
    emitter.emit("e", 1, 2)
    assert got == []


@pytest.mark.thread_unsafe  # caplog is shared between threads
def test_too_few_arguments_is_not_logged(emitter: Any, caplog: pytest.LogCaptureFixture) -> None:
    emitter.on("e", lambda a: None)
    with caplog.at_level(logging.DEBUG, logger=LOGGER_NAME):
        with pytest.raises(TypeError):
            emitter.emit("e")
    assert _failure_records(caplog) == []


# -- exception isolation and the log record ---------------------------------------------


class _Boom(Exception):
    pass


def _failing_handler(exc: BaseException) -> Callable[..., None]:
    def failing_handler(*args: Any) -> None:
        raise exc

    return failing_handler


@pytest.mark.parametrize(
    "exc_type", [_Boom, ValueError, RuntimeError, TypeError, StopIteration, AttributeError]
)
@pytest.mark.thread_unsafe  # caplog is shared between threads
def test_exception_isolated_and_logged_with_traceback(
    emitter: Any, caplog: pytest.LogCaptureFixture, exc_type: type
) -> None:
    calls: List[str] = []
    raised = exc_type("boom")
    emitter.on("e", named(calls, "before"))
    emitter.on("e", _failing_handler(raised))
    emitter.on("e", named(calls, "after"))
    with caplog.at_level(logging.ERROR, logger=LOGGER_NAME):
        assert emitter.emit("e", 1) is None
    assert calls == ["before", "after"]
    (record,) = _failure_records(caplog)
    assert record.levelno == logging.ERROR
    assert record.msg == "failed to emit event %s"
    assert record.args == ("e",)
    assert record.getMessage() == "failed to emit event e"
    assert record.exc_info is not None
    exc_type_, exc_value, tb = record.exc_info
    assert exc_type_ is exc_type and exc_value is raised
    assert tb is not None and exc_value.__traceback__ is not None
    assert traceback.extract_tb(tb)[-1].name == "failing_handler"
    assert "failing_handler" in caplog.text  # the formatted traceback is in the output


@pytest.mark.thread_unsafe  # caplog is shared between threads
def test_typeerror_raised_inside_handler_body_is_isolated(emitter: Any, caplog: pytest.LogCaptureFixture) -> None:
    calls: List[str] = []

    def calls_something_badly(a: Any) -> None:
        calls.append("bad")
        len(a, a)  # TypeError from inside the body, not from emit's arity check

    emitter.on("e", calls_something_badly)
    emitter.on("e", named(calls, "after"))
    with caplog.at_level(logging.ERROR, logger=LOGGER_NAME):
        emitter.emit("e", 1)
    assert calls == ["bad", "after"]
    (record,) = _failure_records(caplog)
    assert isinstance(record.exc_info[1], TypeError)


@pytest.mark.thread_unsafe  # caplog is shared between threads
def test_log_record_names_non_string_event(emitter: Any, caplog: pytest.LogCaptureFixture) -> None:
    event = ("room", 7)
    emitter.on(event, _failing_handler(_Boom()))
    with caplog.at_level(logging.ERROR, logger=LOGGER_NAME):
        emitter.emit(event)
    (record,) = _failure_records(caplog)
    assert record.args == (event,)
    assert record.getMessage() == f"failed to emit event {event}"


@pytest.mark.thread_unsafe  # caplog is shared between threads
def test_every_failing_handler_is_logged_and_all_run(emitter: Any, caplog: pytest.LogCaptureFixture) -> None:
    calls: List[str] = []
    for i in range(3):
        emitter.on("e", named(calls, f"ok{i}"))
        emitter.on("e", _failing_handler(_Boom(i)))
    with caplog.at_level(logging.ERROR, logger=LOGGER_NAME):
        emitter.emit("e")
    assert calls == ["ok0", "ok1", "ok2"]
    assert [r.exc_info[1].args for r in _failure_records(caplog)] == [(0,), (1,), (2,)]


@pytest.mark.thread_unsafe  # adds a handler to a process-wide logger
def test_failure_reaches_handlers_on_livekit_logger(emitter: Any) -> None:
    # The logger is a child of livekit's own "livekit" logger.
    records: List[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    parent = logging.getLogger("livekit")
    assert logging.getLogger(LOGGER_NAME).parent is parent
    collect = Collect(logging.ERROR)
    parent.addHandler(collect)
    try:
        emitter.on("e", _failing_handler(_Boom()))
        emitter.emit("e")
    finally:
        parent.removeHandler(collect)
    assert [r.name for r in records] == [LOGGER_NAME]


@pytest.mark.thread_unsafe  # caplog is shared between threads
def test_no_exception_pending_after_isolated_failure(emitter: Any, caplog: pytest.LogCaptureFixture) -> None:
    emitter.on("e", _failing_handler(_Boom()))
    with caplog.at_level(logging.ERROR, logger=LOGGER_NAME):
        emitter.emit("e")
    assert sys.exc_info() == (None, None, None)


@pytest.mark.thread_unsafe  # caplog is shared between threads
def test_handler_exception_does_not_leak_into_enclosing_except_block(emitter: Any, caplog: pytest.LogCaptureFixture) -> None:
    emitter.on("e", _failing_handler(_Boom("inner")))
    with caplog.at_level(logging.ERROR, logger=LOGGER_NAME):
        try:
            raise KeyError("outer")
        except KeyError as outer:
            emitter.emit("e")
            assert sys.exc_info()[1] is outer
    (record,) = _failure_records(caplog)
    assert record.exc_info[1].args == ("inner",)


# -- BaseExceptions propagate at once ------------------------------------------------------


@pytest.mark.parametrize(
    "exc_type",
    [KeyboardInterrupt, SystemExit, asyncio.CancelledError, GeneratorExit],
    ids=lambda t: t.__name__,
)
@pytest.mark.thread_unsafe  # caplog is shared between threads
def test_base_exception_propagates_at_once_emitter_stays_consistent(
    emitter: Any, caplog: pytest.LogCaptureFixture, exc_type: type
) -> None:
    calls: List[str] = []
    before = named(calls, "before")
    after = named(calls, "after")
    once_after = named(calls, "once_after")
    raised = exc_type()
    failing = _failing_handler(raised)
    emitter.on("e", before)
    emitter.on("e", failing)
    emitter.on("e", after)
    emitter.once("e", once_after)
    with caplog.at_level(logging.ERROR, logger=LOGGER_NAME):
        with pytest.raises(exc_type) as info:
            emitter.emit("e")
    assert info.value is raised
    assert calls == ["before"]  # the remaining handlers are not called
    assert _failure_records(caplog) == []  # propagated, not logged
    # Consistent afterwards: same registrations, next emit reaches them all.
    assert emitter.listeners("e") == [before, failing, after, once_after]
    emitter.off("e", failing)
    calls.clear()
    _emit_expecting_no_interrupt(emitter, "e")
    assert calls == ["before", "after", "once_after"]
    calls.clear()
    _emit_expecting_no_interrupt(emitter, "e")
    assert calls == ["before", "after"]


def test_base_exception_propagates_through_nested_emit(emitter: Any) -> None:
    calls: List[str] = []

    def outer() -> None:
        calls.append("outer")
        emitter.emit("inner")
        calls.append("unreachable")

    emitter.on("outer", outer)
    emitter.on("outer", named(calls, "outer_after"))
    emitter.on("inner", _failing_handler(KeyboardInterrupt()))
    emitter.on("inner", named(calls, "inner_after"))
    with pytest.raises(KeyboardInterrupt):
        emitter.emit("outer")
    assert calls == ["outer"]


# -- synchronous handlers, emit never awaits ------------------------------------------------


def test_emit_never_awaits_what_a_handler_returns(emitter: Any) -> None:
    awaited: List[bool] = []

    class Awaitable:
        def __await__(self) -> Any:
            awaited.append(True)
            yield

    returned: List[Any] = []

    def handler() -> Awaitable:
        value = Awaitable()
        returned.append(value)
        return value

    emitter.on("e", handler)
    assert emitter.emit("e") is None
    assert len(returned) == 1 and awaited == []


def test_emit_inside_running_event_loop_is_synchronous(emitter: Any) -> None:
    order: List[str] = []
    emitter.on("e", lambda: order.append("handler"))

    async def main() -> None:
        order.append("before")
        emitter.emit("e")
        order.append("after")

    asyncio.run(main())
    assert order == ["before", "handler", "after"]


# -- keyword arguments to emit are a TypeError ---------------------------------------------


def test_keyword_arguments_to_emit_are_type_error(emitter: Any) -> None:
    got: List[Any] = []

    def handler(*args: Any, **kwargs: Any) -> None:
        got.append((args, kwargs))

    emitter.on("e", handler)
    with pytest.raises(TypeError):
        emitter.emit("e", 1, value=2)
    with pytest.raises(TypeError):
        emitter.emit("unknown", value=2)
    assert got == []


def test_another_emitters_emit_as_handler_forwards_every_argument(EventEmitter: Any) -> None:
    source, target = EventEmitter[str](), EventEmitter[str]()
    got: List[Any] = []
    target.on("forwarded", lambda *args: got.append(args))
    source.on("a", functools.partial(target.emit, "forwarded"))  # (*args): gets all
    source.on("b", target.emit)  # (event, *args): gets all, event first
    source.emit("a", 1, 2)
    source.emit("b", "forwarded", 3)
    assert got == [(1, 2), (3,)]


# -- many handlers / arguments through every path -------------------------------------------


@pytest.mark.thread_unsafe  # caplog is shared between threads
def test_many_handlers_mixed_kinds_in_one_emit(emitter: Any, caplog: pytest.LogCaptureFixture) -> None:
    results: Dict[int, Any] = {}

    def make(i: int) -> Callable[..., None]:
        if i % 3 == 0:

            def handler(*args: Any) -> None:
                results[i] = args

        elif i % 3 == 1:

            def handler(a: Any) -> None:  # type: ignore[misc]
                results[i] = (a,)

        else:

            def handler() -> None:  # type: ignore[misc]
                results[i] = ()
                raise _Boom(i)

        return handler

    for i in range(30):
        (emitter.once if i % 2 else emitter.on)("e", make(i))
    with caplog.at_level(logging.ERROR, logger=LOGGER_NAME):
        emitter.emit("e", "x", "y")
    assert sorted(results) == list(range(30))
    assert all(results[i] == ("x", "y")[: (2, 1, 0)[i % 3]] for i in range(30))
    assert len(_failure_records(caplog)) == 10
    assert emitter.listener_count("e") == 15
