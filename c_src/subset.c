/* subset.c - inline hash set of a subscriber's subscriptions; see subset.h. */
#include "subset.h"

#include <stdlib.h>

#include "table.h"

static inline uint32_t home(const struct subset *s, const struct topic *t)
{
    return (uint32_t)table_hash_ptr(t) & (s->cap - 1);
}

void subset_free(struct subset *s)
{
    free(s->v);
    subset_init(s);
}

struct subslot *subset_find(const struct subset *s, const struct topic *t)
{
    if (s->count == 0)
        return NULL;
    for (uint32_t i = home(s, t);; i = (i + 1) & (s->cap - 1)) {
        if (s->v[i].topic == t)
            return &s->v[i];
        if (!s->v[i].topic)
            return NULL;
    }
}

static int resize(struct subset *s, uint32_t cap)
{
    struct subslot *v = calloc(cap, sizeof *v);
    if (!v)
        return -1;
    struct subset n = {v, cap, 0};
    for (uint32_t i = 0; i < s->cap; i++) {
        if (!s->v[i].topic)
            continue;
        uint32_t j = home(&n, s->v[i].topic);
        while (v[j].topic)
            j = (j + 1) & (cap - 1);
        v[j] = s->v[i];
    }
    free(s->v);
    s->v = v;
    s->cap = cap;
    return 0;
}

int subset_add(struct subset *s, struct topic *t, uint32_t slot)
{
    if ((uint64_t)(s->count + 1) * 4 > (uint64_t)s->cap * 3 &&
        resize(s, s->cap ? s->cap * 2 : 4) < 0)
        return -1;
    uint32_t i = home(s, t);
    while (s->v[i].topic)
        i = (i + 1) & (s->cap - 1);
    s->v[i].topic = t;
    s->v[i].slot = slot;
    s->count++;
    return 0;
}

int subset_remove(struct subset *s, const struct topic *t)
{
    struct subslot *found = subset_find(s, t);
    if (!found)
        return 0;
    uint32_t mask = s->cap - 1;
    uint32_t hole = (uint32_t)(found - s->v);
    for (uint32_t j = (hole + 1) & mask; s->v[j].topic; j = (j + 1) & mask) {
        uint32_t h = home(s, s->v[j].topic);
        /* j may move into the hole unless its home lies cyclically in (hole, j]. */
        int stays = hole <= j ? (h > hole && h <= j) : (h > hole || h <= j);
        if (!stays) {
            s->v[hole] = s->v[j];
            hole = j;
        }
    }
    s->v[hole].topic = NULL;
    s->count--;
    /* Arrays up to SUBSET_KEEP slots are kept however empty: clients that
     * subscribe and unsubscribe batches of topics over and over would
     * otherwise regrow (and rehash) them every time. */
    if (s->cap > SUBSET_KEEP && s->count * 8 < s->cap)
        (void)resize(s, s->cap / 2); /* on failure keep the larger array */
    return 1;
}
