"""What the streams and ``TaskHandlers`` share: the emitter types, the
argument checks, and the bounded buffer that applies the overflow policies."""

from __future__ import annotations

import asyncio
import collections
import math
import numbers
import operator
from typing import (
    Any,
    Callable,
    Hashable,
    List,
    Literal,
    Optional,
    Protocol,
    Tuple,
    TypeVar,
    Union,
)

from .._emitter import EventEmitter

# The event-name type of a livekit_events emitter.  The bound is what any
# event already is (hashable); the Literal in it makes mypy keep a string
# literal argument as a literal when it solves E (otherwise it widens "a" to
# str, and EventEmitter[Literal["a", "b"]] would not match).
E = TypeVar("E", bound=Union[Hashable, Literal[""]])

#: What a bounded buffer or queue does when an emission arrives and it is full.
Overflow = Literal["raise", "drop_oldest", "drop_newest"]

OVERFLOW_POLICIES = ("raise", "drop_oldest", "drop_newest")

#: The default bound of ``iterate``'s buffer and of a handler's queue.
DEFAULT_MAXSIZE = 1024

#: The arguments of one emission, as the helpers return them.
EventArgs = Tuple[Any, ...]


class SupportsOnOff(Protocol):
    """Another emitter the helpers accept: ``on``/``off`` shaped as livekit's.

    ``livekit.rtc.EventEmitter`` (and so ``Room``, its only subclass in
    ``livekit.rtc``) matches.  For a ``livekit_events.EventEmitter[E]`` the helpers check the
    event name against ``E``; for these they accept any event: pyright cannot
    solve a literal event type through a protocol (it widens it to ``str``),
    so checking there would reject correct code.

    ``livekit_events.EventEmitter`` itself does not match (its ``on`` is
    overloaded: no single signature takes "a callback or None"), so a
    misspelled event on it can't slip through to this looser overload.
    """

    def on(self, event: Any, callback: Optional[Callable[..., Any]] = None, /) -> object: ...

    def off(self, event: Any, callback: Callable[..., Any], /) -> object: ...


#: What the helpers accept as an emitter (typed run-time duck typing: anything
#: with ``on(event, callback)`` and ``off(event, callback)`` works).
AnyEmitter = Union[EventEmitter[Any], SupportsOnOff]


def running_loop(helper: str) -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            f"{helper}() must be called from a coroutine running in an event loop"
        ) from None


def check_maxsize(maxsize: int) -> int:
    maxsize = operator.index(maxsize)  # TypeError for a float or None
    if maxsize < 1:
        raise ValueError(f"maxsize must be at least 1 (queues are bounded), not {maxsize}")
    return maxsize


def check_overflow(overflow: str) -> str:
    if overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}, not {overflow!r}")
    return overflow


def check_seconds(name: str, seconds: Optional[float]) -> Optional[float]:
    """``seconds`` as a float delay (``None``: no limit); checked before any registration."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real):
        raise TypeError(
            f"{name} must be a number of seconds or None, not {type(seconds).__name__!r}"
        )
    delay = float(seconds)
    if math.isnan(delay):
        raise ValueError(f"{name} must be a number of seconds or None, not nan")
    return None if delay == math.inf else delay


def off_quietly(emitter: AnyEmitter, event: Any, handler: Callable[..., Any]) -> None:
    # After a failed `on`: remove what a subclass's `on` may have registered
    # before it raised, without hiding the `on` error behind an `off` error.
    try:
        emitter.off(event, handler)
    except Exception:
        pass


#: ``BoundedBuffer.put``'s answers, unless it returns an evicted emission.
ADDED = "added"  # in the buffer
DROPPED = "dropped"  # full, ``drop_newest``: not added
REFUSED = "refused"  # full, ``raise``: not added, not counted in ``dropped``


class BoundedBuffer(collections.deque[EventArgs]):
    """Emissions waiting for the loop, at most ``maxsize``: a deque whose
    ``put`` applies the ``overflow`` policy when it is full.

    The caller holds its own lock around ``put`` and ``take_all``, and lets go
    of what they return only after releasing it: under the lock nothing is
    created or released (no finalizer, no garbage collection, no user code
    can run while it is held), which is why ``put`` answers with a constant
    or the evicted emission itself, never a new object.
    """

    __slots__ = ("dropped", "maxsize", "overflow")

    def __init__(self, maxsize: int, overflow: str) -> None:
        super().__init__()
        self.maxsize = maxsize
        self.overflow = overflow
        self.dropped = 0  # emissions the drop_oldest/drop_newest policy dropped

    def put(self, args: EventArgs) -> object:
        """Add ``args`` by the policy.  Returns ``ADDED``, ``DROPPED`` or
        ``REFUSED``; or, when ``drop_oldest`` pushed the oldest emission out
        to make room for ``args``, that emission."""
        if len(self) < self.maxsize:
            self.append(args)
            return ADDED
        if self.overflow == "drop_oldest":
            evicted = self.popleft()
            self.append(args)
            self.dropped += 1
            return evicted
        if self.overflow == "drop_newest":
            self.dropped += 1
            return DROPPED
        return REFUSED

    def take_all(self) -> List[EventArgs]:
        """Empty the buffer and return what it held."""
        items = list(self)
        self.clear()
        return items
