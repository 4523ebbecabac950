/*
 * cluster.c - the cluster benchmark (--cluster; issue 12, docs/cluster.md plan item 6).
 *
 * Starts three real nodes with `bin/kraken start` (distinct node names, ports picked by the
 * nodes themselves, console logs in a temporary directory): one core and two proxies joined
 * to it.  Then, for the latency (and, if enabled, fanout) workload with push subscribers and
 * publishers always on the core:
 *   direct  every client on the core;
 *   hop     the subscribers spread over the two proxies (one hop), the publishers on the core;
 * first closed-loop (saturation; the direct one's median published rate is "the direct
 * saturation rate"), then both at --cluster-load (0.5) of that rate.  Measured: deliveries/s,
 * p50/p99, the CPU per delivery of the core's engine and of the two proxies' engines (from
 * /proc, over the same window), the connections the core has accepted once the clients are set
 * up (from /proc/net/tcp), lost/duplicated.  Target (issue 12): at half the direct saturation
 * rate, p99 through one hop at most 1 ms above direct.  The nodes are stopped at the end
 * (`bin/kraken stop`, then SIGKILL of what is left), also on an error exit.
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

enum { NC = 0, NP1, NP2, NNODES };
static const char *node_role[NNODES] = { "core", "proxy", "proxy" };
static const char *node_suffix[NNODES] = { "c", "p1", "p2" };

typedef struct {
    char name[64]; /* short node name */
    int port;
    pid_t os_pid;  /* the Erlang VM (a session leader: setsid) */
    pid_t engine;
} knode_t;

static knode_t K[NNODES];
static char g_dir[PATH_MAX];
static int g_started, g_epmd_was;

/* ---- starting and stopping the nodes */

/* runs bin/kraken with args for node k; its stdout in out (if given); returns the exit status */
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

static void stop_nodes(void)
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

static void start_nodes(void)
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
        char *args[] = { "start", "-kraken", "tcp_server_port", "0", "-kraken", "listen_ip", "\"127.0.0.1\"",
                         "-kraken", "max_tcp_clients", "20000", "-kraken", "role", (char *)node_role[k],
                         "-kraken", "cluster_nodes", join, NULL };
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

/* A push subscriber of a new topic on each proxy, and entries published to it on the core until
   both got one.  The proxies' upstream subscriptions travel in order on their links, so once the
   probe arrives every subscription a proxy made before it is in place at the core too. */
static void probe_hop(int timeout_s)
{
    static unsigned seq;
    char topic[64], block[128];
    snprintf(topic, sizeof topic, "kbprobe.%d.%u", (int)getpid(), ++seq);
    int sfd[2], got[2] = { 0, 0 };
    for (int i = 0; i < 2; i++) {
        sfd[i] = bconnect(K[NP1 + i].port);
        bset(sfd[i], "push", "on");
        bset(sfd[i], "subscribe", topic);
        fcntl(sfd[i], F_SETFL, O_NONBLOCK);
    }
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

static void count_core_conns(target_t *tg, result_t *r)
{
    (void)tg;
    sleep_ms(50); /* the probe's publisher has closed: let the core see it */
    r->srv_conns = tcp_established(K[NC].port);
}

static void after_setup_hop(target_t *tg, result_t *r)
{
    probe_hop(30);
    count_core_conns(tg, r);
}

static double loadavg1(void)
{
    double l = NAN;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = NAN;
        fclose(f);
    }
    return l;
}

/* ---- the runs and the report */

enum { SAT_DIRECT, SAT_HOP, LOAD_DIRECT, LOAD_HOP, LOAD_MIXED, NCASES };
static const char *case_name[NCASES] = { "direct", "hop", "direct", "hop", "mixed" };

typedef struct {
    result_t r;
    double load1;
} crun_t;

typedef double (*cfig_t)(const crun_t *c);
static double c_rate(const crun_t *c) { return c->r.rate; }
static double c_deliv(const crun_t *c) { return c->r.deliv_s; }
static double c_p50(const crun_t *c) { return c->r.p50_us; }
static double c_p99(const crun_t *c) { return c->r.p99_us; }
static double c_core_cpu(const crun_t *c) { return c->r.cpu_us_per_op; }
static double c_prox_cpu(const crun_t *c) { return c->r.x_cpu_us_per_op[0] + c->r.x_cpu_us_per_op[1]; }
static double c_core_pct(const crun_t *c) { return c->r.srv_cpu_pct; }
static double c_prox_pct(const crun_t *c) { return c->r.x_cpu_pct[0] + c->r.x_cpu_pct[1]; }
static double c_gen_pct(const crun_t *c) { return c->r.gen_cpu_pct; }
static double c_conns(const crun_t *c) { return c->r.srv_conns; }
static double c_load(const crun_t *c) { return c->load1; }
/* mixed runs: group 0 the subscribers on the core, group 1 those on the proxies */
static double c_p50_g0(const crun_t *c) { return c->r.gp50_us[0]; }
static double c_p99_g0(const crun_t *c) { return c->r.gp99_us[0]; }
static double c_p50_g1(const crun_t *c) { return c->r.gp50_us[1]; }
static double c_p99_g1(const crun_t *c) { return c->r.gp99_us[1]; }
static double c_p99_gap(const crun_t *c) { return c->r.gp99_us[1] - c->r.gp99_us[0]; }

static double fig(crun_t runs[][NCASES], int cs, cfig_t f, double *mn, double *mx)
{
    double v[MAX_REPS], med;
    int n = 0;
    for (int rp = 0; rp < O.reps; rp++)
        if (runs[rp][cs].r.ran) v[n++] = f(&runs[rp][cs]);
    if (!median_range(v, n, &med, mn, mx)) return NAN;
    return med;
}

/* "med" or "med [min-max]" */
static void fmt_fig(char *b, size_t bn, crun_t runs[][NCASES], int cs, cfig_t f, int prec, int range, double scale)
{
    double mn, mx, m = fig(runs, cs, f, &mn, &mx);
    if (isnan(m)) snprintf(b, bn, "-");
    else if (range && O.reps > 1) snprintf(b, bn, "%.*f [%.*f-%.*f]", prec, m / scale, prec, mn / scale, prec, mx / scale);
    else snprintf(b, bn, "%.*f", prec, m / scale);
}

static void print_row(crun_t runs[][NCASES], int cs, const char *name, cfig_t p50f, cfig_t p99f, double rate_msgs)
{
    int64_t lost = 0;
    uint64_t dup = 0, bad = 0, err = 0;
    int conns = 0, ran = 0;
    for (int rp = 0; rp < O.reps; rp++) {
        result_t *r = &runs[rp][cs].r;
        if (!r->ran) continue;
        ran++;
        lost += r->lost;
        dup += r->dup;
        bad += r->bad + r->unexpected;
        err += r->errors + r->conn_fail + r->proto_err;
        conns = r->conns_ok;
    }
    if (!ran) return;
    char ld[32], rate[32], dl[48], p50[48], p99[48], cc[48], pc[48], cpct[16], ppct[16], gpct[16], la[16], cn[48];
    if (cs < LOAD_DIRECT) snprintf(ld, sizeof ld, "saturated");
    else snprintf(ld, sizeof ld, "%.2f x sat %.0fk/s", O.cluster_load, rate_msgs / 1e3);
    fmt_fig(rate, sizeof rate, runs, cs, c_rate, 0, 0, 1);
    fmt_fig(dl, sizeof dl, runs, cs, c_deliv, 0, 1, 1e3);
    fmt_fig(p50, sizeof p50, runs, cs, p50f, 0, 1, 1);
    fmt_fig(p99, sizeof p99, runs, cs, p99f, 0, 1, 1);
    fmt_fig(cc, sizeof cc, runs, cs, c_core_cpu, 3, 1, 1);
    fmt_fig(pc, sizeof pc, runs, cs, c_prox_cpu, 3, 1, 1);
    fmt_fig(cpct, sizeof cpct, runs, cs, c_core_pct, 0, 0, 1);
    fmt_fig(ppct, sizeof ppct, runs, cs, c_prox_pct, 0, 0, 1);
    fmt_fig(gpct, sizeof gpct, runs, cs, c_gen_pct, 0, 0, 1);
    fmt_fig(la, sizeof la, runs, cs, c_load, 2, 0, 1);
    double cmn, cmx; /* the core's connections: the range too, should they differ between runs */
    fmt_fig(cn, sizeof cn, runs, cs, c_conns, 0, fig(runs, cs, c_conns, &cmn, &cmx) >= 0 && cmn != cmx, 1);
    printf("%-18s %-11s %5d %5s %7s %-16s %-17s %-20s %-20s %-20s %4s%% %4s%% %4s%% %5s %5" PRId64 " %4" PRIu64
           " %4" PRIu64 " %4" PRIu64 "\n",
           ld, name, conns, cn, rate, dl, p50, p99, cc, pc, cpct, ppct, gpct, la, lost, dup, bad, err);
}

static void print_cluster(int w, crun_t runs[][NCASES], double rate_msgs)
{
    printf("\n%s, median [min-max] of %d runs (load: 1-minute load average before each run):\n", wl_names[w], O.reps);
    printf("%-18s %-11s %5s %5s %7s %-16s %-17s %-20s %-20s %-20s %5s %5s %5s %5s %5s %4s %4s %4s\n", "load",
           "subscribers", "conns", "core", "msg/s", "deliv/s (k)", "p50_us", "p99_us", "core_us/deliv",
           "proxies_us/deliv", "core%", "prox%", "gen%", "load", "lost", "dup", "bad", "err");
    for (int cs = 0; cs < LOAD_MIXED; cs++)
        print_row(runs, cs, cs & 1 ? "on proxies" : "on core", c_p50, c_p99, rate_msgs);
    print_row(runs, LOAD_MIXED, "mixed: core", c_p50_g0, c_p99_g0, rate_msgs);
    print_row(runs, LOAD_MIXED, "mixed: prox", c_p50_g1, c_p99_g1, rate_msgs);
    int slow = 0;
    for (int rp = 0; rp < O.reps; rp++)
        for (int cs = LOAD_DIRECT; cs < NCASES; cs++)
            slow += runs[rp][cs].r.ran && runs[rp][cs].r.rate < 0.9 * rate_msgs;
    if (slow)
        printf("note: %d run(s) at the reduced rate published less than 90%% of the offered rate: the machine was busy,\n"
               "      their latencies are not those of the offered load\n", slow);
    double mn, mx;
    double hop = fig(runs, LOAD_HOP, c_p99, &mn, &mx), dir = fig(runs, LOAD_DIRECT, c_p99, &mn, &mx);
    double gap = fig(runs, LOAD_MIXED, c_p99_gap, &mn, &mx);
    printf("target (issue 12): p99 through one hop <= direct + 1 ms at %.2f x the direct saturation rate (%.0f msg/s):\n"
           "  separate runs: hop %.0f us, direct %.0f us: %+.0f us: %s\n"
           "  same runs (mixed: a third of the subscribers on the core, the rest on the proxies): %+.0f us [%+.0f to %+.0f]: %s\n",
           O.cluster_load, rate_msgs, hop, dir, hop - dir,
           isnan(hop - dir) ? "not measured" : hop - dir <= 1000 ? "met" : "NOT met", gap, mn, mx,
           isnan(gap) ? "not measured" : gap <= 1000 ? "met" : "NOT met");
}

void run_cluster(void)
{
    start_nodes();
    probe_hop(60); /* the proxies' links are up */
    target_t tg[3];
    memset(tg, 0, sizeof tg);
    for (int i = 0; i < 3; i++) {
        tg[i].kind = SK_NONE;
        tg[i].proto = &proto_kraken_push;
        tg[i].port = K[NC].port;
        tg[i].mpid = K[NC].engine;
        tg[i].null_ref = -1;
        tg[i].xpid[0] = K[NP1].engine;
        tg[i].xpid[1] = K[NP2].engine;
        tg[i].nxpid = 2;
        tg[i].after_setup = i ? after_setup_hop : count_core_conns;
    }
    tg[0].label = "direct";
    tg[1].label = "hop";
    tg[1].sub_ports[0] = K[NP1].port;
    tg[1].sub_ports[1] = K[NP2].port;
    tg[1].nsub_ports = 2;
    tg[2].label = "mixed";
    tg[2].sub_ports[0] = K[NC].port;
    tg[2].sub_ports[1] = K[NP1].port;
    tg[2].sub_ports[2] = K[NP2].port;
    tg[2].sub_group[1] = tg[2].sub_group[2] = 1;
    tg[2].nsub_ports = 3;
    printf("\ncluster (issue 12): core %s, proxies %s and %s (bin/kraken start, 127.0.0.1); push subscribers, "
           "publishers on the core;\n  on core: every client on the core; on proxies: the subscribers spread over the "
           "two proxies; mixed: a third of them on each node; %.1f s per run\n",
           K[NC].name, K[NP1].name, K[NP2].name, O.duration);
    static crun_t runs[MAX_REPS][NCASES];
    double saved_rate = O.rate;
    const int wls[2] = { W_LAT, W_FAN };
    for (int k = 0; k < 2 && !g_stop; k++) {
        int w = wls[k];
        if (!O.enabled[w]) continue;
        memset(runs, 0, sizeof runs);
        O.rate = 0;
        /* saturated (closed loop), then at --cluster-load of the direct saturation rate; the setups
           alternate run by run, so that the machine's drift falls on each alike */
        for (int phase = 0; phase < 2 && !g_stop; phase++) {
            int c0 = phase ? LOAD_DIRECT : SAT_DIRECT, c1 = phase ? LOAD_MIXED : SAT_HOP;
            if (phase) {
                double mn, mx, sat = fig(runs, SAT_DIRECT, c_rate, &mn, &mx);
                O.rate = sat * O.cluster_load / (P[w].pubs * P[w].batch);
                if (!(O.rate > 0)) break;
            }
            for (int rp = 0; rp < O.reps && !g_stop; rp++)
                for (int cs = c0; cs <= c1 && !g_stop; cs++) {
                    fprintf(stderr, "kraken_bench: cluster: %s %s, subscribers %s (run %d of %d)...\n", wl_names[w],
                            phase ? "at the reduced rate" : "saturated", case_name[cs], rp + 1, O.reps);
                    runs[rp][cs].load1 = loadavg1();
                    run_workload(w, &tg[cs == LOAD_MIXED ? 2 : cs & 1], &runs[rp][cs].r);
                }
        }
        double rate_msgs = O.rate * P[w].pubs * P[w].batch;
        O.rate = saved_rate;
        if (!g_stop) print_cluster(w, runs, rate_msgs);
    }
    printf("(conns: client connections; core: connections the core's engine had accepted once they were set up,\n"
           " from /proc/net/tcp (the proxies' links + the publishers + the subscribers on the core);\n"
           " *_us/deliv: engine utime+stime over the run and the drain / deliveries to the subscribers, for the core\n"
           " and the two proxies summed; core%%, prox%%: the same as %% of one core; lost/dup/bad/err summed over runs;\n"
           " mixed: one run, latency split by where the subscriber is)\n");
    stop_nodes();
}
