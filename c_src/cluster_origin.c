/* cluster_origin.c - which peer connection is which node, and which nodes
 * already have the entries a core forwards for a peer (docs/cluster.md,
 * "Moves", "A peer's entry forwarded while views differ").
 *
 * While views differ (after a failure, in a partition), core A may get on
 * the link of node P an entry whose topic A owns under neither owner set:
 * A delivers it here, to the peers holding the topic too, and forwards it
 * to the owner it sees, core B.  P delivered it to its own clients at
 * once, and so did every node A delivered it to: B must not send it to
 * those nodes' links again, neither for the topic nor through a Redis
 * pattern.  A's forward says so: `set link_forward` (channels) or `set
 * link_sforward` (Redis shard channels), whose data is a first line naming
 * those nodes, space-separated (the node it was published on first), then
 * the entries as in a publish:
 *
 *   set link_forward 0 0 <n>\r\n<origin> [<node> ...]\r\n<MESSAGE entries>\r\n
 *
 * B finds their links among its peer connections by the names those links
 * gave in `set peer`, marks them `skip` (router.h) while it routes the
 * entries as a peer's, and clears the marks.  The nodes that have an entry
 * may differ between its topics (a node holding one of them at A, not the
 * other): A then forwards one MESSAGE per set of nodes, each listing its
 * topics, in batches of their own.  A chain (B forwards again: its view
 * differs too) names the nodes of the batch it got, then the peer it got
 * it from, then its own peers that hold the topic.
 *
 * The registry is an array with one entry per peer connection (a node's
 * link: a cluster has tens of them, not thousands), scanned only for the
 * forwarded entries; an ordinary publish never looks at it. */
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "cluster_internal.h"
#include "entry.h"
#include "log.h"
#include "router.h"

struct peer_name {
    struct subscriber *s;
    char *name; /* NULL: it gave a name that cannot travel on a link */
    size_t len;
};

static struct peer_name *peers;
static size_t npeers, peers_cap;

/* The batch being routed (cluster_origin_begin): its first line, and the
 * peers marked `skip`. */
static const char *cur_line;
static size_t cur_len;
static bool in_forward;
static const struct subscriber *cur_from; /* the link it came on */
static struct subscriber **skipped;
static size_t nskipped, skipped_cap;

/* Scratch of cluster_forward: each topic's line (off, len into lines) and
 * whether it went out yet. */
static char *lines;
static size_t lines_len, lines_cap;
static size_t *line_off, *line_len;
static bool *line_done;
static size_t line_cap;

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * size);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

int cluster_peer_named(struct subscriber *s, const char *name, size_t len)
{
    if (grow((void **)&peers, &peers_cap, npeers + 1, sizeof *peers) < 0)
        return -1;
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

/* The name s gave in `set peer` (NULL, *len 0: none that travels). */
static const char *name_of(const struct subscriber *s, size_t *len)
{
    for (size_t i = 0; i < npeers; i++)
        if (peers[i].s == s) {
            *len = peers[i].len;
            return peers[i].name;
        }
    *len = 0;
    return NULL;
}

/* Marks the peer connections of node `name` skip (a node's link that came
 * back while the old one still closes: both). */
static void skip_named(const char *name, size_t len)
{
    for (size_t i = 0; i < npeers; i++) {
        struct subscriber *s = peers[i].s;
        if (!peers[i].name || peers[i].len != len || memcmp(peers[i].name, name, len) ||
            s->skip)
            continue;
        if (grow((void **)&skipped, &skipped_cap, nskipped + 1, sizeof *skipped) < 0) {
            klog(LOG_ERROR, "cluster: out of memory reading a forward's nodes; node %.*s "
                 "may get its entries twice", (int)(len < 200 ? len : 200), name);
            return;
        }
        s->skip = true;
        skipped[nskipped++] = s;
    }
}

void cluster_origin_begin(const struct subscriber *from, const char *line, size_t len)
{
    cur_line = line;
    cur_len = len;
    in_forward = true;
    cur_from = from;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && line[j] != ' ')
            j++;
        if (j > i)
            skip_named(line + i, j - i);
        i = j + 1;
    }
}

void cluster_origin_end(void)
{
    for (size_t i = 0; i < nskipped; i++)
        skipped[i]->skip = false;
    nskipped = 0;
    cur_line = NULL;
    cur_len = 0;
    in_forward = false;
    cur_from = NULL;
}

bool cluster_peer_is(const struct subscriber *s, const struct cluster_core *c)
{
    size_t n;
    const char *name = name_of(s, &n);
    return name && n == c->len && !memcmp(name, c->name, n);
}

bool cluster_origin_had(const struct cluster_core *c)
{
    if (!in_forward)
        return false;
    if (cur_from && cluster_peer_is(cur_from, c))
        return true;
    for (size_t i = 0; i < cur_len;) {
        size_t j = i;
        while (j < cur_len && cur_line[j] != ' ')
            j++;
        if (j - i == c->len && !memcmp(cur_line + i, c->name, c->len))
            return true;
        i = j + 1;
    }
    return false;
}

static int add_name(const char *name, size_t len)
{
    if (!len)
        return 0;
    if (grow((void **)&lines, &lines_cap, lines_len + len + 1, 1) < 0)
        return -1;
    if (lines_len && lines[lines_len - 1] != '\n')
        lines[lines_len++] = ' ';
    memcpy(lines + lines_len, name, len);
    lines_len += len;
    return 0;
}

/* Appends to `lines` the nodes that have t's entry from publisher already:
 * the batch's (a forward being routed), the publisher's node, and the
 * other peers holding t here (they got it from this node).  -1: out of
 * memory. */
static int have_line(const struct subscriber *publisher, const struct topic *t)
{
    size_t n;
    const char *name;
    if (in_forward && add_name(cur_line, cur_len) < 0)
        return -1;
    if ((name = name_of(publisher, &n)) && add_name(name, n) < 0)
        return -1;
    for (uint32_t j = 0; j < t->nsubs && t->npeers; j++) {
        const struct subscriber *s = t->subs[j];
        if (s->peer && s != publisher && !s->overflowed && (name = name_of(s, &n)) &&
            add_name(name, n) < 0)
            return -1;
    }
    /* (a separator that no name holds, so that empty lines stay apart) */
    if (grow((void **)&lines, &lines_cap, lines_len + 1, 1) < 0)
        return -1;
    lines[lines_len++] = '\n';
    return 0;
}

/* Appends one MESSAGE with the topics of e marked in line_done by group g
 * (those whose owner is k and whose line is topic g's) to c's forward
 * batch of that line. */
static void forward_group(struct cluster_core *c, enum topic_ns ns, const struct entry *e,
                          const int *owners, int k, uint32_t g, bool one_line)
{
    const char *line = one_line ? lines : lines + line_off[g];
    size_t len = one_line ? line_len[0] : line_len[g];
    size_t need = 32 + (size_t)e->payload_len;
    for (uint32_t i = g; i < e->ntopics; i++)
        if (owners[i] == k && !line_done[i])
            need += 1 + e->topics[i]->len;
    struct evbuffer *b = cluster_forward_batch(c, ns, line, len, need);
    evbuffer_add(b, "MESSAGE", 7);
    for (uint32_t i = g; i < e->ntopics; i++) {
        if (owners[i] != k || line_done[i])
            continue;
        if (!one_line && i != g &&
            (line_len[i] != len || memcmp(lines + line_off[i], line, len)))
            continue;
        line_done[i] = true;
        evbuffer_add(b, " ", 1);
        evbuffer_add(b, e->topics[i]->name, e->topics[i]->len);
    }
    cluster_message_end(b, e, c);
}

/* Room for n topics' lines in the scratch arrays; -1: out of memory. */
static int reserve_lines(uint32_t n)
{
    if (n <= line_cap)
        return 0;
    size_t cap = line_cap ? 2 * line_cap : 16;
    while (cap < n)
        cap *= 2;
    size_t *o = realloc(line_off, cap * sizeof *o);
    if (o)
        line_off = o;
    size_t *l = o ? realloc(line_len, cap * sizeof *l) : NULL;
    if (l)
        line_len = l;
    bool *d = l ? realloc(line_done, cap * sizeof *d) : NULL;
    if (!d)
        return -1;
    line_done = d;
    line_cap = cap;
    return 0;
}

int cluster_forward(struct cluster_core *c, enum topic_ns ns, const struct entry *e,
                    const int *owners, int k, const struct subscriber *publisher)
{
    uint32_t n = e->ntopics;
    bool one_line = false;
    lines_len = 0;
    if (reserve_lines(n) < 0) {
        klog(LOG_ERROR, "cluster: out of memory forwarding an entry to core %s: dropped", c->name);
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        line_done[i] = false;
        if (owners[i] != k || one_line)
            continue;
        line_off[i] = lines_len;
        if (have_line(publisher, e->topics[i]) == 0) {
            line_len[i] = lines_len - line_off[i] - 1; /* (without the separator) */
            continue;
        }
        /* One line for all: the batch's nodes and the publisher's (a node
         * holding a topic here too may get it twice). */
        klog(LOG_ERROR, "cluster: out of memory naming the nodes that have a forwarded "
             "entry; some may get it twice");
        size_t nl;
        const char *name = name_of(publisher, &nl);
        lines_len = 0;
        if ((in_forward && add_name(cur_line, cur_len) < 0) || (name && add_name(name, nl) < 0))
            lines_len = 0;
        line_len[0] = lines_len;
        one_line = true;
    }
    for (uint32_t g = 0; g < n; g++)
        if (owners[g] == k && !line_done[g])
            forward_group(c, ns, e, owners, k, g, one_line);
    return 0;
}
