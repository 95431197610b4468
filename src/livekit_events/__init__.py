"""livekit_events: a Cython-accelerated, drop-in ``livekit.rtc.EventEmitter``.

``IMPLEMENTATION`` is ``"compiled"`` when the Cython core is in use and
``"pure"`` when the pure-Python twin is (extension not built, or
``LIVEKIT_EVENTS_NO_EXTENSIONS`` set to a non-empty value).

Async helpers (``livekit_events.aio``, also exported here): ``wait_for``
awaits the next emission of an event, ``iterate`` iterates emissions, and
``TaskHandlers`` runs async handlers in tasks it owns; all work with any
emitter that has ``on``/``off``, livekit's included.

Observability: ``ListenerLeakWarning`` (an event with more handlers than
``max_listeners``) and ``set_slow_handler_threshold`` (log handlers that take
too long).
"""

from ._common import (
    ListenerLeakWarning,
    get_slow_handler_threshold,
    set_slow_handler_threshold,
)
from ._core import IMPLEMENTATION
from ._emitter import EventEmitter
from ._livekit import (
    EmitterClass,
    InstallReport,
    LivekitIncompatibleError,
    install,
    install_report,
    is_installed,
    uninstall,
)
from .aio import (
    EventStream,
    EventStreamOverflowError,
    HandlerOverflowError,
    TaskHandlers,
    iterate,
    wait_for,
)

__version__ = "0.1.0"

__all__ = (
    "EmitterClass",
    "EventEmitter",
    "EventStream",
    "EventStreamOverflowError",
    "HandlerOverflowError",
    "IMPLEMENTATION",
    "InstallReport",
    "ListenerLeakWarning",
    "LivekitIncompatibleError",
    "TaskHandlers",
    "__version__",
    "get_slow_handler_threshold",
    "install",
    "install_report",
    "is_installed",
    "iterate",
    "set_slow_handler_threshold",
    "uninstall",
    "wait_for",
)
