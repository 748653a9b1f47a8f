/*
 * poller_redis.c - a Redis stream as a queue with SQS semantics.
 *
 * Two hiredis async connections per mapping, both on the loop: "rd" only ever carries the
 * blocking XREADGROUP (so acknowledgements never wait behind it), "cmd" carries everything
 * else: the group's creation, XACK, reclaiming (XPENDING IDLE + XCLAIM), redrive (one Lua
 * script, atomic), and the statistics behind the metrics.
 *
 *   new entries       XREADGROUP ... STREAMS s >          receive count 1
 *   invisible again   XPENDING s g IDLE <VT> - + COUNT n   then XCLAIM: receive count + 1
 *   redrive           receive count reached maxReceiveCount: XADD dlq + XACK, one script
 *   success           XACK the batch (or all but the batchItemFailures)
 *   failure           nothing acknowledged; the last error kept in a hash for the redrive
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "pollers/pollers_internal.h"

/* An idle mapping has one XREADGROUP blocked for this long at a time. */
#define RS_IDLE_BLOCK_MS 2000
#define RS_BACKOFF_MAX_S 30.0

/* KEYS: source stream, dead-letter stream, errors hash. ARGV: group, id, receive count. */
static const char redrive_lua[] =
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)\n"
    "if #p == 0 then return false end\n"
    "local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])\n"
    "local f = {}\n"
    "if #e > 0 then f = e[1][2] end\n"
    "local err = redis.call('HGET', KEYS[3], ARGV[2])\n"
    "if not err then err = 'unknown (the broker that saw it failing restarted)' end\n"
    "table.insert(f, 'sluice-source-stream') table.insert(f, KEYS[1])\n"
    "table.insert(f, 'sluice-source-id') table.insert(f, ARGV[2])\n"
    "table.insert(f, 'sluice-receive-count') table.insert(f, ARGV[3])\n"
    "table.insert(f, 'sluice-last-error') table.insert(f, err)\n"
    "local id = redis.call('XADD', KEYS[2], '*', unpack(f))\n"
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('HDEL', KEYS[3], ARGV[2])\n"
    "return id\n";

enum rs_state { RS_DOWN, RS_CONNECTING, RS_READY };

#define RS_HIST 6
static const int64_t rc_bounds[RS_HIST - 1] = {1, 2, 3, 5, 10};

struct rs {
    struct pl_mapping *m;
    struct pl_redis_uri u;
    char group[300];
    char consumer[200];
    char errors_key[900];
    redisAsyncContext *rd;
    redisAsyncContext *cmd;
    enum rs_state st;
    bool reading;
    bool claiming;
    bool draining;
    bool drained_reported;
    int pending_cmds;
    double backoff_s;
    bool down_logged;
    char last_error[200];
    struct event *reconnect_ev;
    struct event *claim_ev;
    struct event *stats_ev;
    struct pl_sqs_ctx sqs;
    EVP_MD *md5;          /* fetched once for the encoder */
    /* metrics */
    uint64_t acked, redriven, reclaimed, read_errors;
    uint64_t rc_hist[RS_HIST];
    int64_t lag;          /* XINFO GROUPS lag; -1 unknown */
    int64_t pending;      /* entries delivered and not acknowledged */
    int64_t oldest_pending_ms; /* id time of the oldest pending entry; 0 none */
};

static void rs_poll(void *state);
static void rs_connect(struct rs *r);

/* ---------------------------------------------------------------------------------------- */
/* Connection handling                                                                      */
/* ---------------------------------------------------------------------------------------- */

static void maybe_drained(struct rs *r)
{
    if (r->draining && !r->drained_reported && r->pending_cmds == 0 && r->m->inflight == 0) {
        r->drained_reported = true;
        pl_mapping_source_drained(r->m);
    }
}

static void drop_ctx(struct rs *r, redisAsyncContext **pc)
{
    redisAsyncContext *c = *pc;
    if (!c)
        return;
    *pc = NULL;
    c->data = NULL;
    /* Safe inside hiredis callbacks: it defers the free until the callback returns. */
    redisAsyncFree(c);
}

/* Marks the source down (once), drops both connections and schedules a reconnect. */
static void went_down(struct rs *r, const char *why)
{
    if (r->st == RS_DOWN && !r->rd && !r->cmd)
        return;
    r->st = RS_DOWN;
    r->reading = false;
    r->claiming = false;
    snprintf(r->last_error, sizeof(r->last_error), "%s", why);
    drop_ctx(r, &r->rd);
    drop_ctx(r, &r->cmd);
    pl_mapping_set_result(r->m, "PROBLEM: Source unavailable: %s", why);
    if (r->draining) {
        /* Nothing more will be acknowledged: what is pending comes back after VT. */
        r->pending_cmds = 0;
        maybe_drained(r);
        return;
    }
    if (!r->down_logged) {
        sl_warn("redis", "%s: %s; retrying with backoff up to %.0f s", r->m->redacted_arn, why,
                RS_BACKOFF_MAX_S);
        r->down_logged = true;
    }
    struct timeval tv = {(time_t)r->backoff_s,
                         (suseconds_t)((r->backoff_s - (double)(time_t)r->backoff_s) * 1e6)};
    evtimer_add(r->reconnect_ev, &tv);
    r->backoff_s = r->backoff_s * 2 > RS_BACKOFF_MAX_S ? RS_BACKOFF_MAX_S : r->backoff_s * 2;
}

static void on_disconnect(const redisAsyncContext *c, int status)
{
    struct rs *r = c->data;
    if (!r)
        return;
    if (r->rd == c)
        r->rd = NULL;
    if (r->cmd == c)
        r->cmd = NULL;
    went_down(r, c->errstr[0] ? c->errstr : "connection closed");
}

static void on_connect(const redisAsyncContext *c, int status)
{
    struct rs *r = c->data;
    if (!r)
        return;
    if (status != REDIS_OK) {
        if (r->rd == c)
            r->rd = NULL;
        if (r->cmd == c)
            r->cmd = NULL;
        went_down(r, c->errstr[0] ? c->errstr : "cannot connect");
    }
}

static void on_reconnect_timer(evutil_socket_t fd, short what, void *arg)
{
    rs_connect(arg);
}

/* Counts a command on cmd; its reply callback calls cmd_done. */
static void cmd_done(struct rs *r)
{
    if (r->pending_cmds > 0)
        r->pending_cmds--;
    maybe_drained(r);
}

static void on_group(redisAsyncContext *c, void *reply, void *priv)
{
    struct rs *r = c->data;
    redisReply *rep = reply;
    if (!r)
        return;
    cmd_done(r);
    if (!rep)
        return;
    if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "BUSYGROUP", 9) != 0) {
        char why[200];
        snprintf(why, sizeof(why), "XGROUP CREATE failed: %s", rep->str);
        went_down(r, why);
        return;
    }
    r->st = RS_READY;
    if (r->down_logged)
        sl_info("redis", "%s: connected again; resuming", r->m->redacted_arn);
    else
        sl_info("redis", "%s: connected; group %s, consumer %s", r->m->redacted_arn, r->group,
                r->consumer);
    r->down_logged = false;
    r->backoff_s = 0.5;
    if (strncmp(r->m->last_result, "PROBLEM: Source", 15) == 0)
        pl_mapping_set_result(r->m, "No records processed");
    rs_poll(r);
}

static void on_ignore(redisAsyncContext *c, void *reply, void *priv)
{
    struct rs *r = c->data;
    if (r && priv)
        cmd_done(r);
}

static redisAsyncContext *open_ctx(struct rs *r)
{
    redisAsyncContext *c = redisAsyncConnect(r->u.host, r->u.port);
    if (!c)
        return NULL;
    if (c->err) {
        char why[200];
        snprintf(why, sizeof(why), "%s", c->errstr);
        redisAsyncFree(c);
        went_down(r, why);
        return NULL;
    }
    c->data = r;
    redisLibeventAttach(c, pl_base(r->m));
    redisAsyncSetConnectCallback(c, on_connect);
    redisAsyncSetDisconnectCallback(c, on_disconnect);
    /* AUTH and SELECT go first on the pipeline; their errors surface on the next replies. */
    if (r->u.password[0] && r->u.user[0])
        redisAsyncCommand(c, on_ignore, NULL, "AUTH %s %s", r->u.user, r->u.password);
    else if (r->u.password[0])
        redisAsyncCommand(c, on_ignore, NULL, "AUTH %s", r->u.password);
    if (r->u.db)
        redisAsyncCommand(c, on_ignore, NULL, "SELECT %d", r->u.db);
    return c;
}

static void rs_connect(struct rs *r)
{
    if (r->draining || r->st != RS_DOWN)
        return;
    r->st = RS_CONNECTING;
    r->rd = open_ctx(r);
    if (!r->rd)
        return;
    r->cmd = open_ctx(r);
    if (!r->cmd)
        return;
    r->pending_cmds++;
    redisAsyncCommand(r->cmd, on_group, NULL, "XGROUP CREATE %s %s 0 MKSTREAM", r->u.stream,
                      r->group);
}

/* ---------------------------------------------------------------------------------------- */
/* Reading                                                                                  */
/* ---------------------------------------------------------------------------------------- */

struct enc_arg {
    struct rs *r;
    struct pl_stream_entry e;
};

static int encode_entry(void *arg, struct evbuffer *out)
{
    struct enc_arg *a = arg;
    return pl_sqs_append_record(out, &a->e, &a->r->sqs);
}

/* Adds one reply entry [id, [f1, v1, ...]] to the mapping's batch. */
static void add_entry(struct rs *r, const redisReply *ent, int64_t receive_count,
                      int64_t first_receive_ms)
{
    if (ent->type != REDIS_REPLY_ARRAY || ent->elements != 2 ||
        ent->element[0]->type != REDIS_REPLY_STRING)
        return;
    const redisReply *fv = ent->element[1];
    size_t nf = fv->type == REDIS_REPLY_ARRAY ? fv->elements / 2 : 0;
    const char *names_s[64], *values_s[64];
    size_t nl_s[64], vl_s[64];
    const char **names = names_s, **values = values_s;
    size_t *nl = nl_s, *vl = vl_s;
    if (nf > 64) {
        names = calloc(nf, sizeof(*names));
        values = calloc(nf, sizeof(*values));
        nl = calloc(nf, sizeof(*nl));
        vl = calloc(nf, sizeof(*vl));
        if (!names || !values || !nl || !vl) {
            nf = 0;
            goto out;
        }
    }
    for (size_t i = 0; i < nf; i++) {
        const redisReply *k = fv->element[2 * i], *v = fv->element[2 * i + 1];
        names[i] = k->str ? k->str : "";
        nl[i] = k->str ? (size_t)k->len : 0;
        values[i] = v->str ? v->str : "";
        vl[i] = v->str ? (size_t)v->len : 0;
    }
    struct enc_arg a = {
        .r = r,
        .e = {.id = ent->element[0]->str,
              .nfields = nf,
              .names = names,
              .name_lens = nl,
              .values = values,
              .value_lens = vl,
              .receive_count = receive_count,
              .first_receive_ms = first_receive_ms},
    };
    int err = pl_batch_add(r->m, a.e.id, receive_count, encode_entry, &a);
    if (err)
        sl_error("redis", "%s: cannot batch entry %s: %s; it comes back after the visibility "
                 "timeout", r->m->redacted_arn, a.e.id, sl_strerror(err));
    size_t b = 0;
    while (b < RS_HIST - 1 && receive_count > rc_bounds[b])
        b++;
    r->rc_hist[b]++;
out:
    if (names != names_s) {
        free(names);
        free(values);
        free(nl);
        free(vl);
    }
}

static void on_read(redisAsyncContext *c, void *reply, void *priv)
{
    struct rs *r = c->data;
    redisReply *rep = reply;
    if (!r)
        return;
    r->reading = false;
    if (!rep)
        return; /* disconnected: on_disconnect handles it */
    if (rep->type == REDIS_REPLY_ERROR) {
        r->read_errors++;
        if (strncmp(rep->str, "NOGROUP", 7) == 0) {
            /* The group or the stream was deleted under us: create it again (from the start
             * of the stream, as at first start). */
            sl_warn("redis", "%s: %s; creating the group again", r->m->redacted_arn, rep->str);
            r->pending_cmds++;
            redisAsyncCommand(r->cmd, on_group, NULL, "XGROUP CREATE %s %s 0 MKSTREAM",
                              r->u.stream, r->group);
            return;
        }
        char why[240];
        snprintf(why, sizeof(why), "XREADGROUP failed: %s", rep->str);
        went_down(r, why);
        return;
    }
    if (rep->type == REDIS_REPLY_ARRAY) {
        for (size_t s = 0; s < rep->elements; s++) {
            const redisReply *st = rep->element[s];
            if (st->type != REDIS_REPLY_ARRAY || st->elements != 2)
                continue;
            const redisReply *ents = st->element[1];
            for (size_t i = 0; ents->type == REDIS_REPLY_ARRAY && i < ents->elements; i++)
                add_entry(r, ents->element[i], 1, sl_now_ms());
        }
        pl_batch_flush(r->m);
    }
    rs_poll(r);
}

static void rs_poll(void *state)
{
    struct rs *r = state;
    if (r->st != RS_READY || r->reading || r->draining || !r->rd)
        return;
    if (!pl_mapping_can_take(r->m))
        return;
    struct pl_mapping *m = r->m;
    size_t have = m->open ? m->open->n : 0;
    int count = m->batch_size - (int)have;
    if (count < 1)
        count = 1;
    int block = RS_IDLE_BLOCK_MS;
    if (have > 0 && m->window_s > 0) {
        int64_t left = m->open->opened_ms + (int64_t)(m->window_s * 1000) - sl_now_ms();
        block = left < 1 ? 1 : (int)left;
    }
    r->reading = true;
    redisAsyncCommand(r->rd, on_read, NULL, "XREADGROUP GROUP %s %s COUNT %d BLOCK %d STREAMS %s >",
                      r->group, r->consumer, count, block, r->u.stream);
}

/* ---------------------------------------------------------------------------------------- */
/* Visibility timeout: reclaiming and redrive                                               */
/* ---------------------------------------------------------------------------------------- */

struct claim_ctx {
    size_t n;
    char **ids;
    int64_t *deliveries;
    int64_t *last_ms;  /* when each was last delivered (XPENDING's idle time) */
};

static void claim_ctx_free(struct claim_ctx *cc)
{
    if (!cc)
        return;
    for (size_t i = 0; i < cc->n; i++)
        free(cc->ids[i]);
    free(cc->ids);
    free(cc->deliveries);
    free(cc->last_ms);
    free(cc);
}

static void on_redrive(redisAsyncContext *c, void *reply, void *priv)
{
    struct rs *r = c->data;
    redisReply *rep = reply;
    char *id = priv;
    if (r) {
        cmd_done(r);
        if (rep && rep->type == REDIS_REPLY_STRING) {
            r->redriven++;
            sl_info("redis", "%s: entry %s moved to dead-letter stream %s as %s",
                    r->m->redacted_arn, id, r->u.dead_letter, rep->str);
        } else if (rep && rep->type == REDIS_REPLY_ERROR) {
            sl_error("redis", "%s: redrive of %s failed: %s", r->m->redacted_arn, id, rep->str);
        }
    }
    free(id);
}

static void redrive(struct rs *r, const char *id, int64_t deliveries)
{
    char *copy = strdup(id);
    char cnt[32];
    if (!copy)
        return;
    snprintf(cnt, sizeof(cnt), "%lld", (long long)deliveries);
    r->pending_cmds++;
    redisAsyncCommand(r->cmd, on_redrive, copy, "EVAL %s 3 %s %s %s %s %s %s", redrive_lua,
                      r->u.stream, r->u.dead_letter, r->errors_key, r->group, id, cnt);
}

static void on_claimed(redisAsyncContext *c, void *reply, void *priv)
{
    struct rs *r = c->data;
    redisReply *rep = reply;
    struct claim_ctx *cc = priv;
    if (!r) {
        claim_ctx_free(cc);
        return;
    }
    cmd_done(r);
    r->claiming = false;
    if (rep && rep->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < rep->elements; i++) {
            const redisReply *ent = rep->element[i];
            if (ent->type != REDIS_REPLY_ARRAY || ent->elements != 2 ||
                ent->element[0]->type != REDIS_REPLY_STRING)
                continue;
            int64_t d = 1, first = sl_now_ms();
            for (size_t k = 0; k < cc->n; k++) {
                if (strcmp(cc->ids[k], ent->element[0]->str) == 0) {
                    d = cc->deliveries[k] + 1; /* XCLAIM counted this delivery */
                    first = cc->last_ms[k];
                }
            }
            r->reclaimed++;
            add_entry(r, ent, d, first);
        }
        pl_batch_flush(r->m);
    }
    claim_ctx_free(cc);
}

static void on_pending(redisAsyncContext *c, void *reply, void *priv)
{
    struct rs *r = c->data;
    redisReply *rep = reply;
    if (!r)
        return;
    cmd_done(r);
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements == 0 || r->draining) {
        r->claiming = false;
        return;
    }
    struct claim_ctx *cc = calloc(1, sizeof(*cc));
    const char **argv = calloc(rep->elements + 6, sizeof(char *));
    size_t *argl = calloc(rep->elements + 6, sizeof(size_t));
    if (cc) {
        cc->ids = calloc(rep->elements, sizeof(char *));
        cc->deliveries = calloc(rep->elements, sizeof(int64_t));
        cc->last_ms = calloc(rep->elements, sizeof(int64_t));
    }
    if (!cc || !argv || !argl || !cc->ids || !cc->deliveries || !cc->last_ms) {
        claim_ctx_free(cc);
        free(argv);
        free(argl);
        r->claiming = false;
        return;
    }
    char vt[32];
    snprintf(vt, sizeof(vt), "%lld", (long long)r->u.visibility_timeout_s * 1000);
    size_t a = 0;
    argv[a++] = "XCLAIM";
    argv[a++] = r->u.stream;
    argv[a++] = r->group;
    argv[a++] = r->consumer;
    argv[a++] = vt;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *p = rep->element[i];
        if (p->type != REDIS_REPLY_ARRAY || p->elements < 4 ||
            p->element[0]->type != REDIS_REPLY_STRING)
            continue;
        int64_t deliveries = p->element[3]->integer;
        const char *id = p->element[0]->str;
        if (r->u.max_receive_count > 0 && deliveries >= r->u.max_receive_count) {
            redrive(r, id, deliveries);
            continue;
        }
        cc->ids[cc->n] = strdup(id);
        if (!cc->ids[cc->n])
            continue;
        cc->deliveries[cc->n] = deliveries;
        /* Redis keeps only the last delivery time; for a redelivery it stands in for the
         * first receive (documented in schemas/sqs-event.schema.json). */
        cc->last_ms[cc->n] = sl_now_ms() - p->element[2]->integer;
        argv[a++] = cc->ids[cc->n];
        cc->n++;
    }
    for (size_t i = 0; i < a; i++)
        argl[i] = strlen(argv[i]);
    if (cc->n == 0) {
        claim_ctx_free(cc);
        r->claiming = false;
    } else {
        r->pending_cmds++;
        redisAsyncCommandArgv(r->cmd, on_claimed, cc, (int)a, argv, argl);
    }
    free(argv);
    free(argl);
}

static void on_claim_timer(evutil_socket_t fd, short what, void *arg)
{
    struct rs *r = arg;
    if (r->st == RS_READY && !r->claiming && !r->draining && r->cmd &&
        pl_mapping_can_take(r->m)) {
        r->claiming = true;
        r->pending_cmds++;
        redisAsyncCommand(r->cmd, on_pending, NULL, "XPENDING %s %s IDLE %lld - + %d",
                          r->u.stream, r->group,
                          (long long)r->u.visibility_timeout_s * 1000, r->m->batch_size);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Statistics for the metrics                                                               */
/* ---------------------------------------------------------------------------------------- */

static void on_xinfo(redisAsyncContext *c, void *reply, void *priv)
{
    struct rs *r = c->data;
    redisReply *rep = reply;
    if (!r)
        return;
    cmd_done(r);
    if (!rep || rep->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t g = 0; g < rep->elements; g++) {
        const redisReply *grp = rep->element[g];
        if (grp->type != REDIS_REPLY_ARRAY)
            continue;
        bool ours = false;
        int64_t lag = -1, pending = -1;
        for (size_t k = 0; k + 1 < grp->elements; k += 2) {
            const redisReply *key = grp->element[k], *val = grp->element[k + 1];
            if (key->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(key->str, "name") == 0 && val->type == REDIS_REPLY_STRING)
                ours = strcmp(val->str, r->group) == 0;
            else if (strcmp(key->str, "lag") == 0 && val->type == REDIS_REPLY_INTEGER)
                lag = val->integer;
            else if (strcmp(key->str, "pending") == 0 && val->type == REDIS_REPLY_INTEGER)
                pending = val->integer;
        }
        if (ours) {
            r->lag = lag;
            r->pending = pending;
        }
    }
}

static void on_pending_summary(redisAsyncContext *c, void *reply, void *priv)
{
    struct rs *r = c->data;
    redisReply *rep = reply;
    if (!r)
        return;
    cmd_done(r);
    r->oldest_pending_ms = 0;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 2 &&
        rep->element[1]->type == REDIS_REPLY_STRING)
        r->oldest_pending_ms = strtoll(rep->element[1]->str, NULL, 10);
}

static void on_stats_timer(evutil_socket_t fd, short what, void *arg)
{
    struct rs *r = arg;
    if (r->st != RS_READY || !r->cmd || r->draining)
        return;
    r->pending_cmds += 2;
    redisAsyncCommand(r->cmd, on_xinfo, NULL, "XINFO GROUPS %s", r->u.stream);
    redisAsyncCommand(r->cmd, on_pending_summary, NULL, "XPENDING %s %s", r->u.stream, r->group);
}

static void rs_metrics(void *state, struct evbuffer *out, const char *labels)
{
    struct rs *r = state;
    evbuffer_add_printf(out, "sluice_redis_acknowledged_total{%s} %llu\n", labels,
                        (unsigned long long)r->acked);
    evbuffer_add_printf(out, "sluice_redis_redriven_total{%s} %llu\n", labels,
                        (unsigned long long)r->redriven);
    evbuffer_add_printf(out, "sluice_redis_reclaimed_total{%s} %llu\n", labels,
                        (unsigned long long)r->reclaimed);
    evbuffer_add_printf(out, "sluice_redis_connected{%s} %d\n", labels, r->st == RS_READY);
    uint64_t cum = 0;
    for (int i = 0; i < RS_HIST; i++) {
        cum += r->rc_hist[i];
        if (i < RS_HIST - 1)
            evbuffer_add_printf(out, "sluice_redis_receive_count_bucket{%s,le=\"%lld\"} %llu\n",
                                labels, (long long)rc_bounds[i], (unsigned long long)cum);
        else
            evbuffer_add_printf(out, "sluice_redis_receive_count_bucket{%s,le=\"+Inf\"} %llu\n",
                                labels, (unsigned long long)cum);
    }
    evbuffer_add_printf(out, "sluice_redis_receive_count_count{%s} %llu\n", labels,
                        (unsigned long long)cum);
    evbuffer_add_printf(out, "sluice_redis_backlog{%s} %lld\n", labels, (long long)r->lag);
    evbuffer_add_printf(out, "sluice_redis_pending{%s} %lld\n", labels, (long long)r->pending);
    double age = r->oldest_pending_ms ? (double)(sl_now_ms() - r->oldest_pending_ms) / 1000 : 0;
    evbuffer_add_printf(out, "sluice_redis_oldest_pending_age_seconds{%s} %.3f\n", labels,
                        age < 0 ? 0 : age);
}

/* ---------------------------------------------------------------------------------------- */
/* Checkpoint                                                                               */
/* ---------------------------------------------------------------------------------------- */

static void on_acked(redisAsyncContext *c, void *reply, void *priv)
{
    struct rs *r = c->data;
    redisReply *rep = reply;
    if (!r)
        return;
    if (rep && rep->type == REDIS_REPLY_INTEGER)
        r->acked += (uint64_t)rep->integer;
    else if (rep && rep->type == REDIS_REPLY_ERROR)
        sl_error("redis", "%s: XACK failed: %s; those entries come back after the visibility "
                 "timeout", r->m->redacted_arn, rep->str);
    cmd_done(r);
}

/* Sends CMD KEY [ARG] id... for the items whose failed flag equals want. */
static void send_ids(struct rs *r, const char *cmd, const char *key, const char *arg,
                     struct pl_batch *b, const bool *failed, bool want, const char *value,
                     redisCallbackFn *fn)
{
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++)
        if ((failed ? failed[i] : false) == want)
            n++;
    if (n == 0)
        return;
    size_t per = value ? 2 : 1;
    const char **argv = calloc(3 + n * per, sizeof(char *));
    size_t *argl = calloc(3 + n * per, sizeof(size_t));
    if (!argv || !argl) {
        free(argv);
        free(argl);
        return;
    }
    size_t a = 0;
    argv[a++] = cmd;
    argv[a++] = key;
    if (arg)
        argv[a++] = arg;
    for (size_t i = 0; i < b->n; i++) {
        if ((failed ? failed[i] : false) != want)
            continue;
        argv[a++] = b->items[i].id;
        if (value)
            argv[a++] = value;
    }
    for (size_t i = 0; i < a; i++)
        argl[i] = strlen(argv[i]);
    r->pending_cmds++;
    redisAsyncCommandArgv(r->cmd, fn, r, (int)a, argv, argl);
    free(argv);
    free(argl);
}

static void on_plain(redisAsyncContext *c, void *reply, void *priv)
{
    struct rs *r = c->data;
    if (r)
        cmd_done(r);
}

static void rs_complete(void *state, struct pl_batch *b, const struct pl_outcome *o)
{
    struct rs *r = state;
    if (!r->cmd || r->st != RS_READY) {
        /* No connection: nothing can be acknowledged; the entries come back after VT. */
        return;
    }
    if (o->result == PL_RESULT_FAILED) {
        send_ids(r, "HSET", r->errors_key, NULL, b, NULL, false, o->error, on_plain);
        return;
    }
    const bool *failed = o->result == PL_RESULT_PARTIAL ? o->failed : NULL;
    send_ids(r, "XACK", r->u.stream, r->group, b, failed, false, NULL, on_acked);
    if (failed)
        send_ids(r, "HSET", r->errors_key, NULL, b, failed, true, o->error, on_plain);
    /* Entries that failed before and now succeeded: forget their last error. */
    bool any_retried = false;
    for (size_t i = 0; i < b->n; i++)
        any_retried |= b->items[i].receive_count > 1;
    if (any_retried)
        send_ids(r, "HDEL", r->errors_key, NULL, b, failed, false, NULL, on_plain);
}

static int rs_parse_partial(struct pl_batch *b, const uint8_t *body, size_t len, bool *failed)
{
    const char *ids_s[256] = {0};
    const char **ids = b->n <= 256 ? ids_s : calloc(b->n, sizeof(char *));
    if (!ids)
        return SL_ENOMEM;
    for (size_t i = 0; i < b->n; i++)
        ids[i] = b->items[i].id;
    int err = pl_sqs_parse_batch_response(body, len, ids, b->n, failed);
    if (ids != ids_s)
        free(ids);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* Lifecycle                                                                                */
/* ---------------------------------------------------------------------------------------- */

static void rs_destroy(void *state)
{
    struct rs *r = state;
    if (!r)
        return;
    drop_ctx(r, &r->rd);
    drop_ctx(r, &r->cmd);
    if (r->reconnect_ev)
        event_free(r->reconnect_ev);
    if (r->claim_ev)
        event_free(r->claim_ev);
    if (r->stats_ev)
        event_free(r->stats_ev);
    EVP_MD_free(r->md5);
    free(r);
}

static int rs_create(struct pl_mapping *m, void **state)
{
    char err[256];
    struct rs *r = calloc(1, sizeof(*r));
    if (!r)
        return SL_ENOMEM;
    r->m = m;
    r->lag = -1;
    r->pending = -1;
    r->backoff_s = 0.5;
    if (pl_redis_uri_parse(m->cfg.event_source_arn, &r->u, err, sizeof(err)) != 0) {
        sl_error("redis", "mapping %s: %s", m->cfg.uuid, err);
        free(r);
        return SL_EINVAL;
    }
    if (r->u.group[0])
        snprintf(r->group, sizeof(r->group), "%s", r->u.group);
    else
        snprintf(r->group, sizeof(r->group), "sluice-%s", m->cfg.uuid);
    char host[100] = "host";
    gethostname(host, sizeof(host) - 1);
    snprintf(r->consumer, sizeof(r->consumer), "%s-%d", host, (int)getpid());
    snprintf(r->errors_key, sizeof(r->errors_key), "sluice:errors:%s:%s", r->u.stream, r->group);
    r->sqs.event_source_arn = m->redacted_arn;
    r->sqs.region = pl_region(m);
    r->sqs.sender_id = "sluice";
    r->md5 = EVP_MD_fetch(NULL, "MD5", NULL);
    r->sqs.md5 = r->md5;
    r->reconnect_ev = evtimer_new(pl_base(m), on_reconnect_timer, r);
    r->claim_ev = event_new(pl_base(m), -1, EV_PERSIST, on_claim_timer, r);
    r->stats_ev = event_new(pl_base(m), -1, EV_PERSIST, on_stats_timer, r);
    if (!r->reconnect_ev || !r->claim_ev || !r->stats_ev) {
        rs_destroy(r);
        return SL_ENOMEM;
    }
    *state = r;
    return 0;
}

static void rs_start(void *state)
{
    struct rs *r = state;
    /* Reclaim at a quarter of the visibility timeout (at least every 5 s, at most 10/s). */
    double period = r->u.visibility_timeout_s / 4.0;
    if (period < 0.1)
        period = 0.1;
    if (period > 5)
        period = 5;
    struct timeval tv = {(time_t)period, (suseconds_t)((period - (double)(time_t)period) * 1e6)};
    event_add(r->claim_ev, &tv);
    struct timeval st = {2, 0};
    event_add(r->stats_ev, &st);
    r->st = RS_DOWN;
    rs_connect(r);
}

static void rs_drain(void *state)
{
    struct rs *r = state;
    r->draining = true;
    event_del(r->claim_ev);
    event_del(r->stats_ev);
    event_del(r->reconnect_ev);
    /* The blocked read goes: entries it may still deliver stay pending in the group and come
     * back after the visibility timeout (at-least-once). */
    drop_ctx(r, &r->rd);
    r->reading = false;
    if (!r->cmd)
        r->pending_cmds = 0;
    maybe_drained(r);
}

const struct pl_source pl_redis_source = {
    .scheme = "redis",
    .default_batch_size = 10,
    .default_window_s = 0,
    .event_prefix = "{\"Records\":[",
    .event_suffix = "]}",
    .create = rs_create,
    .start = rs_start,
    .poll = rs_poll,
    .parse_partial = rs_parse_partial,
    .complete = rs_complete,
    .drain = rs_drain,
    .metrics = rs_metrics,
    .destroy = rs_destroy,
};
