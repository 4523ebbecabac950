/* router_internal.h - what router.c and router_pattern.c share; nothing
 * outside the router includes it. */
#ifndef KRAKEN_ROUTER_INTERNAL_H
#define KRAKEN_ROUTER_INTERNAL_H

#include "router.h"

int router_reserve(void **arr, size_t *cap, size_t n, size_t sz);
void router_fail_subscriber(struct router *r, struct subscriber *s);
/* Marks topic i of e for s (starting its queue item, and adding it to
 * r->touched, on first contact).  Returns 1 if s was newly touched. */
int router_route_to(struct router *r, struct subscriber *s, struct entry *e, uint32_t i,
                    size_t *touched);

void router_patterns_init(struct router *r);
void router_patterns_free(struct router *r);
/* Routes e to the subscribers of every pattern matching one of its topics;
 * returns the number of (pattern subscriber, topic) matches. */
uint64_t router_route_patterns(struct router *r, struct subscriber *publisher, struct entry *e,
                               size_t *touched);

#endif
