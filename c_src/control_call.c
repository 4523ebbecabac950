/* control_call.c - the calls the Erlang node makes on the control channel.
 *
 * A {call, Ref, Request} packet, decoded by control_decode.c, is answered
 * here with {reply, Ref, Result}: the engine's `stats` figures as a
 * proplist, the client queues and topics for bin/kraken's dump commands,
 * readiness (server_ready()), the log level.  The cluster's requests,
 * which control_decode leaves as CTL_BADARG, are passed to
 * cluster_control.c.  Each reply is encoded whole before it is sent, so
 * that an allocation failure answers {error, out_of_memory}, never a
 * partial result. */
#include "control_internal.h"

#include <stdlib.h>
#include <string.h>

#include "cluster_control.h"
#include "server.h"
#include "stats.h"

/* Each encoder returns 0, or -1 when ei could not allocate. */

static int encode_dump_queues(const struct server *srv, ei_x_buff *x)
{
    int64_t now = engine_now_ms();
    for (const struct conn *c = engine_oldest_conn(&srv->eng); c; c = engine_next_conn(c)) {
        if (ei_x_encode_list_header(x, 1) < 0 || ei_x_encode_tuple_header(x, 7) < 0 ||
            ei_x_encode_ulonglong(x, c->sub.id) < 0 ||
            ei_x_encode_binary(x, c->peer, (long)strlen(c->peer)) < 0 ||
            ei_x_encode_ulong(x, c->sub.subs.count) < 0 ||
            ei_x_encode_ulong(x, c->sub.queue.count) < 0 ||
            ei_x_encode_ulonglong(x, c->sub.received) < 0 ||
            ei_x_encode_longlong(x, (now - c->connected_ms) / 1000) < 0 ||
            ei_x_encode_longlong(x, c->last_poll_ms < 0 ? -1 : (now - c->last_poll_ms) / 1000) < 0)
            return -1;
    }
    return ei_x_encode_empty_list(x);
}

struct encode_topics {
    ei_x_buff *x;
    int rc;
};

static void encode_topic_name(const struct topic *t, void *arg)
{
    struct encode_topics *e = arg;
    if (e->rc == 0 && (ei_x_encode_list_header(e->x, 1) < 0 ||
                       ei_x_encode_binary(e->x, t->name, t->len) < 0))
        e->rc = -1;
}

static int encode_queue_topics(const struct server *srv, ei_x_buff *x, uint64_t id)
{
    const struct conn *c = engine_find_conn(&srv->eng, id);
    if (!c)
        return ei_x_encode_atom(x, "not_found");
    struct encode_topics e = {x, 0};
    subscriber_foreach_topic(&c->sub, encode_topic_name, &e);
    return e.rc < 0 ? -1 : ei_x_encode_empty_list(x);
}

static int cmp_topic_subs(const void *a, const void *b)
{
    const struct topic *x = *(const struct topic *const *)a, *y = *(const struct topic *const *)b;
    if (x->nsubs != y->nsubs)
        return x->nsubs > y->nsubs ? -1 : 1;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

struct topic_list {
    const struct topic **v;
    size_t n, cap;
};

static int collect_topic(const struct topic *t, void *arg)
{
    struct topic_list *l = arg;
    if (l->n < l->cap)
        l->v[l->n++] = t;
    return 0;
}

static int encode_dump_topics(const struct server *srv, ei_x_buff *x)
{
    const struct topic_index *idx = &srv->eng.router.topics;
    struct topic_list l = {malloc((topic_index_count(idx) + 1) * sizeof *l.v), 0,
                           topic_index_count(idx)};
    if (!l.v)
        return -1; /* an error, not an empty list: there may be topics */
    topic_foreach(idx, TOPIC_NS_CHANNEL, collect_topic, &l);
    qsort(l.v, l.n, sizeof *l.v, cmp_topic_subs);
    int rc = 0;
    for (size_t i = 0; i < l.n && rc == 0; i++)
        if (ei_x_encode_list_header(x, 1) < 0 || ei_x_encode_tuple_header(x, 3) < 0 ||
            ei_x_encode_binary(x, l.v[i]->name, l.v[i]->len) < 0 ||
            ei_x_encode_ulong(x, l.v[i]->shard) < 0 || ei_x_encode_ulong(x, l.v[i]->nsubs) < 0)
            rc = -1;
    free(l.v);
    return rc < 0 ? -1 : ei_x_encode_empty_list(x);
}

/* The same figures as the wire `stats` reply (stats.c's table), as a proplist. */
static int encode_stats(const struct server *srv, ei_x_buff *x)
{
    struct stats_snapshot snap;
    engine_snapshot(&srv->eng, &snap);
    for (size_t i = 0; i < stats_nfields; i++) {
        const struct stats_field *f = &stats_fields[i];
        int rc;
        if (ei_x_encode_list_header(x, 1) < 0 || ei_x_encode_tuple_header(x, 2) < 0 ||
            ei_x_encode_binary(x, f->name, (long)strlen(f->name)) < 0)
            return -1;
        if (f->type == STATS_I64)
            rc = ei_x_encode_longlong(x, stats_i64(&snap, f));
        else if (f->type == STATS_U64)
            rc = ei_x_encode_ulonglong(x, stats_u64(&snap, f));
        else
            rc = ei_x_encode_binary(x, stats_str(&snap, f), (long)strlen(stats_str(&snap, f)));
        if (rc < 0)
            return -1;
    }
    return ei_x_encode_empty_list(x);
}

/* {reply, Ref, {error, Reason}} */
static int reply_error(long long ref, const char *reason)
{
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0)
        return -1;
    if (ei_x_encode_tuple_header(&x, 3) < 0 || ei_x_encode_atom(&x, "reply") < 0 ||
        ei_x_encode_longlong(&x, ref) < 0 || ei_x_encode_tuple_header(&x, 2) < 0 ||
        ei_x_encode_atom(&x, "error") < 0 || ei_x_encode_atom(&x, reason) < 0) {
        ei_x_free(&x);
        return -1;
    }
    return control_send(&x);
}

/* The cluster's requests (cluster_control.c), which control_decode leaves
 * as CTL_BADARG: the packet was already checked to be well-formed within
 * its length, so decoding its request again is bounded.  Returns 1 if
 * answered. */
static int cluster_call(struct server *srv, const struct ctl_command *cmd, const char *buf)
{
    ei_x_buff x;
    int idx = cmd->request_offset, type, size, arity, handled = 0;
    char atom[MAXATOMLEN_UTF8];
    if (ei_x_new_with_version(&x) < 0)
        return 0;
    if (ei_x_encode_tuple_header(&x, 3) < 0 || ei_x_encode_atom(&x, "reply") < 0 ||
        ei_x_encode_longlong(&x, cmd->ref) < 0 || ei_get_type(buf, &idx, &type, &size) < 0) {
        ei_x_free(&x);
        return 0;
    }
    if (type == ERL_SMALL_TUPLE_EXT) {
        if (ei_decode_tuple_header(buf, &idx, &arity) == 0 && arity == 2 &&
            ei_decode_atom(buf, &idx, atom) == 0)
            handled = cluster_control_tuple(srv, atom, buf, &idx, &x);
    } else if (ei_decode_atom(buf, &idx, atom) == 0) {
        handled = cluster_control_atom(srv, atom, &x);
    }
    if (!handled) {
        ei_x_free(&x);
        return 0;
    }
    control_send(&x);
    return 1;
}

void control_call(struct server *srv, const struct ctl_command *cmd, const char *buf)
{
    ei_x_buff x;
    if (cmd->request == CTL_BADARG) {
        if (cluster_call(srv, cmd, buf))
            return;
        if (reply_error(cmd->ref, "badarg") < 0)
            klog(LOG_ERROR, "control: out of memory answering call %lld", cmd->ref);
        return;
    }
    int rc = ei_x_new_with_version(&x);
    if (rc == 0 && (ei_x_encode_tuple_header(&x, 3) < 0 || ei_x_encode_atom(&x, "reply") < 0 ||
                    ei_x_encode_longlong(&x, cmd->ref) < 0))
        rc = -1;
    if (rc == 0) {
        switch (cmd->request) {
        case CTL_STATS:
            rc = encode_stats(srv, &x);
            break;
        case CTL_DUMP_QUEUES:
            rc = encode_dump_queues(srv, &x);
            break;
        case CTL_DUMP_QUEUE_TOPICS:
            rc = encode_queue_topics(srv, &x, cmd->queue_id);
            break;
        case CTL_DUMP_TOPICS:
            rc = encode_dump_topics(srv, &x);
            break;
        case CTL_READY: { /* server_ready(): ready | {not_ready, Why} */
            char why[200];
            if (server_ready(srv, why, sizeof why))
                rc = ei_x_encode_atom(&x, "ready");
            else if (ei_x_encode_tuple_header(&x, 2) < 0 ||
                     ei_x_encode_atom(&x, "not_ready") < 0 ||
                     ei_x_encode_binary(&x, why, (long)strlen(why)) < 0)
                rc = -1;
            break;
        }
        case CTL_SET_LOG_LEVEL:
            log_min_level = cmd->level;
            rc = ei_x_encode_atom(&x, "ok");
            break;
        case CTL_BADARG:
            break;
        }
    }
    if (rc == 0 && control_send(&x) == 0)
        return;
    if (rc < 0)
        ei_x_free(&x);
    /* Out of memory: say so, rather than answer nothing or a partial result. */
    klog(LOG_ERROR, "control: out of memory answering call %lld", cmd->ref);
    if (reply_error(cmd->ref, "out_of_memory") < 0)
        klog(LOG_ERROR, "control: out of memory answering call %lld with an error", cmd->ref);
}
