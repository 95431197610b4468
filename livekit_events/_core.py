"""Pick the implementation: the compiled core unless it is missing or
``LIVEKIT_EVENTS_NO_EXTENSIONS`` is set to a non-empty value."""

from __future__ import annotations

import os

if os.environ.get("LIVEKIT_EVENTS_NO_EXTENSIONS"):
    from ._core_py import EmitterCore

    IMPLEMENTATION = "pure"
else:
    try:
        from ._core_c import EmitterCore  # type: ignore[no-redef]

        IMPLEMENTATION = "compiled"
    except ImportError:  # not built (no compiler, or an uncompiled source tree)
        from ._core_py import EmitterCore

        IMPLEMENTATION = "pure"

__all__ = ("IMPLEMENTATION", "EmitterCore")
