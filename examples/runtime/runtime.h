/*
 * runtime.h - a small client for the AWS Lambda Runtime API, and the library the example
 * runtimes (echo, fail, sleep) and the Runtime API benchmarks are built from.
 *
 * It speaks HTTP/1.1 with keep-alive over one blocking TCP connection (TCP_NODELAY) to
 * $AWS_LAMBDA_RUNTIME_API ("host:port"). It needs only libc.
 *
 * Two levels:
 *   - rt_run(handler, arg): the whole runtime loop (next, handler, response or error).
 *   - rt_client_new / rt_next / rt_respond / rt_fail / rt_init_error / rt_client_free: one
 *     request each, for runtimes with their own loop and for benchmarks.
 *
 * Conventions:
 *   - functions that can fail return 0 or a negative RT_E* code from the table below;
 *   - x_new()/x_free() pairs, x_free(NULL) is a no-op;
 *   - everything an rt_invocation points to is owned by the client and borrowed until the next
 *     call on that client (or its free);
 *   - a client is not thread-safe: use one per thread. rt_next also sets the process
 *     environment variable _X_AMZN_TRACE_ID, as every Lambda runtime does.
 *
 * Cost: one send system call per request (request line, headers and body in one sendmsg),
 * and no allocation per invocation once the client's buffers have grown to the largest message
 * seen.
 */
#ifndef SLUICE_RUNTIME_H
#define SLUICE_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------------- */
/* Errors: one table generates the codes, rt_err_name() and rt_strerror().                   */
/* ---------------------------------------------------------------------------------------- */

#define RT_ERRNO_MAP(X)                                                                            \
    X(NOMEM, -1, "out of memory")                                                                  \
    X(INVAL, -2, "invalid argument")                                                               \
    X(ENV, -3, "AWS_LAMBDA_RUNTIME_API is unset or not host:port")                                 \
    X(CONNECT, -4, "cannot connect to the Runtime API")                                            \
    X(IO, -5, "input/output error on the Runtime API connection")                                  \
    X(CLOSED, -6, "the Runtime API closed the connection")                                         \
    X(PROTO, -7, "malformed HTTP response")                                                        \
    X(TOOBIG, -8, "message too large")                                                             \
    X(STATUS, -9, "the Runtime API answered with an unexpected HTTP status")

enum rt_err {
    RT_OK = 0,
#define RT_ERR_ENUM(name, code, text) RT_E##name = (code),
    RT_ERRNO_MAP(RT_ERR_ENUM)
#undef RT_ERR_ENUM
};

/* Returns "RT_ECLOSED" and friends; "RT_OK" for 0; "RT_E?" for unknown codes. Static string. */
const char *rt_err_name(int err);
/* Returns a human sentence for the code. Static string. */
const char *rt_strerror(int err);

/* ---------------------------------------------------------------------------------------- */
/* Growable byte buffer                                                                      */
/* ---------------------------------------------------------------------------------------- */

/* A byte buffer; zero-initialise it ({0}) before first use. Owns data. */
typedef struct rt_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} rt_buf;

/*
 * Makes room for at least extra more bytes after len (plus one spare byte, so callers can
 * NUL-terminate). Returns 0, RT_ETOOBIG if len + extra overflows, or RT_ENOMEM (the buffer
 * is then unchanged).
 */
int rt_buf_reserve(rt_buf *b, size_t extra);
/* Appends n bytes from p (p may be NULL when n == 0). Returns 0, RT_ETOOBIG or RT_ENOMEM. */
int rt_buf_append(rt_buf *b, const void *p, size_t n);
/* Frees the buffer's memory and zeroes it; the buffer can be used again. NULL is a no-op. */
void rt_buf_free(rt_buf *b);

/*
 * Appends s[0..n) to b as a JSON string literal, quotes included: '"' and '\' are escaped,
 * control characters become \n, \t, ... or \u00XX, and bytes that are not valid UTF-8 become
 * U+FFFD, so the output is always valid JSON whatever the input. Returns 0, RT_ETOOBIG or
 * RT_ENOMEM (b may then hold part of the string: truncate b->len yourself if you care).
 */
int rt_json_append_string(rt_buf *b, const char *s, size_t n);

/* ---------------------------------------------------------------------------------------- */
/* Client                                                                                    */
/* ---------------------------------------------------------------------------------------- */

typedef struct rt_client rt_client;

/*
 * One invocation as returned by rt_next. Every pointer is owned by the client and borrowed
 * until the next call on the same client. Strings are NUL-terminated; a header that was
 * absent is "" (and deadline_ms is 0). body is followed by a NUL byte that body_len does not
 * count, so a text payload can be used as a C string (it may contain NULs of its own).
 */
typedef struct rt_invocation {
    const char *request_id;       /* Lambda-Runtime-Aws-Request-Id, never "" */
    int64_t deadline_ms;          /* Lambda-Runtime-Deadline-Ms, Unix epoch milliseconds */
    const char *function_arn;     /* Lambda-Runtime-Invoked-Function-Arn */
    const char *trace_id;         /* Lambda-Runtime-Trace-Id, also put in _X_AMZN_TRACE_ID */
    const char *client_context;   /* Lambda-Runtime-Client-Context (JSON) */
    const char *cognito_identity; /* Lambda-Runtime-Cognito-Identity (JSON) */
    const char *content_type;     /* Content-Type */
    const uint8_t *body;
    size_t body_len;
} rt_invocation;

/*
 * An error to report with rt_fail or rt_init_error. Borrowed for the duration of the call.
 *   type     -> "errorType" in the JSON body; NULL means "Error".
 *   message  -> "errorMessage" in the JSON body; NULL means "".
 *   category -> the Lambda-Runtime-Function-Error-Type header, by convention
 *               "Category.Reason" or "Unhandled"; NULL means the same as type. It must not
 *               contain control characters (RT_EINVAL).
 * The body is {"errorMessage":...,"errorType":...,"stackTrace":[]}.
 */
typedef struct rt_error {
    const char *type;
    const char *message;
    const char *category;
} rt_error;

/*
 * Creates a client for the Runtime API at api ("host:port", "[v6addr]:port"), or at
 * $AWS_LAMBDA_RUNTIME_API when api is NULL. Does not connect yet: the first request does.
 * On success stores the client in *out (the caller owns it: rt_client_free) and returns 0;
 * else returns RT_EENV (no or bad address), RT_EINVAL or RT_ENOMEM and leaves *out NULL.
 */
int rt_client_new(const char *api, rt_client **out);

/* Closes the connection and frees the client and everything it lent out. NULL is a no-op. */
void rt_client_free(rt_client *c);

/*
 * GET /2018-06-01/runtime/invocation/next: blocks, without a timeout (long poll), until the
 * Runtime API hands out an invocation, and fills *inv with it (borrowed, see rt_invocation).
 * Sets _X_AMZN_TRACE_ID to the trace header, or unsets it when the header is absent.
 * Returns 0; RT_ESTATUS when the answer is not 200 (see rt_client_status); RT_EPROTO when it
 * lacks a request id or is not HTTP; RT_ETOOBIG; RT_ECONNECT, RT_ECLOSED or RT_EIO when the
 * connection failed (a keep-alive connection the server had closed is reopened once, silently).
 */
int rt_next(rt_client *c, rt_invocation *inv);

/*
 * POST /2018-06-01/runtime/invocation/{request_id}/response with body[0..len) as the result.
 * request_id and body are borrowed for the call (body may point into the last invocation).
 * Returns 0 on a 2xx answer; RT_ESTATUS for any other status (413 when the body is over the
 * server's limit; see rt_client_status); RT_EINVAL when request_id has characters that cannot
 * go in a path; or a connection error as for rt_next.
 */
int rt_respond(rt_client *c, const char *request_id, const void *body, size_t len);

/*
 * POST /2018-06-01/runtime/invocation/{request_id}/error with the error's header and JSON
 * body (see rt_error). Returns as rt_respond.
 */
int rt_fail(rt_client *c, const char *request_id, const rt_error *err);

/*
 * POST /2018-06-01/runtime/init/error: reports that the runtime could not initialise. The
 * runtime should exit afterwards. Returns as rt_respond.
 */
int rt_init_error(rt_client *c, const rt_error *err);

/* The HTTP status of the last answer the client read, 0 if none yet. */
int rt_client_status(const rt_client *c);

/* The number of TCP connections the client has opened so far (for tests and benchmarks). */
unsigned rt_client_connects(const rt_client *c);

/* ---------------------------------------------------------------------------------------- */
/* The runtime loop                                                                          */
/* ---------------------------------------------------------------------------------------- */

/*
 * What a handler returns. rt_run zeroes it except for buf before each call.
 *   body, len: the result on success. Borrowed: it must stay valid until the handler returns
 *              to rt_run and rt_run has posted it; it may point into inv->body (an echo needs
 *              no copy), into buf->data, or into memory the handler owns.
 *   error:     what to report when the handler returns nonzero; its strings are borrowed
 *              the same way.
 *   buf:       a scratch buffer owned by rt_run, emptied (len = 0, memory kept) before each
 *              call, for handlers that build their result.
 */
typedef struct rt_response {
    const void *body;
    size_t len;
    rt_error error;
    rt_buf *buf;
} rt_response;

/*
 * A function handler: returns 0 with out->body set to succeed, or nonzero with out->error set
 * to fail the invocation (posted to /error; an unset error.type becomes "Error" and an unset
 * error.message "handler failed"). inv is borrowed for the call.
 */
typedef int (*rt_handler_fn)(const rt_invocation *inv, rt_response *out, void *arg);

/*
 * Runs the runtime loop against $AWS_LAMBDA_RUNTIME_API: next, handler, response or error,
 * forever. A 4xx answer to a response or error post (e.g. 413 for a result over the size
 * limit) ends only that invocation: the Runtime API has already decided its outcome. Returns
 * only on a failure that ends the runtime: a negative RT_E* code (RT_ESTATUS when /next or a
 * post answered 5xx, or /next answered anything but 200). Prints nothing.
 */
int rt_run(rt_handler_fn handler, void *arg);

/* ---------------------------------------------------------------------------------------- */
/* HTTP/1.1 response parser (exposed for the client, its tests and its fuzzer)               */
/* ---------------------------------------------------------------------------------------- */

#define RT_HTTP_MAX_HEADERS 64
#define RT_HTTP_MAX_HEAD (64u * 1024u)          /* status line + headers, and trailers */
#define RT_HTTP_MAX_BODY (256u * 1024u * 1024u) /* decoded body */

/* One header: offsets into the parsed bytes, value without surrounding blanks. */
typedef struct rt_http_header {
    size_t name_off, name_len;
    size_t value_off, value_len;
} rt_http_header;

typedef struct rt_http_msg {
    int status;             /* 100..999 */
    int minor_version;      /* HTTP/1.x */
    bool keep_alive;        /* false after "Connection: close", or for HTTP/1.0 without
                               "Connection: keep-alive" */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool until_close;       /* no length: the body runs until the server closes */
    int64_t content_length; /* -1 when absent */
    size_t head_len;        /* bytes of status line and headers, blank line included; the
                               body starts here. 0 while the head is incomplete. */
    size_t nheaders;
    rt_http_header headers[RT_HTTP_MAX_HEADERS];
    size_t body_len; /* decoded body length, once complete */
    size_t msg_len;  /* bytes the whole message takes on the wire, once complete */
} rt_http_msg;

#define RT_HTTP_INCOMPLETE 0
#define RT_HTTP_COMPLETE 1

/*
 * Parses the HTTP/1.x response at the start of p[0..n); does no I/O and keeps no state, so
 * it can be called again on the same bytes with more appended. Fills *m as far as it got.
 * Returns RT_HTTP_COMPLETE (m->msg_len and m->body_len set), RT_HTTP_INCOMPLETE (need more
 * bytes; if m->head_len != 0 the head is done and m->content_length tells how many body bytes
 * to wait for; an until_close body is complete when the peer closes: see
 * rt_http_complete_at_eof), RT_EPROTO for bytes that are not a valid response, or RT_ETOOBIG
 * past RT_HTTP_MAX_HEAD / RT_HTTP_MAX_BODY. A 1xx, 204 or 304 response has no body.
 */
int rt_http_parse(const uint8_t *p, size_t n, rt_http_msg *m);

/*
 * For a message that rt_http_parse left INCOMPLETE with until_close set, after the peer
 * closed with n bytes received: marks it complete (body = the rest). Returns
 * RT_HTTP_COMPLETE, or RT_EPROTO when the message was not an until_close one.
 */
int rt_http_complete_at_eof(rt_http_msg *m, size_t n);

/*
 * Decodes the chunked body of a message that rt_http_parse found COMPLETE on the same bytes
 * p[0..m->msg_len), in place: the body's bytes end up contiguous at p + m->head_len. Returns
 * the body length (== m->body_len), or RT_EPROTO if the bytes do not match m. A message that
 * is not chunked is left alone.
 */
int64_t rt_http_dechunk(uint8_t *p, const rt_http_msg *m);

/*
 * Finds the first header named name (ASCII case-insensitive) in message m parsed from p.
 * Returns it, or NULL.
 */
const rt_http_header *rt_http_find(const uint8_t *p, const rt_http_msg *m, const char *name);

#endif
