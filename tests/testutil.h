/* Shared helpers for the check unit tests. */
#ifndef KRAKEN_TESTUTIL_H
#define KRAKEN_TESTUTIL_H

#include <check.h>
#include <stdlib.h>

/* Run one suite; TAP output goes to stdout when meson sets CK_TAP_LOG_FILE_NAME=-. */
#define KRAKEN_TEST_MAIN(suite_fn)                                             \
    int main(void)                                                             \
    {                                                                          \
        SRunner *sr = srunner_create(suite_fn());                              \
        srunner_run_all(sr, CK_ENV);                                        \
        int failed = srunner_ntests_failed(sr);                                \
        srunner_free(sr);                                                      \
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;                      \
    }

/* Directory holding tests/fixtures (set by meson as a define). */
#ifndef KRAKEN_FIXTURES
#define KRAKEN_FIXTURES "tests/fixtures"
#endif

#endif
