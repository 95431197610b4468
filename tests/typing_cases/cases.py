"""Good and bad usages of the typed API, checked by mypy and pyright.

Not a test module: tests/test_typing.py runs both checkers on this file and
compares the lines they flag with the markers below.  A marker is a trailing
comment "E:" that lists, for each checker, the error code(s) it must report on
that line, as in "mypy[arg-type] pyright[reportArgumentType]".  Unmarked lines
must be clean under ``mypy --strict`` and pyright's strict mode.
"""

from __future__ import annotations

from typing import Any, Callable, Coroutine, Literal, Tuple

from typing_extensions import assert_type

from livekit_events import EventEmitter
from livekit_events.aio import EventStream, TaskHandlers, iterate, wait_for

Events = Literal["connected", "disconnected"]


def on_connected(reason: str) -> int:
    return len(reason)


class Handler:
    def __call__(self, participant: str, metadata: str) -> None: ...


em = EventEmitter[Events]()

# Registration returns exactly what it was given, in both forms.
assert_type(em.on("disconnected", Handler()), Handler)
assert_type(em.once("disconnected", Handler()), Handler)
registered = em.on("connected", on_connected)
same: int = registered("x")
registered_once = em.once("connected", on_connected)
registered_once(1)  # E: mypy[arg-type] pyright[reportArgumentType]


@em.on("connected")
def decorated(reason: str) -> int:
    return len(reason)


@em.once("disconnected")
def decorated_once(reason: str) -> str:
    return reason


n: int = decorated("x")  # the decorator kept the function's type
s: str = decorated_once("x")
bad_result: str = decorated("x")  # E: mypy[assignment] pyright[reportAssignmentType]
decorated(1)  # E: mypy[arg-type] pyright[reportArgumentType]

# Weak registrations: the same types, a keyword-only bool.
assert_type(em.on("disconnected", Handler(), weak=True), Handler)
assert_type(em.once("connected", Handler(), weak=True), Handler)


@em.on("connected", weak=True)
def decorated_weak(reason: str) -> int:
    return len(reason)


weak_n: int = decorated_weak("x")
em.on("connected", on_connected, weak="yes")  # E: mypy[call-overload] pyright[reportCallIssue,reportArgumentType]
em.on("connected", on_connected, True)  # E: mypy[call-overload] pyright[reportCallIssue]

# Listener limits.
em.set_max_listeners(50)
em.set_max_listeners(None)
limit: int = em.get_max_listeners()
EventEmitter.max_listeners = 2000
em.set_max_listeners("50")  # E: mypy[arg-type] pyright[reportArgumentType]

# Event names are checked everywhere.
em.emit("connected")
em.emit("disconnected", "bye", 42)
em.off("connected", on_connected)
listeners: list[Callable[..., Any]] = em.listeners("connected")
count: int = em.listener_count("disconnected")
names: list[Any] = em.event_names()
em.remove_all_listeners("connected")
em.remove_all_listeners()

em.on("conected", on_connected)  # E: mypy[call-overload] pyright[reportCallIssue,reportArgumentType]
em.once("conected", on_connected)  # E: mypy[call-overload] pyright[reportCallIssue,reportArgumentType]
em.emit("conected")  # E: mypy[arg-type] pyright[reportArgumentType]
em.off("conected", on_connected)  # E: mypy[arg-type] pyright[reportArgumentType]
em.listeners("conected")  # E: mypy[arg-type] pyright[reportArgumentType]
em.listener_count("conected")  # E: mypy[arg-type] pyright[reportArgumentType]
em.remove_all_listeners("conected")  # E: mypy[arg-type] pyright[reportArgumentType]


@em.on("conected")  # E: mypy[call-overload,untyped-decorator] pyright[reportArgumentType]
def misspelled(reason: str) -> None: ...


@em.once("disconected")  # E: mypy[call-overload,untyped-decorator] pyright[reportArgumentType]
def misspelled_once(reason: str) -> None: ...


em.on("connected", 42)  # E: mypy[call-overload] pyright[reportCallIssue,reportArgumentType]


# A subclass gets the same checks.
RoomEvents = Literal["participant_connected", "participant_disconnected", "data_received"]


class Room(EventEmitter[RoomEvents]):
    def __init__(self) -> None:
        super().__init__()


room = Room()
room.on("participant_connected", on_connected)
room.emit("participant_connected", "alice")
room.emit("participant_conected", "alice")  # E: mypy[arg-type] pyright[reportArgumentType]
room.on("connected", on_connected)  # E: mypy[call-overload] pyright[reportCallIssue,reportArgumentType]

# Contravariance: an emitter of any string can stand in for one of some names.
any_names = EventEmitter[str]()


def needs_room_events(emitter: EventEmitter[RoomEvents]) -> None: ...


def needs_any_names(emitter: EventEmitter[str]) -> None: ...


needs_room_events(any_names)
needs_any_names(room)  # E: mypy[arg-type] pyright[reportArgumentType]


# The async helpers check event names against the emitter's too.
def is_bob(identity: str) -> bool:
    return identity == "bob"


async def helpers() -> None:
    args = await wait_for(room, "participant_connected", timeout=5.0)
    assert_type(args, Tuple[Any, ...])
    await wait_for(room, "participant_connected", predicate=is_bob)
    await wait_for(any_names, "anything at all")
    await wait_for(room, "participant_conected")  # E: mypy[misc] pyright[reportCallIssue,reportArgumentType]
    stream = iterate(room, "data_received", maxsize=16, overflow="drop_oldest")
    assert_type(stream, EventStream)
    async with stream:
        async for packet_args in stream:
            assert_type(packet_args, Tuple[Any, ...])
    iterate(room, "data_recieved")  # E: mypy[misc] pyright[reportCallIssue,reportArgumentType]
    iterate(room, "data_received", overflow="block")  # E: mypy[call-overload] pyright[reportCallIssue,reportArgumentType]
    await wait_for(room, "participant_connected", timeout="5")  # E: mypy[call-overload] pyright[reportCallIssue,reportArgumentType]


# TaskHandlers: event names checked as the emitter's; handlers keep their type.
async def on_data(packet: bytes) -> None: ...


def on_data_sync(packet: bytes) -> None: ...


async def task_handlers() -> None:
    async with TaskHandlers(room, mode="serial", maxsize=64, overflow="drop_oldest") as handlers:
        assert_type(handlers, TaskHandlers[RoomEvents])
        registered_handler = handlers.on("data_received", on_data)  # returned as it was
        kept: Callable[[bytes], Coroutine[Any, Any, None]] = registered_handler
        await kept(b"packet")
        await registered_handler(1)  # E: mypy[arg-type] pyright[reportArgumentType]

        @handlers.on("participant_connected", mode="latest")
        async def on_participant(identity: str) -> None: ...

        await on_participant("alice")
        handlers.on("data_recieved", on_data)  # E: mypy[call-overload] pyright[reportCallIssue,reportArgumentType]
        handlers.on("data_received", on_data, mode="parallel")  # E: mypy[call-overload] pyright[reportCallIssue,reportArgumentType]
        handlers.on("data_received", on_data_sync)  # E: mypy[call-overload] pyright[reportCallIssue,reportArgumentType]
        handlers.off("data_received", on_data)
        handlers.off("data_recieved", on_data)  # E: mypy[arg-type] pyright[reportArgumentType]
        await handlers.aclose(drain=True, timeout=5)
    TaskHandlers(room, on_exit="drain", drain_timeout=2.5).close()
    TaskHandlers(room, mode="fast")  # E: mypy[call-overload] pyright[reportCallIssue,reportArgumentType]
    anything = TaskHandlers(any_names, limit=4)
    assert_type(anything, TaskHandlers[str])
    anything.on("anything at all", on_data)
