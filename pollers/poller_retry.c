/*
 * poller_retry.c - the failure decider for ordered stream sources; the contract and the
 * decisions are in poller_retry.h.
 *
 * The spans still to process are a stack in an array whose top (the last element) is the front
 * span: splitting replaces the top by the later part and pushes the earlier part. Spans are
 * disjoint and cover [checkpoint, n), so there are never more than n of them and the array is
 * sized once per window, in pl_retry_begin(): nothing after that allocates or can fail for
 * want of memory.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "pollers/poller_retry.h"

struct span {
    size_t first, last;
    int attempts;    /* counted failures */
    int invocations; /* approximateInvokeCount */
    int throttles;   /* consecutive throttles / system errors, for their backoff */
};

enum state {
    ST_IDLE,   /* no window, or the window is DONE */
    ST_INVOKE, /* INVOKE decided, waiting for pl_retry_report() */
    ST_WAIT,   /* WAIT decided, waiting for pl_retry_resume() */
    ST_DEAD,   /* DEAD_LETTER decided, waiting for pl_retry_dead_lettered() */
};

struct pl_retry {
    struct pl_retry_policy p;
    uint64_t rng;
    enum state st;
    size_t n;
    int64_t *ts;        /* n record timestamps, owned */
    struct span *spans; /* stack, top = front span; capacity cap */
    size_t nspans, cap;
    size_t reported; /* checkpoint given in the previous decision */
    int64_t due_ms;  /* ST_WAIT */
};

#define RETRY_MAX_ATTEMPTS 10000
#define RECORD_AGE_MIN_S 60
#define RECORD_AGE_MAX_S 604800
#define BACKOFF_MAX_S 604800.0
#define RNG_ZERO_SEED 0x9e3779b97f4a7c15ULL

/* ---------------------------------------------------------------------------------------- */
/* Policy, RNG and backoff                                                                  */
/* ---------------------------------------------------------------------------------------- */

void pl_retry_policy_defaults(struct pl_retry_policy *p)
{
    memset(p, 0, sizeof(*p));
    p->max_retry_attempts = -1;
    p->max_record_age_s = -1;
    p->bisect = false;
    p->report_batch_item_failures = false;
    p->backoff_base_s = 1.0;
    p->backoff_max_s = 60.0;
    p->jitter = PL_JITTER_EQUAL;
}

int pl_retry_policy_check(const struct pl_retry_policy *p)
{
    if (!p)
        return SL_EINVAL;
    if (p->max_retry_attempts < -1 || p->max_retry_attempts > RETRY_MAX_ATTEMPTS)
        return SL_EINVAL;
    if (p->max_record_age_s != -1 &&
        (p->max_record_age_s < RECORD_AGE_MIN_S || p->max_record_age_s > RECORD_AGE_MAX_S))
        return SL_EINVAL;
    /* Written so that NaN fails every test. */
    if (!(p->backoff_base_s >= 0.0) || !(p->backoff_max_s >= p->backoff_base_s) ||
        !(p->backoff_max_s <= BACKOFF_MAX_S))
        return SL_EINVAL;
    if (p->jitter != PL_JITTER_EQUAL && p->jitter != PL_JITTER_FULL && p->jitter != PL_JITTER_NONE)
        return SL_EINVAL;
    return 0;
}

/* xorshift64* (Vigna): small, fast, good enough for jitter; never returns with state 0. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s ? *s : RNG_ZERO_SEED;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* Uniform in [0, 1), 53 bits. */
static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

double pl_backoff_s(const struct pl_retry_policy *p, int attempt, uint64_t *rng)
{
    if (!p || attempt <= 0 || !(p->backoff_base_s > 0.0) || !(p->backoff_max_s > 0.0))
        return 0.0;
    double max = p->backoff_max_s;
    /* Doubling until the cap rather than pow(): no libm, no overflow, at most ~1100 steps
     * even for a denormal base, and usually a handful. */
    double cap = p->backoff_base_s;
    for (int i = 1; i < attempt && cap < max; i++)
        cap *= 2.0;
    if (cap > max)
        cap = max;
    switch (p->jitter) {
    case PL_JITTER_NONE:
        return cap;
    case PL_JITTER_FULL:
        return cap * rng_unit(rng);
    case PL_JITTER_EQUAL:
    default:
        return cap / 2.0 + (cap / 2.0) * rng_unit(rng);
    }
}

const char *pl_retry_condition_name(enum pl_retry_condition c, bool kafka_topic)
{
    switch (c) {
    case PL_COND_RETRIES_EXHAUSTED:
        return kafka_topic ? "RetriesExhausted" : "RetryAttemptsExhausted";
    case PL_COND_RECORD_AGE_EXCEEDED:
        return "RecordAgeExceeded";
    case PL_COND_NONE:
    default:
        return "";
    }
}

/* ---------------------------------------------------------------------------------------- */
/* The decider                                                                              */
/* ---------------------------------------------------------------------------------------- */

int pl_retry_new(const struct pl_retry_policy *p, uint64_t seed, pl_retry **out)
{
    if (!out || pl_retry_policy_check(p) != 0)
        return SL_EINVAL;
    pl_retry *r = calloc(1, sizeof(*r));
    if (!r)
        return SL_ENOMEM;
    r->p = *p;
    r->rng = seed ? seed : RNG_ZERO_SEED;
    r->st = ST_IDLE;
    *out = r;
    return 0;
}

void pl_retry_free(pl_retry *r)
{
    if (!r)
        return;
    free(r->ts);
    free(r->spans);
    free(r);
}

size_t pl_retry_checkpoint(const pl_retry *r)
{
    if (!r)
        return 0;
    return r->nspans ? r->spans[r->nspans - 1].first : r->n;
}

static int sat_inc(int v)
{
    return v < INT_MAX ? v + 1 : v;
}

static struct span *top(pl_retry *r)
{
    return &r->spans[r->nspans - 1];
}

/* Splits the front span [a,b] after index at (a <= at < b): [a,at] becomes the front, then
 * [at+1,b]; both keep the counters. The stack has room: spans are disjoint, at most n. */
static void split_after(pl_retry *r, size_t at)
{
    struct span *t = top(r);
    struct span front = *t;
    front.last = at;
    t->first = at + 1;
    r->spans[r->nspans++] = front;
}

/* Fills the fields every decision has: the checkpoint and whether it moved. */
static void decide(pl_retry *r, enum pl_retry_action a, struct pl_decision *out)
{
    memset(out, 0, sizeof(*out));
    out->action = a;
    out->checkpoint = pl_retry_checkpoint(r);
    out->checkpoint_advanced = out->checkpoint > r->reported;
    r->reported = out->checkpoint;
    if (r->nspans) {
        const struct span *t = &r->spans[r->nspans - 1];
        out->first = t->first;
        out->last = t->last;
        out->attempts = t->attempts;
        out->invocations = t->invocations;
    }
}

static void dead_letter(pl_retry *r, enum pl_retry_condition c, struct pl_decision *out)
{
    r->st = ST_DEAD;
    decide(r, PL_RETRY_DEAD_LETTER, out);
    out->condition = c;
}

/* Is record i older than the age limit at now? Overflow-free for any pair of int64. */
static bool expired(const pl_retry *r, size_t i, int64_t now_ms)
{
    if (r->p.max_record_age_s < 0 || now_ms <= r->ts[i])
        return false;
    return (uint64_t)now_ms - (uint64_t)r->ts[i] > (uint64_t)r->p.max_record_age_s * 1000u;
}

/* If records of the front span aged out, cuts the span after the last expired one and decides
 * DEAD_LETTER for the cut; returns whether it did. */
static bool age_out(pl_retry *r, int64_t now_ms, struct pl_decision *out)
{
    if (r->p.max_record_age_s < 0)
        return false;
    const struct span *t = top(r);
    /* Scans from the end: the last expired record bounds the cut. O(span) per decision, which
     * is nothing next to an invocation of the same records. */
    for (size_t i = t->last + 1; i-- > t->first;) {
        if (expired(r, i, now_ms)) {
            if (i < t->last)
                split_after(r, i);
            dead_letter(r, PL_COND_RECORD_AGE_EXCEEDED, out);
            return true;
        }
    }
    return false;
}

/* The front span is due: DONE, DEAD_LETTER (aged out) or INVOKE. */
static void next(pl_retry *r, int64_t now_ms, struct pl_decision *out)
{
    if (r->nspans == 0) {
        r->st = ST_IDLE;
        decide(r, PL_RETRY_DONE, out);
        return;
    }
    if (age_out(r, now_ms, out))
        return;
    r->st = ST_INVOKE;
    decide(r, PL_RETRY_INVOKE, out);
}

/* The front span is to be retried after delay_s: DEAD_LETTER if it already aged out, INVOKE at
 * once if there is no delay, else WAIT. */
static void retry_after(pl_retry *r, double delay_s, int64_t now_ms, struct pl_decision *out)
{
    if (age_out(r, now_ms, out))
        return;
    if (!(delay_s > 0.0)) {
        next(r, now_ms, out);
        return;
    }
    /* Rounded up to whole ms: never resume before the delay drawn. delay_s <= 604800. */
    int64_t d = (int64_t)(delay_s * 1000.0);
    if ((double)d < delay_s * 1000.0)
        d++;
    r->due_ms = now_ms > INT64_MAX - d ? INT64_MAX : now_ms + d;
    r->st = ST_WAIT;
    decide(r, PL_RETRY_WAIT, out);
    out->delay_s = delay_s;
    out->due_ms = r->due_ms;
}

/* The front span failed in a way that counts an attempt: dead-letter it when exhausted, else
 * retry it after backoff. */
static void count_failure(pl_retry *r, int64_t now_ms, struct pl_decision *out)
{
    struct span *t = top(r);
    t->attempts = sat_inc(t->attempts);
    if (r->p.max_retry_attempts >= 0 && t->attempts > r->p.max_retry_attempts) {
        dead_letter(r, PL_COND_RETRIES_EXHAUSTED, out);
        return;
    }
    retry_after(r, pl_backoff_s(&r->p, t->attempts, &r->rng), now_ms, out);
}

int pl_retry_begin(pl_retry *r, size_t n, const int64_t *record_ts_ms, int64_t now_ms,
                   struct pl_decision *out)
{
    if (!r || !out || (n && !record_ts_ms))
        return SL_EINVAL;
    if (r->st != ST_IDLE)
        return SL_EBUSY;
    if (n > r->cap) {
        if (n > SIZE_MAX / sizeof(struct span))
            return SL_ENOMEM;
        int64_t *ts = malloc(n * sizeof(*ts));
        struct span *sp = malloc(n * sizeof(*sp));
        if (!ts || !sp) {
            free(ts);
            free(sp);
            return SL_ENOMEM;
        }
        free(r->ts);
        free(r->spans);
        r->ts = ts;
        r->spans = sp;
        r->cap = n;
    }
    if (n)
        memcpy(r->ts, record_ts_ms, n * sizeof(*r->ts));
    r->n = n;
    r->reported = 0;
    r->nspans = 0;
    if (n)
        r->spans[r->nspans++] = (struct span){.first = 0, .last = n - 1};
    next(r, now_ms, out);
    return 0;
}

int pl_retry_report(pl_retry *r, enum pl_span_result res, size_t failed_index, int64_t now_ms,
                    struct pl_decision *out)
{
    if (!r || !out || r->st != ST_INVOKE)
        return SL_EINVAL;
    struct span *t = top(r);
    switch (res) {
    case PL_SPAN_OK:
        r->nspans--;
        next(r, now_ms, out);
        return 0;

    case PL_SPAN_THROTTLED:
    case PL_SPAN_SYSTEM_ERROR:
        /* Nothing ran: no attempt, no bisect, no invocation; retried until the age limit. */
        t->throttles = sat_inc(t->throttles);
        retry_after(r, pl_backoff_s(&r->p, t->throttles, &r->rng), now_ms, out);
        return 0;

    case PL_SPAN_FUNCTION_ERROR:
        t->invocations = sat_inc(t->invocations);
        t->throttles = 0;
        if (r->p.bisect && t->first < t->last) {
            split_after(r, t->first + (t->last - t->first) / 2);
            next(r, now_ms, out);
            return 0;
        }
        count_failure(r, now_ms, out);
        return 0;

    case PL_SPAN_PARTIAL:
        if (!r->p.report_batch_item_failures || failed_index < t->first || failed_index > t->last)
            return SL_EINVAL;
        t->invocations = sat_inc(t->invocations);
        t->throttles = 0;
        if (failed_index > t->first) {
            /* Everything before the lowest failure succeeded: the checkpoint moves there. */
            t->first = failed_index;
            if (r->p.bisect) {
                next(r, now_ms, out);
                return 0;
            }
            count_failure(r, now_ms, out);
            return 0;
        }
        if (r->p.bisect && t->first < t->last) {
            /* The first record is the culprit: isolate it rather than halve the span. */
            split_after(r, t->first);
            next(r, now_ms, out);
            return 0;
        }
        count_failure(r, now_ms, out);
        return 0;
    }
    return SL_EINVAL;
}

int pl_retry_resume(pl_retry *r, int64_t now_ms, struct pl_decision *out)
{
    if (!r || !out || r->st != ST_WAIT)
        return SL_EINVAL;
    if (now_ms < r->due_ms) {
        /* Early (a coarse timer): wait out the rest, unless the records aged out already. */
        if (age_out(r, now_ms, out))
            return 0;
        decide(r, PL_RETRY_WAIT, out);
        out->delay_s = (double)((uint64_t)r->due_ms - (uint64_t)now_ms) / 1000.0;
        out->due_ms = r->due_ms;
        return 0;
    }
    next(r, now_ms, out);
    return 0;
}

int pl_retry_dead_lettered(pl_retry *r, int64_t now_ms, struct pl_decision *out)
{
    if (!r || !out || r->st != ST_DEAD)
        return SL_EINVAL;
    r->nspans--;
    next(r, now_ms, out);
    return 0;
}
