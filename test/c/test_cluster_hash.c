/* test_cluster_hash.c - unit tests of the topic ownership hash
 * (c_src/cluster_hash.h): determinism and order independence (every proxy
 * agrees), minimal movement when a core leaves or joins, balance, and the
 * pinned values that other implementations must reproduce. */
#include "test_util.h"

#include "cluster_hash.h"
#include "topic.h"

#define NTOPICS 30000
#define MAXN 8

static struct cluster_hash_node mk(const char *name)
{
    struct cluster_hash_node n = {name, strlen(name), cluster_name_hash(name, strlen(name))};
    return n;
}

static uint64_t topic_hash(int i, char *buf, size_t len)
{
    int n = snprintf(buf, len, "topic:%d", i);
    return cluster_name_hash(buf, (size_t)n);
}

/* The owner's name for topic i over nodes. */
static const char *owner_name(const struct cluster_hash_node *nodes, size_t n, int i)
{
    char buf[32];
    int k = cluster_owner(nodes, n, topic_hash(i, buf, sizeof buf));
    return k < 0 ? NULL : nodes[k].name;
}

static void test_pinned_values(void **state)
{
    (void)state;
    /* FNV-1a 64 reference values, and fixed scores: a change here changes
     * the ownership of every topic in a running cluster. */
    assert_true(cluster_name_hash("", 0) == 0xcbf29ce484222325ULL);
    assert_true(cluster_name_hash("a", 1) == 0xaf63dc4c8601ec8cULL);
    assert_true(cluster_name_hash("foobar", 6) == 0x85944171f73967e8ULL);
    assert_true(cluster_score(0, 0) == 0);
    assert_true(cluster_score(1, 0) == 0x5692161d100b05e5ULL);
    struct cluster_hash_node none[1];
    assert_int_equal(cluster_owner(none, 0, 42), -1);
    /* Names may contain NUL: lengths count. */
    assert_true(cluster_name_hash("a\0b", 3) != cluster_name_hash("a", 1));
}

static void test_order_independent(void **state)
{
    (void)state;
    struct cluster_hash_node a[3] = {mk("c1@h"), mk("c2@h"), mk("c3@h")};
    struct cluster_hash_node b[3] = {mk("c3@h"), mk("c1@h"), mk("c2@h")};
    for (int i = 0; i < NTOPICS; i++)
        assert_string_equal(owner_name(a, 3, i), owner_name(b, 3, i));
}

static void test_remove_moves_only_its_topics(void **state)
{
    (void)state;
    struct cluster_hash_node all[4] = {mk("c1@h"), mk("c2@h"), mk("c3@h"), mk("c4@h")};
    for (int gone = 0; gone < 4; gone++) {
        struct cluster_hash_node rest[3];
        for (int j = 0, k = 0; j < 4; j++)
            if (j != gone)
                rest[k++] = all[j];
        int moved = 0;
        for (int i = 0; i < NTOPICS; i++) {
            const char *before = owner_name(all, 4, i), *after = owner_name(rest, 3, i);
            if (before == all[gone].name) {
                moved++;
                assert_true(after != all[gone].name);
            } else {
                assert_string_equal(before, after); /* not its topic: stays */
            }
        }
        /* It owned about a quarter. */
        assert_in_range(moved, NTOPICS / 4 - NTOPICS / 20, NTOPICS / 4 + NTOPICS / 20);
    }
}

static void test_add_moves_only_to_newcomer(void **state)
{
    (void)state;
    struct cluster_hash_node three[3] = {mk("c1@h"), mk("c2@h"), mk("c3@h")};
    struct cluster_hash_node four[4] = {three[0], three[1], three[2], mk("new@h")};
    int moved = 0;
    for (int i = 0; i < NTOPICS; i++) {
        const char *before = owner_name(three, 3, i), *after = owner_name(four, 4, i);
        if (strcmp(before, after) != 0) {
            assert_string_equal(after, "new@h");
            moved++;
        }
    }
    assert_in_range(moved, NTOPICS / 4 - NTOPICS / 20, NTOPICS / 4 + NTOPICS / 20);
}

static void test_balance(void **state)
{
    (void)state;
    for (size_t n = 1; n <= MAXN; n++) {
        struct cluster_hash_node nodes[MAXN];
        static char names[MAXN][16];
        for (size_t j = 0; j < n; j++) {
            snprintf(names[j], sizeof names[j], "core%zu@host", j + 1);
            nodes[j] = mk(names[j]);
        }
        int count[MAXN] = {0};
        char buf[32];
        for (int i = 0; i < NTOPICS; i++) {
            int k = cluster_owner(nodes, n, topic_hash(i, buf, sizeof buf));
            assert_in_range(k, 0, (int)n - 1);
            count[k]++;
        }
        /* Each core within 10% of its fair share. */
        int fair = NTOPICS / (int)n;
        for (size_t j = 0; j < n; j++)
            assert_in_range(count[j], fair - fair / 10, fair + fair / 10);
    }
}

static void test_ties_by_name(void **state)
{
    (void)state;
    /* Two nodes with the same hash (same name bytes are impossible in a
     * cluster, but the rule must still be total): the smaller name wins. */
    struct cluster_hash_node a = {"x", 1, 7}, b = {"w", 1, 7};
    struct cluster_hash_node v[2] = {a, b};
    assert_int_equal(cluster_owner(v, 2, 99), 1);
    struct cluster_hash_node w[2] = {b, a};
    assert_int_equal(cluster_owner(w, 2, 99), 0);
}

/* The engine takes a topic's ownership hash from the hash its topic table
 * keeps (topic_fnv: table_unmix undoes table_hash_bytes's final mix), not
 * from its name: the same value, for every namespace, every length. */
static void test_topic_fnv(void **state)
{
    (void)state;
    struct topic_index x;
    topic_index_init(&x, 16);
    char name[300];
    for (int i = 0; i < 2000; i++) {
        size_t len = (size_t)(i % 7 == 0 ? i % 280 : i % 40); /* empty and long ones too */
        for (size_t j = 0; j < len; j++)
            name[j] = (char)(' ' + (i * 31 + (int)j * 7) % 95);
        for (int ns = TOPIC_NS_CHANNEL; ns <= TOPIC_NS_SHARD; ns++) {
            struct topic *t = topic_intern(&x, (enum topic_ns)ns, name, len);
            assert_non_null(t);
            assert_true(topic_fnv(t) == cluster_name_hash(name, len));
        }
    }
    topic_index_free(&x);
    /* And the mix's inverse over values a name would not give. */
    for (uint64_t v = 1; v < (1ull << 62); v = v * 3 + 0x9e37)
        assert_true(table_unmix(table_mix(v)) == v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        tu_test(test_pinned_values),
        tu_test(test_order_independent),
        tu_test(test_remove_moves_only_its_topics),
        tu_test(test_add_moves_only_to_newcomer),
        tu_test(test_balance),
        tu_test(test_ties_by_name),
        tu_test(test_topic_fnv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
