/* proto_kraken_link.c - the requests of Kraken's protocol that only cluster
 * links send (docs/cluster.md; docs/protocol.md, "Cluster links"): a link
 * naming itself (`set peer`: another member's; `set child`: a proxy's
 * below this node), retroactive fetches answered inline (`link_retro`,
 * `link_entered`), a peer's Redis patterns and shard channels
 * (`link_psubscribe`, `link_ssubscribe` and their opposites), and a peer
 * core's forwards naming their origin (`link_forward`, `link_sforward`).
 * Each is refused with ERROR, as an unknown command, to a connection that
 * is not the kind of link allowed to send it.  Part of proto_kraken
 * (proto_kraken_internal.h). */
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cluster.h"
#include "engine.h"
#include "entry.h"
#include "kraken/protocol.h"
#include "log.h"
#include "proto_kraken_internal.h"

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

int kraken_retro_answer(struct conn *c, struct evbuffer *out, const struct qitem *v, size_t n)
{
    return kraken_retro_blocks(c->eng, out, v, n);
}

const char *kraken_link_retro(struct conn *c, const struct proto_request *req,
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
    if (c->sub.push && c->sub.queue.count && !kraken_write_messages(c))
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
const char *kraken_link_entered(struct conn *c, const struct proto_request *req)
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
    if (c->sub.push && c->sub.queue.count && !kraken_write_messages(c))
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
 * cluster_pattern.c), or those of a child's (a proxy below), held for it
 * as for a client; `set link_ssubscribe` / `set link_sunsubscribe`: the
 * Redis shard channels a peer's node's clients hold, here at their owner
 * ("Shard channels", cluster_shard.c), or a child's, held for it as for a
 * client.  Names space-separated.  Extensions only a peer or a child
 * sends: anyone else gets ERROR, as for an unknown command. */
const char *kraken_link_names(struct conn *c, const struct proto_request *req)
{
    if (!c->sub.peer && !c->sub.child)
        return "ERROR\r\n";
    /* A child's patterns and shard channels are held here as a client's
     * (patterns at every core, a shard channel at its owner), the reply
     * waiting for them; refused whole (its link stays) when a core they
     * depend on is one the view names but that is not live here. */
    if (c->sub.child && req->cmd == PROTO_SET_LINK_PSUBSCRIBE && !cluster_pattern_subscribable())
        return CLUSTER_ERR_UNAVAILABLE;
    if (c->sub.child && req->cmd == PROTO_SET_LINK_SSUBSCRIBE) {
        long n = engine_split_topics(c->eng, req->data, req->data_len);
        if (n < 0)
            return NULL;
        if (!cluster_subscribable(c->eng->slices, (uint32_t)n))
            return CLUSTER_ERR_UNAVAILABLE;
    }
    const char *cur = req->data, *end = req->data + req->data_len;
    struct proto_slice t;
    while (proto_next_topic(&cur, end, &t))
        if (link_name(&c->eng->router, &c->sub, req->cmd, &t) < 0)
            return NULL;
    return PROTO_STORED;
}

/* `set peer`: this connection is the link of another node of the cluster
 * (the data names it).  Its subscriptions are not a local client's: they
 * never make this node subscribe upstream, and what it is sent depends on
 * who published (router to_peers hook, cluster.c; docs/cluster.md, "Moves").
 * Only before its first subscription. */
const char *kraken_peer(struct conn *c, const struct proto_request *req)
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
const char *kraken_child(struct conn *c, const struct proto_request *req)
{
    if (c->sub.peer)
        return "CLIENT_ERROR a peer is no child\r\n";
    if (!c->sub.child)
        klog(LOG_INFO, "client %" PRIu64 " (%s) is the link of proxy %.*s, below this node",
             c->sub.id, c->peer, (int)(req->data_len < 200 ? req->data_len : 200), req->data);
    c->sub.child = true;
    return PROTO_STORED;
}

/* `set link_forward` / `set link_sforward` (docs/cluster.md, "Moves";
 * cluster_origin.c): a peer core's batch of entries it forwards for other
 * nodes, a publish (channels; Redis shard channels) whose data starts with
 * a line naming the nodes that have them already, space-separated:
 *
 *   set link_forward 0 0 <n>\r\n<origin> [<node> ...]\r\n<MESSAGE entries>\r\n
 *
 * routed as the peer's publish, but never to those nodes' links here.
 * Peers only: anyone else gets ERROR, as for an unknown command. */
const char *kraken_link_forward(struct conn *c, const struct proto_request *req,
                                enum topic_ns ns, const char **error)
{
    if (!c->sub.peer)
        return "ERROR\r\n";
    const char *d = req->data, *nl = memchr(d, '\n', req->data_len);
    if (!nl || nl == d || nl[-1] != '\r' || memchr(d, '\r', (size_t)(nl - 1 - d)))
        return *error = "CLIENT_ERROR bad data chunk\r\n";
    struct proto_request entries = *req;
    entries.data = nl + 1;
    entries.data_len = req->data_len - (size_t)(nl + 1 - d);
    cluster_origin_begin(&c->sub, d, (size_t)(nl - 1 - d));
    const char *r = kraken_publish(c, &entries, clock_turn_unix(), ns, error);
    cluster_origin_end();
    return r;
}
