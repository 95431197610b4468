"""SPEC §2-§5 at scale: the registry keeps every contract line with many
handlers on one event, through index growth, removals and compaction, also
when those happen during an emit (while the emit walks the registrations).

The differential fuzzer (test_differential.py) caps events at a few handlers;
these tests drive one event through the sizes where the registry changes
shape (an index past a handful of registrations, dead entries compacted in
bulk), against a plain list model.
"""

from __future__ import annotations

import random
from typing import Any, Callable, List, Tuple

import pytest


class Model:
    """One event's registrations, as SPEC.md says, in a list."""

    def __init__(self) -> None:
        self.entries: List[Tuple[Any, bool]] = []  # (callback, once) in call order

    def on(self, callback: Any) -> None:
        if not any(c == callback and not once for c, once in self.entries):
            self.entries.append((callback, False))

    def once(self, callback: Any) -> None:
        self.entries.append((callback, True))

    def off(self, callback: Any) -> None:
        self.entries = [(c, once) for c, once in self.entries if c != callback]

    def listeners(self) -> List[Any]:
        return [c for c, _ in self.entries]


def make_pool(size: int, calls: List[Any]) -> List[Callable[..., None]]:
    def make(i: int) -> Callable[..., None]:
        def handler(*args: Any) -> None:
            calls.append(i)

        handler.__qualname__ = f"handler{i}"
        return handler

    return [make(i) for i in range(size)]


@pytest.mark.parametrize("seed", range(6))
def test_many_handlers_on_one_event_match_the_model(EventEmitter: Any, seed: int) -> None:
    rng = random.Random(seed)
    calls: List[Any] = []
    pool = make_pool(60, calls)
    emitter = EventEmitter()
    model = Model()
    # Operations also run from inside a handler, while emit walks the slots
    # (compaction then waits for the walk to end).
    pending: List[Callable[[], None]] = []

    growth = [0.45]  # share of `on`: phases of growth and of shrinking

    def operation() -> Callable[[], None]:
        roll = rng.random()
        handler = rng.choice(pool)
        if roll < growth[0]:
            return lambda: (emitter.on("e", handler), model.on(handler))
        if roll < growth[0] + 0.1:
            return lambda: (emitter.once("e", handler), model.once(handler))
        if roll < 0.97:
            return lambda: (emitter.off("e", handler), model.off(handler))

        def remove_all() -> None:
            emitter.remove_all_listeners("e")
            model.entries = []

        return remove_all

    def inside_emit(*args: Any) -> None:
        while pending:
            pending.pop()()

    for step in range(1500):
        if step % 100 == 0:  # the event grows past and shrinks below the index threshold
            growth[0] = 0.7 if step % 200 == 0 else 0.2
        if rng.random() < 0.15:
            # An emit of the same event whose last handler changes the
            # registry while the walk is still in progress.
            pending.extend(operation() for _ in range(rng.randrange(1, 12)))
            emitter.on("e", inside_emit)
            # Every once registration fires before the walker, which is last.
            model.entries = [(c, once) for c, once in model.entries if not once]
            emitter.emit("e")
            emitter.off("e", inside_emit)
            model.off(inside_emit)
        else:
            operation()()
        assert emitter.listeners("e") == model.listeners(), f"step {step}"
        assert emitter.listener_count("e") == len(model.entries)
        if step % 50 == 0:
            del calls[:]
            expected = [pool.index(c) for c in model.listeners()]
            emitter.emit("e", step)
            model.entries = [(c, once) for c, once in model.entries if not once]
            assert calls == expected, f"step {step}"


def test_dedupe_holds_after_a_large_event_shrinks_during_an_emit(EventEmitter: Any) -> None:
    # A registry that indexes large events must keep indexing new
    # registrations after the event shrank below the index threshold while
    # an emit deferred compaction (a registration missed by the index would
    # be registered twice).
    calls: List[Any] = []
    pool = make_pool(40, calls)
    emitter = EventEmitter()

    def churn() -> None:
        for handler in pool[:12]:
            emitter.on("e", handler)
        for handler in pool[:10]:
            emitter.off("e", handler)
        for i in range(30):  # rotate: fills the index with removed entries
            emitter.on("e", pool[12 + i % 20])
            emitter.off("e", pool[12 + i % 20])
        for handler in pool:
            emitter.on("e", handler)
            emitter.on("e", handler)  # duplicate: must change nothing

    emitter.on("e", churn)
    emitter.emit("e")  # the churn runs while this emit walks "e"
    emitter.off("e", churn)
    assert emitter.listeners("e") == pool[10:12] + pool[:10] + pool[12:]
    assert len(set(emitter.listeners("e"))) == len(pool)


def test_emit_after_a_burst_of_removals_calls_only_the_survivors(EventEmitter: Any) -> None:
    calls: List[Any] = []
    pool = make_pool(3000, calls)
    emitter = EventEmitter()
    emitter.set_max_listeners(None)  # 3000 handlers are expected here
    for handler in pool:
        emitter.on("e", handler)
    for handler in pool[:-3]:
        emitter.off("e", handler)
    emitter.emit("e")
    assert calls == [2997, 2998, 2999]
    assert emitter.listeners("e") == pool[-3:]
