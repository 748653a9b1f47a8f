/*
 * poller_config.c - event source mapping configuration: defaults, deep copies, validation,
 * the redis:// source URI, redaction of credentials, and the mapping's derived UUID.
 *
 * The config file parser (broker_config.c) and, later, the control plane both validate through
 * pl_mapping_validate, so every rule is written once and reported in the same words. Messages
 * start with the field they are about ("BatchSize: ...", "EventSourceArn: VisibilityTimeout:
 * ...") so a caller can point at that field. They never quote the user info of a URI (it holds
 * the password), nor the host or port when an '@' elsewhere suggests a password that was not
 * percent-encoded and so was split in the wrong place.
 *
 * URI decisions (schemas/config.schema.json says the same):
 *   - Parts are split on the raw delimiters first and percent-decoded after, so "%2F" in a
 *     stream name is a '/' of the name, and "%40" / "%3A" in a password are '@' / ':'.
 *   - '+' is a plus sign, not a space (RFC 3986, not HTML forms).
 *   - Spaces, control characters and '#' must be percent-encoded anywhere; a raw '@' in the
 *     user info must be too. A decoded NUL is refused (names are C strings).
 *   - Numbers (port, database, VisibilityTimeout, maxReceiveCount) are plain decimal without
 *     a sign or leading zeros, so that one spelling means one value.
 *   - An IPv6 host is written in brackets and stored without them (what hiredis connects to).
 */
#include <arpa/inet.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "pollers/pollers_internal.h"

/* Lambda's ranges for an SQS mapping (lambda-spec 1.1). */
#define MC_BATCH_MIN 1
#define MC_BATCH_MAX 10000
#define MC_WINDOW_MAX 300
#define MC_CONCURRENCY_MIN 2
#define MC_CONCURRENCY_MAX 1000
#define MC_NAME_MAX 64
/* A Redis stream mapping's defaults: SQS's. */
#define REDIS_BATCH_DEFAULT 10
#define REDIS_WINDOW_DEFAULT 0.0
#define REDIS_BATCH_NO_WINDOW_MAX 10 /* above this Lambda wants a window of at least 1 s */
/* The URI's. */
#define REDIS_PORT_DEFAULT 6379
#define REDIS_PORT_MAX 65535
#define REDIS_DB_MAX 999999999L /* 9 digits: what the destination form accepts too */
#define REDIS_VISIBILITY_DEFAULT 30
#define REDIS_VISIBILITY_MAX 43200 /* SQS's 12 hours */
#define REDIS_RECEIVE_MAX 1000     /* SQS's maxReceiveCount range */
#define REDIS_SCHEME "redis://"

/* Writes a sentence into err (when there is room) and returns SL_EINVAL. */
static int say(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int say(char *err, size_t errsz, const char *fmt, ...)
{
    va_list ap;

    if (err && errsz > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errsz, fmt, ap);
        va_end(ap);
    }
    return SL_EINVAL;
}

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static bool is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static int hex_value(char ch)
{
    if (is_digit(ch))
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* ---------------------------------------------------------------------------------------- */
/* The mapping struct.                                                                      */
/* ---------------------------------------------------------------------------------------- */

/*
 * Sets mc to the defaults of a mapping nobody has configured yet: no names, no UUID (derived
 * later), BatchSize and window left to the source (0 and -1), Enabled, no
 * ReportBatchItemFailures, no MaximumConcurrency. mc must not own anything (it is overwritten,
 * not freed); an uninitialised struct is fine.
 */
void pl_mapping_config_defaults(struct pl_mapping_config *mc)
{
    memset(mc, 0, sizeof(*mc));
    mc->batch_size = 0;
    mc->window_s = -1.0;
    mc->enabled = true;
    mc->report_batch_item_failures = false;
    mc->max_concurrency = 0;
}

/*
 * Deep copy of src into dst. dst's previous contents are overwritten, not freed (clear it first
 * if it owned anything). Returns 0, or SL_ENOMEM with dst left cleared (all zeroes).
 */
int pl_mapping_config_copy(struct pl_mapping_config *dst, const struct pl_mapping_config *src)
{
    *dst = *src;
    dst->function_name = NULL;
    dst->event_source_arn = NULL;
    if (src->function_name && !(dst->function_name = strdup(src->function_name)))
        goto fail;
    if (src->event_source_arn && !(dst->event_source_arn = strdup(src->event_source_arn)))
        goto fail;
    return 0;

fail:
    pl_mapping_config_clear(dst);
    return SL_ENOMEM;
}

/* Frees the strings mc owns (not mc) and leaves it all zeroes: clearing twice is harmless.
 * NULL is a no-op. */
void pl_mapping_config_clear(struct pl_mapping_config *mc)
{
    if (!mc)
        return;
    free(mc->function_name);
    free(mc->event_source_arn);
    memset(mc, 0, sizeof(*mc));
}

/* ---------------------------------------------------------------------------------------- */
/* URI pieces shared by parsing, redaction and the UUID.                                    */
/* ---------------------------------------------------------------------------------------- */

/* Length of uri's scheme when uri starts with "scheme://" (scheme = [A-Za-z][A-Za-z0-9+.-]*),
 * else 0. */
static size_t scheme_len(const char *uri)
{
    size_t n = 0;

    if (!is_alpha(uri[0]))
        return 0;
    while (is_alpha(uri[n]) || is_digit(uri[n]) || uri[n] == '+' || uri[n] == '.' || uri[n] == '-')
        n++;
    return strncmp(uri + n, "://", 3) == 0 ? n : 0;
}

/*
 * The span [*start, *end) of "userinfo@" in uri's authority (which ends at the first '/', '?'
 * or '#'); start == end when there is none. The last '@' of the authority ends it, so an
 * unescaped '@' in a password is still inside the span and removed by redaction.
 */
static void userinfo_span(const char *uri, size_t *start, size_t *end)
{
    size_t sl = scheme_len(uri);
    const char *auth, *p, *at = NULL;

    *start = *end = 0;
    if (sl == 0)
        return;
    auth = uri + sl + 3;
    for (p = auth; *p && *p != '/' && *p != '?' && *p != '#'; p++)
        if (*p == '@')
            at = p;
    if (at) {
        *start = (size_t)(auth - uri);
        *end = (size_t)(at + 1 - uri);
    }
}

/*
 * Writes uri without its user info ("redis://:pw@h:1/s" becomes "redis://h:1/s") into out,
 * cut short to fit outsz (always NUL-terminated when outsz > 0). Nothing else of the URI is
 * secret: the query keys hold no credentials. Returns out.
 */
char *pl_uri_redact(const char *uri, char *out, size_t outsz)
{
    size_t start, end, len, head, tail;

    if (outsz == 0)
        return out;
    userinfo_span(uri, &start, &end);
    len = strlen(uri);
    head = start < outsz - 1 ? start : outsz - 1;
    memcpy(out, uri, head);
    tail = len - end;
    if (tail > outsz - 1 - head)
        tail = outsz - 1 - head;
    memcpy(out + head, uri + end, tail);
    out[head + tail] = '\0';
    return out;
}

/*
 * Writes the mapping's UUID into out: the first 16 bytes of SHA-256("function_name\n" +
 * arn without its user info), with the version nibble set to 5 and the RFC 4122 variant, as
 * "xxxxxxxx-xxxx-5xxx-[89ab]xxx-xxxxxxxxxxxx" in lowercase. The same inputs give the same
 * UUID in every process, so a mapping keeps its default consumer group across restarts, and
 * changing the password does not change it. Changing anything else of the URI (the query
 * included) does. When the digest cannot be computed (out of memory) out is "" instead: the
 * caller treats that as SL_ENOMEM.
 */
void pl_mapping_derive_uuid(const char *function_name, const char *arn, char out[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx;
    size_t start, end, i, o;
    int ok;

    out[0] = '\0';
    ctx = EVP_MD_CTX_new();
    if (!ctx)
        return;
    userinfo_span(arn, &start, &end);
    /* The queue's attributes (the query: VisibilityTimeout, redrive, ...) are not part of the
     * mapping's identity: changing them must keep the UUID and so the default group. */
    const char *q = strchr(arn + end, '?');
    size_t rest = q ? (size_t)(q - (arn + end)) : strlen(arn + end);
    ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, function_name, strlen(function_name)) == 1 &&
         EVP_DigestUpdate(ctx, "\n", 1) == 1 && EVP_DigestUpdate(ctx, arn, start) == 1 &&
         EVP_DigestUpdate(ctx, arn + end, rest) == 1 &&
         EVP_DigestFinal_ex(ctx, md, &mdlen) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok || mdlen < 16)
        return;
    md[6] = (unsigned char)((md[6] & 0x0f) | 0x50);
    md[8] = (unsigned char)((md[8] & 0x3f) | 0x80);
    for (i = 0, o = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[md[i] >> 4];
        out[o++] = hex[md[i] & 0x0f];
    }
    out[o] = '\0';
}

/* ---------------------------------------------------------------------------------------- */
/* redis:// URIs.                                                                           */
/* ---------------------------------------------------------------------------------------- */

enum pct_status { PCT_OK = 0, PCT_BAD_ESCAPE, PCT_TOO_LONG, PCT_NUL };

/* Decodes s[0..n) with its %XX escapes into out (outsz bytes, NUL-terminated). */
static enum pct_status pct_decode(const char *s, size_t n, char *out, size_t outsz)
{
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            int hi, lo;
            if (i + 2 >= n)
                return PCT_BAD_ESCAPE;
            hi = hex_value(s[i + 1]);
            lo = hex_value(s[i + 2]);
            if (hi < 0 || lo < 0)
                return PCT_BAD_ESCAPE;
            ch = (char)(hi * 16 + lo);
            if (ch == '\0')
                return PCT_NUL;
            i += 2;
        }
        if (o + 1 >= outsz)
            return PCT_TOO_LONG;
        out[o++] = ch;
    }
    out[o] = '\0';
    return PCT_OK;
}

/* Decodes a part into out, or writes why not ("WHAT: ...") into err. */
static int decode_part(const char *what, const char *s, size_t n, char *out, size_t outsz,
                       char *err, size_t errsz)
{
    switch (pct_decode(s, n, out, outsz)) {
    case PCT_OK:
        return 0;
    case PCT_BAD_ESCAPE:
        return say(err, errsz, "%s: a '%%' must start an escape of two hex digits (%%XX)", what);
    case PCT_TOO_LONG:
        return say(err, errsz, "%s: longer than %zu bytes", what, outsz - 1);
    case PCT_NUL:
        return say(err, errsz, "%s: must not contain NUL (%%00)", what);
    }
    return SL_EINVAL;
}

/*
 * Parses s[0..n) as plain decimal (no sign, no leading zeros, at most 9 digits) within
 * [min, max] into *out. Returns false when it is not such a number or out of range.
 */
static bool parse_decimal(const char *s, size_t n, long min, long max, long *out)
{
    long v = 0;
    size_t i;

    if (n == 0 || n > 9 || (s[0] == '0' && n > 1))
        return false;
    for (i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

/*
 * " 'escaped s'" for a message, or "" when hide is set (the text may hold part of a password
 * that was not percent-encoded).
 */
static const char *quoted(const char *s, size_t n, bool hide, char *buf, size_t bufsz)
{
    char esc[96];

    if (hide) {
        buf[0] = '\0';
        return buf;
    }
    snprintf(buf, bufsz, " '%s'", sl_log_escape(s, n, esc, sizeof(esc)));
    return buf;
}

/* user info "[user]:password" (s[0..n), before the last '@' of the authority). */
static int parse_userinfo(const char *s, size_t n, struct pl_redis_uri *out, char *err,
                          size_t errsz)
{
    const char *colon;
    int rc;

    if (memchr(s, '@', n))
        return say(err, errsz, "the user info contains '@': percent-encode it as %%40");
    colon = memchr(s, ':', n);
    if (!colon)
        return say(err, errsz, "the user info must be [user]:password (AUTH needs a password)");
    rc = decode_part("user name", s, (size_t)(colon - s), out->user, sizeof(out->user), err, errsz);
    if (rc < 0)
        return rc;
    rc = decode_part("password", colon + 1, (size_t)(s + n - colon - 1), out->password,
                     sizeof(out->password), err, errsz);
    if (rc < 0)
        return rc;
    if (!out->password[0])
        return say(err, errsz,
                   "the password must not be empty (leave out the user info "
                   "when there is none)");
    return 0;
}

/* host[:port] (s[0..n)); hide: do not quote them in messages. */
static int parse_hostport(const char *s, size_t n, bool hide, struct pl_redis_uri *out, char *err,
                          size_t errsz)
{
    const char *host = s, *port = NULL;
    size_t hlen, plen = 0, i;
    unsigned char addr[16];
    char q[128];
    long v;

    if (n > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        if (!rb)
            return say(err, errsz, "host%s: an IPv6 address needs its closing ']'",
                       quoted(s, n, hide, q, sizeof(q)));
        host = s + 1;
        hlen = (size_t)(rb - host);
        if (rb + 1 < s + n) {
            if (rb[1] != ':')
                return say(err, errsz, "host%s: expected ':port' after the IPv6 address",
                           quoted(s, n, hide, q, sizeof(q)));
            port = rb + 2;
            plen = (size_t)(s + n - port);
        }
        if (hlen == 0 || hlen >= sizeof(out->host))
            return say(err, errsz, "host%s: not an IPv6 address", quoted(s, n, hide, q, sizeof(q)));
        memcpy(out->host, host, hlen);
        out->host[hlen] = '\0';
        if (inet_pton(AF_INET6, out->host, addr) != 1)
            return say(err, errsz, "host%s: not an IPv6 address", quoted(s, n, hide, q, sizeof(q)));
    } else {
        const char *colon = memchr(s, ':', n);
        hlen = colon ? (size_t)(colon - s) : n;
        if (colon) {
            port = colon + 1;
            plen = (size_t)(s + n - port);
        }
        if (hlen == 0)
            return say(err, errsz, "missing host (redis://host:port/stream)");
        if (hlen > 253)
            return say(err, errsz, "host: longer than 253 characters");
        for (i = 0; i < hlen; i++) {
            char ch = host[i];
            if (!is_alpha(ch) && !is_digit(ch) && (i == 0 || (ch != '.' && ch != '-')))
                return say(err, errsz, "host%s: not a host name, IPv4 address or [IPv6] address",
                           quoted(host, hlen, hide, q, sizeof(q)));
        }
        memcpy(out->host, host, hlen);
        out->host[hlen] = '\0';
    }
    if (port && !parse_decimal(port, plen, 1, REDIS_PORT_MAX, &v))
        return say(err, errsz, "port%s: must be a number 1..%d",
                   quoted(port, plen, hide, q, sizeof(q)), REDIS_PORT_MAX);
    out->port = port ? (int)v : REDIS_PORT_DEFAULT;
    return 0;
}

enum redis_qkey { QK_VISIBILITY, QK_RECEIVES, QK_DLQ, QK_GROUP, QK_TLS, QK_COUNT };

static const char *const redis_qkeys[QK_COUNT] = {
    [QK_VISIBILITY] = "VisibilityTimeout",
    [QK_RECEIVES] = "maxReceiveCount",
    [QK_DLQ] = "deadLetterTarget",
    [QK_GROUP] = "ConsumerGroup",
    [QK_TLS] = "tls",
};

/*
 * One key=value of the query; seen tracks duplicates. Names (deadLetterTarget, ConsumerGroup)
 * are percent-decoded; numbers and tls are taken as written, so "%33%30" is not 30.
 */
static int parse_query_pair(const char *s, size_t n, unsigned *seen, struct pl_redis_uri *out,
                            char *err, size_t errsz)
{
    const char *eq = memchr(s, '=', n), *raw;
    char value[512], esc[96];
    size_t klen, k, rawlen;
    long v;
    int rc;

    if (n == 0)
        return say(err, errsz, "empty query parameter (a stray '?' or '&')");
    klen = eq ? (size_t)(eq - s) : n;
    for (k = 0; k < QK_COUNT; k++)
        if (strlen(redis_qkeys[k]) == klen && memcmp(redis_qkeys[k], s, klen) == 0)
            break;
    if (k == QK_COUNT) {
        sl_log_escape(s, klen, esc, sizeof(esc));
        for (k = 0; k < QK_COUNT; k++)
            if (strlen(redis_qkeys[k]) == klen && strncasecmp(redis_qkeys[k], s, klen) == 0)
                return say(err, errsz, "unknown query key '%s' (query keys are case-sensitive: %s)",
                           esc, redis_qkeys[k]);
        return say(err, errsz,
                   "unknown query key '%s' (known: VisibilityTimeout, maxReceiveCount, "
                   "deadLetterTarget, ConsumerGroup, tls)",
                   esc);
    }
    if (*seen & (1u << k))
        return say(err, errsz, "duplicate query key '%s'", redis_qkeys[k]);
    *seen |= 1u << k;
    if (!eq)
        return say(err, errsz, "%s: needs a value (%s=...)", redis_qkeys[k], redis_qkeys[k]);
    raw = eq + 1;
    rawlen = (size_t)(s + n - raw);
    if (rawlen == 0)
        return say(err, errsz, "%s: must not be empty", redis_qkeys[k]);
    if (k == QK_DLQ || k == QK_GROUP) {
        rc = decode_part(redis_qkeys[k], raw, rawlen, value,
                         k == QK_GROUP ? sizeof(out->group) : sizeof(value), err, errsz);
        if (rc < 0)
            return rc;
    } else {
        /* numbers and keywords: a long value is wrong anyway, and a cut one still is */
        snprintf(value, sizeof(value), "%.*s", (int)(rawlen < 64 ? rawlen : 64), raw);
    }
    sl_log_escape(value, strlen(value), esc, sizeof(esc));
    switch ((enum redis_qkey)k) {
    case QK_VISIBILITY:
        if (!parse_decimal(raw, rawlen, 0, REDIS_VISIBILITY_MAX, &v))
            return say(err, errsz,
                       "VisibilityTimeout: %s is out of range 0..%d (whole seconds, no leading "
                       "zeros)",
                       esc, REDIS_VISIBILITY_MAX);
        out->visibility_timeout_s = (int)v;
        break;
    case QK_RECEIVES:
        if (!parse_decimal(raw, rawlen, 1, REDIS_RECEIVE_MAX, &v))
            return say(err, errsz, "maxReceiveCount: %s is out of range 1..%d (no leading zeros)",
                       esc, REDIS_RECEIVE_MAX);
        out->max_receive_count = (int)v;
        break;
    case QK_DLQ:
        /* both buffers have the same size: value was bounded by it */
        memcpy(out->dead_letter, value, strlen(value) + 1);
        break;
    case QK_GROUP:
        memcpy(out->group, value, strlen(value) + 1);
        break;
    case QK_TLS:
        if (rawlen == 4 && memcmp(raw, "true", 4) == 0)
            /* XXX: Debian 12's hiredis is built without its SSL library. */
            return say(err, errsz,
                       "tls: true is not supported by this build (hiredis without "
                       "TLS); use a TLS tunnel to the server");
        if (!(rawlen == 5 && memcmp(raw, "false", 5) == 0))
            return say(err, errsz, "tls: '%s' must be true or false", esc);
        break;
    case QK_COUNT:
        break;
    }
    return 0;
}

_Static_assert(sizeof(((struct pl_redis_uri *)0)->dead_letter) == 512, "value[] above");

static int redis_uri_parse(const char *uri, struct pl_redis_uri *out, char *err, size_t errsz)
{
    const char *auth, *auth_end, *at, *path, *path_end, *slash, *stream, *p;
    unsigned seen = 0;
    bool hide;
    char q[128];
    long db;
    int rc;

    if (strncmp(uri, REDIS_SCHEME, strlen(REDIS_SCHEME)) != 0)
        return say(err, errsz, "not a redis:// URI");
    for (p = uri; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return say(err, errsz, "spaces and control characters must be percent-encoded");
        if (*p == '#')
            return say(err, errsz, "'#' must be percent-encoded (%%23)");
    }
    auth = uri + strlen(REDIS_SCHEME);
    auth_end = auth + strcspn(auth, "/?");
    at = NULL;
    for (p = auth; p < auth_end; p++)
        if (*p == '@')
            at = p;
    /* An '@' after the authority hints at a password with an unescaped '/' or '?': the host
     * and port we would quote may be pieces of it. */
    hide = strchr(auth_end, '@') != NULL;
    if (at) {
        rc = parse_userinfo(auth, (size_t)(at - auth), out, err, errsz);
        if (rc < 0)
            return rc;
        auth = at + 1;
    }
    rc = parse_hostport(auth, (size_t)(auth_end - auth), hide, out, err, errsz);
    if (rc < 0)
        return rc;

    if (*auth_end != '/')
        return say(err, errsz, "missing stream name (redis://host:port/stream)");
    path = auth_end + 1;
    path_end = path + strcspn(path, "?");
    slash = memchr(path, '/', (size_t)(path_end - path));
    stream = path;
    if (slash) {
        if (!parse_decimal(path, (size_t)(slash - path), 0, REDIS_DB_MAX, &db))
            return say(err, errsz, "database%s: must be a number 0..%ld",
                       quoted(path, (size_t)(slash - path), hide, q, sizeof(q)), REDIS_DB_MAX);
        out->db = (int)db;
        stream = slash + 1;
        if (memchr(stream, '/', (size_t)(path_end - stream)))
            return say(err, errsz,
                       "the path must be /stream or /DB/stream (percent-encode a "
                       "'/' of the stream name as %%2F)");
    }
    if (stream == path_end)
        return say(err, errsz, "missing stream name (redis://host:port/stream)");
    rc = decode_part("stream name", stream, (size_t)(path_end - stream), out->stream,
                     sizeof(out->stream), err, errsz);
    if (rc < 0)
        return rc;

    if (*path_end == '?') {
        const char *s = path_end + 1;
        for (;;) {
            size_t n = strcspn(s, "&");
            rc = parse_query_pair(s, n, &seen, out, err, errsz);
            if (rc < 0)
                return rc;
            if (!s[n])
                break;
            s += n + 1;
        }
    }
    if ((out->max_receive_count > 0) != (out->dead_letter[0] != '\0'))
        return say(err, errsz,
                   "maxReceiveCount and deadLetterTarget must come together (they "
                   "form the redrive policy)");
    if (out->dead_letter[0] && strcmp(out->dead_letter, out->stream) == 0)
        return say(err, errsz, "deadLetterTarget: must differ from the stream itself");
    return 0;
}

/*
 * Parses a redis:// source URI (grammar in pollers_internal.h) into out: host (IPv6 without
 * its brackets), port (default 6379), db (default 0), user and password (percent-decoded, ""
 * when absent), stream (percent-decoded), VisibilityTimeout (default 30), the redrive policy
 * (0 and "" when absent) and ConsumerGroup ("" when absent). Returns 0, or SL_EINVAL with a
 * sentence in err (errsz bytes; err may be NULL) and out all zeroes.
 */
int pl_redis_uri_parse(const char *uri, struct pl_redis_uri *out, char *err, size_t errsz)
{
    int rc;

    memset(out, 0, sizeof(*out));
    out->port = REDIS_PORT_DEFAULT;
    out->visibility_timeout_s = REDIS_VISIBILITY_DEFAULT;
    if (!uri)
        rc = say(err, errsz, "missing URI");
    else
        rc = redis_uri_parse(uri, out, err, errsz);
    if (rc < 0)
        memset(out, 0, sizeof(*out)); /* leaves no half-parsed password behind */
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Validation.                                                                              */
/* ---------------------------------------------------------------------------------------- */

/* [A-Za-z0-9_-]{1,64} */
static bool valid_function_name(const char *s)
{
    size_t n = strlen(s), i;

    if (n < 1 || n > MC_NAME_MAX)
        return false;
    for (i = 0; i < n; i++)
        if (!is_alpha(s[i]) && !is_digit(s[i]) && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

/* 8-4-4-4-12 hexadecimal digits (either case). */
static bool valid_uuid(const char *s)
{
    size_t i;

    for (i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : hex_value(s[i]) < 0)
            return false;
    }
    return s[36] == '\0';
}

/*
 * Checks a mapping (contract in pollers.h). The order of the checks is the order of Lambda's
 * fields; the first problem is reported. A kafka:// or postgres:// source is "not supported by
 * this build yet", any other scheme is unsupported. Returns 0 or SL_EINVAL.
 */
int pl_mapping_validate(const struct pl_mapping_config *mc, char *err, size_t errsz)
{
    struct pl_redis_uri uri;
    char why[384], esc[64];
    const char *arn = mc->event_source_arn;
    int batch;
    double window;
    size_t sl;

    if (err && errsz > 0)
        err[0] = '\0';
    if (!mc->function_name)
        return say(err, errsz, "FunctionName: missing");
    if (!valid_function_name(mc->function_name))
        return say(err, errsz, "FunctionName: \"%s\" must match [A-Za-z0-9_-]{1,64}",
                   sl_log_escape(mc->function_name, strlen(mc->function_name), esc, sizeof(esc)));
    if (!arn || !arn[0])
        return say(err, errsz, "EventSourceArn: missing");
    sl = scheme_len(arn);
    if (sl == 0)
        return say(err, errsz,
                   "EventSourceArn: not a source URI (this build supports "
                   "redis://host:port/stream)");
    if ((sl == 5 && strncmp(arn, "kafka", 5) == 0) ||
        (sl == 8 && strncmp(arn, "postgres", 8) == 0) ||
        (sl == 10 && strncmp(arn, "postgresql", 10) == 0))
        return say(err, errsz,
                   "EventSourceArn: %.*s:// sources are not supported by this "
                   "build yet",
                   (int)sl, arn);
    if (!(sl == 5 && strncmp(arn, "redis", 5) == 0))
        return say(err, errsz,
                   "EventSourceArn: unsupported source scheme '%s' (this build "
                   "supports redis://)",
                   sl_log_escape(arn, sl, esc, sizeof(esc)));
    if (pl_redis_uri_parse(arn, &uri, why, sizeof(why)) < 0)
        return say(err, errsz, "EventSourceArn: %s", why);
    memset(&uri, 0, sizeof(uri)); /* the password */

    if (mc->batch_size != 0 && (mc->batch_size < MC_BATCH_MIN || mc->batch_size > MC_BATCH_MAX))
        return say(err, errsz, "BatchSize: %d is out of range %d..%d", mc->batch_size, MC_BATCH_MIN,
                   MC_BATCH_MAX);
    if (isnan(mc->window_s))
        return say(err, errsz, "MaximumBatchingWindowInSeconds: not a number");
    if (mc->window_s >= 0 && mc->window_s > MC_WINDOW_MAX)
        return say(err, errsz, "MaximumBatchingWindowInSeconds: %g is out of range 0..%d",
                   mc->window_s, MC_WINDOW_MAX);
    /* (long) is exact here (0..300), and it keeps libm out of the link */
    if (mc->window_s >= 0 && mc->window_s != (double)(long)mc->window_s)
        return say(err, errsz,
                   "MaximumBatchingWindowInSeconds: %g is not a whole number of "
                   "seconds",
                   mc->window_s);
    batch = mc->batch_size ? mc->batch_size : REDIS_BATCH_DEFAULT;
    window = mc->window_s >= 0 ? mc->window_s : REDIS_WINDOW_DEFAULT;
    if (batch > REDIS_BATCH_NO_WINDOW_MAX && window < 1)
        return say(err, errsz,
                   "BatchSize: %d is above %d, which needs "
                   "MaximumBatchingWindowInSeconds of at least 1 (Lambda's rule "
                   "for standard queues)",
                   batch, REDIS_BATCH_NO_WINDOW_MAX);
    if (mc->max_concurrency != 0 &&
        (mc->max_concurrency < MC_CONCURRENCY_MIN || mc->max_concurrency > MC_CONCURRENCY_MAX))
        return say(err, errsz, "ScalingConfig.MaximumConcurrency: %d is out of range %d..%d",
                   mc->max_concurrency, MC_CONCURRENCY_MIN, MC_CONCURRENCY_MAX);
    if (mc->uuid[0] && !valid_uuid(mc->uuid))
        return say(err, errsz, "UUID: must be 36 characters, 8-4-4-4-12 hexadecimal digits");
    return 0;
}
