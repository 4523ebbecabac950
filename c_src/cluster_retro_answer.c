/* cluster_retro_answer.c - the answers of the link_retro and link_entered
 * requests cluster_retro.c sent (docs/cluster.md, "Retroactive
 * subscription", "Across moves"), merged into the asking client's queue.
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
 * A link_entered answer (across a move) has what entered the cluster at
 * that core; the request that carries a topic's own part adds this node's
 * entries that entered here, or that it forwarded to their owner of the
 * time on the link still open (own_pair: that owner leaves those out).
 *
 * A child's link_retro (a proxy below this node, cluster_relay.c) is taken
 * the same way, but the items go into its relayed answer instead of its
 * queue (push): the same (entry, topic) pairs, once each. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"
#include "cluster_retro.h"
#include "engine.h"
#include "log.h"

static struct router *router(void)
{
    return &cl.net.eng->router;
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
/* ---- the answer ---- */

/* The answer passed max_client_queue_bytes: q's client gets NOT_FOUND (it
 * reloads), the rest of the answer is read and dropped. */
static void too_long(struct cluster_retro_req *q)
{
    klog(LOG_WARNING, "cluster: core %s's retroactive answer for %s %" PRIu64 " (%s) is longer "
         "than max_client_queue_bytes (%zu); answering NOT_FOUND", q->core->name,
         q->conn->ops->log_name, q->conn->sub.id, q->conn->peer, cl.net.eng->cfg.max_queue_bytes);
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
    struct engine *eng = cl.net.eng;
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

/* Whether topic i of e, one of this node's own entries (local_entries),
 * goes into q's answer: a topic of q whose own entries q adds (marked
 * omark); for a link_entered request, only if the owners asked leave it
 * out: it entered the cluster here, or this node forwarded it to its owner
 * then on the link still open (the owner leaves out what that link
 * published; an older link's it gives).  -1: that owner is unknown (the
 * history does not reach back to it): the answer cannot be vouched for. */
static int own_pair(const struct cluster_retro_req *q, const struct entry *e, uint32_t i,
                    uint64_t omark)
{
    if (e->topics[i]->mark != omark)
        return 0;
    if (!q->entered || entry_entered_at(e, i))
        return 1;
    int x = cluster_served_owner_at(e->topics[i], e->seq);
    if (x == CLUSTER_OWNER_SELF)
        return 1; /* (not marked: before the cluster was configured) */
    if (x < 0)
        return -1;
    return e->seq > cl.cores[x]->link_seq;
}

/* This node's own entries (not from a link, not the client's) on q's
 * topics whose own entries it adds (marked omark, own_pair) published
 * after the horizon and before the request, by seq; into *out (malloc'd).
 * Returns the count, -1 on failure, -2 when own_pair cannot tell. */
static long local_entries(struct cluster_retro_req *q, struct subscriber *s, uint64_t omark,
                          struct entry ***out)
{
    struct router *r = router();
    uint64_t emark = ++r->epoch, smark = ++r->epoch;
    struct entry **v = NULL;
    size_t n = 0, cap = 0;
    for (uint32_t i = 0; i < q->ntopics; i++) {
        struct retain *sh = &r->shards[q->topics[i]->shard];
        if (!q->own[i] || sh->mark == smark)
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
            int match = 0;
            for (uint32_t k = 0; k < e->ntopics && match >= 0; k++) {
                int m = own_pair(q, e, k, omark);
                match = m < 0 ? m : match | m;
            }
            if (match < 0) {
                free(v);
                return -2;
            }
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

/* Where deliver puts an answer: the client's queue, or, for a child's
 * link_retro, its relayed answer (cluster_relay.c), with the same items:
 * each (entry, topic) once.  A new item of e; NULL when it failed (the
 * client is disconnected, the child's answer refused). */
static struct qitem *push(struct router *r, struct conn *c, struct entry *e)
{
    struct qitem *it = c->relay ? cluster_relay_push(c, e) : queue_push(&c->sub.queue, e);
    if (!it && c->relay)
        cluster_retro_refuse(c);
    else if (!it)
        router_fail_subscriber(r, &c->sub);
    return it;
}

/* Adds topic i to it (push's); on failure, as push. */
static void add(struct router *r, struct conn *c, struct qitem *it, uint32_t i)
{
    if (qitem_add_topic(it, i) == 0)
        return;
    if (c->relay)
        cluster_retro_refuse(c);
    else
        router_fail_subscriber(r, &c->sub);
}

static void commit(struct router *r, struct conn *c)
{
    if (!c->relay)
        router_commit(r, &c->sub);
}

/* Queues e (of an answer: it lists q's topics only, each marked m1 or m2)
 * to c. */
static int enqueue_got(struct router *r, struct conn *c, struct entry *e, uint64_t m1,
                       uint64_t m2)
{
    struct qitem *it = push(r, c, e);
    if (!it)
        return -1;
    for (uint32_t i = 0; i < e->ntopics; i++)
        if (e->topics[i]->mark == m1 || e->topics[i]->mark == m2)
            add(r, c, it, i);
    commit(r, c);
    return 0;
}

/* Queues e (one of local_entries') to c listing its pairs own_pair takes. */
static int enqueue_own(struct router *r, struct conn *c, const struct cluster_retro_req *q,
                       struct entry *e, uint64_t omark)
{
    struct qitem *it = push(r, c, e);
    if (!it)
        return -1;
    for (uint32_t i = 0; i < e->ntopics; i++)
        if (own_pair(q, e, i, omark) > 0)
            add(r, c, it, i);
    commit(r, c);
    return 0;
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
        klog(LOG_INFO, "%s %" PRIu64 " (%s): this node's retention lost some of its own entries "
             "after the horizon of its retroactive subscription; answering NOT_FOUND",
             c->ops->log_name, s->id, c->peer);
        cluster_retro_refuse(c);
        return;
    }
    uint64_t tmark = ++r->epoch, omark = ++r->epoch;
    for (uint32_t i = 0; i < q->ntopics; i++)
        q->topics[i]->mark = q->own[i] ? omark : tmark;
    struct entry **mine = NULL;
    long nmine = local_entries(q, s, omark, &mine);
    if (nmine == -2) {
        klog(LOG_WARNING, "%s %" PRIu64 " (%s): its retroactive subscription reaches entries "
             "older than the owner sets this node remembers; answering NOT_FOUND",
             c->ops->log_name, s->id, c->peer);
        cluster_retro_refuse(c);
        return;
    }
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
    /* A child's link_retro: the entries go into its answer, not its queue
     * (push: cluster_relay.c). */
    while ((a < q->ngot || b < (size_t)nmine) && !s->overflowed) {
        bool take_got = b == (size_t)nmine || (a < q->ngot && q->got[a]->time <= mine[b]->time);
        /* (an answer's entries list q's topics only, marked tmark or omark) */
        int rc = take_got ? enqueue_got(r, c, q->got[a++], tmark, omark)
                          : enqueue_own(r, c, q, mine[b++], omark);
        if (rc < 0)
            break; /* c failed: it is disconnected, or its answer refused */
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
    if (!found)
        klog(LOG_INFO, "cluster: core %s answered NOT_FOUND to a %s (it cannot vouch for the "
             "entries since the horizon: its retention lost some, or they entered the cluster "
             "at a core that is gone)", k->name,
             q->entered ? "link_entered" : "link_retro");
    if (c && !conn_is_closing(c) && !c->sub.overflowed) {
        if (!found || q->refused)
            cluster_retro_refuse(c);
        else
            deliver(q);
    }
    cluster_retro_unlink(q);
    cluster_retro_req_free(q);
    if (c)
        cluster_relay_finish(c);
}
