/* cluster_origin.c - which peer connection is which node, and the origin of
 * the entries a core forwards for a peer (docs/cluster.md, "Moves", the
 * peer rules).
 *
 * While views differ (after a failure, in a partition), core A may get on
 * the link of node P an entry whose topic A owns under neither owner set:
 * A delivers it here and forwards it to the owner it sees, core B.  P
 * delivered it to its own clients at once, so B must not send it back on
 * P's link, neither for the topic nor through a Redis pattern.  A's forward
 * says so: `set link_forward` (channels) or `set link_sforward` (Redis
 * shard channels), whose data is a first line naming the node the entries
 * were published on (their origin), then the entries as in a publish:
 *
 *   set link_forward 0 0 <n>\r\n<origin node>\r\n<MESSAGE entries>\r\n
 *
 * B finds the origin's link among its peer connections by the name that
 * link gave in `set peer`, and routes the entries as a peer's, but not to
 * that one connection (router.origin, set around the routing here).  A
 * chain (B forwards again: its view differs too) names the same origin.
 *
 * The registry is an array with one entry per peer connection (a link of
 * another node: a cluster has tens of them, not thousands), scanned only
 * for the forwarded entries; an ordinary publish never looks at it. */
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "cluster_internal.h"
#include "router.h"

struct peer_name {
    const struct subscriber *s;
    char *name; /* NULL: it gave a name that cannot travel on a link */
    size_t len;
};

static struct peer_name *peers;
static size_t npeers, peers_cap;

/* The origin of the forwarded batch being routed (cluster_origin_begin). */
static const char *cur_origin;
static size_t cur_origin_len;
static bool in_forward;

int cluster_peer_named(const struct subscriber *s, const char *name, size_t len)
{
    if (npeers == peers_cap) {
        size_t cap = peers_cap ? 2 * peers_cap : 16;
        struct peer_name *p = realloc(peers, cap * sizeof *p);
        if (!p)
            return -1;
        peers = p;
        peers_cap = cap;
    }
    char *copy = NULL;
    if (cluster_name_travels(name, len)) {
        if (!(copy = malloc(len)))
            return -1;
        memcpy(copy, name, len);
    }
    peers[npeers++] = (struct peer_name){s, copy, copy ? len : 0};
    return 0;
}

void cluster_peer_gone(const struct subscriber *s)
{
    for (size_t i = 0; i < npeers; i++)
        if (peers[i].s == s) {
            free(peers[i].name);
            peers[i] = peers[--npeers];
            return;
        }
}

/* The newest peer connection of node `name` (a node's link that came back
 * while the old one still closes: the new one), or NULL. */
static const struct subscriber *find(const char *name, size_t len)
{
    const struct subscriber *found = NULL;
    uint64_t newest = 0;
    for (size_t i = 0; i < npeers; i++)
        if (peers[i].name && peers[i].len == len && !memcmp(peers[i].name, name, len) &&
            peers[i].s->id >= newest) {
            found = peers[i].s;
            newest = found->id;
        }
    return found;
}

void cluster_origin_begin(struct router *r, const char *name, size_t len)
{
    cur_origin = name;
    cur_origin_len = len;
    in_forward = true;
    r->origin = len ? find(name, len) : NULL;
}

void cluster_origin_end(struct router *r)
{
    cur_origin = NULL;
    cur_origin_len = 0;
    in_forward = false;
    r->origin = NULL;
}

const char *cluster_origin_of(const struct subscriber *s, size_t *len)
{
    if (in_forward) {
        *len = cur_origin_len;
        return cur_origin;
    }
    for (size_t i = 0; i < npeers; i++)
        if (peers[i].s == s) {
            *len = peers[i].len;
            return peers[i].name;
        }
    *len = 0;
    return NULL;
}
