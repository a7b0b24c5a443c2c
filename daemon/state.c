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
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "kd.h"

/* Beyond this many changed nodes a flush rewrites the state file instead of journaling. */
#define JOURNAL_MAX_BATCH 2048
/* A journal this large is compacted at the next flush. */
#define JOURNAL_MAX_BYTES (64u << 20)
/* Compaction this long after the last flush. */
#define COMPACT_DELAY_MS 2000

struct kd_state {
    kraken_engine *engine;
    kraken_store *store;
    char *path;
    char *journal_path;
    int journal_fd;           /* -1 until the first append after a compaction */
    uint64_t journal_bytes;
    struct event *timer;      /* debounce: flush to the journal */
    struct event *compact_timer;
    kraken_store_listener *listener;
    uint64_t delay_ms;
    kraken_uuid *dirty;       /* Cfg nodes changed since the last flush (may repeat) */
    size_t n_dirty, cap_dirty;
    bool snapshot_needed;     /* too many changes for the journal: rewrite the file */
    bool compact_needed;      /* the journal holds changes the state file lacks */
    uint64_t saves, appends;
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

/* ---- journal replay ------------------------------------------------------------------------ */

/* Apply one journal line (idempotent: a put creates or replaces, a delete of a gone node is fine). */
static int replay_line(kd_state *st, const char *line, size_t len, size_t lineno, char *err,
                       size_t errlen)
{
    cJSON *j = cJSON_ParseWithLength(line, len);
    cJSON *put = cJSON_GetObjectItemCaseSensitive(j, "put");
    cJSON *del = cJSON_GetObjectItemCaseSensitive(j, "delete");
    kraken_node *node = NULL;
    char *text = NULL;
    int rc = -1;
    char source[4200];
    snprintf(source, sizeof source, "%s:%zu", st->journal_path, lineno);
    if (cJSON_IsString(del)) {
        kraken_uuid id;
        if (kraken_uuid_parse(&id, del->valuestring) < 0) {
            snprintf(err, errlen, "%s:%zu: invalid node id '%s'", st->journal_path, lineno,
                     del->valuestring);
        } else {
            if (kraken_uuid_compare(&id, kraken_engine_self_id(st->engine)) != 0 &&
                kraken_store_contains(st->store, &id))
                kraken_store_delete(st->store, &id);
            rc = 0;
        }
    } else if (cJSON_IsObject(put) && (text = cJSON_PrintUnformatted(put)) &&
               kraken_node_from_json(text, strlen(text), source, &node) == 0) {
        rc = kraken_store_contains(st->store, kraken_node_id(node))
                 ? kraken_store_update(st->store, KRAKEN_CFG, node)
                 : kraken_store_create(st->store, node);
        if (rc < 0)
            snprintf(err, errlen, "%s: %s", source, kraken_error_last());
    } else if (text) { /* the node did not decode; the message names source, node and field */
        snprintf(err, errlen, "%s", kraken_error_last());
    } else {
        snprintf(err, errlen, "%s: expected {\"put\": {node}} or {\"delete\": \"<id>\"}", source);
    }
    kraken_error_clear();
    kraken_node_free(node);
    free(text);
    cJSON_Delete(j);
    return rc < 0 ? -1 : 0;
}

static int replay_journal(kd_state *st, char *err, size_t errlen)
{
    FILE *fp = fopen(st->journal_path, "r");
    if (!fp) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: cannot open: %s", st->journal_path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0, applied = 0;
    ssize_t len;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, fp)) > 0) {
        lineno++;
        bool complete = line[len - 1] == '\n';
        if (!complete) {
            /* Only the last line can be torn (a crash mid-append); it was never acknowledged. */
            kd_log(KRAKEN_LOG_WARNING, "state", "%s:%zu: incomplete last line dropped",
                   st->journal_path, lineno);
            break;
        }
        if ((rc = replay_line(st, line, (size_t)len - 1, lineno, err, errlen)) == 0)
            applied++;
    }
    free(line);
    fclose(fp);
    if (rc == 0 && applied) {
        kd_log(KRAKEN_LOG_NOTICE, "state", "replayed %zu change(s) from %s", applied,
               st->journal_path);
        st->compact_needed = true;
    }
    return rc;
}

/* ---- persistence --------------------------------------------------------------------------- */

static void arm(struct event *timer, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000 * 1000)};
    if (!evtimer_pending(timer, NULL))
        evtimer_add(timer, &tv);
}

static void mark_dirty(kd_state *st, const kraken_uuid *id)
{
    if (st->snapshot_needed)
        return;
    if (st->n_dirty == st->cap_dirty) {
        size_t cap = st->cap_dirty ? st->cap_dirty * 2 : 64;
        kraken_uuid *grown = cap <= JOURNAL_MAX_BATCH ? realloc(st->dirty, cap * sizeof *grown)
                                                      : NULL;
        if (!grown) { /* too many (or no memory): the next flush rewrites the whole file */
            st->snapshot_needed = true;
            st->n_dirty = 0;
            return;
        }
        st->dirty = grown;
        st->cap_dirty = cap;
    }
    st->dirty[st->n_dirty++] = *id;
}

static void on_change(const kraken_state_change *change, void *userdata)
{
    kd_state *st = userdata;
    if (change->kind == KRAKEN_CHANGE_UPDATE) /* Dsc: discovered, not persisted */
        return;
    mark_dirty(st, &change->node_id);
    arm(st->timer, st->delay_ms);
}

static bool pending(const kd_state *st)
{
    return st->n_dirty || st->snapshot_needed;
}

static void on_timer(evutil_socket_t fd, short what, void *userdata)
{
    (void)fd;
    (void)what;
    kd_state *st = userdata;
    if (kd_state_flush(st) < 0)
        arm(st->timer, 1000); /* retry: the disk may come back */
}

/* Rewrite the state file from the store and drop the journal; @p err (may be NULL): why not. */
static int compact_or_say(kd_state *st, char *err, size_t errlen)
{
    if (kraken_store_save(st->store, KRAKEN_CFG, st->path) < 0) {
        if (err)
            snprintf(err, errlen, "%s", kraken_error_last());
        else
            kd_log(KRAKEN_LOG_ERROR, "state", "cannot save %s: %s", st->path,
                   kraken_error_last());
        kraken_error_clear();
        return -1;
    }
    if (st->journal_fd >= 0) {
        close(st->journal_fd);
        st->journal_fd = -1;
    }
    if (unlink(st->journal_path) < 0 && errno != ENOENT)
        kd_log(KRAKEN_LOG_WARNING, "state", "cannot remove %s: %s", st->journal_path,
               strerror(errno));
    st->journal_bytes = 0;
    st->compact_needed = st->snapshot_needed = false;
    st->n_dirty = 0;
    st->saves++;
    if (evtimer_pending(st->compact_timer, NULL))
        evtimer_del(st->compact_timer);
    kd_log(KRAKEN_LOG_DEBUG, "state", "saved %s", st->path);
    return 0;
}

static int compact(kd_state *st)
{
    return compact_or_say(st, NULL, 0);
}

static void on_compact(evutil_socket_t fd, short what, void *userdata)
{
    (void)fd;
    (void)what;
    kd_state *st = userdata;
    if (pending(st) && kd_state_flush(st) < 0)
        return; /* the flush timer retries and re-arms compaction */
    if (st->compact_needed && compact(st) < 0)
        arm(st->compact_timer, 1000);
}

static int uuid_cmp(const void *a, const void *b)
{
    return kraken_uuid_compare(a, b);
}

/* fsync the directory of the journal, so that a newly created journal file is found. */
static void sync_dir(const char *path)
{
    char *dir = strdup(path);
    if (!dir)
        return;
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

/* The changed nodes as journal lines, appended in one write and made durable. */
static int append_journal(kd_state *st)
{
    qsort(st->dirty, st->n_dirty, sizeof *st->dirty, uuid_cmp);
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (!mem)
        return -1;
    for (size_t i = 0; i < st->n_dirty; i++) {
        if (i && kraken_uuid_compare(&st->dirty[i - 1], &st->dirty[i]) == 0)
            continue;
        char id[KRAKEN_UUID_STRLEN + 1];
        kraken_node *node = NULL;
        char *text = NULL;
        if (kraken_store_read(st->store, KRAKEN_CFG, &st->dirty[i], &node) == 0 &&
            kraken_node_to_json(node, 0, &text) == 0)
            fprintf(mem, "{\"put\":%s}\n", text);
        else
            fprintf(mem, "{\"delete\":\"%s\"}\n", kraken_uuid_format(&st->dirty[i], id));
        kraken_error_clear();
        free(text);
        kraken_node_free(node);
    }
    if (fclose(mem) != 0 || !buf) {
        free(buf);
        return -1;
    }
    bool created = false;
    if (st->journal_fd < 0) {
        st->journal_fd = open(st->journal_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        created = true;
    }
    int rc = st->journal_fd < 0 ? -1 : 0;
    for (size_t off = 0; rc == 0 && off < len;) {
        ssize_t w = write(st->journal_fd, buf + off, len - off);
        if (w < 0 && errno != EINTR)
            rc = -1;
        else if (w > 0)
            off += (size_t)w;
    }
    if (rc == 0 && fdatasync(st->journal_fd) < 0)
        rc = -1;
    if (rc < 0) {
        kd_log(KRAKEN_LOG_ERROR, "state", "cannot append to %s: %s", st->journal_path,
               strerror(errno));
        /* A partial append leaves a torn line: the rewrite below replaces the whole journal. */
        st->snapshot_needed = true;
    } else {
        if (created)
            sync_dir(st->journal_path);
        st->journal_bytes += len;
        st->appends++;
    }
    free(buf);
    return rc;
}

int kd_state_flush(kd_state *st)
{
    if (!st || !pending(st))
        return 0;
    bool rewrite = st->snapshot_needed || st->journal_bytes > JOURNAL_MAX_BYTES;
    if (!rewrite && append_journal(st) < 0)
        rewrite = true; /* the journal failed: try the state file itself */
    if (rewrite) {
        if (compact(st) < 0)
            return -1;
    } else {
        st->n_dirty = 0;
        st->compact_needed = true;
        /* Compact a moment after the changes stop (re-armed by every flush). */
        if (evtimer_pending(st->compact_timer, NULL))
            evtimer_del(st->compact_timer);
        arm(st->compact_timer, COMPACT_DELAY_MS);
    }
    if (evtimer_pending(st->timer, NULL))
        evtimer_del(st->timer);
    return 0;
}

uint64_t kd_state_saves(const kd_state *st)
{
    return st ? st->saves : 0;
}

uint64_t kd_state_journal_appends(const kd_state *st)
{
    return st ? st->appends : 0;
}

int kd_state_open(kd_state **out, kraken_engine *engine, struct event_base *base,
                  const char *path, uint64_t delay_ms, char *err, size_t errlen)
{
    *out = NULL;
    if (!path)
        return 0;
    kd_state *st = calloc(1, sizeof *st);
    if (st)
        st->journal_fd = -1;
    if (!st || !(st->path = strdup(path)) ||
        asprintf(&st->journal_path, "%s.journal", path) < 0 ||
        !(st->timer = evtimer_new(base, on_timer, st)) ||
        !(st->compact_timer = evtimer_new(base, on_compact, st))) {
        if (st)
            st->journal_path = NULL;
        snprintf(err, errlen, "%s: out of memory", path);
        kd_state_close(st);
        return -1;
    }
    st->engine = engine;
    st->store = kraken_engine_store(engine);
    st->delay_ms = delay_ms;
    if (load_file(st, err, errlen) < 0 || replay_journal(st, err, errlen) < 0 ||
        kraken_store_listen(st->store, on_change, st, NULL, &st->listener) < 0) {
        if (!*err)
            snprintf(err, errlen, "%s: %s", path, kraken_error_last());
        kd_state_close(st);
        return -1;
    }
    /* Write once now: the file then holds the whole Cfg, self node and journal included. */
    if (compact_or_say(st, err, errlen) < 0) {
        kraken_store_listener_remove(st->listener); /* nothing to save at close */
        st->listener = NULL;
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
    /* A clean stop leaves the state file whole and no journal. */
    if (st->listener && (pending(st) || st->compact_needed)) {
        if (pending(st))
            kd_state_flush(st);
        if (st->compact_needed)
            compact(st);
    }
    if (st->listener)
        kraken_store_listener_remove(st->listener);
    if (st->journal_fd >= 0)
        close(st->journal_fd);
    if (st->timer)
        event_free(st->timer);
    if (st->compact_timer)
        event_free(st->compact_timer);
    free(st->dirty);
    free(st->journal_path);
    free(st->path);
    free(st);
}
