/* cluster_move.c - what lets topics move between cores with nothing lost
 * and nothing delivered twice (docs/cluster.md, "Moves"):
 *
 *   - two owner sets: `cur`, where this node publishes, and `alt`, the other
 *     set of a move in progress (the next owners while it prepares, the
 *     previous ones once it switched); a topic with local subscribers is
 *     subscribed upstream at its owner under each (once when they agree);
 *   - the peer rules (router to_peers hook): each entry enters exactly one
 *     core, which alone delivers it to the other nodes' links (its peers).
 *     An entry from a peer goes to every subscriber here (and is forwarded
 *     only if this core owns its topic under neither set: views that differ
 *     after a failure, cluster_upstream.c; the forward names the nodes
 *     that have it already, whose links the owner leaves out,
 *     cluster_origin.c);
 *     one pushed by a core on our own link goes
 *     to local clients only; one of a local client goes to the peers only
 *     when its topic is ours under `cur` (else it is forwarded to that
 *     owner, cluster.c);
 *   - a topic that stops being served here only (a move's prepare) while
 *     held here keeps, as its upstream subscription's moment, the moment
 *     this node's retention of it was complete from (cluster_served.c), so
 *     that the old owner still answers retroactive subscriptions from its
 *     retention; one that becomes ours while held upstream (confirmed, the
 *     old owner live) is noted there likewise;
 *   - the sync barrier: after a configuration, a `version` on every link,
 *     behind the subscription changes and the entries already forwarded;
 *     when all are answered the cores have applied them (cluster_synced),
 *     which is what kraken_cluster waits for between the phases of a move.
 */
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"
#include "engine.h"
#include "log.h"

int cluster_set_build(struct owner_set *s, struct cluster_core **cores, const bool *pick,
                      size_t n)
{
    /* No pick, no owner: a node on the minority side, or one that hears of
     * its view's owners only through others, owns nothing (kraken_cluster
     * sends every live core as an owner when there is no view). */
    s->n = 0;
    s->hn = calloc(n + 1, sizeof *s->hn);
    s->core = calloc(n + 1, sizeof *s->core);
    if (!s->hn || !s->core) {
        cluster_set_free(s);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!pick[i])
            continue;
        s->hn[s->n] = (struct cluster_hash_node){
            cores[i]->name, cores[i]->len, cluster_name_hash(cores[i]->name, cores[i]->len)};
        s->core[s->n++] = i;
    }
    return 0;
}

void cluster_set_free(struct owner_set *s)
{
    free(s->hn);
    free(s->core);
    *s = (struct owner_set){NULL, NULL, 0};
}

int cluster_owner_in(const struct owner_set *s, uint64_t name_hash)
{
    return s->n ? (int)s->core[cluster_owner(s->hn, s->n, name_hash)] : -1;
}

/* The owner under s (a set over cores) when it is another core. */
static struct cluster_core *remote(const struct owner_set *s, struct cluster_core **cores,
                                   uint64_t h)
{
    int k = cluster_owner_in(s, h);
    return k >= 0 && !cores[k]->self ? cores[k] : NULL;
}

struct cluster_core *cluster_remote_in(const struct owner_set *s, const char *name, size_t len)
{
    return remote(s, cl.cores, cluster_name_hash(name, len));
}

struct cluster_core *cluster_upstream_named(enum topic_ns ns, const char *name, size_t len)
{
    uint64_t h = cluster_name_hash(name, len);
    const struct topic *t =
        cl.sticky ? topic_find(&cl.net.eng->router.topics, ns, name, len) : NULL;
    int k = cluster_owner_of(t, h);
    return k >= 0 && !cl.cores[k]->self ? cl.cores[k] : NULL;
}

/* Whether core k (an index, or -1) takes topics of namespace ns: a shard
 * channel whose name hashes to a static upstream is served here. */
static bool takes(int k, enum topic_ns ns)
{
    return k >= 0 && (size_t)k < cl.n &&
           (cl.cores[k]->self || cluster_core_for_ns(cl.cores[k], ns) != NULL);
}

bool cluster_depends(const struct topic *t, int kidx)
{
    enum topic_ns ns = (enum topic_ns)t->ns;
    if (!cluster_ns_travels(ns))
        return false;
    uint64_t h = topic_fnv(t);
    if (kidx == CLUSTER_ANY_CORE) /* any owner at all: a channel always has one */
        return ns == TOPIC_NS_CHANNEL || takes(cluster_owner_of(t, h), ns) ||
               (!cl.sticky && takes(cluster_owner_in(&cl.alt, h), ns));
    if (kidx >= 0 && !takes(kidx, ns))
        return false; /* served here (a shard channel a static upstream would own) */
    if (cl.sticky)
        return kidx >= 0 && cluster_owner_of(t, h) == kidx; /* (alt is cur below parents) */
    return kidx >= 0 && (cluster_owner_in(&cl.cur, h) == kidx || cluster_owner_in(&cl.alt, h) == kidx);
}

struct old_sets {
    const struct owner_set *cur, *alt;
    struct cluster_core **cores;
    uint64_t jumped; /* the mark of topics served here that went elsewhere at once */
    uint64_t moved; /* below parents: mark of held topics moved between two live upstreams */
    int to;         /* the parent one of them moved to */
};

/* Whether t (name hash h) is owned here under s (a set over cores). */
static bool owned(const struct owner_set *s, struct cluster_core **cores, uint64_t h)
{
    int k = cluster_owner_in(s, h);
    return k >= 0 && cores[k]->self;
}

/* Whether k is still a live core (kept by the configuration just applied). */
static bool live(const struct cluster_core *k)
{
    for (size_t i = 0; i < cl.n; i++)
        if (cl.cores[i] == k)
            return true;
    return false;
}

static bool in2(struct cluster_core *k, struct cluster_core *const two[2])
{
    return k == two[0] || k == two[1];
}

/* Pins t to parent p (NULL: it goes by the hash).  Out of memory, it goes
 * by the hash all the same (a duplicate is possible, cluster_pin.h). */
static void set_pin(struct topic *t, struct cluster_core *p)
{
    if (!p && !t->up)
        return;
    struct topic_upstream *u = topic_upstream(t);
    if (u)
        u->pin = p;
    else
        klog(LOG_WARNING, "cluster: out of memory pinning topic %.*s to its parent",
             (int)(t->len > 200 ? 200 : t->len), t->name);
}

static int move_topic(const struct topic *ct, void *arg)
{
    struct old_sets *o = arg;
    if (ct->nsubs == ct->npeers)
        return 0; /* only peers hold it: nothing upstream */
    struct topic *t = (struct topic *)ct; /* topic_foreach hands out const; this is ours */
    enum topic_ns ns = (enum topic_ns)t->ns;
    uint64_t h = topic_fnv(t);
    struct cluster_core *was[2] = {cluster_core_for_ns(remote(o->cur, o->cores, h), ns),
                                   cluster_core_for_ns(remote(o->alt, o->cores, h), ns)};
    struct cluster_core *now[2] = {cluster_core_for_ns(remote(&cl.cur, cl.cores, h), ns),
                                   cluster_core_for_ns(remote(&cl.alt, cl.cores, h), ns)};
    struct cluster_core *pin = topic_up(t)->pin; /* (one that left is freed after this) */
    if (pin) {
        was[0] = pin;
        was[1] = NULL;
    }
    if (cl.sticky) {
        /* Below parents (one owner set): a topic pinned to a parent that
         * stays live stays there; one whose parent left (its holders were
         * disconnected: only closing ones are left) goes by the hash.
         * (cluster_pin.h) */
        now[0] = pin && live(pin) ? pin : now[0];
        now[1] = NULL;
        set_pin(t, now[0] && now[0]->parent ? now[0] : NULL);
    } else {
        set_pin(t, NULL); /* no parent live any more */
    }
    if (was[1] == was[0])
        was[1] = NULL;
    if (now[1] == now[0])
        now[1] = NULL;
    bool upstream = was[0] || was[1];
    bool pending = t->upstream_pending && upstream;
    bool was_ours = owned(o->cur, o->cores, h), ours = owned(&cl.cur, cl.cores, h);
    if (was_ours && owned(o->alt, o->cores, h) && !ours && !owned(&cl.alt, cl.cores, h)) {
        /* Served here, now elsewhere, without a move this node took part
         * in (it was counted failed, e.g. stopped): what entered at the new
         * owner meanwhile never reached its holders here. */
        t->mark = o->jumped;
    }
    if (ours && !was_ours && was[0] && upstream && !pending && live(was[0]) &&
        ns == TOPIC_NS_CHANNEL && /* (retention's completeness: for retro, channels only) */
        topic_up(t)->seq != CLUSTER_NEVER.seq) /* (its moment was not noted: out of memory) */
        cluster_served_gained(t, (struct cluster_point){topic_up(t)->since, topic_up(t)->seq});
    if (cl.sticky && was[0] && now[0] != was[0] && live(was[0])) {
        /* Below parents, a topic held at a static upstream that now hashes
         * to a parent that joined (pinned topics do not move): no move
         * protocol covers a change between separate servers, so the
         * holders here are disconnected (cluster_move_subscriptions). */
        t->mark = o->moved;
        for (size_t i = 0; i < cl.n; i++)
            if (cl.cores[i] == now[0])
                o->to = (int)i;
    }
    for (int i = 0; i < 2; i++) {
        if (!now[i] || in2(now[i], was))
            continue;
        if (!upstream) {
            /* Served here until now: a move's prepare (still ours under
             * cur, the next owner's under alt) keeps this node's retention
             * complete from where it was (cluster_served.c). */
            struct cluster_point since;
            if (was_ours && ours && cluster_served_since(t, &since) &&
                since.seq != CLUSTER_NEVER.seq) {
                cluster_set_upstream_since(t, since);
            } else {
                cluster_mark_upstream(t);
            }
            upstream = true;
        }
        cluster_topic_op(now[i], cluster_op_ns(OP_SUB, ns), t->name, t->len);
        pending |= cluster_await_upstream(now[i], t, NULL); /* its next subscribers wait */
    }
    for (int i = 0; i < 2; i++)
        if (was[i] && !in2(was[i], now))
            cluster_topic_op(was[i], cluster_op_ns(OP_UNSUB, ns), t->name, t->len);
    t->upstream_pending = pending && (now[0] || now[1]);
    return 0;
}

void cluster_move_subscriptions(const struct owner_set *old_cur, const struct owner_set *old_alt,
                                struct cluster_core **old_cores)
{
    uint64_t jumped = ++cl.net.eng->router.epoch;
    struct old_sets o = {old_cur, old_alt, old_cores, jumped, ++cl.net.eng->router.epoch, -1};
    topic_foreach(&cl.net.eng->router.topics, TOPIC_NS_CHANNEL, move_topic, &o);
    if (cluster_ns_travels(TOPIC_NS_SHARD))
        topic_foreach(&cl.net.eng->router.topics, TOPIC_NS_SHARD, move_topic, &o);
    cluster_doom_marked(-1, o.jumped, "which this node served and which moved to another core "
                        "while this node was out of the cluster (it may have missed entries)");
    if (o.to >= 0)
        cluster_doom_marked(o.to, o.moved, "which took it over from a static upstream when it "
                                           "joined (entries of that moment may be missed)");
}

void cluster_sync_mark(void)
{
    for (size_t i = 0; i < cl.n; i++) {
        struct cluster_core *k = cl.cores[i];
        struct conn *c = k->link;
        if (k->self || !c || k->polling || conn_is_closing(c))
            continue;
        cluster_emit(k); /* what is batched goes first */
        evbuffer_add(c->out, "version\r\n", 9);
        k->sync_ver = ++k->ver_sent;
        cl.net.kick(c);
    }
}

bool cluster_synced(void)
{
    for (size_t i = 0; i < cl.n; i++) {
        const struct cluster_core *k = cl.cores[i];
        if (!k->self && k->link && !k->polling && k->ver_answered < k->sync_ver)
            return false;
    }
    return true;
}

bool cluster_link_version(struct conn *link)
{
    struct cluster_core *k = link_state(link)->core;
    if (!k)
        return true;
    if (k->ver_answered >= k->ver_sent)
        return false; /* none asked: later answers would pair with the wrong requests */
    k->ver_answered++;
    if (k->unpin.n) /* below parents: the unsubscribes it processed (cluster_pin.h) */
        pin_answered(&k->unpin, &cl.net.eng->router.topics, k, k->ver_answered,
                     cluster_pattern_unpinned);
    return true;
}

bool cluster_is_link(const struct subscriber *s)
{
    return s && (s->peer || conn_is_uplink(conn_of(s)));
}

enum router_peers cluster_to_peers(const struct subscriber *publisher, const struct topic *t,
                                   void *arg)
{
    (void)arg;
    if (!cluster_ns_travels((enum topic_ns)t->ns))
        return ROUTER_PEERS_ALL;
    if (publisher && publisher->peer) {
        /* It entered the cluster here: ours to deliver to every node, but
         * the one it goes on to when views differ (cluster_on_published):
         * that node's link is left out, it gets it in the forward (that
         * node's view making this core a move's other owner, its clients
         * got it twice). */
        bool entered;
        int k = cluster_peer_onward(t, (enum topic_ns)t->ns, &entered);
        return k >= 0 && cluster_core_member(cl.cores[k]) && cluster_core_up(cl.cores[k])
                   ? ROUTER_PEERS_ASK
                   : ROUTER_PEERS_ALL;
    }
    if (publisher && conn_is_uplink(conn_of(publisher)))
        return ROUTER_PEERS_NONE; /* its core delivered it to every node that holds the topic */
    /* A local client's (a Redis PUBLISH has no publisher): forwarded to its
     * owner when that is another core, which delivers it to every node.  A
     * peer holding the topic here too (this core is a move's other owner)
     * would get it twice. */
    return cluster_core_for_ns(cluster_remote_in(&cl.cur, t->name, t->len),
                               (enum topic_ns)t->ns) == NULL
               ? ROUTER_PEERS_ALL
               : ROUTER_PEERS_NONE;
}

bool cluster_to_peer(const struct subscriber *publisher, const struct topic *t,
                     const struct subscriber *s, void *arg)
{
    (void)arg;
    (void)publisher;
    bool entered;
    int k = cluster_peer_onward(t, (enum topic_ns)t->ns, &entered);
    return k < 0 || !cluster_peer_is(s, cl.cores[k]);
}
