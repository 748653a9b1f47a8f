/*
 * poller_esm.c - event source mappings at run time, for every source kind alike: the batcher
 * (BatchSize, MaximumBatchingWindowInSeconds, the 6 MB cap), back-pressure (batches in flight
 * and the function's concurrency), invoking the function with each batch, and turning the
 * result into an outcome the source checkpoints.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

#include "pollers/pollers_internal.h"

struct pl_pollers {
    struct event_base *base;
    inv_invoker *inv;
    br_store *store;
    struct pl_mapping *mappings;
    bool draining;
    void (*drain_cb)(void *arg);
    void *drain_arg;
};

const char *pl_region(struct pl_mapping *m)
{
    (void)m;
    return "us-east-1";
}

inv_invoker *pl_invoker(struct pl_mapping *m)
{
    return m->pl->inv;
}

struct event_base *pl_base(struct pl_mapping *m)
{
    return m->pl->base;
}

void pl_mapping_set_result(struct pl_mapping *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->last_result, sizeof(m->last_result), fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------------------------------- */
/* Batches                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static void batch_free(struct pl_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        free(b->items[i].id);
    free(b->items);
    if (b->body)
        evbuffer_free(b->body);
    free(b);
}

static struct pl_batch *batch_new(struct pl_mapping *m)
{
    struct pl_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->m = m;
    b->body = evbuffer_new();
    b->cap = (size_t)(m->batch_size < 64 ? m->batch_size : 64);
    b->items = calloc(b->cap, sizeof(*b->items));
    if (!b->body || !b->items ||
        evbuffer_add(b->body, m->src->event_prefix, strlen(m->src->event_prefix)) != 0) {
        batch_free(b);
        return NULL;
    }
    b->opened_ms = sl_now_ms();
    return b;
}

static void dispatch(struct pl_mapping *m);

/* Closes the open batch and queues it for invocation. */
static void close_open(struct pl_mapping *m)
{
    struct pl_batch *b = m->open;
    if (!b)
        return;
    m->open = NULL;
    event_del(m->window_ev);
    if (b->n == 0) {
        batch_free(b);
        return;
    }
    evbuffer_add(b->body, m->src->event_suffix, strlen(m->src->event_suffix));
    b->closed = true;
    m->inflight++;
    m->m_batches++;
    struct pl_batch **p = &m->waiting;
    while (*p)
        p = &(*p)->next;
    *p = b;
    dispatch(m);
}

static void on_window(evutil_socket_t fd, short what, void *arg)
{
    close_open(arg);
}

bool pl_mapping_can_take(struct pl_mapping *m)
{
    if (m->draining || m->pl->draining)
        return false;
    if (m->waiting)
        return false; /* a batch already waits for the function: back-pressure */
    if (m->inflight >= m->max_inflight)
        return false;
    return inv_has_capacity(m->pl->inv, m->cfg.function_name);
}

int pl_batch_add(struct pl_mapping *m, const char *id, int64_t receive_count,
                 int (*encode)(void *enc_arg, struct evbuffer *out), void *enc_arg)
{
    if (!m->open) {
        m->open = batch_new(m);
        if (!m->open)
            return SL_ENOMEM;
        if (m->window_s > 0) {
            struct timeval tv = {(time_t)m->window_s,
                                 (suseconds_t)((m->window_s - (double)(time_t)m->window_s) *
                                               1e6)};
            evtimer_add(m->window_ev, &tv);
        }
    }
    struct pl_batch *b = m->open;
    size_t before = evbuffer_get_length(b->body);
    if (b->n > 0 && evbuffer_add(b->body, ",", 1) != 0)
        return SL_ENOMEM;
    int err = encode(enc_arg, b->body);
    size_t added = evbuffer_get_length(b->body) - before;
    size_t overhead = strlen(m->src->event_prefix) + strlen(m->src->event_suffix);
    if (!err && b->bytes + added + overhead > PL_BATCH_PAYLOAD_MAX) {
        /* Past the 6 MB cap: take the record back out; it starts the next batch. */
        struct evbuffer *keep = evbuffer_new();
        if (!keep)
            return SL_ENOMEM;
        evbuffer_remove_buffer(b->body, keep, before);
        evbuffer_free(b->body);
        b->body = keep;
        if (b->n == 0)
            return SL_ETOOBIG;
        close_open(m);
        return pl_batch_add(m, id, receive_count, encode, enc_arg);
    }
    if (err) {
        /* Take back the separator and whatever the encoder wrote: the batch stays valid. */
        struct evbuffer *keep = evbuffer_new();
        if (keep) {
            evbuffer_remove_buffer(b->body, keep, before);
            evbuffer_free(b->body);
            b->body = keep;
        }
        return err;
    }
    if (b->n == b->cap) {
        size_t ncap = b->cap * 2;
        struct pl_item *it = realloc(b->items, ncap * sizeof(*it));
        if (!it)
            return SL_ENOMEM;
        b->items = it;
        b->cap = ncap;
    }
    b->items[b->n].id = strdup(id);
    if (!b->items[b->n].id)
        return SL_ENOMEM;
    b->items[b->n].receive_count = receive_count;
    b->n++;
    b->bytes += added;
    m->m_records++;
    if (b->n >= (size_t)m->batch_size)
        close_open(m);
    return 0;
}

void pl_batch_flush(struct pl_mapping *m)
{
    if (m->open && m->window_s <= 0)
        close_open(m);
}

/* ---------------------------------------------------------------------------------------- */
/* Invoking                                                                                 */
/* ---------------------------------------------------------------------------------------- */

static void check_drained(struct pl_pollers *pl);

static void batch_done(struct pl_batch *b, const struct pl_outcome *o)
{
    struct pl_mapping *m = b->m;
    if (o->result == PL_RESULT_OK) {
        m->m_batch_ok++;
        pl_mapping_set_result(m, "OK");
    } else {
        m->m_batch_failed++;
        pl_mapping_set_result(m, "PROBLEM: Function call failed");
    }
    m->src->complete(m->state, b, o);
    m->inflight--;
    batch_free(b);
    if (m->draining) {
        if (m->inflight == 0 && m->source_drained)
            check_drained(m->pl);
        return;
    }
    m->src->poll(m->state);
}

/*
 * The error as people read it, for logs and dead letters: "<errorType>: <errorMessage>" from
 * Lambda's error object (else the raw body), control characters as spaces, cut to fit.
 */
static void error_reason(const struct inv_result *r, char *out, size_t outsz)
{
    const char *type = r->error_type ? r->error_type : "Unhandled";
    json_error_t e;
    json_t *doc = r->payload_len ? json_loadb((const char *)r->payload, r->payload_len, 0, &e)
                                 : NULL;
    const char *msg = json_string_value(json_object_get(doc, "errorMessage"));
    const char *jtype = json_string_value(json_object_get(doc, "errorType"));
    if (jtype && *jtype)
        type = jtype;
    int n;
    if (msg)
        n = snprintf(out, outsz, "%s: %s", type, msg);
    else
        n = snprintf(out, outsz, "%s: %.*s", type, (int)(r->payload_len < 900 ? r->payload_len
                                                                          : 900),
                     (const char *)r->payload);
    json_decref(doc);
    size_t len = n < 0 ? 0 : ((size_t)n < outsz ? (size_t)n : outsz - 1);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)out[i] < 0x20)
            out[i] = ' ';
}

static void on_invoked(const struct inv_result *r, void *arg)
{
    struct pl_batch *b = arg;
    struct pl_mapping *m = b->m;
    char reason[1024];
    struct pl_outcome o = {.result = PL_RESULT_OK};
    bool *failed = NULL;
    if (r->status != INV_OK) {
        error_reason(r, reason, sizeof(reason));
        o.result = PL_RESULT_FAILED;
        o.error = reason;
        m->m_records_failed += b->n;
        sl_info("esm", "%s: batch of %zu failed (%s)", m->cfg.uuid, b->n, reason);
    } else if (m->cfg.report_batch_item_failures && m->src->parse_partial) {
        failed = calloc(b->n ? b->n : 1, sizeof(bool));
        int err = failed ? m->src->parse_partial(b, r->payload, r->payload_len, failed)
                         : SL_ENOMEM;
        if (err) {
            snprintf(reason, sizeof(reason), "invalid batchItemFailures response");
            o.result = PL_RESULT_FAILED;
            o.error = reason;
            m->m_records_failed += b->n;
            sl_info("esm", "%s: batch of %zu: invalid partial batch response; the whole batch "
                    "failed", m->cfg.uuid, b->n);
        } else {
            size_t nf = 0;
            for (size_t i = 0; i < b->n; i++)
                nf += failed[i];
            if (nf) {
                o.result = PL_RESULT_PARTIAL;
                o.failed = failed;
                snprintf(reason, sizeof(reason), "reported in batchItemFailures");
                o.error = reason;
                m->m_records_failed += nf;
            }
        }
    }
    batch_done(b, &o);
    free(failed);
}

/* Invokes waiting batches while the function has capacity. */
static void dispatch(struct pl_mapping *m)
{
    while (m->waiting) {
        struct pl_batch *b = m->waiting;
        size_t len = evbuffer_get_length(b->body);
        const uint8_t *data = evbuffer_pullup(b->body, -1);
        const char *why = NULL;
        int err = inv_invoke(m->pl->inv, m->cfg.function_name, data, len, NULL, on_invoked, b,
                             &why);
        if (err == SL_ETHROTTLED || err == SL_ECLOSED)
            return; /* capacity comes back through on_capacity */
        m->waiting = b->next;
        b->next = NULL;
        if (err) {
            char reason[128];
            snprintf(reason, sizeof(reason), "cannot invoke %s: %s", m->cfg.function_name,
                     sl_strerror(err));
            pl_mapping_set_result(m, "PROBLEM: %s", reason);
            struct pl_outcome o = {.result = PL_RESULT_FAILED, .error = reason};
            batch_done(b, &o);
        }
    }
}

static void on_capacity(void *arg)
{
    struct pl_mapping *m = arg;
    dispatch(m);
    if (!m->waiting && !m->draining)
        m->src->poll(m->state);
}

/* ---------------------------------------------------------------------------------------- */
/* The set of mappings                                                                      */
/* ---------------------------------------------------------------------------------------- */

int pl_new(struct event_base *base, inv_invoker *inv, br_store *store, pl_pollers **out)
{
    pl_pollers *pl = calloc(1, sizeof(*pl));
    if (!pl)
        return SL_ENOMEM;
    pl->base = base;
    pl->inv = inv;
    pl->store = store;
    *out = pl;
    return 0;
}

static void mapping_free(struct pl_mapping *m)
{
    if (!m)
        return;
    inv_capacity_unlisten(m->pl->inv, on_capacity, m);
    if (m->state)
        m->src->destroy(m->state);
    batch_free(m->open);
    while (m->waiting) {
        struct pl_batch *b = m->waiting;
        m->waiting = b->next;
        batch_free(b);
    }
    if (m->window_ev)
        event_free(m->window_ev);
    pl_mapping_config_clear(&m->cfg);
    free(m);
}

void pl_free(pl_pollers *pl)
{
    if (!pl)
        return;
    while (pl->mappings) {
        struct pl_mapping *m = pl->mappings;
        pl->mappings = m->next;
        mapping_free(m);
    }
    free(pl);
}

int pl_mapping_add(pl_pollers *pl, const struct pl_mapping_config *mc)
{
    char err[256];
    if (pl_mapping_validate(mc, err, sizeof(err)) != 0) {
        sl_error("esm", "mapping %s: %s", mc->uuid, err);
        return SL_EINVAL;
    }
    for (struct pl_mapping *o = pl->mappings; o; o = o->next)
        if (strcmp(o->cfg.uuid, mc->uuid) == 0)
            return SL_EEXIST;
    const struct pl_source *src = pl_source_find(mc->event_source_arn);
    if (!src)
        return SL_EINVAL;
    struct pl_mapping *m = calloc(1, sizeof(*m));
    if (!m)
        return SL_ENOMEM;
    m->pl = pl;
    m->src = src;
    int rc = pl_mapping_config_copy(&m->cfg, mc);
    if (rc) {
        free(m);
        return rc;
    }
    m->batch_size = mc->batch_size > 0 ? mc->batch_size : src->default_batch_size;
    m->window_s = mc->window_s >= 0 ? mc->window_s : src->default_window_s;
    /* Lambda scales SQS pollers up to 1000 concurrent batches; MaximumConcurrency caps it. */
    m->max_inflight = mc->max_concurrency > 0 ? mc->max_concurrency : 1000;
    pl_uri_redact(mc->event_source_arn, m->redacted_arn, sizeof(m->redacted_arn));
    pl_mapping_set_result(m, "No records processed");
    m->last_modified = (double)sl_now_ms() / 1000.0;
    m->window_ev = evtimer_new(pl->base, on_window, m);
    if (!m->window_ev || (rc = src->create(m, &m->state)) != 0 ||
        (rc = inv_capacity_listen(pl->inv, mc->function_name, on_capacity, m)) != 0) {
        mapping_free(m);
        return rc ? rc : SL_ENOMEM;
    }
    m->next = pl->mappings;
    pl->mappings = m;
    if (mc->enabled) {
        sl_info("esm", "mapping %s: %s -> %s (BatchSize %d, window %.1f s)", m->cfg.uuid,
                m->redacted_arn, mc->function_name, m->batch_size, m->window_s);
        src->start(m->state);
    } else {
        sl_info("esm", "mapping %s: %s -> %s is disabled", m->cfg.uuid, m->redacted_arn,
                mc->function_name);
    }
    return 0;
}

static void on_drained_later(evutil_socket_t fd, short what, void *arg)
{
    pl_pollers *pl = arg;
    void (*cb)(void *) = pl->drain_cb;
    pl->drain_cb = NULL;
    if (cb)
        cb(pl->drain_arg);
}

static void check_drained(struct pl_pollers *pl)
{
    if (!pl->draining || !pl->drain_cb)
        return;
    for (struct pl_mapping *m = pl->mappings; m; m = m->next)
        if (m->inflight > 0 || !m->source_drained)
            return;
    struct timeval zero = {0, 0};
    event_base_once(pl->base, -1, EV_TIMEOUT, on_drained_later, pl, &zero);
}

void pl_mapping_source_drained(struct pl_mapping *m)
{
    m->source_drained = true;
    check_drained(m->pl);
}

void pl_drain(pl_pollers *pl, void (*cb)(void *arg), void *arg)
{
    pl->draining = true;
    pl->drain_cb = cb;
    pl->drain_arg = arg;
    for (struct pl_mapping *m = pl->mappings; m; m = m->next) {
        m->draining = true;
        /* The open batch was read: finish it (its records are pending in the source). */
        close_open(m);
        if (m->cfg.enabled)
            m->src->drain(m->state);
        else
            m->source_drained = true;
    }
    check_drained(pl);
}

char *pl_metrics_text(pl_pollers *pl)
{
    struct evbuffer *b = evbuffer_new();
    if (!b)
        return NULL;
    static const struct {
        const char *name, *help;
        size_t off;
    } counters[] = {
        {"sluice_esm_records_total", "Records read from the source into batches.",
         offsetof(struct pl_mapping, m_records)},
        {"sluice_esm_batches_total", "Batches closed.", offsetof(struct pl_mapping, m_batches)},
        {"sluice_esm_batches_succeeded_total", "Batches whose invocation succeeded.",
         offsetof(struct pl_mapping, m_batch_ok)},
        {"sluice_esm_batches_failed_total", "Batches that failed in whole or in part.",
         offsetof(struct pl_mapping, m_batch_failed)},
        {"sluice_esm_records_failed_total", "Records whose invocation failed.",
         offsetof(struct pl_mapping, m_records_failed)},
    };
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s counter\n", counters[i].name,
                            counters[i].help, counters[i].name);
        for (struct pl_mapping *m = pl->mappings; m; m = m->next)
            evbuffer_add_printf(b, "%s{mapping=\"%s\",function=\"%s\"} %llu\n",
                                counters[i].name, m->cfg.uuid, m->cfg.function_name,
                                (unsigned long long)*(const uint64_t *)((const char *)m +
                                                                         counters[i].off));
    }
    evbuffer_add_printf(b, "# HELP sluice_esm_batches_in_flight Batches invoking or waiting "
                           "for capacity.\n# TYPE sluice_esm_batches_in_flight gauge\n");
    for (struct pl_mapping *m = pl->mappings; m; m = m->next)
        evbuffer_add_printf(b, "sluice_esm_batches_in_flight{mapping=\"%s\",function=\"%s\"} %d\n",
                            m->cfg.uuid, m->cfg.function_name, m->inflight);
    for (struct pl_mapping *m = pl->mappings; m; m = m->next) {
        char labels[200];
        snprintf(labels, sizeof(labels), "mapping=\"%s\",function=\"%s\"", m->cfg.uuid,
                 m->cfg.function_name);
        if (m->src->metrics)
            m->src->metrics(m->state, b, labels);
    }
    return sl_evbuffer_take_string(b);
}

/* ---------------------------------------------------------------------------------------- */
/* Describing mappings (Lambda's EventSourceMappingConfiguration)                           */
/* ---------------------------------------------------------------------------------------- */

static json_t *describe(struct pl_mapping *m)
{
    char arn[300];
    inv_function_arn(m->pl->inv, m->cfg.function_name, arn, sizeof(arn));
    const char *state = !m->cfg.enabled ? "Disabled" : m->draining ? "Disabling" : "Enabled";
    json_t *o = json_pack("{s:s,s:s,s:s,s:i,s:i,s:s,s:s,s:f,s:s,s:[]}", "UUID", m->cfg.uuid,
                          "FunctionArn", arn, "EventSourceArn", m->redacted_arn, "BatchSize",
                          m->batch_size, "MaximumBatchingWindowInSeconds", (int)m->window_s,
                          "State", state, "StateTransitionReason", "USER_INITIATED",
                          "LastModified", m->last_modified, "LastProcessingResult",
                          m->last_result, "FunctionResponseTypes");
    if (!o)
        return NULL;
    if (m->cfg.report_batch_item_failures)
        json_array_append_new(json_object_get(o, "FunctionResponseTypes"),
                              json_string("ReportBatchItemFailures"));
    if (m->cfg.max_concurrency > 0)
        json_object_set_new(o, "ScalingConfig",
                            json_pack("{s:i}", "MaximumConcurrency", m->cfg.max_concurrency));
    char earn[200];
    snprintf(earn, sizeof(earn), "arn:aws:lambda:%s:000000000000:event-source-mapping:%s",
             pl_region(m), m->cfg.uuid);
    json_object_set_new(o, "EventSourceMappingArn", json_string(earn));
    return o;
}

char *pl_mapping_describe(pl_pollers *pl, const char *uuid)
{
    for (struct pl_mapping *m = pl->mappings; m; m = m->next) {
        if (strcmp(m->cfg.uuid, uuid) != 0)
            continue;
        json_t *o = describe(m);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        return s;
    }
    return NULL;
}

char *pl_mapping_list(pl_pollers *pl, const char *function_name, const char *event_source_arn)
{
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    /* Oldest first, as they were added. */
    size_t n = 0;
    for (struct pl_mapping *m = pl->mappings; m; m = m->next)
        n++;
    for (size_t k = n; k-- > 0;) {
        struct pl_mapping *m = pl->mappings;
        for (size_t i = 0; i < k; i++)
            m = m->next;
        if (function_name && strcmp(function_name, m->cfg.function_name) != 0)
            continue;
        if (event_source_arn && strcmp(event_source_arn, m->redacted_arn) != 0 &&
            strcmp(event_source_arn, m->cfg.event_source_arn) != 0)
            continue;
        json_array_append_new(arr, describe(m));
    }
    json_t *o = json_pack("{s:o}", "EventSourceMappings", arr);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}
