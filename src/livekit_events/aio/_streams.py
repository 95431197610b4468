"""The streams: ``wait_for`` awaits the next emission of an event, ``iterate``
gives an ``EventStream`` of its emissions."""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Coroutine,
    List,
    Optional,
    Tuple,
    overload,
)

from .._common import ALL_ARGUMENTS, arity_error, describe_callback
from .._emitter import EventEmitter
from ._shared import (
    DEFAULT_MAXSIZE,
    DROPPED,
    REFUSED,
    AnyEmitter,
    BoundedBuffer,
    E,
    EventArgs,
    Overflow,
    SupportsOnOff,
    check_maxsize,
    check_overflow,
    check_seconds,
    off_quietly,
    running_loop,
)

if TYPE_CHECKING:
    from typing_extensions import Self

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
    """The handler ``wait_for`` and ``iterate`` register: ``push(args)``.

    Takes ``*args``, so both emitters give it every argument; ``push`` runs
    inside ``emit``, in the emitting thread.  Weakly referenceable, so that
    ``install()``'s dispatcher reads its signature once.
    """

    __slots__ = ("__weakref__", "_push")

    def __init__(self, push: Callable[[EventArgs], None]) -> None:
        self._push = push

    def __call__(self, *args: Any) -> None:
        self._push(args)

    def __repr__(self) -> str:
        return f"<livekit_events.aio handler {self._push!r}>"




# ---------------------------------------------------------------------------
# wait_for


class _Waiter:
    """``wait_for``'s state: the first matching emission settles the future.

    ``push`` runs in the emitting thread; the future is only touched on the
    loop's thread.  After the first match (or the timeout) every emission
    returns at once, so a thread flooding the event hands the loop at most
    one callback.
    """

    __slots__ = ("future", "lock", "loop", "taken", "test", "thread")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        test: Optional[Callable[[EventArgs], bool]],
    ) -> None:
        self.loop = loop
        self.thread = threading.get_ident()
        self.test = test
        self.future: asyncio.Future[EventArgs] = loop.create_future()
        self.lock = threading.Lock()
        self.taken = False

    def push(self, args: EventArgs) -> None:
        if self.taken:
            return
        error: Optional[BaseException] = None
        if self.test is not None:
            try:
                if not self.test(args):
                    return
            except Exception as exc:
                error = exc
        with self.lock:
            if self.taken:
                return
            self.taken = True
        if threading.get_ident() == self.thread:
            self.settle(args, error)
            return
        try:
            self.loop.call_soon_threadsafe(self.settle, args, error)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def settle(self, args: EventArgs, error: Optional[BaseException]) -> None:
        if self.future.done():
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(args)

    def expire(self, message: str) -> None:
        with self.lock:
            if self.taken:  # a match from another thread is on its way
                return
            self.taken = True
        if not self.future.done():
            self.future.set_exception(asyncio.TimeoutError(message))


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
    as a handler would, and runs where the emission happens (inside ``emit``).
    If it raises, the wait ends with its exception.

    Returns the emitted arguments as a tuple (``()`` for ``emit(event)``).
    Every argument is checked before the handler is registered; the handler
    is registered before this coroutine first suspends, and removed when it
    returns, raises, times out or is cancelled.
    """
    loop = running_loop("wait_for")
    delay = check_seconds("timeout", timeout)
    waiter = _Waiter(loop, _predicate_test(event, predicate))
    relay = _Relay(waiter.push)
    try:
        emitter.on(event, relay)
    except BaseException:
        off_quietly(emitter, event, relay)
        raise
    timer: Optional[asyncio.TimerHandle] = None
    try:
        if delay is not None:
            matching = "matching " if predicate is not None else ""
            timer = loop.call_later(
                delay, waiter.expire, f"no {matching}{event!r} event within {timeout} seconds"
            )
        return await waiter.future
    finally:
        if timer is not None:
            timer.cancel()
        emitter.off(event, relay)


# ---------------------------------------------------------------------------
# iterate


class _Channel:
    """An ``EventStream``'s buffer.

    ``push`` runs in the emitting thread and applies the overflow policy
    there, under ``lock``, so the buffer never holds more than ``maxsize``
    emissions; an emission from another thread schedules at most one wake-up
    of the loop at a time.  The waiters (futures) are only touched on the
    loop's thread.  It holds no reference to its ``EventStream``, so the
    emitter (which holds the relay, which holds this) never keeps the stream
    alive.
    """

    __slots__ = (
        "buffer",
        "closed",
        "error",
        "event",
        "lock",
        "loop",
        "scheduled",
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
        self.test = test
        self.lock = threading.Lock()
        self.buffer = BoundedBuffer(maxsize, overflow)
        self.waiters: List[asyncio.Future[None]] = []
        self.error: Optional[BaseException] = None  # raised after the buffer drains
        self.closed = False  # no more input; iteration ends when drained
        self.scheduled = False  # a wake-up is on its way to the loop
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
        # A dropped emission and the error live past the lock (see
        # BoundedBuffer).
        with self.lock:
            if self.closed:
                return
            outcome = self.buffer.put(args)
        if outcome is REFUSED:
            self.fail(EventStreamOverflowError(self.event, self.buffer.maxsize))
        elif outcome is not DROPPED:
            del outcome  # an evicted emission is released here
            self.wake()

    def fail(self, exc: BaseException) -> None:
        # Stop listening now; the error is raised once the buffer is drained.
        with self.lock:
            if self.closed:
                return
            self.error = exc
            self.closed = True
        self.unregister()
        self.wake()

    def stop(self) -> None:
        # The handler is removed: no more input.  What is buffered (and a
        # pending error) is still delivered.
        with self.lock:
            self.closed = True
        self.wake()

    def discard(self) -> None:
        # close(): drop what is buffered; the iteration ends at once.
        with self.lock:
            self.closed = True
            self.error = None
            dropped = self.buffer.take_all()
        del dropped  # released outside the lock
        self.wake()

    def wake(self) -> None:
        """Wake the waiting consumers: at once on the loop's thread, else with
        one ``call_soon_threadsafe`` (none while one is already on its way)."""
        if threading.get_ident() == self.thread:
            self.wake_waiters()
            return
        with self.lock:
            if self.scheduled:
                return
            self.scheduled = True
        try:
            self.loop.call_soon_threadsafe(self.woken)
        except RuntimeError:  # the loop is closed: nobody can be waiting
            pass

    def woken(self) -> None:
        with self.lock:
            self.scheduled = False
        self.wake_waiters()

    def wake_waiters(self) -> None:
        if not self.waiters:
            return
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> EventArgs:
        while True:
            with self.lock:
                if self.buffer:
                    return self.buffer.popleft()
                error: Optional[BaseException] = None
                closed = self.closed
                if closed:
                    error, self.error = self.error, None
            if closed:
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
    channel.stop()


class EventStream:
    """Emissions of one event, as an async iterator of argument tuples.

    Made by ``iterate``; listening starts when it is created, so nothing
    emitted after that is missed.  Bounded: at most ``maxsize`` emissions wait
    in its buffer; on overflow it follows its ``overflow`` policy, applied
    inside ``emit`` (in the emitting thread):

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
        maxsize = check_maxsize(maxsize)
        check_overflow(overflow)
        loop = running_loop("iterate")
        channel = _Channel(loop, event, maxsize, overflow, _predicate_test(event, predicate))
        relay = _Relay(channel.push)
        try:
            emitter.on(event, relay)
        except BaseException:
            off_quietly(emitter, event, relay)
            raise
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
        self._channel.discard()

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
        return self._channel.buffer.dropped

    @property
    def maxsize(self) -> int:
        return self._channel.buffer.maxsize

    def qsize(self) -> int:
        """How many emissions are buffered, waiting to be iterated."""
        return len(self._channel.buffer)

    def __repr__(self) -> str:
        channel = self._channel
        buffer = channel.buffer
        state = "closed" if channel.closed else "open"
        return (
            f"<EventStream {channel.event!r} {state} {len(buffer)}/{buffer.maxsize} "
            f"overflow={buffer.overflow!r} dropped={buffer.dropped}>"
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
    ``predicate`` filters emissions (called as for ``wait_for``, inside
    ``emit``; if it raises, the iteration raises its exception after the
    buffered emissions).

    The handler is removed when the stream is closed: leaving an
    ``async with iterate(...) as stream:`` block, ``close()``/``aclose()``,
    an overflow or predicate error, or the stream being garbage-collected,
    which on CPython is as soon as an ``async for`` over ``iterate(...)`` is
    left by ``break``, ``return``, an exception or cancellation.
    """
    return EventStream(emitter, event, maxsize=maxsize, overflow=overflow, predicate=predicate)
