/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * kd.h: the pieces of kraken-daemon (SPEC 9), shared between its files.
 *
 * The daemon is a program on libkraken's public API only: config.c reads the
 * command line and config files, log.c writes the log, state.c loads and
 * persists the Cfg state file, rest.c serves the REST API on evhttp (routes.c
 * answers the requests, independent of the transport so it can be fuzzed),
 * main.c ties them to one event loop.
 */
#ifndef KD_H
#define KD_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <kraken/kraken.h>

struct event_base;

#define KD_PROGRAM "kraken-daemon"
#define KD_REST_DEFAULT_PORT 3141

/* ---- config (config.c) --------------------------------------------------------------------- */

/** serviceinstances.<svc>.mutations.<id> */
typedef struct kd_mutation_cfg {
    char *id;
    bool disable;
    bool has_timeout; /* an omitted timeout keeps the module's default */
    uint64_t timeout_ms;
} kd_mutation_cfg;

/** serviceinstances.<id> */
typedef struct kd_service_cfg {
    char *id;
    bool disable;
    char *module;
    kd_mutation_cfg *mutations;
    size_t n_mutations;
    /* external module process (services.c): command line, environment, working directory */
    char *command;   /* NULL: not an external process */
    char **args;     /* argv[1..] */
    size_t n_args;
    char **env;      /* "NAME=VALUE", added to the daemon's environment */
    size_t n_env;
    char *cwd;
} kd_service_cfg;

/** The effective configuration: defaults < config file < flags. */
typedef struct kd_config {
    /* the original's keys */
    bool freeze;
    char *id;        /* self id; NULL: generated */
    char *ip;        /* sync address; also the self node's kraken interface */
    char *ipapi;     /* REST listen address ("addr" or "addr:port") */
    int wsport;      /* websocket port; -1: its Cfg config's (3142 when none) */
    int loglevel;    /* 0..9 */
    char *parent;    /* parent address: child mode */
    bool noprefix;
    bool sdnotify;
    char *statefile;
    kd_service_cfg *services;
    size_t n_services;
    /* beyond the original */
    char *secretfile;     /* cluster secret for sync */
    bool syncinsecure;    /* sync without a secret (warned at every start) */
    int syncport;         /* sync UDP/TCP port (31415; 0 picks one) */
    char *schemadir;      /* schema description files loaded before the state */
    char *apitokenfile;   /* bearer token for the REST API */
    bool apiinsecure;     /* REST on a non-loopback address without a token */
    bool apiopenreads;    /* with a token: GETs need none */
    uint64_t apitimeout_ms;  /* idle / slow-client timeout */
    uint64_t apimaxbody;     /* request body limit in bytes */
    uint64_t persistdelay_ms; /* debounce of state-file writes */
    char *modulesocket;   /* module socket for external modules (services.c) */
    char *moduledir;      /* directory of loadable modules (NAME.so) */
    char *moduleuids;     /* other uids allowed on the module socket: "1001,1002" */
    uint64_t modulegrace_ms; /* SIGTERM -> SIGKILL grace for module processes */
    int modulemaxcrashes;    /* crashes in a row before a module service is ERROR */
    uint64_t modulerestart_ms; /* first restart delay of a crashed module (doubling) */
    /* command, not config */
    char *config_path;
    bool printrc, version, help;
    char *write_secret;   /* -write-secret FILE: make a cluster secret and exit */
    char *write_node_key; /* -write-node-key ID:FILE: make a node's sync key and exit */
} kd_config;

/** Fill @p cfg with the defaults. */
void kd_config_defaults(kd_config *cfg);
void kd_config_clear(kd_config *cfg);
/**
 * Parse the command line (and the config file it names) into @p cfg.
 * Returns 0, or -1 with a one-line reason in @p err.
 */
int kd_config_parse(kd_config *cfg, int argc, char **argv, char *err, size_t errlen);
/** Load a YAML or JSON config file over @p cfg. -1 with "FILE:LINE:COL: reason" in @p err. */
int kd_config_load_file(kd_config *cfg, const char *path, char *err, size_t errlen);
/** Print the config as YAML ("---" first), as -printrc does. */
void kd_config_print(const kd_config *cfg, FILE *out);
void kd_config_usage(FILE *out);
const kd_service_cfg *kd_config_service(const kd_config *cfg, const char *id);

#include "duration.h" /* kd_duration_parse, kd_duration_format */

/* ---- log (log.c) --------------------------------------------------------------------------- */

void kd_log_setup(int max_level, bool noprefix);
int kd_log_level(void);
void kd_log(int level, const char *subsystem, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/** A kraken_log_fn writing to the daemon's log. */
void kd_log_engine(int level, const char *subsystem, const char *message, void *userdata);

/* ---- state (state.c) ----------------------------------------------------------------------- */

typedef struct kd_state kd_state;

/**
 * Load @p path (if it exists) and replay its journal ("<path>.journal") into
 * @p engine's store: nodes are created, a node with the engine's self id is
 * merged into the self node; then the state file is rewritten whole.
 * Afterwards every Cfg change is appended to the journal @p delay_ms after it
 * happened (kd_state_flush(): at once, durably) and the state file is
 * rewritten atomically shortly after the changes stop. @p path NULL: no
 * persistence.
 */
int kd_state_open(kd_state **out, kraken_engine *engine, struct event_base *base,
                  const char *path, uint64_t delay_ms, char *err, size_t errlen);
/** Make pending changes durable now. 0 when nothing was pending or the write succeeded. */
int kd_state_flush(kd_state *state);
/** Flush, rewrite the state file (no journal left), stop listening. NULL-safe. */
void kd_state_close(kd_state *state);
/** State-file rewrites and journal appends so far (for /metrics). */
uint64_t kd_state_saves(const kd_state *state);
uint64_t kd_state_journal_appends(const kd_state *state);

/** Load every "*.json" schema description in @p dir, in name order. */
int kd_schemas_load_dir(const char *dir, char *err, size_t errlen);

/**
 * JSON merge (RFC 7396) of @p patch into @p target, except that the node
 * lists "extensions" (keyed by "@type") and "services" (keyed by "id") merge
 * element by element. Both are cJSON objects; @p target is modified.
 */
struct cJSON;
int kd_json_merge_node(struct cJSON *target, const struct cJSON *patch);

/* ---- REST API (routes.c, rest.c) ----------------------------------------------------------- */

/** What a route handler needs from the daemon. */
typedef struct kd_api {
    kraken_engine *engine;
    kraken_store *store;
    kd_state *state;         /* may be NULL */
    /*
     * false: kd_rest_dispatch() makes a successful write durable before it returns.
     * true: it sets kd_response.flush_pending instead, and the caller flushes once for a
     * batch of answers before it sends them (group commit, rest.c).
     */
    bool defer_flush;
    kraken_sync *sync;       /* may be NULL */
    struct kd_metrics *metrics;
    uint16_t (*websocket_port)(void *userdata); /* NULL: from the self node's Cfg */
    void *websocket_userdata;
    /** More /metrics lines (e.g. the websocket's counters); NULL: none. */
    void (*metrics_hook)(void *userdata, FILE *out);
    void *metrics_userdata;
} kd_api;

/** One request, independent of the HTTP library. */
typedef struct kd_request {
    const char *method;  /* "GET", ... */
    const char *path;    /* decoded path, no query */
    const char *body;
    size_t body_len;
    const char *host;    /* Host header without port (for /ws) */
} kd_request;

/** One answer: status, content type and a malloc'ed body. */
typedef struct kd_response {
    int status;
    const char *content_type;
    char *body;
    size_t body_len;
    const char *allow;   /* Allow header for 405 */
    const char *route;   /* route template for metrics ("/cfg/node/{id}") */
    bool write;          /* the route changes state (needs the token) */
    bool flush_pending;  /* with kd_api.defer_flush: flush the state before sending */
} kd_response;

/** Find the route of a request without running it: sets route, write, allow; 0 if found. */
int kd_route_lookup(const kd_request *req, kd_response *resp);
/** Answer a request. Always fills @p resp (free its body with free()). */
void kd_rest_dispatch(kd_api *api, const kd_request *req, kd_response *resp);
/** Replace an answer by the 500 of a write that could not be made durable. */
void kd_rest_reply_unsaved(kd_response *resp);

typedef struct kd_metrics kd_metrics;
int kd_metrics_new(kd_metrics **out);
void kd_metrics_free(kd_metrics *m);
void kd_metrics_observe(kd_metrics *m, const char *method, const char *route, int status,
                        double seconds);
/** Prometheus text exposition of everything the daemon knows. *out malloc'ed. */
int kd_metrics_render(kd_metrics *m, kd_api *api, char **out, size_t *len);

typedef struct kd_rest kd_rest;

/** The service id of kraken-daemon's REST API instance (the one that says READY). */
#define KD_REST_SERVICE_ID "restapi"

/**
 * The in-process module "restapi" (rest.c, on kraken/module.h): config schema
 * restapi.Config, handlers start/stop/config_changed. Its instances are made by
 * kd_rest_new(), which gives kraken_module_new() the daemon's context.
 */
extern const kraken_module_desc kd_rest_module;

/** REST access policy, from the config. */
typedef struct kd_rest_options {
    const char *service_id;     /* NULL: KD_REST_SERVICE_ID */
    const char *default_addr;   /* from -ipapi */
    int default_port;
    const char *token;          /* NULL: no token */
    bool insecure;              /* allow non-loopback without a token */
    bool open_reads;
    uint64_t timeout_ms;
    uint64_t max_body;
    /**
     * Called once, after the first start attempt (@p ok: listening). An instance with
     * this hook is the daemon's own API: when its first start fails, the loop stops.
     */
    void (*started)(void *userdata, bool ok);
    void *started_userdata;
} kd_rest_options;

/**
 * Run module kd_rest_module as service instance opts->service_id of the self
 * node (kraken_module_new(), which registers restapi.Config); its Cfg config
 * gives address and port. The listener is (re)bound when the service starts
 * or its config changes. With a started hook, a first start that cannot listen
 * stops the loop (kd_rest_start_failed()): a daemon without its API fails fast;
 * otherwise the service is ERROR with the reason.
 */
int kd_rest_new(kd_rest **out, kd_api *api, struct event_base *base, const kd_rest_options *opts);
/** Replace the bearer token (a copy is kept); only when the API was started with one. */
int kd_rest_set_token(kd_rest *rest, const char *token);
/** Make queued write answers durable and send them (before closing the state). */
void kd_rest_commit(kd_rest *rest);
/** Close the listener and release the service handle; call after kraken_engine_free(). */
void kd_rest_free(kd_rest *rest);
/** Bound port, 0 while not listening. */
uint16_t kd_rest_port(const kd_rest *rest);
/** True once the first start attempt finished (bound or failed). */
bool kd_rest_start_failed(const kd_rest *rest);

/** Whether @p addr is a loopback address (127.0.0.0/8, ::1, "localhost"). */
bool kd_addr_is_loopback(const char *addr);
/** Split "host", "host:port", "[v6]:port" into host (malloc'ed) and port (-1 if absent). */
int kd_addr_split(const char *text, char **host, int *port);

#endif
