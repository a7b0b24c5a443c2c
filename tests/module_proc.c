/*
 * module_proc: the testpower module as an external module process. It
 * connects to $KRAKEN_MODULE_SOCKET as $KRAKEN_SERVICE_ID, runs until the
 * connection goes, and exits 3 then (0 after a Stop). With "selftest" as
 * argument it also exercises the calls that wait for an answer (query,
 * update_cfg) and an asynchronous refusal, and logs what it got. With
 * "reconnect" it connects again after a disconnect (every 50 ms, 200 tries)
 * instead of exiting.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kraken/module.h>

#include "modules/testpower.h"

static struct event_base *base;
static bool stopped, reconnect;
static struct event *retry;
static int tries;

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kraken_module *m = arg;
    if (kraken_module_reconnect(m) == 0) {
        printf("module_proc: reconnected as %s\n", kraken_module_service_id(m));
        return;
    }
    if (++tries >= 200) {
        fprintf(stderr, "module_proc: giving up: %s\n", kraken_error_last());
        event_base_loopexit(base, NULL);
        return;
    }
    struct timeval tv = {0, 50000};
    evtimer_add(retry, &tv);
}

static void on_disconnect(kraken_module *m, const char *reason, void *userdata)
{
    (void)userdata;
    fprintf(stderr, "module_proc: disconnected: %s\n", reason);
    if (!reconnect) {
        event_base_loopexit(base, NULL);
        return;
    }
    tries = 0;
    evtimer_assign(retry, base, on_retry, m);
    struct timeval tv = {0, 50000};
    evtimer_add(retry, &tv);
}

static void on_error(kraken_module *m, int code, const char *message, void *userdata)
{
    (void)userdata;
    kraken_module_log(m, KRAKEN_LOG_WARNING, "refused (%s): %s", kraken_err_name(code), message);
}

static void selftest(kraken_module *m)
{
    kraken_uuid id;
    kraken_uuid_parse(&id, "7e57c0de-0000-4000-8000-000000000000");
    kraken_node *n = NULL;
    char *text = NULL;
    if (kraken_module_query(m, KRAKEN_CFG, &id, &n) == 0 &&
        kraken_node_get_text(n, "/RunState", &text) == 0)
        kraken_module_log(m, KRAKEN_LOG_NOTICE, "selftest query: Cfg RunState %s", text);
    else
        kraken_module_log(m, KRAKEN_LOG_ERROR, "selftest query: %s", kraken_error_last());
    free(text);
    kraken_node_free(n);
    if (kraken_module_update_cfg(m, &id, "/Nodename", "from-module") == 0)
        kraken_module_log(m, KRAKEN_LOG_NOTICE, "selftest update_cfg: ok");
    if (kraken_module_update_cfg(m, &id, "/NoSuchField", "1") < 0)
        kraken_module_log(m, KRAKEN_LOG_NOTICE, "selftest update_cfg refused: %s",
                          kraken_error_last());
    kraken_uuid absent;
    kraken_uuid_parse(&absent, "7e57c0de-0000-4000-8000-0000000000ff");
    if (kraken_module_query(m, KRAKEN_DSC, &absent, &n) < 0)
        kraken_module_log(m, KRAKEN_LOG_NOTICE, "selftest query refused: %s",
                          kraken_error_last());
    kraken_module_discover(m, &id, "/Arch", "x86_64"); /* refused asynchronously: on_error */
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    base = event_base_new();
    kraken_module_connect_options o;
    kraken_module_connect_options_init(&o, KRAKEN_MODULE_CONNECT_OPTIONS_VERSION);
    o.on_disconnect = on_disconnect;
    o.on_error = on_error;
    testpower_stats stats = {0};
    kraken_module *m;
    if (kraken_module_connect(&m, base, testpower_desc(), &o, &stats, NULL) < 0) {
        fprintf(stderr, "module_proc: %s\n", kraken_error_last());
        return 2;
    }
    printf("module_proc: connected as %s\n", kraken_module_service_id(m));
    reconnect = argc > 1 && strcmp(argv[1], "reconnect") == 0;
    retry = calloc(1, event_get_struct_event_size());
    if (argc > 1 && strcmp(argv[1], "selftest") == 0)
        selftest(m);
    event_base_dispatch(base);
    stopped = stats.stops > 0;
    if (reconnect)
        evtimer_del(retry);
    free(retry);
    kraken_module_free(m);
    event_base_free(base);
    return stopped ? 0 : 3;
}
