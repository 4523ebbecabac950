/* fuzz_session.c - libFuzzer harness for whole connection byte streams.
 *
 * Four connections share one engine, two speaking Kraken's protocol and two
 * Redis's, so the cross-protocol paths (a Kraken publish formatted as Redis
 * frames, patterns, push delivery) are fuzzed too.  The
 * input is cut into chunks, each chunk goes to the session named by its first
 * byte, and every session is polled.  After each step the invariants the
 * server relies on are checked: a queue's byte count equals the sum of its
 * items' sizes, every `get messages` reply announces the right length, and
 * a connection that is closing is never fed again. */
#include <assert.h>
#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "fuzz_checks.h"
#include "engine.h"
#include "log.h"
#include "proto_kraken.h"
#include "proto_redis.h"

#define NSESS 4


static void overflow(struct subscriber *s, void *arg)
{
    (void)arg;
    struct conn *c = s->owner;
    c->state = CONN_CLOSING;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct engine eng;
    struct engine_config cfg;
    engine_config_defaults(&cfg);
    cfg.max_request_bytes = 4096;
    cfg.max_queue_bytes = 8192;
    cfg.num_shards = 3;
    cfg.retain_per_shard = 8;
    cfg.retain_bytes_per_shard = 0;
    cfg.topics_warn = cfg.fanout_warn = 1u << 30;
    log_min_level = LOG_ERROR + 1; /* silence */
    if (engine_init(&eng, &cfg, overflow, NULL, NULL) < 0)
        return 0;
    eng.router.start_time = eng.router.last_time = 1000;
    struct conn *s[NSESS];
    for (int i = 0; i < NSESS; i++) {
        /* even: Kraken's protocol, odd: Redis's, on one router */
        s[i] = conn_new(&eng, i % 2 ? &proto_redis : &proto_kraken, (uint64_t)i + 1, "fuzz", 0);
        s[i]->in = evbuffer_new();
        s[i]->out = evbuffer_new();
    }
    size_t off = 0;
    while (off < size) {
        int who = (data[off] & 3) % NSESS;
        size_t n = 1 + (data[off] >> 2);
        off++;
        if (n > size - off)
            n = size - off;
        if (!conn_is_closing(s[who])) {
            evbuffer_add(s[who]->in, data + off, n);
            s[who]->ops->process(s[who]);
        }
        off += n;
        for (int i = 0; i < NSESS; i++) {
            if (s[i]->sub.push && !conn_is_closing(s[i]))
                s[i]->ops->deliver(s[i]); /* what the write event would do */
            check_queue(&s[i]->sub.queue);
            if (s[i]->ops == &proto_kraken)
                check_output(s[i]->out);
            else
                evbuffer_drain(s[i]->out, evbuffer_get_length(s[i]->out));
        }
    }
    for (int i = 0; i < NSESS; i++) {
        evbuffer_free(s[i]->in);
        evbuffer_free(s[i]->out);
        conn_free(s[i], &eng.router);
    }
    engine_free(&eng);
    return 0;
}
