/*
 * loop.c - the generator's single-threaded epoll loop, independent of the protocol spoken:
 * opening connections (non-blocking connect, at most --max-connecting at a time during setup),
 * writing what drivers queued in a connection's write buffer, reading into its read buffer and
 * handing it to the driver's parser, closing, the timer heap (polls, paced publishes), and the
 * ring of request kinds each driver uses to match replies with requests.
 */
#include "kb.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

char g_rdbuf[256 * 1024]; /* shared read buffer: idle connections keep tiny buffers */

void log_err(const char *fmt, ...)
{
    if (G.err_logged >= 8 && !g_verbose) return;
    G.err_logged++;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kraken_bench: [%s] ", wl_names[G.wl]);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* ---- timer heap (lazy deletion by per-connection generation) */

static void heap_push(int64_t t, int idx, int type)
{
    if (G.hn == G.hcap) {
        G.hcap = G.hcap ? G.hcap * 2 : 1024;
        G.heap = xrealloc(G.heap, sizeof(tentry_t) * (size_t)G.hcap);
    }
    int i = G.hn++;
    tentry_t e = { t, idx, type, G.c[idx].tgen[type] };
    while (i > 0) {
        int p = (i - 1) / 2;
        if (G.heap[p].t <= t) break;
        G.heap[i] = G.heap[p];
        i = p;
    }
    G.heap[i] = e;
}

static tentry_t heap_pop(void)
{
    tentry_t top = G.heap[0], last = G.heap[--G.hn];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        int64_t mt = last.t;
        if (l < G.hn && G.heap[l].t < mt) m = l, mt = G.heap[l].t;
        if (r < G.hn && G.heap[r].t < mt) m = r;
        if (m == i) break;
        G.heap[i] = G.heap[m];
        i = m;
    }
    if (G.hn) G.heap[i] = last;
    return top;
}

void timer_set(conn_t *c, int type, int64_t t)
{
    c->tgen[type]++;
    heap_push(t, c->idx, type);
}

/* ---- requests in flight */

void push_kind(conn_t *c, int kind)
{
    if (c->kn >= KQ) die("internal: too many requests in flight");
    c->kq[(c->kh + c->kn) % KQ] = (uint8_t)kind;
    c->kn++;
}

int pop_kind(conn_t *c)
{
    if (!c->kn) return K_NONE;
    int kind = c->kq[c->kh];
    c->kh = (c->kh + 1) % KQ;
    c->kn--;
    return kind;
}

/* ---- writing and reading */

void conn_flush(conn_t *c)
{
    if (c->state != CS_OPEN) return;
    while (c->wb.off < c->wb.len) {
        ssize_t w = send(c->fd, c->wb.p + c->wb.off, c->wb.len - c->wb.off, MSG_NOSIGNAL);
        if (w > 0) {
            c->wb.off += (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else {
            conn_error(c, strerror(errno));
            return;
        }
    }
    if (c->wb.off == c->wb.len) c->wb.off = c->wb.len = 0;
    uint32_t want = EPOLLIN | (c->wb.len ? EPOLLOUT : 0);
    if (want != c->evmask) {
        struct epoll_event ev = { .events = want, .data.ptr = c };
        epoll_ctl(G.ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->evmask = want;
    }
}

static void conn_read(conn_t *c)
{
    ssize_t r = read(c->fd, g_rdbuf, sizeof g_rdbuf);
    if (r > 0) {
        if (c->quit_sent) return; /* saying goodbye: whatever still comes is not counted */
        buf_append(&c->rb, g_rdbuf, (size_t)r);
        G.pr->parse(c);
        if (c->state == CS_OPEN && c->rb.off == c->rb.len) c->rb.off = c->rb.len = 0;
        conn_flush(c);
    } else if (r == 0) {
        if (c->quit_sent || G.phase == PH_TEARDOWN) conn_close(c);
        else conn_error(c, "connection closed by server");
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        conn_error(c, strerror(errno));
    }
}

/* ---- connection lifecycle */

static void conn_fail_setup(conn_t *c)
{
    if (!c->ready && !c->failed) {
        c->failed = 1;
        G.n_failed++;
    }
}

void conn_close(conn_t *c)
{
    if (c->state == CS_CLOSED || c->state == CS_NEW) {
        c->state = CS_CLOSED;
        return;
    }
    if (c->state == CS_CONNECTING) G.connecting--;
    if (c->state == CS_OPEN) G.n_open--;
    close(c->fd); /* also removes it from epoll */
    c->fd = -1;
    c->state = CS_CLOSED;
    for (int t = 0; t < T_NTYPES; t++) c->tgen[t]++;
    G.inflight_total -= c->inflight;
    c->inflight = 0;
    if (c->get_inflight) {
        c->get_inflight = 0;
        G.gets_inflight--;
    }
    if (c->in_round) {
        c->in_round = 0;
        if (--G.round_out == 0 && G.phase == PH_DRAIN) drain_round_end();
    }
    conn_fail_setup(c);
}

void conn_error(conn_t *c, const char *why)
{
    if (c->state == CS_CLOSED) return;
    G.errors++;
    log_err("conn %d (%s): %s", c->idx, c->pub_id >= 0 ? "publisher" : c->churn ? "churn" : "subscriber", why);
    conn_close(c);
}

void conn_open(conn_t *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        G.conn_fail++;
        log_err("socket: %s", strerror(errno));
        c->state = CS_CLOSED;
        conn_fail_setup(c);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* subscribers spread over sub_ports when there are some (the cluster's proxies) */
    int port = (G.nsub_ports && c->pub_id < 0 && c->sub_id >= 0) ? G.sub_ports[c->sub_id % G.nsub_ports] : G.port;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = fd;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        G.conn_fail++;
        log_err("connect: %s", strerror(errno));
        close(fd);
        c->fd = -1;
        c->state = CS_CLOSED;
        conn_fail_setup(c);
        return;
    }
    c->state = CS_CONNECTING;
    G.connecting++;
    c->evmask = EPOLLOUT;
    struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
    if (epoll_ctl(G.ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
}

static void conn_connected(conn_t *c)
{
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        G.conn_fail++;
        struct sockaddr_in sa;
        socklen_t sl = sizeof sa;
        int port = getpeername(c->fd, (struct sockaddr *)&sa, &sl) == 0 ? ntohs(sa.sin_port) : G.port;
        log_err("connect to 127.0.0.1:%d: %s", port, strerror(err));
        conn_close(c);
        return;
    }
    G.connecting--;
    G.n_open++;
    c->state = CS_OPEN;
    c->evmask = 0;
    conn_flush(c); /* sets EPOLLIN */
    G.pr->open(c);
}

/* ---- the loop */

void sample_rss(void)
{
    if (!G.mpid) return;
    long kb = proc_rss_kb(G.mpid);
    if (kb > G.peak_rss_kb) G.peak_rss_kb = kb;
}

void loop_until(int (*done)(void), int64_t deadline)
{
    struct epoll_event evs[512];
    while (!g_stop) {
        if (done && done()) break;
        int64_t now = now_ns();
        if (now >= deadline) break;
        if (G.phase == PH_SETUP)
            while (G.next_open < G.n && G.connecting < O.max_connecting) conn_open(&G.c[G.next_open++]);
        while (G.hn && G.heap[0].t <= now) on_timer(heap_pop());
        if (G.phase == PH_DRAIN && G.drain_next_at && now >= G.drain_next_at) {
            G.drain_next_at = 0;
            drain_start_round();
        }
        if (now >= G.next_sample) {
            sample_rss();
            G.next_sample = now + 250 * NS_PER_MS;
        }
        if (done && done()) break;
        int64_t until = deadline;
        if (G.hn && G.heap[0].t < until) until = G.heap[0].t;
        if (G.drain_next_at && G.drain_next_at < until) until = G.drain_next_at;
        if (G.next_sample < until) until = G.next_sample;
        now = now_ns();
        int tmo = until > now ? (int)((until - now + NS_PER_MS - 1) / NS_PER_MS) : 0;
        if (tmo > 100) tmo = 100;
        int n = epoll_wait(G.ep, evs, 512, tmo);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->state == CS_CONNECTING) {
                conn_connected(c);
                continue;
            }
            if (c->state != CS_OPEN) continue;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) conn_read(c);
            if (c->state == CS_OPEN && (evs[i].events & EPOLLOUT)) conn_flush(c);
        }
    }
}

int conn_next_line(conn_t *c, char **s, size_t *tl, size_t *ll)
{
    *s = c->rb.p + c->rb.off;
    size_t n = c->rb.len - c->rb.off;
    char *nl = n ? memchr(*s, '\n', n) : NULL;
    if (!nl) {
        if (n > 65536) {
            G.proto_err++;
            conn_error(c, "reply line too long");
        }
        return 0;
    }
    *ll = (size_t)(nl - *s) + 1;
    *tl = *ll - 1;
    if (*tl && (*s)[*tl - 1] == '\r') (*tl)--;
    return 1;
}
