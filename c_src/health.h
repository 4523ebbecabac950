/* health.h - is the engine serving?  The answer of /readyz (http.c) and of
 * the control channel's `ready` call (bin/kraken status), which
 * server_ready() (server.c) puts together.
 *
 * Ready means all of:
 *   - the event loop turns: a timer stamps every HEALTH_TICK_MS; a stamp
 *     older than HEALTH_STALL_MS means the loop was stuck (a stopped process,
 *     a callback that ran too long) and has not caught up yet;
 *   - the listeners accept: not held for the first cluster view, not
 *     paused at the descriptor limit (server.c's part);
 *   - in a cluster, publishes can go somewhere: a live core (cluster_alone()),
 *     and, on a node that is not a core itself, a link to one that is up
 *     (cluster_unlinked()) (server.c's part);
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

struct event;
struct event_base;

#define HEALTH_TICK_MS 100
#define HEALTH_STALL_MS 1000
#define HEALTH_CANARY_MS 100

struct health {
    struct event *tick;
    int64_t last_tick_ms;
    uint64_t canaries;
    struct subscriber sub;   /* the canary's subscriber: no connection owns it */
};

int health_start(struct health *h, struct event_base *base);
void health_stop(struct health *h);
/* Whether the loop turns: 1; 0 if not, with a one-line reason (no newline)
 * in why. */
int health_loop_turns(const struct health *h, char *why, size_t len);
/* Whether the data plane delivers: a canary published through r reads back
 * from its subscriber's queue in time: 1; 0 if not, with the reason. */
int health_canary(struct health *h, struct router *r, char *why, size_t len);

#endif
