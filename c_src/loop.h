/* loop.h - the engine's event loop: libevent turns, and the output of a turn
 * written after it (see loop.c). */
#ifndef KRAKEN_LOOP_H
#define KRAKEN_LOOP_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

struct conn;

/* Replies of at most this many bytes wait for the end of the turn (conn_io.c);
 * larger ones are written at once. */
#define LOOP_DEFER_MAX 8192

/* The connections to write after this turn (in struct server).  `write`
 * writes one (conn_io_write(), which may free it), set by the owner
 * (server_start()); it is called once per listed connection per turn. */
struct loop {
    struct conn **list;
    uint32_t n, cap;
    void (*write)(struct conn *c);
};

/* Runs base until event_base_loopexit()/loopbreak(), writing the connections
 * listed by loop_want_write() after each turn.  The server may not be
 * started yet (the control channel starts it later): nothing is listed. */
void loop_run(struct loop *lp, struct event_base *base);
/* c has output (replies, or queued entries of a push connection): write it
 * once this turn's input is read.  Idempotent until then; false if the list
 * cannot grow (out of memory): then the caller writes now. */
bool loop_want_write(struct loop *lp, struct conn *c);
/* Whether some connection waits to be written after this turn. */
static inline bool loop_writes_waiting(const struct loop *lp)
{
    return lp->n > 0;
}
/* c is being freed: take it off the list. */
void loop_forget(struct loop *lp, struct conn *c);
/* Frees the list. */
void loop_free(struct loop *lp);

#endif
