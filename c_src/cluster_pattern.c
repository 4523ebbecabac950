/* cluster_pattern.c - Redis patterns (PSUBSCRIBE) across the cluster
 * (docs/cluster.md, "Patterns").
 *
 * A pattern may match topics of every core, so a node whose local clients
 * hold a pattern holds it at every member core it links to: its first local
 * holder sends `set link_psubscribe 0 0 <n>\r\n<patterns>\r\n` (batched like
 * subscribes, acknowledged: the client's reply waits for the STORED of
 * every core that owns topics, as a channel subscriber's waits for the
 * owner's; cluster_on_pattern says why not the others), its last one
 * `set link_punsubscribe ... noreply`, and every link opened to a core
 * (one that joined, or came back) carries the patterns held here before
 * anything the move protocol sends on it, so they are in place before the
 * sync barrier that lets that core own topics (docs/cluster.md, "Moves").
 *
 * On a core, a peer's patterns are the router's like any subscriber's, but
 * an entry goes to a peer through a pattern only when it entered the
 * cluster at this core (cluster_pattern_to_peers; cluster_entered.h): each
 * entry enters exactly one core per topic, and that core alone sends it to
 * the pattern holders' nodes.  So a pattern subscriber gets each (entry,
 * topic) once, during moves and in every topology of cores and proxies,
 * with no dedup table: never from a core it merely reached on its way to
 * the owner, never back at the node that published it (the publisher's own
 * link is skipped), never from two owners of a moving topic.
 *
 * A pattern holder depends on every core that owns topics (under cur or
 * alt): when one is lost it may have missed entries, so it is disconnected
 * like the holders of that core's topics (cluster_link.c; the log line
 * names the pattern).  A core drained out of both owner sets is no longer
 * depended on.
 *
 * Below parents, a node holds its patterns at every parent the same way
 * (each holds them at every core, for its child as for a client), and
 * keeps an entry's topic only from the parent that topic goes to, the one
 * its own publishes of it go through (cluster_link_keeps,
 * cluster_pattern_lost.c): each (entry, topic) once, never its own back.
 * Not at static upstreams (the original Kraken knows no patterns): there
 * a pattern subscriber gets what this node holds upstream anyway. */
#include <event2/buffer.h>
#include <stdbool.h>
#include <stddef.h>

#include "cluster_internal.h"
#include "engine.h"

bool cluster_pattern_carried(const struct cluster_core *k)
{
    /* Below parents the parents carry them (a static upstream never:
     * cluster_core_member is false for both). */
    return !k->self && (cl.sticky ? k->parent : cluster_core_member(k));
}

static int send_one(const char *name, size_t len, void *arg)
{
    cluster_batch_name(arg, OP_PSUB, name, len);
    return 0;
}

void cluster_pattern_link_open(struct cluster_core *k)
{
    if (cluster_pattern_carried(k))
        router_foreach_local_pattern(&cl.net.eng->router, send_one, k);
}

/* Whether core index k is an owner under set s. */
static bool owns_in(const struct owner_set *s, size_t k)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->core[i] == k)
            return true;
    return false;
}

bool cluster_pattern_depends(int kidx)
{
    if (kidx == CLUSTER_ANY_CORE)
        return true;
    if (kidx < 0 || (size_t)kidx >= cl.n)
        return false;
    const struct cluster_core *k = cl.cores[kidx];
    return (k->self || cluster_pattern_carried(k)) &&
           (owns_in(&cl.cur, (size_t)kidx) || owns_in(&cl.alt, (size_t)kidx));
}

bool cluster_on_pattern(const char *name, size_t len, struct subscriber *s, uint32_t holders,
                        void *arg)
{
    (void)arg;
    /* The first holder subscribes it at every member core; a later one
     * (while it is pending) waits for the same answers.  Only the cores
     * that own topics are waited for: one that owns none (drained, or
     * joined and given nothing yet) gets the pattern too, but no entry
     * enters there until a move's prepare makes it an owner under alt,
     * and that prepare's sync barrier (a `version' on this link, behind
     * this batch) comes before anyone publishes to it.  Waiting for it
     * would hold the client for nothing, and disconnect it if that core
     * were lost meanwhile, which its holders do not depend on. */
    bool pending = false;
    for (size_t i = 0; i < cl.n; i++) {
        struct cluster_core *k = cl.cores[i];
        if (!cluster_pattern_carried(k))
            continue;
        if (!s) {
            cluster_batch_name(k, OP_PUNSUB, name, len);
            continue;
        }
        if (holders == 1)
            cluster_batch_name(k, OP_PSUB, name, len);
        if (cluster_pattern_depends((int)i))
            pending |= cluster_await_batch(k, OP_PSUB, s);
    }
    return pending;
}

bool cluster_pattern_subscribable(void)
{
    return !cluster_missing_refuse_any("pattern subscribes");
}

bool cluster_pattern_to_peers(const struct subscriber *publisher, const struct topic *t,
                              void *arg)
{
    (void)arg;
    if (t->ns != TOPIC_NS_CHANNEL || cl.sticky)
        return false;
    bool peer = publisher && publisher->peer;
    if (publisher && !peer && conn_is_uplink(conn_of(publisher)))
        return false; /* pushed by a core: it entered there */
    if (peer) {
        bool entered;
        (void)cluster_peer_onward(t, TOPIC_NS_CHANNEL, &entered);
        return entered;
    }
    uint64_t h = topic_fnv(t);
    int k = cluster_owner_of(t, h), a = cluster_owner_in(&cl.alt, h);
    return cluster_entered(false, k >= 0 && cl.cores[k]->self, a >= 0 && cl.cores[a]->self);
}
