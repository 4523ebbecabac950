/* topic.h - the topic index: interned topic names and their lifetimes.
 *
 * One struct topic per name in use, interned in a hash set (table.h) keyed by
 * (namespace, name).  Namespaces keep topic spaces apart that share names:
 * TOPIC_NS_CHANNEL is Kraken's topics and Redis's channels (one space for both
 * protocols), TOPIC_NS_SHARD is Redis's shard channels (SSUBSCRIBE/SPUBLISH),
 * which Redis keeps apart from the others.
 *
 * A topic lists its subscribers in a dense array (the router scans it to
 * route an entry) and lives while it has subscribers or while an entry
 * (queued or retained, entry.h) holds a reference on it.  Its retention shard
 * is fixed at interning: hash of the name mod the shard count. */
#ifndef KRAKEN_TOPIC_H
#define KRAKEN_TOPIC_H

#include <stddef.h>
#include <stdint.h>

#include "table.h"

struct subscriber;

/* TOPIC_NS_INTERNAL: the engine's own topics (the readiness canary, health.c):
 * no client reaches them, their entries are not retained nor counted. */
enum topic_ns { TOPIC_NS_CHANNEL = 0, TOPIC_NS_SHARD = 1, TOPIC_NS_INTERNAL = 2 };

/* What a node of a cluster keeps about a topic it holds upstream or serves
 * (cluster_upstream.c, cluster_move.c, cluster_served.c, cluster_pin.c).
 * Allocated by topic_upstream() the first time one of them sets a field and
 * freed with the topic, so that a single node's topics (the idle workload:
 * 100,000 of them) do not carry it; topic_up() reads it, or the defaults
 * below when there is none. */
struct topic_upstream {
    /* Since when its entries arrive here, for a topic owned by another core
     * (unix second, router seq when subscribed upstream; INT64_MAX and
     * UINT64_MAX: not held upstream), read by cluster_retro.c. */
    int64_t since;
    uint64_t seq;
    /* For a topic that became owned here while it was held upstream: the
     * moment its entries are all here from, valid while it stays owned here
     * since configuration served_cfg (cluster_served.c). */
    int64_t served_time;
    uint64_t served_seq, served_cfg;
    /* Below parents (cluster_pin.c): the parent this topic is held at (a
     * struct cluster_core), NULL when it goes by the hash; and the upstream
     * requests of this node that still wait for the parent's barrier after
     * an unsubscribe. */
    void *pin;
    uint32_t pin_waits;
};

struct topic {
    uint64_t hash;
    uint64_t mark;            /* scratch epoch for set operations (router.c) */
    struct subscriber **subs; /* subscribers, dense */
    uint32_t nsubs, cap;
    uint32_t npeers;          /* how many of the subscribers are peers (router.h) */
    uint32_t refs;            /* entries referencing this topic */
    uint32_t len;
    uint16_t shard;           /* < num_router_shards, at most 65,536 (config.c) */
    uint8_t ns;               /* enum topic_ns */
    /* In a cluster: its upstream subscription may not be acknowledged yet
     * (cluster.c): a new subscriber waits too (router topic_hook). */
    uint8_t upstream_pending;
    struct topic_upstream *up; /* NULL until a cluster needs it (above) */
    char name[];              /* len bytes, not NUL-terminated */
};

extern const struct topic_upstream topic_upstream_none;

static inline const struct topic_upstream *topic_up(const struct topic *t)
{
    return t->up ? t->up : &topic_upstream_none;
}

/* t's cluster fields for writing, allocated with the defaults on first use;
 * NULL when out of memory (the caller says what it does instead). */
struct topic_upstream *topic_upstream(struct topic *t);

struct topic_index {
    struct table table;
    uint32_t num_shards;
};

void topic_index_init(struct topic_index *x, uint32_t num_shards);
/* Frees every topic left (callers removed subscribers and entries first). */
void topic_index_free(struct topic_index *x);
static inline uint32_t topic_index_count(const struct topic_index *x) { return x->table.count; }

struct topic *topic_find(const struct topic_index *x, enum topic_ns ns, const char *name,
                         size_t len);
/* The 64-bit FNV-1a of t's name (cluster_name_hash), from the hash kept
 * for the table: no pass over the name. */
uint64_t topic_fnv(const struct topic *t);
/* Finds or creates; NULL on allocation failure. */
struct topic *topic_intern(struct topic_index *x, enum topic_ns ns, const char *name, size_t len);
/* Frees t if nothing holds it any more (no subscriber, no entry). */
void topic_maybe_free(struct topic_index *x, struct topic *t);
static inline void topic_ref(struct topic *t) { t->refs++; }
static inline void topic_unref(struct topic_index *x, struct topic *t)
{
    t->refs--;
    topic_maybe_free(x, t);
}

/* Calls fn for every topic of namespace ns that has subscribers, in no
 * particular order; stops early when fn returns non-zero. */
void topic_foreach(const struct topic_index *x, enum topic_ns ns,
                   int (*fn)(const struct topic *t, void *arg), void *arg);

#endif
