/* broker_net.c - small socket helpers shared by the HTTP servers (API, Runtime API). */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/http.h>

#include "broker/broker.h"

void sl_listener_nodelay(struct evhttp_bound_socket *bound)
{
    int one = 1;
    int fd = bound ? evhttp_bound_socket_get_fd(bound) : -1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}
