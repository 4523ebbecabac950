/*
 * cluster_nodes.c - the nodes of the cluster benchmark (cluster.c): one core and two proxies
 * started at once with `bin/kraken start` (node names kbc<pid>_<tag>_{c,p1,p2}, ports picked by
 * the nodes, console logs in /tmp/kraken_bench_cluster_<pid>/), their engines found under their
 * VMs, stopped with `bin/kraken stop` (SIGKILL for what is left; also at exit); the probe that
 * waits until entries published on the core reach a push subscriber on each proxy; the core's
 * established connections from /proc/net/tcp; the load average.
 */
#include "kb.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

static const char *node_role[NNODES] = { "core", "proxy", "proxy" };
static const char *node_suffix[NNODES] = { "c", "p1", "p2" };

knode_t K[NNODES];
static char g_dir[PATH_MAX];
static int g_started, g_epmd_was;

/* ---- starting and stopping the nodes */

/* starts bin/kraken with args for node k (its environment: KRAKEN_NODE_NAME, KRAKEN_LOG_DIR);
   returns its pid, the read end of its stdout in *out_fd (if given), stderr to <dir>/bench.log */
static pid_t kraken_cmd(int k, char *const *args, int *out_fd)
{
    const char *kraken = find_kraken();
    if (!kraken) die("bin/kraken not found (run from the repository root, or --kraken PATH)");
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0) die("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        char log[PATH_MAX + 32];
        snprintf(log, sizeof log, "%s/bench.log", g_dir);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int in = open("/dev/null", O_RDONLY);
        if (in >= 0) dup2(in, 0);
        dup2(pfd[1], 1);
        if (fd >= 0) dup2(fd, 2);
        setenv("KRAKEN_NODE_NAME", K[k].name, 1);
        setenv("KRAKEN_LOG_DIR", g_dir, 1);
        char *argv[32];
        int a = 0;
        argv[a++] = (char *)kraken;
        for (int i = 0; args[i] && a < 31; i++) argv[a++] = args[i];
        argv[a] = NULL;
        execv(kraken, argv);
        _exit(127);
    }
    close(pfd[1]);
    if (out_fd) *out_fd = pfd[0];
    else close(pfd[0]);
    return pid;
}

/* the output of a command started by kraken_cmd, up to EOF or 90 s; its exit status */
static int collect(pid_t pid, int fd, char *out, size_t n)
{
    size_t len = 0;
    int64_t dl = now_ns() + 90 * NS_PER_S;
    for (;;) {
        struct pollfd pf = { fd, POLLIN, 0 };
        int left = (int)((dl - now_ns()) / NS_PER_MS);
        if (left <= 0 || poll(&pf, 1, left) != 1) break;
        char tmp[512];
        ssize_t r = read(fd, tmp, sizeof tmp);
        if (r <= 0) break;
        if (len + (size_t)r < n) {
            memcpy(out + len, tmp, (size_t)r);
            len += (size_t)r;
        }
    }
    out[len] = 0;
    close(fd);
    int st = 0;
    if (waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void stop_nodes(void)
{
    if (!g_started) return;
    g_started = 0;
    pid_t cmd[NNODES] = { 0 };
    int fd[NNODES];
    for (int k = 0; k < NNODES; k++) {
        if (!K[k].os_pid) continue;
        char *args[] = { "stop", NULL };
        cmd[k] = kraken_cmd(k, args, &fd[k]);
    }
    for (int k = 0; k < NNODES; k++) {
        char out[1024];
        if (cmd[k]) collect(cmd[k], fd[k], out, sizeof out);
    }
    /* whatever is left (a node that did not stop, an engine that outlived it) */
    for (int k = 0; k < NNODES; k++) {
        for (int i = 0; i < 50 && K[k].os_pid && kill(K[k].os_pid, 0) == 0; i++) sleep_ms(100);
        if (K[k].os_pid && kill(K[k].os_pid, 0) == 0) {
            warnx_("cluster: node %s (pid %d) did not stop; killing it", K[k].name, (int)K[k].os_pid);
            kill(-K[k].os_pid, SIGKILL);
        }
        if (K[k].engine && kill(K[k].engine, 0) == 0) kill(K[k].engine, SIGKILL);
        K[k].os_pid = K[k].engine = 0;
    }
    if (!g_epmd_was && any_process_named("epmd") && system("epmd -kill >/dev/null 2>&1") != 0 && g_verbose)
        warnx_("epmd -kill failed");
    fprintf(stderr, "kraken_bench: cluster stopped (console logs in %s)\n", g_dir);
}

void start_nodes(void)
{
    if (!getenv("HOME")) setenv("HOME", "/root", 0); /* erl needs it for the cookie */
    snprintf(g_dir, sizeof g_dir, "/tmp/kraken_bench_cluster_%d", (int)getpid());
    if (mkdir(g_dir, 0755) < 0 && errno != EEXIST) die("mkdir %s: %s", g_dir, strerror(errno));
    unsigned tag = (unsigned)(splitmix(&g_rng) & 0xffff);
    for (int k = 0; k < NNODES; k++)
        snprintf(K[k].name, sizeof K[k].name, "kbc%d_%04x_%s", (int)getpid(), tag, node_suffix[k]);
    g_epmd_was = any_process_named("epmd");
    g_started = 1;
    atexit(stop_nodes);
    /* all three at once: the core joins p1, the proxies the core; each retries until the other is up */
    pid_t cmd[NNODES];
    int fd[NNODES];
    for (int k = 0; k < NNODES; k++) {
        char join[80];
        snprintf(join, sizeof join, "[%s]", K[k == NC ? NP1 : NC].name);
        char eng[4200];
        snprintf(eng, sizeof eng, "\"%s\"", O.cluster_engine ? O.cluster_engine : "");
        char *args[] = { "start", "-kraken", "tcp_server_port", "0", "-kraken", "listen_ip", "\"127.0.0.1\"",
                         "-kraken", "max_tcp_clients", "20000", "-kraken", "role", (char *)node_role[k],
                         "-kraken", "cluster_nodes", join,
                         O.cluster_engine ? "-kraken" : NULL, "engine_executable", eng, NULL };
        cmd[k] = kraken_cmd(k, args, &fd[k]);
    }
    for (int k = 0; k < NNODES; k++) {
        char out[2048];
        int st = collect(cmd[k], fd[k], out, sizeof out);
        const char *p = strstr(out, "listening on port ");
        const char *q = strstr(out, "(os pid ");
        if (st != 0 || !p || !q) die("cluster: bin/kraken start of %s failed (status %d): %s (see %s)", K[k].name, st, out, g_dir);
        K[k].port = atoi(p + strlen("listening on port "));
        K[k].os_pid = (pid_t)atoi(q + strlen("(os pid "));
    }
    for (int k = 0; k < NNODES; k++) {
        for (int i = 0; i < 100 && !(K[k].engine = find_engine(K[k].os_pid)); i++) sleep_ms(100);
        if (!K[k].engine) die("cluster: no kraken_engine under node %s (pid %d)", K[k].name, (int)K[k].os_pid);
        fprintf(stderr, "kraken_bench: cluster node %s (%s) on port %d, VM pid %d, engine pid %d\n", K[k].name,
                node_role[k], K[k].port, (int)K[k].os_pid, (int)K[k].engine);
    }
}

/* ---- probing: a blocking client */

static int bconnect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = { 5, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("cluster: connect to port %d: %s", port, strerror(errno));
    return fd;
}

/* `set cmd 0 0 <n>` + data; waits for STORED */
static void bset(int fd, const char *cmd, const char *data)
{
    char req[512], reply[64];
    int n = snprintf(req, sizeof req, "set %s 0 0 %zu\r\n%s\r\n", cmd, strlen(data), data);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) die("cluster: probe send: %s", strerror(errno));
    size_t got = 0;
    while (got < 8) {
        ssize_t r = recv(fd, reply + got, 8 - got, 0);
        if (r <= 0) die("cluster: probe: no reply to set %s", cmd);
        got += (size_t)r;
    }
    if (memcmp(reply, "STORED\r\n", 8)) die("cluster: probe: set %s answered %.8s", cmd, reply);
}

/* A push subscriber of topic on the node at port, non-blocking. */
static int probe_subscriber(int port, const char *topic)
{
    int fd = bconnect(port);
    bset(fd, "push", "on");
    bset(fd, "subscribe", topic);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* A push subscriber of a new topic on each proxy, and entries published to it on the core until
   both got one.  The proxies' upstream subscriptions travel in order on their links, so once the
   probe arrives every subscription a proxy made before it is in place at the core too. */
void probe_hop(int timeout_s)
{
    static unsigned seq;
    char topic[64], block[128];
    snprintf(topic, sizeof topic, "kbprobe.%d.%u", (int)getpid(), ++seq);
    int sfd[2], got[2] = { 0, 0 };
    for (int i = 0; i < 2; i++)
        sfd[i] = probe_subscriber(K[NP1 + i].port, topic);
    int pfd = bconnect(K[NC].port);
    snprintf(block, sizeof block, "MESSAGE %s 1\r\nx\r\n", topic);
    int64_t dl = now_ns() + (int64_t)timeout_s * NS_PER_S;
    while (!(got[0] && got[1]) && !g_stop) {
        if (now_ns() > dl) die("cluster: the proxies do not get entries published on the core (see %s)", g_dir);
        char req[256];
        int n = snprintf(req, sizeof req, "set publish 0 0 %zu noreply\r\n%s\r\n", strlen(block), block);
        if (send(pfd, req, (size_t)n, MSG_NOSIGNAL) != n) die("cluster: probe publish: %s", strerror(errno));
        sleep_ms(20);
        for (int i = 0; i < 2; i++) {
            char b[4096];
            ssize_t r = recv(sfd[i], b, sizeof b, 0);
            if (r > 0 && memmem(b, (size_t)r, "VALUE messages", 14)) got[i] = 1;
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                /* Subscribed before the proxy heard the core, it is disconnected
                   (docs/cluster.md): subscribe again. */
                close(sfd[i]);
                sfd[i] = probe_subscriber(K[NP1 + i].port, topic);
            }
        }
    }
    close(pfd);
    close(sfd[0]);
    close(sfd[1]);
}

/* server-side established connections on 127.0.0.1:port (the ones its listener accepted) */
int tcp_established(int port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f) return -1;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned lport, st;
        if (sscanf(line, " %*d: %*x:%x %*x:%*x %x", &lport, &st) == 2 && (int)lport == port && st == 1) n++;
    }
    fclose(f);
    return n;
}

void count_core_conns(target_t *tg, result_t *r)
{
    (void)tg;
    sleep_ms(50); /* the probe's publisher has closed: let the core see it */
    r->srv_conns = tcp_established(K[NC].port);
}

void after_setup_hop(target_t *tg, result_t *r)
{
    probe_hop(30);
    count_core_conns(tg, r);
}

double loadavg1(void)
{
    double l = NAN;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = NAN;
        fclose(f);
    }
    return l;
}
