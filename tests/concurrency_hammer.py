"""Overlapping emits from many threads while others register and remove.

Run as a script (``python tests/concurrency_hammer.py --core compiled
--seconds 5``) it prints one JSON line and exits 0 when every check held;
tests/test_concurrency.py runs it in a subprocess with a timeout, so that a
crash or a hang fails the test instead of the run.

The threads, for ``--seconds``:

* ``--emitters`` threads emit ``"e"`` in a loop, counting their emits;
* a writer rotates handlers on ``"e"``: ``on`` a new one, ``off`` the
  oldest, over a pool of 64 callables;
* two threads register ``once`` handlers on ``"e"`` in a loop, each a fresh
  callable that counts its calls;
* one thread runs ``remove_all_listeners``/``on``/``emit`` on another event.

One handler is registered on ``"e"`` for the whole run.  The checks: it was
called once per emit (no call lost, none doubled); no once handler was
called more than once; nothing raised and no thread hung.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any, Dict, List

from support import CORE_MODULES, import_core


def run(core: str, seconds: float, emitters: int = 3) -> Dict[str, Any]:
    module = import_core(core)

    class Emitter(module.EmitterCore):  # type: ignore[name-defined, misc]
        pass

    em = Emitter()
    em.set_max_listeners(0)
    errors: List[str] = []
    stop = threading.Event()
    steady_calls = [0] * emitters
    emits = [0] * emitters
    local = threading.local()

    def steady(*_: Any) -> None:
        steady_calls[local.index] += 1  # (only the emitting threads emit "e")

    em.on("e", steady)

    def guard(body: Any) -> Any:
        def target(*args: Any) -> None:
            try:
                body(*args)
            except BaseException as exc:  # noqa: BLE001 - reported, then fails the run
                errors.append(f"{body.__name__}: {type(exc).__name__}: {exc}")
                stop.set()

        return target

    @guard
    def emitting(index: int) -> None:
        local.index = index
        n = 0
        while not stop.is_set():
            for _ in range(50):
                em.emit("e", 1, 2)
            n += 50
        emits[index] = n

    pool = [(lambda k: lambda a=None, b=None: None)(k) for k in range(64)]

    @guard
    def rotating() -> None:
        registered: List[Any] = []
        k = 0
        while not stop.is_set():
            callback = pool[k % len(pool)]
            k += 1
            em.on("e", callback)
            registered.append(callback)
            if len(registered) > 32:
                em.off("e", registered.pop(0))

    once_calls: Dict[int, int] = {}
    once_lock = threading.Lock()
    once_made = [0]

    def make_once(key: int) -> Any:
        def fire(a: Any = None) -> None:
            with once_lock:
                once_calls[key] = once_calls.get(key, 0) + 1

        return fire

    @guard
    def registering_once(base: int) -> None:
        k = 0
        while not stop.is_set():
            key = base + k
            k += 1

            em.once("e", make_once(key))
            with once_lock:
                once_made[0] += 1
            if k % 64 == 0:
                time.sleep(0)

    @guard
    def churning_other() -> None:
        seen = [0]

        def other(*_: Any) -> None:
            seen[0] += 1

        while not stop.is_set():
            em.on("other", other)
            em.emit("other", 1)
            em.remove_all_listeners("other")

    threads = [threading.Thread(target=emitting, args=(i,)) for i in range(emitters)]
    threads += [threading.Thread(target=rotating)]
    threads += [threading.Thread(target=registering_once, args=(b,)) for b in (0, 1 << 40)]
    threads += [threading.Thread(target=churning_other)]
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    hung = [t.name for t in threads if t.is_alive()]
    fired_twice = sum(1 for n in once_calls.values() if n > 1)
    lost = [emits[i] - steady_calls[i] for i in range(emitters)]
    return {
        "core": core,
        "gil_enabled": getattr(sys, "_is_gil_enabled", lambda: True)(),
        "emits": sum(emits),
        "steady_calls_lost": sum(lost),
        "once_registered": once_made[0],
        "once_fired": len(once_calls),
        "once_fired_twice": fired_twice,
        "errors": errors[:5],
        "hung": hung,
        "ok": not errors and not hung and fired_twice == 0 and not any(lost),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", choices=sorted(CORE_MODULES), required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--emitters", type=int, default=3)
    args = parser.parse_args()
    result = run(args.core, args.seconds, args.emitters)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
