/*
 * The sync protocol state machine (SPEC 6, doc/PROTOCOL.md): joins (both roles), sessions,
 * the subtree each link speaks for, Dsc ownership, damped delta queues fed by the store
 * listener, snapshots, hellos with digests, dead peers and rejoin.
 *
 * Sockets and framing are in sync_net.c, keys and MACs in sync_crypto.c. Everything runs on the
 * caller's event loop; store writes happen only from loop callbacks, never from the listener.
 */
#include <event2/event.h>
#include <pb_decode.h>
#include <pb_encode.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "internal.h"
#include "sync.pb.h"

#define PROTOCOL_VERSION 1
#define DGRAM_NODES_BUDGET 1100         /* NodeState bytes per datagram (envelope ~100 more) */
#define TCP_BULK_BYTES (16u << 10)      /* a flush larger than this goes over TCP at once */
#define FRAME_NODES_BUDGET (1u << 20)   /* NodeState bytes per TCP frame */
#define MAX_PENDING_URLS 64             /* beyond: send the node's whole Dsc */
#define MAX_PATH_DEPTH 4096             /* Cfg parent chains longer than this are cycles */
#define HANDSHAKE_MAX_FRAME (64u << 10) /* a joining child's limit for its chosen parent */

enum { CH_UDP = 0, CH_TCP = 1 };
static const char channel_byte[2] = {'U', 'T'};

/* ---- small helpers -------------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool uuid_eq(const kraken_uuid *a, const kraken_uuid *b)
{
    return memcmp(a->bytes, b->bytes, 16) == 0;
}

static const kraken_uuid zero_uuid;

static void arm_timer(struct event *ev, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(ev, &tv);
}

typedef struct blob {
    uint8_t *data;
    size_t len;
    uint32_t depth; /* Cfg depth below the link, so parents go before their children */
    bool reliable;  /* TCP only: a stale node's facts, which the digests do not cover */
} blob;

typedef struct blobs {
    blob *v;
    size_t n, cap;
} blobs;

static void blobs_clear(blobs *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->v[i].data);
    free(b->v);
    b->v = NULL;
    b->n = b->cap = 0;
}

static int blobs_push(blobs *b, uint8_t *data, size_t len, uint32_t depth)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        blob *v = realloc(b->v, cap * sizeof *v);
        if (v == NULL)
            return kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = (blob){data, len, depth, false};
    return KRAKEN_OK;
}

static int blob_depth_cmp(const void *a, const void *b)
{
    const blob *x = a, *y = b;
    return x->depth < y->depth ? -1 : x->depth > y->depth;
}

/* Owned-URL lists: exact URLs, prefixes of a subtree ("/Foo" owns "/Foo/Bar"), or globs. */
typedef struct urlset {
    char **v;
    size_t n;
} urlset;

static void urlset_clear(urlset *u)
{
    for (size_t i = 0; i < u->n; i++)
        free(u->v[i]);
    free(u->v);
    u->v = NULL;
    u->n = 0;
}

static bool urlset_match(const urlset *u, const char *url)
{
    if (u == NULL)
        return false;
    for (size_t i = 0; i < u->n; i++) {
        const char *e = u->v[i];
        if (strpbrk(e, "*?") != NULL) {
            if (kraken_url_match(e, url))
                return true;
            continue;
        }
        size_t len = strlen(e);
        if (strncmp(e, url, len) == 0 && (url[len] == '\0' || url[len] == '/'))
            return true;
    }
    return false;
}

static bool urlset_equal(const urlset *a, const urlset *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i]) != 0)
            return false;
    return true;
}

/* ---- the engine accessor -------------------------------------------------------------- */

static int owned_urls_of_engine(kraken_engine *engine, urlset *out)
{
    memset(out, 0, sizeof *out);
    return kraken__engine_discoverable_urls(engine, &out->v, &out->n);
}

/* ---- per-node bookkeeping ------------------------------------------------------------- */

#define URLVER_N 4 /* per-URL versions kept per node (see snode.uv) */

typedef struct snode {
    kraken_uuid id;
    kraken_uuid parent;     /* Cfg parentId */
    kraken_uuid route;      /* the direct child of this instance the node is under; zero: none */
    kraken_uuid old_route;  /* route before the last recomputation */
    uint32_t depth;         /* links below this instance (direct child: 1, self: 0) */
    /* Version of the last state applied for this node from the parent link (Cfg, owned
     * facts) and from the child link it is under (Dsc): the session it came on and the
     * sender's sequence number (PROTOCOL.md 4, "Ordering"). */
    uint32_t down_session, up_session;
    uint64_t down_seq, up_seq;
    /* Facts from the child link, per URL: the last few URLs set by partial updates and the
     * message that set them, so that an older message (a snapshot overtaken by deltas) can
     * still fill in the URLs no newer message touched. uv_evicted: no message older than this
     * can be merged (an entry dropped to make room, or a whole-Dsc message, was that new). */
    struct urlver {
        uint64_t hash, seq;
    } uv[URLVER_N];
    uint8_t n_uv;
    uint64_t uv_evicted;
    uint32_t stamp;         /* route generation the route was computed in */
    /* The nodes of a child link (route = that child), listed at the link's top node (the
     * direct child), so that a join, a snapshot or a lost link costs the size of that subtree,
     * not of the whole table (issue 9, item 10). */
    struct snode *members;          /* top nodes: the first member (the top itself included) */
    struct snode *m_next, *m_prev;  /* in m_top's list */
    struct snode *m_top;            /* whose list this node is in; NULL: none */
    bool in_subtree;        /* self, or under a direct child */
    bool visiting;          /* cycle detection during route computation */
    /* digest cache */
    bool cfg_ok, dsc_ok;
    uint8_t h_cfg[KRAKEN_SYNC_DIGEST_LEN];
    uint8_t h_full[KRAKEN_SYNC_DIGEST_LEN];  /* every Dsc fact */
    uint8_t h_excl[KRAKEN_SYNC_DIGEST_LEN];  /* facts the node's parent link does not own */
    uint8_t h_owned[KRAKEN_SYNC_DIGEST_LEN]; /* facts the node's parent link owns */
    /* Stale facts (PROTOCOL.md 4, "Stale facts"): a node under a child link is fresh once
     * that link reported its facts, and stale again when the link ends, the node moves to
     * another link, or the child reports it stale. Not used for this instance's own node. */
    bool fresh, stale_hash_ok;
    uint8_t h_stale[KRAKEN_SYNC_DIGEST_LEN]; /* stands for the facts of a stale node */
    /* pending deltas */
    bool queued, cfg_dirty, owned_dirty, up_all, fresh_dirty;
    char **up_urls;
    size_t n_up_urls, cap_up_urls;
} snode;

typedef struct ntable {
    snode **slots;
    size_t cap, count;
} ntable;

/* splitmix64's finalizer: every input bit reaches the low bits the table masks with. */
static uint64_t mix64(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

/* Ids are usually random, but tests and sites also number them sequentially (differing only in
 * the last bytes): all 16 bytes must reach the home slot. */
static size_t uuid_hash(const kraken_uuid *id)
{
    uint64_t a, b;
    memcpy(&a, id->bytes, 8);
    memcpy(&b, id->bytes + 8, 8);
    return (size_t)mix64(a ^ mix64(b + 0x9e3779b97f4a7c15ull));
}

static snode *nt_find(const ntable *t, const kraken_uuid *id)
{
    if (t->cap == 0)
        return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = uuid_hash(id) & mask;; i = (i + 1) & mask) {
        snode *n = t->slots[i];
        if (n == NULL)
            return NULL;
        if (uuid_eq(&n->id, id))
            return n;
    }
}

static int nt_grow(ntable *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    snode **slots = calloc(cap, sizeof *slots);
    if (slots == NULL)
        return kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
    for (size_t i = 0; i < t->cap; i++) {
        snode *n = t->slots[i];
        if (n == NULL)
            continue;
        size_t j = uuid_hash(&n->id) & (cap - 1);
        while (slots[j] != NULL)
            j = (j + 1) & (cap - 1);
        slots[j] = n;
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return KRAKEN_OK;
}

static snode *nt_add(ntable *t, const kraken_uuid *id)
{
    snode *n = nt_find(t, id);
    if (n != NULL)
        return n;
    if ((t->count + 1) * 4 > t->cap * 3 && nt_grow(t) < 0)
        return NULL;
    n = calloc(1, sizeof *n);
    if (n == NULL)
        return NULL;
    n->id = *id;
    size_t mask = t->cap - 1;
    size_t i = uuid_hash(id) & mask;
    while (t->slots[i] != NULL)
        i = (i + 1) & mask;
    t->slots[i] = n;
    t->count++;
    return n;
}

static void snode_clear_urls(snode *n)
{
    for (size_t i = 0; i < n->n_up_urls; i++)
        free(n->up_urls[i]);
    free(n->up_urls);
    n->up_urls = NULL;
    n->n_up_urls = n->cap_up_urls = 0;
}

static void member_unlink(snode *n)
{
    if (n->m_top == NULL)
        return;
    if (n->m_prev != NULL)
        n->m_prev->m_next = n->m_next;
    else
        n->m_top->members = n->m_next;
    if (n->m_next != NULL)
        n->m_next->m_prev = n->m_prev;
    n->m_next = n->m_prev = n->m_top = NULL;
}

static void member_link(snode *n, snode *top)
{
    member_unlink(n);
    if (top == NULL)
        return;
    n->m_top = top;
    n->m_prev = NULL;
    n->m_next = top->members;
    if (top->members != NULL)
        top->members->m_prev = n;
    top->members = n;
}

/* Before a node leaves the table: out of its list, and its own list (if a top) dissolved; the
 * next route computation files those nodes again. */
static void member_detach(snode *n)
{
    member_unlink(n);
    for (snode *m = n->members, *next; m != NULL; m = next) {
        next = m->m_next;
        m->m_next = m->m_prev = m->m_top = NULL;
    }
    n->members = NULL;
}

static void snode_free(snode *n)
{
    if (n == NULL)
        return;
    snode_clear_urls(n);
    free(n);
}

/* Remove with backward-shift deletion (no tombstones). */
static void nt_remove(ntable *t, const kraken_uuid *id)
{
    if (t->cap == 0)
        return;
    size_t mask = t->cap - 1;
    size_t i = uuid_hash(id) & mask;
    while (t->slots[i] != NULL && !uuid_eq(&t->slots[i]->id, id))
        i = (i + 1) & mask;
    if (t->slots[i] == NULL)
        return;
    snode_free(t->slots[i]);
    t->slots[i] = NULL;
    t->count--;
    for (size_t j = (i + 1) & mask; t->slots[j] != NULL; j = (j + 1) & mask) {
        size_t home = uuid_hash(&t->slots[j]->id) & mask;
        /* Move back if its home is not in (i, j] cyclically. */
        bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            t->slots[i] = t->slots[j];
            t->slots[j] = NULL;
            i = j;
        }
    }
}

static void nt_free(ntable *t)
{
    for (size_t i = 0; i < t->cap; i++)
        snode_free(t->slots[i]);
    free(t->slots);
    t->slots = NULL;
    t->cap = t->count = 0;
}

/* ---- sessions ------------------------------------------------------------------------- */

typedef enum peer_role { ROLE_CHILD = 0, ROLE_PARENT = 1 } peer_role;

/* Kinds of dropped input, each rate-limited on its own in the log (log_drop). */
typedef enum drop_kind {
    DROP_MALFORMED = 0,
    DROP_UNKNOWN_SENDER,
    DROP_BAD_MAC,
    DROP_REPLAY,
    DROP_NOT_AUTHORIZED,
    DROP_OLD,
    DROP_APPLY, /* authenticated, authorized state the store refused */
    DROP_KINDS
} drop_kind;

static const char *const drop_names[DROP_KINDS] = {
    "undecodable messages", "messages from senders without a session", "messages with a bad MAC",
    "replayed or overtaken messages", "unauthorized states", "states older than applied ones",
    "states the store refused"};

#define GONE_RING 64 /* deletions remembered per parent link (a ring) */

typedef struct peer {
    struct kraken_sync *sync;
    peer_role role;
    kraken_uuid id;
    uint8_t key[KRAKEN_SYNC_KEY_LEN];
    uint32_t serial;          /* this session, unique within this instance's life */
    uint64_t seq_out;         /* one sequence for both channels: it orders UDP against TCP */
    uint64_t in_epoch[2], in_seq[2];
    uint64_t rx_seq;          /* sequence number of the message being applied */
    uint64_t snap_seq;        /* ... of the first part of the snapshot being received */
    /* parent link: recent deletions, so that a late creation does not bring a node back */
    struct { kraken_uuid id; uint64_t seq; } gone[GONE_RING];
    unsigned n_gone;
    kraken_sync_addr udp;
    kraken_sync_conn *conn;
    struct event *dead_ev;
    uint64_t hello_due;       /* when our next hello to this peer is due (see hello_cb) */
    uint64_t last_heard;
    uint64_t last_delta_at, last_snapshot_at;
    int strikes;              /* hellos in a row showing a digest mismatch */
    uint64_t hold_until;      /* child link: refuse other instances with this id until then */
    uint64_t conflict_reported_at;
    bool ready;               /* parent link: first full state applied; child link: always */
    urlset owned;             /* parent link: the URLs the parent owns for this node */
    /* incoming snapshot in parts */
    bool rx_snapshot;
    kraken_uuid *seen;
    size_t n_seen, cap_seen;
    /* deletions to send (child links) */
    kraken_uuid *tombs;
    size_t n_tombs, cap_tombs;
    /* digests, valid while digest_gen == sync->change_gen */
    uint64_t digest_gen;
    uint8_t dig_send[KRAKEN_SYNC_DIGEST_LEN], dig_hold[KRAKEN_SYNC_DIGEST_LEN];
    /* per flush */
    blobs out;
} peer;

typedef enum join_state {
    JOIN_IDLE = 0,       /* waiting for the (re)join timer */
    JOIN_CONNECTING,
    JOIN_WAIT_CHALLENGE,
    JOIN_WAIT_RESULT,
    JOIN_WAIT_FULL,      /* accepted; waiting for the parent's first full state */
    JOIN_UP
} join_state;

typedef enum pending_state { PJ_WAIT_REQUEST = 0, PJ_WAIT_PROOF } pending_state;

/* A child's join in progress on the parent side. */
typedef struct pending_join {
    struct kraken_sync *sync;
    kraken_sync_conn *conn;
    pending_state state;
    kraken_sync_transcript tr;
    uint8_t node_key[KRAKEN_SYNC_KEY_LEN];
    uint32_t udp_port;
    struct event *timeout;
    struct pending_join *prev, *next;
} pending_join;

struct kraken_sync {
    kraken_engine *engine; /* NULL once detached by the engine's free (see sync.h) */
    kraken__owner owner;
    bool attached;         /* on the engine's list of children */
    kraken_store *store;
    struct event_base *base;
    kraken_sync_options opts;
    char *listen_text, *parent_text;
    kraken_sync_faults faults;
    uint8_t *secret;
    size_t secret_len;
    bool secret_owned;
    kraken_uuid self;
    uint64_t epoch;
    kraken_sync_net *net;
    kraken_store_listener *listener;
    kraken_sync_stats stats;
    uint32_t sessions;         /* serials handed out */
    uint64_t drop_logged_at[DROP_KINDS], drop_quiet[DROP_KINDS]; /* see log_drop */

    ntable nodes;
    bool topo_dirty, check_children;
    uint32_t route_gen;
    uint64_t change_gen;
    uint64_t owned_refreshed_at; /* hello_cb: refresh_my_owned once per hello period */
    uint64_t digests_at;         /* when compute_digests last ran */
    uint64_t hello_last_run, hello_next; /* the hello timer: last run, next (schedule_hellos) */
    kraken_uuid *dirty;
    size_t n_dirty, cap_dirty;
    peer *applying_from;       /* set while applying a peer's state: do not echo it back */
    urlset my_owned;           /* URLs this instance owns for its child nodes */

    peer **children;           /* sorted by id */
    size_t n_children, cap_children;
    pending_join *pending, *pending_tail; /* newest first */
    size_t n_pending, max_pending;        /* max: kraken__sync_pending_limit */

    /* child role */
    bool has_parent;
    kraken_sync_addr parent_addr;
    peer *parent;              /* the session with the parent (ready or not), or NULL */
    join_state jstate;
    kraken_sync_conn *jconn;
    kraken_sync_transcript jtr;
    peer *jpeer;               /* tentative session while waiting for the join result */
    uint32_t backoff_ms;
    bool froze_engine;        /* frozen until the first full state */
    bool engine_was_frozen;   /* ... and it already was before us */

    struct event *flush_ev, *hello_ev, *join_ev;
};

static void peer_free(peer *p)
{
    if (p == NULL)
        return;
    if (p->dead_ev != NULL)
        event_free(p->dead_ev);
    kraken__sync_conn_close(p->conn, false);
    urlset_clear(&p->owned);
    free(p->seen);
    free(p->tombs);
    blobs_clear(&p->out);
    kraken__sync_wipe(p->key, sizeof p->key);
    free(p);
}

static peer *find_child(const kraken_sync *s, const kraken_uuid *id)
{
    size_t lo = 0, hi = s->n_children;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = memcmp(s->children[mid]->id.bytes, id->bytes, 16);
        if (c == 0)
            return s->children[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static peer *find_session(const kraken_sync *s, const kraken_uuid *id)
{
    if (s->parent != NULL && uuid_eq(&s->parent->id, id))
        return s->parent;
    return find_child(s, id);
}

static int children_insert(kraken_sync *s, peer *p)
{
    if (s->n_children == s->cap_children) {
        size_t cap = s->cap_children ? s->cap_children * 2 : 8;
        peer **v = realloc(s->children, cap * sizeof *v);
        if (v == NULL)
            return kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
        s->children = v;
        s->cap_children = cap;
    }
    size_t lo = 0, hi = s->n_children; /* binary search: first child not below p */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(s->children[mid]->id.bytes, p->id.bytes, 16) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t i = lo;
    memmove(s->children + i + 1, s->children + i, (s->n_children - i) * sizeof *s->children);
    s->children[i] = p;
    s->n_children++;
    return KRAKEN_OK;
}

static void children_remove(kraken_sync *s, peer *p)
{
    for (size_t i = 0; i < s->n_children; i++) {
        if (s->children[i] == p) {
            memmove(s->children + i, s->children + i + 1,
                    (s->n_children - i - 1) * sizeof *s->children);
            s->n_children--;
            return;
        }
    }
}

/* ---- events and run states ------------------------------------------------------------ */

static void publish(kraken_sync *s, kraken_sync_event kind, const kraken_uuid *id,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void publish(kraken_sync *s, kraken_sync_event kind, const kraken_uuid *id,
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

/* Log through the engine's callback (log.h), subsystem "sync". */
#define slog(s, level, ...) kraken__engine_log((s)->engine, (level), "sync", __VA_ARGS__)

#define DROP_LOG_INTERVAL_MS 1000

static void log_drop(kraken_sync *s, drop_kind kind, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Dropped input is counted in the stats and logged with its cause. What peers send can come in
 * floods (a forger, a replaying middlebox), so each kind is logged at most once per second; the
 * count of the lines held back goes out with the next line of that kind, or from the hello
 * timer (log_quiet_drops) when none follows.
 */
static void log_drop(kraken_sync *s, drop_kind kind, int level, const char *fmt, ...)
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

static void log_quiet_drops(kraken_sync *s)
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

/* "parent <id>" or "child <id>", for log lines. */
static const char *peer_name(const struct peer *p, char buf[64]);

/* RunState discoveries go through the engine's built-in sync service, which owns the URL
 * (PROTOCOL.md 3); without one, straight into Dsc. */
static void discover_run_state(kraken_sync *s, const kraken_uuid *id, const char *state)
{
    if (!kraken_store_contains(s->store, id))
        return;
    kraken_service *svc = kraken_engine_find_service(s->engine, "sync");
    if (svc != NULL && kraken_service_discover_text(svc, id, "/RunState", state) == 0)
        return;
    (void)kraken_store_set_text(s->store, KRAKEN_DSC, id, "/RunState", state);
}

static char *fmt_id(const kraken_uuid *id, char buf[KRAKEN_UUID_STRLEN + 1])
{
    return kraken_uuid_format(id, buf);
}

static const char *peer_name(const peer *p, char buf[64])
{
    char id[KRAKEN_UUID_STRLEN + 1];
    snprintf(buf, 64, "%s %s", p->role == ROLE_PARENT ? "parent" : "child", fmt_id(&p->id, id));
    return buf;
}

/* ---- queueing changes ----------------------------------------------------------------- */

static void arm_flush(kraken_sync *s)
{
    if (!event_pending(s->flush_ev, EV_TIMEOUT, NULL))
        arm_timer(s->flush_ev, s->opts.damping_ms);
}

static void queue_node(kraken_sync *s, snode *n)
{
    if (!n->queued) {
        if (s->n_dirty == s->cap_dirty) {
            size_t cap = s->cap_dirty ? s->cap_dirty * 2 : 64;
            kraken_uuid *v = realloc(s->dirty, cap * sizeof *v);
            if (v == NULL) {
                /* Out of memory: the hello digests will notice and a snapshot repairs it. */
                return;
            }
            s->dirty = v;
            s->cap_dirty = cap;
        }
        s->dirty[s->n_dirty++] = n->id;
        n->queued = true;
    }
    arm_flush(s);
}

static void queue_up_url(snode *n, const char *url)
{
    if (n->up_all)
        return;
    for (size_t i = 0; i < n->n_up_urls; i++)
        if (strcmp(n->up_urls[i], url) == 0)
            return;
    if (n->n_up_urls >= MAX_PENDING_URLS) {
        snode_clear_urls(n);
        n->up_all = true;
        return;
    }
    if (n->n_up_urls == n->cap_up_urls) {
        size_t cap = n->cap_up_urls ? n->cap_up_urls * 2 : 4;
        char **v = realloc(n->up_urls, cap * sizeof *v);
        if (v == NULL) {
            n->up_all = true;
            return;
        }
        n->up_urls = v;
        n->cap_up_urls = cap;
    }
    char *copy = strdup(url);
    if (copy == NULL) {
        n->up_all = true;
        return;
    }
    n->up_urls[n->n_up_urls++] = copy;
}

static int push_tomb(peer *p, const kraken_uuid *id)
{
    if (p->n_tombs == p->cap_tombs) {
        size_t cap = p->cap_tombs ? p->cap_tombs * 2 : 8;
        kraken_uuid *v = realloc(p->tombs, cap * sizeof *v);
        if (v == NULL)
            return KRAKEN_ENOMEM;
        p->tombs = v;
        p->cap_tombs = cap;
    }
    p->tombs[p->n_tombs++] = *id;
    return KRAKEN_OK;
}

/*
 * Mark a node's facts confirmed by its link (fresh) or not (stale). The digests cover it, and a
 * parent hears of each change: stale as a flag, fresh again with the node's whole Dsc (facts
 * may have gone while it was stale, and a delta would not say so). True when it changed.
 */
static bool set_fresh(kraken_sync *s, snode *n, bool fresh)
{
    if (n->fresh == fresh || uuid_eq(&n->id, &s->self))
        return false;
    n->fresh = fresh;
    s->change_gen++;
    if (s->has_parent) {
        n->fresh_dirty = true;
        if (fresh) {
            snode_clear_urls(n);
            n->up_all = true;
        }
        queue_node(s, n);
    }
    return true;
}

static const kraken_uuid *cfg_parent_of(const kraken_node *cfg)
{
    const kraken_uuid *p = cfg != NULL ? cfg->rec.slots[KRAKEN_NODE_F_PARENT_ID].uuid : NULL;
    return p != NULL ? p : &zero_uuid;
}

static bool is_direct_child(const kraken_sync *s, const snode *n)
{
    return uuid_eq(&n->parent, &s->self) && !uuid_eq(&n->id, &s->self);
}

/* Store listener: records what changed and arms the damping timer; never writes. */
static void on_store_change(const kraken_state_change *ch, void *ud)
{
    kraken_sync *s = ud;
    s->change_gen++;
    snode *n = nt_find(&s->nodes, &ch->node_id);
    switch (ch->kind) {
    case KRAKEN_CHANGE_CREATE:
        n = nt_add(&s->nodes, &ch->node_id);
        if (n == NULL)
            return;
        n->parent = *cfg_parent_of(kraken__store_peek(s->store, KRAKEN_CFG, &ch->node_id));
        n->cfg_ok = n->dsc_ok = false;
        n->cfg_dirty = true;
        s->topo_dirty = true;
        queue_node(s, n);
        return;
    case KRAKEN_CHANGE_DELETE:
        if (n == NULL)
            return;
        if (!uuid_eq(&n->route, &zero_uuid)) {
            peer *p = find_child(s, &n->route);
            if (p != NULL && p != s->applying_from && push_tomb(p, &n->id) == 0)
                arm_flush(s);
        }
        member_detach(n);
        nt_remove(&s->nodes, &ch->node_id);
        s->topo_dirty = true;
        return;
    case KRAKEN_CHANGE_CFG_UPDATE:
        if (n == NULL)
            return;
        n->cfg_ok = false;
        if (ch->url != NULL && strcmp(ch->url, "/ParentId") == 0) {
            n->parent = ch->new_value != NULL && ch->new_value->type == KRAKEN_T_UUID
                            ? ch->new_value->v.uuid
                            : zero_uuid;
            n->dsc_ok = false; /* who owns which of its facts may have changed */
            s->topo_dirty = true;
        }
        if (s->applying_from == NULL || !uuid_eq(&n->route, &s->applying_from->id)) {
            n->cfg_dirty = true;
            queue_node(s, n);
        }
        return;
    case KRAKEN_CHANGE_UPDATE:
        if (n == NULL || ch->url == NULL)
            return;
        n->dsc_ok = false;
        /* This instance itself reports a fact about one of its direct children that is not
         * one of the URLs it owns for them: it speaks for that node (no instance below does),
         * so its facts are as current as they get. Deeper nodes are learned from links only. */
        if (s->applying_from == NULL && !n->fresh && is_direct_child(s, n) &&
            !urlset_match(&s->my_owned, ch->url))
            (void)set_fresh(s, n, true);
        bool queued = false;
        if (s->has_parent && (s->parent == NULL || s->applying_from != s->parent)) {
            queue_up_url(n, ch->url);
            queued = true;
        }
        if (is_direct_child(s, n) && urlset_match(&s->my_owned, ch->url) &&
            (s->applying_from == NULL || !uuid_eq(&n->id, &s->applying_from->id))) {
            n->owned_dirty = true;
            queued = true;
        }
        if (queued)
            queue_node(s, n);
        return;
    default:
        return;
    }
}

/* ---- routes: which direct child each node is under ------------------------------------ */

static void end_child_session(kraken_sync *s, peer *p, const char *why, bool link_lost);

/*
 * Recompute every node's route from the Cfg parent chains. Nodes that moved between links get
 * a deletion on the old link and their Cfg on the new one; a child session whose node is no
 * longer this instance's child ends.
 */
static void recompute_routes(kraken_sync *s)
{
    s->topo_dirty = false;
    s->route_gen++;
    if (s->route_gen == 0)
        s->route_gen = 1;
    snode **path = malloc(MAX_PATH_DEPTH * sizeof *path);
    if (path == NULL) {
        s->topo_dirty = true;
        return;
    }
    for (size_t i = 0; i < s->nodes.cap; i++) {
        snode *n = s->nodes.slots[i];
        if (n != NULL && n->stamp != s->route_gen)
            n->old_route = n->route;
    }
    for (size_t i = 0; i < s->nodes.cap; i++) {
        snode *start = s->nodes.slots[i];
        if (start == NULL || start->stamp == s->route_gen)
            continue;
        size_t depth = 0;
        kraken_uuid route = zero_uuid;
        bool in_subtree = false;
        uint32_t base_depth = 0;
        snode *x = start;
        for (;;) {
            if (x->stamp == s->route_gen) { /* already known */
                route = x->route;
                in_subtree = x->in_subtree;
                base_depth = x->depth;
                break;
            }
            if (uuid_eq(&x->id, &s->self)) {
                x->route = zero_uuid;
                x->in_subtree = true;
                x->depth = 0;
                x->stamp = s->route_gen;
                in_subtree = true;
                break;
            }
            if (x->visiting || depth == MAX_PATH_DEPTH)
                break; /* a cycle: no route */
            x->visiting = true;
            path[depth++] = x;
            if (uuid_eq(&x->parent, &s->self)) {
                route = x->id;
                in_subtree = true;
                base_depth = 0;
                break;
            }
            snode *up = uuid_eq(&x->parent, &zero_uuid) ? NULL : nt_find(&s->nodes, &x->parent);
            if (up == NULL)
                break;
            x = up;
        }
        /* path[depth-1] is nearest the resolved ancestor. */
        for (size_t k = depth; k-- > 0;) {
            snode *y = path[k];
            y->visiting = false;
            y->route = in_subtree ? route : zero_uuid;
            y->in_subtree = in_subtree;
            y->depth = in_subtree ? base_depth + (uint32_t)(depth - k) : 0;
            y->stamp = s->route_gen;
        }
    }
    free(path);
    for (size_t i = 0; i < s->nodes.cap; i++) {
        snode *n = s->nodes.slots[i];
        if (n == NULL)
            continue;
        snode *top = uuid_eq(&n->route, &zero_uuid) ? NULL : nt_find(&s->nodes, &n->route);
        if (n->m_top != top)
            member_link(n, top);
        if (uuid_eq(&n->route, &n->old_route))
            continue;
        peer *old = uuid_eq(&n->old_route, &zero_uuid) ? NULL : find_child(s, &n->old_route);
        if (old != NULL)
            (void)push_tomb(old, &n->id);
        (void)set_fresh(s, n, false); /* the new link has not reported it yet */
        if (!uuid_eq(&n->route, &zero_uuid)) {
            n->cfg_dirty = true;
            n->owned_dirty = uuid_eq(&n->route, &n->id);
            queue_node(s, n);
        }
        n->old_route = n->route;
        arm_flush(s);
    }
    s->change_gen++;
    s->check_children = true; /* sessions are ended from the flush, where no peer is in use */
    arm_flush(s);
}

/* Child sessions whose node is no longer this instance's child in Cfg end. */
static void check_children(kraken_sync *s)
{
    s->check_children = false;
    for (size_t i = s->n_children; i-- > 0;) {
        peer *p = s->children[i];
        snode *n = nt_find(&s->nodes, &p->id);
        if (n == NULL || !is_direct_child(s, n))
            end_child_session(s, p, "no longer a child of this instance in Cfg", false);
    }
}

static void ensure_routes(kraken_sync *s)
{
    if (s->topo_dirty)
        recompute_routes(s);
}

/* ---- facts ---------------------------------------------------------------------------- */

typedef struct factlist {
    kraken_sync_Fact *v;
    size_t n, cap;
} factlist;

static void factlist_clear(factlist *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->v[i].url);
        free(f->v[i].value);
    }
    free(f->v);
    memset(f, 0, sizeof *f);
}

static int factlist_add(factlist *f, const char *url, const kraken_value *value)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        kraken_sync_Fact *v = realloc(f->v, cap * sizeof *v);
        if (v == NULL)
            return kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
        f->v = v;
        f->cap = cap;
    }
    kraken_sync_Fact *fact = &f->v[f->n];
    memset(fact, 0, sizeof *fact);
    fact->url = strdup(url);
    if (fact->url == NULL)
        return kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
    if (value == NULL || value->type == KRAKEN_T_NONE || kraken_value_is_zero(value)) {
        fact->unset = true;
    } else {
        int rc = kraken_value_format(value, &fact->value);
        if (rc < 0) {
            free(fact->url);
            return rc;
        }
    }
    f->n++;
    return KRAKEN_OK;
}

enum fact_filter { FACTS_ALL, FACTS_OWNED, FACTS_NOT_OWNED };

/* The node's id is its identity, not a fact about it: never sent, hashed or unset. */
static bool is_id_url(const char *url) { return strcmp(url, "/Id") == 0; }

typedef struct collect_ctx {
    factlist *out;
    const urlset *owned;
    enum fact_filter filter;
} collect_ctx;

static bool filter_pass(enum fact_filter filter, const urlset *owned, const char *url)
{
    if (filter == FACTS_ALL)
        return true;
    bool o = urlset_match(owned, url);
    return filter == FACTS_OWNED ? o : !o;
}

static int collect_cb(const char *url, const kraken_value *old_value,
                      const kraken_value *new_value, void *ud)
{
    (void)old_value;
    collect_ctx *c = ud;
    if (new_value == NULL || new_value->type == KRAKEN_T_NONE || is_id_url(url) ||
        !filter_pass(c->filter, c->owned, url))
        return 0;
    return factlist_add(c->out, url, new_value);
}

/* Every non-zero fact of @p dsc that passes the filter. */
static int collect_facts(const kraken_node *dsc, const urlset *owned, enum fact_filter filter,
                         factlist *out)
{
    if (dsc == NULL)
        return KRAKEN_OK;
    collect_ctx c = {out, owned, filter};
    return kraken__node_diff_each(NULL, dsc, collect_cb, &c);
}

/* ---- digests -------------------------------------------------------------------------- */

/* The owned-URL set of the link above node @p n, as seen from this instance. */
static const urlset *link_owned(const kraken_sync *s, const snode *n)
{
    if (uuid_eq(&n->id, &s->self))
        return s->parent != NULL ? &s->parent->owned : NULL;
    if (is_direct_child(s, n))
        return &s->my_owned;
    return NULL;
}

typedef struct hash_ctx {
    kraken_sync_hash full, excl, owned;
    const urlset *set;
} hash_ctx;

static int hash_cb(const char *url, const kraken_value *old_value, const kraken_value *new_value,
                   void *ud)
{
    (void)old_value;
    hash_ctx *h = ud;
    if (new_value == NULL || new_value->type == KRAKEN_T_NONE || is_id_url(url))
        return 0;
    char *text = NULL;
    if (kraken_value_format(new_value, &text) < 0)
        return 0;
    size_t ul = strlen(url) + 1, tl = strlen(text) + 1;
    kraken__sync_hash_update(&h->full, url, ul);
    kraken__sync_hash_update(&h->full, text, tl);
    kraken_sync_hash *part = urlset_match(h->set, url) ? &h->owned : &h->excl;
    kraken__sync_hash_update(part, url, ul);
    kraken__sync_hash_update(part, text, tl);
    free(text);
    return 0;
}

static void node_hashes(kraken_sync *s, snode *n)
{
    if (!n->cfg_ok) {
        kraken_sync_hash h;
        kraken__sync_hash_init(&h);
        kraken__sync_hash_update(&h, n->id.bytes, 16);
        const kraken_node *cfg = kraken__store_peek(s->store, KRAKEN_CFG, &n->id);
        uint8_t *bytes = NULL;
        size_t len = 0;
        if (cfg != NULL && kraken_node_encode(cfg, &bytes, &len) == 0)
            kraken__sync_hash_update(&h, bytes, len);
        free(bytes);
        kraken__sync_hash_final(&h, n->h_cfg);
        n->cfg_ok = true;
    }
    if (!n->dsc_ok) {
        hash_ctx h;
        h.set = link_owned(s, n);
        kraken__sync_hash_init(&h.full);
        kraken__sync_hash_init(&h.excl);
        kraken__sync_hash_init(&h.owned);
        kraken__sync_hash_update(&h.full, n->id.bytes, 16);
        kraken__sync_hash_update(&h.excl, n->id.bytes, 16);
        kraken__sync_hash_update(&h.owned, n->id.bytes, 16);
        const kraken_node *dsc = kraken__store_peek(s->store, KRAKEN_DSC, &n->id);
        if (dsc != NULL)
            (void)kraken__node_diff_each(NULL, dsc, hash_cb, &h);
        kraken__sync_hash_final(&h.full, n->h_full);
        kraken__sync_hash_final(&h.excl, n->h_excl);
        kraken__sync_hash_final(&h.owned, n->h_owned);
        n->dsc_ok = true;
    }
    if (!n->stale_hash_ok) {
        kraken_sync_hash h;
        kraken__sync_hash_init(&h);
        kraken__sync_hash_update(&h, n->id.bytes, 16);
        kraken__sync_hash_update(&h, "stale", 5);
        kraken__sync_hash_final(&h, n->h_stale);
        n->stale_hash_ok = true;
    }
}

static void xor_into(uint8_t *acc, const uint8_t *h)
{
    for (int i = 0; i < KRAKEN_SYNC_DIGEST_LEN; i++)
        acc[i] ^= h[i];
}

/* Any change to what the digests cover of every node (owned sets changed). */
static void invalidate_dsc_hashes(kraken_sync *s)
{
    for (size_t i = 0; i < s->nodes.cap; i++)
        if (s->nodes.slots[i] != NULL)
            s->nodes.slots[i]->dsc_ok = false;
    s->change_gen++;
}

/* One pass over the nodes computes every link's digests (PROTOCOL.md 4, "Hello"). */
static void compute_digests(kraken_sync *s)
{
    ensure_routes(s);
    peer *up = s->parent;
    bool all_fresh = up == NULL || up->digest_gen == s->change_gen;
    for (size_t i = 0; all_fresh && i < s->n_children; i++)
        all_fresh = s->children[i]->digest_gen == s->change_gen;
    if (all_fresh)
        return;
    for (size_t i = 0; i < s->n_children; i++) {
        peer *p = s->children[i];
        memset(p->dig_send, 0, sizeof p->dig_send);
        memset(p->dig_hold, 0, sizeof p->dig_hold);
    }
    if (up != NULL) {
        memset(up->dig_send, 0, sizeof up->dig_send);
        memset(up->dig_hold, 0, sizeof up->dig_hold);
    }
    for (size_t i = 0; i < s->nodes.cap; i++) {
        snode *n = s->nodes.slots[i];
        if (n == NULL)
            continue;
        peer *down = uuid_eq(&n->route, &zero_uuid) ? NULL : find_child(s, &n->route);
        bool to_parent = up != NULL && n->in_subtree;
        if (down == NULL && !to_parent)
            continue;
        node_hashes(s, n);
        if (down != NULL) {
            bool top = uuid_eq(&n->id, &down->id);
            xor_into(down->dig_send, n->h_cfg);
            if (top)
                xor_into(down->dig_send, n->h_owned);
            /* a stale node counts as "stale", whatever facts we kept: the child reports it so */
            xor_into(down->dig_hold, !n->fresh ? n->h_stale : top ? n->h_excl : n->h_full);
        }
        if (to_parent) {
            bool me = uuid_eq(&n->id, &s->self);
            xor_into(up->dig_send, me ? n->h_excl : n->fresh ? n->h_full : n->h_stale);
            xor_into(up->dig_hold, n->h_cfg);
            if (me)
                xor_into(up->dig_hold, n->h_owned);
        }
    }
    for (size_t i = 0; i < s->n_children; i++)
        s->children[i]->digest_gen = s->change_gen;
    if (up != NULL)
        up->digest_gen = s->change_gen;
    s->digests_at = now_ms();
}

/* ---- encoding ------------------------------------------------------------------------- */

static int encode_message(const pb_msgdesc_t *fields, const void *msg, uint8_t **out,
                          size_t *len)
{
    size_t size = 0;
    if (!pb_get_encoded_size(&size, fields, msg))
        return kraken__err(KRAKEN_EPROTO, "sync: cannot size a message");
    uint8_t *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
    pb_ostream_t os = pb_ostream_from_buffer(buf, size);
    if (!pb_encode(&os, fields, msg)) {
        free(buf);
        return kraken__err(KRAKEN_EPROTO, "sync: encode failed: %s", PB_GET_ERROR(&os));
    }
    *out = buf;
    *len = os.bytes_written;
    return KRAKEN_OK;
}

/* Envelope{sender, epoch, seq, body, mac} for @p p on channel @p ch. */
static int seal(kraken_sync *s, peer *p, int ch, const uint8_t *body, size_t body_len,
                uint8_t **out, size_t *out_len)
{
    uint64_t seq = ++p->seq_out;
    uint8_t mac[KRAKEN_SYNC_KEY_LEN];
    kraken__sync_mac(p->key, s->self.bytes, s->epoch, seq, channel_byte[ch], body, body_len,
                     mac);
    size_t cap = body_len + 128;
    uint8_t *buf = malloc(cap);
    if (buf == NULL)
        return kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
    pb_ostream_t os = pb_ostream_from_buffer(buf, cap);
    bool ok = pb_encode_tag(&os, PB_WT_STRING, kraken_sync_Envelope_sender_tag) &&
              pb_encode_string(&os, s->self.bytes, 16) &&
              pb_encode_tag(&os, PB_WT_VARINT, kraken_sync_Envelope_epoch_tag) &&
              pb_encode_varint(&os, s->epoch) &&
              pb_encode_tag(&os, PB_WT_VARINT, kraken_sync_Envelope_seq_tag) &&
              pb_encode_varint(&os, seq) &&
              pb_encode_tag(&os, PB_WT_STRING, kraken_sync_Envelope_body_tag) &&
              pb_encode_string(&os, body, body_len) &&
              pb_encode_tag(&os, PB_WT_STRING, kraken_sync_Envelope_mac_tag) &&
              pb_encode_string(&os, mac, sizeof mac);
    if (!ok) {
        free(buf);
        return kraken__err(KRAKEN_EPROTO, "sync: envelope encode failed");
    }
    *out = buf;
    *out_len = os.bytes_written;
    return KRAKEN_OK;
}

static int send_body(kraken_sync *s, peer *p, int ch, const uint8_t *body, size_t len)
{
    uint8_t *env = NULL;
    size_t env_len = 0;
    int rc = seal(s, p, ch, body, len, &env, &env_len);
    if (rc == 0 && ch == CH_UDP && env_len > KRAKEN_SYNC_MAX_DATAGRAM && p->conn != NULL) {
        /* Too big for one datagram after all: the channel is in the mac, so seal again. */
        free(env);
        env = NULL;
        ch = CH_TCP;
        rc = seal(s, p, ch, body, len, &env, &env_len);
    }
    if (rc < 0)
        return rc;
    if (ch == CH_UDP) {
        rc = kraken__sync_net_send(s->net, &p->udp, env, env_len);
        if (rc == 0) {
            s->stats.datagrams_sent++;
            s->stats.bytes_sent += env_len;
        }
    } else if (p->conn != NULL) {
        rc = kraken__sync_conn_send(p->conn, env, env_len);
        if (rc == 0) {
            s->stats.tcp_messages_sent++;
            s->stats.bytes_sent += env_len;
        }
    } else {
        rc = kraken__err(KRAKEN_ESTATE, "sync: no connection to the peer");
    }
    free(env);
    return rc;
}

static int send_message(kraken_sync *s, peer *p, int ch, const kraken_sync_Body *body)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = encode_message(kraken_sync_Body_fields, body, &buf, &len);
    if (rc == 0)
        rc = send_body(s, p, ch, buf, len);
    free(buf);
    return rc;
}

/* Body{update: StateUpdate{full, nodes = blobs[from..to), more}} written by hand around the
 * already encoded NodeStates, so they are not decoded and re-encoded. */
static int send_update(kraken_sync *s, peer *p, int ch, bool full, bool more, const blob *v,
                       size_t n)
{
    size_t su = (full ? 2 : 0) + (more ? 2 : 0);
    for (size_t i = 0; i < n; i++)
        su += 1 + kraken__varint_size(v[i].len) + v[i].len;
    size_t total = 1 + kraken__varint_size(su) + su;
    uint8_t *buf = malloc(total);
    if (buf == NULL)
        return kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
    pb_ostream_t os = pb_ostream_from_buffer(buf, total);
    bool ok = pb_encode_tag(&os, PB_WT_STRING, kraken_sync_Body_update_tag) &&
              pb_encode_varint(&os, su);
    if (ok && full)
        ok = pb_encode_tag(&os, PB_WT_VARINT, kraken_sync_StateUpdate_full_tag) &&
             pb_encode_varint(&os, 1);
    for (size_t i = 0; ok && i < n; i++)
        ok = pb_encode_tag(&os, PB_WT_STRING, kraken_sync_StateUpdate_nodes_tag) &&
             pb_encode_string(&os, v[i].data, v[i].len);
    if (ok && more)
        ok = pb_encode_tag(&os, PB_WT_VARINT, kraken_sync_StateUpdate_more_tag) &&
             pb_encode_varint(&os, 1);
    int rc = ok ? send_body(s, p, ch, buf, os.bytes_written)
                : kraken__err(KRAKEN_EPROTO, "sync: update encode failed");
    free(buf);
    return rc;
}

/* Frames of at most FRAME_NODES_BUDGET bytes of nodes over TCP. A snapshot says full in every
 * part and more in all but the last. */
static int send_tcp_parts(kraken_sync *s, peer *p, bool full, const blob *v, size_t n)
{
    size_t i = 0;
    do {
        size_t j = i, bytes = 0;
        while (j < n && (j == i || bytes + v[j].len <= FRAME_NODES_BUDGET))
            bytes += v[j++].len;
        int rc = send_update(s, p, CH_TCP, full, full && j < n, v + i, j - i);
        if (rc < 0)
            return rc;
        i = j;
    } while (i < n);
    return KRAKEN_OK;
}

/* Deltas: datagrams of up to DGRAM_NODES_BUDGET bytes; nodes that do not fit one datagram,
 * and bursts too large to spray as datagrams, go over TCP. Takes the blobs' data. */
static int send_deltas(kraken_sync *s, peer *p, blobs *b)
{
    if (b->n == 0)
        return KRAKEN_OK;
    qsort(b->v, b->n, sizeof *b->v, blob_depth_cmp);
    size_t total = 0;
    for (size_t i = 0; i < b->n; i++)
        total += b->v[i].len + 4;
    p->last_delta_at = now_ms();
    if (total > TCP_BULK_BYTES && p->conn != NULL)
        return send_tcp_parts(s, p, false, b->v, b->n);
    blobs small = {0}, big = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < b->n; i++) {
        blob *x = &b->v[i];
        bool fits =
            !x->reliable && x->len + 1 + kraken__varint_size(x->len) <= DGRAM_NODES_BUDGET;
        rc = blobs_push(fits ? &small : &big, x->data, x->len, x->depth);
        if (rc == 0)
            x->data = NULL; /* moved */
    }
    size_t start = 0, bytes = 0;
    for (size_t i = 0; rc == 0 && i <= small.n; i++) {
        size_t cost = i < small.n ? small.v[i].len + 1 + kraken__varint_size(small.v[i].len) : 0;
        if (i > start && (i == small.n || bytes + cost > DGRAM_NODES_BUDGET)) {
            rc = send_update(s, p, CH_UDP, false, false, small.v + start, i - start);
            start = i;
            bytes = 0;
        }
        bytes += cost;
    }
    if (rc == 0 && big.n > 0)
        rc = send_tcp_parts(s, p, false, big.v, big.n);
    blobs_clear(&small);
    blobs_clear(&big);
    return rc;
}

/* ---- node states ---------------------------------------------------------------------- */

/*
 * NodeStates, StateUpdates and Envelopes are written and read by hand with nanopb's stream
 * primitives (wire-identical to proto/sync.proto): the generated structs count bytes and
 * elements in 16-bit pb_size_t, and a node's Cfg or a snapshot may be far larger.
 */
typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
} wbuf;

static bool wbuf_write(pb_ostream_t *os, const pb_byte_t *buf, size_t count)
{
    wbuf *w = os->state;
    if (w->len + count > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + count)
            cap *= 2;
        uint8_t *p = realloc(w->p, cap);
        if (p == NULL)
            return false;
        w->p = p;
        w->cap = cap;
    }
    memcpy(w->p + w->len, buf, count);
    w->len += count;
    return true;
}

static pb_ostream_t wbuf_stream(wbuf *w)
{
    pb_ostream_t os = PB_OSTREAM_SIZING;
    os.callback = wbuf_write;
    os.state = w;
    os.max_size = SIZE_MAX;
    return os;
}

static int encode_node_state(const kraken_uuid *id, bool deleted, const uint8_t *cfg,
                             size_t cfg_len, const factlist *facts, bool dsc_full, bool stale,
                             blobs *out, uint32_t depth)
{
    wbuf w = {0};
    pb_ostream_t os = wbuf_stream(&w);
    bool ok = pb_encode_tag(&os, PB_WT_STRING, kraken_sync_NodeState_id_tag) &&
              pb_encode_string(&os, id->bytes, 16);
    if (ok && deleted)
        ok = pb_encode_tag(&os, PB_WT_VARINT, kraken_sync_NodeState_deleted_tag) &&
             pb_encode_varint(&os, 1);
    if (ok && cfg != NULL)
        ok = pb_encode_tag(&os, PB_WT_STRING, kraken_sync_NodeState_cfg_tag) &&
             pb_encode_string(&os, cfg, cfg_len);
    for (size_t i = 0; ok && facts != NULL && i < facts->n; i++)
        ok = pb_encode_tag(&os, PB_WT_STRING, kraken_sync_NodeState_dsc_tag) &&
             pb_encode_submessage(&os, kraken_sync_Fact_fields, &facts->v[i]);
    if (ok && dsc_full)
        ok = pb_encode_tag(&os, PB_WT_VARINT, kraken_sync_NodeState_dsc_full_tag) &&
             pb_encode_varint(&os, 1);
    if (ok && stale)
        ok = pb_encode_tag(&os, PB_WT_VARINT, kraken_sync_NodeState_stale_tag) &&
             pb_encode_varint(&os, 1);
    if (!ok || blobs_push(out, w.p, w.len, depth) < 0) {
        free(w.p);
        return kraken__err(KRAKEN_ENOMEM, "sync: out of memory encoding a node state");
    }
    return KRAKEN_OK;
}

/* Down to a child: the node's Cfg and/or, for the child's own node, the facts we own. */
static int down_state(kraken_sync *s, const snode *n, bool with_cfg, bool with_owned, blobs *out)
{
    uint8_t *cfg = NULL;
    size_t cfg_len = 0;
    factlist facts = {0};
    int rc = 0;
    if (with_cfg) {
        const kraken_node *node = kraken__store_peek(s->store, KRAKEN_CFG, &n->id);
        if (node == NULL)
            return KRAKEN_OK;
        rc = kraken_node_encode(node, &cfg, &cfg_len);
    }
    if (rc == 0 && with_owned)
        rc = collect_facts(kraken__store_peek(s->store, KRAKEN_DSC, &n->id), &s->my_owned,
                           FACTS_OWNED, &facts);
    static const uint8_t empty_cfg[1];
    if (rc == 0)
        rc = encode_node_state(&n->id, false, cfg != NULL ? cfg : with_cfg ? empty_cfg : NULL,
                               cfg_len, with_owned ? &facts : NULL, with_owned, false, out,
                               n->depth);
    free(cfg);
    factlist_clear(&facts);
    return rc;
}

/*
 * Up to the parent: the node's Dsc facts (all, or those of @p urls), minus what the parent
 * owns for this instance's own node. A stale node (PROTOCOL.md 4, "Stale facts") goes with the
 * facts this instance has, flagged stale and never as the whole Dsc: claiming that was all
 * would make the parent forget what it knows. The digests do not cover a stale node's facts,
 * so they go over TCP, where nothing is lost.
 */
static int up_state(kraken_sync *s, const snode *n, bool all, char **urls, size_t n_urls,
                    blobs *out)
{
    bool self = uuid_eq(&n->id, &s->self);
    bool stale = !self && !n->fresh;
    const kraken_node *dsc = kraken__store_peek(s->store, KRAKEN_DSC, &n->id);
    const urlset *skip = self ? &s->parent->owned : NULL;
    factlist facts = {0};
    int rc = 0;
    if (dsc != NULL && all) {
        rc = collect_facts(dsc, skip, skip != NULL ? FACTS_NOT_OWNED : FACTS_ALL, &facts);
    } else if (dsc != NULL) {
        for (size_t i = 0; rc == 0 && i < n_urls; i++) {
            if (urlset_match(skip, urls[i]))
                continue;
            kraken_value v = KRAKEN_VALUE_INIT;
            int g = kraken_node_get(dsc, urls[i], &v);
            if (g < 0)
                kraken_error_clear(); /* absent: sent as unset */
            rc = factlist_add(&facts, urls[i], g < 0 ? NULL : &v);
            kraken_value_clear(&v);
        }
    }
    if (rc == 0 && (all || facts.n > 0 || n->fresh_dirty)) {
        rc = encode_node_state(&n->id, false, NULL, 0, &facts, all && !stale, stale, out,
                               n->depth);
        if (rc == 0 && stale)
            out->v[out->n - 1].reliable = true;
    }
    factlist_clear(&facts);
    return rc;
}

static int tomb_state(const kraken_uuid *id, blobs *out)
{
    return encode_node_state(id, true, NULL, 0, NULL, false, false, out, 0);
}

/* ---- snapshots ------------------------------------------------------------------------ */

/* Everything a link carries, in parts over TCP (PROTOCOL.md 4, "Snapshots"). */
static int send_snapshot(kraken_sync *s, peer *p)
{
    ensure_routes(s);
    blobs b = {0};
    int rc = 0;
    if (p->role == ROLE_CHILD) { /* the child's subtree only: a join costs its own size */
        snode *top = nt_find(&s->nodes, &p->id);
        for (snode *n = top != NULL ? top->members : NULL; rc == 0 && n != NULL; n = n->m_next)
            rc = down_state(s, n, true, n == top, &b);
    } else {
        for (size_t i = 0; rc == 0 && i < s->nodes.cap; i++) {
            snode *n = s->nodes.slots[i];
            if (n != NULL && n->in_subtree)
                rc = up_state(s, n, true, NULL, 0, &b);
        }
    }
    if (rc == 0) {
        qsort(b.v, b.n, sizeof *b.v, blob_depth_cmp);
        rc = send_tcp_parts(s, p, true, b.v, b.n);
    }
    blobs_clear(&b);
    if (rc == 0) {
        s->stats.full_resends++;
        p->last_snapshot_at = now_ms();
        p->n_tombs = 0; /* the snapshot says it all */
    }
    return rc;
}

/* ---- flushing deltas ------------------------------------------------------------------ */

/* Sending failed (out of memory, a closing connection): the hello digests will notice what
 * the peer missed and a snapshot repairs it, but the operator hears of it now. */
static void log_send_error(kraken_sync *s, const peer *p, const char *what)
{
    char who[64];
    s->stats.send_failed++;
    slog(s, KRAKEN_LOG_ERROR, "cannot send %s to %s: %s", what, peer_name(p, who),
         kraken_error_last());
    kraken_error_clear();
}

static void snapshot_or_log(kraken_sync *s, peer *p)
{
    if (send_snapshot(s, p) < 0)
        log_send_error(s, p, "a snapshot");
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kraken_sync *s = arg;
    ensure_routes(s);
    if (s->check_children)
        check_children(s);
    peer *up = s->parent != NULL && s->parent->ready ? s->parent : NULL;
    for (size_t i = 0; i < s->n_dirty; i++) {
        snode *n = nt_find(&s->nodes, &s->dirty[i]);
        if (n == NULL)
            continue;
        peer *down = uuid_eq(&n->route, &zero_uuid) ? NULL : find_child(s, &n->route);
        bool top = down != NULL && uuid_eq(&n->id, &down->id);
        if (down != NULL && (n->cfg_dirty || (top && n->owned_dirty)) &&
            down_state(s, n, n->cfg_dirty, top && n->owned_dirty, &down->out) < 0)
            log_send_error(s, down, "a delta");
        if (up != NULL && n->in_subtree && (n->up_all || n->n_up_urls > 0 || n->fresh_dirty) &&
            up_state(s, n, n->up_all, n->up_urls, n->n_up_urls, &up->out) < 0)
            log_send_error(s, up, "a delta");
        n->queued = n->cfg_dirty = n->owned_dirty = n->up_all = n->fresh_dirty = false;
        snode_clear_urls(n);
    }
    s->n_dirty = 0;
    for (size_t i = 0; i < s->n_children; i++) {
        peer *p = s->children[i];
        for (size_t k = 0; k < p->n_tombs; k++)
            if (tomb_state(&p->tombs[k], &p->out) < 0)
                log_send_error(s, p, "a deletion");
        p->n_tombs = 0;
        if (send_deltas(s, p, &p->out) < 0)
            log_send_error(s, p, "deltas");
        blobs_clear(&p->out);
    }
    if (up != NULL) {
        if (send_deltas(s, up, &up->out) < 0)
            log_send_error(s, up, "deltas");
        blobs_clear(&up->out);
    }
}

/* ---- reading messages ------------------------------------------------------------------ */

typedef struct rx_node {
    kraken_uuid id;
    bool deleted, dsc_full, has_cfg, stale;
    const uint8_t *cfg; /* points into the received buffer */
    size_t cfg_len;
    kraken_sync_Fact *facts;
    size_t n_facts, cap_facts;
} rx_node;

typedef struct rx_update {
    bool full, more;
    rx_node *nodes;
    size_t n, cap;
} rx_update;

typedef struct rx_body {
    uint32_t kind; /* kraken_sync_Body_*_tag, 0: none */
    kraken_sync_Hello hello;
    kraken_sync_JoinResult result;
    rx_update update;
} rx_body;

static void rx_body_clear(rx_body *b)
{
    for (size_t i = 0; i < b->update.n; i++) {
        rx_node *n = &b->update.nodes[i];
        for (size_t k = 0; k < n->n_facts; k++)
            pb_release(kraken_sync_Fact_fields, &n->facts[k]);
        free(n->facts);
    }
    free(b->update.nodes);
    pb_release(kraken_sync_JoinResult_fields, &b->result);
    memset(b, 0, sizeof *b);
}

/* The small messages (join handshake, Hello, JoinResult, Fact) use the generated structs. */
static bool decode_small(const pb_msgdesc_t *fields, const uint8_t *data, size_t len, void *msg)
{
    pb_istream_t is = pb_istream_from_buffer(data, len);
    return pb_decode(&is, fields, msg);
}

typedef struct wfield {
    uint32_t tag;
    pb_wire_type_t wt;
    uint64_t v;
    const uint8_t *data;
    size_t len;
} wfield;

/* Next field of a message: 1, 0 at the end, -1 when malformed. */
static int wire_next(pb_istream_t *is, wfield *f)
{
    bool eof = false;
    if (!pb_decode_tag(is, &f->wt, &f->tag, &eof))
        return eof ? 0 : -1;
    if (f->wt == PB_WT_VARINT)
        return pb_decode_varint(is, &f->v) ? 1 : -1;
    if (f->wt == PB_WT_STRING) {
        uint32_t len;
        if (!pb_decode_varint32(is, &len) || len > is->bytes_left)
            return -1;
        f->data = is->state; /* buffer streams keep the read position here */
        f->len = len;
        return pb_read(is, NULL, len) ? 1 : -1;
    }
    return pb_skip_field(is, f->wt) ? 1 : -1;
}

static bool parse_fact(rx_node *n, const wfield *f)
{
    if (n->n_facts == n->cap_facts) {
        size_t cap = n->cap_facts ? n->cap_facts * 2 : 8;
        kraken_sync_Fact *v = realloc(n->facts, cap * sizeof *v);
        if (v == NULL)
            return false;
        n->facts = v;
        n->cap_facts = cap;
    }
    kraken_sync_Fact *fact = &n->facts[n->n_facts];
    memset(fact, 0, sizeof *fact);
    if (!decode_small(kraken_sync_Fact_fields, f->data, f->len, fact))
        return false;
    n->n_facts++;
    return true;
}

static bool parse_node_state(rx_update *u, const uint8_t *data, size_t len)
{
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 16;
        rx_node *v = realloc(u->nodes, cap * sizeof *v);
        if (v == NULL)
            return false;
        u->nodes = v;
        u->cap = cap;
    }
    rx_node *n = &u->nodes[u->n++];
    memset(n, 0, sizeof *n);
    pb_istream_t is = pb_istream_from_buffer(data, len);
    wfield f;
    int r;
    bool has_id = false;
    while ((r = wire_next(&is, &f)) == 1) {
        if (f.tag == kraken_sync_NodeState_id_tag && f.wt == PB_WT_STRING && f.len == 16) {
            memcpy(n->id.bytes, f.data, 16);
            has_id = true;
        } else if (f.tag == kraken_sync_NodeState_deleted_tag && f.wt == PB_WT_VARINT) {
            n->deleted = f.v != 0;
        } else if (f.tag == kraken_sync_NodeState_cfg_tag && f.wt == PB_WT_STRING) {
            n->has_cfg = true;
            n->cfg = f.data;
            n->cfg_len = f.len;
        } else if (f.tag == kraken_sync_NodeState_dsc_tag && f.wt == PB_WT_STRING) {
            if (!parse_fact(n, &f))
                return false;
        } else if (f.tag == kraken_sync_NodeState_dsc_full_tag && f.wt == PB_WT_VARINT) {
            n->dsc_full = f.v != 0;
        } else if (f.tag == kraken_sync_NodeState_stale_tag && f.wt == PB_WT_VARINT) {
            n->stale = f.v != 0;
        } else if (f.tag <= kraken_sync_NodeState_stale_tag) {
            return false; /* a known field with the wrong wire type or size */
        }
    }
    return r == 0 && has_id;
}

static bool parse_update(rx_update *u, const uint8_t *data, size_t len)
{
    pb_istream_t is = pb_istream_from_buffer(data, len);
    wfield f;
    int r;
    while ((r = wire_next(&is, &f)) == 1) {
        if (f.tag == kraken_sync_StateUpdate_full_tag && f.wt == PB_WT_VARINT)
            u->full = f.v != 0;
        else if (f.tag == kraken_sync_StateUpdate_more_tag && f.wt == PB_WT_VARINT)
            u->more = f.v != 0;
        else if (f.tag == kraken_sync_StateUpdate_nodes_tag && f.wt == PB_WT_STRING) {
            if (!parse_node_state(u, f.data, f.len))
                return false;
        } else if (f.tag <= kraken_sync_StateUpdate_more_tag)
            return false;
    }
    return r == 0;
}

/* Body: a oneof; the last member present wins, as protobuf says. */
static bool parse_body(rx_body *b, const uint8_t *data, size_t len)
{
    memset(b, 0, sizeof *b);
    pb_istream_t is = pb_istream_from_buffer(data, len);
    wfield f;
    int r;
    while ((r = wire_next(&is, &f)) == 1) {
        if (f.tag == kraken_sync_Body_hello_tag && f.wt == PB_WT_STRING) {
            memset(&b->hello, 0, sizeof b->hello);
            if (!decode_small(kraken_sync_Hello_fields, f.data, f.len, &b->hello))
                return false;
        } else if (f.tag == kraken_sync_Body_update_tag && f.wt == PB_WT_STRING) {
            if (!parse_update(&b->update, f.data, f.len))
                return false;
        } else if (f.tag == kraken_sync_Body_join_result_tag && f.wt == PB_WT_STRING) {
            pb_release(kraken_sync_JoinResult_fields, &b->result);
            memset(&b->result, 0, sizeof b->result);
            if (!decode_small(kraken_sync_JoinResult_fields, f.data, f.len, &b->result))
                return false;
        } else if (f.tag == kraken_sync_Body_resend_tag && f.wt == PB_WT_VARINT) {
            if (f.v == 0)
                continue;
        } else {
            continue; /* unknown member: skip */
        }
        b->kind = f.tag;
    }
    return r == 0;
}

typedef struct rx_envelope {
    uint8_t sender[16];
    uint64_t epoch, seq;
    const uint8_t *body;
    size_t body_len;
    uint8_t mac[KRAKEN_SYNC_KEY_LEN];
    bool has_sender, has_body, has_mac;
} rx_envelope;

static bool parse_envelope(rx_envelope *e, const uint8_t *data, size_t len)
{
    memset(e, 0, sizeof *e);
    pb_istream_t is = pb_istream_from_buffer(data, len);
    wfield f;
    int r;
    while ((r = wire_next(&is, &f)) == 1) {
        if (f.tag == kraken_sync_Envelope_sender_tag && f.wt == PB_WT_STRING && f.len == 16) {
            memcpy(e->sender, f.data, 16);
            e->has_sender = true;
        } else if (f.tag == kraken_sync_Envelope_epoch_tag && f.wt == PB_WT_VARINT) {
            e->epoch = f.v;
        } else if (f.tag == kraken_sync_Envelope_seq_tag && f.wt == PB_WT_VARINT) {
            e->seq = f.v;
        } else if (f.tag == kraken_sync_Envelope_body_tag && f.wt == PB_WT_STRING) {
            e->body = f.data;
            e->body_len = f.len;
            e->has_body = true;
        } else if (f.tag == kraken_sync_Envelope_mac_tag && f.wt == PB_WT_STRING &&
                   f.len == KRAKEN_SYNC_KEY_LEN) {
            memcpy(e->mac, f.data, KRAKEN_SYNC_KEY_LEN);
            e->has_mac = true;
        } else if (f.tag <= kraken_sync_Envelope_mac_tag) {
            return false;
        }
    }
    return r == 0 && e->has_sender && e->has_body && e->has_mac;
}

/* ---- applying received state ---------------------------------------------------------- */

typedef struct idparent {
    kraken_uuid id, parent;
} idparent;

static int idparent_cmp(const void *a, const void *b)
{
    return memcmp(((const idparent *)a)->id.bytes, ((const idparent *)b)->id.bytes, 16);
}

/* Does @p id's Cfg parent chain reach this instance? Parents from the message being applied
 * (@p msg, sorted) take precedence over the stored ones. */
static bool chain_reaches_self(kraken_sync *s, const kraken_uuid *id, const idparent *msg,
                               size_t n_msg)
{
    kraken_uuid cur = *id;
    for (int depth = 0; depth < MAX_PATH_DEPTH; depth++) {
        if (uuid_eq(&cur, &s->self))
            return true;
        idparent key = {cur, zero_uuid};
        const idparent *m = n_msg ? bsearch(&key, msg, n_msg, sizeof *msg, idparent_cmp) : NULL;
        if (m != NULL) {
            cur = m->parent;
        } else {
            const snode *n = nt_find(&s->nodes, &cur);
            if (n == NULL)
                return false;
            cur = n->parent;
        }
        if (uuid_eq(&cur, &zero_uuid))
            return false;
    }
    return false;
}

/* Unset every current fact of the sender's domain, so that the listed ones replace them. */
/* ---- per-URL versions of facts from a child link (PROTOCOL.md 4, "Ordering") -------- */

static uint64_t url_hash(const char *url)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then mixed */
    for (const unsigned char *c = (const unsigned char *)url; *c != '\0'; c++)
        h = (h ^ *c) * 0x100000001b3ull;
    return mix64(h);
}

static bool hash_in(uint64_t h, const uint64_t *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] == h)
            return true;
    return false;
}

/* The URLs messages newer than @p seq set; false when that is not fully known. */
static bool newer_urls(const snode *n, uint64_t seq, uint64_t out[URLVER_N], size_t *n_out)
{
    *n_out = 0;
    if (n->uv_evicted > seq)
        return false;
    for (unsigned i = 0; i < n->n_uv; i++)
        if (n->uv[i].seq > seq)
            out[(*n_out)++] = n->uv[i].hash;
    return true;
}

static void note_url(snode *n, uint64_t hash, uint64_t seq)
{
    unsigned oldest = 0;
    for (unsigned i = 0; i < n->n_uv; i++) {
        if (n->uv[i].hash == hash) {
            if (seq > n->uv[i].seq)
                n->uv[i].seq = seq;
            return;
        }
        if (n->uv[i].seq < n->uv[oldest].seq)
            oldest = i;
    }
    if (n->n_uv < URLVER_N) {
        n->uv[n->n_uv++] = (struct urlver){hash, seq};
        return;
    }
    /* full: forget the oldest of the entries and the new one */
    uint64_t dropped = seq < n->uv[oldest].seq ? seq : n->uv[oldest].seq;
    if (seq > n->uv[oldest].seq)
        n->uv[oldest] = (struct urlver){hash, seq};
    if (dropped > n->uv_evicted)
        n->uv_evicted = dropped;
}

typedef struct unset_ctx {
    kraken_node *node;
    const urlset *owned;
    enum fact_filter filter;
    factlist urls;
    const uint64_t *skip; /* URL hashes a newer message set: left alone */
    size_t n_skip;
} unset_ctx;

static int unset_collect_cb(const char *url, const kraken_value *old_value,
                            const kraken_value *new_value, void *ud)
{
    (void)old_value;
    unset_ctx *u = ud;
    if (new_value == NULL || new_value->type == KRAKEN_T_NONE || is_id_url(url) ||
        !filter_pass(u->filter, u->owned, url) ||
        (u->n_skip > 0 && hash_in(url_hash(url), u->skip, u->n_skip)))
        return 0;
    return factlist_add(&u->urls, url, NULL);
}

/*
 * Apply Dsc facts to node @p id. @p filter/@p owned say which facts the sender may speak for:
 * others are dropped and counted. With @p full the sender's whole domain is replaced.
 */
static void apply_facts(kraken_sync *s, const peer *from, const kraken_uuid *id,
                        const kraken_sync_Fact *facts, size_t n_facts, bool full,
                        const urlset *owned, enum fact_filter filter, const uint64_t *skip,
                        size_t n_skip)
{
    char who[64], nid[KRAKEN_UUID_STRLEN + 1];
    kraken_node *node = NULL;
    if (kraken_store_read(s->store, KRAKEN_DSC, id, &node) < 0) {
        s->stats.apply_failed++;
        log_drop(s, DROP_APPLY, KRAKEN_LOG_ERROR, "facts for node %s from %s not applied: %s",
                 fmt_id(id, nid), peer_name(from, who), kraken_error_last());
        kraken_error_clear();
        return;
    }
    if (full) {
        unset_ctx u = {node, owned, filter, {0}, skip, n_skip};
        (void)kraken__node_diff_each(NULL, node, unset_collect_cb, &u);
        for (size_t i = 0; i < u.urls.n; i++)
            (void)kraken_node_unset(node, u.urls.v[i].url);
        factlist_clear(&u.urls);
    }
    for (size_t i = 0; i < n_facts; i++) {
        const kraken_sync_Fact *f = &facts[i];
        if (n_skip > 0 && f->url != NULL && hash_in(url_hash(f->url), skip, n_skip))
            continue; /* a newer message set it */
        if (f->url == NULL || is_id_url(f->url)) {
            s->stats.dropped_malformed++;
            log_drop(s, DROP_MALFORMED, KRAKEN_LOG_WARNING,
                     "dropped a fact for node %s from %s: %s", fmt_id(id, nid),
                     peer_name(from, who), f->url == NULL ? "no URL" : "/Id is not a fact");
            continue;
        }
        if (!filter_pass(filter, owned, f->url)) {
            s->stats.dropped_not_authorized++;
            log_drop(s, DROP_NOT_AUTHORIZED, KRAKEN_LOG_WARNING,
                     "dropped fact %s of node %s from %s: %s", f->url, fmt_id(id, nid),
                     peer_name(from, who),
                     filter == FACTS_OWNED ? "a parent speaks only for the URLs it owns"
                                           : "this instance owns that URL for its child");
            continue;
        }
        int rc = f->unset || f->value == NULL ? kraken_node_unset(node, f->url)
                                              : kraken_node_set_text(node, f->url, f->value);
        if (rc < 0) {
            s->stats.apply_failed++;
            log_drop(s, DROP_APPLY, KRAKEN_LOG_ERROR,
                     "fact %s of node %s from %s not applied: %s", f->url, fmt_id(id, nid),
                     peer_name(from, who), kraken_error_last());
            kraken_error_clear();
        }
    }
    if (kraken_store_update(s->store, KRAKEN_DSC, node) < 0) {
        s->stats.apply_failed++;
        log_drop(s, DROP_APPLY, KRAKEN_LOG_ERROR, "facts for node %s from %s not applied: %s",
                 fmt_id(id, nid), peer_name(from, who), kraken_error_last());
        kraken_error_clear();
    }
    kraken_node_free(node);
}

static int uuid_cmp(const void *a, const void *b) { return memcmp(a, b, 16); }

/* Sort, drop duplicates and ids no longer held. */
static void seen_compact(kraken_sync *s, peer *p)
{
    qsort(p->seen, p->n_seen, sizeof *p->seen, uuid_cmp);
    size_t n = 0;
    for (size_t i = 0; i < p->n_seen; i++) {
        bool repeated = n > 0 && uuid_eq(&p->seen[n - 1], &p->seen[i]);
        if (repeated || nt_find(&s->nodes, &p->seen[i]) == NULL)
            continue;
        p->seen[n++] = p->seen[i];
    }
    p->n_seen = n;
}

/*
 * Note a node listed in a snapshot part. Only nodes we hold can be missing from a snapshot, and
 * a peer that repeats ids over endless parts (more = true) must not grow the list without
 * bound: it stays within about twice the node table.
 */
static int seen_add(kraken_sync *s, peer *p, const kraken_uuid *id)
{
    if (nt_find(&s->nodes, id) == NULL)
        return KRAKEN_OK;
    if (p->n_seen == p->cap_seen && p->n_seen > 2 * s->nodes.count + 64)
        seen_compact(s, p);
    if (p->n_seen == p->cap_seen) {
        size_t cap = p->cap_seen ? p->cap_seen * 2 : 64;
        kraken_uuid *v = realloc(p->seen, cap * sizeof *v);
        if (v == NULL)
            return KRAKEN_ENOMEM;
        p->seen = v;
        p->cap_seen = cap;
    }
    p->seen[p->n_seen++] = *id;
    return KRAKEN_OK;
}

static bool seen_has(const peer *p, const kraken_uuid *id)
{
    return p->n_seen > 0 && bsearch(id, p->seen, p->n_seen, sizeof *p->seen, uuid_cmp) != NULL;
}

/* ---- ordering: per-node versions (PROTOCOL.md 4, "Ordering") -------------------------- */

/* Did a message of @p p's session later than @p than set this state? */
static bool stamp_newer(uint32_t session, uint64_t seq, const peer *p, uint64_t than)
{
    return session == p->serial && seq > than;
}

/* The state in the message being applied is older than what this node already has from @p p
 * (down: from our parent; up: from the child link it is under). */
static bool older_than_applied(const peer *p, const snode *n)
{
    if (n == NULL)
        return false;
    return p->role == ROLE_PARENT ? stamp_newer(n->down_session, n->down_seq, p, p->rx_seq)
                                  : stamp_newer(n->up_session, n->up_seq, p, p->rx_seq);
}

static void stamp(const peer *p, snode *n)
{
    if (n == NULL)
        return;
    if (p->role == ROLE_PARENT) {
        n->down_session = p->serial;
        n->down_seq = p->rx_seq;
    } else {
        n->up_session = p->serial;
        n->up_seq = p->rx_seq;
    }
}

static void remember_gone(peer *p, const kraken_uuid *id)
{
    unsigned i = p->n_gone++ % GONE_RING;
    p->gone[i].id = *id;
    p->gone[i].seq = p->rx_seq;
}

/* A node we do not hold: was it deleted by a message later than the one being applied? */
static bool deleted_later(const peer *p, const kraken_uuid *id)
{
    unsigned n = p->n_gone < GONE_RING ? p->n_gone : GONE_RING;
    for (unsigned i = 0; i < n; i++)
        if (uuid_eq(&p->gone[i].id, id) && p->gone[i].seq > p->rx_seq)
            return true;
    return false;
}

/* Collect ids matching a predicate first: applying changes the node table. A node updated by a
 * message sent after the snapshot started is not missing from it: it is newer. */
static size_t snapshot_leftovers(kraken_sync *s, peer *p, kraken_uuid **out)
{
    qsort(p->seen, p->n_seen, sizeof *p->seen, uuid_cmp);
    snode *top = p->role == ROLE_CHILD ? nt_find(&s->nodes, &p->id) : NULL;
    size_t cap = 0;
    if (p->role == ROLE_CHILD) /* a child link's own nodes: the cost of its subtree */
        for (snode *x = top != NULL ? top->members : NULL; x != NULL; x = x->m_next)
            cap++;
    else
        cap = s->nodes.count;
    kraken_uuid *v = malloc((cap + 1) * sizeof *v);
    size_t n = 0;
    if (v == NULL)
        return 0;
    if (p->role == ROLE_CHILD) {
        for (snode *x = top != NULL ? top->members : NULL; x != NULL; x = x->m_next)
            if (!stamp_newer(x->up_session, x->up_seq, p, p->snap_seq) && !seen_has(p, &x->id))
                v[n++] = x->id;
    } else {
        for (size_t i = 0; i < s->nodes.cap; i++) {
            snode *x = s->nodes.slots[i];
            if (x == NULL || !x->in_subtree || uuid_eq(&x->id, &s->self) ||
                stamp_newer(x->down_session, x->down_seq, p, p->snap_seq))
                continue;
            if (!seen_has(p, &x->id))
                v[n++] = x->id;
        }
    }
    *out = v;
    return n;
}

static void first_full_from_parent(kraken_sync *s, peer *p);

/* State from our parent: Cfg of our subtree and the facts it owns for our own node. Returns
 * true when this completed the first full state of the session. */
static bool apply_from_parent(kraken_sync *s, peer *p, const rx_update *u)
{
    char who[64], nid[KRAKEN_UUID_STRLEN + 1];
    ensure_routes(s);
    idparent *msg = calloc(u->n + 1, sizeof *msg);
    kraken_node **decoded = calloc(u->n + 1, sizeof *decoded);
    size_t n_msg = 0;
    if (msg == NULL || decoded == NULL) {
        free(msg);
        free(decoded);
        return false;
    }
    for (size_t i = 0; i < u->n; i++) {
        const rx_node *ns = &u->nodes[i];
        if (!ns->has_cfg)
            continue;
        if (kraken_node_decode(ns->cfg, ns->cfg_len, &decoded[i]) < 0 ||
            !uuid_eq(kraken_node_id(decoded[i]), &ns->id)) {
            log_drop(s, DROP_MALFORMED, KRAKEN_LOG_WARNING,
                     "dropped the Cfg of node %s from %s: %s", fmt_id(&ns->id, nid),
                     peer_name(p, who),
                     decoded[i] == NULL ? kraken_error_last() : "its /Id is another node's");
            kraken_error_clear();
            kraken_node_free(decoded[i]);
            decoded[i] = NULL;
            s->stats.dropped_malformed++;
            continue;
        }
        msg[n_msg].id = ns->id;
        msg[n_msg].parent = *cfg_parent_of(decoded[i]);
        n_msg++;
    }
    qsort(msg, n_msg, sizeof *msg, idparent_cmp);
    if (u->full && !p->rx_snapshot) {
        p->rx_snapshot = true;
        p->snap_seq = p->rx_seq;
        p->n_seen = 0;
    }
    for (size_t i = 0; i < u->n; i++) {
        const rx_node *ns = &u->nodes[i];
        bool self = uuid_eq(&ns->id, &s->self);
        snode *n = nt_find(&s->nodes, &ns->id);
        if (older_than_applied(p, n) || (n == NULL && deleted_later(p, &ns->id))) {
            s->stats.dropped_old++; /* a later message already set (or deleted) it */
            log_drop(s, DROP_OLD, KRAKEN_LOG_DEBUG,
                     "ignored the state of node %s in message %llu from %s: a later message "
                     "already %s it",
                     fmt_id(&ns->id, nid), (unsigned long long)p->rx_seq, peer_name(p, who),
                     n == NULL ? "deleted" : "set");
            if (u->full)
                (void)seen_add(s, p, &ns->id);
            continue;
        }
        if (ns->deleted) {
            if (n != NULL && n->in_subtree && !self) {
                remember_gone(p, &ns->id);
                (void)kraken_store_delete(s->store, &ns->id);
            } else if (n != NULL) {
                s->stats.dropped_not_authorized++;
                log_drop(s, DROP_NOT_AUTHORIZED, KRAKEN_LOG_WARNING,
                         "dropped the deletion of node %s from %s: %s", fmt_id(&ns->id, nid),
                         peer_name(p, who),
                         self ? "an instance does not delete its own node"
                              : "the node is outside this instance's subtree");
            }
            continue;
        }
        if (ns->has_cfg && decoded[i] == NULL)
            continue; /* undecodable, counted above */
        if (decoded[i] != NULL) {
            if (!chain_reaches_self(s, &ns->id, msg, n_msg)) {
                s->stats.dropped_not_authorized++;
                log_drop(s, DROP_NOT_AUTHORIZED, KRAKEN_LOG_WARNING,
                         "dropped the Cfg of node %s from %s: its parent chain does not reach "
                         "this instance",
                         fmt_id(&ns->id, nid), peer_name(p, who));
                continue;
            }
            bool exists = kraken_store_contains(s->store, &ns->id);
            int rc = exists ? kraken_store_update(s->store, KRAKEN_CFG, decoded[i])
                            : kraken_store_create(s->store, decoded[i]);
            if (rc < 0) {
                s->stats.apply_failed++;
                log_drop(s, DROP_APPLY, KRAKEN_LOG_ERROR,
                         "Cfg of node %s from %s not applied (%s): %s", fmt_id(&ns->id, nid),
                         peer_name(p, who), exists ? "update" : "create", kraken_error_last());
                kraken_error_clear();
                continue;
            }
        }
        if (ns->n_facts > 0 || ns->dsc_full) {
            if (self) {
                apply_facts(s, p, &ns->id, ns->facts, ns->n_facts, ns->dsc_full, &p->owned,
                            FACTS_OWNED, NULL, 0);
            } else {
                s->stats.dropped_not_authorized += ns->n_facts ? ns->n_facts : 1;
                log_drop(s, DROP_NOT_AUTHORIZED, KRAKEN_LOG_WARNING,
                         "dropped %zu facts of node %s from %s: a parent sends facts only for "
                         "this instance's own node",
                         ns->n_facts, fmt_id(&ns->id, nid), peer_name(p, who));
            }
        }
        stamp(p, nt_find(&s->nodes, &ns->id));
        if (u->full)
            (void)seen_add(s, p, &ns->id);
    }
    for (size_t i = 0; i < u->n; i++)
        kraken_node_free(decoded[i]);
    free(decoded);
    free(msg);
    if (!u->full || u->more)
        return false;
    p->rx_snapshot = false;
    ensure_routes(s);
    kraken_uuid *gone = NULL;
    size_t n_gone = snapshot_leftovers(s, p, &gone);
    for (size_t i = 0; i < n_gone; i++)
        (void)kraken_store_delete(s->store, &gone[i]);
    free(gone);
    p->n_seen = 0;
    return !p->ready;
}

/* State from a child: Dsc facts of its subtree, minus the facts we own for its own node. */
static void apply_from_child(kraken_sync *s, peer *p, const rx_update *u)
{
    size_t went_stale = 0, went_fresh = 0;
    ensure_routes(s);
    if (u->full && !p->rx_snapshot) {
        p->rx_snapshot = true;
        p->snap_seq = p->rx_seq;
        p->n_seen = 0;
    }
    for (size_t i = 0; i < u->n; i++) {
        const rx_node *ns = &u->nodes[i];
        snode *n = nt_find(&s->nodes, &ns->id);
        if (n == NULL || !uuid_eq(&n->route, &p->id) || ns->deleted || ns->has_cfg) {
            /* Outside its subtree, or Cfg/deletions, which only flow down. */
            s->stats.dropped_not_authorized++;
            char who[64], nid[KRAKEN_UUID_STRLEN + 1];
            log_drop(s, DROP_NOT_AUTHORIZED, KRAKEN_LOG_WARNING,
                     "dropped %s node %s from %s: %s",
                     ns->deleted ? "the deletion of" : ns->has_cfg ? "the Cfg of" : "facts of",
                     fmt_id(&ns->id, nid), peer_name(p, who),
                     ns->deleted || ns->has_cfg ? "Cfg and deletions flow only down"
                                                : "the node is outside the child's subtree");
            continue;
        }
        /* An older message (a snapshot overtaken by deltas) still fills in the URLs no newer
         * message set; when those are not all known, it is skipped. */
        bool older = older_than_applied(p, n);
        uint64_t skip[URLVER_N];
        size_t n_skip = 0;
        if (older && !newer_urls(n, p->rx_seq, skip, &n_skip)) {
            s->stats.dropped_old++;
            if (u->full)
                (void)seen_add(s, p, &ns->id);
            continue;
        }
        bool top = uuid_eq(&ns->id, &p->id);
        /* a stale node keeps what we have: only the facts listed (the child's own discoveries
         * about it) apply, never a replacement */
        bool replace = ns->dsc_full && !ns->stale;
        if (ns->n_facts > 0 || replace)
            apply_facts(s, p, &ns->id, ns->facts, ns->n_facts, replace, &s->my_owned,
                        top ? FACTS_NOT_OWNED : FACTS_ALL, skip, n_skip);
        n = nt_find(&s->nodes, &ns->id);
        if (n == NULL)
            continue;
        if (!older && n->up_session != p->serial) { /* another session: other numbers */
            n->n_uv = 0;
            n->uv_evicted = 0;
        }
        if (replace && !older) { /* every fact is as of this message: nothing older merges */
            n->n_uv = 0;
            n->uv_evicted = p->rx_seq;
        } else {
            for (size_t k = 0; k < ns->n_facts; k++)
                if (ns->facts[k].url != NULL)
                    note_url(n, url_hash(ns->facts[k].url), p->rx_seq);
        }
        if (older) { /* its node-level flags are out of date: only its facts counted */
            if (u->full)
                (void)seen_add(s, p, &ns->id);
            continue;
        }
        stamp(p, n);
        if (ns->stale)
            went_stale += set_fresh(s, n, false);
        else if (replace)
            went_fresh += set_fresh(s, n, true);
        if (u->full)
            (void)seen_add(s, p, &ns->id);
    }
    if (u->full && !u->more) {
        /* A node of the child's subtree it did not list: it does not know it (yet). Keep the
         * facts, marked stale; never conclude it has none. */
        p->rx_snapshot = false;
        kraken_uuid *rest = NULL;
        size_t n_rest = snapshot_leftovers(s, p, &rest);
        for (size_t i = 0; i < n_rest; i++) {
            snode *n = nt_find(&s->nodes, &rest[i]);
            if (n != NULL)
                went_stale += set_fresh(s, n, false);
        }
        free(rest);
        p->n_seen = 0;
    }
    char buf[KRAKEN_UUID_STRLEN + 1];
    if (went_stale > 0)
        publish(s, KRAKEN_SYNC_NODES_STALE, &p->id,
                "%zu nodes under child %s are stale: the child has not (re)learned their facts",
                went_stale, fmt_id(&p->id, buf));
    if (went_fresh > 0)
        publish(s, KRAKEN_SYNC_NODES_FRESH, &p->id, "%zu nodes under child %s are fresh again",
                went_fresh, fmt_id(&p->id, buf));
}

static void apply_update(kraken_sync *s, peer *p, const rx_update *u)
{
    peer *saved = s->applying_from;
    s->applying_from = p;
    bool first_full = false;
    if (p->role == ROLE_PARENT)
        first_full = apply_from_parent(s, p, u);
    else
        apply_from_child(s, p, u);
    s->applying_from = saved;
    /* Outside the applying scope: thawing the engine may write Dsc that must go up. */
    if (first_full)
        first_full_from_parent(s, p);
}

/* ---- hellos --------------------------------------------------------------------------- */

/* Only the digest of what we hold goes out (the peer compares it with what it sends, and the
 * peer's hello covers the other direction), truncated to KRAKEN_SYNC_HELLO_DIGEST_LEN bytes:
 * it only detects accidental divergence on an authenticated channel, and each byte is about
 * 0.1 B/s per link. */
static void send_hello(kraken_sync *s, peer *p)
{
    kraken_sync_Body b = kraken_sync_Body_init_zero;
    b.which_kind = kraken_sync_Body_hello_tag;
    memcpy(b.kind.hello.your_digest, p->dig_hold, KRAKEN_SYNC_HELLO_DIGEST_LEN);
    if (send_message(s, p, CH_UDP, &b) < 0)
        log_send_error(s, p, "a hello");
}

static void refresh_my_owned(kraken_sync *s)
{
    urlset fresh;
    if (owned_urls_of_engine(s->engine, &fresh) < 0) {
        slog(s, KRAKEN_LOG_ERROR, "cannot refresh the URLs this instance owns: %s",
             kraken_error_last());
        kraken_error_clear();
        return;
    }
    if (urlset_equal(&fresh, &s->my_owned)) {
        urlset_clear(&fresh);
        return;
    }
    urlset_clear(&s->my_owned);
    s->my_owned = fresh;
    invalidate_dsc_hashes(s);
}

/*
 * Hellos are jittered per session: each has its own due time, the first drawn uniformly in
 * [0, hello_ms - tick] (peer_start), each next one in [0.75 x hello_ms, hello_ms - tick] after
 * the previous. With one fixed-period timer per instance, instances started together stayed in
 * phase forever and a parent sent all its children's hellos in one burst, overflowing receive
 * buffers every period. The hello timer (schedule_hellos) fires for the earliest hello due, at
 * most HELLO_TICKS times per period, so a busy parent recomputes its digests (O(nodes)) at most
 * once per tick, not once per hello. A hello is at most one tick late, so none is more than
 * hello_ms after the previous one and dead_ms > hello_ms of silence still means lost hellos.
 */
#define HELLO_TICKS 32

static uint64_t hello_tick_ms(const kraken_sync *s)
{
    uint64_t t = s->opts.hello_ms / HELLO_TICKS;
    return t > 0 ? t : 1;
}

/* A uniform draw in [lo, hi]; hi < lo gives lo. */
static uint64_t uniform_ms(uint64_t lo, uint64_t hi)
{
    if (hi <= lo)
        return lo;
    uint64_t span = hi - lo;
    return lo + kraken__sync_random_below(span >= UINT32_MAX ? UINT32_MAX : (uint32_t)(span + 1));
}

static uint64_t hello_interval(const kraken_sync *s)
{
    uint64_t h = s->opts.hello_ms;
    return uniform_ms(h - h / 4, h - hello_tick_ms(s));
}

static void hello_to(kraken_sync *s, peer *p, uint64_t now, bool *computed)
{
    if (now < p->hello_due)
        return;
    p->hello_due = now + hello_interval(s);
    if (p->role == ROLE_PARENT && !p->ready)
        return; /* nothing to compare before the first full state */
    if (!*computed) {
        compute_digests(s); /* cached while nothing changed */
        *computed = true;
    }
    send_hello(s, p);
}

/*
 * The hello timer fires when the earliest hello is due, but not sooner than a tick after its
 * last run: a parent with thousands of children still computes digests at most HELLO_TICKS
 * times per interval, and a leaf wakes once per hello instead of HELLO_TICKS times (with
 * thousands of instances per process, as in bench_sync, the idle ticks alone took the CPU).
 */
static void schedule_hellos(kraken_sync *s, uint64_t due)
{
    uint64_t earliest = s->hello_last_run + hello_tick_ms(s);
    if (due < earliest)
        due = earliest;
    uint64_t now = now_ms();
    s->hello_next = due;
    event_del(s->hello_ev);
    arm_timer(s->hello_ev, due > now ? due - now : 0);
}

static void hello_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kraken_sync *s = arg;
    uint64_t now = now_ms();
    log_quiet_drops(s);
    if (now - s->owned_refreshed_at >= s->opts.hello_ms) {
        s->owned_refreshed_at = now;
        refresh_my_owned(s); /* the owned URLs the digests depend on */
    }
    bool computed = false;
    uint64_t next = now + s->opts.hello_ms; /* owned URLs and log summaries: once a period */
    for (size_t i = 0; i < s->n_children; i++) {
        hello_to(s, s->children[i], now, &computed);
        if (s->children[i]->hello_due < next)
            next = s->children[i]->hello_due;
    }
    if (s->parent != NULL) {
        hello_to(s, s->parent, now, &computed);
        if (s->parent->hello_due < next)
            next = s->parent->hello_due;
    }
    s->hello_last_run = now;
    schedule_hellos(s, next);
}

/*
 * Snapshots the peer asks for (Body.resend, or hellos showing a mismatch): at most one per half
 * hello interval, and none while earlier output is still queued for the peer. Otherwise an
 * authenticated peer that asks fast, or stops reading, makes us queue snapshots without bound.
 * Declining is safe: the digests still differ at the next hello.
 */
static bool snapshot_welcome(const kraken_sync *s, const peer *p)
{
    if (now_ms() - p->last_snapshot_at < s->opts.hello_ms / 2)
        return false;
    return p->conn == NULL || kraken__sync_conn_queued(p->conn) < FRAME_NODES_BUDGET;
}

/*
 * The peer's view of what we send differs from ours. Deltas still in flight explain a
 * mismatch right after we sent some, so the snapshot waits for a second hello in that case.
 */
static void on_hello(kraken_sync *s, peer *p, const kraken_sync_Hello *h)
{
    if (!p->ready)
        return;
    /* Recomputing is O(nodes): during a join storm every hello would pay it. Digests at most
     * one tick old only delay the detection of a loss by one hello (the two-strike rule below
     * already absorbs a mismatch that is only in flight), and they never hide one for longer:
     * the next hello compares fresh ones. */
    uint64_t tick_now = now_ms();
    if (p->digest_gen != s->change_gen &&
        (p->digest_gen == UINT64_MAX || tick_now - s->digests_at >= hello_tick_ms(s)))
        compute_digests(s);
    if (memcmp(h->your_digest, p->dig_send, KRAKEN_SYNC_HELLO_DIGEST_LEN) == 0) {
        p->strikes = 0;
        return;
    }
    p->strikes++;
    uint64_t now = now_ms();
    /* Deltas may sit in a busy peer's queues for a long time: a parent applying a
     * 10,000-child round takes most of a second, and an overloaded one (30,000 children on two
     * shared cores) several; a hello crossing them looked like a loss and cost a snapshot
     * (13,000 per round). So after sending anything in the last hello interval, the snapshot
     * waits for a second mismatching hello in a row: a real loss then costs at most two
     * intervals; when this side has been quiet for an interval, the first one repairs it. */
    uint64_t guard = (uint64_t)s->opts.damping_ms * 4 + 100;
    if (guard < s->opts.hello_ms)
        guard = s->opts.hello_ms;
    /* Changes applied but not flushed yet are deltas about to go: under load a hello can
     * arrive between the two, and a snapshot then only repeats them (a 30,000-child bench
     * sent 13,835 snapshots in one round that way). */
    bool flushing = s->n_dirty > 0 || event_pending(s->flush_ev, EV_TIMEOUT, NULL);
    bool quiet = !flushing && now - p->last_delta_at > guard && now - p->last_snapshot_at > guard;
    if ((p->strikes >= 2 || quiet) && snapshot_welcome(s, p)) {
        char who[64];
        slog(s, KRAKEN_LOG_INFO,
             "digests differ for %s (%d hello(s) in a row, last sent %llu ms ago): snapshot",
             peer_name(p, who), p->strikes,
             (unsigned long long)(now - (p->last_delta_at > p->last_snapshot_at
                                             ? p->last_delta_at
                                             : p->last_snapshot_at)));
        snapshot_or_log(s, p);
        p->strikes = -1; /* the next hello may predate the snapshot */
    }
}

/* ---- sessions: dead peers ------------------------------------------------------------- */

static void schedule_rejoin(kraken_sync *s);

static void dead_cb(evutil_socket_t fd, short what, void *arg);

static int peer_start(kraken_sync *s, peer *p)
{
    p->dead_ev = evtimer_new(s->base, dead_cb, p);
    if (p->dead_ev == NULL)
        return kraken__err(KRAKEN_ENOMEM, "sync: out of memory");
    p->last_heard = now_ms();
    arm_timer(p->dead_ev, s->opts.dead_ms);
    p->hello_due = p->last_heard + uniform_ms(0, s->opts.hello_ms - hello_tick_ms(s));
    if (p->hello_due < s->hello_next)
        schedule_hellos(s, p->hello_due);
    return KRAKEN_OK;
}

/* Every node under child link @p id: its facts are no longer confirmed. */
static size_t mark_link_stale(kraken_sync *s, const kraken_uuid *id)
{
    size_t n = 0;
    snode *top = nt_find(&s->nodes, id);
    for (snode *x = top != NULL ? top->members : NULL; x != NULL; x = x->m_next)
        n += set_fresh(s, x, false);
    return n;
}

static void end_child_session(kraken_sync *s, peer *p, const char *why, bool link_lost)
{
    kraken_uuid id = p->id;
    children_remove(s, p);
    peer_free(p);
    char buf[KRAKEN_UUID_STRLEN + 1];
    ensure_routes(s);
    size_t stale = mark_link_stale(s, &id);
    if (stale > 0)
        publish(s, KRAKEN_SYNC_NODES_STALE, &id,
                "%zu nodes under child %s are stale (last known facts kept): %s", stale,
                fmt_id(&id, buf), why);
    if (link_lost) {
        s->stats.peers_lost++;
        discover_run_state(s, &id, "ERROR");
    }
    publish(s, KRAKEN_SYNC_NEIGHBOR_DOWN, &id, "child %s: %s", fmt_id(&id, buf), why);
    slog(s, link_lost ? KRAKEN_LOG_WARNING : KRAKEN_LOG_NOTICE, "session with child %s ended: %s",
         buf, why);
}

static void end_parent_session(kraken_sync *s, const char *why)
{
    peer *p = s->parent;
    if (p == NULL)
        return;
    kraken_uuid id = p->id;
    bool was_ready = p->ready;
    s->parent = NULL;
    s->jstate = JOIN_IDLE;
    peer_free(p);
    invalidate_dsc_hashes(s); /* our own node's owned/excluded split is gone */
    s->stats.peers_lost++;
    char buf[KRAKEN_UUID_STRLEN + 1];
    discover_run_state(s, &s->self, "ERROR");
    publish(s, KRAKEN_SYNC_NEIGHBOR_DOWN, &id, "parent %s: %s%s", fmt_id(&id, buf), why,
            was_ready ? "" : " (before the first full state)");
    slog(s, KRAKEN_LOG_WARNING, "session with parent %s ended: %s%s", buf, why,
         was_ready ? "" : " (before the first full state)");
    schedule_rejoin(s);
}

static void dead_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    peer *p = arg;
    kraken_sync *s = p->sync;
    uint64_t silent = now_ms() - p->last_heard;
    if (silent < s->opts.dead_ms) {
        arm_timer(p->dead_ev, s->opts.dead_ms - silent);
        return;
    }
    char why[96];
    snprintf(why, sizeof why, "silent for %llu ms", (unsigned long long)silent);
    if (p->role == ROLE_CHILD)
        end_child_session(s, p, why, true);
    else
        end_parent_session(s, why);
}

/* ---- receiving authenticated messages ------------------------------------------------- */

/*
 * Decode and check an envelope (PROTOCOL.md 4, steps 1-4). @p expect: the session it must
 * belong to (a TCP frame on that session's connection), or NULL to look the sender up. On
 * success *body is decoded; the caller clears it with rx_body_clear().
 */
static peer *open_envelope(kraken_sync *s, const uint8_t *data, size_t len, int ch,
                           peer *expect, const kraken_sync_addr *from, rx_body *body)
{
    const char *what = ch == CH_UDP ? "datagram" : "TCP frame";
    char where[80], who[64], id[KRAKEN_UUID_STRLEN + 1];
    if (from != NULL)
        kraken__sync_addr_format(from, where, sizeof where);
    else
        snprintf(where, sizeof where, "%s", expect != NULL ? peer_name(expect, who) : "?");
    rx_envelope env;
    if (!parse_envelope(&env, data, len)) {
        s->stats.dropped_malformed++;
        log_drop(s, DROP_MALFORMED, KRAKEN_LOG_NOTICE,
                 "dropped a %s of %zu bytes from %s: not a sync envelope", what, len, where);
        return NULL;
    }
    kraken_uuid sender;
    memcpy(sender.bytes, env.sender, 16);
    peer *p = expect != NULL ? (uuid_eq(&expect->id, &sender) ? expect : NULL)
                             : find_session(s, &sender);
    if (p == NULL) {
        s->stats.dropped_unknown_sender++;
        log_drop(s, DROP_UNKNOWN_SENDER, KRAKEN_LOG_INFO,
                 "dropped a %s from %s: sender %s has no session here (it or we restarted, "
                 "or the link was declared dead)",
                 what, where, fmt_id(&sender, id));
        return NULL;
    }
    uint8_t mac[KRAKEN_SYNC_KEY_LEN];
    kraken__sync_mac(p->key, env.sender, env.epoch, env.seq, channel_byte[ch], env.body,
                     env.body_len, mac);
    if (!kraken__sync_equal(mac, env.mac, sizeof mac)) {
        s->stats.dropped_bad_mac++;
        log_drop(s, DROP_BAD_MAC, KRAKEN_LOG_WARNING,
                 "dropped a %s from %s claiming to be %s: its MAC does not verify under the "
                 "session key (forged, corrupted, or from an earlier session)",
                 what, where, peer_name(p, who));
        return NULL;
    }
    if (env.epoch < p->in_epoch[ch] || (env.epoch == p->in_epoch[ch] && env.seq <= p->in_seq[ch])) {
        s->stats.dropped_replay++;
        log_drop(s, DROP_REPLAY, KRAKEN_LOG_INFO,
                 "dropped a %s from %s: sequence %llu is not above %llu, the last accepted "
                 "(a duplicate, a replay, or overtaken by a newer one)",
                 what, peer_name(p, who), (unsigned long long)env.seq,
                 (unsigned long long)p->in_seq[ch]);
        return NULL;
    }
    if (!parse_body(body, env.body, env.body_len)) {
        rx_body_clear(body);
        s->stats.dropped_malformed++;
        log_drop(s, DROP_MALFORMED, KRAKEN_LOG_WARNING,
                 "dropped a %s from %s: authenticated, but its body does not decode", what,
                 peer_name(p, who));
        return NULL;
    }
    p->in_epoch[ch] = env.epoch;
    p->in_seq[ch] = env.seq;
    p->rx_seq = env.seq;
    p->last_heard = now_ms();
    return p;
}

static void dispatch_body(kraken_sync *s, peer *p, const rx_body *b)
{
    switch (b->kind) {
    case kraken_sync_Body_hello_tag:
        on_hello(s, p, &b->hello);
        break;
    case kraken_sync_Body_update_tag:
        apply_update(s, p, &b->update);
        break;
    case kraken_sync_Body_resend_tag:
        if (p->ready && snapshot_welcome(s, p))
            snapshot_or_log(s, p);
        break;
    default:
        break; /* a join result outside a join: ignore */
    }
}

static void on_datagram(const uint8_t *data, size_t len, const kraken_sync_addr *from, void *ud)
{
    kraken_sync *s = ud;
    s->stats.datagrams_received++;
    s->stats.bytes_received += len;
    rx_body body;
    peer *p = open_envelope(s, data, len, CH_UDP, NULL, from, &body);
    if (p == NULL)
        return;
    dispatch_body(s, p, &body);
    rx_body_clear(&body);
}

static void peer_frame(kraken_sync_conn *conn, const uint8_t *data, size_t len, void *ud)
{
    (void)conn;
    peer *p = ud;
    kraken_sync *s = p->sync;
    s->stats.tcp_messages_received++;
    s->stats.bytes_received += len;
    rx_body body;
    if (open_envelope(s, data, len, CH_TCP, p, NULL, &body) == NULL)
        return;
    dispatch_body(s, p, &body);
    rx_body_clear(&body);
}

static void peer_closed(kraken_sync_conn *conn, const char *why, void *ud)
{
    (void)conn;
    peer *p = ud;
    kraken_sync *s = p->sync;
    p->conn = NULL; /* freed by sync_net after this returns */
    if (p->role == ROLE_CHILD)
        end_child_session(s, p, why, true);
    else
        end_parent_session(s, why);
}

static const kraken_sync_conn_ops peer_conn_ops = {NULL, peer_frame, peer_closed};

/* ---- joining: parent side ------------------------------------------------------------- */

static void pending_free(kraken_sync *s, pending_join *pj, bool close_conn)
{
    if (pj->prev != NULL)
        pj->prev->next = pj->next;
    else
        s->pending = pj->next;
    if (pj->next != NULL)
        pj->next->prev = pj->prev;
    else
        s->pending_tail = pj->prev;
    s->n_pending--;
    if (close_conn)
        kraken__sync_conn_close(pj->conn, false);
    if (pj->timeout != NULL)
        event_free(pj->timeout);
    kraken__sync_wipe(pj->node_key, sizeof pj->node_key);
    free(pj);
}

static void refuse_join(kraken_sync *s, const kraken_uuid *child, const kraken_sync_addr *from,
                        const char *reason)
{
    char buf[KRAKEN_UUID_STRLEN + 1], addr[80];
    kraken__sync_addr_format(from, addr, sizeof addr);
    s->stats.joins_refused++;
    publish(s, KRAKEN_SYNC_JOIN_REFUSED, child, "join of %s refused: %s", fmt_id(child, buf),
            reason);
    slog(s, KRAKEN_LOG_WARNING, "join of %s from %s refused: %s", buf, addr, reason);
}

static int send_frame_msg(kraken_sync *s, kraken_sync_conn *conn, const pb_msgdesc_t *fields,
                          const void *msg)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = encode_message(fields, msg, &buf, &len);
    if (rc == 0 && (rc = kraken__sync_conn_send(conn, buf, len)) == 0) {
        s->stats.tcp_messages_sent++;
        s->stats.bytes_sent += len;
    }
    free(buf);
    return rc;
}

static void pj_on_request(kraken_sync *s, pending_join *pj, const uint8_t *data, size_t len)
{
    kraken_sync_JoinRequest req = kraken_sync_JoinRequest_init_zero;
    if (!decode_small(kraken_sync_JoinRequest_fields, data, len, &req)) {
        char addr[80];
        s->stats.dropped_malformed++;
        log_drop(s, DROP_MALFORMED, KRAKEN_LOG_NOTICE,
                 "closed a connection from %s: its first frame (%zu bytes) is not a JoinRequest",
                 kraken__sync_addr_format(kraken__sync_conn_peer(pj->conn), addr, sizeof addr),
                 len);
        pending_free(s, pj, true);
        return;
    }
    memcpy(pj->tr.child_id.bytes, req.child_id, 16);
    if (req.version != PROTOCOL_VERSION || req.udp_port == 0 || req.udp_port > 65535) {
        char reason[96];
        snprintf(reason, sizeof reason, "unsupported protocol version %u or bad UDP port %u",
                 (unsigned)req.version, (unsigned)req.udp_port);
        refuse_join(s, &pj->tr.child_id, kraken__sync_conn_peer(pj->conn), reason);
        pending_free(s, pj, true);
        return;
    }
    /* Answer every id the same way, known or not: refusing before the proof would let anyone
     * probe which node ids exist. */
    memcpy(pj->tr.nonce_child, req.nonce, KRAKEN_SYNC_NONCE_LEN);
    pj->tr.epoch_child = req.epoch;
    pj->tr.parent_id = s->self;
    kraken__sync_random(pj->tr.nonce_parent, KRAKEN_SYNC_NONCE_LEN);
    pj->tr.epoch_parent = s->epoch;
    pj->tr.udp_port = (uint16_t)req.udp_port; /* bound by both proofs: the request has no mac */
    pj->udp_port = req.udp_port;
    kraken__sync_node_key(s->secret, s->secret_len, &pj->tr.child_id, pj->node_key);
    kraken_sync_JoinChallenge ch = kraken_sync_JoinChallenge_init_zero;
    memcpy(ch.parent_id, s->self.bytes, 16);
    memcpy(ch.nonce, pj->tr.nonce_parent, KRAKEN_SYNC_NONCE_LEN);
    ch.epoch = s->epoch;
    kraken__sync_proof(pj->node_key, true, &pj->tr, ch.proof);
    if (send_frame_msg(s, pj->conn, kraken_sync_JoinChallenge_fields, &ch) < 0) {
        char id[KRAKEN_UUID_STRLEN + 1];
        s->stats.send_failed++;
        slog(s, KRAKEN_LOG_ERROR, "join of %s: cannot send the challenge: %s",
             fmt_id(&pj->tr.child_id, id), kraken_error_last());
        kraken_error_clear();
        pending_free(s, pj, true);
        return;
    }
    pj->state = PJ_WAIT_PROOF;
}

/* Admission (PROTOCOL.md 3): the child must be in our Cfg with us as its parent. */
static bool admissible(kraken_sync *s, const kraken_uuid *child, char *reason, size_t size)
{
    char a[KRAKEN_UUID_STRLEN + 1], b[KRAKEN_UUID_STRLEN + 1], c[KRAKEN_UUID_STRLEN + 1];
    snode *n = nt_find(&s->nodes, child);
    if (uuid_eq(child, &s->self)) {
        snprintf(reason, size, "a node cannot be its own child");
        return false;
    }
    if (n == NULL) {
        snprintf(reason, size, "node %s is not in this instance's Cfg", fmt_id(child, a));
        return false;
    }
    if (!uuid_eq(&n->parent, &s->self)) {
        const char *has = uuid_eq(&n->parent, &zero_uuid) ? "unset" : fmt_id(&n->parent, b);
        snprintf(reason, size, "node %s has Cfg parentId %s, not this instance (%s)",
                 fmt_id(child, a), has, fmt_id(&s->self, c));
        return false;
    }
    return true;
}

static int send_join_result(kraken_sync *s, peer *p, bool accepted, const char *reason)
{
    kraken_sync_Body b = kraken_sync_Body_init_zero;
    b.which_kind = kraken_sync_Body_join_result_tag;
    b.kind.join_result.accepted = accepted;
    snprintf(b.kind.join_result.reason, sizeof b.kind.join_result.reason, "%s",
             reason != NULL ? reason : "");
    if (accepted) {
        b.kind.join_result.owned_urls = s->my_owned.v;
        b.kind.join_result.owned_urls_count = (pb_size_t)s->my_owned.n;
    }
    return send_message(s, p, CH_TCP, &b);
}

static peer *peer_new(kraken_sync *s, peer_role role, const kraken_uuid *id,
                      const kraken_sync_transcript *tr, const uint8_t node_key[KRAKEN_SYNC_KEY_LEN])
{
    peer *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->sync = s;
    p->role = role;
    p->id = *id;
    p->serial = ++s->sessions;
    p->digest_gen = UINT64_MAX; /* no digests yet, whatever change_gen is */
    kraken__sync_session_key(node_key, tr, p->key);
    return p;
}

/*
 * Duplicate node ids (PROTOCOL.md 3, issue 9 defect 6). A child that restarts joins again from
 * the same address, or after its old session went quiet (a crashed host sends no FIN): the new
 * session replaces the old one. A join from another address while the established session is
 * alive (heard within two hello intervals) is a second instance with the same id: letting each
 * replace the other made both flap forever. The established session is kept, and for a
 * hold-down of dead_ms after each conflict the other is refused even through a missed hello.
 */
static bool id_conflict(kraken_sync *s, peer *old, const peer *fresh)
{
    if (kraken__sync_addr_equal(&old->udp, &fresh->udp))
        return false;
    uint64_t now = now_ms();
    bool alive = now - old->last_heard < 2 * (uint64_t)s->opts.hello_ms; /* no hello lost */
    if (!alive && now >= old->hold_until)
        return false;
    old->hold_until = now + s->opts.dead_ms;
    return true;
}

/* Counted every time; the event and the log line once per hold-down, not at every retry. */
static void report_conflict(kraken_sync *s, peer *old, const kraken_sync_addr *other)
{
    s->stats.id_conflicts++;
    uint64_t now = now_ms();
    if (old->conflict_reported_at != 0 && now - old->conflict_reported_at < s->opts.dead_ms)
        return;
    old->conflict_reported_at = now;
    char id[KRAKEN_UUID_STRLEN + 1], a[80], b[80];
    fmt_id(&old->id, id);
    kraken__sync_addr_format(&old->udp, a, sizeof a);
    kraken__sync_addr_format(other, b, sizeof b);
    publish(s, KRAKEN_SYNC_ID_CONFLICT, &old->id,
            "node id %s: a second instance at %s proved the node key while the session from "
            "%s is alive; keeping %s",
            id, b, a, a);
    slog(s, KRAKEN_LOG_ERROR,
         "duplicate node id %s: an instance at %s joined while the session from %s is alive; "
         "keeping the established session and refusing the other for %u ms after each attempt",
         id, b, a, (unsigned)s->opts.dead_ms);
}

static void pj_on_proof(kraken_sync *s, pending_join *pj, const uint8_t *data, size_t len)
{
    kraken_sync_JoinProof proof = kraken_sync_JoinProof_init_zero;
    uint8_t expected[KRAKEN_SYNC_KEY_LEN];
    kraken__sync_proof(pj->node_key, false, &pj->tr, expected);
    if (!decode_small(kraken_sync_JoinProof_fields, data, len, &proof) ||
        !kraken__sync_equal(expected, proof.proof, sizeof expected)) {
        refuse_join(s, &pj->tr.child_id, kraken__sync_conn_peer(pj->conn),
                    "the child's proof does not match: its node key is not the one this "
                    "instance derives for it (a key from another cluster secret, or from "
                    "before the node moved here?)");
        pending_free(s, pj, true);
        return;
    }
    kraken_uuid child = pj->tr.child_id;
    peer *p = peer_new(s, ROLE_CHILD, &child, &pj->tr, pj->node_key);
    if (p == NULL) {
        pending_free(s, pj, true);
        return;
    }
    p->in_epoch[CH_UDP] = p->in_epoch[CH_TCP] = 0;
    p->conn = pj->conn;
    kraken__sync_conn_set_ops(p->conn, &peer_conn_ops, p);
    kraken__sync_conn_set_max_frame(p->conn, KRAKEN_SYNC_MAX_FRAME);
    p->udp = *kraken__sync_conn_peer(p->conn);
    kraken__sync_addr_set_port(&p->udp, (uint16_t)pj->udp_port);
    pending_free(s, pj, false);

    ensure_routes(s);
    char reason[256];
    if (!admissible(s, &child, reason, sizeof reason)) {
        (void)send_join_result(s, p, false, reason);
        kraken__sync_conn_close(p->conn, true);
        p->conn = NULL;
        kraken_sync_addr from = p->udp;
        peer_free(p);
        refuse_join(s, &child, &from, reason);
        return;
    }
    peer *old = find_child(s, &child);
    if (old != NULL && id_conflict(s, old, p)) {
        (void)send_join_result(s, p, false, "another instance with this node id has a live "
                                            "session with the parent (duplicate node id?)");
        kraken__sync_conn_close(p->conn, true);
        p->conn = NULL;
        report_conflict(s, old, &p->udp);
        peer_free(p);
        return;
    }
    if (old != NULL) { /* the child restarted: the new session replaces the old one */
        children_remove(s, old);
        peer_free(old);
    }
    refresh_my_owned(s);
    p->ready = true;
    if (children_insert(s, p) < 0 || peer_start(s, p) < 0) {
        char id[KRAKEN_UUID_STRLEN + 1];
        slog(s, KRAKEN_LOG_ERROR, "join of %s accepted but its session cannot start: %s",
             fmt_id(&child, id), kraken_error_last());
        children_remove(s, p);
        peer_free(p);
        kraken_error_clear();
        return;
    }
    s->change_gen++;
    (void)send_join_result(s, p, true, NULL);
    s->stats.joins_accepted++;
    char buf[KRAKEN_UUID_STRLEN + 1], abuf[80];
    /* Completes INITtoSYNC for the child; goes down with the snapshot. */
    discover_run_state(s, &child, "SYNC");
    p = find_child(s, &child); /* the discovery ran store listeners only; still there */
    if (p == NULL)
        return;
    snapshot_or_log(s, p);
    publish(s, KRAKEN_SYNC_JOIN_ACCEPTED, &child, "child %s joined from %s", fmt_id(&child, buf),
            kraken__sync_addr_format(&p->udp, abuf, sizeof abuf));
    publish(s, KRAKEN_SYNC_NEIGHBOR_UP, &child, "child %s is up", buf);
}

static void pj_frame(kraken_sync_conn *conn, const uint8_t *data, size_t len, void *ud)
{
    (void)conn;
    pending_join *pj = ud;
    kraken_sync *s = pj->sync;
    s->stats.tcp_messages_received++;
    s->stats.bytes_received += len;
    if (pj->state == PJ_WAIT_REQUEST)
        pj_on_request(s, pj, data, len);
    else
        pj_on_proof(s, pj, data, len);
}

/*
 * A half-open join ended before the proof. Say what was observed: a child that closes after
 * our challenge may have found our proof wrong (it says so in its own log), or have given up
 * waiting (a slow, resumed or overloaded parent), or have crashed; we cannot tell which, so no
 * guess about the secret here (issue 9, defect 7).
 */
static void pj_closed(kraken_sync_conn *conn, const char *why, void *ud)
{
    pending_join *pj = ud;
    kraken_sync *s = pj->sync;
    char addr[80], id[KRAKEN_UUID_STRLEN + 1];
    kraken__sync_addr_format(kraken__sync_conn_peer(conn), addr, sizeof addr);
    if (pj->state == PJ_WAIT_PROOF) {
        char reason[300];
        snprintf(reason, sizeof reason,
                 "the child ended the handshake after our challenge, without a proof (%s)", why);
        refuse_join(s, &pj->tr.child_id, kraken__sync_conn_peer(conn), reason);
    } else {
        slog(s, KRAKEN_LOG_DEBUG, "connection from %s closed before a JoinRequest (%s)", addr,
             why);
    }
    (void)id;
    pending_free(s, pj, false);
}

static void pj_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pending_join *pj = arg;
    kraken_sync *s = pj->sync;
    char addr[80], id[KRAKEN_UUID_STRLEN + 1];
    kraken__sync_addr_format(kraken__sync_conn_peer(pj->conn), addr, sizeof addr);
    if (pj->state == PJ_WAIT_PROOF)
        slog(s, KRAKEN_LOG_NOTICE,
             "join of %s from %s dropped: no proof within %u ms of our challenge",
             fmt_id(&pj->tr.child_id, id), addr, (unsigned)s->opts.dead_ms);
    else
        slog(s, KRAKEN_LOG_INFO, "connection from %s dropped: no JoinRequest within %u ms", addr,
             (unsigned)s->opts.dead_ms);
    pending_free(s, pj, true);
}

static const kraken_sync_conn_ops pending_conn_ops = {NULL, pj_frame, pj_closed};

static void on_accept_failed(int err, uint32_t pause_ms, bool first, void *ud)
{
    kraken_sync *s = ud;
    s->stats.accept_errors++;
    if (first)
        kraken__engine_log(s->engine, KRAKEN_LOG_ERROR, "sync",
                           "cannot accept connections: %s (%zu half-open joins, %zu children); "
                           "pausing accepts for %u ms, doubling up to 2 s while it lasts",
                           strerror(err), s->n_pending, s->n_children, (unsigned)pause_ms);
}

static void on_accepted(kraken_sync_conn *conn, void *ud)
{
    kraken_sync *s = ud;
    /* Full: the oldest half-open join gives way. Refusing the new one instead would let a few
     * idle connections lock every child out for dead_ms; a real handshake takes one round
     * trip, so a flood must now outpace that to keep a child out. */
    if (s->n_pending >= s->max_pending && s->pending_tail != NULL)
        pending_free(s, s->pending_tail, true);
    pending_join *pj = calloc(1, sizeof *pj);
    if (pj == NULL) {
        kraken__sync_conn_close(conn, false);
        return;
    }
    pj->sync = s;
    pj->conn = conn;
    pj->timeout = evtimer_new(s->base, pj_timeout, pj);
    if (pj->timeout == NULL) {
        free(pj);
        kraken__sync_conn_close(conn, false);
        return;
    }
    pj->next = s->pending;
    if (s->pending != NULL)
        s->pending->prev = pj;
    else
        s->pending_tail = pj;
    s->pending = pj;
    s->n_pending++;
    kraken__sync_conn_set_ops(conn, &pending_conn_ops, pj);
    kraken__sync_conn_set_max_frame(conn, KRAKEN_SYNC_PREAUTH_MAX_FRAME);
    arm_timer(pj->timeout, s->opts.dead_ms);
}

/* ---- joining: child side -------------------------------------------------------------- */

static void start_join(kraken_sync *s);

static void abort_join(kraken_sync *s)
{
    kraken__sync_conn_close(s->jconn, false);
    s->jconn = NULL;
    peer_free(s->jpeer);
    s->jpeer = NULL;
    s->jstate = JOIN_IDLE;
}

static void join_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kraken_sync *s = arg;
    if (s->jstate == JOIN_IDLE) {
        start_join(s);
        return;
    }
    if (s->jstate == JOIN_WAIT_FULL) { /* accepted, but the full state never came */
        end_parent_session(s, "no full state after the join");
        return;
    }
    if (s->jstate != JOIN_UP) {
        char addr[80];
        slog(s, KRAKEN_LOG_NOTICE, "join to the parent at %s timed out after %u ms (%s)",
             kraken__sync_addr_format(&s->parent_addr, addr, sizeof addr),
             (unsigned)s->opts.dead_ms,
             s->jstate == JOIN_CONNECTING        ? "connecting"
             : s->jstate == JOIN_WAIT_CHALLENGE ? "no challenge"
                                                 : "no join result");
        abort_join(s);
        schedule_rejoin(s);
    }
}

static void schedule_rejoin(kraken_sync *s)
{
    uint32_t b = s->backoff_ms;
    uint64_t delay = b / 2 + kraken__sync_random_below(b / 2 + 1);
    uint64_t next = (uint64_t)b * 2;
    s->backoff_ms = (uint32_t)(next > s->opts.rejoin_max_ms ? s->opts.rejoin_max_ms : next);
    if (s->backoff_ms == 0)
        s->backoff_ms = 1;
    s->jstate = JOIN_IDLE;
    arm_timer(s->join_ev, delay);
}

static void child_refused(kraken_sync *s, const char *reason)
{
    char buf[KRAKEN_UUID_STRLEN + 1], addr[80];
    s->stats.joins_refused++;
    publish(s, KRAKEN_SYNC_JOIN_REFUSED, &s->self, "join of %s to its parent refused: %s",
            fmt_id(&s->self, buf), reason);
    slog(s, KRAKEN_LOG_WARNING, "join to the parent at %s refused: %s",
         kraken__sync_addr_format(&s->parent_addr, addr, sizeof addr), reason);
    abort_join(s);
    schedule_rejoin(s);
}

/* The key this instance proves as a child: its node key file as given; in insecure mode,
 * derived from the well-known secret like every other key. */
static void own_node_key(const kraken_sync *s, uint8_t out[KRAKEN_SYNC_KEY_LEN])
{
    if (s->opts.insecure)
        kraken__sync_node_key(s->secret, s->secret_len, &s->self, out);
    else
        memcpy(out, s->secret, KRAKEN_SYNC_KEY_LEN);
}

static void on_challenge(kraken_sync *s, const uint8_t *data, size_t len)
{
    kraken_sync_JoinChallenge ch = kraken_sync_JoinChallenge_init_zero;
    if (!decode_small(kraken_sync_JoinChallenge_fields, data, len, &ch)) {
        s->stats.dropped_malformed++;
        child_refused(s, "malformed challenge from the parent");
        return;
    }
    memcpy(s->jtr.parent_id.bytes, ch.parent_id, 16);
    memcpy(s->jtr.nonce_parent, ch.nonce, KRAKEN_SYNC_NONCE_LEN);
    s->jtr.epoch_parent = ch.epoch;
    uint8_t key[KRAKEN_SYNC_KEY_LEN], expected[KRAKEN_SYNC_KEY_LEN];
    own_node_key(s, key);
    kraken__sync_proof(key, true, &s->jtr, expected);
    if (!kraken__sync_equal(expected, ch.proof, sizeof expected)) {
        kraken__sync_wipe(key, sizeof key);
        child_refused(s, "the parent's proof does not match: this instance's node key is not "
                         "the one its parent derives (a key from another cluster secret, or "
                         "from before the node moved to this parent?)");
        return;
    }
    kraken_sync_JoinProof proof = kraken_sync_JoinProof_init_zero;
    kraken__sync_proof(key, false, &s->jtr, proof.proof);
    s->jpeer = peer_new(s, ROLE_PARENT, &s->jtr.parent_id, &s->jtr, key);
    kraken__sync_wipe(key, sizeof key);
    if (s->jpeer == NULL || send_frame_msg(s, s->jconn, kraken_sync_JoinProof_fields, &proof) < 0) {
        slog(s, KRAKEN_LOG_ERROR, "join: cannot send the proof: %s",
             s->jpeer == NULL ? "out of memory" : kraken_error_last());
        kraken_error_clear();
        abort_join(s);
        schedule_rejoin(s);
        return;
    }
    s->jstate = JOIN_WAIT_RESULT;
}

static void on_join_result(kraken_sync *s, const uint8_t *data, size_t len)
{
    rx_body body;
    peer *p = open_envelope(s, data, len, CH_TCP, s->jpeer, NULL, &body);
    if (p == NULL || body.kind != kraken_sync_Body_join_result_tag) {
        if (p != NULL)
            rx_body_clear(&body);
        child_refused(s, "no valid join result from the parent");
        return;
    }
    const kraken_sync_JoinResult *r = &body.result;
    if (!r->accepted) {
        char reason[300];
        snprintf(reason, sizeof reason, "%s", r->reason);
        rx_body_clear(&body);
        child_refused(s, reason);
        return;
    }
    urlset owned = {0};
    owned.v = calloc(r->owned_urls_count + 1, sizeof *owned.v);
    for (size_t i = 0; owned.v != NULL && i < r->owned_urls_count; i++)
        if (r->owned_urls[i] != NULL && (owned.v[owned.n] = strdup(r->owned_urls[i])) != NULL)
            owned.n++;
    rx_body_clear(&body);
    if (owned.v == NULL) {
        abort_join(s);
        schedule_rejoin(s);
        return;
    }
    p->owned = owned;
    p->conn = s->jconn;
    p->udp = s->parent_addr;
    s->jconn = NULL;
    s->jpeer = NULL;
    kraken__sync_conn_set_ops(p->conn, &peer_conn_ops, p);
    kraken__sync_conn_set_max_frame(p->conn, KRAKEN_SYNC_MAX_FRAME);
    if (peer_start(s, p) < 0) {
        slog(s, KRAKEN_LOG_ERROR, "join accepted but the session cannot start: %s",
             kraken_error_last());
        kraken_error_clear();
        peer_free(p);
        s->jstate = JOIN_IDLE;
        schedule_rejoin(s);
        return;
    }
    s->parent = p;
    s->jstate = JOIN_WAIT_FULL;
    invalidate_dsc_hashes(s);
    arm_timer(s->join_ev, s->opts.dead_ms); /* the full state must follow */
}

static void first_full_from_parent(kraken_sync *s, peer *p)
{
    p->ready = true;
    s->jstate = JOIN_UP;
    event_del(s->join_ev);
    s->backoff_ms = s->opts.rejoin_min_ms;
    if (s->froze_engine) {
        s->froze_engine = false;
        kraken_engine_thaw(s->engine);
    }
    /* Whatever was queued for the parent before we knew our subtree is in the snapshot. */
    snapshot_or_log(s, p);
    char buf[KRAKEN_UUID_STRLEN + 1], abuf[80];
    publish(s, KRAKEN_SYNC_JOIN_ACCEPTED, &p->id, "joined parent %s at %s", fmt_id(&p->id, buf),
            kraken__sync_addr_format(&s->parent_addr, abuf, sizeof abuf));
    publish(s, KRAKEN_SYNC_NEIGHBOR_UP, &p->id, "parent %s is up", buf);
}

static void join_connected(kraken_sync_conn *conn, void *ud)
{
    kraken_sync *s = ud;
    kraken_sync_JoinRequest req = kraken_sync_JoinRequest_init_zero;
    req.version = PROTOCOL_VERSION;
    memcpy(req.child_id, s->self.bytes, 16);
    kraken__sync_random(s->jtr.nonce_child, KRAKEN_SYNC_NONCE_LEN);
    memcpy(req.nonce, s->jtr.nonce_child, KRAKEN_SYNC_NONCE_LEN);
    req.epoch = s->epoch;
    req.udp_port = kraken__sync_net_port(s->net);
    s->jtr.child_id = s->self;
    s->jtr.epoch_child = s->epoch;
    s->jtr.udp_port = (uint16_t)req.udp_port;
    if (send_frame_msg(s, conn, kraken_sync_JoinRequest_fields, &req) < 0) {
        slog(s, KRAKEN_LOG_ERROR, "join: cannot send the request: %s", kraken_error_last());
        kraken_error_clear();
        abort_join(s);
        schedule_rejoin(s);
        return;
    }
    s->jstate = JOIN_WAIT_CHALLENGE;
}

static void join_frame(kraken_sync_conn *conn, const uint8_t *data, size_t len, void *ud)
{
    (void)conn;
    kraken_sync *s = ud;
    s->stats.tcp_messages_received++;
    s->stats.bytes_received += len;
    if (s->jstate == JOIN_WAIT_CHALLENGE)
        on_challenge(s, data, len);
    else if (s->jstate == JOIN_WAIT_RESULT)
        on_join_result(s, data, len);
}

static void join_closed(kraken_sync_conn *conn, const char *why, void *ud)
{
    (void)conn;
    kraken_sync *s = ud;
    char addr[80];
    slog(s, KRAKEN_LOG_NOTICE, "join to the parent at %s failed: %s",
         kraken__sync_addr_format(&s->parent_addr, addr, sizeof addr), why);
    s->jconn = NULL; /* freed by sync_net after this returns */
    abort_join(s);
    schedule_rejoin(s);
}

static const kraken_sync_conn_ops join_conn_ops = {join_connected, join_frame, join_closed};

static void start_join(kraken_sync *s)
{
    s->jstate = JOIN_CONNECTING;
    memset(&s->jtr, 0, sizeof s->jtr);
    if (kraken__sync_conn_connect(&s->jconn, s->net, &s->parent_addr, &join_conn_ops, s) < 0) {
        slog(s, KRAKEN_LOG_WARNING, "join: %s", kraken_error_last());
        kraken_error_clear();
        s->jconn = NULL;
        schedule_rejoin(s);
        return;
    }
    kraken__sync_conn_set_max_frame(s->jconn, HANDSHAKE_MAX_FRAME);
    arm_timer(s->join_ev, s->opts.dead_ms); /* the whole handshake must finish by then */
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

/* ---- decoders for fuzz/fuzz_sync.c and tests ------------------------------------------ */

static void summarize_update(const rx_update *u, kraken_sync_decoded *out)
{
    out->full = u->full;
    out->more = u->more;
    out->nodes = u->n;
    for (size_t i = 0; i < u->n; i++) {
        out->facts += u->nodes[i].n_facts;
        out->cfg_bytes += u->nodes[i].cfg_len;
    }
}

int kraken__sync_decode(kraken_sync_wire what, const uint8_t *data, size_t len,
                        kraken_sync_decoded *out)
{
    kraken_sync_decoded dummy;
    if (out == NULL)
        out = &dummy;
    memset(out, 0, sizeof *out);
    if (data == NULL && len > 0)
        return kraken__err(KRAKEN_EINVAL, "kraken__sync_decode: NULL data");
    static const uint8_t empty[1];
    if (data == NULL)
        data = empty;
    bool ok = false;
    switch (what) {
    case KRAKEN_SYNC_WIRE_ENVELOPE: {
        rx_envelope e;
        ok = parse_envelope(&e, data, len);
        if (ok) {
            out->body = e.body;
            out->body_len = e.body_len;
            out->epoch = e.epoch;
            out->seq = e.seq;
        }
        break;
    }
    case KRAKEN_SYNC_WIRE_BODY: {
        rx_body b;
        ok = parse_body(&b, data, len);
        if (ok) {
            out->kind = b.kind;
            summarize_update(&b.update, out);
            out->owned_urls = b.result.owned_urls_count;
        }
        rx_body_clear(&b);
        break;
    }
    case KRAKEN_SYNC_WIRE_UPDATE:
    case KRAKEN_SYNC_WIRE_NODE_STATE: {
        rx_body b;
        memset(&b, 0, sizeof b);
        ok = what == KRAKEN_SYNC_WIRE_UPDATE ? parse_update(&b.update, data, len)
                                             : parse_node_state(&b.update, data, len);
        if (ok)
            summarize_update(&b.update, out);
        rx_body_clear(&b);
        break;
    }
    case KRAKEN_SYNC_WIRE_FACT: {
        rx_node n;
        memset(&n, 0, sizeof n);
        wfield f = {0, PB_WT_STRING, 0, data, len};
        ok = parse_fact(&n, &f);
        out->facts = n.n_facts;
        for (size_t k = 0; k < n.n_facts; k++)
            pb_release(kraken_sync_Fact_fields, &n.facts[k]);
        free(n.facts);
        break;
    }
    case KRAKEN_SYNC_WIRE_JOIN_REQUEST: {
        kraken_sync_JoinRequest m = kraken_sync_JoinRequest_init_zero;
        ok = decode_small(kraken_sync_JoinRequest_fields, data, len, &m);
        break;
    }
    case KRAKEN_SYNC_WIRE_JOIN_CHALLENGE: {
        kraken_sync_JoinChallenge m = kraken_sync_JoinChallenge_init_zero;
        ok = decode_small(kraken_sync_JoinChallenge_fields, data, len, &m);
        break;
    }
    case KRAKEN_SYNC_WIRE_JOIN_PROOF: {
        kraken_sync_JoinProof m = kraken_sync_JoinProof_init_zero;
        ok = decode_small(kraken_sync_JoinProof_fields, data, len, &m);
        break;
    }
    case KRAKEN_SYNC_WIRE_JOIN_RESULT: {
        kraken_sync_JoinResult m = kraken_sync_JoinResult_init_zero;
        ok = decode_small(kraken_sync_JoinResult_fields, data, len, &m);
        if (ok)
            out->owned_urls = m.owned_urls_count;
        pb_release(kraken_sync_JoinResult_fields, &m);
        break;
    }
    case KRAKEN_SYNC_WIRE_HELLO: {
        kraken_sync_Hello m = kraken_sync_Hello_init_zero;
        ok = decode_small(kraken_sync_Hello_fields, data, len, &m);
        break;
    }
    default:
        return kraken__err(KRAKEN_EINVAL, "kraken__sync_decode: unknown message kind %d",
                           (int)what);
    }
    return ok ? KRAKEN_OK : kraken__err(KRAKEN_EPROTO, "sync: malformed message (kind %d)",
                                        (int)what);
}
