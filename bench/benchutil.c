/* SPDX-License-Identifier: BSD-3-Clause */
/* Helpers shared by the benchmark programs; see benchutil.h. */
#include "benchutil.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <kraken/kraken.h>

double bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double bench_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void bench_read_loadavg(char *buf, size_t size)
{
    snprintf(buf, size, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fgets(buf, (int)size, f))
            buf[strcspn(buf, "\n")] = '\0';
        fclose(f);
    }
}

/* The "model name" of the first CPU in /proc/cpuinfo, or "unknown". */
static void read_cpu_model(char *model, size_t size)
{
    snprintf(model, size, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            const char *colon = strchr(line, ':');
            if (colon) {
                snprintf(model, size, "%s", colon + 2);
                model[strcspn(model, "\n")] = '\0';
            }
            break;
        }
    }
    fclose(f);
}

void bench_print_machine(const char *prog, const char *libevent_version)
{
    char model[256];
    read_cpu_model(model, sizeof model);
    char load[128];
    bench_read_loadavg(load, sizeof load);
    time_t t = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %Z", localtime(&t));
    if (libevent_version)
        printf("# %s  libkraken %s  libevent %s  %s\n", prog, kraken_version(), libevent_version,
               date);
    else
        printf("# %s  libkraken %s  %s\n", prog, kraken_version(), date);
    printf("# machine: nproc=%ld  cpu=\"%s\"  loadavg=%s\n", sysconf(_SC_NPROCESSORS_ONLN), model,
           load);
}

size_t bench_parse_sizes(int argc, char **argv, size_t *sizes, size_t max, const size_t *defaults,
                         size_t n_defaults, const char *usage)
{
    size_t n = 0;
    for (int i = 1; i < argc && n < max; i++) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(argv[i], &end, 10);
        if (errno || *end || v == 0) {
            fprintf(stderr, "usage: %s %s\n", argv[0], usage);
            exit(2);
        }
        sizes[n++] = (size_t)v;
    }
    if (n == 0) {
        for (size_t d = 0; d < n_defaults && n < max; d++)
            sizes[n++] = defaults[d];
    }
    return n;
}

void bench_die_on(int rc, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "FAILED: %s: %s (%s)\n", what, kraken_err_name(rc), kraken_error_last());
        exit(1);
    }
}

void *bench_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

int bench_run_isolated(void (*fn)(size_t), size_t arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        fn(arg);
        fflush(stdout);
        exit(0); /* not _exit: lets sanitizer leak checks run in the child */
    }
    int status;
    if (waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

size_t bench_rss_bytes(void)
{
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (size_t)sysconf(_SC_PAGESIZE);
}

long bench_rss_kib(void)
{
    return (long)(bench_rss_bytes() / 1024);
}

size_t bench_heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd; /* arena chunks in use + mmapped chunks */
}

kraken_uuid bench_node_uuid(size_t i, uint8_t tag)
{
    kraken_uuid id = {{0x4a, 0xfd, 0x1c, 0x2e, 0x7b, 0x33, 0x4c, 0x01, 0x8a, 0x00}};
    id.bytes[10] = tag;
    id.bytes[12] = (uint8_t)(i >> 24);
    id.bytes[13] = (uint8_t)(i >> 16);
    id.bytes[14] = (uint8_t)(i >> 8);
    id.bytes[15] = (uint8_t)i;
    return id;
}
