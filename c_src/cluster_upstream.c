/* cluster_upstream.c - what goes up a link to a core (or a parent): the
 * batched requests, and the router's hooks that make them (upstream
 * subscriptions as topics gain their first local subscriber or lose their
 * last; forwarding of entries published here to their owners); see
 * docs/cluster.md, "The engine's part".
 *
 * Requests to a core are batched per link within one turn of the event
 * loop: consecutive operations of one kind (subscribe, unsubscribe,
 * publish) become one `set <kind> 0 0 <n> noreply` request, written when the
 * kind changes, when the batch reaches PEND_MAX, or at the end of the turn
 * (flush event).  A link's requests keep the order in which the local
 * operations happened, so a publisher's order is kept per core.
 *
 * Subscribes are acknowledged: a `subscribe` batch is sent without noreply,
 * the core answers STORED, and the client whose subscribe needed it waits
 * for that answer (cluster_ack.h; its reply and later requests are held by
 * server.c), so that once it has its reply every entry published at the
 * owner reaches it.  A topic whose upstream subscription may still be on
 * its way is marked upstream_pending: later subscribers wait for it too.
 * Publish batches are acknowledged the same way (cluster_pub.c), and so
 * are the `link_forward` batches of a peer's entries forwarded to their
 * owner, which name the nodes that have them already (cluster_origin.c). */
#include <event2/buffer.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "cluster_internal.h"
#include "engine.h"
#include "log.h"

#define PEND_MAX (256u << 10)

static const char *const op_names[OP_KINDS] = {
    [OP_SUB] = "subscribe",          [OP_UNSUB] = "unsubscribe",
    [OP_PUB] = "publish",            [OP_PSUB] = "link_psubscribe",
    [OP_PUNSUB] = "link_punsubscribe", [OP_SSUB] = "link_ssubscribe",
    [OP_SUNSUB] = "link_sunsubscribe", [OP_SPUB] = "link_spublish",
    [OP_FWD] = "link_forward",         [OP_SFWD] = "link_sforward",
};

/* Whether a batch of this kind is answered (STORED): subscribes and
 * publishes, whose clients wait for it (unsubscribes go with noreply). */
static bool acked_op(enum op op)
{
    return op == OP_SUB || op == OP_PUB || op == OP_PSUB || op == OP_SSUB || op == OP_SPUB ||
           op == OP_FWD || op == OP_SFWD;
}

/* ---- batched requests to a core ---- */

void cluster_emit(struct cluster_core *k)
{
    size_t len = evbuffer_get_length(k->pend);
    if (len && k->link && !conn_is_closing(k->link)) {
        struct conn *c = k->link;
        /* Subscribes and publishes are answered (STORED): clients wait for
         * it.  A polled upstream (the original Kraken) knows no noreply:
         * everything is answered there, and counted. */
        bool acked = acked_op(k->pend_op) || k->polling;
        evbuffer_add_printf(c->out, "set %s 0 0 %zu%s\r\n", op_names[k->pend_op], len,
                            acked ? "" : " noreply");
        bool keep_failed = false;
        if (acked) {
            uint64_t n = ack_fifo_send(&k->acks);
            k->last_req[k->pend_op] = n;
            if (k->pend_op == OP_SUB || k->pend_op == OP_SSUB || k->pend_op == OP_PSUB)
                keep_failed = cluster_subref_sent(k, n, k->pend, k->pend_op) < 0;
        }
        evbuffer_add_buffer(c->out, k->pend);
        evbuffer_add(c->out, "\r\n", 2);
        size_t waiting = evbuffer_get_length(c->out);
        if (keep_failed) {
            cl.net.doom(c, NULL); /* a refusal could not be told to its topics' holders */
        } else if (waiting > c->eng->cfg.max_queue_bytes) {
            /* The core does not read: give up on it as on a broken link
             * (its holders here are disconnected when the link closes). */
            klog(LOG_WARNING,
                 "cluster: core %s is not reading its link (%zu bytes waiting, over "
                 "max_client_queue_bytes); closing the link",
                 k->name, waiting);
            cl.net.doom(c, NULL);
        } else {
            cl.net.kick(c);
        }
    }
    evbuffer_drain(k->pend, evbuffer_get_length(k->pend));
    k->pend_op = OP_NONE;
}

void cluster_flush(void)
{
    cl.flush_armed = false;
    for (size_t i = 0; i < cl.n; i++) {
        cluster_emit(cl.cores[i]);
        if (cl.cores[i]->unpin_ask)
            cluster_link_barrier(cl.cores[i]); /* below parents: unpins wait for it */
    }
}

/* The batch to append an operation of kind op and about add bytes to.  A
 * batch is one request at the owner, so it stays under PEND_MAX and under
 * max_request_bytes (the same on every node) less room for its `set` line:
 * it is sent first if the operation would take it past either.  An
 * operation bigger than that alone still goes alone (an entry fits the
 * limit it was accepted under; its forwarded copy lists fewer topics). */
static struct evbuffer *batch(struct cluster_core *k, enum op op, size_t add)
{
    size_t limit = cl.net.eng->cfg.max_request_bytes - 64;
    if (limit > PEND_MAX)
        limit = PEND_MAX;
    size_t have = evbuffer_get_length(k->pend);
    if (k->pend_op != op || (have > 0 && have + add > limit))
        cluster_emit(k);
    k->pend_op = op;
    if (!cl.flush_armed) {
        cl.flush_armed = true;
        event_active(cl.flush_ev, EV_TIMEOUT, 0);
    }
    return k->pend;
}

/* A batch names its nodes on its first line (cluster_origin.c), so other
 * nodes start another. */
struct evbuffer *cluster_forward_batch(struct cluster_core *k, enum topic_ns ns,
                                       const char *line, size_t len, size_t add)
{
    enum op op = ns == TOPIC_NS_SHARD ? OP_SFWD : OP_FWD;
    if (k->pend_op == op && evbuffer_get_length(k->pend)) {
        const unsigned char *p = evbuffer_pullup(k->pend, (ev_ssize_t)(len + 2));
        if (!p || (len && memcmp(p, line, len)) || p[len] != '\r')
            cluster_emit(k);
    }
    struct evbuffer *b = batch(k, op, len + 2 + add);
    if (evbuffer_get_length(b) == 0) {
        evbuffer_add(b, line, len);
        evbuffer_add(b, "\r\n", 2);
    }
    return b;
}

void cluster_message_end(struct evbuffer *b, const struct entry *e, struct cluster_core *c)
{
    evbuffer_add_printf(b, " %zu\r\n", (size_t)e->payload_len);
    evbuffer_add(b, entry_payload(e), e->payload_len);
    evbuffer_add(b, "\r\n", 2);
    cluster_pub_note(c); /* its publisher waits for this batch (cluster_pub.c) */
}

void cluster_topic_op(struct cluster_core *k, enum op op, const char *name, size_t len)
{
    if (!k->link)
        return; /* down: its holders are disconnected when it comes back */
    if (!cluster_name_travels(name, len)) {
        /* Subscribed by a Redis client before this node had a cluster view
         * (since then such names are refused): it would split into other
         * topics at the core, so it stays local. */
        klog(LOG_WARNING, "cluster: a channel name that is empty or holds a space, CR or LF "
             "is not %s at core %s: it is served locally only",
             op == OP_SUB || op == OP_SSUB ? "subscribed" : "unsubscribed", k->name);
        return;
    }
    cluster_batch_name(k, op, name, len);
}

void cluster_batch_name(struct cluster_core *k, enum op op, const char *name, size_t len)
{
    if (!k->link)
        return;
    struct evbuffer *b = batch(k, op, len + 1);
    if (evbuffer_get_length(b))
        evbuffer_add(b, " ", 1);
    evbuffer_add(b, name, len);
}

/* ---- router hooks ---- */

/* From now on t's entries come from its owner: the retention here covers
 * horizons after this moment only. */
void cluster_mark_upstream(struct topic *t)
{
    /* The event takes a number of the publish sequence of its own (entries'
     * seq may have gaps), so that a `register' horizon taken before it is
     * smaller, and one taken after it is not. */
    cluster_set_upstream_since(t, (struct cluster_point){engine_unix_time(),
                                                         ++cl.net.eng->router.seq});
}

void cluster_set_upstream_since(struct topic *t, struct cluster_point since)
{
    struct topic_upstream *u = topic_upstream(t);
    if (!u) {
        /* It then counts as not held upstream: a retro_subscribe of it asks
         * its owner (cluster_retro.c), which has what this node has. */
        klog(LOG_WARNING, "cluster: out of memory noting since when topic %.*s is held upstream",
             (int)(t->len > 200 ? 200 : t->len), t->name);
        return;
    }
    u->since = since.time;
    u->seq = since.seq;
}

/* Subscriber s of topic t (owned by k) waits until k has acknowledged t's
 * upstream subscription (cluster_await_batch). */
bool cluster_await_upstream(struct cluster_core *k, struct topic *t, struct subscriber *s)
{
    return cluster_await_batch(k, cluster_op_ns(OP_SUB, (enum topic_ns)t->ns), s);
}

/* The batch being built, or else the last batch of that kind sent (the
 * name's is one of them: waiting for the last may wait a little longer than
 * needed, never less).  Never a later batch of another kind: a parent may
 * refuse a publish batch (another client's), and s would take that refusal
 * as its own (kraken_cluster_link_tests, sub_behind_refused). */
bool cluster_await_batch(struct cluster_core *k, enum op op, struct subscriber *s)
{
    uint64_t seq =
        k->pend_op == op && evbuffer_get_length(k->pend) ? k->acks.sent + 1 : k->last_req[op];
    struct conn *c = conn_of(s);
    if (!k->link || seq <= k->acks.answered)
        return false; /* acknowledged; or its link is down: nothing was sent, and the
                       * holders are disconnected when the link is back (open_link) */
    if (!c || !c->out)
        return true;
    bool was_held = conn_held(c);
    int rc = ack_wait(&k->acks, &c->acks, seq);
    if (rc < 0)
        klog(LOG_ERROR, "%s %" PRIu64 " (%s): out of memory waiting for core %s to confirm "
             "a subscription; answering without it", c->ops->log_name, c->sub.id, c->peer,
             k->name);
    else if (rc > 0) {
        if (!was_held)
            c->held_from = evbuffer_get_length(c->out); /* its reply comes next */
        c->held_sub = true;
    }
    return true;
}

/* on_topic below parents (cluster_pin.h): a topic's first holder
 * subscribes it at the parent it is pinned to (still waiting for an
 * unsubscribe there), else at the hash's pick, and pins it there; its last
 * holder unsubscribes it there, where it stays pinned until that parent has
 * processed it. */
static void on_topic_sticky(struct topic *t, struct subscriber *s, bool gained)
{
    enum topic_ns ns = (enum topic_ns)t->ns;
    int hk = cluster_owner_in(&cl.cur, topic_fnv(t));
    struct cluster_core *hashed =
        hk >= 0 && !cl.cores[hk]->self ? cluster_core_for_ns(cl.cores[hk], ns) : NULL;
    bool first = gained && t->nsubs - t->npeers == 1;
    struct cluster_core *k = first ? pin_hold(t, hashed, hashed && hashed->parent)
                                   : pin_route(t, hashed);
    bool pending = false;
    if (k && first) {
        cluster_mark_upstream(t);
        cluster_topic_op(k, cluster_op_ns(OP_SUB, ns), t->name, t->len);
    } else if (k && !gained) {
        cluster_topic_op(k, cluster_op_ns(OP_UNSUB, ns), t->name, t->len);
        if (pin_release(&k->unpin, &cl.net.eng->router.topics, t, k,
                        k->link ? k->ver_sent + 1 : 0) < 0)
            klog(LOG_ERROR, "cluster: out of memory noting the unsubscribe of topic %.*s at "
                 "parent %s: it goes by the hash at once (an entry in flight may come twice)",
                 (int)(t->len < 64 ? t->len : 64), t->name, k->name);
        else if (k->link && topic_up(t)->pin == k)
            k->unpin_ask = true; /* a `version` goes after the batch (flush_cb) */
    }
    if (k && gained)
        pending = cluster_await_upstream(k, t, s);
    t->upstream_pending = pending;
}

void cluster_on_topic(struct topic *t, struct subscriber *s, bool gained, void *arg)
{
    (void)arg;
    if (!cluster_ns_travels((enum topic_ns)t->ns))
        return;
    if (cl.sticky) {
        on_topic_sticky(t, s, gained);
        return;
    }
    /* Its owner; during a move, its owner under the other set too. */
    enum topic_ns ns = (enum topic_ns)t->ns;
    struct cluster_core *k[2] = {
        cluster_core_for_ns(cluster_remote_in(&cl.cur, t->name, t->len), ns),
        cluster_core_for_ns(cluster_remote_in(&cl.alt, t->name, t->len), ns)};
    if (k[1] == k[0])
        k[1] = NULL;
    bool pending = false;
    if (gained && t->nsubs - t->npeers == 1 && (k[0] || k[1]))
        cluster_mark_upstream(t);
    for (int i = 0; i < 2; i++) {
        if (!k[i])
            continue;
        if (!gained)
            cluster_topic_op(k[i], cluster_op_ns(OP_UNSUB, ns), t->name, t->len);
        else if (t->nsubs - t->npeers == 1)
            cluster_topic_op(k[i], cluster_op_ns(OP_SUB, ns), t->name, t->len);
        if (gained)
            pending |= cluster_await_upstream(k[i], t, s);
    }
    t->upstream_pending = pending;
}

/* Where an entry on t (name hash h, namespace ns) of a peer (peer true) or
 * of a local client goes on from this core: the index of t's owner under
 * cur when that is another core and this one owns t under neither set
 * (under cur, for a local client's), else -1.  *entered: whether it
 * entered the cluster here (cluster_entered.h).  A peer's that would go
 * on to a member whose node has it already (it forwarded it here, or the
 * forward names it: crossed views, cluster_origin_had) goes no further:
 * -1, and it entered here. */
static int next_core(const struct topic *t, uint64_t h, enum topic_ns ns, bool peer,
                     bool *entered)
{
    int k = cluster_owner_of(t, h), a = cluster_owner_in(&cl.alt, h);
    bool own = k >= 0 && cl.cores[k]->self, own_alt = a >= 0 && cl.cores[a]->self;
    *entered = cluster_entered(peer, own, own_alt);
    if (k < 0 || own || (peer && own_alt) || !cluster_core_for_ns(cl.cores[k], ns))
        return -1;
    if (peer && cluster_core_member(cl.cores[k]) && cluster_origin_had(cl.cores[k])) {
        *entered = true;
        return -1;
    }
    return k;
}

int cluster_peer_onward(const struct topic *t, enum topic_ns ns, bool *entered)
{
    return next_core(t, topic_fnv(t), ns, true, entered);
}

void cluster_on_published(struct subscriber *publisher, enum topic_ns ns, struct entry *e,
                         void *arg)
{
    (void)arg;
    /* What a core pushed to us was delivered by it.  What a peer sent us
     * entered the cluster here: it is forwarded only when this core is no
     * owner of the topic under either set (views differ after a failure, a
     * partition), to the owner it sees, naming the nodes that have it
     * already (`link_forward`, cluster_origin.c); never during a move it
     * is part of, nor back to a node that has it. */
    bool peer = publisher && publisher->peer;
    if (!cluster_ns_travels(ns) || cl.n == 0 || (cluster_is_link(publisher) && !peer))
        return;
    bool fit = e->ntopics <= cl.owners_cap;
    if (!fit) {
        int *o = realloc(cl.owners, e->ntopics * sizeof *o);
        if (o) {
            cl.owners = o;
            cl.owners_cap = e->ntopics;
            fit = true;
        }
    }
    /* Where each (entry, topic) entered the cluster (here, when this core
     * owns the topic now: under alt too, for a peer's, a move's other
     * owner), and where it goes on to. */
    bool remote = false;
    for (uint32_t i = 0; i < e->ntopics; i++) {
        const struct topic *t = e->topics[i];
        bool entered;
        int k = next_core(t, topic_fnv(t), ns, peer, &entered);
        if (entered)
            entry_set_entered(e, i);
        if (fit)
            cl.owners[i] = k;
        remote |= k >= 0;
    }
    if (!fit) {
        klog(LOG_ERROR, "cluster: out of memory forwarding an entry");
        return;
    }
    if (!remote)
        return;
    for (size_t k = 0; k < cl.n; k++) {
        uint32_t first = e->ntopics;
        for (uint32_t i = 0; i < e->ntopics && first == e->ntopics; i++)
            if (cl.owners[i] == (int)k)
                first = i;
        if (first == e->ntopics)
            continue;
        struct cluster_core *c = cl.cores[k];
        if (!cluster_core_up(c)) {
            /* Only for a peer's entry: clients' publishes asked
             * cluster_reachable() first.  What is written to a link that is
             * not up may be lost, and the peer would wait for it. */
            cluster_count_drop(c);
            continue;
        }
        if (peer && cluster_core_member(c)) {
            /* A peer's entry forwarded to a member says which nodes have
             * it already, so that the owner does not send it to them. */
            if (cluster_forward(c, ns, e, cl.owners, (int)k, publisher) < 0)
                c->dropped++; /* (DROPPED in cluster_status; logged) */
            else
                c->sent++;
            continue;
        }
        c->sent++;
        size_t need = 32 + (size_t)e->payload_len;
        for (uint32_t i = first; i < e->ntopics; i++)
            if (cl.owners[i] == (int)k)
                need += 1 + e->topics[i]->len;
        struct evbuffer *b = batch(c, cluster_op_ns(OP_PUB, ns), need);
        evbuffer_add(b, "MESSAGE", 7);
        for (uint32_t i = first; i < e->ntopics; i++)
            if (cl.owners[i] == (int)k) {
                evbuffer_add(b, " ", 1);
                evbuffer_add(b, e->topics[i]->name, e->topics[i]->len);
            }
        cluster_message_end(b, e, c);
    }
}
