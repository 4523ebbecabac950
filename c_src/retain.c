/* retain.c - per-shard retention rings; see retain.h. */
#include "retain.h"

#include <stdlib.h>

#include "entry.h"

int retain_init(struct retain *r, uint32_t cap, size_t max_bytes)
{
    r->ring = calloc(cap, sizeof *r->ring);
    r->cap = cap;
    r->head = r->count = 0;
    r->bytes = 0;
    r->max_bytes = max_bytes;
    r->mark = 0;
    r->dropped_seq = 0;
    r->dropped_time = INT64_MIN;
    return r->ring ? 0 : -1;
}

void retain_free(struct retain *r)
{
    for (uint32_t i = 0; i < r->count; i++)
        entry_unref(retain_at(r, i));
    free(r->ring);
    r->ring = NULL;
    r->count = 0;
}

static inline uint32_t wrap(const struct retain *r, uint32_t i)
{
    return i >= r->cap ? i - r->cap : i;
}

/* Entries about to be evicted were published long ago and are cold in the
 * cache: prefetch the one a few pushes ahead so that releasing it later does
 * not stall the publish path.  (A read prefetch, as prefetchw is not
 * baseline x86-64.) */
#define PREFETCH_AHEAD 16

static void evict_oldest(struct retain *r)
{
    struct entry *old = r->ring[r->head];
    if (r->count > PREFETCH_AHEAD) { /* so that slot is a live entry, not NULL or a freed one */
        /* struct entry spans two cache lines (malloc aligns to 16 bytes) */
        const char *next = (const char *)r->ring[wrap(r, r->head + PREFETCH_AHEAD)];
        __builtin_prefetch(next);
        __builtin_prefetch(next + 64);
    }
    r->dropped_seq = old->seq;
    r->dropped_time = old->time;
    r->bytes -= entry_wire_len(old);
    r->head = wrap(r, r->head + 1);
    r->count--;
    entry_unref(old);
}

size_t retain_drop_oldest(struct retain *r)
{
    if (r->count == 0)
        return 0;
    size_t n = entry_wire_len(r->ring[r->head]);
    evict_oldest(r);
    return n;
}

void retain_push(struct retain *r, struct entry *e)
{
    if (r->count == r->cap)
        evict_oldest(r);
    entry_ref(e);
    r->ring[wrap(r, r->head + r->count)] = e;
    r->count++;
    r->bytes += entry_wire_len(e);
    while (r->max_bytes && r->bytes > r->max_bytes && r->count > 1)
        evict_oldest(r);
}

uint32_t retain_first_after_seq(const struct retain *r, uint64_t seq)
{
    uint32_t lo = 0, hi = r->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (retain_at(r, mid)->seq > seq)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

uint32_t retain_first_after_time(const struct retain *r, int64_t t)
{
    uint32_t lo = 0, hi = r->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (retain_at(r, mid)->time > t)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}
