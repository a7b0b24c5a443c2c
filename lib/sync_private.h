/*
 * sync_private.h: what the sync files (sync.c, sync_net.c, sync_crypto.c) share, and what they
 * need from the engine. Not installed.
 */
#ifndef KRAKEN_SYNC_PRIVATE_H
#define KRAKEN_SYNC_PRIVATE_H

#include "core_private.h"

/* ==== sync additions (owner: sync; sync.c, sync_net.c, sync_crypto.c) ==== */
#include <netinet/in.h>
#include <sys/socket.h>

/* Needed from the engine (implemented in engine.c): the URLs this engine's services declared
 * discoverable with kraken_service_declare_discoverable(), not counting each service's implicit
 * /Services/<id>/State. Canonical form, sorted, without duplicates; the caller frees each string
 * and the array. These are the Dsc URLs a parent owns for its child nodes (doc/PROTOCOL.md 1). */
KRAKEN_PRIVATE int kraken__engine_discoverable_urls(kraken_engine *engine, char ***urls, size_t *n);
/*
 * Children that depend on an engine (a sync) attach a detach callback: the
 * engine's free (or its detach from a freed store) calls it before anything
 * else goes, and the child must stop using the engine, its store and bus.
 * A child freed first unattaches itself.
 */
KRAKEN_PRIVATE int kraken__engine_attach(kraken_engine *engine, void (*detach)(void *arg),
                                         void *arg);
KRAKEN_PRIVATE void kraken__engine_unattach(kraken_engine *engine, void *arg);
/* 0 if @p engine may be used from here (live, this thread); else the public calls' error. */
KRAKEN_PRIVATE int kraken__engine_usable(const kraken_engine *engine, const char *op);

/* -- crypto (sync_crypto.c) -- */
#define KRAKEN_SYNC_KEY_LEN 32
#define KRAKEN_SYNC_NONCE_LEN 32
#define KRAKEN_SYNC_DIGEST_LEN 16
#define KRAKEN_SYNC_HELLO_DIGEST_LEN 12 /* a link digest's prefix sent in Hello */
#define KRAKEN_SYNC_SECRET_MIN 16
#define KRAKEN_SYNC_SECRET_MAX 4096
#define KRAKEN_SYNC_TRANSCRIPT_LEN (16 + 16 + 32 + 32 + 8 + 8 + 2)

/* The join transcript (doc/PROTOCOL.md 2). */
typedef struct kraken_sync_transcript {
    kraken_uuid child_id, parent_id;
    uint8_t nonce_child[KRAKEN_SYNC_NONCE_LEN], nonce_parent[KRAKEN_SYNC_NONCE_LEN];
    uint64_t epoch_child, epoch_parent;
    uint16_t udp_port; /* the child's, from its JoinRequest: bound by the proofs */
} kraken_sync_transcript;

/* libsodium initialisation (idempotent, thread-safe); KRAKEN_EIO if it fails. */
KRAKEN_PRIVATE int kraken__sync_crypto_init(void);
/* Read a secret file (>= KRAKEN_SYNC_SECRET_MIN bytes, not accessible by "other" users). */
KRAKEN_PRIVATE int kraken__sync_secret_load(const char *path, uint8_t **out, size_t *len);
/* Wipe and free a loaded secret. NULL-safe. */
KRAKEN_PRIVATE void kraken__sync_secret_free(uint8_t *secret, size_t len);
/* The fixed, publicly known secret of insecure mode. */
KRAKEN_PRIVATE void kraken__sync_insecure_secret(const uint8_t **secret, size_t *len);
/* K_N = HMAC(secret, "kraken-node-key-v1" || id). */
KRAKEN_PRIVATE void kraken__sync_node_key(const uint8_t *secret, size_t len, const kraken_uuid *id,
                                          uint8_t out[KRAKEN_SYNC_KEY_LEN]);
KRAKEN_PRIVATE void kraken__sync_transcript_bytes(const kraken_sync_transcript *t,
                                                  uint8_t out[KRAKEN_SYNC_TRANSCRIPT_LEN]);
/* S = HMAC(K_C, "kraken-session-v1" || transcript). */
KRAKEN_PRIVATE void kraken__sync_session_key(const uint8_t node_key[KRAKEN_SYNC_KEY_LEN],
                                             const kraken_sync_transcript *t,
                                             uint8_t out[KRAKEN_SYNC_KEY_LEN]);
/* proof = HMAC(K_C, "kraken-parent-proof-v1" or "kraken-child-proof-v1" || transcript). */
KRAKEN_PRIVATE void kraken__sync_proof(const uint8_t node_key[KRAKEN_SYNC_KEY_LEN], bool by_parent,
                                       const kraken_sync_transcript *t,
                                       uint8_t out[KRAKEN_SYNC_KEY_LEN]);
/* mac = HMAC(S, sender || epoch || seq || channel || body), epoch and seq big-endian. */
KRAKEN_PRIVATE void kraken__sync_mac(const uint8_t key[KRAKEN_SYNC_KEY_LEN],
                                     const uint8_t sender[16], uint64_t epoch, uint64_t seq,
                                     char channel, const uint8_t *body, size_t len,
                                     uint8_t out[KRAKEN_SYNC_KEY_LEN]);
/* Constant-time equality. */
KRAKEN_PRIVATE bool kraken__sync_equal(const void *a, const void *b, size_t len);
/* Wipe key material (sodium_memzero: not optimised away like a memset before free). */
KRAKEN_PRIVATE void kraken__sync_wipe(void *buf, size_t len);
KRAKEN_PRIVATE void kraken__sync_random(void *buf, size_t len);
/* Uniform in [0, upper) (0 when upper is 0). */
KRAKEN_PRIVATE uint32_t kraken__sync_random_below(uint32_t upper);
/* Streaming BLAKE2b with a KRAKEN_SYNC_DIGEST_LEN output. */
typedef struct kraken_sync_hash {
    _Alignas(64) unsigned char state[384];
} kraken_sync_hash;
KRAKEN_PRIVATE void kraken__sync_hash_init(kraken_sync_hash *h);
KRAKEN_PRIVATE void kraken__sync_hash_update(kraken_sync_hash *h, const void *data, size_t len);
KRAKEN_PRIVATE void kraken__sync_hash_final(kraken_sync_hash *h,
                                            uint8_t out[KRAKEN_SYNC_DIGEST_LEN]);

/* -- sockets (sync_net.c) -- */
#define KRAKEN_SYNC_MAX_FRAME (16u << 20)   /* TCP frame cap */
#define KRAKEN_SYNC_MAX_DATAGRAM 1200       /* no IP fragmentation on an ordinary LAN */
/* Unauthenticated TCP joins a parent holds at once (the oldest gives way beyond); sized for
 * thousands of children starting together, and lowered to what the fd limit allows
 * (kraken__sync_pending_limit). */
#define KRAKEN_SYNC_MAX_PENDING_JOINS 2048
/* Largest frame a peer may make us buffer before it has proven the key: a JoinRequest or a
 * JoinProof is under 100 bytes. */
#define KRAKEN_SYNC_PREAUTH_MAX_FRAME 256

/* Deterministic fault injection, for tests and benchmarks only (kraken__sync_set_faults); not
 * part of the public options. Datagrams: loss, duplication, reordering (hold one back until the
 * next), a fixed delay plus a uniform jitter (which also reorders). TCP: a fixed delay for every
 * frame written (so datagrams overtake it, or it overtakes delayed datagrams) and a probability
 * that writing a frame resets the connection instead (RST, as a crashed peer). */
typedef struct kraken_sync_faults {
    double loss;           /* probability a datagram is dropped */
    double duplicate;      /* probability it is sent twice */
    double reorder;        /* probability it is held back and sent after the next one */
    uint32_t delay_ms;     /* fixed extra delay for every datagram */
    uint32_t seed;         /* PRNG seed */
    uint32_t jitter_ms;    /* plus a uniform extra delay in [0, jitter_ms] per datagram */
    uint32_t tcp_delay_ms; /* every TCP frame is written this much later */
    double tcp_reset;      /* probability that a frame resets its connection instead */
} kraken_sync_faults;

typedef struct kraken_sync_addr {
    socklen_t len;
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
        struct sockaddr_storage ss;
    } u;
} kraken_sync_addr;

/* Parse "host", "host:port", "[v6]:port" or a bare IPv6 address; @p default_port when none is
 * given. Host names are resolved (first address). NULL or "" gives 0.0.0.0. */
KRAKEN_PRIVATE int kraken__sync_parse_addr(const char *text, uint16_t default_port,
                                           kraken_sync_addr *out);
/* "1.2.3.4:5" or "[::1]:5" into @p buf; returns buf. */
KRAKEN_PRIVATE const char *kraken__sync_addr_format(const kraken_sync_addr *a, char *buf,
                                                    size_t size);
KRAKEN_PRIVATE uint16_t kraken__sync_addr_port(const kraken_sync_addr *a);
KRAKEN_PRIVATE void kraken__sync_addr_set_port(kraken_sync_addr *a, uint16_t port);
KRAKEN_PRIVATE bool kraken__sync_addr_equal(const kraken_sync_addr *a, const kraken_sync_addr *b);

typedef struct kraken_sync_net kraken_sync_net;
typedef struct kraken_sync_conn kraken_sync_conn;

typedef struct kraken_sync_net_ops {
    /* A datagram arrived (any size up to 64 KiB). */
    void (*datagram)(const uint8_t *data, size_t len, const kraken_sync_addr *from, void *ud);
    /* A TCP connection was accepted; set its ops with kraken__sync_conn_set_ops() or close it. */
    void (*accepted)(kraken_sync_conn *conn, void *ud);
    /* accept() failed with @p err (errno); the listener pauses for @p pause_ms. @p first is
     * true for the first failure after a successful accept (report that one). May be NULL. */
    void (*accept_failed)(int err, uint32_t pause_ms, bool first, void *ud);
} kraken_sync_net_ops;

typedef struct kraken_sync_conn_ops {
    void (*connected)(kraken_sync_conn *conn, void *ud); /* outgoing connection is up */
    /* One frame; the conn may be closed from here. */
    void (*frame)(kraken_sync_conn *conn, const uint8_t *data, size_t len, void *ud);
    /* Closed by the peer or by an error (oversized frame, reset ...); the conn is freed after. */
    void (*closed)(kraken_sync_conn *conn, const char *why, void *ud);
} kraken_sync_conn_ops;

/* UDP socket and TCP listener on the same address and port (port 0: one is picked). */
KRAKEN_PRIVATE int kraken__sync_net_new(kraken_sync_net **out, struct event_base *base,
                                        const kraken_sync_addr *bind_addr,
                                        const kraken_sync_net_ops *ops, void *ud);
/* Close everything, connections included (no callbacks). NULL-safe. */
KRAKEN_PRIVATE void kraken__sync_net_free(kraken_sync_net *net);
KRAKEN_PRIVATE uint16_t kraken__sync_net_port(const kraken_sync_net *net);
/* Faults for sent datagrams and TCP frames (copied; NULL: none). */
KRAKEN_PRIVATE void kraken__sync_net_set_faults(kraken_sync_net *net, const kraken_sync_faults *f);
/* Send one datagram (through the fault shim). */
KRAKEN_PRIVATE int kraken__sync_net_send(kraken_sync_net *net, const kraken_sync_addr *to,
                                         const uint8_t *data, size_t len);
/* The last datagram given to kraken__sync_net_send (before faults), for tests; recorded only
 * once kraken__sync_net_set_faults was called with faults (all zero will do). */
KRAKEN_PRIVATE bool kraken__sync_net_last_sent(const kraken_sync_net *net, const uint8_t **data,
                                               size_t *len, kraken_sync_addr *to);
/* Outgoing TCP connection (bound to the net's address when it is not a wildcard). */
KRAKEN_PRIVATE int kraken__sync_conn_connect(kraken_sync_conn **out, kraken_sync_net *net,
                                             const kraken_sync_addr *to,
                                             const kraken_sync_conn_ops *ops, void *ud);
KRAKEN_PRIVATE void kraken__sync_conn_set_ops(kraken_sync_conn *conn,
                                              const kraken_sync_conn_ops *ops, void *ud);
/* Queue one frame (length prefix added); KRAKEN_ELIMIT above KRAKEN_SYNC_MAX_FRAME. */
KRAKEN_PRIVATE int kraken__sync_conn_send(kraken_sync_conn *conn, const uint8_t *data, size_t len);
/* Close without callbacks; with @p flush, queued frames are sent first. NULL-safe. */
KRAKEN_PRIVATE void kraken__sync_conn_close(kraken_sync_conn *conn, bool flush);
KRAKEN_PRIVATE const kraken_sync_addr *kraken__sync_conn_peer(const kraken_sync_conn *conn);
/* Largest frame accepted from the peer (default and cap KRAKEN_SYNC_MAX_FRAME); a larger one
 * closes the connection. Unauthenticated peers get a small limit. */
KRAKEN_PRIVATE void kraken__sync_conn_set_max_frame(kraken_sync_conn *conn, uint32_t max);
/* Bytes queued for the peer and not yet written to the socket. */
KRAKEN_PRIVATE size_t kraken__sync_conn_queued(const kraken_sync_conn *conn);
/* Bytes received from the peer and held (an unfinished frame), for tests. */
KRAKEN_PRIVATE size_t kraken__sync_conn_buffered(const kraken_sync_conn *conn);
/* The socket, for tests that provoke socket errors. */
KRAKEN_PRIVATE int kraken__sync_conn_fd(const kraken_sync_conn *conn);
/* Sum of kraken__sync_conn_buffered over every connection of @p net, for tests. */
KRAKEN_PRIVATE size_t kraken__sync_net_buffered(const kraken_sync_net *net);
/* Half-open joins a parent may hold: KRAKEN_SYNC_MAX_PENDING_JOINS, or fewer when the process's
 * fd limit (@p nofile, RLIMIT_NOFILE's soft limit) leaves less room: a half-open join holds one
 * descriptor, and sessions, the sockets and the host program need the rest. At least 8. */
KRAKEN_PRIVATE size_t kraken__sync_pending_limit(uint64_t nofile);

/* -- test hooks (sync.c) -- */
KRAKEN_PRIVATE void kraken__sync_set_faults(kraken_sync *sync, const kraken_sync_faults *faults);
KRAKEN_PRIVATE bool kraken__sync_last_datagram(const kraken_sync *sync, const uint8_t **data,
                                               size_t *len, kraken_sync_addr *to);
/* Pretend @p ms more have passed since every session's last snapshot (tests of the snapshot
 * rate limit, without waiting). */
KRAKEN_PRIVATE void kraken__sync_age_snapshots(kraken_sync *sync, uint64_t ms);
/* True while changes wait for the damping timer (tests that need one flush per change). */
KRAKEN_PRIVATE bool kraken__sync_flush_pending(const kraken_sync *sync);
/* Bytes received and held on every TCP connection, and half-open joins held (and their cap). */
KRAKEN_PRIVATE size_t kraken__sync_buffered(const kraken_sync *sync);
KRAKEN_PRIVATE size_t kraken__sync_pending_joins(const kraken_sync *sync, size_t *limit);

/* -- wire decoders, exposed for fuzz/fuzz_sync.c and tests (owner: syncreview) -- */
#define KRAKEN_SYNC_FRAME_HEAD 4 /* TCP frame: 4-byte big-endian length, then the message */
/* The frame at the start of @p buf (@p avail bytes buffered; only the first
 * KRAKEN_SYNC_FRAME_HEAD are read): 1 when it is all there, 0 when more bytes are needed,
 * -1 when its length is above @p max. *len is set once the header is there. */
KRAKEN_PRIVATE int kraken__sync_frame_parse(const uint8_t *buf, size_t avail, uint32_t max,
                                            uint32_t *len);

typedef enum kraken_sync_wire {
    KRAKEN_SYNC_WIRE_ENVELOPE = 0,
    KRAKEN_SYNC_WIRE_BODY,
    KRAKEN_SYNC_WIRE_UPDATE,     /* StateUpdate */
    KRAKEN_SYNC_WIRE_NODE_STATE,
    KRAKEN_SYNC_WIRE_FACT,
    KRAKEN_SYNC_WIRE_JOIN_REQUEST,
    KRAKEN_SYNC_WIRE_JOIN_CHALLENGE,
    KRAKEN_SYNC_WIRE_JOIN_PROOF,
    KRAKEN_SYNC_WIRE_JOIN_RESULT,
    KRAKEN_SYNC_WIRE_HELLO,
    KRAKEN_SYNC_WIRE_COUNT
} kraken_sync_wire;

/* What a decoder found (the fields that apply to the message decoded; the rest are zero). */
typedef struct kraken_sync_decoded {
    unsigned kind;                  /* Body: the member present (Body field number), 0: none */
    bool full, more;                /* StateUpdate */
    size_t nodes, facts;            /* NodeStates and Facts decoded */
    size_t cfg_bytes;               /* NodeState Cfg bytes, summed */
    size_t owned_urls;              /* JoinResult */
    const uint8_t *body;            /* Envelope: its body, inside the input */
    size_t body_len;
    uint64_t epoch, seq;            /* Envelope */
} kraken_sync_decoded;

/* Run the decoder the protocol uses for @p what on @p data, then free what it built:
 * KRAKEN_OK or KRAKEN_EPROTO (malformed). No other effect. */
KRAKEN_PRIVATE int kraken__sync_decode(kraken_sync_wire what, const uint8_t *data, size_t len,
                                       kraken_sync_decoded *out);
/* ==== end sync additions ==== */

#endif
