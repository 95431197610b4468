# cython: language_level=3, boundscheck=False, wraparound=False
"""The floor: the benchmark handlers called from a bare compiled loop.

``make_floor(handlers, counts)`` returns a callable ``run(*args)`` that calls
``handlers[i]`` with the first ``min(counts[i], len(args))`` arguments, in
order, and nothing else: no event lookup, no snapshot, no registration state,
no arity check, no exception isolation (an exception simply propagates).

``run`` is a C function with the ``METH_FASTCALL`` convention bound to its
handler table, so calling it builds no argument tuple and no bound method,
and it calls each handler through its vectorcall slot on a prefix of its own
argument array: the cheapest way to get from a Python call site to the
handlers, which is what an emitter can at best approach.  Every
implementation's ``emit`` is timed against it with the very same handler
functions and arguments.
"""

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject

cdef extern from "Python.h":
    ctypedef struct PyMethodDef:
        const char *ml_name
        void *ml_meth
        int ml_flags
        const char *ml_doc
    int METH_FASTCALL
    object PyCFunction_NewEx(PyMethodDef *ml, object self, object module)

cdef extern from *:
    """
    /* The cheapest call there is, as Cython's own calls (and the compiled
       core) make it: through the callable's vectorcall slot. */
    static CYTHON_INLINE PyObject *floor_vectorcall(PyObject *callable, PyObject *const *args,
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
    # Declared as returning `object`: Cython checks for NULL (the exception
    # propagates) and releases the result, which is all the floor does.
    object floor_vectorcall(PyObject *callable, PyObject **args, size_t nargsf)

__all__ = ("make_floor",)


@cython.final
cdef class _FloorTable:
    """The handlers (kept alive by ``handlers``) and how many arguments each takes."""

    cdef tuple handlers
    cdef Py_ssize_t size
    cdef PyObject **callables
    cdef Py_ssize_t *counts

    def __cinit__(self, handlers, counts):
        self.handlers = tuple(handlers)
        counts = tuple(counts)
        if len(counts) != len(self.handlers):
            raise ValueError("one count per handler")
        self.size = len(self.handlers)
        self.callables = <PyObject **>PyMem_Malloc((self.size + 1) * sizeof(PyObject *))
        self.counts = <Py_ssize_t *>PyMem_Malloc((self.size + 1) * sizeof(Py_ssize_t))
        if self.callables == NULL or self.counts == NULL:
            raise MemoryError()
        cdef Py_ssize_t i
        for i in range(self.size):
            self.callables[i] = <PyObject *>self.handlers[i]
            self.counts[i] = counts[i]
            if self.counts[i] < 0:
                raise ValueError("counts must be >= 0")

    def __dealloc__(self):
        PyMem_Free(self.callables)
        PyMem_Free(self.counts)


cdef object _run(_FloorTable table, PyObject **args, Py_ssize_t given):
    # The loop being measured: one vectorcall per handler and a result check.
    cdef Py_ssize_t i, n
    for i in range(table.size):
        n = table.counts[i]
        if n > given:
            n = given
        floor_vectorcall(table.callables[i], args, <size_t>n)
    return None


cdef PyMethodDef _run_def
_run_def.ml_name = "floor"
_run_def.ml_meth = <void *>_run
_run_def.ml_flags = METH_FASTCALL
_run_def.ml_doc = "floor(*args): call every handler with its share of args"


def make_floor(handlers, counts):
    """A fast-call callable ``run(*args)`` over ``handlers`` (see the module doc)."""
    return PyCFunction_NewEx(&_run_def, _FloorTable(handlers, counts), None)
