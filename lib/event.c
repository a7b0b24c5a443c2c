/*
 * The event bus (SPEC 5) on a caller's libevent loop.
 *
 * publish() makes one shared, reference-counted copy of the event and puts a
 * pointer to it in the queue (a ring buffer) of every matching subscriber, so
 * an event costs one allocation however many subscribers get it. Delivery is
 * done by one deferred event (no fd, made active by publish) so callbacks
 * never run inside publish(). A delivery pass hands each subscriber, in
 * registration order, its queued events up to the last one published before
 * the pass began; events published by callbacks wait for the next pass, which
 * keeps every subscriber's order and bounds the pass.
 *
 * Subscriptions removed during a pass are only marked: the pass still walks
 * the list, so they are unlinked and freed (destroy hook included) after it.
 *
 * Lifetime (see event.h): a subscription whose handle the caller asked for is
 * the caller's until kraken_subscription_remove(). The bus's free detaches it
 * (bus = NULL, destroy hook run); the later remove only frees the shell.
 */
#include <ctype.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util_private.h"

#define BUS_DEFAULT_QUEUE_LIMIT 4096
#define BUS_INITIAL_QUEUE 8

/* One published event, shared by every queue that holds it. */
typedef struct bus_event {
    size_t refs;
    kraken_event ev; /* pointers below point into this block */
    kraken_value old_value, new_value;
    char strings[]; /* url, service_id, mutation_id, message, NUL-separated */
} bus_event;

struct kraken_subscription {
    kraken_bus *bus; /* NULL once detached by the bus's free */
    struct kraken_subscription *prev, *next;
    unsigned types;
    char *pattern; /* NULL: every URL */
    kraken_event_fn fn;
    void *userdata;
    void (*destroy)(void *userdata);
    /* Ring buffer of queued events; grows up to limit. */
    bus_event **ring;
    size_t head, len, cap, limit;
    uint64_t dropped;
    bool cancelled;
    bool caller_owned; /* the caller holds the handle and has not removed it yet */
    bool detaching;    /* its destroy hook runs as the bus goes: a remove only disowns it */
};

struct kraken_bus {
    struct event_base *base;
    struct event *deliver_ev;
    kraken_subscription *first, *last;
    uint64_t seq;
    unsigned delivering;  /* a delivery pass is running */
    bool need_reap;       /* some subscription was cancelled during the pass */
    bool free_pending;    /* kraken_bus_free() was called by a callback during the pass */
    kraken__owner owner;
};

/* ---- event type names ------------------------------------------------------ */

static const struct {
    kraken_event_type type;
    const char *name;
} type_names[] = {
    {KRAKEN_EVENT_STATE_CHANGE, "STATE_CHANGE"}, {KRAKEN_EVENT_STATE_MUTATION, "STATE_MUTATION"},
    {KRAKEN_EVENT_DISCOVERY, "DISCOVERY"},       {KRAKEN_EVENT_SERVICE, "SERVICE"},
    {KRAKEN_EVENT_SYNC, "SYNC"},
};
#define N_TYPE_NAMES (sizeof type_names / sizeof type_names[0])

const char *kraken_event_type_name(kraken_event_type type)
{
    for (size_t i = 0; i < N_TYPE_NAMES; i++)
        if (type_names[i].type == type)
            return type_names[i].name;
    return NULL;
}

/* Accepts the names in any case and, as the websocket protocol sends them, the numbers. */
int kraken_event_type_parse(kraken_event_type *out, const char *name)
{
    if (!name || !out)
        return kraken__err(KRAKEN_EINVAL, "event_type_parse: name and out must not be NULL");
    for (size_t i = 0; i < N_TYPE_NAMES; i++) {
        if (strcasecmp(name, type_names[i].name) == 0) {
            *out = type_names[i].type;
            return 0;
        }
    }
    char *end;
    long num = *name && isdigit((unsigned char)*name) ? strtol(name, &end, 10) : -1;
    if (num >= 0 && *end == '\0' && kraken_event_type_name((kraken_event_type)num)) {
        *out = (kraken_event_type)num;
        return 0;
    }
    return kraken__err(KRAKEN_EPARSE, "unknown event type '%s'", name);
}

/* ---- URL globs --------------------------------------------------------------- */

static bool chars_match(char p, char u)
{
    return tolower((unsigned char)p) == tolower((unsigned char)u);
}

/*
 * Glob match, case-insensitive like URL field names (SPEC 1.3). A leading '/'
 * is optional on both sides, as in URLs. Linear backtracking: on a mismatch,
 * resume after the last '*' with one more character swallowed by it.
 */
bool kraken_url_match(const char *pattern, const char *url)
{
    if (!pattern)
        return true;
    if (!url)
        url = "";
    if (*pattern == '/')
        pattern++;
    if (*url == '/')
        url++;
    const char *star = NULL, *resume = NULL;
    while (*url) {
        if (*pattern == '*') {
            star = pattern++;
            resume = url;
        } else if (*pattern && (*pattern == '?' || chars_match(*pattern, *url))) {
            pattern++;
            url++;
        } else if (star) {
            pattern = star + 1;
            url = ++resume;
        } else {
            return false;
        }
    }
    while (*pattern == '*')
        pattern++;
    return *pattern == '\0';
}

/* ---- shared event copies --------------------------------------------------- */

static void bus_event_unref(bus_event *be)
{
    if (!be || --be->refs > 0)
        return;
    kraken_value_clear(&be->old_value);
    kraken_value_clear(&be->new_value);
    free(be);
}

static size_t opt_len(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* Append @p s to the string area; returns the copy (NULL for NULL). */
static const char *put_string(char **cursor, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *dst = *cursor;
    memcpy(dst, s, n);
    *cursor += n;
    return dst;
}

static int copy_value(kraken_value *dst, const kraken_value *src, const kraken_value **field)
{
    if (!src) {
        *field = NULL;
        return 0;
    }
    *field = dst;
    return kraken_value_copy(dst, src);
}

static int bus_event_new(const kraken_event *src, uint64_t seq, bus_event **out)
{
    size_t strings = opt_len(src->url) + opt_len(src->service_id) + opt_len(src->mutation_id) +
                     opt_len(src->message);
    bus_event *be = calloc(1, sizeof *be + strings);
    if (!be)
        return kraken__err(KRAKEN_ENOMEM, "bus_publish: out of memory");
    be->refs = 1;
    be->ev = *src;
    be->ev.seq = seq;
    char *cursor = be->strings;
    be->ev.url = put_string(&cursor, src->url);
    be->ev.service_id = put_string(&cursor, src->service_id);
    be->ev.mutation_id = put_string(&cursor, src->mutation_id);
    be->ev.message = put_string(&cursor, src->message);
    int rc = copy_value(&be->old_value, src->old_value, &be->ev.old_value);
    if (rc == 0)
        rc = copy_value(&be->new_value, src->new_value, &be->ev.new_value);
    if (rc < 0) {
        bus_event_unref(be);
        return rc;
    }
    *out = be;
    return 0;
}

/* ---- subscriber queues --------------------------------------------------------- */

static bus_event *queue_pop(kraken_subscription *sub)
{
    bus_event *be = sub->ring[sub->head];
    sub->head = (sub->head + 1) % sub->cap;
    sub->len--;
    return be;
}

static void queue_clear(kraken_subscription *sub)
{
    while (sub->len)
        bus_event_unref(queue_pop(sub));
    free(sub->ring);
    sub->ring = NULL;
    sub->head = sub->cap = 0;
}

/* Grow the ring (keeping order) toward the limit; false if no memory. */
static bool queue_grow(kraken_subscription *sub)
{
    size_t cap = sub->cap ? sub->cap * 2 : BUS_INITIAL_QUEUE;
    if (cap > sub->limit)
        cap = sub->limit;
    bus_event **ring = malloc(cap * sizeof *ring);
    if (!ring)
        return false;
    for (size_t i = 0; i < sub->len; i++)
        ring[i] = sub->ring[(sub->head + i) % sub->cap];
    free(sub->ring);
    sub->ring = ring;
    sub->head = 0;
    sub->cap = cap;
    return true;
}

/* Queue one event; a full queue (or no memory to grow it) drops its oldest event. */
static void queue_push(kraken_subscription *sub, bus_event *be)
{
    if (sub->len == sub->cap && sub->cap < sub->limit)
        queue_grow(sub);
    if (sub->cap == 0) {
        sub->dropped++; /* no memory for even a small queue */
        return;
    }
    if (sub->len == sub->cap) {
        bus_event_unref(queue_pop(sub));
        sub->dropped++;
    }
    sub->ring[(sub->head + sub->len) % sub->cap] = be;
    sub->len++;
    be->refs++;
}

static bool sub_wants(const kraken_subscription *sub, const kraken_event *ev)
{
    if (sub->cancelled || !(sub->types & KRAKEN_EVENT_MASK(ev->type)))
        return false;
    return kraken_url_match(sub->pattern, ev->url);
}

/* ---- subscriptions ------------------------------------------------------------- */

/* Bytes of the options struct a caller of @p version has (0: unknown). See engine.c. */
static size_t subscribe_options_size(unsigned version)
{
    return version == 1 ? offsetof(kraken_subscribe_options, queue_limit) + sizeof(size_t) : 0;
}

/* The caller's options (NULL: all events) over the defaults, reading only its version's bytes. */
static int subscribe_options_read(const kraken_subscribe_options *caller,
                                  kraken_subscribe_options *out)
{
    static const kraken_subscribe_options defaults = KRAKEN_SUBSCRIBE_OPTIONS_INIT;
    *out = defaults;
    if (!caller)
        return 0;
    size_t size = subscribe_options_size(caller->version);
    if (size == 0)
        return kraken__err(KRAKEN_EINVAL, "bus_subscribe: options version %u, expected 1..%u "
                           "(start from KRAKEN_SUBSCRIBE_OPTIONS_INIT)", caller->version,
                           KRAKEN_SUBSCRIBE_OPTIONS_VERSION);
    memcpy(out, caller, size);
    return 0;
}

int kraken_subscribe_options_init(kraken_subscribe_options *opts, unsigned version)
{
    if (!opts)
        return kraken__err(KRAKEN_EINVAL, "subscribe_options_init: opts must not be NULL");
    if (subscribe_options_size(version) == 0)
        return kraken__err(KRAKEN_EINVAL, "subscribe_options_init: version %u, this library "
                                          "knows 1..%u", version, KRAKEN_SUBSCRIBE_OPTIONS_VERSION);
    static const kraken_subscribe_options defaults = KRAKEN_SUBSCRIBE_OPTIONS_INIT;
    *opts = defaults;
    opts->version = version;
    return 0;
}

static void sub_unlink(kraken_bus *bus, kraken_subscription *sub)
{
    if (sub->prev)
        sub->prev->next = sub->next;
    else
        bus->first = sub->next;
    if (sub->next)
        sub->next->prev = sub->prev;
    else
        bus->last = sub->prev;
}

static void sub_free(kraken_subscription *sub)
{
    queue_clear(sub);
    if (sub->destroy)
        sub->destroy(sub->userdata);
    free(sub->pattern);
    free(sub);
}

/*
 * The bus goes away under an unlinked subscription: run its destroy hook and
 * keep the handle (detached) if the caller still holds it.
 */
static void sub_detach(kraken_subscription *sub)
{
    queue_clear(sub);
    sub->bus = NULL;
    sub->cancelled = true;
    free(sub->pattern);
    sub->pattern = NULL;
    void (*destroy)(void *) = sub->destroy;
    sub->destroy = NULL;
    sub->detaching = true;
    if (destroy)
        destroy(sub->userdata); /* may call kraken_subscription_remove(sub): it only disowns it */
    sub->detaching = false;
    if (!sub->caller_owned)
        free(sub);
}

/* Free the subscriptions cancelled during a pass, once no pass is walking the list. */
static void bus_reap(kraken_bus *bus)
{
    kraken_subscription *sub = bus->first;
    while (sub) {
        kraken_subscription *next = sub->next;
        if (sub->cancelled) {
            sub_unlink(bus, sub);
            sub_free(sub);
        }
        sub = next;
    }
    bus->need_reap = false;
}

int kraken_bus_subscribe(kraken_bus *bus, const kraken_subscribe_options *opts, kraken_event_fn fn,
                         void *userdata, void (*destroy)(void *userdata),
                         kraken_subscription **out)
{
    if (out)
        *out = NULL;
    if (!bus || !fn)
        return kraken__err(KRAKEN_EINVAL, "bus_subscribe: bus and fn must not be NULL");
    int rc = kraken__owner_check(&bus->owner, "bus_subscribe", "bus");
    if (rc < 0)
        return rc;
    kraken_subscribe_options o;
    if ((rc = subscribe_options_read(opts, &o)) < 0)
        return rc;
    opts = &o;
    if (bus->free_pending)
        return kraken__err(KRAKEN_ESTATE, "bus_subscribe: the bus is being freed");
    kraken_subscription *sub = calloc(1, sizeof *sub);
    if (!sub)
        return kraken__err(KRAKEN_ENOMEM, "bus_subscribe: out of memory");
    sub->types = opts && opts->types ? opts->types : KRAKEN_EVENT_MASK_ALL;
    sub->limit = opts && opts->queue_limit ? opts->queue_limit : BUS_DEFAULT_QUEUE_LIMIT;
    if (opts && opts->url_pattern && !(sub->pattern = strdup(opts->url_pattern))) {
        free(sub);
        return kraken__err(KRAKEN_ENOMEM, "bus_subscribe: out of memory");
    }
    sub->bus = bus;
    sub->fn = fn;
    sub->userdata = userdata;
    sub->destroy = destroy;
    sub->caller_owned = out != NULL;
    sub->prev = bus->last;
    if (bus->last)
        bus->last->next = sub;
    else
        bus->first = sub;
    bus->last = sub;
    if (out)
        *out = sub;
    return 0;
}

void kraken_subscription_remove(kraken_subscription *sub)
{
    if (!sub)
        return;
    kraken_bus *bus = sub->bus;
    if (!bus) {
        /* Detached by the bus's free: its destroy hook ran (or is running). */
        if (sub->detaching)
            sub->caller_owned = false; /* freed when the hook returns */
        else
            free(sub);
        return;
    }
    if (kraken__owner_check(&bus->owner, "subscription_remove", "bus") < 0)
        return;
    sub->caller_owned = false; /* a pending reap or bus free now frees it */
    if (sub->cancelled)
        return;
    sub->cancelled = true;
    if (bus->delivering) {
        /* A pass may be walking through this subscription: only stop its deliveries now. */
        queue_clear(sub);
        bus->need_reap = true;
        return;
    }
    sub_unlink(bus, sub);
    sub_free(sub);
}

uint64_t kraken_subscription_dropped(const kraken_subscription *sub)
{
    if (!sub || (sub->bus && kraken__owner_check(&sub->bus->owner, "subscription_dropped",
                                                 "bus") < 0))
        return 0;
    return sub->dropped;
}

/* ---- delivery ---------------------------------------------------------------- */

static void schedule(kraken_bus *bus)
{
    event_active(bus->deliver_ev, EV_TIMEOUT, 0);
}

static void bus_destroy(kraken_bus *bus);

/* Deliver every queued event published up to @p last_seq; true if some remain queued. */
static bool deliver_pass(kraken_bus *bus, uint64_t last_seq)
{
    bus->delivering++;
    for (kraken_subscription *sub = bus->first; sub; sub = sub->next) {
        while (!sub->cancelled && sub->len && sub->ring[sub->head]->ev.seq <= last_seq) {
            bus_event *be = queue_pop(sub);
            sub->fn(&be->ev, sub->userdata);
            bus_event_unref(be);
        }
    }
    bus->delivering--;
    if (bus->free_pending) {
        bus_destroy(bus);
        return false;
    }
    if (bus->need_reap)
        bus_reap(bus);
    for (kraken_subscription *sub = bus->first; sub; sub = sub->next)
        if (!sub->cancelled && sub->len)
            return true;
    return false;
}

static void deliver_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kraken_bus *bus = arg;
    if (deliver_pass(bus, bus->seq))
        schedule(bus);
}

void kraken_bus_flush(kraken_bus *bus)
{
    /* From inside a callback the running pass already delivers in order: nothing to do. */
    if (!bus || bus->delivering || kraken__owner_check(&bus->owner, "bus_flush", "bus") < 0)
        return;
    /* Events published by the callbacks of this flush go to the loop, like any others. */
    if (deliver_pass(bus, bus->seq))
        schedule(bus);
}

int kraken_bus_publish(kraken_bus *bus, const kraken_event *event)
{
    if (!bus || !event)
        return kraken__err(KRAKEN_EINVAL, "bus_publish: bus and event must not be NULL");
    int rc = kraken__owner_check(&bus->owner, "bus_publish", "bus");
    if (rc < 0)
        return rc;
    if (bus->free_pending)
        return kraken__err(KRAKEN_ESTATE, "bus_publish: the bus is being freed");
    if (!kraken_event_type_name(event->type))
        return kraken__err(KRAKEN_EINVAL, "bus_publish: unknown event type %d", (int)event->type);
    uint64_t seq = ++bus->seq;
    bus_event *be = NULL;
    for (kraken_subscription *sub = bus->first; sub; sub = sub->next) {
        if (!sub_wants(sub, event))
            continue;
        if (!be) {
            /* Copied only once someone wants it. */
            if ((rc = bus_event_new(event, seq, &be)) < 0)
                return rc;
        }
        queue_push(sub, be);
    }
    if (!be)
        return 0;
    bus_event_unref(be); /* the queues hold their own references */
    schedule(bus);
    return 0;
}

/* ---- bus life cycle -------------------------------------------------------- */

int kraken_bus_new(kraken_bus **out, struct event_base *base)
{
    if (!out)
        return kraken__err(KRAKEN_EINVAL, "bus_new: out must not be NULL");
    *out = NULL;
    if (!base)
        return kraken__err(KRAKEN_EINVAL, "bus_new: base must not be NULL");
    kraken_bus *bus = calloc(1, sizeof *bus);
    if (!bus)
        return kraken__err(KRAKEN_ENOMEM, "bus_new: out of memory");
    bus->base = base;
    kraken__owner_init(&bus->owner);
    bus->deliver_ev = event_new(base, -1, 0, deliver_cb, bus);
    if (!bus->deliver_ev) {
        free(bus);
        return kraken__err(KRAKEN_ENOMEM, "bus_new: cannot create the delivery event");
    }
    *out = bus;
    return 0;
}

static void bus_destroy(kraken_bus *bus)
{
    event_free(bus->deliver_ev); /* also deactivates it */
    /* Unlink each before its hook runs: a hook may remove other subscriptions. */
    while (bus->first) {
        kraken_subscription *sub = bus->first;
        sub_unlink(bus, sub);
        sub->prev = sub->next = NULL;
        sub_detach(sub);
    }
    free(bus);
}

void kraken_bus_free(kraken_bus *bus)
{
    if (!bus || bus->free_pending || kraken__owner_check(&bus->owner, "bus_free", "bus") < 0)
        return;
    if (bus->delivering) {
        /* Called from a callback: stop every delivery now, free when the pass unwinds. */
        bus->free_pending = true;
        for (kraken_subscription *sub = bus->first; sub; sub = sub->next) {
            sub->cancelled = true;
            queue_clear(sub);
        }
        return;
    }
    bus_destroy(bus);
}
