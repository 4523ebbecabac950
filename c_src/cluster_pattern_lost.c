/* cluster_pattern_lost.c - Redis pattern holders who may have missed
 * entries (docs/cluster.md, "Patterns", "Patterns below parents").
 *
 * A pattern held here is held at every upstream that carries patterns
 * (cluster_pattern.c).  Its holders depend on all of them: when one is lost
 * they are disconnected with the holders of its topics (cluster_link.c,
 * cluster_doom_marked).  This file holds the other ways a pattern holder
 * can miss entries, and what a parent tells a proxy below it:
 *
 *   - a proxy below this node (a child link) that holds patterns here is
 *     not disconnected when a core is lost: it is told `VALUE plost <n>\r\n
 *     <patterns>\r\nEND\r\n', as it is told `VALUE lost' for topics, and
 *     disconnects its own holders of those patterns (and tells its own
 *     children).  The child's patterns stay held here: its holders are
 *     going, and it unsubscribes them when the last one is gone;
 *   - a parent refused a `link_psubscribe' batch (a core above it is not
 *     live there): its patterns' holders here go (cluster_subref.c), and
 *     a child's copies of them are dropped here too (the parent does not
 *     hold them: the next holder here must subscribe them again);
 *   - below parents, an entry of a topic comes from every parent (each
 *     holds the pattern at every core) and is kept only from the parent
 *     that topic goes to (cluster_link_keeps: its pin, else the hash over
 *     the live upstreams), the one this node's own publishes of it go
 *     through, which never sends them back.  When that parent changes for
 *     topics nobody holds here (the set of upstreams changed: a parent
 *     joined or came back), an entry in flight could be kept from both
 *     parents or from neither, so every pattern holder goes; when a topic
 *     pinned to a parent is released and the hash picks another one, the
 *     holders of the patterns matching it go.
 *
 * In each case Kraken's contract holds: a client disconnected reconnects
 * and reloads; nobody is left subscribed to a pattern that misses entries
 * silently. */
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cluster.h"
#include "cluster_internal.h"
#include "engine.h"
#include "glob.h"
#include "log.h"

/* Whether pred (NULL: every pattern) accepts pattern p. */
static bool accepts(cluster_pattern_pred pred, void *arg, const struct pattern *p)
{
    size_t len;
    const char *name = pattern_name(p, &len);
    return !pred || pred(name, len, arg);
}

int cluster_child_plost(struct conn *c, cluster_pattern_pred pred, void *arg, int kidx,
                        const char *why)
{
    struct evbuffer *blocks = evbuffer_new(), *cur = evbuffer_new();
    size_t limit = cluster_lost_limit(), n = 0;
    const struct pattern *first = NULL;
    int rc = blocks && cur ? 0 : -1;
    for (uint32_t i = 0; i < c->sub.npatterns && rc == 0; i++) {
        const struct pattern *p = c->sub.patterns[i];
        if (!accepts(pred, arg, p))
            continue;
        size_t len, have = evbuffer_get_length(cur);
        const char *name = pattern_name(p, &len);
        if ((have && have + 1 + len > limit && cluster_lost_block(blocks, "plost", cur) < 0) ||
            (evbuffer_get_length(cur) && evbuffer_add(cur, " ", 1) < 0) ||
            evbuffer_add(cur, name, len) < 0)
            rc = -1;
        first = first ? first : p;
        n++;
    }
    if (rc == 0 && n &&
        (cluster_lost_block(blocks, "plost", cur) < 0 || cluster_child_tell(c, blocks) < 0))
        rc = -1;
    if (rc == 0 && n) {
        size_t len;
        const char *name = pattern_name(first, &len);
        char shown[72];
        cluster_printable(shown, sizeof shown, name, len);
        if (kidx >= 0 && (size_t)kidx < cl.n)
            klog(LOG_WARNING, "client %" PRIu64 " (%s), a proxy below this node, held %zu "
                 "pattern(s) (%s%s) matching topics of core %s, %s: told it", c->sub.id,
                 c->peer, n, shown, n > 1 ? " ..." : "", cl.cores[kidx]->name, why);
        else
            klog(LOG_WARNING, "client %" PRIu64 " (%s), a proxy below this node, held %zu "
                 "pattern(s) (%s%s), %s: told it", c->sub.id, c->peer, n, shown,
                 n > 1 ? " ..." : "", why);
        cl.net.kick(c);
    }
    if (blocks)
        evbuffer_free(blocks);
    if (cur)
        evbuffer_free(cur);
    return rc < 0 ? -1 : n > 0;
}

/* Child c was told its patterns that pred accepts are lost: they are
 * dropped here too (backwards: router_punsubscribe moves the later ones
 * down), so that this node's next holder of one is a first one again. */
static void drop_child_patterns(struct conn *c, cluster_pattern_pred pred, void *arg)
{
    for (uint32_t i = c->sub.npatterns; i-- > 0;) {
        const struct pattern *p = c->sub.patterns[i];
        size_t len;
        const char *name = pattern_name(p, &len);
        if (accepts(pred, arg, p))
            router_punsubscribe(&cl.net.eng->router, &c->sub, name, len);
    }
}

uint32_t cluster_pattern_doom(cluster_pattern_pred pred, void *arg, bool unheld,
                              const char *why)
{
    struct engine *eng = cl.net.eng;
    uint32_t count = 0;
    if (!eng || !router_local_patterns(&eng->router))
        return 0;
    for (struct conn *c = engine_oldest_conn(eng), *next; c; c = next) {
        next = engine_next_conn(c);
        if (!c->sub.npatterns || cluster_is_link(&c->sub) || conn_is_closing(c))
            continue;
        const struct pattern *held = NULL;
        for (uint32_t i = 0; i < c->sub.npatterns && !held; i++)
            if (accepts(pred, arg, c->sub.patterns[i]))
                held = c->sub.patterns[i];
        if (!held)
            continue;
        if (c->sub.child) {
            int rc = cluster_child_plost(c, pred, arg, -1, why);
            if (rc > 0) {
                if (unheld)
                    drop_child_patterns(c, pred, arg);
                count++;
            }
            if (rc >= 0)
                continue; /* (out of memory: it could not be told) */
        }
        size_t len;
        const char *name = pattern_name(held, &len);
        char shown[72];
        cluster_printable(shown, sizeof shown, name, len);
        klog(LOG_WARNING, "%s %" PRIu64 " (%s) holds pattern %s, %s: disconnecting it",
             c->ops->log_name, c->sub.id, c->peer, shown, why);
        cluster_disconnect(c);
        count++;
    }
    return count;
}

/* ---- the preds ---- */

struct names {
    const char *p;
    size_t len;
};

/* Whether a pattern is one of the space-separated names. */
static bool named(const char *name, size_t len, void *arg)
{
    const struct names *v = arg;
    const char *p = v->p, *end = v->p + v->len;
    while (p < end) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        const char *q = sp ? sp : end;
        if ((size_t)(q - p) == len && memcmp(p, name, len) == 0)
            return true;
        p = q + 1;
    }
    return false;
}

uint32_t cluster_pattern_doom_names(const char *names, size_t len, bool unheld, const char *why)
{
    struct names v = {names, len};
    return cluster_pattern_doom(named, &v, unheld, why);
}

void cluster_link_plost(struct conn *link, const char *names, size_t len)
{
    struct cluster_core *k = link_state(link)->core;
    if (!k)
        return;
    char why[160];
    snprintf(why, sizeof why, "which parent %s lost upstream (a core above it failed)",
             k->name);
    struct names v = {names, len};
    cluster_pattern_doom(named, &v, false, why);
}

/* Whether a pattern matches topic arg. */
static bool matches(const char *name, size_t len, void *arg)
{
    const struct topic *t = arg;
    return glob_match(name, len, t->name, t->len);
}

void cluster_pattern_unpinned(struct topic *t, void *up)
{
    if (!cl.sticky || t->ns != TOPIC_NS_CHANNEL || !router_local_patterns(&cl.net.eng->router))
        return;
    int o = cluster_owner_in(&cl.cur, topic_fnv(t));
    if (o >= 0 && cl.cores[o] == up)
        return; /* the hash picks the parent it was pinned to: nothing changes */
    char name[72], why[256];
    cluster_printable(name, sizeof name, t->name, t->len);
    snprintf(why, sizeof why, "whose topic %s goes through another parent from now on (it "
             "was held through %s until now, and entries in flight may come from either)",
             name, ((const struct cluster_core *)up)->name);
    cluster_pattern_doom(matches, t, false, why);
}

/* Whether core k is in set s (cores: the list s indexes). */
static bool in_set(const struct owner_set *s, struct cluster_core *const *cores,
                   const struct cluster_core *k)
{
    for (size_t i = 0; i < s->n; i++)
        if (cores[s->core[i]] == k)
            return true;
    return false;
}

void cluster_pattern_routes(const struct owner_set *old_cur, struct cluster_core *const *old_cores,
                            bool was_sticky)
{
    if (!cl.sticky && !was_sticky)
        return; /* cores own topics: a move covers a change (docs/cluster.md, "Moves") */
    bool same = old_cur->n == cl.cur.n;
    for (size_t i = 0; i < cl.cur.n && same; i++)
        same = in_set(old_cur, old_cores, cl.cores[cl.cur.core[i]]);
    if (!same)
        cluster_pattern_doom(NULL, NULL, false, "whose topics may come through another parent from "
                                         "now on (the set of parents changed)");
}

uint32_t cluster_link_keeps(struct conn *link, struct proto_slice *v, uint32_t n)
{
    const struct cluster_core *k = link_state(link)->core;
    if (!cl.sticky || !k || !k->parent)
        return n;
    struct router *r = &cl.net.eng->router;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct topic *t = topic_find(&r->topics, TOPIC_NS_CHANNEL, v[i].p, v[i].len);
        int o = cluster_owner_of(t, t ? topic_fnv(t) : cluster_name_hash(v[i].p, v[i].len));
        if (o >= 0 && cl.cores[o] == k)
            v[kept++] = v[i];
    }
    return kept;
}
