/**
 * @file kraken/engine.h
 * @brief The state engine: store + services + planner + event bus on the
 *        caller's libevent loop (SPEC 3, 4.4, 5).
 *
 * The engine never owns the loop: it arms events on the caller's
 * event_base. It owns a store (or borrows one), a mutation set and a bus.
 * Every callback into a service runs from the loop, never from inside the
 * API call that caused it, so services may call the engine freely.
 */
#ifndef KRAKEN_ENGINE_H
#define KRAKEN_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "log.h"
#include "mutation.h"
#include "node.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

typedef struct kraken_engine kraken_engine;
typedef struct kraken_service kraken_service;

#define KRAKEN_ENGINE_OPTIONS_VERSION 1

/** Engine options; start from KRAKEN_ENGINE_OPTIONS_INIT. */
typedef struct kraken_engine_options {
    unsigned version;              /**< KRAKEN_ENGINE_OPTIONS_VERSION */
    kraken_uuid self_id;           /**< this instance's node id (zero: generated) */
    bool start_frozen;             /**< roots start thawed, children frozen */
    uint32_t backoff_initial_ms;   /**< first retry delay after a failure (1000) */
    uint32_t backoff_max_ms;       /**< cap of the doubling delay (300000) */
    uint32_t max_failures;         /**< failures in a row before "stuck" (5) */
    uint32_t service_start_ms;     /**< wait for a service to reach RUN (10000) */
    uint32_t no_path_retry_ms;     /**< re-check "no path" nodes this often (0: only on change) */
    double timeout_scale;          /**< multiply mutation timeouts (tests); 1.0 */
    bool no_sync_service;          /**< do not add the built-in "sync" service (false) */
} kraken_engine_options;

#define KRAKEN_ENGINE_OPTIONS_INIT                                             \
    {KRAKEN_ENGINE_OPTIONS_VERSION, {{0}}, false, 1000, 300000, 5, 10000, 0, 1.0, false}

/**
 * Create an engine on @p base. @p store may be NULL (the engine creates and
 * owns one) or a store the caller owns and keeps alive longer than the engine;
 * nodes already in it are driven too. The self node (id = opts->self_id) is
 * created if the store lacks it; its Dsc gets PhysState POWER_ON and, unless
 * opts->start_frozen, RunState SYNC when they are unknown (the instance runs).
 * Unless opts->no_sync_service, a service "sync" (module "sync") is added that
 * owns INITtoSYNC (/RunState INIT->SYNC, requires /PhysState POWER_ON, CHILD,
 * 90 s, fail_to /PhysState PHYS_HANG) and may discover /RunState; the sync
 * protocol completes that step by discovering RunState SYNC for the child.
 */
int kraken_engine_new(kraken_engine **out, struct event_base *base, kraken_store *store,
                      const kraken_engine_options *opts);
/**
 * Interrupts nothing, frees services (destroy hooks), bus, plans. NULL-safe.
 * May be called from a service callback: the engine then makes no further
 * callbacks and no store access (a borrowed store may be freed at once), and
 * is freed when that callback returns.
 */
void kraken_engine_free(kraken_engine *engine);

kraken_store *kraken_engine_store(kraken_engine *engine);
kraken_bus *kraken_engine_bus(kraken_engine *engine);
/**
 * The engine's mutation set. Declare through kraken_service_declare_mutation()
 * so the engine replans at once; changes made on the set directly are seen by
 * the engine's next pass (the next change of any node, or a retry timer).
 */
kraken_mutation_set *kraken_engine_mutations(kraken_engine *engine);
const kraken_uuid *kraken_engine_self_id(const kraken_engine *engine);

/* ---- services ---------------------------------------------------------- */

/**
 * A step dispatched to a service. Pointers are valid during the callback; @c cfg
 * and @c dsc are the stored nodes (not copies): read them before writing to the
 * store from the callback. For a deleted node they are empty nodes with its id.
 */
typedef struct kraken_mutation_request {
    kraken_uuid node_id;
    const char *service_id;
    const char *mutation_id;
    const kraken_node *cfg; /**< the node's Cfg */
    const kraken_node *dsc; /**< the node's Dsc */
} kraken_mutation_request;

/** Handlers of a service instance; any may be NULL. */
typedef struct kraken_service_ops {
    /** Start: the module reports RUN (kraken_service_set_state()) when ready. */
    void (*start)(kraken_service *service, void *userdata);
    /** Stop: the module reports STOP when stopped. */
    void (*stop)(kraken_service *service, void *userdata);
    /** Perform a mutation step; report through discoveries or kraken_service_fail(). */
    void (*mutate)(kraken_service *service, const kraken_mutation_request *request,
                   void *userdata);
    /** Abandon an in-flight step (timeout, Cfg change, node deleted). */
    void (*interrupt)(kraken_service *service, const kraken_mutation_request *request,
                      void *userdata);
    /** The service's Cfg config changed; @p config is its new config record (may be NONE). */
    void (*config_changed)(kraken_service *service, const kraken_value *config, void *userdata);
} kraken_service_ops;

/**
 * Add service instance @p service_id of module @p module to this instance's
 * self node (Cfg and Dsc /Services/<id>, Dsc state STOP). @p destroy (may be
 * NULL) is called with @p userdata when the service is removed or the engine freed.
 */
int kraken_engine_add_service(kraken_engine *engine, const char *service_id, const char *module,
                              const kraken_service_ops *ops, void *userdata,
                              void (*destroy)(void *userdata), kraken_service **out);
/** Remove a service: interrupts its steps, removes its mutations. NULL-safe. */
void kraken_engine_remove_service(kraken_engine *engine, kraken_service *service);
kraken_service *kraken_engine_find_service(kraken_engine *engine, const char *service_id);

const char *kraken_service_id(const kraken_service *service);
kraken_engine *kraken_service_engine(kraken_service *service);

/** Declare a mutation of this service (see kraken_mutation_set_add()). */
int kraken_service_declare_mutation(kraken_service *service, const kraken_mutation_decl *decl);
/**
 * Declare a URL this service may discover. With @p value_name, also register
 * a named value (e.g. "NODE_INIT" for /RunState = INIT, given as @p value_text).
 * The service's own /Services/<id>/State is always discoverable.
 */
int kraken_service_declare_discoverable(kraken_service *service, const char *url,
                                        const char *value_name, const char *value_text);

/**
 * Report a discovery: node @p node_id's @p url now has @p value (written to
 * Dsc; a DISCOVERY event is published). Refused (Dsc unchanged) when the URL
 * was not declared discoverable, the value does not fit the schema, or the
 * node is unknown.
 */
int kraken_service_discover(kraken_service *service, const kraken_uuid *node_id, const char *url,
                            const kraken_value *value);
/** Discovery by a registered value name (see kraken_service_declare_discoverable()). */
int kraken_service_discover_named(kraken_service *service, const kraken_uuid *node_id,
                                  const char *url, const char *value_name);
/** Discovery with the value as text. */
int kraken_service_discover_text(kraken_service *service, const kraken_uuid *node_id,
                                 const char *url, const char *text);
/** Report the service's own state (RUN when ready, STOP, ERROR with a message). */
int kraken_service_set_state(kraken_service *service, kraken_service_state state,
                             const char *error_msg);
/**
 * Report that the in-flight step @p mutation_id on @p node_id failed, with a
 * reason: a FAILED event, then failure handling as for a timeout (back-off,
 * stuck after max_failures) but without recording fail_to.
 * KRAKEN_ESTATE when that step is not in flight for this service.
 */
int kraken_service_fail(kraken_service *service, const kraken_uuid *node_id,
                        const char *mutation_id, const char *reason);

/**
 * Log one line on behalf of a service through the engine's log callback
 * (kraken_engine_set_log()); the subsystem is the service id. printf-style.
 * A no-op when no callback is installed or @p level is above its max_level.
 * Control characters in the formatted line become spaces (one line, always).
 */
void kraken_service_log(kraken_service *service, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- node control ------------------------------------------------------ */

/** Plan status of a node. */
typedef enum kraken_plan_state {
    KRAKEN_PLAN_CONVERGED = 0, /**< Dsc matches Cfg on every mutator: nothing to do */
    KRAKEN_PLAN_RUNNING = 1,   /**< a step is in flight (or waiting for its service) */
    KRAKEN_PLAN_PASSIVE = 2,   /**< the current step runs elsewhere; following discoveries */
    KRAKEN_PLAN_BACKOFF = 3,   /**< waiting to retry after a failure */
    KRAKEN_PLAN_STUCK = 4,     /**< too many failures in a row; see reason */
    KRAKEN_PLAN_NO_PATH = 5,   /**< no mutation sequence reaches Cfg */
    KRAKEN_PLAN_FROZEN = 6     /**< the engine is frozen */
} kraken_plan_state;

/**
 * Snapshot of a node's plan; release with kraken_plan_status_clear(). The plan
 * is kept while it holds: after the last step, @c current == @c n_steps.
 */
typedef struct kraken_plan_status {
    kraken_plan_state state;
    size_t n_steps;
    char **steps;          /**< "service/mutation" per step */
    size_t current;        /**< index of the current step (n_steps when none) */
    unsigned failures;     /**< failures in a row */
    char *reason;          /**< last failure / stuck / no-path reason, or NULL */
} kraken_plan_status;

int kraken_engine_node_status(kraken_engine *engine, const kraken_uuid *node_id,
                              kraken_plan_status *out);
void kraken_plan_status_clear(kraken_plan_status *status);
const char *kraken_plan_state_name(kraken_plan_state state);

/**
 * Clear a node's stuck state, back-off and failure count, and replan it. (Any
 * Cfg change of the node does the same.) The failure count also ends when the
 * step that failed last succeeds, or when the node converges: a recovery step
 * alone (e.g. HANGtoOFF) does not end it, so a step that always hangs ends stuck.
 */
int kraken_engine_reset_node(kraken_engine *engine, const kraken_uuid *node_id);

/** Freeze: dispatch nothing, arm no timers. Thaw: replan every node. */
void kraken_engine_freeze(kraken_engine *engine);
void kraken_engine_thaw(kraken_engine *engine);
bool kraken_engine_frozen(const kraken_engine *engine);

/**
 * Install (or, with @p fn NULL, remove) the engine's log callback: errors that
 * happen inside the loop (engine, sync) are reported through it with their
 * cause, at levels <= @p max_level (0..9, see log.h). @p destroy (may be NULL)
 * is called with @p userdata when the callback is replaced or the engine freed.
 */
int kraken_engine_set_log(kraken_engine *engine, int max_level, kraken_log_fn fn, void *userdata,
                          void (*destroy)(void *userdata));

/** Graph JSON for the whole set (node NULL) or for one node with its plan highlighted. */
int kraken_engine_graph_json(kraken_engine *engine, const kraken_uuid *node_id, char **out);

#ifdef __cplusplus
}
#endif
#endif
