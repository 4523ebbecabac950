/* server.c - libevent loop, listeners and sockets; see server.h.
 *
 * Each connection is a socket with two events (read, persistent; write, armed
 * only while replies wait) and two evbuffers.  Replies are written at once,
 * at the end of the read callback, so a request/reply exchange costs one
 * read and one write system call and no epoll_ctl; libevent's bufferevent
 * would defer every write to another turn of the loop.
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
 *   accept -> (over max_tcp_clients? the protocol's refusal, close) -> OPEN
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
 * Push: the router's `ready` hook activates the connection's write event;
 * its callback lets the protocol move queued entries into the output
 * (ops->deliver) and writes them, in the same loop turn as the publish.
 * Connections sit in the engine's list ordered by last request; a timer
 * closes the ones idle longer than client_idle_timeout_secs, oldest first
 * (connections in push mode are exempt: they have nothing to ask). */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "budget.h"
#include "cluster.h"
#include "http.h"
#include "log.h"
#include "proto_kraken.h"
#include "proto_redis.h"

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

static struct server *server_of(struct conn *c)
{
    return c->eng == NULL ? NULL : (struct server *)((char *)c->eng - offsetof(struct server, eng));
}

/* Accepting again (after EMFILE), unless held for the first cluster view. */
static void enable_accepts(struct server *srv)
{
    if (srv->held)
        return;
    for (int k = 0; k < PROTO_KINDS; k++)
        if (srv->listeners[k].l)
            evconnlistener_enable(srv->listeners[k].l);
}

static void close_conn(struct conn *c)
{
    struct server *srv = server_of(c);
    if (c->state == CONN_DOOMED) {
        struct conn **p = &srv->doomed;
        while (*p != c)
            p = &(*p)->next_doomed;
        *p = c->next_doomed;
    }
    engine_remove_conn(&srv->eng, c);
    if (c->acks.waits)
        ack_holder_forget(&c->acks);
    if (c->retro)
        cluster_retro_forget(c);
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
    conn_free(c);
    if (srv->accept_timer && !evtimer_pending(srv->accept_timer, NULL))
        enable_accepts(srv);
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
    /* Whatever armed the write event is served now (a flush may also cancel
     * that event before it runs); the next empty -> non-empty re-arms. */
    c->push_armed = false;
    if (c->ops->deliver && c->sub.push && c->sub.queue.count > 0 && !conn_is_closing(c))
        c->ops->deliver(c);
}

static void budget_check(struct server *srv);

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
            budget_check(server_of(c));
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
        if (flush(c) < 0 || (conn_is_closing(c) && evbuffer_get_length(c->out) == 0)) {
            close_conn(c);
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
            close_conn(c);
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
            close_conn(c); /* reset: nobody to answer */
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
    struct conn *c = arg;
    (void)fd;
    (void)what;
    c->push_armed = false;
    if (conn_held(c) && c->state != CONN_DOOMED)
        return; /* cluster.c kicks it again once released */
    deliver(c);
    for (int round = 0;; round++) {
        if (flush(c) < 0) {
            close_conn(c);
            return;
        }
        if (evbuffer_get_length(c->out) > 0)
            return;
        if (conn_is_closing(c)) {
            close_conn(c);
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

static void format_peer(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(buf, len, "%s:%d", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(buf, len, "[%s]:%d", host, ntohs(in6->sin6_port));
    } else {
        snprintf(buf, len, "unknown");
    }
}

/* Makes a connection of protocol ops on socket fd (accepted, or connecting
 * out); NULL, with fd closed, when out of memory. */
static struct conn *new_conn(struct server *srv, const struct proto_ops *ops, int fd,
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
        close_conn(c);
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* Push connections may stay silent for hours: let TCP find dead peers. */
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    return c;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct listener *ls = arg;
    struct server *srv = ls->srv;
    struct engine *eng = &srv->eng;
    (void)l;
    (void)salen;
    if (eng->nconns >= eng->cfg.max_clients) {
        /* Best effort: the socket is fresh, so this small write fits its buffer. */
        const char *msg = ls->ops->err_too_many_clients;
        if (msg) {
            ssize_t w = send(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)w;
        }
        evutil_closesocket(fd);
        eng->stats.rejected_connections++;
        klog(LOG_WARNING, "connection refused: max_tcp_clients (%u) reached%s",
             eng->cfg.max_clients, ls->ops->kind == PROTO_KIND_KRAKEN ? "" : " (redis port)");
        return;
    }
    char peer[64];
    format_peer(sa, peer, sizeof peer);
    struct conn *c = new_conn(srv, ls->ops, fd, peer);
    if (!c)
        return;
    eng->stats.total_connections++;
    klog(LOG_DEBUG, "%s %" PRIu64 " connected from %s", ls->ops->log_name, c->sub.id, peer);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct listener *ls = arg;
    struct server *srv = ls->srv;
    int err = EVUTIL_SOCKET_ERROR();
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        /* Out of descriptors: stop accepting for a while instead of spinning. */
        klog(LOG_WARNING, "accept: %s; pausing accepts (%u clients connected)",
             evutil_socket_error_to_string(err), srv->eng.nconns);
        (void)l;
        for (int k = 0; k < PROTO_KINDS; k++)
            if (srv->listeners[k].l)
                evconnlistener_disable(srv->listeners[k].l);
        struct timeval tv = {0, 200000};
        evtimer_add(srv->accept_timer, &tv);
    } else {
        klog(LOG_WARNING, "accept: %s", evutil_socket_error_to_string(err));
    }
}

static void accept_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;
    enable_accepts(srv);
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    struct engine *eng = &srv->eng;
    (void)fd;
    (void)what;
    int64_t now = engine_now_ms();
    int64_t limit = now - (int64_t)eng->cfg.idle_timeout_secs * 1000;
    uint32_t rotated = 0;
    while (eng->oldest && eng->oldest->last_request_ms <= limit) {
        struct conn *c = eng->oldest;
        if (c->sub.push && rotated++ < eng->nconns) {
            /* Push mode: silence is normal; start its clock again. */
            c->last_request_ms = now;
            engine_touch_conn(eng, c);
            continue;
        }
        klog(LOG_INFO, "%s %" PRIu64 " (%s) idle for %u s, disconnecting", c->ops->log_name,
             c->sub.id, c->peer, eng->cfg.idle_timeout_secs);
        eng->stats.disconnects_idle++;
        close_conn(c);
    }
}

static void reaper_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;
    while (srv->doomed) {
        (void)flush(srv->doomed); /* best effort: the error line */
        close_conn(srv->doomed);
    }
}

static int resolve(const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len);

/* Router hook: a subscriber's queue went over its bound, or could not grow. */
static void overflow_cb(struct subscriber *sub, void *arg)
{
    struct server *srv = arg;
    struct conn *c = sub->owner;
    if (!c)
        return; /* the readiness canary's subscriber (health.c): it reports by itself */
    bool over = sub->queue.bytes + sub->unsent > srv->eng.cfg.max_queue_bytes;
    if (over)
        klog(LOG_WARNING,
             "%s %" PRIu64 " (%s): undelivered queue over max_client_queue_bytes (%zu bytes, "
             "%u messages); disconnecting it",
             c->ops->log_name, sub->id, c->peer, sub->queue.bytes + sub->unsent,
             sub->queue.count);
    else
        klog(LOG_ERROR,
             "%s %" PRIu64 " (%s): out of memory queuing a message for it; disconnecting it",
             c->ops->log_name, sub->id, c->peer);
    srv->eng.stats.disconnects_overflow++;
    server_doom(c, over ? c->ops->err_queue_limit : c->ops->err_nomem);
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

/* budget.c's choice: c holds the most while the engine is over max_memory_bytes. */
static void budget_disconnect(struct conn *c, size_t bytes, void *arg)
{
    struct server *srv = arg;
    klog(LOG_WARNING,
         "%s %" PRIu64 " (%s): holds %zu bytes (queue %zu, %u messages), the most while the "
         "engine is over max_memory_bytes (%zu); disconnecting it",
         c->ops->log_name, c->sub.id, c->peer, bytes, c->sub.queue.bytes, c->sub.queue.count,
         srv->eng.cfg.max_memory_bytes);
    srv->eng.stats.disconnects_memory++;
    server_doom(c, c->ops->err_nomem);
}

static void budget_check(struct server *srv)
{
    srv->budget_mark = srv->eng.router.stats.queued_bytes_total;
    struct budget_result r = budget_enforce(&srv->eng, budget_disconnect, srv);
    if (r.trimmed) {
        srv->eng.stats.retention_trimmed_bytes += r.trimmed;
        klog(LOG_WARNING,
             "memory: %zu bytes counted, over max_memory_bytes (%zu): dropped the oldest %zu "
             "bytes of retention (retro_subscribe from before them answers NOT_FOUND)",
             r.total, srv->eng.cfg.max_memory_bytes, r.trimmed);
    }
}

static void budget_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    budget_check(arg);
}

void server_kick(struct conn *c)
{
    if (c->wev && c->state != CONN_DOOMED) /* closing: its last replies may have been held */
        event_active(c->wev, EV_WRITE, 1);
}

struct conn *server_connect(struct server *srv, const struct proto_ops *ops, const char *ip,
                            int port, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (resolve(ip, port, &ss, &sslen) < 0) {
        snprintf(err, errlen, "bad address %s", ip);
        return NULL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return NULL;
    }
    if (connect(fd, (struct sockaddr *)&ss, sslen) < 0 && errno != EINPROGRESS) {
        snprintf(err, errlen, "connect %s port %d: %s", ip, port, strerror(errno));
        evutil_closesocket(fd);
        return NULL;
    }
    char peer[64];
    format_peer((struct sockaddr *)&ss, peer, sizeof peer);
    struct conn *c = new_conn(srv, ops, fd, peer);
    if (!c)
        snprintf(err, errlen, "out of memory");
    return c;
}

/* Router hook: a push subscriber has something to send. */
static void ready_cb(struct subscriber *sub, void *arg)
{
    struct conn *c = sub->owner;
    (void)arg;
    if (c->push_armed || !c->wev || conn_is_closing(c))
        return;
    c->push_armed = true;
    event_active(c->wev, EV_WRITE, 1);
}

static int resolve(const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        *len = sizeof *in;
        return 0;
    }
    if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
        return 0;
    }
    return -1;
}

static int listen_on(struct server *srv, enum proto_kind kind, const struct proto_ops *ops,
                     int port, char *err, size_t errlen)
{
    const struct engine_config *cfg = &srv->eng.cfg;
    struct listener *ls = &srv->listeners[kind];
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (resolve(cfg->listen_ip, port, &ss, &sslen) < 0) {
        snprintf(err, errlen, "bad listen_ip %s", cfg->listen_ip);
        return -1;
    }
    ls->ops = ops;
    ls->srv = srv;
    ls->l = evconnlistener_new_bind(
        srv->base, accept_cb, ls,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC |
            (srv->held ? LEV_OPT_DISABLED : 0),
        1024, (struct sockaddr *)&ss, (int)sslen);
    if (!ls->l) {
        snprintf(err, errlen, "listen %s port %d (%s protocol): %s", cfg->listen_ip, port,
                 ops->name, strerror(errno));
        return -1;
    }
    evconnlistener_set_error_cb(ls->l, accept_error_cb);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    getsockname(evconnlistener_get_fd(ls->l), (struct sockaddr *)&bound, &blen);
    ls->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                 : ((struct sockaddr_in *)&bound)->sin_port);
    return 0;
}

int server_start(struct server *srv, struct event_base *base, const struct engine_config *cfg,
                 char *err, size_t errlen)
{
    memset(srv, 0, sizeof *srv);
    srv->base = base;
    if (engine_init(&srv->eng, cfg, overflow_cb, ready_cb, srv) < 0) {
        snprintf(err, errlen, "out of memory creating %u router shards", cfg->num_shards);
        return -1;
    }
    srv->started = true;
    srv->held = cfg->cluster_wait != 0;
    if (listen_on(srv, PROTO_KIND_KRAKEN, &proto_kraken, cfg->port, err, errlen) < 0)
        return -1;
    if (cfg->redis_port >= 0 &&
        listen_on(srv, PROTO_KIND_REDIS, &proto_redis, cfg->redis_port, err, errlen) < 0)
        return -1;
    srv->accept_timer = evtimer_new(base, accept_timer_cb, srv);
    srv->reaper = event_new(base, -1, 0, reaper_cb, srv);
    srv->sweep_timer = event_new(base, -1, EV_PERSIST, sweep_cb, srv);
    srv->budget_timer = event_new(base, -1, EV_PERSIST, budget_cb, srv);
    if (!srv->accept_timer || !srv->reaper || !srv->sweep_timer || !srv->budget_timer) {
        snprintf(err, errlen, "out of memory creating the server's timers");
        return -1;
    }
    struct timeval tv = {0, 200000};
    evtimer_add(srv->sweep_timer, &tv);
    if (cfg->max_memory_bytes) {
        struct timeval btv = {0, BUDGET_INTERVAL_MS * 1000};
        evtimer_add(srv->budget_timer, &btv);
    }
    if (health_start(&srv->health, srv) < 0) {
        snprintf(err, errlen, "out of memory creating the health timer");
        return -1;
    }
    return http_start(srv, err, errlen);
}

bool server_accept_paused(const struct server *srv)
{
    return srv->accept_timer && evtimer_pending(srv->accept_timer, NULL);
}

static void release_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;
    bool ready = !srv->release_ready || srv->release_ready();
    if (!ready && engine_now_ms() < srv->release_by_ms)
        return;
    if (srv->release_timer)
        event_del(srv->release_timer);
    srv->held = false;
    klog(ready ? LOG_INFO : LOG_WARNING, "first cluster view: accepting clients%s",
         ready ? "" : " (some links of it are still connecting)");
    if (!server_accept_paused(srv))
        enable_accepts(srv);
}

int server_release(struct server *srv, bool (*ready)(void), int max_ms)
{
    if (!srv->held || srv->release_timer)
        return 0;
    srv->release_ready = ready;
    srv->release_by_ms = engine_now_ms() + max_ms;
    srv->release_timer = event_new(srv->base, -1, EV_PERSIST, release_cb, srv);
    struct timeval tv = {0, 5000};
    if (!srv->release_timer || event_add(srv->release_timer, &tv) < 0) {
        srv->release_ready = NULL;
        release_cb(-1, 0, srv);
        return -1;
    }
    release_cb(-1, 0, srv);
    return 0;
}

int server_port(const struct server *srv, enum proto_kind kind)
{
    return srv->listeners[kind].l ? srv->listeners[kind].port : -1;
}

void server_stop(struct server *srv)
{
    if (!srv->started)
        return;
    http_stop(srv);
    health_stop(&srv->health);
    if (srv->on_stop)
        srv->on_stop(srv);
    while (srv->eng.oldest)
        close_conn(srv->eng.oldest);
    for (int k = 0; k < PROTO_KINDS; k++)
        if (srv->listeners[k].l) {
            evconnlistener_free(srv->listeners[k].l);
            srv->listeners[k].l = NULL;
        }
    if (srv->sweep_timer)
        event_free(srv->sweep_timer);
    if (srv->accept_timer)
        event_free(srv->accept_timer);
    if (srv->reaper)
        event_free(srv->reaper);
    if (srv->budget_timer)
        event_free(srv->budget_timer);
    if (srv->release_timer)
        event_free(srv->release_timer);
    srv->release_timer = NULL;
    srv->sweep_timer = srv->accept_timer = srv->reaper = srv->budget_timer = NULL;
    engine_free(&srv->eng);
    srv->started = false;
}
