/* cluster.c - topic ownership, batched requests to the cores, the router's
 * hooks (upstream subscriptions, forwarding; retro is cluster_retro.c's), the
 * configuration of the live cores and the status; see cluster.h and
 * docs/cluster.md.  The links' life and failures are in cluster_link.c.
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
 * Publish batches are acknowledged the same way (cluster_pub.c). */
#include "cluster.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"
#include "engine.h"
#include "log.h"
#include "proto_link.h"
#include "server.h"

#define PEND_MAX (256u << 10)

static const char *const op_names[] = {"", "subscribe", "unsubscribe", "publish"};

struct cluster_state cl;

/* ---- ownership (the owner sets: cluster_move.c) ---- */

int cluster_owner_name(const char *topic, size_t len, const char **name, size_t *name_len)
{
    const struct cluster_core *k = cluster_upstream_named(topic, len);
    if (!k)
        return 0;
    *name = k->name;
    *name_len = k->len;
    return 1;
}

/* ---- refusing what cannot be forwarded ---- */

bool cluster_active(void)
{
    return cl.srv != NULL; /* it had a view: a node of a cluster */
}

/* A proxy that sees no live core owns nothing (a core is always in its own
 * view): nothing published there can reach the subscribers elsewhere, and
 * its retention cannot vouch for anything. */
static bool alone(void)
{
    return cl.srv && cl.n == 0;
}

/* Up: connected and answered its handshake (or first poll).  While a link is
 * connecting, what is written to it is lost if the attempt fails: refused. */
static bool link_up(const struct cluster_core *k)
{
    return k->link && !conn_is_closing(k->link) && link_state(k->link)->up;
}

static void count_drop(struct cluster_core *c)
{
    c->dropped++;
    int64_t now = engine_now_ms();
    if (now - c->drop_logged_ms >= 1000) {
        c->drop_logged_ms = now;
        klog(LOG_WARNING,
             "cluster: core %s is unreachable (its link is %s); publishes to its topics are "
             "refused (%" PRIu64 " so far)",
             c->name, !c->link ? "down" : "not up", c->dropped);
    }
}

bool cluster_settled(void)
{
    for (size_t i = 0; i < cl.n; i++) {
        const struct cluster_core *k = cl.cores[i];
        if (!k->self && k->link && k->links == 1 && !link_up(k))
            return false; /* its first attempt is still under way */
    }
    return true;
}

bool cluster_name_travels(const char *name, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (name[i] == ' ' || name[i] == '\r' || name[i] == '\n')
            return false;
    return true;
}

bool cluster_reachable(const struct proto_slice *topics, uint32_t n)
{
    if (n > 0 && cluster_fresh_refuse())
        return false; /* this node may have been stopped: its view may be stale */
    if (cluster_missing_refuse(topics, n, "publishes"))
        return false;
    if (alone() && n > 0) {
        cl.alone_refused++;
        int64_t now = engine_now_ms();
        if (now - cl.alone_logged_ms >= 1000) {
            cl.alone_logged_ms = now;
            klog(LOG_WARNING, "cluster: no live core; publishes are refused (%" PRIu64 " so far)",
                 cl.alone_refused);
        }
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct cluster_core *k = cluster_upstream_named(topics[i].p, topics[i].len);
        if (k && !link_up(k)) {
            count_drop(k);
            return false;
        }
    }
    return true;
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
        bool acked = k->pend_op == OP_SUB || k->pend_op == OP_PUB || k->polling;
        evbuffer_add_printf(c->out, "set %s 0 0 %zu%s\r\n", op_names[k->pend_op], len,
                            acked ? "" : " noreply");
        bool keep_failed = false;
        if (acked) {
            uint64_t n = ack_fifo_send(&k->acks);
            if (k->pend_op == OP_SUB) {
                k->sub_req = n;
                keep_failed = cluster_subref_sent(k, n, k->pend) < 0;
            }
        }
        evbuffer_add_buffer(c->out, k->pend);
        evbuffer_add(c->out, "\r\n", 2);
        size_t waiting = evbuffer_get_length(c->out);
        if (keep_failed) {
            server_doom(c, NULL); /* a refusal could not be told to its topics' holders */
        } else if (waiting > c->eng->cfg.max_queue_bytes) {
            /* The core does not read: give up on it as on a broken link
             * (its holders here are disconnected when the link closes). */
            klog(LOG_WARNING,
                 "cluster: core %s is not reading its link (%zu bytes waiting, over "
                 "max_client_queue_bytes); closing the link",
                 k->name, waiting);
            server_doom(c, NULL);
        } else {
            server_kick(c);
        }
    }
    evbuffer_drain(k->pend, evbuffer_get_length(k->pend));
    k->pend_op = OP_NONE;
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
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
    size_t limit = cl.srv->eng.cfg.max_request_bytes - 64;
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
             op == OP_SUB ? "subscribed" : "unsubscribed", k->name);
        return;
    }
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
    t->upstream_since = engine_unix_time();
    /* The event takes a number of the publish sequence of its own (entries'
     * seq may have gaps), so that a `register' horizon taken before it is
     * smaller, and one taken after it is not. */
    t->upstream_seq = ++cl.srv->eng.router.seq;
}

/* Subscriber s of topic t (owned by k) waits until k has acknowledged t's
 * upstream subscription: the subscribe batch being built, or else the last
 * subscribe batch sent (t's is one of them: waiting for the last may wait a
 * little longer than needed, never less).  Never a later publish batch:
 * a parent may refuse one (another client's), and s would take that
 * refusal as its own (kraken_cluster_link_tests, sub_behind_refused). */
bool cluster_await_upstream(struct cluster_core *k, struct topic *t, struct subscriber *s)
{
    (void)t;
    uint64_t seq = k->pend_op == OP_SUB && evbuffer_get_length(k->pend) ? k->acks.sent + 1
                                                                        : k->sub_req;
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
    int hk = cluster_owner_in(&cl.cur, cluster_name_hash(t->name, t->len));
    struct cluster_core *hashed = hk >= 0 && !cl.cores[hk]->self ? cl.cores[hk] : NULL;
    bool first = gained && t->nsubs - t->npeers == 1;
    struct cluster_core *k = first ? pin_hold(t, hashed, hashed && hashed->parent)
                                   : pin_route(t, hashed);
    bool pending = false;
    if (k && first) {
        cluster_mark_upstream(t);
        cluster_topic_op(k, OP_SUB, t->name, t->len);
    } else if (k && !gained) {
        cluster_topic_op(k, OP_UNSUB, t->name, t->len);
        if (pin_release(&k->unpin, &cl.srv->eng.router.topics, t, k,
                        k->link ? k->ver_sent + 1 : 0) < 0)
            klog(LOG_ERROR, "cluster: out of memory noting the unsubscribe of topic %.*s at "
                 "parent %s: it goes by the hash at once (an entry in flight may come twice)",
                 (int)(t->len < 64 ? t->len : 64), t->name, k->name);
        else if (k->link && t->pin == k)
            k->unpin_ask = true; /* a `version` goes after the batch (flush_cb) */
    }
    if (k && gained)
        pending = cluster_await_upstream(k, t, s);
    t->upstream_pending = pending;
}

static void on_topic(struct topic *t, struct subscriber *s, bool gained, void *arg)
{
    (void)arg;
    if (t->ns != TOPIC_NS_CHANNEL)
        return;
    if (cl.sticky) {
        on_topic_sticky(t, s, gained);
        return;
    }
    /* Its owner; during a move, its owner under the other set too. */
    struct cluster_core *k[2] = {cluster_remote_in(&cl.cur, t->name, t->len),
                                 cluster_remote_in(&cl.alt, t->name, t->len)};
    if (k[1] == k[0])
        k[1] = NULL;
    bool pending = false;
    if (gained && t->nsubs - t->npeers == 1 && (k[0] || k[1]))
        cluster_mark_upstream(t);
    for (int i = 0; i < 2; i++) {
        if (!k[i])
            continue;
        if (!gained)
            cluster_topic_op(k[i], OP_UNSUB, t->name, t->len);
        else if (t->nsubs - t->npeers == 1)
            cluster_topic_op(k[i], OP_SUB, t->name, t->len);
        if (gained)
            pending |= cluster_await_upstream(k[i], t, s);
    }
    t->upstream_pending = pending;
}

static void on_published(struct subscriber *publisher, enum topic_ns ns, struct entry *e,
                         void *arg)
{
    (void)arg;
    /* What a core pushed to us was delivered by it.  What a peer sent us
     * entered the cluster here: it is forwarded only when this core is no
     * owner of the topic under either set (views differ after a failure, a
     * partition), to the owner it sees; never during a move it is part of. */
    bool peer = publisher && publisher->peer;
    if (ns != TOPIC_NS_CHANNEL || cl.n == 0 || (cluster_is_link(publisher) && !peer))
        return;
    /* Where each (entry, topic) entered the cluster (cluster_entered.h):
     * here, when this core owns the topic now (under alt too, for a peer's:
     * a move's other owner). */
    for (uint32_t i = 0; i < e->ntopics; i++) {
        const struct topic *t = e->topics[i];
        uint64_t h = cluster_name_hash(t->name, t->len);
        int k = cluster_owner_of(t, h), a = cluster_owner_in(&cl.alt, h);
        if (cluster_entered(peer, k >= 0 && cl.cores[k]->self, a >= 0 && cl.cores[a]->self))
            entry_set_entered(e, i);
    }
    if (e->ntopics > cl.owners_cap) {
        int *o = realloc(cl.owners, e->ntopics * sizeof *o);
        if (!o) {
            klog(LOG_ERROR, "cluster: out of memory forwarding an entry");
            return;
        }
        cl.owners = o;
        cl.owners_cap = e->ntopics;
    }
    bool remote = false;
    for (uint32_t i = 0; i < e->ntopics; i++) {
        const struct topic *t = e->topics[i];
        uint64_t h = cluster_name_hash(t->name, t->len);
        int k = cluster_owner_of(t, h), a = peer ? cluster_owner_in(&cl.alt, h) : -1;
        cl.owners[i] = k >= 0 && !cl.cores[k]->self && !(a >= 0 && cl.cores[a]->self) ? k : -1;
        remote |= cl.owners[i] >= 0;
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
        if (!link_up(c)) {
            /* Only for a peer's entry: clients' publishes asked
             * cluster_reachable() first.  What is written to a link that is
             * not up may be lost, and the peer would wait for it. */
            count_drop(c);
            continue;
        }
        size_t need = 32 + (size_t)e->payload_len;
        for (uint32_t i = first; i < e->ntopics; i++)
            if (cl.owners[i] == (int)k)
                need += 1 + e->topics[i]->len;
        struct evbuffer *b = batch(c, OP_PUB, need);
        evbuffer_add(b, "MESSAGE", 7);
        for (uint32_t i = first; i < e->ntopics; i++)
            if (cl.owners[i] == (int)k) {
                evbuffer_add(b, " ", 1);
                evbuffer_add(b, e->topics[i]->name, e->topics[i]->len);
            }
        evbuffer_add_printf(b, " %zu\r\n", (size_t)e->payload_len);
        evbuffer_add(b, entry_payload(e), e->payload_len);
        evbuffer_add(b, "\r\n", 2);
        c->sent++;
        cluster_pub_note(c); /* its publisher waits for this batch (cluster_pub.c) */
    }
}

/* ---- configuration ---- */

static void free_core(struct cluster_core *k)
{
    if (k->link) {
        link_state(k->link)->core = NULL;
        server_doom(k->link, NULL);
    }
    if (k->retry)
        event_free(k->retry);
    if (k->poll)
        event_free(k->poll);
    if (k->ping)
        event_free(k->ping);
    if (k->pend)
        evbuffer_free(k->pend);
    pin_fifo_free(&k->unpin, &cl.srv->eng.router.topics, k);
    ack_fifo_fail(&k->acks, cluster_ack_quiet, NULL); /* their clients were disconnected, or all go */
    cluster_retro_fail(k);
    cluster_subref_free(k);
    free(k->name);
    free(k);
}

static void on_stop(struct server *srv)
{
    (void)srv;
    for (size_t i = 0; i < cl.n; i++) {
        if (cl.cores[i]->link)
            link_state(cl.cores[i]->link)->core = NULL;
        cl.cores[i]->link = NULL;
        free_core(cl.cores[i]);
    }
    free(cl.cores);
    cluster_set_free(&cl.cur);
    cluster_set_free(&cl.alt);
    cluster_missing_free(&cl.miss[0]);
    cluster_missing_free(&cl.miss[1]);
    cluster_served_free();
    free(cl.self);
    free(cl.owners);
    if (cl.flush_ev)
        event_free(cl.flush_ev);
    if (cl.fresh_ev)
        event_free(cl.fresh_ev);
    memset(&cl, 0, sizeof cl);
}

/* Clients subscribed while no core was live here (a proxy without a view,
 * or cut off from every core): nothing published elsewhere reached them. */
static void doom_alone_holders(void)
{
    uint32_t n = cluster_doom_holders(CLUSTER_ANY_CORE, "subscribed while no core was live here");
    if (n)
        klog(LOG_WARNING, "cluster: a core is live again: %u client(s) that subscribed while "
             "none was were disconnected", n);
}

int cluster_configure(struct server *srv, const char *self, size_t self_len,
                      const struct cluster_member *m, size_t n,
                      const struct cluster_name *miss_own, size_t nmiss_own,
                      const struct cluster_name *miss_alt, size_t nmiss_alt, char *err,
                      size_t errlen)
{
    bool was_alone = cl.srv && cl.n == 0;
    for (size_t i = 0; i < n; i++) {
        if (m[i].name_len == 0 || m[i].port < 1 || m[i].port > 65535 || m[i].poll_ms < 0 ||
            strlen(m[i].host) >= sizeof cl.cores[0]->host) {
            snprintf(err, errlen, "bad cluster member %zu", i);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (m[j].name_len == m[i].name_len && !memcmp(m[j].name, m[i].name, m[i].name_len)) {
                snprintf(err, errlen, "cluster member %zu listed twice", i);
                return -1;
            }
    }
    if (!cl.srv) {
        cl.srv = srv;
        cl.flush_ev = event_new(srv->base, -1, 0, flush_cb, NULL);
        if (!cl.flush_ev) {
            cl.srv = NULL;
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        srv->on_stop = on_stop;
        srv->eng.router.cfg.topic_hook = on_topic;
        srv->eng.router.cfg.published = on_published;
        srv->eng.router.cfg.retro_classify = cluster_retro_classify;
        srv->eng.router.cfg.retro_defer = cluster_retro_defer;
        srv->eng.router.cfg.to_peers = cluster_to_peers;
    }
    struct cluster_core **cores = calloc(n + 1, sizeof *cores);
    bool *kept = calloc(cl.n + 1, sizeof *kept);
    bool *fresh = calloc(n + 1, sizeof *fresh);
    bool *pick = calloc(2 * n + 1, sizeof *pick); /* own[i], then alt[i] */
    char *me = malloc(self_len + 1);
    struct owner_set cur = {0}, alt = {0};
    if (!cores || !kept || !fresh || !pick || !me)
        goto nomem;
    memcpy(me, self, self_len);
    me[self_len] = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < cl.n && !cores[i]; j++) {
            struct cluster_core *o = cl.cores[j];
            if (!kept[j] && o->len == m[i].name_len && !memcmp(o->name, m[i].name, o->len) &&
                o->port == m[i].port && !strcmp(o->host, m[i].host) &&
                o->poll_ms == m[i].poll_ms && o->parent == m[i].parent) {
                cores[i] = o;
                kept[j] = true;
            }
        }
        if (!cores[i]) {
            struct cluster_core *k = calloc(1, sizeof *k);
            if (!k || !(k->name = malloc(m[i].name_len + 1)) || !(k->pend = evbuffer_new())) {
                if (k) {
                    free(k->name);
                    free(k);
                }
                for (size_t j = 0; j < i; j++)
                    if (fresh[j])
                        free_core(cores[j]);
                goto nomem;
            }
            memcpy(k->name, m[i].name, m[i].name_len);
            k->name[m[i].name_len] = 0;
            k->len = m[i].name_len;
            snprintf(k->host, sizeof k->host, "%s", m[i].host);
            k->port = m[i].port;
            k->self = m[i].name_len == self_len && !memcmp(m[i].name, self, self_len);
            cluster_link_events(k, srv->base);
            k->asked_ms = -1;
            k->poll_ms = m[i].poll_ms;
            k->parent = m[i].parent;
            cores[i] = k;
            fresh[i] = true;
        }
        pick[i] = m[i].own;
        pick[n + i] = m[i].alt;
    }
    if (cluster_set_build(&cur, cores, pick, n) < 0 ||
        cluster_set_build(&alt, cores, pick + n, n) < 0) {
        for (size_t j = 0; j < n; j++)
            if (fresh[j])
                free_core(cores[j]);
        goto nomem;
    }
    if (!memchr(pick + n, true, n)) { /* no move: the other set is the same */
        cluster_set_free(&alt);
        if (cluster_set_build(&alt, cores, pick, n) < 0) {
            for (size_t j = 0; j < n; j++)
                if (fresh[j])
                    free_core(cores[j]);
            goto nomem;
        }
    }
    struct missing_set miss[2];
    if (cluster_missing_build(&miss[0], &cur, miss_own, nmiss_own) < 0) {
        for (size_t j = 0; j < n; j++)
            if (fresh[j])
                free_core(cores[j]);
        goto nomem;
    }
    if (cluster_missing_build(&miss[1], &alt, miss_alt, nmiss_alt) < 0) {
        cluster_missing_free(&miss[0]);
        for (size_t j = 0; j < n; j++)
            if (fresh[j])
                free_core(cores[j]);
        goto nomem;
    }
    cluster_missing_warn(miss_own, nmiss_own);
    /* Cores that left: their links go, and so do the clients that held
     * their topics (owners of the table still in effect). */
    for (size_t j = 0; j < cl.n; j++) {
        struct cluster_core *o = cl.cores[j];
        if (kept[j])
            continue;
        if (o->link) {
            link_state(o->link)->core = NULL;
            server_doom(o->link, NULL);
            o->link = NULL;
        }
        evtimer_del(o->retry);
        if (o->self) {
            /* A core leaves its own list only on the minority side
             * (kraken_cluster_quorum): its topics are the others' now. */
            klog(LOG_WARNING, "cluster: this core (%s) has no quorum: it no longer owns topics",
                 o->name);
            cluster_doom_holders((int)j, "and this core has no quorum (cut off from the "
                                         "majority of the cluster)");
        } else {
            klog(LOG_WARNING, "cluster: core %s left the live set", o->name);
            cluster_doom_holders((int)j, "which left the cluster");
        }
        pin_drop(&o->unpin, &srv->eng.router.topics, o); /* nothing more comes from it */
        cluster_pub_lost(o);
        ack_fifo_fail(&o->acks, cluster_ack_done, o);
        cluster_retro_fail(o);
    }
    struct cluster_core **old_cores = cl.cores;
    size_t old_n = cl.n;
    struct owner_set old_cur = cl.cur, old_alt = cl.alt;
    for (size_t j = 0; j < old_n; j++)
        old_cores[j]->idx = -1; /* (left, unless kept: set again below) */
    cl.sticky = false;
    for (size_t i = 0; i < n; i++) {
        cores[i]->idx = (int)i;
        cl.sticky |= cores[i]->parent;
    }
    cl.cores = cores;
    cl.n = n;
    cl.cur = cur;
    cl.alt = alt;
    for (int i = 0; i < 2; i++) {
        cluster_missing_free(&cl.miss[i]);
        cl.miss[i] = miss[i];
    }
    free(cl.self);
    cl.self = me;
    cl.self_len = self_len;
    for (size_t i = 0; i < n; i++)
        if (fresh[i] && !cores[i]->self) {
            klog(LOG_INFO, "cluster: core %s (%s port %d) joined the live set", cores[i]->name,
                 cores[i]->host, cores[i]->port);
            cluster_open_link(cores[i]);
        }
    if (was_alone && n > 0)
        doom_alone_holders();
    if (cluster_fresh_start() < 0)
        klog(LOG_ERROR, "cluster: out of memory for the view's freshness check");
    struct cluster_point at = cluster_served_now();
    cluster_move_subscriptions(&old_cur, &old_alt, old_cores);
    cluster_served_push(at);
    cluster_sync_mark();
    for (size_t j = 0; j < old_n; j++)
        if (!kept[j])
            free_core(old_cores[j]);
    free(old_cores);
    cluster_set_free(&old_cur);
    cluster_set_free(&old_alt);
    free(kept);
    free(fresh);
    free(pick);
    return 0;
nomem:
    cluster_set_free(&cur);
    cluster_set_free(&alt);
    free(cores);
    free(kept);
    free(fresh);
    free(pick);
    free(me);
    snprintf(err, errlen, "out of memory");
    return -1;
}

struct count {
    struct cluster_core_status *out;
    size_t max;
};

static int count_topic(const struct topic *t, void *arg)
{
    struct count *c = arg;
    if (t->nsubs == t->npeers)
        return 0; /* only peers hold it */
    uint64_t h = cluster_name_hash(t->name, t->len);
    int k[2] = {cluster_owner_of(t, h), cl.sticky ? -1 : cluster_owner_in(&cl.alt, h)};
    for (int i = 0; i < 2; i++)
        if (k[i] >= 0 && (size_t)k[i] < c->max && !cl.cores[k[i]]->self && (i == 0 || k[1] != k[0]))
            c->out[k[i]].topics++;
    return 0;
}

size_t cluster_status(struct cluster_core_status *out, size_t max)
{
    for (size_t i = 0; i < cl.n && i < max; i++) {
        const struct cluster_core *k = cl.cores[i];
        out[i] = (struct cluster_core_status){
            .name = k->name, .name_len = k->len, .host = k->host, .port = k->port,
            .state = k->self ? CLUSTER_SELF
                     : !k->link ? CLUSTER_DOWN
                     : !link_state(k->link)->up ? CLUSTER_CONNECTING
                     : k->polling ? CLUSTER_POLLING : CLUSTER_UP,
            .received = k->link ? link_state(k->link)->received : 0,
            .sent = k->sent, .dropped = k->dropped, .links = k->links,
        };
    }
    if (cl.srv) {
        struct count c = {out, max};
        topic_foreach(&cl.srv->eng.router.topics, TOPIC_NS_CHANNEL, count_topic, &c);
    }
    return cl.n;
}
