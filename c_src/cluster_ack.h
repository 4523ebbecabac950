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
 * Waits on one FIFO are kept in the order of their numbers (almost always
 * for the request being built or the last one sent, so a wait goes in at
 * the tail; a subscriber waits for the last subscribe batch, which may be
 * earlier): an answer releases waits from the head only.  A holder waits at most once
 * per FIFO (a later number replaces an earlier one), so the number of its
 * waits is at most the number of cores.
 *
 * A holder's held replies may each wait for other requests (a child's
 * link: each publish batch it sent is answered on its own, cluster_relay.c).
 * Such a holder also notes, per reply (a number of the caller's), the
 * request of each FIFO it waits for (ack_note): when a FIFO fails or
 * refuses a request, the notes that wait for it are marked refused, and the
 * caller answers only those replies with an error; the others wait for
 * their own requests.  A wait remembers the first request it waited for
 * too, so that a refusal of a request between the first and the last tells
 * its holder (a holder without notes takes it as its own).
 *
 * Pure: no sockets, no event loop; test/c/test_cluster_ack.c drives it. */
#ifndef KRAKEN_CLUSTER_ACK_H
#define KRAKEN_CLUSTER_ACK_H

#include <stdbool.h>
#include <stdint.h>

struct ack_wait;
struct ack_fifo;

/* Held reply `reply` waits for requests `first` .. `seq` of `fifo` (a
 * publish that filled a batch goes on in the next one; NULL once it was
 * refused: then `refused`). */
struct ack_note {
    struct ack_fifo *fifo;
    uint64_t first, seq, reply;
    bool refused;
};

/* What a waiting party embeds (struct conn): its waits and their count,
 * and the notes of its replies, if it keeps any (ack_note). */
struct ack_holder {
    struct ack_wait *waits; /* its waits, one per FIFO at most */
    uint32_t n;             /* how many; 0: not waiting */
    struct ack_note *notes;
    uint32_t nnotes, notes_cap;
    uint32_t refused;   /* notes marked refused */
    bool notes_lost;    /* a note could not be kept (out of memory) */
};

/* One link's acknowledged requests. */
struct ack_fifo {
    uint64_t sent;     /* acknowledged requests sent (the last one's number) */
    uint64_t answered; /* answers received: requests 1..answered are done */
    struct ack_wait *head, *tail; /* waits, by number */
};

/* done(h, true): h's last wait was answered.  done(h, false): one of h's
 * waits failed (its link broke or its core left), or a request it waited
 * for was refused; h may wait for others (and be told again). */
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
/* The same for a request carried by requests first .. seq of f (a refusal
 * of any of them tells h, as for a later request it waited for). */
int ack_wait_from(struct ack_fifo *f, struct ack_holder *h, uint64_t first, uint64_t seq);

/* One answer arrived.  Returns false when none was owed (nothing changes). */
bool ack_fifo_answer(struct ack_fifo *f, ack_done_fn *done, void *arg);

/* One answer arrived, and it is a refusal: the waits for that request fail
 * (done(h, false) once per holder, after its wait was removed; h may wait
 * elsewhere); a holder that waits for a later request on f, having waited
 * for this one too (its first request is not later), is told as well
 * (done(h, false), its wait stays; its notes for this request refused).
 * Returns false when none was owed. */
bool ack_fifo_refuse(struct ack_fifo *f, ack_done_fn *done, void *arg);

/* The link is gone: every wait on f fails (done(h, false) once per holder,
 * after its wait was removed), and nothing is owed any more. */
void ack_fifo_fail(struct ack_fifo *f, ack_done_fn *done, void *arg);

/* The holder goes away (its connection closes): its waits and notes are
 * removed, without calls. */
void ack_holder_forget(struct ack_holder *h);

/* h's held reply `reply` waits for request seq of f (h waits there:
 * ack_wait returned 1).  When f fails before answering seq, or refuses it,
 * the note is marked refused (and h told: done(h, false)).  Returns 0, or
 * -1 when out of memory (h->notes_lost is set: the caller cannot tell its
 * replies apart any more). */
int ack_note(struct ack_holder *h, struct ack_fifo *f, uint64_t seq, uint64_t reply);
/* The same for a reply carried by requests first .. seq of f: refused when
 * any of them is refused, or f fails before answering them all. */
int ack_note_range(struct ack_holder *h, struct ack_fifo *f, uint64_t first, uint64_t seq,
                   uint64_t reply);

/* The replies of h's refused notes, each once, in increasing order, into
 * *out (malloc'd, NULL when none).  Returns how many, -1 when out of
 * memory. */
long ack_refused_replies(const struct ack_holder *h, uint64_t **out);

/* Drops h's notes (its held replies were released). */
void ack_notes_clear(struct ack_holder *h);

#endif
