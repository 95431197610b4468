"""livekit_events' startup hook, for processes started by ``python -m livekit_events``.

Python imports ``sitecustomize`` at startup (the ``site`` module does).  The
launcher puts this file's directory first on ``PYTHONPATH``, so this module
runs at the start of the launched program and of every Python process
started from it, which inherit the variable: multiprocessing ``spawn`` and
``forkserver`` children (livekit-agents' job processes), subprocesses, and
also the processes of other interpreters (Python 2, another virtual
environment).  So it is written in syntax that every Python from 2.7 on
parses, and in each process it

1. takes its directory off ``sys.path`` if the launcher put it on
   ``PYTHONPATH`` (it is there once), so that the program's ``sys.path`` is
   the one Python gives it without the launcher.  ``os.environ`` keeps it:
   the processes this one starts run the hook too;
2. on Python 3.9 and later (the versions livekit_events supports), puts a
   finder at the front of ``sys.meta_path`` that, once ``livekit.rtc`` has
   been imported (by the app, by livekit-agents, by anything), takes itself
   off ``sys.meta_path`` and calls ``livekit_events.install()``; or installs
   at once if ``livekit.rtc`` is already imported (it can't be, at startup,
   unless the hook is run some other way).  Where livekit_events is not
   installed (another virtual environment), that does nothing.  Any other
   failure to install is reported as a ``RuntimeWarning``; the import of
   ``livekit.rtc`` itself never fails because of this hook;
3. runs the ``sitecustomize`` that this one shadows, if there is one on
   ``sys.path`` (a distribution's, or the user's own), as Python would have
   without the launcher; an error in it is reported as Python reports it.

At startup it imports neither ``livekit_events`` nor ``livekit``.  A process
that never imports ``livekit.rtc`` pays for one ``sys.meta_path`` entry,
which compares each imported name with ``"livekit.rtc"``.
"""

# pyright: reportTypeCommentUsage=false
# (Python 2 parses neither annotations nor the typing module: the types are in comments.)

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # (named in type comments: this file parses on Python 2.7)
    from importlib.machinery import ModuleSpec  # noqa: F401
    from types import ModuleType  # noqa: F401
    from typing import Any, List, Optional, Sequence  # noqa: F401

_TARGET = "livekit.rtc"
_HERE = os.path.normcase(os.path.dirname(os.path.abspath(__file__)))
#: Marks this hook's finder (a second copy of this file, from another
#: install, must not arm a second one).
_MARKER = "_livekit_events_autoinstall"


def _is_here(entry):
    # type: (object) -> bool
    """Whether a ``sys.path`` or ``PYTHONPATH`` entry is this directory."""
    return isinstance(entry, str) and os.path.normcase(os.path.abspath(entry)) == _HERE


def _leave_path():
    # type: () -> None
    """Take this directory off ``sys.path`` if the launcher put it there."""
    entries = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if len([entry for entry in entries if _is_here(entry)]) != 1:
        return  # a second time, it is the user's own entry too: it stays
    for index, entry in enumerate(sys.path):
        if _is_here(entry):
            del sys.path[index]
            return


def _warn(exc):
    # type: (BaseException) -> None
    import warnings

    warnings.warn(
        "python -m livekit_events: livekit_events.install() failed in process %d, "
        "livekit.rtc runs unaccelerated: %s: %s" % (os.getpid(), type(exc).__name__, exc),
        RuntimeWarning,
        stacklevel=3,
    )


def _install():
    # type: () -> None
    try:
        import livekit_events
    except Exception as exc:  # noqa: BLE001 - reported; the app runs on stock livekit
        if (
            isinstance(exc, ImportError)
            and exc.name == "livekit_events"
            and "livekit_events" not in sys.modules
        ):
            return  # not installed in this environment: nothing to accelerate here
        _warn(exc)
        return
    try:
        report = livekit_events.install()
    except Exception as exc:  # noqa: BLE001 - reported; the app runs on stock livekit
        _warn(exc)
        return
    import logging

    logging.getLogger("livekit_events").info(
        "livekit_events: installed in process %d (livekit %s, %s core)",
        os.getpid(),
        report.livekit_version,
        report.core,
    )


def _disarm():
    # type: () -> None
    for finder in list(sys.meta_path):
        if getattr(finder, _MARKER, False):
            try:
                sys.meta_path.remove(finder)
            except ValueError:  # another thread took it off
                pass


class _Loader(object):
    """``livekit.rtc``'s own loader, then ``install()``."""

    def __init__(self, loader):
        # type: (Any) -> None
        self._loader = loader

    def create_module(self, spec):
        # type: (ModuleSpec) -> Any
        create = getattr(self._loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module):
        # type: (ModuleType) -> None
        # The module keeps its real loader (importlib.resources and the like
        # read it), as if this wrapper had never been there.
        module.__loader__ = self._loader
        spec = module.__spec__
        if spec is not None and getattr(spec, "loader", None) is self:
            spec.loader = self._loader
        self._loader.exec_module(module)
        _disarm()
        _install()

    def __getattr__(self, name):
        # type: (str) -> Any
        return getattr(self._loader, name)


class _Finder(object):
    """Finds ``livekit.rtc`` with the other finders, and wraps its loader."""

    _livekit_events_autoinstall = True

    def find_spec(self, fullname, path, target=None):
        # type: (str, Optional[Sequence[str]], Optional[ModuleType]) -> Optional[ModuleSpec]
        if fullname != _TARGET:
            return None
        spec = None  # type: Optional[ModuleSpec]
        for finder in list(sys.meta_path):
            find_spec = getattr(finder, "find_spec", None)
            if finder is self or find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Loader(spec.loader)  # type: ignore[assignment]
        return spec


def _arm():
    # type: () -> None
    if _TARGET in sys.modules:
        _install()
    elif not any(getattr(finder, _MARKER, False) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def _chain():
    # type: () -> None
    """Run the ``sitecustomize`` on ``sys.path`` that this one shadows."""
    entries = list(sys.path)  # type: List[object]
    path = [entry for entry in entries if isinstance(entry, str) and not _is_here(entry)]
    this = sys.modules.pop("sitecustomize")  # it becomes the one found, if there is one
    if sys.version_info >= (3, 4):
        import importlib.machinery
        import importlib.util

        spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
        if spec is None or spec.loader is None:
            sys.modules["sitecustomize"] = this
            return
        loader = spec.loader  # type: Any
        if not hasattr(loader, "exec_module"):  # zipimport before Python 3.10
            loader.load_module("sitecustomize")
            return
        module = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        loader.exec_module(module)
    else:  # Python 2 (and 3 before 3.4): the same search, with pkgutil's
        import pkgutil

        for entry in path:
            importer = pkgutil.get_importer(entry)
            found = None if importer is None else importer.find_module("sitecustomize")
            if found is not None:
                found.load_module("sitecustomize")
                return
        sys.modules["sitecustomize"] = this


if __name__ == "sitecustomize":  # as site imports it, not under another name
    _leave_path()
if sys.version_info >= (3, 9):
    _arm()
if __name__ == "sitecustomize":
    _chain()  # last: an error in the other one propagates to site, which reports it
