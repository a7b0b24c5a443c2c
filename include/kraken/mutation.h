/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file kraken/mutation.h
 * @brief Mutation declarations, the planner and the mutation graph (SPEC 4.1-4.2).
 *
 * A ::kraken_mutation_set holds the mutations declared by service instances.
 * Planning is a pure function of (set, Cfg node, Dsc node): the cheapest
 * sequence of mutations that reaches the goal, cached by (state vector,
 * static facts, goal). Ties are broken by content, not by the order of
 * registration: among equally cheap plans the one whose sequence of
 * (service id, mutation id) pairs sorts first wins, so a set declared in any
 * order gives the same plans. A set is used by one thread at a time; plans
 * are immutable and may be freed from any thread.
 */
#ifndef KRAKEN_MUTATION_H
#define KRAKEN_MUTATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kraken_mutation_set kraken_mutation_set;
typedef struct kraken_plan kraken_plan;

/** Where a mutation runs (SPEC 4.1). */
typedef enum kraken_context {
    KRAKEN_CONTEXT_SELF = 0,  /**< on the kraken whose id is the node's id */
    KRAKEN_CONTEXT_CHILD = 1, /**< on the kraken that is the node's Cfg parent */
    KRAKEN_CONTEXT_ALL = 2    /**< everywhere */
} kraken_context;

/** One mutated URL: from -> to; values as text (parsed by the URL's type). */
typedef struct kraken_mutate {
    const char *url;
    const char *from;
    const char *to;
} kraken_mutate;

/** A url = value fact. */
typedef struct kraken_fact {
    const char *url;
    const char *value;
} kraken_fact;

/**
 * Version of ::kraken_mutation_decl this header declares. Version 1: through @c cost.
 * A later version only appends members.
 */
#define KRAKEN_MUTATION_DECL_VERSION 1

/**
 * A mutation declaration. Everything is copied at declaration.
 *
 * @c version says which members the caller's struct has (start from
 * KRAKEN_MUTATION_DECL_INIT, which sets it): a newer libkraken reads an older
 * caller's struct and gives members added later their zero value; version 0
 * or a version newer than the library is refused with KRAKEN_EINVAL and
 * nothing is declared. In an array (kraken_module_desc.mutations) element 0's
 * version gives the size of every element, and every element must carry that
 * same version (the message names the first index that does not).
 */
typedef struct kraken_mutation_decl {
    unsigned version;            /**< KRAKEN_MUTATION_DECL_VERSION */
    const char *id;              /**< unique within the service instance */
    const kraken_mutate *mutates;
    size_t n_mutates;            /**< >= 1 */
    const kraken_fact *requires;
    size_t n_requires;
    const kraken_fact *excludes; /**< a zero value means "must be known" */
    size_t n_excludes;
    kraken_context context;
    uint32_t timeout_ms;         /**< 0 = none */
    kraken_fact fail_to;         /**< url NULL = none */
    uint32_t cost;               /**< 0 means the default, 1 */
} kraken_mutation_decl;

/**
 * A declaration written with designated initialisers; it sets @c version, and
 * fields not named are zero (context SELF, no timeout, no fail_to, cost 1):
 *
 *     static const kraken_mutate on[] = {{"/PhysState", "POWER_OFF", "POWER_ON"}};
 *     static const kraken_fact sim[] = {{"/Platform", "sim"}};
 *     kraken_mutation_decl d = KRAKEN_MUTATION_DECL_INIT(.id = "OFFtoON",
 *         KRAKEN_DECL_MUTATES(on), KRAKEN_DECL_REQUIRES(sim),
 *         .context = KRAKEN_CONTEXT_CHILD, .timeout_ms = 10000,
 *         .fail_to = {"/PhysState", "PHYS_HANG"});
 */
#define KRAKEN_MUTATION_DECL_INIT(...) {.version = KRAKEN_MUTATION_DECL_VERSION, __VA_ARGS__}
/** .mutates and .n_mutates from an array (not a pointer). */
#define KRAKEN_DECL_MUTATES(array) .mutates = (array), .n_mutates = sizeof(array) / sizeof((array)[0])
/** .requires and .n_requires from an array. */
#define KRAKEN_DECL_REQUIRES(array)                                                       \
    .requires = (array), .n_requires = sizeof(array) / sizeof((array)[0])
/** .excludes and .n_excludes from an array. */
#define KRAKEN_DECL_EXCLUDES(array)                                                       \
    .excludes = (array), .n_excludes = sizeof(array) / sizeof((array)[0])

/**
 * A declared mutation as the set holds it (canonical URLs, values as text),
 * with the overrides in force. Owned by the caller: kraken_mutation_info_clear().
 */
typedef struct kraken_mutation_info {
    char *service_id;
    char *mutation_id;
    kraken_mutate *mutates;      /**< strings owned by the info */
    size_t n_mutates;
    kraken_fact *requires;
    size_t n_requires;
    kraken_fact *excludes;
    size_t n_excludes;
    kraken_context context;
    uint32_t timeout_ms;          /**< in force (the override, or as declared) */
    uint32_t declared_timeout_ms; /**< as declared */
    kraken_fact fail_to;          /**< url NULL = none */
    uint32_t cost;
    bool disabled;                /**< not planned with */
} kraken_mutation_info;

int kraken_mutation_set_new(kraken_mutation_set **out);
/** NULL-safe. */
void kraken_mutation_set_free(kraken_mutation_set *set);

/**
 * Declare a mutation of service instance @p service_id. Refused (nothing
 * added) when @p decl's version is 0 or unknown, an id repeats within the
 * service, a URL or value is unknown, a mutated URL is also
 * required/excluded, or n_mutates is 0.
 */
int kraken_mutation_set_add(kraken_mutation_set *set, const char *service_id,
                            const kraken_mutation_decl *decl);
/** Remove every mutation of a service instance (e.g. when it is deleted). */
int kraken_mutation_set_remove_service(kraken_mutation_set *set, const char *service_id);
/** Number of declared mutations. */
size_t kraken_mutation_set_count(const kraken_mutation_set *set);

/**
 * Every declared mutation, sorted by (service id, mutation id). *out is an
 * array of *n infos (NULL when empty); free with kraken_mutation_infos_free().
 */
int kraken_mutation_set_list(const kraken_mutation_set *set, kraken_mutation_info **out,
                             size_t *n);
/** One mutation by (service id, mutation id); KRAKEN_ENOTFOUND when not declared. */
int kraken_mutation_set_lookup(const kraken_mutation_set *set, const char *service_id,
                               const char *mutation_id, kraken_mutation_info *out);
/** Release what an info holds (NULL-safe); the struct is zeroed. */
void kraken_mutation_info_clear(kraken_mutation_info *info);
/** Release an array from kraken_mutation_set_list() (NULL-safe). */
void kraken_mutation_infos_free(kraken_mutation_info *infos, size_t n);

/**
 * Disable (or enable) a mutation: a disabled one is never planned with.
 * Allowed before the mutation is declared (it applies when it is).
 */
int kraken_mutation_set_disable(kraken_mutation_set *set, const char *service_id,
                                const char *mutation_id, bool disabled);
/** Override a mutation's timeout (0: none), before or after it is declared. */
int kraken_mutation_set_timeout(kraken_mutation_set *set, const char *service_id,
                                const char *mutation_id, uint32_t timeout_ms);

/**
 * The leaves the planner compares for a node: every mutator URL whose Cfg
 * value is non-zero and differs from the Dsc value, in URL order (old_value:
 * Dsc, NONE when unknown; new_value: Cfg). Dsc values are taken as stored
 * (before the knowledge rule). Free with kraken_changes_free(); *out NULL
 * when none.
 */
int kraken_mutation_set_diff(kraken_mutation_set *set, const kraken_node *cfg,
                             const kraken_node *dsc, kraken_change **out, size_t *n);

/**
 * Plan for one node. On success *out holds the (possibly empty) plan. When
 * no sequence reaches the goal, returns KRAKEN_ENOPATH and *out is NULL.
 */
int kraken_mutation_set_plan(kraken_mutation_set *set, const kraken_node *cfg,
                             const kraken_node *dsc, kraken_plan **out);

size_t kraken_plan_length(const kraken_plan *plan);
/** Service id and mutation id of step @p i (valid while the plan lives). */
const char *kraken_plan_step_service(const kraken_plan *plan, size_t i);
const char *kraken_plan_step_mutation(const kraken_plan *plan, size_t i);
/** Total cost of the plan. */
uint64_t kraken_plan_cost(const kraken_plan *plan);
/** NULL-safe. */
void kraken_plan_free(kraken_plan *plan);

/**
 * The mutation graph in vis.js form: {"nodes": [{"id","label","color"}],
 * "edges": [{"from","to","id","label","color"}]}. Vertices are the planning
 * states reachable from all-unknown; ids are derived from content (stable
 * across runs). Static requirements (e.g. /Platform) are read from @p cfg;
 * with @p cfg NULL they are taken as satisfied. Disabled mutations are left
 * out. With @p plan, its edges are coloured green and step @p current_step
 * (if < length) red.
 */
int kraken_mutation_set_graph_json(kraken_mutation_set *set, const kraken_node *cfg,
                                   const kraken_plan *plan, size_t current_step, char **out);

#ifdef __cplusplus
}
#endif
#endif
