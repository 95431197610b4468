/* The arity reader's fast path: lke_describe_fast.
 *
 * _core_c.pyx states the rules (which callables it answers for, and when the
 * slow path in _common.describe_callback must answer instead); its pure twin
 * is _core_py.describe_callback.  Both are checked against the slow path by
 * tests/test_arity_fast_path.py.
 */
#ifndef LKE_ARITY_H
#define LKE_ARITY_H

#include "_compat.h"

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
    lazy_annotations =
        f->func_annotations == NULL && f->func_annotate != NULL && f->func_annotate != Py_None;
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
    names = PyCode_GetVarnames(co); /* cached by the code object */
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
        ok = PyUnicode_IsIdentifier(name); /* what str.isidentifier() calls */
        if (ok <= 0) {
            if (ok < 0)
                PyErr_Clear(); /* the slow path will see it again */
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
            if (other == name
                || (PyUnicode_GET_LENGTH(other) == PyUnicode_GET_LENGTH(name)
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
        *required -= 1; /* self was the first required parameter */
    result = 1;
done:
    Py_DECREF(code);
    Py_XDECREF(defaults);
    Py_XDECREF(kwdefaults);
    Py_XDECREF(dict);
    Py_XDECREF(names);
    return result;
}

#endif /* LKE_ARITY_H */
