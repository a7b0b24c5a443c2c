/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The module socket end to end (kraken_module_server + kraken_module_connect):
 * an external module process (tests/module_proc.c running testpower) drives
 * nodes from cold to SYNC; the waiting calls; refusals; malformed, truncated
 * and oversized frames close only their connection; peers of another uid are
 * refused; a module killed mid-mutation has its step interrupted and
 * replanned, and resumes when it connects again; config pushed while running.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <pthread.h>

#include <kraken/module.h>

#include "modharness.h"
#include "module_int.h"
#include "modules/testpower.h"

#ifndef KRAKEN_TEST_MODULE_PROC
#define KRAKEN_TEST_MODULE_PROC "tests/modules/module_proc"
#endif

static kraken_module_server *srv;
static char sock_path[108];
static char tmpdir[64];

static void setup(void)
{
    mh_setup();
    /* As a daemon's schema directory would: Cfg may hold a config before its module connects. */
    const char *schemas = testpower_desc()->schemas_json;
    ck_assert_int_eq(kraken_schema_load_json(schemas, strlen(schemas), "testpower"), 0);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kraken-modtest-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    chmod(tmpdir, 0755); /* the wrong-uid test's peer must reach the socket itself */
    snprintf(sock_path, sizeof sock_path, "%s/module.sock", tmpdir);
    kraken_module_server_options o;
    ck_assert_int_eq(kraken_module_server_options_init(&o, KRAKEN_MODULE_SERVER_OPTIONS_VERSION),
                     0);
    o.socket_path = sock_path;
    ck_assert_int_eq(kraken_module_server_new(&srv, mh.engine, mh.base, &o), 0);
}

static void teardown(void)
{
    kraken_module_server_free(srv);
    srv = NULL;
    ck_assert_int_ne(access(sock_path, F_OK), 0); /* the socket file is gone */
    rmdir(tmpdir);
    mh_teardown();
}

/* ---- child processes ------------------------------------------------------------------------- */

static pid_t spawn_module(const char *service_id, const char *arg)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(STDERR_FILENO, STDOUT_FILENO); /* stdout is the test's TAP stream */
        setenv("KRAKEN_MODULE_SOCKET", sock_path, 1);
        setenv("KRAKEN_SERVICE_ID", service_id, 1);
        execl(KRAKEN_TEST_MODULE_PROC, "module_proc", arg, (char *)NULL);
        _exit(127);
    }
    return pid;
}

typedef struct exit_wait {
    pid_t pid;
    int status;
    bool done;
} exit_wait;

static bool child_exited(void *arg)
{
    exit_wait *w = arg;
    if (!w->done && waitpid(w->pid, &w->status, WNOHANG) == w->pid)
        w->done = true;
    return w->done;
}

static int wait_exit(pid_t pid)
{
    exit_wait w = {pid, 0, false};
    ck_assert(mh_run_until(child_exited, &w, MH_DEADLINE_MS));
    return w.status;
}

static void set_self(const char *url, const char *text)
{
    ck_assert_int_eq(kraken_store_set_text(mh.store, KRAKEN_CFG, kraken_engine_self_id(mh.engine),
                                           url, text),
                     0);
}

static bool connections_are(void *arg)
{
    return kraken_module_server_connections(srv) == *(size_t *)arg;
}

static bool registrations_are(void *arg)
{
    size_t n = 0;
    for (size_t i = 0; i < mh.n_lines; i++)
        n += strstr(mh.lines[i], "registered as service 'power'") != NULL;
    return n == *(size_t *)arg;
}

/* ---- the protocol end to end ------------------------------------------------------------- */

START_TEST(external_cold_to_sync)
{
    struct stat st;
    ck_assert_int_eq(stat(sock_path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    ck_assert_int_eq(st.st_mode & 0777, 0600);

    mh_add_node(0);
    mh_add_node(1);
    pid_t pid = spawn_module("power", "selftest");
    mh_svc_state run = {"power", "RUN"};
    ck_assert(mh_run_until(mh_service_is, &run, MH_DEADLINE_MS));
    ck_assert_ptr_nonnull(kraken_module_server_service(srv, "power"));
    mh_nodes all = {0, 2};
    ck_assert(mh_run_until(mh_all_synced, &all, MH_DEADLINE_MS));
    kraken_uuid id0 = mh_node_id(0);
    ck_assert_str_eq(mh_get(KRAKEN_DSC, &id0, "/PhysState"), "POWER_ON");
    /* the waiting calls and an asynchronous refusal, as the module logged them */
    ck_assert(mh_run_until(mh_line_seen, "power: selftest query: Cfg RunState SYNC",
                           MH_DEADLINE_MS));
    ck_assert(mh_line_seen("power: selftest update_cfg: ok"));
    ck_assert_str_eq(mh_get(KRAKEN_CFG, &id0, "/Nodename"), "from-module");
    ck_assert(mh_line_seen("power: selftest update_cfg refused: "));
    ck_assert(mh_line_seen("power: selftest query refused: "));
    ck_assert(mh_run_until(mh_line_seen,
                           "power: refused (KRAKEN_EINVAL): discovery by service 'power': '/Arch' "
                           "was not declared discoverable",
                           MH_DEADLINE_MS));
    ck_assert(mh_line_seen("modules: module 'testpower' (pid "));
    /* Cfg STOP: the module is told, answers STOP, and exits 0 when the server closes */
    set_self("/Services/power/State", "STOP");
    mh_svc_state stop = {"power", "STOP"};
    ck_assert(mh_run_until(mh_service_is, &stop, MH_DEADLINE_MS));
    /* a module that stopped, then leaves, leaves the service STOP (not ERROR) */
    kill(pid, SIGTERM);
    int status = wait_exit(pid);
    ck_assert(WIFSIGNALED(status));
    size_t none = 0;
    ck_assert(mh_run_until(connections_are, &none, MH_DEADLINE_MS));
    ck_assert_str_eq(mh_self("/Services/power/State"), "STOP");
    /* the instance closing the connection ends a module process cleanly */
    pid = spawn_module("power", NULL);
    mh_svc_state stopped = {"power", "STOP"};
    size_t twice = 2;
    ck_assert(mh_run_until(registrations_are, &twice, MH_DEADLINE_MS));
    ck_assert(mh_service_is(&stopped)); /* Cfg says STOP: registered, not started */
    kraken_module_server_forget(srv, "power");
    status = wait_exit(pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 3); /* module_proc: disconnected, never stopped */
}
END_TEST

START_TEST(external_config_pushed)
{
    set_self("/Services/power/Config",
             "{\"@type\": \"type.googleapis.com/TestPower.Config\", \"label\": \"boot\"}");
    pid_t pid = spawn_module("power", NULL);
    mh_svc_state run = {"power", "RUN"};
    ck_assert(mh_run_until(mh_service_is, &run, MH_DEADLINE_MS));
    ck_assert(mh_run_until(mh_line_seen, "power: start mode= label=boot", MH_DEADLINE_MS));
    set_self("/Services/power/Config/label", "pushed");
    ck_assert(mh_run_until(mh_line_seen, "power: config mode= label=pushed", MH_DEADLINE_MS));
    kill(pid, SIGTERM);
    wait_exit(pid);
}
END_TEST

/* ---- bad peers ------------------------------------------------------------------------------ */

static int raw_connect(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, sock_path);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static bool peer_closed(void *arg)
{
    int fd = *(int *)arg;
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN);
}

/* Send @p bytes on a fresh connection; the server must close it and log @p why. */
static void expect_closed(const void *bytes, size_t len, bool half_close, const char *why)
{
    size_t before = kraken_module_server_connections(srv), during = before + 1;
    int fd = raw_connect();
    ck_assert(mh_run_until(connections_are, &during, MH_DEADLINE_MS));
    ck_assert_int_eq(write(fd, bytes, len), (ssize_t)len);
    if (half_close)
        shutdown(fd, SHUT_WR);
    ck_assert(mh_run_until(peer_closed, &fd, MH_DEADLINE_MS));
    ck_assert(mh_run_until(connections_are, &before, MH_DEADLINE_MS));
    ck_assert_msg(mh_line_seen((void *)why), "no log line with: %s", why);
    close(fd);
}

START_TEST(external_bad_frames)
{
    pid_t pid = spawn_module("power", NULL);
    mh_svc_state run = {"power", "RUN"};
    ck_assert(mh_run_until(mh_service_is, &run, MH_DEADLINE_MS));

    static const uint8_t oversized[] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3};
    expect_closed(oversized, sizeof oversized, false,
                  "closed: module frame of 4294967295 bytes exceeds the bound of 4194304");
    /* field 1 (Register) as a varint where a message must be: wrong wire type */
    static const uint8_t malformed[] = {0, 0, 0, 2, 0x08, 0x01};
    expect_closed(malformed, sizeof malformed, false,
                  "closed: module frame: malformed at byte ");
    static const uint8_t truncated[] = {0, 0, 0, 40, 0x0a, 0x10, 'x'};
    expect_closed(truncated, sizeof truncated, true,
                  "closed: the module hung up in the middle of a frame");
    /* a Log (field 9) with an empty body before Register */
    static const uint8_t early[] = {0, 0, 0, 2, 0x4a, 0x00};
    expect_closed(early, sizeof early, false, "closed: Log before Register");
    /* an empty frame carries no message */
    static const uint8_t empty[] = {0, 0, 0, 0};
    expect_closed(empty, sizeof empty, false, "closed: module frame: 0 bytes without a known message");

    /* the registered module never noticed */
    size_t one = 1;
    ck_assert(mh_run_until(connections_are, &one, MH_DEADLINE_MS));
    ck_assert(mh_service_is(&run));
    mh_add_node(3);
    mh_nodes n3 = {3, 1};
    ck_assert(mh_run_until(mh_all_synced, &n3, MH_DEADLINE_MS));
    kill(pid, SIGTERM);
    wait_exit(pid);
}
END_TEST

/* A second process for a connected service, and a module name that does not fit, are refused. */
START_TEST(external_register_refused)
{
    kraken_module_expect_hooks unversioned = {0};
    ck_assert_int_eq(kraken_module_server_expect(srv, "pxe", "pxe", &unversioned, NULL, NULL),
                     KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(),
                     "module_server_expect: service 'pxe': kraken_module_expect_hooks version 0 "
                     "(set .version = KRAKEN_MODULE_EXPECT_HOOKS_VERSION; this libkraken knows "
                     "1..1)");
    ck_assert_ptr_null(kraken_module_server_service(srv, "pxe")); /* nothing was added */
    kraken_module_expect_hooks hooks = KRAKEN_MODULE_EXPECT_HOOKS_INIT(.start = NULL);
    ck_assert_int_eq(kraken_module_server_expect(srv, "pxe", "pxe", &hooks, NULL, NULL), 0);
    ck_assert_int_eq(kraken_module_server_expect(srv, "pxe", "pxe", &hooks, NULL, NULL),
                     KRAKEN_EEXISTS);
    pid_t wrong = spawn_module("pxe", NULL);
    int status = wait_exit(wrong);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 2);
    ck_assert(mh_line_seen("modules: module connection (pid "));
    ck_assert(mh_line_seen(") refused: service 'pxe' runs module 'pxe', not 'testpower'"));

    pid_t first = spawn_module("power", NULL);
    mh_svc_state run = {"power", "RUN"};
    ck_assert(mh_run_until(mh_service_is, &run, MH_DEADLINE_MS));
    pid_t second = spawn_module("power", NULL);
    status = wait_exit(second);
    ck_assert_int_eq(WEXITSTATUS(status), 2);
    ck_assert(mh_line_seen(") refused: service 'power' is already connected (pid "));
    kill(first, SIGTERM);
    wait_exit(first);
    ck_assert_int_eq(kraken_module_server_forget(srv, "nope"), KRAKEN_ENOTFOUND);
}
END_TEST

/* Connect as uid 65534 from a forked child; its exit code says what it saw. */
static int connect_as_nobody(void)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (setgid(65534) < 0 || setuid(65534) < 0)
            _exit(10);
        struct event_base *b = event_base_new();
        kraken_module_connect_options o;
        kraken_module_connect_options_init(&o, KRAKEN_MODULE_CONNECT_OPTIONS_VERSION);
        o.socket_path = sock_path;
        kraken_module *m = NULL;
        int rc = kraken_module_connect(&m, b, testpower_desc(), &o, NULL, NULL);
        char want[256];
        snprintf(want, sizeof want,
                 "module_connect 'testpower': refused by %s: peer uid 65534 is not allowed on "
                 "this module socket",
                 sock_path);
        int code = 13;
        if (rc == 0)
            code = 0;
        else if (rc == KRAKEN_EIO && strstr(kraken_error_last(), "Permission denied"))
            code = 11;
        else if (rc == KRAKEN_EAUTH && strcmp(kraken_error_last(), want) == 0)
            code = 12;
        else
            fprintf(stderr, "connect_as_nobody: %d %s\n", rc, kraken_error_last());
        kraken_module_free(m); /* clean, so that valgrind has nothing to say about the child */
        event_base_free(b);
        kraken_error_clear();
        _exit(code);
    }
    int status = wait_exit(pid);
    ck_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

START_TEST(external_wrong_uid)
{
    if (geteuid() != 0)
        KRAKEN_SKIP("needs root to run a peer as another uid (setuid in a forked child)");
    /* mode 0600: another uid cannot even connect */
    ck_assert_int_eq(connect_as_nobody(), 11);
    /* a socket made reachable by mistake: SO_PEERCRED still refuses the peer */
    ck_assert_int_eq(chmod(sock_path, 0666), 0);
    ck_assert_int_eq(connect_as_nobody(), 12);
    ck_assert(mh_line_seen("refused: peer uid 65534 is not allowed on this module socket"));
    ck_assert_ptr_null(kraken_module_server_service(srv, "testpower"));
    /* an allowed uid is accepted */
    kraken_module_server_free(srv);
    kraken_module_server_options o;
    kraken_module_server_options_init(&o, KRAKEN_MODULE_SERVER_OPTIONS_VERSION);
    uid_t allowed[] = {65534};
    o.socket_path = sock_path;
    o.allowed_uids = allowed;
    o.n_allowed_uids = 1;
    ck_assert_int_eq(kraken_module_server_new(&srv, mh.engine, mh.base, &o), 0);
    ck_assert_int_eq(chmod(sock_path, 0666), 0);
    ck_assert_int_eq(connect_as_nobody(), 0);
}
END_TEST

/* ---- a module that dies mid-mutation --------------------------------------------------------- */

static bool error_msg_is(void *text)
{
    /* "the module hung up", or "... (connection reset)" when it died with data unread */
    return strncmp(mh_self("/Services/power/ErrorMsg"), text, strlen(text)) == 0;
}

START_TEST(external_killed_mid_mutation)
{
    set_self("/Services/power/Config",
             "{\"@type\": \"type.googleapis.com/TestPower.Config\", \"mode\": \"hang\"}");
    pid_t pid = spawn_module("power", NULL);
    mh_add_node(0);
    ck_assert(mh_run_until(mh_mutation_seen, "MUTATE power/discover", MH_DEADLINE_MS));
    kill(pid, SIGKILL);
    wait_exit(pid);
    /* INTERRUPT, the service marked, the node replanned and waiting for its service */
    ck_assert(mh_run_until(mh_mutation_seen, "INTERRUPT power/discover: the module disconnected",
                           MH_DEADLINE_MS));
    /* marked ERROR with the reason; the engine then asks for it again (INIT, waiting) */
    ck_assert(mh_run_until(error_msg_is, "the module hung up", MH_DEADLINE_MS));
    ck_assert_str_ne(mh_self("/Services/power/State"), "RUN");
    ck_assert(!mh_mutation_seen("FAILED"));
    kraken_uuid id = mh_node_id(0);
    kraken_plan_status st;
    ck_assert_int_eq(kraken_engine_node_status(mh.engine, &id, &st), 0);
    ck_assert_int_eq(st.failures, 0);
    kraken_plan_status_clear(&st);
    /* it comes back (answering now) and resumes: the node reaches SYNC */
    set_self("/Services/power/Config/mode", "fast");
    pid = spawn_module("power", NULL);
    mh_nodes n0 = {0, 1};
    ck_assert(mh_run_until(mh_all_synced, &n0, MH_DEADLINE_MS));
    ck_assert_str_eq(mh_self("/Services/power/State"), "RUN");
    kill(pid, SIGTERM);
    wait_exit(pid);
}
END_TEST

/* The instance goes away and comes back (a daemon restart): the module reconnects and resumes. */
START_TEST(external_reconnects)
{
    pid_t pid = spawn_module("power", "reconnect");
    mh_svc_state run = {"power", "RUN"};
    ck_assert(mh_run_until(mh_service_is, &run, MH_DEADLINE_MS));
    kraken_module_server_free(srv);
    srv = NULL;
    ck_assert_str_eq(mh_self("/Services/power/State"), ""); /* its service went with it */
    kraken_module_server_options o;
    kraken_module_server_options_init(&o, KRAKEN_MODULE_SERVER_OPTIONS_VERSION);
    o.socket_path = sock_path;
    ck_assert_int_eq(kraken_module_server_new(&srv, mh.engine, mh.base, &o), 0);
    ck_assert(mh_run_until(mh_service_is, &run, MH_DEADLINE_MS));
    ck_assert(mh_run_until(registrations_are, &(size_t){2}, MH_DEADLINE_MS));
    mh_add_node(5);
    mh_nodes n5 = {5, 1};
    ck_assert(mh_run_until(mh_all_synced, &n5, MH_DEADLINE_MS));
    kill(pid, SIGTERM);
    wait_exit(pid);
}
END_TEST

/* ---- the client side alone ------------------------------------------------------------------- */

START_TEST(client_refusals)
{
    kraken_module_connect_options o;
    ck_assert_int_eq(kraken_module_connect_options_init(&o, 99), KRAKEN_EINVAL);
    ck_assert_str_eq(kraken_error_last(), "module_connect_options_init: unknown version 99 (this "
                                          "libkraken knows 1..1)");
    ck_assert_int_eq(kraken_module_connect_options_init(&o, 1), 0);
    char absent[160];
    snprintf(absent, sizeof absent, "%s/absent.sock", tmpdir);
    o.socket_path = absent;
    kraken_module *m = (kraken_module *)1;
    ck_assert_int_eq(kraken_module_connect(&m, mh.base, testpower_desc(), &o, NULL, NULL),
                     KRAKEN_EIO);
    ck_assert_ptr_null(m);
    char want[256];
    snprintf(want, sizeof want, "module_connect: %s: No such file or directory", absent);
    ck_assert_str_eq(kraken_error_last(), want);
    /* a non-socket file in the way of a server */
    char file[160];
    snprintf(file, sizeof file, "%s/plain", tmpdir);
    FILE *fp = fopen(file, "w");
    fclose(fp);
    kraken_module_server_options so;
    kraken_module_server_options_init(&so, 1);
    so.socket_path = file;
    kraken_module_server *s2 = (kraken_module_server *)1;
    ck_assert_int_eq(kraken_module_server_new(&s2, mh.engine, mh.base, &so), KRAKEN_EEXISTS);
    snprintf(want, sizeof want, "module socket '%s': a non-socket file is in the way", file);
    ck_assert_str_eq(kraken_error_last(), want);
    unlink(file);
}
END_TEST

/*
 * A second server on a socket path where a live one listens is refused and leaves the first
 * one's socket in place (two daemons on one host with the default path); a stale socket file,
 * left by a server that was killed, is replaced.
 */
START_TEST(server_socket_in_use)
{
    kraken_module_server_options so;
    kraken_module_server_options_init(&so, KRAKEN_MODULE_SERVER_OPTIONS_VERSION);
    so.socket_path = sock_path;
    kraken_module_server *s2 = (kraken_module_server *)1;
    ck_assert_int_eq(kraken_module_server_new(&s2, mh.engine, mh.base, &so), KRAKEN_EEXISTS);
    ck_assert_ptr_null(s2);
    char want[256];
    snprintf(want, sizeof want, "module socket '%s' is in use: another process listens on it "
             "(give this instance a socket path of its own)", sock_path);
    ck_assert_str_eq(kraken_error_last(), want);
    struct stat st;
    ck_assert_int_eq(stat(sock_path, &st), 0); /* the first server's socket is still there */
    /* the probe that found it in use is no module: logged as such, not as a module hanging up */
    ck_assert(mh_run_until(mh_line_seen, "modules: module connection (pid ", MH_DEADLINE_MS));
    ck_assert(mh_run_until(mh_line_seen, ") closed before registering", MH_DEADLINE_MS));
    ck_assert(!mh_line_seen("hung up"));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0); /* ... and listens */
    close(fd);

    char stale[sizeof sa.sun_path];
    snprintf(stale, sizeof stale, "%s/stale.sock", tmpdir);
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", stale);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd); /* bound, never listened, closed: what a killed server leaves behind */
    so.socket_path = stale;
    ck_assert_int_eq(kraken_module_server_new(&s2, mh.engine, mh.base, &so), 0);
    kraken_module_server_free(s2);
    ck_assert_int_ne(access(stale, F_OK), 0);
}
END_TEST

/*
 * The client keeps frames that arrive while it waits for an answer, and a
 * frame cut in two by the reads stays whole: this test plays the instance on
 * a raw socket and cuts an Event frame between the Registered answer and the
 * Query's Reply.
 */
static int events_seen;

static void count_event(kraken_module *m, const kraken_event *ev, void *userdata)
{
    (void)m;
    (void)userdata;
    if (ev->type == KRAKEN_EVENT_STATE_CHANGE && ev->url && strcmp(ev->url, "/RunState") == 0)
        events_seen++;
}

typedef struct client_run {
    const char *path;
    int rc_connect, rc_query;
    char error[256];
    int events;
} client_run;

static void *client_thread(void *arg)
{
    client_run *r = arg;
    struct event_base *b = event_base_new();
    kraken_module_desc d = *testpower_desc();
    d.handlers.event = count_event;
    d.event_types = KRAKEN_EVENT_MASK(KRAKEN_EVENT_STATE_CHANGE);
    kraken_module_connect_options o;
    kraken_module_connect_options_init(&o, KRAKEN_MODULE_CONNECT_OPTIONS_VERSION);
    o.socket_path = r->path;
    o.service_id = "power";
    kraken_module *m = NULL;
    r->rc_connect = kraken_module_connect(&m, b, &d, &o, NULL, NULL);
    if (r->rc_connect == 0) {
        kraken_uuid id = mh_node_id(1);
        kraken_node *n = NULL;
        r->rc_query = kraken_module_query(m, KRAKEN_CFG, &id, &n);
        snprintf(r->error, sizeof r->error, "%s", r->rc_query ? kraken_error_last() : "");
        kraken_node_free(n);
        for (int i = 0; i < 10 && events_seen < 2; i++)
            event_base_loop(b, EVLOOP_NONBLOCK);
        r->events = events_seen;
    }
    kraken_module_free(m);
    event_base_free(b);
    return NULL;
}

static void write_frame(int fd, const kraken_module_Frame *f, size_t from, size_t to)
{
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(kraken__module_frame_encode(f, &buf, &len), 0);
    if (to > len)
        to = len;
    ck_assert_int_eq(write(fd, buf + from, to - from), (ssize_t)(to - from));
    free(buf);
}

static void read_frame(int fd, kraken_module_Frame *f)
{
    uint8_t head[4], body[65536];
    ck_assert_int_eq(recv(fd, head, 4, MSG_WAITALL), 4);
    uint32_t len = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 |
                   head[3];
    ck_assert_uint_le(len, sizeof body);
    ck_assert_int_eq(recv(fd, body, len, MSG_WAITALL), (ssize_t)len);
    ck_assert_int_eq(kraken__module_frame_decode(body, len, f), 0);
}

START_TEST(client_keeps_cut_frames)
{
    char path[160];
    snprintf(path, sizeof path, "%s/raw.sock", tmpdir);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(lfd, 1), 0);
    client_run r = {.path = path};
    events_seen = 0;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, client_thread, &r), 0);
    int fd = accept(lfd, NULL, NULL);
    ck_assert_int_ge(fd, 0);
    kraken_module_Frame f;
    read_frame(fd, &f);
    ck_assert_int_eq(f.which_msg, kraken_module_Frame_hello_tag);
    ck_assert_str_eq(f.msg.hello.service_id, "power");
    kraken__module_frame_release(&f);

    kraken_module_Frame ok = {.which_msg = kraken_module_Frame_registered_tag};
    ok.msg.registered.ok = true;
    kraken_module_Frame ev = {.which_msg = kraken_module_Frame_event_tag};
    ev.msg.event.type = KRAKEN_EVENT_STATE_CHANGE;
    ev.msg.event.url = "/RunState";
    ev.msg.event.new_value = "SYNC";
    ev.msg.event.has_new = true;
    /* Registered, one Event, and the first 7 bytes of a second, in one write */
    uint8_t *a, *b2, *c;
    size_t la, lb, lc;
    ck_assert_int_eq(kraken__module_frame_encode(&ok, &a, &la), 0);
    ck_assert_int_eq(kraken__module_frame_encode(&ev, &b2, &lb), 0);
    ck_assert_int_eq(kraken__module_frame_encode(&ev, &c, &lc), 0);
    uint8_t burst[512];
    memcpy(burst, a, la);
    memcpy(burst + la, b2, lb);
    memcpy(burst + la + lb, c, 7);
    ck_assert_int_eq(write(fd, burst, la + lb + 7), (ssize_t)(la + lb + 7));
    free(a);
    free(b2);
    free(c);
    /* the Query; then the rest of the cut Event and the Reply */
    read_frame(fd, &f);
    ck_assert_int_eq(f.which_msg, kraken_module_Frame_query_tag);
    uint64_t seq = f.msg.query.seq;
    kraken__module_frame_release(&f);
    write_frame(fd, &ev, 7, SIZE_MAX);
    kraken_node *n;
    kraken_uuid id = mh_node_id(1);
    ck_assert_int_eq(kraken_node_new(&n, &id), 0);
    ck_assert_int_eq(kraken_node_set_text(n, "/RunState", "SYNC"), 0);
    uint8_t *enc;
    size_t elen;
    ck_assert_int_eq(kraken_node_encode(n, &enc, &elen), 0);
    kraken_node_free(n);
    kraken_module_Frame reply = {.which_msg = kraken_module_Frame_reply_tag};
    reply.msg.reply.seq = seq;
    reply.msg.reply.node = malloc(PB_BYTES_ARRAY_T_ALLOCSIZE(elen));
    reply.msg.reply.node->size = (pb_size_t)elen;
    memcpy(reply.msg.reply.node->bytes, enc, elen);
    free(enc);
    write_frame(fd, &reply, 0, SIZE_MAX);
    free(reply.msg.reply.node);
    pthread_join(t, NULL);
    close(fd);
    close(lfd);
    unlink(path);
    ck_assert_int_eq(r.rc_connect, 0);
    ck_assert_msg(r.rc_query == 0, "query: %s", r.error);
    ck_assert_int_eq(r.events, 2);
}
END_TEST

static Suite *proto_suite(void)
{
    Suite *s = suite_create("module_proto");
    TCase *tc = tcase_create("socket");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, external_cold_to_sync);
    tcase_add_test(tc, external_config_pushed);
    tcase_add_test(tc, external_bad_frames);
    tcase_add_test(tc, external_register_refused);
    tcase_add_test(tc, external_wrong_uid);
    tcase_add_test(tc, external_killed_mid_mutation);
    tcase_add_test(tc, external_reconnects);
    tcase_add_test(tc, client_refusals);
    tcase_add_test(tc, server_socket_in_use);
    tcase_add_test(tc, client_keeps_cut_frames);
    suite_add_tcase(s, tc);
    return s;
}

KRAKEN_TEST_MAIN(proto_suite)
