/* cluster_link.c - the life of the upstream links (see cluster.h,
 * docs/cluster.md): opening one per remote live core, its liveness (a
 * `version` ping every PING_MS, or the polls of a polled upstream; a link
 * unanswered for DEAD_MS is closed as broken), retries every RETRY_MS while
 * its core stays live, the switch to polling when a static upstream refuses
 * push mode, and what a lost link does: every local client holding a topic
 * of that core is disconnected with a log line saying why, and the waits
 * for its acknowledgements fail (cluster_ack.h).  A client whose waits are
 * all answered is released here too (server_kick). */
#include <event2/buffer.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cluster_internal.h"
#include "engine.h"
#include "log.h"

#define RETRY_MS 300
/* Link liveness: a `version` every PING_MS on a push link (a poll on a
 * polled one); a link with a request unanswered for DEAD_MS is closed as
 * broken.  This finds what TCP does not: a hung engine, a stalled path. */
#define PING_MS 500
#define DEAD_MS 1500
/* A node above this one (a parent: the link said `set child') holds our
 * acknowledged request, and the pings behind it, while its own core is to
 * confirm it; when that core fails, the parent answers within its own
 * deadline (DEAD_MS after a ping sent at most PING_MS after the core
 * stopped, found at a ping tick: DEAD_MS + 2 PING_MS).  So while such a
 * request is outstanding, our deadline for it is longer by that much: its
 * answer (the error for what that core never confirmed) must not find the
 * link closed, every client of ours that holds a topic through it gone. */
#define PARENT_WAIT_MS (DEAD_MS + 2 * PING_MS)

void cluster_printable(char *buf, size_t size, const char *p, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && i < 64 && o + 1 < size; i++)
        buf[o++] = p[i] > 0x20 && p[i] < 0x7f ? p[i] : '?';
    buf[o] = 0;
}

void cluster_disconnect(struct conn *c)
{
    router_remove_subscriber(&cl.net.eng->router, &c->sub);
    c->sub.overflowed = true; /* route nothing more to it */
    if (!c->sub.child) /* a proxy below (rare: its link could not be told) is no client */
        cl.net.eng->stats.disconnects_cluster++;
    bool pub = c->held_pub; /* (its failed wait may be gone already) */
    cl.net.doom(c, c->ops->kind == PROTO_KIND_KRAKEN ? CLUSTER_ERR_UNAVAILABLE
                   : pub ? "-ERR cluster core unavailable: not published\r\n"
                         : NULL);
}

static int index_of(const struct cluster_core *k)
{
    for (size_t i = 0; i < cl.n; i++)
        if (cl.cores[i] == k)
            return (int)i;
    return -1;
}

/* A held client's acknowledgements: all in (it goes on), or one of its
 * cores was lost before answering.  A subscriber holds a topic of that
 * core, so doom_holders disconnected it already; this is the safety net,
 * and the publisher's error.  A child's link (a proxy below) is answered
 * instead, and stays (cluster_child_wait_failed). */
void cluster_ack_done(struct ack_holder *h, bool ok, void *arg)
{
    struct conn *c = (struct conn *)(void *)((char *)h - offsetof(struct conn, acks));
    const struct cluster_core *k = arg;
    if (ok) {
        if (c->acks.nnotes || c->acks.notes_lost) {
            /* A child's link: the replies of its batches that a lost core
             * did not confirm become the error (cluster_relay.c). */
            if (!cluster_child_release(c))
                cluster_disconnect(c);
            return;
        }
        c->held_sub = c->held_pub = false;
        cl.net.kick(c);
        return;
    }
    if (c->state == CONN_DOOMED)
        return; /* (a held connection that is merely closing, after a quit, is not) */
    if (c->sub.child && !conn_is_closing(c) &&
        cluster_child_wait_failed(c, k, index_of(k), true))
        return;
    if (c->held_pub)
        klog(LOG_WARNING, "%s %" PRIu64 " (%s) waits for core %s to confirm its publishes, "
             "and that core was lost: answering the error and disconnecting it (its unanswered "
             "publishes reached this node's subscribers, maybe not the others)",
             c->ops->log_name, c->sub.id, c->peer, k->name);
    else
        klog(LOG_WARNING, "%s %" PRIu64 " (%s) waits for core %s to confirm its subscription, "
             "and that core was lost: disconnecting it", c->ops->log_name, c->sub.id, c->peer,
             k->name);
    cluster_disconnect(c);
}

/* ack_done_fn for a refused publish batch (a parent refused it: an owner
 * above it was unavailable): its publishers get the error, then the close;
 * a child's link (this node is in the middle of three) is answered the
 * error in turn, and stays. */
static void refused_done(struct ack_holder *h, bool ok, void *arg)
{
    struct conn *c = (struct conn *)(void *)((char *)h - offsetof(struct conn, acks));
    const struct cluster_core *k = arg;
    if (ok || c->state == CONN_DOOMED)
        return;
    if (c->sub.child && !conn_is_closing(c) && cluster_child_wait_failed(c, k, -1, false))
        return;
    if (!c->sub.child && c->held_sub && !c->held_pub) {
        /* A subscriber (or a retro_subscribe): it waits for the last
         * subscribe batch sent, which may be another client's, and for its
         * link_retro, with other clients' batches between them.  A refused
         * subscribe batch has disconnected the holders of its topics
         * already (cluster_subref_refused), and a link_retro is never
         * refused so (NOT_FOUND): this refusal is not its own.  It goes on,
         * released as on an answer once its other waits are answered. */
        if (c->acks.n == 0)
            cluster_ack_done(h, true, arg);
        return;
    }
    klog(LOG_WARNING, "%s %" PRIu64 " (%s): its publish was refused by %s (a core above it "
         "is unavailable): answering the error and disconnecting it (its unanswered "
         "publishes reached this node's subscribers, maybe not the others)",
         c->ops->log_name, c->sub.id, c->peer, k->name);
    cluster_disconnect(c);
}

void cluster_link_refused(struct conn *link)
{
    struct cluster_core *k = link_state(link)->core;
    if (!k)
        return;
    cluster_retro_answered(k, false);
    if (k->nr_pending && k->nr_seq == k->acks.answered + 1)
        klog(LOG_WARNING, "cluster: %s refused a batch with noreply publishes (the last from "
             "client %" PRIu64 " (%s)): their entries reached this node's subscribers, maybe "
             "not the others", k->name, k->nr_client, k->nr_peer);
    /* A subscribe batch: its topics' holders go first (the waiting ones
     * among them are then skipped by the FIFO, being closed). */
    cluster_subref_refused(k, index_of(k));
    if (!ack_fifo_refuse(&k->acks, refused_done, k))
        klog(LOG_DEBUG, "cluster: core %s refused a request that expected no answer", k->name);
    else
        cluster_pub_answered(k);
    cluster_subref_answered(k);
}

void cluster_ack_quiet(struct ack_holder *h, bool ok, void *arg)
{
    (void)h;
    (void)ok;
    (void)arg;
}

void cluster_link_acked(struct conn *link, bool found)
{
    struct cluster_core *k = link_state(link)->core;
    if (k)
        cluster_retro_answered(k, found);
    if (k && !ack_fifo_answer(&k->acks, cluster_ack_done, k))
        klog(LOG_DEBUG, "cluster: core %s answered a request that expected no answer", k->name);
    else if (k)
        cluster_pub_answered(k);
    if (k)
        cluster_subref_answered(k);
}

/* Disconnects every local client holding a topic that core kidx (of the
 * table in effect) owns, or any topic that goes upstream (kidx
 * CLUSTER_ANY_CORE), and the pattern holders that depend on kidx.  Its
 * subscriptions go at once, so that the next subscriber of such a topic is
 * a first one again (topic_hook). */
uint32_t cluster_doom_holders(int kidx, const char *why)
{
    return kidx < 0 && kidx != CLUSTER_ANY_CORE ? 0 : cluster_doom_marked(kidx, 0, why);
}

uint32_t cluster_doom_marked(int kidx, uint64_t mark, const char *why)
{
    struct engine *eng = cl.net.eng;
    uint32_t count = 0;
    for (struct conn *c = engine_oldest_conn(eng), *next; c; c = next) {
        next = engine_next_conn(c);
        if (cluster_is_link(&c->sub) || conn_is_closing(c))
            continue; /* a peer's node sees the core go itself */
        if (c->sub.child) {
            /* A proxy below: told which of its topics are lost, it
             * disconnects their holders only (cluster_relay.c); and so for
             * its patterns (cluster_pattern_lost.c). */
            int rc = cluster_child_lost(c, kidx, mark, why);
            if (rc >= 0 && !mark && c->sub.npatterns && cluster_pattern_depends(kidx)) {
                int prc = cluster_child_plost(c, NULL, NULL, kidx, why);
                rc = prc < 0 ? prc : rc | prc;
            }
            if (rc > 0)
                count++;
            if (rc >= 0)
                continue;
        }
        const struct topic *held = NULL;
        for (uint32_t i = 0; i < c->sub.subs.cap && !held; i++) {
            const struct topic *t = c->sub.subs.v[i].topic;
            if (t && cluster_ns_travels((enum topic_ns)t->ns) &&
                (mark ? t->mark == mark
                      : cluster_depends(t, kidx)))
                held = t;
        }
        char name[72];
        if (held) {
            cluster_printable(name, sizeof name, held->name, held->len);
            if (kidx >= 0)
                klog(LOG_WARNING, "%s %" PRIu64 " (%s) holds topic %s owned by core %s, %s: "
                     "disconnecting it", c->ops->log_name, c->sub.id, c->peer, name,
                     cl.cores[kidx]->name, why);
            else
                klog(LOG_WARNING, "%s %" PRIu64 " (%s) holds topic %s, %s: disconnecting it",
                     c->ops->log_name, c->sub.id, c->peer, name, why);
        } else if (!mark && c->sub.npatterns && cluster_pattern_depends(kidx)) {
            /* A pattern matches every core's topics (cluster_pattern.c). */
            size_t plen;
            const char *p = pattern_name(c->sub.patterns[0], &plen);
            cluster_printable(name, sizeof name, p, plen);
            if (kidx >= 0)
                klog(LOG_WARNING, "%s %" PRIu64 " (%s) holds pattern %s, which matches topics "
                     "of core %s, %s: disconnecting it", c->ops->log_name, c->sub.id, c->peer,
                     name, cl.cores[kidx]->name, why);
            else
                klog(LOG_WARNING, "%s %" PRIu64 " (%s) holds pattern %s, %s: disconnecting it",
                     c->ops->log_name, c->sub.id, c->peer, name, why);
        } else {
            continue;
        }
        cluster_disconnect(c);
        count++;
    }
    return count;
}

/* Sends a ping (or, polled, counts the polls as pings); closes a link whose
 * oldest one waited DEAD_MS (or three poll intervals, if longer). */
static void ping_cb(evutil_socket_t fd, short what, void *arg)
{
    struct cluster_core *k = arg;
    (void)fd;
    (void)what;
    struct conn *c = k->link;
    if (!c || conn_is_closing(c))
        return;
    int64_t now = engine_now_ms();
    int64_t dead = k->polling && 3 * k->poll_ms > DEAD_MS ? 3 * k->poll_ms : DEAD_MS;
    if (k->parent && k->acks.answered < k->acks.sent)
        dead += PARENT_WAIT_MS; /* a hung parent: its heartbeats stop (1.6 s) */
    if (k->asked_ms >= 0 && now - k->asked_ms > dead) {
        klog(link_state(c)->up ? LOG_WARNING : LOG_DEBUG,
             "cluster: core %s (%s) did not answer for %" PRId64 " ms; closing the link",
             k->name, c->peer, now - k->asked_ms);
        cl.net.doom(c, NULL);
        return;
    }
    if (k->polling || k->asked_ms >= 0)
        return; /* polls are the pings; or one is on its way */
    k->asked_ms = now;
    cluster_emit(k);
    evbuffer_add(c->out, "version\r\n", 9);
    k->ver_sent++;
    cl.net.kick(c);
}

void cluster_link_barrier(struct cluster_core *k)
{
    struct conn *c = k->link;
    k->unpin_ask = false;
    if (!c || conn_is_closing(c) || k->polling)
        return;
    cluster_emit(k); /* what is batched (the unsubscribes) goes first */
    evbuffer_add(c->out, "version\r\n", 9);
    k->ver_sent++;
    if (k->asked_ms < 0)
        k->asked_ms = engine_now_ms(); /* a request like a ping: its answer is due */
    cl.net.kick(c);
}

void cluster_link_answered(struct conn *link)
{
    struct cluster_core *k = link_state(link)->core;
    if (k && (k->polling || k->ver_answered >= k->ver_sent))
        k->asked_ms = -1; /* nothing outstanding */
}

void cluster_link_progress(struct conn *link)
{
    struct cluster_core *k = link_state(link)->core;
    cluster_link_answered(link);
    if (k && k->asked_ms >= 0)
        k->asked_ms = engine_now_ms();
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cluster_open_link(arg);
}

static void schedule_retry(struct cluster_core *k)
{
    struct timeval tv = {0, RETRY_MS * 1000};
    evtimer_add(k->retry, &tv);
}

void cluster_open_link(struct cluster_core *k)
{
    if (k->reopen) {
        /* Subscribed while no link carried their subscriptions: they may
         * have missed entries. */
        cluster_doom_holders(index_of(k), "which was unreachable when it subscribed");
        k->reopen = false;
    }
    char err[256];
    struct conn *c = cl.net.connect(cl.net.arg, k->host, k->port, err, sizeof err);
    if (!c) {
        klog(LOG_WARNING, "cluster: cannot connect to core %s: %s", k->name, err);
        k->reopen = true;
        schedule_retry(k);
        return;
    }
    link_state(c)->core = k;
    c->sub.id |= CLUSTER_LINK_ID_BIT; /* what it publishes here is from a core */
    k->link_seq = cl.net.eng->router.seq;
    c->sub.push = true; /* exempt from the idle sweep: a link has nothing to ask */
    k->link = c;
    k->links++;
    k->asked_ms = engine_now_ms(); /* the handshake (or first poll) is the first ping */
    struct timeval ptv = {0, PING_MS * 1000};
    event_add(k->ping, &ptv);
    if (k->polling) {
        /* The original Kraken: no push mode, no `version`; the first reply
         * to a poll marks the link up. */
        struct timeval tv = {k->poll_ms / 1000, (k->poll_ms % 1000) * 1000};
        evbuffer_add(c->out, "get messages\r\n", 14);
        event_add(k->poll, &tv);
    } else {
        evbuffer_add(c->out, "set push 0 0 2 noreply\r\non\r\n", 28);
        /* A member of the cluster: we are its peer, or, below a proxy, its
         * child (it subscribes upstream for us).  A static upstream that
         * takes push mode is a Kraken in C node: its child too, so that it
         * answers our link_retro (one that does not know `set child'
         * answers an error: polled then, as the original). */
        evbuffer_add_printf(c->out, "set %s 0 0 %zu noreply\r\n%s\r\n",
                            k->poll_ms <= 0 && !k->parent ? "peer" : "child", cl.self_len,
                            cl.self);
        evbuffer_add(c->out, "version\r\n", 9);
        k->ver_sent++;
        cluster_pattern_link_open(k); /* (batched: before any sync barrier) */
    }
    cl.net.kick(c);
}

static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    struct cluster_core *k = arg;
    (void)fd;
    (void)what;
    if (!k->link || conn_is_closing(k->link))
        return;
    cluster_emit(k); /* what is batched goes before the poll */
    if (k->asked_ms < 0)
        k->asked_ms = engine_now_ms();
    evbuffer_add(k->link->out, "get messages\r\n", 14);
    cl.net.kick(k->link);
}

bool cluster_link_polls(struct conn *link)
{
    struct cluster_core *k = link_state(link)->core;
    return !k || k->polling;
}

bool cluster_link_push_refused(struct conn *link)
{
    struct cluster_core *k = link_state(link)->core;
    if (!k || k->poll_ms <= 0 || k->polling)
        return false;
    k->polling = true;
    klog(LOG_INFO, "cluster: upstream %s refused push mode; polling it every %d ms", k->name,
         k->poll_ms);
    return true;
}

void cluster_link_up(struct conn *link)
{
    struct cluster_core *k = link_state(link)->core;
    if (k)
        klog(LOG_INFO, "cluster: upstream link to core %s (%s) is up", k->name, link->peer);
}

void cluster_link_closed(struct conn *link)
{
    struct cluster_core *k = link_state(link)->core;
    link_state(link)->core = NULL;
    if (link_state(link)->eof && k->poll_ms > 0 && !k->polling) {
        /* Connected, then closed before it answered the handshake: the
         * original Kraken does so on `set push ... noreply' (it knows no
         * noreply).  Polled, a Kraken in C upstream works too. */
        k->polling = true;
        klog(LOG_INFO, "cluster: upstream %s closed the link at the handshake (push mode "
             "refused); polling it every %d ms", k->name, k->poll_ms);
    }
    k->link = NULL;
    pin_drop(&k->unpin, &cl.net.eng->router.topics, k); /* nothing more comes on it */
    k->unpin_ask = false;
    if (k->poll)
        event_del(k->poll);
    event_del(k->ping);
    evbuffer_drain(k->pend, evbuffer_get_length(k->pend));
    k->pend_op = OP_NONE;
    k->ver_sent = k->ver_answered = k->sync_ver = 0; /* nothing more is owed */
    if (link_state(link)->up)
        klog(LOG_WARNING, "cluster: upstream link to core %s (%s) lost; retrying", k->name,
             link->peer);
    else
        klog(LOG_DEBUG, "cluster: cannot reach core %s (%s); retrying", k->name, link->peer);
    cluster_doom_holders(index_of(k), "whose upstream link was lost");
    cluster_pub_lost(k);
    ack_fifo_fail(&k->acks, cluster_ack_done, k); /* nothing more will be answered on it */
    cluster_retro_fail(k);
    cluster_subref_free(k);
    k->reopen = true;
    schedule_retry(k);
}

void cluster_link_events(struct cluster_core *k, struct event_base *base)
{
    k->retry = evtimer_new(base, retry_cb, k);
    k->poll = event_new(base, -1, EV_PERSIST, poll_cb, k);
    k->ping = event_new(base, -1, EV_PERSIST, ping_cb, k);
}
