"""livekit_events' startup hook, for processes started by ``python -m livekit_events``.

Python imports ``sitecustomize`` at startup (the ``site`` module does).  The
launcher puts this file's directory first on ``PYTHONPATH``, so this module
runs at the start of the launched program and of every Python process
started from it, which inherit the variable: multiprocessing ``spawn`` and
``forkserver`` children (livekit-agents' job processes), subprocesses.

At startup it imports neither ``livekit_events`` nor ``livekit``; it

1. puts a finder at the front of ``sys.meta_path`` that, once ``livekit.rtc``
   has been imported (by the app, by livekit-agents, by anything), takes
   itself off ``sys.meta_path`` and calls ``livekit_events.install()``.  A
   failure to install is reported as a ``RuntimeWarning``; the import of
   ``livekit.rtc`` itself never fails because of this hook;
2. installs at once if ``livekit.rtc`` is already imported (it can't be, at
   startup, unless the hook is run some other way);
3. runs the ``sitecustomize`` that this one shadows, if there is one further
   down ``sys.path`` (a distribution's, or the user's own), as Python would
   have without the launcher.

A process that never imports ``livekit.rtc`` pays for one ``sys.meta_path``
entry, which compares each imported name with ``"livekit.rtc"``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from types import ModuleType
from typing import Any, List, Optional, Sequence

_TARGET = "livekit.rtc"
_HERE = os.path.dirname(os.path.abspath(__file__))
#: Marks this hook's finder (a second copy of this file, from another
#: install, must not arm a second one).
_MARKER = "_livekit_events_autoinstall"


def _install() -> None:
    try:
        import livekit_events

        report = livekit_events.install()
    except Exception as exc:  # noqa: BLE001 - reported; the app runs on stock livekit
        warnings.warn(
            f"python -m livekit_events: livekit_events.install() failed in process "
            f"{os.getpid()}, livekit.rtc runs unaccelerated: {type(exc).__name__}: {exc}",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    import logging

    logging.getLogger("livekit_events").info(
        "livekit_events: installed in process %d (livekit %s, %s core)",
        os.getpid(),
        report.livekit_version,
        report.core,
    )


def _disarm() -> None:
    for finder in list(sys.meta_path):
        if getattr(finder, _MARKER, False):
            try:
                sys.meta_path.remove(finder)
            except ValueError:  # another thread took it off
                pass


class _Loader(importlib.abc.Loader):
    """``livekit.rtc``'s own loader, then ``install()``."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        create = getattr(self._loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module: ModuleType) -> None:
        # The module keeps its real loader (importlib.resources and the like
        # read it), as if this wrapper had never been there.
        module.__loader__ = self._loader
        spec = module.__spec__
        if spec is not None and spec.loader is self:
            spec.loader = self._loader
        self._loader.exec_module(module)
        _disarm()
        _install()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds ``livekit.rtc`` with the other finders, and wraps its loader."""

    _livekit_events_autoinstall = True

    def find_spec(
        self,
        fullname: str,
        path: Optional[Sequence[str]],
        target: Optional[ModuleType] = None,
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != _TARGET:
            return None
        spec: Optional[importlib.machinery.ModuleSpec] = None
        for finder in list(sys.meta_path):
            find_spec = getattr(finder, "find_spec", None)
            if finder is self or find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Loader(spec.loader)
        return spec


def _arm() -> None:
    if _TARGET in sys.modules:
        _install()
    elif not any(getattr(finder, _MARKER, False) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def _chain() -> None:
    """Run the next ``sitecustomize`` on ``sys.path`` after this one's directory."""
    path: List[object] = list(sys.path)
    entries = [entry for entry in path if isinstance(entry, str)]  # the import system's rule
    here = [i for i, entry in enumerate(entries) if os.path.abspath(entry or os.curdir) == _HERE]
    if not here:
        return
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", entries[here[0] + 1 :])
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    exec_module: Any = getattr(spec.loader, "exec_module")
    exec_module(module)


_arm()
_chain()
