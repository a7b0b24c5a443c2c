/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * harness: how a test harness drives a kraken engine without hardware and
 * without sleeping, using only the installed API.
 *
 * Three compute nodes boot through the SPEC 4.3 chain with the simulated
 * power + PXE module (kraken/sim.h). The engine runs on an injected clock:
 * the harness moves it from one timer deadline to the next, so a 10 s step
 * timeout takes no real time and every run prints exactly the same thing.
 * Node n2's first OFFtoON hangs: it times out, the engine records PHYS_HANG,
 * backs off and recovers it through HANGtoOFF.
 *
 * Usage: harness   (prints one line per mutation event, then each node's state)
 */
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kraken/kraken.h>
#include <kraken/sim.h>

#define SELF "c0ffee00-0000-4000-8000-000000000001"
#define N_NODES 3

static uint64_t clock_ms; /* the harness's clock */

static uint64_t harness_now(void *userdata)
{
    (void)userdata;
    return clock_ms;
}

static void die(int rc, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "harness: %s: %s\n", what, kraken_error_last());
        exit(1);
    }
}

/* Print each mutation event with the clock time it happened at. */
static void on_mutation(const kraken_event *ev, void *userdata)
{
    static const char *const kinds[] = {"MUTATE", "INTERRUPT", "FAILED", "DONE"};
    (void)userdata;
    char id[KRAKEN_UUID_STRLEN + 1];
    kraken_uuid_format(&ev->node_id, id);
    printf("%8" PRIu64 " ms  node ...%s  %-9s %s/%s%s%s\n", clock_ms, id + 32, kinds[ev->kind],
           ev->service_id, ev->mutation_id, ev->message ? ": " : "",
           ev->message ? ev->message : "");
}

/* Run what is runnable now: passes, events, timers that are due. */
static void settle(struct event_base *base)
{
    while (event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE) > 0)
        event_base_loop(base, EVLOOP_NONBLOCK);
}

static bool all_converged(kraken_engine *engine, const kraken_uuid *ids)
{
    for (int i = 0; i < N_NODES; i++) {
        kraken_plan_status st;
        die(kraken_engine_node_status(engine, &ids[i], &st), "node status");
        bool done = st.state == KRAKEN_PLAN_CONVERGED;
        kraken_plan_status_clear(&st);
        if (!done)
            return false;
    }
    return true;
}

int main(void)
{
    struct event_base *base = event_base_new();
    if (!base)
        return 1;
    kraken_engine_options opts = KRAKEN_ENGINE_OPTIONS_INIT;
    die(kraken_uuid_parse(&opts.self_id, SELF), "self id");
    opts.now_ms = harness_now;
    kraken_engine *engine;
    die(kraken_engine_new(&engine, base, NULL, &opts), "engine");
    kraken_sim_options so = KRAKEN_SIM_OPTIONS_INIT;
    so.delay_ms = 2000; /* each step takes 2 s of clock time */
    kraken_sim *sim;
    die(kraken_sim_new(&sim, engine, &so), "sim");
    kraken_subscribe_options sub_opts = KRAKEN_SUBSCRIBE_OPTIONS_INIT;
    sub_opts.types = KRAKEN_EVENT_MASK(KRAKEN_EVENT_STATE_MUTATION);
    kraken_subscription *sub;
    die(kraken_bus_subscribe(kraken_engine_bus(engine), &sub_opts, on_mutation, NULL, NULL, &sub),
        "subscribe");

    kraken_store *store = kraken_engine_store(engine);
    kraken_uuid ids[N_NODES];
    for (int i = 0; i < N_NODES; i++) {
        char text[40], name[8];
        snprintf(text, sizeof text, "00000000-0000-4000-8000-%012d", i + 1);
        snprintf(name, sizeof name, "n%d", i + 1);
        die(kraken_uuid_parse(&ids[i], text), "node id");
        kraken_node *n;
        die(kraken_node_new(&n, &ids[i]), "node");
        die(kraken_node_set_text(n, "/Nodename", name), "nodename");
        die(kraken_node_set_text(n, "/Platform", "sim"), "platform");
        die(kraken_node_set_text(n, "/RunState", "SYNC"), "run state");
        die(kraken_node_set_text(n, "/ParentId", SELF), "parent");
        die(kraken_store_create(store, n), "create");
        kraken_node_free(n);
    }
    die(kraken_sim_inject(sim, &ids[1], "OFFtoON", KRAKEN_SIM_HANG, 1, NULL), "inject");

    /* Run; when nothing is runnable, jump the clock to the next deadline. */
    settle(base);
    while (!all_converged(engine, ids)) {
        uint64_t next;
        die(kraken_engine_next_deadline(engine, &next), "next deadline");
        if (next == UINT64_MAX) {
            fprintf(stderr, "harness: stalled (no timer armed)\n");
            return 1;
        }
        clock_ms = next;
        die(kraken_engine_clock_moved(engine), "clock");
        settle(base);
    }
    for (int i = 0; i < N_NODES; i++) {
        kraken_node *dsc;
        char *phys = NULL, *run = NULL;
        die(kraken_store_read(store, KRAKEN_DSC, &ids[i], &dsc), "read");
        die(kraken_node_get_text(dsc, "/PhysState", &phys), "get");
        die(kraken_node_get_text(dsc, "/RunState", &run), "get");
        printf("n%d: %s %s\n", i + 1, phys, run);
        free(phys);
        free(run);
        kraken_node_free(dsc);
    }
    printf("all converged at %" PRIu64 " ms of clock time\n", clock_ms);
    kraken_subscription_remove(sub);
    kraken_sim_free(sim);
    kraken_engine_free(engine);
    event_base_free(base);
    return 0;
}
