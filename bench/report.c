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
    return t->kind == SK_NULL || t->kind == SK_NULL_RESP;
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

