/*
 * test_runtime_client.c - the Runtime API client library (examples/runtime) against a scripted
 * fake Runtime API server running in a thread on 127.0.0.1, plus the HTTP response parser and
 * the JSON string escaper on their own.
 *
 * Each server test runs a script (accept, read a request, send canned bytes, close) in a
 * thread while the main thread drives the client; the server records every request, and the
 * main thread checks them after joining. The server's reads wait with poll() against a
 * deadline, so a broken client fails the test instead of hanging it; nothing sleeps.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "examples/runtime/runtime.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------- */
/* The fake server                                                                           */
/* ---------------------------------------------------------------------------------------- */

#define SRV_MAX_REQS 16
#define SRV_DEADLINE_MS 10000

typedef struct srv_req {
    char *head; /* request line and headers, NUL-terminated */
    uint8_t *body;
    size_t body_len;
    unsigned conn; /* which accepted connection (1-based) carried it */
} srv_req;

typedef struct srv {
    int lfd, cfd;
    char api[32];
    unsigned accepts;
    uint8_t *in;
    size_t in_len, in_cap;
    srv_req reqs[SRV_MAX_REQS];
    size_t nreqs;
    void (*script)(struct srv *);
    const void *arg; /* script input */
    pthread_t thread;
} srv;

static void srv_start(srv *s, void (*script)(srv *), const void *arg)
{
    memset(s, 0, sizeof(*s));
    s->cfd = -1;
    s->script = script;
    s->arg = arg;
    s->in_cap = 131072;
    s->in = malloc(s->in_cap);
    T_ASSERT(s->in != NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    T_ASSERT(s->lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    T_EQ_INT(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    T_EQ_INT(listen(s->lfd, 8), 0);
    socklen_t sl = sizeof(sa);
    T_EQ_INT(getsockname(s->lfd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(s->api, sizeof(s->api), "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
}

static void *srv_thread(void *p)
{
    srv *s = p;
    s->script(s);
    return NULL;
}

static void srv_run(srv *s)
{
    T_EQ_INT(pthread_create(&s->thread, NULL, srv_thread, s), 0);
}

static void srv_join(srv *s)
{
    T_EQ_INT(pthread_join(s->thread, NULL), 0);
}

static void srv_free(srv *s)
{
    if (s->cfd >= 0)
        close(s->cfd);
    close(s->lfd);
    for (size_t i = 0; i < s->nreqs; i++) {
        free(s->reqs[i].head);
        free(s->reqs[i].body);
    }
    free(s->in);
}

static void srv_wait(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r;
    do
        r = poll(&pfd, 1, SRV_DEADLINE_MS);
    while (r < 0 && errno == EINTR);
    if (r <= 0)
        T_FAIL("fake server: nothing from the client within %d ms", SRV_DEADLINE_MS);
}

static void srv_close(srv *s)
{
    if (s->cfd >= 0)
        close(s->cfd);
    s->cfd = -1;
    s->in_len = 0;
}

static void srv_accept(srv *s)
{
    srv_close(s);
    srv_wait(s->lfd);
    s->cfd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
    T_ASSERT(s->cfd >= 0);
    int one = 1;
    setsockopt(s->cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->accepts++;
}

/* Reads more bytes from the client into s->in; returns how many (0 at EOF). */
static size_t srv_fill(srv *s)
{
    if (s->in_cap - s->in_len < 65536) {
        s->in_cap *= 2;
        s->in = realloc(s->in, s->in_cap);
        T_ASSERT(s->in != NULL);
    }
    srv_wait(s->cfd);
    ssize_t r = recv(s->cfd, s->in + s->in_len, s->in_cap - s->in_len, 0);
    if (r < 0)
        T_FAIL("fake server: recv: %s", strerror(errno));
    s->in_len += (size_t)r;
    return (size_t)r;
}

/* Reads one request (head + Content-Length body) and records it; returns its record. */
static srv_req *srv_read(srv *s)
{
    T_ASSERT(s->nreqs < SRV_MAX_REQS);
    uint8_t *end;
    while (!(end = memmem(s->in, s->in_len, "\r\n\r\n", 4)))
        if (srv_fill(s) == 0)
            T_FAIL("fake server: client closed mid-request (%zu bytes)", s->in_len);
    size_t head_len = (size_t)(end - s->in) + 4;
    srv_req *r = &s->reqs[s->nreqs++];
    r->conn = s->accepts;
    r->head = strndup((const char *)s->in, head_len);
    T_ASSERT(r->head != NULL);
    size_t cl = 0;
    const char *h = strcasestr(r->head, "\r\nContent-Length:");
    if (h)
        cl = strtoul(h + 17, NULL, 10);
    while (s->in_len < head_len + cl)
        if (srv_fill(s) == 0)
            T_FAIL("fake server: client closed mid-body");
    r->body = malloc(cl + 1);
    T_ASSERT(r->body != NULL);
    memcpy(r->body, s->in + head_len, cl);
    r->body[cl] = 0;
    r->body_len = cl;
    memmove(s->in, s->in + head_len + cl, s->in_len - head_len - cl);
    s->in_len -= head_len + cl;
    return r;
}

/* Sends n bytes in pieces of at most step bytes (0: all at once). */
static void srv_send_n(srv *s, const void *p, size_t n, size_t step)
{
    const uint8_t *b = p;
    while (n > 0) {
        size_t k = step && step < n ? step : n;
        ssize_t w = send(s->cfd, b, k, MSG_NOSIGNAL);
        if (w < 0)
            T_FAIL("fake server: send: %s", strerror(errno));
        b += w;
        n -= (size_t)w;
    }
}

static void srv_send(srv *s, const char *text)
{
    srv_send_n(s, text, strlen(text), 0);
}

/* Fails unless s starts with prefix, printing both. */
static void expect_prefix(const char *s, const char *prefix)
{
    if (strncmp(s, prefix, strlen(prefix)) != 0)
        T_FAIL("\"%s\" does not start with \"%s\"", s, prefix);
}

static const char ACCEPTED[] = "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                               "Content-Length: 16\r\n\r\n{\"status\":\"OK\"}\n";

/* ---------------------------------------------------------------------------------------- */
/* Content-Length round trip: next, response, error, init error on one connection           */
/* ---------------------------------------------------------------------------------------- */

static void script_basic(srv *s)
{
    srv_accept(s);
    srv_read(s);
    srv_send(s, "HTTP/1.1 200 OK\r\n"
                "Content-Type: application/json\r\n"
                "lambda-runtime-aws-request-id: 8476a536-e9f4-11e8-9739-2dfe598c3fcd\r\n"
                "Lambda-Runtime-Deadline-Ms:   1542409706888  \r\n"
                "Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:"
                "function:echo\r\n"
                "Lambda-Runtime-Trace-Id: Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9"
                "197af755a6419;Sampled=1\r\n"
                "Lambda-Runtime-Client-Context: {\"custom\":{\"a\":1}}\r\n"
                "Content-Length: 13\r\n"
                "\r\n"
                "{\"hello\":\"x\"}");
    srv_read(s);
    srv_send(s, ACCEPTED);
    srv_read(s);
    srv_send(s, ACCEPTED);
    srv_read(s);
    srv_send(s, ACCEPTED);
    srv_read(s); /* a path-hostile request id */
    srv_send(s, ACCEPTED);
}

static void test_basic_exchange(void)
{
    srv s;
    srv_start(&s, script_basic, NULL);
    srv_run(&s);
    rt_client *c = NULL;
    T_EQ_INT(rt_client_new(s.api, &c), 0);
    rt_invocation inv;
    T_EQ_INT(rt_next(c, &inv), 0);
    T_EQ_STR(inv.request_id, "8476a536-e9f4-11e8-9739-2dfe598c3fcd");
    T_EQ_INT(inv.deadline_ms, 1542409706888LL);
    T_EQ_STR(inv.function_arn, "arn:aws:lambda:us-east-1:123456789012:function:echo");
    T_EQ_STR(inv.trace_id,
             "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1");
    T_EQ_STR(getenv("_X_AMZN_TRACE_ID"), inv.trace_id);
    T_EQ_STR(inv.client_context, "{\"custom\":{\"a\":1}}");
    T_EQ_STR(inv.cognito_identity, "");
    T_EQ_STR(inv.content_type, "application/json");
    T_EQ_INT(inv.body_len, 13);
    T_EQ_STR((const char *)inv.body, "{\"hello\":\"x\"}");

    /* The response body points into the invocation, as an echo's does. */
    T_EQ_INT(rt_respond(c, inv.request_id, inv.body, inv.body_len), 0);
    T_EQ_INT(rt_client_status(c), 202);

    rt_error e = {.type = "Error", .message = "bad \"thing\"\n\x01", .category = "Unhandled"};
    T_EQ_INT(rt_fail(c, "8476a536-e9f4-11e8-9739-2dfe598c3fcd", &e), 0);
    rt_error ie = {.type = "Runtime.InitError", .message = "no config"};
    T_EQ_INT(rt_init_error(c, &ie), 0);
    T_EQ_INT(rt_respond(c, "a b/c%", "", 0), 0);
    T_EQ_INT(rt_client_connects(c), 1);
    rt_client_free(c);
    T_ASSERT(getenv("_X_AMZN_TRACE_ID") == NULL); /* free takes its string back */
    srv_join(&s);

    T_EQ_INT(s.nreqs, 5);
    srv_req *r = &s.reqs[0];
    expect_prefix(r->head, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n");
    T_CONTAINS(r->head, s.api);
    T_EQ_INT(r->body_len, 0);

    r = &s.reqs[1];
    expect_prefix(r->head,
                  "POST /2018-06-01/runtime/invocation/8476a536-e9f4-11e8-9739-2dfe598c3fcd/"
                  "response HTTP/1.1\r\n");
    T_CONTAINS(r->head, "\r\nContent-Length: 13\r\n");
    T_EQ_STR((const char *)r->body, "{\"hello\":\"x\"}");

    r = &s.reqs[2];
    expect_prefix(r->head,
                  "POST /2018-06-01/runtime/invocation/8476a536-e9f4-11e8-9739-2dfe598c3fcd/"
                  "error HTTP/1.1\r\n");
    T_CONTAINS(r->head, "\r\nLambda-Runtime-Function-Error-Type: Unhandled\r\n");
    T_EQ_STR((const char *)r->body, "{\"errorMessage\":\"bad \\\"thing\\\"\\n\\u0001\","
                                    "\"errorType\":\"Error\",\"stackTrace\":[]}");

    r = &s.reqs[3];
    expect_prefix(r->head, "POST /2018-06-01/runtime/init/error HTTP/1.1\r\n");
    T_CONTAINS(r->head, "\r\nLambda-Runtime-Function-Error-Type: Runtime.InitError\r\n");
    T_EQ_STR((const char *)r->body, "{\"errorMessage\":\"no config\","
                                    "\"errorType\":\"Runtime.InitError\",\"stackTrace\":[]}");

    r = &s.reqs[4];
    expect_prefix(r->head, "POST /2018-06-01/runtime/invocation/a%20b%2Fc%25/response ");
    T_CONTAINS(r->head, "\r\nContent-Length: 0\r\n");
    for (size_t i = 0; i < s.nreqs; i++)
        T_EQ_INT(s.reqs[i].conn, 1);
    srv_free(&s);
}

/* ---------------------------------------------------------------------------------------- */
/* Chunked answers, sent in small pieces                                                     */
/* ---------------------------------------------------------------------------------------- */

static void script_chunked(srv *s)
{
    static const char ev[] = "HTTP/1.1 200 OK\r\n"
                             "Transfer-Encoding: chunked\r\n"
                             "Lambda-Runtime-Aws-Request-Id: id-chunked\r\n"
                             "\r\n"
                             "5\r\n{\"a\":\r\n"
                             "A;ext=1\r\n\"01234567\"\r\n"
                             "1\r\n}\r\n"
                             "0\r\n"
                             "X-Trailer: yes\r\n"
                             "\r\n";
    srv_accept(s);
    srv_read(s);
    srv_send_n(s, ev, sizeof(ev) - 1, 3);
    srv_read(s);
    srv_send(s, "HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
                "10\r\n{\"status\":\"OK\"}\n\r\n0\r\n\r\n");
    srv_read(s);
    srv_send(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                "Lambda-Runtime-Aws-Request-Id: id-empty\r\n\r\n0\r\n\r\n");
}

static void test_chunked(void)
{
    srv s;
    srv_start(&s, script_chunked, NULL);
    srv_run(&s);
    rt_client *c = NULL;
    T_EQ_INT(rt_client_new(s.api, &c), 0);
    rt_invocation inv;
    T_EQ_INT(rt_next(c, &inv), 0);
    T_EQ_STR(inv.request_id, "id-chunked");
    T_EQ_INT(inv.body_len, 16);
    T_EQ_STR((const char *)inv.body, "{\"a\":\"01234567\"}");
    T_EQ_STR(inv.trace_id, "");
    T_ASSERT(getenv("_X_AMZN_TRACE_ID") == NULL);
    T_EQ_INT(rt_respond(c, inv.request_id, "ok", 2), 0);
    T_EQ_INT(rt_next(c, &inv), 0);
    T_EQ_STR(inv.request_id, "id-empty");
    T_EQ_INT(inv.body_len, 0);
    T_EQ_STR((const char *)inv.body, "");
    T_EQ_INT(rt_client_connects(c), 1);
    rt_client_free(c);
    srv_join(&s);
    T_EQ_INT(s.nreqs, 3);
    T_EQ_STR((const char *)s.reqs[1].body, "ok");
    srv_free(&s);
}

/* ---------------------------------------------------------------------------------------- */
/* Connections the server closes                                                             */
/* ---------------------------------------------------------------------------------------- */

static const char EVENT_A[] = "HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: id-a\r\n"
                              "Content-Length: 1\r\n\r\nA";

static void script_idle_close(srv *s)
{
    srv_accept(s);
    srv_read(s);
    srv_send(s, EVENT_A);
    srv_close(s); /* an idle keep-alive connection, closed without notice */
    srv_accept(s);
    srv_read(s);
    srv_send(s, ACCEPTED);
    /* "Connection: close": the client must not reuse the connection. */
    srv_read(s);
    srv_send(s, "HTTP/1.1 200 OK\r\nConnection: close\r\n"
                "Lambda-Runtime-Aws-Request-Id: id-b\r\nContent-Length: 1\r\n\r\nB");
    srv_close(s);
    srv_accept(s);
    srv_read(s);
    srv_send(s, ACCEPTED);
}

static void test_server_closes(void)
{
    srv s;
    srv_start(&s, script_idle_close, NULL);
    srv_run(&s);
    rt_client *c = NULL;
    T_EQ_INT(rt_client_new(s.api, &c), 0);
    rt_invocation inv;
    T_EQ_INT(rt_next(c, &inv), 0);
    T_EQ_STR(inv.request_id, "id-a");
    T_EQ_INT(rt_respond(c, inv.request_id, inv.body, inv.body_len), 0);
    T_EQ_INT(rt_client_connects(c), 2);
    T_EQ_INT(rt_next(c, &inv), 0);
    T_EQ_STR(inv.request_id, "id-b");
    T_EQ_INT(rt_respond(c, inv.request_id, inv.body, inv.body_len), 0);
    T_EQ_INT(rt_client_connects(c), 3);
    rt_client_free(c);
    srv_join(&s);
    /* The resent response arrived whole on the second connection. */
    T_EQ_INT(s.nreqs, 4);
    T_EQ_INT(s.reqs[1].conn, 2);
    T_CONTAINS(s.reqs[1].head, "/invocation/id-a/response ");
    T_EQ_STR((const char *)s.reqs[1].body, "A");
    T_EQ_INT(s.reqs[3].conn, 3);
    T_EQ_STR((const char *)s.reqs[3].body, "B");
    srv_free(&s);
}

static void script_close_twice(srv *s)
{
    srv_accept(s);
    srv_read(s);
    srv_send(s, EVENT_A);
    srv_close(s);
    srv_accept(s); /* the client's one reconnection: read the request, close unanswered */
    srv_read(s);
    srv_close(s);
}

static void test_reconnects_only_once(void)
{
    srv s;
    srv_start(&s, script_close_twice, NULL);
    srv_run(&s);
    rt_client *c = NULL;
    T_EQ_INT(rt_client_new(s.api, &c), 0);
    rt_invocation inv;
    T_EQ_INT(rt_next(c, &inv), 0);
    int rc = rt_respond(c, inv.request_id, inv.body, inv.body_len);
    T_EQ_STR(rt_err_name(rc), "RT_ECLOSED");
    T_EQ_INT(rt_client_connects(c), 2);
    srv_join(&s);
    /* Nobody listens any more: the next request cannot connect. */
    close(s.lfd);
    s.lfd = socket(AF_INET, SOCK_STREAM, 0);
    T_EQ_STR(rt_err_name(rt_next(c, &inv)), "RT_ECONNECT");
    rt_client_free(c);
    srv_free(&s);
}

/* ---------------------------------------------------------------------------------------- */
/* Status codes, bad answers, large bodies                                                   */
/* ---------------------------------------------------------------------------------------- */

static void script_statuses(srv *s)
{
    srv_accept(s);
    srv_read(s);
    srv_send(s, EVENT_A);
    srv_read(s);
    srv_send(s, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 40\r\n\r\n"
                "{\"errorType\":\"RequestEntityTooLarge\"}\n\n\n");
    srv_read(s);
    srv_send(s, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
    srv_read(s); /* no request id */
    srv_send(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
    srv_accept(s);
    srv_read(s); /* not HTTP */
    srv_send(s, "SSH-2.0-OpenSSH_9.2\r\n");
    srv_accept(s);
    srv_read(s); /* an interim 100 Continue, then the answer */
    srv_send(s, "HTTP/1.1 100 Continue\r\n\r\n");
    srv_send(s, EVENT_A);
}

static void test_statuses(void)
{
    srv s;
    srv_start(&s, script_statuses, NULL);
    srv_run(&s);
    rt_client *c = NULL;
    T_EQ_INT(rt_client_new(s.api, &c), 0);
    rt_invocation inv;
    T_EQ_INT(rt_next(c, &inv), 0);
    T_EQ_STR(rt_err_name(rt_respond(c, inv.request_id, "x", 1)), "RT_ESTATUS");
    T_EQ_INT(rt_client_status(c), 413);
    T_EQ_STR(rt_err_name(rt_next(c, &inv)), "RT_ESTATUS");
    T_EQ_INT(rt_client_status(c), 403);
    T_EQ_STR(rt_err_name(rt_next(c, &inv)), "RT_EPROTO");
    T_EQ_INT(rt_client_connects(c), 1);
    T_EQ_STR(rt_err_name(rt_next(c, &inv)), "RT_EPROTO");
    T_EQ_INT(rt_next(c, &inv), 0);
    T_EQ_STR(inv.request_id, "id-a");
    T_EQ_INT(rt_client_connects(c), 3);
    /* Arguments that cannot go on the wire. */
    T_EQ_STR(rt_err_name(rt_respond(c, "", "x", 1)), "RT_EINVAL");
    rt_error bad = {.type = "Error", .category = "a\r\nInjected: 1"};
    T_EQ_STR(rt_err_name(rt_fail(c, "id", &bad)), "RT_EINVAL");
    rt_client_free(c);
    srv_join(&s);
    T_EQ_INT(s.nreqs, 6);
    srv_free(&s);
}

#define BIG_LEN (3u * 1024u * 1024u + 17u)

static void script_big(srv *s)
{
    const uint8_t *big = s->arg;
    char head[160];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: id-big\r\n"
                      "Content-Length: %u\r\n\r\n",
                      BIG_LEN);
    srv_accept(s);
    srv_read(s);
    srv_send_n(s, head, (size_t)hl, 0);
    srv_send_n(s, big, BIG_LEN, 100000);
    srv_read(s);
    srv_send(s, ACCEPTED);
    /* The same, chunked in 64 KiB chunks. */
    srv_read(s);
    srv_send(s, "HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: id-big2\r\n"
                "Transfer-Encoding: chunked\r\n\r\n");
    for (size_t off = 0; off < BIG_LEN; off += 65536) {
        size_t n = BIG_LEN - off < 65536 ? BIG_LEN - off : 65536;
        char ch[32];
        int cl = snprintf(ch, sizeof(ch), "%zx\r\n", n);
        srv_send_n(s, ch, (size_t)cl, 0);
        srv_send_n(s, big + off, n, 0);
        srv_send(s, "\r\n");
    }
    srv_send(s, "0\r\n\r\n");
    srv_read(s);
    srv_send(s, ACCEPTED);
}

static void test_big_bodies(void)
{
    uint8_t *big = malloc(BIG_LEN);
    T_ASSERT(big != NULL);
    for (size_t i = 0; i < BIG_LEN; i++)
        big[i] = (uint8_t)(i * 131u + (i >> 12));
    srv s;
    srv_start(&s, script_big, big);
    srv_run(&s);
    rt_client *c = NULL;
    T_EQ_INT(rt_client_new(s.api, &c), 0);
    rt_invocation inv;
    for (int round = 0; round < 2; round++) {
        T_EQ_INT(rt_next(c, &inv), 0);
        T_EQ_STR(inv.request_id, round == 0 ? "id-big" : "id-big2");
        T_EQ_INT(inv.body_len, BIG_LEN);
        T_ASSERT(memcmp(inv.body, big, BIG_LEN) == 0);
        T_EQ_INT(inv.body[BIG_LEN], 0);
        T_EQ_INT(rt_respond(c, inv.request_id, inv.body, inv.body_len), 0);
    }
    rt_client_free(c);
    srv_join(&s);
    T_EQ_INT(s.nreqs, 4);
    T_EQ_INT(s.reqs[1].body_len, BIG_LEN);
    T_ASSERT(memcmp(s.reqs[1].body, big, BIG_LEN) == 0);
    T_EQ_INT(s.reqs[3].body_len, BIG_LEN);
    T_ASSERT(memcmp(s.reqs[3].body, big, BIG_LEN) == 0);
    srv_free(&s);
    free(big);
}

/* ---------------------------------------------------------------------------------------- */
/* rt_run: the whole loop                                                                    */
/* ---------------------------------------------------------------------------------------- */

static void script_run(srv *s)
{
    srv_accept(s);
    srv_read(s);
    srv_send(s, "HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: r1\r\n"
                "Lambda-Runtime-Trace-Id: Root=1-abc\r\nContent-Length: 5\r\n\r\nhello");
    srv_read(s);
    srv_send(s, ACCEPTED);
    srv_read(s);
    srv_send(s, "HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: r2\r\n"
                "Content-Length: 4\r\n\r\nfail");
    srv_read(s);
    srv_send(s, ACCEPTED);
    srv_read(s);
    srv_send(s, "HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: r3\r\n"
                "Content-Length: 3\r\n\r\nbig");
    srv_read(s);
    srv_send(s, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n");
    srv_read(s);
    srv_send(s, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
}

typedef struct run_seen {
    int calls;
    char trace[2][64];
} run_seen;

static int run_handler(const rt_invocation *inv, rt_response *out, void *arg)
{
    run_seen *seen = arg;
    const char *t = getenv("_X_AMZN_TRACE_ID");
    if (seen->calls < 2)
        snprintf(seen->trace[seen->calls], sizeof(seen->trace[0]), "%s", t ? t : "(unset)");
    seen->calls++;
    if (inv->body_len == 4 && memcmp(inv->body, "fail", 4) == 0) {
        out->error.type = "MyError";
        out->error.message = "ba\xff\"d";
        return 1;
    }
    if (inv->body_len == 3 && memcmp(inv->body, "big", 3) == 0) {
        T_EQ_INT(rt_buf_append(out->buf, "0123456789", 10), 0);
        out->body = out->buf->data;
        out->len = out->buf->len;
        return 0;
    }
    out->body = inv->body;
    out->len = inv->body_len;
    return 0;
}

static void test_run_loop(void)
{
    srv s;
    srv_start(&s, script_run, NULL);
    srv_run(&s);
    T_EQ_INT(setenv("AWS_LAMBDA_RUNTIME_API", s.api, 1), 0);
    run_seen seen = {0};
    T_EQ_STR(rt_err_name(rt_run(run_handler, &seen)), "RT_ESTATUS");
    unsetenv("AWS_LAMBDA_RUNTIME_API");
    srv_join(&s);
    T_EQ_INT(seen.calls, 3);
    T_EQ_STR(seen.trace[0], "Root=1-abc");
    T_EQ_STR(seen.trace[1], "(unset)");
    T_EQ_INT(s.nreqs, 7);
    T_CONTAINS(s.reqs[1].head, "/invocation/r1/response ");
    T_EQ_STR((const char *)s.reqs[1].body, "hello");
    T_CONTAINS(s.reqs[3].head, "/invocation/r2/error ");
    T_CONTAINS(s.reqs[3].head, "\r\nLambda-Runtime-Function-Error-Type: MyError\r\n");
    T_EQ_STR((const char *)s.reqs[3].body, "{\"errorMessage\":\"ba\xef\xbf\xbd\\\"d\","
                                           "\"errorType\":\"MyError\",\"stackTrace\":[]}");
    T_EQ_STR((const char *)s.reqs[5].body, "0123456789");
    T_CONTAINS(s.reqs[6].head, "GET /2018-06-01/runtime/invocation/next ");
    srv_free(&s);
}

/* ---------------------------------------------------------------------------------------- */
/* The parser alone                                                                          */
/* ---------------------------------------------------------------------------------------- */

static int parse_str(const char *text, rt_http_msg *m)
{
    return rt_http_parse((const uint8_t *)text, strlen(text), m);
}

static void test_parser_prefixes(void)
{
    static const char msg[] = "HTTP/1.1 200 OK\r\n"
                              "transfer-encoding: CHUNKED\r\n"
                              "X-Empty:\r\n"
                              "\r\n"
                              "3\r\nabc\r\n"
                              "2 ; name=\"v\"\r\nde\r\n"
                              "0\r\n"
                              "T: 1\r\n"
                              "\r\n";
    size_t n = sizeof(msg) - 1;
    rt_http_msg m;
    for (size_t k = 0; k < n; k++) {
        int rc = rt_http_parse((const uint8_t *)msg, k, &m);
        if (rc != RT_HTTP_INCOMPLETE)
            T_FAIL("prefix of %zu bytes: %d", k, rc);
    }
    T_EQ_INT(rt_http_parse((const uint8_t *)msg, n, &m), RT_HTTP_COMPLETE);
    T_EQ_INT(m.status, 200);
    T_ASSERT(m.chunked && m.keep_alive && !m.until_close);
    T_EQ_INT(m.msg_len, n);
    T_EQ_INT(m.body_len, 5);
    T_EQ_INT(m.nheaders, 2);
    const rt_http_header *h = rt_http_find((const uint8_t *)msg, &m, "x-empty");
    T_ASSERT(h != NULL);
    T_EQ_INT(h->value_len, 0);
    T_ASSERT(rt_http_find((const uint8_t *)msg, &m, "T") == NULL); /* trailers are not headers */
    uint8_t copy[sizeof(msg)];
    memcpy(copy, msg, sizeof(msg));
    T_EQ_INT(rt_http_dechunk(copy, &m), 5);
    T_ASSERT(memcmp(copy + m.head_len, "abcde", 5) == 0);
}

static void test_parser_cases(void)
{
    rt_http_msg m;
    /* Bare LF line endings, HTTP/1.0 without a length: the body runs to the close. */
    T_EQ_INT(parse_str("HTTP/1.0 200 OK\nA: b\n\nsome body", &m), RT_HTTP_INCOMPLETE);
    T_ASSERT(m.until_close && !m.keep_alive && m.head_len == 22);
    T_EQ_INT(rt_http_complete_at_eof(&m, 31), RT_HTTP_COMPLETE);
    T_EQ_INT(m.body_len, 9);
    T_EQ_INT(
        parse_str("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", &m),
        RT_HTTP_COMPLETE);
    T_ASSERT(m.keep_alive);
    T_EQ_INT(
        parse_str("HTTP/1.1 200 OK\r\nConnection: foo, close\r\nContent-Length: 0\r\n\r\n", &m),
        RT_HTTP_COMPLETE);
    T_ASSERT(!m.keep_alive);
    /* No body for 204 and 304, whatever the headers say. */
    T_EQ_INT(parse_str("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", &m),
             RT_HTTP_COMPLETE);
    T_EQ_INT(m.body_len, 0);
    /* Reason phrase optional; duplicate equal lengths fine; chunked beats Content-Length. */
    T_EQ_INT(parse_str("HTTP/1.1 202\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok", &m),
             RT_HTTP_COMPLETE);
    T_EQ_INT(parse_str("HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked"
                       "\r\n\r\n0\r\n\r\n",
                       &m),
             RT_HTTP_COMPLETE);
    T_EQ_INT(m.body_len, 0);
    T_EQ_INT(m.content_length, -1);

    static const char *const bad[] = {
        "HTTPS/1.1 200 OK\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 099 OK\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "HTTP/1.1 200 O\x01K\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nName : x\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: b\x7f\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1 x\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\rX",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n",
        "garbage",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse_str(bad[i], &m);
        if (rc != RT_EPROTO)
            T_FAIL("bad[%zu] \"%s\": %s", i, bad[i], rt_err_name(rc));
    }
    static const char *const big[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000001\r\n",
    };
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
        T_EQ_STR(rt_err_name(parse_str(big[i], &m)), "RT_ETOOBIG");

    /* Too many headers, and a head past the limit. */
    static char many[8192];
    size_t len = (size_t)snprintf(many, sizeof(many), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i <= RT_HTTP_MAX_HEADERS; i++)
        len += (size_t)snprintf(many + len, sizeof(many) - len, "H%d: v\r\n", i);
    snprintf(many + len, sizeof(many) - len, "\r\n");
    T_EQ_STR(rt_err_name(parse_str(many, &m)), "RT_ETOOBIG");
    size_t hn = RT_HTTP_MAX_HEAD + 100;
    char *huge = malloc(hn + 1);
    T_ASSERT(huge != NULL);
    memcpy(huge, "HTTP/1.1 200 OK\r\nX: ", 20);
    memset(huge + 20, 'a', hn - 20);
    huge[hn] = 0;
    T_EQ_STR(rt_err_name(parse_str(huge, &m)), "RT_ETOOBIG");
    free(huge);
    T_EQ_STR(rt_err_name(rt_http_complete_at_eof(&m, 0)), "RT_EPROTO");
}

/* ---------------------------------------------------------------------------------------- */
/* The JSON string escaper on hostile input                                                  */
/* ---------------------------------------------------------------------------------------- */

static void expect_json(const char *in, size_t n, const char *want)
{
    rt_buf b = {0};
    T_EQ_INT(rt_json_append_string(&b, in, n), 0);
    b.data[b.len] = 0;
    T_EQ_STR((const char *)b.data, want);
    /* Whatever the input, jansson must accept the output as one JSON string. */
    json_error_t err;
    json_t *v = json_loadb((const char *)b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!json_is_string(v))
        T_FAIL("not a JSON string: %s (%s)", (const char *)b.data, err.text);
    json_decref(v);
    rt_buf_free(&b);
}

static void test_json_escape(void)
{
    expect_json("", 0, "\"\"");
    expect_json("plain text", 10, "\"plain text\"");
    expect_json("q\"b\\s/", 6, "\"q\\\"b\\\\s/\"");
    expect_json("\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\"");
    expect_json("a\0b\x1f\x7f", 5, "\"a\\u0000b\\u001f\\u007f\"");
    expect_json("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9,
                "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    /* Invalid UTF-8: a lone continuation, an overlong '/', a surrogate, a too-high lead,
     * a truncated sequence at the end. Each bad byte becomes U+FFFD. */
    expect_json("\x80", 1, "\"\xef\xbf\xbd\"");
    expect_json("\xc0\xaf", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
    expect_json("\xed\xa0\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    expect_json("\xf5\x80", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
    expect_json("ok\xe2\x82", 4, "\"ok\xef\xbf\xbd\xef\xbf\xbd\"");
    /* Every single byte value, and a long hostile string. */
    char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    rt_buf b = {0};
    T_EQ_INT(rt_json_append_string(&b, all, sizeof(all)), 0);
    for (size_t i = 0; i < b.len; i++)
        T_ASSERT(b.data[i] >= 0x20 && b.data[i] != 0x7f);
    rt_buf_free(&b);
}

static void test_errors_table(void)
{
    T_EQ_STR(rt_err_name(0), "RT_OK");
    T_EQ_STR(rt_err_name(RT_ESTATUS), "RT_ESTATUS");
    T_EQ_STR(rt_err_name(-999), "RT_E?");
    T_EQ_STR(rt_strerror(RT_ENOMEM), "out of memory");
    rt_client *c = (rt_client *)1;
    T_EQ_STR(rt_err_name(rt_client_new("nohostport", &c)), "RT_EENV");
    T_ASSERT(c == NULL);
    T_EQ_STR(rt_err_name(rt_client_new("host:0", &c)), "RT_EENV");
    T_EQ_STR(rt_err_name(rt_client_new(":80", &c)), "RT_EENV");
    T_EQ_STR(rt_err_name(rt_client_new("h:8x", &c)), "RT_EENV");
    T_EQ_STR(rt_err_name(rt_client_new("h o:80", &c)), "RT_EENV");
    T_EQ_INT(rt_client_new("[::1]:9001", &c), 0);
    rt_client_free(c);
    rt_client_free(NULL);
    rt_buf_free(NULL);
}

int main(void)
{
    T_RUN(test_errors_table);
    T_RUN(test_json_escape);
    T_RUN(test_parser_prefixes);
    T_RUN(test_parser_cases);
    T_RUN(test_basic_exchange);
    T_RUN(test_chunked);
    T_RUN(test_server_closes);
    T_RUN(test_reconnects_only_once);
    T_RUN(test_statuses);
    T_RUN(test_big_bodies);
    T_RUN(test_run_loop);
    fprintf(stderr, "test_runtime_client: all passed\n");
    return 0;
}
