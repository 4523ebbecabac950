/* table.h - an open-addressing hash set of pointers: the topic index.
 *
 * The router's topic index (name -> struct topic *) is a set of pointers
 * whose key lives inside the pointed-to object, so the caller hands in the
 * key's hash and an equality callback.  Linear probing with backward-shift
 * deletion (no tombstones), power-of-two capacity, grown at 3/4 load, shrunk
 * at 1/8 but never below TABLE_KEEP slots.  Beside each slot, a tag: the
 * low 32 bits of its item's hash (top bit set, so 0 means empty).  A probe
 * reads only the tags, contiguous, and follows an item's pointer (a cache
 * miss, and a call of the equality callback) only when its tag matches; the
 * tag also gives an item's home slot, so growing and deleting never read
 * the items.  (Subscriber sets, keyed by topic
 * pointer with a slot number beside it, are subset.h.) */
#ifndef KRAKEN_TABLE_H
#define KRAKEN_TABLE_H

#include <stddef.h>
#include <stdint.h>

#define TABLE_KEEP 4096 /* slots (48 KiB) kept however empty the table gets */

typedef uint64_t (*table_hash_fn)(const void *item);
typedef int (*table_eq_fn)(const void *item, const void *key);

struct table {
    void **slots;      /* NULL means empty */
    uint32_t *tags;    /* beside slots (same allocation): 0, or the hash's low 32 bits | 1 << 31 */
    uint32_t cap;      /* 0 or a power of two, at most 2^31 (the tag's top bit is no index bit) */
    uint32_t count;
    table_hash_fn hash; /* hash of an item already in the table */
};

void table_init(struct table *t, table_hash_fn hash);
void table_free(struct table *t);
/* Returns the item equal to key (whose hash is h), or NULL. */
void *table_find(const struct table *t, uint64_t h, table_eq_fn eq, const void *key);
/* Adds an item that is not in the table yet. Returns 0, or -1 on allocation failure. */
int table_add(struct table *t, void *item);
/* Removes exactly this item (compared by pointer). Returns 1 if it was there. */
int table_remove(struct table *t, void *item);
/* Iteration: for (i = 0; i < t->cap; i++) if (t->slots[i]) ... */

/* 64-bit FNV-1a followed by a final mix (table_mix); good enough and fast
 * for short names. */
uint64_t table_hash_bytes(const void *p, size_t n);
/* The final mix, and its inverse: table_unmix(table_hash_bytes(p, n)) is
 * the plain FNV-1a of the bytes (the cluster's ownership hash,
 * cluster_hash.h, without reading a topic's name again: topic_fnv). */
static inline uint64_t table_mix(uint64_t h)
{
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    return h ^ (h >> 32);
}
static inline uint64_t table_unmix(uint64_t h)
{
    h ^= h >> 32;                 /* (x ^= x >> 32 undoes itself on 64 bits) */
    h *= 0xcfee444d8b59a89bULL;   /* the inverse of 0xd6e8feb86659fd93 mod 2^64 */
    return h ^ (h >> 32);
}
static inline uint64_t table_hash_ptr(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33;
    return x;
}

#endif
