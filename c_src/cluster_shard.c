/* cluster_shard.c - Redis shard channels (SSUBSCRIBE / SPUBLISH) across the
 * cluster (docs/cluster.md, "Shard channels").
 *
 * A shard channel is a topic of its own namespace (TOPIC_NS_SHARD, topic.h)
 * owned by the same hash as a channel of the same name, and it takes the
 * channels' paths through the engine (cluster_upstream.c, cluster_move.c,
 * cluster_link.c): its first local holder subscribes it at its owner (and,
 * during a move, at the other owner), a node forwards an entry published
 * here to its owner, and only the core where an entry entered delivers it
 * to other nodes.  What differs is only how it travels on a link, which
 * names topics without their namespace:
 *
 *   set link_ssubscribe 0 0 <n>\r\n<names>\r\n      (acknowledged)
 *   set link_sunsubscribe 0 0 <n> noreply\r\n<names>\r\n
 *   set link_spublish 0 0 <n>\r\n<MESSAGE entries>\r\n   (acknowledged)
 *
 * and, pushed by a core, an entry of shard channels is `SMESSAGE <names>
 * <len>` instead of `MESSAGE` (entry.c builds its line so; proto_link.c
 * publishes it into this namespace).  Only a peer (a member's link) or a
 * child (a proxy below, whose shard channels go through the parent they
 * are pinned to, as its channels do: cluster_pin.h) may send those
 * requests; a parent names a child's shard channels lost in `VALUE slost'
 * blocks (cluster_relay.c).
 *
 * Not clustered (served locally, as on a single node): at static upstreams
 * (the original Kraken knows no shard channels).  This file says which
 * namespace goes where, and names each kind of request. */
#include "cluster_internal.h"

bool cluster_shards_travel(void)
{
    return cl.net.eng && cluster_ns_travels(TOPIC_NS_SHARD);
}

bool cluster_ns_travels(enum topic_ns ns)
{
    return ns == TOPIC_NS_CHANNEL || ns == TOPIC_NS_SHARD;
}

struct cluster_core *cluster_core_for_ns(struct cluster_core *k, enum topic_ns ns)
{
    return k && (ns != TOPIC_NS_SHARD || cluster_pattern_carried(k)) ? k : NULL;
}

enum op cluster_op_ns(enum op op, enum topic_ns ns)
{
    if (ns != TOPIC_NS_SHARD)
        return op;
    switch (op) {
    case OP_SUB:
        return OP_SSUB;
    case OP_UNSUB:
        return OP_SUNSUB;
    case OP_PUB:
        return OP_SPUB;
    default:
        return op;
    }
}
