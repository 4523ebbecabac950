/* protocol.h - the Kraken wire protocol: parsing and formatting, no I/O.
 *
 * Kraken speaks a memcached-shaped text protocol (SPEC section 1).  This module
 * works on byte strings only, so it can be unit-tested and fuzzed without a
 * socket:
 *
 *   proto_parse_request()  frames one request at the front of a buffer:
 *                          a command line, plus the data block for `set`;
 *   proto_next_topic()     walks a space-separated topic list;
 *   proto_parse_retro()    splits a retro_subscribe block into horizon + topics;
 *   proto_next_entry()     walks the `MESSAGE <topics> <n>\r\n<payload>\r\n`
 *                          entries of a publish block;
 *   proto_fmt_*()          format replies.
 *
 * Nothing here allocates.  Topic names and payloads are length-counted byte
 * slices pointing into the caller's buffer (names may contain NUL). */
#ifndef KRAKEN_PROTOCOL_H
#define KRAKEN_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Command lines (everything up to the first newline) are never longer than
 * this, nor than the request size limit. */
#define PROTO_MAX_LINE 8192

enum proto_cmd {
    PROTO_SET_REGISTER,
    PROTO_SET_SUBSCRIBE,
    PROTO_SET_RETRO_SUBSCRIBE,
    PROTO_SET_UNSUBSCRIBE,
    PROTO_SET_PUBLISH,
    PROTO_SET_PUSH,  /* extension: `on` / `off` push mode */
    PROTO_SET_LINK_RETRO, /* extension for cluster links: retro_subscribe answered inline */
    PROTO_GET_MESSAGES,
    PROTO_QUIT,
    PROTO_VERSION,
    PROTO_STATS,
    PROTO_SET_PEER,  /* extension: a cluster node's link names itself (docs/cluster.md) */
    PROTO_SET_CHILD, /* extension: the link of a proxy below this node names itself */
    PROTO_SET_LINK_ENTERED, /* extension for cluster links: link_retro, only what entered here */
    PROTO_SET_LINK_PSUBSCRIBE,   /* extension for cluster links: Redis patterns held at a core */
    PROTO_SET_LINK_PUNSUBSCRIBE, /* ... and dropped */
    PROTO_SET_LINK_SSUBSCRIBE,   /* extension for cluster links: Redis shard channels at their owner */
    PROTO_SET_LINK_SUNSUBSCRIBE, /* ... dropped */
    PROTO_SET_LINK_SPUBLISH,     /* ... and published there */
    PROTO_SET_LINK_FORWARD,      /* extension for cluster links: a peer's entries forwarded, */
    PROTO_SET_LINK_SFORWARD,     /* naming their origin (channels; Redis shard channels) */
};

enum proto_status {
    PROTO_OK,        /* a whole request was framed; *used bytes consumed */
    PROTO_NEED_MORE, /* incomplete; *used is the total size needed, when known, else 0 */
    PROTO_ERROR,     /* bad request; *error is the full reply line to send before closing */
};

struct proto_request {
    enum proto_cmd cmd;
    bool noreply;      /* `set ... noreply`: no reply on success */
    const char *data;  /* data block of a `set`, without its trailing \r\n */
    size_t data_len;
};

struct proto_slice {
    const char *p;
    size_t len;
};

/* One publish entry: topics as the raw space-separated list, and the payload. */
struct proto_entry {
    struct proto_slice topics;
    struct proto_slice payload;
};

/* Frames the request at the front of buf[0..len).  max_request bounds the
 * whole request (command line + data block).  A subscribe, unsubscribe or
 * retro_subscribe whose topics contain CR or LF is an error here
 * (`CLIENT_ERROR bad topic: ...`): no publish could ever reach such a topic. */
enum proto_status proto_parse_request(const char *buf, size_t len, size_t max_request,
                                      struct proto_request *req, size_t *used,
                                      const char **error);

/* Topic list iteration: returns true and sets *topic for each non-empty
 * space-separated token of [*cur, end), advancing *cur. */
bool proto_next_topic(const char **cur, const char *end, struct proto_slice *topic);

/* retro_subscribe block: "<horizon>\r\n<topic> <topic> ...".  Returns 0, or -1
 * with *error set to the reply line. */
int proto_parse_retro(const char *data, size_t len, int64_t *horizon,
                      struct proto_slice *topics, const char **error);

/* Publish block iteration: returns 1 and fills *entry, 0 at the end of the
 * block, -1 with *error set on a malformed entry (a topic containing CR
 * among them).  *cur advances. */
int proto_next_entry(const char **cur, const char *end, struct proto_entry *entry,
                     const char **error);
/* The same for a block pushed on a cluster link, whose entries may also be
 * `SMESSAGE ...` (Redis shard channels' entries: *shard set). */
int proto_next_link_entry(const char **cur, const char *end, struct proto_entry *entry,
                          bool *shard, const char **error);

/* Parses an unsigned decimal number made only of digits; -1 when not one or
 * when it exceeds max. */
int proto_parse_u64(const char *p, size_t len, uint64_t max, uint64_t *out);

/* Writes "VALUE messages 0 <n>\r\n" into buf (at least 48 bytes); returns its length. */
size_t proto_fmt_value_line(char *buf, size_t block_len);
/* Number of decimal digits of n. */
size_t proto_digits(uint64_t n);
/* Writes n in decimal (no NUL); returns the number of bytes written. */
size_t proto_fmt_u64(char *buf, uint64_t n);

#define PROTO_STORED "STORED\r\n"
#define PROTO_NOT_FOUND "NOT_FOUND\r\n"
#define PROTO_END "END\r\n"
#define PROTO_TOO_MANY_CLIENTS "SERVER_ERROR Too many clients\r\n"
#define PROTO_ERR_TOO_LARGE "CLIENT_ERROR request too large\r\n"

#endif
