/* cluster_ack.h - acknowledged upstream subscribes: per link, the FIFO of
 * answers the core owes, and who waits for them (docs/cluster.md).
 *
 * A link sends its `subscribe` requests without noreply; the core answers
 * each one (STORED) in order, so numbering the requests is enough: the n-th
 * acknowledged request sent on a link is answered by the n-th answer.  A
 * client whose subscribe needs an upstream subscription waits (struct
 * ack_holder, inside its connection) for the number of the request that
 * carries it, at each core concerned; its reply and its later requests are
 * held meanwhile (server.c).
 *
 * Waits on one FIFO are kept in the order of their numbers (a wait is always
 * for the request being built or the last one sent, so they come in order):
 * an answer releases waits from the head only.  A holder waits at most once
 * per FIFO (a later number replaces an earlier one), so the number of its
 * waits is at most the number of cores.
 *
 * Pure: no sockets, no event loop; test/c/test_cluster_ack.c drives it. */
#ifndef KRAKEN_CLUSTER_ACK_H
#define KRAKEN_CLUSTER_ACK_H

#include <stdbool.h>
#include <stdint.h>

struct ack_wait;

/* What a waiting party embeds (struct conn): its waits and their count. */
struct ack_holder {
    struct ack_wait *waits; /* its waits, one per FIFO at most */
    uint32_t n;             /* how many; 0: not waiting */
};

/* One link's acknowledged requests. */
struct ack_fifo {
    uint64_t sent;     /* acknowledged requests sent (the last one's number) */
    uint64_t answered; /* answers received: requests 1..answered are done */
    struct ack_wait *head, *tail; /* waits, by number */
};

/* done(h, true): h's last wait was answered.  done(h, false): one of h's
 * waits failed (its link broke or its core left); h may wait for others. */
typedef void ack_done_fn(struct ack_holder *h, bool ok, void *arg);

static inline void ack_fifo_init(struct ack_fifo *f)
{
    *f = (struct ack_fifo){0, 0, 0, 0};
}

/* An acknowledged request was sent: returns its number. */
static inline uint64_t ack_fifo_send(struct ack_fifo *f)
{
    return ++f->sent;
}

/* h waits until request `seq` of f is answered (seq at most sent + 1: the
 * request being built).  Returns 1 if h now waits, 0 when there is nothing
 * to wait for (answered already), -1 when out of memory (h does not wait). */
int ack_wait(struct ack_fifo *f, struct ack_holder *h, uint64_t seq);

/* One answer arrived.  Returns false when none was owed (nothing changes). */
bool ack_fifo_answer(struct ack_fifo *f, ack_done_fn *done, void *arg);

/* One answer arrived, and it is a refusal: the waits for that request fail
 * (done(h, false) once per holder, after its wait was removed; h may wait
 * elsewhere), the later ones go on.  Returns false when none was owed. */
bool ack_fifo_refuse(struct ack_fifo *f, ack_done_fn *done, void *arg);

/* The link is gone: every wait on f fails (done(h, false) once per holder,
 * after its wait was removed), and nothing is owed any more. */
void ack_fifo_fail(struct ack_fifo *f, ack_done_fn *done, void *arg);

/* The holder goes away (its connection closes): its waits are removed,
 * without calls. */
void ack_holder_forget(struct ack_holder *h);

#endif
