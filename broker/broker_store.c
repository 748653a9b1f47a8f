/*
 * broker_store.c - the embedded durable store: an append-only, checksummed msgpack log with
 * an in-memory index, group commit in one helper thread, and compaction.
 *
 * The format is in broker_store_internal.h and schemas/store-record.schema.json.
 *
 * Threads and ownership. The loop thread (the one that runs `base`) makes every public call
 * and owns the index, the read descriptor and the counters. One helper thread, the syncer,
 * owns the write descriptor and does every write, fdatasync and compaction. They share only
 * the job queue (loop -> syncer) and the done list (syncer -> loop), both under st->mu; the
 * syncer wakes the loop with one byte on a pipe watched by a libevent event. A job is written
 * by its sender before it is queued and by its receiver only after it is taken, except for
 * fields each side alone touches (marked below), so no other locking is needed.
 *
 * Decisions, with their reasons and costs:
 *
 *  - Visibility. br_store_get/scan see a put or del as soon as it is queued, before it is
 *    durable (read-your-writes on the loop). The pending frame stays in memory until its
 *    completion is dispatched, and reads of a pending value copy it from there; afterwards
 *    reads go to the file. Callers that must not act on non-durable data (the async queue's
 *    202) wait for the write's callback, as they must anyway.
 *
 *  - Placement. The syncer decides where each frame lands and reports the offset (and the
 *    file generation) with the completion, so a compaction that fails cannot leave the index
 *    pointing at offsets computed for a file that never came to be.
 *
 *  - Group commit. The syncer takes everything queued, writes it with pwritev, fdatasyncs
 *    once and posts all the completions; whatever is queued meanwhile shares the next fsync.
 *    Callbacks run on the loop in the order the writes were issued.
 *
 *  - Compaction runs in the syncer between write batches: it replays the current file (so it
 *    needs nothing from the loop's index), copies the live frames verbatim, in first-put
 *    order, to store.log.compact, fdatasyncs it, renames it over store.log and fsyncs the
 *    directory; writes queued after it go to the new file. The loop then repoints the entries
 *    that still refer to the old file. Cost: writes wait while a compaction runs (it is bounded
 *    by the live data, at most half the file). XXX: a catch-up phase would remove that stall.
 *
 *  - Corruption at open. Replay stops at the first bad frame (short header, short frame,
 *    absurd length, CRC mismatch, undecodable body). A crash can only tear the tail written
 *    since the last fdatasync, which holds nothing acknowledged, so cutting there is safe. A
 *    bad frame followed by good ones means damage to data that may have been acknowledged
 *    (bit rot, a foreign writer): resynchronising past it would guess at frame boundaries, so
 *    we still cut there, but log an error with the count of good frames lost and keep the cut
 *    bytes in store.log.corrupt (replaced at each such open) for manual recovery. Cost: one
 *    copy of the cut bytes; the broker still comes up.
 *
 *  - I/O failure. A failed write or fsync leaves the file in an unknown state (and a failed
 *    fsync cannot be retried meaningfully), so the store turns failed: that batch and every
 *    later write complete with SL_EIO, get/scan return SL_EIO, compaction stops. Reopening
 *    recovers whatever is intact.
 *
 *  - br_store_free stops accepting writes, lets the syncer write and fsync everything queued
 *    (including a queued compaction), joins it, then runs every pending callback, with 0 for
 *    durable writes, before it returns. It may be called from inside a store callback: the
 *    memory is then released when the outermost dispatch returns.
 *
 *  - One process per directory: open takes flock(LOCK_EX) on the directory (SL_EBUSY if held).
 *
 * XXX: no backpressure: pending frames stay in memory until durable, so a disk slower than
 * the incoming load grows memory. Callers bound their in-flight writes.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/event.h>
#include <msgpack.h>

#include "broker/broker.h"
#include "broker/broker_store_internal.h"

#define ST_COMP "store"
#define ST_READ_CHUNK (1u << 20) /* replay and compaction I/O unit */
#define ST_IOV_BATCH 64          /* frames per pwritev */
#define ST_PACK_HDR_MAX 1200     /* msgpack map without the value bytes; key <= 1024 */
#define ST_COMPACT_RETRY_NS (60ll * 1000000000ll)

/* ---------------------------------------------------------------------------------------- */
/* Little-endian helpers and CRC32C.                                                        */
/* ---------------------------------------------------------------------------------------- */

static uint32_t le32_get(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void le32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Generated once from the reflected polynomial 0x82F63B78. */
static const uint32_t crc32c_table[256] = {
    0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu, 0x26a1e7e8u,
    0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu, 0x4d43cfd0u, 0xbf284cd3u,
    0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu, 0xf165b798u, 0x030e349bu, 0xd7c45070u,
    0x25afd373u, 0x36ff2087u, 0xc494a384u, 0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u,
    0x5d1d08bfu, 0xaf768bbcu, 0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u,
    0x33ed7d2au, 0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
    0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau, 0x30e349b1u,
    0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu, 0x1642ae59u, 0xe4292d5au,
    0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au, 0x7da08661u, 0x8fcb0562u, 0x9c9bf696u,
    0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu, 0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u,
    0x67dafa54u, 0x95b17957u, 0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu,
    0xfe53516fu, 0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
    0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu, 0x3ac7f2ebu,
    0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u, 0x61c69362u, 0x93ad1061u,
    0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu, 0x4767748au, 0xb50cf789u, 0xeb1fcbadu,
    0x197448aeu, 0x0a24bb5au, 0xf84f3859u, 0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u,
    0x7198540du, 0x83f3d70eu, 0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u,
    0xa55230e6u, 0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
    0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu, 0x456cac67u,
    0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u, 0xe9141340u, 0x1b7f9043u,
    0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu, 0x92a8fc17u, 0x60c37f14u, 0x73938ce0u,
    0x81f80fe3u, 0x55326b08u, 0xa759e80bu, 0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu,
    0xf94ad42fu, 0x0b21572cu, 0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u,
    0x502036a5u, 0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
    0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u, 0x0e330a81u,
    0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du, 0x758fe5d6u, 0x87e466d5u,
    0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u, 0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u,
    0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu, 0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u,
    0x0417b1dbu, 0xf67c32d8u, 0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu,
    0x5a048dffu, 0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
    0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u, 0x590ab964u,
    0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u, 0x7fab5e8cu, 0x8dc0dd8fu,
    0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu, 0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u,
    0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u, 0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u,
    0x4f48173du, 0xbd23943eu, 0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au,
    0xc69f7b69u, 0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
    0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};

uint32_t br_store_crc32c(uint32_t crc, const void *data, size_t len)
{
    /* XXX: byte at a time, ~0.5-1 GB/s; the SSE4.2 crc32 instruction would be ~10x faster. */
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < len; i++)
        crc = crc32c_table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
    return ~crc;
}

/* ---------------------------------------------------------------------------------------- */
/* Record codec: msgpack-c packs and unpacks; a bounds-checked skim guards the unpacker.     */
/* ---------------------------------------------------------------------------------------- */

/* Reads an n-byte big-endian integer at p[*pos], advancing *pos; fails past len. */
static int skim_be(const uint8_t *p, size_t len, size_t *pos, unsigned n, uint64_t *out)
{
    if (len - *pos < n)
        return SL_ECORRUPT;
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[*pos + i];
    *pos += n;
    *out = v;
    return 0;
}

/*
 * Walks body[0..len) as msgpack without building anything and checks it is exactly one
 * object whose every length and container count fits in the bytes present. msgpack-c
 * allocates a container's slots before reading them, so without this a corrupt array32
 * header that passed the CRC (or a fuzzer) could make it ask for 64 GiB.
 */
static int mp_skim(const uint8_t *p, size_t len)
{
    size_t pos = 0;
    uint64_t items = 1; /* objects still to read, nested ones flattened */
    while (items > 0) {
        if (pos >= len)
            return SL_ECORRUPT;
        uint8_t t = p[pos++];
        items--;
        uint64_t skip = 0, more = 0, n = 0;
        if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
            /* fixint, nil, bool */
        } else if (t <= 0x8f) {
            more = 2u * (t & 0x0fu);
        } else if (t <= 0x9f) {
            more = t & 0x0fu;
        } else if (t <= 0xbf) {
            skip = t & 0x1fu;
        } else {
            int rc = 0;
            switch (t) {
            case 0xc4:
            case 0xd9:
                rc = skim_be(p, len, &pos, 1, &skip);
                break;
            case 0xc5:
            case 0xda:
                rc = skim_be(p, len, &pos, 2, &skip);
                break;
            case 0xc6:
            case 0xdb:
                rc = skim_be(p, len, &pos, 4, &skip);
                break;
            case 0xc7:
                rc = skim_be(p, len, &pos, 1, &n);
                skip = n + 1;
                break;
            case 0xc8:
                rc = skim_be(p, len, &pos, 2, &n);
                skip = n + 1;
                break;
            case 0xc9:
                rc = skim_be(p, len, &pos, 4, &n);
                skip = n + 1;
                break;
            case 0xca:
                skip = 4;
                break;
            case 0xcb:
                skip = 8;
                break;
            case 0xcc:
            case 0xd0:
                skip = 1;
                break;
            case 0xcd:
            case 0xd1:
                skip = 2;
                break;
            case 0xce:
            case 0xd2:
                skip = 4;
                break;
            case 0xcf:
            case 0xd3:
                skip = 8;
                break;
            case 0xd4:
                skip = 2;
                break;
            case 0xd5:
                skip = 3;
                break;
            case 0xd6:
                skip = 5;
                break;
            case 0xd7:
                skip = 9;
                break;
            case 0xd8:
                skip = 17;
                break;
            case 0xdc:
                rc = skim_be(p, len, &pos, 2, &more);
                break;
            case 0xdd:
                rc = skim_be(p, len, &pos, 4, &more);
                break;
            case 0xde:
                rc = skim_be(p, len, &pos, 2, &n);
                more = 2 * n;
                break;
            case 0xdf:
                rc = skim_be(p, len, &pos, 4, &n);
                more = 2 * n;
                break;
            default:
                return SL_ECORRUPT; /* 0xc1 is never used */
            }
            if (rc)
                return rc;
        }
        if (skip > len - pos)
            return SL_ECORRUPT;
        pos += (size_t)skip;
        /* Every object still owed needs at least one byte. */
        if (more > len - pos || items + more > len - pos)
            return SL_ECORRUPT;
        items += more;
    }
    return pos == len ? 0 : SL_ECORRUPT;
}

static bool mp_str_is(const msgpack_object_str *s, const char *lit)
{
    size_t n = strlen(lit);
    return s->size == n && memcmp(s->ptr, lit, n) == 0;
}

/* True when [ptr, ptr+size) lies inside body[0..len); sets *off to ptr - body. */
static bool mp_inside(const uint8_t *body, size_t len, const char *ptr, size_t size, size_t *off)
{
    uintptr_t b = (uintptr_t)body, q = (uintptr_t)ptr;
    if (q < b || q - b > len || size > len - (q - b))
        return false;
    *off = (size_t)(q - b);
    return true;
}

int br_store_record_decode(const uint8_t *body, size_t len, struct br_store_record *out)
{
    if (!body || !out)
        return SL_EINVAL;
    if (len < BR_STORE_MIN_BODY || len > BR_STORE_MAX_BODY || mp_skim(body, len) != 0)
        return SL_ECORRUPT;

    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = SL_ECORRUPT;
    struct br_store_record r = {0};
    bool have_op = false, have_seq = false, have_k = false, have_v = false;

    if (msgpack_unpack_next(&u, (const char *)body, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != len || u.data.type != MSGPACK_OBJECT_MAP)
        goto done;
    for (uint32_t i = 0; i < u.data.via.map.size; i++) {
        const msgpack_object_kv *kv = &u.data.via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR)
            goto done;
        const msgpack_object_str *name = &kv->key.via.str;
        const msgpack_object *v = &kv->val;
        if (mp_str_is(name, "op")) {
            if (have_op || v->type != MSGPACK_OBJECT_STR)
                goto done;
            if (mp_str_is(&v->via.str, "put"))
                r.op = BR_STORE_OP_PUT;
            else if (mp_str_is(&v->via.str, "del"))
                r.op = BR_STORE_OP_DEL;
            else
                goto done;
            have_op = true;
        } else if (mp_str_is(name, "seq")) {
            if (have_seq || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 == 0)
                goto done;
            r.seq = v->via.u64;
            have_seq = true;
        } else if (mp_str_is(name, "k")) {
            size_t koff;
            if (have_k || v->type != MSGPACK_OBJECT_STR || v->via.str.size == 0 ||
                v->via.str.size > BR_STORE_MAX_KEY ||
                !mp_inside(body, len, v->via.str.ptr, v->via.str.size, &koff) ||
                memchr(body + koff, '\0', v->via.str.size))
                goto done;
            r.key = (const char *)body + koff;
            r.klen = v->via.str.size;
            have_k = true;
        } else if (mp_str_is(name, "v")) {
            if (have_v || v->type != MSGPACK_OBJECT_BIN || v->via.bin.size > BR_STORE_MAX_VALUE ||
                !mp_inside(body, len, v->via.bin.ptr, v->via.bin.size, &r.val_off))
                goto done;
            r.val_len = v->via.bin.size;
            have_v = true;
        }
        /* Unknown keys are skipped: additions that old readers may ignore need no new version. */
    }
    if (!have_op || !have_seq || !have_k || have_v != (r.op == BR_STORE_OP_PUT))
        goto done;
    *out = r;
    rc = 0;
done:
    msgpack_unpacked_destroy(&u);
    return rc;
}

int br_store_frame_decode(const uint8_t *buf, size_t avail, struct br_store_record *rec,
                          const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    if (!buf || !rec)
        return SL_EINVAL;
    if (avail < BR_STORE_FRAME_HDR)
        return 0;
    uint32_t blen = le32_get(buf);
    if (blen < BR_STORE_MIN_BODY || blen > BR_STORE_MAX_BODY) {
        *why = "absurd body length";
        return SL_ECORRUPT;
    }
    if (avail - BR_STORE_FRAME_HDR < blen)
        return 0;
    if (br_store_crc32c(0, buf + BR_STORE_FRAME_HDR, blen) != le32_get(buf + 4)) {
        *why = "checksum mismatch";
        return SL_ECORRUPT;
    }
    if (br_store_record_decode(buf + BR_STORE_FRAME_HDR, blen, rec) != 0) {
        *why = "undecodable record";
        return SL_ECORRUPT;
    }
    return (int)(BR_STORE_FRAME_HDR + blen);
}

/* Appends packer output to a fixed buffer; refuses to overflow it. */
struct pk_buf {
    uint8_t *p;
    size_t cap, len;
};

static int pk_write(void *data, const char *buf, size_t len)
{
    struct pk_buf *b = data;
    if (len > b->cap - b->len)
        return -1;
    memcpy(b->p + b->len, buf, len);
    b->len += len;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The index: a chained hash table of entries, which also form a list in first-put order.   */
/* ---------------------------------------------------------------------------------------- */

struct st_job;

struct st_ent {
    struct st_ent *hnext;         /* bucket chain */
    struct st_ent *oprev, *onext; /* first-put order */
    struct st_job *pend;          /* queued write that holds the current value; NULL once durable */
    uint64_t frame_off;           /* frame position in file generation `gen` (when !pend) */
    uint32_t frame_len;           /* whole frame, header included */
    uint32_t val_rel;             /* value offset from the frame start */
    uint32_t val_len;
    uint32_t gen;
    uint64_t hash;
    size_t klen;
    char key[]; /* NUL-terminated */
};

struct st_index {
    struct st_ent **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    struct st_ent *first, *last;
};

static uint64_t st_hash(const char *key, size_t klen)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < klen; i++) {
        h ^= (uint8_t)key[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static int idx_init(struct st_index *ix)
{
    memset(ix, 0, sizeof(*ix));
    ix->nbuckets = 1024;
    ix->buckets = calloc(ix->nbuckets, sizeof(*ix->buckets));
    return ix->buckets ? 0 : SL_ENOMEM;
}

static struct st_ent *idx_find(const struct st_index *ix, const char *key, size_t klen, uint64_t h)
{
    for (struct st_ent *e = ix->buckets[h & (ix->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
    return NULL;
}

static struct st_ent *ent_new(const char *key, size_t klen, uint64_t h)
{
    struct st_ent *e = calloc(1, sizeof(*e) + klen + 1);
    if (!e)
        return NULL;
    memcpy(e->key, key, klen);
    e->key[klen] = '\0';
    e->klen = klen;
    e->hash = h;
    return e;
}

/* Doubles the bucket array; on allocation failure keeps the old one (longer chains only). */
static void idx_grow(struct st_index *ix)
{
    size_t n = ix->nbuckets * 2;
    struct st_ent **b = calloc(n, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < ix->nbuckets; i++) {
        struct st_ent *e = ix->buckets[i], *next;
        for (; e; e = next) {
            next = e->hnext;
            e->hnext = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(ix->buckets);
    ix->buckets = b;
    ix->nbuckets = n;
}

/* Adds e (not already present) to the table and at the end of the order list. */
static void idx_insert(struct st_index *ix, struct st_ent *e)
{
    if (ix->count >= ix->nbuckets)
        idx_grow(ix);
    size_t b = e->hash & (ix->nbuckets - 1);
    e->hnext = ix->buckets[b];
    ix->buckets[b] = e;
    e->onext = NULL;
    e->oprev = ix->last;
    if (ix->last)
        ix->last->onext = e;
    else
        ix->first = e;
    ix->last = e;
    ix->count++;
}

/* Unlinks e from the table and the order list; the caller frees it. */
static void idx_remove(struct st_index *ix, struct st_ent *e)
{
    struct st_ent **pp = &ix->buckets[e->hash & (ix->nbuckets - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    if (e->oprev)
        e->oprev->onext = e->onext;
    else
        ix->first = e->onext;
    if (e->onext)
        e->onext->oprev = e->oprev;
    else
        ix->last = e->oprev;
    ix->count--;
}

static void idx_clear(struct st_index *ix)
{
    struct st_ent *e = ix->first, *next;
    for (; e; e = next) {
        next = e->onext;
        free(e);
    }
    free(ix->buckets);
    memset(ix, 0, sizeof(*ix));
}

/*
 * Applies one durable record found at file offset off (generation gen) to ix, as replay does:
 * a put creates or repoints the key's entry (keeping its first-put position), a del drops it.
 * *live_bytes tracks the frames of live entries. Returns 0 or SL_ENOMEM.
 */
static int idx_apply(struct st_index *ix, const struct br_store_record *rec, uint64_t off,
                     uint32_t flen, uint32_t gen, uint64_t *live_bytes)
{
    uint64_t h = st_hash(rec->key, rec->klen);
    struct st_ent *e = idx_find(ix, rec->key, rec->klen, h);
    if (rec->op == BR_STORE_OP_DEL) {
        if (e) {
            *live_bytes -= e->frame_len;
            idx_remove(ix, e);
            free(e);
        }
        return 0;
    }
    if (!e) {
        e = ent_new(rec->key, rec->klen, h);
        if (!e)
            return SL_ENOMEM;
        idx_insert(ix, e);
    } else {
        *live_bytes -= e->frame_len;
    }
    e->frame_off = off;
    e->frame_len = flen;
    e->val_rel = (uint32_t)(BR_STORE_FRAME_HDR + rec->val_off);
    e->val_len = (uint32_t)rec->val_len;
    e->gen = gen;
    *live_bytes += flen;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Jobs and the store.                                                                      */
/* ---------------------------------------------------------------------------------------- */

enum st_job_kind { JOB_WRITE, JOB_COMPACT, JOB_CLOSE };

/* A compaction's outcome, handed from the syncer to the loop. */
struct st_moved {
    const struct st_ent *tent; /* the syncer's entry: key, hash and new frame_off */
    uint64_t old_off;
};

struct st_compact {
    struct st_index ix; /* the syncer's replay of the old file; owned by this result */
    struct st_moved *moved;
    size_t nmoved;
    uint32_t old_gen, new_gen;
    int rfd; /* read descriptor on the new file, for the loop */
    uint64_t old_size, new_size, old_records;
    int64_t took_ms;
};

struct st_job {
    struct st_job *next; /* queue or done-list link, under st->mu */
    enum st_job_kind kind;
    /* JOB_WRITE, set by the loop before queueing; the frame lives in the same allocation,
     * after the job. frame[4..8) (the CRC) is filled by the syncer; the loop reads only the
     * value bytes of a pending frame. */
    uint8_t *frame;
    uint32_t frame_len;
    br_store_done_cb cb;
    void *arg;
    struct st_ent *ent; /* loop only: the entry whose pend is this job, or NULL */
    /* Results, set by the syncer before posting. */
    int err;
    bool fatal;              /* JOB_COMPACT: the store failed (vs. compaction merely skipped) */
    uint64_t frame_off;      /* JOB_WRITE */
    uint32_t gen;            /* JOB_WRITE */
    struct st_compact *cres; /* JOB_COMPACT, on success */
    int fd;                  /* JOB_CLOSE */
};

struct br_store {
    /* Set at open, read-only afterwards. */
    struct event_base *base;
    char *dir, *path, *cpath, *bpath;
    int dirfd;          /* holds the flock; the syncer fsyncs it after a rename */
    int pipe_r, pipe_w; /* syncer writes, loop reads */

    /* Shared, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool mu_ok, cv_ok;
    struct st_job *q_head, *q_tail;
    struct st_job *d_head, *d_tail;
    bool stop, notified;
    uint64_t sh_fsyncs;

    /* Syncer only (the loop touches them only before the thread starts or after the join). */
    pthread_t thr;
    bool thr_started;
    int wfd;
    uint64_t wpos;
    uint32_t wgen;
    bool wfailed;
    uint64_t t_fsyncs;

    /* Loop only. */
    struct event *ev;
    int rfd;
    uint32_t rgen;
    struct st_index idx;
    struct st_job *x_head, *x_tail; /* taken from the done list, being dispatched */
    uint64_t seq;
    uint64_t file_bytes, live_bytes, nrecords; /* incl. queued writes */
    uint64_t fsyncs, compactions, corrupt_skipped;
    uint64_t compact_min;
    int64_t compact_not_before_ns;
    bool compacting, failed, closing, free_requested;
    int busy; /* nesting depth of dispatch/scan; free is deferred while > 0 */
};

/* ---------------------------------------------------------------------------------------- */
/* File helpers (any thread).                                                               */
/* ---------------------------------------------------------------------------------------- */

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return SL_EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return SL_EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Writes iov[0..n) at off, resuming after short writes (iov is consumed). */
static int pwritev_full(int fd, struct iovec *iov, int n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwritev(fd, iov, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return SL_EIO;
        off += (uint64_t)w;
        size_t left = (size_t)w;
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

static int fsync_retry(int fd, bool data_only)
{
    int rc;
    do {
        rc = data_only ? fdatasync(fd) : fsync(fd);
    } while (rc < 0 && errno == EINTR);
    return rc < 0 ? SL_EIO : 0;
}

static char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + 1 + b + 1);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* fsyncs the directory that contains path (path has at least one '/' or is relative). */
static void fsync_parent(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    char *slash = strrchr(copy, '/');
    const char *parent = ".";
    if (slash == copy)
        parent = "/";
    else if (slash) {
        *slash = '\0';
        parent = copy;
    }
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync_retry(fd, false);
        close(fd);
    }
    free(copy);
}

/* mkdir -p, fsyncing the parent of every directory it creates. */
static int mkdir_p(const char *dir)
{
    char *p = strdup(dir);
    if (!p)
        return SL_ENOMEM;
    int rc = 0;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0755) == 0) {
            fsync_parent(p);
        } else if (errno != EEXIST) {
            sl_error(ST_COMP, "cannot create directory %s: %s", p, strerror(errno));
            rc = SL_EIO;
            break;
        }
        *s = c;
        if (c == '\0')
            break;
    }
    free(p);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Frame reader: sequential frames from a descriptor through one growable buffer.            */
/* ---------------------------------------------------------------------------------------- */

struct st_reader {
    int fd;
    uint64_t end; /* bytes of the file that may be read */
    uint8_t *buf;
    size_t cap;
    uint64_t boff; /* file offset of buf[0] */
    size_t blen;
};

/* Makes buf hold file bytes [off, off+n); n <= end - off. */
static int reader_fill(struct st_reader *r, uint64_t off, size_t n)
{
    if (off >= r->boff && off - r->boff <= r->blen && n <= r->blen - (off - r->boff))
        return 0;
    if (n > r->cap) {
        size_t ncap = n > ST_READ_CHUNK ? n : ST_READ_CHUNK;
        uint8_t *nb = realloc(r->buf, ncap);
        if (!nb)
            return SL_ENOMEM;
        r->buf = nb;
        r->cap = ncap;
    }
    uint64_t want = r->end - off;
    if (want > r->cap)
        want = r->cap;
    r->boff = off;
    r->blen = 0;
    int rc = pread_full(r->fd, r->buf, (size_t)want, off);
    if (rc)
        return rc;
    r->blen = (size_t)want;
    return 0;
}

/*
 * Reads the frame at off. Returns 1 with *rec, *flen and *frame (valid until the next call);
 * 0 at the clean end (off == end); SL_ECORRUPT with *why, *torn (the frame runs past the end)
 * and *flen (the bad frame's extent when its length was sane and it fits, else 0); SL_EIO or
 * SL_ENOMEM.
 */
static int reader_next(struct st_reader *r, uint64_t off, struct br_store_record *rec,
                       uint32_t *flen, const uint8_t **frame, const char **why, bool *torn)
{
    *flen = 0;
    *torn = false;
    if (off == r->end)
        return 0;
    if (r->end - off < BR_STORE_FRAME_HDR) {
        *why = "short frame header";
        *torn = true;
        return SL_ECORRUPT;
    }
    int rc = reader_fill(r, off, BR_STORE_FRAME_HDR);
    if (rc)
        return rc;
    uint32_t blen = le32_get(r->buf + (off - r->boff));
    if (blen < BR_STORE_MIN_BODY || blen > BR_STORE_MAX_BODY) {
        *why = "absurd body length";
        return SL_ECORRUPT;
    }
    if (r->end - off - BR_STORE_FRAME_HDR < blen) {
        *why = "short frame";
        *torn = true;
        return SL_ECORRUPT;
    }
    size_t total = BR_STORE_FRAME_HDR + blen;
    rc = reader_fill(r, off, total);
    if (rc)
        return rc;
    const uint8_t *p = r->buf + (off - r->boff);
    *flen = (uint32_t)total;
    rc = br_store_frame_decode(p, total, rec, why);
    if (rc < 0)
        return rc;
    if (rc == 0) { /* cannot happen: total bytes are present */
        *why = "short frame";
        return SL_ECORRUPT;
    }
    *frame = p;
    return 1;
}

static void reader_free(struct st_reader *r)
{
    free(r->buf);
    r->buf = NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* The syncer thread.                                                                       */
/* ---------------------------------------------------------------------------------------- */

/* Posts jobs [head..tail] to the loop, in order, and wakes it. */
static void sy_post(br_store *st, struct st_job *head, struct st_job *tail)
{
    if (!head)
        return;
    tail->next = NULL;
    pthread_mutex_lock(&st->mu);
    if (st->d_tail)
        st->d_tail->next = head;
    else
        st->d_head = head;
    st->d_tail = tail;
    st->sh_fsyncs = st->t_fsyncs;
    bool wake = !st->notified;
    st->notified = true;
    pthread_mutex_unlock(&st->mu);
    if (wake) {
        ssize_t n;
        do {
            n = write(st->pipe_w, "!", 1);
        } while (n < 0 && errno == EINTR);
        /* EAGAIN means a byte is already waiting: the loop wakes anyway. */
    }
}

/* Writes a group of write jobs at wpos, fdatasyncs once, and posts them. */
static void sy_flush(br_store *st, struct st_job *head, struct st_job *tail)
{
    if (!head)
        return;
    int err = st->wfailed ? SL_EIO : 0;
    uint64_t pos = st->wpos;
    if (!err) {
        struct iovec iov[ST_IOV_BATCH];
        int n = 0;
        uint64_t chunk_off = pos;
        for (struct st_job *j = head;; j = j->next) {
            uint32_t blen = j->frame_len - BR_STORE_FRAME_HDR;
            le32_put(j->frame + 4, br_store_crc32c(0, j->frame + BR_STORE_FRAME_HDR, blen));
            j->frame_off = pos;
            j->gen = st->wgen;
            pos += j->frame_len;
            iov[n].iov_base = j->frame;
            iov[n].iov_len = j->frame_len;
            n++;
            if (n == ST_IOV_BATCH || j == tail) {
                if (pwritev_full(st->wfd, iov, n, chunk_off) != 0) {
                    err = SL_EIO;
                    sl_error(ST_COMP,
                             "%s: write of %" PRIu64 " bytes at offset %" PRIu64
                             " failed: %s; the store is now failed",
                             st->path, pos - chunk_off, chunk_off, strerror(errno));
                    break;
                }
                chunk_off = pos;
                n = 0;
            }
            if (j == tail)
                break;
        }
        if (!err) {
            if (fsync_retry(st->wfd, true) != 0) {
                err = SL_EIO;
                sl_error(ST_COMP, "%s: fdatasync failed: %s; the store is now failed", st->path,
                         strerror(errno));
            } else {
                st->t_fsyncs++;
                st->wpos = pos;
            }
        }
        if (err)
            st->wfailed = true;
    }
    for (struct st_job *j = head;; j = j->next) {
        j->err = err;
        if (j == tail)
            break;
    }
    sy_post(st, head, tail);
}

static void compact_free(struct st_compact *c)
{
    if (!c)
        return;
    if (c->rfd >= 0)
        close(c->rfd);
    free(c->moved);
    idx_clear(&c->ix);
    free(c);
}

/* Copies every live frame of c->ix, in first-put order, from wfd to nfd after the header. */
static int sy_copy_live(br_store *st, struct st_compact *c, int nfd, uint64_t *npos)
{
    size_t cap = ST_READ_CHUNK, olen = 0;
    uint8_t *out = malloc(cap);
    if (!out)
        return SL_ENOMEM;
    uint64_t wbase = *npos; /* file offset of out[0] */
    int rc = 0;
    size_t i = 0;
    for (struct st_ent *e = c->ix.first; e && rc == 0; e = e->onext, i++) {
        if (e->frame_len > cap - olen && olen > 0) {
            rc = pwrite_full(nfd, out, olen, wbase);
            wbase += olen;
            olen = 0;
            if (rc)
                break;
        }
        c->moved[i].tent = e;
        c->moved[i].old_off = e->frame_off;
        uint64_t new_off = wbase + olen;
        if (e->frame_len <= cap - olen) {
            rc = pread_full(st->wfd, out + olen, e->frame_len, e->frame_off);
            olen += e->frame_len;
        } else {
            /* A frame bigger than the buffer goes through it in pieces. */
            for (uint32_t done = 0; done < e->frame_len && rc == 0;) {
                uint32_t n = e->frame_len - done;
                if (n > cap)
                    n = (uint32_t)cap;
                rc = pread_full(st->wfd, out, n, e->frame_off + done);
                if (rc == 0)
                    rc = pwrite_full(nfd, out, n, wbase);
                wbase += n;
                done += n;
            }
        }
        e->frame_off = new_off;
    }
    if (rc == 0 && olen > 0) {
        rc = pwrite_full(nfd, out, olen, wbase);
        wbase += olen;
    }
    free(out);
    c->nmoved = i;
    *npos = wbase;
    return rc;
}

/*
 * Compacts store.log: replays it up to wpos, writes the live frames to store.log.compact,
 * fdatasyncs, renames it over store.log, fsyncs the directory, and switches wfd to it. Sets
 * job->err (and job->fatal when the store can no longer be trusted) or job->cres.
 */
static void sy_compact(br_store *st, struct st_job *job)
{
    int64_t t0 = sl_mono_ns();
    errno = 0; /* so the failure message shows a system error only when there was one */
    if (st->wfailed) {
        job->err = SL_EIO;
        job->fatal = true;
        return;
    }
    struct st_compact *c = calloc(1, sizeof(*c));
    struct st_reader rd = {.fd = st->wfd, .end = st->wpos, .boff = 0, .blen = 0};
    int nfd = -1, rc;
    uint64_t live_bytes = 0;
    const char *stage = "out of memory";
    if (!c) {
        rc = SL_ENOMEM;
        goto fail;
    }
    c->rfd = -1;
    if ((rc = idx_init(&c->ix)) != 0)
        goto fail;

    stage = "replaying the log";
    for (uint64_t off = BR_STORE_HEADER_LEN;;) {
        struct br_store_record rec;
        uint32_t flen;
        const uint8_t *frame;
        const char *why = "";
        bool torn;
        rc = reader_next(&rd, off, &rec, &flen, &frame, &why, &torn);
        if (rc == 0)
            break;
        if (rc < 0) {
            sl_error(ST_COMP, "%s: compaction found a bad frame at offset %" PRIu64 " (%s)",
                     st->path, off, why);
            goto fail;
        }
        if ((rc = idx_apply(&c->ix, &rec, off, flen, st->wgen, &live_bytes)) != 0)
            goto fail;
        c->old_records++;
        off += flen;
    }
    reader_free(&rd);
    c->moved = calloc(c->ix.count ? c->ix.count : 1, sizeof(*c->moved));
    if (!c->moved) {
        rc = SL_ENOMEM;
        goto fail;
    }

    stage = "writing store.log.compact";
    nfd = open(st->cpath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (nfd < 0) {
        rc = SL_EIO;
        goto fail;
    }
    uint8_t hdr[BR_STORE_HEADER_LEN];
    memcpy(hdr, BR_STORE_MAGIC, 4);
    le32_put(hdr + 4, BR_STORE_VERSION);
    uint64_t npos = BR_STORE_HEADER_LEN;
    if ((rc = pwrite_full(nfd, hdr, sizeof(hdr), 0)) != 0 ||
        (rc = sy_copy_live(st, c, nfd, &npos)) != 0 || (rc = fsync_retry(nfd, true)) != 0)
        goto fail;
    st->t_fsyncs++;
    c->rfd = fcntl(nfd, F_DUPFD_CLOEXEC, 0);
    if (c->rfd < 0) {
        rc = SL_EIO;
        goto fail;
    }
    stage = "renaming store.log.compact";
    if (rename(st->cpath, st->path) != 0) {
        rc = SL_EIO;
        goto fail;
    }
    /* From here store.log is the new file: there is no going back to the old descriptor. */
    close(st->wfd);
    st->wfd = nfd;
    c->old_size = st->wpos;
    c->new_size = npos;
    c->old_gen = st->wgen;
    c->new_gen = ++st->wgen;
    st->wpos = npos;
    if (fsync_retry(st->dirfd, false) != 0) {
        sl_error(ST_COMP,
                 "%s: fsync of the directory after compaction failed: %s; the store "
                 "is now failed",
                 st->dir, strerror(errno));
        st->wfailed = true;
        job->err = SL_EIO;
        job->fatal = true;
        compact_free(c);
        return;
    }
    st->t_fsyncs++;
    c->took_ms = (sl_mono_ns() - t0) / 1000000;
    job->cres = c;
    return;

fail:
    /* The old file is untouched and still current: compaction is skipped, not fatal. */
    sl_error(ST_COMP, "%s: compaction failed while %s (%s%s%s); keeping the current file", st->path,
             stage, sl_strerror(rc), errno ? ": " : "", errno ? strerror(errno) : "");
    reader_free(&rd);
    if (nfd >= 0) {
        close(nfd);
        unlink(st->cpath);
    }
    compact_free(c);
    job->err = rc < 0 ? rc : SL_EIO;
}

/* Runs one batch taken from the queue, in order. */
static void sy_run(br_store *st, struct st_job *batch)
{
    struct st_job *wh = NULL, *wt = NULL, *next;
    for (struct st_job *j = batch; j; j = next) {
        next = j->next;
        j->next = NULL;
        switch (j->kind) {
        case JOB_WRITE:
            if (wt)
                wt->next = j;
            else
                wh = j;
            wt = j;
            break;
        case JOB_COMPACT:
            sy_flush(st, wh, wt);
            wh = wt = NULL;
            sy_compact(st, j);
            sy_post(st, j, j);
            break;
        case JOB_CLOSE:
            close(j->fd);
            free(j);
            break;
        }
    }
    sy_flush(st, wh, wt);
}

static void *sy_main(void *arg)
{
    br_store *st = arg;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->q_head && !st->stop)
            pthread_cond_wait(&st->cv, &st->mu);
        struct st_job *batch = st->q_head;
        st->q_head = st->q_tail = NULL;
        if (!batch)
            break; /* stop requested and nothing left */
        pthread_mutex_unlock(&st->mu);
        sy_run(st, batch);
        pthread_mutex_lock(&st->mu);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Loop side: queueing, dispatch, compaction bookkeeping.                                   */
/* ---------------------------------------------------------------------------------------- */

static void st_enqueue(br_store *st, struct st_job *j)
{
    j->next = NULL;
    pthread_mutex_lock(&st->mu);
    if (st->q_tail)
        st->q_tail->next = j;
    else
        st->q_head = j;
    st->q_tail = j;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

/* Hands fd to the syncer to close (closing the last descriptor of a big unlinked file frees
 * its blocks, which can take a while); closes it here when the syncer is gone. */
static void st_close_later(br_store *st, int fd)
{
    if (fd < 0)
        return;
    struct st_job *j = st->closing ? NULL : calloc(1, sizeof(*j));
    if (!j) {
        close(fd);
        return;
    }
    j->kind = JOB_CLOSE;
    j->fd = fd;
    st_enqueue(st, j);
}

static int st_start_compaction(br_store *st)
{
    struct st_job *j = calloc(1, sizeof(*j));
    if (!j)
        return SL_ENOMEM;
    j->kind = JOB_COMPACT;
    st->compacting = true;
    sl_info(ST_COMP,
            "%s: compacting: %" PRIu64 " bytes, %" PRIu64 " live in %zu records, %" PRIu64
            " dead records",
            st->path, st->file_bytes, st->live_bytes, st->idx.count, st->nrecords - st->idx.count);
    st_enqueue(st, j);
    return 0;
}

static void st_maybe_compact(br_store *st)
{
    if (st->compacting || st->failed || st->closing || st->file_bytes < st->compact_min)
        return;
    uint64_t dead = st->file_bytes - BR_STORE_HEADER_LEN - st->live_bytes;
    if (dead <= st->live_bytes)
        return;
    if (st->compact_not_before_ns && sl_mono_ns() < st->compact_not_before_ns)
        return;
    if (st_start_compaction(st) != 0)
        sl_warn(ST_COMP, "%s: no memory to start a compaction; will retry", st->path);
}

static void st_set_failed(br_store *st, int err)
{
    if (st->failed)
        return;
    st->failed = true;
    sl_error(ST_COMP,
             "%s: store failed (%s): writes now complete with SL_EIO, reads fail; "
             "reopen to recover",
             st->path, sl_err_name(err));
}

static void st_finish_compaction(br_store *st, struct st_job *j)
{
    st->compacting = false;
    struct st_compact *c = j->cres;
    j->cres = NULL;
    if (!c) {
        if (j->fatal)
            st_set_failed(st, j->err);
        else
            st->compact_not_before_ns = sl_mono_ns() + ST_COMPACT_RETRY_NS;
        return;
    }
    /* Repoint every entry still naming its frame in the old file. Entries rewritten since the
     * compaction was queued are pending or already in the new generation and keep theirs. */
    size_t repointed = 0;
    for (size_t i = 0; i < c->nmoved; i++) {
        const struct st_ent *t = c->moved[i].tent;
        struct st_ent *e = idx_find(&st->idx, t->key, t->klen, t->hash);
        if (e && !e->pend && e->gen == c->old_gen && e->frame_off == c->moved[i].old_off) {
            e->frame_off = t->frame_off;
            e->gen = c->new_gen;
            repointed++;
        }
    }
    for (struct st_ent *e = st->idx.first; e; e = e->onext)
        if (!e->pend && e->gen == c->old_gen)
            sl_error(ST_COMP, "%s: internal: key \"%s\" not found by compaction", st->path,
                     e->key); /* reads of it will fail with SL_EIO rather than lie */
    st_close_later(st, st->rfd);
    st->rfd = c->rfd;
    c->rfd = -1;
    st->rgen = c->new_gen;
    st->file_bytes = st->file_bytes - c->old_size + c->new_size;
    st->nrecords = st->nrecords - c->old_records + c->nmoved;
    st->compactions++;
    sl_info(ST_COMP,
            "%s: compacted %" PRIu64 " -> %" PRIu64 " bytes (%" PRIu64 " records -> %zu"
            " live, %zu repointed) in %" PRId64 " ms",
            st->path, c->old_size, c->new_size, c->old_records, c->nmoved, repointed, c->took_ms);
    compact_free(c);
}

static void st_complete(br_store *st, struct st_job *j)
{
    if (j->kind == JOB_COMPACT) {
        st_finish_compaction(st, j);
        free(j);
        st_maybe_compact(st);
        return;
    }
    if (j->ent) {
        struct st_ent *e = j->ent;
        e->pend = NULL;
        e->frame_off = j->frame_off;
        e->gen = j->gen;
    }
    if (j->err)
        st_set_failed(st, j->err);
    br_store_done_cb cb = j->cb;
    void *arg = j->arg;
    int err = j->err;
    free(j); /* and its frame */
    if (cb)
        cb(err, arg);
}

static void st_destroy(br_store *st);

/* Leaves a region where the store must stay allocated; frees it if free was deferred. */
static void st_leave(br_store *st)
{
    if (--st->busy == 0 && st->free_requested)
        st_destroy(st);
}

/* Runs the completions the syncer posted, in order. */
static void st_dispatch(br_store *st)
{
    st->busy++;
    pthread_mutex_lock(&st->mu);
    if (st->d_head) {
        if (st->x_tail)
            st->x_tail->next = st->d_head;
        else
            st->x_head = st->d_head;
        st->x_tail = st->d_tail;
        st->d_head = st->d_tail = NULL;
    }
    st->fsyncs = st->sh_fsyncs;
    st->notified = false;
    pthread_mutex_unlock(&st->mu);
    struct st_job *j;
    while ((j = st->x_head) != NULL) {
        st->x_head = j->next;
        if (!st->x_head)
            st->x_tail = NULL;
        st_complete(st, j);
    }
    st_leave(st);
}

static void st_on_notify(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    st_dispatch(arg);
}

/* ---------------------------------------------------------------------------------------- */
/* Open: header, replay, truncation.                                                        */
/* ---------------------------------------------------------------------------------------- */

/* Copies file bytes [off, end) to store.log.corrupt and fsyncs it. Best effort. */
static void st_save_cut(br_store *st, uint64_t off, uint64_t end)
{
    int fd = open(st->bpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    uint8_t *buf = malloc(ST_READ_CHUNK);
    int rc = (fd < 0 || !buf) ? SL_EIO : 0;
    for (uint64_t o = off; rc == 0 && o < end;) {
        size_t n = end - o > ST_READ_CHUNK ? ST_READ_CHUNK : (size_t)(end - o);
        rc = pread_full(st->wfd, buf, n, o);
        if (rc == 0)
            rc = pwrite_full(fd, buf, n, o - off);
        o += n;
    }
    if (rc == 0)
        rc = fsync_retry(fd, false);
    if (rc == 0)
        fsync_retry(st->dirfd, false);
    else
        sl_error(ST_COMP, "%s: could not save the cut bytes to %s", st->path, st->bpath);
    free(buf);
    if (fd >= 0)
        close(fd);
}

/* Checks or writes the file header. *end is the file size, updated if the header is written. */
static int st_check_header(br_store *st, uint64_t *end)
{
    uint8_t hdr[BR_STORE_HEADER_LEN];
    memcpy(hdr, BR_STORE_MAGIC, 4);
    le32_put(hdr + 4, BR_STORE_VERSION);
    if (*end >= BR_STORE_HEADER_LEN) {
        uint8_t got[BR_STORE_HEADER_LEN];
        if (pread_full(st->wfd, got, sizeof(got), 0) != 0)
            return SL_EIO;
        if (memcmp(got, BR_STORE_MAGIC, 4) != 0) {
            sl_error(ST_COMP, "%s: not a sluice store (bad magic); refusing to touch it", st->path);
            return SL_ECORRUPT;
        }
        if (le32_get(got + 4) != BR_STORE_VERSION) {
            sl_error(ST_COMP, "%s: store format version %" PRIu32 " is not supported (want %u)",
                     st->path, le32_get(got + 4), BR_STORE_VERSION);
            return SL_EUNSUPPORTED;
        }
        return 0;
    }
    if (*end > 0) {
        /* A crash while creating the file leaves a prefix of the header: start again. */
        uint8_t got[BR_STORE_HEADER_LEN];
        if (pread_full(st->wfd, got, (size_t)*end, 0) != 0)
            return SL_EIO;
        if (memcmp(got, hdr, (size_t)*end) != 0) {
            sl_error(ST_COMP, "%s: not a sluice store (%" PRIu64 " foreign bytes)", st->path, *end);
            return SL_ECORRUPT;
        }
        sl_warn(ST_COMP, "%s: torn header (%" PRIu64 " bytes); rewriting it", st->path, *end);
    }
    if (pwrite_full(st->wfd, hdr, sizeof(hdr), 0) != 0 || ftruncate(st->wfd, sizeof(hdr)) != 0 ||
        fsync_retry(st->wfd, true) != 0 || fsync_retry(st->dirfd, false) != 0) {
        sl_error(ST_COMP, "%s: cannot write the header: %s", st->path, strerror(errno));
        return SL_EIO;
    }
    *end = sizeof(hdr);
    return 0;
}

/* Replays [header, *end) into the index; cuts a bad tail and sets *end to the good end. */
static int st_replay(br_store *st, uint64_t *end)
{
    struct st_reader rd = {.fd = st->wfd, .end = *end};
    uint64_t off = BR_STORE_HEADER_LEN;
    int rc;
    for (;;) {
        struct br_store_record rec;
        uint32_t flen;
        const uint8_t *frame;
        const char *why = "";
        bool torn;
        rc = reader_next(&rd, off, &rec, &flen, &frame, &why, &torn);
        if (rc == 0)
            break;
        if (rc == 1) {
            if ((rc = idx_apply(&st->idx, &rec, off, flen, 0, &st->live_bytes)) != 0)
                goto out;
            st->nrecords++;
            if (rec.seq > st->seq)
                st->seq = rec.seq;
            off += flen;
            continue;
        }
        if (rc != SL_ECORRUPT)
            goto out;

        /* Count the good frames after the bad one, when its length lets us step over it. */
        uint64_t good_after = 0;
        for (uint64_t o = off + flen; flen > 0;) {
            struct br_store_record r2;
            uint32_t f2;
            const char *w2;
            bool t2;
            if (reader_next(&rd, o, &r2, &f2, &frame, &w2, &t2) != 1)
                break;
            good_after++;
            o += f2;
        }
        uint64_t cut = *end - off;
        st->corrupt_skipped = 1 + good_after;
        st_save_cut(st, off, *end);
        if (good_after > 0)
            sl_error(ST_COMP,
                     "%s: corrupt frame at offset %" PRIu64 " (%s) followed by %" PRIu64
                     " good records: cutting %" PRIu64 " bytes (%" PRIu64 " records), "
                     "ACKNOWLEDGED DATA MAY BE LOST; the cut bytes are in %s",
                     st->path, off, why, good_after, cut, st->corrupt_skipped, st->bpath);
        else
            sl_warn(ST_COMP,
                    "%s: %s tail at offset %" PRIu64 " (%s): skipped %" PRIu64
                    " bytes (1 record), truncated to %" PRIu64 "; copy in %s",
                    st->path, torn ? "torn" : "corrupt", off, why, cut, off, st->bpath);
        if (ftruncate(st->wfd, (off_t)off) != 0 || fsync_retry(st->wfd, true) != 0) {
            sl_error(ST_COMP, "%s: cannot truncate to %" PRIu64 ": %s", st->path, off,
                     strerror(errno));
            rc = SL_EIO;
            goto out;
        }
        *end = off;
        break;
    }
    rc = 0;
out:
    reader_free(&rd);
    return rc;
}

static uint64_t st_env_threshold(void)
{
    const char *s = getenv(BR_STORE_COMPACT_ENV);
    if (!s || !*s)
        return BR_STORE_DEFAULT_COMPACT_BYTES;
    char *endp;
    errno = 0;
    unsigned long long v = strtoull(s, &endp, 10);
    if (errno || *endp || s[0] == '-') {
        sl_warn(ST_COMP, "ignoring %s=\"%s\": not a byte count", BR_STORE_COMPACT_ENV, s);
        return BR_STORE_DEFAULT_COMPACT_BYTES;
    }
    return v;
}

int br_store_open(struct event_base *base, const char *dir, br_store **out)
{
    if (!base || !dir || !*dir || !out)
        return SL_EINVAL;
    int rc = SL_ENOMEM;
    br_store *st = calloc(1, sizeof(*st));
    if (!st)
        return SL_ENOMEM;
    st->dirfd = st->pipe_r = st->pipe_w = st->wfd = st->rfd = -1;
    st->base = base;
    st->compact_min = st_env_threshold();
    st->dir = strdup(dir);
    st->path = path_join(dir, "store.log");
    st->cpath = path_join(dir, "store.log.compact");
    st->bpath = path_join(dir, "store.log.corrupt");
    if (!st->dir || !st->path || !st->cpath || !st->bpath || idx_init(&st->idx) != 0)
        goto fail;

    if ((rc = mkdir_p(dir)) != 0)
        goto fail;
    rc = SL_EIO;
    st->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->dirfd < 0) {
        sl_error(ST_COMP, "cannot open directory %s: %s", dir, strerror(errno));
        goto fail;
    }
    if (flock(st->dirfd, LOCK_EX | LOCK_NB) != 0) {
        sl_error(ST_COMP, "%s is in use by another store (flock: %s)", dir, strerror(errno));
        rc = errno == EWOULDBLOCK ? SL_EBUSY : SL_EIO;
        goto fail;
    }
    if (unlink(st->cpath) == 0)
        sl_warn(ST_COMP, "%s: removed an unfinished compaction", st->cpath);
    st->wfd = open(st->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    struct stat sb;
    if (st->wfd < 0 || fstat(st->wfd, &sb) != 0) {
        sl_error(ST_COMP, "cannot open %s: %s", st->path, strerror(errno));
        goto fail;
    }
    uint64_t end = (uint64_t)sb.st_size;
    int64_t t0 = sl_mono_ns();
    if ((rc = st_check_header(st, &end)) != 0 || (rc = st_replay(st, &end)) != 0)
        goto fail;
    rc = SL_EIO;
    st->wpos = st->file_bytes = end;
    st->rfd = fcntl(st->wfd, F_DUPFD_CLOEXEC, 0);
    if (st->rfd < 0)
        goto fail;

    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
        goto fail;
    st->pipe_r = p[0];
    st->pipe_w = p[1];
    rc = SL_ENOMEM;
    st->ev = event_new(base, st->pipe_r, EV_READ | EV_PERSIST, st_on_notify, st);
    if (!st->ev || event_add(st->ev, NULL) != 0)
        goto fail;
    if (pthread_mutex_init(&st->mu, NULL) != 0)
        goto fail;
    st->mu_ok = true;
    if (pthread_cond_init(&st->cv, NULL) != 0)
        goto fail;
    st->cv_ok = true;

    /* The syncer takes no signals: they belong to the loop thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int prc = pthread_create(&st->thr, NULL, sy_main, st);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (prc != 0) {
        sl_error(ST_COMP, "cannot start the store thread: %s", strerror(prc));
        rc = SL_ENOMEM;
        goto fail;
    }
    st->thr_started = true;

    sl_info(ST_COMP,
            "%s: opened: %zu live, %" PRIu64 " dead records, %" PRIu64 " bytes, "
            "replayed in %" PRId64 " ms",
            st->path, st->idx.count, st->nrecords - st->idx.count, end,
            (sl_mono_ns() - t0) / 1000000);
    st_maybe_compact(st);
    *out = st;
    return 0;

fail:
    st_destroy(st);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Free.                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/* Releases everything; the syncer is not running. Handles a partially opened store. */
static void st_destroy(br_store *st)
{
    if (st->ev)
        event_free(st->ev);
    if (st->cv_ok)
        pthread_cond_destroy(&st->cv);
    if (st->mu_ok)
        pthread_mutex_destroy(&st->mu);
    if (st->pipe_r >= 0)
        close(st->pipe_r);
    if (st->pipe_w >= 0)
        close(st->pipe_w);
    if (st->rfd >= 0)
        close(st->rfd);
    if (st->wfd >= 0)
        close(st->wfd);
    if (st->dirfd >= 0)
        close(st->dirfd); /* releases the flock */
    idx_clear(&st->idx);
    free(st->bpath);
    free(st->cpath);
    free(st->path);
    free(st->dir);
    free(st);
}

/*
 * Contract in broker.h. Here: the syncer writes and fsyncs everything queued (and runs a
 * queued compaction) before it exits; every pending callback then runs, before this returns,
 * with 0 for durable writes or SL_EIO. Safe from inside a store callback (release deferred);
 * puts issued by callbacks during the drain get SL_ECLOSED.
 */
void br_store_free(br_store *st)
{
    if (!st || st->closing)
        return;
    st->closing = true;
    if (st->thr_started) {
        pthread_mutex_lock(&st->mu);
        st->stop = true;
        pthread_cond_signal(&st->cv);
        pthread_mutex_unlock(&st->mu);
        pthread_join(st->thr, NULL);
        st->thr_started = false;
    }
    /* Everything queued is now written (or failed): run the callbacks. */
    st_dispatch(st);
    if (st->busy > 0) {
        st->free_requested = true; /* called from a callback: the outer dispatch frees */
        return;
    }
    st_destroy(st);
}

/* ---------------------------------------------------------------------------------------- */
/* Writes.                                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* Builds the frame of one record; the CRC is left for the syncer. */
static struct st_job *st_job_new(br_store *st, enum br_store_op op, const char *key, size_t klen,
                                 const void *value, size_t len, uint32_t *val_rel)
{
    uint8_t hdr[ST_PACK_HDR_MAX];
    struct pk_buf b = {.p = hdr, .cap = sizeof(hdr), .len = 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, pk_write);
    int bad = msgpack_pack_map(&pk, op == BR_STORE_OP_PUT ? 4 : 3);
    bad |= msgpack_pack_str_with_body(&pk, "op", 2);
    bad |= msgpack_pack_str_with_body(&pk, op == BR_STORE_OP_PUT ? "put" : "del", 3);
    bad |= msgpack_pack_str_with_body(&pk, "seq", 3);
    bad |= msgpack_pack_uint64(&pk, st->seq + 1);
    bad |= msgpack_pack_str_with_body(&pk, "k", 1);
    bad |= msgpack_pack_str_with_body(&pk, key, klen);
    if (op == BR_STORE_OP_PUT) {
        bad |= msgpack_pack_str_with_body(&pk, "v", 1);
        bad |= msgpack_pack_bin(&pk, len);
    }
    if (bad)
        return NULL; /* cannot happen: the header buffer fits the largest key */

    /* One allocation: the frame follows the job. */
    size_t flen = BR_STORE_FRAME_HDR + b.len + len;
    struct st_job *j = malloc(sizeof(*j) + flen);
    if (!j)
        return NULL;
    memset(j, 0, sizeof(*j));
    uint8_t *frame = (uint8_t *)(j + 1);
    le32_put(frame, (uint32_t)(b.len + len));
    le32_put(frame + 4, 0);
    memcpy(frame + BR_STORE_FRAME_HDR, hdr, b.len);
    if (len > 0)
        memcpy(frame + BR_STORE_FRAME_HDR + b.len, value, len);
    j->kind = JOB_WRITE;
    j->frame = frame;
    j->frame_len = (uint32_t)flen;
    *val_rel = (uint32_t)(BR_STORE_FRAME_HDR + b.len);
    return j;
}

static int st_check_key(const br_store *st, const char *key, size_t *klen)
{
    if (!st || !key)
        return SL_EINVAL;
    *klen = strnlen(key, BR_STORE_MAX_KEY + 1);
    if (*klen == 0)
        return SL_EINVAL;
    if (*klen > BR_STORE_MAX_KEY)
        return SL_ETOOBIG;
    return st->closing ? SL_ECLOSED : 0;
}

int br_store_put(br_store *st, const char *key, const void *value, size_t len, br_store_done_cb cb,
                 void *arg)
{
    size_t klen;
    int rc = st_check_key(st, key, &klen);
    if (rc)
        return rc;
    if (!value && len > 0)
        return SL_EINVAL;
    if (len > BR_STORE_MAX_VALUE)
        return SL_ETOOBIG;

    uint64_t h = st_hash(key, klen);
    struct st_ent *e = idx_find(&st->idx, key, klen, h), *fresh = NULL;
    if (!e && !(fresh = ent_new(key, klen, h)))
        return SL_ENOMEM;
    uint32_t val_rel;
    struct st_job *j = st_job_new(st, BR_STORE_OP_PUT, key, klen, value, len, &val_rel);
    if (!j) {
        free(fresh);
        return SL_ENOMEM;
    }
    /* Nothing can fail from here on. */
    st->seq++;
    j->cb = cb;
    j->arg = arg;
    if (fresh) {
        idx_insert(&st->idx, fresh);
        e = fresh;
    } else {
        st->live_bytes -= e->frame_len;
        if (e->pend)
            e->pend->ent = NULL;
    }
    e->pend = j;
    j->ent = e;
    e->frame_len = j->frame_len;
    e->val_rel = val_rel;
    e->val_len = (uint32_t)len;
    st->live_bytes += j->frame_len;
    st->file_bytes += j->frame_len;
    st->nrecords++;
    st_enqueue(st, j);
    st_maybe_compact(st);
    return 0;
}

int br_store_del(br_store *st, const char *key, br_store_done_cb cb, void *arg)
{
    size_t klen;
    int rc = st_check_key(st, key, &klen);
    if (rc)
        return rc;
    uint32_t val_rel;
    struct st_job *j = st_job_new(st, BR_STORE_OP_DEL, key, klen, NULL, 0, &val_rel);
    if (!j)
        return SL_ENOMEM;
    st->seq++;
    j->cb = cb;
    j->arg = arg;
    struct st_ent *e = idx_find(&st->idx, key, klen, st_hash(key, klen));
    if (e) {
        if (e->pend)
            e->pend->ent = NULL;
        st->live_bytes -= e->frame_len;
        idx_remove(&st->idx, e);
        free(e);
    }
    st->file_bytes += j->frame_len;
    st->nrecords++;
    st_enqueue(st, j);
    st_maybe_compact(st);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Reads.                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/*
 * Reads e's value into *buf (grown as needed, capacity *cap); the value is (*buf)[*voff ..
 * *voff + e->val_len). A durable value is read as its whole frame and its CRC checked.
 */
static int st_read_value(br_store *st, const struct st_ent *e, uint8_t **buf, size_t *cap,
                         size_t *voff)
{
    size_t need = e->pend ? e->val_len : e->frame_len;
    if (need == 0)
        need = 1;
    if (need > *cap) {
        uint8_t *nb = realloc(*buf, need);
        if (!nb)
            return SL_ENOMEM;
        *buf = nb;
        *cap = need;
    }
    if (e->pend) {
        memcpy(*buf, e->pend->frame + e->val_rel, e->val_len);
        *voff = 0;
        return 0;
    }
    if (e->gen != st->rgen)
        return SL_EIO; /* see st_finish_compaction: never expected */
    if (pread_full(st->rfd, *buf, e->frame_len, e->frame_off) != 0) {
        sl_error(ST_COMP, "%s: cannot read %" PRIu32 " bytes at offset %" PRIu64 ": %s", st->path,
                 e->frame_len, e->frame_off, strerror(errno));
        return SL_EIO;
    }
    uint32_t blen = le32_get(*buf);
    if (blen != e->frame_len - BR_STORE_FRAME_HDR ||
        br_store_crc32c(0, *buf + BR_STORE_FRAME_HDR, blen) != le32_get(*buf + 4)) {
        sl_error(ST_COMP, "%s: record of key \"%s\" at offset %" PRIu64 " fails its checksum",
                 st->path, e->key, e->frame_off);
        return SL_ECORRUPT;
    }
    *voff = e->val_rel;
    return 0;
}

/*
 * Contract in broker.h. Synchronous: one pread of the frame (CRC checked) unless the value is
 * still pending, then a copy from memory. SL_ENOENT, SL_ECORRUPT (checksum), SL_EIO (read
 * error, or the store failed), SL_ECLOSED, SL_ENOMEM, SL_EINVAL.
 */
int br_store_get(br_store *st, const char *key, void **value, size_t *len)
{
    if (!st || !key || !value || !len)
        return SL_EINVAL;
    if (st->closing)
        return SL_ECLOSED;
    if (st->failed)
        return SL_EIO;
    size_t klen = strlen(key);
    struct st_ent *e = idx_find(&st->idx, key, klen, st_hash(key, klen));
    if (!e)
        return SL_ENOENT;
    uint8_t *buf = NULL;
    size_t cap = 0, voff = 0;
    int rc = st_read_value(st, e, &buf, &cap, &voff);
    if (rc) {
        free(buf);
        return rc;
    }
    if (voff > 0) {
        memmove(buf, buf + voff, e->val_len);
        uint8_t *shrunk = realloc(buf, e->val_len ? e->val_len : 1);
        if (shrunk)
            buf = shrunk;
    }
    *value = buf;
    *len = e->val_len;
    return 0;
}

/*
 * Contract in broker.h. The matching keys are snapshotted first, so cb may put, del (keys
 * deleted before their turn are skipped, keys added are not visited) or free the store (the
 * scan then returns SL_ECLOSED). Errors as br_store_get.
 */
int br_store_scan(br_store *st, const char *prefix, br_store_scan_cb cb, void *arg)
{
    if (!st || !prefix || !cb)
        return SL_EINVAL;
    if (st->closing)
        return SL_ECLOSED;
    if (st->failed)
        return SL_EIO;
    /* Snapshot the matching keys first: the callback may put, delete or even free. */
    size_t plen = strlen(prefix), n = 0, bytes = 0;
    for (const struct st_ent *e = st->idx.first; e; e = e->onext)
        if (e->klen >= plen && memcmp(e->key, prefix, plen) == 0) {
            n++;
            bytes += e->klen + 1;
        }
    if (n == 0)
        return 0;
    char **keys = malloc(n * sizeof(*keys));
    char *arena = malloc(bytes);
    if (!keys || !arena) {
        free(keys);
        free(arena);
        return SL_ENOMEM;
    }
    size_t i = 0, at = 0;
    for (const struct st_ent *e = st->idx.first; e; e = e->onext)
        if (e->klen >= plen && memcmp(e->key, prefix, plen) == 0) {
            keys[i++] = memcpy(arena + at, e->key, e->klen + 1);
            at += e->klen + 1;
        }

    int rc = 0;
    uint8_t *buf = NULL;
    size_t cap = 0;
    st->busy++;
    for (i = 0; i < n && rc == 0; i++) {
        if (st->closing || st->failed) {
            rc = st->closing ? SL_ECLOSED : SL_EIO;
            break;
        }
        size_t klen = strlen(keys[i]), voff;
        const struct st_ent *e = idx_find(&st->idx, keys[i], klen, st_hash(keys[i], klen));
        if (!e)
            continue; /* deleted by an earlier callback */
        if ((rc = st_read_value(st, e, &buf, &cap, &voff)) != 0)
            break;
        rc = cb(keys[i], buf + voff, e->val_len, arg);
    }
    free(buf);
    free(keys);
    free(arena);
    st_leave(st);
    return rc;
}

/* Contract in broker.h; the counters' exact meaning is in the comment inside. */
void br_store_stats(const br_store *st, struct br_store_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof(*out));
    if (!st)
        return;
    /* file_bytes and dead_records include writes queued but not yet durable; fsyncs counts
     * the helper thread's fdatasync/fsync calls whose completions the loop has taken. */
    out->live_records = st->idx.count;
    out->dead_records = st->nrecords - st->idx.count;
    out->file_bytes = st->file_bytes;
    out->fsyncs = st->fsyncs;
    out->compactions = st->compactions;
    out->corrupt_skipped = st->corrupt_skipped;
}

void br_store_set_compact_threshold(br_store *st, uint64_t min_file_bytes)
{
    if (st)
        st->compact_min = min_file_bytes;
}

int br_store_compact(br_store *st)
{
    if (!st)
        return SL_EINVAL;
    if (st->closing)
        return SL_ECLOSED;
    if (st->failed)
        return SL_EIO;
    if (st->compacting)
        return SL_EBUSY;
    return st_start_compaction(st);
}
