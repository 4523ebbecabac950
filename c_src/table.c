/* table.c - open-addressing pointer set; see table.h for the design. */
#include "table.h"

#include <stdlib.h>

#define TAG(h) ((uint32_t)(h) | 0x80000000u)

void table_init(struct table *t, table_hash_fn hash)
{
    t->slots = NULL;
    t->tags = NULL;
    t->cap = 0;
    t->count = 0;
    t->hash = hash;
}

void table_free(struct table *t)
{
    free(t->slots);
    t->slots = NULL;
    t->tags = NULL;
    t->cap = t->count = 0;
}

uint64_t table_hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return table_mix(h);
}

void *table_find(const struct table *t, uint64_t h, table_eq_fn eq, const void *key)
{
    if (t->count == 0)
        return NULL;
    uint32_t mask = t->cap - 1, tag = TAG(h);
    for (uint32_t i = tag & mask;; i = (i + 1) & mask) {
        uint32_t g = t->tags[i];
        if (!g)
            return NULL;
        if (g == tag && eq(t->slots[i], key))
            return t->slots[i];
    }
}

static void insert_slot(void **slots, uint32_t *tags, uint32_t cap, void *item, uint32_t tag)
{
    uint32_t mask = cap - 1;
    uint32_t i = tag & mask;
    while (tags[i])
        i = (i + 1) & mask;
    slots[i] = item;
    tags[i] = tag;
}

static int resize(struct table *t, uint32_t cap)
{
    void **slots = calloc(cap, sizeof *slots + sizeof *t->tags);
    if (!slots)
        return -1;
    uint32_t *tags = (uint32_t *)(slots + cap);
    for (uint32_t i = 0; i < t->cap; i++)
        if (t->tags[i])
            insert_slot(slots, tags, cap, t->slots[i], t->tags[i]);
    free(t->slots);
    t->slots = slots;
    t->tags = tags;
    t->cap = cap;
    return 0;
}

int table_add(struct table *t, void *item)
{
    if ((uint64_t)(t->count + 1) * 4 > (uint64_t)t->cap * 3)
        if (resize(t, t->cap ? t->cap * 2 : 4) < 0)
            return -1;
    insert_slot(t->slots, t->tags, t->cap, item, TAG(t->hash(item)));
    t->count++;
    return 0;
}

int table_remove(struct table *t, void *item)
{
    if (t->count == 0)
        return 0;
    uint32_t mask = t->cap - 1;
    uint32_t i = TAG(t->hash(item)) & mask;
    while (t->slots[i] != item) {
        if (!t->tags[i])
            return 0;
        i = (i + 1) & mask;
    }
    /* Backward-shift deletion: pull later members of the probe run into the hole. */
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & mask; t->tags[j]; j = (j + 1) & mask) {
        uint32_t home = t->tags[j] & mask;
        /* Move j into hole unless its home lies cyclically in (hole, j]. */
        int stays = (hole <= j) ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            t->slots[hole] = t->slots[j];
            t->tags[hole] = t->tags[j];
            hole = j;
        }
    }
    t->slots[hole] = NULL;
    t->tags[hole] = 0;
    t->count--;
    /* Tables up to TABLE_KEEP slots are kept however empty: a set that
     * swings between empty and a few hundred members (topics that live for
     * one subscribe/unsubscribe pair) would otherwise regrow every time. */
    if (t->cap > TABLE_KEEP && t->count * 8 < t->cap)
        (void)resize(t, t->cap / 2); /* on failure keep the larger table */
    return 1;
}
