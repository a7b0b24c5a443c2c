/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * config.c: kraken-daemon's command line and config file (SPEC 9.1).
 *
 * One table describes every setting: its flag, its config-file key (the
 * original's lower-cased Go field names) and its type. Flags are the
 * original's single-dash Go flags ("-log 7", "-log=7", "-freeze") and also
 * accept the GNU long forms ("--log 7", "--log=7"). Precedence is defaults <
 * config file < flags: the command line is read twice, first to find -config
 * (and to reject bad flags before any file is read), then to apply the flags
 * over what the file set. Config files are YAML or JSON (JSON is checked by
 * cJSON for its error positions, then read through the same YAML tree walk,
 * JSON being YAML's flow syntax), so every error names file, line and column.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <yaml.h>

#include "kd.h"

enum setting_type { T_BOOL, T_STRING, T_INT, T_DURATION, T_SIZE, T_UUID };

typedef struct setting {
    const char *flag;    /* without dashes */
    const char *key;     /* config-file key */
    enum setting_type type;
    size_t offset;
    int min, max;        /* T_INT */
    const char *metavar;
    const char *help;
} setting;

#define OFF(f) offsetof(kd_config, f)

static const setting settings[] = {
    {"freeze", "freeze", T_BOOL, OFF(freeze), 0, 0, NULL, "start with the state engine frozen"},
    {"id", "id", T_UUID, OFF(id), 0, 0, "UUID", "this instance's node id (default: generated)"},
    {"ip", "ip", T_STRING, OFF(ip), 0, 0, "ADDR",
     "address for sync; also the self node's kraken interface (default 127.0.0.1)"},
    {"ipapi", "ipapi", T_STRING, OFF(ipapi), 0, 0, "ADDR[:PORT]",
     "REST API listen address (default 127.0.0.1, port 3141)"},
    {"wsport", "wsport", T_INT, OFF(wsport), -1, 65535, "PORT",
     "websocket port (default -1: its Cfg config's, else 3142; 0 picks one)"},
    {"log", "loglevel", T_INT, OFF(loglevel), 0, 9, "0..9",
     "log level, 0 PANIC ... 9 DDDEBUG (default 5)"},
    {"noprefix", "noprefix", T_BOOL, OFF(noprefix), 0, 0, NULL,
     "no timestamp prefix on log lines (journald adds its own)"},
    {"parent", "parent", T_STRING, OFF(parent), 0, 0, "ADDR[:PORT]", "run as a child of this parent"},
    {"sdnotify", "sdnotify", T_BOOL, OFF(sdnotify), 0, 0, NULL,
     "tell systemd READY and STOPPING (Type=notify)"},
    {"state", "statefile", T_STRING, OFF(statefile), 0, 0, "FILE",
     "initial Cfg node list; every Cfg change is saved back to it"},
    {"secret", "secretfile", T_STRING, OFF(secretfile), 0, 0, "FILE",
     "sync key: the cluster secret on a root, the node key on a child"},
    {"sync-insecure", "syncinsecure", T_BOOL, OFF(syncinsecure), 0, 0, NULL,
     "sync without a secret (a fixed public key: demos only)"},
    {"syncport", "syncport", T_INT, OFF(syncport), 0, 65535, "PORT",
     "sync UDP/TCP port (default 31415; 0 picks one)"},
    {"schemas", "schemadir", T_STRING, OFF(schemadir), 0, 0, "DIR",
     "load schema description files (*.json) from DIR before the state"},
    {"api-token", "apitokenfile", T_STRING, OFF(apitokenfile), 0, 0, "FILE",
     "REST bearer token file: every state-changing request must carry it"},
    {"api-insecure", "apiinsecure", T_BOOL, OFF(apiinsecure), 0, 0, NULL,
     "allow REST on a non-loopback address without a token"},
    {"api-open-reads", "apiopenreads", T_BOOL, OFF(apiopenreads), 0, 0, NULL,
     "with a token, let GET requests through without it"},
    {"api-timeout", "apitimeout", T_DURATION, OFF(apitimeout_ms), 1, 0, "DURATION",
     "REST idle and slow-client timeout (default 15s)"},
    {"api-max-body", "apimaxbody", T_SIZE, OFF(apimaxbody), 0, 0, "BYTES",
     "REST request body limit (default 67108864)"},
    {"persist-delay", "persistdelay", T_DURATION, OFF(persistdelay_ms), 0, 0, "DURATION",
     "state-file write debounce (default 100ms; REST writes flush at once)"},
    {"module-socket", "modulesocket", T_STRING, OFF(modulesocket), 0, 0, "PATH",
     "Unix socket for external module processes (default /run/kraken/module.sock)"},
    {"module-dir", "moduledir", T_STRING, OFF(moduledir), 0, 0, "DIR",
     "directory of loadable modules (NAME.so) for serviceinstances.<id>.module (default "
     KD_DEFAULT_MODULE_DIR "; empty: none)"},
    {"module-uids", "moduleuids", T_STRING, OFF(moduleuids), 0, 0, "UID,...",
     "other uids allowed to connect to the module socket"},
    {"module-grace", "modulegrace", T_DURATION, OFF(modulegrace_ms), 0, 0, "DURATION",
     "module process stop: SIGTERM, then SIGKILL after this (default 5s)"},
    {"module-max-crashes", "modulemaxcrashes", T_INT, OFF(modulemaxcrashes), 1, 1000, "N",
     "crashes in a row before a module service is ERROR (default 5)"},
    {"module-restart", "modulerestart", T_DURATION, OFF(modulerestart_ms), 0, 0, "DURATION",
     "first restart delay of a crashed module, doubling up to 1m (default 1s)"},
};
#define N_SETTINGS (sizeof settings / sizeof settings[0])

/* ---- defaults, free ------------------------------------------------------------------------ */

void kd_config_defaults(kd_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->loglevel = 5;
    cfg->wsport = -1;
    cfg->syncport = KRAKEN_SYNC_DEFAULT_PORT;
    cfg->apitimeout_ms = 15000;
    cfg->apimaxbody = 64u << 20;
    cfg->persistdelay_ms = 100;
    cfg->modulegrace_ms = 5000;
    cfg->modulemaxcrashes = 5;
    cfg->modulerestart_ms = 1000;
    /* where `ninja install` puts modules; NULL (no directory) should strdup fail */
    cfg->moduledir = strdup(KD_DEFAULT_MODULE_DIR);
}

static void service_cfg_clear(kd_service_cfg *s)
{
    for (size_t i = 0; i < s->n_mutations; i++)
        free(s->mutations[i].id);
    free(s->mutations);
    free(s->id);
    free(s->module);
    for (size_t i = 0; i < s->n_args; i++)
        free(s->args[i]);
    free(s->args);
    for (size_t i = 0; i < s->n_env; i++)
        free(s->env[i]);
    free(s->env);
    free(s->command);
    free(s->cwd);
}

void kd_config_clear(kd_config *cfg)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (settings[i].type == T_STRING || settings[i].type == T_UUID)
            free(*(char **)((char *)cfg + settings[i].offset));
    for (size_t i = 0; i < cfg->n_services; i++)
        service_cfg_clear(&cfg->services[i]);
    free(cfg->services);
    free(cfg->config_path);
    free(cfg->write_secret);
    free(cfg->write_node_key);
    memset(cfg, 0, sizeof *cfg);
}

const kd_service_cfg *kd_config_service(const kd_config *cfg, const char *id)
{
    for (size_t i = 0; i < cfg->n_services; i++)
        if (strcmp(cfg->services[i].id, id) == 0)
            return &cfg->services[i];
    return NULL;
}

/* ---- setting a value from text ------------------------------------------------------------- */

static int parse_bool(const char *text, bool *out)
{
    static const char *yes[] = {"true", "1", "yes", "on", "t"};
    static const char *no[] = {"false", "0", "no", "off", "f"};
    for (size_t i = 0; i < 5; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static int parse_u64(const char *text, uint64_t *out)
{
    if (!isdigit((unsigned char)*text))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (*end || errno)
        return -1;
    *out = v;
    return 0;
}

/* Store @p text in setting @p s of @p cfg. On error, a reason (without location) in @p err. */
static int setting_apply(kd_config *cfg, const setting *s, const char *text, bool numeric_ns,
                         char *err, size_t errlen)
{
    void *field = (char *)cfg + s->offset;
    switch (s->type) {
    case T_BOOL:
        if (parse_bool(text, field) < 0) {
            snprintf(err, errlen, "invalid boolean '%s' for %s", text, s->key);
            return -1;
        }
        return 0;
    case T_UUID: {
        kraken_uuid id;
        if (!*text) /* "" as -printrc prints an unset string */
            goto set_string;
        if (kraken_uuid_parse(&id, text) < 0) {
            kraken_error_clear();
            snprintf(err, errlen, "invalid UUID '%s' for %s", text, s->key);
            return -1;
        }
    }
        /* fall through */
    case T_STRING: {
    set_string:;
        char *copy = *text ? strdup(text) : NULL;
        if (*text && !copy) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    case T_INT: {
        char *end;
        errno = 0;
        long v = strtol(text, &end, 10);
        if (!*text || *end || errno || v < s->min || v > s->max) {
            snprintf(err, errlen, "invalid value '%s' for %s (want an integer %d..%d)", text,
                     s->key, s->min, s->max);
            return -1;
        }
        *(int *)field = (int)v;
        return 0;
    }
    case T_DURATION: {
        uint64_t ns;
        /* A bare integer in a config file is nanoseconds, as Go's yaml reads a Duration. */
        uint64_t ms;
        if (numeric_ns && parse_u64(text, &ns) == 0) {
            ms = ns / 1000000 + (ns % 1000000 ? 1 : 0);
        } else if (kd_duration_parse(text, &ms) < 0) {
            snprintf(err, errlen, "invalid duration '%s' for %s (want e.g. \"10s\", \"1m30s\")",
                     text, s->key);
            return -1;
        }
        if (ms < (uint64_t)s->min) {
            snprintf(err, errlen, "%s must be at least %dms, not '%s'", s->key, s->min, text);
            return -1;
        }
        *(uint64_t *)field = ms;
        return 0;
    }
    case T_SIZE:
        if (parse_u64(text, field) < 0 || *(uint64_t *)field == 0) {
            snprintf(err, errlen, "invalid size '%s' for %s (want a positive number of bytes)",
                     text, s->key);
            return -1;
        }
        return 0;
    }
    return -1;
}

/* ---- command line -------------------------------------------------------------------------- */

static const setting *setting_by_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strlen(settings[i].flag) == len && strncmp(settings[i].flag, name, len) == 0)
            return &settings[i];
    return NULL;
}

enum command_flag {
    CMD_NONE,
    CMD_CONFIG,
    CMD_PRINTRC,
    CMD_VERSION,
    CMD_HELP,
    CMD_WRITE_SECRET,
    CMD_WRITE_NODE_KEY
};

static enum command_flag command_by_flag(const char *name, size_t len)
{
    static const struct {
        const char *name;
        enum command_flag cmd;
    } cmds[] = {{"config", CMD_CONFIG}, {"printrc", CMD_PRINTRC}, {"version", CMD_VERSION},
                {"help", CMD_HELP}, {"h", CMD_HELP}, {"write-secret", CMD_WRITE_SECRET},
                {"write-node-key", CMD_WRITE_NODE_KEY}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strlen(cmds[i].name) == len && strncmp(cmds[i].name, name, len) == 0)
            return cmds[i].cmd;
    return CMD_NONE;
}

/*
 * One pass over argv. With @p apply false only -config (and the commands) are
 * taken and everything is checked; with @p apply true the settings are stored.
 */
static int parse_argv(kd_config *cfg, int argc, char **argv, bool apply, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || arg[1] == '\0') {
            snprintf(err, errlen, "unexpected argument '%s' (flags start with '-'; see --help)",
                     arg);
            return -1;
        }
        const char *name = arg + 1;
        if (*name == '-')
            name++;
        if (!*name) { /* "--": end of flags */
            if (i + 1 < argc) {
                snprintf(err, errlen, "unexpected argument '%s' (see --help)", argv[i + 1]);
                return -1;
            }
            return 0;
        }
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const char *value = eq ? eq + 1 : NULL;

        enum command_flag cmd = command_by_flag(name, name_len);
        const setting *s = cmd == CMD_NONE ? setting_by_flag(name, name_len) : NULL;
        if (cmd == CMD_NONE && !s) {
            snprintf(err, errlen, "unknown flag '-%.*s' (see --help)", (int)name_len, name);
            return -1;
        }
        bool is_bool = cmd == CMD_PRINTRC || cmd == CMD_VERSION || cmd == CMD_HELP ||
                       (s && s->type == T_BOOL);
        if (!value && !is_bool) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "flag '-%.*s' needs a value", (int)name_len, name);
                return -1;
            }
            value = argv[++i];
        }
        if (cmd != CMD_NONE) {
            bool on = true;
            bool takes_value =
                cmd == CMD_CONFIG || cmd == CMD_WRITE_SECRET || cmd == CMD_WRITE_NODE_KEY;
            if (value && !takes_value && parse_bool(value, &on) < 0) {
                snprintf(err, errlen, "invalid boolean '%s' for flag '-%.*s'", value,
                         (int)name_len, name);
                return -1;
            }
            if (apply)
                continue;
            switch (cmd) {
            case CMD_CONFIG:
                free(cfg->config_path);
                cfg->config_path = strdup(value);
                break;
            case CMD_PRINTRC: cfg->printrc = on; break;
            case CMD_VERSION: cfg->version = on; break;
            case CMD_HELP: cfg->help = on; break;
            case CMD_WRITE_SECRET:
                free(cfg->write_secret);
                cfg->write_secret = strdup(value);
                break;
            case CMD_WRITE_NODE_KEY:
                free(cfg->write_node_key);
                cfg->write_node_key = strdup(value);
                break;
            case CMD_NONE: break;
            }
            continue;
        }
        /* Check every flag in the first pass too, into a scratch config. */
        kd_config scratch;
        kd_config_defaults(&scratch);
        char reason[256];
        int rc = setting_apply(apply ? cfg : &scratch, s, value ? value : "true", false, reason,
                               sizeof reason);
        kd_config_clear(&scratch);
        if (rc < 0) {
            snprintf(err, errlen, "flag '-%s': %s", s->flag, reason);
            return -1;
        }
    }
    return 0;
}

int kd_config_parse(kd_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    if (parse_argv(cfg, argc, argv, false, err, errlen) < 0)
        return -1;
    if (cfg->help || cfg->version)
        return 0;
    if (cfg->config_path && kd_config_load_file(cfg, cfg->config_path, err, errlen) < 0)
        return -1;
    return parse_argv(cfg, argc, argv, true, err, errlen);
}

void kd_config_usage(FILE *out)
{
    fprintf(out,
            "Usage: " KD_PROGRAM " [flags]\n"
            "Run a kraken state engine instance: root, or a child with -parent.\n"
            "Flags take one dash or two (-log 7, --log=7). Precedence: defaults < config file < "
            "flags.\n\n"
            "  -config FILE           YAML or JSON config file (keys as -printrc prints them)\n"
            "  -printrc               print the effective config as YAML and exit\n"
            "  -version               print the version and exit\n"
            "  -help, --help          print this help and exit\n"
            "  -write-secret FILE     write a new cluster secret (mode 0600; never replaces a "
            "file) and exit\n"
            "  -write-node-key ID:FILE\n"
            "                         write node ID's sync key to FILE (mode 0600), derived from "
            "-secret\n"
            "                         along the Cfg parent chain of -state, and exit\n");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        char left[64];
        snprintf(left, sizeof left, "-%s%s%s", settings[i].flag, settings[i].metavar ? " " : "",
                 settings[i].metavar ? settings[i].metavar : "");
        fprintf(out, "  %-22s %s\n", left, settings[i].help);
    }
}

/* ---- config file --------------------------------------------------------------------------- */

typedef struct file_ctx {
    const char *path;
    yaml_document_t *doc;
    char *err;
    size_t errlen;
    bool json;
} file_ctx;

static int node_error(file_ctx *f, const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int node_error(file_ctx *f, const yaml_node_t *node, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    snprintf(f->err, f->errlen, "%s:%zu:%zu: %s", f->path, node->start_mark.line + 1,
             node->start_mark.column + 1, reason);
    return -1;
}

static const char *scalar(const yaml_node_t *node)
{
    return node && node->type == YAML_SCALAR_NODE ? (const char *)node->data.scalar.value : NULL;
}

/* A null value ("~", "null", empty plain scalar) leaves the default. */
static bool is_null(const yaml_node_t *node)
{
    const char *v = scalar(node);
    return v && node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (!*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
            strcmp(v, "NULL") == 0);
}

static int expect_mapping(file_ctx *f, const yaml_node_t *node, const char *what)
{
    if (node->type == YAML_MAPPING_NODE)
        return 0;
    return node_error(f, node, "%s must be a mapping", what);
}

static int load_mutation(file_ctx *f, kd_service_cfg *svc, const char *id, yaml_node_t *node)
{
    kd_mutation_cfg *grown = realloc(svc->mutations, (svc->n_mutations + 1) * sizeof *grown);
    if (!grown)
        return node_error(f, node, "out of memory");
    svc->mutations = grown;
    kd_mutation_cfg *m = &svc->mutations[svc->n_mutations];
    memset(m, 0, sizeof *m);
    if (!(m->id = strdup(id)))
        return node_error(f, node, "out of memory");
    svc->n_mutations++;
    if (is_null(node))
        return 0;
    if (expect_mapping(f, node, "a mutation entry") < 0)
        return -1;
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(f->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(f->doc, p->value);
        const char *key = scalar(k), *val = scalar(v);
        if (!key)
            return node_error(f, k, "keys must be scalars");
        if (is_null(v))
            continue;
        if (!val)
            return node_error(f, v, "'%s' must be a scalar", key);
        if (strcasecmp(key, "disable") == 0) {
            if (parse_bool(val, &m->disable) < 0)
                return node_error(f, v, "invalid boolean '%s' for disable", val);
        } else if (strcasecmp(key, "timeout") == 0) {
            uint64_t ns;
            if (v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && parse_u64(val, &ns) == 0)
                m->timeout_ms = ns / 1000000 + (ns % 1000000 ? 1 : 0);
            else if (kd_duration_parse(val, &m->timeout_ms) < 0)
                return node_error(f, v, "invalid duration '%s' for timeout (want e.g. \"10s\")",
                                  val);
            if (m->timeout_ms > UINT32_MAX)
                return node_error(f, v, "timeout '%s' is too long", val);
            m->has_timeout = true;
        } else {
            return node_error(f, k, "unknown key '%s' in mutation '%s' (known: disable, timeout)",
                              key, id);
        }
    }
    return 0;
}

static kd_service_cfg *service_get(kd_config *cfg, const char *id)
{
    for (size_t i = 0; i < cfg->n_services; i++)
        if (strcmp(cfg->services[i].id, id) == 0)
            return &cfg->services[i];
    kd_service_cfg *grown = realloc(cfg->services, (cfg->n_services + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    cfg->services = grown;
    kd_service_cfg *s = &cfg->services[cfg->n_services];
    memset(s, 0, sizeof *s);
    if (!(s->id = strdup(id)))
        return NULL;
    cfg->n_services++;
    return s;
}

static int push_string(char ***v, size_t *n, const char *text)
{
    char **grown = realloc(*v, (*n + 1) * sizeof *grown);
    if (!grown)
        return -1;
    *v = grown;
    if (!(grown[*n] = strdup(text)))
        return -1;
    (*n)++;
    return 0;
}

/* serviceinstances.<id>.args: a sequence of strings (replaces what an earlier file set). */
static int load_args(file_ctx *f, kd_service_cfg *svc, yaml_node_t *v)
{
    if (v->type != YAML_SEQUENCE_NODE)
        return node_error(f, v, "args must be a sequence of strings");
    for (size_t i = 0; i < svc->n_args; i++)
        free(svc->args[i]);
    svc->n_args = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        yaml_node_t *a = yaml_document_get_node(f->doc, *it);
        if (!scalar(a))
            return node_error(f, a, "args must be a sequence of strings");
        if (push_string(&svc->args, &svc->n_args, scalar(a)) < 0)
            return node_error(f, a, "out of memory");
    }
    return 0;
}

/* serviceinstances.<id>.env: a mapping NAME: VALUE. */
static int load_env(file_ctx *f, kd_service_cfg *svc, yaml_node_t *v)
{
    if (expect_mapping(f, v, "env") < 0)
        return -1;
    for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
        yaml_node_t *ek = yaml_document_get_node(f->doc, q->key);
        yaml_node_t *ev = yaml_document_get_node(f->doc, q->value);
        const char *name = scalar(ek);
        if (!name || !*name || strchr(name, '='))
            return node_error(f, ek, "env names must be non-empty strings without '='");
        if (!scalar(ev))
            return node_error(f, ev, "env value of '%s' must be a string", name);
        char *pair = NULL;
        if (asprintf(&pair, "%s=%s", name, scalar(ev)) < 0)
            return node_error(f, ev, "out of memory");
        int rc = push_string(&svc->env, &svc->n_env, pair);
        free(pair);
        if (rc < 0)
            return node_error(f, ev, "out of memory");
    }
    return 0;
}

static int load_service(file_ctx *f, kd_config *cfg, const char *id, yaml_node_t *node)
{
    kd_service_cfg *svc = service_get(cfg, id);
    if (!svc)
        return node_error(f, node, "out of memory");
    if (is_null(node))
        return 0;
    if (expect_mapping(f, node, "a service instance entry") < 0)
        return -1;
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(f->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(f->doc, p->value);
        const char *key = scalar(k), *val = scalar(v);
        if (!key)
            return node_error(f, k, "keys must be scalars");
        if (is_null(v))
            continue;
        if (strcasecmp(key, "disable") == 0) {
            if (!val || parse_bool(val, &svc->disable) < 0)
                return node_error(f, v, "invalid boolean '%s' for disable", val ? val : "");
        } else if (strcasecmp(key, "module") == 0) {
            if (!val)
                return node_error(f, v, "module must be a string");
            free(svc->module);
            if (!(svc->module = strdup(val)))
                return node_error(f, v, "out of memory");
        } else if (strcasecmp(key, "mutations") == 0) {
            if (expect_mapping(f, v, "mutations") < 0)
                return -1;
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start;
                 q < v->data.mapping.pairs.top; q++) {
                yaml_node_t *mk = yaml_document_get_node(f->doc, q->key);
                if (!scalar(mk) || !*scalar(mk))
                    return node_error(f, mk, "mutation ids must be non-empty strings");
                if (load_mutation(f, svc, scalar(mk), yaml_document_get_node(f->doc, q->value)) <
                    0)
                    return -1;
            }
        } else if (strcasecmp(key, "command") == 0 || strcasecmp(key, "cwd") == 0) {
            if (!val)
                return node_error(f, v, "%s must be a string", key);
            char **field = strcasecmp(key, "cwd") == 0 ? &svc->cwd : &svc->command;
            free(*field);
            if (!(*field = strdup(val)))
                return node_error(f, v, "out of memory");
        } else if (strcasecmp(key, "args") == 0) {
            if (load_args(f, svc, v) < 0)
                return -1;
        } else if (strcasecmp(key, "env") == 0) {
            if (load_env(f, svc, v) < 0)
                return -1;
        } else {
            return node_error(f, k,
                              "unknown key '%s' in service instance '%s' (known: disable, module, "
                              "mutations, command, args, env, cwd)",
                              key, id);
        }
    }
    return 0;
}

static const setting *setting_by_key(const char *key)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strcasecmp(settings[i].key, key) == 0)
            return &settings[i];
    return NULL;
}

static int load_root(file_ctx *f, kd_config *cfg, yaml_node_t *root)
{
    if (!root) /* an empty file sets nothing */
        return 0;
    if (expect_mapping(f, root, "the config") < 0)
        return -1;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(f->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(f->doc, p->value);
        const char *key = scalar(k);
        if (!key)
            return node_error(f, k, "keys must be scalars");
        if (strcasecmp(key, "serviceinstances") == 0) {
            if (is_null(v))
                continue;
            if (expect_mapping(f, v, "serviceinstances") < 0)
                return -1;
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start;
                 q < v->data.mapping.pairs.top; q++) {
                yaml_node_t *sk = yaml_document_get_node(f->doc, q->key);
                if (!scalar(sk) || !*scalar(sk))
                    return node_error(f, sk, "service instance ids must be non-empty strings");
                if (load_service(f, cfg, scalar(sk), yaml_document_get_node(f->doc, q->value)) <
                    0)
                    return -1;
            }
            continue;
        }
        const setting *s = setting_by_key(key);
        if (!s)
            return node_error(f, k, "unknown key '%s'", key);
        if (is_null(v))
            continue;
        const char *val = scalar(v);
        if (!val)
            return node_error(f, v, "'%s' must be a scalar", key);
        char reason[256];
        bool plain = v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (setting_apply(cfg, s, val, plain, reason, sizeof reason) < 0)
            return node_error(f, v, "%s", reason);
    }
    return 0;
}

/* Line and column (1-based) of byte @p off in @p text. */
static void text_position(const char *text, size_t off, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static bool looks_like_json(const char *path, const char *text, size_t len)
{
    size_t l = strlen(path);
    if (l >= 5 && strcasecmp(path + l - 5, ".json") == 0)
        return true;
    for (size_t i = 0; i < len; i++)
        if (!isspace((unsigned char)text[i]))
            return text[i] == '{';
    return false;
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, fp);
        if (ferror(fp)) {
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
            free(buf);
            fclose(fp);
            return NULL;
        }
        if (feof(fp))
            break;
        if (n + 1 == cap) {
            char *grown = cap > (64u << 20) ? NULL : realloc(buf, cap *= 2);
            if (!grown) {
                free(buf);
                buf = NULL;
            } else {
                buf = grown;
            }
        }
    }
    fclose(fp);
    if (!buf) {
        snprintf(err, errlen, "%s: too large or out of memory", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int kd_config_load_file(kd_config *cfg, const char *path, char *err, size_t errlen)
{
    size_t len;
    char *text = read_file(path, &len, err, errlen);
    if (!text)
        return -1;
    file_ctx f = {.path = path, .err = err, .errlen = errlen,
                  .json = looks_like_json(path, text, len)};
    if (f.json) {
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithLengthOpts(text, len + 1, &end, true); /* + its NUL */
        if (!j) {
            size_t off = end ? (size_t)(end - text) : 0, line, col;
            const char *at = cJSON_GetErrorPtr();
            if (at && at >= text && at <= text + len)
                off = (size_t)(at - text);
            text_position(text, off, &line, &col);
            snprintf(err, errlen, "%s:%zu:%zu: invalid JSON", path, line, col);
            free(text);
            return -1;
        }
        cJSON_Delete(j);
        /* Tabs are JSON whitespace but not YAML indentation: blank them for the walk. */
        for (size_t i = 0; i < len; i++)
            if (text[i] == '\t')
                text[i] = ' ';
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "%s: out of memory", path);
        free(text);
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = 0;
    if (!yaml_parser_load(&parser, &doc)) {
        const yaml_mark_t *mark =
            parser.problem_mark.line || parser.problem_mark.column || !parser.context
                ? &parser.problem_mark
                : &parser.context_mark;
        snprintf(err, errlen, "%s:%zu:%zu: invalid %s: %s%s%s", path, mark->line + 1,
                 mark->column + 1, f.json ? "JSON" : "YAML",
                 parser.problem ? parser.problem : "syntax error", parser.context ? " " : "",
                 parser.context ? parser.context : "");
        rc = -1;
    } else {
        f.doc = &doc;
        rc = load_root(&f, cfg, yaml_document_get_root_node(&doc));
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    free(text);
    return rc;
}

/* ---- -printrc ------------------------------------------------------------------------------ */

static void print_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\x%02x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

void kd_config_print(const kd_config *cfg, FILE *out)
{
    fprintf(out, "---\n");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting *s = &settings[i];
        const void *field = (const char *)cfg + s->offset;
        char buf[64];
        fprintf(out, "%s: ", s->key);
        switch (s->type) {
        case T_BOOL: fprintf(out, "%s", *(const bool *)field ? "true" : "false"); break;
        case T_INT: fprintf(out, "%d", *(const int *)field); break;
        case T_SIZE: fprintf(out, "%" PRIu64, *(const uint64_t *)field); break;
        case T_DURATION:
            kd_duration_format(*(const uint64_t *)field, buf, sizeof buf);
            print_string(out, buf);
            break;
        case T_STRING:
        case T_UUID: print_string(out, *(char *const *)field); break;
        }
        fputc('\n', out);
    }
    if (!cfg->n_services) {
        fprintf(out, "serviceinstances: {}\n");
        return;
    }
    fprintf(out, "serviceinstances:\n");
    for (size_t i = 0; i < cfg->n_services; i++) {
        const kd_service_cfg *svc = &cfg->services[i];
        fprintf(out, "  ");
        print_string(out, svc->id);
        fprintf(out, ":\n    disable: %s\n    module: ", svc->disable ? "true" : "false");
        print_string(out, svc->module);
        if (svc->command) {
            fprintf(out, "\n    command: ");
            print_string(out, svc->command);
            fprintf(out, "\n    args: [");
            for (size_t j = 0; j < svc->n_args; j++) {
                fprintf(out, j ? ", " : "");
                print_string(out, svc->args[j]);
            }
            fprintf(out, "]");
            for (size_t j = 0; j < svc->n_env; j++) {
                fprintf(out, j ? ", " : "\n    env: {");
                const char *eq = strchr(svc->env[j], '=');
                fprintf(out, "%.*s: ", (int)(eq - svc->env[j]), svc->env[j]);
                print_string(out, eq + 1);
            }
            fprintf(out, svc->n_env ? "}" : "");
            if (svc->cwd) {
                fprintf(out, "\n    cwd: ");
                print_string(out, svc->cwd);
            }
        }
        fprintf(out, "\n    mutations:%s\n", svc->n_mutations ? "" : " {}");
        for (size_t j = 0; j < svc->n_mutations; j++) {
            const kd_mutation_cfg *m = &svc->mutations[j];
            fprintf(out, "      ");
            print_string(out, m->id);
            fprintf(out, ":\n        disable: %s\n", m->disable ? "true" : "false");
            if (m->has_timeout) {
                char buf[64];
                kd_duration_format(m->timeout_ms, buf, sizeof buf);
                fprintf(out, "        timeout: ");
                print_string(out, buf);
                fputc('\n', out);
            }
        }
    }
}
