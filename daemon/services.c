/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * services.c: kraken-daemon's service manager (SPEC 7.3).
 *
 * Service instances of serviceinstances.<id> with a `command` are external
 * module processes: the daemon declares the service on its module socket
 * (kraken_module_server_expect), and starts and stops the process as the
 * engine asks (Cfg /Services/<id>/State). The process connects back with
 * KRAKEN_MODULE_SOCKET and KRAKEN_SERVICE_ID from its environment. Dsc says
 * INIT while it starts and RUN once the module says it is ready. A process
 * that exits while it should run is restarted after a back-off; after
 * max_crashes exits in a row (a run longer than healthy_ms breaks the row)
 * the service is ERROR with the reason (exit code or signal, last log line),
 * until its Cfg changes. Its stdout (NOTICE) and stderr (WARNING) go to the
 * daemon's log under the service id. Each process leads its own process group, which is what
 * SIGTERM and, after the grace period, SIGKILL go to; PR_SET_PDEATHSIG takes
 * the process down with a daemon that dies without stopping it.
 *
 * Service instances with a `module` found as <moduledir>/<module>.so (and no
 * command) are loadable modules, run in-process (kraken_module_new).
 *
 * Modules compiled into the daemon (restapi, websocket) are in-process too: a
 * table of them (kd_inproc_module, filled by main.c) says how to run an
 * instance; kd_inproc_add_named() runs the ones the config or Cfg names.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "kd.h"
#include "services.h"

extern char **environ;

typedef struct kd_proc {
    kd_services *mgr;
    kd_service_cfg cfg;   /* deep copy: id, command, args, env, cwd */
    pid_t pid;            /* 0: not running */
    bool want_run;        /* the engine asked for it (Cfg RUN) */
    bool stopping;        /* SIGTERM sent on purpose */
    bool failed;          /* ERROR after repeated crashes, until a Cfg change */
    unsigned crashes;     /* exits in a row while it should run */
    uint64_t started_ms;
    struct event *restart; /* back-off timer */
    struct event *kill;    /* grace timer: SIGKILL */
    struct event *out_ev, *err_ev;
    int out_fd, err_fd;
    char out_buf[1024], err_buf[1024];
    size_t out_len, err_len;
    char last_line[256];
    struct kd_proc *next;
} kd_proc;

typedef struct kd_loaded {
    kraken_module_library *lib;
    kraken_module *module;
    struct kd_loaded *next;
} kd_loaded;

struct kd_services {
    kraken_engine *engine;
    struct event_base *base;
    kraken_module_server *server;
    kd_services_options opts;
    char *module_dir;
    struct event *sigchld;
    kraken_subscription *cfg_changes;
    kd_proc *procs;
    kd_loaded *loaded;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static struct timeval ms_tv(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000 * 1000)};
    return tv;
}

static void set_state(kd_proc *p, kraken_service_state state, const char *msg)
{
    kraken_service *svc = kraken_module_server_service(p->mgr->server, p->cfg.id);
    if (svc && kraken_service_set_state(svc, state, msg) < 0) {
        kd_log(KRAKEN_LOG_ERROR, p->cfg.id, "cannot set the service state: %s",
               kraken_error_last());
        kraken_error_clear();
    }
}

static const char *dsc_state_name(kd_proc *p)
{
    static char buf[32];
    char url[256];
    snprintf(url, sizeof url, "/Services/%s/State", p->cfg.id);
    kraken_value v = KRAKEN_VALUE_INIT;
    char *text = NULL;
    buf[0] = '\0';
    if (kraken_store_get_value(kraken_engine_store(p->mgr->engine), KRAKEN_DSC,
                               kraken_engine_self_id(p->mgr->engine), url, &v) == 0 &&
        kraken_value_format(&v, &text) == 0)
        snprintf(buf, sizeof buf, "%s", text);
    free(text);
    kraken_value_clear(&v);
    kraken_error_clear();
    return buf;
}

/* ---- the process's output -> the daemon's log ----------------------------------------------- */

static void log_lines(kd_proc *p, char *buf, size_t *len, int level, bool flush)
{
    char *start = buf, *nl;
    while ((nl = memchr(start, '\n', *len - (size_t)(start - buf)))) {
        *nl = '\0';
        if (nl > start) {
            kd_log(level, p->cfg.id, "%s", start);
            snprintf(p->last_line, sizeof p->last_line, "%s", start);
        }
        start = nl + 1;
    }
    size_t rest = *len - (size_t)(start - buf);
    /* A line longer than the buffer, or the tail at exit, is logged as it is. */
    if (rest && (flush || rest == sizeof p->out_buf - 1)) {
        start[rest] = '\0';
        kd_log(level, p->cfg.id, "%s", start);
        snprintf(p->last_line, sizeof p->last_line, "%s", start);
        rest = 0;
    }
    memmove(buf, start, rest);
    *len = rest;
}

static void close_output(kd_proc *p, bool is_err)
{
    struct event **ev = is_err ? &p->err_ev : &p->out_ev;
    int *fd = is_err ? &p->err_fd : &p->out_fd;
    if (*ev)
        event_free(*ev);
    *ev = NULL;
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
    if (is_err)
        log_lines(p, p->err_buf, &p->err_len, KRAKEN_LOG_WARNING, true);
    else
        log_lines(p, p->out_buf, &p->out_len, KRAKEN_LOG_NOTICE, true);
}

static void read_output(kd_proc *p, bool is_err)
{
    int fd = is_err ? p->err_fd : p->out_fd;
    char *buf = is_err ? p->err_buf : p->out_buf;
    size_t *len = is_err ? &p->err_len : &p->out_len;
    for (;;) {
        ssize_t n = read(fd, buf + *len, sizeof p->out_buf - 1 - *len);
        if (n > 0) {
            *len += (size_t)n;
            log_lines(p, buf, len, is_err ? KRAKEN_LOG_WARNING : KRAKEN_LOG_NOTICE, false);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        close_output(p, is_err); /* EOF or error */
        return;
    }
}

static void on_stdout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    read_output(arg, false);
}

static void on_stderr(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    read_output(arg, true);
}

/* ---- start ---------------------------------------------------------------------------------- */

/* In the child, between fork and exec: only async-signal-safe calls. */
static void child_exec(kd_proc *p, int out_w, int err_w, char **argv, char **envp)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setpgid(0, 0);
    /* The daemon ignores SIGPIPE: a module starts with default dispositions and no mask. */
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0)
        dup2(devnull, STDIN_FILENO);
    dup2(out_w, STDOUT_FILENO);
    dup2(err_w, STDERR_FILENO);
    if (p->cfg.cwd && chdir(p->cfg.cwd) < 0) {
        static const char msg[] = "cannot change to the working directory\n";
        if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0)
            _exit(126);
        _exit(126);
    }
    execve(argv[0], argv, envp);
    static const char msg[] = "cannot execute the command\n";
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0)
        _exit(127);
    _exit(127);
}

/* The child's environment: the daemon's, the socket and service id, then the config's env. */
static char **build_env(kd_proc *p)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = calloc(n + p->cfg.n_env + 3, sizeof *envp);
    if (!envp)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "KRAKEN_MODULE_SOCKET=", 21) != 0 &&
            strncmp(environ[i], "KRAKEN_SERVICE_ID=", 18) != 0)
            envp[k++] = strdup(environ[i]);
    if (asprintf(&envp[k++], "KRAKEN_MODULE_SOCKET=%s",
                 kraken_module_server_path(p->mgr->server)) < 0)
        envp[k - 1] = NULL;
    if (asprintf(&envp[k++], "KRAKEN_SERVICE_ID=%s", p->cfg.id) < 0)
        envp[k - 1] = NULL;
    for (size_t i = 0; i < p->cfg.n_env; i++)
        envp[k++] = strdup(p->cfg.env[i]);
    return envp;
}

static void free_strv(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* Resolve the command like a shell (PATH) here, so the child only calls execve. */
static char *resolve_command(const char *cmd)
{
    if (strchr(cmd, '/'))
        return strdup(cmd);
    const char *path = getenv("PATH");
    for (const char *d = path ? path : "/usr/bin:/bin"; d && *d;) {
        const char *end = strchr(d, ':');
        size_t len = end ? (size_t)(end - d) : strlen(d);
        char *full = NULL;
        if (asprintf(&full, "%.*s/%s", (int)len, d, cmd) >= 0) {
            if (access(full, X_OK) == 0)
                return full;
            free(full);
        }
        d = end ? end + 1 : NULL;
    }
    return strdup(cmd);
}

static int spawn(kd_proc *p)
{
    int out_pipe[2], err_pipe[2];
    if (pipe2(out_pipe, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(err_pipe, O_CLOEXEC) < 0) {
        close(out_pipe[0]);
        close(out_pipe[1]);
        return -1;
    }
    char **argv = calloc(p->cfg.n_args + 2, sizeof *argv);
    char **envp = build_env(p);
    if (argv && (argv[0] = resolve_command(p->cfg.command)))
        for (size_t i = 0; i < p->cfg.n_args; i++)
            argv[i + 1] = p->cfg.args[i];
    pid_t pid = argv && argv[0] && envp ? fork() : -1;
    if (pid == 0)
        child_exec(p, out_pipe[1], err_pipe[1], argv, envp);
    int saved = errno;
    if (argv)
        free(argv[0]);
    free(argv);
    free_strv(envp);
    close(out_pipe[1]);
    close(err_pipe[1]);
    if (pid < 0) {
        close(out_pipe[0]);
        close(err_pipe[0]);
        errno = saved;
        return -1;
    }
    setpgid(pid, pid); /* also here: no race with a kill right after the fork */
    p->pid = pid;
    p->stopping = false;
    p->started_ms = mono_ms();
    p->last_line[0] = '\0';
    p->out_fd = out_pipe[0];
    p->err_fd = err_pipe[0];
    p->out_len = p->err_len = 0;
    evutil_make_socket_nonblocking(p->out_fd);
    evutil_make_socket_nonblocking(p->err_fd);
    p->out_ev = event_new(p->mgr->base, p->out_fd, EV_READ | EV_PERSIST, on_stdout, p);
    p->err_ev = event_new(p->mgr->base, p->err_fd, EV_READ | EV_PERSIST, on_stderr, p);
    if (p->out_ev)
        event_add(p->out_ev, NULL);
    if (p->err_ev)
        event_add(p->err_ev, NULL);
    kd_log(KRAKEN_LOG_NOTICE, p->cfg.id, "started %s (pid %ld)", p->cfg.command, (long)pid);
    return 0;
}

static void start_now(kd_proc *p)
{
    if (p->pid || !p->want_run || p->failed)
        return;
    set_state(p, KRAKEN_SERVICE_INIT, NULL);
    if (spawn(p) < 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "cannot start %s: %s", p->cfg.command, strerror(errno));
        kd_log(KRAKEN_LOG_ERROR, p->cfg.id, "%s", msg);
        p->failed = true;
        set_state(p, KRAKEN_SERVICE_ERROR, msg);
    }
}

static void on_restart(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    start_now(arg);
}

/* ---- stop ----------------------------------------------------------------------------------- */

static void on_grace_over(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kd_proc *p = arg;
    if (!p->pid)
        return;
    kd_log(KRAKEN_LOG_WARNING, p->cfg.id, "pid %ld did not stop within %llu ms: SIGKILL",
           (long)p->pid, (unsigned long long)p->mgr->opts.grace_ms);
    kill(-p->pid, SIGKILL);
}

static void stop_process(kd_proc *p)
{
    event_del(p->restart);
    if (!p->pid)
        return;
    p->stopping = true;
    kill(-p->pid, SIGTERM);
    struct timeval tv = ms_tv(p->mgr->opts.grace_ms);
    event_add(p->kill, &tv);
}

/* ---- exits ---------------------------------------------------------------------------------- */

static void describe_exit(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exited with code %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "ended (status 0x%x)", (unsigned)status);
}

static uint64_t backoff_ms(const kd_services *m, unsigned crashes)
{
    uint64_t d = m->opts.backoff_initial_ms;
    for (unsigned i = 1; i < crashes && d < m->opts.backoff_max_ms; i++)
        d *= 2;
    return d < m->opts.backoff_max_ms ? d : m->opts.backoff_max_ms;
}

static void proc_exited(kd_proc *p, int status)
{
    /* The last words first: they belong to this run. */
    if (p->out_fd >= 0)
        read_output(p, false);
    if (p->err_fd >= 0)
        read_output(p, true);
    if (p->out_fd >= 0)
        close_output(p, false);
    if (p->err_fd >= 0)
        close_output(p, true);
    event_del(p->kill);
    char how[160];
    describe_exit(status, how, sizeof how);
    pid_t pid = p->pid;
    p->pid = 0;
    if (p->stopping || !p->want_run) {
        kd_log(KRAKEN_LOG_NOTICE, p->cfg.id, "pid %ld stopped (%s)", (long)pid, how);
        p->stopping = false;
        set_state(p, KRAKEN_SERVICE_STOP, NULL);
        return;
    }
    uint64_t ran = mono_ms() - p->started_ms;
    p->crashes = ran >= p->mgr->opts.healthy_ms ? 1 : p->crashes + 1;
    char msg[512];
    snprintf(msg, sizeof msg, "%s%s%s%s", how, p->last_line[0] ? " (last line: " : "",
             p->last_line, p->last_line[0] ? ")" : "");
    if (p->crashes >= p->mgr->opts.max_crashes) {
        char err[600];
        snprintf(err, sizeof err, "crashed %u times in a row; last: %s", p->crashes, msg);
        kd_log(KRAKEN_LOG_ERROR, p->cfg.id, "pid %ld %s; not restarted until its Cfg changes",
               (long)pid, err + 0);
        p->failed = true;
        set_state(p, KRAKEN_SERVICE_ERROR, err);
        return;
    }
    uint64_t delay = backoff_ms(p->mgr, p->crashes);
    kd_log(KRAKEN_LOG_WARNING, p->cfg.id, "pid %ld %s; restart %u in %llu ms", (long)pid, msg,
           p->crashes, (unsigned long long)delay);
    set_state(p, KRAKEN_SERVICE_INIT, NULL);
    struct timeval tv = ms_tv(delay);
    event_add(p->restart, &tv);
}

static void on_sigchld(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kd_services *m = arg;
    for (kd_proc *p = m->procs; p; p = p->next) {
        int status;
        if (p->pid && waitpid(p->pid, &status, WNOHANG) == p->pid)
            proc_exited(p, status);
    }
}

/* ---- hooks from the module server ---------------------------------------------------------- */

static void hook_start(const char *service_id, void *userdata)
{
    (void)service_id;
    kd_proc *p = userdata;
    /* A Cfg change (State to RUN) clears a failure. */
    p->want_run = true;
    p->failed = false;
    p->crashes = 0;
    start_now(p);
}

static void hook_stop(const char *service_id, void *userdata)
{
    (void)service_id;
    kd_proc *p = userdata;
    p->want_run = false;
    p->failed = false;
    p->crashes = 0;
    if (p->pid)
        stop_process(p);
    else
        set_state(p, KRAKEN_SERVICE_STOP, NULL);
}

static void hook_connection(const char *service_id, bool connected, void *userdata)
{
    (void)service_id;
    kd_proc *p = userdata;
    if (connected || p->failed)
        return;
    /* Still running without its connection (or just exited): it is starting again. */
    if (strcmp(dsc_state_name(p), "ERROR") != 0 && strcmp(dsc_state_name(p), "STOP") != 0)
        set_state(p, KRAKEN_SERVICE_INIT, NULL);
}

/* Any Cfg change of /Services/<id>/... clears an ERROR left by repeated crashes. */
static void on_cfg_change(const kraken_event *ev, void *userdata)
{
    kd_services *m = userdata;
    if (ev->kind != KRAKEN_CHANGE_CFG_UPDATE || !ev->url ||
        kraken_uuid_compare(&ev->node_id, kraken_engine_self_id(m->engine)) != 0 ||
        strncmp(ev->url, "/Services/", 10) != 0)
        return;
    for (kd_proc *p = m->procs; p; p = p->next) {
        size_t len = strlen(p->cfg.id);
        if (strncmp(ev->url + 10, p->cfg.id, len) != 0 || ev->url[10 + len] != '/' || !p->failed)
            continue;
        kd_log(KRAKEN_LOG_NOTICE, p->cfg.id, "Cfg changed: the failure is cleared");
        p->failed = false;
        p->crashes = 0;
        if (p->want_run)
            start_now(p);
        else
            set_state(p, KRAKEN_SERVICE_STOP, NULL);
    }
}

/* ---- the manager ---------------------------------------------------------------------------- */

int kd_services_options_parse_uids(const char *text, uid_t **out, size_t *n, char *err,
                                   size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (!text || !*text)
        return 0;
    for (const char *s = text; *s;) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || errno || v > 0x7fffffffUL || (*end && *end != ',')) {
            snprintf(err, errlen, "moduleuids '%s': expected uid numbers separated by commas",
                     text);
            free(*out);
            *out = NULL;
            *n = 0;
            return -1;
        }
        uid_t *grown = realloc(*out, (*n + 1) * sizeof *grown);
        if (!grown) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        *out = grown;
        grown[(*n)++] = (uid_t)v;
        s = *end ? end + 1 : end;
    }
    return 0;
}

int kd_services_new(kd_services **out, kraken_engine *engine, struct event_base *base,
                    const kd_services_options *opts, char *err, size_t errlen)
{
    *out = NULL;
    kd_services *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    m->engine = engine;
    m->base = base;
    m->opts = *opts;
    if (!m->opts.max_crashes)
        m->opts.max_crashes = 5;
    if (!m->opts.backoff_initial_ms)
        m->opts.backoff_initial_ms = 1000;
    if (!m->opts.backoff_max_ms)
        m->opts.backoff_max_ms = 60000;
    if (!m->opts.healthy_ms)
        m->opts.healthy_ms = 30000;
    m->opts.socket_path = NULL; /* not kept */
    m->module_dir = opts->module_dir ? strdup(opts->module_dir) : NULL;
    const char *path = opts->socket_path ? opts->socket_path : KD_MODULE_SOCKET_DEFAULT;
    /* The default's directory is ours to make (mode 0700, like the socket's 0600). */
    if (!opts->socket_path && mkdir("/run/kraken", 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "module socket: cannot create /run/kraken: %s", strerror(errno));
        kd_services_free(m);
        return -1;
    }
    kraken_module_server_options so;
    kraken_module_server_options_init(&so, KRAKEN_MODULE_SERVER_OPTIONS_VERSION);
    so.socket_path = path;
    so.allowed_uids = opts->allowed_uids;
    so.n_allowed_uids = opts->n_allowed_uids;
    if (kraken_module_server_new(&m->server, engine, base, &so) < 0) {
        snprintf(err, errlen, "%s", kraken_error_last());
        kraken_error_clear();
        kd_services_free(m);
        return -1;
    }
    m->sigchld = evsignal_new(base, SIGCHLD, on_sigchld, m);
    kraken_subscribe_options sub = {.version = KRAKEN_SUBSCRIBE_OPTIONS_VERSION, .types = KRAKEN_EVENT_MASK(KRAKEN_EVENT_STATE_CHANGE),
                                    .url_pattern = "/Services/*"};
    if (!m->sigchld || evsignal_add(m->sigchld, NULL) < 0 ||
        kraken_bus_subscribe(kraken_engine_bus(engine), &sub, on_cfg_change, m, NULL,
                             &m->cfg_changes) < 0) {
        snprintf(err, errlen, "service manager: cannot watch child processes");
        kraken_error_clear();
        kd_services_free(m);
        return -1;
    }
    kd_log(KRAKEN_LOG_NOTICE, "modules", "module socket %s", path);
    *out = m;
    return 0;
}

static int copy_cfg(kd_service_cfg *dst, const kd_service_cfg *src)
{
    memset(dst, 0, sizeof *dst);
    dst->id = strdup(src->id);
    dst->command = strdup(src->command);
    dst->cwd = src->cwd ? strdup(src->cwd) : NULL;
    dst->args = calloc(src->n_args + 1, sizeof *dst->args);
    dst->env = calloc(src->n_env + 1, sizeof *dst->env);
    if (!dst->id || !dst->command || (src->cwd && !dst->cwd) || !dst->args || !dst->env)
        return -1;
    for (size_t i = 0; i < src->n_args; i++)
        if (!(dst->args[dst->n_args++] = strdup(src->args[i])))
            return -1;
    for (size_t i = 0; i < src->n_env; i++)
        if (!(dst->env[dst->n_env++] = strdup(src->env[i])))
            return -1;
    return 0;
}

static void proc_free(kd_proc *p)
{
    if (p->out_fd >= 0)
        close_output(p, false);
    if (p->err_fd >= 0)
        close_output(p, true);
    if (p->restart)
        event_free(p->restart);
    if (p->kill)
        event_free(p->kill);
    free(p->cfg.id);
    free(p->cfg.command);
    free(p->cfg.cwd);
    for (size_t i = 0; i < p->cfg.n_args; i++)
        free(p->cfg.args[i]);
    free(p->cfg.args);
    for (size_t i = 0; i < p->cfg.n_env; i++)
        free(p->cfg.env[i]);
    free(p->cfg.env);
    free(p);
}

static int add_process(kd_services *m, const kd_service_cfg *svc, char *err, size_t errlen)
{
    kd_proc *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->mgr = m;
    p->out_fd = p->err_fd = -1;
    if (copy_cfg(&p->cfg, svc) < 0 ||
        !(p->restart = evtimer_new(m->base, on_restart, p)) ||
        !(p->kill = evtimer_new(m->base, on_grace_over, p))) {
        proc_free(p);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    kraken_module_expect_hooks hooks = KRAKEN_MODULE_EXPECT_HOOKS_INIT(
        .start = hook_start, .stop = hook_stop, .connection = hook_connection);
    const char *module = svc->module ? svc->module : svc->id;
    if (kraken_module_server_expect(m->server, svc->id, module, &hooks, p, NULL) < 0) {
        snprintf(err, errlen, "serviceinstances.%s: %s", svc->id, kraken_error_last());
        kraken_error_clear();
        proc_free(p);
        return -1;
    }
    p->next = m->procs;
    m->procs = p;
    return 0;
}

static int add_loadable(kd_services *m, const kd_service_cfg *svc, char *err, size_t errlen)
{
    kd_loaded *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (kraken_module_library_open(&l->lib, m->module_dir, svc->module) < 0 ||
        kraken_module_new(&l->module, m->engine, kraken_module_library_descriptor(l->lib),
                          svc->id, NULL, NULL) < 0) {
        snprintf(err, errlen, "serviceinstances.%s: %s", svc->id, kraken_error_last());
        kraken_error_clear();
        kraken_module_library_close(l->lib);
        free(l);
        return -1;
    }
    kd_log(KRAKEN_LOG_NOTICE, svc->id, "loaded module %s from %s", svc->module, m->module_dir);
    l->next = m->loaded;
    m->loaded = l;
    return 0;
}

bool kd_services_wants(const kd_services_options *opts, const kd_service_cfg *svc)
{
    if (svc->command)
        return true;
    if (!svc->module || !opts->module_dir)
        return false;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.so", opts->module_dir, svc->module);
    return access(path, F_OK) == 0;
}

int kd_services_add(kd_services *m, const kd_service_cfg *svc, char *err, size_t errlen)
{
    if (svc->command)
        return add_process(m, svc, err, errlen);
    return add_loadable(m, svc, err, errlen);
}

/* Stop every process: SIGTERM, wait up to the grace period, SIGKILL what is left. */
void kd_services_stop(kd_services *m)
{
    if (!m)
        return;
    size_t running = 0;
    for (kd_proc *p = m->procs; p; p = p->next) {
        event_del(p->restart);
        p->want_run = false;
        if (p->pid) {
            p->stopping = true;
            kill(-p->pid, SIGTERM);
            running++;
        }
    }
    uint64_t deadline = mono_ms() + m->opts.grace_ms;
    while (running) {
        running = 0;
        for (kd_proc *p = m->procs; p; p = p->next) {
            int status;
            if (p->pid && waitpid(p->pid, &status, WNOHANG) == p->pid)
                proc_exited(p, status);
            running += p->pid != 0;
        }
        if (!running)
            break;
        if (mono_ms() >= deadline) {
            for (kd_proc *p = m->procs; p; p = p->next) {
                if (!p->pid)
                    continue;
                kd_log(KRAKEN_LOG_WARNING, p->cfg.id, "pid %ld did not stop within %llu ms: "
                                                      "SIGKILL",
                       (long)p->pid, (unsigned long long)m->opts.grace_ms);
                kill(-p->pid, SIGKILL);
                int status;
                if (waitpid(p->pid, &status, 0) == p->pid)
                    proc_exited(p, status);
            }
            break;
        }
        struct timespec ts = {0, 10 * 1000 * 1000}; /* shutdown only: poll the exits */
        nanosleep(&ts, NULL);
    }
}

void kd_services_free(kd_services *m)
{
    if (!m)
        return;
    kd_services_stop(m);
    kraken_subscription_remove(m->cfg_changes);
    if (m->sigchld)
        event_free(m->sigchld);
    kraken_module_server_free(m->server); /* before the procs: its hooks point at them */
    while (m->procs) {
        kd_proc *p = m->procs;
        m->procs = p->next;
        proc_free(p);
    }
    while (m->loaded) {
        kd_loaded *l = m->loaded;
        m->loaded = l->next;
        kraken_module_free(l->module);
        kraken_module_library_close(l->lib);
        free(l);
    }
    free(m->module_dir);
    free(m);
}

kraken_module_server *kd_services_server(kd_services *m)
{
    return m ? m->server : NULL;
}

/* ---- in-process modules compiled into the daemon -------------------------------------------- */

const kd_inproc_module *kd_inproc_find(const kd_inproc_module *table, size_t n,
                                       const char *module)
{
    for (size_t i = 0; module && i < n; i++)
        if (strcmp(table[i].desc->name, module) == 0)
            return &table[i];
    return NULL;
}

int kd_inproc_register_schemas(const kd_inproc_module *table, size_t n, char *err,
                               size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const char *json = table[i].desc->schemas_json;
        if (json && kraken_schema_load_json(json, strlen(json), table[i].desc->name) < 0) {
            snprintf(err, errlen, "module %s: %s", table[i].desc->name, kraken_error_last());
            kraken_error_clear();
            return -1;
        }
    }
    return 0;
}

/* Run @p service_id of @p module if the table has the module and the engine not the service. */
static int add_inproc(const kd_inproc_module *table, size_t n, void *ctx, kraken_engine *engine,
                      const char *service_id, const char *module, const char *where, char *err,
                      size_t errlen)
{
    const kd_inproc_module *m = kd_inproc_find(table, n, module);
    if (!m || kraken_engine_find_service(engine, service_id))
        return 0;
    char why[768] = "";
    if (m->add(ctx, service_id, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s%s: %s", where, service_id, why);
        return -1;
    }
    kd_log(KRAKEN_LOG_NOTICE, service_id, "in-process module %s", module);
    return 0;
}

/* The Cfg module name of the self node's service @p service_id (malloc'ed), or NULL. */
static char *cfg_module_name(kraken_engine *engine, const char *service_id)
{
    char url[300];
    snprintf(url, sizeof url, "/Services/%s/Module", service_id);
    kraken_value v = KRAKEN_VALUE_INIT;
    char *name = NULL;
    if (kraken_store_get_value(kraken_engine_store(engine), KRAKEN_CFG,
                               kraken_engine_self_id(engine), url, &v) == 0 &&
        v.type == KRAKEN_T_STRING && v.v.str.len)
        name = strdup(v.v.str.data);
    kraken_value_clear(&v);
    kraken_error_clear();
    return name;
}

int kd_inproc_add_named(const kd_inproc_module *table, size_t n, void *ctx,
                        kraken_engine *engine, const kd_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->n_services; i++) {
        const kd_service_cfg *s = &cfg->services[i];
        if (!s->command && add_inproc(table, n, ctx, engine, s->id, s->module,
                                      "serviceinstances.", err, errlen) < 0)
            return -1;
    }
    kraken_node *self = NULL;
    if (kraken_store_read(kraken_engine_store(engine), KRAKEN_CFG, kraken_engine_self_id(engine),
                          &self) < 0) {
        kraken_error_clear();
        return 0;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < kraken_node_service_count(self); i++) {
        const char *id = kraken_node_service_id(self, i);
        char *module = cfg_module_name(engine, id);
        rc = add_inproc(table, n, ctx, engine, id, module, "Cfg service ", err, errlen);
        free(module);
    }
    kraken_node_free(self);
    return rc;
}

struct kd_inproc_watch {
    const kd_inproc_module *table;
    size_t n;
    void *ctx;
    kraken_engine *engine;
    kraken_subscription *sub;
};

/* Cfg /Services/<id>/Module of the self node changed: run <id> if it is one of ours. */
static void on_service_module(const kraken_event *ev, void *userdata)
{
    kd_inproc_watch *w = userdata;
    static const char prefix[] = "/Services/";
    if (ev->kind != KRAKEN_CHANGE_CFG_UPDATE || !ev->url ||
        kraken_uuid_compare(&ev->node_id, kraken_engine_self_id(w->engine)) != 0)
        return;
    const char *id = ev->url + sizeof prefix - 1, *slash = strchr(id, '/');
    if (!slash || strcmp(slash, "/Module") != 0 || slash == id)
        return;
    char service_id[256];
    snprintf(service_id, sizeof service_id, "%.*s", (int)(slash - id), id);
    char *module = cfg_module_name(w->engine, service_id);
    char err[1024];
    if (add_inproc(w->table, w->n, w->ctx, w->engine, service_id, module, "Cfg service ", err,
                   sizeof err) < 0)
        kd_log(KRAKEN_LOG_ERROR, service_id, "%s", err);
    free(module);
}

int kd_inproc_watch_new(kd_inproc_watch **out, const kd_inproc_module *table, size_t n,
                        void *ctx, kraken_engine *engine)
{
    *out = NULL;
    kd_inproc_watch *w = calloc(1, sizeof *w);
    if (!w)
        return kraken_error_set(KRAKEN_ENOMEM, "out of memory");
    *w = (kd_inproc_watch){table, n, ctx, engine, NULL};
    kraken_subscribe_options so = {.version = KRAKEN_SUBSCRIBE_OPTIONS_VERSION,
                                   .types = KRAKEN_EVENT_MASK(KRAKEN_EVENT_STATE_CHANGE),
                                   .url_pattern = "/Services/*/Module"};
    int rc = kraken_bus_subscribe(kraken_engine_bus(engine), &so, on_service_module, w, NULL,
                                  &w->sub);
    if (rc < 0) {
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

void kd_inproc_watch_free(kd_inproc_watch *w)
{
    if (!w)
        return;
    kraken_subscription_remove(w->sub);
    free(w);
}
