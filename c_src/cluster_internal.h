/* cluster_internal.h - what cluster.c (ownership, batching, the router's
 * hooks, configuration, status), cluster_link.c (the links' life:
 * opening, liveness, retries, and what a lost link or core does to the
 * clients that depended on it) and cluster_pub.c (acknowledged publishes)
 * share.  Nothing else includes it. */
#ifndef KRAKEN_CLUSTER_INTERNAL_H
#define KRAKEN_CLUSTER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.h"
#include "cluster_ack.h"
#include "cluster_hash.h"

struct conn;
struct event;
struct event_base;
struct evbuffer;
struct server;
struct subscriber;
struct topic;
struct cluster_retro_req;

enum op { OP_NONE, OP_SUB, OP_UNSUB, OP_PUB };

/* A live core (self included) as this engine sees it. */
struct cluster_core {
    char *name;
    size_t len;
    char host[64];
    int port;
    bool self;
    bool reopen;        /* its link broke: clients that subscribed meanwhile are stale */
    int poll_ms;        /* > 0: may be polled (a static upstream) */
    bool polling;       /* it refused push mode: its link polls */
    struct event *poll; /* the polling timer (persistent) */
    struct event *ping; /* the liveness timer (persistent) */
    int64_t asked_ms;   /* when the oldest unanswered ping or poll was sent, -1: none */
    struct conn *link;  /* NULL while down (a retry is scheduled) */
    struct event *retry;
    struct evbuffer *pend;
    enum op pend_op;
    struct ack_fifo acks; /* subscribe batches and link_retro requests sent and answered */
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
    uint64_t nr_seq, nr_pending, nr_client;
    char nr_peer[64];
};

struct cluster_state {
    struct server *srv;
    char *self;
    size_t self_len;
    struct cluster_core **cores;
    struct cluster_hash_node *hn; /* parallel to cores */
    size_t n;
    struct event *flush_ev;
    bool flush_armed;
    int *owners; /* scratch: the owner of each topic of an entry */
    size_t owners_cap;
    uint64_t alone_refused; /* publishes refused while no core was live */
    int64_t alone_logged_ms;
};

extern struct cluster_state cl; /* cluster.c */

/* cluster.c */
/* Index of the owner of a topic in the current table, -1 without cores. */
int cluster_owner_raw(const char *name, size_t len);
/* Writes what is batched for k to its link. */
void cluster_emit(struct cluster_core *k);

/* cluster_link.c */
/* Creates k's timers (retry, poll, ping) on base. */
void cluster_link_events(struct cluster_core *k, struct event_base *base);
void cluster_open_link(struct cluster_core *k);
/* Disconnects every local client holding a topic that core kidx (of the
 * table in effect) owns, logging why; returns how many. */
uint32_t cluster_doom_holders(int kidx, const char *why);
/* ack_done_fn for clients: released (ok), or disconnected (a core lost);
 * arg is the core. */
void cluster_ack_done(struct ack_holder *h, bool ok, void *arg);
/* cluster_pub.c */
/* An entry of the current request was added to k's publish batch. */
void cluster_pub_note(struct cluster_core *k);
/* k answered an acknowledged request. */
void cluster_pub_answered(struct cluster_core *k);
/* k's link is lost or k left, before its waits fail: warns about noreply
 * publishes it did not confirm. */
void cluster_pub_lost(struct cluster_core *k);

/* cluster_link.c, continued */
/* ack_done_fn that does nothing (every connection is closing anyway). */
void cluster_ack_quiet(struct ack_holder *h, bool ok, void *arg);

/* cluster_retro.c */
/* The router's retro_classify and retro_defer hooks (router.h). */
void cluster_retro_classify(struct topic *const *topics, uint32_t n, int kind, int64_t h,
                            uint8_t *src, void *arg);
bool cluster_retro_defer(struct subscriber *s, struct topic *const *topics, uint32_t n,
                         int kind, int64_t h, int64_t h_time, void *arg);
/* The answer to k's next acknowledged request arrived (found: STORED, else
 * NOT_FOUND): when it is a link_retro request, its client gets its entries
 * (or NOT_FOUND).  Called before the acknowledgement releases anybody. */
void cluster_retro_answered(struct cluster_core *k, bool found);
/* k's link is gone: its link_retro requests are dropped (their clients
 * are disconnected as holders of k's topics). */
void cluster_retro_fail(struct cluster_core *k);

#endif
