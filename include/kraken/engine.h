/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file kraken/engine.h
 * @brief The state engine: store + services + planner + event bus on the
 *        caller's libevent loop (SPEC 3, 4.4, 5).
 *
 * The engine never owns the loop: it arms events on the caller's
 * event_base. It owns a store (or borrows one), a mutation set and a bus.
 * Every callback into a service runs from the loop, never from inside the
 * API call that caused it, so services may call the engine freely.
 *
 * Threads: an engine belongs to the thread that created it, which must be the
 * thread running @c base. Every call on the engine or on one of its services
 * from another thread changes nothing and fails with KRAKEN_ETHREAD (calls
 * that cannot return an error return NULL/false/nothing and leave the message).
 *
 * Lifetime: see doc/ARCHITECTURE.md "Ownership". kraken_engine_free() detaches
 * the engine's children: services (destroy hooks run), the bus's subscriptions,
 * store listeners of an owned store, and syncs. A detached handle stays valid
 * and harmless: calls on it fail with KRAKEN_ESTATE ("... was detached") and
 * its own release (kraken_service_remove(), kraken_subscription_remove(),
 * kraken_store_listener_remove(), kraken_sync_free()) only frees the handle.
 * An engine on a borrowed store is itself a child of that store: freeing the
 * store first detaches the engine the same way (kraken_engine_free() then only
 * releases the handle). Pointers the engine lends (kraken_engine_store(),
 * kraken_engine_bus(), kraken_engine_mutations(), kraken_engine_find_service()
 * for a service added without @c out) are valid while the engine lives and
 * are never freed by the caller.
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
typedef struct kraken_timer kraken_timer;

/**
 * A time source: milliseconds on a monotonic clock (any epoch). See
 * kraken_engine_options.now_ms and kraken_engine_clock_moved().
 */
typedef uint64_t (*kraken_clock_fn)(void *userdata);

/* Version 1: up to no_sync_service. Version 2 added now_ms and clock_userdata. */
#define KRAKEN_ENGINE_OPTIONS_VERSION 2

/**
 * Engine options; start from KRAKEN_ENGINE_OPTIONS_INIT or
 * kraken_engine_options_init(). @c version tells the library which fields the
 * caller's struct has: a library newer than the caller accepts every older
 * version (fields added later keep their defaults); a version it does not
 * know is refused with KRAKEN_EINVAL.
 */
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
    /* ---- since version 2 ---- */
    /**
     * The engine's clock (NULL: CLOCK_MONOTONIC). Every engine timer (step
     * timeouts, service start waits, back-off, no-path retries, and the
     * kraken_timer objects of modules) runs on it. With an injected clock no
     * timer ever waits for real time: a timer fires when the caller has moved
     * the clock past its deadline and called kraken_engine_clock_moved(). That
     * is how a test harness drives timeouts without sleeping.
     */
    kraken_clock_fn now_ms;
    void *clock_userdata;          /**< passed to now_ms */
} kraken_engine_options;

#define KRAKEN_ENGINE_OPTIONS_INIT                                             \
    {KRAKEN_ENGINE_OPTIONS_VERSION, {{0}}, false, 1000, 300000, 5, 10000, 0, 1.0, false, NULL, NULL}

/**
 * Fill @p opts with the defaults (as KRAKEN_ENGINE_OPTIONS_INIT) for struct
 * version @p version (pass KRAKEN_ENGINE_OPTIONS_VERSION). For bindings, which
 * cannot use initialiser macros. KRAKEN_EINVAL for a version this library does
 * not know (newer than it, or 0).
 */
int kraken_engine_options_init(kraken_engine_options *opts, unsigned version);

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
 * Interrupts nothing, frees services (destroy hooks), bus, plans, an owned
 * store; detaches the children the caller still holds (see above). NULL-safe.
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

/* ---- time -------------------------------------------------------------- */

/** The engine's clock now, in ms (kraken_engine_options.now_ms, or CLOCK_MONOTONIC). */
uint64_t kraken_engine_now_ms(const kraken_engine *engine);
/**
 * With an injected clock: tell the engine that its clock moved. The timers
 * whose deadline has passed fire from the loop (not from this call), in
 * deadline order (ties in the order they were armed); timers they arm that
 * are already due fire in a following loop iteration. Harmless (and useless)
 * with the default clock. KRAKEN_EINVAL when @p engine is NULL.
 */
int kraken_engine_clock_moved(kraken_engine *engine);
/**
 * With an injected clock: the earliest deadline (engine clock ms) of an armed
 * timer, engine and module timers alike, or UINT64_MAX when none is armed. A
 * harness moves its clock there to skip idle time exactly.
 */
int kraken_engine_next_deadline(const kraken_engine *engine, uint64_t *out);

/**
 * A one-shot timer on the engine's clock, for modules: with an injected clock
 * it fires when the harness moves the clock, like the engine's own timers.
 * @p fn runs from the loop; it may arm or free its timer.
 */
int kraken_timer_new(kraken_timer **out, kraken_engine *engine,
                     void (*fn)(kraken_timer *timer, void *userdata), void *userdata);
/** (Re)arm to fire @p ms after the engine's now; KRAKEN_ESTATE once the engine is freed. */
int kraken_timer_arm(kraken_timer *timer, uint64_t ms);
/** Disarm (NULL-safe; nothing happens when it is not armed). */
void kraken_timer_cancel(kraken_timer *timer);
/** True while armed and not yet fired. */
bool kraken_timer_armed(const kraken_timer *timer);
/**
 * Free (NULL-safe), also from its own callback. A timer may outlive its
 * engine: the engine's free disarms it, and only kraken_timer_free() remains.
 */
void kraken_timer_free(kraken_timer *timer);

/* ---- the mutation set as the engine applies it ----------------------------- */

/**
 * Disable (or enable again) mutation @p mutation_id of service @p service_id:
 * a disabled mutation is never planned with (nodes replan at once; an
 * in-flight step of it is interrupted when the new plan differs). May be
 * called before the mutation is declared: it applies when it is.
 */
int kraken_engine_mutation_disable(kraken_engine *e, const char *service_id,
                                   const char *mutation_id, bool disabled);
/**
 * Override the timeout of a mutation (0: none), before or after it is
 * declared. Applies to steps dispatched from now on (before timeout_scale).
 */
int kraken_engine_mutation_set_timeout(kraken_engine *e, const char *service_id,
                                       const char *mutation_id, uint32_t timeout_ms);

/**
 * The leaves of node @p node_id that the planner compares: each mutator URL
 * whose Cfg value is set and differs from Dsc, in URL order (old_value is
 * the Dsc value, new_value the Cfg goal). Release with kraken_changes_free().
 * An empty list (*n 0, *out NULL) when the node has nothing left to do.
 */
int kraken_engine_diff(kraken_engine *engine, const kraken_uuid *node_id, kraken_change **out,
                       size_t *n);

/* ---- services ---------------------------------------------------------- */

/**
 * A step dispatched to a service (and, with the same id, its interrupt).
 * Everything is valid during the callback only and nothing points into the
 * store: @c cfg and @c dsc are copies made for this request (a module may
 * write to the store from the callback; keep a node with kraken_node_copy()).
 * For a deleted node they are empty nodes with its id.
 */
typedef struct kraken_mutation_request {
    uint64_t id;                  /**< request id: unique per engine, never 0 */
    kraken_uuid node_id;
    const char *service_id;
    const char *mutation_id;
    const kraken_mutate *mutates; /**< the mutation's (url, from, to), canonical text */
    size_t n_mutates;
    const kraken_node *cfg;       /**< copy of the node's Cfg */
    const kraken_node *dsc;       /**< copy of the node's Dsc */
} kraken_mutation_request;

/**
 * Version of ::kraken_service_ops this header declares. Version 1: through
 * @c config_changed. A later version only appends members.
 */
#define KRAKEN_SERVICE_OPS_VERSION 1

/**
 * Handlers of a service instance; any may be NULL. Start from
 * KRAKEN_SERVICE_OPS_INIT, which sets @c version: a newer libkraken reads an
 * older caller's struct (handlers added later are NULL); version 0 or a
 * version newer than the library is refused with KRAKEN_EINVAL.
 */
typedef struct kraken_service_ops {
    unsigned version; /**< KRAKEN_SERVICE_OPS_VERSION */
    /** Start: the module reports RUN (kraken_service_set_state()) when ready. */
    void (*start)(kraken_service *service, void *userdata);
    /** Stop: the module reports STOP when stopped. */
    void (*stop)(kraken_service *service, void *userdata);
    /** Perform a mutation step; answer with kraken_service_report*() or kraken_service_fail(). */
    void (*mutate)(kraken_service *service, const kraken_mutation_request *request,
                   void *userdata);
    /** Abandon an in-flight step (timeout, Cfg change, node deleted). */
    void (*interrupt)(kraken_service *service, const kraken_mutation_request *request,
                      void *userdata);
    /** The service's Cfg config changed; @p config is its new config record (may be NONE). */
    void (*config_changed)(kraken_service *service, const kraken_value *config, void *userdata);
} kraken_service_ops;

/**
 * A ::kraken_service_ops initialiser with @c version set; name the handlers:
 * `kraken_service_ops ops = KRAKEN_SERVICE_OPS_INIT(.start = my_start, .mutate = my_mutate);`
 */
#define KRAKEN_SERVICE_OPS_INIT(...) {.version = KRAKEN_SERVICE_OPS_VERSION, __VA_ARGS__}

/**
 * Add service instance @p service_id of module @p module to this instance's
 * self node (Cfg and Dsc /Services/<id>, Dsc state STOP). @p ops may be NULL
 * (no handlers); its version is checked as ::kraken_service_ops says.
 * @p destroy (may be NULL) is called with @p userdata when the service is
 * removed or the engine freed. With @p out, the caller owns the handle and releases it with
 * kraken_service_remove() (before or after the engine's free); with @p out
 * NULL the service lives as long as the engine.
 */
int kraken_engine_add_service(kraken_engine *engine, const char *service_id, const char *module,
                              const kraken_service_ops *ops, void *userdata,
                              void (*destroy)(void *userdata), kraken_service **out);
/**
 * Remove a service and release its handle: interrupts its steps, removes its
 * mutations and its instance on the self node; its destroy hook runs (unless
 * the engine's free already ran it). NULL-safe; allowed after the engine's free.
 */
void kraken_service_remove(kraken_service *service);
kraken_service *kraken_engine_find_service(kraken_engine *engine, const char *service_id);

const char *kraken_service_id(const kraken_service *service);
/** The service's engine; NULL once the service was detached. */
kraken_engine *kraken_service_engine(kraken_service *service);

/**
 * Declare a mutation of this service (see kraken_mutation_set_add()). The
 * URLs it mutates become discoverable by the service (a module answers its
 * steps by discovering them). Overrides set with
 * kraken_engine_mutation_disable() / _set_timeout() apply.
 */
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
 * was not declared discoverable (or mutated by a mutation of this service),
 * the value does not fit the schema, or the node is unknown. Not tied to a
 * request: for unsolicited facts. The answer to a dispatched step goes
 * through kraken_service_report(), which refuses a late one.
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
 * Report that request @p request_id (on node @p node_id) failed, with a
 * reason: a FAILED event, then failure handling as for a timeout (back-off,
 * stuck after max_failures) but without recording fail_to.
 * KRAKEN_ESTATE, and nothing changes, when that request is not the node's
 * step in flight for this service: interrupted, timed out or answered
 * already (a late answer), or never dispatched to it.
 */
int kraken_service_fail(kraken_service *service, const kraken_uuid *node_id, uint64_t request_id,
                        const char *reason);
/**
 * Answer request @p request_id with a discovery (as kraken_service_discover(),
 * with the same checks), refused with KRAKEN_ESTATE and no change when the
 * request is no longer in flight: an external process's late answer to a
 * step that was interrupted or timed out must not look like a fresh fact.
 */
int kraken_service_report(kraken_service *service, const kraken_uuid *node_id,
                          uint64_t request_id, const char *url, const kraken_value *value);
/** kraken_service_report() with the value as text. */
int kraken_service_report_text(kraken_service *service, const kraken_uuid *node_id,
                               uint64_t request_id, const char *url, const char *text);

/**
 * Interrupt every step in flight for this service (INTERRUPT event and the
 * service's interrupt op), and replan those nodes: for a module that went
 * away (its process died or disconnected). Nothing counts as a failure.
 * @p reason is the INTERRUPT event's message. Returns how many were
 * interrupted, or a negative error.
 */
int kraken_service_interrupt_steps(kraken_service *service, const char *reason);

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
    KRAKEN_PLAN_FROZEN = 6,    /**< the engine is frozen */
    KRAKEN_PLAN_BUSY = 7       /**< Cfg or Dsc /Busy is BUSY: the node is someone else's */
} kraken_plan_state;

/** Number of plan states (0 .. KRAKEN_PLAN_STATE_COUNT - 1), e.g. to size a histogram. */
#define KRAKEN_PLAN_STATE_COUNT 8

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
    char *reason;          /**< last failure / stuck / no-path reason, why a PASSIVE step
                                is not run here, or NULL */
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
