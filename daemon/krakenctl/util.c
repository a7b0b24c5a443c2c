/* SPDX-License-Identifier: BSD-3-Clause */
/* util.c: errors, input files, ids and JSON output shared by the commands. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "krakenctl.h"

int kc_error(kc_ctx *ctx, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", ctx->prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

int kc_usage(kc_ctx *ctx, const kc_cmd_entry *cmd)
{
    fprintf(stderr, "usage: %s %s %s\n", ctx->prog, cmd->name, cmd->usage);
    return KC_EXIT_USAGE;
}

int kc_bad_option(kc_ctx *ctx, const kc_cmd_entry *cmd, int opt, char **argv)
{
    if (opt != '?') /* e.g. 'h' from a cluster such as -jh: the usage is what was asked for */
        return kc_usage(ctx, cmd);
    /* getopt (opterr = 0): an unknown long option leaves optopt 0 and is the last word read
     * ("--filter", "--filter=x"); a long option missing its value is the last word of the line
     * (optopt is then its short code, which may not exist: "--timeout" is 'T'); otherwise optopt
     * is the short option, unknown or missing its value, also inside a cluster such as -jf
     * (where optind has not moved past the cluster yet). */
    const char *word = optind > 0 ? argv[optind - 1] : "";
    char what[64];
    if (strncmp(word, "--", 2) == 0 && (!optopt || argv[optind] == NULL))
        snprintf(what, sizeof what, "%.*s", (int)strcspn(word, "="), word);
    else if (optopt)
        snprintf(what, sizeof what, "-%c", optopt);
    else
        snprintf(what, sizeof what, "%s", word);
    fprintf(stderr, "%s %s: unknown option %s or missing argument (usage: %s %s %s)\n",
            ctx->prog, cmd->name, what, ctx->prog, cmd->name, cmd->usage);
    return KC_EXIT_USAGE;
}

int kc_parse_json_flag(kc_ctx *ctx, const kc_cmd_entry *cmd, int argc, char **argv,
                       int min_operands, int max_operands)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
        if (opt == 'j')
            ctx->json = true;
        else
            return kc_bad_option(ctx, cmd, opt, argv);
    }
    int operands = argc - optind;
    if (operands < min_operands || operands > max_operands)
        return kc_usage(ctx, cmd);
    return KC_EXIT_OK;
}

/*
 * JSON as the original krakenctl printed it, Python's json.dumps(indent=4, sort_keys=True):
 * keys sorted, four-space indent, "key": value, non-ASCII as \uXXXX. Scripts written against
 * its output (jq, but also grep '"physState": "POWER_ON"') find the same text.
 */

/* The code point of the UTF-8 sequence at @p s (*len bytes), or -1 (then *len is 1). */
static long utf8_decode(const unsigned char *s, size_t *len)
{
    int n = s[0] >= 0xf0 && s[0] < 0xf5 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    *len = 1;
    if (n == 0 || s[0] >= 0xf5)
        return -1;
    long cp = s[0] & (0x7f >> n);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return -1;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    static const long min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *len = (size_t)n;
    return cp;
}

static void put_string(FILE *out, const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    fputc('"', out);
    while (*s) {
        size_t len = 1;
        unsigned char c = *s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c == '\r')
            fputs("\\r", out);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c == '\b')
            fputs("\\b", out);
        else if (c == '\f')
            fputs("\\f", out);
        else if (c >= 0x20 && c < 0x7f)
            fputc(c, out);
        else {
            long cp = c < 0x80 ? c : utf8_decode(s, &len);
            if (cp < 0) /* not UTF-8: the byte, as a code point */
                cp = c;
            if (cp >= 0x10000) /* a surrogate pair, as Python writes it */
                fprintf(out, "\\u%04lx\\u%04lx", 0xd800 + ((cp - 0x10000) >> 10),
                        0xdc00 + ((cp - 0x10000) & 0x3ff));
            else
                fprintf(out, "\\u%04lx", cp);
        }
        s += len;
    }
    fputc('"', out);
}

static int by_key(const void *a, const void *b)
{
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

/* @p v as cJSON writes it unformatted. */
static void put_compact(FILE *out, const cJSON *v)
{
    char *text = cJSON_PrintUnformatted(v);
    fputs(text ? text : "null", out);
    cJSON_free(text);
}

static void put_value(FILE *out, const cJSON *v, int depth)
{
    bool object = cJSON_IsObject(v);
    if (cJSON_IsString(v)) {
        put_string(out, v->valuestring);
        return;
    }
    if (!object && !cJSON_IsArray(v)) { /* numbers, true, false, null */
        put_compact(out, v);
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(v), k = 0;
    if (n == 0) {
        fputs(object ? "{}" : "[]", out);
        return;
    }
    const cJSON **items = malloc(n * sizeof *items);
    if (!items) { /* out of memory: still valid JSON, unsorted and compact */
        put_compact(out, v);
        return;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, v) items[k++] = item;
    if (object)
        qsort(items, n, sizeof *items, by_key);
    fputc(object ? '{' : '[', out);
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "%s\n%*s", i ? "," : "", 4 * (depth + 1), "");
        if (object) {
            put_string(out, items[i]->string);
            fputs(": ", out);
        }
        put_value(out, items[i], depth + 1);
    }
    fprintf(out, "\n%*s%c", 4 * depth, "", object ? '}' : ']');
    free(items);
}

void kc_print_json(const cJSON *json)
{
    put_value(stdout, json, 0);
    fputc('\n', stdout);
}

void kc_print_original_mixed(const cJSON *cfg, const cJSON *dsc)
{
    fputs("CFG:\n\n", stdout);
    kc_print_json(cfg);
    fputs("\nDSC:\n\n", stdout);
    kc_print_json(dsc);
}

int kc_parse_id(kc_ctx *ctx, const char *text, kraken_uuid *out)
{
    if (kraken_uuid_parse(out, text) != 0)
        return kc_error(ctx, KC_EXIT_USAGE,
                        "'%s' is not a node id (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                        text);
    return 0;
}

char *kc_read_input(kc_ctx *ctx, const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        kc_error(ctx, KC_EXIT_USAGE, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        char *bigger = realloc(buf, cap * 2 + 1);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    bool failed = ferror(f);
    if (f != stdin)
        fclose(f);
    if (!buf || failed) {
        free(buf);
        kc_error(ctx, KC_EXIT_USAGE, "%s: cannot read the file", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/*
 * The daemon's self node carries the configs of its own services. Their
 * schemas are registered by the daemon at run time, not built into the
 * library, so a client decoding the self node must know them too
 * (SPEC Appendix A). An identical registration is a no-op.
 */
void kc_register_known_schemas(void)
{
    static const kraken_field_def restapi[] = {
        KRAKEN_FIELD("addr", 1, KRAKEN_T_STRING),
        KRAKEN_FIELD("port", 2, KRAKEN_T_INT32),
    };
    static const kraken_field_def websocket[] = {
        KRAKEN_FIELD("port", 2, KRAKEN_T_INT32),
        KRAKEN_FIELD("writeWait", 3, KRAKEN_T_STRING),
        KRAKEN_FIELD("pongWait", 4, KRAKEN_T_STRING),
        KRAKEN_FIELD("pingPeriod", 5, KRAKEN_T_STRING),
        KRAKEN_FIELD("maxMessageSize", 6, KRAKEN_T_INT64),
    };
    if (!kraken_schema_find("restapi.Config"))
        kraken_schema_register("restapi.Config", restapi, sizeof restapi / sizeof restapi[0],
                               NULL);
    if (!kraken_schema_find("WebSocket.Config"))
        kraken_schema_register("WebSocket.Config", websocket,
                               sizeof websocket / sizeof websocket[0], NULL);
    kraken_error_clear();
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every *.json schema description in @p dir, in name order (as kraken-daemon -schemas). */
int kc_load_schema_dir(kc_ctx *ctx, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return kc_error(ctx, KC_EXIT_USAGE, "--schemas %s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0;
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len <= 5 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        char **grown = realloc(names, (n + 1) * sizeof *names);
        if (!grown) {
            rc = kc_error(ctx, KC_EXIT_USAGE, "--schemas %s: out of memory", dir);
            break;
        }
        names = grown;
        if (!(names[n] = strdup(e->d_name))) {
            rc = kc_error(ctx, KC_EXIT_USAGE, "--schemas %s: out of memory", dir);
            break;
        }
        n++;
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof *names, compare_names);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (rc == 0 && kraken_schema_load_file(path) != 0)
            rc = kc_error(ctx, KC_EXIT_USAGE, "%s", kraken_error_last());
        free(names[i]);
    }
    free(names);
    return rc;
}

const char *kc_schema_hint(const char *message)
{
    if (strstr(message, "@type") || strstr(message, "unknown schema"))
        return " (give krakenctl the site's schemas: --schemas DIR)";
    return "";
}
