/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * krakenctl: command-line client of kraken-daemon's REST API and event stream.
 *
 * Shaped like tmux: one small file per command (cmd-*.c), each exporting a
 * kc_cmd_entry, and a command table in krakenctl.c. The client is thin: the
 * REST API does the work; node JSON is read with libkraken's codecs where a
 * command needs values by URL (get, set, show).
 */
#ifndef KRAKENCTL_H
#define KRAKENCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>
#include <kraken/kraken.h>

struct event_base;
struct evhttp_connection;

/* Exit codes (documented in krakenctl.1). */
enum {
    KC_EXIT_OK = 0,
    KC_EXIT_FAILED = 1,  /* the daemon refused or reported an error; or watch timed out */
    KC_EXIT_USAGE = 2,   /* bad command line or bad input file */
    KC_EXIT_CONNECT = 3  /* the daemon could not be reached or answered nonsense */
};

/* Global options and the connection, shared by every command. */
typedef struct kc_ctx {
    const char *prog;
    char host[256];
    unsigned port;
    char *token;          /* bearer token (file or KRAKEN_TOKEN), or NULL */
    bool json;            /* --json: machine-readable output */
    bool color;           /* colour the tables (a tty, unless --color=never) */
    bool debug;           /* -d: show requests on stderr */
    bool verbose;         /* -v */
    bool original_form;   /* run by the original's two-word form ("node list"): --json in its shape */
    bool schemas_learned; /* kc_learn_schemas() ran */
    double timeout_s;     /* per request */
    struct event_base *base;
    struct evhttp_connection *conn;
} kc_ctx;

/* One HTTP answer. body is NUL-terminated (malloc'ed). */
typedef struct kc_response {
    int status;
    char *body;
    size_t len;
} kc_response;

/* A command: "node list" (words), its aliases, usage line and handler. */
typedef struct kc_cmd_entry {
    const char *name;     /* e.g. "list" */
    const char *alias;    /* the original krakenctl's form, e.g. "node list"; or NULL */
    const char *alias2;   /* another short form, e.g. "ls"; or NULL */
    const char *usage;    /* arguments, e.g. "[-t mixed|cfg|dsc] [-j]" */
    const char *summary;  /* one line for --help */
    int (*exec)(kc_ctx *ctx, int argc, char **argv); /* argv[0] is the command name */
} kc_cmd_entry;

extern const kc_cmd_entry kc_cmd_list_entry;
extern const kc_cmd_entry kc_cmd_show_entry;
extern const kc_cmd_entry kc_cmd_get_entry;
extern const kc_cmd_entry kc_cmd_set_entry;
extern const kc_cmd_entry kc_cmd_create_entry;
extern const kc_cmd_entry kc_cmd_update_entry;
extern const kc_cmd_entry kc_cmd_delete_entry;
extern const kc_cmd_entry kc_cmd_freeze_entry;
extern const kc_cmd_entry kc_cmd_thaw_entry;
extern const kc_cmd_entry kc_cmd_status_entry;
extern const kc_cmd_entry kc_cmd_plan_entry;
extern const kc_cmd_entry kc_cmd_graph_entry;
extern const kc_cmd_entry kc_cmd_watch_entry;

/* ---- errors and output (util.c) ---- */

/* Print "krakenctl: <message>" on stderr and return @p code. */
int kc_error(kc_ctx *ctx, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "usage: krakenctl CMD USAGE" on stderr; returns KC_EXIT_USAGE. */
int kc_usage(kc_ctx *ctx, const kc_cmd_entry *cmd);
/* A command's getopt_long() returned @p opt that it does not handle: for '?' one line naming
 * the unknown option (or the option missing its argument) and the usage; returns
 * KC_EXIT_USAGE. */
int kc_bad_option(kc_ctx *ctx, const kc_cmd_entry *cmd, int opt, char **argv);
/* The option parsing of a command whose only option is -j/--json (and -h/--help): sets
 * ctx->json, leaves optind at the first operand and checks that there are between
 * @p min_operands and @p max_operands of them. KC_EXIT_OK, or the usage error's exit code
 * (printed). */
int kc_parse_json_flag(kc_ctx *ctx, const kc_cmd_entry *cmd, int argc, char **argv,
                       int min_operands, int max_operands);
/* The original's --json of the mixed view: "CFG:", the Cfg JSON, "DSC:", the Dsc JSON (two
 * documents, as its `node list -j` and `node info ID -j` printed them). */
void kc_print_original_mixed(const cJSON *cfg, const cJSON *dsc);
/* Print a cJSON value on stdout as the original krakenctl did (Python's json.dumps with
 * indent=4, sort_keys=True: the same text for the same value). */
void kc_print_json(const cJSON *json);
/* Parse a node id; prints the error. */
int kc_parse_id(kc_ctx *ctx, const char *text, kraken_uuid *out);
/* Read a whole file ("-" = stdin); NULL with an error printed. */
char *kc_read_input(kc_ctx *ctx, const char *path, size_t *len);
/* Register the module-config schemas a daemon's self node carries (restapi, websocket). */
void kc_register_known_schemas(void);
/* Load the site's schema description files (*.json in @p dir, name order), as the daemon's
 * -schemas DIR; prints the error and returns KC_EXIT_USAGE on failure. */
int kc_load_schema_dir(kc_ctx *ctx, const char *dir);
/* " (give krakenctl the site's schemas: --schemas DIR)" when @p message is about a type
 * krakenctl does not know; else "". */
const char *kc_schema_hint(const char *message);

/* ---- HTTP (http.c) ---- */

/*
 * One request to the daemon; waits for the answer. Returns 0 with @p out
 * filled (any HTTP status), or KC_EXIT_CONNECT after printing why the daemon
 * could not be reached.
 */
int kc_http(kc_ctx *ctx, const char *method, const char *path, const char *body, size_t body_len,
            kc_response *out);
void kc_response_clear(kc_response *r);
/*
 * GET/PUT/... @p path and parse the JSON answer. A non-2xx status prints the
 * daemon's {"error"} message ("krakenctl: GET /cfg/node/x: 404: node x not
 * found") and returns KC_EXIT_FAILED. *out is the parsed body (cJSON_Delete).
 */
int kc_request_json(kc_ctx *ctx, const char *method, const char *path, const char *body,
                    cJSON **out);

/*
 * Learn the types the daemon knows beyond the built-ins (its modules' config and extension
 * types) from GET /schemas, once per run, so that its nodes can be decoded without
 * --schemas. A daemon without the route (the original) is fine: nothing is learned. 0, or
 * the exit status of an error (printed): the description does not load, e.g. it conflicts
 * with a type of --schemas DIR.
 */
int kc_learn_schemas(kc_ctx *ctx);

/* ---- node tables (table.c) ---- */

typedef struct kc_table kc_table;
kc_table *kc_table_new(size_t n_cols, const char *const *headers);
/* Add a row of n_cols cells; colors[i] is an ANSI SGR code ("32") or NULL. */
void kc_table_add(kc_table *t, const char *const *cells, const char *const *colors);
void kc_table_print(kc_table *t, bool color, FILE *out);
void kc_table_free(kc_table *t);

/* Colour of a Dsc value next to its Cfg: green when it matches (or Cfg does not care),
 * red for an error state, yellow while it differs. NULL when not colouring. */
const char *kc_state_color(const char *cfg, const char *dsc);

/* The side-by-side node table of `list` and `watch`, from {"nodes": [...]} answers. */
int kc_print_node_table(kc_ctx *ctx, const cJSON *cfg_list, const cJSON *dsc_list,
                        const char *kind, FILE *out);
/* Same string of a top-level node field ("physState") or "" */
const char *kc_node_field(const cJSON *node, const char *field);
/* Find a node by id in a {"nodes": [...]} answer. */
const cJSON *kc_find_node(const cJSON *list, const char *id);
/*
 * The same, for walking a list in id order: the daemon answers node lists
 * sorted by id, so the node is usually the one after *cursor (O(1)); else a
 * search. *cursor (start with NULL) moves to the node found.
 */
const cJSON *kc_find_node_next(const cJSON *list, const char *id, const cJSON **cursor);

/* ---- the original's node views: -t and -f (columns.c) ---- */

/* -t mixed|cfg|dsc: *out = @p text, or the usage error printed. */
int kc_parse_kind(kc_ctx *ctx, const char *text, const char **out);

#define KC_FILTER_MAX 16      /* columns: kraken.Node has 10 fields */
#define KC_FILTER_NAME_MAX 32 /* a field's JSON name, "physState" */

/* -f/--filter: the top-level node fields to show (JSON names), id and nodename first, then
 * the others by name. */
typedef struct kc_filter {
    size_t n;
    char cols[KC_FILTER_MAX][KC_FILTER_NAME_MAX];
} kc_filter;

/*
 * Parse "physState, services": comma-separated kraken.Node fields by JSON name, proto name
 * or URL name (case-insensitive); id and nodename are added. An empty item or a name that
 * is not a field is a one-line error naming it (KC_EXIT_USAGE).
 */
int kc_filter_parse(kc_ctx *ctx, const char *text, kc_filter *out);
/* The value of -f/--filter, an optional argument: @p optarg_given, else the next word when
 * it is not an option or a node id (optind moves past it), else "id,nodename". */
const char *kc_filter_optarg(const char *optarg_given, int argc, char **argv);
/*
 * The options of the node views (`list`, `show`): -t KIND, -j, -f [COLUMNS], -h. *kind is
 * "mixed" unless -t says otherwise; *f points at @p filter when -f was given, else NULL.
 * optind is left at the first operand. 0, or the exit status of a usage error (printed).
 */
int kc_parse_view_options(kc_ctx *ctx, const kc_cmd_entry *cmd, int argc, char **argv,
                          const char **kind, kc_filter *filter, const kc_filter **f);
/* {"id", "nodename", COL...} of @p node, a missing field as "" (the original's shape). */
cJSON *kc_filter_node(const kc_filter *f, const cJSON *node);
/* {"nodes": [...]} of kc_filter_node(). */
cJSON *kc_filter_list(const kc_filter *f, const cJSON *list);
/* Is a value URL of `show` ("/PhysState", "type.googleapis.com/...") in a selected field?
 * Always true without a filter (@p f NULL). */
bool kc_filter_url(const kc_filter *f, const char *url);

/*
 * One node as -t @p kind shows it: Cfg; Dsc with Cfg's nodename; or mixed, Cfg with Dsc's
 * values taking priority (objects merged, list items matched by id or @type). Either node
 * may be NULL. A new object (cJSON_Delete).
 */
cJSON *kc_node_view(const cJSON *cfg, const cJSON *dsc, const char *kind);
/* {"nodes": [...]} of kc_node_view() for every node (of Dsc's list for "dsc", else Cfg's). */
cJSON *kc_list_view(const cJSON *cfg_list, const cJSON *dsc_list, const char *kind);
/* A value as one table cell: a string as is, a list as its items' "id:state" (or short
 * @type) sorted and joined by ','. malloc'ed. */
char *kc_cell_text(const cJSON *value);
/* The `list -f` table: one column per filtered field, rows in the original's order. */
int kc_print_column_table(kc_ctx *ctx, const kc_filter *f, const cJSON *cfg_list,
                          const cJSON *dsc_list, const char *kind, FILE *out);

/* ---- the original's ~/.krakenctl (config.c) ---- */

/* What ~/.krakenctl sets: the defaults of -i, -v and -d. */
typedef struct kc_config {
    char path[4096]; /* the file's name, for errors */
    char ip[256];    /* "" when not set */
    size_t ip_line;
    bool verbose, debug;
} kc_config;

/* Read $HOME/.krakenctl when it exists (YAML: ip, verbose, debug). 0, or KC_EXIT_USAGE after
 * a one-line error naming the file, line and key. */
int kc_load_config(kc_ctx *ctx, kc_config *out);

#endif
