/* bench-http: a closed-loop HTTP/1.1 load generator for the benchmarks in tests/bench/.
 *
 * N connections, one thread each, blocking sockets with TCP_NODELAY and keep-alive. Every
 * thread sends POST <path> with a fixed body and waits for the whole response (Content-Length,
 * chunked, or read-to-close) before sending the next, so N is also the number of requests in
 * flight. Latency is CLOCK_MONOTONIC from the first byte written to the last byte read.
 *
 * A thread per connection is the simplest client that is obviously not the bottleneck for
 * N <= 64 on loopback; the same client is pointed at the baseline server and at the broker, so
 * its own cost cancels out of the ratio.
 *
 * Output: one JSON line on stdout,
 *   {"requests":..,"errors":..,"seconds":..,"rps":..,"p50_us":..,"p90_us":..,"p99_us":..,
 *    "max_us":..,"concurrency":..,"warmup_errors":..}
 * where requests counts every response or failure in the measured phase, errors those whose
 * status differs from --expect-status or that failed on the wire, rps is requests / seconds and
 * the percentiles are over the requests that succeeded; warmup_errors counts the same failures
 * during --warmup, which are otherwise not reported. Exit status 0 unless the arguments are
 * bad or no connection could be made at all; the caller judges "errors".
 */

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADERS 32
#define MAX_CONCURRENCY 1024
#define RESP_HEAD_MAX 16384
#define MAX_ERRORS_SHOWN 5
/* A connection that cannot be (re)made this many times in a row ends its thread. */
#define MAX_CONNECT_FAILURES 20

struct opts {
    char host[256];
    char port[16];
    char path[2048];
    int concurrency;
    long requests;   /* measured requests in total; 0: use duration */
    double duration; /* seconds, when requests == 0 */
    long warmup;     /* unmeasured requests in total before the measured phase */
    const char *headers[MAX_HEADERS];
    int nheaders;
    long body_size;
    int expect_status;
    double timeout; /* per-request socket timeout, seconds */
};

/* Shared by all threads; the counters are claimed with atomic_fetch_add. */
struct shared {
    const struct opts *o;
    const char *req;
    size_t req_len;
    atomic_long warmup_left;
    atomic_long measure_left;
    atomic_int errors_shown;
    pthread_barrier_t ready;
    uint64_t end_ns; /* duration mode: written before the barrier, read after it */
};

/* One connection and the latencies it recorded (nanoseconds, successes only). */
struct worker {
    struct shared *sh;
    pthread_t tid;
    int fd;
    int connect_failures;
    bool dead;
    uint64_t *lat;
    size_t nlat, cap;
    long requests, errors, warmup_errors;
    /* response buffer: bytes [pos, len) are read but not yet consumed */
    char *buf;
    size_t pos, len, bufcap;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench-http --url http://HOST:PORT/PATH [--concurrency N] "
               "[--requests TOTAL | --duration SECONDS]\n"
               "                  [--warmup N] [--header 'K: V']... [--body-size B] "
               "[--expect-status S] [--timeout SECONDS]\n"
               "Defaults: --concurrency 1 --duration 5 --warmup 0 --body-size 100 "
               "--expect-status 200 --timeout 30.\n");
}

static int parse_url(struct opts *o, const char *url)
{
    const char *p = url, *slash, *colon;
    size_t hlen;

    if (strncmp(p, "http://", 7) != 0)
        return -1;
    p += 7;
    slash = strchr(p, '/');
    if (!slash)
        slash = p + strlen(p);
    colon = memchr(p, ':', (size_t)(slash - p));
    hlen = (size_t)((colon ? colon : slash) - p);
    if (hlen == 0 || hlen >= sizeof(o->host))
        return -1;
    memcpy(o->host, p, hlen);
    o->host[hlen] = '\0';
    if (colon) {
        size_t plen = (size_t)(slash - colon - 1);
        if (plen == 0 || plen >= sizeof(o->port))
            return -1;
        memcpy(o->port, colon + 1, plen);
        o->port[plen] = '\0';
    } else {
        strcpy(o->port, "80");
    }
    if (snprintf(o->path, sizeof(o->path), "%s", *slash ? slash : "/") >= (int)sizeof(o->path))
        return -1;
    return 0;
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double min, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min))
        return -1;
    *out = v;
    return 0;
}

static int parse_args(struct opts *o, int argc, char **argv)
{
    bool have_url = false, have_requests = false, have_duration = false;
    long v;

    memset(o, 0, sizeof(*o));
    o->concurrency = 1;
    o->duration = 5.0;
    o->body_size = 100;
    o->expect_status = 200;
    o->timeout = 30.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;

        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!val) {
            fprintf(stderr, "bench-http: %s needs a value\n", a);
            return -1;
        }
        i++;
        if (!strcmp(a, "--url")) {
            if (parse_url(o, val) < 0) {
                fprintf(stderr, "bench-http: --url %s: expected http://HOST[:PORT][/PATH]\n", val);
                return -1;
            }
            have_url = true;
        } else if (!strcmp(a, "--concurrency")) {
            if (parse_long(val, 1, MAX_CONCURRENCY, &v) < 0)
                goto bad;
            o->concurrency = (int)v;
        } else if (!strcmp(a, "--requests")) {
            if (parse_long(val, 1, 1000000000L, &o->requests) < 0)
                goto bad;
            have_requests = true;
        } else if (!strcmp(a, "--duration")) {
            if (parse_double(val, 0.001, &o->duration) < 0)
                goto bad;
            have_duration = true;
        } else if (!strcmp(a, "--warmup")) {
            if (parse_long(val, 0, 1000000000L, &o->warmup) < 0)
                goto bad;
        } else if (!strcmp(a, "--header")) {
            if (o->nheaders == MAX_HEADERS || !strchr(val, ':') || strpbrk(val, "\r\n")) {
                fprintf(stderr, "bench-http: --header %s: expected 'Name: value' (at most %d)\n",
                        val, MAX_HEADERS);
                return -1;
            }
            o->headers[o->nheaders++] = val;
        } else if (!strcmp(a, "--body-size")) {
            if (parse_long(val, 0, 64L << 20, &o->body_size) < 0)
                goto bad;
        } else if (!strcmp(a, "--expect-status")) {
            if (parse_long(val, 100, 599, &v) < 0)
                goto bad;
            o->expect_status = (int)v;
        } else if (!strcmp(a, "--timeout")) {
            if (parse_double(val, 0.001, &o->timeout) < 0)
                goto bad;
        } else {
            fprintf(stderr, "bench-http: unknown option %s\n", a);
            usage(stderr);
            return -1;
        }
        continue;
    bad:
        fprintf(stderr, "bench-http: %s %s: bad value\n", a, val);
        return -1;
    }
    if (!have_url) {
        fprintf(stderr, "bench-http: --url is required\n");
        usage(stderr);
        return -1;
    }
    if (have_requests && have_duration) {
        fprintf(stderr, "bench-http: give --requests or --duration, not both\n");
        return -1;
    }
    return 0;
}

/* The body: a JSON object padded to exactly n bytes, {"p":"xxx..."}; under 8 bytes, "{}" and
 * spaces (still JSON), or "0" for one byte. Caller frees. */
static char *make_body(long n)
{
    char *b = malloc((size_t)n + 1);

    if (!b)
        return NULL;
    if (n >= 8) {
        memcpy(b, "{\"p\":\"", 6);
        memset(b + 6, 'x', (size_t)n - 8);
        memcpy(b + n - 2, "\"}", 2);
    } else if (n >= 2) {
        memset(b, ' ', (size_t)n);
        memcpy(b, "{}", 2);
    } else if (n == 1) {
        b[0] = '0';
    }
    b[n] = '\0';
    return b;
}

static bool has_header(const struct opts *o, const char *name)
{
    size_t nl = strlen(name);

    for (int i = 0; i < o->nheaders; i++)
        if (!strncasecmp(o->headers[i], name, nl) && o->headers[i][nl] == ':')
            return true;
    return false;
}

/* The whole request, built once and written with one send() per request. Caller frees. */
static char *make_request(const struct opts *o, size_t *len_out)
{
    char *body = make_body(o->body_size);
    char *req = NULL;
    size_t cap, len;
    int n;

    if (!body)
        return NULL;
    cap = strlen(o->path) + strlen(o->host) + (size_t)o->body_size + 512;
    for (int i = 0; i < o->nheaders; i++)
        cap += strlen(o->headers[i]) + 2;
    req = malloc(cap);
    if (!req)
        goto out;
    n = snprintf(req, cap, "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Length: %ld\r\n%s", o->path,
                 o->host, o->port, o->body_size,
                 has_header(o, "Content-Type") ? "" : "Content-Type: application/json\r\n");
    len = (size_t)n;
    for (int i = 0; i < o->nheaders; i++)
        len += (size_t)snprintf(req + len, cap - len, "%s\r\n", o->headers[i]);
    len += (size_t)snprintf(req + len, cap - len, "\r\n");
    memcpy(req + len, body, (size_t)o->body_size);
    len += (size_t)o->body_size;
    *len_out = len;
out:
    free(body);
    return req;
}

static void conn_close(struct worker *w)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    w->pos = w->len = 0;
}

static int conn_open(struct worker *w)
{
    const struct opts *o = w->sh->o;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL, *ai;
    int rc, one = 1;
    struct timeval tv;

    rc = getaddrinfo(o->host, o->port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "bench-http: %s:%s: %s\n", o->host, o->port, gai_strerror(rc));
        return -1;
    }
    tv.tv_sec = (time_t)o->timeout;
    tv.tv_usec = (suseconds_t)((o->timeout - (double)tv.tv_sec) * 1e6);
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            w->fd = fd;
            break;
        }
        close(fd);
    }
    freeaddrinfo(res);
    return w->fd >= 0 ? 0 : -1;
}

/* Reads more bytes into the buffer, compacting or growing it. 0 on progress, -1 on EOF or
 * error. */
static int fill(struct worker *w)
{
    ssize_t n;

    if (w->pos > 0 && w->pos == w->len)
        w->pos = w->len = 0;
    if (w->len == w->bufcap) {
        if (w->pos > 0) {
            memmove(w->buf, w->buf + w->pos, w->len - w->pos);
            w->len -= w->pos;
            w->pos = 0;
        } else {
            size_t cap = w->bufcap * 2;
            char *nb = realloc(w->buf, cap);
            if (!nb)
                return -1;
            w->buf = nb;
            w->bufcap = cap;
        }
    }
    do
        n = recv(w->fd, w->buf + w->len, w->bufcap - w->len, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return -1;
    w->len += (size_t)n;
    return 0;
}

/* Consumes `need` body bytes from the buffer and the socket. */
static int skip_bytes(struct worker *w, size_t need)
{
    while (need > 0) {
        size_t have = w->len - w->pos;
        if (have == 0) {
            if (fill(w) < 0)
                return -1;
            continue;
        }
        size_t take = have < need ? have : need;
        w->pos += take;
        need -= take;
    }
    return 0;
}

/* One CRLF-terminated line from the buffer (for chunk sizes and trailers): returns its length
 * without the CRLF and points *line at it, or -1. */
static long read_line(struct worker *w, const char **line)
{
    for (;;) {
        char *start = w->buf + w->pos;
        char *nl = memchr(start, '\n', w->len - w->pos);
        if (nl) {
            size_t n = (size_t)(nl - start) + 1;
            *line = start;
            w->pos += n;
            return (long)(n >= 2 && nl[-1] == '\r' ? n - 2 : n - 1);
        }
        if (w->len - w->pos > RESP_HEAD_MAX || fill(w) < 0)
            return -1;
    }
}

static int read_chunked(struct worker *w)
{
    for (;;) {
        const char *line;
        char tmp[32];
        long n = read_line(w, &line);
        unsigned long size;
        char *end;

        if (n < 0 || n >= (long)sizeof(tmp))
            return -1;
        memcpy(tmp, line, (size_t)n);
        tmp[n] = '\0';
        size = strtoul(tmp, &end, 16);
        if (end == tmp)
            return -1;
        if (size == 0) {
            /* trailers up to an empty line */
            do
                n = read_line(w, &line);
            while (n > 0);
            return n == 0 ? 0 : -1;
        }
        if (skip_bytes(w, size) < 0)
            return -1;
        n = read_line(w, &line);
        if (n != 0)
            return -1;
    }
}

/* Reads one whole response. Returns its status, or -1 if the connection failed; sets
 * *must_close when the server will close (Connection: close, HTTP/1.0, or body to EOF). */
static int read_response(struct worker *w, bool *must_close, char *snippet, size_t snip_cap)
{
    char *hdr_end;
    size_t head_len;
    long content_length = -1;
    bool chunked = false;
    int status;
    int minor = 1;

    *must_close = false;
    for (;;) {
        hdr_end = w->len > w->pos ? memmem(w->buf + w->pos, w->len - w->pos, "\r\n\r\n", 4) : NULL;
        if (hdr_end)
            break;
        if (w->len - w->pos > RESP_HEAD_MAX || fill(w) < 0)
            return -1;
    }
    head_len = (size_t)(hdr_end - (w->buf + w->pos)) + 4;
    {
        char *h = w->buf + w->pos;
        char *line_end = memchr(h, '\r', head_len);
        char *p;

        if (sscanf(h, "HTTP/1.%d %d", &minor, &status) != 2 || status < 100 || status > 599)
            return -1;
        if (minor == 0)
            *must_close = true;
        /* headers, one per CRLF line, after the status line */
        for (p = line_end + 2; p < hdr_end;) {
            char *e = memchr(p, '\r', (size_t)(hdr_end + 2 - p));
            size_t l = (size_t)(e - p);
            if (l > 15 && !strncasecmp(p, "Content-Length:", 15))
                content_length = strtol(p + 15, NULL, 10);
            else if (l > 18 && !strncasecmp(p, "Transfer-Encoding:", 18) &&
                     memmem(p, l, "chunked", 7))
                chunked = true;
            else if (l > 11 && !strncasecmp(p, "Connection:", 11) && memmem(p, l, "close", 5))
                *must_close = true;
            p = e + 2;
        }
    }
    w->pos += head_len;
    if (snippet && snip_cap) {
        size_t have = w->len - w->pos, n = have < snip_cap - 1 ? have : snip_cap - 1;
        memcpy(snippet, w->buf + w->pos, n);
        snippet[n] = '\0';
    }
    if (status == 204 || status == 304 || status < 200)
        return status;
    if (chunked)
        return read_chunked(w) < 0 ? -1 : status;
    if (content_length >= 0)
        return skip_bytes(w, (size_t)content_length) < 0 ? -1 : status;
    /* no length: the body runs to EOF */
    *must_close = true;
    while (fill(w) == 0)
        w->pos = w->len;
    return status;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static void record(struct worker *w, uint64_t ns)
{
    if (w->nlat == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 4096;
        uint64_t *n = realloc(w->lat, cap * sizeof(*n));
        if (!n)
            return; /* XXX: a latency lost to OOM; the request still counts */
        w->lat = n;
        w->cap = cap;
    }
    w->lat[w->nlat++] = ns;
}

/* One request on the worker's connection, reconnecting first if needed. Returns the latency
 * in ns (> 0) when the expected status came back, 0 on a counted error, -1 when the thread
 * should stop (the server cannot be reached). */
static int64_t one_request(struct worker *w)
{
    struct shared *sh = w->sh;
    char snippet[160];
    bool must_close;
    uint64_t t0;
    int status;

    if (w->fd < 0) {
        if (conn_open(w) < 0) {
            if (++w->connect_failures >= MAX_CONNECT_FAILURES) {
                fprintf(stderr, "bench-http: cannot connect to %s:%s: %s\n", sh->o->host,
                        sh->o->port, strerror(errno));
                return -1;
            }
            return 0;
        }
        w->connect_failures = 0;
    }
    t0 = now_ns();
    if (send_all(w->fd, sh->req, sh->req_len) < 0) {
        conn_close(w);
        return 0;
    }
    status = read_response(w, &must_close, snippet, sizeof(snippet));
    uint64_t dt = now_ns() - t0;
    if (status < 0 || must_close)
        conn_close(w);
    if (status != sh->o->expect_status) {
        if (atomic_fetch_add(&sh->errors_shown, 1) < MAX_ERRORS_SHOWN) {
            if (status < 0)
                fprintf(stderr, "bench-http: connection failed mid-request (%s)\n",
                        strerror(errno));
            else
                fprintf(stderr, "bench-http: status %d (expected %d): %s\n", status,
                        sh->o->expect_status, snippet);
        }
        return 0;
    }
    return dt > 0 ? (int64_t)dt : 1;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;

    while (!w->dead && atomic_fetch_sub(&sh->warmup_left, 1) > 0) {
        int64_t r = one_request(w);
        if (r < 0)
            w->dead = true;
        else if (r == 0)
            w->warmup_errors++;
    }
    pthread_barrier_wait(&sh->ready);
    pthread_barrier_wait(&sh->ready); /* the main thread takes the start time in between */
    while (!w->dead) {
        int64_t r;
        if (sh->o->requests > 0) {
            if (atomic_fetch_sub(&sh->measure_left, 1) <= 0)
                break;
        } else if (now_ns() >= sh->end_ns) {
            break;
        }
        r = one_request(w);
        if (r < 0) {
            w->dead = true;
            break;
        }
        w->requests++;
        if (r == 0)
            w->errors++;
        else
            record(w, (uint64_t)r);
    }
    conn_close(w);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n), in microseconds. */
static double pct_us(const uint64_t *v, size_t n, double p)
{
    size_t rank;

    if (n == 0)
        return 0.0;
    rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)v[rank - 1] / 1000.0;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct shared sh;
    struct worker *ws = NULL;
    uint64_t *all = NULL;
    size_t nall = 0;
    long requests = 0, errors = 0, warmup_errors = 0;
    int dead = 0, rc = 1, started = 0;
    uint64_t t0, t1;
    double secs;

    if (parse_args(&o, argc, argv) < 0)
        return 2;
    memset(&sh, 0, sizeof(sh));
    sh.o = &o;
    sh.req = make_request(&o, &sh.req_len);
    atomic_init(&sh.warmup_left, o.warmup);
    atomic_init(&sh.measure_left, o.requests);
    atomic_init(&sh.errors_shown, 0);
    ws = calloc((size_t)o.concurrency, sizeof(*ws));
    if (!sh.req || !ws) {
        fprintf(stderr, "bench-http: out of memory\n");
        goto out;
    }
    if (pthread_barrier_init(&sh.ready, NULL, (unsigned)o.concurrency + 1) != 0) {
        fprintf(stderr, "bench-http: pthread_barrier_init failed\n");
        goto out;
    }
    for (int i = 0; i < o.concurrency; i++) {
        struct worker *w = &ws[i];
        w->sh = &sh;
        w->fd = -1;
        w->bufcap = 8192;
        w->buf = malloc(w->bufcap);
        if (!w->buf || pthread_create(&w->tid, NULL, worker_main, w) != 0) {
            /* XXX: threads already started would wait on the barrier forever */
            fprintf(stderr, "bench-http: cannot start thread %d\n", i);
            exit(1);
        }
        started++;
    }
    pthread_barrier_wait(&sh.ready); /* warm-up done everywhere */
    t0 = now_ns();
    sh.end_ns = t0 + (uint64_t)(o.duration * 1e9);
    pthread_barrier_wait(&sh.ready);
    for (int i = 0; i < started; i++)
        pthread_join(ws[i].tid, NULL);
    t1 = now_ns();
    pthread_barrier_destroy(&sh.ready);

    for (int i = 0; i < started; i++) {
        requests += ws[i].requests;
        errors += ws[i].errors;
        warmup_errors += ws[i].warmup_errors;
        nall += ws[i].nlat;
        dead += ws[i].dead;
    }
    all = malloc((nall ? nall : 1) * sizeof(*all));
    if (!all) {
        fprintf(stderr, "bench-http: out of memory\n");
        goto out;
    }
    nall = 0;
    for (int i = 0; i < started; i++) {
        memcpy(all + nall, ws[i].lat, ws[i].nlat * sizeof(*all));
        nall += ws[i].nlat;
    }
    qsort(all, nall, sizeof(*all), cmp_u64);
    secs = (double)(t1 - t0) / 1e9;
    {
        json_t *j =
            json_pack("{s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:i, s:I}", "requests",
                      (json_int_t)requests, "errors", (json_int_t)errors, "seconds", secs, "rps",
                      secs > 0 ? (double)requests / secs : 0.0, "p50_us", pct_us(all, nall, 50),
                      "p90_us", pct_us(all, nall, 90), "p99_us", pct_us(all, nall, 99), "max_us",
                      nall ? (double)all[nall - 1] / 1000.0 : 0.0, "concurrency", o.concurrency,
                      "warmup_errors", (json_int_t)warmup_errors);
        char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
        if (!s) {
            fprintf(stderr, "bench-http: cannot encode the result\n");
            json_decref(j);
            goto out;
        }
        printf("%s\n", s);
        fflush(stdout);
        free(s);
        json_decref(j);
    }
    /* Every connection gave up: nothing was measured, say so in the exit status too. */
    rc = dead == started && requests == 0 ? 1 : 0;
out:
    if (ws)
        for (int i = 0; i < o.concurrency; i++) {
            free(ws[i].lat);
            free(ws[i].buf);
        }
    free(ws);
    free(all);
    free((char *)sh.req);
    return rc;
}
