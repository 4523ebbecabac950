/* stats.c - the table of figures and its text rendering; see stats.h. */
#include "stats.h"

#include <event2/buffer.h>
#include <inttypes.h>

#define F(name, type) {#name, type, offsetof(struct stats_snapshot, name), METRIC_NONE, NULL, NULL, NULL}
#define M(name, type, metric, mname, labels, help) \
    {#name, type, offsetof(struct stats_snapshot, name), metric, mname, labels, help}
#define RESET " (resets when the engine restarts)"

/* The order of the `stats` reply; the first 19 are the historical ones. */
const struct stats_field stats_fields[] = {
    F(pid, STATS_I64),
    M(uptime, STATS_I64, METRIC_GAUGE, "uptime_seconds", NULL,
      "Seconds since the engine started" RESET),
    F(time, STATS_I64),
    F(version, STATS_STR),
    F(curr_connections, STATS_U64), /* kraken_connections{protocol} */
    M(total_connections, STATS_U64, METRIC_COUNTER, "connections_accepted", NULL,
      "Client connections accepted, every protocol" RESET),
    M(rejected_connections, STATS_U64, METRIC_COUNTER, "connections_refused", NULL,
      "Client connections refused at max_tcp_clients" RESET),
    M(topics, STATS_U64, METRIC_GAUGE, "topics", NULL,
      "Topics in the index (subscribed, or held by a queued or retained entry)"),
    M(subscriptions, STATS_U64, METRIC_GAUGE, "subscriptions", NULL,
      "(topic, client) subscriptions, Kraken topics and Redis channels"),
    M(messages_published, STATS_U64, METRIC_COUNTER, "entries_published", NULL,
      "Entries published (one MESSAGE, one PUBLISH)" RESET),
    M(messages_queued, STATS_U64, METRIC_COUNTER, "entries_queued", NULL,
      "Entries queued to subscribers (one per subscriber reached)" RESET),
    M(messages_delivered, STATS_U64, METRIC_COUNTER, "deliveries", NULL,
      "Entries written out to subscribers (polled or pushed)" RESET),
    M(queued_messages, STATS_U64, METRIC_GAUGE, "queued_entries", NULL,
      "Entries waiting in client queues"),
    M(queued_bytes, STATS_U64, METRIC_GAUGE, "queued_bytes", NULL,
      "Bytes waiting in client queues (as a poll would send them)"),
    F(retained_messages, STATS_U64), /* kraken_retained_entries{shard} */
    M(disconnects_queue_overflow, STATS_U64, METRIC_COUNTER, "disconnects", "cause=\"queue_limit\"",
      "Client connections closed by the server, by cause" RESET),
    M(disconnects_idle, STATS_U64, METRIC_COUNTER, "disconnects", "cause=\"idle\"",
      "Client connections closed by the server, by cause" RESET),
    M(disconnects_error, STATS_U64, METRIC_COUNTER, "disconnects", "cause=\"error\"",
      "Client connections closed by the server, by cause" RESET),
    M(log_events_dropped, STATS_U64, METRIC_COUNTER, "log_events_dropped", NULL,
      "Log events dropped because the Erlang node did not read them" RESET),
    M(curr_connections_kraken, STATS_U64, METRIC_GAUGE, "connections", "protocol=\"kraken\"",
      "Open client connections, by protocol"),
    M(curr_connections_redis, STATS_U64, METRIC_GAUGE, "connections", "protocol=\"redis\"",
      "Open client connections, by protocol"),
    M(pattern_subscriptions, STATS_U64, METRIC_GAUGE, "pattern_subscriptions", NULL,
      "(pattern, client) subscriptions (Redis PSUBSCRIBE)"),
    F(retained_bytes, STATS_U64), /* kraken_retained_bytes{shard} */
    M(requests, STATS_U64, METRIC_COUNTER, "requests", NULL,
      "Client requests executed, every protocol" RESET),
    M(bytes_published, STATS_U64, METRIC_COUNTER, "published_bytes", NULL,
      "Payload bytes of the entries published" RESET),
    M(polls, STATS_U64, METRIC_COUNTER, "polls", NULL,
      "Kraken `get messages` requests" RESET),
    M(largest_queue_bytes, STATS_U64, METRIC_GAUGE, "largest_queue_bytes", NULL,
      "Bytes queued plus unsent of the fullest client (disconnected past "
      "max_client_queue_bytes)"),
    M(engine_restarts, STATS_U64, METRIC_COUNTER, "engine_restarts", NULL,
      "Engine restarts since the Erlang node started (counted by the node)"),
    F(http_port, STATS_I64),
    M(disconnects_memory_budget, STATS_U64, METRIC_COUNTER, "disconnects",
      "cause=\"memory_budget\"", "Client connections closed by the server, by cause" RESET),
    M(retention_trimmed_bytes, STATS_U64, METRIC_COUNTER, "retention_trimmed_bytes", NULL,
      "Retained bytes dropped to stay under max_memory_bytes" RESET),
    M(memory_counted_bytes, STATS_U64, METRIC_GAUGE, "memory_counted_bytes", NULL,
      "What max_memory_bytes bounds: clients' buffers, queues, subscriptions, and retention"),
    M(cluster_links, STATS_U64, METRIC_GAUGE, "cluster_links", NULL,
      "Open links between cluster nodes, both directions (not counted as client connections)"),
    M(disconnects_cluster, STATS_U64, METRIC_COUNTER, "disconnects", "cause=\"cluster\"",
      "Client connections closed by the server, by cause" RESET),
    F(redis_port, STATS_I64),
};
const size_t stats_nfields = sizeof stats_fields / sizeof stats_fields[0];

void stats_write_text(const struct stats_snapshot *s, struct evbuffer *out)
{
    for (size_t i = 0; i < stats_nfields; i++) {
        const struct stats_field *f = &stats_fields[i];
        switch (f->type) {
        case STATS_I64:
            evbuffer_add_printf(out, "STAT %s %" PRId64 "\r\n", f->name, stats_i64(s, f));
            break;
        case STATS_U64:
            evbuffer_add_printf(out, "STAT %s %" PRIu64 "\r\n", f->name, stats_u64(s, f));
            break;
        case STATS_STR:
            evbuffer_add_printf(out, "STAT %s %s\r\n", f->name, stats_str(s, f));
            break;
        }
    }
    evbuffer_add(out, "END\r\n", 5);
}
