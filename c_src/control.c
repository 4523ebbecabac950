/* control.c - ei-encoded control channel to the Erlang node; see control.h.
 *
 * The I/O side: framing on stdin/stdout, the start-up handshake, answering
 * calls and sending log events.  Packets are decoded by control_decode.c,
 * which bounds every read by the packet's length. */
#include "control.h"

#include <ei.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "control_decode.h"
#include "cluster_control.h"
#include "log.h"
#include "server.h"
#include "stats.h"

#define MAX_PACKET (64u << 20)

static struct bufferevent *ch_in, *ch_out;
static struct server *ch_srv;
static struct event_base *ch_base;
static int ch_started;
static size_t ch_skip; /* bytes of an oversized packet still to discard */

/* ---- sending ---- */

/* Queues one packet (4-byte length + the term), whole or not at all: the
 * space is reserved first, so a failed allocation cannot leave a length
 * without its term and desynchronise the channel.  Frees x. */
static int send_x(ei_x_buff *x)
{
    unsigned char len[4] = {(unsigned char)(x->index >> 24), (unsigned char)(x->index >> 16),
                            (unsigned char)(x->index >> 8), (unsigned char)x->index};
    int rc = -1;
    if (ch_out) {
        struct evbuffer *out = bufferevent_get_output(ch_out);
        if (evbuffer_expand(out, 4 + (size_t)x->index) == 0 && evbuffer_add(out, len, 4) == 0 &&
            evbuffer_add(out, x->buff, (size_t)x->index) == 0)
            rc = 0;
    }
    ei_x_free(x);
    return rc;
}

/* Blocking send, for the last words before exiting. */
static void send_x_now(ei_x_buff *x)
{
    int flags = fcntl(STDOUT_FILENO, F_GETFL);
    if (flags >= 0)
        fcntl(STDOUT_FILENO, F_SETFL, flags & ~O_NONBLOCK);
    if (ch_out)
        bufferevent_flush(ch_out, EV_WRITE, BEV_FLUSH);
    unsigned char len[4] = {(unsigned char)(x->index >> 24), (unsigned char)(x->index >> 16),
                            (unsigned char)(x->index >> 8), (unsigned char)x->index};
    struct evbuffer *pending = ch_out ? bufferevent_get_output(ch_out) : NULL;
    while (pending && evbuffer_get_length(pending) > 0)
        if (evbuffer_write(pending, STDOUT_FILENO) < 0)
            break;
    ssize_t w = write(STDOUT_FILENO, len, 4);
    if (w == 4)
        w = write(STDOUT_FILENO, x->buff, (size_t)x->index);
    (void)w;
    ei_x_free(x);
}

/* ---- log events ---- */

/* Log events waiting for Erlang beyond this are dropped (and counted), so a
 * slow or stuck node cannot make the engine's memory grow without bound. */
#define LOG_BACKLOG_MAX (8u << 20)
/* At most this many events a second are sent, for debug and info events and
 * separately for warnings and errors (so a flood of the first cannot hide
 * the second); the rest are dropped, counted and reported once a second.
 * This bounds what the Erlang side has to handle (see LOG_QUEUE_MAX in
 * src/kraken_engine.erl), whatever the engine's load. */
#define LOG_RATE 2000

static struct {
    int64_t millitokens; /* 1000 per event */
    int64_t last_ms;
    uint64_t dropped; /* since the last report */
} log_budget[2];
static uint64_t log_dropped_backlog; /* since the last report */
static struct event *log_report_timer;

static int log_send(enum log_level level, const char *msg, size_t len)
{
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0)
        return -1;
    if (ei_x_encode_tuple_header(&x, 3) < 0 || ei_x_encode_atom(&x, "log") < 0 ||
        ei_x_encode_atom(&x, log_level_name(level)) < 0 ||
        ei_x_encode_binary(&x, msg, (long)len) < 0) {
        ei_x_free(&x);
        return -1;
    }
    return send_x(&x);
}

static int backlog_full(void)
{
    return ch_out && evbuffer_get_length(bufferevent_get_output(ch_out)) > LOG_BACKLOG_MAX;
}

static void report_one(uint64_t *count, const char *what)
{
    if (!*count)
        return;
    char note[160];
    int n = snprintf(note, sizeof note, "%" PRIu64 " %s", *count, what);
    if (log_send(LOG_WARNING, note, (size_t)n) == 0)
        *count = 0;
}

/* Reports the events dropped because the backlog was full, once it is not
 * (from out_drained_cb, or with the next event sent). */
static void report_backlog(void)
{
    if (!backlog_full())
        report_one(&log_dropped_backlog,
                   "log events dropped: the Erlang node was not reading them");
}

/* Reports the events dropped by the rate limit: from log_report_timer, at
 * most once a second (if the backlog is full too, they wait for the next). */
static void report_rate(void)
{
    if (backlog_full())
        return;
    char what[96];
    snprintf(what, sizeof what, "debug and info log events dropped: more than %d a second",
             LOG_RATE);
    report_one(&log_budget[0].dropped, what);
    snprintf(what, sizeof what, "warning and error log events dropped: more than %d a second",
             LOG_RATE);
    report_one(&log_budget[1].dropped, what);
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void arm_report_timer(void)
{
    if (log_report_timer && !evtimer_pending(log_report_timer, NULL)) {
        struct timeval second = {1, 0};
        evtimer_add(log_report_timer, &second);
    }
}

/* Token bucket: LOG_RATE events a second, bursts of up to LOG_RATE. */
static int log_budget_take(int class)
{
    int64_t now = monotonic_ms();
    int64_t elapsed = now - log_budget[class].last_ms; /* ms: LOG_RATE millitokens each */
    int64_t full = (int64_t)LOG_RATE * 1000;
    int64_t t = log_budget[class].millitokens + (elapsed < 1000 ? elapsed : 1000) * LOG_RATE;
    log_budget[class].last_ms = now;
    log_budget[class].millitokens = t < full ? t : full;
    if (log_budget[class].millitokens < 1000)
        return -1;
    log_budget[class].millitokens -= 1000;
    return 0;
}

static void log_sink(enum log_level level, const char *msg, size_t len)
{
    int class = level >= LOG_WARNING;
    if (log_budget_take(class) < 0) {
        log_budget[class].dropped++;
        log_events_dropped++;
        arm_report_timer();
        return;
    }
    if (backlog_full()) {
        log_dropped_backlog++;
        log_events_dropped++;
        return;
    }
    report_backlog();
    if (log_send(level, msg, len) < 0)
        log_events_dropped++; /* out of memory: nothing better to do */
}

static void log_report_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    report_rate();
    if (log_budget[0].dropped || log_budget[1].dropped)
        arm_report_timer(); /* the backlog was full: try again in a second */
}

/* The channel's output drained: report drops now, not at the next event. */
static void out_drained_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    (void)arg;
    report_backlog();
}

/* ---- requests ---- */

/* Each encoder returns 0, or -1 when ei could not allocate. */

static int encode_dump_queues(ei_x_buff *x)
{
    int64_t now = engine_now_ms();
    for (const struct conn *c = engine_oldest_conn(&ch_srv->eng); c; c = engine_next_conn(c)) {
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

static int encode_queue_topics(ei_x_buff *x, uint64_t id)
{
    const struct conn *c = engine_find_conn(&ch_srv->eng, id);
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

static int encode_dump_topics(ei_x_buff *x)
{
    const struct topic_index *idx = &ch_srv->eng.router.topics;
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
static int encode_stats(ei_x_buff *x)
{
    struct stats_snapshot snap;
    engine_snapshot(&ch_srv->eng, &snap);
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
    return send_x(&x);
}

/* The cluster's requests (cluster_control.c), which control_decode leaves
 * as CTL_BADARG: the packet was already checked to be well-formed within
 * its length, so decoding its request again is bounded.  Returns 1 if
 * answered. */
static int cluster_call(const struct ctl_command *cmd, const char *buf)
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
            handled = cluster_control_tuple(ch_srv, atom, buf, &idx, &x);
    } else if (ei_decode_atom(buf, &idx, atom) == 0) {
        handled = cluster_control_atom(ch_srv, atom, &x);
    }
    if (!handled) {
        ei_x_free(&x);
        return 0;
    }
    send_x(&x);
    return 1;
}

static void handle_call(const struct ctl_command *cmd, const char *buf)
{
    ei_x_buff x;
    if (cmd->request == CTL_BADARG) {
        if (cluster_call(cmd, buf))
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
            rc = encode_stats(&x);
            break;
        case CTL_DUMP_QUEUES:
            rc = encode_dump_queues(&x);
            break;
        case CTL_DUMP_QUEUE_TOPICS:
            rc = encode_queue_topics(&x, cmd->queue_id);
            break;
        case CTL_DUMP_TOPICS:
            rc = encode_dump_topics(&x);
            break;
        case CTL_READY: { /* server_ready(): ready | {not_ready, Why} */
            char why[200];
            if (server_ready(ch_srv, why, sizeof why))
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
    if (rc == 0 && send_x(&x) == 0)
        return;
    if (rc < 0)
        ei_x_free(&x);
    /* Out of memory: say so, rather than answer nothing or a partial result. */
    klog(LOG_ERROR, "control: out of memory answering call %lld", cmd->ref);
    if (reply_error(cmd->ref, "out_of_memory") < 0)
        klog(LOG_ERROR, "control: out of memory answering call %lld with an error", cmd->ref);
}

static void fail(const char *reason)
{
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "error");
    ei_x_encode_binary(&x, reason, (long)strlen(reason));
    send_x_now(&x); /* the Erlang side reports it, in one line */
    exit(2);
}

static void handle_config(const struct engine_config *cfg)
{
    char err[256];
    if (server_start(ch_srv, ch_base, cfg, err, sizeof err) < 0)
        fail(err);
    ch_started = 1;
    log_min_level = cfg->log_level;
    log_set_sink(log_sink);
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "ready");
    ei_x_encode_long(&x, server_port(ch_srv, PROTO_KIND_KRAKEN));
    send_x(&x);
    klog(LOG_INFO, "engine %d listening on %s port %d (%u shards, %u messages retained per shard)",
         (int)getpid(), cfg->listen_ip, server_port(ch_srv, PROTO_KIND_KRAKEN), cfg->num_shards,
         cfg->retain_per_shard);
    if (server_port(ch_srv, PROTO_KIND_REDIS) >= 0)
        klog(LOG_INFO, "engine %d: Redis protocol on %s port %d", (int)getpid(), cfg->listen_ip,
             server_port(ch_srv, PROTO_KIND_REDIS));
    if (ch_srv->eng.http_port >= 0)
        klog(LOG_INFO, "engine %d: HTTP endpoint (/metrics, /readyz) on %s port %d", (int)getpid(),
             cfg->listen_ip, ch_srv->eng.http_port);
}

static void handle_packet(const char *buf, size_t len)
{
    struct ctl_command cmd;
    char err[256];
    switch (ctl_decode(buf, len, &cmd, err, sizeof err)) {
    case CTL_MALFORMED:
        klog(LOG_ERROR, "control: bad packet of %zu bytes ignored: %s", len, err);
        return;
    case CTL_BAD_CONFIG:
        if (!ch_started)
            fail(err);
        klog(LOG_ERROR, "control: config packet ignored after start-up (%s)", err);
        return;
    case CTL_OK:
        break;
    }
    if (cmd.kind == CTL_CONFIG && !ch_started)
        handle_config(&cmd.config);
    else if (cmd.kind == CTL_CALL && ch_started)
        handle_call(&cmd, buf);
    else
        klog(LOG_ERROR, "control: %s packet ignored %s", cmd.kind == CTL_CONFIG ? "config" : "call",
             ch_started ? "after start-up" : "before the config");
}

static void in_read_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        if (ch_skip) { /* the rest of a packet we could not take */
            size_t n = evbuffer_get_length(in);
            n = n < ch_skip ? n : ch_skip;
            evbuffer_drain(in, n);
            ch_skip -= n;
            if (ch_skip)
                return;
        }
        unsigned char hdr[4];
        if (evbuffer_copyout(in, hdr, 4) < 4)
            return;
        uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
        if (len > MAX_PACKET) {
            klog(LOG_ERROR, "control: packet of %" PRIu32 " bytes (over %u) ignored", len,
                 MAX_PACKET);
            evbuffer_drain(in, 4);
            ch_skip = len;
            continue;
        }
        if (evbuffer_get_length(in) < 4 + (size_t)len)
            return;
        const char *p = (const char *)evbuffer_pullup(in, 4 + (ev_ssize_t)len);
        if (!p)
            klog(LOG_ERROR, "control: out of memory reading a packet of %" PRIu32 " bytes; ignored",
                 len);
        else
            handle_packet(p + 4, len);
        evbuffer_drain(in, 4 + (size_t)len);
    }
}

static void in_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        /* The Erlang side is gone: nobody supervises us any more. */
        log_set_sink(NULL);
        event_base_loopexit(ch_base, NULL);
    }
}

/* The channel must be a pipe or a socket from the Erlang node: epoll cannot
 * watch a regular file or /dev/null, and a terminal is no node. */
static int check_channel_fd(int fd, const char *name, char *err, size_t errlen)
{
    struct stat st;
    const char *what;
    if (fstat(fd, &st) < 0)
        what = "closed";
    else if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))
        return 0;
    else if (isatty(fd))
        what = "a terminal";
    else if (S_ISCHR(st.st_mode))
        what = "a character device such as /dev/null";
    else if (S_ISREG(st.st_mode))
        what = "a regular file";
    else
        what = "not a pipe";
    snprintf(err, errlen,
             "%s is %s, not a pipe from the Erlang node: the kraken application starts this "
             "program as a port; to run it by hand use --standalone",
             name, what);
    return -1;
}

int control_start(struct event_base *base, struct server *srv, char *err, size_t errlen)
{
    ch_base = base;
    ch_srv = srv;
    if (check_channel_fd(STDIN_FILENO, "stdin", err, errlen) < 0 ||
        check_channel_fd(STDOUT_FILENO, "stdout", err, errlen) < 0)
        return -1;
    snprintf(err, errlen, "cannot open the control channel: out of memory");
    if (ei_init() != 0)
        return -1;
    log_report_timer = evtimer_new(base, log_report_cb, NULL);
    if (!log_report_timer)
        return -1;
    evutil_make_socket_nonblocking(STDIN_FILENO);
    evutil_make_socket_nonblocking(STDOUT_FILENO);
    ch_in = bufferevent_socket_new(base, STDIN_FILENO, 0);
    ch_out = bufferevent_socket_new(base, STDOUT_FILENO, 0);
    if (!ch_in || !ch_out)
        return -1;
    bufferevent_setcb(ch_in, in_read_cb, NULL, in_event_cb, NULL);
    bufferevent_setcb(ch_out, NULL, out_drained_cb, NULL, NULL);
    if (bufferevent_enable(ch_in, EV_READ) < 0 || bufferevent_enable(ch_out, EV_WRITE) < 0) {
        snprintf(err, errlen, "cannot watch the control channel");
        return -1;
    }
    return 0;
}

void control_stop(void)
{
    log_set_sink(NULL);
    if (ch_in)
        bufferevent_free(ch_in);
    if (ch_out)
        bufferevent_free(ch_out);
    if (log_report_timer)
        event_free(log_report_timer);
    ch_in = ch_out = NULL;
    log_report_timer = NULL;
}
