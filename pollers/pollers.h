/*
 * pollers.h - the pollers module's public header: event source mappings.
 *
 * A mapping polls one source, batches its records (BatchSize, MaximumBatchingWindowInSeconds,
 * the 6 MB payload cap, whichever first), invokes a function with each batch, and tells the
 * source what to checkpoint. Every source kind is one `const struct pl_source` of callbacks in
 * one registry (poller_registry.c); the batcher and the invocation/outcome logic are shared.
 */
#ifndef SLUICE_POLLERS_H
#define SLUICE_POLLERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/broker.h"
#include "invoker/invoker.h"

struct event_base;
struct evbuffer;
struct evp_md_st; /* OpenSSL's EVP_MD */

/* ---------------------------------------------------------------------------------------- */
/* Mapping configuration (config file now, the control plane later).                       */
/* ---------------------------------------------------------------------------------------- */

/* Lambda's cap on one batch's payload. */
#define PL_BATCH_PAYLOAD_MAX (6 * 1024 * 1024)

struct pl_mapping_config {
    char uuid[37];              /* UUID; derived from FunctionName+EventSourceArn when absent */
    char *function_name;
    char *event_source_arn;     /* the source URI, e.g. redis://host:port/stream?... */
    int batch_size;             /* 1..10000; 0 = the source's default */
    double window_s;            /* MaximumBatchingWindowInSeconds; < 0 = the source's default */
    bool enabled;               /* default true */
    bool report_batch_item_failures; /* FunctionResponseTypes: [ReportBatchItemFailures] */
    int max_concurrency;        /* ScalingConfig.MaximumConcurrency 2..1000; 0 = unset */
};

void pl_mapping_config_defaults(struct pl_mapping_config *mc);
int pl_mapping_config_copy(struct pl_mapping_config *dst, const struct pl_mapping_config *src);
void pl_mapping_config_clear(struct pl_mapping_config *mc);

/*
 * Checks a mapping against its source kind (URI form and query keys, ranges such as "BatchSize
 * above 10 needs a batching window"). On error returns SL_EINVAL and writes a sentence into
 * err (errsz bytes) that names the field. Used by the config parser and the API alike.
 */
int pl_mapping_validate(const struct pl_mapping_config *mc, char *err, size_t errsz);

/* Writes the mapping's UUID derived from function name and source (stable across restarts). */
void pl_mapping_derive_uuid(const char *function_name, const char *arn, char out[37]);

/*
 * A malloc'd copy of p[0..n) with each maximal ill-formed UTF-8 subpart replaced by U+FFFD (the
 * rule every encoder of the pollers applies), NUL-terminated; its length in *outlen. NULL when
 * out of memory or n is absurd. For callers that feed text to jansson, which takes only UTF-8.
 */
char *pl_utf8_repaired(const void *p, size_t n, size_t *outlen);

/* ---------------------------------------------------------------------------------------- */
/* The set of running mappings.                                                             */
/* ---------------------------------------------------------------------------------------- */

typedef struct pl_pollers pl_pollers;

/* Creates the (empty) set on base; inv is borrowed for its lifetime. */
int pl_new(struct event_base *base, inv_invoker *inv, br_store *store, pl_pollers **out);
/* Stops every mapping at once (no draining) and frees everything. NULL is a no-op. */
void pl_free(pl_pollers *pl);

/*
 * Adds a mapping (config copied) and, when enabled, starts it: it connects in the background
 * (connection problems are retried with backoff and reported in LastProcessingResult, never
 * a start-up failure). Returns 0, SL_EINVAL (see pl_mapping_validate), SL_EEXIST.
 */
int pl_mapping_add(pl_pollers *pl, const struct pl_mapping_config *mc);

/*
 * Drains every mapping: no new batches; cb runs once every batch in flight has finished and
 * been checkpointed (acknowledged, committed, flushed).
 */
void pl_drain(pl_pollers *pl, void (*cb)(void *arg), void *arg);

/*
 * Describes mappings as Lambda's EventSourceMappingConfiguration (JSON, caller frees with
 * free()): one mapping by UUID (NULL when unknown), or {"EventSourceMappings":[...]} of those
 * whose FunctionName and EventSourceArn match the filters (NULL filter = any).
 */
char *pl_mapping_describe(pl_pollers *pl, const char *uuid);
char *pl_mapping_list(pl_pollers *pl, const char *function_name, const char *event_source_arn);

/* Appends Prometheus text for every mapping; caller frees. */
char *pl_metrics_text(pl_pollers *pl);

/* ---------------------------------------------------------------------------------------- */
/* Redis stream URIs (poller_config.c)                                                      */
/*                                                                                          */
/*   redis://[[user]:password@]host[:port][/db]/stream[?key=value&...]                      */
/* Query keys (as SQS keeps them on the queue; names are case-sensitive, as listed):        */
/*   VisibilityTimeout   seconds 0..43200, default 30                                       */
/*   maxReceiveCount     1..1000; with deadLetterTarget forms the redrive policy; default   */
/*                       none (messages are retried forever)                                */
/*   deadLetterTarget    stream name in the same database                                   */
/*   ConsumerGroup       group name, default "sluice-<mapping uuid>"                        */
/*   tls                 "true" is refused for now (XXX: hiredis TLS build not in Debian 12)*/
/* ---------------------------------------------------------------------------------------- */

struct pl_redis_uri {
    char host[256];
    int port;              /* default 6379 */
    int db;                /* default 0 */
    char user[128];        /* "" = none */
    char password[256];    /* "" = none */
    char stream[512];
    int visibility_timeout_s;
    int max_receive_count; /* 0 = no redrive */
    char dead_letter[512]; /* "" = none */
    char group[256];       /* "" = default (derived from the mapping's UUID) */
};

/*
 * Parses uri into out. Returns 0, or SL_EINVAL with a sentence in err naming what is wrong
 * ("VisibilityTimeout: 50000 is out of range 0..43200", "unknown query key 'foo'", ...).
 * maxReceiveCount and deadLetterTarget must come together.
 */
int pl_redis_uri_parse(const char *uri, struct pl_redis_uri *out, char *err, size_t errsz);

/* Writes the URI without credentials (for eventSourceARN and logs) into out. Returns out. */
char *pl_uri_redact(const char *uri, char *out, size_t outsz);

/* ---------------------------------------------------------------------------------------- */
/* SQS-shaped events (poller_sqs.c)                                                         */
/* ---------------------------------------------------------------------------------------- */

/* One stream entry as read by XREADGROUP/XCLAIM: its id and field/value pairs (borrowed). */
struct pl_stream_entry {
    const char *id;        /* "1700000000000-0" */
    size_t nfields;        /* pairs */
    const char **names;    /* nfields names */
    const size_t *name_lens;
    const char **values;   /* nfields values (binary-safe) */
    const size_t *value_lens;
    int64_t receive_count; /* delivery count of the entry in the group, >= 1 */
    int64_t first_receive_ms; /* when Sluice first received it (epoch ms) */
};

struct pl_sqs_ctx {
    const char *event_source_arn; /* URI without credentials */
    const char *region;           /* awsRegion */
    const char *sender_id;        /* attributes.SenderId, e.g. "sluice" */
    const struct evp_md_st *md5;  /* optional: MD5 fetched once (EVP_MD_fetch); NULL means
                                   * EVP_md5(), which OpenSSL 3 looks up on every use */
};

/*
 * Appends one SQS record (lambda-spec 2.1) for entry to out as compact JSON:
 * messageId = the entry id; receiptHandle = an opaque string carrying stream and id;
 * body = the entry's "body" field when it has one (its other fields become String message
 * attributes), else a JSON object of all fields as the body (and no message attributes);
 * attributes ApproximateReceiveCount, SentTimestamp (the ms part of the id),
 * SenderId, ApproximateFirstReceiveTimestamp (all strings); md5OfBody (hex MD5 of the body
 * bytes, OpenSSL); md5OfMessageAttributes when there are attributes (SQS's algorithm); eventSource
 * "aws:sqs"; eventSourceARN; awsRegion. Bytes that are not UTF-8 become U+FFFD in the body and
 * in names; an attribute value that is not UTF-8 becomes a base64 "Binary" attribute; repeated
 * names: the last wins (all in schemas/sqs-event.schema.json). No separator is written: the
 * caller joins records with ','. e and ctx are borrowed for the call. Returns 0, SL_ENOMEM,
 * SL_ETOOBIG (a name or value of 4 GiB or more), SL_EUNSUPPORTED (OpenSSL refuses MD5, FIPS);
 * on failure out may end with part of a record and must be discarded.
 */
int pl_sqs_append_record(struct evbuffer *out, const struct pl_stream_entry *e,
                         const struct pl_sqs_ctx *ctx);

#endif
