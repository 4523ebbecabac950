/* health.c - readiness: loop turns, listeners accept, a canary delivers; see health.h. */
#include "health.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"

#define CANARY_TOPIC "canary"

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct health *h = arg;
    (void)fd;
    (void)what;
    h->last_tick_ms = engine_now_ms();
}

int health_start(struct health *h, struct event_base *base)
{
    memset(h, 0, sizeof *h);
    h->last_tick_ms = engine_now_ms();
    h->tick = event_new(base, -1, EV_PERSIST, tick_cb, h);
    struct timeval tv = {0, HEALTH_TICK_MS * 1000};
    if (!h->tick || event_add(h->tick, &tv) < 0)
        return -1;
    return 0;
}

void health_stop(struct health *h)
{
    if (h->tick)
        event_free(h->tick);
    h->tick = NULL;
}

/* Publishes a canary and reads it back from the internal subscriber's queue;
 * leaves nothing behind (the subscription, the entry and the topic go). */
int health_canary(struct health *h, struct router *r, char *why, size_t len)
{
    struct subscriber *s = &h->sub;
    subscriber_init(s, 0, NULL);
    int64_t t0 = engine_now_ms();
    int ok = 0;
    if (router_subscribe_ns(r, s, TOPIC_NS_INTERNAL, CANARY_TOPIC, sizeof CANARY_TOPIC - 1) < 0) {
        snprintf(why, len, "canary: out of memory subscribing");
        goto out;
    }
    char payload[32];
    int n = snprintf(payload, sizeof payload, "canary %" PRIu64, ++h->canaries);
    struct proto_slice topic = {CANARY_TOPIC, sizeof CANARY_TOPIC - 1};
    struct router_publish_result res;
    if (router_publish_ns(r, NULL, TOPIC_NS_INTERNAL, &topic, 1, payload, (size_t)n,
                          engine_unix_time(), &res) < 0) {
        snprintf(why, len, "canary: out of memory publishing");
        goto out;
    }
    if (s->queue.count != 1 || s->overflowed) {
        snprintf(why, len, "canary: published but not queued (%u entries in its queue)",
                 s->queue.count);
        goto out;
    }
    const struct entry *e = queue_front(&s->queue)->e;
    if (e->payload_len != (size_t)n || memcmp(entry_payload(e), payload, (size_t)n) != 0) {
        snprintf(why, len, "canary: queued entry differs from the one published");
        goto out;
    }
    int64_t took = engine_now_ms() - t0;
    if (took > HEALTH_CANARY_MS) {
        snprintf(why, len, "canary: round trip took %" PRId64 " ms (limit %d ms)", took,
                 HEALTH_CANARY_MS);
        goto out;
    }
    ok = 1;
out:
    router_remove_subscriber(r, s);
    return ok;
}

int health_loop_turns(const struct health *h, char *why, size_t len)
{
    int64_t lag = engine_now_ms() - h->last_tick_ms;
    if (lag > HEALTH_STALL_MS) {
        snprintf(why, len, "event loop stalled: its timer last ran %" PRId64 " ms ago", lag);
        return 0;
    }
    return 1;
}
