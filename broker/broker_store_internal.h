/*
 * broker_store_internal.h - the embedded store's on-disk format, its pure decoders (for tests
 * and fuzzers) and its test hooks. Only broker_store.c and tests include this; other modules
 * use the br_store_* API in broker.h.
 *
 * On-disk format (also in schemas/store-record.schema.json):
 *
 *   <dir>/store.log = header, then frames, back to back, nothing else.
 *   header (8 bytes)  : "SLST" then u32 little-endian format version (1).
 *   frame             : u32 LE body length | u32 LE CRC32C (Castagnoli) of the body | body.
 *   body              : one msgpack map, written in this key order (readers accept any order
 *                       and ignore unknown keys; an incompatible change bumps the version):
 *                         "op"  str  "put" or "del"
 *                         "seq" uint >= 1, assigned per record in write order; compaction
 *                               copies frames verbatim, so it is not monotonic along a
 *                               compacted file (order of first put is the file order instead)
 *                         "k"   str  the key, 1..1024 bytes, no NUL
 *                         "v"   bin  the value (put only), up to 64 MiB; written last so the
 *                               value is the frame's tail and can be read with one pread.
 *
 * Other files in <dir>: store.log.compact (a compaction in progress; removed at open),
 * store.log.corrupt (the bytes cut from the tail at the last open that found corruption).
 */
#ifndef SLUICE_BROKER_STORE_INTERNAL_H
#define SLUICE_BROKER_STORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "broker/broker.h"

#define BR_STORE_MAGIC "SLST"
#define BR_STORE_VERSION 1u
#define BR_STORE_HEADER_LEN 8u
#define BR_STORE_FRAME_HDR 8u
#define BR_STORE_MAX_KEY 1024u
#define BR_STORE_MAX_VALUE (64u << 20)
/* The largest body a valid record can have: the value plus the map around it and the key. */
#define BR_STORE_MAX_BODY (BR_STORE_MAX_VALUE + 4096u)
/* The smallest: {"op":"del","seq":1,"k":"x"} is 17 bytes; anything shorter is corruption. */
#define BR_STORE_MIN_BODY 16u
/* Compaction runs when dead bytes outweigh live ones and the file is at least this big. */
#define BR_STORE_DEFAULT_COMPACT_BYTES (1u << 20)
/* Overrides the default above at br_store_open (bytes, decimal); for integration tests. */
#define BR_STORE_COMPACT_ENV "SLUICE_STORE_COMPACT_BYTES"

enum br_store_op { BR_STORE_OP_PUT = 1, BR_STORE_OP_DEL = 2 };

/* One decoded record. key and the value are borrowed from the decoded buffer. */
struct br_store_record {
    enum br_store_op op;
    uint64_t seq;
    const char *key; /* not NUL-terminated */
    size_t klen;
    size_t val_off; /* offset of the value bytes from the start of the body (put only) */
    size_t val_len;
};

/*
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven in software. Chain by
 * passing the previous result as crc; start with 0. crc32c("123456789") == 0xE3069283.
 */
uint32_t br_store_crc32c(uint32_t crc, const void *data, size_t len);

/*
 * Decodes one record body (the msgpack map) from body[0..len). Does no I/O and never reads
 * outside the buffer. Returns 0 and *out (pointing into body), SL_ECORRUPT for anything that
 * is not exactly one valid record, SL_EINVAL for NULL arguments.
 */
int br_store_record_decode(const uint8_t *body, size_t len, struct br_store_record *out);

/*
 * Decodes the frame at the start of buf[0..avail): checks the length, the CRC and the body.
 * Returns the frame's total length (> 0) and *rec (val_off is then from the body start, which
 * is buf + BR_STORE_FRAME_HDR); 0 when buf holds only part of a frame (avail too short);
 * SL_ECORRUPT with a static reason in *why (if why is not NULL) for a bad frame.
 */
int br_store_frame_decode(const uint8_t *buf, size_t avail, struct br_store_record *rec,
                          const char **why);

/*
 * Test hook: sets the file size below which automatic compaction never runs (default 1 MiB,
 * or $SLUICE_STORE_COMPACT_BYTES at open). Loop thread only.
 */
void br_store_set_compact_threshold(br_store *st, uint64_t min_file_bytes);

/*
 * Queues a compaction now, whatever the dead/live ratio and the threshold. It runs in the
 * helper thread after the writes already queued; stats.compactions grows when it is done.
 * Returns 0, SL_EBUSY (one is already under way), SL_ECLOSED, SL_EIO (the store has failed)
 * or SL_ENOMEM.
 */
int br_store_compact(br_store *st);

#endif
