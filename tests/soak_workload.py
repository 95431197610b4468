"""Leak soak: a million emits and 10^5 registration changes, nothing leaks.

    .venv/bin/python tests/soak_workload.py          # 10^6 emits, 10^5 churn, both cores
    .venv/bin/python tests/soak_workload.py --emits 100000 --churn 10000 --impl compiled

For each implementation (the compiled core and the pure twin, imported by
name), two phases run against one emitter:

* emits: a cycle of ten emits over fan-outs of 1, 10 and 4 handlers of every
  shape (functions of each arity, ``*args``, defaults, a bound method, a
  partial, a callable object), 2-10 arguments (across the compiled core's
  stack buffer), handlers that raise ``Exception`` and ``TypeError`` (logged),
  once churn (register three, emit, and a once removed by ``off``), an arity
  ``TypeError`` out of emit, a ``BaseException`` out of emit, and a nested emit.
* churn: ``on``/``off``/``once`` (``--churn`` times each) over random events
  and handlers, with dedupe, once firing and ``remove_all_listeners``.

After a warm-up, each phase checks that the reference counts of every handler,
argument and event object are unchanged, that ``tracemalloc`` shows no growth
(traced memory after minus before, within ``--max-traced-growth`` bytes), and
that RSS stays flat (within ``--max-rss-growth``).  Figures are printed; the
exit status is 1 if anything grew.  tests/test_soak.py runs the same workload,
smaller, in the normal suite.
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import os
import random
import sys
import time
import tracemalloc
from typing import Any, Dict, List, Optional

# --------------------------------------------------------------------------
# The workload


class Arg:
    """A unique argument object (its refcount is checked)."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


class EventKey:
    """A unique event object, hashed by identity."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class Stop(BaseException):
    """Not an Exception: propagates out of emit."""


class _Counter(logging.Filter):
    """Counts and drops handler-failure records (no output, no pile-up)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        self.count += 1
        return False


class Workload:
    def __init__(self, EventEmitter: Any) -> None:  # noqa: N803
        self.emitter = EventEmitter()
        self.calls = 0

        def f0() -> None:
            self.calls += 1

        def f1(a: Any) -> None:
            self.calls += 1

        def f3(a: Any, b: Any, c: Any = None) -> None:
            self.calls += 1

        def fvar(*args: Any) -> None:
            self.calls += 1

        def fp(x: Any, a: Any) -> None:
            self.calls += 1

        def fail(a: Any) -> None:
            raise ValueError(f"soak failure {a!r}")  # the traceback holds the args

        def fail_type(*args: Any) -> None:
            raise TypeError("a TypeError in a handler body")

        def stop(*args: Any) -> None:
            raise Stop()

        def nested(a: Any, b: Any) -> None:
            self.emitter.emit(self.small, a)

        class Owner:
            def method(inner, a: Any, b: Any = None) -> None:  # noqa: N805
                self.calls += 1

        class CallMe:
            def __call__(inner, a: Any, b: Any) -> None:  # noqa: N805
                self.calls += 1

        self.owner = Owner()
        self.callme = CallMe()
        self.partial = functools.partial(fp, "x")
        self.functions = [f0, f1, f3, fvar, fp, fail, fail_type, stop, nested]
        self.f0, self.f1, self.f3, self.fvar = f0, f1, f3, fvar
        self.fail, self.fail_type, self.stop, self.nested = fail, fail_type, stop, nested

        self.args = [Arg(n) for n in range(10)]
        self.small = "small"
        self.wide = EventKey("wide")
        self.failing = ("failing", 1)
        self.onces = EventKey("onces")
        self.arity = EventKey("arity")
        self.base = EventKey("base")
        self.events = [self.wide, self.failing, self.onces, self.arity, self.base]

        e = self.emitter
        e.on(self.small, f1)
        shapes = [f0, f1, f3, fvar, self.owner.method, self.partial, self.callme]
        for i in range(20):  # 7 distinct shapes with `on`; the rest as onces
            handler = shapes[i % len(shapes)]
            if i < len(shapes):
                e.on(self.wide, handler)
            else:
                e.once(self.wide, handler)  # consumed by the first wide emit; re-added per cycle
        e.on(self.failing, f1)
        e.on(self.failing, fail)
        e.on(self.failing, fail_type)
        e.on(self.failing, fvar)
        e.on(self.arity, f0)
        e.on(self.arity, f3)  # needs 2: emit with 1 raises TypeError at its turn
        e.on(self.base, nested)
        e.on(self.base, stop)
        e.on(self.base, f1)  # never reached

    def tracked(self) -> Dict[str, Any]:
        """Every object whose refcount must not change."""
        objects: Dict[str, Any] = {f"function {f.__name__}": f for f in self.functions}
        objects.update(
            {
                "bound-method owner": self.owner,
                "bound-method function": type(self.owner).method,
                "partial": self.partial,
                "callable object": self.callme,
                "emitter": self.emitter,
            }
        )
        objects.update({f"arg {i}": a for i, a in enumerate(self.args)})
        objects.update({f"event {getattr(e, 'name', e)!r}": e for e in self.events})
        return objects

    def cycle(self, i: int) -> None:
        """Ten top-level emits."""
        e, args = self.emitter, self.args
        for _ in range(5):
            e.emit(self.small, args[0])  # fan-out 1
        e.emit(self.wide, *args[: 2 + i % 9])  # fan-out 10: 7 on + 3 onces, re-added below
        for handler in (self.f1, self.owner.method, self.callme):
            e.once(self.wide, handler)
        e.emit(self.failing, args[1], args[2], args[3])  # two failures logged
        # once churn: three onces fire; one removed by off before the emit
        e.once(self.onces, self.f1)
        e.once(self.onces, self.owner.method)
        e.once(self.onces, self.fvar)
        e.once(self.onces, self.f0)
        e.off(self.onces, self.f0)
        e.emit(self.onces, args[4])
        try:
            e.emit(self.arity, args[5])  # f0 runs, then f3's arity TypeError
        except TypeError:
            pass
        try:
            e.emit(self.base, args[6], args[7])  # nested emit, then Stop
        except Stop:
            pass


def rss_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def refcounts(objects: Dict[str, Any]) -> Dict[str, int]:
    return {name: sys.getrefcount(obj) for name, obj in objects.items()}


def _measure(run, objects: Dict[str, Any], use_tracemalloc: bool) -> Dict[str, Any]:
    """Run `run()` between two measurements (after gc), return the deltas."""
    gc.collect()
    if use_tracemalloc:
        tracemalloc.start()
    before_refs = refcounts(objects)
    before_blocks = sys.getallocatedblocks()
    before_traced = tracemalloc.get_traced_memory()[0] if use_tracemalloc else 0
    before_rss = rss_bytes()
    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    gc.collect()
    after_traced = tracemalloc.get_traced_memory()[0] if use_tracemalloc else 0
    after_rss = rss_bytes()
    after_blocks = sys.getallocatedblocks()
    after_refs = refcounts(objects)
    if use_tracemalloc:
        tracemalloc.stop()
    changed = {
        name: after_refs[name] - before_refs[name]
        for name in objects
        if after_refs[name] != before_refs[name]
    }
    return {
        "seconds": elapsed,
        "refcount changes": changed,
        "objects tracked": len(objects),
        "traced growth": after_traced - before_traced if use_tracemalloc else None,
        "blocks growth": after_blocks - before_blocks,
        "rss growth": (after_rss - before_rss) if before_rss is not None and after_rss is not None else None,
    }


def soak_emits(EventEmitter: Any, emits: int, use_tracemalloc: bool = True) -> Dict[str, Any]:  # noqa: N803
    work = Workload(EventEmitter)
    logger = logging.getLogger("livekit.events")
    counter = _Counter()
    logger.addFilter(counter)
    try:
        cycles = max(1, emits // 10)
        warmup = max(10, cycles // 20)
        for i in range(warmup):  # caches, free lists, the logging machinery
            work.cycle(i)
        objects = work.tracked()
        counter.count = work.calls = 0

        def run() -> None:
            for i in range(cycles):
                work.cycle(i)

        figures = _measure(run, objects, use_tracemalloc)
    finally:
        logger.removeFilter(counter)
    figures.update(emits=cycles * 10, calls=work.calls, failures_logged=counter.count)
    # The registrations are back where they started.
    assert work.emitter.listener_count(work.wide) == 10
    assert work.emitter.listener_count(work.onces) == 0
    return figures


def soak_churn(EventEmitter: Any, churn: int, use_tracemalloc: bool = True) -> Dict[str, Any]:  # noqa: N803
    """on/off/once `churn` times each over random events and handlers."""
    work = Workload(EventEmitter)
    emitter = work.emitter
    emitter.remove_all_listeners()
    handlers = [work.f0, work.f1, work.f3, work.fvar, work.owner.method, work.partial, work.callme]
    events = [work.small] + work.events
    rng = random.Random(5)
    plan = [(rng.randrange(len(events)), rng.randrange(len(handlers))) for _ in range(1024)]

    def step(i: int) -> None:
        ev, h = plan[i % len(plan)]
        event, handler = events[ev], handlers[h]
        emitter.on(event, handler)
        emitter.once(event, handler)
        if i % 3 == 0:
            emitter.emit(event, work.args[0], work.args[1])  # fires the onces
        emitter.off(event, handler)
        if i % 97 == 0:
            emitter.remove_all_listeners(event if i % 2 else None)

    for i in range(max(10, churn // 20)):
        step(i)
    emitter.remove_all_listeners()
    objects = work.tracked()

    def run() -> None:
        for i in range(churn):
            step(i)
        emitter.remove_all_listeners()

    figures = _measure(run, objects, use_tracemalloc)
    figures.update(operations=churn * 3)
    return figures


def implementations(names: List[str]) -> Dict[str, Any]:
    from support import emitter_class

    return {name: emitter_class(name) for name in names}


def _fmt_bytes(n: Optional[int]) -> str:
    return "n/a" if n is None else f"{n:+,d} B"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emits", type=int, default=1_000_000)
    parser.add_argument("--churn", type=int, default=100_000, help="on/off/once each this many times")
    parser.add_argument("--impl", choices=["compiled", "pure", "both"], default="both")
    parser.add_argument("--no-tracemalloc", action="store_true", help="faster; refcounts and RSS only")
    parser.add_argument("--max-traced-growth", type=int, default=64 * 1024)
    parser.add_argument("--max-rss-growth", type=int, default=4 * 1024 * 1024)
    options = parser.parse_args(argv)
    names = ["compiled", "pure"] if options.impl == "both" else [options.impl]
    failed = False
    print(f"Python {sys.version.split()[0]}, livekit_events soak: {options.emits:,} emits, "
          f"{options.churn:,} x on/off/once; tracemalloc {'off' if options.no_tracemalloc else 'on'}")
    for name, EventEmitter in implementations(names).items():  # noqa: N806
        for phase, figures in (
            ("emits", soak_emits(EventEmitter, options.emits, not options.no_tracemalloc)),
            ("churn", soak_churn(EventEmitter, options.churn, not options.no_tracemalloc)),
        ):
            problems = []
            if figures["refcount changes"]:
                problems.append(f"refcounts changed: {figures['refcount changes']}")
            traced = figures["traced growth"]
            if traced is not None and traced > options.max_traced_growth:
                problems.append(f"tracemalloc grew {traced:,} B")
            rss = figures["rss growth"]
            if rss is not None and rss > options.max_rss_growth:
                problems.append(f"RSS grew {rss:,} B")
            failed = failed or bool(problems)
            count = (
                f"{figures['emits']:,} emits, {figures['calls']:,} handler calls, "
                f"{figures['failures_logged']:,} failures logged"
                if phase == "emits"
                else f"{figures['operations']:,} on/once/off"
            )
            print(
                f"[{name:8s}] {phase}: {count} in {figures['seconds']:.1f} s | "
                f"refcount changes: {len(figures['refcount changes'])} of "
                f"{figures['objects tracked']} objects | tracemalloc {_fmt_bytes(traced)} | "
                f"allocated blocks {figures['blocks growth']:+,d} | RSS {_fmt_bytes(rss)} | "
                + ("OK" if not problems else "FAIL: " + "; ".join(problems))
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
