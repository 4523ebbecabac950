/* test_table.c - unit tests of the open-addressing pointer set
 * (c_src/table.h): finds, adds and removes under heavy collisions (items
 * whose hashes share their home slot, or even their whole tag), growth and
 * shrinking, checked against a plain array after every step. */
#include "test_util.h"

#include "table.h"

#define NMAX 20000

struct item {
    uint64_t hash;
    int key;
};

static uint64_t item_hash(const void *p)
{
    return ((const struct item *)p)->hash;
}

static int item_eq(const void *p, const void *key)
{
    return ((const struct item *)p)->key == *(const int *)key;
}

static struct item items[NMAX];
static int in[NMAX];
static int N; /* items in this run */

static void check_all(const struct table *t)
{
    uint32_t seen = 0;
    for (uint32_t i = 0; i < t->cap; i++) {
        assert_true((t->slots[i] != NULL) == (t->tags[i] != 0));
        if (t->slots[i])
            seen++;
    }
    assert_int_equal(seen, t->count);
    for (int k = 0; k < N; k++) {
        void *f = table_find(t, items[k].hash, item_eq, &k);
        if (in[k])
            assert_ptr_equal(f, &items[k]);
        else
            assert_null(f);
    }
}

/* hash_of(k) decides the collisions; n items, a pseudo-random order of adds
 * and removes (first mostly adds, then mostly removes: with n = 20,000 the
 * table grows to 32,768 slots and shrinks back), the set checked against
 * `in' every `every' steps and at the end. */
static void run(uint64_t (*hash_of)(int k), int n, int every)
{
    N = n;
    uint32_t max_cap = 0;
    struct table t;
    table_init(&t, item_hash);
    memset(in, 0, sizeof in);
    for (int k = 0; k < N; k++)
        items[k] = (struct item){hash_of(k), k};
    uint64_t x = 88172645463325252ULL;
    for (int step = 0; step < 4 * N; step++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int k = (int)(x % N);
        /* first adds mostly, then removes mostly: the table grows and shrinks */
        bool add = step < 2 * N ? (x >> 32) % 4 != 0 : (x >> 32) % 4 == 0;
        if (add && !in[k]) {
            assert_int_equal(table_add(&t, &items[k]), 0);
            in[k] = 1;
        } else if (!add) {
            assert_int_equal(table_remove(&t, &items[k]), in[k]);
            in[k] = 0;
        }
        if (step % every == 0)
            check_all(&t);
        if (t.cap > max_cap)
            max_cap = t.cap;
    }
    check_all(&t);
    /* then everything removed, one at a time */
    for (int k = 0; k < N; k++)
        if (in[k]) {
            assert_int_equal(table_remove(&t, &items[k]), 1);
            in[k] = 0;
            if (k % 997 == 0)
                check_all(&t);
        }
    check_all(&t);
    assert_int_equal(t.count, 0);
    if (n > TABLE_KEEP) { /* it grew past TABLE_KEEP and shrank back to it */
        assert_true(max_cap >= 4 * TABLE_KEEP);
        assert_int_equal(t.cap, TABLE_KEEP);
    }
    table_free(&t);
}

static uint64_t spread(int k)
{
    return table_hash_bytes(&k, sizeof k);
}

/* 64 home slots at most: long probe runs wrapping round the end. */
static uint64_t same_homes(int k)
{
    return spread(k) & 0xffffffff0000003fULL;
}

/* Equal low 32 bits (equal tags) for groups of 50: the equality callback decides. */
static uint64_t same_tags(int k)
{
    return ((uint64_t)k << 32) | (uint32_t)(k / 50);
}

/* A hash whose low 32 bits are 0 and one with the top tag bit set: the tag
 * still marks the slot used. */
static uint64_t zero_low(int k)
{
    return k % 2 ? (uint64_t)k << 40 : ((uint64_t)k << 40) | 0x80000000u;
}

static void test_spread(void **state)
{
    (void)state;
    run(spread, NMAX, 2003);
}

static void test_same_homes(void **state)
{
    (void)state;
    run(same_homes, 1500, 251);
}

static void test_same_tags(void **state)
{
    (void)state;
    run(same_tags, 1500, 251);
}

static void test_zero_low_bits(void **state)
{
    (void)state;
    run(zero_low, 1500, 251);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        tu_test(test_spread),
        tu_test(test_same_homes),
        tu_test(test_same_tags),
        tu_test(test_zero_low_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
