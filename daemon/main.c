/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * main.c: kraken-daemon (SPEC 9), the reference kraken instance on
 * libkraken's public API. It reads its config (config.c), creates the engine
 * on one libevent loop, loads and persists the state file (state.c), runs the
 * REST API (rest.c) and, when built with it, the websocket event stream as
 * in-process modules (kraken/module.h) whose service instances are on its own
 * node (the table inproc_modules below; services.c runs the other modules),
 * joins the sync tree (root, or child with -parent), and stops cleanly on
 * SIGTERM/SIGINT: state saved, sockets closed, everything freed.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#ifdef KD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif
#ifdef KD_HAVE_WEBSOCKET
#include "websocket.h"
#endif

#include "kd.h"
#include "services.h"

#define KRAKEN_IFACE_IP_URL "type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Ip/Ip"

typedef struct daemon_ctx {
    kd_config cfg;
    struct event_base *base;
    kraken_engine *engine;
    kraken_sync *sync;
    kd_state *state;
    kd_rest *rest;           /* service "restapi" (also in rests): READY, the exit code */
    kd_rest **rests;         /* every instance of module restapi, config's and Cfg's too */
    size_t n_rests;
    kd_metrics *metrics;
    kd_api api;
    struct event *sig_term, *sig_int, *sig_hup;
    struct event *watchdog;  /* systemd WatchdogSec=: WATCHDOG=1 at half the interval */
    kraken_subscription *events;
    char *token;
    char *api_host; /* from -ipapi (default 127.0.0.1) */
    int api_port;   /* from -ipapi (default 3141) */
#ifdef KD_HAVE_WEBSOCKET
    kd_websocket **websockets; /* every instance of module websocket (the daemon's own, the
                                  one of /ws, -wsport and /metrics, is in d->api's hooks) */
    size_t n_websockets;
#endif
    kd_services *services; /* module socket, module processes, loadable modules */
    kd_inproc_watch *inproc_watch; /* runs restapi/websocket instances that appear in Cfg */
    uid_t *module_uids;
} daemon_ctx;

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The one line a failed start leaves: "kraken-daemon: <reason>". */
static int fail(const char *fmt, ...)
{
    char reason[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    fprintf(stderr, KD_PROGRAM ": %s\n", reason);
    return -1;
}

static void notify(daemon_ctx *d, const char *state)
{
#ifdef KD_HAVE_SYSTEMD
    if (d->cfg.sdnotify) {
        int rc = sd_notify(0, state);
        if (rc < 0)
            kd_log(KRAKEN_LOG_WARNING, "daemon", "sd_notify: %s", strerror(-rc));
        else if (rc == 0)
            kd_log(KRAKEN_LOG_WARNING, "daemon", "-sdnotify: NOTIFY_SOCKET is not set");
    }
#else
    (void)d;
    (void)state;
#endif
}

/* Thousands of nodes and clients need descriptors: take what the hard limit allows. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t before = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            kd_log(KRAKEN_LOG_WARNING, "daemon", "cannot raise the open-file limit: %s",
                   strerror(errno));
            return;
        }
    }
    kd_log(KRAKEN_LOG_INFO, "daemon", "open-file limit %llu (was %llu, hard limit %llu)",
           (unsigned long long)rl.rlim_cur, (unsigned long long)before,
           (unsigned long long)rl.rlim_max);
}

/* Read a bearer token file; on error a one-line reason in @p err. */
static int read_token(const char *path, char **out, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(err, errlen, "%s: cannot open the API token file: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fileno(fp), &sb) == 0 && (sb.st_mode & 077))
        kd_log(KRAKEN_LOG_WARNING, "restapi", "%s: the token file is readable by others "
                                              "(mode %03o); chmod 600 it",
               path, (unsigned)(sb.st_mode & 0777));
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
                 buf[n - 1] == '\t'))
        buf[--n] = '\0';
    if (n < 16) {
        snprintf(err, errlen, "%s: the API token must be at least 16 characters", path);
        return -1;
    }
    if (strpbrk(buf, " \t\r\n")) {
        snprintf(err, errlen, "%s: the API token must be one line without blanks", path);
        return -1;
    }
    if (!(*out = strdup(buf))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* ---- the self node ------------------------------------------------------------------------- */

static int set_self_text(daemon_ctx *d, kraken_state_kind kind, const char *url, const char *text)
{
    int rc = kraken_store_set_text(kraken_engine_store(d->engine), kind,
                                   kraken_engine_self_id(d->engine), url, text);
    if (rc < 0) {
        fail("self node %s: %s", url, kraken_error_last());
        kraken_error_clear();
    }
    return rc;
}

/* -ip describes the kraken interface of the self node (an IPv4 address; names are left out). */
static int describe_self(daemon_ctx *d)
{
    const char *ip = d->cfg.ip ? d->cfg.ip : "127.0.0.1";
    kraken_value v = KRAKEN_VALUE_INIT;
    if (kraken_url_parse_value(KRAKEN_IFACE_IP_URL, ip, &v) < 0) {
        kraken_error_clear();
        kd_log(KRAKEN_LOG_NOTICE, "daemon", "-ip %s is not an IPv4 address: the self node's "
                                            "kraken interface is not described", ip);
        return 0;
    }
    kraken_value_clear(&v);
    if (set_self_text(d, KRAKEN_CFG, KRAKEN_IFACE_IP_URL, ip) < 0 ||
        set_self_text(d, KRAKEN_DSC, KRAKEN_IFACE_IP_URL, ip) < 0)
        return -1;
    return 0;
}

/*
 * The REST listener's Cfg config: -ipapi when given, else what Cfg has (the
 * state file, or the parent for a child), else the default. An absent config
 * later (a parent's Cfg without one) also means the -ipapi address.
 */
static int configure_restapi(daemon_ctx *d)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    bool have = kraken_store_get_value(kraken_engine_store(d->engine), KRAKEN_CFG,
                                       kraken_engine_self_id(d->engine),
                                       "/Services/restapi/Config", &v) == 0 &&
                v.type == KRAKEN_T_RECORD;
    kraken_value_clear(&v);
    kraken_error_clear();
    if (d->cfg.ipapi || !have) {
        char text[512];
        snprintf(text, sizeof text,
                 "{\"@type\": \"type.googleapis.com/restapi.Config\", \"addr\": \"%s\", "
                 "\"port\": %d}",
                 d->api_host, d->api_port);
        if (set_self_text(d, KRAKEN_CFG, "/Services/restapi/Config", text) < 0)
            return -1;
    }
    return 0;
}

static int parse_ipapi(daemon_ctx *d)
{
    int port = -1;
    if (kd_addr_split(d->cfg.ipapi ? d->cfg.ipapi : "127.0.0.1", &d->api_host, &port) < 0 ||
        !*d->api_host)
        return fail("-ipapi '%s': expected ADDR or ADDR:PORT", d->cfg.ipapi);
    d->api_port = port < 0 ? KD_REST_DEFAULT_PORT : port;
    return 0;
}

static bool cfg_state_known(daemon_ctx *d, const char *service_id)
{
    char url[256];
    snprintf(url, sizeof url, "/Services/%s/State", service_id);
    kraken_value v = KRAKEN_VALUE_INIT;
    bool known = kraken_store_get_value(kraken_engine_store(d->engine), KRAKEN_CFG,
                                        kraken_engine_self_id(d->engine), url, &v) == 0 &&
                 v.type == KRAKEN_T_ENUM && v.v.i != KRAKEN_SERVICE_UNKNOWN;
    kraken_value_clear(&v);
    kraken_error_clear();
    return known;
}

/*
 * A service instance that names a module the daemon cannot run itself (not in-process, no
 * command, no DIR/<module>.so) waits for an external process: say so, with what was missing,
 * since a forgotten moduledir or a misspelt module name otherwise looks like a module that is
 * merely slow to connect.
 */
static bool is_inproc_module(const char *module);

static void warn_module_not_run(const daemon_ctx *d, const kd_service_cfg *s)
{
    const char *dir = d->cfg.moduledir;
    char why[512];
    if (!s->module || s->command || s->disable || is_inproc_module(s->module))
        return;
    if (dir)
        snprintf(why, sizeof why, "%s/%s.so does not exist", dir, s->module);
    else
        snprintf(why, sizeof why, "no -module-dir (moduledir) is given to load %s.so from",
                 s->module);
    kd_log(KRAKEN_LOG_WARNING, "daemon",
           "serviceinstances.%s: module '%s' is not built in, has no command and %s; the service "
           "waits for an external module process to connect%s",
           s->id, s->module, why, d->services ? "" : " (and no module socket is open: "
                                                    "give -module-socket)");
}

/* serviceinstances: disable services, disable mutations, override timeouts. */
static int apply_service_config(daemon_ctx *d)
{
    for (size_t i = 0; i < d->cfg.n_services; i++) {
        const kd_service_cfg *s = &d->cfg.services[i];
        char url[256];
        snprintf(url, sizeof url, "/Services/%s/State", s->id);
        /*
         * A service that is not here yet (an external module) finds its Cfg state and its
         * mutation overrides waiting when it registers.
         */
        if (!kraken_engine_find_service(d->engine, s->id)) {
            kd_log(KRAKEN_LOG_NOTICE, "daemon",
                   "serviceinstances.%s: no such service instance yet; its settings apply when "
                   "it registers",
                   s->id);
            warn_module_not_run(d, s);
        } else if (!s->disable && set_self_text(d, KRAKEN_CFG, url, "RUN") < 0)
            return -1;
        if (s->disable && set_self_text(d, KRAKEN_CFG, url, "STOP") < 0)
            return -1;
        for (size_t j = 0; j < s->n_mutations; j++) {
            const kd_mutation_cfg *m = &s->mutations[j];
            if (m->disable && kraken_engine_mutation_disable(d->engine, s->id, m->id, true) < 0)
                return fail("serviceinstances.%s.mutations.%s: %s", s->id, m->id,
                            kraken_error_last());
            if (m->has_timeout &&
                kraken_engine_mutation_set_timeout(d->engine, s->id, m->id,
                                                   (uint32_t)m->timeout_ms) < 0)
                return fail("serviceinstances.%s.mutations.%s: %s", s->id, m->id,
                            kraken_error_last());
        }
    }
    return 0;
}

static bool for_service_manager(const kd_services_options *so, const kd_service_cfg *s);

/* serviceinstances with a command or a loadable module: the service manager (services.c). */
static int start_services(daemon_ctx *d)
{
    const kd_config *c = &d->cfg;
    char err[1024] = "";
    size_t n_uids = 0;
    if (kd_services_options_parse_uids(c->moduleuids, &d->module_uids, &n_uids, err,
                                       sizeof err) < 0)
        return fail("%s", err);
    kd_services_options so = {.socket_path = c->modulesocket, .allowed_uids = d->module_uids,
                              .n_allowed_uids = n_uids, .module_dir = c->moduledir,
                              .grace_ms = c->modulegrace_ms,
                              .max_crashes = (unsigned)c->modulemaxcrashes,
                              .backoff_initial_ms = c->modulerestart_ms};
    bool needed = c->modulesocket != NULL;
    for (size_t i = 0; i < c->n_services; i++)
        needed |= !c->services[i].disable && for_service_manager(&so, &c->services[i]);
    if (!needed)
        return 0;
    if (kd_services_new(&d->services, d->engine, d->base, &so, err, sizeof err) < 0)
        return fail("%s", err);
    for (size_t i = 0; i < c->n_services; i++) {
        const kd_service_cfg *s = &c->services[i];
        if (for_service_manager(&so, s) && kd_services_add(d->services, s, err, sizeof err) < 0)
            return fail("%s", err);
    }
    return 0;
}

/* ---- start, run, stop ---------------------------------------------------------------------- */

/*
 * A SYNC event's line, or nothing when the fact is in the log already. The library logs join
 * refusals and session ends itself, through the log callback (kd_log_engine), with the peer's
 * address: the JOIN_REFUSED and NEIGHBOR_DOWN events that repeat them are not logged again.
 * NEIGHBOR_UP always follows a JOIN_ACCEPTED for the same peer. What remains is logged once:
 * a join, and nodes under a child turning stale or fresh.
 */
static void log_sync_event(const kraken_event *ev, const char *id)
{
    int level;
    const char *what;
    switch (ev->kind) {
    case KRAKEN_SYNC_JOIN_ACCEPTED: level = KRAKEN_LOG_NOTICE; what = "join accepted"; break;
    case KRAKEN_SYNC_ID_CONFLICT: level = KRAKEN_LOG_WARNING; what = "node id conflict"; break;
    case KRAKEN_SYNC_NODES_STALE: level = KRAKEN_LOG_NOTICE; what = "nodes stale"; break;
    case KRAKEN_SYNC_NODES_FRESH: level = KRAKEN_LOG_NOTICE; what = "nodes fresh"; break;
    default: return; /* NEIGHBOR_UP, NEIGHBOR_DOWN, JOIN_REFUSED: see above */
    }
    /* The library's messages name the peer; without one, say what happened to whom. */
    if (ev->message && *ev->message)
        kd_log(level, "sync", "%s", ev->message);
    else
        kd_log(level, "sync", "%s: %s", what, id);
}

/* What an operator wants in the log: sync links, mutation steps, failures. */
static void on_event(const kraken_event *ev, void *userdata)
{
    (void)userdata;
    char id[KRAKEN_UUID_STRLEN + 1];
    kraken_uuid_format(&ev->node_id, id);
    if (ev->type == KRAKEN_EVENT_SYNC) {
        log_sync_event(ev, id);
    } else if (ev->type == KRAKEN_EVENT_STATE_MUTATION) {
        static const char *what[] = {"mutate", "interrupt", "failed", "done"};
        int level = ev->kind == KRAKEN_MUTATION_FAILED      ? KRAKEN_LOG_WARNING
                    : ev->kind == KRAKEN_MUTATION_INTERRUPT ? KRAKEN_LOG_NOTICE
                                                            : KRAKEN_LOG_INFO;
        kd_log(level, "engine", "%s %s %s/%s%s%s", ev->kind >= 0 && ev->kind < 4 ? what[ev->kind]
                                                                               : "mutation",
               id, ev->service_id ? ev->service_id : "", ev->mutation_id ? ev->mutation_id : "",
               ev->message ? ": " : "", ev->message ? ev->message : "");
    }
}

static void on_signal(evutil_socket_t sig, short what, void *userdata)
{
    (void)what;
    daemon_ctx *d = userdata;
    kd_log(KRAKEN_LOG_NOTICE, "daemon", "%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    notify(d, "STOPPING=1");
    event_base_loopexit(d->base, NULL);
}

/* SIGHUP: take a new API token from the token file (rotation without a restart). */
static void on_sighup(evutil_socket_t sig, short what, void *userdata)
{
    (void)sig;
    (void)what;
    daemon_ctx *d = userdata;
    if (!d->cfg.apitokenfile) {
        kd_log(KRAKEN_LOG_NOTICE, "daemon", "SIGHUP: no -api-token file to reload");
        return;
    }
    char *token = NULL, err[1024];
    if (read_token(d->cfg.apitokenfile, &token, err, sizeof err) < 0) {
        kd_log(KRAKEN_LOG_ERROR, "restapi", "SIGHUP: token not reloaded, the previous one stays: %s",
               err);
        return;
    }
    bool set = true;
    for (size_t i = 0; set && i < d->n_rests; i++)
        set = kd_rest_set_token(d->rests[i], token) == 0;
    if (!set) {
        kd_log(KRAKEN_LOG_ERROR, "restapi", "SIGHUP: token not reloaded: out of memory");
    } else {
        kd_log(KRAKEN_LOG_NOTICE, "restapi", "SIGHUP: API token reloaded from %s",
               d->cfg.apitokenfile);
#ifdef KD_HAVE_WEBSOCKET
        for (size_t i = 0; !d->cfg.apiopenreads && i < d->n_websockets; i++) {
            if (kd_websocket_set_token(d->websockets[i], token) < 0)
                kd_log(KRAKEN_LOG_ERROR, "websocket", "SIGHUP: token not set: %s",
                       kraken_error_last());
        }
#endif
        free(d->token);
        d->token = token;
        token = NULL;
    }
    free(token);
}

#ifdef KD_HAVE_SYSTEMD
/* The loop is alive if this timer runs: a hung daemon stops pinging and systemd restarts it. */
static void on_watchdog(evutil_socket_t fd, short what, void *userdata)
{
    (void)fd;
    (void)what;
    notify(userdata, "WATCHDOG=1");
}

static void start_watchdog(daemon_ctx *d)
{
    uint64_t usec = 0;
    if (!d->cfg.sdnotify || sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return;
    struct timeval tv = {(time_t)(usec / 2 / 1000000), (suseconds_t)(usec / 2 % 1000000)};
    d->watchdog = event_new(d->base, -1, EV_PERSIST, on_watchdog, d);
    if (!d->watchdog || event_add(d->watchdog, &tv) < 0) {
        kd_log(KRAKEN_LOG_WARNING, "daemon", "cannot arm the systemd watchdog timer");
        return;
    }
    kd_log(KRAKEN_LOG_INFO, "daemon", "systemd watchdog: pinging every %llu ms",
           (unsigned long long)(usec / 2000));
}
#endif

static void on_rest_started(void *userdata, bool ok)
{
    daemon_ctx *d = userdata;
    if (!ok)
        return;
    char id[KRAKEN_UUID_STRLEN + 1];
    kd_log(KRAKEN_LOG_NOTICE, "daemon", "ready: node %s, %s, REST port %u%s",
           kraken_uuid_format(kraken_engine_self_id(d->engine), id),
           d->cfg.parent ? "child" : "root", (unsigned)kd_rest_port(d->rest),
           kraken_engine_frozen(d->engine) ? ", frozen" : "");
    notify(d, "READY=1");
#ifdef KD_HAVE_SYSTEMD
    start_watchdog(d);
#endif
}

#ifdef KD_HAVE_WEBSOCKET
static uint16_t websocket_port(void *userdata)
{
    return kd_websocket_port(userdata);
}

static void websocket_metrics(void *userdata, FILE *out)
{
    kd_websocket_stats s;
    kd_websocket_get_stats(userdata, &s);
    const struct {
        const char *name, *type, *help;
        uint64_t value;
    } m[] = {
        {"kraken_websocket_clients", "gauge", "Websocket clients connected now.", s.clients},
        {"kraken_websocket_accepted_total", "counter", "Websocket handshakes completed.",
         s.accepted},
        {"kraken_websocket_rejected_total", "counter", "Websocket handshakes refused.",
         s.rejected},
        {"kraken_websocket_events_sent_total", "counter", "Events queued to websocket clients.",
         s.events_sent},
        {"kraken_websocket_dropped_slow_total", "counter",
         "Websocket clients dropped for not keeping up.", s.dropped_slow},
        {"kraken_websocket_closed_bad_input_total", "counter",
         "Websocket clients closed for malformed input.", s.closed_bad_input},
        {"kraken_websocket_bus_dropped_total", "counter",
         "Events the bus dropped before the websocket saw them.", s.bus_dropped},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        fprintf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", m[i].name, m[i].help, m[i].name,
                m[i].type, m[i].name, (unsigned long long)m[i].value);
}
#endif

/* ---- in-process modules: restapi and websocket ------------------------------------------- */

/* Keep an instance, to be stopped and freed with the daemon. */
static int keep_rest(daemon_ctx *d, kd_rest *rest)
{
    kd_rest **grown = realloc(d->rests, (d->n_rests + 1) * sizeof *grown);
    if (!grown)
        return -1;
    grown[d->n_rests++] = rest;
    d->rests = grown;
    return 0;
}

/* Module restapi: an instance with the daemon's listen default, access policy and routes. */
static int add_restapi(void *ctx, const char *service_id, char *err, size_t errlen)
{
    daemon_ctx *d = ctx;
    const kd_config *c = &d->cfg;
    bool primary = strcmp(service_id, KD_REST_SERVICE_ID) == 0;
    kd_rest_options ro = {.service_id = service_id, .default_addr = d->api_host,
                          .default_port = d->api_port, .token = d->token,
                          .insecure = c->apiinsecure, .open_reads = c->apiopenreads,
                          .timeout_ms = c->apitimeout_ms, .max_body = c->apimaxbody,
                          .started = primary ? on_rest_started : NULL, .started_userdata = d};
    kd_rest *rest = NULL;
    if (kd_rest_new(&rest, &d->api, d->base, &ro) < 0) {
        snprintf(err, errlen, "restapi: %s",
                 *kraken_error_last() ? kraken_error_last() : "out of memory");
        kraken_error_clear();
        return -1;
    }
    if (keep_rest(d, rest) < 0) {
        kd_rest_free(rest);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (primary)
        d->rest = rest;
    return 0;
}

#ifdef KD_HAVE_WEBSOCKET
static int keep_websocket(daemon_ctx *d, kd_websocket *ws)
{
    kd_websocket **grown = realloc(d->websockets, (d->n_websockets + 1) * sizeof *grown);
    if (!grown)
        return -1;
    grown[d->n_websockets++] = ws;
    d->websockets = grown;
    return 0;
}

/* Module websocket: an instance on the REST API's address, as the original. */
static int add_websocket(void *ctx, const char *service_id, char *err, size_t errlen)
{
    daemon_ctx *d = ctx;
    const kd_config *c = &d->cfg;
    bool primary = strcmp(service_id, KD_WEBSOCKET_SERVICE_ID) == 0;
    kd_websocket *ws = NULL;
    int rc = 0;
    if (primary && c->wsport >= 0)
        rc = kd_websocket_preset_port(d->engine, c->wsport);
    /* Its port comes from its Cfg config; the messages name the module ("websocket: ..."). */
    if (rc == 0)
        rc = kd_websocket_new_instance(&ws, d->engine, d->base, d->api_host, service_id,
                                       primary /* its busy port fails the start */);
    /* The stream only reads: it needs the token when the REST API's reads do. */
    if (rc == 0 && d->token && !c->apiopenreads &&
        (rc = kd_websocket_set_token(ws, d->token)) < 0)
        kraken_error_set(rc, "websocket: %s", kraken_error_last());
    if (rc == 0 && keep_websocket(d, ws) < 0)
        rc = kraken_error_set(KRAKEN_ENOMEM, "out of memory");
    if (rc < 0) {
        snprintf(err, errlen, "%s", kraken_error_last());
        kraken_error_clear();
        kd_websocket_free(ws);
        return -1;
    }
    if (primary) {
        d->api.websocket_port = websocket_port;
        d->api.websocket_userdata = ws;
        d->api.metrics_hook = websocket_metrics;
        d->api.metrics_userdata = ws;
    }
    return 0;
}
#endif

/*
 * The daemon's in-process modules. A service instance naming one of them (the config's
 * serviceinstances.<id>.module without a command, or Cfg /Services/<id>/Module) runs
 * in-process through kraken_module_new(); "restapi" and "websocket" always do.
 */
static const kd_inproc_module inproc_modules[] = {
    {&kd_rest_module, add_restapi},
#ifdef KD_HAVE_WEBSOCKET
    {&kd_websocket_module, add_websocket},
#endif
};
#define N_INPROC_MODULES (sizeof inproc_modules / sizeof inproc_modules[0])

static bool is_inproc_module(const char *module)
{
    return kd_inproc_find(inproc_modules, N_INPROC_MODULES, module) != NULL;
}

/* Run the daemon's own instance @p service_id of in-process module @p module. */
static int start_inproc(daemon_ctx *d, const char *module, const char *service_id)
{
    char err[1024] = "";
    const kd_inproc_module *m = kd_inproc_find(inproc_modules, N_INPROC_MODULES, module);
    if (!m || m->add(d, service_id, err, sizeof err) < 0)
        return fail("%s", m ? err : "no such in-process module");
    return 0;
}

/* A service instance the service manager runs (not one of the in-process modules above). */
static bool for_service_manager(const kd_services_options *so, const kd_service_cfg *s)
{
    if (!s->command && kd_inproc_find(inproc_modules, N_INPROC_MODULES, s->module))
        return false;
    return kd_services_wants(so, s);
}

static int start_sync(daemon_ctx *d)
{
    const kd_config *c = &d->cfg;
    if (!c->parent && !c->secretfile && !c->syncinsecure) {
        kd_log(KRAKEN_LOG_NOTICE, "sync",
               "no -secret FILE: sync is off (children cannot join this root)");
        return 0;
    }
    if (c->syncinsecure)
        kd_log(KRAKEN_LOG_WARNING, "sync",
               "-sync-insecure: sync runs with a fixed, public key; anyone on the network can "
               "forge state. Use -secret FILE outside demos.");
    kraken_sync_options so = KRAKEN_SYNC_OPTIONS_INIT;
    so.listen_addr = c->ip;
    so.port = (uint16_t)c->syncport;
    so.parent_addr = c->parent;
    so.secret_file = c->secretfile;
    so.insecure = c->syncinsecure && !c->secretfile;
    if (kraken_sync_new(&d->sync, d->engine, d->base, &so) < 0) {
        fail("sync: %s", kraken_error_last());
        kraken_error_clear();
        return -1;
    }
    kd_log(KRAKEN_LOG_NOTICE, "sync", "listening on %s port %u%s%s", c->ip ? c->ip : "0.0.0.0",
           (unsigned)kraken_sync_port(d->sync), c->parent ? ", parent " : "",
           c->parent ? c->parent : "");
    d->api.sync = d->sync;
    return 0;
}

static int start(daemon_ctx *d)
{
    kd_config *c = &d->cfg;
    char err[1024] = "";
    if (parse_ipapi(d) < 0)
        return -1;
    raise_fd_limit();
    if (c->apitokenfile && read_token(c->apitokenfile, &d->token, err, sizeof err) < 0)
        return fail("%s", err);
    if (c->schemadir && kd_schemas_load_dir(c->schemadir, err, sizeof err) < 0)
        return fail("%s", err);
    if (!(d->base = event_base_new()))
        return fail("cannot create the event loop");
    /* Before anything can say READY: a SIGTERM right after READY must stop cleanly. */
    d->sig_term = evsignal_new(d->base, SIGTERM, on_signal, d);
    d->sig_int = evsignal_new(d->base, SIGINT, on_signal, d);
    d->sig_hup = evsignal_new(d->base, SIGHUP, on_sighup, d);
    if (!d->sig_term || !d->sig_int || !d->sig_hup || evsignal_add(d->sig_term, NULL) < 0 ||
        evsignal_add(d->sig_int, NULL) < 0 || evsignal_add(d->sig_hup, NULL) < 0)
        return fail("cannot install signal handlers");

    kraken_engine_options eo = KRAKEN_ENGINE_OPTIONS_INIT;
    if (c->id && kraken_uuid_parse(&eo.self_id, c->id) < 0)
        return fail("-id '%s': %s", c->id, kraken_error_last());
    if (!c->id && kraken_uuid_generate(&eo.self_id) < 0)
        return fail("cannot generate a node id: %s", kraken_error_last());
    eo.start_frozen = c->freeze;
    if (kraken_engine_new(&d->engine, d->base, NULL, &eo) < 0)
        return fail("engine: %s", kraken_error_last());
    kraken_engine_set_log(d->engine, c->loglevel, kd_log_engine, NULL, NULL);
    kraken_subscribe_options so = {
        .version = KRAKEN_SUBSCRIBE_OPTIONS_VERSION,
        .types = KRAKEN_EVENT_MASK(KRAKEN_EVENT_SYNC) |
                 KRAKEN_EVENT_MASK(KRAKEN_EVENT_STATE_MUTATION)};
    if (kraken_bus_subscribe(kraken_engine_bus(d->engine), &so, on_event, d, NULL, &d->events) <
        0)
        return fail("engine: %s", kraken_error_last());

    if (kd_metrics_new(&d->metrics) < 0)
        return fail("out of memory");
    d->api.engine = d->engine;
    d->api.store = kraken_engine_store(d->engine);
    d->api.metrics = d->metrics;

    /* The state file may hold the configs of the in-process modules' instances. */
    if (kd_inproc_register_schemas(inproc_modules, N_INPROC_MODULES, err, sizeof err) < 0)
        return fail("%s", err);
    if (start_inproc(d, "restapi", KD_REST_SERVICE_ID) < 0)
        return -1;
    if (start_services(d) < 0)
        return -1;
    if (kd_state_open(&d->state, d->engine, d->base, c->statefile, c->persistdelay_ms, err,
                      sizeof err) < 0)
        return fail("%s", err);
    d->api.state = d->state;
    if (describe_self(d) < 0 || configure_restapi(d) < 0 ||
        set_self_text(d, KRAKEN_CFG, "/Services/restapi/State", "RUN") < 0)
        return -1;
#ifdef KD_HAVE_WEBSOCKET
    if (start_inproc(d, "websocket", KD_WEBSOCKET_SERVICE_ID) < 0)
        return -1;
#endif
    /* Other instances of these modules that the config or the loaded Cfg names, or later Cfg. */
    if (kd_inproc_add_named(inproc_modules, N_INPROC_MODULES, d, d->engine, c, err,
                            sizeof err) < 0)
        return fail("%s", err);
    if (kd_inproc_watch_new(&d->inproc_watch, inproc_modules, N_INPROC_MODULES, d,
                            d->engine) < 0)
        return fail("engine: %s", kraken_error_last());
    /* The engine's own "sync" service runs unless the config or the state file says otherwise. */
    if (kraken_engine_find_service(d->engine, "sync") && !cfg_state_known(d, "sync") &&
        set_self_text(d, KRAKEN_CFG, "/Services/sync/State", "RUN") < 0)
        return -1;
    if (apply_service_config(d) < 0)
        return -1;
    if (start_sync(d) < 0)
        return -1;
    /* A state file or a config can leave the restapi disabled: then nothing else says READY. */
    const kd_service_cfg *rs = kd_config_service(c, "restapi");
    if (rs && rs->disable)
        on_rest_started(d, true);

    return 0;
}

static void stop(daemon_ctx *d)
{
    for (size_t i = 0; i < d->n_rests; i++) /* writes answered by the last loop iteration */
        kd_rest_commit(d->rests[i]);
    kd_services_stop(d->services); /* module processes first: no orphans, their Dsc STOP */
    if (d->state && kd_state_flush(d->state) == 0)
        kd_log(KRAKEN_LOG_INFO, "state", "state saved");
    kd_state_close(d->state); /* before anything removes services from the self node */
    kraken_sync_free(d->sync);
    kraken_subscription_remove(d->events);
    kd_inproc_watch_free(d->inproc_watch);
#ifdef KD_HAVE_WEBSOCKET
    for (size_t i = 0; i < d->n_websockets; i++)
        kd_websocket_free(d->websockets[i]);
    free(d->websockets);
#endif
    kraken_engine_free(d->engine);
    kd_services_free(d->services);
    free(d->module_uids);
    for (size_t i = 0; i < d->n_rests; i++)
        kd_rest_free(d->rests[i]);
    free(d->rests);
    kd_metrics_free(d->metrics);
    if (d->sig_term)
        event_free(d->sig_term);
    if (d->sig_int)
        event_free(d->sig_int);
    if (d->sig_hup)
        event_free(d->sig_hup);
    if (d->watchdog)
        event_free(d->watchdog);
    if (d->base)
        event_base_free(d->base);
    libevent_global_shutdown();
    free(d->token);
    free(d->api_host);
    kd_config_clear(&d->cfg);
}

/* ---- one-shot key actions: -write-secret, -write-node-key ------------------------------------ */

/*
 * The Cfg tree of state file @p path (ids and parentIds only) into @p store. Only the tree
 * matters for a key, and a state file the daemon wrote holds config types (restapi.Config,
 * those of -schemas and modules) a full load would need registered first.
 */
static int load_cfg_tree(const char *path, kraken_store *store)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, KD_PROGRAM ": -write-node-key: %s: cannot open: %s\n", path,
                strerror(errno));
        return -1;
    }
    char *text = NULL;
    size_t cap = 0, len = 0;
    for (size_t n = 1; n > 0; len += n) {
        if (cap - len < 65536) {
            char *grown = realloc(text, cap = cap * 2 + 65536);
            if (!grown)
                break;
            text = grown;
        }
        n = fread(text + len, 1, cap - len - 1, fp);
    }
    bool read_ok = text && !ferror(fp) && feof(fp);
    int read_errno = errno;
    fclose(fp);
    cJSON *doc = read_ok ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    const cJSON *nodes = cJSON_IsArray(doc) ? doc : cJSON_GetObjectItem(doc, "nodes");
    if (!cJSON_IsArray(nodes)) {
        fprintf(stderr, KD_PROGRAM ": -write-node-key: %s: %s%s\n", path,
                !read_ok ? "cannot read: " : !doc ? "invalid JSON" : "no \"nodes\" list",
                !read_ok ? strerror(text ? read_errno : ENOMEM) : "");
        cJSON_Delete(doc);
        return -1;
    }
    int i = 0, rc = 0;
    for (const cJSON *n = nodes->child; n && rc == 0; n = n->next, i++) {
        const cJSON *id = cJSON_GetObjectItem(n, "id");
        const cJSON *parent = cJSON_GetObjectItem(n, "parentId");
        char json[160], source[64];
        snprintf(json, sizeof json, "{\"id\": \"%.40s\", \"parentId\": \"%.40s\"}",
                 cJSON_IsString(id) ? id->valuestring : "",
                 cJSON_IsString(parent) ? parent->valuestring : "");
        snprintf(source, sizeof source, "node %d", i);
        kraken_node *node = NULL;
        rc = kraken_node_from_json(json, strlen(json), source, &node);
        if (rc == 0)
            rc = kraken_store_create(store, node);
        kraken_node_free(node);
        if (rc < 0) {
            fprintf(stderr, KD_PROGRAM ": -write-node-key: %s: %s\n", path, kraken_error_last());
            kraken_error_clear();
        }
    }
    cJSON_Delete(doc);
    return rc < 0 ? -1 : 0;
}

/* -write-node-key ID:FILE: the key of node ID, derived from -secret along -state's Cfg tree. */
static int write_node_key(const kd_config *c)
{
    const char *arg = c->write_node_key, *colon = strchr(arg, ':');
    char id_text[KRAKEN_UUID_STRLEN + 1];
    kraken_uuid id;
    size_t id_len = colon ? (size_t)(colon - arg) : 0;
    if (!colon || !colon[1] || id_len > KRAKEN_UUID_STRLEN) {
        fprintf(stderr, KD_PROGRAM ": -write-node-key '%s': want ID:FILE\n", arg);
        return 2;
    }
    memcpy(id_text, arg, id_len);
    id_text[id_len] = '\0';
    if (kraken_uuid_parse(&id, id_text) < 0) {
        fprintf(stderr, KD_PROGRAM ": -write-node-key: invalid node id '%s'\n", id_text);
        kraken_error_clear();
        return 2;
    }
    if (!c->secretfile || !c->statefile) {
        fprintf(stderr, KD_PROGRAM ": -write-node-key needs -secret (the cluster secret) and "
                        "-state (the Cfg node list)\n");
        return 2;
    }
    kraken_store *store = NULL;
    if (kraken_store_new(&store) < 0) {
        fprintf(stderr, KD_PROGRAM ": -write-node-key: %s\n", kraken_error_last());
        return 1;
    }
    if (load_cfg_tree(c->statefile, store) < 0) {
        kraken_store_free(store);
        return 1;
    }
    int rc = kraken_sync_write_node_key(c->secretfile, store, &id, colon + 1);
    if (rc < 0) {
        /* File errors name their file; a node missing from the Cfg tree (or a loop in it) is
           the state file's fault: name that. */
        bool tree = rc == KRAKEN_ENOTFOUND || rc == KRAKEN_EINVAL;
        fprintf(stderr, KD_PROGRAM ": -write-node-key: %s%s%s\n", tree ? c->statefile : "",
                tree ? ": " : "", kraken_error_last());
        kraken_error_clear();
    }
    kraken_store_free(store);
    return rc < 0 ? 1 : 0;
}

/* Run the key actions the command line asked for; the exit code. */
static int write_keys(const kd_config *c)
{
    if (c->write_secret && kraken_sync_write_secret(c->write_secret) < 0) {
        fprintf(stderr, KD_PROGRAM ": -write-secret: %s\n", kraken_error_last());
        kraken_error_clear();
        return 1;
    }
    return c->write_node_key ? write_node_key(c) : 0;
}

int main(int argc, char **argv)
{
    daemon_ctx d;
    memset(&d, 0, sizeof d);
    kd_config_defaults(&d.cfg);
    char err[1024];
    if (kd_config_parse(&d.cfg, argc, argv, err, sizeof err) < 0) {
        fprintf(stderr, KD_PROGRAM ": %s\n", err);
        kd_config_clear(&d.cfg);
        return 2;
    }
    if (d.cfg.help || d.cfg.version || d.cfg.printrc) {
        if (d.cfg.help)
            kd_config_usage(stdout);
        else if (d.cfg.version)
            printf(KD_PROGRAM " %s (libkraken %s)\n", KRAKEN_VERSION_STRING, kraken_version());
        else
            kd_config_print(&d.cfg, stdout);
        kd_config_clear(&d.cfg);
        return 0;
    }
    if (d.cfg.write_secret || d.cfg.write_node_key) {
        int code = write_keys(&d.cfg);
        kd_config_clear(&d.cfg);
        return code;
    }
#ifndef KD_HAVE_SYSTEMD
    if (d.cfg.sdnotify) {
        fprintf(stderr, KD_PROGRAM ": -sdnotify: this build has no libsystemd\n");
        kd_config_clear(&d.cfg);
        return 2;
    }
#endif
    kd_log_setup(d.cfg.loglevel, d.cfg.noprefix);
    /* A client that hangs up mid-answer must not kill the daemon. */
    signal(SIGPIPE, SIG_IGN);

    int code = 1;
    bool ran = start(&d) == 0;
    if (ran) {
        event_base_dispatch(d.base);
        code = kd_rest_start_failed(d.rest) ? 1 : 0;
    }
    stop(&d);
    if (ran) /* last: after the state is saved and every module and listener has stopped */
        kd_log(KRAKEN_LOG_NOTICE, "daemon", "stopped");
    return code;
}
