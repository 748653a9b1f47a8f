/*
 * poller_kafka_event.c - the JSON shapes of the Kafka source: the event (lambda-spec 2.4), the
 * partial batch response (lambda-spec 2.6) and the on-failure records (lambda-spec 3.2). The
 * contracts are in poller_kafka_event.h; the shapes, and every decision about them, are written
 * down for function authors in schemas/kafka-event.schema.json and
 * schemas/kafka-failure-record.schema.json. This file and those schemas change together.
 *
 * The event is the hot path (up to 10,000 records or 6 MB a batch, design: "the batch path
 * must not copy records more than once"), so it is written with the pollers' streaming JSON
 * writer (poller_json.h, shared with poller_sqs.c; why it is not jansson is in poller_json.c):
 * keys and values are base64'ed and header bytes written as numbers straight from
 * librdkafka's message into reserved space of the caller's evbuffer. Every structural byte is
 * a literal in this file. The output is tested on hostile input by
 * tests/unit/test_kafka_event.c, which parses every output back with jansson.
 *
 * The partial batch response is small and arrives once per batch: it is read with jansson.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "broker/broker.h"
#include "pollers/poller_json.h"
#include "pollers/poller_kafka_event.h"

/* ---------------------------------------------------------------------------------------- */
/* Writer helpers of this file (the writer itself is poller_json.c)                        */
/* ---------------------------------------------------------------------------------------- */

/* "s" for a C string, null for NULL. */
static void put_str_or_null(struct pl_jw *w, const char *s)
{
    if (!s) {
        pl_jw_lit(w, "null");
        return;
    }
    pl_jw_lit(w, "\"");
    pl_jw_str(w, (const uint8_t *)s, strlen(s), false);
    pl_jw_lit(w, "\"");
}

/* Base64 (RFC 4648, standard alphabet, padded) of s[0..n), written in place. */
static void put_b64(struct pl_jw *w, const uint8_t *s, size_t n)
{
    struct pl_jw_b64 b = {.n = 0};

    pl_jw_b64(w, &b, s, n);
    pl_jw_b64_end(w, &b);
}

/*
 * Bytes as a JSON array body of Java bytes: "104,-1,0" (signed, -128..127, the way
 * aws-lambda-go and Lambda's JVM serializer write byte[]). At most 5 output bytes per input.
 */
static void put_java_bytes(struct pl_jw *w, const uint8_t *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned u = s[i] < 0x80 ? s[i] : 0x100u - s[i];

        if (!pl_jw_room(w, 5))
            return;
        if (i > 0)
            *w->p++ = ',';
        if (s[i] >= 0x80)
            *w->p++ = '-';
        if (u >= 100)
            *w->p++ = (uint8_t)('0' + u / 100);
        if (u >= 10)
            *w->p++ = (uint8_t)('0' + u / 10 % 10);
        *w->p++ = (uint8_t)('0' + u % 10);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Time                                                                                     */
/* ---------------------------------------------------------------------------------------- */

/* 9999-12-31T23:59:59.999Z, the last instant with a four-digit year. */
#define ISO_MAX_MS INT64_C(253402300799999)

/*
 * Writes "YYYY-MM-DDThh:mm:ss.mmmZ" (UTC) for 0 <= ms <= ISO_MAX_MS into buf[25]. Days to civil
 * date after H. Hinnant's days_from_civil inverse (proleptic Gregorian); no gmtime_r, so no
 * locale, no time zone and no range surprises from time_t.
 */
static void iso_ms(int64_t ms, char buf[25])
{
    int64_t days = ms / 86400000, rem = ms % 86400000;
    int64_t z = days + 719468, era = z / 146097, doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    int64_t f[7] = {y, m, d, rem / 3600000, rem / 60000 % 60, rem / 1000 % 60, rem % 1000};
    static const char fmt[] = "0000-00-00T00:00:00.000Z";
    static const unsigned char width[7] = {4, 2, 2, 2, 2, 2, 3};
    size_t i, k, o = 0;

    memcpy(buf, fmt, sizeof(fmt));
    for (i = 0; i < 7; i++) {
        int64_t v = f[i];

        for (k = width[i]; k > 0; k--) {
            buf[o + k - 1] = (char)('0' + v % 10);
            v /= 10;
        }
        o += width[i] + 1;
    }
}

/* "ISO" for a record timestamp that has one in range, null otherwise (schema: timestamps). */
static void put_record_iso(struct pl_jw *w, const struct pl_kafka_record *r)
{
    char buf[25];

    if (r->timestamp_type == PL_KAFKA_TS_NOT_AVAILABLE || r->timestamp_ms < 0 ||
        r->timestamp_ms > ISO_MAX_MS) {
        pl_jw_lit(w, "null");
        return;
    }
    iso_ms(r->timestamp_ms, buf);
    pl_jw_lit(w, "\"");
    pl_jw_bytes(w, buf, 24);
    pl_jw_lit(w, "\"");
}

/* ---------------------------------------------------------------------------------------- */
/* The event                                                                                */
/* ---------------------------------------------------------------------------------------- */

/* The records' key, "<topic>-<partition>", as string content. */
static void put_topic_partition(struct pl_jw *w, const char *topic, int32_t partition)
{
    pl_jw_str(w, (const uint8_t *)topic, strlen(topic), false);
    pl_jw_lit(w, "-");
    pl_jw_int(w, partition);
}

/* See poller_kafka_event.h. */
int pl_kafka_event_begin(struct evbuffer *out, const char *bootstrap_servers, const char *topic,
                         int32_t partition)
{
    struct pl_jw w;

    if (!out || !bootstrap_servers || !topic)
        return SL_EINVAL;
    pl_jw_init(&w, out);
    pl_jw_lit(&w, "{\"eventSource\":\"SelfManagedKafka\",\"bootstrapServers\":");
    put_str_or_null(&w, bootstrap_servers);
    pl_jw_lit(&w, ",\"records\":{\"");
    put_topic_partition(&w, topic, partition);
    pl_jw_lit(&w, "\":[");
    return pl_jw_commit(&w);
}

/* A view is valid when it is present with bytes, or empty. */
static bool view_ok(const void *p, size_t len)
{
    return p != NULL || len == 0;
}

static bool record_ok(const struct pl_kafka_record *r)
{
    size_t i;

    if (!r || !r->topic)
        return false;
    if ((r->key_present && !view_ok(r->key, r->key_len)) ||
        (r->value_present && !view_ok(r->value, r->value_len)) || !view_ok(r->headers, r->nheaders))
        return false;
    for (i = 0; i < r->nheaders; i++) {
        const struct pl_kafka_header *h = &r->headers[i];

        if (!view_ok(h->name, h->name_len) || (h->present && !view_ok(h->value, h->value_len)))
            return false;
    }
    return true;
}

static void put_record(struct pl_jw *w, const struct pl_kafka_record *r)
{
    size_t i;

    pl_jw_lit(w, "{\"topic\":\"");
    pl_jw_str(w, (const uint8_t *)r->topic, strlen(r->topic), false);
    pl_jw_lit(w, "\",\"partition\":");
    pl_jw_int(w, r->partition);
    pl_jw_lit(w, ",\"offset\":");
    pl_jw_int(w, r->offset);
    pl_jw_lit(w, ",\"timestamp\":");
    pl_jw_int(w, r->timestamp_type == PL_KAFKA_TS_NOT_AVAILABLE ? -1 : r->timestamp_ms);
    switch (r->timestamp_type) {
    case PL_KAFKA_TS_CREATE_TIME:
        pl_jw_lit(w, ",\"timestampType\":\"CREATE_TIME\"");
        break;
    case PL_KAFKA_TS_LOG_APPEND_TIME:
        pl_jw_lit(w, ",\"timestampType\":\"LOG_APPEND_TIME\"");
        break;
    default:
        /* Kafka's Java TimestampType.NO_TIMESTAMP_TYPE, what a JVM consumer sees for message
         * format v0, with its ConsumerRecord.NO_TIMESTAMP (-1) above. */
        pl_jw_lit(w, ",\"timestampType\":\"NO_TIMESTAMP_TYPE\"");
        break;
    }
    if (r->key_present) {
        pl_jw_lit(w, ",\"key\":\"");
        put_b64(w, r->key, r->key_len);
        pl_jw_lit(w, "\"");
    }
    if (r->value_present) {
        pl_jw_lit(w, ",\"value\":\"");
        put_b64(w, r->value, r->value_len);
        pl_jw_lit(w, "\"");
    }
    pl_jw_lit(w, ",\"headers\":[");
    for (i = 0; i < r->nheaders; i++) {
        const struct pl_kafka_header *h = &r->headers[i];

        pl_jw_bytes(w, i > 0 ? ",{\"" : "{\"", i > 0 ? 3 : 2);
        pl_jw_str(w, (const uint8_t *)h->name, h->name_len, false);
        if (h->present) {
            pl_jw_lit(w, "\":[");
            put_java_bytes(w, h->value, h->value_len);
            pl_jw_lit(w, "]}");
        } else {
            pl_jw_lit(w, "\":null}");
        }
    }
    pl_jw_lit(w, "]}");
}

/* See poller_kafka_event.h. */
int pl_kafka_append_record(struct evbuffer *out, const struct pl_kafka_record *r, bool first)
{
    struct pl_jw w;

    if (!out || !record_ok(r))
        return SL_EINVAL;
    pl_jw_init(&w, out);
    if (!first)
        pl_jw_lit(&w, ",");
    put_record(&w, r);
    return pl_jw_commit(&w);
}

/* See poller_kafka_event.h. */
int pl_kafka_event_end(struct evbuffer *out)
{
    if (!out)
        return SL_EINVAL;
    return evbuffer_add(out, "]}}", 3) == 0 ? 0 : SL_ENOMEM;
}

/* ---------------------------------------------------------------------------------------- */
/* Partial batch responses                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* An offset as a JSON integer or a string of 1..19 decimal digits. False when malformed. */
static bool offset_of(const json_t *j, int64_t *v)
{
    const char *s;
    size_t len, i;
    uint64_t u = 0;

    if (json_is_integer(j)) {
        *v = (int64_t)json_integer_value(j);
        return true;
    }
    if (!json_is_string(j))
        return false;
    s = json_string_value(j);
    len = json_string_length(j);
    if (len == 0 || len > 19)
        return false;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        u = u * 10 + (uint64_t)(s[i] - '0'); /* 19 digits < 2^64: no overflow */
    }
    if (u > (uint64_t)INT64_MAX)
        return false;
    *v = (int64_t)u;
    return true;
}

/* Index of off in the ascending offsets[0..n), or n. */
static size_t offset_index(const int64_t *offsets, size_t n, int64_t off)
{
    size_t lo = 0, hi = n, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (offsets[mid] < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && offsets[lo] == off ? lo : n;
}

/* See poller_kafka_event.h. */
int pl_kafka_parse_batch_response(const uint8_t *body, size_t len, const char *topic,
                                  int32_t partition, const int64_t *offsets, size_t n,
                                  size_t *lowest_failed)
{
    json_t *root = NULL, *list, *item;
    char part[16], *tp = NULL;
    size_t i, tlen, tplen, lowest = n;
    int rc = 0, k;

    if (!topic || !lowest_failed || (n > 0 && !offsets)) {
        rc = SL_EINVAL;
        goto out;
    }
    for (i = 1; i < n; i++) {
        if (offsets[i - 1] >= offsets[i]) {
            rc = SL_EINVAL;
            goto out;
        }
    }
    rc = pl_batch_failures(body, len, &root, &list);
    if (rc || !list)
        goto out;

    /* "<topic>-<partition>", to compare bytes with. */
    k = snprintf(part, sizeof(part), "-%" PRId32, partition);
    tlen = strlen(topic);
    if (k < 0 || (size_t)k >= sizeof(part) || tlen > SIZE_MAX - sizeof(part)) {
        rc = SL_EINVAL;
        goto out;
    }
    tplen = tlen + (size_t)k;
    tp = malloc(tplen + 1);
    if (!tp) {
        rc = SL_ENOMEM;
        goto out;
    }
    memcpy(tp, topic, tlen);
    memcpy(tp + tlen, part, (size_t)k + 1);

    json_array_foreach(list, i, item)
    {
        json_t *ident = json_is_object(item) ? json_object_get(item, "itemIdentifier") : NULL;
        json_t *jtp = json_is_object(ident) ? json_object_get(ident, "topic-partition") : NULL;
        int64_t off;
        size_t idx;

        if (!json_is_string(jtp) || json_string_length(jtp) != tplen ||
            memcmp(json_string_value(jtp), tp, tplen) != 0 ||
            !offset_of(json_object_get(ident, "offset"), &off)) {
            rc = SL_EPROTO;
            goto out;
        }
        idx = offset_index(offsets, n, off);
        if (idx == n) {
            rc = SL_EPROTO;
            goto out;
        }
        if (idx < lowest)
            lowest = idx;
    }

out:
    if (lowest_failed)
        *lowest_failed = rc == 0 ? lowest : 0;
    free(tp);
    json_decref(root);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* On-failure records                                                                       */
/* ---------------------------------------------------------------------------------------- */

/* Checks f: the required strings, a "now" in range, n >= 1 valid records of one
 * topic-partition. */
static bool failure_ok(const struct pl_kafka_failure *f)
{
    size_t i;

    if (!f || !f->records || f->n == 0 || !f->function_arn || !f->condition ||
        !f->event_source_arn || !f->bootstrap_servers ||
        (f->has_response && !f->executed_version) || f->now_ms < 0 || f->now_ms > ISO_MAX_MS ||
        (f->payload && f->payload_len == 0))
        return false;
    for (i = 0; i < f->n; i++) {
        const struct pl_kafka_record *r = &f->records[i];

        if (!record_ok(r) || r->partition != f->records[0].partition ||
            strcmp(r->topic, f->records[0].topic) != 0)
            return false;
    }
    return true;
}

/* The event holding records[0..n) into a new buffer (*out, caller frees). */
static int encode_event(const struct pl_kafka_failure *f, const struct pl_kafka_record *r, size_t n,
                        struct evbuffer **out)
{
    struct evbuffer *b = evbuffer_new();
    size_t i;
    int rc;

    *out = NULL;
    if (!b)
        return SL_ENOMEM;
    rc = pl_kafka_event_begin(b, f->bootstrap_servers, r[0].topic, r[0].partition);
    for (i = 0; i < n && rc == 0; i++)
        rc = pl_kafka_append_record(b, &r[i], i == 0);
    if (rc == 0)
        rc = pl_kafka_event_end(b);
    if (rc != 0) {
        evbuffer_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

/* requestContext, responseContext, version, timestamp: everything before KafkaBatchInfo. */
static void put_contexts(struct pl_jw *w, const struct pl_kafka_failure *f)
{
    char buf[25];

    pl_jw_lit(w, "{\"requestContext\":{\"requestId\":");
    put_str_or_null(w, f->request_id);
    pl_jw_lit(w, ",\"functionArn\":");
    put_str_or_null(w, f->function_arn);
    pl_jw_lit(w, ",\"condition\":");
    put_str_or_null(w, f->condition);
    pl_jw_lit(w, ",\"approximateInvokeCount\":");
    pl_jw_int(w, f->approximate_invoke_count);
    if (f->has_response) {
        pl_jw_lit(w, "},\"responseContext\":{\"statusCode\":");
        pl_jw_int(w, f->status_code);
        pl_jw_lit(w, ",\"executedVersion\":");
        put_str_or_null(w, f->executed_version);
        if (f->function_error) {
            pl_jw_lit(w, ",\"functionError\":");
            put_str_or_null(w, f->function_error);
        }
        pl_jw_lit(w, "}");
    } else {
        pl_jw_lit(w, "},\"responseContext\":null");
    }
    iso_ms(f->now_ms, buf);
    pl_jw_lit(w, ",\"version\":\"1.0\",\"timestamp\":\"");
    pl_jw_bytes(w, buf, 24);
    pl_jw_lit(w, "\"");
}

/*
 * Writes a failure record for records [first, first+count) of f: the batch variant when one is
 * false, the kafka:// variant (count 1) when true. The payload is encoded first, into its own
 * buffer, because its size comes before it; the head goes into another, and both are moved
 * (not copied) into out at the end, so out only changes on success.
 */
static int failure_write(struct evbuffer *out, const struct pl_kafka_failure *f, size_t first,
                         size_t count, bool one)
{
    const struct pl_kafka_record *r = &f->records[first], *last = &f->records[first + count - 1];
    struct evbuffer *payload = NULL, *head = NULL;
    size_t payload_len;
    struct pl_jw w;
    int rc;

    if (one || !f->payload) {
        rc = encode_event(f, r, count, &payload);
        if (rc != 0)
            return rc;
        payload_len = evbuffer_get_length(payload);
    } else {
        payload_len = f->payload_len;
    }
    head = evbuffer_new();
    if (!head) {
        rc = SL_ENOMEM;
        goto out;
    }
    pl_jw_init(&w, head);
    put_contexts(&w, f);
    pl_jw_lit(&w, ",\"KafkaBatchInfo\":{\"batchSize\":");
    pl_jw_int(&w, (int64_t)count);
    pl_jw_lit(&w, ",\"eventSourceArn\":");
    put_str_or_null(&w, f->event_source_arn);
    pl_jw_lit(&w, ",\"bootstrapServers\":");
    put_str_or_null(&w, f->bootstrap_servers);
    pl_jw_lit(&w, ",\"payloadSize\":");
    pl_jw_int(&w, (int64_t)payload_len);
    if (one) {
        pl_jw_lit(&w, ",\"recordInfo\":{\"offset\":\"");
        pl_jw_int(&w, r->offset);
        pl_jw_lit(&w, "\",\"timestamp\":");
        put_record_iso(&w, r);
        pl_jw_lit(&w, "}");
    } else {
        pl_jw_lit(&w, ",\"recordsInfo\":{\"");
        put_topic_partition(&w, r->topic, r->partition);
        pl_jw_lit(&w, "\":{\"firstRecordOffset\":\"");
        pl_jw_int(&w, r->offset);
        pl_jw_lit(&w, "\",\"lastRecordOffset\":\"");
        pl_jw_int(&w, last->offset);
        pl_jw_lit(&w, "\",\"firstRecordTimestamp\":");
        put_record_iso(&w, r);
        pl_jw_lit(&w, ",\"lastRecordTimestamp\":");
        put_record_iso(&w, last);
        pl_jw_lit(&w, "}}");
    }
    pl_jw_lit(&w, "},\"payload\":");
    rc = pl_jw_commit(&w);
    if (rc != 0)
        goto out;
    if (payload ? evbuffer_add_buffer(head, payload) != 0
                : evbuffer_add(head, f->payload, f->payload_len) != 0) {
        rc = SL_ENOMEM;
        goto out;
    }
    if (evbuffer_add(head, "}", 1) != 0 || evbuffer_add_buffer(out, head) != 0)
        rc = SL_ENOMEM;

out:
    if (head) /* libevent's evbuffer_free(NULL) crashes */
        evbuffer_free(head);
    if (payload)
        evbuffer_free(payload);
    return rc;
}

/* See poller_kafka_event.h. */
int pl_kafka_failure_record(struct evbuffer *out, const struct pl_kafka_failure *f)
{
    if (!out || !failure_ok(f))
        return SL_EINVAL;
    return failure_write(out, f, 0, f->n, false);
}

/* See poller_kafka_event.h. */
int pl_kafka_failure_record_one(struct evbuffer *out, const struct pl_kafka_failure *f, size_t i)
{
    if (!out || !failure_ok(f) || i >= f->n)
        return SL_EINVAL;
    return failure_write(out, f, i, 1, true);
}
