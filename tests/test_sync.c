/* Placeholder: replaced by the real sync tests. */
#include "testutil.h"
#include "internal.h"

START_TEST(placeholder) { ck_assert_int_eq(1, 1); }
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("sync");
    TCase *tc = tcase_create("placeholder");
    tcase_add_test(tc, placeholder);
    suite_add_tcase(s, tc);
    return s;
}
KRAKEN_TEST_MAIN(make_suite)
