"""Cold-path helpers shared by the compiled core and its pure-Python twin.

Everything here runs at registration time or when a handler fails, never on
the hot path of ``emit``: reading a callback's signature, validating it, the
arity error, and the failure log record.
"""

from __future__ import annotations

import copy
import copyreg
import functools
import logging
import os
import sys
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple, cast

if TYPE_CHECKING:
    import inspect

# inspect (with ast, dis and tokenize, a third of what importing the package
# would cost) is imported where it is first needed: when the slow path reads
# a callback's signature or checks it for async (the fast paths don't import
# it: see parameter_empty).  logging is imported here, not at the first
# record: that import would run inside emit, holding the module's import lock
# while a finalizer it runs may wait for a lock whose holder is emitting.

logger = logging.getLogger("livekit.events")

def parameter_empty() -> Any:
    """``inspect.Parameter.empty`` if inspect is imported, else None.

    The cores' fast paths (which must take no lock) compare defaults with it
    and don't import inspect for it: an import holds the module's import lock
    while it runs, and a finalizer run by the import could wait for a lock
    held by a thread that registers, which would wait for the import.  While
    inspect isn't imported no object is its ``Parameter.empty`` (importing it
    makes a new one), so no default is; once it is, the cores keep the value.
    """
    parameter = getattr(sys.modules.get("inspect"), "Parameter", None)
    return getattr(parameter, "empty", None)


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
    import inspect

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


def _callable_layers(callback: Any) -> Iterator[Any]:
    """``callback``, then what it wraps: a ``functools.partial``'s function, a
    bound method's function, a callable object's Python-level ``__call__``
    (at most 16 layers: ``partial(partial(obj.method))`` and similar)."""
    import inspect

    for _ in range(16):
        yield callback
        if isinstance(callback, functools.partial):
            callback = callback.func
        elif inspect.ismethod(callback):
            callback = callback.__func__
        elif inspect.isroutine(callback) or isinstance(callback, type):
            return
        else:
            call = getattr(cast("type[object]", type(callback)), "__call__", None)
            if not (inspect.isfunction(call) or inspect.ismethod(call)):
                return  # a C-level __call__ (builtins, method-wrappers)
            callback = call


def _is_async_callable(callback: Any) -> bool:
    """True for coroutine or async-generator functions, also when wrapped in
    ``functools.partial``, bound as methods, or reached through ``__call__``."""
    import inspect

    for layer in _callable_layers(callback):
        if inspect.iscoroutinefunction(layer) or inspect.isasyncgenfunction(layer):
            return True
        marker = getattr(layer, "_is_coroutine", None)
        if marker is not None and marker is _asyncio_coroutine_marker():
            return True
    return False


def _asyncio_coroutine_marker() -> object:
    """asyncio's legacy marker (set by ``@asyncio.coroutine`` before 3.11),
    which livekit checks too; ``None`` if it is gone.  Read from an asyncio
    already imported: a callable can only carry the marker once asyncio is,
    and importing asyncio here would be most of the package's import time."""
    coroutines = sys.modules.get("asyncio.coroutines")
    return getattr(coroutines, "_is_coroutine", None)


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
    return read_arity(callback)


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
    hash(callback)  # registrations compare as dict keys do: unhashable is a TypeError
    try:
        signature = read_signature(callback)
    except Exception:
        # Some builtins have no readable signature (TypeError, ValueError), and
        # a broken __signature__ or __wrapped__ can raise anything: such a
        # callback is accepted and gets every argument, as livekit accepts it.
        return ALL_ARGUMENTS, 0
    import inspect  # (read_signature imported it)

    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    accepted = required = 0
    takes_varargs = False
    for parameter in signature.parameters.values():
        if parameter.kind in positional:
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


def registration_decorator(
    emitter: Any, method: str, event: Any, weak: bool = False
) -> Callable[[Any], Any]:
    """What ``on(event)`` and ``once(event)`` return: a decorator that calls
    ``emitter.<method>(event, function)`` (so a subclass's override sees it;
    ``weak=True`` is passed on only when set) and returns the function."""
    hash(event)  # an unhashable event is a TypeError now, not when decorating

    def decorator(function: Any) -> Any:
        if weak:
            getattr(emitter, method)(event, function, weak=True)
        else:
            getattr(emitter, method)(event, function)
        return function

    return decorator


# -- copy and pickle ------------------------------------------------------------------
#
# An emitter's registrations live in its core, out of sight of copy and pickle.
# Everything else follows Python's protocol as for a plain class:
#
# * ``__reduce_ex__`` (reduce_emitter) is object.__reduce_ex__'s: a subclass's
#   own ``__reduce__`` wins; otherwise the instance is made by
#   ``cls.__new__(cls, *args, **kwargs)`` (``__getnewargs_ex__`` or
#   ``__getnewargs__``), its state is what ``__getstate__`` returns (the
#   cores' own is object.__getstate__'s, without the core's slots), and a state
#   setter puts that back as pickle does (never calling ``__setstate__`` with
#   None), then the registrations.
# * ``__copy__``/``__deepcopy__`` (copy_emitter) do what copy.copy and
#   copy.deepcopy do for a class that defines neither: copyreg's dispatch
#   table or ``__reduce_ex__(4)``, rebuilt as copy._reconstruct rebuilds it
#   (plus the state setter, which copy._reconstruct lacks).
#
# A subclass's own __copy__, __deepcopy__ or __reduce_ex__ overrides the
# core's by the usual attribute lookup.

_OBJECT_REDUCE = object.__dict__["__reduce__"]
# copyreg's own, so that pickle writes its NEWOBJ opcodes (typeshed lacks them).
_NEWOBJ: Any = getattr(copyreg, "__newobj__")
_NEWOBJ_EX: Any = getattr(copyreg, "__newobj_ex__")


def default_instance_state(obj: Any, core: Any) -> Any:
    """What ``object.__getstate__`` returns for ``obj`` (Python 3.11+), with
    the slots of ``core`` (the core's own class) left out: ``None`` when the
    instance has no attributes, its ``__dict__``, or ``(__dict__ or None,
    {slot: value})`` when slots are set.  The cores' ``__getstate__``."""
    instance_dict = getattr(obj, "__dict__", None)
    state: Any = instance_dict if instance_dict else None
    slots: Dict[str, Any] = {}
    for klass in type(obj).__mro__:
        if klass is core:
            continue
        names: Any = klass.__dict__.get("__slots__", ())
        for name in [names] if isinstance(names, str) else list(names):
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):
                stripped = klass.__name__.lstrip("_")
                if stripped:
                    name = f"_{stripped}{name}"  # a private name, mangled
            try:
                slots[name] = getattr(obj, name)
            except AttributeError:
                pass  # never set
    return (state, slots) if slots else state


def restore_instance_state(obj: Any, state: Any) -> None:
    """Put back an instance's state as pickle does: nothing for ``None``,
    else ``__setstate__(state)`` if the object has one, else the ``__dict__``
    update and the slots of a ``(dict, slots)`` pair."""
    if state is None:
        return
    setstate = getattr(obj, "__setstate__", None)
    if setstate is not None:
        setstate(state)
        return
    slots: Any = None
    if _is_tuple(state) and len(state) == 2:
        state, slots = state
    if state:
        obj.__dict__.update(state)
    if slots:
        for name, value in slots.items():
            setattr(obj, name, value)


def new_instance(cls: Any) -> Any:
    """``cls.__new__(cls)``: how a copied or unpickled emitter is made."""
    return cls.__new__(cls)


def _new_arguments(obj: Any) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    # What object.__reduce_ex__ passes to cls.__new__ (with its errors).
    result: Any
    args: Any
    kwargs: Any
    getnewargs_ex = getattr(obj, "__getnewargs_ex__", None)
    if getnewargs_ex is not None:
        result = getnewargs_ex()
        if not _is_tuple(result):
            raise TypeError(f"__getnewargs_ex__ should return a tuple, not {_type_name(result)}")
        if len(result) != 2:
            raise ValueError(f"__getnewargs_ex__ should return a tuple of length 2, not {len(result)}")
        args, kwargs = result
        if not _is_tuple(args):
            raise TypeError(
                "first item of the tuple returned by __getnewargs_ex__ must be a tuple, "
                f"not {_type_name(args)}"
            )
        if not _is_dict(kwargs):
            raise TypeError(
                "second item of the tuple returned by __getnewargs_ex__ must be a dict, "
                f"not {_type_name(kwargs)}"
            )
        return args, kwargs
    getnewargs = getattr(obj, "__getnewargs__", None)
    if getnewargs is not None:
        args = getnewargs()
        if not _is_tuple(args):
            raise TypeError(f"__getnewargs__ should return a tuple, not {_type_name(args)}")
        return args, {}
    return (), {}


def _type_name(obj: Any) -> str:
    return repr(type(obj).__name__)


# isinstance() without narrowing: the values stay Any for the type checkers.
def _is_tuple(obj: object) -> bool:
    return isinstance(obj, tuple)


def _is_dict(obj: object) -> bool:
    return isinstance(obj, dict)


def reduce_emitter(emitter: Any, export: Callable[[Any], Any], restore: Any) -> Any:
    """``__reduce_ex__`` for an emitter (see above).  ``export(emitter)``
    lists its registrations; ``restore(obj, (state, registrations))`` is the
    6-tuple form's state setter, so that a subclass's own ``__setstate__``
    gets its own state only."""
    cls: Any = emitter.__class__
    if getattr(cls, "__reduce__", None) is not _OBJECT_REDUCE:
        return emitter.__reduce__()  # the subclass's own, as object.__reduce_ex__ calls it
    args, kwargs = _new_arguments(emitter)
    state = (emitter.__getstate__(), export(emitter))
    if kwargs:
        return (_NEWOBJ_EX, (cls, args, kwargs), state, None, None, restore)
    if args:
        return (_NEWOBJ, (cls, *args), state, None, None, restore)
    return (new_instance, (cls,), state, None, None, restore)


def copy_emitter(emitter: Any, memo: Optional[Dict[int, Any]]) -> Any:
    """``copy.copy`` (``memo`` None) or ``copy.deepcopy`` of an emitter, as
    the copy module makes it for a class without ``__copy__``/``__deepcopy__``."""
    cls: Any = cast(Any, type(emitter))
    reductor = copyreg.dispatch_table.get(cls)
    rv: Any = reductor(emitter) if reductor is not None else emitter.__reduce_ex__(4)
    if isinstance(rv, str):
        return emitter  # a global's name: copy and deepcopy return the object itself
    return _reconstruct(emitter, memo, *rv)


def _reconstruct(
    x: Any,
    memo: Optional[Dict[int, Any]],
    func: Any,
    args: Any,
    state: Any = None,
    listiter: Any = None,
    dictiter: Any = None,
    state_setter: Any = None,
) -> Any:
    # copy._reconstruct's rules, and a reduce value's sixth item (the state
    # setter, which pickle honours and copy._reconstruct doesn't take).
    deep = memo is not None
    if deep and args:
        args = [copy.deepcopy(arg, memo) for arg in args]
    y = func(*args)
    if memo is not None:
        memo[id(x)] = y
    if state is not None:
        if deep:
            state = copy.deepcopy(state, memo)
        if state_setter is not None:
            state_setter(y, state)
        else:
            restore_instance_state(y, state)
    if listiter is not None:
        for item in listiter:
            y.append(copy.deepcopy(item, memo) if deep else item)
    if dictiter is not None:
        for key, value in dictiter:
            if deep:
                key, value = copy.deepcopy(key, memo), copy.deepcopy(value, memo)
            y[key] = value
    return y


# -- listener-leak warning ------------------------------------------------------------


class ListenerLeakWarning(RuntimeWarning):
    """An event has more handlers than its emitter's ``max_listeners``:
    handlers are probably being registered in a loop or on every reconnect
    and never removed (Node's MaxListenersExceededWarning)."""


#: ``EventEmitter.max_listeners``: a Room with a few handlers per participant
#: and hundreds of participants stays well below it; a handler leaked on every
#: reconnect or track crosses it within hours, a loop at once.
DEFAULT_MAX_LISTENERS = 1000


def checked_max_listeners(limit: Any) -> int:
    """``limit`` as the cores store it, checked before anything is stored:
    ``None`` or 0 means unlimited (0); a limit above ``sys.maxsize`` is
    ``sys.maxsize`` (no event can have more handlers, so it never warns
    either).  ``ValueError`` for anything but a non-negative ``int`` or None
    (a ``bool`` included)."""
    if limit is None:
        return 0
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ValueError(f"max_listeners must be a non-negative int or None, not {_short_repr(limit)}")
    value = int.__index__(limit)  # its value as an int, whatever a subclass overrides
    if value < 0:
        raise ValueError(f"max_listeners must be a non-negative int or None, not {_short_repr(value)}")
    return min(value, sys.maxsize)


def warn_listener_leak(emitter: Any, event: Any, count: int, limit: int, stacklevel: int) -> None:
    """The one warning an event gets when its handlers first exceed the limit."""
    name = type(emitter).__qualname__
    warnings.warn(
        f"{name} has {count} handlers for event {_safe_repr(event)}, more than its "
        f"max_listeners ({limit}): are handlers registered in a loop or on every reconnect "
        f"and never removed?  If that many are expected, raise the limit: "
        f"emitter.set_max_listeners(n) for one emitter, {name}.max_listeners = n for the "
        f"class (0 or None: no limit).",
        ListenerLeakWarning,
        stacklevel=stacklevel + 1,
    )


# -- slow-handler detection ----------------------------------------------------------
#
# Off unless set_slow_handler_threshold() (or the environment variable, read at
# import) turns it on.  Each core keeps the threshold where its emit reads it
# cheaply (the compiled core in a C variable): setting it here tells them all.

SLOW_HANDLER_ENV = "LIVEKIT_EVENTS_SLOW_HANDLER_THRESHOLD"
#: A handler that keeps being slow is reported at most this often (seconds).
SLOW_REPORT_INTERVAL = 60.0

#: The largest threshold (seconds, about 31.7 years): a larger finite one is
#: stored as this.  In nanoseconds it fits any core's clock arithmetic.
MAX_SLOW_HANDLER_THRESHOLD = 1e9

_slow_threshold: Optional[float] = None
_slow_setters: List[Callable[[int], None]] = []  # each core's, given nanoseconds (0: off)
_slow_reports: Dict[Any, List[float]] = {}  # handler key -> [last report time, suppressed]
_slow_lock = threading.Lock()


def checked_slow_threshold(seconds: Any) -> Optional[float]:
    """``seconds`` as ``set_slow_handler_threshold`` stores it, checked before
    anything is stored: ``None`` (off) for ``None`` or 0, else a float of at
    most ``MAX_SLOW_HANDLER_THRESHOLD`` (a larger finite value, int or float,
    is clamped to it).  ``ValueError`` for anything but a non-negative finite
    ``int`` or ``float`` or None: a ``bool``, a string, NaN, infinity."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(
            "threshold must be a non-negative number of seconds or None, "
            f"not {_short_repr(seconds)}"
        )
    if isinstance(seconds, int):
        number = int.__index__(seconds)  # its value, whatever a subclass overrides
        if number < 0:
            raise ValueError(
                f"threshold must be a non-negative number of seconds or None, not {_short_repr(number)}"
            )
        # Compared as an int: an int too large for a float is clamped, not an OverflowError.
        value = MAX_SLOW_HANDLER_THRESHOLD if number > MAX_SLOW_HANDLER_THRESHOLD else float(number)
    else:
        value = float.__float__(seconds)
        if value != value:
            raise ValueError("threshold must be a number of seconds or None, not nan")
        if value < 0:
            raise ValueError(
                f"threshold must be a non-negative number of seconds or None, not {value!r}"
            )
        if value == float("inf"):
            raise ValueError("threshold must be finite, not inf (None or 0 turns detection off)")
    return min(value, MAX_SLOW_HANDLER_THRESHOLD) if value else None


def _threshold_ns(seconds: Optional[float]) -> int:
    return 0 if not seconds else max(1, int(seconds * 1e9))


def register_slow_threshold_setter(setter: Callable[[int], None]) -> None:
    """A core's setter, called now and whenever the threshold changes."""
    _slow_setters.append(setter)
    setter(_threshold_ns(_slow_threshold))


def set_slow_handler_threshold(seconds: Any) -> None:
    """Time every handler call and log a WARNING on ``livekit.events`` for a
    call that takes longer than ``seconds`` (rate-limited per handler).
    ``None`` or ``0`` turns it off (the default): then it costs nothing.

    ``ValueError`` (and nothing changed) for anything but a non-negative
    finite number or None; a threshold above ``1e9`` seconds is stored as
    ``1e9`` (no call lasts that long).

    Works for ``EventEmitter`` and, with ``install()``, livekit's own emitters.
    The environment variable ``LIVEKIT_EVENTS_SLOW_HANDLER_THRESHOLD``
    (seconds) sets it when livekit_events is imported.
    """
    global _slow_threshold
    threshold = checked_slow_threshold(seconds)
    threshold_ns = _threshold_ns(threshold)
    with _slow_lock:
        _slow_threshold = threshold
        _slow_reports.clear()
        for setter in _slow_setters:
            setter(threshold_ns)


def get_slow_handler_threshold() -> Optional[float]:
    """The threshold in seconds, or ``None`` when detection is off."""
    return _slow_threshold


def _slow_threshold_from_environment() -> None:
    # Nothing read from the environment may stop the import: a value that
    # isn't a valid threshold is ignored with a warning (logged instead when
    # warnings are errors).  Empty or blank is the same as unset.
    value = os.environ.get(SLOW_HANDLER_ENV, "").strip()
    if not value:
        return
    try:
        set_slow_handler_threshold(float(value))
        return
    except ValueError:  # not a number, or not a threshold
        pass
    message = (
        f"livekit_events: ignoring {SLOW_HANDLER_ENV}={_short_repr(value)} "
        "(expected a non-negative finite number of seconds, e.g. 0.05)"
    )
    try:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    except Exception:  # the warning filter made it an error (python -W error)
        logger.warning("%s", message)


def describe_handler(callback: Any) -> str:
    """``qualname (file:line)`` of a handler, as far as it can be told."""
    import inspect

    target: Any = inspect.unwrap(callback) if not isinstance(callback, type) else callback
    if isinstance(target, functools.partial):
        target = cast(Any, target.func)
    function: Any = getattr(target, "__func__", target)
    name = callable_name(function)
    code = getattr(function, "__code__", None)
    if code is None:
        call = getattr(function.__class__, "__call__", None)
        code = getattr(call, "__code__", None)
    if code is not None:
        return f"{name} ({code.co_filename}:{code.co_firstlineno})"
    return name


def callable_name(callback: object) -> str:
    """How messages name a callable: its ``__qualname__`` (or ``__name__``),
    else its repr (a placeholder if that raises)."""
    name = getattr(callback, "__qualname__", None) or getattr(callback, "__name__", None)
    return name if isinstance(name, str) else _safe_repr(callback)


def report_slow_handler(event: Any, callback: Any, elapsed_ns: int) -> None:
    """A handler call took longer than the threshold: log it, at most once
    per SLOW_REPORT_INTERVAL per handler (saying how many were held back)."""
    try:
        where = describe_handler(callback)
    except Exception:
        where = _safe_repr(callback)
    now = time.monotonic()
    with _slow_lock:
        state = _slow_reports.get(where)
        if state is not None and now - state[0] < SLOW_REPORT_INTERVAL:
            state[1] += 1
            return
        held_back = state[1] if state is not None else 0
        _slow_reports[where] = [now, 0]
        threshold = _slow_threshold or 0.0
    logger.warning(
        "slow handler for event %s: %s took %.1f ms (threshold %.1f ms)%s",
        _safe_repr(event),
        where,
        elapsed_ns / 1e6,
        threshold * 1e3,
        f"; {held_back} more slow calls since its last report" if held_back else "",
    )


def check_event(event: Any) -> None:
    """Raise ``TypeError`` if ``event`` cannot name an event (is unhashable)."""
    hash(event)


def arity_error(event: Any, callback: Callable[..., Any], required: int, given: int) -> TypeError:
    """The error ``emit`` raises when a handler needs more arguments than emitted."""
    return TypeError(
        f"emit({_safe_repr(event)}): handler {_safe_repr(callback)} requires {required} positional "
        f"argument{'s' if required != 1 else ''}, but {given} {'were' if given != 1 else 'was'} emitted"
    )


#: How deep emits may nest in one thread (a handler emits, one of that emit's
#: handlers emits, ...).  An emit started while this many emits of the same
#: thread are running raises ``RecursionError`` (``nesting_error``), on both
#: cores and every CPython.  Without it the depth would depend on the core and
#: the version: the compiled core's levels are C frames, which CPython 3.12
#: stops at about 500 whatever ``sys.setrecursionlimit`` says, and on 3.11 and
#: earlier a raised recursion limit lets either core overflow the C stack and
#: crash.  256 levels fit in the default recursion limit (1000) with up to three
#: Python frames per level (the pure twin's emit, the handler and a helper of
#: its) under 200 frames of caller, and in 3.12's C limit; about 300 KB of C
#: stack.  No application nests emits that deep on purpose.
MAX_EMIT_NESTING = 256


def nesting_error(event: Any) -> RecursionError:
    """The error an emit raises, before calling anything, when
    ``MAX_EMIT_NESTING`` emits of its thread are already running."""
    return RecursionError(
        f"emit({_short_repr(event)}): {MAX_EMIT_NESTING} emits are already running in this "
        f"thread, nested (the limit): does a handler emit its own event without end?"
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


def _short_repr(obj: Any, limit: int = 80) -> str:
    """``_safe_repr(obj)``, shortened to about ``limit`` characters (for
    values a user passed, which may be megabytes long)."""
    if type(obj) is int and obj.bit_length() > 128:  # repr may refuse (sys.int_info)
        return f"{'-' if obj < 0 else ''}<an int of {obj.bit_length()} bits>"
    text = _safe_repr(obj)
    return text if len(text) <= limit else f"{text[: limit - 20]}...{text[-12:]} ({len(text)} characters)"


def _safe_repr(obj: Any) -> str:
    """``repr(obj)``, or a placeholder if its ``__repr__`` raises (error
    messages must not turn into a different error)."""
    try:
        return repr(obj)
    except Exception:
        return f"<{type(obj).__qualname__} object at {id(obj):#x} (repr failed)>"


_slow_threshold_from_environment()
