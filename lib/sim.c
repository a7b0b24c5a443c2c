/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Simulated power + PXE module for harnesses (include/kraken/sim.h).
 *
 * Deterministic: every dispatched step becomes one pending "answer" with its
 * own timer on the engine's clock; when it fires, the simulator reports the
 * step's `to` values under the request id (or does what an injected fault
 * says). Nothing ever sleeps.
 */
#include "kraken/sim.h"

#include <stdlib.h>
#include <string.h>

#include "util_private.h"

#define PHYS "/PhysState"
#define RUN "/RunState"
#define PXE_STATE "type.googleapis.com/PXE.Client/State"

/* One simulated mutation: its service and its declaration. */
typedef struct sim_mutation {
    const char *service;
    kraken_mutation_decl decl;
} sim_mutation;

static const kraken_fact platform_sim[] = {{"/Platform", "sim"}};
static const kraken_fact powered_on[] = {{PHYS, "POWER_ON"}};
static const kraken_mutate uk_to_off[] = {{PHYS, "PHYS_UNKNOWN", "POWER_OFF"}};
static const kraken_mutate off_to_on[] = {{PHYS, "POWER_OFF", "POWER_ON"}};
static const kraken_mutate on_to_off[] = {{PHYS, "POWER_ON", "POWER_OFF"}};
static const kraken_mutate hang_to_off[] = {{PHYS, "PHYS_HANG", "POWER_OFF"}};
static const kraken_mutate none_to_wait[] = {{PXE_STATE, "NONE", "WAIT"}};
static const kraken_mutate wait_to_init[] = {{PXE_STATE, "WAIT", "INIT"},
                                             {RUN, "UNKNOWN", "INIT"}};

/* Designated initialisers (KRAKEN_MUTATION_DECL_INIT): the declarations read like SPEC 4.3. */
#define POWER_DECL(name, mut)                                                             \
    {"power", KRAKEN_MUTATION_DECL_INIT(.id = name, KRAKEN_DECL_MUTATES(mut),               \
                                        KRAKEN_DECL_REQUIRES(platform_sim),                 \
                                        .context = KRAKEN_CONTEXT_CHILD, .timeout_ms = 10000, \
                                        .fail_to = {PHYS, "PHYS_HANG"})}

static const sim_mutation sim_mutations[] = {
    POWER_DECL("UKtoOFF", uk_to_off),
    POWER_DECL("OFFtoON", off_to_on),
    POWER_DECL("ONtoOFF", on_to_off),
    POWER_DECL("HANGtoOFF", hang_to_off),
    {"pxe", KRAKEN_MUTATION_DECL_INIT(.id = "NONEtoWAIT", KRAKEN_DECL_MUTATES(none_to_wait),
                                      KRAKEN_DECL_REQUIRES(powered_on),
                                      .context = KRAKEN_CONTEXT_CHILD, .timeout_ms = 10000)},
    {"pxe", KRAKEN_MUTATION_DECL_INIT(.id = "WAITtoINIT", KRAKEN_DECL_MUTATES(wait_to_init),
                                      KRAKEN_DECL_REQUIRES(powered_on),
                                      .context = KRAKEN_CONTEXT_CHILD, .timeout_ms = 90000)},
};
#define N_SIM_MUTATIONS (sizeof sim_mutations / sizeof sim_mutations[0])

/* INITtoSYNC as the engine declares it (answered when virtual_sync is on). */
static const kraken_mutate init_to_sync[] = {{RUN, "INIT", "SYNC"}};
static const sim_mutation sync_mutation = {
    "sync", KRAKEN_MUTATION_DECL_INIT(.id = "INITtoSYNC", KRAKEN_DECL_MUTATES(init_to_sync),
                                      KRAKEN_DECL_REQUIRES(powered_on),
                                      .context = KRAKEN_CONTEXT_CHILD, .timeout_ms = 90000,
                                      .fail_to = {PHYS, "PHYS_HANG"})};

typedef struct sim_fault {
    bool any_node;
    kraken_uuid node;
    char *mutation_id;
    kraken_sim_fault_kind kind;
    unsigned remaining; /* 0 = forever */
    bool spent;         /* a counted fault that has been used up */
    char *value;
    struct sim_fault *next; /* newest first */
} sim_fault;

typedef struct sim_answer sim_answer;
typedef struct sim_service {
    kraken_sim *owner;
    kraken_service *service; /* ours until kraken_sim_free() (NULL: not added) */
    kraken_timer *start_timer;
} sim_service;

struct kraken_sim {
    kraken_engine *engine;
    kraken_sim_options opts;
    sim_service power, pxe;
    kraken_subscription *sync_sub;
    sim_fault *faults;
    sim_answer *answers; /* pending, doubly linked */
    unsigned n_pending;
    unsigned dispatched[N_SIM_MUTATIONS + 1]; /* last: INITtoSYNC */
    uint32_t delay[N_SIM_MUTATIONS + 1];      /* per mutation (kraken_sim_set_delay) */
    bool has_delay[N_SIM_MUTATIONS + 1];
    unsigned interrupted;
    unsigned started;
    unsigned refused;
    kraken_sim_interrupt_hook interrupt_hook;
    void *interrupt_arg;
};

struct sim_answer {
    kraken_sim *owner;
    const char *service_id; /* "power", "pxe" or "sync" */
    size_t mutation;        /* index into sim_mutations, N_SIM_MUTATIONS = INITtoSYNC */
    kraken_uuid node;
    uint64_t request_id;    /* 0 for INITtoSYNC (answered by a plain discovery) */
    kraken_sim_fault_kind action;  /* KRAKEN_SIM_HANG is never armed; otherwise what to do */
    bool report;            /* report `report_value` instead of the first `to` */
    bool late;              /* KRAKEN_SIM_LATE: an interrupt does not cancel it */
    char *report_value;
    kraken_timer *timer;
    sim_answer *prev, *next;
};

static const sim_mutation *mutation_at(size_t i)
{
    return i < N_SIM_MUTATIONS ? &sim_mutations[i] : &sync_mutation;
}

static size_t mutation_index(const char *service_id, const char *mutation_id)
{
    for (size_t i = 0; i < N_SIM_MUTATIONS; i++)
        if (!strcmp(sim_mutations[i].service, service_id) &&
            !strcmp(sim_mutations[i].decl.id, mutation_id))
            return i;
    if (!strcmp(service_id, "sync") && !strcmp(mutation_id, "INITtoSYNC"))
        return N_SIM_MUTATIONS;
    return SIZE_MAX;
}

/* ---- faults ------------------------------------------------------------------ */

/* A KRAKEN_SIM_LATE delay: decimal ms that fit 32 bits. */
static bool late_delay(const char *text, uint32_t *out)
{
    uint64_t v = 0;
    if (!text || !*text)
        return false;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9' || (v = v * 10 + (uint64_t)(*p - '0')) > UINT32_MAX)
            return false;
    }
    if (out)
        *out = (uint32_t)v;
    return true;
}

static const sim_fault *fault_take(kraken_sim *s, const kraken_uuid *node, const char *mutation_id)
{
    for (sim_fault *f = s->faults; f; f = f->next) {
        if (f->spent || strcmp(f->mutation_id, mutation_id) != 0)
            continue;
        if (!f->any_node && kraken_uuid_compare(&f->node, node) != 0)
            continue;
        if (f->remaining > 0 && --f->remaining == 0)
            f->spent = true;
        return f;
    }
    return NULL;
}

int kraken_sim_inject(kraken_sim *s, const kraken_uuid *node, const char *mutation_id, kraken_sim_fault_kind kind,
               unsigned count, const char *value)
{
    if (!s || !mutation_id || ((kind == KRAKEN_SIM_REPORT || kind == KRAKEN_SIM_LATE) && !value))
        return kraken__err(KRAKEN_EINVAL, "sim_inject: sim, mutation id (and, to report, a "
                                          "value) are required");
    if (kind != KRAKEN_SIM_HANG && kind != KRAKEN_SIM_FAIL && kind != KRAKEN_SIM_REPORT &&
        kind != KRAKEN_SIM_LATE)
        return kraken__err(KRAKEN_EINVAL, "sim_inject: bad fault kind %d", (int)kind);
    if (kind == KRAKEN_SIM_LATE && !late_delay(value, NULL))
        return kraken__err(KRAKEN_EINVAL, "sim_inject: late delay '%s' is not a number of ms",
                           value);
    sim_fault *f = calloc(1, sizeof *f);
    if (!f)
        return kraken__err(KRAKEN_ENOMEM, "sim_inject: out of memory");
    f->any_node = node == NULL;
    if (node)
        f->node = *node;
    f->mutation_id = strdup(mutation_id);
    f->value = value ? strdup(value) : NULL;
    f->kind = kind;
    f->remaining = count;
    f->next = s->faults;
    s->faults = f;
    return 0;
}

void kraken_sim_clear_faults(kraken_sim *s)
{
    while (s && s->faults) {
        sim_fault *f = s->faults;
        s->faults = f->next;
        free(f->mutation_id);
        free(f->value);
        free(f);
    }
}

/* ---- answers ----------------------------------------------------------------- */

static void answer_unlink_free(sim_answer *a)
{
    kraken_sim *s = a->owner;
    if (a->prev)
        a->prev->next = a->next;
    else
        s->answers = a->next;
    if (a->next)
        a->next->prev = a->prev;
    s->n_pending--;
    kraken_timer_free(a->timer);
    free(a->report_value);
    free(a);
}

static kraken_service *service_by_id(kraken_sim *s, const char *service_id)
{
    if (!strcmp(service_id, "power"))
        return s->power.service;
    if (!strcmp(service_id, "pxe"))
        return s->pxe.service;
    return kraken_engine_find_service(s->engine, service_id);
}

/* The timer fired: report the outcome of the step (or its failure). */
static void answer_fire(kraken_timer *timer, void *arg)
{
    (void)timer;
    sim_answer *a = arg;
    kraken_sim *s = a->owner;
    kraken_service *svc = service_by_id(s, a->service_id);
    const kraken_mutation_decl *d = &mutation_at(a->mutation)->decl;
    int rc = 0;
    if (svc && a->action == KRAKEN_SIM_FAIL) {
        rc = kraken_service_fail(svc, &a->node, a->request_id, "sim: injected failure");
    } else if (svc) {
        for (size_t i = 0; rc == 0 && i < d->n_mutates; i++) {
            const char *text = (i == 0 && a->report) ? a->report_value : d->mutates[i].to;
            if (a->request_id)
                rc = kraken_service_report_text(svc, &a->node, a->request_id, d->mutates[i].url,
                                                text);
            else
                kraken_service_discover_text(svc, &a->node, d->mutates[i].url, text);
        }
    }
    if (rc == KRAKEN_ESTATE)
        s->refused++; /* not in flight any more: a late answer */
    kraken_error_clear(); /* the engine said why; for the simulator it is only a count */
    answer_unlink_free(a);
}

static void answer_schedule(kraken_sim *s, const char *service_id, size_t mutation,
                            const kraken_uuid *node, uint64_t request_id)
{
    s->dispatched[mutation]++;
    const sim_fault *f = fault_take(s, node, mutation_at(mutation)->decl.id);
    if (f && f->kind == KRAKEN_SIM_HANG)
        return;
    sim_answer *a = calloc(1, sizeof *a);
    if (!a)
        return;
    a->owner = s;
    a->service_id = service_id;
    a->mutation = mutation;
    a->node = *node;
    a->request_id = request_id;
    a->action = f && f->kind != KRAKEN_SIM_LATE ? f->kind : KRAKEN_SIM_REPORT;
    uint32_t delay = s->has_delay[mutation] ? s->delay[mutation] : s->opts.delay_ms;
    if (f && f->kind == KRAKEN_SIM_LATE) {
        a->late = true;
        late_delay(f->value, &delay); /* checked by kraken_sim_inject() */
    }
    if (f && f->kind == KRAKEN_SIM_REPORT) {
        a->report = true;
        if (!(a->report_value = strdup(f->value))) {
            free(a);
            return; /* out of memory: as a hang (the step times out) */
        }
    }
    if (kraken_timer_new(&a->timer, s->engine, answer_fire, a) < 0) {
        kraken_error_clear();
        free(a->report_value);
        free(a);
        return;
    }
    a->next = s->answers;
    if (s->answers)
        s->answers->prev = a;
    s->answers = a;
    s->n_pending++;
    if (kraken_timer_arm(a->timer, delay) < 0) {
        kraken_error_clear();
        answer_unlink_free(a);
    }
}

/* Drop the pending answer of an interrupted step: by request id, or (INITtoSYNC) by step. */
static void answer_cancel(kraken_sim *s, const char *service_id, const kraken_uuid *node,
                          const char *mutation_id, uint64_t request_id)
{
    size_t m = mutation_index(service_id, mutation_id);
    for (sim_answer *a = s->answers; a; a = a->next) {
        if (a->late)
            continue; /* a slow process does not hear the interrupt in time */
        if (request_id ? a->request_id == request_id
                       : a->mutation == m && kraken_uuid_compare(&a->node, node) == 0) {
            answer_unlink_free(a);
            return;
        }
    }
}

/* ---- service handlers --------------------------------------------------------- */

static void report_run(kraken_timer *timer, void *arg)
{
    (void)timer;
    sim_service *ss = arg;
    if (ss->service)
        kraken_service_set_state(ss->service, KRAKEN_SERVICE_RUN, NULL);
}

static void on_start(kraken_service *service, void *userdata)
{
    (void)service;
    sim_service *ss = userdata;
    ss->owner->started++;
    if (ss->owner->opts.never_start)
        return;
    if (kraken_timer_arm(ss->start_timer, ss->owner->opts.start_delay_ms) < 0)
        kraken_error_clear();
}

static void on_stop(kraken_service *service, void *userdata)
{
    sim_service *ss = userdata;
    kraken_timer_cancel(ss->start_timer);
    kraken_service_set_state(service, KRAKEN_SERVICE_STOP, NULL);
}

static void on_mutate(kraken_service *service, const kraken_mutation_request *req,
                      void *userdata)
{
    sim_service *ss = userdata;
    size_t m = mutation_index(kraken_service_id(service), req->mutation_id);
    if (m != SIZE_MAX)
        answer_schedule(ss->owner, mutation_at(m)->service, m, &req->node_id, req->id);
}

static void on_interrupt(kraken_service *service, const kraken_mutation_request *req,
                         void *userdata)
{
    sim_service *ss = userdata;
    ss->owner->interrupted++;
    answer_cancel(ss->owner, kraken_service_id(service), &req->node_id, req->mutation_id,
                  req->id);
    if (ss->owner->interrupt_hook)
        ss->owner->interrupt_hook(service, req, ss->owner->interrupt_arg);
}

void kraken_sim_on_interrupt(kraken_sim *s, kraken_sim_interrupt_hook fn, void *arg)
{
    if (!s)
        return;
    s->interrupt_hook = fn;
    s->interrupt_arg = arg;
}

/*
 * virtual_sync: a MUTATE of sync/INITtoSYNC is answered as the booted child
 * would (phone home -> parent-side discovery of RunState SYNC); an INTERRUPT
 * cancels that answer.
 */
static void on_event(const kraken_event *ev, void *userdata)
{
    kraken_sim *s = userdata;
    if (ev->type != KRAKEN_EVENT_STATE_MUTATION || !ev->service_id ||
        strcmp(ev->service_id, "sync") != 0 || !ev->mutation_id ||
        strcmp(ev->mutation_id, "INITtoSYNC") != 0)
        return;
    if (ev->kind == KRAKEN_MUTATION_MUTATE)
        answer_schedule(s, "sync", N_SIM_MUTATIONS, &ev->node_id, 0);
    else if (ev->kind == KRAKEN_MUTATION_INTERRUPT)
        answer_cancel(s, "sync", &ev->node_id, ev->mutation_id, 0);
}

static const kraken_service_ops sim_ops = {
    .version = KRAKEN_SERVICE_OPS_VERSION,
    .start = on_start,
    .stop = on_stop,
    .mutate = on_mutate,
    .interrupt = on_interrupt,
};

/* The URLs the mutations change become discoverable by declaring them (engine.h). */
static int add_service(kraken_sim *s, sim_service *ss, const char *id)
{
    ss->owner = s;
    int rc = kraken_timer_new(&ss->start_timer, s->engine, report_run, ss);
    if (rc < 0)
        return rc;
    /* The handle is ours until kraken_sim_free(), also after the engine's free (engine.h). */
    rc = kraken_engine_add_service(s->engine, id, id, &sim_ops, ss, NULL, &ss->service);
    for (size_t i = 0; rc == 0 && i < N_SIM_MUTATIONS; i++)
        if (!strcmp(sim_mutations[i].service, id))
            rc = kraken_service_declare_mutation(ss->service, &sim_mutations[i].decl);
    return rc;
}

int kraken_sim_options_init(kraken_sim_options *opts, unsigned version)
{
    static const kraken_sim_options defaults = KRAKEN_SIM_OPTIONS_INIT;
    if (!opts)
        return kraken__err(KRAKEN_EINVAL, "sim_options_init: opts must not be NULL");
    if (version < 1 || version > KRAKEN_SIM_OPTIONS_VERSION)
        return kraken__err(KRAKEN_EINVAL, "sim_options_init: version %u, this library knows "
                                          "1..%u", version, KRAKEN_SIM_OPTIONS_VERSION);
    *opts = defaults;
    opts->version = version;
    return 0;
}

int kraken_sim_new(kraken_sim **out, kraken_engine *engine, const kraken_sim_options *opts)
{
    static const kraken_sim_options defaults = KRAKEN_SIM_OPTIONS_INIT;
    if (out)
        *out = NULL;
    if (!out || !engine)
        return kraken__err(KRAKEN_EINVAL, "sim_new: out and engine are required");
    if (opts && (opts->version < 1 || opts->version > KRAKEN_SIM_OPTIONS_VERSION))
        return kraken__err(KRAKEN_EINVAL, "sim_new: options version %u, this library knows "
                                          "1..%u (start from KRAKEN_SIM_OPTIONS_INIT)",
                           opts->version, KRAKEN_SIM_OPTIONS_VERSION);
    kraken_sim *s = calloc(1, sizeof *s);
    if (!s)
        return kraken__err(KRAKEN_ENOMEM, "sim_new: out of memory");
    s->engine = engine;
    s->opts = opts ? *opts : defaults;
    int rc = add_service(s, &s->power, "power");
    if (rc == 0 && !s->opts.no_pxe)
        rc = add_service(s, &s->pxe, "pxe");
    if (rc == 0 && s->opts.virtual_sync) {
        kraken_subscribe_options so = {KRAKEN_SUBSCRIBE_OPTIONS_VERSION,
                                       KRAKEN_EVENT_MASK(KRAKEN_EVENT_STATE_MUTATION), NULL,
                                       (size_t)1 << 22};
        rc = kraken_bus_subscribe(kraken_engine_bus(engine), &so, on_event, s, NULL,
                                  &s->sync_sub);
    }
    if (rc < 0) {
        kraken_sim_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static void service_release(kraken_sim *s, sim_service *ss)
{
    (void)s;
    kraken_service_remove(ss->service); /* NULL-safe; a detached handle is only freed */
    kraken_timer_free(ss->start_timer);
}

void kraken_sim_free(kraken_sim *s)
{
    if (!s)
        return;
    kraken_subscription_remove(s->sync_sub);
    service_release(s, &s->power);
    service_release(s, &s->pxe);
    while (s->answers)
        answer_unlink_free(s->answers);
    kraken_sim_clear_faults(s);
    free(s);
}

unsigned kraken_sim_dispatched(const kraken_sim *s, const char *mutation_id)
{
    unsigned n = 0;
    for (size_t i = 0; s && i <= N_SIM_MUTATIONS; i++)
        if (!mutation_id || !strcmp(mutation_at(i)->decl.id, mutation_id))
            n += s->dispatched[i];
    return n;
}

unsigned kraken_sim_interrupted(const kraken_sim *s)
{
    return s ? s->interrupted : 0;
}

unsigned kraken_sim_started(const kraken_sim *s)
{
    return s ? s->started : 0;
}

int kraken_sim_set_delay(kraken_sim *s, const char *mutation_id, uint32_t delay_ms)
{
    if (!s || !mutation_id)
        return kraken__err(KRAKEN_EINVAL, "sim_set_delay: sim and mutation id are required");
    bool found = false;
    for (size_t i = 0; i <= N_SIM_MUTATIONS; i++) {
        if (strcmp(mutation_at(i)->decl.id, mutation_id) == 0) {
            s->delay[i] = delay_ms;
            s->has_delay[i] = true;
            found = true;
        }
    }
    return found ? 0
                 : kraken__err(KRAKEN_ENOTFOUND, "sim_set_delay: the simulator has no mutation "
                                                 "'%s'", mutation_id);
}

unsigned kraken_sim_refused(const kraken_sim *s)
{
    return s ? s->refused : 0;
}

unsigned kraken_sim_pending(const kraken_sim *s)
{
    return s ? s->n_pending : 0;
}
