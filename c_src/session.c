/* session.c - request handling for one connection; see session.h.
 *
 * session_process() frames requests with the protocol parser, executes them
 * against the router and appends replies.  Every protocol error appends the
 * error line and returns SESSION_CLOSE: only this connection is affected. */
#include "session.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "entry.h"
#include "kraken/protocol.h"
#include "log.h"
#include "server.h"

static const char ERR_NOMEM[] = "SERVER_ERROR out of memory\r\n";

void session_init(struct session *s, struct server *srv, uint64_t id, const char *peer,
                  int64_t now_ms)
{
    memset(s, 0, sizeof *s);
    subscriber_init(&s->sub, id);
    s->srv = srv;
    s->fd = -1;
    snprintf(s->peer, sizeof s->peer, "%s", peer);
    s->connected_ms = now_ms;
    s->last_request_ms = now_ms;
    s->last_poll_ms = -1;
}

void session_release(struct session *s)
{
    router_remove_subscriber(&s->srv->router, &s->sub);
}

static void reply(struct evbuffer *out, const char *line)
{
    evbuffer_add(out, line, strlen(line));
}

/* Splits a topic list into srv->slices; returns the count or -1. */
static long split_topics(struct server *srv, const char *p, size_t len)
{
    const char *cur = p, *end = p + len;
    struct proto_slice t;
    size_t n = 0;
    while (proto_next_topic(&cur, end, &t)) {
        if (n == srv->slices_cap) {
            size_t cap = srv->slices_cap ? srv->slices_cap * 2 : 64;
            struct proto_slice *sl = realloc(srv->slices, cap * sizeof *sl);
            if (!sl)
                return -1;
            srv->slices = sl;
            srv->slices_cap = cap;
        }
        srv->slices[n++] = t;
    }
    return (long)n;
}

static const char *do_subscribe(struct session *s, const struct proto_request *req)
{
    struct server *srv = s->srv;
    long n = split_topics(srv, req->data, req->data_len);
    if (n < 0)
        return NULL;
    if (s->has_horizon) {
        s->has_horizon = false;
        int rc = router_retro_subscribe(&srv->router, &s->sub, srv->slices, (uint32_t)n,
                                        ROUTER_BY_SEQ, (int64_t)s->horizon_seq);
        return rc < 0 ? NULL : rc ? PROTO_STORED : PROTO_NOT_FOUND;
    }
    for (long i = 0; i < n; i++)
        if (router_subscribe(&srv->router, &s->sub, srv->slices[i].p, srv->slices[i].len) < 0)
            return NULL;
    return PROTO_STORED;
}

static const char *do_retro(struct session *s, const struct proto_request *req,
                            const char **error)
{
    int64_t horizon;
    struct proto_slice topics;
    if (proto_parse_retro(req->data, req->data_len, &horizon, &topics, error) < 0)
        return *error;
    long n = split_topics(s->srv, topics.p, topics.len);
    if (n < 0)
        return NULL;
    int rc = router_retro_subscribe(&s->srv->router, &s->sub, s->srv->slices, (uint32_t)n,
                                    ROUTER_BY_TIME, horizon);
    return rc < 0 ? NULL : rc ? PROTO_STORED : PROTO_NOT_FOUND;
}

static const char *do_unsubscribe(struct session *s, const struct proto_request *req)
{
    const char *cur = req->data, *end = req->data + req->data_len;
    struct proto_slice t;
    while (proto_next_topic(&cur, end, &t))
        router_unsubscribe(&s->srv->router, &s->sub, t.p, t.len);
    return PROTO_STORED;
}

/* Appends topic names to buf for a log line: at most `max` of them, each cut
 * at 64 bytes, bytes outside printable ASCII escaped as \xNN. */
static void format_topics(char *buf, size_t len, const struct proto_slice *topics, size_t n,
                          size_t max)
{
    size_t o = 0;
    for (size_t i = 0; i < n && i < max && o + 8 < len; i++) {
        if (i)
            buf[o++] = ' ';
        for (size_t j = 0; j < topics[i].len && j < 64 && o + 5 < len; j++) {
            unsigned char c = (unsigned char)topics[i].p[j];
            if (c >= 0x21 && c < 0x7f && c != '\\')
                buf[o++] = (char)c;
            else
                o += (size_t)snprintf(buf + o, len - o, "\\x%02x", c);
        }
    }
    if (n > max && o + 24 < len)
        o += (size_t)snprintf(buf + o, len - o, " ... %zu more", n - max);
    buf[o] = 0;
}

static void warn_publish(struct session *s, size_t ntopics, uint32_t fanout,
                         const struct proto_slice *topics)
{
    const struct engine_config *cfg = &s->srv->cfg;
    if (ntopics < cfg->topics_warn && fanout < cfg->fanout_warn)
        return;
    char names[640];
    format_topics(names, sizeof names, topics, ntopics, 8);
    klog(LOG_WARNING,
         "publisher %" PRIu64 " (%s) published one entry to %zu topics [%s] "
         "reaching %u subscribers",
         s->sub.id, s->peer, ntopics, names, fanout);
}

/* Parses the whole block first (into srv->entries), so a malformed publish
 * publishes nothing. */
static const char *do_publish(struct session *s, const struct proto_request *req,
                              int64_t now_s, const char **error)
{
    struct server *srv = s->srv;
    const char *cur = req->data, *end = req->data + req->data_len;
    size_t n = 0;
    int rc;
    for (;;) {
        if (n == srv->entries_cap) {
            size_t cap = srv->entries_cap ? srv->entries_cap * 2 : 16;
            struct proto_entry *e = realloc(srv->entries, cap * sizeof *e);
            if (!e)
                return NULL;
            srv->entries = e;
            srv->entries_cap = cap;
        }
        if ((rc = proto_next_entry(&cur, end, &srv->entries[n], error)) != 1)
            break;
        n++;
    }
    if (rc < 0)
        return *error;
    for (size_t i = 0; i < n; i++) {
        const struct proto_entry *e = &srv->entries[i];
        long nt = split_topics(srv, e->topics.p, e->topics.len);
        uint32_t fanout;
        if (nt < 0 || router_publish(&srv->router, &s->sub, srv->slices, (uint32_t)nt,
                                     e->payload.p, e->payload.len, now_s, &fanout) < 0)
            return NULL;
        warn_publish(s, (size_t)nt, fanout, srv->slices);
    }
    return PROTO_STORED;
}

void server_write_stats(struct server *srv, struct evbuffer *out)
{
    const struct router *r = &srv->router;
    uint64_t queued_bytes = 0, queued = 0, retained = 0;
    for (struct session *x = srv->oldest; x; x = x->newer) {
        queued_bytes += x->sub.queue.bytes;
        queued += x->sub.queue.count;
    }
    for (uint32_t i = 0; i < r->cfg.num_shards; i++)
        retained += r->shards[i].count;
    int64_t now = server_now_ms();
    evbuffer_add_printf(out,
                        "STAT pid %ld\r\nSTAT uptime %" PRId64 "\r\nSTAT time %ld\r\n"
                        "STAT version %s\r\nSTAT curr_connections %u\r\n"
                        "STAT total_connections %" PRIu64 "\r\n"
                        "STAT rejected_connections %" PRIu64 "\r\n"
                        "STAT topics %u\r\nSTAT subscriptions %" PRIu64 "\r\n"
                        "STAT messages_published %" PRIu64 "\r\n"
                        "STAT messages_queued %" PRIu64 "\r\n"
                        "STAT messages_delivered %" PRIu64 "\r\n"
                        "STAT queued_messages %" PRIu64 "\r\nSTAT queued_bytes %" PRIu64 "\r\n"
                        "STAT retained_messages %" PRIu64 "\r\n"
                        "STAT disconnects_queue_overflow %" PRIu64 "\r\n"
                        "STAT disconnects_idle %" PRIu64 "\r\n"
                        "STAT disconnects_error %" PRIu64 "\r\n"
                        "STAT log_events_dropped %" PRIu64 "\r\nEND\r\n",
                        (long)getpid(), (now - srv->started_ms) / 1000, (long)time(NULL),
                        KRAKEN_VERSION, srv->nclients, srv->stats.total_connections,
                        srv->stats.rejected_connections, r->topics.count,
                        r->stats.subscriptions, r->stats.published, r->stats.deliveries,
                        srv->stats.messages_delivered, queued, queued_bytes, retained,
                        srv->stats.disconnects_overflow, srv->stats.disconnects_idle,
                        srv->stats.disconnects_error, log_events_dropped);
}

/* Executes one request. Returns the reply line, NULL on allocation failure,
 * or "" when the reply was written already. Sets *close for errors and quit. */
static const char *execute(struct session *s, const struct proto_request *req,
                           struct evbuffer *out, int64_t now, bool *close)
{
    const char *error = NULL;
    const char *r;
    switch (req->cmd) {
    case PROTO_SET_REGISTER:
        s->has_horizon = true;
        s->horizon_seq = s->srv->router.seq;
        return PROTO_STORED;
    case PROTO_SET_SUBSCRIBE:
        return do_subscribe(s, req);
    case PROTO_SET_RETRO_SUBSCRIBE:
        r = do_retro(s, req, &error);
        break;
    case PROTO_SET_UNSUBSCRIBE:
        return do_unsubscribe(s, req);
    case PROTO_SET_PUBLISH:
        r = do_publish(s, req, (int64_t)time(NULL), &error);
        break;
    case PROTO_GET_MESSAGES: {
        s->last_poll_ms = now;
        long n = queue_write(&s->sub.queue, out, SESSION_COPY_LIMIT);
        if (n < 0)
            return NULL;
        s->srv->stats.messages_delivered += (uint64_t)n;
        return "";
    }
    case PROTO_QUIT:
        *close = true;
        return "";
    case PROTO_VERSION:
        return "VERSION " KRAKEN_VERSION "\r\n";
    case PROTO_STATS:
        server_write_stats(s->srv, out);
        return "";
    default:
        return "ERROR\r\n";
    }
    if (r && r == error)
        *close = true;
    return r;
}

/* Sends an error line; the connection closes once it is flushed. */
static void protocol_error(struct session *s, struct evbuffer *out, const char *line)
{
    reply(out, line);
    s->srv->stats.disconnects_error++;
    klog(LOG_INFO, "client %" PRIu64 " (%s): %.*s; closing the connection", s->sub.id, s->peer,
         (int)strcspn(line, "\r"), line);
    s->closing = true;
}

enum session_status session_process(struct session *s, struct evbuffer *in,
                                    struct evbuffer *out)
{
    while (!s->closing) {
        if (evbuffer_get_length(out) > SESSION_OUTPUT_HIGH)
            return SESSION_PAUSED;
        size_t avail = evbuffer_get_length(in);
        if (avail == 0 || s->need > avail)
            return SESSION_OK;
        size_t look = s->need ? s->need : (avail < PROTO_MAX_LINE + 1 ? avail : PROTO_MAX_LINE + 1);
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
        if (!buf) {
            reply(out, ERR_NOMEM);
            s->closing = true;
            break;
        }
        struct proto_request req;
        size_t used;
        const char *error;
        enum proto_status st =
            proto_parse_request(buf, look, s->srv->cfg.max_request_bytes, &req, &used, &error);
        if (st == PROTO_NEED_MORE) {
            if (used > look) { /* size now known: wait for all of it, then pull it up once */
                s->need = used;
                continue;
            }
            return SESSION_OK;
        }
        s->need = 0;
        if (st == PROTO_ERROR) {
            protocol_error(s, out, error);
            break;
        }
        bool close = false;
        int64_t now = server_now_ms();
        const char *r = execute(s, &req, out, now, &close);
        evbuffer_drain(in, used);
        s->srv->stats.requests++;
        s->last_request_ms = now;
        if (!r) {
            klog(LOG_ERROR, "client %" PRIu64 " (%s): out of memory, closing", s->sub.id,
                 s->peer);
            r = ERR_NOMEM;
            close = true;
        }
        if (close && *r) {
            protocol_error(s, out, r);
            break;
        }
        if (s->closing)
            break; /* failed while executing (e.g. its own queue overflowed): no reply */
        if (*r && !req.noreply)
            reply(out, r);
        if (close)
            s->closing = true;
    }
    return SESSION_CLOSE;
}
