/* budget.h - the global memory budget (max_memory_bytes), the counterpart of
 * Redis's maxmemory-clients.
 *
 * What is counted: for each connection, its input and output buffers, its
 * queue of undelivered entries (their serialised size: shared entries are
 * counted once per queue, which overestimates, never under) and its
 * subscriptions (CONN_SUB_COST bytes each: conn_counted_bytes(), conn.h);
 * plus the retention rings.
 * That is the memory clients can make the engine hold; the rest (code, the
 * topic index of live subscriptions, free lists) is bounded by the other
 * options.
 *
 * Enforcement, every BUDGET_INTERVAL_MS (server.c's timer): over the budget,
 * retention is trimmed first, oldest entries first (a retro_subscribe from
 * before them then answers NOT_FOUND: the client knows to reload); if that
 * is not enough, the connections holding the most are disconnected, largest
 * first, each with a warning naming it, until the total is back under
 * three quarters of the budget.  Besides the timer, a check runs as soon as
 * an eighth of the budget was queued since the last one (server.c), so a
 * flood cannot outrun it by more than one read burst.  No client loses a message silently: it gets every message or is
 * disconnected. */
#ifndef KRAKEN_BUDGET_H
#define KRAKEN_BUDGET_H

#include <stddef.h>
#include <stdint.h>

struct conn;
struct engine;

#define BUDGET_INTERVAL_MS 50

struct budget_result {
    size_t total;            /* counted before enforcing */
    size_t trimmed;          /* retention bytes released */
    uint32_t disconnected;   /* connections passed to `disconnect` */
};

/* What budget_enforce() did, told as it happens: retention trimmed (before
 * any disconnect, so that its report comes first), then each connection to
 * disconnect, which must close (or doom) c and must not free others. */
struct budget_actions {
    void (*trimmed)(size_t total, size_t bytes, void *arg);
    void (*disconnect)(struct conn *c, size_t bytes, void *arg);
};

/* Checks the budget and enforces it. */
struct budget_result budget_enforce(struct engine *eng, const struct budget_actions *act,
                                    void *arg);

#endif
