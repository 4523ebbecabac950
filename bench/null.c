/*
 * null.c - the null responders: forked children listening on their own free port that frame
 * every request correctly and answer it at once without routing anything, so that a run against
 * them measures the generator (and the loopback), and %null compares a server with them.
 *   Kraken text: `set ... <n>` + data block -> STORED, `get messages` -> END, quit, version.
 */
#include "kb.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    buf_t rb, wb;
    int closing;
} nconn_t;

/* frame and answer the Kraken text requests in c->rb; returns 0, or -1 to close */
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

static void null_main(int lfd, pid_t parent, int kind)
{
    signal(SIGINT, SIG_IGN); /* the parent stops us */
    signal(SIGTERM, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(0);
    void (*frame)(nconn_t *) = kraken_null_frame;
    (void)kind;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    int cap = 65536;
    nconn_t **cs = xcalloc((size_t)cap, sizeof(nconn_t *));
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
                    cs[cfd] = xcalloc(1, sizeof(nconn_t));
                    struct epoll_event cev = { .events = EPOLLIN, .data.fd = cfd };
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
                }
                continue;
            }
            nconn_t *c = cs[fd];
            if (!c) continue;
            int dead = 0;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t r = read(fd, g_rdbuf, sizeof g_rdbuf);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) dead = 1;
                else if (r > 0) buf_append(&c->rb, g_rdbuf, (size_t)r);
                if (!dead) frame(c);
                if (c->rb.off == c->rb.len) c->rb.off = c->rb.len = 0;
            }
            while (!dead && c->wb.off < c->wb.len) {
                ssize_t wr = send(fd, c->wb.p + c->wb.off, c->wb.len - c->wb.off, MSG_NOSIGNAL);
                if (wr > 0) c->wb.off += (size_t)wr;
                else if (wr < 0 && (errno == EAGAIN || errno == EINTR)) break;
                else dead = 1;
            }
            if (c->wb.off == c->wb.len) c->wb.off = c->wb.len = 0;
            if (dead || (c->closing && !c->wb.len)) {
                close(fd);
                buf_free(&c->rb);
                buf_free(&c->wb);
                free(c);
                cs[fd] = NULL;
                continue;
            }
            struct epoll_event cev = { .events = EPOLLIN | (c->wb.len ? EPOLLOUT : 0), .data.fd = fd };
            epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
        }
    }
    _exit(0);
}

/* start a null responder of this kind (SK_NULL, SK_NULL_RESP) on a free port */
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
    if (pid == 0) null_main(lfd, parent, kind);
    close(lfd);
    *port = ntohs(sa.sin_port);
    return pid;
}
