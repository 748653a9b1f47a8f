/*
 * broker.h - the broker module's public header.
 *
 * The broker is the process: main and CLI, configuration, the HTTP control plane, metrics,
 * logging, and the embedded durable store. Its base services (errors, logging, clock, store)
 * are also what every other module builds on, so they are declared here and built as the
 * library sluice_broker_base, which depends on nothing else of Sluice.
 *
 * Conventions (see docs/ARCHITECTURE.md):
 *   - functions that can fail return 0 or a negative SL_E* code from the table below;
 *   - a call that fails never runs its callback; callbacks never run inside the call that
 *     registered them;
 *   - x_new()/x_free() pairs, x_free(NULL) is a no-op; "takes ownership" and "borrowed until"
 *     are written on every pointer that crosses a module boundary.
 */
#ifndef SLUICE_BROKER_H
#define SLUICE_BROKER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

struct event_base;

/* ---------------------------------------------------------------------------------------- */
/* Errors: one table generates the codes, sl_err_name() and sl_strerror().                   */
/* ---------------------------------------------------------------------------------------- */

#define SL_ERRNO_MAP(X)                                                                      \
    X(NOMEM, -1, "out of memory")                                                            \
    X(INVAL, -2, "invalid argument")                                                         \
    X(NOENT, -3, "not found")                                                                \
    X(EXIST, -4, "already exists")                                                           \
    X(IO, -5, "input/output error")                                                          \
    X(CORRUPT, -6, "corrupt data")                                                           \
    X(TOOBIG, -7, "too large")                                                               \
    X(THROTTLED, -8, "concurrency limit reached")                                            \
    X(CLOSED, -9, "closed")                                                                  \
    X(BUSY, -10, "busy")                                                                     \
    X(CONFIG, -11, "configuration error")                                                    \
    X(PROTO, -12, "protocol error")                                                          \
    X(UNSUPPORTED, -13, "not supported")                                                     \
    X(TIMEOUT, -14, "timed out")                                                             \
    X(CONNECT, -15, "connection failed")

enum sl_err {
    SL_OK = 0,
#define SL_ERR_ENUM(name, code, text) SL_E##name = (code),
    SL_ERRNO_MAP(SL_ERR_ENUM)
#undef SL_ERR_ENUM
};

/* Returns "SL_ENOENT" and friends; "SL_OK" for 0; "SL_E?" for unknown codes. Static string. */
const char *sl_err_name(int err);
/* Returns a human sentence for the code. Static string. */
const char *sl_strerror(int err);

/* ---------------------------------------------------------------------------------------- */
/* Logging: one line per call to stderr, "2026-11-25T07:03:44.123Z LEVEL component: text".   */
/* Component is "invoker", "api", "kafka[orders]" ... Binary data must be escaped by callers  */
/* with sl_log_escape().                                                                    */
/* ---------------------------------------------------------------------------------------- */

enum sl_log_level { SL_LOG_DEBUG, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR };

void sl_log_set_level(enum sl_log_level level);
void sl_log(enum sl_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sl_logv(enum sl_log_level level, const char *component, const char *fmt, va_list ap);

#define sl_debug(comp, ...) sl_log(SL_LOG_DEBUG, comp, __VA_ARGS__)
#define sl_info(comp, ...) sl_log(SL_LOG_INFO, comp, __VA_ARGS__)
#define sl_warn(comp, ...) sl_log(SL_LOG_WARN, comp, __VA_ARGS__)
#define sl_error(comp, ...) sl_log(SL_LOG_ERROR, comp, __VA_ARGS__)

/*
 * Writes a printable, escaped copy of data[0..len) into out (C-style escapes for control and
 * non-ASCII bytes), truncated to fit outsz with a trailing "..." when cut. Returns out.
 */
char *sl_log_escape(const void *data, size_t len, char *out, size_t outsz);

/* ---------------------------------------------------------------------------------------- */
/* Clock and ids.                                                                           */
/* ---------------------------------------------------------------------------------------- */

/* Wall clock, milliseconds since the epoch. */
int64_t sl_now_ms(void);
/* Monotonic clock, nanoseconds. */
int64_t sl_mono_ns(void);
/* Formats ms-epoch as "2019-11-14T18:16:05.568Z" into out (at least 32 bytes). Returns out. */
char *sl_iso8601_ms(int64_t epoch_ms, char *out, size_t outsz);
/* Writes a random version-4 UUID, 36 chars plus NUL, into out[37]. Uses OpenSSL's RAND. */
void sl_uuid4(char out[37]);

/*
 * A fast generator of version-4 UUIDs for request ids on the hot path: xorshift128+ seeded
 * from OpenSSL's RAND once. Unique, not unpredictable: never use it for secrets. One per
 * owner (no shared state), not thread-safe.
 */
struct sl_idgen {
    uint64_t s[2];
};
void sl_idgen_init(struct sl_idgen *g);
void sl_idgen_uuid4(struct sl_idgen *g, char out[37]);

/* ---------------------------------------------------------------------------------------- */
/* Network helpers.                                                                         */
/* ---------------------------------------------------------------------------------------- */

struct evhttp_bound_socket;
/*
 * Sets TCP_NODELAY on a listening socket; on Linux the connections it accepts inherit it.
 * libevent's HTTP server does not set it, and large bodies stall on Nagle/delayed-ACK
 * without it. One call per listener instead of one setsockopt per request.
 */
void sl_listener_nodelay(struct evhttp_bound_socket *bound);

struct evbuffer;
/* Returns b's contents as a malloc'd NUL-terminated string (NULL when out of memory) and
 * frees b either way. */
char *sl_evbuffer_take_string(struct evbuffer *b);

/* ---------------------------------------------------------------------------------------- */
/* Embedded durable store: an append-only, checksummed msgpack log under a directory.        */
/*                                                                                          */
/* It is a key/value log: put(key, value) and del(key). The live set is every key whose last */
/* record is a put. On open the log is replayed (torn or corrupt tail: reported, truncated,  */
/* skipped; never a crash); values are not kept in memory (only their file offsets), so a    */
/* queue of large events costs little RAM. Writes are group-committed: every put/del issued  */
/* while an fsync is under way shares the next fsync; a write's callback runs on the loop     */
/* once its record is durable (after fdatasync). The writes and fsyncs happen in one helper   */
/* thread that reports back through a pipe, so the loop never blocks on the disk.            */
/* Compaction rewrites the live records to a new file and renames it over the old one when   */
/* the dead records outweigh the live ones; it runs in the helper thread too.                */
/* ---------------------------------------------------------------------------------------- */

typedef struct br_store br_store;

/* Called on the loop when a write is durable (err == 0) or failed (err < 0). */
typedef void (*br_store_done_cb)(int err, void *arg);
/* Called by br_store_scan for each live record; key and value are borrowed for the call. */
typedef int (*br_store_scan_cb)(const char *key, const void *value, size_t len, void *arg);

/*
 * Opens (creating if missing) the store in directory dir (created too), replays it, and
 * attaches its completion pipe to base. On a torn/corrupt tail, logs what was skipped and
 * truncates the file to the last good record. Returns 0 and *out, or a negative SL_E*.
 */
int br_store_open(struct event_base *base, const char *dir, br_store **out);
/* Flushes pending writes (waits for them), stops the helper thread, closes. NULL is a no-op. */
void br_store_free(br_store *st);

/*
 * Appends put(key, value). key: NUL-terminated, <= 1024 bytes; value: any bytes (callers use
 * msgpack), <= 64 MiB. Both are copied. cb (may be NULL) runs on the loop once durable.
 * Returns 0, or SL_EINVAL / SL_ETOOBIG / SL_ECLOSED / SL_ENOMEM (then cb never runs).
 */
int br_store_put(br_store *st, const char *key, const void *value, size_t len,
                 br_store_done_cb cb, void *arg);
/* Appends del(key). Deleting a missing key is allowed (no-op record). Same contract as put. */
int br_store_del(br_store *st, const char *key, br_store_done_cb cb, void *arg);

/*
 * Calls cb for every live record whose key starts with prefix ("" for all), in the order the
 * records were first put. Reads values from the file (synchronously: use at start-up or in
 * tools, not on the hot path). Stops early and returns cb's value when cb returns non-zero.
 */
int br_store_scan(br_store *st, const char *prefix, br_store_scan_cb cb, void *arg);

/* Reads the current value of key into a malloc'd buffer (*value, *len; caller frees). */
int br_store_get(br_store *st, const char *key, void **value, size_t *len);

struct br_store_stats {
    uint64_t live_records;
    uint64_t dead_records;
    uint64_t file_bytes;
    uint64_t fsyncs;
    uint64_t compactions;
    uint64_t corrupt_skipped; /* records dropped from a torn/corrupt tail at open */
};
void br_store_stats(const br_store *st, struct br_store_stats *out);

/* ---------------------------------------------------------------------------------------- */
/* Configuration (broker_config.c): the YAML file parsed into the model the registry uses.   */
/* ---------------------------------------------------------------------------------------- */

struct inv_function_config; /* invoker/invoker.h */
struct pl_mapping_config;   /* pollers/pollers.h */

struct br_config {
    char *path;             /* absolute path of the file */
    char *dir;              /* its folder: relative paths resolve against it */
    char *listen;           /* "127.0.0.1:9070" (default); port 0 picks a free port */
    char *state_dir;        /* absolute; default "<dir>/.sluice" */
    int account_concurrency;/* default 1000 */
    bool allow_remote;      /* AllowNonLoopbackListen extension, default false */
    char *log_level;        /* LogLevel extension: DEBUG | INFO | WARN | ERROR, default INFO */
    struct inv_function_config *functions; /* array of nfunctions */
    size_t nfunctions;
    struct pl_mapping_config *mappings; /* EventSourceMappings: array of nmappings, validated,
                                           each with its UUID (given or derived) */
    size_t nmappings;
};

/*
 * Parses and validates the YAML file at path. On any problem (unknown key, wrong type,
 * out-of-range value, missing required key, duplicate function) returns SL_ECONFIG and puts
 * "FILE:LINE: reason" (malloc'd) in *errmsg; nothing is half-built. On success returns 0 and
 * *out (free with br_config_free).
 */
int br_config_load(const char *path, struct br_config **out, char **errmsg);
void br_config_free(struct br_config *cfg);

#endif
