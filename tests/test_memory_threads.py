"""SPEC §5, Memory, threads, GC.

Every test takes the ``impl``/``EventEmitter``/``emitter`` fixture, so it runs
against the compiled core and the pure-Python twin.  Iteration counts are
modest (10^4 emits); the million-emit soak lives elsewhere.  These tests touch
process-wide state (the GC, the switch interval, the logger), so they are not
run in parallel threads by pytest-run-parallel.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
import tracemalloc
import weakref
from typing import Any, Callable, Dict, Iterator, List

import pytest

pytestmark = pytest.mark.thread_unsafe

EMITS = 10_000
LOGGER_NAME = "livekit.events"


class _Event:
    """A private event object, so its refcount is ours alone (unlike a
    string constant shared with the rest of the process)."""

    def __hash__(self) -> int:
        return 12345

    def __eq__(self, other: object) -> bool:
        return other is self


class _Boom(Exception):
    pass


class _SwallowingFilter(logging.Filter):
    """Formats every record (the traceback too), counts it and drops it, so
    no handler keeps a reference to it (pytest's log capture keeps every
    record, and so every argument, even on a non-propagating logger)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.formatter: Any = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.formatter is not None:
            self.formatter.format(record)
        self.count += 1
        return False


@pytest.fixture
def quiet_failures() -> Iterator[_SwallowingFilter]:
    """Count and drop the ``livekit.events`` failure records."""
    logger = logging.getLogger(LOGGER_NAME)
    swallow = _SwallowingFilter()
    logger.addFilter(swallow)
    try:
        yield swallow
    finally:
        logger.removeFilter(swallow)


def _use_event(emitter: Any, event: Any) -> None:
    """Give ``event`` its entry in the registry before counting references.

    Like livekit's ``_events``, the registry keeps one (empty) entry per event
    that ever had a handler: a fixed cost per event name, not a leak (the
    loops below would show a leak as one reference per iteration)."""
    emitter.on(event, print)
    emitter.off(event, print)


def _refcounts(objects: List[Any]) -> List[int]:
    return [sys.getrefcount(o) for o in objects]


# -- strong references, cycles collected ---------------------------------------------


def test_emitter_holds_strong_references_to_handlers(emitter: Any) -> None:
    class Handler:
        def __call__(self) -> None:
            pass

    handler, once_handler = Handler(), Handler()
    refs = [weakref.ref(handler), weakref.ref(once_handler)]
    emitter.on("e", handler)
    emitter.once("f", once_handler)
    del handler, once_handler
    gc.collect()
    assert all(ref() is not None for ref in refs)
    emitter.emit("f")  # the once registration is dropped when it fires
    gc.collect()
    assert refs[0]() is not None and refs[1]() is None
    emitter.remove_all_listeners()
    gc.collect()
    assert refs[0]() is None


def test_cycle_through_bound_method_of_owner_is_collected(EventEmitter: Any) -> None:
    class Owner:
        def __init__(self) -> None:
            self.emitter = EventEmitter()
            self.emitter.on("e", self.handler)
            self.emitter.once("f", self.handler)

        def handler(self) -> None:
            pass

    owner = Owner()
    owner.emitter.emit("e")
    owner_ref, emitter_ref = weakref.ref(owner), weakref.ref(owner.emitter)
    del owner
    gc.collect()
    assert owner_ref() is None
    assert emitter_ref() is None


def _attach_closure_handlers(emitter: Any) -> None:
    # A separate scope: the closure's cell keeps `emitter` (a `del` in the
    # test would empty a cell of the test's own scope).
    def handler() -> None:
        emitter.emit("other")

    emitter.on("e", handler)
    emitter.once("e", handler)
    emitter.once("f", handler)


def test_cycle_through_closure_over_emitter_is_collected(EventEmitter: Any) -> None:
    emitter = EventEmitter()
    _attach_closure_handlers(emitter)
    emitter.emit("e")
    emitter_ref = weakref.ref(emitter)
    del emitter
    gc.collect()
    assert emitter_ref() is None


def test_cycle_through_subclass_instance_attribute_is_collected(EventEmitter: Any) -> None:
    class Room(EventEmitter[str]):
        def __init__(self) -> None:
            super().__init__()
            self.on("connected", self.on_connected)

        def on_connected(self) -> None:
            self.connected = True

    room = Room()
    room.emit("connected")
    room_ref = weakref.ref(room)
    del room
    gc.collect()
    assert room_ref() is None


def test_emitter_without_cycles_is_freed_without_gc(EventEmitter: Any) -> None:
    emitter = EventEmitter()
    emitter.on("e", print)
    ref = weakref.ref(emitter)
    gc.disable()
    try:
        del emitter
        assert ref() is None
    finally:
        gc.enable()


# -- no reference leaks --------------------------------------------------------------------


_RETURNED = object()  # what a handler returns: emit must release it


def _handler_kinds() -> Dict[str, Callable[..., Any]]:
    class Owner:
        def method(self, a: Any) -> Any:
            return _RETURNED

    def plain(a: Any, b: Any) -> None:
        pass

    def varargs(*args: Any) -> None:
        pass

    def no_args() -> None:
        pass

    return {"plain": plain, "varargs": varargs, "no_args": no_args, "method": Owner().method}


@pytest.mark.parametrize("given", [2, 10], ids=lambda n: f"{n}args")
def test_refcounts_unchanged_after_many_emits(emitter: Any, given: int) -> None:
    event = _Event()
    args = [object() for _ in range(given)]
    handlers = _handler_kinds()
    for handler in handlers.values():
        emitter.on(event, handler)
    tracked = [event, *args, *handlers.values(), emitter, _RETURNED]
    emitter.emit(event, *args)  # warm up
    before = _refcounts(tracked)
    for _ in range(EMITS):
        emitter.emit(event, *args)
    gc.collect()
    assert _refcounts(tracked) == before


@pytest.mark.parametrize("given", [1, 10], ids=lambda n: f"{n}args")
def test_refcounts_unchanged_after_many_emits_with_failing_handlers(
    emitter: Any, quiet_failures: _SwallowingFilter, given: int
) -> None:
    event = _Event()
    args = [object() for _ in range(given)]
    def failing(*received: Any) -> None:
        raise _Boom(*received)

    def failing_with_context(a: Any) -> None:
        try:
            raise KeyError(a)
        except KeyError:
            raise _Boom(a)  # chained: __context__ holds the KeyError

    def ok(a: Any) -> None:
        pass

    for handler in (failing, ok, failing_with_context):
        emitter.on(event, handler)
    tracked = [event, *args, failing, ok, failing_with_context, emitter]
    emitter.emit(event, *args)  # warm up
    before = _refcounts(tracked)
    iterations = EMITS // 5  # each failure formats a traceback
    for _ in range(iterations):
        emitter.emit(event, *args)
    gc.collect()
    assert _refcounts(tracked) == before
    assert quiet_failures.count == 2 * (iterations + 1)


def test_refcounts_unchanged_after_arity_errors_and_base_exceptions(emitter: Any) -> None:
    event, arg = _Event(), object()
    interrupt = KeyboardInterrupt()

    def needs_two(a: Any, b: Any) -> None:
        pass

    def interrupting(a: Any) -> None:
        raise interrupt

    emitter.on(event, needs_two)
    emitter.on("interrupt", interrupting)
    tracked = [event, arg, needs_two, interrupting, interrupt, emitter]
    before = _refcounts(tracked)
    for _ in range(EMITS // 10):
        with pytest.raises(TypeError):
            emitter.emit(event, arg)
        with pytest.raises(KeyboardInterrupt):
            emitter.emit("interrupt", arg)
    interrupt.__traceback__ = None
    interrupt.__context__ = None
    gc.collect()
    assert _refcounts(tracked) == before


def test_refcounts_unchanged_after_registration_cycles_and_rejections(emitter: Any) -> None:
    event = _Event()

    def handler(a: Any) -> None:
        pass

    async def async_handler() -> None:
        pass

    def needs_keyword(*, flag: Any) -> None:
        pass

    not_callable = object()
    _use_event(emitter, event)
    tracked = [event, handler, async_handler, needs_keyword, not_callable, emitter]
    before = _refcounts(tracked)
    for _ in range(EMITS // 10):
        emitter.on(event, handler)
        emitter.on(event, handler)  # deduplicated
        emitter.once(event, handler)
        emitter.emit(event, 1)
        emitter.once(event, handler)
        emitter.off(event, handler)
        emitter.on(event, handler)
        emitter.remove_all_listeners(event)
        for bad in (async_handler, needs_keyword, not_callable):
            for register in (emitter.on, emitter.once):
                with pytest.raises((TypeError, ValueError)):
                    register(event, bad)
        with pytest.raises(TypeError):
            emitter.on([], handler)
    del bad, register  # the loop variables hold references too
    gc.collect()
    assert _refcounts(tracked) == before
    assert emitter.event_names() == []


def test_once_registration_released_after_it_fires(emitter: Any) -> None:
    event, arg = _Event(), object()

    def handler(a: Any) -> None:
        pass

    _use_event(emitter, event)
    before = _refcounts([event, arg, handler])
    for _ in range(EMITS // 10):
        emitter.once(event, handler)
        emitter.emit(event, arg)
    gc.collect()
    assert _refcounts([event, arg, handler]) == before


def _traced_growth(run: Callable[[], None]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        run()  # warm up: caches, free lists, logging internals
        gc.collect()
        start = tracemalloc.get_traced_memory()[0]
        run()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_emits(emitter: Any, quiet_failures: _SwallowingFilter) -> None:
    # A leak of even one small object per emit would be 5000 * >=16 bytes.
    quiet_failures.formatter = None  # formatting tracebacks under tracemalloc is slow

    def failing(a: Any) -> None:
        raise _Boom(a)

    emitter.on("e", _handler_kinds()["plain"])
    emitter.on("e", _handler_kinds()["varargs"])
    emitter.on("e", failing)

    def run() -> None:
        for i in range(EMITS // 2):
            emitter.emit("e", i, "x", None)

    assert _traced_growth(run) < 64 * 1024
    assert quiet_failures.count == 2 * (EMITS // 2)


# -- threads ----------------------------------------------------------------------------------


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads as often as possible, to interleave them finely."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def _run_threads(targets: List[Callable[[], None]]) -> None:
    errors: List[BaseException] = []
    barrier = threading.Barrier(len(targets))

    def wrap(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                barrier.wait()
                target()
            except BaseException as exc:  # reported by the test thread
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_threads_registering_concurrently_lose_no_registration(emitter: Any, fast_switching: None) -> None:
    per_thread = 300
    fired: Dict[int, int] = {}
    done = threading.Event()

    def make(key: int) -> Callable[[], None]:
        def handler() -> None:
            fired[key] = fired.get(key, 0) + 1

        return handler

    handlers = {t: [make(t * per_thread + i) for i in range(per_thread)] for t in range(4)}
    emitter.set_max_listeners(None)  # 1200 handlers are expected here

    def register(thread: int) -> Callable[[], None]:
        def run() -> None:
            for i, handler in enumerate(handlers[thread]):
                (emitter.once if i % 2 else emitter.on)("e", handler)

        return run

    def emit_until_done() -> None:
        while not done.is_set():
            emitter.emit("e")
            emitter.emit("unrelated")

    def registrations_then_done() -> None:
        try:
            _run_threads([register(t) for t in range(4)])
        finally:
            done.set()

    _run_threads([registrations_then_done, emit_until_done])
    listeners = emitter.listeners("e")
    for thread, thread_handlers in handlers.items():
        for i, handler in enumerate(thread_handlers):
            key = thread * per_thread + i
            if i % 2:  # once: fired exactly once, or still pending
                assert fired.get(key, 0) + listeners.count(handler) == 1
            else:  # on: still registered, exactly once
                assert listeners.count(handler) == 1
    assert emitter.listener_count("e") == len(listeners)


def test_threads_emitting_concurrently_fire_each_once_exactly_once(emitter: Any, fast_switching: None) -> None:
    for _round in range(5):
        fired: Dict[int, int] = {}
        emits: List[int] = []
        lock = threading.Lock()

        def make(key: int) -> Callable[[], None]:
            def handler() -> None:
                with lock:
                    fired[key] = fired.get(key, 0) + 1

            return handler

        def count_emit() -> None:
            emits.append(1)

        emitter.remove_all_listeners()
        emitter.on("e", count_emit)
        for key in range(100):
            emitter.once("e", make(key))
            emitter.once("e", make(key + 1000))  # two once registrations per slot

        def emit_many() -> None:
            for _ in range(20):
                emitter.emit("e")

        _run_threads([emit_many for _ in range(4)])
        assert fired == {key: 1 for key in [*range(100), *range(1000, 1100)]}
        assert len(emits) == 80
        assert emitter.listeners("e") == [count_emit]


def test_threads_racing_once_with_nested_emits_fire_once(emitter: Any, fast_switching: None) -> None:
    fired: List[int] = []
    depth = threading.local()

    def nester() -> None:
        if not getattr(depth, "value", 0):
            depth.value = 1
            try:
                emitter.emit("e")
            finally:
                depth.value = 0

    emitter.on("e", nester)
    for key in range(200):
        emitter.once("e", lambda key=key: fired.append(key))

    def emit_some() -> None:
        for _ in range(10):
            emitter.emit("e")

    _run_threads([emit_some for _ in range(3)])
    assert sorted(fired) == list(range(200))


def test_once_fires_once_when_emitting_threads_queue_on_a_busy_registry(emitter: Any) -> None:
    """Two threads reach the same once registration while a third holds the
    registry lock (inside a callback's ``__eq__``, called by ``on``'s dedupe):
    both saw it active; only one may fire it once they get the lock."""
    in_eq = threading.Event()
    reached = [threading.Event(), threading.Event()]
    fired: List[int] = []
    where = threading.local()

    class SlowEq:
        slow = False

        def __call__(self) -> None:
            pass

        def __hash__(self) -> int:
            return 1

        def __eq__(self, other: object) -> bool:
            if self.slow:
                in_eq.set()
                for event in reached:
                    event.wait(timeout=10)
                time.sleep(0.05)  # not an assertion: lets both emitters block on the lock
            return self is other

    registered = SlowEq()
    emitter.on("slow", registered)
    registered.slow = True

    def signal() -> None:
        reached[where.index].set()
        in_eq.wait(timeout=10)

    emitter.on("e", signal)
    emitter.once("e", lambda: fired.append(1))

    def emitting(index: int) -> Callable[[], None]:
        def run() -> None:
            where.index = index
            in_eq.wait(timeout=10)
            emitter.emit("e")

        return run

    def registering() -> None:
        emitter.on("slow", SlowEq())  # dedupe compares under the registry lock

    _run_threads([registering, emitting(0), emitting(1)])
    assert in_eq.is_set() and all(event.is_set() for event in reached)
    assert fired == [1]
    assert emitter.listeners("e") == [signal]


def test_threads_on_once_off_emit_together_keep_emitter_consistent(emitter: Any, fast_switching: None) -> None:
    rounds = 200
    once_calls: Dict[int, int] = {}
    once_fired: Dict[int, int] = {}
    on_handlers: Dict[int, Callable[[], None]] = {}
    stop = threading.Event()

    def worker(thread: int) -> Callable[[], None]:
        def on_handler() -> None:
            pass

        def once_handler() -> None:
            once_fired[thread] = once_fired.get(thread, 0) + 1

        on_handlers[thread] = on_handler

        def run() -> None:
            for i in range(rounds):
                emitter.on("e", on_handler)
                emitter.once("e", once_handler)
                once_calls[thread] = once_calls.get(thread, 0) + 1
                if i % 3 == 0:
                    emitter.off("e", once_handler)
                emitter.off("e", on_handler)
                emitter.listeners("e")
                emitter.event_names()
            emitter.on("e", on_handler)  # leave exactly one on registration

        return run

    def emitter_thread() -> None:
        while not stop.is_set():
            emitter.emit("e")

    def workers_then_stop() -> None:
        try:
            _run_threads([worker(t) for t in range(3)])
        finally:
            stop.set()

    _run_threads([workers_then_stop, emitter_thread, emitter_thread])
    listeners = emitter.listeners("e")
    for thread, on_handler in on_handlers.items():
        assert listeners.count(on_handler) == 1
        assert once_fired.get(thread, 0) <= once_calls[thread]
    # Whatever once registrations are still pending fire now, exactly once.
    before = dict(once_fired)
    pending = len(listeners) - len(on_handlers)
    emitter.emit("e")
    assert sum(once_fired.values()) - sum(before.values()) == pending
    assert emitter.listeners("e") == [h for h in listeners if h in on_handlers.values()]


def test_compiled_core_keeps_the_gil_off_on_free_threaded_python(impl: Any) -> None:
    # "The extension declares itself free-threading compatible only where it
    # is": importing it on a free-threaded build must not turn the GIL on.
    import subprocess
    import sysconfig

    if impl.name != "compiled":
        pytest.skip("about the compiled core")
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        pytest.skip("not a free-threaded build")
    code = "import sys, livekit_events._core_c; print(sys._is_gil_enabled())"
    result = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        # Not the checkout root: `-c` puts the cwd first on sys.path, where the
        # source tree (no compiled core) would shadow the installed package.
        cwd=os.path.dirname(os.path.abspath(__file__)),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
