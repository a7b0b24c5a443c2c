/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Process-wide registry of record schemas and enum types (SPEC 1.2).
 *
 * The registry is append-only: a published schema is immutable and lives until the process
 * exits (a destructor frees everything so leak checkers stay quiet). Writers and readers take
 * one mutex; lookups are short linear scans over a few dozen entries.
 *
 * Registration builds the new type aside, validates it completely, and only then publishes it,
 * so a bad definition registers nothing. Schema description files (JSON) are loaded the same
 * way, with the registry locked for the whole file so that it is all or nothing.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "core_private.h"
#include "jsonscan_private.h"

#define MAX_FIELD_NUMBER 536870911u
#define RESERVED_LO 19000u /* protobuf's reserved implementation range */
#define RESERVED_HI 19999u

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static struct kraken_schema **reg_schemas;
static size_t reg_n_schemas, reg_cap_schemas;
static struct kraken_enum_type **reg_enums;
static size_t reg_n_enums, reg_cap_enums;

static const struct kraken_schema *node_schema;
static const struct kraken_schema *service_schema;
/* How many of the registered schemas and enums are the built-in ones (registered first). */
static size_t n_builtin_schemas, n_builtin_enums;

/* ---- freeing ------------------------------------------------------------- */

static void schema_free(struct kraken_schema *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_fields; i++) {
        free(s->fields[i].name);
        free(s->fields[i].json_name);
        free(s->fields[i].url_name);
    }
    free(s->fields);
    free(s->name);
    free(s->type_url);
    free(s);
}

static void enum_free(struct kraken_enum_type *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        free((char *)e->members[i].name);
    free(e->members);
    free(e->name);
    free(e);
}

__attribute__((destructor)) static void registry_destroy(void)
{
    for (size_t i = 0; i < reg_n_schemas; i++)
        schema_free(reg_schemas[i]);
    for (size_t i = 0; i < reg_n_enums; i++)
        enum_free(reg_enums[i]);
    free(reg_schemas);
    free(reg_enums);
    reg_schemas = NULL;
    reg_enums = NULL;
    reg_n_schemas = reg_cap_schemas = reg_n_enums = reg_cap_enums = 0;
}

/* ---- lookups (lock held) ------------------------------------------------- */

static bool span_eq(const char *a, const char *b, size_t blen)
{
    return strncmp(a, b, blen) == 0 && a[blen] == '\0';
}

static struct kraken_schema *find_schema_locked(const char *name, size_t len)
{
    for (size_t i = 0; i < reg_n_schemas; i++)
        if (span_eq(reg_schemas[i]->name, name, len))
            return reg_schemas[i];
    return NULL;
}

static struct kraken_enum_type *find_enum_locked(const char *name, size_t len)
{
    for (size_t i = 0; i < reg_n_enums; i++)
        if (span_eq(reg_enums[i]->name, name, len))
            return reg_enums[i];
    return NULL;
}

/* ---- name rules ------------------------------------------------------------ */

/* Type names: dotted identifiers, "IPv4.IPv4OverEthernet.ConfiguredInterface". */
static bool valid_type_name(const char *name)
{
    if (!name || !*name)
        return false;
    bool start = true;
    for (const char *p = name; *p; p++) {
        if (*p == '.') {
            if (start)
                return false;
            start = true;
            continue;
        }
        if (!(isalpha((unsigned char)*p) || *p == '_' || (!start && isdigit((unsigned char)*p))))
            return false;
        start = false;
    }
    return !start;
}

static bool valid_identifier(const char *name)
{
    if (!name || !*name || isdigit((unsigned char)*name))
        return false;
    for (const char *p = name; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_'))
            return false;
    return true;
}

/* "dns_nameservers" -> "dnsNameservers" (upper = false) or "DnsNameservers" (upper = true). */
static char *camel_name(const char *snake, bool upper)
{
    char *out = malloc(strlen(snake) + 1);
    if (!out)
        return NULL;
    char *o = out;
    bool cap = upper;
    for (const char *p = snake; *p; p++) {
        if (*p == '_') {
            cap = o != out || upper;
            continue;
        }
        *o++ = cap ? (char)toupper((unsigned char)*p) : *p;
        cap = false;
    }
    *o = '\0';
    return out;
}

/* Two field names clash when they match the same URL/JSON component (case and '_' ignored). */
static bool names_clash(const char *a, const char *b)
{
    for (;;) {
        while (*a == '_')
            a++;
        while (*b == '_')
            b++;
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
            return false;
        if (!*a)
            return true;
        a++;
        b++;
    }
}

const char *kraken__type_url_name(const char *key, size_t len, size_t *name_len)
{
    const char *slash = memrchr(key, '/', len);
    const char *name = slash ? slash + 1 : key;
    *name_len = len - (size_t)(name - key);
    return name;
}

/* Names are checked before they are printed raw; one that fails a check, or any text from a
 * description file, is quoted (kraken__quote): a message stays on one line whatever the input. */
#define QUOTED(buf, text) kraken__quote(buf, sizeof(buf), (text) ? (text) : "(null)", \
                                        (text) ? strlen(text) : 6)

/* ---- enum building ------------------------------------------------------- */

static int enum_build(const char *name, const kraken_enum_member *members, size_t n,
                      struct kraken_enum_type **out)
{
    char q[KRAKEN_QUOTE_SIZE];
    if (!valid_type_name(name))
        return kraken__err(KRAKEN_EINVAL, "enum %s: invalid type name", QUOTED(q, name));
    if (n == 0 || !members)
        return kraken__err(KRAKEN_EINVAL, "enum '%s': no members", name);
    bool has_zero = false;
    for (size_t i = 0; i < n; i++) {
        const kraken_enum_member *m = &members[i];
        if (!valid_identifier(m->name))
            return kraken__err(KRAKEN_EINVAL, "enum '%s': member %zu: invalid name %s", name, i,
                               QUOTED(q, m->name));
        for (size_t j = 0; j < i; j++) {
            if (strcmp(members[j].name, m->name) == 0)
                return kraken__err(KRAKEN_EINVAL, "enum '%s': duplicate member name '%s'", name,
                                   m->name);
            if (members[j].number == m->number)
                return kraken__err(KRAKEN_EINVAL,
                                   "enum '%s': members '%s' and '%s' share number %d", name,
                                   members[j].name, m->name, (int)m->number);
        }
        has_zero |= m->number == 0;
    }
    if (!has_zero)
        return kraken__err(KRAKEN_EINVAL, "enum '%s': no member with number 0 (unknown)", name);

    struct kraken_enum_type *e = calloc(1, sizeof(*e));
    if (!e)
        goto nomem;
    e->name = strdup(name);
    e->members = calloc(n, sizeof(*e->members));
    if (!e->name || !e->members)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        e->members[i].number = members[i].number;
        e->members[i].name = strdup(members[i].name);
        e->n = i + 1; /* so a partial build frees what it holds */
        if (!e->members[i].name)
            goto nomem;
    }
    *out = e;
    return 0;
nomem:
    enum_free(e);
    return kraken__err(KRAKEN_ENOMEM, "enum '%s': out of memory", name);
}

static bool enum_identical(const struct kraken_enum_type *a, const struct kraken_enum_type *b)
{
    if (strcmp(a->name, b->name) != 0 || a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (a->members[i].number != b->members[i].number ||
            strcmp(a->members[i].name, b->members[i].name) != 0)
            return false;
    return true;
}

/* ---- schema building ----------------------------------------------------- */

/* Types a schema being built may refer to: the registry plus (while loading a file) the
 * types of that file built so far. */
typedef struct pending {
    struct kraken_schema **schemas; /* resolved: new or already registered */
    size_t n_schemas;
    struct kraken_enum_type **enums;
    size_t n_enums;
} pending;

static const struct kraken_schema *resolve_schema(const pending *p, const char *name)
{
    for (size_t i = 0; p && i < p->n_schemas; i++)
        if (strcmp(p->schemas[i]->name, name) == 0)
            return p->schemas[i];
    return find_schema_locked(name, strlen(name));
}

static const struct kraken_enum_type *resolve_enum(const pending *p, const char *name)
{
    for (size_t i = 0; p && i < p->n_enums; i++)
        if (strcmp(p->enums[i]->name, name) == 0)
            return p->enums[i];
    return find_enum_locked(name, strlen(name));
}

static bool is_scalar(kraken_type t)
{
    return t >= KRAKEN_T_BOOL && t <= KRAKEN_T_UUID;
}

/* Check a field's type description and resolve its type_name into f. */
static int field_resolve(const char *sname, const kraken_field_def *d, bool allow_any,
                         const pending *p, kraken_field *f)
{
    kraken_type t = d->type;
    if (t == KRAKEN_T_MAP || t == KRAKEN_T_LIST) {
        t = d->elem_type;
        if (!is_scalar(t) && t != KRAKEN_T_RECORD)
            return kraken__err(KRAKEN_EINVAL,
                               "schema '%s': field '%s': invalid element type %d for a %s",
                               sname, d->name, (int)t, kraken_type_name(d->type));
    } else if (is_scalar(t) || t == KRAKEN_T_RECORD) {
        if (d->elem_type != KRAKEN_T_NONE)
            return kraken__err(KRAKEN_EINVAL,
                               "schema '%s': field '%s': elem_type is only for map and list",
                               sname, d->name);
    } else {
        return kraken__err(KRAKEN_EINVAL, "schema '%s': field '%s': invalid type %d", sname,
                           d->name, (int)d->type);
    }
    f->type = d->type;
    f->elem_type = d->type == t ? KRAKEN_T_NONE : t;

    if (t == KRAKEN_T_RECORD) {
        if (!d->type_name) {
            if (!allow_any)
                return kraken__err(KRAKEN_EINVAL,
                                   "schema '%s': field '%s': record type needs a type_name",
                                   sname, d->name);
            return 0; /* polymorphic */
        }
        f->record = resolve_schema(p, d->type_name);
        char q[KRAKEN_QUOTE_SIZE];
        if (!f->record)
            return kraken__err(KRAKEN_ENOTFOUND,
                               "schema '%s': field '%s': unknown record type %s", sname,
                               d->name, QUOTED(q, d->type_name));
    } else if (t == KRAKEN_T_ENUM) {
        if (!d->type_name)
            return kraken__err(KRAKEN_EINVAL,
                               "schema '%s': field '%s': enum type needs a type_name", sname,
                               d->name);
        f->enm = resolve_enum(p, d->type_name);
        char q[KRAKEN_QUOTE_SIZE];
        if (!f->enm)
            return kraken__err(KRAKEN_ENOTFOUND, "schema '%s': field '%s': unknown enum type %s",
                               sname, d->name, QUOTED(q, d->type_name));
    } else if (d->type_name) {
        char q[KRAKEN_QUOTE_SIZE];
        return kraken__err(KRAKEN_EINVAL,
                           "schema '%s': field '%s': type_name %s given for a %s field", sname,
                           d->name, QUOTED(q, d->type_name), kraken_type_name(t));
    }
    return 0;
}

static int field_check_name(const char *sname, const kraken_field_def *defs, size_t i)
{
    const kraken_field_def *d = &defs[i];
    char q[KRAKEN_QUOTE_SIZE];
    if (!valid_identifier(d->name))
        return kraken__err(KRAKEN_EINVAL, "schema '%s': field %zu: invalid name %s", sname, i,
                           QUOTED(q, d->name));
    if (d->number == 0 || d->number > MAX_FIELD_NUMBER ||
        (d->number >= RESERVED_LO && d->number <= RESERVED_HI))
        return kraken__err(KRAKEN_EINVAL, "schema '%s': field '%s': invalid field number %u",
                           sname, d->name, (unsigned)d->number);
    for (size_t j = 0; j < i; j++) {
        if (defs[j].number == d->number)
            return kraken__err(KRAKEN_EINVAL,
                               "schema '%s': field '%s': number %u already used by '%s'", sname,
                               d->name, (unsigned)d->number, defs[j].name);
        if (names_clash(defs[j].name, d->name))
            return kraken__err(KRAKEN_EINVAL, "schema '%s': field '%s': name clashes with '%s'",
                               sname, d->name, defs[j].name);
    }
    return 0;
}

static int schema_build_p(const char *name, const kraken_field_def *defs, size_t n,
                          bool allow_any, const pending *p, struct kraken_schema **out)
{
    char q[KRAKEN_QUOTE_SIZE];
    if (!valid_type_name(name))
        return kraken__err(KRAKEN_EINVAL, "schema %s: invalid type name", QUOTED(q, name));
    if (n > 0 && !defs)
        return kraken__err(KRAKEN_EINVAL, "schema '%s': fields missing", name);
    for (size_t i = 0; i < n; i++) {
        int rc = field_check_name(name, defs, i);
        if (rc < 0)
            return rc;
    }

    struct kraken_schema *s = calloc(1, sizeof(*s));
    if (!s)
        goto nomem;
    s->name = strdup(name);
    s->type_url = malloc(strlen(KRAKEN_TYPE_URL_PREFIX) + strlen(name) + 1);
    s->fields = calloc(n ? n : 1, sizeof(*s->fields));
    if (!s->name || !s->type_url || !s->fields)
        goto nomem;
    strcpy(stpcpy(s->type_url, KRAKEN_TYPE_URL_PREFIX), name);
    for (size_t i = 0; i < n; i++) {
        kraken_field *f = &s->fields[i];
        s->n_fields = i + 1;
        f->number = defs[i].number;
        int rc = field_resolve(name, &defs[i], allow_any, p, f);
        if (rc < 0) {
            schema_free(s);
            return rc;
        }
        f->name = strdup(defs[i].name);
        f->json_name = camel_name(defs[i].name, false);
        f->url_name = camel_name(defs[i].name, true);
        if (!f->name || !f->json_name || !f->url_name)
            goto nomem;
    }
    *out = s;
    return 0;
nomem:
    schema_free(s);
    return kraken__err(KRAKEN_ENOMEM, "schema '%s': out of memory", name);
}

static bool schema_identical(const struct kraken_schema *a, const struct kraken_schema *b)
{
    if (strcmp(a->name, b->name) != 0 || a->n_fields != b->n_fields)
        return false;
    for (size_t i = 0; i < a->n_fields; i++) {
        const kraken_field *x = &a->fields[i], *y = &b->fields[i];
        if (strcmp(x->name, y->name) != 0 || x->number != y->number || x->type != y->type ||
            x->elem_type != y->elem_type || x->record != y->record || x->enm != y->enm ||
            x->list_key != y->list_key || x->key_field != y->key_field)
            return false;
    }
    return true;
}

/* ---- publishing (lock held) ---------------------------------------------- */

static int reserve(void *arrp, size_t *cap, size_t need)
{
    void ***arr = arrp;
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 32;
    while (ncap < need)
        ncap *= 2;
    void **na = realloc(*arr, ncap * sizeof(void *));
    if (!na)
        return kraken__err(KRAKEN_ENOMEM, "schema registry: out of memory");
    *arr = na;
    *cap = ncap;
    return 0;
}

/* Outcome of comparing a built type with the registry: new, identical to a registered one
 * (*existing set), or conflicting (error). */
static int check_schema_conflict(const struct kraken_schema *s, struct kraken_schema **existing)
{
    *existing = find_schema_locked(s->name, strlen(s->name));
    if (*existing) {
        if (schema_identical(*existing, s))
            return 0;
        return kraken__err(KRAKEN_EEXISTS,
                           "schema '%s': already registered with a different definition",
                           s->name);
    }
    if (find_enum_locked(s->name, strlen(s->name)))
        return kraken__err(KRAKEN_EEXISTS, "schema '%s': name already used by an enum", s->name);
    return 0;
}

static int check_enum_conflict(const struct kraken_enum_type *e,
                               struct kraken_enum_type **existing)
{
    *existing = find_enum_locked(e->name, strlen(e->name));
    if (*existing) {
        if (enum_identical(*existing, e))
            return 0;
        return kraken__err(KRAKEN_EEXISTS,
                           "enum '%s': already registered with a different definition", e->name);
    }
    if (find_schema_locked(e->name, strlen(e->name)))
        return kraken__err(KRAKEN_EEXISTS, "enum '%s': name already used by a schema", e->name);
    return 0;
}

/* Register a built schema; takes ownership. *out gets the registered (maybe older) copy. */
static int publish_schema_locked(struct kraken_schema *s, const kraken_schema **out)
{
    struct kraken_schema *existing;
    int rc = check_schema_conflict(s, &existing);
    if (rc == 0 && !existing)
        rc = reserve(&reg_schemas, &reg_cap_schemas, reg_n_schemas + 1);
    if (rc < 0 || existing) {
        schema_free(s);
        if (out && existing)
            *out = existing;
        return rc;
    }
    reg_schemas[reg_n_schemas++] = s;
    if (out)
        *out = s;
    return 0;
}

static int publish_enum_locked(struct kraken_enum_type *e, const kraken_enum_type **out)
{
    struct kraken_enum_type *existing;
    int rc = check_enum_conflict(e, &existing);
    if (rc == 0 && !existing)
        rc = reserve(&reg_enums, &reg_cap_enums, reg_n_enums + 1);
    if (rc < 0 || existing) {
        enum_free(e);
        if (out && existing)
            *out = existing;
        return rc;
    }
    reg_enums[reg_n_enums++] = e;
    if (out)
        *out = e;
    return 0;
}

/* ---- initialisation ------------------------------------------------------- */

static void registry_init_once(void)
{
    /* Built-ins are correct by construction; a failure here can only be out-of-memory,
     * after which the built-in lookups return NULL and entry points fail cleanly. */
    if (kraken__builtins_register() < 0)
        return;
    pthread_mutex_lock(&reg_lock);
    node_schema = find_schema_locked("kraken.Node", strlen("kraken.Node"));
    service_schema = find_schema_locked("kraken.ServiceInstance",
                                        strlen("kraken.ServiceInstance"));
    n_builtin_schemas = reg_n_schemas;
    n_builtin_enums = reg_n_enums;
    pthread_mutex_unlock(&reg_lock);
}

void kraken__schemas_init(void)
{
    pthread_once(&reg_once, registry_init_once);
}

const struct kraken_schema *kraken__node_schema(void)
{
    kraken__schemas_init();
    return node_schema;
}

const struct kraken_schema *kraken__service_schema(void)
{
    kraken__schemas_init();
    return service_schema;
}

int kraken__schema_build(const char *name, const kraken_field_def *fields, size_t n_fields,
                         bool allow_any, struct kraken_schema **out)
{
    pthread_mutex_lock(&reg_lock);
    int rc = schema_build_p(name, fields, n_fields, allow_any, NULL, out);
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

int kraken__schema_publish(struct kraken_schema *schema)
{
    pthread_mutex_lock(&reg_lock);
    int rc = publish_schema_locked(schema, NULL);
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

int kraken__enum_build_publish(const char *name, const kraken_enum_member *members, size_t n)
{
    struct kraken_enum_type *e;
    int rc = enum_build(name, members, n, &e);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&reg_lock);
    rc = publish_enum_locked(e, NULL);
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

/* ---- public registration ---------------------------------------------------- */

int kraken_enum_register(const char *name, const kraken_enum_member *members, size_t n_members,
                         const kraken_enum_type **out)
{
    kraken__schemas_init();
    struct kraken_enum_type *e;
    int rc = enum_build(name, members, n_members, &e);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&reg_lock);
    rc = publish_enum_locked(e, out);
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

/* ---- versions of kraken_field_def ----------------------------------------------- */

/* sizeof kraken_field_def as a caller of each version has it; index = version - 1. */
static const size_t field_def_sizes[] = {
    KRAKEN__VERSION_SIZE(kraken_field_def, type_name), /* 1 */
};
_Static_assert(sizeof field_def_sizes / sizeof field_def_sizes[0] == KRAKEN_FIELD_DEF_VERSION,
               "one size per version of kraken_field_def");
_Static_assert(KRAKEN__VERSION_SIZE(kraken_field_def, type_name) == sizeof(kraken_field_def),
               "kraken_field_def grew: add its new version to field_def_sizes");

static const kraken__struct_abi field_def_abi = {"kraken_field_def", "KRAKEN_FIELD_DEF_VERSION",
                                                 field_def_sizes, KRAKEN_FIELD_DEF_VERSION};

/*
 * The caller's field array read into current-version structs (*out, free() it; NULL when
 * @p n is 0): element 0's version is the stride, and every element must carry it.
 */
static int field_defs_read(const char *name, const kraken_field_def *fields, size_t n,
                           kraken_field_def **out)
{
    *out = NULL;
    if (n == 0 || !fields)
        return 0; /* schema_build_p() names a missing array */
    size_t stride, bad;
    int rc = kraken__struct_array_check(&field_def_abi, fields, n, &stride, &bad);
    if (rc < 0) {
        const kraken_field_def *f =
            (const kraken_field_def *)(const void *)((const char *)fields + bad * stride);
        char qs[KRAKEN_QUOTE_SIZE], qf[KRAKEN_QUOTE_SIZE];
        return kraken__err_prefix(rc, "kraken_schema_register: schema %s: field %zu %s",
                                  QUOTED(qs, name), bad, QUOTED(qf, f->name));
    }
    kraken_field_def *defs = calloc(n, sizeof *defs);
    if (!defs)
        return kraken__err(KRAKEN_ENOMEM, "kraken_schema_register: out of memory");
    for (size_t i = 0; i < n; i++)
        kraken__struct_array_get(&field_def_abi, fields, stride, i, &defs[i]);
    *out = defs;
    return 0;
}

int kraken_schema_register(const char *name, const kraken_field_def *fields, size_t n_fields,
                           const kraken_schema **out)
{
    kraken__schemas_init();
    kraken_field_def *defs;
    int rc = field_defs_read(name, fields, n_fields, &defs);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&reg_lock);
    struct kraken_schema *s;
    rc = schema_build_p(name, defs ? defs : fields, n_fields, false, NULL, &s);
    if (rc == 0)
        rc = publish_schema_locked(s, out);
    pthread_mutex_unlock(&reg_lock);
    free(defs);
    return rc;
}

/* ---- lookups and accessors ------------------------------------------------ */

const kraken_schema *kraken_schema_find(const char *name_or_type_url)
{
    if (!name_or_type_url)
        return NULL;
    kraken__schemas_init();
    size_t len;
    const char *name = kraken__type_url_name(name_or_type_url, strlen(name_or_type_url), &len);
    pthread_mutex_lock(&reg_lock);
    const kraken_schema *s = find_schema_locked(name, len);
    pthread_mutex_unlock(&reg_lock);
    return s;
}

const kraken_enum_type *kraken_enum_find(const char *name)
{
    if (!name)
        return NULL;
    kraken__schemas_init();
    pthread_mutex_lock(&reg_lock);
    const kraken_enum_type *e = find_enum_locked(name, strlen(name));
    pthread_mutex_unlock(&reg_lock);
    return e;
}

const char *kraken_schema_name(const kraken_schema *schema)
{
    return schema ? schema->name : NULL;
}

const char *kraken_schema_type_url(const kraken_schema *schema)
{
    return schema ? schema->type_url : NULL;
}

size_t kraken_schema_field_count(const kraken_schema *schema)
{
    return schema ? schema->n_fields : 0;
}

int kraken_schema_field(const kraken_schema *schema, size_t i, kraken_field_def *out)
{
    if (!schema || !out)
        return kraken__err(KRAKEN_EINVAL, "kraken_schema_field: NULL argument");
    /* the caller's struct may be an older, smaller version: write only what it has */
    int rc = kraken__struct_version_check(&field_def_abi, out->version);
    if (rc < 0)
        return kraken__err_prefix(rc, "kraken_schema_field: schema '%s': out", schema->name);
    if (i >= schema->n_fields)
        return kraken__err(KRAKEN_ENOTFOUND, "schema '%s': no field %zu (it has %zu)",
                           schema->name, i, schema->n_fields);
    const kraken_field *f = &schema->fields[i];
    kraken_field_def current = {
        .version = out->version,
        .name = f->name,
        .number = f->number,
        .type = f->type,
        .elem_type = f->elem_type,
        .type_name = f->record ? f->record->name : f->enm ? f->enm->name : NULL,
    };
    memcpy(out, &current, kraken__struct_size(&field_def_abi, out->version));
    return 0;
}

size_t kraken_schema_count(void)
{
    kraken__schemas_init();
    pthread_mutex_lock(&reg_lock);
    size_t n = reg_n_schemas;
    pthread_mutex_unlock(&reg_lock);
    return n;
}

const kraken_schema *kraken_schema_at(size_t i)
{
    kraken__schemas_init();
    pthread_mutex_lock(&reg_lock);
    const kraken_schema *s = i < reg_n_schemas ? reg_schemas[i] : NULL;
    pthread_mutex_unlock(&reg_lock);
    return s;
}

size_t kraken_enum_count(void)
{
    kraken__schemas_init();
    pthread_mutex_lock(&reg_lock);
    size_t n = reg_n_enums;
    pthread_mutex_unlock(&reg_lock);
    return n;
}

const kraken_enum_type *kraken_enum_at(size_t i)
{
    kraken__schemas_init();
    pthread_mutex_lock(&reg_lock);
    const kraken_enum_type *e = i < reg_n_enums ? reg_enums[i] : NULL;
    pthread_mutex_unlock(&reg_lock);
    return e;
}

const kraken_field *kraken__schema_field(const struct kraken_schema *s, const char *name,
                                         size_t len)
{
    if (!s || !name)
        return NULL;
    for (size_t i = 0; i < s->n_fields; i++) {
        const kraken_field *f = &s->fields[i];
        /* json_name equals url_name but for the first letter's case, so two checks suffice. */
        if ((strncasecmp(f->url_name, name, len) == 0 && f->url_name[len] == '\0') ||
            (strncasecmp(f->name, name, len) == 0 && f->name[len] == '\0'))
            return f;
    }
    return NULL;
}

const kraken_field *kraken__schema_field_by_number(const struct kraken_schema *s, uint32_t number)
{
    if (!s)
        return NULL;
    for (size_t i = 0; i < s->n_fields; i++)
        if (s->fields[i].number == number)
            return &s->fields[i];
    return NULL;
}

const kraken_enum_member *kraken__enum_by_name(const struct kraken_enum_type *e, const char *name,
                                               size_t len)
{
    if (!e || !name)
        return NULL;
    for (size_t i = 0; i < e->n; i++)
        if (span_eq(e->members[i].name, name, len))
            return &e->members[i];
    return NULL;
}

/* ---- schema description files ------------------------------------------- */

/* One type described in a file, before it is built. */
typedef struct desc_schema {
    const char *name;
    kraken_field_def *defs;
    size_t n;
    bool done;
} desc_schema;

typedef struct desc_enum {
    const char *name;
    kraken_enum_member *members;
    size_t n;
} desc_enum;

typedef struct loader {
    const char *source;
    desc_enum *enums;
    size_t n_enums;
    desc_schema *schemas;
    size_t n_schemas;
    pending built; /* built types: new ones are owned until published */
    bool *enum_new, *schema_new;
} loader;

static const struct {
    const char *name;
    kraken_type type;
} type_names[] = {
    {"bool", KRAKEN_T_BOOL},     {"int32", KRAKEN_T_INT32},   {"int64", KRAKEN_T_INT64},
    {"uint32", KRAKEN_T_UINT32}, {"uint64", KRAKEN_T_UINT64}, {"string", KRAKEN_T_STRING},
    {"bytes", KRAKEN_T_BYTES},   {"enum", KRAKEN_T_ENUM},     {"ipv4", KRAKEN_T_IPV4},
    {"mac", KRAKEN_T_MAC},       {"uuid", KRAKEN_T_UUID},     {"record", KRAKEN_T_RECORD},
    {"message", KRAKEN_T_RECORD}, {"map", KRAKEN_T_MAP},      {"list", KRAKEN_T_LIST},
    {"repeated", KRAKEN_T_LIST},
};

/* The description's name of @p t (the first of type_names that has it). */
static const char *describe_type_name(kraken_type t)
{
    for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++)
        if (type_names[i].type == t)
            return type_names[i].name;
    return NULL;
}

static bool parse_type_name(const char *s, kraken_type *out)
{
    for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++)
        if (strcasecmp(s, type_names[i].name) == 0) {
            *out = type_names[i].type;
            return true;
        }
    return false;
}

/* Reject keys outside @p allowed: a misspelt "type_name" must not be silently ignored. */
static int check_keys(const loader *ld, const cJSON *obj, const char *const *allowed,
                      const char *where)
{
    for (const cJSON *c = obj->child; c; c = c->next) {
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            ok |= strcmp(c->string, *a) == 0;
        char q[KRAKEN_QUOTE_SIZE];
        if (!ok)
            return kraken__err(KRAKEN_EPARSE, "%s: %s: unknown key %s", ld->source, where,
                               QUOTED(q, c->string));
        /* a key given twice would silently lose one of its values */
        for (const cJSON *prev = obj->child; prev != c; prev = prev->next)
            if (strcmp(prev->string, c->string) == 0)
                return kraken__err(KRAKEN_EPARSE, "%s: %s: key %s given twice", ld->source,
                                   where, QUOTED(q, c->string));
    }
    return 0;
}

static int get_string(const loader *ld, const cJSON *obj, const char *key, bool required,
                      const char *where, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v) {
        if (required)
            return kraken__err(KRAKEN_EPARSE, "%s: %s: missing \"%s\"", ld->source, where, key);
        return 0;
    }
    if (!cJSON_IsString(v))
        return kraken__err(KRAKEN_EPARSE, "%s: %s: \"%s\" must be a string", ld->source, where,
                           key);
    *out = v->valuestring;
    return 0;
}

static int get_int(const loader *ld, const cJSON *v, double lo, double hi, const char *where,
                   const char *what, int64_t *out)
{
    /* Range first: converting a double outside int64_t's range is undefined behaviour. */
    double d = cJSON_IsNumber(v) ? v->valuedouble : 0.5;
    if (!(d >= lo && d <= hi) || d != (double)(int64_t)d) {
        char q[KRAKEN_QUOTE_SIZE];
        return kraken__err(KRAKEN_EPARSE, "%s: %s: %s must be an integer in [%.0f, %.0f]",
                           ld->source, where, QUOTED(q, what), lo, hi);
    }
    *out = (int64_t)d;
    return 0;
}

static int load_enum_desc(loader *ld, const cJSON *j, desc_enum *d)
{
    static const char *const keys[] = {"name", "members", NULL};
    if (!cJSON_IsObject(j))
        return kraken__err(KRAKEN_EPARSE, "%s: enums: entries must be objects", ld->source);
    int rc = get_string(ld, j, "name", true, "enum", &d->name);
    if (rc < 0)
        return rc;
    char where[256];
    char q[KRAKEN_QUOTE_SIZE];
    snprintf(where, sizeof(where), "enum %s", QUOTED(q, d->name));
    if ((rc = check_keys(ld, j, keys, where)) < 0)
        return rc;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "members");
    if (!cJSON_IsObject(m))
        return kraken__err(KRAKEN_EPARSE, "%s: %s: \"members\" must be an object {NAME: number}",
                           ld->source, where);
    d->n = (size_t)cJSON_GetArraySize(m);
    d->members = calloc(d->n ? d->n : 1, sizeof(*d->members));
    if (!d->members)
        return kraken__err(KRAKEN_ENOMEM, "%s: out of memory", ld->source);
    size_t i = 0;
    for (const cJSON *c = m->child; c; c = c->next, i++) {
        int64_t num = 0;
        if ((rc = get_int(ld, c, INT32_MIN, INT32_MAX, where, c->string, &num)) < 0)
            return rc;
        d->members[i].name = c->string;
        d->members[i].number = (int32_t)num;
    }
    return 0;
}

static int load_field_desc(loader *ld, const cJSON *j, const char *sname, size_t idx,
                           kraken_field_def *f)
{
    static const char *const keys[] = {"name", "number", "type", "elem_type", "type_name", NULL};
    char where[512];
    char qs[KRAKEN_QUOTE_SIZE], qf[KRAKEN_QUOTE_SIZE];
    snprintf(where, sizeof(where), "schema %s: field %zu", QUOTED(qs, sname), idx);
    f->version = KRAKEN_FIELD_DEF_VERSION;
    if (!cJSON_IsObject(j))
        return kraken__err(KRAKEN_EPARSE, "%s: %s: must be an object", ld->source, where);
    int rc = get_string(ld, j, "name", true, where, &f->name);
    if (rc < 0)
        return rc;
    snprintf(where, sizeof(where), "schema %s: field %s", qs, QUOTED(qf, f->name));
    const char *type, *elem = NULL;
    int64_t num = 0;
    if ((rc = check_keys(ld, j, keys, where)) < 0 ||
        (rc = get_string(ld, j, "type", true, where, &type)) < 0 ||
        (rc = get_string(ld, j, "elem_type", false, where, &elem)) < 0 ||
        (rc = get_string(ld, j, "type_name", false, where, &f->type_name)) < 0)
        return rc;
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "number");
    if (!n)
        return kraken__err(KRAKEN_EPARSE, "%s: %s: missing \"number\"", ld->source, where);
    if ((rc = get_int(ld, n, 1, MAX_FIELD_NUMBER, where, "number", &num)) < 0)
        return rc;
    f->number = (uint32_t)num;
    if (!parse_type_name(type, &f->type))
        return kraken__err(KRAKEN_EPARSE, "%s: %s: unknown type %s", ld->source, where,
                           QUOTED(qf, type));
    if (elem && !parse_type_name(elem, &f->elem_type))
        return kraken__err(KRAKEN_EPARSE, "%s: %s: unknown elem_type %s", ld->source, where,
                           QUOTED(qf, elem));
    return 0;
}

static int load_schema_desc(loader *ld, const cJSON *j, desc_schema *d)
{
    static const char *const keys[] = {"name", "fields", NULL};
    if (!cJSON_IsObject(j))
        return kraken__err(KRAKEN_EPARSE, "%s: schemas: entries must be objects", ld->source);
    int rc = get_string(ld, j, "name", true, "schema", &d->name);
    if (rc < 0)
        return rc;
    char where[256];
    char q[KRAKEN_QUOTE_SIZE];
    snprintf(where, sizeof(where), "schema %s", QUOTED(q, d->name));
    if ((rc = check_keys(ld, j, keys, where)) < 0)
        return rc;
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(j, "fields");
    if (fields && !cJSON_IsArray(fields))
        return kraken__err(KRAKEN_EPARSE, "%s: %s: \"fields\" must be an array", ld->source,
                           where);
    d->n = fields ? (size_t)cJSON_GetArraySize(fields) : 0;
    d->defs = calloc(d->n ? d->n : 1, sizeof(*d->defs));
    if (!d->defs)
        return kraken__err(KRAKEN_ENOMEM, "%s: out of memory", ld->source);
    size_t i = 0;
    for (const cJSON *c = fields ? fields->child : NULL; c; c = c->next, i++)
        if ((rc = load_field_desc(ld, c, d->name, i, &d->defs[i])) < 0)
            return rc;
    return 0;
}

static int load_descriptions(loader *ld, const cJSON *root)
{
    static const char *const keys[] = {"enums", "schemas", NULL};
    if (!cJSON_IsObject(root))
        return kraken__err(KRAKEN_EPARSE, "%s: top level must be an object", ld->source);
    int rc = check_keys(ld, root, keys, "top level");
    if (rc < 0)
        return rc;
    const cJSON *enums = cJSON_GetObjectItemCaseSensitive(root, "enums");
    const cJSON *schemas = cJSON_GetObjectItemCaseSensitive(root, "schemas");
    if ((enums && !cJSON_IsArray(enums)) || (schemas && !cJSON_IsArray(schemas)))
        return kraken__err(KRAKEN_EPARSE, "%s: \"enums\" and \"schemas\" must be arrays",
                           ld->source);
    size_t ne = enums ? (size_t)cJSON_GetArraySize(enums) : 0;
    size_t ns = schemas ? (size_t)cJSON_GetArraySize(schemas) : 0;
    ld->enums = calloc(ne + 1, sizeof(*ld->enums));
    ld->schemas = calloc(ns + 1, sizeof(*ld->schemas));
    ld->built.enums = calloc(ne + 1, sizeof(*ld->built.enums));
    ld->built.schemas = calloc(ns + 1, sizeof(*ld->built.schemas));
    ld->enum_new = calloc(ne + 1, sizeof(bool));
    ld->schema_new = calloc(ns + 1, sizeof(bool));
    if (!ld->enums || !ld->schemas || !ld->built.enums || !ld->built.schemas || !ld->enum_new ||
        !ld->schema_new)
        return kraken__err(KRAKEN_ENOMEM, "%s: out of memory", ld->source);
    for (const cJSON *c = enums ? enums->child : NULL; c; c = c->next)
        if ((rc = load_enum_desc(ld, c, &ld->enums[ld->n_enums++])) < 0)
            return rc;
    for (const cJSON *c = schemas ? schemas->child : NULL; c; c = c->next)
        if ((rc = load_schema_desc(ld, c, &ld->schemas[ld->n_schemas++])) < 0)
            return rc;
    return 0;
}

/* The file's own definition of type @p name, if any (used to order the builds). */
static bool file_defines_schema(const loader *ld, const char *name)
{
    for (size_t i = 0; i < ld->n_schemas; i++)
        if (strcmp(ld->schemas[i].name, name) == 0)
            return true;
    return false;
}

/* A schema is ready to build once every record type it names that the file defines is built. */
static bool schema_ready(const loader *ld, const desc_schema *d)
{
    for (size_t i = 0; i < d->n; i++) {
        const char *tn = d->defs[i].type_name;
        bool rec = d->defs[i].type == KRAKEN_T_RECORD || d->defs[i].elem_type == KRAKEN_T_RECORD;
        if (!rec || !tn || !file_defines_schema(ld, tn))
            continue;
        bool built = false;
        for (size_t k = 0; k < ld->built.n_schemas; k++)
            built |= strcmp(ld->built.schemas[k]->name, tn) == 0;
        if (!built)
            return false;
    }
    return true;
}

/* Lock held. Build the file's enums, then its schemas in dependency order. */
static int build_all_locked(loader *ld)
{
    int rc;
    char q[KRAKEN_QUOTE_SIZE];
    for (size_t i = 0; i < ld->n_enums; i++) {
        const desc_enum *d = &ld->enums[i];
        struct kraken_enum_type *e, *existing;
        if ((rc = enum_build(d->name, d->members, d->n, &e)) < 0)
            return kraken__err_prefix(rc, "%s", ld->source);
        for (size_t k = 0; k < ld->built.n_enums; k++)
            if (strcmp(ld->built.enums[k]->name, e->name) == 0) {
                enum_free(e);
                return kraken__err(KRAKEN_EEXISTS, "%s: enum '%s' defined twice", ld->source,
                                   d->name);
            }
        if ((rc = check_enum_conflict(e, &existing)) < 0) {
            enum_free(e);
            return kraken__err_prefix(rc, "%s", ld->source);
        }
        if (existing)
            enum_free(e);
        ld->enum_new[ld->built.n_enums] = !existing;
        ld->built.enums[ld->built.n_enums++] = existing ? existing : e;
    }
    for (size_t i = 0; i < ld->n_schemas; i++)
        for (size_t k = 0; k < i; k++)
            if (strcmp(ld->schemas[i].name, ld->schemas[k].name) == 0)
                return kraken__err(KRAKEN_EEXISTS, "%s: schema %s defined twice", ld->source,
                                   QUOTED(q, ld->schemas[i].name));
    for (bool progress = true; progress;) {
        progress = false;
        for (size_t i = 0; i < ld->n_schemas; i++) {
            desc_schema *d = &ld->schemas[i];
            if (d->done || !schema_ready(ld, d))
                continue;
            struct kraken_schema *s, *existing;
            if ((rc = schema_build_p(d->name, d->defs, d->n, false, &ld->built, &s)) < 0)
                return kraken__err_prefix(rc, "%s", ld->source);
            if ((rc = check_schema_conflict(s, &existing)) < 0) {
                schema_free(s);
                return kraken__err_prefix(rc, "%s", ld->source);
            }
            if (existing)
                schema_free(s);
            ld->schema_new[ld->built.n_schemas] = !existing;
            ld->built.schemas[ld->built.n_schemas++] = existing ? existing : s;
            d->done = progress = true;
        }
    }
    for (size_t i = 0; i < ld->n_schemas; i++)
        if (!ld->schemas[i].done)
            return kraken__err(KRAKEN_EINVAL, "%s: schema %s: record types refer to each other "
                               "in a cycle", ld->source, QUOTED(q, ld->schemas[i].name));
    return 0;
}

/* Lock held; cannot fail once the arrays have room. */
static int publish_all_locked(loader *ld)
{
    int rc = reserve(&reg_enums, &reg_cap_enums, reg_n_enums + ld->built.n_enums);
    if (rc == 0)
        rc = reserve(&reg_schemas, &reg_cap_schemas, reg_n_schemas + ld->built.n_schemas);
    if (rc < 0)
        return kraken__err_prefix(rc, "%s", ld->source);
    for (size_t i = 0; i < ld->built.n_enums; i++)
        if (ld->enum_new[i]) {
            reg_enums[reg_n_enums++] = ld->built.enums[i];
            ld->enum_new[i] = false; /* now owned by the registry */
        }
    for (size_t i = 0; i < ld->built.n_schemas; i++)
        if (ld->schema_new[i]) {
            reg_schemas[reg_n_schemas++] = ld->built.schemas[i];
            ld->schema_new[i] = false;
        }
    return 0;
}

static void loader_free(loader *ld)
{
    for (size_t i = 0; i < ld->built.n_schemas; i++)
        if (ld->schema_new[i])
            schema_free(ld->built.schemas[i]);
    for (size_t i = 0; i < ld->built.n_enums; i++)
        if (ld->enum_new[i])
            enum_free(ld->built.enums[i]);
    for (size_t i = 0; i < ld->n_enums; i++)
        free(ld->enums[i].members);
    for (size_t i = 0; i < ld->n_schemas; i++)
        free(ld->schemas[i].defs);
    free(ld->enums);
    free(ld->schemas);
    free(ld->built.enums);
    free(ld->built.schemas);
    free(ld->enum_new);
    free(ld->schema_new);
}

/* ---- describing: the inverse of loading --------------------------------------------------- */

static cJSON *describe_enum(const struct kraken_enum_type *e)
{
    cJSON *j = cJSON_CreateObject(), *members = cJSON_CreateObject();
    if (!j || !members || !cJSON_AddStringToObject(j, "name", e->name) ||
        !cJSON_AddItemToObject(j, "members", members)) {
        cJSON_Delete(members);
        cJSON_Delete(j);
        return NULL;
    }
    for (size_t i = 0; i < e->n; i++)
        if (!cJSON_AddNumberToObject(members, e->members[i].name, e->members[i].number)) {
            cJSON_Delete(j);
            return NULL;
        }
    return j;
}

static cJSON *describe_field(const kraken_field *f)
{
    cJSON *j = cJSON_CreateObject();
    const char *type_name = f->record ? f->record->name : f->enm ? f->enm->name : NULL;
    bool container = f->type == KRAKEN_T_MAP || f->type == KRAKEN_T_LIST;
    if (!j || !cJSON_AddStringToObject(j, "name", f->name) ||
        !cJSON_AddNumberToObject(j, "number", f->number) ||
        !cJSON_AddStringToObject(j, "type", describe_type_name(f->type)) ||
        (container && !cJSON_AddStringToObject(j, "elem_type", describe_type_name(f->elem_type))) ||
        (type_name && !cJSON_AddStringToObject(j, "type_name", type_name))) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

static cJSON *describe_schema(const struct kraken_schema *s)
{
    cJSON *j = cJSON_CreateObject(), *fields = cJSON_CreateArray();
    if (!j || !fields || !cJSON_AddStringToObject(j, "name", s->name) ||
        !cJSON_AddItemToObject(j, "fields", fields)) {
        cJSON_Delete(fields);
        cJSON_Delete(j);
        return NULL;
    }
    for (size_t i = 0; i < s->n_fields; i++) {
        cJSON *f = describe_field(&s->fields[i]);
        if (!f || !cJSON_AddItemToArray(fields, f)) {
            cJSON_Delete(f);
            cJSON_Delete(j);
            return NULL;
        }
    }
    return j;
}

/* {"enums": [...], "schemas": [...]} of the registered non-built-in types; the lock is held. */
static cJSON *describe_registered_locked(void)
{
    cJSON *root = cJSON_CreateObject(), *enums = cJSON_CreateArray(),
          *schemas = cJSON_CreateArray();
    if (!root || !enums || !schemas || !cJSON_AddItemToObject(root, "enums", enums)) {
        cJSON_Delete(root);
        cJSON_Delete(enums);
        cJSON_Delete(schemas);
        return NULL;
    }
    if (!cJSON_AddItemToObject(root, "schemas", schemas)) {
        cJSON_Delete(schemas);
        cJSON_Delete(root);
        return NULL;
    }
    for (size_t i = n_builtin_enums; i < reg_n_enums; i++) {
        cJSON *e = describe_enum(reg_enums[i]);
        if (!e || !cJSON_AddItemToArray(enums, e)) {
            cJSON_Delete(e);
            cJSON_Delete(root);
            return NULL;
        }
    }
    for (size_t i = n_builtin_schemas; i < reg_n_schemas; i++) {
        cJSON *sj = describe_schema(reg_schemas[i]);
        if (!sj || !cJSON_AddItemToArray(schemas, sj)) {
            cJSON_Delete(sj);
            cJSON_Delete(root);
            return NULL;
        }
    }
    return root;
}

int kraken_schema_describe_json(char **out)
{
    if (!out)
        return kraken__err(KRAKEN_EINVAL, "kraken_schema_describe_json: out is required");
    *out = NULL;
    kraken__schemas_init();
    pthread_mutex_lock(&reg_lock);
    cJSON *root = describe_registered_locked();
    pthread_mutex_unlock(&reg_lock);
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return kraken__err(KRAKEN_ENOMEM, "kraken_schema_describe_json: out of memory");
    /* cJSON's allocator is malloc unless a program changed its hooks: copy to be sure */
    *out = strdup(text);
    cJSON_free(text);
    return *out ? 0 : kraken__err(KRAKEN_ENOMEM, "kraken_schema_describe_json: out of memory");
}

int kraken_schema_load_json(const char *json, size_t len, const char *source)
{
    if (!json)
        return kraken__err(KRAKEN_EINVAL, "kraken_schema_load_json: NULL text");
    if (!source)
        source = "schema description";
    kraken__schemas_init();
    /* Strict syntax first: positions in messages, and no NUL cutting a name short. */
    kraken_jscan scan;
    kraken__jscan_init(&scan, json, len, source);
    cJSON *root = NULL;
    int rc = kraken__jscan_parse(&scan, &root);
    kraken__jscan_free(&scan);
    if (rc < 0)
        return rc;
    loader ld = {.source = source};
    rc = load_descriptions(&ld, root);
    if (rc == 0) {
        pthread_mutex_lock(&reg_lock);
        rc = build_all_locked(&ld);
        if (rc == 0)
            rc = publish_all_locked(&ld);
        pthread_mutex_unlock(&reg_lock);
    }
    loader_free(&ld);
    cJSON_Delete(root);
    return rc;
}

int kraken_schema_load_file(const char *path)
{
    if (!path)
        return kraken__err(KRAKEN_EINVAL, "kraken_schema_load_file: NULL path");
    char *text;
    size_t len;
    int rc = kraken__read_file(path, &text, &len);
    if (rc < 0)
        return rc;
    rc = kraken_schema_load_json(text, len, path);
    free(text);
    return rc;
}
