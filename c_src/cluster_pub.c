/* cluster_pub.c - acknowledged publishes (docs/cluster.md, "Acknowledged
 * publishes"; issue 12, plan item 5(a)).
 *
 * An entry forwarded to a remote owner travels in a `publish` batch that is
 * sent without noreply (cluster_emit), so the owner answers STORED once it
 * has routed the whole batch; the batches are numbered in the link's FIFO
 * of acknowledgements together with the subscribe batches (cluster_ack.h).
 * The router's published hook (cluster.c) tells this file, entry by entry,
 * which cores the current request's entries went to (cluster_pub_note);
 * once the request is executed, its protocol calls cluster_publish_hold():
 * the publisher then waits, at each of those cores, for the batch that
 * carries its last entry there, and its reply (STORED, Redis's count) is
 * held in its output until every one of them answered.
 *
 * Unlike a held subscribe, a held publish does not stop the connection's
 * requests: the ones already read are executed, their replies queue behind
 * the held one (order kept), and only reading from the socket stops until
 * the release (server.c).  So a pipelining publisher pays one round trip
 * per read, not per publish, and many publishes (of many publishers) that
 * went into one batch are released by one answer.
 *
 * When the link breaks or the core leaves before answering, the waits fail
 * (cluster_ack_done, cluster_link.c): the publisher gets the cluster error
 * in place of its held replies, then the close.  A child's link (a proxy
 * below) is not closed: each of its batches is answered on its own, so its
 * held replies are noted with the cores they wait for (ack_note), and only
 * those of the lost core become the error (cluster_relay.c).  A `noreply` publish cannot
 * be answered: it is not held; its core remembers the last batch that
 * carried one, and a lost link with such batches unanswered logs a warning
 * naming the last noreply publisher (cluster_pub_lost). */
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"
#include "log.h"
#include "engine.h"

/* The cores the current request's entries were forwarded to. */
static struct cluster_core **touched;
static size_t ntouched, touched_cap;

void cluster_pub_note(struct cluster_core *k)
{
    /* The batch being built gets the next number (batch() emitted the
     * previous one if it had to). */
    uint64_t seq = k->acks.sent + 1;
    if (k->pub_wait == 0) {
        k->pub_first = seq; /* a request's entries may fill a batch and go on in the next */
        if (ntouched == touched_cap) {
            size_t cap = touched_cap ? 2 * touched_cap : 8;
            struct cluster_core **t = realloc(touched, cap * sizeof *t);
            if (!t) {
                klog(LOG_ERROR, "cluster: out of memory noting a forwarded entry; its "
                     "publisher is answered without the owner's confirmation");
                return;
            }
            touched = t;
            touched_cap = cap;
        }
        touched[ntouched++] = k;
    }
    k->pub_wait = seq;
}

/* Whether k is still a core of the current table (a reconfiguration may
 * have freed it since it was noted: only if a publish failed half-way and
 * its protocol never called cluster_publish_hold). */
static bool current(const struct cluster_core *k)
{
    for (size_t i = 0; i < cl.n; i++)
        if (cl.cores[i] == k)
            return true;
    return false;
}

void cluster_publish_hold(struct conn *c, bool noreply)
{
    size_t n = ntouched;
    ntouched = 0;
    for (size_t i = 0; i < n; i++) {
        struct cluster_core *k = touched[i];
        if (!current(k))
            continue;
        uint64_t first = k->pub_first, seq = k->pub_wait;
        k->pub_wait = 0;
        if (!c || conn_is_closing(c) || !c->out)
            continue;
        if (noreply) {
            k->nr_seq = seq;
            k->nr_pending++;
            k->nr_client = c->sub.id;
            memcpy(k->nr_peer, c->peer, sizeof k->nr_peer);
            continue;
        }
        bool was_held = conn_held(c);
        int rc = ack_wait_from(&k->acks, &c->acks, first, seq);
        if (rc < 0) {
            klog(LOG_ERROR, "%s %" PRIu64 " (%s): out of memory waiting for core %s to confirm "
                 "a publish; answering without it", c->ops->log_name, c->sub.id, c->peer,
                 k->name);
        } else if (rc > 0) {
            if (!was_held)
                c->held_from = evbuffer_get_length(c->out); /* its reply comes next */
            c->held_pub = true;
            /* A child's batches are answered each on its own: which one
             * waits for which core (cluster_child_wait_failed).  The reply
             * is named by where it starts after held_from. */
            if (c->sub.child &&
                ack_note_range(&c->acks, &k->acks, first, seq,
                               evbuffer_get_length(c->out) - c->held_from) < 0)
                klog(LOG_ERROR, "client %" PRIu64 " (%s), a proxy below this node: out of memory "
                     "noting which core its publish waits for; if one is lost, its link is "
                     "closed", c->sub.id, c->peer);
        }
    }
}

void cluster_pub_answered(struct cluster_core *k)
{
    if (k->nr_pending && k->acks.answered >= k->nr_seq)
        k->nr_pending = 0;
}

void cluster_pub_lost(struct cluster_core *k)
{
    if (k->nr_pending && k->acks.answered < k->nr_seq)
        klog(LOG_WARNING, "cluster: core %s was lost before confirming %" PRIu64 " noreply "
             "publish request(s) forwarded to it (the last from client %" PRIu64 " (%s)): "
             "their entries reached this node's subscribers and may not have reached the "
             "others", k->name, k->nr_pending, k->nr_client, k->nr_peer);
    k->nr_pending = 0;
}
