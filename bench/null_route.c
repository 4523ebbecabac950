/*
 * null_route.c - the channel table of the routing RESP null responder (`null-route`, null.c):
 * the least a pub/sub server must keep to deliver, channel name -> the connections (fds)
 * subscribed to it.  Open addressing on the name's FNV-1a hash; a channel stays once created
 * (the workloads' topic spaces are fixed), its fd list shrinks on unsubscribe and close.
 */
#include "kb.h"

#include <stdlib.h>

typedef struct {
    char *name;
    size_t len;
    int *fds;
    int n, cap;
} rchan_t;

static rchan_t *g_tab;
static size_t g_cap, g_count;

static uint64_t rhash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return h ^ (h >> 29);
}

static rchan_t *slot(const char *ch, size_t cl, int create)
{
    if (create && (g_count + 1) * 2 > g_cap) {
        size_t ncap = g_cap ? g_cap * 2 : 4096;
        rchan_t *nt = xcalloc(ncap, sizeof *nt);
        for (size_t i = 0; i < g_cap; i++) {
            if (!g_tab[i].name) continue;
            size_t j = rhash(g_tab[i].name, g_tab[i].len) & (ncap - 1);
            while (nt[j].name) j = (j + 1) & (ncap - 1);
            nt[j] = g_tab[i];
        }
        free(g_tab);
        g_tab = nt;
        g_cap = ncap;
    }
    if (!g_cap) return NULL;
    for (size_t j = rhash(ch, cl) & (g_cap - 1);; j = (j + 1) & (g_cap - 1)) {
        rchan_t *r = &g_tab[j];
        if (!r->name) {
            if (!create) return NULL;
            r->name = xmalloc(cl ? cl : 1);
            memcpy(r->name, ch, cl);
            r->len = cl;
            g_count++;
            return r;
        }
        if (r->len == cl && !memcmp(r->name, ch, cl)) return r;
    }
}

static int find_fd(const rchan_t *r, int fd)
{
    for (int i = 0; i < r->n; i++)
        if (r->fds[i] == fd) return i;
    return -1;
}

int route_subscribe(const char *ch, size_t cl, int fd)
{
    rchan_t *r = slot(ch, cl, 1);
    if (find_fd(r, fd) >= 0) return 0;
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 4;
        r->fds = xrealloc(r->fds, (size_t)r->cap * sizeof *r->fds);
    }
    r->fds[r->n++] = fd;
    return 1;
}

int route_unsubscribe(const char *ch, size_t cl, int fd)
{
    rchan_t *r = slot(ch, cl, 0);
    int i = r ? find_fd(r, fd) : -1;
    if (i < 0) return 0;
    r->fds[i] = r->fds[--r->n];
    return 1;
}

const int *route_subscribers(const char *ch, size_t cl, int *n)
{
    rchan_t *r = slot(ch, cl, 0);
    *n = r ? r->n : 0;
    return r ? r->fds : NULL;
}

void route_forget(int fd)
{
    for (size_t j = 0; j < g_cap; j++)
        if (g_tab[j].name) route_unsubscribe(g_tab[j].name, g_tab[j].len, fd);
}
