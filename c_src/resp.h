/* resp.h - the Redis protocol (RESP2 and RESP3): request parsing, reply
 * writing and glob matching, no sockets.
 *
 * Kraken answers Redis clients beside its own text protocol; every byte it
 * sends them must be what redis-server 7.0 would send.  This module holds
 * the parts that need no socket, so they can be unit-tested and fuzzed alone:
 *
 *   resp_parse()        frames ONE command at the front of a buffer, either
 *                       a multibulk array (`*<n>\r\n$<len>\r\n<bytes>\r\n...`)
 *                       or an inline line split like Redis's sdssplitargs(),
 *                       with Redis 7.0's limits and error replies
 *                       (networking.c processMultibulkBuffer/processInlineBuffer);
 *   resp_add_*()        append one reply element to a libevent evbuffer;
 *   resp_fmt_*()        format headers and integers into a caller's buffer;
 *
 * Every protocol error closes the connection after its reply, as in Redis,
 * so the parser never resynchronises after one.  The parser allocates only
 * when a command has more than RESP_SMALL_ARGS arguments, or for an inline
 * command (a copy of its unquoted arguments); it keeps those arrays for the
 * next command (up to a bound) so a steady stream of commands allocates
 * nothing. */
#ifndef KRAKEN_RESP_H
#define KRAKEN_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* Redis 7.0's limits (server.h, config.c). */
#define RESP_INLINE_MAX (64 * 1024)                /* PROTO_INLINE_MAX_SIZE */
#define RESP_MAX_BULK ((size_t)512 * 1024 * 1024)  /* proto-max-bulk-len default */
#define RESP_MAX_MULTIBULK 2147483647LL            /* INT_MAX (6.2 had 1024*1024) */
#define RESP_UNAUTH_MAX_MULTIBULK 10               /* when authentication is required */
#define RESP_UNAUTH_MAX_BULK 16384

/* The error replies, byte for byte as redis-server writes them. */
#define RESP_ERR_MBULK_LEN "-ERR Protocol error: invalid multibulk length\r\n"
#define RESP_ERR_MBULK_UNAUTH "-ERR Protocol error: unauthenticated multibulk length\r\n"
#define RESP_ERR_BULK_LEN "-ERR Protocol error: invalid bulk length\r\n"
#define RESP_ERR_BULK_UNAUTH "-ERR Protocol error: unauthenticated bulk length\r\n"
#define RESP_ERR_MBULK_BIG "-ERR Protocol error: too big mbulk count string\r\n"
#define RESP_ERR_BULK_BIG "-ERR Protocol error: too big bulk count string\r\n"
#define RESP_ERR_INLINE_BIG "-ERR Protocol error: too big inline request\r\n"
#define RESP_ERR_QUOTES "-ERR Protocol error: unbalanced quotes in request\r\n"
/* plus "-ERR Protocol error: expected '$', got '<c>'\r\n", where <c> is the
 * byte found (\r and \n shown as a space, as addReplyErrorFormat does). */

#define RESP_SMALL_ARGS 16

enum resp_status {
    RESP_OK,        /* a whole command was framed: p->argc, p->argv; *used bytes consumed.
                       argc may be 0 (empty inline line, `*0`, `*-1`): consume and go on */
    RESP_NEED_MORE, /* incomplete: call again with the same bytes and more.  *used is,
                       when known, how many bytes are needed before that is useful
                       (> len), else 0 */
    RESP_ERROR,     /* protocol error: *error is the whole reply (a NUL-terminated
                       "-ERR Protocol error: ...\r\n"); send it, then close */
    RESP_NOMEM,     /* the parser could not grow its arrays: close the connection */
};

/* One argument: points into the caller's buffer (multibulk) or into the
 * parser's scratch copy (inline).  Valid until the next resp_parse() call and
 * for as long as the buffer is neither changed nor moved. */
struct resp_arg {
    const char *p;
    size_t len;
};

/* Private fields end in an underscore; read only argc and argv. */
struct resp_parser {
    size_t argc;
    struct resp_arg *argv;

    size_t max_bulk_;        /* min(max_bulk given to init, RESP_MAX_BULK) */
    /* A multibulk command in progress (the bytes before pos_ stay unchanged
     * between calls, so parsing resumes where it stopped). */
    bool busy_;
    size_t pos_;             /* offset of the first byte not yet parsed */
    long long left_;         /* bulks still to read */
    long long bulklen_;      /* length of the bulk being read; -1: header not read */
    size_t nargs_;           /* bulks read so far */
    size_t cap_;             /* capacity of args_/offs_ */
    struct resp_arg *args_;  /* small_args_ or heap */
    size_t *offs_;           /* offsets of the bulks read so far (small_offs_ or heap) */
    char *scratch_;          /* inline arguments, unquoted */
    size_t scratch_cap_;
    char errbuf_[64];
    struct resp_arg small_args_[RESP_SMALL_ARGS];
    size_t small_offs_[RESP_SMALL_ARGS];
};

/* max_bulk: the largest bulk accepted (our max_request_bytes; 0 for Redis's
 * 512 MB); larger ones are "invalid bulk length", like proto-max-bulk-len. */
void resp_parser_init(struct resp_parser *p, size_t max_bulk);
void resp_parser_free(struct resp_parser *p);
/* Forgets a command in progress (the caller dropped the bytes it had given). */
void resp_parser_reset(struct resp_parser *p);

/* Frames the command at the front of buf[0..len).  authenticated: false when
 * the client must still AUTH (Redis's authRequired()), which limits it to 10
 * arguments of at most 16384 bytes.  After RESP_NEED_MORE the next call must
 * pass the same bytes again (possibly moved) followed by more; call
 * resp_parser_reset() to start over on other bytes.  Like Redis, which
 * searches its NUL-terminated query buffer with strchr(), the search for the
 * '\n' ending an inline command or the '\r' ending a header line stops at a
 * NUL byte: the request then stays incomplete until more than 64 KiB wait
 * (the "too big" errors).  The whole command must stay in the buffer, so
 * the caller bounds what it buffers (Redis: client-query-buffer-limit); the
 * parser's arrays grow with the arguments received (24 bytes for each, of
 * at least 6 bytes of input), never with the count announced. */
enum resp_status resp_parse(struct resp_parser *p, const char *buf, size_t len,
                            bool authenticated, size_t *used, const char **error);

/* ---- replies ----
 * proto is the connection's protocol version, 2 or 3 (HELLO).  Each function
 * returns 0, or -1 when the evbuffer could not grow (the reply may then be
 * partly written: close the connection). */
int resp_add_simple(struct evbuffer *b, const char *s, size_t len);   /* +s */
/* -ERR <msg>, or <msg> as is when it starts with '-' (addReplyError); msg
 * holds no \r or \n (replace them with spaces, as addReplyErrorFormat does). */
int resp_add_error(struct evbuffer *b, const char *msg, size_t len);
int resp_add_integer(struct evbuffer *b, long long v);                /* :v */
int resp_add_bulk(struct evbuffer *b, const void *p, size_t len);     /* $len bytes */
int resp_add_null(struct evbuffer *b, int proto);        /* $-1 / _ */
int resp_add_null_array(struct evbuffer *b, int proto);  /* *-1 / _ */
int resp_add_array(struct evbuffer *b, size_t n);        /* *n */
int resp_add_map(struct evbuffer *b, int proto, size_t n);   /* %n / *2n */
int resp_add_set(struct evbuffer *b, int proto, size_t n);   /* ~n / *n */
int resp_add_push(struct evbuffer *b, int proto, size_t n);  /* >n / *n */
int resp_add_bool(struct evbuffer *b, int proto, bool v);    /* #t #f / :1 :0 */
int resp_add_double(struct evbuffer *b, int proto, double d); /* ,%.17g / bulk */

/* Longest output of resp_fmt_header(): a prefix, 20 characters, \r\n. */
#define RESP_HEADER_MAX 24
/* Writes "<prefix><v>\r\n" (no NUL); returns its length.  E.g. ('*', 3),
 * ('$', len), (':', v). */
size_t resp_fmt_header(char *buf, char prefix, long long v);
/* Writes v in decimal (no NUL, at most 20 bytes); returns its length. */
size_t resp_fmt_ll(char *buf, long long v);

#endif
