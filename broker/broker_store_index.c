/*
 * broker_store_index.c - the embedded store's in-memory index: a chained hash table of
 * entries (struct st_ent, struct st_index in broker_store_internal.h), which also form a list
 * in first-put order. Used by the loop (st->idx) and by compaction in the syncer (its own
 * replay). Part of the store (broker_store.c).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#define BR_STORE_IMPL
#include "broker/broker_store_internal.h"

/* ---------------------------------------------------------------------------------------- */
/* The index: a chained hash table of entries, which also form a list in first-put order.   */
/* ---------------------------------------------------------------------------------------- */

uint64_t br_store_st_hash(const char *key, size_t klen)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < klen; i++) {
        h ^= (uint8_t)key[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

int br_store_idx_init(struct st_index *ix)
{
    memset(ix, 0, sizeof(*ix));
    ix->nbuckets = 1024;
    ix->buckets = calloc(ix->nbuckets, sizeof(*ix->buckets));
    return ix->buckets ? 0 : SL_ENOMEM;
}

struct st_ent *br_store_idx_find(const struct st_index *ix, const char *key, size_t klen, uint64_t h)
{
    for (struct st_ent *e = ix->buckets[h & (ix->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
    return NULL;
}

struct st_ent *br_store_ent_new(const char *key, size_t klen, uint64_t h)
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
void br_store_idx_insert(struct st_index *ix, struct st_ent *e)
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
void br_store_idx_remove(struct st_index *ix, struct st_ent *e)
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

void br_store_idx_clear(struct st_index *ix)
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
int br_store_idx_apply(struct st_index *ix, const struct br_store_record *rec, uint64_t off, uint32_t flen,
              uint32_t gen, uint64_t *live_bytes)
{
    uint64_t h = br_store_st_hash(rec->key, rec->klen);
    struct st_ent *e = br_store_idx_find(ix, rec->key, rec->klen, h);
    if (rec->op == BR_STORE_OP_DEL) {
        if (e) {
            *live_bytes -= e->frame_len;
            br_store_idx_remove(ix, e);
            free(e);
        }
        return 0;
    }
    if (!e) {
        e = br_store_ent_new(rec->key, rec->klen, h);
        if (!e)
            return SL_ENOMEM;
        br_store_idx_insert(ix, e);
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
