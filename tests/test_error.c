/* Error codes, last-error messages, version, and the file helpers in util.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

START_TEST(strerror_and_names)
{
    ck_assert_str_eq(kraken_strerror(KRAKEN_ENOTFOUND), "not found");
    ck_assert_str_eq(kraken_err_name(KRAKEN_EPROTO), "KRAKEN_EPROTO");
    ck_assert_str_eq(kraken_strerror(-999), "unknown error");
    ck_assert_str_eq(kraken_err_name(12345), "KRAKEN_E?");
    for (int code = KRAKEN_OK; code >= KRAKEN_ENOPATH; code--)
        ck_assert_str_ne(kraken_strerror(code), "unknown error");
}
END_TEST

START_TEST(last_error_is_per_call_and_prefixable)
{
    kraken_error_clear();
    ck_assert_str_eq(kraken_error_last(), "");
    ck_assert_int_eq(kraken__err(KRAKEN_ETYPE, "url %s wants %s", "/PhysState", "enum"),
                     KRAKEN_ETYPE);
    ck_assert_str_eq(kraken_error_last(), "url /PhysState wants enum");
    ck_assert_int_eq(kraken__err_prefix(KRAKEN_ETYPE, "node %d", 3), KRAKEN_ETYPE);
    ck_assert_str_eq(kraken_error_last(), "node 3: url /PhysState wants enum");
    kraken_error_clear();
    kraken__err_prefix(KRAKEN_EIO, "f.json");
    ck_assert_str_eq(kraken_error_last(), "f.json: I/O error");
}
END_TEST

START_TEST(public_error_set_reports_like_the_library)
{
    ck_assert_int_eq(kraken_error_set(KRAKEN_EIO, "cannot listen on %s port %d", "::1", 3142),
                     KRAKEN_EIO);
    ck_assert_str_eq(kraken_error_last(), "cannot listen on ::1 port 3142");
    kraken__err_prefix(KRAKEN_EIO, "websocket");
    ck_assert_str_eq(kraken_error_last(), "websocket: cannot listen on ::1 port 3142");
    ck_assert_int_eq(kraken_error_set(KRAKEN_EINVAL, NULL), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "");
}
END_TEST

START_TEST(long_messages_truncate_safely)
{
    char big[4096];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    kraken__err(KRAKEN_EINVAL, "%s", big);
    ck_assert_uint_lt(strlen(kraken_error_last()), sizeof big);
    kraken__err_prefix(KRAKEN_EINVAL, "%s", big);
    ck_assert_uint_gt(strlen(kraken_error_last()), 100);
}
END_TEST

START_TEST(version_matches_header)
{
    ck_assert_str_eq(kraken_version(), KRAKEN_VERSION_STRING);
    ck_assert_int_eq(kraken_version_number(), KRAKEN_VERSION_NUMBER);
}
END_TEST

static char tmpdir[64];

static void make_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/kraken-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

START_TEST(atomic_write_and_read_back)
{
    make_tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/state.json", tmpdir);
    ck_assert_int_eq(kraken__write_file_atomic(path, "first", 5), KRAKEN_OK);
    ck_assert_int_eq(kraken__write_file_atomic(path, "second!", 7), KRAKEN_OK);
    char *data = NULL;
    size_t len = 0;
    ck_assert_int_eq(kraken__read_file(path, &data, &len), KRAKEN_OK);
    ck_assert_uint_eq(len, 7);
    ck_assert_str_eq(data, "second!");
    free(data);
    unlink(path);
    rmdir(tmpdir);
}
END_TEST

START_TEST(atomic_write_failure_leaves_old_file)
{
    if (geteuid() == 0) {
        /* root ignores directory permissions; use a missing directory instead. */
        ck_assert_int_eq(kraken__write_file_atomic("/nonexistent-dir/x.json", "x", 1), KRAKEN_EIO);
        ck_assert_ptr_nonnull(strstr(kraken_error_last(), "/nonexistent-dir/x.json"));
        return;
    }
    make_tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/state.json", tmpdir);
    ck_assert_int_eq(kraken__write_file_atomic(path, "old", 3), KRAKEN_OK);
    chmod(tmpdir, 0500);
    ck_assert_int_eq(kraken__write_file_atomic(path, "new", 3), KRAKEN_EIO);
    chmod(tmpdir, 0700);
    char *data = NULL;
    size_t len = 0;
    ck_assert_int_eq(kraken__read_file(path, &data, &len), KRAKEN_OK);
    ck_assert_str_eq(data, "old");
    free(data);
    unlink(path);
    rmdir(tmpdir);
}
END_TEST

START_TEST(read_missing_file_names_it)
{
    char *data = NULL;
    size_t len = 0;
    ck_assert_int_eq(kraken__read_file("/no/such/file.json", &data, &len), KRAKEN_EIO);
    ck_assert_ptr_null(data);
    ck_assert_ptr_nonnull(strstr(kraken_error_last(), "/no/such/file.json"));
    ck_assert_int_eq(kraken__read_file("/tmp", &data, &len), KRAKEN_EIO);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("error");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, strerror_and_names);
    tcase_add_test(tc, last_error_is_per_call_and_prefixable);
    tcase_add_test(tc, long_messages_truncate_safely);
    tcase_add_test(tc, public_error_set_reports_like_the_library);
    tcase_add_test(tc, version_matches_header);
    tcase_add_test(tc, atomic_write_and_read_back);
    tcase_add_test(tc, atomic_write_failure_leaves_old_file);
    tcase_add_test(tc, read_missing_file_names_it);
    suite_add_tcase(s, tc);
    return s;
}
KRAKEN_TEST_MAIN(make_suite)
