/* test_control.c - unit tests of control_decode.c: control packets from the
 * Erlang node, well-formed and not.
 *
 * Every packet is decoded from a copy placed at the very end of a readable
 * page, followed by an inaccessible one: libei is not built with
 * AddressSanitizer, so this is what makes a read past the packet (inside an
 * ei_decode_* call as much as in our code) fail the test, with SIGSEGV. */
#include <ei.h>
#include <sys/mman.h>
#include <unistd.h>

#include "control_decode.h"
#include "test_util.h"

#define AREA (4u << 20)

static char *area;

/* A copy of p[0..len) that ends where an inaccessible page begins. */
static const char *guarded(const void *p, size_t len)
{
    if (!area) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        area = mmap(NULL, AREA + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        assert_true(area != MAP_FAILED);
        assert_int_equal(mprotect(area + AREA, page, PROT_NONE), 0);
    }
    assert_true(len <= AREA);
    char *dst = area + AREA - len;
    if (len)
        memcpy(dst, p, len);
    return dst;
}

static char err[256];

static enum ctl_status decode(const void *p, size_t len, struct ctl_command *cmd)
{
    err[0] = 0;
    enum ctl_status st = ctl_decode(guarded(p, len), len, cmd, err, sizeof err);
    if (st != CTL_OK)
        assert_true(err[0] != 0); /* always a reason */
    return st;
}

static void expect_status(const void *p, size_t len, enum ctl_status want, const char *reason)
{
    struct ctl_command cmd;
    enum ctl_status st = decode(p, len, &cmd);
    if (st != want) {
        tu_print_escaped("packet", p, len);
        fail_msg("status %d, expected %d (%s)", st, want, err);
    }
    if (reason && !strstr(err, reason))
        fail_msg("reason \"%s\" does not contain \"%s\"", err, reason);
}

/* ---- building packets with ei ---- */

static ei_x_buff x;

static void x_free(void *p)
{
    ei_x_free(p);
}

static void begin(void)
{
    assert_int_equal(ei_x_new_with_version(&x), 0);
    tu_defer(x_free, &x);
}

static void end(void)
{
    tu_undefer(&x);
    ei_x_free(&x);
}

/* {config, [{Name, Value}...]} with the values encoded by the caller */
static void config_head(int n)
{
    begin();
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "config");
    if (n)
        ei_x_encode_list_header(&x, n);
}

static void option(const char *name)
{
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, name);
}

static void call_head(long long ref)
{
    begin();
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "call");
    ei_x_encode_longlong(&x, ref);
}

/* ---- well-formed packets ---- */

static void test_config(void **state)
{
    (void)state;
    config_head(13);
    option("listen_ip"), ei_x_encode_binary(&x, "127.0.0.1", 9);
    option("tcp_server_port"), ei_x_encode_long(&x, 0);
    option("max_tcp_clients"), ei_x_encode_long(&x, 5);
    option("num_router_shards"), ei_x_encode_long(&x, 8);
    option("messages_stored_per_router_shard"), ei_x_encode_long(&x, 100000);
    option("router_min_fanout_to_warn"), ei_x_encode_long(&x, 7);
    option("router_min_publish_to_topics_to_warn"), ei_x_encode_long(&x, 9);
    option("log_level"), ei_x_encode_atom(&x, "debug");
    option("client_idle_timeout_secs"), ei_x_encode_long(&x, 60);
    option("max_request_bytes"), ei_x_encode_longlong(&x, 1LL << 31); /* a big */
    option("max_client_queue_bytes"), ei_x_encode_long(&x, 65536);
    option("bytes_stored_per_router_shard"), ei_x_encode_long(&x, 1 << 20);
    option("some_future_option"), ei_x_encode_string(&x, "ignored");
    ei_x_encode_empty_list(&x);
    struct ctl_command cmd;
    assert_int_equal(decode(x.buff, (size_t)x.index, &cmd), CTL_OK);
    end();
    assert_int_equal(cmd.kind, CTL_CONFIG);
    const struct engine_config *c = &cmd.config;
    assert_string_equal(c->listen_ip, "127.0.0.1");
    assert_int_equal(c->port, 0);
    assert_int_equal(c->max_clients, 5);
    assert_int_equal(c->num_shards, 8);
    assert_int_equal(c->retain_per_shard, 100000);
    assert_int_equal(c->fanout_warn, 7);
    assert_int_equal(c->topics_warn, 9);
    assert_int_equal(c->log_level, LOG_DEBUG);
    assert_int_equal(c->idle_timeout_secs, 60);
    assert_int_equal(c->max_request_bytes, 1u << 31);
    assert_int_equal(c->max_queue_bytes, 65536);
    assert_int_equal(c->retain_bytes_per_shard, 1 << 20);

    /* an empty list: the defaults; text as a string, a binary or an atom */
    config_head(0);
    ei_x_encode_empty_list(&x);
    assert_int_equal(decode(x.buff, (size_t)x.index, &cmd), CTL_OK);
    end();
    assert_int_equal(cmd.config.port, 12355);
    assert_string_equal(cmd.config.listen_ip, "0.0.0.0");
    const char *levels[] = {"warn", "warning", "error", "info"};
    for (int i = 0; i < 4; i++) {
        config_head(1);
        option("log_level");
        if (i == 0)
            ei_x_encode_string(&x, levels[i]);
        else if (i == 1)
            ei_x_encode_binary(&x, levels[i], (long)strlen(levels[i]));
        else
            ei_x_encode_atom(&x, levels[i]);
        ei_x_encode_empty_list(&x);
        assert_int_equal(decode(x.buff, (size_t)x.index, &cmd), CTL_OK);
        end();
        assert_int_equal(cmd.config.log_level, i < 2 ? LOG_WARNING : i == 2 ? LOG_ERROR : LOG_INFO);
    }
}

/* Options the engine does not use may hold any term: they are skipped. */
static void test_config_ignores_any_unknown_value(void **state)
{
    (void)state;
    erlang_pid pid = {.num = 1, .serial = 2, .creation = 3};
    erlang_port port = {.id = 5, .creation = 6};
    erlang_ref ref = {.len = 3, .n = {1, 2, 3}, .creation = 4};
    strcpy(pid.node, "node@host");
    strcpy(port.node, "node@host");
    strcpy(ref.node, "n\xc3\xa9ud@host"); /* UTF-8 */
    config_head(11);
    option("a"), ei_x_encode_pid(&x, &pid);
    option("b"), ei_x_encode_port(&x, &port);
    option("c"), ei_x_encode_ref(&x, &ref);
    option("d"), ei_x_encode_double(&x, 1.5);
    option("e"), ei_x_encode_bitstring(&x, "\xff\x80", 0, 9);
    option("f"), ei_x_encode_map_header(&x, 2), ei_x_encode_atom(&x, "k"),
        ei_x_encode_long(&x, 1), ei_x_encode_string(&x, "k2"), ei_x_encode_empty_list(&x);
    option("g"), ei_x_encode_tuple_header(&x, 300);
    for (int i = 0; i < 300; i++)
        ei_x_encode_long(&x, i);
    option("h"), ei_x_encode_list_header(&x, 2), ei_x_encode_long(&x, 1), ei_x_encode_long(&x, 2),
        ei_x_encode_atom(&x, "improper_tail");
    option("i"), ei_x_encode_longlong(&x, -(1LL << 62));
    option("j"), ei_x_encode_binary(&x, "", 0);
    option("tcp_server_port"), ei_x_encode_long(&x, 4242);
    ei_x_encode_empty_list(&x);
    struct ctl_command cmd;
    long walked = ctl_term_end(x.buff, (size_t)x.index, 1);
    assert_int_equal(walked, x.index);
    assert_int_equal(decode(x.buff, (size_t)x.index, &cmd), CTL_OK);
    end();
    assert_int_equal(cmd.config.port, 4242);

    /* 100,000 nested lists: the walker is not recursive */
    config_head(1);
    option("deep");
    /* encoded in one buffer and appended at once: ei_x_buff grows 200
     * bytes at a time, and under ASan every realloc copies */
    static char deep[100000 * 5 + 1 + 100000];
    int d = 0;
    for (int i = 0; i < 100000; i++)
        ei_encode_list_header(deep, &d, 1);
    ei_encode_empty_list(deep, &d);
    for (int i = 0; i < 100000; i++)
        ei_encode_empty_list(deep, &d);
    assert_true((size_t)d <= sizeof deep);
    ei_x_append_buf(&x, deep, d);
    ei_x_encode_empty_list(&x);
    assert_int_equal(decode(x.buff, (size_t)x.index, &cmd), CTL_OK);
    end();
}

static void test_calls(void **state)
{
    (void)state;
    struct ctl_command cmd;
    const struct {
        const char *atom;
        enum ctl_request req;
    } plain[] = {{"stats", CTL_STATS},
                 {"dump_queues", CTL_DUMP_QUEUES},
                 {"dump_topics", CTL_DUMP_TOPICS},
                 {"bogus", CTL_BADARG}};
    for (size_t i = 0; i < 4; i++) {
        call_head(77 + (long long)i);
        ei_x_encode_atom(&x, plain[i].atom);
        assert_int_equal(decode(x.buff, (size_t)x.index, &cmd), CTL_OK);
        end();
        assert_int_equal(cmd.kind, CTL_CALL);
        assert_int_equal(cmd.ref, 77 + (long long)i);
        assert_int_equal(cmd.request, plain[i].req);
    }
    call_head(1LL << 40);
    ei_x_encode_tuple_header(&x, 2), ei_x_encode_atom(&x, "dump_queue_topics"),
        ei_x_encode_long(&x, 12);
    assert_int_equal(decode(x.buff, (size_t)x.index, &cmd), CTL_OK);
    end();
    assert_int_equal(cmd.ref, 1LL << 40);
    assert_int_equal(cmd.request, CTL_DUMP_QUEUE_TOPICS);
    assert_int_equal(cmd.queue_id, 12);

    call_head(2);
    ei_x_encode_tuple_header(&x, 2), ei_x_encode_atom(&x, "set_log_level"),
        ei_x_encode_atom(&x, "warn");
    assert_int_equal(decode(x.buff, (size_t)x.index, &cmd), CTL_OK);
    end();
    assert_int_equal(cmd.request, CTL_SET_LOG_LEVEL);
    assert_int_equal(cmd.level, LOG_WARNING);

    /* well-formed but wrong arguments: answered {error, badarg} */
    call_head(3);
    ei_x_encode_tuple_header(&x, 2), ei_x_encode_atom(&x, "set_log_level"),
        ei_x_encode_atom(&x, "loud");
    assert_int_equal(decode(x.buff, (size_t)x.index, &cmd), CTL_OK);
    end();
    assert_int_equal(cmd.request, CTL_BADARG);
    call_head(4);
    ei_x_encode_tuple_header(&x, 2), ei_x_encode_atom(&x, "dump_queue_topics"),
        ei_x_encode_binary(&x, "12", 2);
    assert_int_equal(decode(x.buff, (size_t)x.index, &cmd), CTL_OK);
    end();
    assert_int_equal(cmd.request, CTL_BADARG);
    call_head(5); /* an id past 64 bits */
    ei_x_encode_tuple_header(&x, 2), ei_x_encode_atom(&x, "dump_queue_topics");
    ei_x_append_buf(&x, "n\x09\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09", 12);
    assert_int_equal(decode(x.buff, (size_t)x.index, &cmd), CTL_OK);
    end();
    assert_int_equal(cmd.request, CTL_BADARG);
    call_head(6);
    ei_x_encode_tuple_header(&x, 1), ei_x_encode_atom(&x, "stats");
    assert_int_equal(decode(x.buff, (size_t)x.index, &cmd), CTL_OK);
    end();
    assert_int_equal(cmd.request, CTL_BADARG);
    call_head(7);
    ei_x_encode_tuple_header(&x, 0);
    assert_int_equal(decode(x.buff, (size_t)x.index, &cmd), CTL_OK);
    end();
    assert_int_equal(cmd.request, CTL_BADARG);
}

/* ---- malformed packets ---- */

/* The packet of the review: {config, [{foo, <<BINARY_EXT of 0x40000000 bytes,
 * none of them sent>>}]}; it crashed the engine in ei_decode_tuple_header. */
static void test_binary_longer_than_packet(void **state)
{
    (void)state;
    static const char pkt[] = "\x83h\x02" "d\x00\x06" "config"
                              "l\x00\x00\x00\x01"
                              "h\x02" "d\x00\x03" "foo"
                              "m\x40\x00\x00\x00"
                              "j";
    expect_status(pkt, sizeof pkt - 1, CTL_MALFORMED, "runs past the packet");
    /* the same for a known option, and in a call */
    static const char pkt2[] = "\x83h\x02" "d\x00\x06" "config"
                               "l\x00\x00\x00\x01"
                               "h\x02" "d\x00\x09listen_ip"
                               "m\xff\xff\xff\xf0"
                               "j";
    expect_status(pkt2, sizeof pkt2 - 1, CTL_MALFORMED, NULL);
    static const char pkt3[] = "\x83h\x03" "d\x00\x04" "call"
                               "a\x01"
                               "h\x02" "d\x00\x0dset_log_level"
                               "m\x40\x00\x00\x00";
    expect_status(pkt3, sizeof pkt3 - 1, CTL_MALFORMED, NULL);
}

static void expect_every_prefix_rejected(const char *p, size_t len)
{
    for (size_t n = 0; n < len; n++) {
        struct ctl_command cmd;
        if (decode(p, n, &cmd) == CTL_OK) {
            tu_print_escaped("prefix", p, n);
            fail_msg("a %zu-byte prefix of a %zu-byte packet was accepted", n, len);
        }
    }
}

static void test_truncated(void **state)
{
    (void)state;
    config_head(3);
    option("listen_ip"), ei_x_encode_binary(&x, "::1", 3);
    option("log_level"), ei_x_encode_atom(&x, "info");
    option("max_request_bytes"), ei_x_encode_longlong(&x, 1LL << 31);
    ei_x_encode_empty_list(&x);
    expect_every_prefix_rejected(x.buff, (size_t)x.index);
    end();
    call_head(123456789012LL);
    ei_x_encode_tuple_header(&x, 2), ei_x_encode_atom(&x, "dump_queue_topics"),
        ei_x_encode_long(&x, 99);
    expect_every_prefix_rejected(x.buff, (size_t)x.index);
    end();
    erlang_pid pid = {.num = 1, .serial = 2, .creation = 3};
    erlang_ref ref = {.len = 3, .n = {1, 2, 3}, .creation = 4};
    strcpy(pid.node, "node@host");
    strcpy(ref.node, "node@host");
    config_head(3);
    option("p"), ei_x_encode_pid(&x, &pid);
    option("r"), ei_x_encode_ref(&x, &ref);
    option("d"), ei_x_encode_double(&x, 2.5);
    ei_x_encode_empty_list(&x);
    expect_every_prefix_rejected(x.buff, (size_t)x.index);
    end();
}

static void test_trailing_bytes_and_framing(void **state)
{
    (void)state;
    call_head(1);
    ei_x_encode_atom(&x, "stats");
    char buf[64];
    assert_true((size_t)x.index + 1 <= sizeof buf);
    memcpy(buf, x.buff, (size_t)x.index);
    buf[x.index] = 'j';
    expect_status(buf, (size_t)x.index + 1, CTL_MALFORMED, "1 bytes after the term");
    buf[0] = (char)130;
    expect_status(buf, (size_t)x.index, CTL_MALFORMED, "version");
    end();
    expect_status("", 0, CTL_MALFORMED, "version");
    expect_status(B("\x83"), CTL_MALFORMED, NULL);
    /* a compressed term, an atom cache reference, an old fun: not sent by the node */
    expect_status(B("\x83P\x00\x00\x00\x10x\x9c"), CTL_MALFORMED, NULL);
    expect_status(B("\x83R\x00"), CTL_MALFORMED, NULL);
    expect_status(B("\x83u\x00\x00\x00\x00"), CTL_MALFORMED, NULL);
}

static void test_wrong_shapes(void **state)
{
    (void)state;
    expect_status(B("\x83h\x00"), CTL_MALFORMED, "tuple tagged with an atom"); /* {} */
    expect_status(B("\x83" "d\x00\x05stats"), CTL_MALFORMED, NULL);              /* stats */
    expect_status(B("\x83h\x01" "d\x00\x06" "config"), CTL_MALFORMED, "config/1");
    expect_status(B("\x83h\x02" "d\x00\x03" "foo" "a\x01"), CTL_MALFORMED, "foo/2");
    expect_status(B("\x83h\x02" "a\x01" "a\x01"), CTL_MALFORMED, NULL);
    expect_status(B("\x83h\x04" "d\x00\x04" "call" "a\x01" "d\x00\x05stats" "j"), CTL_MALFORMED,
                  "call/4");
    /* {call, notint, stats}: no reference to answer to */
    expect_status(B("\x83h\x03" "d\x00\x04" "call" "d\x00\x01x" "d\x00\x05stats"), CTL_MALFORMED,
                  "reference");
    /* {config, notalist}, {config, [foo]}, {config, [{1, 2}]}, {config, [{a}]} */
    expect_status(B("\x83h\x02" "d\x00\x06" "config" "a\x01"), CTL_BAD_CONFIG, "malformed");
    expect_status(B("\x83h\x02" "d\x00\x06" "config" "l\x00\x00\x00\x01" "d\x00\x03" "foo" "j"),
                  CTL_BAD_CONFIG, "malformed");
    expect_status(B("\x83h\x02" "d\x00\x06" "config" "l\x00\x00\x00\x01" "h\x02" "a\x01" "a\x02" "j"),
                  CTL_BAD_CONFIG, "malformed");
    expect_status(B("\x83h\x02" "d\x00\x06" "config" "l\x00\x00\x00\x01" "h\x01" "d\x00\x01" "a" "j"),
                  CTL_BAD_CONFIG, "malformed");
    /* an improper options list: [{a, 1} | x] */
    expect_status(B("\x83h\x02" "d\x00\x06" "config" "l\x00\x00\x00\x01" "h\x02" "d\x00\x01" "a"
                    "a\x01" "d\x00\x01x"),
                  CTL_BAD_CONFIG, "malformed");
    /* a list that says 2 elements but holds 1 and its tail */
    expect_status(B("\x83h\x02" "d\x00\x06" "config" "l\x00\x00\x00\x02" "h\x02" "d\x00\x01" "a"
                    "a\x01" "j"),
                  CTL_MALFORMED, NULL);
}

static void test_wrong_option_values(void **state)
{
    (void)state;
    struct {
        const char *name;
        int kind; /* 0 binary "x", 1 integer 70000, 2 a pid, 3 a 300-byte binary, 4 -1 */
        const char *reason;
    } cases[] = {
        {"tcp_server_port", 0, "bad value for option tcp_server_port: expected an integer 0..65535"},
        {"tcp_server_port", 1, "expected an integer 0..65535"},
        {"tcp_server_port", 2, "bad value for option tcp_server_port"},
        {"max_tcp_clients", 4, "max_tcp_clients"},
        {"listen_ip", 1, "listen_ip"},
        {"listen_ip", 2, "listen_ip"},
        {"listen_ip", 3, "listen_ip"},
        {"log_level", 0, "expected debug, info, warn or error"},
        {"log_level", 1, "log_level"},
    };
    erlang_pid pid = {.num = 1, .serial = 2, .creation = 3};
    strcpy(pid.node, "n@h");
    char big[300];
    memset(big, '1', sizeof big);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        config_head(1);
        option(cases[i].name);
        switch (cases[i].kind) {
        case 0:
            ei_x_encode_binary(&x, "x", 1);
            break;
        case 1:
            ei_x_encode_long(&x, 70000);
            break;
        case 2:
            ei_x_encode_pid(&x, &pid);
            break;
        case 3:
            ei_x_encode_binary(&x, big, sizeof big);
            break;
        case 4:
            ei_x_encode_long(&x, -1);
            break;
        }
        ei_x_encode_empty_list(&x);
        expect_status(x.buff, (size_t)x.index, CTL_BAD_CONFIG, cases[i].reason);
        end();
    }
}

/* Declared lengths, counts and arities far beyond the packet. */
static void test_huge_lengths(void **state)
{
    (void)state;
    static const struct {
        const char *p;
        size_t len;
    } terms[] = {
        {B("l\xff\xff\xff\xff" "j")},             /* a list of 2^32 - 1 elements */
        {B("i\xff\xff\xff\xff" "a\x01")},         /* a tuple of 2^32 - 1 */
        {B("t\x80\x00\x00\x00" "a\x01" "a\x02")}, /* a map of 2^31 pairs */
        {B("t\xff\xff\xff\xff")},
        {B("h\xff" "a\x01")},
        {B("d\xff\xff" "abc")},                  /* atoms, strings, binaries */
        {B("v\x01\x00" "abc")},
        {B("s\xff" "abc")},
        {B("w\x04" "abc")},
        {B("k\xff\xff" "abc")},
        {B("m\xff\xff\xff\xff" "abc")},
        {B("M\x00\x00\x00\x02\x03" "a")},       /* a bitstring */
        {B("n\xff\x00" "abc")},                  /* bignums */
        {B("o\xff\xff\xff\xff\x00" "abc")},
        {B("p\xff\xff\xff\xff" "abc")},          /* a fun */
        {B("p\x00\x00\x00\x02")},
        {B("r\xff\xff" "d\x00\x01n" "\x01" "abcd")}, /* references, pids, ports */
        {B("Z\x00\x03" "d\x00\x01n" "abcd")},
        {B("r\x00\x01" "d\xff\xff" "n")},
        {B("X" "d\x00\x01n" "abc")},
        {B("g" "s\xff" "n")},
        {B("Y" "w\x01n" "abcdefg")},
        {B("x" "d\x00\x01n" "abcdefgh")},
        {B("e" "k\x00\x01n" "abcdefgh")},         /* a node that is not an atom */
        {B("F" "abc")},                           /* floats */
        {B("c" "1.5")},
        {B("b" "ab")},                            /* integers */
        {B("a")},
        {B("q" "d\x00\x01m" "d\x00\x01" "f")},    /* an export missing its arity */
    };
    for (size_t i = 0; i < sizeof terms / sizeof terms[0]; i++) {
        /* as the value of an unknown option, of a known one, and as a call's Ref */
        static const char head[] = "\x83h\x02" "d\x00\x06" "config" "l\x00\x00\x00\x01" "h\x02"
                                   "d\x00\x03" "foo";
        static const char head2[] = "\x83h\x03" "d\x00\x04" "call";
        char buf[128];
        size_t n = sizeof head - 1;
        memcpy(buf, head, n);
        memcpy(buf + n, terms[i].p, terms[i].len);
        n += terms[i].len;
        buf[n++] = 'j';
        expect_status(buf, n, CTL_MALFORMED, NULL);
        assert_int_equal(ctl_term_end(guarded(terms[i].p, terms[i].len), terms[i].len, 0), -1);
        static const char head3[] = "\x83h\x02" "d\x00\x06" "config" "l\x00\x00\x00\x01" "h\x02"
                                    "d\x00\x09" "listen_ip";
        n = sizeof head3 - 1;
        memcpy(buf, head3, n);
        memcpy(buf + n, terms[i].p, terms[i].len);
        n += terms[i].len;
        buf[n++] = 'j';
        expect_status(buf, n, CTL_MALFORMED, NULL);
        memcpy(buf, head2, sizeof head2 - 1);
        n = sizeof head2 - 1;
        memcpy(buf + n, terms[i].p, terms[i].len);
        n += terms[i].len;
        buf[n++] = 'd', buf[n++] = 0, buf[n++] = 1, buf[n++] = 's';
        expect_status(buf, n, CTL_MALFORMED, NULL);
    }
}

static void test_term_end(void **state)
{
    (void)state;
    begin();
    erlang_pid pid = {.num = 1, .serial = 2, .creation = 3};
    erlang_port port = {.id = 1ULL << 40, .creation = 6};
    erlang_ref ref = {.len = 5, .n = {1, 2, 3, 4, 5}, .creation = 1u << 31};
    strcpy(pid.node, "a@b");
    strcpy(port.node, "a@b");
    strcpy(ref.node, "a@b");
    ei_x_encode_list_header(&x, 9);
    ei_x_encode_pid(&x, &pid);
    ei_x_encode_port(&x, &port);
    ei_x_encode_ref(&x, &ref);
    ei_x_encode_double(&x, -0.25);
    ei_x_encode_longlong(&x, -(1LL << 60));
    ei_x_encode_string(&x, "abc");
    ei_x_encode_atom(&x, "\xc3\xa9t\xc3\xa9"); /* UTF-8 */
    ei_x_encode_map_header(&x, 1), ei_x_encode_long(&x, 1), ei_x_encode_long(&x, 2);
    ei_x_encode_bitstring(&x, "\xff", 1, 3);
    ei_x_encode_empty_list(&x);
    const char *g = guarded(x.buff, (size_t)x.index);
    assert_int_equal(ctl_term_end(g, (size_t)x.index, 1), x.index);
    /* every shorter buffer: -1, never a read past it */
    for (int n = 1; n < x.index; n++)
        assert_int_equal(ctl_term_end(guarded(x.buff, (size_t)n), (size_t)n, 1), -1);
    end();
    assert_int_equal(ctl_term_end("j", 1, 1), -1); /* no term at the end */
    assert_int_equal(ctl_term_end("j", 1, 2), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        tu_test(test_config),
        tu_test(test_config_ignores_any_unknown_value),
        tu_test(test_calls),
        tu_test(test_binary_longer_than_packet),
        tu_test(test_truncated),
        tu_test(test_trailing_bytes_and_framing),
        tu_test(test_wrong_shapes),
        tu_test(test_wrong_option_values),
        tu_test(test_huge_lengths),
        tu_test(test_term_end),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (area)
        munmap(area, AREA + (size_t)sysconf(_SC_PAGESIZE));
    return rc;
}
