/* router_pattern.c - Redis pattern subscriptions (PSUBSCRIBE) in the router.
 *
 * One struct pattern per pattern in use, in a hash set by name and in a dense
 * array the publish path scans: for each pattern, each topic of the entry is
 * matched (glob.h), and every subscriber of a matching pattern gets the entry
 * marked with that topic, as an exact subscription would mark it; the
 * subscriber's protocol tells at formatting time which of its patterns
 * matched (Redis sends one pmessage per matching pattern).  Like Redis, the
 * cost is patterns x topics per publish, paid only while patterns exist.
 * A subscriber keeps its patterns in subscription order.
 *
 * In a cluster, a node's links hold patterns too (peers: another node's
 * local subscribers' patterns, cluster_pattern.c): they are counted apart
 * (npeers), make no pattern_hook call, and get an entry only when the
 * pattern_to_peers hook says it entered the cluster here, never one marked
 * `skip` (its node had the entry already: cluster_origin.c). */
#include <stdlib.h>
#include <string.h>

#include "glob.h"
#include "router_internal.h"

struct pattern {
    uint64_t hash;
    struct subscriber **subs;
    uint32_t nsubs, cap;
    uint32_t npeers;          /* how many of the subscribers are peers */
    bool upstream_pending;    /* pattern_hook's last answer (cluster) */
    uint32_t index;           /* in router->patterns */
    uint32_t len;
    char name[];
};

struct pat_key {
    const char *p;
    size_t len;
};

static uint64_t pat_hash(const void *item)
{
    return ((const struct pattern *)item)->hash;
}

static int pat_eq(const void *item, const void *key)
{
    const struct pattern *p = item;
    const struct pat_key *k = key;
    return p->len == k->len && memcmp(p->name, k->p, k->len) == 0;
}

void router_patterns_init(struct router *r)
{
    table_init(&r->pattern_set, pat_hash);
}

void router_patterns_free(struct router *r)
{
    for (uint32_t i = 0; i < r->npatterns; i++) {
        free(r->patterns[i]->subs);
        free(r->patterns[i]);
    }
    free(r->patterns);
    table_free(&r->pattern_set);
}

const char *pattern_name(const struct pattern *p, size_t *len)
{
    *len = p->len;
    return p->name;
}

uint32_t pattern_nsubs(const struct pattern *p)
{
    return p->nsubs;
}

uint32_t router_local_patterns(const struct router *r)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->npatterns; i++)
        n += r->patterns[i]->nsubs > r->patterns[i]->npeers;
    return n;
}

int router_foreach_local_pattern(const struct router *r,
                                 int (*fn)(const char *name, size_t len, void *arg), void *arg)
{
    for (uint32_t i = 0; i < r->npatterns; i++) {
        const struct pattern *p = r->patterns[i];
        int rc = p->nsubs > p->npeers ? fn(p->name, p->len, arg) : 0;
        if (rc)
            return rc;
    }
    return 0;
}

bool pattern_matches(const struct pattern *p, const struct topic *t)
{
    return glob_match(p->name, p->len, t->name, t->len);
}

static struct pattern *find(const struct router *r, const char *name, size_t len)
{
    struct pat_key k = {name, len};
    return table_find(&r->pattern_set, table_hash_bytes(name, len), pat_eq, &k);
}

static void pattern_free(struct router *r, struct pattern *p)
{
    struct pattern *last = r->patterns[--r->npatterns];
    r->patterns[p->index] = last;
    last->index = p->index;
    table_remove(&r->pattern_set, p);
    free(p->subs);
    free(p);
}

static struct pattern *intern(struct router *r, const char *name, size_t len)
{
    struct pattern *p = find(r, name, len);
    if (p)
        return p;
    size_t cap = r->patterns_cap;
    if (router_reserve((void **)&r->patterns, &cap, r->npatterns + 1, sizeof *r->patterns) < 0)
        return NULL;
    r->patterns_cap = (uint32_t)cap;
    p = calloc(1, sizeof *p + len);
    if (!p)
        return NULL;
    p->hash = table_hash_bytes(name, len);
    p->len = (uint32_t)len;
    memcpy(p->name, name, len);
    if (table_add(&r->pattern_set, p) < 0) {
        free(p);
        return NULL;
    }
    p->index = r->npatterns;
    r->patterns[r->npatterns++] = p;
    return p;
}

int router_psubscribe(struct router *r, struct subscriber *s, const char *pat, size_t len)
{
    struct pattern *p = intern(r, pat, len);
    if (!p)
        return -1;
    for (uint32_t i = 0; i < s->npatterns; i++)
        if (s->patterns[i] == p)
            return 0;
    size_t scap = s->pcap;
    if (router_reserve((void **)&s->patterns, &scap, s->npatterns + 1, sizeof *s->patterns) < 0)
        goto fail;
    s->pcap = (uint32_t)scap;
    size_t pcap = p->cap;
    if (router_reserve((void **)&p->subs, &pcap, p->nsubs + 1, sizeof *p->subs) < 0)
        goto fail;
    p->cap = (uint32_t)pcap;
    p->subs[p->nsubs++] = s;
    s->patterns[s->npatterns++] = p;
    r->stats.pattern_subscriptions++;
    if (s->peer)
        p->npeers++;
    else if (r->cfg.pattern_hook && (p->nsubs - p->npeers == 1 || p->upstream_pending))
        p->upstream_pending =
            r->cfg.pattern_hook(p->name, p->len, s, p->nsubs - p->npeers, r->cfg.cluster_arg);
    return 1;
fail:
    if (p->nsubs == 0)
        pattern_free(r, p);
    return -1;
}

/* Removes s from p (and p when it was its last subscriber). */
static void leave(struct router *r, struct pattern *p, struct subscriber *s)
{
    for (uint32_t i = 0; i < p->nsubs; i++)
        if (p->subs[i] == s) {
            p->subs[i] = p->subs[--p->nsubs];
            break;
        }
    r->stats.pattern_subscriptions--;
    if (s->peer)
        p->npeers--;
    else if (p->nsubs == p->npeers && r->cfg.pattern_hook) {
        p->upstream_pending = false;
        r->cfg.pattern_hook(p->name, p->len, NULL, 0, r->cfg.cluster_arg);
    }
    if (p->nsubs == 0)
        pattern_free(r, p);
}

int router_punsubscribe(struct router *r, struct subscriber *s, const char *pat, size_t len)
{
    struct pattern *p = find(r, pat, len);
    if (!p)
        return 0;
    for (uint32_t i = 0; i < s->npatterns; i++)
        if (s->patterns[i] == p) {
            memmove(&s->patterns[i], &s->patterns[i + 1],
                    (s->npatterns - i - 1) * sizeof *s->patterns);
            s->npatterns--;
            leave(r, p, s);
            return 1;
        }
    return 0;
}

void router_punsubscribe_all(struct router *r, struct subscriber *s)
{
    for (uint32_t i = 0; i < s->npatterns; i++)
        leave(r, s->patterns[i], s);
    free(s->patterns);
    s->patterns = NULL;
    s->npatterns = s->pcap = 0;
}

uint64_t router_route_patterns(struct router *r, struct subscriber *publisher, struct entry *e,
                               size_t *touched)
{
    uint64_t matches = 0;
    for (uint32_t k = 0; k < r->npatterns; k++) {
        struct pattern *p = r->patterns[k];
        for (uint32_t i = 0; i < e->ntopics; i++) {
            const struct topic *t = e->topics[i];
            if (!glob_match(p->name, p->len, t->name, t->len))
                continue;
            int peers = -1; /* not asked yet */
            for (uint32_t j = 0; j < p->nsubs; j++) {
                struct subscriber *s = p->subs[j];
                if (s == publisher || s->overflowed)
                    continue;
                if (s->peer) {
                    if (peers < 0)
                        peers = r->cfg.pattern_to_peers &&
                                r->cfg.pattern_to_peers(publisher, t, r->cfg.cluster_arg);
                    if (peers && !s->skip)
                        router_route_to(r, s, e, i, touched); /* (not counted: a node) */
                    continue;
                }
                matches++;
                router_route_to(r, s, e, i, touched);
            }
        }
    }
    return matches;
}
