/* test_router.c - unit tests for the router, queues, retention and entries
 * (c_src/router.h, queue.h, retain.h, entry.h), without sockets.
 *
 * Deliveries are checked by serialising a subscriber's queue with
 * queue_write() into an evbuffer and comparing the exact `get messages` bytes.
 * Memory (entries, topics, queue lists) is checked by ASan/LSan at exit. */
#include "test_util.h"

#include "entry.h"
#include "queue.h"
#include "retain.h"
#include "router.h"

#define NSUBS 8

struct fix {
    struct router r;
    struct subscriber s[NSUBS]; /* s[i].id == i + 1 */
    int overflows;
    struct subscriber *last_overflow;
};

static void on_overflow(struct subscriber *s, void *arg)
{
    struct fix *f = arg;
    f->overflows++;
    f->last_overflow = s;
}

static void fix_destroy(void *p);

static struct fix *fix_new(uint32_t shards, uint32_t retain, size_t max_queue, int64_t start)
{
    struct fix *f = calloc(1, sizeof *f);
    assert_non_null(f);
    struct router_config cfg = {
        .num_shards = shards,
        .retain_per_shard = retain,
        .max_queue_bytes = max_queue,
        .overflow = on_overflow,
        .cb_arg = f,
    };
    assert_int_equal(router_init(&f->r, &cfg, start), 0);
    for (int i = 0; i < NSUBS; i++)
        subscriber_init(&f->s[i], (uint64_t)i + 1, NULL);
    tu_defer(fix_destroy, f);
    return f;
}

static void fix_destroy(void *p)
{
    struct fix *f = p;
    for (int i = 0; i < NSUBS; i++)
        router_remove_subscriber(&f->r, &f->s[i]);
    router_free(&f->r);
    free(f);
}

static void fix_free(struct fix *f)
{
    tu_undefer(f);
    fix_destroy(f);
}

/* Subscribes to every space-separated topic of list (length-counted). */
static void sub_n(struct fix *f, struct subscriber *s, const char *list, size_t len)
{
    const char *cur = list, *end = list + len;
    struct proto_slice t;
    while (proto_next_topic(&cur, end, &t))
        assert_true(router_subscribe(&f->r, s, t.p, t.len) >= 0);
}

static void sub(struct fix *f, struct subscriber *s, const char *list)
{
    sub_n(f, s, list, strlen(list));
}

#define MAXT 256

static uint32_t split(const char *list, size_t len, struct proto_slice *sl)
{
    const char *cur = list, *end = list + len;
    uint32_t n = 0;
    while (proto_next_topic(&cur, end, &sl[n])) {
        n++;
        assert_true(n < MAXT);
    }
    return n;
}

/* Publishes payload to the topics of list at time now; returns the fanout. */
static uint32_t pub_at(struct fix *f, struct subscriber *p, const char *list, size_t tlen,
                       const char *payload, size_t plen, int64_t now)
{
    struct proto_slice sl[MAXT];
    uint32_t n = split(list, tlen, sl);
    uint32_t fanout = 12345;
    assert_int_equal(router_publish(&f->r, p, sl, n, payload, plen, now, &fanout), 0);
    return fanout;
}

/* Same at the router's current time. */
static uint32_t pub_n(struct fix *f, struct subscriber *p, const char *list, size_t tlen,
                      const char *payload, size_t plen)
{
    return pub_at(f, p, list, tlen, payload, plen, f->r.last_time);
}

static uint32_t pub(struct fix *f, struct subscriber *p, const char *list, const char *payload,
                    int64_t now)
{
    return pub_at(f, p, list, strlen(list), payload, strlen(payload), now);
}

static int retro(struct fix *f, struct subscriber *s, const char *list, enum router_horizon k,
                 int64_t h)
{
    struct proto_slice sl[MAXT];
    uint32_t n = split(list, strlen(list), sl);
    return router_retro_subscribe(&f->r, s, sl, n, k, h, h);
}

/* Serialises and empties s's queue; compares with the reply for block
 * (or END when block is empty).  Checks the byte count kept by the queue and
 * the number of entries written. */
static void expect_queue_n(struct subscriber *s, const char *block, size_t len, long nentries,
                           size_t copy_limit)
{
    struct evbuffer *out = evbuffer_new(), *exp = evbuffer_new();
    if (len)
        value_reply(exp, block, len);
    else
        evbuffer_add(exp, "END\r\n", 5);
    assert_int_equal(s->queue.bytes, len);
    assert_int_equal(s->queue.count, nentries);
    long n = queue_write(&s->queue, out, copy_limit);
    assert_int_equal(n, nentries);
    assert_evbuffers_equal(out, exp);
    assert_int_equal(s->queue.count, 0);
    assert_int_equal(s->queue.bytes, 0);
    evbuffer_free(out);
    evbuffer_free(exp);
}

/* Same with the expected block in an evbuffer, which is emptied. */
static void expect_queue_ev(struct subscriber *s, struct evbuffer *block, long nentries)
{
    size_t len = evbuffer_get_length(block);
    char *copy = evbuffer_take(block, NULL);
    expect_queue_n(s, copy, len, nentries, SIZE_MAX);
    free(copy);
}

#define expect_queue(s, lit, n) expect_queue_n((s), B(lit), (n), SIZE_MAX)
#define expect_empty(s) expect_queue_n((s), "", 0, 0, SIZE_MAX)

static struct entry *queued_entry(const struct subscriber *s, uint32_t i)
{
    assert_true(i < s->queue.count);
    return s->queue.items[(s->queue.head + i) & (s->queue.cap - 1)].e;
}

/* The k-th name "n<i>" whose topic lands on the given shard. */
static void name_on_shard(struct fix *f, uint32_t shard, int k, char *out)
{
    struct subscriber d;
    subscriber_init(&d, 999999, NULL);
    for (int i = 0;; i++) {
        char name[32];
        snprintf(name, sizeof name, "n%d", i);
        assert_int_equal(router_subscribe(&f->r, &d, name, strlen(name)), 1);
        struct topic *t = router_find_topic(&f->r, name, strlen(name));
        assert_non_null(t);
        uint32_t sh = t->shard;
        assert_int_equal(router_unsubscribe(&f->r, &d, name, strlen(name)), 1);
        if (sh == shard && k-- == 0) {
            strcpy(out, name);
            break;
        }
    }
    router_remove_subscriber(&f->r, &d);
}

/* ---- subscriptions ---- */

static void test_subscribe_counts(void **state)
{
    (void)state;
    struct fix *f = fix_new(4, 10, SIZE_MAX, 1000);
    struct subscriber *a = &f->s[0], *b = &f->s[1];
    assert_int_equal(router_subscribe(&f->r, a, B("t1")), 1);
    assert_int_equal(router_subscribe(&f->r, a, B("t1")), 0);
    assert_int_equal(router_subscribe(&f->r, a, B("t2")), 1);
    assert_int_equal(router_subscribe(&f->r, b, B("t1")), 1);
    assert_int_equal(f->r.stats.subscriptions, 3);
    assert_int_equal(topic_index_count(&f->r.topics), 2);
    assert_int_equal(a->subs.count, 2);
    struct topic *t1 = router_find_topic(&f->r, B("t1"));
    assert_non_null(t1);
    assert_int_equal(t1->nsubs, 2);
    assert_bytes_equal(t1->name, t1->len, "t1", 2);
    assert_null(router_find_topic(&f->r, B("t3")));

    assert_int_equal(router_unsubscribe(&f->r, a, B("t1")), 1);
    assert_int_equal(router_unsubscribe(&f->r, a, B("t1")), 0);
    assert_int_equal(t1->nsubs, 1);
    assert_int_equal(f->r.stats.subscriptions, 2);
    /* unknown topics: nothing happens, nothing is created */
    assert_int_equal(router_unsubscribe(&f->r, a, B("nope")), 0);
    assert_null(router_find_topic(&f->r, B("nope")));
    /* a topic that exists but a does not hold */
    assert_int_equal(router_unsubscribe(&f->r, a, B("t1")), 0);
    assert_int_equal(topic_index_count(&f->r.topics), 2);

    assert_int_equal(router_unsubscribe(&f->r, b, B("t1")), 1);
    assert_null(router_find_topic(&f->r, B("t1")));
    assert_int_equal(router_unsubscribe(&f->r, a, B("t2")), 1);
    assert_int_equal(topic_index_count(&f->r.topics), 0);
    assert_int_equal(f->r.stats.subscriptions, 0);
    fix_free(f);
}

/* Swap-removal from a topic's subscriber array keeps the others reachable. */
static void test_unsubscribe_middle(void **state)
{
    (void)state;
    struct fix *f = fix_new(1, 10, SIZE_MAX, 1000);
    for (int i = 0; i < 5; i++)
        sub(f, &f->s[i], "t");
    assert_int_equal(router_unsubscribe(&f->r, &f->s[1], B("t")), 1);
    assert_int_equal(router_unsubscribe(&f->r, &f->s[0], B("t")), 1);
    assert_int_equal(pub(f, &f->s[7], "t", "x", 1001), 3);
    expect_empty(&f->s[0]);
    expect_empty(&f->s[1]);
    for (int i = 2; i < 5; i++)
        expect_queue(&f->s[i], "MESSAGE t 1\r\nx\r\n", 1);
    /* resubscribing works and is counted once */
    assert_int_equal(router_subscribe(&f->r, &f->s[0], B("t")), 1);
    assert_int_equal(pub(f, NULL, "t", "y", 1001), 4);
    expect_queue(&f->s[0], "MESSAGE t 1\r\ny\r\n", 1);
    fix_free(f);
}

/* Many topics: the hash tables keep finding what is left after deletions. */
static void test_topic_churn(void **state)
{
    (void)state;
    struct fix *f = fix_new(8, 4, SIZE_MAX, 1000);
    struct subscriber *a = &f->s[0];
    char name[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof name, "topic-%d", i);
        assert_int_equal(router_subscribe(&f->r, a, name, strlen(name)), 1);
    }
    assert_int_equal(topic_index_count(&f->r.topics), 3000);
    for (int i = 1; i < 3000; i += 2) {
        snprintf(name, sizeof name, "topic-%d", i);
        assert_int_equal(router_unsubscribe(&f->r, a, name, strlen(name)), 1);
    }
    assert_int_equal(topic_index_count(&f->r.topics), 1500);
    assert_int_equal(a->subs.count, 1500);
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof name, "topic-%d", i);
        struct topic *t = router_find_topic(&f->r, name, strlen(name));
        if (i % 2)
            assert_null(t);
        else
            assert_non_null(t);
        assert_int_equal(router_subscribe(&f->r, a, name, strlen(name)), i % 2 ? 1 : 0);
    }
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof name, "topic-%d", (i * 7919) % 3000);
        assert_int_equal(router_unsubscribe(&f->r, a, name, strlen(name)), 1);
    }
    assert_int_equal(topic_index_count(&f->r.topics), 0);
    assert_int_equal(a->subs.count, 0);
    assert_int_equal(f->r.stats.subscriptions, 0);
    fix_free(f);
}

/* ---- publishing ---- */

static void test_publish_basic_bytes(void **state)
{
    (void)state;
    struct fix *f = fix_new(4, 10, SIZE_MAX, 1000);
    sub(f, &f->s[0], "t1");
    assert_int_equal(pub(f, &f->s[1], "t1", "hi", 1001), 1);
    assert_int_equal(f->r.stats.published, 1);
    assert_int_equal(f->r.stats.deliveries, 1);
    /* the byte-exact example of SPEC section 1 */
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(queue_write(&f->s[0].queue, out, SIZE_MAX), 1);
    assert_evbuffer_equal(out, B("VALUE messages 0 16\r\nMESSAGE t1 2\r\nhi\r\nEND\r\n"));
    evbuffer_drain(out, evbuffer_get_length(out));
    assert_int_equal(queue_write(&f->s[0].queue, out, SIZE_MAX), 0);
    assert_evbuffer_equal(out, B("END\r\n"));
    evbuffer_free(out);
    /* nobody subscribed: published, delivered to no one */
    assert_int_equal(pub(f, &f->s[1], "other", "x", 1001), 0);
    assert_int_equal(f->r.stats.published, 2);
    assert_int_equal(f->r.stats.deliveries, 1);
    /* empty payload */
    assert_int_equal(pub(f, NULL, "t1", "", 1001), 1);
    expect_queue(&f->s[0], "MESSAGE t1 0\r\n\r\n", 1);
    fix_free(f);
}

/* A single node's topics carry no cluster fields (topic.h, struct
 * topic_upstream): the idle workload's 100,000 topics paid 56 bytes each
 * for them before they moved out (2.78 -> 2.46 kB per connection). */
static void test_topic_without_cluster_fields(void **state)
{
    (void)state;
    struct fix *f = fix_new(4, 10, SIZE_MAX, 1000);
    sub(f, &f->s[0], "t1");
    assert_int_equal(pub(f, &f->s[1], "t1", "hi", 1001), 1);
    struct topic *t = topic_find(&f->r.topics, TOPIC_NS_CHANNEL, B("t1"));
    assert_non_null(t);
    assert_null(t->up);
    assert_int_equal(topic_up(t)->since, INT64_MAX); /* not held upstream */
    assert_int_equal(topic_up(t)->seq, UINT64_MAX);
    assert_null(topic_up(t)->pin);
    struct topic_upstream *u = topic_upstream(t);
    assert_non_null(u);
    assert_ptr_equal(t->up, u);
    assert_int_equal(u->since, INT64_MAX); /* allocated with the defaults */
    assert_ptr_equal(topic_upstream(t), u);
    assert_true(sizeof(struct topic) <= 56);
    fix_free(f); /* (frees u with t: the sanitizer build checks it) */
}

/* A push subscriber's queue keeps its array while each write uses a good
 * part of it (no allocations per write at a steady rate), and gives it back
 * once the burst is over. */
static void test_queue_array_kept_while_used(void **state)
{
    (void)state;
    struct fix *f = fix_new(4, 1000, SIZE_MAX, 1000);
    sub(f, &f->s[0], "t1");
    struct evbuffer *out = evbuffer_new();
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 100; i++)
            pub(f, &f->s[1], "t1", "x", 1001);
        struct qitem *items = f->s[0].queue.items;
        assert_int_equal(f->s[0].queue.cap, 128);
        assert_int_equal(queue_write(&f->s[0].queue, out, SIZE_MAX), 100);
        assert_ptr_equal(f->s[0].queue.items, items); /* kept */
    }
    for (int i = 0; i < 10; i++)
        pub(f, &f->s[1], "t1", "x", 1001);
    assert_int_equal(queue_write(&f->s[0].queue, out, SIZE_MAX), 10);
    assert_null(f->s[0].queue.items); /* 10 of 128: given back */
    assert_int_equal(f->s[0].queue.cap, 0);
    evbuffer_free(out);
    fix_free(f);
}

/* Reached through several topics: one entry, held topics in the publisher's order. */
static void test_publish_once_through_several_topics(void **state)
{
    (void)state;
    struct fix *f = fix_new(4, 10, SIZE_MAX, 1000);
    struct subscriber *a = &f->s[0], *b = &f->s[1], *p = &f->s[2];
    sub(f, a, "c a");
    sub(f, b, "b c a");
    assert_int_equal(pub(f, p, "a b c", "hi", 1001), 2);
    assert_int_equal(f->r.stats.deliveries, 2);
    expect_queue(a, "MESSAGE a c 2\r\nhi\r\n", 1);
    expect_queue(b, "MESSAGE a b c 2\r\nhi\r\n", 1);
    /* publisher order, whatever the subscription order; duplicates ignored */
    assert_int_equal(pub(f, p, "c b  c a b", "x", 1001), 2);
    expect_queue(a, "MESSAGE c a 1\r\nx\r\n", 1);
    expect_queue(b, "MESSAGE c b a 1\r\nx\r\n", 1);
    /* topics a subscriber does not hold are not listed */
    assert_int_equal(pub(f, p, "zz b yy", "q", 1001), 1);
    expect_empty(a);
    expect_queue(b, "MESSAGE b 1\r\nq\r\n", 1);
    fix_free(f);
}

static void test_no_self_delivery(void **state)
{
    (void)state;
    struct fix *f = fix_new(4, 10, SIZE_MAX, 1000);
    struct subscriber *a = &f->s[0], *b = &f->s[1];
    sub(f, a, "t u");
    sub(f, b, "t");
    assert_int_equal(pub(f, a, "t u", "mine", 1001), 1);
    expect_empty(a);
    expect_queue(b, "MESSAGE t 4\r\nmine\r\n", 1);
    /* no publisher (NULL): everyone */
    assert_int_equal(pub(f, NULL, "t", "all", 1001), 2);
    expect_queue(a, "MESSAGE t 3\r\nall\r\n", 1);
    expect_queue(b, "MESSAGE t 3\r\nall\r\n", 1);
    fix_free(f);
}

/* Cluster peers (router.h): a peer's subscription makes no topic_hook
 * call, nor counts as "another subscriber" for a local one; a peer gets an
 * entry only when the to_peers hook says so for that topic (asked once per
 * topic), other subscribers always. */
struct hooks {
    int gained, lost, asked, asked_peer;
    const struct topic *allow; /* to_peers: only this topic */
    const struct subscriber *except; /* set: ROUTER_PEERS_ASK, to_peer: all but this one */
};

static void hook_topic(struct topic *t, struct subscriber *s, bool gained, void *arg)
{
    struct hooks *h = arg;
    (void)t;
    (void)s;
    if (gained)
        h->gained++;
    else
        h->lost++;
}

static enum router_peers hook_to_peers(const struct subscriber *publisher, const struct topic *t,
                                       void *arg)
{
    struct hooks *h = arg;
    (void)publisher;
    h->asked++;
    if (t != h->allow)
        return ROUTER_PEERS_NONE;
    return h->except ? ROUTER_PEERS_ASK : ROUTER_PEERS_ALL;
}

static bool hook_to_peer(const struct subscriber *publisher, const struct topic *t,
                         const struct subscriber *s, void *arg)
{
    struct hooks *h = arg;
    (void)publisher;
    (void)t;
    h->asked_peer++;
    return s != h->except;
}

static void test_peers(void **state)
{
    (void)state;
    struct fix *f = fix_new(4, 10, SIZE_MAX, 1000);
    struct hooks h = {0};
    f->r.cfg.topic_hook = hook_topic;
    f->r.cfg.to_peers = hook_to_peers;
    f->r.cfg.to_peer = hook_to_peer;
    f->r.cfg.cluster_arg = &h;
    struct subscriber *peer = &f->s[0], *peer2 = &f->s[1], *local = &f->s[2], *pubr = &f->s[3];
    peer->peer = peer2->peer = true;
    sub(f, peer, "t u");
    sub(f, peer2, "t");
    assert_int_equal(h.gained, 0);
    sub(f, local, "t");                 /* the first local subscriber */
    assert_int_equal(h.gained, 1);
    h.allow = router_find_topic(&f->r, "t", 1);
    assert_int_equal(pub(f, pubr, "t u", "x", 1001), 3);
    assert_int_equal(h.asked, 2);       /* once per topic with peers */
    expect_queue(peer, "MESSAGE t 1\r\nx\r\n", 1); /* u: not to peers */
    expect_queue(peer2, "MESSAGE t 1\r\nx\r\n", 1);
    expect_queue(local, "MESSAGE t 1\r\nx\r\n", 1);
    h.allow = NULL;
    assert_int_equal(pub(f, pubr, "t", "y", 1001), 1);
    expect_queue(local, "MESSAGE t 1\r\ny\r\n", 1);
    expect_empty(peer);
    expect_empty(peer2);
    assert_int_equal(h.asked_peer, 0);
    /* ROUTER_PEERS_ASK: to_peer says for each peer (a core leaving out
     * the link of the core it forwards the entry to, cluster_upstream.c). */
    h.allow = router_find_topic(&f->r, "t", 1);
    h.except = peer;
    assert_int_equal(pub(f, pubr, "t", "z", 1001), 2);
    assert_int_equal(h.asked_peer, 2);
    expect_empty(peer);
    expect_queue(peer2, "MESSAGE t 1\r\nz\r\n", 1);
    expect_queue(local, "MESSAGE t 1\r\nz\r\n", 1);
    /* The last local subscriber leaving is the last one, peers or not. */
    assert_int_equal(router_unsubscribe(&f->r, local, "t", 1), 1);
    assert_int_equal(h.lost, 1);
    router_remove_subscriber(&f->r, peer);
    router_remove_subscriber(&f->r, peer2);
    assert_int_equal(h.lost, 1);
    fix_free(f);
}

/* Patterns in a cluster (cluster_pattern.c): a peer's pattern makes no
 * pattern_hook call and is not counted by router_local_patterns (NUMPAT);
 * a peer gets an entry through its pattern only when pattern_to_peers says
 * so (asked once per (pattern, topic) match), never when it published it,
 * and is not counted among the receivers; the hook sees the first local
 * holder (holders 1), a later one while the first is pending, and the last
 * one leaving (s NULL). */
struct phooks {
    int first, more, last, asked;
    bool pending;
    const char *allow; /* pattern_to_peers: only the topic of this name */
};

static bool hook_pattern(const char *name, size_t len, struct subscriber *s, uint32_t holders,
                         void *arg)
{
    struct phooks *h = arg;
    (void)name;
    (void)len;
    if (!s)
        h->last++;
    else if (holders == 1)
        h->first++;
    else
        h->more++;
    return h->pending;
}

static bool hook_pattern_to_peers(const struct subscriber *publisher, const struct topic *t,
                                  void *arg)
{
    struct phooks *h = arg;
    (void)publisher;
    h->asked++;
    return h->allow && t->len == strlen(h->allow) && !memcmp(t->name, h->allow, t->len);
}

static int count_local(const char *name, size_t len, void *arg)
{
    (void)name;
    (void)len;
    ++*(int *)arg;
    return 0;
}

static void test_peer_patterns(void **state)
{
    (void)state;
    struct fix *f = fix_new(4, 10, SIZE_MAX, 1000);
    static struct phooks h; /* (static: the fixture's deferred cleanup may call the hook) */
    h = (struct phooks){0};
    f->r.cfg.pattern_hook = hook_pattern;
    f->r.cfg.pattern_to_peers = hook_pattern_to_peers;
    f->r.cfg.cluster_arg = &h;
    struct subscriber *peer = &f->s[0], *l1 = &f->s[1], *l2 = &f->s[2], *pubr = &f->s[3];
    peer->peer = true;
    assert_int_equal(router_psubscribe(&f->r, peer, "t*", 2), 1);
    assert_int_equal(router_psubscribe(&f->r, peer, "u*", 2), 1);
    assert_int_equal(h.first + h.more + h.last, 0);
    assert_int_equal(router_local_patterns(&f->r), 0);
    int n = 0;
    router_foreach_local_pattern(&f->r, count_local, &n);
    assert_int_equal(n, 0);
    h.pending = true;
    assert_int_equal(router_psubscribe(&f->r, l1, "t*", 2), 1);
    assert_int_equal(h.first, 1);
    h.pending = false;
    assert_int_equal(router_psubscribe(&f->r, l2, "t*", 2), 1); /* waits for the first's */
    assert_int_equal(h.more, 1);
    assert_int_equal(router_punsubscribe(&f->r, l2, "t*", 2), 1);
    assert_int_equal(router_psubscribe(&f->r, l2, "t*", 2), 1); /* not pending: no call */
    assert_int_equal(h.more, 1);
    assert_int_equal(router_local_patterns(&f->r), 1);
    router_foreach_local_pattern(&f->r, count_local, &n);
    assert_int_equal(n, 1);
    /* Only the allowed topic reaches the peer; receivers count local ones. */
    h.allow = "t1";
    struct router_publish_result res;
    struct proto_slice ts[] = {{"t1", 2}, {"t2", 2}, {"u1", 2}};
    assert_int_equal(router_publish_ns(&f->r, pubr, TOPIC_NS_CHANNEL, ts, 3, "x", 1, 1001, &res),
                     0);
    assert_int_equal(res.receivers, 4); /* l1, l2: t1 and t2 each */
    assert_int_equal(h.asked, 3);       /* (t*, t1), (t*, t2), (u*, u1) */
    expect_queue(peer, "MESSAGE t1 1\r\nx\r\n", 1);
    expect_queue(l1, "MESSAGE t1 t2 1\r\nx\r\n", 1);
    expect_queue(l2, "MESSAGE t1 t2 1\r\nx\r\n", 1);
    /* Never back to the peer that published it. */
    assert_int_equal(pub(f, peer, "t1", "y", 1001), 2);
    expect_empty(peer);
    expect_queue(l1, "MESSAGE t1 1\r\ny\r\n", 1);
    expect_queue(l2, "MESSAGE t1 1\r\ny\r\n", 1);
    /* The last local holder leaving calls the hook once; the peer stays. */
    router_remove_subscriber(&f->r, l1);
    assert_int_equal(h.last, 0);
    router_remove_subscriber(&f->r, l2);
    assert_int_equal(h.last, 1);
    router_remove_subscriber(&f->r, peer);
    assert_int_equal(h.last, 1);
    assert_int_equal(f->r.npatterns, 0);
    fix_free(f);
}

/* Entries a core forwarded for other nodes (cluster_origin.c marks the
 * links of the nodes that had them already `skip' around their routing)
 * reach every subscriber but those links, neither by topic nor through a
 * pattern; other peers and local subscribers get them, and once the marks
 * are cleared those links get entries again. */
static void test_skip_peers(void **state)
{
    (void)state;
    struct fix *f = fix_new(4, 10, SIZE_MAX, 1000);
    static struct phooks h; /* (static: the fixture's deferred cleanup may call the hook) */
    h = (struct phooks){.allow = "t1"};
    f->r.cfg.pattern_hook = hook_pattern;
    f->r.cfg.pattern_to_peers = hook_pattern_to_peers;
    f->r.cfg.cluster_arg = &h;
    struct subscriber *o = &f->s[0], *q = &f->s[1], *l = &f->s[2], *fwd = &f->s[3];
    struct subscriber *op = &f->s[4], *qp = &f->s[5];
    o->peer = q->peer = fwd->peer = op->peer = qp->peer = true;
    sub(f, o, "t1");
    sub(f, q, "t1");
    sub(f, l, "t1");
    assert_int_equal(router_psubscribe(&f->r, op, "t*", 2), 1);
    assert_int_equal(router_psubscribe(&f->r, qp, "t*", 2), 1);
    o->skip = true;
    assert_int_equal(pub(f, fwd, "t1", "x", 1001), 4);
    o->skip = false;
    op->skip = q->skip = true;
    assert_int_equal(pub(f, fwd, "t1", "y", 1001), 3);
    op->skip = q->skip = false;
    expect_queue(o, "MESSAGE t1 1\r\ny\r\n", 1);
    expect_queue(op, "MESSAGE t1 1\r\nx\r\n", 1);
    expect_queue(q, "MESSAGE t1 1\r\nx\r\n", 1);
    expect_queue(qp, "MESSAGE t1 1\r\nx\r\nMESSAGE t1 1\r\ny\r\n", 2);
    expect_queue(l, "MESSAGE t1 1\r\nx\r\nMESSAGE t1 1\r\ny\r\n", 2);
    assert_int_equal(pub(f, fwd, "t1", "z", 1001), 5);
    expect_queue(o, "MESSAGE t1 1\r\nz\r\n", 1);
    expect_queue(op, "MESSAGE t1 1\r\nz\r\n", 1);
    fix_free(f);
}

/* Redis shard channels' entries are `SMESSAGE' in Kraken text (what a
 * cluster link carries, cluster_shard.c), whole or listing the topics a
 * subscriber holds; a channel of the same name is another topic. */
static void test_shard_entries_marked(void **state)
{
    (void)state;
    struct fix *f = fix_new(4, 10, SIZE_MAX, 1000);
    struct subscriber *both = &f->s[0], *one = &f->s[1], *chan = &f->s[2], *pubr = &f->s[3];
    assert_int_equal(router_subscribe_ns(&f->r, both, TOPIC_NS_SHARD, "s1", 2), 1);
    assert_int_equal(router_subscribe_ns(&f->r, both, TOPIC_NS_SHARD, "s2", 2), 1);
    assert_int_equal(router_subscribe_ns(&f->r, one, TOPIC_NS_SHARD, "s2", 2), 1);
    sub(f, chan, "s1 s2");
    struct router_publish_result res;
    struct proto_slice ts[] = {{"s1", 2}, {"s2", 2}};
    assert_int_equal(router_publish_ns(&f->r, pubr, TOPIC_NS_SHARD, ts, 2, "x", 1, 1001, &res), 0);
    expect_queue(both, "SMESSAGE s1 s2 1\r\nx\r\n", 1);
    expect_queue(one, "SMESSAGE s2 1\r\nx\r\n", 1);
    expect_empty(chan);
    assert_int_equal(pub(f, pubr, "s1 s2", "y", 1001), 1);
    expect_queue(chan, "MESSAGE s1 s2 1\r\ny\r\n", 1);
    expect_empty(both);
    fix_free(f);
}

static void test_order_per_publisher(void **state)
{
    (void)state;
    struct fix *f = fix_new(4, 100, SIZE_MAX, 1000);
    struct subscriber *a = &f->s[0], *p = &f->s[1], *q = &f->s[2];
    sub(f, a, "t1 t2");
    struct evbuffer *exp = evbuffer_new();
    for (int i = 0; i < 100; i++) {
        char payload[16];
        snprintf(payload, sizeof payload, "m%d", i);
        const char *topic = i % 3 == 0 ? "t1" : i % 3 == 1 ? "t2" : "t2 t1";
        pub(f, i % 2 ? p : q, topic, payload, 1001 + i / 10);
        evbuffer_add_printf(exp, "MESSAGE %s %zu\r\n%s\r\n", topic, strlen(payload), payload);
    }
    size_t len = evbuffer_get_length(exp);
    expect_queue_n(a, (const char *)evbuffer_pullup(exp, -1), len, 100, SIZE_MAX);
    /* after a big burst the queue works again from empty */
    pub(f, q, "t2", "again", 1020);
    expect_queue(a, "MESSAGE t2 5\r\nagain\r\n", 1);
    evbuffer_free(exp);
    fix_free(f);
}

/* Topic names are length-counted: NUL is an ordinary byte. */
static void test_nul_in_topic_names(void **state)
{
    (void)state;
    struct fix *f = fix_new(4, 10, SIZE_MAX, 1000);
    struct subscriber *a = &f->s[0], *b = &f->s[1], *c = &f->s[2];
    sub_n(f, a, B("a\0b"));
    sub_n(f, b, B("a"));
    sub_n(f, c, B("a\0c"));
    assert_int_equal(topic_index_count(&f->r.topics), 3);
    assert_int_equal(pub_n(f, NULL, B("a\0b"), B("p\0q")), 1);
    expect_queue(a, "MESSAGE a\0b 3\r\np\0q\r\n", 1);
    expect_empty(b);
    expect_empty(c);
    assert_int_equal(pub_n(f, NULL, B("a a\0c"), B("\r\n")), 2);
    expect_queue(b, "MESSAGE a 2\r\n\r\n\r\n", 1);
    expect_queue(c, "MESSAGE a\0c 2\r\n\r\n\r\n", 1);
    fix_free(f);
}

/* Entries with more than 64 topics use a list instead of a bit mask. */
static void test_many_topics_subset(void **state)
{
    (void)state;
    struct fix *f = fix_new(4, 10, SIZE_MAX, 1000);
    struct subscriber *x = &f->s[0], *y = &f->s[1], *z = &f->s[2], *w = &f->s[3],
                      *v = &f->s[4];
    struct evbuffer *all = evbuffer_new(), *first64 = evbuffer_new(), *u = evbuffer_new();
    for (int i = 0; i < 100; i++) {
        evbuffer_add_printf(all, "%st%d", i ? " " : "", i);
        if (i < 64) {
            evbuffer_add_printf(first64, "%st%d", i ? " " : "", i);
            evbuffer_add_printf(u, "%su%d", i ? " " : "", i);
        }
    }
    size_t all_len = evbuffer_get_length(all), f64_len = evbuffer_get_length(first64),
           u_len = evbuffer_get_length(u);
    const char *all_s = (const char *)evbuffer_pullup(all, -1);
    const char *f64_s = (const char *)evbuffer_pullup(first64, -1);
    const char *u_s = (const char *)evbuffer_pullup(u, -1);

    sub(f, x, "t99 t70 t5");
    sub_n(f, y, all_s, all_len);
    sub_n(f, z, f64_s, f64_len);
    sub_n(f, w, u_s, u_len);
    sub(f, v, "u63 u0");

    /* 100 topics */
    assert_int_equal(pub_n(f, NULL, all_s, all_len, B("p")), 3);
    /* a holder of every topic gets the prebuilt wire bytes (QUEUE_ALL), others a list */
    assert_true(y->queue.items[y->queue.head].m.mask == QUEUE_ALL);
    assert_true(x->queue.items[x->queue.head].m.mask != QUEUE_ALL);
    assert_int_equal(x->queue.items[x->queue.head].m.list[0], 3);
    expect_queue(x, "MESSAGE t5 t70 t99 1\r\np\r\n", 1);
    struct evbuffer *exp = evbuffer_new();
    evbuffer_add(exp, "MESSAGE ", 8);
    evbuffer_add(exp, all_s, all_len);
    evbuffer_add(exp, " 1\r\np\r\n", 7);
    expect_queue_n(y, (const char *)evbuffer_pullup(exp, -1), evbuffer_get_length(exp), 1,
                   SIZE_MAX);
    evbuffer_drain(exp, evbuffer_get_length(exp));
    evbuffer_add(exp, "MESSAGE ", 8);
    evbuffer_add(exp, f64_s, f64_len);
    evbuffer_add(exp, " 1\r\np\r\n", 7);
    expect_queue_n(z, (const char *)evbuffer_pullup(exp, -1), evbuffer_get_length(exp), 1,
                   SIZE_MAX);

    /* exactly 64 topics: the widest bit mask */
    assert_int_equal(pub_n(f, NULL, u_s, u_len, B("q")), 2);
    assert_true(w->queue.items[w->queue.head].m.mask == QUEUE_ALL);
    assert_true(v->queue.items[v->queue.head].m.mask == (1ULL | 1ULL << 63));
    evbuffer_drain(exp, evbuffer_get_length(exp));
    evbuffer_add(exp, "MESSAGE ", 8);
    evbuffer_add(exp, u_s, u_len);
    evbuffer_add(exp, " 1\r\nq\r\n", 7);
    expect_queue_n(w, (const char *)evbuffer_pullup(exp, -1), evbuffer_get_length(exp), 1,
                   SIZE_MAX);
    expect_queue(v, "MESSAGE u0 u63 1\r\nq\r\n", 1);

    /* several big partial items in one queue, then released unserialised */
    pub_n(f, NULL, all_s, all_len, B("1"));
    pub_n(f, NULL, all_s, all_len, B("2"));
    expect_queue(x, "MESSAGE t5 t70 t99 1\r\n1\r\nMESSAGE t5 t70 t99 1\r\n2\r\n", 2);
    assert_int_equal(z->queue.count, 2);
    router_remove_subscriber(&f->r, z); /* frees the lists (LSan) */
    subscriber_init(z, 3, NULL);

    evbuffer_free(exp);
    evbuffer_free(all);
    evbuffer_free(first64);
    evbuffer_free(u);
    fix_free(f);
}

/* One entry, one payload copy, shared by every queue it reaches. */
static void test_fanout_shares_entry(void **state)
{
    (void)state;
    enum { N = 1000 };
    struct fix *f = fix_new(4, 10, SIZE_MAX, 1000);
    struct subscriber *subs = calloc(N, sizeof *subs);
    for (int i = 0; i < N; i++) {
        subscriber_init(&subs[i], 100 + (uint64_t)i, NULL);
        sub(f, &subs[i], i % 2 ? "a b" : "a");
    }
    assert_int_equal(pub(f, &f->s[0], "a b", "hello", 1001), N);
    assert_int_equal(f->r.stats.deliveries, N);
    struct entry *e = queued_entry(&subs[0], 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(subs[i].queue.count, 1);
        assert_ptr_equal(queued_entry(&subs[i], 0), e);
    }
    /* N queue items + the one shard ring per distinct shard of "a b" */
    uint32_t ta = router_find_topic(&f->r, B("a"))->shard;
    uint32_t tb = router_find_topic(&f->r, B("b"))->shard;
    uint32_t rings = ta == tb ? 1 : 2;
    assert_int_equal(e->refcnt, N + rings);
    assert_bytes_equal(entry_payload(e), e->payload_len, "hello", 5);
    assert_bytes_equal(e->wire, entry_wire_len(e), B("MESSAGE a b 5\r\nhello\r\n"));

    /* sent by reference: the output buffer holds the entry, not a copy */
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(queue_write(&subs[1].queue, out, 0), 1);
    assert_int_equal(e->refcnt, N + rings);
    assert_evbuffer_equal(out, B("VALUE messages 0 20\r\nMESSAGE a b 5\r\nhello\r\nEND\r\n"));
    evbuffer_free(out);
    assert_int_equal(e->refcnt, N - 1 + rings);
    /* a partial item by reference: header rebuilt, payload shared */
    out = evbuffer_new();
    assert_int_equal(queue_write(&subs[0].queue, out, 0), 1);
    assert_int_equal(e->refcnt, N - 1 + rings); /* before pullup copies the bytes out */
    assert_evbuffer_equal(out, B("VALUE messages 0 18\r\nMESSAGE a 5\r\nhello\r\nEND\r\n"));
    evbuffer_free(out);
    assert_int_equal(e->refcnt, N - 2 + rings);

    for (int i = 2; i < N; i++)
        router_remove_subscriber(&f->r, &subs[i]);
    assert_int_equal(e->refcnt, rings);
    for (int i = 0; i < 2; i++)
        router_remove_subscriber(&f->r, &subs[i]);
    free(subs);
    fix_free(f);
}

/* Big entries: copied and referenced output are byte-identical. */
static void test_write_copy_vs_reference(void **state)
{
    (void)state;
    struct fix *f = fix_new(2, 10, SIZE_MAX, 1000);
    struct subscriber *a = &f->s[0], *b = &f->s[1];
    sub(f, a, "x y");
    sub(f, b, "y");
    size_t n = 5000;
    char *payload = malloc(n);
    for (size_t i = 0; i < n; i++)
        payload[i] = (char)(i * 13);
    pub_n(f, NULL, B("x y"), payload, n);
    pub_n(f, NULL, B("y"), B("small"));
    struct evbuffer *block = evbuffer_new();
    add_entry(block, "x y", payload, n);
    add_entry(block, "y", B("small"));
    expect_queue_n(a, (const char *)evbuffer_pullup(block, -1), evbuffer_get_length(block), 2,
                   16);
    evbuffer_drain(block, evbuffer_get_length(block));
    add_entry(block, "y", payload, n);
    add_entry(block, "y", B("small"));
    expect_queue_n(b, (const char *)evbuffer_pullup(block, -1), evbuffer_get_length(block), 2,
                   16);
    evbuffer_free(block);
    free(payload);
    fix_free(f);
}

/* ---- queue bound ---- */

static void test_queue_overflow_once(void **state)
{
    (void)state;
    /* "MESSAGE t1 2\r\nhi\r\n" is 18 bytes: two fit in 36, the third exceeds */
    struct fix *f = fix_new(1, 10, 36, 1000);
    struct subscriber *a = &f->s[0], *b = &f->s[1], *p = &f->s[2];
    sub(f, a, "t1");
    sub(f, b, "t2");
    pub(f, p, "t1", "hi", 1001);
    pub(f, p, "t1", "hi", 1001);
    assert_int_equal(a->queue.bytes, 36);
    assert_int_equal(f->overflows, 0);
    assert_false(a->overflowed);
    pub(f, p, "t1", "hi", 1001);
    assert_int_equal(f->overflows, 1);
    assert_ptr_equal(f->last_overflow, a);
    assert_true(a->overflowed);
    /* an overflowed subscriber is not fed nor reported again */
    assert_int_equal(pub(f, p, "t1", "hi", 1001), 0);
    assert_int_equal(pub(f, p, "t1 t2", "hi", 1001), 1);
    assert_int_equal(f->overflows, 1);
    assert_int_equal(a->queue.count, 3);
    assert_false(b->overflowed);
    expect_queue(b, "MESSAGE t2 2\r\nhi\r\n", 1);
    fix_free(f);
}

static void test_retro_stops_at_overflow(void **state)
{
    (void)state;
    struct fix *f = fix_new(1, 10, 36, 1000);
    for (int i = 0; i < 5; i++)
        pub(f, NULL, "t1", "hi", 1001);
    struct subscriber *a = &f->s[0];
    assert_int_equal(retro(f, a, "t1", ROUTER_BY_SEQ, 0), 1);
    assert_int_equal(f->overflows, 1);
    assert_ptr_equal(f->last_overflow, a);
    assert_int_equal(a->queue.count, 3);
    fix_free(f);
}

/* ---- retention ---- */

/* A byte budget per shard: big entries evict older ones before the count
 * bound is reached, the drop is remembered (horizons before it are too old),
 * and the newest entry is kept even when it alone is over the budget. */
static void test_retention_byte_bound(void **state)
{
    (void)state;
    struct fix *f = calloc(1, sizeof *f);
    assert_non_null(f);
    struct router_config cfg = {
        .num_shards = 1, .retain_per_shard = 100, .retain_bytes_per_shard = 1000,
        .max_queue_bytes = SIZE_MAX, .overflow = on_overflow, .cb_arg = f,
    };
    assert_int_equal(router_init(&f->r, &cfg, 100), 0);
    for (int i = 0; i < NSUBS; i++)
        subscriber_init(&f->s[i], (uint64_t)i + 1, NULL);
    tu_defer(fix_destroy, f);
    struct retain *sh = &f->r.shards[0];
    char big[401];
    memset(big, 'b', 400);
    big[400] = 0;
    pub(f, NULL, "t", "x", 101); /* seq 1, 16 wire bytes */
    pub(f, NULL, "t", big, 102); /* seq 2, 417 */
    pub(f, NULL, "t", big, 103); /* seq 3: 850 in all, under 1000 */
    assert_int_equal(sh->count, 3);
    assert_int_equal(sh->bytes, 16 + 417 + 417);
    assert_int_equal(sh->dropped_seq, 0);
    pub(f, NULL, "t", big, 104); /* seq 4: 1267, over: seq 1 and 2 go */
    assert_int_equal(sh->count, 2);
    assert_int_equal(sh->bytes, 417 + 417);
    assert_int_equal(sh->dropped_seq, 2);
    assert_true(sh->dropped_time == 102);
    assert_int_equal(retro(f, &f->s[0], "t", ROUTER_BY_TIME, 101), 0); /* too old */
    assert_int_equal(retro(f, &f->s[1], "t", ROUTER_BY_TIME, 102), 1);
    assert_int_equal(f->s[1].queue.count, 2);
    char huge[2001];
    memset(huge, 'h', 2000);
    huge[2000] = 0;
    pub(f, NULL, "t", huge, 105); /* alone over the budget: kept, the rest dropped */
    assert_int_equal(sh->count, 1);
    assert_int_equal(retain_at(sh, 0)->seq, 5);
    assert_int_equal(sh->dropped_seq, 4);
    fix_free(f);
}

static void test_retention_ring(void **state)
{
    (void)state;
    struct fix *f = fix_new(1, 3, SIZE_MAX, 100);
    struct retain *sh = &f->r.shards[0];
    assert_int_equal(sh->count, 0);
    assert_int_equal(sh->dropped_seq, 0);
    assert_true(sh->dropped_time == INT64_MIN);
    for (int i = 1; i <= 3; i++)
        pub(f, NULL, "t", "x", 100 + i);
    assert_int_equal(sh->count, 3);
    assert_int_equal(sh->dropped_seq, 0);
    pub(f, NULL, "t", "x", 104);
    pub(f, NULL, "t", "x", 105);
    assert_int_equal(sh->count, 3);
    assert_int_equal(sh->dropped_seq, 2);
    assert_true(sh->dropped_time == 102);
    assert_int_equal(retain_at(sh, 0)->seq, 3);
    assert_true(retain_at(sh, 0)->time == 103);
    assert_int_equal(retain_at(sh, 2)->seq, 5);
    /* publish times never go backwards */
    pub(f, NULL, "t", "x", 50);
    assert_int_equal(retain_at(sh, 2)->seq, 6);
    assert_true(retain_at(sh, 2)->time == 105);
    assert_int_equal(sh->dropped_seq, 3);
    /* ring now holds seq 4, 5, 6 at times 104, 105, 105 */
    assert_int_equal(retain_first_after_seq(sh, 0), 0);
    assert_int_equal(retain_first_after_seq(sh, 4), 1);
    assert_int_equal(retain_first_after_seq(sh, 6), 3);
    assert_int_equal(retain_first_after_time(sh, 103), 0);
    assert_int_equal(retain_first_after_time(sh, 104), 1);
    assert_int_equal(retain_first_after_time(sh, 105), 3);
    fix_free(f);
}

/* An entry is kept once per distinct shard of its topics. */
static void test_retention_per_shard(void **state)
{
    (void)state;
    struct fix *f = fix_new(4, 10, SIZE_MAX, 100);
    char a[32], a2[32], b[32], list[128];
    name_on_shard(f, 0, 0, a);
    name_on_shard(f, 0, 1, a2);
    name_on_shard(f, 1, 0, b);
    assert_int_equal(topic_index_count(&f->r.topics), 0);
    snprintf(list, sizeof list, "%s %s", a, a2);
    pub(f, NULL, list, "x", 101);
    assert_int_equal(f->r.shards[0].count, 1);
    assert_int_equal(retain_at(&f->r.shards[0], 0)->refcnt, 1);
    snprintf(list, sizeof list, "%s %s %s", a, b, a2);
    pub(f, NULL, list, "y", 101);
    assert_int_equal(f->r.shards[0].count, 2);
    assert_int_equal(f->r.shards[1].count, 1);
    assert_int_equal(f->r.shards[2].count, 0);
    assert_ptr_equal(retain_at(&f->r.shards[0], 1), retain_at(&f->r.shards[1], 0));
    assert_int_equal(retain_at(&f->r.shards[1], 0)->refcnt, 2);
    fix_free(f);
}

/* Topics live while subscribed or referenced by a queued or retained entry. */
static void test_topics_freed(void **state)
{
    (void)state;
    struct fix *f = fix_new(1, 1, SIZE_MAX, 100);
    struct subscriber *a = &f->s[0];
    sub(f, a, "x y");
    assert_int_equal(topic_index_count(&f->r.topics), 2);
    pub(f, NULL, "x", "m", 101);
    router_unsubscribe(&f->r, a, B("x"));
    router_unsubscribe(&f->r, a, B("y"));
    /* y had no entry: gone; x is held by the queued and the retained entry */
    assert_null(router_find_topic(&f->r, B("y")));
    assert_non_null(router_find_topic(&f->r, B("x")));
    assert_int_equal(topic_index_count(&f->r.topics), 1);
    /* evict x's entry from retention: still queued for a */
    pub(f, NULL, "z", "n", 101);
    assert_non_null(router_find_topic(&f->r, B("x")));
    assert_int_equal(topic_index_count(&f->r.topics), 2);
    expect_queue(a, "MESSAGE x 1\r\nm\r\n", 1);
    assert_null(router_find_topic(&f->r, B("x")));
    assert_int_equal(topic_index_count(&f->r.topics), 1); /* z: the retained entry */
    /* an entry queued to a subscriber that goes away */
    sub(f, a, "w");
    pub(f, NULL, "w", "o", 101); /* evicts z */
    assert_null(router_find_topic(&f->r, B("z")));
    pub(f, NULL, "v", "o", 101); /* evicts w's entry from retention */
    assert_int_equal(topic_index_count(&f->r.topics), 2);
    router_remove_subscriber(&f->r, a);
    subscriber_init(a, 1, NULL);
    assert_null(router_find_topic(&f->r, B("w")));
    assert_int_equal(topic_index_count(&f->r.topics), 1); /* v */
    assert_int_equal(f->r.stats.subscriptions, 0);
    /* subscribe / unsubscribe alone leaves nothing */
    sub(f, a, "p q r");
    router_remove_subscriber(&f->r, a);
    subscriber_init(a, 1, NULL);
    assert_int_equal(topic_index_count(&f->r.topics), 1);
    fix_free(f);
}

/* ---- retroactive subscription ---- */

static void test_retro_by_seq(void **state)
{
    (void)state;
    struct fix *f = fix_new(1, 10, SIZE_MAX, 1000);
    struct subscriber *a = &f->s[0], *p = &f->s[1];
    pub(f, p, "t", "old", 1001);
    uint64_t h = f->r.seq;
    pub(f, p, "t", "new1", 1001);
    pub(f, p, "u", "other", 1001);
    pub(f, a, "t", "mine", 1001); /* a's own: never delivered */
    pub(f, p, "t u", "new2", 1001);
    assert_int_equal(retro(f, a, "t", ROUTER_BY_SEQ, (int64_t)h), 1);
    assert_non_null(router_find_topic(&f->r, B("t")));
    assert_int_equal(a->subs.count, 1);
    expect_queue(a, "MESSAGE t 4\r\nnew1\r\nMESSAGE t 4\r\nnew2\r\n", 2);
    /* subscribed for live deliveries too */
    pub(f, p, "t", "live", 1001);
    expect_queue(a, "MESSAGE t 4\r\nlive\r\n", 1);
    /* a horizon at the newest seq: nothing */
    assert_int_equal(retro(f, &f->s[2], "t", ROUTER_BY_SEQ, (int64_t)f->r.seq), 1);
    expect_empty(&f->s[2]);
    /* empty topic list */
    assert_int_equal(retro(f, &f->s[3], "", ROUTER_BY_SEQ, 0), 1);
    expect_empty(&f->s[3]);
    fix_free(f);
}

/* The entered bitmap (entry.h): one bit per topic after the wire bytes,
 * zero at publish, independent bits; router_entered_fetch (a link's
 * link_entered) collects the retained entries after a second with a
 * requested topic entered here, not the asker's own, in publish order,
 * without subscribing it; -2 when the retention lost some after it. */
static void test_entered_fetch(void **state)
{
    (void)state;
    struct fix *f = fix_new(1, 8, SIZE_MAX, 1000);
    struct subscriber *a = &f->s[0], *p = &f->s[1];
    pub(f, p, "t", "old", 1001);
    const char *many = "x0 x1 x2 x3 x4 x5 x6 x7 x8 x9 x10 x11 x12 x13 x14 x15 t";
    pub(f, p, many, "e1", 1002);   /* t entered here (bit 16) */
    pub(f, p, "t u", "e2", 1002);  /* u only: not for t */
    pub(f, a, "t", "e3", 1002);    /* the asker's own */
    pub(f, p, "u t", "e4", 1003);  /* t entered here (bit 1) */
    pub(f, p, "t", "e5", 1003);    /* not entered here */
    struct retain *sh = &f->r.shards[0];
    assert_int_equal(sh->count, 6);
    for (uint32_t j = 0; j < sh->count; j++) {
        struct entry *e = retain_at(sh, j);
        for (uint32_t i = 0; i < e->ntopics; i++)
            assert_false(entry_entered_at(e, i));
    }
    struct entry *e1 = retain_at(sh, 1), *e2 = retain_at(sh, 2), *e3 = retain_at(sh, 3),
                 *e4 = retain_at(sh, 4);
    entry_set_entered(e1, 16);
    entry_set_entered(e2, 1);
    entry_set_entered(e3, 0);
    entry_set_entered(e4, 1);
    for (uint32_t i = 0; i < e1->ntopics; i++)
        assert_int_equal(entry_entered_at(e1, i), i == 16);
    assert_true(entry_entered_at(e2, 1) && !entry_entered_at(e2, 0));
    /* the wire bytes are untouched */
    assert_memory_equal(entry_payload(e1), "e1\r\n", 4);
    assert_memory_equal(entry_payload(e4), "e4\r\n", 4);

    struct proto_slice sl[MAXT];
    uint32_t n = split("t", 1, sl);
    uint64_t mark;
    assert_int_equal(router_entered_fetch(&f->r, a, sl, n, 1001, &mark), 2);
    assert_ptr_equal(f->r.tmp_entries[0], e1);
    assert_ptr_equal(f->r.tmp_entries[1], e4);
    assert_int_equal(a->subs.count, 0); /* not subscribed */
    assert_int_equal(router_entered_fetch(&f->r, a, sl, n, 1002, &mark), 1);
    assert_ptr_equal(f->r.tmp_entries[0], e4);
    /* another asker gets e3 too */
    assert_int_equal(router_entered_fetch(&f->r, &f->s[2], sl, n, 1001, &mark), 3);
    n = split("u", 1, sl);
    assert_int_equal(router_entered_fetch(&f->r, a, sl, n, 1000, &mark), 1);
    assert_ptr_equal(f->r.tmp_entries[0], e2);
    /* a topic nobody holds or published is not kept */
    n = split("nobody", 6, sl);
    assert_int_equal(router_entered_fetch(&f->r, a, sl, n, 1000, &mark), 0);
    assert_null(router_find_topic(&f->r, B("nobody")));
    /* older than the node: nothing entered here before it started */
    n = split("t", 1, sl);
    assert_int_equal(router_entered_fetch(&f->r, a, sl, n, 999, &mark), 2);
    /* older than what the retention kept */
    for (int i = 0; i < 5; i++) /* drops old, e1 and e2 */
        pub(f, p, "v", "fill", 1004);
    assert_int_equal(router_entered_fetch(&f->r, a, sl, n, 1001, &mark), -2);
    assert_int_equal(router_entered_fetch(&f->r, a, sl, n, 1002, &mark), 1);
    assert_int_equal(router_entered_fetch(&f->r, a, sl, n, 1003, &mark), 0);
    fix_free(f);
}

static void test_retro_by_seq_not_found(void **state)
{
    (void)state;
    struct fix *f = fix_new(1, 2, SIZE_MAX, 1000);
    struct subscriber *a = &f->s[0], *p = &f->s[1];
    uint64_t h = f->r.seq; /* 0 */
    pub(f, p, "t", "1", 1001);
    pub(f, p, "t", "2", 1001);
    assert_int_equal(f->r.shards[0].dropped_seq, 0);
    pub(f, p, "t", "3", 1001); /* drops seq 1 > h */
    assert_int_equal(retro(f, a, "t", ROUTER_BY_SEQ, (int64_t)h), 0);
    expect_empty(a); /* nothing retro-queued */
    pub(f, p, "t", "4", 1001); /* but subscribed */
    expect_queue(a, "MESSAGE t 1\r\n4\r\n", 1);
    /* h = 2: dropped seq 2 is not after it -> found */
    assert_int_equal(retro(f, &f->s[2], "t", ROUTER_BY_SEQ, 2), 1);
    expect_queue(&f->s[2], "MESSAGE t 1\r\n3\r\nMESSAGE t 1\r\n4\r\n", 2);
    /* h = 1: seq 2 was dropped -> too old */
    assert_int_equal(retro(f, &f->s[3], "t", ROUTER_BY_SEQ, 1), 0);
    fix_free(f);
}

static void test_retro_by_time(void **state)
{
    (void)state;
    struct fix *f = fix_new(1, 3, SIZE_MAX, 1000);
    struct subscriber *p = &f->s[7];
    pub(f, p, "t", "a", 1000);
    pub(f, p, "t", "b", 1001);
    pub(f, p, "t", "c", 1002);
    /* strictly after the horizon second */
    assert_int_equal(retro(f, &f->s[0], "t", ROUTER_BY_TIME, 1001), 1);
    expect_queue(&f->s[0], "MESSAGE t 1\r\nc\r\n", 1);
    assert_int_equal(retro(f, &f->s[1], "t", ROUTER_BY_TIME, 1000), 1);
    expect_queue(&f->s[1], "MESSAGE t 1\r\nb\r\nMESSAGE t 1\r\nc\r\n", 2);
    assert_int_equal(retro(f, &f->s[2], "t", ROUTER_BY_TIME, 1002), 1);
    expect_empty(&f->s[2]);
    /* a horizon before the server's start is too old, though nothing was dropped */
    assert_int_equal(f->r.shards[0].dropped_seq, 0);
    assert_int_equal(retro(f, &f->s[3], "t", ROUTER_BY_TIME, 999), 0);
    expect_empty(&f->s[3]);
    assert_int_equal(f->s[3].subs.count, 1);
    /* dropping entry "a" (time 1000) makes horizons before 1000 too old, not 1000 */
    pub(f, p, "t", "d", 1003);
    assert_true(f->r.shards[0].dropped_time == 1000);
    assert_int_equal(retro(f, &f->s[4], "t", ROUTER_BY_TIME, 1000), 1);
    expect_queue(&f->s[4], "MESSAGE t 1\r\nb\r\nMESSAGE t 1\r\nc\r\nMESSAGE t 1\r\nd\r\n", 3);
    pub(f, p, "t", "e", 1003); /* drops "b" (1001) */
    assert_int_equal(retro(f, &f->s[5], "t", ROUTER_BY_TIME, 1000), 0);
    assert_int_equal(retro(f, &f->s[6], "t", ROUTER_BY_TIME, 1001), 1);
    expect_queue(&f->s[6], "MESSAGE t 1\r\nc\r\nMESSAGE t 1\r\nd\r\nMESSAGE t 1\r\ne\r\n", 3);
    fix_free(f);
}

/* Topics on several shards: each entry once, publish order, held topics listed. */
static void test_retro_several_shards(void **state)
{
    (void)state;
    struct fix *f = fix_new(4, 100, SIZE_MAX, 1000);
    char a[32], a2[32], b[32], c[32], list[160];
    name_on_shard(f, 0, 0, a);
    name_on_shard(f, 0, 1, a2);
    name_on_shard(f, 1, 0, b);
    name_on_shard(f, 2, 0, c);
    struct subscriber *p = &f->s[7];
    struct evbuffer *exp = evbuffer_new();
#define PUB(topics, payload)                                                       \
    do {                                                                           \
        pub(f, p, topics, payload, 1001);                                          \
    } while (0)
    PUB(b, "1");
    PUB(a, "2");
    snprintf(list, sizeof list, "%s %s", a, b);
    PUB(list, "3");
    PUB(c, "4");
    snprintf(list, sizeof list, "%s %s", b, a);
    PUB(list, "5");
    snprintf(list, sizeof list, "%s %s %s", a2, c, a);
    PUB(list, "6");
#undef PUB
    snprintf(list, sizeof list, "%s %s", a, b);
    assert_int_equal(retro(f, &f->s[0], list, ROUTER_BY_SEQ, 0), 1);
    evbuffer_add_printf(exp, "MESSAGE %s 1\r\n1\r\n", b);
    evbuffer_add_printf(exp, "MESSAGE %s 1\r\n2\r\n", a);
    evbuffer_add_printf(exp, "MESSAGE %s %s 1\r\n3\r\n", a, b);
    evbuffer_add_printf(exp, "MESSAGE %s %s 1\r\n5\r\n", b, a);
    evbuffer_add_printf(exp, "MESSAGE %s 1\r\n6\r\n", a);
    expect_queue_n(&f->s[0], (const char *)evbuffer_pullup(exp, -1), evbuffer_get_length(exp),
                   5, SIZE_MAX);

    /* same by time, and with two requested topics on one shard */
    evbuffer_drain(exp, evbuffer_get_length(exp));
    snprintf(list, sizeof list, "%s %s %s", c, a2, a);
    assert_int_equal(retro(f, &f->s[1], list, ROUTER_BY_TIME, 1000), 1);
    evbuffer_add_printf(exp, "MESSAGE %s 1\r\n2\r\n", a);
    evbuffer_add_printf(exp, "MESSAGE %s 1\r\n3\r\n", a);
    evbuffer_add_printf(exp, "MESSAGE %s 1\r\n4\r\n", c);
    evbuffer_add_printf(exp, "MESSAGE %s 1\r\n5\r\n", a);
    evbuffer_add_printf(exp, "MESSAGE %s %s %s 1\r\n6\r\n", a2, c, a);
    expect_queue_n(&f->s[1], (const char *)evbuffer_pullup(exp, -1), evbuffer_get_length(exp),
                   5, SIZE_MAX);

    /* topics held from before are listed too; entries on them alone are not queued */
    evbuffer_drain(exp, evbuffer_get_length(exp));
    sub(f, &f->s[2], b);
    assert_int_equal(retro(f, &f->s[2], c, ROUTER_BY_SEQ, 0), 1);
    evbuffer_add_printf(exp, "MESSAGE %s 1\r\n4\r\n", c);
    evbuffer_add_printf(exp, "MESSAGE %s 1\r\n6\r\n", c);
    expect_queue_n(&f->s[2], (const char *)evbuffer_pullup(exp, -1), evbuffer_get_length(exp),
                   2, SIZE_MAX);
    evbuffer_drain(exp, evbuffer_get_length(exp));
    snprintf(list, sizeof list, "%s", a);
    assert_int_equal(retro(f, &f->s[2], list, ROUTER_BY_SEQ, 4), 1);
    evbuffer_add_printf(exp, "MESSAGE %s %s 1\r\n5\r\n", b, a);
    evbuffer_add_printf(exp, "MESSAGE %s %s 1\r\n6\r\n", c, a);
    expect_queue_n(&f->s[2], (const char *)evbuffer_pullup(exp, -1), evbuffer_get_length(exp),
                   2, SIZE_MAX);
    evbuffer_free(exp);
    fix_free(f);
}

/* NOT_FOUND when any one of the requested topics' shards dropped a newer entry. */
static void test_retro_one_shard_too_old(void **state)
{
    (void)state;
    struct fix *f = fix_new(4, 2, SIZE_MAX, 1000);
    char a[32], b[32], list[80];
    name_on_shard(f, 0, 0, a);
    name_on_shard(f, 1, 0, b);
    struct subscriber *p = &f->s[7];
    struct evbuffer *exp = evbuffer_new();
    pub(f, p, a, "1", 1001);
    pub(f, p, a, "2", 1002);
    pub(f, p, a, "3", 1003); /* shard 0 drops seq 1 (time 1001) */
    pub(f, p, b, "4", 1004);
    assert_int_equal(f->r.shards[0].dropped_seq, 1);
    assert_true(f->r.shards[0].dropped_time == 1001);
    assert_int_equal(f->r.shards[1].dropped_seq, 0);

    /* b's shard alone is fine */
    assert_int_equal(retro(f, &f->s[0], b, ROUTER_BY_SEQ, 0), 1);
    evbuffer_add_printf(exp, "MESSAGE %s 1\r\n4\r\n", b);
    expect_queue_ev(&f->s[0], exp, 1);

    /* with a: too old; subscribed to both all the same, nothing retro-queued */
    snprintf(list, sizeof list, "%s %s", b, a);
    assert_int_equal(retro(f, &f->s[1], list, ROUTER_BY_SEQ, 0), 0);
    expect_empty(&f->s[1]);
    assert_int_equal(f->s[1].subs.count, 2);
    assert_int_equal(retro(f, &f->s[2], list, ROUTER_BY_TIME, 1000), 0);
    expect_empty(&f->s[2]);

    /* a horizon at the dropped entry is fine */
    assert_int_equal(retro(f, &f->s[3], list, ROUTER_BY_SEQ, 1), 1);
    evbuffer_add_printf(exp, "MESSAGE %s 1\r\n2\r\n", a);
    evbuffer_add_printf(exp, "MESSAGE %s 1\r\n3\r\n", a);
    evbuffer_add_printf(exp, "MESSAGE %s 1\r\n4\r\n", b);
    expect_queue_ev(&f->s[3], exp, 3);
    assert_int_equal(retro(f, &f->s[4], list, ROUTER_BY_TIME, 1001), 1);
    evbuffer_add_printf(exp, "MESSAGE %s 1\r\n2\r\n", a);
    evbuffer_add_printf(exp, "MESSAGE %s 1\r\n3\r\n", a);
    evbuffer_add_printf(exp, "MESSAGE %s 1\r\n4\r\n", b);
    expect_queue_ev(&f->s[4], exp, 3);

    /* the NOT_FOUND subscriber gets live entries on both topics */
    snprintf(list, sizeof list, "%s %s", a, b);
    assert_int_equal(pub(f, p, list, "5", 1005), 5); /* s[0] to s[4] */
    evbuffer_add_printf(exp, "MESSAGE %s %s 1\r\n5\r\n", a, b);
    expect_queue_ev(&f->s[1], exp, 1);
    evbuffer_free(exp);
    fix_free(f);
}

/* qitems_by_second (the relay's answer to a child): within one second, an
 * owner's answer entry (seq 0) and this node's own entries (seq > 0).  v
 * holds, in this order: own o2 (seq 9), answer a1, own o1 (seq 7), answer
 * a2; one publisher's m1 (in the answer: sent on an older link) before its
 * m2 (own, sent after the link was reopened) is the case of a1, o1.  The
 * answer entries keep their places, the own ones take theirs in seq order:
 * o1, a1, o2, a2 (found in review: every own entry was put first). */
static void test_by_second_order(void **state)
{
    (void)state;
    struct fix *f = fix_new(1, 16, 1 << 20, 0);
    struct topic *t = topic_intern(&f->r.topics, TOPIC_NS_CHANNEL, "y", 1);
    assert_non_null(t);
    const char *name[4] = {"o2", "a1", "o1", "a2"};
    const uint64_t seq[4] = {9, 0, 7, 0};
    struct entry *e[4];
    struct qitem v[4];
    for (int i = 0; i < 4; i++) {
        e[i] = entry_new(&f->r.entries, &t, 1, name[i], 2);
        assert_non_null(e[i]);
        e[i]->time = 100;
        e[i]->seq = seq[i];
        qitem_init(&v[i], e[i]);
        assert_int_equal(qitem_add_topic(&v[i], 0), 0);
        entry_unref(e[i]);
    }
    size_t n = 4;
    uint64_t base = f->r.epoch + 1;
    f->r.epoch += n + 1;
    assert_int_equal(qitems_by_second(v, &n, base), 0);
    assert_int_equal(n, 4);
    const struct entry *want[4] = {e[2], e[1], e[0], e[3]};
    bool ok = true;
    for (int i = 0; i < 4; i++)
        ok = ok && v[i].e == want[i];
    for (int i = 0; i < 4; i++)
        qitem_release(&v[i]);
    assert_true(ok);
    fix_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        tu_test(test_subscribe_counts),
        tu_test(test_unsubscribe_middle),
        tu_test(test_topic_churn),
        tu_test(test_publish_basic_bytes),
        tu_test(test_topic_without_cluster_fields),
        tu_test(test_by_second_order),
        tu_test(test_queue_array_kept_while_used),
        tu_test(test_publish_once_through_several_topics),
        tu_test(test_no_self_delivery),
        tu_test(test_order_per_publisher),
        tu_test(test_peers),
        tu_test(test_peer_patterns),
        tu_test(test_skip_peers),
        tu_test(test_shard_entries_marked),
        tu_test(test_nul_in_topic_names),
        tu_test(test_many_topics_subset),
        tu_test(test_fanout_shares_entry),
        tu_test(test_write_copy_vs_reference),
        tu_test(test_queue_overflow_once),
        tu_test(test_retro_stops_at_overflow),
        tu_test(test_retention_ring),
        tu_test(test_retention_byte_bound),
        tu_test(test_retention_per_shard),
        tu_test(test_topics_freed),
        tu_test(test_retro_by_seq),
        tu_test(test_entered_fetch),
        tu_test(test_retro_by_seq_not_found),
        tu_test(test_retro_by_time),
        tu_test(test_retro_several_shards),
        tu_test(test_retro_one_shard_too_old),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
