/*
 * broker_api.c - the HTTP API on Lambda's REST paths: Invoke (sync, async, dry run), the
 * deprecated InvokeAsync, /metrics (Prometheus text) and /health.
 *
 * Errors are written the way AWS SDKs parse them: the exception name in x-amzn-ErrorType and
 * a JSON body with Type and message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "broker/broker_internal.h"
#include "pollers/pollers.h"

/* Bodies past this are refused by libevent itself (connection closed); below it, past the
 * Lambda limits, we answer 413 RequestTooLargeException. */
#define API_MAX_BODY (16 * 1024 * 1024)

struct br_api {
    struct event_base *base;
    struct evhttp *http;
    inv_invoker *inv;
    pl_pollers *pollers;
    bool draining;
    int inflight;               /* requests accepted and not yet completely sent */
    void (*idle_cb)(void *arg); /* br_api_when_idle */
    void *idle_arg;
    struct event *idle_deadline;
};

static void check_idle(br_api *api)
{
    if (api->idle_cb && api->inflight <= 0) {
        void (*cb)(void *) = api->idle_cb;
        api->idle_cb = NULL;
        if (api->idle_deadline)
            event_del(api->idle_deadline);
        cb(api->idle_arg);
    }
}

static void on_reply_sent(struct evhttp_request *req, void *arg)
{
    br_api *api = arg;
    api->inflight--;
    check_idle(api);
}

/* A request waiting for an invocation or a durable accept. The client may go away first:
 * then req is NULL and the result is dropped (the invocation itself is not cancelled). */
struct pending {
    struct evhttp_request *req;
    struct evhttp_connection *conn;
    bool want_tail;
    br_api *api;
};


static void send_json(struct evhttp_request *req, int status, const char *reason, json_t *body)
{
    struct evbuffer *b = evbuffer_new();
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (b && s)
        evbuffer_add(b, s, strlen(s));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evhttp_send_reply(req, status, reason, b);
    free(s);
    if (b)
        evbuffer_free(b);
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Request Entity Too Large";
    case 429:
        return "Too Many Requests";
    case 503:
        return "Service Unavailable";
    default:
        return status >= 500 ? "Internal Server Error" : "Error";
    }
}

void br_api_send_error(struct evhttp_request *req, int status, const char *type,
                       const char *message, const char *reason)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char rid[37];
    sl_uuid4(rid);
    evhttp_add_header(h, "x-amzn-ErrorType", type);
    evhttp_add_header(h, "x-amzn-RequestId", rid);
    json_t *body = json_pack("{s:s,s:s}", "Type", status >= 500 ? "Service" : "User", "message",
                             message);
    if (body && reason)
        json_object_set_new(body, "Reason", json_string(reason));
    if (status == 429)
        evhttp_add_header(h, "Retry-After", "1");
    send_json(req, status, reason_phrase(status), body);
    json_decref(body);
}

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                  */
/* ---------------------------------------------------------------------------------------- */

/*
 * Resolves FunctionName as Lambda accepts it: "name", "name:qualifier",
 * "123456789012:function:name[:qualifier]" or the full ARN. Only $LATEST (or no qualifier) is
 * served. Writes the bare name into out. Returns 0, SL_EINVAL (bad form) or SL_ENOENT (a
 * qualifier we do not have).
 */
static int resolve_name(const char *in, const char *query_qualifier, char *out, size_t outsz)
{
    const char *name = in;
    const char *fn = strstr(in, ":function:");
    if (strncmp(in, "arn:", 4) == 0 || fn) {
        if (!fn)
            return SL_EINVAL;
        name = fn + strlen(":function:");
    }
    const char *colon = strchr(name, ':');
    size_t n = colon ? (size_t)(colon - name) : strlen(name);
    const char *qual = colon ? colon + 1 : query_qualifier;
    if (n == 0 || n > 64 || n >= outsz)
        return SL_EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return SL_EINVAL;
    }
    memcpy(out, name, n);
    out[n] = '\0';
    if (qual && *qual && strcmp(qual, "$LATEST") != 0)
        return SL_ENOENT;
    return 0;
}

static void on_client_closed(struct evhttp_connection *conn, void *arg)
{
    struct pending *p = arg;
    p->req = NULL;
    p->conn = NULL;
    /* The request dies with its connection and will never complete. */
    p->api->inflight--;
    check_idle(p->api);
}

static struct pending *pending_new(br_api *api, struct evhttp_request *req)
{
    struct pending *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->api = api;
    p->req = req;
    p->conn = evhttp_request_get_connection(req);
    if (p->conn)
        evhttp_connection_set_closecb(p->conn, on_client_closed, p);
    return p;
}

/* Detaches p from its connection; returns the request still to be answered, or NULL. */
static struct evhttp_request *pending_take(struct pending *p)
{
    struct evhttp_request *req = p->req;
    if (p->conn)
        evhttp_connection_set_closecb(p->conn, NULL, NULL);
    free(p);
    return req;
}

static char *base64(const char *data, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)data, (int)len);
    return out;
}

/* Decodes base64 (standard alphabet, padded) into a NUL-terminated string. */
static char *unbase64(const char *in)
{
    size_t n = strlen(in);
    if (n == 0 || n % 4 != 0 || n > 8192)
        return NULL;
    unsigned char *out = malloc(n / 4 * 3 + 1);
    if (!out)
        return NULL;
    int len = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
    if (len < 0) {
        free(out);
        return NULL;
    }
    while (len > 0 && n > 0 && in[n - 1] == '=') {
        len--;
        n--;
    }
    out[len] = '\0';
    return (char *)out;
}

/* ---------------------------------------------------------------------------------------- */
/* Invoke                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static void on_sync_done(const struct inv_result *r, void *arg)
{
    struct pending *p = arg;
    bool want_tail = p->want_tail;
    struct evhttp_request *req = pending_take(p);
    if (!req)
        return; /* the client went away */
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "x-amzn-RequestId", r->request_id);
    evhttp_add_header(h, "X-Amz-Executed-Version", "$LATEST");
    evhttp_add_header(h, "Content-Type", "application/json");
    if (r->function_error)
        evhttp_add_header(h, "X-Amz-Function-Error", r->function_error);
    if (want_tail) {
        char *t = base64(r->log_tail ? r->log_tail : "", r->log_tail_len);
        if (t)
            evhttp_add_header(h, "X-Amz-Log-Result", t);
        free(t);
    }
    evbuffer_add(evhttp_request_get_output_buffer(req), r->payload, r->payload_len);
    evhttp_send_reply(req, 200, "OK", NULL);
}

static void on_async_accepted(int err, const char *request_id, void *arg)
{
    struct pending *p = arg;
    struct evhttp_request *req = pending_take(p);
    if (!req)
        return; /* stored all the same: the event will run */
    if (err) {
        br_api_send_error(req, 500, "ServiceException", "the event could not be stored", NULL);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "x-amzn-RequestId", request_id);
    evhttp_send_reply(req, 202, "Accepted", NULL);
}

static void not_found(struct evhttp_request *req, br_api *api, const char *name)
{
    char arn[300], msg[400];
    inv_function_arn(api->inv, name, arn, sizeof(arn));
    snprintf(msg, sizeof(msg), "Function not found: %s", arn);
    br_api_send_error(req, 404, "ResourceNotFoundException", msg, NULL);
}

static void handle_invoke(br_api *api, struct evhttp_request *req, const char *raw_name,
                          const char *qualifier, bool legacy_async)
{
    char name[80];
    int err = resolve_name(raw_name, qualifier, name, sizeof(name));
    if (err == SL_EINVAL) {
        br_api_send_error(req, 400, "InvalidParameterValueException",
                          "FunctionName must be a function name or ARN "
                          "([a-zA-Z0-9-_]{1,64})",
                          NULL);
        return;
    }
    if (err == SL_ENOENT || !inv_function_get(api->inv, name)) {
        not_found(req, api, name);
        return;
    }
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *type = legacy_async ? "Event" : evhttp_find_header(in, "X-Amz-Invocation-Type");
    const char *log_type = evhttp_find_header(in, "X-Amz-Log-Type");
    if (!type || !*type)
        type = "RequestResponse";
    bool sync = strcmp(type, "RequestResponse") == 0;
    if (!sync && strcmp(type, "Event") != 0 && strcmp(type, "DryRun") != 0) {
        br_api_send_error(req, 400, "InvalidParameterValueException",
                          "X-Amz-Invocation-Type must be RequestResponse, Event or DryRun",
                          NULL);
        return;
    }
    if (log_type && strcmp(log_type, "None") != 0 && strcmp(log_type, "Tail") != 0) {
        br_api_send_error(req, 400, "InvalidParameterValueException",
                          "X-Amz-Log-Type must be None or Tail", NULL);
        return;
    }
    if (api->draining) {
        br_api_send_error(req, 503, "ServiceException", "the broker is shutting down", NULL);
        return;
    }
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(body);
    size_t limit = sync ? INV_SYNC_PAYLOAD_MAX : INV_ASYNC_PAYLOAD_MAX;
    if (len > limit) {
        char msg[200];
        snprintf(msg, sizeof(msg), "Request must be smaller than %zu bytes for the %s operation",
                 limit, sync ? "InvokeFunction" : "InvokeAsync");
        br_api_send_error(req, 413, "RequestTooLargeException", msg, NULL);
        return;
    }
    if (strcmp(type, "DryRun") == 0) {
        evhttp_send_reply(req, 204, "No Content", NULL);
        return;
    }
    const uint8_t *data = len ? evbuffer_pullup(body, -1) : (const uint8_t *)"";
    struct pending *p = pending_new(api, req);
    if (!p) {
        br_api_send_error(req, 500, "ServiceException", "out of memory", NULL);
        return;
    }
    if (!sync) {
        err = inv_async_submit(api->inv, name, data, len, on_async_accepted, p);
    } else {
        const char *cc_b64 = evhttp_find_header(in, "X-Amz-Client-Context");
        char *cc = NULL;
        if (cc_b64 && *cc_b64 && !(cc = unbase64(cc_b64))) {
            pending_take(p);
            br_api_send_error(req, 400, "InvalidParameterValueException",
                              "X-Amz-Client-Context must be base64 JSON of at most 3583 bytes",
                              NULL);
            return;
        }
        struct inv_invoke_opts o = {
            .want_log_tail = log_type && strcmp(log_type, "Tail") == 0,
            .client_context = cc,
            .trace_id = evhttp_find_header(in, "X-Amzn-Trace-Id"),
        };
        const char *why = NULL;
        p->want_tail = o.want_log_tail;
        err = inv_invoke(api->inv, name, data, len, &o, on_sync_done, p, &why);
        free(cc);
        if (err == SL_ETHROTTLED) {
            pending_take(p);
            br_api_send_error(req, 429, "TooManyRequestsException", "Rate Exceeded.", why);
            return;
        }
    }
    if (err) {
        pending_take(p);
        if (err == SL_ENOENT)
            not_found(req, api, name);
        else if (err == SL_ETOOBIG)
            br_api_send_error(req, 413, "RequestTooLargeException", "Request too large", NULL);
        else if (err == SL_ECLOSED)
            br_api_send_error(req, 503, "ServiceException", "the broker is shutting down", NULL);
        else
            br_api_send_error(req, 500, "ServiceException", sl_strerror(err), NULL);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Routing                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static void handle_metrics(br_api *api, struct evhttp_request *req)
{
    char *text = inv_metrics_text(api->inv);
    char *ptext = api->pollers ? pl_metrics_text(api->pollers) : NULL;
    struct evbuffer *b = evbuffer_new();
    if (!text || !b || (api->pollers && !ptext)) {
        free(ptext);
        free(text);
        if (b)
            evbuffer_free(b);
        br_api_send_error(req, 500, "ServiceException", "out of memory", NULL);
        return;
    }
    evbuffer_add(b, text, strlen(text));
    if (ptext)
        evbuffer_add(b, ptext, strlen(ptext));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
    free(ptext);
    free(text);
}

/* GetEventSourceMapping (/{UUID}) and ListEventSourceMappings (with or without the trailing
 * slash; FunctionName and EventSourceArn filters). Read-only: mappings come from the config
 * file until the control plane lands. */
static void handle_esm_get(br_api *api, struct evhttp_request *req, const char *rest,
                           const char *query)
{
    char *body = NULL;
    if (!api->pollers) {
        br_api_send_error(req, 404, "ResourceNotFoundException", "no event source mappings",
                          NULL);
        return;
    }
    if (*rest == '\0' || strcmp(rest, "/") == 0) {
        struct evkeyvalq q = {0};
        const char *fn = NULL, *arn = NULL;
        if (query && evhttp_parse_query_str(query, &q) == 0) {
            fn = evhttp_find_header(&q, "FunctionName");
            arn = evhttp_find_header(&q, "EventSourceArn");
        }
        char name[80];
        if (fn && resolve_name(fn, NULL, name, sizeof(name)) == 0)
            fn = name;
        body = pl_mapping_list(api->pollers, fn, arn);
        evhttp_clear_headers(&q);
    } else if (rest[0] == '/' && !strchr(rest + 1, '/')) {
        body = pl_mapping_describe(api->pollers, rest + 1);
        if (!body) {
            char msg[200];
            snprintf(msg, sizeof(msg), "The resource you requested does not exist. (Service: "
                     "Lambda, Status Code: 404) UUID %.40s", rest + 1);
            br_api_send_error(req, 404, "ResourceNotFoundException", msg, NULL);
            return;
        }
    } else {
        br_api_send_error(req, 404, "UnknownOperationException", "unknown operation", NULL);
        return;
    }
    if (!body) {
        br_api_send_error(req, 500, "ServiceException", "out of memory", NULL);
        return;
    }
    evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evhttp_send_reply(req, 200, "OK", NULL);
    free(body);
}

/* Splits "/prefix/{name}/suffix" and URL-decodes {name}. Returns malloc'd name or NULL. */
static char *match_fn_path(const char *path, const char *prefix, const char *suffix)
{
    size_t pl = strlen(prefix), sl = strlen(suffix), n = strlen(path);
    if (n <= pl + sl || strncmp(path, prefix, pl) != 0 || strcmp(path + n - sl, suffix) != 0)
        return NULL;
    size_t mid = n - pl - sl;
    char *raw = strndup(path + pl, mid);
    if (!raw || strchr(raw, '/')) {
        free(raw);
        return NULL;
    }
    char *dec = evhttp_uridecode(raw, 0, NULL);
    free(raw);
    return dec;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    br_api *api = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    char *name = NULL;
    api->inflight++;
    evhttp_request_set_on_complete_cb(req, on_reply_sent, api);
    if (!path) {
        br_api_send_error(req, 400, "InvalidRequestContentException", "bad request URI", NULL);
        return;
    }
    if ((name = match_fn_path(path, "/2015-03-31/functions/", "/invocations")) != NULL) {
        if (cmd != EVHTTP_REQ_POST) {
            free(name);
            br_api_send_error(req, 405, "InvalidRequestContentException", "use POST", NULL);
            return;
        }
        struct evkeyvalq q = {0};
        const char *qual = NULL;
        if (query && evhttp_parse_query_str(query, &q) == 0)
            qual = evhttp_find_header(&q, "Qualifier");
        handle_invoke(api, req, name, qual, false);
        evhttp_clear_headers(&q);
        free(name);
        return;
    }
    if ((name = match_fn_path(path, "/2014-11-13/functions/", "/invoke-async")) != NULL ||
        (name = match_fn_path(path, "/2014-11-13/functions/", "/invoke-async/")) != NULL) {
        if (cmd != EVHTTP_REQ_POST) {
            free(name);
            br_api_send_error(req, 405, "InvalidRequestContentException", "use POST", NULL);
            return;
        }
        handle_invoke(api, req, name, NULL, true);
        free(name);
        return;
    }
    if (strncmp(path, "/2015-03-31/event-source-mappings", 33) == 0 && cmd == EVHTTP_REQ_GET) {
        handle_esm_get(api, req, path + 33, query);
        return;
    }
    if (strcmp(path, "/metrics") == 0 && cmd == EVHTTP_REQ_GET) {
        handle_metrics(api, req);
        return;
    }
    if (strcmp(path, "/health") == 0 && cmd == EVHTTP_REQ_GET) {
        json_t *o = json_pack("{s:s}", "status", api->draining ? "draining" : "ok");
        send_json(req, api->draining ? 503 : 200, api->draining ? "Service Unavailable" : "OK",
                  o);
        json_decref(o);
        return;
    }
    br_api_send_error(req, 404, "UnknownOperationException", "unknown operation", NULL);
}

/* ---------------------------------------------------------------------------------------- */

int br_api_start(struct event_base *base, const char *listen, inv_invoker *inv, br_api **out,
                 char *bound, size_t boundsz)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof(host))
        return SL_EINVAL;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return SL_EINVAL;

    br_api *api = calloc(1, sizeof(*api));
    if (!api)
        return SL_ENOMEM;
    api->base = base;
    api->inv = inv;
    api->http = evhttp_new(base);
    if (!api->http) {
        free(api);
        return SL_ENOMEM;
    }
    evhttp_set_max_body_size(api->http, API_MAX_BODY);
    evhttp_set_timeout(api->http, 960); /* a sync invoke may run 900 s */
    evhttp_set_allowed_methods(api->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                              EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(api->http, on_request, api);
    struct evhttp_bound_socket *s = evhttp_bind_socket_with_handle(api->http, host, (int)port);
    if (!s) {
        evhttp_free(api->http);
        free(api);
        return SL_EIO;
    }
    sl_listener_nodelay(s);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int actual = (int)port;
    if (getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            actual = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            actual = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    snprintf(bound, boundsz, "%s:%d", host, actual);
    *out = api;
    return 0;
}

void br_api_set_pollers(br_api *api, struct pl_pollers *pl)
{
    api->pollers = pl;
}

void br_api_set_draining(br_api *api)
{
    if (api)
        api->draining = true;
}

static void on_idle_deadline(evutil_socket_t fd, short what, void *arg)
{
    br_api *api = arg;
    if (api->idle_cb)
        sl_warn("api", "%d responses still unsent after the drain deadline", api->inflight);
    api->inflight = 0;
    check_idle(api);
}

void br_api_when_idle(br_api *api, double deadline_s, void (*cb)(void *arg), void *arg)
{
    api->idle_cb = cb;
    api->idle_arg = arg;
    if (!api->idle_deadline)
        api->idle_deadline = evtimer_new(api->base, on_idle_deadline, api);
    struct timeval tv = {(time_t)deadline_s, 0};
    if (api->idle_deadline)
        evtimer_add(api->idle_deadline, &tv);
    check_idle(api);
}

void br_api_free(br_api *api)
{
    if (!api)
        return;
    if (api->idle_deadline)
        event_free(api->idle_deadline);
    evhttp_free(api->http);
    free(api);
}
