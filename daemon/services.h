/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * services.h: kraken-daemon's service manager (services.c, SPEC 7.3): the
 * module socket, external module processes from serviceinstances.<id>
 * (command, args, env, cwd) and loadable modules from the module directory.
 */
#ifndef KD_SERVICES_H
#define KD_SERVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <kraken/kraken.h>

#include "kd.h"

#define KD_MODULE_SOCKET_DEFAULT "/run/kraken/module.sock"

typedef struct kd_services kd_services;

typedef struct kd_services_options {
    const char *socket_path;    /* NULL: KD_MODULE_SOCKET_DEFAULT (its directory is created) */
    const uid_t *allowed_uids;  /* other uids allowed on the socket */
    size_t n_allowed_uids;
    const char *module_dir;     /* loadable modules: <module_dir>/<module>.so */
    uint64_t grace_ms;          /* SIGTERM -> SIGKILL (modulegrace) */
    unsigned max_crashes;       /* exits in a row before ERROR (5) */
    uint64_t backoff_initial_ms; /* first restart delay, doubling (1000) */
    uint64_t backoff_max_ms;    /* (60000) */
    uint64_t healthy_ms;        /* a run this long breaks the row of crashes (30000) */
} kd_services_options;

/** Parse "1001,1002" (moduleuids); -1 with a one-line reason in @p err. */
int kd_services_options_parse_uids(const char *text, uid_t **out, size_t *n, char *err,
                                   size_t errlen);
/** Listen on the module socket and watch child processes (SIGCHLD) on @p base. */
int kd_services_new(kd_services **out, kraken_engine *engine, struct event_base *base,
                    const kd_services_options *opts, char *err, size_t errlen);
/** Whether @p svc is the manager's: a command, or a module found in the module directory. */
bool kd_services_wants(const kd_services_options *opts, const kd_service_cfg *svc);
/** Add a service instance (an external process, or a loadable module run in-process). */
int kd_services_add(kd_services *services, const kd_service_cfg *svc, char *err, size_t errlen);
/** Stop every process: SIGTERM to its process group, SIGKILL after the grace period. */
void kd_services_stop(kd_services *services);
/** Stop (if not yet), close the socket, free. NULL-safe; after the engine's free too. */
void kd_services_free(kd_services *services);
kraken_module_server *kd_services_server(kd_services *services);

/* ---- in-process modules compiled into the daemon -------------------------------------------- */

/**
 * An in-process module compiled into kraken-daemon (restapi, websocket). The
 * daemon's table of them (main.c) is consulted for each service instance that
 * its config (serviceinstances.<id>.module, no command) or the self node's Cfg
 * (/Services/<id>/Module) names: @c add runs the instance with
 * kraken_module_new(), giving the module what it needs of the daemon (engine,
 * loop, listen address, token) as its userdata.
 */
typedef struct kd_inproc_module {
    const kraken_module_desc *desc;
    /** Run service instance @p service_id; -1 with a one-line reason in @p err. */
    int (*add)(void *ctx, const char *service_id, char *err, size_t errlen);
} kd_inproc_module;

/** The table's entry for module @p module, or NULL. */
const kd_inproc_module *kd_inproc_find(const kd_inproc_module *table, size_t n,
                                       const char *module);
/** Register the table's schemas (their configs may be in the state file, loaded before). */
int kd_inproc_register_schemas(const kd_inproc_module *table, size_t n, char *err,
                               size_t errlen);
/**
 * Run every instance of a table module that @p cfg's serviceinstances or the self
 * node's Cfg names and that @p engine has no service for yet (it is added with @c add).
 */
int kd_inproc_add_named(const kd_inproc_module *table, size_t n, void *ctx,
                        kraken_engine *engine, const kd_config *cfg, char *err, size_t errlen);

typedef struct kd_inproc_watch kd_inproc_watch;
/**
 * While it lives, a service instance that appears later in the self node's Cfg with a
 * table module (its /Services/<id>/Module set, by a REST write or from the parent) is run
 * at once; a failure is logged under the service id.
 */
int kd_inproc_watch_new(kd_inproc_watch **out, const kd_inproc_module *table, size_t n,
                        void *ctx, kraken_engine *engine);
/** Stop watching (NULL-safe; after the engine's free too). Instances stay. */
void kd_inproc_watch_free(kd_inproc_watch *watch);

#endif
