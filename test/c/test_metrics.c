/* test_metrics.c - unit tests for the Prometheus text and JSON pages
 * (c_src/metrics.h) and the queue wait histogram (entry.h), without sockets.
 * promtool checks a live page in test/http_test.py; this checks the exact
 * lines, the families and the paging cursor. */
#include "test_util.h"

#include "entry.h"
#include "log.h"
#include "metrics.h"
#include "router.h"
#include "stats.h"

static char *render(const struct metrics_input *in)
{
    struct evbuffer *b = evbuffer_new();
    assert_int_equal(metrics_render(in, b), 0);
    size_t len;
    char *s = evbuffer_take(b, &len);
    evbuffer_free(b);
    tu_defer(free, s);
    return s;
}

/* What the engine's metrics_more hook adds (the cluster's, in a node). */
static void more_families(struct evbuffer *out)
{
    metrics_header(out, "more", "", "gauge", "A family added by a subsystem");
    evbuffer_add(out, "kraken_more 1\n", 14);
}

static void test_families_and_samples(void **state)
{
    (void)state;
    struct stats_snapshot snap;
    memset(&snap, 0, sizeof snap);
    snap.version = "9.9.9";
    snap.uptime = 42;
    snap.curr_connections_kraken = 3;
    snap.curr_connections_redis = 2;
    snap.rejected_connections = 7;
    snap.disconnects_idle = 5;
    snap.messages_published = 11;
    snap.engine_restarts = 2;
    snap.disconnects_cluster = 3;
    struct metrics_shard shards[2] = {{10, 1000, 30}, {0, 0, 5}};
    struct entry_wait_hist h;
    memset(&h, 0, sizeof h);
    h.bucket[0] = 4;                      /* <= 1 ms */
    h.bucket[2] = 1;                      /* <= 10 ms */
    h.bucket[ENTRY_WAIT_BUCKETS - 1] = 1; /* > 300 s */
    h.count = 6;
    h.sum_ms = 400012;
    struct metrics_input in = {&snap, shards, 2, &h, more_families};
    const char *s = render(&in);
    const char *want[] = {
        "# HELP kraken_build_info ",
        "# TYPE kraken_build_info gauge\nkraken_build_info{version=\"9.9.9\"} 1\n",
        "# TYPE kraken_uptime_seconds gauge\nkraken_uptime_seconds 42\n",
        "# TYPE kraken_connections gauge\nkraken_connections{protocol=\"kraken\"} 3\n"
        "kraken_connections{protocol=\"redis\"} 2\n",
        "# TYPE kraken_connections_refused_total counter\nkraken_connections_refused_total 7\n",
        "# TYPE kraken_disconnects_total counter\n"
        "kraken_disconnects_total{cause=\"queue_limit\"} 0\n"
        "kraken_disconnects_total{cause=\"idle\"} 5\n"
        "kraken_disconnects_total{cause=\"error\"} 0\n"
        "kraken_disconnects_total{cause=\"memory_budget\"} 0\n"
        "kraken_disconnects_total{cause=\"cluster\"} 3\n"
        "kraken_disconnects_total{cause=\"too_many_clients\"} 7\n",
        "kraken_entries_published_total 11\n",
        "kraken_engine_restarts_total 2\n",
        "kraken_retained_entries{shard=\"0\"} 10\nkraken_retained_entries{shard=\"1\"} 0\n",
        "kraken_retained_bytes{shard=\"0\"} 1000\n",
        "kraken_retention_horizon_age_seconds{shard=\"0\"} 30\n"
        "kraken_retention_horizon_age_seconds{shard=\"1\"} 5\n",
        "# TYPE kraken_queue_wait_seconds histogram\n"
        "kraken_queue_wait_seconds_bucket{le=\"0.001\"} 4\n"
        "kraken_queue_wait_seconds_bucket{le=\"0.005\"} 4\n"
        "kraken_queue_wait_seconds_bucket{le=\"0.01\"} 5\n"
        "kraken_queue_wait_seconds_bucket{le=\"0.05\"} 5\n",
        "kraken_queue_wait_seconds_bucket{le=\"300\"} 5\n"
        "kraken_queue_wait_seconds_bucket{le=\"+Inf\"} 6\n"
        "kraken_queue_wait_seconds_sum 400.012\n"
        "kraken_queue_wait_seconds_count 6\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(s, want[i])) {
            tu_print_escaped("missing", want[i], strlen(want[i]));
            tu_print_escaped("page", s, strlen(s));
            fail();
        }
    }
    /* a subsystem's families (the cluster's links) come last */
    const char *tail = "# TYPE kraken_more gauge\nkraken_more 1\n";
    assert_string_equal(s + strlen(s) - strlen(tail), tail);
    /* one HELP and one TYPE per family; fields outside /metrics stay out */
    const char *p = s;
    int helps = 0;
    while ((p = strstr(p, "# TYPE kraken_disconnects_total ")))
        helps++, p++;
    assert_int_equal(helps, 1);
    assert_null(strstr(s, "kraken_pid"));
    assert_null(strstr(s, "kraken_http_port"));
    assert_null(strstr(s, "kraken_redis_port"));
    assert_null(strstr(s, "kraken_curr_connections"));
    /* every table field that /metrics exports has a name and help */
    for (size_t i = 0; i < stats_nfields; i++)
        if (stats_fields[i].metric != METRIC_NONE) {
            assert_non_null(stats_fields[i].metric_name);
            assert_non_null(stats_fields[i].help);
        }
}

static void test_wait_histogram_buckets(void **state)
{
    (void)state;
    struct router r;
    struct router_config cfg = {.num_shards = 1, .retain_per_shard = 4, .max_queue_bytes = 1 << 20};
    assert_int_equal(router_init(&r, &cfg, 1000), 0);
    struct subscriber s;
    subscriber_init(&s, 1, NULL);
    assert_int_equal(router_subscribe(&r, &s, B("t")), 1);
    struct proto_slice t = {"t", 1};
    uint32_t fanout;
    assert_int_equal(router_publish(&r, NULL, &t, 1, B("x"), 1000, &fanout), 0);
    const struct entry *e = queue_front(&s.queue)->e;
    entry_observe_wait(e, e->publish_ms);        /* 0 ms */
    entry_observe_wait(e, e->publish_ms + 1);    /* 1 ms: le 0.001 */
    entry_observe_wait(e, e->publish_ms + 2);    /* le 0.005 */
    entry_observe_wait(e, e->publish_ms + 1000); /* le 1 */
    entry_observe_wait(e, e->publish_ms + 1001); /* le 5 */
    entry_observe_wait(e, e->publish_ms + 400000);
    const struct entry_wait_hist *h = &r.entries.wait;
    assert_int_equal(h->bucket[0], 2);
    assert_int_equal(h->bucket[1], 1);
    assert_int_equal(h->bucket[6], 1);
    assert_int_equal(h->bucket[7], 1);
    assert_int_equal(h->bucket[ENTRY_WAIT_BUCKETS - 1], 1);
    assert_int_equal(h->count, 6);
    assert_int_equal(h->sum_ms, 0 + 1 + 2 + 1000 + 1001 + 400000);
    /* a poll observes each entry it writes */
    struct evbuffer *b = evbuffer_new();
    assert_int_equal(queue_write(&s.queue, b, 2048), 1);
    evbuffer_free(b);
    assert_int_equal(h->count, 7);
    /* the internal namespace (the readiness canary) is neither counted nor retained */
    uint64_t published = r.stats.published, deliveries = r.stats.deliveries;
    assert_int_equal(router_subscribe_ns(&r, &s, TOPIC_NS_INTERNAL, B("c")), 1);
    struct proto_slice c = {"c", 1};
    struct router_publish_result res;
    assert_int_equal(router_publish_ns(&r, NULL, TOPIC_NS_INTERNAL, &c, 1, B("y"), 1000, &res), 0);
    assert_int_equal(s.queue.count, 1);
    assert_int_equal(r.stats.published, published);
    assert_int_equal(r.stats.deliveries, deliveries);
    assert_int_equal(r.shards[0].count, 1);
    b = evbuffer_new();
    assert_int_equal(queue_write(&s.queue, b, 2048), 1);
    evbuffer_free(b);
    assert_int_equal(h->count, 7);
    router_remove_subscriber(&r, &s);
    router_free(&r);
}

static void test_json_string(void **state)
{
    (void)state;
    struct evbuffer *b = evbuffer_new();
    metrics_json_string(b, B("a\"b\\c\x01\xff d"));
    assert_evbuffer_equal(b, B("\"a\\\"b\\\\c\\u0001\\u00ff d\""));
    evbuffer_free(b);
}

static void topics_paging(int budget_ms)
{
    metrics_page_budget_ms = budget_ms;
    struct router r;
    struct router_config cfg = {.num_shards = 4, .retain_per_shard = 4, .max_queue_bytes = 1 << 20};
    assert_int_equal(router_init(&r, &cfg, 1000), 0);
    struct subscriber s;
    subscriber_init(&s, 1, NULL);
    enum { N = 5000 };
    char name[32];
    for (int i = 0; i < N; i++) {
        int n = snprintf(name, sizeof name, "topic%d", i);
        assert_int_equal(router_subscribe(&r, &s, name, (size_t)n), 1);
    }
    assert_int_equal(router_subscribe_ns(&r, &s, TOPIC_NS_INTERNAL, B("hidden")), 1);
    char *seen = calloc(N, 1);
    uint64_t offset = 0;
    int total = 0, pages = 0;
    for (;;) {
        struct evbuffer *b = evbuffer_new();
        metrics_topics_page(&r.topics, offset, 333, b);
        size_t len;
        char *page = evbuffer_take(b, &len);
        evbuffer_free(b);
        assert_null(strstr(page, "hidden"));
        int items = 0;
        for (const char *p = page; (p = strstr(p, "{\"name\":\"topic")); p++) {
            int i = atoi(p + 14);
            assert_true(i >= 0 && i < N);
            assert_int_equal(seen[i], 0);
            seen[i] = 1;
            items++;
        }
        assert_true(items <= 333);
        total += items;
        pages++;
        const char *next = strstr(page, "\"next\":");
        assert_non_null(next);
        if (strncmp(next + 7, "null", 4) == 0) {
            free(page);
            break;
        }
        uint64_t n = strtoull(next + 7, NULL, 10);
        assert_true(n > offset);
        offset = n;
        free(page);
    }
    assert_int_equal(total, N);
    assert_true(pages >= N / 333);
    if (budget_ms < 0) /* out of time at every 1024th slot: pages end there */
        assert_true(pages >= (int)(r.topics.table.cap / 1024));
    free(seen);
    router_remove_subscriber(&r, &s);
    router_free(&r);
    metrics_page_budget_ms = METRICS_PAGE_BUDGET_MS;
}

static void test_topics_paging(void **state)
{
    (void)state;
    topics_paging(METRICS_PAGE_BUDGET_MS);
}

/* Pages cut short by the time budget lose no topic at the cut. */
static void test_topics_paging_out_of_time(void **state)
{
    (void)state;
    topics_paging(-1);
}

/* A recurring condition (out of descriptors, retried 5 times a second) is
 * logged once per LOG_RECUR_MS, each line counting the times not logged. */
static void test_log_recur(void **state)
{
    (void)state;
    struct log_recur r = {0};
    uint64_t quiet = 99;
    assert_true(log_recur_due(&r, 1000, &quiet)); /* the first time */
    assert_int_equal(quiet, 0);
    for (int i = 1; i <= 49; i++) /* 5 a second for ~10 s */
        assert_false(log_recur_due(&r, 1000 + i * 200, &quiet));
    assert_true(log_recur_due(&r, 1000 + LOG_RECUR_MS, &quiet));
    assert_int_equal(quiet, 49);
    assert_false(log_recur_due(&r, 1000 + LOG_RECUR_MS + 1, &quiet));
    assert_true(log_recur_due(&r, 1000 + 3 * LOG_RECUR_MS, &quiet)); /* after a quiet spell */
    assert_int_equal(quiet, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        tu_test(test_families_and_samples),
        tu_test(test_log_recur),
        tu_test(test_wait_histogram_buckets),
        tu_test(test_json_string),
        tu_test(test_topics_paging),
        tu_test(test_topics_paging_out_of_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
