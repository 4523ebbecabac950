/* test_proto_kraken.c - unit tests for Kraken's text protocol
 * (c_src/proto_kraken.c): whole byte streams in, exact reply bytes out, no
 * sockets.
 *
 * An engine is set up without hooks; connections are not linked into the
 * engine's list (only server.c does that), so the per-connection figures of
 * `stats` stay at zero. */
#include "test_util.h"

#include <time.h>

#include "entry.h"
#include "log.h"
#include "retain.h"
#include "router.h"
#include "conn.h"
#include "engine.h"
#include "proto_kraken.h"

#define VERSION_LINE "VERSION " KRAKEN_VERSION "\r\n"
#define NCLIENTS 6

struct client {
    struct conn *s;
    struct evbuffer *in, *out;
};

struct fix {
    struct engine srv;
    struct client c[NCLIENTS];
};

static int log_count;

static void quiet_sink(enum log_level level, const char *msg, size_t len)
{
    (void)level;
    (void)msg;
    (void)len;
    log_count++;
}

static void fix_destroy(void *p);

static void client_open(struct fix *f, struct client *c)
{
    c->s = conn_new(&f->srv, &proto_kraken, ++f->srv.next_id, "test", engine_now_ms());
    assert_non_null(c->s);
    c->in = c->s->in = evbuffer_new();
    c->out = c->s->out = evbuffer_new();
}

static void client_close(struct client *c)
{
    conn_free(c->s, &c->s->eng->router);
    evbuffer_free(c->in);
    evbuffer_free(c->out);
}

/* start_offset: the router's start time relative to now (seconds). */
static struct fix *fix_new_cfg(uint32_t shards, uint32_t retain, int64_t start_offset)
{
    struct fix *f = calloc(1, sizeof *f);
    assert_non_null(f);
    log_set_sink(quiet_sink);
    struct engine_config cfg;
    engine_config_defaults(&cfg);
    cfg.num_shards = shards;
    cfg.retain_per_shard = retain;
    cfg.retain_bytes_per_shard = 0;
    assert_int_equal(engine_init(&f->srv, &cfg, NULL, NULL, NULL), 0);
    f->srv.router.start_time = f->srv.router.last_time = (int64_t)time(NULL) + start_offset;
    for (int i = 0; i < NCLIENTS; i++)
        client_open(f, &f->c[i]);
    tu_defer(fix_destroy, f);
    return f;
}

static struct fix *fix_new(void)
{
    return fix_new_cfg(4, 10000, -100);
}

static void fix_destroy(void *p)
{
    struct fix *f = p;
    for (int i = 0; i < NCLIENTS; i++)
        client_close(&f->c[i]);
    engine_free(&f->srv);
    free(f);
}

static void fix_free(struct fix *f)
{
    tu_undefer(f);
    fix_destroy(f);
}

/* Appends bytes to the client's input and runs the session. */
static enum conn_status send_n(struct client *c, const void *p, size_t len)
{
    evbuffer_add(c->in, p, len);
    return proto_kraken.process(c->s);
}

static enum conn_status send_s(struct client *c, const char *str)
{
    return send_n(c, str, strlen(str));
}

/* Sends a whole evbuffer (emptied). */
static enum conn_status send_ev(struct client *c, struct evbuffer *b)
{
    evbuffer_add_buffer(c->in, b);
    return proto_kraken.process(c->s);
}

/* Compares everything the client was sent since the last check, then forgets it. */
#define expect_out(c, ...)                                    \
    do {                                                      \
        assert_evbuffer_equal((c)->out, __VA_ARGS__);         \
        evbuffer_drain((c)->out, evbuffer_get_length((c)->out)); \
    } while (0)

static void expect_out_ev(struct client *c, struct evbuffer *exp)
{
    assert_evbuffers_equal(c->out, exp);
    evbuffer_drain(c->out, evbuffer_get_length(c->out));
    evbuffer_drain(exp, evbuffer_get_length(exp));
}

/* `set <cmd> 0 0 <n>[ noreply]` of a string; expects `reply` and `state`. */
static void set_expect(struct client *c, const char *cmd, const char *data, bool noreply,
                       const char *reply, int state)
{
    struct evbuffer *b = evbuffer_new();
    set_request(b, cmd, data, strlen(data), noreply);
    assert_int_equal(send_ev(c, b), state);
    evbuffer_free(b);
    expect_out(c, reply, strlen(reply));
}

/* The same, expecting CONN_OK. */
static void do_set(struct client *c, const char *cmd, const char *data, bool noreply,
                   const char *reply)
{
    set_expect(c, cmd, data, noreply, reply, CONN_OK);
}

/* As do_set, for a request refused with an error: the reply is sent (with
 * noreply too) and the connection closes (docs/protocol.md, "Errors"). */
static void do_set_closes(struct client *c, const char *cmd, const char *data, bool noreply,
                          const char *reply)
{
    set_expect(c, cmd, data, noreply, reply, CONN_CLOSE);
}

/* Publishes one entry (topics, payload) and expects STORED. */
static void publish1(struct client *c, const char *topics, const char *payload)
{
    struct evbuffer *blk = evbuffer_new(), *b = evbuffer_new();
    add_entry(blk, topics, payload, strlen(payload));
    size_t n = evbuffer_get_length(blk);
    char *data = evbuffer_take(blk, NULL);
    set_request(b, "publish", data, n, false);
    assert_int_equal(send_ev(c, b), CONN_OK);
    expect_out(c, B("STORED\r\n"));
    free(data);
    evbuffer_free(b);
    evbuffer_free(blk);
}

/* `get messages` expecting the reply for the given block ("" = END). */
static void expect_messages(struct client *c, const char *block, size_t len)
{
    assert_int_equal(send_s(c, "get messages\r\n"), CONN_OK);
    struct evbuffer *exp = evbuffer_new();
    if (len)
        value_reply(exp, block, len);
    else
        evbuffer_add(exp, "END\r\n", 5);
    expect_out_ev(c, exp);
    evbuffer_free(exp);
}

#define expect_msgs(c, lit) expect_messages((c), B(lit))

/* ---- simple requests ---- */

static void test_version_get_empty(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0];
    assert_int_equal(send_s(a, "version\r\n"), CONN_OK);
    expect_out(a, B(VERSION_LINE));
    assert_int_equal(send_s(a, "version\n"), CONN_OK);
    expect_out(a, B(VERSION_LINE));
    assert_int_equal(send_s(a, "get messages\r\n"), CONN_OK);
    expect_out(a, B("END\r\n"));
    assert_int_equal(send_s(a, "get messages\n"), CONN_OK);
    expect_out(a, B("END\r\n"));
    assert_int_equal(evbuffer_get_length(a->in), 0);
    assert_true(f->srv.stats.requests == 4);
    fix_free(f);
}

static void test_quit(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0];
    assert_int_equal(send_s(a, "version\r\nquit\r\nversion\r\n"), CONN_CLOSE);
    expect_out(a, B(VERSION_LINE));
    /* once closing, nothing more is read */
    assert_int_equal(send_s(a, "version\r\n"), CONN_CLOSE);
    expect_out(a, B(""));
    fix_free(f);
}

static void test_publish_get_exact(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1];
    assert_int_equal(send_s(a, "set subscribe 0 0 2\r\nt1\r\n"), CONN_OK);
    expect_out(a, B("STORED\r\n"));
    assert_int_equal(send_s(b, "set publish 0 0 18\r\nMESSAGE t1 2\r\nhi\r\n\r\n"), CONN_OK);
    expect_out(b, B("STORED\r\n"));
    assert_int_equal(send_s(a, "get messages\r\n"), CONN_OK);
    expect_out(a, B("VALUE messages 0 16\r\nMESSAGE t1 2\r\nhi\r\nEND\r\n"));
    assert_int_equal(send_s(a, "get messages\r\n"), CONN_OK);
    expect_out(a, B("END\r\n"));
    /* the publisher does not receive its own message */
    expect_msgs(b, "");
    assert_true(f->srv.stats.messages_delivered == 1);
    fix_free(f);
}

static void test_pipelining(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1];
    assert_int_equal(send_s(a, "set subscribe 0 0 5\r\nt1 t2\r\n"
                               "version\r\n"
                               "get messages\r\n"
                               "set unsubscribe 0 0 2\r\nt2\r\n"
                               "stats\r\n"),
                     CONN_OK);
    size_t len;
    char *got = evbuffer_take(a->out, &len);
    const char head[] = "STORED\r\n" VERSION_LINE "END\r\nSTORED\r\nSTAT pid ";
    assert_true(len > sizeof head);
    assert_bytes_equal(got, sizeof head - 1, head, sizeof head - 1);
    assert_bytes_equal(got + len - 5, 5, "END\r\n", 5);
    free(got);
    assert_int_equal(send_s(b, "set publish 0 0 36\r\n"
                               "MESSAGE t1 2\r\nm1\r\nMESSAGE t2 2\r\nm2\r\n\r\n"
                               "get messages\r\n"
                               "set publish 0 0 21\r\nMESSAGE t2 t1 2\r\nm3\r\n\r\n"),
                     CONN_OK);
    expect_out(b, B("STORED\r\nEND\r\nSTORED\r\n"));
    expect_msgs(a, "MESSAGE t1 2\r\nm1\r\nMESSAGE t1 2\r\nm3\r\n");
    fix_free(f);
}

static void test_noreply(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1], *c = &f->c[2];
    do_set(a, "subscribe", "t1 t2", true, "");
    do_set(b, "register", "", true, "");
    do_set(b, "publish", "MESSAGE t1 1\r\nx\r\n", true, "");
    do_set(b, "publish", "", true, "");
    do_set(a, "unsubscribe", "t2", true, "");
    do_set(c, "retro_subscribe", "1\r\nt1", true, ""); /* NOT_FOUND, silenced */
    assert_int_equal(f->srv.router.stats.subscriptions, 2);
    assert_int_equal(f->srv.router.stats.published, 1);
    expect_msgs(a, "MESSAGE t1 1\r\nx\r\n");
    do_set(b, "publish", "MESSAGE t2 1\r\ny\r\n", true, "");
    expect_msgs(a, "");
    fix_free(f);
}

/* ---- errors ---- */

struct err_case {
    const char *in;
    size_t len;
    const char *reply; /* exact, or NULL: any CLIENT_ERROR line */
};

static void check_client_error_line(const char *p, size_t len)
{
    if (len < 16 || memcmp(p, "CLIENT_ERROR ", 13) != 0 || memcmp(p + len - 2, "\r\n", 2) != 0 ||
        memchr(p, '\n', len - 1)) {
        tu_print_escaped("reply", p, len);
        fail_msg("expected one CLIENT_ERROR line");
    }
}

static void test_errors_close(void **state)
{
    (void)state;
    static const struct err_case cases[] = {
        {B("foo\r\n"), "ERROR\r\n"},
        {B("get foo\r\n"), "ERROR\r\n"},
        {B("get messages please\r\n"), "ERROR\r\n"},
        {B("\r\n"), "ERROR\r\n"},
        {B("set foo 0 0 1\r\nx\r\n"), "ERROR\r\n"},
        {B("set publish 0 0\r\n"), NULL},
        {B("set publish x 0 0\r\n\r\n"), NULL},
        {B("set publish 0 x 0\r\n\r\n"), NULL},
        {B("set publish 0 0 x\r\n\r\n"), NULL},
        {B("set publish 0 0 -1\r\n\r\n"), NULL},
        {B("set publish 0 0 0 yesreply\r\n\r\n"), NULL},
        {B("set publish 99999999999999999999999 0 0\r\n\r\n"), NULL},
        {B("set publish 0 0 99999999999999999999999\r\n"), NULL},
        {B("set publish 0 0 2\r\nhiX\r\n"), "CLIENT_ERROR bad data chunk\r\n"},
        {B("set publish 0 0 2000000000\r\n"), "CLIENT_ERROR request too large\r\n"},
        {B("set subscribe 0 0 16777216\r\n"), "CLIENT_ERROR request too large\r\n"},
        {B("set retro_subscribe 0 0 6\r\nabc\r\nt\r\n"), "CLIENT_ERROR bad horizon\r\n"},
        {B("set retro_subscribe 0 0 5\r\n-5\r\nt\r\n"), "CLIENT_ERROR bad horizon\r\n"},
        {B("set retro_subscribe 0 0 6 noreply\r\nabc\r\nt\r\n"), "CLIENT_ERROR bad horizon\r\n"},
        {B("set publish 0 0 5\r\nhello\r\n"), NULL},
        {B("set publish 0 0 5 noreply\r\nhello\r\n"), NULL},
        {B("set publish 0 0 14\r\nMESSAGE 1\r\nx\r\n\r\n"), NULL},
        {B("set publish 0 0 16\r\nMESSAGE t 5\r\nx\r\n\r\n"), NULL},
        {B("set publish 0 0 14\r\nMESSAGE t 1\r\nx\r\n"), NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fix *f = fix_new();
        struct client *a = &f->c[0], *b = &f->c[1], *p = &f->c[2];
        do_set(a, "subscribe", "t", false, "STORED\r\n");
        /* the bad request, then a good one that must not be answered */
        evbuffer_add(b->in, cases[i].in, cases[i].len);
        enum conn_status st = send_s(b, "version\r\n");
        size_t len;
        char *got = evbuffer_take(b->out, &len);
        if (st != CONN_CLOSE)
            tu_print_escaped("request", cases[i].in, cases[i].len);
        assert_int_equal(st, CONN_CLOSE);
        if (cases[i].reply)
            assert_bytes_equal(got, len, cases[i].reply, strlen(cases[i].reply));
        else
            check_client_error_line(got, len);
        free(got);
        assert_int_equal(send_s(b, "version\r\n"), CONN_CLOSE);
        expect_out(b, B(""));
        /* nothing else is disturbed: nothing published, others still work */
        assert_int_equal(f->srv.router.stats.published, 0);
        expect_msgs(a, "");
        publish1(p, "t", "ok");
        expect_msgs(a, "MESSAGE t 2\r\nok\r\n");
        fix_free(f);
    }
}

/* Regression: errors found while executing a request (bad retro horizon,
 * malformed publish entry) close the connection like parser errors and must be
 * counted in `STAT disconnects_error` and logged like them.
 * Inputs: "set retro_subscribe 0 0 6\r\nabc\r\nt\r\n" and
 * "set publish 0 0 5\r\nhello\r\n". */
static void test_execute_errors_are_counted(void **state)
{
    (void)state;
    static const struct err_case cases[] = {
        {B("foo\r\n"), "ERROR\r\n"}, /* parser error: counted (control) */
        {B("set retro_subscribe 0 0 6\r\nabc\r\nt\r\n"), "CLIENT_ERROR bad horizon\r\n"},
        {B("set publish 0 0 5\r\nhello\r\n"), NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fix *f = fix_new();
        struct client *b = &f->c[1];
        int logs = log_count;
        assert_int_equal(send_n(b, cases[i].in, cases[i].len), CONN_CLOSE);
        size_t len;
        char *got = evbuffer_take(b->out, &len);
        if (cases[i].reply)
            assert_bytes_equal(got, len, cases[i].reply, strlen(cases[i].reply));
        else
            check_client_error_line(got, len);
        free(got);
        if (f->srv.stats.disconnects_error != 1)
            tu_print_escaped("not counted in disconnects_error", cases[i].in, cases[i].len);
        assert_true(f->srv.stats.disconnects_error == 1);
        assert_true(log_count > logs);
        fix_free(f);
    }
}

/* An error after good requests: those are answered, then the error, then nothing. */
static void test_error_after_pipelined_requests(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0];
    assert_int_equal(send_s(a, "version\r\nset subscribe 0 0 1\r\nt\r\nbogus\r\nversion\r\n"),
                     CONN_CLOSE);
    expect_out(a, B(VERSION_LINE "STORED\r\nERROR\r\n"));
    assert_int_equal(f->srv.router.stats.subscriptions, 1);
    fix_free(f);
}

/* A command line longer than PROTO_MAX_LINE with no newline. */
static void test_line_too_long(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1];
    char *junk = malloc(PROTO_MAX_LINE + 1);
    memset(junk, 'x', PROTO_MAX_LINE + 1);
    assert_int_equal(send_n(a, junk, PROTO_MAX_LINE), CONN_OK);
    expect_out(a, B(""));
    assert_int_equal(send_n(a, junk, 1), CONN_CLOSE);
    expect_out(a, B("CLIENT_ERROR request too large\r\n"));
    /* in one go, longer still */
    evbuffer_add(b->in, junk, PROTO_MAX_LINE + 1);
    assert_int_equal(send_n(b, junk, PROTO_MAX_LINE + 1), CONN_CLOSE);
    expect_out(b, B("CLIENT_ERROR request too large\r\n"));
    free(junk);
    fix_free(f);
}

/* publish validates the whole block before publishing anything. */
static void test_publish_atomic(void **state)
{
    (void)state;
    static const struct {
        const char *block;
        size_t len;
    } bad[] = {
        {B("MESSAGE t1 1\r\na\r\nMESSAGE 1\r\nb\r\n")},
        {B("MESSAGE t1 1\r\na\r\nMESSAGE t1 5\r\nb\r\n")},
        {B("MESSAGE t1 1\r\na\r\nMESSAGE t1 1\r\nb\r\nGARBAGE")},
        {B("MESSAGE t1 1\r\na\r\nMESSAGE t1 x\r\nb\r\n")},
        {B("MESSAGE t1 1\r\na\r\n\r\n")},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fix *f = fix_new();
        struct client *a = &f->c[0], *b = &f->c[1];
        do_set(a, "subscribe", "t1", false, "STORED\r\n");
        struct evbuffer *req = evbuffer_new();
        set_request(req, "publish", bad[i].block, bad[i].len, i % 2);
        assert_int_equal(send_ev(b, req), CONN_CLOSE);
        evbuffer_free(req);
        size_t len;
        char *got = evbuffer_take(b->out, &len);
        check_client_error_line(got, len);
        free(got);
        assert_int_equal(f->srv.router.stats.published, 0);
        assert_int_equal(f->srv.router.shards[0].count + f->srv.router.shards[1].count +
                             f->srv.router.shards[2].count + f->srv.router.shards[3].count,
                         0);
        expect_msgs(a, "");
        fix_free(f);
    }
}

/* ---- subscriptions and delivery ---- */

static void test_multi_entry_publish(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1], *c = &f->c[2];
    do_set(a, "subscribe", "t1 t2", false, "STORED\r\n");
    do_set(c, "subscribe", "t2", false, "STORED\r\n");
    do_set(b, "publish",
           "MESSAGE t1 1\r\na\r\nMESSAGE t2 t1 0\r\n\r\nMESSAGE t3 t2 4\r\nx\r\ny\r\n"
           "MESSAGE t1 3\r\nlst\r\n",
           false, "STORED\r\n");
    assert_int_equal(f->srv.router.stats.published, 4);
    expect_msgs(a, "MESSAGE t1 1\r\na\r\nMESSAGE t2 t1 0\r\n\r\nMESSAGE t2 4\r\nx\r\ny\r\n"
                   "MESSAGE t1 3\r\nlst\r\n");
    expect_msgs(c, "MESSAGE t2 0\r\n\r\nMESSAGE t2 4\r\nx\r\ny\r\n");
    /* an empty block publishes nothing and still says STORED */
    do_set(b, "publish", "", false, "STORED\r\n");
    assert_int_equal(f->srv.router.stats.published, 4);
    expect_msgs(a, "");
    fix_free(f);
}

static void test_unsubscribe_and_tokens(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1];
    /* empty tokens are ignored */
    do_set(a, "subscribe", "  t1   t2 t3 ", false, "STORED\r\n");
    assert_int_equal(f->srv.router.stats.subscriptions, 3);
    assert_int_equal(topic_index_count(&f->srv.router.topics), 3);
    /* unknown topics are ignored */
    do_set(a, "unsubscribe", "t2 nope  t3", false, "STORED\r\n");
    assert_int_equal(f->srv.router.stats.subscriptions, 1);
    assert_null(router_find_topic(&f->srv.router, B("nope")));
    assert_null(router_find_topic(&f->srv.router, B("t2")));
    publish1(b, "t2", "no");
    publish1(b, "t3 t1", "yes");
    expect_msgs(a, "MESSAGE t1 3\r\nyes\r\n");
    do_set(a, "subscribe", "", false, "STORED\r\n");
    do_set(a, "unsubscribe", "", false, "STORED\r\n");
    assert_int_equal(f->srv.router.stats.subscriptions, 1);
    fix_free(f);
}

/* Topic names may contain NUL; payloads may contain anything. */
static void test_binary_names_and_payloads(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1];
    assert_int_equal(send_n(a, B("set subscribe 0 0 5\r\na\0b c\r\n")), CONN_OK);
    expect_out(a, B("STORED\r\n"));
    assert_int_equal(send_n(b, B("set publish 0 0 39\r\n"
                                 "MESSAGE a\0b 6\r\n\r\n\0\r\n\0\r\n"
                                 "MESSAGE a 1\r\nz\r\n\r\n")),
                     CONN_OK);
    expect_out(b, B("STORED\r\n"));
    expect_msgs(a, "MESSAGE a\0b 6\r\n\r\n\0\r\n\0\r\n");
    fix_free(f);
}

/* ---- register horizon ---- */

static void test_register_same_second(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1];
    publish1(b, "t", "before");
    do_set(a, "register", "", false, "STORED\r\n");
    publish1(b, "t", "after"); /* almost surely the same second as the register */
    publish1(b, "u", "elsewhere");
    publish1(a, "t", "own");
    do_set(a, "subscribe", "t", false, "STORED\r\n");
    expect_msgs(a, "MESSAGE t 5\r\nafter\r\n");
    /* live from now on */
    publish1(b, "t", "live");
    expect_msgs(a, "MESSAGE t 4\r\nlive\r\n");
    fix_free(f);
}

/* A second register replaces the first; the first subscribe clears it. */
static void test_register_replaced_and_cleared(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1];
    do_set(a, "register", "", false, "STORED\r\n");
    publish1(b, "t1", "m1");
    do_set(a, "register", "", false, "STORED\r\n");
    publish1(b, "t1", "m2");
    publish1(b, "t2", "m3");
    do_set(a, "subscribe", "t1", false, "STORED\r\n");
    expect_msgs(a, "MESSAGE t1 2\r\nm2\r\n");
    /* horizon used up: a later subscribe is a plain one */
    do_set(a, "subscribe", "t2", false, "STORED\r\n");
    expect_msgs(a, "");
    fix_free(f);
}

/* The horizon is older than what is retained: NOT_FOUND, subscribed anyway. */
static void test_register_not_found(void **state)
{
    (void)state;
    struct fix *f = fix_new_cfg(1, 2, -100);
    struct client *a = &f->c[0], *b = &f->c[1];
    do_set(a, "register", "", false, "STORED\r\n");
    publish1(b, "t", "1");
    publish1(b, "t", "2");
    publish1(b, "t", "3");
    do_set(a, "subscribe", "t", false, "NOT_FOUND\r\n");
    expect_msgs(a, "");
    publish1(b, "t", "4");
    expect_msgs(a, "MESSAGE t 1\r\n4\r\n");
    /* retention still enough: STORED */
    do_set(a, "register", "", false, "STORED\r\n");
    publish1(b, "u", "5");
    do_set(a, "subscribe", "u", false, "STORED\r\n");
    expect_msgs(a, "MESSAGE u 1\r\n5\r\n");
    fix_free(f);
}

/* ---- retro_subscribe ---- */

static void test_retro_subscribe(void **state)
{
    (void)state;
    struct fix *f = fix_new(); /* started 100 s ago */
    struct client *a = &f->c[0], *b = &f->c[1], *c = &f->c[2], *d = &f->c[3];
    int64_t now = (int64_t)time(NULL);
    char data[64];
    publish1(b, "t", "m1");
    publish1(b, "u", "m2");
    publish1(b, "u t", "m3");
    snprintf(data, sizeof data, "%lld\r\nt", (long long)(now - 50));
    do_set(a, "retro_subscribe", data, false, "STORED\r\n");
    expect_msgs(a, "MESSAGE t 2\r\nm1\r\nMESSAGE t 2\r\nm3\r\n");
    /* before the server's start: NOT_FOUND, but subscribed */
    snprintf(data, sizeof data, "%lld\r\nt u", (long long)(now - 200));
    do_set(c, "retro_subscribe", data, false, "NOT_FOUND\r\n");
    expect_msgs(c, "");
    publish1(b, "t", "m4");
    expect_msgs(c, "MESSAGE t 2\r\nm4\r\n");
    expect_msgs(a, "MESSAGE t 2\r\nm4\r\n");
    /* a horizon in the future: nothing yet */
    snprintf(data, sizeof data, "%lld\nu", (long long)(now + 1000));
    do_set(d, "retro_subscribe", data, false, "STORED\r\n");
    expect_msgs(d, "");
    fix_free(f);
}

/* `set link_retro`: only from a peer (others: ERROR, as an unknown
 * command); a second's entries split into blocks of at most
 * max_request_bytes; an answer over max_client_queue_bytes is NOT_FOUND. */
static void test_link_retro_peer_only_bounded(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1], *c = &f->c[2];
    f->srv.cfg.max_request_bytes = 1024;
    char big[601], data[64];
    memset(big, 'x', 600);
    big[600] = 0;
    for (int i = 0; i < 3; i++)
        publish1(b, "t", big);
    snprintf(data, sizeof data, "%lld\r\nt", (long long)time(NULL) - 50);
    do_set_closes(a, "link_retro", data, false, "ERROR\r\n");
    client_close(a);
    client_open(f, a);
    do_set(a, "peer", "n1", true, "");
    struct evbuffer *req = evbuffer_new();
    set_request(req, "link_retro", data, strlen(data), false);
    assert_int_equal(send_ev(a, req), CONN_OK);
    size_t len;
    char *got = (char *)evbuffer_pullup(a->out, -1);
    len = evbuffer_get_length(a->out);
    int blocks = 0;
    for (char *p = got; (p = memmem(p, len - (size_t)(p - got), "VALUE retro ", 12)); p++) {
        char *sp = strchr(p + 12, ' ');
        assert_true(strtoull(sp + 1, NULL, 10) <= f->srv.cfg.max_request_bytes);
        blocks++;
    }
    assert_int_equal(blocks, 3);
    assert_memory_equal(got + len - 8, "STORED\r\n", 8);
    evbuffer_drain(a->out, len);
    f->srv.cfg.max_queue_bytes = 1024;
    do_set(c, "peer", "n2", true, "");
    do_set(c, "link_retro", data, false, "NOT_FOUND\r\n");
    evbuffer_free(req);
    fix_free(f);
}

/* `set link_entered`: only from a peer; answered with the entries that
 * entered the cluster here (entry.h: marked by the cluster at publish, set
 * by hand here), each listing only the requested topics it entered here at;
 * the link is not subscribed; NOT_FOUND when the retention lost entries
 * after the horizon. */
static void test_link_entered(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1];
    publish1(b, "t u", "m1");
    publish1(b, "t", "m2");
    publish1(b, "u t w", "m3");
    struct retain *sh = &f->srv.router.shards[router_find_topic(&f->srv.router, B("t"))->shard];
    for (uint32_t j = 0; j < sh->count; j++) {
        struct entry *e = retain_at(sh, j);
        const char *p = entry_payload(e);
        if (p[1] == '1') { /* m1: t and u entered here */
            entry_set_entered(e, 0);
            entry_set_entered(e, 1);
        } else if (p[1] == '3') { /* m3: u and w only */
            entry_set_entered(e, 0);
            entry_set_entered(e, 2);
        }
    }
    char data[64];
    long long now = (long long)time(NULL), start = (long long)f->srv.router.start_time;
    snprintf(data, sizeof data, "%lld %lld\r\nt w", now - 50, start);
    do_set_closes(a, "link_entered", data, false, "ERROR\r\n");
    client_close(a);
    client_open(f, a);
    do_set(a, "peer", "n1", true, "");
    char exp[128];
    int n = snprintf(exp, sizeof exp, "VALUE retro %lld 32\r\nMESSAGE t 2\r\nm1\r\n"
                     "MESSAGE w 2\r\nm3\r\nEND\r\nSTORED\r\n",
                     (long long)f->srv.router.last_time);
    do_set(a, "link_entered", data, false, exp);
    assert_true(n > 0);
    assert_int_equal(a->s->sub.subs.count, 0);
    /* a horizon before this engine's start: nothing entered here before */
    snprintf(data, sizeof data, "%lld %lld\r\nt w", start - 100, start + 5);
    do_set(a, "link_entered", data, false, exp);
    /* none entered here after the horizon: nothing */
    snprintf(data, sizeof data, "%lld %lld\r\nt", now + 100, start);
    do_set(a, "link_entered", data, false, "STORED\r\n");
    /* it owned them (as the node asking saw it) before this engine started:
     * what entered at the one before is gone */
    snprintf(data, sizeof data, "%lld %lld\r\nt", now - 50, start - 1);
    do_set(a, "link_entered", data, false, "NOT_FOUND\r\n");
    /* the horizon line must hold both seconds */
    snprintf(data, sizeof data, "%lld\r\nt", now - 50);
    do_set_closes(a, "link_entered", data, false, "CLIENT_ERROR bad data chunk\r\n");
    fix_free(f);
}

/* A child's relayed answer (cluster_relay.c): items gathered from several
 * sources (entries found here, the owners' answers, this node's own), each
 * listing only the topics of its source, are put in order by second (each
 * second's in their order) with one item per entry (the union of its
 * topics: never a topic twice), then written as VALUE retro blocks listing
 * only those topics (proto_ops.retro_answer). */
static void test_relayed_answer_items(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1];
    publish1(b, "t u", "m1");
    publish1(b, "u", "m2");
    publish1(b, "t u w", "m3");
    struct router *r = &f->srv.router;
    struct entry *m[3] = {NULL, NULL, NULL};
    for (uint32_t k = 0; k < r->cfg.num_shards; k++)
        for (uint32_t j = 0; j < r->shards[k].count; j++) {
            struct entry *e = retain_at(&r->shards[k], j);
            m[entry_payload(e)[1] - '1'] = e;
        }
    int64_t t0 = m[0]->time;
    m[2]->time = t0 + 1; /* a later second */
    /* m3's own part first (a source of the later second), then m1 found here
     * for t, m2 whole, m1 from an answer for u, m3 from an answer for t */
    struct qitem v[5];
    struct entry *e5[5] = {m[2], m[0], m[1], m[0], m[2]};
    uint32_t topic5[5] = {2, 0, QUEUE_MASK_TOPICS, 1, 0}; /* QUEUE_MASK_TOPICS: every topic */
    for (int i = 0; i < 5; i++) {
        qitem_init(&v[i], e5[i]);
        if (topic5[i] == QUEUE_MASK_TOPICS)
            v[i].m.mask = QUEUE_ALL;
        else
            assert_int_equal(qitem_add_topic(&v[i], topic5[i]), 0);
    }
    size_t n = 5;
    uint64_t base = r->epoch + 1;
    r->epoch += n + 1;
    assert_int_equal(qitems_by_second(v, &n, base), 0);
    assert_int_equal(n, 3);
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(proto_kraken.retro_answer(a->s, out, v, n), 0);
    char exp[256];
    int len = snprintf(exp, sizeof exp,
                       "VALUE retro %lld 34\r\nMESSAGE t u 2\r\nm1\r\nMESSAGE u 2\r\nm2\r\nEND\r\n"
                       "VALUE retro %lld 17\r\nMESSAGE t w 2\r\nm3\r\nEND\r\n",
                       (long long)t0, (long long)t0 + 1);
    assert_evbuffer_equal(out, exp, (size_t)len);
    /* over max_client_queue_bytes: nothing written, -2 (NOT_FOUND) */
    evbuffer_drain(out, evbuffer_get_length(out));
    f->srv.cfg.max_queue_bytes = 100;
    assert_int_equal(proto_kraken.retro_answer(a->s, out, v, n), -2);
    assert_int_equal(evbuffer_get_length(out), 0);
    for (size_t i = 0; i < n; i++)
        qitem_release(&v[i]);
    m[2]->time = t0;
    evbuffer_free(out);
    fix_free(f);
}

/* A link is a peer (`set peer`) or a child (`set child`), never both: a
 * child's link_retro is relayed to the owners, a peer's is answered from
 * here, and a peer's subscriptions never go upstream.  (`set peer` after
 * `set child` was STORED, leaving a connection with both roles.) */
static void test_peer_or_child(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1];
    do_set(a, "child", "q1", false, "STORED\r\n");
    do_set_closes(a, "peer", "q1", false, "CLIENT_ERROR a child is no peer\r\n");
    assert_true(a->s->sub.child && !a->s->sub.peer);
    do_set(b, "peer", "n1", false, "STORED\r\n");
    do_set_closes(b, "child", "n1", false, "CLIENT_ERROR a peer is no child\r\n");
    assert_true(b->s->sub.peer && !b->s->sub.child);
    /* After a subscription a connection cannot become a peer: the error is
     * sent although the request says noreply (a peer's `set peer` does). */
    struct client *c = &f->c[2];
    do_set(c, "subscribe", "t", false, "STORED\r\n");
    do_set_closes(c, "peer", "n2", true, "CLIENT_ERROR set peer comes before any subscription\r\n");
    assert_false(c->s->sub.peer);
    fix_free(f);
}

/* `set link_psubscribe` / `link_punsubscribe` (cluster_pattern.c): a
 * peer's patterns, space-separated, or a child's (and its shard channels:
 * `link_ssubscribe`); anyone else gets ERROR as for an unknown command,
 * and holds nothing. */
static void test_link_psubscribe(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1];
    do_set_closes(a, "link_psubscribe", "t*", false, "ERROR\r\n");
    assert_int_equal(a->s->sub.npatterns, 0);
    /* A child's (a proxy below): held as a client's (no cluster here: at
     * once), and so counted as this node's own; its shard channels too. */
    do_set(b, "child", "q1", false, "STORED\r\n");
    do_set(b, "link_psubscribe", "t*", false, "STORED\r\n");
    assert_int_equal(b->s->sub.npatterns, 1);
    assert_int_equal(router_local_patterns(&f->srv.router), 1);
    do_set(b, "link_punsubscribe", "t*", true, "");
    assert_int_equal(b->s->sub.npatterns, 0);
    do_set(b, "link_ssubscribe", "t", false, "STORED\r\n");
    assert_int_equal(b->s->sub.subs.count, 1);
    struct client *p = &f->c[2];
    do_set(p, "peer", "n1", false, "STORED\r\n");
    do_set(p, "link_psubscribe", "t* u?", false, "STORED\r\n");
    assert_int_equal(p->s->sub.npatterns, 2);
    assert_int_equal(router_local_patterns(&f->srv.router), 0); /* a peer's: not NUMPAT's */
    do_set(p, "link_punsubscribe", "t*", true, "");
    assert_int_equal(p->s->sub.npatterns, 1);
    fix_free(f);
}

/* `set link_forward` / `link_sforward` (cluster_origin.c): a peer core's
 * forward of entries that the nodes named on the first line have already:
 * routed as a peer's publish but never to those nodes' links here (by the
 * names their `set peer` gave), for channels and shard channels; anyone
 * but a peer gets ERROR, as for an unknown command; a first line that is
 * not one closes the connection. */
static void test_link_forward(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *p = &f->c[1], *q = &f->c[2], *l = &f->c[3], *fwd = &f->c[4];
    struct client *bad = &f->c[5];
    do_set_closes(a, "link_forward", "P\r\nMESSAGE t 1\r\nx\r\n", false, "ERROR\r\n");
    client_close(a);
    client_open(f, a);
    do_set(a, "child", "q1", false, "STORED\r\n");
    do_set_closes(a, "link_sforward", "P\r\nMESSAGE t 1\r\nx\r\n", false, "ERROR\r\n");
    do_set(p, "peer", "P", true, "");
    do_set(q, "peer", "Q", true, "");
    do_set(fwd, "peer", "A", true, "");
    do_set(p, "subscribe", "t", false, "STORED\r\n");
    do_set(q, "subscribe", "t", false, "STORED\r\n");
    do_set(l, "subscribe", "t", false, "STORED\r\n");
    do_set(p, "link_ssubscribe", "t", false, "STORED\r\n");
    do_set(q, "link_ssubscribe", "t", false, "STORED\r\n");
    do_set(fwd, "link_forward", "P\r\nMESSAGE t 1\r\nx\r\n", false, "STORED\r\n");
    do_set(fwd, "link_sforward", "Q\r\nMESSAGE t 1\r\ny\r\n", false, "STORED\r\n");
    expect_msgs(p, "SMESSAGE t 1\r\ny\r\n");
    expect_msgs(q, "MESSAGE t 1\r\nx\r\n");
    expect_msgs(l, "MESSAGE t 1\r\nx\r\n");
    /* A plain publish of a peer, and a forward naming no node or one
     * with no link here, reach every peer again. */
    do_set(fwd, "link_forward", "\r\nMESSAGE t 1\r\nz\r\n", false, "STORED\r\n");
    do_set(fwd, "link_forward", "X\r\nMESSAGE t 1\r\nw\r\n", false, "STORED\r\n");
    expect_msgs(p, "MESSAGE t 1\r\nz\r\nMESSAGE t 1\r\nw\r\n");
    expect_msgs(q, "MESSAGE t 1\r\nz\r\nMESSAGE t 1\r\nw\r\n");
    /* Two nodes named: neither gets it. */
    do_set(fwd, "link_forward", "Q P\r\nMESSAGE t 1\r\nu\r\n", false, "STORED\r\n");
    expect_msgs(p, "");
    expect_msgs(q, "");
    expect_msgs(l, "MESSAGE t 1\r\nz\r\nMESSAGE t 1\r\nw\r\nMESSAGE t 1\r\nu\r\n");
    /* P's link gone, its name is nobody's: a new link of P is excluded. */
    client_close(p);
    client_open(f, p);
    do_set(p, "peer", "P", true, "");
    do_set(p, "subscribe", "t", false, "STORED\r\n");
    do_set(fwd, "link_forward", "P\r\nMESSAGE t 1\r\nv\r\n", false, "STORED\r\n");
    expect_msgs(p, "");
    expect_msgs(q, "MESSAGE t 1\r\nv\r\n");
    /* No origin line: the connection closes. */
    do_set(bad, "peer", "B", true, "");
    struct evbuffer *b = evbuffer_new();
    set_request(b, "link_forward", "MESSAGE t 1\nx", 13, false);
    assert_int_equal(send_ev(bad, b), CONN_CLOSE);
    expect_out(bad, B("CLIENT_ERROR bad data chunk\r\n"));
    evbuffer_free(b);
    fix_free(f);
}

/* A child's `version` is a barrier (docs/cluster.md, "Sticky parents"):
 * what was routed to it before the answer is written before it, so that
 * once the child has the answer nothing more comes of a topic it
 * unsubscribed before.  Another push client's entries wait for the
 * connection's turn as ever. */
static void test_child_version_after_entries(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1], *p = &f->c[2];
    do_set(a, "push", "on", false, "STORED\r\n");
    do_set(a, "child", "q1", false, "STORED\r\n");
    do_set(a, "subscribe", "t1", false, "STORED\r\n");
    do_set(b, "push", "on", false, "STORED\r\n");
    do_set(b, "subscribe", "t1", false, "STORED\r\n");
    publish1(p, "t1", "hi"); /* queued to a and b (nothing delivers here) */
    assert_int_equal(send_s(a, "set unsubscribe 0 0 2 noreply\r\nt1\r\nversion\r\n"), CONN_OK);
    struct evbuffer *exp = evbuffer_new();
    value_reply(exp, B("MESSAGE t1 2\r\nhi\r\n"));
    evbuffer_add(exp, B(VERSION_LINE));
    expect_out_ev(a, exp);
    assert_int_equal(a->s->sub.queue.count, 0);
    assert_int_equal(send_s(b, "version\r\n"), CONN_OK);
    expect_out(b, B(VERSION_LINE));
    assert_int_equal(b->s->sub.queue.count, 1);
    evbuffer_free(exp);
    fix_free(f);
}

/* ---- framing across reads ---- */

/* The same stream fed whole and one byte at a time gives the same bytes. */
static void run_script(bool bytewise, struct evbuffer *pub_out, struct evbuffer *sub_out)
{
    static const char script[] =
        "version\r\n"
        "set publish 0 0 18\r\nMESSAGE t1 2\r\nhi\r\n\r\n"
        "set publish 0 0 40 noreply\r\nMESSAGE t1 t2 4\r\na\r\nb\r\nMESSAGE t2 1\r\nc\r\n\r\n"
        "set subscribe 0 0 2\nt9\r\n"
        "get messages\n"
        "stats\r\n"
        "set publish 0 0 0\r\n\r\n";
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1];
    do_set(a, "subscribe", "t2 t1", false, "STORED\r\n");
    if (bytewise) {
        for (size_t i = 0; i < sizeof script - 1; i++)
            assert_int_equal(send_n(b, script + i, 1), CONN_OK);
    } else {
        assert_int_equal(send_n(b, script, sizeof script - 1), CONN_OK);
    }
    assert_int_equal(evbuffer_get_length(b->in), 0);
    /* drop the stats reply: it holds the time and pid */
    size_t len;
    char *got = evbuffer_take(b->out, &len);
    char *stats = strstr(got, "STAT pid");
    assert_non_null(stats);
    char *end = strstr(stats, "END\r\n");
    assert_non_null(end);
    evbuffer_add(pub_out, got, (size_t)(stats - got));
    evbuffer_add(pub_out, end + 5, len - (size_t)(end + 5 - got));
    free(got);
    assert_int_equal(send_s(a, "get messages\r\n"), CONN_OK);
    evbuffer_add_buffer(sub_out, a->out);
    fix_free(f);
}

static void test_bytewise_equals_whole(void **state)
{
    (void)state;
    struct evbuffer *p1 = evbuffer_new(), *s1 = evbuffer_new();
    struct evbuffer *p2 = evbuffer_new(), *s2 = evbuffer_new();
    run_script(false, p1, s1);
    run_script(true, p2, s2);
    assert_evbuffer_equal(p1, B(VERSION_LINE "STORED\r\nSTORED\r\nEND\r\nSTORED\r\n"));
    assert_evbuffer_equal(s1, B("VALUE messages 0 56\r\nMESSAGE t1 2\r\nhi\r\n"
                                "MESSAGE t1 t2 4\r\na\r\nb\r\nMESSAGE t2 1\r\nc\r\nEND\r\n"));
    assert_evbuffers_equal(p2, p1);
    assert_evbuffers_equal(s2, s1);
    evbuffer_free(p1);
    evbuffer_free(s1);
    evbuffer_free(p2);
    evbuffer_free(s2);
}

/* A big payload (NUL, CRLF inside) arriving in pieces; sent on by reference. */
static void test_large_payload_in_chunks(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1];
    do_set(a, "subscribe", "big", false, "STORED\r\n");
    size_t n = 100000;
    char *payload = malloc(n);
    for (size_t i = 0; i < n; i++)
        payload[i] = i % 10 == 0 ? '\r' : i % 10 == 1 ? '\n' : (char)(i * 7);
    struct evbuffer *blk = evbuffer_new(), *req = evbuffer_new();
    add_entry(blk, "big", payload, n);
    size_t blen = evbuffer_get_length(blk);
    char *block = evbuffer_take(blk, NULL);
    set_request(req, "publish", block, blen, false);
    evbuffer_add(req, "version\r\n", 9);
    size_t rlen;
    char *raw = evbuffer_take(req, &rlen);
    size_t off = 0;
    while (off < rlen) {
        size_t k = rlen - off < 1000 ? rlen - off : 1000;
        assert_int_equal(send_n(b, raw + off, k), CONN_OK);
        off += k;
        if (off < rlen - 9)
            expect_out(b, B(""));
    }
    expect_out(b, B("STORED\r\n" VERSION_LINE));
    expect_messages(a, block, blen);
    free(raw);
    free(block);
    free(payload);
    evbuffer_free(blk);
    evbuffer_free(req);
    fix_free(f);
}

/* Output over CONN_OUTPUT_HIGH: requests wait until the client reads. */
static void test_output_backpressure(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1];
    do_set(a, "subscribe", "t", false, "STORED\r\n");
    size_t n = CONN_OUTPUT_HIGH + 1000;
    char *payload = malloc(n);
    memset(payload, 'p', n);
    struct evbuffer *blk = evbuffer_new(), *req = evbuffer_new();
    add_entry(blk, "t", payload, n);
    size_t blen = evbuffer_get_length(blk);
    char *block = evbuffer_take(blk, NULL);
    set_request(req, "publish", block, blen, false);
    assert_int_equal(send_ev(b, req), CONN_OK);
    expect_out(b, B("STORED\r\n"));
    assert_int_equal(send_s(a, "get messages\r\nversion\r\n"), CONN_PAUSED);
    size_t len = evbuffer_get_length(a->out);
    assert_true(len > CONN_OUTPUT_HIGH);
    assert_true(evbuffer_get_length(a->in) == 9); /* version not consumed */
    struct evbuffer *exp = evbuffer_new();
    value_reply(exp, block, blen);
    expect_out_ev(a, exp);
    assert_int_equal(proto_kraken.process(a->s), CONN_OK);
    expect_out(a, B(VERSION_LINE));
    evbuffer_free(exp);
    free(block);
    free(payload);
    evbuffer_free(blk);
    evbuffer_free(req);
    fix_free(f);
}

/* ---- stats and release ---- */

static void test_stats(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct client *a = &f->c[0], *b = &f->c[1];
    do_set(a, "subscribe", "t1 t2", false, "STORED\r\n");
    publish1(b, "t1", "x");
    expect_msgs(a, "MESSAGE t1 1\r\nx\r\n");
    assert_int_equal(send_s(a, "stats\r\n"), CONN_OK);
    size_t len;
    char *got = evbuffer_take(a->out, &len);
    assert_true(len > 5);
    assert_int_equal(strncmp(got, "STAT pid ", 9), 0);
    assert_bytes_equal(got + len - 5, 5, "END\r\n", 5);
    /* every line before END is a STAT line */
    for (char *line = got; line < got + len - 5;) {
        char *eol = strstr(line, "\r\n");
        assert_non_null(eol);
        assert_int_equal(strncmp(line, "STAT ", 5), 0);
        line = eol + 2;
    }
    static const char *const want[] = {
        "\r\nSTAT version " KRAKEN_VERSION "\r\n", "\r\nSTAT topics 2\r\n",
        "\r\nSTAT subscriptions 2\r\n",           "\r\nSTAT messages_published 1\r\n",
        "\r\nSTAT messages_queued 1\r\n",         "\r\nSTAT messages_delivered 1\r\n",
        "\r\nSTAT retained_messages 1\r\n",       "\r\nSTAT uptime ",
        "\r\nSTAT curr_connections 0\r\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!bytes_contain(got, len, want[i])) {
            tu_print_escaped("stats", got, len);
            fail_msg("missing %s", want[i] + 2);
        }
    }
    free(got);
    fix_free(f);
}

static void test_release_frees_state(void **state)
{
    (void)state;
    struct fix *f = fix_new_cfg(1, 1, -100);
    struct client *a = &f->c[0], *b = &f->c[1];
    do_set(a, "subscribe", "t1 t2 t3", false, "STORED\r\n");
    publish1(b, "t1 t3", "queued");
    publish1(b, "other", "evicts");
    assert_int_equal(a->s->sub.queue.count, 1);
    client_close(a);
    assert_int_equal(f->srv.router.stats.subscriptions, 0);
    assert_null(router_find_topic(&f->srv.router, B("t1")));
    assert_int_equal(topic_index_count(&f->srv.router.topics), 1); /* "other", retained */
    client_open(f, a);
    fix_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        tu_test(test_version_get_empty),
        tu_test(test_quit),
        tu_test(test_publish_get_exact),
        tu_test(test_pipelining),
        tu_test(test_noreply),
        tu_test(test_errors_close),
        tu_test(test_execute_errors_are_counted),
        tu_test(test_error_after_pipelined_requests),
        tu_test(test_line_too_long),
        tu_test(test_publish_atomic),
        tu_test(test_multi_entry_publish),
        tu_test(test_unsubscribe_and_tokens),
        tu_test(test_binary_names_and_payloads),
        tu_test(test_register_same_second),
        tu_test(test_register_replaced_and_cleared),
        tu_test(test_register_not_found),
        tu_test(test_retro_subscribe),
        tu_test(test_link_retro_peer_only_bounded),
        tu_test(test_link_entered),
        tu_test(test_relayed_answer_items),
        tu_test(test_peer_or_child),
        tu_test(test_link_forward),
        tu_test(test_link_psubscribe),
        tu_test(test_child_version_after_entries),
        tu_test(test_bytewise_equals_whole),
        tu_test(test_large_payload_in_chunks),
        tu_test(test_output_backpressure),
        tu_test(test_stats),
        tu_test(test_release_frees_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
