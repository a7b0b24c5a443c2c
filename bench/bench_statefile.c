/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * bench_statefile: loading and saving a large state file (issue 8).
 *
 *   bench_statefile [N ...]      (default: 100000)
 *
 * For each N, in a child process of its own:
 *   1. builds N nodes shaped like a provisioned cluster node in the original's format
 *      (nodename, arch, platform, parent, run/phys state, an IPv4.IPv4OverEthernet extension
 *      with the "kraken" interface: about 640 bytes a node, the shape of the 63 MB,
 *      100,000-node file of issue 8) and
 *      saves them with kraken_nodes_save_file() into a file in $TMPDIR (default /tmp);
 *   2. in a fresh child process (an empty heap), loads that file into a kraken_store
 *      (kraken_store_load: Cfg from the file + the empty Dsc nodes) and saves the Cfg set
 *      again (kraken_store_save), timing both.
 * Memory: the peak RSS of the load (VmHWM after /proc/self/clear_refs reset it, minus the RSS
 * before) against the budget of issue 8, 2 x (final store size) + (file size), where the
 * final store size is the heap growth the load leaves behind (mallinfo2). Public API only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kraken/kraken.h>

#include "benchutil.h"

#define IPV4 "type.googleapis.com/IPv4.IPv4OverEthernet"

static char file_path[256];

static void set_or_die(kraken_node *node, const char *url, const char *text)
{
    bench_die_on(kraken_node_set_text(node, url, text), url);
}

static kraken_node *make_node(size_t i)
{
    kraken_uuid id = bench_node_uuid(i, 8), parent = bench_node_uuid(0, 9);
    kraken_node *node = NULL;
    bench_die_on(kraken_node_new(&node, &id), "kraken_node_new");
    char buf[64], pid[KRAKEN_UUID_STRLEN + 1];
    snprintf(buf, sizeof buf, "cn%05zu", i);
    set_or_die(node, "/Nodename", buf);
    set_or_die(node, "/Arch", "amd64");
    set_or_die(node, "/Platform", "powerman");
    set_or_die(node, "/ParentId", kraken_uuid_format(&parent, pid));
    set_or_die(node, "/RunState", "SYNC");
    set_or_die(node, "/PhysState", "POWER_ON");
    set_or_die(node, IPV4 "/Ifaces/kraken/Eth/Iface", "eth0");
    snprintf(buf, sizeof buf, "02:00:00:%02zx:%02zx:%02zx", (i >> 16) & 255, (i >> 8) & 255,
             i & 255);
    set_or_die(node, IPV4 "/Ifaces/kraken/Eth/Mac", buf);
    set_or_die(node, IPV4 "/Ifaces/kraken/Eth/Mtu", "9000");
    snprintf(buf, sizeof buf, "10.%zu.%zu.%zu", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    set_or_die(node, IPV4 "/Ifaces/kraken/Ip/Ip", buf);
    set_or_die(node, IPV4 "/Ifaces/kraken/Ip/Subnet", "255.0.0.0");
    return node;
}

static void write_file(size_t n)
{
    kraken_node **nodes = bench_xcalloc(n, sizeof *nodes);
    for (size_t i = 0; i < n; i++)
        nodes[i] = make_node(i);
    bench_die_on(kraken_nodes_save_file(file_path, nodes, n), "kraken_nodes_save_file");
    kraken_nodes_free(nodes, n);
}

/* VmHWM of this process in bytes (0 if unknown). */
static size_t peak_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kib = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmHWM: %zu kB", &kib) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kib * 1024;
}

/* Start a new peak-RSS measurement (Linux >= 4.0). */
static int reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f == NULL)
        return -1;
    int rc = fputs("5", f) < 0 ? -1 : 0;
    return fclose(f) != 0 ? -1 : rc;
}

static double mib(size_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

static void load_and_save(size_t n)
{
    struct stat st;
    if (stat(file_path, &st) != 0) {
        fprintf(stderr, "FAILED: %s: %s\n", file_path, strerror(errno));
        exit(1);
    }
    size_t file_size = (size_t)st.st_size;
    kraken_store *store = NULL;
    bench_die_on(kraken_store_new(&store), "kraken_store_new");
    size_t heap0 = bench_heap_bytes(), rss0 = bench_rss_bytes();
    bool peak_ok = reset_peak_rss() == 0;

    double w0 = bench_now_s(), c0 = bench_cpu_s();
    bench_die_on(kraken_store_load(store, file_path), "kraken_store_load");
    double load_wall = bench_now_s() - w0, load_cpu = bench_cpu_s() - c0;
    size_t peak = peak_rss_bytes();
    size_t store_heap = bench_heap_bytes() - heap0, store_rss = bench_rss_bytes() - rss0;
    if (kraken_store_count(store) != n) {
        fprintf(stderr, "FAILED: loaded %zu nodes, expected %zu\n", kraken_store_count(store), n);
        exit(1);
    }

    char out_path[300];
    snprintf(out_path, sizeof out_path, "%s.out", file_path);
    w0 = bench_now_s();
    c0 = bench_cpu_s();
    bench_die_on(kraken_store_save(store, KRAKEN_CFG, out_path), "kraken_store_save");
    double save_wall = bench_now_s() - w0, save_cpu = bench_cpu_s() - c0;
    unlink(out_path);

    size_t peak_delta = peak > rss0 ? peak - rss0 : 0;
    size_t budget = 2 * store_heap + file_size;
    printf("%-46s %9zu\n", "nodes", n);
    printf("%-46s %9.1f MiB (%.0f B/node)\n", "state file (pretty JSON)", mib(file_size),
           (double)file_size / (double)n);
    printf("%-46s %9.1f MiB (RSS growth %.1f MiB)\n", "final store size, Cfg + Dsc (heap growth)",
           mib(store_heap), mib(store_rss));
    if (peak_ok)
        printf("%-46s %9.1f MiB  budget 2 x store + file = %.1f MiB: %s\n",
               "peak RSS growth during kraken_store_load", mib(peak_delta), mib(budget),
               peak_delta <= budget ? "ok" : "OVER");
    else
        printf("%-46s %9s (/proc/self/clear_refs not writable)\n",
               "peak RSS growth during kraken_store_load", "?");
    printf("%-46s %9.0f ms (CPU %.0f ms)\n", "kraken_store_load", load_wall * 1e3, load_cpu * 1e3);
    printf("%-46s %9.0f ms (CPU %.0f ms)\n", "kraken_store_save (incl. fsync + rename)",
           save_wall * 1e3, save_cpu * 1e3);
    double total = load_wall + save_wall, total_cpu = load_cpu + save_cpu;
    printf("%-46s %9.0f ms (CPU %.0f ms)  target <= 1000 ms: %s\n", "load + save", total * 1e3,
           total_cpu * 1e3,
           total <= 1.0 ? "ok" : total_cpu <= 1.0 ? "ok by CPU" : "MISSED");
    kraken_store_free(store);
}

static void run_size(size_t n)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(file_path, sizeof file_path, "%s/kraken-bench-state-%ld.json",
             tmp != NULL && *tmp != '\0' ? tmp : "/tmp", (long)getpid());
    if (bench_run_isolated(write_file, n) != 0) {
        fprintf(stderr, "FAILED: writing the state file\n");
        exit(1);
    }
    int status = bench_run_isolated(load_and_save, n);
    unlink(file_path);
    if (status != 0)
        exit(status);
}

int main(int argc, char **argv)
{
    static const size_t defaults[] = {100000};
    size_t sizes[16];
    size_t n_sizes = bench_parse_sizes(argc, argv, sizes, 16, defaults, 1, "[N ...]");
    bench_print_machine("bench_statefile", NULL);
    for (size_t i = 0; i < n_sizes; i++) {
        run_size(sizes[i]);
        if (i + 1 < n_sizes)
            printf("\n");
    }
    return 0;
}
