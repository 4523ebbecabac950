/* metrics.h - the engine's figures as Prometheus text and its state as JSON.
 *
 * Pure renderers, no sockets (http.c serves them; test/c/test_metrics.c
 * checks them):
 *   - metrics_render(): the Prometheus text exposition format 0.0.4, from
 *     stats.h's one table of fields (each field's metric name, labels, type
 *     and help are in that table), plus what the table cannot hold: figures
 *     per retention shard, the queue wait histogram, the build info;
 *   - metrics_topics_page(), metrics_conns_page(): one page of the topic
 *     index or of the connections, as JSON, so that a million topics are
 *     served in pages that each take a bounded time of the event loop. */
#ifndef KRAKEN_METRICS_H
#define KRAKEN_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "entry.h"
#include "stats.h"

struct engine;
struct evbuffer;
struct topic_index;

struct metrics_shard {
    uint64_t entries, bytes;  /* retained */
    int64_t horizon_age;      /* seconds since the shard's horizon */
};

struct metrics_input {
    const struct stats_snapshot *snap;
    const struct metrics_shard *shards;
    uint32_t nshards;
    const struct entry_wait_hist *wait;
    void (*more)(struct evbuffer *out); /* the engine's metrics_more (engine.h), or NULL */
};

/* Fills shards[0..num_shards) and *in from an engine (shards: caller's array). */
void metrics_collect(const struct engine *eng, struct stats_snapshot *snap,
                     struct metrics_shard *shards, struct metrics_input *in);
/* Appends the whole exposition.  Returns 0, -1 on allocation failure. */
int metrics_render(const struct metrics_input *in, struct evbuffer *out);
/* Appends the HELP and TYPE lines of the family kraken_<name><suffix>
 * (type "counter" or "gauge"), for the subsystems that add their own. */
void metrics_header(struct evbuffer *out, const char *name, const char *suffix, const char *type,
                    const char *help);

/* Appends a JSON string literal for len bytes: printable ASCII as is, '"'
 * and '\\' escaped, every other byte as \u00XX (so any topic name gives
 * valid JSON; a byte >= 0x80 reads as its Latin-1 character). */
void metrics_json_string(struct evbuffer *out, const char *p, size_t len);

#define METRICS_PAGE_DEFAULT 1000
#define METRICS_PAGE_MAX 10000
/* At most this many slots of the topic table are scanned per page, however
 * empty they are, and for at most this long (checked every 1024 slots): a
 * page may hold fewer than `limit` topics, its "next" says where to go on. */
#define METRICS_SCAN_MAX 262144
#define METRICS_PAGE_BUDGET_MS 5
extern int metrics_page_budget_ms; /* METRICS_PAGE_BUDGET_MS; tests lower it */

/* One page of /topics: the topics with subscribers (Kraken topics and Redis
 * channels, and Redis shard channels), scanning the index from slot
 * `offset`, at most `limit` of them, as the JSON object
 *   {"topics":N,"offset":O,"limit":L,"next":C|null,"items":[{"name":..,
 *    "subscribers":..,"shard":..,"shard_channel":false},...]}
 * where N counts the whole index and C is the slot to continue from. */
void metrics_topics_page(const struct topic_index *x, uint64_t offset, uint32_t limit,
                         struct evbuffer *out);
/* One page of /connz: connections in the engine's order (least recently
 * active first) from index `offset`, at most `limit`:
 *   {"connections":N,"offset":O,"limit":L,"next":C|null,"items":[{"id":..,
 *    "protocol":"kraken","peer":"..","subscriptions":..,"pattern_subscriptions":..,
 *    "queued_entries":..,"queued_bytes":..,"unsent_bytes":..,"received":..,
 *    "connected_seconds":..,"last_request_seconds":..,"last_poll_seconds":..|null,
 *    "push":false},...]}
 * (a page may be cut short by METRICS_PAGE_BUDGET_MS too). */
void metrics_conns_page(const struct engine *eng, uint64_t offset, uint32_t limit,
                        int64_t now_ms, struct evbuffer *out);

#endif
