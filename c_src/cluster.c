/* cluster.c - topic ownership, refusing what cannot be forwarded, the
 * configuration of the live cores and the status; see cluster.h and
 * docs/cluster.md.  What goes up a link (batched requests, the router's
 * hooks) is cluster_upstream.c's; the links' life and failures are in
 * cluster_link.c; retro is cluster_retro.c's. */
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

struct cluster_state cl;

/* ---- ownership (the owner sets: cluster_move.c) ---- */

int cluster_owner_name(const char *topic, size_t len, const char **name, size_t *name_len)
{
    const struct cluster_core *k = cluster_upstream_named(TOPIC_NS_CHANNEL, topic, len);
    if (!k)
        return 0;
    *name = k->name;
    *name_len = k->len;
    return 1;
}

/* ---- refusing what cannot be forwarded ---- */

bool cluster_active(void)
{
    return cl.net.eng != NULL; /* it had a view: a node of a cluster */
}

/* A proxy that sees no live core owns nothing (a core is always in its own
 * view): nothing published there can reach the subscribers elsewhere, and
 * its retention cannot vouch for anything. */
bool cluster_alone(void)
{
    return cl.net.eng && cl.n == 0;
}

/* A core (in its own live set) serves its own topics; a proxy sends
 * everything upstream: with no link up it serves nothing. */
bool cluster_unlinked(void)
{
    if (!cl.net.eng)
        return false;
    for (size_t i = 0; i < cl.n; i++)
        if (cl.cores[i]->self || cluster_core_up(cl.cores[i]))
            return false;
    return true;
}

/* Up: connected and answered its handshake (or first poll).  While a link is
 * connecting, what is written to it is lost if the attempt fails: refused. */
bool cluster_core_up(const struct cluster_core *k)
{
    return k->link && !conn_is_closing(k->link) && link_state(k->link)->up;
}

void cluster_count_drop(struct cluster_core *c)
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
        if (!k->self && k->link && k->links == 1 && !cluster_core_up(k))
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

/* cluster_reachable for topics of namespace ns: the owner checked is the
 * one an entry of ns is forwarded to (cluster_core_for_ns: a Redis shard
 * channel whose name hashes to a static upstream is served here). */
static bool reachable(const struct proto_slice *topics, uint32_t n, enum topic_ns ns)
{
    if (n > 0 && cluster_fresh_refuse())
        return false; /* this node may have been stopped: its view may be stale */
    if (cluster_missing_refuse(topics, n, "publishes"))
        return false;
    if (cluster_alone() && n > 0) {
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
        struct cluster_core *k =
            cluster_core_for_ns(cluster_upstream_named(ns, topics[i].p, topics[i].len), ns);
        if (k && !cluster_core_up(k)) {
            cluster_count_drop(k);
            return false;
        }
    }
    return true;
}

bool cluster_reachable(const struct proto_slice *topics, uint32_t n)
{
    return reachable(topics, n, TOPIC_NS_CHANNEL);
}

bool cluster_shard_reachable(const struct proto_slice *topics, uint32_t n)
{
    return reachable(topics, n, TOPIC_NS_SHARD);
}

/* ---- configuration ---- */

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    cluster_flush();
}

static void free_core(struct cluster_core *k)
{
    if (k->link) {
        link_state(k->link)->core = NULL;
        cl.net.doom(k->link, NULL);
    }
    if (k->retry)
        event_free(k->retry);
    if (k->poll)
        event_free(k->poll);
    if (k->ping)
        event_free(k->ping);
    if (k->pend)
        evbuffer_free(k->pend);
    pin_fifo_free(&k->unpin, &cl.net.eng->router.topics, k);
    ack_fifo_fail(&k->acks, cluster_ack_quiet, NULL); /* their clients were disconnected, or all go */
    cluster_retro_fail(k);
    cluster_subref_free(k);
    free(k->name);
    free(k);
}

void cluster_stop(void)
{
    if (!cl.net.eng)
        return; /* never configured */
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

int cluster_configure(const struct cluster_net *net, const char *self, size_t self_len,
                      const struct cluster_member *m, size_t n,
                      const struct cluster_name *miss_own, size_t nmiss_own,
                      const struct cluster_name *miss_alt, size_t nmiss_alt, char *err,
                      size_t errlen)
{
    bool was_alone = cl.net.eng && cl.n == 0;
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
    if (!cl.net.eng) {
        cl.flush_ev = event_new(net->base, -1, 0, flush_cb, NULL);
        if (!cl.flush_ev) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        cl.net = *net;
        struct router_config *rc = &net->eng->router.cfg;
        rc->topic_hook = cluster_on_topic;
        rc->published = cluster_on_published;
        rc->retro_classify = cluster_retro_classify;
        rc->retro_defer = cluster_retro_defer;
        rc->to_peers = cluster_to_peers;
        rc->to_peer = cluster_to_peer;
        rc->pattern_hook = cluster_on_pattern;
        rc->pattern_to_peers = cluster_pattern_to_peers;
        net->eng->metrics_more = cluster_metrics;
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
            cluster_link_events(k, cl.net.base);
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
            cl.net.doom(o->link, NULL);
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
        pin_drop(&o->unpin, &cl.net.eng->router.topics, o); /* nothing more comes from it */
        cluster_pub_lost(o);
        ack_fifo_fail(&o->acks, cluster_ack_done, o);
        cluster_retro_fail(o);
    }
    struct cluster_core **old_cores = cl.cores;
    size_t old_n = cl.n;
    struct owner_set old_cur = cl.cur, old_alt = cl.alt;
    for (size_t j = 0; j < old_n; j++)
        old_cores[j]->idx = -1; /* (left, unless kept: set again below) */
    bool was_sticky = cl.sticky;
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
    cluster_pattern_routes(&old_cur, old_cores, was_sticky);
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
    uint64_t h = topic_fnv(t);
    int k[2] = {cluster_owner_of(t, h), cl.sticky ? -1 : cluster_owner_in(&cl.alt, h)};
    for (int i = 0; i < 2; i++)
        if (k[i] >= 0 && (size_t)k[i] < c->max && !cl.cores[k[i]]->self &&
            (i == 0 || k[1] != k[0]) && /* (a shard channel of a static upstream: served here) */
            cluster_core_for_ns(cl.cores[k[i]], (enum topic_ns)t->ns))
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
    if (cl.net.eng) {
        struct count c = {out, max};
        topic_foreach(&cl.net.eng->router.topics, TOPIC_NS_CHANNEL, count_topic, &c);
        if (cluster_ns_travels(TOPIC_NS_SHARD))
            topic_foreach(&cl.net.eng->router.topics, TOPIC_NS_SHARD, count_topic, &c);
    }
    return cl.n;
}
