/* proto_link.c - what an upstream link reads: the replies and pushed blocks
 * of a Kraken node, to which cluster.c writes `set push`, `version`,
 * `subscribe`, `unsubscribe`, `publish`, `link_psubscribe`,
 * `link_punsubscribe`, `link_ssubscribe`, `link_sunsubscribe` and
 * `link_spublish` requests (the unsubscribes with noreply; the link_
 * ones to members only), and, to a member of the cluster, `set peer`
 * (noreply) before anything else.
 *
 * What arrives:
 *   VERSION <v>                      the handshake's answer: the link is up;
 *                                    a ping's or a sync's (one per `version`
 *                                    sent: one nobody asked for closes the link)
 *   END                              a poll's empty answer (a polled upstream):
 *                                    the link is up (a push link sends no
 *                                    poll: there it is malformed)
 *   VALUE messages 0 <n> ... END     a pushed block: each entry is published
 *                                    into the local router with the link as
 *                                    publisher (cluster.c never forwards those);
 *                                    an `SMESSAGE' entry is of Redis shard
 *                                    channels (cluster_shard.c)
 *   STORED                           a `subscribe`, `publish`,
 *                                    `link_psubscribe`, `link_ssubscribe` or
 *                                    `link_spublish` batch or a `link_retro`
 *                                    request is acknowledged, in order
 *                                    (cluster.c releases its clients)
 *   VALUE retro <second> <n> ... END entries answering the next `link_retro`
 *                                    or `link_entered` request
 *                                    (cluster_retro.c): not published
 *                                    here, they go to the client that asked
 *   NOT_FOUND                        a `link_retro` (`link_entered`) request's
 *                                    horizon is too old at the owner
 *   SERVER_ERROR cluster core unavailable
 *                                    from a parent: it refused the publish
 *                                    batch this answers (a core above it is
 *                                    unavailable, or was lost before it
 *                                    confirmed the batch); its publishers
 *                                    get the error, the link stays
 *   VALUE lost <n> <topics> END      from a parent (this node is its child):
 *                                    those topics' owner was lost upstream;
 *                                    their holders here are disconnected
 *   VALUE slost <n> <names> END      the same for Redis shard channels
 *   VALUE plost <n> <patterns> END   from a parent: those Redis patterns may
 *                                    have missed entries upstream (a core
 *                                    was lost); their holders here are
 *                                    disconnected (cluster_pattern_lost.c)
 *   an error before the link is up, from a static upstream: it refused push
 *                                    mode; the link reopens in polling mode
 *                                    (so does a close before the link is up:
 *                                    the original Kraken knows no `noreply'
 *                                    and drops the connection on `set push')
 *   anything else (ERROR, CLIENT_ERROR, SERVER_ERROR ...)
 *                                    logged; the link closes (cluster.c then
 *                                    disconnects the clients that depended on it)
 *
 * No socket here either: server.c moves the bytes. */
#include "proto_link.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cluster.h"
#include "engine.h"
#include "kraken/protocol.h"
#include "log.h"

#define VALUE_PREFIX "VALUE messages 0 "
#define RETRO_PREFIX "VALUE retro "
#define LOST_PREFIX "VALUE lost "
#define SLOST_PREFIX "VALUE slost "
#define PLOST_PREFIX "VALUE plost "

static bool starts(const char *line, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    return len >= n && memcmp(line, lit, n) == 0;
}

/* Publishes the entries of a pushed block into the local router. */
static int publish_block(struct conn *c, const char *block, size_t len)
{
    struct engine *eng = c->eng;
    const char *cur = block, *end = block + len;
    struct proto_entry e;
    const char *error;
    bool shard;
    int rc;
    while ((rc = proto_next_link_entry(&cur, end, &e, &shard, &error)) == 1) {
        long nt = engine_split_topics(eng, e.topics.p, e.topics.len);
        struct router_publish_result res;
        if (nt > 0 && !shard) /* below parents: the ones that come through this one */
            nt = cluster_link_keeps(c, eng->slices, (uint32_t)nt);
        if (nt == 0) {
            link_state(c)->received++;
            continue;
        }
        if (nt < 0 || router_publish_ns(&eng->router, &c->sub,
                                        shard ? TOPIC_NS_SHARD : TOPIC_NS_CHANNEL, eng->slices,
                                        (uint32_t)nt, e.payload.p, e.payload.len,
                                        engine_unix_time(), &res) < 0)
            return -1;
        link_state(c)->received++;
    }
    return rc;
}

/* A block longer than max (its n) is not buffered: the link closes. */
static bool too_long(struct conn *c, const char *what, uint64_t n, size_t max)
{
    if (n <= max)
        return false;
    klog(LOG_WARNING, "upstream link %" PRIu64 " (%s): a %s block of %" PRIu64 " bytes, "
         "over the limit (%zu); closing the link", c->sub.id & ~CLUSTER_LINK_ID_BIT, c->peer,
         what, n, max);
    c->state = CONN_CLOSING;
    return true;
}

/* The body of a block announced by a header line of linelen bytes: n bytes,
 * its CR LF included, then END.  1: all of it arrived (*body, and *need the
 * bytes to drain); 0: wait for more; -1: not closed by CR LF END (a broken
 * link). */
static int block_body(struct evbuffer *in, size_t avail, size_t linelen, uint64_t n,
                      const char **body, size_t *need)
{
    *need = linelen + 2 + (size_t)n + 2 + 5;
    if (avail < *need)
        return 0;
    const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)*need);
    if (!buf || memcmp(buf + *need - 7, "\r\nEND\r\n", 7) != 0)
        return -1;
    *body = buf + linelen + 2;
    return 1;
}

static enum conn_status link_process(struct conn *c)
{
    const struct engine_config *cfg = &c->eng->cfg;
    struct evbuffer *in = c->in;
    if (c->state == CONN_EOF && !link_state(c)->up)
        link_state(c)->eof = true; /* (cluster_link_closed: maybe push refused) */
    while (!conn_is_closing(c)) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            return CONN_OK;
        size_t eol_len;
        struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF_STRICT);
        if (p.pos < 0) {
            if (avail > PROTO_MAX_LINE)
                break;
            return CONN_OK;
        }
        size_t linelen = (size_t)p.pos;
        const char *line = (const char *)evbuffer_pullup(in, (ev_ssize_t)(linelen + 2));
        if (!line)
            break;
        if (starts(line, linelen, VALUE_PREFIX)) {
            uint64_t n;
            size_t pl = strlen(VALUE_PREFIX);
            if (proto_parse_u64(line + pl, linelen - pl, (uint64_t)1 << 40, &n) < 0 ||
                too_long(c, "pushed", n, cfg->max_queue_bytes + cfg->max_request_bytes))
                break;
            const char *body;
            size_t need;
            int got = block_body(in, avail, linelen, n, &body, &need);
            if (got == 0)
                return CONN_OK;
            if (got < 0 || publish_block(c, body, (size_t)n + 2) < 0)
                break;
            evbuffer_drain(in, need);
            /* A poll's answer; a pushed block shows the core alive (a
             * `version` answer may wait behind a large backlog). */
            cluster_link_progress(c);
            if (!link_state(c)->up) {
                link_state(c)->up = true;
                cluster_link_up(c);
            }
            continue;
        }
        if (starts(line, linelen, RETRO_PREFIX)) {
            /* VALUE retro <second> <n> */
            size_t pl = strlen(RETRO_PREFIX);
            const char *sp = memchr(line + pl, ' ', linelen - pl);
            uint64_t t, n;
            if (!sp || proto_parse_u64(line + pl, (size_t)(sp - line) - pl, INT64_MAX, &t) < 0 ||
                proto_parse_u64(sp + 1, linelen - (size_t)(sp + 1 - line), (uint64_t)1 << 40,
                                &n) < 0 ||
                too_long(c, "retroactive", n, cfg->max_request_bytes))
                break;
            const char *body;
            size_t need;
            int got = block_body(in, avail, linelen, n, &body, &need);
            if (got == 0)
                return CONN_OK;
            if (got < 0 || cluster_link_retro_block(c, (int64_t)t, body, (size_t)n + 2) < 0)
                break;
            evbuffer_drain(in, need);
            cluster_link_progress(c); /* a long answer must not look like a dead peer */
            continue;
        }
        /* VALUE lost <n>: the parent lost these topics upstream; VALUE
         * slost <n>: these Redis shard channels; VALUE plost <n>: its
         * Redis patterns may have missed entries */
        static const struct {
            const char *prefix, *kind;
        } lost[] = {{LOST_PREFIX, "lost"}, {SLOST_PREFIX, "slost"}, {PLOST_PREFIX, "plost"}};
        size_t lk = 0;
        while (lk < 3 && !starts(line, linelen, lost[lk].prefix))
            lk++;
        if (lk < 3) {
            uint64_t n;
            size_t pl = strlen(lost[lk].prefix);
            if (proto_parse_u64(line + pl, linelen - pl, (uint64_t)1 << 40, &n) < 0 ||
                too_long(c, lost[lk].kind, n, cfg->max_queue_bytes + cfg->max_request_bytes))
                break;
            const char *body;
            size_t need;
            int got = block_body(in, avail, linelen, n, &body, &need);
            if (got == 0)
                return CONN_OK;
            if (got < 0)
                break; /* the names end with their CRLF, then END */
            if (lk == 2)
                cluster_link_plost(c, body, (size_t)n);
            else
                cluster_link_lost(c, lk ? TOPIC_NS_SHARD : TOPIC_NS_CHANNEL, body, (size_t)n);
            evbuffer_drain(in, need);
            continue;
        }
        bool end = linelen == 3 && starts(line, linelen, "END");
        if (starts(line, linelen, "VERSION ") || end) {
            /* VERSION: the handshake's, a ping's or a sync's answer; END: a poll's */
            if (!end && !cluster_link_version(c)) {
                klog(LOG_WARNING, "upstream link %" PRIu64 " (%s): a VERSION nobody asked for; "
                     "closing the link", c->sub.id & ~CLUSTER_LINK_ID_BIT, c->peer);
                return CONN_CLOSE;
            }
            if (end && !cluster_link_polls(c)) {
                /* (it would have marked a link up before its handshake's
                 * VERSION, or answered a ping) */
                klog(LOG_WARNING, "upstream link %" PRIu64 " (%s): an END no poll asked for; "
                     "closing the link", c->sub.id & ~CLUSTER_LINK_ID_BIT, c->peer);
                return CONN_CLOSE;
            }
            cluster_link_answered(c);
            if (!link_state(c)->up) {
                link_state(c)->up = true;
                cluster_link_up(c);
            }
        } else if (!link_state(c)->up && cluster_link_push_refused(c)) {
            return CONN_CLOSE; /* reopened in polling mode */
        } else if (linelen == sizeof CLUSTER_ERR_UNAVAILABLE - 3 &&
                   starts(line, linelen, "SERVER_ERROR cluster core unavailable")) {
            cluster_link_refused(c); /* a parent refused a publish batch: the link stays */
        } else if (linelen == 6 && starts(line, linelen, "STORED")) {
            cluster_link_acked(c, true);
        } else if (linelen == 9 && starts(line, linelen, "NOT_FOUND")) {
            cluster_link_acked(c, false);
        } else {
            klog(LOG_WARNING, "upstream link %" PRIu64 " (%s): the peer said: %.*s",
                 c->sub.id & ~CLUSTER_LINK_ID_BIT, c->peer, (int)(linelen < 200 ? linelen : 200), line);
            return CONN_CLOSE;
        }
        evbuffer_drain(in, linelen + 2);
    }
    if (!conn_is_closing(c))
        klog(LOG_WARNING, "upstream link %" PRIu64 " (%s): malformed data from the peer",
             c->sub.id & ~CLUSTER_LINK_ID_BIT, c->peer);
    return CONN_CLOSE;
}

static void link_release(struct conn *c)
{
    if (link_state(c)->core)
        cluster_link_closed(c);
}

_Static_assert(_Alignof(struct link_state) <= CONN_PSTATE_ALIGN, "conn.pstate is aligned for it");

const struct proto_ops proto_link = {
    .name = "link",
    .log_name = "upstream link",
    .kind = PROTO_KIND_LINK,
    .state_size = sizeof(struct link_state),
    .process = link_process,
    .release = link_release,
};
