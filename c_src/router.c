/* router.c - subscriptions, routing and retention; see router.h.
 * Patterns are in router_pattern.c. */
#include "router.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "entry.h"
#include "router_internal.h"

/* Grows a scratch array to hold n elements of size sz (router_reserve's
 * slow path). */
int router_reserve_slow(void **arr, size_t *cap, size_t n, size_t sz)
{
    size_t c = *cap ? *cap : 16;
    while (c < n)
        c *= 2;
    void *p = realloc(*arr, c * sz);
    if (!p)
        return -1;
    *arr = p;
    *cap = c;
    return 0;
}

int router_init(struct router *r, const struct router_config *cfg, int64_t now)
{
    memset(r, 0, sizeof *r);
    r->cfg = *cfg;
    topic_index_init(&r->topics, cfg->num_shards);
    r->entries.topics = &r->topics;
    router_patterns_init(r);
    r->start_time = now;
    r->last_time = now;
    r->shards = calloc(cfg->num_shards, sizeof *r->shards);
    if (!r->shards)
        return -1;
    for (uint32_t i = 0; i < cfg->num_shards; i++)
        if (retain_init(&r->shards[i], cfg->retain_per_shard, cfg->retain_bytes_per_shard) < 0)
            return -1;
    return 0;
}

void router_free(struct router *r)
{
    for (uint32_t i = 0; i < r->cfg.num_shards && r->shards; i++)
        retain_free(&r->shards[i]);
    free(r->shards);
    /* Whatever is left has no subscribers (callers removed them) nor entries. */
    topic_index_free(&r->topics);
    router_patterns_free(r);
    free(r->tmp_topics);
    free(r->touched);
    free(r->tmp_entries);
    entry_pool_drain(&r->entries.pool);
}

struct topic *router_find_topic(const struct router *r, const char *name, size_t len)
{
    return topic_find(&r->topics, TOPIC_NS_CHANNEL, name, len);
}

void subscriber_init(struct subscriber *s, uint64_t id, void *owner)
{
    memset(s, 0, sizeof *s);
    s->id = id;
    s->owner = owner;
    subset_init(&s->subs);
    queue_init(&s->queue);
}

static int subscribe_topic(struct router *r, struct subscriber *s, struct topic *t)
{
    if (subset_find(&s->subs, t))
        return 0;
    if (t->nsubs == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 2;
        struct subscriber **subs = realloc(t->subs, cap * sizeof *subs);
        if (!subs)
            return -1;
        t->subs = subs;
        t->cap = cap;
    }
    if (subset_add(&s->subs, t, t->nsubs) < 0)
        return -1;
    t->subs[t->nsubs++] = s;
    r->stats.subscriptions++;
    if (s->peer)
        t->npeers++;
    else if (r->cfg.topic_hook && (t->nsubs - t->npeers == 1 || t->upstream_pending))
        r->cfg.topic_hook(t, s, true, r->cfg.cluster_arg);
    return 1;
}

int router_subscribe_ns(struct router *r, struct subscriber *s, enum topic_ns ns,
                        const char *name, size_t len)
{
    struct topic *t = topic_intern(&r->topics, ns, name, len);
    if (!t)
        return -1;
    int rc = subscribe_topic(r, s, t);
    if (rc < 0)
        topic_maybe_free(&r->topics, t);
    return rc;
}

/* Removes slot `slot` of topic t (swapping the last subscriber into it); the
 * caller removes t from the leaving subscriber's set. */
static void drop_slot(struct router *r, struct topic *t, uint32_t slot)
{
    bool peer = t->subs[slot]->peer;
    uint32_t last = --t->nsubs;
    if (peer)
        t->npeers--;
    if (slot != last) {
        struct subscriber *moved = t->subs[last];
        t->subs[slot] = moved;
        subset_find(&moved->subs, t)->slot = slot;
    }
    if (t->nsubs == 0) {
        free(t->subs);
        t->subs = NULL;
        t->cap = 0;
    } else if (t->cap > 8 && t->nsubs * 4 < t->cap) {
        struct subscriber **subs = realloc(t->subs, t->cap / 2 * sizeof *subs);
        if (subs) {
            t->subs = subs;
            t->cap /= 2;
        }
    }
    r->stats.subscriptions--;
    if (!peer && t->nsubs == t->npeers && r->cfg.topic_hook)
        r->cfg.topic_hook(t, NULL, false, r->cfg.cluster_arg);
}

int router_unsubscribe_ns(struct router *r, struct subscriber *s, enum topic_ns ns,
                          const char *name, size_t len)
{
    struct topic *t = topic_find(&r->topics, ns, name, len);
    struct subslot *ss = t ? subset_find(&s->subs, t) : NULL;
    if (!ss)
        return 0;
    drop_slot(r, t, ss->slot);
    subset_remove(&s->subs, t);
    topic_maybe_free(&r->topics, t);
    return 1;
}

void router_remove_subscriber(struct router *r, struct subscriber *s)
{
    for (uint32_t i = 0; i < s->subs.cap; i++) {
        struct topic *t = s->subs.v[i].topic;
        if (t) {
            drop_slot(r, t, s->subs.v[i].slot);
            topic_maybe_free(&r->topics, t);
        }
    }
    subset_free(&s->subs);
    router_punsubscribe_all(r, s);
    queue_clear(&s->queue);
}

/* A subscriber that cannot take more (queue bound, or no memory for its
 * queue) gets nothing more and is reported, once, to be disconnected: it
 * must not silently miss entries. */
void router_fail_subscriber(struct router *r, struct subscriber *s)
{
    if (s->overflowed)
        return;
    s->overflowed = true;
    if (r->cfg.overflow)
        r->cfg.overflow(s, r->cfg.cb_arg);
}

/* Finishes the queue item of the entry just routed to s, enforces the bound
 * and tells a push subscriber that it has something. */
void router_commit(struct router *r, struct subscriber *s)
{
    size_t before = s->queue.bytes;
    queue_commit_tail(&s->queue);
    r->stats.queued_bytes_total += s->queue.bytes - before;
    s->received++;
    r->stats.deliveries++;
    if (s->queue.bytes + s->unsent > r->cfg.max_queue_bytes)
        router_fail_subscriber(r, s);
    else if (s->push && s->queue.count == 1 && r->cfg.ready)
        r->cfg.ready(s, r->cfg.cb_arg);
}

/* Interns and dedupes topics into r->tmp_topics; returns the count or -1. */
static long intern_all(struct router *r, enum topic_ns ns, const struct proto_slice *topics,
                       uint32_t n)
{
    if (router_reserve((void **)&r->tmp_topics, &r->tmp_topics_cap, n, sizeof(struct topic *)) <
        0)
        return -1;
    uint64_t epoch = ++r->epoch;
    long k = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct topic *t = topic_intern(&r->topics, ns, topics[i].p, topics[i].len);
        if (!t) {
            for (long j = 0; j < k; j++)
                topic_maybe_free(&r->topics, r->tmp_topics[j]);
            return -1;
        }
        if (t->mark == epoch)
            continue;
        t->mark = epoch;
        r->tmp_topics[k++] = t;
    }
    return k;
}

int router_publish_ns(struct router *r, struct subscriber *publisher, enum topic_ns ns,
                      const struct proto_slice *topics, uint32_t ntopics, const char *payload,
                      size_t len, int64_t now, struct router_publish_result *res)
{
    res->fanout = 0;
    res->receivers = 0;
    long n = intern_all(r, ns, topics, ntopics);
    if (n <= 0)
        return n < 0 ? -1 : 0;
    struct entry *e = entry_new(&r->entries, r->tmp_topics, (uint32_t)n, payload, len);
    if (!e) {
        for (long j = 0; j < n; j++)
            topic_maybe_free(&r->topics, r->tmp_topics[j]);
        return -1;
    }
    e->seq = ++r->seq;
    if (now > r->last_time)
        r->last_time = now;
    e->time = r->last_time;
    /* The engine's own canary (TOPIC_NS_INTERNAL) is neither counted nor
     * retained, nor observed in the wait histogram. */
    bool internal = ns == TOPIC_NS_INTERNAL;
    e->publish_ms = internal ? -1 : clock_turn_ms();
    e->publisher = publisher ? publisher->id : 0;
    if (!internal) {
        r->stats.published++;
        r->stats.published_bytes += len;
    }

    size_t touched = 0;
    for (uint32_t i = 0; i < e->ntopics; i++) {
        struct topic *t = e->topics[i];
        /* -1: not asked yet */
        int peers = t->npeers && r->cfg.to_peers ? -1 : ROUTER_PEERS_ALL;
        for (uint32_t j = 0; j < t->nsubs; j++) {
            struct subscriber *s = t->subs[j];
            if (s == publisher || s->overflowed)
                continue;
            if (s->peer) { /* (skip: only around a forward, cluster_origin.c) */
                if (peers < 0)
                    peers = (int)r->cfg.to_peers(publisher, t, r->cfg.cluster_arg);
                if (peers == ROUTER_PEERS_NONE || s->skip ||
                    (peers == ROUTER_PEERS_ASK &&
                     !r->cfg.to_peer(publisher, t, s, r->cfg.cluster_arg)))
                    continue;
            }
            res->receivers++;
            router_route_to(r, s, e, i, &touched);
        }
    }
    if (r->npatterns && ns == TOPIC_NS_CHANNEL)
        res->receivers += router_route_patterns(r, publisher, e, &touched);
    for (size_t k = 0; k < touched; k++)
        router_commit(r, r->touched[k]);
    res->fanout = (uint32_t)touched;
    if (internal) {
        r->stats.deliveries -= touched;
        entry_unref(e);
        return 0;
    }

    /* Retain in each distinct shard of the entry's topics. */
    for (uint32_t i = 0; i < e->ntopics; i++) {
        struct retain *sh = &r->shards[e->topics[i]->shard];
        if (sh->count && retain_at(sh, sh->count - 1) == e)
            continue; /* this shard already took it */
        retain_push(sh, e);
    }
    if (r->cfg.published)
        r->cfg.published(publisher, ns, e, r->cfg.cluster_arg);
    entry_unref(e);
    return 0;
}

static int cmp_seq(const void *a, const void *b)
{
    uint64_t x = (*(struct entry *const *)a)->seq, y = (*(struct entry *const *)b)->seq;
    return x < y ? -1 : x > y;
}

/* Queues e for s listing the entry's topics that s holds, except those
 * marked `skip` (topics whose entries come from upstream). */
static int enqueue_held(struct router *r, struct subscriber *s, struct entry *e, uint64_t skip)
{
    struct qitem *it = queue_push(&s->queue, e);
    if (!it)
        return -1;
    for (uint32_t i = 0; i < e->ntopics; i++)
        if (e->topics[i]->mark != skip && subset_find(&s->subs, e->topics[i]) &&
            qitem_add_topic(it, i) < 0)
            router_fail_subscriber(r, s);
    router_commit(r, s);
    return 0;
}

int router_enqueue_marked(struct router *r, struct subscriber *s, struct entry *e,
                          uint64_t mark)
{
    struct qitem *it = queue_push(&s->queue, e);
    if (!it) {
        router_fail_subscriber(r, s);
        return -1;
    }
    for (uint32_t i = 0; i < e->ntopics; i++)
        if (e->topics[i]->mark == mark && qitem_add_topic(it, i) < 0)
            router_fail_subscriber(r, s);
    router_commit(r, s);
    return 0;
}

/* The retroactive part shared by router_retro_subscribe and
 * router_retro_fetch: subscribes, classifies the topics (the cluster's
 * hook), hands those fetched upstream to retro_defer, and collects the
 * matching local entries into r->tmp_entries (sorted by seq).  Returns the
 * count, -2 when too old, -1 on allocation failure; *tmark is the mark of
 * the topics answered here, *dmark that of the deferred ones. */
static long retro_collect(struct router *r, struct subscriber *s,
                          const struct proto_slice *topics, uint32_t ntopics,
                          enum router_horizon kind, int64_t h, int64_t h_time, bool fetch,
                          uint64_t *tmark, uint64_t *dmark)
{
    long n = intern_all(r, TOPIC_NS_CHANNEL, topics, ntopics);
    if (n < 0)
        return -1;
    *tmark = r->epoch; /* intern_all marked the requested topics with it */
    /* src: where each topic's entries come from; held: whether s held it
     * already (for retro_defer). */
    uint8_t srcs[64], *src = srcs;
    bool helds[64], *held = helds;
    if (n > 64 && (!(src = malloc((size_t)n)) || !(held = malloc((size_t)n * sizeof *held)))) {
        if (src != srcs)
            free(src);
        for (long j = 0; j < n; j++)
            topic_maybe_free(&r->topics, r->tmp_topics[j]);
        return -1;
    }
    for (long i = 0; i < n; i++) {
        struct topic *t = r->tmp_topics[i];
        int rc = subscribe_topic(r, s, t);
        if (rc < 0) {
            for (long j = i; j < n; j++)
                topic_maybe_free(&r->topics, r->tmp_topics[j]);
            if (src != srcs) {
                free(src);
                free(held);
            }
            return -1;
        }
        held[i] = rc == 0;
    }
    /* Deferred topics move to the end of tmp_topics and take a mark of
     * their own. */
    memset(src, ROUTER_RETRO_LOCAL, (size_t)n);
    if (r->cfg.retro_classify)
        r->cfg.retro_classify(r->tmp_topics, (uint32_t)n, (int)kind, h, src,
                              r->cfg.cluster_arg);
    *dmark = ++r->epoch;
    bool too_old = n == 0 && kind == ROUTER_BY_TIME && h < r->start_time;
    long nlocal = 0;
    for (long i = 0; i < n; i++) {
        struct topic *t = r->tmp_topics[i];
        if (fetch && src[i] == ROUTER_RETRO_UPSTREAM)
            src[i] = ROUTER_RETRO_TOO_OLD;
        if (src[i] == ROUTER_RETRO_TOO_OLD) {
            too_old = true;
        } else if (src[i] == ROUTER_RETRO_UPSTREAM) {
            t->mark = *dmark;
        } else {
            const struct retain *sh = &r->shards[t->shard];
            if (kind == ROUTER_BY_SEQ ? sh->dropped_seq > (uint64_t)h
                                      : sh->dropped_time > h || h < r->start_time)
                too_old = true;
            nlocal++;
        }
    }
    if (!too_old && nlocal < n) {
        /* Partition: the local topics first, the deferred ones after. */
        long k = 0;
        for (long i = 0; i < n; i++)
            if (r->tmp_topics[i]->mark == *tmark) {
                struct topic *x = r->tmp_topics[k];
                bool hx = held[k];
                r->tmp_topics[k] = r->tmp_topics[i];
                held[k++] = held[i];
                r->tmp_topics[i] = x;
                held[i] = hx;
            }
        too_old = !r->cfg.retro_defer ||
                  !r->cfg.retro_defer(s, r->tmp_topics + nlocal, held + nlocal,
                                      (uint32_t)(n - nlocal), (int)kind, h, h_time,
                                      r->cfg.cluster_arg);
    }
    if (src != srcs) {
        free(src);
        free(held);
    }
    if (too_old)
        return -2;

    /* Collect matching entries from each shard involved (each shard once, each entry once). */
    uint64_t emark = ++r->epoch;
    size_t found = 0;
    for (long i = 0; i < nlocal; i++) {
        struct retain *sh = &r->shards[r->tmp_topics[i]->shard];
        if (sh->mark == emark)
            continue; /* scanned already for an earlier topic */
        sh->mark = emark;
        uint32_t k = kind == ROUTER_BY_SEQ ? retain_first_after_seq(sh, (uint64_t)h)
                                           : retain_first_after_time(sh, h);
        for (; k < sh->count; k++) {
            struct entry *e = retain_at(sh, k);
            if (e->mark == emark)
                continue; /* already examined through another shard */
            e->mark = emark;
            bool match = false;
            for (uint32_t j = 0; j < e->ntopics && !match; j++)
                match = e->topics[j]->mark == *tmark;
            if (!match || e->publisher == s->id)
                continue;
            if (router_reserve((void **)&r->tmp_entries, &r->tmp_entries_cap, found + 1,
                               sizeof *r->tmp_entries) < 0)
                return -1;
            r->tmp_entries[found++] = e;
        }
    }
    if (found > 1)
        qsort(r->tmp_entries, found, sizeof *r->tmp_entries, cmp_seq);
    return (long)found;
}

int router_retro_subscribe(struct router *r, struct subscriber *s,
                           const struct proto_slice *topics, uint32_t ntopics,
                           enum router_horizon kind, int64_t h, int64_t h_time)
{
    uint64_t tmark, dmark;
    long found = retro_collect(r, s, topics, ntopics, kind, h, h_time, false, &tmark, &dmark);
    if (found < 0)
        return found == -2 ? 0 : -1;
    for (long i = 0; i < found && !s->overflowed; i++)
        if (enqueue_held(r, s, r->tmp_entries[i], dmark) < 0)
            return -1;
    return 1;
}

long router_retro_fetch(struct router *r, struct subscriber *s,
                        const struct proto_slice *topics, uint32_t ntopics, int64_t h,
                        bool defer, uint64_t *tmark)
{
    uint64_t dmark;
    return retro_collect(r, s, topics, ntopics, ROUTER_BY_TIME, h, h, !defer, tmark, &dmark);
}

long router_entered_fetch(struct router *r, const struct subscriber *s,
                          const struct proto_slice *topics, uint32_t ntopics, int64_t h,
                          uint64_t *tmark)
{
    long n = intern_all(r, TOPIC_NS_CHANNEL, topics, ntopics);
    if (n < 0)
        return -1;
    *tmark = r->epoch; /* intern_all marked the requested topics with it */
    bool too_old = false, nomem = false;
    for (long i = 0; i < n; i++)
        too_old |= r->shards[r->tmp_topics[i]->shard].dropped_time > h;
    uint64_t emark = ++r->epoch;
    size_t found = 0;
    for (long i = 0; i < n && !too_old; i++) {
        struct retain *sh = &r->shards[r->tmp_topics[i]->shard];
        if (sh->mark == emark)
            continue;
        sh->mark = emark;
        for (uint32_t k = retain_first_after_time(sh, h); k < sh->count; k++) {
            struct entry *e = retain_at(sh, k);
            if (e->mark == emark)
                continue;
            e->mark = emark;
            bool match = false;
            for (uint32_t j = 0; j < e->ntopics && !match; j++)
                match = e->topics[j]->mark == *tmark && entry_entered_at(e, j);
            if (!match || e->publisher == s->id)
                continue;
            if (router_reserve((void **)&r->tmp_entries, &r->tmp_entries_cap, found + 1,
                               sizeof *r->tmp_entries) < 0) {
                nomem = too_old = true;
                break;
            }
            r->tmp_entries[found++] = e;
        }
    }
    /* Topics nobody holds go again (those the entries list keep a reference). */
    for (long i = 0; i < n; i++)
        topic_maybe_free(&r->topics, r->tmp_topics[i]);
    if (nomem)
        return -1;
    if (too_old)
        return -2;
    if (found > 1)
        qsort(r->tmp_entries, found, sizeof *r->tmp_entries, cmp_seq);
    return (long)found;
}

uint64_t router_retained_entries(const struct router *r)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < r->cfg.num_shards; i++)
        n += r->shards[i].count;
    return n;
}

int64_t router_shard_horizon(const struct router *r, uint32_t i)
{
    const struct retain *sh = &r->shards[i];
    return sh->dropped_time > r->start_time ? sh->dropped_time : r->start_time;
}

uint64_t router_retained_bytes(const struct router *r)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < r->cfg.num_shards; i++)
        n += r->shards[i].bytes;
    return n;
}

void subscriber_foreach_topic(const struct subscriber *s,
                              void (*fn)(const struct topic *t, void *arg), void *arg)
{
    for (uint32_t i = 0; i < s->subs.cap; i++)
        if (s->subs.v[i].topic)
            fn(s->subs.v[i].topic, arg);
}

size_t router_trim_retention(struct router *r, size_t bytes)
{
    size_t freed = 0;
    while (freed < bytes) {
        struct retain *oldest = NULL;
        for (uint32_t i = 0; i < r->cfg.num_shards; i++) {
            struct retain *sh = &r->shards[i];
            if (sh->count && (!oldest || retain_at(sh, 0)->seq < retain_at(oldest, 0)->seq))
                oldest = sh;
        }
        if (!oldest)
            break;
        freed += retain_drop_oldest(oldest);
    }
    return freed;
}
