/*
 * pollers_internal.h - what the pollers' files share. Not for other modules.
 */
#ifndef SLUICE_POLLERS_INTERNAL_H
#define SLUICE_POLLERS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pollers/pollers.h"

struct evbuffer;
struct event;

/* ---------------------------------------------------------------------------------------- */
/* SQS partial batch responses (poller_sqs.c; the event encoder is public, in pollers.h)    */
/* ---------------------------------------------------------------------------------------- */

/*
 * Reads a function's response under ReportBatchItemFailures for an SQS-shaped batch of n
 * records whose messageIds are ids[0..n). Lambda's rules (lambda-spec 2.6): empty body, null,
 * {} or an empty/null batchItemFailures = all succeeded; otherwise each itemIdentifier must be
 * a non-empty string naming a record of the batch. On success returns 0 and sets failed[i] to
 * true exactly for the reported records (false for the others). Anything invalid (not JSON, a
 * top level other than an object or null, wrong types, an unknown or empty id) returns
 * SL_EPROTO; SL_ENOMEM. On any error every failed[i] is true: the whole batch counts as failed.
 * ids (NUL-terminated) are borrowed for the call; failed may be NULL when n is 0.
 */
int pl_sqs_parse_batch_response(const uint8_t *body, size_t len, const char *const *ids,
                                size_t n, bool *failed);

/* ---------------------------------------------------------------------------------------- */
/* Batches and the source interface (poller_esm.c)                                          */
/* ---------------------------------------------------------------------------------------- */

struct pl_mapping;

/* One record of a batch, as the source needs it back to checkpoint. */
struct pl_item {
    char *id;               /* source id: stream entry id, offset, sequence number */
    int64_t receive_count;  /* queue sources: delivery count */
};

/* A batch: the records' JSON already encoded once into body, between the event's prefix and
 * suffix, plus what the source needs to checkpoint them. Owned by the mapping. */
struct pl_batch {
    struct pl_batch *next;
    struct pl_mapping *m;
    struct evbuffer *body;  /* the whole event once closed: prefix, records, suffix */
    struct pl_item *items;
    size_t n, cap;
    size_t bytes;           /* encoded size of the records */
    int64_t opened_ms;
    int attempts;
    bool closed;
};

/* What a finished invocation means for a batch: per record, done or not. */
enum pl_result {
    PL_RESULT_OK,           /* every record succeeded */
    PL_RESULT_PARTIAL,      /* failed[] lists the records to retry */
    PL_RESULT_FAILED,       /* the whole batch failed */
};

struct pl_outcome {
    enum pl_result result;
    const bool *failed;     /* PL_RESULT_PARTIAL: n flags; borrowed for the call */
    const char *error;      /* short reason for logs and dead letters, e.g. "Unhandled: boom" */
};

/*
 * A source kind: one const struct in the registry (poller_registry.c). The mapping calls these;
 * the source calls back pl_batch_add / pl_batch_close / pl_mapping_set_result.
 */
struct pl_source {
    const char *scheme;          /* "redis" */
    int default_batch_size;
    double default_window_s;
    const char *event_prefix;    /* "{\"Records\":[" */
    const char *event_suffix;    /* "]}" */
    /* Parses the mapping's URI and sets up state; no I/O. */
    int (*create)(struct pl_mapping *m, void **state);
    /* Connects and starts polling. */
    void (*start)(void *state);
    /* The mapping can take more records (a batch finished, capacity came back). */
    void (*poll)(void *state);
    /* ReportBatchItemFailures: reads the response into failed[0..n); SL_EPROTO = invalid. */
    int (*parse_partial)(struct pl_batch *b, const uint8_t *body, size_t len, bool *failed);
    /* Checkpoint: the batch's invocation is over; acknowledge what o says succeeded. */
    void (*complete)(void *state, struct pl_batch *b, const struct pl_outcome *o);
    /* Stop fetching; call done(m) once nothing of the source is in flight. */
    void (*drain)(void *state);
    /* Appends Prometheus samples (labels already in labels, e.g. mapping="..."). */
    void (*metrics)(void *state, struct evbuffer *out, const char *labels);
    void (*destroy)(void *state);
};

const struct pl_source *pl_source_find(const char *uri);

/* The running mapping, as sources see it. */
struct pl_mapping {
    struct pl_mapping *next;
    pl_pollers *pl;
    struct pl_mapping_config cfg;
    const struct pl_source *src;
    void *state;
    int batch_size;
    double window_s;
    int max_inflight;            /* batches in flight at most */
    int inflight;                /* batches invoking or waiting for capacity */
    struct pl_batch *open;       /* the batch being filled */
    struct pl_batch *waiting;    /* closed batches waiting for capacity (FIFO) */
    struct event *window_ev;
    char last_result[256];       /* LastProcessingResult */
    char redacted_arn[1024];
    double last_modified;        /* epoch seconds, for LastModified */
    bool draining;
    bool source_drained;
    /* metrics */
    uint64_t m_records, m_batches, m_batch_ok, m_batch_failed, m_records_failed;
};

/* Can the mapping take more records now (in-flight and function capacity)? */
bool pl_mapping_can_take(struct pl_mapping *m);
/*
 * Appends one record to the open batch (opening one if needed): encode(enc_arg, buf) appends
 * the record's JSON; id and receive_count are kept for the checkpoint. Closes the batch when it
 * reaches BatchSize or would pass the 6 MB cap (then the record starts the next batch).
 * Returns 0 or SL_ENOMEM / SL_ETOOBIG (one record over 6 MB: the caller dead-letters it).
 */
int pl_batch_add(struct pl_mapping *m, const char *id, int64_t receive_count,
                 int (*encode)(void *enc_arg, struct evbuffer *out), void *enc_arg);
/* The source read everything available: close the open batch now unless a window applies. */
void pl_batch_flush(struct pl_mapping *m);
/* Sets LastProcessingResult (printf-style). */
void pl_mapping_set_result(struct pl_mapping *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The source has nothing in flight any more after drain(). */
void pl_mapping_source_drained(struct pl_mapping *m);
/* Region, account and SenderId for events. */
const char *pl_region(struct pl_mapping *m);
inv_invoker *pl_invoker(struct pl_mapping *m);
struct event_base *pl_base(struct pl_mapping *m);

#endif
