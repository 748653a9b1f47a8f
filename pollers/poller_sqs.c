/*
 * poller_sqs.c - SQS-shaped events for queue sources (Redis streams): one record per stream
 * entry (lambda-spec 2.1) and the function's partial batch response (lambda-spec 2.6). The
 * event's shape, and every decision below about it, is written down for function authors in
 * schemas/sqs-event.schema.json; this file and that schema change together.
 *
 * The records are written with the pollers' streaming JSON writer (poller_json.h; why it is
 * not jansson is in poller_json.c): from the hiredis reply's bytes straight into reserved space
 * of the caller's evbuffer, with UTF-8 repair, JSON escaping (twice for the object body, whose
 * JSON text is itself a JSON string) and MD5 in that one pass (names and attribute values are
 * also read once before, by a UTF-8 check). Everything structural is a literal in this file.
 * The output is tested on hostile input (NUL, control bytes, quotes, backslashes, invalid and
 * truncated UTF-8) by tests/unit/test_sqs_event.c, which parses every output back with jansson,
 * and fuzzed by poller_sqs_fuzz.c. The partial batch response is small and arrives once per
 * batch: it is read with jansson.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "pollers/poller_json.h"
#include "pollers/pollers_internal.h"

/* ---------------------------------------------------------------------------------------- */
/* Records                                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* A field of the entry as the event names it. */
struct sqs_field {
    const uint8_t *name; /* the entry's name, or its repaired copy when it is not UTF-8 */
    size_t nlen;
    size_t idx; /* position in the entry */
};

/* Entries with up to this many fields need no allocation. */
#define SQS_FIELDS_ON_STACK 16

static int name_cmp(const struct sqs_field *a, const struct sqs_field *b)
{
    size_t m = a->nlen < b->nlen ? a->nlen : b->nlen;
    int c = m ? memcmp(a->name, b->name, m) : 0;

    if (c != 0)
        return c;
    return a->nlen < b->nlen ? -1 : a->nlen > b->nlen;
}

/* By name (bytes, i.e. code point order), then by position: a total order. */
static int field_cmp(const void *pa, const void *pb)
{
    const struct sqs_field *a = pa, *b = pb;
    int c = name_cmp(a, b);

    if (c != 0)
        return c;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static void fields_sort(struct sqs_field *f, size_t n)
{
    size_t i, j;
    struct sqs_field t;

    if (n > SQS_FIELDS_ON_STACK) {
        qsort(f, n, sizeof(*f), field_cmp);
        return;
    }
    for (i = 1; i < n; i++) { /* insertion sort: the usual entry has a handful of fields */
        t = f[i];
        for (j = i; j > 0 && field_cmp(&f[j - 1], &t) > 0; j--)
            f[j] = f[j - 1];
        f[j] = t;
    }
}

static bool is_body(const uint8_t *name, size_t len)
{
    return len == 4 && memcmp(name, "body", 4) == 0;
}

/*
 * Fills f[0..nf) with the entry's fields sorted by name (repairing names that are not UTF-8
 * into *repaired, which the caller frees), sets keep[i] for the field at entry position i
 * when no later field has the same name (last wins), and *body to the position of the kept
 * "body" field or SIZE_MAX. Returns 0, SL_ENOMEM, SL_ETOOBIG.
 */
static int fields_prepare(const struct pl_stream_entry *e, struct sqs_field *f, uint8_t *keep,
                          uint8_t **repaired, size_t *body)
{
    size_t nf = e->nfields, i, bad = 0, off = 0;
    uint8_t *fix = NULL;

    *body = SIZE_MAX;
    for (i = 0; i < nf; i++) {
        const uint8_t *name = (const uint8_t *)e->names[i];

        /* SQS's attribute digest carries lengths in 32 bits; Redis values stop at 512 MB. */
        if (e->name_lens[i] > UINT32_MAX || e->value_lens[i] > UINT32_MAX)
            return SL_ETOOBIG;
        f[i].name = name;
        f[i].nlen = e->name_lens[i];
        f[i].idx = i;
        if (!pl_jw_utf8_valid(name, f[i].nlen)) {
            if (bad > SIZE_MAX / 3 - f[i].nlen)
                return SL_ETOOBIG;
            bad += f[i].nlen;
        }
    }
    if (bad > 0) {
        fix = malloc(3 * bad);
        if (!fix)
            return SL_ENOMEM;
        for (i = 0; i < nf; i++) {
            if (pl_jw_utf8_valid(f[i].name, f[i].nlen))
                continue;
            f[i].nlen = pl_jw_utf8_repair(f[i].name, f[i].nlen, fix + off);
            f[i].name = fix + off;
            off += f[i].nlen;
        }
    }
    *repaired = fix;
    fields_sort(f, nf);
    for (i = 0; i < nf; i++) {
        bool last = i + 1 == nf || name_cmp(&f[i], &f[i + 1]) != 0;

        keep[f[i].idx] = last;
        if (last && is_body(f[i].name, f[i].nlen))
            *body = f[i].idx;
    }
    return 0;
}

/* Starts md over with alg (NULL: EVP_md5()). */
static void md_begin(struct pl_jw *w, EVP_MD_CTX *md, const EVP_MD *alg)
{
    if (!w->err && EVP_DigestInit_ex(md, alg ? alg : EVP_md5(), NULL) != 1)
        w->err = SL_EUNSUPPORTED; /* e.g. a FIPS-only provider, which refuses MD5 */
}

static void md_hex(struct pl_jw *w, EVP_MD_CTX *md, char hex[33])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0, i;

    hex[0] = '\0';
    if (w->err)
        return;
    if (EVP_DigestFinal_ex(md, d, &dl) != 1 || dl != 16) {
        w->err = SL_EUNSUPPORTED;
        return;
    }
    for (i = 0; i < 16; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[32] = '\0';
}

static void md_u32(struct pl_jw *w, EVP_MD_CTX *md, size_t v)
{
    uint8_t be[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};

    if (!w->err && EVP_DigestUpdate(md, be, 4) != 1)
        w->err = SL_EUNSUPPORTED;
}

static void md_bytes(struct pl_jw *w, EVP_MD_CTX *md, const void *s, size_t n)
{
    if (!w->err && n > 0 && EVP_DigestUpdate(md, s, n) != 1)
        w->err = SL_EUNSUPPORTED;
}

/* "body":"<the body field>" with md5 of its (repaired) text in hex. */
static void put_body_field(struct pl_jw *w, EVP_MD_CTX *md, const EVP_MD *alg,
                           const struct pl_stream_entry *e, size_t body, char hex[33])
{
    pl_jw_lit(w, ",\"body\":\"");
    md_begin(w, md, alg);
    w->md = md;
    pl_jw_str(w, (const uint8_t *)e->values[body], e->value_lens[body], false);
    w->md = NULL;
    md_hex(w, md, hex);
    pl_jw_lit(w, "\"");
}

/* "body":"{\"f1\":\"v1\",...}": the kept fields in entry order; md5 of that JSON text. */
static void put_body_object(struct pl_jw *w, EVP_MD_CTX *md, const EVP_MD *alg,
                            const struct pl_stream_entry *e, const uint8_t *keep, char hex[33])
{
    size_t i;
    bool first = true;

    pl_jw_lit(w, ",\"body\":\"");
    md_begin(w, md, alg);
    w->md = md;
    pl_jw_text_lit(w, "{");
    for (i = 0; i < e->nfields; i++) {
        if (!keep[i])
            continue;
        if (!first)
            pl_jw_text_lit(w, ",");
        first = false;
        pl_jw_text_lit(w, "\"");
        pl_jw_str(w, (const uint8_t *)e->names[i], e->name_lens[i], true);
        pl_jw_text_lit(w, "\":\"");
        pl_jw_str(w, (const uint8_t *)e->values[i], e->value_lens[i], true);
        pl_jw_text_lit(w, "\"");
    }
    pl_jw_text_lit(w, "}");
    w->md = NULL;
    md_hex(w, md, hex);
    pl_jw_lit(w, "\"");
}

/*
 * "messageAttributes":{...}: every kept field but "body", in name order, a String attribute
 * when its value is UTF-8 and a Binary one (base64) otherwise. Also computes SQS's
 * MD5OfMessageAttributes over the same attributes in the same order. Returns how many.
 */
static size_t put_attributes(struct pl_jw *w, EVP_MD_CTX *md, const EVP_MD *alg,
                             const struct pl_stream_entry *e, const struct sqs_field *f,
                             const uint8_t *keep, char hex[33])
{
    size_t k, count = 0;

    pl_jw_lit(w, ",\"messageAttributes\":{");
    for (k = 0; k < e->nfields && !w->err; k++) {
        const struct sqs_field *a = &f[k];
        const uint8_t *v = (const uint8_t *)e->values[a->idx];
        size_t vlen = e->value_lens[a->idx];
        bool bin;

        if (!keep[a->idx] || is_body(a->name, a->nlen))
            continue;
        bin = !pl_jw_utf8_valid(v, vlen);
        if (count++ > 0)
            pl_jw_lit(w, ",");
        else
            md_begin(w, md, alg); /* no digest at all for records without attributes */
        pl_jw_lit(w, "\"");
        pl_jw_str(w, a->name, a->nlen, false); /* valid UTF-8 by now: escaping only */
        if (bin) {
            struct pl_jw_b64 b = {.n = 0};

            pl_jw_lit(w, "\":{\"binaryValue\":\"");
            pl_jw_b64(w, &b, v, vlen);
            pl_jw_b64_end(w, &b);
            pl_jw_lit(w, "\",\"stringListValues\":[],\"binaryListValues\":[],"
                         "\"dataType\":\"Binary\"}");
        } else {
            pl_jw_lit(w, "\":{\"stringValue\":\"");
            pl_jw_str(w, v, vlen, false);
            pl_jw_lit(w, "\",\"stringListValues\":[],\"binaryListValues\":[],"
                         "\"dataType\":\"String\"}");
        }
        /* Name, data type, transport type (1 String, 2 Binary), value; lengths 32-bit BE. */
        md_u32(w, md, a->nlen);
        md_bytes(w, md, a->name, a->nlen);
        md_u32(w, md, 6);
        md_bytes(w, md, bin ? "Binary" : "String", 6);
        md_bytes(w, md, bin ? "\2" : "\1", 1);
        md_u32(w, md, vlen);
        md_bytes(w, md, v, vlen);
    }
    pl_jw_lit(w, "}");
    if (count > 0)
        md_hex(w, md, hex);
    return count;
}

static void put_cstr(struct pl_jw *w, const char *s)
{
    s = s ? s : "";
    pl_jw_str(w, (const uint8_t *)s, strlen(s), false);
}

/*
 * Appends one SQS record (lambda-spec 2.1) for the stream entry e to out as compact JSON,
 * without a separator: the caller writes {"Records":[ r1 , r2 ... ]}. The shape, field by
 * field, is schemas/sqs-event.schema.json:
 *   messageId      e->id, which is also what an itemIdentifier of a partial batch response
 *                  must name (see pl_sqs_parse_batch_response);
 *   receiptHandle  base64 (standard, padded) of "<ctx->event_source_arn>|<e->id>"; opaque to
 *                  functions; split at the last '|' to read it back (ids have none);
 *   body           the entry's "body" field when it has one, and its other fields become
 *                  String message attributes in name order; otherwise the JSON text of an
 *                  object of all fields in entry order ({"f1":"v1",...}) and no attributes;
 *   attributes     ApproximateReceiveCount (e->receive_count), SentTimestamp (the part of
 *                  the id before '-': Redis's milliseconds), SenderId (ctx->sender_id),
 *                  ApproximateFirstReceiveTimestamp (e->first_receive_ms), all strings;
 *   md5OfBody      hex MD5 of the body text as delivered (UTF-8);
 *   md5OfMessageAttributes  SQS's digest of the attributes, only when there are some;
 *   eventSource "aws:sqs", eventSourceARN (ctx->event_source_arn), awsRegion (ctx->region).
 * Bytes that are not UTF-8: in the body, in names and in the object body's values each
 * maximal ill-formed subpart becomes U+FFFD; an attribute value that is not UTF-8 is carried
 * exactly, base64, as a "Binary" attribute. Repeated names: the last one wins (for the object
 * body it appears once, at its last position). e, its strings and ctx are borrowed for the
 * call; nothing is kept. The output is built in place in out (no intermediate copy).
 * Returns 0; SL_ENOMEM; SL_ETOOBIG (a name or value of 4 GiB or more);
 * SL_EUNSUPPORTED (OpenSSL refuses MD5, e.g. in FIPS-only mode). On failure out may end with
 * part of a record: the caller discards out (that batch cannot be sent anyway).
 */
int pl_sqs_append_record(struct evbuffer *out, const struct pl_stream_entry *e,
                         const struct pl_sqs_ctx *ctx)
{
    struct sqs_field f_stack[SQS_FIELDS_ON_STACK], *f = f_stack;
    uint8_t keep_stack[SQS_FIELDS_ON_STACK], *keep = keep_stack, *repaired = NULL;
    size_t nf = e->nfields, body = SIZE_MAX, nattr = 0;
    const char *id = e->id ? e->id : "", *dash;
    char body_md5[33], attr_md5[33];
    EVP_MD_CTX *md = NULL;
    struct pl_jw_b64 b = {.n = 0};
    struct pl_jw w;
    int rc;

    if (nf > SQS_FIELDS_ON_STACK) {
        if (nf > SIZE_MAX / (sizeof(*f) + 1))
            return SL_ETOOBIG;
        f = malloc(nf * (sizeof(*f) + 1));
        if (!f)
            return SL_ENOMEM;
        keep = (uint8_t *)(f + nf);
    }
    rc = fields_prepare(e, f, keep, &repaired, &body);
    if (rc != 0)
        goto out;
    md = EVP_MD_CTX_new();
    if (!md) {
        rc = SL_ENOMEM;
        goto out;
    }

    pl_jw_init(&w, out);
    pl_jw_lit(&w, "{\"messageId\":\"");
    put_cstr(&w, id);
    pl_jw_lit(&w, "\",\"receiptHandle\":\"");
    if (ctx->event_source_arn)
        pl_jw_b64(&w, &b, ctx->event_source_arn, strlen(ctx->event_source_arn));
    pl_jw_b64(&w, &b, "|", 1);
    pl_jw_b64(&w, &b, id, strlen(id));
    pl_jw_b64_end(&w, &b);
    pl_jw_lit(&w, "\"");

    if (body != SIZE_MAX)
        put_body_field(&w, md, ctx->md5, e, body, body_md5);
    else
        put_body_object(&w, md, ctx->md5, e, keep, body_md5);

    pl_jw_lit(&w, ",\"attributes\":{\"ApproximateReceiveCount\":\"");
    pl_jw_int(&w, e->receive_count);
    pl_jw_lit(&w, "\",\"SentTimestamp\":\"");
    dash = strchr(id, '-');
    pl_jw_str(&w, (const uint8_t *)id, dash ? (size_t)(dash - id) : strlen(id), false);
    pl_jw_lit(&w, "\",\"SenderId\":\"");
    put_cstr(&w, ctx->sender_id);
    pl_jw_lit(&w, "\",\"ApproximateFirstReceiveTimestamp\":\"");
    pl_jw_int(&w, e->first_receive_ms);
    pl_jw_lit(&w, "\"}");

    if (body != SIZE_MAX)
        nattr = put_attributes(&w, md, ctx->md5, e, f, keep, attr_md5);
    else
        pl_jw_lit(&w, ",\"messageAttributes\":{}");

    pl_jw_lit(&w, ",\"md5OfBody\":\"");
    pl_jw_bytes(&w, body_md5, strlen(body_md5));
    if (nattr > 0) {
        pl_jw_lit(&w, "\",\"md5OfMessageAttributes\":\"");
        pl_jw_bytes(&w, attr_md5, strlen(attr_md5));
    }
    pl_jw_lit(&w, "\",\"eventSource\":\"aws:sqs\",\"eventSourceARN\":\"");
    put_cstr(&w, ctx->event_source_arn);
    pl_jw_lit(&w, "\",\"awsRegion\":\"");
    put_cstr(&w, ctx->region);
    pl_jw_lit(&w, "\"}");
    rc = pl_jw_commit(&w);

out:
    EVP_MD_CTX_free(md);
    free(repaired);
    if (f != f_stack)
        free(f);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Partial batch responses                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* Up to this many reported failures are looked up by a scan of the batch; more, by sorting
 * the batch's ids once (O(n log n + m log n) instead of O(n m)). */
#define SQS_SCAN_MAX 8

struct sqs_id {
    const char *s;
    size_t len;
    size_t idx;
};

static int id_cmp(const void *pa, const void *pb)
{
    const struct sqs_id *a = pa, *b = pb;
    size_t m = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->s, b->s, m);

    if (c != 0)
        return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

/* Marks every record whose id is s[0..len). Returns whether there was one. */
static bool mark_sorted(const struct sqs_id *sorted, size_t n, const char *s, size_t len,
                        bool *failed)
{
    struct sqs_id key = {.s = s, .len = len};
    size_t lo = 0, hi = n, mid;
    bool found = false;

    while (lo < hi) { /* lower bound */
        mid = lo + (hi - lo) / 2;
        if (id_cmp(&sorted[mid], &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < n && id_cmp(&sorted[lo], &key) == 0; lo++) {
        failed[sorted[lo].idx] = true;
        found = true;
    }
    return found;
}

static bool mark_scan(const char *const *ids, size_t n, const char *s, size_t len, bool *failed)
{
    size_t i;
    bool found = false;

    for (i = 0; i < n; i++) {
        if (ids[i][0] == s[0] && strlen(ids[i]) == len && memcmp(ids[i], s, len) == 0) {
            failed[i] = true;
            found = true;
        }
    }
    return found;
}

/*
 * Reads a function's response under ReportBatchItemFailures for an SQS-shaped batch of n
 * records whose messageIds are ids[0..n) (NUL-terminated, borrowed for the call). Lambda's
 * rules (lambda-spec 2.6):
 *   all succeeded: an empty body (or only JSON whitespace), null, an object without
 *     batchItemFailures (other keys are ignored), batchItemFailures null or [];
 *   these failed: batchItemFailures is an array of objects whose "itemIdentifier" is a
 *     non-empty string equal to a messageId of the batch (other keys of an item are ignored;
 *     an id listed twice is fine);
 *   invalid, so the whole batch failed: not JSON (including trailing bytes, invalid UTF-8),
 *     a top level that is neither an object nor null, batchItemFailures not an array or null,
 *     an item that is not an object, lacks itemIdentifier, or whose itemIdentifier is null,
 *     not a string, empty, or no messageId of the batch.
 * Names are case-sensitive. Cost: O(n) without failures, O(n log n) with more than a few.
 * Returns 0 with failed[i] true exactly for the reported records (false for the others);
 * SL_EPROTO when invalid, SL_ENOMEM; on any error every failed[i] is true, so a caller that
 * only looks at failed[] still retries the whole batch. failed may be NULL when n is 0.
 */
int pl_sqs_parse_batch_response(const uint8_t *body, size_t len, const char *const *ids, size_t n,
                                bool *failed)
{
    struct sqs_id *sorted = NULL;
    json_t *root = NULL, *list, *item, *ident;
    size_t i, m;
    int rc;

    for (i = 0; i < n; i++)
        failed[i] = false;
    rc = pl_batch_failures(body, len, &root, &list);
    if (rc || !list)
        goto out;
    m = json_array_size(list);
    if (m > SQS_SCAN_MAX && n > 0) {
        sorted = malloc(n * sizeof(*sorted));
        if (!sorted) {
            rc = SL_ENOMEM;
            goto out;
        }
        for (i = 0; i < n; i++) {
            sorted[i].s = ids[i];
            sorted[i].len = strlen(ids[i]);
            sorted[i].idx = i;
        }
        qsort(sorted, n, sizeof(*sorted), id_cmp);
    }
    json_array_foreach(list, i, item)
    {
        const char *s;
        size_t slen;
        bool found;

        ident = json_is_object(item) ? json_object_get(item, "itemIdentifier") : NULL;
        if (!json_is_string(ident) || json_string_length(ident) == 0) {
            rc = SL_EPROTO;
            goto out;
        }
        s = json_string_value(ident);
        slen = json_string_length(ident);
        found =
            sorted ? mark_sorted(sorted, n, s, slen, failed) : mark_scan(ids, n, s, slen, failed);
        if (!found) {
            rc = SL_EPROTO;
            goto out;
        }
    }

out:
    if (rc != 0)
        for (i = 0; i < n; i++)
            failed[i] = true;
    free(sorted);
    json_decref(root);
    return rc;
}
