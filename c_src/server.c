/* server.c - libevent loop, listener and connections; see server.h.
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
 * Connection life cycle:
 *   accept -> (over max_tcp_clients? SERVER_ERROR and close) -> session
 *   read   -> session_process() -> replies written out
 *   paused -> output above SESSION_OUTPUT_HIGH: stop reading until it drains
 *   closing-> reply flushed, then freed (or freed at once on EOF / error)
 *   doomed -> freed from the reaper event (queue overflow, decided while
 *             another session was routing, when freeing at once is unsafe)
 * Sessions sit in a list ordered by last request; a timer closes the ones idle
 * longer than client_idle_timeout_secs, oldest first. */
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
#include <time.h>
#include <unistd.h>

#include "session.h"

int64_t server_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the list of sessions ordered by last request ---- */

static void list_unlink(struct server *srv, struct session *s)
{
    if (s->older)
        s->older->newer = s->newer;
    else
        srv->oldest = s->newer;
    if (s->newer)
        s->newer->older = s->older;
    else
        srv->newest = s->older;
    s->older = s->newer = NULL;
}

static void list_append(struct server *srv, struct session *s)
{
    s->older = srv->newest;
    s->newer = NULL;
    if (srv->newest)
        srv->newest->newer = s;
    else
        srv->oldest = s;
    srv->newest = s;
}

struct session *server_find_session(struct server *srv, uint64_t id)
{
    for (struct session *s = srv->oldest; s; s = s->newer)
        if (s->sub.id == id)
            return s;
    return NULL;
}

/* ---- connections ---- */

/* Bytes read from a socket per read(2); a read callback reads at most
 * READ_BURST before yielding to other connections. */
#define READ_CHUNK 16384
#define READ_BURST (256 * 1024)

static void session_free(struct session *s)
{
    struct server *srv = s->srv;
    if (s->doomed) {
        struct session **p = &srv->doomed;
        while (*p != s)
            p = &(*p)->next_doomed;
        *p = s->next_doomed;
    }
    list_unlink(srv, s);
    if (s->rev)
        event_free(s->rev);
    if (s->wev)
        event_free(s->wev);
    if (s->in)
        evbuffer_free(s->in);
    if (s->out)
        evbuffer_free(s->out);
    if (s->fd >= 0)
        evutil_closesocket(s->fd);
    session_release(s);
    srv->nclients--;
    free(s);
    if (srv->listener && srv->accept_timer && !evtimer_pending(srv->accept_timer, NULL))
        evconnlistener_enable(srv->listener);
}

/* Writes what it can now; arms the write event for the rest.  Returns -1 if
 * the connection is dead. */
static int flush(struct session *s)
{
    while (evbuffer_get_length(s->out) > 0) {
        int n = evbuffer_write(s->out, s->fd);
        if (n < 0) {
            int err = EVUTIL_SOCKET_ERROR();
            if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)
                break;
            klog(LOG_DEBUG, "client %" PRIu64 " (%s): write: %s", s->sub.id, s->peer,
                 strerror(err));
            return -1;
        }
        if (n == 0)
            break;
    }
    if (evbuffer_get_length(s->out) > 0)
        event_add(s->wev, NULL);
    else
        event_del(s->wev);
    return 0;
}

/* Runs the session on what has arrived, sends the replies, and decides
 * whether to keep reading.  May free s.
 *
 * A session pauses when its pending output passes SESSION_OUTPUT_HIGH; the
 * write event resumes it once the client has read.  If the socket took all
 * of it at once there will be no write event, so the session goes on here,
 * yielding to other connections (through its write event) every few rounds. */
static bool run_session(struct session *s)
{
    for (int round = 0;; round++) {
        int64_t before = s->last_request_ms;
        size_t had = evbuffer_get_length(s->out);
        enum session_status st = session_process(s, s->in, s->out);
        if (evbuffer_get_length(s->out) != had)
            s->replied = true;
        if (s->last_request_ms != before && s != s->srv->newest) {
            list_unlink(s->srv, s);
            list_append(s->srv, s);
        }
        /* After EOF no request can complete any more: once everything that
         * arrived is answered, the connection closes. */
        if (st == SESSION_CLOSE || (st == SESSION_OK && s->eof))
            s->closing = true;
        if (flush(s) < 0 || (s->closing && evbuffer_get_length(s->out) == 0)) {
            session_free(s);
            return false;
        }
        if (st == SESSION_OK && !s->closing) {
            if (s->unread) {
                /* Edge-triggered: no new edge will come for what is already
                 * in the socket.  Re-arming through epoll (the changelist
                 * makes this one EPOLL_CTL_MOD, which re-checks readiness)
                 * brings it back on the next turn of the loop, after the
                 * other ready sockets; event_active() would run it again in
                 * this turn, before them. */
                s->unread = false;
                event_del(s->rev);
            }
            event_add(s->rev, NULL);
            return true;
        }
        event_del(s->rev); /* paused or closing: read nothing until the output drains */
        if (s->closing || evbuffer_get_length(s->out) > 0)
            return true; /* write_cb takes over */
        if (round == 8) {
            event_active(s->wev, EV_WRITE, 1);
            return true;
        }
    }
}

/* Reads what the socket holds into s->in: until a short read (the socket is
 * empty), EOF, or READ_BURST bytes.  *got is the number of bytes read and
 * *emptied whether it stopped on an empty socket.  Returns false if it freed s. */
static bool read_socket(struct session *s, size_t *got, bool *emptied)
{
    size_t total = 0;
    *emptied = false;
    while (total < READ_BURST) {
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(s->in, READ_CHUNK, &v, 1) < 1) {
            klog(LOG_ERROR, "client %" PRIu64 " (%s): out of memory reading", s->sub.id, s->peer);
            session_free(s);
            return false;
        }
        ssize_t n = recv(s->fd, v.iov_base, v.iov_len, 0);
        if (n == 0) {
            /* The client is done sending (closed, or half-closed): still
             * answer what it sent before, then close. */
            evbuffer_commit_space(s->in, &v, 0);
            klog(LOG_DEBUG, "client %" PRIu64 " (%s) disconnected", s->sub.id, s->peer);
            s->eof = true;
            event_del(s->rev);
            break;
        }
        if (n < 0) {
            evbuffer_commit_space(s->in, &v, 0);
            int err = EVUTIL_SOCKET_ERROR();
            if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
                *emptied = true;
                break;
            }
            klog(LOG_DEBUG, "client %" PRIu64 " (%s): read: %s", s->sub.id, s->peer,
                 strerror(err));
            session_free(s); /* reset: nobody to answer */
            return false;
        }
        v.iov_len = (size_t)n;
        evbuffer_commit_space(s->in, &v, 1);
        total += (size_t)n;
        if ((size_t)n < READ_CHUNK && !s->rdhup) {
            *emptied = true; /* a short read emptied the socket */
            break;
        }
    }
    s->unread = total >= READ_BURST;
    *got = total;
    return true;
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    (void)fd;
    if (what & EV_CLOSED)
        s->rdhup = true; /* its edge comes once: read on until recv() says EOF */
    for (int pass = 0;; pass++) {
        size_t got;
        bool emptied;
        if (!read_socket(s, &got, &emptied))
            return;
        s->replied = false;
        if (!run_session(s))
            return;
        /* A reset that arrived with these bytes raises no further edge, and
         * libevent reports it without EV_CLOSED.  When the bytes got a
         * reply, writing it fails and frees the session; when they got none
         * (noreply, or an incomplete request), read once more to see it. */
        if (pass == 1 || !emptied || got == 0 || s->replied || s->eof || s->closing ||
            !event_pending(s->rev, EV_READ, NULL))
            return;
    }
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    (void)fd;
    (void)what;
    if (flush(s) < 0) {
        session_free(s);
        return;
    }
    if (evbuffer_get_length(s->out) > 0)
        return;
    if (s->closing)
        session_free(s);
    else if (!event_pending(s->rev, EV_READ, NULL))
        (void)run_session(s); /* resume after a pause */
}

static void format_peer(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        snprintf(buf, len, "%s:%d", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        snprintf(buf, len, "[%s]:%d", host, port);
    } else {
        snprintf(buf, len, "unknown");
    }
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct server *srv = arg;
    (void)l;
    (void)salen;
    if (srv->nclients >= srv->cfg.max_clients) {
        /* Best effort: the socket is fresh, so this small write fits its buffer. */
        ssize_t w = send(fd, PROTO_TOO_MANY_CLIENTS, sizeof PROTO_TOO_MANY_CLIENTS - 1,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
        evutil_closesocket(fd);
        srv->stats.rejected_connections++;
        klog(LOG_WARNING, "connection refused: max_tcp_clients (%u) reached",
             srv->cfg.max_clients);
        return;
    }
    struct session *s = malloc(sizeof *s);
    if (!s) {
        evutil_closesocket(fd);
        klog(LOG_ERROR, "out of memory accepting a connection");
        return;
    }
    char peer[64];
    format_peer(sa, peer, sizeof peer);
    session_init(s, srv, ++srv->next_id, peer, server_now_ms());
    s->fd = fd;
    s->in = evbuffer_new();
    s->out = evbuffer_new();
    s->rev = event_new(srv->base, fd, EV_READ | EV_CLOSED | EV_PERSIST | EV_ET, read_cb, s);
    /* Both edge-triggered: epoll's EPOLLET is per descriptor, and a
     * level-triggered write event would turn the reads level-triggered too.
     * flush() writes until the socket is full, so a write edge is never missed. */
    s->wev = event_new(srv->base, fd, EV_WRITE | EV_PERSIST | EV_ET, write_cb, s);
    srv->nclients++;
    list_append(srv, s);
    if (!s->in || !s->out || !s->rev || !s->wev || event_add(s->rev, NULL) < 0) {
        klog(LOG_ERROR, "out of memory accepting a connection");
        session_free(s);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    srv->stats.total_connections++;
    klog(LOG_DEBUG, "client %" PRIu64 " connected from %s", s->sub.id, peer);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct server *srv = arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        /* Out of descriptors: stop accepting for a while instead of spinning. */
        klog(LOG_WARNING, "accept: %s; pausing accepts (%u clients connected)",
             evutil_socket_error_to_string(err), srv->nclients);
        evconnlistener_disable(l);
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
    evconnlistener_enable(srv->listener);
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;
    int64_t limit = server_now_ms() - (int64_t)srv->cfg.idle_timeout_secs * 1000;
    while (srv->oldest && srv->oldest->last_request_ms <= limit) {
        struct session *s = srv->oldest;
        klog(LOG_INFO, "client %" PRIu64 " (%s) idle for %u s, disconnecting", s->sub.id,
             s->peer, srv->cfg.idle_timeout_secs);
        srv->stats.disconnects_idle++;
        session_free(s);
    }
}

static void reaper_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;
    while (srv->doomed) {
        (void)flush(srv->doomed); /* best effort: the SERVER_ERROR line */
        session_free(srv->doomed);
    }
}

/* Router callback: a subscriber's queue went over its bound, or could not grow. */
static void overflow_cb(struct subscriber *sub, void *arg)
{
    struct server *srv = arg;
    struct session *s = session_of(sub);
    bool over = sub->queue.bytes > srv->cfg.max_queue_bytes;
    if (over)
        klog(LOG_WARNING,
             "client %" PRIu64 " (%s): undelivered queue over max_client_queue_bytes (%zu bytes, "
             "%u messages); disconnecting it",
             sub->id, s->peer, sub->queue.bytes, sub->queue.count);
    else
        klog(LOG_ERROR,
             "client %" PRIu64 " (%s): out of memory queuing a message for it; disconnecting it",
             sub->id, s->peer);
    srv->stats.disconnects_overflow++;
    if (s->out) {
        const char *msg = over ? "SERVER_ERROR queue limit exceeded\r\n"
                               : "SERVER_ERROR out of memory\r\n";
        evbuffer_add(s->out, msg, strlen(msg));
        event_del(s->rev);
    }
    s->closing = true;
    s->doomed = true;
    s->next_doomed = srv->doomed;
    srv->doomed = s;
    event_active(srv->reaper, EV_TIMEOUT, 0);
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

int server_start(struct server *srv, struct event_base *base, const struct engine_config *cfg,
                 char *err, size_t errlen)
{
    memset(srv, 0, sizeof *srv);
    srv->base = base;
    srv->cfg = *cfg;
    srv->started_ms = server_now_ms();
    struct router_config rc = {
        .num_shards = cfg->num_shards,
        .retain_per_shard = cfg->retain_per_shard,
        .retain_bytes_per_shard = cfg->retain_bytes_per_shard,
        .max_queue_bytes = cfg->max_queue_bytes,
        .overflow = overflow_cb,
        .overflow_arg = srv,
    };
    if (router_init(&srv->router, &rc, (int64_t)time(NULL)) < 0) {
        snprintf(err, errlen, "out of memory creating %u router shards", cfg->num_shards);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (resolve(cfg->listen_ip, cfg->port, &ss, &sslen) < 0) {
        snprintf(err, errlen, "bad listen_ip %s", cfg->listen_ip);
        return -1;
    }
    srv->listener = evconnlistener_new_bind(
        base, accept_cb, srv, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        1024, (struct sockaddr *)&ss, (int)sslen);
    if (!srv->listener) {
        snprintf(err, errlen, "listen %s port %d: %s", cfg->listen_ip, cfg->port,
                 strerror(errno));
        return -1;
    }
    evconnlistener_set_error_cb(srv->listener, accept_error_cb);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    getsockname(evconnlistener_get_fd(srv->listener), (struct sockaddr *)&bound, &blen);
    srv->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                  : ((struct sockaddr_in *)&bound)->sin_port);
    srv->accept_timer = evtimer_new(base, accept_timer_cb, srv);
    srv->reaper = event_new(base, -1, 0, reaper_cb, srv);
    srv->sweep_timer = event_new(base, -1, EV_PERSIST, sweep_cb, srv);
    struct timeval tv = {0, 200000};
    evtimer_add(srv->sweep_timer, &tv);
    return 0;
}

void server_stop(struct server *srv)
{
    while (srv->oldest)
        session_free(srv->oldest);
    if (srv->listener)
        evconnlistener_free(srv->listener);
    srv->listener = NULL;
    if (srv->sweep_timer)
        event_free(srv->sweep_timer);
    if (srv->accept_timer)
        event_free(srv->accept_timer);
    if (srv->reaper)
        event_free(srv->reaper);
    srv->sweep_timer = srv->accept_timer = srv->reaper = NULL;
    router_free(&srv->router);
    free(srv->slices);
    free(srv->entries);
}
