/*
 * invoker_internal.h - what the invoker's files share. Not for other modules.
 */
#ifndef SLUICE_INVOKER_INTERNAL_H
#define SLUICE_INVOKER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "invoker/invoker.h"

struct event;
struct evhttp;
struct evhttp_request;
struct evbuffer;

/* Lambda's cap on a runtime's response (RIE: 6 MiB + 100 bytes). */
#define INV_RESPONSE_MAX 6291556
/* The init phase of an on-demand instance may take this long before it is killed. */
#define INV_INIT_TIMEOUT_S 10.0
/* X-Amz-Log-Result carries the last 4 KB of the log. */
#define INV_LOG_TAIL_MAX 4096

/* Duration histogram buckets, milliseconds (Prometheus "le"). */
#define INV_HIST_BUCKETS 14
extern const double inv_hist_bounds[INV_HIST_BUCKETS];

struct inv_fn;
struct inv_instance;

/* One invocation, from inv_invoke until its callback has run. */
struct inv_call {
    struct inv_call *next; /* in the function's pending queue */
    inv_invoker *inv;
    struct inv_fn *fn;
    struct inv_instance *inst; /* while assigned */
    char id[37];
    uint8_t *payload;
    size_t len;
    char *client_context;
    char *trace_id;
    bool want_log_tail;
    struct evbuffer *log_tail; /* when want_log_tail */
    inv_done_cb cb;
    void *arg;
    struct event *timeout_ev;
    int64_t queued_ns;
    int64_t start_ns;
    int64_t deadline_ms;
    bool cold;
};

enum inv_inst_state {
    INST_STARTING, /* spawned, has not called /next yet */
    INST_IDLE,     /* holds a /next request, no invocation */
    INST_BUSY,     /* an invocation was handed out */
    INST_RETURNING,/* answered its invocation, will call /next again */
    INST_DEAD,     /* killed or exited; waiting to be reaped and freed */
};

struct inv_instance {
    struct inv_instance *next; /* in the function's list */
    struct inv_fn *fn;
    unsigned generation;       /* the function config generation it was started with */
    enum inv_inst_state state;
    pid_t pid;                 /* 0 once reaped */
    int port;
    struct evhttp *http;
    struct evhttp_request *next_req; /* held long-poll */
    struct inv_call *call;     /* current invocation */
    struct event *idle_ev;
    struct event *init_ev;     /* init deadline */
    int log_fd;                /* read end of the stdout/stderr pipe, -1 when closed */
    struct event *log_ev;
    int logfile_fd;            /* the log stream file */
    char linebuf[8192];
    size_t linelen;
    char stream[96];           /* AWS_LAMBDA_LOG_STREAM_NAME */
    char cgroup[300];          /* "" when not in a cgroup of ours */
    int cg_peak_fd;            /* the cgroup's peak-memory file, opened on first use */
    struct evbuffer *logq;     /* log lines waiting for one write */
    struct event *logflush_ev; /* writes logq at most 20 ms later */
    int64_t spawn_ns;
    double init_ms;            /* set at the first /next */
    bool init_reported;        /* Init Duration already in a REPORT line */
    bool killed;               /* we killed it (timeout, idle, shutdown) */
    bool provisioned;          /* started ahead of demand (ProvisionedConcurrency) */
    char *init_error;          /* body of /init/error, if posted */
    char *init_error_type;
    int exit_status;           /* from waitpid */
};

struct inv_fn_metrics {
    uint64_t invocations;
    uint64_t errors;
    uint64_t throttles;
    uint64_t timeouts;
    uint64_t cold_starts;
    uint64_t hist[INV_HIST_BUCKETS + 1]; /* last = +Inf */
    double duration_sum_ms;
    uint64_t async_accepted;
    uint64_t async_retries;
    uint64_t dest_success;
    uint64_t dest_failure;
    uint64_t dest_errors;
    uint64_t async_dropped;
};

struct inv_fn {
    struct inv_fn *next;
    inv_invoker *inv;
    struct inv_function_config cfg;
    unsigned generation;
    char arn[256];
    int inflight;              /* accepted invocations not yet completed */
    struct inv_call *pending_head, *pending_tail; /* waiting for an instance */
    int npending;
    struct inv_instance *instances;
    char *state_reason;        /* last init error, for Function State */
    struct inv_fn_metrics m;
    /* async queue (invoker_async.c) */
    int async_depth;
};

struct inv_listener {
    struct inv_listener *next;
    char *fn;
    inv_capacity_cb cb;
    void *arg;
};

struct inv_async; /* invoker_async.c */
struct inv_dest;  /* invoker_dest.c */

struct inv_invoker {
    struct event_base *base;
    int account_limit;
    int reserved_sum;          /* sum of reserved concurrency over functions */
    int unreserved_inflight;   /* inflight of functions without a reservation */
    char *state_dir;
    char *region;
    char *account_id;
    br_store *store;
    struct inv_fn *fns;
    struct event *sigchld_ev;
    struct event *reap_ev;     /* deferred frees */
    struct inv_instance *graveyard;
    bool draining;
    void (*drain_cb)(void *arg);
    void *drain_arg;
    /* cgroup support, probed once */
    int cg_mode;               /* 0 none, 1 v2, 2 v1 */
    char cg_root[256];         /* our parent cgroup (v2 or v1 memory) */
    char cg_cpu_root[256];     /* v1 cpu controller parent, "" if none */
    unsigned long instance_serial; /* names instance cgroups */
    struct sl_idgen ids;       /* request and trace ids */
    struct inv_async *async;
    struct inv_dest *dest;
    struct inv_listener *listeners;
};

/* invoker_pool.c */
struct inv_fn *inv_fn_find(inv_invoker *inv, const char *name);
void inv_check_drained(inv_invoker *inv);

/* invoker_instance.c */
int inv_instance_spawn(struct inv_fn *fn, bool provisioned, struct inv_instance **out);
void inv_instance_kill(struct inv_instance *in);
void inv_instance_timeout(struct inv_instance *in);
void inv_instance_assign(struct inv_instance *in, struct inv_call *call);
void inv_instance_reap_children(inv_invoker *inv);
void inv_instance_free_deferred(inv_invoker *inv);
void inv_instance_free_all(inv_invoker *inv);
void inv_cgroup_probe(inv_invoker *inv);
void inv_cgroup_cleanup(inv_invoker *inv);
/* Writes a log line (adds '\n') to the instance's stream, and to the call's tail. */
void inv_instance_log(struct inv_instance *in, const char *line, size_t len);

/* invoker_pool.c: instance events reported to the scheduler */
void inv_sched_instance_ready(struct inv_instance *in);  /* it holds a /next */
void inv_sched_call_finished(struct inv_call *call, enum inv_status st, const uint8_t *body,
                             size_t len, const char *error_type);
void inv_sched_instance_gone(struct inv_instance *in);   /* exited or killed */

/* invoker_async.c */
int inv_async_init(inv_invoker *inv);
void inv_async_free(inv_invoker *inv);
void inv_async_metrics(inv_invoker *inv, const struct inv_fn *fn, int *depth,
                       double *oldest_age_s);
bool inv_async_idle(inv_invoker *inv);
void inv_async_capacity_freed(inv_invoker *inv, struct inv_fn *fn);

/* invoker_dest.c */
/*
 * Delivers record (a JSON document, borrowed) to the destination URI: file:// (JSON lines,
 * fsynced), redis://host:port[/db]/stream (XADD record=<json>), function:NAME (async invoke of
 * NAME with the record as event). cb runs on the loop with 0 once the record is durable at
 * the destination, or a negative SL_E* (the caller retries later). Returns 0 or SL_E* without cb.
 */
int inv_dest_send(inv_invoker *inv, const char *uri, const char *record, size_t len,
                  void (*cb)(int err, void *arg), void *arg);
int inv_dest_init(inv_invoker *inv);
void inv_dest_free(inv_invoker *inv);

#endif
