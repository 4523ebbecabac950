/* test_util.h - helpers shared by the cmocka unit tests in test/c.
 *
 * Every helper is `static inline` so a test file that does not use one still
 * builds with -Wall -Wextra -Werror.  Byte strings are length-counted
 * throughout (topic names and payloads may contain NUL), and mismatches are
 * printed with non-printable bytes escaped so a failing test says what it got.
 *
 *   B("lit")                    expands to  "lit", sizeof "lit" - 1  (keeps NULs)
 *   set_request(buf, cmd, data, len, noreply)
 *                               appends `set <cmd> 0 0 <len>[ noreply]\r\n<data>\r\n`
 *   add_entry(buf, topics, payload, len)
 *                               appends one publish entry `MESSAGE <topics> <len>\r\n<payload>\r\n`
 *   value_reply(buf, block, len)
 *                               appends the `get messages` reply for a block of entries
 *   assert_bytes_equal(got, got_len, exp, exp_len)     (exp, exp_len may be B("..."))
 *   assert_evbuffer_equal(evbuf, exp, exp_len)   compares the whole evbuffer (not drained)
 *   evbuffer_take(evbuf, &len)  returns a malloc'd copy of the contents and drains it
 *   tu_defer(fn, p) / tu_undefer(p) / tu_cleanup
 *                               fixtures register their destructor so that the
 *                               teardown tu_cleanup frees them even when an
 *                               assertion failed half-way (no LSan noise) */
#ifndef KRAKEN_TEST_UTIL_H
#define KRAKEN_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#define B(lit) (lit), (sizeof(lit) - 1)

/* Prints bytes with C escapes for anything non-printable (at most limit bytes). */
static inline void tu_print_escaped(const char *label, const void *p, size_t len)
{
    const unsigned char *s = p;
    size_t limit = len > 400 ? 400 : len;
    char buf[400 * 4 + 64];
    size_t o = 0;
    for (size_t i = 0; i < limit; i++) {
        unsigned char c = s[i];
        if (c == '\r') {
            buf[o++] = '\\';
            buf[o++] = 'r';
        } else if (c == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else if (c == '\\') {
            buf[o++] = '\\';
            buf[o++] = '\\';
        } else if (c < 32 || c >= 127) {
            o += (size_t)snprintf(buf + o, sizeof buf - o, "\\x%02x", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o] = 0;
    print_error("%s (%zu bytes): \"%s\"%s\n", label, len, buf, len > limit ? "..." : "");
}

static inline void tu_bytes_equal(const void *got, size_t got_len, const void *exp,
                                  size_t exp_len, const char *file, int line)
{
    if (got_len == exp_len && (exp_len == 0 || memcmp(got, exp, exp_len) == 0))
        return;
    size_t i = 0;
    while (i < got_len && i < exp_len && ((const char *)got)[i] == ((const char *)exp)[i])
        i++;
    print_error("byte strings differ at offset %zu\n", i);
    tu_print_escaped("expected", exp, exp_len);
    tu_print_escaped("got     ", got, got_len);
    _fail(file, line);
}

/* Variadic so that B("literal") can stand for (exp, exp_len). */
#define assert_bytes_equal(...) tu_bytes_equal(__VA_ARGS__, __FILE__, __LINE__)

static inline void tu_evbuffer_equal(struct evbuffer *b, const void *exp, size_t exp_len,
                                     const char *file, int line)
{
    size_t len = evbuffer_get_length(b);
    const void *p = "";
    if (len)
        p = evbuffer_pullup(b, (ev_ssize_t)len);
    tu_bytes_equal(p, len, exp, exp_len, file, line);
}

#define assert_evbuffer_equal(...) tu_evbuffer_equal(__VA_ARGS__, __FILE__, __LINE__)

/* Compares the evbuffer with a second evbuffer holding the expected bytes. */
#define assert_evbuffers_equal(b, expb)                                                  \
    tu_evbuffer_equal((b), evbuffer_pullup((expb), -1), evbuffer_get_length(expb),      \
                      __FILE__, __LINE__)

/* Returns a malloc'd copy of b's contents (NUL-terminated for convenience) and drains b. */
static inline char *evbuffer_take(struct evbuffer *b, size_t *len)
{
    size_t n = evbuffer_get_length(b);
    char *p = malloc(n + 1);
    assert_non_null(p);
    evbuffer_remove(b, p, n);
    p[n] = 0;
    if (len)
        *len = n;
    return p;
}

/* `set <cmd> <flags> <exptime> <bytes>[ noreply]\r\n<data>\r\n` */
static inline void set_request(struct evbuffer *b, const char *cmd, const void *data,
                               size_t len, bool noreply)
{
    evbuffer_add_printf(b, "set %s 0 0 %zu%s\r\n", cmd, len, noreply ? " noreply" : "");
    evbuffer_add(b, data, len);
    evbuffer_add(b, "\r\n", 2);
}

/* One publish entry; topics is the raw space-separated list (length-counted). */
static inline void add_entry_n(struct evbuffer *b, const void *topics, size_t tlen,
                               const void *payload, size_t len)
{
    evbuffer_add(b, "MESSAGE ", 8);
    evbuffer_add(b, topics, tlen);
    evbuffer_add_printf(b, " %zu\r\n", len);
    evbuffer_add(b, payload, len);
    evbuffer_add(b, "\r\n", 2);
}

static inline void add_entry(struct evbuffer *b, const char *topics, const void *payload,
                             size_t len)
{
    add_entry_n(b, topics, strlen(topics), payload, len);
}

/* The `get messages` reply for a non-empty block of serialised entries. */
static inline void value_reply(struct evbuffer *b, const void *block, size_t len)
{
    evbuffer_add_printf(b, "VALUE messages 0 %zu\r\n", len - 2);
    evbuffer_add(b, block, len);
    evbuffer_add(b, "END\r\n", 5);
}

/* A malloc'd copy of exactly len bytes, so ASan flags any read past the end. */
static inline char *exact_copy(const void *p, size_t len)
{
    char *c = malloc(len ? len : 1);
    assert_non_null(c);
    if (len)
        memcpy(c, p, len);
    return c;
}

/* Finds needle in haystack (length-counted). */
static inline bool bytes_contain(const void *hay, size_t hlen, const char *needle)
{
    size_t n = strlen(needle);
    if (n > hlen)
        return false;
    for (size_t i = 0; i + n <= hlen; i++)
        if (memcmp((const char *)hay + i, needle, n) == 0)
            return true;
    return false;
}

/* ---- cleanup of fixtures left behind by a failed test ---- */

#define TU_MAX_DEFER 16

struct tu_deferred {
    void (*fn)(void *);
    void *p;
};

static struct tu_deferred tu_deferred[TU_MAX_DEFER];

static inline void tu_defer(void (*fn)(void *), void *p)
{
    for (int i = 0; i < TU_MAX_DEFER; i++)
        if (!tu_deferred[i].p) {
            tu_deferred[i].fn = fn;
            tu_deferred[i].p = p;
            return;
        }
    fail_msg("tu_defer: too many live fixtures");
}

static inline void tu_undefer(void *p)
{
    for (int i = 0; i < TU_MAX_DEFER; i++)
        if (tu_deferred[i].p == p)
            tu_deferred[i].p = NULL;
}

/* cmocka teardown: destroys whatever fixtures the test did not. */
static inline int tu_cleanup(void **state)
{
    (void)state;
    for (int i = TU_MAX_DEFER - 1; i >= 0; i--) {
        void *p = tu_deferred[i].p;
        if (p) {
            tu_deferred[i].p = NULL;
            tu_deferred[i].fn(p);
        }
    }
    return 0;
}

#define tu_test(f) cmocka_unit_test_teardown(f, tu_cleanup)

#endif
