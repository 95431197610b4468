"""A registry workload for scripts/valgrind.sh: every path of the rebuilt
registry, with assertions, small enough to run under memcheck.

    python scripts/valgrind_registry_workload.py [--impl compiled|pure] [--scale N]

Exercises: the index (events past 8 handlers), compaction with the index
moved in place and rebuilt, removals during emit (own turn, ahead, behind,
remove_all), once claims in nested emits, once through a subclass's on/off
(the wrapper), dedupe after compaction, copy/deepcopy/pickle, __eq__ and
__hash__ that change the registry mid-lookup, GC finalizers at threshold 1
re-entering every operation, listeners()/_events during emit, a handler that
raises, and threads.  Exit status 0 when every check held.
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib
import logging
import pickle
import random
import sys
import threading
from typing import Any, Callable, List

from livekit_events._emitter import emitter_class_for

logging.getLogger("livekit.events").addHandler(logging.NullHandler())
logging.getLogger("livekit.events").propagate = False

failures: List[str] = []


def check(cond: bool, what: str) -> None:
    if not cond:
        failures.append(what)
        print("CHECK FAILED:", what, flush=True)


class Counter:
    """A picklable callable with dict-key equality by name (value hash)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    def __call__(self, *args: Any) -> None:
        self.calls += 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Counter) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


def fresh(n: int) -> List[Callable[..., None]]:
    out = []
    for _ in range(n):
        def handler(*args: Any) -> None:
            pass
        out.append(handler)
    return out


def index_and_compaction(EE: Any, scale: int) -> None:
    em = EE()
    hs = fresh(scale)
    for h in hs:
        em.on("e", h)
    rng = random.Random(1)
    order = list(range(scale))
    rng.shuffle(order)
    gone = set(order[: scale * 3 // 5])  # past dead >= live: compaction, index moved
    for i in order[: scale * 3 // 5]:
        em.off("e", hs[i])
    survivors = [h for i, h in enumerate(hs) if i not in gone]
    check(em.listeners("e") == survivors, "order after burst")
    for h in survivors:
        em.on("e", h)  # dedupe through the moved index
    check(em.listener_count("e") == len(survivors), "dedupe after compaction")
    for h in survivors[: len(survivors) - 4]:
        em.off("e", h)  # down to a small event: the index is dropped
    check(em.listeners("e") == survivors[-4:], "shrink to small")
    for h in hs:
        em.on("e", h)  # grows again: a new index, the capacity doubles
    check(em.listener_count("e") == scale, "regrow")
    em.remove_all_listeners("e")
    check(em.listeners("e") == [], "remove_all")
    em.emit("e", 1)


def removal_during_emit(EE: Any, scale: int) -> None:
    em = EE()
    calls: List[int] = []
    hs: List[Any] = []
    nested = [False]

    def make(i: int) -> Callable[..., None]:
        def h(*args: Any) -> None:
            calls.append(i)
            if i == 3:
                for j in range(5, scale, 2):
                    em.off("e", hs[j])  # ahead of the walk: never called
            elif i == 6:
                em.off("e", hs[0])  # behind
                em.off("e", hs[6])  # itself
                em.listeners("e")  # a walk inside the walk
                dict(em._events)
            elif i == 10 and not nested[0]:
                nested[0] = True
                em.emit("e")  # nested: sees the removals
                nested[0] = False
            elif i == 14:
                em.remove_all_listeners("e")
        return h

    hs = [make(i) for i in range(scale)]
    for h in hs:
        em.on("e", h)
    em.emit("e")
    # The nested emit at 10 ran remove_all at 14: the outer walk stops at 10.
    expected = [0, 1, 2, 3, 4, 6, 8, 10, 1, 2, 3, 4, 8, 10, 12, 14]
    check(calls == expected, f"removal during emit: {calls[:20]}")
    check(em.listener_count("e") == 0, "remove_all in emit")
    for h in hs:
        em.on("e", h)
    check(em.listener_count("e") == scale, "re-register after remove_all in emit")


def once_claims(EE: Any, scale: int) -> None:
    em = EE()
    fired: List[int] = []
    depth = [0]

    def make(i: int) -> Callable[..., None]:
        def h(*args: Any) -> None:
            fired.append(i)
            if depth[0] < 20:
                depth[0] += 1
                em.emit("o")  # nested: the once registrations are claimed already
                em.once("o", make(i + 1000))
                depth[0] -= 1
        return h

    for i in range(scale):
        em.once("o", make(i))
    em.emit("o")
    check(len(fired) == len(set(fired)), "a once registration fired twice")
    left = em.listener_count("o")
    em.emit("o")
    check(em.listener_count("o") <= left, "once emits grow")
    f = Counter("same")
    for _ in range(50):
        em.once("p", f)
    em.on("p", f)
    em.off("p", f)
    check(em.listener_count("p") == 0, "off removes on and every once")


def subclass_wrappers(EE: Any, scale: int) -> None:
    seen: List[Any] = []

    class Forwarding(EE):  # type: ignore[misc,valid-type]
        def on(self, event: Any, callback: Any = None) -> Any:
            seen.append(("on", callback))
            return super().on(event, callback)

        def off(self, event: Any, callback: Any) -> None:
            seen.append(("off", callback))
            super().off(event, callback)

    # Module level, so that pickle finds it.
    Forwarding.__qualname__ = Forwarding.__name__ = "Forwarding"
    globals()["Forwarding"] = Forwarding
    em = Forwarding()
    hs = [Counter(f"w{i}") for i in range(scale)]
    for h in hs:
        em.once("w", h)  # a wrapper each, through self.on
    em.off("w", hs[0])  # by the callback
    em.emit("w", 1)
    em.emit("w", 1)
    check(hs[0].calls == 0 and all(h.calls == 1 for h in hs[1:]), "wrapper once semantics")
    check(em.listener_count("w") == 0, "wrappers removed")
    for h in hs[:10]:
        em.once("w", h)
    clone = copy.deepcopy(em)
    check(clone.listener_count("w") == 10, "deepcopy keeps wrappers")
    restored = pickle.loads(pickle.dumps(em))
    check(restored.listener_count("w") == 10, "pickle keeps wrappers")
    restored.emit("w")
    check(restored.listener_count("w") == 0, "restored wrappers fire once")


def copy_and_pickle(EE: Any, scale: int) -> None:
    Plain = type("Plain", (EE,), {"__module__": __name__})  # module level: picklable
    globals()["Plain"] = Plain
    em = Plain()
    hs = [Counter(f"c{i}") for i in range(scale)]
    for i, h in enumerate(hs):
        (em.once if i % 3 == 0 else em.on)("e" if i % 2 else "f", h)
    for twin in (copy.copy(em), copy.deepcopy(em), pickle.loads(pickle.dumps(em))):
        check(twin.event_names() == em.event_names(), "copy event order")
        check(twin.listeners("e") == em.listeners("e"), "copy listeners")
        twin.emit("e", 1)
        twin.remove_all_listeners()
    check(em.listener_count("e") + em.listener_count("f") == scale, "source untouched")


def reentrant_eq(EE: Any, scale: int) -> None:
    em = EE()
    others = fresh(scale)
    budget = [scale * 4]

    class Meddler:
        def __init__(self, i: int) -> None:
            self.i = i

        def __call__(self, *args: Any) -> None:
            pass

        def __hash__(self) -> int:
            return 7  # every Meddler collides: lookups compare

        def __eq__(self, other: object) -> bool:
            if budget[0] > 0:
                budget[0] -= 1
                # Bounded churn per comparison (one registry change), so that
                # lookups still finish.
                action = budget[0] % 4
                h = others[budget[0] % len(others)]
                if action == 0:
                    em.on("m", h)
                elif action == 1:
                    em.off("m", h)
                elif action == 2:
                    em.emit("m")
                else:
                    em.listeners("m")
            return self is other

    ms = [Meddler(i) for i in range(12)]
    for m in ms:
        em.on("m", m)
        em.on("m", m)
    for m in ms[::2]:
        em.off("m", m)
    live = em.listeners("m")
    check(all(m not in live for m in ms[::2]), "removed meddler lingers")
    check(all(m in live for m in ms[1::2]), "meddler lost")
    check(len([x for x in live if isinstance(x, Meddler)]) == 6, "meddler duplicated")


def gc_finalizers(EE: Any, scale: int) -> None:
    em, other = EE(), EE()
    hs = fresh(40)
    for h in hs:
        em.on("g", h)
    rng = random.Random(3)
    budget = [scale * 3]

    class Garbage:
        def __init__(self) -> None:
            self.cycle = self

        def __del__(self) -> None:
            target = em if rng.random() < 0.7 else other
            h = rng.choice(hs)
            x = rng.random()
            if x < 0.3:
                target.on("g", h)
            elif x < 0.45:
                target.once("g", h)
            elif x < 0.8:
                target.off("g", h)
            elif x < 0.9:
                target.emit("g")
            elif x < 0.93:
                target.remove_all_listeners("g")
            else:
                target.listeners("g")
            if budget[0] > 0:
                budget[0] -= 1
                Garbage()

    old = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        for i in range(scale):
            Garbage()
            h = rng.choice(hs)
            em.on("g", h)
            em.emit("g", i)
            em.off("g", rng.choice(hs))
            em.once("g", h)
    finally:
        gc.set_threshold(*old)
    gc.collect()
    for e in (em, other):
        got = e.listeners("g")
        check(e.listener_count("g") == len(got), "count vs listeners after GC torture")


def raising_and_threads(EE: Any, scale: int) -> None:
    em = EE()

    def boom(*args: Any) -> None:
        raise ValueError("boom")

    em.on("r", boom)
    for _ in range(5):
        em.emit("r", 1)
    stop = threading.Event()
    errors: List[BaseException] = []

    def churn(seed: int) -> None:
        rng = random.Random(seed)
        mine = fresh(30)
        try:
            while not stop.is_set():
                h = rng.choice(mine)
                em.on("t", h)
                em.once("t", rng.choice(mine))
                em.emit("t", seed)
                em.off("t", rng.choice(mine))
        except BaseException as exc:  # pragma: no cover - reported
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(s,)) for s in range(3)]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    for t in threads:
        t.start()
    for _ in range(scale):
        em.emit("t")
        em.listeners("t")
    stop.set()
    for t in threads:
        t.join()
    sys.setswitchinterval(old)
    check(not errors, f"thread errors {errors[:1]}")
    check(em.listener_count("t") == len(em.listeners("t")), "threads: count vs listeners")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", default="compiled", choices=("compiled", "pure"))
    parser.add_argument("--scale", type=int, default=300)
    args = parser.parse_args()
    core = importlib.import_module(
        "livekit_events._core_c" if args.impl == "compiled" else "livekit_events._core_py"
    )
    EE = emitter_class_for(core.EmitterCore)
    for step in (index_and_compaction, removal_during_emit, once_claims, subclass_wrappers,
                 copy_and_pickle, reentrant_eq, gc_finalizers, raising_and_threads):
        step(EE, args.scale)
        print(f"{step.__name__}: done", flush=True)
    gc.collect()
    print("failures:", failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
