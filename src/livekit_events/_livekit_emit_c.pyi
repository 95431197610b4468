# Type stub for the compiled dispatcher of install() (_livekit_emit_c.pyx).
# It mirrors the pure twin _livekit_emit_py.py name for name.

from typing import Any

__all__ = ("livekit_emit", "livekit_reset", "livekit_snapshot_count")

def livekit_emit(self: Any, event: Any, *args: Any) -> None: ...
def livekit_reset() -> None: ...
def livekit_snapshot_count() -> int: ...
