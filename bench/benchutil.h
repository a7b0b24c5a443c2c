/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * benchutil: helpers shared by the benchmark programs in bench/ (timing, the
 * machine header line, size arguments, fatal-error exits, process isolation,
 * memory readers). Benchmark code only: these print and exit on failure.
 */
#ifndef KRAKEN_BENCHUTIL_H
#define KRAKEN_BENCHUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <kraken/kraken.h>

/** Seconds on the monotonic clock (wall time, for differences only). */
double bench_now_s(void);

/** CPU seconds used so far by this process (all its threads). */
double bench_cpu_s(void);

/**
 * Write the first line of /proc/loadavg, without its newline, into @p buf
 * ("?" when it cannot be read).
 */
void bench_read_loadavg(char *buf, size_t size);

/**
 * Print the two "#" header lines every bench starts with: program, library
 * version (and the libevent version when @p libevent_version is not NULL),
 * local date, then nproc, CPU model and load average.
 */
void bench_print_machine(const char *prog, const char *libevent_version);

/**
 * Parse argv[1..] as positive decimal sizes into @p sizes (at most @p max).
 * On a bad argument print "usage: PROG @p usage" to stderr and exit(2). With
 * no arguments, copy the @p n_defaults entries of @p defaults. Returns the
 * number of sizes.
 */
size_t bench_parse_sizes(int argc, char **argv, size_t *sizes, size_t max, const size_t *defaults,
                         size_t n_defaults, const char *usage);

/**
 * If @p rc < 0 (a kraken_err), print "FAILED: @p what: NAME (message)" to
 * stderr and exit(1).
 */
void bench_die_on(int rc, const char *what);

/** calloc() that never returns NULL (exits) and accepts n == 0. */
void *bench_xcalloc(size_t n, size_t size);

/**
 * Run fn(arg) in a forked child so each size starts from a fresh heap.
 * Returns the child's exit status (128 + signal if killed), -1 if the fork
 * or wait failed.
 */
int bench_run_isolated(void (*fn)(size_t), size_t arg);

/** qsort() comparator for doubles, ascending. */
int bench_cmp_double(const void *a, const void *b);

/** Resident set size of this process in bytes (/proc/self/statm; 0 if unknown). */
size_t bench_rss_bytes(void);

/** Resident set size of this process in KiB (/proc/self/statm; 0 if unknown). */
long bench_rss_kib(void);

/** Heap bytes in use (mallinfo2: arena chunks in use + mmapped chunks). */
size_t bench_heap_bytes(void);

/**
 * The id of bench node @p i: a fixed version-4 prefix, @p tag in byte 10 (so
 * benches can keep their ids apart) and i big-endian in the last 4 bytes.
 */
kraken_uuid bench_node_uuid(size_t i, uint8_t tag);

#endif
