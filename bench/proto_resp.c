/*
 * proto_resp.c - the Redis Pub/Sub driver (RESP2), for redis-server, Kraken's Redis port and
 * the RESP null responder.  A subscriber sends one `SUBSCRIBE t1 ... tn` (n confirmations
 * `*3 $9 subscribe $<ch> :<count>`), then receives `*3 $7 message $<channel> $<payload>`
 * pushed by the server.  A publish batch is w->batch entries x w->tpm channels `PUBLISH`
 * commands, pipelined, each answered `:<receivers>`; the batch is acknowledged by its last
 * reply.  Redis delivers an entry published to k channels k times (one `message` per channel),
 * so this driver counts deliveries per (entry, channel) (per_channel).  Goodbye is QUIT
 * (allowed in subscribed mode).
 */
#include "kb.h"

#define RESP_BAD ((const char *)1)

/* "$<len>\r\n<s>\r\n" at out; returns its length */
static size_t put_bulk(char *out, const char *s, size_t n)
{
    size_t l = 0;
    out[l++] = '$';
    l += fmt_u(out + l, n);
    out[l++] = '\r';
    out[l++] = '\n';
    memcpy(out + l, s, n);
    l += n;
    out[l++] = '\r';
    out[l++] = '\n';
    return l;
}

static void resp_topics(conn_t *c, int kind, const int *topics, int n)
{
    char *blk = scratch((size_t)n * 48 + 64);
    size_t bl = 0;
    blk[bl++] = '*';
    bl += fmt_u(blk + bl, (uint64_t)n + 1);
    blk[bl++] = '\r';
    blk[bl++] = '\n';
    if (kind == K_UNSUB) bl += put_bulk(blk + bl, "UNSUBSCRIBE", 11);
    else bl += put_bulk(blk + bl, "SUBSCRIBE", 9);
    for (int i = 0; i < n; i++) {
        char t[40];
        bl += put_bulk(blk + bl, t, fmt_topic(t, topics[i]));
    }
    buf_append(&c->wb, blk, bl);
    push_kind(c, kind);
}

static void resp_publish(conn_t *c)
{
    wparams_t *w = G.w;
    size_t per = (size_t)w->tpm * (64 + (size_t)w->payload + 32);
    char *blk = scratch(per * (size_t)w->batch + (size_t)w->payload + 64);
    char *pl = blk; /* the payload is stamped once per entry, at the start of the scratch */
    size_t bl = (size_t)w->payload;
    uint64_t exp = 0;
    int64_t ts = now_ns();
    int tp[MAX_TPM];
    for (int m = 0; m < w->batch; m++) {
        uint32_t seq = next_entry(c, tp, &exp);
        stamp_payload(pl, ts, c->pub_id, seq);
        for (int i = 0; i < w->tpm; i++) {
            memcpy(blk + bl, "*3\r\n$7\r\nPUBLISH\r\n", 17);
            bl += 17;
            char t[40];
            bl += put_bulk(blk + bl, t, fmt_topic(t, tp[i]));
            bl += put_bulk(blk + bl, pl, (size_t)w->payload);
        }
    }
    buf_append(&c->wb, blk + w->payload, bl - (size_t)w->payload);
    push_kind(c, K_PUB);
    publish_sent(c, exp);
}

static void resp_poll(conn_t *c)
{
    (void)c;
    die("internal: RESP subscribers do not poll");
}

/* the replies a request of this kind gets */
static int replies_for(const conn_t *c, int kind)
{
    if (kind == K_PUB) return G.w->batch * G.w->tpm;
    if (kind == K_SUB || kind == K_UNSUB) return c->churn ? G.w->tps : c->ntopics;
    return 1;
}

/* one reply (of possibly several) to the oldest request */
static void resp_reply(conn_t *c, const char *what, size_t wl)
{
    if (!c->kn) {
        log_err("conn %d: unexpected reply \"%.*s\"", c->idx, (int)(wl < 64 ? wl : 64), what);
        G.proto_err++;
        conn_error(c, "unsolicited reply");
        return;
    }
    if (!c->need) c->need = replies_for(c, c->kq[c->kh]);
    if (--c->need == 0) req_done(c, pop_kind(c), 0);
}

/* "<digits>\r\n" (optionally negative) at p: the value in *v, the pointer past it; NULL if
   incomplete, RESP_BAD if malformed */
static const char *rnum(const char *p, const char *end, long long *v)
{
    int neg = 0;
    long long x = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    const char *s = p;
    while (p < end && *p >= '0' && *p <= '9') {
        x = x * 10 + (*p++ - '0');
        if (x > (1LL << 40)) return RESP_BAD;
    }
    if (p < end && *p != '\r') return RESP_BAD;
    if (end - p < 2) return NULL;
    if (p == s || p[1] != '\n') return RESP_BAD;
    *v = neg ? -x : x;
    return p + 2;
}

/* one bulk string or integer element at p */
static const char *relem(const char *p, const char *end, int *type, const char **s, long long *len)
{
    if (p >= end) return NULL;
    *type = *p;
    long long v;
    const char *q = rnum(p + 1, end, &v);
    if (!q || q == RESP_BAD) return q;
    *s = NULL;
    *len = v;
    if (*type == ':') return q;
    if (*type != '$' || v < -1) return RESP_BAD;
    if (v == -1) return q;
    if (end - q < v + 2) return NULL;
    if (q[v] != '\r' || q[v + 1] != '\n') return RESP_BAD;
    *s = q;
    return q + v + 2;
}

static int is_word(int type, const char *s, long long len, const char *w)
{
    size_t n = strlen(w);
    return type == '$' && s && (size_t)len == n && !memcmp(s, w, n);
}

static void resp_parse(conn_t *c)
{
    int64_t now = now_ns();
    while (c->state == CS_OPEN) {
        const char *p = c->rb.p + c->rb.off, *end = c->rb.p + c->rb.len, *q;
        if (p >= end) break;
        if (*p == ':' || *p == '+' || *p == '-') {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl) {
                if (end - p > 65536) goto bad;
                break;
            }
            q = nl + 1;
            if (*p == '-') {
                log_err("conn %d: server said \"%.*s\"", c->idx, (int)(nl - p > 200 ? 200 : nl - p - 1), p);
                G.proto_err++;
                conn_error(c, "error reply");
                return;
            }
            c->rb.off = (size_t)(q - c->rb.p);
            resp_reply(c, p, (size_t)(nl - p));
            continue;
        }
        if (*p != '*') goto bad;
        long long n;
        q = rnum(p + 1, end, &n);
        if (!q) break;
        if (q == RESP_BAD || n < 1 || n > 4) goto bad;
        int et[4];
        const char *es[4];
        long long el[4];
        for (int i = 0; i < n && q; i++) {
            q = relem(q, end, &et[i], &es[i], &el[i]);
            if (q == RESP_BAD) goto bad;
        }
        if (!q) break; /* incomplete */
        c->rb.off = (size_t)(q - c->rb.p);
        if (n == 3 && is_word(et[0], es[0], el[0], "message") && es[1] && es[2]) {
            int id = parse_topic(es[1], (size_t)el[1]);
            on_message(c, &id, 1, id < 0, es[2], (size_t)el[2], now);
        } else if (is_word(et[0], es[0], el[0], "subscribe") || is_word(et[0], es[0], el[0], "unsubscribe") ||
                   is_word(et[0], es[0], el[0], "pong")) {
            resp_reply(c, es[0], (size_t)el[0]);
        } else {
            goto bad;
        }
    }
    if (c->state == CS_OPEN && c->rb.off == c->rb.len) c->rb.off = c->rb.len = 0;
    return;
bad:
    log_err("conn %d: malformed RESP at \"%.*s\"", c->idx, (int)(c->rb.len - c->rb.off > 40 ? 40 : c->rb.len - c->rb.off),
            c->rb.p + c->rb.off);
    G.proto_err++;
    conn_error(c, "malformed RESP");
}

static void resp_open(conn_t *c)
{
    if (c->sub_id >= 0 && c->ntopics > 0) {
        resp_topics(c, K_SUB, c->topics, c->ntopics);
        conn_flush(c);
    } else {
        conn_ready(c);
    }
}

static int resp_quit(conn_t *c)
{
    buf_append(&c->wb, "*1\r\n$4\r\nQUIT\r\n", 14);
    return 1;
}

const proto_t proto_resp = {
    .name = "resp",
    .push = 1,
    .per_channel = 1,
    .open = resp_open,
    .topics = resp_topics,
    .publish = resp_publish,
    .poll = resp_poll,
    .parse = resp_parse,
    .quit = resp_quit,
};
