/*
 * report.c - what kraken_bench prints: the per-run table of every workload and target (with
 * %null, the rate as a percentage of the null responder's in the same run), the median and
 * range over --reps runs, the CSV line per workload and target, and the push comparison table
 * (deliveries/s, latency, server CPU per delivery, RSS, losses) of the peers.
 */
#include "kb.h"

#include <inttypes.h>
#include <stdlib.h>

static int is_null(const target_t *t)
{
    return t->kind == SK_NULL || t->kind == SK_NULL_RESP || t->kind == SK_NULL_ROUTE;
}

/* a null responder that delivers nothing (its deliveries, latency and losses mean nothing) */
static int delivers_nothing(const target_t *t)
{
    return is_null(t) && t->kind != SK_NULL_ROUTE;
}

static void fmt_num(char *b, size_t n, double v, int prec)
{
    if (isnan(v)) snprintf(b, n, "-");
    else snprintf(b, n, "%.*f", prec, v);
}

void print_table(result_t res[][W_N], int ntargets, const target_t *tgs, int have_null)
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
            if (pub && !is_null(&tgs[t]))
                printf(" %10" PRIu64 " %10" PRIu64 " %7" PRId64 " %5" PRIu64 " %5" PRIu64 " %5" PRIu64, r->expected,
                       r->received, r->lost, r->dup, r->bad, r->unexpected);
            else
                printf(" %10s %10s %7s %5s %5s %5s", "-", "-", "-", "-", "-", "-");
            char srv[32];
            if (isnan(r->srv_cpu_pct)) snprintf(srv, sizeof srv, "-");
            else snprintf(srv, sizeof srv, "%.0f%%", r->srv_cpu_pct);
            printf(" %5" PRIu64 " %5s %4.0f%%", r->errors + r->conn_fail, srv, r->gen_cpu_pct);
            if (have_null && !is_null(&tgs[t])) {
                result_t *nr = tgs[t].null_ref >= 0 ? &res[tgs[t].null_ref][w] : NULL;
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

/* "median [min - max]" of n values (NaNs left out) into b */
static void fmt_spread(char *b, size_t bn, double *v, int n, int prec, const char *suffix)
{
    double med, min, max;
    if (!median_range(v, n, &med, &min, &max)) {
        snprintf(b, bn, "-");
        return;
    }
    snprintf(b, bn, "%.*f%s [%.*f-%.*f]", prec, med, suffix, prec, min, prec, max);
}

/* After --reps N: per workload, the median and range over the runs of the server's figures. */
void print_summary(result_t res[][MAX_TARGETS][W_N], int ntargets, const target_t *tgs)
{
    int tk = -1;
    for (int t = 0; t < ntargets; t++)
        if (!is_null(&tgs[t])) tk = t;
    if (tk < 0) return;
    int tn = tgs[tk].null_ref;
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

void print_csv(result_t res[][W_N], int ntargets, const target_t *tgs)
{
    printf("workload,server,conns,duration_s,req_per_s,rate,unit,deliv_per_s,p50_us,p99_us,rss_kb,peak_rss_kb,"
           "base_rss_kb,rss_per_conn_kb,cpu_us_per_op,op,tree_cpu_us_per_op,tree_rss_kb,expected,received,lost,dup,"
           "bad,unexpected,errors,proto_err,conn_fail,srv_cpu_pct,gen_cpu_pct\n");
    (void)tgs;
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


/* ---- the push comparison */

/* the figure f of target t, workload w, over the runs: "median" or "median [min-max]" */
static void peer_fig(char *b, size_t bn, result_t res[][MAX_TARGETS][W_N], int t, int w, int prec, int range,
                     double (*f)(const result_t *, const result_t *), int null_ref)
{
    double v[MAX_REPS];
    int n = 0;
    for (int rp = 0; rp < O.reps; rp++) {
        const result_t *r = &res[rp][t][w];
        if (!r->ran) continue;
        v[n++] = f(r, null_ref >= 0 ? &res[rp][null_ref][w] : NULL);
    }
    double med, min, max;
    if (!median_range(v, n, &med, &min, &max)) snprintf(b, bn, "-");
    else if (range && n > 1) snprintf(b, bn, "%.*f [%.*f-%.*f]", prec, med, prec, min, prec, max);
    else snprintf(b, bn, "%.*f", prec, med);
}

static double f_deliv(const result_t *r, const result_t *nr) { (void)nr; return r->deliv_s; }
static double f_rate(const result_t *r, const result_t *nr) { (void)nr; return r->rate; }
static double f_p50(const result_t *r, const result_t *nr) { (void)nr; return r->p50_us; }
static double f_p99(const result_t *r, const result_t *nr) { (void)nr; return r->p99_us; }
static double f_cpu(const result_t *r, const result_t *nr) { (void)nr; return r->cpu_us_per_op; }
static double f_rss(const result_t *r, const result_t *nr) { (void)nr; return r->rss_kb > 0 ? r->rss_kb / 1024.0 : NAN; }
static double f_srv(const result_t *r, const result_t *nr) { (void)nr; return r->srv_cpu_pct; }
static double f_gen(const result_t *r, const result_t *nr) { (void)nr; return r->gen_cpu_pct; }
static double f_null(const result_t *r, const result_t *nr)
{
    return nr && nr->ran && nr->rate > 0 ? 100.0 * r->rate / nr->rate : NAN;
}

/* median over the runs of figure f, NAN if the target did not run */
static double peer_med(result_t res[][MAX_TARGETS][W_N], int t, int w, double (*f)(const result_t *, const result_t *),
                       int null_ref)
{
    double v[MAX_REPS], med, min, max;
    int n = 0;
    if (t < 0) return NAN;
    for (int rp = 0; rp < O.reps; rp++)
        if (res[rp][t][w].ran) v[n++] = f(&res[rp][t][w], null_ref >= 0 ? &res[rp][null_ref][w] : NULL);
    return median_range(v, n, &med, &min, &max) ? med : NAN;
}

static int find_target(int nt, const target_t *tgs, const char *label)
{
    for (int t = 0; t < nt; t++)
        if (!strcmp(tgs[t].label, label)) return t;
    return -1;
}

static int prec_of(double v)
{
    return fabs(v) >= 1000 ? 0 : fabs(v) >= 10 ? 1 : 3;
}

static void verdict(const char *what, double v, double limit, int le, const char *unit, const char *skip)
{
    if (skip) printf("  %-62s not measured: %s\n", what, skip);
    else if (isnan(v) || isnan(limit)) printf("  %-62s -\n", what);
    else
        printf("  %-62s %.*f %s (limit %s %.*f): %s\n", what, prec_of(v), v, unit, le ? "<=" : ">=", prec_of(limit),
               limit, (le ? v <= limit : v >= limit) ? "met" : "NOT met");
}

void print_peer_table(result_t res[][MAX_TARGETS][W_N], int ntargets, const target_t *tgs)
{
    if (O.reps > 1) printf("\npush comparison, median [min-max] of %d runs:\n", O.reps);
    else printf("\npush comparison:\n");
    printf("%-8s %-12s %-11s %5s %-27s %8s %-21s %-21s %7s %10s %7s %7s %5s %5s %5s %5s %5s\n", "workload", "target",
           "proto", "conns", "deliv/s", "p50_us", "p99_us", "srv_us/deliv", "rss_MB", "msg/s", "%null", "lost", "dup",
           "bad", "err", "srv%", "gen%");
    for (int w = 0; w < W_N; w++) {
        for (int t = 0; t < ntargets; t++) {
            const target_t *tg = &tgs[t];
            int ran = 0, conns = 0;
            int64_t lost = 0;
            uint64_t dup = 0, bad = 0, err = 0;
            for (int rp = 0; rp < O.reps; rp++) {
                result_t *r = &res[rp][t][w];
                if (!r->ran) continue;
                ran++;
                conns = r->conns_ok;
                if (!delivers_nothing(tg)) {
                    lost += r->lost;
                    dup += r->dup;
                    bad += r->bad + r->unexpected;
                }
                err += r->errors + r->conn_fail + r->proto_err;
            }
            if (!ran) {
                if (tg->skip && (w == W_LAT || w == W_FAN))
                    printf("%-8s %-12s %-11s %s\n", wl_names[w], tg->label, tg->proto->name, tg->skip);
                continue;
            }
            char dl[64], p50[64], p99[64], cpu[64], rss[32], rate[32], pn[32], srv[32], gen[32];
            peer_fig(dl, sizeof dl, res, t, w, 0, 1, f_deliv, -1);
            peer_fig(p50, sizeof p50, res, t, w, 0, 0, f_p50, -1);
            peer_fig(p99, sizeof p99, res, t, w, 0, 1, f_p99, -1);
            peer_fig(cpu, sizeof cpu, res, t, w, 3, 1, f_cpu, -1);
            peer_fig(rss, sizeof rss, res, t, w, 1, 0, f_rss, -1);
            peer_fig(rate, sizeof rate, res, t, w, 0, 0, f_rate, -1);
            if (is_null(tg)) snprintf(pn, sizeof pn, "100%%");
            else {
                peer_fig(pn, sizeof pn, res, t, w, 1, 0, f_null, tg->null_ref);
                if (strcmp(pn, "-")) strcat(pn, "%");
            }
            peer_fig(srv, sizeof srv, res, t, w, 0, 0, f_srv, -1);
            peer_fig(gen, sizeof gen, res, t, w, 0, 0, f_gen, -1);
            if (strcmp(srv, "-")) strcat(srv, "%");
            strcat(gen, "%");
            if (delivers_nothing(tg))
                printf("%-8s %-12s %-11s %5d %-27s %8s %-21s %-21s %7s %10s %7s %7s %5s %5s %5" PRIu64 " %5s %5s\n",
                       wl_names[w], tg->label, tg->proto->name, conns, "-", "-", "-", "-", rss, rate, pn, "-", "-", "-",
                       err, srv, gen);
            else
                printf("%-8s %-12s %-11s %5d %-27s %8s %-21s %-21s %7s %10s %7s %7" PRId64 " %5" PRIu64 " %5" PRIu64
                       " %5" PRIu64 " %5s %5s\n",
                       wl_names[w], tg->label, tg->proto->name, conns, dl, p50, p99, cpu, rss, rate, pn, lost, dup, bad,
                       err, srv, gen);
        }
    }
    printf("(deliv/s: valid deliveries received per second; redis, kraken-redis and nats deliver an entry once per\n"
           " channel, Kraken once per entry and subscriber; srv_us/deliv: the server process's utime+stime over\n"
           " the run and drain / deliveries; msg/s: entries published per second; %%null: msg/s as %% of the null\n"
           " responder of the same protocol (for RESP the routing one, null-route, which delivers); lost/dup/bad/err\n"
           " summed over the runs)\n");

    /* the targets of issue 10 */
    int kr = find_target(ntargets, tgs, "kraken-redis"), rd = find_target(ntargets, tgs, "redis");
    int kp = find_target(ntargets, tgs, "kraken-push");
    const char *kskip = kr < 0 ? "kraken-redis not in --peer-targets" : tgs[kr].skip ? "kraken-redis skipped (above)" : NULL;
    const char *rskip = rd < 0 ? "redis not in --peer-targets" : tgs[rd].skip ? "redis skipped (above)" : NULL;
    const char *skip = kskip ? kskip : rskip;
    printf("targets (issue 10):\n");
    if (O.enabled[W_LAT])
        verdict("latency p99, kraken-redis <= redis (us)", peer_med(res, kr, W_LAT, f_p99, -1),
                peer_med(res, rd, W_LAT, f_p99, -1), 1, "us", skip);
    for (int w = W_LAT; w <= W_FAN; w++) {
        if (!O.enabled[w]) continue;
        char what[96];
        snprintf(what, sizeof what, "%s server CPU/delivery, kraken-redis <= half of redis's", wl_names[w]);
        double rc = peer_med(res, rd, w, f_cpu, -1);
        verdict(what, peer_med(res, kr, w, f_cpu, -1), rc / 2, 1, "us", skip);
        snprintf(what, sizeof what, "%s deliveries/s, kraken-redis >= 1.5x redis's", wl_names[w]);
        double rdl = peer_med(res, rd, w, f_deliv, -1);
        verdict(what, peer_med(res, kr, w, f_deliv, -1), rdl * 1.5, 0, "/s", skip);
        snprintf(what, sizeof what, "%s   or: kraken-redis >= 85%% of the routing RESP null's rate", wl_names[w]);
        verdict(what, kr >= 0 ? peer_med(res, kr, w, f_null, tgs[kr].null_ref) : NAN, 85, 0, "%",
                kskip ? kskip : (kr >= 0 && tgs[kr].null_ref < 0 ? "no RESP null run (--null)" : NULL));
    }
    if (O.enabled[W_LAT])
        verdict("latency p99, kraken-push < 500 us", peer_med(res, kp, W_LAT, f_p99, -1), 500, 1, "us",
                kp < 0 ? "kraken-push not in --peer-targets" : tgs[kp].skip ? "kraken-push skipped (above)" : NULL);
}
