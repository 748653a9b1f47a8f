/* broker_net.c - small socket helpers shared by the HTTP servers (API, Runtime API). */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "broker/broker.h"

void sl_listener_nodelay(struct evhttp_bound_socket *bound)
{
    int one = 1;
    int fd = bound ? evhttp_bound_socket_get_fd(bound) : -1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

char *sl_evbuffer_take_string(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    if (s) {
        evbuffer_remove(b, s, n);
        s[n] = '\0';
    }
    evbuffer_free(b);
    return s;
}
