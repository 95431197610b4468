"""Thread hammer: many threads on shared emitters, for seconds.

Several threads run ``on``/``once``/``off``/``emit`` (and, on one emitter,
``remove_all_listeners``) on shared emitters, with a tiny switch interval so
they interleave inside the calls.  Afterwards: no thread saw an exception, no
registration was lost or duplicated (each thread's own handlers are, in
order, exactly what it left registered), every ``once`` registration fired
exactly once overall (or, when ``off`` raced it, at most once), every failure
was logged once, and ``listeners``/``listener_count``/``event_names`` agree.

Runs about 2 s per implementation; set ``LIVEKIT_EVENTS_HAMMER_SECONDS`` for
longer::

    LIVEKIT_EVENTS_HAMMER_SECONDS=30 .venv/bin/pytest tests/test_threads.py -rA
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import sys
import threading
import time
from collections import Counter
from typing import Any, Dict, List, Tuple

import pytest

SECONDS = float(os.environ.get("LIVEKIT_EVENTS_HAMMER_SECONDS", "2"))
THREADS = 6
EMITTERS = 3
EVENTS = ("a", "b", "c")


_nesting = threading.local()  # one nested emit at most, per thread


class HammerError(Exception):
    pass


class _FailureCounter(logging.Filter):
    """Counts (and drops) the records of HammerError failures, from any thread."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], HammerError):
            with self.lock:
                self.count += 1
            return False
        return True


class Once:
    """A one-shot handler; records each time it fires."""

    def __init__(self, token: int, fired: List[int]) -> None:
        self.token = token
        self.fired = fired

    def __call__(self, a: Any, b: Any = None) -> None:
        self.fired.append(self.token)  # list.append is atomic


class Worker:
    """One hammering thread and the registrations it alone owns."""

    def __init__(self, index: int, emitters: List[Any], chaos: Any, shared: "Shared") -> None:
        self.index = index
        self.emitters = emitters
        self.chaos = chaos
        self.shared = shared
        self.random = random.Random(1000 + index)
        self.errors: List[BaseException] = []
        self.ops: Counter = Counter()
        # Stable handlers of several shapes, owned by this thread.
        owner = self

        class Target:
            def method(self, a: Any) -> None:
                pass

        def h0() -> None:
            pass

        def h2(a: Any, b: Any) -> None:
            pass

        def hvar(*args: Any) -> None:
            assert len(args) >= 2

        def nest(a: Any, b: Any = None) -> None:
            # A nested emit (depth 1, in whichever thread runs it), on the
            # first emitter: sometimes the same one, sometimes another.
            if getattr(_nesting, "active", False):
                return
            _nesting.active = True
            try:
                owner.emitters[0].emit(EVENTS[len(str(a)) % len(EVENTS)], a, b)
            finally:
                _nesting.active = False

        def fail(a: Any) -> None:
            next(owner.shared.failures)
            raise HammerError("expected")

        target = Target()
        # A bound method: a fresh (equal) object each time it's used.
        self.handlers: Dict[str, Any] = {
            "h0": lambda: h0, "h2": lambda: h2, "hvar": lambda: hvar,
            "method": lambda: target.method, "nest": lambda: nest, "fail": lambda: fail,
        }  # fmt: skip
        self.owned = {name: get() for name, get in self.handlers.items()}
        # What this thread left registered: (emitter, event) -> handler names, in order.
        self.expected: Dict[Tuple[int, str], List[str]] = {
            (e, ev): [] for e in range(len(emitters)) for ev in EVENTS
        }
        # Once tokens this thread registered and has not removed.
        self.pending: Dict[Tuple[int, str], List[Once]] = {key: [] for key in self.expected}
        self.removed_onces: List[Once] = []
        self.all_onces: List[Once] = []
        self.storm_onces: List[Once] = []

    def run(self, deadline: float) -> None:
        try:
            while time.monotonic() < deadline:
                for _ in range(50):
                    self.step()
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def step(self) -> None:
        r = self.random
        e = r.randrange(len(self.emitters))
        ev = r.choice(EVENTS)
        emitter = self.emitters[e]
        key = (e, ev)
        roll = r.random()
        if roll < 0.28:
            self.ops["emit"] += 1
            emitter.emit(ev, *range(r.choice((2, 3))))
        elif roll < 0.46:
            self.ops["on"] += 1
            name = r.choice(list(self.handlers))
            emitter.on(ev, self.handlers[name]())
            if name not in self.expected[key]:
                self.expected[key].append(name)
        elif roll < 0.59:
            self.ops["off"] += 1
            name = r.choice(list(self.handlers))
            emitter.off(ev, self.handlers[name]())
            if name in self.expected[key]:
                self.expected[key].remove(name)
        elif roll < 0.77:
            self.ops["once"] += 1
            token = Once(next(self.shared.tokens), self.shared.fired)
            self.all_onces.append(token)
            emitter.once(ev, token)
            self.pending[key].append(token)
        elif roll < 0.82:
            if self.pending[key]:
                self.ops["off once"] += 1
                token = self.pending[key].pop(r.randrange(len(self.pending[key])))
                emitter.off(ev, token)
                self.removed_onces.append(token)
        elif roll < 0.90:
            self.chaos_step()
        else:
            self.storm_step()

    def storm_step(self) -> None:
        """Once storm: every thread registers onces on one event of one
        emitter and emits it, so emits race to claim the same onces."""
        self.ops["storm emit"] += 1
        storm = self.shared.storm
        for _ in range(16):
            token = Once(next(self.shared.tokens), self.shared.storm_fired)
            self.storm_onces.append(token)
            storm.once("s", token)
        storm.emit("s", 1)

    def chaos_step(self) -> None:
        """The shared 'chaos' emitter: shared handlers, remove_all included."""
        r = self.random
        ev = r.choice(EVENTS)
        roll = r.random()
        if roll < 0.35:
            self.ops["chaos emit"] += 1
            self.chaos.emit(ev, 1, 2)
        elif roll < 0.6:
            self.ops["chaos on"] += 1
            self.chaos.on(ev, self.shared.chaos_handlers[r.randrange(4)])
        elif roll < 0.8:
            self.ops["chaos once"] += 1
            token = Once(next(self.shared.tokens), self.shared.chaos_fired)
            self.chaos.once(ev, token)
        elif roll < 0.95:
            self.ops["chaos off"] += 1
            self.chaos.off(ev, self.shared.chaos_handlers[r.randrange(4)])
        else:
            self.ops["chaos remove_all"] += 1
            self.chaos.remove_all_listeners(r.choice((ev, None)))


class Shared:
    def __init__(self) -> None:
        self.tokens = itertools.count()
        self.failures = itertools.count(1)  # next() is atomic
        self.fired: List[int] = []
        self.chaos_fired: List[int] = []
        self.storm_fired: List[int] = []
        self.storm: Any = None  # set by the test

        def make(i: int) -> Any:
            def handler(a: Any, b: Any) -> None:
                pass

            handler.__name__ = f"chaos{i}"
            return handler

        self.chaos_handlers = [make(i) for i in range(4)]


def check_consistent(emitter: Any) -> None:
    names = emitter.event_names()
    assert len(set(names)) == len(names)
    for ev in EVENTS:
        listeners = emitter.listeners(ev)
        assert emitter.listener_count(ev) == len(listeners)
        assert (ev in names) == bool(listeners)
    assert {ev: cbs for ev, cbs in emitter._events.items()} == {
        ev: emitter.listeners(ev) for ev in names
    }


@pytest.mark.thread_unsafe(reason="starts its own threads and sets sys.setswitchinterval")
def test_thread_hammer(impl: Any) -> None:
    emitters = [impl.EventEmitter() for _ in range(EMITTERS)]
    chaos = impl.EventEmitter()
    shared = Shared()
    shared.storm = impl.EventEmitter()
    workers = [Worker(i, emitters, chaos, shared) for i in range(THREADS)]
    counter = _FailureCounter()
    logger = logging.getLogger("livekit.events")
    logger.addFilter(counter)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, inside the calls
    try:
        deadline = time.monotonic() + SECONDS
        threads = [threading.Thread(target=w.run, args=(deadline,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
        logger.removeFilter(counter)

    for w in workers:
        assert not w.errors, f"thread {w.index} raised {w.errors[0]!r}"

    # No lost or duplicated registration: each thread's own handlers are
    # exactly (and in order) what it left registered; its pending onces are
    # still there unless another thread's emit fired them.
    fired = Counter(shared.fired)
    for e, emitter in enumerate(emitters):
        check_consistent(emitter)
        for ev in EVENTS:
            listeners = emitter.listeners(ev)
            for w in workers:
                mine = [n for cb in listeners for n, h in w.owned.items() if cb == h]
                assert mine == w.expected[(e, ev)], f"thread {w.index}, emitter {e}, {ev!r}"
                onces = [cb for cb in listeners if isinstance(cb, Once)]
                for token in w.pending[(e, ev)]:
                    assert (token in onces) != (fired[token.token] == 1), (
                        f"once {token.token}: registered {token in onces}, fired {fired[token.token]}"
                    )
            # Nothing else is registered.
            known = {id(h) for w in workers for h in w.owned.values()}
            for cb in listeners:
                assert isinstance(cb, Once) or id(cb) in known or any(
                    cb == h for w in workers for h in w.owned.values()
                )

    # Fire whatever is pending; then every once fired exactly once overall
    # (and a removed one at most once: `off` may lose the race to an emit).
    for emitter in emitters:
        for ev in EVENTS:
            for cb in emitter.listeners(ev):
                if not isinstance(cb, Once):
                    emitter.off(ev, cb)
            emitter.emit(ev, "last", "call")
            assert emitter.listeners(ev) == []
    fired = Counter(shared.fired)
    removed = {t.token for w in workers for t in w.removed_onces}
    total_onces = sum(len(w.all_onces) for w in workers)
    for w in workers:
        for token in w.all_onces:
            if token.token in removed:
                assert fired[token.token] <= 1
            else:
                assert fired[token.token] == 1, f"once {token.token} fired {fired[token.token]} times"
    assert max(fired.values(), default=0) <= 1

    # The storm: after a last emit, every once fired exactly once.
    check_consistent(shared.storm)
    shared.storm.emit("s", "last")
    storm_fired = Counter(shared.storm_fired)
    storm_onces = [t.token for w in workers for t in w.storm_onces]
    assert len(storm_fired) == len(storm_onces), "a storm once never fired"
    assert set(storm_fired.values()) <= {1}, "a once fired twice"
    assert shared.storm.listeners("s") == []

    # The chaos emitter: consistent, and no once fired twice.
    check_consistent(chaos)
    assert max(Counter(shared.chaos_fired).values(), default=0) <= 1

    # Every failure was logged exactly once.
    failures = next(shared.failures) - 1
    assert counter.count == failures

    ops = Counter()
    for w in workers:
        ops.update(w.ops)
    print(
        f"thread hammer [{impl.name}] {THREADS} threads x {SECONDS:g} s: "
        + ", ".join(f"{n} {op}" for op, n in sorted(ops.items()))
        + f"; {total_onces} onces ({len(removed)} removed), {len(shared.fired)} fired; "
        f"{len(storm_onces)} storm onces, each fired once; "
        f"{failures} failures logged"
    )
    assert ops["emit"] > 0 and total_onces > 0
