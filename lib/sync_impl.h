/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Private to the sync protocol (lib/sync*.c): the structures its files share and the
 * functions one file calls in another. Not part of lib/internal.h: nothing outside sync uses it.
 */
#ifndef KRAKEN_SYNC_IMPL_H
#define KRAKEN_SYNC_IMPL_H

#include <event2/event.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "sync.pb.h"

#define FRAME_NODES_BUDGET (1u << 20)   /* NodeState bytes per TCP frame */
#define MAX_PATH_DEPTH 4096             /* Cfg parent chains longer than this are cycles */

enum { CH_UDP = 0, CH_TCP = 1 };
static const char channel_byte[2] = {'U', 'T'};

/* ---- small helpers -------------------------------------------------------------------- */

static inline uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline bool uuid_eq(const kraken_uuid *a, const kraken_uuid *b)
{
    return memcmp(a->bytes, b->bytes, 16) == 0;
}

static const kraken_uuid zero_uuid;

static inline void arm_timer(struct event *ev, uint64_t ms)
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

/* Owned-URL lists: exact URLs, prefixes of a subtree ("/Foo" owns "/Foo/Bar"), or globs. */
typedef struct urlset {
    char **v;
    size_t n;
} urlset;

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

/* Log through the engine's callback (log.h), subsystem "sync". */
#define slog(s, level, ...) kraken__engine_log((s)->engine, (level), "sync", __VA_ARGS__)

/* ---- facts ---------------------------------------------------------------------------- */

typedef struct factlist {
    kraken_sync_Fact *v;
    size_t n, cap;
} factlist;

enum fact_filter { FACTS_ALL, FACTS_OWNED, FACTS_NOT_OWNED };

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

typedef struct rx_envelope {
    uint8_t sender[16];
    uint64_t epoch, seq;
    const uint8_t *body;
    size_t body_len;
    uint8_t mac[KRAKEN_SYNC_KEY_LEN];
    bool has_sender, has_body, has_mac;
} rx_envelope;

/* ---- sync.c --------------------------------------------------------------------------- */

KRAKEN_PRIVATE int owned_urls_of_engine(kraken_engine *engine, urlset *out);
KRAKEN_PRIVATE void publish(kraken_sync *s, kraken_sync_event kind, const kraken_uuid *id,
                            const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
KRAKEN_PRIVATE void log_drop(kraken_sync *s, drop_kind kind, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
KRAKEN_PRIVATE void log_quiet_drops(kraken_sync *s);
KRAKEN_PRIVATE void discover_run_state(kraken_sync *s, const kraken_uuid *id, const char *state);
KRAKEN_PRIVATE char *fmt_id(const kraken_uuid *id, char buf[KRAKEN_UUID_STRLEN + 1]);
KRAKEN_PRIVATE const char *peer_name(const struct peer *p, char buf[64]);

/* ---- sync_wire.c ---------------------------------------------------------------------- */

KRAKEN_PRIVATE int encode_message(const pb_msgdesc_t *fields, const void *msg, uint8_t **out,
                                  size_t *len);
KRAKEN_PRIVATE int encode_node_state(const kraken_uuid *id, bool deleted, const uint8_t *cfg,
                                     size_t cfg_len, const factlist *facts, bool dsc_full,
                                     bool stale, blobs *out, uint32_t depth);
KRAKEN_PRIVATE void rx_body_clear(rx_body *b);
KRAKEN_PRIVATE bool decode_small(const pb_msgdesc_t *fields, const uint8_t *data, size_t len,
                                 void *msg);
KRAKEN_PRIVATE bool parse_body(rx_body *b, const uint8_t *data, size_t len);
KRAKEN_PRIVATE bool parse_envelope(rx_envelope *e, const uint8_t *data, size_t len);

/* ---- sync_table.c --------------------------------------------------------------------- */

KRAKEN_PRIVATE void urlset_clear(urlset *u);
KRAKEN_PRIVATE bool urlset_match(const urlset *u, const char *url);
KRAKEN_PRIVATE bool urlset_equal(const urlset *a, const urlset *b);
KRAKEN_PRIVATE uint64_t mix64(uint64_t h);
KRAKEN_PRIVATE snode *nt_find(const ntable *t, const kraken_uuid *id);
KRAKEN_PRIVATE snode *nt_add(ntable *t, const kraken_uuid *id);
KRAKEN_PRIVATE void snode_clear_urls(snode *n);
KRAKEN_PRIVATE void member_detach(snode *n);
KRAKEN_PRIVATE void nt_remove(ntable *t, const kraken_uuid *id);
KRAKEN_PRIVATE void nt_free(ntable *t);
KRAKEN_PRIVATE bool set_fresh(kraken_sync *s, snode *n, bool fresh);
KRAKEN_PRIVATE const kraken_uuid *cfg_parent_of(const kraken_node *cfg);
KRAKEN_PRIVATE bool is_direct_child(const kraken_sync *s, const snode *n);
KRAKEN_PRIVATE void check_children(kraken_sync *s);
KRAKEN_PRIVATE void ensure_routes(kraken_sync *s);
KRAKEN_PRIVATE void factlist_clear(factlist *f);
KRAKEN_PRIVATE int factlist_add(factlist *f, const char *url, const kraken_value *value);
KRAKEN_PRIVATE bool is_id_url(const char *url);
KRAKEN_PRIVATE bool filter_pass(enum fact_filter filter, const urlset *owned, const char *url);
KRAKEN_PRIVATE int collect_facts(const kraken_node *dsc, const urlset *owned,
                                 enum fact_filter filter, factlist *out);
KRAKEN_PRIVATE const urlset *link_owned(const kraken_sync *s, const snode *n);
KRAKEN_PRIVATE size_t mark_link_stale(kraken_sync *s, const kraken_uuid *id);

/* ---- sync_apply.c --------------------------------------------------------------------- */

KRAKEN_PRIVATE void stamp(const peer *p, snode *n);
KRAKEN_PRIVATE void apply_update(kraken_sync *s, peer *p, const rx_update *u);

/* ---- sync_hello.c --------------------------------------------------------------------- */

KRAKEN_PRIVATE void invalidate_dsc_hashes(kraken_sync *s);
KRAKEN_PRIVATE void refresh_my_owned(kraken_sync *s);
KRAKEN_PRIVATE uint64_t hello_tick_ms(const kraken_sync *s);
KRAKEN_PRIVATE uint64_t uniform_ms(uint64_t lo, uint64_t hi);
KRAKEN_PRIVATE void schedule_hellos(kraken_sync *s, uint64_t due);
KRAKEN_PRIVATE void hello_cb(evutil_socket_t fd, short what, void *arg);
KRAKEN_PRIVATE bool snapshot_welcome(const kraken_sync *s, const peer *p);
KRAKEN_PRIVATE void on_hello(kraken_sync *s, peer *p, const kraken_sync_Hello *h);

/* ---- sync_session.c ------------------------------------------------------------------- */

KRAKEN_PRIVATE void peer_free(peer *p);
KRAKEN_PRIVATE peer *find_child(const kraken_sync *s, const kraken_uuid *id);
KRAKEN_PRIVATE void end_child_session(kraken_sync *s, peer *p, const char *why, bool link_lost);
KRAKEN_PRIVATE void on_datagram(const uint8_t *data, size_t len, const kraken_sync_addr *from,
                                void *ud);
KRAKEN_PRIVATE void pending_free(kraken_sync *s, pending_join *pj, bool close_conn);
KRAKEN_PRIVATE void on_accept_failed(int err, uint32_t pause_ms, bool first, void *ud);
KRAKEN_PRIVATE void on_accepted(kraken_sync_conn *conn, void *ud);
KRAKEN_PRIVATE void abort_join(kraken_sync *s);
KRAKEN_PRIVATE void join_timer_cb(evutil_socket_t fd, short what, void *arg);
KRAKEN_PRIVATE void first_full_from_parent(kraken_sync *s, peer *p);

/* ---- sync_send.c ---------------------------------------------------------------------- */

KRAKEN_PRIVATE void blobs_clear(blobs *b);
KRAKEN_PRIVATE int blobs_push(blobs *b, uint8_t *data, size_t len, uint32_t depth);
KRAKEN_PRIVATE void arm_flush(kraken_sync *s);
KRAKEN_PRIVATE void queue_node(kraken_sync *s, snode *n);
KRAKEN_PRIVATE int push_tomb(peer *p, const kraken_uuid *id);
KRAKEN_PRIVATE void on_store_change(const kraken_state_change *ch, void *ud);
KRAKEN_PRIVATE int send_message(kraken_sync *s, peer *p, int ch, const kraken_sync_Body *body);
KRAKEN_PRIVATE void log_send_error(kraken_sync *s, const peer *p, const char *what);
KRAKEN_PRIVATE void snapshot_or_log(kraken_sync *s, peer *p);
KRAKEN_PRIVATE void flush_cb(evutil_socket_t fd, short what, void *arg);

#endif /* KRAKEN_SYNC_IMPL_H */
