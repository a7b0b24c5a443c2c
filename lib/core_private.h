/*
 * core_private.h: the storage layout and its helpers (schema.c, schema_builtin.c, record.c,
 * value.c). Not installed.
 *
 * Storage model: a record is a schema pointer plus one 8-byte slot per schema
 * field (dense, indexed by field position). The slot's meaning comes from the
 * field's type, so a stored value costs 8 bytes plus whatever it points to.
 * A zero slot (0, NULL) is the zero value: "unknown/unset".
 * A node is a record of the built-in schema kraken.Node.
 */
#ifndef KRAKEN_CORE_PRIVATE_H
#define KRAKEN_CORE_PRIVATE_H

#include "util_private.h"

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

/* ==== memlayout additions (owner: memlayout; record.c) ==== */
/* An empty list / map with room for @p cap items / entries (one allocation; NULL on ENOMEM or
 * when cap is above KRAKEN_CONTAINER_MAX). For builders that know the final size. */
KRAKEN_PRIVATE kraken_list *kraken__list_new(size_t cap);
KRAKEN_PRIVATE kraken_map *kraken__map_new(size_t cap);
/* ==== end memlayout additions ==== */

#endif
