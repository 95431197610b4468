"""Room event mix on a real ``livekit.rtc.Room``, with and without ``install()``.

    python benchmarks/bench_room_install.py [--emits N] [--repeat R] [--handlers H]

Two measurements, each for livekit's own class, after ``install()`` with the
compiled core, and after ``install()`` with the pure-Python twin:

* ``emit``: ``room.emit(event, *args)`` over the room event mix (event names,
  argument counts and relative weights from ``room_events.tsv``, next to this
  file), H handlers per event (default 2: one taking every argument, one
  taking fewer, so it is trimmed).  This is the dispatch cost, ns per emit.
* ``ffi``: the same mix restricted to the events that can be built without a
  connection, fed as livekit's own protobuf ``RoomEvent`` messages to
  ``Room._on_room_event`` (the method its FFI listener calls): the whole
  per-event cost an app pays, livekit's own bookkeeping included.  The same
  feed into a Room without handlers gives that bookkeeping alone (the floor).

Needs the ``livekit`` package (in the ``bench`` dependency group).  ``run()`` returns the
figures as a dict for other tools; ``main()`` prints them.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gc
import ctypes
import os
import platform
import random
import statistics
import sys
import time
import types
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
MIX_PATH = os.path.join(HERE, "room_events.tsv")


def load_mix(path: str = MIX_PATH) -> List[Tuple[str, int, int]]:
    """(event, number of arguments, weight) for every event with a weight."""
    with open(path, newline="") as f:
        rows = csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t")
        mix = [(r["event"], int(r["args"]), int(r["weight"])) for r in rows]
    return [m for m in mix if m[2] > 0]


def sequence(mix: Sequence[Tuple[str, Any, int]], n: int, seed: int = 7) -> List[Any]:
    """n entries drawn by weight (deterministic), as the events would arrive."""
    rng = random.Random(seed)
    return rng.choices([m for m in mix], weights=[m[2] for m in mix], k=n)


def _handlers(nargs: int, count: int, sink: List[Any]) -> List[Callable[..., Any]]:
    # One taking every argument, then ones taking fewer (trimmed), repeated.
    shapes: List[Callable[..., Any]] = []
    full = {
        0: lambda: sink.append(0),
        1: lambda a: sink.append(a),
        2: lambda a, b: sink.append(b),
        3: lambda a, b, c: sink.append(c),
    }
    fewer = {
        0: lambda: sink.append(0),
        1: lambda: sink.append(0),
        2: lambda a: sink.append(a),
        3: lambda a: sink.append(a),
    }
    for i in range(count):
        template = full[nargs] if i % 2 == 0 else fewer[nargs]
        # a distinct function object per handler (same code)
        shapes.append(
            types.FunctionType(template.__code__, template.__globals__, None, None, template.__closure__)
        )
    return shapes


def rtc_room(loop: asyncio.AbstractEventLoop) -> Any:
    """A real, unconnected Room with two remote participants, alice and bob."""
    from livekit import rtc
    from livekit.rtc._proto import room_pb2

    room = rtc.Room(loop=loop)
    for identity in ("alice", "bob"):
        ev = room_pb2.RoomEvent()
        ev.participant_connected.info.info.identity = identity
        room._on_room_event(ev)
    return room


def _make_room(loop: asyncio.AbstractEventLoop, mix: Sequence[Tuple[str, int, int]], handlers: int) -> Tuple[Any, List[Any]]:
    room = rtc_room(loop)
    sink: List[Any] = []
    for event, nargs, _ in mix:
        for handler in _handlers(nargs, handlers, sink):
            room.on(event, handler)
    return room, sink


_keep: List[Any] = []


def _ffi_events() -> List[Tuple[str, Any, int]]:
    """(event name, RoomEvent proto, weight) for the mix events buildable offline."""
    from livekit.rtc._proto import e2ee_pb2, room_pb2

    weights = {e: w for e, _, w in load_mix()}
    out: List[Tuple[str, Any, int]] = []

    def add(name: str, ev: Any) -> None:
        out.append((name, ev, weights[name]))

    payload = ctypes.create_string_buffer(b"x" * 64, 64)
    _keep.append(payload)
    ev = room_pb2.RoomEvent()
    ev.data_packet_received.participant_identity = "bob"
    ev.data_packet_received.user.topic = "chat"
    ev.data_packet_received.user.data.data.data_ptr = ctypes.addressof(payload)
    ev.data_packet_received.user.data.data.data_len = 64
    add("data_received", ev)
    ev = room_pb2.RoomEvent()
    ev.active_speakers_changed.participant_identities.extend(["alice", "bob"])
    add("active_speakers_changed", ev)
    ev = room_pb2.RoomEvent()
    ev.transcription_received.participant_identity = "bob"
    seg = ev.transcription_received.segments.add()
    seg.id, seg.text = "s1", "hello world"
    add("transcription_received", ev)
    ev = room_pb2.RoomEvent()
    ev.connection_quality_changed.participant_identity = "bob"
    ev.connection_quality_changed.quality = room_pb2.QUALITY_GOOD
    add("connection_quality_changed", ev)
    ev = room_pb2.RoomEvent()
    ev.participant_attributes_changed.participant_identity = "bob"
    entry = ev.participant_attributes_changed.changed_attributes.add()
    entry.key, entry.value = "k", "v"
    add("participant_attributes_changed", ev)
    ev = room_pb2.RoomEvent()
    ev.participant_metadata_changed.participant_identity = "bob"
    ev.participant_metadata_changed.metadata = "m"
    add("participant_metadata_changed", ev)
    ev = room_pb2.RoomEvent()
    ev.participant_name_changed.participant_identity = "bob"
    ev.participant_name_changed.name = "Bob"
    add("participant_name_changed", ev)
    ev = room_pb2.RoomEvent()
    ev.room_metadata_changed.metadata = "m"
    add("room_metadata_changed", ev)
    ev = room_pb2.RoomEvent()
    ev.e2ee_state_changed.participant_identity = "bob"
    ev.e2ee_state_changed.state = e2ee_pb2.OK
    add("e2ee_state_changed", ev)
    ev = room_pb2.RoomEvent()
    ev.data_packet_received.participant_identity = "bob"
    ev.data_packet_received.sip_dtmf.code = 1
    ev.data_packet_received.sip_dtmf.digit = "1"
    add("sip_dtmf_received", ev)
    for name in ("reconnecting", "reconnected"):
        ev = room_pb2.RoomEvent()
        getattr(ev, name).SetInParent()
        add(name, ev)
    ev = room_pb2.RoomEvent()
    ev.connection_state_changed.state = room_pb2.CONN_CONNECTED
    add("connection_state_changed", ev)
    ev = room_pb2.RoomEvent()
    ev.token_refreshed.token = "t"
    add("token_refreshed", ev)
    return out


def _batch_ns(fn: Callable[[], None], count: int) -> float:
    start = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - start) / count


def run(emits: int = 20_000, repeat: int = 7, handlers: int = 2) -> Dict[str, Any]:
    """The figures: ns per emit / per FFI room event, per variant.

    The variants are timed interleaved: each round activates each variant in
    turn (``uninstall()`` / ``install()`` over a core, then an untimed warm-up
    pass, since uninstall() forgets the core's caches) and times one batch of
    each workload, with the cyclic GC paused.  Reported: the best batch per
    variant, and the median over rounds of the per-round speed-up.
    """
    import livekit_events
    from livekit_events import _core_py, _livekit
    from livekit.rtc.version import __version__ as livekit_version

    variants: Dict[str, Callable[[], None]] = {"livekit": livekit_events.uninstall}
    variants[f"install ({livekit_events.IMPLEMENTATION})"] = livekit_events.install
    if livekit_events.IMPLEMENTATION == "compiled":
        variants["install (pure)"] = lambda: _livekit._install(_core_py)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        mix = load_mix()
        room, sink = _make_room(loop, mix, handlers)
        placeholder = object()
        calls = [(event, (placeholder,) * nargs) for event, nargs, _ in sequence(mix, emits)]

        def emit_mix() -> None:
            emit = room.emit
            for event, args in calls:
                emit(event, *args)
            sink.clear()

        protos = [ev for _, ev, _ in sequence(_ffi_events(), emits)]
        feed = room._on_room_event

        def ffi_mix() -> None:
            for ev in protos:
                feed(ev)
            sink.clear()

        bare_feed = rtc_room(loop)._on_room_event  # no handlers: livekit's own work

        def ffi_floor() -> None:
            for ev in protos:
                bare_feed(ev)

        workloads = {"emit": (emit_mix, len(calls)), "ffi": (ffi_mix, len(protos)),
                     "ffi_no_handlers": (ffi_floor, len(protos))}
        samples: Dict[str, Dict[str, List[float]]] = {
            v: {w: [] for w in workloads} for v in variants
        }
        order = list(variants)
        rng = random.Random(11)
        gc.collect()
        gc.disable()
        try:
            for _ in range(repeat):
                rng.shuffle(order)
                for name in order:
                    variants[name]()
                    for fn, _ in workloads.values():
                        fn()  # warm up: the first emit of each event reads signatures
                    for workload, (fn, count) in workloads.items():
                        samples[name][workload].append(_batch_ns(fn, count))
        finally:
            gc.enable()
            livekit_events.uninstall()
    finally:
        asyncio.set_event_loop(None)
        loop.close()

    base = samples["livekit"]
    results: Dict[str, Any] = {
        "scenario": "room_install",
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "livekit": livekit_version,
        "emits": emits,
        "rounds": repeat,
        "handlers_per_event": handlers,
        "variants": {},
    }
    for name, by_workload in samples.items():
        figures: Dict[str, float] = {}
        for workload, values in by_workload.items():
            figures[workload] = min(values)
            figures[f"{workload}_speedup"] = statistics.median(
                b / v for b, v in zip(base[workload], values)
            )
        results["variants"][name] = figures
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emits", type=int, default=20_000, help="emits per timed run")
    parser.add_argument("--repeat", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--handlers", type=int, default=2, help="handlers per event")
    args = parser.parse_args(argv)
    results = run(args.emits, args.repeat, args.handlers)
    print(
        f"Room event mix, real livekit.rtc.Room (livekit {results['livekit']}), "
        f"{results['handlers_per_event']} handlers/event, Python {results['python']}, "
        f"{results['machine']}; {args.repeat} interleaved rounds of {args.emits}: "
        "best batch, median per-round speed-up"
    )
    print(
        f"{'variant':20s} {'ns/emit':>10s} {'speed-up':>9s} {'ns/FFI event':>13s} {'speed-up':>9s} "
        f"{'FFI event, no handlers':>23s}"
    )
    for name, figures in results["variants"].items():
        print(
            f"{name:20s} {figures['emit']:10.0f} {figures['emit_speedup']:8.1f}x "
            f"{figures['ffi']:13.0f} {figures['ffi_speedup']:8.1f}x "
            f"{figures['ffi_no_handlers']:23.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
