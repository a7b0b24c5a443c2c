/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * routes.c: the REST API's routes (SPEC 9.2), independent of the HTTP
 * library: a request (method, path, body) in, a status and JSON body out.
 *
 * Shapes and status codes are the original's, so its dashboard, krakenctl
 * and scripts work unchanged: node lists are {"nodes": [...]}, single nodes
 * are the node object, create conflicts are 409, reads of unknown nodes 404,
 * bad bodies 400. Beyond the original: every error has a JSON body
 * {"error": "..."}, bulk answers list the failed items under "errors",
 * PATCH merges, /graph/node/{id}/path tells a node's plan, /metrics, and 405
 * (with Allow) for a known path with a wrong method.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kd.h"

typedef void (*handler_fn)(kd_api *api, const kd_request *req, const kraken_uuid *id,
                           kd_response *resp);

typedef struct method_handler {
    const char *method;
    handler_fn fn;
    bool write;
} method_handler;

typedef struct route {
    const char *tmpl; /* "/cfg/node/{id}": "{id}" matches one path component */
    const char *allow;
    method_handler methods[5];
} route;

/* ---- answers ------------------------------------------------------------------------------- */

static void reply(kd_response *resp, int status, char *body)
{
    free(resp->body);
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = body;
    resp->body_len = body ? strlen(body) : 0;
}

static void reply_error(kd_response *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply_error(kd_response *resp, int status, const char *fmt, ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    char *text = NULL;
    if (o && cJSON_AddStringToObject(o, "error", message))
        text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    reply(resp, status, text ? text : strdup("{\"error\":\"out of memory\"}"));
    if (!resp->body)
        resp->status = 500;
}

/*
 * A library message for a REST client. libkraken starts its messages with the C function that
 * failed ("store_update: node ID not found"), which helps a programmer but means nothing to an
 * API user: drop a leading "lower_case_name: " that has an underscore (plain words such as
 * "request body: " stay).
 */
static const char *user_message(const char *msg)
{
    const char *p = msg;
    bool underscore = false;
    while ((*p >= 'a' && *p <= 'z') || *p == '_') {
        underscore |= *p == '_';
        p++;
    }
    return underscore && p[0] == ':' && p[1] == ' ' && p[2] ? p + 2 : msg;
}

/* The library's last error as an answer; the status follows the error code. */
static void reply_kraken_error(kd_response *resp, int rc)
{
    int status = 400;
    if (rc == KRAKEN_ENOTFOUND)
        status = 404;
    else if (rc == KRAKEN_EEXISTS)
        status = 409;
    else if (rc == KRAKEN_ENOMEM || rc == KRAKEN_EIO)
        status = 500;
    const char *msg = kraken_error_last();
    reply_error(resp, status, "%s", *msg ? user_message(msg) : kraken_strerror(rc));
    kraken_error_clear();
}

static void reply_cjson(kd_response *resp, int status, cJSON *o)
{
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text) {
        reply_error(resp, 500, "out of memory");
        return;
    }
    reply(resp, status, text);
}

static void reply_node(kd_response *resp, const kraken_node *node)
{
    char *text = NULL;
    int rc = kraken_node_to_json(node, 0, &text);
    if (rc < 0) {
        reply_kraken_error(resp, rc);
        return;
    }
    reply(resp, 200, text);
}

/* ---- request bodies ------------------------------------------------------------------------ */

/* "request body: invalid JSON at line L, column C" */
static void reply_bad_json(kd_response *resp, const kd_request *req)
{
    const char *at = cJSON_GetErrorPtr();
    size_t off = at && at >= req->body && at <= req->body + req->body_len
                     ? (size_t)(at - req->body) : 0;
    size_t line = 1, col = 1;
    for (size_t i = 0; i < off; i++) {
        if (req->body[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    if (!req->body_len)
        reply_error(resp, 400, "request body: empty (expected JSON)");
    else
        reply_error(resp, 400, "request body: invalid JSON at line %zu, column %zu", line, col);
}

/* Parse one node from the body; the path id (if any) must agree with the body's. */
static kraken_node *body_node(const kd_request *req, const kraken_uuid *path_id,
                              kd_response *resp)
{
    cJSON *j = cJSON_ParseWithLength(req->body, req->body_len);
    if (!j) {
        reply_bad_json(resp, req);
        return NULL;
    }
    bool object = cJSON_IsObject(j);
    cJSON_Delete(j);
    if (!object) {
        reply_error(resp, 400, "request body: expected a node object");
        return NULL;
    }
    kraken_node *node = NULL;
    int rc = kraken_node_from_json(req->body, req->body_len, "request body", &node);
    if (rc < 0) {
        reply_kraken_error(resp, rc);
        return NULL;
    }
    const kraken_uuid *body_id = kraken_node_id(node);
    char a[KRAKEN_UUID_STRLEN + 1], b[KRAKEN_UUID_STRLEN + 1];
    if (path_id && kraken_uuid_is_zero(body_id)) {
        kraken_node_set_id(node, path_id);
    } else if (path_id && kraken_uuid_compare(body_id, path_id) != 0) {
        reply_error(resp, 400, "request body: node id %s does not match the URL's %s",
                    kraken_uuid_format(body_id, a), kraken_uuid_format(path_id, b));
        kraken_node_free(node);
        return NULL;
    } else if (kraken_uuid_is_zero(body_id)) {
        reply_error(resp, 400, "request body: the node has no id");
        kraken_node_free(node);
        return NULL;
    }
    return node;
}

/* ---- node lists ---------------------------------------------------------------------------- */

static void get_nodes(kd_api *api, kraken_state_kind kind, kd_response *resp)
{
    char *text = NULL;
    int rc = kraken_store_to_json(api->store, kind, 0, &text);
    if (rc < 0)
        reply_kraken_error(resp, rc);
    else
        reply(resp, 200, text);
}

static void h_get_cfg_nodes(kd_api *api, const kd_request *req, const kraken_uuid *id,
                            kd_response *resp)
{
    (void)req;
    (void)id;
    get_nodes(api, KRAKEN_CFG, resp);
}

static void h_get_dsc_nodes(kd_api *api, const kd_request *req, const kraken_uuid *id,
                            kd_response *resp)
{
    (void)req;
    (void)id;
    get_nodes(api, KRAKEN_DSC, resp);
}

/* One item of a bulk request that failed before or in the store. */
static int add_item_error(cJSON *errors, size_t index, const char *id, const char *message)
{
    cJSON *e = cJSON_CreateObject();
    if (!e || !cJSON_AddNumberToObject(e, "index", (double)index) ||
        (id && !cJSON_AddStringToObject(e, "id", id)) ||
        !cJSON_AddStringToObject(e, "error", user_message(message)) ||
        !cJSON_AddItemToArray(errors, e)) {
        cJSON_Delete(e);
        return -1;
    }
    return 0;
}

static int error_index_cmp(const void *a, const void *b)
{
    double x = cJSON_GetObjectItem(*(cJSON *const *)a, "index")->valuedouble;
    double y = cJSON_GetObjectItem(*(cJSON *const *)b, "index")->valuedouble;
    return (x > y) - (x < y);
}

static void sort_errors(cJSON *errors)
{
    int n = cJSON_GetArraySize(errors);
    cJSON **items = n > 1 ? malloc((size_t)n * sizeof *items) : NULL;
    if (!items)
        return;
    for (int i = 0; i < n; i++)
        items[i] = cJSON_DetachItemFromArray(errors, 0);
    qsort(items, (size_t)n, sizeof *items, error_index_cmp);
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(errors, items[i]);
    free(items);
}

/*
 * Decode {"nodes": [...]} item by item, so one bad item is reported and the
 * others still go through. The common all-good case decodes in one call.
 */
static int decode_node_list(const kd_request *req, kraken_node ***nodes_out, size_t **index_out,
                            size_t *n_out, size_t *total, cJSON *errors, kd_response *resp)
{
    *nodes_out = NULL;
    *index_out = NULL;
    *n_out = 0;
    cJSON *root = cJSON_ParseWithLength(req->body, req->body_len);
    if (!root) {
        reply_bad_json(resp, req);
        return -1;
    }
    cJSON *list = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "nodes") : NULL;
    if (!cJSON_IsObject(root) || (list && !cJSON_IsArray(list))) {
        cJSON_Delete(root);
        reply_error(resp, 400, "request body: expected {\"nodes\": [...]}");
        return -1;
    }
    size_t n = (size_t)cJSON_GetArraySize(list);
    *total = n;
    kraken_node **nodes = calloc(n ? n : 1, sizeof *nodes);
    size_t *index = calloc(n ? n : 1, sizeof *index);
    if (!nodes || !index) {
        free(nodes);
        free(index);
        cJSON_Delete(root);
        reply_error(resp, 500, "out of memory");
        return -1;
    }
    kraken_node **all = NULL;
    size_t n_all = 0;
    bool all_ok = kraken_nodes_from_json(req->body, req->body_len, "request body", &all,
                                         &n_all) == 0 && n_all == n;
    for (size_t i = 0; all_ok && i < n_all; i++)
        all_ok = !kraken_uuid_is_zero(kraken_node_id(all[i]));
    if (all_ok) {
        for (size_t i = 0; i < n; i++) {
            nodes[i] = all[i];
            index[i] = i;
        }
        free(all);
        *n_out = n;
    } else {
        kraken_nodes_free(all, n_all);
        kraken_error_clear();
        size_t i = 0, ok = 0;
        cJSON *item;
        cJSON_ArrayForEach(item, list) {
            char source[64];
            snprintf(source, sizeof source, "request body: node %zu", i);
            char *text = cJSON_PrintUnformatted(item);
            kraken_node *node = NULL;
            const cJSON *jid = cJSON_IsObject(item) ? cJSON_GetObjectItem(item, "id") : NULL;
            const char *id_text = cJSON_IsString(jid) ? jid->valuestring : NULL;
            if (!cJSON_IsObject(item)) {
                add_item_error(errors, i, NULL, "expected a node object");
            } else if (!text ||
                       kraken_node_from_json(text, strlen(text), source, &node) < 0) {
                add_item_error(errors, i, id_text, text ? kraken_error_last() : "out of memory");
                kraken_error_clear();
            } else if (kraken_uuid_is_zero(kraken_node_id(node))) {
                add_item_error(errors, i, NULL, "the node has no id");
                kraken_node_free(node);
            } else {
                nodes[ok] = node;
                index[ok++] = i;
            }
            free(text);
            i++;
        }
        *n_out = ok;
    }
    cJSON_Delete(root);
    *nodes_out = nodes;
    *index_out = index;
    return 0;
}

enum bulk_op { BULK_CREATE, BULK_UPDATE_CFG, BULK_UPDATE_DSC };

static void bulk(kd_api *api, const kd_request *req, enum bulk_op op, kd_response *resp)
{
    cJSON *errors = cJSON_CreateArray();
    kraken_node **nodes = NULL;
    size_t *index = NULL, n = 0, total = 0;
    if (!errors) {
        reply_error(resp, 500, "out of memory");
        return;
    }
    if (decode_node_list(req, &nodes, &index, &n, &total, errors, resp) < 0) {
        cJSON_Delete(errors);
        return;
    }
    kraken_result *results = calloc(n ? n : 1, sizeof *results);
    kraken_node **done = calloc(n ? n : 1, sizeof *done); /* borrowed from nodes[] */
    size_t n_done = 0;
    if (!results || !done) {
        reply_error(resp, 500, "out of memory");
        goto out;
    }
    kraken_state_kind kind = op == BULK_UPDATE_DSC ? KRAKEN_DSC : KRAKEN_CFG;
    if (op == BULK_CREATE)
        kraken_store_create_many(api->store, nodes, n, results, NULL);
    else
        kraken_store_update_many(api->store, kind, nodes, n, results, NULL);
    for (size_t i = 0; i < n; i++) {
        char id[KRAKEN_UUID_STRLEN + 1];
        kraken_uuid_format(kraken_node_id(nodes[i]), id);
        if (results[i].code < 0) {
            add_item_error(errors, index[i], id,
                           results[i].message ? results[i].message
                                              : kraken_strerror(results[i].code));
        } else {
            /* A create or replace stores exactly the given node: answer with it, no re-read. */
            done[n_done++] = nodes[i];
        }
    }
    kraken_error_clear();
    /* Failed items in request order (decoding failures were listed first). */
    sort_errors(errors);
    char *nodes_text = NULL, *errors_text = cJSON_PrintUnformatted(errors);
    int rc = kraken_nodes_to_json(done, n_done, 0, &nodes_text);
    char *end = nodes_text ? strrchr(nodes_text, '}') : NULL;
    if (rc < 0 || !errors_text || !end) {
        free(nodes_text);
        free(errors_text);
        reply_error(resp, 500, "cannot encode the answer");
        goto out;
    }
    /* {"nodes":[...]} + ,"errors":[...]} */
    size_t head = (size_t)(end - nodes_text), el = strlen(errors_text);
    char *text = malloc(head + el + 16);
    if (text) {
        memcpy(text, nodes_text, head);
        memcpy(text + head, ",\"errors\":", 10);
        memcpy(text + head + 10, errors_text, el);
        memcpy(text + head + 10 + el, "}", 2);
    }
    free(nodes_text);
    free(errors_text);
    if (!text) {
        reply_error(resp, 500, "out of memory");
        goto out;
    }
    /* Every item failed: the request as a whole did nothing. */
    reply(resp, total > 0 && n_done == 0 ? 400 : 200, text);
out:
    if (results)
        kraken_results_clear(results, n);
    free(results);
    free(done);
    kraken_nodes_free(nodes, n);
    free(index);
    cJSON_Delete(errors);
}

static void h_put_cfg_nodes(kd_api *api, const kd_request *req, const kraken_uuid *id,
                            kd_response *resp)
{
    (void)id;
    bulk(api, req, BULK_UPDATE_CFG, resp);
}

static void h_post_cfg_nodes(kd_api *api, const kd_request *req, const kraken_uuid *id,
                             kd_response *resp)
{
    (void)id;
    bulk(api, req, BULK_CREATE, resp);
}

static void h_put_dsc_nodes(kd_api *api, const kd_request *req, const kraken_uuid *id,
                            kd_response *resp)
{
    (void)id;
    bulk(api, req, BULK_UPDATE_DSC, resp);
}

/* ---- single nodes -------------------------------------------------------------------------- */

static void get_node(kd_api *api, kraken_state_kind kind, const kraken_uuid *id,
                     kd_response *resp)
{
    kraken_node *node = NULL;
    int rc = kraken_store_read(api->store, kind, id, &node);
    if (rc < 0) {
        char buf[KRAKEN_UUID_STRLEN + 1];
        kraken_error_clear();
        reply_error(resp, rc == KRAKEN_ENOTFOUND ? 404 : 500, "node %s not found",
                    kraken_uuid_format(id, buf));
        return;
    }
    reply_node(resp, node);
    kraken_node_free(node);
}

static void h_get_cfg_node(kd_api *api, const kd_request *req, const kraken_uuid *id,
                           kd_response *resp)
{
    (void)req;
    get_node(api, KRAKEN_CFG, id, resp);
}

static void h_get_dsc_node(kd_api *api, const kd_request *req, const kraken_uuid *id,
                           kd_response *resp)
{
    (void)req;
    get_node(api, KRAKEN_DSC, id, resp);
}

static void h_post_cfg_node(kd_api *api, const kd_request *req, const kraken_uuid *id,
                            kd_response *resp)
{
    kraken_node *node = body_node(req, id, resp);
    if (!node)
        return;
    int rc = kraken_store_create(api->store, node);
    if (rc < 0)
        reply_kraken_error(resp, rc);
    else
        get_node(api, KRAKEN_CFG, kraken_node_id(node), resp);
    kraken_node_free(node);
}

static void put_node(kd_api *api, kraken_state_kind kind, const kd_request *req,
                     const kraken_uuid *id, kd_response *resp)
{
    kraken_node *node = body_node(req, id, resp);
    if (!node)
        return;
    int rc = kraken_store_update(api->store, kind, node);
    if (rc < 0)
        reply_kraken_error(resp, rc);
    else
        get_node(api, kind, kraken_node_id(node), resp);
    kraken_node_free(node);
}

static void h_put_cfg_node(kd_api *api, const kd_request *req, const kraken_uuid *id,
                           kd_response *resp)
{
    put_node(api, KRAKEN_CFG, req, id, resp);
}

static void h_put_dsc_node(kd_api *api, const kd_request *req, const kraken_uuid *id,
                           kd_response *resp)
{
    put_node(api, KRAKEN_DSC, req, id, resp);
}

/* PATCH: JSON merge of the body into the stored node, then a replace. */
static void patch_node(kd_api *api, kraken_state_kind kind, const kd_request *req,
                       const kraken_uuid *id, kd_response *resp)
{
    char buf[KRAKEN_UUID_STRLEN + 1];
    cJSON *patch = cJSON_ParseWithLength(req->body, req->body_len), *cur = NULL, *pid;
    kraken_node *node = NULL, *merged = NULL;
    char *text = NULL;
    int rc;
    if (!patch) {
        reply_bad_json(resp, req);
        return;
    }
    if (!cJSON_IsObject(patch)) {
        reply_error(resp, 400, "request body: expected a JSON object to merge into the node");
        goto out;
    }
    pid = cJSON_GetObjectItem(patch, "id");
    if (pid) {
        kraken_uuid body_id;
        if (!cJSON_IsString(pid) || kraken_uuid_parse(&body_id, pid->valuestring) < 0 ||
            kraken_uuid_compare(&body_id, id) != 0) {
            kraken_error_clear();
            reply_error(resp, 400, "request body: \"id\" must be absent or the URL's %s",
                        kraken_uuid_format(id, buf));
            goto out;
        }
    }
    if ((rc = kraken_store_read(api->store, kind, id, &node)) < 0) {
        kraken_error_clear();
        reply_error(resp, 404, "node %s not found", kraken_uuid_format(id, buf));
        goto out;
    }
    if ((rc = kraken_node_to_json(node, 0, &text)) < 0) {
        reply_kraken_error(resp, rc);
        goto out;
    }
    cur = cJSON_Parse(text);
    free(text);
    text = NULL;
    if (!cur || kd_json_merge_node(cur, patch) < 0) {
        reply_error(resp, 400, "request body: cannot merge (\"extensions\" items need \"@type\", "
                               "\"services\" items need \"id\")");
        goto out;
    }
    if (!(text = cJSON_PrintUnformatted(cur))) {
        reply_error(resp, 500, "out of memory");
        goto out;
    }
    if ((rc = kraken_node_from_json(text, strlen(text), "request body", &merged)) < 0 ||
        (rc = kraken_store_update(api->store, kind, merged)) < 0) {
        reply_kraken_error(resp, rc);
        goto out;
    }
    get_node(api, kind, id, resp);
out:
    free(text);
    cJSON_Delete(cur);
    cJSON_Delete(patch);
    kraken_node_free(node);
    kraken_node_free(merged);
}

static void h_patch_cfg_node(kd_api *api, const kd_request *req, const kraken_uuid *id,
                             kd_response *resp)
{
    patch_node(api, KRAKEN_CFG, req, id, resp);
}

static void h_patch_dsc_node(kd_api *api, const kd_request *req, const kraken_uuid *id,
                             kd_response *resp)
{
    patch_node(api, KRAKEN_DSC, req, id, resp);
}

static void h_delete_cfg_node(kd_api *api, const kd_request *req, const kraken_uuid *id,
                              kd_response *resp)
{
    (void)req;
    char buf[KRAKEN_UUID_STRLEN + 1];
    if (kraken_uuid_compare(id, kraken_engine_self_id(api->engine)) == 0) {
        reply_error(resp, 409, "node %s is this kraken instance itself; it cannot be deleted",
                    kraken_uuid_format(id, buf));
        return;
    }
    kraken_node *node = NULL;
    if (kraken_store_read(api->store, KRAKEN_CFG, id, &node) < 0) {
        kraken_error_clear();
        reply_error(resp, 404, "node %s not found", kraken_uuid_format(id, buf));
        return;
    }
    int rc = kraken_store_delete(api->store, id);
    if (rc < 0)
        reply_kraken_error(resp, rc);
    else
        reply_node(resp, node); /* the original answers with the deleted node */
    kraken_node_free(node);
}

/* ---- graph, plan, engine control ----------------------------------------------------------- */

static void graph(kd_api *api, const kraken_uuid *id, kd_response *resp)
{
    char *text = NULL;
    int rc = kraken_engine_graph_json(api->engine, id, &text);
    if (rc < 0) {
        reply_kraken_error(resp, rc);
        return;
    }
    reply(resp, 200, text);
}

static void h_graph(kd_api *api, const kd_request *req, const kraken_uuid *id, kd_response *resp)
{
    (void)req;
    (void)id;
    graph(api, NULL, resp);
}

static void h_graph_node(kd_api *api, const kd_request *req, const kraken_uuid *id,
                         kd_response *resp)
{
    (void)req;
    graph(api, id, resp);
}

static void h_graph_path(kd_api *api, const kd_request *req, const kraken_uuid *id,
                         kd_response *resp)
{
    (void)req;
    char buf[KRAKEN_UUID_STRLEN + 1];
    kraken_plan_status st;
    memset(&st, 0, sizeof st);
    int rc = kraken_engine_node_status(api->engine, id, &st);
    if (rc < 0) {
        reply_kraken_error(resp, rc);
        return;
    }
    cJSON *o = cJSON_CreateObject(), *steps = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "id", kraken_uuid_format(id, buf));
    cJSON_AddStringToObject(o, "state", kraken_plan_state_name(st.state));
    for (size_t i = 0; i < st.n_steps; i++)
        cJSON_AddItemToArray(steps, cJSON_CreateString(st.steps[i]));
    cJSON_AddItemToObject(o, "steps", steps);
    cJSON_AddNumberToObject(o, "current", (double)st.current);
    if (st.current < st.n_steps)
        cJSON_AddStringToObject(o, "currentStep", st.steps[st.current]);
    cJSON_AddNumberToObject(o, "failures", st.failures);
    cJSON_AddBoolToObject(o, "stuck", st.state == KRAKEN_PLAN_STUCK);
    if (st.reason)
        cJSON_AddStringToObject(o, "reason", st.reason);
    kraken_plan_status_clear(&st);
    reply_cjson(resp, 200, o);
}

static void reply_frozen(kd_api *api, kd_response *resp)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "frozen", kraken_engine_frozen(api->engine));
    reply_cjson(resp, 200, o);
}

static void h_freeze(kd_api *api, const kd_request *req, const kraken_uuid *id, kd_response *resp)
{
    (void)req;
    (void)id;
    kraken_engine_freeze(api->engine);
    kd_log(KRAKEN_LOG_NOTICE, "restapi", "state engine frozen");
    reply_frozen(api, resp);
}

static void h_thaw(kd_api *api, const kd_request *req, const kraken_uuid *id, kd_response *resp)
{
    (void)req;
    (void)id;
    kraken_engine_thaw(api->engine);
    kd_log(KRAKEN_LOG_NOTICE, "restapi", "state engine thawed");
    reply_frozen(api, resp);
}

static void h_frozen(kd_api *api, const kd_request *req, const kraken_uuid *id, kd_response *resp)
{
    (void)req;
    (void)id;
    reply_frozen(api, resp);
}

/* ---- mutations ---------------------------------------------------------------------------- */

static cJSON *facts_json(const kraken_fact *facts, size_t n)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i < n; i++)
        cJSON_AddStringToObject(o, facts[i].url, facts[i].value ? facts[i].value : "");
    return o;
}

/* Every declared mutation with the overrides in force (serviceinstances.<id>.mutations). */
static void h_mutations(kd_api *api, const kd_request *req, const kraken_uuid *id,
                        kd_response *resp)
{
    (void)req;
    (void)id;
    static const char *contexts[] = {"SELF", "CHILD", "ALL"};
    kraken_mutation_info *infos = NULL;
    size_t n = 0;
    int rc = kraken_mutation_set_list(kraken_engine_mutations(api->engine), &infos, &n);
    if (rc < 0) {
        reply_kraken_error(resp, rc);
        return;
    }
    cJSON *root = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(root, "mutations");
    for (size_t i = 0; i < n; i++) {
        const kraken_mutation_info *m = &infos[i];
        cJSON *o = cJSON_CreateObject(), *mutates = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "service", m->service_id);
        cJSON_AddStringToObject(o, "id", m->mutation_id);
        for (size_t j = 0; j < m->n_mutates; j++) {
            cJSON *mu = cJSON_CreateObject();
            cJSON_AddStringToObject(mu, "url", m->mutates[j].url);
            cJSON_AddStringToObject(mu, "from", m->mutates[j].from ? m->mutates[j].from : "");
            cJSON_AddStringToObject(mu, "to", m->mutates[j].to ? m->mutates[j].to : "");
            cJSON_AddItemToArray(mutates, mu);
        }
        cJSON_AddItemToObject(o, "mutates", mutates);
        cJSON_AddItemToObject(o, "requires", facts_json(m->requires, m->n_requires));
        cJSON_AddItemToObject(o, "excludes", facts_json(m->excludes, m->n_excludes));
        cJSON_AddStringToObject(o, "context", (unsigned)m->context < 3 ? contexts[m->context]
                                                                       : "UNKNOWN");
        cJSON_AddNumberToObject(o, "timeoutMs", m->timeout_ms);
        cJSON_AddNumberToObject(o, "declaredTimeoutMs", m->declared_timeout_ms);
        if (m->fail_to.url)
            cJSON_AddItemToObject(o, "failTo", facts_json(&m->fail_to, 1));
        cJSON_AddNumberToObject(o, "cost", m->cost);
        cJSON_AddBoolToObject(o, "disabled", m->disabled);
        cJSON_AddItemToArray(list, o);
    }
    kraken_mutation_infos_free(infos, n);
    reply_cjson(resp, 200, root);
}

/* ---- enumerables, websocket, metrics ------------------------------------------------------- */

/* snake_case -> lowerCamel ("dns_nameservers" -> "dnsNameservers"), as the JSON names. */
static void lower_camel(const char *name, char *out, size_t len)
{
    size_t o = 0;
    bool up = false;
    for (const char *p = name; *p && o + 1 < len; p++) {
        if (*p == '_') {
            up = o > 0;
            continue;
        }
        out[o++] = up ? (char)toupper((unsigned char)*p) : *p;
        up = false;
    }
    out[o] = '\0';
}

static cJSON *enum_entry(const char *name, const char *url, const kraken_enum_type *type)
{
    cJSON *e = cJSON_CreateObject(), *options = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", name);
    cJSON_AddStringToObject(e, "url", url);
    for (size_t i = 0; type && i < kraken_enum_type_count(type); i++) {
        const char *member;
        int32_t number;
        char key[16];
        if (kraken_enum_type_member(type, i, &member, &number) < 0)
            continue;
        snprintf(key, sizeof key, "%d", (int)number);
        cJSON_AddStringToObject(options, key, member);
    }
    cJSON_AddItemToObject(e, "options", options);
    return e;
}

/* Not a route of the original: the types this daemon knows beyond the built-ins (its modules',
 * its -schemas files) in kraken_schema_load_json() format, so a client can decode its nodes. */
static void h_schemas(kd_api *api, const kd_request *req, const kraken_uuid *id,
                      kd_response *resp)
{
    (void)api;
    (void)req;
    (void)id;
    char *text = NULL;
    int rc = kraken_schema_describe_json(&text);
    if (rc < 0) {
        reply_kraken_error(resp, rc);
        return;
    }
    reply(resp, 200, text);
}

static void h_enumerables(kd_api *api, const kd_request *req, const kraken_uuid *id,
                          kd_response *resp)
{
    (void)req;
    (void)id;
    kraken_node *self = NULL;
    int rc = kraken_store_read(api->store, KRAKEN_CFG, kraken_engine_self_id(api->engine), &self);
    if (rc < 0) {
        reply_kraken_error(resp, rc);
        return;
    }
    cJSON *list = cJSON_CreateArray();
    for (size_t i = 0; i < kraken_node_extension_count(self); i++) {
        const kraken_schema *schema = kraken_node_extension_schema(self, i);
        for (size_t f = 0; schema && f < kraken_schema_field_count(schema); f++) {
            kraken_field_def def = {.version = KRAKEN_FIELD_DEF_VERSION};
            if (kraken_schema_field(schema, f, &def) < 0 || def.type != KRAKEN_T_ENUM)
                continue;
            char name[128], url[512];
            lower_camel(def.name, name, sizeof name);
            snprintf(url, sizeof url, "%s/%s", kraken_schema_type_url(schema), name);
            cJSON_AddItemToArray(list, enum_entry(name, url, kraken_enum_find(def.type_name)));
        }
    }
    kraken_node_free(self);
    kraken_error_clear();
    cJSON_AddItemToArray(list, enum_entry("PhysState", "physState", kraken_enum_find("PhysState")));
    cJSON_AddItemToArray(list, enum_entry("RunState", "runState", kraken_enum_find("RunState")));
    reply_cjson(resp, 200, list);
}

static void h_ws(kd_api *api, const kd_request *req, const kraken_uuid *id, kd_response *resp)
{
    (void)id;
    int port = 0;
    if (api->websocket_port) {
        port = api->websocket_port(api->websocket_userdata);
    } else {
        kraken_value v = KRAKEN_VALUE_INIT;
        if (kraken_store_get_value(api->store, KRAKEN_CFG, kraken_engine_self_id(api->engine),
                                   "/Services/websocket/Config/Port", &v) == 0 &&
            (v.type == KRAKEN_T_INT32 || v.type == KRAKEN_T_INT64))
            port = (int)v.v.i;
        kraken_value_clear(&v);
        kraken_error_clear();
    }
    if (port <= 0) {
        reply_error(resp, 503, "no websocket service is running on this instance");
        return;
    }
    char port_text[16], host[300];
    snprintf(port_text, sizeof port_text, "%d", port);
    const char *h = req->host && *req->host ? req->host : "127.0.0.1";
    /* Clients build "ws://HOST:PORT/ws": an IPv6 address needs its brackets. */
    snprintf(host, sizeof host, strchr(h, ':') ? "[%s]" : "%s", h);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "host", host);
    cJSON_AddStringToObject(o, "port", port_text); /* a string, as the original sent it */
    cJSON_AddStringToObject(o, "url", "/ws");
    reply_cjson(resp, 200, o);
}

static void h_metrics(kd_api *api, const kd_request *req, const kraken_uuid *id,
                      kd_response *resp)
{
    (void)req;
    (void)id;
    char *text = NULL;
    size_t len = 0;
    if (kd_metrics_render(api->metrics, api, &text, &len) < 0) {
        reply_error(resp, 500, "cannot render metrics");
        return;
    }
    reply(resp, 200, text);
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

/* ---- routing ------------------------------------------------------------------------------- */

static const route routes[] = {
    {"/cfg/nodes", "GET, PUT, POST, OPTIONS",
     {{"GET", h_get_cfg_nodes, false}, {"PUT", h_put_cfg_nodes, true},
      {"POST", h_post_cfg_nodes, true}}},
    {"/dsc/nodes", "GET, PUT, OPTIONS",
     {{"GET", h_get_dsc_nodes, false}, {"PUT", h_put_dsc_nodes, true}}},
    {"/cfg/node", "PUT, POST, OPTIONS",
     {{"PUT", h_put_cfg_node, true}, {"POST", h_post_cfg_node, true}}},
    {"/cfg/node/{id}", "GET, PUT, POST, PATCH, DELETE, OPTIONS",
     {{"GET", h_get_cfg_node, false}, {"PUT", h_put_cfg_node, true},
      {"POST", h_post_cfg_node, true}, {"PATCH", h_patch_cfg_node, true},
      {"DELETE", h_delete_cfg_node, true}}},
    {"/dsc/node", "PUT, OPTIONS", {{"PUT", h_put_dsc_node, true}}},
    {"/dsc/node/{id}", "GET, PUT, PATCH, OPTIONS",
     {{"GET", h_get_dsc_node, false}, {"PUT", h_put_dsc_node, true},
      {"PATCH", h_patch_dsc_node, true}}},
    {"/graph/json", "GET, OPTIONS", {{"GET", h_graph, false}}},
    {"/graph/node/{id}/json", "GET, OPTIONS", {{"GET", h_graph_node, false}}},
    {"/graph/node/{id}/path", "GET, OPTIONS", {{"GET", h_graph_path, false}}},
    {"/mutations", "GET, OPTIONS", {{"GET", h_mutations, false}}},
    /* The original froze and thawed on GET; POST is accepted too. Both change state. */
    {"/sme/freeze", "GET, POST, OPTIONS", {{"GET", h_freeze, true}, {"POST", h_freeze, true}}},
    {"/sme/thaw", "GET, POST, OPTIONS", {{"GET", h_thaw, true}, {"POST", h_thaw, true}}},
    {"/sme/frozen", "GET, OPTIONS", {{"GET", h_frozen, false}}},
    {"/enumerables", "GET, OPTIONS", {{"GET", h_enumerables, false}}},
    {"/schemas", "GET, OPTIONS", {{"GET", h_schemas, false}}},
    {"/ws", "GET, OPTIONS", {{"GET", h_ws, false}}},
    {"/metrics", "GET, OPTIONS", {{"GET", h_metrics, false}}},
};

/* Match @p path against a template; the "{id}" component is copied into @p param. */
static bool match(const char *tmpl, const char *path, char *param, size_t param_len)
{
    *param = '\0';
    while (*tmpl && *path) {
        if (strncmp(tmpl, "{id}", 4) == 0) {
            size_t n = strcspn(path, "/");
            if (n == 0 || n >= param_len)
                return false;
            memcpy(param, path, n);
            param[n] = '\0';
            path += n;
            tmpl += 4;
            continue;
        }
        if (*tmpl != *path)
            return false;
        tmpl++;
        path++;
    }
    return !*tmpl && !*path;
}

static const route *find_route(const char *path, char *param, size_t param_len)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (match(routes[i].tmpl, path, param, param_len))
            return &routes[i];
    return NULL;
}

static const method_handler *find_method(const route *r, const char *method)
{
    /* HEAD is GET without the body (evhttp leaves the body out of the answer). */
    if (strcmp(method, "HEAD") == 0)
        method = "GET";
    for (size_t i = 0; i < 5 && r->methods[i].method; i++)
        if (strcmp(r->methods[i].method, method) == 0)
            return &r->methods[i];
    return NULL;
}

int kd_route_lookup(const kd_request *req, kd_response *resp)
{
    char param[128];
    const route *r = find_route(req->path, param, sizeof param);
    resp->route = r ? r->tmpl : "unknown";
    resp->allow = r ? r->allow : NULL;
    if (!r)
        return -1;
    const method_handler *m = find_method(r, req->method);
    resp->write = m && m->write;
    return m ? 0 : -1;
}

void kd_rest_dispatch(kd_api *api, const kd_request *req, kd_response *resp)
{
    memset(resp, 0, sizeof *resp);
    char param[128];
    const route *r = find_route(req->path, param, sizeof param);
    if (!r) {
        resp->route = "unknown";
        reply_error(resp, 404, "no such route: %s", req->path);
        return;
    }
    resp->route = r->tmpl;
    resp->allow = r->allow;
    const method_handler *m = find_method(r, req->method);
    if (!m) {
        reply_error(resp, 405, "method %s is not allowed on %s (allowed: %s)", req->method,
                    r->tmpl, r->allow);
        return;
    }
    resp->write = m->write;
    kraken_uuid id, *idp = NULL;
    if (*param) {
        if (kraken_uuid_parse(&id, param) < 0) {
            kraken_error_clear();
            reply_error(resp, 400, "invalid node id '%s' in URL %s", param, req->path);
            return;
        }
        idp = &id;
    }
    m->fn(api, req, idp, resp);
    kraken_error_clear();
    /* An acknowledged write is on disk: a kill -9 right after the answer loses nothing. */
    if (!m->write || resp->status >= 300 || !api->state)
        return;
    if (api->defer_flush)
        resp->flush_pending = true;
    else if (kd_state_flush(api->state) < 0)
        kd_rest_reply_unsaved(resp);
}

void kd_rest_reply_unsaved(kd_response *resp)
{
    reply_error(resp, 500, "the change was applied but could not be saved to the state "
                           "file (see the daemon's log)");
}
