/*
 * The engine's clock (kraken_engine_options.now_ms) and its timers: libevent
 * timers with the default clock, a heap fired by kraken_engine_clock_moved()
 * with an injected one. Node timers and module timers (kraken_timer_new) both
 * live here.
 */
#include <event2/event.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_private.h"

/* ---- timers on the engine's clock ------------------------------------------------------ */


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
    kraken__engine_unbusy(e);
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

void kraken__engine_timer_destroy(kraken_timer *t)
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
void kraken__engine_clock_cb(evutil_socket_t fd, short what, void *arg)
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
    kraken__engine_unbusy(e);
}

/* Arm the node's timer (its meaning is the node's phase). Frozen engines arm nothing. */
void kraken__engine_timer_arm(kraken_engine *e, enode *n, uint64_t ms)
{
    if (e->frozen)
        return;
    if (!n->timer && !(n->timer = etimer_create(e, kraken__engine_node_timer_cb, n)))
        return; /* out of memory: the step runs without a timer */
    if (timer_start(n->timer, ms) < 0)
        kraken_error_clear(); /* the same: no timer */
}

void kraken__engine_timer_cancel(enode *n)
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
    kraken__engine_timer_destroy(timer);
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
void kraken__engine_detach_module_timers(kraken_engine *e)
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
