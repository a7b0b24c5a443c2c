/* SPDX-License-Identifier: BSD-3-Clause */
#include "testpower.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char schemas[] =
    "{\"schemas\": [{\"name\": \"TestPower.Config\", \"fields\": ["
    "{\"name\": \"mode\", \"number\": 1, \"type\": \"string\"},"
    "{\"name\": \"label\", \"number\": 2, \"type\": \"string\"}]}]}";

static const kraken_mutate m_discover[] = {{"/PhysState", "PHYS_UNKNOWN", "POWER_OFF"}};
static const kraken_mutate m_poweron[] = {{"/PhysState", "POWER_OFF", "POWER_ON"}};
static const kraken_mutate m_boot[] = {{"/RunState", "UNKNOWN", "INIT"}};
static const kraken_mutate m_sync[] = {{"/RunState", "INIT", "SYNC"}};
static const kraken_fact powered[] = {{"/PhysState", "POWER_ON"}};

static const kraken_mutation_decl mutations[] = {
    KRAKEN_MUTATION_DECL_INIT(.id = "discover", KRAKEN_DECL_MUTATES(m_discover),
                              .context = KRAKEN_CONTEXT_ALL, .timeout_ms = 60000),
    KRAKEN_MUTATION_DECL_INIT(.id = "poweron", KRAKEN_DECL_MUTATES(m_poweron),
                              .context = KRAKEN_CONTEXT_ALL, .timeout_ms = 60000),
    KRAKEN_MUTATION_DECL_INIT(.id = "boot", KRAKEN_DECL_MUTATES(m_boot),
                              KRAKEN_DECL_REQUIRES(powered), .context = KRAKEN_CONTEXT_ALL,
                              .timeout_ms = 60000),
    KRAKEN_MUTATION_DECL_INIT(.id = "sync", KRAKEN_DECL_MUTATES(m_sync),
                              KRAKEN_DECL_REQUIRES(powered), .context = KRAKEN_CONTEXT_ALL,
                              .timeout_ms = 60000),
};

static const kraken_module_discoverable discoverables[] = {
    {"/PhysState", "NODE_OFF", "POWER_OFF"},
    {"/RunState", NULL, NULL},
};

static testpower_stats *stats(void *userdata)
{
    static testpower_stats none;
    return userdata ? userdata : &none;
}

/* The config's mode and label, as text ("" when unset). */
static void read_config(const kraken_value *config, char *mode, size_t mlen, char *label,
                        size_t llen)
{
    mode[0] = label[0] = '\0';
    if (!config || config->type != KRAKEN_T_RECORD)
        return;
    char *text = NULL;
    if (kraken_value_format(config, &text) < 0)
        return;
    const char *p = strstr(text, "\"mode\"");
    if (p && sscanf(p, "\"mode\": \"%31[^\"]\"", mode) != 1)
        sscanf(p, "\"mode\":\"%31[^\"]\"", mode);
    p = strstr(text, "\"label\"");
    if (p && sscanf(p, "\"label\": \"%127[^\"]\"", label) != 1)
        sscanf(p, "\"label\":\"%127[^\"]\"", label);
    (void)mlen;
    (void)llen;
    free(text);
}

static void on_start(kraken_module *m, const kraken_value *config, void *userdata)
{
    testpower_stats *s = stats(userdata);
    s->starts++;
    read_config(config, s->mode, sizeof s->mode, s->last_config, sizeof s->last_config);
    kraken_module_log(m, KRAKEN_LOG_INFO, "start mode=%s label=%s", s->mode, s->last_config);
    kraken_module_set_state(m, KRAKEN_SERVICE_RUN, NULL);
}

static void on_stop(kraken_module *m, void *userdata)
{
    (void)m;
    stats(userdata)->stops++;
}

static void on_config(kraken_module *m, const kraken_value *config, void *userdata)
{
    testpower_stats *s = stats(userdata);
    s->configs++;
    read_config(config, s->mode, sizeof s->mode, s->last_config, sizeof s->last_config);
    kraken_module_log(m, KRAKEN_LOG_NOTICE, "config mode=%s label=%s", s->mode, s->last_config);
}

static void on_mutate(kraken_module *m, const kraken_mutation_request *req, void *userdata)
{
    testpower_stats *s = stats(userdata);
    s->mutates++;
    if (strcmp(s->mode, "hang") == 0)
        return;
    if (strcmp(s->mode, "crash") == 0 && strcmp(req->mutation_id, "poweron") == 0)
        abort();
    if (strcmp(s->mode, "fail") == 0) {
        kraken_module_fail(m, &req->node_id, req->id, "testpower is in fail mode");
        return;
    }
    for (size_t i = 0; i < req->n_mutates; i++)
        if (kraken_module_report(m, &req->node_id, req->id, req->mutates[i].url,
                                 req->mutates[i].to) < 0)
            kraken_module_log(m, KRAKEN_LOG_ERROR, "report: %s", kraken_error_last());
}

static void on_interrupt(kraken_module *m, const kraken_mutation_request *req, void *userdata)
{
    stats(userdata)->interrupts++;
    kraken_module_log(m, KRAKEN_LOG_NOTICE, "interrupt %s", req->mutation_id);
}

static const kraken_module_desc desc = {
    .abi_version = KRAKEN_MODULE_ABI_VERSION,
    .name = "testpower",
    .schemas_json = schemas,
    .config_schema = "TestPower.Config",
    .discoverables = discoverables,
    .n_discoverables = sizeof discoverables / sizeof discoverables[0],
    .mutations = mutations,
    .n_mutations = sizeof mutations / sizeof mutations[0],
    .handlers = {.start = on_start, .stop = on_stop, .config_changed = on_config,
                 .mutate = on_mutate, .interrupt = on_interrupt},
};

const kraken_module_desc *testpower_desc(void)
{
    return &desc;
}
