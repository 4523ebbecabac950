/* cluster_subref.c - a child's subscribe batch refused by its parent
 * (docs/cluster.md, "A proxy below a proxy"), or by a static upstream.
 *
 * A parent that cannot reach the owner of a topic (a core its view names
 * but that it does not hear: "Partitions") refuses a subscribe batch that
 * names it, whole: none of the batch's topics is subscribed there.  To a
 * child it answers `SERVER_ERROR cluster core unavailable` and keeps the
 * link (closing it would disconnect every client of the child that holds
 * a topic through that parent).  The child must then disconnect every
 * holder of the batch's topics, not only the subscribers waiting for that
 * batch: a topic's later subscribers wait for a later subscribe batch and
 * would otherwise be answered STORED on a topic nobody subscribed
 * upstream (silent loss).  So a node keeps, per link on which it is a
 * child, the topic names of each subscribe batch until it is answered: a
 * FIFO of copies, small (a batch's names, one round trip long).  That is
 * a link to a parent, and a link to a static upstream too (it says `set
 * child' there: a Kraken in C upstream in a cluster of its own refuses
 * the same way); not a link to a core (a peer's subscribes are never
 * refused).  The same for the Redis shard channels of a `link_ssubscribe'
 * batch, and for the Redis patterns of a `link_psubscribe' batch to a
 * parent, whose holders are disconnected (cluster_pattern_lost.c). */
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"
#include "engine.h"
#include "log.h"
#include "topic.h"

struct cluster_subref {
    struct cluster_subref *next;
    uint64_t seq; /* its number in k->acks */
    enum op op; /* OP_SUB, OP_SSUB (shard channels) or OP_PSUB (Redis patterns) */
    size_t len;
    char names[]; /* space-separated, as sent */
};

int cluster_subref_sent(struct cluster_core *k, uint64_t seq, struct evbuffer *names,
                        enum op op)
{
    if (!k->parent && k->poll_ms <= 0)
        return 0; /* a peer's link (cluster_open_link) */
    size_t len = evbuffer_get_length(names);
    struct cluster_subref *r = malloc(sizeof *r + len);
    if (!r) {
        klog(LOG_ERROR, "cluster: out of memory keeping a subscribe batch to %s; "
             "closing the link", k->name);
        return -1;
    }
    r->next = NULL;
    r->seq = seq;
    r->op = op;
    r->len = len;
    evbuffer_copyout(names, r->names, len);
    if (k->subref_tail)
        k->subref_tail->next = r;
    else
        k->subref_head = r;
    k->subref_tail = r;
    return 0;
}

void cluster_subref_answered(struct cluster_core *k)
{
    while (k->subref_head && k->subref_head->seq <= k->acks.answered) {
        struct cluster_subref *r = k->subref_head;
        k->subref_head = r->next;
        free(r);
    }
    if (!k->subref_head)
        k->subref_tail = NULL;
}

bool cluster_subref_refused(struct cluster_core *k, int kidx)
{
    struct cluster_subref *r = k->subref_head;
    if (!r || r->seq != k->acks.answered + 1)
        return false; /* the refused request is not a subscribe batch */
    struct engine *eng = cl.net.eng;
    if (r->op == OP_PSUB) {
        klog(LOG_WARNING, "cluster: %s refused a link_psubscribe batch (a core above it is "
             "unavailable): its patterns' holders here go", k->name);
        cluster_pattern_doom_names(r->names, r->len, true,
                                   "which its parent refused (a core above it is unavailable)");
        return true;
    }
    uint64_t mark = ++eng->router.epoch;
    uint32_t held = 0;
    for (size_t i = 0; i < r->len;) {
        size_t j = i;
        while (j < r->len && r->names[j] != ' ')
            j++;
        struct topic *t = topic_find(&eng->router.topics,
                                     r->op == OP_SSUB ? TOPIC_NS_SHARD : TOPIC_NS_CHANNEL,
                                     r->names + i, j - i);
        if (t && t->nsubs > t->npeers) {
            t->mark = mark;
            held++;
        }
        i = j + 1;
    }
    klog(LOG_WARNING, "cluster: %s refused a subscribe batch of %u topics held here (a core "
         "above it is unavailable)", k->name, held);
    if (held)
        cluster_doom_marked(kidx, mark, "which refused its upstream subscription (a core "
                            "above it is unavailable)");
    return true;
}

void cluster_subref_free(struct cluster_core *k)
{
    while (k->subref_head) {
        struct cluster_subref *r = k->subref_head;
        k->subref_head = r->next;
        free(r);
    }
    k->subref_tail = NULL;
}
