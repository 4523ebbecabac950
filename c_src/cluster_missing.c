/* cluster_missing.c - the view's owners that are not live here (docs/cluster.md,
 * "Partitions").
 *
 * kraken_cluster gives the engine, with each configuration, the cores that
 * the view makes owners (and, outside a prepare, owners of the other set)
 * but that are not live here while a live member still sees them, or every
 * owner when no core is live here.  Entries of their topics may enter the
 * cluster at a core this node cannot hear, so a client's publish or
 * subscribe naming one is refused (cluster_reachable, cluster_subscribable)
 * rather than served from a partial picture.
 *
 * A topic's owner with the missing cores counted is found by the same
 * rendezvous hash over the live owners followed by the missing names
 * (struct missing_set): an index past the live ones is a missing core.  With
 * no missing core (the usual case) a check costs two comparisons. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"
#include "engine.h"
#include "log.h"

void cluster_missing_free(struct missing_set *m)
{
    for (size_t i = 0; m->names && i < m->n - m->nlive; i++)
        free(m->names[i]);
    free(m->names);
    free(m->hn);
    *m = (struct missing_set){0};
}

int cluster_missing_build(struct missing_set *m, const struct owner_set *s,
                         const struct cluster_name *miss, size_t nmiss)
{
    *m = (struct missing_set){0};
    m->hn = calloc(s->n + nmiss + 1, sizeof *m->hn);
    m->names = calloc(nmiss + 1, sizeof *m->names);
    if (!m->hn || !m->names) {
        free(m->hn);
        free(m->names);
        *m = (struct missing_set){0};
        return -1;
    }
    memcpy(m->hn, s->hn, s->n * sizeof *m->hn);
    m->n = m->nlive = s->n;
    for (size_t i = 0; i < nmiss; i++) {
        char *name = malloc(miss[i].len + 1);
        if (!name) {
            cluster_missing_free(m);
            return -1;
        }
        memcpy(name, miss[i].name, miss[i].len);
        name[miss[i].len] = 0;
        m->names[i] = name;
        m->hn[m->n++] = (struct cluster_hash_node){name, miss[i].len,
                                                   cluster_name_hash(name, miss[i].len)};
    }
    return 0;
}

/* The core a topic would belong to, under cur or alt, when the view makes
 * it an owner but it is not live here; NULL when none. */
static const char *missing_owner(const char *name, size_t len)
{
    if (cl.miss[0].n == cl.miss[0].nlive && cl.miss[1].n == cl.miss[1].nlive)
        return NULL; /* the usual case: every owner is live */
    uint64_t h = cluster_name_hash(name, len);
    for (int i = 0; i < 2; i++) {
        const struct missing_set *m = &cl.miss[i];
        if (m->n == m->nlive)
            continue;
        size_t k = (size_t)cluster_owner(m->hn, m->n, h);
        if (k >= m->nlive)
            return m->names[k - m->nlive];
    }
    return NULL;
}

/* Counts a request refused because of missing core `core`, with a warning
 * at most once a second.  Returns true. */
static bool refused(const char *core, const char *what)
{
    cl.missing_refused++;
    int64_t now = engine_now_ms();
    if (now - cl.missing_logged_ms >= 1000) {
        cl.missing_logged_ms = now;
        klog(LOG_WARNING,
             "cluster: core %s owns topics in the view but is not live here; %s to its "
             "topics are refused (%" PRIu64 " requests so far)",
             core, what, cl.missing_refused);
    }
    return true;
}

bool cluster_missing_refuse(const struct proto_slice *topics, uint32_t n, const char *what)
{
    for (uint32_t i = 0; i < n; i++) {
        const char *core = missing_owner(topics[i].p, topics[i].len);
        if (core)
            return refused(core, what);
    }
    return false;
}

bool cluster_missing_refuse_any(const char *what)
{
    for (int i = 0; i < 2; i++)
        if (cl.miss[i].n > cl.miss[i].nlive)
            return refused(cl.miss[i].names[0], what);
    return false;
}

bool cluster_subscribable(const struct proto_slice *topics, uint32_t n)
{
    return !cluster_missing_refuse(topics, n, "subscribes");
}

void cluster_missing_warn(const struct cluster_name *miss, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool known = false;
        for (size_t j = 0; j < cl.miss[0].n - cl.miss[0].nlive && !known; j++)
            known = strlen(cl.miss[0].names[j]) == miss[i].len &&
                    !memcmp(cl.miss[0].names[j], miss[i].name, miss[i].len);
        if (!known)
            klog(LOG_WARNING, "cluster: core %.*s owns topics in the view but is not live "
                 "here: its topics are unavailable on this node until it is back or the "
                 "view changes", (int)miss[i].len, miss[i].name);
    }
}
