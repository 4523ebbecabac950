/* subset.h - one subscriber's set of subscriptions.
 *
 * An open-addressing hash set of (topic, slot) pairs stored inline (16 bytes
 * each, no allocation per subscription), keyed by topic pointer.  `slot` is
 * the subscriber's index in topic->subs, which lets unsubscribe remove it
 * from the topic in O(1) by swapping in the topic's last subscriber (whose
 * own pair is then updated).  Linear probing, backward-shift deletion, grown
 * at 3/4 load, shrunk below 1/8 but never below SUBSET_KEEP slots (so a
 * subscriber's set is freed only with the subscriber). */
#ifndef KRAKEN_SUBSET_H
#define KRAKEN_SUBSET_H

#include <stdint.h>

struct topic;

#define SUBSET_KEEP 256 /* slots (4 KiB) kept through unsubscribes */

struct subslot {
    struct topic *topic; /* NULL: empty slot */
    uint32_t slot;       /* index in topic->subs */
};

struct subset {
    struct subslot *v;
    uint32_t cap, count;
};

static inline void subset_init(struct subset *s)
{
    s->v = 0;
    s->cap = s->count = 0;
}
void subset_free(struct subset *s);
struct subslot *subset_find(const struct subset *s, const struct topic *t);
/* Adds a topic not in the set. Returns 0, or -1 on allocation failure. */
int subset_add(struct subset *s, struct topic *t, uint32_t slot);
/* Removes t if present; returns 1 if it was there. */
int subset_remove(struct subset *s, const struct topic *t);

#endif
