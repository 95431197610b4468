"""pytest-benchmark: once churn, on/off churn while emitting, a failing handler,
and registration cost (on+off pairs), per implementation (and floor where
there is one)."""

import pytest
from conftest import IMPLEMENTATIONS, run_benchmark, scenario_names

import scenarios


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("name", scenario_names(groups=("churn", "failure", "registration")))
def test_churn(benchmark, floor, name, impl):
    run_benchmark(benchmark, scenarios.SCENARIOS[name], impl, floor)
