/* conn.c - allocation and release of connections, and what the memory budget
 * counts of one; see conn.h. */
#include "conn.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct conn *conn_new(struct engine *eng, const struct proto_ops *ops, uint64_t id,
                      const char *peer, int64_t now_ms)
{
    struct conn *c = calloc(1, sizeof *c + ops->state_size);
    if (!c)
        return NULL;
    subscriber_init(&c->sub, id, c);
    c->eng = eng;
    c->ops = ops;
    c->state = CONN_OPEN;
    c->fd = -1;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    c->connected_ms = now_ms;
    c->last_request_ms = now_ms;
    c->last_poll_ms = -1;
    if (ops->init)
        ops->init(c);
    return c;
}

void conn_free(struct conn *c, struct router *r)
{
    if (c->ops->release)
        c->ops->release(c);
    router_remove_subscriber(r, &c->sub);
    free(c);
}

size_t conn_counted_bytes(const struct conn *c)
{
    size_t n = c->sub.queue.bytes + (size_t)c->sub.subs.count * CONN_SUB_COST;
    if (c->in)
        n += evbuffer_get_length(c->in);
    if (c->out)
        n += evbuffer_get_length(c->out);
    return n;
}
