/* entry.h - a published entry: one payload shared by every queue it reaches.
 *
 * An entry is allocated once per published `MESSAGE` and referenced (refcnt)
 * from each subscriber queue it was routed to, from each retention ring that
 * keeps it, and from output buffers that send it without copying.  Its
 * memory is one block:
 *
 *   struct entry | topics[ntopics] | "MESSAGE t1 t2 ... <len>\r\n" | payload | "\r\n"
 *   | entered[(ntopics + 7) / 8]
 *
 * so the usual delivery (the subscriber holds every topic of the entry) is one
 * contiguous byte range, `wire`, that goes to the socket as it is.  An entry
 * holds a reference on each of its topics (topic.h), so topic names outlive
 * their last subscriber while an entry still needs them.
 *
 * `entered' has one bit per topic, set by the cluster (cluster.c,
 * on_published) when the entry entered the cluster at this node for that
 * topic: its publisher was a local client or a peer, and this core owned the
 * topic then (docs/cluster.md, "Across moves").  Zero everywhere else. */
#ifndef KRAKEN_ENTRY_H
#define KRAKEN_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct topic;
struct topic_index;

/* Blocks of up to ENTRY_POOL_CLASSES * 64 bytes are recycled through free
 * lists, one per 64-byte size class, owned by the router: a published entry
 * then costs no malloc/free pair, and the block it reuses is one just
 * released, still in the cache.  At most ENTRY_POOL_KEEP blocks are kept per
 * class (8.5 MiB if every class were full); the rest go back to malloc.
 * Sanitizer builds, and the engine under valgrind, bypass the pool so that a
 * use after free is still caught. */
#define ENTRY_POOL_CLASSES 16
#define ENTRY_POOL_KEEP 1024

struct entry_pool {
    void *free[ENTRY_POOL_CLASSES]; /* singly linked through each block's first word */
    uint32_t count[ENTRY_POOL_CLASSES];
};

/* How long delivered entries waited between their publish and being written
 * out to a subscriber (a poll, a push, a Redis message): a histogram in
 * milliseconds, one per router (the /metrics `kraken_queue_wait_seconds`).
 * `bucket[i]` counts observations <= entry_wait_bounds_ms[i] and above the
 * previous bound (not cumulative); the last bucket is +Inf. */
#define ENTRY_WAIT_BUCKETS 13
extern const int64_t entry_wait_bounds_ms[ENTRY_WAIT_BUCKETS - 1];
struct entry_wait_hist {
    uint64_t bucket[ENTRY_WAIT_BUCKETS];
    uint64_t count;
    uint64_t sum_ms;
};

/* What an entry goes back to when its last reference goes: its block to the
 * pool, its topic references to the topic index.  The router owns one. */
struct entry_ctx {
    struct entry_pool pool;
    struct topic_index *topics;
    struct entry_wait_hist wait;
};

struct entry {
    uint32_t refcnt;
    uint32_t ntopics;
    uint64_t seq;         /* global publish order, from 1 */
    int64_t time;         /* Unix seconds at publish */
    int64_t publish_ms;   /* entry_clock_ms() at publish, for the wait histogram;
                             -1: an internal entry (the canary), not observed */
    uint64_t publisher;   /* subscriber id of the publishing connection */
    uint64_t mark;        /* scratch epoch (router.c: dedupe during retro scans) */
    struct entry_ctx *ctx;
    uint32_t hdr_len;     /* length of the "MESSAGE ...\r\n" line ("SMESSAGE" for
                             an entry of Redis shard channels: on a cluster link
                             it says its namespace, docs/cluster.md) */
    uint32_t payload_len; /* (both < 2^31: max_request_bytes; 32-bit keeps the
                             struct at 72 bytes with publish_ms) */
    char *wire;           /* hdr_len + payload_len + 2 bytes */
    struct topic *topics[];
};

/* Whether the entry's topics are Redis shard channels (all of an entry's
 * topics are of one namespace). */
static inline bool entry_is_shard(const struct entry *e)
{
    return e->wire[0] == 'S';
}

static inline size_t entry_wire_len(const struct entry *e)
{
    return (size_t)e->hdr_len + e->payload_len + 2;
}

static inline const char *entry_payload(const struct entry *e)
{
    return e->wire + e->hdr_len;
}

/* The entered bitmap (bit i: topics[i]), after the wire bytes. */
static inline unsigned char *entry_entered(const struct entry *e)
{
    return (unsigned char *)e->wire + entry_wire_len(e);
}

static inline bool entry_entered_at(const struct entry *e, uint32_t i)
{
    return entry_entered(e)[i / 8] >> (i % 8) & 1;
}

static inline void entry_set_entered(struct entry *e, uint32_t i)
{
    entry_entered(e)[i / 8] |= (unsigned char)(1u << (i % 8));
}

/* A monotonic clock in milliseconds (CLOCK_MONOTONIC, as engine_now_ms). */
int64_t entry_clock_ms(void);
/* Records in e->ctx->wait that e is written out now (now_ms: entry_clock_ms()).
 * Entries of the internal namespace (the readiness canary) are not counted. */
void entry_observe_wait(const struct entry *e, int64_t now_ms);
/* The same for n entries published at the same millisecond (a poll writes
 * runs of them: one histogram update per run, not per entry). */
void entry_observe_waits(struct entry_wait_hist *h, int64_t publish_ms, int64_t now_ms,
                         uint64_t n);

/* Builds an entry with refcnt 1, taking a reference on each topic. */
struct entry *entry_new(struct entry_ctx *ctx, struct topic *const *topics, uint32_t ntopics,
                        const char *payload, size_t len);
static inline void entry_ref(struct entry *e) { e->refcnt++; }
void entry_unref(struct entry *e);
/* Frees the pool's blocks (at router_free). */
void entry_pool_drain(struct entry_pool *p);

#endif
