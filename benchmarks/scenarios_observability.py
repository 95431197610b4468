"""Scenarios for weak registrations and slow-handler detection.

* ``weak-10``: emit to 10 bound methods of 10 live objects, registered weakly
  (``on(event, obj.method, weak=True)``; psygnal and blinker hold bound
  methods weakly by default; livekit's class and pyee can't, and skip).  The
  floor calls the same bound methods.
* ``slow-detect-10``: emit to 10 handlers with slow-handler detection on
  (threshold 10 s, so no handler is reported): every call is timed.  Only
  livekit_events has it; ``compare.py`` reports its added cost per handler
  call against ``fanout-10`` measured in the same run.
"""

from __future__ import annotations

from typing import Any, List

from implementations import Adapter
from scenarios import EVENT, Case, Scenario, Skip, Subscriber, emit_body, floor_case, handlers, register

#: Slow-handler detection's threshold while slow-detect-10 runs: no handler
#: here comes near it, so what is measured is the timing, not the reports.
THRESHOLD = 10.0

_WEAK_BY_DEFAULT = {"psygnal", "blinker"}  # their connect() holds bound methods weakly
_KEEP: List[Any] = []  # the weakly registered objects stay alive for the run


def _livekit_events(adapter: Adapter) -> bool:
    return adapter.key in ("compiled", "pure")


def _build_weak(adapter: Adapter) -> Case:
    reason = adapter.skip_reason()
    if reason:
        raise Skip(reason)
    if not _livekit_events(adapter) and adapter.key not in _WEAK_BY_DEFAULT:
        raise Skip(f"{adapter.label} has no weak registrations")
    subscribers = [Subscriber() for _ in range(10)]
    _KEEP.extend(subscribers)
    emitter = adapter.new({EVENT: 1})
    for subscriber in subscribers:
        if _livekit_events(adapter):
            emitter.on(EVENT, subscriber.on_event, weak=True)
        else:
            adapter.on(emitter, EVENT, subscriber.on_event)
    body, names, call = emit_body(adapter, emitter, EVENT, 1)
    return Case(body=body, namespace=names, expected_calls=10, call=call)


def _build_weak_floor(floor: Any) -> Case:
    subscribers = [Subscriber() for _ in range(10)]
    _KEEP.extend(subscribers)
    return floor_case(floor, [s.on_event for s in subscribers], [1] * 10, 1)


register(
    Scenario(
        "weak-10",
        group="observability",
        title="weak registrations: emit to 10 bound methods held weakly",
        build=_build_weak,
        build_floor=_build_weak_floor,
    )
)


def _build_slow_detect(adapter: Adapter) -> Case:
    reason = adapter.skip_reason()
    if reason:
        raise Skip(reason)
    if not _livekit_events(adapter):
        raise Skip(f"{adapter.label} has no slow-handler detection")
    import livekit_events

    emitter = adapter.new({EVENT: 1})
    for handler in handlers(10, 1):
        adapter.on(emitter, EVENT, handler)
    body, names, call = emit_body(adapter, emitter, EVENT, 1)
    livekit_events.set_slow_handler_threshold(THRESHOLD)  # process-wide: both cores
    return Case(
        body=body,
        namespace=names,
        expected_calls=10,
        call=call,
        cleanup=lambda: livekit_events.set_slow_handler_threshold(None),
    )


register(
    Scenario(
        "slow-detect-10",
        group="observability",
        title="slow-handler detection on (no handler slow): emit to 10 handlers",
        build=_build_slow_detect,
        build_floor=lambda floor: floor_case(floor, handlers(10, 1), [1] * 10, 1),
    )
)
