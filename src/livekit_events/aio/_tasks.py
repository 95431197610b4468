"""``TaskHandlers``: async handlers for an emitter's events, run in tasks it
owns."""

from __future__ import annotations

import asyncio
import inspect
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
    Dict,
    Generic,
    Hashable,
    List,
    Literal,
    Optional,
    Set,
    Tuple,
    TypeVar,
    Union,
    overload,
)

from .._common import (
    ALL_ARGUMENTS,
    _callable_layers,  # pyright: ignore[reportPrivateUsage]
    _is_async_callable,  # pyright: ignore[reportPrivateUsage]
    _safe_repr,  # pyright: ignore[reportPrivateUsage]
    arity_error,
    callable_name,
    log_handler_failure,
    logger,
    read_arity,
)
from .._emitter import EventEmitter
from ._shared import (
    ADDED,
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
)

if TYPE_CHECKING:
    from typing_extensions import Self

# E again, for TaskHandlers.__init__'s self type (a class-scoped type
# variable can't appear there).
_E = TypeVar("_E", bound=Union[Hashable, Literal[""]])

#: An async handler: a callable returning an awaitable (``async def``).
AsyncHandlerT = TypeVar("AsyncHandlerT", bound=Callable[..., Awaitable[Any]])

#: How a ``TaskHandlers`` runs a handler's calls.
Mode = Literal["concurrent", "serial", "latest"]

_MODES = ("concurrent", "serial", "latest")

#: What leaving a ``TaskHandlers`` block normally does with pending work.
ExitPolicy = Literal["cancel", "drain"]

_EXIT_POLICIES = ("cancel", "drain")


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


def _is_async_generator_function(callback: Any) -> bool:
    """An async generator function, also behind ``partial``, a bound method or
    ``__call__`` (``_is_async_callable`` accepts those too, but they can't be
    awaited)."""
    return any(inspect.isasyncgenfunction(layer) for layer in _callable_layers(callback))


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
        "event",
        "limit",
        "lock",
        "loop",
        "mode",
        "name",
        "owner",
        "pending",
        "refused",
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
        self.name = callable_name(callback)
        self.mode = mode
        self.limit = 1 if mode == "serial" else (limit or 0)
        self.direct = mode == "concurrent" and limit is None  # a task per emission
        self.lock = threading.Lock()
        self.pending = BoundedBuffer(1 if mode == "latest" else maxsize, overflow)
        self.tasks: Set[asyncio.Task[None]] = set()
        self.accepting = True  # emissions are taken
        self.cancelled = False  # no more calls start
        self.scheduled = False  # a pump is on its way to the loop
        self.refused = 0  # emissions refused with HandlerOverflowError
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
        # A dropped emission is released, and the error made, after the
        # lock (see BoundedBuffer).
        schedule = False
        with self.lock:
            if not self.accepting or self.cancelled:  # nothing would ever run it
                return
            pending = self.pending
            if self.mode == "latest":  # only the newest emission waits
                outcome: object = pending.popleft() if pending else ADDED
                pending.append(args)
            else:
                outcome = pending.put(args)
            if outcome is DROPPED:
                return
            if outcome is REFUSED:
                self.refused += 1
            elif not on_loop and not self.scheduled:
                self.scheduled = schedule = True
        if outcome is REFUSED:
            raise HandlerOverflowError(self.event, self.name, pending.maxsize)
        del outcome  # an evicted emission is released here
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

    def _raised(self, exc: BaseException) -> bool:
        """A call of the handler raised ``exc``: what that means, decided here
        for every kind of call.  Returns True when the call's task is being
        torn down; then the caller re-raises ``exc`` and starts nothing more.

        - ``Exception``: the handler failed; logged as a synchronous
          handler's failure is, and everything goes on.
        - ``CancelledError``: torn down if the task was cancelled by someone
          else than this registration (see ``_torn_down``); one the call
          raised itself, its task uncancelled, just ends that call.
        - ``GeneratorExit``: the coroutine is being closed (its loop is gone).
        - ``KeyboardInterrupt``, ``SystemExit`` or another ``BaseException``:
          the owner's work ends (``fatal``).
        """
        if isinstance(exc, Exception):
            self.owner.report(self.event, exc)
            return False
        if isinstance(exc, asyncio.CancelledError):
            return self._torn_down(asyncio.current_task(self.loop))
        if isinstance(exc, GeneratorExit):
            return True
        self.owner.fatal(exc)
        return False

    async def _call(self, args: EventArgs) -> None:
        # One call of concurrent without a limit (_latest_call without its
        # bookkeeping: this runs once per emission).
        torn_down = False
        try:
            await self.callback(*args)
        except BaseException as exc:
            torn_down = self._raised(exc)
            if torn_down:
                raise
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
        except BaseException as exc:
            torn_down = self._raised(exc)
            if torn_down:
                raise
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
                    except BaseException as exc:
                        torn_down = self._raised(exc)
                        if torn_down:
                            raise
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
            dropped = self.pending.take_all()
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

    @property
    def dropped(self) -> int:
        """Emissions not run because the queue was full: dropped by the
        overflow policy, or refused with ``HandlerOverflowError``."""
        return self.pending.dropped + self.refused


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
        self._maxsize = check_maxsize(maxsize)
        self._overflow: str = check_overflow(overflow)
        self._on_exit: str = on_exit
        self._drain_timeout = check_seconds("drain_timeout", drain_timeout)
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
        maxsize = self._maxsize if maxsize is None else check_maxsize(maxsize)
        overflow = self._overflow if overflow is None else check_overflow(overflow)
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__!r}")
        if not _is_async_callable(callback):
            raise TypeError(
                f"TaskHandlers.on() takes an async callable (async def), not "
                f"{callable_name(callback)}: register a synchronous callback with the emitter's on()"
            )
        if _is_async_generator_function(callback):
            raise TypeError(
                f"{callable_name(callback)} is an async generator function, which can't be "
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
            off_quietly(state.emitter, event, registration.relay)
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
        await self._finish(drain, check_seconds("timeout", timeout), None)

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
