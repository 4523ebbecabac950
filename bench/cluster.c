/*
 * cluster.c - the cluster benchmark (--cluster; issue 12, docs/cluster.md plan item 6): its runs
 * and its table.  The nodes (one core, two proxies, started by `bin/kraken start`) and the probe
 * are in cluster_nodes.c.  For the latency (and, if enabled, fanout) workload, push subscribers,
 * publishers always on the core:
 *   on core     every client on the core ("direct");
 *   on proxies  the subscribers spread over the two proxies (one hop);
 *   mixed       a third of the subscribers on each node, latency split by where they are;
 * first closed loop (on core and on proxies alternately; the median published rate on the core
 * is the direct saturation rate), then the three at --cluster-load (0.5) of it, alternately.
 * Measured: deliveries/s, p50/p99, CPU per delivery of the core's engine and of the two
 * proxies' engines (/proc, same window), the connections the core accepted (/proc/net/tcp),
 * lost/duplicated.  Target (issue 12): at half the direct saturation rate, p99 through one hop
 * at most 1 ms above direct.
 */
#include "kb.h"

#include <inttypes.h>
#include <stdlib.h>

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
    else if (O.cluster_rate > 0) snprintf(ld, sizeof ld, "fixed %.0fk/s", rate_msgs / 1e3);
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
    if (O.cluster_pub_proxy) {
        /* the publishers on p1: every entry is forwarded to the core, and each publish waits for its
           confirmation (acknowledged publishes); `on core' keeps its subscribers on the core */
        for (int i = 0; i < 3; i++) tg[i].port = K[NP1].port;
        tg[0].sub_ports[0] = K[NC].port;
        tg[0].nsub_ports = 1;
    }
    printf("\ncluster (issue 12): core %s, proxies %s and %s (bin/kraken start, 127.0.0.1); push subscribers, "
           "publishers on %s;\n  on core: every client on the core; on proxies: the subscribers spread over the "
           "two proxies; mixed: a third of them on each node; %.1f s per run\n",
           K[NC].name, K[NP1].name, K[NP2].name, O.cluster_pub_proxy ? "proxy p1" : "the core", O.duration);
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
                O.rate = (O.cluster_rate > 0 ? O.cluster_rate : sat * O.cluster_load) / (P[w].pubs * P[w].batch);
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
