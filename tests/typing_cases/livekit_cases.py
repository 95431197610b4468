"""The async helpers with livekit's own emitters (checked when livekit is installed).

See cases.py for the "E:" markers.  livekit.rtc classes are accepted with
any event name: only livekit_events emitters get their event names checked.
"""

from __future__ import annotations

from typing import Any, Tuple

from livekit import rtc
from typing_extensions import assert_type

from livekit_events.aio import EventStream, TaskHandlers, iterate, wait_for


def is_agent(participant: rtc.RemoteParticipant) -> bool:
    return participant.identity == "agent"


async def with_livekit(room: rtc.Room) -> None:
    (participant,) = await wait_for(
        room, "participant_connected", timeout=10.0, predicate=is_agent
    )
    assert_type(participant, Any)
    args = await wait_for(room, "participant_connected")
    assert_type(args, Tuple[Any, ...])
    stream = iterate(room, "data_received", maxsize=64, overflow="drop_oldest")
    assert_type(stream, EventStream)
    async with stream:
        async for (packet,) in stream:
            assert_type(packet, Any)
    iterate(room, "data_received", overflow="block")  # E: mypy[call-overload] pyright[reportCallIssue,reportArgumentType]
    await wait_for(room)  # E: mypy[call-overload] pyright[reportCallIssue]


async def handlers_on_a_room(room: rtc.Room) -> None:
    async with TaskHandlers(room, mode="serial") as handlers:
        assert_type(handlers, TaskHandlers[Any])

        @handlers.on("data_received")
        async def on_data(packet: rtc.DataPacket) -> None: ...

        await on_data(b"not a packet")  # E: mypy[arg-type] pyright[reportArgumentType]
        handlers.on("participant_connected", is_agent)  # E: mypy[type-var] pyright[reportCallIssue,reportArgumentType]
