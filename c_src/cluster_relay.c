/* cluster_relay.c - what a node does for the proxies below it, its
 * children (docs/cluster.md, "A proxy below a proxy"): it answers their
 * `link_retro`, and tells them which of their topics were lost upstream.
 *
 * Lost topics: when a core fails (its link breaks, it leaves the live set),
 * a node disconnects its clients holding one of its topics.  A child's link
 * is such a client, but closing it would disconnect every client of the
 * child that holds any topic through this node.  Instead the child's
 * subscriptions of those topics are dropped here and it is sent
 *
 *   VALUE lost <n>\r\n<topics, space-separated>\r\nEND\r\n
 *
 * (as many blocks as it takes to keep each under LOST_BLOCK bytes, so that
 * a child holding many topics of the lost core never gets a block over its
 * limit, max_client_queue_bytes + max_request_bytes, which would close its
 * link), and disconnects their holders (cluster_link_lost, on the child),
 * saying why.
 *
 * A child waiting for that core's confirmation when it fails (its request
 * held, as any client's) is not closed either (cluster_child_wait_failed):
 * its held publishes forwarded to that core are answered `SERVER_ERROR
 * cluster core unavailable', which the child takes as a refusal of those
 * batches (its publishers get the error, cluster_link_refused: the path of
 * a publish refused at once); the others read with them are answered
 * STORED once their cores confirmed (each held reply is noted with the
 * requests it waits for, cluster_ack.h; refuse_noted);
 * a held link_retro is answered NOT_FOUND; a held subscribe goes on (its
 * topics of the lost core were named in `VALUE lost', which comes first).
 *
 * The link_retro relay:
 *
 * A child's link (`set child`) asks this node for the entries published
 * after a horizon on some topics, as a peer asks a core.  The topics this
 * node can vouch for (held upstream since before the horizon) are answered
 * from its retention at once; the others are fetched from their owners
 * (cluster_retro.c: the child's reply is held meanwhile, as a client's),
 * with `link_retro', or, for a topic that had several owners since the
 * horizon (a move), with `link_entered' to each of them ("Across moves").
 * The answer is a list of items (queue.h: an entry and which of its topics
 * to list), so that it carries each (entry, topic) once, as a client's
 * queue does:
 *
 *   - cluster_relay_begin: when the request is executed, the entries found
 *     here, each listing only the topics answered here;
 *   - cluster_relay_push: as each owner's answer is in, cluster_retro_answer.c
 *     puts into it exactly the items it would queue to a client: the
 *     answer's entries (listing the pairs of that answer: across a move,
 *     what entered the cluster at that core), and this node's own entries
 *     on those topics since the horizon, listing only the pairs this request
 *     adds (own_pair: the owner left them out, this node forwarded them, or
 *     they entered here), never the child's own; meanwhile the child's
 *     queue is rebuilt as a client's;
 *   - cluster_relay_finish: when the last one is in, the items are ordered
 *     by second (stable: each source is in publish order), the items of one
 *     entry become one (the union of their topics: disjoint, each source
 *     lists other pairs), and they are written as `VALUE retro` blocks in
 *     front of the held reply (STORED).  A refused answer (NOT_FOUND) drops
 *     them.
 *
 * So the child gets, before STORED, each (entry, topic) after the horizon
 * on those topics that entered the cluster before its request, except its
 * own, also across moves between cores, and after STORED what comes later:
 * the guarantees of one hop, through two.  NOT_FOUND when this node would
 * answer a client so: an owner since the horizon is not live, the history
 * of owner sets does not reach back, a retention lost entries. */
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"
#include "engine.h"
#include "log.h"

struct cluster_relay {
    struct qitem *v; /* the answer's items (queue.h), by source */
    size_t n, cap;
    bool refused;
};

static struct router *router(void)
{
    return &cl.net.eng->router;
}

void cluster_relay_free(struct conn *c)
{
    struct cluster_relay *x = c->relay;
    if (!x)
        return;
    for (size_t i = 0; i < x->n; i++)
        qitem_release(&x->v[i]);
    free(x->v);
    free(x);
    c->relay = NULL;
}

struct qitem *cluster_relay_push(struct conn *c, struct entry *e)
{
    struct cluster_relay *x = c->relay;
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 16;
        struct qitem *p = realloc(x->v, cap * sizeof *p);
        if (!p)
            return NULL;
        x->v = p;
        x->cap = cap;
    }
    qitem_init(&x->v[x->n], e);
    return &x->v[x->n++];
}

int cluster_relay_begin(struct conn *c, struct qitem *found, size_t n)
{
    struct cluster_relay *x = calloc(1, sizeof *x);
    if (!x)
        return -1;
    x->v = found;
    x->n = x->cap = n;
    c->relay = x;
    return 0;
}

void cluster_relay_refused(struct conn *c)
{
    if (c->relay)
        c->relay->refused = true;
}

/* The blocks go in front of the held reply (from held_from on). */
static int insert_before_reply(struct conn *c, struct evbuffer *blocks)
{
    struct evbuffer *head = evbuffer_new();
    if (!head || evbuffer_remove_buffer(c->out, head, c->held_from) < 0 ||
        evbuffer_prepend_buffer(c->out, blocks) < 0 ||
        evbuffer_prepend_buffer(c->out, head) < 0) {
        if (head)
            evbuffer_free(head);
        return -1;
    }
    /* held_from stays where it was: the blocks are part of the held answer,
     * so a NOT_FOUND or a doom that replaces it drops them too (never a
     * partial answer). */
    evbuffer_free(head);
    return 0;
}

void cluster_relay_finish(struct conn *c)
{
    struct cluster_relay *x = c->relay;
    if (!x || c->retro)
        return; /* not a child's request, or owners still to answer */
    if (x->refused || conn_is_closing(c)) {
        cluster_relay_free(c);
        return;
    }
    /* By second, one item per entry (an entry found here for one topic may
     * come from an answer, or be this node's own, for another). */
    struct router *r = router();
    uint64_t base = r->epoch + 1;
    r->epoch += x->n + 1;
    struct evbuffer *blocks = evbuffer_new();
    int rc = blocks ? qitems_by_second(x->v, &x->n, base) : -1;
    if (rc == 0)
        rc = c->ops->retro_answer ? c->ops->retro_answer(c, blocks, x->v, x->n) : -1;
    if (rc == -2)
        klog(LOG_WARNING, "client %" PRIu64 " (%s): a link_retro answer is longer than "
             "max_client_queue_bytes (%zu); answering NOT_FOUND", c->sub.id, c->peer,
             cl.net.eng->cfg.max_queue_bytes);
    else if (rc < 0 || insert_before_reply(c, blocks) < 0) {
        klog(LOG_ERROR, "client %" PRIu64 " (%s): out of memory relaying a link_retro answer; "
             "answering NOT_FOUND", c->sub.id, c->peer);
        rc = -1;
    }
    if (rc != 0 && c->ops->retro_refused)
        c->ops->retro_refused(c);
    if (blocks)
        evbuffer_free(blocks);
    cluster_relay_free(c);
}

/* ---- lost topics ---- */

/* At most this many bytes of names per `VALUE lost' block (or
 * max_request_bytes, if smaller). */
#define LOST_BLOCK (16u << 10)

int cluster_child_tell(struct conn *c, struct evbuffer *blocks)
{
    /* A held reply (its link_retro or its batch, waiting for another core)
     * may yet be replaced (NOT_FOUND: kraken_retro_refused keeps what
     * precedes held_from only): the blocks go in front of it. */
    size_t blen = evbuffer_get_length(blocks);
    if ((conn_held(c) || c->held_sub || c->held_pub) &&
        evbuffer_get_length(c->out) >= c->held_from) {
        if (insert_before_reply(c, blocks) < 0)
            return -1;
        c->held_from += blen;
        return 0;
    }
    return evbuffer_add_buffer(c->out, blocks) < 0 ? -1 : 0;
}

size_t cluster_lost_limit(void)
{
    size_t max = cl.net.eng->cfg.max_request_bytes;
    return max < LOST_BLOCK ? max : LOST_BLOCK;
}

int cluster_lost_block(struct evbuffer *out, const char *kind, struct evbuffer *cur)
{
    if (evbuffer_add_printf(out, "VALUE %s %zu\r\n", kind, evbuffer_get_length(cur)) < 0 ||
        evbuffer_add_buffer(out, cur) < 0 || evbuffer_add(out, "\r\nEND\r\n", 7) < 0)
        return -1;
    return 0;
}


/* The kind of `VALUE' block that names lost topics of namespace ns. */
static const char *lost_kind(enum topic_ns ns)
{
    return ns == TOPIC_NS_SHARD ? "slost" : "lost";
}

int cluster_child_lost(struct conn *c, int kidx, uint64_t mark, const char *why)
{
    struct router *r = router();
    struct topic **v = malloc((c->sub.subs.cap ? c->sub.subs.cap : 1) * sizeof *v);
    struct evbuffer *names = evbuffer_new();
    if (!v || !names) {
        free(v);
        if (names)
            evbuffer_free(names);
        return -1;
    }
    size_t n = 0;
    size_t limit = cluster_lost_limit();
    struct evbuffer *cur = evbuffer_new(); /* the block being filled: its names */
    if (!cur)
        goto nomem;
    /* Channels in `VALUE lost' blocks, then Redis shard channels in `VALUE
     * slost' ones (links name topics without their namespace). */
    static const enum topic_ns spaces[] = {TOPIC_NS_CHANNEL, TOPIC_NS_SHARD};
    for (size_t s = 0; s < sizeof spaces / sizeof spaces[0]; s++) {
        for (uint32_t i = 0; i < c->sub.subs.cap; i++) {
            struct topic *t = c->sub.subs.v[i].topic;
            if (t && t->ns == spaces[s] && (mark ? t->mark == mark : cluster_depends(t, kidx))) {
                topic_ref(t);
                v[n++] = t;
                size_t have = evbuffer_get_length(cur);
                if (have && have + 1 + t->len > limit &&
                    cluster_lost_block(names, lost_kind(spaces[s]), cur) < 0)
                    goto nomem;
                if ((evbuffer_get_length(cur) && evbuffer_add(cur, " ", 1) < 0) ||
                    evbuffer_add(cur, t->name, t->len) < 0)
                    goto nomem;
            }
        }
        if (evbuffer_get_length(cur) && cluster_lost_block(names, lost_kind(spaces[s]), cur) < 0)
            goto nomem;
    }
    if (n) {
        /* names holds every block now */
        if (cluster_child_tell(c, names) < 0)
            goto nomem;
        if (kidx >= 0 && (size_t)kidx < cl.n)
            klog(LOG_WARNING, "client %" PRIu64 " (%s), a proxy below this node, held %zu "
                 "topic(s) (%.*s%s) owned by core %s, %s: told it", c->sub.id, c->peer, n,
                 (int)(v[0]->len < 64 ? v[0]->len : 64), v[0]->name, n > 1 ? " ..." : "",
                 cl.cores[kidx]->name, why);
        else
            klog(LOG_WARNING, "client %" PRIu64 " (%s), a proxy below this node, held %zu "
                 "topic(s) (%.*s%s), %s: told it", c->sub.id, c->peer, n,
                 (int)(v[0]->len < 64 ? v[0]->len : 64), v[0]->name, n > 1 ? " ..." : "", why);
        for (size_t i = 0; i < n; i++)
            router_unsubscribe_ns(r, &c->sub, (enum topic_ns)v[i]->ns, v[i]->name, v[i]->len);
        cl.net.kick(c);
    }
    for (size_t i = 0; i < n; i++)
        topic_unref(&r->topics, v[i]);
    free(v);
    evbuffer_free(names);
    evbuffer_free(cur);
    return n > 0;
nomem:
    for (size_t i = 0; i < n; i++)
        topic_unref(&r->topics, v[i]);
    free(v);
    evbuffer_free(names);
    if (cur)
        evbuffer_free(cur);
    return -1;
}

void cluster_link_lost(struct conn *link, enum topic_ns ns, const char *names, size_t len)
{
    struct cluster_core *k = link_state(link)->core;
    int kidx = -1;
    for (size_t i = 0; k && i < cl.n; i++)
        if (cl.cores[i] == k)
            kidx = (int)i;
    if (kidx < 0)
        return;
    struct router *r = router();
    uint64_t mark = ++r->epoch;
    const char *p = names, *end = names + len;
    while (p < end) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        const char *q = sp ? sp : end;
        struct topic *t = topic_find(&r->topics, ns, p, (size_t)(q - p));
        if (t)
            t->mark = mark;
        p = q + 1;
    }
    cluster_doom_marked(kidx, mark, "which lost it upstream (the core that owns it failed)");
}

/* ---- a child waiting for a lost core ---- */

/* The held replies of c's refused notes (each STORED, from held_from on,
 * named by where it starts there) become the cluster error; the other held
 * replies stay.  Returns how many, -1 when out of memory or when one of
 * them is not a STORED (the caller closes c, which drops the held part). */
static long refuse_noted(struct conn *c)
{
    static const char err[] = CLUSTER_ERR_UNAVAILABLE;
    uint64_t *v;
    long n = ack_refused_replies(&c->acks, &v);
    if (n <= 0)
        return n;
    struct evbuffer *head = evbuffer_new(), *rest = evbuffer_new();
    long rc = head && rest &&
              evbuffer_remove_buffer(c->out, head, c->held_from) == (int)c->held_from ? n : -1;
    /* c->out holds the held replies now: copied into rest, the refused
     * ones replaced. */
    uint64_t pos = 0;
    for (long i = 0; i < n && rc >= 0; i++) {
        char line[8];
        size_t gap = (size_t)(v[i] - pos);
        if (v[i] < pos || evbuffer_remove_buffer(c->out, rest, gap) != (int)gap ||
            evbuffer_copyout(c->out, line, 8) != 8 || memcmp(line, "STORED\r\n", 8) != 0 ||
            evbuffer_drain(c->out, 8) < 0 || evbuffer_add(rest, err, sizeof err - 1) < 0)
            rc = -1;
        pos = v[i] + 8;
    }
    free(v);
    if (head && rest) {
        /* head, rest, what is left: the output again (whole, or the caller
         * closes c). */
        if (evbuffer_add_buffer(rest, c->out) < 0 || evbuffer_add_buffer(head, rest) < 0 ||
            evbuffer_add_buffer(c->out, head) < 0)
            rc = -1;
    }
    if (head)
        evbuffer_free(head);
    if (rest)
        evbuffer_free(rest);
    return rc;
}

bool cluster_child_release(struct conn *c)
{
    long n = refuse_noted(c);
    ack_notes_clear(&c->acks);
    if (n < 0) {
        klog(LOG_ERROR, "client %" PRIu64 " (%s), a proxy below this node: cannot answer the "
             "error to its publishes that a lost core did not confirm (out of memory, or its "
             "held replies are not what they were); closing its link", c->sub.id, c->peer);
        return false;
    }
    c->held_sub = c->held_pub = false;
    cl.net.kick(c);
    return true;
}

bool cluster_child_wait_failed(struct conn *c, const struct cluster_core *k, int kidx,
                               bool lost)
{
    /* k lost, or k (a parent of this node) answered a batch with the
     * error: a core above it is unavailable. */
    const char *what = lost ? "that core was lost" : "it refused them";
    /* Its subscriptions of k's topics were dropped and named already
     * (cluster_doom_holders runs before the waits fail); again, in case one
     * escaped: the child must not believe it holds a topic nobody serves. */
    if (kidx >= 0 && cluster_child_lost(c, kidx, 0, "which was lost") < 0)
        return false;
    if (c->held_pub) {
        if (c->acks.notes_lost)
            return false; /* which reply waits for which core is not known */
        /* Only the batches that wait for k get the error (their notes were
         * marked refused); the others are answered STORED once their
         * cores confirmed, all together, in order (cluster_child_release). */
        klog(LOG_WARNING, "client %" PRIu64 " (%s), a proxy below this node, waits for core %s "
             "to confirm its publishes, and %s: answering the error to the held publish "
             "request(s) forwarded to it (%" PRIu32 " refused so far; their entries reached "
             "this node's subscribers, maybe not the others), the others once their cores "
             "confirm; its link stays", c->sub.id, c->peer, k->name, what, c->acks.refused);
    } else if (c->retro) {
        klog(LOG_WARNING, "client %" PRIu64 " (%s), a proxy below this node, waits for core %s "
             "to answer its link_retro, and %s: answering NOT_FOUND; its link stays",
             c->sub.id, c->peer, k->name, what);
        cluster_retro_refuse(c); /* the relay is freed once its requests are gone */
    } else {
        klog(LOG_INFO, "client %" PRIu64 " (%s), a proxy below this node, waits for core %s to "
             "confirm its subscription, and %s: its link stays", c->sub.id, c->peer, k->name,
             what);
    }
    return conn_held(c) || cluster_child_release(c);
}
