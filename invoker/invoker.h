/*
 * invoker.h - the invoker module's public header.
 *
 * The invoker owns functions at run time: the worker pool (spawn, reuse warm, reap idle, kill
 * on timeout), the per-instance Runtime API servers, concurrency accounting and throttling,
 * the async invocation queue, retry policies and destinations. Everything runs on the one
 * event loop it is given.
 */
#ifndef SLUICE_INVOKER_H
#define SLUICE_INVOKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/broker.h"

struct event_base;

/* ---------------------------------------------------------------------------------------- */
/* Function configuration (filled by the config parser and, later, the control plane).      */
/* ---------------------------------------------------------------------------------------- */

struct inv_env_var {
    char *name;
    char *value;
};

struct inv_event_invoke_config {
    int max_retry_attempts;    /* 0..2, default 2 */
    int max_event_age_s;       /* 60..21600, default 21600 */
    double retry_base_delay_s; /* RetryBaseDelaySeconds extension, default 60; 2nd = 2x */
    char *on_success;          /* destination URI, or NULL */
    char *on_failure;          /* destination URI, or NULL */
};

struct inv_function_config {
    char *name;                /* [A-Za-z0-9_-]{1,64} */
    char **command;            /* argv, NULL-terminated; command[0] absolute or on PATH */
    size_t command_len;
    char *handler;             /* passed as _HANDLER */
    char *code_dir;            /* absolute; working directory and LAMBDA_TASK_ROOT */
    struct inv_env_var *env;   /* the function's own variables (total <= 4 KB) */
    size_t env_len;
    int timeout_s;             /* 1..900, default 3 */
    int memory_mb;             /* 128..10240, default 128 */
    int reserved_concurrency;  /* -1 = unreserved (default); 0 throttles everything */
    double idle_timeout_s;     /* InstanceIdleTimeoutSeconds extension, default 300 */
    int provisioned;           /* ProvisionedConcurrency extension: instances kept warm, 0 */
    struct inv_event_invoke_config eic;
};

/* Sets the documented defaults on a zeroed config (does not touch name/command/handler). */
void inv_function_config_defaults(struct inv_function_config *fc);
/* Deep copy; returns 0 or SL_ENOMEM. */
int inv_function_config_copy(struct inv_function_config *dst,
                             const struct inv_function_config *src);
/* Frees what the struct owns (not the struct itself). */
void inv_function_config_clear(struct inv_function_config *fc);

/* ---------------------------------------------------------------------------------------- */
/* The invoker.                                                                             */
/* ---------------------------------------------------------------------------------------- */

typedef struct inv_invoker inv_invoker;

struct inv_options {
    int account_concurrency; /* AccountConcurrency, default 1000 */
    const char *state_dir;   /* logs go to <state_dir>/logs/<function>/ */
    const char *region;      /* AWS_REGION for instances, default "us-east-1" */
    const char *account_id;  /* for ARNs, default "000000000000" */
    br_store *store;         /* borrowed; the async queue persists here */
};

/* Creates the invoker on base. Returns 0 and *out, or a negative SL_E*. */
int inv_new(struct event_base *base, const struct inv_options *opts, inv_invoker **out);
/*
 * Starts draining: no new invocations are accepted; cb runs once every in-flight invocation
 * has finished (or been failed), then the instances are stopped. Used for SIGTERM.
 */
void inv_drain(inv_invoker *inv, void (*cb)(void *arg), void *arg);
/* Kills every instance and frees everything. NULL is a no-op. */
void inv_free(inv_invoker *inv);

/*
 * Adds or replaces a function (config is copied). A replaced function's new settings apply to
 * new invocations; its warm instances are retired once idle.
 */
int inv_function_put(inv_invoker *inv, const struct inv_function_config *fc);
/* Borrowed until the function is replaced or removed. NULL when unknown. */
const struct inv_function_config *inv_function_get(inv_invoker *inv, const char *name);
/* Writes "arn:aws:lambda:<region>:<account>:function:<name>" into out. Returns out. */
char *inv_function_arn(inv_invoker *inv, const char *name, char *out, size_t outsz);

/* ---------------------------------------------------------------------------------------- */
/* Invocations.                                                                             */
/* ---------------------------------------------------------------------------------------- */

enum inv_status {
    INV_OK = 0,            /* the function returned a response */
    INV_FUNCTION_ERROR,    /* the runtime posted /error (error_type from its header)         */
    INV_TIMEOUT,           /* the invocation passed its Timeout; the instance was killed     */
    INV_CRASH,             /* the instance exited while holding the invocation               */
    INV_INIT_ERROR,        /* the runtime posted /init/error or exited before /next          */
    INV_RESPONSE_TOO_LARGE,/* the response passed 6 MB                                        */
    INV_THROTTLED,         /* (async/ESM only) could not get capacity                        */
    INV_SYSTEM_ERROR,      /* the broker could not run it (spawn failed, draining, ...)      */
};
const char *inv_status_name(enum inv_status st);

struct inv_result {
    enum inv_status status;
    const char *request_id;  /* 36-char UUID */
    const uint8_t *payload;  /* response body, or Lambda's error JSON for every failure status */
    size_t payload_len;
    const char *function_error; /* NULL on INV_OK; "Unhandled" otherwise (X-Amz-Function-Error) */
    const char *error_type;  /* "Runtime.ExitError", "Sandbox.Timedout", the runtime's type ... */
    const char *log_tail;    /* last 4 KB of the invocation's log (only if opts.want_log_tail) */
    size_t log_tail_len;
    double duration_ms;
    bool cold_start;
};

/* Runs once per accepted invocation, on the loop. Everything in r is borrowed for the call. */
typedef void (*inv_done_cb)(const struct inv_result *r, void *arg);

struct inv_invoke_opts {
    bool want_log_tail;         /* keep the invocation's log lines for X-Amz-Log-Result */
    const char *client_context; /* decoded X-Amz-Client-Context JSON, or NULL */
    const char *trace_id;       /* X-Amzn-Trace-Id, or NULL (one is made up) */
    const char *request_id;     /* use this id (async retries keep theirs), or NULL */
    int esm_max_concurrency;    /* reserved for event source mappings; 0 = none */
};

/* Payload limits, as Lambda's. */
#define INV_SYNC_PAYLOAD_MAX (6 * 1024 * 1024)
#define INV_ASYNC_PAYLOAD_MAX (1024 * 1024)

/*
 * Starts an invocation of function fn with payload (copied). On success returns 0 and cb runs
 * exactly once, later, on the loop. Otherwise returns (and cb never runs):
 *   SL_ENOENT     no such function
 *   SL_ETHROTTLED concurrency exhausted; *reason (if not NULL) is set to a static Lambda
 *                 ThrottleReason ("ReservedFunctionConcurrentInvocationLimitExceeded" or
 *                 "ConcurrentInvocationLimitExceeded")
 *   SL_ETOOBIG    payload over INV_SYNC_PAYLOAD_MAX
 *   SL_ECLOSED    draining
 */
int inv_invoke(inv_invoker *inv, const char *fn, const void *payload, size_t len,
               const struct inv_invoke_opts *opts, inv_done_cb cb, void *arg,
               const char **reason);

/* True when fn could start one more invocation now. */
bool inv_has_capacity(inv_invoker *inv, const char *fn);

/*
 * Registers cb to run (on the loop, never inside this call) each time an invocation of fn
 * completes, i.e. when capacity may have come back: event source mappings use it to resume
 * polling or to retry a throttled batch. Returns 0 or SL_ENOMEM.
 */
typedef void (*inv_capacity_cb)(void *arg);
int inv_capacity_listen(inv_invoker *inv, const char *fn, inv_capacity_cb cb, void *arg);
/* Removes every registration of (cb, arg). */
void inv_capacity_unlisten(inv_invoker *inv, inv_capacity_cb cb, void *arg);

/* ---------------------------------------------------------------------------------------- */
/* Async invocation (invoker_async.c).                                                      */
/* ---------------------------------------------------------------------------------------- */

/* Runs when an accepted event is durable (err == 0) or could not be stored (err < 0). */
typedef void (*inv_accept_cb)(int err, const char *request_id, void *arg);

/*
 * Accepts an async event for fn: stores it (group-committed fsync), then cb runs; the event is
 * then invoked, retried and sent to destinations per the function's EventInvokeConfig, and
 * survives a SIGKILL of the broker (replayed by inv_async_recover).
 * Returns 0, or SL_ENOENT / SL_ETOOBIG (over INV_ASYNC_PAYLOAD_MAX) / SL_ECLOSED without cb.
 */
int inv_async_submit(inv_invoker *inv, const char *fn, const void *payload, size_t len,
                     inv_accept_cb cb, void *arg);
/* Replays stored events at start-up (after every function is put). Returns count or < 0. */
int inv_async_recover(inv_invoker *inv);

/* ---------------------------------------------------------------------------------------- */
/* Metrics.                                                                                 */
/* ---------------------------------------------------------------------------------------- */

/* Appends Prometheus text for every function to a malloc'd string (caller frees). */
char *inv_metrics_text(inv_invoker *inv);

#endif
