/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file websocket.h
 * @brief The websocket event stream of kraken-daemon (SPEC 9.3).
 *
 * An in-process module "websocket" (kd_websocket_module, written on
 * kraken/module.h) run as a service instance of the engine's self node,
 * "websocket" in kraken-daemon. Its Cfg config (type WebSocket.Config, SPEC Appendix A) says which
 * port to listen on and the keep-alive durations; the address comes from the
 * daemon. Clients connect to ws://ADDR:PORT/ws and send
 * `{"command": 0|1|"SUBSCRIBE"|"UNSUBSCRIBE", "type": "STATE_CHANGE"|
 * "STATE_MUTATION"|"DISCOVERY"|"ALL"}`; the server sends one text message per
 * event: `{"type": 1|2|5, "url", "data", "nodeid", "value"}` as the original.
 *
 * Everything runs on the caller's event loop and nothing blocks it: every
 * client has a bounded output queue and a client that does not keep up is sent
 * a close frame (1008, "slow consumer: ...") and dropped, with a log line
 * through the engine's log callback (kraken_engine_set_log()).
 */
#ifndef KD_WEBSOCKET_H
#define KD_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kraken/kraken.h>

struct event_base;

typedef struct kd_websocket kd_websocket;

/** The module: name "websocket", config schema WebSocket.Config, start/stop/config_changed. */
extern const kraken_module_desc kd_websocket_module;
/** The service id of kraken-daemon's instance (the one -wsport and /ws are about). */
#define KD_WEBSOCKET_SERVICE_ID "websocket"

/** Default port, as the original. */
#define KD_WEBSOCKET_DEFAULT_PORT 3142
/** Default bound of a client's output queue, in bytes (see kd_websocket_set_queue_limit()). */
#define KD_WEBSOCKET_DEFAULT_QUEUE_BYTES (8u << 20)

/**
 * Run the module as service "websocket" on @p engine's self node
 * (kraken_module_new()) and, unless its
 * Cfg state is STOP, listen on @p bind_addr (IPv4 or IPv6 literal; NULL means
 * 127.0.0.1) at the port of its Cfg config. When the self node has no config
 * for the service yet, the original's defaults are written to Cfg (port 3142,
 * writeWait "10s", pongWait "1m0s", pingPeriod "54s", maxMessageSize 512) and
 * its Cfg state is set to RUN. A config whose port is 0 listens on a port the
 * system picks (tests); kd_websocket_port() tells which. A later Cfg change
 * of the config re-listens; Cfg state STOP closes the listener and every
 * client. Fails (nothing registered) when the address is invalid or the port
 * cannot be bound; kraken_error_last() says why.
 */
int kd_websocket_new(kd_websocket **out, kraken_engine *engine, struct event_base *base,
                     const char *bind_addr);
/**
 * kd_websocket_new() for service instance @p service_id (config and state under
 * /Services/<service_id>), run with kraken_module_new(): another instance of the module.
 * Without @p listen_now the listener is opened by the module's start handler, and a port
 * that cannot be bound leaves the service ERROR instead of failing this call.
 */
int kd_websocket_new_instance(kd_websocket **out, kraken_engine *engine, struct event_base *base,
                              const char *bind_addr, const char *service_id, bool listen_now);

/**
 * Register the WebSocket.Config schema (SPEC Appendix A), the module's
 * schemas_json. kraken_module_new() does this too; call it earlier when Cfg
 * is loaded before the module starts (a state file may hold the self node's
 * websocket config). Idempotent.
 */
int kd_websocket_register_schema(void);

/**
 * Before kd_websocket_new(): set the port of the self node's websocket config to @p port
 * (0: one the system picks, for tests) and give its other unset fields their defaults, so
 * that the config exists (a config whose fields are all zero counts as unset and gets the
 * defaults, port 3142 included). The schema must be registered (kd_websocket_register_schema).
 */
int kd_websocket_preset_port(kraken_engine *engine, int port);

/**
 * Close every client and the listener and free the module instance, which
 * removes the service from the self node (Cfg and Dsc: save state before).
 * Either order with the engine's free works: when the engine goes first, the
 * module's detach hook stops listening and lets its clients go (close 1001)
 * at once, and this call only releases what is left. NULL-safe.
 */
void kd_websocket_free(kd_websocket *ws);

/** The port listened on, or 0 when not listening. */
uint16_t kd_websocket_port(const kd_websocket *ws);

/**
 * Require a bearer token on the upgrade request: "Authorization: Bearer
 * <token>", or "?token=<token>" in the URL (browsers cannot set headers on a
 * websocket). Without it the answer is 401 with a JSON reason. NULL or ""
 * lets everyone in (the original's behaviour; the stream only reads). Applies
 * to new connections.
 */
int kd_websocket_set_token(kd_websocket *ws, const char *token);

/**
 * Bound of each client's output queue in bytes (default
 * KD_WEBSOCKET_DEFAULT_QUEUE_BYTES). A client whose queue would exceed it is
 * dropped. For tests and tuning.
 */
void kd_websocket_set_queue_limit(kd_websocket *ws, size_t bytes);

/** Counters, for /metrics and tests. */
typedef struct kd_websocket_stats {
    uint64_t clients;          /**< clients connected now (handshake done) */
    uint64_t accepted;         /**< handshakes completed since start */
    uint64_t rejected;         /**< connections refused (bad handshake) */
    uint64_t events_sent;      /**< event messages queued to clients */
    uint64_t dropped_slow;     /**< clients dropped for not keeping up */
    uint64_t closed_bad_input; /**< clients closed for a malformed message or frame */
    uint64_t bus_dropped;      /**< events the bus dropped before this module saw them */
} kd_websocket_stats;

/** Fill @p out with the current counters. */
void kd_websocket_get_stats(const kd_websocket *ws, kd_websocket_stats *out);

#endif
