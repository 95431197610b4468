"""Accelerate an existing LiveKit app in place: ``install()`` / ``uninstall()``.

``install()`` replaces two methods of ``livekit.rtc.EventEmitter`` (so of
``Room`` and every other subclass, instances that already exist included):

* ``emit`` becomes ``livekit_emit`` from the dispatcher that goes with the
  active core (``_livekit_emit_c`` with the compiled core ``_core_c``, else
  the pure twin ``_livekit_emit_py``): livekit's semantics, with each
  handler's signature read once per registration instead of on every emit.
* ``once`` becomes a copy of livekit's ``once`` whose wrapper fires at most
  once (livekit's can fire twice when an emit nests inside another emit).

livekit's ``__init__``, ``on`` and ``off`` and its ``_events`` storage are
left as they are.  Before changing anything, ``install()`` checks that the
installed livekit's emitter is the one this code was written against (its
methods, their signatures, what its ``emit`` refers to, and how it behaves
on a scratch instance) and refuses with ``LivekitIncompatibleError`` if not.
Subclasses (livekit's ``Room``, livekit-agents' ``AgentSession``, an app's
own) are not checked: one that overrides ``emit``, ``on``, ``once`` or
``off`` keeps its override, and reaches the core when it calls ``super()``.
``install()`` returns an ``InstallReport`` saying which classes go through
the core (``install_report()`` gives a fresh one at any time).
``uninstall()`` puts livekit's original function objects back.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import re
import threading
import types
import warnings
from types import ModuleType
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Set, Tuple

from . import _livekit_common

__all__ = (
    "MINIMUM_LIVEKIT",
    "EmitterClass",
    "InstallReport",
    "LivekitIncompatibleError",
    "install",
    "install_report",
    "is_installed",
    "uninstall",
)

#: The oldest livekit release ``install()`` accepts: from 1.1.20 on,
#: ``EventEmitter`` keeps an event's handlers in a dict (registration order);
#: before it, in a set.
MINIMUM_LIVEKIT = "1.1.20"
_MINIMUM_TUPLE = (1, 1, 20)


class LivekitIncompatibleError(RuntimeError):
    """The installed livekit's ``EventEmitter`` is not one ``install()`` knows."""


class _SetStorage(Exception):
    """livekit's ``on`` keeps handlers in a set: a release before 1.1.20."""


#: Names an ``EmitterClass.overrides`` lists when a class defines them.
_WATCHED = ("emit", "on", "once", "off", "_events")


class EmitterClass(NamedTuple):
    """One class built on ``livekit.rtc.EventEmitter``, as ``install_report()`` found it."""

    #: ``module.QualName``.
    name: str
    cls: type
    #: How its ``emit`` reaches the core: ``"core"`` (inherited), ``"super"``
    #: (an override whose code calls ``super()``), ``"own"`` (an override that
    #: doesn't), ``"livekit"`` (livekit's original function, kept by the class).
    emit: str
    #: Which of ``emit``, ``on``, ``once``, ``off``, ``_events`` the class or a
    #: base between it and livekit's class defines.
    overrides: Tuple[str, ...]

    @property
    def through_core(self) -> bool:
        """Whether its emits are dispatched by the core (``"core"`` or ``"super"``)."""
        return self.emit in ("core", "super")


@dataclasses.dataclass(frozen=True)
class InstallReport:
    """What ``install()`` did: the livekit it found, the core in use, and every
    class built on ``livekit.rtc.EventEmitter`` that exists when the report is
    made (``install_report()`` makes a fresh one: classes defined since are in
    it).  ``str(report)`` is a readable table."""

    #: ``livekit.rtc.version.__version__``.
    livekit_version: str
    #: ``"compiled"`` or ``"pure"``.
    core: str
    #: livekit's class first, then its subclasses by name.
    classes: Tuple[EmitterClass, ...]

    def get(self, cls: type) -> Optional[EmitterClass]:
        """The entry for ``cls``, or None if it isn't built on livekit's class."""
        for entry in self.classes:
            if entry.cls is cls:
                return entry
        return None

    @property
    def through_core(self) -> Tuple[str, ...]:
        """The names of the classes whose emits the core dispatches."""
        return tuple(entry.name for entry in self.classes if entry.through_core)

    def __str__(self) -> str:
        lines = [
            f"livekit_events.install(): livekit {self.livekit_version}, {self.core} core; "
            f"{len(self.through_core)} of {len(self.classes)} EventEmitter classes "
            "dispatch through the core"
        ]
        for entry in self.classes:
            extra = f"  (defines {', '.join(entry.overrides)})" if entry.overrides else ""
            lines.append(f"  {entry.emit:7s} {entry.name}{extra}")
        return "\n".join(lines)


class _Installed:
    __slots__ = ("cls", "core", "dispatcher", "originals", "replacements")

    def __init__(
        self,
        cls: type,
        core: ModuleType,
        dispatcher: ModuleType,
        originals: Dict[str, Callable[..., Any]],
        replacements: Dict[str, Callable[..., Any]],
    ) -> None:
        self.cls = cls
        self.core = core
        self.dispatcher = dispatcher
        self.originals = originals
        self.replacements = replacements


_lock = threading.RLock()
_installed: Optional[_Installed] = None

# What install() relies on in livekit's emitter module.
_SIGNATURES = {
    "__init__": ["self"],
    "emit": ["self", "event", "*args"],
    "on": ["self", "event", "callback=None"],
    "once": ["self", "event", "callback=None"],
    "off": ["self", "event", "callback"],
}
# Names livekit's emit must use: _events storage, the signature rule, the
# TypeError/Exception handling and its logger.
_EMIT_NAMES = {
    "_events",
    "signature",
    "VAR_POSITIONAL",
    "POSITIONAL_ONLY",
    "POSITIONAL_OR_KEYWORD",
    "TypeError",
    "Exception",
    "logger",
    "exception",
}


def _active_core() -> ModuleType:
    from ._core import IMPLEMENTATION

    name = "_core_c" if IMPLEMENTATION == "compiled" else "_core_py"
    return importlib.import_module(f"{__package__}.{name}")


#: The dispatcher module that goes with each core.
_DISPATCHERS = {"_core_c": "_livekit_emit_c", "_core_py": "_livekit_emit_py"}


def _dispatcher(core: ModuleType) -> ModuleType:
    """The module whose ``livekit_emit`` install() uses with ``core``."""
    name = _DISPATCHERS[core.__name__.rpartition(".")[2]]
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ImportError as exc:
        raise ImportError(
            f"livekit_events.{name}, install()'s dispatcher for {core.__name__}, can't be "
            f"imported ({exc}): a stale or partial build? Rebuild livekit_events"
        ) from exc


def _import_livekit() -> ModuleType:
    try:
        return importlib.import_module("livekit.rtc.event_emitter")
    except ImportError as exc:
        raise ImportError(
            "livekit_events.install() accelerates livekit.rtc, which is not installed "
            "(pip install livekit)"
        ) from exc


def _parameters(function: Any) -> List[str]:
    out: List[str] = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            out.append(f"*{parameter.name}")
        elif parameter.kind is parameter.VAR_KEYWORD:
            out.append(f"**{parameter.name}")
        elif parameter.default is not parameter.empty:
            out.append(f"{parameter.name}={parameter.default!r}")
        else:
            out.append(parameter.name)
    return out


class _Probe:
    """What the behaviour probe learned about livekit's ``once`` wrapper."""

    once_code: Optional[types.CodeType] = None
    once_wraps: bool = False
    once_qualname: Optional[str] = None


def _check(module: ModuleType, cls: Any) -> _Probe:
    """Raise ``LivekitIncompatibleError`` unless ``cls`` is the emitter this
    code knows.  Runs livekit's own methods on a scratch instance only."""
    problems: List[str] = []
    rtc = importlib.import_module("livekit.rtc")
    if getattr(rtc, "EventEmitter", None) is not cls:
        problems.append("livekit.rtc.EventEmitter is not livekit.rtc.event_emitter.EventEmitter")
    if not isinstance(cls, type):
        raise LivekitIncompatibleError(f"livekit.rtc.EventEmitter is not a class: {cls!r}")
    functions: Dict[str, Any] = {}
    for name, expected in _SIGNATURES.items():
        function = cls.__dict__.get(name)
        if type(function) is not types.FunctionType:
            problems.append(
                f"EventEmitter.{name} is {function!r}, not a plain function "
                "(already replaced by something else?)"
            )
            continue
        functions[name] = function
        got = _parameters(function)
        if got != expected:
            problems.append(f"EventEmitter.{name}{tuple(got)}: expected {tuple(expected)}")
    if not isinstance(getattr(module, "logger", None), logging.Logger):
        problems.append("livekit.rtc.event_emitter has no `logger` (its emit's logger)")
    if "emit" in functions:
        missing = _EMIT_NAMES - _code_names(functions["emit"].__code__)
        if missing:
            problems.append(
                "EventEmitter.emit no longer works as expected (it doesn't use "
                f"{', '.join(sorted(missing))})"
            )
    # Subclasses are not checked: an override of emit, on, once or off is
    # ordinary Python (one that calls super() reaches the core, one that
    # doesn't keeps its own behaviour), and install_report() says which is
    # which.  Only livekit's class and its storage must be what the core drives.
    if problems:
        raise LivekitIncompatibleError(_refusal(problems))

    probe = _Probe()
    try:
        _probe_behaviour(cls, functions, probe)
    except _SetStorage:
        version = _livekit_version()
        raise LivekitIncompatibleError(
            f"livekit_events.install() needs livekit {MINIMUM_LIVEKIT} or later: the installed "
            f"livekit ({version}) keeps an event's handlers in a set, and calls them in the "
            f"order of a copy of that set; from {MINIMUM_LIVEKIT} on, livekit keeps them in a "
            "dict and calls them in registration order, which is what install() reproduces. "
            f"Nothing was changed. Upgrade: pip install 'livekit>={MINIMUM_LIVEKIT}'"
        ) from None
    except Exception as exc:
        raise LivekitIncompatibleError(
            _refusal([f"livekit's EventEmitter doesn't behave as expected: {exc}"])
        ) from exc
    return probe


def _code_names(code: types.CodeType) -> Set[str]:
    """The names a function's code uses, nested code (comprehensions) included."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _livekit_version() -> str:
    try:
        module = importlib.import_module("livekit.rtc.version")
    except Exception:  # pragma: no cover - no version module
        return "unknown version"
    return str(getattr(module, "__version__", "unknown version"))


def _version_tuple(version: str) -> Optional[Tuple[int, ...]]:
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    return tuple(int(part) for part in match.groups()) if match else None


def _refusal(problems: List[str]) -> str:
    livekit_version = _livekit_version()
    found = _version_tuple(livekit_version)
    hint = (
        f" (install() needs livekit {MINIMUM_LIVEKIT} or later: "
        f"pip install 'livekit>={MINIMUM_LIVEKIT}')"
        if found is not None and found < _MINIMUM_TUPLE
        else ""
    )
    return (
        f"livekit_events.install(): the installed livekit ({livekit_version}) has an "
        f"EventEmitter this version of livekit_events doesn't know{hint}, so nothing was "
        "changed:\n  - " + "\n  - ".join(problems)
    )


def _probe_behaviour(cls: Any, functions: Dict[str, Any], probe: _Probe) -> None:
    emit, on, once, off = (functions[n] for n in ("emit", "on", "once", "off"))
    scratch = cls.__new__(cls)
    functions["__init__"](scratch)
    calls: List[Any] = []

    def one(a):  # type: ignore[no-untyped-def]
        calls.append(("one", a))

    def every(*a):  # type: ignore[no-untyped-def]
        calls.append(("every", a))

    def expect(condition: bool, what: str) -> None:
        if not condition:
            raise AssertionError(what)

    expect(type(scratch.__dict__.get("_events")) is dict and not scratch._events,
           "__init__ doesn't set self._events to an empty dict")
    expect(on(scratch, "e", one) is one, "on() doesn't return the callback")
    if isinstance(scratch._events.get("e"), (set, frozenset)):
        raise _SetStorage
    on(scratch, "e", every)
    on(scratch, "e", one)
    expect(scratch._events == {"e": {one: None, every: None}} and type(scratch._events["e"]) is dict,
           "on() doesn't store self._events[event] = {callback: None}")
    emit(scratch, "e", 1, 2)
    expect(calls == [("one", 1), ("every", (1, 2))], "emit() doesn't trim arguments by signature")
    del calls[:]
    wrapper = once(scratch, "f", one)
    expect(callable(wrapper) and list(scratch._events["f"]) == [wrapper],
           "once() doesn't register one wrapper and return it")
    emit(scratch, "f", 3)
    expect(calls == [("one", 3)] and scratch._events["f"] == {},
           "once()'s wrapper doesn't remove itself and call the callback")
    off(scratch, "e", one)
    off(scratch, "missing", one)
    expect(list(scratch._events["e"]) == [every], "off() doesn't remove the callback")
    if type(wrapper) is types.FunctionType:
        probe.once_code = wrapper.__code__
        probe.once_qualname = wrapper.__qualname__
    probe.once_wraps = getattr(wrapper, "__wrapped__", None) is one


def _make_once(original: Any, probe: _Probe) -> Any:
    """livekit's ``once``, with a wrapper that fires at most once."""
    wraps = probe.once_wraps
    qualname = probe.once_qualname

    def once(self: Any, event: Any, callback: Optional[Callable[..., Any]] = None) -> Callable[..., Any]:
        if callback is not None:
            pending = [True]

            def once_callback(*args: Any, **kwargs: Any) -> None:
                # list.pop is atomic, so a nested emit (or another
                # thread) that already fired this registration makes the
                # outer emit skip it instead of firing it a second time.
                try:
                    pending.pop()
                except IndexError:
                    return
                self.off(event, once_callback)
                callback(*args, **kwargs)

            if wraps:  # livekit's wrapper exposes its callback: so does this one
                once_callback.__wrapped__ = callback  # type: ignore[attr-defined]
            if qualname is not None:
                once_callback.__qualname__ = qualname
            registered: Callable[..., Any] = self.on(event, once_callback)
            return registered
        else:

            def decorator(callback: Callable[..., Any]) -> Callable[..., Any]:
                self.once(event, callback)
                return callback

            return decorator

    once.__name__ = original.__name__
    once.__qualname__ = original.__qualname__
    once.__doc__ = original.__doc__
    once.__wrapped__ = original  # type: ignore[attr-defined]
    return once


def install() -> InstallReport:
    """Make every ``livekit.rtc.EventEmitter`` (``Room``, livekit-agents'
    ``AgentSession`` and every other subclass, whenever it was defined, and
    the instances that already exist) dispatch through livekit_events' core.

    Works whatever was imported before it (``livekit.agents`` included).
    Keeps livekit's behaviour except for the defects listed in docs/livekit.md.
    Returns an ``InstallReport``: which livekit, which core, and how each
    class's ``emit`` reaches the core.  Raises ``ImportError`` if livekit is
    not installed and ``LivekitIncompatibleError`` (changing nothing) if its
    emitter is not one this version knows (livekit before 1.1.20, or a
    changed ``EventEmitter``).  Calling it again is harmless.
    """
    with _lock:
        _install(_active_core())
        report = install_report()
    assert report is not None  # installed, under the lock
    return report


def _install(core: ModuleType) -> None:
    global _installed
    with _lock:
        module = _import_livekit()
        cls: Any = getattr(module, "EventEmitter", None)
        if _installed is not None:
            if _installed.cls is cls and _installed.core is core and _is_intact(_installed):
                return  # already installed
            _uninstall()
        dispatcher = _dispatcher(core)
        probe = _check(module, cls)
        originals = {"emit": cls.__dict__["emit"], "once": cls.__dict__["once"]}
        replacements = {
            "emit": dispatcher.livekit_emit,
            "once": _make_once(originals["once"], probe),
        }
        dispatcher.livekit_reset()
        _livekit_common.legacy_once_code = probe.once_code
        for name, function in replacements.items():
            setattr(cls, name, function)
        _installed = _Installed(cls, core, dispatcher, originals, replacements)


def install_report() -> Optional[InstallReport]:
    """A fresh ``InstallReport`` (classes defined since ``install()`` included),
    or None when ``install()`` is not active."""
    with _lock:
        state = _installed
        if state is None or not _is_intact(state):
            return None
        return InstallReport(
            livekit_version=_livekit_version(),
            core="compiled" if state.core.__name__.endswith("_core_c") else "pure",
            classes=tuple(_describe(cls, state) for cls in _emitter_classes(state.cls)),
        )


def _emitter_classes(base: type) -> List[type]:
    found: Dict[int, type] = {}
    pending = [base]
    while pending:
        cls = pending.pop()
        if id(cls) not in found:
            found[id(cls)] = cls
            pending.extend(type.__subclasses__(cls))
    rest = sorted(
        (cls for cls in found.values() if cls is not base),
        key=lambda cls: (cls.__module__, cls.__qualname__, id(cls)),
    )
    return [base, *rest]


def _calls_super(function: Any) -> bool:
    """Whether a function's code (nested code included) calls ``super``."""
    code = getattr(function, "__code__", None)
    return isinstance(code, types.CodeType) and "super" in _code_names(code)


def _describe(cls: type, state: _Installed) -> EmitterClass:
    base = state.cls
    overrides: List[str] = []
    emit = "core"
    decided = False
    for klass in cls.__mro__:
        if klass is base:
            break
        for name in _WATCHED:
            if name in klass.__dict__ and name not in overrides:
                overrides.append(name)
        if decided or "emit" not in klass.__dict__:
            continue
        function = klass.__dict__["emit"]
        if function is state.replacements["emit"]:
            decided = True  # the dispatcher's emit itself
        elif function is state.originals["emit"]:
            emit, decided = "livekit", True
        elif type(function) is types.FunctionType and _calls_super(function):
            emit = "super"  # what the next definer up the MRO does decides the rest
        else:
            emit, decided = "own", True
    return EmitterClass(
        name=f"{cls.__module__}.{cls.__qualname__}",
        cls=cls,
        emit=emit,
        overrides=tuple(sorted(overrides, key=_WATCHED.index)),
    )


def _is_intact(state: _Installed) -> bool:
    return all(state.cls.__dict__.get(n) is f for n, f in state.replacements.items())


def uninstall() -> None:
    """Put livekit's original ``emit`` and ``once`` back.  Harmless if
    ``install()`` was not called."""
    with _lock:
        _uninstall()


def _uninstall() -> None:
    global _installed
    state = _installed
    if state is None:
        return
    replaced_since: List[str] = []
    for name, original in state.originals.items():
        if state.cls.__dict__.get(name) is state.replacements[name]:
            setattr(state.cls, name, original)
        else:
            replaced_since.append(name)
    _installed = None
    _livekit_common.legacy_once_code = None
    state.dispatcher.livekit_reset()
    if replaced_since:
        warnings.warn(
            f"livekit_events.uninstall(): EventEmitter.{', '.join(replaced_since)} was replaced "
            "by something else after install(); left as it is",
            RuntimeWarning,
            stacklevel=3,
        )


def is_installed() -> bool:
    """Whether ``install()`` is active (and its methods are still in place)."""
    with _lock:
        return _installed is not None and _is_intact(_installed)


def installed_core() -> Optional[str]:
    """``"compiled"`` or ``"pure"``: which core livekit's emitters use; None if not installed."""
    with _lock:
        if _installed is None:
            return None
        return "compiled" if _installed.core.__name__.endswith("_core_c") else "pure"
