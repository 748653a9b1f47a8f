/* bench-redis-raw: the baseline for the Redis Streams benchmark, a plain hiredis consumer.
 *
 * One synchronous connection and the simplest correct consumer-group loop:
 *
 *   XREADGROUP GROUP <group> <consumer> COUNT <N> BLOCK 100 STREAMS <stream> >
 *   XACK <stream> <group> <every id of that reply>          (one XACK per reply)
 *
 * repeated until --expect records have been acknowledged, or (without --expect, or when the
 * stream runs dry first) until a read comes back empty after blocking 100 ms. Each round trip
 * waits for its reply: no pipelining, no second connection. That is what "drain a stream into
 * nothing" costs at the Redis level, so it is the ceiling a broker reading the same stream with
 * the same COUNT can be compared against. The group is created at id 0 when missing
 * (XGROUP CREATE ... 0; BUSYGROUP is fine).
 *
 * usage: bench-redis-raw --stream S [--port P] [--host H] [--group G] [--consumer C]
 *                        [--count N] [--expect TOTAL]
 *
 * Output: one JSON line on stdout,
 *   {"records":..,"acked":..,"seconds":..,"rps":..,"reads":..,"count":..}
 * records counts entries read, acked the sum of the XACK replies; seconds runs from the first
 * XREADGROUP sent to the last XACK answered (the final empty read, if any, is not counted);
 * rps = acked / seconds. Exit status 0, 1 on a Redis error or if --expect was not reached,
 * 2 on bad arguments.
 */

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct opts {
    const char *host;
    long port;
    const char *stream;
    const char *group;
    const char *consumer;
    long count;
    long expect; /* 0: until a read comes back empty */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench-redis-raw --stream S [--port P] [--host H] [--group G] "
               "[--consumer C]\n"
               "                       [--count N] [--expect TOTAL]\n"
               "Defaults: --host 127.0.0.1 --port 6379 --group g --consumer c --count 100; "
               "without --expect, until a read is empty after 100 ms.\n");
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

static int parse_args(struct opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->port = 6379;
    o->group = "g";
    o->consumer = "c";
    o->count = 100;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;

        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!val) {
            fprintf(stderr, "bench-redis-raw: %s needs a value\n", a);
            return -1;
        }
        i++;
        if (!strcmp(a, "--host")) {
            o->host = val;
        } else if (!strcmp(a, "--port")) {
            if (parse_long(val, 1, 65535, &o->port) < 0)
                goto bad;
        } else if (!strcmp(a, "--stream")) {
            o->stream = val;
        } else if (!strcmp(a, "--group")) {
            o->group = val;
        } else if (!strcmp(a, "--consumer")) {
            o->consumer = val;
        } else if (!strcmp(a, "--count")) {
            if (parse_long(val, 1, 1000000, &o->count) < 0)
                goto bad;
        } else if (!strcmp(a, "--expect")) {
            if (parse_long(val, 0, 1000000000000L, &o->expect) < 0)
                goto bad;
        } else {
            fprintf(stderr, "bench-redis-raw: unknown option %s\n", a);
            usage(stderr);
            return -1;
        }
        continue;
    bad:
        fprintf(stderr, "bench-redis-raw: %s %s: bad value\n", a, val);
        return -1;
    }
    if (!o->stream || !*o->stream) {
        fprintf(stderr, "bench-redis-raw: --stream is required\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

/* The entries array of a one-stream XREADGROUP reply, or NULL (nil reply: nothing new). */
static const redisReply *entries_of(const redisReply *rep)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1)
        return NULL;
    const redisReply *st = rep->element[0];
    if (st->type != REDIS_REPLY_ARRAY || st->elements != 2 ||
        st->element[1]->type != REDIS_REPLY_ARRAY)
        return NULL;
    return st->element[1];
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_args(&o, argc, argv) < 0)
        return 2;

    struct timeval tv = {10, 0};
    redisContext *c = redisConnectWithTimeout(o.host, (int)o.port, tv);
    if (!c || c->err) {
        fprintf(stderr, "bench-redis-raw: cannot connect to %s:%ld: %s\n", o.host, o.port,
                c ? c->errstr : "out of memory");
        return 1;
    }
    redisReply *rep = redisCommand(c, "XGROUP CREATE %s %s 0 MKSTREAM", o.stream, o.group);
    if (!rep || (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "BUSYGROUP", 9) != 0)) {
        fprintf(stderr, "bench-redis-raw: XGROUP CREATE: %s\n", rep ? rep->str : c->errstr);
        return 1;
    }
    freeReplyObject(rep);

    /* XACK stream group id...: the argv is rebuilt for every reply, its ids borrowed from it. */
    size_t cap = (size_t)o.count + 3;
    const char **av = calloc(cap, sizeof(*av));
    size_t *al = calloc(cap, sizeof(*al));
    if (!av || !al) {
        fprintf(stderr, "bench-redis-raw: out of memory\n");
        return 1;
    }
    av[0] = "XACK";
    av[1] = o.stream;
    av[2] = o.group;
    al[0] = 4;
    al[1] = strlen(o.stream);
    al[2] = strlen(o.group);

    long long records = 0, acked = 0, reads = 0;
    int rc = 0;
    uint64_t t0 = now_ns(), t_last = t0;
    while (o.expect == 0 || acked < o.expect) {
        rep = redisCommand(c, "XREADGROUP GROUP %s %s COUNT %ld BLOCK 100 STREAMS %s >", o.group,
                           o.consumer, o.count, o.stream);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "bench-redis-raw: XREADGROUP: %s\n", rep ? rep->str : c->errstr);
            rc = 1;
            break;
        }
        reads++;
        const redisReply *ents = entries_of(rep);
        if (!ents || ents->elements == 0) {
            freeReplyObject(rep);
            break; /* empty after blocking 100 ms: drained */
        }
        size_t n = 0;
        for (size_t i = 0; i < ents->elements && n + 3 < cap; i++) {
            const redisReply *e = ents->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 ||
                e->element[0]->type != REDIS_REPLY_STRING)
                continue;
            av[3 + n] = e->element[0]->str;
            al[3 + n] = e->element[0]->len;
            n++;
        }
        records += (long long)n;
        redisReply *ack = redisCommandArgv(c, (int)(3 + n), av, al);
        freeReplyObject(rep);
        if (!ack || ack->type != REDIS_REPLY_INTEGER) {
            fprintf(stderr, "bench-redis-raw: XACK: %s\n",
                    ack ? (ack->str ? ack->str : "unexpected reply") : c->errstr);
            freeReplyObject(ack);
            rc = 1;
            break;
        }
        acked += ack->integer;
        freeReplyObject(ack);
        t_last = now_ns();
    }
    double secs = (double)(t_last - t0) / 1e9;
    if (o.expect > 0 && acked < o.expect) {
        fprintf(stderr, "bench-redis-raw: acknowledged %lld of the %ld expected\n", acked,
                o.expect);
        rc = 1;
    }
    printf("{\"records\":%lld,\"acked\":%lld,\"seconds\":%.6f,\"rps\":%.1f,\"reads\":%lld,"
           "\"count\":%ld}\n",
           records, acked, secs, secs > 0 ? (double)acked / secs : 0.0, reads, o.count);
    free(av);
    free(al);
    redisFree(c);
    return rc;
}
