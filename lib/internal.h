/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Private definitions shared by lib/ sources. Not installed.
 *
 * Storage model: a record is a schema pointer plus one 8-byte slot per schema
 * field (dense, indexed by field position). The slot's meaning comes from the
 * field's type, so a stored value costs 8 bytes plus whatever it points to.
 * A zero slot (0, NULL) is the zero value: "unknown/unset".
 * A node is a record of the built-in schema kraken.Node.
 */
#ifndef KRAKEN_INTERNAL_H
#define KRAKEN_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kraken/kraken.h"

#define KRAKEN_PRIVATE __attribute__((visibility("hidden")))

/* ---- errors (error.c) ---------------------------------------------------- */

/* Set this thread's last-error message and return @p code (always negative). */
KRAKEN_PRIVATE int kraken__err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepend "prefix: " to the current message, keep the code; returns @p code. */
KRAKEN_PRIVATE int kraken__err_prefix(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- owner threads (util.c) ------------------------------------------------ */

/*
 * A store, bus, engine and sync belong to the thread that created them (their
 * loop's thread). Public entry points call kraken__owner_check() first: a call
 * from another thread fails with KRAKEN_ETHREAD instead of racing the owner.
 */
typedef struct kraken__owner {
    pthread_t thread;
    long tid; /* for the message */
} kraken__owner;

KRAKEN_PRIVATE void kraken__owner_init(kraken__owner *owner);
KRAKEN_PRIVATE int kraken__owner_refuse(const kraken__owner *owner, const char *op,
                                        const char *what);
/* 0 on the owner thread; else KRAKEN_ETHREAD "op: called from thread T, but the <what> belongs to thread O". */
static inline int kraken__owner_check(const kraken__owner *owner, const char *op, const char *what)
{
    if (__builtin_expect(pthread_equal(owner->thread, pthread_self()) != 0, 1))
        return 0;
    return kraken__owner_refuse(owner, op, what);
}

/* ---- schemas (schema.c) -------------------------------------------------- */

struct kraken_record;
struct kraken_map;
struct kraken_list;
struct kraken_blob;

typedef union kraken_slot {
    bool b;
    int64_t i;             /* INT32, INT64, ENUM */
    uint64_t u;            /* UINT32, UINT64 */
    uint32_t ipv4;         /* IPV4: network-order bytes as stored by memcpy */
    uint64_t mac;          /* MAC: 6 bytes in the low-address bytes, memcpy */
    char *s;               /* STRING: NUL-terminated, NULL = "" */
    struct kraken_blob *bytes;  /* BYTES: NULL = empty */
    kraken_uuid *uuid;     /* UUID: NULL = zero uuid */
    struct kraken_record *rec;  /* RECORD: NULL = absent */
    struct kraken_map *map;     /* MAP: NULL = empty */
    struct kraken_list *list;   /* LIST: NULL = empty */
} kraken_slot;

struct kraken_blob {
    size_t len;
    uint8_t data[];
};

/* How a LIST of records is addressed in URLs. */
typedef enum kraken_list_key {
    KRAKEN_KEY_INDEX = 0,   /* by 0-based index */
    KRAKEN_KEY_FIELD = 1,   /* by a string field of the element (services by "id") */
    KRAKEN_KEY_TYPE = 2     /* polymorphic elements, by schema type URL (extensions) */
} kraken_list_key;

typedef struct kraken_field {
    char *name;      /* snake_case: "phys_state" */
    char *json_name; /* lowerCamel: "physState" */
    char *url_name;  /* UpperCamel: "PhysState" */
    uint32_t number;
    kraken_type type;
    kraken_type elem_type;                  /* MAP value / LIST element */
    const struct kraken_schema *record;     /* RECORD or elements RECORD; NULL = any (polymorphic) */
    const struct kraken_enum_type *enm;     /* ENUM or elements ENUM */
    kraken_list_key list_key;
    size_t key_field;                       /* KRAKEN_KEY_FIELD: index of the key field in record */
} kraken_field;

struct kraken_schema {
    char *name;      /* "IPv4.IPv4OverEthernet" */
    char *type_url;  /* "type.googleapis.com/IPv4.IPv4OverEthernet" */
    size_t n_fields;
    kraken_field *fields;
};

struct kraken_enum_type {
    char *name;
    size_t n;
    kraken_enum_member *members; /* names owned */
};

/* Built-in schemas, valid after kraken__schemas_init() (called lazily by every entry point). */
KRAKEN_PRIVATE void kraken__schemas_init(void);
KRAKEN_PRIVATE const struct kraken_schema *kraken__node_schema(void);
KRAKEN_PRIVATE const struct kraken_schema *kraken__service_schema(void);

/* Field indexes of kraken.Node and kraken.ServiceInstance (their declaration order). */
enum {
    KRAKEN_NODE_F_ID = 0,
    KRAKEN_NODE_F_NODENAME,
    KRAKEN_NODE_F_RUN_STATE,
    KRAKEN_NODE_F_PHYS_STATE,
    KRAKEN_NODE_F_ARCH,
    KRAKEN_NODE_F_PLATFORM,
    KRAKEN_NODE_F_PARENT_ID,
    KRAKEN_NODE_F_BUSY,       /* enum FreeBusy (SPEC 1.1 field 8) */
    KRAKEN_NODE_F_SERVICES,   /* LIST of kraken.ServiceInstance, KEY_FIELD "id" */
    KRAKEN_NODE_F_EXTENSIONS, /* LIST of any record, KEY_TYPE */
    KRAKEN_NODE_N_FIELDS
};
enum {
    KRAKEN_SVC_F_ID = 0,
    KRAKEN_SVC_F_MODULE,
    KRAKEN_SVC_F_STATE,
    KRAKEN_SVC_F_CONFIG,      /* RECORD, any schema (record == NULL) */
    KRAKEN_SVC_F_ERROR_MSG,
    KRAKEN_SVC_N_FIELDS
};

/* Field lookup by URL/JSON component: UpperCamel, lowerCamel or snake_case, case-insensitive. */
KRAKEN_PRIVATE const kraken_field *kraken__schema_field(const struct kraken_schema *s,
                                                        const char *name, size_t len);
/* Field lookup by protobuf number. */
KRAKEN_PRIVATE const kraken_field *kraken__schema_field_by_number(const struct kraken_schema *s,
                                                                  uint32_t number);
/* Enum member by name (case-sensitive, as the original) or NULL. */
KRAKEN_PRIVATE const kraken_enum_member *kraken__enum_by_name(const struct kraken_enum_type *e,
                                                             const char *name, size_t len);

/* ---- records (record.c) -------------------------------------------------- */

typedef struct kraken_record {
    const struct kraken_schema *schema;
    kraken_slot slots[];
} kraken_record;

/* Map entries are kept sorted by key (strcmp), which makes encoding deterministic. */
typedef struct kraken_map_entry {
    char *key;
    kraken_slot value;
} kraken_map_entry;

/* Maps and lists are ONE allocation each (header + flexible array), grown with realloc, so
 * growing moves them: only kraken__map_insert / kraken__list_insert grow them, through the
 * owner's pointer. The 8-byte header keeps a one-entry map (24 B) and a two-item list (24 B)
 * in malloc's smallest chunk. Counts are capped at KRAKEN_CONTAINER_MAX (insert fails). */
#define KRAKEN_CONTAINER_MAX UINT32_MAX
typedef struct kraken_map {
    uint32_t n, cap;
    kraken_map_entry entries[];
} kraken_map;

/* Lists of KEY_FIELD/KEY_TYPE records are kept sorted by key, others in order. */
typedef struct kraken_list {
    uint32_t n, cap;
    kraken_slot items[];
} kraken_list;

/* kraken_node is a kraken_record of schema kraken.Node. */
struct kraken_node {
    kraken_record rec;
};

KRAKEN_PRIVATE kraken_record *kraken__record_new(const struct kraken_schema *schema);
KRAKEN_PRIVATE void kraken__record_free(kraken_record *rec);
KRAKEN_PRIVATE kraken_record *kraken__record_copy(const kraken_record *rec);
KRAKEN_PRIVATE bool kraken__record_equal(const kraken_record *a, const kraken_record *b);
/* True when every slot is zero (the record carries no information). */
KRAKEN_PRIVATE bool kraken__record_is_empty(const kraken_record *rec);

/* Slot helpers for one field's "element" description (type, elem_type, record, enm). */
KRAKEN_PRIVATE void kraken__slot_free(const kraken_field *f, kraken_type type, kraken_slot *slot);
KRAKEN_PRIVATE int kraken__slot_copy(const kraken_field *f, kraken_type type, kraken_slot *dst,
                                     const kraken_slot *src);
KRAKEN_PRIVATE bool kraken__slot_equal(const kraken_field *f, kraken_type type,
                                       const kraken_slot *a, const kraken_slot *b);
KRAKEN_PRIVATE bool kraken__slot_is_zero(kraken_type type, const kraken_slot *slot);

/* Convert between a stored slot and a public value. */
KRAKEN_PRIVATE int kraken__slot_to_value(const kraken_field *f, kraken_type type,
                                         const kraken_slot *slot, kraken_value *out);
KRAKEN_PRIVATE int kraken__value_to_slot(const kraken_field *f, kraken_type type,
                                         const kraken_value *v, kraken_slot *out,
                                         const char *url_for_errors);

/* Map/list primitives. */
KRAKEN_PRIVATE kraken_map_entry *kraken__map_find(const kraken_map *m, const char *key, size_t len);
KRAKEN_PRIVATE kraken_map_entry *kraken__map_insert(kraken_map **m, const char *key, size_t len);
/* Keyed lists: find the element whose key (service id / schema type url or name) matches. */
KRAKEN_PRIVATE kraken_slot *kraken__list_find_keyed(const kraken_field *f, const kraken_list *l,
                                                   const char *key, size_t len);

/* Fast access for the planner/engine: compiled URLs. */
typedef struct kraken_url kraken_url;
KRAKEN_PRIVATE int kraken__url_compile(const char *url, kraken_url **out);
KRAKEN_PRIVATE void kraken__url_free(kraken_url *url);
KRAKEN_PRIVATE const char *kraken__url_text(const kraken_url *url); /* canonical */
KRAKEN_PRIVATE kraken_type kraken__url_type(const kraken_url *url);
KRAKEN_PRIVATE const struct kraken_enum_type *kraken__url_enum(const kraken_url *url);
/* Borrowed read: the slot at the URL, or NULL when absent (= zero value). No allocation. */
KRAKEN_PRIVATE const kraken_slot *kraken__url_peek(const kraken_url *url, const kraken_node *node);
/* Read/write with a compiled URL (same semantics as kraken_node_get/set). */
KRAKEN_PRIVATE int kraken__url_get(const kraken_url *url, const kraken_node *node, kraken_value *out);
KRAKEN_PRIVATE int kraken__url_set(const kraken_url *url, kraken_node *node, const kraken_value *v);

/* Text <-> value for a field element (shared by URL set_text, JSON and mutation declarations).
 * Scalars are parsed by value.c; RECORD/MAP/LIST text is JSON, parsed by json.c (which
 * implements this dispatcher and kraken_value_format(), so value.c never calls the codec). */
KRAKEN_PRIVATE int kraken__value_parse(const kraken_field *f, kraken_type type, const char *text,
                                       kraken_value *out);
KRAKEN_PRIVATE int kraken__value_parse_scalar(const kraken_field *f, kraken_type type,
                                              const char *text, kraken_value *out);
KRAKEN_PRIVATE int kraken__value_format_scalar(const kraken_value *value, char **out);
/* A compound value holding @p slot (taken with @p take, else deep-copied). */
KRAKEN_PRIVATE int kraken__value_tree_new(const kraken_field *f, kraken_type type,
                                          const kraken_slot *slot, bool take, kraken_value *out);

/* Opaque compound value held by kraken_value.v.tree: a deep copy of a slot. */
struct kraken_tree {
    const kraken_field *field; /* describes the slot (static lifetime) */
    kraken_type type;          /* RECORD, MAP or LIST */
    kraken_slot slot;
};

/* ---- JSON text of compound values (json.c) -------------------------------- */
/* A RECORD/MAP/LIST slot as JSON text (the same form as inside a node's JSON). */
KRAKEN_PRIVATE int kraken__slot_to_json_text(const kraken_field *f, kraken_type type,
                                             const kraken_slot *slot, char **out);
/* Parse JSON text into a RECORD/MAP/LIST slot described by (f, type); @p source names it in errors. */
KRAKEN_PRIVATE int kraken__slot_from_json_text(const kraken_field *f, kraken_type type,
                                               const char *text, size_t len, const char *source,
                                               kraken_slot *out);

/* Bytes a protobuf varint of @p v takes (pbcodec.c). */
KRAKEN_PRIVATE size_t kraken__varint_size(uint64_t v);

/* ---- util (util.c: the bottom layer) --------------------------------------- */
KRAKEN_PRIVATE char *kraken__strndup(const char *s, size_t n);
/* snprintf at buf + *len that never runs past @p size (truncates instead); advances *len. */
KRAKEN_PRIVATE void kraken__appendf(char *buf, size_t size, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* True when @p text[0..len) is valid UTF-8 without NUL bytes (strings are NUL-terminated). */
KRAKEN_PRIVATE bool kraken__utf8_valid(const char *text, size_t len);
/* Length of the valid UTF-8 sequence at @p text (code point in *cp), 0 if invalid. */
KRAKEN_PRIVATE size_t kraken__utf8_seq(const char *text, size_t len, uint32_t *cp);
/* Input text for an error message: single-quoted, escaped so that it stays on one line and
 * prints no control character (\n, \t, \xHH for bytes that are not UTF-8, \uHHHH for C1 and
 * bidi controls), cut with "..." to fit @p size. Returns @p buf. */
#define KRAKEN_QUOTE_SIZE 96
KRAKEN_PRIVATE const char *kraken__quote(char *buf, size_t size, const char *text, size_t len);
/* Read a whole file; error names the path. */
KRAKEN_PRIVATE int kraken__read_file(const char *path, char **out, size_t *len);
/* Atomic replace: temp file "<path>.tmp.XXXXXX" in the same directory, fsync, rename, fsync
 * dir. Opening first removes the stale temporary files of @p path that interrupted saves left
 * (kraken__remove_stale_temps). The writer holds an flock on its temporary file. */
typedef struct kraken__afile {
    const char *path; /* borrowed */
    char *tmp;
    int fd;
} kraken__afile;
KRAKEN_PRIVATE int kraken__afile_open(kraken__afile *af, const char *path);
/* On failure the temporary file is already removed (no abort needed). */
KRAKEN_PRIVATE int kraken__afile_write(kraken__afile *af, const void *data, size_t len);
KRAKEN_PRIVATE int kraken__afile_commit(kraken__afile *af);
/* Close and remove the temporary file; the old file stays. Safe after a failure. */
KRAKEN_PRIVATE void kraken__afile_abort(kraken__afile *af);
KRAKEN_PRIVATE int kraken__write_file_atomic(const char *path, const void *data, size_t len);
/* Remove "<path>.tmp.XXXXXX" regular files of this user that no save holds locked; returns how
 * many. Best effort, never fails. */
KRAKEN_PRIVATE size_t kraken__remove_stale_temps(const char *path);

/* Store internals for the engine: borrowed pointer to the stored node (no copy). */
KRAKEN_PRIVATE const kraken_node *kraken__store_peek(const kraken_store *store,
                                                     kraken_state_kind kind,
                                                     const kraken_uuid *id);


/* ==== core additions (owner: core; value.c, schema.c, schema_builtin.c, record.c) ==== */

/* Registry internals for schema_builtin.c: build (validate + resolve names against the
 * registry) without publishing; allow_any lets RECORD fields/elements with type_name NULL be
 * polymorphic (record == NULL). Publish takes ownership. Only called from the init once-routine. */
KRAKEN_PRIVATE int kraken__schema_build(const char *name, const kraken_field_def *fields,
                                        size_t n_fields, bool allow_any,
                                        struct kraken_schema **out);
KRAKEN_PRIVATE int kraken__schema_publish(struct kraken_schema *schema);
KRAKEN_PRIVATE int kraken__enum_build_publish(const char *name, const kraken_enum_member *members,
                                              size_t n);
/* Registers the built-in enums and schemas (schema_builtin.c). */
KRAKEN_PRIVATE int kraken__builtins_register(void);
/* Strip any "prefix/" of a type URL: "type.googleapis.com/A.B" -> "A.B" (len in *name_len). */
KRAKEN_PRIVATE const char *kraken__type_url_name(const char *key, size_t len, size_t *name_len);

/* Lists. Items of KEY_FIELD/KEY_TYPE lists are RECORD slots kept sorted by key (strcmp).
 * Key of an item: the key field's string ("" if unset) or the record's schema name. */
KRAKEN_PRIVATE const char *kraken__list_item_key(const kraken_field *f, const kraken_slot *item);
/* Sorted position of @p key (a service id, or a schema name / type URL for KEY_TYPE);
 * *found tells whether the item at that position has the key. */
KRAKEN_PRIVATE size_t kraken__list_keyed_pos(const kraken_field *f, const kraken_list *l,
                                             const char *key, size_t len, bool *found);
/* Insert a zero slot at @p pos (0..n), creating the list if *l is NULL. NULL on ENOMEM. */
KRAKEN_PRIVATE kraken_slot *kraken__list_insert(kraken_list **l, size_t pos);
/* Free the item at @p pos (element type f->elem_type) and close the gap. */
KRAKEN_PRIVATE void kraken__list_remove(const kraken_field *f, kraken_list *l, size_t pos);
/* Remove a map entry (value type f->elem_type) if present. */
KRAKEN_PRIVATE void kraken__map_remove(const kraken_field *f, kraken_map *m, const char *key,
                                       size_t len);
/* Deep zero test of a slot with its field (maps/lists whose elements are all zero are zero). */
KRAKEN_PRIVATE bool kraken__slot_is_zero_deep(const kraken_field *f, kraken_type type,
                                              const kraken_slot *slot);
/* kraken__value_parse / kraken__value_to_slot error codes: KRAKEN_EPARSE for malformed text,
 * KRAKEN_ETYPE for a wrong value type, an out-of-range number or an unknown enum member.
 * kraken__value_to_slot accepts a NONE value as the zero value. Stored zero strings and UUIDs
 * are normalised to NULL slots. */
/* ==== end core additions ==== */

/* ==== mutations, planner, graph (owner: planner; mutation.c, planner.c, graph.c) ==== */

/* A URL named by some declaration, interned by canonical text. Interned URLs live as long as
 * the set (pointers stay valid); the counters give its current role. */
typedef struct kraken_murl {
    kraken_url *url;                   /* compiled, owned */
    const char *text;                  /* canonical text (kraken__url_text(url)) */
    kraken_type type;                  /* scalar types only */
    const struct kraken_enum_type *enm;
    size_t n_mutating;                 /* > 0: a mutator URL, planned on Dsc values */
    size_t n_facts;                    /* requires/excludes naming it; static (read from Cfg)
                                        * when n_facts > 0 and n_mutating == 0 */
    size_t model_index;                /* scratch for the planner model build */
    size_t index;                      /* interning order: 0, 1, ...; never changes (the
                                        * engine's per-node change bits are indexed by it) */
} kraken_murl;

typedef struct kraken_mfact {
    kraken_murl *u;
    kraken_value value;
} kraken_mfact;

typedef struct kraken_mchange {
    kraken_murl *u;
    kraken_value from, to;
} kraken_mchange;

/* A compiled declaration (values parsed, URLs interned). Valid until the set changes. */
typedef struct kraken_mutation {
    char *service;
    char *id;
    kraken_mchange *mutates;
    size_t n_mutates;
    kraken_mfact *requires;
    size_t n_requires;
    kraken_mfact *excludes;
    size_t n_excludes;
    kraken_context context;
    uint32_t timeout_ms;
    bool has_fail_to;
    kraken_mfact fail_to;
    uint32_t cost;                     /* >= 1 */
    uint32_t declared_timeout_ms;      /* timeout_ms is this or the override in force */
    bool disabled;                     /* never planned with (an override) */
    kraken_mutate *text;               /* mutates as canonical text, for requests (owned) */
} kraken_mutation;

/* An override of a mutation's settings, kept by (service, id) whether declared or not. */
typedef struct kraken_moverride {
    char *service;
    char *id;
    bool has_disabled, disabled;
    bool has_timeout;
    uint32_t timeout_ms;
} kraken_moverride;

struct kraken_planner;

/* The set. Mutations are kept sorted by (service id, mutation id): that order is the
 * tie-break order of the planner, so a set registered in any order plans the same way. */
struct kraken_mutation_set {
    kraken_mutation **muts;
    size_t n_muts, cap_muts;
    kraken_murl **urls;                /* sorted by canonical text */
    size_t n_urls, cap_urls;
    uint64_t generation;               /* changes whenever the set of mutations changes */
    struct kraken_planner *planner;    /* model + plan cache, rebuilt lazily per generation */
    size_t max_states;                 /* bound on states per search/graph (beyond: ELIMIT);
                                        * KRAKEN_PLANNER_MAX_STATES unless a test lowers it */
    kraken_moverride *overrides;       /* disable/timeout settings by (service, id) */
    size_t n_overrides;
    uint64_t searches;                 /* plan searches run (cache misses), for tests */
};

/* -- for the engine -- */
/* The compiled mutation (service, id) or NULL. */
KRAKEN_PRIVATE const kraken_mutation *kraken__mutation_find(const kraken_mutation_set *set,
                                                            const char *service, const char *id);
/* True when @p dsc shows the `to` value of every URL the mutation mutates (step done). */
KRAKEN_PRIVATE bool kraken__mutation_done(const kraken_mutation *m, const kraken_node *dsc);
/* The interned URL with this canonical text, or NULL: tells whether a changed URL matters for
 * planning (n_mutating > 0: Dsc and Cfg goal; n_facts > 0: Cfg static fact). */
KRAKEN_PRIVATE const kraken_murl *kraken__mutation_set_find_url(const kraken_mutation_set *set,
                                                                const char *canonical);
KRAKEN_PRIVATE uint64_t kraken__mutation_set_generation(const kraken_mutation_set *set);
/* Interned URLs so far (bounds kraken_murl.index). */
KRAKEN_PRIVATE size_t kraken__mutation_set_url_count(const kraken_mutation_set *set);
/* Knowledge rule on a Dsc node: calls @p fn for every mutator URL whose Dsc value is non-zero
 * but must be unknown because its discovery conditions fail (to fixpoint; static facts from
 * @p cfg). The engine records those as zero in Dsc. Stops at and returns fn's negative value. */
KRAKEN_PRIVATE int kraken__mutation_set_stale(kraken_mutation_set *set, const kraken_node *cfg,
                                              const kraken_node *dsc,
                                              int (*fn)(const kraken_murl *u, void *userdata),
                                              void *userdata);
/* Does a stored slot (NULL = absent = zero) of a URL of @p type hold @p value? No allocation. */
KRAKEN_PRIVATE bool kraken__mslot_matches(kraken_type type, const kraken_slot *slot,
                                          const kraken_value *value);

/* -- planner model, shared by planner.c and graph.c -- */
typedef struct kraken_planner kraken_planner;
/* The model of the set's current generation (built on demand; owned by the set). */
KRAKEN_PRIVATE int kraken__planner_get(kraken_mutation_set *set, kraken_planner **out);
KRAKEN_PRIVATE void kraken__planner_free(kraken_planner *p);
/* Planning state width (mutator URLs, sorted by canonical text) and static vector width. */
KRAKEN_PRIVATE size_t kraken__planner_width(const kraken_planner *p);
KRAKEN_PRIVATE size_t kraken__planner_static_width(const kraken_planner *p);
KRAKEN_PRIVATE uint64_t kraken__planner_generation(const kraken_planner *p);
/* Static fact codes from a Cfg node into @p statics (static_width bytes). */
KRAKEN_PRIVATE void kraken__planner_encode_statics(kraken_planner *p, const kraken_node *cfg,
                                                   uint8_t *statics);
/* Apply mutation @p i (set order) to @p state; false when it does not apply. @p statics NULL:
 * every static require holds and no static exclude matches. @p next may not alias @p state. */
KRAKEN_PRIVATE bool kraken__planner_apply(const kraken_planner *p, size_t i, const uint8_t *state,
                                          const uint8_t *statics, uint8_t *next);
/* Short display name of mutator URL @p u ("PhysState", "PXE.Client/State") and of its value
 * code @p code ("POWER_ON"). */
KRAKEN_PRIVATE const char *kraken__planner_url_name(const kraken_planner *p, size_t u);
KRAKEN_PRIVATE const char *kraken__planner_value_name(const kraken_planner *p, size_t u,
                                                      uint8_t code);
/* The planning states a plan passes through (length+1 vectors of width bytes), and the model
 * generation they are coded for. */
KRAKEN_PRIVATE const uint8_t *kraken__plan_state(const kraken_plan *plan, size_t i);
KRAKEN_PRIVATE uint64_t kraken__plan_generation(const kraken_plan *plan);

/* Interned state vectors (fixed width), used by the search and the graph. */
typedef struct kraken_stateset kraken_stateset;
KRAKEN_PRIVATE kraken_stateset *kraken__stateset_new(size_t width);
KRAKEN_PRIVATE void kraken__stateset_free(kraken_stateset *ss);
/* Index of @p vec, adding it if new (*added); KRAKEN_ENOMEM on failure. */
KRAKEN_PRIVATE int kraken__stateset_intern(kraken_stateset *ss, const uint8_t *vec, size_t *index,
                                           bool *added);
/* Index of @p vec or SIZE_MAX. */
KRAKEN_PRIVATE size_t kraken__stateset_find(const kraken_stateset *ss, const uint8_t *vec);
KRAKEN_PRIVATE size_t kraken__stateset_count(const kraken_stateset *ss);
/* Pointer valid until the next intern. */
KRAKEN_PRIVATE const uint8_t *kraken__stateset_vec(const kraken_stateset *ss, size_t index);
/* Default bound on planning states explored by one search or graph (beyond: KRAKEN_ELIMIT). */
#define KRAKEN_PLANNER_MAX_STATES 100000
/* ==== end planner additions ==== */


/* ==== codec additions (owner: codec; json.c, pbcodec.c) ==== */
/* Records nested deeper than this (the node counts as one) are rejected by both decoders
 * and the encoder, so whatever one codec accepts the other does too. Built-in schemas
 * nest ~5 deep; polymorphic fields (service config) could otherwise nest without end. */
#define KRAKEN_CODEC_MAX_DEPTH 64
/* Sort a decoded KEY_FIELD/KEY_TYPE list into its stored order (kraken__list_item_key, strcmp).
 * Returns -1 with *bad_key set when an item has no key ("") or two items share one. */
KRAKEN_PRIVATE int kraken__list_sort_keyed(const kraken_field *f, kraken_list *l,
                                           const char **bad_key);
/* Canonical output drops what equality ignores (core's rule: zero values count as absent):
 * zero map entries, empty keyed-list records, trailing zero elements of index lists. This
 * is the number of leading items an index list keeps (l->n for keyed lists). */
KRAKEN_PRIVATE size_t kraken__list_encoded_count(const kraken_field *f, const kraken_list *l);
/* ==== end codec additions ==== */


/* ==== strict JSON syntax (owner: state; jsonscan.c, used by json.c and schema.c) ==== */
struct cJSON;
/* Containers nested deeper than this are refused. Records nest at most KRAKEN_CODEC_MAX_DEPTH
 * deep and each record level adds at most two JSON levels (a map or list, then the object), so
 * no node the codecs accept comes near it. */
#define KRAKEN_JSON_MAX_NESTING 256
/* cJSON copies at most 63 characters of a number; longer ones are refused up front. */
#define KRAKEN_JSON_MAX_NUMBER 63
/* Member paths in messages ("extensions[0].ifaces.kraken") are cut at this length. */
#define KRAKEN_JSON_PATH_MAX 256

/* One open container, for messages: an object's current member or an array's element. */
typedef struct kraken_jframe {
    const char *key; /* object: raw text of the current member name (NULL before the first) */
    size_t key_len;
    long index; /* array: current element (-1 before the first) */
    bool is_array;
} kraken_jframe;

typedef struct kraken_jscan {
    const char *text;
    size_t len, pos;
    const char *source;
    long node_index; /* node being scanned in a node list, -1 outside one */
    int node_depth;  /* frames below this belong to the node list, not the node */
    int depth;
    kraken_jframe frames[KRAKEN_JSON_MAX_NESTING];
    size_t *nums; /* offsets of the number tokens of the value scanned last, in order */
    size_t n_nums, cap_nums;
} kraken_jscan;

/* Start scanning @p text (@p len bytes, no NUL terminator needed); @p source names it. */
KRAKEN_PRIVATE void kraken__jscan_init(kraken_jscan *s, const char *text, size_t len,
                                       const char *source);
KRAKEN_PRIVATE void kraken__jscan_free(kraken_jscan *s);
/* Skip JSON whitespace. */
KRAKEN_PRIVATE void kraken__jscan_ws(kraken_jscan *s);
/* Check one value at s->pos (after whitespace) and move past it; KRAKEN_EPARSE with byte, line,
 * column, node index and member path on a syntax error. Number offsets go to s->nums. */
KRAKEN_PRIVATE int kraken__jscan_value(kraken_jscan *s);
/* The string at s->pos (its opening quote); @p is_key: a member name (for messages). */
KRAKEN_PRIVATE int kraken__jscan_string(kraken_jscan *s, bool is_key);
/* Enter the object/array at s->pos (consumes '{' or '['); the caller pops s->depth. */
KRAKEN_PRIVATE int kraken__jscan_push(kraken_jscan *s, bool is_array);
/* Only whitespace (or one NUL terminator counted in len) may follow the last value. */
KRAKEN_PRIVATE int kraken__jscan_end(kraken_jscan *s);
/* A syntax error at byte @p at: "source[: node N][: member 'path']: malformed JSON at byte X
 * (line L, column C): <message>". Returns KRAKEN_EPARSE. */
KRAKEN_PRIVATE int kraken__jscan_error(const kraken_jscan *s, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The character at @p at quoted for "found ..." (or "the end of the input"). */
KRAKEN_PRIVATE const char *kraken__jscan_found(const kraken_jscan *s, size_t at, char *buf,
                                               size_t size);
/* "an object", "a string", ... for the checked value starting at @p at. */
KRAKEN_PRIVATE const char *kraken__jscan_kind_at(const kraken_jscan *s, size_t at);
/* cJSON tree of the checked value text[start, end); each number item's valueint is set to the
 * index in s->nums of its token (read numbers with kraken__json_number_len from there). */
KRAKEN_PRIVATE int kraken__jscan_parse_slice(kraken_jscan *s, size_t start, size_t end,
                                             struct cJSON **out);
/* Check the whole text as one JSON value, then parse it (kraken__jscan_parse_slice). */
KRAKEN_PRIVATE int kraken__jscan_parse(kraken_jscan *s, struct cJSON **out);
/* Length of the JSON number token at @p p (at most @p max bytes), 0 if there is none. */
KRAKEN_PRIVATE size_t kraken__json_number_len(const char *p, size_t max);
/* ==== end strict JSON syntax ==== */


/* ==== url/diff additions (owner: url; url.c, diff.c) ==== */
/* Called once per changed leaf by kraken__node_diff_each, in kraken_node_diff() order. @p url is
 * canonical (readable with kraken_node_get on the node that has the value); @p old_value /
 * @p new_value are NONE when the leaf is absent or zero. All three are valid for the call only.
 * A non-zero return stops the walk and is returned. */
typedef int (*kraken__diff_fn)(const char *url, const kraken_value *old_value,
                               const kraken_value *new_value, void *userdata);
/* Walk @p before and @p after (NULL = empty node) in parallel. Allocates only for what differs. */
KRAKEN_PRIVATE int kraken__node_diff_each(const kraken_node *before, const kraken_node *after,
                                          kraken__diff_fn fn, void *userdata);
/* ==== end url/diff additions ==== */

/* Log through the engine's callback (kraken_engine_set_log); a no-op without one. Input text in
 * the message is made one line (control characters become spaces). */
KRAKEN_PRIVATE bool kraken__engine_log_enabled(const kraken_engine *engine, int level);
KRAKEN_PRIVATE void kraken__engine_log(kraken_engine *engine, int level, const char *subsystem,
                                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

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

/* ==== memlayout additions (owner: memlayout; record.c) ==== */
/* An empty list / map with room for @p cap items / entries (one allocation; NULL on ENOMEM or
 * when cap is above KRAKEN_CONTAINER_MAX). For builders that know the final size. */
KRAKEN_PRIVATE kraken_list *kraken__list_new(size_t cap);
KRAKEN_PRIVATE kraken_map *kraken__map_new(size_t cap);
/* ==== end memlayout additions ==== */

#endif
