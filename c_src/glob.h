/* glob.h - Redis's glob patterns (PSUBSCRIBE, PUBSUB CHANNELS <pattern>).
 *
 * The rules of Redis 7.0's stringmatchlen: `*` any run of bytes, `?` one
 * byte, `[abc]` `[^abc]` `[a-z]` a set, `\x` the byte x; byte-wise, case
 * sensitive, and protected against exponential patterns (nesting limit and
 * Redis's "skip longer matches" cut). */
#ifndef KRAKEN_GLOB_H
#define KRAKEN_GLOB_H

#include <stdbool.h>
#include <stddef.h>

bool glob_match(const char *pat, size_t plen, const char *str, size_t slen);

#endif
