/* test_cluster_entered.c - unit tests of where an entry entered the cluster
 * and which configurations were in force since a horizon
 * (c_src/cluster_entered.h; docs/cluster.md, "Across moves"). */
#include "test_util.h"

#include "cluster_entered.h"

/* A local client's entry enters here only when this core owns the topic
 * under cur; a peer's also under alt (a move's other owner); never when
 * this core owns it under neither (it is forwarded to the owner). */
static void test_entered(void **state)
{
    (void)state;
    assert_true(cluster_entered(false, true, false));
    assert_true(cluster_entered(false, true, true));
    assert_false(cluster_entered(false, false, true));
    assert_false(cluster_entered(false, false, false));
    assert_true(cluster_entered(true, true, false));
    assert_true(cluster_entered(true, false, true));
    assert_true(cluster_entered(true, true, true));
    assert_false(cluster_entered(true, false, false));
}

/* Configurations applied at seconds 100, 105, 105, 110 (seq 10, 20, 30, 40). */
static const struct cluster_point AT[4] = {{100, 10}, {105, 20}, {105, 30}, {110, 40}};

static void test_first_by_time(void **state)
{
    (void)state;
    /* Entries after second h: the configuration in force then is the last
     * applied at a second <= h (entries before it have seconds <= h). */
    assert_int_equal(cluster_hist_first(AT, 4, false, false, 200), 3);
    assert_int_equal(cluster_hist_first(AT, 4, false, false, 110), 3);
    assert_int_equal(cluster_hist_first(AT, 4, false, false, 109), 2);
    assert_int_equal(cluster_hist_first(AT, 4, false, false, 105), 2);
    assert_int_equal(cluster_hist_first(AT, 4, false, false, 104), 0);
    assert_int_equal(cluster_hist_first(AT, 4, false, false, 100), 0);
    /* Before the oldest remembered: unknown, unless nothing was forgotten. */
    assert_int_equal(cluster_hist_first(AT, 4, false, false, 99), -1);
    assert_int_equal(cluster_hist_first(AT, 4, true, false, 99), 0);
    assert_int_equal(cluster_hist_first(AT, 0, true, false, 99), -1);
}

static void test_first_by_seq(void **state)
{
    (void)state;
    /* Entries with seq > h: the last configuration numbered <= h. */
    assert_int_equal(cluster_hist_first(AT, 4, false, true, 45), 3);
    assert_int_equal(cluster_hist_first(AT, 4, false, true, 40), 3);
    assert_int_equal(cluster_hist_first(AT, 4, false, true, 39), 2);
    assert_int_equal(cluster_hist_first(AT, 4, false, true, 10), 0);
    assert_int_equal(cluster_hist_first(AT, 4, false, true, 9), -1);
    assert_int_equal(cluster_hist_first(AT, 4, true, true, 9), 0);
    assert_int_equal(cluster_hist_first(AT, 4, false, true, -1), -1);
}

static void test_at(void **state)
{
    (void)state;
    /* The configuration in force at a publish: the last applied before it. */
    assert_int_equal(cluster_hist_at(AT, 4, 5), -1);
    assert_int_equal(cluster_hist_at(AT, 4, 11), 0);
    assert_int_equal(cluster_hist_at(AT, 4, 19), 0);
    assert_int_equal(cluster_hist_at(AT, 4, 21), 1);
    assert_int_equal(cluster_hist_at(AT, 4, 31), 2);
    assert_int_equal(cluster_hist_at(AT, 4, 1000), 3);
    assert_int_equal(cluster_hist_at(AT, 0, 1000), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        tu_test(test_entered),
        tu_test(test_first_by_time),
        tu_test(test_first_by_seq),
        tu_test(test_at),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
