/* fuzz_checks.h - invariants the fuzzing harnesses check after each step
 * (fuzz_session.c, fuzz_link.c): a queue's byte count is the sum of its
 * items' sizes, and every `VALUE messages' block a Kraken connection is
 * sent announces its length right. */
#ifndef KRAKEN_FUZZ_CHECKS_H
#define KRAKEN_FUZZ_CHECKS_H

#include <assert.h>
#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

static inline void check_queue(const struct queue *q)
{
    size_t sum = 0;
    for (uint32_t i = 0; i < q->count; i++)
        sum += qitem_size(&q->items[(q->head + i) & (q->cap - 1)]);
    assert(sum == q->bytes);
}

/* Every VALUE line must be followed by exactly n + 2 bytes and END. */
static inline void check_output(struct evbuffer *out)
{
    size_t len = evbuffer_get_length(out);
    char *p = (char *)evbuffer_pullup(out, (ev_ssize_t)len);
    for (size_t i = 0; i + 16 < len; i++) {
        if (memcmp(p + i, "VALUE messages 0 ", 17) != 0 || (i > 0 && p[i - 1] != '\n'))
            continue;
        char *eol = memchr(p + i, '\n', len - i);
        assert(eol);
        size_t n = strtoull(p + i + 17, NULL, 10);
        size_t body = (size_t)(eol + 1 - p);
        assert(body + n + 2 + 5 <= len);
        assert(memcmp(p + body + n, "\r\nEND\r\n", 7) == 0);
        i = body + n + 6;
    }
    evbuffer_drain(out, len);
}

#endif
