"""livekit_events: a Cython-accelerated, drop-in ``livekit.rtc.EventEmitter``.

``IMPLEMENTATION`` is ``"compiled"`` when the Cython core is in use and
``"pure"`` when the pure-Python twin is (extension not built, or
``LIVEKIT_EVENTS_NO_EXTENSIONS`` set to a non-empty value).

Async helpers (``livekit_events.aio``, also exported here): ``wait_for``
awaits the next emission of an event, ``iterate`` iterates emissions, and
``TaskHandlers`` runs async handlers in tasks it owns; all work with any
emitter that has ``on``/``off``, livekit's included.  They are imported, and
asyncio with them, when first used.

Observability: ``ListenerLeakWarning`` (an event with more handlers than
``max_listeners``) and ``set_slow_handler_threshold`` (log handlers that take
too long).
"""

from typing import TYPE_CHECKING, Any, List

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

if TYPE_CHECKING:
    from . import aio as aio
    from .aio import (
        EventStream,
        EventStreamOverflowError,
        HandlerOverflowError,
        TaskHandlers,
        iterate,
        wait_for,
    )

__version__ = "0.1.0"

# The async helpers import asyncio, which takes far longer than the rest of
# the package: they are imported when first used (PEP 562).
_AIO_NAMES = frozenset(
    (
        "EventStream",
        "EventStreamOverflowError",
        "HandlerOverflowError",
        "TaskHandlers",
        "iterate",
        "wait_for",
    )
)


def __getattr__(name: str) -> Any:
    if name == "aio" or name in _AIO_NAMES:
        import importlib

        aio = importlib.import_module(f"{__name__}.aio")  # binds the package's `aio` too
        namespace = globals()
        for public in _AIO_NAMES:
            namespace[public] = getattr(aio, public)
        return namespace[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted({*globals(), *_AIO_NAMES, "aio"})

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
