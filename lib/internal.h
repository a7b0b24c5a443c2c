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

typedef struct kraken_map {
    size_t n, cap;
    kraken_map_entry *entries;
} kraken_map;

/* Lists of KEY_FIELD/KEY_TYPE records are kept sorted by key, others in order. */
typedef struct kraken_list {
    size_t n, cap;
    kraken_slot *items;
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

/* Text <-> value for a field element (shared by URL set_text, JSON and mutation declarations). */
KRAKEN_PRIVATE int kraken__value_parse(const kraken_field *f, kraken_type type, const char *text,
                                       kraken_value *out);

/* Opaque compound value held by kraken_value.v.tree: a deep copy of a slot. */
struct kraken_tree {
    const kraken_field *field; /* describes the slot (static lifetime) */
    kraken_type type;          /* RECORD, MAP or LIST */
    kraken_slot slot;
};

/* ---- JSON bridge (json.c), used by value.c for compound values ---------- */
/* A RECORD/MAP/LIST slot as JSON text (the same form as inside a node's JSON). */
KRAKEN_PRIVATE int kraken__slot_to_json_text(const kraken_field *f, kraken_type type,
                                             const kraken_slot *slot, char **out);
/* Parse JSON text into a RECORD/MAP/LIST slot described by (f, type); @p source names it in errors. */
KRAKEN_PRIVATE int kraken__slot_from_json_text(const kraken_field *f, kraken_type type,
                                               const char *text, size_t len, const char *source,
                                               kraken_slot *out);

/* ---- util ---------------------------------------------------------------- */
KRAKEN_PRIVATE char *kraken__strndup(const char *s, size_t n);
/* Read a whole file; error names the path. */
KRAKEN_PRIVATE int kraken__read_file(const char *path, char **out, size_t *len);
/* Atomic replace: temp file in the same directory, fsync, rename, fsync dir. */
KRAKEN_PRIVATE int kraken__write_file_atomic(const char *path, const void *data, size_t len);

/* Store internals for the engine: borrowed pointer to the stored node (no copy). */
KRAKEN_PRIVATE const kraken_node *kraken__store_peek(const kraken_store *store,
                                                     kraken_state_kind kind,
                                                     const kraken_uuid *id);

#endif
