/* server_internal.h - what server.c (listeners, timers, the router's hooks)
 * and conn_io.c (one connection's reads, protocol runs, writes and close)
 * share.  Nothing else includes it. */
#ifndef KRAKEN_SERVER_INTERNAL_H
#define KRAKEN_SERVER_INTERNAL_H

#include <stddef.h>

#include "server.h"

static inline struct server *server_of(struct conn *c)
{
    return c->eng == NULL ? NULL : (struct server *)((char *)c->eng - offsetof(struct server, eng));
}

/* conn_io.c */
/* A connection of protocol ops on socket fd (accepted, or connecting out),
 * reading; NULL, with fd closed, when out of memory. */
struct conn *conn_io_new(struct server *srv, const struct proto_ops *ops, int fd,
                         const char *peer);
/* Frees c now (its socket, events, buffers, waits). */
void conn_io_close(struct conn *c);
/* Delivers what c's queue holds (push) and writes its output; resumes
 * reading after a pause.  May free c. */
void conn_io_write(struct conn *c);
/* Frees the connections server_doom() marked, after a last flush. */
void conn_io_reap(struct server *srv);

/* server.c */
/* Enforces max_memory_bytes now (budget.c). */
void server_budget_check(struct server *srv);
/* A connection closed: accept again, unless paused after EMFILE. */
void server_accepts_resume(struct server *srv);

#endif
