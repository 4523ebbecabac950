/* test_protocol.c - unit tests for the wire protocol parser (include/kraken/protocol.h).
 *
 * Every buffer handed to the parser is an exact-size heap copy, so any read
 * past the bytes it was given is caught by AddressSanitizer. */
#include "test_util.h"

#include "kraken/protocol.h"

#define MAX_REQ ((size_t)1 << 20)

/* ---- helpers ---- */

struct parsed {
    enum proto_status st;
    struct proto_request req;
    size_t used;
    const char *error;
};

/* Parses an exact-size copy of buf[0..len); data pointers are rebased onto buf. */
static struct parsed parse_max(const char *buf, size_t len, size_t max_request)
{
    struct parsed r;
    char *copy = exact_copy(buf, len);
    r.error = NULL;
    r.used = 12345;
    memset(&r.req, 0x5a, sizeof r.req);
    r.st = proto_parse_request(copy, len, max_request, &r.req, &r.used, &r.error);
    if (r.st == PROTO_OK && r.req.data) {
        assert_true(r.req.data >= copy && r.req.data + r.req.data_len <= copy + len);
        r.req.data = buf + (r.req.data - copy);
    }
    free(copy);
    return r;
}

static struct parsed parse(const char *buf, size_t len)
{
    return parse_max(buf, len, MAX_REQ);
}

static void expect_error_max(const char *buf, size_t len, size_t max, const char *line)
{
    struct parsed r = parse_max(buf, len, max);
    if (r.st != PROTO_ERROR)
        tu_print_escaped("input", buf, len);
    assert_int_equal(r.st, PROTO_ERROR);
    assert_non_null(r.error);
    assert_string_equal(r.error, line);
}

static void expect_error(const char *buf, size_t len, const char *line)
{
    expect_error_max(buf, len, MAX_REQ, line);
}

/* A CLIENT_ERROR whose exact wording is the engine's choice. */
static void expect_client_error(const char *buf, size_t len)
{
    struct parsed r = parse(buf, len);
    if (r.st != PROTO_ERROR)
        tu_print_escaped("input", buf, len);
    assert_int_equal(r.st, PROTO_ERROR);
    assert_non_null(r.error);
    size_t n = strlen(r.error);
    if (strncmp(r.error, "CLIENT_ERROR ", 13) != 0 || n < 16 ||
        strcmp(r.error + n - 2, "\r\n") != 0 || memchr(r.error, '\n', n - 1)) {
        tu_print_escaped("input", buf, len);
        tu_print_escaped("error", r.error, n);
        fail_msg("expected one CLIENT_ERROR <reason>\\r\\n line");
    }
}

/* ---- the valid requests ---- */

struct valid {
    const char *buf;
    size_t len;
    enum proto_cmd cmd;
    bool noreply;
    const char *data; /* NULL: no data block */
    size_t data_len;
};

#define V_SET(lit, cmd, nr, dlit) {lit, sizeof(lit) - 1, cmd, nr, dlit, sizeof(dlit) - 1}
#define V_CMD(lit, cmd) {lit, sizeof(lit) - 1, cmd, false, NULL, 0}

static const struct valid VALID[] = {
    V_SET("set register 0 0 0\r\n\r\n", PROTO_SET_REGISTER, false, ""),
    V_SET("set register 0 0 0 noreply\r\n\r\n", PROTO_SET_REGISTER, true, ""),
    V_SET("set subscribe 0 0 5\r\nt1 t2\r\n", PROTO_SET_SUBSCRIBE, false, "t1 t2"),
    V_SET("set subscribe 0 0 5 noreply\r\nt1 t2\r\n", PROTO_SET_SUBSCRIBE, true, "t1 t2"),
    V_SET("set retro_subscribe 0 0 17\r\n1700000000\r\nt1 t2\r\n", PROTO_SET_RETRO_SUBSCRIBE,
          false, "1700000000\r\nt1 t2"),
    V_SET("set retro_subscribe 0 0 17 noreply\r\n1700000000\r\nt1 t2\r\n",
          PROTO_SET_RETRO_SUBSCRIBE, true, "1700000000\r\nt1 t2"),
    V_SET("set link_retro 0 0 17\r\n1700000000\r\nt1 t2\r\n", PROTO_SET_LINK_RETRO, false,
          "1700000000\r\nt1 t2"),
    V_SET("set link_entered 0 0 17\r\n1700000000\r\nt1 t2\r\n", PROTO_SET_LINK_ENTERED, false,
          "1700000000\r\nt1 t2"),
    V_SET("set unsubscribe 0 0 2\r\nt1\r\n", PROTO_SET_UNSUBSCRIBE, false, "t1"),
    V_SET("set peer 0 0 5 noreply\r\nc1@h1\r\n", PROTO_SET_PEER, true, "c1@h1"),
    V_SET("set child 0 0 5 noreply\r\nq1@h1\r\n", PROTO_SET_CHILD, true, "q1@h1"),
    V_SET("set link_psubscribe 0 0 5\r\nt* u?\r\n", PROTO_SET_LINK_PSUBSCRIBE, false, "t* u?"),
    V_SET("set link_punsubscribe 0 0 2 noreply\r\nt*\r\n", PROTO_SET_LINK_PUNSUBSCRIBE, true,
          "t*"),
    V_SET("set link_ssubscribe 0 0 3\r\na b\r\n", PROTO_SET_LINK_SSUBSCRIBE, false, "a b"),
    V_SET("set link_sunsubscribe 0 0 1 noreply\r\na\r\n", PROTO_SET_LINK_SUNSUBSCRIBE, true,
          "a"),
    V_SET("set link_spublish 0 0 17\r\nMESSAGE a 2\r\nhi\r\n\r\n", PROTO_SET_LINK_SPUBLISH, false,
          "MESSAGE a 2\r\nhi\r\n"),
    V_SET("set link_forward 0 0 21\r\np1\r\nMESSAGE a 2\r\nhi\r\n\r\n", PROTO_SET_LINK_FORWARD,
          false, "p1\r\nMESSAGE a 2\r\nhi\r\n"),
    V_SET("set link_sforward 0 0 21\r\np1\r\nMESSAGE a 2\r\nhi\r\n\r\n", PROTO_SET_LINK_SFORWARD,
          false, "p1\r\nMESSAGE a 2\r\nhi\r\n"),
    V_SET("set unsubscribe 0 0 2 noreply\r\nt1\r\n", PROTO_SET_UNSUBSCRIBE, true, "t1"),
    V_SET("set publish 0 0 18\r\nMESSAGE t1 2\r\nhi\r\n\r\n", PROTO_SET_PUBLISH, false,
          "MESSAGE t1 2\r\nhi\r\n"),
    V_SET("set publish 0 0 18 noreply\r\nMESSAGE t1 2\r\nhi\r\n\r\n", PROTO_SET_PUBLISH, true,
          "MESSAGE t1 2\r\nhi\r\n"),
    V_SET("set publish 0 0 0\r\n\r\n", PROTO_SET_PUBLISH, false, ""),
    /* payload with \r\n and NUL bytes inside the data block */
    V_SET("set publish 0 0 23\r\nMESSAGE a\0b 6\r\n\r\n\0\r\n\0\r\n\r\n", PROTO_SET_PUBLISH, false,
          "MESSAGE a\0b 6\r\n\r\n\0\r\n\0\r\n"),
    /* flags and exptime are ignored, but integers; exptime may be negative */
    V_SET("set publish 12 -1 0\r\n\r\n", PROTO_SET_PUBLISH, false, ""),
    /* bare \n ends command lines; the data block still ends in \r\n */
    V_SET("set subscribe 0 0 2\nt1\r\n", PROTO_SET_SUBSCRIBE, false, "t1"),
    V_SET("set subscribe 0 0 2 noreply\nt1\r\n", PROTO_SET_SUBSCRIBE, true, "t1"),
    V_CMD("get messages\r\n", PROTO_GET_MESSAGES),
    V_CMD("get messages\n", PROTO_GET_MESSAGES),
    V_CMD("quit\r\n", PROTO_QUIT),
    V_CMD("quit\n", PROTO_QUIT),
    V_CMD("version\r\n", PROTO_VERSION),
    V_CMD("version\n", PROTO_VERSION),
    V_CMD("stats\r\n", PROTO_STATS),
    V_CMD("stats\n", PROTO_STATS),
};
#define NVALID (sizeof VALID / sizeof VALID[0])

static void check_valid(const struct valid *v, const struct parsed *r, const char *base)
{
    if (r->st != PROTO_OK) {
        tu_print_escaped("request", v->buf, v->len);
        if (r->st == PROTO_ERROR)
            print_error("error: %s", r->error);
    }
    assert_int_equal(r->st, PROTO_OK);
    assert_int_equal(r->used, v->len);
    assert_int_equal(r->req.cmd, v->cmd);
    assert_int_equal(r->req.noreply, v->noreply);
    if (v->data) {
        assert_non_null(r->req.data);
        assert_bytes_equal(r->req.data, r->req.data_len, v->data, v->data_len);
        /* the data block lies inside the request, just before its final \r\n */
        assert_ptr_equal(r->req.data, base + v->len - 2 - v->data_len);
    } else {
        assert_int_equal(r->req.data_len, 0);
    }
}

static void test_valid_requests(void **state)
{
    (void)state;
    for (size_t i = 0; i < NVALID; i++) {
        struct parsed r = parse(VALID[i].buf, VALID[i].len);
        check_valid(&VALID[i], &r, VALID[i].buf);
    }
}

/* Every prefix of every valid request needs more; used is 0 until the command
 * line is complete, then the request's total size. */
static void test_valid_split_everywhere(void **state)
{
    (void)state;
    for (size_t i = 0; i < NVALID; i++) {
        const struct valid *v = &VALID[i];
        size_t line_end = (size_t)((const char *)memchr(v->buf, '\n', v->len) - v->buf);
        for (size_t k = 0; k < v->len; k++) {
            struct parsed r = parse(v->buf, k);
            if (r.st != PROTO_NEED_MORE) {
                tu_print_escaped("request", v->buf, v->len);
                print_error("prefix length %zu\n", k);
            }
            assert_int_equal(r.st, PROTO_NEED_MORE);
            assert_int_equal(r.used, k > line_end ? v->len : 0);
        }
        struct parsed r = parse(v->buf, v->len);
        check_valid(v, &r, v->buf);
    }
}

/* All valid requests back to back, plus a partial one at the end. */
static void test_pipelined(void **state)
{
    (void)state;
    struct evbuffer *b = evbuffer_new();
    for (size_t i = 0; i < NVALID; i++)
        evbuffer_add(b, VALID[i].buf, VALID[i].len);
    evbuffer_add(b, B("set publish 0 0 5\r\nab"));
    size_t total = evbuffer_get_length(b);
    char *buf = exact_copy(evbuffer_pullup(b, -1), total);
    size_t off = 0;
    for (size_t i = 0; i < NVALID; i++) {
        struct proto_request req;
        size_t used = 0;
        const char *error = NULL;
        enum proto_status st =
            proto_parse_request(buf + off, total - off, MAX_REQ, &req, &used, &error);
        struct parsed r = {st, req, used, error};
        check_valid(&VALID[i], &r, buf + off);
        off += used;
    }
    struct parsed r = parse(buf + off, total - off);
    assert_int_equal(r.st, PROTO_NEED_MORE);
    assert_int_equal(r.used, strlen("set publish 0 0 5\r\n") + 7);
    free(buf);
    evbuffer_free(b);
}

/* Requests built with the shared builder: large payloads with every byte value. */
static void test_builder_payloads(void **state)
{
    (void)state;
    size_t sizes[] = {0, 1, 2, 255, 8192, 8193, 70000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        char *payload = malloc(n + 1);
        for (size_t j = 0; j < n; j++)
            payload[j] = (char)(j % 7 == 0 ? '\r' : j % 7 == 1 ? '\n' : (j * 31) & 0xff);
        struct evbuffer *b = evbuffer_new();
        set_request(b, "publish", payload, n, i % 2);
        size_t len = evbuffer_get_length(b);
        const char *buf = (const char *)evbuffer_pullup(b, -1);
        struct parsed r = parse(buf, len);
        assert_int_equal(r.st, PROTO_OK);
        assert_int_equal(r.used, len);
        assert_int_equal(r.req.cmd, PROTO_SET_PUBLISH);
        assert_int_equal(r.req.noreply, i % 2);
        assert_bytes_equal(r.req.data, r.req.data_len, payload, n);
        /* the data block alone (without its \r\n) is not enough */
        r = parse(buf, len - 1);
        assert_int_equal(r.st, PROTO_NEED_MORE);
        assert_int_equal(r.used, len);
        evbuffer_free(b);
        free(payload);
    }
}

/* ---- errors ---- */

static const char ERROR_LINE[] = "ERROR\r\n";
static const char TOO_LARGE[] = "CLIENT_ERROR request too large\r\n";
static const char BAD_CHUNK[] = "CLIENT_ERROR bad data chunk\r\n";

static void test_unknown_commands(void **state)
{
    (void)state;
    expect_error(B("foo\r\n"), ERROR_LINE);
    expect_error(B("foo\n"), ERROR_LINE);
    expect_error(B("\r\n"), ERROR_LINE);
    expect_error(B("\n"), ERROR_LINE);
    expect_error(B("   \r\n"), ERROR_LINE);
    expect_error(B("get foo\r\n"), ERROR_LINE);
    expect_error(B("get message\r\n"), ERROR_LINE);
    expect_error(B("get messagesx\r\n"), ERROR_LINE);
    expect_error(B("get\r\n"), ERROR_LINE);
    expect_error(B("get messages foo\r\n"), ERROR_LINE);
    expect_error(B("gets messages\r\n"), ERROR_LINE);
    expect_error(B("GET messages\r\n"), ERROR_LINE);
    expect_error(B("add publish 0 0 0\r\n\r\n"), ERROR_LINE);
    expect_error(B("set foo 0 0 0\r\n\r\n"), ERROR_LINE);
    expect_error(B("set messages 0 0 0\r\n\r\n"), ERROR_LINE);
    expect_error(B("delete t1\r\n"), ERROR_LINE);
    expect_error(B("quitx\r\n"), ERROR_LINE);
    /* the error is known as soon as the line is: no data block is waited for */
    expect_error(B("set foo 0 0 100\r\n"), ERROR_LINE);
    expect_error(B("a b c d e f g h i j k\r\n"), ERROR_LINE);
}

static void test_malformed_set_lines(void **state)
{
    (void)state;
    /* missing fields */
    expect_client_error(B("set\r\n"));
    expect_client_error(B("set publish\r\n"));
    expect_client_error(B("set publish 0\r\n"));
    expect_client_error(B("set publish 0 0\r\n"));
    expect_client_error(B("set subscribe 0 0\n"));
    /* non-numeric flags, exptime, bytes */
    expect_client_error(B("set publish x 0 0\r\n\r\n"));
    expect_client_error(B("set publish 0 x 0\r\n\r\n"));
    expect_client_error(B("set publish 0 0 x\r\n\r\n"));
    expect_client_error(B("set publish 1.5 0 0\r\n\r\n"));
    expect_client_error(B("set publish 0 0 1x\r\nab\r\n"));
    expect_client_error(B("set publish 0 0 +1\r\na\r\n"));
    expect_client_error(B("set publish 0 0 1:\r\na\r\n"));
    expect_client_error(B("set publish 0 / 0\r\n\r\n"));
    expect_client_error(B("set publish - 0 0\r\n\r\n"));
    /* negative bytes */
    expect_client_error(B("set publish 0 0 -1\r\n\r\n"));
    expect_client_error(B("set publish 0 0 -0\r\n\r\n"));
    /* bad noreply token, too many tokens */
    expect_client_error(B("set publish 0 0 0 norepl\r\n\r\n"));
    expect_client_error(B("set publish 0 0 0 NOREPLY\r\n\r\n"));
    expect_client_error(B("set publish 0 0 0 noreply x\r\n\r\n"));
    expect_client_error(B("set publish 0 0 0 noreply a b c\r\n\r\n"));
    /* overflowing numbers */
    expect_client_error(B("set publish 99999999999999999999999 0 0\r\n\r\n"));
    expect_client_error(B("set publish 0 99999999999999999999999 0\r\n\r\n"));
    expect_client_error(B("set publish 0 -99999999999999999999999 0\r\n\r\n"));
    expect_client_error(B("set publish 0 0 99999999999999999999999\r\n"));
    expect_client_error(B("set publish 0 0 18446744073709551616\r\n"));
}

static void test_bad_data_chunk(void **state)
{
    (void)state;
    expect_error(B("set publish 0 0 2\r\nhiX\r\n"), BAD_CHUNK);
    expect_error(B("set publish 0 0 2\r\nhi\n\n"), BAD_CHUNK);
    expect_error(B("set publish 0 0 2\r\nhi\rX"), BAD_CHUNK);
    expect_error(B("set publish 0 0 2\r\nhi\n\r"), BAD_CHUNK);
    expect_error(B("set publish 0 0 0\r\nXY"), BAD_CHUNK);
    expect_error(B("set subscribe 0 0 1 noreply\r\nab\r\n"), BAD_CHUNK);
    expect_error(B("set register 0 0 0\nxx"), BAD_CHUNK);
}

static void test_too_large(void **state)
{
    (void)state;
    /* the declared size alone decides, before any data arrives */
    expect_error(B("set publish 0 0 2000000000\r\n"), TOO_LARGE);
    expect_error(B("set publish 0 0 2000000000 noreply\r\n"), TOO_LARGE);
    expect_error(B("set publish 0 0 18446744073709551615\r\n"), TOO_LARGE);

    /* the limit counts the whole request: command line + data + \r\n */
    const char line[] = "set publish 0 0 10\r\n"; /* 20 bytes; total 32 */
    struct evbuffer *b = evbuffer_new();
    set_request(b, "publish", "0123456789", 10, false);
    const char *buf = (const char *)evbuffer_pullup(b, -1);
    assert_int_equal(evbuffer_get_length(b), sizeof line - 1 + 12);
    struct parsed r = parse_max(buf, 32, 32);
    assert_int_equal(r.st, PROTO_OK);
    assert_int_equal(r.used, 32);
    expect_error_max(buf, 32, 31, TOO_LARGE);
    expect_error_max(buf, sizeof line - 1, 31, TOO_LARGE);
    evbuffer_free(b);

    /* a command line longer than PROTO_MAX_LINE with no newline */
    char *big = malloc(PROTO_MAX_LINE + 2);
    memset(big, 'a', PROTO_MAX_LINE + 2);
    r = parse(big, PROTO_MAX_LINE);
    assert_int_equal(r.st, PROTO_NEED_MORE);
    assert_int_equal(r.used, 0);
    expect_error(big, PROTO_MAX_LINE + 1, TOO_LARGE);
    expect_error(big, PROTO_MAX_LINE + 2, TOO_LARGE);
    /* same for a `set` line that just goes on */
    memcpy(big, "set publish 0 0 ", 16);
    expect_error(big, PROTO_MAX_LINE + 1, TOO_LARGE);
    /* a line of exactly PROTO_MAX_LINE bytes before its \n is still a line */
    memset(big, 'a', PROTO_MAX_LINE);
    big[PROTO_MAX_LINE] = '\n';
    expect_error(big, PROTO_MAX_LINE + 1, ERROR_LINE);
    /* a too-long line is refused even when a newline follows later */
    memset(big, 'a', PROTO_MAX_LINE + 2);
    big[PROTO_MAX_LINE + 1] = '\n';
    expect_error(big, PROTO_MAX_LINE + 2, TOO_LARGE);
    free(big);
}

/* Regression: with max_request near SIZE_MAX, `head + bytes + 2` used to wrap in
 * parse_set(), so "set publish 0 0 18446744073709551614\r\n" was framed as a
 * complete request whose data_len was 2^64-2, far past the buffer. */
static void test_size_arithmetic_does_not_wrap_with_huge_limit(void **state)
{
    (void)state;
    expect_error_max(B("set publish 0 0 18446744073709551615\r\n"), SIZE_MAX, TOO_LARGE);
    expect_error_max(B("set publish 0 0 18446744073709551614\r\n"), SIZE_MAX, TOO_LARGE);
}

/* ---- proto_parse_u64 ---- */

static void test_parse_u64(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_int_equal(proto_parse_u64(B("0"), UINT64_MAX, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(proto_parse_u64(B("00042"), UINT64_MAX, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(proto_parse_u64(B("18446744073709551615"), UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);
    v = 7;
    assert_int_equal(proto_parse_u64(B("18446744073709551616"), UINT64_MAX, &v), -1);
    assert_int_equal(proto_parse_u64(B("99999999999999999999999"), UINT64_MAX, &v), -1);
    assert_int_equal(proto_parse_u64(B(""), UINT64_MAX, &v), -1);
    assert_int_equal(proto_parse_u64(B("-1"), UINT64_MAX, &v), -1);
    assert_int_equal(proto_parse_u64(B("1 "), UINT64_MAX, &v), -1);
    assert_int_equal(proto_parse_u64(B("1a"), UINT64_MAX, &v), -1);
    assert_int_equal(proto_parse_u64(B("1:"), UINT64_MAX, &v), -1); /* '9' + 1 */
    assert_int_equal(proto_parse_u64(B("/1"), UINT64_MAX, &v), -1); /* '0' - 1 */
    assert_int_equal(v, 7); /* untouched on failure */
    assert_int_equal(proto_parse_u64(B("99"), 99, &v), 0);
    assert_int_equal(v, 99);
    assert_int_equal(proto_parse_u64(B("100"), 99, &v), -1);
    assert_int_equal(proto_parse_u64(B("9223372036854775807"), INT64_MAX, &v), 0);
    assert_true(v == (uint64_t)INT64_MAX);
    assert_int_equal(proto_parse_u64(B("9223372036854775808"), INT64_MAX, &v), -1);
}

/* ---- proto_next_topic ---- */

static void expect_topics(const char *p, size_t len, const char *const *exp, const size_t *lens,
                          size_t n)
{
    char *copy = exact_copy(p, len);
    const char *cur = copy, *end = copy + len;
    struct proto_slice t;
    size_t k = 0;
    while (proto_next_topic(&cur, end, &t)) {
        assert_true(k < n);
        assert_true(t.p >= copy && t.p + t.len <= end);
        assert_bytes_equal(t.p, t.len, exp[k], lens[k]);
        k++;
    }
    assert_int_equal(k, n);
    assert_ptr_equal(cur, end);
    assert_false(proto_next_topic(&cur, end, &t)); /* stays at the end */
    free(copy);
}

static void test_next_topic(void **state)
{
    (void)state;
    {
        const char *e[] = {"t1", "t2", "t3"};
        size_t l[] = {2, 2, 2};
        expect_topics(B("t1 t2 t3"), e, l, 3);
        expect_topics(B("  t1   t2 t3  "), e, l, 3); /* empty tokens ignored */
    }
    {
        const char *e[] = {"a\0b", "\0", "c\0"};
        size_t l[] = {3, 1, 2};
        expect_topics(B("a\0b \0 c\0"), e, l, 3); /* NUL is part of a name */
    }
    {
        const char *e[] = {"x\ty", "\xff\x01"};
        size_t l[] = {3, 2};
        expect_topics(B("x\ty \xff\x01"), e, l, 2);
    }
    expect_topics(B(""), NULL, NULL, 0);
    expect_topics(B("    "), NULL, NULL, 0);
}

/* ---- proto_parse_retro ---- */

static void test_parse_retro(void **state)
{
    (void)state;
    int64_t h = -7;
    struct proto_slice t = {NULL, 99};
    const char *err = NULL;
    char *d = exact_copy(B("1700000000\r\nt1 t2"));
    assert_int_equal(proto_parse_retro(d, 17, &h, &t, &err), 0);
    assert_true(h == 1700000000);
    assert_bytes_equal(t.p, t.len, "t1 t2", 5);
    assert_ptr_equal(t.p, d + 12);
    free(d);

    d = exact_copy(B("0\nt1"));
    assert_int_equal(proto_parse_retro(d, 4, &h, &t, &err), 0);
    assert_true(h == 0);
    assert_bytes_equal(t.p, t.len, "t1", 2);
    free(d);

    d = exact_copy(B("42\r\n"));
    assert_int_equal(proto_parse_retro(d, 4, &h, &t, &err), 0);
    assert_true(h == 42);
    assert_int_equal(t.len, 0);
    free(d);

    d = exact_copy(B("9223372036854775807\r\nt"));
    assert_int_equal(proto_parse_retro(d, 22, &h, &t, &err), 0);
    assert_true(h == INT64_MAX);
    free(d);

    static const struct {
        const char *p;
        size_t len;
    } bad[] = {
        {B("-5\r\nt1")},   {B("abc\r\nt1")}, {B("\r\nt1")},        {B("")},
        {B("12x\r\nt1")},  {B(" 12\r\nt1")}, {B("12 t1")},        {B("1.5\r\nt1")},
        {B("9223372036854775808\r\nt1")},   {B("99999999999999999999999\r\nt1")},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = NULL;
        d = exact_copy(bad[i].p, bad[i].len);
        if (proto_parse_retro(d, bad[i].len, &h, &t, &err) != -1)
            tu_print_escaped("horizon block", bad[i].p, bad[i].len);
        assert_int_equal(proto_parse_retro(d, bad[i].len, &h, &t, &err), -1);
        assert_non_null(err);
        assert_string_equal(err, "CLIENT_ERROR bad horizon\r\n");
        free(d);
    }
}

/* ---- proto_next_entry ---- */

struct exp_entry {
    const char *topics;
    size_t tlen;
    const char *payload;
    size_t plen;
};

/* Walks a whole block expecting the given entries then the end (0). */
static void expect_entries(const char *block, size_t len, const struct exp_entry *exp, size_t n)
{
    char *copy = exact_copy(block, len);
    const char *cur = copy, *end = copy + len;
    const char *err = NULL;
    struct proto_entry e;
    for (size_t i = 0; i < n; i++) {
        int rc = proto_next_entry(&cur, end, &e, &err);
        if (rc != 1)
            print_error("entry %zu: %s", i, err ? err : "(end)\n");
        assert_int_equal(rc, 1);
        /* topics: the raw list; walking it gives the names */
        const char *tc = e.topics.p, *te = e.topics.p + e.topics.len;
        struct proto_slice t;
        struct evbuffer *names = evbuffer_new();
        bool first = true;
        while (proto_next_topic(&tc, te, &t)) {
            if (!first)
                evbuffer_add(names, " ", 1);
            evbuffer_add(names, t.p, t.len);
            first = false;
        }
        assert_evbuffer_equal(names, exp[i].topics, exp[i].tlen);
        evbuffer_free(names);
        assert_bytes_equal(e.payload.p, e.payload.len, exp[i].payload, exp[i].plen);
    }
    assert_int_equal(proto_next_entry(&cur, end, &e, &err), 0);
    assert_ptr_equal(cur, end);
    free(copy);
}

static void expect_bad_entry(const char *block, size_t len, size_t good_before)
{
    char *copy = exact_copy(block, len);
    const char *cur = copy, *end = copy + len;
    const char *err = NULL;
    struct proto_entry e;
    for (size_t i = 0; i < good_before; i++)
        assert_int_equal(proto_next_entry(&cur, end, &e, &err), 1);
    int rc = proto_next_entry(&cur, end, &e, &err);
    if (rc != -1)
        tu_print_escaped("block", block, len);
    assert_int_equal(rc, -1);
    assert_non_null(err);
    assert_int_equal(strncmp(err, "CLIENT_ERROR ", 13), 0);
    free(copy);
}

/* Blocks pushed on cluster links: MESSAGE and SMESSAGE (Redis shard
 * channels) entries, each said which; anything else is an error there as
 * in a publish. */
static void test_next_link_entry(void **state)
{
    (void)state;
    const char *buf = "SMESSAGE a b 2\r\nhi\r\nMESSAGE c 1\r\nx\r\nSMESSAGE d 0\r\n\r\n";
    const char *cur = buf, *end = buf + strlen(buf), *err = NULL;
    struct proto_entry e;
    bool shard;
    assert_int_equal(proto_next_link_entry(&cur, end, &e, &shard, &err), 1);
    assert_true(shard);
    assert_memory_equal(e.topics.p, "a b", 3);
    assert_memory_equal(e.payload.p, "hi", 2);
    assert_int_equal(proto_next_link_entry(&cur, end, &e, &shard, &err), 1);
    assert_false(shard);
    assert_memory_equal(e.topics.p, "c", 1);
    assert_int_equal(proto_next_link_entry(&cur, end, &e, &shard, &err), 1);
    assert_true(shard);
    assert_int_equal(e.payload.len, 0);
    assert_int_equal(proto_next_link_entry(&cur, end, &e, &shard, &err), 0);
    const char *bad[] = {"SMESSAGEa 1\r\nx\r\n", "SSMESSAGE a 1\r\nx\r\n", "S", "SMESSAGE\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cur = bad[i];
        assert_int_equal(proto_next_link_entry(&cur, bad[i] + strlen(bad[i]), &e, &shard, &err),
                         -1);
        assert_ptr_equal(cur, bad[i]);
    }
    /* A client's publish block takes no SMESSAGE. */
    cur = buf;
    assert_int_equal(proto_next_entry(&cur, end, &e, &err), -1);
}

static void test_next_entry(void **state)
{
    (void)state;
    {
        struct exp_entry x[] = {{B("t1"), B("hi")}};
        expect_entries(B("MESSAGE t1 2\r\nhi\r\n"), x, 1);
    }
    {   /* several topics, several entries, empty payload, payload with CRLF and NUL */
        struct exp_entry x[] = {
            {B("a b c"), B("xyz")},
            {B("t"), B("")},
            {B("t\0u v"), B("\r\n\0MESSAGE t 1\r\n")},
        };
        expect_entries(B("MESSAGE a b c 3\r\nxyz\r\n"
                         "MESSAGE t 0\r\n\r\n"
                         "MESSAGE t\0u v 16\r\n\r\n\0MESSAGE t 1\r\n\r\n"),
                       x, 3);
    }
    {   /* extra spaces between topics are empty tokens */
        struct exp_entry x[] = {{B("a b"), B("p")}};
        expect_entries(B("MESSAGE a   b 1\r\np\r\n"), x, 1);
    }
    {   /* bare \n on the MESSAGE line */
        struct exp_entry x[] = {{B("a"), B("p")}};
        expect_entries(B("MESSAGE a 1\np\r\n"), x, 1);
    }
    expect_entries(B(""), NULL, 0);

    /* missing topic */
    expect_bad_entry(B("MESSAGE 2\r\nhi\r\n"), 0);
    expect_bad_entry(B("MESSAGE  2\r\nhi\r\n"), 0);
    expect_bad_entry(B("MESSAGE    2\r\nhi\r\n"), 0);
    /* bad size */
    expect_bad_entry(B("MESSAGE t1 x\r\nhi\r\n"), 0);
    expect_bad_entry(B("MESSAGE t1 -2\r\nhi\r\n"), 0);
    expect_bad_entry(B("MESSAGE t1\r\nhi\r\n"), 0);
    expect_bad_entry(B("MESSAGE t1 99999999999999999999999\r\nhi\r\n"), 0);
    expect_bad_entry(B("MESSAGE t1 18446744073709551615\r\nhi\r\n"), 0);
    expect_bad_entry(B("MESSAGE t1 18446744073709551614\r\nhi\r\n"), 0);
    /* truncated payload, missing trailing CRLF */
    expect_bad_entry(B("MESSAGE t1 5\r\nhi\r\n"), 0);
    expect_bad_entry(B("MESSAGE t1 2\r\nhi"), 0);
    expect_bad_entry(B("MESSAGE t1 2\r\nhi\r"), 0);
    expect_bad_entry(B("MESSAGE t1 2\r\nhiXY"), 0);
    expect_bad_entry(B("MESSAGE t1 2\r\nhi\n\r"), 0);
    expect_bad_entry(B("MESSAGE t1 1\r\nhi\r\n"), 0);
    /* no newline at all, wrong keyword */
    expect_bad_entry(B("MESSAGE t1 2"), 0);
    expect_bad_entry(B("MESSAGE"), 0);
    expect_bad_entry(B("message t1 2\r\nhi\r\n"), 0);
    expect_bad_entry(B("MESSAGEt1 2\r\nhi\r\n"), 0);
    expect_bad_entry(B("\r\n"), 0);
    expect_bad_entry(B(" MESSAGE t1 2\r\nhi\r\n"), 0);
    /* a good entry followed by garbage / a bad one */
    expect_bad_entry(B("MESSAGE t1 2\r\nhi\r\nX"), 1);
    expect_bad_entry(B("MESSAGE t1 2\r\nhi\r\n\r\n"), 1);
    expect_bad_entry(B("MESSAGE t1 2\r\nhi\r\nMESSAGE 1\r\nb\r\n"), 1);
}

/* ---- topics with CR or LF ---- */

#define BAD_TOPIC "CLIENT_ERROR bad topic: CR or LF in a topic name\r\n"

/* No publish entry can name a topic containing CR or LF (its line ends at
 * the LF; a CR is refused there too), so subscribing to one is an error. */
static void test_topics_with_cr_or_lf(void **state)
{
    (void)state;
    static const struct {
        const char *p;
        size_t len;
    } bad[] = {
        {B("a\rb")}, {B("a\nb")}, {B("t1 a\r\n")}, {B("\r")}, {B("\n")},
        {B("ok \r\n")}, {B("a\r\nb")},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *cmds[] = {"subscribe", "unsubscribe"};
        for (size_t c = 0; c < 2; c++) {
            for (int noreply = 0; noreply < 2; noreply++) { /* noreply hides no error */
                struct evbuffer *b = evbuffer_new();
                set_request(b, cmds[c], bad[i].p, bad[i].len, noreply);
                size_t n;
                char *req = evbuffer_take(b, &n);
                expect_error(req, n, BAD_TOPIC);
                free(req);
                evbuffer_free(b);
            }
        }
        /* retro_subscribe: in the topics after the horizon line */
        char data[64];
        memcpy(data, "1700000000\r\n", 12);
        memcpy(data + 12, bad[i].p, bad[i].len);
        struct evbuffer *b = evbuffer_new();
        set_request(b, "retro_subscribe", data, 12 + bad[i].len, false);
        size_t n;
        char *req = evbuffer_take(b, &n);
        expect_error(req, n, BAD_TOPIC);
        free(req);
        evbuffer_free(b);
    }
    expect_error(B("set retro_subscribe 0 0 5\r\n5\nt\nu\r\n"), BAD_TOPIC);

    /* still fine: the horizon line's own CR LF or LF, NUL, 0xff, tabs, empty lists */
    struct parsed r = parse(B("set retro_subscribe 0 0 6\r\n5\r\nt u\r\n"));
    assert_int_equal(r.st, PROTO_OK);
    r = parse(B("set retro_subscribe 0 0 3\r\n5\nt\r\n"));
    assert_int_equal(r.st, PROTO_OK);
    r = parse(B("set retro_subscribe 0 0 3\r\n5\r\n\r\n"));
    assert_int_equal(r.st, PROTO_OK);
    r = parse(B("set subscribe 0 0 7\r\na\0b \xff\tc\r\n"));
    assert_int_equal(r.st, PROTO_OK);
    r = parse(B("set unsubscribe 0 0 0\r\n\r\n"));
    assert_int_equal(r.st, PROTO_OK);
    /* a publish payload may hold CR LF */
    r = parse(B("set publish 0 0 18\r\nMESSAGE t 3\r\n\r\n\r\r\n\r\n"));
    assert_int_equal(r.st, PROTO_OK);

    /* publish: a topic with CR is a bad entry, anywhere in the block */
    expect_bad_entry(B("MESSAGE a\rb 1\r\nx\r\n"), 0);
    expect_bad_entry(B("MESSAGE a \r 1\r\nx\r\n"), 0);
    expect_bad_entry(B("MESSAGE t 1\r\nx\r\nMESSAGE t u\r 1\r\nx\r\n"), 1);
}

/* ---- formatting ---- */

static void test_fmt(void **state)
{
    (void)state;
    char buf[64];
    memset(buf, 'Z', sizeof buf);
    size_t n = proto_fmt_value_line(buf, 16);
    assert_bytes_equal(buf, n, "VALUE messages 0 16\r\n", 21);
    assert_int_equal(buf[n], 'Z');
    n = proto_fmt_value_line(buf, 0);
    assert_bytes_equal(buf, n, "VALUE messages 0 0\r\n", 20);
    memset(buf, 'Z', sizeof buf);
    n = proto_fmt_value_line(buf, SIZE_MAX);
    assert_bytes_equal(buf, n, B("VALUE messages 0 18446744073709551615\r\n"));
    assert_true(n <= 48);
    assert_int_equal(buf[n], 'Z');

    assert_int_equal(proto_digits(0), 1);
    assert_int_equal(proto_digits(9), 1);
    assert_int_equal(proto_digits(10), 2);
    assert_int_equal(proto_digits(99999), 5);
    assert_int_equal(proto_digits(100000), 6);
    assert_int_equal(proto_digits(UINT64_MAX), 20);
    n = proto_fmt_u64(buf, 1234567890);
    assert_bytes_equal(buf, n, "1234567890", 10);
    n = proto_fmt_u64(buf, 0);
    assert_bytes_equal(buf, n, "0", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        tu_test(test_valid_requests),
        tu_test(test_valid_split_everywhere),
        tu_test(test_pipelined),
        tu_test(test_builder_payloads),
        tu_test(test_unknown_commands),
        tu_test(test_malformed_set_lines),
        tu_test(test_bad_data_chunk),
        tu_test(test_too_large),
        tu_test(test_size_arithmetic_does_not_wrap_with_huge_limit),
        tu_test(test_parse_u64),
        tu_test(test_next_topic),
        tu_test(test_parse_retro),
        tu_test(test_next_entry),
        tu_test(test_next_link_entry),
        tu_test(test_topics_with_cr_or_lf),
        tu_test(test_fmt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
