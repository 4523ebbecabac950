/* cluster_pin.c - sticky parents (see cluster_pin.h): the pin of a topic
 * held below parents, and the unsubscribes waiting for their parent's
 * barrier, one FIFO per upstream (a ring, `version` numbers ascending). */
#include "cluster_pin.h"

#include <stdlib.h>

/* Whether a local holder (not a peer) has t. */
static bool held(const struct topic *t)
{
    return t->nsubs > t->npeers;
}

void *pin_hold(struct topic *t, void *hashed, bool parent)
{
    if (!topic_up(t)->pin && parent) {
        struct topic_upstream *u = topic_upstream(t);
        if (u) /* (out of memory: it goes by the hash, a duplicate is possible) */
            u->pin = hashed;
    }
    return pin_route(t, hashed);
}

int pin_release(struct pin_fifo *f, struct topic_index *x, struct topic *t, void *up,
                uint64_t ver)
{
    (void)x;
    if (topic_up(t)->pin != up || !up)
        return 0; /* not pinned (a static upstream): nothing to wait for */
    struct topic_upstream *u = t->up; /* (pinned: it has one) */
    if (ver == 0) {
        u->pin = NULL; /* no link: nothing more comes from it */
        return 0;
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        struct pin_wait *v = malloc(cap * sizeof *v);
        if (!v) {
            u->pin = NULL; /* (the hash again: a duplicate is possible) */
            return -1;
        }
        for (size_t i = 0; i < f->n; i++)
            v[i] = f->v[(f->head + i) & (f->cap - 1)];
        free(f->v);
        f->v = v;
        f->head = 0;
        f->cap = cap;
    }
    f->v[(f->head + f->n++) & (f->cap - 1)] = (struct pin_wait){t, ver};
    u->pin_waits++;
    topic_ref(t);
    return 0;
}

/* Pops the oldest wait: its topic is unpinned when nothing more waits for
 * up and nobody holds it (then `unpinned', if not NULL, is told). */
static void pop(struct pin_fifo *f, struct topic_index *x, void *up,
                void (*unpinned)(struct topic *t, void *up))
{
    struct topic *t = f->v[f->head].t;
    f->head = (f->head + 1) & (f->cap - 1);
    f->n--;
    struct topic_upstream *u = t->up; /* (it waited: it has one) */
    if (--u->pin_waits == 0 && u->pin == up && !held(t)) {
        u->pin = NULL;
        if (unpinned)
            unpinned(t, up);
    }
    topic_unref(x, t);
}

void pin_answered(struct pin_fifo *f, struct topic_index *x, void *up, uint64_t answered,
                  void (*unpinned)(struct topic *t, void *up))
{
    while (f->n && f->v[f->head].ver <= answered)
        pop(f, x, up, unpinned);
}

void pin_drop(struct pin_fifo *f, struct topic_index *x, void *up)
{
    while (f->n)
        pop(f, x, up, NULL);
}

void pin_fifo_free(struct pin_fifo *f, struct topic_index *x, void *up)
{
    pin_drop(f, x, up);
    free(f->v);
    *f = (struct pin_fifo){NULL, 0, 0, 0};
}
