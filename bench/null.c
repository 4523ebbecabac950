/*
 * null.c - the null responders: forked children listening on their own free port that frame
 * every request correctly and answer it at once without routing anything, so that a run against
 * them measures the generator (and the loopback), and %null compares a server with them.
 *   Kraken text: `set ... <n>` + data block -> STORED, `get messages` -> END, quit, version.
 *                (`set push 0 0 2` + `on` -> STORED too: push subscribers then simply get nothing)
 *   RESP:        the RESP2 multibulk commands framed whole; SUBSCRIBE / UNSUBSCRIBE -> one
 *                confirmation per channel, PUBLISH -> `:1`, PING -> +PONG, QUIT -> +OK and close,
 *                anything else -> -ERR.  It forwards nothing: like the Kraken one, it bounds what
 *                the generator can publish (framing requests and reading replies) with every
 *                subscriber connected and subscribed, and %null compares a server's rate with it.
 *   RESP, routing (`null-route'): the same, but a PUBLISH is delivered: a `message' frame to
 *                every connection subscribed to the channel (null_route.c), `:n' to the publisher,
 *                and every output written once after each epoll batch (as Redis writes before it
 *                sleeps).  The least a pub/sub server does for these workloads, so its rate is
 *                what the generator and the kernel allow with deliveries: the Redis port's
 *                deliveries/s target is checked against it (bench/README.md).
 */
#include "kb.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    buf_t rb, wb;
    int closing;
    int dirty;  /* routing: listed for the write after this epoll batch */
    int wants_out; /* registered for EPOLLOUT */
    int fd;
    long nsubs; /* RESP: the subscription count reported in confirmations */
} nconn_t;

/* the routing null's connections by fd, and those with output to write after the batch */
static int g_route;
static nconn_t **g_conns;
static int *g_dirty, g_ndirty;

static void mark_dirty(nconn_t *c)
{
    if (c->dirty) return;
    c->dirty = 1;
    g_dirty[g_ndirty++] = c->fd;
}

/* routing: a `message' frame for every subscriber of the channel; returns their count */
static long route_publish(const char *ch, size_t cl, const char *pl, size_t plen)
{
    int n;
    const int *fds = route_subscribers(ch, cl, &n);
    char h[64];
    size_t hl = 0;
    static const char head[] = "*3\r\n$7\r\nmessage\r\n$";
    memcpy(h, head, sizeof head - 1);
    hl = sizeof head - 1;
    hl += fmt_u(h + hl, cl);
    memcpy(h + hl, "\r\n", 2);
    hl += 2;
    char m[32];
    size_t ml = 3;
    memcpy(m, "\r\n$", 3);
    ml += fmt_u(m + 3, plen);
    memcpy(m + ml, "\r\n", 2);
    ml += 2;
    long sent = 0;
    for (int i = 0; i < n; i++) {
        nconn_t *s = g_conns[fds[i]];
        if (!s || s->closing) continue;
        sent++;
        buf_append(&s->wb, h, hl);
        buf_append(&s->wb, ch, cl);
        buf_append(&s->wb, m, ml);
        buf_append(&s->wb, pl, plen);
        buf_append(&s->wb, "\r\n", 2);
        mark_dirty(s);
    }
    return sent;
}

/* frame and answer the Kraken text requests in c->rb */
static void kraken_null_frame(nconn_t *c)
{
    while (!c->closing) {
        char *s = c->rb.p + c->rb.off;
        size_t avail = c->rb.len - c->rb.off;
        char *nl = avail ? memchr(s, '\n', avail) : NULL;
        if (!nl) {
            if (avail > 8192) {
                buf_append(&c->wb, "CLIENT_ERROR line too long\r\n", 28);
                c->closing = 1;
            }
            break;
        }
        size_t ll = (size_t)(nl - s) + 1, tl = ll - 1;
        if (tl && s[tl - 1] == '\r') tl--;
        if (tl > 4 && !memcmp(s, "set ", 4)) {
            char tmp[512], cmd[256], nr[16];
            unsigned long fl, ex;
            unsigned long long nb;
            size_t cl = tl < sizeof tmp - 1 ? tl : sizeof tmp - 1;
            memcpy(tmp, s, cl);
            tmp[cl] = 0;
            nr[0] = 0;
            int f = sscanf(tmp, "set %255s %lu %lu %llu %15s", cmd, &fl, &ex, &nb, nr);
            if (f < 4 || nb > (1ULL << 30)) {
                buf_append(&c->wb, "CLIENT_ERROR bad command line format\r\n", 39);
                c->closing = 1;
                break;
            }
            size_t need = ll + (size_t)nb + 2;
            if (avail < need) {
                buf_reserve(&c->rb, need - avail);
                break;
            }
            if (s[ll + nb] != '\r' || s[ll + nb + 1] != '\n') {
                buf_append(&c->wb, "CLIENT_ERROR bad data chunk\r\n", 29);
                c->closing = 1;
                break;
            }
            c->rb.off += need;
            if (strcmp(nr, "noreply")) buf_append(&c->wb, "STORED\r\n", 8);
        } else if (tl == 12 && !memcmp(s, "get messages", 12)) {
            c->rb.off += ll;
            buf_append(&c->wb, "END\r\n", 5);
        } else if (tl == 4 && !memcmp(s, "quit", 4)) {
            c->rb.off += ll;
            c->closing = 1;
        } else if (tl == 7 && !memcmp(s, "version", 7)) {
            c->rb.off += ll;
            buf_append(&c->wb, "VERSION null-responder\r\n", 24);
        } else if (tl == 5 && !memcmp(s, "stats", 5)) {
            c->rb.off += ll;
            buf_append(&c->wb, "END\r\n", 5);
        } else if (tl == 0) {
            c->rb.off += ll;
        } else {
            c->rb.off += ll;
            buf_append(&c->wb, "ERROR\r\n", 7);
            c->closing = 1;
        }
    }
}

/* "<digits>\r\n" at p (p < e): the value, p moved past it; -2 if incomplete, -1 if malformed */
static long long nnum(const char **pp, const char *e)
{
    const char *p = *pp, *s = p;
    long long v = 0;
    while (p < e && *p >= '0' && *p <= '9' && v < (1LL << 40)) v = v * 10 + (*p++ - '0');
    if (p < e && *p != '\r') return -1;
    if (e - p < 2) return -2;
    if (p == s || p[1] != '\n') return -1;
    *pp = p + 2;
    return v;
}

static void resp_confirm(nconn_t *c, const char *kind, size_t kl, const char *ch, size_t cl)
{
    char b[96];
    size_t l = 0;
    memcpy(b, "*3\r\n$", 5);
    l = 5;
    l += fmt_u(b + l, kl);
    memcpy(b + l, "\r\n", 2);
    l += 2;
    memcpy(b + l, kind, kl);
    l += kl;
    memcpy(b + l, "\r\n$", 3);
    l += 3;
    l += fmt_u(b + l, cl);
    memcpy(b + l, "\r\n", 2);
    l += 2;
    buf_append(&c->wb, b, l);
    buf_append(&c->wb, ch, cl);
    l = 0;
    memcpy(b, "\r\n:", 3);
    l = 3;
    l += fmt_u(b + l, (uint64_t)c->nsubs);
    memcpy(b + l, "\r\n", 2);
    buf_append(&c->wb, b, l + 2);
}

/* frame and answer the RESP2 commands in c->rb */
static void resp_null_frame(nconn_t *c)
{
    while (!c->closing) {
        const char *s = c->rb.p + c->rb.off, *e = c->rb.p + c->rb.len, *p = s;
        if (p >= e) break;
        if (*p != '*') {
            buf_append(&c->wb, "-ERR the null responder takes multibulk commands only\r\n", 56);
            c->closing = 1;
            break;
        }
        p++;
        long long n = nnum(&p, e);
        if (n == -2) break;
        if (n < 1 || n > 1024 * 1024) {
            buf_append(&c->wb, "-ERR Protocol error: invalid multibulk length\r\n", 48);
            c->closing = 1;
            break;
        }
        const char *arg0 = NULL;
        size_t a0l = 0;
        int incomplete = 0, bad = 0;
        const char *args = NULL; /* first argument after the command name */
        for (long long i = 0; i < n; i++) {
            if (p >= e) {
                incomplete = 1;
                break;
            }
            if (i == 1) args = p;
            if (*p != '$') {
                bad = 1;
                break;
            }
            p++;
            long long l = nnum(&p, e);
            if (l == -2) {
                incomplete = 1;
                break;
            }
            if (l < 0 || l > (1LL << 29)) {
                bad = 1;
                break;
            }
            if (e - p < l + 2) {
                incomplete = 1;
                break;
            }
            if (p[l] != '\r' || p[l + 1] != '\n') {
                bad = 1;
                break;
            }
            if (i == 0) {
                arg0 = p;
                a0l = (size_t)l;
            }
            p += l + 2;
        }
        if (bad) {
            buf_append(&c->wb, "-ERR Protocol error: expected '$'\r\n", 36);
            c->closing = 1;
            break;
        }
        if (incomplete) {
            buf_reserve(&c->rb, 65536);
            break;
        }
        c->rb.off = (size_t)(p - c->rb.p);
        if (a0l == 7 && !strncasecmp(arg0, "PUBLISH", 7) && n == 3) {
            if (g_route) {
                const char *q = args + 1;
                long long cl = nnum(&q, e);
                const char *ch = q, *r = q + cl + 2 + 1;
                long long plen = nnum(&r, e);
                char num[24];
                num[0] = ':';
                size_t nl = 1 + fmt_u(num + 1, (uint64_t)route_publish(ch, (size_t)cl, r, (size_t)plen));
                memcpy(num + nl, "\r\n", 2);
                buf_append(&c->wb, num, nl + 2);
            } else {
                buf_append(&c->wb, ":1\r\n", 4);
            }
        } else if ((a0l == 9 && !strncasecmp(arg0, "SUBSCRIBE", 9)) || (a0l == 11 && !strncasecmp(arg0, "UNSUBSCRIBE", 11))) {
            int sub = a0l == 9;
            const char *q = args;
            for (long long i = 1; i < n; i++) {
                q++; /* '$' */
                long long l = nnum(&q, e);
                if (g_route)
                    c->nsubs += sub ? route_subscribe(q, (size_t)l, c->fd) : -route_unsubscribe(q, (size_t)l, c->fd);
                else
                    c->nsubs += sub ? 1 : (c->nsubs > 0 ? -1 : 0);
                resp_confirm(c, sub ? "subscribe" : "unsubscribe", sub ? 9 : 11, q, (size_t)l);
                q += l + 2;
            }
        } else if (a0l == 4 && !strncasecmp(arg0, "PING", 4)) {
            buf_append(&c->wb, "+PONG\r\n", 7);
        } else if (a0l == 4 && !strncasecmp(arg0, "QUIT", 4)) {
            buf_append(&c->wb, "+OK\r\n", 5);
            c->closing = 1;
        } else {
            buf_append(&c->wb, "-ERR unknown command\r\n", 23);
        }
    }
}

/* writes what c has, closes it when it is done or dead; returns 1 if it was closed */
static int conn_write(int ep, nconn_t *c, int dead)
{
    int fd = c->fd;
    while (!dead && c->wb.off < c->wb.len) {
        ssize_t wr = send(fd, c->wb.p + c->wb.off, c->wb.len - c->wb.off, MSG_NOSIGNAL);
        if (wr > 0) c->wb.off += (size_t)wr;
        else if (wr < 0 && (errno == EAGAIN || errno == EINTR)) break;
        else dead = 1;
    }
    if (c->wb.off == c->wb.len) c->wb.off = c->wb.len = 0;
    if (dead || (c->closing && !c->wb.len)) {
        if (g_route) route_forget(fd);
        close(fd);
        buf_free(&c->rb);
        buf_free(&c->wb);
        free(c);
        g_conns[fd] = NULL;
        return 1;
    }
    int want = c->wb.len != 0;
    if (want != c->wants_out) { /* a system call only when it changes */
        struct epoll_event cev = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.fd = fd };
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
        c->wants_out = want;
    }
    return 0;
}

static void null_main(int lfd, pid_t parent, int kind)
{
    signal(SIGINT, SIG_IGN); /* the parent stops us */
    signal(SIGTERM, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(0);
    g_route = kind == SK_NULL_ROUTE;
    void (*frame)(nconn_t *) = kind == SK_NULL ? kraken_null_frame : resp_null_frame;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    int cap = 65536;
    g_conns = xcalloc((size_t)cap, sizeof(nconn_t *));
    g_dirty = xcalloc(2 * (size_t)cap, sizeof(int)); /* an fd reused within a batch may be listed twice */
    struct epoll_event evs[512];
    int64_t end = now_ns() + 24LL * 3600 * NS_PER_S; /* hard lifetime bound */
    while (now_ns() < end) {
        int n = epoll_wait(ep, evs, 512, 1000);
        if (getppid() != parent) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                for (int k = 0; k < 256; k++) {
                    int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (cfd < 0) break;
                    if (cfd >= cap) {
                        close(cfd);
                        continue;
                    }
                    int one = 1;
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    g_conns[cfd] = xcalloc(1, sizeof(nconn_t));
                    g_conns[cfd]->fd = cfd;
                    struct epoll_event cev = { .events = EPOLLIN, .data.fd = cfd };
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
                }
                continue;
            }
            nconn_t *c = g_conns[fd];
            if (!c) continue;
            int dead = 0;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t r = read(fd, g_rdbuf, sizeof g_rdbuf);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) dead = 1;
                else if (r > 0) buf_append(&c->rb, g_rdbuf, (size_t)r);
                if (!dead) frame(c);
                if (c->rb.off == c->rb.len) c->rb.off = c->rb.len = 0;
            }
            if (g_route && !dead) mark_dirty(c); /* written after the batch, with the deliveries */
            else conn_write(ep, c, dead);
        }
        for (int i = 0; i < g_ndirty; i++) {
            nconn_t *c = g_conns[g_dirty[i]];
            if (!c) continue;
            c->dirty = 0;
            conn_write(ep, c, 0);
        }
        g_ndirty = 0;
    }
    _exit(0);
}

/* start a null responder of this kind (SK_NULL, SK_NULL_RESP, SK_NULL_ROUTE) on a free port */
pid_t start_null(int kind, int *port)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind: %s", strerror(errno));
    if (listen(lfd, 4096) < 0) die("listen: %s", strerror(errno));
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        bench_pin(BENCH_CPU_SERVER);
        null_main(lfd, parent, kind);
    }
    close(lfd);
    *port = ntohs(sa.sin_port);
    return pid;
}
