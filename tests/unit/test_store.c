/*
 * test_store.c - the embedded durable store: API, replay, corruption handling, group commit,
 * compaction, large values, teardown from callbacks, and durability across SIGKILL.
 *
 * Tests drive the libevent loop until a condition holds or a deadline passes; they never
 * sleep. Each test works in its own directory under $SLUICE_TEST_TMP (or /tmp).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <msgpack.h>

#include "broker/broker.h"
#include "broker/broker_store_internal.h"
#include "testlib.h"

#define WAIT_MS 30000

/* ---------------------------------------------------------------------------------------- */
/* Helpers.                                                                                 */
/* ---------------------------------------------------------------------------------------- */

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

/* Runs the loop until pred(arg) holds; false if timeout_ms passed first. */
static bool run_until(struct event_base *base, bool (*pred)(void *), void *arg, int timeout_ms)
{
    bool expired = false;
    struct event *t = evtimer_new(base, on_deadline, &expired);
    T_ASSERT(t != NULL);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(t, &tv);
    while (!pred(arg) && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
    return pred(arg);
}

struct ctr {
    int done, errs, want;
};

static void on_done(int err, void *arg)
{
    struct ctr *c = arg;
    c->done++;
    if (err)
        c->errs++;
}

static bool ctr_reached(void *arg)
{
    struct ctr *c = arg;
    return c->done >= c->want;
}

static void wait_ctr(struct event_base *base, struct ctr *c, int want)
{
    c->want = want;
    if (!run_until(base, ctr_reached, c, WAIT_MS))
        T_FAIL("timed out: %d of %d callbacks", c->done, want);
    T_EQ_INT(c->errs, 0);
}

static char *mk_tmpdir(const char *tag)
{
    const char *root = getenv("SLUICE_TEST_TMP");
    if (!root || !*root)
        root = "/tmp";
    mkdir(root, 0755);
    char *p = malloc(strlen(root) + strlen(tag) + 16);
    T_ASSERT(p != NULL);
    sprintf(p, "%s/%s-XXXXXX", root, tag);
    T_ASSERT(mkdtemp(p) != NULL);
    return p;
}

static void rm_tmpdir(char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        char path[4096];
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
    free(dir);
}

static char *store_file(const char *dir, const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    T_ASSERT(p != NULL);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static long long file_size(const char *dir, const char *name)
{
    char *p = store_file(dir, name);
    struct stat sb;
    long long r = stat(p, &sb) == 0 ? (long long)sb.st_size : -1;
    free(p);
    return r;
}

static void truncate_file(const char *dir, long long size)
{
    char *p = store_file(dir, "store.log");
    T_EQ_INT(truncate(p, size), 0);
    free(p);
}

static void flip_byte(const char *dir, long long off)
{
    char *p = store_file(dir, "store.log");
    int fd = open(p, O_RDWR);
    T_ASSERT(fd >= 0);
    unsigned char b;
    T_EQ_INT(pread(fd, &b, 1, off), 1);
    b ^= 0x5a;
    T_EQ_INT(pwrite(fd, &b, 1, off), 1);
    close(fd);
    free(p);
}

/* A deterministic value for record i: 20..319 bytes. */
static size_t make_value(uint32_t i, uint8_t *buf)
{
    size_t n = 20 + (i * 37u) % 300u;
    for (size_t j = 0; j < n; j++)
        buf[j] = (uint8_t)(i * 131u + j * 7u + (i >> 8));
    return n;
}

static void expect_value(br_store *st, const char *key, const void *want, size_t wlen)
{
    void *v = NULL;
    size_t len = 0;
    int rc = br_store_get(st, key, &v, &len);
    if (rc != 0)
        T_FAIL("get(%s): %s", key, sl_err_name(rc));
    T_EQ_INT(len, wlen);
    T_ASSERT(memcmp(v, want, wlen) == 0);
    free(v);
}

static void expect_missing(br_store *st, const char *key)
{
    void *v = NULL;
    size_t len = 0;
    T_EQ_INT(br_store_get(st, key, &v, &len), SL_ENOENT);
}

static void expect_key_value(br_store *st, const char *key, uint32_t i)
{
    uint8_t buf[400];
    size_t n = make_value(i, buf);
    expect_value(st, key, buf, n);
}

/* Collects what a scan visits. */
struct seen {
    char keys[4096][32];
    size_t lens[4096];
    int n;
    int stop_after;     /* return 7 after this many, 0 = never */
    br_store *del_from; /* delete each visited key from this store */
    struct ctr *del_ctr;
};

static int on_scan(const char *key, const void *value, size_t len, void *arg)
{
    struct seen *s = arg;
    (void)value;
    T_ASSERT(s->n < 4096);
    snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
    s->lens[s->n] = len;
    s->n++;
    if (s->del_from)
        T_EQ_INT(br_store_del(s->del_from, key, on_done, s->del_ctr), 0);
    return s->stop_after && s->n >= s->stop_after ? 7 : 0;
}

static struct br_store_stats stats_of(br_store *st)
{
    struct br_store_stats s;
    br_store_stats(st, &s);
    return s;
}

/* ---------------------------------------------------------------------------------------- */
/* Codec.                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static void test_crc32c(void)
{
    T_EQ_INT(br_store_crc32c(0, "123456789", 9), 0xE3069283u);
    /* Chaining equals one pass. */
    uint32_t c = br_store_crc32c(0, "1234", 4);
    T_EQ_INT(br_store_crc32c(c, "56789", 5), 0xE3069283u);
    T_EQ_INT(br_store_crc32c(0, "", 0), 0);
}

/* Packs a body with the given fields into sb (helper for decoder tests). */
static void pack_body(msgpack_sbuffer *sb, const char *op, uint64_t seq, const char *key,
                      size_t klen, const char *val, bool with_v, const char *extra)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3 + (with_v ? 1 : 0) + (extra ? 1 : 0));
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, op, strlen(op));
    msgpack_pack_str_with_body(&pk, "seq", 3);
    msgpack_pack_uint64(&pk, seq);
    msgpack_pack_str_with_body(&pk, "k", 1);
    msgpack_pack_str_with_body(&pk, key, klen);
    if (extra) {
        msgpack_pack_str_with_body(&pk, extra, strlen(extra));
        msgpack_pack_array(&pk, 2);
        msgpack_pack_nil(&pk);
        msgpack_pack_true(&pk);
    }
    if (with_v) {
        msgpack_pack_str_with_body(&pk, "v", 1);
        msgpack_pack_bin_with_body(&pk, val, strlen(val));
    }
}

static int decode_body(const char *op, uint64_t seq, const char *key, size_t klen, const char *val,
                       bool with_v, const char *extra, struct br_store_record *rec)
{
    msgpack_sbuffer sb;
    pack_body(&sb, op, seq, key, klen, val, with_v, extra);
    int rc = br_store_record_decode((const uint8_t *)sb.data, sb.size, rec);
    if (rc == 0 && rec->op == BR_STORE_OP_PUT)
        T_ASSERT(memcmp(sb.data + rec->val_off, val, rec->val_len) == 0);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void test_record_decode(void)
{
    struct br_store_record r;
    T_EQ_INT(decode_body("put", 5, "key-1", 5, "hello", true, NULL, &r), 0);
    T_EQ_INT(r.op, BR_STORE_OP_PUT);
    T_EQ_INT(r.seq, 5);
    T_EQ_INT(r.klen, 5);
    T_EQ_INT(r.val_len, 5);
    T_EQ_INT(decode_body("del", 6, "key-1", 5, "", false, NULL, &r), 0);
    T_EQ_INT(r.op, BR_STORE_OP_DEL);
    /* Unknown keys are skipped. */
    T_EQ_INT(decode_body("put", 7, "key-1", 5, "hello", true, "future", &r), 0);
    /* Rejections. */
    T_EQ_INT(decode_body("put", 5, "key-1", 5, "", false, NULL, &r), SL_ECORRUPT);
    T_EQ_INT(decode_body("del", 5, "key-1", 5, "hello", true, NULL, &r), SL_ECORRUPT);
    T_EQ_INT(decode_body("zap", 5, "key-1", 5, "hello", true, NULL, &r), SL_ECORRUPT);
    T_EQ_INT(decode_body("put", 0, "key-1", 5, "hello", true, NULL, &r), SL_ECORRUPT);
    T_EQ_INT(decode_body("put", 5, "ke\0y1", 5, "hello", true, NULL, &r), SL_ECORRUPT);
    T_EQ_INT(decode_body("put", 5, "", 0, "hello-world", true, NULL, &r), SL_ECORRUPT);
    T_EQ_INT(br_store_record_decode(NULL, 0, &r), SL_EINVAL);

    /* A body with a valid CRC but a container claiming 2^32-1 elements: rejected before
     * msgpack-c would allocate for them. */
    uint8_t frame[64] = {0};
    uint8_t *b = frame + BR_STORE_FRAME_HDR;
    size_t n = 0;
    b[n++] = 0x81;
    b[n++] = 0xa1;
    b[n++] = 'x';
    b[n++] = 0xdd;
    b[n++] = 0xff, b[n++] = 0xff, b[n++] = 0xff, b[n++] = 0xff;
    while (n < 24)
        b[n++] = 0xc0;
    frame[0] = (uint8_t)n;
    uint32_t crc = br_store_crc32c(0, b, n);
    frame[4] = (uint8_t)crc, frame[5] = (uint8_t)(crc >> 8), frame[6] = (uint8_t)(crc >> 16),
    frame[7] = (uint8_t)(crc >> 24);
    const char *why = NULL;
    T_EQ_INT(br_store_frame_decode(frame, BR_STORE_FRAME_HDR + n, &r, &why), SL_ECORRUPT);
    T_EQ_STR(why, "undecodable record");
    /* Partial frames ask for more. */
    T_EQ_INT(br_store_frame_decode(frame, 3, &r, &why), 0);
    T_EQ_INT(br_store_frame_decode(frame, BR_STORE_FRAME_HDR + n - 1, &r, &why), 0);
}

/* Feeds random and mutated frames to the decoder: it must never crash or read outside. */
static void test_decoder_fuzz(void)
{
    char *dir = mk_tmpdir("store-fuzz");
    struct event_base *base = event_base_new();
    br_store *st;
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    struct ctr c = {0};
    uint8_t val[400];
    for (uint32_t i = 0; i < 20; i++) {
        char key[32];
        snprintf(key, sizeof(key), "fz-%u", i);
        T_EQ_INT(br_store_put(st, key, val, make_value(i, val), on_done, &c), 0);
    }
    T_EQ_INT(br_store_del(st, "fz-3", on_done, &c), 0);
    wait_ctr(base, &c, 21);
    br_store_free(st);

    long long size = file_size(dir, "store.log");
    uint8_t *file = malloc((size_t)size);
    char *p = store_file(dir, "store.log");
    int fd = open(p, O_RDONLY);
    T_EQ_INT(read(fd, file, (size_t)size), size);
    close(fd);
    free(p);

    /* The good file decodes frame by frame. */
    size_t off = BR_STORE_HEADER_LEN;
    int frames = 0;
    while (off < (size_t)size) {
        struct br_store_record r;
        int n = br_store_frame_decode(file + off, (size_t)size - off, &r, NULL);
        T_ASSERT(n > 0);
        off += (size_t)n;
        frames++;
    }
    T_EQ_INT(frames, 21);

    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int ok = 0, bad = 0, part = 0;
    for (int iter = 0; iter < 20000; iter++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        size_t start = BR_STORE_HEADER_LEN + (size_t)(rng % 64);
        size_t len = (size_t)size - start;
        if (iter % 3 == 0)
            len = (size_t)(rng >> 20) % (len + 1);
        /* Copy into an exact-size allocation so ASan sees any overread. */
        uint8_t *m = malloc(len ? len : 1);
        memcpy(m, file + start, len);
        int flips = (int)((rng >> 40) % 4);
        for (int k = 0; k < flips && len > 0; k++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            m[rng % len] ^= (uint8_t)(1u << (rng >> 61));
        }
        if (iter % 5 == 0) /* and pure noise */
            for (size_t k = 0; k < len; k++)
                m[k] = (uint8_t)((rng >> (k % 56)) + k);
        struct br_store_record r;
        int n = br_store_frame_decode(m, len, &r, NULL);
        if (n > 0) {
            T_ASSERT((size_t)n <= len);
            T_ASSERT(r.klen >= 1 && r.klen <= BR_STORE_MAX_KEY);
            ok++;
        } else if (n == 0) {
            part++;
        } else {
            T_EQ_INT(n, SL_ECORRUPT);
            bad++;
        }
        /* Bodies straight into the record decoder too. */
        struct br_store_record r2;
        int rc = br_store_record_decode(m, len, &r2);
        T_ASSERT(rc == 0 || rc == SL_ECORRUPT);
        free(m);
    }
    fprintf(stderr, "   fuzz: %d decoded, %d partial, %d rejected\n", ok, part, bad);
    T_ASSERT(bad > 0);
    free(file);
    event_base_free(base);
    rm_tmpdir(dir);
}

/* ---------------------------------------------------------------------------------------- */
/* API.                                                                                     */
/* ---------------------------------------------------------------------------------------- */

static void test_basic(void)
{
    char *dir = mk_tmpdir("store-basic");
    struct event_base *base = event_base_new();
    br_store *st;
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    struct ctr c = {0};

    T_EQ_INT(br_store_put(st, "evt/a", "alpha", 5, on_done, &c), 0);
    T_EQ_INT(br_store_put(st, "evt/b", "bravo", 5, on_done, &c), 0);
    T_EQ_INT(br_store_put(st, "other/x", "xray", 4, on_done, &c), 0);
    T_EQ_INT(br_store_put(st, "evt/c", "", 0, on_done, &c), 0);
    /* Callbacks never run inside the call; the writes are visible once queued. */
    T_EQ_INT(c.done, 0);
    expect_value(st, "evt/a", "alpha", 5);
    expect_value(st, "evt/c", "", 0);
    wait_ctr(base, &c, 4);
    expect_value(st, "evt/a", "alpha", 5);
    expect_value(st, "evt/b", "bravo", 5);
    expect_value(st, "other/x", "xray", 4);
    expect_value(st, "evt/c", "", 0);
    expect_missing(st, "evt/zz");

    /* Overwrite keeps the first-put position; del removes. */
    T_EQ_INT(br_store_put(st, "evt/a", "alpha-2", 7, on_done, &c), 0);
    T_EQ_INT(br_store_del(st, "evt/b", on_done, &c), 0);
    T_EQ_INT(br_store_del(st, "never-there", on_done, &c), 0);
    expect_value(st, "evt/a", "alpha-2", 7);
    expect_missing(st, "evt/b");
    wait_ctr(base, &c, 7);
    expect_value(st, "evt/a", "alpha-2", 7);
    expect_missing(st, "evt/b");

    struct seen *s = calloc(1, sizeof(*s));
    T_EQ_INT(br_store_scan(st, "", on_scan, s), 0);
    T_EQ_INT(s->n, 3);
    T_EQ_STR(s->keys[0], "evt/a");
    T_EQ_INT(s->lens[0], 7);
    T_EQ_STR(s->keys[1], "other/x");
    T_EQ_STR(s->keys[2], "evt/c");
    memset(s, 0, sizeof(*s));
    T_EQ_INT(br_store_scan(st, "evt/", on_scan, s), 0);
    T_EQ_INT(s->n, 2);
    T_EQ_STR(s->keys[0], "evt/a");
    T_EQ_STR(s->keys[1], "evt/c");
    memset(s, 0, sizeof(*s));
    T_EQ_INT(br_store_scan(st, "nope", on_scan, s), 0);
    T_EQ_INT(s->n, 0);
    /* Early stop returns the callback's value. */
    memset(s, 0, sizeof(*s));
    s->stop_after = 2;
    T_EQ_INT(br_store_scan(st, "", on_scan, s), 7);
    T_EQ_INT(s->n, 2);

    struct br_store_stats ss = stats_of(st);
    T_EQ_INT(ss.live_records, 3);
    T_EQ_INT(ss.dead_records, 4); /* old evt/a, evt/b and its del, the no-op del */
    T_EQ_INT(ss.corrupt_skipped, 0);
    T_EQ_INT(ss.file_bytes, file_size(dir, "store.log"));

    /* Argument checks: a failed call never runs its callback. */
    char big[BR_STORE_MAX_KEY + 2];
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    T_EQ_INT(br_store_put(st, "", "v", 1, on_done, &c), SL_EINVAL);
    T_EQ_INT(br_store_put(st, NULL, "v", 1, on_done, &c), SL_EINVAL);
    T_EQ_INT(br_store_put(st, big, "v", 1, on_done, &c), SL_ETOOBIG);
    T_EQ_INT(br_store_put(st, "k", NULL, 3, on_done, &c), SL_EINVAL);
    T_EQ_INT(br_store_put(st, "k", "v", (size_t)BR_STORE_MAX_VALUE + 1, on_done, &c), SL_ETOOBIG);
    T_EQ_INT(br_store_del(st, big, on_done, &c), SL_ETOOBIG);
    big[BR_STORE_MAX_KEY] = '\0'; /* exactly 1024 bytes is fine */
    T_EQ_INT(br_store_put(st, big, "v", 1, on_done, &c), 0);
    wait_ctr(base, &c, 8);
    expect_value(st, big, "v", 1);

    /* A second open of the same directory is refused while the first holds it. */
    br_store *st2 = NULL;
    T_EQ_INT(br_store_open(base, dir, &st2), SL_EBUSY);
    T_ASSERT(st2 == NULL);

    br_store_free(st);
    br_store_free(NULL);
    free(s);
    event_base_free(base);
    rm_tmpdir(dir);
}

static void test_scan_mutating(void)
{
    char *dir = mk_tmpdir("store-scanmut");
    struct event_base *base = event_base_new();
    br_store *st;
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    struct ctr c = {0};
    for (int i = 0; i < 50; i++) {
        char key[32];
        snprintf(key, sizeof(key), "m-%03d", i);
        T_EQ_INT(br_store_put(st, key, key, strlen(key), on_done, &c), 0);
    }
    wait_ctr(base, &c, 50);
    /* A scan whose callback deletes every key it sees visits each exactly once. */
    struct seen *s = calloc(1, sizeof(*s));
    struct ctr dc = {0};
    s->del_from = st;
    s->del_ctr = &dc;
    T_EQ_INT(br_store_scan(st, "m-", on_scan, s), 0);
    T_EQ_INT(s->n, 50);
    T_EQ_STR(s->keys[49], "m-049");
    wait_ctr(base, &dc, 50);
    T_EQ_INT(stats_of(st).live_records, 0);
    br_store_free(st);
    free(s);
    event_base_free(base);
    rm_tmpdir(dir);
}

static void test_reopen(void)
{
    char *dir = mk_tmpdir("store-reopen");
    struct event_base *base = event_base_new();
    br_store *st;
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    struct ctr c = {0};
    uint8_t val[400];
    char key[32];
    for (uint32_t i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "r-%03u", i);
        T_EQ_INT(br_store_put(st, key, val, make_value(i, val), on_done, &c), 0);
    }
    for (uint32_t i = 0; i < 10; i++) { /* overwrite 0..9 with other values */
        snprintf(key, sizeof(key), "r-%03u", i);
        T_EQ_INT(br_store_put(st, key, val, make_value(i + 1000, val), on_done, &c), 0);
    }
    for (uint32_t i = 20; i < 30; i++) {
        snprintf(key, sizeof(key), "r-%03u", i);
        T_EQ_INT(br_store_del(st, key, on_done, &c), 0);
    }
    /* A deleted then re-put key goes to the end of the order. */
    T_EQ_INT(br_store_put(st, "r-025", val, make_value(2025, val), on_done, &c), 0);
    wait_ctr(base, &c, 71);
    br_store_free(st);

    T_EQ_INT(br_store_open(base, dir, &st), 0);
    struct br_store_stats ss = stats_of(st);
    T_EQ_INT(ss.live_records, 41);
    T_EQ_INT(ss.dead_records, 30);
    T_EQ_INT(ss.corrupt_skipped, 0);
    struct seen *s = calloc(1, sizeof(*s));
    T_EQ_INT(br_store_scan(st, "", on_scan, s), 0);
    T_EQ_INT(s->n, 41);
    int k = 0;
    for (uint32_t i = 0; i < 50; i++) {
        if (i >= 20 && i < 30)
            continue;
        snprintf(key, sizeof(key), "r-%03u", i);
        T_EQ_STR(s->keys[k], key);
        expect_key_value(st, key, i < 10 ? i + 1000 : i);
        k++;
    }
    T_EQ_STR(s->keys[40], "r-025");
    expect_key_value(st, "r-025", 2025);
    br_store_free(st);
    free(s);
    event_base_free(base);
    rm_tmpdir(dir);
}

/* ---------------------------------------------------------------------------------------- */
/* Corruption.                                                                              */
/* ---------------------------------------------------------------------------------------- */

/* Writes n records t-000.. one durable batch at a time; sizes[i] = file size after i+1. */
static void write_series(const char *dir, int n, long long *sizes)
{
    struct event_base *base = event_base_new();
    br_store *st;
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    struct ctr c = {0};
    uint8_t val[400];
    for (int i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof(key), "t-%03d", i);
        T_EQ_INT(br_store_put(st, key, val, make_value((uint32_t)i, val), on_done, &c), 0);
        wait_ctr(base, &c, i + 1);
        sizes[i] = file_size(dir, "store.log");
    }
    br_store_free(st);
    event_base_free(base);
}

/* Opens dir and checks records t-000..t-(good-1) are intact and live records in all. */
static br_store *open_expect(struct event_base *base, const char *dir, int good, int live,
                             uint64_t skipped)
{
    br_store *st;
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    struct br_store_stats ss = stats_of(st);
    T_EQ_INT(ss.corrupt_skipped, skipped);
    T_EQ_INT(ss.live_records, live);
    for (int i = 0; i < good; i++) {
        char key[32];
        snprintf(key, sizeof(key), "t-%03d", i);
        expect_key_value(st, key, (uint32_t)i);
    }
    return st;
}

/* After a repair: appends work and survive another reopen (live: records before the append). */
static void append_and_reopen(struct event_base *base, const char *dir, br_store *st, int good,
                              int live)
{
    struct ctr c = {0};
    T_EQ_INT(br_store_put(st, "after", "repair", 6, on_done, &c), 0);
    wait_ctr(base, &c, 1);
    br_store_free(st);
    st = open_expect(base, dir, good, live + 1, 0);
    expect_value(st, "after", "repair", 6);
    br_store_free(st);
}

static void test_torn_tail(void)
{
    char *dir = mk_tmpdir("store-torn");
    long long sizes[10];
    write_series(dir, 10, sizes);
    struct event_base *base = event_base_new();

    /* Cut in the middle of the last frame's body. */
    truncate_file(dir, sizes[9] - 5);
    br_store *st = open_expect(base, dir, 9, 9, 1);
    T_EQ_INT(file_size(dir, "store.log"), sizes[8]);
    T_EQ_INT(file_size(dir, "store.log.corrupt"), sizes[9] - 5 - sizes[8]);
    expect_missing(st, "t-009");
    append_and_reopen(base, dir, st, 9, 9);

    /* Cut inside a frame header: 3 bytes of the next frame's length. */
    long long now = file_size(dir, "store.log");
    char *p = store_file(dir, "store.log");
    int fd = open(p, O_WRONLY | O_APPEND);
    T_EQ_INT(write(fd, "\x40\x00\x00", 3), 3);
    close(fd);
    free(p);
    st = open_expect(base, dir, 9, 10, 1);
    expect_value(st, "after", "repair", 6);
    T_EQ_INT(file_size(dir, "store.log"), now);
    br_store_free(st);

    /* A tail of zeroes (a preallocated extent after a power cut): absurd length. */
    p = store_file(dir, "store.log");
    fd = open(p, O_WRONLY | O_APPEND);
    char zeros[4096] = {0};
    T_EQ_INT(write(fd, zeros, sizeof(zeros)), (long long)sizeof(zeros));
    close(fd);
    free(p);
    st = open_expect(base, dir, 9, 10, 1);
    T_EQ_INT(file_size(dir, "store.log"), now);
    br_store_free(st);

    event_base_free(base);
    rm_tmpdir(dir);
}

static void test_flipped_byte(void)
{
    char *dir = mk_tmpdir("store-flip");
    long long sizes[10];
    write_series(dir, 10, sizes);
    struct event_base *base = event_base_new();

    flip_byte(dir, sizes[9] - 3); /* inside the last value */
    br_store *st = open_expect(base, dir, 9, 9, 1);
    T_EQ_INT(file_size(dir, "store.log"), sizes[8]);
    T_EQ_INT(file_size(dir, "store.log.corrupt"), sizes[9] - sizes[8]);
    append_and_reopen(base, dir, st, 9, 9);

    /* The length field of the (new) last frame, "after": an absurd length. */
    T_ASSERT(file_size(dir, "store.log") > sizes[8]);
    flip_byte(dir, sizes[8] + 3);
    st = open_expect(base, dir, 9, 9, 1);
    T_EQ_INT(file_size(dir, "store.log"), sizes[8]);
    expect_missing(st, "after");
    br_store_free(st);

    event_base_free(base);
    rm_tmpdir(dir);
}

static void test_mid_corruption(void)
{
    char *dir = mk_tmpdir("store-mid");
    long long sizes[10];
    write_series(dir, 10, sizes);
    struct event_base *base = event_base_new();
    /* Damage record 3 (t-002): replay stops there, the 7 good frames after it are counted,
     * cut and kept aside in store.log.corrupt. */
    flip_byte(dir, sizes[2] - 4);
    br_store *st = open_expect(base, dir, 2, 2, 8);
    T_EQ_INT(file_size(dir, "store.log"), sizes[1]);
    T_EQ_INT(file_size(dir, "store.log.corrupt"), sizes[9] - sizes[1]);
    append_and_reopen(base, dir, st, 2, 2);
    event_base_free(base);
    rm_tmpdir(dir);
}

static void test_foreign_file(void)
{
    char *dir = mk_tmpdir("store-foreign");
    char *p = store_file(dir, "store.log");
    const char junk[] = "this is not a sluice store at all";
    int fd = open(p, O_WRONLY | O_CREAT, 0644);
    T_EQ_INT(write(fd, junk, sizeof(junk)), (long long)sizeof(junk));
    close(fd);
    struct event_base *base = event_base_new();
    br_store *st = NULL;
    T_EQ_INT(br_store_open(base, dir, &st), SL_ECORRUPT);
    T_EQ_INT(file_size(dir, "store.log"), (long long)sizeof(junk)); /* untouched */

    /* A torn header (crash while creating) is simply rewritten. */
    fd = open(p, O_WRONLY | O_TRUNC);
    T_EQ_INT(write(fd, "SLS", 3), 3);
    close(fd);
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    T_EQ_INT(stats_of(st).live_records, 0);
    br_store_free(st);
    T_EQ_INT(file_size(dir, "store.log"), BR_STORE_HEADER_LEN);

    /* Another format version is refused. */
    fd = open(p, O_WRONLY);
    T_EQ_INT(pwrite(fd, "\x09", 1, 4), 1);
    close(fd);
    T_EQ_INT(br_store_open(base, dir, &st), SL_EUNSUPPORTED);
    free(p);
    event_base_free(base);
    rm_tmpdir(dir);
}

/* ---------------------------------------------------------------------------------------- */
/* Group commit, large values, teardown.                                                    */
/* ---------------------------------------------------------------------------------------- */

static void test_group_commit(void)
{
    char *dir = mk_tmpdir("store-group");
    struct event_base *base = event_base_new();
    br_store *st;
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    struct ctr c = {0};
    uint8_t val[400];
    char key[32];
    for (uint32_t i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "g-%04u", i);
        T_EQ_INT(br_store_put(st, key, val, make_value(i, val), on_done, &c), 0);
    }
    wait_ctr(base, &c, 1000);
    struct br_store_stats ss = stats_of(st);
    fprintf(stderr, "   1000 puts, %llu fsyncs\n", (unsigned long long)ss.fsyncs);
    T_ASSERT(ss.fsyncs >= 1);
    T_ASSERT(ss.fsyncs < 100);
    for (uint32_t i = 0; i < 1000; i += 97) {
        snprintf(key, sizeof(key), "g-%04u", i);
        expect_key_value(st, key, i);
    }
    br_store_free(st);
    event_base_free(base);
    rm_tmpdir(dir);
}

static void test_large_value(void)
{
    char *dir = mk_tmpdir("store-large");
    struct event_base *base = event_base_new();
    br_store *st;
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    size_t n = 2u << 20;
    uint8_t *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (uint8_t)(i * 2654435761u >> 13);
    struct ctr c = {0};
    T_EQ_INT(br_store_put(st, "big", big, n, on_done, &c), 0);
    T_EQ_INT(br_store_put(st, "small", "s", 1, on_done, &c), 0);
    expect_value(st, "big", big, n); /* pending: from memory */
    wait_ctr(base, &c, 2);
    expect_value(st, "big", big, n); /* durable: from the file */
    br_store_free(st);
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    expect_value(st, "big", big, n);
    expect_value(st, "small", "s", 1);
    T_ASSERT(file_size(dir, "store.log") > (long long)n);
    br_store_free(st);
    free(big);
    event_base_free(base);
    rm_tmpdir(dir);
}

static void test_free_flushes(void)
{
    char *dir = mk_tmpdir("store-flush");
    struct event_base *base = event_base_new();
    br_store *st;
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    struct ctr c = {0};
    uint8_t val[400];
    char key[32];
    for (uint32_t i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "f-%03u", i);
        T_EQ_INT(br_store_put(st, key, val, make_value(i, val), on_done, &c), 0);
    }
    /* Without running the loop: free writes, fsyncs and runs every callback. */
    br_store_free(st);
    T_EQ_INT(c.done, 100);
    T_EQ_INT(c.errs, 0);
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    T_EQ_INT(stats_of(st).live_records, 100);
    expect_key_value(st, "f-099", 99);
    br_store_free(st);
    event_base_free(base);
    rm_tmpdir(dir);
}

struct freer {
    br_store *st;
    int calls, errs;
    int scan_calls;
};

static void on_done_free(int err, void *arg)
{
    struct freer *f = arg;
    f->calls++;
    if (err)
        f->errs++;
    if (f->calls == 1) {
        br_store_free(f->st);   /* teardown from inside a callback */
        T_EQ_INT(f->calls, 10); /* the rest ran during the drain */
    }
}

static bool freer_done(void *arg)
{
    return ((struct freer *)arg)->calls >= 10;
}

static int on_scan_free(const char *key, const void *value, size_t len, void *arg)
{
    (void)key, (void)value, (void)len;
    struct freer *f = arg;
    if (++f->scan_calls == 2)
        br_store_free(f->st);
    return 0;
}

static void test_free_in_callback(void)
{
    char *dir = mk_tmpdir("store-freecb");
    struct event_base *base = event_base_new();
    struct freer f = {0};
    T_EQ_INT(br_store_open(base, dir, &f.st), 0);
    for (int i = 0; i < 10; i++) {
        char key[32];
        snprintf(key, sizeof(key), "x-%d", i);
        T_EQ_INT(br_store_put(f.st, key, "v", 1, on_done_free, &f), 0);
    }
    /* Run until the first callback has freed the store (and the others ran). */
    if (!run_until(base, freer_done, &f, WAIT_MS))
        T_FAIL("callbacks: %d of 10", f.calls);
    T_EQ_INT(f.errs, 0);

    /* Free from inside a scan callback: the scan stops and returns SL_ECLOSED. */
    T_EQ_INT(br_store_open(base, dir, &f.st), 0);
    T_EQ_INT(stats_of(f.st).live_records, 10);
    T_EQ_INT(br_store_scan(f.st, "", on_scan_free, &f), SL_ECLOSED);
    T_EQ_INT(f.scan_calls, 2);
    event_base_free(base);
    rm_tmpdir(dir);
}

/* ---------------------------------------------------------------------------------------- */
/* Compaction.                                                                              */
/* ---------------------------------------------------------------------------------------- */

struct compaction_wait {
    br_store *st;
    uint64_t want;
    struct ctr *c;
};

static bool compacted(void *arg)
{
    struct compaction_wait *w = arg;
    return stats_of(w->st).compactions >= w->want && (!w->c || w->c->done >= w->c->want);
}

static void test_compaction(void)
{
    char *dir = mk_tmpdir("store-compact");
    struct event_base *base = event_base_new();
    br_store *st;
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    br_store_set_compact_threshold(st, UINT64_MAX); /* nothing automatic */
    struct ctr c = {0};
    uint8_t val[400];
    char key[32];
    for (uint32_t i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "c-%04u", i);
        T_EQ_INT(br_store_put(st, key, val, make_value(i, val), on_done, &c), 0);
    }
    for (uint32_t i = 0; i < 2000; i++) {
        if (i % 20 == 7)
            continue; /* keep 100 */
        snprintf(key, sizeof(key), "c-%04u", i);
        T_EQ_INT(br_store_del(st, key, on_done, &c), 0);
    }
    wait_ctr(base, &c, 3900);
    long long before = file_size(dir, "store.log");
    T_EQ_INT(stats_of(st).compactions, 0);
    T_EQ_INT(stats_of(st).live_records, 100);

    T_EQ_INT(br_store_compact(st), 0);
    T_EQ_INT(br_store_compact(st), SL_EBUSY);
    struct compaction_wait w = {st, 1, NULL};
    T_ASSERT(run_until(base, compacted, &w, WAIT_MS));
    long long after = file_size(dir, "store.log");
    fprintf(stderr, "   compaction: %lld -> %lld bytes\n", before, after);
    T_ASSERT(after < before / 10);
    struct br_store_stats ss = stats_of(st);
    T_EQ_INT(ss.file_bytes, after);
    T_EQ_INT(ss.dead_records, 0);
    T_EQ_INT(ss.live_records, 100);
    T_EQ_INT(file_size(dir, "store.log.compact"), -1);
    /* Reads now come from the new file. */
    for (uint32_t i = 7; i < 2000; i += 20) {
        snprintf(key, sizeof(key), "c-%04u", i);
        expect_key_value(st, key, i);
    }
    br_store_free(st);

    T_EQ_INT(br_store_open(base, dir, &st), 0);
    ss = stats_of(st);
    T_EQ_INT(ss.live_records, 100);
    T_EQ_INT(ss.dead_records, 0);
    struct seen *s = calloc(1, sizeof(*s));
    T_EQ_INT(br_store_scan(st, "", on_scan, s), 0);
    T_EQ_INT(s->n, 100);
    for (int k = 0; k < 100; k++) {
        uint32_t i = (uint32_t)k * 20 + 7;
        snprintf(key, sizeof(key), "c-%04u", i);
        T_EQ_STR(s->keys[k], key);
        expect_key_value(st, key, i);
    }
    br_store_free(st);
    free(s);
    event_base_free(base);
    rm_tmpdir(dir);
}

/* Expected state of key a-i in test_compaction_concurrent; false when deleted. */
static bool conc_expect(uint32_t i, uint32_t *vi)
{
    if (i % 3 == 1 || i % 6 == 5)
        return false;
    *vi = i % 6 == 2 ? i + 9000 : i % 3 == 0 ? i + 5000 : i;
    return true;
}

static int conc_check(br_store *st)
{
    char key[32];
    int live = 0;
    for (uint32_t i = 0; i < 500; i++) {
        uint32_t vi;
        snprintf(key, sizeof(key), "a-%04u", i);
        if (conc_expect(i, &vi)) {
            expect_key_value(st, key, vi);
            live++;
        } else {
            expect_missing(st, key);
        }
    }
    for (uint32_t i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "b-%04u", i);
        expect_key_value(st, key, i + 7000);
        live++;
    }
    return live;
}

/* Writes queued before a compaction (still pending) and right behind it are not lost. */
static void test_compaction_concurrent(void)
{
    char *dir = mk_tmpdir("store-compact2");
    struct event_base *base = event_base_new();
    br_store *st;
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    br_store_set_compact_threshold(st, UINT64_MAX);
    struct ctr c = {0};
    int issued = 0;
    uint8_t val[400];
    char key[32];
    for (uint32_t i = 0; i < 500; i++, issued++) {
        snprintf(key, sizeof(key), "a-%04u", i);
        T_EQ_INT(br_store_put(st, key, val, make_value(i, val), on_done, &c), 0);
    }
    wait_ctr(base, &c, issued);
    /* Pending when the compaction is queued: overwrites and deletes. */
    for (uint32_t i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "a-%04u", i);
        if (i % 3 == 0)
            T_EQ_INT(br_store_put(st, key, val, make_value(i + 5000, val), on_done, &c), 0);
        else if (i % 3 == 1)
            T_EQ_INT(br_store_del(st, key, on_done, &c), 0);
        issued += i % 3 != 2;
    }
    T_EQ_INT(br_store_compact(st), 0);
    /* Behind it: rewrites and deletes of keys the compaction moves, and new keys. */
    for (uint32_t i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "a-%04u", i);
        if (i % 6 == 2)
            T_EQ_INT(br_store_put(st, key, val, make_value(i + 9000, val), on_done, &c), 0);
        else if (i % 6 == 5)
            T_EQ_INT(br_store_del(st, key, on_done, &c), 0);
        issued += i % 6 == 2 || i % 6 == 5;
    }
    for (uint32_t i = 0; i < 50; i++, issued++) {
        snprintf(key, sizeof(key), "b-%04u", i);
        T_EQ_INT(br_store_put(st, key, val, make_value(i + 7000, val), on_done, &c), 0);
    }
    int live = conc_check(st); /* while pending */
    c.want = issued;
    struct compaction_wait w = {st, 1, &c};
    T_ASSERT(run_until(base, compacted, &w, WAIT_MS));
    T_EQ_INT(c.errs, 0);
    T_EQ_INT(stats_of(st).live_records, live);
    T_EQ_INT(conc_check(st), live); /* durable, partly in the new file */
    br_store_free(st);
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    T_EQ_INT(stats_of(st).live_records, live);
    T_EQ_INT(conc_check(st), live);
    br_store_free(st);
    event_base_free(base);
    rm_tmpdir(dir);
}

static void test_auto_compaction(void)
{
    char *dir = mk_tmpdir("store-autocompact");
    struct event_base *base = event_base_new();
    br_store *st;
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    br_store_set_compact_threshold(st, 64 * 1024);
    struct ctr c = {0};
    uint8_t val[400];
    /* Overwrite a handful of keys over and over, 32 in flight, like a checkpoint would. */
    int issued = 0;
    for (uint32_t i = 0; i < 5000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "ckpt-%u", i % 4);
        T_EQ_INT(br_store_put(st, key, val, make_value(i, val), on_done, &c), 0);
        issued++;
        if (issued - c.done >= 32)
            wait_ctr(base, &c, issued - 16);
    }
    wait_ctr(base, &c, issued);
    struct br_store_stats ss = stats_of(st);
    fprintf(stderr, "   5000 overwrites: %llu compactions, file %llu bytes\n",
            (unsigned long long)ss.compactions, (unsigned long long)ss.file_bytes);
    T_ASSERT(ss.compactions >= 2);
    T_ASSERT(ss.file_bytes < 2 * 64 * 1024);
    br_store_free(st);
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    T_EQ_INT(stats_of(st).live_records, 4);
    for (uint32_t i = 4996; i < 5000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "ckpt-%u", i % 4);
        expect_key_value(st, key, i);
    }
    br_store_free(st);
    event_base_free(base);
    rm_tmpdir(dir);
}

/* ---------------------------------------------------------------------------------------- */
/* Failures.                                                                                */
/* ---------------------------------------------------------------------------------------- */

/* Records the order of outcomes: once a write failed, no later one may succeed. */
struct outcomes {
    int done, ok, failed, ok_after_fail, want;
};

static void on_outcome(int err, void *arg)
{
    struct outcomes *o = arg;
    o->done++;
    if (err == 0) {
        o->ok++;
        o->ok_after_fail += o->failed > 0;
    } else {
        if (err != SL_EIO)
            _exit(20);
        o->failed++;
    }
}

static bool outcomes_done(void *arg)
{
    struct outcomes *o = arg;
    return o->done >= o->want;
}

/* The child's half of test_io_failure: the file may not grow past limit bytes. Exits 0 when
 * every expectation held, else a distinct status. */
static void io_failure_child(const char *dir, long long limit)
{
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {(rlim_t)limit, (rlim_t)limit};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        _exit(10);
    struct event_base *base = event_base_new();
    br_store *st;
    if (!base || br_store_open(base, dir, &st) != 0)
        _exit(11);
    struct outcomes o = {0};
    uint8_t val[400];
    for (uint32_t i = 0; i < 50; i++) {
        char key[32];
        snprintf(key, sizeof(key), "io-%03u", i);
        if (br_store_put(st, key, val, make_value(i, val), on_outcome, &o) != 0)
            _exit(12);
        /* Let the first few go alone so that some succeed before the limit. */
        if (i < 3) {
            o.want = (int)i + 1;
            if (!run_until(base, outcomes_done, &o, WAIT_MS))
                _exit(13);
        }
    }
    o.want = 50;
    if (!run_until(base, outcomes_done, &o, WAIT_MS))
        _exit(14);
    if (o.failed == 0 || o.ok_after_fail != 0 || o.ok < 3)
        _exit(15);
    /* Failed: reads refuse, writes are accepted and fail through their callback. */
    void *v;
    size_t len;
    if (br_store_get(st, "io-000", &v, &len) != SL_EIO || br_store_compact(st) != SL_EIO)
        _exit(16);
    if (br_store_put(st, "late", "x", 1, on_outcome, &o) != 0)
        _exit(17);
    o.want = 51;
    if (!run_until(base, outcomes_done, &o, WAIT_MS) || o.failed < 2)
        _exit(18);
    br_store_free(st);
    event_base_free(base);
    _exit(0);
}

static void test_io_failure(void)
{
    char *dir = mk_tmpdir("store-io");
    long long sizes[5];
    write_series(dir, 5, sizes);
    fflush(NULL);
    pid_t pid = fork();
    T_ASSERT(pid >= 0);
    if (pid == 0)
        io_failure_child(dir, sizes[4] + 1500);
    int status = 0;
    T_EQ_INT(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        T_FAIL("child failed: status 0x%x", status);
    /* What was durable before the failure is intact; a partial frame at the end is cut. */
    struct event_base *base = event_base_new();
    br_store *st;
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    struct br_store_stats ss = stats_of(st);
    fprintf(stderr, "   after EFBIG: %llu live, corrupt_skipped %llu\n",
            (unsigned long long)ss.live_records, (unsigned long long)ss.corrupt_skipped);
    T_ASSERT(ss.live_records >= 8);
    for (int i = 0; i < 5; i++) {
        char key[32];
        snprintf(key, sizeof(key), "t-%03d", i);
        expect_key_value(st, key, (uint32_t)i);
    }
    for (uint32_t i = 0; i < 3; i++) {
        char key[32];
        snprintf(key, sizeof(key), "io-%03u", i);
        expect_key_value(st, key, i);
    }
    append_and_reopen(base, dir, st, 5, (int)ss.live_records); /* t-000..t-004 again */
    event_base_free(base);
    rm_tmpdir(dir);
}

/* A compaction that cannot create its file is skipped; the store carries on. */
static void test_compaction_failure(void)
{
    char *dir = mk_tmpdir("store-compactfail");
    struct event_base *base = event_base_new();
    br_store *st;
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    br_store_set_compact_threshold(st, UINT64_MAX);
    struct ctr c = {0};
    uint8_t val[400];
    char key[32];
    for (uint32_t i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "cf-%03u", i);
        T_EQ_INT(br_store_put(st, key, val, make_value(i, val), on_done, &c), 0);
    }
    for (uint32_t i = 10; i < 100; i++) {
        snprintf(key, sizeof(key), "cf-%03u", i);
        T_EQ_INT(br_store_del(st, key, on_done, &c), 0);
    }
    wait_ctr(base, &c, 190);
    long long before = file_size(dir, "store.log");
    char *cpath = store_file(dir, "store.log.compact");
    T_EQ_INT(mkdir(cpath, 0755), 0); /* open(O_CREAT) of it fails with EISDIR */
    T_EQ_INT(br_store_compact(st), 0);
    /* Completions run in order: once this put is durable the compaction has reported. */
    T_EQ_INT(br_store_put(st, "late", "x", 1, on_done, &c), 0);
    wait_ctr(base, &c, 191);
    T_EQ_INT(stats_of(st).compactions, 0);
    T_ASSERT(file_size(dir, "store.log") > before);
    for (uint32_t i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "cf-%03u", i);
        expect_key_value(st, key, i);
    }
    /* Once the obstacle is gone, it works. */
    T_EQ_INT(rmdir(cpath), 0);
    free(cpath);
    T_EQ_INT(br_store_compact(st), 0);
    struct compaction_wait w = {st, 1, NULL};
    T_ASSERT(run_until(base, compacted, &w, WAIT_MS));
    T_ASSERT(file_size(dir, "store.log") < before);
    br_store_free(st);
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    T_EQ_INT(stats_of(st).live_records, 11);
    expect_value(st, "late", "x", 1);
    expect_key_value(st, "cf-009", 9);
    br_store_free(st);
    event_base_free(base);
    rm_tmpdir(dir);
}

/* ---------------------------------------------------------------------------------------- */
/* SIGKILL: every acknowledged record survives.                                             */
/* ---------------------------------------------------------------------------------------- */

struct kid {
    br_store *st;
    int fd;
    uint32_t round, next;
};

struct kid_put {
    struct kid *k;
    uint32_t i;
};

static void kid_issue(struct kid *k);

static void kid_done(int err, void *arg)
{
    struct kid_put *p = arg;
    struct kid *k = p->k;
    if (err)
        _exit(3);
    uint32_t i = p->i;
    free(p);
    if (write(k->fd, &i, sizeof(i)) != (ssize_t)sizeof(i))
        _exit(4);
    kid_issue(k);
}

/* One acknowledged put of a unique key, plus three unacknowledged overwrites of a hot key so
 * that dead records pile up and compactions run while the child may be killed. */
static void kid_issue(struct kid *k)
{
    struct kid_put *p = malloc(sizeof(*p));
    if (!p)
        _exit(5);
    p->k = k;
    p->i = k->next++;
    char key[32];
    uint8_t val[400];
    snprintf(key, sizeof(key), "k%u-%07u", k->round, p->i);
    size_t n = make_value(k->round * 1000000u + p->i, val);
    if (br_store_put(k->st, key, val, n, kid_done, p) != 0)
        _exit(6);
    for (int h = 0; h < 3; h++)
        if (br_store_put(k->st, "hot", val, n, NULL, NULL) != 0)
            _exit(7);
}

static void kid_main(const char *dir, uint32_t round, int fd)
{
    struct event_base *base = event_base_new();
    struct kid k = {.fd = fd, .round = round};
    if (!base || br_store_open(base, dir, &k.st) != 0)
        _exit(2);
    br_store_set_compact_threshold(k.st, 256 * 1024);
    for (int i = 0; i < 32; i++)
        kid_issue(&k);
    event_base_dispatch(base); /* until killed */
    _exit(0);
}

/* Acked indexes as they arrive on the pipe (4 bytes each, written atomically). */
struct acks {
    uint32_t *v;
    size_t n, cap;
    uint8_t part[4];
    size_t have;
};

/* Reads acks from fd until `want` in all arrived, or (want == 0) until EOF. */
static void read_acks(int fd, struct acks *a, size_t want)
{
    uint8_t buf[4096];
    int64_t deadline = sl_mono_ns() + (int64_t)WAIT_MS * 1000000;
    while (want == 0 || a->n < want) {
        int64_t left = (deadline - sl_mono_ns()) / 1000000;
        if (left <= 0)
            T_FAIL("timed out waiting for acks: %zu of %zu", a->n, want);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        T_ASSERT(pr >= 0);
        if (pr == 0)
            continue;
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        T_ASSERT(r >= 0);
        if (r == 0)
            return; /* EOF: the child is gone */
        for (ssize_t i = 0; i < r; i++) {
            a->part[a->have++] = buf[i];
            if (a->have < 4)
                continue;
            if (a->n == a->cap) {
                a->cap = a->cap ? a->cap * 2 : 1024;
                a->v = realloc(a->v, a->cap * sizeof(*a->v));
                T_ASSERT(a->v != NULL);
            }
            memcpy(&a->v[a->n++], a->part, 4);
            a->have = 0;
        }
    }
}

static void test_sigkill(void)
{
    char *dir = mk_tmpdir("store-kill");
    static const size_t kill_after[] = {300, 1500, 4000};
    struct acks acks[3];
    memset(acks, 0, sizeof(acks));
    for (uint32_t round = 0; round < 3; round++) {
        int p[2];
        T_EQ_INT(pipe(p), 0);
        fflush(NULL);
        pid_t pid = fork();
        T_ASSERT(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            kid_main(dir, round, p[1]);
        }
        close(p[1]);
        read_acks(p[0], &acks[round], kill_after[round]);
        T_EQ_INT(kill(pid, SIGKILL), 0);
        int status = 0;
        T_EQ_INT(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
            T_FAIL("child did not die of SIGKILL: status %d", status);
        read_acks(p[0], &acks[round], 0); /* acks written before it died */
        T_EQ_INT(acks[round].have, 0);
        close(p[0]);
        fprintf(stderr, "   round %u: killed after %zu acks\n", round, acks[round].n);
    }

    struct event_base *base = event_base_new();
    br_store *st;
    T_EQ_INT(br_store_open(base, dir, &st), 0);
    size_t total = 0;
    for (uint32_t round = 0; round < 3; round++)
        for (size_t j = 0; j < acks[round].n; j++) {
            char key[32];
            uint32_t i = acks[round].v[j];
            snprintf(key, sizeof(key), "k%u-%07u", round, i);
            expect_key_value(st, key, round * 1000000u + i);
            total++;
        }
    struct br_store_stats ss = stats_of(st);
    fprintf(stderr, "   %zu acked records all present; %llu live, corrupt_skipped %llu\n", total,
            (unsigned long long)ss.live_records, (unsigned long long)ss.corrupt_skipped);
    T_ASSERT(ss.live_records >= total);
    br_store_free(st);
    for (int r = 0; r < 3; r++)
        free(acks[r].v);
    event_base_free(base);
    rm_tmpdir(dir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    sl_log_set_level(SL_LOG_WARN);
    T_RUN(test_crc32c);
    T_RUN(test_record_decode);
    T_RUN(test_decoder_fuzz);
    T_RUN(test_basic);
    T_RUN(test_scan_mutating);
    T_RUN(test_reopen);
    T_RUN(test_torn_tail);
    T_RUN(test_flipped_byte);
    T_RUN(test_mid_corruption);
    T_RUN(test_foreign_file);
    T_RUN(test_group_commit);
    T_RUN(test_large_value);
    T_RUN(test_free_flushes);
    T_RUN(test_free_in_callback);
    T_RUN(test_compaction);
    T_RUN(test_compaction_concurrent);
    T_RUN(test_auto_compaction);
    T_RUN(test_compaction_failure);
    T_RUN(test_io_failure);
    T_RUN(test_sigkill);
    fprintf(stderr, "ok\n");
    return 0;
}
