/* cluster_ack.c - the FIFOs of upstream acknowledgements; see cluster_ack.h.
 *
 * Each wait is on two lists: its FIFO's (doubly linked, by number, so that
 * an answer pops from the head and a holder that goes away unlinks in O(1))
 * and its holder's (singly linked, a handful at most).  A holder's notes
 * are an array (a few per held reply), scanned when one of its waits ends
 * or a request it may wait for is refused: rare events, short arrays. */
#include "cluster_ack.h"

#include <stdlib.h>

struct ack_wait {
    struct ack_fifo *fifo;
    struct ack_holder *holder;
    struct ack_wait *prev, *next; /* in fifo */
    struct ack_wait *hnext;       /* in holder */
    uint64_t seq;
    uint64_t first;   /* the first request waited for since the wait began */
    uint64_t told;    /* the last refused request its holder was told of */
};

/* h's notes on f: those for request `seq` (a note covers first .. seq;
 * 0: every one not answered by `after`) are marked refused; the others are dropped when `drop` (h no longer
 * waits on f: they were answered).  Returns how many were marked. */
static uint32_t notes_settle(struct ack_holder *h, const struct ack_fifo *f, uint64_t seq,
                             uint64_t after, bool drop)
{
    uint32_t marked = 0, j = 0;
    for (uint32_t i = 0; i < h->nnotes; i++) {
        struct ack_note *x = &h->notes[i];
        if (x->fifo == f && (seq ? x->first <= seq && seq <= x->seq : x->seq > after)) {
            x->fifo = NULL;
            x->refused = true;
            h->refused++;
            marked++;
        } else if (x->fifo == f && drop) {
            continue;
        }
        h->notes[j++] = *x;
    }
    h->nnotes = j;
    return marked;
}

static void fifo_unlink(struct ack_wait *w)
{
    struct ack_fifo *f = w->fifo;
    if (w->prev)
        w->prev->next = w->next;
    else
        f->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        f->tail = w->prev;
}

/* Puts w in its place by number, after the waits for the same number:
 * from the tail, where almost every wait goes (the request being built, or
 * the last one sent); a subscriber may wait for an earlier one (the last
 * subscribe batch, cluster.c). */
static void fifo_insert(struct ack_fifo *f, struct ack_wait *w)
{
    struct ack_wait *after = f->tail;
    while (after && after->seq > w->seq)
        after = after->prev;
    w->fifo = f;
    w->prev = after;
    w->next = after ? after->next : f->head;
    if (w->next)
        w->next->prev = w;
    else
        f->tail = w;
    if (after)
        after->next = w;
    else
        f->head = w;
}

static void holder_unlink(struct ack_wait *w)
{
    struct ack_wait **p = &w->holder->waits;
    while (*p != w)
        p = &(*p)->hnext;
    *p = w->hnext;
    w->holder->n--;
}

int ack_wait(struct ack_fifo *f, struct ack_holder *h, uint64_t seq)
{
    return ack_wait_from(f, h, seq, seq);
}

int ack_wait_from(struct ack_fifo *f, struct ack_holder *h, uint64_t first, uint64_t seq)
{
    if (seq <= f->answered)
        return 0;
    if (first > seq)
        first = seq;
    for (struct ack_wait *w = h->waits; w; w = w->hnext)
        if (w->fifo == f) {
            if (first < w->first)
                w->first = first;
            if (w->seq < seq) {
                /* A later request: its place moves towards the tail. */
                w->seq = seq;
                fifo_unlink(w);
                fifo_insert(f, w);
            }
            return 1;
        }
    struct ack_wait *w = malloc(sizeof *w);
    if (!w)
        return -1;
    w->holder = h;
    w->seq = seq;
    w->first = first;
    w->told = 0;
    w->hnext = h->waits;
    h->waits = w;
    h->n++;
    fifo_insert(f, w);
    return 1;
}

/* The oldest request was answered: its waits end; a holder is told when
 * its last wait ends (ok), or at once, one wait ending in a refusal (!ok). */
static bool settle(struct ack_fifo *f, bool ok, ack_done_fn *done, void *arg)
{
    if (f->answered == f->sent)
        return false;
    uint64_t r = ++f->answered;
    while (f->head && f->head->seq <= r) {
        struct ack_wait *w = f->head;
        struct ack_holder *h = w->holder;
        fifo_unlink(w);
        holder_unlink(w);
        free(w);
        if (h->nnotes)
            notes_settle(h, f, ok ? UINT64_MAX : r, 0, true);
        if (!ok || h->n == 0)
            done(h, ok, arg);
    }
    if (ok)
        return true;
    /* Holders waiting for a later request that waited for this one too:
     * one at a time, from the head again (done() may end any wait). */
    for (struct ack_wait *w = f->head; w;) {
        if (w->first > r || w->told == r) {
            w = w->next;
            continue;
        }
        struct ack_holder *h = w->holder;
        w->told = r;
        bool noted = h->nnotes && !h->notes_lost;
        if (notes_settle(h, f, r, 0, false) || !noted) {
            done(h, false, arg);
            w = f->head;
        } else {
            w = w->next;
        }
    }
    return true;
}

bool ack_fifo_answer(struct ack_fifo *f, ack_done_fn *done, void *arg)
{
    return settle(f, true, done, arg);
}

bool ack_fifo_refuse(struct ack_fifo *f, ack_done_fn *done, void *arg)
{
    return settle(f, false, done, arg);
}

void ack_fifo_fail(struct ack_fifo *f, ack_done_fn *done, void *arg)
{
    uint64_t answered = f->answered;
    f->answered = f->sent;
    while (f->head) {
        struct ack_wait *w = f->head;
        struct ack_holder *h = w->holder;
        fifo_unlink(w);
        holder_unlink(w);
        free(w);
        if (h->nnotes)
            notes_settle(h, f, 0, answered, true);
        done(h, false, arg);
    }
}

void ack_holder_forget(struct ack_holder *h)
{
    while (h->waits) {
        struct ack_wait *w = h->waits;
        h->waits = w->hnext;
        fifo_unlink(w);
        free(w);
    }
    h->n = 0;
    free(h->notes);
    h->notes = NULL;
    h->nnotes = h->notes_cap = h->refused = 0;
    h->notes_lost = false;
}

int ack_note(struct ack_holder *h, struct ack_fifo *f, uint64_t seq, uint64_t reply)
{
    return ack_note_range(h, f, seq, seq, reply);
}

int ack_note_range(struct ack_holder *h, struct ack_fifo *f, uint64_t first, uint64_t seq,
                   uint64_t reply)
{
    if (h->nnotes == h->notes_cap) {
        uint32_t cap = h->notes_cap ? 2 * h->notes_cap : 8;
        struct ack_note *v = realloc(h->notes, cap * sizeof *v);
        if (!v) {
            h->notes_lost = true;
            return -1;
        }
        h->notes = v;
        h->notes_cap = cap;
    }
    h->notes[h->nnotes++] = (struct ack_note){f, first <= seq ? first : seq, seq, reply, false};
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

long ack_refused_replies(const struct ack_holder *h, uint64_t **out)
{
    *out = NULL;
    if (!h->refused)
        return 0;
    uint64_t *v = malloc(h->refused * sizeof *v);
    if (!v)
        return -1;
    uint32_t n = 0;
    for (uint32_t i = 0; i < h->nnotes && n < h->refused; i++)
        if (h->notes[i].refused)
            v[n++] = h->notes[i].reply;
    qsort(v, n, sizeof *v, cmp_u64);
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++)
        if (m == 0 || v[m - 1] != v[i])
            v[m++] = v[i];
    *out = v;
    return m;
}

void ack_notes_clear(struct ack_holder *h)
{
    h->nnotes = h->refused = 0;
    h->notes_lost = false;
}
