/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * modharness.h: a real-clock harness for the module tests: one loop, one
 * engine (no sync service, short back-off), the engine's log lines and the
 * bus's events recorded, and run_until() that waits on a condition with a
 * deadline (never a bare sleep).
 */
#ifndef KRAKEN_MODHARNESS_H
#define KRAKEN_MODHARNESS_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <kraken/kraken.h>

#include "testutil.h"

#define MH_DEADLINE_MS 20000
#define MH_MAX_LINES 4096

typedef struct mh_fixture {
    struct event_base *base;
    struct event *tick;
    kraken_engine *engine;
    kraken_store *store;
    kraken_subscription *events;
    char *lines[MH_MAX_LINES]; /* "subsystem: message" */
    size_t n_lines;
    char *mutations[MH_MAX_LINES]; /* "MUTATE power/poweron: message" */
    size_t n_mutations;
} mh_fixture;

static mh_fixture mh;

static inline void mh_on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static inline void mh_on_log(int level, const char *subsystem, const char *message, void *userdata)
{
    (void)level;
    (void)userdata;
    if (mh.n_lines < MH_MAX_LINES) {
        char *line = NULL;
        if (asprintf(&line, "%s: %s", subsystem, message) >= 0)
            mh.lines[mh.n_lines++] = line;
    }
}

static inline void mh_on_event(const kraken_event *ev, void *userdata)
{
    (void)userdata;
    static const char *kinds[] = {"MUTATE", "INTERRUPT", "FAILED", "DONE"};
    if (ev->type != KRAKEN_EVENT_STATE_MUTATION || ev->kind < 0 || ev->kind > 3 ||
        mh.n_mutations >= MH_MAX_LINES)
        return;
    char *line = NULL;
    if (asprintf(&line, "%s %s/%s: %s", kinds[ev->kind], ev->service_id ? ev->service_id : "",
                 ev->mutation_id ? ev->mutation_id : "", ev->message ? ev->message : "") >= 0)
        mh.mutations[mh.n_mutations++] = line;
}

static inline void mh_setup(void)
{
    memset(&mh, 0, sizeof mh);
    mh.base = event_base_new();
    ck_assert_ptr_nonnull(mh.base);
    mh.tick = event_new(mh.base, -1, EV_PERSIST, mh_on_tick, NULL);
    struct timeval tv = {0, 5000};
    event_add(mh.tick, &tv);
    kraken_engine_options o = KRAKEN_ENGINE_OPTIONS_INIT;
    o.no_sync_service = true;
    o.backoff_initial_ms = 50;
    o.backoff_max_ms = 200;
    ck_assert_int_eq(kraken_engine_new(&mh.engine, mh.base, NULL, &o), 0);
    mh.store = kraken_engine_store(mh.engine);
    ck_assert_int_eq(kraken_engine_set_log(mh.engine, KRAKEN_LOG_DEBUG, mh_on_log, NULL, NULL), 0);
    ck_assert_int_eq(kraken_bus_subscribe(kraken_engine_bus(mh.engine), NULL, mh_on_event, NULL,
                                          NULL, &mh.events),
                     0);
}

static inline void mh_teardown_lines(void)
{
    for (size_t i = 0; i < mh.n_lines; i++)
        free(mh.lines[i]);
    for (size_t i = 0; i < mh.n_mutations; i++)
        free(mh.mutations[i]);
    mh.n_lines = mh.n_mutations = 0;
}

/* Free the engine (if still there), the loop and the records. */
static inline void mh_teardown(void)
{
    kraken_subscription_remove(mh.events);
    kraken_engine_free(mh.engine);
    mh.engine = NULL;
    event_free(mh.tick);
    event_base_free(mh.base);
    mh_teardown_lines();
}

static inline uint64_t mh_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

typedef bool (*mh_pred)(void *arg);

/* Run the loop until pred(arg) holds (true) or @p ms pass (false). */
static inline bool mh_run_until(mh_pred pred, void *arg, uint64_t ms)
{
    uint64_t end = mh_now_ms() + ms;
    while (!pred(arg)) {
        if (mh_now_ms() > end)
            return false;
        event_base_loop(mh.base, EVLOOP_ONCE);
    }
    return true;
}

static inline bool mh_never(void *arg)
{
    (void)arg;
    return false;
}

/* Run the loop for @p ms, whatever happens (to show that something does NOT happen). */
static inline void mh_run_for(uint64_t ms)
{
    mh_run_until(mh_never, NULL, ms);
}

static inline bool mh_line_seen(void *text)
{
    for (size_t i = 0; i < mh.n_lines; i++)
        if (strstr(mh.lines[i], text))
            return true;
    return false;
}

static inline bool mh_mutation_seen(void *text)
{
    for (size_t i = 0; i < mh.n_mutations; i++)
        if (strstr(mh.mutations[i], text))
            return true;
    return false;
}

static inline kraken_uuid mh_node_id(unsigned i)
{
    kraken_uuid id;
    char text[64];
    snprintf(text, sizeof text, "7e57c0de-0000-4000-8000-%012x", i);
    ck_assert_int_eq(kraken_uuid_parse(&id, text), 0);
    return id;
}

/* A node whose Cfg wants it powered on and synced; Dsc starts cold (all unknown). */
static inline kraken_uuid mh_add_node(unsigned i)
{
    kraken_uuid id = mh_node_id(i);
    kraken_node *n;
    ck_assert_int_eq(kraken_node_new(&n, &id), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/PhysState", "POWER_ON"), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/RunState", "SYNC"), 0);
    ck_assert_int_eq(kraken_store_create(mh.store, n), 0);
    kraken_node_free(n);
    return id;
}

/* Text of a value in the store ("" when unset); static buffer. */
static const char *mh_get(kraken_state_kind kind, const kraken_uuid *id, const char *url)
{
    static char buf[512];
    kraken_value v = KRAKEN_VALUE_INIT;
    char *text = NULL;
    buf[0] = '\0';
    if (kraken_store_get_value(mh.store, kind, id, url, &v) == 0 &&
        kraken_value_format(&v, &text) == 0)
        snprintf(buf, sizeof buf, "%s", text);
    free(text);
    kraken_value_clear(&v);
    kraken_error_clear();
    return buf;
}

typedef struct mh_nodes {
    unsigned first, n;
} mh_nodes;

static inline bool mh_all_synced(void *arg)
{
    const mh_nodes *w = arg;
    for (unsigned i = w->first; i < w->first + w->n; i++) {
        kraken_uuid id = mh_node_id(i);
        if (strcmp(mh_get(KRAKEN_DSC, &id, "/RunState"), "SYNC") != 0)
            return false;
    }
    return true;
}

static const char *mh_self(const char *url)
{
    return mh_get(KRAKEN_DSC, kraken_engine_self_id(mh.engine), url);
}

typedef struct mh_svc_state {
    const char *service;
    const char *state;
} mh_svc_state;

static inline bool mh_service_is(void *arg)
{
    const mh_svc_state *w = arg;
    char url[256];
    snprintf(url, sizeof url, "/Services/%s/State", w->service);
    return strcmp(mh_self(url), w->state) == 0;
}

#endif
