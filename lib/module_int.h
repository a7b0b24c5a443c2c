/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * module_int.h: what module.c (in-process instances, libraries),
 * module_client.c (connected instances), module_server.c and module_wire.c
 * share. Not installed.
 */
#ifndef KRAKEN_MODULE_INT_H
#define KRAKEN_MODULE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log_private.h"
#include "planner_private.h" /* kraken__mutation_decls_* (descriptor mutation arrays) */
#include "sync_private.h" /* kraken__engine_attach (declared with the sync internals) */
#include "kraken/module.h"

/* How an instance carries out the calls a module makes (in-process, or over the socket). */
typedef struct module_backend {
    const char *what; /* "in-process", "connected" */
    /* value_text or value_name; request_id 0: a plain discovery */
    int (*discover)(kraken_module *m, const kraken_uuid *node, const char *url,
                    const char *value_text, const char *value_name, uint64_t request_id);
    int (*fail)(kraken_module *m, const kraken_uuid *node, uint64_t request_id,
                const char *reason);
    int (*set_state)(kraken_module *m, kraken_service_state state, const char *error_msg);
    int (*query)(kraken_module *m, kraken_state_kind kind, const kraken_uuid *node,
                 kraken_node **out);
    int (*update_cfg)(kraken_module *m, const kraken_uuid *node, const char *url,
                      const char *value_text);
    void (*log)(kraken_module *m, int level, const char *line);
    bool (*connected)(const kraken_module *m);
    void (*release)(kraken_module *m); /* the backend's part of kraken_module_free() */
} module_backend;

struct kraken_module {
    const kraken_module_desc *desc;
    char *service_id;
    void *userdata;
    void (*destroy)(void *userdata);
    const module_backend *be;
    /* in-process */
    kraken_service *service;
    kraken_subscription *events;
    void (*detached)(kraken_module *m, void *userdata); /* kraken_module_set_detach_hook() */
    bool releasing; /* inside kraken_module_free(): the service's removal is not a detach */
    /* connected (module_client.c) */
    struct module_client *client;
};

/* Check a descriptor before any use: abi version, name, handlers. @p where prefixes errors. */
KRAKEN_PRIVATE int kraken__module_desc_check(const kraken_module_desc *desc, const char *where);
/* Allocate an instance with the common fields set. */
KRAKEN_PRIVATE kraken_module *kraken__module_alloc(const kraken_module_desc *desc,
                                                   const char *service_id,
                                                   const module_backend *be, void *userdata,
                                                   void (*destroy)(void *userdata));
/* Parse a config text (JSON of the config record, "" for none) for @p service_id into @p out. */
KRAKEN_PRIVATE void kraken__module_parse_config(const char *service_id, const char *text,
                                                kraken_value *out);

/* A connected module freed from one of its handlers is freed when the handler returns. */
KRAKEN_PRIVATE bool kraken__module_client_defer_free(kraken_module *m);

/* ---- wire (module_wire.c) ----------------------------------------------------------------- */

#include "module.pb.h"

/* Encode @p frame with its 4-byte big-endian length prefix into *out (malloc'ed). */
KRAKEN_PRIVATE int kraken__module_frame_encode(const kraken_module_Frame *frame, uint8_t **out,
                                               size_t *len);
/*
 * Decode one frame body (without the length prefix). On success the caller
 * releases it with kraken__module_frame_release(). Refuses (KRAKEN_EPROTO,
 * message naming the offset and cause) truncated or malformed input, unknown
 * messages, strings with NUL bytes or invalid UTF-8.
 */
KRAKEN_PRIVATE int kraken__module_frame_decode(const uint8_t *data, size_t len,
                                               kraken_module_Frame *out);
KRAKEN_PRIVATE void kraken__module_frame_release(kraken_module_Frame *frame);
/* Name of a frame's message ("Register", ...), for messages. */
KRAKEN_PRIVATE const char *kraken__module_frame_name(pb_size_t which);
/*
 * Length prefix of the frame starting at @p data (@p avail bytes): 0 and *len
 * when complete, 1 when more bytes are needed, KRAKEN_ELIMIT when the frame
 * exceeds @p max_frame.
 */
KRAKEN_PRIVATE int kraken__module_frame_peek(const uint8_t *data, size_t avail, uint32_t max_frame,
                                             uint32_t *len);

/*
 * Write what @p fd takes now from @p out with sendmsg(MSG_NOSIGNAL): a peer
 * that went away must not raise SIGPIPE in the caller's process (libevent's
 * writers use writev). 0 (drained, or the rest must wait for writability) or
 * a negative errno.
 */
struct evbuffer;
KRAKEN_PRIVATE int kraken__module_send_some(int fd, struct evbuffer *out);

/* Descriptor <-> Register message (both directions own nothing of the other). */
KRAKEN_PRIVATE int kraken__module_register_from_desc(const kraken_module_desc *desc,
                                                     const char *service_id,
                                                     kraken_module_Frame *out);
KRAKEN_PRIVATE void kraken__module_register_free(kraken_module_Frame *frame);

#endif
