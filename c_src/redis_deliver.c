/* redis_deliver.c - a Redis client's queued entries written as Redis
 * frames (the push of the Redis protocol; the commands are redis_pubsub.c).
 *
 * Delivery turns each queued item into frames, for each topic of the entry
 * the subscriber was reached through, in the publisher's order: `message`
 * when it subscribes to the channel, then one `pmessage` per pattern of its
 * own that matches (in subscription order), or `smessage` for a shard
 * channel.  A Kraken entry for topics `a b` thus reaches a Redis client
 * subscribed to both as two `message` frames.  Frames are assembled in a
 * local buffer and appended in large pieces; payloads of CONN_COPY_LIMIT
 * bytes or more are added by reference to the shared entry (zero-copy).
 *
 * A fan-out formats each (entry, channel) once: the frames of the last
 * entries delivered are kept for their next subscribers (frame_cache). */
#include <event2/buffer.h>
#include <stdint.h>
#include <string.h>

#include "clock.h"
#include "engine.h"
#include "entry.h"
#include "redis_internal.h"

/* Frames are assembled here and appended to the output in large pieces. */
struct frames {
    struct conn *c;
    size_t n;
    char buf[16384];
};

static void frames_flush(struct frames *f)
{
    if (f->n) {
        redis_add(f->c, evbuffer_add(f->c->out, f->buf, f->n));
        f->n = 0;
    }
}

static void frames_put(struct frames *f, const void *p, size_t len)
{
    if (f->n + len > sizeof f->buf) {
        frames_flush(f);
        if (len > sizeof f->buf) {
            redis_add(f->c, evbuffer_add(f->c->out, p, len));
            return;
        }
    }
    memcpy(f->buf + f->n, p, len);
    f->n += len;
}

static void frames_header(struct frames *f, char prefix, long long v)
{
    char h[RESP_HEADER_MAX];
    frames_put(f, h, resp_fmt_header(h, prefix, v));
}

static void frames_bulk(struct frames *f, const char *p, size_t len)
{
    frames_header(f, '$', (long long)len);
    frames_put(f, p, len);
    frames_put(f, "\r\n", 2);
}

static void release_entry(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    entry_unref(arg);
}

static void frames_payload(struct frames *f, struct entry *e)
{
    size_t len = e->payload_len;
    frames_header(f, '$', (long long)len);
    if (len < CONN_COPY_LIMIT) {
        frames_put(f, entry_payload(e), len);
    } else {
        frames_flush(f);
        entry_ref(e);
        if (evbuffer_add_reference(f->c->out, entry_payload(e), len, release_entry, e) < 0) {
            entry_unref(e);
            redis_st(f->c)->failed = true;
        }
    }
    frames_put(f, "\r\n", 2);
}

/* The frames of the last entries delivered, for the next subscribers of the
 * same entries: a fan-out formats each (entry, channel) once, not once per
 * subscriber.  Only small frames without a pattern (`message', `smessage').
 * Direct-mapped on the entry's publish number, two slots per entry, so the
 * last 2,048 entries published (a loop turn's, under load: the fanout
 * workload queues about a thousand a turn) do not evict each other.
 *
 * The key is the entry's seq, unique per engine (router.c), with its address,
 * the channel, the kind and the protocol.  Entries with seq 0 are not
 * cached: those made from a cluster retro answer (cluster_retro_answer.c)
 * all have it, and a freed one's block comes back from the pool for the next
 * at the same address (a stale frame: the review's test_redis_frames.c).
 * The cache is per process: unit tests that run engines one after another
 * could see a seq again at the same address (the engine has one). */
#define FRAME_CACHE_SLOTS 4096 /* a power of 2 */
#define FRAME_CACHE_MAX 160
struct frame_cached {
    const struct entry *e;
    uint64_t seq;
    const struct topic *t;
    const char *kind;
    uint8_t proto;
    uint8_t len;
    char b[FRAME_CACHE_MAX];
};
static struct frame_cached frame_cache[FRAME_CACHE_SLOTS];

static struct frame_cached *frame_slot(const struct entry *e, const struct topic *t)
{
    return &frame_cache[(e->seq * 2 + (((uintptr_t)t >> 4) & 1)) & (FRAME_CACHE_SLOTS - 1)];
}

static void frame_write(struct frames *f, const char *kind, size_t klen, const struct pattern *p,
                        const struct topic *t, struct entry *e);

/* One frame: kind, [pattern], channel, payload. */
static void frame(struct frames *f, const char *kind, size_t klen, const struct pattern *p,
                  const struct topic *t, struct entry *e)
{
    /* 4 headers (6 bytes at most for lengths below 1000), 3 CRLFs, the
     * kind, channel and payload. */
    if (p || e->seq == 0 || 4 * 6 + 6 + klen + t->len + e->payload_len > FRAME_CACHE_MAX) {
        frame_write(f, kind, klen, p, t, e);
        return;
    }
    uint8_t proto = (uint8_t)redis_st(f->c)->proto;
    struct frame_cached *x = frame_slot(e, t);
    if (x->e == e && x->seq == e->seq && x->t == t && x->kind == kind && x->proto == proto) {
        frames_put(f, x->b, x->len);
        return;
    }
    if (f->n + FRAME_CACHE_MAX > sizeof f->buf)
        frames_flush(f);
    size_t start = f->n;
    frame_write(f, kind, klen, p, t, e);
    x->e = e;
    x->seq = e->seq;
    x->t = t;
    x->kind = kind;
    x->proto = proto;
    x->len = (uint8_t)(f->n - start);
    memcpy(x->b, f->buf + start, x->len);
}

static void frame_write(struct frames *f, const char *kind, size_t klen, const struct pattern *p,
                        const struct topic *t, struct entry *e)
{
    frames_header(f, redis_st(f->c)->proto == 3 ? '>' : '*', p ? 4 : 3);
    frames_bulk(f, kind, klen);
    if (p) {
        size_t plen;
        const char *pn = pattern_name(p, &plen);
        frames_bulk(f, pn, plen);
    }
    frames_bulk(f, t->name, t->len);
    frames_payload(f, e);
}

static void format_item(struct frames *f, struct qitem *it)
{
    struct conn *c = f->c;
    struct entry *e = it->e;
    struct qitem_iter x;
    uint32_t i;
    for (qitem_iter_init(it, &x); qitem_iter_next(it, &x, &i);) {
        const struct topic *t = e->topics[i];
        if (t->ns == TOPIC_NS_SHARD) {
            frame(f, "smessage", 8, NULL, t, e);
            continue;
        }
        /* Without patterns every channel listed was subscribed when the
         * entry was queued, and still is: the queue is delivered before
         * each command (proto_redis.c), so no lookup. */
        if (c->sub.npatterns == 0 || subscriber_holds(&c->sub, t))
            frame(f, "message", 7, NULL, t, e);
        for (uint32_t k = 0; k < c->sub.npatterns; k++)
            if (pattern_matches(c->sub.patterns[k], t))
                frame(f, "pmessage", 8, c->sub.patterns[k], t, e);
    }
}

#define PREFETCH_AHEAD 4

void redis_deliver_queue(struct conn *c, bool all)
{
    struct queue *q = &c->sub.queue;
    if (q->count == 0 || conn_is_closing(c))
        return;
    /* One event loop, one delivery at a time: the frame buffer is shared. */
    static struct frames frames;
    struct frames *f = &frames;
    f->c = c;
    f->n = 0;
    uint64_t delivered = 0;
    int64_t now = clock_turn_ms();
    while (q->count && !redis_st(c)->failed) {
        if (!all && evbuffer_get_length(c->out) + f->n >= CONN_PUSH_HIGH)
            break;
        /* The entries are cold by now (the writes of other connections
         * came between): fetch the next few while this one is formatted. */
        if (q->count > PREFETCH_AHEAD)
            __builtin_prefetch(q->items[(q->head + PREFETCH_AHEAD) & (q->cap - 1)].e);
        entry_observe_wait(queue_front(q)->e, now);
        format_item(f, queue_front(q));
        queue_pop(q);
        delivered++;
    }
    frames_flush(f);
    c->eng->stats.messages_delivered += delivered;
}
