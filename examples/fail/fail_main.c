/*
 * fail_main.c - fail-runtime: a Runtime API function that fails in chosen ways, for the
 * broker's retry, crash and dead-letter tests (see examples/README.md):
 *   fail.handler        every invocation fails: /error, header "Unhandled", errorType "Error",
 *                       errorMessage "always fails"
 *   fail.crash          exits with status 3 after /next, before responding
 *   fail.init           posts /runtime/init/error (Runtime.InitError) and exits 1
 *   fail.flaky          fails like fail.handler when the event contains "poison", else echoes
 *   fail.exit-at-start  exits 2 at once without touching the Runtime API
 * Prints nothing.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "examples/runtime/runtime.h"

#include <stdlib.h>
#include <string.h>

static int fail_always(const rt_invocation *inv, rt_response *out, void *arg)
{
    (void)inv;
    (void)arg;
    out->error.type = "Error";
    out->error.message = "always fails";
    out->error.category = "Unhandled";
    return -1;
}

static int fail_crash(const rt_invocation *inv, rt_response *out, void *arg)
{
    (void)inv;
    (void)out;
    (void)arg;
    exit(3);
}

/* Whether needle occurs in p[0..n). */
static int contains(const uint8_t *p, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; k <= n && i <= n - k; i++)
        if (memcmp(p + i, needle, k) == 0)
            return 1;
    return 0;
}

static int fail_flaky(const rt_invocation *inv, rt_response *out, void *arg)
{
    (void)arg;
    if (contains(inv->body, inv->body_len, "poison")) {
        out->error.type = "Error";
        out->error.message = "poison in the event";
        out->error.category = "Unhandled";
        return -1;
    }
    out->body = inv->body;
    out->len = inv->body_len;
    return 0;
}

/* Posts err to /runtime/init/error and returns exit status 1. */
static int init_error(const char *type, const char *message)
{
    rt_client *c = NULL;
    if (rt_client_new(NULL, &c) == 0) {
        rt_error e = {.type = type, .message = message};
        rt_init_error(c, &e);
    }
    rt_client_free(c);
    return 1;
}

int main(void)
{
    const char *name = getenv("_HANDLER");
    if (!name || !*name)
        name = "fail.handler";
    if (strcmp(name, "fail.exit-at-start") == 0)
        return 2;
    if (strcmp(name, "fail.init") == 0)
        return init_error("Runtime.InitError", "fail.init fails its initialisation on purpose");

    rt_handler_fn fn = NULL;
    if (strcmp(name, "fail.handler") == 0)
        fn = fail_always;
    else if (strcmp(name, "fail.crash") == 0)
        fn = fail_crash;
    else if (strcmp(name, "fail.flaky") == 0)
        fn = fail_flaky;
    if (!fn)
        return init_error("Runtime.HandlerNotFound", "fail-runtime has no such handler");
    return rt_run(fn, NULL) == 0 ? 0 : 1;
}
