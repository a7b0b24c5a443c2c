/*
 * A simulated power + PXE module for engine tests (in-process, deterministic).
 *
 * It adds two service instances to an engine: "power" (module "power":
 * UKtoOFF, OFFtoON, ONtoOFF, HANGtoOFF on /PhysState, requiring /Platform =
 * sim, context CHILD, 10 s, fail_to /PhysState = PHYS_HANG) and "pxe" (module
 * "pxe": NONEtoWAIT, WAITtoINIT), i.e. the SPEC 4.3 mutation set S together
 * with the engine's built-in sync/INITtoSYNC.
 *
 * Every dispatched step is answered after delay_ms through a libevent timer
 * (0 = on the next loop iteration), by discovering each mutated URL's `to`.
 * Faults can be injected per node and mutation. With virtual_sync, the
 * simulator also plays the booted child: it answers sync/INITtoSYNC by a
 * discovery of /RunState = SYNC through the engine's sync service.
 */
#ifndef KRAKEN_TESTS_SIM_MODULE_H
#define KRAKEN_TESTS_SIM_MODULE_H

#include <stdbool.h>
#include <stdint.h>

#include <kraken/kraken.h>

typedef struct sim sim;

typedef struct sim_options {
    uint32_t delay_ms;       /* answer each step after this long (0: next iteration) */
    uint32_t start_delay_ms; /* services report RUN this long after start (0: next iteration) */
    bool never_start;        /* services never report RUN (service start timeout) */
    bool virtual_sync;       /* answer sync/INITtoSYNC as a booted child would */
} sim_options;

#define SIM_OPTIONS_INIT {0, 0, false, true}

typedef enum sim_fault_kind {
    SIM_FAULT_HANG = 0,   /* never answer the step */
    SIM_FAULT_FAIL = 1,   /* report the step failed (kraken_service_fail) */
    SIM_FAULT_REPORT = 2  /* discover a given value for the first mutated URL */
} sim_fault_kind;

struct event_base;

/* Add the "power" and "pxe" services to @p engine, whose loop is @p base. */
int sim_new(sim **out, kraken_engine *engine, struct event_base *base, const sim_options *opts);
/* Remove the services from the engine (if still there) and cancel pending answers. */
void sim_free(sim *s);

/*
 * Inject a fault into the next @p count dispatches (0 = every one) of
 * @p mutation_id ("UKtoOFF", "INITtoSYNC" ...) on @p node (NULL = any node).
 * For SIM_FAULT_REPORT, @p value is the text of the value to discover.
 * Later injections take precedence over earlier ones.
 */
int sim_inject(sim *s, const kraken_uuid *node, const char *mutation_id, sim_fault_kind kind,
               unsigned count, const char *value);
/* Forget every injected fault. */
void sim_clear_faults(sim *s);

/*
 * Call @p fn (NULL: none) from the simulator's interrupt handler, after the
 * pending answer is cancelled: lets a test act from inside an engine callback.
 */
typedef void (*sim_interrupt_hook)(kraken_service *service, const kraken_mutation_request *req,
                                   void *arg);
void sim_on_interrupt(sim *s, sim_interrupt_hook fn, void *arg);

/* Steps dispatched to the simulator (all, or of one mutation id when not NULL). */
unsigned sim_dispatched(const sim *s, const char *mutation_id);
/* Interrupts received. */
unsigned sim_interrupted(const sim *s);
/* Service starts received. */
unsigned sim_started(const sim *s);
/* Answers still pending (armed timers). */
unsigned sim_pending(const sim *s);

#endif
