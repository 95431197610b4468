# Compiled core of livekit_events: the registry and the hot path of emit.  Its
# pure-Python twin is _core_py.py (same names, same behaviour).  Everything
# cold (signature reading, validation, logging, copy/pickle) is in _common.py.
#
# The registry.  `EmitterCore.registry` maps an event to a `Handlers` object
# (lke_handlers, in _registry.h): its current table, an array of pointers to
# registration slots (callback, key hash, arity, flags) in call order, the
# removed ones included until compaction, plus, past LKE_SMALL live
# registrations, an open-addressing index of slot positions by key hash.  on,
# once and off are O(1) amortised: a lookup is a probe (or a scan of at most a
# few slots), an append is amortised by doubling, and dead slots are compacted
# in bulk.
#
# Rules.  Each one is what makes a class of bug impossible; the names in
# brackets are the code that keeps it.
#
# 1. No lock is ever held while Python code runs, none is shared between
#    emitters, and emit takes none.  With the GIL there is no lock at all; on
#    free-threaded CPython a critical section on the Handlers (per event,
#    released whenever the thread blocks, so it can't deadlock) serialises
#    the writers: each commit, and the claim of a once slot [cython.
#    critical_section, LKE_BEGIN_CRITICAL_SECTION].  So a finalizer that
#    takes an application lock can't deadlock with on().
# 2. Python code can run in a registry operation only in its "prepare" part:
#    hashing a key or an event, comparing keys (__eq__), allocating an object
#    (which can start the GC on CPython <= 3.11, and so finalizers and weakref
#    callbacks), releasing a reference.  Each operation first prepares, then
#    commits: a commit reads and writes the Handlers with C code that runs no
#    Python code (raw allocations only, which never start the GC)
#    [lke_append, lke_kill, lke_compact, lke_index_*, lke_reclaim].
# 3. Whatever was read before Python code ran is read again after.  Slots
#    never move while a lookup compares keys (`lookups` defers compaction),
#    so a position names one registration for the whole lookup.  After a
#    comparison the lookup goes on from where it was, re-reading the table, as
#    CPython's dict lookup does: an append lands past the scan, an index entry
#    in the first EMPTY place of its probe chain (removals leave DUMMY; while
#    a lookup compares, no insert reuses one), so neither is missed.  When the
#    index itself is remade (`layout`), the lookup probes the new one,
#    skipping the positions it already compared: each registration is
#    compared at most once, so a lookup always ends however the comparisons
#    churn the event [_find_on, _find_all].  A match is re-checked for
#    liveness after the comparison and by the commit.
# 4. References are dropped only after the commit, when the registry is whole
#    again (their finalizers may re-enter) [the `release` buffers].
# 5. A walk (emit, listeners) reads the table that was current when it
#    started, up to the count published then: the snapshot.  Tables are never
#    changed in place except by appends past that count; growth and
#    compaction publish a new table and retire the old one.  A slot is shared
#    by all tables, so a removal (flag LKE_DEAD) is seen at once by every
#    walk, which skips it [lke_publish, lke_walk_impl].
# 6. A once registration is claimed by flagging it dead in a commit, before
#    its callback runs: exactly one walk, in any nesting or thread, calls it
#    [lke_claim].
# 7. Nothing that arrives from Python is trusted: methods are method
#    descriptors (binding=False), which check the type of `self`; arity
#    values are range-checked [_checked_arity]; a registry entry must be a
#    Handlers [_handlers_of]; a OnceWrapper made without its constructor is
#    refused.
# 8. Reclamation never waits for a moment when no walk runs.  Every append
#    and removal bumps the Handlers' stamp, and a slot keeps both stamps
#    (born, died); a walk records its start.  A walk can call a slot only if
#    born <= start < died, so a removed slot's callback is released as soon
#    as no walk in progress has such a start: at once when none does, else
#    when the last of them ends.  Walks that start later hold nothing back,
#    however long walks overlap.  A retired table, and the slots compaction
#    dropped with it, are freed once no walk reads it (oldest first).  So
#    what a removal keeps alive is bounded by the walks that could still call
#    it [lke_retire_slot, lke_reclaim, lke_walk_begin/lke_walk_end].
#
# Free threading.  setup.py builds this module with Cython's
# `freethreading_compatible` directive (the GIL stays off when it is
# imported).  The registry dict locks itself; writers are serialised by rule
# 1; a walk reads tables and slots without a lock, and writes only its own
# thread's record of walks (lke_thread in _registry.h, which states the
# protocol that makes rule 8 hold against concurrent walks: a fence on each
# side, and a generation count on each record).  Slot fields a walk reads
# are immutable once published, but the gate and the flags, which are atomic.

cimport cython
from cpython.object cimport PyCFunction, PyMethodDef, PyObject, PyTypeObject
from libc.stdint cimport int32_t, uint32_t, int64_t
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE

import keyword as _keyword
import types as _types
import weakref as _weakref

from ._common import (
    ALL_ARGUMENTS, DEFAULT_MAX_LISTENERS, arity_error, checked_max_listeners, copy_emitter,
    default_instance_state, log_handler_failure, reduce_emitter, register_slow_threshold_setter,
    registration_decorator, report_slow_handler, restore_instance_state, warn_listener_leak)
from ._common import MAX_EMIT_NESTING, nesting_error
from ._common import describe_callback as _describe_slow
from ._common import parameter_empty as _parameter_empty

cdef extern from "Python.h":
    ctypedef struct PyCFunctionObject:
        PyMethodDef *m_ml
        PyObject *m_self
    ctypedef struct PyMethodDescrObject:
        PyMethodDef *d_method
    const Py_ssize_t PY_SSIZE_T_MAX
    int PyErr_ExceptionMatches(PyObject *exc)
    PyObject *PyExc_Exception
    void Py_DECREF_ptr "Py_DECREF"(PyObject *obj)
    const int METH_FASTCALL
    const int METH_KEYWORDS
    object PyDescr_NewMethod(PyTypeObject *type, PyMethodDef *meth)
    PyTypeObject PyMethod_Type
    bint PyCFunction_Check(object o)
    PyTypeObject *Py_TYPE_ptr "Py_TYPE"(PyObject *obj)
    int PyType_Ready(PyTypeObject *type) except -1
    int PyObject_RichCompareBool(PyObject *a, PyObject *b, int op) except -1
    int Py_EQ
    PyObject **PySequence_Fast_ITEMS(object o)
    list PyDict_Items(object d)

cdef extern from "_compat.h":
    object lke_fetch_exception()

__all__ = ("EmitterCore", "OnceWrapper", "describe_callback", "emit_method")


# ---------------------------------------------------------------------------
# Reading a callback's arity: the fast path.
#
# _common.describe_callback (the slow path) asks inspect: the async checks
# (inspect.iscoroutinefunction / isasyncgenfunction, markcoroutinefunction's
# marker on 3.12+, asyncio's legacy `_is_coroutine`) and inspect.signature.
# For a plain function, and a bound method of one, what they read is the
# function's __code__ (argument counts, flags, parameter names), __defaults__
# and __kwdefaults__, and attributes that can only live in its __dict__
# (__wrapped__, __signature__, __text_signature__, __partialmethod__, the
# markers).  lke_describe_fast reads those directly and answers only when the
# slow path could not answer differently; otherwise (returns 0) the slow path
# runs.  Its twin in _core_py.py applies the same rules; both are checked
# against the slow path by tests/test_arity_fast_path.py.  The slow path
# answers when:
#
# * the callable is anything but a function or a method of a function (both
#   types are final), or the function's __dict__ is not empty;
# * its code is async or marked by types.coroutine (CO_COROUTINE,
#   CO_ASYNC_GENERATOR, CO_ITERABLE_COROUTINE);
# * a method's function has no positional parameter (inspect raises);
# * a parameter name is not an identifier, is a keyword, or repeats
#   (hand-made code objects: inspect renames, rejects or merges them);
# * __defaults__ is not a tuple, is longer than the positional parameters,
#   or holds inspect.Parameter.empty (inspect then counts differently);
# * there are keyword-only parameters and __kwdefaults__ is not a dict with
#   str keys only, or lacks one of them (the slow path raises TypeError);
# * 3.14+: the annotations are lazy and not yet evaluated (inspect evaluates
#   them, which runs code and may raise).
#
# The function's fields are read as its attribute getters read them (strong
# references, in a critical section on free-threaded builds); the code object
# and the defaults tuple are immutable.

cdef extern from "_arity.h":
    int lke_describe_fast(object callback, object empty, object keywords,
                          Py_ssize_t *accepted, Py_ssize_t *required) except -1

if ALL_ARGUMENTS != -1:
    raise ImportError("_common.ALL_ARGUMENTS must be -1 (lke_describe_fast returns it)")

# inspect.Parameter.empty, kept once inspect is imported (importing the
# package doesn't import it, nor does the fast path: _common.parameter_empty);
# until then _NO_EMPTY, which no default is.
cdef object _PARAMETER_EMPTY = None
cdef object _NO_EMPTY = object()
cdef object _KEYWORDS = frozenset(_keyword.kwlist)  # what inspect.Parameter rejects


cdef int _describe(object callback, Py_ssize_t *accepted, Py_ssize_t *required) except -1:
    global _PARAMETER_EMPTY
    cdef object empty = _PARAMETER_EMPTY
    if empty is None:
        empty = _parameter_empty()
        if empty is None:
            empty = _NO_EMPTY
        else:
            _PARAMETER_EMPTY = empty
    if not lke_describe_fast(callback, empty, _KEYWORDS, accepted, required):
        accepted[0], required[0] = _describe_slow(callback)
    return 0


def describe_callback(callback):
    """``_common.describe_callback(callback)``, read directly from ``__code__``
    for plain functions and their bound methods (the common callbacks)."""
    cdef Py_ssize_t accepted, required
    _describe(callback, &accepted, &required)
    return accepted, required


cdef extern from "_compat.h":
    # Every registry lookup uses this.  `d` is passed as PyObject* so that
    # Cython doesn't incref the attribute.
    object lke_dict_get(PyObject *d, object key, object dflt)


# ---------------------------------------------------------------------------
# The registry storage: one `Handlers` per event, in _registry.h (read the
# rules at the top of this file and the header's own comment).

cdef extern from "_registry.h":
    ctypedef struct lke_entry:
        int32_t pos
        uint32_t tag
    uint32_t LKE_TAG(Py_hash_t hash) noexcept
    ctypedef struct lke_slot:
        PyObject *callback
        Py_hash_t hash
        int32_t accepted
        int32_t required
        uint32_t flags
    ctypedef struct lke_table:
        int32_t count
        lke_slot **slots
    ctypedef struct lke_walker:
        pass
    ctypedef struct lke_handlers:
        lke_table *table
        lke_entry *index
        uint32_t index_mask
        int32_t live
        int32_t lookups
        int32_t warned
        uint32_t layout
        int64_t since
    ctypedef struct lke_release:
        PyObject **items
        Py_ssize_t n
    PyTypeObject lke_handlers_type
    const uint32_t LKE_DEAD, LKE_ONCE, LKE_WRAPPER, LKE_METHOD, LKE_WEAK, LKE_SPECIAL
    const int32_t LKE_ALL
    object lke_handlers_new()
    uint32_t lke_home(lke_handlers *h, Py_hash_t hash) noexcept
    int lke_append(lke_handlers *h, PyObject *callback, Py_hash_t hash,
                   int32_t accepted, int32_t required, uint32_t flags) except -1
    void lke_kill(lke_handlers *h, int32_t pos, lke_release *r) noexcept
    void lke_kill_all(lke_handlers *h, lke_release *r) noexcept
    void lke_release_init(lke_release *r) noexcept
    void lke_release_all(lke_release *r) noexcept
    void lke_reclaim(lke_handlers *h, lke_release *r) noexcept
    void lke_maybe_compact(lke_handlers *h, lke_release *r) noexcept
    int lke_walk_begin(lke_handlers *h, lke_walker *local, lke_walker **record,
                       lke_table **table, Py_ssize_t *count) except -1
    int lke_walk_end(lke_handlers *h, lke_walker *record) noexcept
    uint32_t lke_flags "LKE_LOAD"(uint32_t *flags) noexcept
    void lke_handlers_debug(lke_handlers *h, Py_ssize_t *dead, Py_ssize_t *waiting,
                            Py_ssize_t *retired) noexcept

PyType_Ready(&lke_handlers_type)


cdef inline lke_slot *_slot_at(lke_handlers *h, Py_ssize_t pos) noexcept:
    # The slot at `pos` of the current table (writers and lookups only).
    return h.table.slots[pos]


cdef inline Py_ssize_t _count(lke_handlers *h) noexcept:
    return 0 if h.table is NULL else h.table.count


cdef void _reclaim(object handlers) noexcept:
    # After a walk: free what no walk in progress needs (rule 8).
    cdef lke_release release
    lke_release_init(&release)
    with cython.critical_section(handlers):
        lke_reclaim(_h(handlers), &release)
    lke_release_all(&release)


cdef int _end_walk(object handlers, lke_walker *record) except -1:
    if lke_walk_end(_h(handlers), record):
        _reclaim(handlers)
    return 0


def registry_state(EmitterCore emitter not None, event):
    """For tests: ``{"live", "dead", "waiting", "retired"}`` of ``event``: its
    live registrations, dead slots in its current table, removed callbacks
    still held for walks in progress, and retired tables not yet freed."""
    cdef Py_ssize_t dead = 0, waiting = 0, retired = 0
    handlers = _handlers_of(emitter, event, False)
    if handlers is None:
        return {"live": 0, "dead": 0, "waiting": 0, "retired": 0}
    with cython.critical_section(handlers):
        lke_handlers_debug(_h(handlers), &dead, &waiting, &retired)
        live = _h(handlers).live
    return {"live": live, "dead": dead, "waiting": waiting, "retired": retired}


# ---------------------------------------------------------------------------
# Weak registrations and slow-handler timing: C helpers for emit.

cdef extern from "_walk.h":
    PyObject *lke_weak_get(PyObject *ref)
    int64_t lke_slow_ns


def _set_slow_threshold(threshold_ns):
    # Nanoseconds (0 or less: off), clamped to what the C variable holds.
    global lke_slow_ns
    lke_slow_ns = min(max(threshold_ns, 0), 0x7FFFFFFFFFFFFFFF)


register_slow_threshold_setter(_set_slow_threshold)


# ---------------------------------------------------------------------------
# Lookups: the "prepare" part of an operation, where __eq__ may run (rule 3).


cdef inline lke_handlers *_h(object handlers) noexcept:
    return <lke_handlers *><PyObject *>handlers


cdef inline object _key_of(lke_slot *slot):
    # What off(callback), dedupe and listeners() see: the callable as the
    # user registered it (a wrapper's callback; a weak registration's
    # referent, rebuilt as a bound method for a method, or None once dead).
    cdef PyObject *referent
    if slot.flags & LKE_WRAPPER:
        return (<OnceWrapper><object>slot.callback).target()
    if slot.flags & LKE_WEAK:
        if slot.flags & LKE_METHOD:
            container = <tuple><object>slot.callback
            referent = lke_weak_get(PyTuple_GET_ITEM(container, 0))
            if referent is NULL:
                return None
            return _types.MethodType(container[1], _steal(referent))
        referent = lke_weak_get(slot.callback)
        return None if referent is NULL else _steal(referent)
    return <object>slot.callback


cdef inline object _steal(PyObject *reference):
    # A new reference, as an object (no incref: the object now owns it).
    cdef object result = <object>reference
    Py_DECREF_ptr(reference)
    return result


cdef int _equal(object stored, object key) except -1:
    # Dict-key equality (the stored key on the left, as dicts compare).  `held`
    # keeps the stored key alive whatever __eq__ removes.
    cdef object held = stored
    return PyObject_RichCompareBool(<PyObject *>held, <PyObject *>key, Py_EQ)


cdef inline Py_ssize_t _next_candidate(lke_handlers *h, Py_hash_t key_hash,
                                       Py_ssize_t *step) noexcept:
    # The next slot position to look at for `key_hash`, or -1 when there is
    # none left: along the probe chain when the event has an index, else the
    # next slot.  Re-reads everything, so it may follow Python code (rule 3).
    cdef lke_entry *entry
    cdef uint32_t tag
    if h.index is NULL:
        if step[0] >= _count(h):
            return -1
        step[0] += 1
        return step[0] - 1
    tag = LKE_TAG(key_hash)
    while step[0] <= h.index_mask:
        entry = &h.index[(lke_home(h, key_hash) + step[0]) & h.index_mask]
        step[0] += 1
        if entry.pos >= 0:
            if entry.tag == tag:
                return entry.pos
        elif entry.pos == -1:  # LKE_EMPTY: the end of the chain
            return -1
    return -1


cdef Py_ssize_t _find_on(object handlers, object key, Py_hash_t key_hash) except -2:
    # The position of the live `on` registration of `key`, or -1.  When it
    # returns -1, no Python code has run since it last checked (rule 3), so a
    # commit may follow at once.
    cdef lke_handlers *h = _h(handlers)
    cdef uint32_t layout
    cdef Py_ssize_t step, pos
    cdef lke_slot *slot
    cdef bint equal
    cdef lke_positions compared  # compared and not equal: never again
    lke_positions_init(&compared)
    try:
        while True:
            layout = h.layout
            step = 0
            while True:
                pos = _next_candidate(h, key_hash, &step)
                if pos < 0:
                    return -1
                slot = _slot_at(h, pos)
                if slot.hash != key_hash or slot.flags & (LKE_DEAD | LKE_ONCE | LKE_WRAPPER):
                    continue
                if slot.callback is <PyObject *>key:
                    return pos
                if lke_positions_has(&compared, pos):
                    continue
                h.lookups += 1
                try:
                    if slot.flags & LKE_WEAK:
                        stored = _key_of(slot)  # Python code: reads slot first
                        equal = stored is not None and (stored is key or _equal(stored, key))
                        stored = None
                    else:
                        equal = _equal(<object>slot.callback, key)
                finally:
                    h.lookups -= 1
                if equal and not _slot_at(h, pos).flags & LKE_DEAD:
                    return pos  # (slots don't move during a lookup)
                lke_positions_add(&compared, pos)
                if h.layout != layout:
                    break  # a new index: probe it again, skipping what was compared
    finally:
        lke_positions_free(&compared)


cdef Py_ssize_t _find_identity(object handlers, PyObject *stored, Py_hash_t key_hash) noexcept:
    # The position of the live slot holding exactly `stored` (a wrapper, a
    # weak container), or -1.  No Python code runs; `stored` is only compared.
    cdef lke_handlers *h = _h(handlers)
    cdef Py_ssize_t step = 0, pos
    while True:
        pos = _next_candidate(h, key_hash, &step)
        if pos < 0:
            return -1
        if _slot_at(h, pos).callback == stored and not _slot_at(h, pos).flags & LKE_DEAD:
            return pos


cdef extern from "_registry.h":
    ctypedef struct lke_positions:
        Py_ssize_t *items
        Py_ssize_t n
    void lke_positions_init(lke_positions *p) noexcept
    int lke_positions_add(lke_positions *p, Py_ssize_t pos) except -1
    void lke_positions_free(lke_positions *p) noexcept
    int lke_positions_has(lke_positions *p, Py_ssize_t pos) noexcept


cdef int _find_all(object handlers, object key, Py_hash_t key_hash, lke_positions *found) except -1:
    # Every live registration of `key` (on, once, wrapper), into `found`.
    # When it returns, no Python code has run since it last checked (rule 3);
    # the commit skips any found slot that died since.
    cdef lke_handlers *h = _h(handlers)
    cdef uint32_t layout
    cdef Py_ssize_t step, pos
    cdef lke_slot *slot
    cdef bint equal
    cdef lke_positions compared  # compared already (equal ones are in `found`)
    lke_positions_init(&compared)
    try:
        while True:
            layout = h.layout
            step = 0
            while True:
                pos = _next_candidate(h, key_hash, &step)
                if pos < 0:
                    return 0
                slot = _slot_at(h, pos)
                if slot.hash != key_hash or slot.flags & LKE_DEAD:
                    continue
                if lke_positions_has(&compared, pos):
                    continue
                h.lookups += 1  # (_key_of may allocate: Python code)
                try:
                    stored = _key_of(slot)
                    equal = stored is not None and (stored is key or _equal(stored, key))
                    stored = None
                finally:
                    h.lookups -= 1
                lke_positions_add(&compared, pos)
                if equal:
                    lke_positions_add(found, pos)
                if h.layout != layout:
                    break  # a new index: probe it again, skipping what was compared
    finally:
        lke_positions_free(&compared)


# ---------------------------------------------------------------------------
# The registry operations.  Each: prepare (Python code may run), then commit
# (C only), then release what the commit dropped.  Read the rules at the top.


cdef int _checked_arity(Py_ssize_t accepted, Py_ssize_t required,
                        int32_t *accepted_out, int32_t *required_out) except -1:
    # Whatever computed them, values outside these ranges would make emit
    # index past the argument array: refuse them (rule 7).
    if accepted == ALL_ARGUMENTS:
        accepted_out[0] = LKE_ALL
    elif 0 <= accepted < LKE_ALL:
        accepted_out[0] = <int32_t>accepted
    else:
        raise ValueError(f"invalid number of accepted arguments: {accepted}")
    if not 0 <= required <= (accepted if accepted >= 0 else LKE_ALL - 1):
        raise ValueError(f"invalid number of required arguments: {required}")
    required_out[0] = <int32_t>required
    return 0


cdef inline uint32_t _method_flag(object callback) noexcept:
    return LKE_METHOD if Py_TYPE_ptr(<PyObject *>callback) is &PyMethod_Type else 0


cdef object _handlers_of(EmitterCore self, object event, bint create):
    # The Handlers of `event` (a new reference), or None.  Python code may run
    # (the event's __hash__ and __eq__, an allocation).
    cdef object handlers = lke_dict_get(<PyObject *>self.registry, event, None)
    if handlers is None:
        if not create:
            return None
        handlers = self.registry.setdefault(event, lke_handlers_new())
    return _checked_handlers(handlers)


cdef int _register(EmitterCore self, object event, object stored, object key,
                   Py_hash_t key_hash, Py_ssize_t accepted, Py_ssize_t required,
                   uint32_t flags) except -1:
    # Registers `stored` (the callback, a wrapper or a weak container) as a
    # registration of `key` (the callback as the user gave it).
    cdef int32_t accepted32, required32
    cdef Py_ssize_t limit = _listener_limit(self)
    cdef bint leak = False
    cdef lke_handlers *h
    cdef lke_release release
    _checked_arity(accepted, required, &accepted32, &required32)
    handlers = _handlers_of(self, event, True)
    h = _h(handlers)
    lke_release_init(&release)
    try:
        with cython.critical_section(handlers):
            if flags & LKE_WRAPPER:
                if _find_identity(handlers, <PyObject *>stored, key_hash) >= 0:
                    return 0  # this very wrapper is registered already
            elif not flags & LKE_ONCE:
                if _find_on(handlers, key, key_hash) >= 0:
                    return 0  # already registered: keeps its first position
            # Commit: no Python code from here.
            lke_append(h, <PyObject *>stored, key_hash, accepted32, required32, flags)
            lke_reclaim(h, &release)  # (a table the append outgrew)
            if limit and h.live > limit and not h.warned:
                h.warned = leak = True
    finally:
        lke_release_all(&release)
    if leak:  # paid at registration only
        warn_listener_leak(self, event, h.live, limit, 1)
    return 0


cdef Py_ssize_t _listener_limit(EmitterCore self) except -1:
    # set_max_listeners(n) for this emitter, else the class's max_listeners
    # (checked as set_max_listeners checks it).
    if self.listener_limit >= 0:
        return self.listener_limit
    value = getattr(type(self), "max_listeners", None)  # as the pure twin reads it
    if value is None:
        return 0
    if type(value) is int and 0 <= value <= PY_SSIZE_T_MAX:
        return <Py_ssize_t>value
    return checked_max_listeners(value)


cdef int _remove(object handlers, object callback, Py_hash_t key_hash, PyObject *stored) except -1:
    # Removes every live registration of `callback`, or with `stored` (a
    # wrapper removing itself, a dead weak registration) that one slot only.
    cdef lke_handlers *h = _h(handlers)
    cdef lke_positions found
    cdef lke_release release
    cdef Py_ssize_t k, pos
    lke_positions_init(&found)
    lke_release_init(&release)
    try:
        with cython.critical_section(handlers):
            if stored is not NULL:
                pos = _find_identity(handlers, stored, key_hash)
                if pos >= 0:
                    lke_positions_add(&found, pos)
            else:
                _find_all(handlers, callback, key_hash, &found)
            # Commit: no Python code from here.
            for k in range(found.n):
                pos = found.items[k]
                if not _slot_at(h, pos).flags & LKE_DEAD:  # not removed meanwhile
                    lke_kill(h, <int32_t>pos, &release)
            if found.n:
                lke_maybe_compact(h, &release)
    finally:
        lke_positions_free(&found)
        lke_release_all(&release)
    return 0


cdef int _clear(object handlers) except -1:
    cdef lke_release release
    lke_release_init(&release)
    try:
        with cython.critical_section(handlers):
            lke_kill_all(_h(handlers), &release)
    finally:
        lke_release_all(&release)
    return 0


cdef list _walk(object handlers, bint triples, object event):
    # The live callbacks in call order, as the user registered them (a
    # wrapper's callback, a weak registration's live referent); or
    # (event, once, callback, weak) for export_registrations.  A walk:
    # nothing moves meanwhile (rule 5).
    cdef lke_slot *slot
    cdef lke_walker local
    cdef lke_walker *record
    cdef lke_table *table
    cdef Py_ssize_t i, n
    cdef list result = []
    lke_walk_begin(_h(handlers), &local, &record, &table, &n)
    try:
        for i in range(n):
            slot = table.slots[i]
            if lke_flags(&slot.flags) & LKE_DEAD:
                continue
            registered = _key_of(slot)  # (held for this walk: rule 8)
            if registered is None:
                pass  # held weakly, and dead
            elif not triples:
                result.append(registered)
            else:
                once = (slot.flags & (LKE_ONCE | LKE_WRAPPER)) != 0
                weak = ((slot.flags & LKE_WEAK) != 0
                        or (slot.flags & LKE_WRAPPER
                            and (<OnceWrapper><object>slot.callback).weak_flags != 0))
                result.append((event, once, registered, weak))
    finally:
        _end_walk(handlers, record)
    return result


cdef list _in_order(EmitterCore self):
    # (event, handlers) pairs, in the order the events last got a first handler.
    # PyDict_Items creates its pairs before it reads the dict: a collection
    # started by an allocation in the middle of a walk over items() can run a
    # finalizer that registers, and the walk then fails ("dictionary changed
    # size during iteration").
    cdef list items = PyDict_Items(self.registry)
    for _, handlers in items:
        _checked_handlers(handlers)
    items.sort(key=_since)
    return items


@cython.boundscheck(True)
@cython.wraparound(True)
def _since(item):
    return _h(_checked_handlers(item[1])).since


cdef inline object _checked_handlers(object handlers):
    # Rule 7: the registry dict can be reached (gc.get_referents) and changed.
    if Py_TYPE_ptr(<PyObject *>handlers) is not &lke_handlers_type:
        raise SystemError("livekit_events: a registry entry is not a Handlers object")
    return handlers


# ---------------------------------------------------------------------------
# once's wrapper, for subclasses that override on or off.


@cython.final
@cython.auto_pickle(False)
cdef class OnceWrapper:
    """What ``once`` registers through ``self.on`` when a subclass overrides
    ``on`` or ``off``: a callable that calls the callback at most once.

    Its signature is the callback's (``__wrapped__``).  The first call claims
    it, removes it with ``emitter.off(event, wrapper)`` (the subclass's ``off``
    sees livekit's sequence) and calls the callback with the leading arguments
    it accepts; later calls (a nested emit, another thread, an emitter that
    doesn't remove it) do nothing.  ``off(event, callback)`` on the emitter
    also removes it.  With ``weak=True`` it holds the callback weakly, and
    removes itself the same way when the callback dies.
    """

    cdef readonly object emitter
    cdef readonly object event
    cdef object callback  # strong, or a weak container (weak_flags set)
    cdef uint32_t weak_flags  # LKE_WEAK (| LKE_METHOD) when held weakly
    cdef Py_hash_t key_hash  # the callback's hash: its key in the registry
    cdef Py_hash_t own_hash
    cdef int32_t accepted, required
    cdef bint claimed
    cdef object __weakref__

    @property
    def __wrapped__(self):
        return self.target()

    cdef object target(self):
        # The callback (None once a weakly held one has died).
        cdef lke_slot slot
        if not self.weak_flags:
            return self.callback
        slot.callback = <PyObject *>self.callback
        slot.flags = self.weak_flags
        return _key_of(&slot)

    cdef bint claim(self):
        with cython.critical_section(self):  # test-and-set
            if self.claimed or self.emitter is None:
                return False
            self.claimed = True
        return True

    def __call__(self, *args, **kwargs):
        if not self.claim():
            return None
        self.emitter.off(self.event, self)
        callback = self.target()
        if callback is None:
            return None  # held weakly, and dead
        if self.accepted < PyTuple_GET_SIZE(args):
            args = args[:self.accepted]
        callback(*args, **kwargs)

    def expire(self):
        """Its weakly held callback died: remove it as if it had fired."""
        if self.claim():
            self.emitter.off(self.event, self)

    def __hash__(self):
        return self.own_hash

    def __repr__(self):
        return f"<once wrapper of {self.target()!r}>"

    def __reduce__(self):
        return (_rebuild_once_wrapper,
                (self.emitter, self.event, self.target(), self.claimed, self.weak_flags != 0))


cdef OnceWrapper _make_wrapper(object emitter, object event, object callback,
                               Py_ssize_t accepted, Py_ssize_t required, bint weak):
    cdef OnceWrapper wrapper = OnceWrapper.__new__(OnceWrapper)
    cdef int32_t accepted32, required32
    cdef _WeakDeath death
    _checked_arity(accepted, required, &accepted32, &required32)
    wrapper.key_hash = hash(callback)
    wrapper.own_hash = hash((_ONCE_SALT, wrapper.key_hash))
    wrapper.emitter = emitter
    wrapper.event = event
    wrapper.accepted = accepted32
    wrapper.required = required32
    if weak:
        death = _WeakDeath.__new__(_WeakDeath)
        death.wrapper = _weakref.ref(wrapper)
        wrapper.callback = _weak_container(callback, death, &wrapper.weak_flags)
    else:
        wrapper.callback = callback
    return wrapper


_ONCE_SALT = "livekit_events.once"  # the pure twin's wrappers hash the same


def _rebuild_once_wrapper(emitter, event, callback, claimed, weak=False):
    cdef Py_ssize_t accepted, required
    _describe(callback, &accepted, &required)
    wrapper = _make_wrapper(emitter, event, callback, accepted, required, weak)
    wrapper.claimed = claimed
    return wrapper


# ---------------------------------------------------------------------------
# Weak registrations: the slot holds a weak reference to the callable, or for
# a bound method a tuple (weak reference to __self__, __func__), so that the
# registration keeps neither alive.  The weak reference's callback, a
# _WeakDeath, removes the registration when the referent dies; it holds the
# emitter weakly and knows the slot by the identity of its container.


@cython.final
@cython.auto_pickle(False)
cdef class _WeakDeath:
    cdef object emitter   # weak reference to the emitter, or None
    cdef object wrapper   # weak reference to a OnceWrapper holding it, or None
    cdef object event
    cdef PyObject *container  # the slot's container: compared, never used
    cdef Py_hash_t key_hash

    def __call__(self, ref):
        if self.wrapper is not None:
            wrapper = self.wrapper()
            if wrapper is not None:
                wrapper.expire()
            return
        emitter = self.emitter() if self.emitter is not None else None
        if emitter is None:
            return
        handlers = _handlers_of(<EmitterCore>emitter, self.event, False)
        if handlers is not None:
            _remove(handlers, None, self.key_hash, self.container)


cdef object _weak_container(object callback, _WeakDeath death, uint32_t *flags):
    # What a weak slot (or wrapper) holds for `callback`; sets LKE_WEAK (and
    # LKE_METHOD for a bound method) in *flags.
    try:
        if type(callback) is _types.MethodType:
            container = (_weakref.ref(callback.__self__, death), callback.__func__)
            flags[0] |= LKE_WEAK | LKE_METHOD
        else:
            container = _weakref.ref(callback, death)
            flags[0] = (flags[0] | LKE_WEAK) & ~LKE_METHOD
    except TypeError:
        target = callback.__self__ if type(callback) is _types.MethodType else callback
        raise TypeError(
            f"cannot register {callback!r} weakly: {type(target).__name__} objects can't be "
            f"weakly referenced (register it without weak=True)") from None
    death.container = <PyObject *>container
    return container


cdef object _weak_registration(EmitterCore self, object event, object callback,
                               Py_hash_t key_hash, uint32_t *flags):
    cdef _WeakDeath death = _WeakDeath.__new__(_WeakDeath)
    try:
        death.emitter = _weakref.ref(self)
    except TypeError:
        raise TypeError(f"{type(self).__name__} objects can't be weakly referenced, "
                        "so they can't hold weak registrations") from None
    death.event = event
    death.key_hash = key_hash
    return _weak_container(callback, death, flags)


cdef int _register_callback(EmitterCore self, object event, object callback,
                            bint weak, bint once) except -1:
    cdef Py_ssize_t accepted, required
    cdef Py_hash_t key_hash
    cdef uint32_t flags = LKE_ONCE if once else 0
    _describe(callback, &accepted, &required)
    key_hash = hash(callback)
    flags |= _method_flag(callback)
    stored = _weak_registration(self, event, callback, key_hash, &flags) if weak else callback
    _register(self, event, stored, callback, key_hash, accepted, required, flags)
    return 0


cdef int _register_wrapper(EmitterCore self, object event, OnceWrapper wrapper) except -1:
    if wrapper.emitter is None:
        raise TypeError("this OnceWrapper was not made by once()")
    _register(self, event, wrapper, wrapper, wrapper.key_hash,
              ALL_ARGUMENTS if wrapper.accepted == LKE_ALL else wrapper.accepted,
              wrapper.required, LKE_WRAPPER)
    return 0


# ---------------------------------------------------------------------------
# The emitter.


@cython.auto_pickle(False)
cdef class EmitterCore:
    """Registration storage and ``emit``; the public class adds the typing."""

    # event -> Handlers.  C fields: no name a subclass could collide with.
    cdef dict registry
    cdef Py_ssize_t listener_limit  # set_max_listeners(); -1: the class's

    def __cinit__(self, *args, **kwargs):
        self.registry = {}
        self.listener_limit = -1

    def __init__(self):
        if self.registry:
            self.remove_all_listeners()

    # emit(event, *args) is the C function _emit below, installed on this
    # class as a METH_FASTCALL method descriptor.

    @cython.binding(False)
    def emit(self, event, *args):
        """Call every handler of ``event`` with the leading ``args`` it accepts."""
        cdef Py_ssize_t n = len(args)
        cdef PyObject *stack[9]
        cdef tuple items
        if n < 8:
            stack[0] = <PyObject *>event
            for i in range(n):
                stack[i + 1] = <PyObject *>args[i]
            return _emit(self, stack, n + 1, NULL)
        items = (event,) + args
        return _emit(self, PySequence_Fast_ITEMS(items), n + 1, NULL)

    @cython.binding(False)
    def on(self, event, callback=None, *, weak=False):
        """Call ``callback`` every time ``event`` is emitted; return it."""
        if callback is None:
            return registration_decorator(self, "on", event, weak)
        hash(event)
        if type(callback) is OnceWrapper:  # once's wrapper, back from a subclass's on
            _register_wrapper(self, event, <OnceWrapper>callback)
        else:
            _register_callback(self, event, callback, weak, False)
        return callback

    @cython.binding(False)
    def once(self, event, callback=None, *, weak=False):
        """Call ``callback`` the next time ``event`` is emitted only; return it."""
        cdef Py_ssize_t accepted, required
        if callback is None:
            return registration_decorator(self, "once", event, weak)
        hash(event)
        if _plain_on_off(self):
            _register_callback(self, event, callback, weak, True)
        else:
            _describe(callback, &accepted, &required)
            self.on(event, _make_wrapper(self, event, callback, accepted, required, weak))
        return callback

    @cython.binding(False)
    def off(self, event, callback):
        """Remove every registration of ``callback`` for ``event`` (``on`` and
        pending ``once`` ones).  Unknown events or callbacks are ignored."""
        handlers = _handlers_of(self, event, False)
        if handlers is None:
            return
        if type(callback) is OnceWrapper:  # a wrapper removes only itself
            _remove(handlers, callback, (<OnceWrapper>callback).key_hash, <PyObject *>callback)
        else:
            _remove(handlers, callback, hash(callback), NULL)

    max_listeners = DEFAULT_MAX_LISTENERS

    @cython.binding(False)
    def set_max_listeners(self, limit):
        """Warn (``ListenerLeakWarning``) when an event of this emitter gets
        more than ``limit`` handlers; ``0`` or ``None``: never."""
        self.listener_limit = checked_max_listeners(limit)

    @cython.binding(False)
    def get_max_listeners(self):
        """This emitter's limit (``set_max_listeners``, else the class's
        ``max_listeners``); ``0``: no limit."""
        return _listener_limit(self)

    @cython.binding(False)
    def remove_all_listeners(self, event=None):
        """Remove every handler of ``event``, or of every event if it is None."""
        if event is None:
            for handlers in list(self.registry.values()):
                _clear(_checked_handlers(handlers))
            return
        handlers = _handlers_of(self, event, False)
        if handlers is not None:
            _clear(handlers)

    @cython.binding(False)
    def listeners(self, event):
        """The callbacks of ``event`` as registered, in call order."""
        handlers = _handlers_of(self, event, False)
        return [] if handlers is None else _walk(handlers, False, None)

    @cython.binding(False)
    def listener_count(self, event):
        """How many registrations ``event`` has (each pending ``once`` counts)."""
        handlers = _handlers_of(self, event, False)
        return 0 if handlers is None else _h(handlers).live

    @cython.binding(False)
    def event_names(self):
        """The events that have at least one handler, in the order they got
        their first one (since they last had none), as Node's emitters list them."""
        return [event for event, handlers in _in_order(self) if _h(handlers).live]

    @property
    def _events(self):
        """livekit compatibility: a fresh ``{event: [callbacks]}`` mapping."""
        return {
            event: _walk(handlers, False, None)
            for event, handlers in _in_order(self)
            if _h(handlers).live
        }

    @cython.binding(False)
    def __copy__(self):
        return copy_emitter(self, None)

    @cython.binding(False)
    def __deepcopy__(self, memo):
        return copy_emitter(self, memo)

    @cython.binding(False)
    def __reduce_ex__(self, protocol):
        return reduce_emitter(self, export_registrations, restore_emitter)

    @cython.binding(False)
    def __getstate__(self):
        return default_instance_state(self, EmitterCore)


# once needs no wrapper when self.on and self.off are these very methods.
cdef PyMethodDef *_ON_DEF = NULL
cdef PyMethodDef *_OFF_DEF = NULL
for _name in ("on", "off"):
    if type(EmitterCore.__dict__[_name]) is not _types.MethodDescriptorType:
        raise ImportError(f"EmitterCore.{_name} must be a method descriptor (binding=False)")
_ON_DEF = (<PyMethodDescrObject *><PyObject *>EmitterCore.__dict__["on"]).d_method
_OFF_DEF = (<PyMethodDescrObject *><PyObject *>EmitterCore.__dict__["off"]).d_method


cdef inline bint _is_core_method(object bound, object self, PyMethodDef *definition):
    return (PyCFunction_Check(bound)
            and (<PyCFunctionObject *><PyObject *>bound).m_ml == definition
            and (<PyCFunctionObject *><PyObject *>bound).m_self == <PyObject *>self)


cdef bint _plain_on_off(object self) except -1:
    # Whether self.on and self.off are the core's own (not overridden by a
    # subclass or on the instance): then once needs no wrapper.
    return (_is_core_method(getattr(self, "on"), self, _ON_DEF)
            and _is_core_method(getattr(self, "off"), self, _OFF_DEF))


# ---------------------------------------------------------------------------
# copy and pickle (see _common).


def export_registrations(EmitterCore emitter not None):
    """``[(event, once, callback, weak), ...]``: every live registration, in order."""
    result = []
    for event, handlers in _in_order(emitter):
        result.extend(_walk(handlers, True, event))
    return result


def import_registrations(EmitterCore emitter not None, registrations):
    """Register ``[(event, once, callback, weak), ...]`` in the emitter's
    registry, without going through a subclass's ``on`` (it restores, not
    registers)."""
    cdef Py_ssize_t accepted, required
    plain = _plain_on_off(emitter)
    for event, once, callback, weak in registrations:
        hash(event)
        if once and not plain:
            _describe(callback, &accepted, &required)
            _register_wrapper(emitter, event,
                              _make_wrapper(emitter, event, callback, accepted, required, weak))
        else:
            _register_callback(emitter, event, callback, weak, once)


def restore_emitter(emitter, state):
    """The state setter of ``__reduce_ex__``: instance state, then registrations."""
    instance, registrations = state
    restore_instance_state(emitter, instance)
    import_registrations(emitter, registrations)


# ---------------------------------------------------------------------------
# emit, the hot path.
#
# A Cython `def emit(self, event, *args)` builds an argument tuple on every
# call.  The public class's emit is instead a C function with CPython's
# METH_FASTCALL convention, a plain method descriptor (emit_method, below):
# it reads the caller's argument array in place, so an emit allocates
# nothing, and `self.emit(...)` makes no bound method.
# Each handler gets a vectorcall on a prefix of that array.

cdef extern from "_walk.h":
    ctypedef struct lke_walk:
        Py_ssize_t given
        lke_slot *slot
        int64_t elapsed
        int status
    const int LKE_WALK_DONE, LKE_WALK_ARITY, LKE_WALK_RAISED, LKE_WALK_SLOW
    int lke_max_emit_nesting
    int *lke_emit_depth_address() noexcept
    bint lke_nested_too_deep(const int *depth) noexcept
    int lke_walk_step(lke_walk *w) noexcept
    void lke_walk_finish(lke_walk *w) noexcept
    int lke_walk_start(lke_handlers *h, PyObject **argv, Py_ssize_t given, lke_walk *w,
                       int *depth) except -1


cdef object _emit(EmitterCore self, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    if kwnames is not NULL or nargs < 1:
        return _emit_unusual(self, args, nargs, kwnames)
    # The event and the arguments are borrowed from the caller's array, which
    # outlives this call.
    cdef PyObject *event = args[0]
    cdef object handlers = lke_dict_get(<PyObject *>self.registry, <object>event, None)
    if handlers is None:
        return None
    if Py_TYPE_ptr(<PyObject *>handlers) is not &lke_handlers_type:
        raise SystemError("livekit_events: a registry entry is not a Handlers object")
    cdef int *depth = lke_emit_depth_address()  # this thread's running walks
    if lke_nested_too_deep(depth):
        raise nesting_error(<object>event)
    cdef lke_walk walk  # (filled only if the walk stops)
    # The walk runs in C, and returns here only when it needs Python.
    if lke_walk_start(<lke_handlers *><PyObject *>handlers, &args[1], nargs - 1,
                      &walk, depth) == LKE_WALK_DONE:
        return None  # (and ended)
    return _walk_stopped(<object>event, &walk)


cdef object _walk_stopped(object event, lke_walk *walk):
    # An emit's walk stopped at a handler for what needs Python (an arity
    # error, a failure, a slow handler): deal with it, go on from the next
    # slot, end the walk.  The stopped-at slot is held by the walk (rule 8).
    cdef int status = walk.status
    try:
        while status != LKE_WALK_DONE:
            if status == LKE_WALK_ARITY:
                raise arity_error(event, _key_of(walk.slot), walk.slot.required, walk.given)
            if status == LKE_WALK_RAISED:
                _handler_failed(event)  # logs, or raises a BaseException
            if lke_slow_ns and walk.elapsed > lke_slow_ns:
                report_slow_handler(event, _key_of(walk.slot), walk.elapsed)
            status = lke_walk_step(walk)
    finally:
        lke_walk_finish(walk)
    return None


cdef int _handler_failed(object event) except -1:
    # A handler call returned NULL.  Exceptions are logged and swallowed;
    # other BaseExceptions stay set (return -1) and propagate out of emit.
    if not PyErr_ExceptionMatches(PyExc_Exception):
        return -1
    log_handler_failure(event, lke_fetch_exception())
    return 0


cdef object _emit_unusual(EmitterCore self, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    # emit(event=...), which livekit's signature allows, or a bad call.
    cdef tuple names = <tuple>kwnames if kwnames is not NULL else ()
    if nargs == 0 and names == ("event",):
        return _emit(self, args, 1, NULL)
    for name in names:
        if name == "event" and nargs >= 1:
            raise TypeError("emit() got multiple values for argument 'event'")
        if name != "event":
            raise TypeError(f"emit() got an unexpected keyword argument {name!r}")
    raise TypeError("emit() missing 1 required positional argument: 'event'")


cdef PyMethodDef _emit_def
_emit_def.ml_name = "emit"
_emit_def.ml_meth = <PyCFunction><void *>_emit
_emit_def.ml_flags = METH_FASTCALL | METH_KEYWORDS
_emit_def.ml_doc = (
    "emit($self, event, *args)\n--\n\n"
    "Call every handler of ``event`` with the leading ``args`` it accepts."
)
# EmitterCore is a static type, which public C-API doesn't let anyone add
# methods to after PyType_Ready: the public class (_emitter.py), a heap type,
# puts this descriptor in its own namespace instead.  EmitterCore.emit is the
# same call through Cython's argument tuple.
emit_method = PyDescr_NewMethod(<PyTypeObject *>EmitterCore, &_emit_def)
lke_max_emit_nesting = MAX_EMIT_NESTING
