"""Fixtures of the pytest-benchmark suites (``test_bench_*.py``).

Each test times one scenario (scenarios.py) for one implementation or the
floor; pytest-benchmark groups the results by scenario, so the floor and
every implementation of a scenario appear in one table.  For ratios measured
side by side, interleaved, run compare.py instead: pytest-benchmark times
implementations one after another.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable, Dict, List

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import build_floor  # noqa: E402
import harness  # noqa: E402
import implementations  # noqa: E402
import scenarios  # noqa: E402

scenarios.load_extra_scenarios()

#: Parametrisation ids: the floor, then every adapter (skipped when absent).
IMPLEMENTATIONS: List[str] = ["floor"] + [a.key for a in implementations.ADAPTERS()]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--max-handlers",
        type=int,
        default=None,
        help="registration scaling (test_bench_scaling.py): skip the sizes above N handlers",
    )


def pytest_report_header(config: pytest.Config) -> List[str]:
    import livekit_events

    lines = [
        f"livekit_events {livekit_events.__version__}: implementation "
        f"{livekit_events.IMPLEMENTATION}, from {os.path.dirname(livekit_events.__file__)}"
    ]
    for a in implementations.ADAPTERS():
        lines.append(f"  {a.key}: {a.version if a.available else a.note}")
    return lines


@pytest.fixture(scope="session")
def floor() -> Any:
    """The floor extension, built on first use."""
    return build_floor.ensure_floor()


def scenario_names(groups: Any = None, exclude: Any = (), kind: str = "time") -> List[str]:
    return [
        name
        for name, s in scenarios.SCENARIOS.items()
        if s.kind == kind and (groups is None or s.group in groups) and s.group not in exclude
    ]


def build_case(scenario: scenarios.Scenario, impl: str, floor: Any) -> scenarios.Case:
    """The case of ``impl`` (or the floor) for ``scenario``; pytest.skip if it can't run."""
    if impl == "floor":
        if scenario.build_floor is None:
            pytest.skip(f"{scenario.name} has no floor")
        return scenario.build_floor(floor)
    adapter = implementations.adapter(impl)
    if not adapter.available:
        pytest.skip(adapter.note)
    assert scenario.build is not None
    try:
        return scenario.build(adapter)
    except scenarios.Skip as skip:
        pytest.skip(str(skip))


def step_function(case: scenarios.Case) -> Callable[[], None]:
    """A no-argument function doing one iteration, its names bound as fast locals."""
    names = sorted(case.namespace)
    params = ", ".join(f"{n}={n}" for n in names)
    body = "\n".join("    " + line for line in case.body.splitlines())
    scope: Dict[str, Any] = dict(case.namespace)
    exec(compile(f"def _step({params}):\n{body}\n", "<bench step>", "exec"), scope)
    return scope["_step"]  # type: ignore[no-any-return]


def run_benchmark(benchmark: Any, scenario: scenarios.Scenario, impl: str, floor: Any) -> None:
    """Precheck, then time one iteration of ``scenario`` for ``impl``."""
    case = build_case(scenario, impl, floor)
    try:
        harness.precheck(case, f"{scenario.name}/{impl}")
        benchmark.group = (
            f"{scenario.name}: {scenario.title} (per {case.per_iteration} {scenario.unit})"
        )
        benchmark.extra_info.update(
            scenario=scenario.name,
            implementation=impl,
            unit=scenario.unit,
            per_iteration=case.per_iteration,
        )
        if case.prepare is not None:
            # The body changes state: each round is one iteration, with
            # prepare() run untimed before it (as compare.py's harness does).
            step = step_function(case)
            case.prepare()
            started = time.perf_counter()
            step()
            once = max(time.perf_counter() - started, 1e-6)
            max_time = getattr(benchmark, "_max_time", 1.0)  # --benchmark-max-time
            rounds = min(max(math.ceil(max_time / once), 5), 10_000)
            benchmark.pedantic(step, setup=case.prepare, rounds=rounds, warmup_rounds=1)
        elif case.call is not None:
            fn, args = case.call
            benchmark(fn, *args)
        else:
            benchmark(step_function(case))
    finally:
        if case.cleanup is not None:
            case.cleanup()
