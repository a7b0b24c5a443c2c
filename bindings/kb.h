/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file bindings/kb.h
 * @brief The C layer under the SWIG bindings (Python and Lua): libkraken's API
 *        reshaped so that a garbage-collected language can use it safely.
 *
 * What this layer adds to the public API, and why:
 * - **Handle wrappers** (kb_loop, kb_engine, kb_store, kb_service, kb_subscription,
 *   kb_listener, kb_module): each is owned by exactly one proxy object of the
 *   language. `kb_*_close()` releases the library handle and leaves an empty
 *   wrapper (later calls fail with KRAKEN_ESTATE "... is closed"); the proxy's
 *   destructor (`kb_*_destroy()`) closes if needed and frees the wrapper. The
 *   library's rule "a parent's free detaches its children" makes every release
 *   order safe; the event loop is reference-counted here, because an engine or a
 *   module must never outlive the event_base it armed events on.
 * - **One callback object per registration** (::kb_callback), implemented by
 *   each language (a PyObject under the GIL, a Lua registry reference called
 *   with lua_pcall). The library's destroy hooks release it exactly once: when
 *   the registration is removed or its parent freed.
 * - **Values as text** (kraken_value_format()'s form) plus the URL's type, so
 *   that each language converts to its native types in a few lines.
 * - **Errors as a pending status**: a failing kb_ call records its code for the
 *   calling thread (kb_pending()), and the SWIG %exception turns it into the
 *   language's error with kraken_error_last()'s message, whatever the C return
 *   type is.
 * - Ids are UUID strings; id results are in a per-thread buffer valid until the
 *   next kb_ call on that thread (the languages copy them at once).
 */
#ifndef KRAKEN_KB_H
#define KRAKEN_KB_H

#include <stdbool.h>
#include <stdint.h>

#include <kraken/kraken.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ----------------------------------------------------------------------------------- */

/** The error code of the last failed kb_ call on this thread (0: none); clears it. */
int kb_take_pending(void);
/** Forget a pending error (called before each wrapped call). */
void kb_clear_pending(void);
/** kraken_err_name() / kraken_strerror() for the languages' error classes. */
const char *kb_err_name(int code);
const char *kb_strerror(int code);
/** "0.1.0". */
const char *kb_version(void);

/* ---- callbacks -------------------------------------------------------------------------------- */

/** What a callback is being called for. */
typedef enum kb_call_kind {
    KB_CALL_EVENT = 1,      /**< a bus event (engine subscription or module event handler) */
    KB_CALL_CHANGE = 2,     /**< a store listener's state change */
    KB_CALL_LOG = 3,        /**< the engine's log line */
    KB_CALL_START = 4,      /**< service/module start (module: with config) */
    KB_CALL_STOP = 5,
    KB_CALL_CONFIG = 6,     /**< the service's config changed */
    KB_CALL_MUTATE = 7,     /**< a mutation request */
    KB_CALL_INTERRUPT = 8,  /**< a request abandoned */
    KB_CALL_DISCONNECT = 9, /**< a connected module lost its connection (message: why) */
    KB_CALL_ERROR = 10      /**< an asynchronous refusal (code, message) */
} kb_call_kind;

/** One callback invocation; valid only during the call. Read with the kb_call_* accessors. */
typedef struct kb_call {
    kb_call_kind kind;
    const kraken_event *event;
    const kraken_state_change *change;
    const kraken_mutation_request *request;
    const kraken_value *config;
    int level;
    int code;
    const char *subsystem;
    const char *message;
} kb_call;

/** A language's callable. invoke runs it; release drops the language's reference (once). */
typedef struct kb_callback kb_callback;
struct kb_callback {
    void (*invoke)(kb_callback *cb, const kb_call *call);
    void (*release)(kb_callback *cb);
};

/** Release a callback (NULL-safe); used by the destroy hooks. */
void kb_callback_release(kb_callback *cb);

int kb_call_kind_of(const kb_call *call);
/** Node id of the event / change / request (UUID text), NULL when none. */
const char *kb_call_node_id(const kb_call *call);
const char *kb_call_url(const kb_call *call);
const char *kb_call_service_id(const kb_call *call);
const char *kb_call_mutation_id(const kb_call *call);
/** The event's, log line's, disconnect's or refusal's message. */
const char *kb_call_message(const kb_call *call);
const char *kb_call_subsystem(const kb_call *call);
int kb_call_level(const kb_call *call);
int kb_call_code(const kb_call *call);
/** Event type (kraken_event_type) and kind (change/mutation/sync kind, service state). */
int kb_call_event_type(const kb_call *call);
int kb_call_event_kind(const kb_call *call);
uint64_t kb_call_seq(const kb_call *call);
uint64_t kb_call_request_id(const kb_call *call);
int kb_call_n_mutates(const kb_call *call);
/** Part @p which (0 url, 1 from, 2 to) of mutate @p i. */
const char *kb_call_mutate(const kb_call *call, int i, int which);
/** Value @p which (0 old, 1 new, 2 config) as text (malloc'ed), NULL when absent. */
char *kb_call_value_text(const kb_call *call, int which);
/** Its kraken_type (KRAKEN_T_NONE when absent). */
int kb_call_value_type(const kb_call *call, int which);
/** A copy of the request's Cfg (0) or Dsc (1) node. */
kraken_node *kb_call_node(const kb_call *call, int which);

/* ---- event loop ------------------------------------------------------------------------------- */

typedef struct kb_loop kb_loop;

kb_loop *kb_loop_new(void);
/** Drop the proxy's reference; the base goes when no engine or module uses it either. */
void kb_loop_destroy(kb_loop *loop);
/**
 * Run the loop until something happened or @p timeout_ms passed (0: poll
 * without waiting; < 0: wait for the first event). Returns 1 when events ran,
 * 0 on timeout or when nothing is pending.
 */
int kb_loop_step(kb_loop *loop, int timeout_ms);
/** Run for @p ms (or until kb_loop_stop()); returns 1 when stopped early. */
int kb_loop_run_for(kb_loop *loop, int ms);
/** Make a running kb_loop_run_for()/kb_loop_step() return after the current callback. */
void kb_loop_stop(kb_loop *loop);

/* ---- nodes (kraken_node is used as is: plain data, owned by its proxy) ------------------------ */

kraken_node *kb_node_new(const char *id);
void kb_node_destroy(kraken_node *node);
kraken_node *kb_node_copy(const kraken_node *node);
kraken_node *kb_node_from_json(const char *json, const char *source);
char *kb_node_to_json(const kraken_node *node, bool pretty);
const char *kb_node_id(const kraken_node *node);
bool kb_node_equal(const kraken_node *a, const kraken_node *b);
/** The value at @p url as text (malloc'ed); its type is then kb_last_type(). */
char *kb_node_get_text(const kraken_node *node, const char *url);
/**
 * The kraken_type of the value the last kb_node_get_text() / kb_store_get_text() on this
 * thread returned (URLs into service configs have a type only on a node).
 */
int kb_last_type(void);
int kb_node_set_text(kraken_node *node, const char *url, const char *text);
int kb_node_unset(kraken_node *node, const char *url);
/** Ids of the node's service instances, one per line (malloc'ed). */
char *kb_node_service_ids(const kraken_node *node);
/** Type URLs of the node's extensions, one per line (malloc'ed). */
char *kb_node_extensions(const kraken_node *node);
/** The kraken_type of @p url (from the schemas alone). */
int kb_url_type(const char *url);
/** The enum type name of an ENUM URL, NULL otherwise. */
const char *kb_url_enum_name(const char *url);
/** Members of enum @p name as "NAME=number" lines (malloc'ed). */
char *kb_enum_members(const char *name);
/** kraken_url_canonical(). */
char *kb_url_canonical(const char *url);
int kb_schema_load_json(const char *json, const char *source);
int kb_schema_load_file(const char *path);
/** A new random UUID as text. */
const char *kb_uuid_generate(void);

/* ---- store ------------------------------------------------------------------------------------ */

typedef struct kb_store kb_store;
typedef struct kb_listener kb_listener;
typedef struct kb_engine kb_engine;

kb_store *kb_store_new(void);
/** The engine's own store, borrowed (calls fail with KRAKEN_ESTATE once the engine is closed). */
kb_store *kb_engine_store(kb_engine *engine);
void kb_store_close(kb_store *store);
void kb_store_destroy(kb_store *store);
int kb_store_count(kb_store *store);
bool kb_store_contains(kb_store *store, const char *id);
/** Ids of every node, sorted, one per line (malloc'ed). */
char *kb_store_ids(kb_store *store);
int kb_store_create(kb_store *store, const kraken_node *cfg);
kraken_node *kb_store_read(kb_store *store, int kind, const char *id);
int kb_store_update(kb_store *store, int kind, const kraken_node *node);
char *kb_store_get_text(kb_store *store, int kind, const char *id, const char *url);
int kb_store_set_text(kb_store *store, int kind, const char *id, const char *url,
                      const char *text);
int kb_store_delete(kb_store *store, const char *id);
int kb_store_load(kb_store *store, const char *path);
int kb_store_load_dsc(kb_store *store, const char *path);
int kb_store_save(kb_store *store, int kind, const char *path);
char *kb_store_to_json(kb_store *store, int kind, bool pretty);
const char *kb_store_find(kb_store *store, const char *nodename);
/** Listen to every change (KB_CALL_CHANGE); the callback is the listener's until removed. */
kb_listener *kb_store_listen(kb_store *store, kb_callback *cb);
void kb_listener_close(kb_listener *listener);
void kb_listener_destroy(kb_listener *listener);

/* ---- mutation declarations and sets ------------------------------------------------------------ */

typedef struct kb_decl kb_decl;
typedef struct kb_mutset kb_mutset;

kb_decl *kb_decl_new(const char *id);
void kb_decl_destroy(kb_decl *decl);
int kb_decl_mutates(kb_decl *decl, const char *url, const char *from, const char *to);
int kb_decl_requires(kb_decl *decl, const char *url, const char *value);
int kb_decl_excludes(kb_decl *decl, const char *url, const char *value);
int kb_decl_fail_to(kb_decl *decl, const char *url, const char *value);
/** Context (kraken_context), timeout (ms, 0 none) and cost (0: 1). */
int kb_decl_options(kb_decl *decl, int context, uint32_t timeout_ms, uint32_t cost);

kb_mutset *kb_mutset_new(void);
void kb_mutset_destroy(kb_mutset *set);
int kb_mutset_add(kb_mutset *set, const char *service_id, const kb_decl *decl);
int kb_mutset_count(kb_mutset *set);
/** The plan as "service/mutation" lines (malloc'ed; "" when nothing to do); KRAKEN_ENOPATH. */
char *kb_mutset_plan(kb_mutset *set, const kraken_node *cfg, const kraken_node *dsc);
/** The total cost of that plan. */
uint64_t kb_mutset_plan_cost(kb_mutset *set, const kraken_node *cfg, const kraken_node *dsc);
char *kb_mutset_graph_json(kb_mutset *set, const kraken_node *cfg);

/* ---- engine ------------------------------------------------------------------------------------ */

typedef struct kb_service kb_service;
typedef struct kb_subscription kb_subscription;

/** Engine options, filled from kraken_engine_options_init() and changed by the languages. */
typedef struct kb_engine_config {
    bool start_frozen;
    bool no_sync_service;
    uint32_t backoff_initial_ms;
    uint32_t backoff_max_ms;
    uint32_t max_failures;
    uint32_t service_start_ms;
    uint32_t no_path_retry_ms;
    double timeout_scale;
} kb_engine_config;

kb_engine_config *kb_engine_config_new(void);
void kb_engine_config_destroy(kb_engine_config *config);
/**
 * A new engine on @p loop, on @p store (borrowed; NULL: its own store), with
 * self node @p self_id (NULL: generated) and @p config (NULL: the defaults).
 */
kb_engine *kb_engine_new(kb_loop *loop, kb_store *store, const char *self_id,
                         const kb_engine_config *config);
void kb_engine_close(kb_engine *engine);
void kb_engine_destroy(kb_engine *engine);
const char *kb_engine_self_id(kb_engine *engine);
/** Install the log callback (levels <= max_level); NULL removes it. */
int kb_engine_set_log(kb_engine *engine, int max_level, kb_callback *cb);
int kb_engine_freeze(kb_engine *engine, bool frozen);
bool kb_engine_frozen(kb_engine *engine);
int kb_engine_reset_node(kb_engine *engine, const char *id);
/** The node's plan state name ("CONVERGED", ...). */
const char *kb_engine_node_state(kb_engine *engine, const char *id);
/** The node's plan: "service/mutation" lines (malloc'ed). */
char *kb_engine_node_plan(kb_engine *engine, const char *id);
/** Index of the node's current step (the plan's length when none). */
int kb_engine_node_step(kb_engine *engine, const char *id);
int kb_engine_node_failures(kb_engine *engine, const char *id);
/** Last failure / stuck / no-path reason (malloc'ed), NULL when none. */
char *kb_engine_node_reason(kb_engine *engine, const char *id);
char *kb_engine_graph_json(kb_engine *engine, const char *id);
int kb_engine_mutation_disable(kb_engine *engine, const char *service_id,
                               const char *mutation_id, bool disabled);
int kb_engine_mutation_set_timeout(kb_engine *engine, const char *service_id,
                                   const char *mutation_id, uint32_t timeout_ms);
/** Deliver the bus's queued events now. */
int kb_engine_flush(kb_engine *engine);
/** Subscribe to events (mask of 1 << type, 0 all; glob on URLs or NULL; queue bound or 0). */
kb_subscription *kb_engine_subscribe(kb_engine *engine, unsigned types, const char *url_pattern,
                                     uint32_t queue_limit, kb_callback *cb);
void kb_subscription_close(kb_subscription *sub);
void kb_subscription_destroy(kb_subscription *sub);
uint64_t kb_subscription_dropped(kb_subscription *sub);

/** Add service @p service_id of @p module to the self node; @p cb gets start/stop/config/mutate/interrupt. */
kb_service *kb_engine_add_service(kb_engine *engine, const char *service_id, const char *module,
                                  kb_callback *cb);
void kb_service_close(kb_service *svc);
void kb_service_destroy(kb_service *svc);
const char *kb_service_id(kb_service *svc);
int kb_service_declare(kb_service *svc, const kb_decl *decl);
int kb_service_declare_discoverable(kb_service *svc, const char *url, const char *value_name,
                                    const char *value_text);
int kb_service_discover(kb_service *svc, const char *node_id, const char *url, const char *text);
int kb_service_report(kb_service *svc, const char *node_id, uint64_t request_id,
                      const char *url, const char *text);
int kb_service_fail(kb_service *svc, const char *node_id, uint64_t request_id,
                    const char *reason);
int kb_service_set_state(kb_service *svc, int state, const char *error_msg);

/* ---- modules ---------------------------------------------------------------------------------- */

typedef struct kb_moddesc kb_moddesc;
typedef struct kb_module kb_module;

kb_moddesc *kb_moddesc_new(const char *name);
void kb_moddesc_destroy(kb_moddesc *desc);
int kb_moddesc_schemas(kb_moddesc *desc, const char *schemas_json, const char *config_schema);
int kb_moddesc_discoverable(kb_moddesc *desc, const char *url, const char *value_name,
                            const char *value_text);
int kb_moddesc_mutation(kb_moddesc *desc, const kb_decl *decl);
/** Events for the callback (KB_CALL_EVENT): mask of 1 << type, glob on URLs or NULL. */
int kb_moddesc_events(kb_moddesc *desc, unsigned types, const char *url_pattern);

/** Run @p desc in-process as service @p service_id of @p engine. */
kb_module *kb_module_new(kb_engine *engine, kb_moddesc *desc, const char *service_id,
                         kb_callback *cb);
/**
 * Connect to a kraken instance's module socket (NULL: $KRAKEN_MODULE_SOCKET) as
 * service @p service_id (NULL: $KRAKEN_SERVICE_ID or the module name). Blocks
 * until registered (at most @p timeout_ms, 0: the default).
 */
kb_module *kb_module_connect(kb_loop *loop, kb_moddesc *desc, const char *socket_path,
                             const char *service_id, uint32_t timeout_ms, kb_callback *cb);
void kb_module_close(kb_module *module);
void kb_module_destroy(kb_module *module);
const char *kb_module_service_id(kb_module *module);
bool kb_module_connected(kb_module *module);
int kb_module_reconnect(kb_module *module);
int kb_module_discover(kb_module *module, const char *node_id, const char *url,
                       const char *text);
int kb_module_discover_named(kb_module *module, const char *node_id, const char *url,
                             const char *value_name);
int kb_module_report(kb_module *module, const char *node_id, uint64_t request_id,
                     const char *url, const char *text);
int kb_module_fail(kb_module *module, const char *node_id, uint64_t request_id,
                   const char *reason);
int kb_module_set_state(kb_module *module, int state, const char *error_msg);
kraken_node *kb_module_query(kb_module *module, int kind, const char *node_id);
int kb_module_update_cfg(kb_module *module, const char *node_id, const char *url,
                         const char *text);
int kb_module_log(kb_module *module, int level, const char *message);

#ifdef __cplusplus
}
#endif
#endif
