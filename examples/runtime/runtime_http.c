/*
 * runtime_http.c - the HTTP/1.x response parser: status line, headers, Content-Length,
 * chunked and read-until-close bodies. No I/O, no allocation, no state between calls: the
 * client feeds it the bytes it has so far and reads again while it says INCOMPLETE. Every
 * byte is read through a bounds-checked cursor.
 *
 * Re-parsing from the start on each read is cheap: the head is small, Content-Length bodies
 * are skipped by length, and chunk data is skipped chunk by chunk, not byte by byte.
 */
#include "runtime.h"

#include <string.h>

/* A bounds-checked read cursor over p[0..len). */
typedef struct rt_cur {
    const uint8_t *p;
    size_t len;
    size_t pos;
} rt_cur;

static size_t cur_left(const rt_cur *c)
{
    return c->len - c->pos;
}

/*
 * Finds the next line ending ("\n", optionally preceded by "\r") at or after c->pos, no
 * further than limit bytes away. On success stores the line's start and length (without the
 * line ending), moves past it and returns 1; returns 0 when no line ending is in the data yet,
 * RT_ETOOBIG when none is within limit bytes.
 */
static int cur_line(rt_cur *c, size_t limit, size_t *start, size_t *len)
{
    size_t avail = cur_left(c);
    size_t scan = avail < limit ? avail : limit;
    const uint8_t *nl = memchr(c->p + c->pos, '\n', scan);
    if (!nl)
        return avail >= limit ? RT_ETOOBIG : 0;
    size_t l = (size_t)(nl - (c->p + c->pos));
    *start = c->pos;
    *len = (l > 0 && c->p[c->pos + l - 1] == '\r') ? l - 1 : l;
    c->pos += l + 1;
    return 1;
}

static int lower(int ch)
{
    return (ch >= 'A' && ch <= 'Z') ? ch + ('a' - 'A') : ch;
}

/* Compares p[0..n) with the NUL-terminated s, ASCII case-insensitively. */
static bool eq_nocase(const uint8_t *p, size_t n, const char *s)
{
    size_t sl = strlen(s);
    if (n != sl)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(p[i]) != lower((unsigned char)s[i]))
            return false;
    return true;
}

/* RFC 9110 tchar. */
static bool is_tchar(uint8_t ch)
{
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
        return true;
    return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static bool is_blank(uint8_t ch)
{
    return ch == ' ' || ch == '\t';
}

/* Parses "HTTP/1.x SSS[ reason]" from line p[0..n). */
static int parse_status_line(const uint8_t *p, size_t n, rt_http_msg *m)
{
    if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9' || p[8] != ' ')
        return RT_EPROTO;
    m->minor_version = p[7] - '0';
    int st = 0;
    for (size_t i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return RT_EPROTO;
        st = st * 10 + (p[i] - '0');
    }
    if (st < 100 || (n > 12 && p[12] != ' '))
        return RT_EPROTO;
    for (size_t i = 13; i < n; i++)
        if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
            return RT_EPROTO;
    m->status = st;
    return 0;
}

/*
 * Splits header line p[0..n) (at offset base in the message) into name and trimmed value.
 * Rejects an empty or non-token name, blanks before the colon (RFC 9112 5.1), obsolete line
 * folding and control characters in the value.
 */
static int parse_header_line(const uint8_t *p, size_t n, size_t base, rt_http_header *h)
{
    size_t i = 0;
    while (i < n && is_tchar(p[i]))
        i++;
    if (i == 0 || i >= n || p[i] != ':')
        return RT_EPROTO;
    h->name_off = base;
    h->name_len = i;
    i++;
    while (i < n && is_blank(p[i]))
        i++;
    size_t end = n;
    while (end > i && is_blank(p[end - 1]))
        end--;
    for (size_t k = i; k < end; k++)
        if ((p[k] < 0x20 && p[k] != '\t') || p[k] == 0x7f)
            return RT_EPROTO;
    h->value_off = base + i;
    h->value_len = end - i;
    return 0;
}

/* Parses a Content-Length value: digits only, at most RT_HTTP_MAX_BODY. */
static int parse_content_length(const uint8_t *p, size_t n, int64_t *out)
{
    if (n == 0)
        return RT_EPROTO;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return RT_EPROTO;
        v = v * 10 + (p[i] - '0');
        if (v > (int64_t)RT_HTTP_MAX_BODY)
            return RT_ETOOBIG;
    }
    *out = v;
    return 0;
}

/* Applies a Connection header value (comma-separated tokens) to m->keep_alive. */
static void apply_connection(const uint8_t *p, size_t n, rt_http_msg *m)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (is_blank(p[i]) || p[i] == ','))
            i++;
        size_t s = i;
        while (i < n && p[i] != ',')
            i++;
        size_t e = i;
        while (e > s && is_blank(p[e - 1]))
            e--;
        if (eq_nocase(p + s, e - s, "close"))
            m->keep_alive = false;
        else if (eq_nocase(p + s, e - s, "keep-alive") && m->minor_version == 0)
            m->keep_alive = true;
    }
}

static int hexval(uint8_t ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = (uint8_t)lower(ch);
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/*
 * Walks the chunked body starting at c->pos. When out is non-NULL it also moves each chunk's
 * data down to out + decoded-so-far (out aliases the cursor's bytes; writes only ever go
 * below the read position, so the walk still reads the original framing). Returns
 * RT_HTTP_COMPLETE with *body_len and *end (offset after the trailers), RT_HTTP_INCOMPLETE, or
 * a negative error.
 */
static int walk_chunks(rt_cur *c, uint8_t *out, size_t *body_len, size_t *end)
{
    size_t total = 0;
    for (;;) {
        size_t ls, ll;
        int rc = cur_line(c, 4096, &ls, &ll);
        if (rc <= 0)
            return rc;
        const uint8_t *l = c->p + ls;
        size_t i = 0;
        uint64_t sz = 0;
        int d;
        while (i < ll && (d = hexval(l[i])) >= 0) {
            sz = sz * 16 + (uint64_t)d;
            if (sz > RT_HTTP_MAX_BODY)
                return RT_ETOOBIG;
            i++;
        }
        if (i == 0)
            return RT_EPROTO;
        while (i < ll && is_blank(l[i]))
            i++;
        if (i < ll && l[i] != ';')
            return RT_EPROTO; /* anything after the size must be a chunk extension */
        if (sz == 0)
            break;
        if (total + sz > RT_HTTP_MAX_BODY)
            return RT_ETOOBIG;
        if (cur_left(c) < sz)
            return RT_HTTP_INCOMPLETE;
        if (out)
            memmove(out + total, c->p + c->pos, (size_t)sz);
        c->pos += (size_t)sz;
        total += (size_t)sz;
        /* The chunk's data is followed by exactly one line ending. */
        if (cur_left(c) < 1)
            return RT_HTTP_INCOMPLETE;
        if (c->p[c->pos] == '\r') {
            if (cur_left(c) < 2)
                return RT_HTTP_INCOMPLETE;
            if (c->p[c->pos + 1] != '\n')
                return RT_EPROTO;
            c->pos += 2;
        } else if (c->p[c->pos] == '\n') {
            c->pos += 1;
        } else {
            return RT_EPROTO;
        }
    }
    /* Trailer section: header lines until an empty one, within RT_HTTP_MAX_HEAD. */
    size_t trailers_start = c->pos;
    for (;;) {
        size_t used = c->pos - trailers_start;
        if (used >= RT_HTTP_MAX_HEAD)
            return RT_ETOOBIG;
        size_t ls, ll;
        int rc = cur_line(c, RT_HTTP_MAX_HEAD - used, &ls, &ll);
        if (rc <= 0)
            return rc;
        if (ll == 0)
            break;
        rt_http_header h;
        if (parse_header_line(c->p + ls, ll, ls, &h))
            return RT_EPROTO;
    }
    *body_len = total;
    *end = c->pos;
    return RT_HTTP_COMPLETE;
}

int rt_http_parse(const uint8_t *p, size_t n, rt_http_msg *m)
{
    memset(m, 0, offsetof(rt_http_msg, headers));
    m->body_len = m->msg_len = 0;
    m->content_length = -1;
    rt_cur c = {.p = p, .len = n, .pos = 0};

    size_t ls, ll;
    int rc = cur_line(&c, RT_HTTP_MAX_HEAD, &ls, &ll);
    if (rc <= 0) {
        /* Reject garbage early rather than waiting for a line ending that never comes. */
        size_t k = n < 5 ? n : 5;
        if (rc == 0 && memcmp(p, "HTTP/", k) != 0)
            return RT_EPROTO;
        return rc;
    }
    if ((rc = parse_status_line(p + ls, ll, m)))
        return rc;
    m->keep_alive = m->minor_version >= 1;

    bool have_te = false;
    for (;;) {
        if (c.pos >= RT_HTTP_MAX_HEAD)
            return RT_ETOOBIG;
        rc = cur_line(&c, RT_HTTP_MAX_HEAD - c.pos, &ls, &ll);
        if (rc <= 0)
            return rc;
        if (ll == 0)
            break;
        if (is_blank(p[ls]))
            return RT_EPROTO; /* obsolete line folding */
        if (m->nheaders == RT_HTTP_MAX_HEADERS)
            return RT_ETOOBIG;
        rt_http_header *h = &m->headers[m->nheaders];
        if ((rc = parse_header_line(p + ls, ll, ls, h)))
            return rc;
        m->nheaders++;
        const uint8_t *name = p + h->name_off, *val = p + h->value_off;
        if (eq_nocase(name, h->name_len, "content-length")) {
            int64_t cl;
            if ((rc = parse_content_length(val, h->value_len, &cl)))
                return rc;
            if (m->content_length >= 0 && m->content_length != cl)
                return RT_EPROTO;
            m->content_length = cl;
        } else if (eq_nocase(name, h->name_len, "transfer-encoding")) {
            /* Only "chunked" alone: a client that asked for no coding gets no other. */
            if (have_te || !eq_nocase(val, h->value_len, "chunked"))
                return RT_EPROTO;
            have_te = true;
            m->chunked = true;
        } else if (eq_nocase(name, h->name_len, "connection")) {
            apply_connection(val, h->value_len, m);
        }
    }
    m->head_len = c.pos;

    if (m->status < 200 || m->status == 204 || m->status == 304) {
        m->chunked = false;
        m->content_length = -1;
        m->body_len = 0;
        m->msg_len = m->head_len;
        return RT_HTTP_COMPLETE;
    }
    if (m->chunked) {
        /* RFC 9112 6.3: Transfer-Encoding overrides Content-Length. */
        m->content_length = -1;
        size_t body_len, end;
        rc = walk_chunks(&c, NULL, &body_len, &end);
        if (rc != RT_HTTP_COMPLETE)
            return rc;
        m->body_len = body_len;
        m->msg_len = end;
        return RT_HTTP_COMPLETE;
    }
    if (m->content_length >= 0) {
        if (cur_left(&c) < (uint64_t)m->content_length)
            return RT_HTTP_INCOMPLETE;
        m->body_len = (size_t)m->content_length;
        m->msg_len = m->head_len + m->body_len;
        return RT_HTTP_COMPLETE;
    }
    m->until_close = true;
    m->keep_alive = false;
    if (cur_left(&c) > RT_HTTP_MAX_BODY)
        return RT_ETOOBIG;
    return RT_HTTP_INCOMPLETE;
}

int rt_http_complete_at_eof(rt_http_msg *m, size_t n)
{
    if (!m->until_close || m->head_len == 0 || n < m->head_len)
        return RT_EPROTO;
    m->body_len = n - m->head_len;
    m->msg_len = n;
    return RT_HTTP_COMPLETE;
}

int64_t rt_http_dechunk(uint8_t *p, const rt_http_msg *m)
{
    if (!m->chunked)
        return (int64_t)m->body_len;
    if (m->head_len == 0 || m->msg_len < m->head_len)
        return RT_EPROTO;
    rt_cur c = {.p = p, .len = m->msg_len, .pos = m->head_len};
    size_t body_len, end;
    int rc = walk_chunks(&c, p + m->head_len, &body_len, &end);
    if (rc != RT_HTTP_COMPLETE || body_len != m->body_len || end != m->msg_len)
        return RT_EPROTO;
    return (int64_t)body_len;
}

const rt_http_header *rt_http_find(const uint8_t *p, const rt_http_msg *m, const char *name)
{
    for (size_t i = 0; i < m->nheaders; i++) {
        const rt_http_header *h = &m->headers[i];
        if (eq_nocase(p + h->name_off, h->name_len, name))
            return h;
    }
    return NULL;
}
