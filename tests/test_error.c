/* SPDX-License-Identifier: BSD-3-Clause */
/* Error codes, last-error messages, version, and the file helpers in util.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
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
    for (int code = KRAKEN_OK; code >= KRAKEN_ETHREAD; code--)
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

/* Entries in tmpdir (the saved file and anything left behind). */
static int count_entries(void)
{
    DIR *d = opendir(tmpdir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void expect_content(const char *path, const char *want)
{
    char *data = NULL;
    size_t len = 0;
    ck_assert_int_eq(kraken__read_file(path, &data, &len), KRAKEN_OK);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_str_eq(data, want);
    free(data);
}

/*
 * The save replaces the file (a new inode renamed over the old name), never rewrites it in
 * place: a hard link to the old file still shows the old content. Truncate-and-write would
 * change both names. Works as root.
 */
START_TEST(atomic_write_replaces_never_rewrites)
{
    make_tmpdir();
    char path[128], link_path[128];
    snprintf(path, sizeof path, "%s/state.json", tmpdir);
    snprintf(link_path, sizeof link_path, "%s/old-state.json", tmpdir);
    ck_assert_int_eq(kraken__write_file_atomic(path, "old content", 11), KRAKEN_OK);
    ck_assert_int_eq(link(path, link_path), 0);
    struct stat before, after;
    ck_assert_int_eq(stat(path, &before), 0);
    ck_assert_int_eq(kraken__write_file_atomic(path, "new", 3), KRAKEN_OK);
    ck_assert_int_eq(stat(path, &after), 0);
    expect_content(path, "new");
    expect_content(link_path, "old content");
    ck_assert_uint_ne(before.st_ino, after.st_ino);
    ck_assert_uint_eq(after.st_nlink, 1);
    ck_assert_uint_eq(after.st_mode & 0777, 0644);
    ck_assert_int_eq(count_entries(), 2); /* the two names, no temporary */
    unlink(link_path);
    unlink(path);
    rmdir(tmpdir);
}
END_TEST

/*
 * A write that fails half-way (file size limit: root is bound by it too) returns an error
 * naming the file and the step, leaves the old file exactly as it was and removes the
 * temporary file.
 */
START_TEST(atomic_write_failure_leaves_old_file)
{
    make_tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/state.json", tmpdir);
    ck_assert_int_eq(kraken__write_file_atomic(path, "old", 3), KRAKEN_OK);

    struct rlimit saved, small = {8, 8};
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
    small.rlim_max = saved.rlim_max;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN); /* EFBIG instead of a signal */
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    int rc = kraken__write_file_atomic(path, "new content, longer than 8 bytes", 32);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", kraken_error_last());
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, old_handler);

    ck_assert_int_eq(rc, KRAKEN_EIO);
    char want[256];
    snprintf(want, sizeof want, "%s: write failed: %s (old file left unchanged)", path,
             strerror(EFBIG));
    ck_assert_str_eq(msg, want);
    expect_content(path, "old");
    ck_assert_int_eq(count_entries(), 1); /* the temporary file was removed */
    unlink(path);
    rmdir(tmpdir);
}
END_TEST

/*
 * A rename that fails (the target name is a directory) is an error, not a success, and the
 * temporary file written before it is removed. Works as root.
 */
START_TEST(atomic_write_rename_failure_is_an_error)
{
    make_tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/state.json", tmpdir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    ck_assert_int_eq(kraken__write_file_atomic(path, "data", 4), KRAKEN_EIO);
    char want[256];
    snprintf(want, sizeof want, "%s: rename failed: %s (old file left unchanged)", path,
             strerror(EISDIR));
    ck_assert_str_eq(kraken_error_last(), want);
    ck_assert_int_eq(count_entries(), 1); /* only the directory: no temporary left */
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    rmdir(path);
    rmdir(tmpdir);
}
END_TEST

/* A directory without write permission: refused, the old file kept (not meaningful as root). */
START_TEST(atomic_write_unwritable_directory)
{
    /* A missing directory fails for everyone, root included. */
    ck_assert_int_eq(kraken__write_file_atomic("/nonexistent-dir/x.json", "x", 1), KRAKEN_EIO);
    ck_assert_str_eq(kraken_error_last(), "/nonexistent-dir/x.json: cannot create temporary "
                                          "file: No such file or directory");
    if (geteuid() == 0)
        KRAKEN_SKIP("running as root, which ignores directory permissions");
    make_tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/state.json", tmpdir);
    ck_assert_int_eq(kraken__write_file_atomic(path, "old", 3), KRAKEN_OK);
    chmod(tmpdir, 0500);
    ck_assert_int_eq(kraken__write_file_atomic(path, "new", 3), KRAKEN_EIO);
    chmod(tmpdir, 0700);
    expect_content(path, "old");
    ck_assert_int_eq(count_entries(), 1);
    unlink(path);
    rmdir(tmpdir);
}
END_TEST

static void touch(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("partial", f);
    fclose(f);
}

static bool exists(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    return access(path, F_OK) == 0;
}

/*
 * A save first removes the temporary files an interrupted save left ("<name>.tmp.XXXXXX",
 * X from [A-Za-z0-9]) but not one a save in progress holds locked, nor any other name.
 */
START_TEST(stale_temporaries_removed_before_a_save)
{
    make_tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/state.json", tmpdir);
    touch("state.json.tmp.AbC123");   /* left by a crash: removed */
    touch("state.json.tmp.zz9ZZ9");   /* too */
    touch("state.json.tmp.in_use");   /* '_': not one of ours */
    touch("state.json.tmp.AbC1234");  /* 7 characters: not ours */
    touch("other.json.tmp.AbC123");   /* another file's */
    touch("state.json.tmp.Locked");   /* a save in progress elsewhere: locked */
    char locked[256];
    snprintf(locked, sizeof locked, "%s/state.json.tmp.Locked", tmpdir);
    int fd = open(locked, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0);

    ck_assert_int_eq(kraken__write_file_atomic(path, "new", 3), KRAKEN_OK);
    ck_assert(!exists("state.json.tmp.AbC123"));
    ck_assert(!exists("state.json.tmp.zz9ZZ9"));
    ck_assert(exists("state.json.tmp.in_use"));
    ck_assert(exists("state.json.tmp.AbC1234"));
    ck_assert(exists("other.json.tmp.AbC123"));
    ck_assert(exists("state.json.tmp.Locked"));
    expect_content(path, "new");
    ck_assert_int_eq(count_entries(), 5); /* the file, 3 other names, the locked one */

    /* once its owner is gone (the lock with it), the next save removes it */
    close(fd);
    ck_assert_uint_eq(kraken__remove_stale_temps(path), 1);
    ck_assert(!exists("state.json.tmp.Locked"));
    static const char *const others[] = {"state.json", "state.json.tmp.in_use",
                                         "state.json.tmp.AbC1234", "other.json.tmp.AbC123"};
    ck_assert_int_eq(count_entries(), 4);
    for (size_t i = 0; i < 4; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/%s", tmpdir, others[i]);
        unlink(p);
    }
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
    tcase_add_test(tc, atomic_write_replaces_never_rewrites);
    tcase_add_test(tc, atomic_write_failure_leaves_old_file);
    tcase_add_test(tc, atomic_write_rename_failure_is_an_error);
    tcase_add_test(tc, atomic_write_unwritable_directory);
    tcase_add_test(tc, stale_temporaries_removed_before_a_save);
    tcase_add_test(tc, read_missing_file_names_it);
    suite_add_tcase(s, tc);
    return s;
}
KRAKEN_TEST_MAIN(make_suite)
