/* proto_kraken.c - Kraken's text protocol over one connection.
 *
 * process() frames requests with the pure parser (include/kraken/protocol.h),
 * executes them against the engine and appends replies to the connection's
 * output.  Every protocol error appends the error line and closes: only this
 * connection is affected.
 *
 * The requests only cluster links send are proto_kraken_link.c's.
 *
 * Push mode (an extension old clients never send): after
 * `set push 0 0 2\r\non\r\n` the connection's subscriber is marked `push`,
 * the router's `ready` hook arms a write when its queue becomes non-empty,
 * and deliver() writes exactly the `get messages` reply, unprompted, between
 * two replies.  `off` goes back to polling. */
#include "proto_kraken.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "cluster.h"
#include "engine.h"
#include "entry.h"
#include "kraken/protocol.h"
#include "log.h"
#include "proto_kraken_internal.h"

static const char ERR_NOMEM[] = "SERVER_ERROR out of memory\r\n";

struct kraken_state {
    uint64_t horizon_seq;        /* from `register`, valid when has_horizon */
    int64_t horizon_time;        /* its Unix second (for topics fetched upstream) */
    size_t need;                 /* bytes needed before parsing again (0: unknown) */
    bool has_horizon;
};

static struct kraken_state *st(struct conn *c)
{
    return conn_pstate(c);
}

/* Appends a reply; a reply that cannot be queued would desynchronise a
 * pipelining client, so the connection closes instead. */
static void reply(struct conn *c, const char *line)
{
    if (evbuffer_add(c->out, line, strlen(line)) < 0) {
        klog(LOG_ERROR, "client %" PRIu64 " (%s): out of memory for a reply, closing",
             c->sub.id, c->peer);
        c->state = CONN_CLOSING;
    }
}

/* In a cluster, a client's subscription to a topic of a core the view names
 * but that is not live here is refused whole: entries may enter the cluster
 * there, which this node cannot hear (docs/cluster.md, "Partitions").  Not
 * a peer's: its node decided in its own view. */
static bool subscribable(struct conn *c, long n)
{
    return !cluster_active() || c->sub.peer ||
           cluster_subscribable(c->eng->slices, (uint32_t)n);
}

static const char *do_subscribe(struct conn *c, const struct proto_request *req,
                                const char **error)
{
    struct engine *eng = c->eng;
    long n = engine_split_topics(eng, req->data, req->data_len);
    if (n < 0)
        return NULL;
    if (!subscribable(c, n))
        /* A child's link stays: it disconnects the holders of the batch's
         * topics (cluster_subref.c), not every client it has through here. */
        return c->sub.child ? CLUSTER_ERR_UNAVAILABLE : (*error = CLUSTER_ERR_UNAVAILABLE);
    if (st(c)->has_horizon) {
        st(c)->has_horizon = false;
        int rc = router_retro_subscribe(&eng->router, &c->sub, eng->slices, (uint32_t)n,
                                        ROUTER_BY_SEQ, (int64_t)st(c)->horizon_seq,
                                        st(c)->horizon_time);
        return rc < 0 ? NULL : rc ? PROTO_STORED : PROTO_NOT_FOUND;
    }
    for (long i = 0; i < n; i++)
        if (router_subscribe(&eng->router, &c->sub, eng->slices[i].p, eng->slices[i].len) < 0)
            return NULL;
    return PROTO_STORED;
}

static const char *do_retro(struct conn *c, const struct proto_request *req,
                            const char **error)
{
    int64_t horizon;
    struct proto_slice topics;
    if (proto_parse_retro(req->data, req->data_len, &horizon, &topics, error) < 0)
        return *error;
    long n = engine_split_topics(c->eng, topics.p, topics.len);
    if (n < 0)
        return NULL;
    if (!subscribable(c, n))
        return *error = CLUSTER_ERR_UNAVAILABLE;
    int rc = router_retro_subscribe(&c->eng->router, &c->sub, c->eng->slices, (uint32_t)n,
                                    ROUTER_BY_TIME, horizon, horizon);
    return rc < 0 ? NULL : rc ? PROTO_STORED : PROTO_NOT_FOUND;
}

static const char *do_unsubscribe(struct conn *c, const struct proto_request *req)
{
    const char *cur = req->data, *end = req->data + req->data_len;
    struct proto_slice t;
    while (proto_next_topic(&cur, end, &t))
        router_unsubscribe(&c->eng->router, &c->sub, t.p, t.len);
    return PROTO_STORED;
}

static const char *do_push(struct conn *c, const struct proto_request *req)
{
    if (req->data_len == 2 && memcmp(req->data, "on", 2) == 0)
        c->sub.push = true;
    else if (req->data_len == 3 && memcmp(req->data, "off", 3) == 0)
        c->sub.push = false;
    else
        return NULL;
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
            unsigned char ch = (unsigned char)topics[i].p[j];
            if (ch >= 0x21 && ch < 0x7f && ch != '\\')
                buf[o++] = (char)ch;
            else
                o += (size_t)snprintf(buf + o, len - o, "\\x%02x", ch);
        }
    }
    if (n > max && o + 24 < len)
        o += (size_t)snprintf(buf + o, len - o, " ... %zu more", n - max);
    buf[o] = 0;
}

static void warn_publish(struct conn *c, size_t ntopics, uint32_t fanout,
                         const struct proto_slice *topics)
{
    const struct engine_config *cfg = &c->eng->cfg;
    if (ntopics < cfg->topics_warn && fanout < cfg->fanout_warn)
        return;
    char names[640];
    format_topics(names, sizeof names, topics, ntopics, 8);
    klog(LOG_WARNING,
         "publisher %" PRIu64 " (%s) published one entry to %zu topic%s [%s] "
         "reaching %u subscriber%s",
         c->sub.id, c->peer, ntopics, ntopics == 1 ? "" : "s", names, fanout,
         fanout == 1 ? "" : "s");
}

/* Parses the whole block first (into eng->entries), so a malformed publish
 * publishes nothing. */
const char *kraken_publish(struct conn *c, const struct proto_request *req, int64_t now_s,
                           enum topic_ns ns, const char **error)
{
    struct engine *eng = c->eng;
    const char *cur = req->data, *end = req->data + req->data_len;
    size_t n = 0;
    int rc;
    for (;;) {
        if (n == eng->entries_cap) {
            size_t cap = eng->entries_cap ? eng->entries_cap * 2 : 16;
            struct proto_entry *e = realloc(eng->entries, cap * sizeof *e);
            if (!e)
                return NULL;
            eng->entries = e;
            eng->entries_cap = cap;
        }
        if ((rc = proto_next_entry(&cur, end, &eng->entries[n], error)) != 1)
            break;
        n++;
    }
    if (rc < 0)
        return *error;
    /* In a cluster, a client's block with an entry for a core that cannot be
     * reached now is refused whole, so that the error means "nothing of it
     * was published": the client may retry it (docs/cluster.md).  Not a
     * peer's (another node's link): its node checked reachability in its own
     * view, ours may differ for a moment (a core joined, our link to it
     * still connecting), and a refusal would make it close the link and
     * disconnect every holder there.  Its entries are routed here and
     * forwarded where links are up; the rest is counted as dropped
     * (cluster.c on_published). */
    for (size_t i = 0; i < n && cluster_active() && !c->sub.peer; i++) {
        const struct proto_entry *e = &eng->entries[i];
        long nt = engine_split_topics(eng, e->topics.p, e->topics.len);
        if (nt < 0)
            return NULL;
        if (!(ns == TOPIC_NS_SHARD ? cluster_shard_reachable : cluster_reachable)(
                eng->slices, (uint32_t)nt))
            /* A child's link stays: it answers its publishers (cluster_link_refused). */
            return c->sub.child ? CLUSTER_ERR_UNAVAILABLE : (*error = CLUSTER_ERR_UNAVAILABLE);
    }
    for (size_t i = 0; i < n; i++) {
        const struct proto_entry *e = &eng->entries[i];
        long nt = engine_split_topics(eng, e->topics.p, e->topics.len);
        uint32_t fanout;
        struct router_publish_result res;
        if (nt < 0 || router_publish_ns(&eng->router, &c->sub, ns, eng->slices, (uint32_t)nt,
                                        e->payload.p, e->payload.len, now_s, &res) < 0)
            return NULL;
        fanout = res.fanout;
        warn_publish(c, (size_t)nt, fanout, eng->slices);
    }
    /* In a cluster, STORED waits for the remote owners (cluster_pub.c). */
    if (eng->router.cfg.published)
        cluster_publish_hold(c, req->noreply);
    return PROTO_STORED;
}

/* Writes the `get messages` reply for everything queued. */
bool kraken_write_messages(struct conn *c)
{
    long n = queue_write(&c->sub.queue, c->out, CONN_COPY_LIMIT);
    if (n < 0)
        return false;
    c->eng->stats.messages_delivered += (uint64_t)n;
    return true;
}

/* Executes one request. Returns the reply line, NULL on allocation failure,
 * or "" when the reply was written already. Sets *close for errors and quit. */
static const char *execute(struct conn *c, const struct proto_request *req, int64_t now,
                           bool *close)
{
    const char *error = NULL;
    const char *r;
    switch (req->cmd) {
    case PROTO_SET_REGISTER:
        st(c)->has_horizon = true;
        st(c)->horizon_seq = c->eng->router.seq;
        st(c)->horizon_time = engine_unix_time();
        return PROTO_STORED;
    case PROTO_SET_SUBSCRIBE:
        r = do_subscribe(c, req, &error);
        break;
    case PROTO_SET_RETRO_SUBSCRIBE:
        r = do_retro(c, req, &error);
        break;
    case PROTO_SET_LINK_RETRO:
        r = kraken_link_retro(c, req, &error);
        break;
    case PROTO_SET_LINK_ENTERED:
        r = kraken_link_entered(c, req);
        break;
    case PROTO_SET_UNSUBSCRIBE:
        return do_unsubscribe(c, req);
    case PROTO_SET_LINK_PSUBSCRIBE:
    case PROTO_SET_LINK_PUNSUBSCRIBE:
    case PROTO_SET_LINK_SSUBSCRIBE:
    case PROTO_SET_LINK_SUNSUBSCRIBE:
        r = kraken_link_names(c, req);
        break;
    case PROTO_SET_LINK_SPUBLISH:
        /* A peer's or a child's entries on Redis shard channels
         * (cluster_shard.c). */
        r = c->sub.peer || c->sub.child
                ? kraken_publish(c, req, clock_turn_unix(), TOPIC_NS_SHARD, &error)
                : "ERROR\r\n";
        break;
    case PROTO_SET_PUBLISH:
        r = kraken_publish(c, req, clock_turn_unix(), TOPIC_NS_CHANNEL, &error);
        break;
    case PROTO_SET_LINK_FORWARD:
    case PROTO_SET_LINK_SFORWARD:
        r = kraken_link_forward(c, req,
                            req->cmd == PROTO_SET_LINK_FORWARD ? TOPIC_NS_CHANNEL : TOPIC_NS_SHARD,
                            &error);
        break;
    case PROTO_SET_PUSH:
        if ((r = do_push(c, req)))
            return r;
        *close = true;
        return "CLIENT_ERROR push mode must be on or off\r\n";
    case PROTO_SET_PEER:
        r = kraken_peer(c, req);
        break;
    case PROTO_SET_CHILD:
        r = kraken_child(c, req);
        break;
    case PROTO_GET_MESSAGES:
        c->last_poll_ms = now;
        c->eng->stats.polls++;
        return kraken_write_messages(c) ? "" : NULL;
    case PROTO_QUIT:
        *close = true;
        return "";
    case PROTO_VERSION:
        /* A child (a proxy below) takes the answer as a barrier: every
         * entry routed to it before goes first, so that once it has the
         * answer nothing more comes of a topic it unsubscribed before
         * (docs/cluster.md, "Sticky parents"; cluster_pin.h). */
        if (c->sub.child && c->sub.push && c->sub.queue.count > 0 && !kraken_write_messages(c))
            return NULL;
        return "VERSION " KRAKEN_VERSION "\r\n";
    case PROTO_STATS: {
        struct stats_snapshot snap;
        engine_snapshot(c->eng, &snap);
        stats_write_text(&snap, c->out);
        return "";
    }
    default:
        return "ERROR\r\n";
    }
    /* Every error closes the connection (docs/protocol.md, "Errors"), and
     * noreply never hides one: also the ERROR of a cluster link's request
     * from a connection that is not that kind of link (as for an unknown
     * command), and `set peer` / `set child` refused.  A child's
     * SERVER_ERROR cluster core unavailable keeps its link (above). */
    if (r && (r == error || strncmp(r, "ERROR\r\n", 7) == 0 ||
              strncmp(r, "CLIENT_ERROR ", 13) == 0))
        *close = true;
    return r;
}

/* Sends an error line; the connection closes once it is flushed.  The log
 * line names the command that caused it: its first line, cut at 64 bytes,
 * bytes outside printable ASCII (and \\ and ") escaped as \\xNN. */
static void protocol_error(struct conn *c, const char *line, const char *req, size_t len)
{
    reply(c, line);
    c->eng->stats.disconnects_error++;
    char cmd[64 * 4 + 1];
    size_t o = 0;
    for (size_t i = 0; i < len && i < 64 && req[i] != '\r' && req[i] != '\n'; i++) {
        unsigned char ch = (unsigned char)req[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '"')
            cmd[o++] = (char)ch;
        else
            o += (size_t)snprintf(cmd + o, sizeof cmd - o, "\\x%02x", ch);
    }
    cmd[o] = 0;
    klog(LOG_INFO, "client %" PRIu64 " (%s): %.*s for \"%s\"; closing the connection",
         c->sub.id, c->peer, (int)strcspn(line, "\r"), line, cmd);
    c->state = CONN_CLOSING;
}

static enum conn_status kraken_process(struct conn *c)
{
    struct kraken_state *ks = st(c);
    struct evbuffer *in = c->in, *out = c->out;
    while (!conn_is_closing(c)) {
        if (evbuffer_get_length(out) > CONN_OUTPUT_HIGH || conn_blocked(c))
            return CONN_PAUSED;
        size_t avail = evbuffer_get_length(in);
        if (avail == 0 || ks->need > avail)
            return CONN_OK;
        size_t look = ks->need ? ks->need : (avail < PROTO_MAX_LINE + 1 ? avail : PROTO_MAX_LINE + 1);
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
        if (!buf) {
            reply(c, ERR_NOMEM);
            c->state = CONN_CLOSING;
            break;
        }
        struct proto_request req;
        size_t used;
        const char *error;
        enum proto_status ps =
            proto_parse_request(buf, look, c->eng->cfg.max_request_bytes, &req, &used, &error);
        if (ps == PROTO_NEED_MORE) {
            if (used > look) { /* size now known: wait for all of it, then pull it up once */
                ks->need = used;
                continue;
            }
            return CONN_OK;
        }
        ks->need = 0;
        if (ps == PROTO_ERROR) {
            protocol_error(c, error, buf, look);
            break;
        }
        if (conn_held(c) && req.cmd != PROTO_SET_PUBLISH) {
            /* Behind a held publish only publishes go on (pipelining); any
             * other request waits for the release (a retro_subscribe's
             * NOT_FOUND replaces its held reply, from held_from on). */
            ks->need = used;
            return CONN_PAUSED;
        }
        bool close = false;
        int64_t now = clock_turn_ms();
        const char *r = execute(c, &req, now, &close);
        c->eng->stats.requests++;
        c->requests++;
        c->last_request_ms = now;
        if (!r) {
            klog(LOG_ERROR, "client %" PRIu64 " (%s): out of memory, closing", c->sub.id,
                 c->peer);
            r = ERR_NOMEM;
            close = true;
        }
        if (close && *r) {
            protocol_error(c, r, buf, used); /* buf is valid until the drain */
            evbuffer_drain(in, used);
            break;
        }
        evbuffer_drain(in, used);
        if (conn_is_closing(c))
            break; /* failed while executing (e.g. its own queue overflowed): no reply */
        if (*r && !req.noreply)
            reply(c, r);
        if (close)
            c->state = CONN_CLOSING;
    }
    return CONN_CLOSE;
}

/* The held reply (STORED, from held_from on) becomes NOT_FOUND; nothing
 * when the request was noreply (no reply at all). */
static void kraken_retro_refused(struct conn *c)
{
    if (evbuffer_get_length(c->out) <= c->held_from)
        return;
    struct evbuffer *kept = evbuffer_new();
    if (!kept || evbuffer_remove_buffer(c->out, kept, c->held_from) < 0) {
        if (kept)
            evbuffer_free(kept);
        c->state = CONN_CLOSING; /* out of memory: a wrong reply is worse than none */
        return;
    }
    evbuffer_drain(c->out, evbuffer_get_length(c->out));
    evbuffer_add_buffer(c->out, kept);
    evbuffer_free(kept);
    reply(c, PROTO_NOT_FOUND);
}

static void kraken_release(struct conn *c)
{
    if (c->sub.peer)
        cluster_peer_gone(&c->sub);
}

static void kraken_deliver(struct conn *c)
{
    if (!c->sub.push || c->sub.queue.count == 0 || conn_is_closing(c) ||
        evbuffer_get_length(c->out) >= CONN_PUSH_HIGH)
        return;
    if (!kraken_write_messages(c)) {
        klog(LOG_ERROR, "client %" PRIu64 " (%s): out of memory pushing messages, closing",
             c->sub.id, c->peer);
        c->state = CONN_CLOSING;
    }
}

_Static_assert(_Alignof(struct kraken_state) <= CONN_PSTATE_ALIGN, "conn.pstate is aligned for it");

const struct proto_ops proto_kraken = {
    .name = "kraken",
    .log_name = "client",
    .kind = PROTO_KIND_KRAKEN,
    .state_size = sizeof(struct kraken_state),
    .release = kraken_release,
    .process = kraken_process,
    .deliver = kraken_deliver,
    .retro_refused = kraken_retro_refused,
    .retro_answer = kraken_retro_answer,
    .err_too_many_clients = PROTO_TOO_MANY_CLIENTS,
    .err_queue_limit = "SERVER_ERROR queue limit exceeded\r\n",
    .err_nomem = ERR_NOMEM,
};
