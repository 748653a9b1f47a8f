/* bench-server: the baseline for the invoke benchmark, a trivial loopback HTTP server.
 *
 * libevent evhttp on 127.0.0.1, single-threaded like the broker, answering every request
 * 200 with the request body echoed back as application/json. TCP_NODELAY is set on the
 * connection before each reply, as broker/broker_api.c does, so the baseline pays the same
 * per-request costs the broker's HTTP layer pays and nothing else.
 *
 * usage: bench-server [--port N]   (default 0: the kernel picks a port)
 * The first line on stdout is the bound port number; the server then runs until SIGINT or
 * SIGTERM and exits 0.
 */

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static void set_nodelay(struct evhttp_request *req)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    int fd = bev ? bufferevent_getfd(bev) : -1;
    int one = 1;

    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    struct evbuffer *out = evbuffer_new();

    (void)arg;
    set_nodelay(req);
    if (!out) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    /* Moves the body's chains without copying; the broker's echo path copies at least once. */
    evbuffer_add_buffer(out, in);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopexit(arg, NULL);
}

int main(int argc, char **argv)
{
    struct event_base *base = NULL;
    struct evhttp *http = NULL;
    struct evhttp_bound_socket *bound;
    struct event *sigint = NULL, *sigterm = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    long port = 0;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "--port") && i + 1 < argc) {
            errno = 0;
            port = strtol(argv[++i], &end, 10);
            if (errno || *end || port < 0 || port > 65535) {
                fprintf(stderr, "bench-server: bad --port %s\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: bench-server [--port N]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    http = base ? evhttp_new(base) : NULL;
    if (!http) {
        fprintf(stderr, "bench-server: cannot create the event base or HTTP server\n");
        goto out;
    }
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT);
    evhttp_set_max_body_size(http, 16 * 1024 * 1024);
    evhttp_set_gencb(http, on_request, NULL);
    bound = evhttp_bind_socket_with_handle(http, "127.0.0.1", (ev_uint16_t)port);
    if (!bound) {
        fprintf(stderr, "bench-server: cannot listen on 127.0.0.1:%ld\n", port);
        goto out;
    }
    if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &sl) < 0) {
        perror("bench-server: getsockname");
        goto out;
    }
    sigint = evsignal_new(base, SIGINT, on_signal, base);
    sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    if (!sigint || !sigterm || evsignal_add(sigint, NULL) < 0 || evsignal_add(sigterm, NULL) < 0) {
        fprintf(stderr, "bench-server: cannot install signal handlers\n");
        goto out;
    }
    printf("%u\n", (unsigned)ntohs(((struct sockaddr_in *)&ss)->sin_port));
    fflush(stdout);
    event_base_dispatch(base);
    rc = 0;
out:
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    if (http)
        evhttp_free(http);
    if (base)
        event_base_free(base);
    return rc;
}
