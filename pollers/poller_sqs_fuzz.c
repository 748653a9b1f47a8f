/*
 * poller_sqs_fuzz.c - libFuzzer target for poller_sqs.c, built by pollers/fuzz.cmake only
 * (-DSLUICE_FUZZ=ON, clang), which defines SLUICE_FUZZ_TARGET. Elsewhere (the pollers'
 * source glob picks this file up too) it compiles to nothing.
 *
 * The first input byte chooses what is fuzzed:
 *   even: pl_sqs_parse_batch_response. The next byte is the batch size n (0..32) over fixed
 *         ids; the rest is the function's response. Checks: the result is 0, SL_EPROTO or
 *         SL_ENOMEM, and on an error every record is failed (plus ASan/UBSan on the way).
 *   odd:  pl_sqs_append_record, the other half of the wire contract, with hostile bytes. The
 *         rest is a sequence of length-prefixed byte strings (one length byte each) taken as
 *         name, value, name, value ... Checks: the record parses as JSON (jansson validates
 *         UTF-8 strictly), has a string body whose MD5 is md5OfBody, and its messageId.
 *         Names lose their NUL bytes first: jansson cannot take NUL in object keys.
 * Run: ./fuzz_sqs -max_len=4096 [corpus dir]
 */
#ifdef SLUICE_FUZZ_TARGET

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "pollers/pollers_internal.h"

#define FZ_MAX_IDS 32
#define FZ_MAX_FIELDS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_parse(const uint8_t *data, size_t size)
{
    static const char *const ids[FZ_MAX_IDS] = {
        "1-0",  "1-1",  "2-0",  "2-1",  "3-0",  "3-1",  "4-0",  "4-1",  "5-0",  "5-1",  "6-0",
        "6-1",  "7-0",  "7-1",  "8-0",  "8-1",  "9-0",  "9-1",  "10-0", "10-1", "11-0", "11-1",
        "12-0", "12-1", "13-0", "13-1", "14-0", "14-1", "15-0", "15-1", "1-0",  "a"};
    bool failed[FZ_MAX_IDS];
    size_t n, i;
    int rc;

    if (size < 1)
        return;
    n = data[0] % (FZ_MAX_IDS + 1);
    rc = pl_sqs_parse_batch_response(data + 1, size - 1, ids, n, failed);
    if (rc != 0 && rc != SL_EPROTO && rc != SL_ENOMEM)
        abort();
    for (i = 0; i < n; i++)
        if (rc != 0 && !failed[i])
            abort();
}

static void fz_encode(const uint8_t *data, size_t size)
{
    static const struct pl_sqs_ctx ctx = {
        .event_source_arn = "redis://fuzz:6379/0/s", .region = "us-east-1", .sender_id = "sluice"};
    const char *names[FZ_MAX_FIELDS], *values[FZ_MAX_FIELDS];
    size_t nlens[FZ_MAX_FIELDS], vlens[FZ_MAX_FIELDS], nf = 0, off = 0, len, i;
    char namebuf[FZ_MAX_FIELDS][256];
    struct pl_stream_entry e;
    struct evbuffer *b;
    json_t *rec, *body;
    json_error_t err;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[33];

    while (off < size && nf < FZ_MAX_FIELDS) {
        len = data[off++];
        len = len < size - off ? len : size - off;
        for (i = 0, nlens[nf] = 0; i < len; i++) /* name without NUL bytes */
            if (data[off + i] != 0)
                namebuf[nf][nlens[nf]++] = (char)data[off + i];
        names[nf] = namebuf[nf];
        off += len;
        len = off < size ? data[off++] : 0;
        len = len < size - off ? len : size - off;
        values[nf] = (const char *)data + off;
        vlens[nf] = len;
        off += len;
        nf++;
    }
    memset(&e, 0, sizeof(e));
    e.id = "1700000000000-7";
    e.nfields = nf;
    e.names = names;
    e.name_lens = nlens;
    e.values = values;
    e.value_lens = vlens;
    e.receive_count = 2;
    e.first_receive_ms = 1700000000001;

    b = evbuffer_new();
    if (!b)
        return;
    if (pl_sqs_append_record(b, &e, &ctx) != 0)
        abort();
    rec = json_loadb((const char *)evbuffer_pullup(b, -1), evbuffer_get_length(b), JSON_ALLOW_NUL,
                     &err);
    if (!rec) {
        fprintf(stderr, "not JSON: %s\n", err.text);
        abort();
    }
    body = json_object_get(rec, "body");
    if (!json_is_string(body) ||
        strcmp(json_string_value(json_object_get(rec, "messageId")), e.id) != 0)
        abort();
    if (EVP_Digest(json_string_value(body), json_string_length(body), md, &mdlen, EVP_md5(),
                   NULL) != 1)
        abort();
    for (i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (strcmp(hex, json_string_value(json_object_get(rec, "md5OfBody"))) != 0)
        abort();
    json_decref(rec);
    evbuffer_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] % 2 == 0)
        fz_parse(data + 1, size - 1);
    else
        fz_encode(data + 1, size - 1);
    return 0;
}

#else

/* ISO C wants a declaration in every translation unit. */
typedef int pl_sqs_fuzz_not_built;

#endif
