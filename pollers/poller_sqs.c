/*
 * poller_sqs.c - SQS-shaped events for queue sources (Redis streams): one record per stream
 * entry (lambda-spec 2.1) and the function's partial batch response (lambda-spec 2.6). The
 * event's shape, and every decision below about it, is written down for function authors in
 * schemas/sqs-event.schema.json; this file and that schema change together.
 *
 * Why a streaming writer and not jansson for the records. This is the hot path: a batch is up
 * to 10,000 records or 6 MB, and each record's bytes are read once from the hiredis reply.
 * With jansson every value would be copied into a json_t (and json_stringn refuses invalid
 * UTF-8, so a repaired copy would come first), dumped (another copy), and the JSON-object body
 * of an entry without a "body" field would be dumped to a string and then escaped again. The
 * writer below goes from the reply's bytes straight into reserved space of the caller's
 * evbuffer: UTF-8 repair, JSON escaping (twice for the object body, whose JSON text is itself
 * a JSON string) and MD5 happen in that one pass, and the only copy is the one into the
 * evbuffer (names and attribute values are also read once before, by a UTF-8 check). Measured on
 * one core (3 fields of 20 bytes): about 0.5 million records/s, against 0.09 million for the same
 * record built as json_t and dumped with json_dump_callback. The writer is deliberately small:
 * strings, literals and base64; everything structural is a literal in this file. Its escaping is
 * tested on hostile input (NUL, control bytes, quotes, backslashes, invalid and truncated UTF-8) by
 * tests/unit/test_sqs_event.c, which parses every output back with jansson, and fuzzed by
 * poller_sqs_fuzz.c. The partial batch response is small and arrives once per batch: it is read
 * with jansson.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "pollers/pollers_internal.h"

/* ---------------------------------------------------------------------------------------- */
/* UTF-8                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/* U+FFFD REPLACEMENT CHARACTER, what an ill-formed sequence becomes. */
static const uint8_t utf8_fffd[3] = {0xEF, 0xBF, 0xBD};

/*
 * Looks at the sequence that starts at s[0] (a byte >= 0x80; n >= 1 bytes available). Returns
 * true and sets *len to its length when it is well-formed UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF). Otherwise returns false and sets *len to the length of its maximal
 * subpart (Unicode 15, section 3.9, "U+FFFD substitution of maximal subparts", which is what
 * Python's errors="replace", ICU and the WHATWG decoder do): that many bytes become one U+FFFD.
 */
static bool utf8_seq(const uint8_t *s, size_t n, size_t *len)
{
    uint8_t c = s[0], lo = 0x80, hi = 0xBF;
    size_t need, i;

    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0; /* overlong below */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates above */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90; /* overlong below */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        *len = 1; /* a continuation byte, C0, C1 or F5..FF */
        return false;
    }
    for (i = 1; i <= need; i++) {
        if (i >= n || s[i] < lo || s[i] > hi) {
            *len = i;
            return false;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    *len = need + 1;
    return true;
}

static bool utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0, k;

    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        if (!utf8_seq(s + i, n - i, &k))
            return false;
        i += k;
    }
    return true;
}

/* Writes s[0..n) with every maximal ill-formed subpart replaced by U+FFFD into out (3n bytes
 * suffice). Returns the length written. */
static size_t utf8_repair(const uint8_t *s, size_t n, uint8_t *out)
{
    size_t i = 0, o = 0, k;

    while (i < n) {
        if (s[i] < 0x80) {
            out[o++] = s[i++];
        } else if (utf8_seq(s + i, n - i, &k)) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(out + o, utf8_fffd, 3);
            o += 3;
            i += k;
        }
    }
    return o;
}

/* ---------------------------------------------------------------------------------------- */
/* The streaming writer                                                                     */
/* ---------------------------------------------------------------------------------------- */

/*
 * Space is reserved in the caller's evbuffer and written in place. libevent copies a chain's
 * contents into a bigger one when a reservation does not fit in the last chain and that
 * chain is small but still has an eighth of its space free (evbuffer_expand_singlechain). To
 * never pay that copy, the writer only asks for more when the current space is (nearly) used
 * up: a call asks for at most JW_SMALL bytes at a time, and long runs fill the current space
 * before asking for a new chain of their remaining size. New chains are JW_CHUNK bytes (a
 * 16 KiB allocation with libevent's chain header) unless a run needs more.
 */
#define JW_SMALL 64
#define JW_CHUNK (16 * 1024 - 128)

struct jw {
    struct evbuffer *out;
    struct evbuffer_iovec v; /* the current reservation; iov_base NULL when none */
    uint8_t *p, *end;        /* its unwritten part */
    bool first;              /* no reservation made yet in this call */
    EVP_MD_CTX *md;          /* non-NULL: string content is also hashed, as text */
    const EVP_MD *alg;       /* MD5 */
    int err;                 /* first error; every writer call is a no-op after it */
};

static void jw_init(struct jw *w, struct evbuffer *out)
{
    memset(w, 0, sizeof(*w));
    w->out = out;
    w->first = true;
}

/* Writable bytes left in the current reservation. */
static size_t jw_avail(const struct jw *w)
{
    return w->v.iov_base ? (size_t)(w->end - w->p) : 0;
}

static void jw_commit(struct jw *w)
{
    if (!w->v.iov_base)
        return;
    w->v.iov_len = (size_t)(w->p - (uint8_t *)w->v.iov_base);
    if (evbuffer_commit_space(w->out, &w->v, 1) != 0 && !w->err)
        w->err = SL_ENOMEM;
    w->v.iov_base = NULL;
    w->p = w->end = NULL;
}

/* Makes at least k bytes writable at w->p. False (and w->err set) on failure. */
static bool jw_room(struct jw *w, size_t k)
{
    size_t want;

    if (w->err)
        return false;
    if (jw_avail(w) >= k)
        return true;
    jw_commit(w);
    if (w->err)
        return false;
    /* The first reservation takes whatever the last chain has left (see JW_SMALL). */
    want = w->first ? (k > JW_SMALL ? k : JW_SMALL) : (k > JW_CHUNK ? k : JW_CHUNK);
    w->first = false;
    if (want > (size_t)EV_SSIZE_MAX ||
        evbuffer_reserve_space(w->out, (ev_ssize_t)want, &w->v, 1) < 1 || w->v.iov_len < k) {
        w->v.iov_base = NULL;
        w->err = SL_ENOMEM;
        return false;
    }
    w->p = w->v.iov_base;
    w->end = w->p + w->v.iov_len;
    return true;
}

/* Output bytes as they are, never hashed: JSON structure, digits, hex, base64. */
static void jw_bytes(struct jw *w, const void *s, size_t n)
{
    const uint8_t *b = s;
    size_t room, k;

    while (n > 0 && !w->err) {
        room = jw_avail(w);
        if (room == 0) {
            if (!jw_room(w, n)) /* space is exhausted: no copy inside libevent */
                return;
            room = jw_avail(w);
        }
        k = n < room ? n : room;
        memcpy(w->p, b, k);
        w->p += k;
        b += k;
        n -= k;
    }
}

#define jw_lit(w, s) jw_bytes((w), (s), sizeof(s) - 1)

static void jw_hash(struct jw *w, const void *s, size_t n)
{
    if (w->md && !w->err && n > 0 && EVP_DigestUpdate(w->md, s, n) != 1)
        w->err = SL_EUNSUPPORTED;
}

/* The one-level JSON escape of an ASCII byte that needs one. Returns its length (2 or 6). */
static size_t json_escape(uint8_t c, char esc[6])
{
    static const char hex[] = "0123456789abcdef";

    esc[0] = '\\';
    switch (c) {
    case '"':
        esc[1] = '"';
        return 2;
    case '\\':
        esc[1] = '\\';
        return 2;
    case '\b':
        esc[1] = 'b';
        return 2;
    case '\f':
        esc[1] = 'f';
        return 2;
    case '\n':
        esc[1] = 'n';
        return 2;
    case '\r':
        esc[1] = 'r';
        return 2;
    case '\t':
        esc[1] = 't';
        return 2;
    default:
        esc[1] = 'u';
        esc[2] = '0';
        esc[3] = '0';
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 15];
        return 6;
    }
}

static bool json_plain(uint8_t c)
{
    return c >= 0x20 && c != '"' && c != '\\';
}

/*
 * String content that is already valid UTF-8 (JSON text of the object body, its escapes,
 * repaired names): hashed as it is, written JSON-escaped.
 */
static void jw_text(struct jw *w, const void *s, size_t n)
{
    const uint8_t *b = s;
    size_t i = 0, run = 0, k;
    char esc[6];

    jw_hash(w, b, n);
    while (i < n) {
        if (json_plain(b[i])) {
            i++;
            continue;
        }
        jw_bytes(w, b + run, i - run);
        k = json_escape(b[i], esc);
        jw_bytes(w, esc, k);
        run = ++i;
    }
    jw_bytes(w, b + run, i - run);
}

#define jw_text_lit(w, s) jw_text((w), (s), sizeof(s) - 1)

/*
 * Raw bytes as string content: ill-formed UTF-8 becomes U+FFFD, then the text is JSON-escaped
 * once (nested false: a string of the record) or twice (nested true: a string inside the JSON
 * text of an object body, which is itself a string of the record). What is hashed is the
 * string's content as the function will see it: the repaired text, or for nested, the
 * once-escaped JSON text. Runs of bytes that need nothing are hashed and copied whole.
 */
static void jw_value(struct jw *w, const uint8_t *s, size_t n, bool nested)
{
    size_t i = 0, run = 0, k;
    char esc[6];

    while (i < n && !w->err) {
        uint8_t c = s[i];

        if (c < 0x80) {
            if (json_plain(c)) {
                i++;
                continue;
            }
            jw_hash(w, s + run, i - run);
            jw_bytes(w, s + run, i - run);
            k = json_escape(c, esc);
            if (nested) {
                jw_text(w, esc, k); /* \" becomes \\\" and so on */
            } else {
                jw_hash(w, &c, 1);
                jw_bytes(w, esc, k);
            }
            run = ++i;
            continue;
        }
        if (utf8_seq(s + i, n - i, &k)) {
            i += k;
            continue;
        }
        jw_hash(w, s + run, i - run);
        jw_bytes(w, s + run, i - run);
        jw_hash(w, utf8_fffd, 3);
        jw_bytes(w, utf8_fffd, 3);
        i += k;
        run = i;
    }
    jw_hash(w, s + run, i - run);
    jw_bytes(w, s + run, i - run);
}

/* Base64 (RFC 4648, standard alphabet, padded) of a byte stream fed in pieces. */
struct b64 {
    uint8_t in[3];
    size_t n;
};

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_quad(uint8_t *o, const uint8_t *t)
{
    o[0] = (uint8_t)b64_alphabet[t[0] >> 2];
    o[1] = (uint8_t)b64_alphabet[((t[0] & 3) << 4) | (t[1] >> 4)];
    o[2] = (uint8_t)b64_alphabet[((t[1] & 15) << 2) | (t[2] >> 6)];
    o[3] = (uint8_t)b64_alphabet[t[2] & 63];
}

static void b64_put(struct jw *w, struct b64 *b, const void *s, size_t n)
{
    const uint8_t *p = s;
    size_t t, k;

    while (b->n > 0 && b->n < 3 && n > 0) {
        b->in[b->n++] = *p++;
        n--;
    }
    if (b->n == 3) {
        if (!jw_room(w, 4))
            return;
        b64_quad(w->p, b->in);
        w->p += 4;
        b->n = 0;
    }
    while (n >= 3) {
        t = n / 3 < JW_SMALL / 4 ? n / 3 : JW_SMALL / 4;
        if (!jw_room(w, 4 * t))
            return;
        for (k = 0; k < t; k++, p += 3, w->p += 4)
            b64_quad(w->p, p);
        n -= 3 * t;
    }
    while (n > 0) {
        b->in[b->n++] = *p++;
        n--;
    }
}

static void b64_end(struct jw *w, struct b64 *b)
{
    uint8_t t[3] = {0, 0, 0};

    if (b->n == 0 || !jw_room(w, 4))
        return;
    memcpy(t, b->in, b->n);
    b64_quad(w->p, t);
    if (b->n == 1)
        w->p[2] = '=';
    w->p[3] = '=';
    w->p += 4;
    b->n = 0;
}

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
        if (!utf8_valid(name, f[i].nlen)) {
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
            if (utf8_valid(f[i].name, f[i].nlen))
                continue;
            f[i].nlen = utf8_repair(f[i].name, f[i].nlen, fix + off);
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

static void md_begin(struct jw *w, EVP_MD_CTX *md)
{
    if (!w->err && EVP_DigestInit_ex(md, w->alg ? w->alg : EVP_md5(), NULL) != 1)
        w->err = SL_EUNSUPPORTED; /* e.g. a FIPS-only provider, which refuses MD5 */
}

static void md_hex(struct jw *w, EVP_MD_CTX *md, char hex[33])
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

static void md_u32(struct jw *w, EVP_MD_CTX *md, size_t v)
{
    uint8_t be[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};

    if (!w->err && EVP_DigestUpdate(md, be, 4) != 1)
        w->err = SL_EUNSUPPORTED;
}

static void md_bytes(struct jw *w, EVP_MD_CTX *md, const void *s, size_t n)
{
    if (!w->err && n > 0 && EVP_DigestUpdate(md, s, n) != 1)
        w->err = SL_EUNSUPPORTED;
}

/* "body":"<the body field>" with md5 of its (repaired) text in hex. */
static void put_body_field(struct jw *w, EVP_MD_CTX *md, const struct pl_stream_entry *e,
                           size_t body, char hex[33])
{
    jw_lit(w, ",\"body\":\"");
    md_begin(w, md);
    w->md = md;
    jw_value(w, (const uint8_t *)e->values[body], e->value_lens[body], false);
    w->md = NULL;
    md_hex(w, md, hex);
    jw_lit(w, "\"");
}

/* "body":"{\"f1\":\"v1\",...}": the kept fields in entry order; md5 of that JSON text. */
static void put_body_object(struct jw *w, EVP_MD_CTX *md, const struct pl_stream_entry *e,
                            const uint8_t *keep, char hex[33])
{
    size_t i;
    bool first = true;

    jw_lit(w, ",\"body\":\"");
    md_begin(w, md);
    w->md = md;
    jw_text_lit(w, "{");
    for (i = 0; i < e->nfields; i++) {
        if (!keep[i])
            continue;
        if (!first)
            jw_text_lit(w, ",");
        first = false;
        jw_text_lit(w, "\"");
        jw_value(w, (const uint8_t *)e->names[i], e->name_lens[i], true);
        jw_text_lit(w, "\":\"");
        jw_value(w, (const uint8_t *)e->values[i], e->value_lens[i], true);
        jw_text_lit(w, "\"");
    }
    jw_text_lit(w, "}");
    w->md = NULL;
    md_hex(w, md, hex);
    jw_lit(w, "\"");
}

/*
 * "messageAttributes":{...}: every kept field but "body", in name order, a String attribute
 * when its value is UTF-8 and a Binary one (base64) otherwise. Also computes SQS's
 * MD5OfMessageAttributes over the same attributes in the same order. Returns how many.
 */
static size_t put_attributes(struct jw *w, EVP_MD_CTX *md, const struct pl_stream_entry *e,
                             const struct sqs_field *f, const uint8_t *keep, char hex[33])
{
    size_t k, count = 0;

    jw_lit(w, ",\"messageAttributes\":{");
    md_begin(w, md);
    for (k = 0; k < e->nfields && !w->err; k++) {
        const struct sqs_field *a = &f[k];
        const uint8_t *v = (const uint8_t *)e->values[a->idx];
        size_t vlen = e->value_lens[a->idx];
        bool bin;

        if (!keep[a->idx] || is_body(a->name, a->nlen))
            continue;
        bin = !utf8_valid(v, vlen);
        if (count++ > 0)
            jw_lit(w, ",");
        jw_lit(w, "\"");
        jw_value(w, a->name, a->nlen, false); /* valid UTF-8 by now: escaping only */
        if (bin) {
            struct b64 b = {.n = 0};

            jw_lit(w, "\":{\"binaryValue\":\"");
            b64_put(w, &b, v, vlen);
            b64_end(w, &b);
            jw_lit(w, "\",\"stringListValues\":[],\"binaryListValues\":[],"
                      "\"dataType\":\"Binary\"}");
        } else {
            jw_lit(w, "\":{\"stringValue\":\"");
            jw_value(w, v, vlen, false);
            jw_lit(w, "\",\"stringListValues\":[],\"binaryListValues\":[],"
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
    jw_lit(w, "}");
    if (count > 0)
        md_hex(w, md, hex);
    return count;
}

/* Decimal digits of v (snprintf costs about 100 ns a call here, twice per record). */
static void put_int(struct jw *w, int64_t v)
{
    char num[24], *p = num + sizeof(num);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (v < 0)
        *--p = '-';
    jw_bytes(w, p, (size_t)(num + sizeof(num) - p));
}

static void put_cstr(struct jw *w, const char *s)
{
    s = s ? s : "";
    jw_value(w, (const uint8_t *)s, strlen(s), false);
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
    struct b64 b = {.n = 0};
    struct jw w;
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

    jw_init(&w, out);
    w.alg = ctx->md5;
    jw_lit(&w, "{\"messageId\":\"");
    put_cstr(&w, id);
    jw_lit(&w, "\",\"receiptHandle\":\"");
    if (ctx->event_source_arn)
        b64_put(&w, &b, ctx->event_source_arn, strlen(ctx->event_source_arn));
    b64_put(&w, &b, "|", 1);
    b64_put(&w, &b, id, strlen(id));
    b64_end(&w, &b);
    jw_lit(&w, "\"");

    if (body != SIZE_MAX)
        put_body_field(&w, md, e, body, body_md5);
    else
        put_body_object(&w, md, e, keep, body_md5);

    jw_lit(&w, ",\"attributes\":{\"ApproximateReceiveCount\":\"");
    put_int(&w, e->receive_count);
    jw_lit(&w, "\",\"SentTimestamp\":\"");
    dash = strchr(id, '-');
    jw_value(&w, (const uint8_t *)id, dash ? (size_t)(dash - id) : strlen(id), false);
    jw_lit(&w, "\",\"SenderId\":\"");
    put_cstr(&w, ctx->sender_id);
    jw_lit(&w, "\",\"ApproximateFirstReceiveTimestamp\":\"");
    put_int(&w, e->first_receive_ms);
    jw_lit(&w, "\"}");

    if (body != SIZE_MAX)
        nattr = put_attributes(&w, md, e, f, keep, attr_md5);
    else
        jw_lit(&w, ",\"messageAttributes\":{}");

    jw_lit(&w, ",\"md5OfBody\":\"");
    jw_bytes(&w, body_md5, strlen(body_md5));
    if (nattr > 0) {
        jw_lit(&w, "\",\"md5OfMessageAttributes\":\"");
        jw_bytes(&w, attr_md5, strlen(attr_md5));
    }
    jw_lit(&w, "\",\"eventSource\":\"aws:sqs\",\"eventSourceARN\":\"");
    put_cstr(&w, ctx->event_source_arn);
    jw_lit(&w, "\",\"awsRegion\":\"");
    put_cstr(&w, ctx->region);
    jw_lit(&w, "\"}");
    jw_commit(&w);
    rc = w.err;

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

static bool json_blank(const uint8_t *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return false;
    return true;
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
    json_error_t jerr;
    size_t i, m;
    int rc = 0;

    for (i = 0; i < n; i++)
        failed[i] = false;
    if (len == 0 || json_blank(body, len))
        return 0;
    root = json_loadb((const char *)body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!root) {
        rc = json_error_code(&jerr) == json_error_out_of_memory ? SL_ENOMEM : SL_EPROTO;
        goto out;
    }
    if (json_is_null(root))
        goto out;
    if (!json_is_object(root)) {
        rc = SL_EPROTO;
        goto out;
    }
    list = json_object_get(root, "batchItemFailures");
    if (!list || json_is_null(list))
        goto out;
    if (!json_is_array(list)) {
        rc = SL_EPROTO;
        goto out;
    }
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
