"""The public ``EventEmitter``: a thin Python shim over the active core.

The core (``_core_c.pyx`` or its twin ``_core_py.py``) stores registrations,
runs ``emit`` and ``off``, and validates and registers callbacks (``_on``:
async callbacks, non-callables, unhashable events, required keyword-only
parameters; each callback's arity read once).  This layer adds the decorator
forms, ``once`` going through ``on``, and the public typing.  ``on`` is one
Python frame over the core's ``_on``; ``off`` is the core's own method.
"""

from __future__ import annotations

import types
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Generic,
    List,
    Optional,
    Tuple,
    TypeVar,
    Union,
    overload,
)

from ._common import OnceRequest, check_event
from ._core import EmitterCore

__all__ = ("EventEmitter", "EmitterAPI")

T_contra = TypeVar("T_contra", contravariant=True)
CallbackT = TypeVar("CallbackT", bound=Callable[..., Any])


# The core's ``_on`` recognises this exact type (``once`` -> ``self.on``).
_OnceRequest = OnceRequest


class EmitterAPI(Generic[T_contra]):
    """``on``/``once``/``off`` over a core; mixed into ``EventEmitter``.

    This class also carries the public typing: every method is typed against
    the event-name type ``T_contra``, so ``EventEmitter[Literal["a", "b"]]``
    rejects ``emit("c")`` under mypy and pyright whichever core runs.
    """

    __slots__ = ()

    if TYPE_CHECKING:
        # Provided by the core (_core_c or _core_py), declared here only for
        # type checkers.  Nothing is defined at run time: emit and off stay
        # the core's own methods, with no Python layer in front of them.
        def emit(self, event: T_contra, *args: Any) -> None:
            """Call every handler of ``event`` with the leading ``args`` it accepts."""

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

        def off(self, event: T_contra, callback: Callable[..., Any]) -> None:
            """Remove every registration of ``callback`` for ``event`` (``on`` and
            pending ``once`` ones).  Unknown events or callbacks are ignored."""

        @property
        def _events(self) -> Dict[Any, List[Callable[..., Any]]]: ...
        def _on(self, event: Any, callback: CallbackT) -> CallbackT: ...
        def _describe(self, callback: Any) -> Tuple[int, int]: ...
        def _add(
            self, event: Any, callback: Any, accepted: int, required: int, once: bool
        ) -> None: ...
    
    @overload
    def on(self, event: T_contra, callback: CallbackT) -> CallbackT: ...
    @overload
    def on(self, event: T_contra, callback: None = None) -> Callable[[CallbackT], CallbackT]: ...
    def on(
        self, event: T_contra, callback: Optional[CallbackT] = None
    ) -> Union[CallbackT, Callable[[CallbackT], CallbackT]]:
        """Call ``callback`` every time ``event`` is emitted; return it.

        Without ``callback``, return a decorator that registers the function
        and returns it unchanged.  Registering a callback that is already
        registered for ``event`` changes nothing.  Raises ``ValueError`` for an
        async callback and ``TypeError`` for a non-callable, a callback with a
        required keyword-only parameter, or an unhashable event.
        """
        if callback is None:
            check_event(event)

            def decorator(function: CallbackT) -> CallbackT:
                self.on(event, function)
                return function

            return decorator
        # The core checks the event, reads the callback's arity (or unwraps a
        # once request) and registers it, in one call: returns `callback`.
        return self._on(event, callback)

    @overload
    def once(self, event: T_contra, callback: CallbackT) -> CallbackT: ...
    @overload
    def once(self, event: T_contra, callback: None = None) -> Callable[[CallbackT], CallbackT]: ...
    def once(
        self, event: T_contra, callback: Optional[CallbackT] = None
    ) -> Union[CallbackT, Callable[[CallbackT], CallbackT]]:
        """Call ``callback`` the next time ``event`` is emitted only; return it.

        Each call adds one one-shot registration (also for a callback that is
        already registered).  It is removed before it is called, so it fires
        at most once even under nested emits or threads.  Goes through
        ``self.on``.  Decorator form and errors as for ``on``.
        """
        check_event(event)
        if callback is None:

            def decorator(function: CallbackT) -> CallbackT:
                self.once(event, function)
                return function

            return decorator
        accepted, required = self._describe(callback)
        self.on(event, _OnceRequest(callback, accepted, required))
        return callback


# Generic[T_contra] last keeps the MRO EventEmitter, EmitterAPI, EmitterCore,
# Generic, object: the core's methods are found right after the shim's.
class EventEmitter(EmitterAPI[T_contra], EmitterCore, Generic[T_contra]):
    """A drop-in replacement for ``livekit.rtc.EventEmitter``.

    Handlers run synchronously in registration order; each gets the leading
    emitted arguments it accepts (read from its signature once, when it is
    registered); an ``Exception`` raised by one is logged on the
    ``livekit.events`` logger and the others still run.

    ``emit(event, *args)``, ``listeners(event)``, ``listener_count(event)``,
    ``event_names()`` and ``remove_all_listeners(event=None)`` come from the
    compiled core (``livekit_events.IMPLEMENTATION`` says which one runs).
    """


def emitter_class_for(core: type) -> type:
    """The public class built over ``core`` (a core module's ``EmitterCore``).

    For the active core this is ``EventEmitter`` itself; for the other one it
    is an identical class with that core underneath.  The test suite uses it
    to run every test against both implementations.
    """
    if core is EmitterCore:
        return EventEmitter
    namespace = {"__doc__": EventEmitter.__doc__, "__module__": __name__}
    generic: Any = Generic  # subscripted at run time, outside a class statement
    return types.new_class(
        "EventEmitter", (EmitterAPI, core, generic[T_contra]), {}, lambda ns: ns.update(namespace)
    )
