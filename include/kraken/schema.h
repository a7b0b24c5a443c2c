/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file kraken/schema.h
 * @brief Run-time registry of typed-record schemas and enum types (SPEC 1.2).
 *
 * Schemas describe extensions and service configs. Like protobuf descriptor
 * pools, the registry is process-wide: a schema registered once is visible to
 * every store, engine and codec in the process, is immutable, and lives until
 * the process exits. Registration is thread-safe. Registering the identical
 * definition again is a no-op; a conflicting one is KRAKEN_EEXISTS.
 *
 * Built in (SPEC Appendix A, the original's field numbers): kraken.Node,
 * kraken.ServiceInstance, IPv4.IPv4OverEthernet (with IPv4.Ethernet, IPv4.IPv4,
 * IPv4.IPv4OverEthernet.ConfiguredInterface, IPv4.DNSA), IPv4.DNSCNAME, PXE.Client,
 * Powerman.Control, PowerAPI.Node, VBox.VirtualMachine, and the enums RunState,
 * PhysState, ServiceState, FreeBusy, PXE.Method, PXE.State. Module config types
 * (restapi.Config, PXEModule.Config, ...) are not built in: the module that uses one
 * registers it, or a site loads it from a schema description file.
 */
#ifndef KRAKEN_SCHEMA_H
#define KRAKEN_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kraken_schema kraken_schema;
typedef struct kraken_enum_type kraken_enum_type;

/** Prefix of type URLs: "type.googleapis.com/" + schema name. */
#define KRAKEN_TYPE_URL_PREFIX "type.googleapis.com/"

/** One enum member. Member 0 must exist and means "unknown". */
typedef struct kraken_enum_member {
    const char *name;
    int32_t number;
} kraken_enum_member;

/**
 * Version of ::kraken_field_def this header declares. Version 1: through @c type_name.
 * A later version only appends members.
 */
#define KRAKEN_FIELD_DEF_VERSION 1

/**
 * One field of a schema, as declared by a module. Write tables with
 * KRAKEN_FIELD(), which sets @c version:
 *
 *     static const kraken_field_def fields[] = {
 *         KRAKEN_FIELD("hostname", 1, KRAKEN_T_STRING),
 *         KRAKEN_FIELD("tags", 2, KRAKEN_T_MAP, .elem_type = KRAKEN_T_STRING),
 *         KRAKEN_FIELD("mode", 3, KRAKEN_T_ENUM, .type_name = "X.Mode"),
 *     };
 *
 * @c version says which members the caller's struct has: a newer libkraken
 * reads an older caller's struct (members added later are zero). In the array
 * given to kraken_schema_register() element 0's version gives the size of
 * every element, and every element must carry that same version; version 0 or
 * one newer than the library is refused with KRAKEN_EINVAL, naming the field.
 */
typedef struct kraken_field_def {
    unsigned version;      /**< KRAKEN_FIELD_DEF_VERSION */
    const char *name;      /**< snake_case proto name, e.g. "dns_nameservers" */
    uint32_t number;       /**< protobuf field number, 1..536870911, unique */
    kraken_type type;      /**< field type; MAP and LIST are containers */
    kraken_type elem_type; /**< for MAP (value type) and LIST (element type) */
    const char *type_name; /**< schema name for RECORD (or elements of RECORD),
                                enum type name for ENUM; else NULL */
} kraken_field_def;

/**
 * A ::kraken_field_def initialiser with @c version set: name, number and type,
 * then optional designated members (.elem_type, .type_name). (The type is the
 * first of the variable arguments so that a plain field needs no trailing one.)
 */
#define KRAKEN_FIELD(field_name, field_number, ...)                                                \
    {.version = KRAKEN_FIELD_DEF_VERSION, .name = (field_name), .number = (field_number),          \
     .type = __VA_ARGS__}

/** Register an enum type. @p out (may be NULL) receives the registered type. */
int kraken_enum_register(const char *name, const kraken_enum_member *members, size_t n_members,
                         const kraken_enum_type **out);

/**
 * Register a record schema named @p name (e.g. "IPv4.IPv4OverEthernet").
 * Nested record and enum types must already be registered. Nothing is
 * registered when the definition is invalid (error names the field),
 * including when the elements of @p fields do not all carry the same known
 * version (see ::kraken_field_def).
 */
int kraken_schema_register(const char *name, const kraken_field_def *fields, size_t n_fields,
                           const kraken_schema **out);

/**
 * Load schemas and enums from a JSON description:
 * {"enums": [{"name": "X.Mode", "members": {"UNKNOWN": 0, "FAST": 1}}],
 *  "schemas": [{"name": "X.Cfg", "fields": [{"name": "mode", "number": 1,
 *     "type": "enum", "type_name": "X.Mode"}, {"name": "tags", "number": 2,
 *     "type": "map", "elem_type": "string"}]}]}
 * Types within one file may refer to each other in any order. All or nothing:
 * on error (which names the file, schema and field) nothing is registered.
 */
int kraken_schema_load_file(const char *path);
/** As kraken_schema_load_file() from a buffer; @p source names it in errors. */
int kraken_schema_load_json(const char *json, size_t len, const char *source);

/**
 * Describe every schema and enum type registered beyond the built-in ones (those of modules,
 * of schema files, of kraken_schema_register()) in the format kraken_schema_load_json()
 * reads, so that another process that loads it can decode every node this one can (the
 * daemon serves it as GET /schemas). @p *out: a NUL-terminated string to free().
 */
int kraken_schema_describe_json(char **out);

/** Find a schema by name or by type URL ("type.googleapis.com/NAME"). NULL if unknown. */
const kraken_schema *kraken_schema_find(const char *name_or_type_url);
/** Find an enum type by name. NULL if unknown. */
const kraken_enum_type *kraken_enum_find(const char *name);

const char *kraken_schema_name(const kraken_schema *schema);
/** "type.googleapis.com/NAME". */
const char *kraken_schema_type_url(const kraken_schema *schema);
size_t kraken_schema_field_count(const kraken_schema *schema);
/**
 * i-th field in declaration order; strings stay valid for the process lifetime.
 * Set @c out->version first (KRAKEN_FIELD_DEF_VERSION): the library fills only
 * the members of that version, so an older caller's smaller struct is never
 * overrun; version 0 or an unknown one is refused with KRAKEN_EINVAL.
 */
int kraken_schema_field(const kraken_schema *schema, size_t i, kraken_field_def *out);

/** Number of registered schemas / enum types and access by index (registration order). */
size_t kraken_schema_count(void);
const kraken_schema *kraken_schema_at(size_t i);
size_t kraken_enum_count(void);
const kraken_enum_type *kraken_enum_at(size_t i);

#ifdef __cplusplus
}
#endif
#endif
