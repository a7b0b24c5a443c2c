/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * metrics.c: /metrics in the Prometheus text format (version 0.0.4).
 *
 * Request counters and latency histograms are kept per route template (not
 * per URL, so node ids do not explode the series); state figures (nodes by
 * state, plans, failures, sync counters) are computed at scrape time.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kd.h"

static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,   5,     10};
#define N_BUCKETS (sizeof buckets / sizeof buckets[0])

typedef struct counter {
    const char *method; /* static strings: the method names and route templates */
    const char *route;
    int status;
    uint64_t count;
} counter;

typedef struct histogram {
    const char *route;
    uint64_t bucket[N_BUCKETS];
    uint64_t count;
    double sum;
} histogram;

struct kd_metrics {
    counter *counters;
    size_t n_counters, cap_counters;
    histogram *hists;
    size_t n_hists, cap_hists;
};

int kd_metrics_new(kd_metrics **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : -1;
}

void kd_metrics_free(kd_metrics *m)
{
    if (!m)
        return;
    free(m->counters);
    free(m->hists);
    free(m);
}

static const char *static_method(const char *method)
{
    static const char *known[] = {"GET", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "HEAD"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(known[i], method) == 0)
            return known[i];
    return "OTHER";
}

void kd_metrics_observe(kd_metrics *m, const char *method, const char *route, int status,
                        double seconds)
{
    if (!m)
        return;
    method = static_method(method);
    counter *c = NULL;
    for (size_t i = 0; i < m->n_counters && !c; i++)
        if (m->counters[i].method == method && strcmp(m->counters[i].route, route) == 0 &&
            m->counters[i].status == status)
            c = &m->counters[i];
    if (!c) {
        if (m->n_counters == m->cap_counters) {
            size_t cap = m->cap_counters ? m->cap_counters * 2 : 32;
            counter *grown = realloc(m->counters, cap * sizeof *grown);
            if (!grown)
                return;
            m->counters = grown;
            m->cap_counters = cap;
        }
        c = &m->counters[m->n_counters++];
        *c = (counter){method, route, status, 0};
    }
    c->count++;
    histogram *h = NULL;
    for (size_t i = 0; i < m->n_hists && !h; i++)
        if (strcmp(m->hists[i].route, route) == 0)
            h = &m->hists[i];
    if (!h) {
        if (m->n_hists == m->cap_hists) {
            size_t cap = m->cap_hists ? m->cap_hists * 2 : 16;
            histogram *grown = realloc(m->hists, cap * sizeof *grown);
            if (!grown)
                return;
            m->hists = grown;
            m->cap_hists = cap;
        }
        h = &m->hists[m->n_hists++];
        memset(h, 0, sizeof *h);
        h->route = route;
    }
    for (size_t i = 0; i < N_BUCKETS; i++)
        if (seconds <= buckets[i])
            h->bucket[i]++;
    h->count++;
    h->sum += seconds;
}

/* ---- rendering ----------------------------------------------------------------------------- */

typedef struct text {
    char *buf;
    size_t len, cap;
    bool failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(text *t, const char *fmt, ...)
{
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap + (size_t)n) * 2;
        char *grown = realloc(t->buf, cap);
        if (!grown) {
            t->failed = true;
            return;
        }
        t->buf = grown;
        t->cap = cap;
    }
}

static void header(text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Nodes by discovered PhysState and RunState, plans by state, failures. */
static void render_nodes(text *t, kd_api *api)
{
    kraken_node **nodes = NULL;
    size_t n = 0;
    if (kraken_store_read_all(api->store, KRAKEN_DSC, &nodes, &n) < 0) {
        kraken_error_clear();
        return;
    }
    static const char *phys[] = {"PHYS_UNKNOWN", "POWER_OFF", "POWER_ON", "POWER_CYCLE",
                                 "PHYS_HANG", "PHYS_ERROR"};
    static const char *run[] = {"UNKNOWN", "INIT", "SYNC", "ERROR"};
    uint64_t by_phys[6] = {0}, by_run[4] = {0}, by_plan[8] = {0}, failures = 0;
    for (size_t i = 0; i < n; i++) {
        kraken_value v = KRAKEN_VALUE_INIT;
        if (kraken_node_get(nodes[i], "/PhysState", &v) == 0 && v.v.i >= 0 && v.v.i < 6)
            by_phys[v.v.i]++;
        kraken_value_clear(&v);
        if (kraken_node_get(nodes[i], "/RunState", &v) == 0 && v.v.i >= 0 && v.v.i < 4)
            by_run[v.v.i]++;
        kraken_value_clear(&v);
        kraken_plan_status st;
        memset(&st, 0, sizeof st);
        if (kraken_engine_node_status(api->engine, kraken_node_id(nodes[i]), &st) == 0) {
            if ((unsigned)st.state < 8)
                by_plan[st.state]++;
            failures += st.failures;
            kraken_plan_status_clear(&st);
        }
    }
    kraken_error_clear();
    kraken_nodes_free(nodes, n);
    header(t, "kraken_nodes", "gauge", "Nodes known to this instance.");
    put(t, "kraken_nodes %zu\n", n);
    header(t, "kraken_nodes_phys_state", "gauge", "Nodes by discovered PhysState.");
    for (size_t i = 0; i < 6; i++)
        put(t, "kraken_nodes_phys_state{state=\"%s\"} %" PRIu64 "\n", phys[i], by_phys[i]);
    header(t, "kraken_nodes_run_state", "gauge", "Nodes by discovered RunState.");
    for (size_t i = 0; i < 4; i++)
        put(t, "kraken_nodes_run_state{state=\"%s\"} %" PRIu64 "\n", run[i], by_run[i]);
    header(t, "kraken_plans", "gauge", "Nodes by plan state.");
    for (int i = 0; i < 8; i++)
        put(t, "kraken_plans{state=\"%s\"} %" PRIu64 "\n",
            kraken_plan_state_name((kraken_plan_state)i), by_plan[i]);
    header(t, "kraken_plans_in_flight", "gauge", "Nodes with a mutation step in flight.");
    put(t, "kraken_plans_in_flight %" PRIu64 "\n",
        by_plan[KRAKEN_PLAN_RUNNING] + by_plan[KRAKEN_PLAN_PASSIVE]);
    header(t, "kraken_plan_failures", "gauge", "Sum over nodes of failures in a row.");
    put(t, "kraken_plan_failures %" PRIu64 "\n", failures);
}

static void render_sync(text *t, kd_api *api)
{
    if (!api->sync)
        return;
    kraken_sync_stats s;
    kraken_sync_get_stats(api->sync, &s);
    const struct {
        const char *name;
        uint64_t value;
    } c[] = {
        {"datagrams_sent", s.datagrams_sent},
        {"datagrams_received", s.datagrams_received},
        {"bytes_sent", s.bytes_sent},
        {"bytes_received", s.bytes_received},
        {"tcp_messages_sent", s.tcp_messages_sent},
        {"tcp_messages_received", s.tcp_messages_received},
        {"dropped_bad_mac", s.dropped_bad_mac},
        {"dropped_unknown_sender", s.dropped_unknown_sender},
        {"dropped_replay", s.dropped_replay},
        {"dropped_not_authorized", s.dropped_not_authorized},
        {"dropped_malformed", s.dropped_malformed},
        {"joins_accepted", s.joins_accepted},
        {"joins_refused", s.joins_refused},
        {"full_resends", s.full_resends},
        {"peers_lost", s.peers_lost},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "kraken_sync_%s_total", c[i].name);
        header(t, name, "counter", "Sync protocol counter (see kraken_sync_stats).");
        put(t, "%s %" PRIu64 "\n", name, c[i].value);
    }
    header(t, "kraken_sync_children", "gauge", "Children with a live sync link.");
    put(t, "kraken_sync_children %zu\n", kraken_sync_children(api->sync));
    header(t, "kraken_sync_joined", "gauge", "1 while a child's link to its parent is up.");
    put(t, "kraken_sync_joined %d\n", kraken_sync_joined(api->sync) ? 1 : 0);
}

static void render_http(text *t, kd_metrics *m)
{
    header(t, "kraken_http_requests_total", "counter", "REST requests by method, route and code.");
    for (size_t i = 0; i < m->n_counters; i++)
        put(t, "kraken_http_requests_total{method=\"%s\",route=\"%s\",code=\"%d\"} %" PRIu64 "\n",
            m->counters[i].method, m->counters[i].route, m->counters[i].status,
            m->counters[i].count);
    header(t, "kraken_http_request_duration_seconds", "histogram",
           "REST request handling time by route.");
    for (size_t i = 0; i < m->n_hists; i++) {
        const histogram *h = &m->hists[i];
        for (size_t b = 0; b < N_BUCKETS; b++)
            put(t, "kraken_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %" PRIu64
                   "\n",
                h->route, buckets[b], h->bucket[b]);
        put(t, "kraken_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %" PRIu64
               "\n",
            h->route, h->count);
        put(t, "kraken_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", h->route, h->sum);
        put(t, "kraken_http_request_duration_seconds_count{route=\"%s\"} %" PRIu64 "\n", h->route,
            h->count);
    }
}

int kd_metrics_render(kd_metrics *m, kd_api *api, char **out, size_t *len)
{
    text t = {malloc(8192), 0, 8192, false};
    if (!t.buf)
        return -1;
    render_nodes(&t, api);
    header(&t, "kraken_frozen", "gauge", "1 while the state engine is frozen.");
    put(&t, "kraken_frozen %d\n", kraken_engine_frozen(api->engine) ? 1 : 0);
    header(&t, "kraken_state_saves_total", "counter", "State file rewrites (atomic).");
    put(&t, "kraken_state_saves_total %" PRIu64 "\n", kd_state_saves(api->state));
    header(&t, "kraken_state_journal_appends_total", "counter",
           "Durable appends of changed nodes to the state journal.");
    put(&t, "kraken_state_journal_appends_total %" PRIu64 "\n",
        kd_state_journal_appends(api->state));
    render_sync(&t, api);
    if (m)
        render_http(&t, m);
    if (api->metrics_hook) {
        char *extra = NULL;
        size_t extra_len = 0;
        FILE *fp = open_memstream(&extra, &extra_len);
        if (fp) {
            api->metrics_hook(api->metrics_userdata, fp);
            fclose(fp);
            put(&t, "%s", extra ? extra : "");
        }
        free(extra);
    }
    if (t.failed || !t.buf) {
        free(t.buf);
        return -1;
    }
    *out = t.buf;
    *len = t.len;
    return 0;
}
