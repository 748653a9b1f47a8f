/*
 * echo_main.c - echo-runtime: a Runtime API function that returns its event, with handler
 * variants for the broker's tests (see examples/README.md):
 *   echo.handler  the event, byte for byte
 *   echo.env      a JSON object of the Lambda environment, cwd and invocation headers
 *   echo.log      writes "log: <event>" to stdout and to stderr, then echoes
 *   echo.big      a result of N bytes, N being the event as a decimal integer
 *   echo.hog      touches N MiB of memory (N = the event, a decimal integer, at most 4096),
 *                 then answers {"touched_mb": N}: for MemorySize enforcement tests
 * An unknown handler is reported to /runtime/init/error as Runtime.HandlerNotFound.
 * Prints nothing else; exits 1 when the Runtime API goes away.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "examples/runtime/runtime.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Largest echo.big result, well past Lambda's 6 MB limit but bounded. */
#define ECHO_BIG_MAX (64u * 1024u * 1024u)

static int echo_handler(const rt_invocation *inv, rt_response *out, void *arg)
{
    (void)arg;
    out->body = inv->body; /* borrowed from the client until rt_run has posted it */
    out->len = inv->body_len;
    return 0;
}

static int echo_log(const rt_invocation *inv, rt_response *out, void *arg)
{
    /* Flushed before responding, so the log lines precede the invocation's END line. */
    fputs("log: ", stdout);
    fwrite(inv->body, 1, inv->body_len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    fputs("log: ", stderr);
    fwrite(inv->body, 1, inv->body_len, stderr);
    fputc('\n', stderr);
    fflush(stderr);
    return echo_handler(inv, out, arg);
}

/* Parses optional blanks, a decimal integer, optional blanks; -1 when it is not that. */
static long long parse_size(const uint8_t *p, size_t n)
{
    size_t i = 0;
    long long v = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    size_t start = i;
    while (i < n && p[i] >= '0' && p[i] <= '9') {
        v = v * 10 + (p[i] - '0');
        if (v > (long long)ECHO_BIG_MAX)
            return -1;
        i++;
    }
    if (i == start)
        return -1;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    return i == n ? v : -1;
}

/* A JSON document of exactly N bytes: a string of 'x's for N >= 2, "0" for 1, "" for 0. */
static int echo_big(const rt_invocation *inv, rt_response *out, void *arg)
{
    (void)arg;
    long long n = parse_size(inv->body, inv->body_len);
    if (n < 0) {
        out->error.type = "InvalidPayload";
        out->error.message = "echo.big wants a decimal byte count of at most 67108864";
        return -1;
    }
    rt_buf *b = out->buf;
    if (rt_buf_reserve(b, (size_t)n)) {
        out->error.type = "Runtime.OutOfMemory";
        out->error.message = "cannot allocate the result";
        return -1;
    }
    if (n == 1) {
        b->data[0] = '0';
    } else if (n >= 2) {
        b->data[0] = '"';
        memset(b->data + 1, 'x', (size_t)n - 2);
        b->data[n - 1] = '"';
    }
    b->len = (size_t)n;
    out->body = b->data;
    out->len = b->len;
    return 0;
}

static int echo_hog(const rt_invocation *inv, rt_response *out, void *arg)
{
    (void)arg;
    long long mb = parse_size(inv->body, inv->body_len);
    if (mb < 0 || mb > 4096) {
        out->error.type = "InvalidPayload";
        out->error.message = "echo.hog wants a decimal MiB count of at most 4096";
        return -1;
    }
    /* Touch every page so the memory is really used; keep it until the process exits. */
    for (long long i = 0; i < mb; i++) {
        char *p = malloc(1024 * 1024);
        if (!p) {
            out->error.type = "Runtime.OutOfMemory";
            out->error.message = "malloc failed";
            return -1;
        }
        memset(p, (int)(i & 0xff) | 1, 1024 * 1024);
    }
    out->buf->len = 0;
    if (rt_buf_reserve(out->buf, 64)) {
        out->error.type = "Runtime.OutOfMemory";
        out->error.message = "cannot build the answer";
        return -1;
    }
    int n = snprintf((char *)out->buf->data, 64, "{\"touched_mb\":%lld}", mb);
    out->body = out->buf->data;
    out->len = n > 0 ? (size_t)n : 0;
    return 0;
}

/* Sets key to the string s, or to null when s is NULL. 0, or -1 when out of memory. */
static int put_str(json_t *obj, const char *key, const char *s)
{
    json_t *v = s ? json_string(s) : json_null();
    if (!v)
        v = json_string("(not UTF-8)"); /* json_string refuses invalid UTF-8 */
    return v ? json_object_set_new(obj, key, v) : -1;
}

static int echo_env(const rt_invocation *inv, rt_response *out, void *arg)
{
    (void)arg;
    static const char *const vars[] = {
        "AWS_LAMBDA_RUNTIME_API",
        "_HANDLER",
        "LAMBDA_TASK_ROOT",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_REGION",
        "TZ",
        "GREETING",
        "_X_AMZN_TRACE_ID",
    };
    int rc = -1;
    char *cwd = getcwd(NULL, 0);
    json_t *o = json_object();
    if (!o)
        goto done;
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        if (put_str(o, vars[i], getenv(vars[i])))
            goto done;
    if (put_str(o, "cwd", cwd) || put_str(o, "request_id", inv->request_id) ||
        json_object_set_new(o, "deadline_ms", json_integer(inv->deadline_ms)) ||
        put_str(o, "function_arn", inv->function_arn) || put_str(o, "trace_id", inv->trace_id) ||
        put_str(o, "client_context", inv->client_context))
        goto done;
    size_t need = json_dumpb(o, NULL, 0, JSON_COMPACT | JSON_SORT_KEYS);
    if (need == 0 || rt_buf_reserve(out->buf, need))
        goto done;
    out->buf->len = json_dumpb(o, (char *)out->buf->data, need, JSON_COMPACT | JSON_SORT_KEYS);
    out->body = out->buf->data;
    out->len = out->buf->len;
    rc = 0;
done:
    if (rc) {
        out->error.type = "Runtime.OutOfMemory";
        out->error.message = "cannot build the environment document";
    }
    json_decref(o);
    free(cwd);
    return rc;
}

int main(void)
{
    static const struct {
        const char *name;
        rt_handler_fn fn;
    } handlers[] = {
        {"echo.handler", echo_handler},
        {"echo.env", echo_env},
        {"echo.log", echo_log},
        {"echo.big", echo_big},
        {"echo.hog", echo_hog},
    };
    const char *name = getenv("_HANDLER");
    if (!name || !*name)
        name = "echo.handler";
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
        if (strcmp(name, handlers[i].name) == 0)
            return rt_run(handlers[i].fn, NULL) == 0 ? 0 : 1;

    rt_client *c = NULL;
    if (rt_client_new(NULL, &c) == 0) {
        rt_error e = {.type = "Runtime.HandlerNotFound",
                      .message = "echo-runtime has no such handler"};
        rt_init_error(c, &e);
    }
    rt_client_free(c);
    return 1;
}
