/* loop.c - the engine's event loop, and when output is written.
 *
 * What costs in delivering a small entry is the write(2), not the bytes: on
 * loopback a write also runs the receiver's TCP input and wakes it.  So
 * output is not written the moment it is produced.  A connection that has
 * some (the replies to what it sent; or, for a push connection, entries the
 * router queued for it: the router's `ready` hook) is listed here, and the
 * list is written once the turn's input is read, as Redis writes its
 * clients in beforeSleep:
 *
 *   turn        epoll_wait, then every ready socket is read and its requests
 *               run: publishes route entries into subscribers' queues,
 *               replies go to output buffers; each connection with output
 *               is listed (once)
 *   then        every listed connection delivers its queue (push) and
 *               writes: one write(2) per connection per turn, carrying what
 *               every publisher of the turn sent it
 *
 * Replies and pushed entries wait for the same point, so a publisher never
 * hears its reply before its subscribers are written to: a publisher that
 * waits for replies (any client that bounds what it has in flight) cannot
 * run ahead of its deliveries.  A turn reads at most READ_BURST per
 * connection (conn_io.c), so what a turn queues is bounded too.
 *
 * The delay is one turn's work: on an idle server a publish is written in
 * the same wake-up as before; under load each write carries a turn's
 * entries.
 *
 * The list (struct loop, in struct server) holds connections, each at most
 * once (c->write_slot is its index + 1); a connection freed while listed
 * leaves a NULL hole.  Each is written by the list's `write`
 * (conn_io_write(), set by server.c: this file knows nothing of sockets).  Writing may
 * list connections again (a protocol that publishes while delivering, a
 * cluster link): those wait for the next turn. */
#include "loop.h"

#include <stdlib.h>

#include "clock.h"
#include "conn.h"

static int grow(struct loop *lp)
{
    uint32_t cap = lp->cap ? lp->cap * 2 : 64;
    struct conn **p = realloc(lp->list, cap * sizeof *p);
    if (!p)
        return -1;
    lp->list = p;
    lp->cap = cap;
    return 0;
}

bool loop_want_write(struct loop *lp, struct conn *c)
{
    if (c->write_slot)
        return true;
    if (lp->n == lp->cap && grow(lp) < 0)
        return false;
    lp->list[lp->n++] = c;
    c->write_slot = lp->n;
    return true;
}

void loop_forget(struct loop *lp, struct conn *c)
{
    if (c->write_slot) {
        lp->list[c->write_slot - 1] = NULL;
        c->write_slot = 0;
    }
}

/* Writes every listed connection; those listed meanwhile are kept. */
static void write_listed(struct loop *lp)
{
    uint32_t n = lp->n;
    for (uint32_t i = 0; i < n; i++) {
        struct conn *c = lp->list[i];
        if (!c)
            continue;
        c->write_slot = 0;
        lp->list[i] = NULL;
        lp->write(c);
    }
    uint32_t k = 0;
    for (uint32_t i = n; i < lp->n; i++) {
        struct conn *c = lp->list[i];
        if (c) {
            lp->list[k++] = c;
            c->write_slot = k;
        }
    }
    lp->n = k;
}

static bool stopping(struct event_base *base, int r)
{
    return r < 0 || event_base_got_exit(base) || event_base_got_break(base);
}

void loop_run(struct loop *lp, struct event_base *base)
{
    for (;;) {
        clock_turn_begin();
        int r = event_base_loop(base, lp->n ? EVLOOP_NONBLOCK : EVLOOP_ONCE);
        bool stop = stopping(base, r);
        /* One non-blocking turn more while output waits: its input joins the
         * same writes.  (event_base_loop() clears the exit flags when it
         * starts: check them after every call.) */
        if (!stop && lp->n) {
            clock_turn_begin();
            stop = stopping(base, event_base_loop(base, EVLOOP_NONBLOCK));
        }
        if (lp->n)
            write_listed(lp); /* also the last turn's, before server_stop() */
        if (stop || (r == 1 && !lp->n))
            break; /* r == 1: no event left to wait for, as event_base_dispatch would return */
    }
}

void loop_free(struct loop *lp)
{
    free(lp->list);
    lp->list = NULL;
    lp->n = lp->cap = 0;
}
