/* retain.h - a router shard's retention ring, for retroactive subscription.
 *
 * Each shard keeps the last `cap` entries published to any of its topics, in
 * publish order (entries are appended with increasing seq and non-decreasing
 * time, so the ring is sorted by both and can be binary-searched).  When the
 * ring is full, or its entries' bytes pass max_bytes (so that big payloads
 * cannot make retention take unbounded memory), the oldest entries are
 * dropped, and the ring remembers the newest seq and time it has dropped: a
 * horizon older than those is "too old" (the client may have missed
 * something) and retro_subscribe answers NOT_FOUND. */
#ifndef KRAKEN_RETAIN_H
#define KRAKEN_RETAIN_H

#include <stddef.h>
#include <stdint.h>

struct entry;

struct retain {
    struct entry **ring;
    uint32_t cap, head, count;
    size_t bytes, max_bytes;  /* wire bytes of the retained entries; bound (0: none) */
    uint64_t dropped_seq;   /* newest seq dropped, 0 if none */
    int64_t dropped_time;   /* its time, INT64_MIN if none */
    uint64_t mark;          /* scratch epoch (router.c: scan each shard once) */
};

int retain_init(struct retain *r, uint32_t cap, size_t max_bytes);
void retain_free(struct retain *r);
/* Appends e (taking a reference); releases the entries it evicts, if any.
 * The newest entry is always kept, even alone over max_bytes. */
void retain_push(struct retain *r, struct entry *e);
static inline struct entry *retain_at(const struct retain *r, uint32_t i)
{
    uint32_t j = r->head + i;
    return r->ring[j >= r->cap ? j - r->cap : j];
}
/* Evicts the oldest entry (as the bounds do); returns its wire bytes, 0 if empty. */
size_t retain_drop_oldest(struct retain *r);
/* Index of the first retained entry with seq > seq (count if none). */
uint32_t retain_first_after_seq(const struct retain *r, uint64_t seq);
/* Index of the first retained entry with time > t (count if none). */
uint32_t retain_first_after_time(const struct retain *r, int64_t t);

#endif
