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

if TYPE_CHECKING:
    from . import aio as aio
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

# Imported when first used (PEP 562), each module with all its names: the
# async helpers import asyncio, which takes far longer than the rest of the
# package, and install() (with its report classes) dataclasses, re and inspect.
_LAZY_MODULES = {
    "aio": (
        "EventStream",
        "EventStreamOverflowError",
        "HandlerOverflowError",
        "TaskHandlers",
        "iterate",
        "wait_for",
    ),
    "_livekit": (
        "EmitterClass",
        "InstallReport",
        "LivekitIncompatibleError",
        "install",
        "install_report",
        "is_installed",
        "uninstall",
    ),
}
_LAZY_NAMES = {name: module for module, names in _LAZY_MODULES.items() for name in names}
_LAZY_NAMES["aio"] = "aio"  # the module itself


def __getattr__(name: str) -> Any:
    module_name = _LAZY_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f"{__name__}.{module_name}")  # binds `aio` too
    namespace = globals()
    for public in _LAZY_MODULES[module_name]:
        namespace[public] = getattr(module, public)
    return namespace[name]


def __dir__() -> List[str]:
    return sorted({*globals(), *_LAZY_NAMES})


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
