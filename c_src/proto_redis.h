/* proto_redis.h - the Redis protocol (RESP2/RESP3 Pub/Sub) over one
 * connection; see proto_redis.c, redis_pubsub.c and redis_deliver.c. */
#ifndef KRAKEN_PROTO_REDIS_H
#define KRAKEN_PROTO_REDIS_H

#include "conn.h"

extern const struct proto_ops proto_redis;

#endif
