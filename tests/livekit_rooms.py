"""A real, unconnected ``livekit.rtc.Room`` for the tests that feed it events.

Imported only by test modules that have already skipped where the ``livekit``
package is missing.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from livekit import rtc

participant_pb2 = importlib.import_module("livekit.rtc._proto.participant_pb2")


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
