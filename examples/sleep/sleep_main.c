/*
 * sleep_main.c - sleep-runtime: a Runtime API function that takes its time, for timeout and
 * concurrency tests (see examples/README.md):
 *   sleep.handler  sleeps for the event's milliseconds (a decimal integer such as 250, or
 *                  {"ms":250}) and returns {"slept_ms":250}
 * An event that is neither fails with errorType "InvalidPayload". Prints nothing.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "examples/runtime/runtime.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One hour: longer than any function timeout. */
#define SLEEP_MAX_MS 3600000

/* The milliseconds asked for by the event, or -1 when it does not say. */
static long long requested_ms(const rt_invocation *inv)
{
    json_error_t jerr;
    json_t *v = json_loadb((const char *)inv->body, inv->body_len, JSON_DECODE_ANY, &jerr);
    long long ms = -1;
    if (json_is_object(v))
        ms = json_is_integer(json_object_get(v, "ms"))
                 ? json_integer_value(json_object_get(v, "ms"))
                 : -1;
    else if (json_is_integer(v))
        ms = json_integer_value(v);
    json_decref(v);
    return ms >= 0 && ms <= SLEEP_MAX_MS ? ms : -1;
}

static int sleep_handler(const rt_invocation *inv, rt_response *out, void *arg)
{
    (void)arg;
    long long ms = requested_ms(inv);
    if (ms < 0) {
        out->error.type = "InvalidPayload";
        out->error.message = "sleep.handler wants N or {\"ms\":N} with 0 <= N <= 3600000";
        return -1;
    }
    /* This is the function's work, not a test waiting: a plain sleep is what it should do. */
    struct timespec left = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        ;
    json_t *res = json_pack("{sI}", "slept_ms", (json_int_t)ms);
    size_t need = res ? json_dumpb(res, NULL, 0, JSON_COMPACT) : 0;
    if (need == 0 || rt_buf_reserve(out->buf, need)) {
        json_decref(res);
        out->error.type = "Runtime.OutOfMemory";
        out->error.message = "cannot build the result";
        return -1;
    }
    out->buf->len = json_dumpb(res, (char *)out->buf->data, need, JSON_COMPACT);
    json_decref(res);
    out->body = out->buf->data;
    out->len = out->buf->len;
    return 0;
}

int main(void)
{
    const char *name = getenv("_HANDLER");
    if (name && *name && strcmp(name, "sleep.handler") != 0) {
        rt_client *c = NULL;
        if (rt_client_new(NULL, &c) == 0) {
            rt_error e = {.type = "Runtime.HandlerNotFound",
                          .message = "sleep-runtime has no such handler"};
            rt_init_error(c, &e);
        }
        rt_client_free(c);
        return 1;
    }
    return rt_run(sleep_handler, NULL) == 0 ? 0 : 1;
}
