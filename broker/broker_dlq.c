/*
 * broker_dlq.c - `sluice dlq`: list and replay the dead-letter stream of a Redis stream mapping.
 *
 * A mapping with a redrive policy moves a message that reached maxReceiveCount to its
 * deadLetterTarget stream (pollers/poller_redis.c, one Lua script). The dead letter keeps the
 * message's fields in their order and gains four at the end: sluice-source-stream,
 * sluice-source-id, sluice-receive-count and sluice-last-error. This command
 *   list     prints the dead letters (a table, or JSON lines);
 *   replay   puts them back, into a stream (each one's source, or one named) or into a
 *            function through a running broker's Invoke API, and deletes each from the
 *            dead-letter stream only once it is safely elsewhere.
 *
 * It is a command-line tool and never runs inside the broker's loop, so hiredis is used
 * synchronously and the Invoke requests go out one at a time on a private event_base.
 *
 * Decisions:
 *   - Every field whose name starts with "sluice-" is Sluice's bookkeeping and is stripped on
 *     replay (not only today's four names: a later redrive may add more). The cost: a producer's
 *     own field named "sluice-..." does not survive a dead-letter round trip.
 *   - The dead letters handled are those present when the command starts (the newest id is read
 *     first and the scan stops there), oldest first, paged 100 at a time. A message that fails
 *     again while a replay runs is therefore not picked up twice by the same run.
 *   - To a stream: one Lua script per message re-reads the dead letter, XADDs its original
 *     fields (byte for byte, in order, with a new id: stream ids only grow) and XDELs it. Redis
 *     runs a script atomically, so a message is never lost and never in both places. A dead
 *     letter someone else replayed meanwhile is reported as gone.
 *   - To a function: at-least-once. The dead letter is XDELed after the broker answered 200
 *     without X-Amz-Function-Error (202 with --async); if this command dies in between, the
 *     next replay invokes it again. One invocation per dead letter, so one bad message cannot
 *     fail a batch of good ones, and each deletion follows its own outcome.
 *   - The event is the SQS shape the mapping sends (schemas/sqs-event.schema.json), written by
 *     the mapping's own encoder (pl_sqs_append_record), and the URI is read by the mappings'
 *     parser (pl_redis_uri_parse): no second copy of either to drift. Differences, chosen for
 *     a replay: messageId is the source entry id (what the function saw before),
 *     eventSourceARN is the dead-letter stream's URI, and ApproximateReceiveCount is the dead
 *     letter's receive count plus this delivery.
 *   - Skipped dead letters (no sluice-source-stream, no original fields) count against the exit
 *     status: they still sit in the dead-letter stream and need someone's attention.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "broker/broker_internal.h"
#include "pollers/pollers.h"

#define DLQ_PREFIX "sluice-"
#define DLQ_PREFIX_LEN 7
#define DLQ_PAGE 100 /* entries per XRANGE */
#define DLQ_CONNECT_TIMEOUT_S 5
#define DLQ_REDIS_TIMEOUT_S 30
/* Lambda's longest Timeout (900 s) plus time to start an instance and answer. */
#define DLQ_HTTP_TIMEOUT_S 960
#define DLQ_DEFAULT_ENDPOINT "http://127.0.0.1:9070"
#define DLQ_EXIT_OK 0
#define DLQ_EXIT_FAILED 1
#define DLQ_EXIT_USAGE 2

/*
 * KEYS: dead-letter stream, target stream. ARGV: the dead letter's id.
 * Returns the new id, false when the dead letter is gone, or an error (then nothing changed:
 * XADD is the first write). XXX: Lua's unpack() stops near 8000 values, so an entry of more
 * than about 4000 fields fails here and stays put (the redrive script has the same limit).
 */
/* clang-format off */
static const char replay_lua[] =
    "local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])\n"
    "if #e == 0 then return false end\n"
    "local f, o = e[1][2], {}\n"
    "for i = 1, #f, 2 do\n"
    "  if string.sub(f[i], 1, 7) ~= 'sluice-' then\n"
    "    table.insert(o, f[i]) table.insert(o, f[i + 1])\n"
    "  end\n"
    "end\n"
    "if #o == 0 then\n"
    "  return redis.error_reply('NOFIELDS the dead letter has no original fields')\n"
    "end\n"
    "local id = redis.call('XADD', KEYS[2], '*', unpack(o))\n"
    "redis.call('XDEL', KEYS[1], ARGV[1])\n"
    "return id\n";
/* clang-format on */

/* ---------------------------------------------------------------------------------------- */
/* Command line                                                                             */
/* ---------------------------------------------------------------------------------------- */

enum dlq_to { DLQ_TO_NONE, DLQ_TO_SOURCE, DLQ_TO_STREAM, DLQ_TO_FUNCTION };

struct dlq_opts {
    bool replay; /* the subcommand: replay, else list */
    bool json;
    bool dry_run;
    bool async;
    bool to_source;
    long long count; /* 0 = every dead letter */
    const char *to_stream;
    const char *function;
    const char *endpoint;
    const char *uri;
};

static void usage_dlq(FILE *f)
{
    fputs("usage: sluice dlq list URI [--count N] [--json]\n"
          "       sluice dlq replay URI --to-source | --to-stream NAME [--count N] [--dry-run]\n"
          "       sluice dlq replay URI --to-function NAME [--endpoint URL] [--async]\n"
          "                             [--count N] [--dry-run]\n"
          "\n"
          "Works on the dead-letter stream of a Redis stream mapping (the deadLetterTarget of its\n"
          "EventSourceArn). URI names that stream, without a query:\n"
          "  redis://[[user]:password@]host[:port][/db]/STREAM\n"
          "(percent-encode '@', ':' or '/' inside a password or a stream name). A dead letter is\n"
          "the original message, its fields in their order, plus the fields the mapping added\n"
          "when it gave up: sluice-source-stream, sluice-source-id, sluice-receive-count and\n"
          "sluice-last-error. Dead letters are taken oldest first, and only those present when\n"
          "the command starts.\n"
          "\n"
          "list: prints id, source stream, source id, receive count, last error and the original\n"
          "fields of each dead letter, as a table (values escaped and shortened).\n"
          "  --json              one JSON object per line instead, nothing shortened: {\"id\",\n"
          "                      \"sourceStream\", \"sourceId\", \"receiveCount\", \"lastError\",\n"
          "                      \"fields\": {name: value}} (absent ones null; bytes that are not\n"
          "                      UTF-8 are shown as U+FFFD: replay moves them exactly)\n"
          "  --count N           the N oldest only\n"
          "\n"
          "replay: moves dead letters back; each leaves the dead-letter stream only once it is\n"
          "safely elsewhere.\n"
          "  --to-source         XADD each to the stream named by its sluice-source-stream field\n"
          "                      (same database), with its original fields only (every sluice-*\n"
          "                      field stripped) and a new id, and XDEL it from the dead-letter\n"
          "                      stream: one Lua script per message, so a message is never lost\n"
          "                      and never in both places. Dead letters without that field are\n"
          "                      skipped with a warning.\n"
          "  --to-stream NAME    the same, into stream NAME for every dead letter\n"
          "  --to-function NAME  invoke function NAME through a running broker's Invoke API, one\n"
          "                      invocation per dead letter, with the SQS-shaped event of one\n"
          "                      record the mapping would send (messageId is the source id;\n"
          "                      ApproximateReceiveCount includes this delivery), then XDEL it\n"
          "                      after a 200 without X-Amz-Function-Error. A failed one stays in\n"
          "                      the dead-letter stream and is reported. At least once: a dead\n"
          "                      letter invoked just before this command is killed is invoked\n"
          "                      again by the next replay.\n"
          "  --endpoint URL      the broker (default " DLQ_DEFAULT_ENDPOINT ")\n"
          "  --async             invoke with X-Amz-Invocation-Type: Event and XDEL after the 202\n"
          "                      (the broker has stored it; its retries and destinations apply)\n"
          "  --count N           the N oldest only\n"
          "  --dry-run           print what would be done; change nothing\n"
          "\n"
          "  -h, --help          this help\n"
          "\n"
          "Exit status: 0 everything listed or replayed (an empty stream prints \"nothing to\n"
          "replay\"), 1 some dead letters failed or were skipped (they are still there), or Redis\n"
          "or the broker could not be reached, 2 a bad command line or URI.\n",
          f);
}

/* Parses a count: plain decimal 1..LLONG_MAX. */
static bool parse_count(const char *s, long long *out)
{
    char *end;
    long long v;

    if (!s || *s < '1' || *s > '9')
        return false;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1)
        return false;
    *out = v;
    return true;
}

/* [A-Za-z0-9_-]{1,64}, the names the Invoke API takes. */
static bool valid_function_name(const char *s)
{
    size_t n = strlen(s);

    if (n < 1 || n > 64)
        return false;
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

/* Fills o from argv (argv[0] is the subcommand). Returns 0, 1 for --help, or SL_EINVAL after
 * printing why. */
static int parse_args(int argc, char **argv, struct dlq_opts *o)
{
    enum { O_COUNT = 256, O_JSON, O_SOURCE, O_STREAM, O_FUNCTION, O_ENDPOINT, O_ASYNC, O_DRY };
    static const struct option opts[] = {
        {"count", required_argument, NULL, O_COUNT},
        {"json", no_argument, NULL, O_JSON},
        {"to-source", no_argument, NULL, O_SOURCE},
        {"to-stream", required_argument, NULL, O_STREAM},
        {"to-function", required_argument, NULL, O_FUNCTION},
        {"endpoint", required_argument, NULL, O_ENDPOINT},
        {"async", no_argument, NULL, O_ASYNC},
        {"dry-run", no_argument, NULL, O_DRY},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *sub = argv[0];
    bool endpoint_given = false;
    int c;

    memset(o, 0, sizeof(*o));
    o->replay = strcmp(sub, "replay") == 0;
    o->endpoint = DLQ_DEFAULT_ENDPOINT;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case O_COUNT:
            if (!parse_count(optarg, &o->count)) {
                fprintf(stderr,
                        "sluice dlq %s: --count needs a whole number of at least 1, "
                        "not '%s'\n",
                        sub, optarg);
                return SL_EINVAL;
            }
            break;
        case O_JSON:
            o->json = true;
            break;
        case O_SOURCE:
            o->to_source = true;
            break;
        case O_STREAM:
            o->to_stream = optarg;
            break;
        case O_FUNCTION:
            o->function = optarg;
            break;
        case O_ENDPOINT:
            o->endpoint = optarg;
            endpoint_given = true;
            break;
        case O_ASYNC:
            o->async = true;
            break;
        case O_DRY:
            o->dry_run = true;
            break;
        case 'h':
            return 1;
        case ':':
            fprintf(stderr, "sluice dlq %s: %s needs a value\n", sub, argv[optind - 1]);
            return SL_EINVAL;
        default:
            fprintf(stderr, "sluice dlq %s: unknown option '%s'\n", sub, argv[optind - 1]);
            return SL_EINVAL;
        }
    }
    if (optind >= argc) {
        fprintf(stderr,
                "sluice dlq %s: the dead-letter stream's URI is required "
                "(redis://host:port[/db]/STREAM)\n",
                sub);
        return SL_EINVAL;
    }
    if (optind + 1 < argc) {
        fprintf(stderr, "sluice dlq %s: unexpected argument '%s'\n", sub, argv[optind + 1]);
        return SL_EINVAL;
    }
    o->uri = argv[optind];

    if (!o->replay) {
        const char *bad = o->to_source     ? "--to-source"
                          : o->to_stream   ? "--to-stream"
                          : o->function    ? "--to-function"
                          : endpoint_given ? "--endpoint"
                          : o->async       ? "--async"
                          : o->dry_run     ? "--dry-run"
                                           : NULL;
        if (bad) {
            fprintf(stderr, "sluice dlq list: %s belongs to 'sluice dlq replay'\n", bad);
            return SL_EINVAL;
        }
        return 0;
    }
    if (o->json) {
        fprintf(stderr, "sluice dlq replay: --json belongs to 'sluice dlq list'\n");
        return SL_EINVAL;
    }
    if (o->function && (o->to_source || o->to_stream)) {
        fprintf(stderr, "sluice dlq replay: --to-function cannot be combined with --to-source "
                        "or --to-stream\n");
        return SL_EINVAL;
    }
    if (!o->function && !o->to_source && !o->to_stream) {
        fprintf(stderr, "sluice dlq replay: say where to: --to-source, --to-stream NAME or "
                        "--to-function NAME\n");
        return SL_EINVAL;
    }
    if (!o->function && (endpoint_given || o->async)) {
        fprintf(stderr, "sluice dlq replay: %s only applies to --to-function\n",
                o->async ? "--async" : "--endpoint");
        return SL_EINVAL;
    }
    if (o->to_stream && !o->to_stream[0]) {
        fprintf(stderr, "sluice dlq replay: --to-stream needs a stream name\n");
        return SL_EINVAL;
    }
    if (o->function && !valid_function_name(o->function)) {
        fprintf(stderr,
                "sluice dlq replay: --to-function: \"%s\" is not a function name "
                "([A-Za-z0-9_-]{1,64})\n",
                o->function);
        return SL_EINVAL;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* UTF-8 and JSON for `list --json` (the replay event is pollers' pl_sqs_append_record)     */
/* ---------------------------------------------------------------------------------------- */

/* A JSON string of the bytes s[0..n), each ill-formed subpart made U+FFFD (pollers' rule):
 * jansson takes only UTF-8 and repairs nothing. NULL: out of memory. */
static json_t *jstr(const char *s, size_t n)
{
    size_t fl;
    char *fixed = pl_utf8_repaired(s, n, &fl);
    json_t *j = fixed ? json_stringn(fixed, fl) : NULL;

    free(fixed);
    return j;
}

/*
 * Sets o[key] = v and takes v in every case (jansson frees it when o is NULL or the set fails).
 * False when o or v is NULL or the set fails. Callers write `ok = jput(...) && ok` so that
 * every value is always handed over and nothing leaks on a failure path.
 */
static bool jput(json_t *o, const char *key, json_t *v)
{
    return json_object_set_new(o, key, v) == 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Dead letters                                                                             */
/* ---------------------------------------------------------------------------------------- */

/* One dead letter: views into an XRANGE reply, borrowed until the reply is freed. */
struct dlq_letter {
    const char *id;
    const redisReply *fv; /* [name1, value1, ...]; NULL when the entry has none */
    const redisReply *source_stream, *source_id, *receive_count, *last_error; /* NULL: absent */
    size_t norig; /* original fields (not sluice-*) */
};

static bool is_str(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static bool name_is(const redisReply *k, const char *s)
{
    size_t n = strlen(s);
    return (size_t)k->len == n && memcmp(k->str, s, n) == 0;
}

static bool is_sluice(const redisReply *k)
{
    return (size_t)k->len >= DLQ_PREFIX_LEN && memcmp(k->str, DLQ_PREFIX, DLQ_PREFIX_LEN) == 0;
}

/* Reads an XRANGE entry [id, [f1, v1, ...]] into l. False when it is not one. */
static bool letter_read(const redisReply *ent, struct dlq_letter *l)
{
    memset(l, 0, sizeof(*l));
    if (ent->type != REDIS_REPLY_ARRAY || ent->elements != 2 || !is_str(ent->element[0]))
        return false;
    l->id = ent->element[0]->str;
    if (ent->element[1]->type != REDIS_REPLY_ARRAY)
        return true;
    l->fv = ent->element[1];
    for (size_t i = 0; i + 1 < l->fv->elements; i += 2) {
        const redisReply *k = l->fv->element[i], *v = l->fv->element[i + 1];
        if (!is_str(k) || !is_str(v))
            continue;
        if (!is_sluice(k))
            l->norig++;
        else if (name_is(k, "sluice-source-stream"))
            l->source_stream = v;
        else if (name_is(k, "sluice-source-id"))
            l->source_id = v;
        else if (name_is(k, "sluice-receive-count"))
            l->receive_count = v;
        else if (name_is(k, "sluice-last-error"))
            l->last_error = v;
    }
    return true;
}

/* The dead letter's sluice-receive-count, or -1 when absent or not a number. */
static long long letter_receives(const struct dlq_letter *l)
{
    char buf[32], *end;
    long long v;

    if (!l->receive_count || l->receive_count->len <= 0 ||
        (size_t)l->receive_count->len >= sizeof(buf))
        return -1;
    memcpy(buf, l->receive_count->str, (size_t)l->receive_count->len);
    buf[l->receive_count->len] = '\0';
    errno = 0;
    v = strtoll(buf, &end, 10);
    return errno || *end || v < 0 ? -1 : v;
}

/* Whether s[0..n) is a stream id, MS-SEQ in decimal. */
static bool is_stream_id(const char *s, size_t n)
{
    size_t d = strspn(s, "0123456789");

    if (d == 0 || d >= n || s[d] != '-')
        return false;
    return d + 1 < n && strspn(s + d + 1, "0123456789") == n - d - 1;
}

/* ---------------------------------------------------------------------------------------- */
/* A run: the Redis connection, the counts, the Invoke client                               */
/* ---------------------------------------------------------------------------------------- */

struct dlq_http;

struct dlq_run {
    struct dlq_opts o;
    struct pl_redis_uri u; /* the dead-letter stream; the query fields stay unset */
    char shown[1024];      /* the URI without its user info: messages, eventSourceARN */
    char addr[300];        /* host:port as people write it, for messages */
    redisContext *rc;
    struct dlq_http *http;
    bool header_done; /* list: the table's header was printed */
    long long seen;   /* dead letters looked at */
    long long done;   /* replayed (or, dry run, would be) */
    long long skipped;
    long long failed;
};

/* Prints a Redis problem: the connection's error, or the error reply. */
static void redis_complain(struct dlq_run *r, const char *what, const redisReply *rep)
{
    if (!rep) {
        fprintf(stderr, "sluice dlq: redis at %s: %s failed: %s\n", r->addr, what,
                r->rc->errstr[0] ? r->rc->errstr : "connection lost");
        return;
    }
    fprintf(stderr, "sluice dlq: redis at %s: %s: %s%s\n", r->addr, what, rep->str,
            strncmp(rep->str, "NOAUTH", 6) == 0
                ? " (put the password in the URI: redis://:PASSWORD@host:port/STREAM)"
            : strncmp(rep->str, "WRONGTYPE", 9) == 0 ? " (that key is not a stream)"
                                                     : "");
}

/* Runs a command given as argv; returns the reply (caller frees), or NULL after printing why
 * (also for an error reply). */
static redisReply *redis_argv(struct dlq_run *r, const char *what, int argc, const char **argv,
                              const size_t *argl)
{
    redisReply *rep = redisCommandArgv(r->rc, argc, argv, argl);

    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        redis_complain(r, what, rep);
        if (rep)
            freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

/* Connects, authenticates and selects the database. Returns 0 or SL_ECONNECT after printing
 * why; the password is never printed. */
static int redis_open(struct dlq_run *r)
{
    struct timeval ct = {DLQ_CONNECT_TIMEOUT_S, 0}, io = {DLQ_REDIS_TIMEOUT_S, 0};
    const char *argv[3];
    char db[16];
    redisReply *rep;

    r->rc = redisConnectWithTimeout(r->u.host, r->u.port, ct);
    if (!r->rc) {
        fprintf(stderr, "sluice dlq: out of memory\n");
        return SL_ENOMEM;
    }
    if (r->rc->err) {
        fprintf(stderr, "sluice dlq: cannot connect to redis at %s: %s\n", r->addr, r->rc->errstr);
        return SL_ECONNECT;
    }
    redisSetTimeout(r->rc, io);
    if (r->u.password[0]) {
        int n = 0;
        argv[n++] = "AUTH";
        if (r->u.user[0])
            argv[n++] = r->u.user;
        argv[n++] = r->u.password;
        rep = redisCommandArgv(r->rc, n, argv, NULL);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            redis_complain(r, "AUTH", rep);
            freeReplyObject(rep);
            return SL_ECONNECT;
        }
        freeReplyObject(rep);
    }
    if (r->u.db) {
        snprintf(db, sizeof(db), "%d", r->u.db);
        argv[0] = "SELECT";
        argv[1] = db;
        rep = redis_argv(r, "SELECT", 2, argv, NULL);
        if (!rep)
            return SL_ECONNECT;
        freeReplyObject(rep);
    }
    return 0;
}

/* The id right after id ("5-3" gives "5-4"), for paging: exclusive XRANGE starts need Redis
 * 6.2. False when id is not MS-SEQ or is the last possible one. */
static bool next_id(const char *id, char *out, size_t outsz)
{
    unsigned long long ms, seq;
    char *end;

    if (!is_stream_id(id, strlen(id)))
        return false;
    errno = 0;
    ms = strtoull(id, &end, 10);
    seq = strtoull(end + 1, NULL, 10);
    if (errno)
        return false;
    if (seq == ULLONG_MAX) {
        if (ms == ULLONG_MAX)
            return false;
        ms++;
        seq = 0;
    } else {
        seq++;
    }
    snprintf(out, outsz, "%llu-%llu", ms, seq);
    return true;
}

typedef int (*dlq_visit_fn)(struct dlq_run *r, const struct dlq_letter *l);

/*
 * Calls visit for each dead letter present now, oldest first, at most o.count of them.
 * Returns 0; SL_EIO after printing a Redis problem; or what visit returned when negative (it
 * stops the scan).
 */
static int dlq_scan(struct dlq_run *r, dlq_visit_fn visit)
{
    char start[64] = "-", last[64], page_s[24];
    long long left = r->o.count > 0 ? r->o.count : LLONG_MAX;
    const char *argv[6];
    redisReply *rep;
    bool more;
    int rc = 0;

    argv[0] = "XREVRANGE";
    argv[1] = r->u.stream;
    argv[2] = "+";
    argv[3] = "-";
    argv[4] = "COUNT";
    argv[5] = "1";
    rep = redis_argv(r, "XREVRANGE", 6, argv, NULL);
    if (!rep)
        return SL_EIO;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0 ||
        rep->element[0]->type != REDIS_REPLY_ARRAY || rep->element[0]->elements < 1 ||
        !is_str(rep->element[0]->element[0]) ||
        (size_t)rep->element[0]->element[0]->len >= sizeof(last)) {
        freeReplyObject(rep);
        return 0; /* empty (or no such key) */
    }
    snprintf(last, sizeof(last), "%s", rep->element[0]->element[0]->str);
    freeReplyObject(rep);

    while (left > 0 && rc == 0) {
        long long page = left < DLQ_PAGE ? left : DLQ_PAGE;
        const char *xr[6] = {"XRANGE", r->u.stream, start, last, "COUNT", page_s};
        size_t n;

        snprintf(page_s, sizeof(page_s), "%lld", page);
        rep = redis_argv(r, "XRANGE", 6, xr, NULL);
        if (!rep)
            return SL_EIO;
        n = rep->type == REDIS_REPLY_ARRAY ? rep->elements : 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            struct dlq_letter l;
            if (!letter_read(rep->element[i], &l))
                continue;
            r->seen++;
            left--;
            rc = visit(r, &l);
        }
        /* A full page: the next one starts right after its last id (none after the last id
         * there can be). */
        more = n == (size_t)page && rep->element[n - 1]->type == REDIS_REPLY_ARRAY &&
               rep->element[n - 1]->elements > 0 && is_str(rep->element[n - 1]->element[0]) &&
               next_id(rep->element[n - 1]->element[0]->str, start, sizeof(start));
        freeReplyObject(rep);
        if (!more)
            break;
    }
    return rc < 0 ? rc : 0;
}

/* ---------------------------------------------------------------------------------------- */
/* list                                                                                     */
/* ---------------------------------------------------------------------------------------- */

/* Escaped, shortened text of a reply string, or "-" when absent. */
static const char *shown(const redisReply *v, char *buf, size_t bufsz)
{
    if (!v)
        return "-";
    return sl_log_escape(v->str, (size_t)v->len, buf, bufsz);
}

/* name="value" name2="value2" of the original fields, escaped, cut to outsz. */
static void fields_summary(const struct dlq_letter *l, char *out, size_t outsz)
{
    size_t o = 0;

    out[0] = '\0';
    for (size_t i = 0; l->fv && i + 1 < l->fv->elements; i += 2) {
        const redisReply *k = l->fv->element[i], *v = l->fv->element[i + 1];
        char name[48], value[96];
        int w;

        if (!is_str(k) || !is_str(v) || is_sluice(k))
            continue;
        w = snprintf(out + o, outsz - o, "%s%s=\"%s\"", o ? " " : "",
                     sl_log_escape(k->str, (size_t)k->len, name, sizeof(name)),
                     sl_log_escape(v->str, (size_t)v->len, value, sizeof(value)));
        if (w < 0 || (size_t)w >= outsz - o) {
            if (outsz > 4)
                memcpy(out + outsz - 4, "...", 4);
            return;
        }
        o += (size_t)w;
    }
}

static int list_table(struct dlq_run *r, const struct dlq_letter *l)
{
    char src[72], sid[40], rcv[24], err[48], fields[240];
    long long n = letter_receives(l);

    if (!r->header_done) {
        printf("%-21s %-16s %-21s %8s  %-40s %s\n", "ID", "SOURCE", "SOURCE-ID", "RECEIVES",
               "LAST-ERROR", "FIELDS");
        r->header_done = true;
    }
    if (n >= 0)
        snprintf(rcv, sizeof(rcv), "%lld", n);
    else
        snprintf(rcv, sizeof(rcv), "-");
    fields_summary(l, fields, sizeof(fields));
    printf("%-21s %-16s %-21s %8s  %-40s %s\n", l->id, shown(l->source_stream, src, sizeof(src)),
           shown(l->source_id, sid, sizeof(sid)), rcv, shown(l->last_error, err, sizeof(err)),
           fields);
    r->done++;
    return 0;
}

static json_t *jreply(const redisReply *v)
{
    return v ? jstr(v->str, (size_t)v->len) : json_null();
}

static int list_json(struct dlq_run *r, const struct dlq_letter *l)
{
    json_t *o = json_object(), *f = json_object();
    long long n = letter_receives(l);
    bool ok = o && f;
    char *text;

    for (size_t i = 0; ok && l->fv && i + 1 < l->fv->elements; i += 2) {
        const redisReply *k = l->fv->element[i], *v = l->fv->element[i + 1];
        size_t kl = 0;
        char *key;

        if (!is_str(k) || !is_str(v) || is_sluice(k))
            continue;
        /* Keys go through the repair too: jansson wants UTF-8 keys. The last one wins. */
        key = pl_utf8_repaired(k->str, (size_t)k->len, &kl);
        ok = key && json_object_setn_new(f, key, kl, jstr(v->str, (size_t)v->len)) == 0;
        free(key);
    }
    ok = jput(o, "id", json_string(l->id)) && ok;
    ok = jput(o, "sourceStream", jreply(l->source_stream)) && ok;
    ok = jput(o, "sourceId", jreply(l->source_id)) && ok;
    ok = jput(o, "receiveCount", n >= 0 ? json_integer(n) : json_null()) && ok;
    ok = jput(o, "lastError", jreply(l->last_error)) && ok;
    ok = jput(o, "fields", f) && ok;
    text = ok ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) {
        fprintf(stderr, "sluice dlq: out of memory\n");
        return SL_ENOMEM;
    }
    puts(text);
    free(text);
    r->done++;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* replay into a stream                                                                     */
/* ---------------------------------------------------------------------------------------- */

static int replay_stream(struct dlq_run *r, const struct dlq_letter *l)
{
    const char *target;
    size_t tlen;
    char esc[160];
    redisReply *rep;

    if (r->o.to_stream) {
        target = r->o.to_stream;
        tlen = strlen(target);
    } else if (l->source_stream && l->source_stream->len > 0) {
        target = l->source_stream->str;
        tlen = (size_t)l->source_stream->len;
    } else {
        fprintf(stderr,
                "sluice dlq: skipping %s: it has no sluice-source-stream field (name a "
                "stream with --to-stream NAME)\n",
                l->id);
        r->skipped++;
        return 0;
    }
    sl_log_escape(target, tlen, esc, sizeof(esc));
    if (tlen == strlen(r->u.stream) && memcmp(target, r->u.stream, tlen) == 0) {
        fprintf(stderr, "sluice dlq: skipping %s: its target is the dead-letter stream itself\n",
                l->id);
        r->skipped++;
        return 0;
    }
    if (l->norig == 0) {
        fprintf(stderr,
                "sluice dlq: skipping %s: it has no original fields (the source entry "
                "was already gone when it was dead-lettered)\n",
                l->id);
        r->skipped++;
        return 0;
    }
    if (r->o.dry_run) {
        printf("would replay %s to %s (%zu fields)\n", l->id, esc, l->norig);
        r->done++;
        return 0;
    }
    {
        const char *argv[6] = {"EVAL", replay_lua, "2", r->u.stream, target, l->id};
        size_t argl[6] = {4, strlen(replay_lua), 1, strlen(r->u.stream), tlen, strlen(l->id)};
        rep = redisCommandArgv(r->rc, 6, argv, argl);
    }
    if (!rep) {
        redis_complain(r, "replay", NULL);
        r->failed++;
        return SL_EIO;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "sluice dlq: %s not replayed to %s: %s; left in %s\n", l->id, esc, rep->str,
                r->u.stream);
        r->failed++;
    } else if (rep->type == REDIS_REPLY_NIL) {
        fprintf(stderr,
                "sluice dlq: %s is gone (replayed or deleted meanwhile by someone "
                "else)\n",
                l->id);
        r->skipped++;
    } else {
        r->done++;
    }
    freeReplyObject(rep);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The SQS-shaped event for --to-function                                                   */
/* ---------------------------------------------------------------------------------------- */

/*
 * The event {"Records":[record]} for one dead letter, appended to out: the record is the one
 * the mapping would send (pl_sqs_append_record) for the dead letter's original fields, with
 * messageId the source entry's id (the dead letter's own when that is missing),
 * ApproximateReceiveCount the dead letter's receive count plus this delivery, and
 * eventSourceARN the dead-letter stream's URI without its user info. Returns 0, SL_ENOMEM,
 * SL_ETOOBIG (a value of 4 GiB or more), SL_EUNSUPPORTED (no MD5); on failure out holds part
 * of an event and must be discarded.
 */
static int build_event(const struct dlq_run *r, const struct dlq_letter *l, struct evbuffer *out)
{
    size_t cap = l->norig ? l->norig : 1;
    const char **names = calloc(cap, sizeof(*names)), **values = calloc(cap, sizeof(*values));
    size_t *name_lens = calloc(cap, sizeof(*name_lens));
    size_t *value_lens = calloc(cap, sizeof(*value_lens));
    const char *region = getenv("AWS_REGION");
    long long receives = letter_receives(l);
    struct pl_stream_entry e = {.id = l->id};
    struct pl_sqs_ctx ctx = {.event_source_arn = r->shown, .sender_id = "sluice"};
    int rc = SL_ENOMEM;

    if (!names || !values || !name_lens || !value_lens)
        goto out;
    for (size_t i = 0; l->fv && i + 1 < l->fv->elements && e.nfields < cap; i += 2) {
        const redisReply *k = l->fv->element[i], *v = l->fv->element[i + 1];
        if (!is_str(k) || !is_str(v) || is_sluice(k))
            continue;
        names[e.nfields] = k->str;
        name_lens[e.nfields] = (size_t)k->len;
        values[e.nfields] = v->str;
        value_lens[e.nfields] = (size_t)v->len;
        e.nfields++;
    }
    e.names = names;
    e.name_lens = name_lens;
    e.values = values;
    e.value_lens = value_lens;
    if (l->source_id && is_stream_id(l->source_id->str, (size_t)l->source_id->len))
        e.id = l->source_id->str;
    e.receive_count = receives >= 0 ? receives + 1 : 1;
    e.first_receive_ms = sl_now_ms();
    /* the broker's default region too (pollers/poller_esm.c) */
    ctx.region = region && region[0] ? region : "us-east-1";
    if (evbuffer_add(out, "{\"Records\":[", 12) != 0)
        goto out;
    rc = pl_sqs_append_record(out, &e, &ctx);
    if (rc == 0 && evbuffer_add(out, "]}", 2) != 0)
        rc = SL_ENOMEM;

out:
    free(names);
    free(values);
    free(name_lens);
    free(value_lens);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* replay into a function: a minimal client of the broker's Invoke API                      */
/* ---------------------------------------------------------------------------------------- */

struct dlq_http {
    struct event_base *base;
    struct evhttp_connection *conn;
    char host[256];
    /* the answer to the request in flight */
    bool done;
    int status; /* 0: no answer */
    int error;  /* 1 + enum evhttp_request_error; 0 none */
    char function_error[64];
    char error_type[128];
    struct evbuffer *body;
};

static void http_free(struct dlq_http *h)
{
    if (!h)
        return;
    if (h->conn)
        evhttp_connection_free(h->conn);
    if (h->body)
        evbuffer_free(h->body);
    if (h->base)
        event_base_free(h->base);
    free(h);
}

/* A client for the endpoint http://host[:port][/]. Returns 0, or SL_EINVAL after printing why,
 * or SL_ENOMEM. Nothing connects until the first request. */
static int http_new(const char *endpoint, struct dlq_http **out)
{
    struct evhttp_uri *u = evhttp_uri_parse(endpoint);
    const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
    const char *host = u ? evhttp_uri_get_host(u) : NULL;
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    struct dlq_http *h = NULL;
    int port = u ? evhttp_uri_get_port(u) : -1;
    size_t hl;

    *out = NULL;
    if (!u || !scheme || strcmp(scheme, "http") != 0 || !host || !host[0] ||
        (path && path[0] && strcmp(path, "/") != 0) || evhttp_uri_get_query(u)) {
        fprintf(stderr,
                "sluice dlq replay: --endpoint must be http://host:port (the broker's "
                "Listen address), not '%s'\n",
                endpoint);
        evhttp_uri_free(u);
        return SL_EINVAL;
    }
    h = calloc(1, sizeof(*h));
    if (!h)
        goto nomem;
    hl = strlen(host);
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') { /* libevent keeps the brackets */
        host++;
        hl -= 2;
    }
    if (hl >= sizeof(h->host))
        goto nomem;
    memcpy(h->host, host, hl);
    h->base = event_base_new();
    h->body = evbuffer_new();
    h->conn = h->base ? evhttp_connection_base_new(h->base, NULL, h->host,
                                                   (ev_uint16_t)(port > 0 ? port : 80))
                      : NULL;
    if (!h->base || !h->body || !h->conn)
        goto nomem;
    evhttp_connection_set_timeout(h->conn, DLQ_HTTP_TIMEOUT_S);
    evhttp_uri_free(u);
    *out = h;
    return 0;

nomem:
    fprintf(stderr, "sluice dlq: out of memory\n");
    evhttp_uri_free(u);
    http_free(h);
    return SL_ENOMEM;
}

static void on_http_error(enum evhttp_request_error e, void *arg)
{
    struct dlq_http *h = arg;
    h->error = 1 + (int)e;
}

static void on_http_done(struct evhttp_request *req, void *arg)
{
    struct dlq_http *h = arg;
    const char *v;

    h->done = true;
    event_base_loopbreak(h->base);
    if (!req || evhttp_request_get_response_code(req) == 0)
        return;
    h->status = evhttp_request_get_response_code(req);
    v = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Amz-Function-Error");
    snprintf(h->function_error, sizeof(h->function_error), "%s", v ? v : "");
    v = evhttp_find_header(evhttp_request_get_input_headers(req), "x-amzn-ErrorType");
    snprintf(h->error_type, sizeof(h->error_type), "%s", v ? v : "");
    evbuffer_add_buffer(h->body, evhttp_request_get_input_buffer(req));
}

/* POSTs one event to function's invocations and waits for the answer (h->status etc.); the
 * event's bytes are moved out of event. Returns 0 when an answer came, SL_ECONNECT when none
 * did, SL_ENOMEM. */
static int http_invoke(struct dlq_http *h, const char *function, bool async, struct evbuffer *event)
{
    struct evhttp_request *req = evhttp_request_new(on_http_done, h);
    struct evkeyvalq *hd;
    char path[128];

    if (!req)
        return SL_ENOMEM;
    h->done = false;
    h->status = 0;
    h->error = 0;
    h->function_error[0] = h->error_type[0] = '\0';
    evbuffer_drain(h->body, evbuffer_get_length(h->body));
    evhttp_request_set_error_cb(req, on_http_error);
    hd = evhttp_request_get_output_headers(req);
    if (evhttp_add_header(hd, "Host", h->host) != 0 ||
        evhttp_add_header(hd, "Content-Type", "application/json") != 0 ||
        evhttp_add_header(hd, "X-Amz-Invocation-Type", async ? "Event" : "RequestResponse") != 0 ||
        evbuffer_add_buffer(evhttp_request_get_output_buffer(req), event) != 0) {
        evhttp_request_free(req);
        return SL_ENOMEM;
    }
    snprintf(path, sizeof(path), "/2015-03-31/functions/%s/invocations", function);
    /* The connection owns req from here. XXX: when the call fails, libevent 2.1 does not say
     * whether it freed req; the run stops then, so at worst one request leaks at exit. */
    if (evhttp_make_request(h->conn, req, EVHTTP_REQ_POST, path) != 0)
        return SL_ECONNECT;
    while (!h->done)
        if (event_base_loop(h->base, EVLOOP_ONCE) != 0)
            break;
    return h->done && h->status > 0 ? 0 : SL_ECONNECT;
}

static const char *http_error_text(int e)
{
    switch (e - 1) {
    case EVREQ_HTTP_TIMEOUT:
        return "timed out";
    case EVREQ_HTTP_EOF:
        return "connection refused or closed";
    case EVREQ_HTTP_INVALID_HEADER:
        return "invalid answer";
    case EVREQ_HTTP_BUFFER_ERROR:
        return "connection refused or broken";
    default: /* libevent 2.1 reports a refused connect without a code */
        return "no answer (connection refused or closed)";
    }
}

/* A one-line reason from a failed answer: the function's error or the API's. */
static void answer_reason(struct dlq_http *h, char *out, size_t outsz)
{
    size_t len = evbuffer_get_length(h->body);
    const char *body = (const char *)evbuffer_pullup(h->body, -1);
    json_t *j = body ? json_loadb(body, len, 0, NULL) : NULL;
    const char *type = NULL, *msg = NULL;
    char esc[256];

    if (json_is_object(j)) {
        type = json_string_value(json_object_get(j, "errorType"));
        msg = json_string_value(json_object_get(j, "errorMessage"));
        if (!msg)
            msg = json_string_value(json_object_get(j, "message"));
        if (!msg)
            msg = json_string_value(json_object_get(j, "Message"));
    }
    if (h->function_error[0])
        snprintf(out, outsz, "function error (%s): %s%s%s", h->function_error, type ? type : "",
                 type ? ": " : "", msg ? msg : sl_log_escape(body, len, esc, sizeof(esc)));
    else
        snprintf(out, outsz, "HTTP %d %s%s%s", h->status, h->error_type,
                 h->error_type[0] ? ": " : "",
                 msg ? msg : sl_log_escape(body ? body : "", body ? len : 0, esc, sizeof(esc)));
    json_decref(j);
}

static int replay_function(struct dlq_run *r, const struct dlq_letter *l)
{
    const char *argv[3] = {"XDEL", r->u.stream, l->id};
    char reason[400];
    struct evbuffer *event;
    redisReply *rep;
    int err;

    if (l->norig == 0) {
        fprintf(stderr,
                "sluice dlq: skipping %s: it has no original fields (the source entry "
                "was already gone when it was dead-lettered)\n",
                l->id);
        r->skipped++;
        return 0;
    }
    event = evbuffer_new();
    err = event ? build_event(r, l, event) : SL_ENOMEM;
    if (err) {
        if (event)
            evbuffer_free(event);
        fprintf(stderr, "sluice dlq: %s: cannot build its event: %s\n", l->id, sl_strerror(err));
        r->failed++;
        return err == SL_ENOMEM ? err : 0;
    }
    if (r->o.dry_run) {
        printf("would invoke %s with %s (%zu bytes of event)\n", r->o.function, l->id,
               evbuffer_get_length(event));
        evbuffer_free(event);
        r->done++;
        return 0;
    }
    err = http_invoke(r->http, r->o.function, r->o.async, event);
    evbuffer_free(event);
    if (err == SL_ENOMEM) {
        fprintf(stderr, "sluice dlq: out of memory\n");
        r->failed++;
        return err;
    }
    if (err) {
        fprintf(stderr,
                "sluice dlq: cannot reach the broker at %s: %s (is 'sluice serve' "
                "running there?); %s left in %s\n",
                r->o.endpoint, http_error_text(r->http->error), l->id, r->u.stream);
        r->failed++;
        return SL_ECONNECT;
    }
    if (r->http->status != (r->o.async ? 202 : 200) || r->http->function_error[0]) {
        answer_reason(r->http, reason, sizeof(reason));
        fprintf(stderr, "sluice dlq: %s failed: %s; left in %s\n", l->id, reason, r->u.stream);
        r->failed++;
        /* The function is unknown or the request malformed: every other one would fail too. */
        return r->http->status == 404 || r->http->status == 400 ? SL_EINVAL : 0;
    }
    rep = redis_argv(r, "XDEL", 3, argv, NULL);
    if (!rep) {
        fprintf(stderr,
                "sluice dlq: %s was invoked but could not be deleted from %s: the next "
                "replay invokes it again\n",
                l->id, r->u.stream);
        r->failed++;
        return SL_EIO;
    }
    freeReplyObject(rep);
    r->done++;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Entry point                                                                              */
/* ---------------------------------------------------------------------------------------- */

static void summary(const struct dlq_run *r, bool stopped)
{
    const char *what = r->o.dry_run ? "would replay" : "replayed";
    char into[700];

    if (r->o.function)
        snprintf(into, sizeof(into), "into function %s (%s)", r->o.function,
                 r->o.async ? "async" : "sync");
    else if (r->o.to_stream)
        snprintf(into, sizeof(into), "into stream %s", r->o.to_stream);
    else
        snprintf(into, sizeof(into), "into their source streams");
    printf("%s%s %lld of %lld dead letters from %s %s; %lld skipped, %lld failed%s\n",
           r->o.dry_run ? "dry run: " : "", what, r->done, r->seen, r->u.stream, into, r->skipped,
           r->failed, r->o.dry_run ? "; nothing changed" : "");
    if (stopped)
        printf("stopped early: the dead letters after the last one tried were not looked at\n");
}

/*
 * `sluice dlq` (contract in broker_internal.h): argv[0] is "dlq", argv[1] the subcommand.
 */
int br_dlq_main(int argc, char **argv)
{
    struct dlq_run r;
    char err[512];
    int rc, status = DLQ_EXIT_FAILED;

    if (argc < 2) {
        usage_dlq(stderr);
        return DLQ_EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage_dlq(stdout);
        return DLQ_EXIT_OK;
    }
    if (strcmp(argv[1], "list") != 0 && strcmp(argv[1], "replay") != 0) {
        fprintf(stderr, "sluice dlq: unknown subcommand '%s' (list or replay)\n", argv[1]);
        usage_dlq(stderr);
        return DLQ_EXIT_USAGE;
    }
    memset(&r, 0, sizeof(r));
    rc = parse_args(argc - 1, argv + 1, &r.o);
    if (rc == 1) {
        usage_dlq(stdout);
        return DLQ_EXIT_OK;
    }
    if (rc < 0) {
        fprintf(stderr, "(see 'sluice dlq --help')\n");
        return DLQ_EXIT_USAGE;
    }
    /* The mappings' grammar (pl_redis_uri_parse), without the query a mapping's URI has. */
    if (strchr(r.o.uri, '?')) {
        fprintf(stderr, "sluice dlq: bad URI: a query (?...) belongs to a mapping's "
                        "EventSourceArn; give the dead-letter stream itself: "
                        "redis://host:port[/db]/STREAM\n");
        return DLQ_EXIT_USAGE;
    }
    if (pl_redis_uri_parse(r.o.uri, &r.u, err, sizeof(err)) != 0) {
        fprintf(stderr, "sluice dlq: bad URI: %s\n", err);
        return DLQ_EXIT_USAGE;
    }
    pl_uri_redact(r.o.uri, r.shown, sizeof(r.shown));
    snprintf(r.addr, sizeof(r.addr), strchr(r.u.host, ':') ? "[%s]:%d" : "%s:%d", r.u.host,
             r.u.port);
    if (r.o.to_stream && strcmp(r.o.to_stream, r.u.stream) == 0) {
        fprintf(stderr, "sluice dlq replay: --to-stream names the dead-letter stream itself\n");
        memset(&r.u, 0, sizeof(r.u));
        return DLQ_EXIT_USAGE;
    }
    signal(SIGPIPE, SIG_IGN);
    if (r.o.function && !r.o.dry_run) {
        rc = http_new(r.o.endpoint, &r.http);
        if (rc != 0) {
            memset(&r.u, 0, sizeof(r.u));
            return rc == SL_EINVAL ? DLQ_EXIT_USAGE : DLQ_EXIT_FAILED;
        }
    }
    if (redis_open(&r) != 0)
        goto out;

    if (!r.o.replay)
        rc = dlq_scan(&r, r.o.json ? list_json : list_table);
    else
        rc = dlq_scan(&r, r.o.function ? replay_function : replay_stream);
    if (r.seen == 0 && rc == 0) {
        if (r.o.replay)
            printf("nothing to replay: %s is empty\n", r.u.stream);
        else if (!r.o.json)
            printf("no dead letters in %s\n", r.u.stream);
        status = DLQ_EXIT_OK;
        goto out;
    }
    if (!r.o.replay) {
        if (!r.o.json && rc == 0)
            printf("%lld dead letter%s in %s (oldest first)\n", r.done, r.done == 1 ? "" : "s",
                   r.u.stream);
        status = rc == 0 ? DLQ_EXIT_OK : DLQ_EXIT_FAILED;
        goto out;
    }
    summary(&r, rc != 0);
    status = rc == 0 && r.failed == 0 && r.skipped == 0 ? DLQ_EXIT_OK : DLQ_EXIT_FAILED;

out:
    fflush(stdout);
    if (r.rc)
        redisFree(r.rc);
    http_free(r.http);
    memset(&r.u, 0, sizeof(r.u)); /* the password */
    return status;
}
