"""TaskHandlers on a real ``livekit.rtc.Room``, with and without ``install()``.

Each test runs three times: livekit's class as shipped, and after
``install()`` over each core (see tests/test_livekit_install.py, whose way of
building a Room and feeding it livekit's own protobuf ``RoomEvent``s this
follows).  ``install()`` patches livekit's class for the whole process, so
these tests can't run in several threads at once.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Callable, Coroutine, Iterator, List, TypeVar

import pytest

rtc = pytest.importorskip(
    "livekit.rtc",
    reason="the livekit package is not installed (pip install livekit, or the `test` "
    "dependency group: pip install --group test)",
)

import livekit_events  # noqa: E402
from livekit_events import _livekit  # noqa: E402
from livekit_events.aio import TaskHandlers  # noqa: E402
from livekit_rooms import (  # noqa: E402
    active_speakers,
    data_packet,
    participant_connected,
    unconnected_room,
)

pytestmark = [
    pytest.mark.thread_unsafe(reason="install() patches livekit's class process-wide"),
    pytest.mark.with_livekit,
]

T = TypeVar("T")
LkEmitter = rtc.EventEmitter
ORIGINAL = {name: LkEmitter.__dict__[name] for name in ("__init__", "emit", "on", "once", "off")}


@pytest.fixture(autouse=True)
def _restore_livekit(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """livekit's own methods before and after; nothing logged at ERROR."""
    livekit_events.uninstall()
    with caplog.at_level(logging.ERROR):
        yield
    livekit_events.uninstall()
    for name, function in ORIGINAL.items():
        assert LkEmitter.__dict__[name] is function, f"EventEmitter.{name} not restored"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


@pytest.fixture
def mode(impl: Any) -> str:
    """livekit's class as shipped, or after install() over one of our cores."""
    if impl.core is not None:
        _livekit._install(impl.core)
        assert rtc.Room.emit is _livekit._dispatcher(impl.core).livekit_emit
    return str(impl.name)


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    async def checked() -> T:
        result = await asyncio.wait_for(main(), timeout=120)
        assert not asyncio.all_tasks() - {asyncio.current_task()}
        return result

    return asyncio.run(checked(), debug=True)


async def settle(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def test_a_real_room_runs_async_handlers_in_every_mode(mode: str) -> None:
    got: List[Any] = []

    async def main() -> None:
        gate = asyncio.Event()  # made in the loop (Python 3.9 binds it at creation)
        room = unconnected_room(asyncio.get_running_loop())
        room._on_room_event(participant_connected("alice"))
        async with TaskHandlers(room, mode="serial") as handlers:

            @handlers.on("data_received")
            async def on_data(packet: Any) -> None:  # 1 of the event's arguments
                for _ in range(5 - int(packet.data.split()[-1])):  # earlier ones take longer
                    await asyncio.sleep(0)
                got.append(("data", packet.data, packet.participant.identity))

            @handlers.on("participant_connected", mode="concurrent")
            async def on_participant(participant: Any) -> None:
                got.append(("joined", participant.identity))

            @handlers.on("active_speakers_changed", mode="latest")
            async def on_speakers(speakers: Any) -> None:
                await gate.wait()
                got.append(("speakers", [p.identity for p in speakers]))

            room._on_room_event(participant_connected("bob"))
            for n in range(5):
                room._on_room_event(data_packet("bob", b"packet %d" % n))
            room._on_room_event(active_speakers("alice"))
            await settle()
            room._on_room_event(active_speakers("bob"))  # replaces the running call
            room._on_room_event(active_speakers("alice", "bob"))  # and this one "bob"
            await settle()
            gate.set()
            for _ in range(1000):
                if len(got) == 7:
                    break
                await asyncio.sleep(0)
        for event in ("data_received", "participant_connected", "active_speakers_changed"):
            assert not room._events.get(event)

    run(main)
    assert got[0] == ("joined", "bob")
    assert [g for g in got if g[0] == "data"] == [("data", b"packet %d" % n, "bob") for n in range(5)]
    assert [g for g in got if g[0] == "speakers"] == [("speakers", ["alice", "bob"])]


def test_the_relay_signature_is_read_once_under_install(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The relay is a weakly referenceable function: install()'s dispatcher
    # caches its arity (livekit reads it on every emit).
    reads: List[Any] = []
    real = inspect.signature

    def counting(obj: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(obj, "__name__", "").endswith("[async, TaskHandlers]"):
            reads.append(obj)
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(inspect, "signature", counting)

    async def main() -> None:
        room = unconnected_room(asyncio.get_running_loop())
        async with TaskHandlers(room) as handlers:

            @handlers.on("data_received")
            async def on_data(packet: Any) -> None:
                pass

            for n in range(10):
                room._on_room_event(data_packet("", b"%d" % n))
            await settle()

    run(main)
    assert len(reads) == (10 if mode == "livekit" else 1)


def test_install_while_handlers_are_registered(mode: str) -> None:
    # install() and uninstall() while the owner is open: its relays stay
    # registered (they live in livekit's own _events) and keep working.
    got: List[bytes] = []

    async def main() -> None:
        room = unconnected_room(asyncio.get_running_loop())
        async with TaskHandlers(room, mode="serial") as handlers:

            @handlers.on("data_received")
            async def on_data(packet: Any) -> None:
                got.append(packet.data)

            room._on_room_event(data_packet("", b"before"))
            livekit_events.uninstall()
            room._on_room_event(data_packet("", b"uninstalled"))
            livekit_events.install()
            room._on_room_event(data_packet("", b"installed"))
            await settle()
        assert not room._events.get("data_received")

    run(main)
    assert got == [b"before", b"uninstalled", b"installed"]
