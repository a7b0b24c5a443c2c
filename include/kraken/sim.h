/**
 * @file kraken/sim.h
 * @brief A simulated power (+ PXE) module for test harnesses.
 *
 * For people who test code that drives a kraken engine (a daemon, a tool, a
 * binding) and want the SPEC 4.3 reference chain without hardware and
 * without writing a module. It adds service instances to an engine:
 * - "power" (module "power"): UKtoOFF, OFFtoON, ONtoOFF, HANGtoOFF on
 *   /PhysState, requiring /Platform = sim, context CHILD, 10 s timeouts,
 *   fail_to /PhysState = PHYS_HANG;
 * - unless opts.no_pxe, "pxe" (module "pxe"): NONEtoWAIT (PXE.Client/State
 *   NONE -> WAIT) and WAITtoINIT (PXE.Client/State WAIT -> INIT with
 *   /RunState UNKNOWN -> INIT), requiring /PhysState = POWER_ON.
 * Together with the engine's built-in sync/INITtoSYNC this is the set S.
 *
 * Every dispatched step is answered delay_ms later on the engine's clock
 * (kraken_timer), with kraken_service_report_text() for each mutated URL's
 * `to` value: with an injected clock (kraken_engine_options.now_ms) a harness
 * decides when answers arrive by moving the clock, and nothing sleeps. Faults
 * are injected per node and mutation. With virtual_sync, the simulator also
 * plays the booted child: it answers sync/INITtoSYNC by a discovery of
 * /RunState = SYNC through the engine's sync service.
 *
 * Threads: as the engine (the thread that runs its loop).
 */
#ifndef KRAKEN_SIM_H
#define KRAKEN_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kraken_sim kraken_sim;

#define KRAKEN_SIM_OPTIONS_VERSION 1

/**
 * Simulator options; start from KRAKEN_SIM_OPTIONS_INIT or
 * kraken_sim_options_init() (versions as kraken_engine_options).
 */
typedef struct kraken_sim_options {
    unsigned version;        /**< KRAKEN_SIM_OPTIONS_VERSION */
    uint32_t delay_ms;       /**< answer each step this long after it is dispatched (0) */
    uint32_t start_delay_ms; /**< services report RUN this long after start (0) */
    bool never_start;        /**< services never report RUN (service start timeout) */
    bool virtual_sync;       /**< answer sync/INITtoSYNC as a booted child would (true) */
    bool no_pxe;             /**< power only: no "pxe" service (false) */
} kraken_sim_options;

#define KRAKEN_SIM_OPTIONS_INIT {KRAKEN_SIM_OPTIONS_VERSION, 0, 0, false, true, false}

/** Fill @p opts with the defaults for struct version @p version (bindings). */
int kraken_sim_options_init(kraken_sim_options *opts, unsigned version);

/** What an injected fault does to a dispatched step. */
typedef enum kraken_sim_fault_kind {
    KRAKEN_SIM_HANG = 0,   /**< never answer the step */
    KRAKEN_SIM_FAIL = 1,   /**< report the step failed (kraken_service_fail) */
    KRAKEN_SIM_REPORT = 2, /**< report a given value for the first mutated URL */
    /**
     * Answer late, as a slow external process would: after the delay given as
     * the value (decimal ms) instead of delay_ms, and even when the step was
     * interrupted meanwhile; the engine refuses such an answer (counted by
     * kraken_sim_refused()).
     */
    KRAKEN_SIM_LATE = 3
} kraken_sim_fault_kind;

/** Add the simulated services to @p engine (opts NULL: KRAKEN_SIM_OPTIONS_INIT). */
int kraken_sim_new(kraken_sim **out, kraken_engine *engine, const kraken_sim_options *opts);
/** Remove the services from the engine (if still there) and drop pending answers. NULL-safe. */
void kraken_sim_free(kraken_sim *sim);

/**
 * Inject a fault into the next @p count dispatches (0 = every one) of
 * @p mutation_id ("UKtoOFF", "INITtoSYNC" ...) on @p node (NULL = any node).
 * For KRAKEN_SIM_REPORT, @p value is the text of the value to report; for
 * KRAKEN_SIM_LATE, the delay in ms. Later injections take precedence over
 * earlier ones.
 */
int kraken_sim_inject(kraken_sim *sim, const kraken_uuid *node, const char *mutation_id,
                      kraken_sim_fault_kind kind, unsigned count, const char *value);
/** Forget every injected fault. */
void kraken_sim_clear_faults(kraken_sim *sim);

/**
 * Answer @p mutation_id (e.g. "WAITtoINIT": a PXE boot is slower than a power
 * switch) @p delay_ms after dispatch instead of opts.delay_ms.
 * KRAKEN_ENOTFOUND for a mutation the simulator does not own.
 */
int kraken_sim_set_delay(kraken_sim *sim, const char *mutation_id, uint32_t delay_ms);

/**
 * Call @p fn (NULL: none) from the simulator's interrupt handler, after the
 * pending answer is cancelled: lets a harness act from inside an engine callback.
 */
typedef void (*kraken_sim_interrupt_hook)(kraken_service *service,
                                          const kraken_mutation_request *req, void *arg);
void kraken_sim_on_interrupt(kraken_sim *sim, kraken_sim_interrupt_hook fn, void *arg);

/** Steps dispatched to the simulator (all, or of one mutation id when not NULL). */
unsigned kraken_sim_dispatched(const kraken_sim *sim, const char *mutation_id);
/** Interrupts received. */
unsigned kraken_sim_interrupted(const kraken_sim *sim);
/** Service starts received. */
unsigned kraken_sim_started(const kraken_sim *sim);
/** Answers still pending (armed timers). */
unsigned kraken_sim_pending(const kraken_sim *sim);
/** Answers the engine refused (late answers to interrupted or replaced steps). */
unsigned kraken_sim_refused(const kraken_sim *sim);

#ifdef __cplusplus
}
#endif
#endif
