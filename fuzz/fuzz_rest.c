/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Fuzz target for kraken-daemon's REST request -> JSON answer path
 * (daemon/routes.c): the first byte picks the method, the path runs to the
 * first newline, the rest is the body. Each input runs against a fresh engine
 * holding the cluster4 fixture nodes. Invariants: every answer has a known
 * status, JSON answers parse, errors are {"error": "..."}, and a refused
 * write changes nothing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "kd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *seed_nodes =
    "{\"nodes\": ["
    "{\"id\": \"c0ffee00-0000-4000-8000-000000000001\", \"nodename\": \"head\", "
    "\"physState\": \"POWER_ON\"},"
    "{\"id\": \"4afdefa4-573b-5cfe-a419-c59075cf18a5\", \"nodename\": \"n1\", \"arch\": "
    "\"amd64\", \"platform\": \"sim\", \"parentId\": \"c0ffee00-0000-4000-8000-000000000001\", "
    "\"extensions\": [{\"@type\": \"type.googleapis.com/IPv4.IPv4OverEthernet\", \"ifaces\": "
    "{\"kraken\": {\"ip\": {\"ip\": \"10.0.0.1\"}}}}]},"
    "{\"id\": \"3ac72083-5f34-57a6-bc6b-6d3164394575\", \"nodename\": \"n2\", "
    "\"physState\": \"POWER_OFF\"}]}";

static void fail(const char *what, const kd_response *resp)
{
    fprintf(stderr, "invariant broken: %s (status %d, body %.*s)\n", what, resp->status,
            (int)resp->body_len, resp->body ? resp->body : "");
    abort();
}

static bool known_status(int s)
{
    return s == 200 || s == 400 || s == 404 || s == 405 || s == 409 || s == 500 || s == 503;
}

static char *snapshot(kraken_store *store)
{
    kraken_node **nodes = NULL;
    size_t n = 0;
    char *text = NULL;
    if (kraken_store_read_all(store, KRAKEN_CFG, &nodes, &n) == 0)
        kraken_nodes_to_json(nodes, n, 0, &text);
    kraken_nodes_free(nodes, n);
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *methods[] = {"GET", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "HEAD"};
    if (size < 1)
        return 0;
    kd_log_setup(-1, true); /* silent */
    const char *method = methods[data[0] % (sizeof methods / sizeof methods[0])];
    const uint8_t *nl = memchr(data + 1, '\n', size - 1);
    size_t path_len = nl ? (size_t)(nl - data - 1) : size - 1;
    char *path = strndup((const char *)data + 1, path_len);
    const char *body = nl ? (const char *)nl + 1 : "";
    size_t body_len = nl ? size - path_len - 2 : 0;

    struct event_base *base = event_base_new();
    kraken_engine *engine = NULL;
    kraken_engine_options eo = KRAKEN_ENGINE_OPTIONS_INIT;
    kraken_uuid_parse(&eo.self_id, "c0ffee00-0000-4000-8000-000000000001");
    if (!path || !base || kraken_engine_new(&engine, base, NULL, &eo) < 0)
        abort();
    kraken_store *store = kraken_engine_store(engine);
    kraken_node **nodes = NULL;
    size_t n = 0;
    if (kraken_nodes_from_json(seed_nodes, strlen(seed_nodes), "seed", &nodes, &n) < 0)
        abort();
    for (size_t i = 1; i < n; i++)
        kraken_store_create(store, nodes[i]);
    kraken_nodes_free(nodes, n);
    kd_metrics *metrics = NULL;
    kd_metrics_new(&metrics);
    kd_api api = {.engine = engine, .store = store, .metrics = metrics};

    char *before = snapshot(store);
    kd_request req = {.method = method, .path = path, .body = body, .body_len = body_len,
                      .host = "127.0.0.1"};
    kd_response resp;
    kd_rest_dispatch(&api, &req, &resp);
    kd_metrics_observe(metrics, method, resp.route, resp.status, 0.001);
    if (!known_status(resp.status))
        fail("unknown status", &resp);
    if (resp.content_type && strcmp(resp.content_type, "application/json") == 0) {
        cJSON *j = cJSON_ParseWithLength(resp.body, resp.body_len);
        if (!j)
            fail("answer is not JSON", &resp);
        if (resp.status >= 400 && !(resp.status == 400 && cJSON_GetObjectItem(j, "nodes")) &&
            !cJSON_IsString(cJSON_GetObjectItem(j, "error")))
            fail("error answer without \"error\"", &resp);
        cJSON_Delete(j);
    }
    char *after = snapshot(store);
    if (resp.status >= 400 && (!before || !after || strcmp(before, after) != 0))
        fail("a refused request changed Cfg", &resp);
    free(before);
    free(after);
    free(resp.body);
    free(path);
    kd_metrics_free(metrics);
    kraken_engine_free(engine);
    event_base_free(base);
    return 0;
}
