/* redis_pubsub.c - Redis's Pub/Sub commands over the shared router (their
 * delivery as Redis frames is redis_deliver.c).
 *
 * One topic space: a channel is a Kraken topic (namespace TOPIC_NS_CHANNEL),
 * so Kraken publishes reach Redis subscribers and Redis publishes reach
 * Kraken subscribers; shard channels (SSUBSCRIBE/SPUBLISH) are a namespace
 * of their own, as in Redis.  A Redis PUBLISH is an entry with one topic and
 * no excluded publisher (a RESP3 client subscribed to its own channel gets
 * its message, as with Redis); it is retained like any entry, so
 * retro_subscribe sees it. */
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "cluster.h"
#include "engine.h"
#include "entry.h"
#include "glob.h"
#include "log.h"
#include "redis_internal.h"

/* ---- subscription replies ---- */

/* `*3 $<kind> $<name> :<count>` (`>3` in RESP3); a NULL name is RESP's null. */
static void add_sub_reply(struct conn *c, const char *kind, const char *name, size_t len,
                          long long count)
{
    struct redis_state *rs = redis_st(c);
    redis_add(c, resp_add_push(c->out, rs->proto, 3));
    redis_add(c, resp_add_bulk(c->out, kind, strlen(kind)));
    if (name)
        redis_add(c, resp_add_bulk(c->out, name, len));
    else
        redis_add(c, resp_add_null(c->out, rs->proto));
    redis_add(c, resp_add_integer(c->out, count));
}

static bool is_shard(const struct redis_cmd *cmd)
{
    const struct resp_arg *a = &cmd->argv[0];
    return redis_arg_is(a, "ssubscribe") || redis_arg_is(a, "sunsubscribe") ||
           redis_arg_is(a, "spublish");
}

static long long sub_count(struct conn *c, bool shard)
{
    return shard ? redis_st(c)->nshard : redis_st(c)->nchannels + c->sub.npatterns;
}

static void nomem(struct conn *c)
{
    redis_st(c)->failed = true;
}

/* In a cluster, channels travel on the links, space-separated on lines: a
 * command naming one that cannot (cluster_name_travels()) is refused whole
 * before anything of it is done, with one -ERR (SUBSCRIBE with several
 * channels: none is subscribed, no subscribe reply).  A single node takes
 * any bytes, as Redis does.  Returns false after replying. */
static bool channels_travel(struct conn *c, const struct redis_cmd *cmd, size_t first,
                            size_t end, const char *error)
{
    if (!cluster_active())
        return true;
    for (size_t i = first; i < end; i++)
        if (!cluster_name_travels(cmd->argv[i].p, cmd->argv[i].len)) {
            redis_error(c, error);
            return false;
        }
    return true;
}

/* In a cluster, a SUBSCRIBE (or KRAKEN.RETROSUBSCRIBE) naming a channel of
 * a core the view names but that is not live here is refused whole, with
 * one -ERR (cluster_subscribable()).  Returns false after replying. */
static bool channels_available(struct conn *c, const struct redis_cmd *cmd, size_t first)
{
    if (!cluster_active())
        return true;
    for (size_t i = first; i < cmd->argc; i++) {
        struct proto_slice ch = {cmd->argv[i].p, cmd->argv[i].len};
        if (!cluster_subscribable(&ch, 1)) {
            redis_error(c, CLUSTER_ERR_NOT_SUBSCRIBED);
            return false;
        }
    }
    return true;
}

void redis_subscribe(struct conn *c, const struct redis_cmd *cmd)
{
    struct redis_state *rs = redis_st(c);
    bool shard = is_shard(cmd);
    enum topic_ns ns = shard ? TOPIC_NS_SHARD : TOPIC_NS_CHANNEL;
    /* Shard channels travel as channels do, when clustered (cluster_shard.c). */
    bool travels = !shard || cluster_shards_travel();
    if (travels && !channels_travel(c, cmd, 1, cmd->argc, CLUSTER_ERR_CHANNEL_NAME))
        return; /* (a KRAKEN.REGISTER horizon stays for the next SUBSCRIBE) */
    if (travels && !channels_available(c, cmd, 1))
        return;
    if (rs->has_horizon && !shard) {
        redis_retro_subscribe(c, cmd);
        return;
    }
    for (size_t i = 1; i < cmd->argc; i++) {
        int rc = router_subscribe_ns(&c->eng->router, &c->sub, ns, cmd->argv[i].p,
                                     cmd->argv[i].len);
        if (rc < 0) {
            nomem(c);
            return;
        }
        if (rc > 0)
            *(shard ? &rs->nshard : &rs->nchannels) += 1;
        add_sub_reply(c, shard ? "ssubscribe" : "subscribe", cmd->argv[i].p, cmd->argv[i].len,
                      sub_count(c, shard));
    }
}

struct unsub_all {
    struct conn *c;
    enum topic_ns ns;
    struct topic **v;
    size_t n, cap;
    bool failed;
};

static void collect(const struct topic *t, void *arg)
{
    struct unsub_all *u = arg;
    if (t->ns != u->ns || u->failed)
        return;
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 16;
        struct topic **v = realloc(u->v, cap * sizeof *v);
        if (!v) {
            u->failed = true;
            return;
        }
        u->v = v;
        u->cap = cap;
    }
    u->v[u->n++] = (struct topic *)t;
}

/* Unsubscribes from every topic of namespace ns; replies when `reply`. */
static void unsubscribe_all(struct conn *c, enum topic_ns ns, bool reply)
{
    struct redis_state *rs = redis_st(c);
    bool shard = ns == TOPIC_NS_SHARD;
    const char *kind = shard ? "sunsubscribe" : "unsubscribe";
    struct unsub_all u = {c, ns, NULL, 0, 0, false};
    subscriber_foreach_topic(&c->sub, collect, &u);
    if (u.failed) {
        free(u.v);
        nomem(c);
        return;
    }
    for (size_t i = 0; i < u.n; i++) {
        /* Copy the name: the topic may be freed by the unsubscribe. */
        size_t len = u.v[i]->len;
        char small[256];
        char *name = len <= sizeof small ? small : malloc(len);
        if (!name) {
            nomem(c);
            break;
        }
        memcpy(name, u.v[i]->name, len);
        router_unsubscribe_ns(&c->eng->router, &c->sub, ns, name, len);
        *(shard ? &rs->nshard : &rs->nchannels) -= 1;
        if (reply)
            add_sub_reply(c, kind, name, len, sub_count(c, shard));
        if (name != small)
            free(name);
    }
    free(u.v);
    if (reply && u.n == 0)
        add_sub_reply(c, kind, NULL, 0, sub_count(c, shard));
}

void redis_unsubscribe(struct conn *c, const struct redis_cmd *cmd)
{
    struct redis_state *rs = redis_st(c);
    bool shard = is_shard(cmd);
    enum topic_ns ns = shard ? TOPIC_NS_SHARD : TOPIC_NS_CHANNEL;
    if (cmd->argc == 1) {
        unsubscribe_all(c, ns, true);
        return;
    }
    for (size_t i = 1; i < cmd->argc; i++) {
        if (router_unsubscribe_ns(&c->eng->router, &c->sub, ns, cmd->argv[i].p,
                                  cmd->argv[i].len) > 0)
            *(shard ? &rs->nshard : &rs->nchannels) -= 1;
        add_sub_reply(c, shard ? "sunsubscribe" : "unsubscribe", cmd->argv[i].p,
                      cmd->argv[i].len, sub_count(c, shard));
    }
}

void redis_psubscribe(struct conn *c, const struct redis_cmd *cmd)
{
    /* In a cluster a pattern travels to every core (cluster_pattern.c):
     * the channels' rules, and every owner must be reachable. */
    if (!channels_travel(c, cmd, 1, cmd->argc, CLUSTER_ERR_PATTERN))
        return;
    if (cluster_active() && !cluster_pattern_subscribable()) {
        redis_error(c, CLUSTER_ERR_NOT_SUBSCRIBED);
        return;
    }
    for (size_t i = 1; i < cmd->argc; i++) {
        if (router_psubscribe(&c->eng->router, &c->sub, cmd->argv[i].p, cmd->argv[i].len) < 0) {
            nomem(c);
            return;
        }
        add_sub_reply(c, "psubscribe", cmd->argv[i].p, cmd->argv[i].len, sub_count(c, false));
    }
}

void redis_punsubscribe(struct conn *c, const struct redis_cmd *cmd)
{
    if (cmd->argc == 1) {
        if (c->sub.npatterns == 0) {
            add_sub_reply(c, "punsubscribe", NULL, 0, sub_count(c, false));
            return;
        }
        while (c->sub.npatterns) {
            size_t len;
            const char *p = pattern_name(c->sub.patterns[0], &len);
            char small[256];
            char *name = len <= sizeof small ? small : malloc(len);
            if (!name) {
                nomem(c);
                return;
            }
            memcpy(name, p, len);
            router_punsubscribe(&c->eng->router, &c->sub, name, len);
            add_sub_reply(c, "punsubscribe", name, len, sub_count(c, false));
            if (name != small)
                free(name);
        }
        return;
    }
    for (size_t i = 1; i < cmd->argc; i++) {
        router_punsubscribe(&c->eng->router, &c->sub, cmd->argv[i].p, cmd->argv[i].len);
        add_sub_reply(c, "punsubscribe", cmd->argv[i].p, cmd->argv[i].len, sub_count(c, false));
    }
}

void redis_unsubscribe_all_silently(struct conn *c)
{
    unsubscribe_all(c, TOPIC_NS_CHANNEL, false);
    unsubscribe_all(c, TOPIC_NS_SHARD, false);
    router_punsubscribe_all(&c->eng->router, &c->sub);
}

void redis_publish(struct conn *c, const struct redis_cmd *cmd)
{
    bool shard = is_shard(cmd);
    struct proto_slice topic = {cmd->argv[1].p, cmd->argv[1].len};
    struct router_publish_result res;
    bool travels = !shard || cluster_shards_travel();
    if (travels && !channels_travel(c, cmd, 1, 2, CLUSTER_ERR_CHANNEL_NAME)) /* (not the message) */
        return;
    if (travels &&
        !(shard ? cluster_shard_reachable(&topic, 1) : cluster_reachable(&topic, 1))) {
        /* Its owner is a core that cannot be reached now: nothing published
         * (docs/cluster.md); the connection stays, as after any Redis error. */
        redis_error(c, "cluster core unavailable: not published");
        return;
    }
    if (router_publish_ns(&c->eng->router, NULL, shard ? TOPIC_NS_SHARD : TOPIC_NS_CHANNEL,
                          &topic, 1, cmd->argv[2].p, cmd->argv[2].len, clock_turn_unix(),
                          &res) < 0) {
        nomem(c);
        return;
    }
    /* Redis delivers while publishing: a (RESP3) publisher subscribed to the
     * channel sees its message before the reply. */
    if (c->sub.queue.count)
        redis_deliver_queue(c, true);
    /* In a cluster, the count waits for the remote owners (cluster_pub.c). */
    if (c->eng->router.cfg.published)
        cluster_publish_hold(c, false);
    redis_add(c, resp_add_integer(c->out, (long long)res.receivers));
}

/* KRAKEN.RETROSUBSCRIBE <unix-seconds> <channel>...: SUBSCRIBE's replies,
 * then every retained message on those channels published strictly after
 * that second; or, after SUBSCRIBE (KRAKEN.REGISTER before it), those
 * published after the register.  When the horizon is older than what is
 * retained, the subscription stands and an error follows the replies: the
 * client must reload, as with Kraken's NOT_FOUND. */
void redis_retro_subscribe(struct conn *c, const struct redis_cmd *cmd)
{
    struct redis_state *rs = redis_st(c);
    struct engine *eng = c->eng;
    enum router_horizon kind;
    int64_t h, h_time;
    size_t first;
    if (redis_arg_is(&cmd->argv[0], "kraken.retrosubscribe")) {
        char num[32];
        const struct resp_arg *a = &cmd->argv[1];
        uint64_t v;
        if (a->len == 0 || a->len >= sizeof num ||
            proto_parse_u64(a->p, a->len, INT64_MAX, &v) < 0) {
            redis_error(c, "horizon is not a Unix time in seconds");
            return;
        }
        kind = ROUTER_BY_TIME;
        h = h_time = (int64_t)v;
        first = 2;
        if (!channels_travel(c, cmd, first, cmd->argc, CLUSTER_ERR_CHANNEL_NAME) ||
            !channels_available(c, cmd, first))
            return;
    } else {
        kind = ROUTER_BY_SEQ;
        h = (int64_t)rs->horizon_seq;
        h_time = rs->horizon_time;
        rs->has_horizon = false;
        first = 1;
    }
    size_t n = cmd->argc - first;
    if (engine_reserve_slices(eng, n) < 0) {
        nomem(c);
        return;
    }
    /* Subscribe one by one for SUBSCRIBE's replies (each with the count
     * after it); the retroactive part then finds them subscribed. */
    for (size_t i = 0; i < n; i++) {
        const struct resp_arg *a = &cmd->argv[first + i];
        int rc = router_subscribe(&eng->router, &c->sub, a->p, a->len);
        if (rc < 0) {
            nomem(c);
            return;
        }
        rs->nchannels += (uint32_t)rc;
        add_sub_reply(c, "subscribe", a->p, a->len, sub_count(c, false));
        eng->slices[i].p = a->p;
        eng->slices[i].len = a->len;
    }
    int rc = router_retro_subscribe(&eng->router, &c->sub, eng->slices, (uint32_t)n, kind, h,
                                    h_time);
    if (rc < 0)
        nomem(c);
    else if (rc == 0)
        redis_error(c, RETRO_NOT_FOUND);
}

/* In a cluster, an owner answered that the horizon of the held
 * KRAKEN.RETROSUBSCRIBE (or KRAKEN.REGISTER + SUBSCRIBE) is too old: the
 * same error after the subscribe replies (once per request). */
void redis_retro_refused(struct conn *c)
{
    redis_error(c, RETRO_NOT_FOUND);
}

/* ---- PUBSUB introspection ---- */

struct chan_list {
    struct conn *c;
    const struct resp_arg *pattern;
    const struct topic **v;
    size_t n, cap;
    bool failed;
};

static int list_channel(const struct topic *t, void *arg)
{
    struct chan_list *l = arg;
    if (l->pattern && !glob_match(l->pattern->p, l->pattern->len, t->name, t->len))
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        const struct topic **v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->failed = true;
            return 1;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = t;
    return 0;
}

static void pubsub_channels(struct conn *c, const struct redis_cmd *cmd, enum topic_ns ns)
{
    struct chan_list l = {c, cmd->argc > 2 ? &cmd->argv[2] : NULL, NULL, 0, 0, false};
    topic_foreach(&c->eng->router.topics, ns, list_channel, &l);
    if (l.failed) {
        free(l.v);
        nomem(c);
        return;
    }
    redis_add(c, resp_add_array(c->out, l.n));
    for (size_t i = 0; i < l.n; i++)
        redis_add(c, resp_add_bulk(c->out, l.v[i]->name, l.v[i]->len));
    free(l.v);
}

static void pubsub_numsub(struct conn *c, const struct redis_cmd *cmd, enum topic_ns ns)
{
    redis_add(c, resp_add_array(c->out, (cmd->argc - 2) * 2));
    for (size_t i = 2; i < cmd->argc; i++) {
        const struct topic *t =
            topic_find(&c->eng->router.topics, ns, cmd->argv[i].p, cmd->argv[i].len);
        redis_add(c, resp_add_bulk(c->out, cmd->argv[i].p, cmd->argv[i].len));
        redis_add(c, resp_add_integer(c->out, t ? (long long)t->nsubs : 0));
    }
}

static const char *const pubsub_help[] = {
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
};

void redis_pubsub(struct conn *c, const struct redis_cmd *cmd)
{
    const struct resp_arg *sub = &cmd->argv[1];
    if (redis_arg_is(sub, "help")) {
        size_t n = sizeof pubsub_help / sizeof pubsub_help[0];
        redis_add(c, resp_add_array(c->out, n));
        for (size_t i = 0; i < n; i++)
            redis_add(c, resp_add_simple(c->out, pubsub_help[i], strlen(pubsub_help[i])));
        return;
    }
    if ((redis_arg_is(sub, "channels") || redis_arg_is(sub, "shardchannels")) && cmd->argc > 3) {
        /* addReplySubcommandSyntaxError */
        char msg[300], name[130];
        size_t n = sub->len < 128 ? sub->len : 128;
        memcpy(name, sub->p, n);
        name[n] = 0;
        for (size_t i = 0; i < n; i++)
            if (name[i] == '\r' || name[i] == '\n' || name[i] == 0)
                name[i] = ' ';
        snprintf(msg, sizeof msg,
                 "unknown subcommand or wrong number of arguments for '%s'. Try PUBSUB HELP.",
                 name);
        redis_error(c, msg);
        return;
    }
    if (redis_arg_is(sub, "channels"))
        pubsub_channels(c, cmd, TOPIC_NS_CHANNEL);
    else if (redis_arg_is(sub, "shardchannels"))
        pubsub_channels(c, cmd, TOPIC_NS_SHARD);
    else if (redis_arg_is(sub, "numsub"))
        pubsub_numsub(c, cmd, TOPIC_NS_CHANNEL);
    else if (redis_arg_is(sub, "shardnumsub"))
        pubsub_numsub(c, cmd, TOPIC_NS_SHARD);
    else /* numpat: distinct patterns, as Redis counts them */
        redis_add(c, resp_add_integer(c->out, (long long)router_local_patterns(&c->eng->router)));
}
