/*
 * servers.c - the servers kraken_bench measures: starting each on a free 127.0.0.1 port in its
 * own process group (output to a log file), waiting until it accepts connections, finding the
 * process to measure, and stopping it (SIGTERM to the group and every recorded descendant,
 * SIGKILL after 10 s).  Targets:
 *   bin/kraken run -noshell ...      the Erlang node; the engine (kraken_engine) is measured
 *   priv/kraken_engine --standalone --tcp_server_port 0 [--redis_port 0]
 *                                    the engine alone; it prints `listening <port>` and, when it
 *                                    has the Redis protocol, `listening redis <port>`
 *   redis-server --port P --save '' --appendonly no
 *   nats-server -p P -a 127.0.0.1
 *   the null responders              (null.c)
 * Peers that cannot run here are skipped with the reason (target_t.skip), not fatal: a missing
 * redis-server or nats-server, an engine without a Redis port, an engine that answers
 * `set push` with an error ("not supported by this engine").
 * A target is restarted for every run, so that no run inherits another's state.
 */
#include "kb.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

target_t *g_targets;
int g_ntargets;
static char g_srv_log[PATH_MAX];
static int g_epmd_before = -1;

int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("cannot find a free port");
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    close(fd);
    return ntohs(sa.sin_port);
}

/* 1 if 127.0.0.1:port accepts a connection within ms; then sends bye (if any) and closes */
int try_connect(int port, int ms, const char *bye)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) ok = 1;
    else if (errno == EINPROGRESS) {
        struct pollfd pf = { fd, POLLOUT, 0 };
        if (poll(&pf, 1, ms) == 1) {
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
            ok = (err == 0);
        }
    }
    if (ok && bye) { /* be polite */
        ssize_t w = send(fd, bye, strlen(bye), MSG_NOSIGNAL);
        (void)w;
    }
    close(fd);
    return ok;
}

static void print_log_tail(void)
{
    FILE *f = fopen(g_srv_log, "r");
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, sz > 4000 ? sz - 4000 : 0, SEEK_SET);
    char b[4001];
    size_t n = fread(b, 1, 4000, f);
    b[n] = 0;
    fclose(f);
    fprintf(stderr, "---- tail of %s ----\n%s\n----\n", g_srv_log, b);
}

const char *find_kraken(void)
{
    static char path[PATH_MAX];
    if (O.kraken) return O.kraken;
    if (access("bin/kraken", X_OK) == 0) return "bin/kraken";
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        snprintf(path, sizeof path, "%s/../bin/kraken", dirname(exe));
        if (access(path, X_OK) == 0) return path;
    }
    return NULL;
}

/* a process named kraken_engine in the tree rooted at root, 0 if none */
pid_t find_engine(pid_t root)
{
    pid_t eng = 0;
    pinfo_t *t;
    int n = proc_tree(root, &t);
    for (int i = 0; i < n && !eng; i++) {
        char exe[PATH_MAX], lp[64];
        snprintf(lp, sizeof lp, "/proc/%d/exe", (int)t[i].pid);
        ssize_t el = readlink(lp, exe, sizeof exe - 1);
        exe[el > 0 ? el : 0] = 0;
        const char *b = strrchr(exe, '/');
        if (t[i].state != 'Z' && (!strcmp(t[i].comm, "kraken_engine") || (b && !strcmp(b + 1, "kraken_engine"))))
            eng = t[i].pid;
    }
    free(t);
    return eng;
}

/* SIGTERM the process group of pid and every descendant; SIGKILL what is left after 10 s */
void stop_proc(pid_t pid)
{
    pinfo_t *t;
    int n = proc_tree(pid, &t);
    kill(-pid, SIGTERM);
    kill(pid, SIGTERM);
    for (int i = 0; i < n; i++)
        if (t[i].pid != pid && pid_alive(t[i].pid, t[i].start)) kill(t[i].pid, SIGTERM);
    int64_t dl = now_ns() + 10 * NS_PER_S;
    int reaped = 0;
    for (;;) {
        if (!reaped && waitpid(pid, NULL, WNOHANG) == pid) reaped = 1;
        int alive = !reaped;
        for (int i = 0; i < n; i++)
            if (t[i].pid != pid && pid_alive(t[i].pid, t[i].start)) alive = 1;
        if (!alive) break;
        if (now_ns() > dl) {
            warnx_("pid %d did not stop within 10 s of SIGTERM; sending SIGKILL", (int)pid);
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            for (int i = 0; i < n; i++)
                if (pid_alive(t[i].pid, t[i].start)) kill(t[i].pid, SIGKILL);
            if (!reaped) waitpid(pid, NULL, 0);
            sleep_ms(200);
            break;
        }
        sleep_ms(20);
    }
    free(t);
}

void stop_target(target_t *tg)
{
    if (tg->outfd > 0) {
        close(tg->outfd);
        tg->outfd = 0;
    }
    if (!tg->proc) return;
    stop_proc(tg->proc);
    tg->proc = 0;
    if (tg->kind == SK_KRAKEN) {
        /* epmd: only if the node started it (none before) and no node is registered any more
           (plain `epmd -kill` refuses while nodes are registered) */
        if (g_epmd_before == 0 && any_process_named("epmd")) {
            if (system("epmd -kill >/dev/null 2>&1") != 0 && g_verbose) warnx_("epmd -kill failed");
        }
    }
}

/* fork + exec argv in its own process group, stdin /dev/null, stdout+stderr to g_srv_log
   (stdout to *out_pipe instead when out_pipe is given: its read end) */
static pid_t spawn(const char *dir, char *const argv[], const char *env_name, const char *env_val, int *out_pipe)
{
    int pfd[2] = { -1, -1 };
    if (out_pipe && pipe2(pfd, O_CLOEXEC) < 0) die("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        bench_pin(BENCH_CPU_SERVER);
        int in = open("/dev/null", O_RDONLY);
        int out = open(g_srv_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in >= 0) dup2(in, 0);
        if (out >= 0) {
            dup2(out, 1);
            dup2(out, 2);
        }
        if (out_pipe) dup2(pfd[1], 1);
        if (dir && chdir(dir) < 0) _exit(126);
        if (env_name) setenv(env_name, env_val, 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    setpgid(pid, pid);
    if (out_pipe) {
        close(pfd[1]);
        *out_pipe = pfd[0];
    }
    return pid;
}

/* wait until 127.0.0.1:port accepts connections; dies (after stopping pid) if it never does */
static void wait_accepting(pid_t pid, int port, const char *what, const char *bye)
{
    int64_t dl = now_ns() + (int64_t)O.startup_timeout * NS_PER_S;
    for (;;) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            print_log_tail();
            die("%s exited during start-up (status %d)", what, WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
        }
        if (try_connect(port, 200, bye)) break;
        if (g_stop || now_ns() > dl) {
            print_log_tail();
            stop_proc(pid);
            die("%s did not accept connections on port %d within %d s", what, port, O.startup_timeout);
        }
        sleep_ms(100);
    }
}

static void start_kraken(target_t *tg)
{
    const char *kraken = find_kraken();
    if (!kraken) die("bin/kraken not found (run from the repository root, or pass --kraken PATH or --port P)");
    char rk[PATH_MAX], root[PATH_MAX];
    if (!realpath(kraken, rk)) die("realpath %s: %s", kraken, strerror(errno));
    snprintf(root, sizeof root, "%s", rk);
    char *d = dirname(root); /* .../bin */
    snprintf(root, sizeof root, "%s/..", d);
    int port = free_port();
    char node[64], ports[16];
    snprintf(node, sizeof node, "kraken_bench_%d_%04x", (int)getpid(), (unsigned)(splitmix(&g_rng) & 0xffff));
    snprintf(ports, sizeof ports, "%d", port);
    g_epmd_before = any_process_named("epmd");
    char *argv[] = { rk, "run", "-noshell", "-kraken", "tcp_server_port", ports, "-kraken", "max_tcp_clients", "20000",
                     "-kraken", "listen_ip", "\"127.0.0.1\"", NULL };
    pid_t pid = spawn(root, argv, "KRAKEN_NODE_NAME", node, NULL);
    tg->proc = pid;
    fprintf(stderr, "kraken_bench: started %s run -noshell on port %d (pid %d, node %s, log %s)\n", rk, port,
            (int)pid, node, g_srv_log);
    wait_accepting(pid, port, "server", "quit\r\n");
    /* the engine: a kraken_engine process descended from the one we started */
    pid_t eng = 0;
    int64_t edl = now_ns() + 15 * NS_PER_S;
    while (!(eng = find_engine(pid)) && !g_stop && now_ns() < edl) sleep_ms(100);
    if (!eng) {
        warnx_("no kraken_engine process found under pid %d; measuring the whole process tree's root", (int)pid);
        eng = pid;
    }
    tg->port = port;
    tg->mpid = eng;
    tg->root = pid;
    fprintf(stderr, "kraken_bench: server accepts connections; engine pid %d\n", (int)eng);
}

/* an executable: path if given, else name on PATH, else one of the usual places; NULL if none */
static const char *find_exe(const char *path, const char *name)
{
    static char buf[4][PATH_MAX];
    static int k;
    if (path) return access(path, X_OK) == 0 ? path : NULL;
    const char *env = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/usr/bin:/sbin:/usr/local/bin:/usr/local/sbin", env ? env : "");
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char *b = buf[k++ % 4];
        snprintf(b, PATH_MAX, "%s/%s", d, name);
        if (access(b, X_OK) == 0) return b;
    }
    return NULL;
}

/* priv/kraken_engine: --engine, ./priv/kraken_engine, <exe dir>/../priv/kraken_engine */
static const char *find_engine_exe(void)
{
    static char path[PATH_MAX];
    if (O.engine) return O.engine;
    if (access("priv/kraken_engine", X_OK) == 0) return "priv/kraken_engine";
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        snprintf(path, sizeof path, "%s/../priv/kraken_engine", dirname(exe));
        if (access(path, X_OK) == 0) return path;
    }
    return NULL;
}

/* a line from fd into b (without the newline) within ms; 0 on success, -1 on EOF or timeout */
static int read_line(int fd, char *b, size_t bn, int ms)
{
    size_t n = 0;
    int64_t dl = now_ns() + (int64_t)ms * NS_PER_MS;
    while (n + 1 < bn) {
        int left = (int)((dl - now_ns()) / NS_PER_MS);
        struct pollfd pf = { fd, POLLIN, 0 };
        if (left <= 0 || poll(&pf, 1, left) != 1) return -1;
        char ch;
        if (read(fd, &ch, 1) != 1) return -1;
        if (ch == '\n') break;
        b[n++] = ch;
    }
    b[n] = 0;
    return 0;
}

/* the standalone engine (with its Redis port when redis): 0, or -1 with tg->skip set */
static int start_engine(target_t *tg, int redis)
{
    const char *exe = find_engine_exe();
    if (!exe) {
        tg->skip = "priv/kraken_engine not found (make all, or --engine PATH)";
        return -1;
    }
    char *argv[16];
    int a = 0;
    argv[a++] = (char *)exe;
    argv[a++] = "--standalone";
    argv[a++] = "--tcp_server_port";
    argv[a++] = "0";
    argv[a++] = "--max_tcp_clients";
    argv[a++] = "20000";
    argv[a++] = "--listen_ip";
    argv[a++] = "127.0.0.1";
    if (redis) {
        argv[a++] = "--redis_port";
        argv[a++] = "0";
    }
    argv[a] = NULL;
    int fd;
    pid_t pid = spawn(NULL, argv, NULL, NULL, &fd);
    tg->proc = pid;
    tg->outfd = fd;
    char line[256];
    int kport = -1, rport = -1;
    if (read_line(fd, line, sizeof line, O.startup_timeout * 1000) == 0) sscanf(line, "listening %d", &kport);
    if (kport > 0 && redis && read_line(fd, line, sizeof line, 3000) == 0) sscanf(line, "listening redis %d", &rport);
    if (kport <= 0 || (redis && rport <= 0)) {
        stop_target(tg);
        if (!redis) {
            print_log_tail();
            die("%s --standalone did not print \"listening <port>\"", exe);
        }
        static char why[512];
        char last[256] = "";
        FILE *f = fopen(g_srv_log, "r");
        if (f) {
            char l[256];
            while (fgets(l, sizeof l, f))
                if (l[0] != '\n') snprintf(last, sizeof last, "%s", l);
            fclose(f);
        }
        last[strcspn(last, "\r\n")] = 0;
        snprintf(why, sizeof why, "not supported by this engine (--redis_port 0: no \"listening redis <port>\"%s%s%s)",
                 last[0] ? "; it said \"" : "", last, last[0] ? "\"" : "");
        tg->skip = why;
        return -1;
    }
    tg->port = redis ? rport : kport;
    tg->mpid = pid;
    tg->root = 0;
    if (g_verbose) warnx_("started %s --standalone (pid %d), port %d", exe, (int)pid, tg->port);
    return 0;
}

/* does this engine take `set push 0 0 2 on`?  NULL if so, else why not */
static const char *probe_push(int port)
{
    static char why[256];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = { 3, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char reply[200] = "";
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        send(fd, "set push 0 0 2\r\non\r\n", 20, MSG_NOSIGNAL) == 20) {
        size_t n = 0;
        while (n < sizeof reply - 1 && !memchr(reply, '\n', n)) {
            ssize_t r = recv(fd, reply + n, sizeof reply - 1 - n, 0);
            if (r <= 0) break;
            n += (size_t)r;
            reply[n] = 0;
        }
    }
    if (fd >= 0) close(fd);
    if (!strcmp(reply, "STORED\r\n")) return NULL;
    reply[strcspn(reply, "\r\n")] = 0;
    snprintf(why, sizeof why, "not supported by this engine (set push on answered \"%s\")",
             reply[0] ? reply : "nothing");
    return why;
}

static void start_peer(target_t *tg, const char *exe, char *const *argv, const char *bye)
{
    pid_t pid = spawn(NULL, argv, NULL, NULL, NULL);
    tg->proc = pid;
    wait_accepting(pid, tg->port, exe, bye);
    tg->mpid = pid;
    tg->root = 0;
    if (g_verbose) warnx_("started %s (pid %d) on port %d", exe, (int)pid, tg->port);
}

void start_target(target_t *tg)
{
    if (!g_srv_log[0]) {
        if (O.server_log) snprintf(g_srv_log, sizeof g_srv_log, "%s", O.server_log);
        else snprintf(g_srv_log, sizeof g_srv_log, "/tmp/kraken_bench_%d.log", (int)getpid());
    }
    stop_target(tg);
    switch (tg->kind) {
    case SK_NULL:
    case SK_NULL_RESP:
    case SK_NULL_ROUTE:
        tg->proc = tg->mpid = start_null(tg->kind, &tg->port);
        tg->root = 0;
        break;
    case SK_KRAKEN:
        start_kraken(tg);
        break;
    case SK_ENGINE:
        if (start_engine(tg, 0) == 0 && tg->proto->push && (tg->skip = probe_push(tg->port))) stop_target(tg);
        break;
    case SK_ENGINE_REDIS:
        start_engine(tg, 1);
        break;
    case SK_REDIS: {
        const char *exe = find_exe(O.redis_server, "redis-server");
        if (!exe) {
            tg->skip = "redis-server not installed (apt-get install redis-server)";
            break;
        }
        char ports[16];
        tg->port = free_port();
        snprintf(ports, sizeof ports, "%d", tg->port);
        char *argv[] = { (char *)exe, "--port", ports, "--save", "", "--appendonly", "no", NULL };
        start_peer(tg, exe, argv, "QUIT\r\n");
        break;
    }
    case SK_NATS: {
        const char *exe = find_exe(O.nats_server, "nats-server");
        if (!exe) {
            tg->skip = "nats-server not installed (apt-get install nats-server)";
            break;
        }
        char ports[16];
        tg->port = free_port();
        snprintf(ports, sizeof ports, "%d", tg->port);
        char *argv[] = { (char *)exe, "-p", ports, "-a", "127.0.0.1", NULL };
        start_peer(tg, exe, argv, NULL);
        break;
    }
    default:
        break;
    }
}

void cleanup(void)
{
    for (int t = 0; t < g_ntargets; t++) stop_target(&g_targets[t]);
}
