/*
 * kb.h - what the files of kraken_bench share: limits, the connection and result types, the
 * run state G, the options O and workload parameters P, the protocol driver interface, and the
 * small helpers on the generator's hot path (kept inline here: the generator is in the measured
 * path, and the build has no link-time optimisation).
 *
 * Files (each starts with a comment saying what it owns):
 *   main.c               options, the order of the runs, main()
 *   workload.c           the four workloads: connections, publishers, pollers, drain, results
 *   loop.c               the epoll loop: connections, timers, reading, writing
 *   proto_kraken_poll.c  Kraken text protocol (codec shared with push) and the polling driver
 *   proto_kraken_push.c  Kraken push mode driver ("set push on"; the server writes VALUE blocks)
 *   proto_resp.c         Redis RESP2 Pub/Sub driver (SUBSCRIBE / PUBLISH / message)
 *   proto_nats.c         NATS text protocol driver (CONNECT / SUB / PUB / MSG / PING-PONG)
 *   null.c               the null responders (Kraken text and RESP), forked children
 *   servers.c            starting, probing and stopping the servers measured
 *   proc.c               /proc sampling: CPU ticks, RSS, process trees
 *   stats.c              latency histogram, percentiles, medians
 *   report.c             the tables, the summaries, CSV
 *   cluster.c            the cluster benchmark (--cluster): its runs and its table
 *   cluster_nodes.c      its nodes (1 core + 2 proxies by bin/kraken start), probe, /proc/net/tcp
 *   util.c               errors, allocation, clocks, random numbers
 */
#ifndef KB_H
#define KB_H

#define _GNU_SOURCE
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#define NS_PER_S 1000000000LL
#define NS_PER_MS 1000000LL
#define KQ 256          /* max requests in flight per connection (kinds ring) */
#define MAX_DEPTH 128
#define MAX_TPM 64      /* max topics per published message */
#define STAMP_LEN 32    /* bytes of the payload used for timestamp + id */
#define TBITS_MAX 65536 /* topic spaces up to this get a bitmap per subscriber */
#define MAX_REPS 9
#define MAX_TARGETS 12
#define MAX_SUBPORTS 4  /* subscribers spread over this many servers (the cluster's proxies) */
#define MAX_XPIDS 4     /* further processes measured beside the target's (the cluster's nodes) */

extern volatile sig_atomic_t g_stop;
extern int g_verbose;

/* ------------------------------------------------------------------ util.c */

void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *xmalloc(size_t n);
void *xcalloc(size_t a, size_t b);
void *xrealloc(void *p, size_t n);
void sleep_ms(int ms);
uint32_t rnd(uint32_t n);
int cmp_int(const void *a, const void *b);
extern uint64_t g_rng;

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static inline uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t mix64(uint64_t x)
{
    return splitmix(&x);
}

/* byte buffers: live data is p[off, len) */
typedef struct {
    char *p;
    size_t off, len, cap;
} buf_t;

void buf_grow(buf_t *b, size_t extra);
void buf_free(buf_t *b);

static inline void buf_reserve(buf_t *b, size_t extra)
{
    if (b->off == b->len) b->off = b->len = 0;
    if (b->len + extra <= b->cap) return;
    buf_grow(b, extra);
}

static inline void buf_append(buf_t *b, const void *d, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

/* decimal digits of v at out; returns their count (printf was a tenth of the generator's time) */
static inline size_t fmt_u(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

extern const char hexd[];
extern int8_t hexval[256]; /* -1 where not a lowercase hex digit; hexval_init() fills it */
void hexval_init(void);

static inline void put_hex(char *p, uint64_t v, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        p[i] = hexd[v & 15];
        v >>= 4;
    }
}

static inline int get_hex(const char *p, int digits, uint64_t *v)
{
    uint64_t x = 0;
    int bad = 0;
    for (int i = 0; i < digits; i++) {
        int d = hexval[(unsigned char)p[i]];
        bad |= d;
        x = (x << 4) | (uint64_t)(d & 15);
    }
    *v = x;
    return bad < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ stats.c */

/* log-linear buckets: 32 sub-buckets per power of two (about 3% precision), values in ns */
#define HSUBBITS 5
#define HSUB (1 << HSUBBITS)
#define HBUCKETS (64 * HSUB)

typedef struct {
    uint64_t c[HBUCKETS];
    uint64_t n;
} hist_t;

static inline int hist_idx(uint64_t v)
{
    if (v < HSUB) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - HSUBBITS;
    return (shift + 1) * HSUB + (int)((v >> shift) & (HSUB - 1));
}

static inline void hist_add(hist_t *h, int64_t v)
{
    if (v < 0) v = 0;
    h->c[hist_idx((uint64_t)v)]++;
    h->n++;
}

double hist_pct(const hist_t *h, double p);
/* median, min and max of the non-NaN values among v[0..n) (v is reordered); 0 if there are none */
int median_range(double *v, int n, double *med, double *min, double *max);

/* ------------------------------------------------------------------ proc.c */

extern long g_clk_tck;

typedef struct {
    pid_t pid, ppid;
    char state;
    char comm[32];
    uint64_t ticks;
    long rss_pages;
    unsigned long long start;
} pinfo_t;

int proc_cpu_ticks(pid_t pid, uint64_t *ticks);
long proc_rss_kb(pid_t pid);
int read_pinfo(pid_t pid, pinfo_t *pi);
int proc_tree(pid_t root, pinfo_t **out);
void tree_sample(pid_t root, uint64_t *ticks, long *rss_kb);
int pid_alive(pid_t pid, unsigned long long start);
int any_process_named(const char *comm);
double rusage_s(void);

/* ------------------------------------------------------------------ workloads and options */

enum { W_LAT, W_FAN, W_CHURN, W_IDLE, W_N };
extern const char *wl_names[W_N];
extern const char wl_letter[W_N];

typedef struct {
    int subs;        /* subscribers / churn clients / idle connections */
    int pubs;        /* publishers (latency, fanout) */
    int tps;         /* topics per subscriber / per churn request / per idle connection */
    int space;       /* topic space */
    int batch;       /* messages per publish request */
    int tpm;         /* topics per message */
    int payload;     /* payload bytes */
    int poll_ms;     /* subscriber poll interval, 0 = continuously */
    double duration; /* seconds, 0 = use --duration */
} wparams_t;

extern wparams_t P[W_N];

typedef struct {
    double duration;
    int depth;
    double rate;          /* publish requests/s per publisher, 0 = closed loop */
    int pubs_subscribe;   /* publishers also subscribe and poll */
    int max_connecting;
    int setup_timeout;    /* s */
    int startup_timeout;  /* s */
    int csv;
    int null_cmp, null_only;
    int port;
    pid_t pid;
    const char *kraken;
    const char *server_log;
    int enabled[W_N];
    uint64_t seed;
    int reps;             /* runs of each workload (and of its null responder run) */
    int peers;            /* also run the push comparison (latency, fanout against the peers) */
    int peers_only;       /* only that */
    unsigned peer_mask;   /* which peer targets (bits of PT_*) */
    const char *engine;   /* priv/kraken_engine for the standalone targets */
    const char *redis_server, *nats_server;
    int cluster;          /* also run the cluster benchmark (cluster.c); 2: only that */
    double cluster_load;  /* fraction of the direct saturation rate the hop is compared at (0.5) */
    double cluster_rate;          /* --cluster-rate: msg/s of the reduced-rate runs instead of --cluster-load x sat */
    int cluster_pub_proxy;        /* --cluster-pubs-on-proxy: the publishers on proxy p1 (acknowledged publishes) */
    const char *cluster_engine;   /* --cluster-engine: the nodes' engine_executable (NULL: priv/kraken_engine) */
    int no_pin;           /* --no-pin: leave CPU placement to the scheduler */
} opts_t;
extern opts_t O;

/* With 2 CPUs or more (and no --no-pin): the generator runs on CPU 0 (BENCH_CPU_GEN), the
   server under test and the null responders on CPU 1 (BENCH_CPU_SERVER); -1: every CPU (the
   cluster benchmark: its three nodes share them); util.c */
enum { BENCH_CPU_GEN = 0, BENCH_CPU_SERVER = 1 };
void bench_pin(int cpu);

/* ------------------------------------------------------------------ protocol drivers */

/* request kinds (the kinds ring of a connection records what each pending reply answers) */
enum { K_NONE, K_SUB, K_UNSUB, K_PUB, K_GET, K_QUIT, K_PUSH };
enum { CS_NEW, CS_CONNECTING, CS_OPEN, CS_CLOSED };
enum { T_POLL, T_SEND, T_NTYPES };
enum { PH_SETUP, PH_RUN, PH_QUIESCE, PH_DRAIN, PH_TEARDOWN };

typedef struct conn {
    int fd, idx, state;
    int sub_id, pub_id, churn;
    int ready, failed, quit_sent;
    uint32_t evmask;
    buf_t rb, wb;
    uint8_t kq[KQ];
    int kh, kn;
    int need;             /* replies still due for the request at the head of kq (RESP) */
    uint32_t tgen[T_NTYPES];
    /* subscriber */
    int get_inflight, in_round;
    int64_t poll_ivl; /* ns; 0 continuous; <0 never */
    int64_t next_poll;
    int *topics, ntopics; /* sorted */
    uint64_t *tbits;      /* the same as a bitmap, for topic spaces up to TBITS_MAX */
    uint64_t *last_key;   /* per publisher: (seq << 8 | topic index) of the last delivery */
    /* publisher / churn */
    int inflight;
    uint32_t seq;
    uint64_t *expq;
    int eh, en;
    int64_t next_send;
    int churn_sub_next;
    int *ctopics;
} conn_t;

/*
 * A protocol driver: how a connection opens (handshake, subscription), publishes one batch,
 * polls, parses what the server sends, and says goodbye.  Every request it sends is recorded
 * with push_kind(); when its reply (or last reply) is complete the driver pops the kind with
 * pop_kind() and calls req_done(); every delivery goes to on_message().
 */
typedef struct proto {
    const char *name;
    int push;        /* subscribers do not poll: the server writes deliveries unprompted */
    int per_channel; /* a delivery is one (entry, channel) pair, as Redis and NATS deliver an entry
                        published to k channels k times; otherwise one per entry and subscriber */
    void (*open)(conn_t *c);                                   /* connected: handshake, subscribe */
    void (*topics)(conn_t *c, int kind, const int *t, int n);  /* K_SUB or K_UNSUB */
    void (*publish)(conn_t *c);                                /* one batch of w->batch entries */
    void (*poll)(conn_t *c);                                   /* get messages (polling only) */
    void (*parse)(conn_t *c);                                  /* consume c->rb */
    int (*quit)(conn_t *c); /* polite goodbye; 1: wait for the server to close, 0: close now */
} proto_t;

extern const proto_t proto_kraken_poll, proto_kraken_push, proto_resp, proto_nats;

/* ------------------------------------------------------------------ targets and results */

typedef struct {
    int ran;
    const char *target;
    int conns_wanted, conns_ok;
    double dur;
    double req_s, rate, deliv_s;
    const char *unit, *op;
    double p50_us, p99_us;
    long rss_kb, peak_rss_kb, base_rss_kb;
    double rss_per_conn_kb;
    double cpu_us_per_op;
    double tree_cpu_us_per_op;
    long tree_rss_kb;
    int have_tree;
    uint64_t expected, received, dup, bad, unexpected, errors, proto_err, conn_fail;
    int64_t lost;
    double gen_cpu_pct, srv_cpu_pct;
    double x_cpu_us_per_op[MAX_XPIDS], x_cpu_pct[MAX_XPIDS]; /* target_t.xpid[], same window */
    int srv_conns;        /* connections the measured server had accepted after setup, -1 unknown */
    double gp50_us[MAX_SUBPORTS], gp99_us[MAX_SUBPORTS]; /* per subscriber group (sub_ports) */
    int setup_incomplete, drain_timeout, quiesce_timeout;
    uint64_t server_ticks;
} result_t;

/* what a target is, so that it can be (re)started for every run */
enum {
    SK_NONE,        /* a server we did not start (--port) */
    SK_KRAKEN,      /* bin/kraken run (Erlang node + engine) */
    SK_ENGINE,      /* priv/kraken_engine --standalone, Kraken port */
    SK_ENGINE_REDIS,/* the same, its Redis port */
    SK_REDIS,       /* redis-server */
    SK_NATS,        /* nats-server */
    SK_NULL,        /* Kraken text null responder */
    SK_NULL_RESP,   /* RESP null responder */
    SK_NULL_ROUTE,  /* RESP null responder that routes (delivers each PUBLISH) */
};

typedef struct target {
    const char *label;
    int kind;                 /* SK_* */
    const proto_t *proto;
    int port;
    pid_t mpid;               /* process to measure (engine), 0 = none */
    pid_t root;               /* process tree root when we started it (bin/kraken), 0 = none */
    int null_ref;             /* index of the null responder target %null compares with, -1 none */
    const char *skip;         /* why this target is not run ("not supported by this engine"), or NULL */
    pid_t proc;               /* the process we started for it (its own process group), 0 = none */
    int outfd;                /* read end of the standalone engine's stdout, 0 = none */
    int sub_ports[MAX_SUBPORTS]; /* subscribers connect to these in turn (0 of them: to port) */
    int sub_group[MAX_SUBPORTS];   /* and their latency is also counted per group (result gp50/gp99) */
    int nsub_ports;
    pid_t xpid[MAX_XPIDS];    /* also measured (CPU), over the same window as mpid */
    int nxpid;
    /* called once every connection is set up, before the measured phase (cluster: waits until
       the proxies' upstream subscriptions are in place) */
    void (*after_setup)(struct target *tg, result_t *r);
} target_t;

/* ------------------------------------------------------------------ run state (workload.c) */

typedef struct {
    int64_t t;
    int idx;
    int type;
    uint32_t gen;
} tentry_t;

struct gstate {
    int ep, port, wl;
    int sub_ports[MAX_SUBPORTS], sub_group[MAX_SUBPORTS], nsub_ports;
    wparams_t *w;
    const proto_t *pr;
    conn_t *c;
    int n;
    int nsubids, npubs;
    int **tsubs, *tnsubs; /* topic -> sub ids */
    uint32_t *stamp, stampv;
    int phase;
    int next_open, connecting, n_ready, n_failed, n_open;
    tentry_t *heap;
    int hn, hcap;
    int inflight_total, gets_inflight;
    /* counters */
    uint64_t req_win, req_total, pubreq_win, msgs_win, msgs_acked, topic_ops_win, topic_ops_total;
    uint64_t polls_win, polls_total, expected, received, recv_win, dup, bad, unexpected;
    uint64_t errors, proto_err, conn_fail;
    hist_t lat;
    hist_t *glat; /* with sub_ports: latency per subscriber group, sub_group[sub_id % nsub_ports] */
    int64_t drain_next_at, last_recv;
    int round_out, empty_rounds, drain_done;
    uint64_t round_msgs;
    char prefix[32];
    int plen;
    uint32_t tag;
    pid_t mpid;
    long peak_rss_kb;
    int64_t next_sample;
    char *scratch;
    size_t scratch_cap;
    int err_logged;
};
extern struct gstate G;

void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* workload.c: what drivers call */
size_t fmt_topic(char *out, int id);
int parse_topic(const char *s, size_t n);
void entry_topics(uint32_t pub, uint32_t seq, int *out);
/* the next entry of publisher c: its sequence number (returned) and topics (tp); adds to *exp
   the deliveries it should make (per entry or per channel, as the driver counts them) */
uint32_t next_entry(conn_t *c, int *tp, uint64_t *exp);
/* its payload: w->payload bytes, a 32-byte stamp (send time, publisher, seq, run tag) + padding */
void stamp_payload(char *pl, int64_t ts, int pub, uint32_t seq);
/* a publish request (one batch) was queued: it should deliver exp in all */
void publish_sent(conn_t *c, uint64_t exp);
void on_message(conn_t *c, const int *tids, int nt, int tbad, const char *pl, size_t len, int64_t now);
void req_done(conn_t *c, int kind, int nmsgs);
void conn_ready(conn_t *c);  /* subscribed (or nothing to subscribe): setup done */
void send_get(conn_t *c);
char *scratch(size_t n);
void run_workload(int wl, target_t *tg, result_t *r);

/* loop.c */
void push_kind(conn_t *c, int kind);
int pop_kind(conn_t *c); /* K_NONE if nothing is pending */
void conn_flush(conn_t *c);
void conn_close(conn_t *c);
void conn_error(conn_t *c, const char *why);
/* The next complete line in c's read buffer: *s its start, *tl its length without CR LF, *ll
 * with them; 0 when no whole line is there yet (and a protocol error on c once more than
 * 64 KiB wait without one). */
int conn_next_line(conn_t *c, char **s, size_t *tl, size_t *ll);
void conn_open(conn_t *c);
void timer_set(conn_t *c, int type, int64_t t);
void loop_until(int (*done)(void), int64_t deadline);
void on_timer(tentry_t e);
void drain_round_end(void);
void drain_start_round(void);
void sample_rss(void);
extern char g_rdbuf[256 * 1024];

/* proto_kraken_poll.c: the Kraken text codec, shared with the push driver */
size_t fmt_set(char *hdr, const char *cmd, size_t n);
void kraken_parse(conn_t *c, int push);
void kraken_topics(conn_t *c, int kind, const int *topics, int n);
void kraken_publish(conn_t *c);
int kraken_quit(conn_t *c);

/* null.c */
pid_t start_null(int kind, int *port); /* SK_NULL, SK_NULL_RESP or SK_NULL_ROUTE; returns its pid */
/* null_route.c: the routing null's channel table (channel -> subscribed fds) */
int route_subscribe(const char *ch, size_t cl, int fd);
int route_unsubscribe(const char *ch, size_t cl, int fd);
const int *route_subscribers(const char *ch, size_t cl, int *n);
void route_forget(int fd);

/* servers.c */
int free_port(void);
int try_connect(int port, int ms, const char *bye);
void start_target(target_t *tg); /* (re)start what tg measures; sets port, mpid, root, proc */
void stop_target(target_t *tg);
pid_t find_engine(pid_t root);
const char *find_kraken(void);   /* bin/kraken: --kraken, ./bin/kraken, <exe dir>/../bin/kraken */
void stop_proc(pid_t pid);       /* SIGTERM its group and descendants, SIGKILL after 10 s */
extern target_t *g_targets;      /* stopped by cleanup() */
extern int g_ntargets;
void cleanup(void);

/* report.c */
void print_table(result_t res[][W_N], int ntargets, const target_t *tgs, int have_null);
void print_summary(result_t res[][MAX_TARGETS][W_N], int ntargets, const target_t *tgs);
void print_csv(result_t res[][W_N], int ntargets, const target_t *tgs);
void print_peer_table(result_t res[][MAX_TARGETS][W_N], int ntargets, const target_t *tgs);

/* cluster.c, cluster_nodes.c */
void run_cluster(void);
enum { NC = 0, NP1, NP2, NNODES }; /* the cluster's core and two proxies */
typedef struct {
    char name[64]; /* short node name */
    int port;
    pid_t os_pid;  /* the Erlang VM (a session leader: setsid) */
    pid_t engine;
} knode_t;
extern knode_t K[NNODES];
void start_nodes(void);
void stop_nodes(void);
void probe_hop(int timeout_s); /* until entries published on the core reach each proxy's subscriber */
int tcp_established(int port); /* server-side established TCP connections on 127.0.0.1:port */
void count_core_conns(target_t *tg, result_t *r); /* after_setup: r->srv_conns */
void after_setup_hop(target_t *tg, result_t *r);  /* probe_hop, then count_core_conns */
double loadavg1(void);

#endif
