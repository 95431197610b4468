"""Pure-Python twin of ``_core_c.pyx``: the same names, the same behaviour.

Used when the extension was not built or ``LIVEKIT_EVENTS_NO_EXTENSIONS`` is
set.  Every test runs against both.

The registry.  Each event has a ``_Handlers`` whose dict ``registrations``
holds every live registration in call order (dicts keep insertion order).
Its keys make plain dict lookups do the matching:

* an ``on`` registration is keyed by the callback itself, so
  ``setdefault(callback, ...)`` is the dedupe (dict-key equality; the first
  position is kept) and ``pop(callback)`` removes it;
* a ``once`` registration is keyed by a ``_OnceKey`` of its own, equal only
  to itself and to a ``_Probe`` of an equal callback: ``on`` never dedupes
  against it, and ``off(callback)`` pops each pending one with
  ``pop(_Probe(callback))``;
* once's wrapper for subclasses (``OnceWrapper``) is its own key, and is
  matched by a probe like a ``_OnceKey``.

So every operation is O(1) and needs no lock.  It must not take one: pure
Python can't stop a GC finalizer, a weakref callback or another thread from
running between any two bytecodes, and a lock held across them can deadlock
(a finalizer may wait for an application lock held by a thread that waits for
ours).  Instead, every change to the registry is one dict operation
(``setdefault``, ``pop``, ``popitem``), atomic with the GIL and under free
threading (dicts lock themselves), and each state between two of them is a
whole registry.  Code that runs in between sees a consistent registry and may
change it; no operation writes back something it read before.

* Removal is immediate: whoever pops a registration clears its ``active``
  flag, which an emit already walking a snapshot checks.  Popping is also the
  claim of a once registration: it fires only for the emit that popped it.
* ``emit`` walks a snapshot: a tuple of the registrations cached on the
  ``_Handlers`` with the ``version`` token it was built under, rebuilt by the
  first emit after a change.  Every change stores a new token after changing
  the dict, so a tuple built before a change never passes for current.

The compiled core keeps the same contract with C structures (its rules are at
the top of _core_c.pyx).
"""

from __future__ import annotations

import dis
import itertools
import keyword
import sys
import threading
import time
import types
import weakref
from typing import Any, Dict, List, Optional, SupportsIndex, Tuple, cast

from ._common import (
    ALL_ARGUMENTS,
    DEFAULT_MAX_LISTENERS,
    arity_error,
    checked_max_listeners,
    copy_emitter,
    default_instance_state,
    log_handler_failure,
    reduce_emitter,
    register_slow_threshold_setter,
    registration_decorator,
    report_slow_handler,
    restore_instance_state,
    warn_listener_leak,
)
from ._common import MAX_EMIT_NESTING, nesting_error
from ._common import describe_callback as _describe_slow
from ._common import parameter_empty as _parameter_empty

__all__ = ("EmitterCore", "OnceWrapper", "describe_callback", "emit_method")


# -- reading a callback's arity ------------------------------------------------------
#
# Twin of the fast path in _core_c.pyx (read its comment): plain functions and
# their bound methods are read from __code__, __defaults__ and __kwdefaults__;
# anything that could make inspect.signature or the async checks answer
# differently goes to the slow path, _common.describe_callback.

_FUNCTION = types.FunctionType
_METHOD = types.MethodType
# inspect's CO_ flags, from where inspect takes them (dis is lighter).
_CO = {name: flag for flag, name in dis.COMPILER_FLAG_NAMES.items()}
_NOT_PLAIN = _CO["COROUTINE"] | _CO["ITERABLE_COROUTINE"] | _CO["ASYNC_GENERATOR"]
_CO_VARARGS = _CO["VARARGS"]
_CO_VARKEYWORDS = _CO["VARKEYWORDS"]
# inspect.Parameter.empty, kept once inspect is imported (importing the
# package doesn't import it, nor does the fast path: _common.parameter_empty);
# until then _NO_EMPTY, which no default is.
_parameter_empty_value: Any = None
_NO_EMPTY = object()
_KEYWORDS = frozenset(keyword.kwlist)  # what inspect.Parameter rejects (keyword.iskeyword)
# 3.14+: inspect.signature evaluates lazy annotations (which may raise).  Pure
# Python can't tell whether they were evaluated already: the slow path decides.
_LAZY_ANNOTATIONS = sys.version_info >= (3, 14)


def describe_callback(callback: Any) -> Tuple[int, int]:
    """``_common.describe_callback(callback)``, read directly from ``__code__``
    for plain functions and their bound methods (the common callbacks)."""
    global _parameter_empty_value
    empty = _parameter_empty_value
    if empty is None:
        empty = _parameter_empty()
        if empty is None:
            empty = _NO_EMPTY
        else:
            _parameter_empty_value = empty
    if type(callback) is _FUNCTION:
        function = callback
        bound = 0
    elif type(callback) is _METHOD and type(callback.__func__) is _FUNCTION:
        function = callback.__func__
        bound = 1
    else:
        return _describe_slow(callback)
    code = function.__code__
    flags = code.co_flags
    argcount = code.co_argcount
    if (
        flags & _NOT_PLAIN  # async (the slow path raises) or types.coroutine
        or function.__dict__  # __wrapped__, __signature__, coroutine markers, ...
        or (bound and not argcount)  # no parameter to bind self to
        or (_LAZY_ANNOTATIONS and getattr(function, "__annotate__", None) is not None)
    ):
        return _describe_slow(callback)
    kwonly = code.co_kwonlyargcount
    total = argcount + kwonly
    if flags & _CO_VARARGS:
        total += 1
    if flags & _CO_VARKEYWORDS:
        total += 1
    names = code.co_varnames[:total]
    # Names inspect.Parameter would reject or rename (".0"), and duplicates
    # (which the signature's mapping merges), occur only in hand-made code.
    for name in names:
        if type(name) is not str or not name.isidentifier() or name in _KEYWORDS:
            return _describe_slow(callback)
    if len(names) != total or len(set(names)) != total:
        return _describe_slow(callback)
    defaults = function.__defaults__
    required = argcount
    if defaults is not None:
        # More defaults than parameters, or Parameter.empty as a default, make
        # inspect count differently.
        if type(defaults) is not tuple or len(defaults) > argcount:
            return _describe_slow(callback)
        for default in defaults:
            if default is empty:
                return _describe_slow(callback)
        required -= len(defaults)
    if kwonly:
        # A required keyword-only parameter is an error: the slow path raises it.
        kwdefaults = function.__kwdefaults__
        if type(kwdefaults) is not dict:
            return _describe_slow(callback)
        for key in kwdefaults:
            if type(key) is not str:  # looking names up must run no Python code
                return _describe_slow(callback)
        for name in names[argcount : argcount + kwonly]:
            if kwdefaults.get(name, empty) is empty:
                return _describe_slow(callback)
    if bound and required:
        required -= 1  # self was the first required parameter
    return (ALL_ARGUMENTS if flags & _CO_VARARGS else argcount - bound), required


# -- the registry ----------------------------------------------------------------------

# Once registrations hash like their callback combined with this salt: not
# like the callback itself, so that the callback's own `on` registration (same
# hash) is never compared with them, and a user __eq__ never sees our keys.
_ONCE_SALT = "livekit_events.once"


def _once_hash(callback: Any) -> int:
    return hash((_ONCE_SALT, hash(callback)))


# -- weak references -------------------------------------------------------------------
#
# A weakly held callable is a weak reference to it, or for a bound method a
# tuple (weak reference to __self__, __func__), so that nothing keeps the
# object alive.  The weak reference's callback (a _WeakDeath) removes the
# registration when the referent dies; it holds the emitter weakly.


def _weak_container(callback: Any, death: Any) -> Any:
    try:
        if type(callback) is types.MethodType:
            return (weakref.ref(callback.__self__, death), callback.__func__)
        return weakref.ref(callback, death)
    except TypeError:
        target = callback.__self__ if type(callback) is types.MethodType else callback
        raise TypeError(
            f"cannot register {callback!r} weakly: {type(target).__name__} objects can't be "
            "weakly referenced (register it without weak=True)"
        ) from None


def _weak_target(container: Any) -> Any:
    """The callable a weak container stands for, or None once it died."""
    if type(container) is tuple:
        ref, function = cast("Tuple[Any, Any]", container)
        obj = ref()
        return None if obj is None else types.MethodType(function, obj)
    return container()


class _WeakDeath:
    """A weak registration's referent died: remove the registration."""

    __slots__ = ("emitter", "event", "key", "wrapper")

    def __init__(self, emitter: Any, event: Any, key: Any, wrapper: Any = None) -> None:
        self.emitter = emitter  # weak reference to the emitter
        self.event = event
        self.key = key  # weak reference to the registration's key
        self.wrapper = wrapper  # or a weak reference to the OnceWrapper holding it

    def __call__(self, _: Any) -> None:
        if self.wrapper is not None:
            wrapper = self.wrapper()
            if wrapper is not None:
                wrapper.expire()
            return
        emitter, key = self.emitter(), self.key()
        if emitter is None or key is None:
            return
        handlers = emitter.__livekit_events__.get(self.event)
        if handlers is not None:
            handlers.pop(key)


class OnceWrapper:
    """What ``once`` registers through ``self.on`` when a subclass overrides
    ``on`` or ``off``: a callable that calls the callback at most once.

    Its signature is the callback's (``__wrapped__``).  The first call claims
    it, removes it with ``emitter.off(event, wrapper)`` (the subclass's ``off``
    sees livekit's sequence) and calls the callback with the leading arguments
    it accepts; later calls (a nested emit, another thread, an emitter that
    doesn't remove it) do nothing.  ``off(event, callback)`` on the emitter
    also removes it.  With ``weak=True`` it holds the callback weakly, and
    removes itself the same way when the callback dies.
    """

    __slots__ = (
        "emitter", "event", "limit", "required",
        "weak", "_callback", "_hash", "_unclaimed", "__weakref__",
    )  # fmt: skip

    def __init__(
        self,
        emitter: Any,
        event: Any,
        callback: Any,
        limit: Optional[int],
        required: int,
        weak: bool = False,
    ) -> None:
        self.emitter = emitter
        self.event = event
        self.limit = limit
        self.required = required
        self._hash = _once_hash(callback)
        self._unclaimed = [True]  # list.pop is the claim: atomic, succeeds once
        self.weak = weak  # holds the callback weakly
        if weak:
            death = _WeakDeath(None, event, None, weakref.ref(self))
            self._callback = _weak_container(callback, death)
        else:
            self._callback = callback

    @property
    def __wrapped__(self) -> Any:
        callback = getattr(self, "_callback", None)
        return _weak_target(callback) if getattr(self, "weak", False) else callback

    def claim(self) -> bool:
        """The wrapper's one call: True the first time, False after."""
        try:
            self._unclaimed.pop()
        except (IndexError, AttributeError):  # claimed already (or never made)
            return False
        return True

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        if not self.claim():
            return
        self.emitter.off(self.event, self)
        callback = self.__wrapped__
        if callback is not None:  # (None: held weakly, and dead)
            callback(*args[: self.limit], **kwargs)

    def expire(self) -> None:
        """Its weakly held callback died: remove it as if it had fired."""
        if self.claim():
            self.emitter.off(self.event, self)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if type(other) is not _Probe:
            return False
        callback = self.__wrapped__
        return callback is not None and other.matches(callback)

    def __repr__(self) -> str:
        return f"<once wrapper of {self.__wrapped__!r}>"

    def __reduce__(self) -> Any:
        return (
            _rebuild_once_wrapper,
            (self.emitter, self.event, self.__wrapped__, not self._unclaimed, self.weak),
        )


def _rebuild_once_wrapper(
    emitter: Any, event: Any, callback: Any, claimed: bool, weak: bool = False
) -> OnceWrapper:
    accepted, required = describe_callback(callback)
    limit = None if accepted == ALL_ARGUMENTS else accepted
    wrapper = OnceWrapper(emitter, event, callback, limit, required, weak)
    if claimed:
        wrapper.claim()
    return wrapper


class _OnceHashed:
    """Hashes like the salted hash of ``callback``."""

    __slots__ = ("callback", "hash")

    def __init__(self, callback: Any) -> None:
        self.callback = callback
        self.hash = _once_hash(callback)

    def __hash__(self) -> int:
        return self.hash


class _OnceKey(_OnceHashed):
    """The dict key of one ``once`` registration: equal only to itself and to
    a ``_Probe`` of an equal callback.  ``callback`` may be a weak container
    (``weak`` set)."""

    __slots__ = ("weak", "__weakref__")
    __hash__ = _OnceHashed.__hash__  # (defining __eq__ would unset it)

    def __init__(self, callback: Any, weak: Any = None) -> None:
        super().__init__(callback)
        self.weak = weak  # the weak container, for a weak registration

    def target(self) -> Any:
        return self.callback if self.weak is None else _weak_target(self.weak)

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if type(other) is not _Probe:
            return False
        callback = self.target()
        return callback is not None and other.matches(callback)


class _Probe(_OnceHashed):
    """Looks up the once registrations of ``callback`` (see ``off``)."""

    __slots__ = ()
    __hash__ = _OnceHashed.__hash__

    def __eq__(self, other: object) -> bool:
        # Reached only from a stored key whose own __eq__ didn't answer.
        return other is self

    def matches(self, callback: Any) -> bool:
        # Dict-key equality, the stored callback on the left as dicts compare.
        return callback is self.callback or bool(callback == self.callback)


class _WeakKey:
    """The dict key of a weak ``on`` registration: hashes like the callback
    and, while it lives, equals what the callback equals."""

    __slots__ = ("weak", "hash", "__weakref__")

    def __init__(self, callback_hash: int) -> None:
        self.weak: Any = None  # the weak container, set once made
        self.hash = callback_hash

    def target(self) -> Any:
        return _weak_target(self.weak)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        callback = self.target()
        if callback is None:
            return False
        if type(other) is _WeakKey:
            other = other.target()
            if other is None:
                return False
        elif type(other) in (_Probe, _OnceKey, OnceWrapper):
            return False
        return callback is other or bool(callback == other)


class Registration:
    """One ``on`` or ``once`` registration of a callback for an event."""

    __slots__ = ("callback", "key", "limit", "required", "once", "special", "active")

    def __init__(
        self, callback: Any, key: Any, limit: Optional[int], required: int, once: bool
    ) -> None:
        self.callback = callback  # what emit calls (None: held weakly, see key)
        self.key = key  # its key in _Handlers.registrations
        self.limit = limit  # a slice bound: args[:None] is every argument
        self.required = required
        self.once = once  # claimed by emit (a OnceWrapper claims itself)
        self.special = once or callback is None  # emit's one check for both
        self.active = True  # cleared by whoever pops it

    def listed(self) -> Any:
        """The callable as the user registered it (None: weak, and dead)."""
        callback = self.callback
        if callback is None:
            return self.key.target()
        return callback.__wrapped__ if type(callback) is OnceWrapper else callback

    def weak(self) -> bool:
        callback = self.callback
        if callback is None:
            return True
        return type(callback) is OnceWrapper and callback.weak


_NO_SNAPSHOT: Tuple[object, Tuple[Registration, ...]] = (None, ())


_first_handler_order = itertools.count(1)  # next() is atomic


def _copy_values(d: Dict[Any, Any]) -> List[Any]:
    """The values of a registry dict, read in one pass that runs no Python code.

    Nothing is allocated that could start a collection while the dict is
    read (list() sizes its array first and grows it with plain memory), so no
    finalizer can change the dict mid-read: a tuple(d.values()), or anything
    over d.items() (a new pair per entry), can raise "dictionary changed size
    during iteration" there.  Free-threaded, list() of a dict's values copies
    under the dict's lock (a plain iteration may skip entries while another
    thread resizes it), and unlike dict.copy() it compares no keys (no
    __eq__ runs)."""
    return list(d.values())


class _Handlers:
    """The registrations of one event (see the module docstring)."""

    __slots__ = ("event", "registrations", "version", "added", "snapshot", "since", "warned")

    def __init__(self, event: Any) -> None:
        self.event = event  # its key in the registry: listings read values only
        self.since = 0  # when it last got a handler while it had none
        self.added = object()  # replaced by every registration (see off)
        self.warned = False  # the listener-leak warning was given
        self.registrations: Dict[Any, Registration] = {}
        self.version = object()  # replaced after every change
        self.snapshot: Tuple[object, Tuple[Registration, ...]] = _NO_SNAPSHOT

    def current(self) -> Tuple[Registration, ...]:
        """The registrations in call order, as a tuple (cached)."""
        snapshot = self.snapshot
        if snapshot[0] is self.version:
            return snapshot[1]
        version = self.version  # read before the dict: a later change makes it stale
        entries = tuple(_copy_values(self.registrations))
        self.snapshot = (version, entries)
        return entries

    def add(self, registration: Registration) -> bool:
        registrations = self.registrations
        if registrations.setdefault(registration.key, registration) is not registration:
            return False  # already registered: keeps its first position
        self.version = self.added = object()
        if len(registrations) == 1:
            self.since = next(_first_handler_order)  # event_names() order
        return True

    def pop(self, key: Any) -> Optional[Registration]:
        registration = self.registrations.pop(key, None)
        if registration is not None:
            self.removed(registration)
        return registration

    def removed(self, registration: Registration) -> None:
        """What follows taking ``registration`` out of the dict."""
        registration.active = False
        self.version = object()
        self.snapshot = _NO_SNAPSHOT  # let go of the removed callback now
        if not self.registrations:
            self.warned = False  # warned again if it leaks again


def _plain_on_off(emitter: Any) -> bool:
    # Whether `self.on` and `self.off` are this core's own (not overridden by a
    # subclass or on the instance): then once needs no wrapper.
    on, off = emitter.on, emitter.off
    return (
        type(on) is types.MethodType
        and on.__func__ is _CORE_ON
        and type(off) is types.MethodType
        and off.__func__ is _CORE_OFF
    )


# Slow-handler detection: the threshold in nanoseconds (0: off), set by _common.
_slow_ns = 0


def _set_slow_threshold(threshold_ns: int) -> None:
    # Nanoseconds (0 or less: off), clamped as the compiled core's C variable is.
    global _slow_ns
    _slow_ns = min(max(threshold_ns, 0), 0x7FFFFFFFFFFFFFFF)


register_slow_threshold_setter(_set_slow_threshold)


class EmitterCore:
    """Registration storage and ``emit``; the public class adds the typing."""

    # The registry (event -> _Handlers) and set_max_listeners()'s limit.
    # Dunders, so that no name a subclass may use for its own state collides
    # with them (SPEC §2).
    __slots__ = ("__livekit_events__", "__livekit_events_limit__")
    __livekit_events__: Dict[Any, _Handlers]
    __livekit_events_limit__: Optional[int]

    #: Warn (``ListenerLeakWarning``) when an event gets more handlers than
    #: this; ``0`` or ``None``: never.  ``set_max_listeners`` sets it per emitter.
    max_listeners: Optional[int] = DEFAULT_MAX_LISTENERS

    def __new__(cls, *args: Any, **kwargs: Any) -> "EmitterCore":
        self = object.__new__(cls)
        self.__livekit_events__ = {}
        self.__livekit_events_limit__ = None
        return self

    def __init__(self) -> None:
        if self.__livekit_events__:
            self.remove_all_listeners()

    def emit(self, event: Any, *args: Any) -> None:
        """Call every handler of ``event`` with the leading ``args`` it accepts."""
        handlers = self.__livekit_events__.get(event)
        if handlers is None:
            return
        depth = _nesting.depth  # [this thread's running emits]
        running = depth[0]
        if running >= MAX_EMIT_NESTING:
            raise nesting_error(event)
        depth[0] = running + 1  # and -1 when done (greenlets may interleave)
        try:
            if _slow_ns:
                return _emit_timed(handlers, event, args)
            snapshot = handlers.snapshot
            entries = snapshot[1] if snapshot[0] is handlers.version else handlers.current()
            given = len(args)
            for registration in entries:
                if not registration.active:
                    continue  # removed while this emit runs
                callback = registration.callback
                if registration.special:  # once, or held weakly
                    callback = _claim(handlers, registration)
                    if callback is None:
                        continue  # fired by a nested emit or another thread, or dead
                if given < registration.required:
                    raise arity_error(event, registration.listed(), registration.required, given)
                try:
                    callback(*args[: registration.limit])
                except Exception as exc:
                    log_handler_failure(event, exc)
        finally:
            depth[0] -= 1

    def on(self, event: Any, callback: Any = None, *, weak: bool = False) -> Any:
        """Call ``callback`` every time ``event`` is emitted; return it."""
        if callback is None:
            return registration_decorator(self, "on", event, weak)
        hash(event)
        if type(callback) is OnceWrapper:  # once's wrapper, back from a subclass's on
            registration = Registration(
                callback, callback, callback.limit, callback.required, False
            )
            _register(self, event, registration)
        else:
            _register_callback(self, event, callback, weak, False)
        return callback

    def once(self, event: Any, callback: Any = None, *, weak: bool = False) -> Any:
        """Call ``callback`` the next time ``event`` is emitted only; return it."""
        if callback is None:
            return registration_decorator(self, "once", event, weak)
        hash(event)
        if _plain_on_off(self):
            _register_callback(self, event, callback, weak, True)
        else:
            accepted, required = describe_callback(callback)
            limit = None if accepted == ALL_ARGUMENTS else accepted
            self.on(event, OnceWrapper(self, event, callback, limit, required, weak))
        return callback

    def off(self, event: Any, callback: Any) -> None:
        """Remove every registration of ``callback`` for ``event`` (``on`` and
        pending ``once`` ones).  Unknown events or callbacks are ignored."""
        handlers = self.__livekit_events__.get(event)
        if handlers is None:
            return
        if type(callback) is OnceWrapper:  # a wrapper removes only itself
            handlers.pop(callback)
            return
        probe = _Probe(callback)
        for _ in range(2):
            added = handlers.added
            # Pending once registrations first: if an __eq__ raises while
            # matching them, the on registration is still there.
            while handlers.pop(probe) is not None:
                pass
            handlers.pop(callback)
            # Python code run by the comparisons (an __eq__) may have
            # registered callback again meanwhile: then go round once more
            # (once: an __eq__ that registers every time must not loop us),
            # so that off removes what that code registered, as the compiled
            # core does (it compares every key before it removes any).
            if handlers.added is added:
                return

    def set_max_listeners(self, limit: Optional[int]) -> None:
        """Warn (``ListenerLeakWarning``) when an event of this emitter gets
        more than ``limit`` handlers; ``0`` or ``None``: never."""
        self.__livekit_events_limit__ = checked_max_listeners(limit)

    def get_max_listeners(self) -> int:
        """This emitter's limit (``set_max_listeners``, else the class's
        ``max_listeners``); ``0``: no limit."""
        limit = self.__livekit_events_limit__
        if limit is not None:
            return limit
        return checked_max_listeners(type(self).max_listeners)

    def remove_all_listeners(self, event: Any = None) -> None:
        """Remove every handler of ``event``, or of every event if it is None."""
        registry = self.__livekit_events__
        if event is None:
            targets = _copy_values(registry)
        else:
            handlers = registry.get(event)
            targets = [handlers] if handlers is not None else []
        for handlers in targets:
            registrations = handlers.registrations
            while registrations:
                try:
                    _, registration = registrations.popitem()
                except KeyError:
                    break
                handlers.removed(registration)

    def listeners(self, event: Any) -> List[Any]:
        """The callbacks of ``event`` as registered, in call order."""
        handlers = self.__livekit_events__.get(event)
        if handlers is None:
            return []
        return _listed(handlers)

    def listener_count(self, event: Any) -> int:
        """How many registrations ``event`` has (each pending ``once`` counts)."""
        handlers = self.__livekit_events__.get(event)
        return 0 if handlers is None else len(handlers.registrations)

    def event_names(self) -> List[Any]:
        """The events that have at least one handler, in the order they got
        their first one (since they last had none), as Node's emitters list them."""
        return [e for e, h in _in_order(self) if h.registrations]

    @property
    def _events(self) -> Dict[Any, List[Any]]:
        """livekit compatibility: a fresh ``{event: [callbacks]}`` mapping."""
        return {e: _listed(h) for e, h in _in_order(self) if h.registrations}

    def __copy__(self) -> Any:
        return copy_emitter(self, None)

    def __deepcopy__(self, memo: Dict[int, Any]) -> Any:
        return copy_emitter(self, memo)

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        return reduce_emitter(self, export_registrations, restore_emitter)

    def __getstate__(self) -> Any:
        return default_instance_state(self, EmitterCore)


_CORE_ON = EmitterCore.on
_CORE_OFF = EmitterCore.off


emit_method = EmitterCore.emit  # what the public class calls emit (as in _core_c)


def _claim(handlers: _Handlers, registration: Registration) -> Any:
    # A special registration's turn: what to call, or None to skip it.
    if registration.once and handlers.pop(registration.key) is None:
        return None  # fired by a nested emit or another thread first
    callback = registration.callback
    return registration.key.target() if callback is None else callback


class _Nesting(threading.local):
    # Each thread's count of running emits, for MAX_EMIT_NESTING (the
    # compiled core counts in C).  A one-item list: emit reads the
    # thread-local attribute once, then counts in the list.
    def __init__(self) -> None:
        self.depth = [0]


_nesting = _Nesting()


def _emit_timed(handlers: _Handlers, event: Any, args: Tuple[Any, ...]) -> None:
    # emit's loop with every call timed (slow-handler detection is on).
    # One clock read per call: a handler's time runs from the previous call's
    # end, as in the compiled core's walk.
    given = len(args)
    clock = time.perf_counter_ns
    started = clock()
    for registration in handlers.current():
        if not registration.active:
            continue
        callback = registration.callback
        if registration.special:
            callback = _claim(handlers, registration)
            if callback is None:
                continue
        if given < registration.required:
            raise arity_error(event, registration.listed(), registration.required, given)
        try:
            callback(*args[: registration.limit])
        except Exception as exc:
            elapsed = clock() - started
            log_handler_failure(event, exc)
            started = clock()  # the log's time is not the next handler's
        else:
            now = clock()
            elapsed, started = now - started, now
        if elapsed > _slow_ns:
            report_slow_handler(event, registration.listed(), elapsed)
            started = clock()


def _listed(handlers: _Handlers) -> List[Any]:
    listed = [r.listed() for r in handlers.current() if r.active]
    return [callback for callback in listed if callback is not None]


def _register_callback(
    emitter: EmitterCore, event: Any, callback: Any, weak: bool, once: bool
) -> None:
    accepted, required = describe_callback(callback)
    limit = None if accepted == ALL_ARGUMENTS else accepted
    if not weak:
        key = _OnceKey(callback) if once else callback
        _register(emitter, event, Registration(callback, key, limit, required, once))
        return
    try:
        emitter_ref = weakref.ref(emitter)
    except TypeError:
        raise TypeError(
            f"{type(emitter).__name__} objects can't be weakly referenced, "
            "so they can't hold weak registrations"
        ) from None
    weak_key: Any = _OnceKey(callback, None) if once else _WeakKey(hash(callback))
    death = _WeakDeath(emitter_ref, event, weakref.ref(weak_key))
    weak_key.weak = _weak_container(callback, death)
    if once:
        weak_key.callback = None  # the key holds it weakly only
    _register(emitter, event, Registration(None, weak_key, limit, required, once))


def _register(emitter: EmitterCore, event: Any, registration: Registration) -> None:
    limit = emitter.get_max_listeners()
    handlers = _handlers(emitter, event)
    if handlers.add(registration) and limit and not handlers.warned:
        count = len(handlers.registrations)
        if count > limit:
            handlers.warned = True  # paid at registration only
            warn_listener_leak(emitter, event, count, limit, _depth_of_caller())


def _depth_of_caller() -> int:
    # How many frames above _register (its caller is frame 2) the code that
    # called on()/once() is: every frame of this module in between and one more.
    frame: Optional[types.FrameType] = sys._getframe(2)  # pyright: ignore[reportPrivateUsage]
    depth = 2
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
        depth += 1
    return depth


def _in_order(emitter: EmitterCore) -> List[Tuple[Any, _Handlers]]:
    # (event, handlers) pairs, in the order the events last got a first handler.
    in_order = sorted(_copy_values(emitter.__livekit_events__), key=lambda h: h.since)
    return [(handlers.event, handlers) for handlers in in_order]


def _handlers(emitter: EmitterCore, event: Any) -> _Handlers:
    registry: Dict[Any, _Handlers] = emitter.__livekit_events__
    handlers = registry.get(event)
    if handlers is None:
        handlers = registry.setdefault(event, _Handlers(event))
    return handlers


# -- copy and pickle (see _common) -------------------------------------------------------


def export_registrations(emitter: Any) -> List[Tuple[Any, bool, Any, bool]]:
    """``[(event, once, callback, weak), ...]``: every live registration, in order."""
    if not isinstance(emitter, EmitterCore):
        raise TypeError(f"expected an EmitterCore, got {type(emitter).__name__}")
    exported: List[Tuple[Any, bool, Any, bool]] = []
    for event, handlers in _in_order(emitter):
        for r in handlers.current():
            callback = r.listed()
            if r.active and callback is not None:
                once = r.once or type(r.callback) is OnceWrapper
                exported.append((event, once, callback, r.weak()))
    return exported


def import_registrations(emitter: Any, registrations: Any) -> None:
    """Register ``[(event, once, callback, weak), ...]`` in the emitter's
    registry, without going through a subclass's ``on`` (it restores, not
    registers)."""
    if not isinstance(emitter, EmitterCore):
        raise TypeError(f"expected an EmitterCore, got {type(emitter).__name__}")
    plain = _plain_on_off(emitter)
    for event, once, callback, weak in registrations:
        hash(event)
        if once and not plain:
            accepted, required = describe_callback(callback)
            limit = None if accepted == ALL_ARGUMENTS else accepted
            wrapper = OnceWrapper(emitter, event, callback, limit, required, weak)
            _register(emitter, event, Registration(wrapper, wrapper, limit, required, False))
        else:
            _register_callback(emitter, event, callback, weak, once)


def registry_state(emitter: EmitterCore, event: Any) -> Dict[str, int]:
    """For tests: ``{"live", "dead", "waiting", "retired"}`` of ``event``, as
    the compiled core reports them.  Here a removal takes the registration
    out of the dict at once; "dead" counts the removed registrations that the
    cached snapshot still holds (until the next emit rebuilds it)."""
    handlers = emitter.__livekit_events__.get(event)
    if handlers is None:
        return {"live": 0, "dead": 0, "waiting": 0, "retired": 0}
    dead = sum(1 for registration in handlers.snapshot[1] if not registration.active)
    return {"live": len(handlers.registrations), "dead": dead, "waiting": 0, "retired": 0}


def restore_emitter(emitter: EmitterCore, state: Any) -> None:
    """The state setter of ``__reduce_ex__``: instance state, then registrations."""
    instance, registrations = state
    restore_instance_state(emitter, instance)
    import_registrations(emitter, registrations)
