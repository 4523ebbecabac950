/* test_resp.c - unit tests for the Redis protocol module (c_src/resp.h).
 *
 * The expected replies and limits are redis-server 7.0.15's (checked against
 * it byte for byte).  Every buffer handed to the parser is an exact-size heap
 * copy made afresh for each call, so reads past the end are caught by
 * AddressSanitizer and a command resumed after RESP_NEED_MORE is always read
 * from a moved buffer, as the engine's would be. */
#include "test_util.h"

#include <limits.h>
#include <math.h>

#include "glob.h"
#include "resp.h"

/* ---- transcripts ----
 * A parse of a byte stream is summarised as text: each command as
 * [arg,arg,...] (bytes escaped), then "E:<reply>" for an error, "MORE" when
 * the stream ends inside a command, or "NOMEM". */

struct text {
    char *s;
    size_t len, cap;
};

static void text_add(struct text *t, const char *p, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->s = realloc(t->s, t->cap);
        assert_non_null(t->s);
    }
    memcpy(t->s + t->len, p, n);
    t->len += n;
    t->s[t->len] = 0;
}

static void text_str(struct text *t, const char *s)
{
    text_add(t, s, strlen(s));
}

/* Escapes bytes that are not printable, and in arguments the separators. */
static void text_bytes(struct text *t, const char *p, size_t n, bool arg)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        char buf[8];
        if (c < 32 || c >= 127 || c == '\\' || (arg && (c == ',' || c == ']'))) {
            snprintf(buf, sizeof buf, "\\x%02x", c);
            text_str(t, buf);
        } else {
            text_add(t, (const char *)&c, 1);
        }
    }
}

static void text_command(struct text *t, const struct resp_parser *p)
{
    text_str(t, "[");
    for (size_t i = 0; i < p->argc; i++) {
        if (i)
            text_str(t, ",");
        text_bytes(t, p->argv[i].p, p->argv[i].len, true);
    }
    text_str(t, "]");
}

static void text_end(struct text *t, enum resp_status st, const char *err)
{
    if (st == RESP_ERROR) {
        text_str(t, "E:");
        text_bytes(t, err, strlen(err), false);
    } else if (st == RESP_NEED_MORE) {
        text_str(t, "MORE");
    } else {
        text_str(t, "NOMEM");
    }
}

/* Checks the invariants of one resp_parse() result on buf[0..len). */
static void check_result(const struct resp_parser *p, const char *buf, size_t len,
                         enum resp_status st, size_t used, const char *err)
{
    if (st == RESP_OK) {
        assert_true(used > 0 && used <= len);
        for (size_t i = 0; i < p->argc; i++) {
            const struct resp_arg *a = &p->argv[i];
            bool in_buf = a->p >= buf && a->p + a->len <= buf + used;
            assert_true(in_buf || (a->len == 0 || a->p != NULL));
        }
    } else if (st == RESP_NEED_MORE) {
        assert_true(used == 0 || used > len);
    } else if (st == RESP_ERROR) {
        assert_non_null(err);
        size_t n = strlen(err);
        assert_true(n > 7 && strncmp(err, "-ERR ", 5) == 0);
        assert_true(err[n - 2] == '\r' && err[n - 1] == '\n');
    }
}

/* Parses the whole stream in one buffer, command after command. */
static char *parse_all(const char *in, size_t len, bool authed, size_t max_bulk)
{
    struct resp_parser p;
    struct text t = {0};
    resp_parser_init(&p, max_bulk);
    text_str(&t, "");
    size_t off = 0;
    for (;;) {
        size_t n = len - off;
        char *copy = exact_copy(in + off, n);
        size_t used = 777;
        const char *err = NULL;
        enum resp_status st = resp_parse(&p, copy, n, authed, &used, &err);
        check_result(&p, copy, n, st, used, err);
        if (st != RESP_OK) {
            if (st != RESP_NEED_MORE || n > 0)
                text_end(&t, st, err);
            free(copy);
            break;
        }
        text_command(&t, &p);
        free(copy);
        off += used;
    }
    resp_parser_free(&p);
    return t.s;
}

/* Feeds the stream as the engine would: bytes arrive in segments ending at
 * each offset of cuts[] (then the rest); each time the parser runs on all
 * unconsumed bytes, honouring its "bytes needed" hint. */
static char *parse_segments(const char *in, size_t len, const size_t *cuts, size_t ncuts,
                            bool authed)
{
    struct resp_parser p;
    struct text t = {0};
    resp_parser_init(&p, 0);
    text_str(&t, "");
    size_t off = 0, need = 0;
    enum resp_status st = RESP_NEED_MORE;
    const char *err = NULL;
    for (size_t c = 0; c <= ncuts; c++) {
        size_t avail = c < ncuts ? cuts[c] : len;
        if (avail < off || (need && avail < off + need))
            continue;
        for (;;) {
            size_t n = avail - off, used = 777;
            char *copy = exact_copy(in + off, n);
            st = resp_parse(&p, copy, n, authed, &used, &err);
            check_result(&p, copy, n, st, used, err);
            if (st == RESP_OK)
                text_command(&t, &p);
            free(copy);
            if (st != RESP_OK) {
                need = st == RESP_NEED_MORE ? used : 0;
                break;
            }
            need = 0;
            off += used;
        }
        if (st == RESP_ERROR || st == RESP_NOMEM)
            break;
    }
    if (st != RESP_NEED_MORE || off < len)
        text_end(&t, st, err);
    resp_parser_free(&p);
    return t.s;
}

static void expect_stream(const char *in, size_t len, const char *exp)
{
    char *got = parse_all(in, len, true, 0);
    if (strcmp(got, exp) != 0) {
        tu_print_escaped("input", in, len);
        print_error("expected %s\ngot      %s\n", exp, got);
        free(got);
        fail();
    }
    free(got);
}

/* Same, as a client that must still authenticate. */
static void expect_stream_unauth(const char *in, size_t len, const char *exp)
{
    char *got = parse_all(in, len, false, 0);
    if (strcmp(got, exp) != 0) {
        tu_print_escaped("input", in, len);
        print_error("expected %s\ngot      %s\n", exp, got);
        free(got);
        fail();
    }
    free(got);
}

/* The stream cut at every point, and fed one byte at a time, parses as in one piece. */
static void expect_same_when_split(const char *in, size_t len, bool authed)
{
    char *whole = parse_all(in, len, authed, 0);
    for (size_t cut = 0; cut <= len; cut++) {
        char *got = parse_segments(in, len, &cut, 1, authed);
        if (strcmp(got, whole) != 0) {
            tu_print_escaped("input", in, len);
            print_error("cut at %zu\nwhole: %s\nsplit: %s\n", cut, whole, got);
            free(got);
            free(whole);
            fail();
        }
        free(got);
    }
    size_t *cuts = malloc((len + 1) * sizeof *cuts);
    assert_non_null(cuts);
    for (size_t i = 0; i <= len; i++)
        cuts[i] = i;
    char *got = parse_segments(in, len, cuts, len + 1, authed);
    free(cuts);
    if (strcmp(got, whole) != 0) {
        tu_print_escaped("input", in, len);
        print_error("byte by byte\nwhole: %s\nsplit: %s\n", whole, got);
        free(got);
        free(whole);
        fail();
    }
    free(got);
    free(whole);
}

/* One call on exactly these bytes. */
struct one {
    enum resp_status st;
    size_t used;
    const char *err;
};

/* The copy parsed last, so that p->argv can be read until the next call. */
static char *one_copy;

static void drop_one_copy(void *c)
{
    free(c);
    if (c == one_copy)
        one_copy = NULL;
}

static void free_one_copy(void)
{
    if (one_copy) {
        tu_undefer(one_copy);
        free(one_copy);
        one_copy = NULL;
    }
}

static struct one parse_one(struct resp_parser *p, const char *in, size_t len, bool authed)
{
    struct one r;
    free_one_copy();
    one_copy = exact_copy(in, len);
    tu_defer(drop_one_copy, one_copy);
    r.err = NULL;
    r.st = resp_parse(p, one_copy, len, authed, &r.used, &r.err);
    check_result(p, one_copy, len, r.st, r.used, r.err);
    return r;
}

/* head (may hold NULs) followed by n bytes c. */
static char *after(const char *head, size_t hlen, char c, size_t n)
{
    char *s = malloc(hlen + n);
    assert_non_null(s);
    memcpy(s, head, hlen);
    memset(s + hlen, c, n);
    return s;
}

static char *repeat(char c, size_t n, const char *head, const char *tail)
{
    size_t h = strlen(head), t = strlen(tail);
    char *s = malloc(h + n + t + 1);
    assert_non_null(s);
    memcpy(s, head, h);
    memset(s + h, c, n);
    memcpy(s + h + n, tail, t + 1);
    return s;
}

/* ---- multibulk ---- */

static void test_multibulk_valid(void **state)
{
    (void)state;
    expect_stream(B("*1\r\n$4\r\nPING\r\n"), "[PING]");
    expect_stream(B("*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n$0\r\n\r\n"), "[subscribe,a,]");
    /* binary bulks: NUL, CR, LF inside */
    expect_stream(B("*2\r\n$7\r\npublish\r\n$5\r\na\0\r\nb\r\n"), "[publish,a\\x00\\x0d\\x0ab]");
    /* pipelined, with empty commands skipped by the caller */
    expect_stream(B("*1\r\n$4\r\nPING\r\n*0\r\n*-1\r\n*-5\r\n*1\r\n$4\r\nPING\r\n"),
                  "[PING][][][][PING]");
    /* the byte after a header's \r and the two after a bulk are not checked */
    expect_stream(B("*1\rX$4\rYPINGxy"), "[PING]");
    expect_stream(B("*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPI"), "[PING]MORE");
    /* a bulk may contain "\r\n$": only its announced length counts */
    expect_stream(B("*2\r\n$1\r\nx\r\n$6\r\n\r\n$1\r\n\r\n"), "[x,\\x0d\\x0a$1\\x0d\\x0a]");
    /* -0 and +1 are not numbers for string2ll, nor are leading zeros or spaces */
    expect_stream(B("*-0\r\n"), "E:-ERR Protocol error: invalid multibulk length\\x0d\\x0a");
}

static void test_multibulk_need_more(void **state)
{
    (void)state;
    struct resp_parser p;
    resp_parser_init(&p, 0);
    struct one r = parse_one(&p, B("*"), true);
    assert_int_equal(r.st, RESP_NEED_MORE);
    assert_int_equal(r.used, 0);
    r = parse_one(&p, B("*1\r"), true); /* the \n must be there too */
    assert_int_equal(r.st, RESP_NEED_MORE);
    assert_int_equal(r.used, 0);
    r = parse_one(&p, B("*1\r\n$10\r"), true);
    assert_int_equal(r.st, RESP_NEED_MORE);
    assert_int_equal(r.used, 0);
    /* once the bulk length is known, so is the size needed */
    r = parse_one(&p, B("*1\r\n$10\r\n"), true);
    assert_int_equal(r.st, RESP_NEED_MORE);
    assert_int_equal(r.used, 9 + 10 + 2);
    r = parse_one(&p, B("*1\r\n$10\r\n0123456789\r"), true);
    assert_int_equal(r.st, RESP_NEED_MORE);
    assert_int_equal(r.used, 21);
    r = parse_one(&p, B("*1\r\n$10\r\n0123456789\r\n*1"), true);
    assert_int_equal(r.st, RESP_OK);
    assert_int_equal(r.used, 21);
    assert_int_equal(p.argc, 1);
    /* the biggest bulk Redis takes */
    r = parse_one(&p, B("*1\r\n$536870912\r\n"), true);
    assert_int_equal(r.st, RESP_NEED_MORE);
    assert_int_equal(r.used, 16 + 536870912 + 2);
    /* a count up to INT_MAX waits for its bulks (arrays grow as they come) */
    resp_parser_reset(&p);
    r = parse_one(&p, B("*2147483647\r\n"), true);
    assert_int_equal(r.st, RESP_NEED_MORE);
    resp_parser_reset(&p);
    r = parse_one(&p, B("*1000000000\r\n$1\r\na\r\n$1\r\nb\r\n"), true);
    assert_int_equal(r.st, RESP_NEED_MORE);
    assert_int_equal(r.used, 0);
    resp_parser_free(&p);
    free_one_copy();
}

#define E_MBULK "E:-ERR Protocol error: invalid multibulk length\\x0d\\x0a"
#define E_BULK "E:-ERR Protocol error: invalid bulk length\\x0d\\x0a"

static void test_multibulk_errors(void **state)
{
    (void)state;
    expect_stream(B("*\r\n"), E_MBULK);
    expect_stream(B("*x\r\n"), E_MBULK);
    expect_stream(B("*01\r\n"), E_MBULK);
    expect_stream(B("*+1\r\n"), E_MBULK);
    expect_stream(B("* 1\r\n"), E_MBULK);
    expect_stream(B("*1 \r\n"), E_MBULK);
    expect_stream(B("*-\r\n"), E_MBULK);
    expect_stream(B("*2147483648\r\n"), E_MBULK);            /* > INT_MAX */
    expect_stream(B("*9223372036854775807\r\n"), E_MBULK);
    expect_stream(B("*9223372036854775808\r\n"), E_MBULK);   /* overflow */
    expect_stream(B("*99999999999999999999\r\n"), E_MBULK);
    expect_stream(B("*-9223372036854775808\r\n"), "[]");     /* LLONG_MIN: <= 0, ignored */
    expect_stream(B("*-9223372036854775809\r\n"), E_MBULK);
    expect_stream(B("*-2147483649\r\n"), "[]");
    expect_stream(B("*1\n$4\r\nPING\r\n"), E_MBULK);        /* the \r is searched, "1\n$4" */

    expect_stream(B("*1\r\n$\r\n"), E_BULK);
    expect_stream(B("*1\r\n$-1\r\n"), E_BULK);
    expect_stream(B("*1\r\n$-0\r\n"), E_BULK);
    expect_stream(B("*1\r\n$01\r\n"), E_BULK);
    expect_stream(B("*1\r\n$1x\r\n"), E_BULK);
    expect_stream(B("*1\r\n$536870913\r\n"), E_BULK);        /* > 512 MB */
    expect_stream(B("*1\r\n$2147483648\r\n"), E_BULK);       /* 2^31 */
    expect_stream(B("*1\r\n$4294967296\r\n"), E_BULK);
    expect_stream(B("*1\r\n$18446744073709551616\r\n"), E_BULK);
    expect_stream(B("*1\r\n$4abc\r\n"), E_BULK);             /* header runs to the next \r */

    expect_stream(B("*1\r\nPING\r\n"), "E:-ERR Protocol error: expected '$', got 'P'\\x0d\\x0a");
    expect_stream(B("*3\r\n$4\r\necho\r\n$1\r\na\r\n:1\r\n"),
                  "E:-ERR Protocol error: expected '$', got ':'\\x0d\\x0a");
    /* \r and \n are shown as spaces, other bytes as they are */
    expect_stream(B("*1\r\n\r\r\n"), "E:-ERR Protocol error: expected '$', got ' '\\x0d\\x0a");
    expect_stream(B("*1\r\n\n\r\n"), "E:-ERR Protocol error: expected '$', got ' '\\x0d\\x0a");
    expect_stream(B("*1\r\n\xff\r\n"), "E:-ERR Protocol error: expected '$', got '\\xff'\\x0d\\x0a");
    /* commands before the error are still framed */
    expect_stream(B("*1\r\n$4\r\nPING\r\n*1\r\n+x\r\n"),
                  "[PING]E:-ERR Protocol error: expected '$', got '+'\\x0d\\x0a");
}

static void test_multibulk_exact_error_lines(void **state)
{
    (void)state;
    struct resp_parser p;
    resp_parser_init(&p, 0);
    struct one r = parse_one(&p, B("*1\r\n\xff\r\n"), true);
    assert_int_equal(r.st, RESP_ERROR);
    assert_bytes_equal(r.err, strlen(r.err), B("-ERR Protocol error: expected '$', got '\xff'\r\n"));
    r = parse_one(&p, B("*x\r\n"), true);
    assert_string_equal(r.err, RESP_ERR_MBULK_LEN);
    assert_string_equal(RESP_ERR_MBULK_LEN, "-ERR Protocol error: invalid multibulk length\r\n");
    r = parse_one(&p, B("*1\r\n$x\r\n"), true);
    assert_string_equal(r.err, "-ERR Protocol error: invalid bulk length\r\n");
    resp_parser_free(&p);
    free_one_copy();
}

static void test_multibulk_too_big_lines(void **state)
{
    (void)state;
    /* no \r within 64 KiB: an error once more than 65536 bytes wait */
    char *s = repeat('1', 65535, "*", "");
    expect_stream(s, 65536, "MORE");
    free(s);
    s = repeat('1', 65536, "*", "");
    expect_stream(s, 65537, "E:-ERR Protocol error: too big mbulk count string\\x0d\\x0a");
    free(s);
    /* a \r far away is found: the line is then not a number */
    s = repeat('1', 70000, "*", "\r\n");
    expect_stream(s, 70003, E_MBULK);
    free(s);
    /* a NUL ends the search (strchr on Redis's buffer): the line never comes */
    s = after(B("*1\0\r\n"), 'x', 65536);
    expect_stream(s, 5 + 65536, "E:-ERR Protocol error: too big mbulk count string\\x0d\\x0a");
    expect_stream(s, 100, "MORE");
    free(s);

    /* the bulk header line: counted from where it starts */
    s = repeat('1', 65535, "*1\r\n$", "");
    expect_stream(s, 5 + 65535, "MORE");
    free(s);
    s = repeat('1', 65536, "*1\r\n$", "");
    expect_stream(s, 5 + 65536, "E:-ERR Protocol error: too big bulk count string\\x0d\\x0a");
    free(s);
    s = after(B("*2\r\n$1\r\na\r\n$1\0\r\n"), 'x', 65536);
    expect_stream(s, 16 + 65536, "E:-ERR Protocol error: too big bulk count string\\x0d\\x0a");
    free(s);
}

static void test_multibulk_unauthenticated(void **state)
{
    (void)state;
    expect_stream_unauth(B("*10\r\n"), "MORE");
    expect_stream_unauth(B("*11\r\n"),
                         "E:-ERR Protocol error: unauthenticated multibulk length\\x0d\\x0a");
    expect_stream(B("*11\r\n"), "MORE");
    /* a bad count is invalid before it is unauthenticated */
    expect_stream_unauth(B("*2147483648\r\n"), E_MBULK);
    expect_stream_unauth(B("*-20\r\n"), "[]");
    expect_stream_unauth(B("*1\r\n$16384\r\n"), "MORE");
    expect_stream_unauth(B("*1\r\n$16385\r\n"),
                         "E:-ERR Protocol error: unauthenticated bulk length\\x0d\\x0a");
    expect_stream_unauth(B("*1\r\n$536870913\r\n"), E_BULK);
    expect_stream(B("*1\r\n$16385\r\n"), "MORE");
    expect_stream_unauth(B("*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"), "[AUTH,pw]");
}

static void test_max_bulk(void **state)
{
    (void)state;
    char *got = parse_all(B("*1\r\n$101\r\n"), true, 100);
    assert_string_equal(got, E_BULK);
    free(got);
    got = parse_all(B("*1\r\n$100\r\n"), true, 100);
    assert_string_equal(got, "MORE");
    free(got);
    /* a bigger setting never lifts Redis's own 512 MB */
    got = parse_all(B("*1\r\n$536870913\r\n"), true, SIZE_MAX);
    assert_string_equal(got, E_BULK);
    free(got);
}

static void test_many_args(void **state)
{
    (void)state;
    /* beyond the small built-in arrays, and again after a big command */
    struct text in = {0}, exp = {0};
    text_str(&exp, "");
    for (int round = 0; round < 2; round++) {
        size_t n = round == 0 ? 3000 : 40;
        char hdr[32];
        snprintf(hdr, sizeof hdr, "*%zu\r\n", n);
        text_str(&in, hdr);
        text_str(&exp, "[");
        for (size_t i = 0; i < n; i++) {
            char arg[16], bulk[40];
            snprintf(arg, sizeof arg, "a%zu", i);
            snprintf(bulk, sizeof bulk, "$%zu\r\n%s\r\n", strlen(arg), arg);
            text_str(&in, bulk);
            if (i)
                text_str(&exp, ",");
            text_str(&exp, arg);
        }
        text_str(&exp, "]");
    }
    expect_stream(in.s, in.len, exp.s);
    /* in 7-byte segments: resumed hundreds of times */
    size_t ncuts = in.len / 7;
    size_t *cuts = malloc(ncuts * sizeof *cuts);
    assert_non_null(cuts);
    for (size_t i = 0; i < ncuts; i++)
        cuts[i] = i * 7;
    char *got = parse_segments(in.s, in.len, cuts, ncuts, true);
    assert_string_equal(got, exp.s);
    free(got);
    free(cuts);
    free(in.s);
    free(exp.s);
}

/* ---- inline ---- */

static void test_inline(void **state)
{
    (void)state;
    expect_stream(B("PING\r\n"), "[PING]");
    expect_stream(B("PING\n"), "[PING]");
    expect_stream(B("  subscribe   a  b\t c \r\n"), "[subscribe,a,b,c]");
    /* empty and blank lines are commands of no arguments (skipped) */
    expect_stream(B("\r\n\n   \r\nPING\r\n"), "[][][][PING]");
    /* only one \r before the \n is the line end; others separate */
    expect_stream(B("a\rb\r\r\n"), "[a,b]");
    /* \v and \f are blanks between arguments but not inside one */
    expect_stream(B("\x0b" "echo a\x0b" "b \x0c" "c\r\n"), "[echo,a\\x0bb,c]");
    /* a NUL stops the newline search: nothing until too big */
    expect_stream(B("PI\0NG\r\nPING\r\n"), "MORE");
    /* a line longer than 64 KiB is fine once its newline is there */
    char *s = repeat('a', 70000, "", "\r\n");
    struct resp_parser p;
    resp_parser_init(&p, 0);
    struct one r = parse_one(&p, s, 70002, true);
    assert_int_equal(r.st, RESP_OK);
    assert_int_equal(r.used, 70002);
    assert_int_equal(p.argc, 1);
    assert_int_equal(p.argv[0].len, 70000);
    r = parse_one(&p, s, 65536, true);
    assert_int_equal(r.st, RESP_NEED_MORE);
    assert_int_equal(r.used, 0);
    r = parse_one(&p, s, 65537, true);
    assert_int_equal(r.st, RESP_ERROR);
    assert_string_equal(r.err, "-ERR Protocol error: too big inline request\r\n");
    resp_parser_free(&p);
    free_one_copy();
    free(s);
    s = after(B("a\0"), 'x', 65536);
    expect_stream(s, 65538, "E:-ERR Protocol error: too big inline request\\x0d\\x0a");
    free(s);
    /* a command starting with anything but '*' is inline, even " *1" */
    expect_stream(B(" *1\r\n"), "[*1]");
    expect_stream(B("$4\r\n"), "[$4]");
}

#define E_QUOTES "E:-ERR Protocol error: unbalanced quotes in request\\x0d\\x0a"

static void test_inline_quotes(void **state)
{
    (void)state;
    expect_stream(B("set \"a b\" 'c d'\r\n"), "[set,a b,c d]");
    expect_stream(B("\"\" ''\r\n"), "[,]");
    expect_stream(B("echo \"\\n\\r\\t\\b\\a\\\\\\\"\\q\\'\"\r\n"),
                  "[echo,\\x0a\\x0d\\x09\\x08\\x07\\x5c\"q']");
    expect_stream(B("echo \"\\x41\\x4a\\xff\\x00\"\r\n"), "[echo,AJ\\xff\\x00]");
    /* \x without two hex digits is an x */
    expect_stream(B("echo \"\\x4g\" \"\\x\" \"\\x4\"\r\n"), "[echo,x4g,x,x4]");
    /* single quotes: only \' is an escape */
    expect_stream(B("echo 'it\\'s \\n \"x\"'\r\n"), "[echo,it's \\x5cn \"x\"]");
    /* quotes may start inside an argument */
    expect_stream(B("a\"b c\" d'e f'\r\n"), "[ab c,de f]");
    expect_stream(B("\"a\"\t'b'\x0b\"c\"\r\n"), "[a,b,c]");
    /* unquoted escapes are plain bytes */
    expect_stream(B("a\\nb\r\n"), "[a\\x5cnb]");
    /* errors */
    expect_stream(B("\"abc\r\n"), E_QUOTES);
    expect_stream(B("'abc\r\n"), E_QUOTES);
    expect_stream(B("\"a\"b\r\n"), E_QUOTES);
    expect_stream(B("'a'b\r\n"), E_QUOTES);
    expect_stream(B("echo \"a\\\"\r\n"), E_QUOTES);
    expect_stream(B("echo \"a\\\r\n"), E_QUOTES);
    expect_stream(B("echo 'a\\'\r\n"), E_QUOTES);
    expect_stream(B("PING\r\n\"\r\nPING\r\n"), "[PING]" E_QUOTES);
    /* the quoted newline search: a quoted \n still ends the line */
    expect_stream(B("echo \"a\nb\"\r\n"), E_QUOTES);
}

/* ---- split points ---- */

static void test_split_pipeline(void **state)
{
    (void)state;
    static const char pipeline[] =
        "*3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n$2\r\nc2\r\n"
        "PING\r\n"
        "\r\n"
        "*0\r\n"
        "*2\r\n$7\r\npublish\r\n$12\r\nhello\r\nworld\r\n"
        "psubscribe \"a*\" 'b?' [c]\n"
        "*-1\r\n"
        "*1\r\n$4\r\nPING\r\n"
        "*2\r\n$4\r\necho\r\n$0\r\n\r\n";
    expect_stream(pipeline, sizeof pipeline - 1,
                  "[subscribe,c1,c2][PING][][][publish,hello\\x0d\\x0aworld]"
                  "[psubscribe,a*,b?,[c\\x5d][][PING][echo,]");
    expect_same_when_split(pipeline, sizeof pipeline - 1, true);
    expect_same_when_split(pipeline, sizeof pipeline - 1, false);
    /* ending in each kind of error, and in the middle of a command */
    expect_same_when_split(B("*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nfoo\r\n:1\r\n"), true);
    expect_same_when_split(B("PING\r\n*1\r\n$-3\r\n"), true);
    expect_same_when_split(B("PING\r\n*x\r\n"), true);
    expect_same_when_split(B("PING\r\necho \"x\r\n"), true);
    expect_same_when_split(B("*1\r\n$4\r\nPING\r\n*12\r\n"), false);
    expect_same_when_split(B("*1\r\n$4\r\nPING\r\n*1\r\n$20000\r\n"), false);
    expect_same_when_split(B("*2\r\n$4\r\necho\r\n$5\r\nabc"), true);
    expect_same_when_split(B("*1\r\n$3\r\na\0b\r\n*1\0\r\n"), true);
}

static void test_reset_and_reuse(void **state)
{
    (void)state;
    struct resp_parser p;
    resp_parser_init(&p, 0);
    struct one r = parse_one(&p, B("*2\r\n$3\r\nabc\r\n"), true);
    assert_int_equal(r.st, RESP_NEED_MORE);
    /* the caller dropped those bytes: forget them */
    resp_parser_reset(&p);
    r = parse_one(&p, B("PING\r\n"), true);
    assert_int_equal(r.st, RESP_OK);
    assert_int_equal(p.argc, 1);
    /* shorter bytes than already parsed: the parser starts over */
    r = parse_one(&p, B("*2\r\n$3\r\nabc\r\n"), true);
    assert_int_equal(r.st, RESP_NEED_MORE);
    r = parse_one(&p, B("*1\r\n$1\r\nx\r\n"), true);
    assert_int_equal(r.st, RESP_OK);
    assert_int_equal(p.argc, 1);
    assert_bytes_equal(p.argv[0].p, p.argv[0].len, B("x"));
    /* after an error the parser starts afresh too */
    r = parse_one(&p, B("*1\r\n+\r\n"), true);
    assert_int_equal(r.st, RESP_ERROR);
    r = parse_one(&p, B("*1\r\n$1\r\ny\r\n"), true);
    assert_int_equal(r.st, RESP_OK);
    resp_parser_free(&p);
    resp_parser_free(&p); /* idempotent */
    free_one_copy();
}

/* ---- replies ---- */

static struct evbuffer *new_buffer(void)
{
    struct evbuffer *b = evbuffer_new();
    assert_non_null(b);
    tu_defer((void (*)(void *))evbuffer_free, b);
    return b;
}

static void expect_reply(struct evbuffer *b, const char *exp, size_t len)
{
    assert_evbuffer_equal(b, exp, len);
    evbuffer_drain(b, evbuffer_get_length(b));
}

static void test_replies(void **state)
{
    (void)state;
    struct evbuffer *b = new_buffer();
    assert_int_equal(resp_add_simple(b, B("OK")), 0);
    expect_reply(b, B("+OK\r\n"));
    assert_int_equal(resp_add_error(b, B("unknown command")), 0);
    expect_reply(b, B("-ERR unknown command\r\n"));
    assert_int_equal(resp_add_error(b, B("-NOAUTH Authentication required.")), 0);
    expect_reply(b, B("-NOAUTH Authentication required.\r\n"));
    assert_int_equal(resp_add_error(b, B("")), 0);
    expect_reply(b, B("-ERR \r\n"));
    assert_int_equal(resp_add_integer(b, 0), 0);
    assert_int_equal(resp_add_integer(b, 7), 0);
    assert_int_equal(resp_add_integer(b, -1), 0);
    assert_int_equal(resp_add_integer(b, LLONG_MAX), 0);
    assert_int_equal(resp_add_integer(b, LLONG_MIN), 0);
    expect_reply(b, B(":0\r\n:7\r\n:-1\r\n:9223372036854775807\r\n:-9223372036854775808\r\n"));
    assert_int_equal(resp_add_bulk(b, B("hello")), 0);
    assert_int_equal(resp_add_bulk(b, "", 0), 0);
    assert_int_equal(resp_add_bulk(b, B("a\0\r\nb")), 0);
    expect_reply(b, B("$5\r\nhello\r\n$0\r\n\r\n$5\r\na\0\r\nb\r\n"));
    char *big = repeat('z', 100000, "", "");
    assert_int_equal(resp_add_bulk(b, big, 100000), 0);
    char *exp = repeat('z', 100000, "$100000\r\n", "\r\n");
    expect_reply(b, exp, strlen(exp));
    free(exp);
    char *line = repeat('y', 1000, "", "");
    assert_int_equal(resp_add_simple(b, line, 1000), 0);
    exp = repeat('y', 1000, "+", "\r\n");
    expect_reply(b, exp, strlen(exp));
    free(exp);
    free(line);
    free(big);

    resp_add_null(b, 2);
    resp_add_null(b, 3);
    resp_add_null_array(b, 2);
    resp_add_null_array(b, 3);
    expect_reply(b, B("$-1\r\n_\r\n*-1\r\n_\r\n"));
    resp_add_array(b, 3);
    resp_add_array(b, 0);
    resp_add_map(b, 2, 2);
    resp_add_map(b, 3, 2);
    resp_add_set(b, 2, 5);
    resp_add_set(b, 3, 5);
    resp_add_push(b, 2, 3);
    resp_add_push(b, 3, 3);
    expect_reply(b, B("*3\r\n*0\r\n*4\r\n%2\r\n*5\r\n~5\r\n*3\r\n>3\r\n"));
    resp_add_bool(b, 2, true);
    resp_add_bool(b, 2, false);
    resp_add_bool(b, 3, true);
    resp_add_bool(b, 3, false);
    expect_reply(b, B(":1\r\n:0\r\n#t\r\n#f\r\n"));
    resp_add_double(b, 3, 1.5);
    resp_add_double(b, 3, INFINITY);
    resp_add_double(b, 3, -INFINITY);
    resp_add_double(b, 3, 0.1);
    expect_reply(b, B(",1.5\r\n,inf\r\n,-inf\r\n,0.10000000000000001\r\n"));
    resp_add_double(b, 2, 1.5);
    resp_add_double(b, 2, INFINITY);
    resp_add_double(b, 2, -INFINITY);
    resp_add_double(b, 2, 3.0);
    expect_reply(b, B("$3\r\n1.5\r\n$3\r\ninf\r\n$4\r\n-inf\r\n$1\r\n3\r\n"));

    /* a RESP3 pubsub message, as Redis writes it */
    resp_add_push(b, 3, 3);
    resp_add_bulk(b, B("message"));
    resp_add_bulk(b, B("ch"));
    resp_add_bulk(b, B("hi"));
    expect_reply(b, B(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"));
}

static void test_fmt(void **state)
{
    (void)state;
    char buf[RESP_HEADER_MAX];
    size_t n = resp_fmt_header(buf, '*', 12);
    assert_bytes_equal(buf, n, B("*12\r\n"));
    n = resp_fmt_header(buf, '$', LLONG_MIN);
    assert_bytes_equal(buf, n, B("$-9223372036854775808\r\n"));
    assert_true(n <= RESP_HEADER_MAX);
    for (long long v = -1000; v <= 100000; v += 7) {
        char want[32];
        int w = snprintf(want, sizeof want, "%lld", v);
        n = resp_fmt_ll(buf, v);
        assert_bytes_equal(buf, n, want, (size_t)w);
    }
}

/* ---- glob ---- */

struct gcase {
    const char *pat, *str;
    bool match;
};

static bool glob_z(const char *pat, const char *str)
{
    size_t pl = strlen(pat), sl = strlen(str);
    /* exact-size copies: no reading past either */
    char *p = exact_copy(pat, pl), *s = exact_copy(str, sl);
    bool m = glob_match(p, pl, s, sl);
    free(p);
    free(s);
    return m;
}

static void test_glob(void **state)
{
    (void)state;
    static const struct gcase cases[] = {
        /* keyspace.tcl and pubsub.tcl */
        {"foo*", "foo_a", true},
        {"foo*", "key_x", false},
        {"*", "dlskeriewrioeuwqoirueioqwrueoqwrueqw", true},
        {"foo.*", "foo.1", true},
        {"foo.*", "foo", false},
        {"foo.*", "foo.", true},
        {"bar.*", "bar.1", true},
        {"chan.*", "chan.x", true},
        {"ch*", "chan", true},
        {"a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
        /* basics */
        {"", "", true},
        {"", "a", false},
        {"a", "", false},
        {"*", "", false},             /* Redis: the loop never runs on "" */
        {"**", "", false},
        {"?", "", false},
        {"?", "a", true},
        {"??", "a", false},
        {"a?c", "abc", true},
        {"a*c", "ac", true},
        {"a*c", "abbbc", true},
        {"a*c", "abbbd", false},
        {"*c", "abc", true},
        {"a**c", "abc", true},
        {"h?llo", "hello", true},
        {"h*llo", "hllo", true},
        {"h[ae]llo", "hello", true},
        {"h[ae]llo", "hallo", true},
        {"h[ae]llo", "hillo", false},
        {"h[^e]llo", "hallo", true},
        {"h[^e]llo", "hello", false},
        {"h[a-b]llo", "hbllo", true},
        {"h[a-b]llo", "hcllo", false},
        {"h[b-a]llo", "hallo", true}, /* reversed range */
        {"[a-]", "-", false},         /* the range a-] (swapped: ]..a), then unterminated */
        {"[a-]", "a", true},
        {"[]]", "]", false},          /* ']' right away closes an empty class */
        {"[]", "a", false},
        {"[\\]]", "]", true},
        {"[\\-]", "-", true},
        {"[\\", "\\", true},          /* unterminated, a lone backslash */
        {"[a", "a", true},            /* unterminated class */
        {"[a", "ab", false},
        {"[ab", "b", true},
        {"[", "a", false},
        {"[^", "a", true},            /* unterminated, empty, negated */
        {"[^", "", false},
        {"[a-c", "b", true},
        {"a[", "a", false},
        {"\\*", "*", true},
        {"\\*", "a", false},
        {"\\?", "?", true},
        {"\\[a]", "[a]", true},
        {"\\", "\\", true},           /* trailing backslash is literal */
        {"a\\", "a\\", true},
        {"\\a", "a", true},
        {"*\\*", "abc*", true},
        {"[*]", "*", true},
        {"[?]", "a", false},
        {"a*", "a", true},
        {"a*b*", "ab", true},
        {"*a*", "bab", true},
        {"*a*", "bbb", false},
        {"*?", "a", true},
        {"*?", "", false},
        {"?*", "", false},
        {"*[", "a", false},
        {"a*]", "a]", true},
        {"[^a-c]*", "d", true},
        {"[^a-c]*", "b", false},
        {"*a", "aXa", true},
        {"*ab*cd", "xxabyycdzzcd", true},
        {"*ab*cd", "xxabyycdzzc", false},
        {"*a?b", "aaab", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool m = glob_z(cases[i].pat, cases[i].str);
        if (m != cases[i].match)
            fail_msg("pattern \"%s\" on \"%s\": got %d", cases[i].pat, cases[i].str, m);
    }
    /* NUL bytes are ordinary bytes */
    assert_true(glob_match("a\0*", 3, "a\0bc", 4));
    assert_false(glob_match("a\0*", 3, "a\1bc", 4));
    assert_true(glob_match("[\0]", 3, "\0", 1));
    /* ranges compare signed chars, as Redis does: [a-\xff] is \xff..a */
    assert_true(glob_z("[a-\xff]", "\xff"));
    assert_true(glob_z("[a-\xff]", "0"));
    assert_false(glob_z("[a-\xff]", "\x80"));
    assert_false(glob_z("[a-\xff]", "b"));
    assert_true(glob_z("[\x80-\xfe]", "\x90"));
    assert_false(glob_z("[\x80-\xfe]", "a"));
}

static void test_glob_abuse(void **state)
{
    (void)state;
    /* exponential backtracking is cut short (CVE-2022-36021) */
    char *s = repeat('a', 5000, "", "");
    char pat[400];
    size_t n = 0;
    for (int i = 0; i < 100; i++) {
        pat[n++] = '*';
        pat[n++] = 'a';
    }
    pat[n++] = 'b';
    assert_false(glob_match(pat, n, s, 5000));
    free(s);
    /* nesting beyond 1000 '*' never matches (CVE-2024-31228) */
    size_t plen = 2 * 1001;
    char *p = malloc(plen);
    assert_non_null(p);
    for (size_t i = 0; i < plen; i += 2) {
        p[i] = '*';
        p[i + 1] = 'a';
    }
    s = repeat('a', 2000, "", "");
    assert_true(glob_match(p, 2 * 1000, s, 2000));
    assert_false(glob_match(p, 2 * 1001, s, 2000));
    free(p);
    /* keyspace.tcl: KEYS [string repeat "*?" 50000] on 50000 a's */
    free(s);
    s = repeat('a', 50000, "", "");
    p = malloc(100000);
    assert_non_null(p);
    for (size_t i = 0; i < 100000; i += 2) {
        p[i] = '*';
        p[i + 1] = '?';
    }
    assert_false(glob_match(p, 100000, s, 50000));
    free(p);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        tu_test(test_multibulk_valid),
        tu_test(test_multibulk_need_more),
        tu_test(test_multibulk_errors),
        tu_test(test_multibulk_exact_error_lines),
        tu_test(test_multibulk_too_big_lines),
        tu_test(test_multibulk_unauthenticated),
        tu_test(test_max_bulk),
        tu_test(test_many_args),
        tu_test(test_inline),
        tu_test(test_inline_quotes),
        tu_test(test_split_pipeline),
        tu_test(test_reset_and_reuse),
        tu_test(test_replies),
        tu_test(test_fmt),
        tu_test(test_glob),
        tu_test(test_glob_abuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
