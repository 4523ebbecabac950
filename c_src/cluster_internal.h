/* cluster_internal.h - what cluster.c (ownership, batching, the router's
 * hooks, configuration, status), cluster_link.c (the links' life:
 * opening, liveness, retries, and what a lost link or core does to the
 * clients that depended on it), cluster_move.c (the two owner sets of a
 * move, the peer rules, moving upstream subscriptions, the sync barrier),
 * cluster_pub.c (acknowledged publishes), cluster_retro.c and
 * cluster_retro_answer.c (retroactive subscription through a node that
 * does not own the topics, and across moves),
 * cluster_served.c (since when the retention of a topic owned here is
 * complete), cluster_fresh.c (whether the view may be stale) and
 * cluster_missing.c (the view's owners not live here: their topics
 * refused) share; cluster_pin.h (sticky parents) is used through
 * cluster_owner_of() and cluster.c's topic hook.  Nothing else includes it. */
#ifndef KRAKEN_CLUSTER_INTERNAL_H
#define KRAKEN_CLUSTER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.h"
#include "cluster_ack.h"
#include "cluster_entered.h"
#include "cluster_hash.h"
#include "cluster_pin.h"
#include "topic.h"

struct conn;
struct subscriber;
struct topic;
struct event;
struct event_base;
struct evbuffer;
struct subscriber;
struct topic;
struct cluster_retro_req;
struct cluster_subref;

/* What a batch to a core carries (cluster_upstream.c): OP_PSUB and OP_PUNSUB
 * are Redis patterns (cluster_pattern.c), OP_SSUB, OP_SUNSUB and OP_SPUB
 * Redis shard channels (cluster_shard.c); OP_FWD and OP_SFWD a peer's
 * entries forwarded with the nodes that have them (cluster_origin.c). */
enum op { OP_NONE, OP_SUB, OP_UNSUB, OP_PUB, OP_PSUB, OP_PUNSUB, OP_SSUB, OP_SUNSUB, OP_SPUB,
          OP_FWD, OP_SFWD, OP_KINDS };

/* A live core (self included) as this engine sees it. */
struct cluster_core {
    char *name;
    size_t len;
    char host[64];
    int port;
    bool self;
    bool reopen;        /* its link broke: clients that subscribed meanwhile are stale */
    int poll_ms;        /* > 0: may be polled (a static upstream) */
    bool parent;        /* a proxy above this one: its link says `set child` */
    bool polling;       /* it refused push mode: its link polls */
    struct event *poll; /* the polling timer (persistent) */
    struct event *ping; /* the liveness timer (persistent) */
    int64_t asked_ms;   /* when the oldest unanswered ping or poll was sent, -1: none */
    struct conn *link;  /* NULL while down (a retry is scheduled) */
    struct event *retry;
    struct evbuffer *pend;
    enum op pend_op;
    struct ack_fifo acks; /* subscribe batches and link_retro requests sent and answered */
    uint64_t last_req[OP_KINDS]; /* the number (acks) of the last batch of each
                                    acknowledged kind sent */
    /* to a parent or a static upstream: the topics of its subscribe
     * batches not answered yet (cluster_subref.c) */
    struct cluster_subref *subref_head, *subref_tail;
    /* link_retro requests sent on the link, oldest first (cluster_retro.c) */
    struct cluster_retro_req *retro_head, *retro_tail;
    uint64_t link_seq;  /* the router's seq when the link was opened: entries
                           published here after it were forwarded on it */
    uint64_t sent, dropped, links;
    int64_t drop_logged_ms;
    /* Acknowledged publishes (cluster_pub.c): the batch the current
     * request's last entry for this core is in (0: none), and the noreply
     * publishes forwarded and not confirmed yet (the last batch carrying
     * one, how many, the last publisher). */
    uint64_t pub_wait;
    uint64_t pub_first; /* the first batch the current request's entries went into */
    uint64_t nr_seq, nr_pending, nr_client;
    char nr_peer[64];
    /* `version` requests on the current link: sent, answered (in order),
     * and the one that closes the last configuration's sync barrier. */
    uint64_t ver_sent, ver_answered, sync_ver;
    /* Below parents: the unsubscribes waiting for this parent's barrier
     * (cluster_pin.h), and whether a `version` must go after them. */
    struct pin_fifo unpin;
    bool unpin_ask;
    int idx; /* its index in cl.cores (-1: it left) */
};

/* Whether k is a member of this cluster (Erlang distribution), not a
 * parent nor a static upstream: a peer's entry goes to it in a
 * `link_forward`, naming the nodes that have it. */
static inline bool cluster_core_member(const struct cluster_core *k)
{
    return !k->parent && k->poll_ms <= 0;
}

/* The topics' owners under one set of cores (cluster_hash.h over them). */
struct owner_set {
    struct cluster_hash_node *hn;
    size_t *core; /* hn[i] is cl.cores[core[i]] */
    size_t n;
};

struct cluster_state {
    struct cluster_net net; /* from the first cluster_configure(); net.eng: NULL until then */
    char *self;
    size_t self_len;
    struct cluster_core **cores; /* the live cores: one link to each */
    size_t n;
    /* Below parents (a member is a parent): topics held at a parent stay
     * there (cluster_pin.h), every owner lookup goes through
     * cluster_owner_of(). */
    bool sticky;
    /* cur: where entries are published (and what this node delivers to its
     * peers); alt: during a move, the other owner set, where holders are
     * subscribed too (docs/cluster.md, "Moves").  Equal outside a move. */
    struct owner_set cur, alt;
    struct event *flush_ev;
    bool flush_armed;
    int *owners; /* scratch: the owner of each topic of an entry */
    size_t owners_cap;
    uint64_t alone_refused; /* publishes refused while no core was live */
    int64_t alone_logged_ms;
    /* The view's owners that are not live here (cluster_configure), for
     * cur and alt: miss[i].hn holds the live owners of that set followed
     * by the missing ones (nlive of them live); n == nlive: none missing. */
    struct missing_set {
        struct cluster_hash_node *hn;
        char **names;
        size_t n, nlive;
    } miss[2];
    uint64_t missing_refused;
    int64_t missing_logged_ms;
    /* cluster_fresh.c: the last confirmation of the view, when it was
     * found missing (0: it is not), publishes refused since. */
    int64_t fresh_ms, stale_at, stale_logged_ms;
    uint64_t stale_refused;
    struct event *fresh_ev; /* the check, every 200 ms */
    bool stale_doom;        /* the check disconnects the holders next */
};

extern struct cluster_state cl; /* cluster.c */

/* cluster.c */
/* Writes what is batched for k to its link. */
void cluster_emit(struct cluster_core *k);
/* Appends a subscribe or unsubscribe of a topic (op: of its namespace,
 * cluster_op_ns) to k's batch (nothing while k's link is down). */
void cluster_topic_op(struct cluster_core *k, enum op op, const char *name, size_t len);
/* Appends one name to k's batch of kind op (nothing while k's link is
 * down); the caller checked that it travels. */
void cluster_batch_name(struct cluster_core *k, enum op op, const char *name, size_t len);
/* Subscriber s waits for k's answer to the batch of kind op (OP_SUB,
 * OP_SSUB or OP_PSUB) being built, or else to the last one sent (s NULL:
 * nobody waits).
 * Returns whether that answer is still due. */
bool cluster_await_batch(struct cluster_core *k, enum op op, struct subscriber *s);
/* The `link_forward` batch (`link_sforward` for ns shard) to c whose first
 * line is `line` (len bytes, no CRLF), with room for add bytes more: the
 * one being built, or a new one (what is batched goes first). */
struct evbuffer *cluster_forward_batch(struct cluster_core *c, enum topic_ns ns,
                                       const char *line, size_t len, size_t add);
/* Ends a MESSAGE line of e's topics in batch b to c: its length, payload
 * and CRLF; the current request's publisher waits for that batch. */
void cluster_message_end(struct evbuffer *b, const struct entry *e, struct cluster_core *c);
/* From now on t's entries come from upstream (cluster_retro_classify). */
void cluster_mark_upstream(struct topic *t);
/* The same from a given moment (a move keeps what was served here). */
void cluster_set_upstream_since(struct topic *t, struct cluster_point since);
/* Subscriber s of t waits for k's confirmation of t's upstream subscription
 * (s NULL: nobody waits).  Returns whether t's subscription at k is
 * unconfirmed. */
bool cluster_await_upstream(struct cluster_core *k, struct topic *t, struct subscriber *s);
/* A peer's entry on t at this core (cluster_on_published): the index of
 * the core it goes on to (its owner under cur while this core owns t
 * under neither set: views differ), or -1; *entered: whether it entered
 * the cluster here (this core owns t, or it would go back to a node that
 * has it: cluster_origin_had). */
int cluster_peer_onward(const struct topic *t, enum topic_ns ns, bool *entered);

/* cluster_move.c */
/* Builds the set of cores[i] with pick[i] (empty when none is picked).
 * Returns 0, or -1 when out of memory. */
int cluster_set_build(struct owner_set *s, struct cluster_core **cores, const bool *pick,
                      size_t n);
void cluster_set_free(struct owner_set *s);
/* Index in cl.cores of t's owner under s, -1 without cores. */
int cluster_owner_in(const struct owner_set *s, uint64_t name_hash);
/* Index in cl.cores of where topic t (name hash h; t NULL: no such topic
 * here) goes upstream under cur (where its entries are published; outside
 * a move, where it is subscribed): its owner by the hash; below parents,
 * the parent it is pinned to, if any (cluster_pin.h).  -1 without cores. */
static inline int cluster_owner_of(const struct topic *t, uint64_t h)
{
    if (cl.sticky && t && t->up && t->up->pin)
        return ((const struct cluster_core *)t->up->pin)->idx;
    return cluster_owner_in(&cl.cur, h);
}
/* The same by name (of namespace ns: its pin), as a core: NULL when it is
 * this node (served here) or there is none. */
struct cluster_core *cluster_upstream_named(enum topic_ns ns, const char *name, size_t len);
/* t's owner under s when it is another core, else NULL (served here). */
struct cluster_core *cluster_remote_in(const struct owner_set *s, const char *name,
                                       size_t len);
/* Whether a local holder of t depends on core kidx (its owner under cur or
 * alt; below parents, its pin); kidx CLUSTER_ANY_CORE: on any core (a
 * channel always; a shard channel unless a static upstream would own it:
 * then it is served here). */
bool cluster_depends(const struct topic *t, int kidx);
/* After a configuration: the held topics' upstream subscriptions move from
 * the old owners (cur and alt of old, cores of old_cores) to the new ones,
 * subscribing at the new before unsubscribing at the old. */
void cluster_move_subscriptions(const struct owner_set *old_cur, const struct owner_set *old_alt,
                                struct cluster_core **old_cores);
/* Closes the sync barrier of a configuration: a `version` on every push
 * link, after what is batched (cluster_synced). */
void cluster_sync_mark(void);
/* The router's to_peers and to_peer hooks. */
enum router_peers cluster_to_peers(const struct subscriber *publisher, const struct topic *t,
                                   void *arg);
bool cluster_to_peer(const struct subscriber *publisher, const struct topic *t,
                     const struct subscriber *s, void *arg);
/* Whether a subscriber is a link: ours to a core (proto_link), or a peer's. */
bool cluster_is_link(const struct subscriber *s);

/* cluster_metrics.c: the /metrics families of the links (engine.h's
 * metrics_more). */
void cluster_metrics(struct evbuffer *out);

/* cluster_link.c */
/* Creates k's timers (retry, poll, ping) on base. */
void cluster_link_events(struct cluster_core *k, struct event_base *base);
void cluster_open_link(struct cluster_core *k);
/* Disconnects every local client holding a topic that core kidx (of the
 * table in effect) owns, or a pattern when kidx owns topics (kidx
 * CLUSTER_ANY_CORE: any topic that goes upstream, channel or shard channel,
 * and any pattern), logging why; returns how many. */
#define CLUSTER_ANY_CORE (-2)
uint32_t cluster_doom_holders(int kidx, const char *why);
/* Disconnects a client that depended on a core now lost (Kraken's
 * contract: it reconnects and reloads).  Its subscriptions go at once.  A
 * held publish's reply becomes the publish error (Redis too). */
void cluster_disconnect(struct conn *c);
/* A topic or pattern name for a log line: printable ASCII, cut at 64
 * bytes. */
void cluster_printable(char *buf, size_t size, const char *p, size_t len);
/* The same for the topics whose mark is `mark' (not 0): core kidx owns them
 * now, or no one core (kidx -1: the log line names none). */
uint32_t cluster_doom_marked(int kidx, uint64_t mark, const char *why);
/* ack_done_fn for clients: released (ok), or disconnected (a core lost);
 * arg is the core. */
void cluster_ack_done(struct ack_holder *h, bool ok, void *arg);
/* cluster.c */
/* Whether k's link is up: connected and answered its handshake (or first
 * poll).  While a link is connecting, what is written to it is lost if the
 * attempt fails: refused. */
bool cluster_core_up(const struct cluster_core *k);
/* A publish to core c's topics was refused or dropped: counted, and
 * logged at most once a second. */
void cluster_count_drop(struct cluster_core *c);
/* cluster_upstream.c */
/* The end of a loop turn (flush event): every core's batch is written. */
void cluster_flush(void);
/* Router hooks: a topic gained its first local subscriber or lost its last
 * (or gained one while its upstream subscription is pending); an entry was
 * published here. */
void cluster_on_topic(struct topic *t, struct subscriber *s, bool gained, void *arg);
void cluster_on_published(struct subscriber *publisher, enum topic_ns ns, struct entry *e,
                          void *arg);
/* cluster_pattern_lost.c */
/* Which patterns a call concerns (by name); NULL: every one. */
typedef bool (*cluster_pattern_pred)(const char *name, size_t len, void *arg);
/* Child c (a proxy below) holds patterns pred accepts that may have missed
 * entries (matching topics of core kidx, or -1; `why' as for
 * cluster_doom_marked): it is told `VALUE plost', with a log line; its
 * patterns stay held here.  Returns 1 if it held some, 0 if none, -1 when
 * out of memory (the caller disconnects it). */
int cluster_child_plost(struct conn *c, cluster_pattern_pred pred, void *arg, int kidx,
                        const char *why);
/* Disconnects every local holder of a pattern pred accepts, logging why;
 * children are told instead (cluster_child_plost), and with `unheld' (an
 * upstream does not hold those patterns) their copies here are dropped.
 * Returns how many clients and children. */
uint32_t cluster_pattern_doom(cluster_pattern_pred pred, void *arg, bool unheld,
                              const char *why);
/* The same for the patterns named, space-separated. */
uint32_t cluster_pattern_doom_names(const char *names, size_t len, bool unheld, const char *why);
/* pin_answered's hook (cluster_pin.h): t, released, goes by the hash from
 * now on; when that picks another parent than up, the holders of the
 * patterns matching it go. */
void cluster_pattern_unpinned(struct topic *t, void *up);
/* After a configuration, below parents: when the set of upstreams changed
 * (old_cur over old_cores before), every pattern holder goes. */
void cluster_pattern_routes(const struct owner_set *old_cur, struct cluster_core *const *old_cores,
                            bool was_sticky);

/* cluster_pattern.c */
/* Whether core k carries this node's patterns: a member core (not this
 * node, not a static upstream), or, below parents, a parent. */
bool cluster_pattern_carried(const struct cluster_core *k);
/* k's link was just opened: every pattern held here goes on it. */
void cluster_pattern_link_open(struct cluster_core *k);
/* Whether a local pattern holder depends on core kidx (CLUSTER_ANY_CORE:
 * any): kidx owns topics under cur or alt, and carries the patterns or is
 * this core. */
bool cluster_pattern_depends(int kidx);
/* The router's pattern hooks. */
bool cluster_on_pattern(const char *name, size_t len, struct subscriber *s, uint32_t holders,
                        void *arg);
bool cluster_pattern_to_peers(const struct subscriber *publisher, const struct topic *t,
                              void *arg);

/* cluster_shard.c */
/* Whether topics of namespace ns go upstream from this node (channels;
 * Redis shard channels but below parents). */
bool cluster_ns_travels(enum topic_ns ns);
/* k, when it takes topics of namespace ns (a shard channel: only a member
 * core, cluster_pattern_carried), else NULL: served here. */
struct cluster_core *cluster_core_for_ns(struct cluster_core *k, enum topic_ns ns);
/* The kind of request op (OP_SUB, OP_UNSUB, OP_PUB) for namespace ns. */
enum op cluster_op_ns(enum op op, enum topic_ns ns);

/* cluster_subref.c */
/* k's subscribe batch number seq, with these names (op: OP_SUB, OP_SSUB
 * for Redis shard channels, OP_PSUB for Redis patterns), was sent: kept
 * until answered when this node is k's child (k a parent or a static
 * upstream).  -1: out of memory (close the link). */
int cluster_subref_sent(struct cluster_core *k, uint64_t seq, struct evbuffer *names,
                        enum op op);
/* k answered requests up to k->acks.answered: their batches are dropped. */
void cluster_subref_answered(struct cluster_core *k);
/* k (index kidx) refused its oldest unanswered request, before the FIFO
 * takes the refusal: if it is a subscribe batch, every local holder of one
 * of its topics (or patterns) is disconnected (a child's link told them
 * lost); returns whether it was one. */
bool cluster_subref_refused(struct cluster_core *k, int kidx);
/* Drops every batch kept (the link is gone, or k). */
void cluster_subref_free(struct cluster_core *k);
/* cluster_pub.c */
/* An entry of the current request was added to k's publish batch. */
void cluster_pub_note(struct cluster_core *k);
/* k answered an acknowledged request. */
void cluster_pub_answered(struct cluster_core *k);
/* k's link is lost or k left, before its waits fail: warns about noreply
 * publishes it did not confirm. */
void cluster_pub_lost(struct cluster_core *k);

/* cluster_origin.c */
struct entry;
/* Appends peer publisher's entry e, its topics whose owners[i] is k, to
 * member c's `link_forward` batches: one MESSAGE per set of nodes that
 * have some of those topics already (each batch's first line), its
 * publisher waiting for each (cluster_pub_note).  -1: out of memory,
 * nothing was appended (logged). */
int cluster_forward(struct cluster_core *c, enum topic_ns ns, const struct entry *e,
                     const int *owners, int k, const struct subscriber *publisher);
/* Whether peer connection s is the link of core c (by the name it gave in
 * `set peer`). */
bool cluster_peer_is(const struct subscriber *s, const struct cluster_core *c);
/* Whether core c's node has the entries of the forward being routed
 * already: it sent the forward, or the forward names it.  False outside a
 * forward. */
bool cluster_origin_had(const struct cluster_core *c);

/* cluster_missing.c */
/* m: the owners of set s followed by the missing names (copied).  Returns
 * 0, or -1 when out of memory (m empty). */
int cluster_missing_build(struct missing_set *m, const struct owner_set *s,
                          const struct cluster_name *miss, size_t nmiss);
void cluster_missing_free(struct missing_set *m);
/* Whether one of the topics belongs to a missing owner: then counted and
 * logged (at most once a second) as refused `what` ("publishes"). */
bool cluster_missing_refuse(const struct proto_slice *topics, uint32_t n, const char *what);
/* The same for a request that concerns every owner (a pattern): refused when
 * any owner of cur or alt is missing. */
bool cluster_missing_refuse_any(const char *what);
/* Logs the owners of cur that are missing now and were not before (call it
 * before cl.miss is replaced). */
void cluster_missing_warn(const struct cluster_name *miss, size_t n);

/* cluster_link.c, continued */
/* Below parents: a `version` on k's link after what is batched, which
 * closes the waits of the unsubscribes sent so far (cluster_pin.h). */
void cluster_link_barrier(struct cluster_core *k);
/* ack_done_fn that does nothing (every connection is closing anyway). */
void cluster_ack_quiet(struct ack_holder *h, bool ok, void *arg);

/* cluster_served.c: since when the retention of a topic owned here is
 * complete (a moment, struct cluster_point: cluster_entered.h); entries
 * after it (seq) are all here. */
#define CLUSTER_NEVER ((struct cluster_point){INT64_MAX, UINT64_MAX})
/* Takes a moment now (a seq number of its own). */
struct cluster_point cluster_served_now(void);
/* After a configuration was applied at moment at: remembers its owner sets
 * (nothing when they did not change). */
void cluster_served_push(struct cluster_point at);
/* The id the next configuration pushed will get. */
uint64_t cluster_served_next_id(void);
/* t, held upstream (confirmed) since `since`, becomes owned here by the
 * configuration about to be pushed, its previous owner still live. */
void cluster_served_gained(struct topic *t, struct cluster_point since);
/* For a topic owned here under cur (in the last configuration pushed):
 * true, and *since the moment from which its entries are all in this
 * node's retention (CLUSTER_NEVER: not yet, a move is switching to it).
 * False when it is not owned here.  Without any configuration remembered
 * (out of memory): true, from when it was forgotten. */
bool cluster_served_since(const struct topic *t, struct cluster_point *since);
/* The other cores (indices in cl.cores) that owned t under cur or alt in a
 * configuration in force at some moment after the horizon h (a publish
 * seq, or a second: cluster_hist_first), where its entries since then
 * entered the cluster (*self_too: this node did too), each with the second
 * of the first of those configurations where it did (since[]).  Returns
 * their count, at most max; -1 when it cannot tell (the history does not
 * reach back to h, or one of them is not live: what entered there cannot
 * be asked for; or more than max). */
int cluster_served_owners(const struct topic *t, bool by_seq, int64_t h, int *out,
                          int64_t *since, int max, bool *self_too);
#define CLUSTER_OWNER_SELF (-2)
/* The core (index in cl.cores; CLUSTER_OWNER_SELF: this node) that owned t under
 * cur when the entry of publish seq `seq' was published here (where this
 * node forwarded it, if not here), -1: unknown (older than the history) or
 * not live. */
int cluster_served_owner_at(const struct topic *t, uint64_t seq);
void cluster_served_free(void);

/* cluster_fresh.c: whether the view may be stale (this node stopped). */
/* Starts the check once there is a server and a first confirmation came
 * (called for each configuration, and by the confirmations).  Returns -1
 * when out of memory. */
int cluster_fresh_start(void);
/* Whether a client's publish is refused because the view is not confirmed
 * (counted and logged). */
bool cluster_fresh_refuse(void);

/* cluster_retro.c */
/* The router's retro_classify and retro_defer hooks (router.h). */
void cluster_retro_classify(struct topic *const *topics, uint32_t n, int kind, int64_t h,
                            uint8_t *src, void *arg);
bool cluster_retro_defer(struct subscriber *s, struct topic *const *topics, const bool *held,
                         uint32_t n, int kind, int64_t h, int64_t h_time, void *arg);
/* The answer to k's next acknowledged request arrived (found: STORED, else
 * NOT_FOUND): when it is a link_retro request, its client gets its entries
 * (or NOT_FOUND).  Called before the acknowledgement releases anybody. */
void cluster_retro_answered(struct cluster_core *k, bool found);
/* k's link is gone: its link_retro requests are dropped (their clients
 * are disconnected as holders of k's topics; a child's relayed answer,
 * refused, is freed once it waits for no other core). */
void cluster_retro_fail(struct cluster_core *k);
/* c's held retroactive answer becomes NOT_FOUND (once per request). */
void cluster_retro_refuse(struct conn *c);

/* cluster_relay.c */
struct entry;
/* A new item of e (referenced, holding no topic yet) in c's relayed
 * answer, valid until the next one; NULL when out of memory. */
struct qitem *cluster_relay_push(struct conn *c, struct entry *e);
/* c's answer became NOT_FOUND: its entries are dropped when it is done. */
void cluster_relay_refused(struct conn *c);
/* When c waits for no more owner: writes its relayed answer in front of its
 * held reply (or drops it, refused), and frees it. */
void cluster_relay_finish(struct conn *c);
void cluster_relay_free(struct conn *c);
/* Child c (the link of a proxy below) holds topics that core kidx owns (or
 * whose mark is `mark', when not 0), now lost: they are unsubscribed and the
 * child is told (`VALUE lost'), with a log line saying `why' (as for
 * cluster_doom_marked).  Returns 1 if it held some, 0 if none, -1 when out
 * of memory (the caller disconnects it). */
int cluster_child_lost(struct conn *c, int kidx, uint64_t mark, const char *why);
/* Writes blocks (`VALUE lost', `VALUE plost') to child c: in front of its
 * held reply, if any (which a refusal may yet replace), else at the end.
 * Returns 0, or -1 when out of memory. */
int cluster_child_tell(struct conn *c, struct evbuffer *blocks);
/* At most this many bytes of names per such block (16 KiB, or
 * max_request_bytes if smaller: no block passes the child's limit). */
size_t cluster_lost_limit(void);
/* Moves the names in cur to out as one `VALUE <kind>' block. */
int cluster_lost_block(struct evbuffer *out, const char *kind, struct evbuffer *cur);
/* Child c's held request waited for core k (index kidx, or -1), now lost
 * (its wait there is gone), or, not lost, k (this node's parent) answered
 * that batch with the cluster error: its held publishes that wait for k
 * are answered with the cluster error (those noted refused: cluster_ack.h),
 * the others STORED once their cores confirm, a held link_retro with
 * NOT_FOUND, a held subscribe goes on waiting for the other cores; c is
 * released when it waits for nothing more, and its link stays.  Returns
 * false when out of memory (the caller closes c). */
bool cluster_child_wait_failed(struct conn *c, const struct cluster_core *k, int kidx,
                               bool lost);
/* Child c waits for nothing more: its refused held publishes get the
 * cluster error, its notes go, it is released.  Returns false when that
 * fails (the caller closes c). */
bool cluster_child_release(struct conn *c);

#endif
