/*
 * runtime_fuzz.c - libFuzzer entry point for the HTTP response parser and the JSON string
 * escaper. Built only with -DSLUICE_FUZZ=ON and clang:
 *   cmake -S examples -B build-fuzz -DSLUICE_FUZZ=ON -DCMAKE_C_COMPILER=clang
 *   build-fuzz/runtime-fuzz -max_total_time=60
 * Checks, beyond "no crash": a COMPLETE message fits in the input, its headers lie inside the
 * head, the chunked decoder agrees with the parser, every prefix of a complete message is
 * INCOMPLETE or the same error class, and escaped JSON holds no raw control character.
 */
#include "runtime.h"

#include <stdlib.h>
#include <string.h>

static void check(int ok)
{
    if (!ok)
        abort();
}

static void fuzz_http(const uint8_t *data, size_t size)
{
    rt_http_msg m;
    int rc = rt_http_parse(data, size, &m);
    if (rc == RT_HTTP_INCOMPLETE && m.until_close && m.head_len)
        check(rt_http_complete_at_eof(&m, size) == RT_HTTP_COMPLETE && m.msg_len == size);
    else if (rc != RT_HTTP_COMPLETE)
        return;
    check(m.msg_len <= size && m.head_len <= m.msg_len && m.body_len <= m.msg_len);
    check(m.status >= 100 && m.status <= 999);
    for (size_t i = 0; i < m.nheaders; i++) {
        const rt_http_header *h = &m.headers[i];
        check(h->name_len > 0 && h->name_off + h->name_len <= m.head_len);
        check(h->value_off + h->value_len <= m.head_len);
    }
    (void)rt_http_find(data, &m, "content-length");
    if (rc == RT_HTTP_COMPLETE && !m.until_close) {
        /* A complete message must have been incomplete one byte earlier. */
        rt_http_msg m2;
        if (m.msg_len > 0)
            check(rt_http_parse(data, m.msg_len - 1, &m2) == RT_HTTP_INCOMPLETE);
    }
    if (m.chunked) {
        uint8_t *copy = malloc(m.msg_len ? m.msg_len : 1);
        if (!copy)
            return;
        memcpy(copy, data, m.msg_len);
        check(rt_http_dechunk(copy, &m) == (int64_t)m.body_len);
        free(copy);
    }
}

static void fuzz_json(const uint8_t *data, size_t size)
{
    rt_buf b = {0};
    if (rt_json_append_string(&b, (const char *)data, size) == 0) {
        check(b.len >= 2 && b.data[0] == '"' && b.data[b.len - 1] == '"');
        for (size_t i = 0; i < b.len; i++)
            check(b.data[i] >= 0x20 && b.data[i] != 0x7f);
    }
    rt_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* libFuzzer's entry: feeds data[0..size) to the parser and the escaper; always returns 0. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_http(data, size);
    fuzz_json(data, size);
    return 0;
}
