/* server.c - the engine's sockets: listeners, accepting, connecting out,
 * the timers (idle sweep, memory budget, accept pause), the router's hooks
 * (queue overflow, push readiness), start, release and stop; see server.h.
 * What happens on one connection (reading, running its protocol, writing,
 * pausing, closing) is conn_io.c; the two share server_internal.h.
 *
 * Accepting: over max_tcp_clients a connection gets its protocol's refusal
 * line and is closed; at the descriptor limit (EMFILE) the listeners pause
 * for a moment (accept_timer).  A clustered node accepts nothing until its
 * first view (server_release).  Connections sit in the engine's list
 * ordered by last request; a timer closes the ones idle longer than
 * client_idle_timeout_secs, oldest first (connections in push mode are
 * exempt: they have nothing to ask). */
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
#include "server_internal.h"



/* Accepting again (after EMFILE), unless held for the first cluster view. */
static void enable_accepts(struct server *srv)
{
    if (srv->held)
        return;
    for (int k = 0; k < PROTO_KINDS; k++)
        if (srv->listeners[k].l)
            evconnlistener_enable(srv->listeners[k].l);
}

void server_accepts_resume(struct server *srv)
{
    if (srv->accept_timer && !evtimer_pending(srv->accept_timer, NULL))
        enable_accepts(srv);
}

static void reaper_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_io_reap(arg);
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
    struct conn *c = conn_io_new(srv, ls->ops, fd, peer);
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
        /* Out of descriptors: stop accepting for a while instead of spinning
         * (logged once per LOG_RECUR_MS while it lasts, with the count). */
        static struct log_recur recur;
        uint64_t quiet;
        if (log_recur_due(&recur, engine_now_ms(), &quiet))
            klog(LOG_WARNING,
                 "accept: %s; pausing accepts (%u clients connected; paused %" PRIu64
                 " more times since the last such line)",
                 evutil_socket_error_to_string(err), srv->eng.nconns, quiet);
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
        conn_io_close(c);
    }
}


static int resolve(const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len);

/* Router hook: a subscriber's queue went over its bound, or could not grow. */
static void overflow_cb(struct subscriber *sub, void *arg)
{
    struct server *srv = arg;
    struct conn *c = conn_of(sub);
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


/* budget.c's choice: c holds the most while the engine is over max_memory_bytes. */
static void budget_disconnect(struct conn *c, size_t bytes, void *arg)
{
    struct server *srv = arg;
    klog(LOG_WARNING,
         "%s %" PRIu64 " (%s): holds %zu bytes (queue %zu, %u messages, %u subscriptions), "
         "the most while the engine is over max_memory_bytes (%zu); disconnecting it",
         c->ops->log_name, c->sub.id, c->peer, bytes, c->sub.queue.bytes, c->sub.queue.count,
         c->sub.subs.count, srv->eng.cfg.max_memory_bytes);
    srv->eng.stats.disconnects_memory++;
    server_doom(c, c->ops->err_nomem);
}

/* budget.c's report, before it disconnects anyone: retention was trimmed. */
static void budget_trimmed(size_t total, size_t bytes, void *arg)
{
    struct server *srv = arg;
    srv->eng.stats.retention_trimmed_bytes += bytes;
    klog(LOG_WARNING,
         "memory: %zu bytes counted, over max_memory_bytes (%zu): dropped the oldest %zu "
         "bytes of retention (retro_subscribe from before them answers NOT_FOUND)",
         total, srv->eng.cfg.max_memory_bytes, bytes);
}

void server_budget_check(struct server *srv)
{
    static const struct budget_actions act = {budget_trimmed, budget_disconnect};
    srv->budget_mark = srv->eng.router.stats.queued_bytes_total;
    (void)budget_enforce(&srv->eng, &act, srv);
}

static void budget_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    server_budget_check(arg);
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
    struct conn *c = conn_io_new(srv, ops, fd, peer);
    if (!c)
        snprintf(err, errlen, "out of memory");
    return c;
}

/* Router hook: a push subscriber has something to send. */
static void ready_cb(struct subscriber *sub, void *arg)
{
    struct conn *c = conn_of(sub);
    (void)arg;
    if (!c->wev || conn_is_closing(c))
        return;
    if (!loop_want_write(&server_of(c)->loop, c))
        event_active(c->wev, EV_WRITE, 1); /* out of memory: write in this turn */
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

int server_ready(struct server *srv, char *why, size_t len)
{
    if (!health_loop_turns(&srv->health, why, len))
        return 0;
    if (srv->held) {
        snprintf(why, len, "waiting for the first cluster view and its links (clients are held "
                           "until then)");
        return 0;
    }
    if (cluster_alone()) {
        snprintf(why, len, "no core of the cluster is live here (publishes are refused until "
                           "one is heard)");
        return 0;
    }
    if (cluster_unlinked()) {
        snprintf(why, len, "no link to a core of the cluster is up here (publishes are refused "
                           "until one is)");
        return 0;
    }
    if (server_accept_paused(srv)) {
        snprintf(why, len, "accepting paused: out of file descriptors (%u clients connected)",
                 srv->eng.nconns);
        return 0;
    }
    return health_canary(&srv->health, &srv->eng.router, why, len);
}

/* /readyz (http.c) */
static int ready_cb_http(void *arg, char *why, size_t len)
{
    return server_ready(arg, why, len);
}

int server_start(struct server *srv, struct event_base *base, const struct engine_config *cfg,
                 char *err, size_t errlen)
{
    memset(srv, 0, sizeof *srv);
    srv->base = base;
    srv->loop.write = conn_io_write;
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
    srv->eng.redis_port = server_port(srv, PROTO_KIND_REDIS); /* (redis_port 0: the one taken) */
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
    if (health_start(&srv->health, base) < 0) {
        snprintf(err, errlen, "out of memory creating the health timer");
        return -1;
    }
    return http_start(&srv->http, base, &srv->eng, ready_cb_http, srv, err, errlen);
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
    http_stop(&srv->http, &srv->eng);
    health_stop(&srv->health);
    if (srv->on_stop)
        srv->on_stop(srv);
    while (srv->eng.oldest)
        conn_io_close(srv->eng.oldest);
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
