/* Error codes and the per-thread last-error message. */
#include <stdio.h>
#include <string.h>

#include "util_private.h"

#define KRAKEN_ERRMSG_MAX 1024

static _Thread_local char last_message[KRAKEN_ERRMSG_MAX];

static const struct {
    int code;
    const char *name;
    const char *text;
} error_table[] = {
    {KRAKEN_OK, "KRAKEN_OK", "success"},
    {KRAKEN_EINVAL, "KRAKEN_EINVAL", "invalid argument"},
    {KRAKEN_ENOMEM, "KRAKEN_ENOMEM", "out of memory"},
    {KRAKEN_ENOTFOUND, "KRAKEN_ENOTFOUND", "not found"},
    {KRAKEN_EEXISTS, "KRAKEN_EEXISTS", "already exists"},
    {KRAKEN_ETYPE, "KRAKEN_ETYPE", "wrong type"},
    {KRAKEN_EPARSE, "KRAKEN_EPARSE", "parse error"},
    {KRAKEN_EPROTO, "KRAKEN_EPROTO", "malformed binary input"},
    {KRAKEN_EIO, "KRAKEN_EIO", "I/O error"},
    {KRAKEN_EAUTH, "KRAKEN_EAUTH", "authentication failed"},
    {KRAKEN_ESTATE, "KRAKEN_ESTATE", "invalid in the current state"},
    {KRAKEN_ELIMIT, "KRAKEN_ELIMIT", "limit exceeded"},
    {KRAKEN_ENOPATH, "KRAKEN_ENOPATH", "no mutation path"},
    {KRAKEN_ETHREAD, "KRAKEN_ETHREAD", "wrong thread"},
};

const char *kraken_strerror(int err)
{
    for (size_t i = 0; i < sizeof error_table / sizeof error_table[0]; i++)
        if (error_table[i].code == err)
            return error_table[i].text;
    return "unknown error";
}

const char *kraken_err_name(int err)
{
    for (size_t i = 0; i < sizeof error_table / sizeof error_table[0]; i++)
        if (error_table[i].code == err)
            return error_table[i].name;
    return "KRAKEN_E?";
}

const char *kraken_error_last(void) { return last_message; }

void kraken_error_clear(void) { last_message[0] = '\0'; }

int kraken__err(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    return code;
}

int kraken_error_set(int code, const char *fmt, ...)
{
    if (!fmt) {
        last_message[0] = '\0';
        return code;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    return code;
}

/* Append @p text at *pos in last_message, truncating at the buffer's end. */
static void append_message(size_t *pos, const char *text)
{
    size_t room = sizeof last_message - 1 - *pos;
    size_t len = strnlen(text, room);
    memcpy(last_message + *pos, text, len);
    *pos += len;
    last_message[*pos] = '\0';
}

int kraken__err_prefix(int code, const char *fmt, ...)
{
    char prefix[KRAKEN_ERRMSG_MAX];
    char rest[KRAKEN_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(rest, last_message, sizeof rest);
    size_t pos = 0;
    append_message(&pos, prefix);
    append_message(&pos, ": ");
    append_message(&pos, rest[0] != '\0' ? rest : kraken_strerror(code));
    return code;
}

const char *kraken_log_level_name(int level)
{
    static const char *const names[] = {"PANIC", "FATAL", "CRITICAL", "ERROR", "WARNING",
                                        "NOTICE", "INFO", "DEBUG", "DDEBUG", "DDDEBUG"};
    if (level < 0 || level > 9)
        return "UNKNOWN";
    return names[level];
}
