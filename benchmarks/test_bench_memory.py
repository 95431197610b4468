"""Memory per emitter (tracemalloc), recorded in each benchmark's extra_info
(``bytes_per_emitter``); the time is that of measuring 2000 emitters."""

import pytest
from conftest import scenario_names

import implementations
import scenarios


@pytest.mark.parametrize("impl", [a.key for a in implementations.ADAPTERS()])
@pytest.mark.parametrize("name", scenario_names(kind="memory"))
def test_memory(benchmark, name, impl):
    adapter = implementations.adapter(impl)
    if not adapter.available:
        pytest.skip(adapter.note)
    scenario = scenarios.SCENARIOS[name]
    benchmark.group = f"{name}: {scenario.title}"
    try:
        size = benchmark.pedantic(scenario.measure, args=(adapter,), rounds=3, iterations=1)
    except scenarios.Skip as skip:
        pytest.skip(str(skip))
    benchmark.extra_info["bytes_per_emitter"] = size
    assert size > 0 or name == "memory-empty"
