"""One uniform interface over every event-emitter implementation benchmarked.

Each ``Adapter`` says how to make an emitter, subscribe, unsubscribe, register
a one-shot handler and emit, using each library the way its users do.  A
library that is not installed gives an adapter with ``available = False`` and
a ``note`` saying why; scenarios skip it (and say so) instead of failing.

The handlers themselves are never wrapped: every adapter registers the very
function objects the scenario hands it, and the floor calls those same
functions (see ``scenarios.py``).

Adapters (``ADAPTERS``, in table order):

* ``compiled``: ``livekit_events.EventEmitter`` over the compiled core.
  Refuses to load unless ``livekit_events.IMPLEMENTATION == "compiled"``.
* ``pure``: the same public class over the pure-Python twin
  (``livekit_events._core_py``), checked by class identity.
* ``livekit``: ``livekit.rtc.EventEmitter`` from PyPI (livekit 1.2.x), checked
  not to be patched by ``livekit_events.install()``.
* ``pyee``, ``psygnal``, ``blinker``: for comparison.  They differ in what
  they offer, recorded as capabilities so that scenarios needing one
  (argument trimming, ``once``, exception isolation, several positional
  arguments) skip the libraries without it, with a note:

  - pyee passes every argument to every handler (no trimming), lets a
    handler's exception propagate, has ``once``.
  - psygnal has one ``SignalInstance`` per event with a declared signature;
    it trims arguments to each slot's signature (read at ``connect``), wraps a
    slot's exception in ``EmitLoopError`` and raises it, has no ``once``.
    Its emitter here is a dict of signals; the emit being timed is the
    signal's own ``emit``, looked up before the loop, so psygnal pays no
    event-name lookup (the others do).
  - blinker sends one positional argument (the sender) and keywords; no
    trimming, no isolation, no ``once``; ``send`` is looked up before the loop
    as for psygnal.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = ("Adapter", "ADAPTERS", "adapter", "available_adapters")

EventSpec = Dict[Any, int]  # event -> number of positional arguments it is emitted with
Op = Tuple[Callable[..., Any], Tuple[Any, ...], Dict[str, Any]]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


class Adapter:
    """How to drive one implementation.  Subclasses fill in the operations."""

    key = ""
    label = ""
    #: Each handler gets only the leading arguments its signature accepts.
    trims = False
    #: A handler's Exception is logged and the other handlers still run.
    isolates = False
    #: Has a one-shot registration.
    has_once = False
    #: Emit takes an event name (its cost includes finding the handlers).
    named_events = True
    #: Largest number of positional arguments an emit can pass (None: any).
    max_args: Optional[int] = None

    def __init__(self) -> None:
        self.available = False
        self.note = ""
        self.version = ""
        try:
            self._load()
            self.available = True
        except ImportError as exc:
            self.note = f"{self.label} not installed ({exc}); skipped"

    def _load(self) -> None:
        raise NotImplementedError

    # -- operations -----------------------------------------------------------
    def new(self, spec: EventSpec) -> Any:
        """A fresh emitter that will emit the events of ``spec``."""
        raise NotImplementedError

    def op(self, emitter: Any, event: Any, name: str) -> Op:
        """Operation ``name`` (``on``, ``off``, ``once`` or ``emit``) on ``event``
        as ``(fn, prefix, keywords)``: doing it with ``extra`` arguments (the
        handler, or the emitted arguments) is ``fn(*prefix, *extra, **keywords)``.

        ``fn`` is looked up here, once, so that timing loops call it directly
        (a bound method for name-based emitters; the signal's method for
        psygnal and blinker)."""
        raise NotImplementedError

    def on(self, emitter: Any, event: Any, handler: Callable[..., Any]) -> None:
        fn, prefix, keywords = self.op(emitter, event, "on")
        fn(*prefix, handler, **keywords)

    def off(self, emitter: Any, event: Any, handler: Callable[..., Any]) -> None:
        fn, prefix, keywords = self.op(emitter, event, "off")
        fn(*prefix, handler, **keywords)

    def once(self, emitter: Any, event: Any, handler: Callable[..., Any]) -> None:
        fn, prefix, keywords = self.op(emitter, event, "once")
        fn(*prefix, handler, **keywords)

    def emit(self, emitter: Any, event: Any, *args: Any) -> None:
        fn, prefix, keywords = self.op(emitter, event, "emit")
        fn(*prefix, *args, **keywords)

    def listeners(self, emitter: Any, event: Any) -> List[Callable[..., Any]]:
        """The handlers registered for ``event``, in call order (to check that
        the operations timed did their work)."""
        raise NotImplementedError

    def skip_reason(
        self,
        *,
        nargs: int = 1,
        trimming: bool = False,
        once: bool = False,
        failing: bool = False,
    ) -> Optional[str]:
        """Why this adapter can't run a scenario with these needs, or None."""
        if not self.available:
            return self.note
        if trimming and not self.trims:
            return f"{self.label} passes every argument to every handler (no trimming)"
        if once and not self.has_once:
            return f"{self.label} has no one-shot registration"
        if failing and not self.isolates:
            return f"{self.label} does not isolate handler exceptions (it raises)"
        if self.max_args is not None and nargs > self.max_args:
            return f"{self.label} sends at most {self.max_args} positional argument"
        if self.key == "blinker" and nargs != 1:
            return "blinker always passes exactly one positional argument (the sender)"
        return None


class _NamedEmitterAdapter(Adapter):
    """Emitters with ``on``/``off``/``once``/``emit(event, *args)`` methods."""

    cls: Any = None

    off_method = "off"

    def new(self, spec: EventSpec) -> Any:
        return self.cls()

    def op(self, emitter: Any, event: Any, name: str) -> Op:
        method = self.off_method if name == "off" else name
        return getattr(emitter, method), (event,), {}

    def listeners(self, emitter: Any, event: Any) -> List[Callable[..., Any]]:
        return list(emitter.listeners(event))


class CompiledAdapter(_NamedEmitterAdapter):
    key = "compiled"
    label = "livekit_events (compiled)"
    trims = isolates = has_once = True

    def _load(self) -> None:
        import livekit_events

        if livekit_events.IMPLEMENTATION != "compiled":
            raise RuntimeError(
                "livekit_events.IMPLEMENTATION is "
                f"{livekit_events.IMPLEMENTATION!r}, not 'compiled': the benchmark would "
                f"time the pure twin twice (imported from {livekit_events.__file__}). "
                "Install the package with its extension built (scripts/bench.sh does)."
            )
        from livekit_events import _core_c

        cls = livekit_events.EventEmitter
        if not issubclass(cls, _core_c.EmitterCore):
            raise RuntimeError("livekit_events.EventEmitter is not built on the compiled core")
        self.cls = cls
        self.module = _core_c
        self.version = f"{livekit_events.__version__} ({os.path.basename(_core_c.__file__)})"


class PureAdapter(_NamedEmitterAdapter):
    key = "pure"
    label = "livekit_events (pure twin)"
    trims = isolates = has_once = True

    def _load(self) -> None:
        import livekit_events
        from livekit_events import _core_py
        from livekit_events._emitter import emitter_class_for

        cls = emitter_class_for(_core_py.EmitterCore)
        if _core_py.EmitterCore not in cls.__mro__ or any(
            c.__module__ == "livekit_events._core_c" for c in cls.__mro__
        ):
            raise RuntimeError("the pure adapter is not built on livekit_events._core_py")
        if not inspect.isfunction(cls.emit) or cls.emit.__module__ != _core_py.__name__:
            raise RuntimeError("the pure adapter's emit is not the pure twin's Python function")
        self.cls = cls
        self.module = _core_py
        self.version = livekit_events.__version__


class LivekitAdapter(_NamedEmitterAdapter):
    key = "livekit"
    label = "livekit.rtc.EventEmitter"
    trims = isolates = has_once = True

    def _load(self) -> None:
        module = importlib.import_module("livekit.rtc.event_emitter")
        cls = module.EventEmitter
        emit = cls.__dict__.get("emit")
        if not inspect.isfunction(emit) or emit.__module__ != "livekit.rtc.event_emitter":
            raise RuntimeError(
                "livekit.rtc.EventEmitter.emit is patched (livekit_events.install() was "
                "called?): the baseline must be livekit's own class"
            )
        self.cls = cls
        self.version = _version("livekit")

    def listeners(self, emitter: Any, event: Any) -> List[Callable[..., Any]]:
        return list(emitter._events.get(event, ()))  # it has no public accessor


class PyeeAdapter(_NamedEmitterAdapter):
    key = "pyee"
    label = "pyee"
    has_once = True

    off_method = "remove_listener"

    def _load(self) -> None:
        self.cls = importlib.import_module("pyee").EventEmitter
        self.version = _version("pyee")


class PsygnalAdapter(Adapter):
    key = "psygnal"
    label = "psygnal"
    trims = True
    named_events = False

    def _load(self) -> None:
        psygnal = importlib.import_module("psygnal")
        self.SignalInstance = psygnal.SignalInstance
        compiled = getattr(psygnal, "_compiled", None)
        self.version = _version("psygnal") + (" (mypyc-compiled)" if compiled else " (pure Python)")

    def new(self, spec: EventSpec) -> Dict[Any, Any]:
        # One signal per event, declared with the event's number of arguments
        # (psygnal reads each slot's signature against it at connect time).
        return {
            event: self.SignalInstance((object,) * n, name=str(event)) for event, n in spec.items()
        }

    def op(self, emitter: Any, event: Any, name: str) -> Op:
        signal = emitter[event]
        return {"on": signal.connect, "off": signal.disconnect, "emit": signal.emit}[name], (), {}

    def listeners(self, emitter: Any, event: Any) -> List[Callable[..., Any]]:
        return [slot.dereference() for slot in emitter[event]._slots]


class BlinkerAdapter(Adapter):
    key = "blinker"
    label = "blinker"
    named_events = False
    max_args = 1

    def _load(self) -> None:
        self.Signal = importlib.import_module("blinker").Signal
        self.version = _version("blinker")

    def new(self, spec: EventSpec) -> Dict[Any, Any]:
        return {event: self.Signal(str(event)) for event in spec}

    def op(self, emitter: Any, event: Any, name: str) -> Op:
        signal = emitter[event]
        if name == "on":
            return signal.connect, (), {"weak": False}  # strong, like the others
        return {"off": signal.disconnect, "emit": signal.send}[name], (), {}

    def listeners(self, emitter: Any, event: Any) -> List[Callable[..., Any]]:
        return list(emitter[event].receivers.values())  # strong references (weak=False)


_ADAPTER_CLASSES = (
    CompiledAdapter,
    PureAdapter,
    LivekitAdapter,
    PsygnalAdapter,
    PyeeAdapter,
    BlinkerAdapter,
)

_cache: Dict[str, Adapter] = {}


def adapter(key: str) -> Adapter:
    """The adapter named ``key`` (loaded once).  ``compiled`` and ``pure`` raise
    RuntimeError if they would not time what they claim to."""
    if not _cache:
        for cls in _ADAPTER_CLASSES:
            _cache[cls.key] = cls()
    return _cache[key]


def ADAPTERS() -> List[Adapter]:  # noqa: N802 - reads as the registry
    """Every adapter, available or not, in table order."""
    return [adapter(cls.key) for cls in _ADAPTER_CLASSES]


def available_adapters() -> List[Adapter]:
    return [a for a in ADAPTERS() if a.available]
