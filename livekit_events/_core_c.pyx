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
#   `_common.registry_lock`, one process-wide RLock.  `on`/`once` (`_add`),
#   `off` (`_remove`), `remove_all_listeners` and a once registration firing
#   (`_claim_once`) each read-modify-write under it, so none is lost.
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
#   a check-then-act on shared state only under registry_lock (or a critical
#   section).  The directive covers the whole module.

cimport cython
from cpython.dict cimport PyDict_SetItem
from cpython.object cimport PyCFunction, PyMethodDef, PyObject, PyTypeObject
from libc.string cimport memcpy
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE

from ._common import ALL_ARGUMENTS, arity_error, log_handler_failure, registry_lock

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

__all__ = ("EmitterCore", "Registration")


@cython.final
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

    def __cinit__(self, object callback, Py_ssize_t accepted, Py_ssize_t required, bint once):
        self.callback = callback
        self.accepted = PY_SSIZE_T_MAX if accepted == ALL_ARGUMENTS else accepted
        self.required = required
        self.hash = hash(callback)
        self.once = once
        self.active = True

    cdef bint matches(self, object callback, Py_hash_t callback_hash) except -1:
        # Dict-key equality: same hash, then identity or ==.
        return self.hash == callback_hash and (
            self.callback is callback or self.callback == callback
        )


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
    # holds registry_lock may use dict.get, as no writer can run concurrently.
    # `d` is passed as PyObject* so that Cython doesn't incref the attribute.
    object lke_dict_get(PyObject *d, object key, object dflt)


cdef inline void _replace_entries(dict handlers, object event, tuple entries) except *:
    # Caller holds registry_lock.  Empty events are dropped so that
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
        # Test-and-clear under registry_lock, where every write to `active`
        # happens: without the GIL (free-threaded CPython) two threads that
        # both saw `active` set before calling here cannot both claim it.
        # Nested emits on this thread re-enter the RLock and see it cleared.
        with registry_lock:
            if not registration.active:
                return False
            registration.active = False
            entries = self._handlers.get(event)
            if entries is not None:
                _replace_entries(
                    self._handlers, event,
                    tuple([r for r in <tuple>entries if r is not registration]))
        return True

    def _add(self, event, callback, Py_ssize_t accepted, Py_ssize_t required, bint once):
        cdef Registration registration = Registration(callback, accepted, required, once)
        cdef Registration existing
        with registry_lock:
            entries = self._handlers.get(event, ())
            if not once:
                for existing in <tuple>entries:
                    if not existing.once and existing.matches(callback, registration.hash):
                        return  # already registered: keeps its first position
            self._handlers[event] = <tuple>entries + (registration,)

    def _remove(self, event, callback):
        cdef Registration registration
        cdef Py_hash_t callback_hash
        with registry_lock:
            entries = self._handlers.get(event)
            if entries is None:
                return
            callback_hash = hash(callback)
            removed = [r for r in <tuple>entries
                       if (<Registration>r).matches(callback, callback_hash)]
            if not removed:
                return
            for registration in removed:
                registration.active = False
            _replace_entries(
                self._handlers, event,
                tuple([r for r in <tuple>entries if (<Registration>r).active]))

    def remove_all_listeners(self, event=None):
        """Remove every handler of ``event``, or of every event if it is None."""
        cdef Registration registration
        with registry_lock:
            if event is None:
                dropped = list(self._handlers.values())
                self._handlers.clear()
            else:
                entries = self._handlers.pop(event, None)
                dropped = [entries] if entries is not None else []
            for entries in dropped:
                for registration in <tuple>entries:
                    registration.active = False

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

