/* test_cluster_pin.c - unit tests of sticky parents (c_src/cluster_pin.h;
 * docs/cluster.md, "Sticky parents"): where a topic held below parents
 * goes upstream, across a parent's return and across the race of an
 * unsubscribe followed by a new subscriber.  Upstreams are opaque here:
 * three addresses stand for parents p1, p2 and a static upstream u. */
#include "test_util.h"

#include "cluster_pin.h"

static int P1, P2, U;

struct fix {
    struct topic_index x;
    struct pin_fifo f1, f2; /* p1's and p2's waits */
};

static struct fix *fix_new(void)
{
    struct fix *f = calloc(1, sizeof *f);
    assert_non_null(f);
    topic_index_init(&f->x, 4);
    return f;
}

static void fix_free(struct fix *f)
{
    pin_fifo_free(&f->f1, &f->x, &P1);
    pin_fifo_free(&f->f2, &f->x, &P2);
    assert_int_equal(topic_index_count(&f->x), 0); /* the waits' references are gone */
    topic_index_free(&f->x);
    free(f);
}

/* A topic with one local holder (the router's count; no real subscriber). */
static struct topic *held_topic(struct fix *f, const char *name)
{
    struct topic *t = topic_intern(&f->x, TOPIC_NS_CHANNEL, name, strlen(name));
    assert_non_null(t);
    t->nsubs = 1;
    return t;
}

/* The last holder leaves (the router's count drops first). */
static void unhold(struct fix *f, struct topic *t)
{
    t->nsubs = 0;
    topic_maybe_free(&f->x, t); /* a waiting one is kept by its reference */
}

/* A topic held at a parent stays there when the hash says another (a
 * parent came back): nothing moves; an unheld one goes by the hash. */
static void test_pinned_while_held(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct topic *t = held_topic(f, "a");
    assert_ptr_equal(pin_hold(t, &P2, true), &P2);     /* p1 is down: the hash says p2 */
    assert_ptr_equal(pin_route(t, &P1), &P2);          /* p1 is back: it stays at p2 */
    assert_ptr_equal(pin_hold(t, &P1, true), &P2);     /* (a second holder) */
    assert_ptr_equal(pin_route(NULL, &P1), &P1);       /* not a topic here: the hash */
    struct topic *n = topic_intern(&f->x, TOPIC_NS_CHANNEL, "new", 3);
    assert_ptr_equal(pin_route(n, &P1), &P1);          /* never held: the hash */
    topic_maybe_free(&f->x, n);
    /* Its parent's link is lost: unpinned at once (its holders go). */
    unhold(f, t);
    t = topic_intern(&f->x, TOPIC_NS_CHANNEL, "a", 1);
    t->nsubs = 1;
    assert_int_equal(pin_release(&f->f2, &f->x, t, &P2, 0), 0);
    assert_null(topic_up(t)->pin);
    assert_int_equal(f->f2.n, 0);
    unhold(f, t);
    fix_free(f);
}

/* A static upstream is never pinned: its topics follow the hash. */
static void test_static_not_pinned(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct topic *t = held_topic(f, "s");
    assert_ptr_equal(pin_hold(t, &U, false), &U);
    assert_null(topic_up(t)->pin);
    assert_ptr_equal(pin_route(t, &P1), &P1);
    assert_int_equal(pin_release(&f->f1, &f->x, t, &U, 7), 0);
    assert_int_equal(f->f1.n, 0);
    unhold(f, t);
    fix_free(f);
}

/* The race: the last holder of T leaves (T unsubscribed at p2, the next
 * `version` on p2's link being number 5), a new one comes before p2
 * answered it.  T is still pinned to p2 (its entries still come from
 * there), so the new holder subscribes at p2 again, not at p1 (the hash),
 * and a publish goes to p2.  Once p2 answered version 5 (the later
 * resubscribe holds it), it stays; after a second release it waits for
 * its own barrier (9), not the first one's. */
/* What pin_answered said was unpinned. */
static int unpinned_n;
static void *unpinned_up;
static void note_unpinned(struct topic *t, void *up)
{
    (void)t;
    unpinned_n++;
    unpinned_up = up;
}

static void test_unsubscribe_race(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct topic *t = held_topic(f, "T");
    assert_ptr_equal(pin_hold(t, &P2, true), &P2);
    t->nsubs = 0;
    assert_int_equal(pin_release(&f->f2, &f->x, t, &P2, 5), 0);
    unhold(f, t);
    assert_ptr_equal(topic_find(&f->x, TOPIC_NS_CHANNEL, "T", 1), t); /* kept while it waits */
    assert_ptr_equal(pin_route(t, &P1), &P2);          /* a publish meanwhile: p2 */
    unpinned_n = 0;
    pin_answered(&f->f2, &f->x, &P2, 4, note_unpinned); /* an earlier version: still waits */
    assert_ptr_equal(topic_up(t)->pin, &P2);
    t->nsubs = 1;                                      /* a new holder, before version 5 */
    assert_ptr_equal(pin_hold(t, &P1, true), &P2);     /* subscribed at p2 again */
    t->nsubs = 0;
    assert_int_equal(pin_release(&f->f2, &f->x, t, &P2, 9), 0);
    pin_answered(&f->f2, &f->x, &P2, 5, note_unpinned); /* the first barrier: not this one's */
    assert_ptr_equal(topic_up(t)->pin, &P2);
    assert_int_equal(topic_up(t)->pin_waits, 1);
    assert_int_equal(unpinned_n, 0);
    pin_answered(&f->f2, &f->x, &P2, 9, note_unpinned); /* p2 processed the unsubscribe */
    assert_int_equal(unpinned_n, 1);                   /* told, with the parent it left */
    assert_ptr_equal(unpinned_up, &P2);
    assert_null(topic_find(&f->x, TOPIC_NS_CHANNEL, "T", 1)); /* unpinned, freed */
    /* Held again when its barrier comes: it stays pinned. */
    t = held_topic(f, "T2");
    pin_hold(t, &P1, true);
    t->nsubs = 0;
    assert_int_equal(pin_release(&f->f1, &f->x, t, &P1, 3), 0);
    t->nsubs = 1;
    assert_ptr_equal(pin_hold(t, &P2, true), &P1);
    pin_answered(&f->f1, &f->x, &P1, 3, note_unpinned);
    assert_int_equal(unpinned_n, 1);                   /* held: not unpinned */
    assert_ptr_equal(topic_up(t)->pin, &P1);
    assert_int_equal(topic_up(t)->pin_waits, 0);
    unhold(f, t);
    fix_free(f);
}

/* A parent's link is lost (or it left) with waits pending: they are over,
 * their topics unpinned (the hash again), a held one left to its holders'
 * release. */
static void test_drop(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    char name[16];
    struct topic *ts[40];
    for (int i = 0; i < 40; i++) { /* past the ring's first capacity */
        snprintf(name, sizeof name, "d%d", i);
        ts[i] = held_topic(f, name);
        pin_hold(ts[i], &P1, true);
        ts[i]->nsubs = 0;
        assert_int_equal(pin_release(&f->f1, &f->x, ts[i], &P1, (uint64_t)(1 + i / 10)), 0);
    }
    pin_answered(&f->f1, &f->x, &P1, 2, NULL);
    assert_int_equal(f->f1.n, 20);
    assert_ptr_equal(topic_up(ts[39])->pin, &P1);
    ts[39]->nsubs = 1; /* a new holder, subscribed at p1 again */
    pin_drop(&f->f1, &f->x, &P1);
    assert_int_equal(f->f1.n, 0);
    assert_ptr_equal(topic_up(ts[39])->pin, &P1); /* held: its holders go, releasing it (ver 0) */
    assert_int_equal(pin_release(&f->f1, &f->x, ts[39], &P1, 0), 0);
    assert_null(topic_up(ts[39])->pin);
    unhold(f, ts[39]);
    fix_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        tu_test(test_pinned_while_held),
        tu_test(test_static_not_pinned),
        tu_test(test_unsubscribe_race),
        tu_test(test_drop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
