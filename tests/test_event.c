/* SPDX-License-Identifier: BSD-3-Clause */
/* Event bus: ordering, filters, bounded queues, cancellation, re-entrant publish, flush, free. */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

/* ---- helpers -------------------------------------------------------------- */

#define MAX_SEEN 64

typedef struct seen_event {
    kraken_event_type type;
    int kind;
    uint64_t seq;
    char url[128];
    bool has_url;
    kraken_value new_value;
} seen_event;

/* What one subscriber saw, plus knobs for callbacks that act on the bus. */
typedef struct recorder {
    seen_event ev[MAX_SEEN];
    size_t n;
    int destroyed;
    kraken_bus *bus;
    kraken_subscription *self;
    kraken_subscription *victim; /* cancelled on the first event */
    bool cancel_self_after_first;
    bool free_bus;              /* free the bus from inside the callback */
    int republish_below;        /* publish kind+100 for events of kind < this */
    int *in_publish;            /* set while the test is inside kraken_bus_publish */
    bool called_inside_publish;
} recorder;

static void recorder_fn(const kraken_event *e, void *userdata)
{
    recorder *r = userdata;
    if (r->in_publish && *r->in_publish)
        r->called_inside_publish = true;
    ck_assert_uint_lt(r->n, MAX_SEEN);
    seen_event *s = &r->ev[r->n++];
    s->type = e->type;
    s->kind = e->kind;
    s->seq = e->seq;
    s->has_url = e->url != NULL;
    snprintf(s->url, sizeof s->url, "%s", e->url ? e->url : "");
    if (e->new_value)
        ck_assert_int_eq(kraken_value_copy(&s->new_value, e->new_value), 0);
    if (r->victim) {
        kraken_subscription_remove(r->victim);
        r->victim = NULL;
    }
    if (r->cancel_self_after_first)
        kraken_subscription_remove(r->self);
    if (r->free_bus) {
        kraken_bus_free(r->bus);
        kraken_event late = {.type = KRAKEN_EVENT_SYNC};
        ck_assert_int_eq(kraken_bus_publish(r->bus, &late), KRAKEN_ESTATE);
        r->free_bus = false;
        return;
    }
    if (e->kind < r->republish_below) {
        kraken_event again = {.type = e->type, .kind = e->kind + 100, .url = e->url};
        ck_assert_int_eq(kraken_bus_publish(r->bus, &again), 0);
    }
}

static void recorder_destroy(void *userdata)
{
    ((recorder *)userdata)->destroyed++;
}

static void recorder_clear(recorder *r)
{
    for (size_t i = 0; i < r->n; i++)
        kraken_value_clear(&r->ev[i].new_value);
    r->n = 0;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

/* Run the loop until r has @p want events or 5 s pass; returns whether the count was reached. */
static bool run_until_count(struct event_base *base, const recorder *r, size_t want)
{
    bool expired = false;
    struct event *deadline = evtimer_new(base, on_deadline, &expired);
    struct timeval tv = {5, 0};
    evtimer_add(deadline, &tv);
    while (r->n < want && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(deadline);
    return r->n >= want;
}

/* Run the loop until nothing is pending except a short guard timer (lets stray deliveries show). */
static void run_idle(struct event_base *base)
{
    bool expired = false;
    struct event *guard = evtimer_new(base, on_deadline, &expired);
    struct timeval tv = {0, 20000};
    evtimer_add(guard, &tv);
    while (!expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(guard);
}

static struct event_base *base;
static kraken_bus *bus;

static void setup(void)
{
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    ck_assert_int_eq(kraken_bus_new(&bus, base), 0);
}

static void teardown(void)
{
    kraken_bus_free(bus);
    bus = NULL;
    event_base_free(base);
    base = NULL;
}

static void publish_change(int kind, const char *url)
{
    kraken_event e = {.type = KRAKEN_EVENT_STATE_CHANGE, .kind = kind, .url = url};
    ck_assert_int_eq(kraken_bus_publish(bus, &e), 0);
}

/* ---- tests ---------------------------------------------------------------- */

START_TEST(delivers_copies_in_order_from_loop)
{
    static recorder r;
    memset(&r, 0, sizeof r);
    int in_publish = 0;
    r.in_publish = &in_publish;
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, recorder_fn, &r, recorder_destroy, NULL), 0);

    char url[32];
    for (int i = 0; i < 5; i++) {
        snprintf(url, sizeof url, "/Url%d", i);
        kraken_value v = kraken_value_string("payload");
        kraken_event e = {.type = KRAKEN_EVENT_DISCOVERY, .kind = i, .url = url, .new_value = &v,
                          .service_id = "svc", .seq = 999};
        in_publish = 1;
        ck_assert_int_eq(kraken_bus_publish(bus, &e), 0);
        in_publish = 0;
        kraken_value_clear(&v);
        memset(url, 'x', sizeof url - 1); /* the bus must have copied the string */
        url[sizeof url - 1] = '\0';
    }
    ck_assert_uint_eq(r.n, 0); /* never from inside publish */
    ck_assert(run_until_count(base, &r, 5));
    ck_assert(!r.called_inside_publish);
    for (int i = 0; i < 5; i++) {
        char expect[32];
        snprintf(expect, sizeof expect, "/Url%d", i);
        ck_assert_int_eq(r.ev[i].kind, i);
        ck_assert_int_eq(r.ev[i].type, KRAKEN_EVENT_DISCOVERY);
        ck_assert_str_eq(r.ev[i].url, expect);
        ck_assert_int_eq(r.ev[i].new_value.type, KRAKEN_T_STRING);
        ck_assert_str_eq(r.ev[i].new_value.v.str.data, "payload");
        if (i > 0)
            ck_assert_uint_gt(r.ev[i].seq, r.ev[i - 1].seq); /* bus-assigned, not 999 */
    }
    run_idle(base);
    ck_assert_uint_eq(r.n, 5);
    recorder_clear(&r);
}
END_TEST

START_TEST(filters_by_type)
{
    static recorder changes, disc, both;
    memset(&changes, 0, sizeof changes);
    memset(&disc, 0, sizeof disc);
    memset(&both, 0, sizeof both);
    kraken_subscribe_options o1 = KRAKEN_SUBSCRIBE_OPTIONS_INIT, o2 = o1, o3 = o1;
    o1.types = KRAKEN_EVENT_MASK(KRAKEN_EVENT_STATE_CHANGE);
    o2.types = KRAKEN_EVENT_MASK(KRAKEN_EVENT_DISCOVERY);
    o3.types = KRAKEN_EVENT_MASK(KRAKEN_EVENT_DISCOVERY) | KRAKEN_EVENT_MASK(KRAKEN_EVENT_SYNC);
    ck_assert_int_eq(kraken_bus_subscribe(bus, &o1, recorder_fn, &changes, NULL, NULL), 0);
    ck_assert_int_eq(kraken_bus_subscribe(bus, &o2, recorder_fn, &disc, NULL, NULL), 0);
    ck_assert_int_eq(kraken_bus_subscribe(bus, &o3, recorder_fn, &both, NULL, NULL), 0);

    kraken_event_type order[] = {KRAKEN_EVENT_SYNC, KRAKEN_EVENT_STATE_CHANGE,
                                 KRAKEN_EVENT_DISCOVERY, KRAKEN_EVENT_STATE_MUTATION,
                                 KRAKEN_EVENT_DISCOVERY, KRAKEN_EVENT_SERVICE};
    for (int i = 0; i < 6; i++) {
        kraken_event e = {.type = order[i], .kind = i};
        ck_assert_int_eq(kraken_bus_publish(bus, &e), 0);
    }
    ck_assert(run_until_count(base, &both, 3));
    run_idle(base);
    ck_assert_uint_eq(changes.n, 1);
    ck_assert_int_eq(changes.ev[0].kind, 1);
    ck_assert_uint_eq(disc.n, 2);
    ck_assert_int_eq(disc.ev[0].kind, 2);
    ck_assert_int_eq(disc.ev[1].kind, 4);
    ck_assert_uint_eq(both.n, 3);
    ck_assert_int_eq(both.ev[0].kind, 0);
    ck_assert_int_eq(both.ev[1].kind, 2);
    ck_assert_int_eq(both.ev[2].kind, 4);
}
END_TEST

START_TEST(filters_by_url_pattern)
{
    static recorder phys, ipv4;
    memset(&phys, 0, sizeof phys);
    memset(&ipv4, 0, sizeof ipv4);
    kraken_subscribe_options o1 = KRAKEN_SUBSCRIBE_OPTIONS_INIT, o2 = o1;
    o1.url_pattern = "/PhysState";
    o2.url_pattern = "*IPv4.IPv4OverEthernet/Ifaces/*/Ip/Ip";
    ck_assert_int_eq(kraken_bus_subscribe(bus, &o1, recorder_fn, &phys, NULL, NULL), 0);
    ck_assert_int_eq(kraken_bus_subscribe(bus, &o2, recorder_fn, &ipv4, NULL, NULL), 0);

    publish_change(0, "/PhysState");
    publish_change(1, NULL); /* a CREATE has no URL: no pattern but "*" matches it */
    publish_change(2, "/PhysStateX");
    publish_change(3, "/type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Ip/Ip");
    publish_change(4, "/type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Eth/Mtu");
    publish_change(5, "PhysState");
    ck_assert(run_until_count(base, &phys, 2));
    run_idle(base);
    ck_assert_uint_eq(phys.n, 2);
    ck_assert_int_eq(phys.ev[0].kind, 0);
    ck_assert_int_eq(phys.ev[1].kind, 5);
    ck_assert_uint_eq(ipv4.n, 1);
    ck_assert_int_eq(ipv4.ev[0].kind, 3);
}
END_TEST

START_TEST(url_glob_rules)
{
    ck_assert(kraken_url_match("*", "/anything/at/all"));
    ck_assert(kraken_url_match("*", ""));
    ck_assert(kraken_url_match("*", NULL));
    ck_assert(kraken_url_match(NULL, NULL));
    ck_assert(!kraken_url_match("/PhysState", NULL));
    ck_assert(kraken_url_match("/PhysState", "/PhysState"));
    ck_assert(kraken_url_match("PhysState", "/PhysState")); /* leading '/' optional */
    ck_assert(kraken_url_match("/physstate", "PhysState")); /* case-insensitive */
    ck_assert(!kraken_url_match("/PhysState", "/PhysStates"));
    ck_assert(!kraken_url_match("/PhysStates", "/PhysState"));
    ck_assert(kraken_url_match("/Phys?tate", "/PhysState"));
    ck_assert(!kraken_url_match("/Phys?State", "/PhysState"));
    ck_assert(kraken_url_match("/Services/*/State", "/Services/pxe/State"));
    ck_assert(kraken_url_match("a*b*c", "aXbYbZc"));
    ck_assert(!kraken_url_match("a*b*c", "aXbYbZ"));
    ck_assert(kraken_url_match("**a", "bbba"));
    ck_assert(kraken_url_match("a*", "a"));
    ck_assert(!kraken_url_match("?", ""));
}
END_TEST

START_TEST(full_queue_drops_oldest_and_counts)
{
    static recorder r;
    memset(&r, 0, sizeof r);
    kraken_subscription *sub;
    kraken_subscribe_options o = KRAKEN_SUBSCRIBE_OPTIONS_INIT;
    o.queue_limit = 3;
    ck_assert_int_eq(kraken_bus_subscribe(bus, &o, recorder_fn, &r, NULL, &sub), 0);
    ck_assert_uint_eq(kraken_subscription_dropped(sub), 0);
    for (int i = 0; i < 10; i++)
        publish_change(i, "/X");
    ck_assert_uint_eq(kraken_subscription_dropped(sub), 7);
    ck_assert(run_until_count(base, &r, 3));
    run_idle(base);
    ck_assert_uint_eq(r.n, 3);
    ck_assert_int_eq(r.ev[0].kind, 7);
    ck_assert_int_eq(r.ev[1].kind, 8);
    ck_assert_int_eq(r.ev[2].kind, 9);

    /* A default-sized queue keeps everything a moderate burst holds. */
    static recorder big;
    memset(&big, 0, sizeof big);
    kraken_subscription *bsub;
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, recorder_fn, &big, NULL, &bsub), 0);
    for (int i = 0; i < MAX_SEEN; i++)
        publish_change(i, "/X");
    ck_assert(run_until_count(base, &big, MAX_SEEN));
    ck_assert_uint_eq(kraken_subscription_dropped(bsub), 0);
    for (int i = 0; i < MAX_SEEN; i++)
        ck_assert_int_eq(big.ev[i].kind, i);
    ck_assert_uint_eq(kraken_subscription_dropped(sub), 7 + MAX_SEEN - 3);
    ck_assert_uint_eq(kraken_subscription_dropped(NULL), 0);
    kraken_subscription_remove(sub);
    kraken_subscription_remove(bsub);
}
END_TEST

START_TEST(cancel_during_delivery)
{
    static recorder a, b, c, d;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    memset(&d, 0, sizeof d);
    kraken_subscription *sc;
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, recorder_fn, &a, recorder_destroy, &a.self), 0);
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, recorder_fn, &b, recorder_destroy, NULL), 0);
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, recorder_fn, &c, recorder_destroy, &sc), 0);
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, recorder_fn, &d, recorder_destroy, NULL), 0);
    a.cancel_self_after_first = true; /* a cancels itself on its first event */
    b.victim = sc;                    /* b cancels c (later in the list) on its first event */

    for (int i = 0; i < 3; i++)
        publish_change(i, "/X");
    ck_assert(run_until_count(base, &d, 3));
    run_idle(base);
    ck_assert_uint_eq(a.n, 1);
    ck_assert_int_eq(a.destroyed, 1);
    ck_assert_uint_eq(b.n, 3);
    ck_assert_int_eq(b.destroyed, 0);
    ck_assert_uint_eq(c.n, 0);
    ck_assert_int_eq(c.destroyed, 1);
    ck_assert_uint_eq(d.n, 3);

    /* Cancelling outside delivery runs the hook at once; cancelling NULL is harmless. */
    kraken_subscription *se;
    static recorder e;
    memset(&e, 0, sizeof e);
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, recorder_fn, &e, recorder_destroy, &se), 0);
    publish_change(9, "/X");
    kraken_subscription_remove(se);
    ck_assert_int_eq(e.destroyed, 1);
    kraken_subscription_remove(NULL);
    ck_assert(run_until_count(base, &d, 4));
    ck_assert_uint_eq(e.n, 0);
}
END_TEST

START_TEST(publish_from_callback_is_delivered_later_in_order)
{
    static recorder r, other;
    memset(&r, 0, sizeof r);
    memset(&other, 0, sizeof other);
    r.bus = bus;
    r.republish_below = 100; /* each original event is re-published once as kind+100 */
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, recorder_fn, &r, NULL, NULL), 0);
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, recorder_fn, &other, NULL, NULL), 0);
    for (int i = 0; i < 3; i++)
        publish_change(i, "/X");
    ck_assert(run_until_count(base, &r, 6));
    ck_assert(run_until_count(base, &other, 6));
    run_idle(base);
    int expect[] = {0, 1, 2, 100, 101, 102};
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(r.ev[i].kind, expect[i]);
        ck_assert_int_eq(other.ev[i].kind, expect[i]);
        if (i > 0)
            ck_assert_uint_gt(r.ev[i].seq, r.ev[i - 1].seq);
    }
    ck_assert_uint_eq(r.n, 6);
}
END_TEST

START_TEST(flush_delivers_synchronously)
{
    static recorder r;
    memset(&r, 0, sizeof r);
    r.bus = bus;
    r.republish_below = 1; /* kind 0 publishes kind 100: that one goes to the loop */
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, recorder_fn, &r, NULL, NULL), 0);
    publish_change(0, "/A");
    publish_change(1, "/B");
    ck_assert_uint_eq(r.n, 0);
    kraken_bus_flush(bus);
    ck_assert_uint_eq(r.n, 2);
    ck_assert_int_eq(r.ev[0].kind, 0);
    ck_assert_int_eq(r.ev[1].kind, 1);
    ck_assert(run_until_count(base, &r, 3));
    ck_assert_int_eq(r.ev[2].kind, 100);
    run_idle(base);
    ck_assert_uint_eq(r.n, 3);
    kraken_bus_flush(bus); /* nothing queued: no effect */
    kraken_bus_flush(NULL);
    ck_assert_uint_eq(r.n, 3);
}
END_TEST

START_TEST(free_with_pending_events)
{
    static recorder a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, recorder_fn, &a, recorder_destroy, NULL), 0);
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, recorder_fn, &b, recorder_destroy, NULL), 0);
    for (int i = 0; i < 5; i++) {
        kraken_value old = kraken_value_string("old"), nv = kraken_value_string("new");
        kraken_event e = {.type = KRAKEN_EVENT_STATE_CHANGE, .url = "/Nodename",
                          .old_value = &old, .new_value = &nv, .message = "why"};
        ck_assert_int_eq(kraken_bus_publish(bus, &e), 0);
        kraken_value_clear(&old);
        kraken_value_clear(&nv);
    }
    kraken_bus_free(bus);
    bus = NULL;
    ck_assert_int_eq(a.destroyed, 1);
    ck_assert_int_eq(b.destroyed, 1);
    /* The loop has nothing left to run for the freed bus. */
    run_idle(base);
    ck_assert_uint_eq(a.n, 0);
    ck_assert_uint_eq(b.n, 0);
    kraken_bus_free(NULL);
}
END_TEST

START_TEST(free_from_a_callback)
{
    static recorder a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.bus = bus;
    a.free_bus = true;
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, recorder_fn, &a, recorder_destroy, NULL), 0);
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, recorder_fn, &b, recorder_destroy, NULL), 0);
    publish_change(0, "/X");
    publish_change(1, "/X");
    bus = NULL; /* the callback frees it */
    ck_assert(run_until_count(base, &a, 1));
    run_idle(base);
    ck_assert_uint_eq(a.n, 1); /* nothing after the free */
    ck_assert_uint_eq(b.n, 0);
    ck_assert_int_eq(a.destroyed, 1);
    ck_assert_int_eq(b.destroyed, 1);
}
END_TEST

START_TEST(type_names)
{
    ck_assert_str_eq(kraken_event_type_name(KRAKEN_EVENT_STATE_CHANGE), "STATE_CHANGE");
    ck_assert_str_eq(kraken_event_type_name(KRAKEN_EVENT_STATE_MUTATION), "STATE_MUTATION");
    ck_assert_str_eq(kraken_event_type_name(KRAKEN_EVENT_DISCOVERY), "DISCOVERY");
    ck_assert_str_eq(kraken_event_type_name(KRAKEN_EVENT_SERVICE), "SERVICE");
    ck_assert_str_eq(kraken_event_type_name(KRAKEN_EVENT_SYNC), "SYNC");
    ck_assert_ptr_null(kraken_event_type_name((kraken_event_type)3));

    kraken_event_type t = KRAKEN_EVENT_SYNC;
    ck_assert_int_eq(kraken_event_type_parse(&t, "DISCOVERY"), 0);
    ck_assert_int_eq(t, KRAKEN_EVENT_DISCOVERY);
    ck_assert_int_eq(kraken_event_type_parse(&t, "state_mutation"), 0);
    ck_assert_int_eq(t, KRAKEN_EVENT_STATE_MUTATION);
    ck_assert_int_eq(kraken_event_type_parse(&t, "1"), 0);
    ck_assert_int_eq(t, KRAKEN_EVENT_STATE_CHANGE);
    t = KRAKEN_EVENT_SYNC;
    /* refused with a message naming the text */
    ck_assert_int_eq(kraken_event_type_parse(&t, "3"), KRAKEN_EPARSE);
    ck_assert_str_eq(kraken_error_last(), "unknown event type '3'");
    ck_assert_int_eq(kraken_event_type_parse(&t, "ALL"), KRAKEN_EPARSE);
    ck_assert_str_eq(kraken_error_last(), "unknown event type 'ALL'");
    ck_assert_int_eq(kraken_event_type_parse(&t, "1x"), KRAKEN_EPARSE);
    ck_assert_str_eq(kraken_error_last(), "unknown event type '1x'");
    ck_assert_int_eq(kraken_event_type_parse(&t, ""), KRAKEN_EPARSE);
    ck_assert_str_eq(kraken_error_last(), "unknown event type ''");
    ck_assert_int_eq(t, KRAKEN_EVENT_SYNC); /* unchanged on error */
    ck_assert_int_eq(kraken_event_type_parse(&t, NULL), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_event_type_parse(NULL, "SYNC"), KRAKEN_EINVAL);
}
END_TEST

START_TEST(bad_arguments)
{
    kraken_bus *b = (kraken_bus *)1;
    ck_assert_int_eq(kraken_bus_new(&b, NULL), KRAKEN_EINVAL);
    ck_assert_ptr_null(b);
    ck_assert_int_eq(kraken_bus_new(NULL, base), KRAKEN_EINVAL);

    static recorder r;
    memset(&r, 0, sizeof r);
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, recorder_fn, &r, NULL, NULL), 0);
    kraken_event e = {.type = KRAKEN_EVENT_STATE_CHANGE};
    ck_assert_int_eq(kraken_bus_publish(NULL, &e), KRAKEN_EINVAL);
    ck_assert_int_eq(kraken_bus_publish(bus, NULL), KRAKEN_EINVAL);
    e.type = (kraken_event_type)3;
    ck_assert_int_eq(kraken_bus_publish(bus, &e), KRAKEN_EINVAL);
    kraken_subscription *s = (kraken_subscription *)1;
    ck_assert_int_eq(kraken_bus_subscribe(bus, NULL, NULL, NULL, NULL, &s), KRAKEN_EINVAL);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(kraken_bus_subscribe(NULL, NULL, recorder_fn, NULL, NULL, NULL),
                     KRAKEN_EINVAL);
    /* Option structs carry a version: 0 (a struct not started from the INIT) and unknown ones
     * are refused with a message that says what to do. */
    kraken_subscribe_options bad = {.types = KRAKEN_EVENT_MASK(KRAKEN_EVENT_SYNC)};
    ck_assert_int_eq(kraken_bus_subscribe(bus, &bad, recorder_fn, NULL, NULL, NULL),
                     KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "bus_subscribe: options version 0, expected 1..1 "
                                          "(start from KRAKEN_SUBSCRIBE_OPTIONS_INIT)");
    ck_assert_int_eq(kraken_subscribe_options_init(&bad, 2), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "subscribe_options_init: version 2, this library "
                                          "knows 1..1");
    run_idle(base);
    ck_assert_uint_eq(r.n, 0); /* refused publishes delivered nothing */

    /* Publishing with no interested subscriber succeeds and queues nothing. */
    kraken_subscribe_options o;
    ck_assert_int_eq(kraken_subscribe_options_init(&o, KRAKEN_SUBSCRIBE_OPTIONS_VERSION), 0);
    o.types = KRAKEN_EVENT_MASK(KRAKEN_EVENT_SYNC);
    static recorder sync;
    memset(&sync, 0, sizeof sync);
    ck_assert_int_eq(kraken_bus_subscribe(bus, &o, recorder_fn, &sync, NULL, NULL), 0);
    publish_change(0, "/X");
    ck_assert(run_until_count(base, &r, 1));
    run_idle(base);
    ck_assert_uint_eq(sync.n, 0);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("event");
    TCase *tc = tcase_create("bus");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, delivers_copies_in_order_from_loop);
    tcase_add_test(tc, filters_by_type);
    tcase_add_test(tc, filters_by_url_pattern);
    tcase_add_test(tc, url_glob_rules);
    tcase_add_test(tc, full_queue_drops_oldest_and_counts);
    tcase_add_test(tc, cancel_during_delivery);
    tcase_add_test(tc, publish_from_callback_is_delivered_later_in_order);
    tcase_add_test(tc, flush_delivers_synchronously);
    tcase_add_test(tc, free_with_pending_events);
    tcase_add_test(tc, free_from_a_callback);
    tcase_add_test(tc, type_names);
    tcase_add_test(tc, bad_arguments);
    suite_add_tcase(s, tc);
    return s;
}
KRAKEN_TEST_MAIN(make_suite)
