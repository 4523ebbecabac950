/* cluster_retro.c - retroactive subscription through a node that does not
 * own the topics (docs/cluster.md, "Retroactive subscription"; plan item 3).
 *
 * A node's retention holds a topic owned elsewhere only since it subscribed
 * to it upstream.  When a client's `retro_subscribe` (or `register` +
 * `subscribe`, Redis KRAKEN.RETROSUBSCRIBE) asks for more than that, the
 * router hands the topics to this file (retro_classify says UPSTREAM,
 * retro_defer fetches): for each owner concerned the node sends, after
 * whatever is batched for that core,
 *
 *   set link_retro 0 0 <n>\r\n<horizon second>\r\n<topics>\r\n
 *
 * an acknowledged request (cluster_ack.h: the client's reply is held until
 * it is answered).  The owner subscribes the link, writes first whatever it
 * had queued for the link, then answers with the entries published after
 * the horizon, listing only the requested topics, in `VALUE retro <second>
 * <n>` blocks, then STORED (or NOT_FOUND: really gone there).  So on the
 * link every entry for those topics published at the owner before the
 * request comes before the answer, and every one published after comes
 * after it, live.
 *
 * When the answer is complete, the client's queue is rebuilt: the items
 * queued to it since its request (it is held: nothing was sent) are taken
 * out; the entries of the answer go in, merged by second with the entries
 * of those topics published on this node itself before the request (the
 * owner leaves out what the link published, which is what this node
 * forwarded: those come from this node's retention); then the items taken
 * out go back, without the (entry, topic) pairs for the requested topics
 * that came from that core's link (all of them published before the
 * request reached the owner: the answer has them), except for the topics
 * the client already held when it asked (their in-flight entries may be
 * older than the horizon, so not in the answer: kept, at the price of a
 * possible second copy of one published after the horizon).  Otherwise
 * each (entry, topic) reaches the client once, in each publisher's order.
 *
 * The entries of an answer go to the client that asked only: other local
 * subscribers have them already (or subscribed later), and the node's
 * retention keeps publish order (they are older than what it holds), so
 * another client asking for the same past asks the owner again.
 *
 * A register horizon is a position in this node's publish sequence, which
 * means nothing at the owner: the owner is asked from the register's
 * second (entries of that second published before the register may come
 * too); this node's own entries are still taken by sequence. */
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"
#include "engine.h"
#include "log.h"
#include "proto_link.h"
#include "server.h"

struct cluster_retro_req {
    struct cluster_core *core;
    struct conn *conn;               /* the client; NULL once it went away */
    struct cluster_retro_req *next;  /* in core's FIFO */
    struct cluster_retro_req *cnext; /* in the client's list */
    uint64_t ack;                    /* its number in core->acks */
    uint64_t req_seq;                /* the router's seq when asked */
    uint64_t from_seq;               /* this node's entries after this seq ... */
    int64_t from_time;               /* ... and after this second are wanted */
    uint32_t count0;                 /* the client's queue length when asked */
    bool refused;                    /* the request is answered NOT_FOUND */
    uint32_t ntopics;
    struct topic **topics;           /* referenced (topic_ref) */
    bool *held;                      /* the client held topics[i] when it asked */
    struct entry **got;              /* the answer's entries, by second */
    size_t ngot, capgot;
    size_t got_bytes;                /* the answer's length so far */
};

static struct router *router(void)
{
    return &cl.srv->eng.router;
}

/* Grows *v (of *cap entries) to hold n. */
static int reserve(struct entry ***v, size_t *cap, size_t n)
{
    if (n <= *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 16;
    struct entry **p = realloc(*v, c * sizeof *p);
    if (!p)
        return -1;
    *v = p;
    *cap = c;
    return 0;
}

static void req_free(struct cluster_retro_req *q)
{
    for (size_t i = 0; i < q->ngot; i++)
        entry_unref(q->got[i]);
    free(q->got);
    for (uint32_t i = 0; i < q->ntopics; i++)
        topic_unref(&router()->topics, q->topics[i]);
    free(q->topics);
    free(q->held);
    free(q);
}

/* Unlinks q from its client's list. */
static void conn_unlink(struct cluster_retro_req *q)
{
    if (!q->conn)
        return;
    struct cluster_retro_req **p = &q->conn->retro;
    while (*p && *p != q)
        p = &(*p)->cnext;
    if (*p)
        *p = q->cnext;
    q->conn = NULL;
}

void cluster_retro_forget(struct conn *c)
{
    cluster_relay_free(c);
    while (c->retro) {
        struct cluster_retro_req *q = c->retro;
        c->retro = q->cnext;
        q->conn = NULL;
    }
}

void cluster_retro_fail(struct cluster_core *k)
{
    while (k->retro_head) {
        struct cluster_retro_req *q = k->retro_head;
        struct conn *c = q->conn;
        k->retro_head = q->next;
        conn_unlink(q);
        req_free(q);
        if (c) {
            /* A child's relayed answer cannot be complete: dropped, freed
             * (its held reply was made NOT_FOUND: cluster_child_wait_failed). */
            cluster_relay_refused(c);
            cluster_relay_finish(c);
        }
    }
    k->retro_tail = NULL;
}

/* ---- the router's hooks ---- */

static int owner_index(const struct topic *t)
{
    if (t->ns != TOPIC_NS_CHANNEL)
        return -1;
    int k = cluster_owner_raw(t->name, t->len);
    return k >= 0 && cl.cores[k]->self ? -1 : k;
}

/* A node to which the link said `set peer` or `set child` answers
 * link_retro: every one but a polled upstream (the original Kraken, or an
 * engine that refused `set push' or `set child'). */
static bool can_fetch(const struct cluster_core *k)
{
    return k->link && !conn_is_closing(k->link) && !k->polling;
}

/* A topic served here: the retention is the owner's, complete since the
 * topic became owned here (cluster_served.c); a horizon before that is too
 * old (the entries entered at its previous owner).  A topic owned
 * elsewhere held upstream (confirmed) since before the horizon (a
 * `retro_subscribe` second strictly later than the upstream subscription's;
 * a `register` made after it): this node's retention.  Otherwise its owner
 * is asked, and so for every topic of that owner in the request, so that
 * the answer keeps each publisher's order on that core; unless the topic is
 * moving (owned by another core under alt): too old, since entries after
 * the horizon may have entered at either owner.  A polled upstream (the
 * original Kraken) cannot be asked: too old.  A proxy that sees no live
 * core can vouch for nothing: too old. */
void cluster_retro_classify(struct topic *const *topics, uint32_t n, int kind, int64_t h,
                            uint8_t *src, void *arg)
{
    (void)arg;
    bool ask[64] = {false}; /* by core index; more cores than that: asked per topic */
    for (uint32_t i = 0; i < n; i++) {
        const struct topic *t = topics[i];
        if (t->ns == TOPIC_NS_CHANNEL && cl.n == 0) {
            src[i] = ROUTER_RETRO_TOO_OLD; /* alone (cluster.c) */
            continue;
        }
        int k = owner_index(t);
        struct cluster_point since;
        if (k < 0) {
            /* Owned here: complete since it became ours (cluster_served.c). */
            if (t->ns == TOPIC_NS_CHANNEL && cluster_served_since(t, &since) &&
                (kind == ROUTER_BY_SEQ ? since.seq > (uint64_t)h : since.time > h))
                src[i] = ROUTER_RETRO_TOO_OLD;
            continue;
        }
        bool covered = kind == ROUTER_BY_SEQ ? t->upstream_seq <= (uint64_t)h
                                             : t->upstream_since < h;
        if (covered && !t->upstream_pending)
            continue;
        /* Moving (its owner under alt is another core): an entry since the
         * horizon may have entered at either owner, and the one under cur
         * answers only for itself.  NOT_FOUND: the client reloads. */
        int a = cluster_owner_in(&cl.alt, cluster_name_hash(t->name, t->len));
        src[i] = can_fetch(cl.cores[k]) && a == k ? ROUTER_RETRO_UPSTREAM
                                                   : ROUTER_RETRO_TOO_OLD;
        if (src[i] == ROUTER_RETRO_UPSTREAM && k < 64)
            ask[k] = true;
    }
    for (uint32_t i = 0; i < n; i++) {
        int k = owner_index(topics[i]);
        if (k >= 0 && k < 64 && ask[k] && src[i] == ROUTER_RETRO_LOCAL)
            src[i] = ROUTER_RETRO_UPSTREAM;
    }
}

/* Sends one link_retro request to k for the topics of ts owned by k, and
 * makes c wait for its answer.  Returns false when out of memory. */
static bool ask(struct cluster_core *k, int kidx, struct conn *c, struct topic *const *ts,
                const bool *held, uint32_t n, int kind, int64_t h, int64_t h_time)
{
    struct cluster_retro_req *q = calloc(1, sizeof *q);
    if (!q || !(q->topics = malloc(n * sizeof *q->topics)) ||
        !(q->held = malloc(n * sizeof *q->held))) {
        if (q)
            free(q->topics);
        free(q);
        return false;
    }
    int64_t horizon = kind == ROUTER_BY_TIME ? h : h_time - 1;
    size_t len = proto_digits((uint64_t)(horizon < 0 ? 0 : horizon)) + 2;
    for (uint32_t i = 0; i < n; i++)
        if (owner_index(ts[i]) == kidx) {
            len += (q->ntopics ? 1 : 0) + ts[i]->len;
            q->held[q->ntopics] = held[i];
            q->topics[q->ntopics++] = ts[i];
            topic_ref(ts[i]);
        }
    q->core = k;
    q->req_seq = router()->seq;
    q->from_seq = k->link_seq;
    if (kind == ROUTER_BY_SEQ && (uint64_t)h > q->from_seq)
        q->from_seq = (uint64_t)h;
    q->from_time = kind == ROUTER_BY_TIME ? h : INT64_MIN;
    q->count0 = c->sub.queue.count;

    cluster_emit(k); /* what is batched (this topic's subscribe, publishes) goes first */
    struct evbuffer *out = k->link->out;
    evbuffer_add_printf(out, "set link_retro 0 0 %zu\r\n%" PRId64 "\r\n", len,
                        horizon < 0 ? 0 : horizon);
    for (uint32_t i = 0; i < q->ntopics; i++) {
        if (i)
            evbuffer_add(out, " ", 1);
        evbuffer_add(out, q->topics[i]->name, q->topics[i]->len);
    }
    evbuffer_add(out, "\r\n", 2);
    q->ack = ack_fifo_send(&k->acks);
    if (k->retro_tail)
        k->retro_tail->next = q;
    else
        k->retro_head = q;
    k->retro_tail = q;
    server_kick(k->link);

    bool was_held = conn_held(c);
    if (ack_wait(&k->acks, &c->acks, q->ack) < 0)
        return false; /* q stays in the FIFO, forgotten by nobody: c is not linked */
    if (!was_held)
        c->held_from = evbuffer_get_length(c->out); /* its reply comes next */
    c->held_sub = true; /* executes nothing more until answered (conn_blocked) */
    q->conn = c;
    q->cnext = c->retro;
    c->retro = q;
    return true;
}

bool cluster_retro_defer(struct subscriber *s, struct topic *const *ts, const bool *held,
                         uint32_t n, int kind, int64_t h, int64_t h_time, void *arg)
{
    (void)arg;
    struct conn *c = s->owner;
    if (!c || !c->out || c->ops == &proto_link)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        int k = owner_index(ts[i]);
        if (k < 0 || !can_fetch(cl.cores[k]))
            return false; /* classify said otherwise a moment ago: cannot happen */
        bool first = true;
        for (uint32_t j = 0; j < i && first; j++)
            first = owner_index(ts[j]) != k;
        if (first && !ask(cl.cores[k], k, c, ts, held, n, kind, h, h_time)) {
            klog(LOG_ERROR, "%s %" PRIu64 " (%s): out of memory asking core %s for a "
                 "retroactive subscription; answering NOT_FOUND", c->ops->log_name, c->sub.id,
                 c->peer, cl.cores[k]->name);
            for (struct cluster_retro_req *q = c->retro; q; q = q->cnext)
                q->refused = true; /* the router answers NOT_FOUND already */
            return false;
        }
    }
    return true;
}

/* ---- the answer ---- */

/* The answer passed max_client_queue_bytes: q's client gets NOT_FOUND (it
 * reloads), the rest of the answer is read and dropped. */
static void too_long(struct cluster_retro_req *q)
{
    klog(LOG_WARNING, "cluster: core %s's retroactive answer for %s %" PRIu64 " (%s) is longer "
         "than max_client_queue_bytes (%zu); answering NOT_FOUND", q->core->name,
         q->conn->ops->log_name, q->conn->sub.id, q->conn->peer, cl.srv->eng.cfg.max_queue_bytes);
    cluster_retro_refuse(q->conn);
    for (size_t i = 0; i < q->ngot; i++)
        entry_unref(q->got[i]);
    q->ngot = 0;
}

/* Only the requested topics of an entry are kept, each once; an entry
 * listing none of them is skipped (the owner never sends such: logged). */
int cluster_link_retro_block(struct conn *link, int64_t time, const char *block, size_t len)
{
    struct cluster_core *k = link_state(link)->core;
    struct cluster_retro_req *q = k ? k->retro_head : NULL;
    if (!q || q->ack != k->acks.answered + 1) {
        klog(LOG_WARNING, "cluster: core %s sent retroactive entries nobody asked for",
             k ? k->name : "?");
        return -1;
    }
    struct engine *eng = &cl.srv->eng;
    struct router *r = router();
    if (q->conn && !q->refused && (q->got_bytes += len) > eng->cfg.max_queue_bytes)
        too_long(q);
    uint64_t want = ++r->epoch, seen = ++r->epoch;
    for (uint32_t i = 0; i < q->ntopics; i++)
        q->topics[i]->mark = want;
    const char *cur = block, *end = block + len, *error;
    struct proto_entry pe;
    int rc;
    long skipped = 0;
    while ((rc = proto_next_entry(&cur, end, &pe, &error)) == 1) {
        if (!q->conn || q->refused)
            continue; /* nobody to give it to */
        long nt = engine_split_topics(eng, pe.topics.p, pe.topics.len);
        if (nt < 0 || (q->ngot == q->capgot &&
                       reserve(&q->got, &q->capgot, q->ngot + 1) < 0))
            return -1;
        struct topic *tv[64], **tp = tv;
        if (nt > 64 && !(tp = malloc((size_t)nt * sizeof *tp)))
            return -1;
        uint32_t m = 0;
        for (long i = 0; i < nt; i++) {
            struct topic *t = topic_find(&r->topics, TOPIC_NS_CHANNEL, eng->slices[i].p,
                                         eng->slices[i].len);
            if (t && t->mark == want) {
                t->mark = seen;
                tp[m++] = t;
            } else {
                skipped++;
            }
        }
        for (uint32_t i = 0; i < m; i++)
            tp[i]->mark = want;
        struct entry *e = m ? entry_new(&r->entries, tp, m, pe.payload.p, pe.payload.len)
                            : NULL;
        if (tp != tv)
            free(tp);
        if (!m)
            continue;
        if (!e)
            return -1;
        e->time = time;
        e->publish_ms = entry_clock_ms();
        e->publisher = link->sub.id;
        q->got[q->ngot++] = e;
    }
    if (skipped)
        klog(LOG_WARNING, "cluster: core %s listed %ld topic(s) in a retroactive answer that "
             "were not asked for (or twice); left out", k->name, skipped);
    return rc < 0 ? -1 : 0;
}

/* The client's answer becomes NOT_FOUND (once per request). */
void cluster_retro_refuse(struct conn *c)
{
    bool already = false;
    for (struct cluster_retro_req *q = c->retro; q; q = q->cnext) {
        already |= q->refused;
        q->refused = true;
    }
    if (!already && c->ops->retro_refused)
        c->ops->retro_refused(c);
    cluster_relay_refused(c);
}

static int cmp_seq(const void *a, const void *b)
{
    uint64_t x = (*(struct entry *const *)a)->seq, y = (*(struct entry *const *)b)->seq;
    return x < y ? -1 : x > y;
}

/* This node's own entries (not from a link, not the client's) on q's
 * topics (marked tmark) published after the horizon and before the
 * request, by seq; into *out (malloc'd).  Returns the count, -1 on failure. */
static long local_entries(struct cluster_retro_req *q, struct subscriber *s, uint64_t tmark,
                          struct entry ***out)
{
    struct router *r = router();
    uint64_t emark = ++r->epoch, smark = ++r->epoch;
    struct entry **v = NULL;
    size_t n = 0, cap = 0;
    for (uint32_t i = 0; i < q->ntopics; i++) {
        struct retain *sh = &r->shards[q->topics[i]->shard];
        if (sh->mark == smark)
            continue;
        sh->mark = smark;
        for (uint32_t j = retain_first_after_seq(sh, q->from_seq); j < sh->count; j++) {
            struct entry *e = retain_at(sh, j);
            if (e->seq > q->req_seq)
                break;
            if (e->mark == emark || e->time <= q->from_time ||
                (e->publisher & CLUSTER_LINK_ID_BIT) || e->publisher == s->id)
                continue;
            e->mark = emark;
            bool match = false;
            for (uint32_t k = 0; k < e->ntopics && !match; k++)
                match = e->topics[k]->mark == tmark;
            if (!match)
                continue;
            if (n == cap && reserve(&v, &cap, n + 1) < 0) {
                free(v);
                return -1;
            }
            v[n++] = e;
        }
    }
    if (n > 1)
        qsort(v, n, sizeof *v, cmp_seq);
    *out = v;
    return (long)n;
}

/* Whether this node's retention still holds every entry local_entries wants. */
static bool local_covered(const struct cluster_retro_req *q)
{
    for (uint32_t i = 0; i < q->ntopics; i++) {
        const struct retain *sh = &router()->shards[q->topics[i]->shard];
        if (sh->dropped_seq > q->from_seq && sh->dropped_time > q->from_time)
            return false;
    }
    return true;
}

/* Re-queues a cut item without the (entry, topic) pairs of q's topics
 * (marked tmark) that came from the link (link_id). */
static void requeue(struct router *r, struct subscriber *s, struct qitem *it, uint64_t tmark,
                    uint64_t link_id)
{
    struct entry *e = it->e;
    bool strip = e->publisher == link_id;
    struct qitem_iter x;
    uint32_t i;
    struct qitem *n = NULL;
    for (qitem_iter_init(it, &x); qitem_iter_next(it, &x, &i);) {
        if (strip && e->topics[i]->mark == tmark)
            continue;
        if ((!n && !(n = queue_push(&s->queue, e))) || qitem_add_topic(n, i) < 0) {
            router_fail_subscriber(r, s); /* it must not miss entries silently */
            break;
        }
    }
    if (n)
        queue_commit_tail(&s->queue); /* counted when first queued */
    qitem_release(it);
}

/* q's answer is in: rebuild its client's queue (see the top comment). */
static void deliver(struct cluster_retro_req *q)
{
    struct conn *c = q->conn;
    struct subscriber *s = &c->sub;
    struct router *r = router();
    if (!local_covered(q)) {
        cluster_retro_refuse(c);
        return;
    }
    uint64_t tmark = ++r->epoch;
    for (uint32_t i = 0; i < q->ntopics; i++)
        q->topics[i]->mark = tmark;
    struct entry **mine = NULL;
    long nmine = local_entries(q, s, tmark, &mine);
    uint32_t from = q->count0 < s->queue.count ? q->count0 : s->queue.count;
    uint32_t ncut = s->queue.count - from;
    struct qitem *cut = ncut ? malloc(ncut * sizeof *cut) : NULL;
    if (nmine < 0 || (ncut && !cut)) {
        free(mine);
        free(cut);
        klog(LOG_ERROR, "%s %" PRIu64 " (%s): out of memory for its retroactive entries; "
             "answering NOT_FOUND", c->ops->log_name, s->id, c->peer);
        cluster_retro_refuse(c);
        return;
    }
    ncut = queue_cut(&s->queue, from, cut);
    size_t a = 0, b = 0;
    if (c->relay) {
        /* A child's link_retro: the entries go into its answer, not its
         * queue (cluster_relay.c). */
        if (cluster_relay_add(c, q->got, q->ngot) < 0 ||
            cluster_relay_add(c, mine, (size_t)nmine) < 0)
            cluster_retro_refuse(c);
        a = q->ngot;
        b = (size_t)nmine;
    }
    while ((a < q->ngot || b < (size_t)nmine) && !s->overflowed) {
        bool take_got = b == (size_t)nmine || (a < q->ngot && q->got[a]->time <= mine[b]->time);
        struct entry *e = take_got ? q->got[a++] : mine[b++];
        if (router_enqueue_marked(r, s, e, tmark) < 0)
            break; /* s failed: it is disconnected */
    }
    /* A topic the client held all along is not stripped: its entries in
     * flight from the owner's second up to the horizon are not in the
     * answer (an entry after the horizon may then come twice). */
    uint64_t smark = ++r->epoch;
    for (uint32_t i = 0; i < q->ntopics; i++)
        if (!q->held[i])
            q->topics[i]->mark = smark;
    uint64_t link_id = q->core->link ? q->core->link->sub.id : 0;
    for (uint32_t i = 0; i < ncut; i++) {
        if (s->overflowed)
            qitem_release(&cut[i]);
        else
            requeue(r, s, &cut[i], smark, link_id);
    }
    free(cut);
    free(mine);
}

void cluster_retro_answered(struct cluster_core *k, bool found)
{
    struct cluster_retro_req *q = k->retro_head;
    if (!q || q->ack != k->acks.answered + 1)
        return; /* a subscribe batch's answer */
    k->retro_head = q->next;
    if (!k->retro_head)
        k->retro_tail = NULL;
    struct conn *c = q->conn;
    if (c && !conn_is_closing(c) && !c->sub.overflowed) {
        if (!found || q->refused)
            cluster_retro_refuse(c);
        else
            deliver(q);
    }
    conn_unlink(q);
    req_free(q);
    if (c)
        cluster_relay_finish(c);
}
