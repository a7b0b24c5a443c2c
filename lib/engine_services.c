/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Services on the engine's self node (SPEC 5): adding and removing them,
 * reconciling their Cfg/Dsc State (start, stop, config changes), their
 * declarations (mutations, discoverable URLs) and what they send back
 * (discoveries, reports, failures, log lines).
 */
#include <event2/event.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_private.h"

/* ---- services: lookup ------------------------------------------------------------ */

/* Internal lookup: no entry checks (the engine's own paths run on its thread, also while dying). */
kraken_service *kraken__engine_service_lookup(const kraken_engine *engine, const char *service_id)
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
    return kraken__engine_service_lookup(engine, service_id);
}

/* The service named by a self-node URL "/Services/<id>/<rest>", and <rest>. */
kraken_service *kraken__engine_service_of_url(kraken_engine *e, const char *url, const char **rest)
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

/* ---- service reconciliation ---------------------------------------------------------------- */

static void service_set_dsc_state(kraken_engine *e, kraken_service *svc, int state)
{
    kraken_value v = kraken_value_int(KRAKEN_T_ENUM, state);
    if (kraken_store_set_value(e->store, KRAKEN_DSC, &e->self, svc->state_url, &v) < 0)
        kraken_error_clear();
}

/* Start/stop a service to match its Cfg state; deliver config changes. From the pass only. */
void kraken__engine_service_reconcile(kraken_engine *e, kraken_service *svc)
{
    if (svc->start_requested) {
        svc->start_requested = false;
        if (svc->cfg_state == KRAKEN_SERVICE_RUN && svc->dsc_state != KRAKEN_SERVICE_RUN &&
            svc->dsc_state != KRAKEN_SERVICE_INIT) {
            if (svc->ops.start) {
                service_set_dsc_state(e, svc, KRAKEN_SERVICE_INIT);
                /* The callback may remove the service: the rest waits in the queue. */
                if (svc->stop_requested || svc->config_changed)
                    kraken__engine_queue_service(e, svc);
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
                    kraken__engine_queue_service(e, svc);
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

void kraken__engine_wake_waiters(kraken_engine *e)
{
    e->wake_waiters = false;
    for (size_t i = 0; i < e->cap; i++)
        if (e->slots[i] && e->slots[i]->phase == PH_WAIT_SERVICE)
            kraken__engine_mark_dirty(e, e->slots[i]);
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
void kraken__engine_service_detach(kraken_service *svc)
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

int kraken__engine_ensure_self(kraken_engine *e)
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

/* sizeof kraken_service_ops as a caller of each version has it; index = version - 1. */
static const size_t ops_sizes[] = {
    KRAKEN__VERSION_SIZE(kraken_service_ops, config_changed), /* 1 */
};
_Static_assert(sizeof ops_sizes / sizeof ops_sizes[0] == KRAKEN_SERVICE_OPS_VERSION,
               "one size per version of kraken_service_ops");
_Static_assert(KRAKEN__VERSION_SIZE(kraken_service_ops, config_changed) ==
                   sizeof(kraken_service_ops),
               "kraken_service_ops grew: add its new version to ops_sizes");

static const kraken__struct_abi ops_abi = {"kraken_service_ops", "KRAKEN_SERVICE_OPS_VERSION",
                                           ops_sizes, KRAKEN_SERVICE_OPS_VERSION};

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
    kraken_service_ops current = {0}; /* the caller's version, read into this library's struct */
    if (ops && (rc = kraken__struct_read(&ops_abi, ops, &current)) < 0)
        return kraken__err_prefix(rc, "kraken_engine_add_service: service '%s'", service_id);
    if (kraken__engine_service_lookup(engine, service_id))
        return kraken__err(KRAKEN_EEXISTS, "engine_add_service: service '%s' already exists",
                           service_id);
    if ((rc = kraken__engine_ensure_self(engine)) < 0)
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
    svc->ops = current;
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
        kraken__engine_queue_service(engine, svc);
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
            kraken__engine_publish_mutation(engine, KRAKEN_MUTATION_INTERRUPT, &n->id, service->id,
                             step_mutation(n), "service removed");
        kraken__engine_timer_cancel(n);
        n->phase = PH_IDLE;
        n->replan = true;
        kraken__engine_mark_dirty(engine, n);
    }
    for (kraken_service **p = &engine->svc_queue; *p; p = &(*p)->next_queued) {
        if (*p == service) {
            *p = service->next_queued;
            break;
        }
    }
    kraken_mutation_set_remove_service(engine->set, service->id);
    service_unpublish(engine, service);
    kraken__engine_schedule_pass(engine);
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
        kraken__engine_step_interrupt(e, n, reason ? reason : "service interrupted");
        n->replan = true;
        kraken__engine_mark_dirty(e, n);
        count++;
    }
    kraken__engine_schedule_pass(e);
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

int kraken_service_declare_mutation(kraken_service *service, const kraken_mutation_decl *caller)
{
    int rc = service_entry(service, "service_declare_mutation");
    if (rc < 0)
        return rc;
    if (!caller)
        return kraken__err(KRAKEN_EINVAL, "service_declare_mutation: service and decl are required");
    kraken_mutation_decl current; /* the caller's version, read into this library's struct */
    if ((rc = kraken__mutation_decl_read(caller, &current)) < 0)
        return kraken__err_prefix(rc, "kraken_service_declare_mutation");
    const kraken_mutation_decl *decl = &current;
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
    /* the pass sees the new generation and replans */
    kraken__engine_schedule_pass(service->engine);
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
    kraken__engine_schedule_pass(e); /* a new generation: every node is planned again */
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
        kraken__engine_publish_discovery(e, node_id, svc->id, canonical, value);
    } else {
        /* Publish the stored form (typed enum, parsed text). */
        kraken_value stored = KRAKEN_VALUE_INIT;
        if (kraken_store_get_value(e->store, KRAKEN_DSC, node_id, canonical, &stored) == 0)
            kraken__engine_publish_discovery(e, node_id, svc->id, canonical, &stored);
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
    enode *n = kraken__engine_node_find(svc->engine, node_id);
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
    kraken__engine_publish_mutation(e, KRAKEN_MUTATION_FAILED, node_id, service->id, mutation_id,
                     reason ? reason : "failed");
    kraken__engine_node_fail(e, n, str_printf("%s/%s failed: %s", service->id, mutation_id,
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
