/* Shared helpers for the check unit tests. */
#ifndef KRAKEN_TESTUTIL_H
#define KRAKEN_TESTUTIL_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

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

#endif
