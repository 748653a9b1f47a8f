/*
 * invoker_pool.c - functions at run time: concurrency accounting and throttling, the
 * scheduler that hands invocations to warm instances or starts new ones, timeouts, metrics.
 *
 * Concurrency is counted as Lambda counts it: one unit per invocation in flight. A function
 * with reserved concurrency R runs at most R at once and R is taken out of the account's
 * pool; functions without a reservation share AccountConcurrency minus every reservation.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include <jansson.h>

#include "invoker/invoker_internal.h"

const double inv_hist_bounds[INV_HIST_BUCKETS] = {1,   2.5,  5,    10,   25,    50,    100,
                                                  250, 500, 1000, 2500, 5000, 10000, 60000};

static const char *const status_names[] = {
    "OK", "FunctionError", "Timeout", "Crash", "InitError", "ResponseTooLarge", "Throttled",
    "SystemError",
};

const char *inv_status_name(enum inv_status st)
{
    if ((size_t)st < sizeof(status_names) / sizeof(status_names[0]))
        return status_names[st];
    return "?";
}

struct inv_fn *inv_fn_find(inv_invoker *inv, const char *name)
{
    for (struct inv_fn *fn = inv->fns; fn; fn = fn->next)
        if (strcmp(fn->cfg.name, name) == 0)
            return fn;
    return NULL;
}

char *inv_function_arn(inv_invoker *inv, const char *name, char *out, size_t outsz)
{
    snprintf(out, outsz, "arn:aws:lambda:%s:%s:function:%s", inv->region, inv->account_id,
             name);
    return out;
}

/* ---------------------------------------------------------------------------------------- */
/* Calls                                                                                    */
/* ---------------------------------------------------------------------------------------- */

static void call_free(struct inv_call *c)
{
    if (!c)
        return;
    if (c->timeout_ev)
        event_free(c->timeout_ev);
    if (c->log_tail)
        evbuffer_free(c->log_tail);
    free(c->payload);
    free(c->client_context);
    free(c->trace_id);
    free(c);
}

static void on_call_timeout(evutil_socket_t fd, short what, void *arg);

static bool has_capacity(inv_invoker *inv, struct inv_fn *fn)
{
    int r = fn->cfg.reserved_concurrency;
    if (r >= 0)
        return fn->inflight < r;
    return inv->unreserved_inflight < inv->account_limit - inv->reserved_sum;
}

bool inv_has_capacity(inv_invoker *inv, const char *name)
{
    struct inv_fn *fn = inv_fn_find(inv, name);
    return fn && !inv->draining && has_capacity(inv, fn);
}

int inv_capacity_listen(inv_invoker *inv, const char *fn, inv_capacity_cb cb, void *arg)
{
    struct inv_listener *l = calloc(1, sizeof(*l));
    if (!l || !(l->fn = strdup(fn))) {
        free(l);
        return SL_ENOMEM;
    }
    l->cb = cb;
    l->arg = arg;
    l->next = inv->listeners;
    inv->listeners = l;
    return 0;
}

void inv_capacity_unlisten(inv_invoker *inv, inv_capacity_cb cb, void *arg)
{
    for (struct inv_listener **p = &inv->listeners; *p;) {
        struct inv_listener *l = *p;
        if (l->cb == cb && l->arg == arg) {
            *p = l->next;
            free(l->fn);
            free(l);
        } else {
            p = &l->next;
        }
    }
}

static void pending_push(struct inv_fn *fn, struct inv_call *c)
{
    c->next = NULL;
    if (fn->pending_tail)
        fn->pending_tail->next = c;
    else
        fn->pending_head = c;
    fn->pending_tail = c;
    fn->npending++;
}

static struct inv_call *pending_pop(struct inv_fn *fn)
{
    struct inv_call *c = fn->pending_head;
    if (!c)
        return NULL;
    fn->pending_head = c->next;
    if (!fn->pending_head)
        fn->pending_tail = NULL;
    fn->npending--;
    c->next = NULL;
    return c;
}

/*
 * Completes a call: accounting, metrics, the caller's callback, free. The callback may call
 * back into the invoker (an async retry, a destination that invokes another function).
 */
static void call_complete(struct inv_call *c, enum inv_status st, const uint8_t *body,
                          size_t len, const char *error_type)
{
    inv_invoker *inv = c->inv;
    struct inv_fn *fn = c->fn;
    double ms = c->start_ns ? (double)(sl_mono_ns() - c->start_ns) / 1e6 : 0.0;

    evtimer_del(c->timeout_ev);
    fn->inflight--;
    if (fn->cfg.reserved_concurrency < 0)
        inv->unreserved_inflight--;
    fn->m.invocations++;
    if (st != INV_OK)
        fn->m.errors++;
    if (st == INV_TIMEOUT)
        fn->m.timeouts++;
    if (c->cold)
        fn->m.cold_starts++;
    fn->m.duration_sum_ms += ms;
    size_t b = 0;
    while (b < INV_HIST_BUCKETS && ms > inv_hist_bounds[b])
        b++;
    fn->m.hist[b]++;

    struct inv_result r = {
        .status = st,
        .request_id = c->id,
        .payload = body,
        .payload_len = len,
        .function_error = st == INV_OK ? NULL : "Unhandled",
        .error_type = error_type,
        .duration_ms = ms,
        .cold_start = c->cold,
    };
    char *tail = NULL;
    if (c->log_tail) {
        size_t have = evbuffer_get_length(c->log_tail);
        if (have > INV_LOG_TAIL_MAX)
            evbuffer_drain(c->log_tail, have - INV_LOG_TAIL_MAX);
        r.log_tail_len = evbuffer_get_length(c->log_tail);
        tail = malloc(r.log_tail_len + 1);
        if (tail) {
            evbuffer_remove(c->log_tail, tail, r.log_tail_len);
            tail[r.log_tail_len] = '\0';
        } else {
            r.log_tail_len = 0;
        }
        r.log_tail = tail;
    }
    c->cb(&r, c->arg);
    free(tail);
    call_free(c);
    inv_async_capacity_freed(inv, fn);
    for (struct inv_listener *l = inv->listeners; l; l = l->next)
        if (strcmp(l->fn, fn->cfg.name) == 0)
            l->cb(l->arg);
    inv_check_drained(inv);
}

/* Failures decided outside an instance (no instance could start) are completed later, on a
 * zero timer, so that no callback runs inside inv_invoke. */
struct deferred_fail {
    struct inv_call *call;
    enum inv_status st;
    char *body;
    char *type;
};

static void on_deferred_fail(evutil_socket_t fd, short what, void *arg)
{
    struct deferred_fail *d = arg;
    call_complete(d->call, d->st, (const uint8_t *)d->body, strlen(d->body), d->type);
    free(d->body);
    free(d->type);
    free(d);
}

static void fail_later(struct inv_call *c, enum inv_status st, const char *type,
                       const char *message)
{
    struct deferred_fail *d = calloc(1, sizeof(*d));
    json_t *o = json_pack("{s:s,s:s}", "errorMessage", message, "errorType", type);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (d) {
        d->call = c;
        d->st = st;
        d->body = s ? s : strdup("{}");
        d->type = strdup(type);
    }
    struct timeval zero = {0, 0};
    if (!d || !d->body || !d->type ||
        event_base_once(c->inv->base, -1, EV_TIMEOUT, on_deferred_fail, d, &zero) != 0) {
        /* Out of memory while failing: complete now rather than lose the call. */
        if (d) {
            free(d->body);
            free(d->type);
            free(d);
        }
        call_complete(c, st, (const uint8_t *)"{}", 2, type);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Scheduler                                                                                */
/* ---------------------------------------------------------------------------------------- */

static struct inv_instance *find_idle(struct inv_fn *fn)
{
    for (struct inv_instance *in = fn->instances; in; in = in->next) {
        if (in->state == INST_IDLE && in->next_req && in->generation == fn->generation)
            return in;
    }
    return NULL;
}

/* Instances that will soon ask for work: starting, or answering their last invocation. */
static int count_coming(struct inv_fn *fn, const struct inv_instance *except)
{
    int n = 0;
    for (struct inv_instance *in = fn->instances; in; in = in->next) {
        if (in == except || in->generation != fn->generation || in->killed)
            continue;
        if (in->state == INST_STARTING || in->state == INST_RETURNING ||
            (in->state == INST_IDLE && in->next_req))
            n++;
    }
    return n;
}

/* Hands pending calls to idle instances; starts instances for the rest. */
static void dispatch(struct inv_fn *fn)
{
    struct inv_instance *in;
    while (fn->pending_head && (in = find_idle(fn)) != NULL) {
        struct inv_call *c = pending_pop(fn);
        c->cold = false;
        inv_instance_assign(in, c);
    }
    int need = fn->npending - count_coming(fn, NULL);
    while (need-- > 0) {
        struct inv_instance *created;
        int err = inv_instance_spawn(fn, false, &created);
        if (err == 0)
            continue;
        sl_error("invoker", "%s: cannot start an instance: %s", fn->cfg.name, sl_strerror(err));
        /* Fail the newest pending call: the older ones may still get an instance. */
        struct inv_call *prev = NULL, *c = fn->pending_head;
        while (c && c->next) {
            prev = c;
            c = c->next;
        }
        if (!c)
            break;
        if (prev)
            prev->next = NULL;
        else
            fn->pending_head = NULL;
        fn->pending_tail = prev;
        fn->npending--;
        fail_later(c, INV_SYSTEM_ERROR, "ServiceException", "could not start an instance");
    }
}

void inv_sched_instance_ready(struct inv_instance *in)
{
    struct inv_fn *fn = in->fn;
    if (in->generation != fn->generation || (fn->inv->draining && !fn->pending_head)) {
        inv_instance_kill(in);
        return;
    }
    if (fn->pending_head) {
        struct inv_call *c = pending_pop(fn);
        /* A call that waited for a freshly started instance is a cold start. */
        c->cold = in->init_ms > 0 && !in->init_reported;
        inv_instance_assign(in, c);
        return;
    }
    int warm = 0;
    for (struct inv_instance *i = fn->instances; i; i = i->next)
        if (i->state != INST_DEAD && !i->killed)
            warm++;
    if (warm > fn->cfg.provisioned) {
        double s = fn->cfg.idle_timeout_s;
        struct timeval tv = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};
        evtimer_add(in->idle_ev, &tv);
    }
}

void inv_sched_call_finished(struct inv_call *call, enum inv_status st, const uint8_t *body,
                             size_t len, const char *error_type)
{
    call_complete(call, st, body, len, error_type);
}

void inv_sched_instance_gone(struct inv_instance *in)
{
    struct inv_fn *fn = in->fn;
    if (in->init_error) {
        free(fn->state_reason);
        fn->state_reason = strdup(in->init_error);
        /* Fail the calls no other instance is coming for, with the runtime's own error. */
        while (fn->pending_head && fn->npending > count_coming(fn, in)) {
            struct inv_call *c = pending_pop(fn);
            call_complete(c, INV_INIT_ERROR, (const uint8_t *)in->init_error,
                          strlen(in->init_error),
                          in->init_error_type ? in->init_error_type : "Runtime.InitError");
        }
        return;
    }
    if (fn->pending_head)
        dispatch(fn);
}

static void on_call_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct inv_call *c = arg;
    struct inv_instance *in = c->inst;
    if (!in)
        return;
    inv_instance_timeout(in);
}

/* ---------------------------------------------------------------------------------------- */
/* Public API                                                                               */
/* ---------------------------------------------------------------------------------------- */

int inv_invoke(inv_invoker *inv, const char *name, const void *payload, size_t len,
               const struct inv_invoke_opts *opts, inv_done_cb cb, void *arg,
               const char **reason)
{
    struct inv_fn *fn = inv_fn_find(inv, name);
    if (!fn)
        return SL_ENOENT;
    if (inv->draining)
        return SL_ECLOSED;
    if (len > INV_SYNC_PAYLOAD_MAX)
        return SL_ETOOBIG;
    if (!has_capacity(inv, fn)) {
        fn->m.throttles++;
        if (reason)
            *reason = fn->cfg.reserved_concurrency >= 0
                          ? "ReservedFunctionConcurrentInvocationLimitExceeded"
                          : "ConcurrentInvocationLimitExceeded";
        return SL_ETHROTTLED;
    }
    struct inv_call *c = calloc(1, sizeof(*c));
    if (!c)
        return SL_ENOMEM;
    c->inv = inv;
    c->fn = fn;
    c->cb = cb;
    c->arg = arg;
    c->len = len;
    c->payload = malloc(len ? len : 1);
    c->timeout_ev = evtimer_new(inv->base, on_call_timeout, c);
    if (opts && opts->request_id)
        snprintf(c->id, sizeof(c->id), "%s", opts->request_id);
    else
        sl_idgen_uuid4(&inv->ids, c->id);
    if (opts && opts->trace_id) {
        c->trace_id = strdup(opts->trace_id);
    } else {
        char tid[80], u[37];
        sl_idgen_uuid4(&inv->ids, u);
        /* Root=1-<8 hex epoch seconds>-<24 hex>;Parent=<16 hex>, as X-Ray ids look. */
        snprintf(tid, sizeof(tid), "Root=1-%08llx-%.8s%.4s%.4s%.4s%.4s;Parent=%.8s%.8s;Sampled=0",
                 (unsigned long long)(sl_now_ms() / 1000), u, u + 9, u + 14, u + 19, u + 24,
                 u + 28, u + 24);
        c->trace_id = strdup(tid);
    }
    if (opts && opts->client_context)
        c->client_context = strdup(opts->client_context);
    if (opts && opts->want_log_tail) {
        c->want_log_tail = true;
        c->log_tail = evbuffer_new();
    }
    if (!c->payload || !c->timeout_ev || !c->trace_id ||
        (opts && opts->client_context && !c->client_context) ||
        (c->want_log_tail && !c->log_tail)) {
        call_free(c);
        return SL_ENOMEM;
    }
    if (len)
        memcpy(c->payload, payload, len);
    c->queued_ns = sl_mono_ns();
    c->cold = true;
    fn->inflight++;
    if (fn->cfg.reserved_concurrency < 0)
        inv->unreserved_inflight++;
    pending_push(fn, c);
    dispatch(fn);
    return 0;
}

static void on_sigchld(evutil_socket_t fd, short what, void *arg)
{
    inv_instance_reap_children(arg);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    inv_instance_free_deferred(arg);
}

static char *dup_or(const char *s, const char *dflt)
{
    return strdup(s && *s ? s : dflt);
}

int inv_new(struct event_base *base, const struct inv_options *opts, inv_invoker **out)
{
    inv_invoker *inv = calloc(1, sizeof(*inv));
    if (!inv)
        return SL_ENOMEM;
    inv->base = base;
    inv->account_limit = opts->account_concurrency > 0 ? opts->account_concurrency : 1000;
    inv->state_dir = dup_or(opts->state_dir, ".");
    inv->region = dup_or(opts->region, "us-east-1");
    inv->account_id = dup_or(opts->account_id, "000000000000");
    inv->store = opts->store;
    sl_idgen_init(&inv->ids);
    inv->sigchld_ev = evsignal_new(base, SIGCHLD, on_sigchld, inv);
    inv->reap_ev = evtimer_new(base, on_reap, inv);
    if (!inv->state_dir || !inv->region || !inv->account_id || !inv->sigchld_ev ||
        !inv->reap_ev || event_add(inv->sigchld_ev, NULL) != 0)
        goto fail;
    int err = inv_dest_init(inv);
    if (err)
        goto fail;
    err = inv_async_init(inv);
    if (err)
        goto fail;
    inv_cgroup_probe(inv);
    *out = inv;
    return 0;
fail:
    inv_free(inv);
    return SL_ENOMEM;
}

void inv_free(inv_invoker *inv)
{
    if (!inv)
        return;
    inv_async_free(inv);
    inv_instance_free_all(inv);
    while (inv->fns) {
        struct inv_fn *fn = inv->fns;
        inv->fns = fn->next;
        struct inv_call *c;
        while ((c = pending_pop(fn)) != NULL)
            call_free(c);
        inv_function_config_clear(&fn->cfg);
        free(fn->state_reason);
        free(fn);
    }
    inv_dest_free(inv);
    inv_cgroup_cleanup(inv);
    while (inv->listeners) {
        struct inv_listener *l = inv->listeners;
        inv->listeners = l->next;
        free(l->fn);
        free(l);
    }
    if (inv->sigchld_ev)
        event_free(inv->sigchld_ev);
    if (inv->reap_ev)
        event_free(inv->reap_ev);
    free(inv->state_dir);
    free(inv->region);
    free(inv->account_id);
    free(inv);
}

int inv_function_put(inv_invoker *inv, const struct inv_function_config *fc)
{
    struct inv_function_config copy;
    int err = inv_function_config_copy(&copy, fc);
    if (err)
        return err;
    struct inv_fn *fn = inv_fn_find(inv, fc->name);
    if (fn) {
        if (fn->cfg.reserved_concurrency >= 0)
            inv->reserved_sum -= fn->cfg.reserved_concurrency;
        else
            inv->unreserved_inflight -= fn->inflight;
        inv_function_config_clear(&fn->cfg);
        fn->cfg = copy;
        fn->generation++;
        if (copy.reserved_concurrency >= 0)
            inv->reserved_sum += copy.reserved_concurrency;
        else
            inv->unreserved_inflight += fn->inflight;
        /* Warm instances of the old generation retire: the idle ones now, the busy ones when
         * they ask for their next event. */
        for (struct inv_instance *in = fn->instances; in; in = in->next)
            if (in->state == INST_IDLE)
                inv_instance_kill(in);
    } else {
        fn = calloc(1, sizeof(*fn));
        if (!fn) {
            inv_function_config_clear(&copy);
            return SL_ENOMEM;
        }
        fn->inv = inv;
        fn->cfg = copy;
        if (copy.reserved_concurrency >= 0)
            inv->reserved_sum += copy.reserved_concurrency;
        fn->next = inv->fns;
        inv->fns = fn;
    }
    inv_function_arn(inv, fn->cfg.name, fn->arn, sizeof(fn->arn));
    /* Provisioned concurrency: keep that many instances started. */
    int have = 0;
    for (struct inv_instance *in = fn->instances; in; in = in->next)
        if (in->generation == fn->generation && !in->killed)
            have++;
    for (; have < fn->cfg.provisioned; have++) {
        struct inv_instance *created;
        if (inv_instance_spawn(fn, true, &created) != 0)
            break;
    }
    return 0;
}

const struct inv_function_config *inv_function_get(inv_invoker *inv, const char *name)
{
    struct inv_fn *fn = inv_fn_find(inv, name);
    return fn ? &fn->cfg : NULL;
}

static void on_drained(evutil_socket_t fd, short what, void *arg)
{
    inv_invoker *inv = arg;
    void (*cb)(void *) = inv->drain_cb;
    inv->drain_cb = NULL;
    for (struct inv_fn *fn = inv->fns; fn; fn = fn->next)
        for (struct inv_instance *in = fn->instances; in; in = in->next)
            inv_instance_kill(in);
    if (cb)
        cb(inv->drain_arg);
}

void inv_check_drained(inv_invoker *inv)
{
    if (!inv->draining || !inv->drain_cb)
        return;
    for (struct inv_fn *fn = inv->fns; fn; fn = fn->next)
        if (fn->inflight > 0)
            return;
    if (!inv_async_idle(inv))
        return;
    struct timeval zero = {0, 0};
    event_base_once(inv->base, -1, EV_TIMEOUT, on_drained, inv, &zero);
}

void inv_drain(inv_invoker *inv, void (*cb)(void *arg), void *arg)
{
    inv->draining = true;
    inv->drain_cb = cb;
    inv->drain_arg = arg;
    inv_check_drained(inv);
}

/* ---------------------------------------------------------------------------------------- */
/* Metrics                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static void mtext(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

char *inv_metrics_text(inv_invoker *inv)
{
    struct evbuffer *b = evbuffer_new();
    if (!b)
        return NULL;
    struct {
        const char *name, *help;
        size_t off;
    } counters[] = {
        {"sluice_invocations_total", "Invocations completed, any outcome.",
         offsetof(struct inv_fn_metrics, invocations)},
        {"sluice_errors_total", "Invocations that failed (function error, timeout, crash).",
         offsetof(struct inv_fn_metrics, errors)},
        {"sluice_throttles_total", "Invocations refused for concurrency.",
         offsetof(struct inv_fn_metrics, throttles)},
        {"sluice_timeouts_total", "Invocations that passed their Timeout.",
         offsetof(struct inv_fn_metrics, timeouts)},
        {"sluice_cold_starts_total", "Invocations that waited for a new instance.",
         offsetof(struct inv_fn_metrics, cold_starts)},
        {"sluice_async_accepted_total", "Async events accepted (durable).",
         offsetof(struct inv_fn_metrics, async_accepted)},
        {"sluice_async_retries_total", "Async invocation retries.",
         offsetof(struct inv_fn_metrics, async_retries)},
        {"sluice_destination_success_total", "Records delivered to OnSuccess destinations.",
         offsetof(struct inv_fn_metrics, dest_success)},
        {"sluice_destination_failure_total", "Records delivered to OnFailure destinations.",
         offsetof(struct inv_fn_metrics, dest_failure)},
        {"sluice_destination_delivery_failures_total",
         "Destination deliveries that failed and will be retried.",
         offsetof(struct inv_fn_metrics, dest_errors)},
        {"sluice_async_dropped_total",
         "Async events that failed with no OnFailure destination configured.",
         offsetof(struct inv_fn_metrics, async_dropped)},
    };
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        mtext(b, counters[i].name, "counter", counters[i].help);
        for (struct inv_fn *fn = inv->fns; fn; fn = fn->next) {
            uint64_t v = *(const uint64_t *)((const char *)&fn->m + counters[i].off);
            evbuffer_add_printf(b, "%s{function=\"%s\"} %llu\n", counters[i].name, fn->cfg.name,
                                (unsigned long long)v);
        }
    }
    mtext(b, "sluice_concurrent_executions", "gauge", "Invocations in flight.");
    for (struct inv_fn *fn = inv->fns; fn; fn = fn->next)
        evbuffer_add_printf(b, "sluice_concurrent_executions{function=\"%s\"} %d\n",
                            fn->cfg.name, fn->inflight);
    mtext(b, "sluice_instances", "gauge", "Worker instances alive (starting, idle or busy).");
    for (struct inv_fn *fn = inv->fns; fn; fn = fn->next) {
        int n = 0;
        for (struct inv_instance *in = fn->instances; in; in = in->next)
            n += in->state != INST_DEAD;
        evbuffer_add_printf(b, "sluice_instances{function=\"%s\"} %d\n", fn->cfg.name, n);
    }
    mtext(b, "sluice_idle_instances", "gauge", "Warm instances waiting for an invocation.");
    for (struct inv_fn *fn = inv->fns; fn; fn = fn->next) {
        int n = 0;
        for (struct inv_instance *in = fn->instances; in; in = in->next)
            n += in->state == INST_IDLE && in->next_req != NULL;
        evbuffer_add_printf(b, "sluice_idle_instances{function=\"%s\"} %d\n", fn->cfg.name, n);
    }
    mtext(b, "sluice_async_queue_depth", "gauge", "Async events stored and not yet finished.");
    for (struct inv_fn *fn = inv->fns; fn; fn = fn->next) {
        int depth;
        double age;
        inv_async_metrics(inv, fn, &depth, &age);
        evbuffer_add_printf(b, "sluice_async_queue_depth{function=\"%s\"} %d\n", fn->cfg.name,
                            depth);
    }
    mtext(b, "sluice_async_oldest_event_age_seconds", "gauge",
          "Age of the oldest async event not yet finished.");
    for (struct inv_fn *fn = inv->fns; fn; fn = fn->next) {
        int depth;
        double age;
        inv_async_metrics(inv, fn, &depth, &age);
        evbuffer_add_printf(b, "sluice_async_oldest_event_age_seconds{function=\"%s\"} %.3f\n",
                            fn->cfg.name, age);
    }
    mtext(b, "sluice_duration_milliseconds", "histogram", "Invocation duration.");
    for (struct inv_fn *fn = inv->fns; fn; fn = fn->next) {
        uint64_t cum = 0;
        for (size_t i = 0; i < INV_HIST_BUCKETS; i++) {
            cum += fn->m.hist[i];
            evbuffer_add_printf(b, "sluice_duration_milliseconds_bucket{function=\"%s\",le=\"%g\"} "
                                "%llu\n",
                                fn->cfg.name, inv_hist_bounds[i], (unsigned long long)cum);
        }
        cum += fn->m.hist[INV_HIST_BUCKETS];
        evbuffer_add_printf(b,
                            "sluice_duration_milliseconds_bucket{function=\"%s\",le=\"+Inf\"} "
                            "%llu\n",
                            fn->cfg.name, (unsigned long long)cum);
        evbuffer_add_printf(b, "sluice_duration_milliseconds_sum{function=\"%s\"} %.3f\n",
                            fn->cfg.name, fn->m.duration_sum_ms);
        evbuffer_add_printf(b, "sluice_duration_milliseconds_count{function=\"%s\"} %llu\n",
                            fn->cfg.name, (unsigned long long)cum);
    }
    return sl_evbuffer_take_string(b);
}
