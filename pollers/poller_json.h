/*
 * poller_json.h - the pollers' streaming JSON writer, shared by the event encoders of
 * poller_sqs.c and poller_kafka_event.c. Internal to the pollers module: only pollers/ files
 * include it; other modules see nothing of it (and JSON that is not a hot-path event is built
 * with jansson, not with this).
 *
 * Why it exists, and why it is this small, is in poller_json.c. In short: it writes straight
 * into space reserved in the caller's evbuffer (the only copy of a record's bytes), repairs
 * ill-formed UTF-8 to U+FFFD, JSON-escapes, and writes integers and base64. Everything
 * structural ('{', "\"key\":", ...) is a literal in the encoder, written with pl_jw_lit.
 * Optionally it also feeds the content of every string it writes to an MD5 (or any) digest,
 * which the SQS encoder needs for md5OfBody.
 *
 * Use: pl_jw_init, any number of writer calls, then pl_jw_commit, which returns the first
 * error. Errors are sticky: after the first one every call is a no-op, so an encoder checks
 * once, at the end. Nobody else may touch the evbuffer between pl_jw_init and pl_jw_commit.
 * On an error the evbuffer may end with part of what was written: the caller discards it.
 * Errors are negative SL_E* codes (broker/broker.h).
 */
#ifndef SLUICE_POLLER_JSON_H
#define SLUICE_POLLER_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

struct evp_md_ctx_st; /* OpenSSL's EVP_MD_CTX */

/*
 * The writer. Lives on the caller's stack for one encoder call. Callers read and write md,
 * read and set err (only when it is 0), and use p/end only as pl_jw_room says; the rest is
 * the writer's.
 */
struct pl_jw {
    struct evbuffer *out;     /* borrowed; where the JSON text goes */
    struct evbuffer_iovec v;  /* the current reservation; iov_base NULL when none */
    uint8_t *p, *end;         /* its unwritten part */
    bool first;               /* no reservation made yet since pl_jw_init */
    struct evp_md_ctx_st *md; /* NULL, or a digest the content of strings is also fed to
                                 (pl_jw_str, pl_jw_text), as text; borrowed, initialised by
                                 the caller. Set and cleared around the strings to hash. */
    int err;                  /* first error; every writer call is a no-op after it */
};

/* Starts writing to out (borrowed until pl_jw_commit). No hashing (md NULL). Cannot fail. */
void pl_jw_init(struct pl_jw *w, struct evbuffer *out);

/* Commits what was written to w->out. Returns the first error of the writer: 0, SL_ENOMEM,
 * SL_EUNSUPPORTED (the digest refused an update), or whatever the caller put in w->err. */
int pl_jw_commit(struct pl_jw *w);

/*
 * Makes at least k (small, e.g. <= 64) bytes writable at w->p, for an encoder that formats in
 * place: it then writes at most k bytes and advances w->p past them. Returns false (w->err set)
 * on failure; then nothing may be written.
 */
bool pl_jw_room(struct pl_jw *w, size_t k);

/* Writes s[0..n) as it is, never hashed: JSON structure, digits, hex. */
void pl_jw_bytes(struct pl_jw *w, const void *s, size_t n);

/* pl_jw_bytes of a string literal. */
#define pl_jw_lit(w, s) pl_jw_bytes((w), (s), sizeof(s) - 1)

/*
 * Raw bytes s[0..n) as string content (the caller writes the quotes): each maximal ill-formed
 * UTF-8 subpart (Unicode 15, 3.9) becomes U+FFFD, then the text is JSON-escaped once (nested
 * false) or twice (nested true: content of a JSON text that is itself a JSON string, such as
 * SQS's object body). What is hashed (w->md) is the content as the reader of the string sees
 * it: the repaired text, or for nested, the once-escaped JSON text.
 */
void pl_jw_str(struct pl_jw *w, const uint8_t *s, size_t n, bool nested);

/* Text s[0..n) that is already valid UTF-8 as string content: hashed as it is, written
 * JSON-escaped. */
void pl_jw_text(struct pl_jw *w, const void *s, size_t n);

/* pl_jw_text of a string literal. */
#define pl_jw_text_lit(w, s) pl_jw_text((w), (s), sizeof(s) - 1)

/* Decimal digits of v, as a JSON number (or, between quotes, a decimal string). */
void pl_jw_int(struct pl_jw *w, int64_t v);

/* Base64 (RFC 4648, standard alphabet, padded) of a byte stream fed in pieces: zero-initialise
 * one ({0}), pl_jw_b64 any number of times, then pl_jw_b64_end once. Never hashed. */
struct pl_jw_b64 {
    uint8_t in[3]; /* bytes not yet written */
    size_t n;
};

void pl_jw_b64(struct pl_jw *w, struct pl_jw_b64 *b, const void *s, size_t n);
void pl_jw_b64_end(struct pl_jw *w, struct pl_jw_b64 *b);

/* Whether s[0..n) is well-formed UTF-8 (no overlongs, surrogates, nor code points above
 * U+10FFFF). */
bool pl_jw_utf8_valid(const uint8_t *s, size_t n);

/* Writes s[0..n) into out (3n bytes suffice) with each maximal ill-formed UTF-8 subpart
 * replaced by U+FFFD, as pl_jw_str does. Returns the length written. */
size_t pl_jw_utf8_repair(const uint8_t *s, size_t n, uint8_t *out);

/*
 * The envelope every partial batch response shares (lambda-spec 2.6), whatever the source:
 * an empty or blank body, JSON null, an object without batchItemFailures, or batchItemFailures
 * null or [] all mean "every record succeeded": returns 0 with *list NULL. batchItemFailures
 * as a non-empty array: returns 0 with *list borrowed from *root (the caller json_decrefs
 * *root). Anything else (not JSON, a top level that is neither an object nor null,
 * batchItemFailures of another type): SL_EPROTO; SL_ENOMEM. On error *root and *list are NULL.
 * The items themselves are the source's to read (their itemIdentifier shapes differ).
 */
struct json_t;
int pl_batch_failures(const uint8_t *body, size_t len, struct json_t **root,
                      struct json_t **list);

#endif
