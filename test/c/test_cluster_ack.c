/* test_cluster_ack.c - unit tests of the FIFOs of upstream acknowledgements
 * (c_src/cluster_ack.h): answers release waits in order and only once the
 * request waited for is answered; a holder waiting on several links is
 * released by the last; a later wait on the same link replaces the earlier;
 * a broken link fails every wait on it once per holder and owes nothing
 * more; a holder that goes away is forgotten by every link; a refusal
 * reaches a holder that waited for that request behind a later one; a
 * holder's noted replies are refused only for the requests that failed;
 * a wait for an earlier request than the last (a subscriber waits for the
 * last subscribe batch) goes in its place, released by that request's
 * answer and untouched by a later one's refusal. */
#include "test_util.h"

#include "cluster_ack.h"

/* A holder with what happened to it. */
struct holder {
    struct ack_holder h;
    int released, failed;
};

static void done(struct ack_holder *h, bool ok, void *arg)
{
    struct holder *x = (struct holder *)(void *)h; /* h is the first member */
    int *calls = arg;
    if (calls)
        (*calls)++;
    if (ok)
        x->released++;
    else
        x->failed++;
}

static void forget(void *p)
{
    ack_holder_forget(p);
}

static void test_nothing_owed(void **state)
{
    (void)state;
    struct ack_fifo f;
    ack_fifo_init(&f);
    struct holder a = {0};
    int calls = 0;
    assert_false(ack_fifo_answer(&f, done, &calls)); /* an answer nobody asked for */
    assert_int_equal(f.answered, 0);
    assert_int_equal(ack_wait(&f, &a.h, 0), 0);     /* answered already */
    assert_int_equal(a.h.n, 0);
    assert_int_equal(ack_fifo_send(&f), 1);
    assert_true(ack_fifo_answer(&f, done, &calls));
    assert_false(ack_fifo_answer(&f, done, &calls));
    assert_int_equal(ack_wait(&f, &a.h, 1), 0);
    assert_int_equal(calls, 0);
}

static void test_released_in_order(void **state)
{
    (void)state;
    struct ack_fifo f;
    ack_fifo_init(&f);
    struct holder a = {0}, b = {0}, c = {0};
    tu_defer(forget, &a.h);
    tu_defer(forget, &b.h);
    tu_defer(forget, &c.h);
    /* a waits for the request being built (number 1), which is then sent. */
    assert_int_equal(ack_wait(&f, &a.h, f.sent + 1), 1);
    assert_int_equal(a.h.n, 1);
    assert_int_equal(ack_fifo_send(&f), 1);
    /* b and c for the next one. */
    assert_int_equal(ack_wait(&f, &b.h, 2), 1);
    assert_int_equal(ack_wait(&f, &c.h, 2), 1);
    assert_int_equal(ack_fifo_send(&f), 2);
    int calls = 0;
    assert_true(ack_fifo_answer(&f, done, &calls));
    assert_int_equal(a.released, 1);
    assert_int_equal(a.h.n, 0);
    assert_int_equal(b.released + c.released, 0);
    assert_true(ack_fifo_answer(&f, done, &calls));
    assert_int_equal(b.released, 1);
    assert_int_equal(c.released, 1);
    assert_int_equal(calls, 3);
    assert_null(f.head);
    assert_null(f.tail);
    assert_false(ack_fifo_answer(&f, done, &calls));
    assert_int_equal(calls, 3);
    tu_cleanup(NULL); /* while the holders and FIFOs (on this stack) exist */
}

static void test_several_links(void **state)
{
    (void)state;
    struct ack_fifo f, g;
    ack_fifo_init(&f);
    ack_fifo_init(&g);
    struct holder a = {0};
    tu_defer(forget, &a.h);
    assert_int_equal(ack_wait(&f, &a.h, 1), 1);
    assert_int_equal(ack_wait(&g, &a.h, 1), 1);
    assert_int_equal(a.h.n, 2);
    ack_fifo_send(&f);
    ack_fifo_send(&g);
    int calls = 0;
    assert_true(ack_fifo_answer(&g, done, &calls));
    assert_int_equal(calls, 0); /* f has not answered */
    assert_int_equal(a.h.n, 1);
    assert_true(ack_fifo_answer(&f, done, &calls));
    assert_int_equal(a.released, 1);
    assert_int_equal(calls, 1);
    tu_cleanup(NULL); /* while the holders and FIFOs (on this stack) exist */
}

static void test_later_wait_replaces(void **state)
{
    (void)state;
    struct ack_fifo f;
    ack_fifo_init(&f);
    struct holder a = {0}, b = {0};
    tu_defer(forget, &a.h);
    tu_defer(forget, &b.h);
    assert_int_equal(ack_wait(&f, &a.h, 1), 1);
    ack_fifo_send(&f);
    assert_int_equal(ack_wait(&f, &b.h, 2), 1);
    /* a's subscribe touches another topic, in request 2: one wait, for 2,
     * behind b's in the FIFO. */
    assert_int_equal(ack_wait(&f, &a.h, 2), 1);
    assert_int_equal(a.h.n, 1);
    assert_ptr_equal(f.tail, a.h.waits);
    /* An earlier number changes nothing. */
    assert_int_equal(ack_wait(&f, &a.h, 1), 1);
    assert_int_equal(a.h.n, 1);
    ack_fifo_send(&f);
    int calls = 0;
    assert_true(ack_fifo_answer(&f, done, &calls));
    assert_int_equal(calls, 0);
    assert_true(ack_fifo_answer(&f, done, &calls));
    assert_int_equal(a.released, 1);
    assert_int_equal(b.released, 1);
    tu_cleanup(NULL); /* while the holders and FIFOs (on this stack) exist */
}

static void test_fail(void **state)
{
    (void)state;
    struct ack_fifo f, g;
    ack_fifo_init(&f);
    ack_fifo_init(&g);
    struct holder a = {0}, b = {0};
    tu_defer(forget, &a.h);
    tu_defer(forget, &b.h);
    assert_int_equal(ack_wait(&f, &a.h, 1), 1);
    ack_fifo_send(&f);
    assert_int_equal(ack_wait(&f, &b.h, 2), 1); /* being built when the link broke */
    assert_int_equal(ack_wait(&g, &b.h, 1), 1);
    ack_fifo_send(&g);
    int calls = 0;
    ack_fifo_fail(&f, done, &calls);
    assert_int_equal(calls, 2);
    assert_int_equal(a.failed, 1);
    assert_int_equal(b.failed, 1);
    assert_int_equal(a.h.n, 0);
    assert_int_equal(b.h.n, 1); /* still waits on g */
    assert_null(f.head);
    /* Nothing is owed on f now: its next link numbers on from there. */
    assert_int_equal(f.answered, f.sent);
    assert_false(ack_fifo_answer(&f, done, &calls));
    assert_int_equal(ack_wait(&f, &a.h, f.sent), 0);
    assert_int_equal(ack_wait(&f, &a.h, f.sent + 1), 1);
    ack_fifo_send(&f);
    assert_true(ack_fifo_answer(&f, done, &calls));
    assert_int_equal(a.released, 1);
    /* g is unaffected. */
    assert_true(ack_fifo_answer(&g, done, &calls));
    assert_int_equal(b.released, 1);
    assert_int_equal(calls, 4);
    tu_cleanup(NULL); /* while the holders and FIFOs (on this stack) exist */
}

static void test_forget(void **state)
{
    (void)state;
    struct ack_fifo f, g;
    ack_fifo_init(&f);
    ack_fifo_init(&g);
    struct holder a = {0}, b = {0}, c = {0};
    tu_defer(forget, &b.h);
    tu_defer(forget, &c.h);
    assert_int_equal(ack_wait(&f, &b.h, 1), 1);
    assert_int_equal(ack_wait(&f, &a.h, 1), 1);
    assert_int_equal(ack_wait(&f, &c.h, 1), 1);
    assert_int_equal(ack_wait(&g, &a.h, 1), 1);
    ack_fifo_send(&f);
    ack_fifo_send(&g);
    ack_holder_forget(&a.h); /* its connection closed: the middle of f's list */
    assert_int_equal(a.h.n, 0);
    assert_null(a.h.waits);
    assert_null(g.head);
    int calls = 0;
    assert_true(ack_fifo_answer(&g, done, &calls));
    assert_true(ack_fifo_answer(&f, done, &calls));
    assert_int_equal(a.released + a.failed, 0);
    assert_int_equal(b.released, 1);
    assert_int_equal(c.released, 1);
    assert_int_equal(calls, 2);
    assert_null(f.head);
    assert_null(f.tail);
    tu_cleanup(NULL); /* while the holders and FIFOs (on this stack) exist */
}

/* A refused answer fails the waits for that request only. */
static void test_refuse(void **state)
{
    (void)state;
    struct ack_fifo f;
    ack_fifo_init(&f);
    struct holder a = {0}, b = {0}, c = {0};
    tu_defer(forget, &c.h);
    int calls = 0;
    assert_false(ack_fifo_refuse(&f, done, &calls)); /* nothing owed */
    assert_int_equal(ack_wait(&f, &a.h, 1), 1);
    ack_fifo_send(&f);
    assert_int_equal(ack_wait(&f, &b.h, 2), 1);
    ack_fifo_send(&f);
    assert_int_equal(ack_wait(&f, &c.h, 3), 1);
    ack_fifo_send(&f);
    assert_true(ack_fifo_answer(&f, done, &calls));
    assert_true(ack_fifo_refuse(&f, done, &calls));
    assert_int_equal(a.released, 1);
    assert_int_equal(b.failed, 1);
    assert_int_equal(b.h.n, 0);
    assert_int_equal(c.released + c.failed, 0);
    assert_true(ack_fifo_answer(&f, done, &calls));
    assert_int_equal(c.released, 1);
    assert_int_equal(calls, 3);
    assert_null(f.head);
    tu_cleanup(NULL); /* while the holders and FIFOs (on this stack) exist */
}

/* A refusal of a request that a holder waited for, behind a later one on
 * the same link (its wait was replaced): it is told (before, only a
 * holder whose last request was refused was, and the other's reply was
 * released STORED). */
static void test_refuse_earlier_request(void **state)
{
    (void)state;
    struct ack_fifo f;
    ack_fifo_init(&f);
    struct holder a = {0}, b = {0};
    tu_defer(forget, &a.h);
    tu_defer(forget, &b.h);
    assert_int_equal(ack_wait(&f, &a.h, 1), 1);
    ack_fifo_send(&f);
    assert_int_equal(ack_wait(&f, &a.h, 2), 1); /* a's second batch */
    assert_int_equal(ack_wait(&f, &b.h, 2), 1); /* b waited for 2 only */
    ack_fifo_send(&f);
    int calls = 0;
    assert_true(ack_fifo_refuse(&f, done, &calls));
    assert_int_equal(a.failed, 1);
    assert_int_equal(a.h.n, 1); /* still waits for 2 */
    assert_int_equal(b.failed, 0);
    assert_true(ack_fifo_answer(&f, done, &calls));
    assert_int_equal(a.released, 1);
    assert_int_equal(b.released, 1);
    assert_int_equal(calls, 3);
    tu_cleanup(NULL); /* while the holders and FIFOs (on this stack) exist */
}

/* Request 1 is a subscribe batch, 2 another client's publish batch: the
 * publisher waits for 2, then a subscriber for 1 (its topic's).  Answering
 * 1 releases the subscriber; refusing 2 tells the publisher only (before,
 * the subscriber's wait sat behind the publisher's at the tail: it was not
 * released by 1, and took the refusal of 2 as its own). */
static void test_wait_earlier_in_place(void **state)
{
    (void)state;
    struct ack_fifo f;
    ack_fifo_init(&f);
    struct holder pub = {0}, sub = {0}, late = {0};
    tu_defer(forget, &pub.h);
    tu_defer(forget, &sub.h);
    tu_defer(forget, &late.h);
    ack_fifo_send(&f);
    ack_fifo_send(&f);
    assert_int_equal(ack_wait(&f, &pub.h, 2), 1);
    assert_int_equal(ack_wait(&f, &sub.h, 1), 1);
    assert_int_equal(ack_wait(&f, &late.h, 2), 1); /* after pub: same number */
    int calls = 0;
    assert_true(ack_fifo_answer(&f, done, &calls));
    assert_int_equal(sub.released, 1);
    assert_int_equal(pub.released + pub.failed, 0);
    assert_true(ack_fifo_refuse(&f, done, &calls));
    assert_int_equal(sub.failed, 0);
    assert_int_equal(pub.failed, 1);
    assert_int_equal(late.failed, 1);
    assert_int_equal(calls, 3);
    assert_null(f.head);
    assert_null(f.tail);
    tu_cleanup(NULL); /* while the holders and FIFOs (on this stack) exist */
}

/* A child's held replies, noted with the requests they wait for: a link
 * that fails refuses only the replies that wait for it (not those it
 * answered already), the others are released once their links answer. */
static void test_notes_fail(void **state)
{
    (void)state;
    struct ack_fifo f, g;
    ack_fifo_init(&f);
    ack_fifo_init(&g);
    struct holder a = {0};
    tu_defer(forget, &a.h);
    /* Replies at 0 (f:1), 8 (g:1), 16 (f:2 and g:2), 24 (f:3). */
    uint64_t fs[] = {1, 0, 2, 3}, gs[] = {0, 1, 2, 0};
    for (int i = 0; i < 4; i++) {
        if (fs[i]) {
            assert_int_equal(ack_wait(&f, &a.h, fs[i]), 1);
            assert_int_equal(ack_note(&a.h, &f, fs[i], 8u * (unsigned)i), 0);
            ack_fifo_send(&f);
        }
        if (gs[i]) {
            assert_int_equal(ack_wait(&g, &a.h, gs[i]), 1);
            assert_int_equal(ack_note(&a.h, &g, gs[i], 8u * (unsigned)i), 0);
            ack_fifo_send(&g);
        }
    }
    int calls = 0;
    assert_true(ack_fifo_answer(&f, done, &calls)); /* f:1: reply 0 is confirmed */
    assert_int_equal(calls, 0);
    ack_fifo_fail(&f, done, &calls);
    assert_int_equal(a.failed, 1);
    assert_int_equal(a.h.n, 1); /* still waits on g */
    assert_int_equal(a.h.refused, 2);
    uint64_t *v;
    assert_int_equal(ack_refused_replies(&a.h, &v), 2);
    assert_int_equal(v[0], 16);
    assert_int_equal(v[1], 24);
    free(v);
    assert_true(ack_fifo_answer(&g, done, &calls));
    assert_int_equal(a.released, 0);
    assert_true(ack_fifo_answer(&g, done, &calls));
    assert_int_equal(a.released, 1);
    assert_int_equal(calls, 2);
    /* The refused notes stay until the caller answered them. */
    assert_int_equal(ack_refused_replies(&a.h, &v), 2);
    free(v);
    ack_notes_clear(&a.h);
    assert_int_equal(ack_refused_replies(&a.h, &v), 0);
    assert_null(v);
    tu_cleanup(NULL); /* while the holders and FIFOs (on this stack) exist */
}

/* A refused request (a parent refusing one batch): only the replies noted
 * for it are refused; a noted holder that did not wait for it is not
 * told, one that did is, and goes on waiting for its later requests. */
static void test_notes_refuse(void **state)
{
    (void)state;
    struct ack_fifo f;
    ack_fifo_init(&f);
    struct holder a = {0}, b = {0};
    tu_defer(forget, &a.h);
    tu_defer(forget, &b.h);
    /* b waits for 1 (a subscribe: no note), then notes a publish on 2. */
    assert_int_equal(ack_wait(&f, &b.h, 1), 1);
    /* a: reply 0 on 1, reply 8 on 2, reply 16 on 2. */
    assert_int_equal(ack_wait(&f, &a.h, 1), 1);
    assert_int_equal(ack_note(&a.h, &f, 1, 0), 0);
    ack_fifo_send(&f);
    assert_int_equal(ack_wait(&f, &a.h, 2), 1);
    assert_int_equal(ack_note(&a.h, &f, 2, 8), 0);
    assert_int_equal(ack_note(&a.h, &f, 2, 16), 0);
    assert_int_equal(ack_wait(&f, &b.h, 2), 1);
    assert_int_equal(ack_note(&b.h, &f, 2, 0), 0);
    ack_fifo_send(&f);
    int calls = 0;
    assert_true(ack_fifo_refuse(&f, done, &calls));
    assert_int_equal(a.failed, 1);
    assert_int_equal(b.failed, 0);
    uint64_t *v;
    assert_int_equal(ack_refused_replies(&a.h, &v), 1);
    assert_int_equal(v[0], 0);
    free(v);
    assert_int_equal(ack_refused_replies(&b.h, &v), 0);
    assert_true(ack_fifo_answer(&f, done, &calls));
    assert_int_equal(a.released, 1);
    assert_int_equal(b.released, 1);
    assert_int_equal(a.h.refused, 1);
    assert_int_equal(calls, 3);
    tu_cleanup(NULL); /* while the holders and FIFOs (on this stack) exist */
}

/* A publish whose entries filled request 1 and went on in request 2: a
 * refusal of 1 refuses it too (found in review: only its last request was
 * noted, so it was released as stored). */
static void test_note_range(void **state)
{
    (void)state;
    struct ack_fifo f;
    ack_fifo_init(&f);
    struct holder a = {0};
    tu_defer(forget, &a.h);
    /* reply 0: request 1 only; reply 8: requests 1 and 2. */
    assert_int_equal(ack_wait(&f, &a.h, 1), 1);
    assert_int_equal(ack_note(&a.h, &f, 1, 0), 0);
    ack_fifo_send(&f);
    assert_int_equal(ack_wait_from(&f, &a.h, 1, 2), 1);
    assert_int_equal(ack_note_range(&a.h, &f, 1, 2, 8), 0);
    ack_fifo_send(&f);
    int calls = 0;
    assert_true(ack_fifo_refuse(&f, done, &calls));
    uint64_t *v;
    assert_int_equal(ack_refused_replies(&a.h, &v), 2);
    assert_int_equal(v[0], 0);
    assert_int_equal(v[1], 8);
    free(v);
    assert_true(ack_fifo_answer(&f, done, &calls));
    assert_int_equal(a.released, 1);
    /* The same, request 2 refused: only reply 8. */
    ack_notes_clear(&a.h);
    a.released = a.failed = 0;
    assert_int_equal(ack_wait(&f, &a.h, 3), 1);
    assert_int_equal(ack_note(&a.h, &f, 3, 0), 0);
    ack_fifo_send(&f);
    assert_int_equal(ack_wait_from(&f, &a.h, 3, 4), 1);
    assert_int_equal(ack_note_range(&a.h, &f, 3, 4, 8), 0);
    ack_fifo_send(&f);
    assert_true(ack_fifo_answer(&f, done, &calls));
    assert_true(ack_fifo_refuse(&f, done, &calls));
    assert_int_equal(ack_refused_replies(&a.h, &v), 1);
    assert_int_equal(v[0], 8);
    free(v);
    tu_cleanup(NULL); /* while the holder and FIFO (on this stack) exist */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        tu_test(test_nothing_owed),
        tu_test(test_note_range),
        tu_test(test_released_in_order),
        tu_test(test_several_links),
        tu_test(test_later_wait_replaces),
        tu_test(test_fail),
        tu_test(test_forget),
        tu_test(test_refuse),
        tu_test(test_refuse_earlier_request),
        tu_test(test_wait_earlier_in_place),
        tu_test(test_notes_fail),
        tu_test(test_notes_refuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
