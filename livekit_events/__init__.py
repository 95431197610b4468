"""livekit_events: a Cython-accelerated, drop-in ``livekit.rtc.EventEmitter``.

``IMPLEMENTATION`` is ``"compiled"`` when the Cython core is in use and
``"pure"`` when the pure-Python twin is (extension not built, or
``LIVEKIT_EVENTS_NO_EXTENSIONS`` set to a non-empty value).
"""

from ._core import IMPLEMENTATION
from ._emitter import EventEmitter
from ._livekit import LivekitIncompatibleError, install, is_installed, uninstall

__version__ = "0.1.0"

__all__ = (
    "EventEmitter",
    "IMPLEMENTATION",
    "LivekitIncompatibleError",
    "__version__",
    "install",
    "is_installed",
    "uninstall",
)
