/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Sync transport: one UDP socket and one TCP listener on the same address and port, outgoing
 * TCP connections, length-prefixed TCP frames (4-byte big-endian length, capped at
 * KRAKEN_SYNC_MAX_FRAME), address parsing, and the fault-injection shim tests use on sent
 * datagrams and TCP frames. Protocol logic lives in sync.c; this file only moves bytes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <sys/uio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define RX_BUFFER_SIZE 65536
/* Asked for; the kernel doubles it and may cap it. A root with 10,000 children receives 10,000
 * echoes together, ~0.8 KiB of kernel memory each: 4 MiB (8 effective) still dropped some. */
#define UDP_BUFFER_SIZE (8 * 1024 * 1024)
/* Children that all start together connect at once: a short accept queue drops SYNs and the
 * retransmits (1 s, 3 s, 7 s) make the join's tail. The kernel caps it at somaxconn. */
#define LISTEN_BACKLOG 4096
#define RX_BURST 64               /* datagrams read per wakeup before yielding to the loop */
#define HOLD_FLUSH_MS 20          /* a datagram held back for reordering waits at most this */
#define CLOSE_FLUSH_TIMEOUT_S 5   /* give up flushing a closing connection after this */
#define BIND_ATTEMPTS 16          /* port 0: retries when UDP cannot take the TCP port */

/* ---- addresses ----------------------------------------------------------- */

static int parse_port(const char *text, const char *whole, uint16_t *out)
{
    if (text[0] == '\0')
        return kraken__err(KRAKEN_EINVAL, "address '%s': empty port", whole);
    unsigned long v = 0;
    for (const char *p = text; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return kraken__err(KRAKEN_EINVAL, "address '%s': port '%s' is not a number", whole,
                               text);
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 65535)
            return kraken__err(KRAKEN_EINVAL, "address '%s': port '%s' is out of range", whole,
                               text);
    }
    *out = (uint16_t)v;
    return KRAKEN_OK;
}

static int resolve_host(const char *host, const char *whole, uint16_t port, kraken_sync_addr *out)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    int gai = getaddrinfo(host, NULL, &hints, &res);
    if (gai != 0 || res == NULL)
        return kraken__err(KRAKEN_EINVAL, "address '%s': cannot resolve host '%s': %s", whole,
                           host, gai != 0 ? gai_strerror(gai) : "no address");
    int rc = KRAKEN_OK;
    if ((res->ai_family != AF_INET && res->ai_family != AF_INET6) ||
        res->ai_addrlen > sizeof out->u) {
        rc = kraken__err(KRAKEN_EINVAL, "address '%s': host '%s' is not an IP host", whole, host);
    } else {
        memset(out, 0, sizeof *out);
        memcpy(&out->u, res->ai_addr, res->ai_addrlen);
        out->len = (socklen_t)res->ai_addrlen;
        kraken__sync_addr_set_port(out, port);
    }
    freeaddrinfo(res);
    return rc;
}

int kraken__sync_parse_addr(const char *text, uint16_t default_port, kraken_sync_addr *out)
{
    if (out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken__sync_parse_addr: NULL output");
    if (text == NULL || text[0] == '\0')
        text = "0.0.0.0";
    size_t len = strlen(text);
    if (len > 1024)
        return kraken__err(KRAKEN_EINVAL, "address too long (%zu bytes)", len);
    char *host = NULL;
    uint16_t port = default_port;
    int rc;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL)
            return kraken__err(KRAKEN_EINVAL, "address '%s': missing ']'", text);
        if (close[1] != '\0' && close[1] != ':')
            return kraken__err(KRAKEN_EINVAL, "address '%s': expected ':port' after ']'", text);
        if (close[1] == ':' && (rc = parse_port(close + 2, text, &port)) < 0)
            return rc;
        host = kraken__strndup(text + 1, (size_t)(close - text - 1));
        if (host != NULL && strchr(host, ':') == NULL) {
            free(host);
            return kraken__err(KRAKEN_EINVAL, "address '%s': brackets are for IPv6 addresses",
                               text);
        }
    } else {
        const char *colon = strchr(text, ':');
        if (colon != NULL && strchr(colon + 1, ':') == NULL) { /* host:port */
            if ((rc = parse_port(colon + 1, text, &port)) < 0)
                return rc;
            host = kraken__strndup(text, (size_t)(colon - text));
        } else { /* host alone, or a bare IPv6 address (several colons, no port) */
            host = kraken__strndup(text, len);
        }
    }
    if (host == NULL)
        return kraken__err(KRAKEN_ENOMEM, "address '%s': out of memory", text);
    if (host[0] == '\0') {
        free(host);
        return kraken__err(KRAKEN_EINVAL, "address '%s': empty host", text);
    }
    kraken_sync_addr addr;
    rc = resolve_host(host, text, port, &addr);
    free(host);
    if (rc < 0)
        return rc;
    *out = addr;
    return KRAKEN_OK;
}

const char *kraken__sync_addr_format(const kraken_sync_addr *a, char *buf, size_t size)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (a->u.sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->u.in6.sin6_addr, ip, sizeof ip);
        snprintf(buf, size, "[%s]:%u", ip, (unsigned)ntohs(a->u.in6.sin6_port));
    } else if (a->u.sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->u.in4.sin_addr, ip, sizeof ip);
        snprintf(buf, size, "%s:%u", ip, (unsigned)ntohs(a->u.in4.sin_port));
    } else {
        snprintf(buf, size, "(no address)");
    }
    return buf;
}

uint16_t kraken__sync_addr_port(const kraken_sync_addr *a)
{
    if (a->u.sa.sa_family == AF_INET6)
        return ntohs(a->u.in6.sin6_port);
    if (a->u.sa.sa_family == AF_INET)
        return ntohs(a->u.in4.sin_port);
    return 0;
}

void kraken__sync_addr_set_port(kraken_sync_addr *a, uint16_t port)
{
    if (a->u.sa.sa_family == AF_INET6)
        a->u.in6.sin6_port = htons(port);
    else if (a->u.sa.sa_family == AF_INET)
        a->u.in4.sin_port = htons(port);
}

bool kraken__sync_addr_equal(const kraken_sync_addr *a, const kraken_sync_addr *b)
{
    if (a->u.sa.sa_family != b->u.sa.sa_family)
        return false;
    if (a->u.sa.sa_family == AF_INET)
        return a->u.in4.sin_port == b->u.in4.sin_port &&
               a->u.in4.sin_addr.s_addr == b->u.in4.sin_addr.s_addr;
    if (a->u.sa.sa_family == AF_INET6)
        return a->u.in6.sin6_port == b->u.in6.sin6_port &&
               memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) == 0;
    return false;
}

static bool addr_is_wildcard(const kraken_sync_addr *a)
{
    if (a->u.sa.sa_family == AF_INET)
        return a->u.in4.sin_addr.s_addr == htonl(INADDR_ANY);
    if (a->u.sa.sa_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&a->u.in6.sin6_addr);
    return true;
}

/* ---- objects ------------------------------------------------------------- */

/* A TCP frame held back by the fault shim's delay (length prefix included). */
typedef struct tframe {
    struct tframe *next;
    uint64_t due_us;
    size_t len;
    uint8_t data[];
} tframe;

/*
 * A TCP connection. Reading goes through a bufferevent (with a read watermark, so an
 * unauthenticated peer can make us buffer one small frame at most); writing does not: libevent
 * writes with writev(), which raises SIGPIPE when the peer has reset the connection, and the
 * library must neither die of that nor change the process's signal handling. Frames are queued
 * in @c out and written with sendmsg(MSG_NOSIGNAL) when the socket is writable.
 */
struct kraken_sync_conn {
    kraken_sync_net *net;
    struct bufferevent *bev; /* reading only */
    evutil_socket_t fd;
    struct evbuffer *out;    /* frames not yet written */
    struct event *write_ev;  /* writable, or the connect finished */
    struct event *delay_ev;  /* fault shim: next held frame due */
    struct event *close_ev;  /* flushing a closing connection: give up after this */
    tframe *held, *held_tail;
    size_t held_bytes;
    kraken_sync_addr peer;
    kraken_sync_conn_ops ops;
    void *ud;
    uint32_t max_frame;
    bool connecting;  /* outgoing connect() in progress */
    bool closing;     /* flushing queued frames, then freed; no more callbacks */
    bool doomed;      /* free as soon as no callback of ours is on the stack */
    int write_err;    /* a write failed or the shim reset us: reported from the loop */
    unsigned in_cb;
    kraken_sync_conn *prev, *next;
};

typedef struct dgram {
    struct dgram *next;
    uint64_t due_us;
    kraken_sync_addr to;
    size_t len;
    uint8_t data[];
} dgram;

struct kraken_sync_net {
    struct event_base *base;
    kraken_sync_addr bound;
    int udp_fd;
    struct event *udp_ev;
    struct evconnlistener *listener;
    struct event *accept_resume_ev; /* accepting paused after an accept() error */
    uint32_t accept_pause_ms;       /* current back-off; 0 while accepting works */
    kraken_sync_net_ops ops;
    void *ud;
    kraken_sync_conn *conns;
    /* fault shim */
    bool faulty;
    kraken_sync_faults faults;
    uint64_t prng;
    dgram *delayed, *delayed_tail; /* sorted by due time */
    struct event *delay_ev;
    dgram *held;
    struct event *held_ev;
    /* last datagram handed to kraken__sync_net_send once a fault shim was set, for tests;
     * allocated then only, so that an ordinary instance carries no copy */
    bool keep_last;
    uint8_t *last;
    size_t last_len, last_cap;
    kraken_sync_addr last_to;
    bool have_last;
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void arm_us(struct event *ev, uint64_t us)
{
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    event_add(ev, &tv);
}

static double prng_next(kraken_sync_net *net);

/* ---- connections --------------------------------------------------------- */

static void conn_destroy(kraken_sync_conn *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        c->net->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->write_ev != NULL)
        event_free(c->write_ev);
    if (c->delay_ev != NULL)
        event_free(c->delay_ev);
    if (c->close_ev != NULL)
        event_free(c->close_ev);
    while (c->held != NULL) {
        tframe *f = c->held;
        c->held = f->next;
        free(f);
    }
    if (c->out != NULL)
        evbuffer_free(c->out);
    bufferevent_free(c->bev); /* closes the socket */
    free(c);
}

/* Free now, or when the callback currently running on this conn returns. */
static void conn_doom(kraken_sync_conn *c)
{
    c->doomed = true;
    if (c->in_cb == 0)
        conn_destroy(c);
}

/* The connection failed or the peer closed it: tell the owner once, then free it. */
static void conn_fail(kraken_sync_conn *c, const char *why)
{
    if (c->doomed)
        return;
    if (!c->closing && c->ops.closed != NULL) {
        c->in_cb++;
        c->ops.closed(c, why, c->ud);
        c->in_cb--;
    }
    conn_doom(c);
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int kraken__sync_frame_parse(const uint8_t *buf, size_t avail, uint32_t max, uint32_t *len)
{
    if (avail < KRAKEN_SYNC_FRAME_HEAD)
        return 0;
    uint32_t n = get_be32(buf);
    *len = n;
    if (n > max)
        return -1;
    return avail - KRAKEN_SYNC_FRAME_HEAD >= n ? 1 : 0;
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    kraken_sync_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    c->in_cb++;
    while (!c->doomed && !c->closing) {
        size_t avail = evbuffer_get_length(in);
        uint8_t head[KRAKEN_SYNC_FRAME_HEAD];
        uint32_t n = 0;
        if (avail >= sizeof head)
            evbuffer_copyout(in, head, sizeof head);
        int whole = kraken__sync_frame_parse(head, avail, c->max_frame, &n);
        if (whole < 0) {
            char why[80];
            snprintf(why, sizeof why, "frame of %u bytes exceeds the limit of %u", n,
                     c->max_frame);
            c->in_cb--;
            conn_fail(c, why);
            return;
        }
        if (whole == 0)
            break;
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)(sizeof head + n));
        if (p == NULL) {
            c->in_cb--;
            conn_fail(c, "out of memory reading a frame");
            return;
        }
        if (c->ops.frame != NULL)
            c->ops.frame(c, p + sizeof head, n, c->ud);
        if (!c->doomed)
            evbuffer_drain(in, sizeof head + n);
    }
    c->in_cb--;
    if (c->doomed && c->in_cb == 0)
        conn_destroy(c);
}

/* Read-side events of the bufferevent: end of stream or an error. */
static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    kraken_sync_conn *c = arg;
    if (c->closing) {
        conn_doom(c);
        return;
    }
    char why[160];
    if (what & BEV_EVENT_EOF)
        snprintf(why, sizeof why, "connection closed by peer");
    else
        snprintf(why, sizeof why, "connection error: %s",
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    conn_fail(c, why);
}

#define IOV_BATCH 64

/* Write what the socket takes now: 0 (the rest waits for write_ev) or a negative errno. */
static int conn_write_some(kraken_sync_conn *c)
{
    while (evbuffer_get_length(c->out) > 0) {
        struct evbuffer_iovec v[IOV_BATCH];
        int n = evbuffer_peek(c->out, -1, NULL, v, IOV_BATCH);
        if (n > IOV_BATCH)
            n = IOV_BATCH;
        struct iovec iov[IOV_BATCH];
        for (int i = 0; i < n; i++) {
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = v[i].iov_len;
        }
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = iov;
        msg.msg_iovlen = (size_t)n;
        ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                event_add(c->write_ev, NULL);
                return 0;
            }
            return -errno;
        }
        evbuffer_drain(c->out, (size_t)w);
    }
    return 0;
}

static void conn_report_write_error(kraken_sync_conn *c)
{
    char why[160];
    if (c->write_err == ECONNRESET && c->net->faulty && c->net->faults.tcp_reset > 0)
        snprintf(why, sizeof why, "connection reset (fault injection)");
    else
        snprintf(why, sizeof why, "connection error: send: %s", strerror(c->write_err));
    conn_fail(c, why);
}

static void conn_finish_connect(kraken_sync_conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        char why[160];
        snprintf(why, sizeof why, "connect: %s", strerror(err));
        conn_fail(c, why);
        return;
    }
    c->connecting = false;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    bufferevent_enable(c->bev, EV_READ);
    if (c->ops.connected != NULL && !c->closing) {
        c->in_cb++;
        c->ops.connected(c, c->ud);
        c->in_cb--;
    }
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kraken_sync_conn *c = arg;
    c->in_cb++; /* conn_fail below must not free c under our feet */
    if (c->write_err == 0 && c->connecting)
        conn_finish_connect(c);
    if (!c->doomed && c->write_err == 0 && !c->connecting) {
        int err = conn_write_some(c);
        if (err < 0)
            c->write_err = -err;
    }
    if (!c->doomed && c->write_err != 0)
        conn_report_write_error(c);
    else if (c->closing && evbuffer_get_length(c->out) == 0 && c->held == NULL)
        c->doomed = true;
    c->in_cb--;
    if (c->doomed && c->in_cb == 0)
        conn_destroy(c);
}

/* Have write_ev run soon (from the loop: callers of the API must not see the conn vanish). */
static void conn_want_write(kraken_sync_conn *c)
{
    if (c->connecting)
        return; /* write_ev is pending for the connect; it writes afterwards */
    if (c->write_err != 0)
        event_active(c->write_ev, EV_WRITE, 0);
    else if (!event_pending(c->write_ev, EV_WRITE, NULL))
        event_add(c->write_ev, NULL);
}

/* Fault shim: this frame resets the connection instead of going out (RST, as a crash). */
static bool shim_resets(kraken_sync_conn *c)
{
    kraken_sync_net *net = c->net;
    if (!net->faulty || net->faults.tcp_reset <= 0 || prng_next(net) >= net->faults.tcp_reset)
        return false;
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    c->write_err = ECONNRESET;
    return true;
}

static void conn_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kraken_sync_conn *c = arg;
    uint64_t now = now_us();
    while (c->held != NULL && c->held->due_us <= now && c->write_err == 0) {
        tframe *f = c->held;
        c->held = f->next;
        if (c->held == NULL)
            c->held_tail = NULL;
        c->held_bytes -= f->len;
        if (!shim_resets(c) && evbuffer_add(c->out, f->data, f->len) != 0)
            c->write_err = ENOMEM;
        free(f);
    }
    if (c->held != NULL && c->write_err == 0)
        arm_us(c->delay_ev, c->held->due_us > now ? c->held->due_us - now : 0);
    conn_want_write(c);
}

/* Fault shim: hold the frame for tcp_delay_ms. Every frame gets the same delay, so the queue
 * stays in order (a TCP stream never reorders itself). */
static int conn_hold(kraken_sync_conn *c, const uint8_t head[4], const uint8_t *data, size_t len)
{
    if (c->delay_ev == NULL && (c->delay_ev = evtimer_new(c->net->base, conn_delay_cb, c)) == NULL)
        return kraken__err(KRAKEN_ENOMEM, "out of memory queueing a %zu-byte frame", len);
    tframe *f = malloc(sizeof *f + 4 + len);
    if (f == NULL)
        return kraken__err(KRAKEN_ENOMEM, "out of memory queueing a %zu-byte frame", len);
    f->next = NULL;
    f->len = 4 + len;
    uint32_t delay_ms = c->net->faulty ? c->net->faults.tcp_delay_ms : 0;
    f->due_us = now_us() + (uint64_t)delay_ms * 1000u;
    memcpy(f->data, head, 4);
    if (len > 0)
        memcpy(f->data + 4, data, len);
    if (c->held_tail != NULL)
        c->held_tail->next = f;
    else
        c->held = f;
    c->held_tail = f;
    c->held_bytes += f->len;
    if (!event_pending(c->delay_ev, EV_TIMEOUT, NULL))
        arm_us(c->delay_ev, (uint64_t)delay_ms * 1000u);
    return KRAKEN_OK;
}

static kraken_sync_conn *conn_new(kraken_sync_net *net, evutil_socket_t fd,
                                  const kraken_sync_addr *peer)
{
    kraken_sync_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->net = net;
    c->fd = fd;
    c->bev = bufferevent_socket_new(net->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->out = evbuffer_new();
    c->write_ev = event_new(net->base, fd, EV_WRITE, conn_write_cb, c);
    if (c->bev == NULL || c->out == NULL || c->write_ev == NULL) {
        if (c->bev == NULL)
            evutil_closesocket(fd);
        else
            bufferevent_free(c->bev);
        if (c->out != NULL)
            evbuffer_free(c->out);
        if (c->write_ev != NULL)
            event_free(c->write_ev);
        free(c);
        return NULL;
    }
    c->peer = *peer;
    c->max_frame = KRAKEN_SYNC_MAX_FRAME;
    c->next = net->conns;
    if (net->conns != NULL)
        net->conns->prev = c;
    net->conns = c;
    bufferevent_setcb(c->bev, conn_read_cb, NULL, conn_event_cb, c);
    return c;
}

void kraken__sync_conn_set_ops(kraken_sync_conn *conn, const kraken_sync_conn_ops *ops, void *ud)
{
    if (conn == NULL)
        return;
    if (ops != NULL)
        conn->ops = *ops;
    else
        memset(&conn->ops, 0, sizeof conn->ops);
    conn->ud = ud;
}

void kraken__sync_conn_set_max_frame(kraken_sync_conn *conn, uint32_t max)
{
    if (conn == NULL)
        return;
    conn->max_frame = max < KRAKEN_SYNC_MAX_FRAME ? max : KRAKEN_SYNC_MAX_FRAME;
    /* Below the cap, read no more than one frame ahead: an unauthenticated peer that sends
     * the start of a frame and stops holds only that much of our memory. */
    size_t high = conn->max_frame < KRAKEN_SYNC_MAX_FRAME
                      ? (size_t)conn->max_frame + KRAKEN_SYNC_FRAME_HEAD
                      : 0;
    bufferevent_setwatermark(conn->bev, EV_READ, 0, high);
}

size_t kraken__sync_conn_queued(const kraken_sync_conn *conn)
{
    return conn != NULL ? evbuffer_get_length(conn->out) + conn->held_bytes : 0;
}

size_t kraken__sync_conn_buffered(const kraken_sync_conn *conn)
{
    return conn != NULL ? evbuffer_get_length(bufferevent_get_input(conn->bev)) : 0;
}

int kraken__sync_conn_fd(const kraken_sync_conn *conn)
{
    return conn != NULL ? (int)conn->fd : -1;
}

size_t kraken__sync_net_buffered(const kraken_sync_net *net)
{
    size_t sum = 0;
    for (const kraken_sync_conn *c = net != NULL ? net->conns : NULL; c != NULL; c = c->next)
        sum += kraken__sync_conn_buffered(c);
    return sum;
}

const kraken_sync_addr *kraken__sync_conn_peer(const kraken_sync_conn *conn)
{
    return &conn->peer;
}

int kraken__sync_conn_send(kraken_sync_conn *conn, const uint8_t *data, size_t len)
{
    if (conn == NULL || (data == NULL && len > 0))
        return kraken__err(KRAKEN_EINVAL, "kraken__sync_conn_send: NULL argument");
    if (conn->closing || conn->doomed)
        return kraken__err(KRAKEN_ESTATE, "connection is closing");
    if (len > KRAKEN_SYNC_MAX_FRAME)
        return kraken__err(KRAKEN_ELIMIT, "frame of %zu bytes exceeds the 16 MiB limit", len);
    if (conn->write_err != 0)
        return KRAKEN_OK; /* failing: the loop reports it; this frame is lost with the link */
    uint8_t head[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                       (uint8_t)len};
    kraken_sync_net *net = conn->net;
    /* Behind frames the shim still holds (even once it is lifted): a stream keeps its order. */
    if (conn->held != NULL || (net->faulty && net->faults.tcp_delay_ms > 0))
        return conn_hold(conn, head, data, len);
    if (!shim_resets(conn) &&
        (evbuffer_add(conn->out, head, sizeof head) != 0 ||
         evbuffer_add(conn->out, data, len) != 0))
        return kraken__err(KRAKEN_ENOMEM, "out of memory queueing a %zu-byte frame", len);
    conn_want_write(conn);
    return KRAKEN_OK;
}

static void conn_close_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_doom(arg);
}

void kraken__sync_conn_close(kraken_sync_conn *conn, bool flush)
{
    if (conn == NULL || conn->doomed)
        return;
    bool pending = evbuffer_get_length(conn->out) > 0 || conn->held != NULL;
    if (flush && !conn->closing && pending && conn->write_err == 0 &&
        (conn->close_ev = evtimer_new(conn->net->base, conn_close_timeout, conn)) != NULL) {
        conn->closing = true;
        bufferevent_disable(conn->bev, EV_READ);
        arm_us(conn->close_ev, (uint64_t)CLOSE_FLUSH_TIMEOUT_S * 1000000u);
        conn_want_write(conn);
        return;
    }
    conn->closing = true;
    conn_doom(conn);
}

int kraken__sync_conn_connect(kraken_sync_conn **out, kraken_sync_net *net,
                              const kraken_sync_addr *to, const kraken_sync_conn_ops *ops,
                              void *ud)
{
    if (out == NULL || net == NULL || to == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken__sync_conn_connect: NULL argument");
    char buf[80];
    int fd = socket(to->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return kraken__err(KRAKEN_EIO, "connect to %s: socket: %s",
                           kraken__sync_addr_format(to, buf, sizeof buf), strerror(errno));
    /* Leave from our own address so the parent sees the address we receive datagrams on. */
    if (!addr_is_wildcard(&net->bound) && net->bound.u.sa.sa_family == to->u.sa.sa_family) {
        kraken_sync_addr src = net->bound;
        kraken__sync_addr_set_port(&src, 0);
        if (bind(fd, &src.u.sa, src.len) != 0) {
            int saved = errno;
            close(fd);
            return kraken__err(KRAKEN_EIO, "connect to %s: bind source: %s",
                               kraken__sync_addr_format(to, buf, sizeof buf), strerror(saved));
        }
    }
    if (connect(fd, &to->u.sa, to->len) != 0 && errno != EINPROGRESS) {
        int saved = errno;
        close(fd);
        return kraken__err(KRAKEN_EIO, "connect to %s: %s",
                           kraken__sync_addr_format(to, buf, sizeof buf), strerror(saved));
    }
    kraken_sync_conn *c = conn_new(net, fd, to);
    if (c == NULL)
        return kraken__err(KRAKEN_ENOMEM, "connect: out of memory");
    kraken__sync_conn_set_ops(c, ops, ud);
    c->connecting = true; /* write_ev reports the outcome; reading starts once connected */
    event_add(c->write_ev, NULL);
    *out = c;
    return KRAKEN_OK;
}

/* ---- the listener -------------------------------------------------------- */

#define ACCEPT_PAUSE_MIN_MS 50
#define ACCEPT_PAUSE_MAX_MS 2000

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    (void)l;
    kraken_sync_net *net = arg;
    net->accept_pause_ms = 0; /* accepting works again: the next failure is reported */
    kraken_sync_addr peer;
    memset(&peer, 0, sizeof peer);
    if (socklen > 0 && (size_t)socklen <= sizeof peer.u) {
        memcpy(&peer.u, sa, (size_t)socklen);
        peer.len = (socklen_t)socklen;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    kraken_sync_conn *c = conn_new(net, fd, &peer);
    if (c == NULL)
        return;
    bufferevent_enable(c->bev, EV_READ);
    c->in_cb++;
    if (net->ops.accepted != NULL)
        net->ops.accepted(c, net->ud);
    c->in_cb--;
    if (c->ops.frame == NULL && !c->doomed) /* nobody took it */
        c->closing = c->doomed = true;
    if (c->doomed && c->in_cb == 0)
        conn_destroy(c);
}

/*
 * accept() failed for a reason that retrying at once cannot fix (EMFILE, ENFILE, ENOBUFS...).
 * libevent would retry on every loop turn (and print each failure): at the fd limit that spun
 * at 100% CPU and wrote millions of lines. Pause accepting instead, with back-off, and tell the
 * owner (who logs the first failure of a run of them).
 */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    kraken_sync_net *net = arg;
    int err = EVUTIL_SOCKET_ERROR();
    bool first = net->accept_pause_ms == 0;
    uint32_t pause = first ? ACCEPT_PAUSE_MIN_MS : net->accept_pause_ms * 2;
    if (pause > ACCEPT_PAUSE_MAX_MS)
        pause = ACCEPT_PAUSE_MAX_MS;
    net->accept_pause_ms = pause;
    evconnlistener_disable(l);
    arm_us(net->accept_resume_ev, (uint64_t)pause * 1000u);
    if (net->ops.accept_failed != NULL)
        net->ops.accept_failed(err, pause, first, net->ud);
}

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kraken_sync_net *net = arg;
    evconnlistener_enable(net->listener);
}

size_t kraken__sync_pending_limit(uint64_t nofile)
{
    /* Keep 64 descriptors for the host program and our own sockets, and half of the rest for
     * sessions: established children matter more than strangers. */
    uint64_t room = nofile > 64 ? (nofile - 64) / 2 : 0;
    if (room > KRAKEN_SYNC_MAX_PENDING_JOINS)
        room = KRAKEN_SYNC_MAX_PENDING_JOINS;
    return room < 8 ? 8 : (size_t)room;
}

/* ---- datagrams and the fault shim --------------------------------------- */

/* One receive buffer per thread, shared by every instance whose loop runs on it: a datagram
 * is handled completely inside ops.datagram, before the next recvfrom. (One per instance cost
 * 64 KiB each, the bulk of a child's memory.) */
static _Thread_local uint8_t rx_buffer[RX_BUFFER_SIZE];

static void udp_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    kraken_sync_net *net = arg;
    for (int i = 0; i < RX_BURST; i++) {
        kraken_sync_addr from;
        memset(&from, 0, sizeof from);
        from.len = sizeof from.u;
        ssize_t n = recvfrom(fd, rx_buffer, sizeof rx_buffer, MSG_DONTWAIT, &from.u.sa,
                             &from.len);
        if (n < 0)
            break; /* EAGAIN, or an ICMP error queued on the socket: nothing to read */
        if (net->ops.datagram != NULL)
            net->ops.datagram(rx_buffer, (size_t)n, &from, net->ud);
    }
}

static void emit(kraken_sync_net *net, const kraken_sync_addr *to, const uint8_t *data,
                 size_t len)
{
    /* Datagrams are best effort: a full socket buffer or an unreachable peer is a loss,
     * which hellos and digests repair. */
    (void)sendto(net->udp_fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL, &to->u.sa, to->len);
}

/* splitmix64: small, fast and fully determined by the seed. */
static double prng_next(kraken_sync_net *net)
{
    uint64_t z = (net->prng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0; /* [0, 1) */
}

static dgram *dgram_new(const kraken_sync_addr *to, const uint8_t *data, size_t len)
{
    dgram *d = malloc(sizeof *d + len);
    if (d == NULL)
        return NULL;
    d->next = NULL;
    d->due_us = 0;
    d->to = *to;
    d->len = len;
    memcpy(d->data, data, len);
    return d;
}

static void arm_ms(struct event *ev, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(ev, &tv);
}

/* Last stage: maybe hold a datagram back so that the next one overtakes it. Takes @p d. */
static void reorder_stage(kraken_sync_net *net, dgram *d)
{
    if (net->held != NULL) {
        dgram *held = net->held;
        net->held = NULL;
        event_del(net->held_ev);
        emit(net, &d->to, d->data, d->len);
        emit(net, &held->to, held->data, held->len);
        free(held);
        free(d);
        return;
    }
    if (net->faults.reorder > 0 && prng_next(net) < net->faults.reorder) {
        net->held = d;
        arm_ms(net->held_ev, HOLD_FLUSH_MS);
        return;
    }
    emit(net, &d->to, d->data, d->len);
    free(d);
}

static void held_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kraken_sync_net *net = arg;
    dgram *held = net->held;
    net->held = NULL;
    if (held != NULL) {
        emit(net, &held->to, held->data, held->len);
        free(held);
    }
}

static void arm_delay(kraken_sync_net *net)
{
    if (net->delayed == NULL)
        return;
    uint64_t now = now_us();
    uint64_t wait = net->delayed->due_us > now ? net->delayed->due_us - now : 0;
    struct timeval tv = {(time_t)(wait / 1000000), (suseconds_t)(wait % 1000000)};
    event_add(net->delay_ev, &tv);
}

static void delay_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kraken_sync_net *net = arg;
    uint64_t now = now_us();
    while (net->delayed != NULL && net->delayed->due_us <= now) {
        dgram *d = net->delayed;
        net->delayed = d->next;
        if (net->delayed == NULL)
            net->delayed_tail = NULL;
        reorder_stage(net, d);
    }
    arm_delay(net);
}

/* Delay (fixed, plus jitter that lets datagrams overtake each other): the queue is kept
 * sorted by due time; a new datagram usually goes at the end. */
static void delay_stage(kraken_sync_net *net, dgram *d)
{
    if (net->faults.delay_ms == 0 && net->faults.jitter_ms == 0) {
        reorder_stage(net, d);
        return;
    }
    uint64_t extra = (uint64_t)net->faults.delay_ms * 1000u;
    if (net->faults.jitter_ms > 0)
        extra += (uint64_t)(prng_next(net) * (double)net->faults.jitter_ms * 1000.0);
    d->due_us = now_us() + extra;
    if (net->delayed_tail == NULL || net->delayed_tail->due_us <= d->due_us) {
        if (net->delayed_tail != NULL)
            net->delayed_tail->next = d;
        else
            net->delayed = d;
        net->delayed_tail = d;
    } else {
        dgram **at = &net->delayed;
        while ((*at)->due_us <= d->due_us)
            at = &(*at)->next;
        d->next = *at;
        *at = d;
    }
    event_del(net->delay_ev);
    arm_delay(net);
}

static void keep_last(kraken_sync_net *net, const kraken_sync_addr *to, const uint8_t *data,
                      size_t len)
{
    if (len > net->last_cap) {
        uint8_t *grown = realloc(net->last, len);
        if (grown == NULL) { /* a test hook: no copy this time */
            net->have_last = false;
            return;
        }
        net->last = grown;
        net->last_cap = len;
    }
    if (len > 0)
        memcpy(net->last, data, len);
    net->last_len = len;
    net->last_to = *to;
    net->have_last = true;
}

int kraken__sync_net_send(kraken_sync_net *net, const kraken_sync_addr *to, const uint8_t *data,
                          size_t len)
{
    if (net == NULL || to == NULL || data == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken__sync_net_send: NULL argument");
    if (len > RX_BUFFER_SIZE)
        return kraken__err(KRAKEN_ELIMIT, "datagram of %zu bytes is too large", len);
    if (net->keep_last)
        keep_last(net, to, data, len);
    if (!net->faulty) {
        emit(net, to, data, len);
        return KRAKEN_OK;
    }
    if (net->faults.loss > 0 && prng_next(net) < net->faults.loss)
        return KRAKEN_OK;
    int copies = net->faults.duplicate > 0 && prng_next(net) < net->faults.duplicate ? 2 : 1;
    for (int i = 0; i < copies; i++) {
        dgram *d = dgram_new(to, data, len);
        if (d == NULL)
            return kraken__err(KRAKEN_ENOMEM, "out of memory queueing a datagram");
        delay_stage(net, d);
    }
    return KRAKEN_OK;
}

bool kraken__sync_net_last_sent(const kraken_sync_net *net, const uint8_t **data, size_t *len,
                                kraken_sync_addr *to)
{
    if (net == NULL || !net->have_last)
        return false;
    *data = net->last;
    *len = net->last_len;
    if (to != NULL)
        *to = net->last_to;
    return true;
}

static void drop_queued(kraken_sync_net *net)
{
    while (net->delayed != NULL) {
        dgram *d = net->delayed;
        net->delayed = d->next;
        free(d);
    }
    net->delayed_tail = NULL;
    free(net->held);
    net->held = NULL;
}

void kraken__sync_net_set_faults(kraken_sync_net *net, const kraken_sync_faults *f)
{
    if (net == NULL)
        return;
    if (f == NULL) {
        /* Datagrams already in the shim still go out, as they would have. */
        event_del(net->delay_ev);
        while (net->delayed != NULL) {
            dgram *d = net->delayed;
            net->delayed = d->next;
            emit(net, &d->to, d->data, d->len);
            free(d);
        }
        net->delayed_tail = NULL;
        held_cb(-1, 0, net);
        event_del(net->held_ev);
        net->faulty = false;
        memset(&net->faults, 0, sizeof net->faults);
        return;
    }
    net->keep_last = true;
    bool reseed = !net->faulty || net->faults.seed != f->seed;
    net->faults = *f;
    net->faulty = true;
    if (reseed)
        net->prng = (uint64_t)f->seed * 0x2545f4914f6cdd1dull + 1;
}

/* ---- sockets ------------------------------------------------------------- */

/* A parent receives its children's echoes together: with the default ~208 KiB receive buffer
 * (about 250 small datagrams) most of a 1,000-child burst is dropped and waits a hello period
 * for repair. Ask for more; the FORCE variants pass net.core.[rw]mem_max when we have
 * CAP_NET_ADMIN. Failure only leaves the default. */
static void size_buffers(int fd)
{
    int size = UDP_BUFFER_SIZE;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

static int open_udp(const kraken_sync_addr *addr, int *out)
{
    int fd = socket(addr->u.sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, &addr->u.sa, addr->len) != 0) {
        int saved = errno;
        close(fd);
        return -saved;
    }
    size_buffers(fd);
    *out = fd;
    return 0;
}

static int open_tcp(const kraken_sync_addr *addr, int *out)
{
    int fd = socket(addr->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    /* A restarted instance must get its port back while old connections sit in TIME_WAIT. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, &addr->u.sa, addr->len) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        int saved = errno;
        close(fd);
        return -saved;
    }
    *out = fd;
    return 0;
}

/* Bind TCP then UDP on the same port; with port 0 the kernel's TCP pick must also be free for
 * UDP, so retry a few times when it is not. */
static int bind_pair(kraken_sync_net *net, const kraken_sync_addr *want, int *tcp_fd, int *udp_fd)
{
    char buf[80];
    bool any_port = kraken__sync_addr_port(want) == 0;
    for (int attempt = 0; attempt < BIND_ATTEMPTS; attempt++) {
        kraken_sync_addr addr = *want;
        int t = -1, u = -1;
        int err = open_tcp(&addr, &t);
        if (err < 0)
            return kraken__err(KRAKEN_EIO, "cannot listen on TCP %s: %s",
                               kraken__sync_addr_format(&addr, buf, sizeof buf), strerror(-err));
        kraken_sync_addr got;
        got.len = sizeof got.u;
        if (getsockname(t, &got.u.sa, &got.len) != 0) {
            err = -errno;
            close(t);
            return kraken__err(KRAKEN_EIO, "getsockname: %s", strerror(-err));
        }
        kraken__sync_addr_set_port(&addr, kraken__sync_addr_port(&got));
        err = open_udp(&addr, &u);
        if (err == 0) {
            net->bound = addr;
            *tcp_fd = t;
            *udp_fd = u;
            return KRAKEN_OK;
        }
        close(t);
        if (!(any_port && err == -EADDRINUSE))
            return kraken__err(KRAKEN_EIO, "cannot bind UDP %s: %s",
                               kraken__sync_addr_format(&addr, buf, sizeof buf), strerror(-err));
    }
    return kraken__err(KRAKEN_EIO, "cannot find a port free for both TCP and UDP on %s",
                       kraken__sync_addr_format(want, buf, sizeof buf));
}

int kraken__sync_net_new(kraken_sync_net **out, struct event_base *base,
                         const kraken_sync_addr *bind_addr, const kraken_sync_net_ops *ops,
                         void *ud)
{
    if (out == NULL || base == NULL || bind_addr == NULL || ops == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken__sync_net_new: NULL argument");
    kraken_sync_net *net = calloc(1, sizeof *net);
    if (net == NULL)
        return kraken__err(KRAKEN_ENOMEM, "out of memory");
    net->base = base;
    net->ops = *ops;
    net->ud = ud;
    net->udp_fd = -1;
    net->delay_ev = evtimer_new(base, delay_cb, net);
    net->held_ev = evtimer_new(base, held_cb, net);
    if (net->delay_ev == NULL || net->held_ev == NULL) {
        kraken__sync_net_free(net);
        return kraken__err(KRAKEN_ENOMEM, "out of memory");
    }
    int tcp_fd = -1;
    int rc = bind_pair(net, bind_addr, &tcp_fd, &net->udp_fd);
    if (rc < 0) {
        kraken__sync_net_free(net);
        return rc;
    }
    net->listener = evconnlistener_new(base, accept_cb, net,
                                       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, tcp_fd);
    if (net->listener != NULL)
        evconnlistener_set_error_cb(net->listener, accept_error_cb);
    net->accept_resume_ev = evtimer_new(base, accept_resume_cb, net);
    net->udp_ev = event_new(base, net->udp_fd, EV_READ | EV_PERSIST, udp_read_cb, net);
    if (net->listener == NULL || net->udp_ev == NULL || net->accept_resume_ev == NULL ||
        event_add(net->udp_ev, NULL) != 0) {
        if (net->listener == NULL)
            close(tcp_fd);
        kraken__sync_net_free(net);
        return kraken__err(KRAKEN_EIO, "cannot register sockets with the event loop");
    }
    *out = net;
    return KRAKEN_OK;
}

void kraken__sync_net_free(kraken_sync_net *net)
{
    if (net == NULL)
        return;
    while (net->conns != NULL)
        conn_destroy(net->conns);
    if (net->listener != NULL)
        evconnlistener_free(net->listener);
    if (net->accept_resume_ev != NULL)
        event_free(net->accept_resume_ev);
    if (net->udp_ev != NULL)
        event_free(net->udp_ev);
    if (net->udp_fd >= 0)
        close(net->udp_fd);
    drop_queued(net);
    if (net->delay_ev != NULL)
        event_free(net->delay_ev);
    if (net->held_ev != NULL)
        event_free(net->held_ev);
    free(net->last);
    free(net);
}

uint16_t kraken__sync_net_port(const kraken_sync_net *net)
{
    return net == NULL ? 0 : kraken__sync_addr_port(&net->bound);
}
