/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file kraken/types.h
 * @brief UUIDs and values: the scalar vocabulary shared by every other header.
 *
 * A ::kraken_value is a self-describing copy of one value read from (or to be
 * written to) a node by URL. Values returned by the library are owned by the
 * caller and released with kraken_value_clear(). Scalars live inline; strings,
 * bytes and compound values (records, maps, lists) are heap-owned by the value.
 * Values are plain data: any thread may use its own.
 */
#ifndef KRAKEN_TYPES_H
#define KRAKEN_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A 16-byte UUID. The all-zero UUID means "unknown/none". */
typedef struct kraken_uuid {
    uint8_t bytes[16];
} kraken_uuid;

/** Length of the canonical text form without the terminating NUL. */
#define KRAKEN_UUID_STRLEN 36

/** Parse "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (either case). KRAKEN_EPARSE if malformed. */
int kraken_uuid_parse(kraken_uuid *out, const char *text);
/** Write the canonical lower-case form into buf (KRAKEN_UUID_STRLEN + 1 bytes). Returns buf. */
char *kraken_uuid_format(const kraken_uuid *id, char buf[KRAKEN_UUID_STRLEN + 1]);
/** True when every byte is zero. */
bool kraken_uuid_is_zero(const kraken_uuid *id);
/** memcmp-style ordering. */
int kraken_uuid_compare(const kraken_uuid *a, const kraken_uuid *b);
/** A random (version 4) UUID from the system's random source. */
int kraken_uuid_generate(kraken_uuid *out);

/** Value and field types of the schema system (SPEC 1.2). */
typedef enum kraken_type {
    KRAKEN_T_NONE = 0, /**< no value (unset / not found) */
    KRAKEN_T_BOOL,
    KRAKEN_T_INT32,
    KRAKEN_T_INT64,
    KRAKEN_T_UINT32,
    KRAKEN_T_UINT64,
    KRAKEN_T_STRING,
    KRAKEN_T_BYTES,
    KRAKEN_T_ENUM,
    KRAKEN_T_IPV4,
    KRAKEN_T_MAC,
    KRAKEN_T_UUID,
    KRAKEN_T_RECORD, /**< nested typed record */
    KRAKEN_T_MAP,    /**< map<string, T> */
    KRAKEN_T_LIST    /**< repeated T */
} kraken_type;

/** Name of a type ("uint32", "IPv4 address", ...). Never NULL. */
const char *kraken_type_name(kraken_type type);

struct kraken_enum_type;
struct kraken_tree;

/**
 * One value. Which union member is valid depends on @c type:
 * BOOL -> b; INT32/INT64/ENUM -> i; UINT32/UINT64 -> u; STRING/BYTES -> str
 * (data is NUL-terminated for STRING); IPV4 -> ipv4 (network order bytes);
 * MAC -> mac; UUID -> uuid; RECORD/MAP/LIST -> tree (opaque deep copy, see
 * kraken_value_format()). For ENUM, @c enum_type names the enum (may be NULL
 * for a bare number not yet bound to a field).
 */
typedef struct kraken_value {
    kraken_type type;
    const struct kraken_enum_type *enum_type;
    union {
        bool b;
        int64_t i;
        uint64_t u;
        struct {
            char *data;
            size_t len;
        } str;
        uint8_t ipv4[4];
        uint8_t mac[6];
        kraken_uuid uuid;
        struct kraken_tree *tree;
    } v;
} kraken_value;

/** A value of type NONE; use to initialise: kraken_value v = KRAKEN_VALUE_INIT; */
#define KRAKEN_VALUE_INIT {KRAKEN_T_NONE, NULL, {0}}

/** Release what the value owns and reset it to NONE. NULL-safe. */
void kraken_value_clear(kraken_value *value);
/** Deep copy. @p out is overwritten (not cleared first). */
int kraken_value_copy(kraken_value *out, const kraken_value *src);
/** Type and content equality (enum members compare by number). */
bool kraken_value_equal(const kraken_value *a, const kraken_value *b);
/** True for the zero value of its type ("unknown" in Kraken terms), and for NONE. */
bool kraken_value_is_zero(const kraken_value *value);

/* Convenience constructors (they never fail; strings are copied, so free with kraken_value_clear). */
kraken_value kraken_value_bool(bool b);
kraken_value kraken_value_int(kraken_type type, int64_t i);
kraken_value kraken_value_uint(kraken_type type, uint64_t u);
/** A STRING value holding a copy of @p s; type NONE if @p s is NULL or memory ran out. */
kraken_value kraken_value_string(const char *s);
kraken_value kraken_value_uuid(const kraken_uuid *id);

/**
 * Text form of a value as used in JSON and in REST/websocket "value" fields:
 * enum member names, dotted IPv4, colon MAC, canonical UUID, decimal numbers,
 * "true"/"false", raw strings, base64 bytes, JSON text for compound values.
 * The string is malloc'ed; release it with free().
 */
int kraken_value_format(const kraken_value *value, char **out);

/** Members of an enum type, for listing enumerables. */
const char *kraken_enum_type_name(const struct kraken_enum_type *type);
size_t kraken_enum_type_count(const struct kraken_enum_type *type);
/** i-th member (0-based, registration order). */
int kraken_enum_type_member(const struct kraken_enum_type *type, size_t i, const char **name,
                            int32_t *number);
/** Member name for a number, or NULL. */
const char *kraken_enum_type_lookup(const struct kraken_enum_type *type, int32_t number);

#ifdef __cplusplus
}
#endif
#endif
