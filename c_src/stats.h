/* stats.h - the engine's figures, defined once.
 *
 * A snapshot (struct stats_snapshot) is taken by engine_snapshot() and
 * rendered from one table of fields: the Kraken `stats` reply (STAT lines,
 * in table order), the control channel's `stats` call (a proplist), Redis's
 * INFO, and the Prometheus /metrics page (metrics.c: each field's metric
 * name, labels, type and help text are in the same table).  Adding a figure
 * is one field here and one line in the table. */
#ifndef KRAKEN_STATS_H
#define KRAKEN_STATS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* Counters that only grow, kept by the server and the protocols. */
struct engine_stats {
    uint64_t total_connections;
    uint64_t rejected_connections;
    uint64_t messages_delivered;  /* entries written out (polled or pushed) */
    uint64_t requests;
    uint64_t disconnects_overflow;
    uint64_t disconnects_idle;
    uint64_t disconnects_error;
    uint64_t disconnects_memory;       /* over max_memory_bytes (budget.h) */
    uint64_t disconnects_cluster;      /* held what a lost or unreachable core owns (cluster.h) */
    uint64_t retention_trimmed_bytes;  /* released to stay under max_memory_bytes */
    uint64_t polls;               /* `get messages` requests */
};

struct stats_snapshot {
    int64_t pid;
    int64_t uptime;
    int64_t time;
    const char *version;
    uint64_t curr_connections;
    uint64_t total_connections;
    uint64_t rejected_connections;
    uint64_t topics;
    uint64_t subscriptions;
    uint64_t messages_published;
    uint64_t messages_queued;
    uint64_t messages_delivered;
    uint64_t queued_messages;
    uint64_t queued_bytes;
    uint64_t retained_messages;
    uint64_t disconnects_queue_overflow;
    uint64_t disconnects_idle;
    uint64_t disconnects_error;
    uint64_t log_events_dropped;
    uint64_t curr_connections_kraken;
    uint64_t curr_connections_redis;
    uint64_t pattern_subscriptions;
    uint64_t retained_bytes;
    uint64_t requests;
    uint64_t bytes_published;
    uint64_t polls;
    uint64_t largest_queue_bytes;
    uint64_t engine_restarts;
    int64_t http_port;
    uint64_t disconnects_memory_budget;
    uint64_t retention_trimmed_bytes;
    uint64_t memory_counted_bytes;     /* what max_memory_bytes bounds (budget.h) */
    uint64_t cluster_links;            /* links between cluster nodes, both ways (not clients) */
    uint64_t disconnects_cluster;
    int64_t redis_port;
};

enum stats_type { STATS_I64, STATS_U64, STATS_STR };

/* How /metrics exports a field: not at all, or as a Prometheus counter
 * (whose name then ends in _total) or gauge. */
enum stats_metric { METRIC_NONE, METRIC_COUNTER, METRIC_GAUGE };

struct stats_field {
    const char *name;
    enum stats_type type;
    size_t offset;
    /* Prometheus: the metric's name without the `kraken_` prefix; fields
     * sharing a metric (one per label value) give the same name and help,
     * and `labels` (e.g. `protocol="kraken"`, or NULL). */
    enum stats_metric metric;
    const char *metric_name;
    const char *labels;
    const char *help;
};

extern const struct stats_field stats_fields[];
extern const size_t stats_nfields;

static inline int64_t stats_i64(const struct stats_snapshot *s, const struct stats_field *f)
{
    return *(const int64_t *)((const char *)s + f->offset);
}
static inline uint64_t stats_u64(const struct stats_snapshot *s, const struct stats_field *f)
{
    return *(const uint64_t *)((const char *)s + f->offset);
}
static inline const char *stats_str(const struct stats_snapshot *s, const struct stats_field *f)
{
    return *(const char *const *)((const char *)s + f->offset);
}

/* The `stats` reply: "STAT <name> <value>\r\n" per field, then "END\r\n". */
void stats_write_text(const struct stats_snapshot *s, struct evbuffer *out);

#endif
