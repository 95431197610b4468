"""livekit_events.aio: awaiting one emission and iterating emissions (SPEC §7).

Every test that takes ``emitter`` or ``EventEmitter`` runs against both
implementations.  No test depends on timing: timeouts are only used where
nothing will ever be emitted.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from typing import Any, Callable, Coroutine, List, Optional, Tuple, TypeVar

import pytest
from support import handlers_of

from livekit_events.aio import (
    DEFAULT_MAXSIZE,
    EventStream,
    EventStreamOverflowError,
    iterate,
    wait_for,
)

T = TypeVar("T")

# Each test runs its own event loop, starts its own threads and counts the
# handlers of a fixture emitter: running one test in several threads at once
# (pytest-run-parallel) would make the threads share that emitter.
pytestmark = pytest.mark.thread_unsafe(reason="own event loop and threads; shared fixture emitter")


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    # The timeout only turns a bug that would hang the suite into a failure.
    # Debug mode: asyncio reports never-awaited coroutines and the like.
    return asyncio.run(asyncio.wait_for(main(), timeout=120), debug=True)


class CountingLoop(asyncio.SelectorEventLoop):
    """An event loop that counts the callbacks other threads hand it."""

    threadsafe_calls = 0

    def call_soon_threadsafe(self, *args: Any, **kwargs: Any) -> Any:
        self.threadsafe_calls += 1
        return super().call_soon_threadsafe(*args, **kwargs)


def run_counting(main: Callable[[CountingLoop], Coroutine[Any, Any, T]]) -> T:
    """``run(main)`` on a ``CountingLoop``, which ``main`` gets."""
    loop = CountingLoop()
    loop.set_debug(True)
    try:
        return loop.run_until_complete(asyncio.wait_for(main(loop), timeout=120))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@pytest.fixture(autouse=True)
def no_handler_failures(caplog: pytest.LogCaptureFixture) -> Any:
    """Nothing the helpers register may fail inside emit (it would be logged)."""
    with caplog.at_level(logging.ERROR, logger="livekit.events"):
        yield
    failures = [r for r in caplog.records if r.name == "livekit.events"]
    assert not failures, [r.getMessage() for r in failures]


def later(callback: Callable[..., Any], *args: Any) -> None:
    """Run ``callback(*args)`` on the running loop once the caller has suspended."""
    asyncio.get_running_loop().call_soon(callback, *args)


# ---------------------------------------------------------------------------
# wait_for: completion


def test_wait_for_returns_the_arguments_as_a_tuple(emitter: Any) -> None:
    async def main() -> Tuple[Any, ...]:
        later(emitter.emit, "joined", "alice", {"role": "agent"})
        return await wait_for(emitter, "joined")

    assert run(main) == ("alice", {"role": "agent"})
    assert emitter.listener_count("joined") == 0


def test_wait_for_no_arguments_is_an_empty_tuple(emitter: Any) -> None:
    async def main() -> Tuple[Any, ...]:
        later(emitter.emit, "ready")
        return await wait_for(emitter, "ready")

    assert run(main) == ()


def test_wait_for_registers_before_it_first_suspends(emitter: Any) -> None:
    async def main() -> None:
        waiter = asyncio.ensure_future(wait_for(emitter, "x"))
        await asyncio.sleep(0)
        assert emitter.listener_count("x") == 1
        emitter.emit("x", 1)
        assert await waiter == (1,)
        assert emitter.listener_count("x") == 0

    run(main)


def test_wait_for_takes_the_first_emission_only(emitter: Any) -> None:
    seen: List[int] = []

    async def main() -> Tuple[Any, ...]:
        emitter.on("x", seen.append)

        def burst() -> None:
            for value in range(3):
                emitter.emit("x", value)

        later(burst)
        return await wait_for(emitter, "x")

    assert run(main) == (0,)
    assert seen == [0, 1, 2]  # the other handler is untouched
    assert emitter.listeners("x") == [seen.append]


def test_wait_for_ignores_other_events(emitter: Any) -> None:
    async def main() -> Tuple[Any, ...]:
        later(emitter.emit, "other", 1)
        later(emitter.emit, "x", 2)
        return await wait_for(emitter, "x")

    assert run(main) == (2,)
    assert emitter.event_names() == []


def test_wait_for_with_a_subclass_that_overrides_on_and_off(EventEmitter: Any) -> None:
    calls: List[str] = []

    class Room(EventEmitter):  # type: ignore[misc]
        def on(self, event: Any, callback: Any = None) -> Any:
            calls.append(f"on {event}")
            return super().on(event, callback)

        def off(self, event: Any, callback: Any) -> None:
            calls.append(f"off {event}")
            super().off(event, callback)

    room = Room()

    async def main() -> Tuple[Any, ...]:
        later(room.emit, "participant_connected", "bob")
        return await wait_for(room, "participant_connected")

    assert run(main) == ("bob",)
    assert calls == ["on participant_connected", "off participant_connected"]
    assert room.listener_count("participant_connected") == 0


# ---------------------------------------------------------------------------
# wait_for: predicate


def test_wait_for_predicate_selects_the_emission(emitter: Any) -> None:
    async def main() -> Tuple[Any, ...]:
        def burst() -> None:
            for identity in ("alice", "bob", "carol"):
                emitter.emit("participant_connected", identity)

        later(burst)
        return await wait_for(
            emitter, "participant_connected", predicate=lambda identity: identity == "bob"
        )

    assert run(main) == ("bob",)
    assert emitter.listener_count("participant_connected") == 0


def test_wait_for_predicate_gets_the_arguments_it_accepts(emitter: Any) -> None:
    # Like a handler: a one-parameter predicate on a three-argument event.
    calls: List[Tuple[Any, ...]] = []

    def first_only(track: str) -> bool:
        calls.append((track,))
        return track == "video"

    async def main() -> Tuple[Any, ...]:
        later(emitter.emit, "track_subscribed", "audio", "pub-1", "alice")
        later(emitter.emit, "track_subscribed", "video", "pub-2", "alice")
        return await wait_for(emitter, "track_subscribed", predicate=first_only)

    assert run(main) == ("video", "pub-2", "alice")
    assert calls == [("audio",), ("video",)]


def test_wait_for_predicate_error_is_raised_by_the_wait(emitter: Any) -> None:
    def broken(value: int) -> bool:
        raise ZeroDivisionError("bad predicate")

    async def main() -> None:
        later(emitter.emit, "x", 1)
        with pytest.raises(ZeroDivisionError, match="bad predicate"):
            await wait_for(emitter, "x", predicate=broken)

    run(main)  # and emit logged nothing (autouse fixture)
    assert emitter.listener_count("x") == 0


def test_wait_for_predicate_needing_more_arguments_than_emitted(emitter: Any) -> None:
    async def main() -> None:
        later(emitter.emit, "x", 1)
        with pytest.raises(TypeError, match="requires 2 positional arguments"):
            await wait_for(emitter, "x", predicate=lambda a, b: True)

    run(main)
    assert emitter.listener_count("x") == 0


def test_wait_for_rejects_an_async_predicate(emitter: Any) -> None:
    async def predicate(value: int) -> bool:
        return True

    async def main() -> None:
        with pytest.raises(TypeError, match="synchronous"):
            await wait_for(emitter, "x", predicate=predicate)

    run(main)
    assert emitter.listener_count("x") == 0


def test_wait_for_rejects_a_non_callable_predicate(emitter: Any) -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="callable"):
            await wait_for(emitter, "x", predicate=True)  # type: ignore[call-overload]

    run(main)
    assert emitter.listener_count("x") == 0


# ---------------------------------------------------------------------------
# wait_for: arguments are checked before anything is registered


@pytest.mark.parametrize(
    "timeout, error",
    [
        ("5", TypeError),
        (b"5", TypeError),
        ([5], TypeError),
        (True, TypeError),
        (float("nan"), ValueError),
    ],
)
def test_wait_for_checks_the_timeout_before_registering(
    emitter: Any, timeout: Any, error: type
) -> None:
    async def main() -> None:
        with pytest.raises(error, match="timeout"):
            await wait_for(emitter, "x", timeout=timeout)
        assert emitter.listener_count("x") == 0

    run(main)
    assert emitter.listener_count("x") == 0


def test_wait_for_removes_its_handler_when_on_raises_after_registering(
    EventEmitter: Any,
) -> None:
    # Every exception path removes the handler, also an `on` (a subclass's)
    # that registers and then fails.
    class Flaky(EventEmitter):  # type: ignore[misc]
        def on(self, event: Any, callback: Any = None) -> Any:
            super().on(event, callback)
            raise RuntimeError("on failed after registering")

    flaky = Flaky()

    async def main() -> None:
        with pytest.raises(RuntimeError, match="after registering"):
            await wait_for(flaky, "x")

    run(main)
    assert flaky.listener_count("x") == 0


def test_wait_for_a_flood_from_another_thread_hands_over_one_callback(emitter: Any) -> None:
    # While the loop is busy, a thread emits 10 000 times: the first emission
    # settles the wait; the others cost nothing on the loop.
    def flood() -> None:
        for n in range(10_000):
            emitter.emit("x", n)

    async def main(loop: CountingLoop) -> Tuple[Any, ...]:
        waiter = asyncio.ensure_future(wait_for(emitter, "x"))
        await asyncio.sleep(0)  # registered
        worker = threading.Thread(target=flood)
        worker.start()
        worker.join()  # the loop is blocked meanwhile
        assert loop.threadsafe_calls <= 1
        return await waiter

    assert run_counting(main) == (0,)
    assert emitter.listener_count("x") == 0


# ---------------------------------------------------------------------------
# wait_for: timeout and cancellation


def test_wait_for_timeout(emitter: Any) -> None:
    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError, match="no 'x' event within 0.01 seconds"):
            await wait_for(emitter, "x", timeout=0.01)

    run(main)
    assert emitter.listener_count("x") == 0


def test_wait_for_timeout_with_a_predicate_that_never_matches(emitter: Any) -> None:
    async def main() -> None:
        later(emitter.emit, "x", 1)
        with pytest.raises(asyncio.TimeoutError, match="no matching 'x' event"):
            await wait_for(emitter, "x", timeout=0.01, predicate=lambda v: v > 1)

    run(main)
    assert emitter.listener_count("x") == 0


def test_wait_for_timeout_is_a_builtin_timeout_error_on_311(emitter: Any) -> None:
    async def main() -> None:
        with pytest.raises(TimeoutError if hasattr(asyncio, "timeout") else asyncio.TimeoutError):
            await wait_for(emitter, "x", timeout=0)

    run(main)


def test_wait_for_emission_before_the_timeout(emitter: Any) -> None:
    async def main() -> Tuple[Any, ...]:
        later(emitter.emit, "x", "in time")
        return await wait_for(emitter, "x", timeout=60)

    assert run(main) == ("in time",)
    assert emitter.listener_count("x") == 0


def test_wait_for_cancellation_removes_the_handler(emitter: Any) -> None:
    async def main() -> None:
        waiter = asyncio.ensure_future(wait_for(emitter, "x", timeout=60))
        await asyncio.sleep(0)
        assert emitter.listener_count("x") == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert emitter.listener_count("x") == 0
        emitter.emit("x", 1)  # nothing left to deliver to

    run(main)


def test_wait_for_under_an_outer_timeout_removes_the_handler(emitter: Any) -> None:
    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(wait_for(emitter, "x"), timeout=0.01)
        assert emitter.listener_count("x") == 0

    run(main)


def test_wait_for_emissions_after_completion_are_ignored(emitter: Any) -> None:
    async def main() -> None:
        waiter = asyncio.ensure_future(wait_for(emitter, "x"))
        await asyncio.sleep(0)
        emitter.emit("x", 1)
        emitter.emit("x", 2)  # before the waiter resumed: ignored
        assert await waiter == (1,)
        assert emitter.listener_count("x") == 0

    run(main)


def test_many_concurrent_waiters(emitter: Any) -> None:
    async def main() -> List[Tuple[Any, ...]]:
        waiters = [asyncio.ensure_future(wait_for(emitter, "x")) for _ in range(50)]
        await asyncio.sleep(0)
        assert emitter.listener_count("x") == 50
        emitter.emit("x", "all")
        return await asyncio.gather(*waiters)

    assert run(main) == [("all",)] * 50
    assert emitter.listener_count("x") == 0


# ---------------------------------------------------------------------------
# wait_for: emission from other threads


def test_wait_for_emission_from_another_thread(emitter: Any) -> None:
    predicate_threads: List[int] = []

    def predicate(value: int) -> bool:
        predicate_threads.append(threading.get_ident())
        return value == 2

    worker_threads: List[int] = []

    async def main() -> Tuple[Any, ...]:
        waiter = asyncio.ensure_future(wait_for(emitter, "x", predicate=predicate))
        await asyncio.sleep(0)

        def work() -> None:
            worker_threads.append(threading.get_ident())
            for v in (1, 2, 3):
                emitter.emit("x", v)

        worker = threading.Thread(target=work)
        worker.start()
        worker.join()  # emit returned in the worker before the loop saw anything
        return await waiter

    assert run(main) == (2,)
    # The predicate ran where the emission happened, as a handler would, and
    # not at all once an emission matched.
    assert predicate_threads == worker_threads * 2
    assert emitter.listener_count("x") == 0


def test_wait_for_racing_emitting_threads(emitter: Any) -> None:
    async def main() -> Tuple[Any, ...]:
        waiter = asyncio.ensure_future(wait_for(emitter, "x"))
        await asyncio.sleep(0)
        barrier = threading.Barrier(8)

        def worker(n: int) -> None:
            barrier.wait()
            for i in range(50):
                emitter.emit("x", n, i)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        result = await waiter
        for thread in threads:
            thread.join()
        return result

    n, i = run(main)
    assert 0 <= n < 8 and 0 <= i < 50
    assert emitter.listener_count("x") == 0


# ---------------------------------------------------------------------------
# iterate: completion and order


def test_iterate_yields_every_emission_in_order(emitter: Any) -> None:
    async def main() -> List[Tuple[Any, ...]]:
        got: List[Tuple[Any, ...]] = []
        stream = iterate(emitter, "data_received")
        for n in range(5):  # listening started when iterate() returned
            emitter.emit("data_received", b"packet", n)
        async for args in stream:
            got.append(args)
            if len(got) == 5:
                break
        return got

    assert run(main) == [(b"packet", n) for n in range(5)]
    assert emitter.listener_count("data_received") == 0


def test_iterate_waits_for_emissions(emitter: Any) -> None:
    async def main() -> List[Tuple[Any, ...]]:
        got: List[Tuple[Any, ...]] = []

        async def produce() -> None:
            for n in range(3):
                await asyncio.sleep(0)
                emitter.emit("x", n)

        async with iterate(emitter, "x") as stream:
            producer = asyncio.ensure_future(produce())
            async for (n,) in stream:
                got.append((n,))
                if n == 2:
                    break
            await producer
        return got

    assert run(main) == [(0,), (1,), (2,)]
    assert emitter.listener_count("x") == 0


def test_iterate_registers_at_creation(emitter: Any) -> None:
    async def main() -> None:
        stream = iterate(emitter, "x")
        assert isinstance(stream, EventStream)
        assert emitter.listener_count("x") == 1
        assert not stream.closed
        assert stream.maxsize == DEFAULT_MAXSIZE
        stream.close()
        assert stream.closed
        assert emitter.listener_count("x") == 0

    run(main)


def test_iterate_with_a_predicate(emitter: Any) -> None:
    async def main() -> List[Any]:
        async with iterate(emitter, "x", predicate=lambda v: v % 2 == 0) as stream:
            for n in range(6):
                emitter.emit("x", n)
            assert stream.qsize() == 3
            return [args async for args in _take(stream, 3)]

    assert run(main) == [(0,), (2,), (4,)]
    assert emitter.listener_count("x") == 0


async def _take(stream: EventStream, n: int) -> Any:
    if n <= 0:
        return
    async for args in stream:
        yield args
        n -= 1
        if n == 0:
            return


def test_iterate_predicate_error_ends_the_stream_after_buffered(emitter: Any) -> None:
    def predicate(value: int) -> bool:
        if value == 2:
            raise ValueError("bad value")
        return True

    async def main() -> List[Any]:
        got: List[Any] = []
        stream = iterate(emitter, "x", predicate=predicate)
        for n in range(4):
            emitter.emit("x", n)
        assert emitter.listener_count("x") == 0  # stopped listening at the error
        with pytest.raises(ValueError, match="bad value"):
            async for args in stream:
                got.append(args)
        return got

    assert run(main) == [(0,), (1,)]


def test_multiple_consumers_share_the_stream(emitter: Any) -> None:
    async def main() -> List[int]:
        stream = iterate(emitter, "x")
        got: List[int] = []

        async def consume() -> None:
            async for (n,) in stream:
                got.append(n)
                await asyncio.sleep(0)

        consumers = [asyncio.ensure_future(consume()) for _ in range(3)]
        await asyncio.sleep(0)
        for n in range(30):
            emitter.emit("x", n)
            if n % 7 == 0:
                await asyncio.sleep(0)
        for _ in range(10_000):  # bounded: a bug fails the test, never hangs it
            if len(got) == 30:
                break
            await asyncio.sleep(0)
        stream.close()  # ends every consumer's loop
        await asyncio.gather(*consumers)
        return got

    assert sorted(run(main)) == list(range(30))
    assert emitter.listener_count("x") == 0


# ---------------------------------------------------------------------------
# iterate: overflow


def test_overflow_raise_delivers_what_was_buffered_then_raises(emitter: Any) -> None:
    async def main() -> List[Any]:
        got: List[Any] = []
        stream = iterate(emitter, "x", maxsize=3)
        for n in range(5):
            emitter.emit("x", n)
        # Stopped listening at the overflow: nothing can pile up any more.
        assert emitter.listener_count("x") == 0
        assert stream.closed
        with pytest.raises(EventStreamOverflowError) as info:
            async for args in stream:
                got.append(args)
        assert info.value.event == "x" and info.value.maxsize == 3
        assert "overflowed" in str(info.value)
        # The error is raised once; afterwards the stream is exhausted.
        assert [args async for args in stream] == []
        return got

    assert run(main) == [(0,), (1,), (2,)]


def test_overflow_raise_is_the_default(emitter: Any) -> None:
    async def main() -> None:
        stream = iterate(emitter, "x", maxsize=1)
        emitter.emit("x", 1)
        emitter.emit("x", 2)
        assert await stream.__anext__() == (1,)
        with pytest.raises(EventStreamOverflowError):
            await stream.__anext__()

    run(main)


def test_overflow_drop_oldest_keeps_the_latest(emitter: Any) -> None:
    async def main() -> List[Any]:
        async with iterate(emitter, "x", maxsize=2, overflow="drop_oldest") as stream:
            for n in range(5):
                emitter.emit("x", n)
            assert stream.dropped == 3
            assert emitter.listener_count("x") == 1  # still listening
            got = [await stream.__anext__(), await stream.__anext__()]
            emitter.emit("x", 5)
            got.append(await stream.__anext__())
            return got

    assert run(main) == [(3,), (4,), (5,)]
    assert emitter.listener_count("x") == 0


def test_overflow_drop_newest_keeps_the_earliest(emitter: Any) -> None:
    async def main() -> List[Any]:
        async with iterate(emitter, "x", maxsize=2, overflow="drop_newest") as stream:
            for n in range(5):
                emitter.emit("x", n)
            assert stream.dropped == 3
            got = [await stream.__anext__(), await stream.__anext__()]
            emitter.emit("x", 5)
            got.append(await stream.__anext__())
            return got

    assert run(main) == [(0,), (1,), (5,)]


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"maxsize": 0}, ValueError),
        ({"maxsize": -1}, ValueError),
        ({"maxsize": 1.5}, TypeError),
        ({"maxsize": None}, TypeError),
        ({"overflow": "block"}, ValueError),
        ({"predicate": 42}, TypeError),
    ],
)
def test_iterate_rejects_bad_arguments(emitter: Any, kwargs: Any, error: type) -> None:
    async def main() -> None:
        with pytest.raises(error):
            iterate(emitter, "x", **kwargs)

    run(main)
    assert emitter.listener_count("x") == 0


def test_iterate_needs_a_running_loop(emitter: Any) -> None:
    with pytest.raises(RuntimeError, match="must be called from a coroutine"):
        iterate(emitter, "x")
    assert emitter.listener_count("x") == 0


# ---------------------------------------------------------------------------
# iterate: cleanup (no gc.collect(): CPython frees the stream at once)


def test_break_removes_the_handler(emitter: Any) -> None:
    async def main() -> None:
        emitter.on("x", print)
        later(emitter.emit, "x", 1)
        async for _ in iterate(emitter, "x"):
            break
        assert emitter.listeners("x") == [print]

    run(main)


def test_return_from_the_loop_removes_the_handler(emitter: Any) -> None:
    async def first() -> Optional[Tuple[Any, ...]]:
        async for args in iterate(emitter, "x"):
            return args
        return None

    async def main() -> None:
        later(emitter.emit, "x", 1)
        assert await first() == (1,)
        assert emitter.listener_count("x") == 0

    run(main)


def test_exception_in_the_loop_removes_the_handler(emitter: Any) -> None:
    async def main() -> None:
        later(emitter.emit, "x", 1)
        with pytest.raises(KeyError):
            async for _ in iterate(emitter, "x"):
                raise KeyError("boom")
        assert emitter.listener_count("x") == 0

    run(main)


def test_cancellation_removes_the_handler(emitter: Any) -> None:
    async def main() -> None:
        got: List[Any] = []

        async def consume() -> None:
            async for args in iterate(emitter, "x"):
                got.append(args)

        consumer = asyncio.ensure_future(consume())
        await asyncio.sleep(0)
        emitter.emit("x", 1)
        await asyncio.sleep(0)
        assert got == [(1,)] and emitter.listener_count("x") == 1
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert emitter.listener_count("x") == 0

    run(main)


def test_cancellation_inside_async_with_removes_the_handler(emitter: Any) -> None:
    async def main() -> None:
        stream_box: List[EventStream] = []

        async def consume() -> None:
            async with iterate(emitter, "x") as stream:
                stream_box.append(stream)
                async for _ in stream:
                    pass

        consumer = asyncio.ensure_future(consume())
        await asyncio.sleep(0)
        assert emitter.listener_count("x") == 1
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert stream_box[0].closed  # closed although still referenced
        assert emitter.listener_count("x") == 0

    run(main)


def test_timeout_around_the_loop_removes_the_handler(emitter: Any) -> None:
    async def consume() -> None:
        async for _ in iterate(emitter, "x"):
            pass

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(consume(), timeout=0.01)
        assert emitter.listener_count("x") == 0

    run(main)


def test_a_timed_out_next_keeps_the_stream_open(emitter: Any) -> None:
    # Per-item timeouts: only the pending __anext__ is cancelled.
    async def main() -> Tuple[Any, ...]:
        async with iterate(emitter, "x") as stream:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(stream.__anext__(), timeout=0.01)
            assert not stream.closed and emitter.listener_count("x") == 1
            emitter.emit("x", "later")
            return await stream.__anext__()

    assert run(main) == ("later",)
    assert emitter.listener_count("x") == 0


def test_close_ends_a_pending_iteration(emitter: Any) -> None:
    async def main() -> List[Any]:
        stream = iterate(emitter, "x")
        got: List[Any] = []

        async def consume() -> None:
            async for args in stream:
                got.append(args)

        consumer = asyncio.ensure_future(consume())
        emitter.emit("x", 1)
        await asyncio.sleep(0)
        stream.close()
        stream.close()  # idempotent
        await consumer  # ended normally (StopAsyncIteration)
        emitter.emit("x", 2)
        return got

    assert run(main) == [(1,)]
    assert emitter.listener_count("x") == 0


def test_close_drops_what_is_buffered(emitter: Any) -> None:
    async def main() -> List[Any]:
        stream = iterate(emitter, "x")
        emitter.emit("x", 1)
        await stream.aclose()
        return [args async for args in stream]

    assert run(main) == []
    assert emitter.listener_count("x") == 0


def test_dropping_the_stream_removes_the_handler(emitter: Any) -> None:
    async def main() -> None:
        stream = iterate(emitter, "x")
        emitter.emit("x", 1)
        assert emitter.listener_count("x") == 1
        del stream
        assert emitter.listener_count("x") == 0

    run(main)


def test_the_emitter_never_keeps_a_stream_alive(emitter: Any) -> None:
    import weakref

    async def main() -> None:
        stream = iterate(emitter, "x")
        ref = weakref.ref(stream)
        del stream
        gc.collect()
        assert ref() is None
        assert emitter.listener_count("x") == 0

    run(main)


# ---------------------------------------------------------------------------
# iterate: emission from other threads


def test_iterate_emissions_from_another_thread_in_order(emitter: Any) -> None:
    deliveries: List[int] = []

    def predicate(value: int) -> bool:
        deliveries.append(threading.get_ident())
        return True

    async def main() -> List[Any]:
        got: List[Any] = []
        async with iterate(emitter, "x", maxsize=1000, predicate=predicate) as stream:
            worker = threading.Thread(target=lambda: [emitter.emit("x", n) for n in range(500)])
            worker.start()
            async for (n,) in stream:
                got.append(n)
                if n == 499:
                    break
            worker.join()
        return got

    assert run(main) == list(range(500))
    # The predicate runs inside emit, in the emitting thread (so the bound
    # applies to matching emissions, in that thread).
    assert len(deliveries) == 500 and threading.get_ident() not in deliveries
    assert emitter.listener_count("x") == 0


def test_iterate_many_emitting_threads(emitter: Any) -> None:
    async def main() -> List[Any]:
        got: List[Any] = []
        async with iterate(emitter, "x", maxsize=10_000) as stream:
            barrier = threading.Barrier(4)

            def worker(n: int) -> None:
                barrier.wait()
                for i in range(200):
                    emitter.emit("x", n, i)

            threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            async for args in stream:
                got.append(args)
                if len(got) == 800:
                    break
            for thread in threads:
                thread.join()
        return got

    got = run(main)
    assert sorted(got) == [(n, i) for n in range(4) for i in range(200)]
    for n in range(4):  # each thread's emissions arrive in its order
        assert [i for m, i in got if m == n] == list(range(200))


def test_overflow_from_another_thread(emitter: Any) -> None:
    async def main() -> List[Any]:
        got: List[Any] = []
        stream = iterate(emitter, "x", maxsize=10)
        worker = threading.Thread(target=lambda: [emitter.emit("x", n) for n in range(50)])
        worker.start()
        worker.join()
        with pytest.raises(EventStreamOverflowError):
            async for (n,) in stream:
                got.append(n)
        assert emitter.listener_count("x") == 0
        return got

    assert run(main) == list(range(10))


@pytest.mark.parametrize("overflow", ["raise", "drop_oldest", "drop_newest"])
def test_a_flood_from_another_thread_stays_bounded(emitter: Any, overflow: Any) -> None:
    # The overflow policy applies in the emitting thread, so a
    # thread emitting while the loop is busy queues at most `maxsize`
    # emissions and hands the loop at most one callback, whatever its rate.
    def flood() -> None:
        for n in range(10_000):
            emitter.emit("x", n)

    async def main(loop: CountingLoop) -> List[Any]:
        stream = iterate(emitter, "x", maxsize=10, overflow=overflow)
        worker = threading.Thread(target=flood)
        worker.start()
        worker.join()  # the loop is blocked meanwhile
        assert loop.threadsafe_calls <= 1
        assert stream.qsize() == 10
        got: List[Any] = []
        if overflow == "raise":
            assert stream.closed and emitter.listener_count("x") == 0
            with pytest.raises(EventStreamOverflowError):
                async for (n,) in stream:
                    got.append(n)
        else:
            assert stream.dropped == 10_000 - 10
            async with stream:
                for _ in range(10):
                    got.append((await stream.__anext__())[0])
        return got

    expected = {"raise": range(10), "drop_newest": range(10), "drop_oldest": range(9990, 10_000)}
    assert run_counting(main) == list(expected[overflow])
    assert emitter.listener_count("x") == 0


class Reemitter:
    """An emitted argument whose finalizer emits on the same emitter."""

    def __init__(self, emitter: Any, fired: List[str]) -> None:
        self.emitter = emitter
        self.fired = fired

    def __del__(self) -> None:
        self.fired.append("finalizer")
        self.emitter.emit("x", "from a finalizer")


@pytest.mark.parametrize("how", ["drop_oldest", "close"])
def test_a_dropped_emission_whose_finalizer_emits_again(emitter: Any, how: str) -> None:
    # The stream's lock is never held while a dropped emission is released:
    # its finalizer may emit into the same stream.
    fired: List[str] = []

    async def main() -> List[Any]:
        stream = iterate(emitter, "x", maxsize=1, overflow="drop_oldest")
        emitter.emit("x", Reemitter(emitter, fired))
        if how == "drop_oldest":
            emitter.emit("x", "newer")  # drops the Reemitter; its emission then drops "newer"
            got = [await stream.__anext__()]
            stream.close()
            return got
        stream.close()  # drops the Reemitter; its emission finds the stream closed
        return [args async for args in stream]

    result: List[Any] = []
    worker = threading.Thread(target=lambda: result.append(run(main)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "deadlocked"
    assert fired == ["finalizer"]
    assert result == [[("from a finalizer",)] if how == "drop_oldest" else []]
    assert emitter.listener_count("x") == 0


def test_emission_from_a_thread_after_the_loop_closed(emitter: Any) -> None:
    streams: List[EventStream] = []

    async def main() -> None:
        streams.append(iterate(emitter, "x"))

    run(main)  # the loop is closed now; the stream is still referenced
    errors: List[BaseException] = []

    def worker() -> None:
        try:
            emitter.emit("x", 1)
        except BaseException as exc:  # pragma: no cover - the failure being tested
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert errors == []  # dropped quietly (and nothing logged: autouse fixture)
    streams[0].close()
    assert emitter.listener_count("x") == 0


# ---------------------------------------------------------------------------
# livekit.rtc.EventEmitter (duck typing on on/off); implementation-independent


@pytest.fixture
def livekit_emitter() -> Any:
    rtc = pytest.importorskip("livekit.rtc")
    return rtc.EventEmitter()


def test_livekit_wait_for(livekit_emitter: Any) -> None:
    async def main() -> Tuple[Any, ...]:
        later(livekit_emitter.emit, "participant_connected", "alice")
        later(livekit_emitter.emit, "participant_connected", "bob")
        return await wait_for(
            livekit_emitter, "participant_connected", predicate=lambda p: p == "bob"
        )

    assert run(main) == ("bob",)
    assert handlers_of(livekit_emitter, "participant_connected") == 0


def test_livekit_wait_for_timeout_and_cancel(livekit_emitter: Any) -> None:
    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await wait_for(livekit_emitter, "x", timeout=0.01)
        assert handlers_of(livekit_emitter, "x") == 0
        waiter = asyncio.ensure_future(wait_for(livekit_emitter, "x"))
        await asyncio.sleep(0)
        assert handlers_of(livekit_emitter, "x") == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert handlers_of(livekit_emitter, "x") == 0

    run(main)


def test_livekit_iterate(livekit_emitter: Any) -> None:
    async def main() -> List[Any]:
        got: List[Any] = []
        stream = iterate(livekit_emitter, "data_received", maxsize=2, overflow="drop_oldest")
        for n in range(4):
            livekit_emitter.emit("data_received", f"packet {n}")
        async for (packet,) in stream:
            got.append(packet)
            if len(got) == 2:
                break
        return got

    assert run(main) == ["packet 2", "packet 3"]
    assert handlers_of(livekit_emitter, "data_received") == 0


def test_livekit_iterate_from_another_thread(livekit_emitter: Any) -> None:
    async def main() -> List[Any]:
        got: List[Any] = []
        async with iterate(livekit_emitter, "x") as stream:
            worker = threading.Thread(target=lambda: [livekit_emitter.emit("x", n) for n in range(20)])
            worker.start()
            async for (n,) in stream:
                got.append(n)
                if n == 19:
                    break
            worker.join()
        return got

    assert run(main) == list(range(20))
    assert handlers_of(livekit_emitter, "x") == 0


def test_livekit_after_install(livekit_emitter: Any) -> None:
    # install() swaps livekit's emit for the core's; on/off stay livekit's.
    import livekit_events

    livekit_events.install()
    try:

        async def main() -> List[Any]:
            later(livekit_emitter.emit, "participant_connected", "agent")
            (identity,) = await wait_for(livekit_emitter, "participant_connected", timeout=60)
            got: List[Any] = [identity]
            stream = iterate(livekit_emitter, "data_received")
            livekit_emitter.emit("data_received", b"payload")
            async for (packet,) in stream:
                got.append(packet)
                break
            return got

        assert run(main) == ["agent", b"payload"]
        assert handlers_of(livekit_emitter, "participant_connected") == 0
        assert handlers_of(livekit_emitter, "data_received") == 0
    finally:
        livekit_events.uninstall()


def test_a_pending_next_ends_when_its_stream_is_dropped(emitter: Any) -> None:
    # Nothing holds the stream but a pending __anext__: it is freed, its
    # handler removed, and the pending wait ends instead of hanging.
    async def main() -> None:
        pending = asyncio.ensure_future(iterate(emitter, "x").__anext__())
        assert emitter.listener_count("x") == 0
        with pytest.raises(StopAsyncIteration):
            await pending

    run(main)


def test_close_from_another_thread(emitter: Any) -> None:
    async def main() -> List[Any]:
        got: List[Any] = []
        stream = iterate(emitter, "x")
        emitter.emit("x", 1)
        async for args in stream:
            got.append(args)
            closer = threading.Thread(target=stream.close)
            closer.start()
            closer.join()
        return got

    assert run(main) == [(1,)]
    assert emitter.listener_count("x") == 0
