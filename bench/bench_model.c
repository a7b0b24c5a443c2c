/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * bench_model: the data model's costs (issue "foundation").
 *
 *   bench_model [N ...]          (default: 10000 100000)
 *
 * For each N, in a child process of its own (so memory figures of one size do
 * not inherit the heap of the previous one):
 *   - memory per node in a kraken_store, Cfg only (+ the empty Dsc nodes the
 *     store creates) and Cfg + a populated Dsc, from mallinfo2() deltas with the
 *     RSS delta (/proc/self/statm) as a cross-check;
 *   - JSON save/load of the node list (kraken_nodes_save_file/load_file, /tmp);
 *   - protobuf encode/decode throughput and bytes per node;
 *   - URL get/set throughput (kraken_node_get/kraken_node_set).
 * Public API only. Throughputs are the median of 3 runs of >= 0.3 s each.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kraken/kraken.h>

#include "benchutil.h"

/* One operation on item i; returns < 0 on error. */
typedef int (*op_fn)(void *ctx, size_t i);

#define RUNS 3
#define MIN_RUN_S 0.3

/* A figure measured by the wall clock and by this process's CPU clock. */
typedef struct wc {
    double wall, cpu;
} wc;

/*
 * Operations per second: passes over items 0..n-1 until MIN_RUN_S elapsed,
 * RUNS times; the median run's rate, by wall and by CPU time. Exits if an
 * operation fails.
 */
static wc measure_rate(op_fn op, void *ctx, size_t n, const char *what)
{
    double walls[RUNS], cpus[RUNS];
    for (int r = 0; r < RUNS; r++) {
        size_t ops = 0;
        double t0 = bench_now_s(), c0 = bench_cpu_s(), el;
        do {
            for (size_t i = 0; i < n; i++) {
                int rc = op(ctx, i);
                if (rc < 0) {
                    fprintf(stderr, "FAILED: %s (item %zu): %s (%s)\n", what, i,
                            kraken_err_name(rc), kraken_error_last());
                    exit(1);
                }
            }
            ops += n;
            el = bench_now_s() - t0;
        } while (el < MIN_RUN_S);
        walls[r] = (double)ops / el;
        cpus[r] = (double)ops / (bench_cpu_s() - c0);
    }
    qsort(walls, RUNS, sizeof walls[0], bench_cmp_double);
    qsort(cpus, RUNS, sizeof cpus[0], bench_cmp_double);
    return (wc){walls[RUNS / 2], cpus[RUNS / 2]};
}

/* One table row; a negative cpu prints as "-" (figures that are not times). */
static void row(const char *figure, size_t n, wc v, const char *unit, const char *target,
                const char *verdict)
{
    char cpu[32] = "-";
    if (v.cpu >= 0)
        snprintf(cpu, sizeof cpu, "%.1f", v.cpu);
    printf("%-44s %7zu %12.1f %12s %-9s %-11s %s\n", figure, n, v.wall, cpu, unit, target,
           verdict);
}

static void row_header(void)
{
    printf("%-44s %7s %12s %12s %-9s %-11s %s\n", "figure", "N", "wall", "by CPU time", "unit",
           "target", "");
}

static wc only(double v)
{
    return (wc){v, -1};
}

/* ---- node construction ------------------------------------------------- */

#define EXT "type.googleapis.com/IPv4.IPv4OverEthernet"
#define URL_IP EXT "/Ifaces/kraken/Ip/Ip"

static void set_or_die(kraken_node *node, const char *url, kraken_value v)
{
    int rc = kraken_node_set(node, url, &v);
    kraken_value_clear(&v);
    bench_die_on(rc, url);
}

static kraken_value ipv4_value(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
    kraken_value v = KRAKEN_VALUE_INIT;
    v.type = KRAKEN_T_IPV4;
    v.v.ipv4[0] = a;
    v.v.ipv4[1] = b;
    v.v.ipv4[2] = c;
    v.v.ipv4[3] = d;
    return v;
}

static void set_kraken_iface(kraken_node *node, size_t i)
{
    kraken_value mac = KRAKEN_VALUE_INIT;
    mac.type = KRAKEN_T_MAC;
    const uint8_t m[6] = {0x52, 0x54, 0x00, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
    memcpy(mac.v.mac, m, 6);
    set_or_die(node, EXT "/Ifaces/kraken/Eth/Mac", mac);
    set_or_die(node, EXT "/Ifaces/kraken/Eth/Mtu", kraken_value_uint(KRAKEN_T_UINT32, 1500));
    set_or_die(node, URL_IP, ipv4_value(10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i));
    set_or_die(node, EXT "/Ifaces/kraken/Ip/Subnet", ipv4_value(255, 0, 0, 0));
}

/* Cfg: nodename, arch, platform, parent_id, run_state and (with_iface) the kraken iface. */
static kraken_node *make_cfg_opt(size_t i, bool with_iface)
{
    kraken_uuid id = bench_node_uuid(i, 0x42), parent = bench_node_uuid(0xffffffffu, 0x42);
    kraken_node *node;
    bench_die_on(kraken_node_new(&node, &id), "kraken_node_new");
    char name[32];
    snprintf(name, sizeof name, "n%06zu", i);
    set_or_die(node, "/Nodename", kraken_value_string(name));
    set_or_die(node, "/Arch", kraken_value_string("amd64"));
    set_or_die(node, "/Platform", kraken_value_string("sim"));
    set_or_die(node, "/ParentId", kraken_value_uuid(&parent));
    set_or_die(node, "/RunState", kraken_value_int(KRAKEN_T_ENUM, KRAKEN_RUN_SYNC));
    if (with_iface)
        set_kraken_iface(node, i);
    return node;
}

static kraken_node *make_cfg(size_t i)
{
    return make_cfg_opt(i, true);
}

/* Dsc as discovered on a running node: phys_state, run_state and the kraken iface. */
static kraken_node *make_dsc(size_t i)
{
    kraken_uuid id = bench_node_uuid(i, 0x42);
    kraken_node *node;
    bench_die_on(kraken_node_new(&node, &id), "kraken_node_new");
    set_or_die(node, "/PhysState", kraken_value_int(KRAKEN_T_ENUM, KRAKEN_PHYS_POWER_ON));
    set_or_die(node, "/RunState", kraken_value_int(KRAKEN_T_ENUM, KRAKEN_RUN_SYNC));
    set_kraken_iface(node, i);
    return node;
}

/* ---- memory ------------------------------------------------------------ */

static const char *verdict_le(double v, double target)
{
    return v <= target ? "ok" : "MISSED";
}

/* "ok" by the wall clock; "ok by CPU" when only the CPU-time figure meets it. */
static const char *verdict_ge(wc v, double target)
{
    return v.wall >= target ? "ok" : v.cpu >= target ? "ok by CPU" : "MISSED";
}

static kraken_store *bench_memory(size_t n)
{
    size_t h0 = bench_heap_bytes(), r0 = bench_rss_bytes();
    kraken_store *store;
    bench_die_on(kraken_store_new(&store), "kraken_store_new");

    wc t_create = {bench_now_s(), bench_cpu_s()};
    for (size_t i = 0; i < n; i++) {
        kraken_node *cfg = make_cfg(i);
        bench_die_on(kraken_store_create(store, cfg), "kraken_store_create");
        kraken_node_free(cfg);
    }
    t_create = (wc){bench_now_s() - t_create.wall, bench_cpu_s() - t_create.cpu};
    size_t h1 = bench_heap_bytes(), r1 = bench_rss_bytes();

    wc t_update = {bench_now_s(), bench_cpu_s()};
    for (size_t i = 0; i < n; i++) {
        kraken_node *dsc = make_dsc(i);
        bench_die_on(kraken_store_update(store, KRAKEN_DSC, dsc), "kraken_store_update(Dsc)");
        kraken_node_free(dsc);
    }
    t_update = (wc){bench_now_s() - t_update.wall, bench_cpu_s() - t_update.cpu};
    size_t h2 = bench_heap_bytes(), r2 = bench_rss_bytes();

    double cfg_only = (double)(h1 - h0) / (double)n;
    double both = (double)(h2 - h0) / (double)n;
    double rss1 = ((double)r1 - (double)r0) / (double)n;
    double rss2 = ((double)r2 - (double)r0) / (double)n;
    row("store: Cfg only + empty Dsc (mallinfo2)", n, only(cfg_only), "B/node", "", "");
    row("store: Cfg only + empty Dsc (RSS delta)", n, only(rss1), "B/node", "", "");
    row("store: Cfg + populated Dsc (mallinfo2)", n, only(both), "B/node", "<= 1024",
        verdict_le(both, 1024));
    row("store: Cfg + populated Dsc (RSS delta)", n, only(rss2), "B/node", "<= 1024",
        verdict_le(rss2, 1024));
    row("store: create (build node + create)", n,
        (wc){(double)n / t_create.wall, (double)n / t_create.cpu}, "nodes/s", "", "");
    row("store: update Dsc (build node + update)", n,
        (wc){(double)n / t_update.wall, (double)n / t_update.cpu}, "nodes/s", "", "");
    return store;
}

/*
 * Nodes outside any store: what the parts of a node cost on the heap, averaged
 * over SAMPLE nodes of each kind (the library's per-thread cache of compiled
 * URLs may allocate or free an entry now and then; averaging hides that).
 */
#define SAMPLE 1000
static void bench_node_size(void)
{
    static kraken_node *keep[4][SAMPLE];
    const char *what[4] = {"node object: empty (id only)",
                           "node object: Cfg core fields, no extension",
                           "node object: Cfg with IPv4 extension",
                           "node object: Dsc (phys, run, IPv4 ext)"};
    for (int kind = 0; kind < 4; kind++) {
        size_t h0 = bench_heap_bytes();
        for (size_t i = 0; i < SAMPLE; i++) {
            kraken_uuid id = bench_node_uuid(i, 0x42);
            switch (kind) {
            case 0: bench_die_on(kraken_node_new(&keep[kind][i], &id), "kraken_node_new"); break;
            case 1: keep[kind][i] = make_cfg_opt(i, false); break;
            case 2: keep[kind][i] = make_cfg(i); break;
            default: keep[kind][i] = make_dsc(i); break;
            }
        }
        row(what[kind], SAMPLE, only((double)(bench_heap_bytes() - h0) / SAMPLE), "B/node", "", "");
    }
    for (int kind = 0; kind < 4; kind++)
        for (size_t i = 0; i < SAMPLE; i++)
            kraken_node_free(keep[kind][i]);
}

/* ---- JSON files -------------------------------------------------------- */

static void bench_json(kraken_node **nodes, size_t n)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/kraken-bench-%ld.json", (long)getpid());

    wc t_save = {bench_now_s(), bench_cpu_s()};
    bench_die_on(kraken_nodes_save_file(path, nodes, n), "kraken_nodes_save_file");
    t_save = (wc){(bench_now_s() - t_save.wall) * 1e3, (bench_cpu_s() - t_save.cpu) * 1e3};

    struct stat st;
    off_t size = stat(path, &st) == 0 ? st.st_size : 0;

    kraken_node **loaded = NULL;
    size_t n_loaded = 0;
    wc t_load = {bench_now_s(), bench_cpu_s()};
    bench_die_on(kraken_nodes_load_file(path, &loaded, &n_loaded), "kraken_nodes_load_file");
    t_load = (wc){(bench_now_s() - t_load.wall) * 1e3, (bench_cpu_s() - t_load.cpu) * 1e3};

    if (n_loaded != n || !kraken_node_equal(loaded[n / 2], nodes[n / 2]))
        fprintf(stderr, "WARNING: JSON round trip differs (%zu nodes loaded)\n", n_loaded);
    kraken_nodes_free(loaded, n_loaded);
    unlink(path);

    row("JSON save file (incl. fsync+rename)", n, t_save, "ms", "", "");
    row("JSON load file", n, t_load, "ms", "", "");
    row("JSON file size", n, only((double)size / (double)n), "B/node", "", "");
}

/* ---- protobuf ---------------------------------------------------------- */

struct codec_ctx {
    kraken_node **nodes;
    uint8_t **bufs;
    size_t *lens;
};

static int op_encode(void *vctx, size_t i)
{
    struct codec_ctx *ctx = vctx;
    uint8_t *buf;
    size_t len;
    int rc = kraken_node_encode(ctx->nodes[i], &buf, &len);
    if (rc == 0)
        free(buf);
    return rc;
}

static int op_decode(void *vctx, size_t i)
{
    struct codec_ctx *ctx = vctx;
    kraken_node *node;
    int rc = kraken_node_decode(ctx->bufs[i], ctx->lens[i], &node);
    if (rc == 0)
        kraken_node_free(node);
    return rc;
}

static void bench_codec(kraken_node **nodes, size_t n)
{
    struct codec_ctx ctx = {nodes, bench_xcalloc(n, sizeof(uint8_t *)),
                            bench_xcalloc(n, sizeof(size_t))};
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        bench_die_on(kraken_node_encode(nodes[i], &ctx.bufs[i], &ctx.lens[i]),
                     "kraken_node_encode");
        total += ctx.lens[i];
    }
    kraken_node *back;
    bench_die_on(kraken_node_decode(ctx.bufs[0], ctx.lens[0], &back), "kraken_node_decode");
    if (!kraken_node_equal(back, nodes[0]))
        fprintf(stderr, "WARNING: protobuf round trip differs\n");
    kraken_node_free(back);

    wc enc = measure_rate(op_encode, &ctx, n, "kraken_node_encode");
    wc dec = measure_rate(op_decode, &ctx, n, "kraken_node_decode");
    row("protobuf encode (Cfg node)", n, enc, "nodes/s", ">= 500000", verdict_ge(enc, 500000));
    row("protobuf decode (Cfg node)", n, dec, "nodes/s", "", "");
    row("protobuf size (Cfg node)", n, only((double)total / (double)n), "B/node", "", "");
    for (size_t i = 0; i < n; i++)
        free(ctx.bufs[i]);
    free(ctx.bufs);
    free(ctx.lens);
}

/* ---- URLs -------------------------------------------------------------- */

struct url_ctx {
    kraken_node **nodes;
    kraken_store *store;
    const char *url;
    kraken_value values[2];
    unsigned flip; /* toggled every pass so each set changes the value */
};

static int op_get(void *vctx, size_t i)
{
    struct url_ctx *ctx = vctx;
    kraken_value v = KRAKEN_VALUE_INIT;
    int rc = kraken_node_get(ctx->nodes[i], ctx->url, &v);
    kraken_value_clear(&v);
    return rc;
}

static int op_store_get(void *vctx, size_t i)
{
    struct url_ctx *ctx = vctx;
    kraken_value v = KRAKEN_VALUE_INIT;
    kraken_uuid id = bench_node_uuid(i, 0x42);
    int rc = kraken_store_get_value(ctx->store, KRAKEN_DSC, &id, ctx->url, &v);
    kraken_value_clear(&v);
    return rc;
}

static int op_set(void *vctx, size_t i)
{
    struct url_ctx *ctx = vctx;
    if (i == 0)
        ctx->flip ^= 1u;
    return kraken_node_set(ctx->nodes[i], ctx->url, &ctx->values[(i ^ ctx->flip) & 1u]);
}

static void bench_urls(kraken_node **dsc, size_t n, kraken_store *store)
{
    struct url_ctx ctx = {.nodes = dsc, .store = store};
    char fig[96];
    const char *urls[] = {"/PhysState", URL_IP};
    for (size_t u = 0; u < 2; u++) {
        ctx.url = urls[u];
        wc r = measure_rate(op_get, &ctx, n, urls[u]);
        snprintf(fig, sizeof fig, "node_get %s",
                 u == 0 ? urls[u] : "<IPv4 ext>/Ifaces/kraken/Ip/Ip");
        row(fig, n, r, "reads/s", ">= 2000000", verdict_ge(r, 2e6));
    }
    for (size_t u = 0; u < 2; u++) {
        ctx.url = urls[u];
        wc r = measure_rate(op_store_get, &ctx, n, urls[u]);
        snprintf(fig, sizeof fig, "store_get_value(Dsc) %s",
                 u == 0 ? urls[u] : "<IPv4 ext>/.../Ip/Ip");
        row(fig, n, r, "reads/s", "", "");
    }

    ctx.url = "/PhysState";
    ctx.values[0] = kraken_value_int(KRAKEN_T_ENUM, KRAKEN_PHYS_POWER_ON);
    ctx.values[1] = kraken_value_int(KRAKEN_T_ENUM, KRAKEN_PHYS_POWER_OFF);
    wc r = measure_rate(op_set, &ctx, n, "kraken_node_set /PhysState");
    row("node_set /PhysState", n, r, "writes/s", "", "");

    ctx.url = URL_IP;
    ctx.values[0] = ipv4_value(10, 1, 2, 3);
    ctx.values[1] = ipv4_value(10, 3, 2, 1);
    r = measure_rate(op_set, &ctx, n, "kraken_node_set " URL_IP);
    row("node_set <IPv4 ext>/Ifaces/kraken/Ip/Ip", n, r, "writes/s", "", "");
}

/* ---- driver ------------------------------------------------------------ */

static void bench_size(size_t n)
{
    printf("\n## N = %zu\n", n);
    row_header();
    /* First uses initialise the schema registry and the per-thread cache of
     * compiled URLs: done before any measurement. */
    kraken_node_free(make_cfg(1));
    kraken_node_free(make_dsc(1));
    kraken_store *store = bench_memory(n);
    bench_node_size();

    kraken_node **cfg = bench_xcalloc(n, sizeof *cfg);
    kraken_node **dsc = bench_xcalloc(n, sizeof *dsc);
    for (size_t i = 0; i < n; i++) {
        cfg[i] = make_cfg(i);
        dsc[i] = make_dsc(i);
    }
    bench_json(cfg, n);
    bench_codec(cfg, n);
    bench_urls(dsc, n, store);
    kraken_nodes_free(cfg, n);
    kraken_nodes_free(dsc, n);
    kraken_store_free(store);
}

int main(int argc, char **argv)
{
    size_t sizes[16];
    static const size_t defaults[] = {10000, 100000};
    size_t n_sizes = bench_parse_sizes(argc, argv, sizes, 16, defaults, 2,
                                       "[N ...]  (node counts, default 10000 100000)");
    bench_print_machine("bench_model", NULL);
    printf("# throughputs: median of %d runs of >= %.1f s; memory: heap in use (mallinfo2) and "
           "RSS deltas divided by N\n",
           RUNS, MIN_RUN_S);
    int failed = 0;
    for (size_t i = 0; i < n_sizes; i++)
        failed |= bench_run_isolated(bench_size, sizes[i]) != 0;
    return failed ? 1 : 0;
}
