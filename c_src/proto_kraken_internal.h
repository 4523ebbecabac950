/* proto_kraken_internal.h - what proto_kraken.c (the Kraken protocol: the
 * clients' requests, push mode) and proto_kraken_link.c (the requests only
 * cluster links send: `set peer`, `set child`, `link_*`) share.  Nothing
 * else includes it. */
#ifndef KRAKEN_PROTO_KRAKEN_INTERNAL_H
#define KRAKEN_PROTO_KRAKEN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "kraken/protocol.h"
#include "topic.h"

/* proto_kraken.c */
/* Writes the `get messages` reply for everything queued to c; false when
 * out of memory. */
bool kraken_write_messages(struct conn *c);
/* `set publish` (and a link's publishes) of namespace ns: the whole block
 * is parsed first, so a malformed one publishes nothing.  The reply, NULL
 * when out of memory, or *error (the connection closes). */
const char *kraken_publish(struct conn *c, const struct proto_request *req, int64_t now_s,
                           enum topic_ns ns, const char **error);

/* proto_kraken_link.c: each returns the reply as execute() does (NULL when
 * out of memory; *error for one that closes the connection). */
const char *kraken_peer(struct conn *c, const struct proto_request *req);
const char *kraken_child(struct conn *c, const struct proto_request *req);
const char *kraken_link_retro(struct conn *c, const struct proto_request *req,
                              const char **error);
const char *kraken_link_entered(struct conn *c, const struct proto_request *req);
/* link_psubscribe, link_punsubscribe, link_ssubscribe, link_sunsubscribe. */
const char *kraken_link_names(struct conn *c, const struct proto_request *req);
const char *kraken_link_forward(struct conn *c, const struct proto_request *req,
                                enum topic_ns ns, const char **error);
/* proto_ops.retro_answer (cluster_relay.c's relayed answers). */
int kraken_retro_answer(struct conn *c, struct evbuffer *out, const struct qitem *v, size_t n);

#endif
