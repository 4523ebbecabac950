/* queue.h - a client's queue of undelivered entries.
 *
 * A queue is a ring of (entry, which-topics) items; `get messages` serialises
 * the whole ring and empties it.  Items only point at shared entries
 * (entry.h), so queuing a delivery allocates nothing but, now and then, a
 * bigger ring.
 *
 * Which topics of the entry this subscriber holds (they are listed on its
 * MESSAGE line, in the publisher's order):
 *   - QUEUE_ALL: every topic; the entry's prebuilt wire bytes are sent as is;
 *   - entries of at most 64 topics: a bit mask, bit i for topic i;
 *   - larger entries: `list`, a malloc'd uint32_t array
 *     {count, capacity, index...} in ascending index order.
 * `bytes` is the exact size of the serialised items, kept up to date so the
 * VALUE line can be written first and the per-client bound checked cheaply. */
#ifndef KRAKEN_QUEUE_H
#define KRAKEN_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct entry;
struct evbuffer;

#define QUEUE_ALL UINT64_MAX
#define QUEUE_MASK_TOPICS 64

struct qitem {
    struct entry *e;
    union {
        uint64_t mask;
        uint32_t *list;
    } m;
};

struct queue {
    struct qitem *items;
    uint32_t head, count, cap;
    size_t bytes;        /* serialised size of all items */
    size_t largest;      /* serialised size of the largest item */
};

void queue_init(struct queue *q);
/* Drops every item (releasing entries) and frees the ring. */
void queue_clear(struct queue *q);
/* Appends an item for e holding no topic yet (takes a reference on e).
 * Returns the item, or NULL on allocation failure. */
struct qitem *queue_push(struct queue *q, struct entry *e);
static inline struct qitem *queue_tail(struct queue *q)
{
    return &q->items[(q->head + q->count - 1) & (q->cap - 1)];
}
/* An item of e holding no topic yet, outside any queue (takes a reference
 * on e; qitem_release gives it back). */
void qitem_init(struct qitem *it, struct entry *e);
/* Marks topic index i of the item's entry as held.  Returns -1 on allocation failure. */
int qitem_add_topic(struct qitem *it, uint32_t i);
/* Normalises a complete item (all topics held -> QUEUE_ALL) and adds its size to q->bytes. */
void queue_commit_tail(struct queue *q);
/* The oldest item (q->count > 0), and its removal (releasing the entry). */
static inline struct qitem *queue_front(struct queue *q)
{
    return &q->items[q->head];
}
void queue_pop(struct queue *q);
/* Removes the items from index `from` on (oldest first), moving them into
 * out[] (at least count - from long); the caller then owns them and releases
 * each with qitem_release.  Returns how many (cluster_retro.c re-queues
 * them behind entries that must come first). */
uint32_t queue_cut(struct queue *q, uint32_t from, struct qitem *out);
/* Releases an item taken by queue_cut (its topic list, its entry). */
void qitem_release(struct qitem *it);
/* Items of an answer gathered from several sources, each in publish order
 * (cluster_relay.c): sorts v[0..n) by the entries' second, keeping each
 * second's items in their order in v, except that this node's own entries
 * (seq > 0) are put in seq order among the places they hold; and makes the
 * items of one entry one
 * item (the first), holding the union of their topics.  Uses the entries'
 * `mark' with the values mark_base .. mark_base + n - 1, which the caller
 * reserved.  *n becomes the new count (the merged items are released),
 * also when it returns -1 (out of memory: an item may lack topics). */
int qitems_by_second(struct qitem *v, size_t *n, uint64_t mark_base);
/* Iterates the topic indexes an item holds, ascending:
 *   struct qitem_iter x; uint32_t i;
 *   for (qitem_iter_init(it, &x); qitem_iter_next(it, &x, &i);) ... */
struct qitem_iter {
    uint64_t mask;
    uint32_t k, n;
};
void qitem_iter_init(const struct qitem *it, struct qitem_iter *x);
bool qitem_iter_next(const struct qitem *it, struct qitem_iter *x, uint32_t *i);
/* Serialised size of one item. */
size_t qitem_size(const struct qitem *it);
/* Writes one item (its MESSAGE line and payload) into out; a payload and
 * its CRLF longer than copy_limit by reference.  -1 on allocation failure. */
int qitem_write(struct evbuffer *out, const struct qitem *it, size_t copy_limit);
/* Writes the `get messages` reply for the whole queue into out and empties it.
 * Entries bigger than copy_limit are added by reference, not copied.
 * Returns the number of entries written, or -1 on allocation failure. */
long queue_write(struct queue *q, struct evbuffer *out, size_t copy_limit);

#endif
