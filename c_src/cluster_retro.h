/* cluster_retro.h - a retroactive subscription's request to a core, shared
 * by cluster_retro.c (the router's hooks: which owners are asked, the
 * requests) and cluster_retro_answer.c (their answers, merged into the
 * client's queue).  Nothing else includes it. */
#ifndef KRAKEN_CLUSTER_RETRO_H
#define KRAKEN_CLUSTER_RETRO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conn;
struct entry;
struct topic;
struct cluster_core;

struct cluster_retro_req {
    struct cluster_core *core;
    struct conn *conn;               /* the client; NULL once it went away */
    struct cluster_retro_req *next;  /* in core's FIFO */
    struct cluster_retro_req *cnext; /* in the client's list */
    uint64_t ack;                    /* its number in core->acks */
    uint64_t req_seq;                /* the router's seq when asked */
    uint64_t from_seq;               /* this node's entries after this seq ... */
    int64_t from_time;               /* ... and after this second are wanted */
    uint32_t count0;                 /* the client's queue length when asked */
    bool refused;                    /* the request is answered NOT_FOUND */
    bool entered;                    /* a link_entered request (across a move) */
    uint32_t ntopics;
    struct topic **topics;           /* referenced (topic_ref) */
    bool *held;                      /* the client held topics[i] when it asked */
    bool *own;                       /* this request adds this node's own entries
                                        of topics[i] (one request per topic does) */
    struct entry **got;              /* the answer's entries, by second */
    size_t ngot, capgot;
    size_t got_bytes;                /* the answer's length so far */
};

/* Frees q (its topics and the answer's entries unreferenced). */
void cluster_retro_req_free(struct cluster_retro_req *q);
/* Unlinks q from its client's list. */
void cluster_retro_unlink(struct cluster_retro_req *q);

#endif
