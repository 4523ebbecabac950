/* router_internal.h - what router.c and router_pattern.c share; nothing
 * outside the router includes it. */
#ifndef KRAKEN_ROUTER_INTERNAL_H
#define KRAKEN_ROUTER_INTERNAL_H

#include "router.h"

int router_reserve_slow(void **arr, size_t *cap, size_t n, size_t sz);
/* Grows a scratch array to hold n elements of size sz; -1 on failure. */
static inline int router_reserve(void **arr, size_t *cap, size_t n, size_t sz)
{
    return n <= *cap ? 0 : router_reserve_slow(arr, cap, n, sz);
}

/* Marks topic i of e for s (starting its queue item, and adding it to
 * r->touched, on first contact).  Returns 1 if s was newly touched.  Inline:
 * it is the publish loop's body, run once per (subscriber, topic). */
static inline int router_route_to(struct router *r, struct subscriber *s, struct entry *e,
                                  uint32_t i, size_t *touched)
{
    int fresh = 0;
    if (s->route_mark != e->seq) {
        if (router_reserve((void **)&r->touched, &r->touched_cap, *touched + 1,
                           sizeof *r->touched) < 0 ||
            !queue_push(&s->queue, e)) {
            router_fail_subscriber(r, s); /* out of memory for this subscriber */
            return 0;
        }
        s->route_mark = e->seq;
        r->touched[(*touched)++] = s;
        fresh = 1;
    }
    if (qitem_add_topic(queue_tail(&s->queue), i) < 0)
        router_fail_subscriber(r, s);
    return fresh;
}

void router_patterns_init(struct router *r);
void router_patterns_free(struct router *r);
/* Routes e to the subscribers of every pattern matching one of its topics;
 * returns the number of (pattern subscriber, topic) matches. */
uint64_t router_route_patterns(struct router *r, struct subscriber *publisher, struct entry *e,
                               size_t *touched);

#endif
