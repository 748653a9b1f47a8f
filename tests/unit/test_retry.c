/*
 * test_retry.c - the failure decider for ordered stream sources (pollers/poller_retry.h).
 *
 * A simulated partition drives the decider the way the mapping will: a window of records, a
 * function that fails exactly on "poison" records (reporting the lowest one when partial batch
 * responses are on, else failing the whole span), an injected clock that moves by the backoff
 * the decider asks for and by the invocation's duration, and a destination that takes dead
 * letters. Every decision is checked against the invariants (order, checkpoint monotonic and
 * equal to the records settled, never past an undelivered record, no expired record invoked)
 * and written to a trace ("I0-9" invoke, "W1000" wait ms, "DR3-3"/"DA0-1" dead letter for
 * retries/age, "C5" checkpoint advanced, "DONE") that the exact-sequence tests compare.
 * Nothing sleeps: time is a number.
 */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "pollers/poller_retry.h"
#include "testlib.h"

/* ---------------------------------------------------------------------------------------- */
/* The simulated partition                                                                  */
/* ---------------------------------------------------------------------------------------- */

enum fate { F_NONE, F_OK, F_DEAD };

struct dl_event {
    size_t first, last;
    enum pl_retry_condition cond;
    int attempts, invocations;
};

struct sim {
    pl_retry *r;
    struct pl_retry_policy p;
    size_t n;
    const bool *poison; /* n flags, borrowed */
    int64_t *ts;        /* n timestamps, owned */
    int64_t now;
    /* behaviour */
    uint64_t rng;             /* the test's own randomness (throttles, durations) */
    double throttle_p;        /* chance an INVOKE is answered THROTTLED / SYSTEM_ERROR */
    int64_t invoke_ms;        /* fixed duration of an invocation */
    int64_t invoke_jitter_ms; /* plus uniform [0, this) */
    int64_t dl_delay_ms;      /* time the destination takes to accept a dead letter */
    long max_steps;
    /* observations */
    enum fate *fate;
    size_t settled; /* records with a fate: always a prefix */
    size_t last_checkpoint;
    long steps, invokes, throttles;
    struct dl_event *dl;
    size_t ndl, dlcap;
    bool done;
    char trace[16384];
    size_t tlen;
};

static uint64_t trng(uint64_t *s)
{
    /* splitmix64: the test's randomness, independent of the decider's. */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double trng_unit(uint64_t *s)
{
    return (double)(trng(s) >> 11) * (1.0 / 9007199254740992.0);
}

static size_t trng_below(uint64_t *s, size_t n)
{
    return (size_t)(trng(s) % n);
}

static void tr(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tr(struct sim *s, const char *fmt, ...)
{
    if (s->tlen + 64 >= sizeof(s->trace))
        return; /* long runs: the trace is only compared for short ones */
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(s->trace + s->tlen, sizeof(s->trace) - s->tlen, fmt, ap);
    va_end(ap);
    if (k > 0)
        s->tlen += (size_t)k;
}

/* ts may be NULL: every record stamped at 0 (and the clock starts at 0). */
static void sim_init(struct sim *s, const struct pl_retry_policy *p, uint64_t seed, size_t n,
                     const bool *poison, const int64_t *ts)
{
    memset(s, 0, sizeof(*s));
    s->p = *p;
    s->n = n;
    s->poison = poison;
    s->rng = seed ^ 0x1234;
    s->max_steps = 1000000;
    T_EQ_INT(pl_retry_new(p, seed, &s->r), 0);
    s->ts = calloc(n ? n : 1, sizeof(*s->ts));
    s->fate = calloc(n ? n : 1, sizeof(*s->fate));
    T_ASSERT(s->ts && s->fate);
    if (ts)
        memcpy(s->ts, ts, n * sizeof(*ts));
}

static void sim_clear(struct sim *s)
{
    pl_retry_free(s->r);
    free(s->ts);
    free(s->fate);
    free(s->dl);
    memset(s, 0, sizeof(*s));
}

static bool expired_at(const struct sim *s, size_t i, int64_t now)
{
    return s->p.max_record_age_s >= 0 && now - s->ts[i] > (int64_t)s->p.max_record_age_s * 1000;
}

static void settle(struct sim *s, size_t first, size_t last, enum fate f)
{
    for (size_t i = first; i <= last; i++) {
        /* In order and exactly once: the next record to settle is always the lowest. */
        if (s->fate[i] != F_NONE)
            T_FAIL("record %zu settled twice", i);
        T_EQ_INT(i, s->settled);
        s->fate[i] = f;
        s->settled++;
    }
}

/* Checks what every decision must satisfy. */
static void check_decision(struct sim *s, const struct pl_decision *d)
{
    T_EQ_INT(d->checkpoint, s->settled);
    T_ASSERT(d->checkpoint >= s->last_checkpoint);
    T_EQ_INT(d->checkpoint_advanced, d->checkpoint > s->last_checkpoint);
    T_EQ_INT(pl_retry_checkpoint(s->r), d->checkpoint);
    s->last_checkpoint = d->checkpoint;
    if (d->action == PL_RETRY_DONE) {
        T_EQ_INT(d->checkpoint, s->n);
        return;
    }
    /* The front span always starts at the checkpoint: nothing overtakes an unsettled record. */
    T_EQ_INT(d->first, d->checkpoint);
    T_ASSERT(d->first <= d->last);
    T_ASSERT(d->last < s->n);
    T_ASSERT(d->attempts >= 0);
    if (s->p.max_retry_attempts >= 0)
        T_ASSERT(d->attempts <= s->p.max_retry_attempts + 1);
    switch (d->action) {
    case PL_RETRY_INVOKE:
        for (size_t i = d->first; i <= d->last; i++)
            if (expired_at(s, i, s->now))
                T_FAIL("record %zu invoked at %" PRId64 " though expired", i, s->now);
        break;
    case PL_RETRY_WAIT:
        T_ASSERT(d->delay_s > 0.0);
        T_ASSERT(d->delay_s <= s->p.backoff_max_s);
        T_ASSERT(d->due_ms >= s->now);
        T_ASSERT(d->due_ms - s->now <= (int64_t)(d->delay_s * 1000.0) + 1);
        break;
    case PL_RETRY_DEAD_LETTER:
        if (d->condition == PL_COND_RETRIES_EXHAUSTED) {
            T_ASSERT(s->p.max_retry_attempts >= 0);
            T_EQ_INT(d->attempts, s->p.max_retry_attempts + 1);
            if (s->p.bisect)
                T_EQ_INT(d->first, d->last);
        } else {
            T_EQ_INT(d->condition, PL_COND_RECORD_AGE_EXCEEDED);
            /* The cut ends at an expired record. */
            T_ASSERT(expired_at(s, d->last, s->now));
        }
        break;
    default:
        T_FAIL("unknown action %d", (int)d->action);
    }
}

/* The simulated function on [a,b]: fails on the lowest poison record. */
static enum pl_span_result run_function(struct sim *s, size_t a, size_t b, size_t *failed)
{
    for (size_t i = a; i <= b; i++) {
        if (s->poison[i]) {
            *failed = i;
            return s->p.report_batch_item_failures ? PL_SPAN_PARTIAL : PL_SPAN_FUNCTION_ERROR;
        }
    }
    return PL_SPAN_OK;
}

/* Runs the window to DONE (or max_steps). */
static void sim_run(struct sim *s)
{
    struct pl_decision d;
    T_EQ_INT(pl_retry_begin(s->r, s->n, s->ts, s->now, &d), 0);
    for (;;) {
        check_decision(s, &d);
        if (d.checkpoint_advanced)
            tr(s, "C%zu ", d.checkpoint);
        if (d.action == PL_RETRY_DONE) {
            tr(s, "DONE");
            s->done = true;
            return;
        }
        if (++s->steps > s->max_steps) {
            tr(s, "...");
            return;
        }
        int rc = 0;
        if (d.action == PL_RETRY_INVOKE) {
            tr(s, "I%zu-%zu ", d.first, d.last);
            int before = d.attempts;
            if (s->throttle_p > 0 && trng_unit(&s->rng) < s->throttle_p) {
                s->throttles++;
                enum pl_span_result t =
                    trng(&s->rng) & 1 ? PL_SPAN_THROTTLED : PL_SPAN_SYSTEM_ERROR;
                size_t first = d.first, last = d.last;
                T_EQ_INT(pl_retry_report(s->r, t, 0, s->now, &d), 0);
                /* Not invoked: no attempt counted, no split, and the checkpoint stays. */
                if (d.action != PL_RETRY_DEAD_LETTER) {
                    T_EQ_INT(d.first, first);
                    T_EQ_INT(d.last, last);
                    T_EQ_INT(d.attempts, before);
                } else {
                    T_EQ_INT(d.condition, PL_COND_RECORD_AGE_EXCEEDED);
                }
                continue;
            }
            s->invokes++;
            size_t failed = 0;
            enum pl_span_result res = run_function(s, d.first, d.last, &failed);
            s->now += s->invoke_ms;
            if (s->invoke_jitter_ms > 0)
                s->now += (int64_t)trng_below(&s->rng, (size_t)s->invoke_jitter_ms);
            if (res == PL_SPAN_OK)
                settle(s, d.first, d.last, F_OK);
            else if (res == PL_SPAN_PARTIAL && failed > d.first)
                settle(s, d.first, failed - 1, F_OK);
            rc = pl_retry_report(s->r, res, failed, s->now, &d);
        } else if (d.action == PL_RETRY_WAIT) {
            tr(s, "W%" PRId64 " ", d.due_ms - s->now);
            s->now = d.due_ms;
            rc = pl_retry_resume(s->r, s->now, &d);
        } else {
            tr(s, "D%c%zu-%zu ", d.condition == PL_COND_RETRIES_EXHAUSTED ? 'R' : 'A', d.first,
               d.last);
            if (s->ndl == s->dlcap) {
                s->dlcap = s->dlcap ? 2 * s->dlcap : 16;
                s->dl = realloc(s->dl, s->dlcap * sizeof(*s->dl));
                T_ASSERT(s->dl);
            }
            s->dl[s->ndl++] =
                (struct dl_event){d.first, d.last, d.condition, d.attempts, d.invocations};
            /* The checkpoint must not pass them before the destination has them. */
            T_ASSERT(pl_retry_checkpoint(s->r) <= d.first);
            s->now += s->dl_delay_ms;
            settle(s, d.first, d.last, F_DEAD);
            rc = pl_retry_dead_lettered(s->r, s->now, &d);
        }
        T_EQ_INT(rc, 0);
    }
}

static struct pl_retry_policy policy(int retries, int age, bool bisect, bool partial)
{
    struct pl_retry_policy p;
    pl_retry_policy_defaults(&p);
    p.max_retry_attempts = retries;
    p.max_record_age_s = age;
    p.bisect = bisect;
    p.report_batch_item_failures = partial;
    p.jitter = PL_JITTER_NONE;
    return p;
}

/* Runs n records with the poison indices listed (ended by -1) and returns the trace in buf. */
static void run_trace(const struct pl_retry_policy *p, size_t n, const int *poison_idx,
                      struct sim *s, bool *poison)
{
    memset(poison, 0, n * sizeof(*poison));
    for (const int *i = poison_idx; *i >= 0; i++)
        poison[*i] = true;
    sim_init(s, p, 42, n, poison, NULL);
    sim_run(s);
}

#define EXPECT_TRACE(p, n, trace_str, ...)                                                         \
    do {                                                                                           \
        struct pl_retry_policy p_ = (p);                                                           \
        const int idx_[] = {__VA_ARGS__, -1};                                                      \
        bool pois_[64];                                                                            \
        struct sim s_;                                                                             \
        run_trace(&p_, (n), idx_, &s_, pois_);                                                     \
        T_EQ_STR(s_.trace, trace_str);                                                             \
        sim_clear(&s_);                                                                            \
    } while (0)

/* ---------------------------------------------------------------------------------------- */
/* Backoff and policy                                                                       */
/* ---------------------------------------------------------------------------------------- */

static void test_backoff_exact(void)
{
    struct pl_retry_policy p = policy(-1, -1, false, false);
    uint64_t rng = 1;
    const double want[] = {1, 2, 4, 8, 16, 32, 60, 60, 60};
    T_ASSERT(pl_backoff_s(&p, 0, &rng) == 0.0);
    T_ASSERT(pl_backoff_s(&p, -5, &rng) == 0.0);
    for (int a = 1; a <= 9; a++)
        if (pl_backoff_s(&p, a, &rng) != want[a - 1])
            T_FAIL("attempt %d: %g != %g", a, pl_backoff_s(&p, a, &rng), want[a - 1]);
    T_EQ_INT(rng, 1); /* no jitter, no draw */
    T_ASSERT(pl_backoff_s(&p, INT_MAX, &rng) == 60.0);
    p.backoff_base_s = 0.25;
    p.backoff_max_s = 3;
    T_ASSERT(pl_backoff_s(&p, 1, &rng) == 0.25);
    T_ASSERT(pl_backoff_s(&p, 3, &rng) == 1.0);
    T_ASSERT(pl_backoff_s(&p, 5, &rng) == 3.0);
    p.backoff_base_s = 0;
    T_ASSERT(pl_backoff_s(&p, 3, &rng) == 0.0);
    p.backoff_base_s = 5e-324; /* denormal: the doubling loop still ends */
    p.backoff_max_s = 604800;
    T_ASSERT(pl_backoff_s(&p, INT_MAX, &rng) == 604800.0);
}

static void test_backoff_jitter_bounds_and_determinism(void)
{
    struct pl_retry_policy p = policy(-1, -1, false, false);
    for (int j = 0; j < 2; j++) {
        p.jitter = j ? PL_JITTER_FULL : PL_JITTER_EQUAL;
        uint64_t a = 7, b = 7, c = 8;
        bool differs = false;
        double lo = 1e9, hi = 0;
        for (int i = 0; i < 20000; i++) {
            int att = 1 + i % 10;
            double cap = att >= 7 ? 60.0 : (double)(1 << (att - 1));
            double x = pl_backoff_s(&p, att, &a);
            double y = pl_backoff_s(&p, att, &b);
            double z = pl_backoff_s(&p, att, &c);
            T_ASSERT(x == y); /* same seed, same sequence */
            differs |= x != z;
            double min = p.jitter == PL_JITTER_EQUAL ? cap / 2 : 0;
            if (!(x >= min && x <= cap))
                T_FAIL("attempt %d: %g outside [%g, %g]", att, x, min, cap);
            if (att == 7) {
                lo = x < lo ? x : lo;
                hi = x > hi ? x : hi;
            }
        }
        T_ASSERT(differs);
        /* The draws spread over the range. */
        double min = p.jitter == PL_JITTER_EQUAL ? 30 : 0;
        T_ASSERT(lo < min + 1.0);
        T_ASSERT(hi > 59.0);
    }
    /* A zero state is replaced, not stuck at zero. */
    p.jitter = PL_JITTER_FULL;
    uint64_t z = 0;
    double x1 = pl_backoff_s(&p, 6, &z), x2 = pl_backoff_s(&p, 6, &z);
    T_ASSERT(z != 0);
    T_ASSERT(x1 != x2);
}

static void test_policy_check(void)
{
    struct pl_retry_policy p;
    pl_retry_policy_defaults(&p);
    T_EQ_INT(p.max_retry_attempts, -1);
    T_EQ_INT(p.max_record_age_s, -1);
    T_EQ_INT(p.bisect, 0);
    T_EQ_INT(p.report_batch_item_failures, 0);
    T_EQ_INT(pl_retry_policy_check(&p), 0);
    const int good_retries[] = {-1, 0, 1, 10000}, bad_retries[] = {-2, 10001, INT_MIN};
    const int good_age[] = {-1, 60, 604800}, bad_age[] = {-2, 0, 59, 604801};
    for (size_t i = 0; i < 4; i++) {
        struct pl_retry_policy q = p;
        q.max_retry_attempts = good_retries[i];
        T_EQ_INT(pl_retry_policy_check(&q), 0);
    }
    for (size_t i = 0; i < 3; i++) {
        struct pl_retry_policy q = p;
        q.max_retry_attempts = bad_retries[i];
        T_EQ_INT(pl_retry_policy_check(&q), SL_EINVAL);
        pl_retry *r = NULL;
        T_EQ_INT(pl_retry_new(&q, 1, &r), SL_EINVAL);
        T_ASSERT(r == NULL);
    }
    for (size_t i = 0; i < 3; i++) {
        struct pl_retry_policy q = p;
        q.max_record_age_s = good_age[i];
        T_EQ_INT(pl_retry_policy_check(&q), 0);
    }
    for (size_t i = 0; i < 4; i++) {
        struct pl_retry_policy q = p;
        q.max_record_age_s = bad_age[i];
        T_EQ_INT(pl_retry_policy_check(&q), SL_EINVAL);
    }
    struct pl_retry_policy q = p;
    q.backoff_base_s = -1;
    T_EQ_INT(pl_retry_policy_check(&q), SL_EINVAL);
    q = p;
    q.backoff_max_s = 0.5; /* below base */
    T_EQ_INT(pl_retry_policy_check(&q), SL_EINVAL);
    q = p;
    q.backoff_max_s = 1e9;
    T_EQ_INT(pl_retry_policy_check(&q), SL_EINVAL);
    q = p;
    q.backoff_base_s = NAN;
    T_EQ_INT(pl_retry_policy_check(&q), SL_EINVAL);
    q = p;
    q.jitter = (enum pl_jitter)7;
    T_EQ_INT(pl_retry_policy_check(&q), SL_EINVAL);
    T_EQ_INT(pl_retry_policy_check(NULL), SL_EINVAL);
    pl_retry_free(NULL);
    T_EQ_STR(pl_retry_condition_name(PL_COND_RETRIES_EXHAUSTED, false), "RetryAttemptsExhausted");
    T_EQ_STR(pl_retry_condition_name(PL_COND_RETRIES_EXHAUSTED, true), "RetriesExhausted");
    T_EQ_STR(pl_retry_condition_name(PL_COND_RECORD_AGE_EXCEEDED, false), "RecordAgeExceeded");
    T_EQ_STR(pl_retry_condition_name(PL_COND_RECORD_AGE_EXCEEDED, true), "RecordAgeExceeded");
    T_EQ_STR(pl_retry_condition_name(PL_COND_NONE, false), "");
}

/* ---------------------------------------------------------------------------------------- */
/* Exact sequences                                                                          */
/* ---------------------------------------------------------------------------------------- */

static void test_all_ok(void)
{
    EXPECT_TRACE(policy(-1, -1, false, false), 5, "I0-4 C5 DONE", -1);
    EXPECT_TRACE(policy(0, 60, true, true), 1, "I0-0 C1 DONE", -1);
}

static void test_function_error_no_bisect(void)
{
    /* The whole batch is retried, then dead-lettered whole. */
    EXPECT_TRACE(policy(2, -1, false, false), 10, "I0-9 W1000 I0-9 W2000 I0-9 DR0-9 C10 DONE", 3);
    struct pl_retry_policy p = policy(2, -1, false, false);
    bool poison[10] = {false};
    const int idx[] = {3, -1};
    struct sim s;
    run_trace(&p, 10, idx, &s, poison);
    T_EQ_INT(s.ndl, 1);
    T_EQ_INT(s.dl[0].attempts, 3);
    T_EQ_INT(s.dl[0].invocations, 3);
    T_EQ_INT(s.dl[0].cond, PL_COND_RETRIES_EXHAUSTED);
    sim_clear(&s);
}

static void test_partial_no_bisect(void)
{
    /* Records before the lowest failure are done; the remainder is retried, then dead-lettered. */
    EXPECT_TRACE(policy(1, -1, false, true), 10, "I0-9 C3 W1000 I3-9 DR3-9 C10 DONE", 3);
    /* Two poisons: the second is only reached with the first's span, and goes with it. */
    EXPECT_TRACE(policy(0, -1, false, true), 10, "I0-9 C3 DR3-9 C10 DONE", 3, 5);
    /* Reported at the first record: the same as a whole failure. */
    EXPECT_TRACE(policy(1, -1, false, true), 4, "I0-3 W1000 I0-3 DR0-3 C4 DONE", 0);
    /* Reported at the last record. */
    EXPECT_TRACE(policy(0, -1, false, true), 4, "I0-3 C3 DR3-3 C4 DONE", 3);
}

static void test_bisect_function_error(void)
{
    EXPECT_TRACE(policy(0, -1, true, false), 10,
                 "I0-9 I0-4 I0-2 C3 I3-4 I3-3 DR3-3 C4 I4-4 C5 I5-9 C10 DONE", 3);
    EXPECT_TRACE(policy(0, -1, true, false), 10,
                 "I0-9 I0-4 I0-2 I0-1 I0-0 DR0-0 C1 I1-1 C2 I2-2 C3 I3-4 C5 I5-9 C10 DONE", 0);
    EXPECT_TRACE(policy(0, -1, true, false), 10,
                 "I0-9 I0-4 C5 I5-9 I5-7 C8 I8-9 I8-8 C9 I9-9 DR9-9 C10 DONE", 9);
    /* Bisecting does not use attempts; the single record does, with backoff. */
    EXPECT_TRACE(policy(2, -1, true, false), 4,
                 "I0-3 I0-1 C2 I2-3 I2-2 W1000 I2-2 W2000 I2-2 DR2-2 C3 I3-3 C4 DONE", 2);
    /* A single-record window with bisect on counts attempts straight away. */
    EXPECT_TRACE(policy(1, -1, true, false), 1, "I0-0 W1000 I0-0 DR0-0 C1 DONE", 0);
    /* Every record poison: each alone, in order. */
    EXPECT_TRACE(policy(0, -1, true, false), 3,
                 "I0-2 I0-1 I0-0 DR0-0 C1 I1-1 DR1-1 C2 I2-2 DR2-2 C3 DONE", 0, 1, 2);
}

static void test_bisect_partial(void)
{
    /* The remainder after the reported record is retried at once, uncounted; the record then
     * reported first is isolated, fails alone and counts. */
    EXPECT_TRACE(policy(0, -1, true, true), 10, "I0-9 C3 I3-9 I3-3 DR3-3 C4 I4-9 C10 DONE", 3);
    EXPECT_TRACE(policy(0, -1, true, true), 10, "I0-9 I0-0 DR0-0 C1 I1-9 C10 DONE", 0);
    EXPECT_TRACE(policy(0, -1, true, true), 10, "I0-9 C9 I9-9 DR9-9 C10 DONE", 9);
    EXPECT_TRACE(policy(1, -1, true, true), 10,
                 "I0-9 C3 I3-9 I3-3 W1000 I3-3 DR3-3 C4 I4-9 C5 I5-9 I5-5 W1000 I5-5 DR5-5 C6 "
                 "I6-9 C10 DONE",
                 3, 5);
    /* Attempts and invocations of the isolated record. */
    struct pl_retry_policy p = policy(2, -1, true, true);
    bool poison[10];
    const int idx[] = {4, -1};
    struct sim s;
    run_trace(&p, 10, idx, &s, poison);
    T_EQ_INT(s.ndl, 1);
    T_EQ_INT(s.dl[0].first, 4);
    T_EQ_INT(s.dl[0].last, 4);
    T_EQ_INT(s.dl[0].attempts, 3);
    T_EQ_INT(s.dl[0].invocations, 5); /* [0,9], [4,9], then [4,4] three times */
    sim_clear(&s);
}

static void test_attempts_exhaustion(void)
{
    EXPECT_TRACE(policy(0, -1, false, false), 1, "I0-0 DR0-0 C1 DONE", 0);
    EXPECT_TRACE(policy(1, -1, false, false), 1, "I0-0 W1000 I0-0 DR0-0 C1 DONE", 0);
    EXPECT_TRACE(policy(3, -1, false, false), 1,
                 "I0-0 W1000 I0-0 W2000 I0-0 W4000 I0-0 DR0-0 C1 DONE", 0);
    for (int R = 0; R <= 3; R++) {
        struct pl_retry_policy p = policy(R, -1, false, false);
        bool poison[3];
        const int idx[] = {1, -1};
        struct sim s;
        run_trace(&p, 3, idx, &s, poison);
        T_EQ_INT(s.invokes, R + 1);
        T_EQ_INT(s.ndl, 1);
        T_EQ_INT(s.dl[0].attempts, R + 1);
        T_EQ_INT(s.dl[0].invocations, R + 1);
        sim_clear(&s);
    }
    /* Infinite retries with an age limit: retried until the record is 60 s old. Invokes at
     * 0, 1, 3, 7, 15, 31 s; the retry due at 63 s finds it too old. */
    EXPECT_TRACE(policy(-1, 60, false, false), 1,
                 "I0-0 W1000 I0-0 W2000 I0-0 W4000 I0-0 W8000 I0-0 W16000 I0-0 W32000 DA0-0 C1 "
                 "DONE",
                 0);
    {
        struct pl_retry_policy p = policy(-1, 60, false, false);
        bool poison[1];
        const int idx[] = {0, -1};
        struct sim s;
        run_trace(&p, 1, idx, &s, poison);
        T_EQ_INT(s.dl[0].cond, PL_COND_RECORD_AGE_EXCEEDED);
        T_EQ_INT(s.dl[0].attempts, 6);
        T_EQ_INT(s.dl[0].invocations, 6);
        sim_clear(&s);
    }
    /* Infinite retries, no age limit: it never gives up, and never moves past the poison. */
    {
        struct pl_retry_policy p = policy(-1, -1, false, false);
        bool poison[5] = {false, false, true, false, false};
        struct sim s;
        sim_init(&s, &p, 1, 5, poison, NULL);
        s.max_steps = 5000;
        sim_run(&s);
        T_ASSERT(!s.done);
        T_EQ_INT(s.settled, 0);
        T_EQ_INT(s.ndl, 0);
        T_EQ_INT(s.invokes, 2500);
        T_EQ_INT(s.now, (1 + 2 + 4 + 8 + 16 + 32) * 1000 + (2500 - 6) * 60000LL);
        sim_clear(&s);
    }
    /* MaximumRetryAttempts 10000 is honoured exactly. */
    {
        struct pl_retry_policy p = policy(10000, -1, true, true);
        p.backoff_base_s = 0.001;
        p.backoff_max_s = 0.001;
        bool poison[2] = {false, true};
        struct sim s;
        sim_init(&s, &p, 1, 2, poison, NULL);
        sim_run(&s);
        T_ASSERT(s.done);
        T_EQ_INT(s.dl[0].attempts, 10001);
        T_EQ_INT(s.dl[0].invocations, 10002);
        sim_clear(&s);
    }
}

static void test_age(void)
{
    struct pl_retry_policy p = policy(-1, 60, false, false);
    /* Expired at the start: the expired prefix goes to the destination uninvoked. */
    {
        const int64_t ts[] = {0, 10000, 70000, 80000, 90000};
        bool poison[5] = {false};
        struct sim s;
        sim_init(&s, &p, 1, 5, poison, ts);
        s.now = 100000;
        sim_run(&s);
        T_EQ_STR(s.trace, "DA0-1 C2 I2-4 C5 DONE");
        T_EQ_INT(s.dl[0].invocations, 0);
        T_EQ_INT(s.dl[0].attempts, 0);
        sim_clear(&s);
    }
    /* Out-of-order timestamps: a younger record between expired ones goes with them. */
    {
        const int64_t ts[] = {90000, 0, 95000};
        bool poison[3] = {false};
        struct sim s;
        sim_init(&s, &p, 1, 3, poison, ts);
        s.now = 100000;
        sim_run(&s);
        T_EQ_STR(s.trace, "DA0-1 C2 I2-2 C3 DONE");
        sim_clear(&s);
    }
    /* Everything expired; exactly 60 s old is not expired yet. */
    {
        const int64_t ts[] = {0, 1, 40000};
        bool poison[3] = {false};
        struct sim s;
        sim_init(&s, &p, 1, 3, poison, ts);
        s.now = 100001;
        sim_run(&s);
        T_EQ_STR(s.trace, "DA0-2 C3 DONE");
        sim_clear(&s);
        sim_init(&s, &p, 1, 3, poison, ts);
        s.now = 60000;
        sim_run(&s);
        T_EQ_STR(s.trace, "I0-2 C3 DONE");
        sim_clear(&s);
    }
    /* The invocation itself took the record past the limit: no retry, straight to the
     * destination, one invocation counted. */
    {
        bool poison[2] = {true, false};
        struct sim s;
        sim_init(&s, &p, 1, 2, poison, NULL);
        s.invoke_ms = 70000;
        sim_run(&s);
        T_EQ_STR(s.trace, "I0-1 DA0-1 C2 DONE");
        T_EQ_INT(s.dl[0].invocations, 1);
        T_EQ_INT(s.dl[0].attempts, 1);
        sim_clear(&s);
    }
    /* Bisect with an age limit: halves that are still young run; the rest ages out. Records
     * stamped 0 s and 50 s; each invocation takes 20 s. */
    {
        struct pl_retry_policy q = policy(-1, 60, true, false);
        const int64_t ts[] = {0, 0, 50000, 50000};
        bool poison[4] = {false, true, false, false};
        struct sim s;
        sim_init(&s, &q, 1, 4, poison, ts);
        s.now = 50000;
        s.invoke_ms = 20000;
        sim_run(&s);
        /* 50 s: [0,3] fails; 70 s: [0,1] has expired records: dead-lettered uninvoked;
         * [2,3] (20 s old) runs. */
        T_EQ_STR(s.trace, "I0-3 DA0-1 C2 I2-3 C4 DONE");
        sim_clear(&s);
    }
    /* Waiting: an early resume waits out the rest; a resume after the limit dead-letters. */
    {
        pl_retry *r;
        struct pl_decision d;
        const int64_t ts[] = {0};
        T_EQ_INT(pl_retry_new(&p, 1, &r), 0);
        T_EQ_INT(pl_retry_begin(r, 1, ts, 0, &d), 0);
        T_EQ_INT(d.action, PL_RETRY_INVOKE);
        T_EQ_INT(pl_retry_report(r, PL_SPAN_FUNCTION_ERROR, 0, 10000, &d), 0);
        T_EQ_INT(d.action, PL_RETRY_WAIT);
        T_EQ_INT(d.due_ms, 11000);
        T_EQ_INT(pl_retry_resume(r, 10400, &d), 0);
        T_EQ_INT(d.action, PL_RETRY_WAIT);
        T_EQ_INT(d.due_ms, 11000);
        T_ASSERT(d.delay_s == 0.6);
        T_EQ_INT(pl_retry_resume(r, 11000, &d), 0);
        T_EQ_INT(d.action, PL_RETRY_INVOKE);
        T_EQ_INT(pl_retry_report(r, PL_SPAN_FUNCTION_ERROR, 0, 59000, &d), 0);
        T_EQ_INT(d.action, PL_RETRY_WAIT);
        T_EQ_INT(d.due_ms, 61000);
        T_EQ_INT(pl_retry_resume(r, 60500, &d), 0); /* early, but expired already */
        T_EQ_INT(d.action, PL_RETRY_DEAD_LETTER);
        T_EQ_INT(d.condition, PL_COND_RECORD_AGE_EXCEEDED);
        T_EQ_INT(d.attempts, 2);
        T_EQ_INT(d.invocations, 2);
        T_EQ_INT(d.checkpoint, 0);
        T_EQ_INT(pl_retry_dead_lettered(r, 60500, &d), 0);
        T_EQ_INT(d.action, PL_RETRY_DONE);
        T_EQ_INT(d.checkpoint, 1);
        T_EQ_INT(d.checkpoint_advanced, 1);
        pl_retry_free(r);
    }
}

static void test_throttles(void)
{
    pl_retry *r;
    struct pl_decision d;
    const int64_t ts[4] = {0};
    /* Throttles and system errors never count, never bisect; their own backoff doubles. */
    struct pl_retry_policy p = policy(0, -1, true, false);
    T_EQ_INT(pl_retry_new(&p, 1, &r), 0);
    T_EQ_INT(pl_retry_begin(r, 4, ts, 0, &d), 0);
    int64_t now = 0;
    for (int i = 0; i < 8; i++) {
        T_EQ_INT(d.action, PL_RETRY_INVOKE);
        T_EQ_INT(pl_retry_report(r, i & 1 ? PL_SPAN_SYSTEM_ERROR : PL_SPAN_THROTTLED, 0, now, &d),
                 0);
        T_EQ_INT(d.action, PL_RETRY_WAIT);
        T_EQ_INT(d.first, 0);
        T_EQ_INT(d.last, 3);
        T_EQ_INT(d.attempts, 0);
        T_EQ_INT(d.invocations, 0);
        T_EQ_INT(d.due_ms - now, i < 6 ? 1000LL << i : 60000);
        now = d.due_ms;
        T_EQ_INT(pl_retry_resume(r, now, &d), 0);
    }
    /* The function then fails: bisect, as if the throttles never happened. */
    T_EQ_INT(pl_retry_report(r, PL_SPAN_FUNCTION_ERROR, 0, now, &d), 0);
    T_EQ_INT(d.action, PL_RETRY_INVOKE);
    T_EQ_INT(d.first, 0);
    T_EQ_INT(d.last, 1);
    T_EQ_INT(d.invocations, 1);
    pl_retry_free(r);

    /* The first real failure resets the throttle backoff and counts; the next throttle starts
     * again at the base. */
    p = policy(2, -1, false, false);
    T_EQ_INT(pl_retry_new(&p, 1, &r), 0);
    T_EQ_INT(pl_retry_begin(r, 4, ts, 0, &d), 0);
    T_EQ_INT(pl_retry_report(r, PL_SPAN_THROTTLED, 0, 0, &d), 0);
    T_EQ_INT(d.due_ms, 1000);
    T_EQ_INT(pl_retry_resume(r, 1000, &d), 0);
    T_EQ_INT(pl_retry_report(r, PL_SPAN_THROTTLED, 0, 1000, &d), 0);
    T_EQ_INT(d.due_ms, 3000);
    T_EQ_INT(pl_retry_resume(r, 3000, &d), 0);
    T_EQ_INT(pl_retry_report(r, PL_SPAN_FUNCTION_ERROR, 0, 3000, &d), 0);
    T_EQ_INT(d.attempts, 1);
    T_EQ_INT(d.due_ms, 4000);
    T_EQ_INT(pl_retry_resume(r, 4000, &d), 0);
    T_EQ_INT(pl_retry_report(r, PL_SPAN_THROTTLED, 0, 4000, &d), 0);
    T_EQ_INT(d.attempts, 1);
    T_EQ_INT(d.due_ms, 5000);
    T_EQ_INT(pl_retry_resume(r, 5000, &d), 0);
    T_EQ_INT(pl_retry_report(r, PL_SPAN_FUNCTION_ERROR, 0, 5000, &d), 0);
    T_EQ_INT(d.attempts, 2);
    T_EQ_INT(d.due_ms, 7000);
    T_EQ_INT(pl_retry_resume(r, 7000, &d), 0);
    T_EQ_INT(pl_retry_report(r, PL_SPAN_OK, 0, 7000, &d), 0);
    T_EQ_INT(d.action, PL_RETRY_DONE);
    T_EQ_INT(d.checkpoint, 4);
    pl_retry_free(r);

    /* Throttled for ever with an age limit: dead-lettered for age, never invoked. */
    p = policy(0, 60, false, false);
    bool poison[3] = {false};
    struct sim s;
    sim_init(&s, &p, 1, 3, poison, NULL);
    s.throttle_p = 1.0;
    sim_run(&s);
    T_EQ_STR(s.trace, "I0-2 W1000 I0-2 W2000 I0-2 W4000 I0-2 W8000 I0-2 W16000 I0-2 W32000 "
                      "DA0-2 C3 DONE");
    T_EQ_INT(s.invokes, 0);
    T_EQ_INT(s.dl[0].invocations, 0);
    T_EQ_INT(s.dl[0].attempts, 0);
    sim_clear(&s);
}

static void test_api_misuse(void)
{
    pl_retry *r;
    struct pl_decision d, keep;
    struct pl_retry_policy p = policy(1, -1, false, false);
    const int64_t ts[3] = {0};
    T_EQ_INT(pl_retry_new(&p, 1, &r), 0);
    T_EQ_INT(pl_retry_checkpoint(r), 0);
    T_EQ_INT(pl_retry_report(r, PL_SPAN_OK, 0, 0, &d), SL_EINVAL);
    T_EQ_INT(pl_retry_resume(r, 0, &d), SL_EINVAL);
    T_EQ_INT(pl_retry_dead_lettered(r, 0, &d), SL_EINVAL);
    T_EQ_INT(pl_retry_begin(r, 3, NULL, 0, &d), SL_EINVAL);
    T_EQ_INT(pl_retry_begin(r, 3, ts, 0, NULL), SL_EINVAL);
    /* An empty window is done at once. */
    T_EQ_INT(pl_retry_begin(r, 0, NULL, 0, &d), 0);
    T_EQ_INT(d.action, PL_RETRY_DONE);
    T_EQ_INT(d.checkpoint, 0);
    T_EQ_INT(pl_retry_begin(r, 3, ts, 0, &d), 0);
    T_EQ_INT(d.action, PL_RETRY_INVOKE);
    /* A window at a time. */
    T_EQ_INT(pl_retry_begin(r, 3, ts, 0, &d), SL_EBUSY);
    /* PARTIAL without ReportBatchItemFailures; an unknown result; wrong calls for the state. */
    memset(&d, 0x5a, sizeof(d));
    keep = d;
    T_EQ_INT(pl_retry_report(r, PL_SPAN_PARTIAL, 1, 0, &d), SL_EINVAL);
    T_EQ_INT(pl_retry_report(r, (enum pl_span_result)99, 0, 0, &d), SL_EINVAL);
    T_EQ_INT(pl_retry_resume(r, 0, &d), SL_EINVAL);
    T_EQ_INT(pl_retry_dead_lettered(r, 0, &d), SL_EINVAL);
    T_ASSERT(memcmp(&d, &keep, sizeof(d)) == 0); /* a failed call writes nothing */
    /* The failed calls changed nothing: the invocation can still be reported. */
    T_EQ_INT(pl_retry_report(r, PL_SPAN_FUNCTION_ERROR, 0, 0, &d), 0);
    T_EQ_INT(d.action, PL_RETRY_WAIT);
    T_EQ_INT(pl_retry_report(r, PL_SPAN_OK, 0, 0, &d), SL_EINVAL);
    T_EQ_INT(pl_retry_resume(r, d.due_ms, &d), 0);
    T_EQ_INT(pl_retry_report(r, PL_SPAN_FUNCTION_ERROR, 0, 0, &d), 0);
    T_EQ_INT(d.action, PL_RETRY_DEAD_LETTER);
    T_EQ_INT(pl_retry_report(r, PL_SPAN_OK, 0, 0, &d), SL_EINVAL);
    T_EQ_INT(pl_retry_resume(r, 0, &d), SL_EINVAL);
    T_EQ_INT(pl_retry_begin(r, 3, ts, 0, &d), SL_EBUSY);
    T_EQ_INT(pl_retry_dead_lettered(r, 0, &d), 0);
    T_EQ_INT(d.action, PL_RETRY_DONE);
    T_EQ_INT(d.checkpoint, 3);
    T_EQ_INT(pl_retry_dead_lettered(r, 0, &d), SL_EINVAL);
    pl_retry_free(r);

    /* A partial index outside the span. */
    p = policy(1, -1, true, true);
    T_EQ_INT(pl_retry_new(&p, 1, &r), 0);
    const int64_t ts8[8] = {0};
    T_EQ_INT(pl_retry_begin(r, 8, ts8, 0, &d), 0);
    T_EQ_INT(pl_retry_report(r, PL_SPAN_FUNCTION_ERROR, 0, 0, &d), 0);
    T_EQ_INT(d.first, 0);
    T_EQ_INT(d.last, 3);
    T_EQ_INT(pl_retry_report(r, PL_SPAN_PARTIAL, 4, 0, &d), SL_EINVAL);
    T_EQ_INT(pl_retry_report(r, PL_SPAN_PARTIAL, SIZE_MAX, 0, &d), SL_EINVAL);
    T_EQ_INT(pl_retry_report(r, PL_SPAN_OK, 0, 0, &d), 0);
    T_EQ_INT(d.first, 4);
    T_EQ_INT(pl_retry_report(r, PL_SPAN_PARTIAL, 3, 0, &d), SL_EINVAL);
    T_EQ_INT(pl_retry_report(r, PL_SPAN_PARTIAL, 6, 0, &d), 0);
    T_EQ_INT(d.checkpoint, 6);
    T_EQ_INT(d.first, 6);
    T_EQ_INT(d.last, 7);
    pl_retry_free(r);
}

static void test_windows_reuse_and_seed(void)
{
    /* One decider serves window after window; a larger window grows its arrays. */
    struct pl_retry_policy p = policy(1, -1, true, true);
    p.jitter = PL_JITTER_EQUAL;
    pl_retry *r;
    T_EQ_INT(pl_retry_new(&p, 99, &r), 0);
    for (size_t n = 1; n < 300; n = n * 3 + 1) {
        int64_t *ts = calloc(n, sizeof(*ts));
        T_ASSERT(ts);
        struct pl_decision d;
        T_EQ_INT(pl_retry_begin(r, n, ts, 0, &d), 0);
        T_EQ_INT(d.checkpoint, 0);
        T_EQ_INT(d.checkpoint_advanced, 0);
        T_EQ_INT(d.last, n - 1);
        T_EQ_INT(pl_retry_report(r, PL_SPAN_OK, 0, 0, &d), 0);
        T_EQ_INT(d.action, PL_RETRY_DONE);
        T_EQ_INT(d.checkpoint, n);
        free(ts);
    }
    pl_retry_free(r);

    /* Same seed, same run; another seed, other delays. */
    bool poison[40] = {false};
    poison[7] = poison[8] = poison[30] = true;
    struct sim a, b, c;
    sim_init(&a, &p, 5, 40, poison, NULL);
    sim_init(&b, &p, 5, 40, poison, NULL);
    sim_init(&c, &p, 6, 40, poison, NULL);
    sim_run(&a);
    sim_run(&b);
    sim_run(&c);
    T_EQ_STR(a.trace, b.trace);
    T_ASSERT(strcmp(a.trace, c.trace) != 0);
    T_EQ_INT(a.now, b.now);
    sim_clear(&a);
    sim_clear(&b);
    sim_clear(&c);
}

/* ---------------------------------------------------------------------------------------- */
/* Poison at every position; randomized invariants                                          */
/* ---------------------------------------------------------------------------------------- */

static int ceil_log2(size_t n)
{
    int k = 0;
    while (((size_t)1 << k) < n)
        k++;
    return k;
}

static void test_poison_every_position(void)
{
    for (int mode = 0; mode < 4; mode++) {
        bool bisect = mode & 1, partial = mode & 2;
        for (size_t n = 1; n <= 40; n++) {
            for (size_t at = 0; at < n; at++) {
                struct pl_retry_policy p = policy(0, -1, bisect, partial);
                bool poison[40] = {false};
                poison[at] = true;
                struct sim s;
                sim_init(&s, &p, n * 100 + at, n, poison, NULL);
                sim_run(&s);
                T_ASSERT(s.done);
                T_EQ_INT(s.ndl, 1);
                T_EQ_INT(s.dl[0].cond, PL_COND_RETRIES_EXHAUSTED);
                T_EQ_INT(s.dl[0].last, bisect ? at : n - 1);
                T_EQ_INT(s.dl[0].first, bisect || partial ? at : 0);
                for (size_t i = 0; i < n; i++) {
                    bool dead = i >= s.dl[0].first && i <= s.dl[0].last;
                    T_EQ_INT(s.fate[i], dead ? F_DEAD : F_OK);
                }
                /* Bisect finds it in about two invocations per level. */
                if (bisect && !partial)
                    T_ASSERT(s.invokes <= 2 * ceil_log2(n) + 2);
                if (bisect && partial)
                    T_ASSERT(s.invokes <= 4);
                if (!bisect)
                    T_EQ_INT(s.invokes, 1);
                sim_clear(&s);
            }
        }
    }
}

static void test_randomized(void)
{
    uint64_t rng = 20261125;
    const int retries[] = {-1, 0, 1, 2, 3, 10};
    long total_invokes = 0, total_dl = 0;
    for (int iter = 0; iter < 600; iter++) {
        struct pl_retry_policy p;
        pl_retry_policy_defaults(&p);
        p.max_retry_attempts =
            trng(&rng) % 8 ? retries[trng_below(&rng, 6)] : (int)trng_below(&rng, 30);
        p.max_record_age_s = trng(&rng) % 3 ? -1 : 60 + (int)trng_below(&rng, 600);
        p.bisect = trng(&rng) & 1;
        p.report_batch_item_failures = trng(&rng) & 1;
        p.backoff_base_s = 0.001 + trng_unit(&rng) * 2;
        p.backoff_max_s = p.backoff_base_s + trng_unit(&rng) * 60;
        p.jitter = (enum pl_jitter)trng_below(&rng, 3);
        size_t n = 1 + trng_below(&rng, 500);
        const double densities[] = {0, 0.002, 0.01, 0.1, 0.5, 1};
        double density = densities[trng_below(&rng, 6)];
        bool *poison = calloc(n, sizeof(*poison));
        int64_t *ts = calloc(n, sizeof(*ts));
        T_ASSERT(poison && ts);
        size_t npoison = 0;
        for (size_t i = 0; i < n; i++) {
            poison[i] = trng_unit(&rng) < density;
            npoison += poison[i];
        }
        /* Infinite retries without an age limit never finish on a poison record. */
        if (p.max_retry_attempts < 0 && p.max_record_age_s < 0 && npoison)
            p.max_record_age_s = 60 + (int)trng_below(&rng, 600);
        bool monotonic = trng(&rng) & 1;
        int64_t start = 1700000000000LL;
        for (size_t i = 0; i < n; i++)
            ts[i] = monotonic ? start - 30000 + (int64_t)i * 10
                              : start - (int64_t)trng_below(&rng, 90000);
        struct sim s;
        sim_init(&s, &p, trng(&rng), n, poison, ts);
        s.now = start;
        s.throttle_p = trng(&rng) % 3 ? 0 : trng_unit(&rng) * 0.3;
        s.invoke_ms = (int64_t)trng_below(&rng, 3000);
        s.invoke_jitter_ms = 1 + (int64_t)trng_below(&rng, 2000);
        s.dl_delay_ms = (int64_t)trng_below(&rng, 5000);
        sim_run(&s);
        if (!s.done)
            T_FAIL("iteration %d did not finish in %ld steps (n %zu)", iter, s.steps, n);
        /* Every record settled exactly once (settle() checks once and in order). */
        T_EQ_INT(s.settled, n);
        size_t ndead = 0;
        for (size_t i = 0; i < n; i++) {
            T_ASSERT(s.fate[i] != F_NONE);
            /* The function fails only on poison records, and always on them. */
            if (poison[i])
                T_EQ_INT(s.fate[i], F_DEAD);
            ndead += s.fate[i] == F_DEAD;
        }
        /* Bisect without an age limit dead-letters exactly the poison records, one at a time. */
        if (p.bisect && p.max_record_age_s < 0) {
            T_EQ_INT(ndead, npoison);
            T_EQ_INT(s.ndl, npoison);
        }
        /* Dead letters are disjoint, ordered and cover exactly the dead records. */
        size_t covered = 0, prev_end = 0;
        for (size_t k = 0; k < s.ndl; k++) {
            T_ASSERT(k == 0 || s.dl[k].first >= prev_end);
            prev_end = s.dl[k].last + 1;
            covered += s.dl[k].last - s.dl[k].first + 1;
            if (s.dl[k].cond == PL_COND_RETRIES_EXHAUSTED) {
                /* Something in it was poison: healthy records are never retried out. */
                bool any = false;
                for (size_t i = s.dl[k].first; i <= s.dl[k].last; i++)
                    any |= poison[i];
                T_ASSERT(any);
            }
        }
        T_EQ_INT(covered, ndead);
        if (npoison == 0 && p.max_record_age_s < 0)
            T_EQ_INT(s.ndl, 0);
        total_invokes += s.invokes;
        total_dl += (long)s.ndl;
        sim_clear(&s);
        free(poison);
        free(ts);
    }
    fprintf(stderr, "   600 windows: %ld invocations, %ld dead letters\n", total_invokes, total_dl);
}

int main(void)
{
    T_RUN(test_backoff_exact);
    T_RUN(test_backoff_jitter_bounds_and_determinism);
    T_RUN(test_policy_check);
    T_RUN(test_all_ok);
    T_RUN(test_function_error_no_bisect);
    T_RUN(test_partial_no_bisect);
    T_RUN(test_bisect_function_error);
    T_RUN(test_bisect_partial);
    T_RUN(test_attempts_exhaustion);
    T_RUN(test_age);
    T_RUN(test_throttles);
    T_RUN(test_api_misuse);
    T_RUN(test_windows_reuse_and_seed);
    T_RUN(test_poison_every_position);
    T_RUN(test_randomized);
    fprintf(stderr, "ok\n");
    return 0;
}
