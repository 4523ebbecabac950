/* health.h - is the engine serving?  The answer of /readyz (http.c) and of
 * the control channel's `ready` call (bin/kraken status).
 *
 * Ready means all of:
 *   - the event loop turns: a timer stamps every HEALTH_TICK_MS; a stamp
 *     older than HEALTH_STALL_MS means the loop was stuck (a stopped process,
 *     a callback that ran too long) and has not caught up yet;
 *   - the listeners accept: not paused at the descriptor limit (server.c);
 *   - the data plane delivers: a canary entry published through the router,
 *     on a topic of the internal namespace (no client can see or reach it,
 *     nothing retains or counts it), reaches an internal subscriber's queue
 *     and reads back intact, within HEALTH_CANARY_MS.
 * From the outside, a stopped or wedged engine answers nothing at all: the
 * caller's timeout is the verdict (bin/kraken status waits 2 s). */
#ifndef KRAKEN_HEALTH_H
#define KRAKEN_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "router.h"

struct server;
struct event;

#define HEALTH_TICK_MS 100
#define HEALTH_STALL_MS 1000
#define HEALTH_CANARY_MS 100

struct health {
    struct event *tick;
    int64_t last_tick_ms;
    uint64_t canaries;
    struct subscriber sub;   /* the canary's subscriber: no connection owns it */
};

int health_start(struct health *h, struct server *srv);
void health_stop(struct health *h);
/* 1 if ready; 0 if not, with a one-line reason (no newline) in why. */
int health_check(struct server *srv, char *why, size_t len);

#endif
