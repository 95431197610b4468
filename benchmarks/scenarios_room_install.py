"""Room scenarios for ``livekit_events.install()``: a real ``livekit.rtc.Room``.

Registered in the shared registry (``scenarios.py``; compare.py and the pytest
suites load this file).  Three cases per scenario:

* ``livekit``: the Room as livekit ships it (its own ``emit``);
* ``compiled`` / ``pure``: the Room after ``install()`` over that core.

Other adapters skip: these scenarios are about livekit's own class.

compare.py builds every case first and then times them interleaved, so the
process-wide ``install()`` can't stay on for one case and off for another.
Each installed case is built by calling ``install()`` over its core, taking
``room.emit`` (the Room's emit as the patched class gives it), and
``uninstall()`` again; that bound method is what the case calls.  In the FFI
scenario the Room dispatches through ``self.emit`` itself, so the installed
cases set that bound method as an instance attribute of their Room: the
lookup ``self.emit`` then finds what the patched class would give.

* ``room-install``: the room mix of ``room-mix`` (same events, weights and
  subscribers, one of three trimming) emitted with ``room.emit``.
* ``room-install-ffi``: the events of that mix that can be built without a
  connection (93 % of its weight), as livekit's protobuf ``RoomEvent``s fed to
  ``Room._on_room_event``, the method its FFI listener calls: livekit's own
  per-event work included.

``python benchmarks/bench_room_install.py`` runs the same comparison on its
own, with the real process-wide ``install()``.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from typing import Any, Callable, List, Tuple

from scenarios import ARGS, Case, Scenario, Skip, _mix_plan, _mix_takes, handlers, register

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_room_install  # noqa: E402

SUBSCRIBERS = 3  # _mix_takes gives three per event

_CORES = {"compiled": "livekit_events._core_c", "pure": "livekit_events._core_py"}


def _room_and_emit(adapter: Any) -> Tuple[Any, Callable[..., Any], Callable[[], None]]:
    """A subscribed Room, the emit this case times, and a cleanup."""
    if adapter.key not in ("livekit", *_CORES):
        raise Skip("a livekit.rtc.Room: only livekit's own emit and install() over our cores apply")
    try:
        from livekit import rtc  # noqa: F401
    except ImportError as exc:
        raise Skip(f"livekit is not installed ({exc})") from exc
    import livekit_events
    from livekit_events import _livekit

    loop = asyncio.new_event_loop()  # the Room wants one; it never runs
    room = bench_room_install.rtc_room(loop)
    events, _ = _mix_plan()
    for name, nargs, _ in events:
        for takes in _mix_takes(nargs):
            (handler,) = handlers(1, takes)
            room.on(name, handler)
    if adapter.key == "livekit":
        if livekit_events.is_installed():
            raise Skip("livekit_events.install() is active: no baseline")
        emit = room.emit
    else:
        core = importlib.import_module(_CORES[adapter.key])
        _livekit._install(core)
        try:
            emit = room.emit
            if emit.__func__ is not _livekit._dispatcher(core).livekit_emit:
                raise RuntimeError("install() did not put the core's dispatcher on Room")
        finally:
            livekit_events.uninstall()
    return room, emit, loop.close


def _build_emit_mix(adapter: Any) -> Case:
    room, emit, cleanup = _room_and_emit(adapter)
    _, sequence = _mix_plan()
    calls: List[Tuple[Any, Tuple[Any, ...]]] = [(emit, (name,) + ARGS[:nargs]) for name, nargs in sequence]
    return Case(
        body="for f, a in calls:\n    f(*a)",
        namespace={"calls": calls},
        per_iteration=len(calls),
        expected_calls=SUBSCRIBERS * len(calls),
        cleanup=cleanup,
    )


def _build_ffi_mix(adapter: Any) -> Case:
    room, emit, cleanup = _room_and_emit(adapter)
    if adapter.key != "livekit":
        room.emit = emit  # what the patched class gives, found by self.emit
    protos = [ev for _, ev, _ in bench_room_install.sequence(bench_room_install._ffi_events(), 1000)]
    return Case(
        body="for ev in protos:\n    feed(ev)",
        namespace={"protos": protos, "feed": room._on_room_event},
        per_iteration=len(protos),
        expected_calls=SUBSCRIBERS * len(protos),
        cleanup=cleanup,
    )


register(
    Scenario(
        "room-install",
        group="room",
        title=(
            "room mix on a real livekit.rtc.Room: livekit's emit vs install() "
            f"({SUBSCRIBERS} subscribers per event, one trims)"
        ),
        build=_build_emit_mix,
    )
)

register(
    Scenario(
        "room-install-ffi",
        group="room",
        title=(
            "room mix as protobuf RoomEvents through Room._on_room_event (livekit's own "
            "per-event work included): livekit vs install()"
        ),
        unit="room event",
        build=_build_ffi_mix,
    )
)
