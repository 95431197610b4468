/* Build and version branches of the compiled core, in one place.
 *
 * Only public (or documented-unstable) CPython C-API is used; where an older
 * CPython lacks a function, the branch for it is here.  Every other header
 * includes this one.
 */
#ifndef LKE_COMPAT_H
#define LKE_COMPAT_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(_MSC_VER)
#define LKE_INLINE __inline
#else
#define LKE_INLINE inline
#endif

#if defined(_MSC_VER)
#define LKE_ALWAYS_INLINE static __forceinline
#elif defined(__GNUC__) || defined(__clang__)
#define LKE_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define LKE_ALWAYS_INLINE static LKE_INLINE
#endif

/* Free-threaded builds lock an object as its own attribute getters do. */
#ifdef Py_GIL_DISABLED
#define LKE_BEGIN_CRITICAL_SECTION(o) Py_BEGIN_CRITICAL_SECTION(o)
#define LKE_END_CRITICAL_SECTION() Py_END_CRITICAL_SECTION()
#else
#define LKE_BEGIN_CRITICAL_SECTION(o) {
#define LKE_END_CRITICAL_SECTION() }
#endif

/* The exception that is set, normalised and with its traceback, as a new
   reference; the error indicator is cleared.  Called only when one is set. */
static LKE_INLINE PyObject *lke_fetch_exception(void) {
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

/* dict.get(key, dflt) as a new reference, safe without the GIL.  Cython's
   own dict.get (as of 3.3) takes a borrowed reference from
   PyDict_GetItemWithError and increfs it afterwards: on free-threaded
   CPython another thread can replace that value, and free it, in between.
   PyDict_GetItemRef (3.13+, where free threading exists) takes the
   reference inside the lookup.  Same cost on GIL builds. */
static LKE_INLINE PyObject *lke_dict_get(PyObject *dict, PyObject *key, PyObject *dflt) {
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

/* Whether the weak reference `ref` refers to `obj`, a live object other
   than None.  The referent is compared, never used. */
static LKE_INLINE int lke_weakref_is(PyObject *ref, PyObject *obj) {
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *target = NULL;
    int found = PyWeakref_GetRef(ref, &target);
    if (found <= 0) {
        if (found < 0)
            PyErr_Clear();
        return 0;
    }
    Py_DECREF(target);
    return target == obj;
#else
    return obj != Py_None && PyWeakref_GET_OBJECT(ref) == obj;
#endif
}

/* The referent of a weak reference, as a new reference; NULL if dead. */
static LKE_INLINE PyObject *lke_weak_get(PyObject *ref) {
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *obj = NULL;
    if (PyWeakref_GetRef(ref, &obj) <= 0) {
        PyErr_Clear();
        return NULL;
    }
    return obj;
#else
    PyObject *obj = PyWeakref_GET_OBJECT(ref);
    if (obj == Py_None)
        return NULL;
    Py_INCREF(obj);
    return obj;
#endif
}

/* A monotonic clock in nanoseconds (slow-handler detection).  3.13 made
   PyTime_MonotonicRaw public; before, the platform's own monotonic clock is
   read, as CPython's private one reads it. */
#if PY_VERSION_HEX >= 0x030D0000
static LKE_INLINE int64_t lke_now(void) {
    PyTime_t t = 0;
    (void)PyTime_MonotonicRaw(&t);
    return (int64_t)t;
}
#elif defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
static LKE_INLINE int64_t lke_now(void) {
    static LARGE_INTEGER frequency;
    LARGE_INTEGER now;
    if (frequency.QuadPart == 0)
        QueryPerformanceFrequency(&frequency);
    QueryPerformanceCounter(&now);
    /* Integer arithmetic: a double would lose nanoseconds past ~100 days. */
    return (int64_t)(now.QuadPart / frequency.QuadPart) * 1000000000
           + (int64_t)(now.QuadPart % frequency.QuadPart) * 1000000000 / frequency.QuadPart;
}
#else
#include <time.h>
static LKE_INLINE int64_t lke_now(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
}
#endif

/* The one-entry memo of _lk_cache_for is a plain global: only with the GIL. */
#ifdef Py_GIL_DISABLED
#define LKE_LK_MEMO 0
#else
#define LKE_LK_MEMO 1
#endif

#endif /* LKE_COMPAT_H */
