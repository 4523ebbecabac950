/* conn_io.c - one connection's life on its socket: reading, running its
 * protocol, writing, pausing, closing (server.c accepts and owns the rest).
 *
 * Each connection is a socket with two events (read, persistent; write, armed
 * only while output waits for the socket) and two evbuffers.  An open
 * connection's replies are written after the turn that produced them,
 * together with any entries pushed to it meanwhile (loop.c): one write per
 * connection per turn, and no epoll_ctl while the socket takes it all.
 *
 * Reads are edge-triggered (EV_ET), which spares epoll re-polling every
 * readable socket on its next turn (a lower p99 on the latency benchmark).
 * The rules that keep it safe, since an edge comes only once: a read
 * callback reads until a short read (the socket is empty), or until
 * READ_BURST and then re-arms its event through epoll (`unread`); once
 * EV_CLOSED reports the peer's FIN it reads until recv() returns 0 (`rdhup`);
 * and when the bytes it read got no reply it reads once more, to see a reset
 * that came with them (libevent reports those without EV_CLOSED).  The write
 * event is edge-triggered too: EPOLLET is per descriptor.
 *
 * libevent's epoll backend has no changelist enabled here, so a re-arm
 * (event_del + event_add) is an EPOLL_CTL_DEL and an EPOLL_CTL_ADD; the ADD
 * re-checks readiness, which is what brings unread bytes back.
 *
 * Connection life cycle (conn.h's states):
 *   accept -> (server.c) -> OPEN
 *   read   -> ops->process() -> replies written out
 *   paused -> output above CONN_OUTPUT_HIGH: stop reading until it drains
 *   held   -> (a cluster) its subscribe or publish waits for upstream
 *             acknowledgements (conn_held()): read, deliver and write nothing
 *             until cluster.c releases it (server_kick); a doom meanwhile
 *             drops the held replies
 *   EOF    -> answer what arrived, then close
 *   CLOSING-> reply flushed, then freed (or freed at once on a reset)
 *   DOOMED -> freed from the reaper event (queue overflow, decided while
 *             another connection was routing, when freeing at once is unsafe)
 * Push: the router's `ready` hook lists the connection in loop.c, which
 * after the turn calls conn_io_write(): the protocol moves queued entries
 * into the output (ops->deliver) and they are written. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#include "cluster.h"
#include "log.h"
#include "loop.h"
#include "server.h"
#include "server_internal.h"

/* conn->rflags: the read loop's memory between callbacks. */
enum {
    READ_UNREAD = 1,   /* the read callback left bytes in the socket */
    READ_RDHUP = 2,    /* the peer's FIN is queued behind the unread bytes */
    READ_REPLIED = 4,  /* output was produced since the read callback began */
};

/* Bytes read from a socket per read(2); a read callback reads at most
 * READ_BURST before yielding to other connections. */
#define READ_CHUNK 16384
#define READ_BURST (256 * 1024)

void conn_io_close(struct conn *c)
{
    struct server *srv = server_of(c);
    if (c->state == CONN_DOOMED) {
        struct conn **p = &srv->doomed;
        while (*p != c)
            p = &(*p)->next_doomed;
        *p = c->next_doomed;
    }
    engine_remove_conn(&srv->eng, c);
    if (c->acks.waits || c->acks.notes)
        ack_holder_forget(&c->acks);
    if (c->retro || c->relay)
        cluster_retro_forget(c);
    loop_forget(&srv->loop, c);
    if (c->rev)
        event_free(c->rev);
    if (c->wev)
        event_free(c->wev);
    if (c->in)
        evbuffer_free(c->in);
    if (c->out)
        evbuffer_free(c->out);
    if (c->fd >= 0)
        evutil_closesocket(c->fd);
    conn_free(c, &srv->eng.router);
    server_accepts_resume(srv);
}

/* Writes what it can now; arms the write event for the rest.  Returns -1 if
 * the connection is dead. */
static int flush(struct conn *c)
{
    while (evbuffer_get_length(c->out) > 0) {
        int n = evbuffer_write(c->out, c->fd);
        if (n < 0) {
            int err = EVUTIL_SOCKET_ERROR();
            if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)
                break;
            klog(LOG_DEBUG, "%s %" PRIu64 " (%s): write: %s", c->ops->log_name, c->sub.id, c->peer,
                 strerror(err));
            return -1;
        }
        if (n == 0)
            break;
    }
    size_t left = evbuffer_get_length(c->out);
    if (c->sub.push)
        c->sub.unsent = left; /* counted against max_client_queue_bytes */
    if (left > 0)
        event_add(c->wev, NULL);
    else
        event_del(c->wev);
    return 0;
}

/* Lets a push protocol move what is queued into the output. */
static void deliver(struct conn *c)
{
    if (c->ops->deliver && c->sub.push && c->sub.queue.count > 0 && !conn_is_closing(c))
        c->ops->deliver(c);
}


/* Runs the protocol on what has arrived, sends the replies, and decides
 * whether to keep reading.  Returns false if it freed c.
 *
 * A connection pauses when its pending output passes CONN_OUTPUT_HIGH; the
 * write event resumes it once the client has read.  If the socket took all
 * of it at once there will be no write event, so the protocol goes on here,
 * yielding to other connections (through its write event) every few rounds. */
static bool run_conn(struct conn *c)
{
    struct engine *eng = c->eng;
    for (int round = 0;; round++) {
        uint64_t before = c->requests;
        size_t had = evbuffer_get_length(c->out);
        enum conn_status st = c->ops->process(c);
        /* A burst of publishes may outrun the budget timer: check as soon
         * as an eighth of the budget was queued since the last check. */
        if (eng->cfg.max_memory_bytes &&
            eng->router.stats.queued_bytes_total - server_of(c)->budget_mark >
                eng->cfg.max_memory_bytes / 8)
            server_budget_check(server_of(c));
        /* Held: also when it is closing after a quit or an error that came
         * behind a held publish (that reply must not be flushed before it
         * is confirmed); a doom drops it (server_doom). */
        bool held = conn_held(c) && c->state != CONN_DOOMED;
        if (!held)
            deliver(c);
        if (evbuffer_get_length(c->out) != had)
            c->rflags |= READ_REPLIED;
        if (c->requests != before)
            engine_touch_conn(eng, c);
        if (held) {
            /* Its subscribe or publish waits for the owners'
             * acknowledgements: nothing is written or read until cluster.c
             * releases it (server_kick).  (A held publish executed the
             * requests read so far: their replies wait behind its own.) */
            event_del(c->rev);
            return true;
        }
        /* After EOF no request can complete any more: once everything that
         * arrived is answered, the connection closes. */
        if (st == CONN_CLOSE || (st == CONN_OK && c->state == CONN_EOF)) {
            if (c->state != CONN_DOOMED)
                c->state = CONN_CLOSING;
        }
        /* When the turn has pushed output waiting (loop.c), an open
         * connection's small output waits with it: one write for every reply
         * and entry the turn gives it, and a publisher's reply after its
         * push subscribers' entries.  Otherwise, or when the output is large
         * (a poll reply with many entries is a batch already), it is written
         * now, while its bytes are in the cache: holding every poller's
         * reply to the end of the turn cost fanout polling 2.5x the CPU per
         * delivery (page faults, cold copies) and idle connections 12% more
         * memory (buffers freed a turn later). */
        size_t out = evbuffer_get_length(c->out);
        bool later = st == CONN_OK && !conn_is_closing(c) && out > 0 && out <= LOOP_DEFER_MAX &&
                     loop_writes_waiting(&server_of(c)->loop) &&
                     loop_want_write(&server_of(c)->loop, c);
        if ((!later && flush(c) < 0) ||
            (conn_is_closing(c) && evbuffer_get_length(c->out) == 0)) {
            conn_io_close(c);
            return false;
        }
        if (st == CONN_OK && !conn_is_closing(c)) {
            if (c->rflags & READ_UNREAD) {
                /* Edge-triggered: no new edge will come for what is already
                 * in the socket.  Re-arming through epoll (DEL then ADD: no
                 * changelist here; the ADD re-checks readiness) brings it
                 * back on a later turn of the loop, after the other ready
                 * sockets; event_active() would run it again in this turn,
                 * before them. */
                c->rflags &= (uint8_t)~READ_UNREAD;
                event_del(c->rev);
            }
            event_add(c->rev, NULL);
            return true;
        }
        event_del(c->rev); /* paused or closing: read nothing until the output drains */
        if (conn_is_closing(c) || evbuffer_get_length(c->out) > 0)
            return true; /* write_cb takes over */
        if (round == 8) {
            event_active(c->wev, EV_WRITE, 1);
            return true;
        }
    }
}

/* Reads what the socket holds into c->in: until a short read (the socket is
 * empty), EOF, or READ_BURST bytes.  *got is the number of bytes read and
 * *emptied whether it stopped on an empty socket.  Returns false if it freed c. */
static bool read_socket(struct conn *c, size_t *got, bool *emptied)
{
    size_t total = 0;
    *emptied = false;
    while (total < READ_BURST) {
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(c->in, READ_CHUNK, &v, 1) < 1) {
            klog(LOG_ERROR, "%s %" PRIu64 " (%s): out of memory reading", c->ops->log_name, c->sub.id,
                 c->peer);
            conn_io_close(c);
            return false;
        }
        ssize_t n = recv(c->fd, v.iov_base, v.iov_len, 0);
        if (n == 0) {
            /* The client is done sending (closed, or half-closed): still
             * answer what it sent before, then close. */
            evbuffer_commit_space(c->in, &v, 0);
            klog(LOG_DEBUG, "%s %" PRIu64 " (%s) disconnected", c->ops->log_name, c->sub.id, c->peer);
            if (c->state == CONN_OPEN)
                c->state = CONN_EOF;
            event_del(c->rev);
            break;
        }
        if (n < 0) {
            evbuffer_commit_space(c->in, &v, 0);
            int err = EVUTIL_SOCKET_ERROR();
            if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
                *emptied = true;
                break;
            }
            klog(LOG_DEBUG, "%s %" PRIu64 " (%s): read: %s", c->ops->log_name, c->sub.id, c->peer,
                 strerror(err));
            conn_io_close(c); /* reset: nobody to answer */
            return false;
        }
        v.iov_len = (size_t)n;
        evbuffer_commit_space(c->in, &v, 1);
        total += (size_t)n;
        if ((size_t)n < READ_CHUNK && !(c->rflags & READ_RDHUP)) {
            *emptied = true; /* a short read emptied the socket */
            break;
        }
    }
    if (total >= READ_BURST)
        c->rflags |= READ_UNREAD;
    else
        c->rflags &= (uint8_t)~READ_UNREAD;
    *got = total;
    return true;
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    if (what & EV_CLOSED)
        c->rflags |= READ_RDHUP; /* its edge comes once: read on until recv() says EOF */
    for (int pass = 0;; pass++) {
        size_t got;
        bool emptied;
        if (!read_socket(c, &got, &emptied))
            return;
        c->rflags &= (uint8_t)~READ_REPLIED;
        if (!run_conn(c))
            return;
        /* A reset that arrived with these bytes raises no further edge, and
         * libevent reports it without EV_CLOSED.  When the bytes got a
         * reply, writing it fails and frees the connection; when they got
         * none (noreply, or an incomplete request), read once more to see it. */
        if (pass == 1 || !emptied || got == 0 || (c->rflags & READ_REPLIED) ||
            c->state != CONN_OPEN || !event_pending(c->rev, EV_READ, NULL))
            return;
    }
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_io_write(arg);
}

void conn_io_write(struct conn *c)
{
    loop_forget(&server_of(c)->loop, c); /* written now: not again after the turn */
    if (conn_held(c) && c->state != CONN_DOOMED)
        return; /* cluster.c kicks it again once released */
    deliver(c);
    for (int round = 0;; round++) {
        if (flush(c) < 0) {
            conn_io_close(c);
            return;
        }
        if (evbuffer_get_length(c->out) > 0)
            return;
        if (conn_is_closing(c)) {
            conn_io_close(c);
            return;
        }
        /* Drained: more may be queued behind the push high-water mark. */
        if (round < 8 && c->sub.push && c->sub.queue.count > 0) {
            deliver(c);
            continue;
        }
        break;
    }
    if ((c->state == CONN_OPEN || c->state == CONN_EOF) && !event_pending(c->rev, EV_READ, NULL))
        (void)run_conn(c); /* resume after a pause */
}

/* Makes a connection of protocol ops on socket fd (accepted, or connecting
 * out); NULL, with fd closed, when out of memory. */
struct conn *conn_io_new(struct server *srv, const struct proto_ops *ops, int fd,
                         const char *peer)
{
    struct engine *eng = &srv->eng;
    struct conn *c = conn_new(eng, ops, ++eng->next_id, peer, engine_now_ms());
    if (!c) {
        evutil_closesocket(fd);
        klog(LOG_ERROR, "out of memory accepting a connection");
        return NULL;
    }
    c->fd = fd;
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    c->rev = event_new(srv->base, fd, EV_READ | EV_CLOSED | EV_PERSIST | EV_ET, read_cb, c);
    /* Both edge-triggered: epoll's EPOLLET is per descriptor, and a
     * level-triggered write event would turn the reads level-triggered too.
     * flush() writes until the socket is full, so a write edge is never missed. */
    c->wev = event_new(srv->base, fd, EV_WRITE | EV_PERSIST | EV_ET, write_cb, c);
    engine_add_conn(eng, c);
    if (!c->in || !c->out || !c->rev || !c->wev || event_add(c->rev, NULL) < 0) {
        klog(LOG_ERROR, "out of memory accepting a connection");
        conn_io_close(c);
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* Push connections may stay silent for hours: let TCP find dead peers. */
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    return c;
}

void conn_io_reap(struct server *srv)
{
    while (srv->doomed) {
        (void)flush(srv->doomed); /* best effort: the error line */
        conn_io_close(srv->doomed);
    }
}

void server_doom(struct conn *c, const char *line)
{
    struct server *srv = server_of(c);
    if (c->state == CONN_DOOMED)
        return;
    if ((conn_held(c) || c->held_sub || c->held_pub) && c->out &&
        evbuffer_get_length(c->out) > c->held_from) {
        /* The held reply promised what the cluster could not confirm: the
         * line (or the close) replaces it.  (The flags: a failed wait was
         * removed before its holder is told, cluster_ack.h.) */
        struct evbuffer *kept = evbuffer_new();
        if (kept && evbuffer_remove_buffer(c->out, kept, c->held_from) >= 0) {
            evbuffer_free(c->out);
            c->out = kept;
        } else if (kept) {
            evbuffer_free(kept);
        }
    }
    if (c->out && line)
        evbuffer_add(c->out, line, strlen(line));
    if (c->rev)
        event_del(c->rev);
    c->state = CONN_DOOMED;
    c->next_doomed = srv->doomed;
    srv->doomed = c;
    event_active(srv->reaper, EV_TIMEOUT, 0);
}

void server_kick(struct conn *c)
{
    if (c->wev && c->state != CONN_DOOMED) /* closing: its last replies may have been held */
        event_active(c->wev, EV_WRITE, 1);
}
