/* test_conn.h - a connection of an engine under test without a socket: the
 * test writes its input and reads its output, two evbuffers. */
#ifndef KRAKEN_TEST_CONN_H
#define KRAKEN_TEST_CONN_H

#include "conn.h"
#include "engine.h"

static inline struct conn *tc_open(struct engine *eng, const struct proto_ops *ops)
{
    struct conn *c = conn_new(eng, ops, ++eng->next_id, "test", engine_now_ms());
    assert_non_null(c);
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    return c;
}

static inline void tc_close(struct conn *c)
{
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    conn_free(c, &c->eng->router);
}

#endif
