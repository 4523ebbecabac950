/* test_redis_frames.c - the Redis port's frame cache (redis_deliver.c)
 * never serves another entry's frame.  The entries of a cluster retro
 * answer (cluster_retro_answer.c: entry_new, never given a seq) all have
 * seq 0, and a freed one's block comes back from the entry pool for the
 * next at the same address: cached by (address, seq) they got the previous
 * answer's payload (found in review; the steps mirror
 * cluster_link_retro_block + enqueue_got + router_commit).  The pool is off
 * under the sanitizers, so this test turns it on (KRAKEN_TEST_ENTRY_POOL):
 * it runs alone in its process. */
#include "test_util.h"
#include "test_conn.h"

#include "conn.h"
#include "engine.h"
#include "entry.h"
#include "log.h"
#include "proto_redis.h"
#include "queue.h"
#include "router.h"
#include "topic.h"

static void quiet_sink(enum log_level level, const char *msg, size_t len)
{
    (void)level; (void)msg; (void)len;
}

static void send_s(struct conn *c, const char *s)
{
    evbuffer_add(c->in, s, strlen(s));
    c->ops->process(c);
    evbuffer_drain(c->out, evbuffer_get_length(c->out));
}

/* What cluster_retro_answer.c does with one entry of an owner's answer. */
static struct entry *queue_answer_entry(struct engine *eng, struct conn *c, struct topic *t,
                                        const char *payload)
{
    struct entry *e = entry_new(&eng->router.entries, &t, 1, payload, strlen(payload));
    assert_non_null(e);
    e->time = 1;
    e->publish_ms = entry_clock_ms();
    struct qitem *it = queue_push(&c->sub.queue, e);
    assert_non_null(it);
    assert_int_equal(qitem_add_topic(it, 0), 0);
    router_commit(&eng->router, &c->sub);
    entry_unref(e); /* q->got's reference, dropped by cluster_retro_req_free */
    return e;
}

static void test_retro_answer_entries_seq0(void **state)
{
    (void)state;
    log_set_sink(quiet_sink);
    struct engine eng;
    struct engine_config cfg;
    engine_config_defaults(&cfg);
    assert_int_equal(engine_init(&eng, &cfg, NULL, NULL, NULL), 0);
    struct conn *r1 = tc_open(&eng, &proto_redis), *r2 = tc_open(&eng, &proto_redis);
    send_s(r1, "SUBSCRIBE rt\r\n");
    send_s(r2, "SUBSCRIBE rt\r\n");
    struct topic *t = topic_find(&eng.router.topics, TOPIC_NS_CHANNEL, "rt", 2);
    assert_non_null(t);

    /* r1's KRAKEN.RETROSUBSCRIBE answer: one entry, delivered, freed. */
    struct entry *e1 = queue_answer_entry(&eng, r1, t, "first");
    assert_int_equal(e1->seq, 0);
    r1->ops->deliver(r1);
    assert_evbuffer_equal(r1->out, B("*3\r\n$7\r\nmessage\r\n$2\r\nrt\r\n$5\r\nfirst\r\n"));
    evbuffer_drain(r1->out, evbuffer_get_length(r1->out));

    /* r2's answer, later: another entry of the same size class. */
    struct entry *e2 = queue_answer_entry(&eng, r2, t, "other");
    assert_ptr_equal(e2, e1); /* the same block (the pool), else this proves nothing */
    r2->ops->deliver(r2);
    assert_evbuffer_equal(r2->out, B("*3\r\n$7\r\nmessage\r\n$2\r\nrt\r\n$5\r\nother\r\n"));
    tc_close(r1);
    tc_close(r2);
    engine_free(&eng);
}

int main(void)
{
    setenv("KRAKEN_TEST_ENTRY_POOL", "1", 1); /* before the first entry */
    const struct CMUnitTest tests[] = {
        tu_test(test_retro_answer_entries_seq0),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
