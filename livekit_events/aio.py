"""Async helpers: await the next emission of an event, or iterate emissions.

Both work with any emitter that has ``on(event, callback)`` and
``off(event, callback)``: ``livekit_events.EventEmitter`` and its subclasses,
and ``livekit.rtc.EventEmitter`` (``Room``, ``Participant``, ...) as well.
The handler they register is a plain synchronous callable taking ``*args``, so
it gets every emitted argument from either emitter.

``wait_for(emitter, event, timeout=None, predicate=None)``
    Coroutine: the arguments of the next (matching) emission, as a tuple.

``iterate(emitter, event, maxsize=1024, overflow="raise", predicate=None)``
    An ``EventStream``: an async iterator of argument tuples, bounded, and an
    async context manager.  It starts listening when it is created.

Threads: an emission from the thread that runs the event loop is handed over
at once; an emission from any other thread is passed to the loop with
``loop.call_soon_threadsafe`` (the predicate then runs on the loop's thread),
so emitting from a worker thread is safe.  Once the loop is closed, emissions
from other threads are dropped.

Cleanup: ``wait_for`` removes its handler when it returns, raises, times out
or is cancelled.  An ``EventStream`` removes its handler when it is closed:
by leaving its ``async with`` block, by ``close()``/``aclose()``, after it
raised an overflow or predicate error, or when the stream object is
garbage-collected, which on CPython happens as soon as an ``async for`` over
``iterate(...)`` is left (``break``, ``return``, an exception, cancellation).
"""

from __future__ import annotations

import asyncio
import collections
import operator
import threading
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Coroutine,
    Deque,
    Hashable,
    List,
    Literal,
    Optional,
    Protocol,
    Tuple,
    TypeVar,
    Union,
    overload,
)

from ._common import ALL_ARGUMENTS, arity_error, describe_callback
from ._emitter import EventEmitter

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = (
    "DEFAULT_MAXSIZE",
    "EventStream",
    "EventArgs",
    "EventStreamOverflowError",
    "AnyEmitter",
    "Overflow",
    "SupportsOnOff",
    "iterate",
    "wait_for",
)

# The event-name type of a livekit_events emitter.  The bound is what any
# event already is (hashable); the Literal in it makes mypy keep a string
# literal argument as a literal when it solves E (otherwise it widens "a" to
# str, and EventEmitter[Literal["a", "b"]] would not match).
E = TypeVar("E", bound=Union[Hashable, Literal[""]])

#: What an ``EventStream`` does when an emission arrives and its buffer is full.
Overflow = Literal["raise", "drop_oldest", "drop_newest"]

_OVERFLOW_POLICIES = ("raise", "drop_oldest", "drop_newest")

#: ``iterate``'s default buffer size.
DEFAULT_MAXSIZE = 1024

#: The arguments of one emission, as the helpers return them.
EventArgs = Tuple[Any, ...]


class SupportsOnOff(Protocol):
    """Another emitter the helpers accept: ``on``/``off`` shaped as livekit's.

    ``livekit.rtc.EventEmitter`` (and so ``Room``, ``Participant``, ...)
    matches.  For a ``livekit_events.EventEmitter[E]`` the helpers check the
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


class EventStreamOverflowError(RuntimeError):
    """Raised by an ``EventStream`` with ``overflow="raise"`` whose buffer was full.

    It is raised by the iteration after every emission buffered before the
    overflow has been delivered, so the consumer sees exactly what arrived up
    to the gap.  The stream stopped listening when it overflowed.
    """

    def __init__(self, event: object, maxsize: int) -> None:
        super().__init__(
            f"event stream for {event!r} overflowed: {maxsize} emissions were waiting "
            f"and another arrived; the consumer is too slow (raise maxsize, or pass "
            f"overflow='drop_oldest' or 'drop_newest' to drop emissions instead)"
        )
        self.event = event
        self.maxsize = maxsize

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (self.event, self.maxsize))


# ---------------------------------------------------------------------------
# Shared pieces


def _running_loop(helper: str) -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            f"{helper}() must be called from a coroutine running in an event loop"
        ) from None


def _predicate_test(
    event: object, predicate: Optional[Callable[..., object]]
) -> Optional[Callable[[EventArgs], bool]]:
    """``predicate`` as a test on an argument tuple, trimmed like a handler's.

    The predicate gets the leading emitted arguments it accepts, as a handler
    would (``lambda participant: ...`` works on an event emitted with three
    arguments).  Its signature is read once, here.
    """
    if predicate is None:
        return None
    try:
        # Validates as for a handler: TypeError for a non-callable or one with
        # a required keyword-only parameter, ValueError for an async one.
        accepted, required = describe_callback(predicate)
    except ValueError:
        raise TypeError(
            "predicate must be a synchronous callable (an async one would never be awaited)"
        ) from None
    limit = None if accepted == ALL_ARGUMENTS else accepted

    def test(args: EventArgs) -> bool:
        if len(args) < required:
            raise arity_error(event, predicate, required, len(args))
        return bool(predicate(*args[:limit]))

    return test


class _Relay:
    """The handler the helpers register: hands each emission to the loop.

    On the loop's thread it calls ``deliver`` at once (inside ``emit``); on
    any other thread it schedules ``deliver`` with ``call_soon_threadsafe``,
    so ``deliver`` (and the predicate) only ever run on the loop's thread.
    Takes ``*args``: both emitters give such a handler every argument.
    """

    __slots__ = ("_deliver", "_loop", "_thread")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, deliver: Callable[[EventArgs], None]
    ) -> None:
        self._loop = loop
        self._thread = threading.get_ident()  # created on the loop's thread
        self._deliver = deliver

    def __call__(self, *args: Any) -> None:
        if threading.get_ident() == self._thread:
            self._deliver(args)
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver, args)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def __repr__(self) -> str:
        return f"<livekit_events.aio handler {self._deliver!r}>"


# ---------------------------------------------------------------------------
# wait_for


@overload
async def wait_for(
    emitter: EventEmitter[E],
    event: E,
    *,
    timeout: Optional[float] = None,
    predicate: Optional[Callable[..., object]] = None,
) -> EventArgs: ...
@overload
async def wait_for(
    emitter: SupportsOnOff,
    event: Any,
    *,
    timeout: Optional[float] = None,
    predicate: Optional[Callable[..., object]] = None,
) -> EventArgs: ...
async def wait_for(
    emitter: AnyEmitter,
    event: Any,
    *,
    timeout: Optional[float] = None,
    predicate: Optional[Callable[..., object]] = None,
) -> EventArgs:
    """Wait for the next emission of ``event`` on ``emitter``; return its arguments.

    ``timeout``: seconds to wait at most; then ``asyncio.TimeoutError`` is
    raised (the builtin ``TimeoutError`` on Python 3.11+).  ``None`` waits
    forever.

    ``predicate``: only an emission for which ``predicate(*args)`` is true
    completes the wait; the predicate gets the leading arguments it accepts,
    as a handler would.  If it raises, the wait ends with its exception.

    Returns the emitted arguments as a tuple (``()`` for ``emit(event)``).
    The handler is registered before this coroutine first suspends and
    removed when it returns, raises, times out or is cancelled.
    """
    loop = _running_loop("wait_for")
    test = _predicate_test(event, predicate)
    future: asyncio.Future[EventArgs] = loop.create_future()

    def deliver(args: EventArgs) -> None:
        if future.done():
            return
        if test is not None:
            try:
                if not test(args):
                    return
            except Exception as exc:
                future.set_exception(exc)
                return
        future.set_result(args)

    def expire() -> None:
        if not future.done():
            matching = "matching " if predicate is not None else ""
            future.set_exception(
                asyncio.TimeoutError(f"no {matching}{event!r} event within {timeout} seconds")
            )

    relay = _Relay(loop, deliver)
    emitter.on(event, relay)
    timer = loop.call_later(timeout, expire) if timeout is not None else None
    try:
        return await future
    finally:
        if timer is not None:
            timer.cancel()
        emitter.off(event, relay)


# ---------------------------------------------------------------------------
# iterate


class _Channel:
    """An ``EventStream``'s buffer; touched only on the loop's thread.

    It holds no reference to its ``EventStream``, so the emitter (which holds
    the relay, which holds this) never keeps the stream alive.
    """

    __slots__ = (
        "buffer",
        "closed",
        "dropped",
        "error",
        "event",
        "loop",
        "maxsize",
        "overflow",
        "test",
        "thread",
        "unregister",
        "waiters",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        event: object,
        maxsize: int,
        overflow: str,
        test: Optional[Callable[[EventArgs], bool]],
    ) -> None:
        self.loop = loop
        self.thread = threading.get_ident()
        self.event = event
        self.maxsize = maxsize
        self.overflow = overflow
        self.test = test
        self.buffer: Deque[EventArgs] = collections.deque()
        self.waiters: List[asyncio.Future[None]] = []
        self.error: Optional[BaseException] = None  # raised after the buffer drains
        self.closed = False  # no more input; iteration ends when drained
        self.dropped = 0
        self.unregister: Callable[[], None] = lambda: None

    def push(self, args: EventArgs) -> None:
        if self.closed:
            return
        if self.test is not None:
            try:
                if not self.test(args):
                    return
            except Exception as exc:
                self.fail(exc)
                return
        if len(self.buffer) >= self.maxsize:
            if self.overflow == "drop_oldest":
                self.buffer.popleft()
                self.dropped += 1
            elif self.overflow == "drop_newest":
                self.dropped += 1
                return
            else:
                self.fail(EventStreamOverflowError(self.event, self.maxsize))
                return
        self.buffer.append(args)
        self.wake()

    def fail(self, exc: BaseException) -> None:
        # Stop listening now; the error is raised once the buffer is drained.
        self.error = exc
        self.closed = True
        self.unregister()
        self.wake()

    def stop(self) -> None:
        # The handler is removed: no more input.  What is buffered (and a
        # pending error) is still delivered.
        self.closed = True
        self.wake()

    def discard(self) -> None:
        # close(): drop what is buffered; the iteration ends at once.
        self.closed = True
        self.error = None
        self.buffer.clear()
        self.wake()

    def on_loop(self, action: Callable[[], None]) -> None:
        # Buffer and futures are only touched on the loop's thread.
        if threading.get_ident() == self.thread:
            action()
            return
        try:
            self.loop.call_soon_threadsafe(action)
        except RuntimeError:  # the loop is closed: nobody can be waiting
            pass

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> EventArgs:
        while True:
            if self.buffer:
                return self.buffer.popleft()
            if self.closed:
                error, self.error = self.error, None
                if error is not None:
                    raise error
                raise StopAsyncIteration
            waiter: asyncio.Future[None] = self.loop.create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self.waiters:  # cancelled before being woken
                    self.waiters.remove(waiter)


def _release(emitter: AnyEmitter, event: Any, relay: _Relay, channel: _Channel) -> None:
    # An EventStream's finalizer: remove the handler, end the input.
    emitter.off(event, relay)
    channel.on_loop(channel.stop)


class EventStream:
    """Emissions of one event, as an async iterator of argument tuples.

    Made by ``iterate``; listening starts when it is created, so nothing
    emitted after that is missed.  Bounded: at most ``maxsize`` emissions wait
    in its buffer; on overflow it follows its ``overflow`` policy:

    - ``"raise"`` (default): stop listening, deliver what was buffered, then
      raise ``EventStreamOverflowError``.  Nothing is lost silently.
    - ``"drop_oldest"``: drop the oldest waiting emission to make room (keeps
      the latest ``maxsize``); ``dropped`` counts them.
    - ``"drop_newest"``: drop the arriving emission; ``dropped`` counts them.

    Also an async context manager: ``async with iterate(...) as stream:``
    closes the stream, and removes its handler, when the block is left.
    """

    __slots__ = ("__weakref__", "_channel", "_finalizer")

    def __init__(
        self,
        emitter: AnyEmitter,
        event: Any,
        *,
        maxsize: int = DEFAULT_MAXSIZE,
        overflow: Overflow = "raise",
        predicate: Optional[Callable[..., object]] = None,
    ) -> None:
        maxsize = operator.index(maxsize)  # TypeError for a float or None
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1 (the stream is bounded), not {maxsize}")
        if overflow not in _OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {_OVERFLOW_POLICIES}, not {overflow!r}")
        loop = _running_loop("iterate")
        channel = _Channel(loop, event, maxsize, overflow, _predicate_test(event, predicate))
        relay = _Relay(loop, channel.push)
        emitter.on(event, relay)
        self._channel = channel
        # Removes the handler, once: on close(), on overflow or predicate
        # error, or when this object is garbage-collected (then a pending
        # __anext__ still ends).  It holds the emitter, the relay and the
        # channel, never this object.
        self._finalizer = weakref.finalize(self, _release, emitter, event, relay, channel)
        self._finalizer.atexit = False
        channel.unregister = self._finalizer

    def __aiter__(self) -> Self:
        return self

    def __anext__(self) -> Coroutine[Any, Any, EventArgs]:
        """The next emission's arguments; waits for one if none is buffered."""
        # Not a coroutine function itself: when a pending call is cancelled,
        # the traceback must not hold a frame whose locals keep this stream
        # alive, or leaving an ``async for`` by cancellation would not free
        # the stream (and remove its handler) at once.
        return self._channel.get()

    def close(self) -> None:
        """Stop listening (remove the handler) and end the iteration.

        Emissions still buffered are dropped; a pending ``__anext__`` ends with
        ``StopAsyncIteration``.  Idempotent; safe from any thread.
        """
        self._finalizer()
        self._channel.on_loop(self._channel.discard)

    async def aclose(self) -> None:
        """``close()``, for ``contextlib.aclosing`` and similar."""
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once the stream stopped listening (closed, overflowed, or failed)."""
        return self._channel.closed

    @property
    def dropped(self) -> int:
        """How many emissions the ``drop_oldest``/``drop_newest`` policy dropped."""
        return self._channel.dropped

    @property
    def maxsize(self) -> int:
        return self._channel.maxsize

    def qsize(self) -> int:
        """How many emissions are buffered, waiting to be iterated."""
        return len(self._channel.buffer)

    def __repr__(self) -> str:
        channel = self._channel
        state = "closed" if channel.closed else "open"
        return (
            f"<EventStream {channel.event!r} {state} {len(channel.buffer)}/{channel.maxsize} "
            f"overflow={channel.overflow!r} dropped={channel.dropped}>"
        )


@overload
def iterate(
    emitter: EventEmitter[E],
    event: E,
    *,
    maxsize: int = DEFAULT_MAXSIZE,
    overflow: Overflow = "raise",
    predicate: Optional[Callable[..., object]] = None,
) -> EventStream: ...
@overload
def iterate(
    emitter: SupportsOnOff,
    event: Any,
    *,
    maxsize: int = DEFAULT_MAXSIZE,
    overflow: Overflow = "raise",
    predicate: Optional[Callable[..., object]] = None,
) -> EventStream: ...
def iterate(
    emitter: AnyEmitter,
    event: Any,
    *,
    maxsize: int = DEFAULT_MAXSIZE,
    overflow: Overflow = "raise",
    predicate: Optional[Callable[..., object]] = None,
) -> EventStream:
    """Iterate the emissions of ``event`` on ``emitter`` as argument tuples.

    ``async for (packet,) in iterate(room, "data_received"): ...``

    Call it from a coroutine: it registers its handler at once, so nothing
    emitted after the call is missed.  ``maxsize`` bounds the buffer and
    ``overflow`` says what happens when it is full (see ``EventStream``).
    ``predicate`` filters emissions (called as for ``wait_for``; if it raises,
    the iteration raises its exception after the buffered emissions).

    The handler is removed when the stream is closed: leaving an
    ``async with iterate(...) as stream:`` block, ``close()``/``aclose()``,
    an overflow or predicate error, or the stream being garbage-collected,
    which on CPython is as soon as an ``async for`` over ``iterate(...)`` is
    left by ``break``, ``return``, an exception or cancellation.
    """
    return EventStream(emitter, event, maxsize=maxsize, overflow=overflow, predicate=predicate)
