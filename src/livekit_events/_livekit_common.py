"""Cold path of the dispatcher that ``install()`` puts on ``livekit.rtc.EventEmitter``.

The hot loop is ``livekit_emit`` in ``_livekit_emit_c.pyx`` (pure twin:
``_livekit_emit_py.py``).  What runs here runs when an emitter's handlers for an
event have changed since its last emit (reading the new handlers' arity), when
a handler fails, or for the rare handlers whose arity can't be cached.

Everything here keeps livekit's own rules (livekit 1.2.x,
``livekit/rtc/event_emitter.py``), not this package's: the arity is what
``inspect.signature`` says (so ``__wrapped__`` is followed), a handler gets the
first k arguments where k counts its positional parameters (``*args``: all),
failures are logged with ``logger.exception(f"failed to emit event {event}")``
on livekit's logger, and ``TypeError`` propagates. The fixes (docs/livekit.md,
"What it fixes") are: the arity is read once per registration, not per emit; a
handler without a readable signature (``inspect.signature`` raises
``ValueError``) is called with every argument instead of being skipped with an
error logged; and a registration made by livekit's own ``once`` before
``install()`` is not fired again by an outer emit once a nested emit has fired
it.

No import of ``livekit`` here: livekit is optional, and its logger is looked
up when a handler fails.
"""

from __future__ import annotations

import inspect
import logging
import sys
import types
import weakref
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ._common import read_signature

#: ``accepted`` for a handler that gets every emitted argument.
LK_ALL = -1

# What the dispatcher does with a handler (``kind``).
#: Call it with its cached arity.
LK_CACHED = 0
#: Read its signature at its turn, on every emit, exactly as livekit does:
#: handlers that can't be weakly referenced (the cache must not keep them, or
#: what they reference, alive) and those whose signature read raised something
#: other than ``ValueError`` (livekit raises a ``TypeError`` / logs the
#: failure at that handler's turn, on every emit; so do we).
LK_SLOW = 1
#: A wrapper made by livekit's original ``once`` (registered before
#: ``install()``): skipped when it is no longer registered, i.e. has fired.
LK_LEGACY_ONCE = 2

#: The code object of livekit's ``once`` wrapper; set by ``install()``.
legacy_once_code: Optional[types.CodeType] = None

#: One handler's entry in a snapshot: (weak reference or None, accepted, kind).
Entry = Tuple[Optional["weakref.ReferenceType[Any]"], int, int]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _livekit_logger() -> logging.Logger:
    # The global that livekit's emit logs with, read at each failure as its
    # emit does (a test or an app may have replaced it).
    module = sys.modules.get("livekit.rtc.event_emitter")
    logger = getattr(module, "logger", None)
    return logger if logger is not None else logging.getLogger("livekit")


def lk_log_failure(event: Any, exc: BaseException) -> None:
    """livekit's failure record: ``logger.exception(f"failed to emit event {event}")``."""
    _livekit_logger().exception(f"failed to emit event {event}", exc_info=exc)


def _arity(signature: inspect.Signature) -> int:
    accepted = 0
    for parameter in signature.parameters.values():
        if parameter.kind == parameter.VAR_POSITIONAL:
            return LK_ALL
        if parameter.kind in _POSITIONAL:
            accepted += 1
    return accepted


def lk_describe(callback: Any) -> Entry:
    """Read a newly seen handler: its weak reference, arity and kind."""
    try:
        ref: Optional[weakref.ReferenceType[Any]] = weakref.ref(callback)
    except TypeError:
        return None, LK_ALL, LK_SLOW
    try:
        signature = read_signature(callback)
    except ValueError:
        accepted = LK_ALL  # no readable signature: called with every argument
    except Exception:
        return ref, LK_ALL, LK_SLOW  # livekit's failure, reproduced at its turn
    else:
        try:
            accepted = _arity(signature)
        except Exception:
            return ref, LK_ALL, LK_SLOW
    if (
        legacy_once_code is not None
        and type(callback) is types.FunctionType
        and callback.__code__ is legacy_once_code
    ):
        return ref, accepted, LK_LEGACY_ONCE
    return ref, accepted, LK_CACHED


def lk_describe_all(keys: Sequence[Any], previous: Sequence[Entry]) -> List[Entry]:
    """The entries for ``keys`` (an emitter's handlers of one event, in call
    order), reusing what ``previous`` (the last snapshot's entries) already
    read: a signature is read once per registration."""
    known: Dict[int, Tuple[Any, Entry]] = {}
    for entry in previous:
        ref = entry[0]
        if ref is not None:
            callback = ref()
            if callback is not None:
                known[id(callback)] = (callback, entry)
    entries: List[Entry] = []
    for key in keys:
        found = known.get(id(key))
        if found is not None and found[0] is key:
            entries.append(found[1])
        else:
            entries.append(lk_describe(key))
    return entries


def lk_call_slow(event: Any, callback: Any, args: Tuple[Any, ...]) -> None:
    """One handler's turn done the way livekit's emit does it, signature read
    included.  A ``TypeError`` or a ``BaseException`` propagates; any other
    exception is logged on livekit's logger."""
    try:
        try:
            signature: Optional[inspect.Signature] = read_signature(callback)
        except ValueError:
            signature = None  # no readable signature: every argument
        if signature is None:
            callback(*args)
        else:
            accepted = _arity(signature)
            callback(*(args if accepted == LK_ALL else args[:accepted]))
    except TypeError:
        raise
    except Exception:
        _livekit_logger().exception(f"failed to emit event {event}")


def lk_legacy_once_pending(emitter: Any, event: Any, callback: Any) -> bool:
    """Whether a wrapper made by livekit's original ``once`` is still
    registered: it removes itself before calling its callback, so one that
    is gone has fired (in a nested emit) and must not fire again."""
    events = emitter._events
    if event not in events:
        return False
    return callback in events[event]
