/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * testpower: the module the module tests run in every way (in-process,
 * dlopen'ed, external process). It powers nodes on and boots them to SYNC:
 *   discover  /PhysState UNKNOWN -> POWER_OFF
 *   poweron   /PhysState POWER_OFF -> POWER_ON
 *   boot      /RunState UNKNOWN -> INIT   (requires /PhysState POWER_ON)
 *   sync      /RunState INIT -> SYNC      (requires /PhysState POWER_ON)
 * Each step is answered at once with a report of its "to" values, unless its
 * config's tftp_dir says otherwise: "fail" fails every step, "hang" never
 * answers, "crash" aborts the process on poweron. Config (TestModule.Config)
 * changes are logged as "config <srv_iface>".
 */
#ifndef KRAKEN_TESTPOWER_H
#define KRAKEN_TESTPOWER_H

#include <kraken/module.h>

typedef struct testpower_stats {
    int starts, stops, mutates, interrupts, configs, events;
    char mode[32];
    char last_config[128];
} testpower_stats;

/* The descriptor; handlers count into the instance's userdata (a testpower_stats) when given. */
const kraken_module_desc *testpower_desc(void);

#endif
