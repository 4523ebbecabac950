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
 * The list holds connections, each at most once (c->write_slot is its index
 * + 1); a connection freed while listed leaves a NULL hole.  Writing may
 * list connections again (a protocol that publishes while delivering, a
 * cluster link): those wait for the next turn. */
#include "loop.h"

#include <stdlib.h>

#include "clock.h"
#include "conn.h"
#include "server_internal.h"

static int grow(struct server *srv)
{
    uint32_t cap = srv->write_cap ? srv->write_cap * 2 : 64;
    struct conn **p = realloc(srv->write_list, cap * sizeof *p);
    if (!p)
        return -1;
    srv->write_list = p;
    srv->write_cap = cap;
    return 0;
}

bool loop_want_write(struct server *srv, struct conn *c)
{
    if (c->write_slot)
        return true;
    if (srv->write_n == srv->write_cap && grow(srv) < 0)
        return false;
    srv->write_list[srv->write_n++] = c;
    c->write_slot = srv->write_n;
    return true;
}

void loop_forget(struct server *srv, struct conn *c)
{
    if (c->write_slot) {
        srv->write_list[c->write_slot - 1] = NULL;
        c->write_slot = 0;
    }
}

/* Writes every listed connection; those listed meanwhile are kept. */
static void write_listed(struct server *srv)
{
    uint32_t n = srv->write_n;
    for (uint32_t i = 0; i < n; i++) {
        struct conn *c = srv->write_list[i];
        if (!c)
            continue;
        c->write_slot = 0;
        srv->write_list[i] = NULL;
        conn_io_write(c);
    }
    uint32_t k = 0;
    for (uint32_t i = n; i < srv->write_n; i++) {
        struct conn *c = srv->write_list[i];
        if (c) {
            srv->write_list[k++] = c;
            c->write_slot = k;
        }
    }
    srv->write_n = k;
}

static bool stopping(struct event_base *base, int r)
{
    return r < 0 || event_base_got_exit(base) || event_base_got_break(base);
}

void loop_run(struct server *srv, struct event_base *base)
{
    for (;;) {
        clock_turn_begin();
        int r = event_base_loop(base, srv->write_n ? EVLOOP_NONBLOCK : EVLOOP_ONCE);
        bool stop = stopping(base, r);
        /* One non-blocking turn more while output waits: its input joins the
         * same writes.  (event_base_loop() clears the exit flags when it
         * starts: check them after every call.) */
        if (!stop && srv->write_n) {
            clock_turn_begin();
            stop = stopping(base, event_base_loop(base, EVLOOP_NONBLOCK));
        }
        if (srv->write_n)
            write_listed(srv); /* also the last turn's, before server_stop() */
        if (stop || (r == 1 && !srv->write_n))
            break; /* r == 1: no event left to wait for, as event_base_dispatch would return */
    }
}

void loop_free(struct server *srv)
{
    free(srv->write_list);
    srv->write_list = NULL;
    srv->write_n = srv->write_cap = 0;
}
