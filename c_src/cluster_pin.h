/* cluster_pin.h - sticky parents: which parent carries a topic held on a
 * node below parents (docs/cluster.md, "A proxy below a proxy", "Sticky
 * parents").
 *
 * Parents own no topics: any parent carries any topic to its owner (it
 * holds it at the owning core), and no two nodes need to agree on which
 * parent carries a topic.  So a node below parents pins each topic it holds
 * upstream to the parent it subscribed it at, for as long as that parent's
 * link lasts: when a parent joins or comes back, nothing moves and nobody
 * is disconnected.  Only a topic that is not pinned goes by the hash over
 * the live parents (cluster_hash.h); static upstreams are never pinned (a
 * pure hash: every proxy agrees).
 *
 * The last holder leaving: the topic is unsubscribed at its parent, and
 * stays pinned there until that parent has processed the unsubscribe,
 * that is until the first `version` request sent on the link after it is
 * answered (the parent answers a child's `version` only after writing what
 * it had queued for the link: proto_kraken.c).  Until then entries on it
 * may still come from that parent, so a new subscriber subscribes there
 * again (the link orders the unsubscribe before it), and a publish of it
 * goes there too (never through another parent, which would bring the
 * entry back through the first to this node's own subscribers, who had it
 * locally already).  Each such wait holds a reference on the topic, so
 * that its pin is not forgotten with it.
 *
 * This file holds the rules, on opaque upstreams (void *: a struct
 * cluster_core to cluster.c), so that they can be unit-tested
 * (test/c/test_cluster_pin.c). */
#ifndef KRAKEN_CLUSTER_PIN_H
#define KRAKEN_CLUSTER_PIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "topic.h"

/* One upstream's unsubscribes waiting for its barrier, oldest first. */
struct pin_wait {
    struct topic *t;
    uint64_t ver; /* the `version` request (numbered on the link) that closes it */
};
struct pin_fifo {
    struct pin_wait *v;
    size_t head, n, cap;
};

/* Where t goes upstream: the upstream it is pinned to, else `hashed` (the
 * hash's pick over the live upstreams).  t may be NULL (not a topic here). */
static inline void *pin_route(const struct topic *t, void *hashed)
{
    return t && topic_up(t)->pin ? topic_up(t)->pin : hashed;
}

/* t gets its first holder here: it is subscribed upstream at
 * pin_route(t, hashed), returned, and pinned there when that is a parent
 * (`parent`: hashed is one; a pinned t is kept where it is). */
void *pin_hold(struct topic *t, void *hashed, bool parent);

/* t lost its last holder here and was unsubscribed at up (its pin, or a
 * static upstream), on a link whose next `version` request will be number
 * `ver` (0: no link, nothing sent: unpinned at once).  t stays pinned until
 * pin_answered(ver).  Returns 0, or -1 when out of memory: t is then
 * unpinned at once (entries in flight from up may then come twice, to a
 * subscriber that subscribes it through another upstream meanwhile). */
int pin_release(struct pin_fifo *f, struct topic_index *x, struct topic *t, void *up,
                uint64_t ver);

/* up answered its `version` requests up to number `answered`: the waits
 * they close are over; a topic held by nobody then is unpinned, and
 * `unpinned' (if not NULL) is told (from then on it goes by the hash, which
 * may pick another upstream: cluster_pattern_lost.c). */
void pin_answered(struct pin_fifo *f, struct topic_index *x, void *up, uint64_t answered,
                  void (*unpinned)(struct topic *t, void *up));

/* up's link is gone (or up left): nothing more comes from it, every wait is
 * over. */
void pin_drop(struct pin_fifo *f, struct topic_index *x, void *up);

/* pin_drop, and the FIFO's memory. */
void pin_fifo_free(struct pin_fifo *f, struct topic_index *x, void *up);

#endif
