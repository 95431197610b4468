"""Cold-path helpers shared by the compiled core and its pure-Python twin.

Everything here runs at registration time or when a handler fails, never on
the hot path of ``emit``: reading a callback's signature, validating it, the
arity error, and the failure log record.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
from typing import Any, Callable, Tuple, cast

logger = logging.getLogger("livekit.events")

#: Serialises every change to the pure twin's registrations (``on``, ``once``,
#: ``off``, ``remove_all_listeners`` and a once registration firing).  Emit
#: never takes it: it reads an immutable tuple.  Re-entrant because a
#: callback's ``__eq__``/``__hash__`` or an event's ``__hash__`` may run Python
#: code that registers on another emitter.  The compiled core has the same
#: lock in C (``lke_registry_lock`` in _core_c.pyx).
registry_lock = threading.RLock()

# CPython 3.11's ast module keeps its recursion-depth counter in state shared
# by all threads, and inspect.signature parses builtins' text signatures with
# it: two threads reading signatures at once can get "SystemError: AST
# constructor recursion depth mismatch" (python/cpython#106905; seen here in
# the suite under pytest-run-parallel).  Signatures are read only when a
# handler is registered, so serialising the reads costs nothing on emit.
# Re-entrant: a callable's __signature__ may itself register a handler.
_signature_lock = threading.RLock()


def read_signature(callback: Any) -> inspect.Signature:
    """``inspect.signature(callback)``, one thread at a time."""
    with _signature_lock:
        return inspect.signature(callback)

#: livekit's message, word for word, then where this package's async API is.
ASYNC_CALLBACK_MESSAGE = (
    "Cannot register an async callback with `.on()`. Use `asyncio.create_task` "
    "within your synchronous callback instead."
    " Or let livekit_events.aio.TaskHandlers run it: it owns the tasks (ordered,"
    " bounded, cancelled or drained on exit, failures logged)."
)

#: Returned as ``accepted`` when a handler takes every emitted argument
#: (``*args``, or a signature that cannot be read).
ALL_ARGUMENTS = -1

# asyncio's legacy marker (set by ``@asyncio.coroutine`` before 3.11); livekit
# checks it too.  Private, so read defensively.
_ASYNCIO_COROUTINE_MARKER = getattr(asyncio.coroutines, "_is_coroutine", None)

_POSITIONAL = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
)


class OnceRequest:
    """What ``once`` hands to ``self.on``: a one-shot registration request.

    ``once`` goes through ``on`` so that subclasses overriding ``on`` see
    every registration; the core's ``_on`` recognises this exact type and
    registers the wrapped callback as a once registration.  Calling it calls
    the callback, and ``__wrapped__`` lets ``inspect.signature`` see the
    callback's signature.
    """

    __slots__ = ("__wrapped__", "accepted", "required")

    def __init__(self, callback: Callable[..., Any], accepted: int, required: int) -> None:
        self.__wrapped__ = callback
        self.accepted = accepted
        self.required = required

    def __call__(self, *args: Any) -> Any:
        return self.__wrapped__(*args)

    def __repr__(self) -> str:
        return f"<once {self.__wrapped__!r}>"


def _is_async_callable(callback: Any) -> bool:
    """True for coroutine or async-generator functions, also when wrapped in
    ``functools.partial``, bound as methods, or reached through ``__call__``."""
    seen = 0
    while seen < 16:  # partial(partial(obj.method)) and similar chains
        seen += 1
        if inspect.iscoroutinefunction(callback) or inspect.isasyncgenfunction(callback):
            return True
        if (
            _ASYNCIO_COROUTINE_MARKER is not None
            and getattr(callback, "_is_coroutine", None) is _ASYNCIO_COROUTINE_MARKER
        ):
            return True
        if isinstance(callback, functools.partial):
            callback = callback.func
        elif inspect.ismethod(callback):
            callback = callback.__func__
        elif inspect.isroutine(callback) or isinstance(callback, type):
            return False
        else:
            call = getattr(cast("type[object]", type(callback)), "__call__", None)
            if not (inspect.isfunction(call) or inspect.ismethod(call)):
                return False  # a C-level __call__ (builtins, method-wrappers)
            callback = call
    return False


def describe_callback(callback: Any) -> Tuple[int, int]:
    """Validate ``callback`` for registration and read its arity once.

    The reference (slow) path: each core's ``describe_callback`` answers for
    plain functions and their bound methods from ``__code__`` directly and
    calls this for everything else, or whenever the two could differ
    (tests/test_arity_fast_path.py checks that they never do).

    Returns ``(accepted, required)``: how many leading positional arguments
    the handler is given (``ALL_ARGUMENTS`` for ``*args`` or an unreadable
    signature) and how many it needs.  Raises ``TypeError`` for a
    non-callable, unhashable callback or one with a required keyword-only
    parameter, and ``ValueError`` for an async one.
    """
    if not callable(callback):
        raise TypeError(f"callback must be callable, not {type(callback).__name__!r}")
    if _is_async_callable(callback):
        raise ValueError(ASYNC_CALLBACK_MESSAGE)
    hash(callback)  # registrations compare as dict keys do: unhashable is a TypeError
    try:
        signature = read_signature(callback)
    except (TypeError, ValueError):
        # Some builtins have no readable signature: give them every argument.
        return ALL_ARGUMENTS, 0
    accepted = required = 0
    takes_varargs = False
    for parameter in signature.parameters.values():
        if parameter.kind in _POSITIONAL:
            accepted += 1
            if parameter.default is parameter.empty:
                required += 1
        elif parameter.kind is parameter.VAR_POSITIONAL:
            takes_varargs = True
        elif parameter.kind is parameter.KEYWORD_ONLY and parameter.default is parameter.empty:
            raise TypeError(
                f"callback {_safe_repr(callback)} has a required keyword-only parameter "
                f"{parameter.name!r}, which emit can never pass"
            )
    return (ALL_ARGUMENTS if takes_varargs else accepted), required


def read_arity(callback: Any) -> Tuple[int, int]:
    """``describe_callback``'s signature reading, without the async rejection.

    For callables that are not registered on an emitter themselves:
    ``livekit_events.aio.TaskHandlers`` reads its async handlers' arity with
    this, once.  Same ``(accepted, required)`` result and the same
    ``TypeError``s (non-callable, unhashable, required keyword-only
    parameter) as ``describe_callback``.
    """
    if not callable(callback):
        raise TypeError(f"callback must be callable, not {type(callback).__name__!r}")
    hash(callback)
    try:
        signature = read_signature(callback)
    except (TypeError, ValueError):
        return ALL_ARGUMENTS, 0
    accepted = required = 0
    takes_varargs = False
    for parameter in signature.parameters.values():
        if parameter.kind in _POSITIONAL:
            accepted += 1
            if parameter.default is parameter.empty:
                required += 1
        elif parameter.kind is parameter.VAR_POSITIONAL:
            takes_varargs = True
        elif parameter.kind is parameter.KEYWORD_ONLY and parameter.default is parameter.empty:
            raise TypeError(
                f"callback {_safe_repr(callback)} has a required keyword-only parameter "
                f"{parameter.name!r}, which emit can never pass"
            )
    return (ALL_ARGUMENTS if takes_varargs else accepted), required


def check_event(event: Any) -> None:
    """Raise ``TypeError`` if ``event`` cannot name an event (is unhashable)."""
    hash(event)


def arity_error(event: Any, callback: Callable[..., Any], required: int, given: int) -> TypeError:
    """The error ``emit`` raises when a handler needs more arguments than emitted."""
    return TypeError(
        f"emit({_safe_repr(event)}): handler {_safe_repr(callback)} requires {required} positional "
        f"argument{'s' if required != 1 else ''}, but {given} {'were' if given != 1 else 'was'} emitted"
    )


def log_handler_failure(event: Any, exc: BaseException) -> None:
    """Log an exception a handler raised, with its traceback (livekit's record)."""
    try:
        logger.error("failed to emit event %s", event, exc_info=exc)
    except BaseException as failure:
        # A logging handler raised: that propagates out of emit (as in
        # livekit), chained to the handler's exception in both cores (the
        # compiled one calls this outside any `except` block).
        if failure is not exc and failure.__context__ is None:
            failure.__context__ = exc
        raise


def _safe_repr(obj: Any) -> str:
    """``repr(obj)``, or a placeholder if its ``__repr__`` raises (error
    messages must not turn into a different error)."""
    try:
        return repr(obj)
    except Exception:
        return f"<{type(obj).__qualname__} object at {id(obj):#x} (repr failed)>"
