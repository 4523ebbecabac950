/* cluster_ack.c - the FIFOs of upstream acknowledgements; see cluster_ack.h.
 *
 * Each wait is on two lists: its FIFO's (doubly linked, by number, so that
 * an answer pops from the head and a holder that goes away unlinks in O(1))
 * and its holder's (singly linked, a handful at most). */
#include "cluster_ack.h"

#include <stdlib.h>

struct ack_wait {
    struct ack_fifo *fifo;
    struct ack_holder *holder;
    struct ack_wait *prev, *next; /* in fifo */
    struct ack_wait *hnext;       /* in holder */
    uint64_t seq;
};

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

static void fifo_append(struct ack_fifo *f, struct ack_wait *w)
{
    w->fifo = f;
    w->next = NULL;
    w->prev = f->tail;
    if (f->tail)
        f->tail->next = w;
    else
        f->head = w;
    f->tail = w;
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
    if (seq <= f->answered)
        return 0;
    for (struct ack_wait *w = h->waits; w; w = w->hnext)
        if (w->fifo == f) {
            if (w->seq < seq) {
                /* A later request: every other wait on f is for seq or
                 * less, so the tail is its place. */
                w->seq = seq;
                fifo_unlink(w);
                fifo_append(f, w);
            }
            return 1;
        }
    struct ack_wait *w = malloc(sizeof *w);
    if (!w)
        return -1;
    w->holder = h;
    w->seq = seq;
    w->hnext = h->waits;
    h->waits = w;
    h->n++;
    fifo_append(f, w);
    return 1;
}

/* The oldest request was answered: its waits end; a holder is told when
 * its last wait ends (ok), or at once, one wait ending in a refusal (!ok). */
static bool settle(struct ack_fifo *f, bool ok, ack_done_fn *done, void *arg)
{
    if (f->answered == f->sent)
        return false;
    f->answered++;
    while (f->head && f->head->seq <= f->answered) {
        struct ack_wait *w = f->head;
        struct ack_holder *h = w->holder;
        fifo_unlink(w);
        holder_unlink(w);
        free(w);
        if (!ok || h->n == 0)
            done(h, ok, arg);
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
    f->answered = f->sent;
    while (f->head) {
        struct ack_wait *w = f->head;
        struct ack_holder *h = w->holder;
        fifo_unlink(w);
        holder_unlink(w);
        free(w);
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
}
