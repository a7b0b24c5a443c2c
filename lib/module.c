/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * module.c: the module API (SPEC 7) — descriptors, the calls a module makes
 * (dispatched to its backend), in-process instances on the engine's service
 * API, and modules loaded from shared objects.
 *
 * An in-process instance is a thin adapter: the engine's service ops call
 * the descriptor's handlers with the instance, and the module's calls go to
 * kraken_service_*(). A connected instance (module_client.c) has the same
 * handlers called from frames, and its calls become frames.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "module_int.h"

/* ---- descriptors --------------------------------------------------------------------------- */

int kraken__module_desc_check(const kraken_module_desc *desc, const char *where)
{
    if (!desc)
        return kraken__err(KRAKEN_EINVAL, "%s: a module descriptor is required", where);
    if (desc->abi_version != KRAKEN_MODULE_ABI_VERSION)
        return kraken__err(KRAKEN_EINVAL,
                           "%s: module descriptor for module ABI %u, this libkraken has %u", where,
                           desc->abi_version, KRAKEN_MODULE_ABI_VERSION);
    if (!desc->name || !*desc->name)
        return kraken__err(KRAKEN_EINVAL, "%s: the module descriptor has no name", where);
    if ((desc->n_discoverables && !desc->discoverables) || (desc->n_mutations && !desc->mutations))
        return kraken__err(KRAKEN_EINVAL, "%s: module '%s': a count without its array", where,
                           desc->name);
    for (size_t i = 0; i < desc->n_discoverables; i++)
        if (!desc->discoverables[i].url)
            return kraken__err(KRAKEN_EINVAL, "%s: module '%s': discoverable %zu has no URL",
                               where, desc->name, i);
    size_t stride;
    int rc = kraken__mutation_decls_check(desc->mutations, desc->n_mutations, &stride);
    if (rc < 0)
        return kraken__err_prefix(rc, "%s: module '%s'", where, desc->name);
    if (desc->event_types && !desc->handlers.event)
        return kraken__err(KRAKEN_EINVAL, "%s: module '%s': event_types without an event handler",
                           where, desc->name);
    return 0;
}

kraken_module *kraken__module_alloc(const kraken_module_desc *desc, const char *service_id,
                                    const module_backend *be, void *userdata,
                                    void (*destroy)(void *userdata))
{
    kraken_module *m = calloc(1, sizeof *m);
    if (!m || !(m->service_id = strdup(service_id))) {
        free(m);
        kraken__err(KRAKEN_ENOMEM, "out of memory");
        return NULL;
    }
    m->desc = desc;
    m->be = be;
    m->userdata = userdata;
    m->destroy = destroy;
    return m;
}

void kraken__module_parse_config(const char *service_id, const char *text, kraken_value *out)
{
    *out = (kraken_value)KRAKEN_VALUE_INIT;
    if (!text || !*text)
        return;
    char url[300];
    snprintf(url, sizeof url, "/Services/%s/Config", service_id);
    if (kraken_url_parse_value(url, text, out) < 0)
        kraken_error_clear(); /* a config of an unknown schema reads as NONE */
}

/* ---- common accessors and calls ------------------------------------------------------------ */

void kraken_module_free(kraken_module *module)
{
    if (!module || kraken__module_client_defer_free(module))
        return;
    module->be->release(module);
    if (module->destroy)
        module->destroy(module->userdata);
    free(module->service_id);
    free(module);
}

const kraken_module_desc *kraken_module_descriptor(const kraken_module *module)
{
    return module ? module->desc : NULL;
}

const char *kraken_module_service_id(const kraken_module *module)
{
    return module ? module->service_id : NULL;
}

void kraken_module_set_userdata(kraken_module *module, void *userdata,
                                void (*destroy)(void *userdata))
{
    if (!module)
        return;
    void *old = module->userdata;
    void (*old_destroy)(void *) = module->destroy;
    module->userdata = userdata;
    module->destroy = destroy;
    if (old_destroy && old != userdata)
        old_destroy(old);
}

void *kraken_module_userdata(const kraken_module *module)
{
    return module ? module->userdata : NULL;
}

kraken_service *kraken_module_service(kraken_module *module)
{
    return module ? module->service : NULL;
}

bool kraken_module_connected(const kraken_module *module)
{
    return module && module->be->connected(module);
}

static int call_check(const kraken_module *m, const kraken_uuid *node, const char *op)
{
    if (!m)
        return kraken__err(KRAKEN_EINVAL, "module_%s: a module is required", op);
    if (!node && strcmp(op, "set_state") != 0)
        return kraken__err(KRAKEN_EINVAL, "module_%s '%s': a node id is required", op,
                           m->service_id);
    return 0;
}

int kraken_module_discover(kraken_module *module, const kraken_uuid *node_id, const char *url,
                           const char *value_text)
{
    int rc = call_check(module, node_id, "discover");
    if (rc < 0)
        return rc;
    if (!url || !value_text)
        return kraken__err(KRAKEN_EINVAL, "module_discover '%s': URL and value are required",
                           module->service_id);
    return module->be->discover(module, node_id, url, value_text, NULL, 0);
}

int kraken_module_discover_named(kraken_module *module, const kraken_uuid *node_id,
                                 const char *url, const char *value_name)
{
    int rc = call_check(module, node_id, "discover_named");
    if (rc < 0)
        return rc;
    if (!url || !value_name)
        return kraken__err(KRAKEN_EINVAL,
                           "module_discover_named '%s': URL and value name are required",
                           module->service_id);
    return module->be->discover(module, node_id, url, NULL, value_name, 0);
}

int kraken_module_report(kraken_module *module, const kraken_uuid *node_id, uint64_t request_id,
                         const char *url, const char *value_text)
{
    int rc = call_check(module, node_id, "report");
    if (rc < 0)
        return rc;
    if (!url || !value_text || !request_id)
        return kraken__err(KRAKEN_EINVAL,
                           "module_report '%s': URL, value and request id are required",
                           module->service_id);
    return module->be->discover(module, node_id, url, value_text, NULL, request_id);
}

int kraken_module_fail(kraken_module *module, const kraken_uuid *node_id, uint64_t request_id,
                       const char *reason)
{
    int rc = call_check(module, node_id, "fail");
    if (rc < 0)
        return rc;
    if (!request_id)
        return kraken__err(KRAKEN_EINVAL, "module_fail '%s': a request id is required",
                           module->service_id);
    return module->be->fail(module, node_id, request_id, reason);
}

int kraken_module_set_state(kraken_module *module, kraken_service_state state,
                            const char *error_msg)
{
    int rc = call_check(module, NULL, "set_state");
    if (rc < 0)
        return rc;
    if ((int)state < KRAKEN_SERVICE_UNKNOWN || (int)state > KRAKEN_SERVICE_ERROR)
        return kraken__err(KRAKEN_EINVAL, "module_set_state '%s': bad state %d",
                           module->service_id, (int)state);
    return module->be->set_state(module, state, error_msg);
}

int kraken_module_query(kraken_module *module, kraken_state_kind kind, const kraken_uuid *node_id,
                        kraken_node **out)
{
    int rc = call_check(module, node_id, "query");
    if (rc < 0)
        return rc;
    if (!out || (kind != KRAKEN_CFG && kind != KRAKEN_DSC))
        return kraken__err(KRAKEN_EINVAL, "module_query '%s': out and a kind (CFG/DSC) are "
                                          "required",
                           module->service_id);
    *out = NULL;
    return module->be->query(module, kind, node_id, out);
}

int kraken_module_update_cfg(kraken_module *module, const kraken_uuid *node_id, const char *url,
                             const char *value_text)
{
    int rc = call_check(module, node_id, "update_cfg");
    if (rc < 0)
        return rc;
    if (!url || !value_text)
        return kraken__err(KRAKEN_EINVAL, "module_update_cfg '%s': URL and value are required",
                           module->service_id);
    return module->be->update_cfg(module, node_id, url, value_text);
}

void kraken_module_log(kraken_module *module, int level, const char *fmt, ...)
{
    if (!module || !fmt)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    module->be->log(module, level, line);
}

/* ---- in-process instances ------------------------------------------------------------------ */

static int inproc_discover(kraken_module *m, const kraken_uuid *node, const char *url,
                           const char *text, const char *name, uint64_t request_id)
{
    if (request_id)
        return kraken_service_report_text(m->service, node, request_id, url, text);
    if (name)
        return kraken_service_discover_named(m->service, node, url, name);
    return kraken_service_discover_text(m->service, node, url, text);
}

static int inproc_fail(kraken_module *m, const kraken_uuid *node, uint64_t request_id,
                       const char *reason)
{
    return kraken_service_fail(m->service, node, request_id, reason);
}

static int inproc_set_state(kraken_module *m, kraken_service_state state, const char *msg)
{
    return kraken_service_set_state(m->service, state, msg);
}

static int inproc_engine(kraken_module *m, const char *op, kraken_engine **out)
{
    *out = kraken_service_engine(m->service);
    if (!*out)
        return kraken__err(KRAKEN_ESTATE, "module_%s '%s': the engine was freed", op,
                           m->service_id);
    return 0;
}

static int inproc_query(kraken_module *m, kraken_state_kind kind, const kraken_uuid *node,
                        kraken_node **out)
{
    kraken_engine *e;
    int rc = inproc_engine(m, "query", &e);
    return rc < 0 ? rc : kraken_store_read(kraken_engine_store(e), kind, node, out);
}

static int inproc_update_cfg(kraken_module *m, const kraken_uuid *node, const char *url,
                             const char *text)
{
    kraken_engine *e;
    int rc = inproc_engine(m, "update_cfg", &e);
    return rc < 0 ? rc : kraken_store_set_text(kraken_engine_store(e), KRAKEN_CFG, node, url, text);
}

static void inproc_log(kraken_module *m, int level, const char *line)
{
    kraken_service_log(m->service, level, "%s", line);
}

static bool inproc_connected(const kraken_module *m)
{
    (void)m;
    return true;
}

static void inproc_release(kraken_module *m)
{
    m->releasing = true;
    kraken_subscription_remove(m->events);
    m->events = NULL;
    kraken_service_remove(m->service);
    m->service = NULL;
}

static const module_backend inproc_backend = {
    .what = "in-process",
    .discover = inproc_discover,
    .fail = inproc_fail,
    .set_state = inproc_set_state,
    .query = inproc_query,
    .update_cfg = inproc_update_cfg,
    .log = inproc_log,
    .connected = inproc_connected,
    .release = inproc_release,
};

/* The service's Cfg config record (NONE when unset). */
static void inproc_config(kraken_module *m, kraken_value *out)
{
    *out = (kraken_value)KRAKEN_VALUE_INIT;
    kraken_engine *e = kraken_service_engine(m->service);
    char url[300];
    snprintf(url, sizeof url, "/Services/%s/Config", m->service_id);
    if (e && kraken_store_get_value(kraken_engine_store(e), KRAKEN_CFG, kraken_engine_self_id(e),
                                    url, out) < 0)
        kraken_error_clear();
}

static void op_start(kraken_service *svc, void *userdata)
{
    (void)svc;
    kraken_module *m = userdata;
    kraken_value config;
    inproc_config(m, &config);
    m->desc->handlers.start(m, &config, m->userdata);
    kraken_value_clear(&config);
}

static void op_stop(kraken_service *svc, void *userdata)
{
    kraken_module *m = userdata;
    if (m->desc->handlers.stop)
        m->desc->handlers.stop(m, m->userdata);
    /* Stopped when the handler returns; a module that already said so changes nothing. */
    if (kraken_service_set_state(svc, KRAKEN_SERVICE_STOP, NULL) < 0)
        kraken_error_clear();
}

static void op_mutate(kraken_service *svc, const kraken_mutation_request *req, void *userdata)
{
    (void)svc;
    kraken_module *m = userdata;
    m->desc->handlers.mutate(m, req, m->userdata);
}

static void op_interrupt(kraken_service *svc, const kraken_mutation_request *req, void *userdata)
{
    (void)svc;
    kraken_module *m = userdata;
    m->desc->handlers.interrupt(m, req, m->userdata);
}

static void op_config(kraken_service *svc, const kraken_value *config, void *userdata)
{
    (void)svc;
    kraken_module *m = userdata;
    m->desc->handlers.config_changed(m, config, m->userdata);
}

/*
 * The service's destroy hook: it runs when the service is removed (by kraken_module_free(),
 * not a detach) or when the engine is freed first (a detach: the module lets go now).
 */
static void op_detached(void *userdata)
{
    kraken_module *m = userdata;
    if (m->releasing || !m->detached)
        return;
    void (*hook)(kraken_module *, void *) = m->detached;
    m->detached = NULL; /* once */
    hook(m, m->userdata);
}

int kraken_module_set_detach_hook(kraken_module *module,
                                  void (*hook)(kraken_module *module, void *userdata))
{
    if (!module)
        return kraken__err(KRAKEN_EINVAL, "module_set_detach_hook: a module is required");
    if (!module->service)
        return kraken__err(KRAKEN_EINVAL,
                           "module_set_detach_hook '%s': not an in-process instance (a connected "
                           "one has on_disconnect)",
                           module->service_id);
    module->detached = hook;
    return 0;
}

static void on_module_event(const kraken_event *ev, void *userdata)
{
    kraken_module *m = userdata;
    m->desc->handlers.event(m, ev, m->userdata);
}

/* Declare what the descriptor lists; the first refusal names the item. */
static int inproc_declare(kraken_module *m)
{
    const kraken_module_desc *d = m->desc;
    for (size_t i = 0; i < d->n_discoverables; i++) {
        const kraken_module_discoverable *dv = &d->discoverables[i];
        if (kraken_service_declare_discoverable(m->service, dv->url, dv->value_name,
                                                dv->value_text) < 0)
            return kraken__err_prefix(KRAKEN_EINVAL, "module '%s' discoverable '%s'", d->name,
                                      dv->url);
    }
    size_t stride;
    int rc = kraken__mutation_decls_check(d->mutations, d->n_mutations, &stride);
    for (size_t i = 0; rc == 0 && i < d->n_mutations; i++) {
        kraken_mutation_decl decl; /* element i at the caller's stride, as this library's struct */
        kraken__mutation_decls_get(d->mutations, stride, i, &decl);
        rc = kraken_service_declare_mutation(m->service, &decl);
        if (rc < 0)
            return kraken__err_prefix(rc, "module '%s' mutation '%s'", d->name,
                                      decl.id ? decl.id : "(no id)");
    }
    return rc;
}

int kraken_module_new(kraken_module **out, kraken_engine *engine, const kraken_module_desc *desc,
                      const char *service_id, void *userdata, void (*destroy)(void *userdata))
{
    if (out)
        *out = NULL;
    if (!out || !engine || !service_id)
        return kraken__err(KRAKEN_EINVAL, "module_new: out, engine and service id are required");
    int rc = kraken__module_desc_check(desc, "module_new");
    if (rc < 0)
        return rc;
    if (desc->schemas_json &&
        (rc = kraken_schema_load_json(desc->schemas_json, strlen(desc->schemas_json),
                                      desc->name)) < 0)
        return kraken__err_prefix(rc, "module '%s' schemas", desc->name);
    if (desc->config_schema && !kraken_schema_find(desc->config_schema))
        return kraken__err(KRAKEN_ENOTFOUND, "module '%s': config schema '%s' is not registered",
                           desc->name, desc->config_schema);
    kraken_module *m = kraken__module_alloc(desc, service_id, &inproc_backend, NULL, NULL);
    if (!m)
        return KRAKEN_ENOMEM;
    const kraken_module_handlers *h = &desc->handlers;
    kraken_service_ops ops = {
        .version = KRAKEN_SERVICE_OPS_VERSION,
        .start = h->start ? op_start : NULL,
        .stop = op_stop,
        .mutate = h->mutate ? op_mutate : NULL,
        .interrupt = h->interrupt ? op_interrupt : NULL,
        .config_changed = h->config_changed ? op_config : NULL,
    };
    rc = kraken_engine_add_service(engine, service_id, desc->name, &ops, m, op_detached,
                                   &m->service);
    if (rc == 0)
        rc = inproc_declare(m);
    if (rc == 0 && desc->event_types) {
        kraken_subscribe_options so = {.version = KRAKEN_SUBSCRIBE_OPTIONS_VERSION, .types = desc->event_types,
                                       .url_pattern = desc->event_url_pattern};
        rc = kraken_bus_subscribe(kraken_engine_bus(engine), &so, on_module_event, m, NULL,
                                  &m->events);
    }
    if (rc < 0) {
        /* Undoing the service clears the message: keep it. userdata is not ours until success. */
        char why[512];
        snprintf(why, sizeof why, "%s", kraken_error_last());
        kraken_module_free(m);
        return kraken__err(rc, "%s", why);
    }
    m->userdata = userdata;
    m->destroy = destroy;
    *out = m;
    return 0;
}

/* ---- loadable modules ---------------------------------------------------------------------- */

struct kraken_module_library {
    void *handle;
    char *path;
    const kraken_module_desc *desc;
};

static bool bare_name(const char *s)
{
    return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

int kraken_module_library_open(kraken_module_library **out, const char *dir, const char *path)
{
    if (out)
        *out = NULL;
    if (!out || !path || !*path)
        return kraken__err(KRAKEN_EINVAL, "module_library_open: out and a path are required");
    char *file = NULL;
    if (dir && bare_name(path)) {
        if (asprintf(&file, "%s/%s.so", dir, path) < 0)
            file = NULL;
    }
    else if (strchr(path, '/'))
        file = strdup(path);
    else
        return kraken__err(KRAKEN_EINVAL, "module_library_open: '%s' is a bare module name but "
                                          "no module directory was given",
                           path);
    if (!file)
        return kraken__err(KRAKEN_ENOMEM, "out of memory");
    dlerror();
    void *h = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        int rc = kraken__err(KRAKEN_EINVAL, "module %s: cannot load: %s", file,
                             why ? why : "unknown dlopen error");
        free(file);
        return rc;
    }
    kraken_module_entry_fn entry;
    *(void **)&entry = dlsym(h, KRAKEN_MODULE_ENTRY_SYMBOL);
    const kraken_module_desc *desc = entry ? entry() : NULL;
    int rc = 0;
    if (!entry)
        rc = kraken__err(KRAKEN_EINVAL, "module %s: no symbol '%s' (not a kraken module)", file,
                         KRAKEN_MODULE_ENTRY_SYMBOL);
    else if (!desc)
        rc = kraken__err(KRAKEN_EINVAL, "module %s: %s() returned no descriptor", file,
                         KRAKEN_MODULE_ENTRY_SYMBOL);
    else if (desc->abi_version != KRAKEN_MODULE_ABI_VERSION)
        rc = kraken__err(KRAKEN_EINVAL,
                         "module %s: built for module ABI %u, this libkraken has %u; rebuild it "
                         "against this libkraken",
                         file, desc->abi_version, KRAKEN_MODULE_ABI_VERSION);
    else if ((rc = kraken__module_desc_check(desc, file)) < 0)
        rc = kraken__err_prefix(rc, "module");
    kraken_module_library *lib = rc == 0 ? calloc(1, sizeof *lib) : NULL;
    if (rc == 0 && !lib)
        rc = kraken__err(KRAKEN_ENOMEM, "out of memory");
    if (rc < 0) {
        dlclose(h);
        free(file);
        return rc;
    }
    lib->handle = h;
    lib->path = file;
    lib->desc = desc;
    *out = lib;
    return 0;
}

const kraken_module_desc *kraken_module_library_descriptor(const kraken_module_library *lib)
{
    return lib ? lib->desc : NULL;
}

void kraken_module_library_close(kraken_module_library *lib)
{
    if (!lib)
        return;
    /* Not dlclose()d: a module may have left callbacks (timers, atexit, threads) behind. */
    free(lib->path);
    free(lib);
}
