# Compiled core of livekit_events: registration storage and the hot path of
# emit.  Its pure-Python twin is _core_py.py: same names, same behaviour, same
# data model (read that module's docstring first).  Everything cold
# (signature reading, validation, logging) lives in _common.py.
#
# Thread safety, with and without the GIL.  setup.py builds this module with
# Cython's `freethreading_compatible` directive (free-threaded CPython keeps
# the GIL off when it is imported) on the strength of these rules:
#
# * Every write (`_handlers` entries, `Registration.active`) happens under
#   the registry lock (`_lock()`/`_unlock()`, in a try/finally), one
#   recursive lock for all compiled emitters: `lke_registry_lock`, a PyMutex
#   (3.13+) or PyThread lock plus an owner and a depth, as threading.RLock
#   is built.  `on`/`once` (`_on` and `_add`, both through `_insert`), `off`
#   (`_remove_callback`), `remove_all_listeners` and a once registration
#   firing (`_claim_once`) each read-modify-write under it, so none is lost.
#   Recursive because a callback's __eq__/__hash__ or an event's __hash__,
#   run under it, may register on another emitter; a thread that has to
#   wait for it waits with the GIL released (thread state detached).  (The
#   pure twin's registrations are other objects, under _common.registry_lock.)
# * Reading a callback's arity (`lke_describe_fast`) happens before the lock
#   is taken and writes nothing shared: it reads the function's fields as
#   their attribute getters do (strong references, inside a critical section
#   on the function on free-threaded builds).
# * `_handlers` values are tuples, replaced and never mutated (copy-on-write).
#   `emit` never takes the lock: it gets a strong reference to the current
#   tuple with PyDict_GetItemRef (`lke_dict_get`; the dict locks itself on
#   free-threaded builds) and walks that snapshot, whose Registrations and
#   callbacks it keeps alive.  Code under the lock may use borrowed lookups.
# * Registration fields other than `active` are set before the registration
#   is published (by the dict store) and never change.  `active` only goes
#   from 1 to 0, under the lock.  A lock-free reader (emit, listeners,
#   listener_count) that sees a stale 1 is racing the removal, and behaves
#   as if it had run just before it; a once registration is never called on
#   that read alone: `_claim_once` tests and clears `active` under the lock,
#   so exactly one emit, in any thread or nesting, claims it.
# * event_names and _events copy `list(_handlers.items())`, which CPython
#   builds under the dict's own lock on free-threaded builds.
# * So, for any code in this module: no borrowed reference out of a dict or
#   list that another thread may change (lke_dict_get gives a strong one), and
#   a check-then-act on shared state only under the registry lock (or a critical
#   section).  The directive covers the whole module.

cimport cython
from cpython.dict cimport PyDict_SetItem
from cpython.object cimport PyCFunction, PyMethodDef, PyObject, PyTypeObject
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memcpy
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM

import inspect as _inspect
import keyword as _keyword

from ._common import (
    ALL_ARGUMENTS, OnceRequest, arity_error, log_handler_failure)
from ._common import describe_callback as _describe_slow

cdef extern from "Python.h":
    ctypedef struct PyTupleObject:
        PyObject *ob_item[1]
    PyObject *PyObject_Vectorcall(
        PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
    const size_t PY_VECTORCALL_ARGUMENTS_OFFSET
    const Py_ssize_t PY_SSIZE_T_MAX
    int PyErr_ExceptionMatches(PyObject *exc)
    PyObject *PyExc_Exception
    void Py_DECREF_ptr "Py_DECREF"(PyObject *obj)
    const int METH_FASTCALL
    const int METH_KEYWORDS
    object PyDescr_NewMethod(PyTypeObject *type, PyMethodDef *meth)
    void PyType_Modified(PyTypeObject *type)
    PyTypeObject PyMethod_Type
    PyTypeObject *Py_TYPE_ptr "Py_TYPE"(PyObject *obj)

cdef extern from *:
    """
    /* The exception that is set, normalised and with its traceback, as a new
       reference; the error indicator is cleared.  Called only when one is set. */
    static PyObject *lke_fetch_exception(void) {
    #if PY_VERSION_HEX >= 0x030C0000
        return PyErr_GetRaisedException();
    #else
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (tb != NULL) {
            PyException_SetTraceback(value, tb);
            Py_DECREF(tb);
        }
        Py_XDECREF(type);
        return value;
    #endif
    }
    """
    object lke_fetch_exception()

# Arguments are copied into a stack buffer with one spare slot in front, so
# that bound methods can use PY_VECTORCALL_ARGUMENTS_OFFSET (prepend self in
# place instead of allocating).  More arguments than this use the tuple as is.
cdef enum:
    STACK_ARGS = 8

__all__ = ("EmitterCore", "Registration", "describe_callback")


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

cdef extern from *:
    """
    #ifdef Py_GIL_DISABLED
    #define LKE_BEGIN_CRITICAL_SECTION(o) Py_BEGIN_CRITICAL_SECTION(o)
    #define LKE_END_CRITICAL_SECTION() Py_END_CRITICAL_SECTION()
    #else
    #define LKE_BEGIN_CRITICAL_SECTION(o) {
    #define LKE_END_CRITICAL_SECTION() }
    #endif

    #define LKE_NOT_PLAIN (CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR)
    /* Longer parameter lists go to the slow path (names are compared pairwise). */
    #define LKE_FAST_MAX_PARAMETERS 32

    /* Returns 1 with *accepted (-1: every argument) and *required set to what
       _common.describe_callback returns for `callback`; 0 when the slow path
       must answer; -1 with an exception set.  `empty` is
       inspect.Parameter.empty, `keywords` frozenset(keyword.kwlist). */
    static int lke_describe_fast(PyObject *callback, PyObject *empty, PyObject *keywords,
                                 Py_ssize_t *accepted, Py_ssize_t *required) {
        PyObject *func;
        PyFunctionObject *f;
        PyCodeObject *co;
        PyObject *code, *defaults, *kwdefaults, *dict, *names = NULL;
        int bound, flags, lazy_annotations = 0, result = 0, ok;
        Py_ssize_t argcount, kwonly, total, ndefaults = 0, i, j;

        if (Py_IS_TYPE(callback, &PyFunction_Type)) {
            func = callback;
            bound = 0;
        } else if (Py_IS_TYPE(callback, &PyMethod_Type)
                   && Py_IS_TYPE(PyMethod_GET_FUNCTION(callback), &PyFunction_Type)) {
            func = PyMethod_GET_FUNCTION(callback);
            bound = 1;
        } else {
            return 0;
        }
        f = (PyFunctionObject *)func;
        LKE_BEGIN_CRITICAL_SECTION(func);
        code = f->func_code;
        Py_INCREF(code);
        defaults = f->func_defaults;
        Py_XINCREF(defaults);
        kwdefaults = f->func_kwdefaults;
        Py_XINCREF(kwdefaults);
        dict = f->func_dict;
        Py_XINCREF(dict);
    #if PY_VERSION_HEX >= 0x030E0000
        lazy_annotations = f->func_annotations == NULL && f->func_annotate != NULL
                           && f->func_annotate != Py_None;
    #endif
        LKE_END_CRITICAL_SECTION();

        co = (PyCodeObject *)code;
        flags = co->co_flags;
        argcount = co->co_argcount;
        kwonly = co->co_kwonlyargcount;
        if (lazy_annotations || (flags & LKE_NOT_PLAIN) || (bound && argcount == 0))
            goto done;
        if (dict != NULL && (!PyDict_CheckExact(dict) || PyDict_Size(dict) != 0))
            goto done;
        total = argcount + kwonly + ((flags & CO_VARARGS) != 0) + ((flags & CO_VARKEYWORDS) != 0);
        if (total > LKE_FAST_MAX_PARAMETERS)
            goto done;

        /* The parameter names: co_varnames[:total]. */
    #if PY_VERSION_HEX >= 0x030C0000
        names = PyCode_GetVarnames(co);  /* cached by the code object */
        if (names == NULL) {
            result = -1;
            goto done;
        }
    #elif PY_VERSION_HEX >= 0x030B0000
        /* 3.11 builds co_varnames anew on every read.  It lists the entries of
           co_localsplusnames whose kind has CO_FAST_LOCAL (0x20 in 3.11's
           pycore_code.h), in order: where the leading `total` all have it,
           they are co_varnames[:total]. */
        names = co->co_localsplusnames;
        Py_INCREF(names);
        if (PyTuple_GET_SIZE(names) < total)
            goto done;
        {
            const char *kinds = PyBytes_AS_STRING(co->co_localspluskinds);
            for (i = 0; i < total; i++)
                if (!(kinds[i] & 0x20))
                    goto done;
        }
    #else
        names = co->co_varnames;
        Py_INCREF(names);
    #endif
        if (PyTuple_GET_SIZE(names) < total)
            goto done;
        for (i = 0; i < total; i++) {
            PyObject *name = PyTuple_GET_ITEM(names, i);
            if (!PyUnicode_CheckExact(name))
                goto done;
            ok = PyUnicode_IsIdentifier(name);  /* what str.isidentifier() calls */
            if (ok <= 0) {
                if (ok < 0)
                    PyErr_Clear();  /* the slow path will see it again */
                goto done;
            }
            ok = PySet_Contains(keywords, name);
            if (ok != 0) {
                if (ok < 0)
                    result = -1;
                goto done;
            }
            for (j = 0; j < i; j++) {
                PyObject *other = PyTuple_GET_ITEM(names, j);
                if (other == name || (PyUnicode_GET_LENGTH(other) == PyUnicode_GET_LENGTH(name)
                                      && PyUnicode_Compare(other, name) == 0))
                    goto done;
            }
        }

        if (defaults != NULL) {
            if (!PyTuple_CheckExact(defaults))
                goto done;
            ndefaults = PyTuple_GET_SIZE(defaults);
            if (ndefaults > argcount)
                goto done;
            for (i = 0; i < ndefaults; i++)
                if (PyTuple_GET_ITEM(defaults, i) == empty)
                    goto done;
        }
        if (kwonly > 0) {
            PyObject *key, *value;
            Py_ssize_t pos = 0;
            if (kwdefaults == NULL || !PyDict_CheckExact(kwdefaults))
                goto done;
            ok = 1;
            LKE_BEGIN_CRITICAL_SECTION(kwdefaults);
            /* str keys only: looking the names up then runs no Python code. */
            while (PyDict_Next(kwdefaults, &pos, &key, NULL)) {
                if (!PyUnicode_CheckExact(key)) {
                    ok = 0;
                    break;
                }
            }
            for (i = argcount; ok == 1 && i < argcount + kwonly; i++) {
                /* Borrowed, only compared, inside the critical section. */
                value = PyDict_GetItemWithError(kwdefaults, PyTuple_GET_ITEM(names, i));
                if (value == NULL)
                    ok = PyErr_Occurred() ? -1 : 0;
                else if (value == empty)
                    ok = 0;
            }
            LKE_END_CRITICAL_SECTION();
            if (ok != 1) {
                if (ok < 0)
                    result = -1;
                goto done;
            }
        }

        *accepted = (flags & CO_VARARGS) ? -1 : argcount - bound;
        *required = argcount - ndefaults;
        if (bound && *required > 0)
            *required -= 1;  /* self was the first required parameter */
        result = 1;
    done:
        Py_DECREF(code);
        Py_XDECREF(defaults);
        Py_XDECREF(kwdefaults);
        Py_XDECREF(dict);
        Py_XDECREF(names);
        return result;
    }
    """
    int lke_describe_fast(object callback, object empty, object keywords,
                          Py_ssize_t *accepted, Py_ssize_t *required) except -1

if ALL_ARGUMENTS != -1:
    raise ImportError("_common.ALL_ARGUMENTS must be -1 (lke_describe_fast returns it)")

cdef object _PARAMETER_EMPTY = _inspect.Parameter.empty
cdef object _KEYWORDS = frozenset(_keyword.kwlist)  # what inspect.Parameter rejects


cdef int _describe(object callback, Py_ssize_t *accepted, Py_ssize_t *required) except -1:
    if not lke_describe_fast(callback, _PARAMETER_EMPTY, _KEYWORDS, accepted, required):
        accepted[0], required[0] = _describe_slow(callback)
    return 0


def describe_callback(callback):
    """``_common.describe_callback(callback)``, read directly from ``__code__``
    for plain functions and their bound methods (the common callbacks)."""
    cdef Py_ssize_t accepted, required
    _describe(callback, &accepted, &required)
    return accepted, required


# ---------------------------------------------------------------------------
# The registry lock: recursive, like threading.RLock, in C.  Calling an RLock's
# acquire and release from here costs about 60 ns a pair (argument parsing,
# two calls); this costs a few.  One lock for every compiled emitter (the
# pure twin, whose registrations are other objects, has _common.registry_lock).

cdef extern from *:
    """
    typedef struct {
    #if PY_VERSION_HEX >= 0x030D0000
        PyMutex mutex;  /* parks with the thread state detached when contended */
    #else
        PyThread_type_lock mutex;
    #endif
        unsigned long owner;  /* PyThread_get_thread_ident() of the holder, 0: none */
        unsigned long count;  /* the holder's depth; only the holder touches it */
    } lke_rlock;

    static lke_rlock lke_registry_lock;  /* zeroed: a zeroed PyMutex is unlocked */

    /* `owner` is read without the mutex to spot re-entry.  Only this thread
       stores its own id there (and clears it before unlocking), so a stale
       read can't be this thread's id: relaxed atomics suffice where there is
       no GIL; with a GIL, every access happens while holding it. */
    #ifdef Py_GIL_DISABLED
    #define LKE_OWNER_LOAD(l) _Py_atomic_load_ulong_relaxed(&(l)->owner)
    #define LKE_OWNER_STORE(l, v) _Py_atomic_store_ulong_relaxed(&(l)->owner, (v))
    #else
    #define LKE_OWNER_LOAD(l) ((l)->owner)
    #define LKE_OWNER_STORE(l, v) ((l)->owner = (v))
    #endif

    static int lke_rlock_init(lke_rlock *l) {
    #if PY_VERSION_HEX < 0x030D0000
        l->mutex = PyThread_allocate_lock();
        if (l->mutex == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    #endif
        return 0;
    }

    static CYTHON_INLINE void lke_rlock_acquire(lke_rlock *l) {
        unsigned long me = PyThread_get_thread_ident();
        if (LKE_OWNER_LOAD(l) == me) {
            l->count++;
            return;
        }
    #if PY_VERSION_HEX >= 0x030D0000
        PyMutex_Lock(&l->mutex);
    #else
        if (!PyThread_acquire_lock(l->mutex, NOWAIT_LOCK)) {
            /* Held by another thread (which may be running a callback's
               __eq__): wait without the GIL. */
            Py_BEGIN_ALLOW_THREADS
            PyThread_acquire_lock(l->mutex, WAIT_LOCK);
            Py_END_ALLOW_THREADS
        }
    #endif
        LKE_OWNER_STORE(l, me);
        l->count = 1;
    }

    static CYTHON_INLINE void lke_rlock_release(lke_rlock *l) {
        if (--l->count == 0) {
            LKE_OWNER_STORE(l, 0);
    #if PY_VERSION_HEX >= 0x030D0000
            PyMutex_Unlock(&l->mutex);
    #else
            PyThread_release_lock(l->mutex);
    #endif
        }
    }
    """
    ctypedef struct lke_rlock:
        pass
    lke_rlock lke_registry_lock
    int lke_rlock_init(lke_rlock *l) except -1
    void lke_rlock_acquire(lke_rlock *l) noexcept
    void lke_rlock_release(lke_rlock *l) noexcept

lke_rlock_init(&lke_registry_lock)

cdef object _OnceRequest = OnceRequest


cdef inline void _lock() noexcept:
    lke_rlock_acquire(&lke_registry_lock)


cdef inline void _unlock() noexcept:
    lke_rlock_release(&lke_registry_lock)


@cython.final
@cython.freelist(16)
cdef class Registration:
    """One ``on`` or ``once`` registration of a callback for an event."""

    cdef readonly object callback
    # How many leading arguments the callback gets; PY_SSIZE_T_MAX for all.
    cdef readonly Py_ssize_t accepted
    cdef readonly Py_ssize_t required
    cdef Py_hash_t hash
    cdef readonly bint once
    # Cleared when removed, so emits walking an older tuple skip it.
    cdef readonly bint active

    def __init__(self, object callback, Py_ssize_t accepted, Py_ssize_t required, bint once):
        _init_registration(self, callback, accepted, required, once)

    cdef bint matches(self, object callback, Py_hash_t callback_hash) except -1:
        # Dict-key equality: same hash, then identity or ==.
        return self.hash == callback_hash and (
            self.callback is callback or self.callback == callback
        )


cdef int _init_registration(Registration self, object callback, Py_ssize_t accepted,
                            Py_ssize_t required, bint once) except -1:
    # Before the registration is published: no other thread sees it yet.
    self.hash = hash(callback)
    self.callback = callback
    self.accepted = PY_SSIZE_T_MAX if accepted == ALL_ARGUMENTS else accepted
    self.required = required
    self.once = once
    self.active = True
    return 0


cdef inline Registration _new_registration(object callback, Py_ssize_t accepted,
                                           Py_ssize_t required, bint once):
    # The type's tp_new directly, without the constructor's argument parsing.
    cdef Registration registration = Registration.__new__(Registration)
    _init_registration(registration, callback, accepted, required, once)
    return registration


cdef extern from *:
    """
    /* dict.get(key, dflt) as a new reference, safe without the GIL.  Cython's
       own dict.get (as of 3.3) takes a borrowed reference from
       PyDict_GetItemWithError and increfs it afterwards: on free-threaded
       CPython another thread can replace that value, and free it, in between.
       PyDict_GetItemRef (3.13+, where free threading exists) takes the
       reference inside the lookup.  Same cost on GIL builds. */
    static CYTHON_INLINE PyObject *lke_dict_get(PyObject *dict, PyObject *key,
                                                PyObject *dflt) {
        PyObject *value;
    #if PY_VERSION_HEX >= 0x030D0000
        int found = PyDict_GetItemRef(dict, key, &value);
        if (found < 0)
            return NULL;
        if (found == 0) {
            Py_INCREF(dflt);
            value = dflt;
        }
    #else
        value = PyDict_GetItemWithError(dict, key);
        if (value == NULL) {
            if (PyErr_Occurred())
                return NULL;
            value = dflt;
        }
        Py_INCREF(value);
    #endif
        return value;
    }
    """
    # Lock-free readers (emit, listeners, listener_count) use this; code that
    # holds the registry lock may use dict.get, as no writer can run concurrently.
    # `d` is passed as PyObject* so that Cython doesn't incref the attribute.
    object lke_dict_get(PyObject *d, object key, object dflt)


cdef tuple _tuple_append(tuple entries, Registration registration):
    # entries + (registration,), without the 1-tuple.
    cdef Py_ssize_t i, n = PyTuple_GET_SIZE(entries)
    cdef tuple result = PyTuple_New(n + 1)
    cdef object item
    for i in range(n):
        item = <object>PyTuple_GET_ITEM(entries, i)
        Py_INCREF(item)
        PyTuple_SET_ITEM(result, i, item)
    Py_INCREF(registration)
    PyTuple_SET_ITEM(result, n, registration)
    return result


cdef tuple _tuple_active(tuple entries, Py_ssize_t count):
    # The `count` active registrations of entries, in order.
    cdef Py_ssize_t i, k = 0
    cdef tuple result = PyTuple_New(count)
    cdef object item
    for i in range(PyTuple_GET_SIZE(entries)):
        item = <object>PyTuple_GET_ITEM(entries, i)
        if (<Registration>item).active:
            Py_INCREF(item)
            PyTuple_SET_ITEM(result, k, item)
            k += 1
    return result


cdef inline void _replace_entries(dict handlers, object event, tuple entries) except *:
    # Caller holds the registry lock.  Empty events are dropped so that
    # event_names() lists only events with handlers.
    if entries:
        handlers[event] = entries
    else:
        handlers.pop(event, None)


cdef class EmitterCore:
    """Registration storage and ``emit``; the public class adds the API."""

    # event -> non-empty tuple of Registration, in call order.  Replaced, never
    # mutated (copy-on-write), so emit iterates a snapshot for free.
    cdef dict _handlers

    def __cinit__(self, *args, **kwargs):
        self._handlers = {}

    def __init__(self):
        if self._handlers:
            self.remove_all_listeners()

    # emit(event, *args) is the C function _emit below, installed on this
    # class as a METH_FASTCALL method descriptor.

    cdef int _handler_failed(self, object event) except -1:
        # A handler call returned NULL.  Exceptions are logged and swallowed;
        # other BaseExceptions stay set and propagate out of emit.
        if not PyErr_ExceptionMatches(PyExc_Exception):
            return -1
        log_handler_failure(event, lke_fetch_exception())
        return 0

    cdef bint _claim_once(self, object event, Registration registration) except -1:
        # Test-and-clear under the registry lock, where every write to `active`
        # happens: without the GIL (free-threaded CPython) two threads that
        # both saw `active` set before calling here cannot both claim it.
        # Nested emits on this thread re-enter the lock and see it cleared.
        _lock()
        try:
            if not registration.active:
                return False
            registration.active = False
            entries = self._handlers.get(event)
            if entries is not None:
                _replace_entries(
                    self._handlers, event,
                    tuple([r for r in <tuple>entries if r is not registration]))
        finally:
            _unlock()
        return True

    def _on(self, event, callback):
        # on(event, callback) after the shim: check the event, read the
        # callback's arity (or unwrap once's request), register; return callback.
        cdef Py_ssize_t accepted, required
        hash(event)
        if type(callback) is _OnceRequest:
            self._insert(event, _new_registration(
                callback.__wrapped__, callback.accepted, callback.required, True))
        else:
            _describe(callback, &accepted, &required)
            self._insert(event, _new_registration(callback, accepted, required, False))
        return callback

    def _describe(self, callback):
        cdef Py_ssize_t accepted, required
        _describe(callback, &accepted, &required)
        return accepted, required

    def _add(self, event, callback, Py_ssize_t accepted, Py_ssize_t required, bint once):
        self._insert(event, _new_registration(callback, accepted, required, once))

    cdef int _insert(self, object event, Registration registration) except -1:
        cdef Registration existing
        cdef object callback = registration.callback
        cdef tuple entries
        cdef Py_ssize_t i, n
        _lock()
        try:
            entries = <tuple>self._handlers.get(event)
            if entries is None:
                self._handlers[event] = (registration,)
                return 0
            n = PyTuple_GET_SIZE(entries)
            if not registration.once:
                for i in range(n):
                    # Borrowed: `entries` holds them, whatever == does.
                    existing = <Registration>PyTuple_GET_ITEM(entries, i)
                    if not existing.once and existing.matches(callback, registration.hash):
                        return 0  # already registered: keeps its first position
            self._handlers[event] = _tuple_append(entries, registration)
        finally:
            _unlock()
        return 0

    def off(self, event, callback):
        """Remove every registration of ``callback`` for ``event`` (``on`` and
        pending ``once`` ones).  Unknown events or callbacks are ignored."""
        self._remove_callback(event, callback)

    cdef int _remove_callback(self, object event, object callback) except -1:
        cdef Registration registration
        cdef Py_hash_t callback_hash
        cdef tuple entries
        cdef Py_ssize_t i, n, matched = 0, kept = 0
        # Every match is found before any is touched (== may raise): one mark
        # per entry, on the stack for up to 64 entries.
        cdef unsigned char small[64]
        cdef unsigned char *marks = small
        _lock()
        try:
            entries = <tuple>self._handlers.get(event)
            if entries is None:
                return 0
            callback_hash = hash(callback)
            n = PyTuple_GET_SIZE(entries)
            if n > 64:
                marks = <unsigned char *>PyMem_Malloc(n)
                if marks is NULL:
                    raise MemoryError()
            for i in range(n):
                marks[i] = (<Registration>PyTuple_GET_ITEM(entries, i)).matches(
                    callback, callback_hash)
                matched += marks[i]
            if not matched:
                return 0
            for i in range(n):
                registration = <Registration>PyTuple_GET_ITEM(entries, i)
                if marks[i]:
                    registration.active = False
                elif registration.active:  # == may have removed others meanwhile
                    kept += 1
            _replace_entries(self._handlers, event, _tuple_active(entries, kept))
        finally:
            if marks is not small:
                PyMem_Free(marks)
            _unlock()
        return 0

    def remove_all_listeners(self, event=None):
        """Remove every handler of ``event``, or of every event if it is None."""
        cdef Registration registration
        _lock()
        try:
            if event is None:
                dropped = list(self._handlers.values())
                self._handlers.clear()
            else:
                entries = self._handlers.pop(event, None)
                dropped = [entries] if entries is not None else []
            for entries in dropped:
                for registration in <tuple>entries:
                    registration.active = False
        finally:
            _unlock()

    def listeners(self, event):
        """The callbacks of ``event`` as registered, in call order."""
        entries = lke_dict_get(<PyObject *>self._handlers, event, ())
        return [(<Registration>r).callback for r in <tuple>entries if (<Registration>r).active]

    def listener_count(self, event):
        """How many registrations ``event`` has (each pending ``once`` counts)."""
        cdef Py_ssize_t n = 0
        for r in <tuple>lke_dict_get(<PyObject *>self._handlers, event, ()):
            if (<Registration>r).active:
                n += 1
        return n

    def event_names(self):
        """The events that have at least one handler, in first-registration order."""
        return [e for e, entries in list(self._handlers.items())
                if any([(<Registration>r).active for r in <tuple>entries])]

    @property
    def _events(self):
        """livekit compatibility: a fresh ``{event: [callbacks]}`` mapping."""
        return {
            e: [(<Registration>r).callback for r in <tuple>entries if (<Registration>r).active]
            for e, entries in list(self._handlers.items())
        }


# ---------------------------------------------------------------------------
# emit, the hot path.
#
# A Cython `def emit(self, event, *args)` builds an argument tuple and goes
# through a cyfunction on every call.  Instead, emit is a C function with
# CPython's METH_FASTCALL convention, installed on EmitterCore as a plain
# method descriptor (below): it reads the caller's argument array in place,
# so an emit allocates nothing, and `self.emit(...)` makes no bound method.
# Each handler gets a vectorcall on a prefix of that array.

cdef extern from *:
    """
    /* Call `callable` as Cython's own calls do: through its vectorcall slot
       when it has one (Python functions, bound methods, builtins), skipping
       PyObject_Vectorcall's out-of-line wrapper and its result sanity check;
       anything else goes through PyObject_Vectorcall. */
    static CYTHON_INLINE PyObject *lke_vectorcall(PyObject *callable, PyObject *const *args,
                                                  size_t nargsf) {
        PyTypeObject *tp = Py_TYPE(callable);
        if (PyType_HasFeature(tp, Py_TPFLAGS_HAVE_VECTORCALL)) {
            /* PyVectorcall_Function, inlined (it is out of line in 3.11). */
            vectorcallfunc func;
            memcpy(&func, (char *)callable + tp->tp_vectorcall_offset, sizeof(func));
            if (func != NULL)
                return func(callable, args, nargsf, NULL);
        }
        return PyObject_Vectorcall(callable, args, nargsf, NULL);
    }
    """
    PyObject *lke_vectorcall(PyObject *callable, PyObject **args, size_t nargsf)


cdef object _emit(EmitterCore self, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    if kwnames is not NULL or nargs < 1:
        return _emit_unusual(self, args, nargs, kwnames)
    # The event and the arguments are borrowed from the caller's array, which
    # outlives this call.
    cdef PyObject *event = args[0]
    # A strong reference: keeps every Registration, and so every callback,
    # alive while handlers run, whatever they change.
    cdef object entries = lke_dict_get(<PyObject *>self._handlers, <object>event, None)
    if entries is None:
        return None
    cdef PyObject **argv = &args[1]
    cdef Py_ssize_t given = nargs - 1
    cdef Py_ssize_t count = PyTuple_GET_SIZE(entries)
    cdef Py_ssize_t i, passed
    # Bound-method handlers get the arguments copied here, with a spare slot
    # in front so that they prepend self in place (PY_VECTORCALL_ARGUMENTS_OFFSET):
    # the caller's array must not be written to.  Copied at most once per emit.
    cdef PyObject *stack[STACK_ARGS + 1]
    cdef PyObject **offset_argv = NULL
    cdef PyObject *item
    cdef PyObject *callback
    cdef PyObject *result

    for i in range(count):
        # Borrowed: `entries` keeps the registration alive, and it its callback.
        item = PyTuple_GET_ITEM(entries, i)
        if not (<Registration>item).active:
            continue  # removed while this emit runs
        if (<Registration>item).once and not self._claim_once(<object>event, <Registration>item):
            continue
        if given < (<Registration>item).required:
            raise arity_error(<object>event, (<Registration>item).callback,
                              (<Registration>item).required, given)
        passed = (<Registration>item).accepted
        if passed > given:
            passed = given
        callback = <PyObject *>(<Registration>item).callback
        if Py_TYPE_ptr(callback) is not &PyMethod_Type or given > STACK_ARGS:
            result = lke_vectorcall(callback, argv, <size_t>passed)
        else:
            if offset_argv is NULL:
                memcpy(&stack[1], argv, given * sizeof(PyObject *))
                offset_argv = &stack[1]
            result = lke_vectorcall(
                callback, offset_argv, <size_t>passed | PY_VECTORCALL_ARGUMENTS_OFFSET)
        # Checking the result instead of a try/except per handler keeps
        # isolation free when nothing fails.
        if result is NULL:
            self._handler_failed(<object>event)
        else:
            Py_DECREF_ptr(result)
    return None


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
PyDict_SetItem(<object>(<PyTypeObject *>EmitterCore).tp_dict, "emit",
               PyDescr_NewMethod(<PyTypeObject *>EmitterCore, &_emit_def))
PyType_Modified(<PyTypeObject *>EmitterCore)


# ===========================================================================
# livekit.rtc acceleration (issue 7).  Owned by livekit_events.install()
# (_livekit.py); twin: the same section at the end of _core_py.py; cold path:
# _livekit_common.py.  Nothing above this line uses it.
#
# ``livekit_emit`` is what install() puts on livekit.rtc.EventEmitter as
# ``emit``.  It keeps livekit's emit: the handlers are the keys of
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
# ===========================================================================

from cpython.dict cimport PyDict_Next
from cpython.long cimport PyLong_FromVoidPtr

import weakref as _lk_weakref

from . import _livekit_common as _lk_common
from ._livekit_common import lk_call_slow, lk_describe_all, lk_legacy_once_pending, lk_log_failure

cdef extern from "Python.h":
    ctypedef struct PyListObject:
        PyObject **ob_item
    PyObject *PyExc_TypeError
    void lke_incref "Py_INCREF"(PyObject *obj)
    void lke_decref "Py_DECREF"(PyObject *obj)

cdef extern from *:
    """
    /* Whether the weak reference `ref` refers to `obj`, a live object other
       than None.  The referent is compared, never used. */
    static int lke_weakref_is(PyObject *ref, PyObject *obj) {
    #if PY_VERSION_HEX >= 0x030D0000
        PyObject *target = NULL;
        int found = PyWeakref_GetRef(ref, &target);
        if (found <= 0) {
            if (found < 0) PyErr_Clear();
            return 0;
        }
        Py_DECREF(target);
        return target == obj;
    #else
        return obj != Py_None && PyWeakref_GET_OBJECT(ref) == obj;
    #endif
    }

    """
    bint lke_weakref_is(PyObject *ref, PyObject *obj)

cdef extern from *:
    """
    /* The one-entry memo of _lk_cache_for is a plain global: only with the GIL. */
    #ifdef Py_GIL_DISABLED
    #define LKE_LK_MEMO 0
    #else
    #define LKE_LK_MEMO 1
    #endif
    """
    const bint LKE_LK_MEMO

cdef enum:
    # Handlers of one event kept on the C stack during an emit; more use a list.
    LK_STACK_HANDLERS = 16
    LK_STACK_ARGS = 8
    # _livekit_common's kinds (checked at import below).
    LK_KIND_CACHED = 0
    LK_KIND_SLOW = 1
    LK_KIND_LEGACY_ONCE = 2

if (_lk_common.LK_CACHED, _lk_common.LK_SLOW, _lk_common.LK_LEGACY_ONCE) != (0, 1, 2):
    raise ImportError("_livekit_common's handler kinds don't match _core_c's")


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

    def __cinit__(self, tuple keys, list entries):
        cdef Py_ssize_t i, n = len(entries)
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
            self.accepted[i] = (
                PY_SSIZE_T_MAX if accepted == _lk_common.LK_ALL else <Py_ssize_t>accepted)
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
        keys = list(handlers)
        n = len(<list>keys)
        callbacks = (<PyListObject *>keys).ob_item
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
                callbacks = &(<PyTupleObject *>current).ob_item[0]
                for i in range(n):
                    lke_decref(held[i])
        given = PyTuple_GET_SIZE(args)
        if given <= LK_STACK_ARGS:
            for i in range(given):
                stack[i + 1] = PyTuple_GET_ITEM(args, i)
            argv = &stack[1]
            offset_flag = PY_VECTORCALL_ARGUMENTS_OFFSET
        else:
            argv = (<PyTupleObject *>args).ob_item
            offset_flag = 0
        for i in range(n):
            kind = snapshot.kinds[i]
            if kind == LK_KIND_SLOW:
                lk_call_slow(event, <object>callbacks[i], args)
                continue
            if kind == LK_KIND_LEGACY_ONCE and not lk_legacy_once_pending(
                    self, event, <object>callbacks[i]):
                continue
            passed = snapshot.accepted[i] if snapshot.accepted[i] < given else given
            result = PyObject_Vectorcall(callbacks[i], argv, <size_t>passed | offset_flag, NULL)
            if result is NULL:
                _lk_handler_failed(event)
            else:
                Py_DECREF_ptr(result)
    finally:
        if keys is None:
            for i in range(n):
                lke_decref(held[i])
