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

#endif
