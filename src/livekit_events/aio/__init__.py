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

The streams live in ``_streams``, ``TaskHandlers`` in ``_tasks``, and what
both use (emitter types, argument checks, the bounded buffer) in ``_shared``.
"""

from ._shared import DEFAULT_MAXSIZE, AnyEmitter, EventArgs, Overflow, SupportsOnOff
from ._streams import EventStream, EventStreamOverflowError, iterate, wait_for
from ._tasks import ExitPolicy, HandlerOverflowError, Mode, TaskHandlers

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

