/* cluster_fresh.c - whether this engine may be acting on a stale view of
 * the cluster (docs/cluster.md, "What does not work yet", item 1).
 *
 * The engine learns who owns what from its node's kraken_cluster, which
 * hears the other members.  If the node stops (SIGSTOP of its VM and
 * engine, of the engine alone, of the VM alone) for longer than the
 * others' heartbeat deadline, they count it failed and move its topics
 * away; when it resumes, its engine still counts itself the owner of
 * those topics until its node has heard the others and told it.  An entry
 * one of its clients publishes in that moment would be delivered here only
 * and never reach the topic's new owner, while its publisher got STORED:
 * lost silently.  So:
 *
 *   - kraken_cluster confirms the view every tick (200 ms: the control
 *     request `cluster_fresh`, its engine health check, answered `pong`),
 *     except in the moment after its own VM resumed from a stop, until it
 *     has heard the others again (its heartbeat deadline plus a tick);
 *   - while no confirmation has come for FRESH_STALE_MS (less than the
 *     others' 1600 ms deadline, so before anyone can have moved this
 *     core's topics away), the engine refuses its clients' publishes as for
 *     an unreachable core (SERVER_ERROR cluster core unavailable, Redis
 *     -ERR: nothing published, the client knows);
 *   - a confirmation ends that only FRESH_HOLD_MS after the engine noticed
 *     (so a confirmation sent just before the stop, read just after it,
 *     does not count);
 *   - when it notices (a timer every CHECK_MS, so at once after a stop),
 *     it disconnects every local client holding a topic or a Redis pattern
 *     (cluster_pattern.c: it is not at a core that joined meanwhile, for
 *     one; the links may well have stayed up): the entries that
 *     entered at a topic's new owner meanwhile never reached this node
 *     (what cores had queued to it still arrives, but it cannot tell), so
 *     these clients are treated as the holders of a failed core's topics
 *     are (they reconnect and reload).  A stop that long makes the links'
 *     pings fail anyway (1.5 s), which disconnects the holders of the other
 *     cores' topics already;
 *   - when a confirmation ends that, it disconnects the clients holding a
 *     topic or a pattern then: they subscribed in that moment, to the core
 *     the stale view named (or to none, for a topic it counted its own;
 *     a pattern, not at a core that view did not know).
 *
 * An engine that never got a confirmation (driven by something else than
 * kraken_cluster, as some tests do) never counts its view stale.  Peers'
 * publishes are never refused (cluster.c). */
#include <event2/event.h>
#include <inttypes.h>

#include "cluster_internal.h"
#include "engine.h"
#include "log.h"

#define FRESH_STALE_MS 1500 /* the others count a member silent this long failed at 1600 */
#define FRESH_HOLD_MS 1000
#define CHECK_MS 200

/* Whether the view may be stale now; notes when that began. */
static bool stale(int64_t now)
{
    if (!cl.stale_at && cl.fresh_ms && cl.net.eng && now - cl.fresh_ms > FRESH_STALE_MS) {
        cl.stale_at = now;
        cl.stale_refused = 0;
        klog(LOG_WARNING, "cluster: no confirmation of the cluster's view from this node for "
             "%" PRId64 " ms (stopped, or hung?): publishes are refused until it comes, and "
             "the clients holding topics are disconnected", now - cl.fresh_ms);
        /* The holders go in the check's callback, not in the middle of a
         * request that noticed first (its client may be one of them). */
        cl.stale_doom = true;
        if (cl.fresh_ev)
            event_active(cl.fresh_ev, EV_TIMEOUT, 0);
    }
    return cl.stale_at != 0;
}

static void check_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    bool was = stale(engine_now_ms());
    if (cl.stale_doom) {
        /* Every holder of a channel topic or a shard channel, and of a
         * Redis pattern (its pattern is not at a core that joined
         * meanwhile either). */
        cl.stale_doom = false;
        cluster_doom_holders(CLUSTER_ANY_CORE,
                             was ? "and this node was out of the cluster (stopped?): it may have "
                                   "missed entries published elsewhere"
                                 : "subscribed while this node's view of the cluster was not "
                                   "confirmed (it may have missed entries)");
    }
}

int cluster_fresh_start(void)
{
    if (cl.fresh_ms && cl.net.eng && !cl.fresh_ev) {
        struct timeval tv = {0, CHECK_MS * 1000};
        cl.fresh_ev = event_new(cl.net.base, -1, EV_PERSIST, check_cb, NULL);
        if (!cl.fresh_ev || event_add(cl.fresh_ev, &tv) < 0)
            return -1;
    }
    return 0;
}

bool cluster_fresh_refuse(void)
{
    int64_t now = engine_now_ms();
    if (!stale(now))
        return false;
    cl.stale_refused++;
    if (now - cl.stale_logged_ms >= 1000) {
        cl.stale_logged_ms = now;
        klog(LOG_WARNING, "cluster: the cluster's view is not confirmed; publishes are refused "
             "(%" PRIu64 " so far)", cl.stale_refused);
    }
    return true;
}

void cluster_fresh_confirm(void)
{
    int64_t now = engine_now_ms();
    if (stale(now)) {
        if (now - cl.stale_at < FRESH_HOLD_MS)
            return;
        klog(LOG_WARNING, "cluster: the cluster's view is confirmed again after %" PRId64
             " ms; publishes are accepted (%" PRIu64 " refused meanwhile)",
             now - cl.fresh_ms, cl.stale_refused);
        cl.stale_at = 0;
        /* Who holds a topic now subscribed while the view was stale (the
         * others were disconnected when it was noticed): its subscription
         * may have gone to the wrong core, or nowhere. */
        cl.stale_doom = true;
        if (cl.fresh_ev)
            event_active(cl.fresh_ev, EV_TIMEOUT, 0);
    }
    cl.fresh_ms = now;
    if (cluster_fresh_start() < 0)
        klog(LOG_ERROR, "cluster: out of memory for the view's freshness check");
}
