/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * columns.c: the original krakenctl's node views, for `list` and `show`.
 *
 *   -t mixed|cfg|dsc   which state: Cfg, Dsc (named with Cfg's nodename, as the
 *                      original), or "mixed": Cfg with Dsc's values taking priority.
 *   -f, --filter COLS  only these top-level node fields (JSON names); id and
 *                      nodename are always kept; a bare -f keeps only those two.
 *
 * The original filtered the JSON nodes themselves ({"id", "nodename", COL...}, a
 * missing field as ""), so scripts reading `node list -f ... -j` see objects with
 * exactly those keys; the column table shows the same fields, one per column.
 * Unlike the original, a column name is checked against kraken.Node's fields: a
 * typo is an error naming it instead of a silently empty column.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <getopt.h>
#include <string.h>
#include <strings.h>

#include "krakenctl.h"

int kc_parse_kind(kc_ctx *ctx, const char *text, const char **out)
{
    if (text[0] == '=') /* -t=cfg, which the original's argparse reads as -t cfg */
        text++;
    if (strcmp(text, "mixed") == 0 || strcmp(text, "cfg") == 0 || strcmp(text, "dsc") == 0) {
        *out = text;
        return 0;
    }
    return kc_error(ctx, KC_EXIT_USAGE, "-t %s: expected mixed, cfg or dsc", text);
}

/* ---- -f: parsing ------------------------------------------------------------------------- */

/* Field @p i of kraken.Node. */
static int node_field(const kraken_schema *node, size_t i, kraken_field_def *def)
{
    *def = (kraken_field_def){.version = KRAKEN_FIELD_DEF_VERSION};
    return kraken_schema_field(node, i, def);
}

/* "phys_state" -> "physState": the JSON name of a kraken.Node field (SPEC 1.4). */
static void json_name(const char *proto_name, char *out, size_t size)
{
    size_t n = 0;
    bool upper = false;
    for (const char *p = proto_name; *p && n + 1 < size; p++) {
        if (*p == '_') {
            upper = true;
            continue;
        }
        out[n++] = upper ? (char)toupper((unsigned char)*p) : *p;
        upper = false;
    }
    out[n] = '\0';
}

/* Does @p given name the field (JSON name "physState", proto name "phys_state", or the URL
 * form "PhysState"; case-insensitive, as URLs are)? */
static bool names_field(const char *given, size_t len, const char *json, const char *proto)
{
    return (strlen(json) == len && strncasecmp(given, json, len) == 0) ||
           (strlen(proto) == len && strncasecmp(given, proto, len) == 0);
}

/* "id, nodename, runState, ...": kraken.Node's fields for the unknown-column error. */
static void list_fields(const kraken_schema *node, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < kraken_schema_field_count(node); i++) {
        kraken_field_def def;
        char name[KC_FILTER_NAME_MAX];
        if (node_field(node, i, &def) != 0)
            continue;
        json_name(def.name, name, sizeof name);
        int w = snprintf(out + used, size - used, "%s%s", used ? ", " : "", name);
        if (w < 0 || (size_t)w >= size - used)
            break;
        used += (size_t)w;
    }
}

static bool filter_has(const kc_filter *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->cols[i], name) == 0)
            return true;
    return false;
}

static void filter_add(kc_filter *f, const char *name)
{
    if (!filter_has(f, name) && f->n < KC_FILTER_MAX)
        snprintf(f->cols[f->n++], sizeof f->cols[0], "%s", name);
}

/* The original's column order: id, nodename, then the others by name. */
static int by_column(const void *a, const void *b)
{
    const char *x = a, *y = b;
    int rx = strcmp(x, "id") == 0 ? 0 : strcmp(x, "nodename") == 0 ? 1 : 2;
    int ry = strcmp(y, "id") == 0 ? 0 : strcmp(y, "nodename") == 0 ? 1 : 2;
    return rx != ry ? rx - ry : strcmp(x, y);
}

/* Match one comma-separated item (blanks around it trimmed) to a kraken.Node field. */
static int filter_item(kc_ctx *ctx, const char *text, const kraken_schema *node, const char *item,
                       size_t len, size_t index, kc_filter *out)
{
    while (len > 0 && isspace((unsigned char)*item)) {
        item++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)item[len - 1]))
        len--;
    if (len == 0)
        return kc_error(ctx, KC_EXIT_USAGE, "-f %s: empty column name (item %zu)", text, index);
    for (size_t i = 0; i < kraken_schema_field_count(node); i++) {
        kraken_field_def def;
        char name[KC_FILTER_NAME_MAX];
        if (node_field(node, i, &def) != 0)
            continue;
        json_name(def.name, name, sizeof name);
        if (names_field(item, len, name, def.name)) {
            filter_add(out, name);
            return 0;
        }
    }
    char fields[512];
    list_fields(node, fields, sizeof fields);
    return kc_error(ctx, KC_EXIT_USAGE, "-f %s: no column '%.*s' (a node has %s)", text, (int)len,
                    item, fields);
}

int kc_filter_parse(kc_ctx *ctx, const char *text, kc_filter *out)
{
    out->n = 0;
    const kraken_schema *node = kraken_schema_find("kraken.Node");
    if (!node)
        return kc_error(ctx, KC_EXIT_FAILED, "kraken.Node is not a registered schema");
    size_t index = 1;
    for (const char *p = text;; index++) {
        size_t len = strcspn(p, ",");
        int rc = filter_item(ctx, text, node, p, len, index, out);
        if (rc != 0)
            return rc;
        if (p[len] == '\0')
            break;
        p += len + 1;
    }
    filter_add(out, "id");
    filter_add(out, "nodename");
    qsort(out->cols, out->n, sizeof out->cols[0], by_column);
    return 0;
}

const char *kc_filter_optarg(const char *optarg_given, int argc, char **argv)
{
    if (optarg_given) /* -fCOLS, --filter=COLS; -f=COLS as the original's argparse */
        return optarg_given[0] == '=' ? optarg_given + 1 : optarg_given;
    /* -f COLS as two words (the original's argparse nargs="?"): the next word, unless it is an
     * option or a node id (a column name never is one, so `show -f ID` keeps its operand) */
    kraken_uuid id;
    if (optind < argc && argv[optind][0] != '-' && kraken_uuid_parse(&id, argv[optind]) != 0) {
        kraken_error_clear();
        return argv[optind++];
    }
    kraken_error_clear();
    return "id,nodename";
}

int kc_parse_view_options(kc_ctx *ctx, const kc_cmd_entry *cmd, int argc, char **argv,
                          const char **kind, kc_filter *filter, const kc_filter **f)
{
    static const struct option opts[] = {{"type", required_argument, NULL, 't'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"filter", optional_argument, NULL, 'f'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *filter_text = NULL;
    int opt, rc;
    *kind = "mixed";
    *f = NULL;
    while ((opt = getopt_long(argc, argv, "t:jf::h", opts, NULL)) != -1) {
        if (opt == 't') {
            if ((rc = kc_parse_kind(ctx, optarg, kind)) != 0)
                return rc;
        } else if (opt == 'j') {
            ctx->json = true;
        } else if (opt == 'f') {
            filter_text = kc_filter_optarg(optarg, argc, argv);
        } else {
            return kc_bad_option(ctx, cmd, opt, argv);
        }
    }
    if (filter_text) {
        if ((rc = kc_filter_parse(ctx, filter_text, filter)) != 0)
            return rc;
        *f = filter;
    }
    return 0;
}

/* ---- -f: applying ------------------------------------------------------------------------ */

cJSON *kc_filter_node(const kc_filter *f, const cJSON *node)
{
    cJSON *out = cJSON_CreateObject();
    for (size_t i = 0; out && i < f->n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(node, f->cols[i]);
        /* the original: a field the node does not have is "" */
        cJSON_AddItemToObject(out, f->cols[i],
                              v ? cJSON_Duplicate(v, true) : cJSON_CreateString(""));
    }
    return out;
}

cJSON *kc_filter_list(const kc_filter *f, const cJSON *list)
{
    cJSON *out = cJSON_CreateObject(), *nodes = cJSON_AddArrayToObject(out, "nodes");
    const cJSON *n;
    cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(list, "nodes"))
        cJSON_AddItemToArray(nodes, kc_filter_node(f, n));
    return out;
}

bool kc_filter_url(const kc_filter *f, const char *url)
{
    if (!f)
        return true;
    if (url[0] != '/') /* type.googleapis.com/...: inside an extension */
        return filter_has(f, "extensions");
    const char *seg = url + 1;
    size_t len = strcspn(seg, "/");
    for (size_t i = 0; i < f->n; i++)
        if (strlen(f->cols[i]) == len && strncasecmp(f->cols[i], seg, len) == 0)
            return true;
    return false;
}

/* ---- -t: the views ----------------------------------------------------------------------- */

static const char *item_key(const cJSON *item, const char **which)
{
    const char *id = kc_node_field(item, "id");
    *which = "id";
    if (*id)
        return id;
    *which = "@type";
    return kc_node_field(item, "@type");
}

/* The element of @p list that @p item stands for: same id, or same @type when it has none. */
static cJSON *matching_item(cJSON *list, const cJSON *item)
{
    const char *which, *key = item_key(item, &which);
    if (!*key)
        return NULL;
    cJSON *other;
    cJSON_ArrayForEach(other, list)
    {
        const char *other_which, *other_key = item_key(other, &other_which);
        if (strcmp(which, other_which) == 0 && strcmp(key, other_key) == 0)
            return other;
    }
    return NULL;
}

/* Merge @p over into @p base (both objects): over's values win; objects merge recursively;
 * lists merge item by item (matched by id or @type), an item only in @p over is added. */
static void merge_into(cJSON *base, const cJSON *over)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, over)
    {
        cJSON *mine = cJSON_GetObjectItemCaseSensitive(base, v->string);
        if (cJSON_IsObject(mine) && cJSON_IsObject(v)) {
            merge_into(mine, v);
        } else if (cJSON_IsArray(mine) && cJSON_IsArray(v)) {
            const cJSON *item;
            cJSON_ArrayForEach(item, v)
            {
                cJSON *match = cJSON_IsObject(item) ? matching_item(mine, item) : NULL;
                if (match && cJSON_IsObject(match))
                    merge_into(match, item);
                else
                    cJSON_AddItemToArray(mine, cJSON_Duplicate(item, true));
            }
        } else {
            cJSON *copy = cJSON_Duplicate(v, true);
            if (mine)
                cJSON_ReplaceItemViaPointer(base, mine, copy);
            else
                cJSON_AddItemToObject(base, v->string, copy);
        }
    }
}

cJSON *kc_node_view(const cJSON *cfg, const cJSON *dsc, const char *kind)
{
    if (strcmp(kind, "cfg") == 0)
        return cJSON_Duplicate(cfg, true);
    if (strcmp(kind, "dsc") == 0) {
        /* the name is configuration: the original shows Cfg's in the Dsc view */
        cJSON *out = cJSON_Duplicate(dsc, true);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(cfg, "nodename");
        if (out && cJSON_IsString(name)) {
            cJSON_DeleteItemFromObjectCaseSensitive(out, "nodename");
            cJSON_AddStringToObject(out, "nodename", name->valuestring);
        }
        return out;
    }
    cJSON *out = cJSON_Duplicate(cfg, true);
    if (out && dsc)
        merge_into(out, dsc);
    return out;
}

cJSON *kc_list_view(const cJSON *cfg_list, const cJSON *dsc_list, const char *kind)
{
    cJSON *out = cJSON_CreateObject(), *nodes = cJSON_AddArrayToObject(out, "nodes");
    bool dsc = strcmp(kind, "dsc") == 0;
    const cJSON *n, *cursor = NULL;
    cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(dsc ? dsc_list : cfg_list, "nodes"))
    {
        const cJSON *other = kc_find_node_next(dsc ? cfg_list : dsc_list,
                                               kc_node_field(n, "id"), &cursor);
        cJSON_AddItemToArray(nodes, dsc ? kc_node_view(other, n, kind)
                                        : kc_node_view(n, other, kind));
    }
    return out;
}

/* ---- the column table -------------------------------------------------------------------- */

static int by_text(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "pxe:RUN" for a service, "PXE.Client:WAIT" for an extension: what identifies a list item,
 * and its state when it has one. */
static char *item_label(const cJSON *item)
{
    if (!cJSON_IsObject(item))
        return kc_cell_text(item);
    const char *which, *key = item_key(item, &which);
    size_t prefix = strlen(KRAKEN_TYPE_URL_PREFIX);
    if (strcmp(which, "@type") == 0 && strncmp(key, KRAKEN_TYPE_URL_PREFIX, prefix) == 0)
        key += prefix;
    const char *state = kc_node_field(item, "state");
    size_t size = strlen(key) + strlen(state) + 2;
    char *out = malloc(size);
    if (out)
        snprintf(out, size, "%s%s%s", key, *state ? ":" : "", state);
    return out;
}

char *kc_cell_text(const cJSON *v)
{
    if (!v || cJSON_IsNull(v))
        return strdup("");
    if (cJSON_IsString(v))
        return strdup(v->valuestring);
    if (cJSON_IsObject(v))
        return item_label(v);
    if (!cJSON_IsArray(v)) { /* a number or a bool, as JSON writes it */
        char *json = cJSON_PrintUnformatted(v), *out = json ? strdup(json) : NULL;
        cJSON_free(json);
        return out;
    }
    /* a list: its items' labels, sorted (as the original), on one line */
    size_t n = (size_t)cJSON_GetArraySize(v), total = 1, k = 0;
    char **labels = calloc(n ? n : 1, sizeof *labels);
    if (!labels)
        return NULL;
    const cJSON *item;
    cJSON_ArrayForEach(item, v)
    {
        labels[k] = item_label(item);
        total += (labels[k] ? strlen(labels[k]) : 0) + 1;
        k++;
    }
    qsort(labels, n, sizeof *labels, by_text);
    char *out = malloc(total);
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (out && labels[i])
            used += (size_t)sprintf(out + used, "%s%s", used ? "," : "", labels[i]);
        free(labels[i]);
    }
    free(labels);
    if (out)
        out[used] = '\0';
    return out;
}

/* A row of the column table: the node as shown and, in the mixed view, its Cfg and Dsc (to
 * colour the state Dsc discovered against Cfg's). */
typedef struct table_row {
    const cJSON *node;
    const cJSON *cfg, *dsc;
} table_row;

/* The original's row order: nodes without a parent first, then by nodename, then by id. */
static int by_row(const void *a, const void *b)
{
    const cJSON *x = ((const table_row *)a)->node, *y = ((const table_row *)b)->node;
    bool px = *kc_node_field(x, "parentId") != '\0', py = *kc_node_field(y, "parentId") != '\0';
    if (px != py)
        return px ? 1 : -1;
    int c = strcmp(kc_node_field(x, "nodename"), kc_node_field(y, "nodename"));
    return c ? c : strcmp(kc_node_field(x, "id"), kc_node_field(y, "id"));
}

/* Colour of a mixed-view cell of a state field: what Dsc discovered against Cfg's (the cell
 * shows Cfg's value when Dsc has none, as the original: that one is not green). */
static const char *cell_color(const table_row *row, const char *col)
{
    if (strcmp(col, "physState") != 0 && strcmp(col, "runState") != 0)
        return NULL;
    return kc_state_color(kc_node_field(row->cfg, col), kc_node_field(row->dsc, col));
}

int kc_print_column_table(kc_ctx *ctx, const kc_filter *f, const cJSON *cfg_list,
                          const cJSON *dsc_list, const char *kind, FILE *out)
{
    cJSON *view = kc_list_view(cfg_list, dsc_list, kind);
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(view, "nodes");
    size_t n = (size_t)cJSON_GetArraySize(nodes), k = 0;
    table_row *rows = calloc(n ? n : 1, sizeof *rows);
    const char *headers[KC_FILTER_MAX];
    for (size_t c = 0; c < f->n; c++)
        headers[c] = f->cols[c];
    kc_table *t = kc_table_new(f->n, headers);
    if (!view || !rows || !t) {
        free(rows);
        kc_table_free(t);
        cJSON_Delete(view);
        return kc_error(ctx, KC_EXIT_FAILED, "out of memory");
    }
    bool mixed = strcmp(kind, "mixed") == 0;
    /* the mixed view has one node per Cfg node, in the Cfg list's order */
    const cJSON *node, *cfg = mixed ? cJSON_GetObjectItemCaseSensitive(cfg_list, "nodes") : NULL;
    const cJSON *cursor = NULL;
    cfg = cfg ? cfg->child : NULL;
    cJSON_ArrayForEach(node, nodes)
    {
        const cJSON *dsc = cfg ? kc_find_node_next(dsc_list, kc_node_field(cfg, "id"), &cursor)
                               : NULL;
        rows[k++] = (table_row){node, cfg, dsc};
        cfg = cfg ? cfg->next : NULL;
    }
    qsort(rows, n, sizeof *rows, by_row);
    for (size_t r = 0; r < n; r++) {
        char *cells[KC_FILTER_MAX];
        const char *colors[KC_FILTER_MAX];
        for (size_t c = 0; c < f->n; c++) {
            cells[c] = kc_cell_text(cJSON_GetObjectItemCaseSensitive(rows[r].node, f->cols[c]));
            colors[c] = mixed ? cell_color(&rows[r], f->cols[c]) : NULL;
        }
        kc_table_add(t, (const char *const *)cells, colors);
        for (size_t c = 0; c < f->n; c++)
            free(cells[c]);
    }
    kc_table_print(t, ctx->color, out);
    kc_table_free(t);
    free(rows);
    cJSON_Delete(view);
    if (ctx->verbose)
        fprintf(out, "%zu node(s)\n", n);
    return KC_EXIT_OK;
}
