/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file kraken/event.h
 * @brief The event bus (SPEC 5).
 *
 * A bus delivers events to subscribers from the caller's libevent loop, never
 * from inside the call that published them, so a subscriber may call back into
 * the engine freely. Each subscriber receives matching events in publication
 * order. Each has a bounded queue: when it is full, the oldest queued events
 * are dropped and counted (kraken_subscription_dropped()); publishing never
 * blocks and never fails because of a slow subscriber.
 *
 * Threads: a bus belongs to the thread that created it (its loop's). Calls
 * from another thread change nothing and fail with KRAKEN_ETHREAD.
 *
 * Lifetime: a subscription handle returned through @c out belongs to the
 * caller until kraken_subscription_remove(). kraken_bus_free() (or the free of
 * the engine that owns the bus) detaches the subscriptions still registered:
 * their destroy hooks run, no further events arrive, and a later
 * kraken_subscription_remove() only frees the handle. A subscription made with
 * @c out NULL belongs to the bus and goes with it.
 */
#ifndef KRAKEN_EVENT_H
#define KRAKEN_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "types.h"

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

typedef struct kraken_bus kraken_bus;
typedef struct kraken_subscription kraken_subscription;

/** Event types; numbers match the websocket protocol (SPEC 9.3). */
typedef enum kraken_event_type {
    KRAKEN_EVENT_STATE_CHANGE = 1,
    KRAKEN_EVENT_STATE_MUTATION = 2,
    KRAKEN_EVENT_DISCOVERY = 5,
    KRAKEN_EVENT_SERVICE = 6,
    KRAKEN_EVENT_SYNC = 7
} kraken_event_type;

#define KRAKEN_EVENT_MASK(type) (1u << (unsigned)(type))
#define KRAKEN_EVENT_MASK_ALL 0xffffffffu

/** Kinds of STATE_MUTATION events. */
typedef enum kraken_mutation_event {
    KRAKEN_MUTATION_MUTATE = 0,
    KRAKEN_MUTATION_INTERRUPT = 1,
    KRAKEN_MUTATION_FAILED = 2,
    KRAKEN_MUTATION_DONE = 3
} kraken_mutation_event;

/** Kinds of SYNC events. */
typedef enum kraken_sync_event {
    KRAKEN_SYNC_NEIGHBOR_UP = 0,
    KRAKEN_SYNC_NEIGHBOR_DOWN = 1,
    KRAKEN_SYNC_JOIN_ACCEPTED = 2,
    KRAKEN_SYNC_JOIN_REFUSED = 3,
    /** Two instances joined with the same node id; the established session is kept for a
     *  hold-down time and the other refused (doc/PROTOCOL.md 3). */
    KRAKEN_SYNC_ID_CONFLICT = 4,
    /** Nodes under a child link can no longer be seen (the link died, or the child has not
     *  learned them since it restarted): their last known facts are kept, marked stale. */
    KRAKEN_SYNC_NODES_STALE = 5,
    /** Stale nodes under a child link are seen again (fresh facts arrived). */
    KRAKEN_SYNC_NODES_FRESH = 6
} kraken_sync_event;

/**
 * One event; pointers are valid for the duration of the callback.
 * @c kind is a ::kraken_change_kind (STATE_CHANGE), ::kraken_mutation_event
 * (STATE_MUTATION), ::kraken_sync_event (SYNC) or a ::kraken_service_state
 * (SERVICE); 0 for DISCOVERY.
 */
typedef struct kraken_event {
    kraken_event_type type;
    int kind;
    uint64_t seq;               /**< bus-wide publication sequence number */
    kraken_uuid node_id;
    const char *url;            /**< STATE_CHANGE and DISCOVERY; else NULL */
    const kraken_value *old_value; /**< STATE_CHANGE; else NULL */
    const kraken_value *new_value; /**< STATE_CHANGE and DISCOVERY; else NULL */
    const char *service_id;     /**< STATE_MUTATION, DISCOVERY, SERVICE; else NULL */
    const char *mutation_id;    /**< STATE_MUTATION; else NULL */
    const char *message;        /**< human-readable line (reason of a failure ...) */
} kraken_event;

typedef void (*kraken_event_fn)(const kraken_event *event, void *userdata);

#define KRAKEN_SUBSCRIBE_OPTIONS_VERSION 1

/**
 * Subscription filter and queue bound; start from KRAKEN_SUBSCRIBE_OPTIONS_INIT
 * or kraken_subscribe_options_init(). Versioned as kraken_engine_options: older
 * versions are accepted, an unknown one (including 0) is refused.
 */
typedef struct kraken_subscribe_options {
    unsigned version;        /**< KRAKEN_SUBSCRIBE_OPTIONS_VERSION */
    unsigned types;          /**< mask of KRAKEN_EVENT_MASK(type); 0 means all */
    const char *url_pattern; /**< glob ('*', '?') on the event URL; NULL matches all */
    size_t queue_limit;      /**< max queued events; 0 = 4096 */
} kraken_subscribe_options;

/** Every event, default queue bound. */
#define KRAKEN_SUBSCRIBE_OPTIONS_INIT {KRAKEN_SUBSCRIBE_OPTIONS_VERSION, 0, NULL, 0}

/**
 * Fill @p opts as KRAKEN_SUBSCRIBE_OPTIONS_INIT for struct version @p version
 * (pass KRAKEN_SUBSCRIBE_OPTIONS_VERSION). KRAKEN_EINVAL for an unknown version.
 */
int kraken_subscribe_options_init(kraken_subscribe_options *opts, unsigned version);

/** Create a bus delivering on @p base (not owned). */
int kraken_bus_new(kraken_bus **out, struct event_base *base);
/** Free the bus; pending events are discarded, subscriptions' destroy hooks run. NULL-safe. */
void kraken_bus_free(kraken_bus *bus);

/** Publish a copy of @p event; @c seq is assigned by the bus. */
int kraken_bus_publish(kraken_bus *bus, const kraken_event *event);

/**
 * Subscribe; @p opts may be NULL (all events). With @p out, release the handle
 * with kraken_subscription_remove() (before or after the bus goes away).
 */
int kraken_bus_subscribe(kraken_bus *bus, const kraken_subscribe_options *opts, kraken_event_fn fn,
                         void *userdata, void (*destroy)(void *userdata),
                         kraken_subscription **out);
/**
 * Remove a subscription and release its handle: no further calls, its destroy
 * hook runs (unless the bus's free already ran it). NULL-safe. Allowed from
 * any bus callback and after the bus was freed.
 */
void kraken_subscription_remove(kraken_subscription *sub);
/** Events dropped for this subscriber because its queue was full (kept after detach). */
uint64_t kraken_subscription_dropped(const kraken_subscription *sub);

/** Deliver everything queued now, without the loop (tests, shutdown). */
void kraken_bus_flush(kraken_bus *bus);

/** Name of an event type ("STATE_CHANGE"), or NULL if unknown. */
const char *kraken_event_type_name(kraken_event_type type);
/**
 * Parse an event type name ("DISCOVERY", any case) or number ("5") into @p out;
 * KRAKEN_EPARSE if unknown. (A _parse makes a value: its output comes first, see error.h.)
 */
int kraken_event_type_parse(kraken_event_type *out, const char *name);

/** True if @p url matches the glob @p pattern ('*' any run, '?' one char). */
bool kraken_url_match(const char *pattern, const char *url);

#ifdef __cplusplus
}
#endif
#endif
