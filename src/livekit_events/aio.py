"""Async helpers: await an emission, iterate emissions, run async handlers.

All of them work with any emitter that has ``on(event, callback)`` and
``off(event, callback)``: ``livekit_events.EventEmitter`` and its subclasses,
and ``livekit.rtc.EventEmitter`` (``Room``, its only subclass in
``livekit.rtc``) as well, with or without ``livekit_events.install()``.  What they register on the
emitter is a plain synchronous callable.

``wait_for(emitter, event, timeout=None, predicate=None)``
    Coroutine: the arguments of the next (matching) emission, as a tuple.

``iterate(emitter, event, maxsize=1024, overflow="raise", predicate=None)``
    An ``EventStream``: an async iterator of argument tuples, bounded, and an
    async context manager.  It starts listening when it is created.

``TaskHandlers(emitter, mode="concurrent", ...)``
    Registers async handlers and owns the tasks that run them: each emission
    schedules the handler on the owner's event loop, ``concurrent`` (a task per
    emission, optionally limited), ``serial`` (one at a time, in emission
    order) or ``latest`` (a new emission cancels the running call).  Bounded
    queues, failures logged, and nothing left pending when it is closed.

Threads: an emission may come from any thread.  A predicate runs where the
emission happens (inside ``emit``, in the emitting thread, as a handler
would), and so does each helper's overflow policy: an emission from another
thread is added to a bounded buffer there, and the loop is handed at most one
callback at a time per stream or handler, however fast the thread emits.
Once the loop is closed, emissions from other threads are dropped.  A
``TaskHandlers`` starts a task only on its loop's thread while that loop runs,
and never once the loop's tasks have been cancelled at its end.

Cleanup: ``wait_for`` removes its handler when it returns, raises, times out
or is cancelled.  An ``EventStream`` removes its handler when it is closed:
by leaving its ``async with`` block, by ``close()``/``aclose()``, after it
raised an overflow or predicate error, or when the stream object is
garbage-collected, which on CPython happens as soon as an ``async for`` over
``iterate(...)`` is left (``break``, ``return``, an exception, cancellation).
A ``TaskHandlers`` removes its handlers, and cancels (or drains) their work,
when its ``async with`` block is left, on ``close()``/``aclose()``, or when it
is garbage-collected.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import math
import numbers
import operator
import sys
import threading
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Coroutine,
    Deque,
    Dict,
    Generic,
    Hashable,
    List,
    Literal,
    Optional,
    Protocol,
    Set,
    Tuple,
    TypeVar,
    Union,
    overload,
)

from ._common import (
    ALL_ARGUMENTS,
    _callable_layers,  # pyright: ignore[reportPrivateUsage]
    _is_async_callable,  # pyright: ignore[reportPrivateUsage]
    _safe_repr,  # pyright: ignore[reportPrivateUsage]
    arity_error,
    describe_callback,
    log_handler_failure,
    logger,
    read_arity,
)
from ._emitter import EventEmitter

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = (
    "DEFAULT_MAXSIZE",
    "EventStream",
    "EventArgs",
    "EventStreamOverflowError",
    "AnyEmitter",
    "ExitPolicy",
    "HandlerOverflowError",
    "Mode",
    "Overflow",
    "SupportsOnOff",
    "TaskHandlers",
    "iterate",
    "wait_for",
)

# The event-name type of a livekit_events emitter.  The bound is what any
# event already is (hashable); the Literal in it makes mypy keep a string
# literal argument as a literal when it solves E (otherwise it widens "a" to
# str, and EventEmitter[Literal["a", "b"]] would not match).
E = TypeVar("E", bound=Union[Hashable, Literal[""]])

# E again, for TaskHandlers.__init__'s self type (a class-scoped type
# variable can't appear there).
_E = TypeVar("_E", bound=Union[Hashable, Literal[""]])

#: An async handler: a callable returning an awaitable (``async def``).
AsyncHandlerT = TypeVar("AsyncHandlerT", bound=Callable[..., Awaitable[Any]])

#: What a bounded buffer or queue does when an emission arrives and it is full.
Overflow = Literal["raise", "drop_oldest", "drop_newest"]

_OVERFLOW_POLICIES = ("raise", "drop_oldest", "drop_newest")

#: How a ``TaskHandlers`` runs a handler's calls.
Mode = Literal["concurrent", "serial", "latest"]

_MODES = ("concurrent", "serial", "latest")

#: What leaving a ``TaskHandlers`` block normally does with pending work.
ExitPolicy = Literal["cancel", "drain"]

_EXIT_POLICIES = ("cancel", "drain")

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


class HandlerOverflowError(RuntimeError):
    """Raised inside ``emit`` when an async handler's queue is full (``overflow="raise"``).

    The emission is not run by that handler.  The emitter treats it as any
    handler failure: ``livekit_events.EventEmitter`` and livekit's class log
    it (``failed to emit event ...``) and call the remaining handlers.  The
    handler stays registered.
    """

    def __init__(self, event: object, handler: str, maxsize: int) -> None:
        super().__init__(
            f"async handler {handler} for {event!r}: {maxsize} emissions were already "
            f"waiting; this one is not run (the handler is too slow: raise maxsize or the "
            f"concurrency limit, or pass overflow='drop_oldest' or 'drop_newest')"
        )
        self.event = event
        self.handler = handler
        self.maxsize = maxsize

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (self.event, self.handler, self.maxsize))


# ---------------------------------------------------------------------------
# Shared pieces


def _running_loop(helper: str) -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            f"{helper}() must be called from a coroutine running in an event loop"
        ) from None


def _check_maxsize(maxsize: int) -> int:
    maxsize = operator.index(maxsize)  # TypeError for a float or None
    if maxsize < 1:
        raise ValueError(f"maxsize must be at least 1 (queues are bounded), not {maxsize}")
    return maxsize


def _check_overflow(overflow: str) -> str:
    if overflow not in _OVERFLOW_POLICIES:
        raise ValueError(f"overflow must be one of {_OVERFLOW_POLICIES}, not {overflow!r}")
    return overflow


def _check_seconds(name: str, seconds: Optional[float]) -> Optional[float]:
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


def _off_quietly(emitter: AnyEmitter, event: Any, handler: Callable[..., Any]) -> None:
    # After a failed `on`: remove what a subclass's `on` may have registered
    # before it raised, without hiding the `on` error behind an `off` error.
    try:
        emitter.off(event, handler)
    except Exception:
        pass


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
    loop = _running_loop("wait_for")
    delay = _check_seconds("timeout", timeout)
    waiter = _Waiter(loop, _predicate_test(event, predicate))
    relay = _Relay(waiter.push)
    try:
        emitter.on(event, relay)
    except BaseException:
        _off_quietly(emitter, event, relay)
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
        "dropped",
        "error",
        "event",
        "lock",
        "loop",
        "maxsize",
        "overflow",
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
        self.maxsize = maxsize
        self.overflow = overflow
        self.test = test
        self.lock = threading.Lock()
        self.buffer: Deque[EventArgs] = collections.deque()
        self.waiters: List[asyncio.Future[None]] = []
        self.error: Optional[BaseException] = None  # raised after the buffer drains
        self.closed = False  # no more input; iteration ends when drained
        self.scheduled = False  # a wake-up is on its way to the loop
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
        # Under the lock nothing is created or released (no finalizer, no
        # garbage collection, no user code can run while it is held): the
        # dropped emission and the error live past it.
        dropped: Optional[EventArgs] = None
        with self.lock:
            if self.closed:
                return
            buffer = self.buffer
            if len(buffer) < self.maxsize:
                buffer.append(args)
                overflowed = False
            elif self.overflow == "drop_oldest":
                dropped = buffer.popleft()
                buffer.append(args)
                self.dropped += 1
                overflowed = False
            elif self.overflow == "drop_newest":
                self.dropped += 1
                return
            else:
                overflowed = True
        del dropped
        if overflowed:
            self.fail(EventStreamOverflowError(self.event, self.maxsize))
            return
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
            dropped = _take_all(self.buffer)
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


def _take_all(queue: Deque[EventArgs]) -> List[EventArgs]:
    """Empty ``queue`` (under its lock) and return what it held, so that the
    caller releases it, and runs any finalizer, after the lock."""
    items = list(queue)
    queue.clear()
    return items


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
        maxsize = _check_maxsize(maxsize)
        _check_overflow(overflow)
        loop = _running_loop("iterate")
        channel = _Channel(loop, event, maxsize, overflow, _predicate_test(event, predicate))
        relay = _Relay(channel.push)
        try:
            emitter.on(event, relay)
        except BaseException:
            _off_quietly(emitter, event, relay)
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


# ---------------------------------------------------------------------------
# TaskHandlers


def _is_async_generator_function(callback: Any) -> bool:
    """An async generator function, also behind ``partial``, a bound method or
    ``__call__`` (``_is_async_callable`` accepts those too, but they can't be
    awaited)."""
    return any(inspect.isasyncgenfunction(layer) for layer in _callable_layers(callback))


def _describe(callback: object) -> str:
    name = getattr(callback, "__qualname__", None) or getattr(callback, "__name__", None)
    if isinstance(name, str):
        return name
    try:
        return repr(callback)
    except Exception:
        return f"<{type(callback).__qualname__} object>"


def _relay_signature(accepted: int, required: int) -> inspect.Signature:
    """The signature an emitter reads on a handler's relay: the async handler's
    positional arity, so the emitter trims the arguments by its own rules."""
    positional = inspect.Parameter.POSITIONAL_ONLY
    count = required if accepted == ALL_ARGUMENTS else accepted
    parameters = [
        inspect.Parameter(
            f"arg{i}", positional, default=inspect.Parameter.empty if i < required else None
        )
        for i in range(count)
    ]
    if accepted == ALL_ARGUMENTS:
        parameters.append(inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL))
    return inspect.Signature(parameters)


if sys.version_info >= (3, 11):

    def _uncancel(task: asyncio.Task[Any]) -> int:
        return task.uncancel()

    def _cancelling(task: asyncio.Task[Any]) -> int:
        return task.cancelling()

else:  # no cancellation counts before 3.11

    def _uncancel(task: asyncio.Task[Any]) -> int:
        return 0

    def _cancelling(task: asyncio.Task[Any]) -> int:
        return 0


def _reraise(exc: BaseException) -> None:
    raise exc


def _current_task() -> Optional[asyncio.Task[Any]]:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no loop running in this thread
        return None


# The loop running in this thread, or None (no exception: it is on the path
# of every emission).
_get_running_loop = asyncio.events._get_running_loop


class _Registration:
    """One async handler of a ``TaskHandlers``: its queue and its tasks.

    ``push`` is called by the relay, inside ``emit``, in the emitting thread.
    An emission waits in ``pending`` (bounded by ``maxsize``, the overflow
    policy applied right there, under ``lock``) until the loop runs it:

    - ``concurrent`` without a limit: on the loop's thread a task is started
      at once, one per emission (``pending`` only holds emissions from other
      threads, until the loop takes them);
    - ``serial`` and ``concurrent`` with a limit: up to ``limit`` worker
      tasks take the emissions from ``pending`` in order, one call after the
      other (as a hand-written queue consumer would);
    - ``latest``: ``pending`` keeps the newest emission only; one task at a
      time runs a call, and a newer emission cancels it.

    Another thread hands the loop at most one ``pump`` callback at a time,
    and so does the loop's own thread while the loop is not running.  Tasks
    and their bookkeeping live on the loop's thread, and a task is only ever
    started by ``_start`` (the direct relay inlines the same test): on the
    thread running the loop, and while ``cancelled`` is false, which it is
    from the moment the owner's watch is cancelled (the loop's end).
    """

    __slots__ = (
        "accepting",
        "callback",
        "cancel_requested",
        "cancelled",
        "current",
        "direct",
        "dropped",
        "event",
        "limit",
        "lock",
        "loop",
        "maxsize",
        "mode",
        "name",
        "overflow",
        "owner",
        "pending",
        "relay",
        "scheduled",
        "started",
        "tasks",
    )

    def __init__(
        self,
        owner: _Owner,
        event: Any,
        callback: Callable[..., Awaitable[Any]],
        mode: str,
        limit: Optional[int],
        maxsize: int,
        overflow: str,
        accepted: int,
        required: int,
    ) -> None:
        assert owner.loop is not None
        self.owner = owner
        self.loop: asyncio.AbstractEventLoop = owner.loop
        self.event = event
        self.callback = callback
        self.name = _describe(callback)
        self.mode = mode
        self.limit = 1 if mode == "serial" else (limit or 0)
        self.direct = mode == "concurrent" and limit is None  # a task per emission
        self.maxsize = 1 if mode == "latest" else maxsize
        self.overflow = overflow
        self.lock = threading.Lock()
        self.pending: Deque[EventArgs] = collections.deque()
        self.tasks: Set[asyncio.Task[None]] = set()
        self.accepting = True  # emissions are taken
        self.cancelled = False  # no more calls start
        self.scheduled = False  # a pump is on its way to the loop
        self.dropped = 0
        # latest: the task of the current call, whether that call has taken
        # its emission, and whether it was asked to stop for a newer one
        self.current: Optional[asyncio.Task[None]] = None
        self.started = False
        self.cancel_requested = False
        self.relay = self._make_relay(accepted, required)

    def _make_relay(self, accepted: int, required: int) -> Callable[..., None]:
        relay = self._direct_relay(required) if self.direct else self._relay(required)
        # The emitter reads this, so it trims the arguments for the async
        # handler exactly as it would for a synchronous one.
        setattr(relay, "__signature__", _relay_signature(accepted, required))
        relay.__name__ = relay.__qualname__ = f"{self.name} [async, TaskHandlers]"
        return relay

    def _relay(self, required: int) -> Callable[..., None]:
        push = self.push
        if not required:

            def relay(*args: Any) -> None:
                push(args)

            return relay
        event, callback = self.event, self.callback

        def checked_relay(*args: Any) -> None:
            # livekit's emit passes fewer arguments than required without
            # complaint; ours raises before calling this.
            if len(args) < required:
                raise arity_error(event, callback, required, len(args))
            push(args)

        return checked_relay

    def _direct_relay(self, required: int) -> Callable[..., None]:
        # concurrent without a limit: in the running loop's thread, with
        # nothing waiting, the task is started right here (the common case,
        # kept to one frame: _start inlined, with the same test); everything
        # else goes through push.
        push, call = self.push, self._call
        loop, running_loop = self.loop, _get_running_loop
        create_task, add = loop.create_task, self.tasks.add
        event, callback = self.event, self.callback
        registration = self

        def direct_relay(*args: Any) -> None:
            if len(args) < required:
                raise arity_error(event, callback, required, len(args))
            if (
                running_loop() is not loop
                or registration.cancelled
                or registration.pending
                or not registration.accepting
            ):
                push(args)
                return
            task = create_task(call(args))
            if not task.done():  # an eager task factory may have run it to the end
                add(task)

        return direct_relay

    # -- producer side (any thread) ---------------------------------------

    def push(self, args: EventArgs) -> None:
        # On the loop's thread while it runs; anywhere else (another thread,
        # or the loop's own while it is stopped) the emission waits for a pump.
        on_loop = _get_running_loop() is self.loop
        if on_loop and self.mode != "latest" and self.accepting and not self.cancelled:
            if self.pending:
                self.fill()
            if not self.pending and (self.direct or self._free_slot()):
                self._start(self._call if self.direct else self._work, args)
                return
        if self.cancelled and self.owner.ending:
            logger.debug(
                "TaskHandlers: event %s not run by %s: its event loop is shutting down",
                _safe_repr(self.event),
                self.name,
            )
            return
        # Under the lock nothing is created or released (no finalizer, no
        # garbage collection, no user code can run while it is held): a
        # dropped emission is released, and the error made, after it.
        dropped: Optional[EventArgs] = None
        schedule = refused = False
        with self.lock:
            if not self.accepting or self.cancelled:  # nothing would ever run it
                return
            pending = self.pending
            if self.mode == "latest":
                if pending:
                    dropped = pending.popleft()
            elif len(pending) >= self.maxsize:
                self.dropped += 1
                if self.overflow == "drop_oldest":
                    dropped = pending.popleft()
                elif self.overflow == "drop_newest":
                    return
                else:
                    refused = True
            if not refused:
                pending.append(args)
                if not on_loop and not self.scheduled:
                    self.scheduled = schedule = True
        del dropped
        if refused:
            raise HandlerOverflowError(self.event, self.name, self.maxsize)
        if on_loop:
            self.fill()
        elif schedule:
            try:
                self.loop.call_soon_threadsafe(self.pump)
            except RuntimeError:  # the loop is closed: nothing will run any more
                self.drop_work()

    # -- loop side ------------------------------------------------------------

    def pump(self) -> None:
        with self.lock:
            self.scheduled = False
        self.fill()

    def fill(self) -> None:
        """Start what the mode has room for (loop thread)."""
        if self.cancelled:
            return
        if self.direct:
            while True:
                with self.lock:
                    if not self.pending:
                        return
                    args = self.pending.popleft()
                if self._start(self._call, args) is None:
                    return
        elif self.mode == "latest":
            self._kick_latest()
        else:
            while self._free_slot():
                with self.lock:
                    if not self.pending:
                        return
                    args = self.pending.popleft()
                if self._start(self._work, args) is None:
                    return

    def _free_slot(self) -> bool:
        if len(self.tasks) < self.limit:
            return True
        self._sweep()
        return len(self.tasks) < self.limit

    def _start(
        self, work: Callable[..., Coroutine[Any, Any, None]], *args: Any
    ) -> Optional[asyncio.Task[None]]:
        """Start ``work(*args)`` in a task: the only place a task is started.

        Only in the thread running the owner's loop, and not once the work is
        cancelled (closed, removed, or the loop's tasks were cancelled at its
        end: a task started then would outlive the loop).  Otherwise nothing
        is started, and no coroutine is created.
        """
        if self.cancelled:
            return None
        if _get_running_loop() is not self.loop:  # stopped or closed: nothing would run it
            self.drop_work()
            return None
        task = self.loop.create_task(work(*args))
        if not task.done():  # an eager task factory may have run it to the end
            self.tasks.add(task)
        return task

    def _kick_latest(self) -> None:
        task = self.current
        if task is not None and task.done():  # cancelled before it started
            self.current = task = None
            self.started = self.cancel_requested = False
        if task is None:
            if self.pending:
                self.current = self._start(self._latest_call)
        elif self.started and not self.cancel_requested and self.pending:
            # A newer emission waits: it replaces the running call, which is
            # stopped; the newer one starts once it has finished (never two
            # at once).  A call that has not started yet takes the newest
            # emission itself.  With nothing newer waiting (a drain looking
            # for work), the running call goes on.
            self.cancel_requested = True
            task.cancel()

    def _sweep(self) -> None:
        # Tasks cancelled (by someone else) before they started never ran
        # their bookkeeping.
        for task in [task for task in self.tasks if task.done()]:
            self.tasks.discard(task)

    def _torn_down(self, task: Optional[asyncio.Task[Any]]) -> bool:
        """After a CancelledError left a call: was ``task`` cancelled by
        someone else than this registration (``asyncio.run`` ending, a
        ``task.cancel()``)?  Then it starts nothing more (a task started
        now could outlive the loop)."""
        if self.cancelled:
            return True
        replaced = task is not None and task is self.current and self.cancel_requested
        if sys.version_info >= (3, 11):
            # Our own request (latest: replaced by a newer emission) counts one.
            return task is not None and _cancelling(task) > (1 if replaced else 0)
        if replaced:
            return False
        # Before 3.11 a handler's own CancelledError can't be told apart from
        # a cancellation of its task: stop; the next emission starts again.
        return True

    async def _call(self, args: EventArgs) -> None:
        # One call of concurrent without a limit (_run without latest's
        # bookkeeping: this runs once per emission).
        torn_down = False
        try:
            await self.callback(*args)
        except Exception as exc:
            self.owner.report(self.event, exc)
        except asyncio.CancelledError:
            torn_down = self._torn_down(asyncio.current_task(self.loop))
            raise
        except GeneratorExit:  # the coroutine is being closed (its loop is gone)
            torn_down = True
            raise
        except BaseException as exc:  # KeyboardInterrupt, SystemExit, ...
            self.owner.fatal(exc)
        finally:
            task = asyncio.current_task(self.loop)
            if task is not None:
                self.tasks.discard(task)
            if self.pending and not torn_down:
                self.fill()

    async def _latest_call(self) -> None:
        # One call of latest: the newest emission, taken as the call starts
        # (until then, newer ones replace it).
        task = asyncio.current_task(self.loop)
        torn_down = False
        try:
            with self.lock:
                if not self.pending:
                    return
                args = self.pending.popleft()
            self.started = True
            await self.callback(*args)
        except Exception as exc:
            self.owner.report(self.event, exc)
        except asyncio.CancelledError:
            torn_down = self._torn_down(task)
            raise
        except GeneratorExit:  # the coroutine is being closed (its loop is gone)
            torn_down = True
            raise
        except BaseException as exc:  # KeyboardInterrupt, SystemExit, ...
            self.owner.fatal(exc)
        finally:
            if task is not None:
                self.tasks.discard(task)
                if task is self.current:
                    self.current = None
                    self.started = self.cancel_requested = False
            if self.pending and not torn_down:
                self.fill()

    async def _work(self, args: EventArgs) -> None:
        # A worker (serial, concurrent with a limit): its first call, then
        # the waiting ones, one after the other.  Each round runs the calls
        # that were waiting when it began, then lets the loop run before the
        # next round, so calls that never suspend (or a handler that emits
        # its own event) can't starve the loop.
        task = asyncio.current_task(self.loop)
        lock, pending, callback = self.lock, self.pending, self.callback
        count = 1
        torn_down = False
        try:
            while True:
                for i in range(count):
                    if i:
                        with lock:
                            if not pending:
                                break
                            args = pending.popleft()
                    try:
                        await callback(*args)
                    except Exception as exc:
                        self.owner.report(self.event, exc)
                    except asyncio.CancelledError:
                        if self._torn_down(task):
                            torn_down = True
                            raise
                        # The call raised it itself, its task uncancelled: it ended.
                    except GeneratorExit:  # the coroutine is being closed
                        torn_down = True
                        raise
                    except BaseException as exc:  # KeyboardInterrupt, SystemExit, ...
                        self.owner.fatal(exc)
                    if self.cancelled:
                        return
                if not pending:
                    return
                await asyncio.sleep(0)
                with lock:
                    count = len(pending)
                    if not count:
                        return
                    args = pending.popleft()
        finally:
            if task is not None:
                self.tasks.discard(task)
            if pending and not torn_down:
                self.fill()

    # -- shutting down ----------------------------------------------------------

    def stop_input(self) -> None:
        """Take no more emissions and remove the relay (any thread)."""
        with self.lock:
            if not self.accepting:
                return
            self.accepting = False
        self.owner.emitter.off(self.event, self.relay)

    def drop_work(self) -> None:
        """Start nothing more, drop what waits (any thread)."""
        with self.lock:
            self.cancelled = True
            dropped = _take_all(self.pending)
        del dropped  # released outside the lock

    def cancel_work(self, spare: Optional[asyncio.Task[Any]] = None) -> None:
        """Drop what waits and cancel what runs, except the task ``spare``
        (the one asking: it goes on to its end); loop thread."""
        self.drop_work()
        if self.loop.is_closed():  # nothing can run, or be cancelled, any more
            return
        for task in self.tasks:
            if task is not spare:
                task.cancel()

    def live_tasks(self, spare: Optional[asyncio.Task[Any]]) -> List[asyncio.Task[None]]:
        self._sweep()
        return [task for task in self.tasks if task is not spare]


def _let_watch_return(released: asyncio.Future[None]) -> None:
    if not released.done():
        released.set_result(None)


async def _wait_for_release(released: asyncio.Future[None]) -> None:
    await released


class _Watch(asyncio.Task[None]):
    """An open owner's watch: a task of its own that only waits, there to be
    cancelled.

    ``asyncio.run`` (and ``asyncio.Runner``, and most hand-written
    shutdowns) cancel every task of the loop once the main coroutine has
    returned, then run the loop a while longer (the cancelled tasks' cleanup,
    the async generators' and the default executor's shutdown), then close
    it.  An emission in that time, from a cancelled task's ``finally`` block
    or from another thread, must not start a call: nothing would cancel or
    await its task, which would outlive the loop.  asyncio tells nobody that
    this phase has begun, except by cancelling the tasks; so the owner keeps
    one.  Its ``cancel`` ends the owner's work at once (before any of the
    cancelled tasks runs its cleanup, and whether or not this task has
    started), and when it has ended, the owner is closed.  Released (it
    returns) when the owner is closed.
    """

    def __init__(
        self, owner: _Owner, loop: asyncio.AbstractEventLoop, released: asyncio.Future[None]
    ) -> None:
        self.owner: Optional[_Owner] = owner  # None once released
        self.released = released
        super().__init__(_wait_for_release(released), loop=loop, name="TaskHandlers watch")
        self.add_done_callback(owner.watch_ended)
        # A loop closed without cancelling its tasks abandons this one too;
        # it holds no call of the user's, so don't report it destroyed.
        try:
            self._log_destroy_pending = False
        except AttributeError:  # pragma: no cover - every CPython Task has it
            pass

    def cancel(self, *args: Any, **kwargs: Any) -> bool:
        owner = self.owner
        if owner is not None and not self.done():
            self.owner = None
            owner.loop_ending()
        return super().cancel(*args, **kwargs)


class _Owner:
    """A ``TaskHandlers``' state.  The relays and tasks hold this, never the
    ``TaskHandlers`` itself, so the emitter never keeps the owner alive and
    its finalizer can clean up."""

    __slots__ = (
        "closed",
        "emitter",
        "ending",
        "failure",
        "failure_raised",
        "host",
        "host_cancelled",
        "lock",
        "loop",
        "registrations",
        "retired",
        "thread",
        "watch",
    )

    def __init__(self, emitter: AnyEmitter) -> None:
        self.emitter = emitter
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.thread = 0
        self.lock = threading.RLock()
        self.registrations: Dict[Tuple[Any, Any], _Registration] = {}
        self.retired: List[_Registration] = []  # removed by off(), tasks may still run
        self.closed = False
        self.host: Optional[asyncio.Task[Any]] = None  # the task inside `async with`
        self.host_cancelled = False
        self.failure: Optional[BaseException] = None
        self.failure_raised = False
        self.ending = False  # the watch was cancelled: the loop is shutting down
        self.watch: Optional[_Watch] = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread = threading.get_ident()

    def keep_watch(self) -> None:
        """Start the watch once the owner has a handler (from any thread:
        the watch starts on the loop's)."""
        loop = self.loop
        if loop is None or self.watch is not None or self.closed:
            return
        if _get_running_loop() is not loop:
            try:
                loop.call_soon_threadsafe(self.keep_watch)
            except RuntimeError:  # the loop is closed
                pass
            return
        released = loop.create_future()
        watch = _Watch(self, loop, released)
        with self.lock:
            keep = self.watch is None and not self.closed
            if keep:
                self.watch = watch
        if not keep:  # closed meanwhile (another thread), or started twice
            watch.owner = None
            _let_watch_return(released)

    def release_watch(self) -> None:
        """The owner is closed: let its watch return (any thread)."""
        watch = self.watch
        if watch is None or watch.owner is None:
            return
        watch.owner = None
        if _get_running_loop() is watch.get_loop():
            _let_watch_return(watch.released)
            return
        try:
            watch.get_loop().call_soon_threadsafe(_let_watch_return, watch.released)
        except RuntimeError:  # the loop is closed
            pass

    def loop_ending(self) -> None:
        """The watch is being cancelled: the loop is shutting down.  From now
        on no task starts (``watch_ended`` closes the owner).  Called inside
        the ``cancel()`` of whoever cancels the loop's tasks: sets flags,
        nothing else."""
        with self.lock:
            self.ending = self.closed = True
            registrations = [*self.registrations.values(), *self.retired]
        for registration in registrations:
            registration.cancelled = True

    def watch_ended(self, watch: asyncio.Task[None]) -> None:
        """The watch's done callback: cancelled at the loop's end, it closes
        the owner, as leaving its block by a cancellation would."""
        if not self.ending:  # released: the owner was closed
            return
        logger.debug("TaskHandlers closed: its event loop is shutting down")
        try:
            self.shutdown()
        except Exception as exc:  # an `off` that raised
            self.internal_error("removing a handler failed", exc)

    def unfinished_watch(self, spare: Optional[asyncio.Task[Any]]) -> List[asyncio.Task[None]]:
        watch = self.watch
        return [] if watch is None or watch.done() or watch is spare else [watch]

    def all_registrations(self) -> List[_Registration]:
        with self.lock:
            return [*self.registrations.values(), *self.retired]

    def report(self, event: Any, exc: Exception) -> None:
        try:
            log_handler_failure(event, exc)
        except Exception as failure:  # a logging handler raised: nowhere else to go
            self.internal_error("logging an async handler's failure failed", failure)

    def internal_error(self, message: str, exc: BaseException) -> None:
        assert self.loop is not None
        self.loop.call_exception_handler(
            {"message": f"livekit_events.aio.TaskHandlers: {message}", "exception": exc}
        )

    def fatal(self, exc: BaseException) -> None:
        """A handler raised KeyboardInterrupt, SystemExit or another
        BaseException: cancel everything; raise it where the owner is awaited."""
        if self.failure is None:
            self.failure = exc
        try:
            self.stop_input()
        except Exception as failure:  # an `off` that raised
            self.internal_error("removing a handler failed", failure)
        self.cancel_work(spare=_current_task())
        host = self.host
        if host is not None and not host.done():
            if not self.host_cancelled:
                self.host_cancelled = True
                host.cancel()
        elif not self.failure_raised:
            # No block to raise it from: let it out of the loop at once, as
            # asyncio does when a task raises it.
            self.failure_raised = True
            assert self.loop is not None
            self.loop.call_soon(_reraise, exc)

    def stop_input(self) -> None:
        """Close: remove every relay from the emitter (any thread)."""
        with self.lock:
            self.closed = True
        self.release_watch()
        error: Optional[BaseException] = None
        for registration in self.all_registrations():
            try:
                registration.stop_input()
            except BaseException as exc:  # an `off` that raised: remove the others first
                error = error or exc
        if error is not None:
            raise error

    def cancel_work(self, spare: Optional[asyncio.Task[Any]] = None) -> None:
        """Drop waiting calls and cancel running ones, except ``spare``; from
        any thread."""
        loop = self.loop
        if loop is None:
            return
        registrations = self.all_registrations()
        if threading.get_ident() != self.thread:
            for registration in registrations:
                registration.drop_work()
            try:
                loop.call_soon_threadsafe(self.cancel_work)
            except RuntimeError:  # the loop is closed: nothing runs any more
                pass
            return
        for registration in registrations:
            registration.cancel_work(spare)

    def shutdown(self, spare: Optional[asyncio.Task[Any]] = None) -> None:
        """close() and the finalizer: stop listening, cancel the work."""
        try:
            self.stop_input()
        finally:
            self.cancel_work(spare)

    def live_tasks(
        self, start_waiting: bool, spare: Optional[asyncio.Task[Any]]
    ) -> List[asyncio.Task[None]]:
        tasks: List[asyncio.Task[None]] = []
        for registration in self.all_registrations():
            if start_waiting:  # waiting calls from other threads whose pump hasn't run
                registration.fill()
            tasks.extend(registration.live_tasks(spare))
        with self.lock:
            self.retired = [r for r in self.retired if r.tasks]
        return tasks


class TaskHandlers(Generic[E]):
    """Async handlers for an emitter's events, run in tasks this object owns.

    ::

        async with TaskHandlers(room, mode="serial") as handlers:
            @handlers.on("data_received")
            async def on_data(packet: rtc.DataPacket) -> None: ...

            await room.connect(url, token)
            ...
        # left: handlers removed, pending work cancelled, every task awaited

    Works with any emitter that has ``on``/``off`` (``livekit_events``' and
    livekit's, with or without ``install()``): it registers a small
    synchronous relay per handler.  Each emission schedules the handler on the
    owner's event loop (the one running when the owner was created, entered,
    or first given a handler); an emission from another thread is handed
    over thread-safely.

    ``mode`` (per owner, or per handler in ``on()``):

    - ``"concurrent"``: a task per emission, at most ``limit`` running at once
      (``None``: no limit; the others wait in the queue).
    - ``"serial"``: one call at a time per handler, in emission order.
    - ``"latest"``: a new emission cancels the running call; once it has
      finished, the handler runs with the newest emission (the ones in
      between are skipped).  For state updates.

    Queues are bounded by ``maxsize`` (``latest`` keeps only the newest) and
    ``overflow`` applies where the emission happens, inside ``emit``:
    ``"raise"`` (``emit``'s handler raises ``HandlerOverflowError``, which the
    emitter logs as a handler failure), ``"drop_oldest"`` or ``"drop_newest"``.
    Only the calls waiting for a free slot or for the loop are queued: without
    a ``limit``, ``concurrent`` starts every call at once, as ``create_task``
    would.

    Arguments: the handler gets the leading emitted arguments it accepts, by
    the same rules as a synchronous handler (signature read once, in ``on``).

    Failures: an exception in a handler is logged on ``livekit.events``, as
    a synchronous handler's failure is, and everything else goes on.  A
    ``KeyboardInterrupt``, ``SystemExit`` (or other ``BaseException``) cancels
    the owner: handlers removed, work cancelled, the block's task cancelled,
    and the exception is raised when the ``async with`` block exits (without
    a block: at once, out of the event loop, as asyncio does).

    Cleanup: leaving the block (with ``on_exit="cancel"``, the default, or
    ``"drain"``: let the queued and running calls finish first, for at most
    ``drain_timeout`` seconds, then cancel the rest), ``close()``,
    ``await aclose()``, or the owner being garbage-collected removes the
    handlers; every task is awaited by the block and ``aclose()``.  Leaving
    the block by an exception or a cancellation always cancels.  An owner
    left open closes the same way when its loop's tasks are cancelled at the
    loop's end (``asyncio.run``): while open with handlers it keeps a small
    task of its own, its watch, for that, and from the moment the watch is
    cancelled no emission starts a call.
    """

    __slots__ = (
        "__weakref__",
        "_finalizer",
        "_limit",
        "_maxsize",
        "_mode",
        "_on_exit",
        "_overflow",
        "_drain_timeout",
        "_state",
    )

    @overload
    def __init__(
        self: TaskHandlers[_E],
        emitter: EventEmitter[_E],
        *,
        mode: Mode = "concurrent",
        limit: Optional[int] = None,
        maxsize: int = DEFAULT_MAXSIZE,
        overflow: Overflow = "raise",
        on_exit: ExitPolicy = "cancel",
        drain_timeout: Optional[float] = None,
    ) -> None: ...
    @overload
    def __init__(
        self: TaskHandlers[Any],
        emitter: SupportsOnOff,
        *,
        mode: Mode = "concurrent",
        limit: Optional[int] = None,
        maxsize: int = DEFAULT_MAXSIZE,
        overflow: Overflow = "raise",
        on_exit: ExitPolicy = "cancel",
        drain_timeout: Optional[float] = None,
    ) -> None: ...
    def __init__(
        self,
        emitter: AnyEmitter,
        *,
        mode: Mode = "concurrent",
        limit: Optional[int] = None,
        maxsize: int = DEFAULT_MAXSIZE,
        overflow: Overflow = "raise",
        on_exit: ExitPolicy = "cancel",
        drain_timeout: Optional[float] = None,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, not {mode!r}")
        if on_exit not in _EXIT_POLICIES:
            raise ValueError(f"on_exit must be one of {_EXIT_POLICIES}, not {on_exit!r}")
        if not (callable(getattr(emitter, "on", None)) and callable(getattr(emitter, "off", None))):
            raise TypeError(
                f"emitter must have on(event, callback) and off(event, callback), "
                f"not {type(emitter).__name__!r}"
            )
        self._mode: str = mode
        self._limit = None if limit is None else self._check_limit(limit)
        self._maxsize = _check_maxsize(maxsize)
        self._overflow: str = _check_overflow(overflow)
        self._on_exit: str = on_exit
        self._drain_timeout = _check_seconds("drain_timeout", drain_timeout)
        state = _Owner(emitter)
        try:
            state.bind(asyncio.get_running_loop())
        except RuntimeError:
            pass  # bound when entered, or by the first on() in a running loop
        self._state = state
        self._finalizer = weakref.finalize(self, state.shutdown)
        self._finalizer.atexit = False

    @staticmethod
    def _check_limit(limit: int) -> int:
        limit = operator.index(limit)
        if limit < 1:
            raise ValueError(f"limit must be at least 1, or None for no limit, not {limit}")
        return limit

    def _loop(self, entering: bool) -> asyncio.AbstractEventLoop:
        state = self._state
        if state.closed:
            raise RuntimeError("this TaskHandlers is closed")
        try:
            running: Optional[asyncio.AbstractEventLoop] = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if state.loop is None:
            if running is None:
                raise RuntimeError(
                    "TaskHandlers runs its handlers on the event loop it is used in: create "
                    "or enter it, or register its first handler, from a coroutine"
                )
            state.bind(running)
        elif entering and running is not state.loop:
            raise RuntimeError("this TaskHandlers belongs to another event loop")
        assert state.loop is not None
        return state.loop

    # -- registering ---------------------------------------------------------

    @overload
    def on(
        self,
        event: E,
        callback: AsyncHandlerT,
        /,
        *,
        mode: Optional[Mode] = None,
        limit: Optional[int] = None,
        maxsize: Optional[int] = None,
        overflow: Optional[Overflow] = None,
    ) -> AsyncHandlerT: ...
    @overload
    def on(
        self,
        event: E,
        callback: None = None,
        /,
        *,
        mode: Optional[Mode] = None,
        limit: Optional[int] = None,
        maxsize: Optional[int] = None,
        overflow: Optional[Overflow] = None,
    ) -> Callable[[AsyncHandlerT], AsyncHandlerT]: ...
    def on(
        self,
        event: E,
        callback: Optional[AsyncHandlerT] = None,
        /,
        *,
        mode: Optional[Mode] = None,
        limit: Optional[int] = None,
        maxsize: Optional[int] = None,
        overflow: Optional[Overflow] = None,
    ) -> Union[AsyncHandlerT, Callable[[AsyncHandlerT], AsyncHandlerT]]:
        """Run the async ``callback`` for every emission of ``event``; return it.

        ``on(event)`` is a decorator.  ``mode``, ``limit``, ``maxsize`` and
        ``overflow`` override the owner's settings for this handler (``None``:
        the owner's).  ``limit`` applies to ``concurrent`` only; ``latest``
        keeps just the newest emission, so it takes no ``maxsize`` or
        ``overflow``.  Registering the same callback for the same event again
        changes nothing.

        Raises ``TypeError`` for a callback that is not async (register a
        synchronous one with the emitter's ``on``), an async generator
        function, or one with a required keyword-only parameter; and
        ``RuntimeError`` once the owner is closed.
        """
        if callback is None:

            def decorator(function: AsyncHandlerT) -> AsyncHandlerT:
                return self.on(
                    event, function, mode=mode, limit=limit, maxsize=maxsize, overflow=overflow
                )

            return decorator
        self._register(event, callback, mode, limit, maxsize, overflow)
        return callback

    def _register(
        self,
        event: Any,
        callback: Callable[..., Awaitable[Any]],
        mode: Optional[str],
        limit: Optional[int],
        maxsize: Optional[int],
        overflow: Optional[str],
    ) -> None:
        # Everything is checked before anything is registered.
        hash(event)
        if mode is None:
            mode = self._mode
        elif mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, not {mode!r}")
        if mode == "latest" and (limit, maxsize, overflow) != (None, None, None):
            raise ValueError(
                "mode 'latest' keeps only the newest emission: no limit, maxsize or overflow"
            )
        if mode == "serial" and limit is not None:
            raise ValueError("mode 'serial' runs one call at a time: limit is for 'concurrent'")
        limit = self._limit if limit is None else self._check_limit(limit)
        maxsize = self._maxsize if maxsize is None else _check_maxsize(maxsize)
        overflow = self._overflow if overflow is None else _check_overflow(overflow)
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__!r}")
        if not _is_async_callable(callback):
            raise TypeError(
                f"TaskHandlers.on() takes an async callable (async def), not "
                f"{_describe(callback)}: register a synchronous callback with the emitter's on()"
            )
        if _is_async_generator_function(callback):
            raise TypeError(
                f"{_describe(callback)} is an async generator function, which can't be "
                f"awaited: iterate it inside an async def handler"
            )
        accepted, required = read_arity(callback)
        self._loop(entering=False)
        state = self._state
        key = (event, callback)
        with state.lock:
            if state.closed:
                raise RuntimeError("this TaskHandlers is closed")
            if key in state.registrations:
                return
            registration = _Registration(
                state, event, callback, mode, limit, maxsize, overflow, accepted, required
            )
            state.registrations[key] = registration
        try:
            state.emitter.on(event, registration.relay)
        except BaseException:
            with state.lock:
                if state.registrations.get(key) is registration:
                    del state.registrations[key]
            registration.accepting = False
            _off_quietly(state.emitter, event, registration.relay)
            raise
        if not registration.accepting:  # closed meanwhile (another thread)
            state.emitter.off(event, registration.relay)
            return
        state.keep_watch()

    def off(self, event: E, callback: Callable[..., Awaitable[Any]], /) -> None:
        """Remove the handler: its waiting calls are dropped, its running ones
        cancelled (awaited by the block or ``aclose()``).  Unknown: nothing."""
        state = self._state
        with state.lock:
            registration = state.registrations.pop((event, callback), None)
            if registration is None:
                return
            state.retired.append(registration)
        registration.stop_input()
        self._cancel(registration)

    def _cancel(self, registration: _Registration) -> None:
        loop = self._state.loop
        if loop is None:
            return
        if threading.get_ident() == self._state.thread:
            registration.cancel_work(spare=_current_task())
            return
        registration.drop_work()
        try:
            loop.call_soon_threadsafe(registration.cancel_work)
        except RuntimeError:  # the loop is closed
            pass

    # -- leaving -------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._loop(entering=True)
        state = self._state
        if state.host is not None:
            raise RuntimeError("this TaskHandlers is already entered")
        state.host = asyncio.current_task()
        return self

    async def __aexit__(
        self, exc_type: Optional[type], exc: Optional[BaseException], tb: object
    ) -> None:
        drain = self._on_exit == "drain"
        await self._finish(drain, self._drain_timeout, exc)

    def close(self) -> None:
        """Remove the handlers, drop waiting calls and cancel running ones.

        Does not wait for the cancelled tasks to finish (``aclose()`` does).
        Called from a handler, it doesn't cancel that handler's own call.
        Idempotent; safe from any thread.
        """
        self._state.shutdown(spare=_current_task())

    async def aclose(self, *, drain: bool = False, timeout: Optional[float] = None) -> None:
        """Remove the handlers and wait until no task is left.

        ``drain=False``: cancel waiting and running calls.  ``drain=True``:
        let them finish first, for at most ``timeout`` seconds (``None``: no
        limit), then cancel what is left.  Called from a handler, it neither
        cancels nor waits for that handler's own call.  Raises a
        ``KeyboardInterrupt`` or ``SystemExit`` a handler raised, if not
        raised already.
        """
        await self._finish(drain, _check_seconds("timeout", timeout), None)

    async def _finish(
        self, drain: bool, timeout: Optional[float], body_error: Optional[BaseException]
    ) -> None:
        state = self._state
        loop = state.loop
        if loop is None:  # never used in a loop: nothing can be running
            state.stop_input()
            return
        if asyncio.get_running_loop() is not loop:
            raise RuntimeError("this TaskHandlers belongs to another event loop")
        host = state.host
        me = asyncio.current_task()  # a handler's call, if a handler closes: spared
        in_host = host is not None and me is host
        # Whether the cancellation fatal() asked for on the host has been
        # delivered (then it must not be seen as the caller's own).
        absorbed = in_host and state.host_cancelled and isinstance(
            body_error, asyncio.CancelledError
        )
        cancelled_outside = False

        def caught_cancel() -> None:
            nonlocal absorbed, cancelled_outside
            if in_host and state.host_cancelled and not absorbed:
                absorbed = True
            else:
                cancelled_outside = True

        try:
            state.stop_input()
        finally:
            if drain and body_error is None and state.failure is None:
                deadline = None if timeout is None else loop.time() + timeout
                while state.failure is None:
                    tasks = state.live_tasks(start_waiting=True, spare=me)
                    if not tasks:
                        break
                    remaining = None if deadline is None else deadline - loop.time()
                    if remaining is not None and remaining <= 0:
                        break
                    try:
                        await asyncio.wait(tasks, timeout=remaining)
                    except asyncio.CancelledError:
                        caught_cancel()
                        break
            state.cancel_work(spare=me)
            while True:
                tasks = state.live_tasks(start_waiting=False, spare=me)
                tasks.extend(state.unfinished_watch(spare=me))
                if not tasks:
                    break
                try:
                    await asyncio.wait(tasks)
                except asyncio.CancelledError:
                    caught_cancel()
                    state.cancel_work(spare=me)
            if in_host and host is not None:
                if state.host_cancelled:
                    if not absorbed:
                        # fatal() cancelled this task, and the cancellation
                        # has not been delivered yet: take it here.
                        try:
                            await asyncio.sleep(0)
                        except asyncio.CancelledError:
                            absorbed = True
                    if _uncancel(host) > 0:
                        cancelled_outside = True  # someone else cancelled it too
                    state.host_cancelled = False
                state.host = None
        failure = state.failure
        if failure is not None and not state.failure_raised:
            state.failure_raised = True
            raise failure
        if cancelled_outside and not isinstance(body_error, asyncio.CancelledError):
            raise asyncio.CancelledError

    # -- state -----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the handlers were removed (closed, left, or failed)."""
        return self._state.closed

    @property
    def dropped(self) -> int:
        """Emissions not run because a handler's queue was full, in total."""
        return sum(r.dropped for r in self._state.all_registrations())

    def queued(self) -> int:
        """Emissions waiting for a free slot or for the loop, in total."""
        return sum(len(r.pending) for r in self._state.all_registrations())

    def running(self) -> int:
        """Calls started and not finished, in total."""
        return sum(
            1 for r in self._state.all_registrations() for t in list(r.tasks) if not t.done()
        )

    def __repr__(self) -> str:
        state = "closed" if self._state.closed else "open"
        return (
            f"<TaskHandlers {state} mode={self._mode!r} handlers={len(self._state.registrations)} "
            f"running={self.running()} queued={self.queued()}>"
        )
