/* runtime_run.c - rt_run, the runtime loop: next, handler, response or error, forever. */
#include "runtime.h"

int rt_run(rt_handler_fn handler, void *arg)
{
    rt_client *c = NULL;
    int rc = rt_client_new(NULL, &c);
    if (rc)
        return rc;
    rt_buf scratch = {0};
    for (;;) {
        rt_invocation inv;
        if ((rc = rt_next(c, &inv)))
            break;
        scratch.len = 0;
        rt_response out = {.buf = &scratch};
        if (handler(&inv, &out, arg) == 0) {
            rc = rt_respond(c, inv.request_id, out.body, out.body ? out.len : 0);
        } else {
            rt_error e = out.error;
            if (!e.type)
                e.type = "Error";
            if (!e.message)
                e.message = "handler failed";
            rc = rt_fail(c, inv.request_id, &e);
            if (rc == RT_EINVAL) {
                /* The handler's error type cannot go in a header: report that instead. */
                rt_error bad = {.type = "Runtime.InvalidErrorType", .message = e.message};
                rc = rt_fail(c, inv.request_id, &bad);
            }
        }
        /* A 4xx (413 for an oversized result, 400/403 for a stale id) settles only this
         * invocation; the Runtime API has recorded the outcome. A 5xx means it wants the
         * runtime gone, as in Lambda. */
        if (rc == RT_ESTATUS && rt_client_status(c) >= 400 && rt_client_status(c) < 500)
            continue;
        if (rc)
            break;
    }
    rt_buf_free(&scratch);
    rt_client_free(c);
    return rc;
}
