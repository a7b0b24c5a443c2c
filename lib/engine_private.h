/*
 * engine_private.h: what the engine's files share. Not installed.
 *
 *   engine.c           create and free, options, lifetimes (busy callbacks, teardown, attached
 *                      syncs), the log callback, accessors, the built-in sync service
 *   engine_clock.c     the engine's clock: timers (libevent, or the heap of an injected clock),
 *                      module timers, kraken_engine_now_ms/clock_moved/next_deadline
 *   engine_services.c  services: add/remove, start/stop/config reconciliation, declarations,
 *                      discoveries, reports and failures from services, kraken_service_log
 *   engine_drive.c     each node's state machine: the store listener, node table, the pass,
 *                      planning and dispatch, step timeouts, back-off, busy nodes, the knowledge
 *                      rule (stale facts), freeze/thaw, node status and reset
 *
 * The overview of how the engine works is at the top of engine.c.
 */
#ifndef KRAKEN_ENGINE_PRIVATE_H
#define KRAKEN_ENGINE_PRIVATE_H

#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log_private.h"
#include "planner_private.h"
#include "store_private.h"
#include "sync_private.h"


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
static inline int engine_entry(const kraken_engine *e, const char *op)
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
static inline int service_entry(const kraken_service *svc, const char *op)
{
    if (!svc)
        return kraken__err(KRAKEN_EINVAL, "%s: service must not be NULL", op);
    if (!svc->engine)
        return kraken__err(KRAKEN_ESTATE, "%s: service '%s' was detached: its engine was freed",
                           op, svc->id);
    return engine_entry(svc->engine, op);
}


static inline uint64_t now_ms(const kraken_engine *e)
{
    return e->opts.now_ms(e->opts.clock_userdata);
}

static inline struct timeval ms_tv(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

static inline char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

static inline void set_reason(enode *n, char *reason)
{
    free(n->reason);
    n->reason = reason;
}

/* ---- URL bit sets ------------------------------------------------------------ */

static inline size_t bits_words(const ebits *b)
{
    return 1 + (b->more ? (size_t)b->more[0] : 0);
}

/* Word @p w (0: the inline one), or 0 beyond the allocated ones. */
static inline uint64_t bits_word(const ebits *b, size_t w)
{
    if (w == 0)
        return b->word;
    return b->more && w <= b->more[0] ? b->more[w] : 0;
}

static inline bool bits_test(const ebits *b, size_t i)
{
    return (bits_word(b, i / 64) >> (i % 64)) & 1;
}


static inline bool bits_any(const ebits *b)
{
    for (size_t w = 0; w < bits_words(b); w++)
        if (bits_word(b, w))
            return true;
    return false;
}

static inline bool bits_intersect(const ebits *a, const ebits *b)
{
    for (size_t w = 0; w < bits_words(a); w++)
        if (bits_word(a, w) & bits_word(b, w))
            return true;
    return false;
}

static inline void bits_free(ebits *b)
{
    free(b->more);
    *b = (ebits){0, NULL};
}

static inline const char *uuid_str(const kraken_uuid *id, char buf[KRAKEN_UUID_STRLEN + 1])
{
    return kraken_uuid_format(id, buf);
}

/* The service and mutation of the node's current step (plan set). */
static inline const char *step_service(const enode *n)
{
    return kraken_plan_step_service(n->plan, n->step);
}

static inline const char *step_mutation(const enode *n)
{
    return kraken_plan_step_mutation(n->plan, n->step);
}

/* ---- shared between the engine's files ---------------------------------------- */

/* engine.c: leaving a loop callback (pass, timer); a free requested inside it happens here */
KRAKEN_PRIVATE void kraken__engine_unbusy(kraken_engine *e);

/* engine_clock.c: timers on the engine's clock; a node's one timer means what its phase says */
KRAKEN_PRIVATE void kraken__engine_timer_arm(kraken_engine *e, enode *n, uint64_t ms);
KRAKEN_PRIVATE void kraken__engine_timer_cancel(enode *n);
KRAKEN_PRIVATE void kraken__engine_timer_destroy(kraken_timer *t);
KRAKEN_PRIVATE void kraken__engine_clock_cb(evutil_socket_t fd, short what, void *arg);
KRAKEN_PRIVATE void kraken__engine_detach_module_timers(kraken_engine *e);

/* engine_drive.c: the node table, the pass and the nodes' state machine */
KRAKEN_PRIVATE enode *kraken__engine_node_find(const kraken_engine *e, const kraken_uuid *id);
KRAKEN_PRIVATE enode *kraken__engine_node_add(kraken_engine *e, const kraken_uuid *id);
KRAKEN_PRIVATE void kraken__engine_node_free(enode *n);
KRAKEN_PRIVATE void kraken__engine_schedule_pass(kraken_engine *e);
KRAKEN_PRIVATE void kraken__engine_mark_dirty(kraken_engine *e, enode *n);
KRAKEN_PRIVATE void kraken__engine_queue_service(kraken_engine *e, kraken_service *svc);
KRAKEN_PRIVATE void kraken__engine_publish_mutation(kraken_engine *e, kraken_mutation_event kind,
                                                    const kraken_uuid *node, const char *service,
                                                    const char *mutation, const char *message);
KRAKEN_PRIVATE void kraken__engine_publish_discovery(kraken_engine *e, const kraken_uuid *node,
                                                     const char *service, const char *url,
                                                     const kraken_value *value);
KRAKEN_PRIVATE void kraken__engine_on_store_change(const kraken_state_change *c, void *userdata);
KRAKEN_PRIVATE void kraken__engine_step_interrupt(kraken_engine *e, enode *n, const char *why);
KRAKEN_PRIVATE void kraken__engine_node_fail(kraken_engine *e, enode *n, char *reason);
KRAKEN_PRIVATE void kraken__engine_replan(kraken_engine *e, enode *n, const kraken_node *cfg,
                                          const kraken_node *dsc);
KRAKEN_PRIVATE void kraken__engine_pass_cb(evutil_socket_t fd, short what, void *arg);
KRAKEN_PRIVATE void kraken__engine_node_timer_cb(kraken_timer *t, void *arg);

/* engine_services.c: services by id or by URL, their reconciliation from the pass */
KRAKEN_PRIVATE kraken_service *kraken__engine_service_lookup(const kraken_engine *engine,
                                                             const char *service_id);
KRAKEN_PRIVATE kraken_service *kraken__engine_service_of_url(kraken_engine *e, const char *url,
                                                             const char **rest);
KRAKEN_PRIVATE void kraken__engine_service_reconcile(kraken_engine *e, kraken_service *svc);
KRAKEN_PRIVATE void kraken__engine_wake_waiters(kraken_engine *e);
KRAKEN_PRIVATE void kraken__engine_service_detach(kraken_service *svc);
KRAKEN_PRIVATE int kraken__engine_ensure_self(kraken_engine *e);

#endif
