"""Adversarial re-entrancy scenarios, run in a subprocess by test_reentrancy.py.

    python reentrancy_scenarios.py CORE SCENARIO [ROUNDS]

CORE is ``compiled`` or ``pure`` (its core imported by name, like conftest does);
SCENARIO is one of the functions in ``SCENARIOS``.  A scenario prints one JSON
line ``{"problems": [...], ...}`` and exits 0 when there were none, 1 when
there were.  A crash (segfault) or a hang shows up in the parent as a signal
exit code or a timeout: that is why these run in a subprocess.

Every actor (the main loop, each finalizer, each weakref callback) registers
only handlers of its own, and records what it did right after each call
returns.  Whatever order the actors interleave in, each handler's fate is
decided by its own actor's calls alone, so the final registry must match the
record exactly: nothing lost, nothing removed still there.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import random
import sys
import threading
import weakref
from typing import Any, Callable, Dict, List, Set

from support import import_core

from livekit_events._emitter import emitter_class_for

EVENTS = ("a", "b")


class Recorder:
    """What the actors did, and what the emitter must therefore hold."""

    def __init__(self) -> None:
        self.live: Dict[str, Dict[Any, str]] = {ev: {} for ev in EVENTS}  # handler -> kind
        self.uncertain: Set[Any] = set()  # registered during a remove_all_listeners
        self.fired: Dict[Any, int] = {}  # once handlers: how often they fired
        self.in_remove_all = 0
        self.ops = 0

    def registered(self, event: str, handler: Any, kind: str) -> None:
        self.ops += 1
        if self.in_remove_all:
            self.uncertain.add(handler)
        self.live[event][handler] = kind

    def removed(self, event: str, handler: Any) -> None:
        self.ops += 1
        if self.in_remove_all:
            self.uncertain.add(handler)
        self.live[event].pop(handler, None)


_serial = itertools.count()


def make_handler(record: Recorder, event: str, once: bool) -> Callable[..., None]:
    serial = next(_serial)

    def handler(*args: Any) -> None:
        if once:
            record.fired[handler] = record.fired.get(handler, 0) + 1
            record.live[event].pop(handler, None)

    handler.__qualname__ = f"h{serial}"
    return handler


def emitter_class(core: Any) -> Any:
    """The public class over ``core``; thousands of handlers are expected."""

    class Emitter(emitter_class_for(core.EmitterCore)):  # type: ignore[misc]
        max_listeners = None

    return Emitter


class WeakHolder:
    """The object of a weak registration."""

    def handler(self, *args: Any) -> None:
        pass


class Actor:
    """Registers, removes and emits with handlers of its own."""

    def __init__(self, record: Recorder, emitters: List[Any], rng: random.Random) -> None:
        self.record = record
        self.emitters = emitters
        self.rng = rng
        self.mine: List[Any] = []  # (emitter index, event, handler) of its on registrations
        self.kept: List[Any] = []  # the objects of its kept weak registrations

    def step(self) -> None:
        rng, record = self.rng, self.record
        which = rng.randrange(len(self.emitters))
        em = self.emitters[which]
        event = rng.choice(EVENTS)
        roll = rng.random()
        if roll < 0.06:
            # A weak registration: its object is kept (registered) or dropped
            # at once (its weakref callback removes it, re-entering the registry).
            holder = WeakHolder()
            em.on(event, holder.handler, weak=True)
            if rng.random() < 0.5:
                self.kept.append(holder)
                self.mine.append((which, event, holder.handler))
                if which == 0:
                    record.registered(event, holder.handler, "weak")
            return
        if roll < 0.4 or not self.mine:
            handler = make_handler(record, event, once=False)
            em.on(event, handler)
            self.mine.append((which, event, handler))
            if which == 0:
                record.registered(event, handler, "on")
        elif roll < 0.5:
            handler = make_handler(record, event, once=True)
            em.once(event, handler)
            if which == 0:
                record.registered(event, handler, "once")
        elif roll < 0.85:
            which, event, handler = self.mine.pop(rng.randrange(len(self.mine)))
            self.emitters[which].off(event, handler)
            if which == 0:
                record.removed(event, handler)
        elif roll < 0.99:
            em.emit(event, 1, 2)
        else:
            em.listeners(event)
            em.listener_count(event)
            em.event_names()


def _check(em: Any, record: Recorder) -> List[str]:
    problems: List[str] = []
    for event in EVENTS:
        listeners = em.listeners(event)
        if len(listeners) != len(set(listeners)):
            problems.append(f"{event}: duplicate listeners")
        if em.listener_count(event) != len(listeners):
            problems.append(f"{event}: listener_count {em.listener_count(event)} != {len(listeners)}")
        got = set(listeners)
        want = {h for h in record.live[event] if h not in record.uncertain}
        lost = want - got
        lingering = {h for h in got - want if h not in record.uncertain}
        if lost:
            problems.append(f"{event}: {len(lost)} registrations lost")
        if lingering:
            problems.append(f"{event}: {len(lingering)} removed handlers still registered")
        if (event in em.event_names()) != bool(listeners):
            problems.append(f"{event}: event_names disagrees with listeners")
    twice = [h for h, n in record.fired.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} once handlers fired more than once")
    return problems


def finalizers(core: Any, rounds: int) -> Dict[str, Any]:
    """GC at every allocation; finalizers and weakref callbacks that call
    on/once/off/emit/remove_all_listeners on the same emitter (and another)
    while the main loop does the same."""
    EventEmitter = emitter_class(core)
    em, other = EventEmitter(), EventEmitter()
    record = Recorder()
    rng = random.Random(int(os.environ.get("SEED", "1")))
    emitters = [em, other]
    main = Actor(record, emitters, rng)
    # Filler handlers: more than 20 on the event (the indexed registry).
    for event in EVENTS:
        for _ in range(25):
            handler = make_handler(record, event, once=False)
            em.on(event, handler)
            main.mine.append((0, event, handler))
            record.registered(event, handler, "on")

    budget = [rounds * 4]

    class Garbage:
        """Lives in a reference cycle; acts from __del__ when collected, and
        leaves new garbage behind, so that there is always some for the next
        collection: whatever allocation starts one (those inside registry
        operations included) runs finalizers."""

        def __init__(self) -> None:
            self.cycle = self
            self.actor = Actor(record, emitters, random.Random(rng.random()))

        def __del__(self) -> None:
            for _ in range(2):
                self.actor.step()
            if budget[0] > 0:
                budget[0] -= 1
                Garbage()

    actors: List[Actor] = []

    def weak_callback_actor() -> Callable[[Any], None]:
        actor = Actor(record, emitters, random.Random(rng.random()))
        actors.append(actor)
        return lambda ref: actor.step()

    refs: List[Any] = []
    old = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        for i in range(rounds):
            Garbage()
            target = Garbage()
            refs.append(weakref.ref(target, weak_callback_actor()))
            del target
            main.step()
            if i % 97 == 0:
                record.in_remove_all += 1
                event = rng.choice(EVENTS)
                em.remove_all_listeners(event)
                record.in_remove_all -= 1
                for handler in list(record.live[event]):
                    record.removed(event, handler)
                main.mine = [m for m in main.mine if not (m[0] == 0 and m[1] == event)]
        gc.collect()
    finally:
        gc.set_threshold(*old)
    gc.disable()
    problems = _check(em, record)
    return {"problems": problems, "ops": record.ops}


def unsubscribe_in_del(core: Any, rounds: int) -> Dict[str, Any]:
    """Objects in cycles unsubscribe in __del__ while the
    app rotates its own handlers (on new, off old) on an event with more than
    20 handlers.  Default GC thresholds."""
    EventEmitter = emitter_class(core)
    em = EventEmitter()
    record = Recorder()

    class Subscriber:
        def __init__(self) -> None:
            self.cycle = self
            self.handler = make_handler(record, "a", once=False)
            em.on("a", self.handler)
            record.registered("a", self.handler, "on")

        def __del__(self) -> None:
            em.off("a", self.handler)
            record.removed("a", self.handler)

    own = [make_handler(record, "a", once=False) for _ in range(30)]
    for handler in own:
        em.on("a", handler)
        record.registered("a", handler, "on")
    for i in range(rounds):
        Subscriber()
        fresh = make_handler(record, "a", once=False)
        em.on("a", fresh)
        record.registered("a", fresh, "on")
        old = own.pop(0)
        em.off("a", old)
        record.removed("a", old)
        own.append(fresh)
        if i % 10 == 0:
            em.emit("a", i)
    gc.collect()
    gc.disable()
    return {"problems": _check(em, record), "ops": record.ops}


def lock_in_finalizer(core: Any, rounds: int) -> Dict[str, Any]:
    """A finalizer takes an application lock L; another thread holds L and
    calls on()/off() on the same emitter and on another one.  Must not hang
    (the parent's timeout catches a hang; a watchdog here reports it)."""
    EventEmitter = emitter_class(core)
    em, other = EventEmitter(), EventEmitter()
    # Re-entrant: the GC may run a finalizer in the thread that holds it.
    app_lock = threading.RLock()
    stop = threading.Event()
    counts = {"finalizers": 0, "locked_ops": 0}

    budget = [rounds * 50]

    class Garbage:
        """Takes the application lock when collected, and leaves new garbage
        behind so that the next collection (started by any allocation, those
        inside registry operations included) has some to finalize."""

        def __init__(self) -> None:
            self.cycle = self

        def __del__(self) -> None:
            with app_lock:
                counts["finalizers"] += 1
            if budget[0] > 0 and not stop.is_set():
                budget[0] -= 1
                Garbage()

    def churn() -> None:
        handlers = [make_handler(Recorder(), "a", once=False) for _ in range(30)]
        i = 0
        while not stop.is_set():
            Garbage()
            em.on("a", handlers[i % 30])
            em.off("a", handlers[(i + 7) % 30])
            i += 1

    def hold_lock_and_register() -> None:
        handler = make_handler(Recorder(), "a", once=False)
        while not stop.is_set():
            with app_lock:
                em.on("a", handler)
                em.off("a", handler)
                other.on("a", handler)
                other.off("a", handler)
                counts["locked_ops"] += 1

    old = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    threads = [threading.Thread(target=f, daemon=True) for f in (churn, hold_lock_and_register)]
    for t in threads:
        t.start()
    stop.wait(rounds / 1000)
    stop.set()
    for t in threads:
        t.join(10)
    gc.set_threshold(*old)
    if any(t.is_alive() for t in threads):
        print(json.dumps({"problems": ["deadlock: threads still blocked 10 s after stop"]}))
        sys.stdout.flush()
        os._exit(1)
    return {"problems": [], **counts}


def eq_and_hash(core: Any, rounds: int) -> Dict[str, Any]:
    """Callbacks whose __eq__ and __hash__ register, remove and emit on the
    same event, during on(), off() and dedupe."""
    EventEmitter = emitter_class(core)
    em = EventEmitter()
    record = Recorder()
    rng = random.Random(7)
    actor = Actor(record, [em], rng)

    class Meddler:
        """Hash collides with every other Meddler, so == runs on lookups."""

        def __init__(self) -> None:
            self.active = True

        def __call__(self, *args: Any) -> None:
            pass

        def __hash__(self) -> int:
            if self.active:
                actor.step()
            return 42

        def __eq__(self, other: object) -> bool:
            if self.active:
                actor.step()
            return self is other

    meddlers: List[Any] = []
    for _ in range(rounds):
        m = Meddler()
        em.on("a", m)
        record.registered("a", m, "on")
        meddlers.append(m)
        em.on("a", m)  # dedupe, with == running
        if rng.random() < 0.4:
            gone = meddlers.pop(rng.randrange(len(meddlers)))
            em.off("a", gone)
            record.removed("a", gone)
        actor.step()
    for m in meddlers:
        m.active = False
    return {"problems": _check(em, record), "ops": record.ops}


def eq_churn(core: Any, rounds: int) -> Dict[str, Any]:
    """A lookup whose every comparison changes the event: each __eq__ of a
    registered key registers a fresh function and removes the one before.
    Every lookup must end, comparing each registration about once (a lookup
    that started over whenever the registry moved never ended)."""
    EventEmitter = emitter_class(core)
    em = EventEmitter()
    churned: List[Any] = []
    comparisons = [0]
    armed = [False]

    class Colliding:
        def __call__(self, *args: Any) -> None:
            pass

        def __hash__(self) -> int:
            return 42

        def __eq__(self, other: object) -> bool:
            if armed[0]:
                comparisons[0] += 1
                fresh = make_handler(Recorder(), "a", once=False)
                em.on("a", fresh)
                if churned:
                    em.off("a", churned.pop())
                churned.append(fresh)
            return self is other

    problems: List[str] = []
    for keys in (8, 16, 64):
        em.remove_all_listeners("a")
        churned.clear()
        registered = [Colliding() for _ in range(keys)]
        for key in registered:
            em.on("a", key)
        for operation in ("on", "off"):
            comparisons[0] = 0
            armed[0] = True
            getattr(em, operation)("a", Colliding())
            armed[0] = False
            # About once each: the pure twin's off may go round twice, and a
            # dict's lookup starts over when its table is remade.
            if comparisons[0] > 4 * keys + 8:
                problems.append(f"{operation} against {keys} keys: {comparisons[0]} comparisons")
        if em.listeners("a")[:keys] != registered:
            problems.append(f"{keys} keys: registrations changed")
    return {"problems": problems, "ops": rounds}


def _listed_handler(*args: Any) -> None:
    """A picklable handler (module level) for the listings scenario."""


def listings(core: Any, rounds: int) -> Dict[str, Any]:
    """Finalizers register and remove whole events while the main loop lists
    the registry every way there is (event_names, _events, copy, deepcopy,
    pickle's __reduce_ex__, remove_all_listeners of every event): a collection started by an
    allocation in the middle of a listing changes the registry under it."""
    import copy
    import pickle

    EventEmitter = emitter_class(core)
    em, scratch = EventEmitter(), EventEmitter()
    for i in range(300):  # enough entries that a listing allocates mid-read
        em.on(f"base{i}", _listed_handler)
    serial = itertools.count()
    budget = [rounds * 4]
    listing_now, during = [0], [0]  # finalizers that ran in the middle of a listing

    class Garbage:
        def __init__(self) -> None:
            self.cycle = self

        def __del__(self) -> None:
            n = next(serial)
            during[0] += listing_now[0]
            em.on(f"new{n}", _listed_handler)
            scratch.on(f"new{n}", _listed_handler)
            if n % 3 == 0:
                em.remove_all_listeners(f"new{n - 3}")
            if budget[0] > 0:
                budget[0] -= 1
                Garbage()

    listings: List[Callable[[], Any]] = [
        em.event_names,
        lambda: em._events,
        lambda: copy.copy(em),
        lambda: copy.deepcopy(em),
        lambda: em.__reduce_ex__(pickle.HIGHEST_PROTOCOL),  # what pickle reads
        lambda: scratch.remove_all_listeners(),
    ]
    problems: List[str] = []
    old = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        for i in range(rounds):
            Garbage()
            listing = listings[i % len(listings)]
            listing_now[0] = 1
            try:
                listing()
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                problems.append(f"round {i}: {type(exc).__name__}: {exc}")
                if len(problems) > 5:
                    break
            finally:
                listing_now[0] = 0
        gc.collect()
    finally:
        gc.set_threshold(*old)
    gc.disable()
    names = em.event_names()
    if len(set(names)) != len(names) or any(not em.listeners(name) for name in names):
        problems.append("event_names() lists an event twice or one without handlers")
    return {"problems": problems, "ops": next(serial), "during": during[0]}


SCENARIOS = {
    f.__name__: f
    for f in (finalizers, unsubscribe_in_del, lock_in_finalizer, eq_and_hash, eq_churn, listings)
}


def main() -> None:
    core = import_core(sys.argv[1])
    scenario = SCENARIOS[sys.argv[2]]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    result = scenario(core, rounds)
    print(json.dumps(result))
    sys.stdout.flush()
    os._exit(1 if result["problems"] else 0)  # skip finalizers at shutdown


if __name__ == "__main__":
    main()
