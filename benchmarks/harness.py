"""Timing machinery shared by compare.py and the pytest suites.

A ``Case`` (scenarios.py) becomes a compiled loop ``for _ in repeat(None, n):
<body>`` (timeit's loop) whose names are fast locals, so the loop adds the
same small cost to every implementation.  ``precheck`` runs the body once
under a profiler hook and counts the calls to the benchmark handlers: an
adapter that silently called nothing (or called twice) fails before timing.

A case with a ``prepare`` step (a body that changes state, such as the
registration-scaling chunks) is timed one iteration at a time instead:
``prepare()`` runs untimed before each iteration, and only the body is inside
the timer.
"""

from __future__ import annotations

import datetime
import gc
import itertools
import os
import platform
import sys
import textwrap
import time
from typing import Any, Callable, Dict

from scenarios import HANDLER_CODES, Case

__all__ = ("Runner", "count_handler_calls", "precheck")


class PrecheckError(AssertionError):
    pass


def count_handler_calls(fn: Callable[[], Any]) -> int:
    """How many times ``fn()`` calls a benchmark handler (any of HANDLER_CODES)."""
    calls = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call" and frame.f_code in HANDLER_CODES:
            calls += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(previous)
    return calls


class Runner:
    """The timing loop of one case."""

    def __init__(self, case: Case) -> None:
        self.case = case
        names = sorted(case.namespace)
        body = textwrap.indent(case.body, " " * 8)
        params = "".join(f", {name}" for name in names)
        if case.prepare is None:
            source = (
                f"def _bench(_n, _timer, _repeat, _prepare{params}):\n"
                f"    _t0 = _timer()\n"
                f"    for _ in _repeat(None, _n):\n"
                f"{body}\n"
                f"    return _timer() - _t0\n"
            )
        else:
            # Only the body is timed; prepare() (undoing the last iteration's
            # changes, planning the next) runs between the timer reads.
            source = (
                f"def _bench(_n, _timer, _repeat, _prepare{params}):\n"
                f"    _total = 0\n"
                f"    for _ in _repeat(None, _n):\n"
                f"        _prepare()\n"
                f"        _t0 = _timer()\n"
                f"{body}\n"
                f"        _total += _timer() - _t0\n"
                f"    return _total\n"
            )
        scope: Dict[str, Any] = {}
        exec(compile(source, f"<bench {case.body[:40]!r}>", "exec"), scope)
        self._bench = scope["_bench"]
        self._args = [case.namespace[name] for name in names]
        self._prepare = case.prepare

    def run(self, n: int) -> int:
        """Run ``n`` iterations; elapsed nanoseconds (of the bodies only, for a
        case with a ``prepare`` step)."""
        return self._bench(n, time.perf_counter_ns, itertools.repeat, self._prepare, *self._args)

    def ns_per_unit(self, n: int) -> float:
        return self.run(n) / (n * self.case.per_iteration)

    def calibrate(self, target_ns: float) -> int:
        """Iterations for one batch of about ``target_ns`` (at least 1)."""
        n = 1
        while True:
            elapsed = self.run(n)
            if elapsed >= target_ns / 4 or n >= 1 << 26:
                return max(1, int(n * target_ns / max(elapsed, 1)))
            n *= 4


def precheck(case: Case, label: str) -> None:
    """Run one iteration and check the handler calls it made, then the case's
    own ``check`` (that the state it changed is what it should be)."""
    runner = Runner(case)
    if case.expected_calls is None:
        runner.run(1)
    else:
        calls = count_handler_calls(lambda: runner.run(1))
        if calls != case.expected_calls:
            raise PrecheckError(
                f"{label}: one iteration called the handlers {calls} times, "
                f"expected {case.expected_calls}: the adapter is not doing the work timed"
            )
    if case.check is not None:
        problem = case.check()
        if problem:
            raise PrecheckError(f"{label}: {problem}: the adapter is not doing the work timed")


class gc_paused:
    """Collect, then keep the cyclic GC off while timing (as timeit does)."""

    def __enter__(self) -> None:
        gc.collect()
        self.was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: Any) -> None:
        if self.was_enabled:
            gc.enable()


# -- the machine a run is on -------------------------------------------------------


def machine_info() -> Dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info: Dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": sys.version.split()[0],
        "python_full": sys.version.replace("\n", " "),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    try:
        info["loadavg_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def describe_machine(info: Dict[str, Any]) -> str:
    load = info.get("loadavg_start")
    load_text = f", load average {load[0]:.2f} at start" if load else ""
    return (
        f"{info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable){load_text}; "
        f"{info['implementation']} {info['python']} on {info['platform']}"
    )
