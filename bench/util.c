/*
 * util.c - small things every file of kraken_bench uses: fatal errors and warnings, allocation
 * that cannot fail, sleeping, the seeded random generator, growable byte buffers, and the
 * hex table used to stamp and read payloads.  The hot helpers themselves (buf_append, put_hex,
 * get_hex, fmt_u, now_ns) are inline in kb.h.
 */
#include "kb.h"

#include <sched.h>
#include <unistd.h>

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>

volatile sig_atomic_t g_stop;
int g_verbose;
uint64_t g_rng = 88172645463325252ULL;

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kraken_bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

void warnx_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kraken_bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory");
    return p;
}

void *xcalloc(size_t a, size_t b)
{
    void *p = calloc(a ? a : 1, b ? b : 1);
    if (!p) die("out of memory");
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) die("out of memory");
    return p;
}

void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * NS_PER_MS };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !g_stop) {
    }
}

uint32_t rnd(uint32_t n)
{
    return n ? (uint32_t)(splitmix(&g_rng) % n) : 0;
}

int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* the slow half of buf_reserve: compact, then grow by doubling */
void buf_grow(buf_t *b, size_t extra)
{
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

void buf_free(buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

const char hexd[] = "0123456789abcdef";
int8_t hexval[256];

void hexval_init(void)
{
    memset(hexval, -1, sizeof hexval);
    for (int i = 0; i < 16; i++) hexval[(unsigned char)hexd[i]] = (int8_t)i;
}

/* Pins the calling process (and what it forks and execs) to one CPU, so that the generator
   and the server never wait for each other's CPU or migrate between them: the benchmark
   measures the server, not the scheduler.  Multi-threaded servers (nats-server) get one
   CPU too, like single-threaded Redis and Kraken.  cpu -1: every CPU again. */
void bench_pin(int cpu)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (O.no_pin || n < 2) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (cpu < 0)
        for (int i = 0; i < n && i < CPU_SETSIZE; i++) CPU_SET(i, &set);
    else
        CPU_SET(cpu % (int)n, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0 && g_verbose)
        warnx_("sched_setaffinity(%d): %s", cpu, strerror(errno));
}
