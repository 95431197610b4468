"""The public ``EventEmitter``: the active core, generic over the event type.

Everything an emitter does at run time is the core's (``_core_c.pyx``, or its
twin ``_core_py.py``): ``on``, ``once`` and their decorator forms, ``off``,
``emit`` and the rest, so that a call is one C method with no Python layer in
front, and so that the class carries no helper of its own whose name a
subclass could collide with.  This module adds the public typing
(``EmitterAPI``, seen by type checkers only) and ``Generic``.
"""

from __future__ import annotations

import types
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ClassVar,
    Dict,
    Generic,
    List,
    Optional,
    TypeVar,
    Union,
    overload,
)

import sys

from ._core import EmitterCore

__all__ = ("EventEmitter", "EmitterAPI")

T_contra = TypeVar("T_contra", contravariant=True)
CallbackT = TypeVar("CallbackT", bound=Callable[..., Any])


class EmitterAPI(Generic[T_contra]):
    """The typed surface of ``EventEmitter``, for type checkers.

    Every method is typed against the event-name type ``T_contra``, so
    ``EventEmitter[Literal["a", "b"]]`` rejects ``emit("c")`` under mypy and
    pyright whichever core runs.  At run time the class is empty: the methods
    are the core's.
    """

    __slots__ = ()

    if TYPE_CHECKING:

        def emit(self, event: T_contra, *args: Any) -> None:
            """Call every handler of ``event`` with the leading ``args`` it accepts."""

        @overload
        def on(self, event: T_contra, callback: CallbackT, *, weak: bool = False) -> CallbackT: ...
        @overload
        def on(
            self, event: T_contra, callback: None = None, *, weak: bool = False
        ) -> Callable[[CallbackT], CallbackT]: ...
        def on(
            self, event: T_contra, callback: Optional[CallbackT] = None, *, weak: bool = False
        ) -> Union[CallbackT, Callable[[CallbackT], CallbackT]]:
            """Call ``callback`` every time ``event`` is emitted; return it.

            Without ``callback``, return a decorator that registers the
            function (through ``self.on``) and returns it unchanged.
            Registering a callback that is already registered for ``event``
            changes nothing.  Raises ``ValueError`` for an async callback and
            ``TypeError`` for a non-callable, a callback with a required
            keyword-only parameter, or an unhashable event.

            With ``weak=True`` the emitter holds the callback weakly (a bound
            method: its object weakly, its function strongly): the
            registration goes away when the callback's object dies, and keeps
            nothing alive.  ``TypeError`` if it can't be weakly referenced.
            """
            ...

        @overload
        def once(
            self, event: T_contra, callback: CallbackT, *, weak: bool = False
        ) -> CallbackT: ...
        @overload
        def once(
            self, event: T_contra, callback: None = None, *, weak: bool = False
        ) -> Callable[[CallbackT], CallbackT]: ...
        def once(
            self, event: T_contra, callback: Optional[CallbackT] = None, *, weak: bool = False
        ) -> Union[CallbackT, Callable[[CallbackT], CallbackT]]:
            """Call ``callback`` the next time ``event`` is emitted only; return it.

            Each call adds one one-shot registration (also for a callback that
            is already registered).  It is removed before it is called, so it
            fires at most once even under nested emits or threads.  When a
            subclass overrides ``on`` or ``off``, ``once`` registers a wrapper
            through ``self.on`` and removes it through ``self.off`` when it
            fires, as livekit's does.  Decorator form, ``weak`` and errors as
            for ``on``.
            """
            ...

        def off(self, event: T_contra, callback: Callable[..., Any]) -> None:
            """Remove every registration of ``callback`` for ``event`` (``on`` and
            pending ``once`` ones).  Unknown events or callbacks are ignored."""

        def listeners(self, event: T_contra) -> List[Callable[..., Any]]:
            """The callbacks of ``event`` as registered, in call order."""
            ...

        def listener_count(self, event: T_contra) -> int:
            """How many registrations ``event`` has (each pending ``once`` counts)."""
            ...

        # List[Any], not List[T_contra]: a contravariant type variable cannot
        # be returned.
        def event_names(self) -> List[Any]:
            """The events that have at least one handler, in first-registration order."""
            ...

        def remove_all_listeners(self, event: Optional[T_contra] = None) -> None:
            """Remove every handler of ``event``, or of every event if it is None."""

        #: Warn (``ListenerLeakWarning``) when one event gets more handlers
        #: than this (a leak); ``0`` or ``None``: never.  Set it on a class;
        #: ``set_max_listeners`` sets it for one emitter.
        max_listeners: ClassVar[Optional[int]]

        def set_max_listeners(self, limit: Optional[int]) -> None:
            """Warn (``ListenerLeakWarning``) when an event of this emitter gets
            more than ``limit`` handlers; ``0`` or ``None``: never."""

        def get_max_listeners(self) -> int:
            """This emitter's limit (``set_max_listeners``, else the class's
            ``max_listeners``); ``0``: no limit."""
            ...

        @property
        def _events(self) -> Dict[Any, List[Callable[..., Any]]]: ...


# Generic[T_contra] last keeps the MRO EventEmitter, EmitterAPI, EmitterCore,
# Generic, object.
class EventEmitter(EmitterAPI[T_contra], EmitterCore, Generic[T_contra]):
    """A drop-in replacement for ``livekit.rtc.EventEmitter``.

    Handlers run synchronously in registration order; each gets the leading
    emitted arguments it accepts (read from its signature once, when it is
    registered); an ``Exception`` raised by one is logged on the
    ``livekit.events`` logger and the others still run.

    Every method comes from the compiled core (``livekit_events.IMPLEMENTATION``
    says which core runs).
    """

    if not TYPE_CHECKING:  # (the typed emit is EmitterAPI's)
        emit = sys.modules[EmitterCore.__module__].emit_method  # the core's fastest emit


def emitter_class_for(core: type) -> type:
    """The public class built over ``core`` (a core module's ``EmitterCore``).

    For the active core this is ``EventEmitter`` itself; for the other one it
    is an identical class with that core underneath.  The test suite uses it
    to run every test against both implementations.
    """
    if core is EmitterCore:
        return EventEmitter
    namespace = {
        "__doc__": EventEmitter.__doc__,
        "__module__": __name__,
        "emit": sys.modules[core.__module__].emit_method,
    }
    generic: Any = Generic  # subscripted at run time, outside a class statement
    return types.new_class(
        "EventEmitter", (EmitterAPI, core, generic[T_contra]), {}, lambda ns: ns.update(namespace)
    )
