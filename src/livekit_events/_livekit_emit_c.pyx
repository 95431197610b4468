# Compiled dispatcher of livekit_events.install(): ``livekit_emit``, what
# install() (_livekit.py) puts on livekit.rtc.EventEmitter as ``emit``.  Its
# pure-Python twin is _livekit_emit_py.py (same names, same behaviour); its
# cold path, shared by both, is _livekit_common.py.  The cores (_core_c,
# _core_py) know nothing of it.
#
# ``livekit_emit`` keeps livekit's emit: the handlers are the keys of
# ``self._events[event]`` (livekit's storage, never written here), taken as a
# snapshot when the emit starts (a handler removed meanwhile is still called,
# one added is not); each gets the first k arguments, k counted from its
# signature as livekit counts it; a TypeError propagates at once; any other
# Exception is logged on livekit's logger and the next handler runs.
#
# What changes is where k comes from.  Per emitter and event, a snapshot
# remembers the handlers seen by the last emit, by weak reference (it keeps
# nothing alive), with their arity.  An emit compares the current keys with
# it pointer by pointer; only when they differ are the signatures of the new
# handlers read (lk_describe_all), so a signature is read once per
# registration, never per emit.
#
# As in the compiled core (rule 7 at the top of _core_c.pyx), nothing that
# arrives from Python is trusted: what lk_describe_all returns is checked
# before emit indexes arrays with it.
#
# Free threading.  setup.py builds this module with Cython's
# `freethreading_compatible` directive, as the core.  livekit's dicts are read
# under their own critical section; the one-entry memo of the last emitter is
# kept only on GIL builds (LKE_LK_MEMO); the snapshots are immutable once
# built, and replacing one in its dict is a single dict operation.

cimport cython
from cpython.dict cimport PyDict_Next
from cpython.long cimport PyLong_FromVoidPtr
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.sequence cimport PySequence_Fast_ITEMS
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport int64_t

import weakref as _lk_weakref

from . import _livekit_common as _lk_common
from ._common import register_slow_threshold_setter, report_slow_handler
from ._livekit_common import lk_call_slow, lk_describe_all, lk_legacy_once_pending, lk_log_failure

cdef extern from "Python.h":
    PyObject *PyObject_Vectorcall(
        PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
    const size_t PY_VECTORCALL_ARGUMENTS_OFFSET
    const Py_ssize_t PY_SSIZE_T_MAX
    int PyErr_ExceptionMatches(PyObject *exc)
    PyObject *PyExc_Exception
    PyObject *PyExc_TypeError
    void lke_incref "Py_INCREF"(PyObject *obj)
    void lke_decref "Py_DECREF"(PyObject *obj)

cdef extern from "_compat.h":
    object lke_fetch_exception()
    # `d` is passed as PyObject* so that Cython doesn't incref the attribute.
    object lke_dict_get(PyObject *d, object key, object dflt)
    bint lke_weakref_is(PyObject *ref, PyObject *obj)
    int64_t lke_now() noexcept
    const bint LKE_LK_MEMO

__all__ = ("livekit_emit", "livekit_reset", "livekit_snapshot_count")

cdef enum:
    # Handlers of one event kept on the C stack during an emit; more use a list.
    LK_STACK_HANDLERS = 16
    LK_STACK_ARGS = 8
    # _livekit_common's kinds (checked at import below).
    LK_KIND_CACHED = 0
    LK_KIND_SLOW = 1
    LK_KIND_LEGACY_ONCE = 2

if (_lk_common.LK_CACHED, _lk_common.LK_SLOW, _lk_common.LK_LEGACY_ONCE) != (0, 1, 2):
    raise ImportError("_livekit_common's handler kinds don't match _livekit_emit_c's")


# Slow-handler detection: the threshold in nanoseconds, 0 when off.
cdef int64_t _lk_slow_ns = 0


def _set_slow_threshold(int64_t threshold_ns):
    # From _common: 0, or 1 to 10**18 (a threshold is at most 10**9 seconds);
    # anything outside int64_t is an OverflowError, never a wrapped value.
    global _lk_slow_ns
    _lk_slow_ns = threshold_ns


register_slow_threshold_setter(_set_slow_threshold)


@cython.final
cdef class _LivekitSnapshot:
    """One emitter's handlers of one event as its last emit saw them."""

    cdef Py_ssize_t n
    # (weak reference or None, accepted, kind) per handler, for the next rebuild.
    cdef list entries
    # Weak reference per handler, or None for one that can't be weakly
    # referenced (its arity is then read on every emit: LK_KIND_SLOW).
    cdef tuple refs
    cdef PyObject **ptrs  # each handler's identity: compared, never used
    cdef Py_ssize_t *accepted  # PY_SSIZE_T_MAX: every argument
    cdef unsigned char *kinds

    def __cinit__(self, tuple keys not None, list entries not None):
        cdef Py_ssize_t i, n = len(entries)
        if len(keys) != n:
            # Nothing from Python is trusted: lk_describe_all is looked up at
            # run time (it may be patched); a short answer would have emit
            # read past the arrays.
            raise SystemError(f"livekit_events: {n} arities for {len(keys)} handlers")
        self.n = n
        self.entries = entries
        self.ptrs = <PyObject **>PyMem_Malloc((n or 1) * sizeof(PyObject *))
        self.accepted = <Py_ssize_t *>PyMem_Malloc((n or 1) * sizeof(Py_ssize_t))
        self.kinds = <unsigned char *>PyMem_Malloc(n or 1)
        if self.ptrs is NULL or self.accepted is NULL or self.kinds is NULL:
            raise MemoryError()
        refs = []
        for i in range(n):
            ref, accepted, kind = entries[i]
            refs.append(ref)
            self.ptrs[i] = <PyObject *>keys[i]
            if accepted == _lk_common.LK_ALL:
                self.accepted[i] = PY_SSIZE_T_MAX
            elif 0 <= accepted < PY_SSIZE_T_MAX:
                self.accepted[i] = <Py_ssize_t>accepted
            else:
                raise SystemError(f"livekit_events: invalid arity {accepted!r}")
            if not 0 <= kind <= LK_KIND_LEGACY_ONCE:
                raise SystemError(f"livekit_events: invalid handler kind {kind!r}")
            self.kinds[i] = <unsigned char>kind
        self.refs = tuple(refs)

    def __dealloc__(self):
        PyMem_Free(self.ptrs)
        PyMem_Free(self.accepted)
        PyMem_Free(self.kinds)

    cdef inline bint matches(self, Py_ssize_t i, PyObject *key):
        cdef PyObject *ref
        if self.ptrs[i] != key:
            return False
        ref = PyTuple_GET_ITEM(self.refs, i)
        # Without a weak reference the same address may be another object:
        # harmless, such a handler's arity is read at every emit.
        return ref == <PyObject *>None or lke_weakref_is(ref, key)


@cython.final
cdef class _LivekitEmitterCache:
    """The snapshots of one emitter, dropped when the emitter dies."""

    cdef object ref  # weak reference to the emitter
    cdef dict snapshots  # event -> _LivekitSnapshot


cdef object _lk_missing = object()

# The cache of the emitter that emitted last (apps mostly have one Room):
# found without building an int key and looking it up.  GIL builds only.
cdef _LivekitEmitterCache _lk_last = None

# id(emitter) -> _LivekitEmitterCache.  Global, so livekit's instances carry
# no extra attribute; weak, so it keeps no emitter or handler alive.
cdef dict _lk_emitters = {}


def _lk_forget(object key):
    def forget(ref):
        global _lk_last
        if _lk_last is not None and _lk_last.ref is ref:
            _lk_last = None
        cache = lke_dict_get(<PyObject *>_lk_emitters, key, None)
        if cache is not None and (<_LivekitEmitterCache>cache).ref is ref:
            _lk_emitters.pop(key, None)
    return forget


cdef _LivekitEmitterCache _lk_cache_for(object emitter):
    global _lk_last
    if LKE_LK_MEMO and _lk_last is not None and lke_weakref_is(
            <PyObject *>_lk_last.ref, <PyObject *>emitter):
        return _lk_last
    key = PyLong_FromVoidPtr(<void *>emitter)
    cache = lke_dict_get(<PyObject *>_lk_emitters, key, None)
    if cache is not None and lke_weakref_is(
            <PyObject *>(<_LivekitEmitterCache>cache).ref, <PyObject *>emitter):
        if LKE_LK_MEMO:
            _lk_last = <_LivekitEmitterCache>cache
        return <_LivekitEmitterCache>cache
    fresh = _LivekitEmitterCache()
    try:
        fresh.ref = _lk_weakref.ref(emitter, _lk_forget(key))
    except TypeError:
        return None  # can't be weakly referenced: no cache, arity read per emit
    fresh.snapshots = {}
    _lk_emitters[key] = fresh
    if LKE_LK_MEMO:
        _lk_last = fresh
    return fresh


def livekit_reset():
    """Forget every snapshot (``uninstall()`` calls it)."""
    global _lk_last
    _lk_last = None
    _lk_emitters.clear()


def livekit_snapshot_count():
    """How many emitters have snapshots (tests: nothing is kept alive)."""
    return len(_lk_emitters)


cdef int _lk_handler_failed(object event) except -1:
    # A handler call returned NULL.  livekit's rule: a TypeError propagates,
    # any other Exception is logged, other BaseExceptions propagate.
    if PyErr_ExceptionMatches(PyExc_TypeError) or not PyErr_ExceptionMatches(PyExc_Exception):
        return -1
    lk_log_failure(event, lke_fetch_exception())
    return 0


def livekit_emit(self, event, *args):
    """Trigger all callbacks associated with the given event.

    livekit_events' compiled dispatcher for ``livekit.rtc.EventEmitter``
    (installed by ``livekit_events.install()``): livekit's semantics, each
    handler's signature read once per registration instead of on every emit.
    """
    cdef object events = self._events
    cdef object handlers
    if type(events) is dict:
        handlers = lke_dict_get(<PyObject *>events, event, _lk_missing)
        if handlers is _lk_missing:
            return
    else:
        if event not in events:
            return
        handlers = events[event]

    cdef _LivekitEmitterCache cache = _lk_cache_for(self)
    cdef object snapshot_obj = (
        lke_dict_get(<PyObject *>cache.snapshots, event, None) if cache is not None else None)
    cdef _LivekitSnapshot snapshot
    cdef PyObject *held[LK_STACK_HANDLERS]
    cdef PyObject **callbacks
    cdef object keys = None
    cdef Py_ssize_t n = 0, i, pos = 0, given, passed
    cdef PyObject *key
    cdef bint valid = False
    cdef PyObject *stack[LK_STACK_ARGS + 1]
    cdef PyObject **argv
    cdef size_t offset_flag
    cdef PyObject *result
    cdef unsigned char kind
    cdef bint timed, failed
    cdef int64_t started = 0, elapsed = 0, now

    # The snapshot of the handlers, as livekit's list(self._events[event]):
    # on the C stack when they fit, compared with the last emit's as it goes
    # (no Python code runs in between, and the dict is locked on free-threaded
    # builds, so the keys are read in one consistent step).
    cdef bint on_stack = False
    if type(handlers) is dict:
        with cython.critical_section(handlers):
            if len(<dict>handlers) <= LK_STACK_HANDLERS:
                on_stack = True
                valid = snapshot_obj is not None and (
                    (<_LivekitSnapshot>snapshot_obj).n == len(<dict>handlers))
                while PyDict_Next(<dict>handlers, &pos, &key, NULL):
                    lke_incref(key)
                    held[n] = key
                    if valid and not (<_LivekitSnapshot>snapshot_obj).matches(n, key):
                        valid = False
                    n += 1
    if on_stack:
        callbacks = held
    else:
        # A new list that only this call references: no other thread can
        # change it, so its item array is read without a critical section.
        keys = list(handlers)
        n = len(<list>keys)
        callbacks = PySequence_Fast_ITEMS(keys)
        if snapshot_obj is not None and (<_LivekitSnapshot>snapshot_obj).n == n:
            valid = True
            for i in range(n):
                if not (<_LivekitSnapshot>snapshot_obj).matches(i, callbacks[i]):
                    valid = False
                    break

    try:
        if valid:
            snapshot = <_LivekitSnapshot>snapshot_obj
        else:
            # New or changed handlers: read the new ones' signatures.
            current = (tuple(keys) if keys is not None
                       else tuple([<object>held[i] for i in range(n)]))
            snapshot = _LivekitSnapshot(
                current,
                lk_describe_all(current, (<_LivekitSnapshot>snapshot_obj).entries
                                if snapshot_obj is not None else ()))
            if cache is not None:
                cache.snapshots[event] = snapshot
            if keys is None:
                keys = current  # owns the handlers from here on
                callbacks = PySequence_Fast_ITEMS(current)  # a tuple: immutable
                for i in range(n):
                    lke_decref(held[i])
        given = PyTuple_GET_SIZE(args)
        if given <= LK_STACK_ARGS:
            for i in range(given):
                stack[i + 1] = PyTuple_GET_ITEM(args, i)
            argv = &stack[1]
            offset_flag = PY_VECTORCALL_ARGUMENTS_OFFSET
        else:
            argv = PySequence_Fast_ITEMS(args)
            offset_flag = 0
        timed = _lk_slow_ns != 0  # slow-handler detection (off: one test per emit)
        if timed:
            started = lke_now()  # then one read per call, as the core's walk (_walk.h)
        for i in range(n):
            kind = snapshot.kinds[i]
            failed = False
            if kind == LK_KIND_SLOW:
                lk_call_slow(event, <object>callbacks[i], args)
            elif kind == LK_KIND_LEGACY_ONCE and not lk_legacy_once_pending(
                    self, event, <object>callbacks[i]):
                continue
            else:
                passed = snapshot.accepted[i] if snapshot.accepted[i] < given else given
                result = PyObject_Vectorcall(callbacks[i], argv, <size_t>passed | offset_flag, NULL)
                if result is NULL:
                    failed = True  # logged below, after its time is read
                else:
                    lke_decref(result)
            if timed:
                now = lke_now()  # (sets no exception: the failure's stays pending)
                elapsed = now - started
                started = now
            if failed:
                _lk_handler_failed(event)
                if timed:
                    started = lke_now()  # the log's time is not the next handler's
            if timed:
                if elapsed > _lk_slow_ns:
                    report_slow_handler(event, <object>callbacks[i], elapsed)
                    started = lke_now()  # the report's time is not the next handler's
    finally:
        if keys is None:
            for i in range(n):
                lke_decref(held[i])
