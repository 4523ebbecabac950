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
 * The answers are taken in, and merged into the client's queue, by
 * cluster_retro_answer.c.
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
 * entered at exactly one owner.  A child's link_retro (a proxy below this
 * node) takes the same path, its answer relayed (cluster_relay.c). */
#include <event2/buffer.h>
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
void cluster_retro_req_free(struct cluster_retro_req *q)
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

void cluster_retro_unlink(struct cluster_retro_req *q)
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
        cluster_retro_unlink(q);
        cluster_retro_req_free(q);
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
    int k = cluster_owner_of(t, topic_fnv(t)); /* (its pin) */
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
    if (cl.sticky)
        return true; /* below parents: asked of one parent (plan) */
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
    bool covered = kind == ROUTER_BY_SEQ ? topic_up(t)->seq <= (uint64_t)h
                                         : topic_up(t)->since < h;
    if (covered && !t->upstream_pending)
        return PLAN_LOCAL;
    if (cl.sticky) {
        /* Below parents: no owner set history means anything (parents own
         * nothing, and a pinned topic is not where the hash says): the
         * parent it goes to asks the owners since the horizon itself. */
        *why = "its parent cannot be asked (its link is down)";
        return can_fetch(cl.cores[k]) ? PLAN_PLAIN : PLAN_TOO_OLD;
    }
    *no = entered_owners(t, kind, h, o, since, &self_too);
    if (*no > 1 || (*no == 1 && self_too))
        return PLAN_ENTERED; /* another owner since (or this node): ask each */
    /* Moving (its owner under alt is another core) and the history cannot
     * tell where its entries entered: the one under cur answers only for
     * itself.  NOT_FOUND: the client reloads. */
    int a = cluster_owner_in(&cl.alt, topic_fnv(t));
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
    cl.net.kick(k->link);

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
    struct conn *c = conn_of(s);
    if (!c || !c->out || conn_is_uplink(c))
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
            for (int j = 0; j < no; j++) {
                if (o[j] >= 64) {
                    ok = false;
                    continue;
                }
                owners[i] |= (uint64_t)1 << o[j];
                if (since[j] < ksince[o[j]])
                    ksince[o[j]] = since[j];
            }
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
