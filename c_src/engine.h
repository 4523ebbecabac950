/* engine.h - the state every protocol executes against.
 *
 * One engine per process: the configuration, the router (topics,
 * subscriptions, queues, retention), the counters, and the registry of
 * connections ordered by last request (the idle sweep takes the oldest, the
 * introspection calls walk it).  Protocols (conn.h) reach it through
 * conn->eng; server.c adds and removes connections; control_call.c and the stats
 * renderers read it through the functions below, never through its lists.
 *
 * Single-threaded: it belongs to the event loop. */
#ifndef KRAKEN_ENGINE_H
#define KRAKEN_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "conn.h"
#include "kraken/protocol.h"
#include "router.h"
#include "stats.h"

#define KRAKEN_VERSION "1.0.0"

struct engine {
    struct engine_config cfg;
    struct router router;
    struct engine_stats stats;
    int64_t started_ms;
    int http_port;                /* the /metrics listener's port, -1: off (http.c) */
    int redis_port;               /* the Redis listener's port, -1: off (server.c) */
    uint64_t next_id;
    uint32_t nconns;
    uint32_t nconns_by_kind[PROTO_KINDS];
    struct conn *oldest, *newest; /* every connection, by last request */
    /* scratch shared by the protocols (one request executes at a time) */
    struct proto_slice *slices;
    size_t slices_cap;
    struct proto_entry *entries;
    size_t entries_cap;
    /* The rest of the /metrics page, from a subsystem above the engine (the
     * cluster's links, cluster_metrics.c); NULL: nothing more. */
    void (*metrics_more)(struct evbuffer *out);
};

int64_t engine_now_ms(void);
/* Unix time in whole seconds, from the precise clock: time(2) reads a coarse
 * clock that lags a second boundary by up to a tick, so an entry published
 * just after a client saw the second change would be stamped with the old
 * second and missed by retro_subscribe from that second. */
int64_t engine_unix_time(void);

/* Sets up the router with the given hooks (overflow, ready; see router.h). */
int engine_init(struct engine *eng, const struct engine_config *cfg,
                void (*overflow)(struct subscriber *, void *),
                void (*ready)(struct subscriber *, void *), void *cb_arg);
/* Frees the router and scratch; connections must be gone. */
void engine_free(struct engine *eng);

/* The registry of connections. */
void engine_add_conn(struct engine *eng, struct conn *c);
void engine_remove_conn(struct engine *eng, struct conn *c);
/* Moves c to the newest end (after a request). */
void engine_touch_conn(struct engine *eng, struct conn *c);
struct conn *engine_find_conn(const struct engine *eng, uint64_t id);
static inline struct conn *engine_oldest_conn(const struct engine *eng) { return eng->oldest; }
static inline struct conn *engine_next_conn(const struct conn *c) { return c->newer; }

/* Splits a space-separated topic list into eng->slices; returns the count or -1. */
long engine_split_topics(struct engine *eng, const char *p, size_t len);
/* Grows eng->slices to hold n; returns -1 on allocation failure. */
int engine_reserve_slices(struct engine *eng, size_t n);

void engine_snapshot(const struct engine *eng, struct stats_snapshot *s);

#endif
