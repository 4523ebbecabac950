/*
 * main.c - kraken_bench's options and the order of its runs.
 *
 * kraken_bench: load generator and benchmark for the Kraken pubsub server (issues 4 and 10).
 * Runs four workloads (latency, fanout, churn, idle) against Kraken over its memcached-shaped
 * text protocol, and with --null against a null responder too (%null).  With --peers it then
 * runs the latency and fanout workloads with push subscribers against Kraken's Redis port,
 * redis-server, nats-server and Kraken push clients, beside Kraken polling clients and the null
 * responders, and prints one comparison table.  Every target is (re)started for every run;
 * workload by workload, the null run comes right before the servers compared with it.
 * Single-threaded epoll client; every phase has a deadline, so the program always ends.
 * Build: make bench/kraken_bench (gcc -O2 -Wall -Wextra -Werror -o bench/kraken_bench bench/[a-z]*.c -lm)
 */
#include "kb.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

opts_t O = {
    .duration = 5.0,
    .depth = 8,
    .max_connecting = 200,
    .setup_timeout = 90,
    .startup_timeout = 60,
    .enabled = { 1, 1, 1, 1 },
    .reps = 1,
    .cluster_load = 0.5,
};

/* the push comparison (issue 10 item 7), in this order: each null responder right before the
   servers compared with it, Kraken's Redis port right before redis-server */
static const target_t peers[] = {
    { .label = "null-resp", .kind = SK_NULL_RESP, .proto = &proto_resp, .null_ref = -1 },
    { .label = "null-route", .kind = SK_NULL_ROUTE, .proto = &proto_resp, .null_ref = -1 },
    { .label = "kraken-redis", .kind = SK_ENGINE_REDIS, .proto = &proto_resp, .null_ref = 1 },
    { .label = "redis", .kind = SK_REDIS, .proto = &proto_resp, .null_ref = 1 },
    { .label = "nats", .kind = SK_NATS, .proto = &proto_nats, .null_ref = -1 },
    { .label = "null-push", .kind = SK_NULL, .proto = &proto_kraken_push, .null_ref = -1 },
    { .label = "kraken-push", .kind = SK_ENGINE, .proto = &proto_kraken_push, .null_ref = 5 },
    { .label = "null-poll", .kind = SK_NULL, .proto = &proto_kraken_poll, .null_ref = -1 },
    { .label = "kraken-poll", .kind = SK_ENGINE, .proto = &proto_kraken_poll, .null_ref = 7 },
};
#define NPEERS (int)(sizeof peers / sizeof peers[0])

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* ------------------------------------------------------------------ options */

typedef struct {
    const char *name;
    char type; /* i int, d double */
    void *p;
} opt_t;

static opt_t opts[] = {
    { "duration", 'd', &O.duration },
    { "depth", 'i', &O.depth },
    { "reps", 'i', &O.reps },
    { "rate", 'd', &O.rate },
    { "max-connecting", 'i', &O.max_connecting },
    { "setup-timeout", 'i', &O.setup_timeout },
    { "startup-timeout", 'i', &O.startup_timeout },
    { "port", 'i', &O.port },
    { "cluster-load", 'd', &O.cluster_load },
    { "cluster-rate", 'd', &O.cluster_rate },
    { "lat-subs", 'i', &P[W_LAT].subs },
    { "lat-pubs", 'i', &P[W_LAT].pubs },
    { "lat-topics-per-sub", 'i', &P[W_LAT].tps },
    { "lat-topic-space", 'i', &P[W_LAT].space },
    { "lat-batch", 'i', &P[W_LAT].batch },
    { "lat-topics-per-msg", 'i', &P[W_LAT].tpm },
    { "lat-payload", 'i', &P[W_LAT].payload },
    { "lat-poll-ms", 'i', &P[W_LAT].poll_ms },
    { "lat-duration", 'd', &P[W_LAT].duration },
    { "fan-subs", 'i', &P[W_FAN].subs },
    { "fan-pubs", 'i', &P[W_FAN].pubs },
    { "fan-topics-per-sub", 'i', &P[W_FAN].tps },
    { "fan-topic-space", 'i', &P[W_FAN].space },
    { "fan-batch", 'i', &P[W_FAN].batch },
    { "fan-topics-per-msg", 'i', &P[W_FAN].tpm },
    { "fan-payload", 'i', &P[W_FAN].payload },
    { "fan-poll-ms", 'i', &P[W_FAN].poll_ms },
    { "fan-duration", 'd', &P[W_FAN].duration },
    { "churn-clients", 'i', &P[W_CHURN].subs },
    { "churn-topics-per-req", 'i', &P[W_CHURN].tps },
    { "churn-topic-space", 'i', &P[W_CHURN].space },
    { "churn-duration", 'd', &P[W_CHURN].duration },
    { "idle-conns", 'i', &P[W_IDLE].subs },
    { "idle-topics-per-conn", 'i', &P[W_IDLE].tps },
    { "idle-topic-space", 'i', &P[W_IDLE].space },
    { "idle-poll-ms", 'i', &P[W_IDLE].poll_ms },
    { "idle-duration", 'd', &P[W_IDLE].duration },
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kraken_bench [options]\n"
            "  (no --port)            start bin/kraken run -noshell on a free port, measure it, stop it\n"
            "  --port P               measure an already running server on 127.0.0.1:P\n"
            "  --pid PID              with --port: the process whose /proc figures (RSS, CPU) are reported\n"
            "  --kraken PATH          the bin/kraken script (default: ./bin/kraken, then <exe dir>/../bin/kraken)\n"
            "  --server-log FILE      server stdout/stderr (default /tmp/kraken_bench_<pid>.log)\n"
            "  --null                 also run every workload against the built-in null responder and print\n"
            "                         the server's rate as a percentage of it\n"
            "  --null-only            only the null responder (tests the generator itself)\n"
            "  --workloads LIST       comma list of latency,fanout,churn,idle (default all)\n"
            "  --duration S           measured phase per workload, seconds (default 5)\n"
            "  --depth N              requests in flight per publisher / churn client (default 8, max %d)\n"
            "  --rate R               publish requests/s per publisher (default 0 = as fast as the depth allows)\n"
            "  --pubs-subscribe       publishers also subscribe (like subscribers) and poll: checks no self-delivery\n"
            "  --max-connecting N     connection attempts in flight during setup (default 200)\n"
            "  --setup-timeout S      bound on connecting+subscribing per workload (default 90)\n"
            "  --startup-timeout S    bound on the server's start (default 60)\n"
            "  --seed N               random seed (default: time based)\n"
            "  --reps N               run every workload N times (each with its null run), print every run\n"
            "                         and the median with its range (default 1, max %d)\n"
            "  --csv                  machine-readable output instead of the table\n"
            "  --peers                then the push comparison: latency and fanout with push subscribers on\n"
            "                         Kraken's Redis port, redis-server, nats-server, Kraken push clients, and\n"
            "                         Kraken polling clients (standalone engine); with --null also against the\n"
            "                         RESP and Kraken null responders; one table (bench/README.md)\n"
            "  --peers-only           only the push comparison\n"
            "  --peer-targets LIST    which of null-resp,null-route,kraken-redis,redis,nats,null-push,kraken-push,null-poll,\n"
            "                         kraken-poll (default all; null-* only with --null); implies --peers\n"
            "  --cluster              then the cluster benchmark: 1 core + 2 proxies started by bin/kraken start;\n"
            "                         latency (and fanout) with push subscribers on the core, then on the proxies\n"
            "                         (publishers on the core), saturated and at --cluster-load of the direct\n"
            "                         saturation rate (bench/README.md); --cluster-only: only that\n"
            "  --cluster-load F       fraction of the direct saturation rate for the hop target (default 0.5)\n"
            "  --cluster-pubs-on-proxy  the publishers on proxy p1 instead of the core (they wait for the core's\n"
            "                         confirmations: acknowledged publishes); `on core' then has the subscribers on the core\n"
            "  --cluster-rate R       the reduced-rate runs at R msg/s instead (the same offered load for two engines)\n"
            "  --cluster-engine PATH  the cluster nodes' engine (engine_executable; e.g. an older build to compare)\n"
            "  --engine PATH          priv/kraken_engine for the standalone targets (default ./priv/kraken_engine,\n"
            "                         then <exe dir>/../priv/kraken_engine)\n"
            "  --redis-server PATH, --nats-server PATH   (default: found on PATH, /usr/sbin, /usr/bin)\n"
            "  --no-pin               do not pin the generator to CPU 0 and the server to CPU 1\n"
            "  -v, --verbose          progress and every error on stderr\n"
            "  latency: --lat-subs 50 --lat-pubs 5 --lat-topics-per-sub 20 --lat-topic-space 2000\n"
            "           --lat-batch 10 --lat-topics-per-msg 2 --lat-payload 64 --lat-poll-ms 0 (0 = continuously)\n"
            "  fanout:  --fan-subs 200 --fan-pubs 10 --fan-topics-per-sub 50 --fan-topic-space 500\n"
            "           --fan-batch 10 --fan-topics-per-msg 1 --fan-payload 64 --fan-poll-ms 20\n"
            "  churn:   --churn-clients 50 --churn-topics-per-req 100 --churn-topic-space 2000\n"
            "  idle:    --idle-conns 15000 --idle-topics-per-conn 20 --idle-topic-space 100000 --idle-poll-ms 2000\n"
            "  --lat-duration/--fan-duration/--churn-duration/--idle-duration S override --duration\n",
            MAX_DEPTH, MAX_REPS);
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        char *a = argv[i], *val = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (strncmp(a, "--", 2) && strcmp(a, "-v")) die("unknown argument '%s' (see --help)", a);
        char name[64];
        const char *nm = a[1] == '-' ? a + 2 : a + 1;
        char *eq = strchr(nm, '=');
        size_t nl = eq ? (size_t)(eq - nm) : strlen(nm);
        if (nl >= sizeof name) die("unknown option '%s'", a);
        memcpy(name, nm, nl);
        name[nl] = 0;
        if (eq) val = eq + 1;
        /* flags */
        if (!strcmp(name, "null")) { O.null_cmp = 1; continue; }
        if (!strcmp(name, "null-only")) { O.null_only = 1; continue; }
        if (!strcmp(name, "peers")) { O.peers = 1; continue; }
        if (!strcmp(name, "peers-only")) { O.peers = O.peers_only = 1; continue; }
        if (!strcmp(name, "csv")) { O.csv = 1; continue; }
        if (!strcmp(name, "no-pin")) { O.no_pin = 1; continue; }
        if (!strcmp(name, "cluster")) { O.cluster = 1; continue; }
        if (!strcmp(name, "cluster-only")) { O.cluster = 2; continue; }
        if (!strcmp(name, "cluster-pubs-on-proxy")) { O.cluster_pub_proxy = 1; continue; }
        if (!strcmp(name, "pubs-subscribe")) { O.pubs_subscribe = 1; continue; }
        if (!strcmp(name, "v") || !strcmp(name, "verbose")) { g_verbose = 1; continue; }
        if (!val) {
            if (i + 1 >= argc) die("option --%s needs a value", name);
            val = argv[++i];
        }
        if (!strcmp(name, "workloads")) {
            for (int w = 0; w < W_N; w++) O.enabled[w] = 0;
            char *dup = strdup(val), *save = NULL;
            for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                int found = 0;
                for (int w = 0; w < W_N; w++)
                    if (!strcmp(tok, wl_names[w])) O.enabled[w] = found = 1;
                if (!strcmp(tok, "all"))
                    for (int w = 0; w < W_N; w++) O.enabled[w] = found = 1;
                if (!found) die("unknown workload '%s' (latency, fanout, churn, idle)", tok);
            }
            free(dup);
            continue;
        }
        if (!strcmp(name, "kraken")) { O.kraken = val; continue; }
        if (!strcmp(name, "engine")) { O.engine = val; continue; }
        if (!strcmp(name, "cluster-engine")) { O.cluster_engine = val; continue; }
        if (!strcmp(name, "redis-server")) { O.redis_server = val; continue; }
        if (!strcmp(name, "nats-server")) { O.nats_server = val; continue; }
        if (!strcmp(name, "peer-targets")) {
            O.peer_mask = 0;
            char *dup = strdup(val), *save = NULL;
            for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                int found = 0;
                for (int k = 0; k < NPEERS; k++)
                    if (!strcmp(tok, peers[k].label) || !strcmp(tok, "all")) O.peer_mask |= 1u << k, found = 1;
                if (!found) die("unknown peer target '%s' (see --help)", tok);
            }
            free(dup);
            O.peers = 1;
            continue;
        }
        if (!strcmp(name, "server-log")) { O.server_log = val; continue; }
        if (!strcmp(name, "pid")) {
            O.pid = (pid_t)atoi(val);
            continue;
        }
        if (!strcmp(name, "seed")) {
            O.seed = strtoull(val, NULL, 0);
            continue;
        }
        int found = 0;
        for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
            if (strcmp(name, opts[k].name)) continue;
            char *end;
            errno = 0;
            if (opts[k].type == 'i') {
                long v = strtol(val, &end, 10);
                if (*end || errno || v < 0 || v > INT_MAX) die("bad value '%s' for --%s", val, name);
                *(int *)opts[k].p = (int)v;
            } else {
                double v = strtod(val, &end);
                if (*end || errno || !(v >= 0) || v > 1e7) die("bad value '%s' for --%s", val, name);
                *(double *)opts[k].p = v;
            }
            found = 1;
        }
        if (!found) die("unknown option '--%s' (see --help)", name);
    }
    if (O.depth < 1 || O.depth > MAX_DEPTH) die("--depth must be 1..%d", MAX_DEPTH);
    if (O.reps < 1 || O.reps > MAX_REPS) die("--reps must be 1..%d", MAX_REPS);
    if (O.reps > 1 && O.csv) die("--csv prints one run per workload: leave out --reps (bench/sweep.sh has REPS)");
    if (O.duration <= 0) die("--duration must be > 0");
    if (O.max_connecting < 1) O.max_connecting = 1;
    if (O.pid && !O.port) die("--pid needs --port");
    if (O.peers && !O.peer_mask) O.peer_mask = ~0u;
    if (O.cluster && O.csv) die("--cluster prints its own table: leave out --csv");
    if (O.cluster && (O.port || O.peers_only)) die("--cluster starts its own nodes: leave out --port and --peers-only");
    if (O.cluster && !(O.cluster_load > 0 && O.cluster_load <= 1)) die("--cluster-load must be in (0, 1]");
    if (O.cluster == 2 && !O.enabled[W_LAT] && !O.enabled[W_FAN])
        die("--cluster runs the latency and fanout workloads: --workloads has neither");
    if (O.peers && (O.enabled[W_LAT] || O.enabled[W_FAN]) == 0 && O.peers_only)
        die("--peers runs the latency and fanout workloads: --workloads has neither");
    for (int w = 0; w < W_N; w++) {
        wparams_t *p = &P[w];
        if (!O.enabled[w]) continue;
        if (p->space < 1) die("%s: topic space must be >= 1", wl_names[w]);
        if (p->tps > p->space) die("%s: topics per subscriber/request (%d) > topic space (%d)", wl_names[w], p->tps, p->space);
        if (w == W_LAT || w == W_FAN) {
            if (p->pubs < 1 || p->pubs > 65535) die("%s: publishers must be 1..65535", wl_names[w]);
            if (p->batch < 1) die("%s: batch must be >= 1", wl_names[w]);
            if (p->tpm < 1 || p->tpm > MAX_TPM || p->tpm > p->space)
                die("%s: topics per message must be 1..%d and <= topic space", wl_names[w], MAX_TPM);
            if (p->payload < STAMP_LEN) {
                warnx_("%s: payload raised to %d bytes (timestamp + id)", wl_names[w], STAMP_LEN);
                p->payload = STAMP_LEN;
            }
        }
        if (w == W_CHURN && p->tps < 1) die("churn: topics per request must be >= 1");
    }
}

/* ------------------------------------------------------------------ main */

static void print_header(const target_t *tgs, int nt, const int *enabled, int push)
{
    printf("kraken_bench: duration %.1f s, depth %d, rate %s", O.duration, O.depth, O.rate > 0 ? "" : "unlimited");
    if (O.rate > 0) printf("%.0f req/s per publisher", O.rate);
    printf(", targets:");
    for (int t = 0; t < nt; t++) {
        if (tgs[t].port) printf(" %s=127.0.0.1:%d(pid %d)", tgs[t].label, tgs[t].port, (int)tgs[t].mpid);
        else printf(" %s", tgs[t].label);
    }
    printf("\n");
    for (int w = 0; w < W_N; w++) {
        if (!enabled[w]) continue;
        wparams_t *p = &P[w];
        if (w == W_LAT || w == W_FAN) {
            printf("  %-8s %d subscribers x %d topics of %d; %d publishers, batch %d, %d topic(s)/msg, %d-byte "
                   "payload; ",
                   wl_names[w], p->subs, p->tps, p->space, p->pubs, p->batch, p->tpm, p->payload);
            if (push) printf("push subscribers (kraken-poll: ");
            if (p->poll_ms) printf("poll every %d ms", p->poll_ms);
            else printf("poll continuously");
            printf("%s\n", push ? ")" : "");
        }
        if (w == W_CHURN)
            printf("  %-8s %d clients alternately subscribe/unsubscribe %d topics of %d per request\n", wl_names[w],
                   p->subs, p->tps, p->space);
        if (w == W_IDLE)
            printf("  %-8s %d connections x %d topics of %d, each polling every %d ms\n", wl_names[w], p->subs,
                   p->tps, p->space, p->poll_ms);
    }
}

/* every enabled workload, --reps times, against every target in order.  lazy: each target is
   started right before its run and stopped right after it (the peers: one server at a time);
   otherwise all were started before and each is restarted before its every run but the first. */
static void run_section(target_t *tgs, int nt, const int *enabled, int lazy, result_t res[][MAX_TARGETS][W_N])
{
    static const int order[W_N] = { W_LAT, W_FAN, W_CHURN, W_IDLE };
    int started[MAX_TARGETS] = { 0 };
    for (int k = 0; k < W_N && !g_stop; k++) {
        int w = order[k];
        if (!enabled[w]) continue;
        for (int rp = 0; rp < O.reps && !g_stop; rp++)
            for (int t = 0; t < nt && !g_stop; t++) {
                if (tgs[t].skip) continue;
                if (lazy || started[t]++) start_target(&tgs[t]);
                if (tgs[t].skip) {
                    fprintf(stderr, "kraken_bench: %s: %s\n", tgs[t].label, tgs[t].skip);
                    continue;
                }
                fprintf(stderr, "kraken_bench: running %s against %s (run %d of %d)...\n", wl_names[w], tgs[t].label,
                        rp + 1, O.reps);
                run_workload(w, &tgs[t], &res[rp][t][w]);
                if (lazy) stop_target(&tgs[t]);
            }
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    bench_pin(BENCH_CPU_GEN);
    hexval_init();
    g_clk_tck = sysconf(_SC_CLK_TCK);
    g_rng = O.seed ? O.seed : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if (O.enabled[W_IDLE] && (rlim_t)P[W_IDLE].subs + 64 > rl.rlim_cur) {
        warnx_("idle: %d connections exceed the open-file limit %llu; using %llu", P[W_IDLE].subs,
               (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_cur - 64);
        P[W_IDLE].subs = (int)rl.rlim_cur - 64;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    atexit(cleanup);

    static target_t tgs[MAX_TARGETS];
    static result_t res[MAX_REPS][MAX_TARGETS][W_N];
    int nt = 0;
    if (!O.peers_only && O.cluster != 2) {
        if (O.null_cmp || O.null_only)
            tgs[nt++] = (target_t){ .label = "null", .kind = SK_NULL, .proto = &proto_kraken_poll, .null_ref = -1 };
        if (!O.null_only) {
            tgs[nt] = (target_t){ .label = "kraken", .kind = SK_KRAKEN, .proto = &proto_kraken_poll,
                                  .null_ref = nt > 0 ? 0 : -1 };
            if (O.port) {
                tgs[nt].kind = SK_NONE;
                tgs[nt].port = O.port;
                tgs[nt].mpid = O.pid;
                if (!try_connect(O.port, 2000, "quit\r\n")) die("nothing accepts connections on 127.0.0.1:%d", O.port);
            }
            nt++;
        }
        g_targets = tgs;
        g_ntargets = nt;
        for (int t = 0; t < nt; t++) start_target(&tgs[t]);
        print_header(tgs, nt, O.enabled, 0);
        /* Workload by workload, the null responder then the real server, so that the two runs
           compared in %null are adjacent in time.  A server started here (and the null responder)
           is restarted for every run: none inherits another's heap, retained entries or topics,
           and the idle workload's RSS baseline is a fresh server's.  Idle runs last: closing its
           15,000 connections leaves as many sockets in TIME_WAIT for a minute, which slowed a
           latency run that followed it by about 7%. */
        run_section(tgs, nt, O.enabled, 0, res);
        cleanup();
        if (O.csv) {
            print_csv(res[0], nt, tgs);
        } else {
            for (int rp = 0; rp < O.reps; rp++) {
                if (O.reps > 1) printf("\nrun %d of %d:\n", rp + 1, O.reps);
                print_table(res[rp], nt, tgs, O.null_cmp);
            }
            if (O.reps > 1) print_summary(res, nt, tgs);
        }
    }
    if (O.peers && !g_stop) {
        static target_t ptgs[MAX_TARGETS];
        static result_t pres[MAX_REPS][MAX_TARGETS][W_N];
        int np = 0, map[NPEERS];
        for (int k = 0; k < NPEERS; k++) {
            map[k] = -1;
            if (!(O.peer_mask & (1u << k))) continue;
            if ((peers[k].kind == SK_NULL || peers[k].kind == SK_NULL_RESP || peers[k].kind == SK_NULL_ROUTE) &&
                !O.null_cmp)
                continue;
            map[k] = np;
            ptgs[np] = peers[k];
            ptgs[np].null_ref = peers[k].null_ref >= 0 ? map[peers[k].null_ref] : -1;
            np++;
        }
        int en[W_N] = { O.enabled[W_LAT], O.enabled[W_FAN], 0, 0 };
        if (O.pubs_subscribe) {
            warnx_("--pubs-subscribe does not apply to the push comparison (a RESP subscriber cannot publish)");
            O.pubs_subscribe = 0;
        }
        g_targets = ptgs;
        g_ntargets = np;
        if (!O.csv) printf("\npush comparison (issue 10): push subscribers on each target, same generator\n");
        print_header(ptgs, np, en, 1);
        run_section(ptgs, np, en, 1, pres);
        cleanup();
        if (O.csv) {
            print_csv(pres[0], np, ptgs);
        } else {
            if (g_verbose)
                for (int rp = 0; rp < O.reps; rp++) {
                    printf("\nrun %d of %d:\n", rp + 1, O.reps);
                    print_table(pres[rp], np, ptgs, O.null_cmp);
                }
            print_peer_table(pres, np, ptgs);
        }
    }
    if (O.cluster && !g_stop) {
        bench_pin(-1); /* the three nodes and the generator share the CPUs */
        run_cluster();
    }
    if (g_stop) {
        fprintf(stderr, "kraken_bench: interrupted\n");
        return 130;
    }
    return 0;
}
