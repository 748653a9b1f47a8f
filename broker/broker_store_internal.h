/*
 * broker_store_internal.h - the embedded store's on-disk format, its pure decoders (for tests
 * and fuzzers) and its test hooks, and (under BR_STORE_IMPL) what the store's own files
 * broker_store*.c share. Only those files and tests include this; other modules use the
 * br_store_* API in broker.h.
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

#ifdef BR_STORE_IMPL
/*
 * Shared between the store's own files only (broker_store.c, broker_store_codec.c,
 * broker_store_index.c, broker_store_writer.c), which define BR_STORE_IMPL before including
 * this header; tests and fuzzers do not see it.
 */
#include <stdbool.h>
#include <pthread.h>

#include <event2/event.h>

#define ST_COMP "store"
#define ST_READ_CHUNK (1u << 20) /* replay and compaction I/O unit */

/* ---------------------------------------------------------------------------------------- */
/* Little-endian helpers.                                                                   */
/* ---------------------------------------------------------------------------------------- */

static inline uint32_t le32_get(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void le32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
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

struct st_reader {
    int fd;
    uint64_t end; /* bytes of the file that may be read */
    uint8_t *buf;
    size_t cap;
    uint64_t boff; /* file offset of buf[0] */
    size_t blen;
};

/* broker_store_index.c */
uint64_t br_store_st_hash(const char *key, size_t klen);
int br_store_idx_init(struct st_index *ix);
struct st_ent *br_store_idx_find(const struct st_index *ix, const char *key, size_t klen, uint64_t h);
struct st_ent *br_store_ent_new(const char *key, size_t klen, uint64_t h);
void br_store_idx_insert(struct st_index *ix, struct st_ent *e);
void br_store_idx_remove(struct st_index *ix, struct st_ent *e);
void br_store_idx_clear(struct st_index *ix);
int br_store_idx_apply(struct st_index *ix, const struct br_store_record *rec, uint64_t off, uint32_t flen,
              uint32_t gen, uint64_t *live_bytes);

/* broker_store.c: file helpers (any thread), the frame reader, and the store's release. */
int br_store_pread_full(int fd, void *buf, size_t len, uint64_t off);
int br_store_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
int br_store_fsync_retry(int fd, bool data_only);
int br_store_reader_next(struct st_reader *r, uint64_t off, struct br_store_record *rec, uint32_t *flen,
                const uint8_t **frame, const char **why, bool *torn);
void br_store_reader_free(struct st_reader *r);
void br_store_st_destroy(br_store *st);

/* broker_store_writer.c: the syncer thread's entry point, and the loop side of the queue. */
void *br_store_sy_main(void *arg);
void br_store_st_enqueue(br_store *st, struct st_job *j);
int br_store_st_start_compaction(br_store *st);
void br_store_st_maybe_compact(br_store *st);
void br_store_st_leave(br_store *st);
void br_store_st_dispatch(br_store *st);
void br_store_st_on_notify(evutil_socket_t fd, short what, void *arg);
#endif /* BR_STORE_IMPL */

#endif
