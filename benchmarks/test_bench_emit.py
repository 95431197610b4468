"""pytest-benchmark: emit scenarios (fan-out, arguments, trimming, room mix,
and any emit scenario another file registers), per implementation and floor."""

import pytest
from conftest import IMPLEMENTATIONS, run_benchmark, scenario_names

import scenarios

CHURN_GROUPS = ("churn", "failure", "registration")


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("name", scenario_names(exclude=CHURN_GROUPS))
def test_emit(benchmark, floor, name, impl):
    run_benchmark(benchmark, scenarios.SCENARIOS[name], impl, floor)
