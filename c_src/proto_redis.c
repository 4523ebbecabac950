/* proto_redis.c - the Redis protocol over one connection: framing,
 * dispatch, and the connection commands.
 *
 * Requests are framed by the pure parser (resp.h), looked up in one table of
 * commands, and checked in Redis 7.0's order (processCommand): QUIT first,
 * then existence and arity, then authentication (only AUTH and HELLO before
 * it), then RESP2's subscribed-mode rule (only the (P|S)(UN)SUBSCRIBE family,
 * PING, QUIT and RESET), so that the error a client sees is the one Redis
 * would send.  The Pub/Sub commands and the formatting of delivered messages
 * are in redis_pubsub.c.
 *
 * Delivery: a Redis connection is always a push subscriber (sub.push): the
 * router's `ready` hook arms its write, and deliver() formats its queue as
 * message/pmessage/smessage frames.  Before a command runs, everything
 * queued so far is formatted first, so that messages published before a
 * command are seen before its reply, as with Redis, and so that an
 * UNSUBSCRIBE never drops a message published while it was subscribed.
 *
 * What is not Redis: one database (SELECT 0 only), no keyspace commands
 * (they get Redis's unknown-command error), and two extra commands,
 * KRAKEN.REGISTER and KRAKEN.RETROSUBSCRIBE, for retroactive subscription
 * (docs/protocol.md). */
#include "proto_redis.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "engine.h"
#include "log.h"
#include "redis_internal.h"
#include "resp.h"

/* ---- replies ---- */

void redis_add(struct conn *c, int rc)
{
    if (rc < 0)
        redis_st(c)->failed = true;
}

void redis_error(struct conn *c, const char *msg)
{
    redis_add(c, resp_add_error(c->out, msg, strlen(msg)));
}

static void reply_ok(struct conn *c)
{
    redis_add(c, resp_add_simple(c->out, "OK", 2));
}

bool redis_arg_is(const struct resp_arg *a, const char *lower)
{
    size_t n = strlen(lower);
    if (a->len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)a->p[i]) != lower[i])
            return false;
    return true;
}

/* ---- connection commands ---- */

static void cmd_ping(struct conn *c, const struct redis_cmd *cmd)
{
    if (cmd->argc > 2) {
        redis_error(c, "wrong number of arguments for 'ping' command");
        return;
    }
    if (redis_subscribed(c) && redis_st(c)->proto == 2) {
        redis_add(c, resp_add_array(c->out, 2));
        redis_add(c, resp_add_bulk(c->out, "pong", 4));
        if (cmd->argc == 1)
            redis_add(c, resp_add_bulk(c->out, "", 0));
        else
            redis_add(c, resp_add_bulk(c->out, cmd->argv[1].p, cmd->argv[1].len));
    } else if (cmd->argc == 1) {
        redis_add(c, resp_add_simple(c->out, "PONG", 4));
    } else {
        redis_add(c, resp_add_bulk(c->out, cmd->argv[1].p, cmd->argv[1].len));
    }
}

static void cmd_echo(struct conn *c, const struct redis_cmd *cmd)
{
    redis_add(c, resp_add_bulk(c->out, cmd->argv[1].p, cmd->argv[1].len));
}

static bool password_required(struct conn *c)
{
    return c->eng->cfg.redis_password[0] != 0;
}

/* ACL's check for the default user: any password when none is set. */
static bool credentials_ok(struct conn *c, const struct resp_arg *user, const struct resp_arg *pass)
{
    if (user && !(user->len == 7 && memcmp(user->p, "default", 7) == 0))
        return false;
    if (!password_required(c))
        return true;
    const char *pw = c->eng->cfg.redis_password;
    return pass->len == strlen(pw) && memcmp(pass->p, pw, pass->len) == 0;
}

static const char WRONGPASS[] =
    "-WRONGPASS invalid username-password pair or user is disabled.";

static void cmd_auth(struct conn *c, const struct redis_cmd *cmd)
{
    if (cmd->argc > 3) {
        redis_error(c, "syntax error");
        return;
    }
    if (cmd->argc == 2 && !password_required(c)) {
        redis_error(c, "AUTH <password> called without any password configured for the "
                       "default user. Are you sure your configuration is correct?");
        return;
    }
    const struct resp_arg *user = cmd->argc == 3 ? &cmd->argv[1] : NULL;
    if (credentials_ok(c, user, &cmd->argv[cmd->argc - 1])) {
        redis_st(c)->authenticated = true;
        reply_ok(c);
    } else {
        klog(LOG_INFO, "redis client %" PRIu64 " (%s): AUTH failed", c->sub.id, c->peer);
        redis_error(c, WRONGPASS);
    }
}

/* CLIENT SETNAME's rule: printable ASCII without spaces. */
static bool set_name(struct conn *c, const struct resp_arg *name)
{
    for (size_t i = 0; i < name->len; i++)
        if (name->p[i] < '!' || name->p[i] > '~') {
            redis_error(c, "Client names cannot contain spaces, newlines or special characters.");
            return false;
        }
    struct redis_state *rs = redis_st(c);
    size_t n = name->len < sizeof rs->name - 1 ? name->len : sizeof rs->name - 1;
    memcpy(rs->name, name->p, n);
    rs->name[n] = 0;
    return true;
}

static void add_bulk_str(struct conn *c, const char *s)
{
    redis_add(c, resp_add_bulk(c->out, s, strlen(s)));
}

static void cmd_hello(struct conn *c, const struct redis_cmd *cmd)
{
    struct redis_state *rs = redis_st(c);
    long long ver = 0;
    size_t next = 1;
    if (cmd->argc >= 2) {
        char num[32];
        const struct resp_arg *a = &cmd->argv[next++];
        char *end;
        if (a->len == 0 || a->len >= sizeof num) {
            redis_error(c, "Protocol version is not an integer or out of range");
            return;
        }
        memcpy(num, a->p, a->len);
        num[a->len] = 0;
        ver = strtoll(num, &end, 10);
        if (*end || isspace((unsigned char)num[0])) {
            redis_error(c, "Protocol version is not an integer or out of range");
            return;
        }
        if (ver < 2 || ver > 3) {
            redis_error(c, "-NOPROTO unsupported protocol version");
            return;
        }
    }
    for (size_t j = next; j < cmd->argc; j++) {
        size_t more = cmd->argc - 1 - j;
        const struct resp_arg *opt = &cmd->argv[j];
        if (redis_arg_is(opt, "auth") && more >= 2) {
            if (!credentials_ok(c, &cmd->argv[j + 1], &cmd->argv[j + 2])) {
                redis_error(c, WRONGPASS);
                return;
            }
            rs->authenticated = true;
            j += 2;
        } else if (redis_arg_is(opt, "setname") && more) {
            if (!set_name(c, &cmd->argv[j + 1]))
                return;
            j++;
        } else {
            char msg[200];
            snprintf(msg, sizeof msg, "Syntax error in HELLO option '%.*s'",
                     (int)(opt->len > 128 ? 128 : opt->len), opt->p);
            redis_error(c, msg);
            return;
        }
    }
    if (!rs->authenticated) {
        redis_error(c, "-NOAUTH HELLO must be called with the client already authenticated, "
                       "otherwise the HELLO AUTH <user> <pass> option can be used to "
                       "authenticate the client and select the RESP protocol version at the "
                       "same time");
        return;
    }
    if (ver)
        rs->proto = (int)ver;
    redis_add(c, resp_add_map(c->out, rs->proto, 7));
    add_bulk_str(c, "server");
    add_bulk_str(c, "redis");
    add_bulk_str(c, "version");
    add_bulk_str(c, REDIS_COMPAT_VERSION);
    add_bulk_str(c, "proto");
    redis_add(c, resp_add_integer(c->out, rs->proto));
    add_bulk_str(c, "id");
    redis_add(c, resp_add_integer(c->out, (long long)c->sub.id));
    add_bulk_str(c, "mode");
    add_bulk_str(c, "standalone");
    add_bulk_str(c, "role");
    add_bulk_str(c, "master");
    add_bulk_str(c, "modules");
    redis_add(c, resp_add_array(c->out, 0));
}

static void cmd_reset(struct conn *c, const struct redis_cmd *cmd)
{
    (void)cmd;
    struct redis_state *rs = redis_st(c);
    redis_unsubscribe_all_silently(c);
    rs->proto = 2;
    rs->name[0] = 0;
    rs->has_horizon = false;
    rs->authenticated = !password_required(c);
    redis_add(c, resp_add_simple(c->out, "RESET", 5));
}

static void cmd_select(struct conn *c, const struct redis_cmd *cmd)
{
    const struct resp_arg *a = &cmd->argv[1];
    char num[32];
    char *end;
    if (a->len == 0 || a->len >= sizeof num) {
        redis_error(c, "value is not an integer or out of range");
        return;
    }
    memcpy(num, a->p, a->len);
    num[a->len] = 0;
    long long db = strtoll(num, &end, 10);
    if (*end || isspace((unsigned char)num[0])) {
        redis_error(c, "value is not an integer or out of range");
        return;
    }
    if (db != 0) {
        redis_error(c, "DB index is out of range");
        return;
    }
    reply_ok(c);
}

static void cmd_client_id(struct conn *c, const struct redis_cmd *cmd)
{
    (void)cmd;
    redis_add(c, resp_add_integer(c->out, (long long)c->sub.id));
}

static void cmd_client_setname(struct conn *c, const struct redis_cmd *cmd)
{
    if (set_name(c, &cmd->argv[2]))
        reply_ok(c);
}

static void cmd_client_getname(struct conn *c, const struct redis_cmd *cmd)
{
    (void)cmd;
    struct redis_state *rs = redis_st(c);
    if (rs->name[0])
        add_bulk_str(c, rs->name);
    else
        redis_add(c, resp_add_null(c->out, rs->proto));
}

static void cmd_command(struct conn *c, const struct redis_cmd *cmd);

static int count_channel(const struct topic *t, void *arg)
{
    (void)t;
    ++*(uint64_t *)arg;
    return 0;
}

/* INFO: pubsub_channels and pubsub_patterns are Redis's figures, what
 * PUBSUB CHANNELS lists (channels with a subscriber, not the topics the
 * index holds for retention) and NUMPAT counts (distinct patterns, not
 * (pattern, client) pairs). The channel count walks the topic table, as
 * PUBSUB CHANNELS does; INFO is not on a client's path. */
static void cmd_info(struct conn *c, const struct redis_cmd *cmd)
{
    (void)cmd;
    uint64_t channels = 0;
    topic_foreach(&c->eng->router.topics, TOPIC_NS_CHANNEL, count_channel, &channels);
    struct stats_snapshot s;
    engine_snapshot(c->eng, &s);
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        redis_st(c)->failed = true;
        return;
    }
    evbuffer_add_printf(b,
                        "# Server\r\nredis_version:%s\r\nkraken_version:%s\r\n"
                        "redis_mode:standalone\r\nprocess_id:%" PRId64 "\r\n"
                        "uptime_in_seconds:%" PRId64 "\r\n\r\n"
                        "# Clients\r\nconnected_clients:%" PRIu64 "\r\n\r\n"
                        "# Stats\r\ntotal_connections_received:%" PRIu64 "\r\n"
                        "rejected_connections:%" PRIu64 "\r\n"
                        "pubsub_channels:%" PRIu64 "\r\npubsub_patterns:%" PRIu64 "\r\n\r\n"
                        "# Kraken\r\n",
                        REDIS_COMPAT_VERSION, s.version, s.pid, s.uptime, s.curr_connections,
                        s.total_connections, s.rejected_connections, channels,
                        (uint64_t)router_local_patterns(&c->eng->router));
    for (size_t i = 0; i < stats_nfields; i++) {
        const struct stats_field *f = &stats_fields[i];
        if (f->type == STATS_I64)
            evbuffer_add_printf(b, "%s:%" PRId64 "\r\n", f->name, stats_i64(&s, f));
        else if (f->type == STATS_U64)
            evbuffer_add_printf(b, "%s:%" PRIu64 "\r\n", f->name, stats_u64(&s, f));
        else
            evbuffer_add_printf(b, "%s:%s\r\n", f->name, stats_str(&s, f));
    }
    size_t n = evbuffer_get_length(b);
    redis_add(c, resp_add_bulk(c->out, evbuffer_pullup(b, (ev_ssize_t)n), n));
    evbuffer_free(b);
}

static void cmd_kraken_register(struct conn *c, const struct redis_cmd *cmd)
{
    (void)cmd;
    redis_st(c)->has_horizon = true;
    redis_st(c)->horizon_seq = c->eng->router.seq;
    redis_st(c)->horizon_time = engine_unix_time();
    reply_ok(c);
}

/* ---- the command table ---- */

enum {
    F_NO_AUTH = 1,  /* allowed before AUTH */
    F_PUBSUB = 2,   /* allowed in RESP2 subscribed mode */
};

struct redis_command {
    const char *name;      /* lowercase */
    const char *fullname;  /* in errors: "client|id" */
    int arity;             /* Redis's: n exactly, or -n at least n */
    int flags;
    void (*fn)(struct conn *c, const struct redis_cmd *cmd);
    const struct redis_command *subs; /* container: its subcommands, NULL-terminated */
};

static const struct redis_command client_subs[] = {
    {"id", "client|id", 2, 0, cmd_client_id, NULL},
    {"setname", "client|setname", 3, 0, cmd_client_setname, NULL},
    {"getname", "client|getname", 2, 0, cmd_client_getname, NULL},
    {NULL, NULL, 0, 0, NULL, NULL},
};

static const struct redis_command pubsub_subs[] = {
    {"channels", "pubsub|channels", -2, 0, redis_pubsub, NULL},
    {"numsub", "pubsub|numsub", -2, 0, redis_pubsub, NULL},
    {"numpat", "pubsub|numpat", 2, 0, redis_pubsub, NULL},
    {"help", "pubsub|help", 2, 0, redis_pubsub, NULL},
    {"shardchannels", "pubsub|shardchannels", -2, 0, redis_pubsub, NULL},
    {"shardnumsub", "pubsub|shardnumsub", -2, 0, redis_pubsub, NULL},
    {NULL, NULL, 0, 0, NULL, NULL},
};

static const struct redis_command command_subs[] = {
    {"count", "command|count", 2, 0, cmd_command, NULL},
    {"docs", "command|docs", -2, 0, cmd_command, NULL},
    {"info", "command|info", -2, 0, cmd_command, NULL},
    {"list", "command|list", -2, 0, cmd_command, NULL},
    {NULL, NULL, 0, 0, NULL, NULL},
};

/* Searched in order: the publish path's command first. */
static const struct redis_command commands[] = {
    {"publish", "publish", 3, 0, redis_publish, NULL},
    {"ping", "ping", -1, F_PUBSUB, cmd_ping, NULL},
    {"echo", "echo", 2, 0, cmd_echo, NULL},
    {"reset", "reset", 1, F_PUBSUB | F_NO_AUTH, cmd_reset, NULL},
    {"hello", "hello", -1, F_NO_AUTH, cmd_hello, NULL},
    {"auth", "auth", -2, F_NO_AUTH, cmd_auth, NULL},
    {"select", "select", 2, 0, cmd_select, NULL},
    {"client", "client", -2, 0, NULL, client_subs},
    {"subscribe", "subscribe", -2, F_PUBSUB, redis_subscribe, NULL},
    {"unsubscribe", "unsubscribe", -1, F_PUBSUB, redis_unsubscribe, NULL},
    {"psubscribe", "psubscribe", -2, F_PUBSUB, redis_psubscribe, NULL},
    {"punsubscribe", "punsubscribe", -1, F_PUBSUB, redis_punsubscribe, NULL},
    {"ssubscribe", "ssubscribe", -2, F_PUBSUB, redis_subscribe, NULL},
    {"sunsubscribe", "sunsubscribe", -1, F_PUBSUB, redis_unsubscribe, NULL},
    {"spublish", "spublish", 3, 0, redis_publish, NULL},
    {"pubsub", "pubsub", -2, 0, NULL, pubsub_subs},
    {"command", "command", -1, 0, cmd_command, command_subs},
    {"info", "info", -1, 0, cmd_info, NULL},
    {"kraken.register", "kraken.register", 1, F_PUBSUB, cmd_kraken_register, NULL},
    {"kraken.retrosubscribe", "kraken.retrosubscribe", -3, F_PUBSUB, redis_retro_subscribe,
     NULL},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void cmd_command(struct conn *c, const struct redis_cmd *cmd)
{
    if (cmd->argc >= 2 && redis_arg_is(&cmd->argv[1], "count")) {
        redis_add(c, resp_add_integer(c->out, (long long)NCOMMANDS));
        return;
    }
    /* No command documentation: clients (redis-cli's hints) fall back to their own. */
    redis_add(c, resp_add_array(c->out, 0));
}

static const struct redis_command *find_in(const struct redis_command *tab, size_t n,
                                           const struct resp_arg *name)
{
    if (name->len == 0)
        return NULL;
    int first = tolower((unsigned char)name->p[0]);
    for (size_t i = 0; i < n && tab[i].name; i++)
        if (tab[i].name[0] == first && redis_arg_is(name, tab[i].name))
            return &tab[i];
    return NULL;
}

/* Appends s[0..n) to buf as Redis's %.*s of a C string would: up to the
 * first NUL, with CR and LF made spaces (an error reply is one line). */
static size_t put_text(char *buf, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap && s[i]; i++)
        buf[o++] = s[i] == '\r' || s[i] == '\n' ? ' ' : s[i];
    buf[o] = 0;
    return o;
}

static void unknown_command(struct conn *c, const struct redis_cmd *cmd)
{
    char args[160], name[160], msg[400];
    size_t alen = 0;
    for (size_t i = 1; i < cmd->argc && alen < 128; i++) {
        size_t room = 128 - alen;
        args[alen++] = '\'';
        size_t n = cmd->argv[i].len < room ? cmd->argv[i].len : room;
        alen += put_text(args + alen, sizeof args - alen, cmd->argv[i].p, n);
        args[alen++] = '\'';
        args[alen++] = ' ';
    }
    args[alen] = 0;
    put_text(name, 129, cmd->argv[0].p, cmd->argv[0].len);
    snprintf(msg, sizeof msg, "unknown command '%s', with args beginning with: %s", name, args);
    redis_error(c, msg);
}

static void unknown_subcommand(struct conn *c, const struct redis_cmd *cmd)
{
    char sub[160], upper[160], msg[400];
    put_text(sub, 129, cmd->argv[1].p, cmd->argv[1].len);
    size_t n = put_text(upper, sizeof upper, cmd->argv[0].p, cmd->argv[0].len);
    for (size_t i = 0; i < n; i++)
        upper[i] = (char)toupper((unsigned char)upper[i]);
    snprintf(msg, sizeof msg, "unknown subcommand '%s'. Try %s HELP.", sub, upper);
    redis_error(c, msg);
}

static bool arity_ok(const struct redis_command *rc, size_t argc)
{
    return rc->arity > 0 ? argc == (size_t)rc->arity : argc >= (size_t)-rc->arity;
}

/* Runs one command; returns false when the connection must close after the reply. */
static bool dispatch(struct conn *c, const struct redis_cmd *cmd)
{
    struct redis_state *rs = redis_st(c);
    if (redis_arg_is(&cmd->argv[0], "quit")) {
        reply_ok(c);
        return false;
    }
    const struct redis_command *rc = find_in(commands, NCOMMANDS, &cmd->argv[0]);
    if (rc && rc->subs && cmd->argc >= 2) {
        rc = find_in(rc->subs, SIZE_MAX, &cmd->argv[1]);
        if (!rc) {
            unknown_subcommand(c, cmd);
            return true;
        }
    }
    if (!rc) {
        unknown_command(c, cmd);
        return true;
    }
    if (!arity_ok(rc, cmd->argc)) {
        char msg[200];
        snprintf(msg, sizeof msg, "wrong number of arguments for '%s' command", rc->fullname);
        redis_error(c, msg);
        return true;
    }
    if (!rs->authenticated && !(rc->flags & F_NO_AUTH)) {
        redis_error(c, "-NOAUTH Authentication required.");
        return true;
    }
    if (rs->proto == 2 && redis_subscribed(c) && !(rc->flags & F_PUBSUB)) {
        char msg[300];
        snprintf(msg, sizeof msg,
                 "Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
                 "RESET are allowed in this context",
                 rc->fullname);
        redis_error(c, msg);
        return true;
    }
    rc->fn(c, cmd);
    return true;
}

/* ---- the protocol ---- */

static void redis_init(struct conn *c)
{
    struct redis_state *rs = redis_st(c);
    resp_parser_init(&rs->parser, c->eng->cfg.max_request_bytes);
    rs->proto = 2;
    rs->authenticated = !password_required(c);
    c->sub.push = true;
}

static void redis_release(struct conn *c)
{
    resp_parser_free(&redis_st(c)->parser);
}

static void fatal(struct conn *c, const char *why)
{
    klog(LOG_INFO, "redis client %" PRIu64 " (%s): %s; closing the connection", c->sub.id,
         c->peer, why);
    c->eng->stats.disconnects_error++;
    c->state = CONN_CLOSING;
}

static enum conn_status redis_process(struct conn *c)
{
    struct redis_state *rs = redis_st(c);
    struct evbuffer *in = c->in;
    while (!conn_is_closing(c)) {
        if (evbuffer_get_length(c->out) > CONN_OUTPUT_HIGH || conn_blocked(c))
            return CONN_PAUSED;
        size_t avail = evbuffer_get_length(in);
        if (avail == 0 || rs->need > avail)
            return CONN_OK;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)avail);
        if (!buf) {
            fatal(c, "out of memory reading a request");
            break;
        }
        size_t used = 0;
        const char *error = NULL;
        enum resp_status st = resp_parse(&rs->parser, buf, avail, rs->authenticated, &used, &error);
        if (st == RESP_NEED_MORE) {
            /* One command is bounded by max_request_bytes, however it is
             * split into arguments (Redis: client-query-buffer-limit). */
            if (avail > c->eng->cfg.max_request_bytes + RESP_INLINE_MAX) {
                static const char too_big[] =
                    "-ERR Protocol error: request larger than max_request_bytes\r\n";
                redis_add(c, evbuffer_add(c->out, too_big, sizeof too_big - 1));
                fatal(c, "request larger than max_request_bytes");
                break;
            }
            rs->need = used > avail ? used : 0;
            return CONN_OK;
        }
        rs->need = 0;
        if (st == RESP_NOMEM) {
            fatal(c, "out of memory parsing a request");
            break;
        }
        if (st == RESP_ERROR) {
            redis_add(c, evbuffer_add(c->out, error, strlen(error)));
            fatal(c, "protocol error");
            break;
        }
        if (rs->parser.argc == 0) { /* empty inline line, *0 */
            evbuffer_drain(in, used);
            continue;
        }
        /* Messages published before this command go out before its reply. */
        if (c->sub.queue.count)
            redis_deliver_queue(c, true);
        struct redis_cmd cmd = {rs->parser.argv, rs->parser.argc};
        int64_t now = clock_turn_ms();
        bool keep = dispatch(c, &cmd);
        evbuffer_drain(in, used);
        c->eng->stats.requests++;
        c->requests++;
        c->last_request_ms = now;
        if (rs->failed) {
            klog(LOG_ERROR, "redis client %" PRIu64 " (%s): out of memory for a reply, closing",
                 c->sub.id, c->peer);
            c->state = CONN_CLOSING;
            break;
        }
        if (!keep) {
            c->state = CONN_CLOSING;
            break;
        }
    }
    return CONN_CLOSE;
}

static void redis_deliver(struct conn *c)
{
    redis_deliver_queue(c, false);
    if (redis_st(c)->failed) {
        klog(LOG_ERROR, "redis client %" PRIu64 " (%s): out of memory pushing messages, closing",
             c->sub.id, c->peer);
        c->state = CONN_CLOSING;
    }
}

_Static_assert(_Alignof(struct redis_state) <= CONN_PSTATE_ALIGN, "conn.pstate is aligned for it");

const struct proto_ops proto_redis = {
    .name = "redis",
    .log_name = "redis client",
    .kind = PROTO_KIND_REDIS,
    .state_size = sizeof(struct redis_state),
    .init = redis_init,
    .release = redis_release,
    .process = redis_process,
    .deliver = redis_deliver,
    .retro_refused = redis_retro_refused,
    .err_too_many_clients = "-ERR max number of clients reached\r\n",
    /* Redis closes a client over its output limit without a word; so do we
     * (the log says why). */
    .err_queue_limit = NULL,
    .err_nomem = NULL,
};
