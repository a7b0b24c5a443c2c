/* SPDX-License-Identifier: BSD-3-Clause */
/* Shared helpers for the check unit tests. */
#ifndef KRAKEN_TESTUTIL_H
#define KRAKEN_TESTUTIL_H

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kraken/error.h>
#include <kraken/schema.h>

/* Directory holding tests/fixtures (set by meson as a define). */
#ifndef KRAKEN_FIXTURES
#define KRAKEN_FIXTURES "tests/fixtures"
#endif

/* Module config types are not built in (SPEC Appendix A): the module that uses one registers
 * it. The tests register the ones they use from a schema description file, as a site would:
 * the Appendix A module configs and TestModule.Config (a config with an IPv4 field). */
#define KRAKEN_TEST_SCHEMAS KRAKEN_FIXTURES "/schemas/test-modules.json"

/* Run one suite; TAP output goes to stdout when meson sets CK_TAP_LOG_FILE_NAME=-. */
#define KRAKEN_TEST_MAIN(suite_fn)                                             \
    int main(void)                                                             \
    {                                                                          \
        if (kraken_schema_load_file(KRAKEN_TEST_SCHEMAS) != 0) {               \
            fprintf(stderr, "%s\n", kraken_error_last());                      \
            return EXIT_FAILURE;                                               \
        }                                                                      \
        SRunner *sr = srunner_create(suite_fn());                              \
        srunner_run_all(sr, CK_ENV);                                        \
        int failed = srunner_ntests_failed(sr);                                \
        srunner_free(sr);                                                      \
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;                      \
    }

/*
 * Skip the running check test visibly: check has no skip result, so the test writes one line
 * "# SKIP <test>: <reason>" to stderr and returns (check then prints "ok"). tests/summarize.py
 * reads these lines from meson's log and counts the test as skipped, never as passed. One
 * write(2) keeps the line whole whether or not check forks.
 */
#define KRAKEN_SKIP(...)                                                                       \
    do {                                                                                       \
        kraken_test_skip_line(__func__, __VA_ARGS__);                                          \
        return;                                                                                \
    } while (0)

__attribute__((format(printf, 2, 3), unused)) static void
kraken_test_skip_line(const char *func, const char *fmt, ...)
{
    char line[512];
    size_t name_len = strlen(func);
    if (name_len > 3 && strcmp(func + name_len - 3, "_fn") == 0)
        name_len -= 3; /* START_TEST(x) defines x_fn */
    int n = snprintf(line, sizeof line, "# SKIP %.*s: ", (int)name_len, func);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, (size_t)n) < 0)
        return; /* nothing better to do: the test still passes */
}

#endif
