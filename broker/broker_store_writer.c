/*
 * broker_store_writer.c - the embedded store's writing side: the syncer thread (group commit
 * with pwritev and one fdatasync per batch, compaction) and, on the loop, the job queue, the
 * dispatch of completions and the compaction bookkeeping. Threads, ownership and the reasons
 * behind these choices are described at the top of broker_store.c. Part of the store.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/event.h>

#include "broker/broker.h"
#define BR_STORE_IMPL
#include "broker/broker_store_internal.h"

#define ST_IOV_BATCH 64 /* frames per pwritev */
#define ST_COMPACT_RETRY_NS (60ll * 1000000000ll)

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
            if (br_store_fsync_retry(st->wfd, true) != 0) {
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
    br_store_idx_clear(&c->ix);
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
            rc = br_store_pwrite_full(nfd, out, olen, wbase);
            wbase += olen;
            olen = 0;
            if (rc)
                break;
        }
        c->moved[i].tent = e;
        c->moved[i].old_off = e->frame_off;
        uint64_t new_off = wbase + olen;
        if (e->frame_len <= cap - olen) {
            rc = br_store_pread_full(st->wfd, out + olen, e->frame_len, e->frame_off);
            olen += e->frame_len;
        } else {
            /* A frame bigger than the buffer goes through it in pieces. */
            for (uint32_t done = 0; done < e->frame_len && rc == 0;) {
                uint32_t n = e->frame_len - done;
                if (n > cap)
                    n = (uint32_t)cap;
                rc = br_store_pread_full(st->wfd, out, n, e->frame_off + done);
                if (rc == 0)
                    rc = br_store_pwrite_full(nfd, out, n, wbase);
                wbase += n;
                done += n;
            }
        }
        e->frame_off = new_off;
    }
    if (rc == 0 && olen > 0) {
        rc = br_store_pwrite_full(nfd, out, olen, wbase);
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
    if ((rc = br_store_idx_init(&c->ix)) != 0)
        goto fail;

    stage = "replaying the log";
    for (uint64_t off = BR_STORE_HEADER_LEN;;) {
        struct br_store_record rec;
        uint32_t flen;
        const uint8_t *frame;
        const char *why = "";
        bool torn;
        rc = br_store_reader_next(&rd, off, &rec, &flen, &frame, &why, &torn);
        if (rc == 0)
            break;
        if (rc < 0) {
            sl_error(ST_COMP, "%s: compaction found a bad frame at offset %" PRIu64 " (%s)",
                     st->path, off, why);
            goto fail;
        }
        if ((rc = br_store_idx_apply(&c->ix, &rec, off, flen, st->wgen, &live_bytes)) != 0)
            goto fail;
        c->old_records++;
        off += flen;
    }
    br_store_reader_free(&rd);
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
    if ((rc = br_store_pwrite_full(nfd, hdr, sizeof(hdr), 0)) != 0 ||
        (rc = sy_copy_live(st, c, nfd, &npos)) != 0 || (rc = br_store_fsync_retry(nfd, true)) != 0)
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
    if (br_store_fsync_retry(st->dirfd, false) != 0) {
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
    br_store_reader_free(&rd);
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

void *br_store_sy_main(void *arg)
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

void br_store_st_enqueue(br_store *st, struct st_job *j)
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
    br_store_st_enqueue(st, j);
}

int br_store_st_start_compaction(br_store *st)
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
    br_store_st_enqueue(st, j);
    return 0;
}

void br_store_st_maybe_compact(br_store *st)
{
    if (st->compacting || st->failed || st->closing || st->file_bytes < st->compact_min)
        return;
    uint64_t dead = st->file_bytes - BR_STORE_HEADER_LEN - st->live_bytes;
    if (dead <= st->live_bytes)
        return;
    if (st->compact_not_before_ns && sl_mono_ns() < st->compact_not_before_ns)
        return;
    if (br_store_st_start_compaction(st) != 0)
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
        struct st_ent *e = br_store_idx_find(&st->idx, t->key, t->klen, t->hash);
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
        br_store_st_maybe_compact(st);
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

/* Leaves a region where the store must stay allocated; frees it if free was deferred. */
void br_store_st_leave(br_store *st)
{
    if (--st->busy == 0 && st->free_requested)
        br_store_st_destroy(st);
}

/* Runs the completions the syncer posted, in order. */
void br_store_st_dispatch(br_store *st)
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
    br_store_st_leave(st);
}

void br_store_st_on_notify(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    br_store_st_dispatch(arg);
}
