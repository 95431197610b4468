"""livekit_events.aio.TaskHandlers: async handlers in tasks the owner owns.

Every test that takes ``emitter`` runs three times: on the compiled core, on
the pure twin, and on livekit's own ``livekit.rtc.EventEmitter`` (the module
is marked ``with_livekit``; without the ``livekit`` package those runs
skip).  Every event loop runs in asyncio's debug mode, warnings are errors
(pyproject), and each test fails if asyncio logged an error (a task destroyed
while pending, an exception never retrieved, ...) or if a task other than the
test's own is left when its coroutine returns.  No test depends on timing:
``asyncio.Event`` gates decide when a handler goes on, and the timeouts are
only used where nothing will ever happen.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import logging
import sys
import threading
from typing import Any, Callable, Coroutine, Dict, Iterator, List, Optional, Tuple, TypeVar

import pytest

from livekit_events.aio import HandlerOverflowError, TaskHandlers

T = TypeVar("T")

# Own event loops, threads and GC: one test at a time (pytest-run-parallel).
pytestmark = [
    pytest.mark.thread_unsafe(reason="own event loops, threads and gc.collect()"),
    pytest.mark.with_livekit,
]

LIVEKIT_ASYNC_MESSAGE = (
    "Cannot register an async callback with `.on()`. Use `asyncio.create_task` "
    "within your synchronous callback instead."
)


def handlers_of(emitter: Any, event: str) -> int:
    """How many callables ``emitter`` has for ``event`` (either emitter class)."""
    return len(emitter._events.get(event, ()))


class Log:
    """Records on ``livekit.events`` and ``asyncio``; a test takes the ones it expects."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.taken = 0

    def records(self) -> List[logging.LogRecord]:
        return [
            r
            for r in self.caplog.records
            if r.levelno >= logging.ERROR and r.name in ("livekit.events", "livekit", "asyncio")
        ]

    def take(self) -> List[logging.LogRecord]:
        records = self.records()
        new, self.taken = records[self.taken :], len(records)
        return new


@pytest.fixture(autouse=True)
def log(caplog: pytest.LogCaptureFixture) -> Iterator[Log]:
    """No error may be logged that the test did not take."""
    with caplog.at_level(logging.ERROR):
        log = Log(caplog)
        yield log
        left = log.records()[log.taken :]
    assert not left, [f"{r.name}: {r.getMessage()}" for r in left]


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``main()`` in a fresh loop, debug mode on; no other task may be left."""

    async def checked() -> T:
        result = await asyncio.wait_for(main(), timeout=120)  # a hang fails, never stalls
        left = asyncio.all_tasks() - {asyncio.current_task()}
        assert not left, left
        return result

    return asyncio.run(checked(), debug=True)


class CountingLoop(asyncio.SelectorEventLoop):
    """An event loop that counts the callbacks other threads hand it."""

    threadsafe_calls = 0

    def call_soon_threadsafe(self, *args: Any, **kwargs: Any) -> Any:
        self.threadsafe_calls += 1
        return super().call_soon_threadsafe(*args, **kwargs)


def run_counting(main: Callable[[CountingLoop], Coroutine[Any, Any, T]]) -> T:
    loop = CountingLoop()
    loop.set_debug(True)

    async def checked() -> T:
        result = await asyncio.wait_for(main(loop), timeout=120)
        assert not asyncio.all_tasks() - {asyncio.current_task()}
        return result

    try:
        return loop.run_until_complete(checked())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def finishes(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` in a task of its own, which must end by itself.

    A hang detector that can't turn into a pass: on a hang the task is
    cancelled only after the test has failed (a cancellation from outside
    could make a block raise what the test expects).
    """
    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task}, timeout=60)
    if not done:
        task.cancel()
        await asyncio.wait({task})
        if not task.cancelled():
            task.exception()  # retrieved: the hang is the failure
        raise AssertionError("did not finish by itself (hangs)")
    return task.result()


def assert_not_cancelled() -> None:
    """The current task carries no cancellation request (3.11+ counts them)."""
    if sys.version_info >= (3, 11):
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0


async def settle(rounds: int = 5) -> None:
    """Let the loop run a few iterations (tasks start, run, finish)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def until(condition: Callable[[], bool]) -> None:
    """Run the loop until ``condition()`` holds (bounded: a bug fails, never hangs)."""
    for _ in range(100_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


class Gates:
    """``await gates.wait(key)`` suspends until ``gates.open(key)``."""

    def __init__(self) -> None:
        self._events: Dict[Any, asyncio.Event] = {}

    def _event(self, key: Any) -> asyncio.Event:
        return self._events.setdefault(key, asyncio.Event())

    async def wait(self, key: Any) -> None:
        await self._event(key).wait()

    def open(self, key: Any) -> None:
        self._event(key).set()


# ---------------------------------------------------------------------------
# Registration


def test_on_returns_the_callback_and_works_as_a_decorator(emitter: Any) -> None:
    got: List[Any] = []

    async def main() -> None:
        async with TaskHandlers(emitter) as handlers:

            async def direct(value: int) -> None:
                got.append(("direct", value))

            assert handlers.on("x", direct) is direct

            @handlers.on("x")
            async def decorated(value: int) -> None:
                got.append(("decorated", value))

            assert inspect.iscoroutinefunction(decorated)
            emitter.emit("x", 1)
            await until(lambda: len(got) == 2)
        assert handlers_of(emitter, "x") == 0

    run(main)
    assert sorted(got) == [("decorated", 1), ("direct", 1)]


def test_one_relay_per_handler_goes_through_the_emitters_on_and_off(EventEmitter: Any) -> None:
    # A subclass that overrides on/off sees every registration and removal.
    calls: List[str] = []

    class Room(EventEmitter):  # type: ignore[misc]
        def on(self, event: Any, callback: Any = None) -> Any:
            calls.append(f"on {event}")
            return super().on(event, callback)

        def off(self, event: Any, callback: Any) -> None:
            calls.append(f"off {event}")
            super().off(event, callback)

    room = Room()

    async def handler() -> None:
        pass

    async def main() -> None:
        async with TaskHandlers(room) as handlers:
            handlers.on("a", handler)
            handlers.on("b", handler)
            handlers.on("a", handler)  # the same again: nothing changes

    run(main)
    assert calls == ["on a", "on b", "off a", "off b"]


async def _async_function(value: int) -> None:
    pass


class _AsyncCallable:
    async def __call__(self, value: int) -> None:
        pass


class _Owner:
    async def method(self, value: int) -> None:
        pass


def _async_callables() -> List[Any]:
    callables = [
        _async_function,
        functools.partial(_async_function),
        _Owner().method,
        _AsyncCallable(),
    ]
    if sys.version_info >= (3, 12):

        def marked(value: int) -> Any:
            return _async_function(value)

        callables.append(inspect.markcoroutinefunction(marked))
    return callables


@pytest.mark.parametrize("callback", _async_callables(), ids=lambda c: type(c).__name__)
def test_on_takes_async_callables_in_every_form(emitter: Any, callback: Any) -> None:
    async def main() -> None:
        async with TaskHandlers(emitter) as handlers:
            handlers.on("x", callback)
            assert handlers_of(emitter, "x") == 1
            emitter.emit("x", 1, 2)
            await settle()
            assert handlers.running() == 0

    run(main)


def _sync(value: int) -> None:
    pass


async def _async_generator() -> Any:
    yield 1


async def _keyword_only(*, required: int) -> None:
    pass


@pytest.mark.parametrize(
    "callback, message",
    [
        (_sync, "async callable"),
        (lambda: None, "async callable"),
        (print, "async callable"),
        (42, "callable"),
        (_async_generator, "async generator"),
        (functools.partial(_async_generator), "async generator"),
        (_keyword_only, "keyword-only"),
    ],
    ids=["sync", "lambda", "builtin", "not-callable", "async-gen", "partial-async-gen", "kw-only"],
)
def test_on_rejects_what_it_cannot_await_with_nothing_registered(
    emitter: Any, callback: Any, message: str
) -> None:
    async def main() -> None:
        async with TaskHandlers(emitter) as handlers:
            with pytest.raises(TypeError, match=message):
                handlers.on("x", callback)
            assert handlers_of(emitter, "x") == 0
            assert repr(handlers).startswith("<TaskHandlers open")

    run(main)


@pytest.mark.parametrize(
    "options, error",
    [
        ({"mode": "parallel"}, ValueError),
        ({"limit": 0}, ValueError),
        ({"limit": 1.5}, TypeError),
        ({"maxsize": 0}, ValueError),
        ({"maxsize": None}, None),  # the owner's
        ({"overflow": "block"}, ValueError),
        ({"mode": "latest", "maxsize": 4}, ValueError),
        ({"mode": "latest", "overflow": "drop_oldest"}, ValueError),
        ({"mode": "latest", "limit": 2}, ValueError),
        ({"mode": "serial", "limit": 2}, ValueError),
    ],
)
def test_on_checks_its_options_before_registering(
    emitter: Any, options: Dict[str, Any], error: Optional[type]
) -> None:
    async def main() -> None:
        async with TaskHandlers(emitter) as handlers:
            if error is None:
                handlers.on("x", _async_function, **options)
                assert handlers_of(emitter, "x") == 1
                return
            with pytest.raises(error):
                handlers.on("x", _async_function, **options)
            assert handlers_of(emitter, "x") == 0

    run(main)


@pytest.mark.parametrize(
    "options, error",
    [
        ({"mode": "parallel"}, ValueError),
        ({"limit": 0}, ValueError),
        ({"maxsize": 0}, ValueError),
        ({"maxsize": 2.0}, TypeError),
        ({"overflow": "block"}, ValueError),
        ({"on_exit": "wait"}, ValueError),
        ({"drain_timeout": "5"}, TypeError),
    ],
)
def test_the_owner_checks_its_options(emitter: Any, options: Dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        TaskHandlers(emitter, **options)


def test_the_owner_needs_an_emitter_with_on_and_off() -> None:
    with pytest.raises(TypeError, match="on.*off"):
        TaskHandlers(object())  # type: ignore[call-overload]


def test_on_with_an_unhashable_event_registers_nothing(emitter: Any) -> None:
    async def main() -> None:
        async with TaskHandlers(emitter) as handlers:
            with pytest.raises(TypeError):
                handlers.on([], _async_function)  # type: ignore[arg-type]
            assert emitter._events == {}

    run(main)


def test_a_failing_on_of_the_emitter_leaves_nothing_registered(EventEmitter: Any) -> None:
    class Flaky(EventEmitter):  # type: ignore[misc]
        def on(self, event: Any, callback: Any = None) -> Any:
            super().on(event, callback)
            raise RuntimeError("on failed after registering")

    flaky = Flaky()

    async def main() -> None:
        async with TaskHandlers(flaky) as handlers:
            with pytest.raises(RuntimeError, match="after registering"):
                handlers.on("x", _async_function)
            assert handlers_of(flaky, "x") == 0
            handlers.on("x", _async_function, mode="serial")  # can be tried again
            raise AssertionError("unreachable")  # pragma: no cover

    with pytest.raises(RuntimeError, match="after registering"):
        run(main)
    assert handlers_of(flaky, "x") == 0


def test_emitter_on_keeps_rejecting_async_callables_and_points_to_task_handlers(
    EventEmitter: Any,
    emitter: Any,
) -> None:
    with pytest.raises(ValueError) as info:
        emitter.on("x", _async_function)
    message = str(info.value)
    if EventEmitter.__module__.startswith("livekit.rtc"):
        assert message == LIVEKIT_ASYNC_MESSAGE  # livekit's own class, untouched
    else:
        assert message.startswith(LIVEKIT_ASYNC_MESSAGE)
        assert "livekit_events.aio.TaskHandlers" in message
    assert handlers_of(emitter, "x") == 0


# ---------------------------------------------------------------------------
# Arguments: the leading ones the handler accepts, as for a sync handler


def test_each_handler_gets_the_leading_arguments_it_accepts(emitter: Any) -> None:
    got: List[Tuple[Any, ...]] = []

    async def none() -> None:
        got.append(("none",))

    async def one(a: Any) -> None:
        got.append(("one", a))

    async def two_with_default(a: Any, b: Any = "default", c: Any = "unused") -> None:
        got.append(("two", a, b))

    async def every(*args: Any) -> None:
        got.append(("every", *args))

    async def keyword_default(a: Any, *, flag: bool = True) -> None:
        got.append(("kw", a, flag))

    class Participant:
        async def on_event(self, a: Any, b: Any) -> None:
            got.append(("method", a, b))

    async def main() -> None:
        async with TaskHandlers(emitter) as handlers:
            for handler in (none, one, two_with_default, every, keyword_default, Participant().on_event):
                handlers.on("x", handler)
            handlers.on("y", two_with_default)
            emitter.emit("x", 1, 2, 3)
            emitter.emit("y", 1)
            await until(lambda: len(got) == 7)

    run(main)
    assert sorted(got, key=repr) == sorted(
        [
            ("none",),
            ("one", 1),
            ("two", 1, 2),
            ("every", 1, 2, 3),
            ("kw", 1, True),
            ("method", 1, 2),
            ("two", 1, "default"),
        ],
        key=repr,
    )


_SIGNATURES = [
    "()",
    "(a)",
    "(a, b)",
    "(a, b=1)",
    "(a=1, b=2, c=3)",
    "(*args)",
    "(a, *args)",
    "(a, /, b)",
    "(a, *, k=1)",
    "(a, **kwargs)",
    "(a, b, /, c=1, *args, k=2, **kw)",
    "(*, k)",
]


def _functions(signature: str) -> Tuple[Any, Any]:
    namespace: Dict[str, Any] = {}
    exec(f"def sync{signature}: pass\nasync def coro{signature}: pass", namespace)
    return namespace["sync"], namespace["coro"]


@pytest.mark.parametrize("signature", _SIGNATURES)
def test_async_handlers_read_their_arity_by_the_sync_rules(signature: str) -> None:
    # _common.read_arity (for async handlers) and describe_callback (for sync
    # ones) are two copies of one rule: they must agree on every shape, also
    # behind partial and bound methods, and fail alike.
    from livekit_events._common import describe_callback, read_arity

    sync, coro = _functions(signature)

    class Holder:
        pass

    pairs = [(sync, coro), (functools.partial(sync), functools.partial(coro))]
    if signature not in ("()", "(*, k)") and not signature.startswith("(*"):
        setattr(Holder, "sync", sync)
        setattr(Holder, "coro", coro)
        holder = Holder()
        pairs.append((getattr(holder, "sync"), getattr(holder, "coro")))
    for sync_form, async_form in pairs:
        try:
            expected: Any = describe_callback(sync_form)
        except TypeError as exc:
            with pytest.raises(TypeError, match="keyword-only"):
                read_arity(async_form)
            assert "keyword-only" in str(exc)
            continue
        assert read_arity(async_form) == expected
        assert read_arity(sync_form) == expected


def test_too_few_arguments_is_a_type_error_from_emit(emitter: Any) -> None:
    # As for a synchronous handler: both emitters let it propagate.
    async def needs_two(a: Any, b: Any) -> None:
        raise AssertionError("never called")  # pragma: no cover

    async def main() -> None:
        async with TaskHandlers(emitter) as handlers:
            handlers.on("x", needs_two)
            with pytest.raises(TypeError, match="needs_two"):
                emitter.emit("x", 1)
            await settle()
            assert handlers.running() == 0

    run(main)


def test_the_signature_is_read_once_at_registration(
    emitter: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: List[Any] = []
    real = inspect.signature

    async def handler(a: Any) -> None:
        pass

    def counting(obj: Any, *args: Any, **kwargs: Any) -> Any:
        if obj is handler:
            reads.append(obj)
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(inspect, "signature", counting)

    async def main() -> None:
        async with TaskHandlers(emitter) as handlers:
            handlers.on("x", handler)
            for n in range(20):
                emitter.emit("x", n, "more")
            await settle()

    run(main)
    assert len(reads) == 1


# ---------------------------------------------------------------------------
# The owner's loop; emissions from other threads


def test_calls_run_on_the_owners_loop_also_when_emitted_from_threads(emitter: Any) -> None:
    seen: List[Tuple[int, Any]] = []

    async def handler(value: int) -> None:
        seen.append((threading.get_ident(), asyncio.get_running_loop()))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with TaskHandlers(emitter) as handlers:
            handlers.on("x", handler)
            emitter.emit("x", 0)
            worker = threading.Thread(target=lambda: [emitter.emit("x", n) for n in range(1, 6)])
            worker.start()
            worker.join()
            await until(lambda: len(seen) == 6)
        assert set(seen) == {(threading.get_ident(), loop)}

    run(main)


def test_a_thread_emitting_in_order_is_served_in_order_in_serial_mode(emitter: Any) -> None:
    got: List[int] = []

    async def handler(value: int) -> None:
        await asyncio.sleep(0)
        got.append(value)

    async def main() -> None:
        async with TaskHandlers(emitter, mode="serial") as handlers:
            handlers.on("x", handler)
            worker = threading.Thread(target=lambda: [emitter.emit("x", n) for n in range(500)])
            worker.start()
            await until(lambda: len(got) == 500)
            worker.join()

    run(main)
    assert got == list(range(500))


@pytest.mark.parametrize("mode", ["concurrent", "serial"])
@pytest.mark.parametrize("overflow", ["raise", "drop_oldest", "drop_newest"])
def test_a_flood_from_another_thread_stays_bounded(
    emitter: Any, log: Log, mode: Any, overflow: Any
) -> None:
    # While the loop is blocked, a thread emits 500 times: at most maxsize
    # emissions wait, and the loop is handed at most one callback.
    got: List[int] = []

    async def handler(value: int) -> None:
        got.append(value)

    def flood() -> None:
        for n in range(500):
            emitter.emit("x", n)

    async def main(loop: CountingLoop) -> None:
        async with TaskHandlers(emitter, mode=mode, maxsize=10, overflow=overflow) as handlers:
            handlers.on("x", handler)
            worker = threading.Thread(target=flood)
            worker.start()
            worker.join()  # the loop is blocked meanwhile
            assert loop.threadsafe_calls <= 1
            assert handlers.queued() == 10
            assert handlers.dropped == 490
            await until(lambda: len(got) == 10)
            await settle()

    run_counting(main)
    assert got == (list(range(490, 500)) if overflow == "drop_oldest" else list(range(10)))
    failures = log.take()
    if overflow == "raise":
        # Each refused emission raised in the emitting thread, and the emitter
        # logged it as a handler failure.
        assert len(failures) == 490
        assert {type(r.exc_info[1]) for r in failures if r.exc_info} == {HandlerOverflowError}
    else:
        assert failures == []


def test_a_flood_from_another_thread_in_latest_mode_runs_the_newest(emitter: Any) -> None:
    got: List[int] = []

    async def handler(value: int) -> None:
        got.append(value)

    async def main(loop: CountingLoop) -> None:
        async with TaskHandlers(emitter, mode="latest") as handlers:
            handlers.on("x", handler)
            worker = threading.Thread(target=lambda: [emitter.emit("x", n) for n in range(2000)])
            worker.start()
            worker.join()
            assert loop.threadsafe_calls <= 1 and handlers.queued() == 1
            await until(lambda: len(got) == 1)
            await settle()

    run_counting(main)
    assert got == [1999]


def test_many_threads_racing_every_emission_is_run_once(emitter: Any) -> None:
    got: List[Tuple[int, int]] = []

    async def handler(n: int, i: int) -> None:
        got.append((n, i))

    async def main() -> None:
        async with TaskHandlers(emitter, maxsize=10_000) as handlers:
            handlers.on("x", handler)
            barrier = threading.Barrier(4)

            def worker(n: int) -> None:
                barrier.wait()
                for i in range(200):
                    emitter.emit("x", n, i)

            threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            await until(lambda: len(got) == 800)
            for thread in threads:
                thread.join()

    run(main)
    assert sorted(got) == [(n, i) for n in range(4) for i in range(200)]


# ---------------------------------------------------------------------------
# Modes


def test_serial_runs_one_call_at_a_time_in_emit_order(emitter: Any) -> None:
    gates = Gates()
    events: List[str] = []

    async def handler(n: int) -> None:
        events.append(f"start {n}")
        await gates.wait(n)
        events.append(f"end {n}")

    async def main() -> None:
        async with TaskHandlers(emitter, mode="serial") as handlers:
            handlers.on("x", handler)
            for n in range(5):
                emitter.emit("x", n)
            await settle()
            assert events == ["start 0"] and handlers.queued() == 4
            for n in (3, 2, 1, 0, 4):  # opening later gates first changes nothing
                gates.open(n)
            await until(lambda: len(events) == 10)

    run(main)
    assert events == [f"{what} {n}" for n in range(5) for what in ("start", "end")]


def test_serial_a_failing_call_does_not_stop_the_queue(emitter: Any, log: Log) -> None:
    got: List[int] = []

    async def handler(n: int) -> None:
        if n == 1:
            raise ValueError("call 1 failed")
        got.append(n)

    async def main() -> None:
        async with TaskHandlers(emitter, mode="serial") as handlers:
            handlers.on("x", handler)
            for n in range(4):
                emitter.emit("x", n)
            await until(lambda: len(got) == 3)

    run(main)
    assert got == [0, 2, 3]
    assert [r.getMessage() for r in log.take()] == ["failed to emit event x"]


@pytest.mark.parametrize("mode", ["concurrent", "serial", "latest"])
def test_a_call_that_raises_cancelled_error_itself_just_ends(emitter: Any, mode: Any) -> None:
    # Not a failure (nothing logged) and, in serial mode, not the end of the
    # queue: only a cancellation of the owner's work stops it.
    got: List[int] = []

    async def handler(n: int) -> None:
        if n == 1:
            lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            lost.cancel()
            await lost  # raises CancelledError; this task was never cancelled
        got.append(n)

    async def main() -> None:
        async with TaskHandlers(emitter, mode=mode) as handlers:
            handlers.on("x", handler)
            for n in range(4):
                emitter.emit("x", n)
                if mode == "latest":
                    await settle()
            await settle()
            if sys.version_info >= (3, 11) or mode != "serial":
                assert got == [0, 2, 3]
            # Before 3.11 asyncio can't tell this from a cancellation of the
            # worker's task: the queue goes on with the next emission.
            emitter.emit("x", 4)
            await settle()
            assert not handlers.closed

    run(main)
    assert got == [0, 2, 3, 4]


def test_serial_calls_that_never_suspend_still_let_the_loop_run(emitter: Any) -> None:
    # A handler that emits its own event never suspends: the worker yields to
    # the loop between rounds, so other tasks keep running.
    count = 0
    ticks: List[int] = []

    async def handler() -> None:
        nonlocal count
        count += 1
        if count < 1000:
            emitter.emit("x")

    async def ticker() -> None:
        while count < 1000:
            ticks.append(count)
            await asyncio.sleep(0)

    async def main() -> None:
        async with TaskHandlers(emitter, mode="serial") as handlers:
            handlers.on("x", handler)
            tick = asyncio.ensure_future(ticker())
            emitter.emit("x")
            await until(lambda: count == 1000)
            await tick

    run(main)
    assert len(ticks) > 100  # the ticker ran between the calls


def test_concurrent_starts_a_call_per_emission_at_once(emitter: Any) -> None:
    gates = Gates()
    running: List[int] = []
    done: List[int] = []

    async def handler(n: int) -> None:
        running.append(n)
        await gates.wait("go")
        done.append(n)

    async def main() -> None:
        async with TaskHandlers(emitter) as handlers:
            handlers.on("x", handler)
            for n in range(20):
                emitter.emit("x", n)
            await settle()
            assert sorted(running) == list(range(20)) and done == []
            assert handlers.running() == 20
            gates.open("go")
            await until(lambda: len(done) == 20)

    run(main)


def test_concurrent_with_a_limit_runs_at_most_limit_calls_in_order(emitter: Any) -> None:
    gates = Gates()
    started: List[int] = []
    active = 0
    peak = 0

    async def handler(n: int) -> None:
        nonlocal active, peak
        started.append(n)
        active += 1
        peak = max(peak, active)
        await gates.wait(n)
        active -= 1

    async def main() -> None:
        async with TaskHandlers(emitter, mode="concurrent", limit=3) as handlers:
            handlers.on("x", handler)
            for n in range(10):
                emitter.emit("x", n)
            await settle()
            assert started == [0, 1, 2] and handlers.queued() == 7
            for n in range(10):
                gates.open(n)
                await settle()
            await until(lambda: len(started) == 10 and active == 0)

    run(main)
    assert started == list(range(10))
    assert peak == 3


def test_latest_cancels_the_running_call_and_runs_only_the_newest(emitter: Any) -> None:
    gates = Gates()
    events: List[str] = []

    async def handler(state: str) -> None:
        events.append(f"start {state}")
        try:
            await gates.wait(state)
        except asyncio.CancelledError:
            events.append(f"cancelled {state}")
            await asyncio.sleep(0)  # cleanup that awaits: the next call waits for it
            events.append(f"cleaned {state}")
            raise
        events.append(f"end {state}")

    async def main() -> None:
        async with TaskHandlers(emitter, mode="latest") as handlers:
            handlers.on("x", handler)
            emitter.emit("x", "a")
            await settle()
            emitter.emit("x", "b")
            emitter.emit("x", "c")  # replaces b before it ever started
            await until(lambda: "start c" in events)
            gates.open("c")
            await until(lambda: "end c" in events)

    run(main)
    assert events == ["start a", "cancelled a", "cleaned a", "start c", "end c"]


def test_latest_a_burst_before_the_first_call_starts_runs_once_with_the_newest(
    emitter: Any,
) -> None:
    got: List[int] = []

    async def handler(n: int) -> None:
        got.append(n)

    async def main() -> None:
        async with TaskHandlers(emitter, mode="latest") as handlers:
            handlers.on("x", handler)
            for n in range(100):
                emitter.emit("x", n)
            await settle()
            assert handlers.dropped == 0  # latest replaces, it doesn't drop

    run(main)
    assert got == [99]


def test_latest_a_call_that_suppresses_its_cancellation_finishes_first(emitter: Any) -> None:
    gates = Gates()
    events: List[str] = []

    async def stubborn(state: str) -> None:
        events.append(f"start {state}")
        try:
            await gates.wait(state)
        except asyncio.CancelledError:
            events.append(f"ignored cancel {state}")
            await gates.wait(f"{state} really")
        events.append(f"end {state}")

    async def main() -> None:
        async with TaskHandlers(emitter, mode="latest") as handlers:
            handlers.on("x", stubborn)
            emitter.emit("x", "a")
            await settle()
            emitter.emit("x", "b")
            await settle()
            assert events == ["start a", "ignored cancel a"]  # b waits: never two at once
            gates.open("a really")
            gates.open("b")
            await until(lambda: "end b" in events)

    run(main)
    assert events == ["start a", "ignored cancel a", "end a", "start b", "end b"]


def test_modes_are_chosen_per_handler(emitter: Any) -> None:
    gates = Gates()
    events: List[str] = []

    async def serial(n: int) -> None:
        events.append(f"serial {n}")
        await gates.wait(("serial", n))

    async def concurrent(n: int) -> None:
        events.append(f"concurrent {n}")
        await gates.wait(("concurrent", n))

    async def main() -> None:
        async with TaskHandlers(emitter, mode="serial") as handlers:
            handlers.on("x", serial)
            handlers.on("x", concurrent, mode="concurrent")
            for n in range(3):
                emitter.emit("x", n)
            await settle()
            assert sorted(events) == ["concurrent 0", "concurrent 1", "concurrent 2", "serial 0"]

    run(main)


# ---------------------------------------------------------------------------
# Overflow on the loop's thread


@pytest.mark.parametrize("mode, options", [("serial", {}), ("concurrent", {"limit": 2})])
def test_overflow_drop_oldest_and_drop_newest(emitter: Any, mode: Any, options: Any) -> None:
    gates = Gates()
    got: Dict[str, List[int]] = {"drop_oldest": [], "drop_newest": []}

    def make(policy: str) -> Any:
        async def handler(n: int) -> None:
            await gates.wait("go")
            got[policy].append(n)

        return handler

    async def main() -> None:
        async with TaskHandlers(emitter, mode=mode, maxsize=3, **options) as handlers:
            for policy in got:
                handlers.on("x", make(policy), overflow=policy)
            for n in range(10):
                emitter.emit("x", n)
            await settle()
            running = 1 if mode == "serial" else 2
            assert handlers.queued() == 2 * 3 and handlers.dropped == 2 * (10 - running - 3)
            gates.open("go")
            await until(lambda: sum(map(len, got.values())) == 2 * (running + 3))

    run(main)
    running = list(range(1 if mode == "serial" else 2))
    assert sorted(got["drop_oldest"]) == running + [7, 8, 9]
    assert sorted(got["drop_newest"]) == running + [len(running), len(running) + 1, len(running) + 2]


def test_overflow_raise_is_a_handler_failure_of_that_emit(emitter: Any, log: Log) -> None:
    gates = Gates()
    got: List[Any] = []

    async def slow(n: int) -> None:
        await gates.wait("go")
        got.append(("slow", n))

    def fast(n: int) -> None:  # a sync handler registered after the relay
        got.append(("sync", n))

    async def main() -> None:
        async with TaskHandlers(emitter, mode="serial", maxsize=2) as handlers:
            handlers.on("x", slow)
            emitter.on("x", fast)
            for n in range(5):
                emitter.emit("x", n)  # 0 runs, 1 and 2 wait, 3 and 4 overflow
            assert handlers_of(emitter, "x") == 2  # still registered
            gates.open("go")
            await until(lambda: len(got) == 8)
            emitter.off("x", fast)

    run(main)
    assert [n for what, n in got if what == "sync"] == list(range(5))  # the others ran
    assert [n for what, n in got if what == "slow"] == [0, 1, 2]
    failures = log.take()
    assert [r.getMessage() for r in failures] == ["failed to emit event x"] * 2
    errors = [r.exc_info[1] for r in failures if r.exc_info]
    assert all(isinstance(e, HandlerOverflowError) and e.maxsize == 2 for e in errors)


# ---------------------------------------------------------------------------
# Failures


def _failure_record(log: Log) -> logging.LogRecord:
    (record,) = log.take()
    return record


def test_a_failure_is_logged_as_a_sync_handlers_failure_is(impl: Any, emitter: Any, log: Log) -> None:
    def sync_handler(value: int) -> None:
        raise ValueError(f"sync failed {value}")

    async def async_handler(value: int) -> None:
        await asyncio.sleep(0)
        raise ValueError(f"async failed {value}")

    emitter.on("sync", sync_handler)
    emitter.emit("sync", 1)
    sync_record = _failure_record(log)

    async def main() -> None:
        async with TaskHandlers(emitter) as handlers:
            handlers.on("async", async_handler)
            emitter.emit("async", 1)
            await until(lambda: bool(log.records()[log.taken :]))

    run(main)
    record = _failure_record(log)
    assert record.name == "livekit.events"
    assert record.levelno == logging.ERROR
    assert record.msg == "failed to emit event %s" and record.args == ("async",)
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
    assert "async_handler" in "".join(logging.Formatter().formatException(record.exc_info))
    if impl.name != "livekit":  # livekit logs on its own logger, with an f-string
        assert (record.name, record.levelno, record.msg) == (
            sync_record.name,
            sync_record.levelno,
            sync_record.msg,
        )


def test_after_a_failure_other_work_goes_on(emitter: Any, log: Log) -> None:
    got: List[int] = []

    async def flaky(n: int) -> None:
        if n % 2:
            raise RuntimeError(f"odd {n}")
        got.append(n)

    async def main() -> None:
        async with TaskHandlers(emitter) as handlers:
            handlers.on("x", flaky)
            for n in range(6):
                emitter.emit("x", n)
            await until(lambda: len(got) == 3)
            await settle()
            assert not handlers.closed

    run(main)
    assert sorted(got) == [0, 2, 4]
    assert len(log.take()) == 3


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("mode", ["concurrent", "serial", "latest"])
def test_keyboard_interrupt_or_system_exit_cancels_the_owner_and_is_raised_at_exit(
    emitter: Any, error: type, mode: Any
) -> None:
    gates = Gates()
    events: List[str] = []

    async def other() -> None:
        try:
            await gates.wait("never")
        except asyncio.CancelledError:
            events.append("other cancelled")
            raise

    async def fatal() -> None:
        await asyncio.sleep(0)
        raise error("from a handler")

    async def block() -> None:
        with pytest.raises(error, match="from a handler"):
            async with TaskHandlers(emitter, mode=mode) as handlers:
                handlers.on("other", other, mode="concurrent")
                handlers.on("fatal", fatal)
                emitter.emit("other")
                await settle()
                emitter.emit("fatal")
                await gates.wait("forever")  # the block is cancelled
        events.append("left")
        assert handlers.closed
        assert handlers_of(emitter, "fatal") == handlers_of(emitter, "other") == 0
        assert_not_cancelled()  # the block's task carries no request of ours
        await settle()
        events.append("after")

    async def main() -> None:
        await finishes(block())

    run(main)
    assert events == ["other cancelled", "left", "after"]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory is 3.12+")
def test_a_fatal_error_raised_inside_emit_is_raised_when_the_block_exits(emitter: Any) -> None:
    # With an eager task factory the handler runs inside emit, in the block's
    # own task: the cancellation fatal() requests is still pending when the
    # body ends without awaiting.  It is taken at exit, not left behind.
    async def fatal() -> None:
        raise KeyboardInterrupt("inside emit")

    after: List[str] = []

    async def block() -> None:
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
        with pytest.raises(KeyboardInterrupt, match="inside emit"):
            async with TaskHandlers(emitter) as handlers:
                handlers.on("x", fatal)
                emitter.emit("x")
                after.append("emit returned")
        assert_not_cancelled()
        await asyncio.sleep(0)  # no stray cancellation
        after.append("after")

    async def main() -> None:
        await finishes(block())

    run(main)
    assert after == ["emit returned", "after"]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory is 3.12+")
@pytest.mark.parametrize("mode", ["concurrent", "serial", "latest"])
def test_every_mode_works_with_an_eager_task_factory(emitter: Any, mode: Any) -> None:
    got: List[int] = []

    async def handler(n: int) -> None:
        got.append(n)
        if n % 2:
            await asyncio.sleep(0)

    async def main() -> None:
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
        async with TaskHandlers(emitter, mode=mode) as handlers:
            handlers.on("x", handler)
            for n in range(10):
                emitter.emit("x", n)
                await settle()
            assert handlers.running() == 0
            assert all(not r.tasks for r in handlers._state.all_registrations())

    run(main)
    assert got == list(range(10))


def test_a_fatal_error_while_draining_is_raised_at_exit(emitter: Any) -> None:
    gates = Gates()

    async def slow() -> None:
        await gates.wait("never")

    async def fatal() -> None:
        raise SystemExit(3)

    async def block() -> None:
        with pytest.raises(SystemExit):
            async with TaskHandlers(emitter, on_exit="drain") as handlers:
                handlers.on("slow", slow)
                handlers.on("fatal", fatal)
                emitter.emit("slow")
                emitter.emit("fatal")  # starts during the drain
        assert_not_cancelled()
        await asyncio.sleep(0)

    async def main() -> None:
        await finishes(block())

    run(main)


def test_a_fatal_error_without_a_block_leaves_the_loop_as_asyncio_does(emitter: Any) -> None:
    owners: List[TaskHandlers[Any]] = []

    async def fatal() -> None:
        raise KeyboardInterrupt("no block")

    async def main() -> None:
        handlers = TaskHandlers(emitter)
        owners.append(handlers)
        handlers.on("x", fatal)
        emitter.emit("x")
        await asyncio.Event().wait()  # pragma: no cover - interrupted

    with pytest.raises(KeyboardInterrupt, match="no block"):
        asyncio.run(main(), debug=True)
    assert owners[0].closed and handlers_of(emitter, "x") == 0


# ---------------------------------------------------------------------------
# Cleanup on every way out


def test_leaving_the_block_cancels_running_calls_and_drops_queued_ones(emitter: Any) -> None:
    gates = Gates()
    events: List[str] = []

    async def handler(n: int) -> None:
        events.append(f"start {n}")
        try:
            await gates.wait(n)
        except asyncio.CancelledError:
            events.append(f"cancelled {n}")
            raise

    async def main() -> None:
        async with TaskHandlers(emitter, mode="serial") as handlers:
            handlers.on("x", handler)
            for n in range(3):
                emitter.emit("x", n)
            await settle()
        # Left: the running call was cancelled and awaited; the queued ones
        # never started (no coroutine was ever created for them).
        assert events == ["start 0", "cancelled 0"]
        assert handlers.closed and handlers.running() == handlers.queued() == 0
        assert handlers_of(emitter, "x") == 0
        emitter.emit("x", 99)  # nothing happens any more
        await settle()

    run(main)
    assert events == ["start 0", "cancelled 0"]


def test_on_exit_drain_lets_queued_and_running_calls_finish(emitter: Any) -> None:
    got: List[int] = []

    async def handler(n: int) -> None:
        await asyncio.sleep(0)
        got.append(n)

    async def main() -> None:
        async with TaskHandlers(emitter, mode="serial", on_exit="drain") as handlers:
            handlers.on("x", handler)
            for n in range(5):
                emitter.emit("x", n)
        assert got == list(range(5))

    run(main)


def test_on_exit_drain_cancels_what_is_left_after_the_timeout(emitter: Any) -> None:
    events: List[str] = []

    async def quick() -> None:
        await asyncio.sleep(0)
        events.append("quick done")

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("stuck cancelled")
            raise

    async def main() -> None:
        async with TaskHandlers(emitter, on_exit="drain", drain_timeout=0.05) as handlers:
            handlers.on("x", quick)
            handlers.on("x", stuck)
            emitter.emit("x")

    run(main)
    assert sorted(events) == ["quick done", "stuck cancelled"]


@pytest.mark.parametrize(
    "mode, options",
    [("concurrent", {}), ("concurrent", {"limit": 2}), ("serial", {}), ("latest", {})],
    ids=["concurrent", "concurrent-limit", "serial", "latest"],
)
@pytest.mark.parametrize("leave", ["at_once", "while_the_last_call_runs"])
@pytest.mark.parametrize("how", ["on_exit", "aclose"])
def test_a_draining_exit_finishes_running_calls_and_runs_waiting_ones_in_every_mode(
    emitter: Any, mode: Any, options: Dict[str, Any], leave: str, how: str
) -> None:
    # Emit 1, let it start, emit 2..9, leave.  The drain lets every running
    # call finish and runs what waits.  In latest mode, emission 2 replaced
    # call 1 before the exit (that is the mode) and 9 is the one that waits:
    # 9 runs to its end, whether the exit came before it started or while it
    # ran.
    gates = Gates()
    events: List[str] = []

    async def handler(n: int) -> None:
        events.append(f"start {n}")
        try:
            await asyncio.sleep(0)
            await gates.wait(n)
        except asyncio.CancelledError:
            events.append(f"cancelled {n}")
            raise
        events.append(f"done {n}")

    async def open_when_nine_has_run() -> None:
        await until(lambda: "start 9" in events)
        await settle()
        gates.open(9)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        on_exit = "drain" if how == "on_exit" else "cancel"
        async with TaskHandlers(emitter, mode=mode, on_exit=on_exit, **options) as handlers:
            handlers.on("x", handler)
            emitter.emit("x", 1)
            await until(lambda: "start 1" in events)
            for n in range(2, 10):
                emitter.emit("x", n)
            if leave == "while_the_last_call_runs":
                for n in range(1, 9):
                    gates.open(n)
                await until(lambda: "start 9" in events)
                await settle()
                assert "done 9" not in events
            else:  # the gates open once the exit has begun
                for n in range(1, 9):
                    loop.call_soon(gates.open, n)
            # Call 9 goes on only after it has run for a while, in the drain.
            opener = asyncio.ensure_future(open_when_nine_has_run())
            if how == "aclose":
                await handlers.aclose(drain=True)
        assert handlers.running() == handlers.queued() == 0
        await opener

    run(main)
    if mode == "latest":
        assert events == ["start 1", "cancelled 1", "start 9", "done 9"]
    else:
        assert not [e for e in events if e.startswith("cancelled")], events
        done = sorted(e for e in events if e.startswith("done"))
        assert done == [f"done {n}" for n in range(1, 10)]
        if mode == "serial":
            assert events == [f"{what} {n}" for n in range(1, 10) for what in ("start", "done")]


def test_aclose_drain_and_timeout_and_close_from_inside_the_block(emitter: Any) -> None:
    got: List[int] = []

    async def handler(n: int) -> None:
        await asyncio.sleep(0)
        got.append(n)

    async def main() -> None:
        async with TaskHandlers(emitter, mode="serial") as handlers:
            handlers.on("x", handler)
            for n in range(3):
                emitter.emit("x", n)
            await handlers.aclose(drain=True, timeout=60)
            assert got == [0, 1, 2] and handlers.closed
            with pytest.raises(RuntimeError, match="closed"):
                handlers.on("x", handler)
            await handlers.aclose()  # again: nothing to do

    run(main)


def test_an_exception_in_the_block_cancels_even_with_on_exit_drain(emitter: Any) -> None:
    events: List[str] = []

    async def handler() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def main() -> None:
        with pytest.raises(LookupError, match="body"):
            async with TaskHandlers(emitter, on_exit="drain") as handlers:
                handlers.on("x", handler)
                emitter.emit("x")
                await settle()
                raise LookupError("body")
        assert handlers_of(emitter, "x") == 0

    run(main)
    assert events == ["cancelled"]


def test_break_out_of_the_block(emitter: Any) -> None:
    events: List[str] = []

    async def handler(n: int) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append(f"cancelled {n}")
            raise

    async def main() -> None:
        for n in range(3):
            async with TaskHandlers(emitter) as handlers:
                handlers.on("x", handler)
                emitter.emit("x", n)
                await settle()
                if n == 1:
                    break
        assert handlers_of(emitter, "x") == 0

    run(main)
    assert events == ["cancelled 0", "cancelled 1"]


def test_cancelling_the_task_in_the_block(emitter: Any) -> None:
    events: List[str] = []

    async def handler() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("handler cancelled")
            raise

    async def body() -> None:
        async with TaskHandlers(emitter) as handlers:
            handlers.on("x", handler)
            emitter.emit("x")
            await asyncio.Event().wait()

    async def main() -> None:
        task = asyncio.ensure_future(body())
        await settle()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert handlers_of(emitter, "x") == 0

    run(main)
    assert events == ["handler cancelled"]


def test_a_timeout_around_the_block(emitter: Any) -> None:
    events: List[str] = []

    async def handler() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("handler cancelled")
            raise

    async def body() -> None:
        async with TaskHandlers(emitter, on_exit="drain") as handlers:
            handlers.on("x", handler)
            emitter.emit("x")
            await asyncio.Event().wait()

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(body(), timeout=0.02)
        assert handlers_of(emitter, "x") == 0
        if sys.version_info >= (3, 11):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.02):
                    await body()
            assert handlers_of(emitter, "x") == 0

    run(main)
    assert events == ["handler cancelled"] * (2 if sys.version_info >= (3, 11) else 1)


def test_a_timeout_around_a_draining_exit(emitter: Any) -> None:
    # The drain itself is interrupted: the work is cancelled and awaited, and
    # the cancellation (the timeout) propagates.
    events: List[str] = []

    async def handler() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("handler cancelled")
            raise

    async def body() -> None:
        async with TaskHandlers(emitter, on_exit="drain") as handlers:
            handlers.on("x", handler)
            emitter.emit("x")

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(body(), timeout=0.02)
        assert handlers_of(emitter, "x") == 0

    run(main)
    assert events == ["handler cancelled"]


def test_close_cancels_without_waiting_and_nothing_is_left_pending(emitter: Any) -> None:
    events: List[str] = []

    async def handler() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def main() -> None:
        handlers = TaskHandlers(emitter)
        handlers.on("x", handler)
        emitter.emit("x")
        await settle()
        handlers.close()
        handlers.close()  # idempotent
        assert handlers.closed and handlers_of(emitter, "x") == 0
        await settle()
        assert events == ["cancelled"] and handlers.running() == 0

    run(main)


def test_close_from_another_thread(emitter: Any) -> None:
    events: List[str] = []

    async def handler() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def main() -> None:
        async with TaskHandlers(emitter) as handlers:
            handlers.on("x", handler)
            emitter.emit("x")
            await settle()
            closer = threading.Thread(target=handlers.close)
            closer.start()
            closer.join()
            assert handlers_of(emitter, "x") == 0
            await until(lambda: events == ["cancelled"])

    run(main)


def test_garbage_collecting_the_owner_removes_the_handlers(emitter: Any) -> None:
    events: List[str] = []

    async def handler() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def main() -> None:
        handlers = TaskHandlers(emitter, mode="serial")
        handlers.on("x", handler)
        emitter.emit("x")
        emitter.emit("x")  # queued
        await settle()
        assert handlers_of(emitter, "x") == 1
        del handlers
        gc.collect()
        assert handlers_of(emitter, "x") == 0
        await settle()
        assert events == ["cancelled"]  # the queued call never started

    run(main)


def test_garbage_collecting_the_owner_in_another_thread(emitter: Any) -> None:
    events: List[str] = []

    async def handler() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def main() -> None:
        box: List[Any] = [TaskHandlers(emitter)]
        box[0].on("x", handler)
        emitter.emit("x")
        await settle()

        def drop() -> None:
            box.clear()  # the last reference dies in this thread
            gc.collect()

        dropper = threading.Thread(target=drop)
        dropper.start()
        dropper.join()
        assert handlers_of(emitter, "x") == 0
        await until(lambda: events == ["cancelled"])

    run(main)


@pytest.mark.parametrize("mode", ["concurrent", "serial", "latest"])
def test_an_owner_left_open_when_asyncio_run_ends_leaves_nothing_pending(
    emitter: Any, mode: Any
) -> None:
    # asyncio.run cancels every task at its end: no call may start another
    # task then (it would be destroyed pending), and the owner, collected
    # after the loop closed, must not touch the closed loop.
    events: List[str] = []
    owners: List[Any] = []

    async def handler(n: int) -> None:
        events.append(f"start {n}")
        await asyncio.Event().wait()

    async def main() -> None:
        handlers = TaskHandlers(emitter, mode=mode, limit=1 if mode == "concurrent" else None)
        owners.append(handlers)
        handlers.on("x", handler)
        for n in range(3):
            emitter.emit("x", n)
            await settle()

    asyncio.run(main(), debug=True)
    # latest: each emission replaced the call before it; the others: the
    # first call was running, the rest waited and never started.
    assert events == (["start 0", "start 1", "start 2"] if mode == "latest" else ["start 0"])
    emitter.emit("x", 3)  # after the loop closed: dropped
    owners.clear()
    gc.collect()
    assert handlers_of(emitter, "x") == 0


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="before 3.11 asyncio can't tell the two cancellations apart"
)
def test_latest_replaced_while_asyncio_run_ends_starts_nothing_more(emitter: Any) -> None:
    events: List[str] = []

    async def handler(n: int) -> None:
        events.append(f"start {n}")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:  # replaced: finish up first...
            events.append(f"replaced {n}")
            await asyncio.Event().wait()  # ... until asyncio.run cancels it again

    owners: List[Any] = []

    async def main() -> None:
        handlers = TaskHandlers(emitter, mode="latest")
        owners.append(handlers)
        handlers.on("x", handler)
        emitter.emit("x", 0)
        await settle()
        emitter.emit("x", 1)  # call 0 is asked to stop; asyncio.run cancels it too

    asyncio.run(main(), debug=True)
    assert events == ["start 0", "replaced 0"]  # 1 never started: the loop was ending
    owners.clear()
    gc.collect()


def _destroyed_pending(caplog: pytest.LogCaptureFixture) -> List[str]:
    messages = [r.getMessage() for r in caplog.records]
    return [m for m in messages if "destroyed but it is pending" in m]


@pytest.mark.parametrize("mode", ["concurrent", "serial", "latest"])
@pytest.mark.parametrize("source", ["cancelled_task", "thread", "executor"])
def test_emissions_while_asyncio_run_shuts_down_start_no_task(
    emitter: Any, mode: Any, source: str, caplog: pytest.LogCaptureFixture
) -> None:
    # An owner left open, with nothing running.  asyncio.run ends: it cancels
    # every task, then shuts down the async generators and the default
    # executor, then closes the loop.  An emission in that time, from a
    # cancelled task's finally block, from a thread whose callback the loop
    # runs then, or from an executor job the shutdown waits for, must not
    # start a call: its task would outlive the loop ("Task was destroyed but
    # it is pending!").
    events: List[str] = []
    calls: List["asyncio.Task[Any]"] = []
    owners: List[Any] = []
    background: List[Any] = []
    release_job = threading.Event()

    async def handler(value: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        calls.append(task)
        events.append(f"start {value}")
        await asyncio.Event().wait()

    def emit_in_a_thread(value: str) -> None:
        thread = threading.Thread(target=emitter.emit, args=("x", value))
        thread.start()
        thread.join()

    def job() -> None:  # in the default executor
        release_job.wait(timeout=60)
        emitter.emit("x", "executor")

    async def emitting() -> None:
        try:
            await asyncio.Event().wait()
        finally:  # asyncio.run cancels this task when main() has returned
            if source == "cancelled_task":
                emitter.emit("x", "finally")
            elif source == "thread":
                emit_in_a_thread("thread")
            else:
                release_job.set()
            await settle()  # the loop runs what the emission handed it

    async def main() -> None:
        handlers = TaskHandlers(emitter, mode=mode, limit=1 if mode == "concurrent" else None)
        owners.append(handlers)
        handlers.on("x", handler)
        emitter.emit("x", "before")  # a call that runs and ends normally
        await until(lambda: events == ["start before"])
        for task in calls:
            task.cancel()
        await until(lambda: handlers.running() == 0)
        background.append(asyncio.ensure_future(emitting()))
        if source == "executor":
            background.append(asyncio.get_running_loop().run_in_executor(None, job))
        await settle()

    asyncio.run(main(), debug=True)
    assert events == ["start before"]  # nothing started while the loop was ending
    assert all(task.done() for task in calls)
    assert owners[0].running() == owners[0].queued() == 0
    owners.clear()
    calls.clear()
    gc.collect()
    assert _destroyed_pending(caplog) == []
    assert handlers_of(emitter, "x") == 0


def test_an_owner_whose_loop_ends_before_its_watch_first_ran(
    emitter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # SystemExit leaves the loop before the owner's watch task ever ran:
    # asyncio.run cancels it unstarted.  No emission starts a call from
    # then on, and the owner closes.
    events: List[str] = []
    owners: List[Any] = []
    background: List[Any] = []

    async def handler(value: str) -> None:
        events.append(value)

    async def emitting() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            emitter.emit("x", "finally")

    def leave_now() -> None:
        raise SystemExit("at once")

    async def main() -> None:
        background.append(asyncio.ensure_future(emitting()))
        await settle()
        asyncio.get_running_loop().call_soon(leave_now)  # before the watch's first step
        handlers = TaskHandlers(emitter)
        owners.append(handlers)
        handlers.on("x", handler)
        await asyncio.Event().wait()  # pragma: no cover - interrupted

    with pytest.raises(SystemExit, match="at once"):
        asyncio.run(main(), debug=True)
    assert events == []
    assert owners[0].closed and handlers_of(emitter, "x") == 0
    owners.clear()
    gc.collect()
    assert _destroyed_pending(caplog) == []


@pytest.mark.parametrize("mode", ["concurrent", "serial", "latest"])
@pytest.mark.parametrize("then", ["runs_again", "is_closed"])
def test_an_emission_while_the_loop_is_stopped_starts_no_task(
    emitter: Any, mode: Any, then: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The loop's own thread emits between two runs of the loop: no task is
    # started then (nothing may ever run it), the emission waits.  If the
    # loop runs again, the call runs; if it is closed instead, nothing is
    # left pending.
    got: List[str] = []
    owners: List[Any] = []

    async def handler(value: str) -> None:
        got.append(value)

    async def setup() -> None:
        handlers = TaskHandlers(emitter, mode=mode)
        owners.append(handlers)
        handlers.on("x", handler)

    async def later() -> None:
        await until(lambda: got == ["stopped"])
        await owners[0].aclose()

    loop = asyncio.new_event_loop()
    loop.set_debug(True)
    try:
        loop.run_until_complete(setup())
        emitter.emit("x", "stopped")
        assert owners[0].running() == 0 and owners[0].queued() == 1
        if then == "runs_again":
            loop.run_until_complete(later())
    finally:
        loop.close()
    owners.clear()
    gc.collect()
    assert got == (["stopped"] if then == "runs_again" else [])
    assert _destroyed_pending(caplog) == []


def test_an_owner_collected_after_its_loop_was_closed_with_tasks_pending(emitter: Any) -> None:
    # The loop was closed without cancelling its tasks; collecting the owner
    # then must not try to cancel anything on the closed loop.
    owners: List[Any] = []

    async def handler() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        handlers = TaskHandlers(emitter)
        owners.append(handlers)
        handlers.on("x", handler)
        emitter.emit("x")
        await settle()
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            # Abandoned on purpose: spare the log asyncio writes for a task
            # destroyed while pending (the switch asyncio uses itself).
            task._log_destroy_pending = False  # type: ignore[attr-defined]

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    owners.clear()
    gc.collect()
    assert handlers_of(emitter, "x") == 0
    del loop
    gc.collect()


def test_the_emitter_never_keeps_the_owner_alive(emitter: Any) -> None:
    import weakref

    async def main() -> None:
        handlers = TaskHandlers(emitter)
        handlers.on("x", _async_function)
        ref = weakref.ref(handlers)
        del handlers
        gc.collect()
        assert ref() is None and handlers_of(emitter, "x") == 0
        await settle()  # its watch task returns at the loop's next iteration

    run(main)


def test_off_removes_one_handler_and_cancels_its_calls(emitter: Any) -> None:
    events: List[str] = []

    def make(name: str) -> Any:
        async def handler() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                events.append(f"{name} cancelled")
                raise

        return handler

    first, second = make("first"), make("second")

    async def main() -> None:
        async with TaskHandlers(emitter) as handlers:
            handlers.on("x", first)
            handlers.on("x", second)
            emitter.emit("x")
            await settle()
            handlers.off("x", first)
            handlers.off("x", first)  # unknown now: nothing
            await settle()
            assert events == ["first cancelled"] and handlers_of(emitter, "x") == 1
        assert events == ["first cancelled", "second cancelled"]

    run(main)


def test_binding_to_a_loop(emitter: Any) -> None:
    # Made outside a loop: bound when entered (or by its first on() in a loop).
    handlers = TaskHandlers(emitter)
    with pytest.raises(RuntimeError, match="from a coroutine"):
        handlers.on("x", _async_function)
    assert handlers_of(emitter, "x") == 0
    owners: List[TaskHandlers[Any]] = []

    async def enter() -> None:
        async with handlers:
            handlers.on("x", _async_function)
            with pytest.raises(RuntimeError, match="already entered"):
                async with handlers:
                    pass  # pragma: no cover
        owners.append(TaskHandlers(emitter))  # bound to this loop at creation

    run(enter)

    async def elsewhere() -> None:
        with pytest.raises(RuntimeError, match="another event loop"):
            async with owners[0]:
                pass  # pragma: no cover
        owners[0].close()

    run(elsewhere)


@pytest.mark.parametrize("how", ["aclose", "close", "off"])
def test_a_handler_may_close_its_owner_and_finish_its_own_call(emitter: Any, how: str) -> None:
    # Closing (or removing its own handler) from inside a call cancels the
    # other work, never the caller: it asked, and goes on to its end.
    events: List[str] = []
    owners: List[Any] = []

    async def other() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("other cancelled")
            raise

    async def closer() -> None:
        handlers = owners[0]
        if how == "aclose":
            await handlers.aclose()
        elif how == "close":
            handlers.close()
        else:
            handlers.off("close", closer)
        await asyncio.sleep(0)
        events.append("closer finished")

    async def main() -> None:
        async with TaskHandlers(emitter) as handlers:
            owners.append(handlers)
            handlers.on("other", other, mode="serial")
            handlers.on("close", closer)
            emitter.emit("other")
            await settle()
            emitter.emit("close")
            await until(lambda: "closer finished" in events)

    async def checked() -> None:
        await finishes(main())

    run(checked)
    if how == "off":
        assert events == ["closer finished", "other cancelled"]  # the other at exit
    else:
        assert sorted(events) == ["closer finished", "other cancelled"]


def test_an_off_that_raises_at_exit_still_removes_and_cancels_the_rest(EventEmitter: Any) -> None:
    events: List[str] = []

    class Sticky(EventEmitter):  # type: ignore[misc]
        def off(self, event: Any, callback: Any) -> None:
            super().off(event, callback)
            if event == "a":
                raise RuntimeError("off failed")

    sticky = Sticky()

    async def handler(name: str) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append(f"{name} cancelled")
            raise

    async def main() -> None:
        with pytest.raises(RuntimeError, match="off failed"):
            async with TaskHandlers(sticky) as handlers:
                handlers.on("a", handler)
                handlers.on("b", handler)
                sticky.emit("a", "a")
                sticky.emit("b", "b")
                await settle()
        assert handlers.closed and handlers.running() == 0
        assert handlers_of(sticky, "a") == handlers_of(sticky, "b") == 0

    run(main)
    assert sorted(events) == ["a cancelled", "b cancelled"]


def test_registering_from_threads_while_the_loop_emits(emitter: Any) -> None:
    calls: List[int] = []

    def make(n: int) -> Any:
        async def handler() -> None:
            calls.append(n)

        return handler

    async def main() -> None:
        async with TaskHandlers(emitter) as handlers:
            handlers.on("x", make(-1))  # binds the loop
            callbacks = [make(n) for n in range(200)]
            barrier = threading.Barrier(4)

            def register(part: int) -> None:
                barrier.wait()
                for callback in callbacks[part::4]:
                    handlers.on("x", callback)
                    handlers.on("x", callback)  # again: nothing changes

            threads = [threading.Thread(target=register, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            while any(thread.is_alive() for thread in threads):
                emitter.emit("x")
                await asyncio.sleep(0)
            for thread in threads:
                thread.join()
            await settle()
            calls.clear()
            emitter.emit("x")
            await until(lambda: len(calls) == 201)
            assert handlers_of(emitter, "x") == 201

    run(main)
    assert sorted(calls) == list(range(-1, 200))


class BrokenLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        raise RuntimeError("the logging handler broke")


def test_a_logging_handler_that_raises_is_reported_to_the_loop(emitter: Any, log: Log) -> None:
    got: List[int] = []

    async def flaky(n: int) -> None:
        if n == 0:
            raise ValueError("call failed")
        got.append(n)

    async def main() -> None:
        logger = logging.getLogger("livekit.events")
        broken = BrokenLogHandler()
        logger.addHandler(broken)
        try:
            async with TaskHandlers(emitter, mode="serial") as handlers:
                handlers.on("x", flaky)
                emitter.emit("x", 0)
                emitter.emit("x", 1)
                await until(lambda: got == [1])
        finally:
            logger.removeHandler(broken)

    run(main)
    # The broken handler raised before the record reached any other handler:
    # what is left is the loop's report, with both exceptions.
    (record,) = log.take()
    assert record.name == "asyncio"
    assert "logging an async handler's failure failed" in record.getMessage()
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "the logging handler broke"
    assert str(record.exc_info[1].__context__) == "call failed"


# ---------------------------------------------------------------------------
# Re-entrancy: code that runs while an emission is being queued or dropped


class Reemitter:
    """An emitted argument whose finalizer emits on the same emitter."""

    def __init__(self, emitter: Any, fired: List[str]) -> None:
        self.emitter = emitter
        self.fired = fired

    def __del__(self) -> None:
        self.fired.append("finalizer")
        self.emitter.emit("x", None)


def _in_a_thread(target: Callable[[], None]) -> None:
    """Run ``target`` in a thread that must end (a deadlock fails, never hangs)."""
    errors: List[BaseException] = []

    def wrapper() -> None:
        try:
            target()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=wrapper, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "deadlocked"
    if errors:
        raise errors[0]


@pytest.mark.parametrize("mode", ["serial", "latest", "concurrent"])
def test_a_dropped_argument_whose_finalizer_emits_again(emitter: Any, mode: Any) -> None:
    # drop_oldest (and latest's replacement, and close()) let go of queued
    # arguments: their finalizers run outside any lock of the owner's.
    fired: List[str] = []
    got: List[Any] = []

    async def handler(value: Any) -> None:
        got.append(type(value).__name__)
        await asyncio.Event().wait()

    async def main() -> None:
        options: Dict[str, Any] = {} if mode == "latest" else {"maxsize": 1, "overflow": "drop_oldest"}
        async with TaskHandlers(emitter, mode=mode, limit=1 if mode == "concurrent" else None) as handlers:
            handlers.on("x", handler, **options)
            emitter.emit("x", "running")
            await settle()
            emitter.emit("x", Reemitter(emitter, fired))  # waits
            emitter.emit("x", "newer")  # drops the Reemitter: its finalizer emits
            assert fired == ["finalizer"]
            emitter.emit("x", Reemitter(emitter, fired))  # waits; dropped when the block exits

    _in_a_thread(lambda: run(main))
    assert fired == ["finalizer", "finalizer"]
    assert got == ["str"]


@pytest.mark.parametrize("ending", ["asyncio_run", "loop_closed"])
def test_an_owner_left_open_drops_what_waited_when_its_loop_ends(emitter: Any, ending: str) -> None:
    # An owner left open, a call running and an emission waiting, whose
    # argument's finalizer emits again.  asyncio.run cancels the loop's
    # tasks at its end: the owner closes then and drops the queue.  A loop
    # closed without that: the next emission finds it closed and drops the
    # queue.
    fired: List[str] = []
    owners: List[Any] = []

    async def handler(value: Any) -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        handlers = TaskHandlers(emitter, mode="serial")
        owners.append(handlers)
        handlers.on("x", handler)
        emitter.emit("x", "running")
        emitter.emit("x", Reemitter(emitter, fired))
        await settle()
        if ending == "loop_closed":
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                # Abandoned on purpose: spare the log asyncio writes for a
                # task destroyed while pending.
                task._log_destroy_pending = False  # type: ignore[attr-defined]

    def scenario() -> None:
        if ending == "asyncio_run":
            asyncio.run(main(), debug=True)
            assert fired == ["finalizer"] and owners[0].closed
        else:
            loop = asyncio.new_event_loop()
            loop.set_debug(True)
            try:
                loop.run_until_complete(main())
            finally:
                loop.close()
            assert fired == [] and not owners[0].closed
            emitter.emit("x", "after")  # nothing can start: the queue is dropped
            assert fired == ["finalizer"]
        assert owners[0].queued() == 0
        owners.clear()
        gc.collect()

    _in_a_thread(scenario)
    assert handlers_of(emitter, "x") == 0


# ---------------------------------------------------------------------------
# Bookkeeping: many emissions leave nothing behind


def test_no_task_or_queue_entry_is_left_behind(emitter: Any) -> None:
    async def handler(n: int) -> None:
        if n % 3 == 0:
            await asyncio.sleep(0)

    async def main() -> None:
        for mode in ("concurrent", "serial", "latest"):
            async with TaskHandlers(emitter, mode=mode, maxsize=100_000) as handlers:
                handlers.on("x", handler)
                for n in range(1000):
                    emitter.emit("x", n)
                await until(lambda: handlers.running() == 0 and handlers.queued() == 0)
                states = [r for r in handlers._state.all_registrations()]
                assert all(not r.tasks and not r.pending for r in states)

    run(main)
