/* conn.c - allocation and release of connections; see conn.h. */
#include "conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

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

void conn_free(struct conn *c)
{
    if (c->ops->release)
        c->ops->release(c);
    router_remove_subscriber(&c->eng->router, &c->sub);
    free(c);
}
