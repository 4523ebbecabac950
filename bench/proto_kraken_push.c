/*
 * proto_kraken_push.c - Kraken push mode (issue 10, item 4), the driver of the "kraken-push"
 * target.  A subscriber sends `set push 0 0 2\r\non\r\n` (reply STORED), then subscribes as
 * usual; from then on, whenever its queue is non-empty, the server writes unprompted exactly
 * what `get messages` would return (`VALUE messages 0 <n>` + MESSAGE entries + `END`), never
 * inside one of its replies.  So the subscriber never polls: every VALUE block is a delivery,
 * every other line the reply to its oldest request.  Publishers are plain Kraken clients.
 * An engine without push mode answers `set push` with an error: servers.c probes for that and
 * skips the target ("not supported by this engine").
 */
#include "kb.h"

static void push_open(conn_t *c)
{
    if (c->sub_id >= 0 && c->ntopics > 0) {
        char hdr[64];
        size_t hl = fmt_set(hdr, "push", 2);
        buf_append(&c->wb, hdr, hl);
        buf_append(&c->wb, "on\r\n", 4);
        push_kind(c, K_PUSH);
        kraken_topics(c, K_SUB, c->topics, c->ntopics);
        conn_flush(c);
    } else {
        conn_ready(c);
    }
}

static void push_poll(conn_t *c)
{
    (void)c;
    die("internal: kraken-push subscribers do not poll");
}

static void push_parse(conn_t *c)
{
    kraken_parse(c, 1);
}

const proto_t proto_kraken_push = {
    .name = "kraken-push",
    .push = 1,
    .per_channel = 0,
    .open = push_open,
    .topics = kraken_topics,
    .publish = kraken_publish,
    .poll = push_poll,
    .parse = push_parse,
    .quit = kraken_quit,
};
