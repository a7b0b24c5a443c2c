/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Driving the nodes (SPEC 4.4): the store listener, the node table, the pass
 * that evaluates dirty nodes, and each node's state machine (plan, dispatch,
 * follow the step, time out, back off, stuck, busy, no path), with the
 * knowledge rule that records stale facts. The overview is at the top of
 * engine.c.
 */
#include <event2/event.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_private.h"

/* ---- URL bit sets (the read-only helpers are inline in engine_private.h) ------ */

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

enode *kraken__engine_node_find(const kraken_engine *e, const kraken_uuid *id)
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

enode *kraken__engine_node_add(kraken_engine *e, const kraken_uuid *id)
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


void kraken__engine_node_free(enode *n)
{
    kraken__engine_timer_destroy(n->timer);
    bits_free(&n->changed);
    bits_free(&n->stale);
    kraken_plan_free(n->plan);
    free(n->last_failed);
    free(n->reason);
    free(n);
}

/* ---- the pass scheduling ---------------------------------------------------- */

void kraken__engine_schedule_pass(kraken_engine *e)
{
    if (!e->pass_scheduled) {
        e->pass_scheduled = true;
        event_active(e->pass_ev, 0, 0);
    }
}

void kraken__engine_mark_dirty(kraken_engine *e, enode *n)
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
    kraken__engine_schedule_pass(e);
}

static void mark_all(kraken_engine *e)
{
    for (size_t i = 0; i < e->cap; i++)
        if (e->slots[i]) {
            e->slots[i]->replan = true;
            kraken__engine_mark_dirty(e, e->slots[i]);
        }
}

void kraken__engine_queue_service(kraken_engine *e, kraken_service *svc)
{
    if (svc->queued)
        return;
    svc->queued = true;
    svc->next_queued = e->svc_queue;
    e->svc_queue = svc;
    kraken__engine_schedule_pass(e);
}

/* ---- events -------------------------------------------------------------------- */

void kraken__engine_publish_mutation(kraken_engine *e, kraken_mutation_event kind,
                                     const kraken_uuid *node, const char *service,
                                     const char *mutation, const char *message)
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

void kraken__engine_publish_discovery(kraken_engine *e, const kraken_uuid *node,
                                      const char *service, const char *url,
                                      const kraken_value *value)
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
    kraken_service *svc = c->url ? kraken__engine_service_of_url(e, c->url, &rest) : NULL;
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
            kraken__engine_queue_service(e, svc);
        } else if (strncmp(rest, "Config", 6) == 0) {
            svc->config_changed = true;
            kraken__engine_queue_service(e, svc);
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
        kraken__engine_schedule_pass(e);
    }
}

void kraken__engine_on_store_change(const kraken_state_change *c, void *userdata)
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

    enode *n = kraken__engine_node_find(e, &c->node_id);
    switch (c->kind) {
    case KRAKEN_CHANGE_CREATE:
        if (!n && !(n = kraken__engine_node_add(e, &c->node_id)))
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
    kraken__engine_mark_dirty(e, n);
}

static void node_timer_phase(kraken_engine *e, enode *n);

/* ---- requests to services ------------------------------------------------------------ */

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
void kraken__engine_step_interrupt(kraken_engine *e, enode *n, const char *why)
{
    kraken__engine_timer_cancel(n);
    if (n->phase != PH_IN_FLIGHT)
        return;
    n->phase = PH_IDLE;
    uint64_t id = n->request_id;
    n->request_id = 0; /* from now on a report for it is a late answer */
    const char *sid = step_service(n), *mid = step_mutation(n);
    kraken__engine_publish_mutation(e, KRAKEN_MUTATION_INTERRUPT, &n->id, sid, mid, why);
    kraken_service *svc = kraken__engine_service_lookup(e, sid);
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
void kraken__engine_node_fail(kraken_engine *e, enode *n, char *reason)
{
    kraken__engine_timer_cancel(n);
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
    kraken__engine_timer_arm(e, n, delay);
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
        kraken__engine_queue_service(e, svc);
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
    kraken__engine_publish_mutation(e, KRAKEN_MUTATION_MUTATE, &n->id, m->service, m->id, NULL);
    uint64_t timeout = m->timeout_ms ? step_timeout_ms(e, m) : 0;
    kraken_mutation_request req;
    if (svc->ops.mutate && request_make(e, n, m, id, &req)) {
        svc->ops.mutate(svc, &req, svc->userdata);
        request_clear(&req);
    }
    /* The service may have failed the step from inside mutate() (kraken__engine_node_fail set the
     * timer). */
    if (e->dying || n->phase != PH_IN_FLIGHT || n->request_id != id || n->plan != plan ||
        n->step != step)
        return;
    if (timeout)
        kraken__engine_timer_arm(e, n, timeout); /* replaces whatever the timer was set for */
    else
        kraken__engine_timer_cancel(n);
}

/* Start (or keep waiting for) the current step of the node's plan. */
static void step_start(kraken_engine *e, enode *n, const kraken_node *cfg)
{
    if (!n->plan || n->step >= kraken_plan_length(n->plan)) {
        kraken__engine_timer_cancel(n);
        n->phase = PH_CONVERGED;
        n->failures = 0;
        free(n->last_failed);
        n->last_failed = NULL;
        set_reason(n, NULL);
        return;
    }
    const kraken_mutation *m = kraken__mutation_find(e->set, step_service(n), step_mutation(n));
    if (!m || !context_matches(e, m, n, cfg)) {
        kraken__engine_timer_cancel(n);
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
        kraken__engine_timer_arm(e, n, n->backoff_until - now);
        return;
    }
    n->backoff_until = 0;
    kraken_service *svc = kraken__engine_service_lookup(e, m->service);
    if (!svc) {
        kraken__engine_timer_cancel(n);
        n->phase = PH_PASSIVE;
        set_reason(n, str_printf("service '%s' is not on this instance", m->service));
        return;
    }
    if (svc->dsc_state != KRAKEN_SERVICE_RUN) {
        if (n->phase != PH_WAIT_SERVICE) {
            n->phase = PH_WAIT_SERVICE;
            kraken__engine_timer_arm(e, n, e->opts.service_start_ms);
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
    kraken__engine_timer_cancel(n);
    n->phase = PH_NO_PATH;
    set_reason(n, why);
    if (e->opts.no_path_retry_ms)
        kraken__engine_timer_arm(e, n, e->opts.no_path_retry_ms);
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

void kraken__engine_replan(kraken_engine *e, enode *n, const kraken_node *cfg,
                           const kraken_node *dsc)
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
            kraken__engine_publish_discovery(e, &n->id, ENGINE_ORIGIN, u->text, &zero);
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
        kraken__engine_step_interrupt(e, n, "mutation removed");
        n->phase = PH_IDLE;
        if (reload(e, n, &cfg, &dsc))
            kraken__engine_replan(e, n, cfg, dsc);
        return;
    }
    bool in_flight = n->phase == PH_IN_FLIGHT;
    const kraken_murl *bad = NULL;
    switch (progress_of(m, dsc, &bad)) {
    case STEP_DONE:
    case STEP_DISCOVERED:
        if (in_flight) {
            /* The timer is re-armed or cancelled by whatever comes next (step_start). */
            kraken__engine_publish_mutation(e, KRAKEN_MUTATION_DONE, &n->id, m->service, m->id,
                                            NULL);
            node_success(n, m->service, m->id);
        }
        n->phase = PH_IDLE;
        n->step++;
        kraken__engine_replan(e, n, cfg, dsc);
        return;
    case STEP_CONTRADICT:
        if (in_flight) {
            char *why = contradiction_reason(m, bad, dsc);
            kraken__engine_step_interrupt(e, n, why);
            kraken__engine_node_fail(e, n, why);
            return;
        }
        n->phase = PH_IDLE;
        kraken__engine_replan(e, n, cfg, dsc);
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
        kraken__engine_step_interrupt(e, n, "no path");
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
    kraken__engine_step_interrupt(e, n, "plan changed");
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
        kraken__engine_step_interrupt(e, n, "node deleted");
    kraken__engine_timer_cancel(n);
    kraken__engine_node_free(n);
}

static bool node_is_busy(const kraken_node *node)
{
    return node->rec.slots[KRAKEN_NODE_F_BUSY].i == FREEBUSY_BUSY;
}

/* /Busy = BUSY in Cfg or Dsc: the node is someone else's (a scheduler, an operator). */
static void enter_busy(kraken_engine *e, enode *n)
{
    /* only an in-flight step is told; any timer stops */
    kraken__engine_step_interrupt(e, n, "node busy");
    kraken__engine_timer_cancel(n);
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

/* Start the node afresh: no failures, no backoff, no reason; out of STUCK or BACKOFF (the
 * operator's word: a Cfg change or kraken_engine_reset_node()). */
static void forget_failures(enode *n)
{
    n->failures = 0;
    n->backoff_until = 0;
    free(n->last_failed);
    n->last_failed = NULL;
    set_reason(n, NULL);
    if (n->phase == PH_STUCK || n->phase == PH_BACKOFF) {
        kraken__engine_timer_cancel(n);
        n->phase = PH_IDLE;
    }
}

/* The node's run state after its changes were noted (and the knowledge rule applied). */
static void evaluate_phase(kraken_engine *e, enode *n, const kraken_node *cfg,
                           const kraken_node *dsc, const ebits *changed, bool cfg_changed,
                           bool replan_wanted)
{
    if (cfg_changed) {
        /* A Cfg change is the operator's word: start afresh, as kraken_engine_reset_node(). */
        forget_failures(n);
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
            kraken__engine_timer_cancel(n);
            set_reason(n, NULL); /* set again if there is still no path */
        }
        n->phase = PH_IDLE;
        kraken__engine_replan(e, n, cfg, dsc);
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
        kraken__engine_step_interrupt(e, n, "node deleted");
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

/* ---- the pass ------------------------------------------------------------------------------ */

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
        kraken__engine_service_reconcile(e, svc);
    }
    if (e->dying)
        return;
    if (e->wake_waiters)
        kraken__engine_wake_waiters(e);

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

void kraken__engine_pass_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kraken_engine *e = arg;
    e->busy++;
    pass_run(e);
    kraken__engine_unbusy(e);
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
        kraken__engine_timer_arm(e, n, 0);
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
            kraken__engine_publish_discovery(e, &n->id, m->service, m->fail_to.u->text,
                                             &m->fail_to.value);
        else
            kraken_error_clear();
    }
    kraken__engine_step_interrupt(e, n, why);
    kraken__engine_node_fail(e, n, why);
}

/* A node's timer (the engine counts as busy while it runs: see kraken_engine_free()). */
void kraken__engine_node_timer_cb(kraken_timer *t, void *arg)
{
    (void)t;
    enode *n = arg;
    kraken_engine *e = n->engine;
    if (n->deleted || e->frozen || e->dying)
        return;
    e->busy++;
    node_timer_phase(e, n);
    kraken__engine_unbusy(e);
}

/* What the node's timer means depends on the phase the node is in. */
static void node_timer_phase(kraken_engine *e, enode *n)
{
    switch ((node_phase)n->phase) {
    case PH_IN_FLIGHT:
        step_timeout(e, n);
        break;
    case PH_WAIT_SERVICE:
        kraken__engine_node_fail(e, n, str_printf("service '%s' did not reach RUN within %u ms",
                                                  step_service(n), e->opts.service_start_ms));
        break;
    case PH_BACKOFF:
        n->phase = PH_IDLE;
        n->replan = true;
        kraken__engine_mark_dirty(e, n);
        break;
    case PH_NO_PATH:
        n->replan = true;
        kraken__engine_mark_dirty(e, n);
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
            kraken__engine_timer_cancel(engine->slots[i]);
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
            kraken__engine_timer_arm(e, n, step_timeout_ms(e, m));
        break;
    }
    case PH_WAIT_SERVICE:
        kraken__engine_timer_arm(e, n, e->opts.service_start_ms);
        break;
    case PH_BACKOFF:
        kraken__engine_timer_arm(e, n, n->backoff_until > now ? n->backoff_until - now : 0);
        break;
    case PH_NO_PATH:
        if (e->opts.no_path_retry_ms)
            kraken__engine_timer_arm(e, n, e->opts.no_path_retry_ms);
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

/*
 * Why a node is PASSIVE when its step's context says another instance runs it (no reason is
 * kept for that case): a harness or tool whose engine's self id is not the node's parent
 * otherwise sees a plan that never moves, with nothing to say why.
 */
static char *passive_reason(const kraken_engine *e, const enode *n)
{
    const kraken_mutation *m = kraken__mutation_find(e->set, step_service(n), step_mutation(n));
    if (!m || (m->context != KRAKEN_CONTEXT_CHILD && m->context != KRAKEN_CONTEXT_SELF))
        return NULL;
    char self[KRAKEN_UUID_STRLEN + 1];
    return str_printf("step %s/%s runs on %s, not on this instance (%s): it follows the node's "
                      "discoveries", step_service(n), step_mutation(n),
                      m->context == KRAKEN_CONTEXT_CHILD ? "the node's parent (context CHILD)"
                                                         : "the node itself (context SELF)",
                      uuid_str(&e->self, self));
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
    const enode *n = kraken__engine_node_find(engine, node_id);
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
    if (!n->reason && st.state == KRAKEN_PLAN_PASSIVE && st.current < len)
        st.reason = passive_reason(engine, n); /* NULL when out of memory: no reason, no harm */
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
    enode *n = kraken__engine_node_find(engine, node_id);
    char buf[KRAKEN_UUID_STRLEN + 1];
    if (!n || n->deleted)
        return kraken__err(KRAKEN_ENOTFOUND, "engine_reset_node: node %s not found",
                           uuid_str(node_id, buf));
    forget_failures(n);
    n->replan = true;
    kraken__engine_mark_dirty(engine, n);
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
    const enode *n = kraken__engine_node_find(engine, node_id);
    const kraken_node *cfg = kraken__store_peek(engine->store, KRAKEN_CFG, node_id);
    char buf[KRAKEN_UUID_STRLEN + 1];
    if (!n || n->deleted || !cfg)
        return kraken__err(KRAKEN_ENOTFOUND, "engine_graph_json: node %s not found",
                           uuid_str(node_id, buf));
    return kraken_mutation_set_graph_json(engine->set, cfg, n->plan, n->step, out);
}
