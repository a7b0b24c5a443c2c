/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * krakenctl: main, global options and the command table.
 *
 *   krakenctl [-i HOST:PORT] [--json] [--token-file FILE] [-v] [-d] COMMAND [ARGS]
 *
 * Commands are found by their name ("list"), the original krakenctl's two-word
 * form ("node list") or a short alias ("ls").
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "krakenctl.h"

static const kc_cmd_entry *const cmd_table[] = {
    &kc_cmd_list_entry,   &kc_cmd_show_entry,   &kc_cmd_get_entry,    &kc_cmd_set_entry,
    &kc_cmd_create_entry, &kc_cmd_update_entry, &kc_cmd_delete_entry, &kc_cmd_freeze_entry,
    &kc_cmd_thaw_entry,   &kc_cmd_status_entry, &kc_cmd_plan_entry,   &kc_cmd_graph_entry,
    &kc_cmd_watch_entry,
};
#define N_CMDS (sizeof cmd_table / sizeof cmd_table[0])

static void print_help(FILE *out)
{
    fprintf(out,
            "usage: krakenctl [-i HOST:PORT] [--json] [--token-file FILE] [--color WHEN] [-v] [-d]\n"
            "                 COMMAND [ARGS]\n\n"
            "Global options:\n"
            "  -i, --ip HOST:PORT     the daemon's REST API (default 127.0.0.1:3141, $KRAKEN_API or\n"
            "                         ip: of ~/.krakenctl); also after the command, as -v and -d\n"
            "  -j, --json             machine-readable JSON output\n"
            "      --token-file FILE  bearer token for state-changing requests (or $KRAKEN_TOKEN)\n"
            "      --color WHEN       auto (a tty), always or never\n"
            "      --timeout SECONDS  per request (default 10)\n"
            "      --schemas DIR      the site's schema files, as kraken-daemon -schemas DIR\n"
            "  -v, --verbose          more detail\n"
            "  -d, --debug            show each request on stderr\n"
            "  -h, --help             this help; `krakenctl COMMAND --help` for a command\n"
            "  -V, --version          print the version\n\n"
            "Commands:\n");
    for (size_t i = 0; i < N_CMDS; i++) {
        const kc_cmd_entry *c = cmd_table[i];
        char names[64];
        snprintf(names, sizeof names, "%s%s%s", c->name, c->alias ? ", " : "",
                 c->alias ? c->alias : "");
        fprintf(out, "  %-22s %s\n", names, c->summary);
    }
    fprintf(out, "\nExit status: 0 success, 1 the daemon refused or reported an error, 2 usage,\n"
                 "3 the daemon could not be reached. See krakenctl(1).\n");
}

/* Find the command named by argv[0] (or argv[0] argv[1]); *used = words consumed. */
static const kc_cmd_entry *find_cmd(int argc, char **argv, int *used)
{
    if (argc >= 2) {
        char two[128];
        snprintf(two, sizeof two, "%s %s", argv[0], argv[1]);
        for (size_t i = 0; i < N_CMDS; i++)
            if (cmd_table[i]->alias && strcmp(cmd_table[i]->alias, two) == 0) {
                *used = 2;
                return cmd_table[i];
            }
    }
    for (size_t i = 0; i < N_CMDS; i++) {
        const kc_cmd_entry *c = cmd_table[i];
        if (strcmp(c->name, argv[0]) == 0 || (c->alias2 && strcmp(c->alias2, argv[0]) == 0)) {
            *used = 1;
            return c;
        }
    }
    return NULL;
}

/* Is @p word the first word of a two-word alias ("node" of "node list", "sme" of ...)? */
static bool is_alias_prefix(const char *word)
{
    size_t len = strlen(word);
    for (size_t i = 0; i < N_CMDS; i++) {
        const char *alias = cmd_table[i]->alias;
        if (alias && strncmp(alias, word, len) == 0 && alias[len] == ' ')
            return true;
    }
    return false;
}

/* `krakenctl node --help`: the commands of a group of the original's two-word forms. */
static void print_group_help(const char *group)
{
    size_t len = strlen(group);
    printf("usage: krakenctl %s ACTION [ARGS]   (krakenctl %s ACTION --help for one)\n", group,
           group);
    for (size_t i = 0; i < N_CMDS; i++) {
        const char *alias = cmd_table[i]->alias;
        if (alias && strncmp(alias, group, len) == 0 && alias[len] == ' ')
            printf("  %-22s %s\n", alias, cmd_table[i]->summary);
    }
}

/*
 * No such command. The original krakenctl listed two forms it never implemented (it printed
 * "This command is not yet implemented"): say so, and what does the job here. "node frob":
 * the unknown command is both words, "node" alone is only a prefix. `node --help` lists the
 * group. Returns the exit code.
 */
static int unknown_command(kc_ctx *ctx, int argc, char **argv)
{
    bool prefix = argc >= 2 && is_alias_prefix(argv[0]);
    if (prefix && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        print_group_help(argv[0]);
        return KC_EXIT_OK;
    }
    if (prefix && strcmp(argv[0], "node") == 0 && strcmp(argv[1], "freeze") == 0)
        return kc_error(ctx, KC_EXIT_USAGE, "'node freeze' was never implemented by the original "
                        "krakenctl either; to keep the engine off one node: krakenctl set ID "
                        "/Busy BUSY");
    if (argc >= 2 && strcmp(argv[0], "runtime") == 0 && strcmp(argv[1], "log_level") == 0)
        return kc_error(ctx, KC_EXIT_USAGE, "'runtime log_level' was never implemented by the "
                        "original krakenctl either; the daemon's log level is kraken-daemon -log N");
    return kc_error(ctx, KC_EXIT_USAGE, "unknown command '%s%s%s' (see krakenctl --help)",
                    argv[0], prefix ? " " : "", prefix ? argv[1] : "");
}

/* HOST:PORT of -i (@p what names where it came from in errors: "-i", "KRAKEN_API", ...). */
static int parse_endpoint(kc_ctx *ctx, const char *what, const char *text)
{
    const char *colon = strrchr(text, ':');
    char host[sizeof ctx->host];
    unsigned long port = 3141;
    if (colon && (text[0] != '[' || colon > strchr(text, ']'))) {
        char *end;
        errno = 0;
        port = strtoul(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end || errno || port == 0 || port > 65535)
            return kc_error(ctx, KC_EXIT_USAGE, "%s %s: the port must be 1..65535", what, text);
        snprintf(host, sizeof host, "%.*s", (int)(colon - text), text);
    } else {
        snprintf(host, sizeof host, "%s", text);
    }
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') { /* [::1] */
        memmove(host, host + 1, n - 2);
        host[n - 2] = '\0';
    }
    if (!host[0])
        return kc_error(ctx, KC_EXIT_USAGE, "%s %s: no host (expected HOST:PORT)", what, text);
    snprintf(ctx->host, sizeof ctx->host, "%s", host);
    ctx->port = (unsigned)port;
    return 0;
}

/*
 * The daemon's address and the -v/-d defaults: built-in < ~/.krakenctl (the original's file)
 * < $KRAKEN_API < -i before the command (< -i after it, see take_global_flags).
 */
static int choose_endpoint(kc_ctx *ctx, const char *ip_flag)
{
    kc_config config;
    int rc = kc_load_config(ctx, &config);
    if (rc != 0)
        return rc;
    ctx->verbose |= config.verbose;
    ctx->debug |= config.debug;
    if (config.ip[0]) {
        char what[sizeof config.path + 32];
        snprintf(what, sizeof what, "%s:%zu: ip", config.path, config.ip_line);
        if ((rc = parse_endpoint(ctx, what, config.ip)) != 0)
            return rc;
    }
    const char *env = getenv("KRAKEN_API");
    if (env && *env && (rc = parse_endpoint(ctx, "KRAKEN_API", env)) != 0)
        return rc;
    return ip_flag ? parse_endpoint(ctx, "-i", ip_flag) : 0;
}

/*
 * The original krakenctl took its global -i, -v and -d at every level of the command
 * ("krakenctl node list -i HOST:PORT", "krakenctl node -v info ID"). Take them (exact words,
 * before any "--") out of the words after the global options, [start, *argc), and apply
 * them; the command is found and parses its options in what is left.
 */
static int take_global_flags(kc_ctx *ctx, int *argc, char **argv, int start)
{
    int out = start, rc;
    for (int i = start; i < *argc; i++) {
        const char *w = argv[i];
        if (strcmp(w, "--") == 0) {
            while (i < *argc)
                argv[out++] = argv[i++];
            break;
        }
        if (strcmp(w, "-v") == 0 || strcmp(w, "--verbose") == 0) {
            ctx->verbose = true;
        } else if (strcmp(w, "-d") == 0 || strcmp(w, "--debug") == 0) {
            ctx->debug = true;
        } else if (strcmp(w, "-i") == 0 || strcmp(w, "--ip") == 0) {
            if (i + 1 >= *argc)
                return kc_error(ctx, KC_EXIT_USAGE, "%s: missing HOST:PORT", w);
            if ((rc = parse_endpoint(ctx, "-i", argv[++i])) != 0)
                return rc;
        } else if (strncmp(w, "-i", 2) == 0 || strncmp(w, "--ip=", 5) == 0) {
            const char *value = w[1] == 'i' ? w + 2 + (w[2] == '=') : w + 5; /* -iH:P, -i=H:P */
            if ((rc = parse_endpoint(ctx, "-i", value)) != 0)
                return rc;
        } else {
            argv[out++] = argv[i];
        }
    }
    *argc = out;
    argv[out] = NULL;
    return 0;
}

static int load_token(kc_ctx *ctx, const char *file)
{
    if (file) {
        FILE *f = fopen(file, "r");
        if (!f)
            return kc_error(ctx, KC_EXIT_USAGE, "--token-file %s: %s", file, strerror(errno));
        char buf[4096];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        buf[strcspn(buf, "\r\n")] = '\0';
        if (!buf[0])
            return kc_error(ctx, KC_EXIT_USAGE, "--token-file %s: the file is empty", file);
        ctx->token = strdup(buf);
    } else if (getenv("KRAKEN_TOKEN") && *getenv("KRAKEN_TOKEN")) {
        ctx->token = strdup(getenv("KRAKEN_TOKEN"));
    }
    return 0;
}

int main(int argc, char **argv)
{
    kc_ctx ctx = {.prog = "krakenctl", .port = 3141, .timeout_s = 10};
    snprintf(ctx.host, sizeof ctx.host, "127.0.0.1");
    const char *color = "auto", *token_file = NULL, *schema_dir = NULL;
    enum { OPT_TOKEN = 256, OPT_COLOR, OPT_TIMEOUT, OPT_SCHEMAS };
    static const struct option opts[] = {
        {"ip", required_argument, NULL, 'i'},
        {"json", no_argument, NULL, 'j'},
        {"token-file", required_argument, NULL, OPT_TOKEN},
        {"color", required_argument, NULL, OPT_COLOR},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"schemas", required_argument, NULL, OPT_SCHEMAS},
        {"verbose", no_argument, NULL, 'v'},
        {"debug", no_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *ip_flag = NULL;
    int rc, opt;
    opterr = 0;
    /* "+": stop at the command; its own options follow it. */
    while ((opt = getopt_long(argc, argv, "+i:jvdhV", opts, NULL)) != -1) {
        switch (opt) {
        case 'i': ip_flag = optarg; break;
        case 'j': ctx.json = true; break;
        case 'v': ctx.verbose = true; break;
        case 'd': ctx.debug = true; break;
        case OPT_TOKEN: token_file = optarg; break;
        case OPT_COLOR: color = optarg; break;
        case OPT_SCHEMAS: schema_dir = optarg; break;
        case OPT_TIMEOUT: {
            char *end;
            ctx.timeout_s = strtod(optarg, &end);
            if (*end || ctx.timeout_s <= 0)
                return kc_error(&ctx, KC_EXIT_USAGE, "--timeout %s: expected seconds > 0",
                                optarg);
            break;
        }
        case 'h': print_help(stdout); return KC_EXIT_OK;
        case 'V': printf("krakenctl %s\n", kraken_version()); return KC_EXIT_OK;
        default:
            if (optopt)
                return kc_error(&ctx, KC_EXIT_USAGE, "unknown option -%c or missing argument "
                                                     "(see krakenctl --help)", optopt);
            return kc_error(&ctx, KC_EXIT_USAGE, "unknown option %s (see krakenctl --help)",
                            argv[optind - 1]);
        }
    }
    if ((rc = choose_endpoint(&ctx, ip_flag)) != 0)
        return rc;
    if (strcmp(color, "always") == 0)
        ctx.color = true;
    else if (strcmp(color, "never") == 0)
        ctx.color = false;
    else if (strcmp(color, "auto") == 0)
        ctx.color = isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
    else
        return kc_error(&ctx, KC_EXIT_USAGE, "--color %s: expected auto, always or never", color);
    if ((rc = take_global_flags(&ctx, &argc, argv, optind)) != 0)
        return rc;
    if (optind >= argc) {
        print_help(stderr);
        return KC_EXIT_USAGE;
    }
    int used = 0;
    const kc_cmd_entry *cmd = find_cmd(argc - optind, argv + optind, &used);
    if (!cmd)
        return unknown_command(&ctx, argc - optind, argv + optind);
    /* `krakenctl COMMAND --help`: the command's usage, before anything is loaded or sent */
    for (int i = optind + used; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: krakenctl %s %s\n", cmd->name, cmd->usage);
            if (cmd->alias)
                printf("(also: krakenctl %s)\n", cmd->alias);
            printf("%s\n", cmd->summary);
            return KC_EXIT_OK;
        }
    if ((rc = load_token(&ctx, token_file)) != 0)
        return rc;
    signal(SIGPIPE, SIG_IGN);
    kc_register_known_schemas();
    if (schema_dir && (rc = kc_load_schema_dir(&ctx, schema_dir)) != 0) {
        free(ctx.token);
        return rc;
    }
    ctx.base = event_base_new();
    if (!ctx.base)
        return kc_error(&ctx, KC_EXIT_CONNECT, "cannot create an event loop");
    /* The command sees itself as argv[0] (one word even for "node list"). */
    int cargc = argc - optind - used + 1;
    char **cargv = argv + optind + used - 1;
    char *saved = cargv[0];
    cargv[0] = (char *)cmd->name;
    ctx.original_form = used == 2;
    optind = 0; /* reset getopt for the command's own options */
    rc = cmd->exec(&ctx, cargc, cargv);
    cargv[0] = saved;
    if (ctx.conn)
        evhttp_connection_free(ctx.conn);
    event_base_free(ctx.base);
    free(ctx.token);
    libevent_global_shutdown();
    return rc;
}
