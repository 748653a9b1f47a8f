/*
 * test_kafka_event.c - the Kafka source's JSON shapes (pollers/poller_kafka_event.h): the event
 * (pl_kafka_event_begin / pl_kafka_append_record / pl_kafka_event_end), partial batch responses
 * (pl_kafka_parse_batch_response) and on-failure records (pl_kafka_failure_record, _one).
 * Every output is parsed back with jansson and checked field by field; base64 is decoded with
 * OpenSSL, dates are checked against gmtime_r, non-UTF-8 header names against vectors computed
 * with Python's bytes.decode("utf-8", "replace"). Sample files for the schema checks of later
 * integration tests go to $SLUICE_TEST_TMP: kafka-event-sample.json,
 * kafka-failure-sample.json, kafka-failure-one-sample.json.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <event2/buffer.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "broker/broker.h"
#include "pollers/poller_kafka_event.h"
#include "testlib.h"

#define BOOT "b-1.example:9092,b-2.example:9092"
#define ESARN "kafka://b-1.example:9092/orders"
#define FNARN "arn:aws:lambda:eu-west-1:000000000000:function:orders:$LATEST"

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Parses a whole buffer as JSON (NUL escapes allowed) or fails the test. */
static json_t *parse_mem(const char *p, size_t len)
{
    json_error_t err;
    json_t *j = json_loadb(p, len, JSON_ALLOW_NUL, &err);

    if (!j)
        T_FAIL("output is not JSON: %s at %d: %.*s", err.text, err.position,
               (int)(len > 2000 ? 2000 : len), p);
    return j;
}

static json_t *parse_buf(struct evbuffer *b)
{
    return parse_mem((const char *)evbuffer_pullup(b, -1), evbuffer_get_length(b));
}

/* The buffer's text, NUL-terminated (caller frees). */
static char *buf_text(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);

    T_ASSERT(s);
    memcpy(s, evbuffer_pullup(b, -1), n);
    s[n] = '\0';
    return s;
}

static json_t *member(json_t *o, const char *key)
{
    json_t *m = json_object_get(o, key);

    if (!m)
        T_FAIL("no member %s", key);
    return m;
}

static const char *str_of(json_t *o, const char *key, size_t *len)
{
    json_t *s = member(o, key);

    if (!json_is_string(s))
        T_FAIL("member %s is not a string", key);
    if (len)
        *len = json_string_length(s);
    return json_string_value(s);
}

static long long int_of(json_t *o, const char *key)
{
    json_t *i = member(o, key);

    if (!json_is_integer(i))
        T_FAIL("member %s is not an integer", key);
    return json_integer_value(i);
}

static void expect_bytes(const char *what, const void *got, size_t glen, const void *want,
                         size_t wlen)
{
    const unsigned char *g = got, *w = want;
    size_t i;

    if (glen == wlen && (wlen == 0 || memcmp(got, want, wlen) == 0))
        return;
    fprintf(stderr, "%s: got %zu bytes:", what, glen);
    for (i = 0; i < glen && i < 64; i++)
        fprintf(stderr, " %02x", g[i]);
    fprintf(stderr, "\n%s: want %zu bytes:", what, wlen);
    for (i = 0; i < wlen && i < 64; i++)
        fprintf(stderr, " %02x", w[i]);
    fputc('\n', stderr);
    T_FAIL("%s differs", what);
}

/* Decodes a standard, padded base64 member (strictly) and compares it with want. */
static void expect_b64(json_t *rec, const char *key, const void *want, size_t wlen)
{
    size_t len, dlen;
    const char *s = str_of(rec, key, &len);
    unsigned char *d = malloc(len / 4 * 3 + 3);
    int n;

    T_ASSERT(d);
    T_EQ_INT(len % 4, 0);
    T_EQ_INT(len, (wlen + 2) / 3 * 4);
    n = len ? EVP_DecodeBlock(d, (const unsigned char *)s, (int)len) : 0;
    T_ASSERT(n >= 0);
    dlen = (size_t)n;
    if (len >= 1 && s[len - 1] == '=')
        dlen--;
    if (len >= 2 && s[len - 2] == '=')
        dlen--;
    expect_bytes(key, d, dlen, want, wlen);
    free(d);
}

/* Checks that a header's JSON array holds exactly the signed bytes of want. */
static void expect_java_bytes(json_t *arr, const void *want, size_t wlen)
{
    const unsigned char *w = want;
    size_t i;

    if (!json_is_array(arr))
        T_FAIL("header value is not an array");
    T_EQ_INT(json_array_size(arr), wlen);
    for (i = 0; i < wlen; i++) {
        json_t *v = json_array_get(arr, i);
        long long want_v = w[i] < 0x80 ? w[i] : (long long)w[i] - 256;

        T_ASSERT(json_is_integer(v));
        if (json_integer_value(v) != want_v)
            T_FAIL("header byte %zu: %lld != %lld", i, (long long)json_integer_value(v), want_v);
    }
}

/* A record with the fixed parts filled in; key/value/headers are the caller's. */
static struct pl_kafka_record rec_base(const char *topic, int32_t partition, int64_t offset)
{
    struct pl_kafka_record r;

    memset(&r, 0, sizeof(r));
    r.topic = topic;
    r.partition = partition;
    r.offset = offset;
    r.timestamp_ms = 1545084650987 + offset % 100000; /* no overflow at INT64_MAX */
    r.timestamp_type = PL_KAFKA_TS_CREATE_TIME;
    return r;
}

/* Encodes records r[0..n) as one event, parses it and returns it. raw (if not NULL) gets the
 * text (caller frees). */
static json_t *encode_event(const char *boot, const char *topic, int32_t partition,
                            const struct pl_kafka_record *r, size_t n, char **raw)
{
    struct evbuffer *b = evbuffer_new();
    json_t *ev;
    size_t i;

    T_ASSERT(b);
    T_EQ_INT(pl_kafka_event_begin(b, boot, topic, partition), 0);
    for (i = 0; i < n; i++)
        T_EQ_INT(pl_kafka_append_record(b, &r[i], i == 0), 0);
    T_EQ_INT(pl_kafka_event_end(b), 0);
    if (raw)
        *raw = buf_text(b);
    ev = parse_buf(b);
    evbuffer_free(b);
    T_ASSERT(json_is_object(ev));
    return ev;
}

/* The records array of ev under key "<topic>-<partition>" (the only member of "records"). */
static json_t *records_of(json_t *ev, const char *tp)
{
    json_t *recs = member(ev, "records"), *arr;

    T_ASSERT(json_is_object(recs));
    T_EQ_INT(json_object_size(recs), 1);
    arr = json_object_get(recs, tp);
    if (!json_is_array(arr))
        T_FAIL("records has no array %s", tp);
    return arr;
}

/* Checks every member of a parsed record against r (headers with non-UTF-8 or NUL names are
 * the caller's to check). */
static void expect_record(json_t *j, const struct pl_kafka_record *r, bool check_headers)
{
    size_t i, nmembers = 6 + r->key_present + r->value_present;

    T_ASSERT(json_is_object(j));
    T_EQ_INT(json_object_size(j), nmembers);
    T_EQ_STR(str_of(j, "topic", NULL), r->topic);
    T_EQ_INT(int_of(j, "partition"), r->partition);
    T_EQ_INT(int_of(j, "offset"), r->offset);
    switch (r->timestamp_type) {
    case PL_KAFKA_TS_CREATE_TIME:
        T_EQ_STR(str_of(j, "timestampType", NULL), "CREATE_TIME");
        T_EQ_INT(int_of(j, "timestamp"), r->timestamp_ms);
        break;
    case PL_KAFKA_TS_LOG_APPEND_TIME:
        T_EQ_STR(str_of(j, "timestampType", NULL), "LOG_APPEND_TIME");
        T_EQ_INT(int_of(j, "timestamp"), r->timestamp_ms);
        break;
    default:
        T_EQ_STR(str_of(j, "timestampType", NULL), "NO_TIMESTAMP_TYPE");
        T_EQ_INT(int_of(j, "timestamp"), -1);
        break;
    }
    if (r->key_present)
        expect_b64(j, "key", r->key, r->key_len);
    else
        T_ASSERT(json_object_get(j, "key") == NULL);
    if (r->value_present)
        expect_b64(j, "value", r->value, r->value_len);
    else
        T_ASSERT(json_object_get(j, "value") == NULL);
    T_ASSERT(json_is_array(member(j, "headers")));
    T_EQ_INT(json_array_size(member(j, "headers")), r->nheaders);
    if (!check_headers)
        return;
    for (i = 0; i < r->nheaders; i++) {
        json_t *h = json_array_get(member(j, "headers"), i);
        const struct pl_kafka_header *w = &r->headers[i];
        json_t *v;

        T_ASSERT(json_is_object(h));
        T_EQ_INT(json_object_size(h), 1);
        v = json_object_getn(h, w->name, w->name_len);
        if (!v)
            T_FAIL("header %zu: no name %.*s", i, (int)w->name_len, w->name);
        if (w->present)
            expect_java_bytes(v, w->value, w->value_len);
        else
            T_ASSERT(json_is_null(v));
    }
}

static void write_file(const char *name, struct evbuffer *b)
{
    const char *dir = getenv("SLUICE_TEST_TMP");
    char path[4096];
    FILE *f;

    if (!dir || !*dir)
        dir = "/tmp";
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        T_FAIL("mkdir %s: %s", dir, strerror(errno));
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    if (!f)
        T_FAIL("fopen %s: %s", path, strerror(errno));
    T_EQ_INT(fwrite(evbuffer_pullup(b, -1), 1, evbuffer_get_length(b), f), evbuffer_get_length(b));
    T_EQ_INT(fclose(f), 0);
    fprintf(stderr, "   wrote %s\n", path);
}

#define HDR(n, v)                                                                                  \
    {                                                                                              \
        (n), sizeof(n) - 1, (const uint8_t *)(v), sizeof(v) - 1, true                              \
    }
#define HDR_NULL(n)                                                                                \
    {                                                                                              \
        (n), sizeof(n) - 1, NULL, 0, false                                                         \
    }

/* ---------------------------------------------------------------------------------------- */
/* The event                                                                                */
/* ---------------------------------------------------------------------------------------- */

/* The shape of lambda-spec 2.4, member order included, and every field of each record kind. */
static void test_event_kinds(void)
{
    static const struct pl_kafka_header h0[] = {
        HDR("headerKey", "headerValue"),
        HDR("bin", "\xff\x80\x7f\x00\x01\xfe"),
        HDR("bin", "dup"), /* a repeated name is kept, in order */
        HDR("empty", ""),
        HDR_NULL("nullvalue"),
    };
    uint8_t all[256];
    struct pl_kafka_record r[6];
    json_t *ev, *arr;
    char *raw;
    size_t i;

    for (i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    r[0] = rec_base("mytopic", 0, 15); /* key and value, headers */
    r[0].key = (const uint8_t *)"abc";
    r[0].key_len = 3;
    r[0].key_present = true;
    r[0].value = (const uint8_t *)"Hello, this is a test.";
    r[0].value_len = 22;
    r[0].value_present = true;
    r[0].headers = h0;
    r[0].nheaders = sizeof(h0) / sizeof(h0[0]);
    r[1] = rec_base("mytopic", 0, 16); /* no key */
    r[1].value = (const uint8_t *)"v";
    r[1].value_len = 1;
    r[1].value_present = true;
    r[2] = rec_base("mytopic", 0, 17); /* a tombstone */
    r[2].key = (const uint8_t *)"k";
    r[2].key_len = 1;
    r[2].key_present = true;
    r[3] = rec_base("mytopic", 0, 18); /* empty key and empty value: "" */
    r[3].key = NULL;
    r[3].key_present = true;
    r[3].value = (const uint8_t *)"";
    r[3].value_present = true;
    r[3].timestamp_type = PL_KAFKA_TS_LOG_APPEND_TIME;
    r[4] = rec_base("mytopic", 0, 20); /* binary: every byte value, lengths 256 and 255 */
    r[4].key = all;
    r[4].key_len = 256;
    r[4].key_present = true;
    r[4].value = all + 1;
    r[4].value_len = 255;
    r[4].value_present = true;
    r[5] = rec_base("mytopic", 0, 21); /* no key, tombstone, no timestamp */
    r[5].timestamp_type = PL_KAFKA_TS_NOT_AVAILABLE;
    r[5].timestamp_ms = 12345;

    ev = encode_event(BOOT, "mytopic", 0, r, 6, &raw);
    T_ASSERT(strncmp(raw,
                     "{\"eventSource\":\"SelfManagedKafka\",\"bootstrapServers\":\"" BOOT
                     "\",\"records\":{\"mytopic-0\":[{\"topic\":\"mytopic\",\"partition\":0,"
                     "\"offset\":15,\"timestamp\":1545084651002,\"timestampType\":\"CREATE_TIME\","
                     "\"key\":\"YWJj\",\"value\":\"SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==\",\"headers\":["
                     "{\"headerKey\":[104,101,97,100,101,114,86,97,108,117,101]},"
                     "{\"bin\":[-1,-128,127,0,1,-2]},{\"bin\":[100,117,112]},{\"empty\":[]},"
                     "{\"nullvalue\":null}]},",
                     strlen("{\"eventSource\":\"SelfManagedKafka\",\"bootstrapServers\":\"" BOOT
                            "\",\"records\":{\"mytopic-0\":[{\"topic\":\"mytopic\",\"partition\":"
                            "0,\"offset\":15,\"timestamp\":1545084651002,\"timestampType\":"
                            "\"CREATE_TIME\",\"key\":\"YWJj\",\"value\":\"SGVsbG8sIHRoaXMgaXMgYSB0"
                            "ZXN0Lg==\",\"headers\":[{\"headerKey\":[104,101,97,100,101,114,86,97,"
                            "108,117,101]},{\"bin\":[-1,-128,127,0,1,-2]},{\"bin\":[100,117,112]},"
                            "{\"empty\":[]},{\"nullvalue\":null}]},")) == 0);
    T_ASSERT(strchr(raw, ' ') == NULL && strchr(raw, '\n') == NULL);
    T_ASSERT(strcmp(raw + strlen(raw) - 3, "]}}") == 0);
    T_CONTAINS(raw, "{\"topic\":\"mytopic\",\"partition\":0,\"offset\":16,\"timestamp\":"
                    "1545084651003,\"timestampType\":\"CREATE_TIME\",\"value\":\"dg==\","
                    "\"headers\":[]}");
    T_CONTAINS(raw, "\"offset\":17,\"timestamp\":1545084651004,\"timestampType\":\"CREATE_TIME\","
                    "\"key\":\"aw==\",\"headers\":[]}");
    T_CONTAINS(raw, "\"timestampType\":\"LOG_APPEND_TIME\",\"key\":\"\",\"value\":\"\","
                    "\"headers\":[]}");
    T_CONTAINS(raw, "\"offset\":21,\"timestamp\":-1,\"timestampType\":\"NO_TIMESTAMP_TYPE\","
                    "\"headers\":[]}]}}");

    T_EQ_INT(json_object_size(ev), 3);
    T_EQ_STR(str_of(ev, "eventSource", NULL), "SelfManagedKafka");
    T_EQ_STR(str_of(ev, "bootstrapServers", NULL), BOOT);
    arr = records_of(ev, "mytopic-0");
    T_EQ_INT(json_array_size(arr), 6);
    for (i = 0; i < 6; i++)
        expect_record(json_array_get(arr, i), &r[i], true);
    /* Repeated names: both "bin" headers are there, in order (json_object_getn saw the first). */
    expect_java_bytes(
        json_object_get(json_array_get(member(json_array_get(arr, 0), "headers"), 2), "bin"), "dup",
        3);
    json_decref(ev);
    free(raw);
}

/* An empty batch is still a valid event (the poller never sends one, but the shape holds). */
static void test_event_empty(void)
{
    char *raw;
    json_t *ev = encode_event(BOOT, "t", 7, NULL, 0, &raw);

    T_EQ_STR(raw, "{\"eventSource\":\"SelfManagedKafka\",\"bootstrapServers\":\"" BOOT
                  "\",\"records\":{\"t-7\":[]}}");
    json_decref(ev);
    free(raw);
}

/* Every header value byte 0..255 maps to its Java byte; partition and offset extremes. */
static void test_signed_bytes_and_extremes(void)
{
    uint8_t all[256];
    struct pl_kafka_header h[1];
    struct pl_kafka_record r;
    json_t *ev, *arr, *bytes;
    char *raw;
    size_t i;

    for (i = 0; i < 256; i++)
        all[i] = (uint8_t)(255 - i);
    h[0].name = "all";
    h[0].name_len = 3;
    h[0].value = all;
    h[0].value_len = 256;
    h[0].present = true;
    r = rec_base("t", INT32_MAX, INT64_MAX);
    r.headers = h;
    r.nheaders = 1;
    r.timestamp_ms = INT64_MAX;
    ev = encode_event(BOOT, "t", INT32_MAX, &r, 1, &raw);
    T_CONTAINS(raw, "\"records\":{\"t-2147483647\":[{\"topic\":\"t\",\"partition\":2147483647,"
                    "\"offset\":9223372036854775807,\"timestamp\":9223372036854775807,");
    T_CONTAINS(raw, "{\"all\":[-1,-2,-3,");
    T_CONTAINS(raw, ",-127,-128,127,126,");
    T_CONTAINS(raw, ",2,1,0]}");
    arr = records_of(ev, "t-2147483647");
    expect_record(json_array_get(arr, 0), &r, true);
    bytes = json_object_get(json_array_get(member(json_array_get(arr, 0), "headers"), 0), "all");
    for (i = 0; i < 256; i++) {
        long long v = json_integer_value(json_array_get(bytes, i));

        T_ASSERT(v >= -128 && v <= 127);
        T_EQ_INT((uint8_t)(int8_t)v, all[i]);
    }
    json_decref(ev);
    free(raw);

    r = rec_base("t", -1, -1); /* whatever librdkafka hands over is written as it is */
    ev = encode_event(BOOT, "t", -1, &r, 1, &raw);
    T_CONTAINS(raw, "{\"t--1\":[{\"topic\":\"t\",\"partition\":-1,\"offset\":-1,");
    json_decref(ev);
    free(raw);
}

/* Header names, topic and bootstrap servers with every ASCII control, quotes, backslashes and
 * ill-formed UTF-8: always valid JSON, names decoded as Python's errors="replace" does. */
static void test_hostile_names(void)
{
    static const struct {
        const char *in;
        size_t inlen;
        const char *want;
        size_t wantlen;
    } v[] = {
        {"\"quoted\"", 8, "\"quoted\"", 8},
        {"back\\slash", 10, "back\\slash", 10},
        {"\x01\x02\x1f\x7f\b\f\n\r\t/", 10, "\x01\x02\x1f\x7f\b\f\n\r\t/", 10},
        {"caf\xc3\xa9", 5, "caf\xc3\xa9", 5},
        {"\xe2\x80\xa8\xf0\x9f\x98\x80", 7, "\xe2\x80\xa8\xf0\x9f\x98\x80", 7},
        /* From Python: b"caf\xc3\xa9 \xed\xa0\x80 \xf0\x9f\x98".decode("utf-8","replace") */
        {"caf\xc3\xa9 \xed\xa0\x80 \xf0\x9f\x98", 13,
         "caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd", 19},
        {"\xff\xfe", 2, "\xef\xbf\xbd\xef\xbf\xbd", 6},
        {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd", 6},
        {"\xe0\x80\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 9},
        {"\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 12},
        {"a\xe2\x82", 3, "a\xef\xbf\xbd", 4},
        {"", 0, "", 0},
    };
    enum { NV = sizeof(v) / sizeof(v[0]) };
    struct pl_kafka_header h[NV];
    struct pl_kafka_record r;
    json_t *ev, *hs;
    char *raw;
    size_t i;

    for (i = 0; i < NV; i++) {
        h[i].name = v[i].in;
        h[i].name_len = v[i].inlen;
        h[i].value = (const uint8_t *)"\x80";
        h[i].value_len = 1;
        h[i].present = true;
    }
    r = rec_base("to\"p\\ic\x01\xff", 3, 1);
    r.headers = h;
    r.nheaders = NV;
    ev = encode_event("\"host\"\n:9092\xc3", "to\"p\\ic\x01\xff", 3, &r, 1, &raw);
    T_EQ_STR(str_of(ev, "bootstrapServers", NULL), "\"host\"\n:9092\xef\xbf\xbd");
    T_CONTAINS(raw, "\"bootstrapServers\":\"\\\"host\\\"\\n:9092\xef\xbf\xbd\"");
    T_CONTAINS(raw, "{\"\\u0001\\u0002\\u001f\x7f\\b\\f\\n\\r\\t/\":[-128]}");
    hs = member(json_array_get(records_of(ev, "to\"p\\ic\x01\xef\xbf\xbd-3"), 0), "headers");
    T_EQ_STR(
        str_of(json_array_get(records_of(ev, "to\"p\\ic\x01\xef\xbf\xbd-3"), 0), "topic", NULL),
        "to\"p\\ic\x01\xef\xbf\xbd");
    T_EQ_INT(json_array_size(hs), NV);
    for (i = 0; i < NV; i++) {
        json_t *o = json_array_get(hs, i);
        const char *k;
        json_t *val;

        T_EQ_INT(json_object_size(o), 1);
        json_object_foreach(o, k, val)
        {
            expect_bytes("header name", k, strlen(k), v[i].want, v[i].wantlen);
            expect_java_bytes(val, "\x80", 1);
        }
    }
    json_decref(ev);
    free(raw);

    /* NUL in a name: valid JSON ("\u0000"), which jansson refuses in object keys, so the raw
     * text is checked instead. */
    h[0].name = "nul\0name";
    h[0].name_len = 8;
    r.nheaders = 1;
    r.topic = "t";
    {
        struct evbuffer *b = evbuffer_new();

        T_ASSERT(b);
        T_EQ_INT(pl_kafka_append_record(b, &r, true), 0);
        raw = buf_text(b);
        T_CONTAINS(raw, "\"headers\":[{\"nul\\u0000name\":[-128]}]}");
        free(raw);
        evbuffer_free(b);
    }
}

/* Random names of hostile bytes and random binary values: always JSON that jansson (a strict
 * UTF-8 validator) accepts, with values intact. */
static void test_random_records(void)
{
    static const unsigned char pick[] = {0x01, 0x1f, '"',  '\\', '/',  'a',  0x7f, 0x80,
                                         0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0,
                                         0xf4, 0xf5, 0xff, 0xa0, 0x9f, 0x90, 0x8f};
    uint64_t seed = 0x4b61666b61;
    size_t round, i, k;

    for (round = 0; round < 2000; round++) {
        char names[6][10];
        uint8_t vals[6][40], key[40], val[70];
        struct pl_kafka_header h[6];
        struct pl_kafka_record r = rec_base("topic.a_b-c", (int32_t)(round % 5), (int64_t)round);
        json_t *ev, *j;
        size_t nh = rnd(&seed) % 7;

        for (i = 0; i < nh; i++) {
            h[i].name_len = rnd(&seed) % 10;
            for (k = 0; k < h[i].name_len; k++)
                names[i][k] = (char)pick[rnd(&seed) % sizeof(pick)];
            h[i].name = names[i];
            h[i].value_len = rnd(&seed) % 40;
            for (k = 0; k < h[i].value_len; k++)
                vals[i][k] = (uint8_t)rnd(&seed);
            h[i].value = vals[i];
            h[i].present = rnd(&seed) % 8 != 0;
        }
        r.headers = h;
        r.nheaders = nh;
        r.key_len = rnd(&seed) % 40;
        for (k = 0; k < r.key_len; k++)
            key[k] = (uint8_t)rnd(&seed);
        r.key = key;
        r.key_present = rnd(&seed) % 4 != 0;
        r.value_len = rnd(&seed) % 70;
        for (k = 0; k < r.value_len; k++)
            val[k] = (uint8_t)rnd(&seed);
        r.value = val;
        r.value_present = rnd(&seed) % 4 != 0;
        ev = encode_event(BOOT, r.topic, r.partition, &r, 1, NULL);
        {
            char tp[32];

            snprintf(tp, sizeof(tp), "topic.a_b-c-%d", (int)r.partition);
            j = json_array_get(records_of(ev, tp), 0);
        }
        expect_record(j, &r, false); /* names may be repaired: values checked below */
        for (i = 0; i < nh; i++) {
            json_t *o = json_array_get(member(j, "headers"), i), *val_j;
            const char *kname;

            T_EQ_INT(json_object_size(o), 1);
            json_object_foreach(o, kname, val_j)
            {
                if (h[i].present)
                    expect_java_bytes(val_j, h[i].value, h[i].value_len);
                else
                    T_ASSERT(json_is_null(val_j));
            }
        }
        json_decref(ev);
    }
}

/* A value of 3 MB + 1 byte spans many evbuffer chains; base64 stays whole and exact. */
static void test_large_value(void)
{
    size_t n = 3 * 1024 * 1024 + 1, i;
    uint8_t *v = malloc(n);
    uint64_t seed = 7;
    struct pl_kafka_record r = rec_base("big", 0, 0);
    json_t *ev;

    T_ASSERT(v);
    for (i = 0; i < n; i++)
        v[i] = (uint8_t)rnd(&seed);
    r.value = v;
    r.value_len = n;
    r.value_present = true;
    r.key = v;
    r.key_len = 2;
    r.key_present = true;
    ev = encode_event(BOOT, "big", 0, &r, 1, NULL);
    expect_record(json_array_get(records_of(ev, "big-0"), 0), &r, true);
    json_decref(ev);
    free(v);
}

static void test_event_invalid_args(void)
{
    struct evbuffer *b = evbuffer_new();
    struct pl_kafka_header h = {"n", 1, NULL, 3, true};
    struct pl_kafka_record r = rec_base("t", 0, 0);

    T_ASSERT(b);
    T_EQ_INT(pl_kafka_event_begin(NULL, BOOT, "t", 0), SL_EINVAL);
    T_EQ_INT(pl_kafka_event_begin(b, NULL, "t", 0), SL_EINVAL);
    T_EQ_INT(pl_kafka_event_begin(b, BOOT, NULL, 0), SL_EINVAL);
    T_EQ_INT(pl_kafka_event_end(NULL), SL_EINVAL);
    T_EQ_INT(pl_kafka_append_record(NULL, &r, true), SL_EINVAL);
    T_EQ_INT(pl_kafka_append_record(b, NULL, true), SL_EINVAL);
    r.topic = NULL;
    T_EQ_INT(pl_kafka_append_record(b, &r, true), SL_EINVAL);
    r.topic = "t";
    r.key_present = true;
    r.key_len = 1;
    T_EQ_INT(pl_kafka_append_record(b, &r, true), SL_EINVAL);
    r.key_present = false; /* not present: the view is not looked at */
    T_EQ_INT(pl_kafka_append_record(b, &r, true), 0);
    evbuffer_drain(b, evbuffer_get_length(b));
    r.value_present = true;
    r.value_len = 1;
    T_EQ_INT(pl_kafka_append_record(b, &r, true), SL_EINVAL);
    r.value_present = false;
    r.nheaders = 1;
    T_EQ_INT(pl_kafka_append_record(b, &r, true), SL_EINVAL); /* headers NULL */
    r.headers = &h;
    T_EQ_INT(pl_kafka_append_record(b, &r, true), SL_EINVAL); /* value NULL, 3 bytes */
    h.present = false;
    T_EQ_INT(pl_kafka_append_record(b, &r, true), 0);
    T_EQ_INT(evbuffer_get_length(b), strlen("{\"topic\":\"t\",\"partition\":0,\"offset\":0,"
                                            "\"timestamp\":1545084650987,\"timestampType\":"
                                            "\"CREATE_TIME\",\"headers\":[{\"n\":null}]}"));
    evbuffer_free(b);
}

/* A 10,000-record batch built in one buffer, never pulled up in between: records stay whole
 * and in order across the evbuffer's chains. */
static void test_batch_10000(void)
{
    enum { N = 10000 };
    struct pl_kafka_record *r = malloc(N * sizeof(*r));
    struct pl_kafka_header h[2] = {HDR("trace", "\x00\xff\x10"), HDR_NULL("n")};
    char(*vals)[24] = malloc(N * sizeof(*vals));
    struct evbuffer *b = evbuffer_new();
    json_t *ev, *arr;
    struct timespec t0, t1;
    size_t i;

    T_ASSERT(r && vals && b);
    for (i = 0; i < N; i++) {
        r[i] = rec_base("orders", 3, 1000 + 2 * (int64_t)i);
        snprintf(vals[i], sizeof(vals[i]), "value %zu", i);
        r[i].value = (const uint8_t *)vals[i];
        r[i].value_len = strlen(vals[i]);
        r[i].value_present = true;
        r[i].key = (const uint8_t *)vals[i];
        r[i].key_len = i % 5;
        r[i].key_present = i % 3 != 0;
        r[i].headers = h;
        r[i].nheaders = i % 3;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    T_EQ_INT(pl_kafka_event_begin(b, BOOT, "orders", 3), 0);
    for (i = 0; i < N; i++)
        T_EQ_INT(pl_kafka_append_record(b, &r[i], i == 0), 0);
    T_EQ_INT(pl_kafka_event_end(b), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "   10000 records, %zu bytes: %.2f ms\n", evbuffer_get_length(b),
            (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    ev = parse_buf(b);
    arr = records_of(ev, "orders-3");
    T_EQ_INT(json_array_size(arr), N);
    for (i = 0; i < N; i++)
        expect_record(json_array_get(arr, i), &r[i], true);
    json_decref(ev);
    evbuffer_free(b);
    free(vals);
    free(r);
}

/* ---------------------------------------------------------------------------------------- */
/* Partial batch responses                                                                  */
/* ---------------------------------------------------------------------------------------- */

static const int64_t offs5[] = {100, 101, 105, 106, 200};

static int parse5(const char *topic, int32_t partition, const char *body, size_t *lowest)
{
    return pl_kafka_parse_batch_response((const uint8_t *)body, strlen(body), topic, partition,
                                         offs5, 5, lowest);
}

static void test_response_success(void)
{
    static const char *ok[] = {
        "",
        " \n\t\r",
        "null",
        " null ",
        "{}",
        "{\"batchItemFailures\":[]}",
        "{\"batchItemFailures\":null}",
        "{\"statusCode\":200,\"body\":\"done\"}",
        "{\"BatchItemFailures\":[{\"itemIdentifier\":\"nope\"}]}", /* names are case-sensitive */
    };
    size_t i, lowest;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        lowest = 99;
        if (parse5("my-topic", 0, ok[i], &lowest) != 0)
            T_FAIL("'%s' should be a success", ok[i]);
        T_EQ_INT(lowest, 5);
    }
    lowest = 99;
    T_EQ_INT(pl_kafka_parse_batch_response(NULL, 0, "t", 0, offs5, 5, &lowest), 0);
    T_EQ_INT(lowest, 5);
    T_EQ_INT(pl_kafka_parse_batch_response((const uint8_t *)"{}", 2, "t", 0, NULL, 0, &lowest), 0);
    T_EQ_INT(lowest, 0);
}

#define ITEM(tp, off) "{\"itemIdentifier\":{\"topic-partition\":\"" tp "\",\"offset\":" off "}}"

static void test_response_failures(void)
{
    static const struct {
        const char *body;
        size_t lowest;
    } v[] = {
        {"{\"batchItemFailures\":[" ITEM("my-topic-0", "105") "]}", 2},
        {"{\"batchItemFailures\":[" ITEM("my-topic-0", "\"105\"") "]}", 2},
        {"{\"batchItemFailures\":[" ITEM("my-topic-0", "\"0000105\"") "]}", 2},
        {"{\"batchItemFailures\":[" ITEM("my-topic-0", "100") "]}", 0},
        {"{\"batchItemFailures\":[" ITEM("my-topic-0", "200") "]}", 4},
        /* the smallest wins whatever the order; duplicates are fine */
        {"{\"batchItemFailures\":[" ITEM("my-topic-0", "200") "," ITEM(
             "my-topic-0", "\"106\"") "," ITEM("my-topic-0", "101") "," ITEM("my-topic-0",
                                                                             "200") "]}",
         1},
        /* other keys of an item and of an identifier are ignored */
        {"{\"batchItemFailures\":[{\"x\":1,\"itemIdentifier\":{\"offset\":106,\"partition\":0,"
         "\"topic-partition\":\"my-topic-0\"}}],\"other\":[]}",
         3},
        /* escapes are decoded before the comparison */
        {"{\"batchItemFailures\":[" ITEM("my-topic-\\u0030", "\"\\u0031\\u00305\"") "]}", 2},
    };
    size_t i, lowest;

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        lowest = 99;
        if (parse5("my-topic", 0, v[i].body, &lowest) != 0)
            T_FAIL("'%s' should parse", v[i].body);
        if (lowest != v[i].lowest)
            T_FAIL("'%s': lowest %zu, want %zu", v[i].body, lowest, v[i].lowest);
    }
}

static void test_response_invalid(void)
{
    static const char *bad[] = {
        "not json",
        "{",
        "{} x",
        "[]",
        "\"ok\"",
        "42",
        "true",
        "{\"batchItemFailures\":{}}",
        "{\"batchItemFailures\":\"my-topic-0\"}",
        "{\"batchItemFailures\":0}",
        "{\"batchItemFailures\":[null]}",
        "{\"batchItemFailures\":[{}]}",
        "{\"batchItemFailures\":[\"my-topic-0\"]}",
        "{\"batchItemFailures\":[{\"itemIdentifier\":null}]}",
        "{\"batchItemFailures\":[{\"itemIdentifier\":\"\"}]}",
        "{\"batchItemFailures\":[{\"itemIdentifier\":\"my-topic-0:105\"}]}",
        "{\"batchItemFailures\":[{\"itemIdentifier\":105}]}",
        "{\"batchItemFailures\":[{\"itemIdentifier\":[\"my-topic-0\",105]}]}",
        "{\"batchItemFailures\":[{\"itemIdentifier\":{}}]}",
        "{\"batchItemFailures\":[{\"ItemIdentifier\":{\"topic-partition\":\"my-topic-0\","
        "\"offset\":105}}]}",
        "{\"batchItemFailures\":[{\"itemIdentifier\":{\"topic-partition\":\"my-topic-0\"}}]}",
        "{\"batchItemFailures\":[{\"itemIdentifier\":{\"offset\":105}}]}",
        "{\"batchItemFailures\":[{\"itemIdentifier\":{\"topicPartition\":\"my-topic-0\","
        "\"offset\":105}}]}",
        /* wrong topic-partition */
        "{\"batchItemFailures\":[" ITEM("my-topic-1", "105") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic", "105") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-00", "105") "]}",
        "{\"batchItemFailures\":[" ITEM("My-topic-0", "105") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0 ", "105") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0\\u0000", "105") "]}",
        "{\"batchItemFailures\":[" ITEM("", "105") "]}",
        "{\"batchItemFailures\":[{\"itemIdentifier\":{\"topic-partition\":null,\"offset\":105}}]}",
        "{\"batchItemFailures\":[{\"itemIdentifier\":{\"topic-partition\":0,\"offset\":105}}]}",
        /* unknown or malformed offsets */
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "104") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "-105") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "105.0") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "1.05e2") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "null") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "true") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "[105]") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "\"\"") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "\"+105\"") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "\"-105\"") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "\" 105\"") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "\"105 \"") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "\"0x69\"") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "\"105.0\"") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "\"105\\u0000\"") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "\"9223372036854775808\"") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "\"00000000000000000105\"") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "99999999999999999999") "]}",
        /* one bad item among good ones fails the whole batch */
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "100") "," ITEM("my-topic-0", "102") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "100") "," ITEM("other-0", "101") "]}",
        "{\"batchItemFailures\":[" ITEM("my-topic-0", "\"\xff\"") "]}",
    };
    size_t i, lowest;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lowest = 99;
        if (parse5("my-topic", 0, bad[i], &lowest) != SL_EPROTO)
            T_FAIL("'%s' should be SL_EPROTO", bad[i]);
        T_EQ_INT(lowest, 0); /* the whole batch failed */
    }
    /* An empty batch: nothing can be named. */
    lowest = 99;
    T_EQ_INT(pl_kafka_parse_batch_response(
                 (const uint8_t *)"{\"batchItemFailures\":[" ITEM("t-0", "1") "]}",
                 strlen("{\"batchItemFailures\":[" ITEM("t-0", "1") "]}"), "t", 0, NULL, 0,
                 &lowest),
             SL_EPROTO);
    T_EQ_INT(lowest, 0);
}

static void test_response_caller_errors(void)
{
    static const int64_t unsorted[] = {1, 3, 2}, dup[] = {1, 1};
    size_t lowest = 99;

    T_EQ_INT(pl_kafka_parse_batch_response((const uint8_t *)"{}", 2, "t", 0, unsorted, 3, &lowest),
             SL_EINVAL);
    T_EQ_INT(lowest, 0);
    T_EQ_INT(pl_kafka_parse_batch_response((const uint8_t *)"{}", 2, "t", 0, dup, 2, &lowest),
             SL_EINVAL);
    T_EQ_INT(pl_kafka_parse_batch_response((const uint8_t *)"{}", 2, NULL, 0, offs5, 5, &lowest),
             SL_EINVAL);
    T_EQ_INT(pl_kafka_parse_batch_response((const uint8_t *)"{}", 2, "t", 0, NULL, 5, &lowest),
             SL_EINVAL);
    T_EQ_INT(pl_kafka_parse_batch_response((const uint8_t *)"{}", 2, "t", 0, offs5, 5, NULL),
             SL_EINVAL);
}

/* Offsets near the int64 limit and a negative partition in the topic-partition string. */
static void test_response_extremes(void)
{
    static const int64_t big[] = {INT64_MAX - 2, INT64_MAX};
    const char *body = "{\"batchItemFailures\":[" ITEM("t--1", "\"9223372036854775807\"") "]}";
    size_t lowest = 99;

    T_EQ_INT(pl_kafka_parse_batch_response((const uint8_t *)body, strlen(body), "t", -1, big, 2,
                                           &lowest),
             0);
    T_EQ_INT(lowest, 1);
    body = "{\"batchItemFailures\":[" ITEM("t--1", "9223372036854775805") "]}";
    T_EQ_INT(pl_kafka_parse_batch_response((const uint8_t *)body, strlen(body), "t", -1, big, 2,
                                           &lowest),
             0);
    T_EQ_INT(lowest, 0);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 10,000 offsets with gaps, every other one reported, in random order, half as strings. */
static void test_response_10000(void)
{
    enum { N = 10000 };
    int64_t *offs = malloc(N * sizeof(*offs));
    size_t *order = malloc(N * sizeof(*order));
    struct evbuffer *b = evbuffer_new();
    uint64_t seed = 99;
    size_t i, j, k, lowest, want = N;
    double t0, dt;

    T_ASSERT(offs && order && b);
    for (i = 0; i < N; i++) {
        offs[i] = 5000000000LL + 3 * (int64_t)i + (int64_t)(i % 2); /* gaps: compaction */
        order[i] = i;
    }
    for (i = N - 1; i > 0; i--) {
        j = rnd(&seed) % (i + 1);
        k = order[i];
        order[i] = order[j];
        order[j] = k;
    }
    evbuffer_add_printf(b, "{\"batchItemFailures\":[");
    for (i = 0, k = 0; i < N; i++) {
        if (order[i] % 2 == 0 || order[i] < 1001)
            continue;
        if (order[i] < want)
            want = order[i];
        if (k > 0)
            evbuffer_add(b, ",", 1);
        if (k++ % 2)
            evbuffer_add_printf(b,
                                "{\"itemIdentifier\":{\"topic-partition\":\"orders-12\","
                                "\"offset\":%" PRId64 "}}",
                                offs[order[i]]);
        else
            evbuffer_add_printf(b,
                                "{\"itemIdentifier\":{\"topic-partition\":\"orders-12\","
                                "\"offset\":\"%" PRId64 "\"}}",
                                offs[order[i]]);
    }
    evbuffer_add_printf(b, "]}");
    T_EQ_INT(want, 1001);

    t0 = now_s();
    T_EQ_INT(pl_kafka_parse_batch_response(evbuffer_pullup(b, -1), evbuffer_get_length(b), "orders",
                                           12, offs, N, &lowest),
             0);
    dt = now_s() - t0;
    T_EQ_INT(lowest, 1001);
    fprintf(stderr, "   10000 offsets, %zu reported: %.2f ms\n", k, dt * 1e3);
    T_ASSERT(dt < 1.0);

    /* The same with one offset in a gap at the very end. */
    evbuffer_drain(b, 2); /* "]}" */
    {
        char *text = buf_text(b);

        evbuffer_drain(b, evbuffer_get_length(b));
        evbuffer_add_printf(b,
                            "%s,{\"itemIdentifier\":{\"topic-partition\":\"orders-12\","
                            "\"offset\":%" PRId64 "}}]}",
                            text, offs[N - 1] - 1);
        free(text);
    }
    T_EQ_INT(pl_kafka_parse_batch_response(evbuffer_pullup(b, -1), evbuffer_get_length(b), "orders",
                                           12, offs, N, &lowest),
             SL_EPROTO);
    T_EQ_INT(lowest, 0);
    evbuffer_free(b);
    free(order);
    free(offs);
}

/* ---------------------------------------------------------------------------------------- */
/* On-failure records                                                                       */
/* ---------------------------------------------------------------------------------------- */

/* Three sample records of orders-2 with a key, a tombstone and a header. */
static const struct pl_kafka_header sample_h[] = {HDR("traceparent", "00-ab\xff"),
                                                  HDR_NULL("tombstone-reason")};

static void sample_records(struct pl_kafka_record r[3])
{
    r[0] = rec_base("orders", 2, 1500);
    r[0].key = (const uint8_t *)"order-42";
    r[0].key_len = 8;
    r[0].key_present = true;
    r[0].value = (const uint8_t *)"{\"order\":42,\"note\":\"caf\xc3\xa9\"}";
    r[0].value_len = strlen((const char *)r[0].value);
    r[0].value_present = true;
    r[0].headers = sample_h;
    r[0].nheaders = 1;
    r[0].timestamp_ms = 1582934400123; /* 2020-02-29T00:00:00.123Z */
    r[1] = rec_base("orders", 2, 1501);
    r[1].key = (const uint8_t *)"\x00\xff";
    r[1].key_len = 2;
    r[1].key_present = true;
    r[1].headers = sample_h;
    r[1].nheaders = 2;
    r[1].timestamp_type = PL_KAFKA_TS_LOG_APPEND_TIME;
    r[1].timestamp_ms = 1749116692330;
    r[2] = rec_base("orders", 2, 1503);
    r[2].value = (const uint8_t *)"\x01\x02\x03";
    r[2].value_len = 3;
    r[2].value_present = true;
    r[2].timestamp_ms = 1749116692999; /* 2025-06-05T09:44:52.999Z */
}

static struct pl_kafka_failure sample_failure(const struct pl_kafka_record *r, size_t n)
{
    struct pl_kafka_failure f;

    memset(&f, 0, sizeof(f));
    f.request_id = "c9b8fa9f-5a7f-4a8e-9a4c-1d2e3f4a5b6c";
    f.function_arn = FNARN;
    f.condition = "RetryAttemptsExhausted";
    f.approximate_invoke_count = 4;
    f.has_response = true;
    f.status_code = 200;
    f.executed_version = "$LATEST";
    f.function_error = "Unhandled";
    f.now_ms = 1573691886021; /* 2019-11-14T00:38:06.021Z */
    f.event_source_arn = ESARN;
    f.bootstrap_servers = BOOT;
    f.records = r;
    f.n = n;
    return f;
}

static void expect_contexts(json_t *rec, const struct pl_kafka_failure *f)
{
    json_t *rq = member(rec, "requestContext"), *rs = member(rec, "responseContext");

    T_EQ_INT(json_object_size(rq), 4);
    if (f->request_id)
        T_EQ_STR(str_of(rq, "requestId", NULL), f->request_id);
    else
        T_ASSERT(json_is_null(member(rq, "requestId")));
    T_EQ_STR(str_of(rq, "functionArn", NULL), f->function_arn);
    T_EQ_STR(str_of(rq, "condition", NULL), f->condition);
    T_EQ_INT(int_of(rq, "approximateInvokeCount"), f->approximate_invoke_count);
    if (!f->has_response) {
        T_ASSERT(json_is_null(rs));
    } else {
        T_EQ_INT(json_object_size(rs), f->function_error ? 3 : 2);
        T_EQ_INT(int_of(rs, "statusCode"), f->status_code);
        T_EQ_STR(str_of(rs, "executedVersion", NULL), f->executed_version);
        if (f->function_error)
            T_EQ_STR(str_of(rs, "functionError", NULL), f->function_error);
    }
    T_EQ_STR(str_of(rec, "version", NULL), "1.0");
}

/* Encodes a failure record (i == SIZE_MAX: the batch variant) and parses it back. */
static json_t *encode_failure(const struct pl_kafka_failure *f, size_t i, char **raw)
{
    struct evbuffer *b = evbuffer_new();
    json_t *j;

    T_ASSERT(b);
    if (i == SIZE_MAX)
        T_EQ_INT(pl_kafka_failure_record(b, f), 0);
    else
        T_EQ_INT(pl_kafka_failure_record_one(b, f, i), 0);
    if (raw)
        *raw = buf_text(b);
    j = parse_buf(b);
    evbuffer_free(b);
    return j;
}

/* The length of the event text for records r[0..n). */
static size_t event_len(const struct pl_kafka_record *r, size_t n)
{
    char *raw;
    json_t *ev = encode_event(BOOT, r[0].topic, r[0].partition, r, n, &raw);
    size_t len = strlen(raw);

    json_decref(ev);
    free(raw);
    return len;
}

static void test_failure_batch(void)
{
    struct pl_kafka_record r[3];
    struct pl_kafka_failure f;
    json_t *rec, *bi, *ri, *tp, *want;
    char *raw;

    sample_records(r);
    f = sample_failure(r, 3);
    rec = encode_failure(&f, SIZE_MAX, &raw);
    T_ASSERT(strncmp(raw, "{\"requestContext\":{\"requestId\":\"c9b8fa9f-", 41) == 0);
    T_CONTAINS(raw, "\"approximateInvokeCount\":4},\"responseContext\":{\"statusCode\":200,"
                    "\"executedVersion\":\"$LATEST\",\"functionError\":\"Unhandled\"},"
                    "\"version\":\"1.0\",\"timestamp\":\"2019-11-14T00:38:06.021Z\","
                    "\"KafkaBatchInfo\":{\"batchSize\":3,\"eventSourceArn\":\"" ESARN "\","
                    "\"bootstrapServers\":\"" BOOT "\",\"payloadSize\":");
    T_CONTAINS(raw, ",\"recordsInfo\":{\"orders-2\":{\"firstRecordOffset\":\"1500\","
                    "\"lastRecordOffset\":\"1503\",\"firstRecordTimestamp\":"
                    "\"2020-02-29T00:00:00.123Z\",\"lastRecordTimestamp\":"
                    "\"2025-06-05T09:44:52.999Z\"}}},\"payload\":{\"eventSource\":"
                    "\"SelfManagedKafka\",");
    T_EQ_INT(json_object_size(rec), 6);
    expect_contexts(rec, &f);
    T_EQ_STR(str_of(rec, "timestamp", NULL), "2019-11-14T00:38:06.021Z");
    bi = member(rec, "KafkaBatchInfo");
    T_EQ_INT(json_object_size(bi), 5);
    T_EQ_INT(int_of(bi, "batchSize"), 3);
    T_EQ_STR(str_of(bi, "eventSourceArn", NULL), ESARN);
    T_EQ_STR(str_of(bi, "bootstrapServers", NULL), BOOT);
    T_EQ_INT(int_of(bi, "payloadSize"), event_len(r, 3));
    ri = member(bi, "recordsInfo");
    T_EQ_INT(json_object_size(ri), 1);
    tp = member(ri, "orders-2");
    T_EQ_INT(json_object_size(tp), 4);
    T_EQ_STR(str_of(tp, "firstRecordOffset", NULL), "1500");
    T_EQ_STR(str_of(tp, "lastRecordOffset", NULL), "1503");
    T_EQ_STR(str_of(tp, "firstRecordTimestamp", NULL), "2020-02-29T00:00:00.123Z");
    T_EQ_STR(str_of(tp, "lastRecordTimestamp", NULL), "2025-06-05T09:44:52.999Z");
    /* The payload is the event of exactly these records. */
    want = encode_event(BOOT, "orders", 2, r, 3, NULL);
    T_ASSERT(json_equal(member(rec, "payload"), want));
    json_decref(want);
    json_decref(rec);
    free(raw);
}

/* The batch's event bytes passed in are embedded verbatim (not re-encoded), and their length
 * is the payloadSize. */
static void test_failure_payload_verbatim(void)
{
    struct pl_kafka_record r[3];
    struct pl_kafka_failure f;
    const char *ev = "{\"eventSource\":\"SelfManagedKafka\",\"bootstrapServers\":\"x\","
                     "\"records\":{\"orders-2\":[]} , \"marker\" : 1}";
    json_t *rec;
    char *raw;

    sample_records(r);
    f = sample_failure(r, 3);
    f.payload = (const uint8_t *)ev;
    f.payload_len = strlen(ev);
    rec = encode_failure(&f, SIZE_MAX, &raw);
    T_CONTAINS(raw, ev);
    T_ASSERT(strncmp(raw + strlen(raw) - strlen(ev) - 1, ev, strlen(ev)) == 0 &&
             raw[strlen(raw) - 1] == '}');
    T_EQ_INT(int_of(member(rec, "KafkaBatchInfo"), "payloadSize"), strlen(ev));
    T_EQ_INT(int_of(member(rec, "payload"), "marker"), 1);
    json_decref(rec);
    free(raw);
}

/* No response (MaximumPayloadSizeExceeded), no request id, no function error, and records
 * without a usable timestamp. */
static void test_failure_nulls(void)
{
    struct pl_kafka_record r[3];
    struct pl_kafka_failure f;
    json_t *rec, *tp;
    char *raw;

    sample_records(r);
    r[0].timestamp_type = PL_KAFKA_TS_NOT_AVAILABLE;
    r[0].timestamp_ms = -1;
    r[2].timestamp_ms = 253402300800000; /* year 10000 */
    f = sample_failure(r, 3);
    f.request_id = NULL;
    f.has_response = false;
    f.condition = "MaximumPayloadSizeExceeded";
    f.approximate_invoke_count = 0;
    rec = encode_failure(&f, SIZE_MAX, &raw);
    T_CONTAINS(raw, "{\"requestContext\":{\"requestId\":null,");
    T_CONTAINS(raw, "\"approximateInvokeCount\":0},\"responseContext\":null,\"version\"");
    expect_contexts(rec, &f);
    tp = member(member(member(rec, "KafkaBatchInfo"), "recordsInfo"), "orders-2");
    T_ASSERT(json_is_null(member(tp, "firstRecordTimestamp")));
    T_ASSERT(json_is_null(member(tp, "lastRecordTimestamp")));
    json_decref(rec);
    free(raw);

    sample_records(r);
    f = sample_failure(r, 3);
    f.function_error = NULL; /* a partial batch response: no function error */
    rec = encode_failure(&f, SIZE_MAX, NULL);
    expect_contexts(rec, &f);
    T_ASSERT(json_object_get(member(rec, "responseContext"), "functionError") == NULL);
    json_decref(rec);
}

static void test_failure_one(void)
{
    struct pl_kafka_record r[3];
    struct pl_kafka_failure f;
    size_t i;

    sample_records(r);
    f = sample_failure(r, 3);
    f.condition = "RetriesExhausted";
    f.payload = (const uint8_t *)"ignored"; /* the one-record variant encodes its own */
    f.payload_len = 7;
    for (i = 0; i < 3; i++) {
        json_t *rec, *bi, *ri, *want;
        char *raw, off[24];

        rec = encode_failure(&f, i, &raw);
        T_EQ_INT(json_object_size(rec), 6);
        expect_contexts(rec, &f);
        T_EQ_STR(str_of(rec, "timestamp", NULL), "2019-11-14T00:38:06.021Z");
        bi = member(rec, "KafkaBatchInfo");
        T_EQ_INT(json_object_size(bi), 5);
        T_EQ_INT(int_of(bi, "batchSize"), 1);
        T_EQ_STR(str_of(bi, "eventSourceArn", NULL), ESARN);
        T_EQ_STR(str_of(bi, "bootstrapServers", NULL), BOOT);
        T_EQ_INT(int_of(bi, "payloadSize"), event_len(&r[i], 1));
        ri = member(bi, "recordInfo");
        T_EQ_INT(json_object_size(ri), 2);
        snprintf(off, sizeof(off), "%" PRId64, r[i].offset);
        T_EQ_STR(str_of(ri, "offset", NULL), off);
        T_EQ_STR(str_of(ri, "timestamp", NULL), i == 0   ? "2020-02-29T00:00:00.123Z"
                                                : i == 1 ? "2025-06-05T09:44:52.330Z"
                                                         : "2025-06-05T09:44:52.999Z");
        want = encode_event(BOOT, "orders", 2, &r[i], 1, NULL);
        T_ASSERT(json_equal(member(rec, "payload"), want));
        expect_record(json_array_get(records_of(member(rec, "payload"), "orders-2"), 0), &r[i],
                      true);
        T_CONTAINS(raw, ",\"recordInfo\":{\"offset\":\"");
        json_decref(want);
        json_decref(rec);
        free(raw);
    }
}

/* Invalid input: SL_EINVAL, and out untouched. */
static void test_failure_invalid(void)
{
    struct pl_kafka_record r[3];
    struct pl_kafka_failure f;
    struct evbuffer *b = evbuffer_new();

    T_ASSERT(b);
    evbuffer_add(b, "keep", 4);
    sample_records(r);
    f = sample_failure(r, 3);
    T_EQ_INT(pl_kafka_failure_record(NULL, &f), SL_EINVAL);
    T_EQ_INT(pl_kafka_failure_record(b, NULL), SL_EINVAL);
    T_EQ_INT(pl_kafka_failure_record_one(b, &f, 3), SL_EINVAL);
    r[2].partition = 3; /* two topic-partitions */
    T_EQ_INT(pl_kafka_failure_record(b, &f), SL_EINVAL);
    T_EQ_INT(pl_kafka_failure_record_one(b, &f, 0), SL_EINVAL);
    sample_records(r);
    r[1].topic = "orders2";
    T_EQ_INT(pl_kafka_failure_record(b, &f), SL_EINVAL);
    sample_records(r);
    r[1].value_present = true;
    r[1].value_len = 9; /* NULL view with bytes */
    T_EQ_INT(pl_kafka_failure_record(b, &f), SL_EINVAL);
    sample_records(r);
    f.n = 0;
    T_EQ_INT(pl_kafka_failure_record(b, &f), SL_EINVAL);
    f = sample_failure(r, 3);
    f.function_arn = NULL;
    T_EQ_INT(pl_kafka_failure_record(b, &f), SL_EINVAL);
    f = sample_failure(r, 3);
    f.executed_version = NULL;
    T_EQ_INT(pl_kafka_failure_record(b, &f), SL_EINVAL);
    f.has_response = false; /* then it is not needed */
    T_EQ_INT(pl_kafka_failure_record(b, &f), 0);
    evbuffer_drain(b, evbuffer_get_length(b));
    evbuffer_add(b, "keep", 4);
    f = sample_failure(r, 3);
    f.now_ms = -1;
    T_EQ_INT(pl_kafka_failure_record(b, &f), SL_EINVAL);
    f = sample_failure(r, 3);
    f.payload = (const uint8_t *)"";
    f.payload_len = 0;
    T_EQ_INT(pl_kafka_failure_record(b, &f), SL_EINVAL);
    T_EQ_INT(evbuffer_get_length(b), 4);
    evbuffer_free(b);
}

/* The ISO dates against gmtime_r over the whole range, leap days and the limits included. */
static void test_iso_dates(void)
{
    static const struct {
        int64_t ms;
        const char *iso;
    } v[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {951782400000, "2000-02-29T00:00:00.000Z"},
        {4102444799999, "2099-12-31T23:59:59.999Z"},
        {253402300799999, "9999-12-31T23:59:59.999Z"},
    };
    struct pl_kafka_record r[1];
    struct pl_kafka_failure f;
    uint64_t seed = 2024;
    size_t i;

    r[0] = rec_base("t", 0, 0);
    f = sample_failure(r, 1);
    for (i = 0; i < sizeof(v) / sizeof(v[0]) + 3000; i++) {
        char want[80];
        json_t *rec;

        if (i < sizeof(v) / sizeof(v[0])) {
            r[0].timestamp_ms = v[i].ms;
            snprintf(want, sizeof(want), "%s", v[i].iso);
        } else {
            time_t t;
            struct tm tm;

            r[0].timestamp_ms = (int64_t)(rnd(&seed) % 253402300800000ULL);
            t = (time_t)(r[0].timestamp_ms / 1000);
            T_ASSERT(gmtime_r(&t, &tm));
            snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(r[0].timestamp_ms % 1000));
        }
        f.now_ms = r[0].timestamp_ms;
        rec = encode_failure(&f, 0, NULL);
        T_EQ_STR(str_of(member(member(rec, "KafkaBatchInfo"), "recordInfo"), "timestamp", NULL),
                 want);
        T_EQ_STR(str_of(rec, "timestamp", NULL), want);
        json_decref(rec);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Sample files for the schema checks                                                       */
/* ---------------------------------------------------------------------------------------- */

static void test_sample_files(void)
{
    struct pl_kafka_record r[3];
    struct pl_kafka_failure f;
    struct evbuffer *ev = evbuffer_new(), *fr = evbuffer_new(), *one = evbuffer_new();
    size_t i;
    json_t *j;

    T_ASSERT(ev && fr && one);
    sample_records(r);
    T_EQ_INT(pl_kafka_event_begin(ev, BOOT, "orders", 2), 0);
    for (i = 0; i < 3; i++)
        T_EQ_INT(pl_kafka_append_record(ev, &r[i], i == 0), 0);
    T_EQ_INT(pl_kafka_event_end(ev), 0);
    write_file("kafka-event-sample.json", ev);

    f = sample_failure(r, 3);
    f.payload = evbuffer_pullup(ev, -1); /* as the poller will: the batch's own bytes */
    f.payload_len = evbuffer_get_length(ev);
    T_EQ_INT(pl_kafka_failure_record(fr, &f), 0);
    write_file("kafka-failure-sample.json", fr);

    f.condition = "RetriesExhausted";
    T_EQ_INT(pl_kafka_failure_record_one(one, &f, 1), 0);
    write_file("kafka-failure-one-sample.json", one);

    j = parse_buf(fr);
    {
        json_t *e = parse_buf(ev);

        T_ASSERT(json_equal(member(j, "payload"), e));
        json_decref(e);
    }
    json_decref(j);
    evbuffer_free(ev);
    evbuffer_free(fr);
    evbuffer_free(one);
}

int main(void)
{
    T_RUN(test_event_kinds);
    T_RUN(test_event_empty);
    T_RUN(test_signed_bytes_and_extremes);
    T_RUN(test_hostile_names);
    T_RUN(test_random_records);
    T_RUN(test_large_value);
    T_RUN(test_event_invalid_args);
    T_RUN(test_batch_10000);
    T_RUN(test_response_success);
    T_RUN(test_response_failures);
    T_RUN(test_response_invalid);
    T_RUN(test_response_caller_errors);
    T_RUN(test_response_extremes);
    T_RUN(test_response_10000);
    T_RUN(test_failure_batch);
    T_RUN(test_failure_payload_verbatim);
    T_RUN(test_failure_nulls);
    T_RUN(test_failure_one);
    T_RUN(test_failure_invalid);
    T_RUN(test_iso_dates);
    T_RUN(test_sample_files);
    fprintf(stderr, "ok\n");
    return 0;
}
