/* conn.h - one client connection, whatever protocol it speaks.
 *
 * A connection is the meeting point of three modules that never look inside
 * each other:
 *   - server.c owns the socket: events, reading into `in`, writing `out`;
 *   - a protocol (struct proto_ops: proto_kraken.c, proto_redis.c) turns
 *     `in` into requests executed against the engine (engine.h) and writes
 *     replies, and pushed messages, into `out`; it knows nothing of sockets,
 *     so unit tests and fuzzers drive it with plain evbuffers;
 *   - the router (router.h) sees only `sub`, whose `owner` points back here.
 * The protocol's own state lives after the struct (conn_pstate()).
 *
 * Life cycle (`state`):
 *   CONN_OPEN     reading requests
 *   CONN_EOF      the client sent EOF: answer what it sent, then close
 *   CONN_CLOSING  a last reply is queued: read nothing more, close once flushed
 *   CONN_DOOMED   closing, and queued for the reaper: decided while another
 *                 connection was routing (queue overflow), when freeing at
 *                 once would be unsafe */
#ifndef KRAKEN_CONN_H
#define KRAKEN_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster_ack.h"
#include "router.h"

struct engine;
struct evbuffer;
struct event;
struct conn;
struct cluster_retro_req;
struct entry;

enum conn_state { CONN_OPEN, CONN_EOF, CONN_CLOSING, CONN_DOOMED };

/* What a protocol's process() says about the connection. */
enum conn_status {
    CONN_OK,      /* consumed what it could */
    CONN_PAUSED,  /* output over its high-water mark, or held (conn_held()): call
                     again when it drains, or once released */
    CONN_CLOSE,   /* close once the output is flushed */
};

enum proto_kind { PROTO_KIND_KRAKEN, PROTO_KIND_REDIS, PROTO_KIND_LINK, PROTO_KINDS };

struct proto_ops {
    const char *name;          /* "kraken", "redis": in stats */
    const char *log_name;      /* how log lines call its clients: "client", "redis client" */
    enum proto_kind kind;
    size_t state_size;         /* bytes of protocol state after struct conn */
    void (*init)(struct conn *c);
    void (*release)(struct conn *c);
    /* Executes the requests complete in c->in, appending replies to c->out. */
    enum conn_status (*process)(struct conn *c);
    /* Push protocols: moves queued entries into c->out (at a reply
     * boundary), at most until c->out holds CONN_PUSH_HIGH bytes.  NULL for
     * a connection that only polls. */
    void (*deliver)(struct conn *c);
    /* In a cluster: a topic's owner said that the horizon of the held
     * retroactive subscribe is too old (cluster_retro.c): the held reply
     * becomes the protocol's "too old" answer (NULL: nothing to do). */
    void (*retro_refused)(struct conn *c);
    /* In a cluster, for a child's link (cluster_relay.c): appends to out the
     * answer of a relayed link_retro, the n items v (queue.h: an entry and
     * which of its topics to list), by second.  Returns 0; -2 when it would
     * pass max_client_queue_bytes (nothing written); -1 when out of
     * memory.  NULL: the protocol has no children (refused). */
    int (*retro_answer)(struct conn *c, struct evbuffer *out, const struct qitem *v, size_t n);
    /* The line sent before closing a connection refused at max_tcp_clients,
     * whose queue overflowed, or that ran out of memory (NULL: none). */
    const char *err_too_many_clients;
    const char *err_queue_limit;
    const char *err_nomem;
};

/* Output beyond this stops request processing until the client reads. */
#define CONN_OUTPUT_HIGH (4u << 20)
/* A push protocol moves queued entries into the output up to this. */
#define CONN_PUSH_HIGH (256u << 10)
/* Entries at least this big are sent by reference rather than copied. */
#define CONN_COPY_LIMIT 2048
/* The alignment of a connection's protocol state (conn.pstate): 8, what
 * the states hold (integers, pointers); a protocol whose state needs more
 * fails to compile (its _Static_assert). */
#define CONN_PSTATE_ALIGN 8

struct conn {
    struct subscriber sub;       /* router state: subscriptions and queue */
    struct engine *eng;
    const struct proto_ops *ops;
    enum conn_state state;
    /* Socket side, managed by server.c; NULL/-1 when driven without a socket. */
    int fd;
    struct event *rev, *wev;     /* read (persistent) and write (while output waits) */
    struct evbuffer *in, *out;
    uint8_t rflags;              /* server.c's read-loop flags */
    /* In a cluster, what is held (set with the waits below, meaningful
     * while conn_held()): a subscribe's reply (nothing more is executed
     * until the release, conn_blocked()), a publish's (a failure answers
     * the publish error). */
    bool held_sub, held_pub;
    uint32_t write_slot;         /* listed for a write after this turn: index + 1 (loop.c), 0: not */
    struct conn *older, *newer;  /* engine's list ordered by last request */
    struct conn *next_doomed;
    char peer[64];
    int64_t connected_ms;
    int64_t last_request_ms;
    int64_t last_poll_ms;        /* -1: never polled */
    uint64_t requests;
    /* In a cluster: the upstream acknowledgements its last request waits
     * for (cluster_ack.h, cluster.c).  While there are any, its requests are
     * held: the protocol executes nothing more, server.c neither delivers
     * nor writes, and what c->out holds from held_from on (the reply) is
     * dropped if the connection is doomed meanwhile. */
    struct ack_holder acks;
    size_t held_from;
    struct cluster_retro_req *retro; /* its retroactive fetches upstream (cluster_retro.c) */
    struct cluster_relay *relay;     /* a child's link_retro being relayed (cluster_relay.c) */
    /* The protocol's state (proto_ops.state_size bytes), aligned for any
     * state of at most CONN_PSTATE_ALIGN (each protocol asserts it). */
    _Alignas(CONN_PSTATE_ALIGN) unsigned char pstate[];
};

static inline void *conn_pstate(struct conn *c)
{
    return c->pstate;
}

/* The connection a router subscriber belongs to (struct subscriber's
 * `owner`): NULL for one that belongs to none (health.c's canary). */
static inline struct conn *conn_of(const struct subscriber *s)
{
    return s ? s->owner : NULL;
}

/* Whether c is one of this node's links to an upstream (proto_link.c). */
static inline bool conn_is_uplink(const struct conn *c)
{
    return c && c->ops->kind == PROTO_KIND_LINK;
}

static inline bool conn_is_closing(const struct conn *c)
{
    return c->state == CONN_CLOSING || c->state == CONN_DOOMED;
}

/* Whether c's requests are held for upstream acknowledgements. */
static inline bool conn_held(const struct conn *c)
{
    return c->acks.n != 0;
}

/* Whether c may execute no more requests: a held subscribe.  A held
 * publish lets it execute what it has read (replies queue behind). */
static inline bool conn_blocked(const struct conn *c)
{
    return conn_held(c) && c->held_sub;
}

/* What the memory budget (max_memory_bytes, budget.h) counts for c: its
 * queue, its input and output, CONN_SUB_COST bytes per subscription. */
#define CONN_SUB_COST 48
size_t conn_counted_bytes(const struct conn *c);

/* Allocates a connection of protocol ops (not yet in the engine's list, no
 * socket: in/out are NULL until the caller sets them). */
struct conn *conn_new(struct engine *eng, const struct proto_ops *ops, uint64_t id,
                      const char *peer, int64_t now_ms);
/* Releases protocol state, subscriptions and queue (in r, the engine's
 * router), and frees c (not its socket side, which server.c closes first). */
void conn_free(struct conn *c, struct router *r);

#endif
