/* queue.c - per-client queues of shared entries; see queue.h. */
#include "queue.h"

#include <event2/buffer.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "entry.h"
#include "kraken/protocol.h"
#include "topic.h"

void queue_init(struct queue *q)
{
    memset(q, 0, sizeof *q);
}

static void item_release(struct qitem *it)
{
    if (it->e->ntopics > QUEUE_MASK_TOPICS && it->m.mask != QUEUE_ALL)
        free(it->m.list);
    entry_unref(it->e);
}

void queue_clear(struct queue *q)
{
    for (uint32_t i = 0; i < q->count; i++)
        item_release(&q->items[(q->head + i) & (q->cap - 1)]);
    free(q->items);
    queue_init(q);
}

static int grow(struct queue *q)
{
    uint32_t cap = q->cap ? q->cap * 2 : 8;
    struct qitem *items = malloc(cap * sizeof *items);
    if (!items)
        return -1;
    for (uint32_t i = 0; i < q->count; i++)
        items[i] = q->items[(q->head + i) & (q->cap - 1)];
    free(q->items);
    q->items = items;
    q->cap = cap;
    q->head = 0;
    return 0;
}

void qitem_init(struct qitem *it, struct entry *e)
{
    it->e = e;
    it->m.mask = 0;
    if (e->ntopics > QUEUE_MASK_TOPICS)
        it->m.list = NULL;
    entry_ref(e);
}

struct qitem *queue_push(struct queue *q, struct entry *e)
{
    if (q->count == q->cap && grow(q) < 0)
        return NULL;
    struct qitem *it = &q->items[(q->head + q->count) & (q->cap - 1)];
    q->count++;
    qitem_init(it, e);
    return it;
}

int qitem_add_topic(struct qitem *it, uint32_t i)
{
    if (it->e->ntopics <= QUEUE_MASK_TOPICS) {
        it->m.mask |= 1ULL << i;
        return 0;
    }
    uint32_t *l = it->m.list;
    if (l && l[0] && l[2 + l[0] - 1] >= i) {
        /* Out of order (a pattern after the exact topics, router_pattern.c):
         * keep the list ascending and without duplicates. */
        for (uint32_t k = 0; k < l[0]; k++)
            if (l[2 + k] == i)
                return 0;
    }
    if (!l || l[0] == l[1]) {
        uint32_t cap = l ? l[1] * 2 : 8;
        uint32_t *n = realloc(l, (2 + (size_t)cap) * sizeof *n);
        if (!n)
            return -1;
        if (!l)
            n[0] = 0;
        n[1] = cap;
        it->m.list = l = n;
    }
    uint32_t k = l[0]++;
    while (k > 0 && l[2 + k - 1] > i) {
        l[2 + k] = l[2 + k - 1];
        k--;
    }
    l[2 + k] = i;
    return 0;
}

void qitem_iter_init(const struct qitem *it, struct qitem_iter *x)
{
    x->k = 0;
    x->mask = it->m.mask;
    x->n = it->m.mask == QUEUE_ALL ? it->e->ntopics
           : it->e->ntopics <= QUEUE_MASK_TOPICS ? (uint32_t)__builtin_popcountll(it->m.mask)
           : it->m.list ? it->m.list[0] : 0;
}

bool qitem_iter_next(const struct qitem *it, struct qitem_iter *x, uint32_t *i)
{
    if (x->k >= x->n)
        return false;
    if (it->m.mask == QUEUE_ALL)
        *i = x->k;
    else if (it->e->ntopics <= QUEUE_MASK_TOPICS) {
        *i = (uint32_t)__builtin_ctzll(x->mask);
        x->mask &= x->mask - 1;
    } else
        *i = it->m.list[2 + x->k];
    x->k++;
    return true;
}

void queue_pop(struct queue *q)
{
    struct qitem *it = queue_front(q);
    q->bytes -= qitem_size(it);
    item_release(it);
    q->head = (q->head + 1) & (q->cap - 1);
    if (--q->count == 0) {
        q->head = 0;
        q->bytes = 0;
        q->largest = 0;
    }
}

uint32_t queue_cut(struct queue *q, uint32_t from, struct qitem *out)
{
    uint32_t n = 0;
    for (uint32_t i = from; i < q->count; i++) {
        out[n] = q->items[(q->head + i) & (q->cap - 1)];
        q->bytes -= qitem_size(&out[n]);
        n++;
    }
    q->count = from < q->count ? from : q->count;
    if (q->count == 0) {
        q->head = 0;
        q->bytes = 0;
        q->largest = 0;
    }
    return n;
}

void qitem_release(struct qitem *it)
{
    item_release(it);
}

/* Adds from's topics to into's (the same entry). */
static int item_merge(struct qitem *into, const struct qitem *from)
{
    if (into->m.mask == QUEUE_ALL)
        return 0;
    if (from->m.mask == QUEUE_ALL) {
        if (into->e->ntopics > QUEUE_MASK_TOPICS)
            free(into->m.list);
        into->m.mask = QUEUE_ALL;
        return 0;
    }
    struct qitem_iter x;
    uint32_t i;
    for (qitem_iter_init(from, &x); qitem_iter_next(from, &x, &i);)
        if (qitem_add_topic(into, i) < 0)
            return -1;
    return 0;
}

struct by_second {
    int64_t time;
    uint64_t seq;
    size_t i;
};

/* By second, then by position in v (stable: each source is in publish
 * order, and an owner's answer comes before this node's own entries). */
static int cmp_by_second(const void *a, const void *b)
{
    const struct by_second *x = a, *y = b;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int cmp_seq_only(const void *a, const void *b)
{
    const struct by_second *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Within each second, this node's own entries (seq > 0: from its retention
 * or forwarded from its clients, two sources in which one publisher's
 * entries may both be) are put in publish order among the places they
 * hold; the entries made from an owner's answer (seq 0) keep theirs (an
 * entry of a publisher sent on an older link comes back in the answer, its
 * next one, sent after the link was reopened, is this node's own). */
static int own_in_seq_order(struct by_second *o, size_t n)
{
    struct by_second *own = malloc((n ? n : 1) * sizeof *own);
    size_t *at = malloc((n ? n : 1) * sizeof *at);
    if (!own || !at) {
        free(own);
        free(at);
        return -1;
    }
    for (size_t s = 0; s < n;) {
        size_t e = s, m = 0;
        while (e < n && o[e].time == o[s].time)
            e++;
        for (size_t k = s; k < e; k++)
            if (o[k].seq) {
                own[m] = o[k];
                at[m++] = k;
            }
        qsort(own, m, sizeof *own, cmp_seq_only);
        for (size_t k = 0; k < m; k++)
            o[at[k]] = own[k];
        s = e;
    }
    free(own);
    free(at);
    return 0;
}

int qitems_by_second(struct qitem *v, size_t *count, uint64_t mark_base)
{
    size_t n = *count;
    struct by_second *o = malloc((n ? n : 1) * sizeof *o);
    struct qitem *w = malloc((n ? n : 1) * sizeof *w);
    if (!o || !w) {
        free(o);
        free(w);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        o[i].time = v[i].e->time;
        o[i].seq = v[i].e->seq;
        o[i].i = i;
    }
    qsort(o, n, sizeof *o, cmp_by_second);
    int rc = own_in_seq_order(o, n);
    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        struct qitem *it = &v[o[k].i];
        uint64_t mark = it->e->mark;
        if (mark >= mark_base && mark - mark_base < m && w[mark - mark_base].e == it->e) {
            /* the same entry again (from another source): one item */
            if (rc == 0 && item_merge(&w[mark - mark_base], it) < 0)
                rc = -1;
            item_release(it);
            continue;
        }
        it->e->mark = mark_base + m;
        w[m++] = *it;
    }
    memcpy(v, w, m * sizeof *v);
    *count = m;
    free(o);
    free(w);
    return rc;
}

static uint32_t item_count(const struct qitem *it)
{
    if (it->m.mask == QUEUE_ALL)
        return it->e->ntopics;
    if (it->e->ntopics <= QUEUE_MASK_TOPICS)
        return (uint32_t)__builtin_popcountll(it->m.mask);
    return it->m.list ? it->m.list[0] : 0;
}

/* Index of the k-th held topic (k < item_count). */
static uint32_t item_topic(const struct qitem *it, uint64_t *mask_iter, uint32_t k)
{
    if (it->e->ntopics <= QUEUE_MASK_TOPICS) {
        uint32_t i = (uint32_t)__builtin_ctzll(*mask_iter);
        *mask_iter &= *mask_iter - 1;
        return i;
    }
    return it->m.list[2 + k];
}

void queue_commit_tail(struct queue *q)
{
    struct qitem *it = queue_tail(q);
    uint32_t nt = it->e->ntopics;
    bool all = nt <= QUEUE_MASK_TOPICS
                   ? it->m.mask == (nt == 64 ? ~0ULL : (1ULL << nt) - 1) /* no popcount call */
                   : item_count(it) == nt;
    if (all) {
        if (it->e->ntopics > QUEUE_MASK_TOPICS)
            free(it->m.list);
        it->m.mask = QUEUE_ALL;
    }
    size_t size = qitem_size(it);
    q->bytes += size;
    if (size > q->largest)
        q->largest = size;
}

size_t qitem_size(const struct qitem *it)
{
    const struct entry *e = it->e;
    if (it->m.mask == QUEUE_ALL)
        return entry_wire_len(e);
    size_t n = sizeof "MESSAGE " - 1 + entry_is_shard(e) + proto_digits(e->payload_len) + 2 +
               e->payload_len + 2;
    uint64_t iter = it->m.mask;
    uint32_t c = item_count(it);
    for (uint32_t k = 0; k < c; k++)
        n += e->topics[item_topic(it, &iter, k)]->len + 1;
    return n;
}

static void release_ref(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    entry_unref(arg);
}

int qitem_write(struct evbuffer *out, const struct qitem *it, size_t copy_limit)
{
    struct entry *e = it->e;
    const char *tail = entry_payload(e);
    size_t tail_len = e->payload_len + 2;
    if (it->m.mask == QUEUE_ALL) {
        tail = e->wire;
        tail_len += e->hdr_len;
    } else {
        char num[24];
        uint64_t iter = it->m.mask;
        uint32_t c = item_count(it);
        if (entry_is_shard(e) ? evbuffer_add(out, "SMESSAGE", 8) < 0
                              : evbuffer_add(out, "MESSAGE", 7) < 0)
            return -1;
        for (uint32_t k = 0; k < c; k++) {
            const struct topic *t = e->topics[item_topic(it, &iter, k)];
            if (evbuffer_add(out, " ", 1) < 0 || evbuffer_add(out, t->name, t->len) < 0)
                return -1;
        }
        num[0] = ' ';
        size_t n = 1 + proto_fmt_u64(num + 1, e->payload_len);
        num[n++] = '\r';
        num[n++] = '\n';
        if (evbuffer_add(out, num, n) < 0)
            return -1;
    }
    if (tail_len > copy_limit) {
        entry_ref(e);
        if (evbuffer_add_reference(out, tail, tail_len, release_ref, e) < 0) {
            entry_unref(e);
            return -1;
        }
        return 0;
    }
    return evbuffer_add(out, tail, tail_len);
}

/* Serialises one item into dst (qitem_size bytes); returns the end. */
static char *copy_item(char *dst, const struct qitem *it)
{
    const struct entry *e = it->e;
    if (it->m.mask == QUEUE_ALL) {
        memcpy(dst, e->wire, entry_wire_len(e));
        return dst + entry_wire_len(e);
    }
    if (entry_is_shard(e))
        *dst++ = 'S';
    memcpy(dst, "MESSAGE", 7);
    dst += 7;
    uint64_t iter = it->m.mask;
    uint32_t c = item_count(it);
    for (uint32_t k = 0; k < c; k++) {
        const struct topic *t = e->topics[item_topic(it, &iter, k)];
        *dst++ = ' ';
        memcpy(dst, t->name, t->len);
        dst += t->len;
    }
    *dst++ = ' ';
    dst += proto_fmt_u64(dst, e->payload_len);
    *dst++ = '\r';
    *dst++ = '\n';
    memcpy(dst, entry_payload(e), e->payload_len + 2);
    return dst + e->payload_len + 2;
}

/* Replies up to this size are built in one contiguous reservation. */
#define QUEUE_PREFETCH 4
#define QUEUE_CONTIGUOUS_MAX (64u << 10)

static int write_contiguous(struct queue *q, struct evbuffer *out, const char *line, size_t n)
{
    size_t total = n + q->bytes + sizeof PROTO_END - 1;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, (ev_ssize_t)total, &v, 1) < 1 || v.iov_len < total)
        return -1;
    char *p = v.iov_base;
    memcpy(p, line, n);
    p += n;
    for (uint32_t i = 0; i < q->count; i++) {
        /* The entries are cold (other connections' writes came between):
         * fetch a few ahead while this one is copied. */
        if (i + QUEUE_PREFETCH < q->count)
            __builtin_prefetch(q->items[(q->head + i + QUEUE_PREFETCH) & (q->cap - 1)].e);
        p = copy_item(p, &q->items[(q->head + i) & (q->cap - 1)]);
    }
    memcpy(p, PROTO_END, sizeof PROTO_END - 1);
    v.iov_len = total;
    return evbuffer_commit_space(out, &v, 1);
}

static int write_chained(struct queue *q, struct evbuffer *out, const char *line, size_t n,
                         size_t copy_limit)
{
    if (evbuffer_add(out, line, n) < 0)
        return -1;
    for (uint32_t i = 0; i < q->count; i++)
        if (qitem_write(out, &q->items[(q->head + i) & (q->cap - 1)], copy_limit) < 0)
            return -1;
    return evbuffer_add(out, PROTO_END, sizeof PROTO_END - 1);
}

long queue_write(struct queue *q, struct evbuffer *out, size_t copy_limit)
{
    if (q->count == 0)
        return evbuffer_add(out, PROTO_END, sizeof PROTO_END - 1) < 0 ? -1 : 0;
    char line[48];
    size_t n = proto_fmt_value_line(line, q->bytes - 2);
    long written = q->count;
    /* Small replies (the usual poll) are copied into one reservation; big
     * ones go entry by entry, the large entries by reference. */
    int rc = q->bytes <= QUEUE_CONTIGUOUS_MAX && q->largest <= copy_limit
                 ? write_contiguous(q, out, line, n)
                 : write_chained(q, out, line, n, copy_limit);
    if (rc < 0)
        return -1;
    int64_t now = clock_turn_ms();
    struct entry_wait_hist *hist = NULL;
    int64_t run_ms = 0;
    uint64_t run = 0;
    for (uint32_t i = 0; i < q->count; i++) {
        struct qitem *it = &q->items[(q->head + i) & (q->cap - 1)];
        if (run && it->e->publish_ms != run_ms) {
            entry_observe_waits(hist, run_ms, now, run);
            run = 0;
        }
        if (!run) {
            hist = &it->e->ctx->wait;
            run_ms = it->e->publish_ms;
        }
        run++;
        item_release(it);
    }
    if (run)
        entry_observe_waits(hist, run_ms, now, run);
    q->head = 0;
    q->count = 0;
    q->bytes = 0;
    q->largest = 0;
    /* Give back the memory of a burst once it is over (this write used
     * under a quarter of the array); a subscriber that keeps getting as
     * many keeps it: freeing it each time cost a push subscriber of the
     * fanout workload 5 allocations per write (7% of the engine). */
    if (q->cap > 64 && (uint64_t)written * 4 < q->cap) {
        free(q->items);
        q->items = NULL;
        q->cap = 0;
    }
    return written;
}
