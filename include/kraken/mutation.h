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

/** A mutation declaration. Everything is copied at declaration. */
typedef struct kraken_mutation_decl {
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

int kraken_mutation_set_new(kraken_mutation_set **out);
/** NULL-safe. */
void kraken_mutation_set_free(kraken_mutation_set *set);

/**
 * Declare a mutation of service instance @p service_id. Refused (nothing
 * added) when an id repeats within the service, a URL or value is unknown,
 * a mutated URL is also required/excluded, or n_mutates is 0.
 */
int kraken_mutation_set_add(kraken_mutation_set *set, const char *service_id,
                            const kraken_mutation_decl *decl);
/** Remove every mutation of a service instance (e.g. when it is deleted). */
int kraken_mutation_set_remove_service(kraken_mutation_set *set, const char *service_id);
/** Number of declared mutations. */
size_t kraken_mutation_set_count(const kraken_mutation_set *set);

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
 * with @p cfg NULL they are taken as satisfied. With @p plan, its edges are
 * coloured green and step @p current_step (if < length) red.
 */
int kraken_mutation_set_graph_json(kraken_mutation_set *set, const kraken_node *cfg,
                                   const kraken_plan *plan, size_t current_step, char **out);

#ifdef __cplusplus
}
#endif
#endif
