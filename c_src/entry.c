/* entry.c - shared, reference-counted published entries; see entry.h. */
#include "entry.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "kraken/protocol.h"
#include "topic.h"

#if defined(__SANITIZE_ADDRESS__)
#define POOL_ON 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define POOL_ON 0
#endif
#endif
#ifndef POOL_ON
#define POOL_ON 1
#endif
/* Under valgrind too, so that test-valgrind still sees every entry's malloc/free. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

/* KRAKEN_TEST_ENTRY_POOL=1 keeps the pool on under the sanitizers, for the
 * unit tests of what a reused block could break (test_redis_frames.c). */
static bool pool_on(void)
{
    static int on = -1;
    if (on < 0) {
        const char *force = getenv("KRAKEN_TEST_ENTRY_POOL");
        on = (POOL_ON || (force && *force == '1')) && !RUNNING_ON_VALGRIND;
    }
    return on;
}

/* Size class of a block of n bytes, or -1 if it is not pooled. */
static int pool_class(size_t n)
{
    size_t c = (n + 63) / 64;
    return pool_on() && c <= ENTRY_POOL_CLASSES ? (int)c - 1 : -1;
}

static void *block_get(struct entry_pool *p, size_t n)
{
    int c = pool_class(n);
    if (c < 0)
        return malloc(n);
    void *b = p->free[c];
    if (!b)
        return malloc((size_t)(c + 1) * 64);
    p->free[c] = *(void **)b;
    p->count[c]--;
    return b;
}

static void block_put(struct entry_pool *p, void *b, size_t n)
{
    int c = pool_class(n);
    if (c < 0 || p->count[c] >= ENTRY_POOL_KEEP) {
        free(b);
        return;
    }
    *(void **)b = p->free[c];
    p->free[c] = b;
    p->count[c]++;
}

void entry_pool_drain(struct entry_pool *p)
{
    for (int c = 0; c < ENTRY_POOL_CLASSES; c++) {
        while (p->free[c]) {
            void *b = p->free[c];
            p->free[c] = *(void **)b;
            free(b);
        }
        p->count[c] = 0;
    }
}

/* Two cache lines with the topic pointers of a one-topic entry, as before
 * publish_ms was added (hence the 32-bit lengths). */
_Static_assert(sizeof(void *) != 8 || sizeof(struct entry) == 72, "struct entry grew");

const int64_t entry_wait_bounds_ms[ENTRY_WAIT_BUCKETS - 1] = {
    1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 30000, 60000, 300000,
};

int64_t entry_clock_ms(void)
{
    return clock_mono_ms();
}

void entry_observe_waits(struct entry_wait_hist *h, int64_t publish_ms, int64_t now_ms,
                         uint64_t n)
{
    if (publish_ms < 0 || n == 0)
        return; /* internal (router.c) */
    int64_t d = now_ms - publish_ms;
    if (d < 0)
        d = 0;
    int b = 0;
    while (b < ENTRY_WAIT_BUCKETS - 1 && d > entry_wait_bounds_ms[b])
        b++;
    h->bucket[b] += n;
    h->count += n;
    h->sum_ms += (uint64_t)d * n;
}

void entry_observe_wait(const struct entry *e, int64_t now_ms)
{
    entry_observe_waits(&e->ctx->wait, e->publish_ms, now_ms, 1);
}

/* The block ends with the `entered' bitmap, one bit per topic (entry.h). */
static size_t entry_block_size(size_t ntopics, size_t hdr, size_t len)
{
    return sizeof(struct entry) + ntopics * sizeof(struct topic *) + hdr + len + 2 +
           (ntopics + 7) / 8;
}

struct entry *entry_new(struct entry_ctx *ctx, struct topic *const *topics, uint32_t ntopics,
                        const char *payload, size_t len)
{
    /* Redis shard channels' entries travel on cluster links marked as such
     * (entry.h): nothing else formats them as Kraken text. */
    const char *prefix = ntopics && topics[0]->ns == TOPIC_NS_SHARD ? "SMESSAGE " : "MESSAGE ";
    size_t plen = strlen(prefix);
    size_t hdr = plen + proto_digits(len) + 2;
    for (uint32_t i = 0; i < ntopics; i++)
        hdr += topics[i]->len + 1;
    if (hdr > UINT32_MAX || len > UINT32_MAX)
        return NULL;
    size_t head = sizeof(struct entry) + ntopics * sizeof(struct topic *);
    struct entry *e = block_get(&ctx->pool, entry_block_size(ntopics, hdr, len));
    if (!e)
        return NULL;
    e->refcnt = 1;
    e->ntopics = ntopics;
    e->seq = 0;
    e->time = 0;
    e->publish_ms = 0;
    e->publisher = 0;
    e->mark = 0;
    e->ctx = ctx;
    e->hdr_len = (uint32_t)hdr;
    e->payload_len = (uint32_t)len;
    e->wire = (char *)e + head;
    char *w = e->wire;
    memcpy(w, prefix, plen);
    w += plen;
    for (uint32_t i = 0; i < ntopics; i++) {
        e->topics[i] = topics[i];
        topic_ref(topics[i]);
        memcpy(w, topics[i]->name, topics[i]->len);
        w += topics[i]->len;
        *w++ = ' ';
    }
    w += proto_fmt_u64(w, len);
    *w++ = '\r';
    *w++ = '\n';
    if (len)
        memcpy(w, payload, len);
    w[len] = '\r';
    w[len + 1] = '\n';
    memset(w + len + 2, 0, (ntopics + 7) / 8); /* entry_entered(e) */
    return e;
}

void entry_unref(struct entry *e)
{
    if (--e->refcnt > 0)
        return;
    struct entry_ctx *ctx = e->ctx;
    for (uint32_t i = 0; i < e->ntopics; i++)
        topic_unref(ctx->topics, e->topics[i]);
    block_put(&ctx->pool, e, entry_block_size(e->ntopics, e->hdr_len, e->payload_len));
}
