/*
 * broker_store_fuzz.c - libFuzzer target for the store's pure decoders, br_store_record_decode
 * and br_store_frame_decode (broker_store.c). Built by broker/fuzz.cmake only (clang, and
 * -DSLUICE_SANITIZE=ON or -DSLUICE_FUZZ=ON), which defines SLUICE_FUZZ_TARGET. Elsewhere (the
 * broker's source glob picks this file up too) it compiles to nothing.
 *
 * Every input is used three ways, so seeds of either shape (a frame, or a frame's body) reach
 * the msgpack decoder despite the CRC:
 *   1. as a record body: br_store_record_decode(data, size). On success the key is 1..1024
 *      bytes inside the input without NUL, a put's value lies inside the input, a del has none.
 *   2. wrapped into a frame with a correct length and CRC32C: br_store_frame_decode must agree
 *      with (1) (same record, length 8 + size), or report SL_ECORRUPT; the frame cut one byte
 *      short is incomplete (0) unless its length is absurd.
 *   3. as a log tail (after an optional "SLST" header): frames decoded back to back, the way
 *      the store replays its file; each length returned fits in what is left.
 * Seeds: tests/fuzz/store/. Run: ./fuzz_store <a copy of the seed folder>
 */
#ifdef SLUICE_FUZZ_TARGET

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker_store_internal.h"

#define FZ_MAX_WRAP (1u << 20) /* inputs are small; do not copy anything bigger */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

/* The invariants of a record decoded from a body of len bytes at body. */
static void check_record(const uint8_t *body, size_t len, const struct br_store_record *r)
{
    check(r->op == BR_STORE_OP_PUT || r->op == BR_STORE_OP_DEL);
    check(r->seq >= 1);
    check(r->klen >= 1 && r->klen <= BR_STORE_MAX_KEY);
    check((const uint8_t *)r->key >= body && (size_t)((const uint8_t *)r->key - body) <= len &&
          r->klen <= len - (size_t)((const uint8_t *)r->key - body));
    check(memchr(r->key, '\0', r->klen) == NULL);
    if (r->op == BR_STORE_OP_PUT)
        check(r->val_off <= len && r->val_len <= len - r->val_off &&
              r->val_len <= BR_STORE_MAX_VALUE);
    else
        check(r->val_len == 0);
}

static void le32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void fz_wrap(const uint8_t *data, size_t size, int body_rc,
                    const struct br_store_record *body_rec)
{
    struct br_store_record rec;
    const char *why = NULL;
    uint8_t *frame;
    int rc;

    if (size > FZ_MAX_WRAP)
        return;
    frame = malloc(BR_STORE_FRAME_HDR + size);
    if (!frame)
        return;
    le32_put(frame, (uint32_t)size);
    le32_put(frame + 4, br_store_crc32c(0, data, size));
    if (size)
        memcpy(frame + BR_STORE_FRAME_HDR, data, size);
    rc = br_store_frame_decode(frame, BR_STORE_FRAME_HDR + size, &rec, &why);
    if (body_rc == 0) {
        check(rc == (int)(BR_STORE_FRAME_HDR + size));
        check(rec.op == body_rec->op && rec.seq == body_rec->seq && rec.klen == body_rec->klen &&
              rec.key - (const char *)frame - BR_STORE_FRAME_HDR ==
                  body_rec->key - (const char *)data &&
              rec.val_off == body_rec->val_off && rec.val_len == body_rec->val_len);
    } else {
        check(rc == SL_ECORRUPT && why != NULL);
    }
    if (size >= BR_STORE_MIN_BODY) {
        /* one byte short: incomplete, whatever the body holds */
        check(br_store_frame_decode(frame, BR_STORE_FRAME_HDR + size - 1, &rec, NULL) == 0);
    }
    free(frame);
}

static void fz_log(const uint8_t *data, size_t size)
{
    struct br_store_record rec;
    const char *why;
    size_t off = 0;
    int rc;

    if (size >= BR_STORE_HEADER_LEN && memcmp(data, BR_STORE_MAGIC, 4) == 0)
        off = BR_STORE_HEADER_LEN;
    while (off < size) {
        why = NULL;
        rc = br_store_frame_decode(data + off, size - off, &rec, &why);
        if (rc == 0)
            break;
        if (rc < 0) {
            check(rc == SL_ECORRUPT && why != NULL);
            break;
        }
        check((size_t)rc > BR_STORE_FRAME_HDR && (size_t)rc <= size - off);
        check_record(data + off + BR_STORE_FRAME_HDR, (size_t)rc - BR_STORE_FRAME_HDR, &rec);
        off += (size_t)rc;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct br_store_record rec;
    int rc;

    memset(&rec, 0, sizeof(rec));
    /* libFuzzer passes a non-NULL pointer even for an empty input */
    rc = br_store_record_decode(data, size, &rec);
    check(rc == 0 || rc == SL_ECORRUPT);
    if (rc == 0)
        check_record(data, size, &rec);
    fz_wrap(data, size, rc, &rec);
    fz_log(data, size);
    return 0;
}

#else

/* ISO C wants a declaration in every translation unit. */
typedef int br_store_fuzz_not_built;

#endif
