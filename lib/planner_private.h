/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * planner_private.h: mutations, the planner and the mutation graph (mutation.c, planner.c,
 * graph.c), and what the engine reads of them. Not installed.
 */
#ifndef KRAKEN_PLANNER_PRIVATE_H
#define KRAKEN_PLANNER_PRIVATE_H

#include "core_private.h"
#include "url_private.h"

/* ==== mutations, planner, graph (owner: planner; mutation.c, planner.c, graph.c) ==== */

/* A URL named by some declaration, interned by canonical text. Interned URLs live as long as
 * the set (pointers stay valid); the counters give its current role. */
typedef struct kraken_murl {
    kraken_url *url;                   /* compiled, owned */
    const char *text;                  /* canonical text (kraken__url_text(url)) */
    kraken_type type;                  /* scalar types only */
    const struct kraken_enum_type *enm;
    size_t n_mutating;                 /* > 0: a mutator URL, planned on Dsc values */
    size_t n_facts;                    /* requires/excludes naming it; static (read from Cfg)
                                        * when n_facts > 0 and n_mutating == 0 */
    size_t model_index;                /* scratch for the planner model build */
    size_t index;                      /* interning order: 0, 1, ...; never changes (the
                                        * engine's per-node change bits are indexed by it) */
} kraken_murl;

typedef struct kraken_mfact {
    kraken_murl *u;
    kraken_value value;
} kraken_mfact;

typedef struct kraken_mchange {
    kraken_murl *u;
    kraken_value from, to;
} kraken_mchange;

/* A compiled declaration (values parsed, URLs interned). Valid until the set changes. */
typedef struct kraken_mutation {
    char *service;
    char *id;
    kraken_mchange *mutates;
    size_t n_mutates;
    kraken_mfact *requires;
    size_t n_requires;
    kraken_mfact *excludes;
    size_t n_excludes;
    kraken_context context;
    uint32_t timeout_ms;
    bool has_fail_to;
    kraken_mfact fail_to;
    uint32_t cost;                     /* >= 1 */
    uint32_t declared_timeout_ms;      /* timeout_ms is this or the override in force */
    bool disabled;                     /* never planned with (an override) */
    kraken_mutate *text;               /* mutates as canonical text, for requests (owned) */
} kraken_mutation;

/* An override of a mutation's settings, kept by (service, id) whether declared or not. */
typedef struct kraken_moverride {
    char *service;
    char *id;
    bool has_disabled, disabled;
    bool has_timeout;
    uint32_t timeout_ms;
} kraken_moverride;

struct kraken_planner;

/* The set. Mutations are kept sorted by (service id, mutation id): that order is the
 * tie-break order of the planner, so a set registered in any order plans the same way. */
struct kraken_mutation_set {
    kraken_mutation **muts;
    size_t n_muts, cap_muts;
    kraken_murl **urls;                /* sorted by canonical text */
    size_t n_urls, cap_urls;
    uint64_t generation;               /* changes whenever the set of mutations changes */
    struct kraken_planner *planner;    /* model + plan cache, rebuilt lazily per generation */
    size_t max_states;                 /* bound on states per search/graph (beyond: ELIMIT);
                                        * KRAKEN_PLANNER_MAX_STATES unless a test lowers it */
    kraken_moverride *overrides;       /* disable/timeout settings by (service, id) */
    size_t n_overrides;
    uint64_t searches;                 /* plan searches run (cache misses), for tests */
};

/* -- versions of kraken_mutation_decl (mutation.c) -- */
KRAKEN_PRIVATE extern const kraken__struct_abi kraken__mutation_decl_abi;
/* The caller's declaration read into a current-version one; refused versions get the message
 * "mutation 'ID': kraken_mutation_decl version V (...)" for the caller to prefix. */
KRAKEN_PRIVATE int kraken__mutation_decl_read(const kraken_mutation_decl *caller,
                                              kraken_mutation_decl *out);
/* An array of declarations (kraken_module_desc.mutations): element 0's version is the stride
 * (*stride), every element must carry it; message "mutation I 'ID': ...". */
KRAKEN_PRIVATE int kraken__mutation_decls_check(const kraken_mutation_decl *decls, size_t n,
                                                size_t *stride);
/* Declaration @p i of a checked array, read into a current-version one. */
KRAKEN_PRIVATE void kraken__mutation_decls_get(const kraken_mutation_decl *decls, size_t stride,
                                               size_t i, kraken_mutation_decl *out);

/* -- for the engine -- */
/* The compiled mutation (service, id) or NULL. */
KRAKEN_PRIVATE const kraken_mutation *kraken__mutation_find(const kraken_mutation_set *set,
                                                            const char *service, const char *id);
/* True when @p dsc shows the `to` value of every URL the mutation mutates (step done). */
KRAKEN_PRIVATE bool kraken__mutation_done(const kraken_mutation *m, const kraken_node *dsc);
/* The interned URL with this canonical text, or NULL: tells whether a changed URL matters for
 * planning (n_mutating > 0: Dsc and Cfg goal; n_facts > 0: Cfg static fact). */
KRAKEN_PRIVATE const kraken_murl *kraken__mutation_set_find_url(const kraken_mutation_set *set,
                                                                const char *canonical);
KRAKEN_PRIVATE uint64_t kraken__mutation_set_generation(const kraken_mutation_set *set);
/* Interned URLs so far (bounds kraken_murl.index). */
KRAKEN_PRIVATE size_t kraken__mutation_set_url_count(const kraken_mutation_set *set);
/* Knowledge rule on a Dsc node: calls @p fn for every mutator URL whose Dsc value is non-zero
 * but must be unknown because its discovery conditions fail (to fixpoint; static facts from
 * @p cfg). The engine records those as zero in Dsc. Stops at and returns fn's negative value. */
KRAKEN_PRIVATE int kraken__mutation_set_stale(kraken_mutation_set *set, const kraken_node *cfg,
                                              const kraken_node *dsc,
                                              int (*fn)(const kraken_murl *u, void *userdata),
                                              void *userdata);
/* Does a stored slot (NULL = absent = zero) of a URL of @p type hold @p value? No allocation. */
KRAKEN_PRIVATE bool kraken__mslot_matches(kraken_type type, const kraken_slot *slot,
                                          const kraken_value *value);

/* -- planner model, shared by planner.c and graph.c -- */
typedef struct kraken_planner kraken_planner;
/* The model of the set's current generation (built on demand; owned by the set). */
KRAKEN_PRIVATE int kraken__planner_get(kraken_mutation_set *set, kraken_planner **out);
KRAKEN_PRIVATE void kraken__planner_free(kraken_planner *p);
/* Planning state width (mutator URLs, sorted by canonical text) and static vector width. */
KRAKEN_PRIVATE size_t kraken__planner_width(const kraken_planner *p);
KRAKEN_PRIVATE size_t kraken__planner_static_width(const kraken_planner *p);
KRAKEN_PRIVATE uint64_t kraken__planner_generation(const kraken_planner *p);
/* Static fact codes from a Cfg node into @p statics (static_width bytes). */
KRAKEN_PRIVATE void kraken__planner_encode_statics(kraken_planner *p, const kraken_node *cfg,
                                                   uint8_t *statics);
/* Apply mutation @p i (set order) to @p state; false when it does not apply. @p statics NULL:
 * every static require holds and no static exclude matches. @p next may not alias @p state. */
KRAKEN_PRIVATE bool kraken__planner_apply(const kraken_planner *p, size_t i, const uint8_t *state,
                                          const uint8_t *statics, uint8_t *next);
/* Short display name of mutator URL @p u ("PhysState", "PXE.Client/State") and of its value
 * code @p code ("POWER_ON"). */
KRAKEN_PRIVATE const char *kraken__planner_url_name(const kraken_planner *p, size_t u);
KRAKEN_PRIVATE const char *kraken__planner_value_name(const kraken_planner *p, size_t u,
                                                      uint8_t code);
/* The planning states a plan passes through (length+1 vectors of width bytes), and the model
 * generation they are coded for. */
KRAKEN_PRIVATE const uint8_t *kraken__plan_state(const kraken_plan *plan, size_t i);
KRAKEN_PRIVATE uint64_t kraken__plan_generation(const kraken_plan *plan);

/* Interned state vectors (fixed width), used by the search and the graph. */
typedef struct kraken_stateset kraken_stateset;
KRAKEN_PRIVATE kraken_stateset *kraken__stateset_new(size_t width);
KRAKEN_PRIVATE void kraken__stateset_free(kraken_stateset *ss);
/* Index of @p vec, adding it if new (*added); KRAKEN_ENOMEM on failure. */
KRAKEN_PRIVATE int kraken__stateset_intern(kraken_stateset *ss, const uint8_t *vec, size_t *index,
                                           bool *added);
/* Index of @p vec or SIZE_MAX. */
KRAKEN_PRIVATE size_t kraken__stateset_find(const kraken_stateset *ss, const uint8_t *vec);
KRAKEN_PRIVATE size_t kraken__stateset_count(const kraken_stateset *ss);
/* Pointer valid until the next intern. */
KRAKEN_PRIVATE const uint8_t *kraken__stateset_vec(const kraken_stateset *ss, size_t index);
/* Default bound on planning states explored by one search or graph (beyond: KRAKEN_ELIMIT). */
#define KRAKEN_PLANNER_MAX_STATES 100000
/* ==== end planner additions ==== */

#endif
