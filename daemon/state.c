/*
 * state.c: the state file (SPEC 2, 9.1). It is read once at start (the
 * original's node-list JSON; a node with the daemon's own id is merged into
 * the self node) and then every Cfg change is written back atomically
 * (kraken_store_save: temp file, fsync, rename). Writes are debounced so a
 * bulk change costs one write, and kd_state_flush() writes at once: the REST
 * API flushes before it acknowledges a write, so an acknowledged change
 * survives kill -9.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "kd.h"

struct kd_state {
    kraken_engine *engine;
    kraken_store *store;
    char *path;
    struct event *timer;
    kraken_store_listener *listener;
    uint64_t delay_ms;
    bool dirty;
    uint64_t saves;
};

/* ---- schema directory ---------------------------------------------------------------------- */

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int kd_schemas_load_dir(const char *dir, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "%s: cannot open schema directory: %s", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (l <= 5 || strcmp(e->d_name + l - 5, ".json") != 0 || e->d_name[0] == '.')
            continue;
        char **grown = realloc(names, (n + 1) * sizeof *names);
        if (!grown || !(grown[n] = strdup(e->d_name))) {
            names = grown ? grown : names;
            snprintf(err, errlen, "%s: out of memory", dir);
            rc = -1;
            break;
        }
        names = grown;
        n++;
    }
    closedir(d);
    /* Name order, so a site can number files whose types refer to each other. */
    qsort(names, n, sizeof *names, name_cmp);
    for (size_t i = 0; i < n && rc == 0; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (kraken_schema_load_file(path) < 0) {
            snprintf(err, errlen, "%s", kraken_error_last());
            kraken_error_clear();
            rc = -1;
        } else {
            kd_log(KRAKEN_LOG_INFO, "schema", "loaded schema file %s", path);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* ---- JSON merge of nodes ------------------------------------------------------------------- */

/* Field names compare like the library does: case-insensitively, '_' ignored. */
static bool name_equal(const char *a, const char *b)
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

static cJSON *find_member(cJSON *obj, const char *key)
{
    cJSON *exact = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (exact)
        return exact;
    cJSON *it;
    cJSON_ArrayForEach(it, obj)
        if (name_equal(it->string, key))
            return it;
    return NULL;
}

static int merge_object(cJSON *target, const cJSON *patch);

/* Merge a node list ("extensions" by "@type", "services" by "id") element by element. */
static int merge_list(cJSON *target, const cJSON *patch, const char *key)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, patch) {
        const cJSON *pk = cJSON_IsObject(p) ? find_member((cJSON *)p, key) : NULL;
        if (!cJSON_IsString(pk))
            return -1;
        cJSON *match = NULL, *t;
        cJSON_ArrayForEach(t, target) {
            const cJSON *tk = cJSON_IsObject(t) ? find_member(t, key) : NULL;
            if (cJSON_IsString(tk) && strcmp(tk->valuestring, pk->valuestring) == 0) {
                match = t;
                break;
            }
        }
        if (match) {
            if (merge_object(match, p) < 0)
                return -1;
        } else {
            cJSON *copy = cJSON_Duplicate(p, true);
            if (!copy || !cJSON_AddItemToArray(target, copy)) {
                cJSON_Delete(copy);
                return -1;
            }
        }
    }
    return 0;
}

static int merge_object(cJSON *target, const cJSON *patch)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, patch) {
        cJSON *t = find_member(target, p->string);
        if (cJSON_IsNull(p)) {
            if (t)
                cJSON_Delete(cJSON_DetachItemViaPointer(target, t));
            continue;
        }
        if (t && cJSON_IsArray(t) && cJSON_IsArray(p) &&
            (name_equal(p->string, "extensions") || name_equal(p->string, "services"))) {
            if (merge_list(t, p, name_equal(p->string, "extensions") ? "@type" : "id") < 0)
                return -1;
            continue;
        }
        if (t && cJSON_IsObject(t) && cJSON_IsObject(p)) {
            if (merge_object(t, p) < 0)
                return -1;
            continue;
        }
        cJSON *copy = cJSON_Duplicate(p, true);
        if (!copy)
            return -1;
        if (t)
            cJSON_Delete(cJSON_DetachItemViaPointer(target, t));
        if (!cJSON_AddItemToObject(target, p->string, copy)) {
            cJSON_Delete(copy);
            return -1;
        }
    }
    return 0;
}

int kd_json_merge_node(cJSON *target, const cJSON *patch)
{
    if (!cJSON_IsObject(target) || !cJSON_IsObject(patch))
        return -1;
    return merge_object(target, patch);
}

/* ---- loading ------------------------------------------------------------------------------- */

/* Merge the state file's copy of the self node into the live self node (Cfg). */
static int merge_self(kd_state *st, const kraken_node *from_file, char *err, size_t errlen)
{
    const kraken_uuid *self = kraken_engine_self_id(st->engine);
    kraken_node *current = NULL, *merged = NULL;
    char *cur_text = NULL, *file_text = NULL, *merged_text = NULL;
    cJSON *cur = NULL, *file = NULL;
    int rc = -1;
    if (kraken_store_read(st->store, KRAKEN_CFG, self, &current) < 0 ||
        kraken_node_to_json(current, 0, &cur_text) < 0 ||
        kraken_node_to_json(from_file, 0, &file_text) < 0) {
        snprintf(err, errlen, "%s: self node: %s", st->path, kraken_error_last());
        goto out;
    }
    cur = cJSON_Parse(cur_text);
    file = cJSON_Parse(file_text);
    if (!cur || !file || kd_json_merge_node(cur, file) < 0 ||
        !(merged_text = cJSON_PrintUnformatted(cur))) {
        snprintf(err, errlen, "%s: self node: cannot merge", st->path);
        goto out;
    }
    if (kraken_node_from_json(merged_text, strlen(merged_text), st->path, &merged) < 0 ||
        kraken_store_update(st->store, KRAKEN_CFG, merged) < 0) {
        snprintf(err, errlen, "%s", kraken_error_last());
        goto out;
    }
    rc = 0;
out:
    kraken_error_clear();
    cJSON_Delete(cur);
    cJSON_Delete(file);
    free(cur_text);
    free(file_text);
    free(merged_text);
    kraken_node_free(current);
    kraken_node_free(merged);
    return rc;
}

static int load_file(kd_state *st, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(st->path, &sb) < 0 && errno == ENOENT) {
        kd_log(KRAKEN_LOG_NOTICE, "state", "state file %s does not exist yet; it will be created",
               st->path);
        return 0;
    }
    kraken_node **nodes = NULL;
    size_t n = 0;
    if (kraken_nodes_load_file(st->path, &nodes, &n) < 0) {
        snprintf(err, errlen, "%s", kraken_error_last());
        kraken_error_clear();
        return -1;
    }
    const kraken_uuid *self = kraken_engine_self_id(st->engine);
    int rc = 0;
    size_t self_index = n;
    for (size_t i = 0; i < n; i++)
        if (kraken_uuid_compare(kraken_node_id(nodes[i]), self) == 0)
            self_index = i;
    kraken_node *self_node = NULL;
    if (self_index < n) {
        self_node = nodes[self_index];
        nodes[self_index] = nodes[n - 1];
        n--;
    }
    kraken_result *results = calloc(n ? n : 1, sizeof *results);
    size_t n_failed = 0;
    if (!results) {
        snprintf(err, errlen, "%s: out of memory", st->path);
        rc = -1;
    } else if (kraken_store_create_many(st->store, nodes, n, results, &n_failed) < 0 ||
               n_failed) {
        for (size_t i = 0; i < n; i++) {
            if (results[i].code < 0) {
                char id[KRAKEN_UUID_STRLEN + 1];
                snprintf(err, errlen, "%s: node %s: %s", st->path,
                         kraken_uuid_format(kraken_node_id(nodes[i]), id),
                         results[i].message ? results[i].message
                                            : kraken_strerror(results[i].code));
                break;
            }
        }
        rc = -1;
    }
    if (results)
        kraken_results_clear(results, n);
    free(results);
    kraken_error_clear();
    if (rc == 0 && self_node)
        rc = merge_self(st, self_node, err, errlen);
    if (rc == 0)
        kd_log(KRAKEN_LOG_NOTICE, "state", "loaded %zu node(s) from %s%s", n, st->path,
               self_node ? " (and merged this instance's own node)" : "");
    kraken_node_free(self_node);
    kraken_nodes_free(nodes, n);
    return rc;
}

/* ---- persistence --------------------------------------------------------------------------- */

static void arm(kd_state *st, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000 * 1000)};
    if (!evtimer_pending(st->timer, NULL))
        evtimer_add(st->timer, &tv);
}

static void on_change(const kraken_state_change *change, void *userdata)
{
    kd_state *st = userdata;
    if (change->kind == KRAKEN_CHANGE_UPDATE) /* Dsc: discovered, not persisted */
        return;
    st->dirty = true;
    arm(st, st->delay_ms);
}

static void on_timer(evutil_socket_t fd, short what, void *userdata)
{
    (void)fd;
    (void)what;
    kd_state *st = userdata;
    if (kd_state_flush(st) < 0)
        arm(st, 1000); /* retry: the disk may come back */
}

int kd_state_flush(kd_state *st)
{
    if (!st || !st->dirty)
        return 0;
    if (kraken_store_save(st->store, KRAKEN_CFG, st->path) < 0) {
        kd_log(KRAKEN_LOG_ERROR, "state", "cannot save %s: %s", st->path, kraken_error_last());
        kraken_error_clear();
        return -1;
    }
    st->dirty = false;
    st->saves++;
    if (evtimer_pending(st->timer, NULL))
        evtimer_del(st->timer);
    kd_log(KRAKEN_LOG_DEBUG, "state", "saved %s", st->path);
    return 0;
}

uint64_t kd_state_saves(const kd_state *st)
{
    return st ? st->saves : 0;
}

int kd_state_open(kd_state **out, kraken_engine *engine, struct event_base *base,
                  const char *path, uint64_t delay_ms, char *err, size_t errlen)
{
    *out = NULL;
    if (!path)
        return 0;
    kd_state *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path)) || !(st->timer = evtimer_new(base, on_timer, st))) {
        snprintf(err, errlen, "%s: out of memory", path);
        kd_state_close(st);
        return -1;
    }
    st->engine = engine;
    st->store = kraken_engine_store(engine);
    st->delay_ms = delay_ms;
    if (load_file(st, err, errlen) < 0 ||
        kraken_store_listen(st->store, on_change, st, NULL, &st->listener) < 0) {
        if (!*err)
            snprintf(err, errlen, "%s: %s", path, kraken_error_last());
        kd_state_close(st);
        return -1;
    }
    /* Write once now: the file then holds the whole Cfg, self node included. */
    st->dirty = true;
    if (kd_state_flush(st) < 0) {
        snprintf(err, errlen, "%s: cannot write the state file (see above)", path);
        kd_state_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

void kd_state_close(kd_state *st)
{
    if (!st)
        return;
    if (st->listener)
        kraken_store_listener_remove(st->listener);
    if (st->timer)
        event_free(st->timer);
    free(st->path);
    free(st);
}
