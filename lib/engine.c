/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The mutation engine (SPEC 3, 4.4, 5): drives every node's plan on the
 * caller's libevent loop.
 *
 * Shape:
 * - A store listener sees every change. It never touches the store (the store
 *   forbids it) and never calls a service: it publishes the STATE_CHANGE event,
 *   notes what changed on the node's run state (a bit per mutator URL, a Cfg
 *   flag) and queues the node on the dirty list.
 * - One deferred event (the "pass") drains the dirty list from the loop. Many
 *   changes to many nodes between two loop iterations cost one pass and one
 *   evaluation per node; all service callbacks (start, mutate, interrupt ...)
 *   run from the pass or from a node's timer, never from an API call.
 * - Each node has one lazily created timer whose meaning depends on its phase:
 *   step timeout, wait for a service to start, back-off, no-path retry.
 *
 * Plans come from the planner's cache (kraken_mutation_set_plan() hands out
 * shared, ref-counted plans), so a node costs a hash lookup per event and a
 * cache lookup per step. After a step completes, the new plan is compared with
 * the rest of the old one: when they agree the node keeps its plan, so the
 * status shows the whole plan with the current step.
 */
#include <event2/event.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* FreeBusy.BUSY (SPEC 1.1 field 8). */
#define FREEBUSY_BUSY 1
/* Service id used as the origin of the engine's own discoveries (knowledge rule). */
#define ENGINE_ORIGIN "engine"
/* Distinct timer durations given their own O(1) queue (libevent allows 256 per base). */
#define ENGINE_COMMON_TIMEOUTS 32

/*
 * A set of URL bits indexed by kraken_murl.index: one inline word (URLs 0-63),
 * more words on the heap only for sets with more than 64 URLs: more[0] is their
 * count, more[w] holds URLs 64w .. 64w+63.
 */
typedef struct ebits {
    uint64_t word;
    uint64_t *more;
} ebits;

/*
 * A timer on the engine's clock. With the default clock it is a libevent timer
 * (a common timeout for the durations many nodes share); with an injected one
 * it waits in the engine's heap until kraken_engine_clock_moved() finds it due.
 */
struct kraken_timer {
    struct kraken_engine *engine; /* NULL once the engine is gone (module timers) */
    void (*fn)(kraken_timer *timer, void *userdata);
    void *userdata;
    struct event *ev;       /* default clock */
    uint64_t deadline;      /* injected clock: engine clock ms */
    uint64_t seq;           /* injected clock: arming order, the tie-break of deadlines */
    size_t heap_pos;        /* injected clock: index in the engine's heap */
    bool armed;
    bool is_module;         /* on the engine's list of module timers */
    kraken_timer *prev, *next;
};

typedef enum node_phase {
    PH_IDLE = 0,      /* needs (re)planning; also "waiting for thaw" while frozen */
    PH_CONVERGED,     /* plan finished or empty */
    PH_WAIT_SERVICE,  /* step chosen, its service is starting */
    PH_IN_FLIGHT,     /* step dispatched, waiting for its discoveries */
    PH_PASSIVE,       /* step runs elsewhere: following discoveries */
    PH_BACKOFF,       /* failed; waiting before trying again */
    PH_STUCK,         /* too many failures in a row */
    PH_NO_PATH,       /* the planner found no way */
    PH_BUSY           /* /Busy = BUSY: no plan, no mutation */
} node_phase;

typedef struct enode {
    kraken_uuid id;
    struct kraken_engine *engine; /* for the timer callback */
    kraken_plan *plan; /* current plan (shared with the planner's cache), or NULL */
    size_t step;       /* index of the current step in plan */
    uint8_t phase;
    bool dirty;        /* queued on the engine's dirty list */
    bool cfg_changed;  /* some Cfg value changed since the last evaluation */
    bool replan;       /* re-plan even without changes (thaw, set changed, timer) */
    bool deleted;      /* removed from the store; freed by the next pass */
    bool recreated;    /* deleted and created again before the pass saw it */
    ebits changed;     /* Dsc mutator URLs changed since the last evaluation */
    ebits stale;       /* mutator URLs the knowledge rule already called unknown */
    uint64_t stale_gen;
    uint64_t request_id; /* of the step in flight (0: none) */
    unsigned failures;
    char *last_failed; /* "service/mutation" of the last failure */
    char *reason;
    uint64_t backoff_until; /* engine clock ms */
    kraken_timer *timer;    /* created on first use */
    struct enode *next_dirty;
} enode;

struct kraken_service {
    kraken_engine *engine;
    char *id;
    char *module;
    char *state_url;      /* "/Services/<id>/State" */
    char *error_url;      /* "/Services/<id>/ErrorMsg" */
    char *config_url;     /* "/Services/<id>/Config" */
    kraken_service_ops ops;
    void *userdata;
    void (*destroy)(void *userdata);
    char **discoverable;  /* canonical URLs, or glob patterns */
    size_t n_discoverable;
    struct named_value *named;
    size_t n_named;
    int cfg_state, dsc_state;          /* cached from the self node */
    bool start_requested, stop_requested, config_changed, queued;
    struct kraken_service *next_queued;
    bool caller_owned; /* the caller holds the handle (add_service's out) and has not removed it */
    bool detaching;    /* its destroy hook runs as the engine goes: a remove then only disowns it */
};

typedef struct named_value {
    char *url;  /* canonical */
    char *name;
    kraken_value value;
} named_value;

struct kraken_engine {
    struct event_base *base;
    kraken_store *store;
    bool own_store;
    kraken_store_listener *listener;
    kraken_bus *bus;
    kraken_mutation_set *set;
    kraken_engine_options opts;
    kraken_uuid self;
    bool frozen;
    unsigned busy; /* our loop callbacks (pass, node timer) on the stack */
    bool dying;    /* going away (freed, or detached from a freed store): no more callbacks */
    bool free_requested; /* kraken_engine_free() was called */
    bool torn_down;      /* everything but the handle is released (see engine_teardown()) */
    kraken__owner owner;
    /* Attached children (syncs): detached before the engine goes (see kraken__engine_attach). */
    struct engine_child {
        void (*detach)(void *arg);
        void *arg;
    } *children;
    size_t n_children;

    /* node run states: open addressing, linear probing, backward-shift deletion */
    enode **slots;
    size_t cap, count;

    enode *dirty_head, *dirty_tail;
    kraken_service *svc_queue; /* services to reconcile */
    bool wake_waiters;         /* some service reached RUN */
    struct event *pass_ev;
    bool pass_scheduled;
    uint64_t generation;       /* of the mutation set, as last seen by a pass */
    uint64_t cond_gen; /* generation cond_bits was computed for */

    kraken_service **services;
    size_t n_services, cap_services;

    /* the clock (kraken_engine_options.now_ms) and, when injected, its timers */
    bool virtual_clock;
    kraken_timer **heap; /* min-heap by (deadline, seq) */
    size_t n_heap, cap_heap;
    uint64_t timer_seq;
    struct event *clock_ev; /* fires due timers from the loop */
    bool clock_scheduled;
    kraken_timer *module_timers; /* kraken_timer_new(): detached when the engine goes */
    uint64_t next_request; /* request ids */
    ebits cond_bits;       /* see condition_bits() */

    /* libevent "common timeouts": O(1) queues for the few durations in use (step timeouts) */
    struct {
        uint64_t ms;
        const struct timeval *tv;
    } common[ENGINE_COMMON_TIMEOUTS];
    size_t n_common;

    /* log callback (kraken_engine_set_log) */
    kraken_log_fn log_fn;
    void *log_userdata;
    void (*log_destroy)(void *userdata);
    int log_max_level;
};

/* ---- small helpers --------------------------------------------------------- */

/*
 * First check of every public entry point: the engine is alive (not detached
 * because its borrowed store was freed, not being freed) and this is its thread.
 */
static int engine_entry(const kraken_engine *e, const char *op)
{
    if (!e)
        return kraken__err(KRAKEN_EINVAL, "%s: engine must not be NULL", op);
    int rc = kraken__owner_check(&e->owner, op, "engine");
    if (rc < 0)
        return rc;
    if (e->dying)
        return kraken__err(KRAKEN_ESTATE, "%s: the engine %s", op,
                           e->free_requested ? "is being freed"
                                             : "was detached: its store was freed");
    return 0;
}

/* The same for calls on a service handle, which outlives its engine as a detached handle. */
static int service_entry(const kraken_service *svc, const char *op)
{
    if (!svc)
        return kraken__err(KRAKEN_EINVAL, "%s: service must not be NULL", op);
    if (!svc->engine)
        return kraken__err(KRAKEN_ESTATE, "%s: service '%s' was detached: its engine was freed",
                           op, svc->id);
    return engine_entry(svc->engine, op);
}

static uint64_t monotonic_ms(void *unused)
{
    (void)unused;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t now_ms(const kraken_engine *e)
{
    return e->opts.now_ms(e->opts.clock_userdata);
}

static struct timeval ms_tv(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

static void set_reason(enode *n, char *reason)
{
    free(n->reason);
    n->reason = reason;
}

/* ---- URL bit sets ------------------------------------------------------------ */

static size_t bits_words(const ebits *b)
{
    return 1 + (b->more ? (size_t)b->more[0] : 0);
}

/* Word @p w (0: the inline one), or 0 beyond the allocated ones. */
static uint64_t bits_word(const ebits *b, size_t w)
{
    if (w == 0)
        return b->word;
    return b->more && w <= b->more[0] ? b->more[w] : 0;
}

static bool bits_test(const ebits *b, size_t i)
{
    return (bits_word(b, i / 64) >> (i % 64)) & 1;
}

/* False when out of memory (the bit is not set). */
static bool bits_set(ebits *b, size_t i)
{
    size_t w = i / 64;
    if (w == 0) {
        b->word |= UINT64_C(1) << i;
        return true;
    }
    if (!b->more || w > b->more[0]) {
        size_t have = b->more ? (size_t)b->more[0] : 0, want = w + 4;
        uint64_t *more = realloc(b->more, (want + 1) * sizeof *more);
        if (!more)
            return false;
        memset(more + 1 + have, 0, (want - have) * sizeof *more);
        more[0] = want;
        b->more = more;
    }
    b->more[w] |= UINT64_C(1) << (i % 64);
    return true;
}

static bool bits_any(const ebits *b)
{
    for (size_t w = 0; w < bits_words(b); w++)
        if (bits_word(b, w))
            return true;
    return false;
}

static bool bits_intersect(const ebits *a, const ebits *b)
{
    for (size_t w = 0; w < bits_words(a); w++)
        if (bits_word(a, w) & bits_word(b, w))
            return true;
    return false;
}

static void bits_free(ebits *b)
{
    free(b->more);
    *b = (ebits){0, NULL};
}

static const char *uuid_str(const kraken_uuid *id, char buf[KRAKEN_UUID_STRLEN + 1])
{
    return kraken_uuid_format(id, buf);
}

/* ---- node table ------------------------------------------------------------- */

/* murmur3's finaliser: every input bit reaches the low bits the table mask keeps. */
static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    return h ^ (h >> 33);
}

/* Ids may be random or sequential (tests, sites): mix all 16 bytes. */
static size_t uuid_hash(const kraken_uuid *id)
{
    uint64_t a, b;
    memcpy(&a, id->bytes, 8);
    memcpy(&b, id->bytes + 8, 8);
    return (size_t)mix64(a ^ mix64(b));
}

static enode *node_find(const kraken_engine *e, const kraken_uuid *id)
{
    if (!e->cap)
        return NULL;
    size_t mask = e->cap - 1;
    for (size_t i = uuid_hash(id) & mask; e->slots[i]; i = (i + 1) & mask)
        if (memcmp(e->slots[i]->id.bytes, id->bytes, 16) == 0)
            return e->slots[i];
    return NULL;
}

static void table_place(enode **slots, size_t cap, enode *n)
{
    size_t mask = cap - 1, i = uuid_hash(&n->id) & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = n;
}

static int table_grow(kraken_engine *e)
{
    if ((e->count + 1) * 4 <= e->cap * 3)
        return 0;
    size_t cap = e->cap ? e->cap * 2 : 64;
    enode **slots = calloc(cap, sizeof *slots);
    if (!slots)
        return kraken__err(KRAKEN_ENOMEM, "engine: out of memory");
    for (size_t i = 0; i < e->cap; i++)
        if (e->slots[i])
            table_place(slots, cap, e->slots[i]);
    free(e->slots);
    e->slots = slots;
    e->cap = cap;
    return 0;
}

static void table_remove(kraken_engine *e, enode *n)
{
    size_t mask = e->cap - 1, i = uuid_hash(&n->id) & mask;
    while (e->slots[i] != n)
        i = (i + 1) & mask;
    e->slots[i] = NULL;
    /* Backward shift: move later members of the run into the hole when it is on their path. */
    for (size_t j = (i + 1) & mask; e->slots[j]; j = (j + 1) & mask) {
        size_t home = uuid_hash(&e->slots[j]->id) & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            e->slots[i] = e->slots[j];
            e->slots[j] = NULL;
            i = j;
        }
    }
    e->count--;
}

static enode *node_add(kraken_engine *e, const kraken_uuid *id)
{
    if (table_grow(e) < 0)
        return NULL;
    enode *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->id = *id;
    n->engine = e;
    table_place(e->slots, e->cap, n);
    e->count++;
    return n;
}

static void timer_destroy(kraken_timer *t);

static void node_free(enode *n)
{
    timer_destroy(n->timer);
    bits_free(&n->changed);
    bits_free(&n->stale);
    kraken_plan_free(n->plan);
    free(n->last_failed);
    free(n->reason);
    free(n);
}

/* ---- the pass scheduling ---------------------------------------------------- */

static void schedule_pass(kraken_engine *e)
{
    if (!e->pass_scheduled) {
        e->pass_scheduled = true;
        event_active(e->pass_ev, 0, 0);
    }
}

static void mark_dirty(kraken_engine *e, enode *n)
{
    if (n->dirty)
        return;
    n->dirty = true;
    n->next_dirty = NULL;
    if (e->dirty_tail)
        e->dirty_tail->next_dirty = n;
    else
        e->dirty_head = n;
    e->dirty_tail = n;
    schedule_pass(e);
}

static void mark_all(kraken_engine *e)
{
    for (size_t i = 0; i < e->cap; i++)
        if (e->slots[i]) {
            e->slots[i]->replan = true;
            mark_dirty(e, e->slots[i]);
        }
}

static void queue_service(kraken_engine *e, kraken_service *svc)
{
    if (svc->queued)
        return;
    svc->queued = true;
    svc->next_queued = e->svc_queue;
    e->svc_queue = svc;
    schedule_pass(e);
}

/* ---- events -------------------------------------------------------------------- */

static void publish_mutation(kraken_engine *e, kraken_mutation_event kind, const kraken_uuid *node,
                             const char *service, const char *mutation, const char *message)
{
    kraken_event ev = {
        .type = KRAKEN_EVENT_STATE_MUTATION,
        .kind = (int)kind,
        .node_id = *node,
        .service_id = service,
        .mutation_id = mutation,
        .message = message,
    };
    kraken_bus_publish(e->bus, &ev);
}

static void publish_discovery(kraken_engine *e, const kraken_uuid *node, const char *service,
                              const char *url, const kraken_value *value)
{
    kraken_event ev = {
        .type = KRAKEN_EVENT_DISCOVERY,
        .node_id = *node,
        .url = url,
        .new_value = value,
        .service_id = service,
    };
    kraken_bus_publish(e->bus, &ev);
}

/* ---- services: lookup ------------------------------------------------------------ */

/* Internal lookup: no entry checks (the engine's own paths run on its thread, also while dying). */
static kraken_service *service_lookup(const kraken_engine *engine, const char *service_id)
{
    for (size_t i = 0; i < engine->n_services; i++)
        if (strcmp(engine->services[i]->id, service_id) == 0)
            return engine->services[i];
    return NULL;
}

kraken_service *kraken_engine_find_service(kraken_engine *engine, const char *service_id)
{
    if (!service_id || engine_entry(engine, "engine_find_service") < 0)
        return NULL;
    return service_lookup(engine, service_id);
}

/* The service named by a self-node URL "/Services/<id>/<rest>", and <rest>. */
static kraken_service *service_of_url(kraken_engine *e, const char *url, const char **rest)
{
    static const char prefix[] = "/Services/";
    if (strncmp(url, prefix, sizeof prefix - 1) != 0)
        return NULL;
    const char *id = url + sizeof prefix - 1;
    const char *slash = strchr(id, '/');
    size_t len = slash ? (size_t)(slash - id) : strlen(id);
    for (size_t i = 0; i < e->n_services; i++) {
        kraken_service *svc = e->services[i];
        if (strlen(svc->id) == len && memcmp(svc->id, id, len) == 0) {
            *rest = slash ? slash + 1 : "";
            return svc;
        }
    }
    return NULL;
}

/* ---- store listener -------------------------------------------------------------- */

/* The mutator URL (a URL some mutation mutates) with this canonical text, or NULL. */
static const kraken_murl *mutator_url(const kraken_mutation_set *set, const char *canonical)
{
    const kraken_murl *u = kraken__mutation_set_find_url(set, canonical);
    return u && u->n_mutating ? u : NULL;
}

/* A change on the self node's /Services/<id>/...: keep the service's cached states. */
static void self_service_change(kraken_engine *e, const kraken_state_change *c)
{
    const char *rest;
    kraken_service *svc = c->url ? service_of_url(e, c->url, &rest) : NULL;
    if (!svc)
        return;
    int state = c->new_value->type == KRAKEN_T_ENUM ? (int)c->new_value->v.i : 0;
    if (c->kind == KRAKEN_CHANGE_CFG_UPDATE) {
        if (strcmp(rest, "State") == 0) {
            svc->cfg_state = state;
            if (state == KRAKEN_SERVICE_RUN)
                svc->start_requested = true;
            else if (state == KRAKEN_SERVICE_STOP)
                svc->stop_requested = true;
            queue_service(e, svc);
        } else if (strncmp(rest, "Config", 6) == 0) {
            svc->config_changed = true;
            queue_service(e, svc);
        }
        return;
    }
    if (strcmp(rest, "State") != 0)
        return;
    svc->dsc_state = state;
    /* An ERROR carries its reason (kraken_service_set_state() writes it first). */
    kraken_value msg = KRAKEN_VALUE_INIT;
    if (state == KRAKEN_SERVICE_ERROR &&
        kraken_store_get_value(e->store, KRAKEN_DSC, &e->self, svc->error_url, &msg) < 0)
        kraken_error_clear();
    kraken_event ev = {
        .type = KRAKEN_EVENT_SERVICE,
        .kind = state,
        .node_id = c->node_id,
        .url = c->url,
        .old_value = c->old_value,
        .new_value = c->new_value,
        .service_id = svc->id,
        .message = msg.type == KRAKEN_T_STRING ? msg.v.str.data : NULL,
    };
    kraken_bus_publish(e->bus, &ev);
    kraken_value_clear(&msg);
    if (state == KRAKEN_SERVICE_RUN) {
        e->wake_waiters = true;
        schedule_pass(e);
    }
}

static void on_store_change(const kraken_state_change *c, void *userdata)
{
    kraken_engine *e = userdata;
    kraken_event ev = {
        .type = KRAKEN_EVENT_STATE_CHANGE,
        .kind = (int)c->kind,
        .node_id = c->node_id,
        .url = c->url,
        .old_value = c->old_value,
        .new_value = c->new_value,
    };
    kraken_bus_publish(e->bus, &ev);

    enode *n = node_find(e, &c->node_id);
    switch (c->kind) {
    case KRAKEN_CHANGE_CREATE:
        if (!n && !(n = node_add(e, &c->node_id)))
            return; /* out of memory: the node is not driven (nothing better to do here) */
        n->recreated = n->deleted;
        n->deleted = false;
        n->cfg_changed = true;
        break;
    case KRAKEN_CHANGE_DELETE:
        if (!n)
            return;
        n->deleted = true;
        break;
    case KRAKEN_CHANGE_CFG_UPDATE:
        if (!n)
            return;
        n->cfg_changed = true;
        break;
    case KRAKEN_CHANGE_UPDATE: {
        if (!n)
            return;
        const kraken_murl *u = c->url ? mutator_url(e->set, c->url) : NULL;
        if (u) {
            if (!bits_set(&n->changed, u->index))
                n->replan = true; /* out of memory: look at everything again */
            break;
        }
        if (c->url && strcmp(c->url, "/Busy") == 0)
            break; /* evaluate() looks at it */
        if (memcmp(c->node_id.bytes, e->self.bytes, 16) == 0)
            self_service_change(e, c);
        return; /* nothing the plan depends on */
    }
    default:
        return;
    }
    if (c->kind == KRAKEN_CHANGE_CFG_UPDATE && memcmp(c->node_id.bytes, e->self.bytes, 16) == 0)
        self_service_change(e, c);
    mark_dirty(e, n);
}

/* ---- timers on the engine's clock ------------------------------------------------------ */

static void node_timer_cb(kraken_timer *t, void *arg);
static void node_timer_phase(kraken_engine *e, enode *n);

/*
 * Thousands of nodes arm the same few durations (a mutation's timeout): a
 * libevent common timeout keeps them in a FIFO queue instead of the heap.
 */
static const struct timeval *common_timeout(kraken_engine *e, uint64_t ms)
{
    if (ms == 0)
        return NULL;
    for (size_t i = 0; i < e->n_common; i++)
        if (e->common[i].ms == ms)
            return e->common[i].tv;
    if (e->n_common == ENGINE_COMMON_TIMEOUTS)
        return NULL;
    struct timeval tv = ms_tv(ms);
    const struct timeval *common = event_base_init_common_timeout(e->base, &tv);
    if (common) {
        e->common[e->n_common].ms = ms;
        e->common[e->n_common++].tv = common;
    }
    return common;
}

static bool heap_before(const kraken_timer *a, const kraken_timer *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void heap_set(kraken_engine *e, size_t i, kraken_timer *t)
{
    e->heap[i] = t;
    t->heap_pos = i;
}

static void heap_up(kraken_engine *e, size_t i)
{
    kraken_timer *t = e->heap[i];
    while (i > 0 && heap_before(t, e->heap[(i - 1) / 2])) {
        heap_set(e, i, e->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(e, i, t);
}

static void heap_down(kraken_engine *e, size_t i)
{
    kraken_timer *t = e->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= e->n_heap)
            break;
        if (c + 1 < e->n_heap && heap_before(e->heap[c + 1], e->heap[c]))
            c++;
        if (!heap_before(e->heap[c], t))
            break;
        heap_set(e, i, e->heap[c]);
        i = c;
    }
    heap_set(e, i, t);
}

static void heap_remove(kraken_engine *e, kraken_timer *t)
{
    size_t i = t->heap_pos;
    kraken_timer *last = e->heap[--e->n_heap];
    if (last != t) {
        heap_set(e, i, last);
        heap_up(e, i);
        heap_down(e, last->heap_pos);
    }
}

static void schedule_clock(kraken_engine *e)
{
    if (!e->clock_scheduled && e->clock_ev) {
        e->clock_scheduled = true;
        event_active(e->clock_ev, 0, 0);
    }
}

static void timer_disarm(kraken_timer *t)
{
    if (!t || !t->armed)
        return;
    t->armed = false;
    if (t->ev)
        evtimer_del(t->ev);
    else if (t->engine)
        heap_remove(t->engine, t);
}

static void engine_unbusy(kraken_engine *e);

/* Default clock: libevent runs the timer. */
static void timer_event_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kraken_timer *t = arg;
    kraken_engine *e = t->engine;
    t->armed = false;
    e->busy++; /* the callback may free the engine: it waits for us (kraken_engine_free) */
    t->fn(t, t->userdata); /* may free t */
    engine_unbusy(e);
}

static kraken_timer *etimer_create(kraken_engine *e, void (*fn)(kraken_timer *, void *), void *arg)
{
    kraken_timer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    *t = (kraken_timer){.engine = e, .fn = fn, .userdata = arg};
    if (!e->virtual_clock && !(t->ev = evtimer_new(e->base, timer_event_cb, t))) {
        free(t);
        return NULL;
    }
    return t;
}

static void timer_destroy(kraken_timer *t)
{
    if (!t)
        return;
    timer_disarm(t);
    if (t->ev)
        event_free(t->ev);
    free(t);
}

/* (Re)arm @p t for @p ms from now on the engine's clock. */
static int timer_start(kraken_timer *t, uint64_t ms)
{
    kraken_engine *e = t->engine;
    timer_disarm(t);
    t->armed = true;
    if (t->ev) { /* libevent keeps the deadline (no clock read per arm: thousands of nodes) */
        const struct timeval *common = common_timeout(e, ms);
        struct timeval tv = ms_tv(ms);
        if (evtimer_add(t->ev, common ? common : &tv) < 0) {
            t->armed = false;
            return kraken__err(KRAKEN_EIO, "engine: cannot arm a timer");
        }
        return 0;
    }
    t->deadline = now_ms(e) + ms;
    t->seq = ++e->timer_seq;
    if (e->n_heap == e->cap_heap) {
        size_t cap = e->cap_heap ? e->cap_heap * 2 : 64;
        kraken_timer **h = realloc(e->heap, cap * sizeof *h);
        if (!h) {
            t->armed = false;
            return kraken__err(KRAKEN_ENOMEM, "engine: out of memory");
        }
        e->heap = h;
        e->cap_heap = cap;
    }
    e->heap[e->n_heap] = t;
    t->heap_pos = e->n_heap++;
    heap_up(e, t->heap_pos);
    if (ms == 0)
        schedule_clock(e); /* due already: fires from the loop, as with libevent */
    return 0;
}

/*
 * Injected clock: fire what is due, earliest first. Timers armed while this
 * runs wait for the next round (a timer re-armed with 0 cannot spin here).
 */
static void clock_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kraken_engine *e = arg;
    e->clock_scheduled = false;
    e->busy++;
    uint64_t now = now_ms(e), last_seq = e->timer_seq;
    while (!e->dying && e->n_heap && e->heap[0]->deadline <= now && e->heap[0]->seq <= last_seq) {
        kraken_timer *t = e->heap[0];
        heap_remove(e, t);
        t->armed = false;
        t->fn(t, t->userdata); /* may free t, arm timers, free the engine */
    }
    if (!e->dying && e->n_heap && e->heap[0]->deadline <= now)
        schedule_clock(e);
    engine_unbusy(e);
}

/* Arm the node's timer (its meaning is the node's phase). Frozen engines arm nothing. */
static void timer_arm(kraken_engine *e, enode *n, uint64_t ms)
{
    if (e->frozen)
        return;
    if (!n->timer && !(n->timer = etimer_create(e, node_timer_cb, n)))
        return; /* out of memory: the step runs without a timer */
    if (timer_start(n->timer, ms) < 0)
        kraken_error_clear(); /* the same: no timer */
}

static void timer_cancel(enode *n)
{
    timer_disarm(n->timer);
}

/* ---- module timers and the clock (public) ---------------------------------------------- */

uint64_t kraken_engine_now_ms(const kraken_engine *engine)
{
    if (engine_entry(engine, "engine_now_ms") < 0)
        return 0;
    return now_ms(engine);
}

int kraken_engine_clock_moved(kraken_engine *engine)
{
    int rc = engine_entry(engine, "engine_clock_moved");
    if (rc < 0)
        return rc;
    if (engine->virtual_clock && !engine->dying)
        schedule_clock(engine);
    return 0;
}

int kraken_timer_new(kraken_timer **out, kraken_engine *engine,
                     void (*fn)(kraken_timer *timer, void *userdata), void *userdata)
{
    if (out)
        *out = NULL;
    if (!out || !engine || !fn)
        return kraken__err(KRAKEN_EINVAL, "timer_new: out, engine and fn are required");
    int rc = engine_entry(engine, "timer_new");
    if (rc < 0)
        return rc;
    kraken_timer *t = etimer_create(engine, fn, userdata);
    if (!t)
        return kraken__err(KRAKEN_ENOMEM, "timer_new: out of memory");
    t->is_module = true;
    t->next = engine->module_timers;
    if (t->next)
        t->next->prev = t;
    engine->module_timers = t;
    *out = t;
    return 0;
}

int kraken_timer_arm(kraken_timer *timer, uint64_t ms)
{
    if (!timer)
        return kraken__err(KRAKEN_EINVAL, "timer_arm: timer is NULL");
    if (!timer->engine)
        return kraken__err(KRAKEN_ESTATE, "timer_arm: the timer's engine is gone");
    int rc = engine_entry(timer->engine, "timer_arm");
    return rc < 0 ? rc : timer_start(timer, ms);
}

void kraken_timer_cancel(kraken_timer *timer)
{
    timer_disarm(timer);
}

bool kraken_timer_armed(const kraken_timer *timer)
{
    return timer && timer->armed;
}

void kraken_timer_free(kraken_timer *timer)
{
    if (!timer)
        return;
    kraken_engine *e = timer->engine;
    if (e && timer->is_module) {
        if (timer->prev)
            timer->prev->next = timer->next;
        else
            e->module_timers = timer->next;
        if (timer->next)
            timer->next->prev = timer->prev;
    }
    timer_destroy(timer);
}

int kraken_engine_next_deadline(const kraken_engine *engine, uint64_t *out)
{
    if (!out)
        return kraken__err(KRAKEN_EINVAL, "engine_next_deadline: out is required");
    int rc = engine_entry(engine, "engine_next_deadline");
    if (rc < 0)
        return rc;
    *out = engine->n_heap ? engine->heap[0]->deadline : UINT64_MAX;
    return 0;
}

/* The engine goes: module timers stay valid handles that do nothing. */
static void detach_module_timers(kraken_engine *e)
{
    while (e->module_timers) {
        kraken_timer *t = e->module_timers;
        e->module_timers = t->next;
        timer_disarm(t);
        if (t->ev)
            event_free(t->ev);
        t->ev = NULL;
        t->engine = NULL;
        t->prev = t->next = NULL;
        t->is_module = false;
    }
}

/* ---- requests to services ------------------------------------------------------------ */

static const char *step_service(const enode *n)
{
    return kraken_plan_step_service(n->plan, n->step);
}

static const char *step_mutation(const enode *n)
{
    return kraken_plan_step_mutation(n->plan, n->step);
}

/*
 * A request for a module: the mutation's URL list and copies of the node's
 * Cfg and Dsc (nothing a module holds may point into the store). For a
 * deleted node both are empty nodes with its id. False when out of memory.
 */
static bool request_make(kraken_engine *e, const enode *n, const kraken_mutation *m,
                         uint64_t id, kraken_mutation_request *req)
{
    kraken_node *cfg = NULL, *dsc = NULL;
    const kraken_node *c = kraken__store_peek(e->store, KRAKEN_CFG, &n->id);
    const kraken_node *d = kraken__store_peek(e->store, KRAKEN_DSC, &n->id);
    int rc = c ? kraken_node_copy(&cfg, c) : kraken_node_new(&cfg, &n->id);
    if (rc == 0)
        rc = d ? kraken_node_copy(&dsc, d) : kraken_node_new(&dsc, &n->id);
    if (rc < 0) {
        kraken_node_free(cfg);
        kraken_error_clear();
        return false;
    }
    *req = (kraken_mutation_request){id, n->id, m->service, m->id, m->text, m->n_mutates,
                                     cfg, dsc};
    return true;
}

static void request_clear(kraken_mutation_request *req)
{
    kraken_node_free((kraken_node *)req->cfg);
    kraken_node_free((kraken_node *)req->dsc);
}

/* Tell the owning service to abandon the node's in-flight step (INTERRUPT). */
static void step_interrupt(kraken_engine *e, enode *n, const char *why)
{
    timer_cancel(n);
    if (n->phase != PH_IN_FLIGHT)
        return;
    n->phase = PH_IDLE;
    uint64_t id = n->request_id;
    n->request_id = 0; /* from now on a report for it is a late answer */
    const char *sid = step_service(n), *mid = step_mutation(n);
    publish_mutation(e, KRAKEN_MUTATION_INTERRUPT, &n->id, sid, mid, why);
    kraken_service *svc = service_lookup(e, sid);
    const kraken_mutation *m = kraken__mutation_find(e->set, sid, mid);
    kraken_mutation_request req;
    if (!svc || !svc->ops.interrupt || !m || !request_make(e, n, m, id, &req))
        return;
    svc->ops.interrupt(svc, &req, svc->userdata);
    request_clear(&req);
}

/* ---- failures ---------------------------------------------------------------------------- */

static uint64_t backoff_delay(const kraken_engine *e, unsigned failures)
{
    uint64_t d = e->opts.backoff_initial_ms;
    for (unsigned i = 1; i < failures && d < e->opts.backoff_max_ms; i++)
        d *= 2;
    return d < e->opts.backoff_max_ms ? d : e->opts.backoff_max_ms;
}

/* Count a failure of the current step: back off, or mark the node stuck. */
static void node_fail(kraken_engine *e, enode *n, char *reason)
{
    timer_cancel(n);
    n->request_id = 0;
    n->failures++;
    free(n->last_failed);
    n->last_failed = n->plan && n->step < kraken_plan_length(n->plan)
                         ? str_printf("%s/%s", step_service(n), step_mutation(n))
                         : NULL;
    if (e->opts.max_failures && n->failures >= e->opts.max_failures) {
        set_reason(n, str_printf("stuck after %u failures in a row: %s", n->failures,
                                 reason ? reason : "failure"));
        free(reason);
        n->phase = PH_STUCK;
        return;
    }
    set_reason(n, reason);
    uint64_t delay = backoff_delay(e, n->failures);
    n->backoff_until = now_ms(e) + delay;
    n->phase = PH_BACKOFF;
    timer_arm(e, n, delay);
}

/* A step finished well: a success of the step that failed last ends the failure streak. */
static void node_success(enode *n, const char *service, const char *mutation)
{
    if (!n->last_failed)
        return;
    size_t ls = strlen(service);
    if (strncmp(n->last_failed, service, ls) == 0 && n->last_failed[ls] == '/' &&
        strcmp(n->last_failed + ls + 1, mutation) == 0) {
        n->failures = 0;
        free(n->last_failed);
        n->last_failed = NULL;
    }
}

/* ---- planning and dispatch ---------------------------------------------------------------- */

static bool context_matches(const kraken_engine *e, const kraken_mutation *m, const enode *n,
                            const kraken_node *cfg)
{
    switch (m->context) {
    case KRAKEN_CONTEXT_ALL:
        return true;
    case KRAKEN_CONTEXT_SELF:
        return memcmp(n->id.bytes, e->self.bytes, 16) == 0;
    case KRAKEN_CONTEXT_CHILD: {
        const kraken_uuid *parent = cfg->rec.slots[KRAKEN_NODE_F_PARENT_ID].uuid;
        return parent && memcmp(parent->bytes, e->self.bytes, 16) == 0;
    }
    }
    return false;
}

static uint64_t step_timeout_ms(const kraken_engine *e, const kraken_mutation *m)
{
    double ms = (double)m->timeout_ms * e->opts.timeout_scale;
    if (ms < 1.0)
        return 1;
    return ms > (double)UINT32_MAX * 1000.0 ? (uint64_t)UINT32_MAX * 1000u : (uint64_t)ms;
}

/* Ask for the service to run: Cfg state RUN (which starts it), or a restart if it stopped. */
static void service_request_start(kraken_engine *e, kraken_service *svc)
{
    if (svc->cfg_state != KRAKEN_SERVICE_RUN) {
        kraken_value run = kraken_value_int(KRAKEN_T_ENUM, KRAKEN_SERVICE_RUN);
        kraken_store_set_value(e->store, KRAKEN_CFG, &e->self, svc->state_url, &run);
        return;
    }
    if (svc->dsc_state != KRAKEN_SERVICE_INIT && svc->dsc_state != KRAKEN_SERVICE_RUN) {
        svc->start_requested = true;
        queue_service(e, svc);
    }
}

static void dispatch(kraken_engine *e, enode *n, const kraken_mutation *m, kraken_service *svc,
                     const kraken_node *cfg)
{
    (void)cfg;
    kraken_plan *plan = n->plan;
    size_t step = n->step;
    uint64_t id = ++e->next_request;
    n->phase = PH_IN_FLIGHT;
    n->request_id = id;
    publish_mutation(e, KRAKEN_MUTATION_MUTATE, &n->id, m->service, m->id, NULL);
    uint64_t timeout = m->timeout_ms ? step_timeout_ms(e, m) : 0;
    kraken_mutation_request req;
    if (svc->ops.mutate && request_make(e, n, m, id, &req)) {
        svc->ops.mutate(svc, &req, svc->userdata);
        request_clear(&req);
    }
    /* The service may have failed the step from inside mutate() (node_fail set the timer). */
    if (e->dying || n->phase != PH_IN_FLIGHT || n->request_id != id || n->plan != plan ||
        n->step != step)
        return;
    if (timeout)
        timer_arm(e, n, timeout); /* replaces whatever the timer was set for */
    else
        timer_cancel(n);
}

/* Start (or keep waiting for) the current step of the node's plan. */
static void step_start(kraken_engine *e, enode *n, const kraken_node *cfg)
{
    if (!n->plan || n->step >= kraken_plan_length(n->plan)) {
        timer_cancel(n);
        n->phase = PH_CONVERGED;
        n->failures = 0;
        free(n->last_failed);
        n->last_failed = NULL;
        set_reason(n, NULL);
        return;
    }
    const kraken_mutation *m = kraken__mutation_find(e->set, step_service(n), step_mutation(n));
    if (!m || !context_matches(e, m, n, cfg)) {
        timer_cancel(n);
        n->phase = PH_PASSIVE;
        return;
    }
    if (e->frozen) {
        n->phase = PH_IDLE;
        return;
    }
    uint64_t now = n->backoff_until ? now_ms(e) : 0;
    if (n->backoff_until > now) {
        n->phase = PH_BACKOFF;
        timer_arm(e, n, n->backoff_until - now);
        return;
    }
    n->backoff_until = 0;
    kraken_service *svc = service_lookup(e, m->service);
    if (!svc) {
        timer_cancel(n);
        n->phase = PH_PASSIVE;
        set_reason(n, str_printf("service '%s' is not on this instance", m->service));
        return;
    }
    if (svc->dsc_state != KRAKEN_SERVICE_RUN) {
        if (n->phase != PH_WAIT_SERVICE) {
            n->phase = PH_WAIT_SERVICE;
            timer_arm(e, n, e->opts.service_start_ms);
        }
        service_request_start(e, svc);
        return;
    }
    dispatch(e, n, m, svc, cfg);
}

static bool plan_rest_equal(const kraken_plan *old, size_t from, const kraken_plan *fresh)
{
    if (old == fresh && from == 0)
        return true;
    size_t n = kraken_plan_length(fresh);
    if (!old || kraken_plan_length(old) - from != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(kraken_plan_step_mutation(old, from + i), kraken_plan_step_mutation(fresh, i)) ||
            strcmp(kraken_plan_step_service(old, from + i), kraken_plan_step_service(fresh, i)))
            return false;
    return true;
}

/* "You can't get there from here": a visible status, retried on changes (and on a timer). */
static void set_no_path(kraken_engine *e, enode *n, char *why)
{
    timer_cancel(n);
    n->phase = PH_NO_PATH;
    set_reason(n, why);
    if (e->opts.no_path_retry_ms)
        timer_arm(e, n, e->opts.no_path_retry_ms);
}

/* Plan from the node's current state: the fresh plan (caller owns it), or NULL and *why. */
static kraken_plan *plan_node(kraken_engine *e, const kraken_node *cfg, const kraken_node *dsc,
                              char **why)
{
    kraken_plan *plan = NULL;
    if (kraken_mutation_set_plan(e->set, cfg, dsc, &plan) == 0)
        return plan;
    *why = str_printf("no path: %s", kraken_error_last());
    kraken_error_clear();
    return NULL;
}

/* Adopt a fresh plan unless it only repeats the rest of the current one; then start. */
static void plan_adopt(kraken_engine *e, enode *n, kraken_plan *fresh, const kraken_node *cfg)
{
    if (n->plan && plan_rest_equal(n->plan, n->step, fresh)) {
        kraken_plan_free(fresh);
    } else {
        kraken_plan_free(n->plan);
        n->plan = fresh;
        n->step = 0;
    }
    step_start(e, n, cfg);
}

static void replan(kraken_engine *e, enode *n, const kraken_node *cfg, const kraken_node *dsc)
{
    char *why = NULL;
    kraken_plan *fresh = plan_node(e, cfg, dsc, &why);
    if (fresh)
        plan_adopt(e, n, fresh, cfg);
    else
        set_no_path(e, n, why);
}

/* ---- knowledge rule ------------------------------------------------------------------------- */

/*
 * Mutator URLs some discovery condition may read: those required by a
 * mutation that mutates something from zero (a superset of the conditions).
 * Only their changes can make another URL stale. Cached per set generation.
 */
static const ebits *condition_bits(kraken_engine *e)
{
    uint64_t gen = kraken__mutation_set_generation(e->set);
    if (e->cond_gen == gen)
        return &e->cond_bits;
    bits_free(&e->cond_bits);
    bool complete = true;
    for (size_t i = 0; i < e->set->n_muts; i++) {
        const kraken_mutation *m = e->set->muts[i];
        bool from_zero = false;
        for (size_t k = 0; k < m->n_mutates; k++)
            from_zero |= kraken_value_is_zero(&m->mutates[k].from);
        for (size_t k = 0; from_zero && k < m->n_requires; k++)
            if (m->requires[k].u->n_mutating)
                complete &= bits_set(&e->cond_bits, m->requires[k].u->index);
    }
    e->cond_gen = complete ? gen : 0; /* out of memory: computed again next time */
    return &e->cond_bits;
}

/* The URLs the knowledge rule calls unknown now (no bound on their number). */
typedef struct stale_ctx {
    const kraken_murl **urls;
    size_t n, cap;
    ebits bits;
    bool oom;
} stale_ctx;

static int collect_stale(const kraken_murl *u, void *userdata)
{
    stale_ctx *ctx = userdata;
    if (ctx->n == ctx->cap) {
        size_t cap = ctx->cap ? ctx->cap * 2 : 16;
        const kraken_murl **v = realloc(ctx->urls, cap * sizeof *v);
        if (!v) {
            ctx->oom = true;
            return KRAKEN_ENOMEM;
        }
        ctx->urls = v;
        ctx->cap = cap;
    }
    ctx->urls[ctx->n++] = u;
    if (!bits_set(&ctx->bits, u->index)) {
        ctx->oom = true;
        return KRAKEN_ENOMEM;
    }
    return 0;
}

static kraken_value zero_of(const kraken_murl *u)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    v.type = u->type;
    v.enum_type = u->enm;
    if (u->type == KRAKEN_T_STRING || u->type == KRAKEN_T_BYTES)
        v.v.str.data = (char *)"";
    return v;
}

/*
 * SPEC 4.2: a mutator URL whose discovery conditions stop holding becomes
 * unknown, and the engine records that in Dsc. Only facts that were valid and
 * became stale through this change are cleared: a value that arrives while
 * its conditions are not (yet) known, e.g. RunState SYNC reported by a child
 * before the power module has spoken, is kept for when they are. @p changed
 * holds the Dsc mutator URLs changed since the last evaluation.
 */
static bool apply_knowledge(kraken_engine *e, enode *n, const kraken_node *cfg,
                            const kraken_node *dsc, const ebits *changed)
{
    uint64_t gen = kraken__mutation_set_generation(e->set);
    if (!bits_intersect(changed, condition_bits(e)) && !n->cfg_changed && n->stale_gen == gen)
        return false; /* nothing any discovery condition reads has changed */
    stale_ctx ctx = {0};
    if (kraken__mutation_set_stale(e->set, cfg, dsc, collect_stale, &ctx) < 0 || ctx.oom) {
        kraken_error_clear();
        free(ctx.urls);
        bits_free(&ctx.bits);
        return false;
    }
    /* Judged against the last evaluation's baseline; a new set only takes a new baseline. */
    bool judge = bits_any(changed) && n->stale_gen == gen;
    const kraken_murl **clear = ctx.urls;
    size_t n_clear = 0;
    for (size_t i = 0; judge && i < ctx.n; i++) {
        const kraken_murl *u = ctx.urls[i];
        if (!bits_test(&n->stale, u->index) && !bits_test(changed, u->index))
            clear[n_clear++] = u; /* compacts ctx.urls in place */
    }
    /* The new baseline: stale now, except what is cleared below (it will be unknown). */
    bits_free(&n->stale);
    n->stale = ctx.bits;
    for (size_t i = 0; i < n_clear; i++) {
        size_t b = clear[i]->index;
        if (b / 64 == 0)
            n->stale.word &= ~(UINT64_C(1) << b);
        else
            n->stale.more[b / 64] &= ~(UINT64_C(1) << (b % 64));
    }
    n->stale_gen = gen;
    for (size_t i = 0; i < n_clear; i++) {
        const kraken_murl *u = clear[i];
        kraken_value zero = zero_of(u);
        if (kraken_store_set_value(e->store, KRAKEN_DSC, &n->id, u->text, &zero) == 0)
            publish_discovery(e, &n->id, ENGINE_ORIGIN, u->text, &zero);
        else
            kraken_error_clear();
    }
    free(ctx.urls);
    return n_clear != 0;
}

/* ---- evaluating a node ----------------------------------------------------------------------- */

typedef enum step_progress {
    STEP_PENDING,    /* every URL shows `from` or `to` */
    STEP_DONE,       /* every URL shows `to` */
    STEP_DISCOVERED, /* a discovery step found another value: a normal outcome */
    STEP_CONTRADICT  /* some URL shows neither `from` nor `to` */
} step_progress;

static step_progress progress_of(const kraken_mutation *m, const kraken_node *dsc,
                                 const kraken_murl **bad)
{
    size_t at_to = 0;
    bool other_from_zero = false, contradict = false;
    for (size_t i = 0; i < m->n_mutates; i++) {
        const kraken_mchange *ch = &m->mutates[i];
        const kraken_slot *slot = kraken__url_peek(ch->u->url, dsc);
        if (kraken__mslot_matches(ch->u->type, slot, &ch->to)) {
            at_to++;
        } else if (!kraken__mslot_matches(ch->u->type, slot, &ch->from)) {
            if (kraken_value_is_zero(&ch->from)) {
                other_from_zero = true;
            } else {
                contradict = true;
                *bad = ch->u;
            }
        }
    }
    if (at_to == m->n_mutates)
        return STEP_DONE;
    if (contradict)
        return STEP_CONTRADICT;
    return other_from_zero ? STEP_DISCOVERED : STEP_PENDING;
}

/* Did a Dsc mutator URL other than the step's own change? */
static bool changed_outside_step(const ebits *changed, const kraken_mutation *m)
{
    for (size_t w = 0; w < bits_words(changed); w++) {
        uint64_t word = bits_word(changed, w);
        for (size_t i = 0; i < m->n_mutates; i++)
            if (m->mutates[i].u->index / 64 == w)
                word &= ~(UINT64_C(1) << (m->mutates[i].u->index % 64));
        if (word)
            return true;
    }
    return false;
}

static char *contradiction_reason(const kraken_mutation *m, const kraken_murl *u,
                                  const kraken_node *dsc)
{
    char *value = NULL;
    kraken_value v = KRAKEN_VALUE_INIT;
    if (kraken__url_get(u->url, dsc, &v) == 0)
        kraken_value_format(&v, &value);
    kraken_value_clear(&v);
    kraken_error_clear();
    char *r = str_printf("%s/%s: %s became %s unexpectedly", m->service, m->id, u->text,
                         value ? value : "?");
    free(value);
    return r;
}

/*
 * After a service callback: the engine may be going away, and the callback may
 * have replaced or deleted the node's stored records (writes swap in new copies).
 * False when the evaluation must stop here; a deleted node's pass comes next.
 */
static bool reload(const kraken_engine *e, const enode *n, const kraken_node **cfg,
                   const kraken_node **dsc)
{
    if (e->dying)
        return false;
    *cfg = kraken__store_peek(e->store, KRAKEN_CFG, &n->id);
    *dsc = kraken__store_peek(e->store, KRAKEN_DSC, &n->id);
    return *cfg && *dsc;
}

/* The node holds a step (waiting for its service, in flight, or followed passively). */
static void follow_step(kraken_engine *e, enode *n, const kraken_node *cfg, const kraken_node *dsc,
                        const ebits *changed, bool replan_wanted)
{
    const kraken_mutation *m = kraken__mutation_find(e->set, step_service(n), step_mutation(n));
    if (!m) { /* the mutation was removed */
        step_interrupt(e, n, "mutation removed");
        n->phase = PH_IDLE;
        if (reload(e, n, &cfg, &dsc))
            replan(e, n, cfg, dsc);
        return;
    }
    bool in_flight = n->phase == PH_IN_FLIGHT;
    const kraken_murl *bad = NULL;
    switch (progress_of(m, dsc, &bad)) {
    case STEP_DONE:
    case STEP_DISCOVERED:
        if (in_flight) {
            /* The timer is re-armed or cancelled by whatever comes next (step_start). */
            publish_mutation(e, KRAKEN_MUTATION_DONE, &n->id, m->service, m->id, NULL);
            node_success(n, m->service, m->id);
        }
        n->phase = PH_IDLE;
        n->step++;
        replan(e, n, cfg, dsc);
        return;
    case STEP_CONTRADICT:
        if (in_flight) {
            char *why = contradiction_reason(m, bad, dsc);
            step_interrupt(e, n, why);
            node_fail(e, n, why);
            return;
        }
        n->phase = PH_IDLE;
        replan(e, n, cfg, dsc);
        return;
    case STEP_PENDING:
        break;
    }
    /* Still under way: re-plan only when something else changed. */
    if (!replan_wanted && !changed_outside_step(changed, m)) {
        if (n->phase == PH_WAIT_SERVICE)
            step_start(e, n, cfg);
        return;
    }
    char *why = NULL;
    kraken_plan *fresh = plan_node(e, cfg, dsc, &why);
    if (!fresh) {
        step_interrupt(e, n, "no path");
        set_no_path(e, n, why);
        return;
    }
    bool same_step = kraken_plan_length(fresh) > 0 &&
                     strcmp(kraken_plan_step_service(fresh, 0), step_service(n)) == 0 &&
                     strcmp(kraken_plan_step_mutation(fresh, 0), step_mutation(n)) == 0;
    if (same_step) {
        if (!plan_rest_equal(n->plan, n->step, fresh)) {
            kraken_plan_free(n->plan);
            n->plan = fresh;
            n->step = 0;
        } else {
            kraken_plan_free(fresh);
        }
        if (!in_flight)
            step_start(e, n, cfg);
        return;
    }
    step_interrupt(e, n, "plan changed");
    n->phase = PH_IDLE;
    if (!reload(e, n, &cfg, &dsc)) {
        kraken_plan_free(fresh);
        return;
    }
    plan_adopt(e, n, fresh, cfg);
}

static void node_forget(kraken_engine *e, enode *n)
{
    /* Out of the table first: if the interrupt callback creates the id again, it is a new node. */
    table_remove(e, n);
    if (n->phase == PH_IN_FLIGHT)
        step_interrupt(e, n, "node deleted");
    timer_cancel(n);
    node_free(n);
}

static bool node_is_busy(const kraken_node *node)
{
    return node->rec.slots[KRAKEN_NODE_F_BUSY].i == FREEBUSY_BUSY;
}

/* /Busy = BUSY in Cfg or Dsc: the node is someone else's (a scheduler, an operator). */
static void enter_busy(kraken_engine *e, enode *n)
{
    step_interrupt(e, n, "node busy"); /* only an in-flight step is told; any timer stops */
    timer_cancel(n);
    kraken_plan_free(n->plan);
    n->plan = NULL;
    n->step = 0;
    n->phase = PH_BUSY;
}

/* A stuck node whose Dsc came to match its Cfg (someone fixed it) is converged. */
static void stuck_check(kraken_engine *e, enode *n, const kraken_node *cfg, const kraken_node *dsc)
{
    kraken_plan *plan = NULL;
    if (kraken_mutation_set_plan(e->set, cfg, dsc, &plan) < 0) {
        kraken_error_clear();
        return;
    }
    if (kraken_plan_length(plan) == 0) {
        kraken_plan_free(n->plan);
        n->plan = plan;
        n->step = 0;
        n->phase = PH_IDLE;
        step_start(e, n, cfg); /* an empty plan: converged, failures and reason cleared */
        return;
    }
    kraken_plan_free(plan);
}

/* The node's run state after its changes were noted (and the knowledge rule applied). */
static void evaluate_phase(kraken_engine *e, enode *n, const kraken_node *cfg,
                           const kraken_node *dsc, const ebits *changed, bool cfg_changed,
                           bool replan_wanted)
{
    if (cfg_changed) {
        /* A Cfg change is the operator's word: start afresh, as kraken_engine_reset_node(). */
        n->failures = 0;
        n->backoff_until = 0;
        free(n->last_failed);
        n->last_failed = NULL;
        set_reason(n, NULL);
        if (n->phase == PH_STUCK || n->phase == PH_BACKOFF) {
            timer_cancel(n);
            n->phase = PH_IDLE;
        }
    }
    if (node_is_busy(cfg) || node_is_busy(dsc)) {
        if (n->phase != PH_BUSY)
            enter_busy(e, n);
        return;
    }
    switch ((node_phase)n->phase) {
    case PH_STUCK:
        if (bits_any(changed))
            stuck_check(e, n, cfg, dsc);
        return;
    case PH_BACKOFF:
        return;
    case PH_WAIT_SERVICE:
    case PH_IN_FLIGHT:
    case PH_PASSIVE:
        follow_step(e, n, cfg, dsc, changed, replan_wanted);
        return;
    case PH_IDLE:
    case PH_CONVERGED:
    case PH_NO_PATH:
    case PH_BUSY:
        if (n->phase == PH_NO_PATH) {
            timer_cancel(n);
            set_reason(n, NULL); /* set again if there is still no path */
        }
        n->phase = PH_IDLE;
        replan(e, n, cfg, dsc);
        return;
    }
}

static void evaluate(kraken_engine *e, enode *n)
{
    const kraken_node *cfg = kraken__store_peek(e->store, KRAKEN_CFG, &n->id);
    if (n->deleted || !cfg) {
        node_forget(e, n);
        return;
    }
    if (n->recreated) {
        /* A new node with an old id: nothing of the old one's run state applies. */
        n->recreated = false;
        step_interrupt(e, n, "node deleted");
        n->failures = 0;
        n->backoff_until = 0;
        free(n->last_failed);
        n->last_failed = NULL;
        set_reason(n, NULL);
        bits_free(&n->stale);
        n->phase = PH_IDLE;
    }
    const kraken_node *dsc;
    if (!reload(e, n, &cfg, &dsc))
        return;
    /* The changes are ours now; the knowledge rule's own writes mark the node again. */
    ebits changed = n->changed;
    n->changed = (ebits){0, NULL};
    bool cfg_changed = n->cfg_changed, replan_wanted = n->replan || cfg_changed;
    /* A new set: the knowledge baseline is taken again, so the next change can be judged. */
    bool new_set = n->stale_gen != kraken__mutation_set_generation(e->set);
    if ((bits_any(&changed) || cfg_changed || new_set) &&
        apply_knowledge(e, n, cfg, dsc, &changed)) {
        /* Stored nodes may have been replaced by the writes: look again. */
        cfg = kraken__store_peek(e->store, KRAKEN_CFG, &n->id);
        dsc = kraken__store_peek(e->store, KRAKEN_DSC, &n->id);
    }
    bits_free(&n->changed);
    n->cfg_changed = false;
    n->replan = false;
    if (cfg && dsc)
        evaluate_phase(e, n, cfg, dsc, &changed, cfg_changed, replan_wanted);
    bits_free(&changed);
}

/* ---- service reconciliation ---------------------------------------------------------------- */

static void service_set_dsc_state(kraken_engine *e, kraken_service *svc, int state)
{
    kraken_value v = kraken_value_int(KRAKEN_T_ENUM, state);
    if (kraken_store_set_value(e->store, KRAKEN_DSC, &e->self, svc->state_url, &v) < 0)
        kraken_error_clear();
}

/* Start/stop a service to match its Cfg state; deliver config changes. From the pass only. */
static void service_reconcile(kraken_engine *e, kraken_service *svc)
{
    if (svc->start_requested) {
        svc->start_requested = false;
        if (svc->cfg_state == KRAKEN_SERVICE_RUN && svc->dsc_state != KRAKEN_SERVICE_RUN &&
            svc->dsc_state != KRAKEN_SERVICE_INIT) {
            if (svc->ops.start) {
                service_set_dsc_state(e, svc, KRAKEN_SERVICE_INIT);
                /* The callback may remove the service: the rest waits in the queue. */
                if (svc->stop_requested || svc->config_changed)
                    queue_service(e, svc);
                svc->ops.start(svc, svc->userdata);
                return;
            }
            service_set_dsc_state(e, svc, KRAKEN_SERVICE_RUN);
        }
    }
    if (svc->stop_requested) {
        svc->stop_requested = false;
        if (svc->cfg_state == KRAKEN_SERVICE_STOP &&
            (svc->dsc_state == KRAKEN_SERVICE_RUN || svc->dsc_state == KRAKEN_SERVICE_INIT)) {
            if (svc->ops.stop) {
                if (svc->config_changed)
                    queue_service(e, svc);
                svc->ops.stop(svc, svc->userdata);
                return;
            }
            service_set_dsc_state(e, svc, KRAKEN_SERVICE_STOP);
        }
    }
    if (svc->config_changed) {
        svc->config_changed = false;
        if (!svc->ops.config_changed)
            return;
        kraken_value config = KRAKEN_VALUE_INIT;
        if (kraken_store_get_value(e->store, KRAKEN_CFG, &e->self, svc->config_url, &config) < 0)
            kraken_error_clear();
        svc->ops.config_changed(svc, &config, svc->userdata);
        kraken_value_clear(&config);
    }
}

static void wake_waiters(kraken_engine *e)
{
    e->wake_waiters = false;
    for (size_t i = 0; i < e->cap; i++)
        if (e->slots[i] && e->slots[i]->phase == PH_WAIT_SERVICE)
            mark_dirty(e, e->slots[i]);
}

/* ---- the pass ------------------------------------------------------------------------------ */

static void engine_teardown(kraken_engine *e);

/* Leaving one of our loop callbacks: a free (or detach) made inside it takes effect. */
static void engine_unbusy(kraken_engine *e)
{
    if (--e->busy == 0 && e->dying) {
        engine_teardown(e);
        if (e->free_requested)
            free(e);
    }
}

static void pass_run(kraken_engine *e)
{
    e->pass_scheduled = false;

    uint64_t gen = kraken__mutation_set_generation(e->set);
    if (gen != e->generation) {
        e->generation = gen;
        mark_all(e);
    }
    while (e->svc_queue && !e->dying) {
        kraken_service *svc = e->svc_queue;
        e->svc_queue = svc->next_queued;
        svc->queued = false;
        service_reconcile(e, svc);
    }
    if (e->dying)
        return;
    if (e->wake_waiters)
        wake_waiters(e);

    /* Nodes marked while this pass runs wait for the next one (fairness, bounded pass). */
    enode *list = e->dirty_head;
    e->dirty_head = e->dirty_tail = NULL;
    while (list && !e->dying) {
        enode *n = list;
        list = n->next_dirty;
        n->dirty = false;
        n->next_dirty = NULL;
        evaluate(e, n);
    }
}

static void pass_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kraken_engine *e = arg;
    e->busy++;
    pass_run(e);
    engine_unbusy(e);
}

/* ---- timers ----------------------------------------------------------------------------------- */

/* The in-flight step ran out of time: record fail_to, interrupt, count a failure. */
static void step_timeout(kraken_engine *e, enode *n)
{
    if (n->dirty) {
        /*
         * The answer and the timeout expired in the same loop iteration: the
         * answer's discovery is waiting for the pass. Look again after it.
         */
        timer_arm(e, n, 0);
        return;
    }
    const char *sid = step_service(n), *mid = step_mutation(n);
    const kraken_mutation *m = kraken__mutation_find(e->set, sid, mid);
    char *why = str_printf("%s/%s timed out after %llu ms", sid, mid,
                           m ? (unsigned long long)step_timeout_ms(e, m) : 0ull);
    if (m && m->has_fail_to) {
        /* Through the discovery path: the store reports it, the bus tells who said so. */
        if (kraken_store_set_value(e->store, KRAKEN_DSC, &n->id, m->fail_to.u->text,
                                   &m->fail_to.value) == 0)
            publish_discovery(e, &n->id, m->service, m->fail_to.u->text, &m->fail_to.value);
        else
            kraken_error_clear();
    }
    step_interrupt(e, n, why);
    node_fail(e, n, why);
}

/* A node's timer (the engine counts as busy while it runs: see kraken_engine_free()). */
static void node_timer_cb(kraken_timer *t, void *arg)
{
    (void)t;
    enode *n = arg;
    kraken_engine *e = n->engine;
    if (n->deleted || e->frozen || e->dying)
        return;
    e->busy++;
    node_timer_phase(e, n);
    engine_unbusy(e);
}

/* What the node's timer means depends on the phase the node is in. */
static void node_timer_phase(kraken_engine *e, enode *n)
{
    switch ((node_phase)n->phase) {
    case PH_IN_FLIGHT:
        step_timeout(e, n);
        break;
    case PH_WAIT_SERVICE:
        node_fail(e, n, str_printf("service '%s' did not reach RUN within %u ms", step_service(n),
                                   e->opts.service_start_ms));
        break;
    case PH_BACKOFF:
        n->phase = PH_IDLE;
        n->replan = true;
        mark_dirty(e, n);
        break;
    case PH_NO_PATH:
        n->replan = true;
        mark_dirty(e, n);
        break;
    default:
        break;
    }
}

/* ---- freeze / thaw ---------------------------------------------------------------------------- */

void kraken_engine_freeze(kraken_engine *engine)
{
    if (engine_entry(engine, "engine_freeze") < 0 || engine->frozen)
        return;
    engine->frozen = true;
    for (size_t i = 0; i < engine->cap; i++)
        if (engine->slots[i])
            timer_cancel(engine->slots[i]);
}

/* Re-arm what freezing cancelled: in-flight steps get a fresh timeout. */
static void rearm_after_thaw(kraken_engine *e, enode *n)
{
    uint64_t now = now_ms(e);
    switch ((node_phase)n->phase) {
    case PH_IN_FLIGHT: {
        const kraken_mutation *m =
            kraken__mutation_find(e->set, step_service(n), step_mutation(n));
        if (m && m->timeout_ms)
            timer_arm(e, n, step_timeout_ms(e, m));
        break;
    }
    case PH_WAIT_SERVICE:
        timer_arm(e, n, e->opts.service_start_ms);
        break;
    case PH_BACKOFF:
        timer_arm(e, n, n->backoff_until > now ? n->backoff_until - now : 0);
        break;
    case PH_NO_PATH:
        if (e->opts.no_path_retry_ms)
            timer_arm(e, n, e->opts.no_path_retry_ms);
        break;
    default:
        break;
    }
}

void kraken_engine_thaw(kraken_engine *engine)
{
    if (engine_entry(engine, "engine_thaw") < 0 || !engine->frozen)
        return;
    engine->frozen = false;
    for (size_t i = 0; i < engine->cap; i++)
        if (engine->slots[i])
            rearm_after_thaw(engine, engine->slots[i]);
    mark_all(engine);
}

/* ---- logging ------------------------------------------------------------- */

int kraken_engine_set_log(kraken_engine *engine, int max_level, kraken_log_fn fn, void *userdata,
                          void (*destroy)(void *userdata))
{
    int rc = engine_entry(engine, "engine_set_log");
    if (rc < 0)
        return rc;
    if (max_level < KRAKEN_LOG_PANIC || max_level > KRAKEN_LOG_DDDEBUG)
        return kraken__err(KRAKEN_EINVAL, "kraken_engine_set_log: level %d is outside 0..9",
                           max_level);
    if (engine->log_destroy)
        engine->log_destroy(engine->log_userdata);
    engine->log_fn = fn;
    engine->log_userdata = userdata;
    engine->log_destroy = fn ? destroy : NULL;
    engine->log_max_level = max_level;
    return 0;
}

bool kraken__engine_log_enabled(const kraken_engine *engine, int level)
{
    return engine && engine->log_fn && level <= engine->log_max_level;
}

void kraken__engine_log(kraken_engine *engine, int level, const char *subsystem, const char *fmt,
                        ...)
{
    if (!kraken__engine_log_enabled(engine, level))
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* one line, always: a control character from input text must not break it */
    for (char *c = line; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = ' ';
    engine->log_fn(level, subsystem, line, engine->log_userdata);
}

bool kraken_engine_frozen(const kraken_engine *engine)
{
    return engine_entry(engine, "engine_frozen") == 0 && engine->frozen;
}

/* ---- services: life cycle --------------------------------------------------------------------- */

static void service_free(kraken_service *svc)
{
    if (!svc)
        return;
    svc->engine = NULL;
    svc->detaching = true; /* a hook removing its own service only disowns it */
    if (svc->destroy)
        svc->destroy(svc->userdata);
    for (size_t i = 0; i < svc->n_discoverable; i++)
        free(svc->discoverable[i]);
    free(svc->discoverable);
    for (size_t i = 0; i < svc->n_named; i++) {
        free(svc->named[i].url);
        free(svc->named[i].name);
        kraken_value_clear(&svc->named[i].value);
    }
    free(svc->named);
    free(svc->id);
    free(svc->module);
    free(svc->state_url);
    free(svc->error_url);
    free(svc->config_url);
    free(svc);
}

/*
 * The engine goes away under a service: its destroy hook runs now; the handle
 * stays (detached, calls fail with KRAKEN_ESTATE) while the caller holds it.
 */
static void service_detach(kraken_service *svc)
{
    svc->engine = NULL;
    svc->detaching = true;
    void (*destroy)(void *userdata) = svc->destroy;
    svc->destroy = NULL;
    if (destroy)
        destroy(svc->userdata); /* may call kraken_service_remove(svc): it only disowns it */
    svc->detaching = false;
    if (!svc->caller_owned)
        service_free(svc);
}

static int check_service_id(const char *id)
{
    if (!id || !*id)
        return kraken__err(KRAKEN_EINVAL, "engine_add_service: service id must not be empty");
    for (const char *p = id; *p; p++)
        if (*p == '/' || *p == ':' || *p == '*' || *p == '?')
            return kraken__err(KRAKEN_EINVAL,
                               "engine_add_service: service id '%s' must not contain '%c'", id,
                               *p);
    return 0;
}

static int ensure_self(kraken_engine *e)
{
    if (kraken_store_contains(e->store, &e->self))
        return 0;
    kraken_node *self;
    int rc = kraken_node_new(&self, &e->self);
    if (rc < 0)
        return rc;
    rc = kraken_store_create(e->store, self);
    kraken_node_free(self);
    return rc;
}

/* Put the service instance into the self node: Cfg and Dsc module, Dsc state STOP. */
static int service_publish(kraken_engine *e, kraken_service *svc)
{
    char *module_url = str_printf("/Services/%s/Module", svc->id);
    if (!module_url)
        return kraken__err(KRAKEN_ENOMEM, "engine_add_service: out of memory");
    kraken_value module = kraken_value_string(svc->module);
    kraken_value stop = kraken_value_int(KRAKEN_T_ENUM, KRAKEN_SERVICE_STOP);
    int rc = kraken_store_set_value(e->store, KRAKEN_CFG, &e->self, module_url, &module);
    if (rc == 0)
        rc = kraken_store_set_value(e->store, KRAKEN_DSC, &e->self, module_url, &module);
    if (rc == 0)
        rc = kraken_store_set_value(e->store, KRAKEN_DSC, &e->self, svc->state_url, &stop);
    kraken_value_clear(&module);
    free(module_url);
    return rc;
}

static int services_append(kraken_engine *e, kraken_service *svc)
{
    if (e->n_services == e->cap_services) {
        size_t cap = e->cap_services ? e->cap_services * 2 : 8;
        kraken_service **v = realloc(e->services, cap * sizeof *v);
        if (!v)
            return kraken__err(KRAKEN_ENOMEM, "engine_add_service: out of memory");
        e->services = v;
        e->cap_services = cap;
    }
    e->services[e->n_services++] = svc;
    return 0;
}

static bool services_remove(kraken_engine *e, kraken_service *svc)
{
    for (size_t i = 0; i < e->n_services; i++) {
        if (e->services[i] == svc) {
            memmove(&e->services[i], &e->services[i + 1],
                    (e->n_services - i - 1) * sizeof *e->services);
            e->n_services--;
            return true;
        }
    }
    return false;
}

int kraken_engine_add_service(kraken_engine *engine, const char *service_id, const char *module,
                              const kraken_service_ops *ops, void *userdata,
                              void (*destroy)(void *userdata), kraken_service **out)
{
    if (out)
        *out = NULL;
    int rc = engine_entry(engine, "engine_add_service");
    if (rc < 0)
        return rc;
    if (!module || !*module)
        return kraken__err(KRAKEN_EINVAL, "engine_add_service: engine and module are required");
    rc = check_service_id(service_id);
    if (rc < 0)
        return rc;
    if (service_lookup(engine, service_id))
        return kraken__err(KRAKEN_EEXISTS, "engine_add_service: service '%s' already exists",
                           service_id);
    if ((rc = ensure_self(engine)) < 0)
        return kraken__err_prefix(rc, "engine_add_service '%s'", service_id);
    kraken_service *svc = calloc(1, sizeof *svc);
    if (!svc)
        return kraken__err(KRAKEN_ENOMEM, "engine_add_service: out of memory");
    svc->engine = engine;
    svc->id = strdup(service_id);
    svc->module = strdup(module);
    svc->state_url = str_printf("/Services/%s/State", service_id);
    svc->error_url = str_printf("/Services/%s/ErrorMsg", service_id);
    svc->config_url = str_printf("/Services/%s/Config", service_id);
    if (ops)
        svc->ops = *ops;
    svc->userdata = userdata;
    if (!svc->id || !svc->module || !svc->state_url || !svc->error_url || !svc->config_url) {
        service_free(svc);
        return kraken__err(KRAKEN_ENOMEM, "engine_add_service: out of memory");
    }
    if ((rc = services_append(engine, svc)) < 0 || (rc = service_publish(engine, svc)) < 0) {
        services_remove(engine, svc);
        service_free(svc); /* destroy is not set yet: a failed call never calls it */
        return kraken__err_prefix(rc, "engine_add_service '%s'", service_id);
    }
    svc->destroy = destroy;
    svc->dsc_state = KRAKEN_SERVICE_STOP;
    kraken_value state = KRAKEN_VALUE_INIT;
    if (kraken_store_get_value(engine->store, KRAKEN_CFG, &engine->self, svc->state_url,
                               &state) == 0 &&
        state.type == KRAKEN_T_ENUM)
        svc->cfg_state = (int)state.v.i;
    kraken_value_clear(&state);
    kraken_error_clear();
    if (svc->cfg_state == KRAKEN_SERVICE_RUN) {
        svc->start_requested = true;
        queue_service(engine, svc);
    }
    svc->caller_owned = out != NULL;
    if (out)
        *out = svc;
    return 0;
}

/* Drop the service instance from the self node (both sets). */
static void service_unpublish(kraken_engine *e, const kraken_service *svc)
{
    char *url = str_printf("/Services/%s", svc->id);
    for (int kind = KRAKEN_CFG; url && kind <= KRAKEN_DSC; kind++) {
        kraken_node *copy = NULL;
        if (kraken_store_read(e->store, (kraken_state_kind)kind, &e->self, &copy) == 0 &&
            kraken_node_unset(copy, url) == 0)
            kraken_store_update(e->store, (kraken_state_kind)kind, copy);
        kraken_node_free(copy);
    }
    free(url);
    kraken_error_clear();
}

void kraken_service_remove(kraken_service *service)
{
    if (!service)
        return;
    kraken_engine *engine = service->engine;
    if (!engine) {
        /* Detached by the engine's free: its destroy hook ran (or is running). */
        if (service->detaching)
            service->caller_owned = false; /* the detach frees it when the hook returns */
        else
            service_free(service);
        return;
    }
    if (kraken__owner_check(&engine->owner, "service_remove", "engine") < 0 ||
        !services_remove(engine, service))
        return;
    /* Its steps stop here; the service itself is going away, so it gets no callback. */
    for (size_t i = 0; i < engine->cap; i++) {
        enode *n = engine->slots[i];
        if (!n || (n->phase != PH_IN_FLIGHT && n->phase != PH_WAIT_SERVICE) ||
            strcmp(step_service(n), service->id) != 0)
            continue;
        if (n->phase == PH_IN_FLIGHT)
            publish_mutation(engine, KRAKEN_MUTATION_INTERRUPT, &n->id, service->id,
                             step_mutation(n), "service removed");
        timer_cancel(n);
        n->phase = PH_IDLE;
        n->replan = true;
        mark_dirty(engine, n);
    }
    for (kraken_service **p = &engine->svc_queue; *p; p = &(*p)->next_queued) {
        if (*p == service) {
            *p = service->next_queued;
            break;
        }
    }
    kraken_mutation_set_remove_service(engine->set, service->id);
    service_unpublish(engine, service);
    schedule_pass(engine);
    service_free(service);
}

int kraken_service_interrupt_steps(kraken_service *service, const char *reason)
{
    int entry = service_entry(service, "service_interrupt_steps");
    if (entry < 0)
        return entry;
    kraken_engine *e = service->engine;
    int count = 0;
    for (size_t i = 0; i < e->cap && !e->dying; i++) {
        enode *n = e->slots[i];
        if (!n || n->phase != PH_IN_FLIGHT || strcmp(step_service(n), service->id) != 0)
            continue;
        step_interrupt(e, n, reason ? reason : "service interrupted");
        n->replan = true;
        mark_dirty(e, n);
        count++;
    }
    schedule_pass(e);
    return count;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int kraken__engine_discoverable_urls(kraken_engine *engine, char ***urls, size_t *n)
{
    size_t total = 0;
    for (size_t i = 0; i < engine->n_services; i++)
        total += engine->services[i]->n_discoverable;
    char **v = calloc(total ? total : 1, sizeof *v);
    if (!v)
        return kraken__err(KRAKEN_ENOMEM, "engine: out of memory");
    size_t count = 0;
    for (size_t i = 0; i < engine->n_services; i++) {
        const kraken_service *svc = engine->services[i];
        for (size_t j = 0; j < svc->n_discoverable; j++) {
            if (!(v[count] = strdup(svc->discoverable[j]))) {
                for (size_t k = 0; k < count; k++)
                    free(v[k]);
                free(v);
                return kraken__err(KRAKEN_ENOMEM, "engine: out of memory");
            }
            count++;
        }
    }
    qsort(v, count, sizeof *v, compare_strings);
    size_t unique = 0;
    for (size_t i = 0; i < count; i++) {
        if (unique > 0 && strcmp(v[unique - 1], v[i]) == 0)
            free(v[i]);
        else
            v[unique++] = v[i];
    }
    *urls = v;
    *n = unique;
    return KRAKEN_OK;
}

const char *kraken_service_id(const kraken_service *service)
{
    return service ? service->id : NULL;
}

kraken_engine *kraken_service_engine(kraken_service *service)
{
    return service && service->engine && !service->engine->dying ? service->engine : NULL;
}

static int add_discoverable(kraken_service *svc, const char *url);

int kraken_service_declare_mutation(kraken_service *service, const kraken_mutation_decl *decl)
{
    int rc = service_entry(service, "service_declare_mutation");
    if (rc < 0)
        return rc;
    if (!decl)
        return kraken__err(KRAKEN_EINVAL, "service_declare_mutation: service and decl are required");
    rc = kraken_mutation_set_add(service->engine->set, service->id, decl);
    if (rc < 0)
        return rc;
    /*
     * The service answers its steps by discovering what they mutate: those URLs
     * are its to discover (a module that forgot to say so would hang until the
     * timeout). The set holds them in canonical form.
     */
    const kraken_mutation *m = kraken__mutation_find(service->engine->set, service->id, decl->id);
    for (size_t i = 0; rc == 0 && m && i < m->n_mutates; i++)
        rc = add_discoverable(service, m->mutates[i].u->text);
    if (rc < 0) {
        /* Out of memory: the URLs stay declarable by hand; the mutation stands. */
        kraken_error_clear();
    }
    schedule_pass(service->engine); /* the pass sees the new generation and replans */
    return 0;
}

int kraken_engine_mutation_disable(kraken_engine *e, const char *service_id,
                                   const char *mutation_id, bool disabled)
{
    int rc = engine_entry(e, "engine_mutation_disable");
    if (rc < 0)
        return rc;
    rc = kraken_mutation_set_disable(e->set, service_id, mutation_id, disabled);
    if (rc < 0)
        return kraken__err_prefix(rc, "engine_mutation_disable");
    schedule_pass(e); /* a new generation: every node is planned again */
    return 0;
}

int kraken_engine_mutation_set_timeout(kraken_engine *e, const char *service_id,
                                       const char *mutation_id, uint32_t timeout_ms)
{
    int rc = engine_entry(e, "engine_mutation_set_timeout");
    if (rc < 0)
        return rc;
    rc = kraken_mutation_set_timeout(e->set, service_id, mutation_id, timeout_ms);
    return rc < 0 ? kraken__err_prefix(rc, "engine_mutation_set_timeout") : 0;
}

int kraken_engine_diff(kraken_engine *engine, const kraken_uuid *node_id, kraken_change **out,
                       size_t *n)
{
    if (out)
        *out = NULL;
    if (n)
        *n = 0;
    if (!node_id || !out || !n)
        return kraken__err(KRAKEN_EINVAL, "engine_diff: node id, out and n are required");
    int rc = engine_entry(engine, "engine_diff");
    if (rc < 0)
        return rc;
    const kraken_node *cfg = kraken__store_peek(engine->store, KRAKEN_CFG, node_id);
    const kraken_node *dsc = kraken__store_peek(engine->store, KRAKEN_DSC, node_id);
    char buf[KRAKEN_UUID_STRLEN + 1];
    if (!cfg || !dsc)
        return kraken__err(KRAKEN_ENOTFOUND, "engine_diff: node %s not found",
                           uuid_str(node_id, buf));
    return kraken_mutation_set_diff(engine->set, cfg, dsc, out, n);
}

/* ---- discoveries ---------------------------------------------------------------------------- */

static bool is_pattern(const char *url)
{
    return strpbrk(url, "*?") != NULL;
}

static bool service_may_discover(const kraken_service *svc, const kraken_uuid *node_id,
                                 const char *canonical)
{
    /* Its own state lives on the self node (where the instance runs), not on other nodes. */
    if (strcmp(canonical, svc->state_url) == 0 &&
        memcmp(node_id->bytes, svc->engine->self.bytes, 16) == 0)
        return true;
    for (size_t i = 0; i < svc->n_discoverable; i++) {
        const char *d = svc->discoverable[i];
        if (is_pattern(d) ? kraken_url_match(d, canonical) : strcmp(d, canonical) == 0)
            return true;
    }
    return false;
}

static int add_discoverable(kraken_service *svc, const char *url)
{
    for (size_t i = 0; i < svc->n_discoverable; i++)
        if (strcmp(svc->discoverable[i], url) == 0)
            return 0;
    char **v = realloc(svc->discoverable, (svc->n_discoverable + 1) * sizeof *v);
    if (!v)
        return kraken__err(KRAKEN_ENOMEM, "service_declare_discoverable: out of memory");
    svc->discoverable = v;
    if (!(v[svc->n_discoverable] = strdup(url)))
        return kraken__err(KRAKEN_ENOMEM, "service_declare_discoverable: out of memory");
    svc->n_discoverable++;
    return 0;
}

static named_value *find_named(const kraken_service *svc, const char *url, const char *name)
{
    for (size_t i = 0; i < svc->n_named; i++)
        if (strcmp(svc->named[i].url, url) == 0 && strcmp(svc->named[i].name, name) == 0)
            return &svc->named[i];
    return NULL;
}

static int add_named(kraken_service *svc, const char *url, const char *name, kraken_value *value)
{
    named_value *nv = find_named(svc, url, name);
    if (nv) { /* a re-declaration replaces the value */
        kraken_value_clear(&nv->value);
        nv->value = *value;
        return 0;
    }
    named_value *v = realloc(svc->named, (svc->n_named + 1) * sizeof *v);
    if (!v)
        return kraken__err(KRAKEN_ENOMEM, "service_declare_discoverable: out of memory");
    svc->named = v;
    nv = &v[svc->n_named];
    nv->url = strdup(url);
    nv->name = strdup(name);
    if (!nv->url || !nv->name) {
        free(nv->url);
        free(nv->name);
        return kraken__err(KRAKEN_ENOMEM, "service_declare_discoverable: out of memory");
    }
    nv->value = *value;
    svc->n_named++;
    return 0;
}

int kraken_service_declare_discoverable(kraken_service *service, const char *url,
                                        const char *value_name, const char *value_text)
{
    if (!service || !url || !*url)
        return kraken__err(KRAKEN_EINVAL, "service_declare_discoverable: service and url are "
                                          "required");
    int entry = service_entry(service, "service_declare_discoverable");
    if (entry < 0)
        return entry;
    if (!value_name != !value_text)
        return kraken__err(KRAKEN_EINVAL, "service_declare_discoverable '%s': value_name and "
                                          "value_text go together", url);
    if (is_pattern(url)) {
        if (value_name)
            return kraken__err(KRAKEN_EINVAL, "service_declare_discoverable '%s': a named value "
                                              "needs a URL, not a pattern", url);
        return add_discoverable(service, url);
    }
    char *canonical = NULL;
    int rc = kraken_url_canonical(url, &canonical);
    if (rc < 0)
        return kraken__err_prefix(rc, "service '%s': discoverable", service->id);
    kraken_value value = KRAKEN_VALUE_INIT;
    if (value_name && (rc = kraken_url_parse_value(canonical, value_text, &value)) < 0) {
        rc = kraken__err_prefix(rc, "service '%s': value '%s'", service->id, value_name);
        free(canonical);
        return rc;
    }
    /* Check both before changing anything: the named value is only added with its URL. */
    rc = add_discoverable(service, canonical);
    if (rc == 0 && value_name)
        rc = add_named(service, canonical, value_name, &value);
    else
        kraken_value_clear(&value);
    if (rc < 0)
        kraken_value_clear(&value);
    free(canonical);
    return rc;
}

/* Write a discovery into Dsc (value or text) and publish it. */
static int discover(kraken_service *svc, const kraken_uuid *node_id, const char *url,
                    const kraken_value *value, const char *text)
{
    kraken_engine *e = svc->engine;
    char *canonical = NULL;
    int rc = kraken_url_canonical(url, &canonical);
    if (rc < 0)
        return kraken__err_prefix(rc, "discovery by service '%s'", svc->id);
    if (!service_may_discover(svc, node_id, canonical)) {
        rc = kraken__err(KRAKEN_EINVAL,
                         "discovery by service '%s': '%s' was not declared discoverable",
                         svc->id, canonical);
        free(canonical);
        return rc;
    }
    rc = value ? kraken_store_set_value(e->store, KRAKEN_DSC, node_id, canonical, value)
               : kraken_store_set_text(e->store, KRAKEN_DSC, node_id, canonical, text);
    if (rc < 0) {
        rc = kraken__err_prefix(rc, "discovery by service '%s'", svc->id);
        free(canonical);
        return rc;
    }
    if (value && !(value->type == KRAKEN_T_ENUM && !value->enum_type)) {
        publish_discovery(e, node_id, svc->id, canonical, value);
    } else {
        /* Publish the stored form (typed enum, parsed text). */
        kraken_value stored = KRAKEN_VALUE_INIT;
        if (kraken_store_get_value(e->store, KRAKEN_DSC, node_id, canonical, &stored) == 0)
            publish_discovery(e, node_id, svc->id, canonical, &stored);
        kraken_value_clear(&stored);
        kraken_error_clear();
    }
    free(canonical);
    return 0;
}

static int check_discover_args(const kraken_service *svc, const kraken_uuid *node_id,
                               const char *url, const void *what, const char *op)
{
    if (!svc || !node_id || !url || !what)
        return kraken__err(KRAKEN_EINVAL, "%s: service, node id, url and value are required", op);
    return service_entry(svc, op);
}

int kraken_service_discover(kraken_service *service, const kraken_uuid *node_id, const char *url,
                            const kraken_value *value)
{
    int rc = check_discover_args(service, node_id, url, value, "service_discover");
    return rc < 0 ? rc : discover(service, node_id, url, value, NULL);
}

int kraken_service_discover_text(kraken_service *service, const kraken_uuid *node_id,
                                 const char *url, const char *text)
{
    int rc = check_discover_args(service, node_id, url, text, "service_discover_text");
    return rc < 0 ? rc : discover(service, node_id, url, NULL, text);
}

int kraken_service_discover_named(kraken_service *service, const kraken_uuid *node_id,
                                  const char *url, const char *value_name)
{
    int rc = check_discover_args(service, node_id, url, value_name, "service_discover_named");
    if (rc < 0)
        return rc;
    char *canonical = NULL;
    if ((rc = kraken_url_canonical(url, &canonical)) < 0)
        return kraken__err_prefix(rc, "discovery by service '%s'", service->id);
    const named_value *nv = find_named(service, canonical, value_name);
    if (!nv)
        rc = kraken__err(KRAKEN_ENOTFOUND, "discovery by service '%s': no value named '%s' for '%s'",
                         service->id, value_name, canonical);
    else
        rc = discover(service, node_id, canonical, &nv->value, NULL);
    free(canonical);
    return rc;
}

int kraken_service_set_state(kraken_service *service, kraken_service_state state,
                             const char *error_msg)
{
    int entry = service_entry(service, "service_set_state");
    if (entry < 0)
        return entry;
    if ((int)state < KRAKEN_SERVICE_UNKNOWN || (int)state > KRAKEN_SERVICE_ERROR)
        return kraken__err(KRAKEN_EINVAL, "service_set_state '%s': bad state %d", service->id,
                           (int)state);
    kraken_engine *e = service->engine;
    /* The message first, so that the SERVICE event of the state finds it in place. */
    kraken_value msg = kraken_value_string(state == KRAKEN_SERVICE_ERROR && error_msg ? error_msg
                                                                                     : "");
    int rc = kraken_store_set_value(e->store, KRAKEN_DSC, &e->self, service->error_url, &msg);
    kraken_value_clear(&msg);
    if (rc == 0) {
        kraken_value v = kraken_value_int(KRAKEN_T_ENUM, state);
        rc = kraken_store_set_value(e->store, KRAKEN_DSC, &e->self, service->state_url, &v);
    }
    return rc < 0 ? kraken__err_prefix(rc, "service_set_state '%s'", service->id) : 0;
}

/*
 * The node whose step in flight for @p svc is request @p request_id (@p op
 * names the call in errors): a late answer is refused here.
 */
static int request_node(kraken_service *svc, const char *op, const kraken_uuid *node_id,
                        uint64_t request_id, enode **out)
{
    int entry = service_entry(svc, op);
    if (entry < 0)
        return entry;
    enode *n = node_find(svc->engine, node_id);
    char buf[KRAKEN_UUID_STRLEN + 1];
    if (!n || n->deleted)
        return kraken__err(KRAKEN_ENOTFOUND, "%s: node %s not found", op, uuid_str(node_id, buf));
    *out = n;
    if (n->phase == PH_IN_FLIGHT && n->request_id == request_id &&
        strcmp(step_service(n), svc->id) == 0)
        return 0;
    if (n->phase == PH_IN_FLIGHT && strcmp(step_service(n), svc->id) == 0)
        return kraken__err(KRAKEN_ESTATE, "%s: request %llu of service '%s' on node %s is not in "
                    "flight (a late answer? request %llu %s/%s is)", op,
                    (unsigned long long)request_id, svc->id, uuid_str(node_id, buf),
                    (unsigned long long)n->request_id, svc->id, step_mutation(n));
    return kraken__err(KRAKEN_ESTATE, "%s: request %llu of service '%s' on node %s is not in "
                       "flight (a late answer?)", op, (unsigned long long)request_id, svc->id,
                       uuid_str(node_id, buf));
}

int kraken_service_fail(kraken_service *service, const kraken_uuid *node_id, uint64_t request_id,
                        const char *reason)
{
    if (!service || !node_id)
        return kraken__err(KRAKEN_EINVAL, "service_fail: service and node id are required");
    kraken_engine *e = service->engine;
    enode *n;
    int rc = request_node(service, "service_fail", node_id, request_id, &n);
    if (rc < 0)
        return rc;
    const char *mutation_id = step_mutation(n);
    publish_mutation(e, KRAKEN_MUTATION_FAILED, node_id, service->id, mutation_id,
                     reason ? reason : "failed");
    node_fail(e, n, str_printf("%s/%s failed: %s", service->id, mutation_id,
                               reason ? reason : "no reason given"));
    return 0;
}

int kraken_service_report(kraken_service *service, const kraken_uuid *node_id,
                          uint64_t request_id, const char *url, const kraken_value *value)
{
    int rc = check_discover_args(service, node_id, url, value, "service_report");
    if (rc < 0)
        return rc;
    enode *n;
    if ((rc = request_node(service, "service_report", node_id, request_id, &n)) < 0)
        return rc;
    return discover(service, node_id, url, value, NULL);
}

int kraken_service_report_text(kraken_service *service, const kraken_uuid *node_id,
                               uint64_t request_id, const char *url, const char *text)
{
    int rc = check_discover_args(service, node_id, url, text, "service_report_text");
    if (rc < 0)
        return rc;
    enode *n;
    if ((rc = request_node(service, "service_report_text", node_id, request_id, &n)) < 0)
        return rc;
    return discover(service, node_id, url, NULL, text);
}

void kraken_service_log(kraken_service *service, int level, const char *fmt, ...)
{
    if (!service || !fmt || !kraken__engine_log_enabled(service->engine, level))
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    kraken__engine_log(service->engine, level, service->id, "%s", line);
}

/* ---- node control ------------------------------------------------------------------------------ */

static const char *const plan_state_names[] = {
    "CONVERGED", "RUNNING", "PASSIVE", "BACKOFF", "STUCK", "NO_PATH", "FROZEN", "BUSY",
};

const char *kraken_plan_state_name(kraken_plan_state state)
{
    if ((unsigned)state >= sizeof plan_state_names / sizeof plan_state_names[0])
        return NULL;
    return plan_state_names[state];
}

static kraken_plan_state public_state(const kraken_engine *e, const enode *n)
{
    switch ((node_phase)n->phase) {
    case PH_CONVERGED:
        if (n->dirty && !e->frozen)
            return KRAKEN_PLAN_RUNNING; /* a change waits for the next pass */
        return KRAKEN_PLAN_CONVERGED;
    case PH_STUCK:
        return KRAKEN_PLAN_STUCK;
    case PH_NO_PATH:
        return KRAKEN_PLAN_NO_PATH;
    case PH_BUSY:
        return KRAKEN_PLAN_BUSY;
    default:
        break;
    }
    if (e->frozen)
        return KRAKEN_PLAN_FROZEN;
    switch ((node_phase)n->phase) {
    case PH_PASSIVE:
        return KRAKEN_PLAN_PASSIVE;
    case PH_BACKOFF:
        return KRAKEN_PLAN_BACKOFF;
    default:
        return KRAKEN_PLAN_RUNNING;
    }
}

void kraken_plan_status_clear(kraken_plan_status *status)
{
    if (!status)
        return;
    for (size_t i = 0; i < status->n_steps; i++)
        free(status->steps[i]);
    free(status->steps);
    free(status->reason);
    memset(status, 0, sizeof *status);
}

int kraken_engine_node_status(kraken_engine *engine, const kraken_uuid *node_id,
                              kraken_plan_status *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    int rc = engine_entry(engine, "engine_node_status");
    if (rc < 0)
        return rc;
    if (!node_id || !out)
        return kraken__err(KRAKEN_EINVAL, "engine_node_status: engine, node id and out are "
                                          "required");
    const enode *n = node_find(engine, node_id);
    char buf[KRAKEN_UUID_STRLEN + 1];
    if (!n || n->deleted)
        return kraken__err(KRAKEN_ENOTFOUND, "engine_node_status: node %s not found",
                           uuid_str(node_id, buf));
    kraken_plan_status st = {.state = public_state(engine, n), .failures = n->failures};
    size_t len = kraken_plan_length(n->plan);
    if (len && !(st.steps = calloc(len, sizeof *st.steps)))
        return kraken__err(KRAKEN_ENOMEM, "engine_node_status: out of memory");
    for (; st.n_steps < len; st.n_steps++) {
        st.steps[st.n_steps] = str_printf("%s/%s", kraken_plan_step_service(n->plan, st.n_steps),
                                          kraken_plan_step_mutation(n->plan, st.n_steps));
        if (!st.steps[st.n_steps]) {
            kraken_plan_status_clear(&st);
            return kraken__err(KRAKEN_ENOMEM, "engine_node_status: out of memory");
        }
    }
    st.current = n->step < len ? n->step : len;
    if (n->reason && !(st.reason = strdup(n->reason))) {
        kraken_plan_status_clear(&st);
        return kraken__err(KRAKEN_ENOMEM, "engine_node_status: out of memory");
    }
    *out = st;
    return 0;
}

int kraken_engine_reset_node(kraken_engine *engine, const kraken_uuid *node_id)
{
    int rc = engine_entry(engine, "engine_reset_node");
    if (rc < 0)
        return rc;
    if (!node_id)
        return kraken__err(KRAKEN_EINVAL, "engine_reset_node: engine and node id are required");
    enode *n = node_find(engine, node_id);
    char buf[KRAKEN_UUID_STRLEN + 1];
    if (!n || n->deleted)
        return kraken__err(KRAKEN_ENOTFOUND, "engine_reset_node: node %s not found",
                           uuid_str(node_id, buf));
    n->failures = 0;
    n->backoff_until = 0;
    free(n->last_failed);
    n->last_failed = NULL;
    set_reason(n, NULL);
    if (n->phase == PH_STUCK || n->phase == PH_BACKOFF) {
        timer_cancel(n);
        n->phase = PH_IDLE;
    }
    n->replan = true;
    mark_dirty(engine, n);
    return 0;
}

int kraken_engine_graph_json(kraken_engine *engine, const kraken_uuid *node_id, char **out)
{
    if (out)
        *out = NULL;
    int rc = engine_entry(engine, "engine_graph_json");
    if (rc < 0)
        return rc;
    if (!out)
        return kraken__err(KRAKEN_EINVAL, "engine_graph_json: engine and out are required");
    if (!node_id)
        return kraken_mutation_set_graph_json(engine->set, NULL, NULL, 0, out);
    const enode *n = node_find(engine, node_id);
    const kraken_node *cfg = kraken__store_peek(engine->store, KRAKEN_CFG, node_id);
    char buf[KRAKEN_UUID_STRLEN + 1];
    if (!n || n->deleted || !cfg)
        return kraken__err(KRAKEN_ENOTFOUND, "engine_graph_json: node %s not found",
                           uuid_str(node_id, buf));
    return kraken_mutation_set_graph_json(engine->set, cfg, n->plan, n->step, out);
}

/* ---- accessors ---------------------------------------------------------------------------------- */

kraken_store *kraken_engine_store(kraken_engine *engine)
{
    return engine_entry(engine, "engine_store") == 0 ? engine->store : NULL;
}

kraken_bus *kraken_engine_bus(kraken_engine *engine)
{
    return engine_entry(engine, "engine_bus") == 0 ? engine->bus : NULL;
}

kraken_mutation_set *kraken_engine_mutations(kraken_engine *engine)
{
    return engine_entry(engine, "engine_mutations") == 0 ? engine->set : NULL;
}

const kraken_uuid *kraken_engine_self_id(const kraken_engine *engine)
{
    return engine ? &engine->self : NULL;
}

/* ---- the built-in sync service -------------------------------------------------------------------- */

/*
 * "sync" owns INITtoSYNC. Its step is completed by the sync protocol: the
 * parent-side discovery of RunState SYNC when the child phones home (SPEC 6.3).
 */
static void sync_start(kraken_service *service, void *userdata)
{
    (void)userdata;
    kraken_service_set_state(service, KRAKEN_SERVICE_RUN, NULL);
}

static void sync_stop(kraken_service *service, void *userdata)
{
    (void)userdata;
    kraken_service_set_state(service, KRAKEN_SERVICE_STOP, NULL);
}

static int add_sync_service(kraken_engine *e)
{
    static const kraken_service_ops ops = {.start = sync_start, .stop = sync_stop};
    static const kraken_mutate mutates[] = {{"/RunState", "INIT", "SYNC"}};
    static const kraken_fact requires[] = {{"/PhysState", "POWER_ON"}};
    static const kraken_mutation_decl decl = {
        .id = "INITtoSYNC",
        .mutates = mutates,
        .n_mutates = 1,
        .requires = requires,
        .n_requires = 1,
        .context = KRAKEN_CONTEXT_CHILD,
        .timeout_ms = 90000,
        .fail_to = {"/PhysState", "PHYS_HANG"},
        .cost = 1,
    };
    kraken_service *svc;
    int rc = kraken_engine_add_service(e, "sync", "sync", &ops, NULL, NULL, &svc);
    if (rc == 0)
        svc->caller_owned = false; /* the engine's own: it goes with the engine */
    if (rc == 0)
        rc = kraken_service_declare_discoverable(svc, "/RunState", NULL, NULL);
    if (rc == 0)
        rc = kraken_service_declare_mutation(svc, &decl);
    return rc;
}

/* ---- engine life cycle ------------------------------------------------------------------------------ */

/* Known facts about the instance itself: it runs, so it is powered on; a root is in sync. */
static int self_facts(kraken_engine *e)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    int rc = kraken_store_get_value(e->store, KRAKEN_DSC, &e->self, "/PhysState", &v);
    if (rc == 0 && kraken_value_is_zero(&v)) {
        kraken_value on = kraken_value_int(KRAKEN_T_ENUM, KRAKEN_PHYS_POWER_ON);
        rc = kraken_store_set_value(e->store, KRAKEN_DSC, &e->self, "/PhysState", &on);
    }
    kraken_value_clear(&v);
    if (rc == 0 && !e->opts.start_frozen)
        rc = kraken_store_get_value(e->store, KRAKEN_DSC, &e->self, "/RunState", &v);
    if (rc == 0 && !e->opts.start_frozen && kraken_value_is_zero(&v)) {
        kraken_value sync = kraken_value_int(KRAKEN_T_ENUM, KRAKEN_RUN_SYNC);
        rc = kraken_store_set_value(e->store, KRAKEN_DSC, &e->self, "/RunState", &sync);
    }
    kraken_value_clear(&v);
    return rc;
}

/* Run states for the nodes a borrowed store already holds. */
static int adopt_existing_nodes(kraken_engine *e)
{
    kraken_node **nodes = NULL;
    size_t n = 0;
    int rc = kraken_store_read_all(e->store, KRAKEN_CFG, &nodes, &n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        enode *en = node_add(e, kraken_node_id(nodes[i]));
        if (!en) {
            rc = kraken__err(KRAKEN_ENOMEM, "engine_new: out of memory");
            break;
        }
        en->cfg_changed = true;
        mark_dirty(e, en);
    }
    kraken_nodes_free(nodes, n);
    return rc;
}

/*
 * Bytes of kraken_engine_options that a caller built against struct version
 * @p version has (0: unknown version). A version that adds fields adds a case.
 */
static size_t options_size(unsigned version)
{
    switch (version) {
    case 1:
        return offsetof(kraken_engine_options, no_sync_service) + sizeof(bool);
    case 2:
        return offsetof(kraken_engine_options, clock_userdata) + sizeof(void *);
    default:
        return 0;
    }
}

/*
 * The caller's options over the defaults: only the bytes its version has are
 * read (never past an older caller's smaller struct); later fields keep their
 * defaults. A version this library does not know is refused.
 */
static int options_read(const kraken_engine_options *caller, kraken_engine_options *out)
{
    static const kraken_engine_options defaults = KRAKEN_ENGINE_OPTIONS_INIT;
    *out = defaults;
    if (!caller)
        return 0;
    size_t size = options_size(caller->version);
    if (size == 0)
        return kraken__err(KRAKEN_EINVAL, "engine_new: options version %u, expected 1..%u",
                           caller->version, KRAKEN_ENGINE_OPTIONS_VERSION);
    memcpy(out, caller, size);
    return 0;
}

static int check_options(const kraken_engine_options *o)
{
    if (!(o->timeout_scale > 0.0))
        return kraken__err(KRAKEN_EINVAL, "engine_new: timeout_scale must be > 0");
    if (o->backoff_max_ms < o->backoff_initial_ms)
        return kraken__err(KRAKEN_EINVAL, "engine_new: backoff_max_ms (%u) < backoff_initial_ms "
                                          "(%u)", o->backoff_max_ms, o->backoff_initial_ms);
    return 0;
}

static void on_store_gone(void *arg);

int kraken_engine_options_init(kraken_engine_options *opts, unsigned version)
{
    if (!opts)
        return kraken__err(KRAKEN_EINVAL, "engine_options_init: opts must not be NULL");
    if (options_size(version) == 0)
        return kraken__err(KRAKEN_EINVAL, "engine_options_init: version %u, this library knows "
                                          "1..%u", version, KRAKEN_ENGINE_OPTIONS_VERSION);
    static const kraken_engine_options defaults = KRAKEN_ENGINE_OPTIONS_INIT;
    *opts = defaults;
    opts->version = version;
    return 0;
}

int kraken_engine_new(kraken_engine **out, struct event_base *base, kraken_store *store,
                      const kraken_engine_options *opts)
{
    if (!out)
        return kraken__err(KRAKEN_EINVAL, "engine_new: out must not be NULL");
    *out = NULL;
    if (!base)
        return kraken__err(KRAKEN_EINVAL, "engine_new: base must not be NULL");
    kraken_engine_options merged;
    int rc = options_read(opts, &merged);
    if (rc < 0 || (rc = check_options(&merged)) < 0)
        return rc;
    opts = &merged;
    kraken_engine *e = calloc(1, sizeof *e);
    if (!e)
        return kraken__err(KRAKEN_ENOMEM, "engine_new: out of memory");
    e->base = base;
    kraken__owner_init(&e->owner);
    e->opts = *opts;
    e->virtual_clock = opts->now_ms != NULL;
    if (!e->virtual_clock)
        e->opts.now_ms = monotonic_ms;
    e->self = opts->self_id;
    e->frozen = opts->start_frozen;
    if (kraken_uuid_is_zero(&e->self))
        rc = kraken_uuid_generate(&e->self);
    if (rc == 0 && !store) {
        rc = kraken_store_new(&e->store);
        e->own_store = rc == 0;
    } else {
        e->store = store;
    }
    if (rc == 0)
        rc = kraken_bus_new(&e->bus, base);
    if (rc == 0)
        rc = kraken_mutation_set_new(&e->set);
    if (rc == 0 && !(e->pass_ev = event_new(base, -1, 0, pass_cb, e)))
        rc = kraken__err(KRAKEN_ENOMEM, "engine_new: cannot create the pass event");
    if (rc == 0 && e->virtual_clock && !(e->clock_ev = event_new(base, -1, 0, clock_cb, e)))
        rc = kraken__err(KRAKEN_ENOMEM, "engine_new: cannot create the clock event");
    if (rc == 0)
        rc = kraken_store_listen(e->store, on_store_change, e, on_store_gone, &e->listener);
    if (rc == 0)
        rc = adopt_existing_nodes(e);
    if (rc == 0)
        rc = ensure_self(e);
    if (rc == 0)
        rc = self_facts(e);
    if (rc == 0 && !opts->no_sync_service)
        rc = add_sync_service(e);
    if (rc < 0) {
        kraken_engine_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

/* Detach the attached syncs: they stop using the engine, its store and its bus. */
static void detach_children(kraken_engine *e)
{
    while (e->n_children > 0) {
        struct engine_child c = e->children[--e->n_children];
        c.detach(c.arg); /* may call kraken__engine_unattach(): already off the list */
    }
    free(e->children);
    e->children = NULL;
}

/*
 * Release everything but the handle: children, services (destroy hooks), node
 * states, bus (subscriptions detached), mutation set, an owned store. Runs once,
 * when the engine is freed or detached from its freed store, never while one
 * of its loop callbacks is on the stack (see engine_unbusy()).
 */
static void engine_teardown(kraken_engine *engine)
{
    if (engine->torn_down)
        return;
    engine->dying = true; /* a destroy hook calling the engine gets KRAKEN_ESTATE */
    detach_children(engine);
    if (engine->listener)
        kraken_store_listener_remove(engine->listener);
    engine->listener = NULL;
    /*
     * Services first: their destroy hooks may still use the bus. The list is
     * detached, so a hook that removes a service (its own) finds nothing to do.
     */
    kraken_service **services = engine->services;
    size_t n_services = engine->n_services;
    engine->services = NULL;
    engine->n_services = engine->cap_services = 0;
    engine->svc_queue = NULL;
    for (size_t i = 0; i < n_services; i++)
        service_detach(services[i]);
    free(services);
    for (size_t i = 0; i < engine->cap; i++)
        if (engine->slots[i])
            node_free(engine->slots[i]);
    free(engine->slots);
    engine->slots = NULL;
    engine->cap = engine->count = 0;
    detach_module_timers(engine);
    free(engine->heap);
    engine->heap = NULL;
    bits_free(&engine->cond_bits);
    if (engine->clock_ev)
        event_free(engine->clock_ev);
    engine->clock_ev = NULL;
    if (engine->pass_ev)
        event_free(engine->pass_ev);
    engine->pass_ev = NULL;
    kraken_bus_free(engine->bus);
    engine->bus = NULL;
    kraken_mutation_set_free(engine->set);
    engine->set = NULL;
    if (engine->own_store)
        kraken_store_free(engine->store);
    engine->store = NULL;
    if (engine->log_destroy)
        engine->log_destroy(engine->log_userdata);
    engine->log_fn = NULL;
    engine->log_destroy = NULL;
    engine->torn_down = true;
}

/*
 * The borrowed store is being freed (its free detaches our listener): the
 * engine lets go of everything now and stays a detached handle whose calls
 * fail with KRAKEN_ESTATE until kraken_engine_free().
 */
static void on_store_gone(void *arg)
{
    kraken_engine *e = arg;
    if (e->dying)
        return; /* our own free removed the listener */
    kraken_store_listener_remove(e->listener); /* the store frees the handle after this hook */
    e->listener = NULL;
    e->store = NULL;
    e->own_store = false;
    e->dying = true;
    if (!e->busy)
        engine_teardown(e);
}

void kraken_engine_free(kraken_engine *engine)
{
    if (!engine || engine->free_requested ||
        kraken__owner_check(&engine->owner, "engine_free", "engine") < 0)
        return;
    engine->free_requested = true;
    if (engine->torn_down) {
        free(engine); /* detached earlier: only the handle was left */
        return;
    }
    if (engine->dying)
        return; /* a teardown runs (this is one of its hooks) or waits for a callback to return */
    if (engine->busy) {
        /*
         * Called from a service callback: the engine's stack still runs. It goes
         * quiet now (no more callbacks, the store is let go, so a borrowed one may
         * be freed at once) and is freed when that callback returns.
         */
        engine->dying = true;
        if (engine->listener)
            kraken_store_listener_remove(engine->listener);
        engine->listener = NULL;
        return;
    }
    engine_teardown(engine);
    free(engine);
}

int kraken__engine_usable(const kraken_engine *engine, const char *op)
{
    return engine_entry(engine, op);
}

int kraken__engine_attach(kraken_engine *engine, void (*detach)(void *arg), void *arg)
{
    int rc = engine_entry(engine, "engine_attach");
    if (rc < 0)
        return rc;
    struct engine_child *v = realloc(engine->children, (engine->n_children + 1) * sizeof *v);
    if (!v)
        return kraken__err(KRAKEN_ENOMEM, "engine_attach: out of memory");
    engine->children = v;
    engine->children[engine->n_children++] = (struct engine_child){detach, arg};
    return 0;
}

void kraken__engine_unattach(kraken_engine *engine, void *arg)
{
    for (size_t i = 0; engine && i < engine->n_children; i++) {
        if (engine->children[i].arg == arg) {
            engine->children[i] = engine->children[--engine->n_children];
            return;
        }
    }
}
