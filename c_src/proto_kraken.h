/* proto_kraken.h - Kraken's memcached-shaped text protocol (the original's
 * wire protocol, plus the push-mode extension); see proto_kraken.c. */
#ifndef KRAKEN_PROTO_KRAKEN_H
#define KRAKEN_PROTO_KRAKEN_H

#include "conn.h"

extern const struct proto_ops proto_kraken;

struct entry;

/* Appends the `VALUE retro` blocks of a link_retro answer (proto_kraken.c)
 * to out: the n entries v (in publish order), each listing its topics whose
 * mark is `mark`.  Returns 0; -2 when the answer would pass
 * max_client_queue_bytes (nothing written); -1 when out of memory. */
int kraken_retro_blocks(struct engine *eng, struct evbuffer *out, struct entry *const *v,
                        size_t n, uint64_t mark);

#endif
