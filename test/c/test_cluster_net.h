/* test_cluster_net.h - an engine in a cluster without sockets, for the unit
 * test (test_proto_link.c) and the fuzzer (test/fuzz/fuzz_link.c) of what
 * an upstream link reads (c_src/proto_link.c).
 *
 * cluster_configure() takes its network side as callbacks (struct
 * cluster_net), so no seam is needed in the engine: here connect() makes
 * a link connection on two evbuffers, doom() and the close do what
 * server.c's server_doom() and conn_io_close() do, and kick() nothing:
 * tcn_turn() runs every client that is not held (what the write event of
 * a released connection would), after the loop's pending events (the
 * cluster's flush).  A test writes a link's input (tcn_feed: the bytes a
 * core or a static upstream sends) and reads its output (what this node
 * sent upstream).  Closing is at once: a connection's output counts as
 * written.
 *
 * Timers never fire by themselves, so that a run depends on its input
 * only: tcn_turn() removes the links' ping, poll and retry timers, and
 * tcn_fire() runs one on demand (a retry reopens a lost link).
 *
 * No cmocka here: failures are assert()s, so that the fuzzer uses it too.
 * One engine at a time (the cluster's state is global): tcn_start, then
 * tcn_stop. */
#ifndef KRAKEN_TEST_CLUSTER_NET_H
#define KRAKEN_TEST_CLUSTER_NET_H

#include <assert.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "cluster.h"
#include "cluster_internal.h"
#include "conn.h"
#include "engine.h"
#include "proto_link.h"

struct tcn {
    struct engine eng;
    struct event_base *base;
    struct conn *doomed; /* through next_doomed, as server.c's list */
    bool refuse_connect; /* connect() fails (a core that does not listen) */
    /* Called as a connection closes, before anything of it is freed (its
     * output is what was written last), when set. */
    void (*closing)(struct conn *c);
    /* Called once it is closed (a link: its core's holders were told). */
    void (*closed)(void);
};
static struct tcn tcn;

static inline struct conn *tcn_conn(const struct proto_ops *ops, const char *peer)
{
    struct conn *c = conn_new(&tcn.eng, ops, ++tcn.eng.next_id, peer, engine_now_ms());
    assert(c);
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    assert(c->in && c->out);
    engine_add_conn(&tcn.eng, c);
    return c;
}

static inline struct conn *tcn_connect(void *arg, const char *ip, int port, char *err,
                                       size_t errlen)
{
    (void)arg;
    if (tcn.refuse_connect) {
        snprintf(err, errlen, "connect %s port %d: refused (test)", ip, port);
        return NULL;
    }
    char peer[64];
    snprintf(peer, sizeof peer, "%s:%d", ip, port);
    return tcn_conn(&proto_link, peer);
}

/* server_doom(): the held reply the cluster could not confirm is dropped,
 * the line goes instead, and the connection is queued for the reaper. */
static inline void tcn_doom(struct conn *c, const char *line)
{
    if (c->state == CONN_DOOMED)
        return;
    if ((conn_held(c) || c->held_sub || c->held_pub) &&
        evbuffer_get_length(c->out) > c->held_from) {
        struct evbuffer *kept = evbuffer_new();
        assert(kept && evbuffer_remove_buffer(c->out, kept, c->held_from) >= 0);
        evbuffer_free(c->out);
        c->out = kept;
    }
    if (line)
        evbuffer_add(c->out, line, strlen(line));
    c->state = CONN_DOOMED;
    c->next_doomed = tcn.doomed;
    tcn.doomed = c;
}

static inline void tcn_kick(struct conn *c)
{
    (void)c; /* tcn_turn() runs every connection that is not held */
}

/* A client's queue overflowed (server.c's overflow_cb). */
static inline void tcn_overflow(struct subscriber *s, void *arg)
{
    (void)arg;
    struct conn *c = conn_of(s);
    bool over = s->queue.bytes + s->unsent > tcn.eng.cfg.max_queue_bytes;
    tcn_doom(c, over ? c->ops->err_queue_limit : c->ops->err_nomem);
}

/* conn_io_close(), without the socket. */
static inline void tcn_close(struct conn *c)
{
    if (tcn.closing)
        tcn.closing(c);
    if (c->state == CONN_DOOMED) {
        struct conn **p = &tcn.doomed;
        while (*p != c)
            p = &(*p)->next_doomed;
        *p = c->next_doomed;
    }
    engine_remove_conn(&tcn.eng, c);
    if (c->acks.waits || c->acks.notes)
        ack_holder_forget(&c->acks);
    if (c->retro || c->relay)
        cluster_retro_forget(c);
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    conn_free(c, &tcn.eng.router);
    if (tcn.closed)
        tcn.closed();
}

/* run_conn(): the protocol on what has arrived, then delivery (push). */
static inline void tcn_run(struct conn *c)
{
    if (conn_is_closing(c) || conn_held(c))
        return;
    enum conn_status st = c->ops->process(c);
    bool held = conn_held(c) && c->state != CONN_DOOMED;
    if (held)
        return;
    if (c->ops->deliver && c->sub.push && c->sub.queue.count > 0 && !conn_is_closing(c))
        c->ops->deliver(c);
    if ((st == CONN_CLOSE || (st == CONN_OK && c->state == CONN_EOF)) &&
        c->state != CONN_DOOMED)
        c->state = CONN_CLOSING;
}

/* Timers fire only through tcn_fire(). */
static inline void tcn_quiet_timers(void)
{
    for (size_t i = 0; i < cl.n; i++) {
        struct cluster_core *k = cl.cores[i];
        if (k->ping)
            event_del(k->ping);
        if (k->poll)
            event_del(k->poll);
        if (k->retry)
            event_del(k->retry);
    }
}

/* One turn of the loop, until nothing more moves: the cluster's flush,
 * the reaper, every client that is not held (released ones go on), the
 * closing connections closed. */
static inline void tcn_turn(void)
{
    for (int round = 0; round < 16; round++) {
        event_base_loop(tcn.base, EVLOOP_NONBLOCK);
        bool moved = false;
        while (tcn.doomed) {
            tcn_close(tcn.doomed);
            moved = true;
        }
        for (struct conn *c = engine_oldest_conn(&tcn.eng), *next; c; c = next) {
            next = engine_next_conn(c);
            if (!conn_is_uplink(c)) {
                size_t in = evbuffer_get_length(c->in), out = evbuffer_get_length(c->out);
                tcn_run(c);
                moved |= evbuffer_get_length(c->in) != in || evbuffer_get_length(c->out) != out;
            }
        }
        for (struct conn *c = engine_oldest_conn(&tcn.eng), *next; c; c = next) {
            next = engine_next_conn(c);
            if (c->state == CONN_CLOSING && !conn_held(c)) {
                tcn_close(c);
                moved = true;
            }
        }
        if (!moved && !tcn.doomed && !cl.flush_armed)
            break;
    }
    tcn_quiet_timers();
}

/* Starts an engine of configuration cfg whose cluster view is the n
 * members m, this node being `self' (0: configured, the links opened). */
static inline int tcn_start(const struct engine_config *cfg, const char *self,
                            const struct cluster_member *m, size_t n)
{
    memset(&tcn, 0, sizeof tcn);
    tcn.base = event_base_new();
    assert(tcn.base);
    if (engine_init(&tcn.eng, cfg, tcn_overflow, NULL, NULL) < 0)
        return -1;
    struct cluster_net net = {&tcn.eng, tcn.base, tcn_connect, NULL, tcn_doom, tcn_kick};
    char err[256];
    if (cluster_configure(&net, self, strlen(self), m, n, NULL, 0, NULL, 0, err,
                          sizeof err) < 0)
        return -1;
    tcn_turn();
    return 0;
}

/* What server_stop() does: the cluster first, then every connection. */
static inline void tcn_stop(void)
{
    cluster_stop();
    while (tcn.doomed)
        tcn_close(tcn.doomed);
    while (engine_oldest_conn(&tcn.eng))
        tcn_close(engine_oldest_conn(&tcn.eng));
    engine_free(&tcn.eng);
    event_base_free(tcn.base);
    tcn.base = NULL;
}

/* Core i's link (NULL while down). */
static inline struct conn *tcn_link(size_t i)
{
    return i < cl.n ? cl.cores[i]->link : NULL;
}

/* Bytes from core i's peer: what server.c's read callback does with them.
 * The link must be open (nothing is fed to a closing connection). */
static inline void tcn_feed(size_t i, const void *p, size_t len)
{
    struct conn *c = tcn_link(i);
    assert(c && !conn_is_closing(c));
    evbuffer_add(c->in, p, len);
    enum conn_status st = c->ops->process(c);
    if ((st == CONN_CLOSE || (st == CONN_OK && c->state == CONN_EOF)) &&
        c->state != CONN_DOOMED)
        c->state = CONN_CLOSING;
}

/* Core i's peer closed the connection (EOF). */
static inline void tcn_eof(size_t i)
{
    struct conn *c = tcn_link(i);
    assert(c && !conn_is_closing(c));
    c->state = CONN_EOF;
    tcn_feed(i, "", 0);
}

enum tcn_timer { TCN_PING, TCN_POLL, TCN_RETRY };

/* Runs core i's timer now (a retry only while its link is down). */
static inline void tcn_fire(size_t i, enum tcn_timer which)
{
    if (i >= cl.n || cl.cores[i]->self)
        return;
    struct cluster_core *k = cl.cores[i];
    struct event *ev = which == TCN_PING ? k->ping : which == TCN_POLL ? k->poll : k->retry;
    if (!ev || (which == TCN_RETRY && k->link) || (which == TCN_POLL && !k->polling))
        return; /* (armed only then) */
    event_del(ev);
    event_active(ev, EV_TIMEOUT, 1);
    tcn_turn();
}

/* A channel name that core i owns ("<prefix><number>"), into buf. */
static inline void tcn_topic_of(size_t i, const char *prefix, char *buf, size_t size)
{
    for (int j = 0; j < 100000; j++) {
        snprintf(buf, size, "%s%d", prefix, j);
        if (cluster_owner_in(&cl.cur, cluster_name_hash(buf, strlen(buf))) == (int)i)
            return;
    }
    assert(!"no topic for that core");
}

#endif
