"""Pure-Python twin of ``_core_c.pyx``: the same names, the same behaviour.

Used when the extension was not built or ``LIVEKIT_EVENTS_NO_EXTENSIONS`` is
set.  Keep the two files in step: every test runs against both.

Data model (shared with the compiled core): ``_handlers`` maps an event to a
non-empty tuple of ``Registration`` objects in call order.  Changes replace
the tuple (copy-on-write) under ``registry_lock``, so ``emit`` iterates a
snapshot without copying.  A removed registration is also marked inactive, so
an emit already walking an older tuple skips it (immediate removal).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ._common import (
    ALL_ARGUMENTS,
    arity_error,
    log_handler_failure,
    registry_lock,
)

__all__ = ("EmitterCore", "Registration")


class Registration:
    """One ``on`` or ``once`` registration of a callback for an event."""

    __slots__ = ("callback", "limit", "required", "hash", "once", "active")

    def __init__(self, callback: Any, accepted: int, required: int, once: bool) -> None:
        self.callback = callback
        # A slice bound: args[:None] is args itself, without a copy.
        self.limit: Optional[int] = None if accepted == ALL_ARGUMENTS else accepted
        self.required = required
        self.hash = hash(callback)
        self.once = once
        self.active = True

    def matches(self, callback: Any, callback_hash: int) -> bool:
        # Dict-key equality: same hash, then identity or ==.
        return self.hash == callback_hash and (
            self.callback is callback or self.callback == callback
        )


def _replace_entries(
    handlers: Dict[Any, Tuple[Registration, ...]],
    event: Any,
    entries: Tuple[Registration, ...],
) -> None:
    # Caller holds registry_lock.  Empty events are dropped so that
    # event_names() lists only events with handlers.
    if entries:
        handlers[event] = entries
    else:
        handlers.pop(event, None)


class EmitterCore:
    """Registration storage and ``emit``; the public class adds the API."""

    __slots__ = ("_handlers",)

    _handlers: Dict[Any, Tuple[Registration, ...]]

    def __new__(cls, *args: Any, **kwargs: Any) -> "EmitterCore":
        self = object.__new__(cls)
        self._handlers = {}
        return self

    def __init__(self) -> None:
        if self._handlers:
            self.remove_all_listeners()

    def emit(self, event: Any, *args: Any) -> None:
        """Call every handler of ``event`` with the leading ``args`` it accepts."""
        entries = self._handlers.get(event)
        if entries is None:
            return
        given = len(args)
        for registration in entries:
            if not registration.active:
                continue  # removed while this emit runs
            if registration.once and not self._claim_once(event, registration):
                continue
            if given < registration.required:
                raise arity_error(event, registration.callback, registration.required, given)
            try:
                registration.callback(*args[: registration.limit])
            except Exception as exc:
                log_handler_failure(event, exc)

    def _claim_once(self, event: Any, registration: Registration) -> bool:
        # The check and the clear must be one step, or two threads (or a
        # nested emit) could both fire it.
        with registry_lock:
            if not registration.active:
                return False
            registration.active = False
            entries = self._handlers.get(event, ())
            _replace_entries(
                self._handlers, event, tuple(r for r in entries if r is not registration)
            )
            return True

    def _add(self, event: Any, callback: Any, accepted: int, required: int, once: bool) -> None:
        registration = Registration(callback, accepted, required, once)
        with registry_lock:
            entries = self._handlers.get(event, ())
            if not once:
                for existing in entries:
                    if not existing.once and existing.matches(callback, registration.hash):
                        return  # already registered: keeps its first position
            self._handlers[event] = entries + (registration,)

    def _remove(self, event: Any, callback: Any) -> None:
        with registry_lock:
            entries = self._handlers.get(event)
            if entries is None:
                return
            callback_hash = hash(callback)
            removed = [r for r in entries if r.matches(callback, callback_hash)]
            if not removed:
                return
            for registration in removed:
                registration.active = False
            _replace_entries(
                self._handlers, event, tuple(r for r in entries if r.active)
            )

    def remove_all_listeners(self, event: Any = None) -> None:
        """Remove every handler of ``event``, or of every event if it is None."""
        with registry_lock:
            if event is None:
                dropped = list(self._handlers.values())
                self._handlers.clear()
            else:
                entries = self._handlers.pop(event, None)
                dropped = [entries] if entries is not None else []
            for entries in dropped:
                for registration in entries:
                    registration.active = False

    def listeners(self, event: Any) -> List[Any]:
        """The callbacks of ``event`` as registered, in call order."""
        return [r.callback for r in self._handlers.get(event, ()) if r.active]

    def listener_count(self, event: Any) -> int:
        """How many registrations ``event`` has (each pending ``once`` counts)."""
        return sum(1 for r in self._handlers.get(event, ()) if r.active)

    def event_names(self) -> List[Any]:
        """The events that have at least one handler, in first-registration order."""
        return [e for e, entries in list(self._handlers.items()) if any(r.active for r in entries)]

    @property
    def _events(self) -> Dict[Any, List[Any]]:
        """livekit compatibility: a fresh ``{event: [callbacks]}`` mapping."""
        return {
            e: [r.callback for r in entries if r.active]
            for e, entries in list(self._handlers.items())
        }
