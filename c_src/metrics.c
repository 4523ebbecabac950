/* metrics.c - Prometheus text and JSON pages; see metrics.h. */
#include "metrics.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#include "engine.h"
#include "kraken/protocol.h"

int metrics_page_budget_ms = METRICS_PAGE_BUDGET_MS;

/* Figures of the stats table exported a second time under another metric:
 * a connection refused at max_tcp_clients is also a disconnect. */
static const struct stats_field extra_fields[] = {
    {"rejected_connections", STATS_U64, offsetof(struct stats_snapshot, rejected_connections),
     METRIC_COUNTER, "disconnects", "cause=\"too_many_clients\"", NULL},
};
#define NEXTRA (sizeof extra_fields / sizeof extra_fields[0])

static const struct stats_field *field_at(size_t i)
{
    return i < stats_nfields ? &stats_fields[i] : &extra_fields[i - stats_nfields];
}

void metrics_header(struct evbuffer *out, const char *name, const char *suffix, const char *type,
                    const char *help)
{
    evbuffer_add_printf(out, "# HELP kraken_%s%s %s\n# TYPE kraken_%s%s %s\n", name, suffix,
                        help, name, suffix, type);
}

static void sample(struct evbuffer *out, const struct stats_snapshot *s,
                   const struct stats_field *f)
{
    const char *suffix = f->metric == METRIC_COUNTER ? "_total" : "";
    evbuffer_add_printf(out, "kraken_%s%s", f->metric_name, suffix);
    if (f->labels)
        evbuffer_add_printf(out, "{%s}", f->labels);
    if (f->type == STATS_I64)
        evbuffer_add_printf(out, " %" PRId64 "\n", stats_i64(s, f));
    else
        evbuffer_add_printf(out, " %" PRIu64 "\n", stats_u64(s, f));
}

/* The table's metrics, one family (HELP, TYPE, its samples) per metric name,
 * in the order of each name's first field. */
static void render_table(struct evbuffer *out, const struct stats_snapshot *s)
{
    size_t n = stats_nfields + NEXTRA;
    for (size_t i = 0; i < n; i++) {
        const struct stats_field *f = field_at(i);
        if (f->metric == METRIC_NONE || f->type == STATS_STR)
            continue;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = field_at(j)->metric != METRIC_NONE &&
                   strcmp(field_at(j)->metric_name, f->metric_name) == 0;
        if (seen)
            continue;
        metrics_header(out, f->metric_name, f->metric == METRIC_COUNTER ? "_total" : "",
               f->metric == METRIC_COUNTER ? "counter" : "gauge", f->help);
        for (size_t j = i; j < n; j++) {
            const struct stats_field *g = field_at(j);
            if (g->metric != METRIC_NONE && strcmp(g->metric_name, f->metric_name) == 0)
                sample(out, s, g);
        }
    }
}

static void render_shards(struct evbuffer *out, const struct metrics_input *in)
{
    metrics_header(out, "retained_entries", "", "gauge",
           "Entries kept for retro_subscribe, by retention shard");
    for (uint32_t i = 0; i < in->nshards; i++)
        evbuffer_add_printf(out, "kraken_retained_entries{shard=\"%u\"} %" PRIu64 "\n", i,
                            in->shards[i].entries);
    metrics_header(out, "retained_bytes", "", "gauge",
           "Bytes of the entries kept for retro_subscribe, by retention shard");
    for (uint32_t i = 0; i < in->nshards; i++)
        evbuffer_add_printf(out, "kraken_retained_bytes{shard=\"%u\"} %" PRIu64 "\n", i,
                            in->shards[i].bytes);
    metrics_header(out, "retention_horizon_age_seconds", "", "gauge",
           "Age of the oldest point a retro_subscribe or register can start from, by "
           "retention shard (a client away longer gets NOT_FOUND and reloads)");
    for (uint32_t i = 0; i < in->nshards; i++)
        evbuffer_add_printf(out, "kraken_retention_horizon_age_seconds{shard=\"%u\"} %" PRId64 "\n",
                            i, in->shards[i].horizon_age);
}

/* Milliseconds as seconds, exactly and shortest ("0.001", "0.01", "1", "300"). */
static void add_ms_as_seconds(struct evbuffer *out, uint64_t ms)
{
    uint64_t frac = ms % 1000;
    if (frac == 0)
        evbuffer_add_printf(out, "%" PRIu64, ms / 1000);
    else if (frac % 100 == 0)
        evbuffer_add_printf(out, "%" PRIu64 ".%" PRIu64, ms / 1000, frac / 100);
    else if (frac % 10 == 0)
        evbuffer_add_printf(out, "%" PRIu64 ".%02" PRIu64, ms / 1000, frac / 10);
    else
        evbuffer_add_printf(out, "%" PRIu64 ".%03" PRIu64, ms / 1000, frac);
}

static void render_wait(struct evbuffer *out, const struct entry_wait_hist *h)
{
    metrics_header(out, "queue_wait_seconds", "", "histogram",
           "Time from publish to being written out to a subscriber, per delivered entry "
           "(millisecond resolution; retro_subscribe deliveries count from the publish)"
           " (resets when the engine restarts)");
    uint64_t cum = 0;
    for (int b = 0; b < ENTRY_WAIT_BUCKETS - 1; b++) {
        cum += h->bucket[b];
        evbuffer_add(out, "kraken_queue_wait_seconds_bucket{le=\"", 37);
        add_ms_as_seconds(out, (uint64_t)entry_wait_bounds_ms[b]);
        evbuffer_add_printf(out, "\"} %" PRIu64 "\n", cum);
    }
    cum += h->bucket[ENTRY_WAIT_BUCKETS - 1];
    evbuffer_add_printf(out, "kraken_queue_wait_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    evbuffer_add(out, "kraken_queue_wait_seconds_sum ", 30);
    add_ms_as_seconds(out, h->sum_ms);
    evbuffer_add_printf(out, "\nkraken_queue_wait_seconds_count %" PRIu64 "\n", h->count);
}

int metrics_render(const struct metrics_input *in, struct evbuffer *out)
{
    size_t before = evbuffer_get_length(out);
    metrics_header(out, "build_info", "", "gauge", "Always 1; the engine's version in a label");
    evbuffer_add_printf(out, "kraken_build_info{version=\"%s\"} 1\n", in->snap->version);
    render_table(out, in->snap);
    render_shards(out, in);
    render_wait(out, in->wait);
    if (in->more)
        in->more(out);
    /* evbuffer_add_printf fails silently; a short page is worse than none. */
    return evbuffer_get_length(out) > before ? 0 : -1;
}

void metrics_collect(const struct engine *eng, struct stats_snapshot *snap,
                     struct metrics_shard *shards, struct metrics_input *in)
{
    const struct router *r = &eng->router;
    engine_snapshot(eng, snap);
    int64_t now = engine_unix_time();
    for (uint32_t i = 0; i < r->cfg.num_shards; i++) {
        shards[i].entries = r->shards[i].count;
        shards[i].bytes = r->shards[i].bytes;
        int64_t age = now - router_shard_horizon(r, i);
        shards[i].horizon_age = age < 0 ? 0 : age;
    }
    in->snap = snap;
    in->shards = shards;
    in->nshards = r->cfg.num_shards;
    in->wait = &r->entries.wait;
    in->more = eng->metrics_more;
}

/* A local buffer that JSON pages are formatted into, flushed to the
 * evbuffer in large pieces: evbuffer_add_printf per field would cost more
 * than the walk itself. */
struct jbuf {
    struct evbuffer *out;
    size_t n;
    char b[16384];
};

static void jb_flush(struct jbuf *j)
{
    if (j->n)
        evbuffer_add(j->out, j->b, j->n);
    j->n = 0;
}

static void jb_room(struct jbuf *j, size_t need)
{
    if (j->n + need > sizeof j->b)
        jb_flush(j);
}

static void jb_lit(struct jbuf *j, const char *s, size_t len)
{
    jb_room(j, len);
    if (len > sizeof j->b) {
        evbuffer_add(j->out, s, len);
        return;
    }
    memcpy(j->b + j->n, s, len);
    j->n += len;
}
#define JB_LIT(j, lit) jb_lit(j, lit, sizeof lit - 1)

static void jb_u64(struct jbuf *j, uint64_t v)
{
    jb_room(j, 20);
    j->n += proto_fmt_u64(j->b + j->n, v);
}

static void jb_string(struct jbuf *j, const char *p, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    jb_room(j, 1);
    j->b[j->n++] = '"';
    for (size_t i = 0; i < len; i++) {
        jb_room(j, 6);
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\') {
            j->b[j->n++] = '\\';
            j->b[j->n++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            memcpy(j->b + j->n, "\\u00", 4);
            j->n += 4;
            j->b[j->n++] = hex[c >> 4];
            j->b[j->n++] = hex[c & 15];
        } else {
            j->b[j->n++] = (char)c;
        }
    }
    jb_room(j, 1);
    j->b[j->n++] = '"';
}

void metrics_json_string(struct evbuffer *out, const char *p, size_t len)
{
    struct jbuf j;
    j.out = out;
    j.n = 0;
    jb_string(&j, p, len);
    jb_flush(&j);
}

static void page_head(struct evbuffer *out, const char *what, uint64_t total, uint64_t offset,
                      uint32_t limit)
{
    evbuffer_add_printf(out, "{\"%s\":%" PRIu64 ",\"offset\":%" PRIu64 ",\"limit\":%u,", what,
                        total, offset, limit);
}

static void page_tail(struct evbuffer *out, bool more, uint64_t next)
{
    if (more)
        evbuffer_add_printf(out, "],\"next\":%" PRIu64 "}\n", next);
    else
        evbuffer_add(out, "],\"next\":null}\n", 15);
}

void metrics_topics_page(const struct topic_index *x, uint64_t offset, uint32_t limit,
                         struct evbuffer *out)
{
    const struct table *t = &x->table;
    page_head(out, "topics", topic_index_count(x), offset, limit);
    evbuffer_add(out, "\"items\":[", 9);
    static struct jbuf j; /* 16 KiB: not on the stack; one loop, one page at a time */
    j.out = out;
    j.n = 0;
    uint64_t slot = offset;
    uint32_t n = 0;
    uint64_t end = offset + METRICS_SCAN_MAX;
    int64_t deadline = entry_clock_ms() + metrics_page_budget_ms;
    for (; slot < t->cap && slot < end && n < limit; slot++) {
        if ((slot & 1023) == 1023 && slot > offset && entry_clock_ms() > deadline)
            break; /* a shorter page: the next one starts at this slot */
        const struct topic *tp = t->slots[slot];
        if (!tp || tp->ns == TOPIC_NS_INTERNAL || tp->nsubs == 0)
            continue;
        if (n)
            JB_LIT(&j, ",{\"name\":");
        else
            JB_LIT(&j, "{\"name\":");
        jb_string(&j, tp->name, tp->len);
        JB_LIT(&j, ",\"subscribers\":");
        jb_u64(&j, tp->nsubs);
        JB_LIT(&j, ",\"shard\":");
        jb_u64(&j, tp->shard);
        if (tp->ns == TOPIC_NS_SHARD)
            JB_LIT(&j, ",\"shard_channel\":true}");
        else
            JB_LIT(&j, ",\"shard_channel\":false}");
        n++;
    }
    jb_flush(&j);
    page_tail(out, slot < t->cap, slot);
}

static void jb_i64(struct jbuf *j, int64_t v)
{
    if (v < 0) {
        JB_LIT(j, "-");
        v = -v;
    }
    jb_u64(j, (uint64_t)v);
}

void metrics_conns_page(const struct engine *eng, uint64_t offset, uint32_t limit,
                        int64_t now_ms, struct evbuffer *out)
{
    page_head(out, "connections", eng->nconns, offset, limit);
    evbuffer_add(out, "\"items\":[", 9);
    static struct jbuf j;
    j.out = out;
    j.n = 0;
    const struct conn *c = engine_oldest_conn(eng);
    for (uint64_t i = 0; c && i < offset; i++)
        c = engine_next_conn(c);
    int64_t deadline = entry_clock_ms() + metrics_page_budget_ms;
    uint32_t n = 0;
    for (; c && n < limit; c = engine_next_conn(c), n++) {
        if ((n & 255) == 255 && entry_clock_ms() > deadline) /* n > 0: progress */
            break;
        if (n)
            JB_LIT(&j, ",{\"id\":");
        else
            JB_LIT(&j, "{\"id\":");
        jb_u64(&j, c->sub.id);
        JB_LIT(&j, ",\"protocol\":");
        jb_string(&j, c->ops->name, strlen(c->ops->name));
        JB_LIT(&j, ",\"peer\":");
        jb_string(&j, c->peer, strlen(c->peer));
        JB_LIT(&j, ",\"subscriptions\":");
        jb_u64(&j, c->sub.subs.count);
        JB_LIT(&j, ",\"pattern_subscriptions\":");
        jb_u64(&j, c->sub.npatterns);
        JB_LIT(&j, ",\"queued_entries\":");
        jb_u64(&j, c->sub.queue.count);
        JB_LIT(&j, ",\"queued_bytes\":");
        jb_u64(&j, c->sub.queue.bytes);
        JB_LIT(&j, ",\"unsent_bytes\":");
        jb_u64(&j, c->sub.unsent);
        JB_LIT(&j, ",\"received\":");
        jb_u64(&j, c->sub.received);
        JB_LIT(&j, ",\"connected_seconds\":");
        jb_i64(&j, (now_ms - c->connected_ms) / 1000);
        JB_LIT(&j, ",\"last_request_seconds\":");
        jb_i64(&j, (now_ms - c->last_request_ms) / 1000);
        JB_LIT(&j, ",\"last_poll_seconds\":");
        if (c->last_poll_ms < 0)
            JB_LIT(&j, "null");
        else
            jb_i64(&j, (now_ms - c->last_poll_ms) / 1000);
        if (c->sub.push)
            JB_LIT(&j, ",\"push\":true}");
        else
            JB_LIT(&j, ",\"push\":false}");
    }
    jb_flush(&j);
    page_tail(out, c != NULL, offset + n);
}
