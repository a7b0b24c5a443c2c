/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * simpower: the sim power module (SPEC 10, `platform = sim`) behind the virtual cluster.
 *
 * A loadable module (doc/MODULES.md 3) for kraken-daemon. Its simulated machines are real
 * processes: powering a node on starts a child kraken-daemon for it on the node's own
 * loopback address (Cfg IPv4OverEthernet kraken interface), with the node key derived from
 * this instance's own key (kraken_sync_derive_node_key), so the child phones home, joins the
 * sync tree and reaches SYNC by itself. Powering off kills that process; a hang freezes it
 * (SIGSTOP). The PXE steps of SPEC 4.3 (NONEtoWAIT, WAITtoINIT) are simulated too, after a
 * delay; disable them (serviceinstances.<id>.mutations.<m>.disable) when a real PXE module
 * runs.
 *
 * Mutations, service "power" (SPEC 4.3, set S): UKtoOFF (discovers the real power state:
 * POWER_ON when the node's process runs, also one a previous instance of the root started,
 * found by its pid file; else POWER_OFF), OFFtoON, ONtoOFF, HANGtoOFF, NONEtoWAIT,
 * WAITtoINIT. A child process that exits while its node should be on is a crashed machine:
 * PhysState PHYS_HANG is discovered at once, and the engine recovers it (HANGtoOFF, OFFtoON...).
 *
 * Faults (the service's Cfg config, SimPower.Config, changeable at run time): `hang` lists
 * nodenames whose power-on freezes (the step times out, fail_to PHYS_HANG), and freezes
 * such a node at once if it runs (SIGSTOP; SIGCONT when it leaves the list); `silent` lists
 * nodenames that never answer any step; `failpercent` makes that share of steps fail at
 * random (seeded by `seed`). `childargs` are more flags for the children ("{id}" in one
 * becomes the node id); `daemon` defaults to the program that loaded the module.
 *
 * Per node (the node's own Cfg, extension SimPower.Node, registered here): `fault` (NONE,
 * HANG_ON_POWER_ON, NO_ANSWER, FAIL), `failpercent`, `poweron`, `poweroff` win over the
 * module config where set; read at each step, so a Cfg change acts on the next mutation.
 * `netns` names the network namespace (under /run/netns, or a path) the node's daemon runs
 * in: the forked child enters it with setns() before exec. The namespaces, their interfaces
 * and addresses are made by whoever builds the simulated network (the virtual cluster's
 * runner); this module only starts and stops processes. Every child loads this module's
 * schemas from <workdir>/schemas (-schemas), so a node that does not run the module still
 * decodes the SimPower.Node in its own Cfg.
 *
 * Processes: each child leads a process group of its own (with the nodes it starts, if it is
 * an intermediate; see power_on()); when the service stops or the module is freed they are shut down
 * (SIGTERM, then SIGKILL to the group), and the virtual cluster's runner kills any left after
 * a crash of the root from their pid files. They
 * deliberately have no PR_SET_PDEATHSIG: a root that crashes and restarts must find its
 * nodes still running (SPEC 4.3 scenario 7), as it would real machines.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <kraken/kraken.h>
#include <kraken/module.h>
#include <kraken/sync.h>

#define PHYS "/PhysState"
#define RUN "/RunState"
#define PXE_STATE "type.googleapis.com/PXE.Client/State"
#define IFACE_IP "type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Ip/Ip"
#define WATCH_MS 200 /* how often child processes are checked for an exit */
#define NODE_EXT "type.googleapis.com/SimPower.Node/"

static const char schemas[] =
    "{\"schemas\": [{\"name\": \"SimPower.Config\", \"fields\": ["
    "{\"name\": \"daemon\", \"number\": 1, \"type\": \"string\"},"
    "{\"name\": \"secret\", \"number\": 2, \"type\": \"string\"},"
    "{\"name\": \"parent\", \"number\": 3, \"type\": \"string\"},"
    "{\"name\": \"workdir\", \"number\": 4, \"type\": \"string\"},"
    "{\"name\": \"poweron\", \"number\": 5, \"type\": \"uint32\"},"
    "{\"name\": \"poweroff\", \"number\": 6, \"type\": \"uint32\"},"
    "{\"name\": \"boot\", \"number\": 7, \"type\": \"uint32\"},"
    "{\"name\": \"hang\", \"number\": 8, \"type\": \"string\"},"
    "{\"name\": \"silent\", \"number\": 9, \"type\": \"string\"},"
    "{\"name\": \"failpercent\", \"number\": 10, \"type\": \"uint32\"},"
    "{\"name\": \"seed\", \"number\": 11, \"type\": \"uint32\"},"
    "{\"name\": \"childargs\", \"number\": 12, \"type\": \"string\"}]},"
    /* The per-node extension: the machine's own faults, delays and network namespace. */
    "{\"name\": \"SimPower.Node\", \"fields\": ["
    "{\"name\": \"fault\", \"number\": 1, \"type\": \"enum\","
    " \"type_name\": \"SimPower.Fault\"},"
    "{\"name\": \"failpercent\", \"number\": 2, \"type\": \"uint32\"},"
    "{\"name\": \"poweron\", \"number\": 3, \"type\": \"uint32\"},"
    "{\"name\": \"poweroff\", \"number\": 4, \"type\": \"uint32\"},"
    "{\"name\": \"netns\", \"number\": 5, \"type\": \"string\"}]}],"
    "\"enums\": [{\"name\": \"SimPower.Fault\", \"members\": {\"NONE\": 0, "
    "\"HANG_ON_POWER_ON\": 1, \"NO_ANSWER\": 2, \"FAIL\": 3}}]}";

static const kraken_fact platform_sim[] = {{"/Platform", "sim"}};
static const kraken_fact powered_on[] = {{PHYS, "POWER_ON"}};
static const kraken_mutate uk_to_off[] = {{PHYS, "PHYS_UNKNOWN", "POWER_OFF"}};
static const kraken_mutate off_to_on[] = {{PHYS, "POWER_OFF", "POWER_ON"}};
static const kraken_mutate on_to_off[] = {{PHYS, "POWER_ON", "POWER_OFF"}};
static const kraken_mutate hang_to_off[] = {{PHYS, "PHYS_HANG", "POWER_OFF"}};
static const kraken_mutate none_to_wait[] = {{PXE_STATE, "NONE", "WAIT"}};
static const kraken_mutate wait_to_init[] = {{PXE_STATE, "WAIT", "INIT"}, {RUN, "UNKNOWN", "INIT"}};

#define POWER_DECL(name, mut)                                                                 \
    KRAKEN_MUTATION_DECL_INIT(.id = name, KRAKEN_DECL_MUTATES(mut),                           \
                              KRAKEN_DECL_REQUIRES(platform_sim),                             \
                              .context = KRAKEN_CONTEXT_CHILD, .timeout_ms = 10000,           \
                              .fail_to = {PHYS, "PHYS_HANG"})

static const kraken_mutation_decl mutations[] = {
    POWER_DECL("UKtoOFF", uk_to_off),
    POWER_DECL("OFFtoON", off_to_on),
    POWER_DECL("ONtoOFF", on_to_off),
    POWER_DECL("HANGtoOFF", hang_to_off),
    KRAKEN_MUTATION_DECL_INIT(.id = "NONEtoWAIT", KRAKEN_DECL_MUTATES(none_to_wait),
                              KRAKEN_DECL_REQUIRES(powered_on), .context = KRAKEN_CONTEXT_CHILD,
                              .timeout_ms = 10000),
    KRAKEN_MUTATION_DECL_INIT(.id = "WAITtoINIT", KRAKEN_DECL_MUTATES(wait_to_init),
                              KRAKEN_DECL_REQUIRES(powered_on), .context = KRAKEN_CONTEXT_CHILD,
                              .timeout_ms = 90000),
};

static const kraken_module_discoverable discoverables[] = {
    {PHYS, NULL, NULL},
};

/* The module's config (SimPower.Config), with defaults. */
typedef struct simpower_config {
    char *daemon, *secret, *parent, *workdir, *hang, *silent, *childargs;
    uint32_t poweron_ms, poweroff_ms, boot_ms, failpercent, seed;
} simpower_config;

/* One simulated machine. */
typedef struct simnode {
    kraken_uuid id;
    char name[64];
    pid_t pid;        /* its kraken-daemon, 0 when off */
    bool ours;        /* started by this process (waitpid); else adopted from a pid file */
    bool frozen;      /* stopped (SIGSTOP) by a hang fault */
} simnode;

/* A step answered later: the report after a delay. */
typedef struct pending {
    struct simpower *sp;
    kraken_timer *timer;
    kraken_uuid node;
    uint64_t request_id;
    const char *url[2], *value[2];
    size_t n;
    char *boot_addr; /* OFFtoON: start the node's daemon at this address when the power is on */
    char *netns;     /* ... in this network namespace (NULL: ours) */
    bool hang;       /* ... and freeze it there */
    struct pending *next;
} pending;

typedef struct simpower {
    kraken_module *module;
    kraken_engine *engine;
    simpower_config cfg;
    uint8_t key[64];
    size_t key_len;
    simnode *nodes;
    size_t n_nodes, cap_nodes;
    pending *pending;
    kraken_timer *watch;
    unsigned rand_state;
    char *schemas_written; /* the workdir whose schema file this instance wrote, or NULL */
} simpower;

/* ---- config -------------------------------------------------------------------------------- */

static void config_clear(simpower_config *c)
{
    free(c->daemon);
    free(c->secret);
    free(c->parent);
    free(c->workdir);
    free(c->hang);
    free(c->silent);
    free(c->childargs);
    memset(c, 0, sizeof *c);
}

static char *json_string(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) && v->valuestring[0] ? strdup(v->valuestring) : NULL;
}

static uint32_t json_u32(const cJSON *o, const char *name, uint32_t dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (cJSON_IsNumber(v) && v->valuedouble >= 0)
        return (uint32_t)v->valuedouble;
    if (cJSON_IsString(v)) /* 64-bit integers may come as strings in protobuf JSON */
        return (uint32_t)strtoul(v->valuestring, NULL, 10);
    return dflt;
}

/* Read the config record (its JSON text form); unset fields keep their defaults. */
static void config_read(simpower *sp, const kraken_value *config)
{
    simpower_config *c = &sp->cfg;
    config_clear(c);
    c->poweron_ms = 200;
    c->poweroff_ms = 100;
    c->boot_ms = 300;
    char *text = NULL;
    cJSON *o = NULL;
    if (config && config->type == KRAKEN_T_RECORD && kraken_value_format(config, &text) == 0)
        o = cJSON_Parse(text);
    free(text);
    if (o) {
        c->daemon = json_string(o, "daemon");
        c->secret = json_string(o, "secret");
        c->parent = json_string(o, "parent");
        c->workdir = json_string(o, "workdir");
        c->hang = json_string(o, "hang");
        c->silent = json_string(o, "silent");
        c->childargs = json_string(o, "childargs");
        c->poweron_ms = json_u32(o, "poweron", c->poweron_ms);
        c->poweroff_ms = json_u32(o, "poweroff", c->poweroff_ms);
        c->boot_ms = json_u32(o, "boot", c->boot_ms);
        c->failpercent = json_u32(o, "failpercent", 0);
        c->seed = json_u32(o, "seed", 1);
        cJSON_Delete(o);
    }
    if (!c->daemon) {
        /* The daemon that loaded us is the kraken-daemon the children run. */
        char exe[4096];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) {
            exe[n] = '\0';
            c->daemon = strdup(exe);
        }
    }
    sp->rand_state = c->seed ? c->seed : 1;
}

/*
 * Read this instance's key (the cluster secret on the root, its node key below) from the
 * config's `secret`; -1 with the reason, naming the file, in @p why.
 */
static int read_key(simpower *sp, char *why, size_t whylen)
{
    sp->key_len = 0;
    FILE *fp = fopen(sp->cfg.secret, "rb");
    if (!fp) {
        snprintf(why, whylen, "simpower: secret %.4000s: %s", sp->cfg.secret, strerror(errno));
        return -1;
    }
    sp->key_len = fread(sp->key, 1, sizeof sp->key, fp);
    fclose(fp);
    if (sp->key_len < 16) {
        snprintf(why, whylen, "simpower: secret %.4000s: %zu bytes, a key has at least 16",
                 sp->cfg.secret, sp->key_len);
        return -1;
    }
    return 0;
}

/* Whether @p name is in the comma-separated @p list. */
static bool listed(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n && *p == ' ')
            p++, n--;
        while (n && p[n - 1] == ' ')
            n--;
        if (n == len && !strncmp(p, name, len))
            return true;
        p = end ? end + 1 : p + n;
        if (!end)
            break;
    }
    return false;
}

/* ---- a node's own settings (SimPower.Node in its Cfg) ------------------------------------ */

typedef enum sim_fault {
    FAULT_NONE,
    FAULT_HANG_ON_POWER_ON, /* its daemon freezes at power-on: OFFtoON times out */
    FAULT_NO_ANSWER,        /* no step on it is ever answered: every one times out */
    FAULT_FAIL,             /* its steps fail (failpercent of them; all when that is unset) */
} sim_fault;

static const char *const fault_names[] = {"NONE", "HANG_ON_POWER_ON", "NO_ANSWER", "FAIL"};

/*
 * What the steps on one node do. The node's own Cfg (its SimPower.Node extension) wins where
 * a field is set (non-zero: zero means "not set" as everywhere in Kraken); the rest comes from
 * the module config (its `hang` and `silent` lists, `failpercent`, `poweron`, `poweroff`).
 * Read at every step, so a change of either takes effect on the node's next mutation.
 */
typedef struct node_settings {
    sim_fault fault;
    uint32_t failpercent, poweron_ms, poweroff_ms;
    char *netns; /* the network namespace its daemon runs in; NULL: this daemon's own */
} node_settings;

static char *node_ext_text(const kraken_node *cfg, const char *field)
{
    char url[128], *text = NULL;
    snprintf(url, sizeof url, NODE_EXT "%s", field);
    if (kraken_node_get_text(cfg, url, &text) < 0 || (text && !text[0])) {
        kraken_error_clear(); /* no such extension: nothing set */
        free(text);
        return NULL;
    }
    return text;
}

static uint32_t node_ext_u32(const kraken_node *cfg, const char *field)
{
    char *text = node_ext_text(cfg, field);
    uint32_t v = text ? (uint32_t)strtoul(text, NULL, 10) : 0;
    free(text);
    return v;
}

static void node_settings_read(const simpower *sp, const simnode *n, const kraken_node *cfg,
                               node_settings *s)
{
    const simpower_config *c = &sp->cfg;
    *s = (node_settings){.failpercent = c->failpercent, .poweron_ms = c->poweron_ms,
                         .poweroff_ms = c->poweroff_ms};
    if (n->name[0] && listed(c->silent, n->name))
        s->fault = FAULT_NO_ANSWER;
    else if (n->name[0] && listed(c->hang, n->name))
        s->fault = FAULT_HANG_ON_POWER_ON;
    char *fault = node_ext_text(cfg, "Fault");
    for (size_t i = FAULT_HANG_ON_POWER_ON; fault && i <= FAULT_FAIL; i++)
        if (!strcmp(fault, fault_names[i]))
            s->fault = (sim_fault)i;
    free(fault);
    uint32_t v = node_ext_u32(cfg, "Failpercent");
    if (v || s->fault == FAULT_FAIL)
        s->failpercent = v ? v : 100;
    if ((v = node_ext_u32(cfg, "Poweron")))
        s->poweron_ms = v;
    if ((v = node_ext_u32(cfg, "Poweroff")))
        s->poweroff_ms = v;
    s->netns = node_ext_text(cfg, "Netns");
}

/* ---- nodes and their processes ------------------------------------------------------------- */

static simnode *node_find(simpower *sp, const kraken_uuid *id, bool create)
{
    for (size_t i = 0; i < sp->n_nodes; i++)
        if (!kraken_uuid_compare(&sp->nodes[i].id, id))
            return &sp->nodes[i];
    if (!create)
        return NULL;
    if (sp->n_nodes == sp->cap_nodes) {
        size_t cap = sp->cap_nodes ? sp->cap_nodes * 2 : 64;
        simnode *n = realloc(sp->nodes, cap * sizeof *n);
        if (!n)
            return NULL;
        sp->nodes = n;
        sp->cap_nodes = cap;
    }
    simnode *n = &sp->nodes[sp->n_nodes++];
    memset(n, 0, sizeof *n);
    n->id = *id;
    return n;
}

static void node_path(const simpower *sp, const simnode *n, const char *suffix, char *buf,
                      size_t len)
{
    char id[KRAKEN_UUID_STRLEN + 1];
    snprintf(buf, len, "%s/%s%s", sp->cfg.workdir ? sp->cfg.workdir : ".",
             kraken_uuid_format(&n->id, id), suffix);
}

/* A pid file left by an earlier instance: adopt the process if it still runs this node. */
static pid_t adopt_from_pidfile(simpower *sp, simnode *n)
{
    char path[4096], buf[64];
    node_path(sp, n, ".pid", path, sizeof path);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    long pid = fgets(buf, sizeof buf, fp) ? strtol(buf, NULL, 10) : 0;
    fclose(fp);
    if (pid <= 1 || kill((pid_t)pid, 0) < 0)
        return 0;
    /* The pid must still be this node's daemon: its command line names the node id. */
    char cmdline[8192], id[KRAKEN_UUID_STRLEN + 1];
    snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t got = read(fd, cmdline, sizeof cmdline - 1);
    close(fd);
    if (got <= 0)
        return 0;
    for (ssize_t i = 0; i < got; i++)
        if (!cmdline[i])
            cmdline[i] = ' ';
    cmdline[got] = '\0';
    if (!strstr(cmdline, kraken_uuid_format(&n->id, id)))
        return 0;
    n->pid = (pid_t)pid;
    n->ours = false;
    return n->pid;
}

static void write_pidfile(simpower *sp, simnode *n)
{
    char path[4096];
    node_path(sp, n, ".pid", path, sizeof path);
    FILE *fp = fopen(path, "w");
    if (fp) {
        fprintf(fp, "%ld\n", (long)n->pid);
        fclose(fp);
    }
}

/*
 * The network namespace @p netns (a name under /run/netns, as `ip netns` makes them, or a
 * path), opened for setns(); -1 with the reason in @p why.
 */
static int netns_open(const char *netns, char *why, size_t whylen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s%.4000s", strchr(netns, '/') ? "" : "/run/netns/", netns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        snprintf(why, whylen, "simpower: network namespace %.200s: %.4000s: %s", netns, path,
                 strerror(errno));
    return fd;
}

/*
 * In the forked child: what must succeed before exec, or the reason on @p err_fd (the parent
 * reads it: a failed start is the step's failure, not a mystery in the node's log).
 */
static void child_exec(char **argv, const char *logfile, const char *netns, int ns_fd,
                       bool own_group, int err_fd)
{
    /* Default signal state, stdin /dev/null, its log file, no other fds. */
    if (own_group)
        setpgid(0, 0);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGPIPE, SIG_DFL);
    int in = open("/dev/null", O_RDONLY);
    int out = open(logfile, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0) {
        dprintf(err_fd, "simpower: log file %.4000s: %s", logfile, strerror(errno));
        _exit(127);
    }
    /* The machine's own network: its interface and address live in that namespace. */
    if (ns_fd >= 0 && setns(ns_fd, CLONE_NEWNET) < 0) {
        dprintf(err_fd, "simpower: network namespace %.200s: setns: %s", netns, strerror(errno));
        _exit(126);
    }
    for (int fd = 3; fd < err_fd; fd++) /* err_fd is close-on-exec: it tells the exec apart */
        close(fd);
    closefrom(err_fd + 1);
    execv(argv[0], argv);
    dprintf(err_fd, "simpower: exec %.4000s: %s", argv[0], strerror(errno));
    _exit(127);
}

/*
 * The schemas of this module as a schema file (<workdir>/schemas/simpower.json) that every
 * daemon started here loads (-schemas): a node's own Cfg may carry a SimPower.Node extension,
 * and a node without this module must still decode it. Written once per workdir, atomically:
 * intermediates sharing the workdir write the same bytes while their children read.
 */
static int write_schema_file(simpower *sp, char *dir, size_t dirlen, char *why, size_t whylen)
{
    char path[4200], tmp[4300];
    snprintf(dir, dirlen, "%.4000s/schemas", sp->cfg.workdir);
    if (sp->schemas_written && strcmp(sp->schemas_written, sp->cfg.workdir) == 0)
        return 0;
    snprintf(path, sizeof path, "%s/simpower.json", dir);
    snprintf(tmp, sizeof tmp, "%s.%ld", path, (long)getpid());
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        snprintf(why, whylen, "simpower: schema directory %.4000s: %s", dir, strerror(errno));
        return -1;
    }
    FILE *fp = fopen(tmp, "w");
    bool ok = fp && fputs(schemas, fp) >= 0;
    if (fp && fclose(fp) != 0)
        ok = false;
    if (!ok || rename(tmp, path) < 0) {
        snprintf(why, whylen, "simpower: schema file %.4000s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    free(sp->schemas_written);
    sp->schemas_written = strdup(sp->cfg.workdir); /* NULL: written again next time */
    return 0;
}

/* Start the node's kraken-daemon (in @p netns, if set): the simulated machine boots. */
static int power_on(simpower *sp, simnode *n, const char *addr, const char *netns, char *why,
                    size_t whylen)
{
    const char *missing = !sp->cfg.secret    ? "secret"
                          : !sp->cfg.parent  ? "parent"
                          : !sp->cfg.workdir ? "workdir"
                          : !sp->cfg.daemon  ? "daemon"
                                             : NULL;
    if (missing) {
        snprintf(why, whylen, "simpower: the service's config (SimPower.Config) has no %s",
                 missing);
        return -1;
    }
    if (read_key(sp, why, whylen) < 0)
        return -1;
    uint8_t nodekey[KRAKEN_SYNC_NODE_KEY_LEN];
    char keyfile[4096], logfile[4096], id[KRAKEN_UUID_STRLEN + 1];
    if (kraken_sync_derive_node_key(sp->key, sp->key_len, &n->id, nodekey) < 0) {
        snprintf(why, whylen, "simpower: node key: %s", kraken_error_last());
        return -1;
    }
    node_path(sp, n, ".key", keyfile, sizeof keyfile);
    node_path(sp, n, ".log", logfile, sizeof logfile);
    int kfd = open(keyfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (kfd < 0 || write(kfd, nodekey, sizeof nodekey) != (ssize_t)sizeof nodekey) {
        snprintf(why, whylen, "simpower: node key file %.4000s: %s", keyfile, strerror(errno));
        if (kfd >= 0)
            close(kfd);
        return -1;
    }
    close(kfd);
    kraken_uuid_format(&n->id, id);

    /* argv: daemon -id ID -ip ADDR -ipapi ADDR -parent P -secret KEY [childargs] */
    char *argv[64];
    size_t argc = 0;
    char schemadir[4096];
    if (write_schema_file(sp, schemadir, sizeof schemadir, why, whylen) < 0)
        return -1;
    char *extra = sp->cfg.childargs ? strdup(sp->cfg.childargs) : NULL;
    const char *fixed[] = {sp->cfg.daemon, "-id",     id,           "-ip",     addr,
                           "-ipapi",       addr,      "-parent",    sp->cfg.parent,
                           "-secret",      keyfile,   "-schemas",   schemadir};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        argv[argc++] = (char *)fixed[i];
    /* childargs words; "{id}" in a word becomes the node id (e.g. a socket path per node) */
    char expanded[16][512];
    size_t n_expanded = 0;
    for (char *save = NULL, *tok = extra ? strtok_r(extra, " ", &save) : NULL;
         tok && argc < 63; tok = strtok_r(NULL, " ", &save)) {
        char *at = strstr(tok, "{id}");
        if (at && n_expanded < 16) {
            snprintf(expanded[n_expanded], sizeof expanded[0], "%.*s%s%s", (int)(at - tok), tok,
                     id, at + 4);
            tok = expanded[n_expanded++];
        }
        argv[argc++] = tok;
    }
    argv[argc] = NULL;

    /*
     * A node's daemon leads a process group of its own, unless this daemon already leads one
     * (an intermediate, itself started here): then its nodes join it, and the group is the
     * machine's subtree, which a shutdown can kill whole.
     */
    bool own_group = getpgrp() != getpid();
    int ns_fd = -1, err_pipe[2];
    if (netns && (ns_fd = netns_open(netns, why, whylen)) < 0) {
        free(extra);
        return -1;
    }
    if (pipe2(err_pipe, O_CLOEXEC) < 0) {
        snprintf(why, whylen, "simpower: pipe: %s", strerror(errno));
        if (ns_fd >= 0)
            close(ns_fd);
        free(extra);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0)
        child_exec(argv, logfile, netns, ns_fd, own_group, err_pipe[1]);
    int fork_errno = errno;
    if (ns_fd >= 0)
        close(ns_fd);
    close(err_pipe[1]);
    free(extra);
    /* Until exec the child may say why it could not start; exec closes the pipe: EOF. */
    char reason[1024];
    ssize_t got = 0;
    if (pid > 0)
        while ((got = read(err_pipe[0], reason, sizeof reason - 1)) < 0 && errno == EINTR)
            ;
    close(err_pipe[0]);
    if (pid < 0) {
        snprintf(why, whylen, "simpower: fork: %s", strerror(fork_errno));
        return -1;
    }
    if (got > 0) {
        reason[got] = '\0';
        waitpid(pid, NULL, 0);
        snprintf(why, whylen, "%s", reason);
        return -1;
    }
    n->pid = pid;
    n->ours = true;
    n->frozen = false;
    write_pidfile(sp, n);
    return 0;
}

/* Cut the power: the process is gone at once (a stopped one too). */
static void power_off(simpower *sp, simnode *n)
{
    if (n->pid <= 0)
        return;
    kill(n->pid, SIGKILL);
    if (n->ours)
        waitpid(n->pid, NULL, 0);
    n->pid = 0;
    char path[4096];
    node_path(sp, n, ".pid", path, sizeof path);
    unlink(path);
}

/*
 * Whether an adopted process (not our child: no waitpid) still runs. A zombie does not: its
 * reaper may be slow or, in some containers, absent.
 */
static bool alive(pid_t pid)
{
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t got = read(fd, stat, sizeof stat - 1);
    close(fd);
    if (got <= 0)
        return false;
    stat[got] = '\0';
    const char *end = strrchr(stat, ')'); /* "pid (comm) S ...": comm may hold anything */
    return end && end[1] == ' ' && end[2] != 'Z' && end[2] != 'X';
}

/* A process that exits while its node is on is a crashed machine: PHYS_HANG, recovered. */
static void on_watch(kraken_timer *timer, void *userdata)
{
    simpower *sp = userdata;
    for (size_t i = 0; i < sp->n_nodes; i++) {
        simnode *n = &sp->nodes[i];
        if (n->pid <= 0)
            continue;
        int status = 0;
        bool gone = n->ours ? waitpid(n->pid, &status, WNOHANG) == n->pid : !alive(n->pid);
        if (!gone)
            continue;
        char id[KRAKEN_UUID_STRLEN + 1];
        kraken_module_log(sp->module, KRAKEN_LOG_WARNING,
                          "node %s: its kraken-daemon (pid %ld) exited (%s %d): the machine "
                          "hangs",
                          n->name[0] ? n->name : kraken_uuid_format(&n->id, id), (long)n->pid,
                          n->ours && WIFSIGNALED(status) ? "signal" : "status",
                          n->ours && WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        n->pid = 0;
        if (kraken_module_discover(sp->module, &n->id, PHYS, "PHYS_HANG") < 0)
            kraken_error_clear();
    }
    kraken_timer_arm(timer, WATCH_MS);
}

/* ---- answers ------------------------------------------------------------------------------- */

static void pending_unlink(simpower *sp, pending *p)
{
    for (pending **pp = &sp->pending; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    kraken_timer_free(p->timer);
    free(p->boot_addr);
    free(p->netns);
    free(p);
}

/*
 * The power came on: the machine boots, i.e. its kraken-daemon starts. True when the step
 * is finished here (failed, or frozen by an injected hang: never answered).
 */
static bool start_node(simpower *sp, pending *p)
{
    simnode *n = node_find(sp, &p->node, false);
    char why[4700];
    if (!n || power_on(sp, n, p->boot_addr, p->netns, why, sizeof why) < 0) {
        kraken_module_fail(sp->module, &p->node, p->request_id, n ? why : "simpower: lost node");
        return true;
    }
    if (p->hang) {
        kill(n->pid, SIGSTOP); /* frozen at power-on: the step times out */
        n->frozen = true;
        kraken_module_log(sp->module, KRAKEN_LOG_NOTICE,
                          "node %s hangs at power-on (pid %ld stopped)", n->name, (long)n->pid);
        return true;
    }
    return false;
}

static void on_answer(kraken_timer *timer, void *userdata)
{
    (void)timer;
    pending *p = userdata;
    simpower *sp = p->sp;
    if (p->boot_addr && start_node(sp, p)) {
        pending_unlink(sp, p);
        return;
    }
    for (size_t i = 0; i < p->n; i++)
        if (kraken_module_report(sp->module, &p->node, p->request_id, p->url[i], p->value[i]) < 0)
            kraken_error_clear(); /* the step was interrupted meanwhile */
    pending_unlink(sp, p);
}

/* Report the step's `to` values (or @p value for the first URL) after @p ms. */
static pending *answer_later(simpower *sp, const kraken_mutation_request *req,
                             const char *value, uint32_t ms)
{
    pending *p = calloc(1, sizeof *p);
    if (!p || kraken_timer_new(&p->timer, sp->engine, on_answer, p) < 0) {
        free(p);
        kraken_module_fail(sp->module, &req->node_id, req->id, "simpower: out of memory");
        return NULL;
    }
    p->sp = sp;
    p->node = req->node_id;
    p->request_id = req->id;
    /* URLs and values of the declaration are static; only these two texts are ours. */
    for (size_t i = 0; i < req->n_mutates && i < 2; i++) {
        for (size_t d = 0; d < sizeof mutations / sizeof mutations[0]; d++)
            if (!strcmp(mutations[d].id, req->mutation_id))
                p->url[i] = mutations[d].mutates[i].url, p->value[i] = mutations[d].mutates[i].to;
        p->n = i + 1;
    }
    if (value)
        p->value[0] = value;
    p->next = sp->pending;
    sp->pending = p;
    kraken_timer_arm(p->timer, ms);
    return p;
}

static uint32_t next_rand(simpower *sp)
{
    sp->rand_state = sp->rand_state * 1103515245u + 12345u;
    return (sp->rand_state >> 16) & 0x7fff;
}

/* A node's step that fails or is never answered by an injected fault; true when so. */
static bool inject_fault(simpower *sp, const kraken_mutation_request *req,
                         const node_settings *s)
{
    if (s->fault == FAULT_NO_ANSWER)
        return true; /* never answers: the step times out */
    if (s->failpercent && next_rand(sp) % 100 < s->failpercent) {
        char why[128];
        snprintf(why, sizeof why, "simulated failure (%s, failpercent %u)",
                 s->fault == FAULT_FAIL ? "fault FAIL" : "random", s->failpercent);
        kraken_module_fail(sp->module, &req->node_id, req->id, why);
        return true;
    }
    return false;
}

/* OFFtoON: the power comes on after `poweron` ms, then the node's daemon starts (start_node). */
static void mutate_power_on(simpower *sp, const kraken_mutation_request *req, simnode *n,
                            node_settings *s)
{
    char *addr = NULL;
    if (kraken_node_get_text(req->cfg, IFACE_IP, &addr) < 0 || !addr) {
        kraken_error_clear();
        free(addr);
        kraken_module_fail(sp->module, &req->node_id, req->id,
                           "simpower: the node's Cfg has no kraken interface address "
                           "(" IFACE_IP ")");
        return;
    }
    power_off(sp, n); /* a leftover process (should not happen) */
    pending *p = answer_later(sp, req, NULL, s->poweron_ms);
    if (!p) {
        free(addr);
        return;
    }
    p->boot_addr = addr;
    p->netns = s->netns;
    s->netns = NULL;
    p->hang = s->fault == FAULT_HANG_ON_POWER_ON;
}

static void on_mutate(kraken_module *m, const kraken_mutation_request *req, void *userdata)
{
    simpower *sp = userdata;
    simnode *n = sp ? node_find(sp, &req->node_id, true) : NULL;
    if (!n) {
        kraken_module_fail(m, &req->node_id, req->id, "simpower: out of memory");
        return;
    }
    char *name = NULL;
    if (kraken_node_get_text(req->cfg, "/Nodename", &name) == 0 && name)
        snprintf(n->name, sizeof n->name, "%s", name);
    free(name);
    kraken_error_clear();
    node_settings s;
    node_settings_read(sp, n, req->cfg, &s);
    const char *mid = req->mutation_id;
    if (inject_fault(sp, req, &s)) {
        /* failed or silent: nothing happens to the machine */
    } else if (!strcmp(mid, "UKtoOFF")) {
        bool on = n->pid > 0 || (sp->cfg.workdir && adopt_from_pidfile(sp, n) > 0);
        answer_later(sp, req, on ? "POWER_ON" : "POWER_OFF", 0);
    } else if (!strcmp(mid, "OFFtoON")) {
        mutate_power_on(sp, req, n, &s);
    } else if (!strcmp(mid, "ONtoOFF") || !strcmp(mid, "HANGtoOFF")) {
        power_off(sp, n);
        answer_later(sp, req, NULL, s.poweroff_ms);
    } else { /* NONEtoWAIT, WAITtoINIT: the simulated PXE boot, half of `boot` each */
        answer_later(sp, req, NULL, sp->cfg.boot_ms / 2);
    }
    free(s.netns);
}

static void on_interrupt(kraken_module *m, const kraken_mutation_request *req, void *userdata)
{
    (void)m;
    simpower *sp = userdata;
    for (pending *p = sp ? sp->pending : NULL; p; p = p->next)
        if (p->request_id == req->id) {
            pending_unlink(sp, p);
            return;
        }
}

static void simpower_destroy(void *userdata);

/*
 * The daemon loads us without userdata: the instance's state is made at the first start and
 * released (every node powered off) when the instance is freed.
 */
static void on_start(kraken_module *m, const kraken_value *config, void *userdata)
{
    simpower *sp = userdata;
    if (!sp) {
        if (!(sp = calloc(1, sizeof *sp))) {
            kraken_module_set_state(m, KRAKEN_SERVICE_ERROR, "out of memory");
            return;
        }
        kraken_module_set_userdata(m, sp, simpower_destroy);
    }
    sp->module = m;
    sp->engine = kraken_service_engine(kraken_module_service(m));
    config_read(sp, config);
    if (sp->cfg.workdir && mkdir(sp->cfg.workdir, 0700) < 0 && errno != EEXIST)
        kraken_module_log(m, KRAKEN_LOG_ERROR, "workdir %s: %s", sp->cfg.workdir, strerror(errno));
    if (!sp->watch && kraken_timer_new(&sp->watch, sp->engine, on_watch, sp) == 0)
        kraken_timer_arm(sp->watch, WATCH_MS);
    kraken_module_set_state(m, KRAKEN_SERVICE_RUN, NULL);
}

/*
 * A running machine whose name enters `hang` freezes now (SIGSTOP; the root notices when its
 * sync link goes silent); one that leaves the list runs on (SIGCONT).
 */
static void apply_hangs(simpower *sp)
{
    for (size_t i = 0; i < sp->n_nodes; i++) {
        simnode *n = &sp->nodes[i];
        bool hang = n->name[0] && listed(sp->cfg.hang, n->name);
        if (n->pid <= 0 || hang == n->frozen)
            continue;
        kill(n->pid, hang ? SIGSTOP : SIGCONT);
        n->frozen = hang;
        kraken_module_log(sp->module, KRAKEN_LOG_NOTICE, "node %s %s (pid %ld)", n->name,
                          hang ? "hangs" : "runs again", (long)n->pid);
    }
}

static void on_config(kraken_module *m, const kraken_value *config, void *userdata)
{
    simpower *sp = userdata;
    if (!sp)
        return;
    config_read(sp, config);
    apply_hangs(sp);
    kraken_module_log(m, KRAKEN_LOG_NOTICE, "config: hang [%s], silent [%s], failpercent %u",
                      sp->cfg.hang ? sp->cfg.hang : "", sp->cfg.silent ? sp->cfg.silent : "",
                      sp->cfg.failpercent);
}

/*
 * Stopping the service shuts every node down: no simulated machine outlives the cluster. Unlike
 * a power cut (ONtoOFF), each daemon gets SIGTERM and up to SHUTDOWN_MS to stop by itself, so
 * an intermediate shuts down the nodes it powers in turn; then SIGKILL.
 */
#define SHUTDOWN_MS 5000

static void power_all_off(simpower *sp)
{
    size_t left = 0;
    for (size_t i = 0; i < sp->n_nodes; i++) {
        simnode *n = &sp->nodes[i];
        if (n->pid > 0) {
            kill(n->pid, SIGTERM);
            kill(n->pid, SIGCONT); /* a frozen one must run to see its SIGTERM */
            left++;
        }
    }
    for (int waited = 0; left && waited < SHUTDOWN_MS; waited += 10) {
        left = 0;
        for (size_t i = 0; i < sp->n_nodes; i++) {
            simnode *n = &sp->nodes[i];
            if (n->pid <= 0)
                continue;
            if (n->ours ? waitpid(n->pid, NULL, WNOHANG) == n->pid : !alive(n->pid)) {
                char path[4096];
                node_path(sp, n, ".pid", path, sizeof path);
                unlink(path);
                n->pid = 0;
            } else {
                left++;
            }
        }
        if (left)
            usleep(10000); /* the loop is stopping anyway: nothing else waits on it */
    }
    for (size_t i = 0; i < sp->n_nodes; i++) {
        if (sp->nodes[i].pid > 0)
            kill(-sp->nodes[i].pid, SIGKILL); /* the rest of its subtree too */
        power_off(sp, &sp->nodes[i]);
    }
}

static void on_stop(kraken_module *m, void *userdata)
{
    (void)m;
    simpower *sp = userdata;
    if (!sp)
        return;
    power_all_off(sp);
    while (sp->pending)
        pending_unlink(sp, sp->pending);
    kraken_timer_free(sp->watch);
    sp->watch = NULL;
}

static void simpower_destroy(void *userdata)
{
    simpower *sp = userdata;
    on_stop(NULL, sp);
    config_clear(&sp->cfg);
    free(sp->schemas_written);
    free(sp->nodes);
    free(sp);
}

static const kraken_module_desc desc = {
    .abi_version = KRAKEN_MODULE_ABI_VERSION,
    .name = "simpower",
    .schemas_json = schemas,
    .config_schema = "SimPower.Config",
    .discoverables = discoverables,
    .n_discoverables = sizeof discoverables / sizeof discoverables[0],
    .mutations = mutations,
    .n_mutations = sizeof mutations / sizeof mutations[0],
    .handlers = {.start = on_start, .stop = on_stop, .config_changed = on_config,
                 .mutate = on_mutate, .interrupt = on_interrupt},
};

const kraken_module_desc *kraken_module_entry(void);
const kraken_module_desc *kraken_module_entry(void)
{
    return &desc;
}
