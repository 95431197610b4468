"""Pick the implementation: the compiled core unless it is missing or
``LIVEKIT_EVENTS_NO_EXTENSIONS`` is set to a non-empty value."""

from __future__ import annotations

import os

#: Written into the package by setup.py when the compiled core failed to build.
_BUILD_FAILURE_MARKER = os.path.join(os.path.dirname(__file__), "_build_failed.txt")


def _warn_build_failed() -> None:
    # pip hides the build's own warning; say it where the user will see it.
    if not os.path.exists(_BUILD_FAILURE_MARKER):
        return
    import warnings

    with open(_BUILD_FAILURE_MARKER) as marker:
        reason = marker.read().strip()
    warnings.warn(
        f"livekit_events: the compiled core failed to build ({reason}); using the "
        "pure-Python implementation (same behaviour, slower emit). Reinstall with a C "
        "compiler, or set LIVEKIT_EVENTS_NO_EXTENSIONS=1 to silence this warning.",
        RuntimeWarning,
        stacklevel=3,
    )


if os.environ.get("LIVEKIT_EVENTS_NO_EXTENSIONS"):
    from ._core_py import EmitterCore

    IMPLEMENTATION = "pure"
else:
    try:
        # Both cores have the same surface (the stub _core_c.pyi mirrors _core_py).
        from ._core_c import EmitterCore  # type: ignore[assignment]

        IMPLEMENTATION = "compiled"  # pyright: ignore[reportConstantRedefinition]
    except ImportError:  # not built (no compiler, or an uncompiled source tree)
        from ._core_py import EmitterCore

        IMPLEMENTATION = "pure"  # pyright: ignore[reportConstantRedefinition]
        _warn_build_failed()

__all__ = ("IMPLEMENTATION", "EmitterCore")
