/*
 * kraken_bench: load generator and benchmark for the Kraken pubsub server (issue 4).
 *
 * Speaks the memcached-shaped text protocol of SPEC.md section 1 over 127.0.0.1 and runs
 * four workloads (latency, fanout, churn, idle), printing one table.  With --null it also
 * runs them against a built-in "null responder" (a forked child that frames requests and
 * answers STORED / END without routing) and prints the server's rate as a percentage of it.
 *
 * Single-threaded epoll client; every phase has a deadline, so the program always ends.
 * Build: gcc -O2 -Wall -Wextra -Werror -o bench/kraken_bench bench/kraken_bench.c -lm
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <libgen.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S 1000000000LL
#define NS_PER_MS 1000000LL
#define KQ 256          /* max requests in flight per connection (kinds ring) */
#define MAX_DEPTH 128
#define MAX_TPM 64      /* max topics per published message */
#define STAMP_LEN 32
#define TBITS_MAX 65536 /* topic spaces up to this get a bitmap per subscriber */    /* bytes of the payload used for timestamp + id */

static volatile sig_atomic_t g_stop;
static int g_verbose;

/* ------------------------------------------------------------------ utilities */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kraken_bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void warnx_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kraken_bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory");
    return p;
}

static void *xcalloc(size_t a, size_t b)
{
    void *p = calloc(a ? a : 1, b ? b : 1);
    if (!p) die("out of memory");
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) die("out of memory");
    return p;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * NS_PER_MS };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !g_stop) {
    }
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t mix64(uint64_t x)
{
    return splitmix(&x);
}

static uint64_t g_rng = 88172645463325252ULL;

static uint32_t rnd(uint32_t n)
{
    return n ? (uint32_t)(splitmix(&g_rng) % n) : 0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* ------------------------------------------------------------------ byte buffers */

typedef struct {
    char *p;
    size_t off, len, cap; /* live data is p[off, len) */
} buf_t;

static void buf_reserve(buf_t *b, size_t extra)
{
    if (b->off == b->len) b->off = b->len = 0;
    if (b->len + extra <= b->cap) return;
    if (b->off) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + extra <= b->cap) return;
    }
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->len + extra) nc *= 2;
    b->p = xrealloc(b->p, nc);
    b->cap = nc;
}

static void buf_append(buf_t *b, const void *d, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void buf_free(buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------------ latency histogram */
/* log-linear buckets: 32 sub-buckets per power of two (about 3% precision), values in ns */
#define HSUBBITS 5
#define HSUB (1 << HSUBBITS)
#define HBUCKETS (64 * HSUB)

typedef struct {
    uint64_t c[HBUCKETS];
    uint64_t n;
} hist_t;

static int hist_idx(uint64_t v)
{
    if (v < HSUB) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - HSUBBITS;
    return (shift + 1) * HSUB + (int)((v >> shift) & (HSUB - 1));
}

static double hist_val(int i)
{
    if (i < HSUB) return i;
    int shift = i / HSUB - 1, sub = i % HSUB;
    double lo = (double)((uint64_t)(HSUB + sub) << shift);
    return lo + (double)((uint64_t)1 << shift) / 2.0;
}

static void hist_add(hist_t *h, int64_t v)
{
    if (v < 0) v = 0;
    h->c[hist_idx((uint64_t)v)]++;
    h->n++;
}

static double hist_pct(const hist_t *h, double p)
{
    if (!h->n) return NAN;
    uint64_t target = (uint64_t)ceil(p * (double)h->n);
    if (target < 1) target = 1;
    uint64_t cum = 0;
    for (int i = 0; i < HBUCKETS; i++) {
        cum += h->c[i];
        if (cum >= target) return hist_val(i);
    }
    return hist_val(HBUCKETS - 1);
}

/* ------------------------------------------------------------------ /proc sampling */

static long g_clk_tck = 100;

/* utime+stime (ticks), rss (kB, from status VmRSS) of one process; 0 on success */
static int proc_cpu_ticks(pid_t pid, uint64_t *ticks)
{
    char path[64], line[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = 0;
    char *p = strrchr(line, ')');
    if (!p) return -1;
    /* after ')': state(3) ppid(4) ... utime(14) stime(15) */
    unsigned long long ut = 0, st = 0;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 14) ut = strtoull(tok, NULL, 10);
        if (field == 15) {
            st = strtoull(tok, NULL, 10);
            break;
        }
    }
    *ticks = ut + st;
    return 0;
}

static long proc_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmRSS:", 6)) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

typedef struct {
    pid_t pid, ppid;
    char state;
    char comm[32];
    uint64_t ticks;
    long rss_pages;
    unsigned long long start;
} pinfo_t;

static int read_pinfo(pid_t pid, pinfo_t *pi)
{
    char path[64], line[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = 0;
    char *l = strchr(line, '('), *r = strrchr(line, ')');
    if (!l || !r || r < l) return -1;
    memset(pi, 0, sizeof *pi);
    pi->pid = pid;
    size_t cl = (size_t)(r - l - 1);
    if (cl >= sizeof pi->comm) cl = sizeof pi->comm - 1;
    memcpy(pi->comm, l + 1, cl);
    pi->comm[cl] = 0;
    int field = 2;
    char *save = NULL;
    unsigned long long ut = 0, st = 0;
    for (char *tok = strtok_r(r + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        field++;
        switch (field) {
        case 3: pi->state = tok[0]; break;
        case 4: pi->ppid = (pid_t)atoi(tok); break;
        case 14: ut = strtoull(tok, NULL, 10); break;
        case 15: st = strtoull(tok, NULL, 10); break;
        case 22: pi->start = strtoull(tok, NULL, 10); break;
        case 24: pi->rss_pages = atol(tok); break;
        default: break;
        }
        if (field >= 24) break;
    }
    pi->ticks = ut + st;
    return 0;
}

/* all processes in the tree rooted at root (root included); returns count, *out malloc'ed */
static int proc_tree(pid_t root, pinfo_t **out)
{
    int cap = 256, n = 0;
    pinfo_t *all = xmalloc(sizeof(pinfo_t) * (size_t)cap);
    DIR *d = opendir("/proc");
    if (!d) {
        *out = NULL;
        free(all);
        return 0;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!isdigit((unsigned char)de->d_name[0])) continue;
        if (n == cap) {
            cap *= 2;
            all = xrealloc(all, sizeof(pinfo_t) * (size_t)cap);
        }
        if (read_pinfo((pid_t)atoi(de->d_name), &all[n]) == 0) n++;
    }
    closedir(d);
    char *in = xcalloc((size_t)n, 1);
    int found = 0;
    for (int i = 0; i < n; i++)
        if (all[i].pid == root) in[i] = 1, found = 1;
    if (!found) {
        free(in);
        free(all);
        *out = NULL;
        return 0;
    }
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < n; i++) {
            if (in[i]) continue;
            for (int j = 0; j < n; j++)
                if (in[j] && all[j].pid == all[i].ppid) {
                    in[i] = 1;
                    changed = 1;
                    break;
                }
        }
    }
    int m = 0;
    for (int i = 0; i < n; i++)
        if (in[i]) all[m++] = all[i];
    free(in);
    *out = all;
    return m;
}

static void tree_sample(pid_t root, uint64_t *ticks, long *rss_kb)
{
    pinfo_t *t;
    int n = proc_tree(root, &t);
    long pg = sysconf(_SC_PAGESIZE) / 1024;
    *ticks = 0;
    *rss_kb = 0;
    for (int i = 0; i < n; i++) {
        *ticks += t[i].ticks;
        *rss_kb += t[i].rss_pages * pg;
    }
    free(t);
}

static int pid_alive(pid_t pid, unsigned long long start)
{
    pinfo_t pi;
    if (read_pinfo(pid, &pi) < 0) return 0;
    if (start && pi.start != start) return 0;
    return pi.state != 'Z' && pi.state != 'X';
}

static int any_process_named(const char *comm)
{
    DIR *d = opendir("/proc");
    if (!d) return 0;
    struct dirent *de;
    int found = 0;
    while (!found && (de = readdir(d))) {
        if (!isdigit((unsigned char)de->d_name[0])) continue;
        pinfo_t pi;
        if (read_pinfo((pid_t)atoi(de->d_name), &pi) == 0 && !strcmp(pi.comm, comm) && pi.state != 'Z')
            found = 1;
    }
    closedir(d);
    return found;
}

/* ------------------------------------------------------------------ parameters */

enum { W_LAT, W_FAN, W_CHURN, W_IDLE, W_N };
static const char *wl_names[W_N] = { "latency", "fanout", "churn", "idle" };
static const char wl_letter[W_N] = { 'L', 'F', 'C', 'I' };

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

static wparams_t P[W_N] = {
    [W_LAT] = { 50, 5, 20, 2000, 10, 2, 64, 0, 0 },
    [W_FAN] = { 200, 10, 50, 500, 10, 1, 64, 20, 0 },
    [W_CHURN] = { 50, 0, 100, 2000, 0, 0, 0, 0, 0 },
    [W_IDLE] = { 15000, 0, 20, 100000, 0, 0, 0, 2000, 0 },
};

static struct {
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
} O = { 5.0, 8, 0, 0, 200, 90, 60, 0, 0, 0, 0, 0, NULL, NULL, { 1, 1, 1, 1 }, 0, 1 };
#define MAX_REPS 9

/* ------------------------------------------------------------------ connections */

enum { K_NONE, K_SUB, K_UNSUB, K_PUB, K_GET, K_QUIT };
enum { CS_NEW, CS_CONNECTING, CS_OPEN, CS_CLOSED };
enum { R_STORED, R_NOT_FOUND, R_END, R_VALUE, R_ERROR, R_OTHER };
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
    uint32_t tgen[T_NTYPES];
    /* subscriber */
    int get_inflight, in_round;
    int64_t poll_ivl; /* ns; 0 continuous; <0 never */
    int64_t next_poll;
    int *topics, ntopics; /* sorted */
    uint64_t *tbits;      /* the same as a bitmap, for topic spaces up to TBITS_MAX */
    uint32_t *last_seq;   /* per publisher */
    /* publisher / churn */
    int inflight;
    uint32_t seq;
    uint64_t *expq;
    int eh, en;
    int64_t next_send;
    int churn_sub_next;
    int *ctopics;
} conn_t;

typedef struct {
    int64_t t;
    int idx;
    int type;
    uint32_t gen;
} tentry_t;

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
    int setup_incomplete, drain_timeout, quiesce_timeout;
    uint64_t server_ticks;
} result_t;

typedef struct {
    const char *label;
    int port;
    pid_t mpid; /* process to measure (engine), 0 = none */
    pid_t root; /* process tree root when we started it, 0 = none */
} target_t;

static struct {
    int ep, port, wl;
    wparams_t *w;
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
    int64_t drain_next_at;
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
} G;

static void log_err(const char *fmt, ...)
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

static void timer_set(conn_t *c, int type, int64_t t)
{
    c->tgen[type]++;
    heap_push(t, c->idx, type);
}

/* ---- topic names */

/* decimal digits of v at out; returns their count (printf is a tenth of the generator's time) */
static size_t fmt_u(char *out, uint64_t v)
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

static size_t fmt_topic(char *out, int id)
{
    memcpy(out, G.prefix, (size_t)G.plen);
    return (size_t)G.plen + fmt_u(out + G.plen, (uint64_t)id);
}

/* "set <cmd> 0 0 <n>\r\n" into hdr (at least 64 bytes); returns its length */
static size_t fmt_set(char *hdr, const char *cmd, size_t n)
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

/* -1 if not one of ours */
static int parse_topic(const char *s, size_t n)
{
    if (n <= (size_t)G.plen || memcmp(s, G.prefix, (size_t)G.plen)) return -1;
    long v = 0;
    for (size_t i = (size_t)G.plen; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > 100000000) return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v < G.w->space ? (int)v : -1;
}

/* the topics of entry (pub, seq): a deterministic function, so receivers can recompute it */
static void entry_topics(uint32_t pub, uint32_t seq, int *out)
{
    int k = G.w->tpm, space = G.w->space;
    for (int i = 0; i < k; i++) {
        uint64_t h = mix64(((uint64_t)G.tag << 48) ^ ((uint64_t)pub << 32) ^ seq ^ ((uint64_t)i << 56));
        for (;;) {
            int t = (int)(h % (uint64_t)space), dupl = 0;
            for (int j = 0; j < i; j++)
                if (out[j] == t) dupl = 1;
            if (!dupl) {
                out[i] = t;
                break;
            }
            h = mix64(h + 1);
        }
    }
}

static int has_topic(const conn_t *c, int t)
{
    if (c->tbits) return (int)((c->tbits[t >> 6] >> (t & 63)) & 1);
    int lo = 0, hi = c->ntopics - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        if (c->topics[m] == t) return 1;
        if (c->topics[m] < t) lo = m + 1;
        else hi = m - 1;
    }
    return 0;
}

static char *scratch(size_t n)
{
    if (n > G.scratch_cap) {
        G.scratch_cap = n * 2;
        G.scratch = xrealloc(G.scratch, G.scratch_cap);
    }
    return G.scratch;
}

/* ---- sending */

static void conn_close(conn_t *c);
static void conn_error(conn_t *c, const char *why);

static void push_kind(conn_t *c, int kind)
{
    if (c->kn >= KQ) die("internal: too many requests in flight");
    c->kq[(c->kh + c->kn) % KQ] = (uint8_t)kind;
    c->kn++;
}

static void conn_flush(conn_t *c)
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

static void send_topics(conn_t *c, int kind, const int *topics, int n)
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

static void send_get(conn_t *c)
{
    buf_append(&c->wb, "get messages\r\n", 14);
    push_kind(c, K_GET);
    c->get_inflight = 1;
    G.gets_inflight++;
}

static const char hexd[] = "0123456789abcdef";

static void put_hex(char *p, uint64_t v, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        p[i] = hexd[v & 15];
        v >>= 4;
    }
}

static int8_t hexval[256]; /* -1 where not a lowercase hex digit; filled by main */

static void hexval_init(void)
{
    memset(hexval, -1, sizeof hexval);
    for (int i = 0; i < 16; i++) hexval[(unsigned char)hexd[i]] = (int8_t)i;
}

static int get_hex(const char *p, int digits, uint64_t *v)
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

static void send_publish(conn_t *c)
{
    wparams_t *w = G.w;
    size_t per = (size_t)w->tpm * 32 + 32 + (size_t)w->payload + 2;
    char *blk = scratch(per * (size_t)w->batch + 64);
    size_t bl = 0;
    uint64_t exp = 0;
    int64_t ts = now_ns();
    int tp[MAX_TPM];
    for (int m = 0; m < w->batch; m++) {
        uint32_t seq = ++c->seq;
        entry_topics((uint32_t)c->pub_id, seq, tp);
        memcpy(blk + bl, "MESSAGE", 7);
        bl += 7;
        G.stampv++;
        for (int i = 0; i < w->tpm; i++) {
            blk[bl++] = ' ';
            bl += fmt_topic(blk + bl, tp[i]);
            int t = tp[i];
            for (int k = 0; k < G.tnsubs[t]; k++) {
                int s = G.tsubs[t][k];
                if (s == c->sub_id) continue; /* no self-delivery */
                if (G.stamp[s] != G.stampv) {
                    G.stamp[s] = G.stampv;
                    exp++;
                }
            }
        }
        blk[bl++] = ' ';
        bl += fmt_u(blk + bl, (uint64_t)w->payload);
        blk[bl++] = '\r';
        blk[bl++] = '\n';
        char *pl = blk + bl;
        put_hex(pl, (uint64_t)ts, 16);
        put_hex(pl + 16, (uint64_t)c->pub_id, 4);
        put_hex(pl + 20, seq, 8);
        put_hex(pl + 28, G.tag, 4);
        memset(pl + STAMP_LEN, '.', (size_t)w->payload - STAMP_LEN);
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
    c->expq[(c->eh + c->en) % (MAX_DEPTH + 1)] = exp;
    c->en++;
    c->inflight++;
    G.inflight_total++;
}

static void pub_pump(conn_t *c)
{
    if (G.phase != PH_RUN || c->state != CS_OPEN || c->pub_id < 0) return;
    while (c->inflight < O.depth) {
        if (O.rate > 0) {
            int64_t now = now_ns(), ivl = (int64_t)(NS_PER_S / O.rate);
            if (c->next_send < now - NS_PER_S) c->next_send = now; /* do not burst after a stall */
            if (now < c->next_send) {
                timer_set(c, T_SEND, c->next_send);
                break;
            }
            c->next_send += ivl;
        }
        send_publish(c);
    }
    conn_flush(c);
}

static void churn_pump(conn_t *c)
{
    if (G.phase != PH_RUN || c->state != CS_OPEN) return;
    int k = G.w->tps;
    while (c->inflight < O.depth) {
        if (c->churn_sub_next) {
            G.stampv++;
            for (int i = 0; i < k;) {
                int t = (int)rnd((uint32_t)G.w->space);
                if (G.stamp[t] == G.stampv) continue;
                G.stamp[t] = G.stampv;
                c->ctopics[i++] = t;
            }
            send_topics(c, K_SUB, c->ctopics, k);
        } else {
            send_topics(c, K_UNSUB, c->ctopics, k);
        }
        c->churn_sub_next = !c->churn_sub_next;
        c->inflight++;
        G.inflight_total++;
    }
    conn_flush(c);
}

/* ---- receiving */

static void on_message(conn_t *c, const int *tids, int nt, int tbad, const char *pl, size_t len, int64_t now)
{
    if (c->sub_id < 0 || !c->last_seq) {
        G.unexpected++;
        return;
    }
    uint64_t ts, pub, seq, tag;
    if (len < STAMP_LEN || get_hex(pl, 16, &ts) || get_hex(pl + 16, 4, &pub) || get_hex(pl + 20, 8, &seq) ||
        get_hex(pl + 28, 4, &tag) || tag != G.tag || pub >= (uint64_t)G.npubs || len != (size_t)G.w->payload) {
        G.bad++;
        return;
    }
    if ((int)pub == c->pub_id) { /* self-delivery */
        G.unexpected++;
        return;
    }
    int et[MAX_TPM], held[MAX_TPM], nh = 0;
    entry_topics((uint32_t)pub, (uint32_t)seq, et);
    for (int i = 0; i < G.w->tpm; i++)
        if (has_topic(c, et[i])) held[nh++] = et[i];
    if (!nh) {
        G.unexpected++;
        return;
    }
    if (tbad || nt != nh || memcmp(tids, held, sizeof(int) * (size_t)nh)) G.bad++;
    uint32_t *ls = &c->last_seq[pub];
    if (seq <= *ls) {
        G.dup++; /* duplicate or out of order (order is per publisher) */
        return;
    }
    *ls = (uint32_t)seq;
    G.received++;
    if (G.phase == PH_RUN) G.recv_win++;
    hist_add(&G.lat, now - (int64_t)ts);
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

static void drain_round_end(void);

static void on_reply(conn_t *c, int code, int nmsgs, const char *line, size_t ll)
{
    if (!c->kn) {
        if (code == R_ERROR) log_err("conn %d: server said \"%.*s\"", c->idx, (int)ll, line);
        else log_err("conn %d: unexpected reply \"%.*s\"", c->idx, (int)ll, line);
        G.proto_err++;
        conn_error(c, "unsolicited reply");
        return;
    }
    int kind = c->kq[c->kh];
    c->kh = (c->kh + 1) % KQ;
    c->kn--;
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
    G.req_total++;
    int run = (G.phase == PH_RUN);
    if (run) G.req_win++;
    switch (kind) {
    case K_SUB:
    case K_UNSUB:
        if (c->churn) {
            c->inflight--;
            G.inflight_total--;
            G.topic_ops_total += (uint64_t)G.w->tps;
            if (run) G.topic_ops_win += (uint64_t)G.w->tps;
            churn_pump(c);
        } else if (!c->ready) {
            c->ready = 1;
            G.n_ready++;
        }
        break;
    case K_PUB: {
        c->inflight--;
        G.inflight_total--;
        uint64_t exp = c->expq[c->eh];
        c->eh = (c->eh + 1) % (MAX_DEPTH + 1);
        c->en--;
        G.expected += exp;
        G.msgs_acked += (uint64_t)G.w->batch;
        if (run) {
            G.pubreq_win++;
            G.msgs_win += (uint64_t)G.w->batch;
        }
        pub_pump(c);
        break;
    }
    case K_GET:
        c->get_inflight = 0;
        G.gets_inflight--;
        G.polls_total++;
        if (run) {
            G.polls_win++;
            if (c->poll_ivl == 0) send_get(c);
        } else if (G.phase == PH_DRAIN && c->in_round) {
            c->in_round = 0;
            G.round_msgs += (uint64_t)nmsgs;
            if (--G.round_out == 0) drain_round_end();
        }
        break;
    default:
        break;
    }
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

static void conn_parse(conn_t *c)
{
    while (c->state == CS_OPEN) {
        char *s = c->rb.p + c->rb.off;
        size_t n = c->rb.len - c->rb.off;
        if (!n) break;
        char *nl = memchr(s, '\n', n);
        if (!nl) {
            if (n > 65536) {
                G.proto_err++;
                conn_error(c, "reply line too long");
            }
            break;
        }
        size_t ll = (size_t)(nl - s) + 1, tl = ll - 1;
        if (tl && s[tl - 1] == '\r') tl--;
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
            on_reply(c, R_VALUE, m, s, tl);
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

static char g_rdbuf[256 * 1024]; /* shared read buffer: idle connections keep tiny buffers */

static void conn_read(conn_t *c)
{
    ssize_t r = read(c->fd, g_rdbuf, sizeof g_rdbuf);
    if (r > 0) {
        buf_append(&c->rb, g_rdbuf, (size_t)r);
        conn_parse(c);
        conn_flush(c);
    } else if (r == 0) {
        if (c->quit_sent || G.phase == PH_TEARDOWN) conn_close(c);
        else conn_error(c, "connection closed by server");
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        conn_error(c, strerror(errno));
    }
}

/* ---- connection lifecycle */

static void on_open(conn_t *c)
{
    if (c->sub_id >= 0 && c->ntopics > 0) {
        send_topics(c, K_SUB, c->topics, c->ntopics);
        conn_flush(c);
    } else {
        c->ready = 1;
        G.n_ready++;
    }
}

static void conn_fail_setup(conn_t *c)
{
    if (!c->ready && !c->failed) {
        c->failed = 1;
        G.n_failed++;
    }
}

static void conn_close(conn_t *c)
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

static void conn_error(conn_t *c, const char *why)
{
    if (c->state == CS_CLOSED) return;
    G.errors++;
    log_err("conn %d (%s): %s", c->idx,
            c->pub_id >= 0 ? "publisher" : c->churn ? "churn" : "subscriber", why);
    conn_close(c);
}

static void conn_open(conn_t *c)
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
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)G.port) };
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
        log_err("connect to 127.0.0.1:%d: %s", G.port, strerror(err));
        conn_close(c);
        return;
    }
    G.connecting--;
    G.n_open++;
    c->state = CS_OPEN;
    c->evmask = 0;
    conn_flush(c); /* sets EPOLLIN */
    on_open(c);
}

/* ---- drain */

static void drain_start_round(void)
{
    G.round_msgs = 0;
    G.round_out = 0;
    for (int i = 0; i < G.n; i++) {
        conn_t *c = &G.c[i];
        if (c->state != CS_OPEN || c->sub_id < 0 || c->get_inflight) continue;
        send_get(c);
        c->in_round = 1;
        G.round_out++;
        conn_flush(c);
    }
    if (!G.round_out) G.drain_done = 1;
}

static void drain_round_end(void)
{
    if (G.round_msgs == 0) G.empty_rounds++;
    else G.empty_rounds = 0;
    if (G.empty_rounds >= 3) G.drain_done = 1;
    else G.drain_next_at = now_ns() + (G.round_msgs ? 0 : 30 * NS_PER_MS);
}

/* ---- event loop */

static void on_timer(tentry_t e)
{
    conn_t *c = &G.c[e.idx];
    if (c->tgen[e.type] != e.gen || c->state != CS_OPEN) return;
    if (e.type == T_SEND) {
        pub_pump(c);
    } else if (e.type == T_POLL) {
        if (G.phase != PH_RUN) return;
        if (!c->get_inflight) {
            send_get(c);
            conn_flush(c);
        }
        c->next_poll += c->poll_ivl;
        int64_t now = now_ns();
        if (c->next_poll <= now) c->next_poll = now + c->poll_ivl;
        timer_set(c, T_POLL, c->next_poll);
    }
}

static void sample_rss(void)
{
    if (!G.mpid) return;
    long kb = proc_rss_kb(G.mpid);
    if (kb > G.peak_rss_kb) G.peak_rss_kb = kb;
}

static void loop_until(int (*done)(void), int64_t deadline)
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

static int setup_done(void) { return G.n_ready + G.n_failed >= G.n; }
static int quiesced(void) { return G.inflight_total <= 0 && G.gets_inflight <= 0; }
static int drained(void) { return G.drain_done; }
static int all_closed(void) { return G.n_open <= 0 && G.connecting <= 0; }

/* ------------------------------------------------------------------ one workload */

static double rusage_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void pick_topics(int *out, int k, int space)
{
    G.stampv++;
    for (int i = 0; i < k;) {
        int t = (int)rnd((uint32_t)space);
        if (G.stamp[t] == G.stampv) continue;
        G.stamp[t] = G.stampv;
        out[i++] = t;
    }
    qsort(out, (size_t)k, sizeof(int), cmp_int);
}

static pid_t find_engine(pid_t root);

static void run_workload(int wl, target_t *tg, result_t *r)
{
    wparams_t *w = &P[wl];
    memset(&G, 0, sizeof G);
    memset(r, 0, sizeof *r);
    G.wl = wl;
    G.w = w;
    G.port = tg->port;
    G.mpid = tg->mpid;
    G.ep = epoll_create1(EPOLL_CLOEXEC);
    if (G.ep < 0) die("epoll_create1: %s", strerror(errno));
    G.tag = (uint32_t)(splitmix(&g_rng) & 0xffff);
    G.plen = snprintf(G.prefix, sizeof G.prefix, "kb%04x%c.", G.tag, wl_letter[wl]);
    double dur = w->duration > 0 ? w->duration : O.duration;

    int pubwl = (wl == W_LAT || wl == W_FAN);
    int nsub = w->subs, npub = pubwl ? w->pubs : 0;
    G.npubs = npub;
    G.n = nsub + npub;
    G.nsubids = pubwl ? nsub + (O.pubs_subscribe ? npub : 0) : (wl == W_IDLE ? nsub : 0);
    G.c = xcalloc((size_t)G.n, sizeof(conn_t));
    int stamp_n = w->space > G.nsubids ? w->space : G.nsubids;
    G.stamp = xcalloc((size_t)stamp_n + 1, sizeof(uint32_t));
    if (pubwl) {
        G.tsubs = xcalloc((size_t)w->space, sizeof(int *));
        G.tnsubs = xcalloc((size_t)w->space, sizeof(int));
    }
    int64_t poll_ivl = (int64_t)w->poll_ms * NS_PER_MS;
    for (int i = 0; i < G.n; i++) {
        conn_t *c = &G.c[i];
        c->idx = i;
        c->fd = -1;
        c->sub_id = c->pub_id = -1;
        c->poll_ivl = -1;
        if (wl == W_CHURN) {
            c->churn = 1;
            c->churn_sub_next = 1;
            c->ctopics = xmalloc(sizeof(int) * (size_t)w->tps);
            continue;
        }
        if (i < nsub) c->sub_id = i;
        else {
            c->pub_id = i - nsub;
            c->expq = xcalloc(MAX_DEPTH + 1, sizeof(uint64_t));
            if (O.pubs_subscribe) c->sub_id = i;
        }
        if (c->sub_id >= 0) {
            c->poll_ivl = poll_ivl;
            c->ntopics = w->tps;
            c->topics = xmalloc(sizeof(int) * (size_t)w->tps);
            pick_topics(c->topics, w->tps, w->space);
            if (pubwl) {
                if (w->space <= TBITS_MAX) {
                    c->tbits = xcalloc(((size_t)w->space + 63) / 64, sizeof(uint64_t));
                    for (int k = 0; k < c->ntopics; k++)
                        c->tbits[c->topics[k] >> 6] |= 1ULL << (c->topics[k] & 63);
                }
                c->last_seq = xcalloc((size_t)npub, sizeof(uint32_t));
                for (int k = 0; k < c->ntopics; k++) {
                    int t = c->topics[k];
                    G.tsubs[t] = xrealloc(G.tsubs[t], sizeof(int) * (size_t)(G.tnsubs[t] + 1));
                    G.tsubs[t][G.tnsubs[t]++] = c->sub_id;
                }
            }
        }
    }
    r->target = tg->label;
    r->conns_wanted = G.n;

    if (tg->root && tg->mpid && !pid_alive(tg->mpid, 0)) { /* the engine was restarted */
        pid_t e = 0;
        for (int i = 0; i < 50 && !g_stop && !(e = find_engine(tg->root)); i++) sleep_ms(100);
        warnx_("engine pid %d is gone; now measuring pid %d", (int)tg->mpid, (int)e);
        tg->mpid = e;
    }
    G.mpid = tg->mpid;
    if (tg->mpid) r->base_rss_kb = proc_rss_kb(tg->mpid);
    G.phase = PH_SETUP;
    int64_t t_setup = now_ns();
    loop_until(setup_done, t_setup + (int64_t)O.setup_timeout * NS_PER_S);
    if (!setup_done() && !g_stop) {
        r->setup_incomplete = 1;
        warnx_("[%s] setup incomplete after %d s: %d of %d connections ready", wl_names[wl], O.setup_timeout,
               G.n_ready, G.n);
    }
    r->conns_ok = G.n_ready;
    if (g_verbose)
        fprintf(stderr, "kraken_bench: [%s] %d connections ready in %.2f s\n", wl_names[wl], G.n_ready,
                (double)(now_ns() - t_setup) / 1e9);

    uint64_t tk0 = 0, tk1 = 0, ttk0 = 0, ttk1 = 0;
    long trss = 0;
    int64_t ts0 = now_ns();
    int cpu_ok = tg->mpid && proc_cpu_ticks(tg->mpid, &tk0) == 0;
    if (tg->root) tree_sample(tg->root, &ttk0, &trss);
    double gen0 = rusage_s();
    G.peak_rss_kb = 0;
    sample_rss();

    /* run */
    G.phase = PH_RUN;
    int64_t t0 = now_ns();
    for (int i = 0; i < G.n; i++) {
        conn_t *c = &G.c[i];
        if (c->state != CS_OPEN || !c->ready) continue;
        if (c->sub_id >= 0 && c->poll_ivl == 0) {
            send_get(c);
            conn_flush(c);
        } else if (c->sub_id >= 0 && c->poll_ivl > 0) {
            c->next_poll = t0 + (int64_t)rnd((uint32_t)(c->poll_ivl / 1000)) * 1000;
            timer_set(c, T_POLL, c->next_poll);
        }
        if (c->pub_id >= 0) {
            c->next_send = t0;
            pub_pump(c);
        }
        if (c->churn) churn_pump(c);
    }
    loop_until(NULL, t0 + (int64_t)(dur * 1e9));
    int64_t t1 = now_ns();
    double win = (double)(t1 - t0) / 1e9;
    double gen1 = rusage_s();
    if (wl == W_IDLE) {
        sample_rss();
        if (tg->mpid) r->rss_kb = proc_rss_kb(tg->mpid);
    }

    /* quiesce: let in-flight requests complete */
    G.phase = PH_QUIESCE;
    loop_until(quiesced, now_ns() + 15 * NS_PER_S);
    if (!quiesced() && !g_stop) {
        r->quiesce_timeout = 1;
        warnx_("[%s] %d requests still unanswered 15 s after the run", wl_names[wl],
               G.inflight_total + G.gets_inflight);
    }
    /* drain: poll until several rounds in a row return nothing */
    if (pubwl && !g_stop) {
        G.phase = PH_DRAIN;
        drain_start_round();
        loop_until(drained, now_ns() + 20 * NS_PER_S);
        if (!G.drain_done && !g_stop) {
            r->drain_timeout = 1;
            warnx_("[%s] drain did not finish within 20 s", wl_names[wl]);
        }
    }
    sample_rss();
    int64_t ts1 = now_ns();
    if (tg->mpid) {
        if (proc_cpu_ticks(tg->mpid, &tk1) != 0) cpu_ok = 0;
        if (wl != W_IDLE) r->rss_kb = proc_rss_kb(tg->mpid);
    }
    if (tg->root) {
        tree_sample(tg->root, &ttk1, &trss);
        r->have_tree = 1;
        r->tree_rss_kb = trss;
    }

    /* teardown: quit, wait for the server to close, then close whatever is left */
    G.phase = PH_TEARDOWN;
    for (int i = 0; i < G.n; i++) {
        conn_t *c = &G.c[i];
        if (c->state == CS_OPEN) {
            buf_append(&c->wb, "quit\r\n", 6);
            c->quit_sent = 1;
            conn_flush(c);
        } else if (c->state == CS_CONNECTING) {
            conn_close(c);
        }
    }
    loop_until(all_closed, now_ns() + 5 * NS_PER_S);
    for (int i = 0; i < G.n; i++) conn_close(&G.c[i]);

    /* results */
    r->ran = 1;
    r->dur = win;
    r->req_s = (double)G.req_win / win;
    r->peak_rss_kb = G.peak_rss_kb;
    r->expected = G.expected;
    r->received = G.received;
    r->lost = (int64_t)G.expected - (int64_t)G.received;
    r->dup = G.dup;
    r->bad = G.bad;
    r->unexpected = G.unexpected;
    r->errors = G.errors;
    r->proto_err = G.proto_err;
    r->conn_fail = G.conn_fail;
    r->gen_cpu_pct = 100.0 * (gen1 - gen0) / win;
    r->p50_us = hist_pct(&G.lat, 0.50) / 1e3;
    r->p99_us = hist_pct(&G.lat, 0.99) / 1e3;
    uint64_t ops;
    if (pubwl) {
        r->rate = (double)G.msgs_win / win;
        r->unit = "msg/s";
        r->deliv_s = (double)G.recv_win / win;
        r->op = "deliv";
        ops = G.received;
    } else if (wl == W_CHURN) {
        r->rate = (double)G.topic_ops_win / win;
        r->unit = "topic-op/s";
        r->deliv_s = NAN;
        r->op = "topic-op";
        ops = G.topic_ops_total;
    } else {
        r->rate = (double)G.polls_win / win;
        r->unit = "poll/s";
        r->deliv_s = NAN;
        r->op = "poll";
        ops = G.polls_total;
        if (r->base_rss_kb > 0 && r->rss_kb > 0 && r->conns_ok > 0)
            r->rss_per_conn_kb = (double)(r->rss_kb - r->base_rss_kb) / r->conns_ok;
    }
    double us_per_tick = 1e6 / (double)g_clk_tck;
    r->server_ticks = tk1 - tk0;
    if (!cpu_ok) tk1 = tk0 = 0;
    r->srv_cpu_pct = cpu_ok ? 100.0 * (double)(tk1 - tk0) / (double)g_clk_tck / ((double)(ts1 - ts0) / 1e9) : NAN;
    r->cpu_us_per_op = (cpu_ok && ops) ? (double)(tk1 - tk0) * us_per_tick / (double)ops : NAN;
    r->tree_cpu_us_per_op = (tg->root && ops) ? (double)(ttk1 - ttk0) * us_per_tick / (double)ops : NAN;

    /* free */
    for (int i = 0; i < G.n; i++) {
        conn_t *c = &G.c[i];
        buf_free(&c->rb);
        buf_free(&c->wb);
        free(c->topics);
        free(c->tbits);
        free(c->last_seq);
        free(c->expq);
        free(c->ctopics);
    }
    if (G.tsubs)
        for (int t = 0; t < w->space; t++) free(G.tsubs[t]);
    free(G.tsubs);
    free(G.tnsubs);
    free(G.stamp);
    free(G.c);
    free(G.heap);
    free(G.scratch);
    close(G.ep);
}

/* ------------------------------------------------------------------ null responder */

typedef struct {
    buf_t rb, wb;
    int closing;
} nconn_t;

static void null_main(int lfd, pid_t parent)
{
    signal(SIGINT, SIG_IGN); /* the parent stops us */
    signal(SIGTERM, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(0);
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
                /* frame requests */
                while (!dead && !c->closing) {
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

static pid_t g_null_pid;

static void start_null(target_t *t)
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
    if (pid == 0) null_main(lfd, parent);
    close(lfd);
    g_null_pid = pid;
    t->label = "null";
    t->port = ntohs(sa.sin_port);
    t->mpid = pid;
    t->root = 0;
}

static void stop_null(void)
{
    if (!g_null_pid) return;
    kill(g_null_pid, SIGTERM);
    for (int i = 0; i < 50; i++) {
        if (waitpid(g_null_pid, NULL, WNOHANG) == g_null_pid) {
            g_null_pid = 0;
            return;
        }
        sleep_ms(20);
    }
    kill(g_null_pid, SIGKILL);
    waitpid(g_null_pid, NULL, 0);
    g_null_pid = 0;
}

/* ------------------------------------------------------------------ the real server */

static pid_t g_srv_pid;
static char g_srv_log[PATH_MAX];
static int g_epmd_before = -1;

static int free_port(void)
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

static int try_connect(int port, int ms)
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
    if (ok) { /* be polite: say quit */
        ssize_t w = send(fd, "quit\r\n", 6, MSG_NOSIGNAL);
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

static const char *find_kraken(void)
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
static pid_t find_engine(pid_t root)
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

static void stop_server(void)
{
    if (!g_srv_pid) return;
    pinfo_t *t;
    int n = proc_tree(g_srv_pid, &t);
    kill(-g_srv_pid, SIGTERM);
    for (int i = 0; i < n; i++)
        if (t[i].pid != g_srv_pid && pid_alive(t[i].pid, t[i].start)) kill(t[i].pid, SIGTERM);
    int64_t dl = now_ns() + 10 * NS_PER_S;
    int reaped = 0;
    for (;;) {
        if (!reaped && waitpid(g_srv_pid, NULL, WNOHANG) == g_srv_pid) reaped = 1;
        int alive = !reaped;
        for (int i = 0; i < n; i++)
            if (t[i].pid != g_srv_pid && pid_alive(t[i].pid, t[i].start)) alive = 1;
        if (!alive) break;
        if (now_ns() > dl) {
            warnx_("server did not stop within 10 s of SIGTERM; sending SIGKILL");
            kill(-g_srv_pid, SIGKILL);
            for (int i = 0; i < n; i++)
                if (pid_alive(t[i].pid, t[i].start)) kill(t[i].pid, SIGKILL);
            if (!reaped) waitpid(g_srv_pid, NULL, 0);
            sleep_ms(200);
            break;
        }
        sleep_ms(50);
    }
    free(t);
    g_srv_pid = 0;
    /* epmd: only if the node started it (none before) and no node is registered any more
       (plain `epmd -kill` refuses while nodes are registered) */
    if (g_epmd_before == 0 && any_process_named("epmd")) {
        if (system("epmd -kill >/dev/null 2>&1") != 0 && g_verbose) warnx_("epmd -kill failed");
    }
}

static void start_server(target_t *tg)
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
    if (O.server_log) snprintf(g_srv_log, sizeof g_srv_log, "%s", O.server_log);
    else snprintf(g_srv_log, sizeof g_srv_log, "/tmp/kraken_bench_%d.log", (int)getpid());
    g_epmd_before = any_process_named("epmd");
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int in = open("/dev/null", O_RDONLY);
        int out = open(g_srv_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in >= 0) dup2(in, 0);
        if (out >= 0) {
            dup2(out, 1);
            dup2(out, 2);
        }
        if (chdir(root) < 0) _exit(126);
        setenv("KRAKEN_NODE_NAME", node, 1);
        execl(rk, rk, "run", "-noshell", "-kraken", "tcp_server_port", ports, "-kraken", "max_tcp_clients", "20000",
              "-kraken", "listen_ip", "\"127.0.0.1\"", (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    g_srv_pid = pid;
    fprintf(stderr, "kraken_bench: started %s run -noshell on port %d (pid %d, node %s, log %s)\n", rk, port,
            (int)pid, node, g_srv_log);
    int64_t dl = now_ns() + (int64_t)O.startup_timeout * NS_PER_S;
    for (;;) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            g_srv_pid = 0;
            print_log_tail();
            die("server exited during start-up (status %d)", WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
        }
        if (try_connect(port, 200)) break;
        if (g_stop || now_ns() > dl) {
            print_log_tail();
            stop_server();
            die("server did not accept connections on port %d within %d s", port, O.startup_timeout);
        }
        sleep_ms(100);
    }
    /* the engine: a kraken_engine process descended from the one we started */
    pid_t eng = 0;
    int64_t edl = now_ns() + 15 * NS_PER_S;
    while (!(eng = find_engine(pid)) && !g_stop && now_ns() < edl) sleep_ms(100);
    if (!eng) {
        warnx_("no kraken_engine process found under pid %d; measuring the whole process tree's root", (int)pid);
        eng = pid;
    }
    tg->label = "kraken";
    tg->port = port;
    tg->mpid = eng;
    tg->root = pid;
    fprintf(stderr, "kraken_bench: server accepts connections; engine pid %d\n", (int)eng);
}

static void cleanup(void)
{
    stop_server();
    stop_null();
}

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* ------------------------------------------------------------------ output */

static void fmt_num(char *b, size_t n, double v, int prec)
{
    if (isnan(v)) snprintf(b, n, "-");
    else snprintf(b, n, "%.*f", prec, v);
}

static void print_table(result_t res[][W_N], int ntargets, const target_t *tgs, int have_null)
{
    printf("\n%-8s %-6s %6s %10s %12s %-10s %10s %9s %9s %8s %9s %10s %-9s %10s %10s %7s %5s %5s %5s %5s",
           "workload", "server", "conns", "req/s", "rate", "unit", "deliv/s", "p50_us", "p99_us", "rss_MB",
           "rss/conn", "cpu_us/op", "op", "expected", "received", "lost", "dup", "bad", "unexp", "err");
    printf(" %5s %5s%s\n", "srv%", "gen%", have_null ? "  %null" : "");
    for (int w = 0; w < W_N; w++) {
        for (int t = 0; t < ntargets; t++) {
            result_t *r = &res[t][w];
            if (!r->ran) continue;
            char req[32], rate[32], dl[32], p50[32], p99[32], rss[32], rpc[32], cpu[32];
            fmt_num(req, sizeof req, r->req_s, 0);
            fmt_num(rate, sizeof rate, r->rate, 0);
            fmt_num(dl, sizeof dl, r->deliv_s, 0);
            fmt_num(p50, sizeof p50, r->p50_us, 0);
            fmt_num(p99, sizeof p99, r->p99_us, 0);
            fmt_num(rss, sizeof rss, r->rss_kb > 0 ? r->rss_kb / 1024.0 : NAN, 1);
            if (w == W_IDLE && r->rss_per_conn_kb != 0) snprintf(rpc, sizeof rpc, "%.2fkB", r->rss_per_conn_kb);
            else snprintf(rpc, sizeof rpc, "-");
            fmt_num(cpu, sizeof cpu, r->cpu_us_per_op, 3);
            int pub = (w == W_LAT || w == W_FAN);
            printf("%-8s %-6s %6d %10s %12s %-10s %10s %9s %9s %8s %9s %10s %-9s", wl_names[w], r->target,
                   r->conns_ok, req, rate, r->unit, dl, p50, p99, rss, rpc, cpu, r->op);
            if (pub && strcmp(r->target, "null"))
                printf(" %10" PRIu64 " %10" PRIu64 " %7" PRId64 " %5" PRIu64 " %5" PRIu64 " %5" PRIu64, r->expected,
                       r->received, r->lost, r->dup, r->bad, r->unexpected);
            else
                printf(" %10s %10s %7s %5s %5s %5s", "-", "-", "-", "-", "-", "-");
            char srv[32];
            if (isnan(r->srv_cpu_pct)) snprintf(srv, sizeof srv, "-");
            else snprintf(srv, sizeof srv, "%.0f%%", r->srv_cpu_pct);
            printf(" %5" PRIu64 " %5s %4.0f%%", r->errors + r->conn_fail, srv, r->gen_cpu_pct);
            if (have_null && strcmp(r->target, "null")) {
                result_t *nr = NULL;
                for (int u = 0; u < ntargets; u++)
                    if (!strcmp(tgs[u].label, "null")) nr = &res[u][w];
                if (nr && nr->ran && nr->rate > 0) printf(" %5.1f%%", 100.0 * r->rate / nr->rate);
                else printf(" %6s", "-");
            } else if (have_null) {
                printf(" %6s", "100%");
            }
            printf("\n");
        }
    }
    for (int t = 0; t < ntargets; t++) {
        int any = 0;
        for (int w = 0; w < W_N; w++) {
            result_t *r = &res[t][w];
            if (!r->ran) continue;
            if (r->have_tree) {
                if (!any) printf("\nwhole server process tree (Erlang VM + engine), %s:\n", tgs[t].label);
                any = 1;
                char cpu[32];
                fmt_num(cpu, sizeof cpu, r->tree_cpu_us_per_op, 3);
                printf("  %-8s rss %.1f MB, cpu %s us/%s\n", wl_names[w], r->tree_rss_kb / 1024.0, cpu, r->op);
            }
        }
    }
    for (int t = 0; t < ntargets; t++)
        for (int w = 0; w < W_N; w++) {
            result_t *r = &res[t][w];
            if (!r->ran) continue;
            if (r->setup_incomplete || r->quiesce_timeout || r->drain_timeout || r->proto_err || r->conn_fail)
                printf("note: %s/%s:%s%s%s proto_err=%" PRIu64 " conn_fail=%" PRIu64 "\n", wl_names[w], r->target,
                       r->setup_incomplete ? " setup-incomplete" : "", r->quiesce_timeout ? " quiesce-timeout" : "",
                       r->drain_timeout ? " drain-timeout" : "", r->proto_err, r->conn_fail);
            if (r->gen_cpu_pct > 90)
                printf("note: %s/%s: the generator used %.0f%% of a core; the figures may be bounded by it\n",
                       wl_names[w], r->target, r->gen_cpu_pct);
            if (w == W_IDLE && r->base_rss_kb > 0)
                printf("note: idle/%s: baseline rss %.1f MB before connecting, %.1f MB with %d connections (peak "
                       "%.1f MB)\n",
                       r->target, r->base_rss_kb / 1024.0, r->rss_kb / 1024.0, r->conns_ok, r->peak_rss_kb / 1024.0);
        }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* "median [min - max]" of n values (NaNs left out) into b */
static void fmt_spread(char *b, size_t bn, double *v, int n, int prec, const char *suffix)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i])) v[k++] = v[i];
    if (!k) {
        snprintf(b, bn, "-");
        return;
    }
    qsort(v, (size_t)k, sizeof *v, cmp_double);
    double med = k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
    snprintf(b, bn, "%.*f%s [%.*f-%.*f]", prec, med, suffix, prec, v[0], prec, v[k - 1]);
}

/* After --reps N: per workload, the median and range over the runs of the server's figures. */
static void print_summary(result_t res[][2][W_N], int ntargets, const target_t *tgs)
{
    int tk = -1, tn = -1;
    for (int t = 0; t < ntargets; t++) {
        if (!strcmp(tgs[t].label, "null")) tn = t;
        else tk = t;
    }
    if (tk < 0) return;
    printf("\nmedian [min-max] of %d runs, %s:\n", O.reps, tgs[tk].label);
    printf("%-8s %-27s %-29s %-21s %-21s %-27s %-21s %-27s %s\n", "workload", "rate", "deliv/s", "p50_us", "p99_us",
           "cpu_us/op", "rss/conn_kB", "%null", "lost dup bad unexp err");
    for (int w = 0; w < W_N; w++) {
        double rate[MAX_REPS], dl[MAX_REPS], p50[MAX_REPS], p99[MAX_REPS], cpu[MAX_REPS], rpc[MAX_REPS], pn[MAX_REPS];
        int n = 0;
        uint64_t lost = 0, dup = 0, bad = 0, unexp = 0, err = 0;
        const char *unit = "";
        for (int rp = 0; rp < O.reps; rp++) {
            result_t *r = &res[rp][tk][w];
            if (!r->ran) continue;
            unit = r->unit;
            int pub = (w == W_LAT || w == W_FAN);
            rate[n] = r->rate;
            dl[n] = pub ? r->deliv_s : NAN;
            p50[n] = r->p50_us;
            p99[n] = r->p99_us;
            cpu[n] = r->cpu_us_per_op;
            rpc[n] = w == W_IDLE ? r->rss_per_conn_kb : NAN;
            result_t *nr = tn >= 0 ? &res[rp][tn][w] : NULL;
            pn[n] = nr && nr->ran && nr->rate > 0 ? 100.0 * r->rate / nr->rate : NAN;
            if (pub) {
                lost += r->lost > 0 ? (uint64_t)r->lost : 0;
                dup += r->dup;
                bad += r->bad;
                unexp += r->unexpected;
            }
            err += r->errors + r->conn_fail;
            n++;
        }
        if (!n) continue;
        char a[64], b[64], c[64], d[64], e[64], f[64], g[64];
        fmt_spread(a, sizeof a, rate, n, 0, "");
        fmt_spread(b, sizeof b, dl, n, 0, "");
        fmt_spread(c, sizeof c, p50, n, 0, "");
        fmt_spread(d, sizeof d, p99, n, 0, "");
        fmt_spread(e, sizeof e, cpu, n, 3, "");
        fmt_spread(f, sizeof f, rpc, n, 2, "");
        fmt_spread(g, sizeof g, pn, n, 1, "%");
        printf("%-8s %-27s %-29s %-21s %-21s %-27s %-21s %-27s %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
               " %" PRIu64 "   (rate in %s)\n",
               wl_names[w], a, b, c, d, e, f, g, lost, dup, bad, unexp, err, unit);
    }
}

static void print_csv(result_t res[][W_N], int ntargets)
{
    printf("workload,server,conns,duration_s,req_per_s,rate,unit,deliv_per_s,p50_us,p99_us,rss_kb,peak_rss_kb,"
           "base_rss_kb,rss_per_conn_kb,cpu_us_per_op,op,tree_cpu_us_per_op,tree_rss_kb,expected,received,lost,dup,"
           "bad,unexpected,errors,proto_err,conn_fail,srv_cpu_pct,gen_cpu_pct\n");
    for (int w = 0; w < W_N; w++)
        for (int t = 0; t < ntargets; t++) {
            result_t *r = &res[t][w];
            if (!r->ran) continue;
            printf("%s,%s,%d,%.3f,%.1f,%.1f,%s,%.1f,%.1f,%.1f,%ld,%ld,%ld,%.3f,%.4f,%s,%.4f,%ld,%" PRIu64 ",%" PRIu64
                   ",%" PRId64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%.1f,%.1f\n",
                   wl_names[w], r->target, r->conns_ok, r->dur, r->req_s, r->rate, r->unit, r->deliv_s, r->p50_us,
                   r->p99_us, r->rss_kb, r->peak_rss_kb, r->base_rss_kb, r->rss_per_conn_kb, r->cpu_us_per_op, r->op,
                   r->tree_cpu_us_per_op, r->tree_rss_kb, r->expected, r->received, r->lost, r->dup, r->bad,
                   r->unexpected, r->errors, r->proto_err, r->conn_fail, r->srv_cpu_pct, r->gen_cpu_pct);
        }
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
        if (!strcmp(name, "csv")) { O.csv = 1; continue; }
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

int main(int argc, char **argv)
{
    parse_args(argc, argv);
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

    target_t tgs[2];
    int nt = 0;
    if (O.null_cmp || O.null_only) start_null(&tgs[nt++]);
    if (!O.null_only) {
        if (O.port) {
            tgs[nt].label = "kraken";
            tgs[nt].port = O.port;
            tgs[nt].mpid = O.pid;
            tgs[nt].root = 0;
            if (!try_connect(O.port, 2000)) die("nothing accepts connections on 127.0.0.1:%d", O.port);
            nt++;
        } else {
            start_server(&tgs[nt++]);
        }
    }

    static result_t res[MAX_REPS][2][W_N];
    printf("kraken_bench: duration %.1f s, depth %d, rate %s", O.duration, O.depth, O.rate > 0 ? "" : "unlimited");
    if (O.rate > 0) printf("%.0f req/s per publisher", O.rate);
    printf(", targets:");
    for (int t = 0; t < nt; t++) printf(" %s=127.0.0.1:%d(pid %d)", tgs[t].label, tgs[t].port, (int)tgs[t].mpid);
    printf("\n");
    for (int w = 0; w < W_N; w++) {
        if (!O.enabled[w]) continue;
        wparams_t *p = &P[w];
        if (w == W_LAT || w == W_FAN) {
            printf("  %-8s %d subscribers x %d topics of %d; %d publishers, batch %d, %d topic(s)/msg, %d-byte "
                   "payload; ",
                   wl_names[w], p->subs, p->tps, p->space, p->pubs, p->batch, p->tpm, p->payload);
            if (p->poll_ms) printf("poll every %d ms\n", p->poll_ms);
            else printf("poll continuously\n");
        }
        if (w == W_CHURN)
            printf("  %-8s %d clients alternately subscribe/unsubscribe %d topics of %d per request\n", wl_names[w],
                   p->subs, p->tps, p->space);
        if (w == W_IDLE)
            printf("  %-8s %d connections x %d topics of %d, each polling every %d ms\n", wl_names[w], p->subs,
                   p->tps, p->space, p->poll_ms);
    }
    /* Workload by workload, the null responder then the real server, so that the two runs compared
       in %null are adjacent in time.  A server started here (and the null responder) is restarted
       for every run: none
       inherits another's heap, retained entries or topics, and the idle workload's RSS baseline is a
       fresh server's.  Idle runs last: closing its 15,000 connections leaves as many sockets in
       TIME_WAIT for a minute, which slowed a latency run that followed it by about 7%. */
    static const int order[W_N] = { W_LAT, W_FAN, W_CHURN, W_IDLE };
    int started = 0, null_started = 0;
    for (int k = 0; k < W_N && !g_stop; k++) {
        int w = order[k];
        if (!O.enabled[w]) continue;
        for (int rp = 0; rp < O.reps && !g_stop; rp++)
            for (int t = 0; t < nt && !g_stop; t++) {
                if (tgs[t].root && started++) {
                    stop_server();
                    start_server(&tgs[t]);
                }
                if (!strcmp(tgs[t].label, "null") && null_started++) {
                    stop_null();
                    start_null(&tgs[t]);
                }
                fprintf(stderr, "kraken_bench: running %s against %s (run %d of %d)...\n", wl_names[w], tgs[t].label,
                        rp + 1, O.reps);
                run_workload(w, &tgs[t], &res[rp][t][w]);
            }
    }
    cleanup();
    if (O.csv) {
        print_csv(res[0], nt);
    } else {
        for (int rp = 0; rp < O.reps; rp++) {
            if (O.reps > 1) printf("\nrun %d of %d:\n", rp + 1, O.reps);
            print_table(res[rp], nt, tgs, O.null_cmp);
        }
        if (O.reps > 1) print_summary(res, nt, tgs);
    }
    if (g_stop) {
        fprintf(stderr, "kraken_bench: interrupted\n");
        return 130;
    }
    return 0;
}
