/*
 * proto_kraken_poll.c - the Kraken text protocol (SPEC.md section 1, memcached-shaped) and the
 * polling driver: `set subscribe|unsubscribe 0 0 <n>` + topic list, `set publish 0 0 <n>` + a
 * batch of `MESSAGE <topics> <len>\r\n<payload>\r\n` entries, `get messages` answered by `END`
 * or `VALUE messages 0 <n>` + entries + `END`, and `quit`.  The reply parser (kraken_parse) is
 * shared with the push driver (proto_kraken_push.c), for which a VALUE block is a delivery the
 * server wrote unprompted rather than the reply to a `get messages`.
 */
#include "kb.h"

enum { R_STORED, R_NOT_FOUND, R_END, R_VALUE, R_ERROR, R_OTHER };

/* "set <cmd> 0 0 <n>\r\n" into hdr (at least 64 bytes); returns its length */
size_t fmt_set(char *hdr, const char *cmd, size_t n)
{
    size_t l = strlen(cmd);
    memcpy(hdr, "set ", 4);
    memcpy(hdr + 4, cmd, l);
    memcpy(hdr + 4 + l, " 0 0 ", 5);
    l += 9;
    l += fmt_u(hdr + l, n);
    memcpy(hdr + l, "\r\n", 2);
    return l + 2;
}

void kraken_topics(conn_t *c, int kind, const int *topics, int n)
{
    char *blk = scratch((size_t)n * 32 + 64);
    size_t bl = 0;
    for (int i = 0; i < n; i++) {
        if (i) blk[bl++] = ' ';
        bl += fmt_topic(blk + bl, topics[i]);
    }
    char hdr[96];
    size_t hl = fmt_set(hdr, kind == K_UNSUB ? "unsubscribe" : "subscribe", bl);
    buf_append(&c->wb, hdr, hl);
    buf_append(&c->wb, blk, bl);
    buf_append(&c->wb, "\r\n", 2);
    push_kind(c, kind);
}

static void kraken_poll(conn_t *c)
{
    buf_append(&c->wb, "get messages\r\n", 14);
    push_kind(c, K_GET);
}

void kraken_publish(conn_t *c)
{
    wparams_t *w = G.w;
    size_t per = (size_t)w->tpm * 32 + 32 + (size_t)w->payload + 2;
    char *blk = scratch(per * (size_t)w->batch + 64);
    size_t bl = 0;
    uint64_t exp = 0;
    int64_t ts = now_ns();
    int tp[MAX_TPM];
    for (int m = 0; m < w->batch; m++) {
        uint32_t seq = next_entry(c, tp, &exp);
        memcpy(blk + bl, "MESSAGE", 7);
        bl += 7;
        for (int i = 0; i < w->tpm; i++) {
            blk[bl++] = ' ';
            bl += fmt_topic(blk + bl, tp[i]);
        }
        blk[bl++] = ' ';
        bl += fmt_u(blk + bl, (uint64_t)w->payload);
        blk[bl++] = '\r';
        blk[bl++] = '\n';
        stamp_payload(blk + bl, ts, c->pub_id, seq);
        bl += (size_t)w->payload;
        blk[bl++] = '\r';
        blk[bl++] = '\n';
    }
    char hdr[64];
    size_t hl = fmt_set(hdr, "publish", bl);
    buf_append(&c->wb, hdr, hl);
    buf_append(&c->wb, blk, bl);
    buf_append(&c->wb, "\r\n", 2);
    push_kind(c, K_PUB);
    publish_sent(c, exp);
}

/* parse a VALUE block (n bytes, ends with the last entry's CRLF); returns #messages or -1 */
static int parse_block(conn_t *c, const char *p, size_t n)
{
    const char *end = p + n;
    int count = 0;
    int64_t now = now_ns();
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl || nl - p < 10 || nl[-1] != '\r' || memcmp(p, "MESSAGE ", 8)) return -1;
        const char *q = p + 8, *le = nl - 1;
        /* last token is the length */
        const char *ls = le;
        while (ls > q && ls[-1] != ' ') ls--;
        if (ls == le) return -1;
        size_t plen = 0;
        for (const char *x = ls; x < le; x++) {
            if (*x < '0' || *x > '9') return -1;
            plen = plen * 10 + (size_t)(*x - '0');
            if (plen > (size_t)1 << 40) return -1;
        }
        int tids[MAX_TPM], nt = 0, tbad = 0;
        const char *te = ls > q ? ls - 1 : q;
        while (q < te) {
            const char *sp = memchr(q, ' ', (size_t)(te - q));
            if (!sp) sp = te;
            if (sp > q) {
                int id = parse_topic(q, (size_t)(sp - q));
                if (id < 0 || nt >= MAX_TPM) tbad = 1;
                else tids[nt++] = id;
            }
            q = sp + 1;
        }
        const char *pl = nl + 1;
        if ((size_t)(end - pl) < plen + 2 || pl[plen] != '\r' || pl[plen + 1] != '\n') return -1;
        on_message(c, tids, nt, tbad || nt == 0, pl, plen, now);
        count++;
        p = pl + plen + 2;
    }
    return count;
}

/* a reply line or block answered the oldest request in flight */
static void on_reply(conn_t *c, int code, int nmsgs, const char *line, size_t ll)
{
    int kind = pop_kind(c);
    if (kind == K_NONE) {
        if (code == R_ERROR) log_err("conn %d: server said \"%.*s\"", c->idx, (int)ll, line);
        else log_err("conn %d: unexpected reply \"%.*s\"", c->idx, (int)ll, line);
        G.proto_err++;
        conn_error(c, "unsolicited reply");
        return;
    }
    int ok;
    if (kind == K_GET) ok = (code == R_END || code == R_VALUE);
    else if (kind == K_SUB) ok = (code == R_STORED || code == R_NOT_FOUND);
    else ok = (code == R_STORED);
    if (!ok) {
        log_err("conn %d: reply \"%.*s\" to request kind %d", c->idx, (int)ll, line, kind);
        G.proto_err++;
        conn_error(c, "bad reply");
        return;
    }
    req_done(c, kind, nmsgs);
}

/* "VALUE messages <flags> <bytes>" (tl bytes, no CRLF); -1 if anything else */
static int parse_value_line(const char *s, size_t tl, unsigned long long *nb)
{
    static const char pre[] = "VALUE messages ";
    size_t i = sizeof pre - 1;
    unsigned long long v[2] = { 0, 0 };
    if (tl <= i || memcmp(s, pre, i)) return -1;
    for (int k = 0; k < 2; k++) {
        size_t start = i;
        while (i < tl && s[i] >= '0' && s[i] <= '9' && i - start < 16) v[k] = v[k] * 10 + (unsigned long long)(s[i++] - '0');
        if (i == start || (k == 0 ? (i >= tl || s[i++] != ' ') : i != tl)) return -1;
    }
    if (v[1] > (1ULL << 40)) return -1;
    *nb = v[1];
    return 0;
}

/* consume complete replies from c->rb; with push, VALUE blocks are deliveries, not replies */
void kraken_parse(conn_t *c, int push)
{
    char *s;
    size_t tl, ll;
    while (c->state == CS_OPEN && conn_next_line(c, &s, &tl, &ll)) {
        size_t n = c->rb.len - c->rb.off;
        if (tl >= 6 && !memcmp(s, "VALUE ", 6)) {
            unsigned long long nb;
            if (parse_value_line(s, tl, &nb) < 0) {
                log_err("bad VALUE line \"%.*s\"", (int)(tl < 128 ? tl : 128), s);
                G.proto_err++;
                conn_error(c, "bad VALUE line");
                return;
            }
            size_t need = ll + (size_t)nb + 2 + 5;
            if (n < need) {
                buf_reserve(&c->rb, need - n);
                break;
            }
            const char *blk = s + ll;
            if (blk[nb] != '\r' || blk[nb + 1] != '\n' || memcmp(blk + nb + 2, "END\r\n", 5)) {
                log_err("VALUE block of %llu bytes not followed by CRLF END CRLF", nb);
                G.proto_err++;
                conn_error(c, "bad VALUE block");
                return;
            }
            int m = parse_block(c, blk, (size_t)nb + 2);
            if (m < 0) {
                log_err("malformed MESSAGE entries in a VALUE block of %llu bytes", nb);
                G.proto_err++;
                conn_error(c, "bad MESSAGE entries");
                return;
            }
            c->rb.off += need;
            if (!push) on_reply(c, R_VALUE, m, s, tl);
        } else {
            int code;
            if (tl == 6 && !memcmp(s, "STORED", 6)) code = R_STORED;
            else if (tl == 3 && !memcmp(s, "END", 3)) code = R_END;
            else if (tl == 9 && !memcmp(s, "NOT_FOUND", 9)) code = R_NOT_FOUND;
            else if ((tl >= 5 && !memcmp(s, "ERROR", 5)) || (tl >= 12 && !memcmp(s, "CLIENT_ERROR", 12)) ||
                     (tl >= 12 && !memcmp(s, "SERVER_ERROR", 12)))
                code = R_ERROR;
            else code = R_OTHER;
            c->rb.off += ll;
            on_reply(c, code, 0, s, tl);
        }
    }
    if (c->rb.off == c->rb.len) c->rb.off = c->rb.len = 0;
}

static void poll_parse(conn_t *c)
{
    kraken_parse(c, 0);
}

static void kraken_open(conn_t *c)
{
    if (c->sub_id >= 0 && c->ntopics > 0) {
        kraken_topics(c, K_SUB, c->topics, c->ntopics);
        conn_flush(c);
    } else {
        conn_ready(c);
    }
}

int kraken_quit(conn_t *c)
{
    buf_append(&c->wb, "quit\r\n", 6);
    return 1;
}

const proto_t proto_kraken_poll = {
    .name = "kraken-poll",
    .push = 0,
    .per_channel = 0,
    .open = kraken_open,
    .topics = kraken_topics,
    .publish = kraken_publish,
    .poll = kraken_poll,
    .parse = poll_parse,
    .quit = kraken_quit,
};
