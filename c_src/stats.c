/* stats.c - the table of figures and its text rendering; see stats.h. */
#include "stats.h"

#include <event2/buffer.h>
#include <inttypes.h>

#define F(name, type) {#name, type, offsetof(struct stats_snapshot, name)}

/* The order of the `stats` reply; the first 19 are the historical ones. */
const struct stats_field stats_fields[] = {
    F(pid, STATS_I64),
    F(uptime, STATS_I64),
    F(time, STATS_I64),
    F(version, STATS_STR),
    F(curr_connections, STATS_U64),
    F(total_connections, STATS_U64),
    F(rejected_connections, STATS_U64),
    F(topics, STATS_U64),
    F(subscriptions, STATS_U64),
    F(messages_published, STATS_U64),
    F(messages_queued, STATS_U64),
    F(messages_delivered, STATS_U64),
    F(queued_messages, STATS_U64),
    F(queued_bytes, STATS_U64),
    F(retained_messages, STATS_U64),
    F(disconnects_queue_overflow, STATS_U64),
    F(disconnects_idle, STATS_U64),
    F(disconnects_error, STATS_U64),
    F(log_events_dropped, STATS_U64),
    F(curr_connections_kraken, STATS_U64),
    F(curr_connections_redis, STATS_U64),
    F(pattern_subscriptions, STATS_U64),
    F(retained_bytes, STATS_U64),
    F(requests, STATS_U64),
    F(disconnects_memory_budget, STATS_U64),
    F(retention_trimmed_bytes, STATS_U64),
    F(memory_counted_bytes, STATS_U64),
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
