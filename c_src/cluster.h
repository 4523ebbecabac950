/* cluster.h - this engine's part in a cluster (docs/cluster.md).
 *
 * The Erlang node tells the engine who it is and which cores are live
 * (control channel: {cluster, {Self, [{Name, Host, Port}]}}); from then on
 * every topic has an owner, the core that cluster_hash.h picks among the
 * live ones.  A topic owned by this node (a core) is served here as on a
 * single node.  For a topic owned by another core the engine acts as a
 * proxy:
 *   - it holds one upstream subscription at the owner while the topic has at
 *     least one local subscriber (router topic_hook: first / last);
 *   - an entry published here is delivered locally at once (the router, as
 *     ever) and forwarded, split by owner, one `publish` per core naming
 *     that core's topics (router published hook);
 *   - entries pushed by an owner are published into the local router with
 *     the link as publisher, and never forwarded again.
 * A proxy is a node that owns nothing.  Links are outbound connections, one
 * per remote core (proto_link.c), made with the owner's connect
 * (struct cluster_net: server_connect()); a core sees one connection per
 * node that needs it.
 *
 * A proxy below proxies gets its parents as its cores (member.parent).
 *
 * Moves (cluster_move.c): the Erlang node gives two owner sets, the one
 * entries are published to and, during a move, the other one, where held
 * topics are subscribed too; links to other members say `set peer`, and an
 * entry is delivered to peers only by the core it entered (so a node
 * subscribed at both owners of a moving topic gets it once).  After each
 * configuration cluster_synced() says when every link caught up.
 *
 * Subscribes are acknowledged: a client whose subscribe needs an upstream
 * subscription (or waits on one still unconfirmed) gets its reply only once
 * the owner confirmed it (cluster_ack.h); until then its requests are held.
 * Publishes too: a publish forwarded to remote owners is answered once they
 * confirmed the batches carrying its entries (cluster_pub.c); a lost link
 * or core answers it with the cluster error instead.
 *
 * Failures: when a link breaks, or a core leaves the live set, every local
 * client holding a topic it owned is disconnected (Kraken's contract: it
 * reconnects and reloads) with a log line saying why; the link is retried
 * while the core stays live, and clients that subscribed to its topics in
 * the meantime are disconnected when it comes back.  A client waiting for a
 * confirmation from a lost core is one of those holders: it gets
 * `SERVER_ERROR cluster core unavailable` instead of its reply, then the
 * close.  A publish with a topic owned by a core whose link is not up (down,
 * connecting, closing) is refused before anything of it is published
 * (cluster_reachable(); the client gets an error) and counted (`dropped` in
 * the status). */
#ifndef KRAKEN_CLUSTER_H
#define KRAKEN_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"

struct cluster_core;
struct engine;
struct event_base;
struct proto_slice;

/* The Kraken protocol's answer to a publish refused by cluster_reachable()
 * (and to a holder of a lost core's topic, before it is disconnected). */
#define CLUSTER_ERR_UNAVAILABLE "SERVER_ERROR cluster core unavailable\r\n"

struct cluster_member {
    const char *name; /* node name, e.g. "c1@web1" */
    size_t name_len;
    const char *host; /* numeric address of its Kraken port */
    int port;
    /* > 0: a static upstream that may refuse push mode (the original Kraken):
     * then its link polls `get messages` every poll_ms instead. */
    int poll_ms;
    /* A proxy this node sits below (docs/cluster.md, "A proxy below a
     * proxy"): its link says `set child` instead of `set peer`, so that it
     * subscribes upstream for this node and relays its link_retro. */
    bool parent;
    /* Owns topics: entries are published to it (own), and, during a move,
     * in the other owner set, where holders subscribe too (alt).  When no
     * member owns (alt: is in the other set), every member does. */
    bool own, alt;
};

struct cluster_name {
    const char *name;
    size_t len;
};

/* What the cluster acts on, given by its owner (cluster_control.c, from the
 * server) with the first configuration: the engine whose router's hooks it
 * sets, the event loop of its timers, and the network side (server.c):
 * opening a link (proto_link.c) to a core, dooming a connection
 * (server_doom()), writing what a connection's output holds (server_kick()).
 * The cluster knows no sockets and no server. */
struct cluster_net {
    struct engine *eng;
    struct event_base *base;
    /* A link to ip (numeric):port, connecting in the background; NULL
     * with a reason in err. */
    struct conn *(*connect)(void *arg, const char *ip, int port, char *err, size_t errlen);
    void *arg;
    void (*doom)(struct conn *c, const char *line);
    void (*kick)(struct conn *c);
};

/* A link's protocol state (proto_link.c; conn_pstate() of a link). */
struct link_state {
    struct cluster_core *core; /* NULL once detached: its closing concerns nobody */
    bool up;                   /* the peer answered the handshake */
    bool eof;                  /* the peer closed the connection before that */
    uint64_t received;         /* entries received from the peer */
};

static inline struct link_state *link_state(struct conn *c)
{
    return conn_pstate(c);
}

/* Sets this node's name and the live cores (self among them for a core),
 * and the cores that the view makes owners (miss_own) or, during a move,
 * owners of the other set (miss_alt) but that are not live here: a topic
 * whose owner would be one of those (rendezvous over the live owners and
 * them) is unavailable: cluster_reachable() and cluster_subscribable()
 * refuse it (docs/cluster.md, "Partitions").  Returns 0, or -1 when out
 * of memory or given a bad member (nothing changed).  A `version` then
 * goes on every link, behind the subscription changes: cluster_synced()
 * says when every one was answered.  net: read on the first call only. */
int cluster_configure(const struct cluster_net *net, const char *self, size_t self_len,
                      const struct cluster_member *cores, size_t n,
                      const struct cluster_name *miss_own, size_t nmiss_own,
                      const struct cluster_name *miss_alt, size_t nmiss_alt, char *err,
                      size_t errlen);

/* The server stops (before its connections close): the cluster frees its
 * state and forgets its links; nothing when it was never configured. */
void cluster_stop(void);

enum cluster_link_state { CLUSTER_SELF, CLUSTER_UP, CLUSTER_CONNECTING, CLUSTER_DOWN,
                          CLUSTER_POLLING };

struct cluster_core_status {
    const char *name;
    size_t name_len;
    const char *host;
    int port;
    enum cluster_link_state state;
    uint64_t topics;   /* topics held upstream there (owned by it, with local subscribers) */
    uint64_t received; /* entries received from it on the current link */
    uint64_t sent;     /* entries forwarded to it */
    uint64_t dropped;  /* entries that could not be forwarded (link down) */
    uint64_t links;    /* links made to it so far */
};

/* The live cores as last configured, with their link figures; returns the
 * count (0 when not in a cluster).  out[] holds at most max. */
size_t cluster_status(struct cluster_core_status *out, size_t max);
/* Whether every link answered the `version` sent after the last
 * configuration (a link that is down counts as answered: its holders are
 * disconnected).  From then on every subscription change it made is in
 * effect at the cores, and every entry forwarded before it was delivered. */
bool cluster_synced(void);
/* Whether this engine has a cluster view (with other cores than itself or
 * not): only then can a publish be refused. */
bool cluster_active(void);
/* Whether this node is in a cluster but sees no live core (nor parent, nor
 * static upstream): a proxy whose cores are not up yet, or cut off from all
 * of them.  It refuses publishes; it does not serve (server_ready()). */
bool cluster_alone(void);
/* Whether this node is in a cluster, not a core in its own live set, and
 * none of its upstreams' links (cores, parents, static upstreams) is up:
 * every publish is refused, as when alone (which it includes).  It does
 * not serve either (server_ready()). */
bool cluster_unlinked(void);
/* Whether a channel name can travel on a link: links write topics
 * space-separated on lines (SPEC 1), so a name that is empty or holds a
 * space, CR or LF cannot.  Redis channels may be any bytes: in a cluster
 * (cluster_active()) the Redis commands that would send one refuse it with
 * CLUSTER_ERR_CHANNEL_NAME; a single node takes any bytes. */
bool cluster_name_travels(const char *name, size_t len);
#define CLUSTER_ERR_CHANNEL_NAME \
    "channel name not allowed in a cluster: empty, or with a space, CR or LF"
#define CLUSTER_ERR_PATTERN "pattern not allowed in a cluster: empty, or with a space, CR or LF"
/* Whether an entry on these topics (channel namespace) can be forwarded now:
 * false when one of them is owned by a core whose link is not up, which is
 * then counted in that core's `dropped` (with a warning at most once a
 * second per core).  The caller refuses the publish whole: nothing of it is
 * delivered, retained or forwarded. */
bool cluster_reachable(const struct proto_slice *topics, uint32_t n);
/* Whether a client may subscribe to these topics (channel namespace): false
 * when one of them belongs to a core the view names but that is not live
 * here (cluster_configure), with a warning at most once a second.  The
 * caller refuses the request whole (Kraken: CLUSTER_ERR_UNAVAILABLE and
 * the close; Redis: CLUSTER_ERR_NOT_SUBSCRIBED): its entries may enter the
 * cluster at that core, which this node cannot hear. */
bool cluster_subscribable(const struct proto_slice *topics, uint32_t n);
#define CLUSTER_ERR_NOT_SUBSCRIBED "cluster core unavailable: not subscribed"
/* Whether a client may subscribe to a Redis pattern: false when a core the
 * view names is not live here (a pattern matches every core's topics),
 * with a warning at most once a second; the caller refuses the request
 * whole (CLUSTER_ERR_NOT_SUBSCRIBED).  cluster_pattern.c. */
bool cluster_pattern_subscribable(void);
/* Whether Redis shard channels are clustered on this node (in a cluster,
 * not below parents: cluster_shard.c); they then follow the channels'
 * rules (names that travel, reachable owners). */
bool cluster_shards_travel(void);
/* cluster_reachable() for an SPUBLISH's shard channel: the same checks,
 * but one whose name hashes to a static upstream is this node's own
 * (served here, as on a single node), whatever that upstream's link. */
bool cluster_shard_reachable(const struct proto_slice *topics, uint32_t n);
/* Whether every link of the current view made its first attempt: up, or
 * failed once (a node held at start-up waits for this, cluster_wait). */
bool cluster_settled(void);
/* kraken_cluster confirmed this engine's view of the cluster (control
 * request `cluster_fresh`, every tick but just after its node resumed from
 * a stop): while no confirmation comes, clients' publishes are refused
 * (cluster_fresh.c). */
void cluster_fresh_confirm(void);
/* Acknowledged publishes (cluster_pub.c): called by a protocol after each
 * publish request it executed, before its reply is written, when the
 * router has a published hook (a node of a cluster).  If the request's
 * entries were forwarded to remote owners, c's reply (and what follows it)
 * is held until they confirmed (c keeps executing the requests it has
 * read); a noreply publish is not held (a lost confirmation is logged). */
void cluster_publish_hold(struct conn *c, bool noreply);
/* The owner of a topic: 1 with its name, or 0 when it is served here. */
int cluster_owner_name(const char *topic, size_t len, const char **name, size_t *name_len);

/* Peers and the nodes that have forwarded entries (cluster_origin.c).
 * cluster_peer_named: connection s said `set peer <name>` (a name that
 * cannot travel on a link is kept as none); -1 when out of memory.
 * cluster_peer_gone: s closes.  cluster_origin_begin / _end: around the
 * routing of a `link_forward` batch that came on peer connection `from`,
 * whose first line (line, len: without its CRLF) names the nodes that
 * have its entries already: their peer connections here are marked
 * `skip` (sent none of them), a forward onward names them too, and none
 * goes on to one of them or to `from`'s node (cluster_origin_had). */
int cluster_peer_named(struct subscriber *s, const char *name, size_t len);
void cluster_peer_gone(const struct subscriber *s);
void cluster_origin_begin(const struct subscriber *from, const char *line, size_t len);
void cluster_origin_end(void);

/* Links' connections have this bit set in their subscriber id, so that an
 * entry's publisher tells whether it came from a core (cluster_retro.c). */
#define CLUSTER_LINK_ID_BIT ((uint64_t)1 << 62)

/* From proto_link.c. */
void cluster_link_up(struct conn *link);
/* The peer answered an acknowledged request (a subscribe: STORED; a
 * link_retro: STORED, or NOT_FOUND when found is false). */
void cluster_link_acked(struct conn *link, bool found);
/* A `VALUE retro <time> <n>` block of the answer to a link_retro request
 * (block: its entries, n + 2 bytes).  Returns -1 when none was expected or
 * the block is malformed (the link closes). */
int cluster_link_retro_block(struct conn *link, int64_t time, const char *block, size_t len);

/* From server.c: connection c closes; its link_retro requests forget it. */
void cluster_retro_forget(struct conn *c);
struct entry;
struct qitem;
/* From proto_kraken.c: a child's link_retro (connection c) was partly
 * deferred to the owners; found[0..n) (malloc'd, taken over): the items
 * answered here, each listing the topics answered here.  Its answer is
 * written when theirs are in (cluster_relay.c).  Returns 0, -1 when out of
 * memory (found is the caller's still). */
int cluster_relay_begin(struct conn *c, struct qitem *found, size_t n);
/* The peer answered a ping or a poll (VERSION, END or a polled VALUE block). */
void cluster_link_answered(struct conn *link);
/* A block of a link_retro answer arrived: the peer is alive, only busy
 * answering; the ping deadline starts again (a ping's VERSION comes after
 * the whole answer, which may take longer than the deadline). */
void cluster_link_progress(struct conn *link);
/* The peer answered a `version` (before cluster_link_answered).  Returns
 * false when none was asked (each is answered once): the link closes. */
bool cluster_link_version(struct conn *link);
/* Whether the link polls its peer (`get messages`, answered END when there
 * is nothing): a push link sends no poll, so an END there is malformed. */
bool cluster_link_polls(struct conn *link);
void cluster_link_closed(struct conn *link);
/* The peer answered the link's `set push` with an error: returns true when
 * it should be polled instead (the link then closes and is reopened). */
bool cluster_link_push_refused(struct conn *link);
/* The peer answered the next acknowledged request (a publish batch) with
 * `SERVER_ERROR cluster core unavailable': a parent refusing it (a core
 * above it is unavailable).  Its publishers get the error; the link stays. */
void cluster_link_refused(struct conn *link);
/* The parent said that these topics of namespace ns (space-separated:
 * `VALUE lost', channels; `VALUE slost', Redis shard channels) were lost
 * upstream: their holders here are disconnected (cluster_relay.c). */
void cluster_link_lost(struct conn *link, enum topic_ns ns, const char *names, size_t len);
/* The same for Redis patterns (`VALUE plost'): their holders here are
 * disconnected, a proxy below told (cluster_pattern_lost.c). */
void cluster_link_plost(struct conn *link, const char *names, size_t len);
/* Below parents: the topics of an entry pushed on this link that go
 * through its parent here (their pin, else the hash), kept in v in order,
 * their count returned; the others come through another parent, which
 * alone is heeded for them (cluster_pattern_lost.c).  n when the link is
 * not a parent's. */
uint32_t cluster_link_keeps(struct conn *link, struct proto_slice *v, uint32_t n);

#endif
