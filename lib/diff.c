/*
 * diff.c: the leaves that differ between two nodes.
 *
 * Both records are walked in parallel: fields in schema order, maps by sorted
 * key, keyed lists (services, extensions) by key, index lists by index. Each
 * differing scalar leaf yields one change whose URL is canonical (the form
 * kraken_url_canonical() gives), so it reads back with kraken_node_get().
 * Zero counts as absent. The walk keeps a stack of URL components and renders
 * the URL only for a change, so comparing equal nodes allocates nothing.
 *
 * A service config is a record of any schema, so its leaves are named with
 * the type: "/Services/pxe/Config/type.googleapis.com/PXE.Config/TftpDir".
 * When the config's schema changes, every old leaf is removed and every new
 * one added, each under its own type, so no URL means two things.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "url_private.h"

#define TYPE_PREFIX "type.googleapis.com/"

/* As deep as a URL may be (see URL_MAX_COMPONENTS in url.c). */
#define DIFF_MAX_DEPTH 64

typedef struct diff_ctx diff_ctx;
/* Receives a change; owns (and must clear) both values. */
typedef int (*emit_fn)(diff_ctx *c, kraken_value *old_value, kraken_value *new_value);

/* One URL component: sep + text, or "/" + index when text is NULL. */
typedef struct diff_comp {
    const char *sep, *text;
    size_t index;
} diff_comp;

struct diff_ctx {
    diff_comp comps[DIFF_MAX_DEPTH]; /* the current position, rendered only for a change */
    size_t depth;
    char *url; /* rendered URL of the current change */
    size_t url_cap;
    char url_buf[256];
    emit_fn emit;
    kraken__diff_fn fn; /* emit_callback */
    void *userdata;
    kraken_change *changes; /* emit_collect */
    size_t n, n_cap;
};

static const kraken_slot zero_slot;

/* ---- the URL of the current position ------------------------------------ */

static int path_push(diff_ctx *c, const char *sep, const char *text, size_t index)
{
    if (c->depth == DIFF_MAX_DEPTH)
        return kraken__err(KRAKEN_ELIMIT, "node diff: values nested deeper than %d levels",
                           DIFF_MAX_DEPTH);
    c->comps[c->depth++] = (diff_comp){sep, text, index};
    return 0;
}

static void path_pop(diff_ctx *c)
{
    c->depth--;
}

static int url_append(diff_ctx *c, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > c->url_cap) {
        size_t cap = c->url_cap * 2;
        while (cap < *len + n + 1)
            cap *= 2;
        char *p = c->url == c->url_buf ? malloc(cap) : realloc(c->url, cap);
        if (!p)
            return kraken__err(KRAKEN_ENOMEM, "node diff: out of memory");
        if (c->url == c->url_buf)
            memcpy(p, c->url_buf, *len);
        c->url = p;
        c->url_cap = cap;
    }
    memcpy(c->url + *len, s, n + 1);
    *len += n;
    return 0;
}

/* c->url = the canonical URL of the current position. */
static int render_url(diff_ctx *c)
{
    size_t len = 0;
    char num[32];
    int rc = 0;
    c->url[0] = '\0';
    for (size_t i = 0; i < c->depth && rc == 0; i++) {
        const diff_comp *d = &c->comps[i];
        if (!d->text)
            snprintf(num, sizeof num, "%zu", d->index);
        if ((rc = url_append(c, &len, d->sep)) == 0)
            rc = url_append(c, &len, d->text ? d->text : num);
    }
    return rc;
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
    int rc = render_url(c);
    if (rc)
        return rc;
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
        int rc;
        /* The node's extension list is implied by each extension's type component. */
        bool implied = c->depth == 0 && f->type == KRAKEN_T_LIST && f->list_key == KRAKEN_KEY_TYPE;
        if (!implied && (rc = path_push(c, "/", f->url_name, 0)) != 0)
            return rc;
        rc = diff_slot(c, f, f->type, ra ? &ra->slots[i] : &zero_slot,
                       rb ? &rb->slots[i] : &zero_slot);
        if (!implied)
            path_pop(c);
        if (rc)
            return rc;
    }
    return 0;
}

/* A record under its type component (records of any schema: service configs). */
static int diff_typed(diff_ctx *c, const kraken_record *ra, const kraken_record *rb)
{
    const struct kraken_schema *s = ra ? ra->schema : rb->schema;
    int rc = path_push(c, "/" TYPE_PREFIX, s->name, 0);
    if (rc)
        return rc;
    rc = diff_fields(c, s, ra, rb);
    path_pop(c);
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
        int rc = path_push(c, "/", ea ? ea->key : eb->key, 0);
        if (rc)
            return rc;
        rc = diff_slot(c, f, f->elem_type, ea ? &ea->value : &zero_slot,
                       eb ? &eb->value : &zero_slot);
        path_pop(c);
        if (rc)
            return rc;
    }
    return 0;
}

static int diff_index_list(diff_ctx *c, const kraken_field *f, const kraken_list *a,
                           const kraken_list *b)
{
    size_t na = a ? a->n : 0, nb = b ? b->n : 0;
    for (size_t i = 0; i < na || i < nb; i++) {
        int rc = path_push(c, "/", NULL, i);
        if (rc)
            return rc;
        rc = diff_slot(c, f, f->elem_type, i < na ? &a->items[i] : &zero_slot,
                       i < nb ? &b->items[i] : &zero_slot);
        path_pop(c);
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
        int rc;
        if (!any)
            continue;
        if (by_type)
            rc = path_push(c, c->depth ? "/" TYPE_PREFIX : TYPE_PREFIX, any->schema->name, 0);
        else
            rc = path_push(c, "/", kraken__list_item_key(f, sa ? sa : sb), 0);
        if (rc)
            return rc;
        rc = by_type ? diff_fields(c, any->schema, ra, rb) : diff_record(c, f, ra, rb);
        path_pop(c);
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
    c->url = c->url_buf;
    c->url_cap = sizeof c->url_buf;
    c->depth = 0;
    int rc = 0;
    if (ra != rb)
        rc = diff_fields(c, ra ? ra->schema : rb->schema, ra, rb);
    if (c->url != c->url_buf)
        free(c->url);
    c->url = NULL;
    return rc;
}

/* ---- the two ways to receive changes --------------------------------------- */

static int emit_callback(diff_ctx *c, kraken_value *old_value, kraken_value *new_value)
{
    int rc = c->fn(c->url, old_value, new_value, c->userdata);
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
    if (!(url = strdup(c->url)))
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
