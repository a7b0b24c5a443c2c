/* SPDX-License-Identifier: BSD-3-Clause */
/* Go durations (daemon/duration.c), shared by the daemon's config and the websocket stream. */
#ifndef KD_DURATION_H
#define KD_DURATION_H

#include <stddef.h>
#include <stdint.h>

/** Go duration ("10s", "1m30s", "250ms") -> milliseconds (rounded up from sub-ms); -1 if bad. */
int kd_duration_parse(const char *text, uint64_t *ms);
/** milliseconds -> Go duration text as Go prints it ("1m30s", "250ms", "0s"). */
void kd_duration_format(uint64_t ms, char *buf, size_t len);

#endif
