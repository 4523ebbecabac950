/* router.h - the topic index, subscriptions, routing of published entries,
 * and the retention shards behind retroactive subscription.
 *
 * Data model:
 *   struct topic       one per topic name in use, interned in router->topics
 *                      (a hash set keyed by name).  It lists its subscribers
 *                      in a dense array so routing is a linear scan.
 *                      It lives while it has subscribers or while an entry
 *                      (queued or retained) references it.
 *   struct subscriber  the router's view of one client connection: its
 *                      subscriptions (subset.h: topic -> index in the topic's
 *                      array, so unsubscribe is O(1) by swap-remove) and its
 *                      queue of undelivered entries.
 *
 * Publishing an entry interns its topics, builds one shared entry (entry.h),
 * walks each topic's subscribers and appends one queue item per subscriber,
 * marking in it every topic of the entry that subscriber holds: a subscriber
 * reached through several topics gets the entry once, listing those topics in
 * the publisher's order.  The entry is then kept in the retention ring of each
 * shard (hash of topic mod num_router_shards) that one of its topics falls on.
 *
 * Single-threaded: the router belongs to the engine's event loop. */
#ifndef KRAKEN_ROUTER_H
#define KRAKEN_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "entry.h"
#include "kraken/protocol.h"
#include "queue.h"
#include "retain.h"
#include "subset.h"
#include "table.h"

struct subscriber;

struct topic {
    uint64_t hash;
    uint64_t mark;            /* scratch epoch for set operations */
    struct subscriber **subs; /* subscribers, dense */
    uint32_t nsubs, cap;
    uint32_t refs;            /* entries referencing this topic */
    uint32_t shard;
    uint32_t len;
    char name[];              /* len bytes, not NUL-terminated */
};

struct subscriber {
    uint64_t id;              /* unique per connection, never reused */
    struct subset subs;       /* its topics, each with its index in topic->subs */
    struct queue queue;
    uint64_t route_mark;      /* seq of the entry being routed: queue tail is its item */
    uint64_t received;        /* entries queued to it so far */
    bool overflowed;          /* failed (bound or memory): queues nothing more */
};

struct router_config {
    uint32_t num_shards;
    uint32_t retain_per_shard;
    size_t retain_bytes_per_shard; /* 0: bounded by count only */
    size_t max_queue_bytes;   /* per subscriber */
    /* Called (once) when a subscriber's queue exceeds max_queue_bytes, or when
     * there was no memory to queue an entry for it; it is then sent nothing
     * more and should be disconnected. */
    void (*overflow)(struct subscriber *s, void *arg);
    void *overflow_arg;
};

struct router_stats {
    uint64_t published;       /* entries */
    uint64_t deliveries;      /* queue items created */
    uint64_t subscriptions;
};

struct router {
    struct router_config cfg;
    struct table topics;
    struct retain *shards;
    uint64_t seq;             /* last entry seq assigned */
    uint64_t epoch;           /* last scratch epoch used */
    int64_t last_time;        /* publish times never go backwards */
    int64_t start_time;       /* horizons before this are too old */
    struct router_stats stats;
    struct entry_pool pool;   /* recycled entry blocks (entry.h) */
    /* scratch arrays reused across calls */
    struct topic **tmp_topics;
    size_t tmp_topics_cap;
    struct subscriber **touched;
    size_t touched_cap;
    struct entry **tmp_entries;
    size_t tmp_entries_cap;
};

int router_init(struct router *r, const struct router_config *cfg, int64_t now);
void router_free(struct router *r);

void subscriber_init(struct subscriber *s, uint64_t id);
/* Drops every subscription and queued entry. */
void router_remove_subscriber(struct router *r, struct subscriber *s);

/* Returns 1 if newly subscribed, 0 if already, -1 on allocation failure. */
int router_subscribe(struct router *r, struct subscriber *s, const char *name, size_t len);
/* Returns 1 if it was subscribed, 0 if not. */
int router_unsubscribe(struct router *r, struct subscriber *s, const char *name, size_t len);

/* Publishes one entry from publisher (NULL: nobody) to topics (duplicates
 * ignored).  *fanout is set to the number of subscribers reached.  Returns 0,
 * or -1 on allocation failure (nothing was published then). */
int router_publish(struct router *r, struct subscriber *publisher,
                   const struct proto_slice *topics, uint32_t ntopics,
                   const char *payload, size_t len, int64_t now, uint32_t *fanout);

enum router_horizon { ROUTER_BY_SEQ, ROUTER_BY_TIME };
/* Subscribes s to topics, then queues every retained entry on them published
 * after the horizon (seq > h, or time > h), in publish order, each once.
 * Returns 1 if done, 0 if the horizon is too old for one of the topics' shards
 * (subscribed, nothing retro-queued), -1 on allocation failure. */
int router_retro_subscribe(struct router *r, struct subscriber *s,
                           const struct proto_slice *topics, uint32_t ntopics,
                           enum router_horizon kind, int64_t h);

struct topic *router_find_topic(const struct router *r, const char *name, size_t len);
void topic_ref(struct topic *t);
void router_topic_unref(struct router *r, struct topic *t);

#endif
