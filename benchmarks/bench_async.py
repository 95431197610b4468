"""Async handlers: what ``TaskHandlers`` costs per emit, against ``create_task`` by hand.

    python benchmarks/bench_async.py [--emits N] [--paced-emits M] [--rounds R]
                                     [--emitters compiled,pure,livekit] [--json]

The reference is the pattern livekit's docs recommend for async work in a
handler: a synchronous handler that calls ``asyncio.create_task``:

* ``create_task``: ``em.on(event, lambda a: asyncio.create_task(handler(a)))``,
  exactly as in the docs (the task is not referenced: it can be garbage-
  collected while it runs, and its exception is never seen);
* ``create_task+ref``: the same, keeping a reference until the task is done
  (``tasks.add(task); task.add_done_callback(tasks.discard)``, asyncio's own
  advice), which is what a correct hand-written version needs;
* ``concurrent``, ``serial``, ``latest``: ``TaskHandlers`` in each mode.

The handler is ``async def handler(a)`` that counts its calls and returns
(no await), so what is timed is the dispatch: emit, task creation,
scheduling, running the task to its end, and the bookkeeping.

Two shapes, each timed from the first emit until the last call has
finished (a future the handler resolves), in a running event loop:

* ``burst``: N emits in a row, then the loop runs the calls.  ``latest``
  coalesces a burst into one call (that is its purpose), so its figure is the
  cost of an emit it skips.
* ``paced``: one emit, then wait until its call has finished, M times: every
  mode runs every call; the loop's own wake-up cost is in every figure.

Every variant of a shape runs in the same process, interleaved: each round
runs one batch of each, in a shuffled order; reported is each variant's best
round (ns per emit), and its ratio to ``create_task`` (best to best; the
median of the per-round ratios is in ``--json``).  Why not ``compare.py``:
its cases are synchronous batches timed as one statement per iteration, and
its columns are emitter implementations; here each batch must run the event
loop until the tasks have finished, and the columns are dispatch variants.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import harness  # benchmarks/, this script's directory

VARIANTS = ("create_task", "create_task+ref", "concurrent", "serial", "latest")
SHAPES = ("burst", "paced")
EVENT = "data_received"


def _emitter_factories() -> Dict[str, Callable[[], Any]]:
    import importlib

    from livekit_events._emitter import emitter_class_for

    factories: Dict[str, Callable[[], Any]] = {}
    for name, module in (("compiled", "livekit_events._core_c"), ("pure", "livekit_events._core_py")):
        try:
            core = importlib.import_module(module)
        except ImportError:
            continue
        factories[name] = emitter_class_for(core.EmitterCore)
    try:
        from livekit import rtc

        factories["livekit"] = rtc.EventEmitter
    except ImportError:
        pass
    return factories


class Variant:
    """One way of dispatching ``EVENT`` to the async handler, on its own emitter."""

    def __init__(self, name: str, emitter: Any) -> None:
        self.name = name
        self.emitter = emitter
        self.calls = 0
        self.target = 0
        self.finished: Optional[asyncio.Future[None]] = None
        self.owner: Any = None
        self.tasks: set[asyncio.Task[Any]] = set()

    async def handler(self, a: Any) -> None:
        self.calls += 1
        if self.calls == self.target and self.finished is not None:
            self.finished.set_result(None)

    async def setup(self) -> None:
        from livekit_events.aio import TaskHandlers

        handler = self.handler
        if self.name == "create_task":

            def on_event(a: Any) -> None:
                asyncio.create_task(handler(a))

            self.emitter.on(EVENT, on_event)
        elif self.name == "create_task+ref":
            tasks = self.tasks

            def on_event_ref(a: Any) -> None:
                task = asyncio.create_task(handler(a))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

            self.emitter.on(EVENT, on_event_ref)
        else:
            self.owner = TaskHandlers(self.emitter, mode=self.name, maxsize=1 << 20)
            await self.owner.__aenter__()
            self.owner.on(EVENT, handler)

    async def teardown(self) -> None:
        if self.owner is not None:
            await self.owner.__aexit__(None, None, None)
        while self.tasks:
            await asyncio.sleep(0)

    async def batch(self, shape: str, n: int) -> int:
        loop = asyncio.get_running_loop()
        emit = self.emitter.emit
        self.calls = 0
        if shape == "burst":
            self.target = 1 if self.name == "latest" else n
            self.finished = loop.create_future()
            t0 = time.perf_counter_ns()
            for i in range(n):
                emit(EVENT, i)
            await self.finished
            elapsed = time.perf_counter_ns() - t0
        else:
            t0 = time.perf_counter_ns()
            for i in range(n):
                self.target = i + 1
                self.finished = loop.create_future()
                emit(EVENT, i)
                await self.finished
            elapsed = time.perf_counter_ns() - t0
        # Let the done callbacks (create_task+ref) and the bookkeeping run.
        for _ in range(3):
            await asyncio.sleep(0)
        return elapsed


async def _measure(
    emitter_name: str, make: Callable[[], Any], shape: str, n: int, rounds: int
) -> Dict[str, List[float]]:
    variants = [Variant(name, make()) for name in VARIANTS]
    for variant in variants:
        await variant.setup()
    per_emit: Dict[str, List[float]] = {v.name: [] for v in variants}
    try:
        for variant in variants:  # warm up
            await variant.batch(shape, n)
        gc.collect()
        gc.disable()
        try:
            for _ in range(rounds):
                order = list(variants)
                random.shuffle(order)
                for variant in order:
                    per_emit[variant.name].append(await variant.batch(shape, n) / n)
        finally:
            gc.enable()
    finally:
        for variant in variants:
            await variant.teardown()
    return per_emit


def _ns(value: float) -> str:
    return f"{value / 1000:.2f} µs" if value >= 1000 else f"{value:.0f} ns"


def run(
    emits: int = 1000,
    rounds: int = 31,
    emitters: Optional[Sequence[str]] = None,
    paced_emits: int = 200,
) -> Dict[str, Any]:
    factories = _emitter_factories()
    names = [e for e in (emitters or list(factories)) if e in factories]
    results: Dict[str, Any] = {}
    for emitter_name in names:
        for shape in SHAPES:
            n = emits if shape == "burst" else paced_emits
            per_emit = asyncio.run(_measure(emitter_name, factories[emitter_name], shape, n, rounds))
            base = per_emit["create_task"]
            rows = {}
            for name, values in per_emit.items():
                rows[name] = {
                    "best_ns": min(values),
                    "median_ns": statistics.median(values),
                    "ratio_best": min(values) / min(base),
                    "ratio_median_of_rounds": statistics.median(
                        v / b for v, b in zip(values, base)
                    ),
                }
            results[f"{emitter_name}/{shape}"] = rows
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--emits", type=int, default=1000, help="emits per burst batch")
    parser.add_argument("--paced-emits", type=int, default=200, help="emits per paced batch")
    parser.add_argument("--rounds", type=int, default=31, help="interleaved rounds")
    parser.add_argument("--emitters", default="", help="comma-separated: compiled,pure,livekit")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    emitters = [e for e in args.emitters.split(",") if e] or None
    print(f"# {harness.describe_machine(harness.machine_info())}", flush=True)
    results = run(args.emits, args.rounds, emitters, args.paced_emits)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(
        f"# {args.emits} emits per burst, {args.paced_emits} per paced batch, "
        f"{args.rounds} interleaved rounds; each cell: best "
        f"round per emit (ratio to create_task, best to best; median of per-round ratios)"
    )
    print()
    print("| emitter | shape | " + " | ".join(VARIANTS) + " |")
    print("|---|---|" + "---|" * len(VARIANTS))
    for key, rows in results.items():
        emitter_name, shape = key.split("/")
        cells = []
        for name in VARIANTS:
            row = rows[name]
            ratio = (
                ""
                if name == "create_task"
                else f" ({row['ratio_best']:.2f}×; {row['ratio_median_of_rounds']:.2f}×)"
            )
            cells.append(f"{_ns(row['best_ns'])}{ratio}")
        print(f"| {emitter_name} | {shape} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
