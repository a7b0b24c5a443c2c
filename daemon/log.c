/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * log.c: the daemon's log on stderr, levels 0 (PANIC) .. 9 (DDDEBUG) as the
 * original's -log. One line per message; with -noprefix the timestamp is left
 * out (journald stamps lines itself). The library's log callback feeds it too.
 */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "kd.h"

static int max_level = KRAKEN_LOG_NOTICE;
static bool no_prefix;

void kd_log_setup(int level, bool noprefix)
{
    max_level = level;
    no_prefix = noprefix;
}

int kd_log_level(void)
{
    return max_level;
}

static void emit(int level, const char *subsystem, const char *message)
{
    char stamp[64] = "";
    if (!no_prefix) {
        struct timeval tv;
        struct tm tm;
        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(stamp + n, sizeof stamp - n, ".%06ldZ ", (long)tv.tv_usec);
    }
    /* One fprintf per line: lines from one process never interleave. */
    fprintf(stderr, "%s%s %s: %s\n", stamp, kraken_log_level_name(level), subsystem, message);
}

void kd_log(int level, const char *subsystem, const char *fmt, ...)
{
    if (level > max_level)
        return;
    char message[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    emit(level, subsystem, message);
}

void kd_log_engine(int level, const char *subsystem, const char *message, void *userdata)
{
    (void)userdata;
    if (level <= max_level)
        emit(level, subsystem, message);
}
