/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file kraken/module.h
 * @brief Modules (SPEC 7): one description of a module, and the calls a
 *        module makes, the same whether it runs in-process, from a shared
 *        object, or as an external process over the module socket.
 *
 * A module is described once by a ::kraken_module_desc: its name, the
 * schemas it brings (config and extensions), the URLs it discovers, the
 * mutations it performs and its handlers. A running instance of a module is
 * a *service instance* with an id (SPEC 7.3); one module may run as several
 * instances with different ids and configs. The handle of an instance is a
 * ::kraken_module, made by one of:
 *
 * - kraken_module_new(): in-process, as a service of an engine;
 * - kraken_module_library_open() + kraken_module_new(): the same for a
 *   module loaded from a shared object (symbol ::KRAKEN_MODULE_ENTRY_SYMBOL);
 * - kraken_module_connect(): in another process, connected to a kraken
 *   instance's module socket (a ::kraken_module_server).
 *
 * The module's own code sees no difference: its handlers get the
 * ::kraken_module and it answers with kraken_module_discover(),
 * kraken_module_report(), kraken_module_fail(), kraken_module_query(),
 * kraken_module_update_cfg(), kraken_module_set_state() and kraken_module_log().
 *
 * Threads: a module handle belongs to the thread running its event_base.
 * Errors: negative ::kraken_err, message in kraken_error_last().
 */
#ifndef KRAKEN_MODULE_H
#define KRAKEN_MODULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine.h"
#include "error.h"
#include "event.h"
#include "mutation.h"
#include "node.h"
#include "store.h"
#include "types.h"

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

/**
 * ABI version of ::kraken_module_desc; a shared object built for another is refused.
 * 2: kraken_mutation_decl starts with a version (0.2.0).
 */
#define KRAKEN_MODULE_ABI_VERSION 2
/** The one symbol a loadable module exports: `const kraken_module_desc *kraken_module_entry(void)`. */
#define KRAKEN_MODULE_ENTRY_SYMBOL "kraken_module_entry"
/** Version of the module socket protocol (proto/module.proto). */
#define KRAKEN_MODULE_PROTOCOL_VERSION 1
/** Default bound of one protocol frame (bytes, length prefix excluded). */
#define KRAKEN_MODULE_MAX_FRAME (4u * 1024u * 1024u)

/** A running module instance (in-process or connected). */
typedef struct kraken_module kraken_module;
/** A shared object holding a module. */
typedef struct kraken_module_library kraken_module_library;
/** The instance side of the module socket. */
typedef struct kraken_module_server kraken_module_server;

/** A URL the module discovers, optionally with a named value (SPEC 3). */
typedef struct kraken_module_discoverable {
    const char *url;        /**< canonical URL or glob */
    const char *value_name; /**< e.g. "NODE_INIT"; NULL: none */
    const char *value_text; /**< the named value as text (with value_name) */
} kraken_module_discoverable;

/**
 * Handlers of a module; any may be NULL. @p userdata is the instance's
 * (kraken_module_set_userdata(), or the one given to kraken_module_new()).
 * They run from the loop, never from inside a call of the module.
 */
typedef struct kraken_module_handlers {
    /**
     * Start with @p config (the service's Cfg config record, or NONE). Call
     * kraken_module_set_state(RUN) when ready (now or later). Without a start
     * handler the instance is RUN at once.
     */
    void (*start)(kraken_module *module, const kraken_value *config, void *userdata);
    /** Stop; the instance is STOP when it returns (or the module reports STOP itself). */
    void (*stop)(kraken_module *module, void *userdata);
    /** The service's Cfg config changed while running (pushed to external modules too). */
    void (*config_changed)(kraken_module *module, const kraken_value *config, void *userdata);
    /** Perform a step; answer with kraken_module_report() or kraken_module_fail(). */
    void (*mutate)(kraken_module *module, const kraken_mutation_request *request,
                   void *userdata);
    /** Abandon a step (timeout, Cfg change, node deleted, module reconnect). */
    void (*interrupt)(kraken_module *module, const kraken_mutation_request *request,
                      void *userdata);
    /** Events matching kraken_module_desc.event_types / event_url_pattern. */
    void (*event)(kraken_module *module, const kraken_event *event, void *userdata);
} kraken_module_handlers;

/**
 * Everything about a module. Pointers must stay valid while instances of it
 * exist (a static const descriptor is the usual form).
 */
typedef struct kraken_module_desc {
    unsigned abi_version;        /**< KRAKEN_MODULE_ABI_VERSION */
    const char *name;            /**< module name, e.g. "pxe" */
    /**
     * Schema description (kraken_schema_load_json() format) of the module's
     * config record and extensions; NULL: none. Registered when an instance
     * starts (identical re-registration is harmless).
     */
    const char *schemas_json;
    const char *config_schema;   /**< name of the config record's schema, or NULL */
    const kraken_module_discoverable *discoverables;
    size_t n_discoverables;
    /**
     * Declarations written with KRAKEN_MUTATION_DECL_INIT. Element 0's
     * @c version gives the size of every element; all must carry the same
     * version (refused otherwise, naming the index).
     */
    const kraken_mutation_decl *mutations;
    size_t n_mutations;
    kraken_module_handlers handlers;
    unsigned event_types;        /**< KRAKEN_EVENT_MASK bits for handlers.event (0: none) */
    const char *event_url_pattern; /**< glob on event URLs; NULL: all */
} kraken_module_desc;

/* ---- in-process instances ------------------------------------------------------------------ */

/**
 * Run @p desc as service instance @p service_id of @p engine: registers its
 * schemas, adds the service (SPEC 7.3 lifecycle: Cfg /Services/<id>/State RUN
 * starts it), declares its discoverables and mutations, subscribes its event
 * handler. @p userdata (may be NULL) is passed to the handlers; @p destroy
 * (may be NULL) releases it when the instance is freed. Nothing is added when
 * anything is refused (the message names the service and the item).
 */
int kraken_module_new(kraken_module **out, kraken_engine *engine, const kraken_module_desc *desc,
                      const char *service_id, void *userdata, void (*destroy)(void *userdata));
/**
 * Free an instance (NULL-safe): an in-process one leaves its engine (steps
 * interrupted, mutations removed); a connected one closes its connection.
 * The userdata's destroy hook runs. Allowed after the engine's free.
 */
void kraken_module_free(kraken_module *module);

/** The descriptor the instance runs. */
const kraken_module_desc *kraken_module_descriptor(const kraken_module *module);
/** The instance's service id. */
const char *kraken_module_service_id(const kraken_module *module);
/** Replace the instance's userdata (the previous one's destroy hook runs). */
void kraken_module_set_userdata(kraken_module *module, void *userdata,
                                void (*destroy)(void *userdata));
void *kraken_module_userdata(const kraken_module *module);
/**
 * The in-process service behind the instance; NULL for a connected one. Its
 * engine (kraken_service_engine()) is how an in-process module reaches the
 * store, the bus or the event loop; NULL once the engine was freed.
 */
kraken_service *kraken_module_service(kraken_module *module);
/**
 * Be told when an in-process instance's engine goes away first (kraken_engine_free()
 * before kraken_module_free()): @p hook runs once, from inside the engine's free, with
 * the instance's userdata. It must not call the engine; the instance's calls are refused
 * (KRAKEN_ESTATE) from then on. A module that holds its own sockets or timers closes them
 * there. Not called when the instance is freed first. NULL removes the hook.
 * KRAKEN_EINVAL for a connected instance (its connection has on_disconnect).
 */
int kraken_module_set_detach_hook(kraken_module *module,
                                  void (*hook)(kraken_module *module, void *userdata));

/* ---- calls a module makes ------------------------------------------------------------------ */

/**
 * Discover: node @p node_id's @p url now has the value @p value_text (its
 * text form, as kraken_value_format() writes it). Checked as
 * kraken_service_discover(). A connected module sends it without waiting:
 * a refusal comes back asynchronously and is logged through the log hook of
 * its connection (kraken_module_connect_options.on_error).
 */
int kraken_module_discover(kraken_module *module, const kraken_uuid *node_id, const char *url,
                           const char *value_text);
/** Discovery by a value name registered in the descriptor's discoverables. */
int kraken_module_discover_named(kraken_module *module, const kraken_uuid *node_id,
                                 const char *url, const char *value_name);
/** Answer mutation request @p request_id with a discovery (kraken_service_report()). */
int kraken_module_report(kraken_module *module, const kraken_uuid *node_id, uint64_t request_id,
                         const char *url, const char *value_text);
/** Report that mutation request @p request_id failed, with a reason (kraken_service_fail()). */
int kraken_module_fail(kraken_module *module, const kraken_uuid *node_id, uint64_t request_id,
                       const char *reason);
/** The instance's own state: RUN when ready, STOP, ERROR with @p error_msg. */
int kraken_module_set_state(kraken_module *module, kraken_service_state state,
                            const char *error_msg);
/**
 * A copy of node @p node_id's Cfg or Dsc (release with kraken_node_free()).
 * A connected module waits for the answer (at most its request timeout),
 * keeping other frames for later.
 */
int kraken_module_query(kraken_module *module, kraken_state_kind kind, const kraken_uuid *node_id,
                        kraken_node **out);
/** Set Cfg @p url of node @p node_id to @p value_text (for modules that own Cfg decisions). */
int kraken_module_update_cfg(kraken_module *module, const kraken_uuid *node_id, const char *url,
                             const char *value_text);
/** Log one line with the service id as subsystem (kraken_service_log()). printf-style. */
void kraken_module_log(kraken_module *module, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- loadable modules ---------------------------------------------------------------------- */

/** Type of the exported entry point ::KRAKEN_MODULE_ENTRY_SYMBOL. */
typedef const kraken_module_desc *(*kraken_module_entry_fn)(void);

/**
 * Load a module from shared object @p path (with a '/'), or from
 * "<dir>/<path>.so" when @p dir is given and @p path is a bare module name.
 * Refused with KRAKEN_EINVAL and a message naming the file when it cannot be
 * loaded, lacks the entry symbol, or was built for another
 * KRAKEN_MODULE_ABI_VERSION ("... built for module ABI 2, this libkraken
 * has 1"). Keep the library open while instances of its module exist.
 */
int kraken_module_library_open(kraken_module_library **out, const char *dir, const char *path);
/** The library's module descriptor (valid until the library is closed). */
const kraken_module_desc *kraken_module_library_descriptor(const kraken_module_library *lib);
/** Close (NULL-safe). The shared object stays mapped: code of a module is never unmapped. */
void kraken_module_library_close(kraken_module_library *lib);

/* ---- external module processes: the client side ------------------------------------------- */

#define KRAKEN_MODULE_CONNECT_OPTIONS_VERSION 1

/** Options of kraken_module_connect(); start from kraken_module_connect_options_init(). */
typedef struct kraken_module_connect_options {
    unsigned version;           /**< KRAKEN_MODULE_CONNECT_OPTIONS_VERSION */
    /** Socket path; NULL: $KRAKEN_MODULE_SOCKET, else /run/kraken/module.sock. */
    const char *socket_path;
    /** Service id; NULL: $KRAKEN_SERVICE_ID, else the module name. */
    const char *service_id;
    uint32_t request_timeout_ms; /**< wait for Register and Query answers (5000) */
    uint32_t max_frame;          /**< frame bound (KRAKEN_MODULE_MAX_FRAME) */
    /**
     * Called (from the loop) when the connection closes or breaks: the
     * instance then refuses calls with KRAKEN_ESTATE until
     * kraken_module_reconnect(). NULL: nothing is called.
     */
    void (*on_disconnect)(kraken_module *module, const char *reason, void *userdata);
    /** Called with asynchronous refusals of discoveries, reports, failures. */
    void (*on_error)(kraken_module *module, int code, const char *message, void *userdata);
    void *hook_userdata;        /**< passed to on_disconnect and on_error */
} kraken_module_connect_options;

/** Fill @p opts with defaults for struct version @p version (KRAKEN_EINVAL if unknown). */
int kraken_module_connect_options_init(kraken_module_connect_options *opts, unsigned version);

/**
 * Connect to a kraken instance's module socket and register @p desc as a
 * service instance there (Register, answered by Registered: waits up to
 * request_timeout_ms). Frames are then read and handlers called from @p base.
 * @p userdata / @p destroy as kraken_module_new(). Refused registration:
 * KRAKEN_EAUTH or the instance's code, with its reason.
 */
int kraken_module_connect(kraken_module **out, struct event_base *base,
                          const kraken_module_desc *desc,
                          const kraken_module_connect_options *opts, void *userdata,
                          void (*destroy)(void *userdata));
/** Connect again after a disconnect and register again (the service resumes). */
int kraken_module_reconnect(kraken_module *module);
/** True while a connected module's connection is up (always true in-process). */
bool kraken_module_connected(const kraken_module *module);

/* ---- external module processes: the instance side ----------------------------------------- */

#define KRAKEN_MODULE_SERVER_OPTIONS_VERSION 1

/** Options of kraken_module_server_new(); start from kraken_module_server_options_init(). */
typedef struct kraken_module_server_options {
    unsigned version;          /**< KRAKEN_MODULE_SERVER_OPTIONS_VERSION */
    const char *socket_path;   /**< where to listen (required); an old socket there is replaced */
    const uid_t *allowed_uids; /**< peers allowed besides the server's own uid */
    size_t n_allowed_uids;
    uint32_t max_frame;        /**< frame bound (KRAKEN_MODULE_MAX_FRAME) */
    /**
     * Limit of bytes queued towards one module before it is disconnected
     * as too slow (default 64 MiB): a stuck module never blocks the engine.
     */
    size_t max_output;
} kraken_module_server_options;

int kraken_module_server_options_init(kraken_module_server_options *opts, unsigned version);

/**
 * Listen on a Unix socket (mode 0600) for module processes of @p engine on
 * @p base. A registered connection becomes service instance <service_id>: an
 * existing service added by kraken_module_server_expect() is taken over,
 * otherwise one is added. Peers with another uid (SO_PEERCRED) than the
 * server's own or the allowed ones are refused; malformed or oversized frames
 * close that connection only. A module that disconnects has its in-flight
 * steps interrupted (INTERRUPT, then replan) and its service STOP (or ERROR
 * via the expect hooks); it may reconnect and resume. A socket file on which
 * another server listens is never replaced (KRAKEN_EEXISTS, "module socket
 * '<path>' is in use: ..."); a stale one (connect refused) is.
 */
int kraken_module_server_new(kraken_module_server **out, kraken_engine *engine,
                             struct event_base *base, const kraken_module_server_options *opts);
/** Close every connection, remove the socket file, free (NULL-safe; after the engine too). */
void kraken_module_server_free(kraken_module_server *server);
/** The socket path. */
const char *kraken_module_server_path(const kraken_module_server *server);
/** Connections open now (registered or not). */
size_t kraken_module_server_connections(const kraken_module_server *server);

/** Version of ::kraken_module_expect_hooks this header declares (1: through @c connection). */
#define KRAKEN_MODULE_EXPECT_HOOKS_VERSION 1

/**
 * Hooks of a service whose module process someone else (a service manager) runs; any may
 * be NULL. Start from KRAKEN_MODULE_EXPECT_HOOKS_INIT, which sets @c version (the rule of
 * every caller-filled struct: version 0 or a newer version is refused with KRAKEN_EINVAL).
 */
typedef struct kraken_module_expect_hooks {
    unsigned version; /**< KRAKEN_MODULE_EXPECT_HOOKS_VERSION */
    /** Cfg State went RUN: start the process (it connects and registers). */
    void (*start)(const char *service_id, void *userdata);
    /** Cfg State went STOP: stop the process (it was sent Stop first if connected). */
    void (*stop)(const char *service_id, void *userdata);
    /**
     * The module process registered (@p connected true) or its connection went away: then
     * the hook sets the service's Dsc state (INIT while it comes back, or what the process's
     * exit says), before the service's steps are interrupted and replanned.
     */
    void (*connection)(const char *service_id, bool connected, void *userdata);
} kraken_module_expect_hooks;

/** A ::kraken_module_expect_hooks initialiser with @c version set; name the hooks. */
#define KRAKEN_MODULE_EXPECT_HOOKS_INIT(...)                                                      \
    {.version = KRAKEN_MODULE_EXPECT_HOOKS_VERSION, __VA_ARGS__}

/**
 * Declare service instance @p service_id of module @p module_name whose
 * process is started by the caller: the service exists (Dsc STOP) before its
 * process connects, its start/stop go to @p hooks, and only a registration
 * with this module name is accepted for it. @p destroy releases @p userdata
 * when the server is freed or kraken_module_server_forget() is called.
 */
int kraken_module_server_expect(kraken_module_server *server, const char *service_id,
                                const char *module_name, const kraken_module_expect_hooks *hooks,
                                void *userdata, void (*destroy)(void *userdata));
/** Remove an expected service (and its connection); KRAKEN_ENOTFOUND if unknown. */
int kraken_module_server_forget(kraken_module_server *server, const char *service_id);
/** The service of @p service_id (expected or registered); NULL if none. */
kraken_service *kraken_module_server_service(kraken_module_server *server,
                                             const char *service_id);

#ifdef __cplusplus
}
#endif
#endif
