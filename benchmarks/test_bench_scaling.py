"""pytest-benchmark: registration scaling (scenarios_scaling.py): one ``on``
or ``off`` with 10 to 100k handlers on the event, per implementation and floor.

Each round times one chunk of operations (``per_iteration`` in extra_info;
divide by it for the cost of one) after an untimed ``prepare`` that keeps the
size at N.  ``--max-handlers N`` skips the sizes above N: on a registry whose
``on`` is O(n), registering 100k handlers takes minutes.  The cases run size
by size (every implementation of a size, then the next size), so that each
size's emitters are built once per implementation and shared by the modes.
"""

import pytest
from conftest import IMPLEMENTATIONS, run_benchmark, scenario_names

import scenarios

CASES = [(name, impl) for name in scenario_names(groups=("scaling",)) for impl in IMPLEMENTATIONS]


@pytest.mark.parametrize(("name", "impl"), CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_scaling(benchmark, floor, request, name, impl):
    scenario = scenarios.SCENARIOS[name]
    cap = request.config.getoption("--max-handlers")
    if cap is not None and scenario.params["handlers"] > cap:
        pytest.skip(f"{scenario.params['handlers']:,} handlers: above --max-handlers {cap:,}")
    run_benchmark(benchmark, scenario, impl, floor)
