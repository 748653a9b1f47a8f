/*
 * invoker_instance.c - one worker process per instance, each with its own Runtime API server
 * on 127.0.0.1, its stdout/stderr captured as the function's log stream, and (where the
 * machine allows) its own cgroup enforcing MemorySize and a CPU share.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <jansson.h>

#include "invoker/invoker_internal.h"

extern char **environ;

/* ---------------------------------------------------------------------------------------- */
/* cgroups                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, strlen(text));
    int err = n < 0 ? -errno : 0;
    close(fd);
    return err;
}

static bool file_has_word(const char *path, const char *word)
{
    char buf[512];
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n"))
        if (strcmp(tok, word) == 0)
            return true;
    return false;
}

/*
 * Removes the cgroups a broker that died without cleaning up (SIGKILL) left under root:
 * "sluice-<pid>" folders whose pid is gone, with their per-instance "i<n>" children.
 */
static void cgroup_sweep_stale(const char *root)
{
    DIR *d = opendir(root);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int pid;
        if (sscanf(e->d_name, "sluice-%d", &pid) != 1 || pid <= 0 || pid == (int)getpid())
            continue;
        if (kill(pid, 0) == 0 || errno != ESRCH)
            continue;
        char dir[600];
        snprintf(dir, sizeof(dir), "%s/%s", root, e->d_name);
        DIR *sub = opendir(dir);
        if (sub) {
            struct dirent *c;
            while ((c = readdir(sub)) != NULL) {
                if (c->d_name[0] != 'i')
                    continue;
                char leaf[900];
                snprintf(leaf, sizeof(leaf), "%s/%s", dir, c->d_name);
                rmdir(leaf);
            }
            closedir(sub);
        }
        if (rmdir(dir) == 0)
            sl_info("invoker", "removed stale cgroup %s", dir);
    }
    closedir(d);
}

/*
 * Finds a place for per-instance cgroups: cgroup v2 with the memory controller delegable, or
 * the v1 memory hierarchy (and the v1 cpu one for the CPU share). Says once, at start-up, when
 * neither works, because then MemorySize is only reported, not enforced.
 */
void inv_cgroup_probe(inv_invoker *inv)
{
    char path[256];
    inv->cg_mode = 0;
    cgroup_sweep_stale("/sys/fs/cgroup");
    cgroup_sweep_stale("/sys/fs/cgroup/memory");
    cgroup_sweep_stale("/sys/fs/cgroup/cpu");
    if (file_has_word("/sys/fs/cgroup/cgroup.controllers", "memory")) {
        snprintf(path, sizeof(path), "/sys/fs/cgroup/sluice-%d", (int)getpid());
        if ((mkdir(path, 0755) == 0 || errno == EEXIST) &&
            write_file("/sys/fs/cgroup/cgroup.subtree_control", "+memory") == 0) {
            char sub[400];
            snprintf(sub, sizeof(sub), "%s/cgroup.subtree_control", path);
            write_file(sub, "+memory +cpu");
            snprintf(inv->cg_root, sizeof(inv->cg_root), "%s", path);
            inv->cg_mode = 1;
            sl_info("invoker", "cgroup v2 at %s: MemorySize is enforced (memory.max), CPU in "
                    "proportion to memory", path);
            return;
        }
        rmdir(path);
    }
    snprintf(path, sizeof(path), "/sys/fs/cgroup/memory/sluice-%d", (int)getpid());
    if (mkdir(path, 0755) == 0 || errno == EEXIST) {
        char probe[400];
        snprintf(probe, sizeof(probe), "%s/memory.limit_in_bytes", path);
        if (access(probe, W_OK) == 0) {
            snprintf(inv->cg_root, sizeof(inv->cg_root), "%s", path);
            inv->cg_mode = 2;
            snprintf(path, sizeof(path), "/sys/fs/cgroup/cpu/sluice-%d", (int)getpid());
            if (mkdir(path, 0755) == 0 || errno == EEXIST)
                snprintf(inv->cg_cpu_root, sizeof(inv->cg_cpu_root), "%s", path);
            sl_info("invoker", "cgroup v1 at %s: MemorySize is enforced (memory.limit_in_bytes)%s",
                    inv->cg_root, inv->cg_cpu_root[0] ? ", CPU in proportion to memory" : "");
            return;
        }
        rmdir(path);
    }
    sl_warn("invoker", "no writable cgroup memory controller: MemorySize is not enforced "
            "here, only Max Memory Used is measured");
}

void inv_cgroup_cleanup(inv_invoker *inv)
{
    if (inv->cg_mode)
        rmdir(inv->cg_root);
    if (inv->cg_cpu_root[0])
        rmdir(inv->cg_cpu_root);
}

/* Creates the instance's cgroup and sets its limits. Runs in the parent before fork. */
static void cgroup_create(struct inv_instance *in, unsigned long serial)
{
    inv_invoker *inv = in->fn->inv;
    char path[400];
    char val[64];
    long long bytes = (long long)in->fn->cfg.memory_mb * 1024 * 1024;
    /* Lambda gives one vCPU at 1,769 MB; the quota is that share of one CPU per period. */
    long long period = 100000;
    long long quota = (long long)in->fn->cfg.memory_mb * period / 1769;
    if (quota < 1000)
        quota = 1000;
    in->cgroup[0] = '\0';
    if (!inv->cg_mode)
        return;
    snprintf(in->cgroup, sizeof(in->cgroup), "%s/i%lu", inv->cg_root, serial);
    if (mkdir(in->cgroup, 0755) != 0 && errno != EEXIST) {
        in->cgroup[0] = '\0';
        return;
    }
    snprintf(val, sizeof(val), "%lld", bytes);
    if (inv->cg_mode == 1) {
        snprintf(path, sizeof(path), "%s/memory.max", in->cgroup);
        write_file(path, val);
        snprintf(path, sizeof(path), "%s/memory.swap.max", in->cgroup);
        write_file(path, "0");
        snprintf(path, sizeof(path), "%s/cpu.max", in->cgroup);
        snprintf(val, sizeof(val), "%lld %lld", quota, period);
        write_file(path, val);
    } else {
        snprintf(path, sizeof(path), "%s/memory.limit_in_bytes", in->cgroup);
        write_file(path, val);
        snprintf(path, sizeof(path), "%s/memory.memsw.limit_in_bytes", in->cgroup);
        write_file(path, val);
        if (inv->cg_cpu_root[0]) {
            snprintf(path, sizeof(path), "%s/i%lu", inv->cg_cpu_root, serial);
            if (mkdir(path, 0755) == 0 || errno == EEXIST) {
                char f[480];
                snprintf(f, sizeof(f), "%s/cpu.cfs_period_us", path);
                snprintf(val, sizeof(val), "%lld", period);
                write_file(f, val);
                snprintf(f, sizeof(f), "%s/cpu.cfs_quota_us", path);
                snprintf(val, sizeof(val), "%lld", quota);
                write_file(f, val);
            }
        }
    }
}

static void cgroup_remove(struct inv_instance *in)
{
    if (!in->cgroup[0])
        return;
    rmdir(in->cgroup);
    inv_invoker *inv = in->fn->inv;
    if (inv->cg_mode == 2 && inv->cg_cpu_root[0]) {
        const char *leaf = strrchr(in->cgroup, '/');
        char path[400];
        snprintf(path, sizeof(path), "%s%s", inv->cg_cpu_root, leaf ? leaf : "");
        rmdir(path);
    }
    in->cgroup[0] = '\0';
}

/* Peak memory of the instance in MB: the cgroup's peak when we have one, else VmHWM. */
static long max_memory_used_mb(struct inv_instance *in)
{
    char path[400], buf[256];
    long long bytes = -1;
    if (in->cgroup[0]) {
        if (in->cg_peak_fd < 0) {
            snprintf(path, sizeof(path), "%s/%s", in->cgroup,
                     in->fn->inv->cg_mode == 1 ? "memory.peak" : "memory.max_usage_in_bytes");
            in->cg_peak_fd = open(path, O_RDONLY | O_CLOEXEC);
        }
        if (in->cg_peak_fd >= 0) {
            ssize_t k = pread(in->cg_peak_fd, buf, sizeof(buf) - 1, 0);
            if (k > 0) {
                buf[k] = 0;
                bytes = atoll(buf);
            }
        }
    }
    if (bytes < 0 && in->pid > 0) {
        snprintf(path, sizeof(path), "/proc/%d/status", (int)in->pid);
        FILE *f = fopen(path, "re");
        if (f) {
            while (fgets(buf, sizeof(buf), f))
                if (strncmp(buf, "VmHWM:", 6) == 0)
                    bytes = atoll(buf + 6) * 1024;
            fclose(f);
        }
    }
    if (bytes < 0)
        return 0;
    return (long)((bytes + 1024 * 1024 - 1) / (1024 * 1024));
}

/* ---------------------------------------------------------------------------------------- */
/* Log stream                                                                               */
/* ---------------------------------------------------------------------------------------- */

void inv_instance_log(struct inv_instance *in, const char *line, size_t len)
{
    if (in->logfile_fd >= 0) {
        evbuffer_add(in->logq, line, len);
        evbuffer_add(in->logq, "\n", 1);
    }
    struct inv_call *c = in->call;
    if (c && c->log_tail) {
        evbuffer_add(c->log_tail, line, len);
        evbuffer_add(c->log_tail, "\n", 1);
        size_t have = evbuffer_get_length(c->log_tail);
        if (have > INV_LOG_TAIL_MAX * 2)
            evbuffer_drain(c->log_tail, have - INV_LOG_TAIL_MAX);
    }
}

/* Reads what the worker wrote, splits it into lines. Returns false once the pipe is closed. */
static bool log_drain(struct inv_instance *in)
{
    char buf[8192];
    for (;;) {
        ssize_t n = read(in->log_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK;
        if (n == 0) {
            if (in->linelen) {
                inv_instance_log(in, in->linebuf, in->linelen);
                in->linelen = 0;
            }
            return false;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n' || in->linelen == sizeof(in->linebuf)) {
                inv_instance_log(in, in->linebuf, in->linelen);
                in->linelen = 0;
                if (buf[i] == '\n')
                    continue;
            }
            in->linebuf[in->linelen++] = buf[i];
        }
    }
}

/* Writes the queued log lines to the stream file. The log is best effort: a full disk must
 * not fail invocations, so what cannot be written is dropped. */
static void log_flush(struct inv_instance *in)
{
    while (in->logq && in->logfile_fd >= 0 && evbuffer_get_length(in->logq) > 0)
        if (evbuffer_write(in->logq, in->logfile_fd) <= 0)
            break;
    if (in->logq)
        evbuffer_drain(in->logq, evbuffer_get_length(in->logq));
}

static void on_log_flush(evutil_socket_t fd, short what, void *arg)
{
    log_flush(arg);
}

/*
 * Log writes are batched: at most every 20 ms, or at once past 64 KB, so a busy instance
 * costs one write per batch rather than one per invocation.
 */
static void log_schedule_flush(struct inv_instance *in)
{
    size_t n = in->logq ? evbuffer_get_length(in->logq) : 0;
    if (n == 0)
        return;
    if (n >= 64 * 1024 || !in->logflush_ev) {
        log_flush(in);
        return;
    }
    if (!evtimer_pending(in->logflush_ev, NULL)) {
        struct timeval tv = {0, 20000};
        evtimer_add(in->logflush_ev, &tv);
    }
}

static void log_close(struct inv_instance *in)
{
    if (in->log_ev) {
        event_free(in->log_ev);
        in->log_ev = NULL;
    }
    if (in->log_fd >= 0) {
        close(in->log_fd);
        in->log_fd = -1;
    }
}

static void on_log_readable(evutil_socket_t fd, short what, void *arg)
{
    struct inv_instance *in = arg;
    if (!log_drain(in))
        log_close(in);
    log_schedule_flush(in);
}

/* Opens <state>/logs/<fn>/<yyyy>-<mm>-<dd>-<hex>.log and sets the Lambda stream name. */
static int open_log_stream(struct inv_instance *in)
{
    inv_invoker *inv = in->fn->inv;
    char dir[1024], path[1200], id[37];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    sl_uuid4(id);
    char hex[33];
    size_t h = 0;
    for (size_t i = 0; id[i] && h < 32; i++)
        if (id[i] != '-')
            hex[h++] = id[i];
    hex[h] = '\0';
    snprintf(in->stream, sizeof(in->stream), "%04d/%02d/%02d/[$LATEST]%s", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, hex);
    snprintf(dir, sizeof(dir), "%s/logs", inv->state_dir);
    mkdir(dir, 0755);
    snprintf(dir, sizeof(dir), "%s/logs/%s", inv->state_dir, in->fn->cfg.name);
    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/%04d-%02d-%02d-%s.log", dir, tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, hex);
    in->logfile_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (in->logfile_fd < 0) {
        sl_warn("invoker", "%s: cannot open log stream %s: %s", in->fn->cfg.name, path,
                strerror(errno));
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Runtime API server                                                                       */
/* ---------------------------------------------------------------------------------------- */


/* The Runtime API's 202 {"status":"OK"}, without building JSON each time. */
static void reply_accepted(struct evhttp_request *req)
{
    static const char ok[] = "{\"status\":\"OK\"}";
    evbuffer_add(evhttp_request_get_output_buffer(req), ok, sizeof(ok) - 1);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evhttp_send_reply(req, 202, "Accepted", NULL);
}

static void reply_json(struct evhttp_request *req, int code, const char *reason,
                       const char *error_type, const char *message)
{
    struct evbuffer *b = evbuffer_new();
    json_t *o = error_type ? json_pack("{s:s,s:s}", "errorMessage", message, "errorType",
                                       error_type)
                           : json_pack("{s:s}", "status", message);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (b && s)
        evbuffer_add(b, s, strlen(s));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evhttp_send_reply(req, code, reason, b);
    free(s);
    json_decref(o);
    if (b)
        evbuffer_free(b);
}

/* The runtime's long poll went away (connection closed) while we held it. */
static void on_next_conn_closed(struct evhttp_connection *conn, void *arg)
{
    struct inv_instance *in = arg;
    if (in->next_req && evhttp_request_get_connection(in->next_req) == conn) {
        in->next_req = NULL;
        if (in->state == INST_IDLE)
            in->state = INST_RETURNING; /* it will call /next again, or exit */
    }
}

void inv_instance_assign(struct inv_instance *in, struct inv_call *call)
{
    struct evhttp_request *req = in->next_req;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    inv_invoker *inv = in->fn->inv;
    char num[32];

    in->next_req = NULL;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
    if (in->idle_ev)
        event_del(in->idle_ev);
    in->state = INST_BUSY;
    in->call = call;
    call->inst = in;
    call->start_ns = sl_mono_ns();
    call->deadline_ms = sl_now_ms() + (int64_t)in->fn->cfg.timeout_s * 1000;

    evhttp_add_header(h, "Lambda-Runtime-Aws-Request-Id", call->id);
    snprintf(num, sizeof(num), "%lld", (long long)call->deadline_ms);
    evhttp_add_header(h, "Lambda-Runtime-Deadline-Ms", num);
    evhttp_add_header(h, "Lambda-Runtime-Invoked-Function-Arn", in->fn->arn);
    evhttp_add_header(h, "Lambda-Runtime-Trace-Id", call->trace_id);
    if (call->client_context)
        evhttp_add_header(h, "Lambda-Runtime-Client-Context", call->client_context);
    evhttp_add_header(h, "Content-Type", "application/json");

    char line[160];
    int n = snprintf(line, sizeof(line), "START RequestId: %s Version: $LATEST", call->id);
    inv_instance_log(in, line, (size_t)n);

    struct timeval tv = {in->fn->cfg.timeout_s, 0};
    evtimer_add(call->timeout_ev, &tv);

    evbuffer_add(evhttp_request_get_output_buffer(req), call->payload, call->len);
    evhttp_send_reply(req, 200, "OK", NULL);
    (void)inv;
}

/* Writes END and REPORT for the call the instance held. */
static void log_report(struct inv_instance *in, struct inv_call *call, double duration_ms)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "END RequestId: %s", call->id);
    inv_instance_log(in, line, (size_t)n);
    long billed = (long)duration_ms + 1;
    if ((double)(billed - 1) == duration_ms)
        billed = (long)duration_ms;
    if (billed < 1)
        billed = 1;
    n = snprintf(line, sizeof(line),
                 "REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %ld ms\t"
                 "Memory Size: %d MB\tMax Memory Used: %ld MB",
                 call->id, duration_ms, billed, in->fn->cfg.memory_mb, max_memory_used_mb(in));
    if (!in->init_reported && call->cold) {
        n += snprintf(line + n, sizeof(line) - (size_t)n, "\tInit Duration: %.2f ms",
                      in->init_ms);
        in->init_reported = true;
    }
    inv_instance_log(in, line, (size_t)n);
}

/* Ends the instance's current call with st. The instance's own state is set by the caller. */
static void finish_call(struct inv_instance *in, enum inv_status st, const uint8_t *body,
                        size_t len, const char *error_type)
{
    struct inv_call *call = in->call;
    if (!call)
        return;
    /* X-Amz-Log-Result must hold what the handler printed before answering: read the pipe
     * now. Without a tail wanted, the loop reads it as usual (one read syscall saved per
     * invocation; a handler's last lines may then follow END in the stream by a few ms). */
    if (call->want_log_tail && in->log_fd >= 0 && !log_drain(in))
        log_close(in);
    double ms = (double)(sl_mono_ns() - call->start_ns) / 1e6;
    log_report(in, call, ms);
    in->call = NULL;
    call->inst = NULL;
    inv_sched_call_finished(call, st, body, len, error_type);
    log_schedule_flush(in);
}

/* The instance's invocation passed its Timeout: kill the instance, fail the invocation. */
void inv_instance_timeout(struct inv_instance *in)
{
    struct inv_call *call = in->call;
    if (!call)
        return;
    char msg[200];
    snprintf(msg, sizeof(msg), "RequestId: %s Error: Task timed out after %d.00 seconds", call->id,
             in->fn->cfg.timeout_s);
    inv_instance_log(in, msg, strlen(msg));
    sl_info("invoker", "%s: invocation %s timed out after %d s; killing instance %d",
            in->fn->cfg.name, call->id, in->fn->cfg.timeout_s, (int)in->pid);
    json_t *o = json_pack("{s:s,s:s}", "errorMessage", msg, "errorType", "Sandbox.Timedout");
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    inv_instance_kill(in);
    finish_call(in, INV_TIMEOUT, (const uint8_t *)(s ? s : "{}"), s ? strlen(s) : 2,
                "Sandbox.Timedout");
    free(s);
    json_decref(o);
}

static const char *path_after(const char *uri, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(uri, prefix, n) == 0 ? uri + n : NULL;
}

static void handle_next(struct inv_instance *in, struct evhttp_request *req)
{
    if (in->state == INST_DEAD) {
        reply_json(req, 403, "Forbidden", "InvalidStateTransition", "instance is stopping");
        return;
    }
    if (in->next_req) {
        reply_json(req, 403, "Forbidden", "InvalidStateTransition",
                   "a /next request is already pending");
        return;
    }
    if (in->state == INST_BUSY && in->call) {
        /* The current invocation must be answered first (Runtime API: 403 wrong state). */
        reply_json(req, 403, "Forbidden", "InvalidStateTransition",
                   "the current invocation has not been answered");
        return;
    }
    if (in->state == INST_STARTING) {
        in->init_ms = (double)(sl_mono_ns() - in->spawn_ns) / 1e6;
        if (in->init_ev)
            event_del(in->init_ev);
    }
    in->next_req = req;
    in->state = INST_IDLE;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_next_conn_closed, in);
    inv_sched_instance_ready(in);
}

static struct evbuffer *body_of(struct evhttp_request *req, size_t *len)
{
    struct evbuffer *b = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(b);
    return b;
}

static void handle_result(struct inv_instance *in, struct evhttp_request *req, const char *id,
                          bool is_error)
{
    if (!in->call || strcmp(in->call->id, id) != 0) {
        reply_json(req, 400, "Bad Request", "InvalidRequestID",
                   in->call ? "request id does not match the invocation in progress"
                            : "no invocation in progress");
        return;
    }
    size_t len;
    struct evbuffer *b = body_of(req, &len);
    if (!is_error && len > INV_RESPONSE_MAX) {
        char msg[128];
        snprintf(msg, sizeof(msg), "Exceeded maximum allowed payload size (%d bytes).",
                 INV_RESPONSE_MAX);
        reply_json(req, 413, "Payload Too Large", "RequestEntityTooLarge", msg);
        json_t *o = json_pack("{s:s,s:s}", "errorMessage",
                              "Response payload size exceeded maximum allowed payload size "
                              "(6291556 bytes).",
                              "errorType", "Function.ResponseSizeTooLarge");
        char *s = json_dumps(o, JSON_COMPACT);
        in->state = INST_RETURNING;
        finish_call(in, INV_RESPONSE_TOO_LARGE, (const uint8_t *)(s ? s : "{}"),
                    s ? strlen(s) : 2, "Function.ResponseSizeTooLarge");
        free(s);
        json_decref(o);
        return;
    }
    const uint8_t *data = evbuffer_pullup(b, -1);
    if (!data)
        data = (const uint8_t *)"";
    in->state = INST_RETURNING;
    if (!is_error) {
        /* The caller's reply first: the runtime's 202 is off the critical path. */
        finish_call(in, INV_OK, data, len, NULL);
        reply_accepted(req);
        return;
    }
    const char *type =
        evhttp_find_header(evhttp_request_get_input_headers(req),
                           "Lambda-Runtime-Function-Error-Type");
    char *type_copy = strdup(type && *type ? type : "Unhandled");
    /* The body should be Lambda's error JSON; anything else is wrapped so callers always get
     * {"errorMessage","errorType"}. */
    json_error_t jerr;
    json_t *doc = len ? json_loadb((const char *)data, len, 0, &jerr) : NULL;
    if (doc && json_is_object(doc)) {
        finish_call(in, INV_FUNCTION_ERROR, data, len, type_copy ? type_copy : "Unhandled");
    } else {
        json_t *o = json_pack("{s:s%,s:s}", "errorMessage", (const char *)data, len,
                              "errorType", type_copy ? type_copy : "Unhandled");
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        finish_call(in, INV_FUNCTION_ERROR, (const uint8_t *)(s ? s : "{}"), s ? strlen(s) : 2,
                    type_copy ? type_copy : "Unhandled");
        free(s);
        json_decref(o);
    }
    /* Answered after the invocation completed, so the caller's reply is written first. */
    reply_accepted(req);
    json_decref(doc);
    free(type_copy);
}

static void handle_init_error(struct inv_instance *in, struct evhttp_request *req)
{
    if (in->state != INST_STARTING) {
        reply_json(req, 403, "Forbidden", "InvalidStateTransition",
                   "init error after initialization");
        return;
    }
    size_t len;
    struct evbuffer *b = body_of(req, &len);
    const uint8_t *data = evbuffer_pullup(b, -1);
    const char *type =
        evhttp_find_header(evhttp_request_get_input_headers(req),
                           "Lambda-Runtime-Function-Error-Type");
    free(in->init_error);
    free(in->init_error_type);
    in->init_error = strndup(data ? (const char *)data : "", len);
    in->init_error_type = strdup(type && *type ? type : "Runtime.Unknown");
    reply_accepted(req);
    char esc[300];
    sl_warn("invoker", "%s: instance %d reported an init error (%s): %s", in->fn->cfg.name,
            (int)in->pid, in->init_error_type ? in->init_error_type : "?",
            sl_log_escape(data, len, esc, sizeof(esc)));
    /* The runtime is expected to exit now; make sure it does. */
    inv_instance_kill(in);
}

static void on_runtime_request(struct evhttp_request *req, void *arg)
{
    struct inv_instance *in = arg;
    const char *uri = evhttp_request_get_uri(req);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const char *rest;


    if ((rest = path_after(uri, "/2018-06-01/runtime/invocation/")) != NULL) {
        if (strcmp(rest, "next") == 0) {
            if (cmd != EVHTTP_REQ_GET)
                goto bad_method;
            handle_next(in, req);
            return;
        }
        const char *slash = strchr(rest, '/');
        if (slash && cmd == EVHTTP_REQ_POST && (size_t)(slash - rest) < 64) {
            char id[64];
            memcpy(id, rest, (size_t)(slash - rest));
            id[slash - rest] = '\0';
            if (strcmp(slash, "/response") == 0) {
                handle_result(in, req, id, false);
                return;
            }
            if (strcmp(slash, "/error") == 0) {
                handle_result(in, req, id, true);
                return;
            }
        }
    } else if (strcmp(uri, "/2018-06-01/runtime/init/error") == 0) {
        if (cmd != EVHTTP_REQ_POST)
            goto bad_method;
        handle_init_error(in, req);
        return;
    }
    reply_json(req, 404, "Not Found", "NotFound", "unknown Runtime API path");
    return;
bad_method:
    reply_json(req, 405, "Method Not Allowed", "MethodNotAllowed", "wrong method");
}

/* ---------------------------------------------------------------------------------------- */
/* Spawn, kill, reap                                                                        */
/* ---------------------------------------------------------------------------------------- */

static void on_init_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct inv_instance *in = arg;
    if (in->state != INST_STARTING)
        return;
    sl_warn("invoker", "%s: instance %d did not call /next within %.0f s; killing it",
            in->fn->cfg.name, (int)in->pid, INV_INIT_TIMEOUT_S);
    if (!in->init_error) {
        char msg[160];
        snprintf(msg, sizeof(msg), "Init phase did not complete within %.0f seconds",
                 INV_INIT_TIMEOUT_S);
        json_t *o = json_pack("{s:s,s:s}", "errorMessage", msg, "errorType",
                              "Runtime.InitTimeout");
        in->init_error = o ? json_dumps(o, JSON_COMPACT) : NULL;
        in->init_error_type = strdup("Runtime.InitTimeout");
        json_decref(o);
    }
    inv_instance_kill(in);
}

static void on_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct inv_instance *in = arg;
    if (in->state != INST_IDLE)
        return;
    sl_debug("invoker", "%s: reaping idle instance %d", in->fn->cfg.name, (int)in->pid);
    inv_instance_kill(in);
}

/* Builds the child's environment: the inherited one minus Lambda's reserved names, then
 * Lambda's standard variables, then the function's own. */
static char **build_env(struct inv_instance *in, int port)
{
    const struct inv_function_config *fc = &in->fn->cfg;
    inv_invoker *inv = in->fn->inv;
    size_t n = 0;
    for (char **e = environ; *e; e++)
        n++;
    char **env = calloc(n + fc->env_len + 24, sizeof(char *));
    if (!env)
        return NULL;
    size_t k = 0;
    static const char *const reserved[] = {
        "AWS_LAMBDA_", "_HANDLER=", "LAMBDA_TASK_ROOT=", "LAMBDA_RUNTIME_DIR=", "AWS_REGION=",
        "AWS_DEFAULT_REGION=", "TZ=", "_X_AMZN_TRACE_ID=", NULL};
    for (char **e = environ; *e; e++) {
        bool skip = false;
        for (const char *const *r = reserved; *r; r++)
            if (strncmp(*e, *r, strlen(*r)) == 0)
                skip = true;
        if (!skip && !(env[k++] = strdup(*e)))
            goto fail;
    }
    char buf[1200];
#define PUTENV(...)                                                                          \
    do {                                                                                     \
        snprintf(buf, sizeof(buf), __VA_ARGS__);                                             \
        if (!(env[k++] = strdup(buf)))                                                       \
            goto fail;                                                                       \
    } while (0)
    PUTENV("AWS_LAMBDA_RUNTIME_API=127.0.0.1:%d", port);
    PUTENV("_HANDLER=%s", fc->handler ? fc->handler : "");
    PUTENV("LAMBDA_TASK_ROOT=%s", fc->code_dir);
    PUTENV("LAMBDA_RUNTIME_DIR=%s", fc->code_dir);
    PUTENV("AWS_LAMBDA_FUNCTION_NAME=%s", fc->name);
    PUTENV("AWS_LAMBDA_FUNCTION_VERSION=$LATEST");
    PUTENV("AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%d", fc->memory_mb);
    PUTENV("AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/%s", fc->name);
    PUTENV("AWS_LAMBDA_LOG_STREAM_NAME=%s", in->stream);
    PUTENV("AWS_LAMBDA_INITIALIZATION_TYPE=%s",
           in->provisioned ? "provisioned-concurrency" : "on-demand");
    PUTENV("AWS_REGION=%s", inv->region);
    PUTENV("AWS_DEFAULT_REGION=%s", inv->region);
    PUTENV("TZ=UTC");
#undef PUTENV
    for (size_t i = 0; i < fc->env_len; i++) {
        size_t a = strlen(fc->env[i].name), b = strlen(fc->env[i].value);
        char *s = malloc(a + b + 2);
        if (!s)
            goto fail;
        memcpy(s, fc->env[i].name, a);
        s[a] = '=';
        memcpy(s + a + 1, fc->env[i].value, b + 1);
        env[k++] = s;
    }
    env[k] = NULL;
    return env;
fail:
    for (size_t i = 0; i < k; i++)
        free(env[i]);
    free(env);
    return NULL;
}

static void free_env(char **env)
{
    if (!env)
        return;
    for (char **e = env; *e; e++)
        free(*e);
    free(env);
}

static void instance_free(struct inv_instance *in);

/*
 * Starts one instance of fn: a Runtime API server on an ephemeral loopback port, a pipe for
 * its output, a cgroup where possible, then fork+exec of the function's Command in its own
 * process group (so a timeout kills the whole tree). Returns 0 and *out (the instance is on
 * fn's list in INST_STARTING), or a negative SL_E*.
 */
int inv_instance_spawn(struct inv_fn *fn, bool provisioned, struct inv_instance **out)
{
    inv_invoker *inv = fn->inv;
    struct inv_instance *in = calloc(1, sizeof(*in));
    int pipefd[2] = {-1, -1};
    char **env = NULL;
    int err = SL_ENOMEM;
    if (!in)
        return SL_ENOMEM;
    in->fn = fn;
    in->generation = fn->generation;
    in->log_fd = -1;
    in->logfile_fd = -1;
    in->cg_peak_fd = -1;
    in->state = INST_STARTING;
    /* A provisioned instance initialises before any invocation: no call pays for its init,
     * so no REPORT line carries an Init Duration (as in Lambda). */
    in->provisioned = provisioned;
    in->init_reported = provisioned;

    /* START/END/REPORT are queued here and written once per invocation, off the path of
     * the answer (one write instead of three). */
    in->logq = evbuffer_new();
    in->http = evhttp_new(inv->base);
    if (!in->http || !in->logq)
        goto fail;
    evhttp_set_max_body_size(in->http, 64 * 1024 * 1024);
    evhttp_set_allowed_methods(in->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_gencb(in->http, on_runtime_request, in);
    evhttp_set_timeout(in->http, 24 * 3600); /* /next is a long poll */
    struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(in->http, "127.0.0.1", 0);
    if (!bound) {
        err = SL_EIO;
        goto fail;
    }
    struct sockaddr_in sa;
    socklen_t salen = sizeof(sa);
    if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&sa, &salen) != 0) {
        err = SL_EIO;
        goto fail;
    }
    in->port = ntohs(sa.sin_port);
    sl_listener_nodelay(bound);

    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        err = SL_EIO;
        goto fail;
    }
    open_log_stream(in);
    env = build_env(in, in->port);
    if (!env)
        goto fail;
    in->idle_ev = evtimer_new(inv->base, on_idle_timeout, in);
    in->logflush_ev = evtimer_new(inv->base, on_log_flush, in);
    in->init_ev = evtimer_new(inv->base, on_init_deadline, in);
    in->log_ev = event_new(inv->base, pipefd[0], EV_READ | EV_PERSIST, on_log_readable, in);
    if (!in->idle_ev || !in->init_ev || !in->log_ev || !in->logflush_ev)
        goto fail;
    cgroup_create(in, ++inv->instance_serial);

    in->spawn_ns = sl_mono_ns();
    pid_t pid = fork();
    if (pid < 0) {
        err = SL_EIO;
        goto fail;
    }
    if (pid == 0) {
        /* Child: only async-signal-safe calls from here to exec. */
        setpgid(0, 0);
        if (in->cgroup[0]) {
            char p[400], num[24];
            int len = snprintf(num, sizeof(num), "%d", (int)getpid());
            snprintf(p, sizeof(p), "%s/cgroup.procs", in->cgroup);
            int fd = open(p, O_WRONLY);
            if (fd >= 0) {
                if (write(fd, num, (size_t)len) < 0) {
                    /* best effort: without it the instance just runs unconstrained */
                }
                close(fd);
            }
            if (inv->cg_mode == 2 && inv->cg_cpu_root[0]) {
                const char *leaf = strrchr(in->cgroup, '/');
                snprintf(p, sizeof(p), "%s%s/cgroup.procs", inv->cg_cpu_root, leaf ? leaf : "");
                fd = open(p, O_WRONLY);
                if (fd >= 0) {
                    if (write(fd, num, (size_t)len) < 0) {
                    }
                    close(fd);
                }
            }
        }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        if (chdir(fn->cfg.code_dir) != 0)
            _exit(126);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        execvpe(fn->cfg.command[0], fn->cfg.command, env);
        static const char msg[] = "sluice: exec of the function's Command failed\n";
        if (write(2, msg, sizeof(msg) - 1) < 0) {
        }
        _exit(127);
    }
    /* Parent. */
    setpgid(pid, pid); /* also here, so a kill right after fork finds the group */
    in->pid = pid;
    if (in->cgroup[0]) {
        /* The child moved itself before exec; make sure, and say so when it did not work. */
        char procs[400], num[24];
        snprintf(procs, sizeof(procs), "%s/cgroup.procs", in->cgroup);
        snprintf(num, sizeof(num), "%d", (int)pid);
        int werr = write_file(procs, num);
        if (werr && werr != -ESRCH)
            sl_warn("invoker", "%s: cannot put instance %d in cgroup %s: %s; its MemorySize "
                    "is not enforced", fn->cfg.name, (int)pid, in->cgroup, strerror(-werr));
    }
    close(pipefd[1]);
    pipefd[1] = -1;
    evutil_make_socket_nonblocking(pipefd[0]);
    in->log_fd = pipefd[0];
    event_add(in->log_ev, NULL);
    struct timeval itv = {(time_t)INV_INIT_TIMEOUT_S, 0};
    evtimer_add(in->init_ev, &itv);
    free_env(env);
    in->next = fn->instances;
    fn->instances = in;
    sl_debug("invoker", "%s: started instance %d on 127.0.0.1:%d", fn->cfg.name, (int)pid,
             in->port);
    *out = in;
    return 0;

fail:
    free_env(env);
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    instance_free(in);
    return err;
}

/* Kills the instance's whole process group. The SIGCHLD handler then finishes the job. */
void inv_instance_kill(struct inv_instance *in)
{
    if (in->pid > 0 && !in->killed) {
        in->killed = true;
        kill(-in->pid, SIGKILL);
        kill(in->pid, SIGKILL);
    }
    if (in->state != INST_DEAD && in->state != INST_STARTING)
        in->state = INST_DEAD;
}

/* Called once the process has been reaped: fail what it held, unlink it, free it later. */
static void instance_exited(struct inv_instance *in, int status)
{
    struct inv_fn *fn = in->fn;
    in->exit_status = status;
    in->pid = 0;
    /* Whatever it printed last belongs to the log. */
    if (in->log_fd >= 0) {
        log_drain(in);
        log_close(in);
    }
    if (in->call) {
        char msg[200];
        const char *type = "Runtime.ExitError";
        if (WIFEXITED(status))
            snprintf(msg, sizeof(msg), "RequestId: %s Error: Runtime exited with error: exit "
                     "status %d", in->call->id, WEXITSTATUS(status));
        else
            snprintf(msg, sizeof(msg), "RequestId: %s Error: Runtime exited with error: signal: "
                     "%s", in->call->id, strsignal(WTERMSIG(status)));
        json_t *o = json_pack("{s:s,s:s}", "errorMessage", msg, "errorType", type);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        inv_instance_log(in, msg, strlen(msg));
        finish_call(in, INV_CRASH, (const uint8_t *)(s ? s : "{}"), s ? strlen(s) : 2, type);
        free(s);
        json_decref(o);
    }
    if (in->state == INST_STARTING && !in->init_error && !in->killed) {
        char msg[200];
        if (WIFEXITED(status))
            snprintf(msg, sizeof(msg), "Runtime exited with error: exit status %d",
                     WEXITSTATUS(status));
        else
            snprintf(msg, sizeof(msg), "Runtime exited with error: signal: %s",
                     strsignal(WTERMSIG(status)));
        json_t *o = json_pack("{s:s,s:s}", "errorMessage", msg, "errorType",
                              "Runtime.ExitError");
        in->init_error = o ? json_dumps(o, JSON_COMPACT) : NULL;
        in->init_error_type = strdup("Runtime.ExitError");
        json_decref(o);
        sl_warn("invoker", "%s: instance exited during init: %s", fn->cfg.name, msg);
    }
    in->state = INST_DEAD;
    inv_sched_instance_gone(in);

    /* Unlink from the function and put it in the graveyard; freed outside callbacks. */
    for (struct inv_instance **p = &fn->instances; *p; p = &(*p)->next) {
        if (*p == in) {
            *p = in->next;
            break;
        }
    }
    in->next = fn->inv->graveyard;
    fn->inv->graveyard = in;
    struct timeval zero = {0, 0};
    event_add(fn->inv->reap_ev, &zero);
}

void inv_instance_reap_children(inv_invoker *inv)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        for (struct inv_fn *fn = inv->fns; fn; fn = fn->next) {
            for (struct inv_instance *in = fn->instances; in; in = in->next) {
                if (in->pid == pid) {
                    instance_exited(in, status);
                    goto next;
                }
            }
        }
    next:;
    }
}

static void instance_free(struct inv_instance *in)
{
    if (in->pid > 0) {
        kill(-in->pid, SIGKILL);
        kill(in->pid, SIGKILL);
        waitpid(in->pid, NULL, 0);
    }
    log_flush(in);
    log_close(in);
    if (in->logflush_ev)
        event_free(in->logflush_ev);
    if (in->idle_ev)
        event_free(in->idle_ev);
    if (in->init_ev)
        event_free(in->init_ev);
    if (in->http)
        evhttp_free(in->http);
    if (in->logfile_fd >= 0)
        close(in->logfile_fd);
    if (in->cg_peak_fd >= 0)
        close(in->cg_peak_fd);
    if (in->logq)
        evbuffer_free(in->logq);
    cgroup_remove(in);
    free(in->init_error);
    free(in->init_error_type);
    free(in);
}

void inv_instance_free_deferred(inv_invoker *inv)
{
    while (inv->graveyard) {
        struct inv_instance *in = inv->graveyard;
        inv->graveyard = in->next;
        instance_free(in);
    }
}

/* Kills and frees every instance at once (shutdown). */
void inv_instance_free_all(inv_invoker *inv)
{
    for (struct inv_fn *fn = inv->fns; fn; fn = fn->next) {
        while (fn->instances) {
            struct inv_instance *in = fn->instances;
            fn->instances = in->next;
            instance_free(in);
        }
    }
    inv_instance_free_deferred(inv);
}
