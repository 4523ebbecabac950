/* redis_internal.h - what proto_redis.c (framing, dispatch, connection
 * commands), redis_pubsub.c (the Pub/Sub commands) and redis_deliver.c (the
 * delivery of messages) share.  Nothing else includes it. */
#ifndef KRAKEN_REDIS_INTERNAL_H
#define KRAKEN_REDIS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "resp.h"

/* Announced by HELLO and INFO: the Redis version whose Pub/Sub surface this
 * implements, byte for byte; client libraries gate features on it. */
#define REDIS_COMPAT_VERSION "7.0.15"

struct redis_state {
    struct resp_parser parser;
    size_t need;              /* bytes needed before parsing again (0: unknown) */
    int proto;                /* 2 or 3 (HELLO) */
    bool authenticated;
    bool has_horizon;         /* KRAKEN.REGISTER: the next SUBSCRIBE is retroactive */
    uint64_t horizon_seq;
    int64_t horizon_time;     /* its Unix second (for channels fetched upstream) */
    uint32_t nchannels;       /* channel subscriptions (patterns: sub.npatterns) */
    uint32_t nshard;          /* shard channel subscriptions */
    char name[128];           /* CLIENT SETNAME; empty: none */
    bool failed;              /* a reply could not be queued: close */
};

static inline struct redis_state *redis_st(struct conn *c)
{
    return conn_pstate(c);
}

/* A parsed command: argv[0] is the name. */
struct redis_cmd {
    const struct resp_arg *argv;
    size_t argc;
};

/* Reply helpers: a failed append marks the connection failed. */
void redis_add(struct conn *c, int rc);
void redis_error(struct conn *c, const char *msg);   /* -ERR msg, or msg if it starts with '-' */

/* Pub/Sub commands (redis_pubsub.c). */
void redis_subscribe(struct conn *c, const struct redis_cmd *cmd);    /* SUBSCRIBE, SSUBSCRIBE */
void redis_unsubscribe(struct conn *c, const struct redis_cmd *cmd);  /* UNSUBSCRIBE, SUNSUBSCRIBE */
void redis_psubscribe(struct conn *c, const struct redis_cmd *cmd);
void redis_punsubscribe(struct conn *c, const struct redis_cmd *cmd);
void redis_publish(struct conn *c, const struct redis_cmd *cmd);      /* PUBLISH, SPUBLISH */
void redis_pubsub(struct conn *c, const struct redis_cmd *cmd);       /* PUBSUB <sub> */
void redis_retro_subscribe(struct conn *c, const struct redis_cmd *cmd); /* KRAKEN.RETROSUBSCRIBE */
#define RETRO_NOT_FOUND "-NOTFOUND horizon older than retained messages"
void redis_retro_refused(struct conn *c);
/* Drops every subscription without replies (RESET). */
void redis_unsubscribe_all_silently(struct conn *c);
/* Formats queued entries as message/pmessage/smessage frames into c->out
 * (redis_deliver.c):
 * all of them when `all`, else until c->out holds CONN_PUSH_HIGH bytes. */
void redis_deliver_queue(struct conn *c, bool all);
static inline bool redis_subscribed(struct conn *c)
{
    return redis_st(c)->nchannels + redis_st(c)->nshard + c->sub.npatterns > 0;
}

/* Case-insensitive comparison of an argument with a lowercase name. */
bool redis_arg_is(const struct resp_arg *a, const char *lower);

#endif
