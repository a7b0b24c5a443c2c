/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The sync protocol (SPEC 6, doc/PROTOCOL.md): options, life cycle, the public calls of
 * kraken/sync.h and the test hooks, events and logging. The protocol itself is spread by
 * responsibility (doc/ARCHITECTURE.md): sync_session.c (joins, receive, dead peers),
 * sync_hello.c (digests, hellos), sync_apply.c (received state), sync_send.c (change queue,
 * deltas, snapshots), sync_table.c (node table, routes), sync_wire.c (encoding, decoders);
 * their shared structures are in sync_impl.h. Sockets and framing are in sync_net.c, keys
 * and MACs in sync_crypto.c. Everything runs on the caller's event loop; store writes
 * happen only from loop callbacks, never from the listener.
 */
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "sync_impl.h"

/* ---- the engine accessor -------------------------------------------------------------- */

int owned_urls_of_engine(kraken_engine *engine, urlset *out)
{
    memset(out, 0, sizeof *out);
    return kraken__engine_discoverable_urls(engine, &out->v, &out->n);
}

static const char *const drop_names[DROP_KINDS] = {
    "undecodable messages", "messages from senders without a session", "messages with a bad MAC",
    "replayed or overtaken messages", "unauthorized states", "states older than applied ones",
    "states the store refused"};

/* ---- events and run states ------------------------------------------------------------ */

void publish(kraken_sync *s, kraken_sync_event kind, const kraken_uuid *id,
             const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kraken_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = KRAKEN_EVENT_SYNC;
    ev.kind = (int)kind;
    ev.node_id = *id;
    ev.message = msg;
    kraken_bus *bus = kraken_engine_bus(s->engine);
    if (bus != NULL)
        (void)kraken_bus_publish(bus, &ev);
}

#define DROP_LOG_INTERVAL_MS 1000

/*
 * Dropped input is counted in the stats and logged with its cause. What peers send can come in
 * floods (a forger, a replaying middlebox), so each kind is logged at most once per second; the
 * count of the lines held back goes out with the next line of that kind, or from the hello
 * timer (log_quiet_drops) when none follows.
 */
void log_drop(kraken_sync *s, drop_kind kind, int level, const char *fmt, ...)
{
    if (!kraken__engine_log_enabled(s->engine, level))
        return;
    uint64_t now = now_ms();
    if (s->drop_logged_at[kind] != 0 && now - s->drop_logged_at[kind] < DROP_LOG_INTERVAL_MS) {
        s->drop_quiet[kind]++;
        return;
    }
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (s->drop_quiet[kind] > 0)
        slog(s, level, "%s (and %llu more %s not logged since the last report)", msg,
             (unsigned long long)s->drop_quiet[kind], drop_names[kind]);
    else
        slog(s, level, "%s", msg);
    s->drop_logged_at[kind] = now;
    s->drop_quiet[kind] = 0;
}

void log_quiet_drops(kraken_sync *s)
{
    uint64_t now = now_ms();
    for (int k = 0; k < DROP_KINDS; k++) {
        if (s->drop_quiet[k] == 0 || now - s->drop_logged_at[k] < DROP_LOG_INTERVAL_MS)
            continue;
        slog(s, KRAKEN_LOG_NOTICE, "%llu more %s were dropped and not logged",
             (unsigned long long)s->drop_quiet[k], drop_names[k]);
        s->drop_quiet[k] = 0;
        s->drop_logged_at[k] = now;
    }
}

/* RunState discoveries go through the engine's built-in sync service, which owns the URL
 * (PROTOCOL.md 3); without one, straight into Dsc. */
void discover_run_state(kraken_sync *s, const kraken_uuid *id, const char *state)
{
    if (!kraken_store_contains(s->store, id))
        return;
    kraken_service *svc = kraken_engine_find_service(s->engine, "sync");
    if (svc != NULL && kraken_service_discover_text(svc, id, "/RunState", state) == 0)
        return;
    (void)kraken_store_set_text(s->store, KRAKEN_DSC, id, "/RunState", state);
}

char *fmt_id(const kraken_uuid *id, char buf[KRAKEN_UUID_STRLEN + 1])
{
    return kraken_uuid_format(id, buf);
}

const char *peer_name(const peer *p, char buf[64])
{
    char id[KRAKEN_UUID_STRLEN + 1];
    snprintf(buf, 64, "%s %s", p->role == ROLE_PARENT ? "parent" : "child", fmt_id(&p->id, id));
    return buf;
}

/* ---- life cycle ----------------------------------------------------------------------- */

static int check_options(const kraken_sync_options *o)
{
    if (o->version < 1 || o->version > KRAKEN_SYNC_OPTIONS_VERSION)
        return kraken__err(KRAKEN_EINVAL, "sync options: version %u, expected 1..%u", o->version,
                           KRAKEN_SYNC_OPTIONS_VERSION);
    bool has_file = o->secret_file != NULL && o->secret_file[0] != '\0';
    if (!o->insecure && !has_file && o->key == NULL)
        return kraken__err(KRAKEN_EINVAL, "sync options: no secret_file and no key (set insecure "
                                          "for a demo without one)");
    if (has_file && o->key != NULL)
        return kraken__err(KRAKEN_EINVAL, "sync options: both secret_file and key are set");
    if (o->key != NULL && (o->key_len < KRAKEN_SYNC_SECRET_MIN || o->key_len > KRAKEN_SYNC_SECRET_MAX))
        return kraken__err(KRAKEN_EINVAL, "sync options: key of %zu bytes, need %d to %d",
                           o->key_len, KRAKEN_SYNC_SECRET_MIN, KRAKEN_SYNC_SECRET_MAX);
    if (o->hello_ms == 0)
        return kraken__err(KRAKEN_EINVAL, "sync options: hello_ms must be > 0");
    if (o->dead_ms <= o->hello_ms)
        return kraken__err(KRAKEN_EINVAL, "sync options: dead_ms (%u) must exceed hello_ms (%u)",
                           o->dead_ms, o->hello_ms);
    if (o->rejoin_max_ms < o->rejoin_min_ms)
        return kraken__err(KRAKEN_EINVAL,
                           "sync options: rejoin_max_ms (%u) is below rejoin_min_ms (%u)",
                           o->rejoin_max_ms, o->rejoin_min_ms);
    return KRAKEN_OK;
}

static int load_nodes(kraken_sync *s)
{
    kraken_node **nodes = NULL;
    size_t n = 0;
    int rc = kraken_store_read_all(s->store, KRAKEN_CFG, &nodes, &n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        snode *x = nt_add(&s->nodes, kraken_node_id(nodes[i]));
        if (x == NULL)
            rc = kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
        else
            x->parent = *cfg_parent_of(nodes[i]);
    }
    kraken_nodes_free(nodes, n);
    s->topo_dirty = true;
    return rc;
}

/* Datagrams to the parent leave from our UDP socket, so its address must be of our family; an
 * IPv6 socket reaches an IPv4 parent through the v4-mapped address. */
static int match_family(kraken_sync_addr *parent, const kraken_sync_addr *bind_addr,
                        const kraken_sync_options *opts)
{
    sa_family_t pf = parent->u.sa.sa_family, bf = bind_addr->u.sa.sa_family;
    if (pf == bf)
        return KRAKEN_OK;
    if (bf == AF_INET6 && pf == AF_INET) {
        struct sockaddr_in v4 = parent->u.in4;
        memset(&parent->u, 0, sizeof parent->u);
        parent->u.in6.sin6_family = AF_INET6;
        parent->u.in6.sin6_port = v4.sin_port;
        parent->u.in6.sin6_addr.s6_addr[10] = 0xff;
        parent->u.in6.sin6_addr.s6_addr[11] = 0xff;
        memcpy(&parent->u.in6.sin6_addr.s6_addr[12], &v4.sin_addr, 4);
        parent->len = sizeof parent->u.in6;
        return KRAKEN_OK;
    }
    return kraken__err(KRAKEN_EINVAL,
                       "sync parent_addr '%s' is IPv6 but listen_addr '%s' is IPv4: listen on "
                       "an IPv6 address (or \"::\") to reach an IPv6 parent",
                       opts->parent_addr, opts->listen_addr ? opts->listen_addr : "0.0.0.0");
}

static char *dup_opt(const char *s) { return s != NULL ? strdup(s) : NULL; }

static void sync_detach(void *arg);

int kraken_sync_options_init(kraken_sync_options *opts, unsigned version)
{
    if (!opts)
        return kraken__err(KRAKEN_EINVAL, "sync_options_init: opts must not be NULL");
    if (version < 1 || version > KRAKEN_SYNC_OPTIONS_VERSION)
        return kraken__err(KRAKEN_EINVAL, "sync_options_init: version %u, this library knows "
                                          "1..%u", version, KRAKEN_SYNC_OPTIONS_VERSION);
    static const kraken_sync_options defaults = KRAKEN_SYNC_OPTIONS_INIT;
    *opts = defaults;
    opts->version = version;
    return 0;
}

int kraken_sync_new(kraken_sync **out, kraken_engine *engine, struct event_base *base,
                    const kraken_sync_options *opts)
{
    if (out == NULL || engine == NULL || base == NULL || opts == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_sync_new: out, engine, base and opts are "
                                          "required");
    int rc = kraken__engine_usable(engine, "kraken_sync_new");
    if (rc < 0 || (rc = check_options(opts)) < 0 || (rc = kraken__sync_crypto_init()) < 0)
        return rc;
    kraken_sync *s = calloc(1, sizeof *s);
    if (s == NULL)
        return kraken__err(KRAKEN_ENOMEM, "kraken_sync_new: out of memory");
    s->engine = engine;
    kraken__owner_init(&s->owner);
    s->store = kraken_engine_store(engine);
    s->base = base;
    s->opts = *opts;
    s->listen_text = dup_opt(opts->listen_addr);
    s->parent_text = dup_opt(opts->parent_addr);
    s->opts.listen_addr = s->listen_text;
    s->opts.parent_addr = s->parent_text;
    s->opts.secret_file = NULL;
    s->opts.key = NULL;
    s->self = *kraken_engine_self_id(engine);
    s->backoff_ms = opts->rejoin_min_ms;
    struct rlimit nofile;
    s->max_pending = kraken__sync_pending_limit(
        getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY
            ? (uint64_t)nofile.rlim_cur
            : UINT64_MAX);
    s->change_gen = 1; /* new sessions start at digest_gen 0: stale */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->epoch = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;

    kraken_sync_addr bind_addr;
    if ((opts->listen_addr != NULL && s->listen_text == NULL) ||
        (opts->parent_addr != NULL && s->parent_text == NULL)) {
        rc = kraken__err(KRAKEN_ENOMEM, "kraken_sync_new: out of memory");
        goto fail;
    }
    if ((rc = kraken__sync_parse_addr(opts->listen_addr, opts->port, &bind_addr)) < 0) {
        rc = kraken__err_prefix(rc, "sync listen_addr");
        goto fail;
    }
    if (opts->parent_addr != NULL) {
        if ((rc = kraken__sync_parse_addr(opts->parent_addr, KRAKEN_SYNC_DEFAULT_PORT,
                                          &s->parent_addr)) < 0) {
            rc = kraken__err_prefix(rc, "sync parent_addr");
            goto fail;
        }
        if (kraken__sync_addr_port(&s->parent_addr) == 0) {
            rc = kraken__err(KRAKEN_EINVAL, "sync parent_addr '%s': port 0", opts->parent_addr);
            goto fail;
        }
        if ((rc = match_family(&s->parent_addr, &bind_addr, opts)) < 0)
            goto fail;
        s->has_parent = true;
    }
    if (opts->insecure) {
        const uint8_t *fixed;
        kraken__sync_insecure_secret(&fixed, &s->secret_len);
        s->secret = (uint8_t *)fixed;
    } else if (opts->key != NULL) {
        if ((s->secret = malloc(opts->key_len)) == NULL) {
            rc = kraken__err(KRAKEN_ENOMEM, "kraken_sync_new: out of memory");
            goto fail;
        }
        memcpy(s->secret, opts->key, opts->key_len);
        s->secret_len = opts->key_len;
        s->secret_owned = true;
    } else {
        if ((rc = kraken__sync_secret_load(opts->secret_file, &s->secret, &s->secret_len)) < 0)
            goto fail;
        s->secret_owned = true;
    }
    /* A child proves its own node key (PROTOCOL.md 2): 32 bytes, from its parent's key. */
    if (s->has_parent && !opts->insecure && s->secret_len != KRAKEN_SYNC_KEY_LEN) {
        rc = kraken__err(KRAKEN_EINVAL,
                         "sync %s: %zu bytes, but a child's key is its %d-byte node key "
                         "(kraken_sync_write_node_key on the root), not the cluster secret",
                         opts->key != NULL ? "key" : "secret_file", s->secret_len,
                         KRAKEN_SYNC_KEY_LEN);
        goto fail;
    }
    if ((rc = owned_urls_of_engine(engine, &s->my_owned)) < 0 || (rc = load_nodes(s)) < 0)
        goto fail;
    s->flush_ev = evtimer_new(base, flush_cb, s);
    s->hello_ev = evtimer_new(base, hello_cb, s);
    s->join_ev = evtimer_new(base, join_timer_cb, s);
    if (s->flush_ev == NULL || s->hello_ev == NULL || s->join_ev == NULL) {
        rc = kraken__err(KRAKEN_ENOMEM, "kraken_sync_new: out of memory");
        goto fail;
    }
    static const kraken_sync_net_ops net_ops = {on_datagram, on_accepted, on_accept_failed};
    if ((rc = kraken__sync_net_new(&s->net, base, &bind_addr, &net_ops, s)) < 0)
        goto fail;
    if ((rc = kraken_store_listen(s->store, on_store_change, s, NULL, &s->listener)) < 0)
        goto fail;
    s->owned_refreshed_at = now_ms();
    s->hello_last_run = now_ms();
    schedule_hellos(s, s->hello_last_run + s->opts.hello_ms);
    if (s->has_parent) {
        /* Frozen until the first full state (the engine may already start frozen). */
        s->engine_was_frozen = kraken_engine_frozen(engine);
        if (!s->engine_was_frozen)
            kraken_engine_freeze(engine);
        s->froze_engine = true;
        arm_timer(s->join_ev, 0); /* join from the loop, not from inside this call */
    }
    if ((rc = kraken__engine_attach(engine, sync_detach, s)) < 0)
        goto fail;
    s->attached = true;
    *out = s;
    return KRAKEN_OK;
fail:
    kraken_sync_free(s);
    return rc;
}

/* Release sockets, timers, peers and the store listener; the handle stays. */
static void sync_teardown(kraken_sync *s, bool engine_going)
{
    if (s->engine == NULL)
        return;
    if (s->attached)
        kraken__engine_unattach(s->engine, s);
    s->attached = false;
    if (!engine_going && s->froze_engine && !s->engine_was_frozen) /* never joined: as found */
        kraken_engine_thaw(s->engine);
    for (size_t i = 0; i < s->n_children; i++)
        peer_free(s->children[i]);
    free(s->children);
    s->children = NULL;
    s->n_children = 0;
    peer_free(s->parent);
    s->parent = NULL;
    abort_join(s);
    while (s->pending != NULL)
        pending_free(s, s->pending, true);
    kraken__sync_net_free(s->net);
    s->net = NULL;
    if (s->listener != NULL)
        kraken_store_listener_remove(s->listener);
    s->listener = NULL;
    if (s->flush_ev != NULL)
        event_free(s->flush_ev);
    if (s->hello_ev != NULL)
        event_free(s->hello_ev);
    if (s->join_ev != NULL)
        event_free(s->join_ev);
    s->flush_ev = s->hello_ev = s->join_ev = NULL;
    s->engine = NULL;
    s->store = NULL;
}

/* The engine is being freed: stop now; kraken_sync_free() later releases the handle. */
static void sync_detach(void *arg)
{
    kraken_sync *s = arg;
    s->attached = false; /* the engine took us off its list */
    sync_teardown(s, true);
}

void kraken_sync_free(kraken_sync *sync)
{
    if (sync == NULL || kraken__owner_check(&sync->owner, "sync_free", "sync") < 0)
        return;
    kraken_sync *s = sync;
    sync_teardown(s, false);
    nt_free(&s->nodes);
    free(s->dirty);
    urlset_clear(&s->my_owned);
    if (s->secret_owned)
        kraken__sync_secret_free(s->secret, s->secret_len);
    free(s->listen_text);
    free(s->parent_text);
    free(s);
}

/* Calls on a sync from another thread, or after its engine was freed, read nothing. */
static bool sync_usable(const kraken_sync *sync, const char *op)
{
    return sync != NULL && kraken__owner_check(&sync->owner, op, "sync") == 0 &&
           sync->engine != NULL;
}

uint16_t kraken_sync_port(const kraken_sync *sync)
{
    return sync_usable(sync, "sync_port") ? kraken__sync_net_port(sync->net) : 0;
}

bool kraken_sync_joined(const kraken_sync *sync)
{
    return sync_usable(sync, "sync_joined") && sync->parent != NULL && sync->parent->ready;
}

size_t kraken_sync_children(const kraken_sync *sync)
{
    return sync_usable(sync, "sync_children") ? sync->n_children : 0;
}

kraken_sync_view kraken_sync_node_view(const kraken_sync *sync, const kraken_uuid *id)
{
    if (sync == NULL || id == NULL)
        return KRAKEN_SYNC_VIEW_NONE;
    const kraken_sync *s = sync; /* routes as of the last flush (a Cfg change: damping_ms) */
    const snode *n = nt_find(&s->nodes, id);
    if (n == NULL || !n->in_subtree)
        return KRAKEN_SYNC_VIEW_NONE;
    if (uuid_eq(id, &s->self))
        return KRAKEN_SYNC_VIEW_SELF;
    return n->fresh ? KRAKEN_SYNC_VIEW_LIVE : KRAKEN_SYNC_VIEW_STALE;
}

void kraken_sync_get_stats(const kraken_sync *sync, kraken_sync_stats *out)
{
    if (out == NULL)
        return;
    if (sync == NULL || kraken__owner_check(&sync->owner, "sync_get_stats", "sync") < 0) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = sync->stats;
}

void kraken__sync_set_faults(kraken_sync *sync, const kraken_sync_faults *faults)
{
    if (sync == NULL)
        return;
    if (faults != NULL)
        sync->faults = *faults;
    kraken__sync_net_set_faults(sync->net, faults != NULL ? &sync->faults : NULL);
}

bool kraken__sync_last_datagram(const kraken_sync *sync, const uint8_t **data, size_t *len,
                                kraken_sync_addr *to)
{
    return sync != NULL && kraken__sync_net_last_sent(sync->net, data, len, to);
}

static void age_snapshot(peer *p, uint64_t ms)
{
    if (p != NULL)
        p->last_snapshot_at = p->last_snapshot_at > ms ? p->last_snapshot_at - ms : 0;
}

void kraken__sync_age_snapshots(kraken_sync *sync, uint64_t ms)
{
    if (sync == NULL)
        return;
    for (size_t i = 0; i < sync->n_children; i++)
        age_snapshot(sync->children[i], ms);
    age_snapshot(sync->parent, ms);
}

bool kraken__sync_flush_pending(const kraken_sync *sync)
{
    return sync != NULL &&
           (sync->n_dirty > 0 || event_pending(sync->flush_ev, EV_TIMEOUT, NULL));
}

size_t kraken__sync_buffered(const kraken_sync *sync)
{
    return sync != NULL ? kraken__sync_net_buffered(sync->net) : 0;
}

size_t kraken__sync_pending_joins(const kraken_sync *sync, size_t *limit)
{
    if (limit != NULL)
        *limit = sync != NULL ? sync->max_pending : 0;
    return sync != NULL ? sync->n_pending : 0;
}
