/* session.h - one client connection's protocol state and request handling.
 *
 * A session reads requests from an input evbuffer and writes replies to an
 * output evbuffer; it knows nothing of sockets, so the fuzzer and the unit
 * tests drive it with plain buffers.  server.c owns the socket and calls
 * session_process() whenever bytes arrive or the output drains. */
#ifndef KRAKEN_SESSION_H
#define KRAKEN_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "router.h"

struct server;
struct evbuffer;
struct event;

struct session {
    struct subscriber sub;       /* router state: subscriptions and queue */
    struct server *srv;
    /* Socket side, managed by server.c; NULL/-1 when driven without a socket. */
    int fd;
    struct event *rev, *wev;     /* read (persistent) and write (while output waits) */
    struct evbuffer *in, *out;
    struct session *older, *newer; /* server's list ordered by last request */
    struct session *next_doomed;
    char peer[64];
    int64_t connected_ms;
    int64_t last_request_ms;
    int64_t last_poll_ms;        /* -1: never polled */
    uint64_t horizon_seq;        /* from `register`, valid when has_horizon */
    size_t need;                 /* bytes needed before parsing again (0: unknown) */
    bool has_horizon;
    bool eof;                    /* the client sent EOF: answer, then close */
    bool closing;                /* reply sent, close once flushed */
    bool doomed;                 /* queued for the reaper */
    bool unread;                 /* the read callback left bytes in the socket */
    bool rdhup;                  /* the peer's FIN is queued behind the unread bytes */
    bool replied;                /* output was produced since the read callback began */
};

enum session_status {
    SESSION_OK,      /* consumed what it could */
    SESSION_PAUSED,  /* output over its high-water mark: call again when it drains */
    SESSION_CLOSE,   /* close once the output is flushed */
};

/* Output beyond this stops request processing until the client reads. */
#define SESSION_OUTPUT_HIGH (4u << 20)
/* Entries at least this big are sent by reference rather than copied. */
#define SESSION_COPY_LIMIT 2048

void session_init(struct session *s, struct server *srv, uint64_t id, const char *peer,
                  int64_t now_ms);
/* Releases subscriptions and queue. */
void session_release(struct session *s);
enum session_status session_process(struct session *s, struct evbuffer *in,
                                    struct evbuffer *out);

static inline struct session *session_of(struct subscriber *sub)
{
    return (struct session *)sub; /* sub is the first member */
}

#endif
