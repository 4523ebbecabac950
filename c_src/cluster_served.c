/* cluster_served.c - since when this core's retention of a topic it owns is
 * complete (docs/cluster.md, "Retroactive subscription"; plan item 1).
 *
 * A core answers a retroactive subscription (a client's, or a peer's
 * `link_retro`) for a topic it owns from its own retention.  That is only
 * right for horizons after it became the topic's owner: before that the
 * topic's entries entered the cluster at its previous owner, and only those
 * that this core held upstream, or its own clients published, are here.
 * So this file keeps the history of the owner sets this engine applied
 * (the last HIST_MAX configurations that changed them, each with the moment
 * it was applied: a unix second and a number of the router's publish
 * sequence of its own) and tells, for a topic owned here under `cur`, from
 * which moment its entries are all here:
 *
 *   - it became owned here under `cur` at configuration j (and stayed so
 *     since); j is the oldest one remembered when it was owned here in all
 *     of them (the moment of the oldest is then a bound, not the truth:
 *     horizons before it are answered NOT_FOUND);
 *   - if at j it was owned here under `alt` too (a failure of its owner,
 *     a move's release), its entries enter here from j on: complete since j;
 *     if not (a move's switch: nodes that did not switch yet still publish
 *     to the previous owner, under `alt`), complete only from the first
 *     later configuration where `alt` agrees (the release);
 *   - unless the topic was held upstream here, confirmed, when it became
 *     owned here, and its previous owner is still live (a move, not a
 *     failure: nothing of it was lost in flight): then every entry since
 *     that upstream subscription arrived here, and that is the moment
 *     (noted on the topic by cluster_served_gained()).
 *
 * A retroactive subscription from before that moment is answered NOT_FOUND
 * (cluster_retro_classify): the client reloads, as Kraken's contract says.
 * The inverse case, the previous owner answering for a topic it gave away,
 * is cluster_move.c's: a topic it still holds keeps the moment its
 * retention was complete from (cluster_served_since()) as its upstream
 * subscription's.
 *
 * The same history tells which cores owned a topic since a horizon
 * (cluster_served_owners: the entries since then entered the cluster at
 * those, each marked there, cluster_entered.h), and to which core this
 * node forwarded an entry of its own (cluster_served_owner_at): what a
 * retroactive subscription across a move asks for (cluster_retro.c). */
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"
#include "engine.h"
#include "log.h"
#include "topic.h"

#define HIST_MAX 32

/* One owner set, with the names copied (cores come and go). */
struct hist_set {
    struct cluster_hash_node *hn;
    size_t n;
    int self; /* index of this node in hn, -1: not in it */
};

struct hist_cfg {
    uint64_t id;
    struct cluster_point at;
    struct hist_set cur, alt;
    char *names;
};

static struct hist_cfg hist[HIST_MAX]; /* a ring: the newest at (head + count - 1) */
static size_t head, count;
static uint64_t next_id = 1;
/* Out of memory for the history: it was forgotten, and nothing before this
 * moment is vouched for until a configuration is remembered again. */
static struct cluster_point floor_at = {INT64_MIN, 0};

static struct hist_cfg *nth(size_t i) /* 0: the oldest remembered */
{
    return &hist[(head + i) % HIST_MAX];
}

static void cfg_free(struct hist_cfg *c)
{
    free(c->cur.hn);
    free(c->alt.hn);
    free(c->names);
    memset(c, 0, sizeof *c);
}

void cluster_served_free(void)
{
    for (size_t i = 0; i < count; i++)
        cfg_free(nth(i));
    head = count = 0;
}

static bool owned_in(const struct hist_set *s, uint64_t h)
{
    return s->self >= 0 && cluster_owner(s->hn, s->n, h) == s->self;
}

static bool same_set(const struct hist_set *a, const struct owner_set *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (a->hn[i].len != b->hn[i].len || memcmp(a->hn[i].name, b->hn[i].name, a->hn[i].len))
            return false;
    return true;
}

/* Copies s (its names into *p). */
static int copy_set(struct hist_set *d, const struct owner_set *s, char **p)
{
    d->n = s->n;
    d->self = -1;
    d->hn = calloc(s->n + 1, sizeof *d->hn);
    if (!d->hn)
        return -1;
    for (size_t i = 0; i < s->n; i++) {
        memcpy(*p, s->hn[i].name, s->hn[i].len);
        d->hn[i] = (struct cluster_hash_node){*p, s->hn[i].len, s->hn[i].hash};
        *p += s->hn[i].len;
        if (cl.cores[s->core[i]]->self)
            d->self = (int)i;
    }
    return 0;
}

uint64_t cluster_served_next_id(void)
{
    return next_id;
}

struct cluster_point cluster_served_now(void)
{
    return (struct cluster_point){engine_unix_time(), ++cl.net.eng->router.seq};
}

void cluster_served_push(struct cluster_point at)
{
    if (count) {
        const struct hist_cfg *last = nth(count - 1);
        if (same_set(&last->cur, &cl.cur) && same_set(&last->alt, &cl.alt))
            return; /* the owners did not change (a core joined the live set only) */
    }
    size_t len = 0;
    for (size_t i = 0; i < cl.cur.n; i++)
        len += cl.cur.hn[i].len;
    for (size_t i = 0; i < cl.alt.n; i++)
        len += cl.alt.hn[i].len;
    struct hist_cfg c = {next_id++, at, {0}, {0}, malloc(len + 1)};
    char *p = c.names;
    if (!p || copy_set(&c.cur, &cl.cur, &p) < 0 || copy_set(&c.alt, &cl.alt, &p) < 0) {
        cfg_free(&c);
        cluster_served_free();
        floor_at = at;
        return;
    }
    if (count == HIST_MAX) {
        cfg_free(nth(0));
        head = (head + 1) % HIST_MAX;
        count--;
    }
    *nth(count++) = c;
}

bool cluster_served_since(const struct topic *t, struct cluster_point *since)
{
    if (!count) { /* no configuration yet (a core alone), or forgotten */
        *since = floor_at;
        return true;
    }
    *since = CLUSTER_NEVER;
    uint64_t h = topic_fnv(t);
    if (!owned_in(&nth(count - 1)->cur, h))
        return false;
    size_t j = count - 1;
    while (j > 0 && owned_in(&nth(j - 1)->cur, h))
        j--;
    const struct topic_upstream *u = topic_up(t);
    if (u->served_cfg == nth(j)->id) { /* held upstream when it became ours */
        *since = (struct cluster_point){u->served_time, u->served_seq};
        return true;
    }
    for (size_t i = j; i < count; i++)
        if (owned_in(&nth(i)->alt, h)) {
            *since = nth(i)->at;
            break;
        }
    return true;
}

void cluster_served_gained(struct topic *t, struct cluster_point since)
{
    struct topic_upstream *u = topic_upstream(t);
    if (!u) {
        /* Its retention is then taken as complete only from the moment the
         * owner sets say (cluster_served_since): a retro_subscribe reaching
         * back before it asks the previous owners, as after any move. */
        klog(LOG_WARNING, "cluster: out of memory noting since when topic %.*s is served here",
             (int)(t->len > 200 ? 200 : t->len), t->name);
        return;
    }
    u->served_time = since.time;
    u->served_seq = since.seq;
    u->served_cfg = next_id;
}

/* The live core (index in cl.cores) named by n: CLUSTER_OWNER_SELF for this
 * node (a drained core is not in its own live set), -1: none. */
static int live_index(const struct cluster_hash_node *n)
{
    if (n->len == cl.self_len && !memcmp(n->name, cl.self, n->len))
        return CLUSTER_OWNER_SELF;
    for (size_t i = 0; i < cl.n; i++)
        if (cl.cores[i]->len == n->len && !memcmp(cl.cores[i]->name, n->name, n->len))
            return cl.cores[i]->self ? CLUSTER_OWNER_SELF : (int)i;
    return -1;
}

/* The moments of the remembered configurations, oldest first, into at. */
static void moments(struct cluster_point *at)
{
    for (size_t i = 0; i < count; i++)
        at[i] = nth(i)->at;
}

int cluster_served_owners(const struct topic *t, bool by_seq, int64_t h, int *out,
                          int64_t *since, int max, bool *self_too)
{
    *self_too = false;
    if (!count)
        return -1;
    struct cluster_point at[HIST_MAX];
    moments(at);
    /* The first configuration this engine applied stands for the time
     * before it only back to the engine's start (its clients were held
     * meanwhile): what was published before the start, at a node of this
     * name or elsewhere (a whole cluster restarted), is not vouched for,
     * as on a single node.  A register horizon is after the start. */
    bool whole = nth(0)->id == 1 && floor_at.time == INT64_MIN &&
                 (by_seq || h >= cl.net.eng->router.start_time);
    long first = cluster_hist_first(at, count, whole, by_seq, h);
    if (first < 0)
        return -1;
    uint64_t hh = topic_fnv(t);
    int n = 0;
    for (size_t i = (size_t)first; i < count; i++) {
        const struct hist_set *sets[2] = {&nth(i)->cur, &nth(i)->alt};
        for (int j = 0; j < 2; j++) {
            int o = cluster_owner(sets[j]->hn, sets[j]->n, hh);
            if (o < 0)
                continue;
            int k = live_index(&sets[j]->hn[o]);
            if (k == CLUSTER_OWNER_SELF) {
                *self_too = true;
                continue;
            }
            if (k < 0)
                return -1; /* not live: what entered there cannot be asked for */
            bool dup = false;
            for (int m = 0; m < n && !dup; m++)
                dup = out[m] == k;
            if (dup)
                continue;
            if (n == max)
                return -1;
            since[n] = nth(i)->at.time;
            out[n++] = k;
        }
    }
    return n;
}

int cluster_served_owner_at(const struct topic *t, uint64_t seq)
{
    if (!count)
        return -1;
    struct cluster_point at[HIST_MAX];
    moments(at);
    long i = cluster_hist_at(at, count, seq);
    if (i < 0)
        return -1;
    const struct hist_set *s = &nth((size_t)i)->cur;
    int o = cluster_owner(s->hn, s->n, topic_fnv(t));
    return o < 0 ? -1 : live_index(&s->hn[o]);
}
