/* router.h - subscriptions, routing of published entries, and the retention
 * shards behind retroactive subscription.
 *
 * Data model:
 *   struct topic       (topic.h) one per topic name in use, listing its
 *                      subscribers in a dense array so routing is a scan.
 *   struct pattern     (router_pattern.c) one per Redis PSUBSCRIBE pattern
 *                      in use, listing its subscribers the same way.
 *   struct subscriber  the router's view of one client connection: its
 *                      subscriptions (subset.h: topic -> index in the topic's
 *                      array, so unsubscribe is O(1) by swap-remove), its
 *                      patterns, and its queue of undelivered entries.  The
 *                      router never looks past it: `owner` is for the
 *                      callbacks, which belong to whoever owns the connection.
 *
 * Publishing an entry interns its topics, builds one shared entry (entry.h),
 * walks each topic's subscribers (then, when patterns exist, each pattern
 * matching one of the topics) and appends one queue item per subscriber,
 * marking in it every topic of the entry that subscriber holds: a subscriber
 * reached through several topics gets the entry once, listing those topics in
 * the publisher's order.  The entry is then kept in the retention ring of each
 * shard (topic.h) that one of its topics falls on.
 *
 * Hooks (router_config): `topic_hook` and `published` for the cluster
 * (a topic's first subscriber / last one; every published entry);
 * `overflow` when a subscriber cannot take more (it
 * must then be disconnected: it is sent nothing more), and `ready` when the
 * queue of a subscriber with `push` set goes from empty to non-empty, so a
 * push protocol can arm a write.
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
#include "topic.h"

struct pattern;

struct subscriber {
    uint64_t id;              /* unique per connection, never reused */
    void *owner;              /* for the hooks: the connection this belongs to */
    struct subset subs;       /* its topics, each with its index in topic->subs */
    struct queue queue;
    struct pattern **patterns; /* its patterns, in subscription order */
    uint32_t npatterns, pcap;
    uint64_t route_mark;      /* seq of the entry being routed: queue tail is its item */
    uint64_t received;        /* entries queued to it so far */
    size_t unsent;            /* bytes taken from the queue but not yet sent (push
                                 protocols keep it up to date): counted against the bound */
    bool overflowed;          /* failed (bound or memory): queues nothing more */
    bool push;                /* call the `ready` hook when the queue becomes non-empty */
    /* In a cluster: the link of another node (`set peer`).  Its
     * subscriptions never make a topic_hook call, and an entry reaches it
     * only when the to_peers hook says so (cluster.c). */
    bool peer;
    /* In a cluster: the link of a proxy below this node (`set child`).  An
     * ordinary subscriber, except that its `link_retro` may fetch topics
     * from their owners (router_retro_fetch's defer; cluster_retro.c). */
    bool child;
    /* In a cluster, set on peers only, around the routing of entries a
     * core forwarded (cluster_origin.c): the link of a node that had them
     * already.  It is sent none of them, by topic or pattern. */
    bool skip;
};

/* What the to_peers hook says of a topic's peer subscribers. */
enum router_peers { ROUTER_PEERS_NONE, ROUTER_PEERS_ALL, ROUTER_PEERS_ASK };

struct router_config {
    uint32_t num_shards;
    uint32_t retain_per_shard;
    size_t retain_bytes_per_shard; /* 0: bounded by count only */
    size_t max_queue_bytes;   /* per subscriber: queue bytes + unsent */
    /* Called (once) when a subscriber's queue exceeds max_queue_bytes, or when
     * there was no memory to queue an entry for it; it is then sent nothing
     * more and should be disconnected. */
    void (*overflow)(struct subscriber *s, void *arg);
    /* Called when a push subscriber's queue goes from empty to non-empty. */
    void (*ready)(struct subscriber *s, void *arg);
    void *cb_arg;
    /* Cluster hooks (cluster.c; NULL on a node that is not in a cluster).
     * topic_hook: subscriber s just subscribed to topic t (any namespace)
     * and t has no other subscriber or t->upstream_pending is set (gained),
     * or t just lost its last subscriber (!gained, s NULL); called once t's
     * subscriber array is up to date, before t may be freed.  Never called
     * for a subscriber that held t already.  Peer subscribers (s->peer) do
     * not count: never called for them, and "no other" means no other
     * that is not a peer.  published: an entry was just
     * routed and retained (publisher as given to router_publish_ns); the
     * hook may set the entry's `entered' bits (entry.h). */
    void (*topic_hook)(struct topic *t, struct subscriber *s, bool gained, void *arg);
    void (*published)(struct subscriber *publisher, enum topic_ns ns, struct entry *e,
                      void *arg);
    /* retro_classify: for each of the n topics of a retroactive
     * subscription, where its entries since the horizon (kind: enum
     * router_horizon) come from: src[i] = enum router_retro_src.  NULL:
     * every topic is ROUTER_RETRO_LOCAL.
     * retro_defer: s subscribed to topics marked ROUTER_RETRO_UPSTREAM (the
     * n of them; held[i]: s held topics[i] before this request); the hook fetches their entries since the horizon itself
     * (cluster_retro.c) and returns true, or false when it cannot (the
     * subscription then answers "too old"). */
    void (*retro_classify)(struct topic *const *topics, uint32_t n, int kind, int64_t h,
                           uint8_t *src, void *arg);
    bool (*retro_defer)(struct subscriber *s, struct topic *const *topics, const bool *held,
                        uint32_t n, int kind, int64_t h, int64_t h_time, void *arg);
    /* to_peers: whether an entry of this publisher on topic t goes to t's
     * peer subscribers (asked once per topic of an entry that has some):
     * ROUTER_PEERS_NONE, _ALL, or _ASK: to_peer says for each of them.
     * NULL: always. */
    enum router_peers (*to_peers)(const struct subscriber *publisher, const struct topic *t,
                                  void *arg);
    bool (*to_peer)(const struct subscriber *publisher, const struct topic *t,
                    const struct subscriber *s, void *arg);
    /* pattern_hook: the pattern `name` just gained subscriber s, not a
     * peer, and has `holders' subscribers that are not peers now: called
     * for the first (holders 1), and for later ones while the hook said the
     * last time that its upstream subscription is pending (they wait for it
     * too); or it just lost its last one (s NULL, holders 0).  Returns
     * whether its upstream subscription is pending.  pattern_to_peers:
     * whether an entry of this publisher on topic t goes to peers through
     * their patterns (asked once per (pattern, topic) match that has a peer
     * subscriber); NULL: never.  A peer holds its patterns at every core, so
     * only the core where the entry entered the cluster sends it
     * (cluster_pattern.c). */
    bool (*pattern_hook)(const char *name, size_t len, struct subscriber *s, uint32_t holders,
                         void *arg);
    bool (*pattern_to_peers)(const struct subscriber *publisher, const struct topic *t,
                             void *arg);
    void *cluster_arg;
};

struct router_stats {
    uint64_t published;       /* entries */
    uint64_t published_bytes; /* their payload bytes */
    uint64_t deliveries;      /* queue items created */
    uint64_t subscriptions;   /* topic subscriptions now */
    uint64_t pattern_subscriptions; /* (pattern, subscriber) pairs now */
    uint64_t queued_bytes_total; /* serialised bytes ever queued (budget.h checks by it) */
};

struct router {
    struct router_config cfg;
    struct topic_index topics;
    struct entry_ctx entries; /* the entries' pool and their way back to topics */
    struct retain *shards;
    struct table pattern_set; /* struct pattern by name */
    struct pattern **patterns; /* the same, dense, for routing */
    uint32_t npatterns, patterns_cap;
    uint64_t seq;             /* last entry seq assigned */
    uint64_t epoch;           /* last scratch epoch used */
    int64_t last_time;        /* publish times never go backwards */
    int64_t start_time;       /* horizons before this are too old */
    struct router_stats stats;
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

void subscriber_init(struct subscriber *s, uint64_t id, void *owner);
/* Drops every subscription, pattern and queued entry. */
void router_remove_subscriber(struct router *r, struct subscriber *s);

/* Returns 1 if newly subscribed, 0 if already, -1 on allocation failure. */
int router_subscribe_ns(struct router *r, struct subscriber *s, enum topic_ns ns,
                        const char *name, size_t len);
/* Returns 1 if it was subscribed, 0 if not. */
int router_unsubscribe_ns(struct router *r, struct subscriber *s, enum topic_ns ns,
                          const char *name, size_t len);
static inline int router_subscribe(struct router *r, struct subscriber *s, const char *name,
                                   size_t len)
{
    return router_subscribe_ns(r, s, TOPIC_NS_CHANNEL, name, len);
}
static inline int router_unsubscribe(struct router *r, struct subscriber *s, const char *name,
                                     size_t len)
{
    return router_unsubscribe_ns(r, s, TOPIC_NS_CHANNEL, name, len);
}

/* Redis patterns (glob.h rules) over the channel namespace.  Same returns as
 * router_subscribe / router_unsubscribe. */
int router_psubscribe(struct router *r, struct subscriber *s, const char *pat, size_t len);
int router_punsubscribe(struct router *r, struct subscriber *s, const char *pat, size_t len);
void router_punsubscribe_all(struct router *r, struct subscriber *s);
const char *pattern_name(const struct pattern *p, size_t *len);
/* Number of subscribers of a pattern (peers included). */
uint32_t pattern_nsubs(const struct pattern *p);
/* Number of patterns with a subscriber that is not a peer (Redis's NUMPAT). */
uint32_t router_local_patterns(const struct router *r);
/* Calls fn for each pattern with a subscriber that is not a peer, until it
 * returns non-zero (returned). */
int router_foreach_local_pattern(const struct router *r,
                                 int (*fn)(const char *name, size_t len, void *arg), void *arg);
/* Whether topic t matches pattern p. */
bool pattern_matches(const struct pattern *p, const struct topic *t);

struct router_publish_result {
    uint32_t fanout;          /* distinct subscribers reached */
    uint64_t receivers;       /* Redis's count: a subscriber once per channel it holds
                                 plus once per (pattern, topic) match */
};

/* Publishes one entry from publisher (NULL: nobody, and then nobody is
 * excluded) to topics of namespace ns (duplicates ignored).  Returns 0, or -1
 * on allocation failure (nothing was published then). */
int router_publish_ns(struct router *r, struct subscriber *publisher, enum topic_ns ns,
                      const struct proto_slice *topics, uint32_t ntopics, const char *payload,
                      size_t len, int64_t now, struct router_publish_result *res);
static inline int router_publish(struct router *r, struct subscriber *publisher,
                                 const struct proto_slice *topics, uint32_t ntopics,
                                 const char *payload, size_t len, int64_t now, uint32_t *fanout)
{
    struct router_publish_result res;
    int rc = router_publish_ns(r, publisher, TOPIC_NS_CHANNEL, topics, ntopics, payload, len,
                               now, &res);
    *fanout = res.fanout;
    return rc;
}

enum router_horizon { ROUTER_BY_SEQ, ROUTER_BY_TIME };
/* Where a topic's entries since a horizon come from (the cluster's
 * retro_classify): this node's retention; nowhere (too old); or the
 * topic's owner (retro_defer, in a cluster). */
enum router_retro_src { ROUTER_RETRO_LOCAL, ROUTER_RETRO_TOO_OLD, ROUTER_RETRO_UPSTREAM };
/* Subscribes s to topics, then queues every retained entry on them published
 * after the horizon (seq > h, or time > h), in publish order, each once.
 * h_time is the horizon's Unix second (h itself by time; the register's
 * second by seq), for topics whose entries come from upstream (retro_defer:
 * those are queued later, and not listed on the entries queued now).
 * Returns 1 if done, 0 if the horizon is too old for one of the topics' shards
 * (subscribed, nothing retro-queued), -1 on allocation failure. */
int router_retro_subscribe(struct router *r, struct subscriber *s,
                           const struct proto_slice *topics, uint32_t ntopics,
                           enum router_horizon kind, int64_t h, int64_t h_time);
/* A cluster link's fetch (`link_retro`): subscribes s to topics (by time h),
 * then collects the retained entries on them published after h, not by s,
 * in publish order, into r->tmp_entries; the requested topics are those
 * whose mark is *tmark.  Entries come from this node's retention only (a
 * topic it cannot vouch for makes the fetch too old), unless `defer': then
 * such topics are handed to retro_defer as for router_retro_subscribe, and
 * the entries collected are those of the other topics.  Returns the count,
 * -2 when too old (subscribed), -1 on allocation failure. */
long router_retro_fetch(struct router *r, struct subscriber *s,
                        const struct proto_slice *topics, uint32_t ntopics, int64_t h,
                        bool defer, uint64_t *tmark);
/* A cluster link's `link_entered' (docs/cluster.md, "Across moves"): the
 * retained entries published after the second h that entered the cluster
 * at this node for at least one of topics (entry.h, `entered'), not
 * published by s, in publish order, into r->tmp_entries; the requested
 * topics are those whose mark is *tmark.  s is not subscribed.  Returns
 * the count, -2 when the retention lost entries after h (a horizon before
 * this node's start is not one: nothing entered here before it), -1 on
 * allocation failure. */
long router_entered_fetch(struct router *r, const struct subscriber *s,
                          const struct proto_slice *topics, uint32_t ntopics, int64_t h,
                          uint64_t *tmark);
/* Queues e for s listing the topics of e whose mark is `mark` (at least one);
 * counts it and checks s's bound as a routed delivery.  -1: out of memory. */
int router_enqueue_marked(struct router *r, struct subscriber *s, struct entry *e,
                          uint64_t mark);
/* s cannot take more (queue bound, or no memory for its queue): it gets
 * nothing more and the overflow hook reports it, once, to be disconnected. */
void router_fail_subscriber(struct router *r, struct subscriber *s);
/* Finishes an item built at the tail of s's queue (queue_push, qitem_add_topic)
 * as router_enqueue_marked does. */
void router_commit(struct router *r, struct subscriber *s);

struct topic *router_find_topic(const struct router *r, const char *name, size_t len);

/* Drops the oldest retained entries, across shards in publish order, until
 * `bytes` wire bytes are released or nothing is retained; returns the bytes
 * released.  A retro_subscribe from before them then answers NOT_FOUND. */
size_t router_trim_retention(struct router *r, size_t bytes);

/* Read-only views for stats and introspection. */
/* The horizon of shard i: retro_subscribe works from this Unix second on
 * (the newest dropped entry's time, or the router's start). */
int64_t router_shard_horizon(const struct router *r, uint32_t i);
uint64_t router_retained_entries(const struct router *r);
uint64_t router_retained_bytes(const struct router *r);

/* Calls fn for each topic s subscribes to (any namespace), in no order. */
void subscriber_foreach_topic(const struct subscriber *s,
                              void (*fn)(const struct topic *t, void *arg), void *arg);

/* Whether s subscribes to t. */
static inline bool subscriber_holds(const struct subscriber *s, const struct topic *t)
{
    return subset_find(&s->subs, t) != NULL;
}

#endif
