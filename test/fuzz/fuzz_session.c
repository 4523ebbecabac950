/* fuzz_session.c - libFuzzer harness for whole connection byte streams.
 *
 * Three sessions share one router (as connections share the engine).  The
 * input is cut into chunks, each chunk goes to the session named by its first
 * byte, and every session is polled.  After each step the invariants the
 * server relies on are checked: a queue's byte count equals the sum of its
 * items' sizes, every `get messages` reply announces the right length, and
 * a session that said CLOSE is never fed again. */
#include <assert.h>
#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "session.h"

#define NSESS 3

static void check_queue(const struct queue *q)
{
    size_t sum = 0;
    for (uint32_t i = 0; i < q->count; i++)
        sum += qitem_size(&q->items[(q->head + i) & (q->cap - 1)]);
    assert(sum == q->bytes);
}

/* Every VALUE line must be followed by exactly n + 2 bytes and END. */
static void check_output(struct evbuffer *out)
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

static void overflow(struct subscriber *s, void *arg)
{
    (void)arg;
    session_of(s)->closing = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct server srv;
    memset(&srv, 0, sizeof srv);
    engine_config_defaults(&srv.cfg);
    srv.cfg.max_request_bytes = 4096;
    srv.cfg.max_queue_bytes = 8192;
    srv.cfg.topics_warn = srv.cfg.fanout_warn = 1u << 30;
    struct router_config rc = {.num_shards = 3, .retain_per_shard = 8,
                               .max_queue_bytes = srv.cfg.max_queue_bytes, .overflow = overflow};
    log_min_level = LOG_ERROR + 1; /* silence */
    if (router_init(&srv.router, &rc, 1000) < 0)
        return 0;
    struct session *s[NSESS];
    struct evbuffer *in[NSESS], *out[NSESS];
    for (int i = 0; i < NSESS; i++) {
        s[i] = malloc(sizeof **s);
        session_init(s[i], &srv, (uint64_t)i + 1, "fuzz", 0);
        in[i] = evbuffer_new();
        out[i] = evbuffer_new();
    }
    size_t off = 0;
    while (off < size) {
        int who = (data[off] & 3) % NSESS;
        size_t n = 1 + (data[off] >> 2);
        off++;
        if (n > size - off)
            n = size - off;
        if (!s[who]->closing) {
            evbuffer_add(in[who], data + off, n);
            session_process(s[who], in[who], out[who]);
        }
        off += n;
        for (int i = 0; i < NSESS; i++) {
            check_queue(&s[i]->sub.queue);
            check_output(out[i]);
        }
    }
    for (int i = 0; i < NSESS; i++) {
        session_release(s[i]);
        free(s[i]);
        evbuffer_free(in[i]);
        evbuffer_free(out[i]);
    }
    router_free(&srv.router);
    free(srv.slices);
    free(srv.entries);
    return 0;
}
