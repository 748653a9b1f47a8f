/*
 * invoker_dest.c - destinations by URI, one abstraction for every source:
 *   file:///abs/path.jsonl        one JSON document per line, fdatasync'ed before "delivered"
 *   redis://host:port[/db]/stream XADD stream * record <json>, delivered once Redis answers
 *   function:NAME                 an async invocation of NAME with the record as its event
 *
 * File writes and their fsyncs run in one helper thread (the loop never waits on the disk);
 * records queued while an fsync is under way share the next one. Redis goes through hiredis's
 * async API on the loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libevent.h>

#include "invoker/invoker_internal.h"

typedef void (*dest_cb)(int err, void *arg);

/* ---------------------------------------------------------------------------------------- */
/* file://                                                                                  */
/* ---------------------------------------------------------------------------------------- */

struct file_job {
    struct file_job *next;
    char *path;
    char *data; /* record plus '\n' */
    size_t len;
    int err;
    dest_cb cb;
    void *arg;
};

struct open_file {
    struct open_file *next;
    char *path;
    int fd;
};

struct redis_conn;

struct inv_dest {
    inv_invoker *inv;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    struct file_job *todo_head, *todo_tail; /* loop -> thread */
    struct file_job *done_head, *done_tail; /* thread -> loop */
    int pipe_rd, pipe_wr;
    struct event *done_ev;
    struct open_file *files; /* owned by the thread */
    struct redis_conn *redis;
    bool closing; /* inv_dest_free: pending callbacks are dropped, not run */
};

static int file_open_cached(struct inv_dest *d, const char *path)
{
    for (struct open_file *f = d->files; f; f = f->next)
        if (strcmp(f->path, path) == 0)
            return f->fd;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    struct open_file *f = calloc(1, sizeof(*f));
    if (!f || !(f->path = strdup(path))) {
        free(f);
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    f->fd = fd;
    f->next = d->files;
    d->files = f;
    return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *file_thread(void *arg)
{
    struct inv_dest *d = arg;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (!d->todo_head && !d->stop)
            pthread_cond_wait(&d->cv, &d->mu);
        if (!d->todo_head && d->stop)
            break;
        struct file_job *batch = d->todo_head;
        d->todo_head = d->todo_tail = NULL;
        pthread_mutex_unlock(&d->mu);

        /* Write every record, then one fdatasync per file touched (group commit). */
        int fds[64];
        int nfds = 0;
        for (struct file_job *j = batch; j; j = j->next) {
            int fd = file_open_cached(d, j->path);
            if (fd < 0 || write_all(fd, j->data, j->len) != 0) {
                j->err = SL_EIO;
                continue;
            }
            bool seen = false;
            for (int i = 0; i < nfds; i++)
                seen |= fds[i] == fd;
            if (!seen && nfds < 64)
                fds[nfds++] = fd;
            else if (!seen && fdatasync(fd) != 0)
                j->err = SL_EIO;
        }
        for (int i = 0; i < nfds; i++) {
            if (fdatasync(fds[i]) != 0) {
                for (struct file_job *j = batch; j; j = j->next)
                    if (!j->err && file_open_cached(d, j->path) == fds[i])
                        j->err = SL_EIO;
            }
        }

        pthread_mutex_lock(&d->mu);
        struct file_job *last = batch;
        while (last->next)
            last = last->next;
        if (d->done_tail)
            d->done_tail->next = batch;
        else
            d->done_head = batch;
        d->done_tail = last;
        char one = 1;
        if (write(d->pipe_wr, &one, 1) < 0) {
            /* the pipe is full: the loop is already woken */
        }
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

static void on_file_done(evutil_socket_t fd, short what, void *arg)
{
    struct inv_dest *d = arg;
    char buf[256];
    while (read(d->pipe_rd, buf, sizeof(buf)) > 0) {
    }
    pthread_mutex_lock(&d->mu);
    struct file_job *j = d->done_head;
    d->done_head = d->done_tail = NULL;
    pthread_mutex_unlock(&d->mu);
    while (j) {
        struct file_job *next = j->next;
        if (j->err)
            sl_warn("dest", "cannot write to file://%s: %s", j->path, strerror(errno));
        j->cb(j->err, j->arg);
        free(j->path);
        free(j->data);
        free(j);
        j = next;
    }
}

static int file_send(struct inv_dest *d, const char *path, const char *rec, size_t len,
                     dest_cb cb, void *arg)
{
    struct file_job *j = calloc(1, sizeof(*j));
    if (!j)
        return SL_ENOMEM;
    j->path = strdup(path);
    j->data = malloc(len + 1);
    if (!j->path || !j->data) {
        free(j->path);
        free(j->data);
        free(j);
        return SL_ENOMEM;
    }
    memcpy(j->data, rec, len);
    j->data[len] = '\n';
    j->len = len + 1;
    j->cb = cb;
    j->arg = arg;
    pthread_mutex_lock(&d->mu);
    if (d->todo_tail)
        d->todo_tail->next = j;
    else
        d->todo_head = j;
    d->todo_tail = j;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* redis://                                                                                 */
/* ---------------------------------------------------------------------------------------- */

struct redis_conn {
    struct redis_conn *next;
    struct inv_dest *d;
    char host[256];
    int port;
    int db;
    redisAsyncContext *ac; /* NULL while disconnected */
    bool warned;
};

struct redis_req {
    dest_cb cb;
    void *arg;
    struct redis_conn *rc;
};

static void redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_conn *rc = ac->data;
    if (rc && rc->ac == ac)
        rc->ac = NULL;
}

static void redis_on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_conn *rc = ac->data;
    if (status != REDIS_OK) {
        if (rc && !rc->warned)
            sl_warn("dest", "redis://%s:%d: cannot connect: %s", rc->host, rc->port, ac->errstr);
        if (rc) {
            rc->warned = true;
            if (rc->ac == ac)
                rc->ac = NULL;
        }
        return;
    }
    if (rc && rc->warned) {
        sl_info("dest", "redis://%s:%d: connected again", rc->host, rc->port);
        rc->warned = false;
    }
}

static void redis_on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_req *q = privdata;
    redisReply *reply = r;
    int err = 0;
    if (q->rc->d->closing) {
        free(q);
        return;
    }
    if (!reply) {
        err = SL_ECONNECT;
    } else if (reply->type == REDIS_REPLY_ERROR) {
        sl_warn("dest", "redis://%s:%d: XADD failed: %s", q->rc->host, q->rc->port, reply->str);
        err = SL_EIO;
    }
    q->cb(err, q->arg);
    free(q);
}

static void redis_on_select(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    (void)r;
    (void)privdata;
}

static struct redis_conn *redis_get(struct inv_dest *d, const char *host, int port, int db)
{
    struct redis_conn *rc;
    for (rc = d->redis; rc; rc = rc->next)
        if (rc->port == port && rc->db == db && strcmp(rc->host, host) == 0)
            break;
    if (!rc) {
        rc = calloc(1, sizeof(*rc));
        if (!rc)
            return NULL;
        rc->d = d;
        snprintf(rc->host, sizeof(rc->host), "%s", host);
        rc->port = port;
        rc->db = db;
        rc->next = d->redis;
        d->redis = rc;
    }
    if (!rc->ac) {
        redisAsyncContext *ac = redisAsyncConnect(rc->host, rc->port);
        if (!ac)
            return NULL;
        if (ac->err) {
            if (!rc->warned)
                sl_warn("dest", "redis://%s:%d: %s", rc->host, rc->port, ac->errstr);
            rc->warned = true;
            redisAsyncFree(ac);
            return NULL;
        }
        ac->data = rc;
        redisLibeventAttach(ac, d->inv->base);
        redisAsyncSetConnectCallback(ac, redis_on_connect);
        redisAsyncSetDisconnectCallback(ac, redis_on_disconnect);
        rc->ac = ac;
        if (db)
            redisAsyncCommand(ac, redis_on_select, NULL, "SELECT %d", db);
    }
    return rc;
}

/* Parses "host:port[/db]/stream" (after "redis://"). */
static int redis_parse(const char *s, char *host, size_t hostsz, int *port, int *db,
                       char *stream, size_t streamsz)
{
    const char *colon = strchr(s, ':');
    const char *slash = strchr(s, '/');
    if (!slash)
        return SL_EINVAL;
    if (colon && colon < slash) {
        if ((size_t)(colon - s) >= hostsz)
            return SL_EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        *port = atoi(colon + 1);
    } else {
        if ((size_t)(slash - s) >= hostsz)
            return SL_EINVAL;
        memcpy(host, s, (size_t)(slash - s));
        host[slash - s] = '\0';
        *port = 6379;
    }
    const char *rest = slash + 1;
    const char *slash2 = strchr(rest, '/');
    *db = 0;
    if (slash2) {
        *db = atoi(rest);
        rest = slash2 + 1;
    }
    if (!*rest || strlen(rest) >= streamsz || *port <= 0 || *port > 65535)
        return SL_EINVAL;
    snprintf(stream, streamsz, "%s", rest);
    return 0;
}

static int redis_send(struct inv_dest *d, const char *spec, const char *rec, size_t len,
                      dest_cb cb, void *arg)
{
    char host[256], stream[512];
    int port, db;
    int err = redis_parse(spec, host, sizeof(host), &port, &db, stream, sizeof(stream));
    if (err)
        return err;
    struct redis_conn *rc = redis_get(d, host, port, db);
    if (!rc || !rc->ac)
        return SL_ECONNECT;
    struct redis_req *q = calloc(1, sizeof(*q));
    if (!q)
        return SL_ENOMEM;
    q->cb = cb;
    q->arg = arg;
    q->rc = rc;
    if (redisAsyncCommand(rc->ac, redis_on_reply, q, "XADD %s * record %b", stream, rec, len) !=
        REDIS_OK) {
        free(q);
        return SL_ECONNECT;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* function:NAME                                                                            */
/* ---------------------------------------------------------------------------------------- */

struct fn_req {
    dest_cb cb;
    void *arg;
};

static void on_fn_accepted(int err, const char *request_id, void *arg)
{
    struct fn_req *q = arg;
    q->cb(err, q->arg);
    free(q);
}

/* ---------------------------------------------------------------------------------------- */

int inv_dest_send(inv_invoker *inv, const char *uri, const char *record, size_t len,
                  void (*cb)(int err, void *arg), void *arg)
{
    struct inv_dest *d = inv->dest;
    if (strncmp(uri, "file://", 7) == 0)
        return file_send(d, uri + 7, record, len, cb, arg);
    if (strncmp(uri, "redis://", 8) == 0)
        return redis_send(d, uri + 8, record, len, cb, arg);
    if (strncmp(uri, "function:", 9) == 0) {
        struct fn_req *q = calloc(1, sizeof(*q));
        if (!q)
            return SL_ENOMEM;
        q->cb = cb;
        q->arg = arg;
        int err = inv_async_submit(inv, uri + 9, record, len, on_fn_accepted, q);
        if (err)
            free(q);
        return err;
    }
    return SL_EINVAL;
}

int inv_dest_init(inv_invoker *inv)
{
    struct inv_dest *d = calloc(1, sizeof(*d));
    int p[2];
    if (!d)
        return SL_ENOMEM;
    d->inv = inv;
    d->pipe_rd = d->pipe_wr = -1;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    inv->dest = d;
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
        return SL_EIO;
    d->pipe_rd = p[0];
    d->pipe_wr = p[1];
    d->done_ev = event_new(inv->base, d->pipe_rd, EV_READ | EV_PERSIST, on_file_done, d);
    if (!d->done_ev || event_add(d->done_ev, NULL) != 0)
        return SL_ENOMEM;
    if (pthread_create(&d->thread, NULL, file_thread, d) != 0)
        return SL_ENOMEM;
    d->thread_started = true;
    return 0;
}

void inv_dest_free(inv_invoker *inv)
{
    struct inv_dest *d = inv->dest;
    if (!d)
        return;
    d->closing = true;
    if (d->thread_started) {
        pthread_mutex_lock(&d->mu);
        d->stop = true;
        pthread_cond_signal(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->thread, NULL);
    }
    /* Records written but not yet reported are durable; drop their callbacks' owners. */
    for (struct file_job *j = d->done_head; j;) {
        struct file_job *next = j->next;
        free(j->path);
        free(j->data);
        free(j);
        j = next;
    }
    for (struct file_job *j = d->todo_head; j;) {
        struct file_job *next = j->next;
        free(j->path);
        free(j->data);
        free(j);
        j = next;
    }
    while (d->files) {
        struct open_file *f = d->files;
        d->files = f->next;
        close(f->fd);
        free(f->path);
        free(f);
    }
    while (d->redis) {
        struct redis_conn *rc = d->redis;
        d->redis = rc->next;
        if (rc->ac) {
            rc->ac->data = NULL;
            redisAsyncFree(rc->ac);
        }
        free(rc);
    }
    if (d->done_ev)
        event_free(d->done_ev);
    if (d->pipe_rd >= 0)
        close(d->pipe_rd);
    if (d->pipe_wr >= 0)
        close(d->pipe_wr);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d);
    inv->dest = NULL;
}
