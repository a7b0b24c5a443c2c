/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Go durations ("10s", "1m30s", "250ms"), as the original's config files and its
 * WebSocket.Config write them: one parser and printer for the daemon's config and the
 * websocket stream.
 */
#include "duration.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kd_duration_parse(const char *text, uint64_t *ms)
{
    /* Go's time.ParseDuration: [-+]?([0-9]*(\.[0-9]*)?[a-z]+)+, or "0". Negative is refused. */
    static const struct {
        const char *unit;
        double ns;
    } units[] = {{"ns", 1}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3}, {"ms", 1e6},
                 {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
    const char *p = text;
    if (*p == '+')
        p++;
    if (strcmp(p, "0") == 0) {
        *ms = 0;
        return 0;
    }
    if (!*p)
        return -1;
    double total_ns = 0;
    while (*p) {
        if (!isdigit((unsigned char)*p) && *p != '.')
            return -1;
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno)
            return -1;
        p = end;
        size_t best = 0, best_len = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t l = strlen(units[i].unit);
            if (strncmp(p, units[i].unit, l) == 0 && l > best_len) {
                best = i;
                best_len = l;
            }
        }
        if (!best_len)
            return -1;
        total_ns += v * units[best].ns;
        p += best_len;
    }
    if (total_ns > 9.2e18)
        return -1;
    uint64_t ns = (uint64_t)total_ns;
    *ms = ns / 1000000 + (ns % 1000000 ? 1 : 0);
    return 0;
}

void kd_duration_format(uint64_t ms, char *buf, size_t len)
{
    if (ms == 0) {
        snprintf(buf, len, "0s");
        return;
    }
    if (ms < 1000) {
        snprintf(buf, len, "%" PRIu64 "ms", ms);
        return;
    }
    uint64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, frac = ms % 1000;
    char sec[32];
    if (frac) {
        snprintf(sec, sizeof sec, "%" PRIu64 ".%03" PRIu64, s, frac);
        for (size_t l = strlen(sec); sec[l - 1] == '0'; l--)
            sec[l - 1] = '\0';
    } else {
        snprintf(sec, sizeof sec, "%" PRIu64, s);
    }
    if (h)
        snprintf(buf, len, "%" PRIu64 "h%" PRIu64 "m%ss", h, m, sec);
    else if (m)
        snprintf(buf, len, "%" PRIu64 "m%ss", m, sec);
    else
        snprintf(buf, len, "%ss", sec);
}

