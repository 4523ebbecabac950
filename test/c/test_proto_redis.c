/* test_proto_redis.c - unit tests for the Redis protocol (proto_redis.c,
 * redis_pubsub.c) and its meeting with Kraken's on one engine: byte streams
 * in, exact reply bytes out, no sockets.  Byte-for-byte agreement with a real
 * redis-server is test/redis_diff_test.py's job; these pin the frames, the
 * cross-protocol delivery and the rules that have no Redis counterpart. */
#include "test_util.h"
#include "test_conn.h"

#include <time.h>

#include "conn.h"
#include "engine.h"
#include "log.h"
#include "proto_kraken.h"
#include "proto_redis.h"

struct fix {
    struct engine eng;
    struct conn *r1, *r2, *k1;
};

static void quiet_sink(enum log_level level, const char *msg, size_t len)
{
    (void)level;
    (void)msg;
    (void)len;
}

static void fix_destroy(void *p)
{
    struct fix *f = p;
    tc_close(f->r1);
    tc_close(f->r2);
    tc_close(f->k1);
    engine_free(&f->eng);
    free(f);
}

static struct fix *fix_new_pw(const char *password)
{
    struct fix *f = calloc(1, sizeof *f);
    assert_non_null(f);
    log_set_sink(quiet_sink);
    struct engine_config cfg;
    engine_config_defaults(&cfg);
    snprintf(cfg.redis_password, sizeof cfg.redis_password, "%s", password);
    assert_int_equal(engine_init(&f->eng, &cfg, NULL, NULL, NULL), 0);
    f->eng.router.start_time -= 100;
    f->r1 = tc_open(&f->eng, &proto_redis);
    f->r2 = tc_open(&f->eng, &proto_redis);
    f->k1 = tc_open(&f->eng, &proto_kraken);
    tu_defer(fix_destroy, f);
    return f;
}

static struct fix *fix_new(void)
{
    return fix_new_pw("");
}

/* Sends bytes, runs the protocol and what the write event would (deliver). */
static enum conn_status send_s(struct conn *c, const char *s)
{
    evbuffer_add(c->in, s, strlen(s));
    enum conn_status st = c->ops->process(c);
    if (c->sub.push && c->sub.queue.count)
        c->ops->deliver(c);
    return st;
}

static void deliver(struct conn *c)
{
    if (c->sub.push && c->sub.queue.count)
        c->ops->deliver(c);
}

#define expect_out(c, lit) assert_evbuffer_equal((c)->out, B(lit)), evbuffer_drain((c)->out, evbuffer_get_length((c)->out))

static void test_subscribe_publish_frames(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    assert_int_equal(send_s(f->r1, "SUBSCRIBE a b a\r\n"), CONN_OK);
    expect_out(f->r1, "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
                      "*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
                      "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:2\r\n");
    send_s(f->r2, "*3\r\n$7\r\nPUBLISH\r\n$1\r\na\r\n$5\r\nhello\r\n");
    expect_out(f->r2, ":1\r\n");
    deliver(f->r1);
    expect_out(f->r1, "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\nhello\r\n");
    /* RESP2 subscribed mode refuses other commands, with Redis's words */
    send_s(f->r1, "ECHO x\r\n");
    expect_out(f->r1, "-ERR Can't execute 'echo': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / "
                      "PING / QUIT / RESET are allowed in this context\r\n");
    send_s(f->r1, "PING\r\n");
    expect_out(f->r1, "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    send_s(f->r1, "UNSUBSCRIBE b\r\nUNSUBSCRIBE\r\nUNSUBSCRIBE\r\nPING\r\n");
    expect_out(f->r1, "*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:1\r\n"
                      "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n"
                      "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n+PONG\r\n");
}

/* A Kraken entry on `a b` reaches a Redis client holding both as one message
 * per channel, in the publisher's order; a pattern as one pmessage per match. */
static void test_kraken_publish_to_redis(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    send_s(f->r1, "SUBSCRIBE b a\r\n");
    send_s(f->r2, "PSUBSCRIBE [ab] z*\r\n");
    evbuffer_drain(f->r1->out, evbuffer_get_length(f->r1->out));
    evbuffer_drain(f->r2->out, evbuffer_get_length(f->r2->out));
    send_s(f->k1, "set publish 0 0 21\r\nMESSAGE a b c 2\r\nhi\r\n\r\n");
    expect_out(f->k1, "STORED\r\n");
    deliver(f->r1);
    deliver(f->r2);
    expect_out(f->r1, "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n"
                      "*3\r\n$7\r\nmessage\r\n$1\r\nb\r\n$2\r\nhi\r\n");
    expect_out(f->r2, "*4\r\n$8\r\npmessage\r\n$4\r\n[ab]\r\n$1\r\na\r\n$2\r\nhi\r\n"
                      "*4\r\n$8\r\npmessage\r\n$4\r\n[ab]\r\n$1\r\nb\r\n$2\r\nhi\r\n");
}

/* A Redis PUBLISH reaches a Kraken poller, counts it, and is retained. */
static void test_redis_publish_to_kraken(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    send_s(f->k1, "set subscribe 0 0 2\r\nch\r\n");
    expect_out(f->k1, "STORED\r\n");
    send_s(f->r1, "SUBSCRIBE ch\r\n");
    evbuffer_drain(f->r1->out, evbuffer_get_length(f->r1->out));
    send_s(f->r2, "PUBLISH ch hello\r\n");
    expect_out(f->r2, ":2\r\n");
    send_s(f->k1, "get messages\r\n");
    expect_out(f->k1, "VALUE messages 0 19\r\nMESSAGE ch 5\r\nhello\r\nEND\r\n");
    assert_int_equal(router_retained_entries(&f->eng.router), 1);
    /* a retro_subscribe sees it */
    struct conn *k2 = tc_open(&f->eng, &proto_kraken);
    char req[80];
    snprintf(req, sizeof req, "set retro_subscribe 0 0 %d\r\n%ld\r\nch\r\n",
             (int)snprintf(NULL, 0, "%ld\r\nch", (long)time(NULL) - 50),
             (long)time(NULL) - 50);
    send_s(k2, req);
    send_s(k2, "get messages\r\n");
    expect_out(k2, "STORED\r\nVALUE messages 0 19\r\nMESSAGE ch 5\r\nhello\r\nEND\r\n");
    tc_close(k2);
}

static void test_resp3_push_frames(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    send_s(f->r1, "HELLO 3\r\n");
    assert_true(bytes_contain(evbuffer_pullup(f->r1->out, -1), evbuffer_get_length(f->r1->out),
                              "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"));
    evbuffer_drain(f->r1->out, evbuffer_get_length(f->r1->out));
    send_s(f->r1, "SUBSCRIBE x\r\n");
    expect_out(f->r1, ">3\r\n$9\r\nsubscribe\r\n$1\r\nx\r\n:1\r\n");
    /* RESP3: any command while subscribed, and its own publish comes back,
     * before the reply (Redis delivers while publishing) */
    send_s(f->r1, "PUBLISH x y\r\n");
    deliver(f->r1);
    expect_out(f->r1, ">3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$1\r\ny\r\n:1\r\n");
}

static void test_shard_channels_apart(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    send_s(f->r1, "SSUBSCRIBE s\r\n");
    expect_out(f->r1, "*3\r\n$10\r\nssubscribe\r\n$1\r\ns\r\n:1\r\n");
    send_s(f->r2, "PUBLISH s a\r\nSPUBLISH s b\r\n");
    expect_out(f->r2, ":0\r\n:1\r\n");
    deliver(f->r1);
    expect_out(f->r1, "*3\r\n$8\r\nsmessage\r\n$1\r\ns\r\n$1\r\nb\r\n");
    send_s(f->r2, "PUBSUB CHANNELS\r\nPUBSUB SHARDCHANNELS\r\n");
    expect_out(f->r2, "*0\r\n*1\r\n$1\r\ns\r\n");
}

/* Messages published before a command are written before its reply. */
static void test_messages_before_reply(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    send_s(f->r1, "SUBSCRIBE a\r\n");
    evbuffer_drain(f->r1->out, evbuffer_get_length(f->r1->out));
    send_s(f->r2, "PUBLISH a 1\r\n");
    /* no deliver yet: the UNSUBSCRIBE comes first on the wire ... */
    evbuffer_add(f->r1->in, "UNSUBSCRIBE a\r\n", 15);
    f->r1->ops->process(f->r1);
    /* ... but the message published before it is written before its reply */
    expect_out(f->r1, "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\n1\r\n"
                      "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n");
}

static void test_auth(void **state)
{
    (void)state;
    struct fix *f = fix_new_pw("sekret");
    send_s(f->r1, "SUBSCRIBE a\r\n");
    expect_out(f->r1, "-NOAUTH Authentication required.\r\n");
    send_s(f->r1, "AUTH wrong\r\n");
    expect_out(f->r1, "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    send_s(f->r1, "AUTH sekret\r\nPING\r\n");
    expect_out(f->r1, "+OK\r\n+PONG\r\n");
    send_s(f->r2, "HELLO 3 AUTH default sekret\r\n");
    assert_true(evbuffer_get_length(f->r2->out) > 0);
    assert_int_equal(*(char *)evbuffer_pullup(f->r2->out, 1), '%');
}

static void test_retro(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    send_s(f->r1, "KRAKEN.REGISTER\r\n");
    expect_out(f->r1, "+OK\r\n");
    send_s(f->k1, "set publish 0 0 18\r\nMESSAGE rt 2\r\nhi\r\n\r\n");
    send_s(f->r1, "SUBSCRIBE rt\r\n");
    expect_out(f->r1, "*3\r\n$9\r\nsubscribe\r\n$2\r\nrt\r\n:1\r\n"
                      "*3\r\n$7\r\nmessage\r\n$2\r\nrt\r\n$2\r\nhi\r\n");
    /* by time, from before the server's start: subscribed, then NOTFOUND */
    send_s(f->r2, "KRAKEN.RETROSUBSCRIBE 1 rt other\r\n");
    expect_out(f->r2, "*3\r\n$9\r\nsubscribe\r\n$2\r\nrt\r\n:1\r\n"
                      "*3\r\n$9\r\nsubscribe\r\n$5\r\nother\r\n:2\r\n"
                      "-NOTFOUND horizon older than retained messages\r\n");
    char req[64];
    snprintf(req, sizeof req, "KRAKEN.RETROSUBSCRIBE %ld rt\r\n", (long)time(NULL) - 10);
    send_s(f->r2, req);
    expect_out(f->r2, "*3\r\n$9\r\nsubscribe\r\n$2\r\nrt\r\n:2\r\n"
                      "*3\r\n$7\r\nmessage\r\n$2\r\nrt\r\n$2\r\nhi\r\n");
}

static void test_errors_close(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    assert_int_equal(send_s(f->r1, "PING\r\n*1\r\n$-5\r\n"), CONN_CLOSE);
    expect_out(f->r1, "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n");
    send_s(f->r2, "FOO bar\r\nSUBSCRIBE\r\nQUIT\r\nPING\r\n");
    expect_out(f->r2, "-ERR unknown command 'FOO', with args beginning with: 'bar' \r\n"
                      "-ERR wrong number of arguments for 'subscribe' command\r\n+OK\r\n");
    assert_true(conn_is_closing(f->r2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        tu_test(test_subscribe_publish_frames),
        tu_test(test_kraken_publish_to_redis),
        tu_test(test_redis_publish_to_kraken),
        tu_test(test_resp3_push_frames),
        tu_test(test_shard_channels_apart),
        tu_test(test_messages_before_reply),
        tu_test(test_auth),
        tu_test(test_retro),
        tu_test(test_errors_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
