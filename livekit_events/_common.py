"""Cold-path helpers shared by the compiled core and its pure-Python twin.

Everything here runs at registration time or when a handler fails, never on
the hot path of ``emit``: reading a callback's signature, validating it, the
arity error, and the failure log record.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import logging
import threading
from typing import Any, Callable, Dict, Optional, Tuple, cast

logger = logging.getLogger("livekit.events")

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

ASYNC_CALLBACK_MESSAGE = (
    "Cannot register an async callback with `.on()`. Use `asyncio.create_task` "
    "within your synchronous callback instead."
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
    except Exception:
        # Some builtins have no readable signature (TypeError, ValueError), and
        # a broken __signature__ or __wrapped__ can raise anything: such a
        # callback is accepted and gets every argument, as livekit accepts it.
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


def registration_decorator(emitter: Any, method: str, event: Any) -> Callable[[Any], Any]:
    """What ``on(event)`` and ``once(event)`` return: a decorator that calls
    ``emitter.<method>(event, function)`` (so a subclass's override sees it)
    and returns the function unchanged."""
    hash(event)  # an unhashable event is a TypeError now, not when decorating

    def decorator(function: Any) -> Any:
        getattr(emitter, method)(event, function)
        return function

    return decorator


# -- copy and pickle ------------------------------------------------------------------
#
# An emitter's registrations live in its core, out of sight of copy and pickle;
# whatever else the instance holds (its __dict__ and slots, or what a subclass's
# __getstate__ returns) is copied and pickled by Python's usual rules.  Both
# cores define __copy__, __deepcopy__ and __reduce_ex__ with these helpers.


def instance_state(obj: Any) -> Any:
    """The instance's own state, as ``copy``/``pickle`` would take it: what
    its class's ``__getstate__`` returns, else its ``__dict__`` and slots (the
    pure core's registry slot left out)."""
    cls: Any = obj.__class__
    getstate = getattr(cls, "__getstate__", None)
    if getstate is not None and getattr(getstate, "__objclass__", None) is not object:
        return obj.__getstate__()  # the subclass's own
    state: Dict[str, Any] = dict(getattr(obj, "__dict__", None) or {})
    slots: Dict[str, Any] = {}
    for klass in cls.__mro__:
        names: Any = klass.__dict__.get("__slots__", ())
        for name in [names] if isinstance(names, str) else list(names):
            if name.startswith("__") and name.endswith("__"):
                continue  # __dict__, __weakref__, the pure core's registry
            if name.startswith("__"):
                name = f"_{klass.__name__.lstrip('_')}{name}"  # a private name, mangled
            try:
                slots[name] = getattr(obj, name)
            except AttributeError:
                pass  # never set
    return (state, slots) if slots else (state or None)


def restore_instance_state(obj: Any, state: Any) -> None:
    """Put back what ``instance_state`` took (``__setstate__`` if defined)."""
    if getattr(obj.__class__, "__setstate__", None) is not None:
        obj.__setstate__(state)
        return
    if isinstance(state, tuple):
        state, slots = cast("Tuple[Any, Dict[str, Any]]", state)
        for name, value in (slots or {}).items():
            setattr(obj, name, value)
    if state:
        obj.__dict__.update(state)


def new_instance(cls: Any) -> Any:
    """``cls.__new__(cls)``: how a copied or unpickled emitter is made."""
    return cls.__new__(cls)


def reduce_emitter(emitter: Any, registrations: Any, restore: Any) -> Any:
    """``__reduce_ex__`` for an emitter: made by ``new_instance(cls)``, then
    ``restore(obj, (state, registrations))`` (the 6-tuple form's state setter,
    so that a subclass's own ``__setstate__`` gets its own state only)."""
    state = (instance_state(emitter), registrations)
    return (new_instance, (emitter.__class__,), state, None, None, restore)


def copy_emitter(emitter: Any, memo: Optional[Dict[int, Any]], copy_registrations: Any) -> Any:
    """``copy.copy`` (``memo`` None) or ``copy.deepcopy`` of an emitter: a new
    instance with a copy of the instance's state and of the registrations, in
    a registry of its own.  ``copy_registrations(new, memo)`` does the latter."""
    new = new_instance(emitter.__class__)
    state = instance_state(emitter)
    if memo is not None:
        memo[id(emitter)] = new
        state = copy.deepcopy(state, memo)
    elif isinstance(state, dict):
        state = copy.copy(cast("Dict[str, Any]", state))
    restore_instance_state(new, state)
    copy_registrations(new, memo)
    return new


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
