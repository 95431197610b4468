"""A real, unconnected ``livekit.rtc.Room`` for the tests that feed it events,
and livekit's own protobuf ``RoomEvent``s to feed it (what its FFI listener
hands ``Room._on_room_event``).

Imported only by test modules that have already skipped where the ``livekit``
package is missing.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib
from typing import Any, List

from livekit import rtc

participant_pb2 = importlib.import_module("livekit.rtc._proto.participant_pb2")
room_pb2 = importlib.import_module("livekit.rtc._proto.room_pb2")


def unconnected_room(loop: asyncio.AbstractEventLoop) -> Any:
    """A real ``livekit.rtc.Room``, not connected, with the local participant
    a connection would give it (handle 0: nothing on the native side).
    livekit 1.1.x reads ``Room.local_participant`` for every event that names
    a participant, and that property raises before a connection."""
    room = rtc.Room(loop=loop)
    owned = participant_pb2.OwnedParticipant()
    owned.info.identity = owned.info.sid = "local"
    room._local_participant = rtc.LocalParticipant(room._room_queue, owned)
    return room


def feed(room: Any, event: Any) -> None:
    room._on_room_event(event)


def participant_connected(identity: str) -> Any:
    ev = room_pb2.RoomEvent()
    ev.participant_connected.info.info.identity = identity
    ev.participant_connected.info.info.sid = f"PA_{identity}"
    ev.participant_connected.info.info.name = identity.title()
    return ev


def active_speakers(*identities: str) -> Any:
    ev = room_pb2.RoomEvent()
    ev.active_speakers_changed.participant_identities.extend(identities)
    return ev


def connection_quality(identity: str) -> Any:
    ev = room_pb2.RoomEvent()
    ev.connection_quality_changed.participant_identity = identity
    ev.connection_quality_changed.quality = room_pb2.QUALITY_EXCELLENT
    return ev


def transcription(identity: str, *texts: str) -> Any:
    ev = room_pb2.RoomEvent()
    ev.transcription_received.participant_identity = identity
    for i, text in enumerate(texts):
        segment = ev.transcription_received.segments.add()
        segment.id, segment.text, segment.final = f"s{i}", text, True
    return ev


_buffers: List[Any] = []  # keep the bytes a data packet points to alive


def data_packet(identity: str, payload: bytes, topic: str = "chat") -> Any:
    buffer = ctypes.create_string_buffer(payload, len(payload))
    _buffers.append(buffer)
    ev = room_pb2.RoomEvent()
    packet = ev.data_packet_received
    packet.participant_identity = identity
    packet.kind = room_pb2.KIND_RELIABLE
    packet.user.topic = topic
    packet.user.data.data.data_ptr = ctypes.addressof(buffer)
    packet.user.data.data.data_len = len(payload)
    return ev  # handle id 0: nothing to release on the native side


def participant_name(identity: str, name: str) -> Any:
    ev = room_pb2.RoomEvent()
    ev.participant_name_changed.participant_identity = identity
    ev.participant_name_changed.name = name
    return ev


def room_metadata(metadata: str) -> Any:
    ev = room_pb2.RoomEvent()
    ev.room_metadata_changed.metadata = metadata
    return ev


def reconnecting() -> Any:
    ev = room_pb2.RoomEvent()
    ev.reconnecting.SetInParent()
    return ev
