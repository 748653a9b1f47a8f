/*
 * poller_retry.h - the failure decider for ordered stream sources (Kafka partitions, Postgres
 * slots): retry attempts, backoff, bisect, partial batch responses, record age and on-failure
 * destinations, applied alike for every source (house style point 3). Internal to the pollers
 * module: only pollers/ files (and the unit tests) include it; other modules see nothing of it.
 *
 * It is pure: no I/O, no event loop, no clock of its own (every call takes now_ms, the caller's
 * clock in milliseconds, the same clock as the record timestamps) and no global state (the
 * jitter RNG is inside the decider, seeded by the caller). One decider serves one ordering unit
 * (a partition, a slot) and one window of records at a time.
 *
 * Model. The caller hands over a window of n records (indices 0..n-1, in source order) with
 * pl_retry_begin(). The decider keeps the records still to process as a queue of *spans*, each
 * a contiguous run [first, last] with its own counters; initially one span, the whole window.
 * Only the front span is ever acted on, and the next span only after it has finished
 * (succeeded or dead-lettered), so order never breaks. Every decision says what to do next:
 *
 *   INVOKE [first,last]       invoke the function with these records now, then pl_retry_report()
 *   WAIT due_ms [first,last]  back off; at due_ms call pl_retry_resume() (the next decision is
 *                             INVOKE, or DEAD_LETTER if the records aged out meanwhile)
 *   DEAD_LETTER [first,last]  send these records to the on-failure destination with condition,
 *                             attempts and invocations; call pl_retry_dead_lettered() only once
 *                             the destination has them durably
 *   DONE                      every record of the window succeeded or is in the destination
 *
 * Every decision also carries the checkpoint k: every record < k succeeded or sits in the
 * destination, and nothing >= k does. The caller may commit (Kafka offset, flush LSN) up to k
 * whenever checkpoint_advanced is set; k never passes a record awaiting delivery to the
 * destination, and it only grows within a window.
 *
 * Decisions (the Lambda text, lambda-spec 1.1, 1.2, 2.6, leaves these open; they are ours):
 *   - Attempts: a span's counted failures. A failed invocation that is not bisected counts one;
 *     when a span's count passes MaximumRetryAttempts (R) it is dead-lettered with
 *     RetryAttemptsExhausted. So R = 0 dead-letters after the first failure, R = 3 after the
 *     fourth invocation, R = -1 never (the age limit, if any, ends it).
 *   - Bisect (BisectBatchOnFunctionError): a function error on a span of two or more records
 *     splits it into [first,mid] and [mid+1,last], mid = first + (last-first)/2, both invoked at
 *     once (no backoff: bisecting is a search, at most log2(n) deep, and Lambda does not count
 *     it as a retry). The halves inherit the span's counters. A single record cannot be split,
 *     so its failures count attempts as if bisect were off.
 *   - Partial response (ReportBatchItemFailures), f = the lowest reported index in the span
 *     (for streams only the lowest matters: everything before it succeeded):
 *       bisect off: [first,f-1] succeeded (the checkpoint moves to f); [f,last] is retried
 *         after backoff with one more attempt (exhausted: [f,last] is dead-lettered).
 *       bisect on ("bisects at the reported record and retries only the remainder"):
 *         f > first: [first,f-1] succeeded; [f,last] is retried at once without counting an
 *           attempt (the split is the bisect; progress is guaranteed since the span shrank).
 *         f == first: no progress, and the function named the culprit: the span is split at
 *           it into [f,f] and [f+1,last] (not in halves: the failing record is known), both
 *           without counting. [f,f] then fails alone and counts attempts like any single record.
 *       A partial response naming the first record with bisect off is the same as a function
 *       error. An f outside the span is the caller's error (SL_EINVAL); Lambda treats an id not
 *       in the batch as a whole-batch failure, so the caller reports FUNCTION_ERROR for it.
 *   - Throttles and system errors (nothing was invoked) never count attempts and never bisect:
 *     the span is retried after backoff until the age limit, as Lambda does. They have their own
 *     backoff counter, reset by the next real invocation.
 *   - Backoff for the k-th counted retry (or k-th consecutive throttle): pl_backoff_s(policy, k).
 *   - Record age (MaximumRecordAgeInSeconds): checked before every INVOKE, when a retry is
 *     decided and on resume, against now_ms. A record is expired when now_ms - ts > age * 1000.
 *     If any record of the front span is expired, the span is cut after the last expired one:
 *     [first,e] is dead-lettered with RecordAgeExceeded (without invoking) and [e+1,last]
 *     continues with the same counters. With monotonic timestamps that is exactly the expired
 *     records; with out-of-order ones (Kafka CreateTime) a younger record between expired ones
 *     goes with them, because order must not break. Exhausted attempts are checked first: a
 *     span that both ran out of attempts and aged out is RetryAttemptsExhausted.
 *   - Invocations (approximateInvokeCount): how many times the span's records were invoked,
 *     inherited through splits; 0 for records that aged out before their first invoke.
 *   - Delivery to the destination failing is the caller's business: it keeps trying (it may use
 *     pl_backoff_s) while the decider waits in DEAD_LETTER; the unit stays blocked, as it must,
 *     since the checkpoint cannot pass undelivered records.
 *   - XXX: Lambda caps infinite retries at 10 for Kafka with an on-failure destination
 *     (lambda-spec 1.1). That is the mapping's concern when it builds the policy: set
 *     max_retry_attempts to 10 there. Likewise the condition's spelling for a kafka://
 *     destination (pl_retry_condition_name).
 *
 * Ownership: pl_retry_new() returns a decider freed with pl_retry_free(); record timestamps are
 * copied by pl_retry_begin(). Every call that fails leaves the decider as it was and writes
 * nothing to *out.
 */
#ifndef SLUICE_POLLER_RETRY_H
#define SLUICE_POLLER_RETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How a backoff delay is drawn from its cap c = min(max, base * 2^(k-1)). */
enum pl_jitter {
    PL_JITTER_EQUAL, /* c/2 + uniform[0, c/2]: spread out, but never hammers (default) */
    PL_JITTER_FULL,  /* uniform[0, c] */
    PL_JITTER_NONE,  /* c exactly */
};

struct pl_retry_policy {
    int max_retry_attempts;          /* MaximumRetryAttempts: -1 = infinite, 0..10000 */
    int max_record_age_s;            /* MaximumRecordAgeInSeconds: -1 = infinite, 60..604800 */
    bool bisect;                     /* BisectBatchOnFunctionError */
    bool report_batch_item_failures; /* FunctionResponseTypes has ReportBatchItemFailures */
    double backoff_base_s;           /* first retry's cap, >= 0 */
    double backoff_max_s;            /* cap of every delay, base..604800 */
    enum pl_jitter jitter;
};

/* Lambda's defaults: -1, -1, no bisect, no partial responses; backoff 1 s doubling to 60 s,
 * equal jitter. */
void pl_retry_policy_defaults(struct pl_retry_policy *p);

/* Returns 0 if every field of p is in range, else SL_EINVAL. */
int pl_retry_policy_check(const struct pl_retry_policy *p);

/*
 * The delay in seconds before the attempt-th retry (attempt >= 1; 0 for attempt <= 0):
 * min(max, base * 2^(attempt-1)), jittered per p->jitter with the xorshift64* generator whose
 * state is *rng (advanced by one draw unless the jitter is NONE; a state of 0 is replaced by a
 * fixed non-zero one). A pure function of p, attempt and *rng; the result is in [0, max].
 */
double pl_backoff_s(const struct pl_retry_policy *p, int attempt, uint64_t *rng);

enum pl_span_result {
    PL_SPAN_OK,             /* every record of the span succeeded */
    PL_SPAN_FUNCTION_ERROR, /* the whole span failed: error, timeout, crash, invalid response */
    PL_SPAN_PARTIAL,        /* records before failed_index succeeded, it and after did not */
    PL_SPAN_THROTTLED,      /* not invoked: no concurrency */
    PL_SPAN_SYSTEM_ERROR,   /* not invoked: the broker could not (spawn failed, ...) */
};

enum pl_retry_action {
    PL_RETRY_INVOKE,
    PL_RETRY_WAIT,
    PL_RETRY_DEAD_LETTER,
    PL_RETRY_DONE,
};

enum pl_retry_condition {
    PL_COND_NONE,
    PL_COND_RETRIES_EXHAUSTED,   /* "RetryAttemptsExhausted" ("RetriesExhausted" on kafka://) */
    PL_COND_RECORD_AGE_EXCEEDED, /* "RecordAgeExceeded" */
};

struct pl_decision {
    enum pl_retry_action action;
    size_t first, last;       /* the span, inclusive (INVOKE, WAIT, DEAD_LETTER) */
    size_t checkpoint;        /* every record < checkpoint is done */
    bool checkpoint_advanced; /* checkpoint grew since the previous decision of this window */
    int attempts;             /* the span's counted failures so far (saturates at INT_MAX) */
    int invocations;          /* times its records were invoked: approximateInvokeCount */
    double delay_s;           /* WAIT: the backoff drawn */
    int64_t due_ms;           /* WAIT: when to call pl_retry_resume() */
    enum pl_retry_condition condition; /* DEAD_LETTER */
};

/* The condition as the destination record spells it; kafka_topic selects the kafka://
 * spelling ("RetriesExhausted"). Static string; "" for PL_COND_NONE. */
const char *pl_retry_condition_name(enum pl_retry_condition c, bool kafka_topic);

typedef struct pl_retry pl_retry;

/*
 * Makes a decider for one ordering unit. p is copied; seed seeds the jitter RNG (same seed,
 * same calls: same decisions). Returns 0 and *out, SL_EINVAL (pl_retry_policy_check), SL_ENOMEM.
 */
int pl_retry_new(const struct pl_retry_policy *p, uint64_t seed, pl_retry **out);

/* Frees the decider; NULL is a no-op. */
void pl_retry_free(pl_retry *r);

/*
 * Starts a window of n records whose timestamps (ms, the clock of now_ms) are record_ts_ms[0..n),
 * copied. The first decision is INVOKE [0, n-1], or DEAD_LETTER of an expired prefix, or DONE
 * when n is 0. Returns 0, SL_EBUSY (the previous window is not DONE), SL_EINVAL (NULL
 * arguments), SL_ENOMEM.
 */
int pl_retry_begin(pl_retry *r, size_t n, const int64_t *record_ts_ms, int64_t now_ms,
                   struct pl_decision *out);

/*
 * Reports how the INVOKE just decided went; failed_index (an index of the window within the
 * span) is read only for PL_SPAN_PARTIAL. Returns 0 and the next decision, or SL_EINVAL: no
 * INVOKE pending, PARTIAL without report_batch_item_failures, failed_index outside the span,
 * an unknown result.
 */
int pl_retry_report(pl_retry *r, enum pl_span_result res, size_t failed_index, int64_t now_ms,
                    struct pl_decision *out);

/*
 * After a WAIT: the next decision (INVOKE, or DEAD_LETTER if the span aged out meanwhile).
 * Called before due_ms it decides WAIT again for the time left. SL_EINVAL if not waiting.
 */
int pl_retry_resume(pl_retry *r, int64_t now_ms, struct pl_decision *out);

/*
 * The span of the pending DEAD_LETTER is durably in the destination: the checkpoint passes it.
 * Returns 0 and the next decision, SL_EINVAL if no DEAD_LETTER is pending.
 */
int pl_retry_dead_lettered(pl_retry *r, int64_t now_ms, struct pl_decision *out);

/* The current checkpoint of the window (n once DONE; 0 before the first window). */
size_t pl_retry_checkpoint(const pl_retry *r);

#endif
