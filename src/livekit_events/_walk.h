/* The walk: an emit's pass over the slots of one table, calling each
 * handler with the arguments it accepts.
 *
 * _core_c.pyx states the rules (rule 5: what a walk reads; rule 8: how it is
 * recorded so that removed callbacks are released); _core_c.pyx's emit is the
 * only caller.
 */
#ifndef LKE_WALK_H
#define LKE_WALK_H

#include "_compat.h"
#include "_registry.h"

/* Calls a weak registration (LKE_WEAK) with its first `passed` arguments:
   0 if its referent is dead (nothing called), else 1 with *result set as
   a call sets it.  The referent is held for the call. */
static int lke_call_weak(PyObject *container, uint32_t flags, PyObject *const *argv,
                         Py_ssize_t passed, PyObject **result) {
    PyObject *target, *self = NULL, *function;
    if (flags & LKE_METHOD) { /* (weak reference to __self__, __func__) */
        self = lke_weak_get(PyTuple_GET_ITEM(container, 0));
        if (self == NULL)
            return 0;
        function = PyTuple_GET_ITEM(container, 1);
        if (passed < 16) {
            PyObject *stack[17];
            stack[0] = self;
            memcpy(&stack[1], argv, (size_t)passed * sizeof(PyObject *));
            *result = PyObject_Vectorcall(function, stack, (size_t)passed + 1, NULL);
        } else {
            PyObject *args = PyTuple_New(passed + 1);
            *result = NULL;
            if (args != NULL) {
                Py_INCREF(self);
                PyTuple_SET_ITEM(args, 0, self);
                for (Py_ssize_t i = 0; i < passed; i++) {
                    Py_INCREF(argv[i]);
                    PyTuple_SET_ITEM(args, i + 1, argv[i]);
                }
                *result = PyObject_Call(function, args, NULL);
                Py_DECREF(args);
            }
        }
        Py_DECREF(self);
        return 1;
    }
    target = lke_weak_get(container);
    if (target == NULL)
        return 0;
    *result = PyObject_Vectorcall(target, argv, (size_t)passed, NULL);
    Py_DECREF(target);
    return 1;
}

/* Slow-handler detection: the threshold in nanoseconds, 0 when off. */
static int64_t lke_slow_ns = 0;

/* Nested emits: how many walks this thread is in (each one calls handlers,
   which may emit), counted in when a walk calls its first handler and out
   when it ends (lke_walk_start or lke_walk_finish); and the most there may
   be, _common.MAX_EMIT_NESTING, set at import.  emit checks before it
   starts: past the limit it raises RecursionError instead of walking, so
   nesting ends at the same depth on both cores and every CPython, long
   before the C stack does. */
static LKE_THREAD_LOCAL int lke_emit_depth = 0;
static int lke_max_emit_nesting = 0;

/* &lke_emit_depth, for emit to take once: compilers recompute a
   thread-local's address at every use, which in a shared object on ELF is a
   call (__tls_get_addr); the empty asm makes this one address a value. */
LKE_ALWAYS_INLINE int *lke_emit_depth_address(void) {
    int *depth = &lke_emit_depth;
#if defined(__GNUC__) || defined(__clang__)
    __asm__("" : "+r"(depth));
#endif
    return depth;
}

/* Whether a walk that starts now would nest deeper than the limit. */
LKE_ALWAYS_INLINE int lke_nested_too_deep(const int *depth) {
    return *depth >= lke_max_emit_nesting;
}

/* Call `callable` as Cython's own calls do: through its vectorcall slot
   when it has one (Python functions, bound methods, builtins), skipping
   PyObject_Vectorcall's out-of-line wrapper and its result sanity check;
   anything else goes through PyObject_Vectorcall. */
static LKE_INLINE PyObject *lke_vectorcall(PyObject *callable, PyObject *const *args,
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

#define LKE_STACK_ARGS 8

/* An emit's walk over the slots of one table (rule 5): where it is, and
   where it stopped and why (filled only when it stops). */
typedef struct {
    lke_handlers *h;
    lke_table *table;          /* the table it reads: current when it started */
    lke_walker local, *record; /* its record (rule 8) */
    PyObject **argv;           /* the emitted arguments (the caller's array) */
    Py_ssize_t given, count;   /* how many; how many slots the walk covers */
    Py_ssize_t next;           /* the slot to look at next */
    lke_slot *slot;            /* the slot of the handler it stopped at */
    int64_t elapsed;           /* that handler's time (slow-handler detection) */
    int status;                /* why it stopped (LKE_WALK_*) */
} lke_walk;

/* Why lke_walk_step stopped. */
#define LKE_WALK_DONE 0
#define LKE_WALK_ARITY 1  /* slot needs more arguments than were emitted */
#define LKE_WALK_RAISED 2 /* its handler raised: the exception is set */
#define LKE_WALK_SLOW 3   /* its handler took longer than the threshold */

/* Claims a once slot for this walk (rule 6), in the Handlers' critical
   section: 1 if claimed, 0 if another walk or a removal got it first. */
static int lke_take_once(lke_walk *w, Py_ssize_t i, lke_slot *slot) {
    lke_release r;
    int claimed;
    lke_release_init(&r);
    LKE_BEGIN_CRITICAL_SECTION(w->h);
    claimed = lke_claim(w->h, w->table, i, slot, &r);
    LKE_END_CRITICAL_SECTION();
    lke_release_all(&r); /* (empty: the claimed callback waits for this walk) */
    return claimed;
}

/* Walks slots [first, w->count) until the end (LKE_WALK_DONE) or a stop,
   which it records in *w.  Per handler it writes nothing shared: the
   slot's callback is kept alive for the walk by its record (rule 8). */
LKE_ALWAYS_INLINE int lke_walk_impl(lke_walk *w, PyObject **argv, Py_ssize_t given,
                                    Py_ssize_t first, int timed) {
    Py_ssize_t i, passed, count = w->count;
    lke_slot *const *slots = w->table->slots;
    PyObject *result, *callback;
    /* Bound-method handlers get the arguments copied here, behind a spare
       slot, so that they prepend self in place (PY_VECTORCALL_ARGUMENTS_OFFSET):
       the caller's array must not be written to.  Copied at most once. */
    PyObject *stack[LKE_STACK_ARGS + 1], **offset_argv = NULL;
    int taken, status;
    /* Slow-handler detection reads the clock once per call, not twice: a
       handler's time runs from the previous call's end (or the walk's
       start), so it includes this loop's few instructions for the slots
       between, nanoseconds against a threshold in milliseconds.  A clock
       read costs 20-50 ns, as much as the call itself. */
    int64_t started = timed ? lke_now() : 0, elapsed = 0, now;
    for (i = first; i < count; i++) {
        lke_slot *slot = slots[i];
        taken = 1;
        if (given < LKE_LOAD(&slot->gate)) { /* special, or too few arguments */
            uint32_t flags = LKE_LOAD(&slot->flags);
            if (flags & LKE_SPECIAL) {
                if (flags & LKE_DEAD)
                    continue; /* removed: skipped at once */
                if ((flags & LKE_ONCE) && !lke_take_once(w, i, slot))
                    continue; /* fired by another walk first */
                if (flags & LKE_WEAK)
                    taken = 2;
            }
            if (given < slot->required) {
                w->slot = slot;
                status = LKE_WALK_ARITY;
                goto stop;
            }
        }
        passed = slot->accepted < given ? slot->accepted : given;
        callback = slot->callback;
        if (taken == 2) { /* held weakly: its referent, if alive */
            if (!lke_call_weak(callback, slot->flags, argv, passed, &result))
                continue;
        } else if (Py_TYPE(callback) != &PyMethod_Type || given > LKE_STACK_ARGS) {
            result = lke_vectorcall(callback, argv, (size_t)passed);
        } else {
            if (offset_argv == NULL) {
                memcpy(&stack[1], argv, (size_t)given * sizeof(PyObject *));
                offset_argv = &stack[1];
            }
            result = lke_vectorcall(callback, offset_argv,
                                    (size_t)passed | PY_VECTORCALL_ARGUMENTS_OFFSET);
        }
        if (timed) {
            now = lke_now();
            elapsed = now - started;
            started = now;
        }
        /* Checking the result instead of a try/except per handler keeps
           isolation free when nothing fails. */
        if (result == NULL || (timed && elapsed > lke_slow_ns)) {
            Py_XDECREF(result);
            w->slot = slot;
            status = result == NULL ? LKE_WALK_RAISED : LKE_WALK_SLOW;
            goto stop;
        }
        Py_DECREF(result);
    }
    return LKE_WALK_DONE;
stop:
    w->argv = argv;
    w->given = given;
    w->next = i + 1;
    w->elapsed = elapsed;
    return w->status = status;
}

/* Walks on from `first` until the end or a stop (also in w->status);
   each branch's `timed` is a constant: the untimed walk reads no clock. */
LKE_ALWAYS_INLINE int lke_walk_run(lke_walk *w, PyObject **argv, Py_ssize_t given,
                                   Py_ssize_t first) {
    return lke_slow_ns ? lke_walk_impl(w, argv, given, first, 1)
                       : lke_walk_impl(w, argv, given, first, 0);
}

/* After a stop: walks on from w->next (out of line). */
static int lke_walk_step(lke_walk *w) {
    w->status = lke_walk_run(w, w->argv, w->given, w->next);
    return w->status;
}

/* Frees what no walk needs any more (rule 8), after a walk that may
   have held it back.  Out of line: rarely needed. */
static void lke_walk_reclaim(lke_handlers *h) {
    lke_release r;
    lke_release_init(&r);
    LKE_BEGIN_CRITICAL_SECTION(h);
    lke_reclaim(h, &r);
    LKE_END_CRITICAL_SECTION();
    lke_release_all(&r);
}

/* Ends the walk (after a stop, once the caller is done with it). */
static void lke_walk_finish(lke_walk *w) {
    lke_emit_depth--;
    if (lke_walk_end(w->h, w->record))
        lke_walk_reclaim(w->h);
}

/* Begins a walk of `h` and walks: LKE_WALK_DONE when it also ended it;
   else the caller deals with the stop (w->status) and ends the walk with
   lke_walk_finish.  -1 with an exception set if it could not begin.
   The walk counts in *depth (this thread's lke_emit_depth) until it ends.
   Inlined into emit: all an ordinary emit does. */
LKE_ALWAYS_INLINE int lke_walk_start(lke_handlers *h, PyObject **argv, Py_ssize_t given,
                                     lke_walk *w, int *depth) {
#ifndef Py_GIL_DISABLED
    if (h->table == NULL || h->table->count == 0)
        return LKE_WALK_DONE; /* nothing to call: nothing to record */
#endif
    w->h = h;
    if (lke_walk_begin(h, &w->local, &w->record, &w->table, &w->count) < 0)
        return -1;
    if (w->count == 0) {
        if (lke_walk_end(h, w->record))
            lke_walk_reclaim(h);
        return LKE_WALK_DONE;
    }
    ++*depth;
    if (lke_walk_run(w, argv, given, 0) == LKE_WALK_DONE) {
        --*depth;
        if (lke_walk_end(h, w->record))
            lke_walk_reclaim(h);
        return LKE_WALK_DONE;
    }
    return w->status;
}

#endif /* LKE_WALK_H */
