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
 * too); this node's own entries are still taken by sequence.
 *
 * Across a move (docs/cluster.md, "Across moves"): a topic that had more
 * than one owner since the horizon (this node's history of owner sets,
 * cluster_served.c) is asked of each other one with
 *
 *   set link_entered 0 0 <n>\r\n<horizon second> <since second>\r\n<topics>\r\n
 *
 * answered as link_retro but with only the entries that entered the
 * cluster there (cluster_entered.h); one request per core, the first to
 * carry a topic adds this node's own entries of it: those that entered
 * here, and those it forwarded to their owner of the time on the link still
 * open (own_pair).  The union has each (entry, topic) once: every entry
 * entered at exactly one owner. */
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
    bool entered;                    /* a link_entered request (across a move) */
    uint32_t ntopics;
    struct topic **topics;           /* referenced (topic_ref) */
    bool *held;                      /* the client held topics[i] when it asked */
    bool *own;                       /* this request adds this node's own entries
                                        of topics[i] (one request per topic does) */
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
    free(q->own);
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
        k->retro_head = q->next;
        conn_unlink(q);
        req_free(q);
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

#define MAX_OWNERS 8 /* cores that owned a topic since a horizon, at most */

/* The other cores that owned t since the horizon (cluster_served_owners),
 * each with the second it became one (since[]), when each of them can be
 * asked (a live link that answers), else -1. */
static int entered_owners(const struct topic *t, int kind, int64_t h, int *o, int64_t *since,
                          bool *self_too)
{
    int n = cluster_served_owners(t, kind == ROUTER_BY_SEQ, h, o, since, MAX_OWNERS, self_too);
    for (int i = 0; i < n; i++)
        if (!can_fetch(cl.cores[o[i]]))
            return -1;
    return n;
}

/* Whether k alone owned t since the horizon, as far as the history tells
 * (it does not reach back: as before the history, k is taken to). */
static bool single_owner(const struct topic *t, int kind, int64_t h, int k)
{
    int o[MAX_OWNERS];
    int64_t since[MAX_OWNERS];
    bool self_too;
    int n = cluster_served_owners(t, kind == ROUTER_BY_SEQ, h, o, since, MAX_OWNERS, &self_too);
    return n < 0 || (n == 1 && o[0] == k && !self_too);
}

enum plan { PLAN_LOCAL, PLAN_TOO_OLD, PLAN_PLAIN, PLAN_ENTERED };

/* Where the entries of channel t since the horizon come from (see
 * cluster_retro_classify).  PLAN_ENTERED: from each other core that owned
 * it since (o[0..*no), since[]: when each became one), each giving what
 * entered the cluster there, and from this node for what entered here;
 * PLAN_PLAIN: from its owner k (owner_index).  *why: for PLAN_TOO_OLD. */
static enum plan plan(const struct topic *t, int kind, int64_t h, int *o, int64_t *since,
                      int *no, const char **why)
{
    int k = owner_index(t);
    bool self_too = false;
    struct cluster_point served;
    if (k < 0) {
        /* Owned here: complete since it became ours (cluster_served.c). */
        if (!cluster_served_since(t, &served) ||
            !(kind == ROUTER_BY_SEQ ? served.seq > (uint64_t)h : served.time > h))
            return PLAN_LOCAL;
        *no = entered_owners(t, kind, h, o, since, &self_too);
        *why = "it became owned here after the horizon, and the owner sets remembered do not "
               "reach back to it, or a core that owned it since is not live";
        return *no >= 1 ? PLAN_ENTERED : PLAN_TOO_OLD;
    }
    bool covered = kind == ROUTER_BY_SEQ ? t->upstream_seq <= (uint64_t)h
                                         : t->upstream_since < h;
    if (covered && !t->upstream_pending)
        return PLAN_LOCAL;
    *no = entered_owners(t, kind, h, o, since, &self_too);
    if (*no > 1 || (*no == 1 && self_too))
        return PLAN_ENTERED; /* another owner since (or this node): ask each */
    /* Moving (its owner under alt is another core) and the history cannot
     * tell where its entries entered: the one under cur answers only for
     * itself.  NOT_FOUND: the client reloads. */
    int a = cluster_owner_in(&cl.alt, cluster_name_hash(t->name, t->len));
    *why = a != k ? "it is moving, and the owner sets remembered do not reach back to the "
                    "horizon, or a core that owned it since is not live"
                  : "its owner cannot be asked (a polled upstream, or its link is down)";
    return can_fetch(cl.cores[k]) && a == k ? PLAN_PLAIN : PLAN_TOO_OLD;
}

/* A topic served here: the retention is the owner's, complete since the
 * topic became owned here (cluster_served.c).  A topic owned elsewhere held
 * upstream (confirmed) since before the horizon (a `retro_subscribe` second
 * strictly later than the upstream subscription's; a `register` made after
 * it): this node's retention.  Otherwise, when it has had one owner since
 * the horizon, that owner is asked, and so for every topic of that owner in
 * the request, so that the answer keeps each publisher's order on that
 * core.  When it has had several (a move since the horizon, or under way;
 * served here or not), each of them is asked for what entered the cluster
 * there (link_entered), and this node adds its own (cluster_served.c tells
 * which, and whether they are all live; else too old).  A polled upstream
 * (the original Kraken) cannot be asked: too old.  A proxy that sees no
 * live core can vouch for nothing: too old. */
void cluster_retro_classify(struct topic *const *topics, uint32_t n, int kind, int64_t h,
                            uint8_t *src, void *arg)
{
    (void)arg;
    bool ask[64] = {false}; /* by core index; more cores than that: asked per topic */
    int o[MAX_OWNERS], no;
    int64_t since[MAX_OWNERS];
    for (uint32_t i = 0; i < n; i++) {
        const struct topic *t = topics[i];
        if (t->ns != TOPIC_NS_CHANNEL)
            continue;
        if (cl.n == 0) {
            src[i] = ROUTER_RETRO_TOO_OLD; /* alone (cluster.c) */
            continue;
        }
        const char *why = "";
        enum plan p = plan(t, kind, h, o, since, &no, &why);
        if (p == PLAN_TOO_OLD)
            klog(LOG_INFO, "cluster: a retroactive subscription from %s %" PRId64 " to %.*s is "
                 "answered NOT_FOUND: %s", kind == ROUTER_BY_SEQ ? "publish" : "second", h,
                 (int)(t->len < 200 ? t->len : 200), t->name, why);
        src[i] = p == PLAN_LOCAL ? ROUTER_RETRO_LOCAL
                 : p == PLAN_TOO_OLD ? ROUTER_RETRO_TOO_OLD : ROUTER_RETRO_UPSTREAM;
        int k = owner_index(t);
        if (p == PLAN_PLAIN && k < 64)
            ask[k] = true;
    }
    /* (Not a topic that k gained since the horizon, held here since before
     * it: k would answer for what entered there only.) */
    for (uint32_t i = 0; i < n; i++) {
        int k = owner_index(topics[i]);
        if (k >= 0 && k < 64 && ask[k] && src[i] == ROUTER_RETRO_LOCAL &&
            single_owner(topics[i], kind, h, k))
            src[i] = ROUTER_RETRO_UPSTREAM;
    }
}

/* Sends one request to k for the topics ts[i] with pick[i] (link_entered
 * when `entered', k an owner of them since the second `since' at the
 * earliest; else link_retro), and makes c wait for its answer; own[i]: this
 * request adds this node's own entries of ts[i].  Returns false when out
 * of memory. */
static bool ask(struct cluster_core *k, struct conn *c, struct topic *const *ts,
                const bool *held, const bool *pick, const bool *own, uint32_t n, bool entered,
                int64_t since, int kind, int64_t h, int64_t h_time)
{
    struct cluster_retro_req *q = calloc(1, sizeof *q);
    if (!q || !(q->topics = malloc(n * sizeof *q->topics)) ||
        !(q->held = malloc(n * sizeof *q->held)) || !(q->own = malloc(n * sizeof *q->own))) {
        if (q) {
            free(q->topics);
            free(q->held);
        }
        free(q);
        return false;
    }
    int64_t horizon = kind == ROUTER_BY_TIME ? h : h_time - 1;
    size_t len = proto_digits((uint64_t)(horizon < 0 ? 0 : horizon)) + 2;
    if (since < 0)
        since = 0;
    if (entered)
        len += 1 + proto_digits((uint64_t)since);
    for (uint32_t i = 0; i < n; i++)
        if (pick[i]) {
            len += (q->ntopics ? 1 : 0) + ts[i]->len;
            q->held[q->ntopics] = held[i];
            q->own[q->ntopics] = own[i];
            q->topics[q->ntopics++] = ts[i];
            topic_ref(ts[i]);
        }
    q->core = k;
    q->entered = entered;
    q->req_seq = router()->seq;
    /* A plain answer has every entry of the owner's but those forwarded on
     * this link; a link_entered one, what entered there: which of this
     * node's own are in it is told per entry (own_pair). */
    q->from_seq = entered ? 0 : k->link_seq;
    if (kind == ROUTER_BY_SEQ && (uint64_t)h > q->from_seq)
        q->from_seq = (uint64_t)h;
    q->from_time = kind == ROUTER_BY_TIME ? h : INT64_MIN;
    q->count0 = c->sub.queue.count;

    cluster_emit(k); /* what is batched (this topic's subscribe, publishes) goes first */
    struct evbuffer *out = k->link->out;
    if (entered)
        evbuffer_add_printf(out, "set link_entered 0 0 %zu\r\n%" PRId64 " %" PRId64 "\r\n", len,
                            horizon < 0 ? 0 : horizon, since);
    else
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

/* The requests of cluster_retro_defer: the plain ones (to each topic's
 * owner, for the topics of that owner), then the link_entered ones (to each
 * core that owned one of the topics since the horizon; the first to carry a
 * topic adds this node's own entries of it).  False: out of memory. */
static bool ask_all(struct conn *c, struct topic *const *ts, const bool *held, uint32_t n,
                    int kind, int64_t h, int64_t h_time, const uint8_t *plans,
                    const uint64_t *owners, const int64_t *since, bool *pick, bool *own)
{
    for (uint32_t i = 0; i < n; i++) {
        int k = owner_index(ts[i]);
        if (plans[i] == PLAN_ENTERED)
            continue;
        bool first = true;
        for (uint32_t j = 0; j < i && first; j++)
            first = plans[j] == PLAN_ENTERED || owner_index(ts[j]) != k;
        if (!first)
            continue;
        for (uint32_t j = 0; j < n; j++)
            own[j] = pick[j] = plans[j] != PLAN_ENTERED && owner_index(ts[j]) == k;
        if (!ask(cl.cores[k], c, ts, held, pick, own, n, false, 0, kind, h, h_time))
            return false;
    }
    bool *carried = own + n; /* a request adds this node's own entries of ts[j] */
    memset(carried, 0, n * sizeof *carried);
    for (size_t k = 0; k < cl.n && k < 64; k++) {
        if (cl.cores[k]->self)
            continue;
        bool any = false;
        for (uint32_t j = 0; j < n; j++) {
            pick[j] = plans[j] == PLAN_ENTERED && (owners[j] >> k & 1);
            own[j] = pick[j] && !carried[j];
            any |= pick[j];
        }
        if (!any)
            continue;
        if (!ask(cl.cores[k], c, ts, held, pick, own, n, true, since[k], kind, h, h_time))
            return false;
        for (uint32_t j = 0; j < n; j++)
            carried[j] |= own[j];
    }
    return true;
}

bool cluster_retro_defer(struct subscriber *s, struct topic *const *ts, const bool *held,
                         uint32_t n, int kind, int64_t h, int64_t h_time, void *arg)
{
    (void)arg;
    struct conn *c = s->owner;
    if (!c || !c->out || c->ops == &proto_link)
        return false;
    /* What classify decided a moment ago, again: a topic handed here is
     * either asked of its owners one by one (PLAN_ENTERED) or of its owner. */
    uint8_t *plans = malloc(n);
    uint64_t *owners = calloc(n, sizeof *owners);
    bool *pick = malloc(n * sizeof *pick), *own = malloc(2 * n * sizeof *own);
    bool ok = plans && owners && pick && own;
    int64_t ksince[64]; /* by core: the earliest second it owned one of them since */
    for (int k = 0; k < 64; k++)
        ksince[k] = INT64_MAX;
    for (uint32_t i = 0; i < n && ok; i++) {
        int o[MAX_OWNERS], no = 0;
        int64_t since[MAX_OWNERS];
        const char *why;
        plans[i] = (uint8_t)plan(ts[i], kind, h, o, since, &no, &why);
        if (plans[i] == PLAN_ENTERED) {
            /* A child's answer is relayed whole (cluster_relay.c), which
             * cannot tell this node's own pairs apart: too old (left). */
            for (int j = 0; j < no; j++) {
                if (o[j] >= 64) {
                    ok = false;
                    continue;
                }
                owners[i] |= (uint64_t)1 << o[j];
                if (since[j] < ksince[o[j]])
                    ksince[o[j]] = since[j];
            }
            if (c->sub.child)
                ok = false;
        } else if (owner_index(ts[i]) < 0 || !can_fetch(cl.cores[owner_index(ts[i])])) {
            ok = false; /* classify said otherwise a moment ago: cannot happen */
        }
    }
    bool asked = ok && ask_all(c, ts, held, n, kind, h, h_time, plans, owners, ksince, pick,
                                 own);
    if (ok && !asked) {
        klog(LOG_ERROR, "%s %" PRIu64 " (%s): out of memory asking the owners for a "
             "retroactive subscription; answering NOT_FOUND", c->ops->log_name, c->sub.id,
             c->peer);
        for (struct cluster_retro_req *q = c->retro; q; q = q->cnext)
            q->refused = true; /* the router answers NOT_FOUND already */
    }
    free(plans);
    free(owners);
    free(pick);
    free(own);
    return asked;
}

/* ---- the answer ---- */

static void refuse(struct conn *c);

/* The answer passed max_client_queue_bytes: q's client gets NOT_FOUND (it
 * reloads), the rest of the answer is read and dropped. */
static void too_long(struct cluster_retro_req *q)
{
    klog(LOG_WARNING, "cluster: core %s's retroactive answer for %s %" PRIu64 " (%s) is longer "
         "than max_client_queue_bytes (%zu); answering NOT_FOUND", q->core->name,
         q->conn->ops->log_name, q->conn->sub.id, q->conn->peer, cl.srv->eng.cfg.max_queue_bytes);
    refuse(q->conn);
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
static void refuse(struct conn *c)
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

/* Queues e (of an answer: it lists q's topics only, each marked m1 or m2)
 * to s. */
static int enqueue_got(struct router *r, struct subscriber *s, struct entry *e, uint64_t m1,
                       uint64_t m2)
{
    struct qitem *it = queue_push(&s->queue, e);
    if (!it) {
        router_fail_subscriber(r, s);
        return -1;
    }
    for (uint32_t i = 0; i < e->ntopics; i++)
        if ((e->topics[i]->mark == m1 || e->topics[i]->mark == m2) && qitem_add_topic(it, i) < 0)
            router_fail_subscriber(r, s);
    router_commit(r, s);
    return 0;
}

/* Queues e (one of local_entries') to s listing its pairs own_pair takes. */
static int enqueue_own(struct router *r, struct subscriber *s, const struct cluster_retro_req *q,
                       struct entry *e, uint64_t omark)
{
    struct qitem *it = queue_push(&s->queue, e);
    if (!it) {
        router_fail_subscriber(r, s);
        return -1;
    }
    for (uint32_t i = 0; i < e->ntopics; i++)
        if (own_pair(q, e, i, omark) > 0 && qitem_add_topic(it, i) < 0)
            router_fail_subscriber(r, s);
    router_commit(r, s);
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
        refuse(c);
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
        refuse(c);
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
        refuse(c);
        return;
    }
    ncut = queue_cut(&s->queue, from, cut);
    size_t a = 0, b = 0;
    if (c->relay) {
        /* A child's link_retro: the entries go into its answer, not its
         * queue (cluster_relay.c). */
        if (cluster_relay_add(c, q->got, q->ngot) < 0 ||
            cluster_relay_add(c, mine, (size_t)nmine) < 0)
            refuse(c);
        a = q->ngot;
        b = (size_t)nmine;
    }
    while ((a < q->ngot || b < (size_t)nmine) && !s->overflowed) {
        bool take_got = b == (size_t)nmine || (a < q->ngot && q->got[a]->time <= mine[b]->time);
        /* (an answer's entries list q's topics only, marked tmark or omark) */
        int rc = take_got ? enqueue_got(r, s, q->got[a++], tmark, omark)
                          : enqueue_own(r, s, q, mine[b++], omark);
        if (rc < 0)
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
    if (!found)
        klog(LOG_INFO, "cluster: core %s answered NOT_FOUND to a %s (its retention lost entries "
             "after the horizon)", k->name, q->entered ? "link_entered" : "link_retro");
    if (c && !conn_is_closing(c) && !c->sub.overflowed) {
        if (!found || q->refused)
            refuse(c);
        else
            deliver(q);
    }
    conn_unlink(q);
    req_free(q);
    if (c)
        cluster_relay_finish(c);
}
