/*
 * invoker_async.c - asynchronous invocation (InvocationType Event).
 *
 * An accepted event is a record "async/<request id>" in the embedded store; the 202 goes out
 * only once that record is durable. The record is rewritten when its state changes in a way a
 * restart must not forget (a failed attempt, retries exhausted) and deleted once the event has
 * finished (succeeded, or reached its destination). On start-up every stored event is replayed.
 *
 * Per Lambda: function errors (including timeouts and crashes) are retried up to
 * MaximumRetryAttempts with delays base, 2*base; throttles and system errors wait and retry
 * without using attempts until MaximumEventAgeInSeconds; then the OnFailure destination gets
 * Lambda's invocation record. Successes go to OnSuccess the same way.
 */
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "invoker/invoker_internal.h"

#define ASYNC_PREFIX "async/"
/*
 * Payloads of queued events are kept in memory up to this many bytes in all; past it, a
 * queued event keeps only its metadata and its payload is read back from the store when it
 * is dispatched (a pread of a recently written file, usually from the page cache). This keeps
 * the broker's memory bounded under any backlog at the cost of that read. The environment
 * variable SLUICE_ASYNC_MEMORY_BYTES overrides it (tests use a small one).
 */
#define ASYNC_MEM_PAYLOAD_MAX (64u * 1024 * 1024)

enum ev_state { EV_STORING, EV_READY, EV_WAITING, EV_RUNNING, EV_DELIVERING };
enum ev_phase { PH_INVOKE = 0, PH_SUCCESS = 1, PH_FAILURE = 2 };

struct async_ev {
    struct async_ev *qnext;            /* in the function's ready queue */
    struct async_ev *prev, *next;      /* in the list of every event */
    struct inv_async *as;
    char id[37];
    char *fn;
    uint8_t *payload;
    size_t len;
    int64_t accepted_ms;
    int attempts;                      /* invocations that ended in a function error */
    int system_retries;                /* throttles and system errors, for backoff only */
    int delivery_retries;
    int64_t due_ms;
    enum ev_phase phase;
    char *condition;                   /* for PH_FAILURE/PH_SUCCESS records */
    char *last_type;                   /* last error type */
    uint8_t *last_resp;
    size_t last_len;
    enum ev_state state;
    bool counted;                      /* payload counted in payload_bytes */
    struct event *timer;
    inv_accept_cb accept_cb;
    void *accept_arg;
};

struct fn_queue {
    struct fn_queue *next;
    char *fn;
    struct async_ev *head, *tail;
};

struct inv_async {
    inv_invoker *inv;
    struct async_ev *all;       /* every event in memory, newest first */
    struct fn_queue *queues;
    int busy;                   /* events storing, running or delivering */
    size_t payload_bytes;       /* payload bytes held in memory by queued events */
    size_t payload_cap;         /* ASYNC_MEM_PAYLOAD_MAX or SLUICE_ASYNC_MEMORY_BYTES */
    bool freeing;
};

/* ---------------------------------------------------------------------------------------- */

static struct fn_queue *queue_for(struct inv_async *as, const char *fn, bool create)
{
    for (struct fn_queue *q = as->queues; q; q = q->next)
        if (strcmp(q->fn, fn) == 0)
            return q;
    if (!create)
        return NULL;
    struct fn_queue *q = calloc(1, sizeof(*q));
    if (!q || !(q->fn = strdup(fn))) {
        free(q);
        return NULL;
    }
    q->next = as->queues;
    as->queues = q;
    return q;
}

static void ev_free(struct async_ev *ev)
{
    if (!ev)
        return;
    if (ev->payload && ev->counted)
        ev->as->payload_bytes -= ev->len;
    if (ev->timer)
        event_free(ev->timer);
    free(ev->fn);
    free(ev->payload);
    free(ev->condition);
    free(ev->last_type);
    free(ev->last_resp);
    free(ev);
}

static void ev_unlink(struct async_ev *ev)
{
    struct inv_async *as = ev->as;
    if (ev->prev)
        ev->prev->next = ev->next;
    else if (as->all == ev)
        as->all = ev->next;
    if (ev->next)
        ev->next->prev = ev->prev;
    ev->prev = ev->next = NULL;
}

static void ev_link(struct async_ev *ev)
{
    struct inv_async *as = ev->as;
    ev->next = as->all;
    ev->prev = NULL;
    if (as->all)
        as->all->prev = ev;
    as->all = ev;
}

static void set_busy(struct async_ev *ev, enum ev_state st)
{
    bool was = ev->state == EV_STORING || ev->state == EV_RUNNING || ev->state == EV_DELIVERING;
    bool is = st == EV_STORING || st == EV_RUNNING || st == EV_DELIVERING;
    ev->as->busy += (int)is - (int)was;
    ev->state = st;
}

/* Serialises the event as the store's msgpack record (schemas/store-record.schema.json). */
static int ev_pack(const struct async_ev *ev, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int n = 7 + (ev->condition != NULL) + (ev->last_type != NULL) + (ev->last_resp != NULL);
    msgpack_pack_map(&pk, (size_t)n);
#define KEY(k) (msgpack_pack_str(&pk, strlen(k)), msgpack_pack_str_body(&pk, k, strlen(k)))
    KEY("type");
    msgpack_pack_str(&pk, 5);
    msgpack_pack_str_body(&pk, "async", 5);
    KEY("fn");
    msgpack_pack_str(&pk, strlen(ev->fn));
    msgpack_pack_str_body(&pk, ev->fn, strlen(ev->fn));
    KEY("payload");
    msgpack_pack_bin(&pk, ev->len);
    msgpack_pack_bin_body(&pk, ev->payload, ev->len);
    KEY("accepted_ms");
    msgpack_pack_int64(&pk, ev->accepted_ms);
    KEY("attempts");
    msgpack_pack_int(&pk, ev->attempts);
    KEY("due_ms");
    msgpack_pack_int64(&pk, ev->due_ms);
    KEY("phase");
    msgpack_pack_int(&pk, (int)ev->phase);
    if (ev->condition) {
        KEY("condition");
        msgpack_pack_str(&pk, strlen(ev->condition));
        msgpack_pack_str_body(&pk, ev->condition, strlen(ev->condition));
    }
    if (ev->last_type) {
        KEY("error_type");
        msgpack_pack_str(&pk, strlen(ev->last_type));
        msgpack_pack_str_body(&pk, ev->last_type, strlen(ev->last_type));
    }
    if (ev->last_resp) {
        KEY("response");
        msgpack_pack_bin(&pk, ev->last_len);
        msgpack_pack_bin_body(&pk, ev->last_resp, ev->last_len);
    }
#undef KEY
    return sb->data ? 0 : SL_ENOMEM;
}

static char *dup_obj(const msgpack_object *o)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return NULL;
    return strndup(o->via.str.ptr, o->via.str.size);
}

static uint8_t *dup_bin(const msgpack_object *o, size_t *len)
{
    const char *p;
    size_t n;
    if (o->type == MSGPACK_OBJECT_BIN) {
        p = o->via.bin.ptr;
        n = o->via.bin.size;
    } else if (o->type == MSGPACK_OBJECT_STR) {
        p = o->via.str.ptr;
        n = o->via.str.size;
    } else {
        return NULL;
    }
    uint8_t *b = malloc(n ? n : 1);
    if (b && n)
        memcpy(b, p, n);
    *len = n;
    return b;
}

/* Decodes a stored record; returns NULL (and logs) on anything unexpected. */
static struct async_ev *ev_unpack(struct inv_async *as, const char *key, const void *data,
                                  size_t len)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    struct async_ev *ev = NULL;
    if (msgpack_unpack_next(&u, data, len, NULL) != MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_MAP)
        goto bad;
    ev = calloc(1, sizeof(*ev));
    if (!ev)
        goto bad;
    ev->as = as;
    snprintf(ev->id, sizeof(ev->id), "%s", key + strlen(ASYNC_PREFIX));
    const msgpack_object_map *m = &u.data.via.map;
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR)
            continue;
        char name[32];
        snprintf(name, sizeof(name), "%.*s", (int)k->via.str.size, k->via.str.ptr);
        bool is_int = v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
                      v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
        if (strcmp(name, "fn") == 0)
            ev->fn = dup_obj(v);
        else if (strcmp(name, "payload") == 0)
            ev->payload = dup_bin(v, &ev->len);
        else if (strcmp(name, "accepted_ms") == 0 && is_int)
            ev->accepted_ms = v->via.i64;
        else if (strcmp(name, "attempts") == 0 && is_int)
            ev->attempts = (int)v->via.i64;
        else if (strcmp(name, "due_ms") == 0 && is_int)
            ev->due_ms = v->via.i64;
        else if (strcmp(name, "phase") == 0 && is_int)
            ev->phase = (enum ev_phase)v->via.i64;
        else if (strcmp(name, "condition") == 0)
            ev->condition = dup_obj(v);
        else if (strcmp(name, "error_type") == 0)
            ev->last_type = dup_obj(v);
        else if (strcmp(name, "response") == 0)
            ev->last_resp = dup_bin(v, &ev->last_len);
    }
    if (!ev->fn || !ev->payload || ev->phase > PH_FAILURE)
        goto bad;
    as->payload_bytes += ev->len;
    ev->counted = true;
    msgpack_unpacked_destroy(&u);
    return ev;
bad:
    sl_error("async", "stored event %s is not a valid async record; leaving it in the store",
             key);
    ev_free(ev);
    msgpack_unpacked_destroy(&u);
    return NULL;
}

static void ev_persist(struct async_ev *ev)
{
    msgpack_sbuffer sb;
    char key[64];
    snprintf(key, sizeof(key), ASYNC_PREFIX "%s", ev->id);
    if (ev_pack(ev, &sb) == 0) {
        int err = br_store_put(ev->as->inv->store, key, sb.data, sb.size, NULL, NULL);
        if (err)
            sl_error("async", "cannot update stored event %s: %s", ev->id, sl_strerror(err));
    }
    msgpack_sbuffer_destroy(&sb);
}

/* The event is finished: forget it (the store's del makes it final). */
static void ev_finish(struct async_ev *ev)
{
    char key[64];
    snprintf(key, sizeof(key), ASYNC_PREFIX "%s", ev->id);
    br_store_del(ev->as->inv->store, key, NULL, NULL);
    set_busy(ev, EV_READY);
    ev_unlink(ev);
    struct inv_async *as = ev->as;
    ev_free(ev);
    inv_check_drained(as->inv);
}

/* ---------------------------------------------------------------------------------------- */
/* Scheduling                                                                               */
/* ---------------------------------------------------------------------------------------- */

static void pump(struct inv_async *as, const char *fn);
static void deliver(struct async_ev *ev);

static void enqueue(struct async_ev *ev)
{
    struct fn_queue *q = queue_for(ev->as, ev->fn, true);
    set_busy(ev, EV_READY);
    if (!q) {
        sl_error("async", "out of memory queueing %s; it stays stored for a restart", ev->id);
        return;
    }
    ev->qnext = NULL;
    if (q->tail)
        q->tail->qnext = ev;
    else
        q->head = ev;
    q->tail = ev;
    if (ev->payload && ev->as->payload_bytes > ev->as->payload_cap && q->head != ev) {
        ev->as->payload_bytes -= ev->len;
        free(ev->payload);
        ev->payload = NULL;
        ev->counted = false;
    }
}

/* Reads a queued event's payload back from the store (see ASYNC_MEM_PAYLOAD_MAX). */
static int ev_reload(struct async_ev *ev)
{
    char key[64];
    void *val = NULL;
    size_t len = 0;
    snprintf(key, sizeof(key), ASYNC_PREFIX "%s", ev->id);
    int err = br_store_get(ev->as->inv->store, key, &val, &len);
    if (err)
        return err;
    struct async_ev *copy = ev_unpack(ev->as, key, val, len);
    free(val);
    if (!copy)
        return SL_ECORRUPT;
    sl_debug("async", "%s: read event %s (%zu bytes) back from the store", ev->fn, ev->id,
             copy->len);
    ev->payload = copy->payload;
    ev->len = copy->len;
    ev->as->payload_bytes += ev->len;
    ev->counted = true;
    if (copy->counted)
        ev->as->payload_bytes -= copy->len;
    copy->payload = NULL;
    ev_free(copy);
    return 0;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct async_ev *ev = arg;
    if (ev->phase == PH_INVOKE) {
        enqueue(ev);
        pump(ev->as, ev->fn);
    } else {
        deliver(ev);
    }
}

static void wait_ms(struct async_ev *ev, int64_t ms)
{
    if (!ev->timer)
        ev->timer = evtimer_new(ev->as->inv->base, on_timer, ev);
    set_busy(ev, EV_WAITING);
    if (ms < 0)
        ms = 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    if (!ev->timer || evtimer_add(ev->timer, &tv) != 0)
        sl_error("async", "cannot arm a timer for %s; it stays stored for a restart", ev->id);
}

/* Backoff for throttles, system errors and destination failures: 1 s doubling to 5 min. */
static int64_t backoff_ms(int n)
{
    int64_t ms = 1000;
    for (int i = 0; i < n && ms < 300000; i++)
        ms *= 2;
    return ms > 300000 ? 300000 : ms;
}

static json_t *json_of_bytes(const uint8_t *p, size_t n)
{
    json_error_t e;
    json_t *j = n ? json_loadb((const char *)p, n, JSON_DECODE_ANY, &e) : NULL;
    if (j)
        return j;
    return json_stringn((const char *)p, n);
}

/* Lambda's invocation record for destinations (lambda-spec 3.3). */
static char *build_record(struct async_ev *ev, size_t *len)
{
    inv_invoker *inv = ev->as->inv;
    char arn[300], ts[40];
    inv_function_arn(inv, ev->fn, arn, sizeof(arn));
    strncat(arn, ":$LATEST", sizeof(arn) - strlen(arn) - 1);
    sl_iso8601_ms(sl_now_ms(), ts, sizeof(ts));
    bool ok = ev->phase == PH_SUCCESS;
    json_t *resp_ctx = json_pack("{s:i,s:s}", "statusCode", 200, "executedVersion", "$LATEST");
    if (!ok && ev->last_type)
        json_object_set_new(resp_ctx, "functionError", json_string("Unhandled"));
    json_t *rec = json_pack(
        "{s:s,s:s,s:{s:s,s:s,s:s,s:i},s:o,s:o}", "version", "1.0", "timestamp", ts,
        "requestContext", "requestId", ev->id, "functionArn", arn, "condition",
        ev->condition ? ev->condition : (ok ? "Success" : "RetriesExhausted"),
        "approximateInvokeCount", ev->attempts + (ok ? 1 : 0), "requestPayload",
        json_of_bytes(ev->payload, ev->len), "responseContext", resp_ctx);
    if (!rec)
        return NULL;
    if (ev->last_resp)
        json_object_set_new(rec, "responsePayload", json_of_bytes(ev->last_resp, ev->last_len));
    else
        json_object_set_new(rec, "responsePayload", json_null());
    char *s = json_dumps(rec, JSON_COMPACT);
    json_decref(rec);
    if (s)
        *len = strlen(s);
    return s;
}

static void on_delivered(int err, void *arg)
{
    struct async_ev *ev = arg;
    struct inv_async *as = ev->as;
    if (as->freeing)
        return;
    struct inv_fn *fn = inv_fn_find(as->inv, ev->fn);
    if (err) {
        int64_t ms = backoff_ms(ev->delivery_retries++);
        sl_warn("async", "%s: event %s: destination delivery failed (%s); retrying in %.1f s",
                ev->fn, ev->id, sl_strerror(err), (double)ms / 1000);
        if (fn)
            fn->m.dest_errors++;
        wait_ms(ev, ms);
        return;
    }
    if (fn) {
        if (ev->phase == PH_SUCCESS)
            fn->m.dest_success++;
        else
            fn->m.dest_failure++;
    }
    ev_finish(ev);
}

/* Sends the event's record to its OnSuccess/OnFailure destination, or finishes it. */
static void deliver(struct async_ev *ev)
{
    inv_invoker *inv = ev->as->inv;
    const struct inv_function_config *fc = inv_function_get(inv, ev->fn);
    const char *uri = NULL;
    if (fc)
        uri = ev->phase == PH_SUCCESS ? fc->eic.on_success : fc->eic.on_failure;
    if (!uri) {
        if (ev->phase == PH_FAILURE) {
            struct inv_fn *fn = inv_fn_find(inv, ev->fn);
            if (fn)
                fn->m.async_dropped++;
            sl_warn("async", "%s: event %s failed (%s after %d attempts) and has no OnFailure "
                    "destination; it is dropped",
                    ev->fn, ev->id, ev->condition ? ev->condition : "?", ev->attempts);
        }
        ev_finish(ev);
        return;
    }
    size_t len = 0;
    char *rec = build_record(ev, &len);
    if (!rec) {
        on_delivered(SL_ENOMEM, ev);
        return;
    }
    set_busy(ev, EV_DELIVERING);
    int err = inv_dest_send(inv, uri, rec, len, on_delivered, ev);
    free(rec);
    if (err)
        on_delivered(err, ev);
}

static void fail_event(struct async_ev *ev, const char *condition)
{
    ev->phase = PH_FAILURE;
    free(ev->condition);
    ev->condition = strdup(condition);
    ev_persist(ev);
    deliver(ev);
}

static bool too_old(struct async_ev *ev, const struct inv_function_config *fc)
{
    return sl_now_ms() - ev->accepted_ms > (int64_t)fc->eic.max_event_age_s * 1000;
}

static void on_invoked(const struct inv_result *r, void *arg)
{
    struct async_ev *ev = arg;
    struct inv_async *as = ev->as;
    const struct inv_function_config *fc = inv_function_get(as->inv, ev->fn);
    struct inv_fn *fn = inv_fn_find(as->inv, ev->fn);

    free(ev->last_resp);
    ev->last_resp = malloc(r->payload_len ? r->payload_len : 1);
    ev->last_len = ev->last_resp ? r->payload_len : 0;
    if (ev->last_resp && r->payload_len)
        memcpy(ev->last_resp, r->payload, r->payload_len);
    free(ev->last_type);
    ev->last_type = r->status == INV_OK ? NULL : strdup(r->error_type ? r->error_type : "Unhandled");

    if (r->status == INV_OK) {
        ev->phase = PH_SUCCESS;
        deliver(ev);
        return;
    }
    if (!fc) {
        fail_event(ev, "RetriesExhausted");
        return;
    }
    if (r->status == INV_SYSTEM_ERROR || r->status == INV_THROTTLED) {
        if (too_old(ev, fc)) {
            fail_event(ev, "EventAgeExceeded");
            return;
        }
        wait_ms(ev, backoff_ms(ev->system_retries++));
        return;
    }
    ev->attempts++;
    if (ev->attempts > fc->eic.max_retry_attempts) {
        fail_event(ev, "RetriesExhausted");
        return;
    }
    if (too_old(ev, fc)) {
        fail_event(ev, "EventAgeExceeded");
        return;
    }
    double delay_s = fc->eic.retry_base_delay_s;
    for (int i = 1; i < ev->attempts; i++)
        delay_s *= 2;
    ev->due_ms = sl_now_ms() + (int64_t)(delay_s * 1000);
    if (fn)
        fn->m.async_retries++;
    sl_info("async", "%s: event %s failed (%s); retry %d/%d in %.1f s", ev->fn, ev->id,
            ev->last_type ? ev->last_type : "?", ev->attempts, fc->eic.max_retry_attempts,
            delay_s);
    ev_persist(ev);
    wait_ms(ev, (int64_t)(delay_s * 1000));
}

/* Starts as many ready events of fn as its concurrency allows. */
static void pump(struct inv_async *as, const char *name)
{
    struct fn_queue *q = queue_for(as, name, false);
    inv_invoker *inv = as->inv;
    if (!q)
        return;
    while (q->head && !inv->draining) {
        struct async_ev *ev = q->head;
        const struct inv_function_config *fc = inv_function_get(inv, name);
        if (!fc)
            return; /* the function went away; the events stay stored */
        if (!ev->payload) {
            int rerr = ev_reload(ev);
            if (rerr) {
                sl_error("async", "%s: cannot read event %s back from the store: %s; it stays "
                         "stored for a restart", name, ev->id, sl_strerror(rerr));
                q->head = ev->qnext;
                if (!q->head)
                    q->tail = NULL;
                set_busy(ev, EV_WAITING);
                continue;
            }
        }
        if (fc->reserved_concurrency == 0 || too_old(ev, fc)) {
            q->head = ev->qnext;
            if (!q->head)
                q->tail = NULL;
            fail_event(ev, too_old(ev, fc) ? "EventAgeExceeded" : "RetriesExhausted");
            continue;
        }
        if (!inv_has_capacity(inv, name))
            return; /* inv_async_capacity_freed pumps again */
        q->head = ev->qnext;
        if (!q->head)
            q->tail = NULL;
        struct inv_invoke_opts o = {.request_id = ev->id};
        set_busy(ev, EV_RUNNING);
        int err = inv_invoke(inv, name, ev->payload, ev->len, &o, on_invoked, ev, NULL);
        if (err) {
            /* Throttled after all, or draining: back to the front of the queue. */
            set_busy(ev, EV_READY);
            ev->qnext = q->head;
            q->head = ev;
            if (!q->tail)
                q->tail = ev;
            if (err != SL_ETHROTTLED && err != SL_ECLOSED)
                sl_error("async", "%s: cannot invoke %s: %s", name, ev->id, sl_strerror(err));
            return;
        }
    }
}

void inv_async_capacity_freed(inv_invoker *inv, struct inv_fn *fn)
{
    if (inv->async && !inv->async->freeing)
        pump(inv->async, fn->cfg.name);
}

/* ---------------------------------------------------------------------------------------- */
/* Accepting and recovering                                                                 */
/* ---------------------------------------------------------------------------------------- */

static void on_stored(int err, void *arg)
{
    struct async_ev *ev = arg;
    struct inv_async *as = ev->as;
    if (err) {
        set_busy(ev, EV_READY);
        ev_unlink(ev);
        ev->accept_cb(err, ev->id, ev->accept_arg);
        ev_free(ev);
        return;
    }
    struct inv_fn *fn = inv_fn_find(as->inv, ev->fn);
    if (fn)
        fn->m.async_accepted++;
    inv_accept_cb cb = ev->accept_cb;
    void *cbarg = ev->accept_arg;
    ev->accept_cb = NULL;
    enqueue(ev);
    cb(0, ev->id, cbarg);
    pump(as, ev->fn);
}

int inv_async_submit(inv_invoker *inv, const char *name, const void *payload, size_t len,
                     inv_accept_cb cb, void *arg)
{
    struct inv_async *as = inv->async;
    if (!inv_fn_find(inv, name))
        return SL_ENOENT;
    if (len > INV_ASYNC_PAYLOAD_MAX)
        return SL_ETOOBIG;
    if (inv->draining)
        return SL_ECLOSED;
    struct async_ev *ev = calloc(1, sizeof(*ev));
    if (!ev)
        return SL_ENOMEM;
    ev->as = as;
    sl_idgen_uuid4(&inv->ids, ev->id);
    ev->fn = strdup(name);
    ev->payload = malloc(len ? len : 1);
    ev->len = len;
    ev->accepted_ms = sl_now_ms();
    ev->accept_cb = cb;
    ev->accept_arg = arg;
    if (!ev->fn || !ev->payload) {
        ev_free(ev);
        return SL_ENOMEM;
    }
    if (len)
        memcpy(ev->payload, payload, len);
    as->payload_bytes += len;
    ev->counted = true;
    msgpack_sbuffer sb;
    char key[64];
    snprintf(key, sizeof(key), ASYNC_PREFIX "%s", ev->id);
    int err = ev_pack(ev, &sb);
    if (!err)
        err = br_store_put(inv->store, key, sb.data, sb.size, on_stored, ev);
    msgpack_sbuffer_destroy(&sb);
    if (err) {
        ev_free(ev);
        return err;
    }
    ev->state = EV_READY;
    set_busy(ev, EV_STORING);
    ev_link(ev);
    return 0;
}

struct recover_ctx {
    struct inv_async *as;
    int count;
};

static int recover_one(const char *key, const void *value, size_t len, void *arg)
{
    struct recover_ctx *rc = arg;
    struct async_ev *ev = ev_unpack(rc->as, key, value, len);
    if (!ev)
        return 0;
    if (!inv_fn_find(rc->as->inv, ev->fn)) {
        sl_warn("async", "stored event %s is for unknown function %s; it stays stored", ev->id,
                ev->fn);
        ev_free(ev);
        return 0;
    }
    ev->state = EV_READY;
    ev_link(ev);
    rc->count++;
    if (ev->phase != PH_INVOKE) {
        deliver(ev);
    } else if (ev->due_ms > sl_now_ms()) {
        wait_ms(ev, ev->due_ms - sl_now_ms());
    } else {
        enqueue(ev);
    }
    return 0;
}

int inv_async_recover(inv_invoker *inv)
{
    struct recover_ctx rc = {inv->async, 0};
    int err = br_store_scan(inv->store, ASYNC_PREFIX, recover_one, &rc);
    if (err < 0)
        return err;
    for (struct fn_queue *q = inv->async->queues; q; q = q->next)
        pump(inv->async, q->fn);
    if (rc.count)
        sl_info("async", "recovered %d stored async events", rc.count);
    return rc.count;
}

int inv_async_init(inv_invoker *inv)
{
    struct inv_async *as = calloc(1, sizeof(*as));
    if (!as)
        return SL_ENOMEM;
    as->inv = inv;
    as->payload_cap = ASYNC_MEM_PAYLOAD_MAX;
    const char *cap = getenv("SLUICE_ASYNC_MEMORY_BYTES");
    if (cap && *cap)
        as->payload_cap = (size_t)strtoull(cap, NULL, 10);
    inv->async = as;
    return 0;
}

void inv_async_free(inv_invoker *inv)
{
    struct inv_async *as = inv->async;
    if (!as)
        return;
    as->freeing = true;
    while (as->all) {
        struct async_ev *ev = as->all;
        as->all = ev->next;
        ev_free(ev);
    }
    while (as->queues) {
        struct fn_queue *q = as->queues;
        as->queues = q->next;
        free(q->fn);
        free(q);
    }
    free(as);
    inv->async = NULL;
}

bool inv_async_idle(inv_invoker *inv)
{
    return !inv->async || inv->async->busy == 0;
}

void inv_async_metrics(inv_invoker *inv, const struct inv_fn *fn, int *depth,
                       double *oldest_age_s)
{
    *depth = 0;
    *oldest_age_s = 0;
    if (!inv->async)
        return;
    int64_t now = sl_now_ms(), oldest = now;
    for (struct async_ev *ev = inv->async->all; ev; ev = ev->next) {
        if (strcmp(ev->fn, fn->cfg.name) != 0)
            continue;
        (*depth)++;
        if (ev->accepted_ms < oldest)
            oldest = ev->accepted_ms;
    }
    *oldest_age_s = (double)(now - oldest) / 1000.0;
}
