/* resp.c - the Redis protocol: request parser, reply writer, glob (no I/O).
 *
 * See resp.h.  The parser follows Redis 7.0's networking.c step by step, so
 * that every input gets the reply redis-server would give, including its
 * quirks:
 *
 *   - a request starting with '*' is multibulk, anything else inline;
 *   - header lines are found by searching for '\r' (inline lines for '\n')
 *     the way strchr() does on Redis's NUL-terminated query buffer: a NUL
 *     byte ends the search, so the line is "not there yet";
 *   - the byte after a header's '\r', and the two bytes after a bulk, are
 *     skipped without being checked;
 *   - a missing line is an error only once more than 64 KiB wait unparsed.
 *
 * Multibulk parsing resumes where it stopped: the parser remembers how far
 * it got (as offsets, since the caller's buffer may move) and which bulks it
 * has read, so a big command arriving in many segments is parsed once, and
 * while a bulk's bytes arrive *used says how many are needed.  Inline lines
 * are parsed in one go once their newline is there. */
#include "resp.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

/* Arrays bigger than this are freed when the next command starts. */
#define KEEP_ARGS 1024
#define KEEP_SCRATCH (64 * 1024)

/* ---- integers ---- */

size_t resp_fmt_ll(char *buf, long long v)
{
    char tmp[20];
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    size_t n = 0, o = 0;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        buf[o++] = '-';
    while (n)
        buf[o++] = tmp[--n];
    return o;
}

size_t resp_fmt_header(char *buf, char prefix, long long v)
{
    buf[0] = prefix;
    size_t n = 1 + resp_fmt_ll(buf + 1, v);
    buf[n++] = '\r';
    buf[n++] = '\n';
    return n;
}

/* Redis's string2ll(): optional '-', no '+', no leading zeros (but "0"), no
 * spaces, at most 20 characters, within long long. */
static bool parse_ll(const char *s, size_t n, long long *out)
{
    if (n == 0 || n >= 21)
        return false;
    if (n == 1 && s[0] == '0') {
        *out = 0;
        return true;
    }
    size_t i = 0;
    bool neg = s[0] == '-';
    if (neg && ++i == n)
        return false;
    if (s[i] < '1' || s[i] > '9')
        return false;
    unsigned long long v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (unsigned long long)LLONG_MAX + 1)
            return false;
        *out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
    } else {
        if (v > (unsigned long long)LLONG_MAX)
            return false;
        *out = (long long)v;
    }
    return true;
}

/* ---- parser state ---- */

void resp_parser_init(struct resp_parser *p, size_t max_bulk)
{
    memset(p, 0, sizeof *p);
    p->max_bulk_ = max_bulk == 0 || max_bulk > RESP_MAX_BULK ? RESP_MAX_BULK : max_bulk;
    p->args_ = p->small_args_;
    p->offs_ = p->small_offs_;
    p->cap_ = RESP_SMALL_ARGS;
    p->argv = p->args_;
    p->bulklen_ = -1;
}

static void free_arrays(struct resp_parser *p)
{
    if (p->args_ != p->small_args_) {
        free(p->args_);
        free(p->offs_);
        p->args_ = p->small_args_;
        p->offs_ = p->small_offs_;
        p->cap_ = RESP_SMALL_ARGS;
    }
    p->argv = p->args_;
}

void resp_parser_free(struct resp_parser *p)
{
    free_arrays(p);
    free(p->scratch_);
    p->scratch_ = NULL;
    p->scratch_cap_ = 0;
    p->argc = 0;
}

void resp_parser_reset(struct resp_parser *p)
{
    p->busy_ = false;
    p->pos_ = 0;
    p->left_ = 0;
    p->bulklen_ = -1;
    p->nargs_ = 0;
}

/* Makes room for one more argument (index p->nargs_). */
static bool grow_args(struct resp_parser *p)
{
    if (p->nargs_ < p->cap_)
        return true;
    if (p->cap_ > SIZE_MAX / 2 / sizeof(struct resp_arg))
        return false;
    size_t cap = p->cap_ * 2;
    struct resp_arg *args;
    size_t *offs;
    if (p->args_ == p->small_args_) {
        args = malloc(cap * sizeof *args);
        offs = malloc(cap * sizeof *offs);
        if (!args || !offs) {
            free(args);
            free(offs);
            return false;
        }
        memcpy(args, p->small_args_, sizeof p->small_args_);
        memcpy(offs, p->small_offs_, sizeof p->small_offs_);
    } else {
        args = realloc(p->args_, cap * sizeof *args);
        if (!args)
            return false;
        p->args_ = args;
        offs = realloc(p->offs_, cap * sizeof *offs);
        if (!offs)
            return false;
    }
    p->args_ = args;
    p->offs_ = offs;
    p->cap_ = cap;
    return true;
}

/* At the start of a command: drops arrays a huge previous command left. */
static void start_command(struct resp_parser *p)
{
    if (p->cap_ > KEEP_ARGS)
        free_arrays(p);
    if (p->scratch_cap_ > KEEP_SCRATCH) {
        free(p->scratch_);
        p->scratch_ = NULL;
        p->scratch_cap_ = 0;
    }
    resp_parser_reset(p);
    p->argc = 0;
    p->argv = p->args_;
}

static enum resp_status fail(struct resp_parser *p, const char *reply, const char **error)
{
    resp_parser_reset(p);
    p->argc = 0;
    *error = reply;
    return RESP_ERROR;
}

static enum resp_status nomem(struct resp_parser *p)
{
    resp_parser_reset(p);
    p->argc = 0;
    return RESP_NOMEM;
}

/* strchr(s, c) on a NUL-terminated copy of s[0..n): the offset of the first
 * c, or n when a NUL comes first or there is none. */
static size_t find_before_nul(const char *s, size_t n, char c)
{
    const char *hit = memchr(s, c, n);
    size_t end = hit ? (size_t)(hit - s) : n;
    if (end > 0 && memchr(s, '\0', end))
        return n;
    return end;
}

/* ---- inline commands (processInlineBuffer + sdssplitargs) ---- */

static bool is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The line holds no NUL (the newline search stops at one), so "past the
 * end" reads as the NUL that ends Redis's copy of the line. */
static int byte_at(const char *s, size_t n, size_t i)
{
    return i < n ? (unsigned char)s[i] : 0;
}

/* Splits line[0..n) into arguments unquoted into p->scratch_.  Returns 0,
 * -1 on unbalanced quotes, -2 when out of memory. */
static int split_line(struct resp_parser *p, const char *line, size_t n)
{
    if (n > p->scratch_cap_) {
        char *s = realloc(p->scratch_, n);
        if (!s)
            return -2;
        p->scratch_ = s;
        p->scratch_cap_ = n;
    }
    char *out = p->scratch_;
    size_t o = 0, i = 0;
    for (;;) {
        while (i < n && is_space((unsigned char)line[i]))
            i++;
        if (i == n)
            return 0;
        size_t start = o;
        bool dq = false, sq = false, done = false;
        while (!done) {
            int c = byte_at(line, n, i);
            if (dq) {
                if (c == '\\' && byte_at(line, n, i + 1) == 'x' &&
                    hex_value(byte_at(line, n, i + 2)) >= 0 &&
                    hex_value(byte_at(line, n, i + 3)) >= 0) {
                    out[o++] = (char)(hex_value(byte_at(line, n, i + 2)) * 16 +
                                      hex_value(byte_at(line, n, i + 3)));
                    i += 3;
                } else if (c == '\\' && byte_at(line, n, i + 1)) {
                    int e = byte_at(line, n, ++i);
                    out[o++] = (char)(e == 'n'   ? '\n'
                                      : e == 'r' ? '\r'
                                      : e == 't' ? '\t'
                                      : e == 'b' ? '\b'
                                      : e == 'a' ? '\a'
                                                 : e);
                } else if (c == '"') {
                    /* the closing quote must be followed by a space or the end */
                    int next = byte_at(line, n, i + 1);
                    if (next && !is_space(next))
                        return -1;
                    done = true;
                } else if (c == 0) {
                    return -1;
                } else {
                    out[o++] = (char)c;
                }
            } else if (sq) {
                if (c == '\\' && byte_at(line, n, i + 1) == '\'') {
                    i++;
                    out[o++] = '\'';
                } else if (c == '\'') {
                    int next = byte_at(line, n, i + 1);
                    if (next && !is_space(next))
                        return -1;
                    done = true;
                } else if (c == 0) {
                    return -1;
                } else {
                    out[o++] = (char)c;
                }
            } else if (c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == 0) {
                done = true;
            } else if (c == '"') {
                dq = true;
            } else if (c == '\'') {
                sq = true;
            } else {
                out[o++] = (char)c;
            }
            if (i < n)
                i++;
        }
        if (!grow_args(p))
            return -2;
        p->args_[p->nargs_].p = out + start;
        p->args_[p->nargs_].len = o - start;
        p->nargs_++;
    }
}

static enum resp_status parse_inline(struct resp_parser *p, const char *buf, size_t len,
                                     size_t *used, const char **error)
{
    size_t nl = find_before_nul(buf, len, '\n');
    if (nl == len) {
        if (len > RESP_INLINE_MAX)
            return fail(p, RESP_ERR_INLINE_BIG, error);
        return RESP_NEED_MORE;
    }
    size_t line_len = nl > 0 && buf[nl - 1] == '\r' ? nl - 1 : nl;
    int rc = split_line(p, buf, line_len);
    if (rc == -1) {
        p->nargs_ = 0;
        return fail(p, RESP_ERR_QUOTES, error);
    }
    if (rc == -2)
        return nomem(p);
    p->argc = p->nargs_;
    p->argv = p->args_;
    p->nargs_ = 0;
    *used = nl + 1;
    return RESP_OK;
}

/* ---- multibulk commands (processMultibulkBuffer) ---- */

static enum resp_status expected_dollar(struct resp_parser *p, char got, const char **error)
{
    static const char head[] = "-ERR Protocol error: expected '$', got '";
    memcpy(p->errbuf_, head, sizeof head - 1);
    size_t n = sizeof head - 1;
    p->errbuf_[n++] = got == '\r' || got == '\n' ? ' ' : got;
    memcpy(p->errbuf_ + n, "'\r\n", 4);
    return fail(p, p->errbuf_, error);
}

enum resp_status resp_parse(struct resp_parser *p, const char *buf, size_t len,
                            bool authenticated, size_t *used, const char **error)
{
    *used = 0;
    if (p->busy_ && len < p->pos_) /* not the bytes given before: start over */
        resp_parser_reset(p);
    if (!p->busy_) {
        start_command(p);
        if (len == 0)
            return RESP_NEED_MORE;
        if (buf[0] != '*')
            return parse_inline(p, buf, len, used, error);

        size_t cr = find_before_nul(buf, len, '\r');
        if (cr == len) {
            if (len > RESP_INLINE_MAX)
                return fail(p, RESP_ERR_MBULK_BIG, error);
            return RESP_NEED_MORE;
        }
        if (cr + 2 > len) /* the byte after '\r' (taken to be '\n') */
            return RESP_NEED_MORE;
        long long n;
        if (!parse_ll(buf + 1, cr - 1, &n) || n > RESP_MAX_MULTIBULK)
            return fail(p, RESP_ERR_MBULK_LEN, error);
        if (n > RESP_UNAUTH_MAX_MULTIBULK && !authenticated)
            return fail(p, RESP_ERR_MBULK_UNAUTH, error);
        if (n <= 0) {
            *used = cr + 2;
            return RESP_OK;
        }
        p->busy_ = true;
        p->pos_ = cr + 2;
        p->left_ = n;
        p->bulklen_ = -1;
        p->nargs_ = 0;
    }

    while (p->left_ > 0) {
        size_t pos = p->pos_;
        if (p->bulklen_ < 0) {
            size_t avail = len - pos;
            size_t cr = find_before_nul(buf + pos, avail, '\r');
            if (cr == avail) {
                if (avail > RESP_INLINE_MAX)
                    return fail(p, RESP_ERR_BULK_BIG, error);
                return RESP_NEED_MORE;
            }
            if (cr + 2 > avail)
                return RESP_NEED_MORE;
            if (buf[pos] != '$')
                return expected_dollar(p, buf[pos], error);
            long long n;
            if (!parse_ll(buf + pos + 1, cr - 1, &n) || n < 0 ||
                (unsigned long long)n > p->max_bulk_)
                return fail(p, RESP_ERR_BULK_LEN, error);
            if (n > RESP_UNAUTH_MAX_BULK && !authenticated)
                return fail(p, RESP_ERR_BULK_UNAUTH, error);
            pos += cr + 2;
            p->pos_ = pos;
            p->bulklen_ = n;
        }
        size_t blen = (size_t)p->bulklen_;
        if (len - pos < blen + 2) { /* the bulk and the two bytes after it */
            *used = pos + blen + 2;
            return RESP_NEED_MORE;
        }
        if (!grow_args(p))
            return nomem(p);
        p->offs_[p->nargs_] = pos;
        p->args_[p->nargs_].len = blen;
        p->nargs_++;
        p->pos_ = pos + blen + 2;
        p->bulklen_ = -1;
        p->left_--;
    }

    for (size_t i = 0; i < p->nargs_; i++)
        p->args_[i].p = buf + p->offs_[i];
    p->argc = p->nargs_;
    p->argv = p->args_;
    *used = p->pos_;
    resp_parser_reset(p);
    return RESP_OK;
}

/* ---- replies ---- */

static int add(struct evbuffer *b, const void *p, size_t len)
{
    return evbuffer_add(b, p, len) == 0 ? 0 : -1;
}

static int add_header(struct evbuffer *b, char prefix, long long v)
{
    char buf[RESP_HEADER_MAX];
    return add(b, buf, resp_fmt_header(buf, prefix, v));
}

/* prefix + s + \r\n, in one evbuffer_add when short. */
static int add_line(struct evbuffer *b, const char *prefix, size_t plen, const char *s,
                    size_t len)
{
    char buf[256];
    if (plen + len + 2 <= sizeof buf) {
        memcpy(buf, prefix, plen);
        if (len)
            memcpy(buf + plen, s, len);
        memcpy(buf + plen + len, "\r\n", 2);
        return add(b, buf, plen + len + 2);
    }
    if (add(b, prefix, plen) < 0 || add(b, s, len) < 0)
        return -1;
    return add(b, "\r\n", 2);
}

int resp_add_simple(struct evbuffer *b, const char *s, size_t len)
{
    return add_line(b, "+", 1, s, len);
}

int resp_add_error(struct evbuffer *b, const char *msg, size_t len)
{
    if (len > 0 && msg[0] == '-')
        return add_line(b, "", 0, msg, len);
    return add_line(b, "-ERR ", 5, msg, len);
}

int resp_add_integer(struct evbuffer *b, long long v)
{
    return add_header(b, ':', v);
}

int resp_add_bulk(struct evbuffer *b, const void *p, size_t len)
{
    char buf[256];
    size_t h = resp_fmt_header(buf, '$', (long long)len);
    if (h + len + 2 <= sizeof buf) {
        if (len)
            memcpy(buf + h, p, len);
        memcpy(buf + h + len, "\r\n", 2);
        return add(b, buf, h + len + 2);
    }
    if (add(b, buf, h) < 0 || add(b, p, len) < 0)
        return -1;
    return add(b, "\r\n", 2);
}

int resp_add_null(struct evbuffer *b, int proto)
{
    return proto >= 3 ? add(b, "_\r\n", 3) : add(b, "$-1\r\n", 5);
}

int resp_add_null_array(struct evbuffer *b, int proto)
{
    return proto >= 3 ? add(b, "_\r\n", 3) : add(b, "*-1\r\n", 5);
}

int resp_add_array(struct evbuffer *b, size_t n)
{
    return add_header(b, '*', (long long)n);
}

int resp_add_map(struct evbuffer *b, int proto, size_t n)
{
    return proto >= 3 ? add_header(b, '%', (long long)n) : add_header(b, '*', (long long)(n * 2));
}

int resp_add_set(struct evbuffer *b, int proto, size_t n)
{
    return add_header(b, proto >= 3 ? '~' : '*', (long long)n);
}

int resp_add_push(struct evbuffer *b, int proto, size_t n)
{
    return add_header(b, proto >= 3 ? '>' : '*', (long long)n);
}

int resp_add_bool(struct evbuffer *b, int proto, bool v)
{
    if (proto >= 3)
        return add(b, v ? "#t\r\n" : "#f\r\n", 4);
    return add(b, v ? ":1\r\n" : ":0\r\n", 4);
}

/* addReplyDouble(): not on a hot path, so snprintf. */
int resp_add_double(struct evbuffer *b, int proto, double d)
{
    if (isinf(d)) {
        if (proto >= 3)
            return d > 0 ? add(b, ",inf\r\n", 6) : add(b, ",-inf\r\n", 7);
        return d > 0 ? resp_add_bulk(b, "inf", 3) : resp_add_bulk(b, "-inf", 4);
    }
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%.17g", d);
    if (n < 0 || (size_t)n >= sizeof buf)
        return -1;
    if (proto >= 3)
        return add_line(b, ",", 1, buf, (size_t)n);
    return resp_add_bulk(b, buf, (size_t)n);
}
