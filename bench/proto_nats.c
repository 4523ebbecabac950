/*
 * proto_nats.c - a minimal NATS client (text protocol, core NATS, no JetStream), for
 * nats-server.  Every connection sends `CONNECT {"verbose":false,"pedantic":false}` first, so
 * the server acknowledges nothing; a request is therefore closed by a `PING`, whose `PONG`
 * (sent after the server processed everything before it on that connection, i.e. after it
 * handed every message published there to the subscribers' connections) completes it:
 *   subscribe:  `SUB <subject> <sid>` per topic + PING
 *   publish:    `PUB <subject> <len>\r\n<payload>` per (entry, topic) + PING
 * Deliveries are `MSG <subject> <sid> [reply-to] <len>\r\n<payload>\r\n`, one per (entry,
 * subject), so this driver counts per channel like Redis.  The server's own PINGs get a PONG;
 * INFO and +OK are ignored.  Goodbye is closing the socket.
 */
#include "kb.h"

static const char connect_line[] = "CONNECT {\"verbose\":false,\"pedantic\":false}\r\n";

static void nats_topics(conn_t *c, int kind, const int *topics, int n)
{
    char *blk = scratch((size_t)n * 64 + 64);
    size_t bl = 0;
    for (int i = 0; i < n; i++) {
        if (kind == K_UNSUB) { /* sid = topic id */
            memcpy(blk + bl, "UNSUB ", 6);
            bl += 6;
        } else {
            memcpy(blk + bl, "SUB ", 4);
            bl += 4;
            bl += fmt_topic(blk + bl, topics[i]);
            blk[bl++] = ' ';
        }
        bl += fmt_u(blk + bl, (uint64_t)topics[i] + 1);
        blk[bl++] = '\r';
        blk[bl++] = '\n';
    }
    memcpy(blk + bl, "PING\r\n", 6);
    bl += 6;
    buf_append(&c->wb, blk, bl);
    push_kind(c, kind);
}

static void nats_publish(conn_t *c)
{
    wparams_t *w = G.w;
    size_t per = (size_t)w->tpm * (64 + (size_t)w->payload);
    char *blk = scratch(per * (size_t)w->batch + (size_t)w->payload + 64);
    char *pl = blk;
    size_t bl = (size_t)w->payload;
    uint64_t exp = 0;
    int64_t ts = now_ns();
    int tp[MAX_TPM];
    for (int m = 0; m < w->batch; m++) {
        uint32_t seq = next_entry(c, tp, &exp);
        stamp_payload(pl, ts, c->pub_id, seq);
        for (int i = 0; i < w->tpm; i++) {
            memcpy(blk + bl, "PUB ", 4);
            bl += 4;
            bl += fmt_topic(blk + bl, tp[i]);
            blk[bl++] = ' ';
            bl += fmt_u(blk + bl, (uint64_t)w->payload);
            blk[bl++] = '\r';
            blk[bl++] = '\n';
            memcpy(blk + bl, pl, (size_t)w->payload);
            bl += (size_t)w->payload;
            blk[bl++] = '\r';
            blk[bl++] = '\n';
        }
    }
    memcpy(blk + bl, "PING\r\n", 6);
    bl += 6;
    buf_append(&c->wb, blk + w->payload, bl - (size_t)w->payload);
    push_kind(c, K_PUB);
    publish_sent(c, exp);
}

static void nats_poll(conn_t *c)
{
    (void)c;
    die("internal: NATS subscribers do not poll");
}

/* "MSG <subject> <sid> [reply-to] <len>" (tl bytes): subject and length; -1 if malformed */
static int parse_msg_line(const char *s, size_t tl, const char **subj, size_t *sl, size_t *len)
{
    const char *tok[5];
    size_t tn[5];
    int n = 0;
    const char *p = s + 4, *e = s + tl;
    while (p < e && n < 5) {
        while (p < e && *p == ' ') p++;
        if (p >= e) break;
        const char *b = p;
        while (p < e && *p != ' ') p++;
        tok[n] = b;
        tn[n++] = (size_t)(p - b);
    }
    if (n < 3 || n > 4) return -1;
    size_t v = 0;
    for (size_t i = 0; i < tn[n - 1]; i++) {
        char d = tok[n - 1][i];
        if (d < '0' || d > '9' || v > ((size_t)1 << 30)) return -1;
        v = v * 10 + (size_t)(d - '0');
    }
    *subj = tok[0];
    *sl = tn[0];
    *len = v;
    return 0;
}

static void nats_parse(conn_t *c)
{
    int64_t now = now_ns();
    char *s;
    size_t tl, ll;
    while (c->state == CS_OPEN && conn_next_line(c, &s, &tl, &ll)) {
        size_t n = c->rb.len - c->rb.off;
        if (tl > 4 && !memcmp(s, "MSG ", 4)) {
            const char *subj;
            size_t sl, len;
            if (parse_msg_line(s, tl, &subj, &sl, &len) < 0) {
                log_err("conn %d: bad MSG line \"%.*s\"", c->idx, (int)(tl < 128 ? tl : 128), s);
                G.proto_err++;
                conn_error(c, "bad MSG line");
                return;
            }
            if (n < ll + len + 2) {
                buf_reserve(&c->rb, ll + len + 2 - n);
                break;
            }
            const char *pl = s + ll;
            if (pl[len] != '\r' || pl[len + 1] != '\n') {
                G.proto_err++;
                conn_error(c, "MSG payload not followed by CRLF");
                return;
            }
            c->rb.off += ll + len + 2;
            int id = parse_topic(subj, sl);
            on_message(c, &id, 1, id < 0, pl, len, now);
        } else if (tl == 4 && !memcmp(s, "PONG", 4)) {
            c->rb.off += ll;
            int kind = pop_kind(c);
            if (kind == K_NONE) {
                G.proto_err++;
                conn_error(c, "unsolicited PONG");
                return;
            }
            req_done(c, kind, 0);
        } else if (tl == 4 && !memcmp(s, "PING", 4)) {
            c->rb.off += ll;
            buf_append(&c->wb, "PONG\r\n", 6);
        } else if ((tl >= 5 && !memcmp(s, "INFO ", 5)) || (tl == 3 && !memcmp(s, "+OK", 3))) {
            c->rb.off += ll;
        } else {
            log_err("conn %d: server said \"%.*s\"", c->idx, (int)(tl < 200 ? tl : 200), s);
            G.proto_err++;
            conn_error(c, tl >= 4 && !memcmp(s, "-ERR", 4) ? "error from server" : "unexpected line");
            return;
        }
    }
    if (c->state == CS_OPEN && c->rb.off == c->rb.len) c->rb.off = c->rb.len = 0;
}

static void nats_open(conn_t *c)
{
    buf_append(&c->wb, connect_line, sizeof connect_line - 1);
    if (c->sub_id >= 0 && c->ntopics > 0) nats_topics(c, K_SUB, c->topics, c->ntopics);
    else conn_ready(c);
    conn_flush(c);
}

static int nats_quit(conn_t *c)
{
    (void)c;
    return 0;
}

const proto_t proto_nats = {
    .name = "nats",
    .push = 1,
    .per_channel = 1,
    .open = nats_open,
    .topics = nats_topics,
    .publish = nats_publish,
    .poll = nats_poll,
    .parse = nats_parse,
    .quit = nats_quit,
};
