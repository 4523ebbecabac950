/* server.h - the engine's network side: libevent loop, listeners, sockets.
 *
 * One event loop owns everything (listeners, every connection, the engine),
 * so no locks are needed.  There is one listener per enabled protocol
 * (Kraken's on tcp_server_port, Redis's on redis_port); each accepted socket
 * becomes a connection (conn.h) of that listener's protocol, and from then
 * on the server only moves bytes: it reads into conn->in, calls the
 * protocol's process(), and writes conn->out.  The server also enforces the
 * connection-level limits: max_tcp_clients, the idle timeout (the engine's
 * list of connections ordered by last request, swept by a timer), output
 * backpressure, descriptor exhaustion at accept, and the router's hooks
 * (queue overflow: disconnect; ready: arm a push write). */
#ifndef KRAKEN_SERVER_H
#define KRAKEN_SERVER_H

#include <stddef.h>

#include "config.h"
#include "conn.h"
#include "engine.h"
#include "health.h"
#include "loop.h"

struct event_base;
struct evconnlistener;
struct server;
struct http;

struct listener {
    struct evconnlistener *l;
    const struct proto_ops *ops;
    struct server *srv;
    int port;                    /* actual listening port */
};

struct server {
    struct event_base *base;
    struct engine eng;
    struct listener listeners[PROTO_KINDS]; /* .l NULL: protocol not enabled */
    struct event *sweep_timer;
    struct event *accept_timer;  /* re-enables accepting after EMFILE */
    struct event *reaper;        /* frees connections marked for death */
    struct event *budget_timer;  /* enforces max_memory_bytes (budget.h) */
    uint64_t budget_mark;        /* router's queued_bytes_total at the last check */
    struct conn *doomed;         /* connections to free from the reaper */
    struct loop loop;            /* connections to write after this turn (loop.c) */
    struct health health;        /* readiness (health.c) */
    struct http *http;           /* the HTTP endpoint, NULL when off (http.c) */
    bool started;
    /* cluster_wait: the client listeners are off until the first cluster
     * view (server_release()); until then this engine would serve every
     * topic alone and forward nothing. */
    bool held;
    struct event *release_timer; /* polls release_ready while held */
    bool (*release_ready)(void);
    int64_t release_by_ms;
    void (*on_stop)(struct server *srv); /* set by cluster_control.c: before connections close */
};

/* Opens the listeners and starts timers.  On failure returns -1 and writes a
 * reason into err. */
int server_start(struct server *srv, struct event_base *base, const struct engine_config *cfg,
                 char *err, size_t errlen);
void server_stop(struct server *srv);
/* Closes c from the reaper, after sending line (NULL: none) if it can:
 * safe while another connection is being served or routed to. */
void server_doom(struct conn *c, const char *line);
/* Writes what c->out holds (arms its write event). */
void server_kick(struct conn *c);
/* An outbound connection of protocol ops to ip (numeric) and port, connecting
 * in the background: its output is sent once connected; a failure to
 * connect closes it like a reset (ops->release).  NULL with err on failure. */
struct conn *server_connect(struct server *srv, const struct proto_ops *ops, const char *ip,
                            int port, char *err, size_t errlen);
/* The port a protocol listens on, or -1 when it is not enabled. */
int server_port(const struct server *srv, enum proto_kind kind);
/* Whether accepting is paused after running out of descriptors. */
bool server_accept_paused(const struct server *srv);
/* Whether the engine serves (health.h: its loop turns, its listeners accept,
 * a canary delivers): 1; 0 if not, with a one-line reason (no newline) in
 * why.  /readyz and the control channel's `ready`. */
int server_ready(struct server *srv, char *why, size_t len);
/* Ends the hold of cluster_wait (the first cluster view arrived) once
 * ready() says so (polled every few milliseconds; NULL: at once), or after
 * max_ms: the listeners accept, and the connections waiting in their
 * backlog are served.  Returns -1 when out of memory (released at once). */
int server_release(struct server *srv, bool (*ready)(void), int max_ms);

#endif
