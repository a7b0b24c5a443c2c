/*
 * diff.c: the leaves that differ between two nodes.
 *
 * Both records are walked in parallel: fields in schema order, maps by sorted
 * key, keyed lists (services, extensions) by key, index lists by index. Each
 * differing scalar leaf yields one change whose URL is canonical (the form
 * kraken_url_canonical() gives), so it reads back with kraken_node_get().
 * Zero counts as absent. The URL is built in a buffer on the stack as the walk
 * descends, so comparing equal nodes allocates nothing.
 *
 * A service config is a record of any schema, so its leaves are named with
 * the type: "/Services/pxe/Config/type.googleapis.com/PXE.Config/TftpDir".
 * When the config's schema changes, every old leaf is removed and every new
 * one added, each under its own type, so no URL means two things.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define TYPE_PREFIX "type.googleapis.com/"

typedef struct diff_ctx diff_ctx;
/* Receives a change; owns (and must clear) both values. */
typedef int (*emit_fn)(diff_ctx *c, kraken_value *old_value, kraken_value *new_value);

struct diff_ctx {
    char *path; /* canonical URL of the current position, NUL-terminated */
    size_t len, cap;
    char stack_buf[256];
    emit_fn emit;
    kraken__diff_fn fn; /* emit_callback */
    void *userdata;
    kraken_change *changes; /* emit_collect */
    size_t n, n_cap;
};

static const kraken_slot zero_slot;

/* ---- the URL of the current position ------------------------------------ */

/* Append @p sep @p a @p b to the path; returns the previous length via @p saved. */
static int path_push(diff_ctx *c, const char *sep, const char *a, const char *b, size_t *saved)
{
    size_t ls = strlen(sep), la = strlen(a), lb = b ? strlen(b) : 0;
    size_t need = c->len + ls + la + lb + 1;
    if (need > c->cap) {
        size_t cap = c->cap * 2;
        while (cap < need)
            cap *= 2;
        char *p = c->path == c->stack_buf ? malloc(cap) : realloc(c->path, cap);
        if (!p)
            return kraken__err(KRAKEN_ENOMEM, "node diff: out of memory");
        if (c->path == c->stack_buf)
            memcpy(p, c->stack_buf, c->len + 1);
        c->path = p;
        c->cap = cap;
    }
    *saved = c->len;
    memcpy(c->path + c->len, sep, ls);
    memcpy(c->path + c->len + ls, a, la);
    memcpy(c->path + c->len + ls + la, b ? b : "", lb);
    c->len += ls + la + lb;
    c->path[c->len] = '\0';
    return 0;
}

static void path_pop(diff_ctx *c, size_t saved)
{
    c->len = saved;
    c->path[saved] = '\0';
}

/* ---- the walk ---------------------------------------------------------------- */

static int diff_slot(diff_ctx *c, const kraken_field *f, kraken_type t, const kraken_slot *a,
                     const kraken_slot *b);

static int diff_leaf(diff_ctx *c, const kraken_field *f, kraken_type t, const kraken_slot *a,
                     const kraken_slot *b)
{
    bool za = kraken__slot_is_zero(t, a), zb = kraken__slot_is_zero(t, b);
    if (za && zb)
        return 0;
    if (!za && !zb && kraken__slot_equal(f, t, a, b))
        return 0;
    kraken_value ov = KRAKEN_VALUE_INIT, nv = KRAKEN_VALUE_INIT;
    int rc;
    if (!za && (rc = kraken__slot_to_value(f, t, a, &ov)) != 0)
        return rc;
    if (!zb && (rc = kraken__slot_to_value(f, t, b, &nv)) != 0) {
        kraken_value_clear(&ov);
        return rc;
    }
    return c->emit(c, &ov, &nv);
}

/* Fields of records of schema @p s (either may be NULL). */
static int diff_fields(diff_ctx *c, const struct kraken_schema *s, const kraken_record *ra,
                       const kraken_record *rb)
{
    for (size_t i = 0; i < s->n_fields; i++) {
        const kraken_field *f = &s->fields[i];
        size_t saved = c->len;
        int rc;
        /* The node's extension list is implied by each extension's type component. */
        bool implied = c->len == 0 && f->type == KRAKEN_T_LIST && f->list_key == KRAKEN_KEY_TYPE;
        if (!implied && (rc = path_push(c, "/", f->url_name, NULL, &saved)) != 0)
            return rc;
        rc = diff_slot(c, f, f->type, ra ? &ra->slots[i] : &zero_slot,
                       rb ? &rb->slots[i] : &zero_slot);
        path_pop(c, saved);
        if (rc)
            return rc;
    }
    return 0;
}

/* A record under its type component (records of any schema: service configs). */
static int diff_typed(diff_ctx *c, const kraken_record *ra, const kraken_record *rb)
{
    const struct kraken_schema *s = ra ? ra->schema : rb->schema;
    size_t saved;
    int rc = path_push(c, "/" TYPE_PREFIX, s->name, NULL, &saved);
    if (rc)
        return rc;
    rc = diff_fields(c, s, ra, rb);
    path_pop(c, saved);
    return rc;
}

static int diff_record(diff_ctx *c, const kraken_field *f, const kraken_record *ra,
                       const kraken_record *rb)
{
    if (ra == rb)
        return 0;
    if (f->record)
        return diff_fields(c, f->record, ra, rb);
    if (ra && rb && ra->schema != rb->schema) {
        int rc = diff_typed(c, ra, NULL);
        return rc ? rc : diff_typed(c, NULL, rb);
    }
    return diff_typed(c, ra, rb);
}

static int diff_map(diff_ctx *c, const kraken_field *f, const kraken_map *a, const kraken_map *b)
{
    size_t na = a ? a->n : 0, nb = b ? b->n : 0, i = 0, j = 0;
    while (i < na || j < nb) {
        int cmp = i == na ? 1 : j == nb ? -1 : strcmp(a->entries[i].key, b->entries[j].key);
        const kraken_map_entry *ea = cmp <= 0 ? &a->entries[i++] : NULL;
        const kraken_map_entry *eb = cmp >= 0 ? &b->entries[j++] : NULL;
        size_t saved;
        int rc = path_push(c, "/", ea ? ea->key : eb->key, NULL, &saved);
        if (rc)
            return rc;
        rc = diff_slot(c, f, f->elem_type, ea ? &ea->value : &zero_slot,
                       eb ? &eb->value : &zero_slot);
        path_pop(c, saved);
        if (rc)
            return rc;
    }
    return 0;
}

static int diff_index_list(diff_ctx *c, const kraken_field *f, const kraken_list *a,
                           const kraken_list *b)
{
    size_t na = a ? a->n : 0, nb = b ? b->n : 0;
    char num[32];
    for (size_t i = 0; i < na || i < nb; i++) {
        size_t saved;
        snprintf(num, sizeof num, "%zu", i);
        int rc = path_push(c, "/", num, NULL, &saved);
        if (rc)
            return rc;
        rc = diff_slot(c, f, f->elem_type, i < na ? &a->items[i] : &zero_slot,
                       i < nb ? &b->items[i] : &zero_slot);
        path_pop(c, saved);
        if (rc)
            return rc;
    }
    return 0;
}

/* Services by id, extensions by schema name: both lists are sorted by that key. */
static int diff_keyed_list(diff_ctx *c, const kraken_field *f, const kraken_list *a,
                           const kraken_list *b)
{
    size_t na = a ? a->n : 0, nb = b ? b->n : 0, i = 0, j = 0;
    bool by_type = f->list_key == KRAKEN_KEY_TYPE;
    while (i < na || j < nb) {
        int cmp = i == na   ? 1
                  : j == nb ? -1
                            : strcmp(kraken__list_item_key(f, &a->items[i]),
                                     kraken__list_item_key(f, &b->items[j]));
        const kraken_slot *sa = cmp <= 0 ? &a->items[i++] : NULL;
        const kraken_slot *sb = cmp >= 0 ? &b->items[j++] : NULL;
        const kraken_record *ra = sa ? sa->rec : NULL, *rb = sb ? sb->rec : NULL;
        const kraken_record *any = ra ? ra : rb;
        size_t saved;
        int rc;
        if (!any)
            continue;
        if (by_type)
            rc = path_push(c, c->len ? "/" TYPE_PREFIX : TYPE_PREFIX, any->schema->name, NULL,
                           &saved);
        else
            rc = path_push(c, "/", kraken__list_item_key(f, sa ? sa : sb), NULL, &saved);
        if (rc)
            return rc;
        rc = by_type ? diff_fields(c, any->schema, ra, rb) : diff_record(c, f, ra, rb);
        path_pop(c, saved);
        if (rc)
            return rc;
    }
    return 0;
}

static int diff_slot(diff_ctx *c, const kraken_field *f, kraken_type t, const kraken_slot *a,
                     const kraken_slot *b)
{
    switch (t) {
    case KRAKEN_T_RECORD:
        return diff_record(c, f, a->rec, b->rec);
    case KRAKEN_T_MAP:
        return a->map == b->map ? 0 : diff_map(c, f, a->map, b->map);
    case KRAKEN_T_LIST:
        if (a->list == b->list)
            return 0;
        if (f->list_key == KRAKEN_KEY_INDEX)
            return diff_index_list(c, f, a->list, b->list);
        return diff_keyed_list(c, f, a->list, b->list);
    default:
        return diff_leaf(c, f, t, a, b);
    }
}

static int diff_nodes(diff_ctx *c, const kraken_node *before, const kraken_node *after)
{
    const kraken_record *ra = before ? &before->rec : NULL, *rb = after ? &after->rec : NULL;
    c->path = c->stack_buf;
    c->path[0] = '\0';
    c->len = 0;
    c->cap = sizeof c->stack_buf;
    int rc = 0;
    if (ra != rb)
        rc = diff_fields(c, ra ? ra->schema : rb->schema, ra, rb);
    if (c->path != c->stack_buf)
        free(c->path);
    c->path = NULL;
    return rc;
}

/* ---- the two ways to receive changes --------------------------------------- */

static int emit_callback(diff_ctx *c, kraken_value *old_value, kraken_value *new_value)
{
    int rc = c->fn(c->path, old_value, new_value, c->userdata);
    kraken_value_clear(old_value);
    kraken_value_clear(new_value);
    return rc;
}

static int emit_collect(diff_ctx *c, kraken_value *old_value, kraken_value *new_value)
{
    char *url = NULL;
    if (c->n == c->n_cap) {
        size_t cap = c->n_cap ? c->n_cap * 2 : 8;
        kraken_change *p = realloc(c->changes, cap * sizeof *p);
        if (!p)
            goto oom;
        c->changes = p;
        c->n_cap = cap;
    }
    if (!(url = strdup(c->path)))
        goto oom;
    c->changes[c->n++] = (kraken_change){url, *old_value, *new_value};
    return 0;
oom:
    kraken_value_clear(old_value);
    kraken_value_clear(new_value);
    return kraken__err(KRAKEN_ENOMEM, "node diff: out of memory");
}

int kraken__node_diff_each(const kraken_node *before, const kraken_node *after,
                           kraken__diff_fn fn, void *userdata)
{
    if (!fn)
        return kraken__err(KRAKEN_EINVAL, "kraken__node_diff_each: NULL callback");
    diff_ctx c = {.emit = emit_callback, .fn = fn, .userdata = userdata};
    return diff_nodes(&c, before, after);
}

int kraken_node_diff(const kraken_node *before, const kraken_node *after, kraken_change **out,
                     size_t *n_out)
{
    if (!out || !n_out)
        return kraken__err(KRAKEN_EINVAL, "kraken_node_diff: NULL argument");
    diff_ctx c = {.emit = emit_collect};
    int rc = diff_nodes(&c, before, after);
    if (rc) {
        kraken_changes_free(c.changes, c.n);
        return rc;
    }
    *out = c.changes;
    *n_out = c.n;
    return 0;
}

void kraken_changes_free(kraken_change *changes, size_t n)
{
    if (!changes)
        return;
    for (size_t i = 0; i < n; i++) {
        free(changes[i].url);
        kraken_value_clear(&changes[i].old_value);
        kraken_value_clear(&changes[i].new_value);
    }
    free(changes);
}
