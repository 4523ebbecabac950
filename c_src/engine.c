/* engine.c - the engine's shared state; see engine.h. */
#include "engine.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

int64_t engine_now_ms(void)
{
    return clock_mono_ms();
}

int64_t engine_unix_time(void)
{
    return clock_unix();
}

int engine_init(struct engine *eng, const struct engine_config *cfg,
                void (*overflow)(struct subscriber *, void *),
                void (*ready)(struct subscriber *, void *), void *cb_arg)
{
    memset(eng, 0, sizeof *eng);
    eng->cfg = *cfg;
    eng->started_ms = engine_now_ms();
    eng->http_port = -1;
    eng->redis_port = -1;
    struct router_config rc = {
        .num_shards = cfg->num_shards,
        .retain_per_shard = cfg->retain_per_shard,
        .retain_bytes_per_shard = cfg->retain_bytes_per_shard,
        .max_queue_bytes = cfg->max_queue_bytes,
        .overflow = overflow,
        .ready = ready,
        .cb_arg = cb_arg,
    };
    return router_init(&eng->router, &rc, engine_unix_time());
}

void engine_free(struct engine *eng)
{
    router_free(&eng->router);
    free(eng->slices);
    free(eng->entries);
    eng->slices = NULL;
    eng->entries = NULL;
}

void engine_add_conn(struct engine *eng, struct conn *c)
{
    c->older = eng->newest;
    c->newer = NULL;
    if (eng->newest)
        eng->newest->newer = c;
    else
        eng->oldest = c;
    eng->newest = c;
    eng->nconns++;
    eng->nconns_by_kind[c->ops->kind]++;
}

static void unlink_conn(struct engine *eng, struct conn *c)
{
    if (c->older)
        c->older->newer = c->newer;
    else
        eng->oldest = c->newer;
    if (c->newer)
        c->newer->older = c->older;
    else
        eng->newest = c->older;
    c->older = c->newer = NULL;
}

void engine_remove_conn(struct engine *eng, struct conn *c)
{
    unlink_conn(eng, c);
    eng->nconns--;
    eng->nconns_by_kind[c->ops->kind]--;
}

void engine_touch_conn(struct engine *eng, struct conn *c)
{
    if (c == eng->newest)
        return;
    unlink_conn(eng, c);
    c->older = eng->newest;
    eng->newest->newer = c;
    eng->newest = c;
}

struct conn *engine_find_conn(const struct engine *eng, uint64_t id)
{
    for (struct conn *c = eng->oldest; c; c = c->newer)
        if (c->sub.id == id)
            return c;
    return NULL;
}

int engine_reserve_slices(struct engine *eng, size_t n)
{
    if (n <= eng->slices_cap)
        return 0;
    size_t cap = eng->slices_cap ? eng->slices_cap : 64;
    while (cap < n)
        cap *= 2;
    struct proto_slice *sl = realloc(eng->slices, cap * sizeof *sl);
    if (!sl)
        return -1;
    eng->slices = sl;
    eng->slices_cap = cap;
    return 0;
}

long engine_split_topics(struct engine *eng, const char *p, size_t len)
{
    const char *cur = p, *end = p + len;
    struct proto_slice t;
    size_t n = 0;
    while (proto_next_topic(&cur, end, &t)) {
        if (engine_reserve_slices(eng, n + 1) < 0)
            return -1;
        eng->slices[n++] = t;
    }
    return (long)n;
}

void engine_snapshot(const struct engine *eng, struct stats_snapshot *s)
{
    const struct router *r = &eng->router;
    memset(s, 0, sizeof *s);
    /* Links between cluster nodes are no clients: this node's own links
     * upstream (PROTO_KIND_LINK), and those of other nodes that said `set
     * peer' or `set child' on the Kraken port. */
    uint64_t links_out = 0, links_in = 0;
    for (const struct conn *c = eng->oldest; c; c = c->newer) {
        if (conn_is_uplink(c))
            links_out++;
        else if (c->sub.peer || c->sub.child)
            links_in++;
        s->queued_bytes += c->sub.queue.bytes;
        s->queued_messages += c->sub.queue.count;
        s->memory_counted_bytes += conn_counted_bytes(c);
        if (c->sub.queue.bytes + c->sub.unsent > s->largest_queue_bytes)
            s->largest_queue_bytes = c->sub.queue.bytes + c->sub.unsent;
    }
    s->pid = (int64_t)getpid();
    s->uptime = (engine_now_ms() - eng->started_ms) / 1000;
    s->time = engine_unix_time();
    s->version = KRAKEN_VERSION;
    s->curr_connections = eng->nconns - links_out - links_in;
    s->curr_connections_kraken = eng->nconns_by_kind[PROTO_KIND_KRAKEN] - links_in;
    s->cluster_links = links_out + links_in;
    s->curr_connections_redis = eng->nconns_by_kind[PROTO_KIND_REDIS];
    s->total_connections = eng->stats.total_connections;
    s->rejected_connections = eng->stats.rejected_connections;
    s->topics = topic_index_count(&r->topics);
    s->subscriptions = r->stats.subscriptions;
    s->pattern_subscriptions = r->stats.pattern_subscriptions;
    s->messages_published = r->stats.published;
    s->messages_queued = r->stats.deliveries;
    s->messages_delivered = eng->stats.messages_delivered;
    s->retained_messages = router_retained_entries(r);
    s->retained_bytes = router_retained_bytes(r);
    s->disconnects_queue_overflow = eng->stats.disconnects_overflow;
    s->disconnects_idle = eng->stats.disconnects_idle;
    s->disconnects_error = eng->stats.disconnects_error;
    s->log_events_dropped = log_events_dropped;
    s->requests = eng->stats.requests;
    s->disconnects_memory_budget = eng->stats.disconnects_memory;
    s->disconnects_cluster = eng->stats.disconnects_cluster;
    s->retention_trimmed_bytes = eng->stats.retention_trimmed_bytes;
    s->memory_counted_bytes += s->retained_bytes;
    s->bytes_published = r->stats.published_bytes;
    s->polls = eng->stats.polls;
    s->engine_restarts = eng->cfg.engine_restarts;
    s->http_port = eng->http_port;
    s->redis_port = eng->redis_port;
}
