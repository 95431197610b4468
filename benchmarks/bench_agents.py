"""What ``install()`` changes for a livekit-agents app: one ``AgentSession`` event.

    python benchmarks/bench_agents.py [--events N] [--repeat R]

Three handlers on ``user_input_transcribed`` (one reading the event, one
taking no argument, one taking ``*args``), events fed through
``AgentSession._user_input_transcribed``, livekit-agents' own path (it records
the event, then emits it).  For stock livekit, then after ``install()`` with
the compiled core, then with the pure twin, it prints how many frames of
livekit's own ``EventEmitter.emit`` 1,000 events ran (a profile hook: 1,000
stock, 0 installed) and the time per event, best of R rounds of N events.

Needs ``livekit-agents`` (it pins its own livekit release, so it is not in
the ``bench`` dependency group): ``pip install livekit-agents`` next to this package.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import importlib.metadata
import sys
import timeit
from typing import Any, Callable, List, Tuple


def _session_with_handlers(AgentSession: Any) -> Any:
    session = AgentSession(loop=asyncio.new_event_loop())
    seen: List[str] = []
    session.on("user_input_transcribed", lambda ev: seen.append(ev.transcript))
    session.on("user_input_transcribed", lambda: None)
    session.on("user_input_transcribed", lambda *args: None)
    return session


def measure(original_code: Any, events: int, repeat: int) -> Tuple[int, float]:
    """(frames of livekit's own emit, whose code is `original_code`, per
    1,000 events; seconds per event)."""
    from livekit.agents import AgentSession
    from livekit.agents.voice.events import UserInputTranscribedEvent

    session = _session_with_handlers(AgentSession)
    event = UserInputTranscribedEvent(transcript="hi", is_final=False)
    frames = 0

    def profile(frame: Any, what: str, arg: Any) -> None:
        nonlocal frames
        if what == "call" and frame.f_code is original_code:
            frames += 1

    sys.setprofile(profile)
    try:
        for _ in range(1000):
            session._user_input_transcribed(event)
    finally:
        sys.setprofile(None)
    session._recorded_events.clear()
    step: Callable[[], None] = lambda: session._user_input_transcribed(event)  # noqa: E731
    gc.disable()
    try:
        best = min(timeit.repeat(step, number=events, repeat=repeat)) / events
    finally:
        gc.enable()
    session._recorded_events.clear()
    return frames, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="events per round")
    parser.add_argument("--repeat", type=int, default=7, help="rounds (best one kept)")
    options = parser.parse_args()

    import livekit_events
    from livekit_events import _livekit
    import livekit.agents  # noqa: F401  (fails early without livekit-agents)
    from livekit import rtc

    livekit_events.uninstall()
    original_code = rtc.EventEmitter.__dict__["emit"].__code__  # livekit's own

    versions = {name: importlib.metadata.version(name) for name in ("livekit", "livekit-agents")}
    print(f"CPython {sys.version.split()[0]}; " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    rows = [("stock livekit", measure(original_code, options.events, options.repeat))]
    report = livekit_events.install()
    rows.append((f"install(), {report.core} core", measure(original_code, options.events, options.repeat)))
    livekit_events.uninstall()
    _livekit._install(importlib.import_module("livekit_events._core_py"))
    try:
        rows.append(("install(), pure twin", measure(original_code, options.events, options.repeat)))
    finally:
        livekit_events.uninstall()
    print("| | frames of livekit's `emit` per 1,000 events | time per event |")
    print("| --- | --- | --- |")
    for label, (frames, seconds) in rows:
        print(f"| {label} | {frames:,} | {seconds * 1e6:.2f} µs |")


if __name__ == "__main__":
    main()
