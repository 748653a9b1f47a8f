/* bench-redis-fill: loads a Redis stream with N small entries for the Redis Streams benchmark.
 *
 * Each entry is `XADD <stream> * body <B bytes>`, the body a JSON object padded to exactly B
 * bytes, {"n":<index>,"p":"xxx..."}. Commands go out pipelined, --pipeline at a time on one
 * hiredis connection (redisAppendCommand, then as many redisGetReply), so a million entries
 * take a few seconds. The benchmark fills one stream once and COPYs it for every scenario, so
 * every consumer drains the same entries.
 *
 * usage: bench-redis-fill --stream S --entries N [--port P] [--host H] [--body-size B]
 *                         [--pipeline K]
 * Defaults: --host 127.0.0.1 --port 6379 --body-size 50 --pipeline 1000.
 *
 * Output: one JSON line on stdout, {"entries":..,"body_bytes":..,"seconds":..,"rps":..}.
 * Exit status 0, 1 on a Redis error, 2 on bad arguments.
 */

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench-redis-fill --stream S --entries N [--port P] [--host H] "
               "[--body-size B] [--pipeline K]\n"
               "Defaults: --host 127.0.0.1 --port 6379 --body-size 50 --pipeline 1000.\n");
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

/* Room in the body buffer beyond --body-size, for an index longer than the padding. */
#define BODY_SLACK 64

/* Writes {"n":<i>,"p":"xx..."} padded to size bytes (at least the unpadded length) into buf,
 * which holds size + BODY_SLACK bytes. Returns the length. */
static size_t make_body(char *buf, size_t size, long i)
{
    int n = snprintf(buf, size + BODY_SLACK, "{\"n\":%ld,\"p\":\"", i);
    size_t len = (size_t)n;
    if (len + 2 > size)
        size = len + 2;
    memset(buf + len, 'x', size - 2 - len);
    buf[size - 2] = '"';
    buf[size - 1] = '}';
    buf[size] = '\0';
    return size;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *stream = NULL;
    long port = 6379, entries = -1, body_size = 50, pipeline = 1000;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;

        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!val) {
            fprintf(stderr, "bench-redis-fill: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--host"))
            host = val;
        else if (!strcmp(a, "--stream"))
            stream = val;
        else if (!strcmp(a, "--port"))
            bad = parse_long(val, 1, 65535, &port);
        else if (!strcmp(a, "--entries"))
            bad = parse_long(val, 0, 1000000000L, &entries);
        else if (!strcmp(a, "--body-size"))
            bad = parse_long(val, 16, 1 << 20, &body_size);
        else if (!strcmp(a, "--pipeline"))
            bad = parse_long(val, 1, 100000, &pipeline);
        else {
            fprintf(stderr, "bench-redis-fill: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "bench-redis-fill: %s %s: bad value\n", a, val);
            return 2;
        }
    }
    if (!stream || !*stream || entries < 0) {
        fprintf(stderr, "bench-redis-fill: --stream and --entries are required\n");
        usage(stderr);
        return 2;
    }

    char *body = malloc((size_t)body_size + BODY_SLACK);
    struct timeval tv = {30, 0};
    redisContext *c = redisConnectWithTimeout(host, (int)port, tv);
    if (!body || !c || c->err) {
        fprintf(stderr, "bench-redis-fill: cannot connect to %s:%ld: %s\n", host, port,
                c ? c->errstr : "out of memory");
        return 1;
    }
    size_t blen = 0;
    uint64_t t0 = now_ns();
    for (long done = 0; done < entries;) {
        long k = entries - done < pipeline ? entries - done : pipeline;
        for (long j = 0; j < k; j++) {
            blen = make_body(body, (size_t)body_size, done + j);
            if (redisAppendCommand(c, "XADD %s * body %b", stream, body, blen) != REDIS_OK) {
                fprintf(stderr, "bench-redis-fill: %s\n", c->errstr);
                return 1;
            }
        }
        for (long j = 0; j < k; j++) {
            redisReply *rep = NULL;
            if (redisGetReply(c, (void **)&rep) != REDIS_OK || !rep ||
                rep->type != REDIS_REPLY_STRING) {
                fprintf(stderr, "bench-redis-fill: XADD: %s\n",
                        rep && rep->str ? rep->str : c->errstr);
                return 1;
            }
            freeReplyObject(rep);
        }
        done += k;
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    printf("{\"entries\":%ld,\"body_bytes\":%zu,\"seconds\":%.6f,\"rps\":%.1f}\n", entries,
           blen ? blen : (size_t)body_size, secs, secs > 0 ? (double)entries / secs : 0.0);
    free(body);
    redisFree(c);
    return 0;
}
