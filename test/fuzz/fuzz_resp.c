/* fuzz_resp.c - libFuzzer harness for the Redis protocol module (c_src/resp.h).
 *
 * The first input byte picks the options (authenticated or not, a small
 * max_bulk or Redis's) and two cut points; the rest is a byte stream of
 * commands.  The stream is parsed in one buffer, command after command, and
 * again as the engine receives it, in three segments with the parser resumed
 * on a moved copy after each RESP_NEED_MORE (honouring its "bytes needed"
 * hint): both must frame the same commands and end the same way.  Every
 * result is checked (used <= len, a NEED_MORE hint beyond len, arguments
 * inside the buffer, error replies of one "-ERR ...\r\n" line).
 *
 * The same bytes drive the glob matcher: split into a pattern and a string,
 * plus two properties that hold whatever the pattern rules: a pattern with
 * no special byte matches only itself, and any string matches its own
 * escaped form.  The reply writer formats every framed argument. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "glob.h"
#include "resp.h"

struct transcript {
    unsigned char *p;
    size_t len, cap;
};

static void tr_add(struct transcript *t, const void *p, size_t n)
{
    if (t->len + n > t->cap) {
        t->cap = (t->len + n) * 2 + 64;
        t->p = realloc(t->p, t->cap);
        assert(t->p);
    }
    if (n)
        memcpy(t->p + t->len, p, n);
    t->len += n;
}

static void tr_command(struct transcript *t, const struct resp_parser *p)
{
    tr_add(t, "C", 1);
    tr_add(t, &p->argc, sizeof p->argc);
    for (size_t i = 0; i < p->argc; i++) {
        tr_add(t, &p->argv[i].len, sizeof p->argv[i].len);
        tr_add(t, p->argv[i].p, p->argv[i].len);
    }
}

static void tr_end(struct transcript *t, enum resp_status st, const char *err)
{
    char c = (char)('0' + st);
    tr_add(t, &c, 1);
    if (st == RESP_ERROR)
        tr_add(t, err, strlen(err));
}

static struct evbuffer *out;

static void check(const struct resp_parser *p, const char *buf, size_t len,
                  enum resp_status st, size_t used, const char *err)
{
    switch (st) {
    case RESP_OK:
        assert(used > 0 && used <= len);
        if (buf[0] == '*') {
            for (size_t i = 0; i < p->argc; i++)
                assert(p->argv[i].p >= buf && p->argv[i].p + p->argv[i].len + 2 <= buf + used);
        } else {
            size_t total = 0;
            for (size_t i = 0; i < p->argc; i++)
                total += p->argv[i].len;
            assert(total < used);
        }
        for (size_t i = 0; i < p->argc; i++)
            assert(resp_add_bulk(out, p->argv[i].p, p->argv[i].len) == 0);
        evbuffer_drain(out, evbuffer_get_length(out));
        break;
    case RESP_NEED_MORE:
        assert(used == 0 || used > len);
        break;
    case RESP_ERROR: {
        size_t n = strlen(err);
        assert(n > 7 && memcmp(err, "-ERR ", 5) == 0);
        assert(err[n - 2] == '\r' && err[n - 1] == '\n');
        assert(memchr(err, '\r', n - 2) == NULL && memchr(err, '\n', n - 2) == NULL);
        break;
    }
    case RESP_NOMEM:
        break;
    }
}

/* One parse on an exact-size copy of in[0..n) (a new address every time). */
static enum resp_status parse_copy(struct resp_parser *p, const char *in, size_t n, bool authed,
                                   size_t *used, const char **err, struct transcript *t)
{
    char *copy = malloc(n ? n : 1);
    assert(copy);
    if (n)
        memcpy(copy, in, n);
    enum resp_status st = resp_parse(p, copy, n, authed, used, err);
    check(p, copy, n, st, *used, *err);
    if (st == RESP_OK)
        tr_command(t, p);
    free(copy);
    return st;
}

static void parse_stream(const char *in, size_t len, const size_t *cuts, size_t ncuts,
                         bool authed, size_t max_bulk, struct transcript *t)
{
    struct resp_parser p;
    resp_parser_init(&p, max_bulk);
    size_t off = 0, need = 0;
    enum resp_status st = RESP_NEED_MORE;
    const char *err = NULL;
    for (size_t c = 0; c <= ncuts; c++) {
        size_t avail = c < ncuts ? cuts[c] : len;
        if (avail < off || (need && avail - off < need))
            continue;
        for (;;) {
            size_t used = 0;
            st = parse_copy(&p, in + off, avail - off, authed, &used, &err, t);
            if (st != RESP_OK) {
                need = st == RESP_NEED_MORE ? used : 0;
                break;
            }
            need = 0;
            off += used;
        }
        if (st != RESP_NEED_MORE)
            break;
    }
    tr_end(t, st, err);
    resp_parser_free(&p);
}

static bool is_special(char c)
{
    return c == '*' || c == '?' || c == '[' || c == '\\';
}

static void fuzz_glob(const char *d, size_t n, size_t split)
{
    const char *pat = d, *str = d + split;
    size_t plen = split, slen = n - split;
    bool m = glob_match(pat, plen, str, slen);
    bool plain = true;
    for (size_t i = 0; i < plen; i++)
        plain = plain && !is_special(pat[i]);
    if (plain)
        assert(m == (plen == slen && memcmp(pat, str, plen) == 0));
    /* the string, escaped, matches itself */
    char *esc = malloc(2 * slen + 1);
    assert(esc);
    size_t e = 0;
    for (size_t i = 0; i < slen; i++) {
        if (is_special(str[i]))
            esc[e++] = '\\';
        esc[e++] = str[i];
    }
    assert(glob_match(esc, e, str, slen));
    free(esc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (!out)
        out = evbuffer_new();
    uint8_t opt = data[0];
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    bool authed = opt & 1;
    size_t max_bulk = opt & 2 ? 64 : 0;
    size_t cuts[2] = {len ? (opt >> 2) * 37 % (len + 1) : 0, 0};
    cuts[1] = cuts[0] + (len - cuts[0]) / 2;

    struct transcript whole = {0}, split = {0};
    parse_stream(in, len, NULL, 0, authed, max_bulk, &whole);
    parse_stream(in, len, cuts, 2, authed, max_bulk, &split);
    assert(whole.len == split.len && memcmp(whole.p, split.p, whole.len) == 0);
    free(whole.p);
    free(split.p);

    fuzz_glob(in, len, cuts[0]);
    return 0;
}
