/*
 * broker_store.c - the embedded durable store: an append-only, checksummed msgpack log with
 * an in-memory index, group commit in one helper thread, and compaction.
 *
 * The format is in broker_store_internal.h and schemas/store-record.schema.json.
 *
 * Files: this one holds the public API (open and replay, free, writes, reads), the file
 * helpers and the frame reader; broker_store_codec.c the CRC32C and the record and frame
 * decoders; broker_store_index.c the in-memory index; broker_store_writer.c the syncer thread
 * and the loop side of the job queue (dispatch, compaction bookkeeping). What they share is
 * declared in broker_store_internal.h, under BR_STORE_IMPL.
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
#define BR_STORE_IMPL
#include "broker/broker_store_internal.h"

#define ST_PACK_HDR_MAX 1200 /* msgpack map without the value bytes; key <= 1024 */

/* ---------------------------------------------------------------------------------------- */
/* File helpers (any thread).                                                               */
/* ---------------------------------------------------------------------------------------- */

int br_store_pread_full(int fd, void *buf, size_t len, uint64_t off)
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

int br_store_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
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

int br_store_fsync_retry(int fd, bool data_only)
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
        br_store_fsync_retry(fd, false);
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
    int rc = br_store_pread_full(r->fd, r->buf, (size_t)want, off);
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
int br_store_reader_next(struct st_reader *r, uint64_t off, struct br_store_record *rec, uint32_t *flen,
                const uint8_t **frame, const char **why, bool *torn)
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

void br_store_reader_free(struct st_reader *r)
{
    free(r->buf);
    r->buf = NULL;
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
        rc = br_store_pread_full(st->wfd, buf, n, o);
        if (rc == 0)
            rc = br_store_pwrite_full(fd, buf, n, o - off);
        o += n;
    }
    if (rc == 0)
        rc = br_store_fsync_retry(fd, false);
    if (rc == 0)
        br_store_fsync_retry(st->dirfd, false);
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
        if (br_store_pread_full(st->wfd, got, sizeof(got), 0) != 0)
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
        if (br_store_pread_full(st->wfd, got, (size_t)*end, 0) != 0)
            return SL_EIO;
        if (memcmp(got, hdr, (size_t)*end) != 0) {
            sl_error(ST_COMP, "%s: not a sluice store (%" PRIu64 " foreign bytes)", st->path, *end);
            return SL_ECORRUPT;
        }
        sl_warn(ST_COMP, "%s: torn header (%" PRIu64 " bytes); rewriting it", st->path, *end);
    }
    if (br_store_pwrite_full(st->wfd, hdr, sizeof(hdr), 0) != 0 || ftruncate(st->wfd, sizeof(hdr)) != 0 ||
        br_store_fsync_retry(st->wfd, true) != 0 || br_store_fsync_retry(st->dirfd, false) != 0) {
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
        rc = br_store_reader_next(&rd, off, &rec, &flen, &frame, &why, &torn);
        if (rc == 0)
            break;
        if (rc == 1) {
            if ((rc = br_store_idx_apply(&st->idx, &rec, off, flen, 0, &st->live_bytes)) != 0)
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
            if (br_store_reader_next(&rd, o, &r2, &f2, &frame, &w2, &t2) != 1)
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
        if (ftruncate(st->wfd, (off_t)off) != 0 || br_store_fsync_retry(st->wfd, true) != 0) {
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
    br_store_reader_free(&rd);
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
    if (!st->dir || !st->path || !st->cpath || !st->bpath || br_store_idx_init(&st->idx) != 0)
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
    st->ev = event_new(base, st->pipe_r, EV_READ | EV_PERSIST, br_store_st_on_notify, st);
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
    int prc = pthread_create(&st->thr, NULL, br_store_sy_main, st);
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
    br_store_st_maybe_compact(st);
    *out = st;
    return 0;

fail:
    br_store_st_destroy(st);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Free.                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/* Releases everything; the syncer is not running. Handles a partially opened store. */
void br_store_st_destroy(br_store *st)
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
    br_store_idx_clear(&st->idx);
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
    br_store_st_dispatch(st);
    if (st->busy > 0) {
        st->free_requested = true; /* called from a callback: the outer dispatch frees */
        return;
    }
    br_store_st_destroy(st);
}

/* ---------------------------------------------------------------------------------------- */
/* Writes.                                                                                  */
/* ---------------------------------------------------------------------------------------- */

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

    uint64_t h = br_store_st_hash(key, klen);
    struct st_ent *e = br_store_idx_find(&st->idx, key, klen, h), *fresh = NULL;
    if (!e && !(fresh = br_store_ent_new(key, klen, h)))
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
        br_store_idx_insert(&st->idx, fresh);
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
    br_store_st_enqueue(st, j);
    br_store_st_maybe_compact(st);
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
    struct st_ent *e = br_store_idx_find(&st->idx, key, klen, br_store_st_hash(key, klen));
    if (e) {
        if (e->pend)
            e->pend->ent = NULL;
        st->live_bytes -= e->frame_len;
        br_store_idx_remove(&st->idx, e);
        free(e);
    }
    st->file_bytes += j->frame_len;
    st->nrecords++;
    br_store_st_enqueue(st, j);
    br_store_st_maybe_compact(st);
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
    if (br_store_pread_full(st->rfd, *buf, e->frame_len, e->frame_off) != 0) {
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
    struct st_ent *e = br_store_idx_find(&st->idx, key, klen, br_store_st_hash(key, klen));
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
        const struct st_ent *e = br_store_idx_find(&st->idx, keys[i], klen, br_store_st_hash(keys[i], klen));
        if (!e)
            continue; /* deleted by an earlier callback */
        if ((rc = st_read_value(st, e, &buf, &cap, &voff)) != 0)
            break;
        rc = cb(keys[i], buf + voff, e->val_len, arg);
    }
    free(buf);
    free(keys);
    free(arena);
    br_store_st_leave(st);
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
    return br_store_st_start_compaction(st);
}
