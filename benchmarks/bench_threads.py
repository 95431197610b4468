"""Emits from several threads: thread scaling, and sustained rates with a writer.

    python benchmarks/bench_threads.py [--quick] [--sustained-seconds 60] [--json PATH]

Run from ``benchmarks/`` as a script (``scripts/bench.sh`` does, on the GIL
build and on a free-threaded 3.13t when it finds one), so that the installed
package is what gets timed.

Scaling.  Emits per second of one thread against two, side by side in one
run, for: two threads each on its own emitter (each with its own 10
handlers), two threads on one shared emitter (the same 10 handlers), and the
floor: the same handlers called from a bare compiled loop (``_floor.pyx``) in
as many threads.  Rounds alternate one and two threads; the median round
counts.  The targets (``--check``; with the GIL off only, since with the GIL
threads take turns) count against the floor's own scaling: where the floor
scales less than a target, 90 % of the floor's figure.

Sustained.  Two threads emit one event without pause while a third rotates
handlers on it (``on`` a new one, ``off`` the oldest, over 64 callables), one
handler registered throughout.  Per second and thread, the emit rate; over
the run, peak RSS above the first second's.  Targets: each thread's last
second within 2x of its first, RSS growth within 8 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from typing import Any, Callable, Dict, List

from build_floor import ensure_floor

import livekit_events
from livekit_events._emitter import emitter_class_for

CORES = {"compiled": "livekit_events._core_c", "pure": "livekit_events._core_py"}
HANDLERS = 10
SHARED_TARGET = 1.6
OWN_TARGET = 1.9
FLOOR_SHARE = 0.9


def gil_enabled() -> bool:
    return bool(getattr(sys, "_is_gil_enabled", lambda: True)())


def emitter_class(core: str) -> Any:
    import importlib

    return emitter_class_for(importlib.import_module(CORES[core]).EmitterCore)


def make_handlers(n: int = HANDLERS) -> List[Callable[..., None]]:
    namespace: Dict[str, Any] = {}
    for i in range(n):  # distinct function objects, as an app's handlers are
        exec(f"def handler_{i}(a, b):\n    pass\n", namespace)
    return [namespace[f"handler_{i}"] for i in range(n)]


def rate(calls: List[Callable[[], None]], seconds: float) -> float:
    """Total calls per second of len(calls) threads, each running its own."""
    counts = [0] * len(calls)
    stop = threading.Event()
    ready = threading.Barrier(len(calls) + 1)

    def run(k: int) -> None:
        call = calls[k]
        n = 0
        ready.wait()
        while not stop.is_set():
            for _ in range(100):
                call()
            n += 100
        counts[k] = n

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(calls))]
    for t in threads:
        t.start()
    ready.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


def scaling_cases(floor_module: Any) -> Dict[str, Callable[[int], Callable[[], None]]]:
    """name -> (thread index -> the call that thread repeats)."""
    shared_handlers = make_handlers()
    own_handlers = [make_handlers() for _ in range(2)]
    cases: Dict[str, Callable[[int], Callable[[], None]]] = {}

    floor_shared = floor_module.make_floor(shared_handlers, [2] * HANDLERS)
    floor_own = [floor_module.make_floor(h, [2] * HANDLERS) for h in own_handlers]
    cases["floor/shared"] = lambda k: (lambda: floor_shared(1, 2))
    cases["floor/own"] = lambda k, f=floor_own: (lambda: f[k](1, 2))
    for core in CORES:
        cls = emitter_class(core)
        shared = cls()
        for h in shared_handlers:
            shared.on("e", h)
        own = []
        for handlers in own_handlers:
            em = cls()
            for h in handlers:
                em.on("e", h)
            own.append(em)
        cases[f"{core}/shared"] = lambda k, em=shared: (lambda: em.emit("e", 1, 2))
        cases[f"{core}/own"] = lambda k, ems=own: (lambda: ems[k].emit("e", 1, 2))
    return cases


def measure_scaling(rounds: int, seconds: float) -> Dict[str, Dict[str, float]]:
    floor_module = ensure_floor()
    cases = scaling_cases(floor_module)
    samples: Dict[str, Dict[int, List[float]]] = {name: {1: [], 2: []} for name in cases}
    for _ in range(rounds):
        for name, make in cases.items():
            for threads in (1, 2):
                samples[name][threads].append(rate([make(k) for k in range(threads)], seconds))
    result = {}
    for name, by_threads in samples.items():
        one = statistics.median(by_threads[1])
        two = statistics.median(by_threads[2])
        result[name] = {"one_thread": one, "two_threads": two, "scaling": two / one}
    return result


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_sustained(core: str, seconds: int) -> Dict[str, Any]:
    em = emitter_class(core)()
    em.set_max_listeners(0)
    stop = threading.Event()
    per_second: List[List[int]] = [[], []]
    counters = [0, 0]

    def steady(a: Any, b: Any) -> None:
        pass

    em.on("e", steady)

    ready = threading.Barrier(4)  # the three threads and the clock start together

    def emitting(k: int) -> None:
        emit = em.emit
        ready.wait()
        while not stop.is_set():
            for _ in range(100):
                emit("e", 1, 2)
            counters[k] += 100

    pool = [(lambda i: lambda a=None, b=None: None)(i) for i in range(64)]

    def rotating() -> None:
        registered: List[Any] = []
        k = 0
        ready.wait()
        while not stop.is_set():
            callback = pool[k % len(pool)]
            k += 1
            em.on("e", callback)
            registered.append(callback)
            if len(registered) > 32:
                em.off("e", registered.pop(0))

    threads = [threading.Thread(target=emitting, args=(k,)) for k in range(2)]
    threads.append(threading.Thread(target=rotating))
    for t in threads:
        t.start()
    ready.wait()
    rss: List[int] = []
    last = [0, 0]
    try:
        for _ in range(seconds):
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                rss.append(rss_bytes())
                time.sleep(0.05)
            for k in range(2):
                now = counters[k]
                per_second[k].append(now - last[k])
                last[k] = now
    finally:
        stop.set()
        for t in threads:
            t.join()
    first_second_peak = max(rss[:20])
    slowdown = [
        (ps[0] / ps[-1]) if ps[-1] else float("inf") for ps in per_second
    ]
    return {
        "core": core,
        "seconds": seconds,
        "first_second_rates": [ps[0] for ps in per_second],
        "last_second_rates": [ps[-1] for ps in per_second],
        "worst_slowdown": max(slowdown),
        "rss_growth_mb": (max(rss) - first_second_peak) / 2**20,
    }


def describe() -> str:
    build = "free-threaded" if not gil_enabled() else "GIL"
    return (
        f"CPython {sys.version.split()[0]} ({build}, GIL {'on' if gil_enabled() else 'off'}), "
        f"livekit_events {livekit_events.__version__} ({livekit_events.IMPLEMENTATION}), "
        f"{os.cpu_count()} CPUs"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short rounds (a smoke run)")
    parser.add_argument("--sustained-seconds", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--json", help="write the figures here as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args()
    if livekit_events.IMPLEMENTATION != "compiled":
        print("the compiled core is not loaded: build and install the package first", file=sys.stderr)
        return 2
    rounds = args.rounds or (1 if args.quick else 5)
    seconds = 0.3 if args.quick else 1.0
    sustained = args.sustained_seconds or (3 if args.quick else 60)

    print(describe())
    print(f"\nThread scaling (emits/s, median of {rounds} rounds of {seconds:g} s):")
    scaling = measure_scaling(rounds, seconds)
    print(f"  {'case':18s} {'1 thread':>12s} {'2 threads':>12s} {'scaling':>8s}")
    for name, fig in scaling.items():
        print(f"  {name:18s} {fig['one_thread']:12,.0f} {fig['two_threads']:12,.0f} {fig['scaling']:7.2f}x")
    targets = []
    # Scaling targets apply with the GIL off: with it, threads take turns.
    for kind, target in ((("shared", SHARED_TARGET), ("own", OWN_TARGET))
                         if not gil_enabled() else ()):
        floor = scaling[f"floor/{kind}"]["scaling"]
        wanted = target if floor >= target else FLOOR_SHARE * floor
        got = scaling[f"compiled/{kind}"]["scaling"]
        targets.append((f"compiled/{kind} scaling >= {wanted:.2f}x", got >= wanted, f"{got:.2f}x"))

    print(f"\nSustained: 2 emitting threads and a writer, {sustained} s:")
    sustained_figures = [measure_sustained(core, sustained) for core in CORES]
    for fig in sustained_figures:
        print(
            f"  {fig['core']:9s} first second {fig['first_second_rates']} emits/thread, "
            f"last {fig['last_second_rates']}; worst slowdown {fig['worst_slowdown']:.2f}x; "
            f"RSS +{fig['rss_growth_mb']:.1f} MB"
        )
        targets.append(
            (f"{fig['core']} sustained: slowdown <= 2x", fig["worst_slowdown"] <= 2.0,
             f"{fig['worst_slowdown']:.2f}x"))
        targets.append(
            (f"{fig['core']} sustained: RSS growth <= 8 MB", fig["rss_growth_mb"] <= 8.0,
             f"{fig['rss_growth_mb']:.1f} MB"))
    print("\nTargets:")
    for name, met, value in targets:
        print(f"  {'met   ' if met else 'MISSED'} {name}: {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": describe(), "scaling": scaling, "sustained": sustained_figures,
                       "targets": [{"target": n, "met": m, "value": v} for n, m, v in targets]},
                      f, indent=2)
    return 1 if args.check and not all(met for _, met, _ in targets) else 0


if __name__ == "__main__":
    sys.exit(main())
