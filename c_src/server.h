/* server.h - the engine's network side: libevent loop, listener, connections.
 *
 * One event loop owns everything (listener, every connection, the router),
 * so no locks are needed.  Each connection is a socket plus a session
 * (session.h) that turns its input bytes into replies.  The server also
 * enforces the connection-level limits: max_tcp_clients, the idle timeout
 * (a list of sessions ordered by last request, swept by a timer),
 * output backpressure, and descriptor exhaustion at accept. */
#ifndef KRAKEN_SERVER_H
#define KRAKEN_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "log.h"
#include "router.h"

#define KRAKEN_VERSION "1.0.0"

struct session;
struct event_base;

struct server_stats {
    uint64_t total_connections;
    uint64_t rejected_connections;
    uint64_t messages_delivered;  /* entries written out by `get messages` */
    uint64_t requests;
    uint64_t disconnects_overflow;
    uint64_t disconnects_idle;
    uint64_t disconnects_error;
};

struct server {
    struct event_base *base;
    struct engine_config cfg;
    struct router router;
    struct evconnlistener *listener;
    struct event *sweep_timer;
    struct event *accept_timer;  /* re-enables accepting after EMFILE */
    struct event *reaper;        /* frees sessions marked for death */
    int port;                    /* actual listening port */
    int64_t started_ms;
    uint64_t next_id;
    uint32_t nclients;
    struct session *oldest, *newest; /* all sessions, by last request */
    struct session *doomed;          /* sessions to free from the reaper */
    struct server_stats stats;
    struct proto_slice *slices;      /* scratch for topic lists */
    size_t slices_cap;
    struct proto_entry *entries;     /* scratch for a publish block's entries */
    size_t entries_cap;
};

/* Opens the listener and starts timers.  On failure returns -1 and writes a
 * reason into err. */
int server_start(struct server *srv, struct event_base *base, const struct engine_config *cfg,
                 char *err, size_t errlen);
void server_stop(struct server *srv);
int64_t server_now_ms(void);
struct session *server_find_session(struct server *srv, uint64_t id);
/* Writes the `stats` reply (STAT lines and END); defined in session.c. */
struct evbuffer;
void server_write_stats(struct server *srv, struct evbuffer *out);

#endif
