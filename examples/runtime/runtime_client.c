/*
 * runtime_client.c - the Runtime API client: one blocking keep-alive TCP connection, one
 * sendmsg per request, responses read into one reusable buffer and parsed in place.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* putenv, getaddrinfo, MSG_NOSIGNAL, SOCK_CLOEXEC */
#endif
#include "runtime.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define RT_API_PREFIX "/2018-06-01/runtime/"
#define RT_TRACE_ENV "_X_AMZN_TRACE_ID"
/* Room kept free before each read. Also the buffer's initial size, allocated up front so
 * that reading an answer never reallocates before its first byte arrives (see exchange). */
#define RT_READ_CHUNK (64u * 1024u)

struct rt_client {
    int fd;         /* -1 when not connected */
    bool reused;    /* fd has completed at least one exchange */
    char *node;     /* getaddrinfo host */
    char *service;  /* getaddrinfo port */
    char *hostport; /* Host header value */
    rt_buf head;    /* the request line and headers being sent */
    rt_buf body;    /* error bodies built by rt_fail / rt_init_error */
    rt_buf in;      /* the last answer, parsed in place; what rt_invocation points into */
    rt_http_msg msg;
    int status;
    unsigned connects;
    char *trace_env; /* "_X_AMZN_TRACE_ID=..." handed to putenv; owned, NULL until needed */
    size_t trace_cap;
    bool trace_set; /* trace_env is in the environment */
};

/* Splits api ("host:port" or "[v6]:port") into freshly allocated node and service. */
static int split_api(const char *api, char **node, char **service)
{
    size_t n = strlen(api);
    const char *host = api, *colon;
    size_t host_len;
    if (n > 0 && api[0] == '[') {
        const char *rb = memchr(api, ']', n);
        if (!rb || rb[1] != ':')
            return RT_EENV;
        host = api + 1;
        host_len = (size_t)(rb - host);
        colon = rb + 1;
    } else {
        colon = strrchr(api, ':');
        if (!colon)
            return RT_EENV;
        host_len = (size_t)(colon - api);
    }
    const char *port = colon + 1;
    size_t port_len = strlen(port);
    if (host_len == 0 || port_len == 0 || port_len > 5)
        return RT_EENV;
    long pv = 0;
    for (size_t i = 0; i < port_len; i++) {
        if (port[i] < '0' || port[i] > '9')
            return RT_EENV;
        pv = pv * 10 + (port[i] - '0');
    }
    if (pv < 1 || pv > 65535)
        return RT_EENV;
    *node = strndup(host, host_len);
    *service = strndup(port, port_len);
    if (!*node || !*service) {
        free(*node);
        free(*service);
        *node = *service = NULL;
        return RT_ENOMEM;
    }
    return 0;
}

int rt_client_new(const char *api, rt_client **out)
{
    *out = NULL;
    if (!api)
        api = getenv("AWS_LAMBDA_RUNTIME_API");
    if (!api || !*api)
        return RT_EENV;
    for (const char *s = api; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return RT_EENV; /* it goes into the Host header */

    int rc = RT_ENOMEM;
    rt_client *c = calloc(1, sizeof(*c));
    if (!c)
        return RT_ENOMEM;
    c->fd = -1;
    if ((rc = split_api(api, &c->node, &c->service)))
        goto fail;
    rc = RT_ENOMEM;
    if (!(c->hostport = strdup(api)))
        goto fail;
    if ((rc = rt_buf_reserve(&c->in, RT_READ_CHUNK)) || (rc = rt_buf_reserve(&c->head, 512)))
        goto fail;
    *out = c;
    return 0;
fail:
    rt_client_free(c);
    return rc;
}

static void close_fd(rt_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->reused = false;
}

void rt_client_free(rt_client *c)
{
    if (!c)
        return;
    close_fd(c);
    if (c->trace_set)
        unsetenv(RT_TRACE_ENV); /* environ must not keep a pointer to trace_env */
    free(c->trace_env);
    free(c->node);
    free(c->service);
    free(c->hostport);
    rt_buf_free(&c->head);
    rt_buf_free(&c->body);
    rt_buf_free(&c->in);
    free(c);
}

int rt_client_status(const rt_client *c)
{
    return c->status;
}

unsigned rt_client_connects(const rt_client *c)
{
    return c->connects;
}

static int do_connect(rt_client *c)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(c->node, c->service, &hints, &res) != 0 || !res)
        return RT_ECONNECT;
    int rc = RT_ECONNECT;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int r;
        do
            r = connect(fd, ai->ai_addr, ai->ai_addrlen);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
            close(fd);
            continue;
        }
        /* Without it a response sent as head + body waits for the peer's delayed ACK. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->fd = fd;
        c->reused = false;
        c->connects++;
        rc = 0;
        break;
    }
    freeaddrinfo(res);
    return rc;
}

/* Sends c->head then body[0..len) with as few sendmsg calls as the kernel allows (one). */
static int send_request(rt_client *c, const void *body, size_t len)
{
    struct iovec iov[2] = {
        {.iov_base = c->head.data, .iov_len = c->head.len},
        {.iov_base = (void *)body, .iov_len = len},
    };
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    while (mh.msg_iovlen > 0) {
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return (errno == EPIPE || errno == ECONNRESET) ? RT_ECLOSED : RT_EIO;
        }
        size_t left = (size_t)w;
        while (mh.msg_iovlen > 0 && left >= mh.msg_iov[0].iov_len) {
            left -= mh.msg_iov[0].iov_len;
            mh.msg_iov++;
            mh.msg_iovlen--;
        }
        if (mh.msg_iovlen > 0) {
            mh.msg_iov[0].iov_base = (uint8_t *)mh.msg_iov[0].iov_base + left;
            mh.msg_iov[0].iov_len -= left;
        }
    }
    return 0;
}

/*
 * Reads one answer into c->in and parses it into c->msg; on success the body is decoded,
 * contiguous at c->in.data + msg.head_len and NUL-terminated. *got tells whether any byte
 * arrived (a keep-alive connection the server closed while idle fails with none).
 */
static int read_response(rt_client *c, bool *got)
{
    rt_buf *in = &c->in;
    rt_http_msg *m = &c->msg;
    in->len = 0;
    *got = false;
    for (;;) {
        int rc = RT_HTTP_INCOMPLETE;
        if (in->len > 0) {
            rc = rt_http_parse(in->data, in->len, m);
            if (rc < 0)
                return rc;
        }
        if (rc == RT_HTTP_COMPLETE) {
            if (m->status < 200) {
                /* An interim 1xx answer: drop it and read the real one. */
                memmove(in->data, in->data + m->msg_len, in->len - m->msg_len);
                in->len -= m->msg_len;
                continue;
            }
            if (in->len != m->msg_len)
                return RT_EPROTO; /* we never pipeline, so nothing may follow */
            break;
        }
        /* Make room: exactly the rest of a Content-Length body, else another chunk. The
         * buffer is not grown while it is empty, so a request body that points into it
         * stays valid for a resend after an idle close. */
        size_t want = RT_READ_CHUNK;
        if (m->head_len && m->content_length >= 0)
            want = m->head_len + (size_t)m->content_length - in->len;
        if (in->len > 0 && in->cap - in->len - 1 < want) {
            if ((rc = rt_buf_reserve(in, want)))
                return rc;
        }
        size_t room = in->cap - in->len - 1; /* keep one byte for the body's NUL */
        ssize_t r = recv(c->fd, in->data + in->len, room, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno != ECONNRESET)
            return RT_EIO;
        if (r <= 0) {
            if (in->len > 0 && m->until_close && rt_http_complete_at_eof(m, in->len) > 0) {
                c->status = m->status;
                break;
            }
            return RT_ECLOSED;
        }
        in->len += (size_t)r;
        *got = true;
    }
    c->status = m->status;
    if (m->chunked && rt_http_dechunk(in->data, m) < 0)
        return RT_EPROTO;
    in->data[m->head_len + m->body_len] = '\0';
    return 0;
}

/*
 * Sends the request in c->head (+ body) and reads the answer into c->msg / c->in. A
 * keep-alive connection found closed before any byte of the answer is reopened and the
 * request sent once more: the server closed it while idle, so it never saw the request.
 */
static int exchange(rt_client *c, const void *body, size_t len)
{
    for (int attempt = 0;; attempt++) {
        bool reused = c->fd >= 0;
        int rc = 0;
        if (!reused && (rc = do_connect(c)))
            return rc;
        bool got = false;
        rc = send_request(c, body, len);
        if (rc == 0)
            rc = read_response(c, &got);
        if (rc == 0) {
            if (c->msg.keep_alive)
                c->reused = true;
            else
                close_fd(c);
            return 0;
        }
        close_fd(c);
        if (!(rc == RT_ECLOSED && reused && !got && attempt == 0))
            return rc;
    }
}

static int head_str(rt_client *c, const char *s)
{
    return rt_buf_append(&c->head, s, strlen(s));
}

static int head_u64(rt_client *c, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return rt_buf_append(&c->head, tmp + i, sizeof(tmp) - i);
}

/* Appends id percent-encoded as encodeURIComponent does (unreserved characters kept). */
static int head_path_segment(rt_client *c, const char *id)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *s = (const unsigned char *)id; *s; s++) {
        bool keep = (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
                    (*s >= 'A' && *s <= 'Z') || *s == '-' || *s == '_' || *s == '.' || *s == '~';
        char enc[3] = {'%', hex[*s >> 4], hex[*s & 15]};
        int rc = keep ? rt_buf_append(&c->head, s, 1) : rt_buf_append(&c->head, enc, 3);
        if (rc)
            return rc;
    }
    return 0;
}

/* Starts a request head: "METHOD /2018-06-01/runtime/"; the caller appends the path. */
static int head_start(rt_client *c, const char *method)
{
    c->head.len = 0;
    int rc;
    if ((rc = head_str(c, method)) || (rc = head_str(c, " " RT_API_PREFIX)))
        return rc;
    return 0;
}

/* Ends a request head: the protocol, Host, the error type header if any, Content-Length. */
static int head_finish(rt_client *c, size_t body_len, const char *error_type)
{
    int rc;
    if ((rc = head_str(c, " HTTP/1.1\r\nHost: ")) || (rc = head_str(c, c->hostport)))
        return rc;
    if (error_type) {
        if ((rc = head_str(c, "\r\nLambda-Runtime-Function-Error-Type: ")) ||
            (rc = head_str(c, error_type)) ||
            (rc = head_str(c, "\r\nContent-Type: application/json")))
            return rc;
    }
    if ((rc = head_str(c, "\r\nContent-Length: ")) || (rc = head_u64(c, body_len)) ||
        (rc = head_str(c, "\r\n\r\n")))
        return rc;
    return 0;
}

/* Returns header name's value, NUL-terminated in place, or "" when absent. */
static const char *header_cstr(rt_client *c, const char *name)
{
    const rt_http_header *h = rt_http_find(c->in.data, &c->msg, name);
    if (!h)
        return "";
    /* The value ends before its line ending, inside the head: terminating it there
     * overwrites only framing bytes already parsed. */
    c->in.data[h->value_off + h->value_len] = '\0';
    return (const char *)c->in.data + h->value_off;
}

static int64_t parse_i64(const char *s)
{
    int64_t v = 0;
    if (!*s)
        return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (INT64_MAX - 9) / 10)
            return 0;
        v = v * 10 + (*s - '0');
    }
    return v;
}

/* Points _X_AMZN_TRACE_ID at trace, or removes it when trace is "". */
static int set_trace_env(rt_client *c, const char *trace)
{
    size_t tl = strlen(trace);
    if (tl == 0) {
        unsetenv(RT_TRACE_ENV);
        c->trace_set = false;
        return 0;
    }
    size_t need = sizeof(RT_TRACE_ENV "=") + tl;
    if (need > c->trace_cap) {
        /* putenv keeps our pointer: install the new string before freeing the old one. */
        char *nb = malloc(need + 64);
        if (!nb)
            return RT_ENOMEM;
        memcpy(nb, RT_TRACE_ENV "=", sizeof(RT_TRACE_ENV "="));
        memcpy(nb + sizeof(RT_TRACE_ENV "=") - 1, trace, tl + 1);
        if (putenv(nb) != 0) {
            free(nb);
            return RT_ENOMEM;
        }
        free(c->trace_env);
        c->trace_env = nb;
        c->trace_cap = need + 64;
        c->trace_set = true;
        return 0;
    }
    memcpy(c->trace_env + sizeof(RT_TRACE_ENV "=") - 1, trace, tl + 1);
    if (!c->trace_set || getenv(RT_TRACE_ENV) != c->trace_env + sizeof(RT_TRACE_ENV "=") - 1) {
        if (putenv(c->trace_env) != 0)
            return RT_ENOMEM;
        c->trace_set = true;
    }
    return 0;
}

int rt_next(rt_client *c, rt_invocation *inv)
{
    int rc;
    memset(inv, 0, sizeof(*inv));
    if ((rc = head_start(c, "GET")) || (rc = head_str(c, "invocation/next")) ||
        (rc = head_str(c, " HTTP/1.1\r\nHost: ")) || (rc = head_str(c, c->hostport)) ||
        (rc = head_str(c, "\r\n\r\n")))
        return rc;
    if ((rc = exchange(c, NULL, 0)))
        return rc;
    if (c->msg.status != 200)
        return RT_ESTATUS;
    inv->request_id = header_cstr(c, "Lambda-Runtime-Aws-Request-Id");
    if (!*inv->request_id)
        return RT_EPROTO;
    inv->deadline_ms = parse_i64(header_cstr(c, "Lambda-Runtime-Deadline-Ms"));
    inv->function_arn = header_cstr(c, "Lambda-Runtime-Invoked-Function-Arn");
    inv->trace_id = header_cstr(c, "Lambda-Runtime-Trace-Id");
    inv->client_context = header_cstr(c, "Lambda-Runtime-Client-Context");
    inv->cognito_identity = header_cstr(c, "Lambda-Runtime-Cognito-Identity");
    inv->content_type = header_cstr(c, "Content-Type");
    inv->body = c->in.data + c->msg.head_len;
    inv->body_len = c->msg.body_len;
    return set_trace_env(c, inv->trace_id);
}

static int post(rt_client *c, const void *body, size_t len)
{
    int rc = exchange(c, body, len);
    if (rc)
        return rc;
    return (c->msg.status >= 200 && c->msg.status < 300) ? 0 : RT_ESTATUS;
}

int rt_respond(rt_client *c, const char *request_id, const void *body, size_t len)
{
    int rc;
    if (!request_id || !*request_id || (!body && len))
        return RT_EINVAL;
    if ((rc = head_start(c, "POST")) || (rc = head_str(c, "invocation/")) ||
        (rc = head_path_segment(c, request_id)) || (rc = head_str(c, "/response")) ||
        (rc = head_finish(c, len, NULL)))
        return rc;
    return post(c, body, len);
}

/* Builds the error JSON body into c->body and checks the header value; 0 or RT_E*. */
static int build_error(rt_client *c, const rt_error *err, const char **category)
{
    const char *type = err && err->type ? err->type : "Error";
    const char *msg = err && err->message ? err->message : "";
    *category = err && err->category ? err->category : type;
    if (!**category)
        return RT_EINVAL;
    for (const unsigned char *s = (const unsigned char *)*category; *s; s++)
        if (*s < 0x20 || *s == 0x7f)
            return RT_EINVAL;
    rt_buf *b = &c->body;
    b->len = 0;
    int rc;
    if ((rc = rt_buf_append(b, "{\"errorMessage\":", 16)) ||
        (rc = rt_json_append_string(b, msg, strlen(msg))) ||
        (rc = rt_buf_append(b, ",\"errorType\":", 13)) ||
        (rc = rt_json_append_string(b, type, strlen(type))) ||
        (rc = rt_buf_append(b, ",\"stackTrace\":[]}", 17)))
        return rc;
    return 0;
}

int rt_fail(rt_client *c, const char *request_id, const rt_error *err)
{
    int rc;
    const char *category;
    if (!request_id || !*request_id)
        return RT_EINVAL;
    if ((rc = build_error(c, err, &category)))
        return rc;
    if ((rc = head_start(c, "POST")) || (rc = head_str(c, "invocation/")) ||
        (rc = head_path_segment(c, request_id)) || (rc = head_str(c, "/error")) ||
        (rc = head_finish(c, c->body.len, category)))
        return rc;
    return post(c, c->body.data, c->body.len);
}

int rt_init_error(rt_client *c, const rt_error *err)
{
    int rc;
    const char *category;
    if ((rc = build_error(c, err, &category)))
        return rc;
    if ((rc = head_start(c, "POST")) || (rc = head_str(c, "init/error")) ||
        (rc = head_finish(c, c->body.len, category)))
        return rc;
    return post(c, c->body.data, c->body.len);
}
