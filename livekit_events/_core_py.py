"""Pure-Python twin of ``_core_c.pyx``: the same names, the same behaviour.

Used when the extension was not built or ``LIVEKIT_EVENTS_NO_EXTENSIONS`` is
set.  Keep the two files in step: every test runs against both.

Data model (shared with the compiled core): ``_handlers`` maps an event to a
non-empty tuple of ``Registration`` objects in call order.  Changes replace
the tuple (copy-on-write) under ``registry_lock``, so ``emit`` iterates a
snapshot without copying.  A removed registration is also marked inactive, so
an emit already walking an older tuple skips it (immediate removal).
"""

from __future__ import annotations

import inspect
import keyword
import sys
import types
from typing import Any, Dict, List, Optional, Tuple

from ._common import (
    ALL_ARGUMENTS,
    OnceRequest,
    arity_error,
    log_handler_failure,
    registry_lock,
)
from ._common import describe_callback as _describe_slow

__all__ = ("EmitterCore", "Registration", "describe_callback")


# -- reading a callback's arity ------------------------------------------------------
#
# Twin of the fast path in _core_c.pyx (read its comment): plain functions and
# their bound methods are read from __code__, __defaults__ and __kwdefaults__;
# anything that could make inspect.signature or the async checks answer
# differently goes to the slow path, _common.describe_callback.

_FUNCTION = types.FunctionType
_METHOD = types.MethodType
_EMPTY = inspect.Parameter.empty
_NOT_PLAIN = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR
_CO_VARARGS = inspect.CO_VARARGS
_CO_VARKEYWORDS = inspect.CO_VARKEYWORDS
_KEYWORDS = frozenset(keyword.kwlist)  # what inspect.Parameter rejects (keyword.iskeyword)
# 3.14+: inspect.signature evaluates lazy annotations (which may raise).  Pure
# Python can't tell whether they were evaluated already: the slow path decides.
_LAZY_ANNOTATIONS = sys.version_info >= (3, 14)


def describe_callback(callback: Any) -> Tuple[int, int]:
    """``_common.describe_callback(callback)``, read directly from ``__code__``
    for plain functions and their bound methods (the common callbacks)."""
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
            if default is _EMPTY:
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
            if kwdefaults.get(name, _EMPTY) is _EMPTY:
                return _describe_slow(callback)
    if bound and required:
        required -= 1  # self was the first required parameter
    return (ALL_ARGUMENTS if flags & _CO_VARARGS else argcount - bound), required


class Registration:
    """One ``on`` or ``once`` registration of a callback for an event."""

    __slots__ = ("callback", "limit", "required", "hash", "once", "active")

    def __init__(self, callback: Any, accepted: int, required: int, once: bool) -> None:
        self.callback = callback
        # A slice bound: args[:None] is args itself, without a copy.
        self.limit: Optional[int] = None if accepted == ALL_ARGUMENTS else accepted
        self.required = required
        self.hash = hash(callback)
        self.once = once
        self.active = True

    def matches(self, callback: Any, callback_hash: int) -> bool:
        # Dict-key equality: same hash, then identity or ==.
        return self.hash == callback_hash and (
            self.callback is callback or self.callback == callback
        )


# registry_lock's methods, looked up once (cheaper than `with` per call).
_lock_acquire = registry_lock.acquire
_lock_release = registry_lock.release


def _replace_entries(
    handlers: Dict[Any, Tuple[Registration, ...]],
    event: Any,
    entries: Tuple[Registration, ...],
) -> None:
    # Caller holds registry_lock.  Empty events are dropped so that
    # event_names() lists only events with handlers.
    if entries:
        handlers[event] = entries
    else:
        handlers.pop(event, None)


class EmitterCore:
    """Registration storage and ``emit``; the public class adds the API."""

    __slots__ = ("_handlers",)

    _handlers: Dict[Any, Tuple[Registration, ...]]

    def __new__(cls, *args: Any, **kwargs: Any) -> "EmitterCore":
        self = object.__new__(cls)
        self._handlers = {}
        return self

    def __init__(self) -> None:
        if self._handlers:
            self.remove_all_listeners()

    def emit(self, event: Any, *args: Any) -> None:
        """Call every handler of ``event`` with the leading ``args`` it accepts."""
        entries = self._handlers.get(event)
        if entries is None:
            return
        given = len(args)
        for registration in entries:
            if not registration.active:
                continue  # removed while this emit runs
            if registration.once and not self._claim_once(event, registration):
                continue
            if given < registration.required:
                raise arity_error(event, registration.callback, registration.required, given)
            try:
                registration.callback(*args[: registration.limit])
            except Exception as exc:
                log_handler_failure(event, exc)

    def _claim_once(self, event: Any, registration: Registration) -> bool:
        # The check and the clear must be one step, or two threads (or a
        # nested emit) could both fire it.
        with registry_lock:
            if not registration.active:
                return False
            registration.active = False
            entries = self._handlers.get(event, ())
            _replace_entries(
                self._handlers, event, tuple(r for r in entries if r is not registration)
            )
            return True

    def _on(self, event: Any, callback: Any) -> Any:
        # on(event, callback) after the shim: check the event, read the
        # callback's arity (or unwrap once's request), register; return callback.
        hash(event)
        if type(callback) is OnceRequest:
            self._add(event, callback.__wrapped__, callback.accepted, callback.required, True)
        else:
            accepted, required = describe_callback(callback)
            self._add(event, callback, accepted, required, False)
        return callback

    def _describe(self, callback: Any) -> Tuple[int, int]:
        return describe_callback(callback)

    def _add(self, event: Any, callback: Any, accepted: int, required: int, once: bool) -> None:
        registration = Registration(callback, accepted, required, once)
        callback_hash = registration.hash
        _lock_acquire()
        try:
            entries = self._handlers.get(event, ())
            if not once:
                for existing in entries:
                    if (
                        not existing.once
                        and existing.hash == callback_hash
                        and (existing.callback is callback or existing.callback == callback)
                    ):
                        return  # already registered: keeps its first position
            self._handlers[event] = entries + (registration,)
        finally:
            _lock_release()

    def off(self, event: Any, callback: Any) -> None:
        """Remove every registration of ``callback`` for ``event`` (``on`` and
        pending ``once`` ones).  Unknown events or callbacks are ignored."""
        _lock_acquire()
        try:
            entries = self._handlers.get(event)
            if entries is None:
                return
            callback_hash = hash(callback)
            # Every match is found before any is touched (== may raise).
            removed: List[Registration] = []
            for r in entries:
                if r.hash == callback_hash and (r.callback is callback or r.callback == callback):
                    removed.append(r)
            if not removed:
                return
            kept: List[Registration] = []
            for r in entries:
                if r in removed:  # identity first: Registration has no __eq__
                    r.active = False
                elif r.active:
                    kept.append(r)
            _replace_entries(self._handlers, event, tuple(kept))
        finally:
            _lock_release()


    def remove_all_listeners(self, event: Any = None) -> None:
        """Remove every handler of ``event``, or of every event if it is None."""
        with registry_lock:
            if event is None:
                dropped = list(self._handlers.values())
                self._handlers.clear()
            else:
                entries = self._handlers.pop(event, None)
                dropped = [entries] if entries is not None else []
            for entries in dropped:
                for registration in entries:
                    registration.active = False

    def listeners(self, event: Any) -> List[Any]:
        """The callbacks of ``event`` as registered, in call order."""
        return [r.callback for r in self._handlers.get(event, ()) if r.active]

    def listener_count(self, event: Any) -> int:
        """How many registrations ``event`` has (each pending ``once`` counts)."""
        return sum(1 for r in self._handlers.get(event, ()) if r.active)

    def event_names(self) -> List[Any]:
        """The events that have at least one handler, in first-registration order."""
        return [e for e, entries in list(self._handlers.items()) if any(r.active for r in entries)]

    @property
    def _events(self) -> Dict[Any, List[Any]]:
        """livekit compatibility: a fresh ``{event: [callbacks]}`` mapping."""
        return {
            e: [r.callback for r in entries if r.active]
            for e, entries in list(self._handlers.items())
        }


# ===========================================================================
# livekit.rtc acceleration (issue 7).  Owned by livekit_events.install()
# (_livekit.py); twin of the same section at the end of _core_c.pyx (read its
# comment); cold path: _livekit_common.py.  Nothing above this line uses it.
# ===========================================================================

import weakref as _lk_weakref  # noqa: E402 - this section is appended

from ._livekit_common import (  # noqa: E402
    LK_ALL,
    LK_LEGACY_ONCE,
    LK_SLOW,
    Entry,
    lk_call_slow,
    lk_describe_all,
    lk_legacy_once_pending,
    lk_log_failure,
)


def _lk_always() -> bool:
    return True


class _LivekitSnapshot:
    """One emitter's handlers of one event as its last emit saw them."""

    __slots__ = ("entries", "ids", "alive", "limits", "kinds", "simple")

    def __init__(self, keys: Tuple[Any, ...], entries: List[Entry]) -> None:
        self.entries = entries
        self.ids = [id(key) for key in keys]
        # Called to check each handler is still the object seen (a dead weak
        # reference gives None).  Without a weak reference only the id is
        # compared: harmless, such a handler's arity is read at every emit.
        self.alive = [_lk_always if entry[0] is None else entry[0] for entry in entries]
        # A slice bound: args[:None] is every argument.
        self.limits = [None if entry[1] == LK_ALL else entry[1] for entry in entries]
        self.kinds = [entry[2] for entry in entries]
        self.simple = not any(self.kinds)  # every handler has a cached arity

    def matches(self, keys: List[Any]) -> bool:
        # Same ids and every referent alive: the same objects.
        return list(map(id, keys)) == self.ids and None not in [ref() for ref in self.alive]


# id(emitter) -> (weak reference to it, {event: _LivekitSnapshot})
_lk_emitters: Dict[int, Tuple[Any, Dict[Any, _LivekitSnapshot]]] = {}


def _lk_forget(key: int) -> Any:
    def forget(ref: Any) -> None:
        global _lk_last
        if _lk_last[0] is ref:
            _lk_last = (_lk_always, {})
        cache = _lk_emitters.get(key)
        if cache is not None and cache[0] is ref:
            del _lk_emitters[key]

    return forget


#: (weak reference, snapshots) of the emitter that emitted last.
_lk_last: Tuple[Any, Dict[Any, _LivekitSnapshot]] = (_lk_always, {})


def _lk_cache_for(emitter: Any) -> Optional[Dict[Any, _LivekitSnapshot]]:
    global _lk_last
    last = _lk_last
    if last[0]() is emitter:
        return last[1]
    key = id(emitter)
    cache = _lk_emitters.get(key)
    if cache is not None and cache[0]() is emitter:
        _lk_last = cache
        return cache[1]
    try:
        ref = _lk_weakref.ref(emitter, _lk_forget(key))
    except TypeError:
        return None  # can't be weakly referenced: no cache, arity read per emit
    snapshots: Dict[Any, _LivekitSnapshot] = {}
    _lk_emitters[key] = _lk_last = (ref, snapshots)
    return snapshots


def livekit_reset() -> None:
    """Forget every snapshot (``uninstall()`` calls it)."""
    global _lk_last
    _lk_last = (_lk_always, {})
    _lk_emitters.clear()


def livekit_snapshot_count() -> int:
    """How many emitters have snapshots (tests: nothing is kept alive)."""
    return len(_lk_emitters)


def livekit_emit(self: Any, event: Any, *args: Any) -> None:
    """Trigger all callbacks associated with the given event.

    livekit_events' dispatcher for ``livekit.rtc.EventEmitter`` (installed by
    ``livekit_events.install()``): livekit's semantics, each handler's
    signature read once per registration instead of on every emit.
    """
    events = self._events
    if event not in events:
        return
    keys = list(events[event])  # livekit's snapshot
    cache = _lk_cache_for(self)
    snapshot = cache.get(event) if cache is not None else None
    if snapshot is None or not snapshot.matches(keys):
        current = tuple(keys)
        snapshot = _LivekitSnapshot(
            current, lk_describe_all(current, snapshot.entries if snapshot is not None else ())
        )
        if cache is not None:
            cache[event] = snapshot
    if snapshot.simple:
        for callback, limit in zip(keys, snapshot.limits):
            try:
                callback(*args[:limit])
            except TypeError:
                raise
            except Exception as exc:
                lk_log_failure(event, exc)
        return
    for callback, limit, kind in zip(keys, snapshot.limits, snapshot.kinds):
        if kind == LK_SLOW:
            lk_call_slow(event, callback, args)
            continue
        if kind == LK_LEGACY_ONCE and not lk_legacy_once_pending(self, event, callback):
            continue
        try:
            callback(*args[:limit])
        except TypeError:
            raise
        except Exception as exc:
            lk_log_failure(event, exc)
