/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Handle lifetimes (doc/ARCHITECTURE.md "Ownership"): whatever order a program
 * (or a garbage collector) releases its handles in, nothing dangles. A parent's
 * free detaches the children still held: their destroy hooks run once, later
 * calls on them fail with KRAKEN_ESTATE and their own release only frees the
 * handle. Every order of releasing a store, the engine borrowing it, a sync on
 * the engine, a service, a subscription to the engine's bus and a store listener
 * is run here (720 orders); valgrind and ASan runs of this suite prove that none
 * of them reads freed memory or leaks.
 *
 * Also: calls from a thread that does not own the handle fail with KRAKEN_ETHREAD.
 */
#include <event2/event.h>
#include <pthread.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

/* The handles of one run, and how often each destroy hook ran. */
enum { H_STORE, H_ENGINE, H_SYNC, H_SERVICE, H_SUBSCRIPTION, H_LISTENER, N_HANDLES };

static const char *const handle_names[N_HANDLES] = {"store",   "engine",       "sync",
                                                    "service", "subscription", "listener"};

typedef struct world {
    struct event_base *base;
    kraken_store *store;
    kraken_engine *engine;
    kraken_sync *sync;
    kraken_service *service;
    kraken_subscription *sub;
    kraken_store_listener *listener;
    kraken_bus *bus; /* the engine's, lent */
    bool released[N_HANDLES];
    int destroyed[N_HANDLES]; /* destroy hook calls per handle kind */
    int floating_destroyed;   /* hooks of the handles owned by their parents */
    int events, changes;
} world;

typedef struct hook {
    world *w;
    int kind; /* a handle index, or -1 for a floating (parent-owned) registration */
} hook;

static hook hooks[N_HANDLES + 3];

static void on_destroy(void *userdata)
{
    hook *h = userdata;
    if (h->kind < 0)
        h->w->floating_destroyed++;
    else
        h->w->destroyed[h->kind]++;
}

static void on_event(const kraken_event *ev, void *userdata)
{
    (void)ev;
    ((hook *)userdata)->w->events++;
}

static void on_change(const kraken_state_change *change, void *userdata)
{
    (void)change;
    ((hook *)userdata)->w->changes++;
}

static const kraken_service_ops no_ops = KRAKEN_SERVICE_OPS_INIT(.start = NULL);

static void world_make(world *w)
{
    memset(w, 0, sizeof *w);
    for (int i = 0; i < N_HANDLES; i++)
        hooks[i] = (hook){w, i};
    for (int i = N_HANDLES; i < N_HANDLES + 3; i++)
        hooks[i] = (hook){w, -1};
    ck_assert_ptr_nonnull(w->base = event_base_new());
    ck_assert_int_eq(kraken_store_new(&w->store), 0);
    ck_assert_int_eq(kraken_engine_new(&w->engine, w->base, w->store, NULL), 0);
    kraken_sync_options so = KRAKEN_SYNC_OPTIONS_INIT;
    so.listen_addr = "127.0.0.1";
    so.port = 0;
    so.insecure = true;
    ck_assert_int_eq(kraken_sync_new(&w->sync, w->engine, w->base, &so), 0);
    ck_assert_int_eq(kraken_engine_add_service(w->engine, "svc", "mod", &no_ops,
                                               &hooks[H_SERVICE], on_destroy, &w->service),
                     0);
    kraken_bus *bus = w->bus = kraken_engine_bus(w->engine);
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, on_event, &hooks[H_SUBSCRIPTION], on_destroy,
                                          &w->sub),
                     0);
    ck_assert_int_eq(kraken_store_listen(w->store, on_change, &hooks[H_LISTENER], on_destroy,
                                         &w->listener),
                     0);
    /* The same kinds without a handle: their parents own and free them. */
    ck_assert_int_eq(kraken_engine_add_service(w->engine, "floating", "mod", &no_ops,
                                               &hooks[N_HANDLES], on_destroy, NULL),
                     0);
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, on_event, &hooks[N_HANDLES + 1], on_destroy,
                                          NULL),
                     0);
    ck_assert_int_eq(kraken_store_listen(w->store, on_change, &hooks[N_HANDLES + 2], on_destroy,
                                         NULL),
                     0);
    event_base_loop(w->base, EVLOOP_NONBLOCK);
}

/* Release one handle the way a binding's finaliser would. */
static void release(world *w, int which)
{
    switch (which) {
    case H_STORE:
        kraken_store_free(w->store);
        break;
    case H_ENGINE:
        kraken_engine_free(w->engine);
        break;
    case H_SYNC:
        kraken_sync_free(w->sync);
        break;
    case H_SERVICE:
        kraken_service_remove(w->service);
        break;
    case H_SUBSCRIPTION:
        kraken_subscription_remove(w->sub);
        break;
    case H_LISTENER:
        kraken_store_listener_remove(w->listener);
        break;
    }
    w->released[which] = true;
}

/* The engine is gone for its children once it, or the store it borrows, was released. */
static bool engine_gone(const world *w)
{
    return w->released[H_ENGINE] || w->released[H_STORE];
}

/* Use every handle still held: live ones work, detached ones refuse harmlessly. */
static void poke(world *w)
{
    kraken_uuid id = {{1}};
    if (!w->released[H_ENGINE]) {
        int rc = kraken_engine_reset_node(w->engine, &id);
        if (engine_gone(w)) {
            ck_assert_int_eq(rc, KRAKEN_ESTATE);
            ck_assert_ptr_nonnull(strstr(kraken_error_last(), "its store was freed"));
            ck_assert_ptr_null(kraken_engine_bus(w->engine));
            ck_assert_ptr_null(kraken_engine_store(w->engine));
        } else {
            ck_assert_int_eq(rc, KRAKEN_ENOTFOUND);
        }
    }
    if (!w->released[H_SERVICE]) {
        int rc = kraken_service_set_state(w->service, KRAKEN_SERVICE_RUN, NULL);
        if (engine_gone(w)) {
            ck_assert_int_eq(rc, KRAKEN_ESTATE);
            ck_assert_ptr_null(kraken_service_engine(w->service));
            ck_assert_str_eq(kraken_service_id(w->service), "svc");
        } else {
            ck_assert_int_eq(rc, 0);
        }
    }
    if (!w->released[H_SYNC]) {
        if (engine_gone(w)) {
            ck_assert_uint_eq(kraken_sync_port(w->sync), 0);
        } else {
            ck_assert_uint_ne(kraken_sync_port(w->sync), 0);
        }
        ck_assert(!kraken_sync_joined(w->sync));
        kraken_sync_stats st;
        kraken_sync_get_stats(w->sync, &st);
    }
    if (!w->released[H_SUBSCRIPTION])
        ck_assert_uint_eq(kraken_subscription_dropped(w->sub), 0);
    if (!w->released[H_STORE]) {
        kraken_node *n;
        ck_assert_int_eq(kraken_node_new(&n, &id), 0);
        ck_assert_int_eq(kraken_store_create(w->store, n), 0);
        ck_assert_int_eq(kraken_store_delete(w->store, &id), 0);
        kraken_node_free(n);
    }
    event_base_loop(w->base, EVLOOP_NONBLOCK);
}

/* Every destroy hook ran exactly once once its handle or a parent of it was released. */
static void check_hooks(const world *w, const int *order)
{
    char seq[128] = "";
    for (int i = 0; i < N_HANDLES; i++) {
        strcat(seq, handle_names[order[i]]);
        strcat(seq, i + 1 < N_HANDLES ? "," : "");
    }
    static const int with_hooks[] = {H_SERVICE, H_SUBSCRIPTION, H_LISTENER};
    for (size_t i = 0; i < 3; i++)
        ck_assert_msg(w->destroyed[with_hooks[i]] == 1, "order %s: %s destroy hook ran %d times",
                      seq, handle_names[with_hooks[i]], w->destroyed[with_hooks[i]]);
    ck_assert_msg(w->floating_destroyed == 3, "order %s: %d of 3 parent-owned hooks ran", seq,
                  w->floating_destroyed);
}

/* The k-th permutation (0 <= k < 6!) of the handles, in the factorial number system. */
static void nth_order(int k, int order[N_HANDLES])
{
    int pool[N_HANDLES];
    for (int i = 0; i < N_HANDLES; i++)
        pool[i] = i;
    int fact = 1;
    for (int i = 2; i < N_HANDLES; i++)
        fact *= i;
    for (int i = 0; i < N_HANDLES; i++) {
        int left = N_HANDLES - i;
        int pick = k / fact;
        k %= fact;
        order[i] = pool[pick];
        memmove(&pool[pick], &pool[pick + 1], (size_t)(left - pick - 1) * sizeof *pool);
        if (left > 1)
            fact /= left - 1;
    }
}

/* Loop index _i: the handle released first; the test runs the 120 orders that start with it. */
START_TEST(every_free_order)
{
    int runs = 0;
    for (int k = _i * 120; k < (_i + 1) * 120; k++) {
        int order[N_HANDLES];
        nth_order(k, order);
        ck_assert_int_eq(order[0], _i);
        world w;
        world_make(&w);
        for (int i = 0; i < N_HANDLES; i++) {
            release(&w, order[i]);
            poke(&w);
        }
        check_hooks(&w, order);
        event_base_free(w.base);
        runs++;
    }
    ck_assert_int_eq(runs, 120);
}
END_TEST

/* A hook may remove its own handle (a binding dropping its last reference) while detached. */
static void remove_own_subscription(void *userdata)
{
    kraken_subscription **sub = userdata;
    kraken_subscription_remove(*sub);
    *sub = NULL;
}

static void remove_own_listener(void *userdata)
{
    kraken_store_listener **l = userdata;
    kraken_store_listener_remove(*l);
    *l = NULL;
}

START_TEST(hooks_release_their_handles_while_detached)
{
    struct event_base *base = event_base_new();
    kraken_bus *bus;
    ck_assert_int_eq(kraken_bus_new(&bus, base), 0);
    kraken_subscription *sub2 = NULL;
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, on_event, &sub2, remove_own_subscription,
                                          &sub2),
                     0);
    kraken_bus_free(bus);
    ck_assert_ptr_null(sub2);

    kraken_store *store;
    ck_assert_int_eq(kraken_store_new(&store), 0);
    kraken_store_listener *l = NULL;
    ck_assert_int_eq(kraken_store_listen(store, on_change, &l, remove_own_listener, &l), 0);
    kraken_store_free(store);
    ck_assert_ptr_null(l);
    event_base_free(base);
}
END_TEST

/* A listener that frees its store is refused: the write that called it still uses the store. */
static char free_msg[256];

static void free_my_store(const kraken_state_change *change, void *userdata)
{
    (void)change;
    kraken_store_free(userdata);
    snprintf(free_msg, sizeof free_msg, "%s", kraken_error_last());
}

START_TEST(store_free_from_its_listener_is_refused)
{
    kraken_store *store;
    ck_assert_int_eq(kraken_store_new(&store), 0);
    ck_assert_int_eq(kraken_store_listen(store, free_my_store, store, NULL, NULL), 0);
    kraken_uuid id = {{9}};
    kraken_node *n;
    ck_assert_int_eq(kraken_node_new(&n, &id), 0);
    ck_assert_int_eq(kraken_store_create(store, n), 0);
    kraken_node_free(n);
    ck_assert_str_eq(free_msg, "store_free: called from a store listener; the store is not "
                               "freed (free it after the listener returns)");
    ck_assert_uint_eq(kraken_store_count(store), 1);
    kraken_store_free(store);
}
END_TEST

/* A destroy hook that removes its own service while the service is being removed. */
static void remove_own_service(void *userdata)
{
    kraken_service **svc = userdata;
    kraken_service_remove(*svc);
    *svc = NULL;
}

START_TEST(service_hook_removing_its_service)
{
    struct event_base *base = event_base_new();
    kraken_engine_options o = KRAKEN_ENGINE_OPTIONS_INIT;
    o.no_sync_service = true;
    kraken_engine *e;
    ck_assert_int_eq(kraken_engine_new(&e, base, NULL, &o), 0);
    kraken_service *a = NULL, *b = NULL;
    ck_assert_int_eq(kraken_engine_add_service(e, "a", "m", NULL, &a, remove_own_service, &a), 0);
    ck_assert_int_eq(kraken_engine_add_service(e, "b", "m", NULL, &b, remove_own_service, &b), 0);
    kraken_service_remove(a); /* its hook removes it again: one free */
    ck_assert_ptr_null(a);
    ck_assert_ptr_null(kraken_engine_find_service(e, "a"));
    kraken_engine_free(e); /* b's hook runs while b is detached: one free */
    ck_assert_ptr_null(b);
    event_base_free(base);
}
END_TEST

/* The engine's own store and bus: their listener, subscription and a sync outlive the engine. */
START_TEST(children_of_an_owned_store_outlive_the_engine)
{
    struct event_base *base = event_base_new();
    world w;
    memset(&w, 0, sizeof w);
    hook hl = {&w, H_LISTENER}, hs = {&w, H_SUBSCRIPTION};
    kraken_engine *e;
    ck_assert_int_eq(kraken_engine_new(&e, base, NULL, NULL), 0);
    kraken_store_listener *l;
    kraken_subscription *sub;
    ck_assert_int_eq(kraken_store_listen(kraken_engine_store(e), on_change, &hl, on_destroy, &l),
                     0);
    ck_assert_int_eq(kraken_bus_subscribe(kraken_engine_bus(e), NULL, on_event, &hs, on_destroy,
                                          &sub),
                     0);
    kraken_sync_options so;
    ck_assert_int_eq(kraken_sync_options_init(&so, KRAKEN_SYNC_OPTIONS_VERSION), 0);
    so.listen_addr = "127.0.0.1";
    so.port = 0;
    so.insecure = true;
    kraken_sync *sync;
    ck_assert_int_eq(kraken_sync_new(&sync, e, base, &so), 0);
    if (_i == 0) {
        kraken_engine_free(e); /* frees its store and bus: every child is detached */
        ck_assert_int_eq(w.destroyed[H_LISTENER], 1);
        ck_assert_int_eq(w.destroyed[H_SUBSCRIPTION], 1);
        ck_assert_uint_eq(kraken_sync_port(sync), 0);
        kraken_store_listener_remove(l);
        kraken_subscription_remove(sub);
        kraken_sync_free(sync);
    } else {
        kraken_sync_free(sync);
        kraken_subscription_remove(sub);
        kraken_store_listener_remove(l);
        ck_assert_int_eq(w.destroyed[H_LISTENER], 1);
        ck_assert_int_eq(w.destroyed[H_SUBSCRIPTION], 1);
        kraken_engine_free(e);
    }
    ck_assert_int_eq(w.destroyed[H_LISTENER], 1);
    ck_assert_int_eq(w.destroyed[H_SUBSCRIPTION], 1);
    event_base_free(base);
}
END_TEST

/* A standalone bus freed before and after its subscription. */
START_TEST(standalone_bus_either_order)
{
    for (int bus_first = 0; bus_first < 2; bus_first++) {
        struct event_base *base = event_base_new();
        world w;
        memset(&w, 0, sizeof w);
        hook h = {&w, H_SUBSCRIPTION};
        kraken_bus *bus;
        kraken_subscription *sub;
        ck_assert_int_eq(kraken_bus_new(&bus, base), 0);
        ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, on_event, &h, on_destroy, &sub), 0);
        kraken_event ev = {.type = KRAKEN_EVENT_SYNC};
        ck_assert_int_eq(kraken_bus_publish(bus, &ev), 0);
        if (bus_first) {
            kraken_bus_free(bus);
            ck_assert_int_eq(w.destroyed[H_SUBSCRIPTION], 1);
            ck_assert_uint_eq(kraken_subscription_dropped(sub), 0);
            kraken_subscription_remove(sub);
        } else {
            kraken_subscription_remove(sub);
            ck_assert_int_eq(w.destroyed[H_SUBSCRIPTION], 1);
            kraken_bus_free(bus);
        }
        ck_assert_int_eq(w.destroyed[H_SUBSCRIPTION], 1);
        event_base_loop(base, EVLOOP_NONBLOCK);
        ck_assert_int_eq(w.events, 0);
        event_base_free(base);
    }
}
END_TEST

/* ---- frees from inside callbacks ---------------------------------------------------------- */

typedef enum free_site { FROM_START, FROM_MUTATE, FROM_SUBSCRIBER, N_SITES } free_site;

typedef struct inner {
    free_site site;
    kraken_store *store; /* borrowed by the engine; freed from the callback */
    kraken_engine *engine;
    kraken_service *service;
    kraken_subscription *sub;
    int destroys;
    bool store_freed;
} inner;

static void inner_free_store(inner *t)
{
    if (t->store_freed)
        return;
    kraken_store_free(t->store);
    t->store = NULL;
    t->store_freed = true;
}

static void inner_start(kraken_service *svc, void *userdata)
{
    inner *t = userdata;
    if (t->site == FROM_START)
        inner_free_store(t);
    else
        kraken_service_set_state(svc, KRAKEN_SERVICE_RUN, NULL);
}

static void inner_mutate(kraken_service *svc, const kraken_mutation_request *r, void *userdata)
{
    (void)svc;
    (void)r;
    inner *t = userdata;
    if (t->site == FROM_MUTATE)
        inner_free_store(t);
}

static void inner_event(const kraken_event *ev, void *userdata)
{
    inner *t = userdata;
    if (t->site == FROM_SUBSCRIBER && ev->type == KRAKEN_EVENT_STATE_MUTATION)
        inner_free_store(t);
}

static void inner_destroy(void *userdata)
{
    ((inner *)userdata)->destroys++;
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Run the loop until *flag is set or @p ms elapse (a 2 ms ticker keeps each pass short). */
static bool run_until_set(struct event_base *base, const bool *flag, int ms)
{
    struct event *ticker = event_new(base, -1, EV_PERSIST, tick, NULL);
    struct timeval tv = {0, 2000};
    event_add(ticker, &tv);
    struct timeval start, now;
    evutil_gettimeofday(&start, NULL);
    for (;;) {
        if (flag && *flag)
            break;
        evutil_gettimeofday(&now, NULL);
        if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_usec - start.tv_usec) / 1000 >= ms)
            break;
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(ticker);
    return !flag || *flag;
}

/*
 * The engine's borrowed store freed from inside the engine's own callbacks (a
 * service's start or mutate) or from a bus subscriber: the engine detaches once
 * the callback returns, its service and subscription handles stay valid, and
 * nothing touches the freed store afterwards.
 */
START_TEST(store_freed_from_inside_a_callback)
{
    static const kraken_mutate to_on[] = {{"/PhysState", "PHYS_UNKNOWN", "POWER_ON"}};
    kraken_mutation_decl on = KRAKEN_MUTATION_DECL_INIT(
        .id = "UKtoON", KRAKEN_DECL_MUTATES(to_on), .context = KRAKEN_CONTEXT_ALL,
        .timeout_ms = 60000, .cost = 1);
    struct event_base *base = event_base_new();
    inner t = {.site = (free_site)_i};
    ck_assert_int_eq(kraken_store_new(&t.store), 0);
    kraken_engine_options o;
    ck_assert_int_eq(kraken_engine_options_init(&o, KRAKEN_ENGINE_OPTIONS_VERSION), 0);
    o.no_sync_service = true;
    ck_assert_int_eq(kraken_engine_new(&t.engine, base, t.store, &o), 0);
    kraken_service_ops ops = KRAKEN_SERVICE_OPS_INIT(.start = inner_start, .mutate = inner_mutate);
    ck_assert_int_eq(kraken_engine_add_service(t.engine, "probe", "probe", &ops, &t,
                                               inner_destroy, &t.service),
                     0);
    ck_assert_int_eq(kraken_service_declare_mutation(t.service, &on), 0);
    kraken_subscribe_options so = KRAKEN_SUBSCRIBE_OPTIONS_INIT;
    ck_assert_int_eq(kraken_bus_subscribe(kraken_engine_bus(t.engine), &so, inner_event, &t,
                                          inner_destroy, &t.sub),
                     0);
    kraken_uuid id = {{0x4a, 1}};
    kraken_node *n;
    ck_assert_int_eq(kraken_node_new(&n, &id), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/PhysState", "POWER_ON"), 0);
    ck_assert_int_eq(kraken_store_create(t.store, n), 0);
    kraken_node_free(n);

    ck_assert(run_until_set(base, &t.store_freed, 5000));
    ck_assert_int_eq(t.destroys, 2); /* the service's and the subscription's hooks, once */
    run_until_set(base, NULL, 30); /* passes, timers: none may touch the freed store */
    ck_assert_int_eq(kraken_engine_reset_node(t.engine, &id), KRAKEN_ESTATE);
    ck_assert_str_eq(kraken_error_last(),
                     "engine_reset_node: the engine was detached: its store was freed");
    ck_assert_int_eq(kraken_service_discover_text(t.service, &id, "/PhysState", "POWER_ON"),
                     KRAKEN_ESTATE);
    ck_assert_str_eq(kraken_error_last(), "service_discover_text: service 'probe' was detached: "
                                          "its engine was freed");
    kraken_service_remove(t.service);
    kraken_subscription_remove(t.sub);
    kraken_engine_free(t.engine);
    ck_assert_int_eq(t.destroys, 2);
    event_base_free(base);
}
END_TEST

/* ---- threads ------------------------------------------------------------------------------ */

static void on_timer(kraken_timer *timer, void *userdata)
{
    (void)timer;
    (void)userdata;
}

typedef struct intruder {
    world *w;
    int store_rc, engine_rc, service_rc, bus_rc, listen_rc, sync_rc, disable_rc, timer_rc;
    kraken_timer *timer;
    size_t count;
    bool frozen;
    kraken_store *engine_store;
    char store_msg[512], engine_msg[512];
} intruder;

static void *intrude(void *arg)
{
    intruder *t = arg;
    world *w = t->w;
    kraken_node *n;
    kraken_uuid id = {{7}};
    kraken_node_new(&n, &id); /* nodes are plain values: any thread may make them */
    t->store_rc = kraken_store_create(w->store, n);
    snprintf(t->store_msg, sizeof t->store_msg, "%s", kraken_error_last());
    kraken_node_free(n);
    t->count = kraken_store_count(w->store);
    t->listen_rc = kraken_store_listen(w->store, on_change, NULL, NULL, NULL);
    t->engine_rc = kraken_engine_reset_node(w->engine, &id);
    snprintf(t->engine_msg, sizeof t->engine_msg, "%s", kraken_error_last());
    kraken_engine_freeze(w->engine); /* refused: the engine stays thawed */
    t->engine_store = kraken_engine_store(w->engine);
    t->service_rc = kraken_service_set_state(w->service, KRAKEN_SERVICE_RUN, NULL);
    t->disable_rc = kraken_engine_mutation_disable(w->engine, "svc", "m", true);
    t->timer_rc = kraken_timer_arm(t->timer, 5);
    kraken_event ev = {.type = KRAKEN_EVENT_SYNC};
    t->bus_rc = kraken_bus_publish(w->bus, &ev);
    /* Frees from the wrong thread are refused too (the handles stay usable). */
    kraken_subscription_remove(w->sub);
    kraken_store_listener_remove(w->listener);
    kraken_engine_free(w->engine);
    kraken_sync_free(w->sync);
    kraken_store_free(w->store);
    kraken_sync_options so = KRAKEN_SYNC_OPTIONS_INIT;
    so.insecure = true;
    so.port = 0;
    kraken_sync *sync = NULL;
    t->sync_rc = kraken_sync_new(&sync, w->engine, w->base, &so);
    return NULL;
}

START_TEST(calls_from_another_thread_are_refused)
{
    world w;
    world_make(&w);
    intruder t = {.w = &w};
    ck_assert_int_eq(kraken_timer_new(&t.timer, w.engine, on_timer, NULL), 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, intrude, &t), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(t.store_rc, KRAKEN_ETHREAD);
    ck_assert_ptr_nonnull(strstr(t.store_msg, "store_create: called from thread "));
    ck_assert_ptr_nonnull(strstr(t.store_msg, "but the store belongs to thread "));
    ck_assert_uint_eq(t.count, 0);
    ck_assert_int_eq(t.listen_rc, KRAKEN_ETHREAD);
    ck_assert_int_eq(t.engine_rc, KRAKEN_ETHREAD);
    ck_assert_ptr_nonnull(strstr(t.engine_msg, "engine_reset_node: called from thread "));
    ck_assert_ptr_null(t.engine_store);
    ck_assert_int_eq(t.service_rc, KRAKEN_ETHREAD);
    ck_assert_int_eq(t.bus_rc, KRAKEN_ETHREAD);
    ck_assert_int_eq(t.sync_rc, KRAKEN_ETHREAD);
    ck_assert_int_eq(t.disable_rc, KRAKEN_ETHREAD);
    ck_assert_int_eq(t.timer_rc, KRAKEN_ETHREAD);
    ck_assert(!kraken_timer_armed(t.timer));
    /* Nothing changed, and everything still works from the owner thread. */
    ck_assert(!kraken_engine_frozen(w.engine));
    kraken_uuid id = {{7}};
    ck_assert(!kraken_store_contains(w.store, &id));
    ck_assert_int_eq(w.destroyed[H_SUBSCRIPTION] + w.destroyed[H_LISTENER], 0);
    ck_assert_uint_ne(kraken_sync_port(w.sync), 0);
    ck_assert_int_eq(kraken_service_set_state(w.service, KRAKEN_SERVICE_RUN, NULL), 0);
    for (int i = 0; i < N_HANDLES; i++)
        release(&w, i);
    /* A module timer outlives its engine as a detached handle. */
    ck_assert_int_eq(kraken_timer_arm(t.timer, 5), KRAKEN_ESTATE);
    kraken_timer_free(t.timer);
    event_base_free(w.base);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("lifetimes");
    TCase *tc = tcase_create("free orders");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, every_free_order, 0, N_HANDLES);
    tcase_add_test(tc, hooks_release_their_handles_while_detached);
    tcase_add_test(tc, standalone_bus_either_order);
    tcase_add_test(tc, store_free_from_its_listener_is_refused);
    tcase_add_test(tc, service_hook_removing_its_service);
    tcase_add_loop_test(tc, children_of_an_owned_store_outlive_the_engine, 0, 2);
    tcase_add_loop_test(tc, store_freed_from_inside_a_callback, 0, N_SITES);
    suite_add_tcase(s, tc);
    TCase *th = tcase_create("threads");
    tcase_add_test(th, calls_from_another_thread_are_refused);
    suite_add_tcase(s, th);
    return s;
}

KRAKEN_TEST_MAIN(make_suite)
