"""A fast leak soak in the normal suite (soak_workload.py, smaller).

10^4 emits over fan-outs, failing handlers, once churn, arity errors and
BaseExceptions out of emit, then 5x10^3 rounds of on/once/off churn, per
implementation: reference counts of every handler, argument and event object
unchanged, no tracemalloc growth.  The full soak (10^6 emits, 10^5 churn, with
RSS) is ``python tests/soak_workload.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
import soak_workload as soak

EMITS = 10_000
CHURN = 5_000
MAX_TRACED_GROWTH = 64 * 1024  # one leaked object per failing emit would be ~100 KiB


def _report(impl: Any, phase: str, figures: dict) -> None:
    print(
        f"soak [{impl.name}] {phase}: refcount changes {figures['refcount changes'] or 'none'}, "
        f"tracemalloc {figures['traced growth']:+,d} B, blocks {figures['blocks growth']:+,d}"
    )


@pytest.mark.thread_unsafe(reason="tracemalloc and refcounts are process-wide")
def test_emit_soak_leaks_nothing(impl: Any) -> None:
    figures = soak.soak_emits(impl.EventEmitter, EMITS)
    _report(impl, "emits", figures)
    assert figures["failures_logged"] == EMITS // 10 * 2
    assert figures["refcount changes"] == {}
    assert figures["traced growth"] < MAX_TRACED_GROWTH


@pytest.mark.thread_unsafe(reason="tracemalloc and refcounts are process-wide")
def test_registration_churn_leaks_nothing(impl: Any) -> None:
    figures = soak.soak_churn(impl.EventEmitter, CHURN)
    _report(impl, "churn", figures)
    assert figures["refcount changes"] == {}
    assert figures["traced growth"] < MAX_TRACED_GROWTH
