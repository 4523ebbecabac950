/*
 * stats.c - the statistics of kraken_bench: the publish-to-receive latency histogram
 * (log-linear buckets, about 3% precision; hist_add is inline in kb.h) and its percentiles, and
 * the median and range of a figure over the runs of --reps.
 */
#include "kb.h"

#include <stdlib.h>

static double hist_val(int i)
{
    if (i < HSUB) return i;
    int shift = i / HSUB - 1, sub = i % HSUB;
    double lo = (double)((uint64_t)(HSUB + sub) << shift);
    return lo + (double)((uint64_t)1 << shift) / 2.0;
}

/* the value below which a fraction p of the samples lie (bucket midpoint); NaN if empty */
double hist_pct(const hist_t *h, double p)
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

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int median_range(double *v, int n, double *med, double *min, double *max)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i])) v[k++] = v[i];
    if (!k) return 0;
    qsort(v, (size_t)k, sizeof *v, cmp_double);
    *med = k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
    *min = v[0];
    *max = v[k - 1];
    return k;
}
