/* proto_kraken.c - Kraken's text protocol over one connection.
 *
 * process() frames requests with the pure parser (include/kraken/protocol.h),
 * executes them against the engine and appends replies to the connection's
 * output.  Every protocol error appends the error line and closes: only this
 * connection is affected.
 *
 * Push mode (an extension old clients never send): after
 * `set push 0 0 2\r\non\r\n` the connection's subscriber is marked `push`,
 * the router's `ready` hook arms a write when its queue becomes non-empty,
 * and deliver() writes exactly the `get messages` reply, unprompted, between
 * two replies.  `off` goes back to polling. */
#include "proto_kraken.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "cluster.h"
#include "engine.h"
#include "entry.h"
#include "kraken/protocol.h"
#include "log.h"

static const char ERR_NOMEM[] = "SERVER_ERROR out of memory\r\n";

struct kraken_state {
    uint64_t horizon_seq;        /* from `register`, valid when has_horizon */
    int64_t horizon_time;        /* its Unix second (for topics fetched upstream) */
    size_t need;                 /* bytes needed before parsing again (0: unknown) */
    bool has_horizon;
};

static struct kraken_state *st(struct conn *c)
{
    return conn_pstate(c);
}

/* Appends a reply; a reply that cannot be queued would desynchronise a
 * pipelining client, so the connection closes instead. */
static void reply(struct conn *c, const char *line)
{
    if (evbuffer_add(c->out, line, strlen(line)) < 0) {
        klog(LOG_ERROR, "client %" PRIu64 " (%s): out of memory for a reply, closing",
             c->sub.id, c->peer);
        c->state = CONN_CLOSING;
    }
}

/* In a cluster, a client's subscription to a topic of a core the view names
 * but that is not live here is refused whole: entries may enter the cluster
 * there, which this node cannot hear (docs/cluster.md, "Partitions").  Not
 * a peer's: its node decided in its own view. */
static bool subscribable(struct conn *c, long n)
{
    return !cluster_active() || c->sub.peer ||
           cluster_subscribable(c->eng->slices, (uint32_t)n);
}

static const char *do_subscribe(struct conn *c, const struct proto_request *req,
                                const char **error)
{
    struct engine *eng = c->eng;
    long n = engine_split_topics(eng, req->data, req->data_len);
    if (n < 0)
        return NULL;
    if (!subscribable(c, n))
        /* A child's link stays: it disconnects the holders of the batch's
         * topics (cluster_subref.c), not every client it has through here. */
        return c->sub.child ? CLUSTER_ERR_UNAVAILABLE : (*error = CLUSTER_ERR_UNAVAILABLE);
    if (st(c)->has_horizon) {
        st(c)->has_horizon = false;
        int rc = router_retro_subscribe(&eng->router, &c->sub, eng->slices, (uint32_t)n,
                                        ROUTER_BY_SEQ, (int64_t)st(c)->horizon_seq,
                                        st(c)->horizon_time);
        return rc < 0 ? NULL : rc ? PROTO_STORED : PROTO_NOT_FOUND;
    }
    for (long i = 0; i < n; i++)
        if (router_subscribe(&eng->router, &c->sub, eng->slices[i].p, eng->slices[i].len) < 0)
            return NULL;
    return PROTO_STORED;
}

static const char *do_retro(struct conn *c, const struct proto_request *req,
                            const char **error)
{
    int64_t horizon;
    struct proto_slice topics;
    if (proto_parse_retro(req->data, req->data_len, &horizon, &topics, error) < 0)
        return *error;
    long n = engine_split_topics(c->eng, topics.p, topics.len);
    if (n < 0)
        return NULL;
    if (!subscribable(c, n))
        return *error = CLUSTER_ERR_UNAVAILABLE;
    int rc = router_retro_subscribe(&c->eng->router, &c->sub, c->eng->slices, (uint32_t)n,
                                    ROUTER_BY_TIME, horizon, horizon);
    return rc < 0 ? NULL : rc ? PROTO_STORED : PROTO_NOT_FOUND;
}

static bool write_messages(struct conn *c);

/* `set link_retro` (an extension only cluster links send, docs/cluster.md):
 * retro_subscribe by time, with the entries in the reply instead of the
 * queue, so that the node asking knows exactly which entries answer it:
 *
 *   VALUE retro <second> <n>\r\n<entries of that second>END\r\n   (0 or more)
 *   STORED\r\n  or  NOT_FOUND\r\n
 *
 * each block as a `get messages` block (n: its length minus 2), listing
 * only the requested topics of each entry, in publish order; a second's
 * entries take several blocks when they pass max_request_bytes (the asking
 * node closes the link on a longer block).  What was queued for this
 * connection before the request is written first (a pushed block), so that
 * every entry published before it reaches the asking node before the
 * answer, and every one published after it comes after.
 *
 * Only a peer (`set peer`: the link of a member of the cluster) or a child
 * (`set child`: the link of a proxy below this node) may ask; anyone else
 * gets ERROR, as for an unknown command.  A peer is answered from this
 * node's retention.  A child may ask for topics this node holds upstream
 * only since after the horizon: their owners are asked (cluster_retro.c,
 * which relays the answer: the reply is held meanwhile, the blocks are
 * written before it).  An answer longer than max_client_queue_bytes is
 * NOT_FOUND (the asking client reloads): it is copied whole into the output
 * at once, so it must stay bounded. */
static int kraken_retro_blocks(struct engine *eng, struct evbuffer *out, const struct qitem *v,
                               size_t found)
{
    size_t total = 0, max_block = eng->cfg.max_request_bytes - 2;
    for (size_t i = 0; i < found && total <= eng->cfg.max_queue_bytes; i++)
        total += qitem_size(&v[i]) + 64; /* 64: its share of a block's header */
    if (total > eng->cfg.max_queue_bytes)
        return -2;
    for (size_t i = 0; i < found;) {
        size_t j = i;
        size_t block = 0;
        for (; j < found && v[j].e->time == v[i].e->time; j++) {
            size_t m = qitem_size(&v[j]);
            if (j > i && block + m > max_block)
                break;
            block += m;
        }
        if (evbuffer_add_printf(out, "VALUE retro %" PRId64 " %zu\r\n", v[i].e->time,
                                block - 2) < 0)
            return -1;
        for (; i < j; i++)
            if (qitem_write(out, &v[i], SIZE_MAX) < 0)
                return -1;
        if (evbuffer_add(out, "END\r\n", 5) < 0)
            return -1;
    }
    return 0;
}

/* The found entries of a link_retro (entered false) or link_entered
 * (true) as items (malloc'd; each to release), each listing its topics
 * whose mark is `mark' and (entered) at which it entered the cluster here
 * (entry.h).  NULL when out of memory. */
static struct qitem *answer_items(struct engine *eng, size_t found, uint64_t mark, bool entered)
{
    struct qitem *v = malloc((found ? found : 1) * sizeof *v);
    for (size_t j = 0; v && j < found; j++) {
        struct entry *e = eng->router.tmp_entries[j];
        qitem_init(&v[j], e);
        for (uint32_t i = 0; i < e->ntopics; i++)
            if (e->topics[i]->mark == mark && (!entered || entry_entered_at(e, i)) &&
                qitem_add_topic(&v[j], i) < 0) {
                for (size_t k = 0; k <= j; k++)
                    qitem_release(&v[k]);
                free(v);
                return NULL;
            }
    }
    return v;
}

static void release_items(struct qitem *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        qitem_release(&v[i]);
    free(v);
}

/* The answer to a link_retro (entered false) or link_entered (true): the
 * found entries as VALUE retro blocks, then STORED; NOT_FOUND when they
 * would not fit in max_client_queue_bytes. */
static const char *link_answer(struct conn *c, size_t found, uint64_t mark, bool entered)
{
    struct engine *eng = c->eng;
    struct qitem *v = answer_items(eng, found, mark, entered);
    int rc = v ? kraken_retro_blocks(eng, c->out, v, found) : -1;
    if (v)
        release_items(v, found);
    if (rc == -2) {
        klog(LOG_WARNING, "client %" PRIu64 " (%s): a %s answer is longer than "
             "max_client_queue_bytes (%zu); answering NOT_FOUND", c->sub.id, c->peer,
             entered ? "link_entered" : "link_retro", eng->cfg.max_queue_bytes);
        return PROTO_NOT_FOUND;
    }
    return rc < 0 ? NULL : PROTO_STORED;
}

/* proto_ops.retro_answer: a relayed answer (cluster_relay.c). */
static int kraken_retro_answer(struct conn *c, struct evbuffer *out, const struct qitem *v,
                               size_t n)
{
    return kraken_retro_blocks(c->eng, out, v, n);
}

static const char *do_link_retro(struct conn *c, const struct proto_request *req,
                                 const char **error)
{
    struct engine *eng = c->eng;
    if (!c->sub.peer && !c->sub.child)
        return "ERROR\r\n";
    int64_t horizon;
    struct proto_slice topics;
    if (proto_parse_retro(req->data, req->data_len, &horizon, &topics, error) < 0)
        return *error;
    long n = engine_split_topics(eng, topics.p, topics.len);
    if (n < 0)
        return NULL;
    if (c->sub.push && c->sub.queue.count && !write_messages(c))
        return NULL;
    uint64_t mark;
    long found = router_retro_fetch(&eng->router, &c->sub, eng->slices, (uint32_t)n, horizon,
                                    c->sub.child && cluster_active(), &mark);
    if (found == -2)
        return PROTO_NOT_FOUND;
    if (found < 0)
        return NULL;
    if (c->retro) {
        /* Some topics are fetched from their owners: the answer is relayed
         * when theirs are in, with these entries, each listing only the
         * topics answered here (cluster_relay.c). */
        struct qitem *v = answer_items(eng, (size_t)found, mark, false);
        if (!v || cluster_relay_begin(c, v, (size_t)found) < 0) {
            if (v)
                release_items(v, (size_t)found);
            return NULL;
        }
        return PROTO_STORED; /* held; NOT_FOUND if an owner refuses */
    }
    return link_answer(c, (size_t)found, mark, false);
}

/* `set link_entered` (docs/cluster.md, "Across moves"):
 *
 *   set link_entered 0 0 <n>\r\n<horizon second> <since second>\r\n<topics>\r\n
 *
 * answered as link_retro (VALUE retro blocks, then STORED or NOT_FOUND),
 * but with only the entries that entered the cluster at this node (entry.h,
 * `entered'), each listing only the requested topics at which it entered
 * here; the link is not subscribed (the node asking holds the topics at
 * their current owners).  The node asking sends it to each core that owned
 * the topics since the horizon, and takes the union: every entry entered
 * at exactly one of them.  `since': the earliest second at which, as the
 * node asking saw it, this node owned one of the topics since the horizon;
 * NOT_FOUND when this engine started after it (a restart lost what entered
 * at the one before; nothing entered here before this one started), or
 * when this node's retention lost entries of those topics after the
 * horizon.  Peers only. */
static const char *do_link_entered(struct conn *c, const struct proto_request *req)
{
    struct engine *eng = c->eng;
    if (!c->sub.peer)
        return "ERROR\r\n";
    /* <horizon> <since>\r\n<topics> */
    const char *d = req->data, *nl = memchr(d, '\n', req->data_len);
    const char *sp = nl ? memchr(d, ' ', (size_t)(nl - d)) : NULL;
    const char *eol = nl && nl > d && nl[-1] == '\r' ? nl - 1 : nl;
    uint64_t h, since;
    if (!sp || proto_parse_u64(d, (size_t)(sp - d), INT64_MAX, &h) < 0 ||
        proto_parse_u64(sp + 1, (size_t)(eol - sp - 1), INT64_MAX, &since) < 0)
        return "CLIENT_ERROR bad data chunk\r\n";
    struct proto_slice topics = {nl + 1, req->data_len - (size_t)(nl + 1 - d)};
    long n = engine_split_topics(eng, topics.p, topics.len);
    if (n < 0)
        return NULL;
    if (c->sub.push && c->sub.queue.count && !write_messages(c))
        return NULL;
    /* This engine started after it became an owner of one of the topics
     * (as the asking node saw it): what entered at the one before is gone
     * (a restart).  Else nothing entered here before it started. */
    if ((int64_t)since < eng->router.start_time)
        return PROTO_NOT_FOUND;
    uint64_t mark;
    long found = router_entered_fetch(&eng->router, &c->sub, eng->slices, (uint32_t)n,
                                      (int64_t)h, &mark);
    if (found == -2)
        return PROTO_NOT_FOUND;
    if (found < 0)
        return NULL;
    return link_answer(c, (size_t)found, mark, true);
}

static const char *do_unsubscribe(struct conn *c, const struct proto_request *req)
{
    const char *cur = req->data, *end = req->data + req->data_len;
    struct proto_slice t;
    while (proto_next_topic(&cur, end, &t))
        router_unsubscribe(&c->eng->router, &c->sub, t.p, t.len);
    return PROTO_STORED;
}

/* One name of a peer's `set link_*` subscription request (below) applied
 * to its subscriber: -1 on allocation failure. */
static int link_name(struct router *r, struct subscriber *s, enum proto_cmd cmd,
                     const struct proto_slice *t)
{
    switch (cmd) {
    case PROTO_SET_LINK_PSUBSCRIBE:
        return router_psubscribe(r, s, t->p, t->len);
    case PROTO_SET_LINK_PUNSUBSCRIBE:
        return router_punsubscribe(r, s, t->p, t->len);
    case PROTO_SET_LINK_SSUBSCRIBE:
        return router_subscribe_ns(r, s, TOPIC_NS_SHARD, t->p, t->len);
    default: /* PROTO_SET_LINK_SUNSUBSCRIBE */
        return router_unsubscribe_ns(r, s, TOPIC_NS_SHARD, t->p, t->len);
    }
}

/* `set link_psubscribe` / `set link_punsubscribe`: the Redis patterns a
 * peer's node's local clients hold, routed to the peer only for entries
 * that entered the cluster here (docs/cluster.md "Patterns",
 * cluster_pattern.c); `set link_ssubscribe` / `set link_sunsubscribe`: the
 * Redis shard channels they hold, here at their owner ("Shard channels",
 * cluster_shard.c).  Names space-separated.  Extensions only a peer sends:
 * anyone else gets ERROR, as for an unknown command. */
static const char *do_link_names(struct conn *c, const struct proto_request *req)
{
    if (!c->sub.peer)
        return "ERROR\r\n";
    const char *cur = req->data, *end = req->data + req->data_len;
    struct proto_slice t;
    while (proto_next_topic(&cur, end, &t))
        if (link_name(&c->eng->router, &c->sub, req->cmd, &t) < 0)
            return NULL;
    return PROTO_STORED;
}

static const char *do_push(struct conn *c, const struct proto_request *req)
{
    if (req->data_len == 2 && memcmp(req->data, "on", 2) == 0)
        c->sub.push = true;
    else if (req->data_len == 3 && memcmp(req->data, "off", 3) == 0)
        c->sub.push = false;
    else
        return NULL;
    return PROTO_STORED;
}

/* `set peer`: this connection is the link of another node of the cluster
 * (the data names it).  Its subscriptions are not a local client's: they
 * never make this node subscribe upstream, and what it is sent depends on
 * who published (router to_peers hook, cluster.c; docs/cluster.md, "Moves").
 * Only before its first subscription. */
static const char *do_peer(struct conn *c, const struct proto_request *req)
{
    if (c->sub.subs.count)
        return "CLIENT_ERROR set peer comes before any subscription\r\n";
    if (c->sub.child)
        return "CLIENT_ERROR a child is no peer\r\n";
    if (!c->sub.peer) {
        klog(LOG_INFO, "client %" PRIu64 " (%s) is the link of cluster node %.*s", c->sub.id,
             c->peer, (int)(req->data_len < 200 ? req->data_len : 200), req->data);
        if (cluster_peer_named(&c->sub, req->data, req->data_len) < 0)
            return NULL;
    }
    c->sub.peer = true;
    return PROTO_STORED;
}

/* `set child`: this connection is the link of a proxy below this node (the
 * data names it; docs/cluster.md, "A proxy below a proxy").  It is served
 * as any client (its subscriptions make this node subscribe upstream, its
 * publishes are forwarded), and may ask `link_retro`, relayed to the owners
 * of topics this node cannot answer for itself. */
static const char *do_child(struct conn *c, const struct proto_request *req)
{
    if (c->sub.peer)
        return "CLIENT_ERROR a peer is no child\r\n";
    if (!c->sub.child)
        klog(LOG_INFO, "client %" PRIu64 " (%s) is the link of proxy %.*s, below this node",
             c->sub.id, c->peer, (int)(req->data_len < 200 ? req->data_len : 200), req->data);
    c->sub.child = true;
    return PROTO_STORED;
}

/* Appends topic names to buf for a log line: at most `max` of them, each cut
 * at 64 bytes, bytes outside printable ASCII escaped as \xNN. */
static void format_topics(char *buf, size_t len, const struct proto_slice *topics, size_t n,
                          size_t max)
{
    size_t o = 0;
    for (size_t i = 0; i < n && i < max && o + 8 < len; i++) {
        if (i)
            buf[o++] = ' ';
        for (size_t j = 0; j < topics[i].len && j < 64 && o + 5 < len; j++) {
            unsigned char ch = (unsigned char)topics[i].p[j];
            if (ch >= 0x21 && ch < 0x7f && ch != '\\')
                buf[o++] = (char)ch;
            else
                o += (size_t)snprintf(buf + o, len - o, "\\x%02x", ch);
        }
    }
    if (n > max && o + 24 < len)
        o += (size_t)snprintf(buf + o, len - o, " ... %zu more", n - max);
    buf[o] = 0;
}

static void warn_publish(struct conn *c, size_t ntopics, uint32_t fanout,
                         const struct proto_slice *topics)
{
    const struct engine_config *cfg = &c->eng->cfg;
    if (ntopics < cfg->topics_warn && fanout < cfg->fanout_warn)
        return;
    char names[640];
    format_topics(names, sizeof names, topics, ntopics, 8);
    klog(LOG_WARNING,
         "publisher %" PRIu64 " (%s) published one entry to %zu topic%s [%s] "
         "reaching %u subscriber%s",
         c->sub.id, c->peer, ntopics, ntopics == 1 ? "" : "s", names, fanout,
         fanout == 1 ? "" : "s");
}

/* Parses the whole block first (into eng->entries), so a malformed publish
 * publishes nothing. */
static const char *do_publish(struct conn *c, const struct proto_request *req, int64_t now_s,
                              enum topic_ns ns, const char **error)
{
    struct engine *eng = c->eng;
    const char *cur = req->data, *end = req->data + req->data_len;
    size_t n = 0;
    int rc;
    for (;;) {
        if (n == eng->entries_cap) {
            size_t cap = eng->entries_cap ? eng->entries_cap * 2 : 16;
            struct proto_entry *e = realloc(eng->entries, cap * sizeof *e);
            if (!e)
                return NULL;
            eng->entries = e;
            eng->entries_cap = cap;
        }
        if ((rc = proto_next_entry(&cur, end, &eng->entries[n], error)) != 1)
            break;
        n++;
    }
    if (rc < 0)
        return *error;
    /* In a cluster, a client's block with an entry for a core that cannot be
     * reached now is refused whole, so that the error means "nothing of it
     * was published": the client may retry it (docs/cluster.md).  Not a
     * peer's (another node's link): its node checked reachability in its own
     * view, ours may differ for a moment (a core joined, our link to it
     * still connecting), and a refusal would make it close the link and
     * disconnect every holder there.  Its entries are routed here and
     * forwarded where links are up; the rest is counted as dropped
     * (cluster.c on_published). */
    for (size_t i = 0; i < n && cluster_active() && !c->sub.peer; i++) {
        const struct proto_entry *e = &eng->entries[i];
        long nt = engine_split_topics(eng, e->topics.p, e->topics.len);
        if (nt < 0)
            return NULL;
        if (!cluster_reachable(eng->slices, (uint32_t)nt))
            /* A child's link stays: it answers its publishers (cluster_link_refused). */
            return c->sub.child ? CLUSTER_ERR_UNAVAILABLE : (*error = CLUSTER_ERR_UNAVAILABLE);
    }
    for (size_t i = 0; i < n; i++) {
        const struct proto_entry *e = &eng->entries[i];
        long nt = engine_split_topics(eng, e->topics.p, e->topics.len);
        uint32_t fanout;
        struct router_publish_result res;
        if (nt < 0 || router_publish_ns(&eng->router, &c->sub, ns, eng->slices, (uint32_t)nt,
                                        e->payload.p, e->payload.len, now_s, &res) < 0)
            return NULL;
        fanout = res.fanout;
        warn_publish(c, (size_t)nt, fanout, eng->slices);
    }
    /* In a cluster, STORED waits for the remote owners (cluster_pub.c). */
    if (eng->router.cfg.published)
        cluster_publish_hold(c, req->noreply);
    return PROTO_STORED;
}

/* `set link_forward` / `set link_sforward` (docs/cluster.md, "Moves";
 * cluster_origin.c): a peer core's batch of entries it forwards for another
 * node (a peer of its own), a publish (channels; Redis shard channels)
 * whose data starts with a line naming the node they were published on:
 *
 *   set link_forward 0 0 <n>\r\n<origin node>\r\n<MESSAGE entries>\r\n
 *
 * routed as the peer's publish, but never to the origin's own link here
 * (its node had them at once).  Peers only: anyone else gets ERROR, as
 * for an unknown command. */
static const char *do_link_forward(struct conn *c, const struct proto_request *req,
                                   enum topic_ns ns, const char **error)
{
    if (!c->sub.peer)
        return "ERROR\r\n";
    const char *d = req->data, *nl = memchr(d, '\n', req->data_len);
    if (!nl || nl == d || nl[-1] != '\r' ||
        (nl - 1 > d && !cluster_name_travels(d, (size_t)(nl - 1 - d))))
        return *error = "CLIENT_ERROR bad data chunk\r\n";
    struct proto_request entries = *req;
    entries.data = nl + 1;
    entries.data_len = req->data_len - (size_t)(nl + 1 - d);
    cluster_origin_begin(&c->eng->router, d, (size_t)(nl - 1 - d));
    const char *r = do_publish(c, &entries, clock_turn_unix(), ns, error);
    cluster_origin_end(&c->eng->router);
    return r;
}

/* Writes the `get messages` reply for everything queued. */
static bool write_messages(struct conn *c)
{
    long n = queue_write(&c->sub.queue, c->out, CONN_COPY_LIMIT);
    if (n < 0)
        return false;
    c->eng->stats.messages_delivered += (uint64_t)n;
    return true;
}

/* Executes one request. Returns the reply line, NULL on allocation failure,
 * or "" when the reply was written already. Sets *close for errors and quit. */
static const char *execute(struct conn *c, const struct proto_request *req, int64_t now,
                           bool *close)
{
    const char *error = NULL;
    const char *r;
    switch (req->cmd) {
    case PROTO_SET_REGISTER:
        st(c)->has_horizon = true;
        st(c)->horizon_seq = c->eng->router.seq;
        st(c)->horizon_time = engine_unix_time();
        return PROTO_STORED;
    case PROTO_SET_SUBSCRIBE:
        r = do_subscribe(c, req, &error);
        break;
    case PROTO_SET_RETRO_SUBSCRIBE:
        r = do_retro(c, req, &error);
        break;
    case PROTO_SET_LINK_RETRO:
        r = do_link_retro(c, req, &error);
        break;
    case PROTO_SET_LINK_ENTERED:
        r = do_link_entered(c, req);
        break;
    case PROTO_SET_UNSUBSCRIBE:
        return do_unsubscribe(c, req);
    case PROTO_SET_LINK_PSUBSCRIBE:
    case PROTO_SET_LINK_PUNSUBSCRIBE:
    case PROTO_SET_LINK_SSUBSCRIBE:
    case PROTO_SET_LINK_SUNSUBSCRIBE:
        return do_link_names(c, req);
    case PROTO_SET_LINK_SPUBLISH:
        /* A peer's entries on Redis shard channels (cluster_shard.c). */
        if (!c->sub.peer)
            return "ERROR\r\n";
        r = do_publish(c, req, clock_turn_unix(), TOPIC_NS_SHARD, &error);
        break;
    case PROTO_SET_PUBLISH:
        r = do_publish(c, req, clock_turn_unix(), TOPIC_NS_CHANNEL, &error);
        break;
    case PROTO_SET_LINK_FORWARD:
    case PROTO_SET_LINK_SFORWARD:
        r = do_link_forward(c, req,
                            req->cmd == PROTO_SET_LINK_FORWARD ? TOPIC_NS_CHANNEL : TOPIC_NS_SHARD,
                            &error);
        break;
    case PROTO_SET_PUSH:
        if ((r = do_push(c, req)))
            return r;
        *close = true;
        return "CLIENT_ERROR push mode must be on or off\r\n";
    case PROTO_SET_PEER:
        return do_peer(c, req);
    case PROTO_SET_CHILD:
        return do_child(c, req);
    case PROTO_GET_MESSAGES:
        c->last_poll_ms = now;
        c->eng->stats.polls++;
        return write_messages(c) ? "" : NULL;
    case PROTO_QUIT:
        *close = true;
        return "";
    case PROTO_VERSION:
        /* A child (a proxy below) takes the answer as a barrier: every
         * entry routed to it before goes first, so that once it has the
         * answer nothing more comes of a topic it unsubscribed before
         * (docs/cluster.md, "Sticky parents"; cluster_pin.h). */
        if (c->sub.child && c->sub.push && c->sub.queue.count > 0 && !write_messages(c))
            return NULL;
        return "VERSION " KRAKEN_VERSION "\r\n";
    case PROTO_STATS: {
        struct stats_snapshot snap;
        engine_snapshot(c->eng, &snap);
        stats_write_text(&snap, c->out);
        return "";
    }
    default:
        return "ERROR\r\n";
    }
    if (r && r == error)
        *close = true;
    return r;
}

/* Sends an error line; the connection closes once it is flushed.  The log
 * line names the command that caused it: its first line, cut at 64 bytes,
 * bytes outside printable ASCII (and \\ and ") escaped as \\xNN. */
static void protocol_error(struct conn *c, const char *line, const char *req, size_t len)
{
    reply(c, line);
    c->eng->stats.disconnects_error++;
    char cmd[64 * 4 + 1];
    size_t o = 0;
    for (size_t i = 0; i < len && i < 64 && req[i] != '\r' && req[i] != '\n'; i++) {
        unsigned char ch = (unsigned char)req[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '"')
            cmd[o++] = (char)ch;
        else
            o += (size_t)snprintf(cmd + o, sizeof cmd - o, "\\x%02x", ch);
    }
    cmd[o] = 0;
    klog(LOG_INFO, "client %" PRIu64 " (%s): %.*s for \"%s\"; closing the connection",
         c->sub.id, c->peer, (int)strcspn(line, "\r"), line, cmd);
    c->state = CONN_CLOSING;
}

static enum conn_status kraken_process(struct conn *c)
{
    struct kraken_state *ks = st(c);
    struct evbuffer *in = c->in, *out = c->out;
    while (!conn_is_closing(c)) {
        if (evbuffer_get_length(out) > CONN_OUTPUT_HIGH || conn_blocked(c))
            return CONN_PAUSED;
        size_t avail = evbuffer_get_length(in);
        if (avail == 0 || ks->need > avail)
            return CONN_OK;
        size_t look = ks->need ? ks->need : (avail < PROTO_MAX_LINE + 1 ? avail : PROTO_MAX_LINE + 1);
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
        if (!buf) {
            reply(c, ERR_NOMEM);
            c->state = CONN_CLOSING;
            break;
        }
        struct proto_request req;
        size_t used;
        const char *error;
        enum proto_status ps =
            proto_parse_request(buf, look, c->eng->cfg.max_request_bytes, &req, &used, &error);
        if (ps == PROTO_NEED_MORE) {
            if (used > look) { /* size now known: wait for all of it, then pull it up once */
                ks->need = used;
                continue;
            }
            return CONN_OK;
        }
        ks->need = 0;
        if (ps == PROTO_ERROR) {
            protocol_error(c, error, buf, look);
            break;
        }
        if (conn_held(c) && req.cmd != PROTO_SET_PUBLISH) {
            /* Behind a held publish only publishes go on (pipelining); any
             * other request waits for the release (a retro_subscribe's
             * NOT_FOUND replaces its held reply, from held_from on). */
            ks->need = used;
            return CONN_PAUSED;
        }
        bool close = false;
        int64_t now = clock_turn_ms();
        const char *r = execute(c, &req, now, &close);
        c->eng->stats.requests++;
        c->requests++;
        c->last_request_ms = now;
        if (!r) {
            klog(LOG_ERROR, "client %" PRIu64 " (%s): out of memory, closing", c->sub.id,
                 c->peer);
            r = ERR_NOMEM;
            close = true;
        }
        if (close && *r) {
            protocol_error(c, r, buf, used); /* buf is valid until the drain */
            evbuffer_drain(in, used);
            break;
        }
        evbuffer_drain(in, used);
        if (conn_is_closing(c))
            break; /* failed while executing (e.g. its own queue overflowed): no reply */
        if (*r && !req.noreply)
            reply(c, r);
        if (close)
            c->state = CONN_CLOSING;
    }
    return CONN_CLOSE;
}

/* The held reply (STORED, from held_from on) becomes NOT_FOUND; nothing
 * when the request was noreply (no reply at all). */
static void kraken_retro_refused(struct conn *c)
{
    if (evbuffer_get_length(c->out) <= c->held_from)
        return;
    struct evbuffer *kept = evbuffer_new();
    if (!kept || evbuffer_remove_buffer(c->out, kept, c->held_from) < 0) {
        if (kept)
            evbuffer_free(kept);
        c->state = CONN_CLOSING; /* out of memory: a wrong reply is worse than none */
        return;
    }
    evbuffer_drain(c->out, evbuffer_get_length(c->out));
    evbuffer_add_buffer(c->out, kept);
    evbuffer_free(kept);
    reply(c, PROTO_NOT_FOUND);
}

static void kraken_release(struct conn *c)
{
    if (c->sub.peer)
        cluster_peer_gone(&c->sub);
}

static void kraken_deliver(struct conn *c)
{
    if (!c->sub.push || c->sub.queue.count == 0 || conn_is_closing(c) ||
        evbuffer_get_length(c->out) >= CONN_PUSH_HIGH)
        return;
    if (!write_messages(c)) {
        klog(LOG_ERROR, "client %" PRIu64 " (%s): out of memory pushing messages, closing",
             c->sub.id, c->peer);
        c->state = CONN_CLOSING;
    }
}

const struct proto_ops proto_kraken = {
    .name = "kraken",
    .log_name = "client",
    .kind = PROTO_KIND_KRAKEN,
    .state_size = sizeof(struct kraken_state),
    .release = kraken_release,
    .process = kraken_process,
    .deliver = kraken_deliver,
    .retro_refused = kraken_retro_refused,
    .retro_answer = kraken_retro_answer,
    .err_too_many_clients = PROTO_TOO_MANY_CLIENTS,
    .err_queue_limit = "SERVER_ERROR queue limit exceeded\r\n",
    .err_nomem = ERR_NOMEM,
};
