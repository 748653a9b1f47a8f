/*
 * test_mapping_config.c - the pollers' mapping configuration (poller_config.c): defaults and
 * copies, redis:// URI parsing with every query key and its range, redaction of credentials,
 * the derived UUID, and pl_mapping_validate's rules. Pure functions: no loop, no server.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pollers/pollers.h"
#include "pollers/pollers_internal.h"
#include "testlib.h"

#define ISSUE_ARN                                                                                  \
    "redis://127.0.0.1:6379/orders?VisibilityTimeout=30&maxReceiveCount=5&deadLetterTarget="       \
    "orders-dlq"

/* Parses uri expecting success. */
static void parse_ok(const char *uri, struct pl_redis_uri *u)
{
    char err[256] = "";
    int rc = pl_redis_uri_parse(uri, u, err, sizeof(err));

    if (rc != 0)
        T_FAIL("pl_redis_uri_parse(\"%s\") = %s: %s", uri, sl_err_name(rc), err);
}

/* Parses uri expecting SL_EINVAL with needle in the message and out left all zeroes. */
static void parse_bad_at(const char *uri, const char *needle, int line)
{
    static const struct pl_redis_uri zero;
    struct pl_redis_uri u;
    char err[256] = "";
    int rc = pl_redis_uri_parse(uri, &u, err, sizeof(err));

    if (rc != SL_EINVAL)
        T_FAIL("line %d: pl_redis_uri_parse(\"%s\") = %s, expected SL_EINVAL", line, uri,
               sl_err_name(rc));
    if (!strstr(err, needle))
        T_FAIL("line %d: \"%s\": message \"%s\" lacks \"%s\"", line, uri, err, needle);
    if (memcmp(&u, &zero, sizeof(u)) != 0)
        T_FAIL("line %d: \"%s\": out is not all zeroes after an error", line, uri);
}

#define PARSE_BAD(uri, needle) parse_bad_at(uri, needle, __LINE__)

/* ---------------------------------------------------------------------------------------- */

static void test_defaults_copy_clear(void)
{
    struct pl_mapping_config mc, copy;

    memset(&mc, 0x5a, sizeof(mc)); /* defaults() accepts garbage: it owns nothing yet */
    pl_mapping_config_defaults(&mc);
    T_EQ_STR(mc.uuid, "");
    T_ASSERT(mc.function_name == NULL && mc.event_source_arn == NULL);
    T_EQ_INT(mc.batch_size, 0);
    T_ASSERT(mc.window_s < 0);
    T_EQ_INT(mc.enabled, 1);
    T_EQ_INT(mc.report_batch_item_failures, 0);
    T_EQ_INT(mc.max_concurrency, 0);

    /* a copy of a struct without strings has none either */
    T_EQ_INT(pl_mapping_config_copy(&copy, &mc), 0);
    T_ASSERT(copy.function_name == NULL && copy.event_source_arn == NULL);
    pl_mapping_config_clear(&copy);

    mc.function_name = strdup("orders");
    mc.event_source_arn = strdup(ISSUE_ARN);
    T_ASSERT(mc.function_name && mc.event_source_arn);
    mc.batch_size = 100;
    mc.window_s = 5;
    mc.enabled = false;
    mc.report_batch_item_failures = true;
    mc.max_concurrency = 50;
    memcpy(mc.uuid, "6ba7b810-9dad-51d1-80b4-00c04fd430c8", 37);

    T_EQ_INT(pl_mapping_config_copy(&copy, &mc), 0);
    T_ASSERT(copy.function_name != mc.function_name);
    T_ASSERT(copy.event_source_arn != mc.event_source_arn);
    T_EQ_STR(copy.function_name, "orders");
    T_EQ_STR(copy.event_source_arn, ISSUE_ARN);
    T_EQ_STR(copy.uuid, mc.uuid);
    T_EQ_INT(copy.batch_size, 100);
    T_ASSERT(copy.window_s == 5.0);
    T_EQ_INT(copy.enabled, 0);
    T_EQ_INT(copy.report_batch_item_failures, 1);
    T_EQ_INT(copy.max_concurrency, 50);
    pl_mapping_config_clear(&mc); /* the copy stands alone */
    T_ASSERT(mc.function_name == NULL && mc.event_source_arn == NULL && mc.uuid[0] == '\0');
    T_EQ_STR(copy.function_name, "orders");
    pl_mapping_config_clear(&copy);
    pl_mapping_config_clear(&copy); /* twice is harmless */
    pl_mapping_config_clear(NULL);
}

static void test_uri_defaults(void)
{
    struct pl_redis_uri u;

    parse_ok("redis://127.0.0.1/orders", &u);
    T_EQ_STR(u.host, "127.0.0.1");
    T_EQ_INT(u.port, 6379);
    T_EQ_INT(u.db, 0);
    T_EQ_STR(u.user, "");
    T_EQ_STR(u.password, "");
    T_EQ_STR(u.stream, "orders");
    T_EQ_INT(u.visibility_timeout_s, 30);
    T_EQ_INT(u.max_receive_count, 0);
    T_EQ_STR(u.dead_letter, "");
    T_EQ_STR(u.group, "");

    parse_ok(ISSUE_ARN, &u);
    T_EQ_STR(u.host, "127.0.0.1");
    T_EQ_INT(u.port, 6379);
    T_EQ_STR(u.stream, "orders");
    T_EQ_INT(u.visibility_timeout_s, 30);
    T_EQ_INT(u.max_receive_count, 5);
    T_EQ_STR(u.dead_letter, "orders-dlq");
    T_EQ_STR(u.group, "");
}

static void test_uri_parts(void)
{
    struct pl_redis_uri u;

    /* database */
    parse_ok("redis://cache.local:6380/3/jobs", &u);
    T_EQ_STR(u.host, "cache.local");
    T_EQ_INT(u.port, 6380);
    T_EQ_INT(u.db, 3);
    T_EQ_STR(u.stream, "jobs");
    parse_ok("redis://h/999999999/s", &u);
    T_EQ_INT(u.db, 999999999);
    parse_ok("redis://h:65535/0/s", &u);
    T_EQ_INT(u.port, 65535);
    T_EQ_INT(u.db, 0);
    /* a one-segment path is the stream, even when it is a number */
    parse_ok("redis://h/7", &u);
    T_EQ_INT(u.db, 0);
    T_EQ_STR(u.stream, "7");

    /* credentials: percent-escapes decoded after splitting, ':' in the password kept */
    parse_ok("redis://:p%40ss%2Fw%3Ard:x@127.0.0.1:6379/orders", &u);
    T_EQ_STR(u.user, "");
    T_EQ_STR(u.password, "p@ss/w:rd:x");
    T_EQ_STR(u.host, "127.0.0.1");
    parse_ok("redis://app%20user:s3cr3t+@h/s", &u);
    T_EQ_STR(u.user, "app user");
    T_EQ_STR(u.password, "s3cr3t+"); /* '+' is a plus, not a space */

    /* IPv6, stored without brackets */
    parse_ok("redis://[::1]:6380/s", &u);
    T_EQ_STR(u.host, "::1");
    T_EQ_INT(u.port, 6380);
    parse_ok("redis://[2001:db8::7]/s", &u);
    T_EQ_STR(u.host, "2001:db8::7");
    T_EQ_INT(u.port, 6379);

    /* stream names: escapes decoded, an escaped '/' belongs to the name, hash tags as is */
    parse_ok("redis://h/a%2Fb%25c", &u);
    T_EQ_STR(u.stream, "a/b%c");
    parse_ok("redis://h/2/{orders}:in@x", &u);
    T_EQ_INT(u.db, 2);
    T_EQ_STR(u.stream, "{orders}:in@x");
}

static void test_uri_query(void)
{
    struct pl_redis_uri u;
    char uri[2048], name[600];

    parse_ok("redis://h/s?VisibilityTimeout=0", &u);
    T_EQ_INT(u.visibility_timeout_s, 0);
    parse_ok("redis://h/s?VisibilityTimeout=43200", &u);
    T_EQ_INT(u.visibility_timeout_s, 43200);
    PARSE_BAD("redis://h/s?VisibilityTimeout=43201", "VisibilityTimeout: 43201 is out of range "
                                                     "0..43200");
    PARSE_BAD("redis://h/s?VisibilityTimeout=50000", "VisibilityTimeout: 50000 is out of range");
    PARSE_BAD("redis://h/s?VisibilityTimeout=-1", "VisibilityTimeout: -1 is out of range");
    PARSE_BAD("redis://h/s?VisibilityTimeout=030", "VisibilityTimeout: 030 is out of range");
    PARSE_BAD("redis://h/s?VisibilityTimeout=1.5", "VisibilityTimeout: 1.5 is out of range");
    PARSE_BAD("redis://h/s?VisibilityTimeout=%33%30", "VisibilityTimeout: %33%30 is out of");
    PARSE_BAD("redis://h/s?VisibilityTimeout=99999999999999999999", "out of range 0..43200");
    PARSE_BAD("redis://h/s?VisibilityTimeout=", "VisibilityTimeout: must not be empty");
    PARSE_BAD("redis://h/s?VisibilityTimeout", "VisibilityTimeout: needs a value");

    parse_ok("redis://h/s?maxReceiveCount=1&deadLetterTarget=d", &u);
    T_EQ_INT(u.max_receive_count, 1);
    T_EQ_STR(u.dead_letter, "d");
    parse_ok("redis://h/s?deadLetterTarget=dead%20letters&maxReceiveCount=1000", &u);
    T_EQ_INT(u.max_receive_count, 1000);
    T_EQ_STR(u.dead_letter, "dead letters");
    PARSE_BAD("redis://h/s?maxReceiveCount=0&deadLetterTarget=d",
              "maxReceiveCount: 0 is out of range 1..1000");
    PARSE_BAD("redis://h/s?maxReceiveCount=1001&deadLetterTarget=d",
              "maxReceiveCount: 1001 is out of range 1..1000");
    PARSE_BAD("redis://h/s?maxReceiveCount=5",
              "maxReceiveCount and deadLetterTarget must come together");
    PARSE_BAD("redis://h/s?deadLetterTarget=d",
              "maxReceiveCount and deadLetterTarget must come together");
    PARSE_BAD("redis://h/s?maxReceiveCount=5&deadLetterTarget=s",
              "deadLetterTarget: must differ from the stream itself");
    PARSE_BAD("redis://h/s%2Fx?maxReceiveCount=5&deadLetterTarget=s/x",
              "deadLetterTarget: must differ from the stream itself");
    PARSE_BAD("redis://h/s?maxReceiveCount=5&deadLetterTarget=", "deadLetterTarget: must not be "
                                                                 "empty");
    PARSE_BAD("redis://h/s?maxReceiveCount=5&deadLetterTarget=%zz", "deadLetterTarget: a '%' "
                                                                    "must start an escape");

    parse_ok("redis://h/s?ConsumerGroup=workers%2Fblue&tls=false", &u);
    T_EQ_STR(u.group, "workers/blue");
    PARSE_BAD("redis://h/s?ConsumerGroup=", "ConsumerGroup: must not be empty");
    PARSE_BAD("redis://h/s?tls=true", "tls: true is not supported by this build");
    PARSE_BAD("redis://h/s?tls=yes", "tls: 'yes' must be true or false");
    PARSE_BAD("redis://h/s?tls=False", "tls: 'False' must be true or false");

    /* every key at once */
    parse_ok("redis://u:p@h:1/2/s?VisibilityTimeout=60&maxReceiveCount=3&deadLetterTarget=s-dlq"
             "&ConsumerGroup=g&tls=false",
             &u);
    T_EQ_STR(u.user, "u");
    T_EQ_STR(u.password, "p");
    T_EQ_INT(u.port, 1);
    T_EQ_INT(u.db, 2);
    T_EQ_INT(u.visibility_timeout_s, 60);
    T_EQ_INT(u.max_receive_count, 3);
    T_EQ_STR(u.dead_letter, "s-dlq");
    T_EQ_STR(u.group, "g");

    PARSE_BAD("redis://h/s?foo=1", "unknown query key 'foo' (known: VisibilityTimeout, "
                                   "maxReceiveCount, deadLetterTarget, ConsumerGroup, tls)");
    PARSE_BAD("redis://h/s?visibilitytimeout=1", "unknown query key 'visibilitytimeout' (query "
                                                 "keys are case-sensitive: VisibilityTimeout)");
    PARSE_BAD("redis://h/s?password=x", "unknown query key 'password'");
    PARSE_BAD("redis://h/s?tls=false&tls=false", "duplicate query key 'tls'");
    PARSE_BAD("redis://h/s?VisibilityTimeout=1&VisibilityTimeout=1",
              "duplicate query key 'VisibilityTimeout'");
    PARSE_BAD("redis://h/s?", "empty query parameter");
    PARSE_BAD("redis://h/s?tls=false&", "empty query parameter");
    PARSE_BAD("redis://h/s?&tls=false", "empty query parameter");

    /* lengths count decoded bytes: 511 fit the stream and deadLetterTarget, 512 do not */
    memset(name, 'n', 511);
    name[511] = '\0';
    snprintf(uri, sizeof(uri), "redis://h/%s?maxReceiveCount=2&deadLetterTarget=d%.510s", name,
             name);
    parse_ok(uri, &u);
    T_EQ_INT(strlen(u.stream), 511);
    T_EQ_INT(strlen(u.dead_letter), 511);
    snprintf(uri, sizeof(uri), "redis://h/%s%%41", name);
    PARSE_BAD(uri, "stream name: longer than 511 bytes");
    snprintf(uri, sizeof(uri), "redis://h/s?ConsumerGroup=%.256s", name);
    PARSE_BAD(uri, "ConsumerGroup: longer than 255 bytes");
}

static void test_uri_errors(void)
{
    struct pl_redis_uri u;
    char err[256], small[16];

    PARSE_BAD("kafka://h/s", "not a redis:// URI");
    PARSE_BAD("REDIS://h/s", "not a redis:// URI");
    PARSE_BAD("redis://127.0.0.1:6379", "missing stream name");
    PARSE_BAD("redis://127.0.0.1:6379/", "missing stream name");
    PARSE_BAD("redis://127.0.0.1:6379/3/", "missing stream name");
    PARSE_BAD("redis://127.0.0.1:6379?tls=false", "missing stream name");
    PARSE_BAD("redis://127.0.0.1:6379/?tls=false", "missing stream name");
    PARSE_BAD("redis:///s", "missing host");
    PARSE_BAD("redis://:6379/s", "missing host");
    PARSE_BAD("redis://h_x/s", "host 'h_x': not a host name, IPv4 address or [IPv6] address");
    PARSE_BAD("redis://-h/s", "not a host name");
    PARSE_BAD("redis://[::1/s", "an IPv6 address needs its closing ']'");
    PARSE_BAD("redis://[::g]/s", "not an IPv6 address");
    PARSE_BAD("redis://[]/s", "not an IPv6 address");
    PARSE_BAD("redis://[::1]6379/s", "expected ':port' after the IPv6 address");
    PARSE_BAD("redis://h:0/s", "port '0': must be a number 1..65535");
    PARSE_BAD("redis://h:65536/s", "port '65536': must be a number 1..65535");
    PARSE_BAD("redis://h:06379/s", "port '06379': must be a number");
    PARSE_BAD("redis://h:http/s", "port 'http': must be a number");
    PARSE_BAD("redis://h:/s", "port '': must be a number");
    PARSE_BAD("redis://h:1:2/s", "port '1:2'");
    PARSE_BAD("redis://h/x/s", "database 'x': must be a number 0..999999999");
    PARSE_BAD("redis://h/01/s", "database '01'");
    PARSE_BAD("redis://h/1000000000/s", "database '1000000000'");
    PARSE_BAD("redis://h//s", "database '': must be a number");
    PARSE_BAD("redis://h/0/s/t", "the path must be /stream or /DB/stream");
    PARSE_BAD("redis://h/a b", "spaces and control characters must be percent-encoded");
    PARSE_BAD("redis://h/a\tb", "spaces and control characters");
    PARSE_BAD("redis://h/a\x7f", "spaces and control characters");
    PARSE_BAD("redis://h/a#b", "'#' must be percent-encoded (%23)");
    PARSE_BAD("redis://h/a%2", "stream name: a '%' must start an escape of two hex digits");
    PARSE_BAD("redis://h/a%", "stream name: a '%' must start an escape");
    PARSE_BAD("redis://h/a%g1", "stream name: a '%' must start an escape");
    PARSE_BAD("redis://h/a%00b", "stream name: must not contain NUL (%00)");
    PARSE_BAD("redis://user@h/s", "the user info must be [user]:password");
    PARSE_BAD("redis://user:@h/s", "the password must not be empty");
    PARSE_BAD("redis://:@h/s", "the password must not be empty");
    PARSE_BAD("redis://u:p%zz@h/s", "password: a '%' must start an escape");
    PARSE_BAD("redis://u%00:p@h/s", "user name: must not contain NUL");
    PARSE_BAD("redis://u:p@ss@h/s", "the user info contains '@': percent-encode it as %40");

    /* messages never show the password, nor a host or port that may be a piece of one */
    T_EQ_INT(pl_redis_uri_parse("redis://u:XYZZY@h:bad/s", &u, err, sizeof(err)), SL_EINVAL);
    T_CONTAINS(err, "port 'bad'");
    T_ASSERT(strstr(err, "XYZZY") == NULL);
    T_EQ_INT(pl_redis_uri_parse("redis://u:XYZZY/rest@h/s", &u, err, sizeof(err)), SL_EINVAL);
    T_CONTAINS(err, "port: must be a number");
    T_ASSERT(strstr(err, "XYZZY") == NULL);
    T_EQ_INT(pl_redis_uri_parse("redis://XYZZY/rest@h/s", &u, err, sizeof(err)), SL_EINVAL);
    T_ASSERT(strstr(err, "XYZZY") == NULL);
    T_EQ_INT(pl_redis_uri_parse("redis://u:XYZZY%zz@h/s", &u, err, sizeof(err)), SL_EINVAL);
    T_ASSERT(strstr(err, "XYZZY") == NULL);

    /* err may be NULL or small; NULL uri is an error, not a crash */
    T_EQ_INT(pl_redis_uri_parse("redis://h", &u, NULL, 0), SL_EINVAL);
    T_EQ_INT(pl_redis_uri_parse("redis://h", &u, small, sizeof(small)), SL_EINVAL);
    T_EQ_INT(strlen(small), sizeof(small) - 1);
    T_EQ_INT(pl_redis_uri_parse(NULL, &u, err, sizeof(err)), SL_EINVAL);
    T_CONTAINS(err, "missing URI");
}

static void test_redact(void)
{
    char out[256], small[12];

    T_EQ_STR(pl_uri_redact("redis://u:secret@127.0.0.1:6379/orders?x=1", out, sizeof(out)),
             "redis://127.0.0.1:6379/orders?x=1");
    T_EQ_STR(pl_uri_redact("redis://:secret@h/s", out, sizeof(out)), "redis://h/s");
    T_EQ_STR(pl_uri_redact("redis://u:p@ss@h/s", out, sizeof(out)), "redis://h/s");
    T_EQ_STR(pl_uri_redact("redis://u:p%40ss@[::1]:1/s", out, sizeof(out)), "redis://[::1]:1/s");
    T_EQ_STR(pl_uri_redact(ISSUE_ARN, out, sizeof(out)), ISSUE_ARN);
    /* an '@' after the authority is part of the path or query, not user info */
    T_EQ_STR(pl_uri_redact("redis://h/s@x?ConsumerGroup=a@b", out, sizeof(out)),
             "redis://h/s@x?ConsumerGroup=a@b");
    T_EQ_STR(pl_uri_redact("kafka://user:pw@b:9092/t", out, sizeof(out)), "kafka://b:9092/t");
    T_EQ_STR(pl_uri_redact("arn:aws:sqs:us-east-1:1:q", out, sizeof(out)),
             "arn:aws:sqs:us-east-1:1:q");
    T_EQ_STR(pl_uri_redact("", out, sizeof(out)), "");
    /* cut short, still terminated, and never a byte of the password */
    T_EQ_STR(pl_uri_redact("redis://u:secret@host:6379/s", small, sizeof(small)), "redis://hos");
    T_EQ_STR(pl_uri_redact("redis://u:secret@h/s", small, 1), "");
    T_ASSERT(pl_uri_redact("redis://h/s", small, 0) == small);
}

static void test_uuid(void)
{
    char a[37], b[37], c[37];
    size_t i;

    /* the formula, pinned: first 16 bytes of SHA-256("orders\n" + ARN without credentials
     * and without its query), version 5, RFC 4122 variant (the same bytes Python's
     * uuid.UUID(bytes=...) prints); the queue's attributes do not change it */
    pl_mapping_derive_uuid("orders", ISSUE_ARN, a);
    T_EQ_STR(a, "441a58cf-6cc3-5b55-a6cd-189639aaa658");
    pl_mapping_derive_uuid("orders", "redis://127.0.0.1:6379/orders", a);
    T_EQ_STR(a, "441a58cf-6cc3-5b55-a6cd-189639aaa658");

    /* stable, and blind to the credentials */
    pl_mapping_derive_uuid("orders", "redis://127.0.0.1:6379/orders", b);
    T_EQ_STR(a, b);
    pl_mapping_derive_uuid("orders", "redis://:pw@127.0.0.1:6379/orders", b);
    T_EQ_STR(a, b);
    pl_mapping_derive_uuid("orders", "redis://app:other@127.0.0.1:6379/orders", b);
    T_EQ_STR(a, b);

    /* distinct for another function, another stream, another database */
    pl_mapping_derive_uuid("billing", "redis://127.0.0.1:6379/orders", b);
    T_ASSERT(strcmp(a, b) != 0);
    pl_mapping_derive_uuid("orders", "redis://127.0.0.1:6379/orders2", c);
    T_ASSERT(strcmp(a, c) != 0 && strcmp(b, c) != 0);
    pl_mapping_derive_uuid("orders", "redis://127.0.0.1:6379/1/orders", c);
    T_ASSERT(strcmp(a, c) != 0);
    /* the separator keeps ("ab", "c...") apart from ("a", "bc...") */
    pl_mapping_derive_uuid("ab", "redis://h/s", b);
    pl_mapping_derive_uuid("a", "bredis://h/s", c);
    T_ASSERT(strcmp(b, c) != 0);

    /* shape */
    T_EQ_INT(strlen(a), 36);
    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            T_EQ_INT(a[i], '-');
        else
            T_ASSERT((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'f'));
    }
    T_EQ_INT(a[14], '5');
    T_ASSERT(strchr("89ab", a[19]) != NULL);
}

/* A valid mapping to start each validation case from (borrowed strings: never cleared). */
static struct pl_mapping_config good(void)
{
    struct pl_mapping_config mc;

    pl_mapping_config_defaults(&mc);
    mc.function_name = "orders";
    mc.event_source_arn = ISSUE_ARN;
    return mc;
}

static void validate_ok_at(const struct pl_mapping_config *mc, int line)
{
    char err[512] = "";

    if (pl_mapping_validate(mc, err, sizeof(err)) != 0)
        T_FAIL("line %d: pl_mapping_validate failed: %s", line, err);
}

static void validate_bad_at(const struct pl_mapping_config *mc, const char *needle, int line)
{
    char err[512] = "";

    if (pl_mapping_validate(mc, err, sizeof(err)) != SL_EINVAL)
        T_FAIL("line %d: pl_mapping_validate accepted it (expected \"%s\")", line, needle);
    if (!strstr(err, needle))
        T_FAIL("line %d: message \"%s\" lacks \"%s\"", line, err, needle);
}

#define V_OK(mc) validate_ok_at(&(mc), __LINE__)
#define V_BAD(mc, needle) validate_bad_at(&(mc), needle, __LINE__)

static void test_validate(void)
{
    struct pl_mapping_config mc = good();
    char name[80];

    V_OK(mc);
    mc.batch_size = 10;
    mc.window_s = 0;
    mc.report_batch_item_failures = true;
    mc.max_concurrency = 50;
    V_OK(mc);

    /* BatchSize: 1..10000, above 10 only with a window of at least 1 s */
    mc = good();
    mc.batch_size = 1;
    V_OK(mc);
    mc.batch_size = 11;
    V_BAD(mc, "BatchSize: 11 is above 10, which needs MaximumBatchingWindowInSeconds of at "
              "least 1 (Lambda's rule for standard queues)");
    mc.window_s = 0;
    V_BAD(mc, "BatchSize: 11 is above 10");
    mc.window_s = 1;
    V_OK(mc);
    mc.batch_size = 10000;
    V_OK(mc);
    mc.batch_size = 10001;
    V_BAD(mc, "BatchSize: 10001 is out of range 1..10000");
    mc.batch_size = -1;
    V_BAD(mc, "BatchSize: -1 is out of range 1..10000");

    /* MaximumBatchingWindowInSeconds: whole seconds 0..300; negative means the default */
    mc = good();
    mc.window_s = 300;
    V_OK(mc);
    mc.window_s = 301;
    V_BAD(mc, "MaximumBatchingWindowInSeconds: 301 is out of range 0..300");
    mc.window_s = 0.5;
    V_BAD(mc, "MaximumBatchingWindowInSeconds: 0.5 is not a whole number of seconds");
    mc.window_s = NAN;
    V_BAD(mc, "MaximumBatchingWindowInSeconds: not a number");
    mc.window_s = -1;
    V_OK(mc);

    /* ScalingConfig.MaximumConcurrency: 2..1000, 0 = unset */
    mc = good();
    mc.max_concurrency = 2;
    V_OK(mc);
    mc.max_concurrency = 1000;
    V_OK(mc);
    mc.max_concurrency = 1;
    V_BAD(mc, "ScalingConfig.MaximumConcurrency: 1 is out of range 2..1000");
    mc.max_concurrency = 1001;
    V_BAD(mc, "ScalingConfig.MaximumConcurrency: 1001 is out of range 2..1000");

    /* FunctionName */
    mc = good();
    mc.function_name = NULL;
    V_BAD(mc, "FunctionName: missing");
    mc.function_name = "a.b";
    V_BAD(mc, "FunctionName: \"a.b\" must match [A-Za-z0-9_-]{1,64}");
    mc.function_name = "";
    V_BAD(mc, "FunctionName: \"\" must match");
    memset(name, 'f', 65);
    name[65] = '\0';
    mc.function_name = name;
    V_BAD(mc, "must match [A-Za-z0-9_-]{1,64}");
    name[64] = '\0';
    V_OK(mc);

    /* EventSourceArn: redis:// only in this build */
    mc = good();
    mc.event_source_arn = NULL;
    V_BAD(mc, "EventSourceArn: missing");
    mc.event_source_arn = "";
    V_BAD(mc, "EventSourceArn: missing");
    mc.event_source_arn = "kafka://broker:9092/orders";
    V_BAD(mc, "EventSourceArn: kafka:// sources are not supported by this build yet");
    mc.event_source_arn = "postgres://db:5432/app?slot=s";
    V_BAD(mc, "EventSourceArn: postgres:// sources are not supported by this build yet");
    mc.event_source_arn = "postgresql://db/app";
    V_BAD(mc, "EventSourceArn: postgresql:// sources are not supported by this build yet");
    mc.event_source_arn = "sqs://queue";
    V_BAD(mc, "EventSourceArn: unsupported source scheme 'sqs' (this build supports redis://)");
    mc.event_source_arn = "rediss://h/s";
    V_BAD(mc, "unsupported source scheme 'rediss'");
    mc.event_source_arn = "arn:aws:sqs:us-east-1:123456789012:orders";
    V_BAD(mc, "EventSourceArn: not a source URI");
    mc.event_source_arn = "redis://h/s?foo=1";
    V_BAD(mc, "EventSourceArn: unknown query key 'foo'");
    mc.event_source_arn = "redis://h:99999/s";
    V_BAD(mc, "EventSourceArn: port '99999': must be a number 1..65535");
    mc.event_source_arn = "redis://u:hunter2@h/s?maxReceiveCount=5";
    V_BAD(mc, "EventSourceArn: maxReceiveCount and deadLetterTarget must come together");

    /* UUID: empty (derived later) or 8-4-4-4-12 hex, either case */
    mc = good();
    memcpy(mc.uuid, "6BA7B810-9DAD-51D1-80B4-00C04FD430C8", 37);
    V_OK(mc);
    memcpy(mc.uuid, "6ba7b810-9dad-51d1-80b4-00c04fd430cg", 37);
    V_BAD(mc, "UUID: must be 36 characters, 8-4-4-4-12 hexadecimal digits");
    memcpy(mc.uuid, "6ba7b8109dad-51d1-80b4-00c04fd430c8", 36);
    V_BAD(mc, "UUID: must be 36 characters");

    /* Enabled and ReportBatchItemFailures are free choices */
    mc = good();
    mc.enabled = false;
    mc.report_batch_item_failures = true;
    V_OK(mc);
    /* err may be NULL */
    mc.batch_size = 20000;
    T_EQ_INT(pl_mapping_validate(&mc, NULL, 0), SL_EINVAL);
}

int main(void)
{
    T_RUN(test_defaults_copy_clear);
    T_RUN(test_uri_defaults);
    T_RUN(test_uri_parts);
    T_RUN(test_uri_query);
    T_RUN(test_uri_errors);
    T_RUN(test_redact);
    T_RUN(test_uuid);
    T_RUN(test_validate);
    fprintf(stderr, "test_mapping_config: all passed\n");
    return 0;
}
