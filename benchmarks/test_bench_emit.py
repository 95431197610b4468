"""pytest-benchmark: emit scenarios (fan-out, arguments, trimming, room mix,
and any emit scenario another file registers), per implementation and floor.
(Churn, failure and registration: test_bench_churn.py; registration scaling:
test_bench_scaling.py.)"""

import pytest
from conftest import IMPLEMENTATIONS, run_benchmark, scenario_names

import scenarios

OTHER_GROUPS = ("churn", "failure", "registration", "scaling")


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("name", scenario_names(exclude=OTHER_GROUPS))
def test_emit(benchmark, floor, name, impl):
    run_benchmark(benchmark, scenarios.SCENARIOS[name], impl, floor)
