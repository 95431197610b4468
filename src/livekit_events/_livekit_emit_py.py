"""Pure-Python twin of ``_livekit_emit_c.pyx``: ``livekit_emit``, what
``livekit_events.install()`` puts on ``livekit.rtc.EventEmitter`` as ``emit``
when the pure core is active.  Same names, same behaviour; read the compiled
module's comment for what the dispatcher keeps of livekit's emit and what it
changes.  Its cold path, shared by both, is ``_livekit_common.py``.
"""

from __future__ import annotations

import time
import weakref as _lk_weakref
from typing import Any, Dict, List, Optional, Tuple

from ._common import register_slow_threshold_setter, report_slow_handler
from ._livekit_common import (
    LK_ALL,
    LK_LEGACY_ONCE,
    LK_SLOW,
    Entry,
    lk_call_slow,
    lk_describe_all,
    lk_legacy_once_pending,
    lk_log_failure,
)

__all__ = ("livekit_emit", "livekit_reset", "livekit_snapshot_count")

#: Slow-handler detection: the threshold in nanoseconds, 0 when off.
_slow_ns = 0


def _set_slow_threshold(threshold_ns: int) -> None:
    # From _common: 0, or 1 to 10**18 (a threshold is at most 10**9 seconds).
    global _slow_ns
    _slow_ns = threshold_ns


register_slow_threshold_setter(_set_slow_threshold)


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
    if _slow_ns:  # slow-handler detection: every call timed, one clock read each
        clock = time.perf_counter_ns
        started = clock()
        for callback, limit, kind in zip(keys, snapshot.limits, snapshot.kinds):
            failure = _lk_call(self, event, callback, args, limit, kind)
            now = clock()
            elapsed, started = now - started, now
            if failure is not None:
                lk_log_failure(event, failure)
                failure = None
                started = clock()  # the log's time is not the next handler's
            if elapsed > _slow_ns:
                report_slow_handler(event, callback, elapsed)
                started = clock()
        return
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
        failure = _lk_call(self, event, callback, args, limit, kind)
        if failure is not None:
            lk_log_failure(event, failure)
            failure = None


def _lk_call(
    self: Any, event: Any, callback: Any, args: Tuple[Any, ...], limit: Optional[int], kind: int
) -> Optional[Exception]:
    # One handler's turn in livekit_emit: the exception to log if it failed
    # (logged by the caller, after the handler's time is read).
    if kind == LK_SLOW:
        lk_call_slow(event, callback, args)
        return None
    if kind == LK_LEGACY_ONCE and not lk_legacy_once_pending(self, event, callback):
        return None
    try:
        callback(*args[:limit])
    except TypeError:
        raise
    except Exception as exc:
        return exc
    return None
