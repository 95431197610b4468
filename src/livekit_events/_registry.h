/* The registry of the compiled core: one Handlers object per event.
 *
 * Included by _core_c.pyx, whose header comment states the rules this file
 * keeps (rules 1-8); the comments here say which code keeps which rule.
 *
 * Layout.  A registration is a heap-allocated lke_slot.  A Handlers points to
 * its current lke_table: an array of slot pointers in call order, dead ones
 * included until compaction.  Past LKE_SMALL live registrations an
 * open-addressing index maps key hashes to positions in the current table.
 *
 * Generations (rule 5).  A walk (an emit, a listing) reads the table that is
 * current when it starts, up to the count published then, and never anything
 * else.  A table is never shrunk or reordered in place: growth and compaction
 * publish a new table and retire the old one, which is freed once no walk
 * reads it.  A slot is shared by every table that holds it, so its flags (the
 * removal, the claim of a once) are seen by every walk whatever table it
 * reads.
 *
 * Reclamation (rule 8).  The registry bumps `stamp` at every append and every
 * removal; a slot records the stamp of its append (born), and a removed one
 * waiting for walks keeps the stamp of its removal (died).  A walk records the
 * stamp when it starts.  A walk can call a slot only if born <= start < died,
 * so a removed slot's callback is released as soon as no walk in progress
 * has such a start: at once if none does, else when the last of them ends.
 * Walks that start later never hold anything back, however long walks
 * overlap.  Retired tables, and the slots that compaction dropped, are freed
 * once no walk reads them.
 *
 * Where walks are recorded.  With the GIL: a list on the Handlers (writes are
 * cheap and nothing runs concurrently).  Free-threaded: each thread records
 * its walks in its own lke_thread (no write to any shared cache line), and a
 * reclaimer reads every thread's records.  Both are behind lke_walks_of.
 */
#ifndef LKE_REGISTRY_H
#define LKE_REGISTRY_H

#include "_compat.h"

/* -- atomics: plain accesses with the GIL (rule 1), C11-style atomics on
   free-threaded builds. -- */
#ifndef Py_GIL_DISABLED
#define LKE_LOAD(p) (*(p))
#define LKE_LOAD_ACQ(p) (*(p))
#define LKE_STORE(p, v) (*(p) = (v))
#define LKE_STORE_REL(p, v) (*(p) = (v))
#define LKE_FENCE() ((void)0)
#elif defined(__GNUC__) || defined(__clang__)
#define LKE_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define LKE_LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define LKE_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define LKE_STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define LKE_FENCE() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#else
#error "livekit_events: free-threaded builds need GCC or Clang atomics"
#endif

#if defined(_MSC_VER)
#define LKE_THREAD_LOCAL __declspec(thread)
#else
#define LKE_THREAD_LOCAL __thread
#endif

/* -- slots -- */

/* clang-format off */
#define LKE_DEAD 0x01u    /* removed (or a once claimed): walks skip it */
#define LKE_ONCE 0x02u    /* a once registration: the walk that claims it calls it */
#define LKE_WRAPPER 0x04u /* a OnceWrapper (once through a subclass's on): its key
                             is the wrapped callback, for off(callback) */
#define LKE_METHOD 0x08u  /* a bound method: called with a spare slot in front */
#define LKE_WEAK 0x10u    /* held weakly: the slot holds a weak reference to the
                             callable, or (with LKE_METHOD) a tuple (weak
                             reference to __self__, __func__) */
#define LKE_ORPHAN 0x20u  /* its table was freed while its callback waited: the
                             release frees the slot too */
/* clang-format on */
#define LKE_SPECIAL (LKE_DEAD | LKE_ONCE | LKE_WEAK)

#define LKE_ALL INT32_MAX /* accepted: every argument */
/* Up to this many live registrations an event has no index (lookups scan), and
   dead slots are compacted before they outnumber max(live, this). */
#define LKE_SMALL 8

typedef struct {
    PyObject *callback; /* strong; NULL once released (rule 8) */
    Py_hash_t hash;     /* the key's hash: the callback's, or the wrapped one's */
    uint64_t born;      /* the stamp of its append (its removal's is kept where it waits) */
    int32_t accepted;   /* how many leading arguments it gets (LKE_ALL: all) */
    int32_t required;   /* how many it needs */
    /* emit's one test per handler: `required` for a plain live slot, LKE_ALL
       for a special one (dead, once, weak), so that `given < gate` sends both
       the arity error and the special slots off the fast path.  Atomic. */
    int32_t gate;
    uint32_t flags; /* atomic */
} lke_slot;

#define LKE_GATE(flags, required) (((flags) & LKE_SPECIAL) ? LKE_ALL : (required))

/* -- tables (generations) -- */

typedef struct {
    int32_t count; /* atomic: slots[0, count) are published */
    int32_t capacity;
    lke_slot *slots[1]; /* [capacity] */
} lke_table;

/* A retired table, freed (with the slots its successor dropped) once no walk
   reads it. */
typedef struct lke_retired {
    struct lke_retired *next; /* the next newer one */
    lke_table *table;
    lke_slot **dropped;
    int32_t ndropped;
} lke_retired;

/* A removed slot whose callback a walk may still call, and the stamp of its
   removal. */
typedef struct {
    lke_slot *slot;
    uint64_t died;
} lke_waiting;

/* What waits for walks to end (rule 8); allocated the first time something
   has to, and kept (an event that churns while it is emitted keeps
   churning). */
typedef struct {
    lke_retired *retired, *retired_last; /* oldest first (freed in that order) */
    lke_waiting *waiting;                /* by `died` */
    Py_ssize_t waiting_first, waiting_n, waiting_capacity;
} lke_pending;

/* An index entry: a slot position in the current table (or EMPTY, DUMMY) and
   bits of its key's hash, so that a probe reads the slot only when they match
   (at 100k handlers, each slot read is a cache miss). */
typedef struct {
    int32_t pos;
    uint32_t tag;
} lke_entry;

#define LKE_TAG(hash) ((uint32_t)((uint64_t)(hash) >> 32) ^ (uint32_t)(hash))
#define LKE_EMPTY (-1)
#define LKE_DUMMY (-2)

/* -- walks in progress -- */

#define LKE_PENDING UINT64_MAX /* a walk's start before it is known: holds back everything */

typedef struct lke_walker {
    lke_table *table; /* the table it reads (NULL: not known yet) */
    uint64_t start;   /* the stamp when it started (LKE_PENDING: not known yet) */
#ifndef Py_GIL_DISABLED
    struct lke_walker *next, **pprev; /* the Handlers' list */
#else
    void *handlers; /* the Handlers it walks */
#endif
} lke_walker;

typedef struct {
    PyObject_HEAD
    lke_table *table;     /* atomic: the current table, or NULL */
    lke_pending *pending; /* NULL until something first had to wait for walks */
    lke_entry *index;     /* NULL, or index_mask + 1 entries */
    uint32_t index_mask;
    uint32_t index_fill; /* index entries that are not EMPTY */
    int32_t live, dead;  /* in the current table */
    int32_t lookups;     /* lookups comparing keys (running Python code) */
    int32_t warned;      /* the listener-leak warning was given */
    int32_t garbage;     /* atomic: something in `pending` waits */
    uint32_t layout;     /* bumped when slots move or the index is remade */
    uint64_t stamp;      /* atomic: bumped by every append and removal */
    int64_t since;       /* when it last got a live slot while it had none */
#ifndef Py_GIL_DISABLED
    lke_walker *walkers; /* the walks in progress */
#endif
} lke_handlers;

static int64_t lke_since_counter = 0;

/* References a commit dropped, released after it (rule 4). */
typedef struct {
    PyObject *small[4];
    PyObject **items;
    Py_ssize_t n, capacity;
} lke_release;

static inline void lke_release_init(lke_release *r) {
    r->items = r->small;
    r->n = 0;
    r->capacity = 4;
}

/* Reserves room for `more` references; -1 (no exception set) if it can't. */
static int lke_release_reserve(lke_release *r, Py_ssize_t more) {
    Py_ssize_t want = r->n + more;
    PyObject **items;
    if (want <= r->capacity)
        return 0;
    if (want < r->capacity * 2)
        want = r->capacity * 2;
    if (r->items == r->small) {
        items = (PyObject **)PyMem_RawMalloc((size_t)want * sizeof(PyObject *));
        if (items != NULL)
            memcpy(items, r->small, (size_t)r->n * sizeof(PyObject *));
    } else {
        items = (PyObject **)PyMem_RawRealloc(r->items, (size_t)want * sizeof(PyObject *));
    }
    if (items == NULL)
        return -1;
    r->items = items;
    r->capacity = want;
    return 0;
}

/* Drops the references: Python code (finalizers) may run here. */
static void lke_release_all(lke_release *r) {
    PyObject **items = r->items;
    Py_ssize_t n = r->n;
    r->items = r->small;
    r->n = 0;
    r->capacity = 4;
    for (Py_ssize_t i = 0; i < n; i++)
        Py_DECREF(items[i]);
    if (items != r->small)
        PyMem_RawFree(items);
}

/* Hands a slot's callback to `r`.  If `r` can't grow (out of memory) the
   reference is leaked rather than dropped where Python code can't run. */
static void lke_release_callback(lke_slot *slot, lke_release *r) {
    PyObject *callback = slot->callback;
    if (callback == NULL)
        return;
    slot->callback = NULL;
    if (lke_release_reserve(r, 1) == 0)
        r->items[r->n++] = callback;
}

/* ======================================================================
   The record of walks in progress (rule 8).
   ====================================================================== */

/* What a reclaimer knows of the walks of one Handlers: their tables and
   starts, or `all` when something must be assumed of every slot and table
   (a walk not yet recorded, too many walks to read). */
typedef struct {
    int all;
    Py_ssize_t n, capacity;
    lke_table **tables;
    uint64_t *starts;
    lke_table *small_tables[8];
    uint64_t small_starts[8];
} lke_walks;

static void lke_walks_init(lke_walks *w) {
    w->all = 0;
    w->n = 0;
    w->capacity = 8;
    w->tables = w->small_tables;
    w->starts = w->small_starts;
}

static void lke_walks_free(lke_walks *w) {
    if (w->tables != w->small_tables) {
        PyMem_RawFree(w->tables);
        PyMem_RawFree(w->starts);
    }
    lke_walks_init(w);
}

static void lke_walks_add(lke_walks *w, lke_table *table, uint64_t start) {
    if (start == LKE_PENDING) {
        w->all = 1;
        return;
    }
    if (table == NULL)
        return; /* the event had no table: the walk reads nothing */
    if (w->n == w->capacity) {
        Py_ssize_t capacity = w->capacity * 2;
        lke_table **tables = (lke_table **)PyMem_RawMalloc((size_t)capacity * sizeof(lke_table *));
        uint64_t *starts = (uint64_t *)PyMem_RawMalloc((size_t)capacity * sizeof(uint64_t));
        if (tables == NULL || starts == NULL) {
            PyMem_RawFree(tables);
            PyMem_RawFree(starts);
            w->all = 1;
            return;
        }
        memcpy(tables, w->tables, (size_t)w->n * sizeof(lke_table *));
        memcpy(starts, w->starts, (size_t)w->n * sizeof(uint64_t));
        if (w->tables != w->small_tables) {
            PyMem_RawFree(w->tables);
            PyMem_RawFree(w->starts);
        }
        w->tables = tables;
        w->starts = starts;
        w->capacity = capacity;
    }
    w->tables[w->n] = table;
    w->starts[w->n] = start;
    w->n++;
}

#ifndef Py_GIL_DISABLED

/* With the GIL: the walks are a list on the Handlers.  Nothing else runs
   between a walk's reads and its record, so it is recorded complete. */

static inline int lke_walk_begin(lke_handlers *h, lke_walker *local, lke_walker **record,
                                 lke_table **table, Py_ssize_t *count) {
    lke_table *t = h->table;
    lke_walker *next = h->walkers;
    local->table = t;
    local->start = h->stamp;
    local->next = next;
    local->pprev = &h->walkers;
    if (next != NULL)
        next->pprev = &local->next;
    h->walkers = local;
    *record = local;
    *table = t;
    *count = t != NULL ? t->count : 0;
    return 0;
}

/* Ends the walk; whether something may now be reclaimable. */
static inline int lke_walk_end(lke_handlers *h, lke_walker *w) {
    lke_walker *next = w->next;
    *w->pprev = next;
    if (next != NULL)
        next->pprev = w->pprev;
    return h->garbage;
}

static void lke_walks_of(lke_handlers *h, lke_walks *out) {
    for (lke_walker *w = h->walkers; w != NULL; w = w->next)
        lke_walks_add(out, w->table, w->start);
}

#else /* Py_GIL_DISABLED */

/* Free-threaded: each thread records its walks in its own lke_thread, a stack
   of lke_walker (nested emits), so that a walk writes no cache line that
   another thread writes.  A reclaimer reads every thread's records.

   The protocol (all of it is what makes rule 8 hold without a lock):
   - A walk first publishes a record saying "not known yet" (`start` is
     LKE_PENDING), then a full fence, then reads the table, its count and the
     stamp, then lowers its record to what it read.  A reclaimer first
     changes the registry (flags a slot dead and bumps the stamp, or
     publishes a new table), then a full fence, then reads the records.
     Either the reclaimer sees the record (and holds back), or the walk sees
     the change (the new table, or a stamp >= the slot's `died`, after which
     it reads the slot's flags as dead).
   - A record slot is reused by the thread's next walk at the same depth.
     `gen` is odd while one is being set up; a reclaimer that reads an odd or
     changed `gen` assumes the worst of that thread.
   - Deeper than LKE_THREAD_WALKS nested walks are not recorded one by one:
     while `depth` exceeds it, the thread holds back everything. */

#define LKE_THREAD_WALKS 32
#define LKE_CACHE_LINE 128 /* (two 64-byte lines: adjacent-line prefetch) */

typedef struct lke_thread {
    struct lke_thread *next; /* the list of all records (never freed) */
    int in_use;              /* atomic: owned by a live thread */
    Py_ssize_t depth;        /* atomic: walks in progress on this thread */
    struct {
        uint64_t gen; /* atomic */
        lke_walker w; /* fields atomic */
    } walks[LKE_THREAD_WALKS];
} lke_thread;

static lke_thread *lke_threads = NULL; /* atomic: head of the list */
static PyMutex lke_threads_mutex = {0};
static LKE_THREAD_LOCAL lke_thread *lke_this_thread = NULL;

static void lke_thread_release(PyObject *capsule) {
    lke_thread *t = (lke_thread *)PyCapsule_GetPointer(capsule, "livekit_events.walks");
    if (t != NULL) {
        if (lke_this_thread == t) /* (a thread state of this OS thread is going) */
            lke_this_thread = NULL;
        LKE_STORE_REL(&t->depth, 0);
        LKE_STORE_REL(&t->in_use, 0);
    }
}

/* This thread's record: made (or a dead thread's reused) on first use and
   handed back when the thread state goes (a capsule in its dict).  NULL with
   an exception set on failure. */
static lke_thread *lke_thread_slow(void) {
    lke_thread *t;
    PyObject *dict = PyThreadState_GetDict(), *capsule;
    if (dict == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "livekit_events: no thread state dict");
        return NULL;
    }
    PyMutex_Lock(&lke_threads_mutex);
    for (t = lke_threads; t != NULL; t = t->next)
        if (!LKE_LOAD(&t->in_use))
            break;
    if (t == NULL) {
        /* Never freed (reused), and aligned to its own cache lines: no
           other thread's record shares one. */
        char *raw = (char *)PyMem_RawCalloc(1, sizeof(lke_thread) + 2 * LKE_CACHE_LINE);
        t = raw == NULL ? NULL
                        : (lke_thread *)(raw + LKE_CACHE_LINE - ((uintptr_t)raw % LKE_CACHE_LINE));
        if (t != NULL) {
            t->next = lke_threads;
            LKE_STORE_REL(&lke_threads, t);
        }
    }
    if (t != NULL) {
        LKE_STORE(&t->depth, 0);
        LKE_STORE_REL(&t->in_use, 1);
    }
    PyMutex_Unlock(&lke_threads_mutex);
    if (t == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    capsule = PyCapsule_New(t, "livekit_events.walks", lke_thread_release);
    if (capsule == NULL || PyDict_SetItemString(dict, "livekit_events.walks", capsule) < 0) {
        Py_XDECREF(capsule);
        LKE_STORE_REL(&t->in_use, 0);
        return NULL;
    }
    Py_DECREF(capsule);
    lke_this_thread = t;
    return t;
}

/* Records a walk of `h` and reads its table and count.  -1 with an exception
   set if this thread can't get a record (nothing recorded then). */
static inline int lke_walk_begin(lke_handlers *h, lke_walker *local, lke_walker **record,
                                 lke_table **table, Py_ssize_t *count) {
    lke_thread *t = lke_this_thread;
    Py_ssize_t depth;
    lke_table *tb;
    (void)local;
    if (t == NULL && (t = lke_thread_slow()) == NULL)
        return -1;
    depth = t->depth; /* (only this thread writes it) */
    if (depth < LKE_THREAD_WALKS) {
        lke_walker *w = &t->walks[depth].w;
        uint64_t gen = t->walks[depth].gen;
        LKE_STORE(&t->walks[depth].gen, gen + 1); /* odd: being set up */
        LKE_STORE_REL(&w->start, LKE_PENDING);
        LKE_STORE_REL(&w->table, (lke_table *)NULL);
        LKE_STORE_REL(&w->handlers, (void *)h);
        LKE_STORE_REL(&t->walks[depth].gen, gen + 2);
        *record = w;
    } else {
        *record = NULL; /* too deep: the thread holds back everything */
    }
    /* The store and the full fence in one: a seq_cst exchange (on x86 one
       locked instruction, cheaper than a store and an mfence). */
    (void)__atomic_exchange_n(&t->depth, depth + 1, __ATOMIC_SEQ_CST);
    tb = LKE_LOAD_ACQ(&h->table);
    *table = tb;
    *count = tb != NULL ? LKE_LOAD_ACQ(&tb->count) : 0;
    if (*record != NULL) {
        uint64_t start = LKE_LOAD_ACQ(&h->stamp);
        LKE_STORE_REL(&(*record)->table, tb);
        LKE_STORE_REL(&(*record)->start, start);
    }
    return 0;
}

/* Ends the walk; whether something may now be reclaimable. */
static inline int lke_walk_end(lke_handlers *h, lke_walker *w) {
    lke_thread *t = lke_this_thread;
    (void)w;
    LKE_STORE_REL(&t->depth, t->depth - 1);
    return LKE_LOAD_ACQ(&h->garbage);
}

static void lke_walks_of(lke_handlers *h, lke_walks *out) {
    LKE_FENCE(); /* (the reclaimer's side of the protocol) */
    for (lke_thread *t = LKE_LOAD_ACQ(&lke_threads); t != NULL; t = t->next) {
        Py_ssize_t depth = LKE_LOAD_ACQ(&t->depth);
        if (depth > LKE_THREAD_WALKS) {
            out->all = 1;
            return;
        }
        for (Py_ssize_t i = 0; i < depth; i++) {
            uint64_t gen = LKE_LOAD_ACQ(&t->walks[i].gen), gen_after;
            lke_walker *w = &t->walks[i].w;
            void *handlers;
            lke_table *table;
            uint64_t start;
            if (gen & 1) {
                out->all = 1;
                return;
            }
            /* start before table: a start that is known implies its table
               (stored first) is seen */
            handlers = LKE_LOAD_ACQ(&w->handlers);
            start = LKE_LOAD_ACQ(&w->start);
            table = LKE_LOAD_ACQ(&w->table);
            LKE_FENCE();
            gen_after = LKE_LOAD(&t->walks[i].gen);
            if (gen_after != gen) {
                out->all = 1;
                return;
            }
            if (handlers == (void *)h)
                lke_walks_add(out, table, start);
        }
    }
}

#endif /* Py_GIL_DISABLED */

/* ======================================================================
   Tables, slots, reclamation.  Commits: C only, no Python code (rule 2).
   Writers hold the Handlers' critical section on free-threaded builds.
   ====================================================================== */

static lke_table *lke_table_new(int32_t capacity) {
    lke_table *t = (lke_table *)PyMem_Malloc(
        sizeof(lke_table) + (size_t)(capacity > 1 ? capacity - 1 : 0) * sizeof(lke_slot *));
    if (t == NULL)
        return NULL;
    t->count = 0;
    t->capacity = capacity;
    return t;
}

/* Whether some walk in `walks` can call `slot`, removed at stamp `died`
   (rule 8). */
static int lke_slot_held(lke_walks *walks, lke_slot *slot, uint64_t died) {
    if (walks->all)
        return 1;
    for (Py_ssize_t i = 0; i < walks->n; i++)
        if (slot->born <= walks->starts[i] && walks->starts[i] < died)
            return 1;
    return 0;
}

static void lke_release_slot(lke_slot *slot, lke_release *r) {
    lke_release_callback(slot, r);
    if (slot->flags & LKE_ORPHAN)
        PyMem_Free(slot);
}

/* Frees a retired table and the slots its successor dropped.  A dropped slot
   whose callback still waits (rule 8) becomes an orphan, freed by its
   release. */
static void lke_retired_free(lke_retired *node) {
    for (int32_t i = 0; i < node->ndropped; i++) {
        lke_slot *slot = node->dropped[i];
        if (slot->callback != NULL)
            slot->flags |= LKE_ORPHAN;
        else
            PyMem_Free(slot);
    }
    PyMem_Free(node->dropped);
    PyMem_Free(node->table);
    PyMem_Free(node);
}

/* `pending`, made if needed, flagged as holding something (the caller adds
   to it).  NULL if out of memory. */
static lke_pending *lke_pending_of(lke_handlers *h) {
    if (h->pending == NULL)
        h->pending = (lke_pending *)PyMem_Calloc(1, sizeof(lke_pending));
    if (h->pending != NULL)
        LKE_STORE_REL(&h->garbage, 1);
    return h->pending;
}

/* Clears the flag once nothing waits any more. */
static void lke_pending_done(lke_handlers *h) {
    lke_pending *p = h->pending;
    if (p != NULL && p->retired == NULL && p->waiting_n == 0)
        LKE_STORE_REL(&h->garbage, 0);
}

/* Releases what no walk in progress needs any more: waiting callbacks (from
   the oldest removal on, while none is held), and retired tables (oldest
   first, while none is read). */
static void lke_reclaim(lke_handlers *h, lke_release *r) {
    lke_pending *p = h->pending;
    lke_walks walks;
    if (p == NULL || (p->retired == NULL && p->waiting_n == 0))
        return;
    lke_walks_init(&walks);
    lke_walks_of(h, &walks);
    while (p->waiting_n != 0) {
        lke_waiting *w = &p->waiting[p->waiting_first];
        if (lke_slot_held(&walks, w->slot, w->died))
            break;
        p->waiting_first++;
        p->waiting_n--;
        lke_release_slot(w->slot, r);
    }
    if (p->waiting_n == 0)
        p->waiting_first = 0;
    while (p->retired != NULL && !walks.all) {
        lke_retired *node = p->retired;
        int read = 0;
        for (Py_ssize_t i = 0; i < walks.n; i++)
            if (walks.tables[i] == node->table)
                read = 1;
        if (read)
            break;
        p->retired = node->next;
        if (p->retired == NULL)
            p->retired_last = NULL;
        lke_retired_free(node);
    }
    lke_walks_free(&walks);
    lke_pending_done(h);
}

/* A removed slot: its callback is released now if no walk can call it, else
   it waits for the walks that can (rule 8). */
static void lke_retire_slot(lke_handlers *h, lke_slot *slot, uint64_t died, lke_release *r) {
    lke_walks walks;
    lke_pending *p;
    int held;
    lke_walks_init(&walks);
    lke_walks_of(h, &walks);
    held = lke_slot_held(&walks, slot, died);
    lke_walks_free(&walks);
    if (!held) {
        lke_release_callback(slot, r);
        return;
    }
    p = lke_pending_of(h);
    if (p == NULL)
        return; /* out of memory: the callback is leaked, never freed early */
    if (p->waiting_first + p->waiting_n == p->waiting_capacity) {
        if (p->waiting_first > 0) {
            memmove(p->waiting, p->waiting + p->waiting_first,
                    (size_t)p->waiting_n * sizeof(lke_waiting));
            p->waiting_first = 0;
        } else {
            Py_ssize_t capacity = p->waiting_capacity ? p->waiting_capacity * 2 : 8;
            lke_waiting *waiting =
                (lke_waiting *)PyMem_Realloc(p->waiting, (size_t)capacity * sizeof(lke_waiting));
            if (waiting == NULL) {
                lke_pending_done(h);
                return; /* out of memory: the callback is leaked, never freed early */
            }
            p->waiting = waiting;
            p->waiting_capacity = capacity;
        }
    }
    p->waiting[p->waiting_first + p->waiting_n].slot = slot;
    p->waiting[p->waiting_first + p->waiting_n].died = died;
    p->waiting_n++;
}

/* Publishes `t` as the current table and retires the old one, with the
   slots `t` dropped (`dropped`, owned from here): freed now if no walk is in
   progress, else once no walk reads it. */
static void lke_publish(lke_handlers *h, lke_table *t, lke_slot **dropped, int32_t ndropped) {
    lke_table *old = h->table;
    lke_retired *node;
    lke_pending *p;
    lke_walks walks;
    int idle;
    LKE_STORE_REL(&h->table, t);
    h->layout++;
    if (old == NULL) {
        PyMem_Free(dropped);
        return;
    }
    lke_walks_init(&walks);
    lke_walks_of(h, &walks);
    idle = !walks.all && walks.n == 0;
    lke_walks_free(&walks);
    node = (lke_retired *)PyMem_Malloc(sizeof(lke_retired));
    if (node == NULL) {
        PyMem_Free(dropped);
        return; /* out of memory: the old table and dropped slots leak, never freed early */
    }
    node->next = NULL;
    node->table = old;
    node->dropped = dropped;
    node->ndropped = ndropped;
    if (idle || (p = lke_pending_of(h)) == NULL) {
        if (idle) {
            lke_retired_free(node);
            return;
        }
        PyMem_Free(node); /* out of memory: leaks the table, never frees it early */
        PyMem_Free(dropped);
        return;
    }
    if (p->retired_last != NULL)
        p->retired_last->next = node;
    else
        p->retired = node;
    p->retired_last = node;
}

/* -- the index: positions of live slots, open addressing, linear probing.
   As in CPython's dicts, a removal leaves DUMMY (probes go on past it).  An
   insertion takes the first EMPTY place while a lookup is comparing keys
   (`lookups`), so that no entry lands where a lookup has already passed
   (rule 3); otherwise it may reuse a DUMMY, which keeps steady churn from
   filling the table. -- */

static inline uint32_t lke_home(lke_handlers *h, Py_hash_t hash) {
    /* Fibonacci hashing: spreads id-like hashes (functions, methods). */
    return (uint32_t)(((uint64_t)hash * 0x9E3779B97F4A7C15ull) >> 32) & h->index_mask;
}

static void lke_index_put(lke_handlers *h, int32_t pos) {
    lke_slot *slot = h->table->slots[pos];
    uint32_t i = lke_home(h, slot->hash);
    int32_t free_below = h->lookups ? LKE_DUMMY + 1 : LKE_DUMMY; /* EMPTY, or DUMMY too */
    while (h->index[i].pos >= 0 || h->index[i].pos < free_below)
        i = (i + 1) & h->index_mask;
    if (h->index[i].pos == LKE_EMPTY)
        h->index_fill++;
    h->index[i].pos = pos;
    h->index[i].tag = LKE_TAG(slot->hash);
}

static void lke_index_remove(lke_handlers *h, int32_t pos) {
    uint32_t i = lke_home(h, h->table->slots[pos]->hash);
    for (uint32_t n = 0; n <= h->index_mask; n++) {
        if (h->index[i].pos == pos) {
            h->index[i].pos = LKE_DUMMY;
            return;
        }
        if (h->index[i].pos == LKE_EMPTY)
            return; /* not indexed (cannot happen; harmless) */
        i = (i + 1) & h->index_mask;
    }
}

/* (Re)makes the index for the live slots, or drops it for a small event.  On
   allocation failure the event simply has no index (lookups scan). */
static void lke_index_rebuild(lke_handlers *h) {
    uint32_t size = 16;
    lke_table *t = h->table;
    PyMem_Free(h->index);
    h->index = NULL;
    h->index_mask = 0;
    h->index_fill = 0;
    h->layout++;
    if (h->live <= LKE_SMALL || t == NULL)
        return;
    while (size < (uint32_t)h->live * 3u && size < (1u << 28))
        size <<= 1;
    h->index = (lke_entry *)PyMem_Malloc(size * sizeof(lke_entry));
    if (h->index == NULL)
        return;
    memset(h->index, 0xff, size * sizeof(lke_entry)); /* all LKE_EMPTY */
    h->index_mask = size - 1;
    for (int32_t i = 0; i < t->count; i++)
        if (!(t->slots[i]->flags & LKE_DEAD))
            lke_index_put(h, i);
}

/* Appends a live slot holding a new reference to `callback`.  0, or -1 with
   an exception set and nothing changed. */
static int lke_append(lke_handlers *h, PyObject *callback, Py_hash_t hash, int32_t accepted,
                      int32_t required, uint32_t flags) {
    lke_table *t = h->table;
    lke_slot *slot;
    if (t == NULL || t->count == t->capacity) {
        int32_t capacity = t == NULL ? 2 : t->capacity * 2;
        lke_table *grown;
        if (t != NULL && t->capacity >= (1 << 29)) {
            PyErr_SetString(PyExc_OverflowError, "too many handlers for one event");
            return -1;
        }
        grown = lke_table_new(capacity);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        if (t != NULL) {
            memcpy(grown->slots, t->slots, (size_t)t->count * sizeof(lke_slot *));
            grown->count = t->count;
        }
        slot = (lke_slot *)PyMem_Malloc(sizeof(lke_slot));
        if (slot == NULL) {
            PyMem_Free(grown);
            PyErr_NoMemory();
            return -1;
        }
        lke_publish(h, grown, NULL, 0); /* (positions unchanged: the index stays) */
        t = grown;
    } else {
        slot = (lke_slot *)PyMem_Malloc(sizeof(lke_slot));
        if (slot == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    Py_INCREF(callback);
    slot->callback = callback;
    slot->hash = hash;
    slot->accepted = accepted;
    slot->required = required;
    slot->flags = flags;
    slot->gate = LKE_GATE(flags, required);
    /* The stamp is bumped before the slot is published: a walk that reads
       it reads a start >= born (rule 8). */
    slot->born = h->stamp + 1;
    LKE_STORE_REL(&h->stamp, slot->born);
    t->slots[t->count] = slot;
    LKE_STORE_REL(&t->count, t->count + 1);
    if (h->live == 0) {
#ifdef Py_GIL_DISABLED
        h->since = __atomic_add_fetch(&lke_since_counter, 1, __ATOMIC_RELAXED);
#else
        h->since = ++lke_since_counter;
#endif
    }
    h->live++;
    /* At most half full (DUMMY entries included), so probes stay short; else
       a bigger or cleaner one, or none for a small event again. */
    if (h->index != NULL) {
        if ((h->index_fill + 1u) * 2u <= h->index_mask + 1u)
            lke_index_put(h, t->count - 1);
        else
            lke_index_rebuild(h);
    } else if (h->live > LKE_SMALL) {
        lke_index_rebuild(h); /* the first index */
    }
    return 0;
}

/* Flags the live slot at `pos` of the current table dead, bumps the stamp,
   and releases its callback or makes it wait (rule 8).  The gate goes first:
   a walk that reads a stamp >= died reads the gate as LKE_ALL. */
static void lke_kill(lke_handlers *h, int32_t pos, lke_release *r) {
    lke_slot *slot = h->table->slots[pos];
    uint64_t died;
    if (h->index != NULL)
        lke_index_remove(h, pos);
    LKE_STORE(&slot->gate, LKE_ALL);
    LKE_STORE(&slot->flags, slot->flags | LKE_DEAD);
    died = h->stamp + 1;
    LKE_STORE_REL(&h->stamp, died);
    h->dead++;
    if (--h->live == 0)
        h->warned = 0; /* warned again if it leaks again */
    lke_retire_slot(h, slot, died, r);
}

/* Replaces the current table by one without its dead slots (not while a
   lookup compares keys: rule 3).  The old table is retired, and with it the
   dropped slots.  The index keeps its entries, each moved to its slot's new
   position (a pass over the index in order, instead of re-inserting every
   slot at random: at 100k handlers that is most of the cost).  On allocation
   failure nothing changes. */
static void lke_compact(lke_handlers *h) {
    lke_table *t = h->table, *fresh;
    lke_slot **dropped;
    int32_t i, j = 0, k = 0, *moved = NULL, capacity = 2;
    if (t == NULL || h->lookups != 0 || h->dead == 0)
        return;
    while (capacity < h->live * 2)
        capacity *= 2;
    fresh = lke_table_new(capacity);
    dropped = (lke_slot **)PyMem_Malloc((size_t)h->dead * sizeof(lke_slot *));
    if (fresh == NULL || dropped == NULL) {
        PyMem_Free(fresh);
        PyMem_Free(dropped);
        return;
    }
    if (h->index != NULL && h->live > LKE_SMALL && h->index_mask + 1u <= 8u * (uint32_t)h->live)
        moved = (int32_t *)PyMem_Malloc((size_t)t->count * sizeof(int32_t));
    for (i = 0; i < t->count; i++) {
        lke_slot *slot = t->slots[i];
        if (slot->flags & LKE_DEAD) {
            dropped[k++] = slot;
            continue;
        }
        if (moved != NULL)
            moved[i] = j;
        fresh->slots[j++] = slot;
    }
    fresh->count = j;
    h->dead = 0;
    lke_publish(h, fresh, dropped, k);
    if (moved == NULL) {
        lke_index_rebuild(h); /* none, a new one, or a smaller one */
        return;
    }
    for (uint32_t e = 0; e <= h->index_mask; e++)
        if (h->index[e].pos >= 0)
            h->index[e].pos = moved[h->index[e].pos];
    PyMem_Free(moved);
}

/* After removals: compact once the dead slots outnumber the live ones (and a
   few), so that walks and scans stay proportional to the live ones; then
   free what no walk needs. */
static void lke_maybe_compact(lke_handlers *h, lke_release *r) {
    if (h->dead >= LKE_SMALL && h->dead >= h->live)
        lke_compact(h);
    lke_reclaim(h, r);
}

/* Removes every live slot (remove_all_listeners). */
static void lke_kill_all(lke_handlers *h, lke_release *r) {
    lke_table *t = h->table;
    if (t == NULL)
        return;
    lke_release_reserve(r, h->live);
    for (int32_t i = 0; i < t->count; i++)
        if (!(t->slots[i]->flags & LKE_DEAD))
            lke_kill(h, i, r);
    lke_compact(h);
    lke_reclaim(h, r);
}

/* Claims the once slot `slot` (found at `pos` of `table` by a walk): 1 if
   this walk claimed it (it is dead now, and its callback waits for this
   walk: rule 6), 0 if another walk or a removal got there first. */
static int lke_claim(lke_handlers *h, lke_table *table, Py_ssize_t pos, lke_slot *slot,
                     lke_release *r) {
    lke_table *current = h->table;
    int32_t at = -1;
    if (LKE_LOAD(&slot->flags) & LKE_DEAD)
        return 0;
    /* Its position in the current table: the same as in the walk's table
       unless a compaction moved it (then it is found by a scan). */
    if (current == table || (pos < current->count && current->slots[pos] == slot)) {
        at = (int32_t)pos;
    } else {
        for (int32_t i = 0; i < current->count; i++)
            if (current->slots[i] == slot) {
                at = i;
                break;
            }
    }
    if (at < 0)
        return 0; /* (dead and dropped: cannot be live) */
    lke_kill(h, at, r);
    lke_maybe_compact(h, r); /* (what the claim retires waits for this walk) */
    return 1;
}

/* -- the Handlers type -- */

static int lke_handlers_traverse(lke_handlers *h, visitproc visit, void *arg) {
    lke_table *t = h->table;
    lke_pending *p = h->pending;
    if (t != NULL)
        for (int32_t i = 0; i < t->count; i++)
            if (!(t->slots[i]->flags & LKE_DEAD))
                Py_VISIT(t->slots[i]->callback);
    if (p != NULL)
        for (Py_ssize_t i = 0; i < p->waiting_n; i++)
            Py_VISIT(p->waiting[p->waiting_first + i].slot->callback);
    return 0;
}

/* Empties the Handlers (no walk can be in progress: each holds a reference to
   it).  Empty first, release after: a finalizer run by a release sees an
   empty, consistent object. */
static int lke_handlers_clear(lke_handlers *h) {
    lke_release r;
    lke_table *t = h->table;
    lke_pending *p = h->pending;
    lke_release_init(&r);
    h->table = NULL;
    h->pending = NULL;
    h->garbage = 0;
    PyMem_Free(h->index);
    h->index = NULL;
    h->index_mask = h->index_fill = 0;
    h->live = h->dead = 0;
    h->layout++;
    if (p != NULL) {
        lke_retired *node = p->retired;
        for (Py_ssize_t i = 0; i < p->waiting_n; i++)
            lke_release_slot(p->waiting[p->waiting_first + i].slot, &r);
        while (node != NULL) {
            lke_retired *next = node->next;
            lke_retired_free(node); /* (no callback waits now: none is an orphan) */
            node = next;
        }
        PyMem_Free(p->waiting);
        PyMem_Free(p);
    }
    if (t != NULL) {
        for (int32_t i = 0; i < t->count; i++) {
            lke_release_callback(t->slots[i], &r);
            PyMem_Free(t->slots[i]);
        }
        PyMem_Free(t);
    }
    lke_release_all(&r);
    return 0;
}

static void lke_handlers_dealloc(lke_handlers *h) {
    PyObject_GC_UnTrack(h);
    lke_handlers_clear(h);
    PyObject_GC_Del(h);
}

static PyTypeObject lke_handlers_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "livekit_events._core_c.Handlers",
    .tp_basicsize = sizeof(lke_handlers),
    .tp_dealloc = (destructor)lke_handlers_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The registrations of one event (internal).",
    .tp_traverse = (traverseproc)lke_handlers_traverse,
    .tp_clear = (inquiry)lke_handlers_clear,
};

static PyObject *lke_handlers_new(void) {
    lke_handlers *h = PyObject_GC_New(lke_handlers, &lke_handlers_type);
    if (h == NULL)
        return NULL;
    h->table = NULL;
    h->pending = NULL;
    h->index = NULL;
    h->index_mask = h->index_fill = 0;
    h->live = h->dead = h->lookups = h->warned = h->garbage = 0;
    h->stamp = 0;
    h->layout = 0;
    h->since = 0;
#ifndef Py_GIL_DISABLED
    h->walkers = NULL;
#endif
    PyObject_GC_Track(h);
    return (PyObject *)h;
}

/* -- introspection for tests -- */

/* (dead slots in the current table, callbacks waiting, retired tables) */
static void lke_handlers_debug(lke_handlers *h, Py_ssize_t *dead, Py_ssize_t *waiting,
                               Py_ssize_t *retired) {
    Py_ssize_t n = 0;
    lke_pending *p = h->pending;
    if (p != NULL)
        for (lke_retired *node = p->retired; node != NULL; node = node->next)
            n++;
    *dead = h->dead;
    *waiting = p != NULL ? p->waiting_n : 0;
    *retired = n;
}

/* Positions found by a lookup. */
typedef struct {
    Py_ssize_t small[8];
    Py_ssize_t *items;
    Py_ssize_t n, capacity;
} lke_positions;

static LKE_INLINE void lke_positions_init(lke_positions *p) {
    p->items = p->small;
    p->n = 0;
    p->capacity = 8;
}

static int lke_positions_add(lke_positions *p, Py_ssize_t pos) {
    if (p->n == p->capacity) {
        Py_ssize_t capacity = p->capacity * 2;
        Py_ssize_t *items =
            (p->items == p->small)
                ? (Py_ssize_t *)PyMem_Malloc((size_t)capacity * sizeof(Py_ssize_t))
                : (Py_ssize_t *)PyMem_Realloc(p->items, (size_t)capacity * sizeof(Py_ssize_t));
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        if (p->items == p->small)
            memcpy(items, p->small, sizeof(p->small));
        p->items = items;
        p->capacity = capacity;
    }
    p->items[p->n++] = pos;
    return 0;
}

static int lke_positions_has(lke_positions *p, Py_ssize_t pos) {
    for (Py_ssize_t k = 0; k < p->n; k++)
        if (p->items[k] == pos)
            return 1;
    return 0;
}

static LKE_INLINE void lke_positions_free(lke_positions *p) {
    if (p->items != p->small)
        PyMem_Free(p->items);
    p->items = p->small;
    p->n = 0;
    p->capacity = 8;
}

#endif /* LKE_REGISTRY_H */
