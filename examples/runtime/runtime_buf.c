/* runtime_buf.c - the growable byte buffer and the JSON string escaper. */
#include "runtime.h"

#include <stdlib.h>
#include <string.h>

int rt_buf_reserve(rt_buf *b, size_t extra)
{
    /* One spare byte beyond the request, so callers can always NUL-terminate. */
    if (extra > SIZE_MAX - 1 - b->len)
        return RT_ETOOBIG;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *d = realloc(b->data, cap);
    if (!d)
        return RT_ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

int rt_buf_append(rt_buf *b, const void *p, size_t n)
{
    int rc = rt_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void rt_buf_free(rt_buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/*
 * Length of the valid UTF-8 sequence at s[0..n) (n >= 1), or 0 when s does not start one.
 * Rejects overlong forms, surrogates and code points above U+10FFFF (RFC 3629).
 */
static size_t utf8_seq_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int rt_json_append_string(rt_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *p = (const uint8_t *)s;
    /* Worst case is 6 output bytes per input byte ("\u00XX"); reserve it once when that
     * cannot overflow, so the loop below appends without checks on the common path. */
    if (n > (SIZE_MAX - 2) / 6)
        return RT_ETOOBIG;
    int rc = rt_buf_reserve(b, n * 6 + 2);
    if (rc)
        return rc;
    uint8_t *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = c;
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            *o++ = '\\';
            switch (c) {
            case '\n':
                *o++ = 'n';
                break;
            case '\r':
                *o++ = 'r';
                break;
            case '\t':
                *o++ = 't';
                break;
            case '\b':
                *o++ = 'b';
                break;
            case '\f':
                *o++ = 'f';
                break;
            default:
                *o++ = 'u';
                *o++ = '0';
                *o++ = '0';
                *o++ = hex[c >> 4];
                *o++ = hex[c & 15];
            }
            i++;
        } else if (c < 0x80) {
            *o++ = c;
            i++;
        } else {
            size_t l = utf8_seq_len(p + i, n - i);
            if (l == 0) {
                /* U+FFFD in UTF-8: 3 bytes for 1 input byte, within the 6 reserved. */
                *o++ = 0xef;
                *o++ = 0xbf;
                *o++ = 0xbd;
                i++;
            } else {
                memcpy(o, p + i, l);
                o += l;
                i += l;
            }
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}
