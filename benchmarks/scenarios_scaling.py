"""Registration scaling: what one ``on`` or ``off`` costs with N
handlers already registered on one event, N = 10, 100, 1k, 30k, 100k.

Each scenario is one operation (``mode``) at one size:

* ``on``: register a new handler;
* ``off``: remove the oldest handler (the earliest registered);
* ``off-newest``: remove the newest handler (the latest registered);
* ``rotate``: register a new handler, then remove the oldest, as a media
  server does when participants come and go; times are per operation (half
  a pair).

``off`` removes the oldest because that is what steady churn does (the
handler registered longest ago is the one whose owner leaves), and because
it is the case a registry built on a list pays for in shifting; a registry
that scans a list from the front for the callable finds the oldest at once
but pays the whole scan for the newest, hence ``off-newest``.  A registry
with an index costs the same for both.

Every emitter keeps its handlers in a window over a pool of distinct
handlers (``_Ring``): half plain functions, half bound methods of distinct
``Subscriber`` objects, each ``on``/``off`` given a fresh bound method as
``em.on(event, self.on_event)`` does.  The timed body is a chunk of
operations read from a plan (``for f, h in plan: f(event, h)``); the
``prepare`` step, untimed, first undoes the last chunk's change of size
(``on`` chunks are followed by ``off`` of as many oldest handlers, ``off``
chunks by ``on`` of as many new ones; ``rotate`` keeps the size), then plans
the next chunk.  So the size stays within 10 % of N: a chunk does at most
N // 10 operations (at most 100) on an emitter, and at small N, where that
is only a few, the chunk goes round-robin over several emitters of N
handlers each (64 emitters at N = 10, 7 at N = 100) so that a timed chunk
has at least 64 operations and the timer's own cost stays under a
nanosecond per operation.  Removed handlers go to the back of the spare
queue and new ones come from its front, so a handler comes back only after
N others (no re-adding of a callable just removed).

The emitters of one size are built once per implementation (timed:
``setup_s`` in results.json, the cost of registering the N handlers with
``on``) and shared by the four modes; each mode leaves them as it found them,
which ``check`` verifies against the implementation's own list of handlers
(before timing, and after).  The floor runs the same chunk loop with
``dict.get(event, handler)`` (a C method taking the same two arguments) in
place of ``on``/``off``: the cost of the loop and of one call, which no
registry can go below.
"""

from __future__ import annotations

import collections
import gc
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from implementations import Adapter
from scenarios import EVENT, Case, Scenario, Skip, Subscriber, handlers, register

__all__ = ("MODES", "SIZES", "layout", "release", "size_label")

SIZES = (10, 100, 1000, 30000, 100000)
MODES = ("on", "off", "off-newest", "rotate")

#: At least this many timed operations per chunk (over several emitters at small N).
MIN_OPS_PER_CHUNK = 64
#: At most this many operations per emitter per chunk (and at most N // 10).
MAX_OPS_PER_EMITTER = 100

_TITLES = {
    "on": "on of a new handler, {n} already registered on the event",
    "off": "off of the oldest of {n} handlers",
    "off-newest": "off of the newest of {n} handlers",
    "rotate": "rotation at {n} handlers: on a new one, off the oldest (per operation)",
}


def size_label(n: int) -> str:
    """10, 100, 1k, 30k, 100k."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def layout(n: int) -> Tuple[int, int]:
    """(emitters, operations per emitter per chunk) at size ``n``."""
    per_emitter = max(1, min(n // 10, MAX_OPS_PER_EMITTER))
    emitters = -(-MIN_OPS_PER_CHUNK // per_emitter)
    return emitters, per_emitter


def handler_of(item: Any) -> Callable[..., Any]:
    """The callable to pass for a pool item: a function, or a fresh bound method."""
    return item.on_event if type(item) is Subscriber else item


def _pool(n: int, spare: int) -> List[Any]:
    """``n + spare`` distinct handlers taking one argument: functions and subscribers."""
    functions = iter(handlers((n + spare + 1) // 2, 1))
    return [next(functions) if i % 2 == 0 else Subscriber() for i in range(n + spare)]


Call = Tuple[Callable[..., Any], Tuple[Any, ...], Dict[str, Any]]


def _call(op: Call, item: Any) -> None:
    fn, prefix, keywords = op
    fn(*prefix, handler_of(item), **keywords)


class _Ring:
    """One emitter: its registered handlers (oldest first) and its spares."""

    __slots__ = ("emitter", "on", "off", "registered", "spare")

    def __init__(self, adapter: Adapter, pool: List[Any], n: int) -> None:
        self.emitter: Any = adapter.new({EVENT: 1})
        if hasattr(self.emitter, "set_max_listeners"):
            # Tens of thousands of handlers on one event are the point here:
            # no listener-leak warning (its check is paid either way).
            self.emitter.set_max_listeners(None)
        self.on: Any = adapter.op(self.emitter, EVENT, "on")
        self.off: Any = adapter.op(self.emitter, EVENT, "off")
        self.registered: Deque[Any] = collections.deque(pool[:n])
        self.spare: Deque[Any] = collections.deque(pool[n:])


class _Fixture:
    """The emitters of one implementation at one size, shared by the modes."""

    def __init__(self, adapter: Adapter, pools: List[List[Any]], n: int) -> None:
        self.adapter = adapter
        self.n = n
        self.per_emitter = layout(n)[1]
        self.rings = [_Ring(adapter, pool, n) for pool in pools]
        started = time.perf_counter()
        for ring in self.rings:
            on = ring.on
            for item in ring.registered:
                _call(on, item)
        self.setup_s = time.perf_counter() - started
        #: Brings the bookkeeping in line with the last chunk planned (which ran).
        self._pending: Optional[Callable[[], None]] = None

    def settle(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending()

    def verify(self) -> Optional[str]:
        """Settle, then compare each emitter's handlers with the bookkeeping."""
        self.settle()
        for i, ring in enumerate(self.rings):
            actual = self.adapter.listeners(ring.emitter, EVENT)
            expected = [handler_of(item) for item in ring.registered]
            if len(actual) != len(expected):
                return f"emitter {i} has {len(actual)} handlers, expected {len(expected)}"
            if actual != expected:
                return f"emitter {i}'s handlers are not the {len(expected)} expected, in order"
        return None

    def plan(self, mode: str) -> List[Tuple[Any, ...]]:
        """The next chunk's operations; sets what settle() will do after it ran."""
        k = self.per_emitter
        rings = self.rings
        if mode == "on":
            moved = [[ring.spare[j] for j in range(k)] for ring in rings]
            entries = [
                (ring.on[0], handler_of(items[j]))
                for j in range(k)
                for ring, items in zip(rings, moved)
            ]

            def settle() -> None:
                for ring, items in zip(rings, moved):
                    for _ in items:
                        ring.spare.popleft()
                    ring.registered.extend(items)
                    for _ in items:  # back to n: remove as many of the oldest
                        old = ring.registered.popleft()
                        _call(ring.off, old)
                        ring.spare.append(old)

        elif mode in ("off", "off-newest"):
            newest = mode == "off-newest"
            moved = [
                [ring.registered[-1 - j] if newest else ring.registered[j] for j in range(k)]
                for ring in rings
            ]
            entries = [
                (ring.off[0], handler_of(items[j]))
                for j in range(k)
                for ring, items in zip(rings, moved)
            ]

            def settle() -> None:
                for ring, items in zip(rings, moved):
                    for _ in items:
                        if newest:
                            ring.registered.pop()
                        else:
                            ring.registered.popleft()
                    ring.spare.extend(items)
                    for _ in items:  # back to n: add as many new handlers
                        new = ring.spare.popleft()
                        _call(ring.on, new)
                        ring.registered.append(new)

        elif mode == "rotate":
            added = [[ring.spare[j] for j in range(k)] for ring in rings]
            removed = [[ring.registered[j] for j in range(k)] for ring in rings]
            entries = [
                (ring.on[0], handler_of(new[j]), ring.off[0], handler_of(old[j]))
                for j in range(k)
                for ring, new, old in zip(rings, added, removed)
            ]

            def settle() -> None:
                for ring, new, old in zip(rings, added, removed):
                    for _ in new:
                        ring.spare.popleft()
                        ring.registered.popleft()
                    ring.registered.extend(new)
                    ring.spare.extend(old)

        else:
            raise ValueError(f"unknown mode {mode!r}")
        self._pending = settle
        return entries


_cache: Dict[str, Any] = {"size": None, "pools": None, "fixtures": {}}


def release() -> None:
    """Drop the emitters and handlers built so far."""
    fixtures: Dict[str, _Fixture] = _cache["fixtures"]
    pools = _cache["pools"]
    _cache.update(size=None, pools=None, fixtures={})
    if not fixtures:
        return
    # The emitters go first, while the handlers are still alive: were a
    # handler freed while an emitter still held a weak reference to it
    # (psygnal does, and its signals are in reference cycles, so only the
    # collector frees them), its callback would remove it, scanning the slots
    # each time (8 s for psygnal at 30k handlers).
    for fixture in fixtures.values():
        for ring in fixture.rings:
            ring.emitter = ring.on = ring.off = None
    gc.collect()
    del fixtures, pools


def _pools(n: int) -> List[List[Any]]:
    if _cache["size"] != n:
        # One size at a time: a new size drops the last one's emitters.
        release()
        emitters, per_emitter = layout(n)
        _cache["size"] = n
        _cache["pools"] = [_pool(n, max(n, 4 * per_emitter)) for _ in range(emitters)]
    pools: List[List[Any]] = _cache["pools"]
    return pools


def _fixture(adapter: Adapter, n: int) -> _Fixture:
    pools = _pools(n)
    fixtures: Dict[str, _Fixture] = _cache["fixtures"]
    if adapter.key not in fixtures:
        fixtures[adapter.key] = _Fixture(adapter, pools, n)
    return fixtures[adapter.key]


def _call_text(op: Call, fn: str, handler: str, tag: str) -> Tuple[str, Dict[str, Any]]:
    """``fn(<prefix>, handler, <keywords>)`` and the names it needs besides fn and handler."""
    _, prefix, keywords = op
    names: Dict[str, Any] = {}
    params = []
    for i, value in enumerate(prefix):
        names[f"{tag}_p{i}"] = value
        params.append(f"{tag}_p{i}")
    params.append(handler)
    for key, value in keywords.items():
        names[f"{tag}_k_{key}"] = value
        params.append(f"{key}={tag}_k_{key}")
    return f"{fn}({', '.join(params)})", names


def _body(mode: str, on: Call, off: Call) -> Tuple[str, Dict[str, Any]]:
    if mode == "rotate":
        on_text, names = _call_text(on, "f", "h", "on")
        off_text, off_names = _call_text(off, "g", "o", "off")
        names.update(off_names)
        return f"for f, h, g, o in plan:\n    {on_text}\n    {off_text}", names
    text, names = _call_text(on if mode == "on" else off, "f", "h", mode.replace("-", "_"))
    return f"for f, h in plan:\n    {text}", names


def _ops_per_entry(mode: str) -> int:
    return 2 if mode == "rotate" else 1


def _build(mode: str, n: int) -> Callable[[Adapter], Case]:
    def build(adapter: Adapter) -> Case:
        reason = adapter.skip_reason()
        if reason:
            raise Skip(reason)
        fixture = _fixture(adapter, n)
        ring = fixture.rings[0]
        body, names = _body(mode, ring.on, ring.off)
        plan: List[Tuple[Any, ...]] = []
        names["plan"] = plan

        def prepare() -> None:
            fixture.settle()
            plan[:] = fixture.plan(mode)

        def cleanup() -> None:
            problem = fixture.verify()
            if problem:
                _cache["fixtures"].pop(adapter.key, None)
                raise RuntimeError(f"scale-{mode}-{size_label(n)}/{adapter.key}: {problem}")

        emitters, per_emitter = layout(n)
        return Case(
            body=body,
            namespace=names,
            per_iteration=emitters * per_emitter * _ops_per_entry(mode),
            prepare=prepare,
            check=fixture.verify,
            cleanup=cleanup,
            info=dict(
                handlers=n,
                emitters=emitters,
                ops_per_chunk=emitters * per_emitter * _ops_per_entry(mode),
                setup_s=round(fixture.setup_s, 4),
            ),
        )

    return build


def _build_floor(mode: str, n: int) -> Callable[[Any], Case]:
    def build_floor(floor: Any) -> Case:
        emitters, per_emitter = layout(n)
        count = emitters * per_emitter
        items = _pool(count, 0)
        call = {}.get  # a C method taking (event, handler), like on/off
        op: Call = (call, (EVENT,), {})
        body, names = _body(mode, op, op)
        if mode == "rotate":
            plan = [(call, handler_of(i), call, handler_of(i)) for i in items]
        else:
            plan = [(call, handler_of(i)) for i in items]
        names["plan"] = plan
        return Case(
            body=body,
            namespace=names,
            per_iteration=count * _ops_per_entry(mode),
            prepare=lambda: None,  # timed the same way as the implementations
            info=dict(handlers=n, emitters=emitters, ops_per_chunk=count * _ops_per_entry(mode)),
        )

    return build_floor


for _n in SIZES:
    for _mode in MODES:
        register(
            Scenario(
                f"scale-{_mode}-{size_label(_n)}",
                group="scaling",
                title=_TITLES[_mode].format(n=f"{_n:,}"),
                build=_build(_mode, _n),
                build_floor=_build_floor(_mode, _n),
                unit="op",
                params=dict(handlers=_n, mode=_mode),
                rounds=31,
                max_seconds=2.0,
            )
        )
