/* topic.c - the topic index; see topic.h. */
#include "topic.h"

#include <stdlib.h>
#include <string.h>

struct name_key {
    const char *p;
    size_t len;
    uint8_t ns;
};

static uint64_t topic_hash(const void *item)
{
    return ((const struct topic *)item)->hash;
}

static int topic_eq(const void *item, const void *key)
{
    const struct topic *t = item;
    const struct name_key *k = key;
    return t->len == k->len && t->ns == k->ns && memcmp(t->name, k->p, k->len) == 0;
}

/* The shard depends on the name only, so a shard channel and a channel of
 * the same name retain in the same shard; the namespace only perturbs the
 * table slot. */
#define NS_PERTURB 0x9e3779b97f4a7c15ULL

static uint64_t key_hash(enum topic_ns ns, const char *name, size_t len)
{
    uint64_t h = table_hash_bytes(name, len);
    return ns == TOPIC_NS_CHANNEL ? h : h ^ NS_PERTURB;
}

uint64_t topic_fnv(const struct topic *t)
{
    return table_unmix(t->ns == TOPIC_NS_CHANNEL ? t->hash : t->hash ^ NS_PERTURB);
}

const struct topic_upstream topic_upstream_none = {.since = INT64_MAX, .seq = UINT64_MAX};

struct topic_upstream *topic_upstream(struct topic *t)
{
    if (!t->up) {
        t->up = malloc(sizeof *t->up);
        if (t->up)
            *t->up = topic_upstream_none;
    }
    return t->up;
}

void topic_index_init(struct topic_index *x, uint32_t num_shards)
{
    table_init(&x->table, topic_hash);
    x->num_shards = num_shards ? num_shards : 1;
}

void topic_index_free(struct topic_index *x)
{
    for (uint32_t i = 0; i < x->table.cap; i++)
        if (x->table.slots && x->table.slots[i]) {
            struct topic *t = x->table.slots[i];
            free(t->subs);
            free(t->up);
            free(t);
        }
    table_free(&x->table);
}

struct topic *topic_find(const struct topic_index *x, enum topic_ns ns, const char *name,
                         size_t len)
{
    struct name_key k = {name, len, (uint8_t)ns};
    return table_find(&x->table, key_hash(ns, name, len), topic_eq, &k);
}

struct topic *topic_intern(struct topic_index *x, enum topic_ns ns, const char *name, size_t len)
{
    struct name_key k = {name, len, (uint8_t)ns};
    uint64_t h = key_hash(ns, name, len);
    struct topic *t = table_find(&x->table, h, topic_eq, &k);
    if (t)
        return t;
    t = malloc(sizeof *t + len);
    if (!t)
        return NULL;
    memset(t, 0, sizeof *t);
    t->hash = h;
    t->len = (uint32_t)len;
    t->ns = (uint8_t)ns;
    t->shard = (uint16_t)((table_hash_bytes(name, len) >> 32) % x->num_shards);
    memcpy(t->name, name, len);
    if (table_add(&x->table, t) < 0) {
        free(t);
        return NULL;
    }
    return t;
}

void topic_maybe_free(struct topic_index *x, struct topic *t)
{
    if (t->nsubs || t->refs)
        return;
    table_remove(&x->table, t);
    free(t->subs);
    free(t->up);
    free(t);
}

void topic_foreach(const struct topic_index *x, enum topic_ns ns,
                   int (*fn)(const struct topic *t, void *arg), void *arg)
{
    for (uint32_t i = 0; i < x->table.cap; i++) {
        const struct topic *t = x->table.slots[i];
        if (t && t->ns == ns && t->nsubs > 0 && fn(t, arg))
            return;
    }
}
